"""Image classification: cross-entropy on logits, accuracy."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

Batch = dict[str, jax.Array]  # {'image': [B, H, W, C], 'label': int [B]}


@dataclasses.dataclass(frozen=True)
class Classification:
  """Logits ``[B, K]`` against integer labels ``[B]``.

  Attributes:
    label_smoothing: training targets ``(1 - e) onehot + e / K`` (the
      reference code uses 0.1 for ImageNet); evaluation uses hard labels.
  """
  label_smoothing: float = 0.

  def loss(self, logits: jax.Array, batch: Batch) -> jax.Array:
    labels = batch['label']
    if not self.label_smoothing:
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()
    targets = optax.smooth_labels(
        jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype),
        self.label_smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()

  def metrics(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    return {'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}

  def eval_sums(self, logits: jax.Array, batch: Batch,
                mask: jax.Array) -> dict[str, jax.Array]:
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label'])
    correct = jnp.argmax(logits, -1) == batch['label']
    return {'loss_sum': jnp.sum(losses * mask),
            'correct': jnp.sum(correct * mask), 'count': jnp.sum(mask)}

  def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
    count = float(sums['count'])
    return {'loss': float(sums['loss_sum']) / count,
            'accuracy': float(sums['correct']) / count}
