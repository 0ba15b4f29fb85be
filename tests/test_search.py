"""The bilevel step: compiled once, learns on real data, moves the alphas."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts import data
from jaxdarts.core.state import run_once
from jaxdarts.methods.darts import DARTS
from tiny import TINY_SPACE, softmax

TRACES = []


@dataclasses.dataclass(frozen=True)
class CountingDARTS(DARTS):
  """DARTS that counts its relaxations: they run only while tracing."""

  def relax(self, arch, *, rng=None, step=0):
    TRACES.append(1)
    return super().relax(arch, rng=rng, step=step)


@pytest.fixture(scope='module')
def digits_search():
  train, val = data.search_split(data.load_dataset('digits', 'train'))
  batches = data.SearchBatches(train, val, 32, seed=0)
  model = jaxdarts.SearchNetwork(10, channels=4, layers=3, space=TINY_SPACE)
  first = next(iter(batches))
  state = jaxdarts.create_search_state(jax.random.key(0), model,
                                       first[0]['image'],
                                       method=CountingDARTS(), num_steps=60)

  def fresh_state():
    """A new state with the same static fields: no recompilation."""
    return jaxdarts.create_search_state(
        jax.random.key(0), model, first[0]['image'], method=CountingDARTS(),
        weight_tx=state.weight_tx, weight_lr=state.weight_lr,
        arch_tx=state.arch_tx)

  return fresh_state, batches


def test_step_compiles_once_and_learns(digits_search):
  fresh_state, batches = digits_search
  state = fresh_state()
  alphas0 = jax.tree.map(np.array, state.alphas)
  history = []
  traces_after_first = None
  for step, (train_batch, val_batch) in zip(range(60), batches):
    state, metrics = jaxdarts.search_step(state, train_batch, val_batch)
    history.append(jax.device_get(metrics))
    if step == 0:
      traces_after_first = len(TRACES)
  assert traces_after_first > 0
  assert len(TRACES) == traces_after_first, 'search_step retraced'
  assert int(state.step) == 60
  assert set(history[0]) == {'train_loss', 'train_accuracy', 'val_loss',
                             'val_accuracy', 'hypergradient_norm', 'entropy',
                             'lr'}

  val_loss = np.array([m['val_loss'] for m in history])
  assert np.isfinite(val_loss).all()
  assert val_loss[-10:].mean() < val_loss[:10].mean() - 0.3
  moved = max(np.abs(state.alphas[k] - alphas0[k]).max() for k in alphas0)
  assert moved > 5e-3
  assert history[-1]['lr'] < history[0]['lr']  # cosine schedule
  entropy = [m['entropy'] for m in history]
  assert entropy[-1] < entropy[0]
  genotype = state.genotype()
  assert genotype.num_nodes == 2
  genotype.validate(TINY_SPACE)


def test_batch_norm_statistics_come_from_the_real_weight_step_only(
    digits_search):
  fresh_state, batches = digits_search
  state = fresh_state()
  train_batch, val_batch = next(iter(batches))
  old = jax.tree.map(np.array, {'params': state.params,
                                'batch_stats': state.batch_stats})
  model = state.model
  state, _ = jaxdarts.search_step(state, train_batch, val_batch)
  # One train-mode pass on the training batch, at the old weights and the
  # already-updated alphas, from the old statistics: nothing else counted.
  _, expected = jax.jit(functools.partial(
      model.apply, train=True, mutable=['batch_stats']))(
          old, train_batch['image'], softmax(state.alphas))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               state.batch_stats, expected['batch_stats'])
  assert not all(jax.tree.leaves(jax.tree.map(
      lambda a, b: np.allclose(a, b), state.batch_stats, old['batch_stats'])))


def test_initialisation_compiled_unoptimised_gives_the_same_values():
  """``run_once`` (XLA's backend optimisations off) computes the bits that
  ``jax.jit`` does, so a state's weights do not depend on it."""
  model = jaxdarts.SearchNetwork(10, channels=4, layers=3, space=TINY_SPACE)
  weights = softmax(model.init_alphas(jax.random.key(1)))

  def init(key):
    return model.init(key, jnp.zeros((2, 8, 8, 3)), weights, train=False)

  chex.assert_trees_all_equal(run_once(init, jax.random.key(0)),
                              jax.jit(init)(jax.random.key(0)))


def test_second_order_needs_a_learning_rate():
  model = jaxdarts.SearchNetwork(10, channels=4, layers=3, space=TINY_SPACE)
  with pytest.raises(ValueError, match='weight_lr'):
    jaxdarts.create_search_state(jax.random.key(0), model,
                                 jnp.zeros((2, 8, 8, 1)),
                                 weight_tx=optax.sgd(0.1),
                                 hypergradient='exact')
  with pytest.raises(ValueError, match='num_steps'):
    jaxdarts.create_search_state(jax.random.key(0), model,
                                 jnp.zeros((2, 8, 8, 1)))
