"""A search's budget from its config: ``config.search.budget``.

:func:`default_config` is the config block (every preset has it, inactive);
:func:`wrap` makes a method :class:`~jaxdarts.cost.budget.Budgeted` when the
block asks for a penalty or a hard limit, with the cost table at the
retraining geometry (latency measured, or read from the lookup table, when
the metric is ``'ms'`` or ``measure_latency`` is set); :func:`epoch_costs`
is what the run logs each epoch: the expected cost of the supernet and the
derived genotype's cost, in every metric of the table.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxdarts.cost import latency as latency_lib
from jaxdarts.cost import table as table_lib
from jaxdarts.cost.budget import Budgeted

logger = logging.getLogger('jaxdarts.run')


def default_config() -> ml_collections.ConfigDict:
  """``config.search.budget``: inactive unless ``penalty`` or ``limit``."""
  budget = ml_collections.ConfigDict()
  budget.metric = 'macs'  # 'macs' (per image) | 'params' | 'ms' (per batch)
  budget.penalty = ''  # '' | 'mul#log' | 'add#linear' | 'snas'
  budget.target = 0.  # The penalty's target, in the metric.
  budget.limit = 0.  # Hard budget of the derived genotype; 0: none.
  budget.alpha = 0.2  # mul#log: alpha * L * (log E / log target) ** beta.
  budget.beta = 0.3
  budget.lambda_ = 0.1  # add#linear and snas.
  # The retraining network the costs are for; 0: the supernet's C / cells.
  budget.channels = 0
  budget.layers = 0
  budget.batch = 0  # Latency batch; 0: config.search.batch_size.
  budget.measure_latency = False  # Also for other metrics (logged).
  budget.latency_table = ''  # JSON lookup; '': WORKDIR/latency_table.json.
  return budget


def active(config: ml_collections.ConfigDict) -> bool:
  budget = config.search.get('budget')
  return bool(budget and (budget.penalty or budget.limit > 0))


def geometry(config: ml_collections.ConfigDict, image_shape,
             num_classes: int) -> table_lib.Geometry:
  budget = config.search.budget
  return table_lib.Geometry(
      tuple(image_shape), num_classes,
      budget.channels or config.model.channels,
      budget.layers or config.model.layers,
      batch=budget.batch or config.search.batch_size)


@functools.lru_cache(maxsize=8)
def _counted(geometry_: table_lib.Geometry, space) -> table_lib.CostTable:
  return table_lib.build(geometry_, space)


def cost_table(config: ml_collections.ConfigDict, space, image_shape,
               num_classes: int, workdir: str | os.PathLike | None = None
               ) -> table_lib.CostTable:
  """The cost table the config's budget asks for."""
  budget = config.search.budget
  table = _counted(geometry(config, image_shape, num_classes), space)
  if budget.metric == 'ms' or budget.measure_latency:
    path = budget.latency_table or (
        Path(workdir) / latency_lib.FILE_NAME if workdir else None)
    table = latency_lib.measure_table(table,
                                      latency_lib.LatencyTable(path))
  return table


def wrap(config: ml_collections.ConfigDict, method, space, image_shape,
         num_classes: int, workdir: str | os.PathLike | None = None):
  """``method`` under the config's budget, or ``method`` if none is set."""
  if not active(config):
    return method
  budget = config.search.budget
  table = cost_table(config, space, image_shape, num_classes, workdir)
  return Budgeted(inner=method, table=table, metric=budget.metric,
                  penalty=budget.penalty, target=float(budget.target),
                  limit=float(budget.limit), alpha=float(budget.alpha),
                  beta=float(budget.beta), lambda_=float(budget.lambda_))


def epoch_costs(state) -> dict[str, float]:
  """``expected_METRIC`` (the supernet's, deterministic mixing weights) and
  ``derived_METRIC`` (the genotype's network) for every metric of the
  budget's table; empty without a budget."""
  method = state.method
  if not isinstance(method, Budgeted):
    return {}
  alphas = jax.device_get(state.alphas)
  weights = jax.tree.map(np.asarray, method.inner.relax(alphas, rng=None,
                                                        step=state.step))
  genotype = state.genotype()
  out = {}
  for metric in method.table.metrics:
    costs = method.table.edge_costs(metric)
    out[f'expected_{metric}'] = float(method.table.fixed_cost(metric) + sum(
        np.sum(np.asarray(weights[c], np.float64) * costs[c])
        for c in costs))
    out[f'derived_{metric}'] = method.table.genotype_cost(genotype, metric)
  return out
