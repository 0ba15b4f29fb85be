"""Semantic segmentation: per-pixel cross-entropy, pixel accuracy, mean IoU.

A network's outputs are per-pixel logits ``[B, h, w, K]``, usually at a
fraction of the input resolution (a segmentation supernet ends at output
stride 4); the labels are integer masks ``[B, H, W]`` with ``ignore_label``
on pixels that count nowhere (a crop's padding, uncertain boundaries). The
logits are first upsampled bilinearly to ``H x W`` (half-pixel centres, as
PyTorch's ``align_corners=False``), then scored pixel by pixel.

Evaluation accumulates a ``K x K`` confusion matrix over the whole split
(rows: true class, columns: predicted class), so the mean IoU is exact
whatever the batch size (the mean of per-batch IoUs would not be)::

    IoU_k = C_kk / (sum_j C_kj + sum_j C_jk - C_kk)
    mIoU = mean of IoU_k over the classes whose union is not empty,

as in the PASCAL VOC evaluation (Everingham et al., IJCV 2010) and
DeepLab. The training loss is the mean cross-entropy over the batch's
labelled pixels (PyTorch's ``CrossEntropyLoss(ignore_index=...)``); with
several devices each averages its own labelled pixels, which equals the
global mean when every device has as many of them (no ignored pixels).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

Batch = dict[str, jax.Array]  # {'image': [B, H, W, C], 'label': int [B, H, W]}

IGNORE_LABEL = 255


def upsample(logits: jax.Array, size: tuple[int, int]) -> jax.Array:
  """``logits [B, h, w, K]`` resized bilinearly to ``[B, *size, K]``."""
  if tuple(logits.shape[1:3]) == tuple(size):
    return logits
  return jax.image.resize(logits, logits.shape[:1] + tuple(size)
                          + logits.shape[3:], 'bilinear')


def confusion_matrix(labels: jax.Array, predictions: jax.Array,
                     weights: jax.Array, num_classes: int) -> jax.Array:
  """``C[k, j]``: the weight of pixels of true class k predicted as j.

  Labels outside ``0..num_classes - 1`` (the ignore label) count nowhere.
  """
  true = jax.nn.one_hot(labels.reshape(-1), num_classes, dtype=jnp.float32)
  pred = jax.nn.one_hot(predictions.reshape(-1), num_classes,
                        dtype=jnp.float32)
  return jnp.einsum('pk,pj->kj', true * weights.reshape(-1, 1), pred)


def iou_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, float]:
  """Per-class IoU (NaN where a class is neither true nor predicted) and
  their mean over the others."""
  confusion = np.asarray(confusion, np.float64)
  hits = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - hits
  with np.errstate(invalid='ignore', divide='ignore'):
    iou = np.where(union > 0, hits / union, np.nan)
  present = ~np.isnan(iou)
  return iou, float(iou[present].mean()) if present.any() else float('nan')


@dataclasses.dataclass(frozen=True)
class Segmentation:
  """Per-pixel logits ``[B, h, w, K]`` against masks ``[B, H, W]``.

  Attributes:
    ignore_label: the mask value of pixels that are not scored.
  """
  ignore_label: int = IGNORE_LABEL

  def _scored(self, logits: jax.Array, batch: Batch):
    """``(logits at label size, labels with ignored pixels at 0, valid)``."""
    labels = batch['label']
    if labels.ndim != 3:
      raise ValueError(
          f'Segmentation needs per-pixel labels [B, H, W], got shape '
          f'{labels.shape}; use a segmentation dataset (e.g. segdigits) or '
          "task='classification'.")
    if logits.ndim != 4:
      raise ValueError(
          f'Segmentation needs per-pixel logits [B, h, w, K], got shape '
          f'{logits.shape}; use a segmentation network (space darts_seg).')
    logits = upsample(logits, labels.shape[1:3])
    valid = labels != self.ignore_label
    return logits, jnp.where(valid, labels, 0), valid

  def loss(self, logits: jax.Array, batch: Batch) -> jax.Array:
    logits, labels, valid = self._scored(logits, batch)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(losses * valid) / jnp.maximum(jnp.sum(valid), 1)

  def metrics(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    logits, labels, valid = self._scored(logits, batch)
    correct = (jnp.argmax(logits, -1) == labels) & valid
    return {'accuracy': jnp.sum(correct) / jnp.maximum(jnp.sum(valid), 1)}

  def eval_sums(self, logits: jax.Array, batch: Batch,
                mask: jax.Array) -> dict[str, jax.Array]:
    logits, labels, valid = self._scored(logits, batch)
    weights = valid * mask.reshape(-1, 1, 1)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    predictions = jnp.argmax(logits, -1)
    return {'loss_sum': jnp.sum(losses * weights),
            'correct': jnp.sum((predictions == labels) * weights),
            'count': jnp.sum(weights),
            'confusion': confusion_matrix(labels, predictions, weights,
                                          logits.shape[-1])}

  def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
    count = max(float(sums['count']), 1.)
    _, miou = iou_from_confusion(sums['confusion'])
    return {'loss': float(sums['loss_sum']) / count,
            'accuracy': float(sums['correct']) / count, 'miou': miou}
