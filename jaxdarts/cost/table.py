"""Per-operation cost tables of the DARTS CNN space: parameters, MACs, ms.

A derived network (:class:`~jaxdarts.spaces.darts_cnn.networks.NetworkCIFAR`)
costs a fixed part (the stem, every cell's two input preprocessors, the
global pooling and the classifier) plus one operation per chosen edge. The
edge's operation only depends on the op and its input shape and stride, so
the cost of any architecture of the space is linear in a one-hot encoding
of its ops::

    cost(genotype) = fixed + sum_{cell c} sum_{(op, edge) in c} cost_c(edge, op)

:func:`build` measures ``cost_c(edge, op)`` for every edge of every cell of
a network geometry (the retraining size: C channels, L cells) and every
candidate op, once per distinct input shape, and sums the cells of each
type, so the table has one ``[edges, ops]`` matrix per cell type, the
layout of the alphas and mixing weights. Parameters and multiply-adds come
from :mod:`jaxdarts.cost.counting` applied to the evaluation network's own
modules (affine BatchNorm, no BatchNorm after pooling), so a genotype's
table cost is its network's count exactly (``auxiliary=False``, one image).
Latency (milliseconds per batch) comes from :mod:`jaxdarts.cost.latency`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts.cost import counting
from jaxdarts.spaces.darts_cnn import networks, ops
from jaxdarts.spaces.darts_cnn.space import (CELL_TYPES, SearchSpace,
                                             reduction_cells)

METRICS = ('params', 'macs', 'ms')
UNITS = {'params': 'parameters', 'macs': 'multiply-adds per image',
         'ms': 'ms per batch'}


@dataclasses.dataclass(frozen=True)
class Geometry:
  """The network a cost is for: a `NetworkCIFAR` of the search space.

  Attributes:
    image_shape: ``(H, W, channels)`` of one input image.
    num_classes: classifier outputs.
    channels: initial cell channels C (36 in the paper's CIFAR network).
    layers: number of cells (20 in the paper's CIFAR network).
    stem_multiplier: stem channels / C (3).
    batch: the batch latency is measured at (parameters and multiply-adds
      are per image whatever it is).
  """
  image_shape: tuple[int, int, int]
  num_classes: int
  channels: int
  layers: int
  stem_multiplier: int = 3
  batch: int = 1


@dataclasses.dataclass(frozen=True)
class CellShape:
  """Shapes of cell ``index`` (per image, ``(H, W, C)``)."""
  index: int
  cell_type: str
  channels: int
  reduction: bool
  reduction_prev: bool
  s0: tuple[int, int, int]
  s1: tuple[int, int, int]

  def edge_input(self, src: int) -> tuple[int, int, int]:
    """The input of an edge from state ``src``: the cell's channels, at
    ``s1``'s resolution (the inputs, preprocessed) or, in a reduction cell,
    half of it (the nodes)."""
    hw = self.s1[:2]
    if self.reduction and src >= 2:
      hw = tuple(map(_halve, hw))
    return hw + (self.channels,)

  def edge_stride(self, src: int) -> int:
    return 2 if self.reduction and src < 2 else 1


def _halve(size: int) -> int:
  return (size - 1) // 2 + 1


def cells(geometry: Geometry, space: SearchSpace) -> list[CellShape]:
  """The cells of the geometry's network, as `_CellStack` builds them."""
  reductions = reduction_cells(geometry.layers)
  h, w, _ = geometry.image_shape
  stem = (h, w, geometry.stem_multiplier * geometry.channels)
  s0 = s1 = stem
  c, reduction_prev, out = geometry.channels, False, []
  for i in range(geometry.layers):
    reduction = i in reductions
    c *= 2 if reduction else 1
    shape = CellShape(i, 'reduce' if reduction else 'normal', c, reduction,
                      reduction_prev, s0, s1)
    out.append(shape)
    hw = tuple(map(_halve, s1[:2])) if reduction else s1[:2]
    s0, s1 = s1, hw + (space.num_nodes * c,)
    reduction_prev = reduction
  return out


# ---------------------------------------------------------------------------
# The modules measured: one op, one preprocessor, the stem, the head.


class _Op(nn.Module):
  """One candidate op of an evaluation cell (`EvalCell._edge`'s module)."""
  name_: str
  channels: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return ops.EdgeOps((self.name_,), self.channels, self.stride, train,
                       affine=True, pool_bn=False)(x)[self.name_]


class _Preprocess(nn.Module):
  """A cell input's preprocessor (factorized reduce or ReLU-conv-BN)."""
  channels: int
  reduce: bool

  @nn.compact
  def __call__(self, x, train: bool = False):
    cls = ops.FactorizedReduce if self.reduce else ops.ReLUConvBN
    return cls(self.channels, True)(x, train)


class _Stem(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    # pylint: disable-next=protected-access
    x = networks._conv(self.features, 3, padding=1)(x)
    return ops.batch_norm(train, True)(x)


class _Head(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    # pylint: disable-next=protected-access
    dense = networks._dense(self.num_classes, 'classifier')
    return dense(jnp.mean(x, axis=(1, 2)))


def _count(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
  """``(parameters, multiply-adds)`` of ``module`` on one image of
  ``shape``, by :mod:`jaxdarts.cost.counting`."""
  x = jax.ShapeDtypeStruct((1,) + tuple(shape), jnp.float32)
  variables = jax.eval_shape(
      lambda x: module.init(jax.random.key(0), x, train=False), x)
  return (counting.count_params(variables),
          counting.count_flops(module, (1,) + tuple(shape)))


@dataclasses.dataclass(frozen=True)
class Piece:
  """A module to measure at an input shape, with its latency-table key."""
  key: str
  module: nn.Module
  shape: tuple[int, int, int]


def op_piece(op: str, shape: tuple[int, int, int], stride: int) -> Piece:
  key = f'{op}|{"x".join(map(str, shape))}|s{stride}'
  return Piece(key, _Op(op, shape[2], stride), shape)


def fixed_pieces(geometry: Geometry, space: SearchSpace) -> list[Piece]:
  """The stem, every preprocessor and the head, as measured pieces."""
  shapes = cells(geometry, space)
  stem_c = geometry.stem_multiplier * geometry.channels
  pieces = [Piece(f'stem|{"x".join(map(str, geometry.image_shape))}|c{stem_c}',
                  _Stem(stem_c), tuple(geometry.image_shape))]
  for cell in shapes:
    for slot, state in ((0, cell.s0), (1, cell.s1)):
      reduce = slot == 0 and cell.reduction_prev
      kind = 'factorized_reduce' if reduce else 'relu_conv_bn'
      pieces.append(Piece(f'{kind}|{"x".join(map(str, state))}|c'
                          f'{cell.channels}',
                          _Preprocess(cell.channels, reduce), state))
  last = shapes[-1]
  out = (tuple(map(_halve, last.s1[:2])) if last.reduction else last.s1[:2])
  out += (space.num_nodes * last.channels,)
  pieces.append(Piece(f'head|{"x".join(map(str, out))}|k'
                      f'{geometry.num_classes}', _Head(geometry.num_classes),
                      out))
  return pieces


# ---------------------------------------------------------------------------
# The table.


@dataclasses.dataclass(frozen=True)
class CostTable:
  """Costs of the space's architectures at one geometry (hashable, so a
  search method may hold it as a static field).

  Attributes:
    space: the search space (its primitives order the ops axis).
    geometry: the network the costs are for.
    fixed: ``((metric, cost), ...)``: the stem, preprocessors and head.
    edges: ``((metric, cell type, rows), ...)``: per cell type the
      ``[edges, ops]`` costs summed over the cells of that type, as nested
      tuples.
  """
  space: SearchSpace
  geometry: Geometry
  fixed: tuple[tuple[str, float], ...]
  edges: tuple[tuple[str, str, tuple[tuple[float, ...], ...]], ...]

  @property
  def metrics(self) -> tuple[str, ...]:
    return tuple(m for m, _ in self.fixed)

  def check(self, metric: str) -> None:
    if metric not in self.metrics:
      hint = (' Latency needs a measured table (jaxdarts.cost.latency).'
              if metric == 'ms' else '')
      raise ValueError(f'This cost table has no {metric!r} costs; it has '
                       f'{list(self.metrics)}.{hint}')

  def fixed_cost(self, metric: str) -> float:
    self.check(metric)
    return dict(self.fixed)[metric]

  def edge_costs(self, metric: str) -> dict[str, np.ndarray]:
    """``{cell type: [edges, ops] float64}`` of ``metric``."""
    self.check(metric)
    return {cell: np.asarray(rows, np.float64)
            for m, cell, rows in self.edges if m == metric}

  def genotype_cost(self, genotype, metric: str) -> float:
    """The cost of ``genotype``'s network at this geometry.

    Raises:
      ValueError: the genotype does not concatenate every intermediate
        node (its cells' output channels would differ from the table's).
    """
    costs, total = self.edge_costs(metric), self.fixed_cost(metric)
    for cell in CELL_TYPES:
      pairs, concat = genotype.cell(cell)
      if tuple(concat) != self.space.concat:
        raise ValueError(
            f'cost tables assume every node is concatenated; the {cell} '
            f'cell concatenates {list(concat)}, not {list(self.space.concat)}.')
      for k, (op, src) in enumerate(pairs):
        edge = self.space.edge_offset(k // 2) + src
        total += costs[cell][edge, self.space.primitives.index(op)]
    return float(total)

  def with_metric(self, metric: str, fixed: float,
                  edges: Mapping[str, np.ndarray]) -> CostTable:
    """This table with ``metric`` added (or replaced)."""
    return dataclasses.replace(
        self, fixed=tuple((m, v) for m, v in self.fixed if m != metric)
        + ((metric, float(fixed)),),
        edges=tuple(e for e in self.edges if e[0] != metric) + tuple(
            (metric, cell, _rows(edges[cell])) for cell in CELL_TYPES))


def _rows(array) -> tuple[tuple[float, ...], ...]:
  return tuple(tuple(float(v) for v in row) for row in np.asarray(array))


def tabulate(geometry: Geometry, space: SearchSpace,
             measure: Callable[[Piece], float]) -> tuple[float,
                                                         dict[str, np.ndarray]]:
  """``(fixed, {cell type: [edges, ops]})`` of a per-piece ``measure``,
  each distinct piece measured once. ``'none'`` costs nothing."""
  memo: dict[str, float] = {}

  def cost(piece: Piece) -> float:
    if piece.key not in memo:
      memo[piece.key] = float(measure(piece))
    return memo[piece.key]

  fixed = sum(cost(p) for p in fixed_pieces(geometry, space))
  edges = {cell: np.zeros(space.alpha_shape) for cell in CELL_TYPES}
  for cell in cells(geometry, space):
    for e, (_, src) in enumerate(space.edges):
      for k, op in enumerate(space.primitives):
        if op != 'none':
          edges[cell.cell_type][e, k] += cost(op_piece(
              op, cell.edge_input(src), cell.edge_stride(src)))
  return fixed, edges


def build(geometry: Geometry, space: SearchSpace, *,
          latency: Callable[[Piece], float] | None = None) -> CostTable:
  """The parameter and multiply-add table of ``space`` at ``geometry``,
  with latency if a ``latency(piece) -> ms`` measure is given (see
  :func:`jaxdarts.cost.latency.measure_table`)."""
  if not isinstance(space, SearchSpace):
    raise ValueError(f'cost tables are for the DARTS CNN space; got '
                     f'{type(space).__name__}.')
  counts: dict[str, tuple[int, int]] = {}

  def counted(index: int) -> Callable[[Piece], float]:
    def measure(piece: Piece) -> float:
      if piece.key not in counts:
        counts[piece.key] = _count(piece.module, piece.shape)
      return counts[piece.key][index]
    return measure

  table = CostTable(space, geometry, (), ())
  for index, metric in enumerate(('params', 'macs')):
    table = table.with_metric(metric, *tabulate(geometry, space,
                                                counted(index)))
  if latency is not None:
    table = table.with_metric('ms', *tabulate(geometry, space, latency))
  return table


def network_counts(genotype, geometry: Geometry) -> tuple[int, int]:
  """``(parameters, multiply-adds)`` of ``genotype``'s `NetworkCIFAR`
  (no auxiliary head, one image), counted on the whole network."""
  model = networks.NetworkCIFAR(
      genotype, channels=geometry.channels, layers=geometry.layers,
      num_classes=geometry.num_classes, auxiliary=False,
      stem_multiplier=geometry.stem_multiplier)
  return _count(model, tuple(geometry.image_shape))


def describe(table: CostTable, metric: str, value: float) -> str:
  """``value`` of ``metric`` in words, e.g. ``'1.23M multiply-adds per
  image'``."""
  if metric == 'ms':
    return f'{value:.3f} {UNITS[metric]} (batch {table.geometry.batch})'
  scale = next(((s, u) for s, u in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k'))
                if abs(value) >= s), (1, ''))
  return f'{value / scale[0]:.4g}{scale[1]} {UNITS[metric]}'
