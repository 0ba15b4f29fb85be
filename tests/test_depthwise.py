"""The depthwise convolution's implementations against XLA's convolution.

The 'shift' implementation is a primitive with hand-written derivative,
transpose and batching rules, so its gradients, the second derivatives the
hypergradients take through it (forward over reverse for 'exact', reverse
over reverse for 'unrolled') and its vmap are checked against autodiff of
``lax.conv_general_dilated`` in float64.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdarts.spaces.darts_cnn.depthwise import depthwise_conv

CASES = [(k, s, d) for k in (3, 5) for s in (1, 2) for d in (1, 2)]
# Derivatives: each kernel size, stride and dilation, in four programs.
DERIVATIVE_CASES = [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 1, 2)]


def reference(x, kernel, stride, dilation):
  """A dense convolution whose kernel is diagonal in the features (no
  feature groups, so independent of the 'conv' implementation)."""
  features = x.shape[3:]
  flat = x.reshape(x.shape[:3] + (-1,))
  diag = kernel.reshape(kernel.shape[:2] + (-1, 1)) * jnp.eye(flat.shape[-1])
  pad = dilation * (kernel.shape[0] - 1) // 2
  y = jax.lax.conv_general_dilated(
      flat, diag, (stride, stride), [(pad, pad)] * 2,
      rhs_dilation=(dilation, dilation),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y.reshape(y.shape[:3] + features)


def inputs(kernel_size, features=(2, 3)):
  rng = np.random.default_rng(kernel_size)
  x = jnp.asarray(rng.normal(size=(2, 9, 8) + features))
  k = jnp.asarray(rng.normal(size=(kernel_size, kernel_size) + features))
  return x, k


@pytest.mark.parametrize('impl', ['shift', 'conv'])
@pytest.mark.parametrize('kernel_size,stride,dilation', CASES)
def test_forward_equals_grouped_convolution(impl, kernel_size, stride,
                                            dilation):
  x, k = inputs(kernel_size)
  got = depthwise_conv(x, k, stride=stride, dilation=dilation, impl=impl)
  np.testing.assert_allclose(got, reference(x, k, stride, dilation),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kernel_size,stride,dilation', DERIVATIVE_CASES)
def test_shift_derivatives_equal_autodiff_of_the_convolution(
    kernel_size, stride, dilation):
  with jax.enable_x64(True):
    x, k = inputs(kernel_size)
    t = jnp.asarray(np.random.default_rng(7).normal(size=x.shape))

    def derivatives(conv):
      def loss(x, k):
        return jnp.sum(jnp.sin(conv(x, k, stride, dilation)))

      def kernel_grad(x):
        return jax.grad(loss, 1)(x, k)

      def scaled_grad(x):  # a gradient the convolution's inputs ignore
        return jax.grad(lambda c: c * loss(x, k))(1.)

      return (jax.grad(loss, (0, 1))(x, k),
              jax.jvp(kernel_grad, (x,), (t,))[1],  # forward over reverse
              jax.jvp(scaled_grad, (x,), (t,))[1],
              jax.grad(lambda x: jnp.sum(kernel_grad(x) ** 2))(x),  # rev-rev
              jax.vmap(jax.grad(loss, (0, 1)))(jnp.stack([x, -x]),
                                               jnp.stack([k, 2 * k])))

    shift = lambda x, k, s, d: depthwise_conv(x, k, stride=s, dilation=d,
                                              impl='shift')
    got, expected = derivatives(shift), derivatives(reference)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('impl', ['shift', 'conv'])
def test_one_input_broadcasts_through_stacked_kernels(impl):
  with jax.enable_x64(True):
    x, k = inputs(5, features=(1, 3))
    k = jnp.concatenate([k, 2 * k[..., ::-1]], axis=2)  # [5, 5, 2, 3]

    def loss(conv, x, k):
      return jnp.sum(jnp.sin(conv(x, k)))

    got = jax.grad(functools.partial(loss, lambda x, k: depthwise_conv(
        x, k, stride=2, impl=impl)), (0, 1))(x, k)
    expected = jax.grad(functools.partial(loss, lambda x, k: reference(
        jnp.broadcast_to(x, x.shape[:3] + k.shape[2:]), k, 2, 1)), (0, 1))(x, k)
    for a, b in zip(got, expected):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_mismatched_kernel_and_unknown_impl_are_refused():
  x, k = inputs(3)
  with pytest.raises(ValueError, match=r'kernel \(3, 3, 2, 3\) does not fit'):
    depthwise_conv(x[..., 0, :], k)
  with pytest.raises(ValueError, match='does not fit'):
    depthwise_conv(x, k[:, :, :1, :2])
  with pytest.raises(ValueError, match="Unknown depthwise implementation 'fft'"):
    depthwise_conv(x, k, impl='fft')
