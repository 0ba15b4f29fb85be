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
live in the architecture pytree next to the alphas (``arch['edge_betas']``),
start as ``1e-3 * N(0, 1)`` like the alphas, and are trained with them.
The mixing weights are ``{cell: {'ops': [edges, ops], 'edge': [edges]}}``;
:class:`PartialChannelMixedOp` scales its output by its edge weight.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts.methods.base import Arch, Method, _softmax64
from jaxdarts.spaces.darts_cnn.cell import EdgeModule, MixedOp

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
    mixed = MixedOp(self.primitives, part, self.stride, self.train,
                    self.bn_axis_name, self.depthwise, name='mixed')(
                        x[..., :part], weights['ops'])
    bypass = x[..., part:]
    if self.stride == 2:
      bypass = max_pool_2x2(bypass)
    out = channel_shuffle(jnp.concatenate([mixed, bypass], axis=-1), self.k)
    return weights['edge'].astype(out.dtype) * out


def _node_groups(num_edges: int) -> list[tuple[int, int]]:
  """``(first edge, end)`` of every node's incoming edges (node ``i`` has
  ``2 + i``, in the DARTS cell's edge order)."""
  groups, start, node = [], 0, 0
  while start < num_edges:
    groups.append((start, start + 2 + node))
    start, node = start + 2 + node, node + 1
  if start != num_edges:
    raise ValueError(f'{num_edges} edges are not a DARTS cell (2 + 3 + ...).')
  return groups


def edge_weights(betas: jax.Array) -> jax.Array:
  """``[edges]``: the softmax of the betas over each node's incoming edges."""
  return jnp.concatenate([jax.nn.softmax(betas[a:b])
                          for a, b in _node_groups(betas.shape[-1])])


def _edge_weights64(betas) -> np.ndarray:
  return np.concatenate([_softmax64(np.asarray(betas)[a:b])
                         for a, b in _node_groups(np.shape(betas)[-1])])


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
    betas = {cell: scale * jax.random.normal(key, (space.num_edges,))
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
    """``softmax(alpha_e)_k * softmax_node(beta)_e`` (float64)."""
    arch = jax.device_get(arch)
    return {cell: _softmax64(a) * _edge_weights64(arch[BETAS][cell])[:, None]
            for cell, a in arch.items() if cell != BETAS}
