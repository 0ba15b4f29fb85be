"""GDAS: one sampled op per edge, the straight-through alpha gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdarts
from jaxdarts import methods
from jaxdarts.methods.gdas import SampledOp
from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.nb201 import cell as nb201
from tiny import TINY_SPACE, tiny_model

PRIMITIVES = ('none', 'skip_connect', 'sep_conv_3x3', 'max_pool_3x3')
X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 4)),
                jnp.float32)
G = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 4)),
                jnp.float32)
EDGE = SampledOp(PRIMITIVES, 4, 1, True)
VARIABLES = jax.jit(EDGE.init)(jax.random.key(0), X, jnp.eye(4)[2])


@jax.jit
def _edge(params, weights):
  return EDGE.apply({**VARIABLES, 'params': params}, X, weights,
                    mutable=['batch_stats'])[0]


@jax.jit
def _alone(k):
  """Each candidate alone, from the edge's own variables (hand-written)."""
  outs = [jnp.zeros_like(X)]  # 'none'
  for name in PRIMITIVES[1:]:
    op = ops.EdgeOps((name,), 4, 1, True, pool_bn=True)
    # Op k is the space's mixed op over that one candidate: 'ops' inside.
    variables = {c: v[name]['ops'] for c, v in VARIABLES.items() if name in v}
    outs.append(op.apply(variables, X, mutable=['batch_stats'])[0][name])
  return jnp.stack(outs)[k]


def test_the_forward_is_the_sampled_op_alone():
  for k in range(len(PRIMITIVES)):
    got = _edge(VARIABLES['params'], jnp.eye(4)[k])
    # One op's value (other programs may round its last bit differently).
    np.testing.assert_allclose(got, _alone(k), rtol=1e-5, atol=1e-6,
                               err_msg=PRIMITIVES[k])


METHOD = methods.get('gdas', num_steps=10)


@jax.jit
@jax.grad
def _grads(alpha_and_params, rng):
  alpha, params = alpha_and_params
  weights = METHOD.relax({'normal': alpha[None]}, rng=rng, step=0)
  return jnp.sum(G * _edge(params, weights['normal'][0]))


def test_alpha_gradient_is_the_straight_through_estimator():
  alpha = jnp.asarray([0.3, -0.2, 0.5, 0.1])
  sampled = set()
  for seed in range(4):
    rng = jax.random.key(seed)
    grad, param_grad = _grads((alpha, VARIABLES['params']), rng)
    # By hand: p from the same Gumbel draw, i its argmax, and
    # dL/dalpha = <dL/dy, op_i(x)> p_i (e_i - p) / tau.
    gumbel = np.asarray(jax.random.gumbel(jax.random.split(rng, 1)[0],
                                          (1, 4)), np.float64)[0]
    a = np.asarray(alpha, np.float64)
    logits = (a - np.log(np.exp(a).sum()) + gumbel) / 10.0
    p = np.exp(logits - logits.max())
    p /= p.sum()
    i = int(np.argmax(p))
    sampled.add(i)
    c = float(np.sum(np.asarray(G, np.float64) * np.asarray(_alone(i))))
    want = c * p[i] * (np.eye(4)[i] - p) / 10.0
    np.testing.assert_allclose(grad, want, rtol=2e-4, atol=1e-7)
    # The unsampled candidates' weights get no gradient at all.
    for name, tree in param_grad.items():
      leaves = jax.tree.leaves(tree)
      if name == PRIMITIVES[i]:
        assert any(np.any(leaf != 0) for leaf in leaves)
      else:
        assert all(np.all(leaf == 0) for leaf in leaves), name
  assert len(sampled) >= 2, sampled  # Several ops drawn, not one.


def test_temperature_schedule_and_deterministic_weights():
  method = methods.get('gdas', num_steps=11)
  np.testing.assert_allclose([method.tau(0), method.tau(5), method.tau(10)],
                             [10.0, 5.05, 0.1], rtol=1e-5)
  alphas = {'normal': jnp.asarray([[0.0, 2.0, 1.0]]),
            'reduce': jnp.asarray([[3.0, 2.0, 1.0]])}
  weights = method.relax(alphas)  # No rng: the most likely op.
  np.testing.assert_array_equal(weights['normal'], [[0, 1, 0]])
  np.testing.assert_array_equal(weights['reduce'], [[1, 0, 0]])
  rng = jax.random.key(3)
  a, b = method.relax(alphas, rng=rng), method.relax(alphas, rng=rng)
  np.testing.assert_array_equal(a['normal'], b['normal'])  # Reproducible.
  assert set(np.unique(a['normal'])) <= {0.0, 1.0}


def test_second_order_hypergradients_are_refused():
  with pytest.raises(ValueError, match="'gdas' method has no differentiable"):
    jaxdarts.create_search_state(
        jax.random.key(0), tiny_model(space=TINY_SPACE),
        jnp.zeros((2, 8, 8, 3)),
        method='gdas', hypergradient='exact', num_steps=4)


def test_nb201_edge_computes_the_sampled_op_alone():
  """On the NB201 space the edge wraps its ops (stride 1, ReLU-conv-BN)."""
  prims = ('none', 'skip_connect', 'nor_conv_3x3', 'avg_pool_3x3')
  edge = SampledOp(prims, 4, 1, True, mixed_op=nb201.MixedOp)
  variables = jax.jit(edge.init)(jax.random.key(0), X, jnp.eye(4)[2])
  conv = nb201.NorConv(4, 3, affine=False)
  conv_vars = {c: v['nor_conv_3x3']['nor_conv_3x3']
               for c, v in variables.items()}
  want = [jnp.zeros_like(X), X,
          conv.apply(conv_vars, X, True, mutable=['batch_stats'])[0],
          ops.avg_pool(X, 1)]
  for k, name in enumerate(prims):
    got = edge.apply(variables, X, jnp.eye(4)[k], mutable=['batch_stats'])[0]
    np.testing.assert_allclose(got, want[k], rtol=1e-5, atol=1e-6,
                               err_msg=name)
