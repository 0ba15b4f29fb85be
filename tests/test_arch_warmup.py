"""Alphas frozen for the first steps (PC-DARTS), in one compiled step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdarts
from jaxdarts.core.state import default_arch_optimizer
from jaxdarts.run import search
from tiny import MicroSupernet, random_batch


def test_alphas_stay_until_the_warmup_ends_then_adam_starts_afresh():
  train, val = random_batch(0), random_batch(1)
  state = jaxdarts.create_search_state(
      jax.random.key(0), MicroSupernet(), train['image'],
      weight_tx=optax.sgd(0.1), weight_lr=0.1,
      arch_tx=default_arch_optimizer(learning_rate=0.1, warmup_steps=2))
  initial = jax.device_get(state.alphas)
  # pylint: disable-next=protected-access
  cache_size = jaxdarts.search_step._cache_size
  before = cache_size()
  alphas, params = [], []
  for _ in range(3):
    state, _ = jaxdarts.search_step(state, train, val)
    alphas.append(jax.device_get(state.alphas))
    params.append(jax.device_get(state.params))
  assert cache_size() == before + 1  # One compilation for all three steps.
  for step in (0, 1):  # Frozen, bitwise; the weights train meanwhile.
    for got, want in zip(jax.tree.leaves(alphas[step]),
                         jax.tree.leaves(initial)):
      np.testing.assert_array_equal(got, want)
  assert not np.array_equal(jax.tree.leaves(params[0])[0],
                            jax.tree.leaves(params[1])[0])
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(alphas[2]),
                                                 jax.tree.leaves(initial))]
  # Adam's first update moves each alpha by about the learning rate.
  assert 0.05 < max(moved) < 0.2, moved
  counts = [leaf for leaf in jax.tree.leaves(state.arch_opt_state)
            if jnp.issubdtype(leaf.dtype, jnp.integer)]
  assert sorted(int(c) for c in counts) == [1, 3]  # Adam's, the mask's.


def test_the_search_config_sets_the_warmup_in_epochs():
  fields = (('arch_betas', (0.5, 0.999)), ('arch_lr', 1.0),
            ('arch_weight_decay', 0.0), ('grad_clip', 5.0),
            ('momentum', 0.9), ('weight_decay', 0.0), ('weight_lr', 0.1),
            ('weight_min_lr', 0.001))
  optimizers = search._optimizers  # pylint: disable=protected-access
  _, _, tx = optimizers(10, fields, 4)
  params = {'a': jnp.ones(2)}
  opt_state = tx.init(params)
  for step in range(5):
    updates, opt_state = tx.update({'a': jnp.ones(2)}, opt_state, params)
    assert bool(jnp.all(updates['a'] == 0)) == (step < 4), step
