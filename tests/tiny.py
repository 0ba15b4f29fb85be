"""Tiny search spaces and supernets shared by the tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxdarts
from jaxdarts.spaces.darts_cnn import networks

TINY_SPACE = jaxdarts.SearchSpace(
    ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3'), num_nodes=2)
MICRO_SPACE = jaxdarts.SearchSpace(('max_pool_3x3', 'skip_connect'),
                                   num_nodes=1)


def softmax(alphas):
  """DARTS's mixing weights of ``alphas``: a softmax over each edge's ops."""
  return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alphas)


def tiny_model(num_classes=4, space=TINY_SPACE, channels=4, layers=3):
  return jaxdarts.SearchNetwork(num_classes, channels=channels, layers=layers,
                                space=space)


class MicroSupernet(nn.Module):
  """A stand-in with `SearchNetwork`'s interface that compiles in a second.

  Per cell type, a BatchNorm'd convolution mixed with its input by two of
  the mixing weights: enough for the bilevel step's mathematics (alphas,
  weights, BatchNorm statistics), far less to compile than the real
  supernet.
  """
  num_classes: int = 4
  space: jaxdarts.SearchSpace = MICRO_SPACE
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images, mixing_weights, train: bool):
    x = images
    for cell in ('normal', 'reduce'):
      weights = mixing_weights[cell]
      y = nn.Conv(3, (3, 3), use_bias=False)(nn.relu(x))
      y = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       axis_name=self.bn_axis_name)(y)
      x = weights[0, 0] * y + weights[1, 1] * x
    return nn.Dense(self.num_classes)(x.mean((1, 2)))


class MicroNetwork(nn.Module):
  """A stand-in with `NetworkCIFAR`'s interface that compiles in a second.

  A BatchNorm'd convolution with drop path, and logits and auxiliary logits
  from its pooled features: enough for the retraining step's mathematics.
  """
  num_classes: int = 4
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images, train: bool, drop_path_rate=0.):
    x = nn.Conv(3, (3, 3), use_bias=False)(images)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     axis_name=self.bn_axis_name)(x)
    if train:
      x = networks.drop_path(x, drop_path_rate, self.make_rng('dropout'))
    features = nn.relu(x).mean((1, 2))
    logits = nn.Dense(self.num_classes)(features)
    aux_logits = nn.Dense(self.num_classes)(features)
    return (logits, aux_logits) if train else logits


def random_batch(seed, batch=8, size=8, num_classes=4, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.normal(size=(batch, size, size, 3)), dtype),
          'label': jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)}
