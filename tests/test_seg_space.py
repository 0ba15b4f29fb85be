"""Tests of the darts_seg space: supernet gradient, features, search resume."""

import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import search as search_configs
from jaxdarts import spaces
from jaxdarts.data import segdigits
from jaxdarts.run import search
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet
from jaxdarts.tasks.segmentation import IGNORE_LABEL, Segmentation

MICRO = ('max_pool_3x3', 'skip_connect')
# One node per cell: the cheapest genotype with a pooling and an identity.
ONE_NODE = Genotype.parse(
    "Genotype(normal=[('skip_connect', 0), ('max_pool_3x3', 1)], "
    "normal_concat=[2], reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], "
    'reduce_concat=[2])')


def softmax(alphas):
  return jax.tree.map(lambda a: jax.nn.softmax(a, -1), alphas)


def test_alpha_gradient_matches_finite_differences():
  """d loss / d alphas through the supernet, its decoder, the bilinear
  upsampling and the ignore label, against central differences (float64)."""
  space = spaces.get('darts_seg', primitives=MICRO, num_nodes=1)
  model = space.supernet(3, channels=2, layers=3)
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(2, 8, 8, 1)))
    labels = rng.integers(0, 3, (2, 8, 8))
    labels[0, :2] = IGNORE_LABEL
    batch = {'label': jnp.asarray(labels)}
    alphas = space.init_alphas(jax.random.key(0), 1., jnp.float64)
    variables = jax.tree.map(
        lambda a: a.astype(jnp.float64),
        model.init(jax.random.key(1), images, softmax(alphas), train=False))

    def loss(alphas):
      logits, _ = model.apply(variables, images, softmax(alphas), train=True,
                              mutable=['batch_stats'])
      return Segmentation().loss(logits, batch)

    # One compiled program gives the loss and its gradient.
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    grad = value_and_grad(alphas)[1]
    assert all(float(jnp.abs(g).max()) > 1e-6 for g in grad.values())
    for seed in (2, 3):
      keys = dict(zip(alphas, jax.random.split(jax.random.key(seed))))
      direction = {k: jax.random.normal(keys[k], a.shape, jnp.float64)
                   for k, a in alphas.items()}
      eps = 1e-5
      shifted = lambda s: jax.tree.map(lambda a, d: a + s * eps * d, alphas,
                                       direction)
      numeric = (value_and_grad(shifted(1))[0]
                 - value_and_grad(shifted(-1))[0]) / (2 * eps)
      analytic = sum(jnp.vdot(grad[k], direction[k]) for k in alphas)
      np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_networks_return_their_features_and_the_same_logits():
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)),
                       jnp.float32)
  cifar = NetworkCIFAR(ONE_NODE, channels=2, layers=3, num_classes=5,
                       auxiliary=False)
  variables = cifar.init(jax.random.key(0), images, train=False)
  logits = cifar.apply(variables, images, train=False)
  same, features = cifar.apply(variables, images, train=False,
                               return_features=True)
  np.testing.assert_array_equal(same, logits)
  assert {k: v.shape for k, v in features.items()} == {
      1: (2, 16, 16, 2), 2: (2, 8, 8, 4), 4: (2, 4, 4, 8)}
  for model, size, strides in [
      (NetworkImageNet(ONE_NODE, channels=4, layers=3, num_classes=5,
                       auxiliary=False), 64, (4, 8, 16, 32)),
      (spaces.get('darts_seg').network(ONE_NODE, 5, channels=2, layers=3),
       16, (2, 4, 8))]:
    x = jnp.zeros((2, size, size, 3))
    (outputs, features), _ = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), x, train=False,
                                       return_features=True))
    assert sorted(features) == list(strides), type(model).__name__
    for stride, feature in features.items():
      assert feature.shape[:3] == (2, size // stride, size // stride)
  assert outputs.shape == (2, 4, 4, 5)  # The segmentation logits: stride 4.


def test_the_supernet_ends_at_stride_4_with_one_logit_per_class():
  space = spaces.get('darts_seg', primitives=MICRO, num_nodes=1)
  model = space.supernet(7, channels=2, layers=4)
  images = jnp.zeros((2, 32, 32, 1))
  weights = softmax(space.init_alphas(jax.random.key(0)))
  shapes = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), images, weights, train=False))[0]
  assert shapes.shape == (2, 8, 8, 7)


@pytest.fixture(scope='module')
def npz_config(tmp_path_factory):
  """A segmentation search on 96 16x16 crops of segdigits, 3 steps an
  epoch, a checkpoint every 2."""
  images, masks = segdigits.make_segdigits('train', seed=1, size=96)
  path = tmp_path_factory.mktemp('npz') / 'seg.npz'
  np.savez(path, images=images[:, 8:24, 8:24], labels=masks[:, 8:24, 8:24],
           num_classes=np.int64(11))
  config = search_configs.get_config('segmentation_digits')
  config.data.name = f'npz:{path}'
  config.model.channels = 2
  config.model.num_nodes = 1
  config.model.primitives = MICRO
  config.search.batch_size = 16
  config.search.epochs = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 10
  config.log_every_steps = 3
  config.compilation_cache_dir = ''
  return config


def test_search_resumes_bitwise(npz_config, tmp_path):
  reference = search.run_search(npz_config, tmp_path / 'reference')
  assert reference.finished and int(reference.state.step) == 6
  metrics = (tmp_path / 'reference' / 'metrics.jsonl').read_text()
  assert '"supernet_val_miou"' in metrics
  resumed = shutil.copytree(tmp_path / 'reference', tmp_path / 'resumed')
  for step in (4, 6):  # Back to the checkpoint of step 2 (epoch 0).
    shutil.rmtree(resumed / 'checkpoints' / str(step))
  result = search.run_search(npz_config, resumed)
  assert result.finished
  for field in ('alphas', 'params', 'batch_stats', 'weight_opt_state',
                'arch_opt_state', 'rng'):
    got, want = (jax.tree.leaves(jax.device_get(getattr(r.state, field)))
                 for r in (result, reference))
    for x, y in zip(got, want, strict=True):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), field)
  assert result.genotype == reference.genotype
  with np.load(resumed / 'segmentation_samples.npz') as samples:
    assert samples['predictions'].shape == samples['labels'].shape
    assert samples['predictions'].shape == (6, 16, 16)
