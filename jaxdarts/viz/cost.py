"""Cost against accuracy over a budgeted search (`jaxdarts.cost.search`).

A budgeted search logs at every epoch end ``expected_METRIC`` (the
supernet's cost under its mixing weights), ``derived_METRIC`` (the derived
genotype's network at the retraining size) and ``supernet_val_accuracy``;
:func:`plot_cost_accuracy` draws each cost against that accuracy, epoch by
epoch, with the budget as a line; :func:`budget_text` states the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxdarts.viz.figure import check_image_path, new_figure, save


def cost_records(records: Sequence[Mapping[str, float]]
                 ) -> list[Mapping[str, float]]:
  """The epoch-end records that hold costs and the supernet accuracy."""
  return [r for r in records if 'supernet_val_accuracy' in r
          and any(k.startswith('derived_') for k in r)]


def budget_text(budget: Mapping[str, Any] | None) -> str:
  """The config's budget in words, or that there is none."""
  if not budget or not (budget.get('penalty') or budget.get('limit')):
    return 'No budget (config.search.budget is inactive).'
  metric = budget.get('metric', 'macs')
  parts = []
  if budget.get('limit'):
    parts.append(f'hard limit {budget["limit"]:.6g} {metric} on the derived '
                 'network')
  if budget.get('penalty'):
    parts.append(f'penalty {budget["penalty"]} with target '
                 f'{budget.get("target", 0):.6g} {metric}')
  size = (f'C={budget.get("channels") or "search"}, '
          f'{budget.get("layers") or "search"} cells')
  return f'Budget: {"; ".join(parts)} (retraining size {size}).'


def plot_cost_accuracy(records: Sequence[Mapping[str, float]],
                       path: Path | str, *,
                       limit: float = 0., metric: str = 'macs') -> Path:
  """Expected and derived ``metric`` against the supernet's validation
  accuracy, one point per epoch (numbered), the limit as a line.

  Raises:
    ValueError: no record holds ``derived_{metric}``.
  """
  path = check_image_path(path)
  rows = [r for r in cost_records(records) if f'derived_{metric}' in r]
  if not rows:
    raise ValueError(f'no epoch logged derived_{metric}: was the search '
                     'budgeted (config.search.budget)?')
  fig = new_figure(6.0, 4.0)
  ax = fig.subplots()
  accuracy = [r['supernet_val_accuracy'] for r in rows]
  for key, marker in ((f'expected_{metric}', 'o'),
                      (f'derived_{metric}', 's')):
    values = [r.get(key, float('nan')) for r in rows]
    ax.plot(values, accuracy, marker=marker, linewidth=1, label=key)
    for r, x, y in zip(rows, values, accuracy):
      ax.annotate(str(int(r.get('epoch', 0)) + 1), (x, y), fontsize=7)
  if limit:
    ax.axvline(limit, color='k', linestyle='--', linewidth=1,
               label=f'limit {limit:.4g}')
  ax.set_xlabel(metric)
  ax.set_ylabel('supernet validation accuracy')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return save(fig, path)
