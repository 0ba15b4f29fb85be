"""Retraining steps on a tiny evaluation network (one compile per step fn)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdarts.core import train
from jaxdarts.core.evaluate import eval_step
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR
from jaxdarts.tasks.classification import Classification
from tiny import random_batch

# Two nodes: a conv, an identity, a dilated conv and a pool in the normal
# cell; a pool, factorized reduces and a conv in the reduction cell.
TINY = Genotype(
    normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_3x3', 2),
            ('avg_pool_3x3', 0)],
    normal_concat=[2, 3],
    reduce=[('max_pool_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 2),
            ('skip_connect', 0)],
    reduce_concat=[2, 3])
NUM_CLASSES = 4


@pytest.fixture(scope='module')
def batch():
  # 32x32: the auxiliary head needs an 8x8 map at 2/3 depth.
  return random_batch(0, batch=8, size=32, num_classes=NUM_CLASSES)


@pytest.fixture(scope='module')
def state(batch):
  model = NetworkCIFAR(TINY, channels=4, layers=3, num_classes=NUM_CLASSES)
  return train.create_train_state(jax.random.key(0), model, batch['image'],
                                  num_steps=1000, learning_rate=0.05)


@pytest.fixture
def traces():
  """Traces of ``train_step_fn`` while the test runs (JAX compile events)."""
  found = []

  def listener(event, duration, **kwargs):
    del duration
    if (event == '/jax/core/compile/jaxpr_trace_duration'
        and kwargs.get('fun_name') == 'train_step_fn'):
      found.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield found
  jax.monitoring.unregister_event_duration_listener(listener)


def test_state_and_schedule(state):
  assert int(state.step) == 0
  assert 'auxiliary_head' in state.params
  assert state.batch_stats
  lr = state.learning_rate_fn
  assert float(lr(0)) == pytest.approx(0.05)
  assert float(lr(500)) == pytest.approx(0.025)
  assert float(lr(1000)) == pytest.approx(0., abs=1e-9)


def _copy(state):
  """A copy of a state, since train_step donates (deletes) its input."""
  return jax.tree.map(jnp.copy, state)


def test_steps_lower_the_loss_without_retracing(state, batch, traces):
  current = _copy(state)
  losses = []
  # A rate that changes every step (even a Python int) reuses one program.
  for rate in [0, 0., 0.05, 0.1, 0.15, 0.2, 0.1, 0.05, 0., 0.1, 0.2, 0.3]:
    current, metrics = train.train_step(current, batch, drop_path_rate=rate)
    losses.append(float(metrics['ce_loss']))
    if len(losses) == 1:
      traced_by_first_step = len(traces)
  assert traced_by_first_step <= 1  # 0 if an earlier test compiled it
  assert len(traces) == traced_by_first_step
  assert int(current.step) == 12
  assert float(metrics['drop_path_rate']) == pytest.approx(0.3)
  assert float(metrics['lr']) == pytest.approx(0.05, rel=1e-3)
  assert float(metrics['aux_loss']) > 0
  assert np.isfinite(losses).all()
  assert np.mean(losses[-3:]) < 0.7 * losses[0]
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params,
                         current.params)
  assert all(jax.tree.leaves(changed))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         state.batch_stats, current.batch_stats)
  assert all(jax.tree.leaves(changed))


def test_loss_is_ce_plus_weighted_auxiliary_and_rate_is_used(state, batch):
  # The same state, so the same dropout key: only the rate differs.
  _, m0 = train.train_step(_copy(state), batch, drop_path_rate=0.)
  _, m5 = train.train_step(_copy(state), batch, drop_path_rate=0.5)
  assert float(m0['loss']) == pytest.approx(
      float(m0['ce_loss']) + 0.4 * float(m0['aux_loss']), rel=1e-5)
  assert float(m5['loss']) != pytest.approx(float(m0['loss']), rel=1e-4)


def test_classification_loss_with_label_smoothing():
  logits = jnp.array([[2., 0., -1.], [0., 1., 0.]])
  batch = {'label': jnp.array([0, 2])}
  log_p = jax.nn.log_softmax(logits)
  targets = 0.9 * jax.nn.one_hot(batch['label'], 3) + 0.1 / 3
  expected = -(targets * log_p).sum(-1).mean()
  smoothed = Classification(label_smoothing=0.1)
  assert float(smoothed.loss(logits, batch)) == pytest.approx(
      float(expected), rel=1e-6)
  assert float(Classification().loss(logits, batch)) == pytest.approx(float(
      optax.softmax_cross_entropy_with_integer_labels(
          logits, batch['label']).mean()))


def test_eval_step_counts(state, batch):
  totals = [eval_step(state, {'image': batch['image'],
                              'label': jnp.full((8,), k, jnp.int32)})
            for k in range(NUM_CLASSES)]
  # Every image is predicted as exactly one class.
  assert sum(int(t['correct']) for t in totals) == 8
  assert all(int(t['count']) == 8 for t in totals)
  result = eval_step(state, batch)
  assert 0 <= int(result['correct']) <= 8
  assert np.isfinite(float(result['loss_sum']))
  assert float(result['loss_sum']) > 0


def test_eval_step_counts_only_the_masked_examples(state, batch):
  mask = jnp.array([1., 1., 1., 1., 1., 0., 0., 0.])
  result = eval_step(state, batch, mask)
  logits = state.predict(batch['image'][:5])
  labels = batch['label'][:5]
  assert int(result['count']) == 5
  assert int(result['correct']) == int(jnp.sum(logits.argmax(-1) == labels))
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  assert float(result['loss_sum']) == pytest.approx(float(losses.sum()),
                                                    rel=1e-5)
