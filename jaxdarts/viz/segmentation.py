"""Validation images with their true and predicted masks, coloured.

A segmentation search (task ``segmentation``) ends by saving a few images
of its alphas half, their true masks and the supernet's predicted masks
(:func:`save_samples`, ``workdir/segmentation_samples.npz``);
:func:`draw_samples` draws them in three columns, and the search report
(:mod:`jaxdarts.viz.report`) embeds that drawing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxdarts.data.augmentation import normalize
from jaxdarts.tasks.segmentation import IGNORE_LABEL, upsample

SAMPLES_FILE = 'segmentation_samples.npz'
IGNORE_COLOUR = (1., 1., 1.)  # White.


def predicted_masks(state, images: np.ndarray, mean, std) -> np.ndarray:
  """The argmax masks ``[N, H, W]`` of ``state.predict`` on uint8 images."""
  logits = state.predict(normalize(images, mean, std))
  return np.asarray(upsample(logits, images.shape[1:3]).argmax(-1),
                    np.int32)


def samples(state, dataset, count: int = 6) -> dict[str, np.ndarray]:
  """The first ``count`` examples of ``dataset`` with the state's masks
  (every process of a run computes them: the state may span them)."""
  images = np.asarray(dataset.images[:count])
  return {'images': images, 'labels': np.asarray(dataset.labels[:count]),
          'predictions': predicted_masks(state, images, dataset.mean,
                                         dataset.std),
          'num_classes': np.int32(dataset.num_classes)}


def save_samples(path: str | os.PathLike,
                 arrays: dict[str, np.ndarray]) -> None:
  """Writes :func:`samples` to ``path``."""
  np.savez_compressed(path, **arrays)


def colour(masks: np.ndarray, num_classes: int) -> np.ndarray:
  """RGB ``[..., 3]`` in 0..1: class 0 black, the others a qualitative
  palette (matplotlib's tab20), the ignore label white."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  palette = np.zeros((max(num_classes, 1), 3))
  palette[1:] = colormaps['tab20'](np.arange(num_classes - 1) % 20)[:, :3]
  masks = np.asarray(masks)
  known = (masks >= 0) & (masks < num_classes)
  out = np.where(known[..., None], palette[np.where(known, masks, 0)], 0.)
  out[masks == IGNORE_LABEL] = IGNORE_COLOUR
  return out


def draw_samples(samples: str | os.PathLike, path: str | os.PathLike) -> Path:
  """Draws ``samples`` (a :func:`save_samples` file): a row per image, its
  true and its predicted mask."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  with np.load(samples) as data:
    images, labels, predictions = (data[k] for k in ('images', 'labels',
                                                     'predictions'))
    num_classes = int(data['num_classes'])
  rows = len(images)
  figure, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
  for row in range(rows):
    image = images[row]
    shown = image[..., 0] if image.shape[-1] == 1 else image
    panels = [(shown, 'image'), (colour(labels[row], num_classes), 'true'),
              (colour(predictions[row], num_classes), 'predicted')]
    for axis, (panel, title) in zip(axes[row], panels):
      axis.imshow(panel, cmap='gray' if panel.ndim == 2 else None,
                  interpolation='nearest')
      axis.set_axis_off()
      if row == 0:
        axis.set_title(title)
  figure.tight_layout()
  path = Path(path)
  figure.savefig(path, dpi=80)
  plt.close(figure)
  return path
