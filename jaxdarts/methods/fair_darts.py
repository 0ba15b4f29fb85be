"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid weights per op.

"Fair DARTS: Eliminating Unfair Advantages in Differentiable Architecture
Search", official code https://github.com/xiaomi-automl/FairDARTS
(``fairdarts/``). DARTS's softmax makes the ops of an edge compete, which
favours skip connections; FairDARTS lets each op be switched on or off on
its own:

* mixing weights ``w = sigmoid(alpha)``, element-wise (no normalisation);
* the alphas minimise ``L_val + w01 * L_01`` with the zero-one loss

      L_01 = -mean_{cells, edges, ops} (sigmoid(alpha) - 0.5)^2,

  which pushes every weight towards 0 or 1 (``w01 = 10``, the official
  ``--aux_loss_weight``; the mean runs over both cells' alphas together,
  as the official ``F.mse_loss`` of their concatenation);
* the genotype keeps ops whose sigmoid is at least ``threshold`` (0.85).

The zero op: the official candidate set has no ``'none'`` (an independent
weight already switches an op off); the ``fair_darts`` preset therefore
uses the DARTS primitives without ``'none'``. A space that has ``'none'``
still runs (its weight multiplies a zero output and it is never derived),
but the zero op then only adds a useless alpha to the zero-one loss.

Derivation: the official rule (``utils.parse``, ``threshold_sparse``) ranks
a node's incoming edges by their strongest sigmoid, takes the top two, and
keeps each one's strongest op only if its sigmoid reaches the threshold,
so a node may end with one input or none; the official evaluation cell
(``DCOCell``) sums what a node has and leaves out a node with none.
:meth:`FairDARTS.sparse_cells` returns exactly that selection. This
library's genotype and evaluation network need two inputs per node, so
:meth:`FairDARTS.derive` returns the same two edges and ops per node
without dropping those below the threshold (the DARTS rule on the
sigmoids); :meth:`FairDARTS.below_threshold` lists the edges the official
code would have dropped, for the report. In a space with one op per edge
(``nb201``) the genotype keeps each edge's strongest op other than
``'none'``: the zero op's sigmoid weighs a zero output, so it measures
nothing (the zero-one loss alone drives it from its initial 0.5).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts.methods.base import Arch, Method

# (op, input state) of a kept edge, as in a genotype.
Pair = tuple[str, int]


def zero_one_loss(arch: Arch) -> jax.Array:
  """``-mean (sigmoid(alpha) - 0.5)^2`` over every alpha of every cell."""
  flat = jnp.concatenate([a.reshape(-1) for _, a in sorted(arch.items())])
  return -jnp.mean((jax.nn.sigmoid(flat) - 0.5) ** 2)


def _sigmoid64(alphas) -> np.ndarray:
  return 1. / (1. + np.exp(-np.asarray(jax.device_get(alphas), np.float64)))


@dataclasses.dataclass(frozen=True)
class FairDARTS(Method):
  """Sigmoid mixing weights and the zero-one loss (see the module docstring).

  Attributes:
    zero_one_weight: ``w01``, the weight of the zero-one loss (10).
    threshold: an op is kept when its sigmoid is at least this (0.85).
  """
  name: ClassVar[str] = 'fair_darts'
  zero_one_weight: float = 10.0
  threshold: float = 0.85

  def relax(self, arch, *, rng=None, step=0):
    del rng, step
    return {cell: jax.nn.sigmoid(a) for cell, a in arch.items()}

  def arch_objective(self, loss, arch, *, step):
    del step
    return loss + self.zero_one_weight * zero_one_loss(arch)

  def strengths(self, arch):
    """Each op's own sigmoid (float64): what the derivation ranks by."""
    return {cell: _sigmoid64(a) for cell, a in arch.items()}

  def derive(self, arch, space):
    """The space's rule on the sigmoids, ``'none'`` never chosen (see the
    module docstring)."""
    strengths = self.strengths(arch)
    if 'none' in space.primitives:
      k = space.primitives.index('none')
      strengths = {cell: np.where(np.arange(w.shape[-1]) == k, -1.0, w)
                   for cell, w in strengths.items()}
    return space.derive(strengths)

  def sparse_cells(self, arch, space) -> dict[str, list[list[Pair]]]:
    """The official ``threshold_sparse`` selection, per cell and node.

    For each intermediate node, its two incoming edges with the largest
    non-'none' sigmoid (ties: lower input first), each with its strongest
    op, kept only when that op's sigmoid is at least ``threshold``.

    Returns:
      ``{cell type: [node 0's (op, input) pairs, node 1's, ...]}``; a node
      has 0, 1 or 2 pairs.
    """
    if not hasattr(space, 'edge_offset'):
      raise ValueError(
          f'FairDARTS.sparse_cells reads the official top-2-edges rule of '
          f'the DARTS cell; the {space.name!r} space keeps one op on every '
          'edge, so it has no such selection: use derive().')
    candidates = [k for k, p in enumerate(space.primitives) if p != 'none']
    cells = {}
    for cell, weights in self.strengths(arch).items():
      nodes = []
      for node in range(space.num_nodes):
        start = space.edge_offset(node)
        block = weights[start:start + 2 + node][:, candidates]
        ranking = np.argsort(-block.max(axis=1), kind='stable')[:2]
        nodes.append([
            (space.primitives[candidates[int(np.argmax(block[src]))]],
             int(src)) for src in ranking
            if block[src].max() >= self.threshold])
      cells[cell] = nodes
    return cells

  def below_threshold(self, arch, space) -> dict[str, list[tuple[int, Pair]]]:
    """``{cell: [(node, (op, input)), ...]}``: the edges of :meth:`derive`'s
    genotype that the official rule drops (sigmoid below ``threshold``)."""
    genotype = self.derive(arch, space)
    sparse = self.sparse_cells(arch, space)
    dropped = {}
    for cell, kept in sparse.items():
      pairs = getattr(genotype, cell)
      dropped[cell] = [(k // 2, pair) for k, pair in enumerate(pairs)
                       if pair not in kept[k // 2]]
    return dropped
