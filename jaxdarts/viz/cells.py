"""Drawings of genotype cells (the DARTS CNN space's two-input cells).

* `to_dot`: Graphviz DOT text of a cell (render it with ``dot -Tpng`` where
  Graphviz is installed; nothing here needs it).
* `draw_cell`: the cell DAG drawn with matplotlib alone, in a layered
  left-to-right layout: the cell inputs ``c_{k-2}`` and ``c_{k-1}`` on the
  left, each intermediate node in the column of its depth (one more than its
  deepest input), the output ``c_{k}`` on the right; one arrow per
  ``(op, input)`` pair, labelled with the op.
* `draw_genotype`: both cells as PNG, SVG and DOT files.

The layout is :mod:`jaxdarts.viz.layout`; figures are made without pyplot
(:mod:`jaxdarts.viz.figure`), so importing this needs no matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.viz.figure import (IMAGE_SUFFIXES, check_image_path,
                                 new_figure, op_color, save)
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES
from jaxdarts.viz import layout
from jaxdarts.viz.layout import Arrow, Cell, Point

if TYPE_CHECKING:
  from matplotlib.axes import Axes
  from matplotlib.figure import Figure

PathLike = str | os.PathLike




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
  c = layout.cell_structure(genotype, cell)
  name = lambda s: _dot_quote(layout.state_name(s, c.num_nodes))
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
# Drawing.


def _draw_boxes(ax: Axes, c: Cell, positions: dict[int, Point]
                ) -> dict[int, Any]:
  """One rounded, labelled box per state; returns the patches by state."""
  from matplotlib.patches import FancyBboxPatch
  boxes = {}
  for state, (x, y) in positions.items():
    kind = ('input' if state < 2 else 'output' if state == c.output else 'node')
    corner = (x - layout.BOX_W / 2, y - layout.BOX_H / 2)
    box = FancyBboxPatch(corner, layout.BOX_W, layout.BOX_H,
                         boxstyle='round,pad=0.02,rounding_size=0.12',
                         facecolor=layout.FILL[kind], edgecolor='#333333',
                         linewidth=1.2, zorder=3)
    ax.add_patch(box)
    ax.text(x, y, layout.state_label(state, c.num_nodes), ha='center',
            va='center', fontsize=12, zorder=4)
    boxes[state] = box
  return boxes


def _draw_arrow(ax: Axes, arrow: Arrow, positions: dict[int, Point]) -> None:
  """The arrow from box edge to box edge; concat arrows are grey and dashed."""
  from matplotlib.patches import FancyArrowPatch
  from matplotlib.path import Path as MplPath
  style = (dict(color='#9a9a9a', linestyle='--', linewidth=1.0)
           if arrow.op is None else
           dict(color=op_color(arrow.op), linewidth=1.4))
  ax.add_patch(FancyArrowPatch(
      path=MplPath(layout.visible_points(arrow, positions)), arrowstyle='-|>',
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


def _place_label(ax: Axes, arrow: Arrow, positions: dict[int, Point],
                 obstacles: list[Any], lines: np.ndarray) -> None:
  """Puts the op label on its arrow where it covers the least.

  Candidate spots lie along the arrow; the cheapest (`_label_cost`, ties
  broken towards `layout.PREFERRED_T`) is kept and its box added to
  ``obstacles``.
  ``lines`` holds display-space points of the other arrows.
  """
  spots = layout.curve(positions[arrow.source], positions[arrow.target],
                       arrow.rad, layout.LABEL_T)
  text = ax.text(0, 0, arrow.op, ha='center', va='center', fontsize=8.5,
                 color=op_color(arrow.op), zorder=5,
                 bbox=dict(boxstyle='round,pad=0.15', facecolor='white',
                           edgecolor='none', alpha=0.9))
  costs = []
  for t, spot in zip(layout.LABEL_T, spots):
    text.set_position(spot)
    extent = text.get_window_extent().padded(2)
    costs.append(_label_cost(extent, obstacles, lines)
                 + 5.0 * abs(t - layout.PREFERRED_T))
  text.set_position(spots[int(np.argmin(costs))])
  obstacles.append(text.get_window_extent().padded(2))


def _extent(positions: dict[int, Point],
            arrows: Iterable[Arrow]) -> tuple[float, float, float, float]:
  """Data limits holding every box and arrow, with a margin for labels."""
  points = np.concatenate(
      [np.array(list(positions.values()))]
      + [layout.arrow_points(a, positions, 30) for a in arrows])
  margin = 0.4
  return (points[:, 0].min() - layout.BOX_W / 2 - margin,
          points[:, 0].max() + layout.BOX_W / 2 + margin,
          points[:, 1].min() - layout.BOX_H / 2 - margin,
          points[:, 1].max() + layout.BOX_H / 2 + margin)


def _new_cell_axes(limits: tuple[float, float, float, float]) -> Axes:
  """Axes filling a new figure sized so that data units are to scale."""
  x0, x1, y0, y1 = limits
  fig = new_figure((x1 - x0) * layout.INCHES_PER_UNIT,
                   (y1 - y0) * layout.INCHES_PER_UNIT)
  return fig.add_axes((0, 0, 1, 1))


def _label_arrows(ax: Axes, arrows: Sequence[Arrow],
                  positions: dict[int, Point], boxes: dict[int, Any]) -> None:
  """Places the op labels, avoiding boxes, arrowheads and earlier labels."""
  from matplotlib.transforms import Bbox
  to_display = ax.transData.transform
  obstacles = [box.get_window_extent() for box in boxes.values()]
  for arrow in arrows:
    x, y = to_display(layout.visible_points(arrow, positions)[-1])
    obstacles.append(Bbox.from_bounds(x - 7, y - 7, 14, 14))
  tracks = [to_display(layout.arrow_points(a, positions, 120)) for a in arrows]
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
  path = None if path is None else check_image_path(path)
  c = layout.cell_structure(genotype, cell)
  positions = layout.positions(c)
  all_arrows = layout.arrows(c, positions)
  limits = _extent(positions, all_arrows)
  ax = _new_cell_axes(limits) if ax is None else ax
  ax.set_xlim(*limits[:2])
  ax.set_ylim(*limits[2:])
  ax.set_aspect('equal')
  ax.set_axis_off()
  ax.apply_aspect()
  boxes = _draw_boxes(ax, c, positions)
  for arrow in all_arrows:
    _draw_arrow(ax, arrow, positions)
  _label_arrows(ax, all_arrows, positions, boxes)
  if path is not None:
    save(ax.figure, path)
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
      paths.append(save(fig, directory / f'{prefix}{cell}{suffix}'))
    dot_path = directory / f'{prefix}{cell}.dot'
    dot_path.write_text(to_dot(genotype, cell), encoding='utf-8')
    paths.append(dot_path)
  return paths
