"""The seeds of a several-seed search, for the HTML report.

`jaxdarts.viz.report.write_report` on the workdir of a search with
``config.search.seeds > 1`` (`jaxdarts.run.seeds`) opens with this
section: the seeds' final genotypes side by side (their cells drawn, the
supernet's last validation accuracy, and the short retraining's accuracy
when ``experiments/select_seeds.py`` has ranked them), every seed's health
curves in one figure (:func:`plot_seeds_health`: the Hessian eigenvalue and
the parameter-free ops of the derived cells per epoch), and how often each
edge and op was chosen across the seeds (:func:`choice_counts`). The rest
of the page is about one seed: the kept one (:func:`shown_seed`).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxdarts.run.workdir import Workdir
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES
from jaxdarts.viz import cells
from jaxdarts.viz import health
from jaxdarts.viz.figure import check_image_path, finish_axes, new_figure, save

# (cell type, node, input state, op) -> number of seeds that chose it.
Counts = dict[tuple[str, int, int, str], int]


def choice_counts(genotypes: Sequence[Any]) -> Counts:
  """How many of ``genotypes`` keep each (cell, node, input, op) edge.

  Node ``k`` is the ``k``-th intermediate node (its pairs are
  ``cell[2k]`` and ``cell[2k + 1]``); an input is a state index (0, 1: the
  cell's inputs; ``2 + m``: node ``m``).
  """
  counts: collections.Counter = collections.Counter()
  for genotype in genotypes:
    for cell in CELL_TYPES:
      for position, (op, state) in enumerate(getattr(genotype, cell)):
        counts[(cell, position // 2, state, op)] += 1
  return dict(counts)


def shown_seed(workdir: Workdir) -> tuple[Workdir, str]:
  """The seed the rest of the report shows, and a sentence saying which:
  the kept one of ``selection.json``, else seed 0."""
  selection = workdir.selection()
  if selection is not None and (workdir / f'seed_{selection["kept"]}').is_dir():
    kept = selection['kept']
    return workdir.seed(kept), (f'Below: seed index {kept}, the one '
                                'experiments/select_seeds.py kept.')
  first = workdir.seeds()[0]
  return first, (f'Below: {first.path.name} (no selection.json yet: run '
                 'experiments/select_seeds.py to rank the seeds).')


def section(workdir: Workdir, images: Path) -> str:
  """The report's seeds section (HTML)."""
  from jaxdarts.viz import report  # pylint: disable=g-import-not-at-top
  e, table = report._e, report._table  # pylint: disable=protected-access
  seed_dirs = workdir.seeds()
  selection = workdir.selection() or {}
  retrained = {c['index']: c['accuracy']
               for c in selection.get('candidates', [])}
  found, notes = [], []
  for seed_dir in seed_dirs:
    try:
      genotype, note = seed_dir.genotype()
    except (FileNotFoundError, ValueError) as error:
      notes.append(f'{seed_dir.path.name}: {error}')
      continue
    if note:
      notes.append(f'{seed_dir.path.name}: {note}')
    found.append((seed_dir, genotype))
  parts = [f'<p>{len(seed_dirs)} searches ran together as one program. '
           f'{e(shown_seed(workdir)[1])}</p>']
  parts += [report._note(n) for n in notes]  # pylint: disable=protected-access
  header = ['']
  rows = {k: [e(k)] for k in ('search seed', 'supernet val accuracy',
                              'retrained accuracy', *CELL_TYPES, 'genotype')}
  for seed_dir, genotype in found:
    index = seed_dir.path.name
    header.append(index + (' (kept)' if selection.get('kept') == _index(
        seed_dir) else ''))
    rows['search seed'].append(e(_config_seed(seed_dir)))
    rows['supernet val accuracy'].append(e(_last(seed_dir,
                                                 'supernet_val_accuracy')))
    accuracy = retrained.get(_index(seed_dir))
    rows['retrained accuracy'].append(
        e('' if accuracy is None else f'{accuracy:.4f}'))
    for cell in CELL_TYPES:
      draw = functools.partial(cells.draw_cell, genotype, cell)
      rows[cell].append(report._figure(  # pylint: disable=protected-access
          draw, images / f'{index}_{cell}.png', f'{index} {cell} cell'))
    rows['genotype'].append(f'<code>{e(genotype)}</code>')
  parts.append(table(header, list(rows.values())))
  if any(health.health_series(d.path) for d in seed_dirs if _has_metrics(d)):
    parts.append(report._figure(  # pylint: disable=protected-access
        functools.partial(plot_seeds_health, seed_dirs),
        images / 'seeds_health.png', 'every seed\'s health'))
  parts.append(_counts_table([g for _, g in found], e, table))
  return report._section('Seeds', *parts)  # pylint: disable=protected-access


def plot_seeds_health(seed_dirs: Sequence[Workdir], path) -> Path:
  """Every seed's health signals against the epoch, one line per seed.

  Panels: the dominant eigenvalue of the alphas' Hessian (where it was
  computed), then per cell type the derived cell's parameter-free ops
  (skips and poolings). The signals are those `jaxdarts.viz.health` plots
  for one run, read from each ``seed_<i>/metrics.jsonl``.

  Args:
    seed_dirs: the ``seed_<i>/`` workdirs.
    path: PNG or SVG (by suffix).

  Returns:
    ``path``.
  """
  path = check_image_path(path)
  series = [(d.path.name, health.health_series(d.path))
            for d in seed_dirs if _has_metrics(d)]
  cell_types = sorted({k.split('_param_free_ops')[0] for _, s in series
                       for k in s if k.endswith('_param_free_ops')})
  panels = [('dominant eigenvalue of the alphas\' Hessian',
             health.EIGENVALUE)] + [
                 (f'parameter-free ops, derived {cell} cell',
                  f'{cell}_param_free_ops') for cell in cell_types]
  fig = new_figure(4.2 * len(panels), 3.4)
  axes = fig.subplots(1, len(panels), squeeze=False).ravel()
  for ax, (title, key) in zip(axes, panels):
    for name, seed_series in series:
      if key in seed_series:
        epochs, values = seed_series[key]
        ax.plot(epochs, values, marker='o', markersize=3, linewidth=1.2,
                label=name)
    finish_axes(ax, title)
  fig.tight_layout()
  return save(fig, path)


def _has_metrics(seed_dir: Workdir) -> bool:
  return (seed_dir / 'metrics.jsonl').is_file()


def _counts_table(genotypes: Sequence[Any], e, table) -> str:
  """Rows: the edges some seed kept; columns: the ops; cells: counts."""
  counts = choice_counts(genotypes)
  ops = sorted({op for *_, op in counts})
  edges = sorted({key[:3] for key in counts})
  rows = [[e(cell), e(node), e(state)]
          + [e(f'{counts.get((cell, node, state, op), 0)}/{len(genotypes)}'
               if (cell, node, state, op) in counts else '')
             for op in ops] for cell, node, state in edges]
  return ('<h3>How often each edge and op was chosen across the seeds</h3>\n'
          + table(['cell', 'node', 'input', *ops], rows))


def _index(seed_dir: Workdir) -> int:
  return int(seed_dir.path.name[len('seed_'):])


def _config_seed(seed_dir: Workdir) -> str:
  try:
    return str(seed_dir.config()['search']['seed'])
  except (FileNotFoundError, ValueError, KeyError, TypeError):
    return ''


def _last(seed_dir: Workdir, name: str) -> str:
  try:
    values = [r[name] for r in seed_dir.metrics() if name in r]
  except FileNotFoundError:
    return ''
  return f'{values[-1]:.4f}' if values else ''
