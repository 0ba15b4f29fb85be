"""``'oxford_iiit_pet'``: pet segmentation masks from a tensorflow-datasets copy.

The Oxford-IIIT Pet dataset (Parkhi et al., CVPR 2012) as a two-class
segmentation set: pet (1) against background (0), the trimaps' border
pixels as :data:`~jaxdarts.tasks.segmentation.IGNORE_LABEL`. Its images
come in many sizes; each is resized to ``SIZE x SIZE`` (bilinear, with
Pillow) and its mask to the same size by nearest neighbour, so masks
stay labels. Read like CIFAR (:mod:`jaxdarts.data.cifar`): from a copy
prepared once (``python -m jaxdarts.data prepare oxford_iiit_pet
--data_dir=DIR``); a run never downloads.
"""

from __future__ import annotations

import os

import numpy as np

from jaxdarts.data import cifar
from jaxdarts.data.dataset import (Dataset, DatasetNotFoundError,
                                   MissingDependencyError, make_dataset)
from jaxdarts.tasks.segmentation import IGNORE_LABEL

NAME = 'oxford_iiit_pet'
SIZE = 64
NUM_CLASSES = 2  # Background and pet.
# The trimap's values: 1 pet, 2 background, 3 border; others never occur.
_TRIMAP = np.full(256, IGNORE_LABEL, np.int32)
_TRIMAP[1], _TRIMAP[2] = 1, 0
# ImageNet's statistics: the pets are ImageNet-like photographs.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def nearest(mask: np.ndarray, size: int) -> np.ndarray:
  """``mask [H, W]`` resampled to ``size x size`` by nearest neighbour
  (the pixel whose centre is nearest each output pixel's centre)."""
  rows = ((np.arange(size) + .5) * mask.shape[0] / size).astype(np.intp)
  cols = ((np.arange(size) + .5) * mask.shape[1] / size).astype(np.intp)
  return mask[rows[:, None], cols[None, :]]


def _bilinear(image: np.ndarray, size: int) -> np.ndarray:
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError as exc:
    raise MissingDependencyError('Resizing the pets needs Pillow: pip install '
                                 'pillow') from exc
  return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize(
      (size, size), Image.BILINEAR))


def load_pets(split: str, data_dir: str | os.PathLike[str] | None, *,
              size: int = SIZE) -> Dataset:
  """The ``split`` of a prepared copy as a `Dataset` of masks; never
  downloads (see the module docstring)."""
  tfds = cifar._import_tfds()  # pylint: disable=protected-access
  data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
  builder = cifar._tfds_builder(tfds, NAME, data_dir)  # pylint: disable=protected-access
  try:
    source = builder.as_data_source(split=split)
  except Exception as exc:  # pylint: disable=broad-except
    if not builder.is_prepared():
      raise DatasetNotFoundError(
          cifar._not_prepared_message(NAME, builder)) from exc  # pylint: disable=protected-access
    raise RuntimeError(f'Cannot read {NAME!r} {split!r} from '
                       f'{builder.data_dir} (prepare it as array_record '
                       f'files): {exc}') from exc
  count = len(source)
  images = np.empty((count, size, size, 3), np.uint8)
  masks = np.empty((count, size, size), np.int32)
  for index in range(count):
    record = source[index]
    images[index] = _bilinear(record['image'], size)
    masks[index] = _TRIMAP[nearest(np.asarray(record['segmentation_mask'])[
        ..., 0], size)]
  return make_dataset(images, masks, num_classes=NUM_CLASSES, name=NAME,
                      split=split, mean=MEAN, std=STD,
                      crop_padding=size // 8, flip=True)
