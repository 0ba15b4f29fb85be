"""PC-DARTS (Xu et al., ICLR 2020): partial channels and edge normalisation.

*Partial channel connections.* An edge's mixed operation runs on the first
``C / K`` channels of its input only; the other ``C - C / K`` bypass it
(unchanged, or max-pooled 2x2 with stride 2 on a reduction edge), the two
parts are concatenated and the channels shuffled with ``K`` groups, so the
next edge mixes other channels::

    f_e(x) = shuffle_K([sum_k softmax(alpha_e)_k op_k(x[:C/K]),
                        bypass(x[C/K:])])

*Edge normalisation.* Each node weighs its incoming edges by a softmax of
per-edge betas over the node's edges, ``node_j = sum_{i<j}
softmax(beta_{.j})_i f_{ij}(x_i)``, which steadies the sampled channels'
noise; the genotype ranks an edge's ops by ``softmax(alpha_e)_k *
softmax(beta_{.j})_e`` (the official code's ``genotype()``).

K = 4 on CIFAR-10 (the paper; github.com/yuhuixu1993/PC-DARTS). The betas
live in the architecture pytree next to the alphas (``arch['edge_betas']``:
per cell type, a list with one array per node of its incoming edges' betas,
so the normalisation's groups are the pytree's structure), start as
``1e-3 * N(0, 1)`` like the alphas, and are trained with them. The mixing
weights are ``{cell: {'ops': [edges, ops], 'edge': [edges]}}``;
:class:`PartialChannelMixedOp` scales its output by its edge weight.

Spaces: the edge wraps the space's own mixed op (``mixed_op``, see
`jaxdarts.spaces.darts_cnn.cell.EdgeModule`) and the groups come from the
space's ``edges``, so it runs on every space. In the NAS-Bench-201-style
space (``nb201``) every edge has stride 1 (no max-pooled bypass), node
``i`` normalises over its ``i`` incoming edges (node 1's single edge has
weight 1), and the derivation keeps each edge's strongest op: scaling an
edge's row by its (positive) edge weight leaves that choice unchanged, so
there the betas steer the search but not the derivation.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts.methods.base import Arch, Method, _softmax64
from jaxdarts.spaces.darts_cnn.cell import EdgeModule

BETAS = 'edge_betas'


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet's channel shuffle of NHWC ``x``: channel ``g * (C / groups)
  + j`` moves to ``j * groups + g`` (the official code's, in NHWC)."""
  *lead, channels = x.shape
  x = x.reshape(*lead, groups, channels // groups)
  return jnp.swapaxes(x, -1, -2).reshape(*lead, channels)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling with stride 2 (ceil mode, so it matches the ops'
  ``ceil(H / 2)`` on odd sizes; PyTorch's ``MaxPool2d(2, 2)`` on even)."""
  pad = ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                               (1, 2, 2, 1), pad)


class PartialChannelMixedOp(EdgeModule):
  """PC-DARTS's edge: the mixed op on ``C / k`` channels, the rest bypass.

  Called as ``(x, {'ops': [ops], 'edge': []})``; returns ``edge *
  channel_shuffle(concat(mixed, bypass), k)``.
  """
  k: int = 4

  @nn.compact
  def __call__(self, x, weights):
    part = self.channels // self.k
    if self.channels % self.k or (self.stride == 2 and part % 2):
      raise ValueError(
          f'PC-DARTS with k={self.k} needs cell channels divisible by k '
          f'(and C/k even on reduction edges, for the factorized reduce); '
          f'got {self.channels} channels: change model.channels or '
          'method.k.')
    mixed = self.mixed(self.primitives, part, name='mixed')(
        x[..., :part], weights['ops'])
    bypass = x[..., part:]
    if self.stride == 2:
      bypass = max_pool_2x2(bypass)
    out = channel_shuffle(jnp.concatenate([mixed, bypass], axis=-1), self.k)
    return weights['edge'].astype(out.dtype) * out


def node_sizes(space) -> list[int]:
  """The number of incoming edges of every node, in the alphas' edge order
  (``space.edges`` lists each node's edges together): ``[2, 3, 4, 5]`` in
  the DARTS cell, ``[1, 2, 3]`` in NAS-Bench-201's."""
  return [len(list(group))
          for _, group in itertools.groupby(space.edges, lambda e: e[0])]


def edge_weights(betas: list[jax.Array]) -> jax.Array:
  """``[edges]``: the softmax of each node's betas (``betas[i]``, node
  ``i``'s incoming edges), concatenated in edge order."""
  return jnp.concatenate([jax.nn.softmax(b) for b in betas])


def _edge_weights64(betas) -> np.ndarray:
  return np.concatenate([_softmax64(np.asarray(b)) for b in betas])


@dataclasses.dataclass(frozen=True)
class PCDARTS(Method):
  """Partially-connected DARTS.

  Attributes:
    k: the channel proportion: ``1 / k`` of the channels go through the
      mixed op (4 on CIFAR-10).
  """
  name: ClassVar[str] = 'pc_darts'
  k: int = 4

  def init_arch(self, space, rng, scale=1e-3) -> Arch:
    alpha_rng, beta_rng = jax.random.split(rng)
    alphas = space.init_alphas(alpha_rng, scale)
    keys = jax.random.split(beta_rng, len(alphas))
    ends = np.cumsum(node_sizes(space))[:-1]
    betas = {cell: jnp.split(
        scale * jax.random.normal(key, (space.num_edges,)), ends)
             for (cell, _), key in zip(sorted(alphas.items()), keys)}
    return {**alphas, BETAS: betas}

  def relax(self, arch, *, rng=None, step=0):
    del rng, step
    return {cell: {'ops': jax.nn.softmax(a, axis=-1),
                   'edge': edge_weights(arch[BETAS][cell])}
            for cell, a in arch.items() if cell != BETAS}

  def edge(self):
    return PartialChannelMixedOp, {'k': self.k}

  def strengths(self, arch):
    """``softmax(alpha_e)_k * softmax_node(beta)_e`` (float64); with one
    op per edge (``nb201``) the edge factor does not change the ranking
    of an edge's ops."""
    arch = jax.device_get(arch)
    return {cell: _softmax64(a) * _edge_weights64(arch[BETAS][cell])[:, None]
            for cell, a in arch.items() if cell != BETAS}
