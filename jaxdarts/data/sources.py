"""Dataset sources: :func:`load_dataset`, scikit-learn's digits and npz files.

CIFAR-10/100 come from a tensorflow-datasets copy (:mod:`jaxdarts.data.cifar`);
``'digits'`` is scikit-learn's bundled 8x8 digits, for quick offline runs;
``'npz:PATH'`` a user's arrays.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdarts.data import pets
from jaxdarts.data import segdigits
from jaxdarts.data.cifar import TFDS_DATASETS, load_tfds
from jaxdarts.data.dataset import (Dataset, DatasetNotFoundError,
                                   channel_stats, make_dataset)
from jaxdarts.tasks.segmentation import IGNORE_LABEL

SPLITS = ('train', 'test')
NPZ_PREFIX = 'npz:'
VALID_NAMES = ("'cifar10', 'cifar100', 'digits', 'segdigits', "
               "'digits_canvas', 'oxford_iiit_pet' or "
               "'npz:/path/to/arrays.npz'")

# Below this height or width, npz datasets default to no random cropping.
NPZ_MIN_CROP_SIZE = 16
_DIGITS_TEST_SIZE = 360
_DIGITS_SPLIT_SEED = 0


def load_dataset(name: str, split: str, *,
                 data_dir: str | os.PathLike[str] | None = None) -> Dataset:
  """Loads one split of a dataset into host memory.

  Args:
    name: ``'cifar10'`` or ``'cifar100'`` (a tensorflow-datasets copy in
      ``data_dir``), ``'digits'`` (scikit-learn's 8x8 digits: 1437 train /
      360 test, a fixed split), ``'segdigits'`` (segmentation canvases of
      those digits with per-pixel masks; `jaxdarts.data.segdigits`) or
      ``'npz:PATH'`` (arrays ``images`` and
      ``labels``, optionally ``test_images``/``test_labels`` and
      ``num_classes``; see :func:`_load_npz`).
    split: ``'train'`` or ``'test'``.
    data_dir: tensorflow-datasets root directory for the CIFAR datasets;
      defaults to ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``. Ignored by
      the other sources.

  Returns:
    The split as a `Dataset`.

  Raises:
    ValueError: unknown name or split, or malformed npz arrays.
    DatasetNotFoundError: the dataset is not prepared in ``data_dir`` (or the
      npz file does not exist). Nothing is ever downloaded.
    MissingDependencyError: a package needed to read the stored copy is
      missing.
  """
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r} for {name!r}; valid splits: '
                     f'{", ".join(map(repr, SPLITS))}.')
  if name in TFDS_DATASETS:
    return load_tfds(name, split, data_dir)
  if name == 'digits':
    return _load_digits(split)
  if name == segdigits.NAME:
    return segdigits.load_segdigits(split)
  if name == pets.NAME:
    return pets.load_pets(split, data_dir)
  if name == 'digits_canvas':
    from jaxdarts.data.canvas import load_canvas  # pylint: disable=g-import-not-at-top
    return load_canvas(split)
  if name.startswith(NPZ_PREFIX):
    return _load_npz(name[len(NPZ_PREFIX):], split)
  raise ValueError(f'Unknown dataset {name!r}; valid names: {VALID_NAMES}.')


# --- digits -----------------------------------------------------------------


def _load_digits(split: str) -> Dataset:
  """scikit-learn's bundled 8x8 digits: a fixed 1437 / 360 train/test split."""
  from sklearn import datasets as sk_datasets
  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  # The legacy RandomState stream is frozen by numpy: the split never changes.
  order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(labels))
  train, test = order[:-_DIGITS_TEST_SIZE], order[-_DIGITS_TEST_SIZE:]
  mean, std = channel_stats(images[train])
  rows = train if split == 'train' else test
  return make_dataset(images[rows], labels[rows], num_classes=10,
                      name='digits', split=split, mean=mean, std=std,
                      crop_padding=1, flip=False)


# --- npz --------------------------------------------------------------------


def _load_npz(path: str, split: str) -> Dataset:
  """A user's arrays from an ``.npz`` file.

  Keys: ``images`` (NHWC, uint8 0..255 or float 0..1) and ``labels`` (ints
  ``[N]``, or segmentation masks ``[N, H, W]`` whose ignored pixels are
  :data:`~jaxdarts.tasks.segmentation.IGNORE_LABEL`) are the train split; ``test_images``/``test_labels`` (optional) the
  test split. ``num_classes`` (optional) defaults to the largest label in the
  file plus one. Mean and std come from the train images. Float images are
  stored rounded to uint8. Augmentation defaults: no flips (the data may not
  be mirror-symmetric); crop padding 4, or 0 for images smaller than 16 px.
  """
  where = f'{NPZ_PREFIX}{path}'
  arrays = _read_npz(path, where)
  train_images = _npz_images(arrays, 'images', where)
  train_labels = _npz_labels(arrays, 'labels', train_images.shape[:3], where)
  has_test = [key in arrays for key in ('test_images', 'test_labels')]
  if any(has_test) and not all(has_test):
    raise ValueError(f"{where}: 'test_images' and 'test_labels' must be given "
                     'together.')
  test_images = test_labels = None
  if all(has_test):
    test_images = _npz_images(arrays, 'test_images', where)
    if test_images.shape[1:] != train_images.shape[1:]:
      raise ValueError(f"{where}: 'test_images' are {test_images.shape[1:]} "
                       f"(HWC) but 'images' are {train_images.shape[1:]}.")
    test_labels = _npz_labels(arrays, 'test_labels', test_images.shape[:3],
                              where)
  if split == 'test' and test_images is None:
    raise ValueError(f"{where} has no test split: save 'test_images' and "
                     "'test_labels' arrays in it to evaluate on one.")
  label_sets = [train_labels] + ([test_labels] if all(has_test) else [])
  num_classes = _npz_num_classes(arrays, label_sets, where)
  mean, std = channel_stats(train_images)
  height, width = train_images.shape[1:3]
  images, labels = ((train_images, train_labels) if split == 'train' else
                    (test_images, test_labels))
  return make_dataset(
      images, labels, num_classes=num_classes, name=where, split=split,
      mean=mean, std=std,
      crop_padding=0 if min(height, width) < NPZ_MIN_CROP_SIZE else 4,
      flip=False)


def _read_npz(path: str, where: str) -> dict[str, np.ndarray]:
  if not path:
    raise ValueError(f"{where}: give a file path after 'npz:'.")
  full_path = os.path.expanduser(path)
  if not os.path.isfile(full_path):
    raise DatasetNotFoundError(f'{where}: no such file.')
  try:
    with np.load(full_path, allow_pickle=False) as npz:
      return {key: npz[key] for key in npz.files}
  except (OSError, ValueError, zipfile.BadZipFile) as exc:
    raise ValueError(f'{where}: cannot read it as an .npz file of arrays '
                     f'({exc}).') from exc


def _npz_get(arrays: Mapping[str, np.ndarray], key: str,
             where: str) -> np.ndarray:
  if key not in arrays:
    raise ValueError(
        f"{where}: missing key {key!r} (found {sorted(arrays)}); expected "
        "'images' (NHWC) and 'labels', optionally 'test_images', "
        "'test_labels' and 'num_classes'.")
  return arrays[key]


def _npz_images(arrays: Mapping[str, np.ndarray], key: str,
                where: str) -> np.ndarray:
  """Validated images as uint8 NHWC."""
  images = _npz_get(arrays, key, where)
  if images.ndim != 4:
    raise ValueError(f'{where}: {key!r} must be NHWC with 4 dims, got shape '
                     f'{images.shape}.')
  if min(images.shape) == 0:
    raise ValueError(f'{where}: {key!r} is empty (shape {images.shape}).')
  if images.dtype == np.uint8:
    return images
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'{where}: {key!r} must be uint8 (0..255) or float '
                     f'(0..1), got dtype {images.dtype}.')
  low, high = float(np.min(images)), float(np.max(images))
  if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= 1):
    raise ValueError(f'{where}: float {key!r} must lie in 0..1, got values in '
                     f'[{low:g}, {high:g}].')
  return np.round(images * 255.0).astype(np.uint8)


def _npz_labels(arrays: Mapping[str, np.ndarray], key: str,
                shape: tuple[int, ...], where: str) -> np.ndarray:
  """Validated labels as int32 ``[N]`` or masks ``[N, H, W]`` (``shape``
  is the images' ``(N, H, W)``)."""
  count = shape[0]
  labels = _npz_get(arrays, key, where)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{where}: {key!r} must be integers, got dtype '
                     f'{labels.dtype}.')
  if labels.shape not in ((count,), tuple(shape)):
    raise ValueError(f'{where}: {key!r} must have shape ({count},) to match '
                     f'the images, got {labels.shape} (or {tuple(shape)} '
                     'for segmentation masks).')
  if labels.min() < 0:
    raise ValueError(f'{where}: {key!r} must be >= 0, got {labels.min()}.')
  return labels.astype(np.int32)


def _npz_num_classes(arrays: Mapping[str, np.ndarray],
                     label_sets: Sequence[np.ndarray], where: str) -> int:
  # Masks' ignored pixels are no class.
  needed = max(int(labels[labels != IGNORE_LABEL].max(initial=0)
                   if labels.ndim == 3 else labels.max())
               for labels in label_sets) + 1
  if 'num_classes' not in arrays:
    return needed
  given = arrays['num_classes']
  if given.ndim != 0 or not np.issubdtype(given.dtype, np.integer):
    raise ValueError(f"{where}: 'num_classes' must be an integer scalar, got "
                     f'{given.dtype} of shape {given.shape}.')
  if int(given) < needed:
    raise ValueError(f"{where}: 'num_classes' is {int(given)} but a label is "
                     f'{needed - 1}.')
  return int(given)
