"""The task seam: what a network's outputs are scored by.

A task turns a network's outputs and a batch into the loss that is
differentiated, the metrics a training step logs, and the sums a full pass
over a split accumulates (so an evaluation is exact whatever the batch
size). The search step, the retraining step and the evaluation call these
and nothing else, so a new task (per-pixel segmentation, ...) is one small
class with these four methods; tasks are frozen dataclasses, hashable, as
static fields of the states.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

Batch = dict[str, jax.Array]


class Task(Protocol):
  """What a task provides (see the module docstring)."""

  def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    """The scalar training loss of one batch (a mean)."""

  def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    """Scalar metrics of one batch (means), logged with a split prefix."""

  def eval_sums(self, outputs: jax.Array, batch: Batch,
                mask: jax.Array) -> dict[str, jax.Array]:
    """Sums over the batch's examples where ``mask`` is 1 (padding is 0)."""

  def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
    """The split's metrics (``loss`` among them) from the added sums."""
