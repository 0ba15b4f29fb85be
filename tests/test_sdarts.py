"""SDARTS: the perturbations (box, simplex, attack) and the unchanged
alpha step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts import methods
from jaxdarts.methods import sdarts
from tiny import MicroSupernet, random_batch

NUM_STEPS = 10


def test_to_simplex_is_the_official_clip_by_hand():
  rows = jnp.array([[0.5, -0.2, 0.9],     # clamp, then / 1.4
                    [-0.1, -0.3, -0.2],   # all clamp to 0: one-hot argmax
                    [2.0, 0.5, 0.0]])     # clamp 2 -> 1, then / 1.5
  np.testing.assert_allclose(
      sdarts.to_simplex(rows),
      [[0.5 / 1.4, 0., 0.9 / 1.4], [1., 0., 0.], [1. / 1.5, 0.5 / 1.5, 0.]],
      rtol=1e-6)


def test_epsilon_grows_linearly_from_003_to_03():
  method = methods.get('sdarts_rs', num_steps=NUM_STEPS)
  got = [float(method.schedule(jnp.int32(s))['epsilon']) for s in (0, 5, 10)]
  np.testing.assert_allclose(got, [0.03, 0.165, 0.3], rtol=1e-6)


def _arch(seed=0, shape=(14, 8)):
  rng = np.random.default_rng(seed)
  return {cell: jnp.asarray(rng.normal(size=shape), jnp.float32)
          for cell in ('normal', 'reduce')}


def test_random_perturbation_is_within_eps_then_on_the_simplex():
  method = methods.get('sdarts_rs', num_steps=NUM_STEPS)
  arch, rng, step = _arch(), jax.random.key(7), jnp.int32(NUM_STEPS)
  eps = 0.3
  weights = method.weight_mixing(arch, rng=rng, step=step, loss=None,
                                 reduce=lambda t: t)
  softmax = jax.tree.map(lambda a: jax.nn.softmax(a, -1), arch)
  noise = sdarts.uniform_noise(rng, softmax, eps)
  for cell in arch:
    w, d = np.asarray(weights[cell]), np.asarray(noise[cell])
    assert np.abs(d).max() <= eps and np.abs(d).max() > 0.9 * eps
    assert np.abs(d).mean() == pytest.approx(eps / 2, rel=0.1)  # U(-eps, eps)
    np.testing.assert_allclose(w, sdarts.to_simplex(softmax[cell] + d),
                               rtol=1e-6)
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(-1), 1., rtol=1e-6)
  # Reproducible from the key, and another key gives other noise.
  again = method.weight_mixing(arch, rng=rng, step=step, loss=None,
                               reduce=lambda t: t)
  other = method.weight_mixing(arch, rng=jax.random.key(8), step=step,
                               loss=None, reduce=lambda t: t)
  assert (np.asarray(again['normal']) == np.asarray(weights['normal'])).all()
  assert not np.allclose(other['normal'], weights['normal'])


@pytest.fixture(scope='module')
def micro():
  """A small supernet, its state after init, and its two batches."""
  model = MicroSupernet()
  train, val = random_batch(0), random_batch(1)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, train['image'], num_steps=NUM_STEPS,
      method='darts')
  # Larger weights than at initialisation: a loss that the mixing weights
  # move visibly.
  state = state.replace(alphas=_arch(1, state.alphas['normal'].shape),
                        params=jax.tree.map(lambda p: 4. * p, state.params))
  return model, state, train, val


def test_the_attack_increases_the_training_loss(micro):
  model, state, train, _ = micro

  def loss(weights):
    logits, _ = model.apply(
        {'params': state.params, 'batch_stats': state.batch_stats},
        train['image'], weights, train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, train['label']).mean()

  step = jnp.int32(NUM_STEPS)  # eps = 0.3

  @jax.jit
  def losses(alphas, rng):
    kw = dict(rng=rng, step=step, loss=loss, reduce=lambda t: t)
    adv = methods.get('sdarts_adv', num_steps=NUM_STEPS).weight_mixing(
        alphas, **kw)
    rs = methods.get('sdarts_rs', num_steps=NUM_STEPS).weight_mixing(
        alphas, **kw)
    plain = jax.tree.map(lambda a: jax.nn.softmax(a, -1), alphas)
    return adv, loss(adv), loss(rs), loss(plain)

  adv, adv_loss, rs_loss, plain_loss = losses(state.alphas, jax.random.key(3))
  assert float(adv_loss) > float(plain_loss) + 1e-3
  assert float(adv_loss) > float(rs_loss) + 1e-3
  for w in jax.tree.leaves(adv):
    assert (np.asarray(w) >= 0).all()
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1., rtol=1e-5)


def test_pgd_on_a_linear_loss_ends_at_the_best_corner_of_the_box():
  # Ascent on sum(c * w): each of the 7 steps moves 2 eps / 7 along
  # sign(c), clipped to the box |w - 1/4| <= eps; 7 steps span the box, so
  # every row ends at 1/4 +- eps, which already sums to one.
  eps, weights = 0.1, {'normal': jnp.full((3, 4), 0.25)}
  c = jnp.array([1., -1., 2., -0.5])
  loss = lambda w: jnp.sum(w['normal'] * c)
  out = sdarts.pgd_perturbation(weights, jax.random.key(0), eps, loss=loss)
  np.testing.assert_allclose(out['normal'],
                             np.tile([0.35, 0.15, 0.35, 0.15], (3, 1)),
                             rtol=0, atol=1e-6)
  # Where the attack cannot beat the unperturbed loss, it is undone.
  flat = sdarts.pgd_perturbation(weights, jax.random.key(0), eps,
                                 loss=lambda w: -jnp.abs(
                                     w['normal'] - 0.25).sum())
  np.testing.assert_array_equal(flat['normal'], weights['normal'])


def test_the_alpha_step_is_dartss(micro):
  # SDARTS-ADV (a subclass of SDARTS-RS that changes only the perturbation).
  _, state, train, val = micro
  name = 'sdarts_adv'
  copy = lambda s: jax.tree.map(jnp.copy, s)
  darts, _ = jaxdarts.search_step(copy(state), train, val)
  smooth, metrics = jaxdarts.search_step(
      copy(state.replace(method=methods.get(name, num_steps=NUM_STEPS))),
      train, val)
  for cell in ('normal', 'reduce'):
    np.testing.assert_allclose(smooth.alphas[cell], darts.alphas[cell],
                               rtol=0, atol=1e-7)
  # ... but the weight step saw perturbed mixing weights.
  assert not all(np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(smooth.params), jax.tree.leaves(darts.params)))
  assert float(metrics['epsilon']) == pytest.approx(0.03)
