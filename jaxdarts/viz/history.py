"""Plots of a search run's history, read from its workdir.

* `plot_alpha_evolution`: each edge's op weights against the epoch
  (``alphas/epoch_NNN.npz``);
* `plot_curves`: every metric of ``metrics.jsonl`` against the step;
* `stable_since`: the epoch since which the derived genotype is unchanged
  (``genotypes/epoch_NNN.json``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from jaxdarts.run.workdir import Workdir
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES, SearchSpace
from jaxdarts.viz import health
from jaxdarts.viz import layout
from jaxdarts.viz.figure import check_image_path, new_figure, op_color, save

PathLike = str | os.PathLike


def nodes_for_edges(num_edges: int) -> int:
  """The number of intermediate nodes of a cell with ``num_edges`` edges.

  Raises:
    ValueError: if no node count gives that many edges (2 + 3 + ...).
  """
  num_nodes = round((math.sqrt(9 + 8 * num_edges) - 3) / 2)
  if num_nodes < 1 or SearchSpace.edge_offset(num_nodes) != num_edges:
    raise ValueError(f'{num_edges} edges do not make a DARTS cell (node i has '
                     '2 + i inputs: 2, 5, 9, 14, 20, ... edges)')
  return num_nodes


def edge_label(node: int, source: int) -> str:
  """Label of the edge into ``node`` from state ``source``, e.g.

  ``'node 2 <- c_{k-1}'`` or ``'node 3 <- node 0'``.
  """
  name = layout.state_name(source) if source < 2 else f'node {source - 2}'
  return f'node {node} <- {name}'


def plot_alpha_evolution(workdir: PathLike, path: PathLike,
                         cell: str = 'normal') -> Path:
  """Plots each edge's op weights against the epoch.

  One small panel per edge, in the space's edge order (one row per
  intermediate node, its inputs from left to right), with one line per
  op and a single legend.

  Args:
    workdir: the search run's workdir (``alphas/epoch_*.npz`` are read).
    path: where to save the plot, PNG or SVG by suffix.
    cell: ``'normal'`` or ``'reduce'``.

  Returns:
    ``path``.

  Raises:
    FileNotFoundError, ValueError: as `Workdir.alpha_history`, or on a bad
      ``cell`` or ``path`` suffix.
  """
  if cell not in CELL_TYPES:
    raise ValueError(f'unknown cell type {cell!r}; expected one of '
                     f'{CELL_TYPES}')
  from matplotlib.ticker import MaxNLocator
  path = check_image_path(path)
  epochs, weights, primitives = Workdir(workdir).alpha_history()
  history = weights[cell]
  num_nodes = nodes_for_edges(history.shape[1])
  cols = num_nodes + 1
  fig = new_figure(2.3 * cols, 1.75 * num_nodes + 0.9)
  axes = fig.subplots(num_nodes, cols, sharex=True, sharey=True, squeeze=False)
  marker = 'o' if len(epochs) <= 25 else None
  for row, (node, source) in enumerate(SearchSpace(num_nodes=num_nodes).edges):
    ax = axes[node, source]
    for k, op in enumerate(primitives):
      ax.plot(epochs, history[:, row, k], color=op_color(op), marker=marker,
              markersize=3, linewidth=1.3,
              linestyle='--' if op == 'none' else '-', label=op)
    ax.set_title(edge_label(node, source), fontsize=8.5)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  for node in range(num_nodes):
    for source in range(2 + node, cols):
      axes[node, source].set_visible(False)
    axes[node, 0].set_ylabel('weight', fontsize=8)
  for source in range(cols):
    axes[-1, source].set_xlabel('epoch', fontsize=8)
    axes[-1, source].xaxis.set_tick_params(labelbottom=True)
  axes[0, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='upper right', fontsize=8,
             bbox_to_anchor=(0.99, 0.6), title='op')
  fig.suptitle(f'{cell} cell: softmax(alpha) per edge', fontsize=11)
  fig.tight_layout()
  return save(fig, path)


def _series(records: Sequence[dict[str, float]]
            ) -> dict[str, tuple[list[float], list[float]]]:
  """``{key: (steps, values)}`` of every numeric key but step and epoch.

  A record without ``step`` is placed at its index among the records.
  """
  series: dict[str, tuple[list[float], list[float]]] = {}
  for index, record in enumerate(records):
    step = record.get('step', float(index))
    for key, value in record.items():
      if key in ('step', 'epoch'):
        continue
      steps, values = series.setdefault(key, ([], []))
      steps.append(step)
      values.append(value)
  return series


def _panels(keys: Iterable[str]) -> list[tuple[str, list[str]]]:
  """Groups keys into panels: losses, accuracies, then one per other key.

  Within a panel, train keys come first, then val keys, then the rest.
  """
  split = lambda k: (0 if k.startswith('train') else
                     1 if k.startswith('val') else 2, k)
  keys = sorted(keys, key=split)
  groups = [('loss', [k for k in keys if 'loss' in k]),
            ('accuracy', [k for k in keys if 'acc' in k and 'loss' not in k])]
  grouped = {k for _, group in groups for k in group}
  groups += [(k, [k]) for k in keys if k not in grouped]
  return [(title, group) for title, group in groups if group]


def plot_curves(workdir: PathLike, path: PathLike) -> Path:
  """Plots every numeric metric of ``metrics.jsonl`` against the step.

  Losses share one panel (train, val, and the epoch-end supernet val loss
  if present), accuracies another; every other key (lr, entropy,
  hypergradient_norm, ...) gets its own panel. Sparse series, such as the
  epoch-end ones, are drawn with markers.

  Args:
    workdir: the search run's workdir.
    path: where to save the plot, PNG or SVG by suffix.

  Returns:
    ``path``.

  Raises:
    FileNotFoundError: if the workdir or ``metrics.jsonl`` is missing.
    ValueError: if no line holds a numeric metric, or on a bad suffix.
  """
  path = check_image_path(path)
  workdir = Path(workdir)
  series = _series(Workdir(workdir).metrics())
  series = {k: v for k, v in series.items()
            if not health.is_health_metric(k)}  # Plotted by viz.health.
  if not series:
    raise ValueError(f'{workdir / "metrics.jsonl"}: no numeric metrics to plot')
  panels = _panels(series)
  cols = 2 if len(panels) > 1 else 1
  rows = math.ceil(len(panels) / cols)
  fig = new_figure(6.0 * cols, 3.2 * rows)
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  for ax, (title, keys) in zip(axes, panels):
    for key in keys:
      steps, values = series[key]
      ax.plot(steps, values, label=key, linewidth=1.3,
              marker='o' if len(steps) <= 40 else None, markersize=3.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('step', fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(keys) > 1:
      ax.legend(fontsize=8)
  for ax in axes[len(panels):]:
    ax.set_visible(False)
  fig.suptitle(f'search run {workdir.resolve().name}', fontsize=11)
  fig.tight_layout()
  return save(fig, path)


def stable_since(history: Iterable[tuple[int, Any]]) -> int | None:
  """The epoch from which the genotype stayed the same to the end.

  Genotypes are compared as architectures: swapping the two pairs of a node
  (their order only says which was stronger) or reordering a concat list is
  no change.

  Args:
    history: ``(epoch, genotype)`` pairs, as `Workdir.genotype_history` returns
      (sorted here by epoch).

  Returns:
    The first epoch whose genotype equals that of every later epoch (the
    last epoch if the last one changed it), or None for an empty history.
  """
  history = sorted(history, key=lambda item: item[0])
  if not history:
    return None
  final = history[-1][1]
  since = history[-1][0]
  for epoch, genotype in reversed(history):
    if not genotype.same_architecture(final):
      break
    since = epoch
  return since
