"""One evaluation step for every state: the task's sums over a batch.

A state with ``predict(images)`` (the outputs in evaluation mode, running
BatchNorm statistics) and a ``task`` is evaluated the same way, whether it
is a search state (the supernet at its deterministic mixing weights) or a
retraining state. The sums are masked, so a short last batch padded to the
full batch size adds exactly its own examples and the step compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]


def eval_step_fn(state, batch: Batch,
                 mask: jax.Array | None = None) -> dict[str, jax.Array]:
  """The task's sums over ``batch`` (e.g. ``loss_sum``, ``correct``,
  ``count``), counting the examples where ``mask`` is 1 (all without it)."""
  if mask is None:
    mask = jnp.ones(batch['image'].shape[:1], jnp.float32)
  return state.task.eval_sums(state.predict(batch['image']), batch, mask)


eval_step = jax.jit(eval_step_fn)
