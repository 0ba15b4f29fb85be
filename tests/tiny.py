"""Tiny search spaces and supernets shared by the tests."""

import jax.numpy as jnp
import numpy as np

import jaxdarts

TINY_SPACE = jaxdarts.SearchSpace(
    ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3'), num_nodes=2)


def tiny_model(num_classes=4, space=TINY_SPACE, channels=4, layers=3):
  return jaxdarts.SearchNetwork(num_classes, channels=channels, layers=layers,
                                space=space)


def random_batch(seed, batch=8, size=8, num_classes=4, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.normal(size=(batch, size, size, 3)), dtype),
          'label': jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)}
