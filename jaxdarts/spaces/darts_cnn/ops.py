"""Candidate operations of a DARTS edge: specifications and one executor.

An operation is a small *specification* (data), and :class:`EdgeOps` computes
any set of them on one input. The DARTS operations follow the reference
implementation (ReLU-Conv-BN order):

* ``sep_conv_kxk``: two blocks of ReLU, depthwise k x k, 1x1, BatchNorm; the
  first block carries the stride;
* ``dil_conv_kxk``: one such block with a dilation-2 depthwise convolution;
* ``max_pool_3x3`` / ``avg_pool_3x3`` (padding 1, the average excludes the
  padding), followed by a non-affine BatchNorm inside the supernet;
* ``skip_connect``: identity, or a factorized reduce at stride 2;
* ``none``: zero.

Why specifications rather than one module per operation: XLA's compile time
grows with the number of operations in the graph, and a supernet has many.
:class:`EdgeOps` runs each block *layer* of all convolutional candidates
together, stacked on an op axis (one batched 1x1 convolution and one
BatchNorm per layer), and the depthwise convolutions of candidates with the
same kernel as one call of :func:`jaxdarts.spaces.darts_cnn.depthwise.depthwise_conv` (whose
implementation is chosen per backend). The same executor builds the single
operations of the evaluation networks, so there is one implementation of
every op.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn.depthwise import depthwise_conv

# PyTorch's default convolution init (kaiming uniform, a=sqrt(5)), so weights
# start at the scale the reference implementation's do.
torch_conv_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')
# A depthwise filter [k, k, C] has fan_in k*k, as in PyTorch with groups=C.
depthwise_init = nn.initializers.variance_scaling(
    1 / 3, 'fan_in', 'uniform', in_axis=(0, 1), out_axis=2)
# 1x1 convolutions stacked on a leading op axis: [M, C_in, C_out].
stacked_pointwise_init = nn.initializers.variance_scaling(
    1 / 3, 'fan_in', 'uniform', in_axis=-2, out_axis=-1, batch_axis=(0,))


class SepConv(NamedTuple):
  kernel_size: int
  dilation: int = 1
  blocks: int = 2


def DilConv(kernel_size: int) -> SepConv:  # pylint: disable=invalid-name
  return SepConv(kernel_size, dilation=2, blocks=1)


class Pool(NamedTuple):
  kind: str  # 'max' | 'avg'


class Skip(NamedTuple):
  pass


class Zero(NamedTuple):
  pass


OpSpec = SepConv | Pool | Skip | Zero

# The registry: name -> specification. Add an entry to make an op searchable.
OPS: dict[str, OpSpec] = {
    'none': Zero(),
    'max_pool_3x3': Pool('max'),
    'avg_pool_3x3': Pool('avg'),
    'skip_connect': Skip(),
    'sep_conv_3x3': SepConv(3),
    'sep_conv_5x5': SepConv(5),
    'sep_conv_7x7': SepConv(7),
    'dil_conv_3x3': DilConv(3),
    'dil_conv_5x5': DilConv(5),
}


def op_spec(name: str) -> OpSpec:
  try:
    return OPS[name]
  except KeyError:
    raise ValueError(f'Unknown operation {name!r}; known operations: '
                     f'{sorted(OPS)}. Register new ones in jaxdarts.spaces.darts_cnn.ops.OPS.'
                     ) from None


def batch_norm(train: bool, affine: bool, axis_name: str | None = None,
               axis=-1, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, use_scale=affine, use_bias=affine,
                      axis=axis, axis_name=axis_name, name=name)


def pointwise(features: int, name: str | None = None,
              dtype=None) -> nn.Dense:
  """A 1x1 convolution without bias, as a matmul over channels."""
  return nn.Dense(features, use_bias=False, kernel_init=torch_conv_init,
                  dtype=dtype, name=name)


def patches(x: jax.Array, kernel_size: int, *, stride: int = 1,
            dilation: int = 1, pad_value: float = 0.) -> jax.Array:
  """Strided, dilated k x k patches with 'same' padding.

  Args:
    x: ``[N, H, W, ...]``.

  Returns:
    ``[N, Ho, Wo, k, k, ...]`` with ``Ho = ceil(H / stride)``, where
    ``out[n, i, j, a, b] = x_pad[n, s*i + d*a, s*j + d*b]``.
  """
  k, s, d = kernel_size, stride, dilation
  pad = d * (k - 1) // 2
  widths = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 3)
  xp = jnp.pad(x, widths, constant_values=pad_value)
  ho = (x.shape[1] - 1) // s + 1
  wo = (x.shape[2] - 1) // s + 1
  cols = jnp.stack([jax.lax.slice_in_dim(xp, b * d, b * d + (wo - 1) * s + 1, s,
                                         axis=2) for b in range(k)], axis=3)
  return jnp.stack([jax.lax.slice_in_dim(cols, a * d, a * d + (ho - 1) * s + 1,
                                         s, axis=1) for a in range(k)], axis=3)


def max_pool(x: jax.Array, stride: int) -> jax.Array:
  return patches(x, 3, stride=stride, pad_value=-jnp.inf).max(axis=(3, 4))


def avg_pool(x: jax.Array, stride: int, impl: str | None = None) -> jax.Array:
  """3x3 average pooling, padding 1, not counting the padding."""
  box = functools.partial(depthwise_conv, stride=stride, impl=impl)
  total = box(x, jnp.ones((3, 3) + x.shape[3:], x.dtype))
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  return total / box(ones, jnp.ones((3, 3, 1), x.dtype))


class ReLUConvBN(nn.Module):
  """ReLU, 1x1 convolution, BatchNorm: a cell's input preprocessing."""
  features: int
  affine: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = pointwise(self.features, dtype=x.dtype)(nn.relu(x))
    return batch_norm(train, self.affine, self.bn_axis_name)(x)


class FactorizedReduce(nn.Module):
  """Halve the resolution with two offset stride-2 1x1 convolutions."""
  features: int
  affine: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    if self.features % 2:
      raise ValueError(f'FactorizedReduce needs an even channel count, got '
                       f'{self.features}.')
    x = nn.relu(x)
    a = pointwise(self.features // 2, dtype=x.dtype)(x[:, ::2, ::2])
    b = pointwise(self.features // 2, dtype=x.dtype)(x[:, 1::2, 1::2])
    x = jnp.concatenate([a, b], axis=-1)
    return batch_norm(train, self.affine, self.bn_axis_name)(x)


class EdgeOps(nn.Module):
  """The candidate operations ``primitives`` of one edge, on one input.

  Returns ``{name: output}`` for every primitive but ``'none'`` (whose output
  is zero); each output is ``[N, H/stride, W/stride, C]``.

  Attributes:
    primitives: op names, keys of :data:`OPS`.
    channels: C, the input and output channels.
    stride: 1, or 2 in a reduction cell's edges from the cell inputs.
    train: BatchNorm uses batch statistics (and updates running averages).
    affine: BatchNorm has scale and bias (False in the supernet).
    pool_bn: follow pooling by a non-affine BatchNorm (the supernet does).
    bn_axis_name: average BatchNorm statistics over this mapped axis.
    depthwise: depthwise convolution implementation (see
      :func:`jaxdarts.spaces.darts_cnn.depthwise.depthwise_conv`; None picks by backend).
  """
  primitives: tuple[str, ...]
  channels: int
  stride: int
  train: bool
  affine: bool = False
  pool_bn: bool = False
  bn_axis_name: str | None = None
  depthwise: str | None = None

  def _bn(self, x, name):
    return batch_norm(self.train, self.affine, self.bn_axis_name,
                      axis=(-2, -1), name=name)(x)

  @nn.compact
  def __call__(self, x):
    specs = {name: op_spec(name) for name in self.primitives}
    out = {}
    pools = [n for n, s in specs.items() if isinstance(s, Pool)]
    if pools:
      y = jnp.stack([max_pool(x, self.stride) if specs[n].kind == 'max' else
                     avg_pool(x, self.stride, self.depthwise) for n in pools],
                    axis=-2)
      if self.pool_bn:
        y = self._bn(y, 'pool_bn')
      out.update({n: y[..., m, :] for m, n in enumerate(pools)})
    if 'skip_connect' in specs:
      out['skip_connect'] = x if self.stride == 1 else FactorizedReduce(
          self.channels, self.affine, self.bn_axis_name,
          name='skip_connect')(x, self.train)
    out.update(self._convs({n: s for n, s in specs.items()
                            if isinstance(s, SepConv)}, x))
    return out

  def _convs(self, convs: dict[str, SepConv], x):
    """Block by block, all candidates at once: depthwise, 1x1, BatchNorm.

    Candidates with the same kernel size and dilation stack their depthwise
    kernels into one call; every block then has one stacked 1x1
    convolution and one BatchNorm over all candidates.
    """
    outputs = {name: x for name in convs}
    for block in range(max((s.blocks for s in convs.values()), default=0)):
      names = [n for n, s in convs.items() if s.blocks > block]
      stride = self.stride if block == 0 else 1
      dw, order = [], []
      for shape in sorted({(convs[n].kernel_size, convs[n].dilation)
                           for n in names}):
        group = [n for n in names if (convs[n].kernel_size,
                                      convs[n].dilation) == shape]
        kernels = jnp.stack([
            self.param(f'{n}_depthwise_{block}', depthwise_init,
                       (shape[0], shape[0], self.channels)) for n in group],
                            axis=-2)
        if block == 0:  # every candidate reads x itself
          inputs = x[..., None, :]
        else:
          inputs = jnp.stack([outputs[n] for n in group], axis=-2)
        dw.append(depthwise_conv(nn.relu(inputs), kernels, stride=stride,
                                 dilation=shape[1], impl=self.depthwise))
        order += group
      y = jnp.concatenate(dw, axis=-2)
      kernel = self.param(f'pointwise_{block}', stacked_pointwise_init,
                          (len(order), self.channels, self.channels))
      y = jnp.einsum('nhwmc,mcd->nhwmd', y, kernel.astype(y.dtype))
      y = self._bn(y, f'bn_{block}')
      outputs.update({n: y[..., m, :] for m, n in enumerate(order)})
    return outputs
