"""A one-file HTML report of a search run: `write_report(workdir)`.

The page, ``workdir/report/index.html``, is self-contained (CSS inline, every
image a base64 PNG data URI), so it can be mailed or attached as it is. It
shows, from what a search run (`jaxdarts.run.search`, ``experiments/
cifar_search.py``) wrote into its workdir:

* the final genotype in the papers' text form (``genotype.json``, else
  ``genotype.txt``, else the newest ``genotypes/epoch_NNN.json`` of a run
  still going, with a note);
* the parameter count and multiply-adds of the network derived from it at
  the papers' CIFAR evaluation size (`cifar_model_size`);
* drawings of the normal and the reduction cell;
* the genotype at each epoch and the epoch since which it is unchanged
  (`jaxdarts.viz.cells.stable_since`);
* the evolution of the op weights (``alphas/epoch_NNN.npz``);
* the search's health (`jaxdarts.viz.health`): the Hessian's dominant
  eigenvalue, the parameter-free op counts, edge entropy and margin per
  epoch, and where DARTS-ES stopped the search (``early_stop.json``);
* the training and validation curves (``metrics.jsonl``) and the last value
  of every metric;
* the config (``config.json``);
* for a segmentation search, a few validation images with their true and
  predicted masks (`jaxdarts.viz.segmentation`).

A missing or unreadable part is stated in the page where it would have been;
only a workdir without any genotype is an error. Every text taken from the
workdir is HTML-escaped.

The workdir of a search of several seeds (``seed_<i>/``, `jaxdarts.run.
seeds`) opens with the seeds side by side and how often each edge and op
was chosen across them (`jaxdarts.viz.seeds`); the genotype, cells, history,
alphas and curves are then those of the kept seed (``selection.json``) or
seed 0.
"""

from __future__ import annotations

import base64
import datetime
import functools
import html
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdarts.cost import counting
from jaxdarts.run.workdir import Workdir
from jaxdarts.viz import cells
from jaxdarts.viz import health
from jaxdarts.viz import history
from jaxdarts.viz import segmentation
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES

PathLike = str | os.PathLike

REPORT_DIR = 'report'
REPORT_FILE = 'index.html'

# The papers' CIFAR-10 evaluation network.
EVAL_CHANNELS = 36
EVAL_LAYERS = 20
EVAL_NUM_CLASSES = 10
EVAL_IMAGE_SHAPE = (32, 32, 3)

_SEARCH_SCRIPT = 'experiments/cifar_search.py'

# What reading or plotting one part of a workdir may raise; the page then
# says what went wrong there instead of failing. ImportError: no matplotlib.
_PART_ERRORS = (OSError, ValueError, ImportError, EOFError, zipfile.BadZipFile)

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em;
     border-bottom: 1px solid #ccc; }
pre, code { font-family: Menlo, Consolas, monospace; font-size: 0.85em; }
pre { background: #f6f6f6; padding: 0.7em; white-space: pre-wrap;
      word-break: break-word; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #eee; }
td code { white-space: pre-wrap; word-break: break-word; }
tr.stable td { background: #eef7ee; }
.note { background: #fff4d6; border-left: 4px solid #e0a800;
        padding: 0.4em 0.8em; margin: 0.6em 0; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.meta { color: #666; }
"""


class ModelSize(NamedTuple):
  """Size of an evaluation network.

  Attributes:
    params: parameters, the auxiliary head left out (the papers' count).
    mult_adds: multiply-adds of one forward pass of one image.
  """
  params: int
  mult_adds: int


@functools.lru_cache(maxsize=16)
def cifar_model_size(genotype: Genotype, channels: int = EVAL_CHANNELS,
                     layers: int = EVAL_LAYERS,
                     num_classes: int = EVAL_NUM_CLASSES) -> ModelSize:
  """Parameters and multiply-adds of ``NetworkCIFAR(genotype)`` on 32x32x3.

  Both are measured abstractly: the network is initialised with
  `jax.eval_shape` and its forward pass traced to a jaxpr, whose
  multiply-adds `counting.jaxpr_macs` sums (what `counting.count_flops`
  does, sharing the one abstract initialisation). Nothing is compiled or
  computed: a few seconds on a CPU. Memoised per genotype and size.

  Args:
    genotype: the architecture.
    channels: initial channels C (36 in the papers).
    layers: number of cells (20 in the papers).
    num_classes: classifier outputs (10 for CIFAR-10).

  Returns:
    The parameter count (auxiliary head excluded) and the multiply-adds per
    image (evaluation mode).
  """
  model = NetworkCIFAR(genotype, channels=channels, layers=layers,
                       num_classes=num_classes, auxiliary=True)
  images = jax.ShapeDtypeStruct((1,) + EVAL_IMAGE_SHAPE, jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), images)
  forward = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))
  return ModelSize(counting.count_params(variables),
                   counting.jaxpr_macs(forward(variables, images)))


def write_report(workdir: PathLike) -> Path:
  """Writes the HTML report of a search run; see the module docstring.

  Args:
    workdir: the search run's workdir.

  Returns:
    The page's path, ``workdir/report/index.html``.

  Raises:
    FileNotFoundError: if the workdir does not exist or holds no genotype
      (neither ``genotype.json``/``.txt`` nor ``genotypes/epoch_NNN.json``).
    ValueError: if the final genotype's file is malformed.
  """
  workdir = Workdir(workdir)
  shown, seeds_part = workdir, []  # With several seeds: one seed's parts.
  if workdir.seeds():
    from jaxdarts.viz import seeds  # pylint: disable=g-import-not-at-top
    shown, _ = seeds.shown_seed(workdir)
    seeds_part = [functools.partial(seeds.section, workdir)]
  genotype, origin = shown.genotype()
  config, config_error = _read_config(workdir)
  with tempfile.TemporaryDirectory(prefix='jaxdarts_report_') as tmp:
    images = Path(tmp)
    sections = [
        *(part(images) for part in seeds_part),
        _genotype_section(genotype, origin),
        _size_section(genotype),
        _cells_section(genotype, images),
        _history_section(shown, config),
        _alphas_section(shown, images),
        _health_section(shown, images),
        _metrics_section(shown, images),
        _cost_section(shown, config, images),
        _config_section(config, config_error),
    ]
    if (workdir / segmentation.SAMPLES_FILE).is_file():
      sections.insert(-1, _section(
          'Segmentation: validation images, true and predicted masks',
          _note('The first images of the alphas half; the supernet at the '
                'end of the search. Background black, ignored pixels white.'),
          _figure(lambda path: segmentation.draw_samples(
              workdir / segmentation.SAMPLES_FILE, path),
                  images / 'segmentation.png',
                  'validation images, true and predicted masks')))
  path = workdir / REPORT_DIR / REPORT_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(_page(workdir, config, sections), encoding='utf-8')
  return path


# ---------------------------------------------------------------------------
# Reading the workdir.


def _read_config(workdir: Workdir) -> tuple[dict[str, Any] | None, str | None]:
  """``config.json`` as a dict, or None and why not."""
  try:
    return workdir.config(), None
  except (OSError, ValueError) as e:
    return None, str(e)


def _config_value(config: Mapping[str, Any] | None, dotted: str) -> Any:
  """``config['a']['b']`` for ``'a.b'``, or None if any part is missing."""
  value: Any = config
  for key in dotted.split('.'):
    if not isinstance(value, Mapping) or key not in value:
      return None
    value = value[key]
  return value


def _flatten(config: Mapping[str, Any],
             prefix: str = '') -> list[tuple[str, Any]]:
  """``(dotted key, value)`` of every non-mapping leaf, in file order."""
  items = []
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping) and value:
      items += _flatten(value, f'{name}.')
    else:
      items.append((name, value))
  return items


def _gaps(epochs: Sequence[int]) -> list[int]:
  """Epochs before the last of ``epochs`` that are not in it."""
  present = set(epochs)
  return [e for e in range(max(present, default=-1)) if e not in present]


# ---------------------------------------------------------------------------
# HTML pieces.


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _note(text: str) -> str:
  return f'<p class="note">{_e(text)}</p>'


def _section(title: str, *parts: str) -> str:
  body = '\n'.join(parts)
  return f'<section>\n<h2>{_e(title)}</h2>\n{body}\n</section>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           row_classes: Sequence[str] | None = None) -> str:
  """A table of already-escaped cell HTML; header cells are escaped here."""
  head = ''.join(f'<th>{_e(h)}</th>' for h in header)
  lines = [f'<table>\n<tr>{head}</tr>']
  for k, row in enumerate(rows):
    cls = row_classes[k] if row_classes else ''
    attr = f' class="{_e(cls)}"' if cls else ''
    cells = ''.join(f'<td>{c}</td>' for c in row)
    lines.append(f'<tr{attr}>{cells}</tr>')
  return '\n'.join(lines) + '\n</table>'


def _png(path: Path, alt: str) -> str:
  data = base64.b64encode(path.read_bytes()).decode('ascii')
  return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _figure(draw: Callable[[Path], Any], path: Path, alt: str) -> str:
  """``draw(path)`` embedded as an image, or a note of why it failed."""
  try:
    draw(path)
  except ImportError as e:
    return _note(f'{alt}: not drawn, matplotlib is missing ({e}); '
                 'pip install matplotlib')
  except _PART_ERRORS as e:
    return _note(f'{alt}: not drawn: {e}')
  return _png(path, alt)


def _millions(count: int) -> str:
  return f'{count / 1e6:.2f}M ({count:,})'


# ---------------------------------------------------------------------------
# Sections.


def _page(workdir: Workdir, config: Mapping[str, Any] | None,
          sections: Sequence[str]) -> str:
  now = datetime.datetime.now(datetime.timezone.utc)
  facts = [('workdir', str(workdir.path.resolve())),
           ('generated', now.strftime('%Y-%m-%d %H:%M UTC'))]
  for key in ('data.name', 'search.hypergradient', 'search.epochs',
              'model.channels', 'model.layers'):
    value = _config_value(config, key)
    if value is not None:
      facts.append((key, value))
  meta = ' &middot; '.join(f'{_e(k)}: <code>{_e(v)}</code>' for k, v in facts)
  title = f'jaxdarts search report: {workdir.path.resolve().name}'
  return (
      '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
      f'<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n'
      f'<h1>{_e(title)}</h1>\n<p class="meta">{meta}</p>\n'
      + '\n'.join(sections) + '\n</body>\n</html>\n')


def _genotype_section(genotype: Genotype, origin: str | None) -> str:
  parts = [_note(origin)] if origin else []
  parts.append(f'<pre>{_e(genotype)}</pre>')
  return _section('Final genotype', *parts)


def _size_section(genotype: Genotype) -> str:
  where = (f'NetworkCIFAR, C={EVAL_CHANNELS}, {EVAL_LAYERS} cells, '
           f'{EVAL_NUM_CLASSES} classes, one '
           f'{"x".join(map(str, EVAL_IMAGE_SHAPE))} image')
  try:
    size = cifar_model_size(genotype)
  except (ValueError, KeyError, TypeError) as e:
    return _section('Derived network', _note(
        f'The size of {where} could not be measured: {e}'))
  rows = [[_e('parameters'), _e(_millions(size.params)),
           _e('auxiliary head not counted, as in the papers')],
          [_e('multiply-adds'), _e(_millions(size.mult_adds)),
           _e('convolutions and dense layers, evaluation mode')]]
  return _section(
      'Derived network',
      f'<p>Measured at the papers\' CIFAR-10 evaluation size: {_e(where)}.</p>',
      _table(('quantity', 'value', 'convention'), rows))


def _cells_section(genotype: Genotype, images: Path) -> str:
  parts = []
  for cell in CELL_TYPES:
    draw = functools.partial(cells.draw_cell, genotype, cell)
    parts.append(f'<h3>{_e(cell)} cell</h3>')
    parts.append(_figure(draw, images / f'cell_{cell}.png', f'{cell} cell'))
  return _section('Cells', *parts)


def _history_section(workdir: Workdir,
                     config: Mapping[str, Any] | None) -> str:
  title = 'Genotype at each epoch'
  try:
    genotypes = workdir.genotype_history()
  except _PART_ERRORS as e:
    return _section(title, _note(f'No per-epoch genotypes: {e}'))
  epochs = [epoch for epoch, _ in genotypes]
  since = history.stable_since(genotypes)
  parts = [f'<p>Epochs are numbered from 0. The genotype is unchanged since '
           f'epoch <b>{_e(since)}</b> (last epoch written: {_e(epochs[-1])}'
           f'{_e(_of_total(config))}).</p>']
  if gaps := _gaps(epochs):
    parts.append(_note('No genotype file for epoch(s) '
                       f'{", ".join(map(str, gaps))}.'))
  if stop := _early_stop(workdir):
    parts.append(_note(stop))
  parts.append(_history_table(genotypes, since))
  return _section(title, *parts)


def _early_stop(workdir: Workdir) -> str | None:
  """What ``early_stop.json`` says, in words, or None."""
  try:
    stop = workdir.early_stop()
  except (OSError, ValueError) as e:
    return f'early_stop.json could not be read: {e}'
  if stop is None:
    return None
  return (f'DARTS-ES stopped the search after epoch {stop.get("epoch")} '
          f'(eigenvalue local-average ratio {stop.get("ratio", 0):.3g}); the '
          'final genotype is that of the stop epoch, '
          f'{stop.get("stop_epoch")}.')


def _health_section(workdir: Workdir, images: Path) -> str:
  title = 'Search health'
  parts = ['<p>Per epoch: the dominant eigenvalue of the validation loss\'s '
           'Hessian in the alphas (Zela et al., ICLR 2020), the skip '
           'connections and poolings of the derived cells, and the mean over '
           'edges of the op weights\' entropy and of their top-1 minus '
           'top-2 margin.</p>']
  if stop := _early_stop(workdir):
    parts.append(_note(stop))
  try:
    recorded = bool(health.health_series(workdir.path))
  except _PART_ERRORS:
    recorded = False
  if not recorded:  # A run from before health was logged: nothing missing.
    return _section(title, '<p>No health signals in metrics.jsonl.</p>')
  draw = functools.partial(health.plot_health, workdir.path)
  parts.append(_figure(draw, images / 'health.png', 'search health'))
  return _section(title, *parts)


def _of_total(config: Mapping[str, Any] | None) -> str:
  total = _config_value(config, 'search.epochs')
  if not isinstance(total, int):
    return ''
  return f' of {total} epochs, 0 .. {total - 1}'


def _history_table(genotypes: Sequence[tuple[int, Genotype]],
                   since: int | None) -> str:
  """One row per epoch: whether the architecture changed, and its text."""
  rows, classes, previous = [], [], None
  for epoch, genotype in genotypes:
    if previous is None:
      change = 'first'
    elif genotype.same_architecture(previous):
      change = 'same'
    else:
      change = 'changed'
    rows.append([_e(epoch), _e(change), f'<code>{_e(genotype)}</code>'])
    classes.append('stable' if since is not None and epoch >= since else '')
    previous = genotype
  return _table(('epoch', 'vs previous', 'genotype'), rows, classes)


def _alphas_section(workdir: Workdir, images: Path) -> str:
  title = 'Op weights (softmax of the alphas) per epoch'
  try:
    epochs, _, _ = workdir.alpha_history()
  except _PART_ERRORS as e:
    return _section(title, _note(f'No alpha plots: {e}'))
  parts = []
  if gaps := _gaps(epochs.tolist()):
    parts.append(_note('No alphas file for epoch(s) '
                       f'{", ".join(map(str, gaps))}; the plots skip them.'))
  for cell in CELL_TYPES:
    draw = functools.partial(history.plot_alpha_evolution, workdir.path,
                             cell=cell)
    parts.append(f'<h3>{_e(cell)} cell</h3>')
    parts.append(_figure(draw, images / f'alphas_{cell}.png',
                         f'{cell} cell op weights'))
  return _section(title, *parts)


def _metrics_section(workdir: Workdir, images: Path) -> str:
  title = 'Training and validation curves'
  try:
    records = workdir.metrics()
  except _PART_ERRORS as e:
    return _section(title, _note(f'No curves: {e}'))
  draw = functools.partial(history.plot_curves, workdir.path)
  return _section(title, _figure(draw, images / 'curves.png', 'curves'),
                  _last_values(records))


def _cost_section(workdir: Workdir, config: Mapping[str, Any] | None,
                  images: Path) -> str:
  """Cost against accuracy of a budgeted search (empty otherwise)."""
  from jaxdarts.viz import cost  # pylint: disable=g-import-not-at-top
  try:
    records = cost.cost_records(workdir.metrics())
  except _PART_ERRORS:
    return ''
  if not records:
    return ''
  budget = _config_value(config, 'search.budget')
  budget = budget if isinstance(budget, Mapping) else {}
  metric = budget.get('metric', 'macs')
  draw = functools.partial(cost.plot_cost_accuracy, records,
                           limit=budget.get('limit', 0.), metric=metric)
  last = records[-1]
  rows = [[_e(k), _e(f'{v:.6g}')] for k, v in sorted(last.items())
          if k.startswith(('expected_', 'derived_'))]
  return _section('Cost and accuracy', _note(cost.budget_text(budget)),
                  _figure(draw, images / 'cost.png', 'cost against accuracy'),
                  '<h3>Last epoch</h3>\n' + _table(('cost', 'value'), rows))


def _last_values(records: Sequence[Mapping[str, float]]) -> str:
  """A table of the last value of every metric and the step it was at."""
  last: dict[str, tuple[float, float | None]] = {}
  for record in records:
    for key, value in record.items():
      if key not in ('step', 'epoch'):
        last[key] = (value, record.get('step'))
  if not last:
    return _note('metrics.jsonl holds no numeric metric.')
  step = lambda s: '' if s is None else f'{s:g}'
  rows = [[_e(key), _e(f'{value:.4g}'), _e(step(at))]
          for key, (value, at) in sorted(last.items())]
  return '<h3>Last values</h3>\n' + _table(('metric', 'value', 'step'), rows)


def _config_section(config: Mapping[str, Any] | None,
                    error: str | None) -> str:
  if config is None:
    return _section('Config', _note(error or 'No config.'))
  rows = [[f'<code>{_e(key)}</code>', f'<code>{_e(json.dumps(value))}</code>']
          for key, value in _flatten(config)]
  return _section('Config', _table(('field', 'value'), rows))
