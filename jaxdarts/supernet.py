"""The DARTS supernet: mixed operations, the search cell, ``SearchNetwork``.

The architecture parameters are not module parameters: they are a separate
pytree ``{'normal': [E, K], 'reduce': [E, K]}`` (E edges, K candidate ops)
passed to every call, so weights and alphas are differentiated and
optimised independently::

    model = SearchNetwork(num_classes=10)
    variables = model.init(rng, images, alphas, train=False)
    logits = model.apply(variables, images, alphas, train=False)

Inside a cell, the edges that read the same state are one ``nn.vmap`` over a
stacked edge axis: the input is shared, the weights of each edge are stacked
along a leading axis. A cell is then ``num_nodes + 1`` vectorised mixed ops
instead of ``num_edges`` separate graphs, which keeps tracing and
compilation small without changing the mathematics.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts import ops
from jaxdarts.space import CELL_TYPES, DARTS_SPACE, SearchSpace, reduction_cells


def softmax_mixing(alphas: jax.Array) -> jax.Array:
  """DARTS's continuous relaxation: a softmax over each edge's candidates."""
  return jax.nn.softmax(alphas, axis=-1)


class MixedOp(nn.Module):
  """``sum_k w_k * op_k(x)`` over the candidate operations of one edge."""
  primitives: tuple[str, ...]
  channels: int
  stride: int
  train: bool
  bn_axis_name: str | None = None
  depthwise: str | None = None

  @nn.compact
  def __call__(self, x, weights):
    outs = ops.EdgeOps(self.primitives, self.channels, self.stride, self.train,
                       affine=False, pool_bn=True,
                       bn_axis_name=self.bn_axis_name,
                       depthwise=self.depthwise, name='ops')(x)
    # 'none' has no output: it contributes w_none * 0.
    return sum(weights[k].astype(outs[name].dtype) * outs[name]
               for k, name in enumerate(self.primitives) if name in outs)


class SearchCell(nn.Module):
  """A search cell: every earlier state feeds every node through a MixedOp.

  Attributes:
    space: the search space (primitives and number of nodes).
    channels: channels C of every state inside the cell; the output has
      ``num_nodes * C``.
    reduction: whether the edges from the cell inputs have stride 2.
    reduction_prev: whether the previous cell reduced, so ``s0`` has twice
      the resolution of ``s1`` and is preprocessed by a factorized reduce.
  """
  space: SearchSpace
  channels: int
  reduction: bool
  reduction_prev: bool
  bn_axis_name: str | None = None
  depthwise: str | None = None

  @nn.compact
  def __call__(self, s0, s1, weights, train: bool):
    c, space, bn = self.channels, self.space, self.bn_axis_name
    if self.reduction_prev:
      s0 = ops.FactorizedReduce(c, False, bn, name='preprocess0')(s0, train)
    else:
      s0 = ops.ReLUConvBN(c, False, bn, name='preprocess0')(s0, train)
    s1 = ops.ReLUConvBN(c, False, bn, name='preprocess1')(s1, train)

    n = space.num_nodes
    edge_ops = functools.partial(self._edge_ops, c, bn, train)
    # Both cell inputs feed every node: one program for those 2n edges,
    # vmapped over the input (outer) and the node it feeds (inner).
    from_inputs = [[space.edge_offset(i) + src for i in range(n)]
                   for src in (0, 1)]
    outs = edge_ops((2, n), 2 if self.reduction else 1, 'edges_from_inputs')(
        jnp.stack([s0, s1]), weights[jnp.array(from_inputs)])
    node_inputs = [[outs[0, i], outs[1, i]] for i in range(n)]
    states = [s0, s1, sum(node_inputs[0])]
    for src in range(2, n + 1):
      # Node src - 2 feeds nodes src - 1 ... n - 1.
      nodes = range(src - 1, n)
      edges = [space.edge_offset(i) + src for i in nodes]
      outs = edge_ops((len(edges),), 1, f'edges_from_{src}')(
          states[src], weights[jnp.array(edges)])
      for k, node in enumerate(nodes):
        node_inputs[node].append(outs[k])
      states.append(sum(node_inputs[src - 1]))
    return jnp.concatenate(states[2:], axis=-1)

  def _edge_ops(self, channels, bn_axis_name, train, shape, stride, name):
    """MixedOps of edges stacked as ``shape``: ``(edges,)`` reading one shared
    state, or ``(states, edges)`` reading a stack of states."""
    vmap = functools.partial(
        nn.vmap, out_axes=0, variable_axes={'params': 0, 'batch_stats': 0},
        split_rngs={'params': True})
    module = vmap(MixedOp, in_axes=(None, 0), axis_size=shape[-1])
    if len(shape) == 2:
      module = vmap(module, in_axes=(0, 0), axis_size=shape[0])
    return module(self.space.primitives, channels, stride, train, bn_axis_name,
                  self.depthwise, name=name)


class _ScanBody(nn.Module):
  """One step of a scan over identical cells: ``(s0, s1) -> (s1, cell)``."""
  cell: Callable[..., nn.Module]
  train: bool

  @nn.compact
  def __call__(self, carry, weights):
    s0, s1 = carry
    return (s1, self.cell(name='cell')(s0, s1, weights, self.train)), None


class SearchNetwork(nn.Module):
  """The DARTS supernet for images (NHWC), alphas passed as an argument.

  Reduction cells sit at 1/3 and 2/3 of the depth and double the channels;
  the stem is a 3x3 convolution to ``stem_multiplier * channels`` channels.

  Attributes:
    num_classes: classifier outputs.
    channels: initial cell channels C (16 in the paper's search).
    layers: number of cells (8 in the paper's search).
    space: candidate ops and nodes per cell.
    stem_multiplier: stem channels / C (3 in the paper).
    mixing: maps one cell type's alphas ``[E, K]`` to mixing weights.
    bn_axis_name: average BatchNorm statistics over this mapped axis.
    scan_cells: run each stretch of identical normal cells (same input and
      output shapes: all but the first two cells of a stage) as one
      ``nn.scan``, so XLA compiles one cell per stretch and compile time
      stays flat as ``layers`` grows. Their weights are stacked under
      ``cells_{first}_to_{last}``. Same mathematics either way.
    remat_cells: recompute each cell's activations in the backward pass
      (``nn.remat``) instead of keeping them: less memory, more compute.
    depthwise: depthwise convolution implementation, None for the
      backend's faster one (see :mod:`jaxdarts.depthwise`).
    compute_dtype: dtype of the cells' activations and convolutions, e.g.
      ``jnp.bfloat16`` for mixed precision; None keeps the stem's (float32).
      Weights, alphas, BatchNorm statistics, the stem, the classifier and
      the loss keep their dtype.
  """
  num_classes: int
  channels: int = 16
  layers: int = 8
  space: SearchSpace = DARTS_SPACE
  stem_multiplier: int = 3
  mixing: Callable[[jax.Array], jax.Array] = softmax_mixing
  bn_axis_name: str | None = None
  scan_cells: bool = True
  remat_cells: bool = False
  depthwise: str | None = None
  compute_dtype: Any = None

  def init_alphas(self, rng: jax.Array, scale: float = 1e-3):
    return self.space.init_alphas(rng, scale)

  def check_alphas(self, alphas) -> None:
    expected = self.space.alpha_shape
    if not isinstance(alphas, dict) or set(alphas) != set(CELL_TYPES):
      got = sorted(alphas) if isinstance(alphas, dict) else type(alphas)
      raise ValueError(f'alphas must be a dict with keys {list(CELL_TYPES)}, '
                       f'got {got}; make them with model.init_alphas(rng).')
    for name in CELL_TYPES:
      if tuple(alphas[name].shape) != expected:
        raise ValueError(
            f"alphas['{name}'] has shape {tuple(alphas[name].shape)}, but this "
            f'space ({self.space.num_nodes} nodes, {self.space.num_ops} '
            f'primitives) needs {expected}.')

  def _cell_channels(self, i: int) -> int:
    """C of cell ``i``: doubled by each reduction up to and including it."""
    return self.channels * 2**sum(r <= i for r in reduction_cells(self.layers))

  def cell_runs(self) -> list[tuple[int, ...]]:
    """The cells in order, grouped into the stretches that are scanned.

    Consecutive normal cells whose inputs both have the cell's output shape
    (``num_nodes * C`` channels, same resolution) are one stretch: all but
    the first two cells of a stage, or of the first stage all cells when
    the stem has ``num_nodes * C`` channels too.
    """
    reductions = reduction_cells(self.layers)
    n = self.space.num_nodes
    runs, last = [], None
    c_prev_prev = c_prev = self.stem_multiplier * self.channels
    for i in range(self.layers):
      c = self._cell_channels(i)
      shape = (c_prev_prev, c_prev, c, i in reductions, i - 1 in reductions)
      if (self.scan_cells and shape == last == (n * c, n * c, c, False, False)):
        runs[-1] += (i,)
      else:
        runs.append((i,))
      last, c_prev_prev, c_prev = shape, c_prev, n * c
    return runs

  @nn.compact
  def __call__(self, images, alphas, train: bool):
    self.check_alphas(alphas)
    weights = {name: self.mixing(alphas[name]) for name in CELL_TYPES}
    bn = self.bn_axis_name
    x = nn.Conv(self.stem_multiplier * self.channels, (3, 3), padding=1,
                use_bias=False, kernel_init=ops.torch_conv_init,
                name='stem_conv')(images)
    x = ops.batch_norm(train, True, bn, name='stem_bn')(x)

    stem_dtype = x.dtype
    s0 = s1 = x.astype(self.compute_dtype or stem_dtype)
    reductions = reduction_cells(self.layers)
    cell_type = SearchCell
    if self.remat_cells:
      cell_type = nn.remat(SearchCell, static_argnums=(4,))
    for run in self.cell_runs():
      reduction, reduction_prev = run[0] in reductions, run[0] - 1 in reductions
      cell = functools.partial(
          cell_type, self.space, self._cell_channels(run[0]), reduction,
          reduction_prev, bn, self.depthwise)
      kind = 'reduce' if reduction else 'normal'
      if len(run) == 1:
        s0, s1 = s1, cell(name=f'cell_{run[0]}')(s0, s1, weights[kind], train)
      else:
        scan = nn.scan(_ScanBody, variable_axes={'params': 0, 'batch_stats': 0},
                       split_rngs={'params': True}, in_axes=nn.broadcast,
                       length=len(run))
        (s0, s1), _ = scan(cell, train, name=f'cells_{run[0]}_to_{run[-1]}')(
            (s0, s1), weights[kind])
    x = jnp.mean(s1.astype(stem_dtype), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=ops.torch_conv_init,
                    name='classifier')(x)
