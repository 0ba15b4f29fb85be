"""Hypergradients against independent computations, in float64.

The reference for the second-order methods is ``jax.grad`` of the unrolled
objective ``a -> L_val(w'(a), a)``, with the virtual step ``w'`` written out
by hand here (not taken from optax).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts.core import hypergradient as hg
from jaxdarts.core.step import loss_fn
from tiny import MicroSupernet, random_batch, tiny_model

# One node per cell keeps the float64 second-order programs quick to compile.
HG_SPACE = jaxdarts.SearchSpace(
    ('none', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3'), num_nodes=1)
LR, MOMENTUM, WD = 0.05, 0.9, 3e-4
B1, B2, EPS = 0.9, 0.999, 1e-8


def f64(tree):
  return jax.tree.map(
      lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating)
      else x, tree)


@pytest.fixture(scope='module', autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def sgd_tx():
  return optax.chain(optax.add_decayed_weights(WD),
                     optax.sgd(LR, momentum=MOMENTUM))


def adam_tx():
  return optax.adam(LR, b1=B1, b2=B2, eps=EPS)


def setup(weight_tx, model=None):
  """A float64 model (the tiny supernet by default), batches, and an
  optimizer state with history."""
  model = model or tiny_model(space=HG_SPACE)
  train, val = random_batch(0), random_batch(1)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, train['image'], weight_tx=weight_tx,
      weight_lr=LR, hypergradient='exact')

  @jax.jit  # One program: op by op, this set-up takes longer than the test.
  def to_f64_with_history(state, train, val):
    params = f64(state.params)
    # One real step so the momentum / Adam moments are non-zero.
    fake_grads = jax.tree.map(lambda p: 0.1 * jnp.sin(
        jnp.arange(p.size).reshape(p.shape) + 1.), params)
    _, opt_state = weight_tx.update(fake_grads, weight_tx.init(params), params)
    state = state.replace(
        params=params, batch_stats=f64(state.batch_stats),
        alphas=jax.tree.map(lambda a: a.astype(jnp.float64) * 500.,
                            state.alphas),  # non-uniform
        weight_opt_state=opt_state)
    return state, f64(train), f64(val)

  return to_f64_with_history(state, train, val)


def problem_for(state, train, val):
  def virtual_step(params, grads):
    updates, _ = state.weight_tx.update(grads, state.weight_opt_state, params)
    return optax.apply_updates(params, updates)
  return hg.BilevelProblem(loss_fn(state, train), loss_fn(state, val),
                           virtual_step, LR)


def rel_err(a, b):
  a, b = jax.tree.leaves(a), jax.tree.leaves(b)
  num = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(a, b))
  den = sum(float(jnp.sum(y ** 2)) for y in b)
  return np.sqrt(num / den)


def sgd_virtual_by_hand(state, grads):
  momentum = state.weight_opt_state[1][0].trace
  return jax.tree.map(
      lambda w, g, m: w - LR * (MOMENTUM * m + g + WD * w),
      state.params, grads, momentum)


def adam_virtual_by_hand(state, grads):
  adam = state.weight_opt_state[0]
  t = adam.count + 1

  def step(w, g, m, v):
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    m_hat, v_hat = m / (1 - B1 ** t), v / (1 - B2 ** t)
    return w - LR * m_hat / (jnp.sqrt(v_hat) + EPS)

  return jax.tree.map(step, state.params, grads, adam.mu, adam.nu)


def unrolled_reference(state, train, val, virtual_by_hand):
  train_loss, val_loss = loss_fn(state, train), loss_fn(state, val)

  def objective(alphas):
    grads = jax.grad(lambda p: train_loss(p, alphas)[0])(state.params)
    return val_loss(virtual_by_hand(state, grads), alphas)[0]

  return jax.grad(objective)(state.alphas)


@pytest.fixture(scope='module')
def sgd_case():
  """The state, batches, their bilevel problem and its first-order result."""
  state, train, val = setup(sgd_tx())
  problem = problem_for(state, train, val)
  first_order = jax.jit(hg.first_order, static_argnums=0)(
      problem, state.params, state.alphas)
  return state, train, val, problem, first_order


def test_exact_equals_autodiff_of_the_unrolled_sgd_objective(sgd_case):
  state, train, val, problem, (first, _) = sgd_case
  exact, _ = jax.jit(hg.exact, static_argnums=0)(
      problem, state.params, state.alphas)
  expected = jax.jit(unrolled_reference, static_argnums=3)(
      state, train, val, sgd_virtual_by_hand)
  assert rel_err(exact, expected) < 1e-6
  # The second-order term matters: the first-order gradient is different.
  assert rel_err(first, expected) > 1e-4


def smooth_problem():
  """A smooth bilevel problem: softmax-mixed tanh features, linear readout.

  Central differences at the paper's eps = 0.01/||v|| are accurate only for a
  smooth loss; the supernet's ReLUs and max-pools make its alpha gradient
  jump when a perturbation crosses a kink.
  """
  rng = np.random.default_rng(0)
  x_train, x_val = rng.normal(size=(2, 16, 5))
  y_train, y_val = rng.normal(size=(2, 16))

  def loss(x, y):
    def fn(params, alphas):
      mix = jax.nn.softmax(alphas['normal'], -1)            # [3, 4]
      feats = jnp.tanh(x @ params['w'])                       # [16, 3]
      feats = feats[:, :, None] ** jnp.arange(1, 5) @ mix.T   # [16, 3, 3]
      pred = jnp.einsum('nij,j->n', feats, params['v'])
      return jnp.mean((pred - y) ** 2), None
    return fn

  params = {'w': jnp.asarray(rng.normal(size=(5, 3))),
            'v': jnp.asarray(rng.normal(size=(3,)))}
  alphas = {'normal': jnp.asarray(rng.normal(size=(3, 4)))}
  tx = sgd_tx()
  opt_state = tx.init(params)
  _, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state,
                           params)

  def virtual_step(p, grads):
    updates, _ = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates)

  problem = hg.BilevelProblem(loss(x_train, y_train), loss(x_val, y_val),
                              virtual_step, LR)
  return problem, params, alphas


def test_finite_difference_agrees_with_exact():
  problem, params, alphas = smooth_problem()
  fd, exact, first = (jax.jit(method, static_argnums=0)(
      problem, params, alphas)[0] for method in (
          hg.finite_difference, hg.exact, hg.first_order))
  assert rel_err(fd, exact) < 1e-2
  assert rel_err(first, exact) > 10 * rel_err(fd, exact)


def test_unrolled_is_exact_for_adam():
  # Under test is the differentiation through optax's Adam, not the network
  # (the SGD test above has the supernet): the stand-in compiles in seconds.
  state, train, val = setup(adam_tx(), MicroSupernet())
  got, _ = jax.jit(hg.unrolled, static_argnums=0)(
      problem_for(state, train, val), state.params, state.alphas)
  expected = jax.jit(unrolled_reference, static_argnums=3)(
      state, train, val, adam_virtual_by_hand)
  assert rel_err(got, expected) < 1e-6


def test_first_order_is_the_plain_alpha_gradient(sgd_case):
  state, _, val, _, (got, (loss, _)) = sgd_case
  val_loss = loss_fn(state, val)
  expected = jax.jit(jax.grad(lambda a: val_loss(state.params, a)[0]))(
      state.alphas)
  assert rel_err(got, expected) < 1e-12
  assert np.isclose(loss, jax.jit(val_loss)(state.params, state.alphas)[0])


def test_unknown_method_is_refused():
  with pytest.raises(ValueError, match="Unknown hypergradient 'second'"):
    hg.get('second')
