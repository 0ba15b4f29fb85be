"""Drawings of genotype cells and plots of a search run's workdir.

Cell drawings:

* `to_dot`: Graphviz DOT text of a cell (render it with ``dot -Tpng`` where
  Graphviz is installed; nothing here needs it).
* `draw_cell`: the cell DAG drawn with matplotlib alone, in a layered
  left-to-right layout: the cell inputs ``c_{k-2}`` and ``c_{k-1}`` on the
  left, each intermediate node in the column of its depth (one more than its
  deepest input), the output ``c_{k}`` on the right; one arrow per
  ``(op, input)`` pair, labelled with the op.
* `draw_genotype`: both cells as PNG, SVG and DOT files.

Search-run plots, read from the workdir a search writes:

* ``metrics.jsonl`` (`load_metrics`, `plot_curves`),
* ``alphas/epoch_NNN.npz`` (`load_alpha_history`, `plot_alpha_evolution`),
* ``genotypes/epoch_NNN.json`` (`genotype_history`, `stable_since`).

matplotlib is imported inside the functions that draw, so importing this
module (or jaxdarts) needs neither matplotlib nor a display. Figures are
`matplotlib.figure.Figure` objects on an Agg canvas, made without pyplot:
they are never registered with pyplot, so none is left open, and the global
matplotlib backend of the caller (a notebook's, say) is left as it is.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxdarts.genotype import Genotype
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES, DARTS_PRIMITIVES, SearchSpace

if TYPE_CHECKING:
  from matplotlib.axes import Axes
  from matplotlib.figure import Figure

PathLike = str | os.PathLike

IMAGE_SUFFIXES = ('.png', '.svg')

_FROM_SEARCH = 'it is written by a search run into its workdir'
_EPOCH_FILE = re.compile(r'^epoch_(\d+)\.(npz|json|txt)$')


# ---------------------------------------------------------------------------
# Cell structure.


class _Edge(NamedTuple):
  op: str
  source: int  # State index: 0 = c_{k-2}, 1 = c_{k-1}, 2 + m = node m.
  target: int


class _Cell(NamedTuple):
  num_nodes: int
  edges: tuple[_Edge, ...]
  concat: tuple[int, ...]

  @property
  def output(self) -> int:
    """State index given to the cell output ``c_{k}``."""
    return 2 + self.num_nodes


def state_name(state: int, num_nodes: int | None = None) -> str:
  """Name of a cell state: ``c_{k-2}``, ``c_{k-1}``, ``0`` .. ``n-1``.

  Args:
    state: state index (0 and 1 are the cell inputs, ``2 + m`` is node m).
    num_nodes: if given, state ``2 + num_nodes`` is named ``c_{k}`` (the
      cell output).
  """
  if state == 0:
    return 'c_{k-2}'
  if state == 1:
    return 'c_{k-1}'
  if num_nodes is not None and state == 2 + num_nodes:
    return 'c_{k}'
  return str(state - 2)


def _state_label(state: int, num_nodes: int) -> str:
  """`state_name` as matplotlib mathtext (subscripts rendered)."""
  if state in (0, 1) or state == 2 + num_nodes:
    return f'${state_name(state, num_nodes)}$'
  return state_name(state)


def _cell(genotype: Genotype, cell: str) -> _Cell:
  """The edges and concat list of one cell, structurally checked.

  Only the structure is checked (two edges per node, inputs of node i in
  ``0 .. 1 + i``, concat states in range), so cells with ops outside
  `jaxdarts.genotype.KNOWN_OPS` can be drawn too.

  Raises:
    ValueError: on an unknown cell type or a malformed cell.
  """
  pairs, concat = genotype.cell(cell)
  if not pairs or len(pairs) % 2:
    raise ValueError(f'{cell} cell: expected 2 (op, input) pairs per node, got '
                     f'{len(pairs)} pairs')
  num_nodes = len(pairs) // 2
  edges = []
  for k, (op, source) in enumerate(pairs):
    node = k // 2
    if not 0 <= source < 2 + node:
      raise ValueError(f'{cell} cell: pair {k} (node {node}) reads state '
                       f'{source}, must be 0 <= input < {2 + node}')
    edges.append(_Edge(op, source, 2 + node))
  for state in concat:
    if not 0 <= state < 2 + num_nodes:
      raise ValueError(f'{cell} cell: concat state {state} out of range '
                       f'0 .. {1 + num_nodes}')
  return _Cell(num_nodes, tuple(edges), tuple(concat))


# ---------------------------------------------------------------------------
# DOT.


def _dot_quote(text: str) -> str:
  escaped = text.replace('\\', '\\\\').replace('"', '\\"')
  return f'"{escaped}"'


def to_dot(genotype: Genotype, cell: str = 'normal') -> str:
  """Graphviz DOT text of one cell of ``genotype``.

  Nodes are ``c_{k-2}``, ``c_{k-1}``, the intermediate nodes ``0`` ..
  ``n-1`` and the output ``c_{k}``; there is one edge per ``(op, input)``
  pair, labelled with the op, and an unlabelled edge from every concat state
  to the output. All names and labels are quoted.

  Args:
    genotype: the genotype.
    cell: ``'normal'`` or ``'reduce'``.

  Returns:
    The DOT text, ending with a newline.

  Raises:
    ValueError: on an unknown cell type or a malformed cell.
  """
  c = _cell(genotype, cell)
  name = lambda s: _dot_quote(state_name(s, c.num_nodes))
  lines = [
      f'digraph {_dot_quote(cell)} {{',
      '  rankdir=LR;',
      '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
      '  edge [fontname="Helvetica", fontsize=10];',
      f'  {name(0)} [fillcolor="darkseagreen2"];',
      f'  {name(1)} [fillcolor="darkseagreen2"];',
  ]
  lines += [f'  {name(2 + m)} [fillcolor="lightblue"];'
            for m in range(c.num_nodes)]
  lines.append(f'  {name(c.output)} [fillcolor="palegoldenrod"];')
  lines += [f'  {name(e.source)} -> {name(e.target)} '
            f'[label={_dot_quote(e.op)}];' for e in c.edges]
  lines += [f'  {name(s)} -> {name(c.output)} [color="gray50"];'
            for s in c.concat]
  lines.append('}')
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------
# Layout of the cell drawing (data units; the axes use an equal aspect).

_COLUMN = 3.3  # Horizontal distance between layers.
_ROW = 1.3  # Vertical distance between states of a layer.
_BOX_W, _BOX_H = 1.1, 0.55
_INCHES_PER_UNIT = 0.8
_RADII = (0.18, -0.18, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6)
_LABEL_T = np.linspace(0.2, 0.8, 13)  # Candidate label spots along an arrow.
_PREFERRED_T = 0.6  # Nearer the target, where arrows fan in less.
_FILL = {'input': '#b7e4c7', 'node': '#a9d6f5', 'output': '#fce38a'}

Point = tuple[float, float]


class _Arrow(NamedTuple):
  source: int
  target: int
  rad: float  # arc3 curvature; 0 is straight.
  op: str | None  # None for the unlabelled concat arrows.


def _depths(c: _Cell) -> dict[int, int]:
  """Layer of every state: 0 for the inputs, 1 + deepest input otherwise."""
  depth = {0: 0, 1: 0}
  for node in range(c.num_nodes):
    state = 2 + node
    depth[state] = 1 + max(depth[s] for s in _predecessors(c, state))
  depth[c.output] = 1 + max(depth.values())
  return depth


def _predecessors(c: _Cell, state: int) -> list[int]:
  if state == c.output:
    return list(c.concat)
  return [e.source for e in c.edges if e.target == state]


def _layout(c: _Cell) -> dict[int, Point]:
  """Centre of every state's box.

  Layers are columns. The two inputs are spread over most of the height of
  the tallest layer, so that the arrows leaving them fan out. Within a later
  layer, states are ordered by the mean height of their inputs (fewer
  crossings), ties by index, and centred on y = 0.
  """
  depth = _depths(c)
  layers = [[s for s in sorted(depth) if depth[s] == layer]
            for layer in range(max(depth.values()) + 1)]
  tallest = max(len(states) for states in layers[1:])
  half = max(_ROW, 0.7 * (tallest - 1) * _ROW) / 2
  positions = {0: (0.0, half), 1: (0.0, -half)}
  for layer, states in enumerate(layers[1:], start=1):
    mean_y = {s: np.mean([positions[p][1] for p in _predecessors(c, s)])
              for s in states}
    states = sorted(states, key=lambda s: (-mean_y[s], s))
    for k, state in enumerate(states):
      positions[state] = (layer * _COLUMN, ((len(states) - 1) / 2 - k) * _ROW)
  return positions


def _curve(start: Point, end: Point, rad: float, t: np.ndarray) -> np.ndarray:
  """Points at parameters ``t`` of matplotlib's ``arc3,rad=rad`` curve.

  The curve is the quadratic Bezier through ``start`` and ``end`` with its
  control point offset from the midpoint by ``rad`` times the chord turned
  clockwise, as `matplotlib.patches.ConnectionStyle.Arc3` computes it (in
  display space, which the equal aspect makes similar to data space).
  """
  (x1, y1), (x2, y2) = start, end
  control = np.array([(x1 + x2) / 2 + rad * (y2 - y1),
                      (y1 + y2) / 2 - rad * (x2 - x1)])
  t = np.asarray(t, dtype=np.float64)[:, None]
  return ((1 - t) ** 2 * np.array(start) + 2 * t * (1 - t) * control
          + t ** 2 * np.array(end))


def _inside(points: np.ndarray, centre: Point, margin: float) -> np.ndarray:
  """Which ``points`` lie in the box at ``centre`` grown by ``margin``."""
  return ((np.abs(points[:, 0] - centre[0]) < _BOX_W / 2 + margin)
          & (np.abs(points[:, 1] - centre[1]) < _BOX_H / 2 + margin))


def _route(source: int, target: int, positions: dict[int, Point],
           taken: set[tuple[int, int, float]]) -> float:
  """The curvature of an arrow: 0 (straight) unless it would cross a box.

  Tries a straight line, then ever stronger bends either way, and keeps the
  first that misses every other state's box and is not already used by an
  arrow between the same two states (a node may read one state twice).
  """
  others = [p for s, p in positions.items() if s not in (source, target)]
  t = np.linspace(0.0, 1.0, 60)
  free = [r for r in (0.0,) + _RADII if (source, target, r) not in taken]
  for rad in free:
    points = _curve(positions[source], positions[target], rad, t)
    if not any(_inside(points, centre, 0.12).any() for centre in others):
      return rad
  return free[0]


def _arrows(c: _Cell, positions: dict[int, Point]) -> list[_Arrow]:
  """The concat arrows, then one arrow per (op, input) pair, all routed."""
  arrows = [_Arrow(s, c.output, _route(s, c.output, positions, set()), None)
            for s in c.concat]
  taken: set[tuple[int, int, float]] = set()
  for edge in c.edges:
    rad = _route(edge.source, edge.target, positions, taken)
    taken.add((edge.source, edge.target, rad))
    arrows.append(_Arrow(edge.source, edge.target, rad, edge.op))
  return arrows


def _arrow_points(arrow: _Arrow, positions: dict[int, Point],
                  num: int = 80) -> np.ndarray:
  return _curve(positions[arrow.source], positions[arrow.target], arrow.rad,
                np.linspace(0.0, 1.0, num))


def _visible_points(arrow: _Arrow, positions: dict[int, Point]) -> np.ndarray:
  """Points of the arrow's curve outside its two boxes, source to target."""
  points = _arrow_points(arrow, positions, 120)
  hidden = (_inside(points, positions[arrow.source], 0.03)
            | _inside(points, positions[arrow.target], 0.03))
  return points[~hidden]


def _op_color(op: str) -> str:
  """A fixed colour per op name (DARTS primitives first, then by hash)."""
  palette = ('#7f7f7f', '#1f77b4', '#17becf', '#2ca02c', '#d62728',
             '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#bcbd22')
  if op in DARTS_PRIMITIVES:
    return palette[DARTS_PRIMITIVES.index(op)]
  return palette[len(DARTS_PRIMITIVES) + sum(map(ord, op)) % 2]


# ---------------------------------------------------------------------------
# Drawing.


def _new_figure(width: float, height: float) -> Figure:
  """A pyplot-free figure on an Agg canvas."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  return fig


def _check_image_path(path: PathLike) -> Path:
  path = Path(path)
  if path.suffix.lower() not in IMAGE_SUFFIXES:
    raise ValueError(f'{path}: unsupported image format {path.suffix!r}; use '
                     f'one of {", ".join(IMAGE_SUFFIXES)}')
  return path


def _save(fig: Figure, path: Path, dpi: int = 150) -> Path:
  """Saves ``fig`` in the format named by the suffix; SVG text stays text."""
  import matplotlib
  path.parent.mkdir(parents=True, exist_ok=True)
  with matplotlib.rc_context({'svg.fonttype': 'none',
                              'svg.hashsalt': 'jaxdarts'}):
    fig.savefig(path, format=path.suffix.lower()[1:], dpi=dpi,
                bbox_inches='tight', pad_inches=0.1)
  return path


def _draw_boxes(ax: Axes, c: _Cell, positions: dict[int, Point]
                ) -> dict[int, Any]:
  """One rounded, labelled box per state; returns the patches by state."""
  from matplotlib.patches import FancyBboxPatch
  boxes = {}
  for state, (x, y) in positions.items():
    kind = ('input' if state < 2 else 'output' if state == c.output else 'node')
    box = FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                         boxstyle='round,pad=0.02,rounding_size=0.12',
                         facecolor=_FILL[kind], edgecolor='#333333',
                         linewidth=1.2, zorder=3)
    ax.add_patch(box)
    ax.text(x, y, _state_label(state, c.num_nodes), ha='center', va='center',
            fontsize=12, zorder=4)
    boxes[state] = box
  return boxes


def _draw_arrow(ax: Axes, arrow: _Arrow, positions: dict[int, Point]) -> None:
  """The arrow from box edge to box edge; concat arrows are grey and dashed."""
  from matplotlib.patches import FancyArrowPatch
  from matplotlib.path import Path as MplPath
  style = (dict(color='#9a9a9a', linestyle='--', linewidth=1.0)
           if arrow.op is None else
           dict(color=_op_color(arrow.op), linewidth=1.4))
  ax.add_patch(FancyArrowPatch(
      path=MplPath(_visible_points(arrow, positions)), arrowstyle='-|>',
      mutation_scale=12, zorder=2, **style))


def _overlap(a: Any, b: Any) -> float:
  """Area shared by two display-space bounding boxes."""
  width = min(a.x1, b.x1) - max(a.x0, b.x0)
  height = min(a.y1, b.y1) - max(a.y0, b.y0)
  return max(width, 0.0) * max(height, 0.0)


def _label_cost(extent: Any, obstacles: list[Any], lines: np.ndarray) -> float:
  """How much a label's box covers: boxes, labels, arrowheads and lines.

  Overlapping area counts fully; each point of another arrow (sampled every
  few pixels) under the label costs a little, so labels avoid crossings.
  """
  area = sum(_overlap(extent, o) for o in obstacles)
  covered = ((lines[:, 0] > extent.x0) & (lines[:, 0] < extent.x1)
             & (lines[:, 1] > extent.y0) & (lines[:, 1] < extent.y1))
  return area + 40.0 * float(covered.sum())


def _place_label(ax: Axes, arrow: _Arrow, positions: dict[int, Point],
                 obstacles: list[Any], lines: np.ndarray) -> None:
  """Puts the op label on its arrow where it covers the least.

  Candidate spots lie along the arrow; the cheapest (`_label_cost`, ties
  broken towards `_PREFERRED_T`) is kept and its box added to ``obstacles``.
  ``lines`` holds display-space points of the other arrows.
  """
  spots = _curve(positions[arrow.source], positions[arrow.target], arrow.rad,
                 _LABEL_T)
  text = ax.text(0, 0, arrow.op, ha='center', va='center', fontsize=8.5,
                 color=_op_color(arrow.op), zorder=5,
                 bbox=dict(boxstyle='round,pad=0.15', facecolor='white',
                           edgecolor='none', alpha=0.9))
  costs = []
  for t, spot in zip(_LABEL_T, spots):
    text.set_position(spot)
    extent = text.get_window_extent().padded(2)
    costs.append(_label_cost(extent, obstacles, lines)
                 + 5.0 * abs(t - _PREFERRED_T))
  text.set_position(spots[int(np.argmin(costs))])
  obstacles.append(text.get_window_extent().padded(2))


def _extent(positions: dict[int, Point],
            arrows: Iterable[_Arrow]) -> tuple[float, float, float, float]:
  """Data limits holding every box and arrow, with a margin for labels."""
  points = np.concatenate([np.array(list(positions.values()))]
                          + [_arrow_points(a, positions, 30) for a in arrows])
  margin = 0.4
  return (points[:, 0].min() - _BOX_W / 2 - margin,
          points[:, 0].max() + _BOX_W / 2 + margin,
          points[:, 1].min() - _BOX_H / 2 - margin,
          points[:, 1].max() + _BOX_H / 2 + margin)


def _new_cell_axes(limits: tuple[float, float, float, float]) -> Axes:
  """Axes filling a new figure sized so that data units are to scale."""
  x0, x1, y0, y1 = limits
  fig = _new_figure((x1 - x0) * _INCHES_PER_UNIT, (y1 - y0) * _INCHES_PER_UNIT)
  return fig.add_axes((0, 0, 1, 1))


def _label_arrows(ax: Axes, arrows: Sequence[_Arrow],
                  positions: dict[int, Point], boxes: dict[int, Any]) -> None:
  """Places the op labels, avoiding boxes, arrowheads and earlier labels."""
  from matplotlib.transforms import Bbox
  to_display = ax.transData.transform
  obstacles = [box.get_window_extent() for box in boxes.values()]
  for arrow in arrows:
    x, y = to_display(_visible_points(arrow, positions)[-1])
    obstacles.append(Bbox.from_bounds(x - 7, y - 7, 14, 14))
  tracks = [to_display(_arrow_points(a, positions, 120)) for a in arrows]
  for k, arrow in enumerate(arrows):
    if arrow.op is None:
      continue
    lines = np.concatenate([p for j, p in enumerate(tracks) if j != k])
    _place_label(ax, arrow, positions, obstacles, lines)


def draw_cell(genotype: Genotype, cell: str = 'normal',
              path: PathLike | None = None, *,
              ax: Axes | None = None) -> Figure:
  """Draws one cell of ``genotype`` as a DAG with matplotlib.

  States are boxes (inputs green, intermediate nodes blue, output yellow) in
  a layered left-to-right layout; each ``(op, input)`` pair is an arrow
  labelled with its op (arrow and label coloured by op), bent around any box
  it would cross; grey dashed arrows join the concat states to the output.
  Labels are placed along their arrows where they cover the fewest boxes,
  labels, arrowheads and other arrows.

  Args:
    genotype: the genotype (any number of nodes).
    cell: ``'normal'`` or ``'reduce'``.
    path: if given, the figure is saved there, as PNG or SVG by the suffix.
    ax: axes to draw into; by default a new figure sized to the cell is made.

  Returns:
    The figure drawn into. When ``ax`` is None it is a new Agg figure not
    registered with pyplot, so it needs no closing (saving it to ``path``
    leaves nothing open).

  Raises:
    ValueError: on an unknown cell type, a malformed cell, or a ``path``
      whose suffix is not ``.png`` or ``.svg``.
  """
  path = None if path is None else _check_image_path(path)
  c = _cell(genotype, cell)
  positions = _layout(c)
  arrows = _arrows(c, positions)
  limits = _extent(positions, arrows)
  ax = _new_cell_axes(limits) if ax is None else ax
  ax.set_xlim(*limits[:2])
  ax.set_ylim(*limits[2:])
  ax.set_aspect('equal')
  ax.set_axis_off()
  ax.apply_aspect()
  boxes = _draw_boxes(ax, c, positions)
  for arrow in arrows:
    _draw_arrow(ax, arrow, positions)
  _label_arrows(ax, arrows, positions, boxes)
  if path is not None:
    _save(ax.figure, path)
  return ax.figure


def draw_genotype(genotype: Genotype, directory: PathLike, *,
                  prefix: str = '') -> list[Path]:
  """Writes both cells of ``genotype`` as PNG, SVG and DOT files.

  Args:
    genotype: the genotype.
    directory: where to write (made if missing).
    prefix: prepended to every file name, e.g. ``'epoch_010_'``.

  Returns:
    The paths written: ``{prefix}normal.png``, ``normal.svg``, ``normal.dot``,
    then the same for ``reduce``.
  """
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  paths = []
  for cell in CELL_TYPES:
    fig = draw_cell(genotype, cell)
    for suffix in IMAGE_SUFFIXES:
      paths.append(_save(fig, directory / f'{prefix}{cell}{suffix}'))
    dot_path = directory / f'{prefix}{cell}.dot'
    dot_path.write_text(to_dot(genotype, cell), encoding='utf-8')
    paths.append(dot_path)
  return paths


# ---------------------------------------------------------------------------
# Search workdir: files.


def _workdir(workdir: PathLike) -> Path:
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f'{workdir}: no such directory (expected the '
                            'workdir of a search run)')
  return workdir


def _epoch_files(directory: Path, suffix: str) -> dict[int, Path]:
  """``epoch_NNN.<suffix>`` files of ``directory`` by epoch number."""
  if not directory.is_dir():
    return {}
  files = {}
  for path in directory.iterdir():
    match = _EPOCH_FILE.match(path.name)
    if match and match.group(2) == suffix:
      files[int(match.group(1))] = path
  return files


def _missing(what: str, workdir: Path) -> FileNotFoundError:
  return FileNotFoundError(f'{workdir}: no {what} found; {_FROM_SEARCH}')


# ---------------------------------------------------------------------------
# Search workdir: alphas.


def _read_alphas(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """``(normal, reduce, primitives)`` of one ``alphas/epoch_NNN.npz`` file."""
  try:
    with np.load(path, allow_pickle=False) as data:
      missing = [k for k in ('normal', 'reduce', 'primitives') if k not in data]
      if missing:
        raise ValueError(f'{path}: missing array(s) {", ".join(missing)}; '
                         f'found {", ".join(data.files) or "none"}')
      normal = np.asarray(data['normal'], dtype=np.float64)
      reduce = np.asarray(data['reduce'], dtype=np.float64)
      primitives = data['primitives']
  except ValueError as e:
    if 'allow_pickle' in str(e):
      raise ValueError(f'{path}: holds an object array; save primitives as a '
                       'string array (np.asarray(names, dtype=str))') from e
    raise
  if primitives.dtype.kind == 'S':
    primitives = np.char.decode(primitives, 'utf-8')
  names = tuple(str(p) for p in np.atleast_1d(primitives).tolist())
  for cell, array in (('normal', normal), ('reduce', reduce)):
    if array.ndim != 2 or array.shape[1] != len(names):
      raise ValueError(f'{path}: {cell!r} has shape {array.shape}, expected '
                       f'[num_edges, {len(names)}] ({len(names)} primitives)')
  return normal, reduce, names


AlphaHistory = tuple[np.ndarray, dict[str, np.ndarray], tuple[str, ...]]


def load_alpha_history(workdir: PathLike) -> AlphaHistory:
  """The op weights of every epoch of a search, from ``alphas/epoch_*.npz``.

  Args:
    workdir: the search run's workdir.

  Returns:
    ``(epochs, weights, primitives)``: the epoch numbers, sorted (int array
    [T]); ``{'normal': [T, E, K], 'reduce': [T, E, K]}`` float64 arrays of
    the softmax of the alphas at the end of each epoch; the op names (K).

  Raises:
    FileNotFoundError: if the workdir or its ``alphas/epoch_*.npz`` files
      are missing.
    ValueError: if a file lacks an array or the files disagree in shape or
      primitives.
  """
  workdir = _workdir(workdir)
  files = _epoch_files(workdir / 'alphas', 'npz')
  if not files:
    raise _missing('alphas/epoch_*.npz files', workdir)
  epochs = sorted(files)
  stacks: dict[str, list[np.ndarray]] = {cell: [] for cell in CELL_TYPES}
  primitives = None
  for epoch in epochs:
    normal, reduce, names = _read_alphas(files[epoch])
    if primitives is not None and names != primitives:
      raise ValueError(f'{files[epoch]}: primitives {names} differ from '
                       f'those of epoch {epochs[0]}: {primitives}')
    if stacks['normal'] and (normal.shape != stacks['normal'][0].shape
                             or reduce.shape != stacks['reduce'][0].shape):
      raise ValueError(f'{files[epoch]}: alpha shapes {normal.shape}, '
                       f'{reduce.shape} differ from those of epoch {epochs[0]}')
    primitives = names
    stacks['normal'].append(normal)
    stacks['reduce'].append(reduce)
  weights = {cell: np.stack(arrays) for cell, arrays in stacks.items()}
  return np.array(epochs, dtype=np.int64), weights, primitives


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
  name = state_name(source) if source < 2 else f'node {source - 2}'
  return f'node {node} <- {name}'


def plot_alpha_evolution(workdir: PathLike, path: PathLike,
                         cell: str = 'normal') -> Path:
  """Plots each edge's op weights against the epoch.

  One small panel per edge, in the edge order of `jaxdarts.spaces.darts_cnn.space` (one row
  per intermediate node, its inputs from left to right), with one line per
  op and a single legend.

  Args:
    workdir: the search run's workdir (``alphas/epoch_*.npz`` are read).
    path: where to save the plot, PNG or SVG by suffix.
    cell: ``'normal'`` or ``'reduce'``.

  Returns:
    ``path``.

  Raises:
    FileNotFoundError, ValueError: as `load_alpha_history`, or on a bad
      ``cell`` or ``path`` suffix.
  """
  if cell not in CELL_TYPES:
    raise ValueError(f'unknown cell type {cell!r}; expected one of '
                     f'{CELL_TYPES}')
  from matplotlib.ticker import MaxNLocator
  path = _check_image_path(path)
  epochs, weights, primitives = load_alpha_history(workdir)
  history = weights[cell]
  num_nodes = nodes_for_edges(history.shape[1])
  cols = num_nodes + 1
  fig = _new_figure(2.3 * cols, 1.75 * num_nodes + 0.9)
  axes = fig.subplots(num_nodes, cols, sharex=True, sharey=True, squeeze=False)
  marker = 'o' if len(epochs) <= 25 else None
  for row, (node, source) in enumerate(SearchSpace(num_nodes=num_nodes).edges):
    ax = axes[node, source]
    for k, op in enumerate(primitives):
      ax.plot(epochs, history[:, row, k], color=_op_color(op), marker=marker,
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
  return _save(fig, path)


# ---------------------------------------------------------------------------
# Search workdir: metrics.


def _number(value: Any) -> float | None:
  """``value`` as a finite float, or None if it is not a finite number."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def load_metrics(workdir: PathLike) -> list[dict[str, float]]:
  """The records of ``metrics.jsonl``, keeping only finite numeric values.

  Blank lines are skipped; a line that is not a JSON object (say, the last
  line of a run still writing) is skipped with a warning.

  Raises:
    FileNotFoundError: if the workdir or ``metrics.jsonl`` is missing.
  """
  workdir = _workdir(workdir)
  path = workdir / 'metrics.jsonl'
  if not path.is_file():
    raise _missing('metrics.jsonl', workdir)
  records = []
  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        record = None
      if not isinstance(record, dict):
        warnings.warn(f'{path}:{lineno}: not a JSON object, skipped')
        continue
      numbers = {k: _number(v) for k, v in record.items()}
      records.append({k: v for k, v in numbers.items() if v is not None})
  return records


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
  path = _check_image_path(path)
  workdir = Path(workdir)
  series = _series(load_metrics(workdir))
  if not series:
    raise ValueError(f'{workdir / "metrics.jsonl"}: no numeric metrics to plot')
  panels = _panels(series)
  cols = 2 if len(panels) > 1 else 1
  rows = math.ceil(len(panels) / cols)
  fig = _new_figure(6.0 * cols, 3.2 * rows)
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
  return _save(fig, path)


# ---------------------------------------------------------------------------
# Search workdir: genotypes.


def genotype_history(workdir: PathLike) -> list[tuple[int, Genotype]]:
  """The genotype derived at the end of every epoch, sorted by epoch.

  Reads ``genotypes/epoch_NNN.json``, or ``epoch_NNN.txt`` (the text form)
  for an epoch without a JSON file.

  Raises:
    FileNotFoundError: if the workdir or its genotype files are missing.
    ValueError: naming the file, if one is malformed.
  """
  workdir = _workdir(workdir)
  directory = workdir / 'genotypes'
  files = {**_epoch_files(directory, 'txt'), **_epoch_files(directory, 'json')}
  if not files:
    raise _missing('genotypes/epoch_*.json files', workdir)
  return [(epoch, Genotype.load(files[epoch])) for epoch in sorted(files)]


def _canonical(genotype: Genotype) -> tuple[Any, ...]:
  """``genotype`` up to the order of a node's two pairs and of the concats."""
  def cell(pairs: Sequence[tuple[str, int]]) -> tuple[Any, ...]:
    return tuple(tuple(sorted(pairs[i:i + 2])) for i in range(0, len(pairs), 2))
  return (cell(genotype.normal), tuple(sorted(genotype.normal_concat)),
          cell(genotype.reduce), tuple(sorted(genotype.reduce_concat)))


def stable_since(history: Iterable[tuple[int, Genotype]]) -> int | None:
  """The epoch from which the genotype stayed the same to the end.

  Genotypes are compared as architectures: swapping the two pairs of a node
  (their order only says which was stronger) or reordering a concat list is
  no change.

  Args:
    history: ``(epoch, genotype)`` pairs, as `genotype_history` returns
      (sorted here by epoch).

  Returns:
    The first epoch whose genotype equals that of every later epoch (the
    last epoch if the last one changed it), or None for an empty history.
  """
  history = sorted(history, key=lambda item: item[0])
  if not history:
    return None
  final = _canonical(history[-1][1])
  since = history[-1][0]
  for epoch, genotype in reversed(history):
    if _canonical(genotype) != final:
      break
    since = epoch
  return since
