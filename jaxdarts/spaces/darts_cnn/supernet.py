"""The DARTS supernet, ``SearchNetwork``: a stem, search cells, a classifier.

The architecture parameters are not module parameters: the network takes
the *mixing weights* the search method derives from them (a softmax of the
alphas for DARTS), a separate pytree ``{'normal': [E, K], 'reduce': [E,
K]}`` (E edges, K candidate ops) passed to every call, so weights and
alphas are differentiated and optimised independently::

    model = SearchNetwork(num_classes=10)
    alphas = model.init_alphas(rng)
    weights = jaxdarts.methods.get('darts').relax(alphas, rng=None, step=0)
    variables = model.init(rng, images, weights, train=False)
    logits = model.apply(variables, images, weights, train=False)

The cell is :mod:`jaxdarts.spaces.darts_cnn.cell`. Here: which cells reduce,
the scan of a stage's normal cells and their rematerialisation.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.cell import (MixedOp, SearchCell,
                                           check_mixing_weights)
from jaxdarts.spaces.darts_cnn.space import (DARTS_SPACE, SearchSpace,
                                             reduction_cells)


# Scanning a stage's normal cells pays from three of them: at two (the
# paper's 8-cell supernet), the scan compiles and runs slower than the two
# cells unrolled, as it must store every residual its backward pass reads
# (benchmarks/RESULTS.md).
MIN_SCAN = 3


def rematerialized(fn: Callable) -> Callable:
  """``fn``, whose reverse-mode derivative keeps only its inputs.

  The backward pass recomputes ``fn``'s activations from its inputs once
  the cotangent of its output exists, so the backward pass holds one
  cell's activations at a time. ``jax.checkpoint`` orders the
  recomputation with an optimisation barrier, which XLA:CPU removes before
  it schedules: there it scheduled the recomputations early and saved no
  memory. Here the order is a data dependence.
  Forward mode works over reverse mode (``jax.jvp`` of a gradient, as the
  ``exact`` hypergradient takes), not on ``fn`` alone.
  """

  @jax.custom_vjp
  def call(*args):
    return fn(*args)

  def forward(*args):
    return fn(*args), args

  def backward(args, cotangents):
    # Zero times an element of the cotangent, added to every input: XLA
    # keeps the dependence (it does not fold x * 0 for floats).
    zero = 0 * jax.tree.leaves(cotangents)[0].reshape(-1)[0]
    args = jax.tree.map(
        lambda a: a + zero.astype(a.dtype)
        if jnp.issubdtype(a.dtype, jnp.floating) else a, args)
    return jax.vjp(fn, *args)[1](cotangents)

  call.defvjp(forward, backward)
  return call


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


class SearchNetwork(nn.Module):
  """The DARTS supernet for images (NHWC), mixing weights as an argument.

  Reduction cells sit at 1/3 and 2/3 of the depth and double the channels;
  the stem is a 3x3 convolution to ``stem_multiplier * channels`` channels.

  Attributes:
    num_classes: classifier outputs.
    channels: initial cell channels C (16 in the paper's search).
    layers: number of cells (8 in the paper's search).
    space: candidate ops and nodes per cell.
    stem_multiplier: stem channels / C (3 in the paper).
    edge: the edge module class (:class:`~jaxdarts.spaces.darts_cnn.cell.
      MixedOp`, or a search method's; see ``SearchCell``).
    edge_options: extra fields of ``edge``, sorted ``(name, value)`` pairs.
    bn_axis_name: average BatchNorm statistics over this mapped axis.
    scan_cells: run the normal cells of each stage (those between two
      reduction cells) as one ``lax.scan`` where the stage has at least
      :data:`MIN_SCAN` of them, so XLA compiles one normal cell per stage
      and compile time stays flat as ``layers`` grows. Same variables and
      same mathematics either way.
    remat_cells: keep only each cell's inputs for the backward pass and
      recompute its activations there (see :func:`rematerialized`): less
      memory, more compute. Measured for the first-order step; it does not
      help ``exact``, whose linearised training gradient keeps the
      residuals of the whole backward pass, recomputation included.
    depthwise: depthwise convolution implementation, None for the
      backend's faster one (see :mod:`jaxdarts.spaces.darts_cnn.depthwise`).
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
  edge: Any = MixedOp
  edge_options: tuple[tuple[str, Any], ...] = ()
  bn_axis_name: str | None = None
  scan_cells: bool = True
  remat_cells: bool = False
  depthwise: str | None = None
  compute_dtype: Any = None

  def init_alphas(self, rng: jax.Array, scale: float = 1e-3):
    return self.space.init_alphas(rng, scale)

  def check_weights(self, weights) -> None:
    """Refuses mixing weights that do not fit the space, saying why
    (`jaxdarts.spaces.darts_cnn.cell.check_mixing_weights`)."""
    check_mixing_weights(weights, self.space)

  def _cell_channels(self, i: int) -> int:
    """C of cell ``i``: doubled by each reduction up to and including it."""
    return self.channels * 2**sum(r <= i for r in reduction_cells(self.layers))

  def cell_runs(self) -> list[tuple[int, ...]]:
    """The cells in order, grouped as they run: with ``scan_cells``, the
    normal cells of a stage are one group (one scan) when there are at least
    :data:`MIN_SCAN` of them; every other cell is a group of its own."""
    reductions = reduction_cells(self.layers)
    stages = [(0, reductions[0]), (reductions[0] + 1, reductions[1]),
              (reductions[1] + 1, self.layers)]
    runs = []
    for first, end in stages:
      if self.scan_cells and end - first >= MIN_SCAN:
        runs.append(tuple(range(first, end)))
      else:
        runs += [(i,) for i in range(first, end)]
      if end < self.layers:
        runs.append((end,))
    return runs

  def _cell(self, i: int, **kwargs) -> SearchCell:
    reductions = reduction_cells(self.layers)
    return SearchCell(self.space, self._cell_channels(i), i in reductions,
                      i - 1 in reductions, self.bn_axis_name, self.depthwise,
                      self.edge, self.edge_options, **kwargs)

  def _cell_variables(self, i: int) -> dict:
    """Cell ``i``'s variables, for applying its unbound module."""
    return {col: tree[f'cell_{i}'] for col, tree in self.variables.items()
            if f'cell_{i}' in tree}

  def _remat_cell(self, i, s0, s1, weights, train):
    """Cell ``i``, its activations recomputed in the backward pass."""
    cell = self._cell(i, parent=None)

    def apply(variables, s0, s1, weights):
      return cell.apply(variables, s0, s1, weights, train,
                        mutable=['batch_stats'])

    out, updates = rematerialized(apply)(self._cell_variables(i), s0, s1,
                                         weights)
    if self.is_mutable_collection('batch_stats'):
      self.put_variable('batch_stats', f'cell_{i}', updates['batch_stats'])
    return out

  def _scan_cells(self, run, s0, s1, weights, train):
    """Cells ``run`` (one stage's normal cells) as one ``lax.scan``.

    Every cell of the run has the same shapes once its inputs are
    preprocessed, so the scan body is one cell applied to its own weights
    (each cell keeps its variables under ``cell_{i}``; they are stacked
    here). The body preprocesses both inputs with a ReLU-1x1 conv-BN. The
    inputs the run receives from before it may not fit that (a
    factorized reduce after a reduction cell, the stem's channels in the
    first stage): those are preprocessed outside the scan by their cell's
    own preprocessor, and the body takes them in place of its own output,
    which it computes with zero weights and drops.
    """
    cells = [self._cell(i, parent=None) for i in run]
    c = cells[0].channels
    uniform = s1.shape[:3] + (self.space.num_nodes * c,)
    cell_vars = [self._cell_variables(i) for i in run]

    def part(tree, key):
      return {col: tree[col][key] for col in tree if key in tree[col]}

    def apply(module, tree, *args, **kwargs):
      return module.apply(tree, *args, train, mutable=['batch_stats'],
                          **kwargs)

    # (cell k, input slot) -> its preprocessed input, where computed here.
    outside, new_stats = {}, [{} for _ in run]
    for k, slot, state in [(0, 0, s0), (0, 1, s1), (1, 0, s1)]:
      if state.shape != uniform:
        pre = f'preprocess{slot}'
        outside[k, slot], updates = apply(cells[k].preprocessor(slot),
                                          part(cell_vars[k], pre), state)
        new_stats[k][pre] = updates['batch_stats']
    rcb = cells[-1].preprocessor(1)
    zeros = jax.tree.map(
        lambda a: jnp.zeros(a.shape, a.dtype),
        jax.eval_shape(functools.partial(rcb.init, train=False),
                       jax.random.key(0), jax.ShapeDtypeStruct(uniform,
                                                               s1.dtype)))
    pre_vars, given = [], []
    for slot in (0, 1):
      pre = f'preprocess{slot}'
      pre_vars.append(_stack([zeros if (k, slot) in outside else
                              part(tree, pre) for k, tree in
                              enumerate(cell_vars)]))
      given.append(jnp.stack([
          outside.get((k, slot), jnp.zeros(uniform[:3] + (c,), s1.dtype))
          for k in range(len(run))]))
    dag_vars = _stack([{col: {key: v for key, v in tree[col].items()
                              if not key.startswith('preprocess')}
                        for col in tree} for tree in cell_vars])
    use_given = jnp.array([[(k, slot) in outside for slot in (0, 1)]
                           for k in range(len(run))])

    def body(carry, xs):
      pre_vars, given, use_given, dag_vars = xs
      inputs, pre_stats = [], []
      for slot, state in enumerate(carry):
        y, updates = apply(rcb, pre_vars[slot], state)
        inputs.append(jnp.where(use_given[slot], given[slot], y))
        pre_stats.append(updates['batch_stats'])
      out, updates = apply(cells[0], dag_vars, *inputs, weights,
                           preprocessed=True)
      return (carry[1], out), (pre_stats, updates['batch_stats'])

    if self.remat_cells:  # The loop itself orders each recomputation.
      body = jax.checkpoint(body, prevent_cse=False)
    carry = tuple(s if s.shape == uniform else jnp.zeros(uniform, s.dtype)
                  for s in (s0, s1))
    (s0, s1), (pre_stats, dag_stats) = jax.lax.scan(
        body, carry, (pre_vars, given, use_given, dag_vars))
    if self.is_mutable_collection('batch_stats'):
      for k, i in enumerate(run):
        tree = jax.tree.map(lambda a: a[k], dag_stats)
        for slot in (0, 1):
          tree[f'preprocess{slot}'] = new_stats[k].get(
              f'preprocess{slot}',
              jax.tree.map(lambda a: a[k], pre_stats[slot]))
        self.put_variable('batch_stats', f'cell_{i}', tree)
    return s0, s1

  @nn.compact
  def __call__(self, images, weights, train: bool):
    """Logits ``[N, num_classes]``; ``weights`` are the mixing weights."""
    self.check_weights(weights)
    bn = self.bn_axis_name
    x = nn.Conv(self.stem_multiplier * self.channels, (3, 3), padding=1,
                use_bias=False, kernel_init=ops.torch_conv_init,
                name='stem_conv')(images)
    x = ops.batch_norm(train, True, bn, name='stem_bn')(x)

    stem_dtype = x.dtype
    s0 = s1 = x.astype(self.compute_dtype or stem_dtype)
    for run in self.cell_runs():
      kind = 'reduce' if run[0] in reduction_cells(self.layers) else 'normal'
      if len(run) > 1 and not self.is_initializing():
        s0, s1 = self._scan_cells(run, s0, s1, weights[kind], train)
        continue
      for i in run:  # init always runs here: it creates every cell's weights
        if self.remat_cells and not self.is_initializing():
          out = self._remat_cell(i, s0, s1, weights[kind], train)
        else:
          out = self._cell(i, name=f'cell_{i}')(s0, s1, weights[kind], train)
        s0, s1 = s1, out
    x = jnp.mean(s1.astype(stem_dtype), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=ops.torch_conv_init,
                    name='classifier')(x)
