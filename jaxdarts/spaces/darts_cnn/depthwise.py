"""Depthwise convolution, implemented per backend.

The supernet spends most of its time in depthwise convolutions (every
``sep_conv`` and ``dil_conv`` candidate of every edge). Backends differ in
what runs them fast:

* ``'shift'``: a sum of k*k shifted, strided slices of the padded input,
  each times its tap of the kernel. XLA fuses it into one loop over the
  output, which on CPU runs an order of magnitude faster than XLA:CPU's
  grouped convolution. It is a JAX primitive with hand-written derivative
  rules (below), because autodiff of k*k slices yields k*k pads that are
  slow both to compile and to run.
* ``'conv'``: ``lax.conv_general_dilated`` with one group per channel, for
  GPUs and TPUs, whose libraries have fast depthwise kernels.

``impl=None`` picks ``'shift'`` on CPU and ``'conv'`` elsewhere. Both compute

.. math::

   y[n, i, j, f] = \\sum_{a, b} x_{pad}[n, s i + d a, s j + d b, f]\\, k[a, b, f]

with 'same' padding ``d (k - 1) / 2``, stride ``s`` and dilation ``d``; the
features ``f`` may span several trailing axes (e.g. ``[ops, channels]``), so
the depthwise convolutions of several stacked candidates are one call.
"""

from __future__ import annotations

import functools

import jax
import jax.extend
import jax.numpy as jnp
from jax.interpreters import ad
from jax.interpreters import batching
from jax.interpreters import mlir
import numpy as np

IMPLS = ('shift', 'conv')


def depthwise_conv(x: jax.Array, kernel: jax.Array, *, stride: int = 1,
                   dilation: int = 1, impl: str | None = None) -> jax.Array:
  """Depthwise k x k convolution with 'same' padding.

  Args:
    x: ``[N, H, W, *F]``.
    kernel: ``[k, k, *G]``, k odd, with ``G`` and ``F`` broadcastable (one
      input ``[N, H, W, 1, C]`` through ``M`` stacked kernels ``[k, k, M, C]``
      gives ``[N, Ho, Wo, M, C]``, without ``M`` copies of the input).
    stride: s; the output is ``[N, ceil(H / s), ceil(W / s), *F]``.
    dilation: d.
    impl: ``'shift'``, ``'conv'``, or None for the backend's faster one.
  """
  try:
    features = jnp.broadcast_shapes(x.shape[3:], kernel.shape[2:])
  except ValueError:
    features = None
  if (features is None or kernel.ndim != x.ndim - 1 or
      kernel.shape[0] != kernel.shape[1]):
    raise ValueError(f'depthwise_conv: kernel {kernel.shape} does not fit '
                     f'input {x.shape}; expected [k, k, *{x.shape[3:]}].')
  impl = impl or ('shift' if jax.default_backend() == 'cpu' else 'conv')
  kernel = kernel.astype(x.dtype)
  if impl == 'shift':
    return _shift_conv(x, kernel, stride, dilation)
  if impl == 'conv':
    return _library_conv(x, kernel, stride, dilation)
  raise ValueError(f'Unknown depthwise implementation {impl!r}; use one of '
                   f'{IMPLS} or None.')


def _library_conv(x, kernel, stride, dilation):
  features = jnp.broadcast_shapes(x.shape[3:], kernel.shape[2:])
  x = jnp.broadcast_to(x, x.shape[:3] + features)
  kernel = jnp.broadcast_to(kernel, kernel.shape[:2] + features)
  x = x.reshape(x.shape[:3] + (-1,))
  pad = dilation * (kernel.shape[0] - 1) // 2
  y = jax.lax.conv_general_dilated(
      x, kernel.reshape(kernel.shape[:2] + (1, -1)), (stride, stride),
      [(pad, pad)] * 2, rhs_dilation=(dilation, dilation),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])
  return y.reshape(y.shape[:3] + features)


def _out_size(size: int, stride: int) -> int:
  return (size - 1) // stride + 1


# The 'shift' implementation is a primitive of its own, bilinear in (x, k),
# so that JAX's forward and reverse modes both use the rules below: the
# forward pass, the JVP (two forward passes) and the transposes (two more
# shift passes) never expand into k*k pads. Second-order hypergradients
# (forward over reverse, reverse over reverse) differentiate these rules
# again. Its operands may carry ``lead`` leading axes shared by x and the
# kernel (``[*L, N, H, W, *F]`` and ``[*L, k, k, *F]``): that is how vmap
# batches it, without moving any axis.
shift_depthwise_p = jax.extend.core.Primitive('jaxdarts_depthwise_shift')


def _shift_conv(x, kernel, stride, dilation, lead=0):
  return shift_depthwise_p.bind(x, kernel, stride=stride, dilation=dilation,
                                lead=lead)


def _pad_spatial(x, lead, pad):
  return jnp.pad(x, [(0, 0)] * (lead + 1) + [(pad, pad)] * 2
                 + [(0, 0)] * (x.ndim - lead - 3))


def _window(xp, lead, offsets, out_hw, stride):
  """``xp[..., s*i + a, s*j + b, ...]`` for ``i, j`` over the output grid."""
  start, limit, strides = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
  for axis, offset, size in zip((lead + 1, lead + 2), offsets, out_hw):
    start[axis], limit[axis] = offset, offset + (size - 1) * stride + 1
    strides[axis] = stride
  return jax.lax.slice(xp, start, limit, strides)


def _shift_forward(x, kernel, *, stride, dilation, lead):
  k = kernel.shape[lead]
  out_hw = [_out_size(n, stride) for n in x.shape[lead + 1:lead + 3]]
  xp = _pad_spatial(x, lead, dilation * (k - 1) // 2)
  tap_shape = kernel.shape[:lead] + (1, 1, 1) + kernel.shape[lead + 2:]
  terms = (_window(xp, lead, (a * dilation, b * dilation), out_hw, stride)
           * kernel[(slice(None),) * lead + (a, b)].reshape(tap_shape)
           for a in range(k) for b in range(k))
  return functools.reduce(jnp.add, terms)


def _abstract_eval(x, kernel, *, stride, dilation, lead):
  del dilation
  shape = (jnp.broadcast_shapes(x.shape[:lead], kernel.shape[:lead])
           + (x.shape[lead],)
           + tuple(_out_size(n, stride) for n in x.shape[lead + 1:lead + 3])
           + jnp.broadcast_shapes(x.shape[lead + 3:], kernel.shape[lead + 2:]))
  return jax.core.ShapedArray(shape, x.dtype)


def _transpose_x(g, x, kernel, *, stride, dilation, lead):
  """``dx``: the output gradient, spread back to the input's grid (zeros
  between samples when s > 1), correlated with the flipped kernel."""
  if stride > 1:
    spread = [(0, 0, 0)] * g.ndim
    for axis in (lead + 1, lead + 2):
      size, out = x.aval.shape[axis], g.shape[axis]
      spread[axis] = (0, size - (out - 1) * stride - 1, stride - 1)
    g = jax.lax.pad(g, jnp.zeros((), g.dtype), spread)
  flipped = jnp.flip(kernel, (lead, lead + 1))
  return _sum_to(_shift_conv(g, flipped, 1, dilation, lead), x.aval.shape)


def _transpose_kernel(g, x, kernel, *, stride, dilation, lead):
  shape = kernel.aval.shape
  return _sum_to(_kernel_gradient(x, g, shape[lead], stride, dilation, lead),
                 shape)


def _batch(args, dims, *, stride, dilation, lead):
  """vmap: the mapped axis becomes a leading axis of both operands."""
  x, kernel = (jnp.expand_dims(a, 0) if d is None else jnp.moveaxis(a, d, 0)
               for a, d in zip(args, dims))
  return _shift_conv(x, kernel, stride, dilation, lead + 1), 0


_STATIC = ('stride', 'dilation', 'lead')
shift_depthwise_p.def_impl(jax.jit(_shift_forward, static_argnames=_STATIC))
shift_depthwise_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(shift_depthwise_p, mlir.lower_fun(
    _shift_forward, multiple_results=False))
ad.defbilinear(shift_depthwise_p, _transpose_x, _transpose_kernel)
batching.primitive_batchers[shift_depthwise_p] = _batch


def _sum_to(a, shape):
  """Sums ``a`` over the axes that broadcasting expanded from ``shape``.

  By adding slices, not with a reduction: XLA:CPU would hand a reduction
  of the k*k-tap chain to a library kernel and materialise every tap as a
  full-size buffer (3x the search step's memory); added slices stay in the
  chain's one loop.
  """
  for axis, n in enumerate(shape):
    if a.shape[axis] != n:
      a = functools.reduce(jnp.add, (
          jax.lax.slice_in_dim(a, i, i + 1, axis=axis)
          for i in range(a.shape[axis])))
  return a


def _kernel_gradient(x, g, kernel_size, stride, dilation, lead):
  """``dk[a, b] = sum_{n,i,j} x_pad[n, s*i + d*a, s*j + d*b] * g[n, i, j]``.

  A loop over the taps (``lax.map``): one small program instead of k*k
  reductions, which XLA:CPU both compiles and runs faster.
  """
  k, s, d = kernel_size, stride, dilation
  xp = _pad_spatial(x, lead, d * (k - 1) // 2)
  out_hw = g.shape[lead + 1:lead + 3]
  size = list(xp.shape)
  size[lead + 1:lead + 3] = [(n - 1) * s + 1 for n in out_hw]
  accumulate = jnp.promote_types(g.dtype, jnp.float32)  # bf16 sums drift
  spatial = (lead, lead + 1, lead + 2)

  def tap(offset):
    start = [0] * xp.ndim
    start[lead + 1], start[lead + 2] = offset[0], offset[1]
    window = _window(jax.lax.dynamic_slice(xp, start, size), lead, (0, 0),
                     out_hw, s)
    return jnp.sum(window * g, axis=spatial, dtype=accumulate)

  offsets = d * np.stack(np.divmod(np.arange(k * k), k), axis=1)
  taps = jax.lax.map(tap, jnp.asarray(offsets))  # [k*k, *L, *F]
  taps = jnp.moveaxis(taps, 0, lead)
  return taps.reshape(taps.shape[:lead] + (k, k) + taps.shape[lead + 1:]
                      ).astype(g.dtype)
