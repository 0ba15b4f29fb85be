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


def _taps(x, kernel_size: int, stride: int, dilation: int, out_hw):
  """Yields ``(a, b, x_pad[:, s*i + d*a, s*j + d*b])`` for every tap."""
  pad = dilation * (kernel_size - 1) // 2
  xp = jnp.pad(x, [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 3))
  ho, wo = out_hw
  for a in range(kernel_size):
    for b in range(kernel_size):
      start = (0, a * dilation, b * dilation) + (0,) * (x.ndim - 3)
      limit = (x.shape[0], start[1] + (ho - 1) * stride + 1,
               start[2] + (wo - 1) * stride + 1) + x.shape[3:]
      yield a, b, jax.lax.slice(xp, start, limit,
                                (1, stride, stride) + (1,) * (x.ndim - 3))


def _shift_forward(x, kernel, *, stride, dilation):
  out_hw = (_out_size(x.shape[1], stride), _out_size(x.shape[2], stride))
  terms = (tap * kernel[a, b]
           for a, b, tap in _taps(x, kernel.shape[0], stride, dilation, out_hw))
  return functools.reduce(jnp.add, terms)


# The 'shift' implementation is a primitive of its own, bilinear in (x, k),
# so that JAX's forward and reverse modes both use the rules below: the
# forward pass, the JVP (two forward passes) and the transposes (two more
# shift passes) never expand into k*k pads. Second-order hypergradients
# (forward over reverse, reverse over reverse) differentiate these rules
# again.
shift_depthwise_p = jax.extend.core.Primitive('jaxdarts_depthwise_shift')


def _shift_conv(x, kernel, stride, dilation):
  return shift_depthwise_p.bind(x, kernel, stride=stride, dilation=dilation)


def _abstract_eval(x, kernel, *, stride, dilation):
  del dilation
  features = jnp.broadcast_shapes(x.shape[3:], kernel.shape[2:])
  shape = (x.shape[0], _out_size(x.shape[1], stride),
           _out_size(x.shape[2], stride)) + features
  return jax.core.ShapedArray(shape, x.dtype)


def _transpose_x(g, x, kernel, *, stride, dilation):
  """``dx``: the output gradient, spread back to the input's grid (zeros
  between samples when s > 1), correlated with the flipped kernel."""
  h, w = x.aval.shape[1:3]
  if stride > 1:
    spread = [(0, 0, 0)]
    for size, out in ((h, g.shape[1]), (w, g.shape[2])):
      spread.append((0, size - (out - 1) * stride - 1, stride - 1))
    g = jax.lax.pad(g, jnp.zeros((), g.dtype),
                    spread + [(0, 0, 0)] * (g.ndim - 3))
  dx = _shift_conv(g, kernel[::-1, ::-1], 1, dilation)
  return _sum_to(dx, x.aval.shape)


def _transpose_kernel(g, x, kernel, *, stride, dilation):
  shape = kernel.aval.shape
  dk = _kernel_gradient(x, g, shape[0], stride, dilation)
  return _sum_to(dk.reshape(shape[:2] + dk.shape[1:]), shape)


def _batch(args, dims, *, stride, dilation):
  """vmap: the mapped axis becomes the first feature axis of both inputs."""
  (x, kernel), (x_dim, kernel_dim) = args, dims
  x = (jnp.expand_dims(x, 3) if x_dim is None else jnp.moveaxis(x, x_dim, 3))
  kernel = (jnp.expand_dims(kernel, 2) if kernel_dim is None
            else jnp.moveaxis(kernel, kernel_dim, 2))
  return _shift_conv(x, kernel, stride, dilation), 3


shift_depthwise_p.def_impl(jax.jit(_shift_forward,
                                    static_argnames=('stride', 'dilation')))
shift_depthwise_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(shift_depthwise_p, mlir.lower_fun(
    _shift_forward, multiple_results=False))
ad.defbilinear(shift_depthwise_p, _transpose_x, _transpose_kernel)
batching.primitive_batchers[shift_depthwise_p] = _batch


def _sum_to(a, shape):
  """Sums ``a`` over the axes that broadcasting expanded from ``shape``."""
  axes = tuple(i for i, (m, n) in enumerate(zip(a.shape, shape)) if n != m)
  return jnp.sum(a, axis=axes, keepdims=True) if axes else a


def _kernel_gradient(x, g, kernel_size, stride, dilation):
  """``dk[a, b] = sum_{n,i,j} x_pad[n, s*i + d*a, s*j + d*b] * g[n, i, j]``.

  A loop over the taps (``lax.map``): one small program instead of k*k
  reductions, which XLA:CPU both compiles and runs faster.
  """
  k, s, d = kernel_size, stride, dilation
  pad = d * (k - 1) // 2
  xp = jnp.pad(x, [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 3))
  size = (x.shape[0], (g.shape[1] - 1) * s + 1,
          (g.shape[2] - 1) * s + 1) + x.shape[3:]

  accumulate = jnp.promote_types(g.dtype, jnp.float32)  # bf16 sums drift

  def tap(t):
    start = (0, t // k * d, t % k * d) + (0,) * (x.ndim - 3)
    window = jax.lax.dynamic_slice(xp, start, size)[:, ::s, ::s]
    return jnp.sum(window * g, axis=(0, 1, 2), dtype=accumulate)

  return jax.lax.map(tap, jnp.arange(k * k)).astype(g.dtype)
