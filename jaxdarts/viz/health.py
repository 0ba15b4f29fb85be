"""Plot of a search's health signals against the epoch (`plot_health`).

Reads the epoch-end records of ``metrics.jsonl`` that `jaxdarts.run.health`
writes: ``hessian_eigenvalue`` (the dominant eigenvalue of the alphas'
Hessian), ``{cell}_skip_ops`` / ``{cell}_pool_ops`` (parameter-free ops of
the derived cells), ``{cell}_edge_entropy`` and ``{cell}_edge_margin``
(means over the edges), and ``early_stop.json``, whose epochs are marked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jaxdarts.run.workdir import Workdir
from jaxdarts.viz.figure import check_image_path, finish_axes, new_figure, save

PathLike = str | os.PathLike

EIGENVALUE = 'hessian_eigenvalue'
RATIO = 'early_stop_ratio'
_CELL_KEY = re.compile(
    r'^(\w+?)_(skip_ops|pool_ops|param_free_ops|edge_entropy|edge_margin)$')

# Panel title -> the key suffixes it shows (one line per cell type each).
_PANELS = (('parameter-free ops in the derived cells',
            ('skip_ops', 'pool_ops')),
           ('mean edge entropy of the op weights (nats)', ('edge_entropy',)),
           ('mean edge margin (top-1 minus top-2 op weight)',
            ('edge_margin',)))


def is_health_metric(key: str) -> bool:
  """Whether ``key`` is one of the health signals (plotted here, so the
  generic curves leave it out)."""
  return key in (EIGENVALUE, RATIO) or bool(_CELL_KEY.match(key))


def health_series(workdir: PathLike
                  ) -> dict[str, tuple[list[int], list[float]]]:
  """``{key: (epochs, values)}`` of every health signal in metrics.jsonl."""
  series: dict[str, tuple[list[int], list[float]]] = {}
  for record in Workdir(workdir).metrics():
    for key, value in record.items():
      if is_health_metric(key) and 'epoch' in record:
        epochs, values = series.setdefault(key, ([], []))
        epochs.append(int(record['epoch']))
        values.append(value)
  return series


def plot_health(workdir: PathLike, path: PathLike) -> Path:
  """Plots the eigenvalue and the collapse signals against the epoch.

  Four panels: the Hessian's dominant eigenvalue, the skip and pooling
  counts of the derived normal and reduction cells, the mean per-edge
  entropy and the mean per-edge margin. A DARTS-ES stop is marked: a solid
  line at the epoch whose genotype was kept, a dotted one where the search
  stopped.

  Args:
    workdir: the search run's workdir.
    path: where to save the plot, PNG or SVG by suffix.

  Returns:
    ``path``.

  Raises:
    FileNotFoundError: if the workdir or ``metrics.jsonl`` is missing.
    ValueError: if metrics.jsonl holds no health signal, or on a bad suffix.
  """
  path = check_image_path(path)
  workdir = Workdir(workdir)
  series = health_series(workdir.path)
  if not series:
    raise ValueError(f'{workdir / "metrics.jsonl"}: no health signals (runs '
                     'before search health was logged have none)')
  stop = workdir.early_stop()
  fig = new_figure(12.0, 6.4)
  axes = fig.subplots(2, 2, squeeze=False).ravel()
  panels = [('dominant eigenvalue of the alphas\' Hessian', [EIGENVALUE])]
  for title, suffixes in _PANELS:
    panels.append((title, sorted(
        k for k in series if (m := _CELL_KEY.match(k)) and m.group(2)
        in suffixes)))
  for ax, (title, keys) in zip(axes, panels):
    for key in keys:
      if key in series:
        epochs, values = series[key]
        ax.plot(epochs, values, marker='o', markersize=3.5, linewidth=1.3,
                label=key)
    if stop is not None:
      ax.axvline(stop['stop_epoch'], color='#d62728', linewidth=1.2,
                 label=f'DARTS-ES kept epoch {stop["stop_epoch"]}')
      ax.axvline(stop['epoch'], color='#d62728', linestyle=':',
                 linewidth=1.2, label=f'stopped after epoch {stop["epoch"]}')
    finish_axes(ax, title)
  fig.suptitle(f'search health: {workdir.path.resolve().name}', fontsize=11)
  fig.tight_layout()
  return save(fig, path)
