"""DARTS-: the decaying auxiliary skip; at beta = 0 it is DARTS exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdarts import methods
from jaxdarts.methods.darts_minus import AuxiliarySkipMixedOp
from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.cell import MixedOp
from jaxdarts.spaces.nb201 import cell as nb201

PRIMITIVES = ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3')
X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 4)),
                jnp.float32)


def test_beta_decays_linearly_from_one_to_zero():
  method = methods.get('darts_minus', num_steps=10)
  np.testing.assert_allclose(
      [method.beta(0), method.beta(5), method.beta(10), method.beta(20)],
      [1.0, 0.5, 0.0, 0.0], rtol=1e-6)
  weights = method.relax({'normal': jnp.zeros((3, 4)),
                          'reduce': jnp.zeros((3, 4))}, step=5)
  np.testing.assert_array_equal(weights['normal']['aux'], [0.5] * 3)
  np.testing.assert_allclose(weights['reduce']['ops'], np.full((3, 4), 0.25))
  assert float(method.schedule(10)['aux_skip_beta']) == 0.0


@pytest.mark.parametrize('stride', [1, 2])
def test_edge_is_darts_plus_beta_skip_and_darts_at_beta_zero(stride):
  edge = AuxiliarySkipMixedOp(PRIMITIVES, 4, stride, True)
  darts = MixedOp(PRIMITIVES, 4, stride, True)
  skip = (ops.FactorizedReduce(4, False) if stride == 2 else None)
  w = jax.nn.softmax(jnp.asarray([0.1, -0.4, 0.3, 0.2]))
  variables = jax.jit(edge.init)(jax.random.key(0), X,
                                 {'ops': w, 'aux': jnp.asarray(1.0)})

  @jax.jit
  def outputs(beta):
    got = edge.apply(variables, X, {'ops': w, 'aux': beta},
                     mutable=['batch_stats'])[0]
    # DARTS's mixed op on the same variables, and the skip by hand.
    plain = darts.apply({c: v['mixed'] for c, v in variables.items()}, X, w,
                        mutable=['batch_stats'])[0]
    identity = X if skip is None else skip.apply(
        {c: v['auxiliary_skip'] for c, v in variables.items()}, X, True,
        mutable=['batch_stats'])[0]
    return got, plain, identity

  got, plain, _ = outputs(jnp.asarray(0.0))
  np.testing.assert_array_equal(got, plain)  # beta = 0: DARTS exactly.
  got, plain, identity = outputs(jnp.asarray(0.6))
  np.testing.assert_allclose(got, plain + 0.6 * identity, rtol=1e-5,
                             atol=1e-6)



def test_nb201_edge_is_its_mixed_op_plus_beta_x():
  """On the NB201 space (every edge stride 1): the space's mixed op plus
  ``beta * x``, and exactly that mixed op at beta = 0."""
  prims = ('none', 'skip_connect', 'nor_conv_3x3', 'avg_pool_3x3')
  edge = AuxiliarySkipMixedOp(prims, 4, 1, True, mixed_op=nb201.MixedOp)
  plain = nb201.MixedOp(prims, 4, 1, True)
  w = jax.nn.softmax(jnp.asarray([0.1, -0.4, 0.3, 0.2]))
  variables = jax.jit(edge.init)(jax.random.key(0), X,
                                 {'ops': w, 'aux': jnp.asarray(1.0)})

  def run(beta):
    return edge.apply(variables, X, {'ops': w, 'aux': beta},
                      mutable=['batch_stats'])[0]

  want = plain.apply({c: v['mixed'] for c, v in variables.items()}, X, w,
                     mutable=['batch_stats'])[0]
  np.testing.assert_array_equal(run(jnp.asarray(0.0)), want)
  np.testing.assert_allclose(run(jnp.asarray(0.6)), want + 0.6 * X,
                             rtol=1e-5, atol=1e-6)
