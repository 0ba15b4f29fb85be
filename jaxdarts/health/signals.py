"""Collapse signals read from the op weights and the derived genotype.

DARTS's typical failure is a cell that fills with parameter-free operations
(skip connections, poolings) late in the search (Zela et al., ICLR 2020;
Chen & Hsieh, "Stabilizing DARTS", ICML 2020). :func:`architecture_signals`
summarises, per cell type, what the run's per-epoch records need to show it:

* ``{cell}_skip_ops`` and ``{cell}_pool_ops``: the derived cell's skip
  connections and poolings (``{cell}_param_free_ops``: their sum);
* ``{cell}_edge_entropy``: the mean over the edges of the entropy
  ``-sum_k p_k log p_k`` of each edge's op weights ``p`` (normalised to sum
  to one; ``log(num ops)`` when uniform, 0 when one-hot);
* ``{cell}_edge_margin``: the mean over the edges of the margin ``p_(1) -
  p_(2)`` between each edge's largest and second-largest op weight (how
  decided the edge is; 0 when tied).

Pure host functions of numpy arrays; nothing is compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def is_skip(op: str) -> bool:
  """Whether ``op`` is an identity-like parameter-free op."""
  return op == 'skip_connect' or op == 'identity'


def is_pool(op: str) -> bool:
  """Whether ``op`` is a pooling (parameter-free)."""
  return 'pool' in op


def edge_entropy(weights: np.ndarray) -> np.ndarray:
  """Entropy (nats) of each row of ``[edges, ops]`` op weights."""
  p = np.asarray(weights, np.float64)
  p = p / p.sum(-1, keepdims=True)
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0),
                 axis=-1)


def edge_margin(weights: np.ndarray) -> np.ndarray:
  """Largest minus second-largest op weight of each row of ``[edges, ops]``
  (after normalising each row to sum to one)."""
  p = np.asarray(weights, np.float64)
  p = p / p.sum(-1, keepdims=True)
  top2 = np.sort(p, axis=-1)[..., -2:]
  return top2[..., 1] - top2[..., 0]


def derived_ops(genotype: Any, cell: str) -> list[str]:
  """The op names of ``genotype``'s ``cell`` (``(op, input)`` pairs), or []
  if the genotype has no such field."""
  return [str(pair[0]) for pair in getattr(genotype, cell, None) or ()]


def architecture_signals(strengths: Mapping[str, np.ndarray],
                         genotype: Any) -> dict[str, float]:
  """The collapse signals of one epoch (see the module docstring).

  Args:
    strengths: ``{cell type: [edges, ops]}`` op weights (the method's
      ``strengths``, the softmax of the alphas for DARTS).
    genotype: the genotype derived from them; cell types it lacks get no
      op counts.

  Returns:
    ``{name: value}``, for metrics.jsonl.
  """
  signals = {}
  for cell, weights in strengths.items():
    ops = derived_ops(genotype, cell)
    if ops:
      skips = sum(map(is_skip, ops))
      pools = sum(map(is_pool, ops))
      signals[f'{cell}_skip_ops'] = float(skips)
      signals[f'{cell}_pool_ops'] = float(pools)
      signals[f'{cell}_param_free_ops'] = float(skips + pools)
    weights = np.asarray(weights)
    if weights.ndim == 2 and weights.shape[-1] > 1:
      signals[f'{cell}_edge_entropy'] = float(edge_entropy(weights).mean())
      signals[f'{cell}_edge_margin'] = float(edge_margin(weights).mean())
  return signals
