"""The search cell: a DAG whose every edge mixes all candidate operations.

A DARTS cell has two inputs (the outputs of the two previous cells) and
``num_nodes`` intermediate nodes; every node sums one mixed operation on
each earlier state, and the cell outputs their concatenation. An edge's
mixed operation is :class:`MixedOp`, ``sum_k w_k op_k(x)`` with the edge's
row of the mixing weights, unless the search method brings its own edge
module (``edge``; see :meth:`jaxdarts.methods.base.Method.edge`).

A cell type's mixing weights are an ``[edges, ops]`` array, or a pytree
whose every leaf has a leading edge axis (such as ``{'ops': [edges, ops],
'edge': [edges]}``, for a method whose edge module also takes a per-edge
weight); each edge module receives its edge's slice of every leaf.

Inside a cell, the edges that read the same state are one ``nn.vmap`` over a
stacked edge axis: the input is shared, the weights of each edge are stacked
along a leading axis. A cell is then ``num_nodes + 1`` vectorised mixed ops
instead of ``num_edges`` separate graphs, which keeps tracing and
compilation small without changing the mathematics. An edge module with
``vmappable = False`` gets one module per edge instead.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.space import SearchSpace


class EdgeModule(nn.Module):
  """The fields every edge module is built with (see `Method.edge`):
  ``cls(primitives, channels, stride, train, bn_axis_name, depthwise,
  mixed_op=..., **extra)``, called as ``(x, weights)`` with one edge's
  mixing weights.

  ``mixed_op`` is the space's own mixed op (an `EdgeModule` computing
  ``sum_k w_k op_k(x)``), which every space's cell passes to a method's
  edge; None is this space's :class:`MixedOp`. A method's edge builds its
  candidates through :meth:`mixed` (on a part of the channels, or one
  candidate at a time), so one edge class serves every space.
  """
  primitives: tuple[str, ...]
  channels: int
  stride: int
  train: bool
  bn_axis_name: str | None = None
  depthwise: str | None = None
  mixed_op: Any = None

  def mixed(self, primitives: tuple[str, ...], channels: int, *,
            name: str) -> nn.Module:
    """The space's mixed op over ``primitives`` at ``channels``, with this
    edge's stride, mode and BatchNorm axis (a submodule named ``name``).

    Over one primitive it is that op times its one weight."""
    return (self.mixed_op or MixedOp)(
        primitives, channels, self.stride, self.train, self.bn_axis_name,
        self.depthwise, name=name)


class MixedOp(EdgeModule):
  """``sum_k w_k * op_k(x)`` over the candidate operations of one edge."""

  @nn.compact
  def __call__(self, x, weights):
    outs = ops.EdgeOps(self.primitives, self.channels, self.stride, self.train,
                       affine=False, pool_bn=True,
                       bn_axis_name=self.bn_axis_name,
                       depthwise=self.depthwise, name='ops')(x)
    # 'none' has no output: it contributes w_none * 0.
    return sum(weights[k].astype(outs[name].dtype) * outs[name]
               for k, name in enumerate(self.primitives) if name in outs)


def edge_slice(weights, index):
  """The mixing weights of the edges ``index`` (an int or an index array):
  ``weights[index]`` of an array, of every leaf of a pytree."""
  return jax.tree.map(lambda w: w[index], weights)


def check_mixing_weights(weights, space) -> None:
  """Refuses mixing weights that do not fit ``space``, saying why.

  Every cell type (``space.cell_types``) needs an ``[edges, ops]`` array,
  or a dict with ``'ops'`` (that array) and a method's other per-edge
  arrays (``[edges, ...]``), which its edge module receives edge by edge.

  Raises:
    ValueError: naming the expected keys or shapes.
  """
  expected = space.alpha_shape
  if not isinstance(weights, dict) or not set(space.cell_types) <= set(
      weights):
    got = sorted(weights) if isinstance(weights, dict) else type(weights)
    raise ValueError(
        f'the mixing weights must be a dict with keys '
        f'{list(space.cell_types)}, got {got}; make them with a method, '
        'jaxdarts.methods.get(name).relax(alphas, rng=None, step=0).')
  for name in space.cell_types:
    cell = weights[name]
    ops_weights = cell['ops'] if isinstance(cell, dict) else cell
    if tuple(ops_weights.shape) != expected:
      raise ValueError(
          f"mixing weights['{name}'] have shape "
          f'{tuple(ops_weights.shape)}, but this space '
          f'({space.num_nodes} nodes, {space.num_ops} '
          f'primitives) needs {expected}.')
    # A method's extra per-edge weights: a leading edge axis.
    for leaf in jax.tree.leaves(cell):
      if leaf.ndim < 1 or leaf.shape[0] != expected[0]:
        raise ValueError(
            f"mixing weights['{name}'] hold an array of shape "
            f'{tuple(leaf.shape)}; every array of a cell type needs a '
            f'leading axis of its {expected[0]} edges.')


class SearchCell(nn.Module):
  """A search cell: every earlier state feeds every node through an edge.

  Attributes:
    space: the search space (primitives and number of nodes).
    channels: channels C of every state inside the cell; the output has
      ``num_nodes * C``.
    reduction: whether the edges from the cell inputs have stride 2.
    reduction_prev: whether the previous cell reduced, so ``s0`` has twice
      the resolution of ``s1`` and is preprocessed by a factorized reduce.
    bn_axis_name: average BatchNorm statistics over this mapped axis.
    depthwise: depthwise convolution implementation (None: per backend).
    edge: the edge module class (:class:`MixedOp` by default).
    edge_options: extra fields of ``edge``, as sorted ``(name, value)``
      pairs (hashable).
  """
  space: SearchSpace
  channels: int
  reduction: bool
  reduction_prev: bool
  bn_axis_name: str | None = None
  depthwise: str | None = None
  edge: Any = MixedOp
  edge_options: tuple[tuple[str, Any], ...] = ()

  def preprocessor(self, slot: int) -> nn.Module:
    """The unbound module that brings input ``slot`` (0 or 1) to C channels
    at the cell's input resolution: a factorized reduce for ``s0`` after a
    reduction cell, a ReLU-1x1 conv-BN otherwise."""
    c, bn = self.channels, self.bn_axis_name
    if slot == 0 and self.reduction_prev:
      return ops.FactorizedReduce(c, False, bn, parent=None)
    return ops.ReLUConvBN(c, False, bn, parent=None)

  @nn.compact
  def __call__(self, s0, s1, weights, train: bool, *,
               preprocessed: bool = False):
    """The cell's output ``[N, H, W, num_nodes * C]``.

    Args:
      s0, s1: the outputs of the two previous cells.
      weights: the mixing weights of this cell type, ``[edges, ops]`` (or
        a pytree of per-edge leaves; see the module docstring).
      train: BatchNorm on batch statistics.
      preprocessed: ``s0`` and ``s1`` are already the preprocessors'
        outputs (``[N, H, W, C]``) and only the DAG of edges runs.
    """
    if not preprocessed:
      s0 = self.preprocessor(0).clone(parent=self, name='preprocess0')(
          s0, train)
      s1 = self.preprocessor(1).clone(parent=self, name='preprocess1')(
          s1, train)
    if getattr(self.edge, 'vmappable', True):
      states = self._vmapped_dag(s0, s1, weights, train)
    else:
      states = self._dag(s0, s1, weights, train)
    return jnp.concatenate(states[2:], axis=-1)

  def _make_edge(self, train, stride, name, module=None):
    return (module or self.edge)(
        self.space.primitives, self.channels, stride, train,
        self.bn_axis_name, self.depthwise, name=name,
        **dict(self.edge_options))

  def _dag(self, s0, s1, weights, train):
    """The states, one edge module per edge (``edge_{node}_{input}``)."""
    space, states = self.space, [s0, s1]
    for node in range(space.num_nodes):
      states.append(sum(
          self._make_edge(train, 2 if self.reduction and src < 2 else 1,
                          f'edge_{node}_{src}')(
                              states[src],
                              edge_slice(weights, space.edge_offset(node) + src))
          for src in range(2 + node)))
    return states

  def _vmapped_dag(self, s0, s1, weights, train):
    """The states, the edges that read one state mapped by ``nn.vmap``."""
    space, n = self.space, self.space.num_nodes
    edges = functools.partial(self._vmapped_edges, train)
    # Both cell inputs feed every node: one program for those 2n edges,
    # vmapped over the input (outer) and the node it feeds (inner).
    from_inputs = [[space.edge_offset(i) + src for i in range(n)]
                   for src in (0, 1)]
    outs = edges((2, n), 2 if self.reduction else 1, 'edges_from_inputs')(
        jnp.stack([s0, s1]), edge_slice(weights, jnp.array(from_inputs)))
    node_inputs = [[outs[0, i], outs[1, i]] for i in range(n)]
    states = [s0, s1, sum(node_inputs[0])]
    for src in range(2, n + 1):
      # Node src - 2 feeds nodes src - 1 ... n - 1.
      nodes = range(src - 1, n)
      ids = [space.edge_offset(i) + src for i in nodes]
      outs = edges((len(ids),), 1, f'edges_from_{src}')(
          states[src], edge_slice(weights, jnp.array(ids)))
      for k, node in enumerate(nodes):
        node_inputs[node].append(outs[k])
      states.append(sum(node_inputs[src - 1]))
    return states

  def _vmapped_edges(self, train, shape, stride, name):
    """Edge modules stacked as ``shape``: ``(edges,)`` reading one shared
    state, or ``(states, edges)`` reading a stack of states."""
    vmap = functools.partial(
        nn.vmap, out_axes=0, variable_axes={'params': 0, 'batch_stats': 0},
        split_rngs={'params': True})
    module = vmap(self.edge, in_axes=(None, 0), axis_size=shape[-1])
    if len(shape) == 2:
      module = vmap(module, in_axes=(0, 0), axis_size=shape[0])
    return self._make_edge(train, stride, name, module)
