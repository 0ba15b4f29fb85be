"""Where a cell drawing puts its boxes and arrows (data units).

A layered left-to-right layout: the cell inputs ``c_{k-2}`` and ``c_{k-1}``
on the left, each intermediate node in the column of its depth (one more
than its deepest input), the output ``c_{k}`` on the right; arrows curve
around the boxes they would cross.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxdarts.spaces.darts_cnn.genotype import Genotype



class _Edge(NamedTuple):
  op: str
  source: int  # State index: 0 = c_{k-2}, 1 = c_{k-1}, 2 + m = node m.
  target: int


class Cell(NamedTuple):
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


def state_label(state: int, num_nodes: int) -> str:
  """`state_name` as matplotlib mathtext (subscripts rendered)."""
  if state in (0, 1) or state == 2 + num_nodes:
    return f'${state_name(state, num_nodes)}$'
  return state_name(state)


def cell_structure(genotype: Genotype, cell: str) -> Cell:
  """The edges and concat list of one cell, structurally checked.

  Only the structure is checked (two edges per node, inputs of node i in
  ``0 .. 1 + i``, concat states in range), so cells with ops outside
  `jaxdarts.spaces.darts_cnn.genotype.KNOWN_OPS` can be drawn too.

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
  return Cell(num_nodes, tuple(edges), tuple(concat))


_COLUMN = 3.3  # Horizontal distance between layers.
_ROW = 1.3  # Vertical distance between states of a layer.
BOX_W, BOX_H = 1.1, 0.55
INCHES_PER_UNIT = 0.8
_RADII = (0.18, -0.18, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6)
LABEL_T = np.linspace(0.2, 0.8, 13)  # Candidate label spots along an arrow.
PREFERRED_T = 0.6  # Nearer the target, where arrows fan in less.
FILL = {'input': '#b7e4c7', 'node': '#a9d6f5', 'output': '#fce38a'}

Point = tuple[float, float]


class Arrow(NamedTuple):
  source: int
  target: int
  rad: float  # arc3 curvature; 0 is straight.
  op: str | None  # None for the unlabelled concat arrows.


def _depths(c: Cell) -> dict[int, int]:
  """Layer of every state: 0 for the inputs, 1 + deepest input otherwise."""
  depth = {0: 0, 1: 0}
  for node in range(c.num_nodes):
    state = 2 + node
    depth[state] = 1 + max(depth[s] for s in _predecessors(c, state))
  depth[c.output] = 1 + max(depth.values())
  return depth


def _predecessors(c: Cell, state: int) -> list[int]:
  if state == c.output:
    return list(c.concat)
  return [e.source for e in c.edges if e.target == state]


def positions(c: Cell) -> dict[int, Point]:
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


def curve(start: Point, end: Point, rad: float, t: np.ndarray) -> np.ndarray:
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
  return ((np.abs(points[:, 0] - centre[0]) < BOX_W / 2 + margin)
          & (np.abs(points[:, 1] - centre[1]) < BOX_H / 2 + margin))


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
    points = curve(positions[source], positions[target], rad, t)
    if not any(_inside(points, centre, 0.12).any() for centre in others):
      return rad
  return free[0]


def arrows(c: Cell, positions: dict[int, Point]) -> list[Arrow]:
  """The concat arrows, then one arrow per (op, input) pair, all routed."""
  arrows = [Arrow(s, c.output, _route(s, c.output, positions, set()), None)
            for s in c.concat]
  taken: set[tuple[int, int, float]] = set()
  for edge in c.edges:
    rad = _route(edge.source, edge.target, positions, taken)
    taken.add((edge.source, edge.target, rad))
    arrows.append(Arrow(edge.source, edge.target, rad, edge.op))
  return arrows


def arrow_points(arrow: Arrow, positions: dict[int, Point],
                  num: int = 80) -> np.ndarray:
  return curve(positions[arrow.source], positions[arrow.target], arrow.rad,
                np.linspace(0.0, 1.0, num))


def visible_points(arrow: Arrow, positions: dict[int, Point]) -> np.ndarray:
  """Points of the arrow's curve outside its two boxes, source to target."""
  points = arrow_points(arrow, positions, 120)
  hidden = (_inside(points, positions[arrow.source], 0.03)
            | _inside(points, positions[arrow.target], 0.03))
  return points[~hidden]
