"""DARTS's derivation rule: the two strongest incoming edges of every node.

Each intermediate node keeps the two incoming edges whose strongest
non-'none' op weight is largest, each with that op; `derive_genotype`
applies the rule to the softmax of a search's alphas, as the paper does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdarts.spaces.darts_cnn.genotype import Genotype, Pair
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES, DARTS_SPACE, SearchSpace


def _cell_weights(weights: Mapping[str, Any], cell: str, space: SearchSpace,
                  what: str) -> np.ndarray:
  """``weights[cell]`` as float64, checked for presence, shape, finiteness."""
  if cell not in weights:
    raise ValueError(f'derive: {what} has no {cell!r} entry; expected keys '
                     f'{", ".join(map(repr, CELL_TYPES))}')
  array = np.asarray(weights[cell], dtype=np.float64)
  if array.shape != space.alpha_shape:
    raise ValueError(
        f'derive: {what}[{cell!r}] has shape {array.shape}, expected '
        f'{space.alpha_shape} (num_edges={space.num_edges} for '
        f'{space.num_nodes} nodes, num_ops={space.num_ops} primitives)')
  if not np.all(np.isfinite(array)):
    raise ValueError(f'derive: {what}[{cell!r}] has non-finite values')
  return array


def _top2_cell(probs: np.ndarray, space: SearchSpace) -> list[Pair]:
  """Two strongest incoming edges per node, each with its strongest op.

  An edge's strength is its largest non-'none' op weight. Edges are ranked
  by strength (ties: lower input first) and the two strongest are emitted
  strongest first; an op tie goes to the earlier primitive.
  """
  candidates = np.array(
      [k for k, p in enumerate(space.primitives) if p != 'none'])
  pairs = []
  for node in range(space.num_nodes):
    start = space.edge_offset(node)
    weights = probs[start:start + 2 + node][:, candidates]
    ranking = np.argsort(-weights.max(axis=1), kind='stable')
    for state in ranking[:2]:
      op = space.primitives[candidates[np.argmax(weights[state])]]
      pairs.append((op, int(state)))
  return pairs


def top2_genotype(weights: Mapping[str, Any], space: SearchSpace = DARTS_SPACE,
                  *, what: str = 'weights') -> Genotype:
  """The DARTS CNN space's derivation rule on per-edge op weights.

  Each intermediate node keeps its two incoming edges with the largest
  non-'none' op weight, each with that op, emitted strongest first; both
  cells concatenate all intermediate nodes.

  Args:
    weights: ``{'normal': [num_edges, num_ops], 'reduce': [...]}`` arrays
      (jax or numpy) in ``space``'s edge and primitive order, e.g. a
      method's ``strengths``.
    space: the search space the weights belong to.
    what: how error messages name ``weights``.

  Raises:
    ValueError: if a cell's weights are missing, of the wrong shape, or not
      finite.
  """
  if not isinstance(weights, Mapping):
    raise ValueError(f'derive: {what} must be a mapping with keys '
                     f'{", ".join(map(repr, CELL_TYPES))}, got '
                     f'{type(weights).__name__}')
  cells = {cell: _top2_cell(_cell_weights(weights, cell, space, what), space)
           for cell in CELL_TYPES}
  return Genotype.make(normal=cells['normal'], normal_concat=space.concat,
                       reduce=cells['reduce'], reduce_concat=space.concat,
                       space=space)


def derive_genotype(alphas: Mapping[str, Any],
                    space: SearchSpace = DARTS_SPACE) -> Genotype:
  """Discretises architecture parameters into a genotype, as DARTS does:
  `top2_genotype` of the softmax of each cell's alphas (in float64).

  Raises:
    ValueError: if a cell's alphas are missing, of the wrong shape, or not
      finite.
  """
  if isinstance(alphas, Mapping):
    alphas = {cell: _softmax(_cell_weights(alphas, cell, space, 'alphas'))
              for cell in CELL_TYPES}
  return top2_genotype(alphas, space, what='alphas')


def _softmax(logits: np.ndarray) -> np.ndarray:
  shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return shifted / shifted.sum(axis=-1, keepdims=True)
