"""A new method, edge, space or task plugs in without touching the library.

Each test defines a tiny one here and runs the library's own step,
evaluation and derivation with it, checking the result against a
computation written out in the test.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts.data.dataset import make_dataset
from jaxdarts import methods
from jaxdarts.methods.base import Method
from jaxdarts.run.evaluate import evaluate
from jaxdarts.spaces.darts_cnn.cell import MixedOp
from tiny import MicroSupernet, random_batch


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


# --- A method: sigmoid mixing, an L2 term on the alphas, a schedule --------


@dataclasses.dataclass(frozen=True)
class SigmoidToy(Method):
  name: ClassVar[str] = 'sigmoid_toy'
  penalty: float = 0.1

  def relax(self, arch, *, rng=None, step=0):
    return {cell: jax.nn.sigmoid(a) for cell, a in arch.items()}

  def arch_objective(self, loss, arch, *, step):
    return loss + self.penalty * sum(jnp.sum(a ** 2)
                                     for a in jax.tree.leaves(arch))

  def schedule(self, step):
    return {'toy_step': jnp.asarray(step, jnp.float32)}


def test_a_method_sets_mixing_objective_and_schedule():
  model = MicroSupernet()
  train, val = random_batch(0), random_batch(1)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, train['image'], method=SigmoidToy(),
      weight_tx=optax.sgd(1.0), weight_lr=1.0, arch_tx=optax.sgd(1.0))
  new, metrics = jaxdarts.search_step(_copy(state), train, val)

  def loss(params, weights, batch):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        weights, train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean(), updates

  sigmoid = lambda a: jax.tree.map(jax.nn.sigmoid, a)
  objective = lambda a: (loss(state.params, sigmoid(a), val)[0]
                         + 0.1 * sum(jnp.sum(x ** 2)
                                     for x in jax.tree.leaves(a)))
  alpha_grad = jax.grad(objective)(state.alphas)
  want_alphas = jax.tree.map(lambda a, g: a - g, state.alphas, alpha_grad)
  np.testing.assert_allclose(new.alphas['normal'], want_alphas['normal'],
                             rtol=1e-5, atol=1e-6)
  # The weights step on the training loss only, at the new alphas' mixing.
  weight_grad = jax.grad(lambda p: loss(p, sigmoid(want_alphas), train)[0])(
      state.params)
  for got, p, g in zip(jax.tree.leaves(new.params),
                       jax.tree.leaves(state.params),
                       jax.tree.leaves(weight_grad)):
    np.testing.assert_allclose(got, p - g, rtol=1e-5, atol=1e-6)
  assert float(metrics['toy_step']) == 0.
  assert float(jaxdarts.search_step(new, train, val)[1]['toy_step']) == 1.


def test_a_registered_method_is_found_by_name(monkeypatch):
  monkeypatch.setitem(methods.METHODS, 'sigmoid_toy', SigmoidToy)
  assert methods.get('sigmoid_toy', penalty=0.5) == SigmoidToy(penalty=0.5)


# --- An edge module ----------------------------------------------------------


class DoubledMixedOp(MixedOp):
  """The mixed op, scaled: equal to the plain one with scaled weights."""
  scale: float = 2.0

  def __call__(self, x, weights):
    return self.scale * super().__call__(x, weights)


class PerEdgeMixedOp(MixedOp):
  vmappable = False


@dataclasses.dataclass(frozen=True)
class EdgeToy(Method):
  name: ClassVar[str] = 'edge_toy'
  module: Any = DoubledMixedOp

  def edge(self):
    return self.module, {'scale': 3.0} if self.module is DoubledMixedOp else {}


SPACE = jaxdarts.SearchSpace(('max_pool_3x3', 'skip_connect', 'sep_conv_3x3'),
                             num_nodes=1)


def test_a_method_brings_its_edge_module():
  batch = random_batch(0)
  plain = SPACE.supernet(4, channels=4, layers=3)
  state = jaxdarts.create_search_state(
      jax.random.key(0), plain, batch['image'], method=EdgeToy(),
      num_steps=1)
  assert state.model.edge is DoubledMixedOp
  weights = state.mixing_weights()
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  got = jax.jit(lambda v, w: state.model.apply(v, batch['image'], w,
                                               train=False))(variables, weights)
  tripled = jax.tree.map(lambda w: 3 * w, weights)
  want = jax.jit(lambda v, w: plain.apply(v, batch['image'], w, train=False))(
      variables, tripled)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_edge_module_that_cannot_be_vmapped_gets_one_module_per_edge():
  model = SPACE.supernet(4, channels=4, layers=3, edge=PerEdgeMixedOp)
  weights = methods.get('darts').relax(SPACE.init_alphas(jax.random.key(1)))
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((2, 8, 8, 3)), weights, train=False))
  cell = variables['params']['cell_0']
  assert {k for k in cell if k.startswith('edge')} == {'edge_0_0', 'edge_0_1'}


# --- A space with one cell type and its own genotype rule --------------------


class ChainNet(nn.Module):
  """x -> edge 0 -> edge 1 -> classifier; each edge mixes zero, identity
  and a 3x3 convolution."""
  num_classes: int
  space: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images, weights, train: bool):
    x = nn.Conv(4, (3, 3))(images)
    for edge in range(2):
      w = weights['cell'][edge]
      x = w[1] * x + w[2] * nn.relu(nn.Conv(4, (3, 3))(x))
    return nn.Dense(self.num_classes)(x.mean((1, 2)))


@dataclasses.dataclass(frozen=True)
class ChainSpace:
  name: ClassVar[str] = 'chain'
  cell_types: ClassVar[tuple[str, ...]] = ('cell',)
  primitives: tuple[str, ...] = ('zero', 'identity', 'conv')
  alpha_shape: ClassVar[tuple[int, int]] = (2, 3)

  def init_alphas(self, rng, scale=1e-3):
    return {'cell': scale * jax.random.normal(rng, self.alpha_shape)}

  def supernet(self, num_classes, **kwargs):
    return ChainNet(num_classes, space=self, **kwargs)

  def derive(self, weights):
    """The strongest non-zero op of each edge."""
    w = np.asarray(weights['cell'])[:, 1:]
    return tuple(self.primitives[1 + k] for k in w.argmax(-1))


def test_a_space_with_other_cell_types_and_rule():
  space = ChainSpace()
  model = space.supernet(4)
  batch = random_batch(0)
  state = jaxdarts.create_search_state(jax.random.key(0), model,
                                       batch['image'], num_steps=3)
  assert set(state.alphas) == {'cell'}
  state = state.replace(alphas={'cell': jnp.array([[9., 0., 1.],
                                                   [0., 2., 1.]])})
  assert state.genotype() == ('conv', 'identity')  # 'zero' never chosen.
  state, metrics = jaxdarts.search_step(state, batch, random_batch(1))
  assert np.isfinite(float(metrics['val_loss']))


# --- A task: regression of the label's value ---------------------------------


@dataclasses.dataclass(frozen=True)
class Regression:
  def loss(self, outputs, batch):
    return jnp.mean((outputs.mean(-1) - batch['label']) ** 2)

  def metrics(self, outputs, batch):
    return {'mae': jnp.mean(jnp.abs(outputs.mean(-1) - batch['label']))}

  def eval_sums(self, outputs, batch, mask):
    error = outputs.mean(-1) - batch['label']
    return {'squares': jnp.sum(error ** 2 * mask),
            'absolute': jnp.sum(jnp.abs(error) * mask),
            'count': jnp.sum(mask)}

  def summarize(self, sums):
    return {'loss': float(sums['squares'] / sums['count']),
            'mae': float(sums['absolute'] / sums['count'])}


def test_a_task_sets_loss_metrics_and_evaluation():
  model = MicroSupernet()
  train, val = random_batch(0), random_batch(1)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, train['image'], task=Regression(),
      num_steps=3)
  state, metrics = jaxdarts.search_step(state, train, val)
  assert {'train_mae', 'val_mae'} <= set(metrics)
  assert 'train_accuracy' not in metrics

  rng = np.random.default_rng(0)
  dataset = make_dataset(
      rng.integers(0, 256, (11, 8, 8, 3), np.uint8), rng.integers(0, 4, 11),
      num_classes=4, name='toy', split='test', mean=[0.5] * 3, std=[0.25] * 3,
      crop_padding=0, flip=False)
  got = evaluate(state, dataset, batch_size=4)  # 4 + 4 + 3, padded.
  images = (dataset.images / 255. - 0.5) / 0.25
  error = np.asarray(state.predict(jnp.asarray(images, jnp.float32))
                     ).mean(-1) - dataset.labels
  assert got['loss'] == pytest.approx(np.mean(error ** 2), rel=1e-5)
  assert got['mae'] == pytest.approx(np.mean(np.abs(error)), rel=1e-5)
