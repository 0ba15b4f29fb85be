"""Evaluation networks: a genotype's cells stacked into a CIFAR/ImageNet net.

After a search, the discrete architecture (a :class:`~jaxdarts.Genotype`) is
retrained from scratch in a deeper and wider network, as in the paper's
Section 3.1 and the reference implementation's ``model.py``:

* :class:`EvalCell`: each intermediate node sums one operation on each of
  its two inputs; the cell output concatenates the ``*_concat`` states;
* drop path (:func:`drop_path`): in training, every operation output except
  the identity is zeroed per sample with probability ``drop_path_rate``;
* :class:`NetworkCIFAR` and :class:`NetworkImageNet`, with their auxiliary
  heads (:class:`AuxiliaryHead`) at 2/3 of the depth.

Every cell operation is built by :class:`jaxdarts.spaces.darts_cnn.ops.EdgeOps` (affine
BatchNorm, no BatchNorm after pooling), the executor the supernet uses, so
there is one implementation of every op. Usage::

    model = NetworkCIFAR(genotypes.get('DARTS_V2'))
    variables = model.init(rng, images, train=False)
    logits = model.apply(variables, images, train=False)
    (logits, aux_logits), updates = model.apply(
        variables, images, train=True, drop_path_rate=0.1,
        rngs={'dropout': key}, mutable=['batch_stats'])

``drop_path_rate`` is a call argument (a Python float or a traced scalar),
so a trainer can ramp it over training without recompiling.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES, reduction_cells

Rate = float | jax.Array


def _is_static_zero(rate: Rate) -> bool:
  """Whether ``rate`` is a Python number equal to 0 (nothing to drop)."""
  return isinstance(rate, (int, float)) and rate == 0


def drop_path(x: jax.Array, rate: Rate, rng: jax.Array) -> jax.Array:
  """Zeroes whole samples of ``x`` with probability ``rate``, scales the rest.

  Each sample (leading axis) is kept with probability ``1 - rate`` and then
  divided by ``1 - rate``, so the expectation is unchanged. At ``rate == 0``
  the result equals ``x`` exactly. ``rate`` must be below 1.

  Args:
    x: ``[N, ...]``.
    rate: the drop probability, a Python float or a scalar array (traced
      values are fine: nothing branches on it).
    rng: a PRNG key.
  """
  keep = 1. - jnp.asarray(rate, x.dtype)
  shape = (x.shape[0],) + (1,) * (x.ndim - 1)
  mask = jax.random.bernoulli(rng, keep, shape)
  return x * (mask.astype(x.dtype) / keep)


class EvalCell(nn.Module):
  """A cell of an evaluation network, built from one cell of a genotype.

  The two inputs are preprocessed to ``channels`` channels (a factorized
  reduce for ``s0`` when the previous cell reduced, else ReLU-conv-BN);
  node ``i`` is ``op_a(state_a) + op_b(state_b)`` for its two
  ``(op, state)`` pairs, with stride 2 on the cell inputs (states 0, 1) in
  a reduction cell; the output concatenates the states of the concat list,
  so it has ``len(concat) * channels`` channels. Any number of nodes and
  any concat list work (in a reduction cell the concat list may not name
  the unreduced inputs 0 and 1).

  Attributes:
    genotype: the architecture.
    cell_type: ``'normal'`` or ``'reduce'``: which cell of the genotype.
    channels: C, the channels of every state inside the cell.
    reduction: whether the edges from the cell inputs have stride 2.
    reduction_prev: whether the previous cell reduced (``s0`` then has twice
      the resolution of ``s1``).
    bn_axis_name: average BatchNorm statistics over this mapped axis.
  """
  genotype: Genotype
  cell_type: str
  channels: int
  reduction: bool
  reduction_prev: bool
  bn_axis_name: str | None = None

  def _pairs_and_concat(self):
    if self.cell_type not in CELL_TYPES:
      raise ValueError(f'EvalCell.cell_type must be one of {CELL_TYPES}, got '
                       f'{self.cell_type!r}.')
    self.genotype.validate()
    pairs, concat = self.genotype.cell(self.cell_type)
    if self.reduction and {0, 1} & set(concat):
      raise ValueError(
          f'EvalCell: the {self.cell_type} concat list {list(concat)} names a '
          'cell input (state 0 or 1), which a reduction cell does not reduce; '
          'its resolution would not match the nodes.')
    return pairs, concat

  def _edge(self, k: int, name: str, x, stride: int, train: bool,
            drop_path_rate: Rate):
    """Operation ``name`` on ``x``, followed by drop path unless identity."""
    if isinstance(ops.op_spec(name), ops.Skip) and stride == 1:
      return x  # Identity: no parameters, never dropped.
    y = ops.EdgeOps((name,), self.channels, stride, train, affine=True,
                    pool_bn=False, bn_axis_name=self.bn_axis_name,
                    name=f'edge_{k}')(x)[name]
    if train and not _is_static_zero(drop_path_rate):
      y = drop_path(y, drop_path_rate, self.make_rng('dropout'))
    return y

  @nn.compact
  def __call__(self, s0, s1, train: bool, drop_path_rate: Rate = 0.):
    pairs, concat = self._pairs_and_concat()
    c, bn = self.channels, self.bn_axis_name
    if self.reduction_prev:
      s0 = ops.FactorizedReduce(c, True, bn, name='preprocess0')(s0, train)
    else:
      s0 = ops.ReLUConvBN(c, True, bn, name='preprocess0')(s0, train)
    s1 = ops.ReLUConvBN(c, True, bn, name='preprocess1')(s1, train)

    states = [s0, s1]
    for node in range(len(pairs) // 2):
      total = 0
      for k in (2 * node, 2 * node + 1):
        name, src = pairs[k]
        stride = 2 if self.reduction and src < 2 else 1
        total = total + self._edge(k, name, states[src], stride, train,
                                   drop_path_rate)
      states.append(total)
    return jnp.concatenate([states[i] for i in concat], axis=-1)


class AuxiliaryHead(nn.Module):
  """The auxiliary classifier of the reference implementation.

  ReLU, 5x5 average pooling (no padding) with stride ``pool_stride``, 1x1
  convolution to 128 + BN + ReLU, 2x2 convolution to 768 (+ BN) + ReLU,
  flatten, linear. CIFAR (input 8x8): stride 3 and the final BN;
  ImageNet (input 7x7): stride 2 and no BN after the 2x2 convolution (the
  reference code leaves it out, as in the paper's experiments).

  Attributes:
    num_classes: classifier outputs.
    pool_stride: 3 for CIFAR, 2 for ImageNet.
    final_bn: BatchNorm after the 2x2 convolution.
    bn_axis_name: average BatchNorm statistics over this mapped axis.
  """
  num_classes: int
  pool_stride: int = 3
  final_bn: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    s = self.pool_stride
    pooled = [(n - 5) // s + 1 if n >= 5 else 0 for n in x.shape[1:3]]
    if min(pooled) < 2:
      smallest = 5 + s
      raise ValueError(
          f'AuxiliaryHead: its 5x5 pooling (stride {s}) and 2x2 convolution '
          f'need a feature map of at least {smallest}x{smallest} at 2/3 '
          f'depth, got {x.shape[1]}x{x.shape[2]}; use larger images (the '
          'reference sizes: 32x32 for CIFAR, 224x224 for ImageNet) or '
          'auxiliary=False.')
    bn = self.bn_axis_name
    # No padding, so count_include_pad=False changes nothing.
    x = nn.avg_pool(nn.relu(x), (5, 5), strides=(s, s), padding='VALID')
    x = _conv(128, 1, name='conv_1x1')(x)
    x = nn.relu(ops.batch_norm(train, True, bn, name='bn_1x1')(x))
    x = _conv(768, 2, padding='VALID', name='conv_2x2')(x)
    if self.final_bn:
      x = ops.batch_norm(train, True, bn, name='bn_2x2')(x)
    x = nn.relu(x).reshape(x.shape[0], -1)
    return _dense(self.num_classes, name='classifier')(x)


def _conv(features: int, kernel: int, stride: int = 1, padding: Any = 0,
          name: str | None = None) -> nn.Conv:
  """A bias-free convolution with PyTorch's padding and initialisation."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=padding, use_bias=False,
                 kernel_init=ops.torch_conv_init, name=name)


def _dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, kernel_init=ops.torch_conv_init, name=name)


class _CellStack(nn.Module):
  """Shared body of the evaluation networks: cells, auxiliary head, classifier.

  Subclasses define the attributes ``genotype, channels, layers,
  num_classes, auxiliary, bn_axis_name``, compute the stem in their
  ``__call__``, then call :meth:`_cells` and :meth:`_head`. The class
  attributes below are the reference settings that differ by dataset.
  """
  aux_pool_stride = 3
  aux_final_bn = True
  first_reduction_prev = False
  stem_stride = 1  # Of the stem's output that the first cell reads as s1.

  def _cells(self, s0, s1, train: bool, drop_path_rate: Rate,
             features: dict[int, jax.Array] | None = None):
    """Runs the cells; returns ``(s1, aux_input)``.

    With ``features``, puts into it the last cell output at each
    resolution (before each reduction cell, and the final one), keyed by
    its stride relative to the input image.
    """
    reductions = reduction_cells(self.layers)
    stride = self.stem_stride
    aux_at = 2 * self.layers // 3
    channels, reduction_prev = self.channels, self.first_reduction_prev
    aux_input = None
    for i in range(self.layers):
      reduction = i in reductions
      channels *= 2 if reduction else 1
      cell = EvalCell(self.genotype, 'reduce' if reduction else 'normal',
                      channels, reduction, reduction_prev, self.bn_axis_name,
                      name=f'cell_{i}')
      s0, s1 = s1, cell(s0, s1, train, drop_path_rate)
      reduction_prev = reduction
      stride *= 2 if reduction else 1
      if features is not None and (i + 1 in reductions
                                   or i + 1 == self.layers):
        features[stride] = s1
      if i == aux_at:
        aux_input = s1
    return s1, aux_input

  def _head(self, s1, aux_input, train: bool):
    """Classifier logits, with auxiliary logits when training."""
    logits = _dense(self.num_classes, 'classifier')(jnp.mean(s1, axis=(1, 2)))
    # The head is also built at init, so that eval-mode init has its params.
    if self.auxiliary and (train or self.is_initializing()):
      aux_logits = AuxiliaryHead(self.num_classes, self.aux_pool_stride,
                                 self.aux_final_bn, self.bn_axis_name,
                                 name='auxiliary_head')(aux_input, train)
      if train:
        return logits, aux_logits
    return logits


class NetworkCIFAR(_CellStack):
  """The DARTS evaluation network for CIFAR (32x32 NHWC images).

  Stem: 3x3 convolution to ``stem_multiplier * channels`` + BN; ``layers``
  cells, reduction cells (doubling the channels) at 1/3 and 2/3 of the
  depth; global average pooling and a linear classifier. With
  ``auxiliary``, an auxiliary head reads the output of cell
  ``2 * layers // 3`` in training.

  ``__call__(images, train, drop_path_rate=0.)`` returns the logits, or
  ``(logits, aux_logits)`` when training with ``auxiliary``. Drop path needs
  a ``'dropout'`` rng when ``train`` and the rate is not a literal 0.
  With ``return_features=True`` it returns ``(outputs, features)``: the
  same outputs and, as a backbone for dense heads, ``{stride: [N, H /
  stride, W / stride, C_stride]}``, the last cell output at strides 1, 2
  and 4 (one per stage).

  Attributes:
    genotype: the architecture.
    channels: initial cell channels C (36 in the paper).
    layers: number of cells (20 in the paper).
    num_classes: classifier outputs.
    auxiliary: build the auxiliary head (its outputs only in training).
    stem_multiplier: stem channels / C (3).
    bn_axis_name: average BatchNorm statistics over this mapped axis.
  """
  genotype: Genotype
  channels: int = 36
  layers: int = 20
  num_classes: int = 10
  auxiliary: bool = True
  stem_multiplier: int = 3
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images, train: bool, drop_path_rate: Rate = 0., *,
               return_features: bool = False):
    x = _conv(self.stem_multiplier * self.channels, 3, padding=1,
              name='stem_conv')(images)
    x = ops.batch_norm(train, True, self.bn_axis_name, name='stem_bn')(x)
    features = {} if return_features else None
    s1, aux_input = self._cells(x, x, train, drop_path_rate, features)
    outputs = self._head(s1, aux_input, train)
    return (outputs, features) if return_features else outputs


class NetworkImageNet(_CellStack):
  """The DARTS evaluation network for ImageNet (224x224 NHWC images).

  Stem 0: 3x3 stride-2 convolution to C/2, BN, ReLU, 3x3 stride-2
  convolution to C, BN. Stem 1: ReLU, 3x3 stride-2 convolution to C, BN.
  The first cell reads both stems (``s0`` at twice the resolution, so it
  starts with ``reduction_prev``). The auxiliary head pools with stride 2
  and has no BN after its 2x2 convolution, as in the reference code. The
  final pooling is a global average (the reference's 7x7 pool at 224x224).

  ``__call__(images, train, drop_path_rate=0., return_features=False)`` as
  :class:`NetworkCIFAR`; its features are at strides 4 (stem 0), 8, 16 and
  32.

  Attributes:
    genotype: the architecture.
    channels: initial cell channels C (48 in the paper's mobile setting).
    layers: number of cells (14).
    num_classes: classifier outputs.
    auxiliary: build the auxiliary head (its outputs only in training).
    bn_axis_name: average BatchNorm statistics over this mapped axis.
  """
  genotype: Genotype
  channels: int = 48
  layers: int = 14
  num_classes: int = 1000
  auxiliary: bool = True
  bn_axis_name: str | None = None

  aux_pool_stride = 2
  aux_final_bn = False
  first_reduction_prev = True
  stem_stride = 8

  @nn.compact
  def __call__(self, images, train: bool, drop_path_rate: Rate = 0., *,
               return_features: bool = False):
    c, bn = self.channels, self.bn_axis_name
    x = _conv(c // 2, 3, 2, padding=1, name='stem0_conv0')(images)
    x = nn.relu(ops.batch_norm(train, True, bn, name='stem0_bn0')(x))
    x = _conv(c, 3, 2, padding=1, name='stem0_conv1')(x)
    s0 = ops.batch_norm(train, True, bn, name='stem0_bn1')(x)
    x = _conv(c, 3, 2, padding=1, name='stem1_conv')(nn.relu(s0))
    s1 = ops.batch_norm(train, True, bn, name='stem1_bn')(x)
    features = {4: s0} if return_features else None
    s1, aux_input = self._cells(s0, s1, train, drop_path_rate, features)
    outputs = self._head(s1, aux_input, train)
    return (outputs, features) if return_features else outputs
