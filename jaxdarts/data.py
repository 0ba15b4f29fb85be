"""Datasets, the DARTS search split, augmentation and resumable batch streams.

Sources (:func:`load_dataset`): ``'cifar10'`` and ``'cifar100'`` from a copy
prepared with tensorflow-datasets (a run never downloads; prepare once with
``python -m jaxdarts.data prepare cifar10 --data_dir=DIR``), ``'digits'``
(scikit-learn's bundled 8x8 digits, for quick offline runs) and ``'npz:PATH'``
(a user's arrays). A split lives in host memory as uint8 NHWC images and int32
labels; batches are ``{'image': float32 [B, H, W, C] normalised, 'label':
int32 [B]}``.

Search split: :func:`search_split` gives the first ``floor(train_portion * N)``
training examples (in stored order) to the network weights and the rest to
the architecture parameters, as the reference DARTS code does: disjoint, and
the same on every run.

Determinism and resume: a batch is a pure function of ``(seed, epoch, step)``.
The order within an epoch is a permutation seeded by ``(seed, epoch)``; the
augmentation of a batch is seeded by ``(seed, epoch, step)``. A stream's
``position`` is the :class:`Position` of the NEXT batch it will yield: save
``position.to_dict()`` in a checkpoint and pass ``start=Position.from_dict(d)``
to get exactly the batches the uninterrupted run would have seen (with the
same numpy version; numpy does not promise its random streams across
releases). Behind :func:`prefetch`, read ``position`` from the prefetcher: it
counts the batches the consumer has received, not the ones produced ahead.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

Batch = dict[str, np.ndarray]

SPLITS = ('train', 'test')
TFDS_DATASETS = ('cifar10', 'cifar100')
NPZ_PREFIX = 'npz:'
VALID_NAMES = "'cifar10', 'cifar100', 'digits' or 'npz:/path/to/arrays.npz'"

# Below this height or width, npz datasets default to no random cropping.
NPZ_MIN_CROP_SIZE = 16
_DIGITS_TEST_SIZE = 360
_DIGITS_SPLIT_SEED = 0


class DatasetNotFoundError(FileNotFoundError):
  """A dataset is not available locally (a run never downloads one)."""


class MissingDependencyError(ImportError):
  """An optional package needed to read or prepare a dataset is missing."""


# ---------------------------------------------------------------------------
# Datasets.


class Dataset(NamedTuple):
  """One split of a dataset, in host memory.

  Attributes:
    images: uint8 ``[N, H, W, C]``, read-only.
    labels: int32 ``[N]``, read-only.
    num_classes: number of classes (the model's output size).
    name: the name given to :func:`load_dataset`, e.g. ``'cifar10'``.
    mean: float32 ``[C]``, per-channel mean in 0..1 units, used to normalise.
    std: float32 ``[C]``, per-channel standard deviation in 0..1 units.
    crop_padding: augmentation default: zero padding added on each side
      before a random crop back to ``H x W``; 0 disables cropping.
    flip: augmentation default: random horizontal flips.
    split: which part of the data this is: ``'train'``, ``'test'`` or a
      search half such as ``'train[:25000]'``.
  """

  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str
  mean: np.ndarray
  std: np.ndarray
  crop_padding: int = 0
  flip: bool = False
  split: str = 'train'

  @property
  def num_examples(self) -> int:
    return int(self.labels.shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)``."""
    return tuple(int(d) for d in self.images.shape[1:])


def _frozen(array: np.ndarray) -> np.ndarray:
  array = np.ascontiguousarray(array)
  array.flags.writeable = False
  return array


def _make_dataset(images: np.ndarray, labels: np.ndarray, *,
                  num_classes: int, name: str, split: str,
                  mean: Sequence[float], std: Sequence[float],
                  crop_padding: int, flip: bool) -> Dataset:
  """Builds a `Dataset`, fixing dtypes and making the arrays read-only."""
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'{name}: images must be uint8 NHWC, got '
                     f'{images.dtype} {images.shape}.')
  if labels.shape != images.shape[:1]:
    raise ValueError(f'{name}: {images.shape[0]} images but labels of shape '
                     f'{labels.shape}.')
  channels = images.shape[-1]
  mean = np.asarray(mean, np.float32).reshape(-1)
  std = np.asarray(std, np.float32).reshape(-1)
  if mean.shape != (channels,) or std.shape != (channels,):
    raise ValueError(f'{name}: mean/std must have {channels} entries, got '
                     f'{mean.shape} and {std.shape}.')
  return Dataset(
      images=_frozen(images),
      labels=_frozen(labels.astype(np.int32)),
      num_classes=int(num_classes),
      name=name,
      mean=_frozen(mean),
      std=_frozen(std),
      crop_padding=int(crop_padding),
      flip=bool(flip),
      split=split,
  )


def channel_stats(images: np.ndarray, *,
                  chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of uint8 images, in 0..1 units.

  Args:
    images: uint8 ``[N, H, W, C]``.
    chunk: images summed at a time (bounds the float64 temporaries).

  Returns:
    ``(mean, std)``, float32 ``[C]`` each. A constant channel gets std 1 so
    that normalising never divides by zero.
  """
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f'channel_stats needs a non-empty NHWC array, got shape '
                     f'{images.shape}.')
  channels = images.shape[-1]
  total = np.zeros(channels)
  total_sq = np.zeros(channels)
  for start in range(0, images.shape[0], chunk):
    block = images[start:start + chunk].reshape(-1, channels) / 255.0
    total += block.sum(axis=0)
    total_sq += np.square(block).sum(axis=0)
  count = images.size // channels
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  std = np.where(std > 1e-6, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def load_dataset(name: str, split: str, *,
                 data_dir: str | os.PathLike[str] | None = None) -> Dataset:
  """Loads one split of a dataset into host memory.

  Args:
    name: ``'cifar10'`` or ``'cifar100'`` (a tensorflow-datasets copy in
      ``data_dir``), ``'digits'`` (scikit-learn's 8x8 digits: 1437 train /
      360 test, a fixed split) or ``'npz:PATH'`` (arrays ``images`` and
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
    return _load_tfds(name, split, data_dir)
  if name == 'digits':
    return _load_digits(split)
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
  return _make_dataset(images[rows], labels[rows], num_classes=10,
                       name='digits', split=split, mean=mean, std=std,
                       crop_padding=1, flip=False)


# --- npz --------------------------------------------------------------------


def _load_npz(path: str, split: str) -> Dataset:
  """A user's arrays from an ``.npz`` file.

  Keys: ``images`` (NHWC, uint8 0..255 or float 0..1) and ``labels`` (ints
  ``[N]``) are the train split; ``test_images``/``test_labels`` (optional) the
  test split. ``num_classes`` (optional) defaults to the largest label in the
  file plus one. Mean and std come from the train images. Float images are
  stored rounded to uint8. Augmentation defaults: no flips (the data may not
  be mirror-symmetric); crop padding 4, or 0 for images smaller than 16 px.
  """
  where = f'{NPZ_PREFIX}{path}'
  arrays = _read_npz(path, where)
  train_images = _npz_images(arrays, 'images', where)
  train_labels = _npz_labels(arrays, 'labels', train_images.shape[0], where)
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
    test_labels = _npz_labels(arrays, 'test_labels', test_images.shape[0],
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
  return _make_dataset(
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


def _npz_labels(arrays: Mapping[str, np.ndarray], key: str, count: int,
                where: str) -> np.ndarray:
  """Validated labels as int32 ``[count]``."""
  labels = _npz_get(arrays, key, where)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{where}: {key!r} must be integers, got dtype '
                     f'{labels.dtype}.')
  if labels.ndim != 1 or labels.shape[0] != count:
    raise ValueError(f'{where}: {key!r} must have shape ({count},) to match '
                     f'the images, got {labels.shape}.')
  if labels.min() < 0:
    raise ValueError(f'{where}: {key!r} must be >= 0, got {labels.min()}.')
  return labels.astype(np.int32)


def _npz_num_classes(arrays: Mapping[str, np.ndarray],
                     label_sets: Sequence[np.ndarray], where: str) -> int:
  needed = max(int(labels.max()) for labels in label_sets) + 1
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


# --- tensorflow-datasets (CIFAR) ---------------------------------------------


class _TfdsInfo(NamedTuple):
  title: str
  num_classes: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]


_TFDS_INFO = {
    'cifar10': _TfdsInfo('CIFAR-10', 10, (0.4914, 0.4822, 0.4465),
                         (0.2470, 0.2435, 0.2616)),
    'cifar100': _TfdsInfo('CIFAR-100', 100, (0.5071, 0.4865, 0.4409),
                          (0.2673, 0.2564, 0.2762)),
}


def _import_tfds() -> Any:
  try:
    import tensorflow_datasets as tfds
  except ImportError as exc:
    raise MissingDependencyError(
        'Reading CIFAR needs tensorflow-datasets: pip install '
        'tensorflow-datasets') from exc
  return tfds


def _import_tensorflow(purpose: str) -> Any:
  """Imports TensorFlow with GPUs and TPUs hidden from it (JAX owns them)."""
  try:
    import tensorflow as tf
  except ImportError as exc:
    raise MissingDependencyError(
        f'{purpose} needs TensorFlow, which is not installed: '
        "pip install 'jaxdarts[cifar]' (or pip install tensorflow).") from exc
  for device_type in ('GPU', 'TPU'):
    try:
      tf.config.set_visible_devices([], device_type)
    except (RuntimeError, ValueError):  # Already initialised / unknown type.
      pass
  return tf


def _tfds_builder(tfds: Any, name: str, data_dir: str | None,
                  **kwargs: Any) -> Any:
  try:
    return tfds.builder(name, data_dir=data_dir, **kwargs)
  except Exception as exc:  # pylint: disable=broad-except
    raise RuntimeError(f'tensorflow-datasets cannot open {name!r} in '
                       f'{data_dir or "its default directory"}: {exc}') from exc


def _not_prepared_message(name: str, builder: Any) -> str:
  root = str(getattr(builder, 'data_dir_root', '') or '') or 'DIR'
  title = _TFDS_INFO[name].title
  return (
      f'{title} ({name!r}) is not prepared in {root} (looked for '
      f'{builder.data_dir}). It cannot be downloaded here: runs never '
      'download datasets, and this machine may have no network access.\n'
      'To fix it, either\n'
      f'  * on a machine with network access, run\n'
      f'      pip install tensorflow\n'
      f'      python -m jaxdarts.data prepare {name} --data_dir={root}\n'
      f'    and copy {root}/{name} here; or\n'
      '  * point data.dir (--config.data.dir=DIR, or data_dir=...) at a '
      f'directory that already holds a prepared copy (DIR/{name}/<version>/).')


def _load_tfds(name: str, split: str,
               data_dir: str | os.PathLike[str] | None) -> Dataset:
  """CIFAR from a prepared tensorflow-datasets copy; never downloads."""
  tfds = _import_tfds()
  data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
  builder = _tfds_builder(tfds, name, data_dir)
  try:
    source = builder.as_data_source(split=split)
  except Exception as exc:  # pylint: disable=broad-except
    if not builder.is_prepared():
      raise DatasetNotFoundError(_not_prepared_message(name, builder)) from exc
    formats = builder.info.available_file_formats()
    if not formats & tfds.core.FileFormat.with_random_access():
      images, labels = _read_with_tensorflow(tfds, builder, name, split)
    else:
      raise RuntimeError(f'Cannot read {name!r} {split!r} from '
                         f'{builder.data_dir}: {exc}') from exc
  else:
    images, labels = _read_source(source, name, split, builder.data_dir)
  info = _TFDS_INFO[name]
  return _make_dataset(images, labels, num_classes=info.num_classes,
                       name=name, split=split, mean=info.mean, std=info.std,
                       crop_padding=4, flip=True)


def _read_source(source: Sequence[Mapping[str, Any]], name: str, split: str,
                 location: Any) -> tuple[np.ndarray, np.ndarray]:
  """Reads every record of a random-access data source into two arrays."""
  try:
    count = len(source)
    first = source[0]
    images = np.empty((count,) + np.shape(first['image']), np.uint8)
    labels = np.empty((count,), np.int32)
    for index in range(count):
      record = first if index == 0 else source[index]
      images[index] = record['image']
      labels[index] = record['label']
  except ImportError as exc:
    raise MissingDependencyError(
        f'Decoding the {name!r} images needs Pillow or OpenCV: pip install '
        f'pillow (or opencv-python). ({exc})') from exc
  except Exception as exc:  # pylint: disable=broad-except
    raise RuntimeError(f'Cannot read {name!r} {split!r} from {location}: '
                       f'{exc}') from exc
  return images, labels


def _read_with_tensorflow(tfds: Any, builder: Any, name: str,
                          split: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a copy prepared only as tfrecord files, which needs TensorFlow."""
  _import_tensorflow(
      f'Reading {name!r} from {builder.data_dir} (prepared as tfrecord '
      'files, without a random-access copy)')
  try:
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  except Exception as exc:  # pylint: disable=broad-except
    raise RuntimeError(f'Cannot read {name!r} {split!r} from '
                       f'{builder.data_dir}: {exc}') from exc
  return arrays['image'].astype(np.uint8), arrays['label'].astype(np.int32)


def prepare_dataset(name: str, *,
                    data_dir: str | os.PathLike[str] | None = None) -> str:
  """Downloads and prepares a CIFAR dataset as array_record files.

  Needs network access and TensorFlow (``pip install tensorflow``); run it
  once, then copy the directory to the machines that train.

  Args:
    name: ``'cifar10'`` or ``'cifar100'``.
    data_dir: tensorflow-datasets root directory to write to.

  Returns:
    The directory holding the prepared dataset.
  """
  if name not in TFDS_DATASETS:
    raise ValueError(f'Only {", ".join(map(repr, TFDS_DATASETS))} need '
                     f'preparing, got {name!r}.')
  tfds = _import_tfds()
  _import_tensorflow(f'Preparing {name!r}')
  data_dir = os.path.expanduser(os.fspath(data_dir)) if data_dir else None
  builder = _tfds_builder(tfds, name, data_dir, file_format='array_record')
  try:
    builder.download_and_prepare()
  except Exception as exc:  # pylint: disable=broad-except
    raise RuntimeError(f'Preparing {name!r} in {builder.data_dir} failed '
                       f'(it needs network access): {exc}') from exc
  return str(builder.data_dir)


# ---------------------------------------------------------------------------
# The search split.


def _subset(dataset: Dataset, start: int, stop: int) -> Dataset:
  """Rows ``start:stop``, named like a tfds slice: ``'train[:25000]'``."""
  low = str(start) if start else ''
  high = '' if stop == dataset.num_examples else str(stop)
  return dataset._replace(images=dataset.images[start:stop],
                          labels=dataset.labels[start:stop],
                          split=f'{dataset.split}[{low}:{high}]')


def search_split(train: Dataset,
                 train_portion: float = 0.5) -> tuple[Dataset, Dataset]:
  """Splits a training set into the DARTS weight and architecture halves.

  As in the reference implementation, the first ``floor(train_portion * N)``
  examples in stored order train the network weights and the rest train the
  architecture parameters (alphas). The halves are disjoint views of
  ``train`` and the same on every run. (tensorflow-datasets stores CIFAR in a
  fixed hashed order, so the partition differs from PyTorch's file order;
  both are fixed, effectively random partitions.)

  Args:
    train: the training split.
    train_portion: fraction for the weights, strictly between 0 and 1.

  Returns:
    ``(weights_half, alphas_half)``, with the mean, std and augmentation
    defaults of ``train``.
  """
  if not 0.0 < train_portion < 1.0:
    raise ValueError(f'train_portion must be strictly between 0 and 1, got '
                     f'{train_portion}.')
  count = train.num_examples
  cut = int(math.floor(train_portion * count))
  if cut == 0 or cut == count:
    raise ValueError(f'train_portion={train_portion} of {count} examples '
                     f'leaves an empty half ({cut} / {count - cut}).')
  return _subset(train, 0, cut), _subset(train, cut, count)


# ---------------------------------------------------------------------------
# Normalisation and augmentation.


def normalize(images: np.ndarray, mean: Sequence[float] | np.ndarray,
              std: Sequence[float] | np.ndarray) -> np.ndarray:
  """``(images / 255 - mean) / std`` per channel, as float32.

  Args:
    images: uint8 ``[..., C]``.
    mean: ``[C]`` in 0..1 units.
    std: ``[C]`` in 0..1 units.
  """
  std = np.asarray(std, np.float64)
  scale = (1.0 / (255.0 * std)).astype(np.float32)
  shift = (np.asarray(mean, np.float64) / std).astype(np.float32)
  out = np.asarray(images).astype(np.float32, order='C')
  if out.ndim >= 2 and out.size:
    # Broadcasting over a short last axis is slow; tile it over W * C.
    rows = out.reshape(-1, out.shape[-2] * out.shape[-1])
    rows *= np.tile(scale, out.shape[-2])
    rows -= np.tile(shift, out.shape[-2])
  else:
    out *= scale
    out -= shift
  return out


def _draw_augment(rng: np.random.Generator, count: int) -> np.ndarray:
  """The random numbers of a batch's augmentation: uniform ``[count, 5]``.

  Columns: crop top, crop left, flip, cutout centre y, cutout centre x. All
  are drawn whatever the settings, so an image's randomness depends only on
  the stream key and its row in the global batch.
  """
  return rng.random((count, 5))


def _crop_and_flip(images: np.ndarray, draw: np.ndarray, crop_padding: int,
                   flip: bool) -> np.ndarray:
  """Pads with zeros, crops back to ``H x W``, then flips, per image."""
  count, height, width, channels = images.shape
  out = images
  if crop_padding > 0:
    span = 2 * crop_padding + 1
    top = np.floor(draw[:, 0] * span).astype(np.intp)
    left = np.floor(draw[:, 1] * span).astype(np.intp)
    padded = np.zeros((count, height + span - 1, width + span - 1, channels),
                      images.dtype)
    padded[:, crop_padding:crop_padding + height,
           crop_padding:crop_padding + width] = images
    # [B, span, span, C, H, W]: every crop of every image, without copying.
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (height, width), axis=(1, 2))
    out = np.ascontiguousarray(
        windows[np.arange(count), top, left].transpose(0, 2, 3, 1))
  if flip:
    flips = draw[:, 2] < 0.5
    if out is images:
      out = images.copy()
    out[flips] = out[flips, :, ::-1]
  return out


def _cutout(images: np.ndarray, draw: np.ndarray, length: int) -> np.ndarray:
  """Zeroes a ``length`` square (clipped at the border) of normalised images.

  As in the reference DARTS ``Cutout``: the centre is uniform over the image
  and the hole is cut after normalisation, so it reads as the mean colour.
  Modifies ``images`` in place and returns it.
  """
  _, height, width, _ = images.shape
  centre_y = np.floor(draw[:, 3] * height).astype(np.intp)
  centre_x = np.floor(draw[:, 4] * width).astype(np.intp)
  top = np.clip(centre_y - length // 2, 0, height)
  bottom = np.clip(centre_y + length // 2, 0, height)
  left = np.clip(centre_x - length // 2, 0, width)
  right = np.clip(centre_x + length // 2, 0, width)
  for image, y0, y1, x0, x1 in zip(images, top, bottom, left, right):
    image[y0:y1, x0:x1] = 0.0
  return images


def augment(images: np.ndarray, rng: np.random.Generator, *,
            crop_padding: int, flip: bool) -> np.ndarray:
  """Random crop with zero padding and random horizontal flip, per image.

  Like torchvision's ``RandomCrop(H, padding=crop_padding)`` followed by
  ``RandomHorizontalFlip()``, vectorised over the batch.

  Args:
    images: uint8 ``[B, H, W, C]``.
    rng: source of randomness.
    crop_padding: zero padding on each side; 0 disables cropping.
    flip: whether to flip each image with probability 1/2.

  Returns:
    uint8 ``[B, H, W, C]``.
  """
  draw = _draw_augment(rng, images.shape[0])
  return _crop_and_flip(images, draw, crop_padding, flip)


# ---------------------------------------------------------------------------
# Resumable, deterministic batch streams.


class Position(NamedTuple):
  """Where a batch stream is: ``step`` counts batches within ``epoch``."""

  epoch: int = 0
  step: int = 0

  def to_dict(self) -> dict[str, int]:
    return {'epoch': int(self.epoch), 'step': int(self.step)}

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> Position:
    """Inverse of `to_dict`; accepts numpy scalars from a checkpoint."""
    position = cls(int(values['epoch']), int(values['step']))
    if position.epoch < 0 or position.step < 0:
      raise ValueError(f'A Position must be non-negative, got {position}.')
    return position

  def advanced(self, steps_per_epoch: int) -> Position:
    """The position one batch later, rolling over into the next epoch."""
    if self.step + 1 >= steps_per_epoch:
      return Position(self.epoch + 1, 0)
    return Position(self.epoch, self.step + 1)

  def global_step(self, steps_per_epoch: int) -> int:
    """Batches yielded before this position."""
    return self.epoch * steps_per_epoch + self.step

  @classmethod
  def from_global_step(cls, global_step: int,
                       steps_per_epoch: int) -> Position:
    return cls(*divmod(int(global_step), steps_per_epoch))


_ORDER, _AUGMENT = 0, 1


def _stream_rng(seed: int, stream: int, purpose: int, epoch: int,
                step: int) -> np.random.Generator:
  """A generator keyed by a fixed-length word tuple (no prefix collisions)."""
  words = (seed & 0xFFFFFFFF, seed >> 32, stream, purpose, epoch, step)
  return np.random.default_rng(np.array(words, dtype=np.uint32))


def _check_seed(seed: int) -> int:
  seed = int(seed)
  if not 0 <= seed < 2**64:
    raise ValueError(f'seed must be in [0, 2**64), got {seed}.')
  return seed


def _check_sharding(batch_size: int, shard_index: int, shard_count: int):
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f'Need 0 <= shard_index < shard_count, got shard_index='
                     f'{shard_index}, shard_count={shard_count}.')
  if batch_size % shard_count:
    lower = batch_size // shard_count * shard_count
    nearest = [size for size in (lower, lower + shard_count) if size > 0]
    sizes = (f'sizes are {nearest[0]} and {nearest[1]}' if len(nearest) == 2
             else f'size is {nearest[0]}')
    raise ValueError(
        f'The global batch_size {batch_size} is not divisible by shard_count '
        f'{shard_count}; the nearest valid {sizes}.')


def _shard_bounds(rows: int, shard_index: int,
                  shard_count: int) -> tuple[int, int]:
  """Contiguous block ``shard_index`` of ``rows`` rows (sizes differ <= 1)."""
  return (shard_index * rows // shard_count,
          (shard_index + 1) * rows // shard_count)


class _Stream:
  """Iterator plumbing shared by the batch streams.

  Subclasses define ``at(position)``, the item at a position (a pure
  function). Once wrapped by :func:`prefetch`, the stream refuses direct use:
  its own position runs ahead of what the consumer has seen.
  """

  def __init__(self, steps_per_epoch: int, start: Position):
    start = Position(int(start.epoch), int(start.step))
    if start.epoch < 0 or not 0 <= start.step < steps_per_epoch:
      raise ValueError(f'start={start} is outside the stream: steps run from '
                       f'0 to {steps_per_epoch - 1} in each epoch.')
    self._steps_per_epoch = steps_per_epoch
    self._position = start
    self._prefetcher_owned = False

  def at(self, position: Position) -> Any:
    raise NotImplementedError

  @property
  def steps_per_epoch(self) -> int:
    return self._steps_per_epoch

  @property
  def position(self) -> Position:
    """The position of the next item this stream will yield."""
    self._check_not_prefetched()
    return self._position

  def __iter__(self) -> _Stream:
    return self

  def __next__(self) -> Any:
    self._check_not_prefetched()
    return self._produce()[0]

  def _produce(self) -> tuple[Any, Position]:
    item = self.at(self._position)
    self._position = self._position.advanced(self._steps_per_epoch)
    return item, self._position

  def _check_not_prefetched(self):
    if self._prefetcher_owned:
      raise RuntimeError(
          'This stream is being prefetched: iterate the Prefetcher and read '
          'its .position (the position of what you received); this stream '
          'runs ahead of it.')


class Batches(_Stream):
  """Infinite, deterministic, resumable stream of batches of one dataset.

  Epoch ``e`` visits the examples in a permutation seeded by ``(seed, e)``
  (or in stored order with ``shuffle=False``); the augmentation of the batch
  at ``(e, step)`` is seeded by ``(seed, e, step)``. A stream built with
  ``start=p`` therefore yields exactly what an uninterrupted stream yields
  from ``p`` on. Epochs roll over automatically.

  With ``shard_count > 1`` each process gets the contiguous block
  ``shard_index`` of every global batch (``batch_size / shard_count`` rows),
  matching ``jax.make_array_from_process_local_data``; concatenating the
  shards in order gives the unsharded batch, augmentation included. A short
  last batch (``drop_remainder=False``) is split as evenly as possible.

  Attributes:
    dataset: the examples.
    batch_size: the global batch size (all shards together).
  """

  def __init__(self, dataset: Dataset, batch_size: int, *, seed: int,
               shuffle: bool = True, augment: bool = False,
               drop_remainder: bool = True, shard_index: int = 0,
               shard_count: int = 1, start: Position = Position(0, 0),
               cutout: int = 0, stream: int = 0):
    """Creates the stream.

    Args:
      dataset: the examples.
      batch_size: global batch size; must be divisible by ``shard_count``.
      seed: non-negative integer seed of order and augmentation.
      shuffle: permute each epoch; otherwise stored order.
      augment: apply the dataset's augmentation defaults
        (``dataset.crop_padding``, ``dataset.flip``; change them with
        ``dataset._replace``) and ``cutout``.
      drop_remainder: drop the last, short batch of each epoch.
      shard_index: this process's shard.
      shard_count: number of shards (processes).
      start: position of the first batch to yield.
      cutout: side of the Cutout square (DeVries & Taylor) applied when
        ``augment``; 0 disables it. The reference DARTS retraining uses 16.
      stream: distinguishes independent streams sharing a seed.
    """
    _check_sharding(batch_size, shard_index, shard_count)
    count = dataset.num_examples
    steps = count // batch_size if drop_remainder else -(-count // batch_size)
    if steps < 1:
      raise ValueError(
          f'{dataset.name} {dataset.split} has {count} examples, fewer than '
          f'one batch of {batch_size}; lower the batch size or set '
          'drop_remainder=False.')
    if cutout < 0:
      raise ValueError(f'cutout must be >= 0, got {cutout}.')
    self.dataset = dataset
    self.batch_size = int(batch_size)
    self._seed = _check_seed(seed)
    self._shuffle = bool(shuffle)
    self._augment = bool(augment)
    self._cutout = int(cutout)
    self._shard = (int(shard_index), int(shard_count))
    self._stream = int(stream)
    self._order_cache: tuple[int, np.ndarray] | None = None
    super().__init__(steps, start)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Indices of the examples in the order epoch ``epoch`` visits them."""
    cached = self._order_cache
    if cached is not None and cached[0] == epoch:
      return cached[1]
    count = self.dataset.num_examples
    if self._shuffle:
      order = _stream_rng(self._seed, self._stream, _ORDER, epoch,
                          0).permutation(count)
    else:
      order = np.arange(count)
    self._order_cache = (epoch, order)
    return order

  def at(self, position: Position) -> Batch:
    """The batch at ``position`` (a pure function; does not move the stream)."""
    epoch, step = int(position.epoch), int(position.step)
    if not 0 <= step < self.steps_per_epoch:
      raise ValueError(f'step {step} is outside 0..{self.steps_per_epoch - 1}.')
    rows = self.epoch_order(epoch)[step * self.batch_size:
                                   (step + 1) * self.batch_size]
    low, high = _shard_bounds(len(rows), *self._shard)
    indices = rows[low:high]
    images = self.dataset.images[indices]
    draw = None
    if self._augment:
      rng = _stream_rng(self._seed, self._stream, _AUGMENT, epoch, step)
      draw = _draw_augment(rng, len(rows))[low:high]
      images = _crop_and_flip(images, draw, self.dataset.crop_padding,
                              self.dataset.flip)
    images = normalize(images, self.dataset.mean, self.dataset.std)
    if draw is not None and self._cutout:
      images = _cutout(images, draw, self._cutout)
    return {'image': images, 'label': self.dataset.labels[indices]}


class SearchBatches(_Stream):
  """Infinite stream of ``(train_batch, val_batch)`` pairs for the bilevel step.

  The two halves are read by two independent :class:`Batches` streams with a
  common :class:`Position`. An epoch has ``min(len(train) // B, len(val) //
  B)`` steps: like the reference, which zips the two loaders, the longer
  half's leftover examples in an epoch are skipped (a new permutation visits
  them the next epoch).

  Augmentation follows the reference DARTS code, which loads both halves
  from the training set with the same (augmented) training transform:
  ``augment_val=True`` by default. Set it to False for clean alpha batches.
  """

  def __init__(self, train_half: Dataset, val_half: Dataset, batch_size: int,
               *, seed: int, augment: bool = True, augment_val: bool = True,
               shard_index: int = 0, shard_count: int = 1,
               start: Position = Position(0, 0), cutout: int = 0):
    """Creates the stream.

    Args:
      train_half: examples for the weight step.
      val_half: examples for the architecture step.
      batch_size: global batch size of each of the two batches.
      seed: non-negative integer seed.
      augment: augment the train half (with the dataset's defaults).
      augment_val: also augment the val half (when ``augment``).
      shard_index: this process's shard, as in :class:`Batches`.
      shard_count: number of shards.
      start: position of the first pair to yield.
      cutout: Cutout square side when augmenting; 0 disables it.
    """
    common = dict(seed=seed, shuffle=True, drop_remainder=True,
                  shard_index=shard_index, shard_count=shard_count,
                  cutout=cutout)
    self._train = Batches(train_half, batch_size, augment=augment, stream=0,
                          **common)
    self._val = Batches(val_half, batch_size, augment=augment and augment_val,
                        stream=1, **common)
    steps = min(self._train.steps_per_epoch, self._val.steps_per_epoch)
    super().__init__(steps, start)

  @property
  def batch_size(self) -> int:
    return self._train.batch_size

  def at(self, position: Position) -> tuple[Batch, Batch]:
    """The pair at ``position`` (a pure function; does not move the stream)."""
    if not 0 <= position.step < self.steps_per_epoch:
      raise ValueError(f'step {position.step} is outside '
                       f'0..{self.steps_per_epoch - 1}.')
    return self._train.at(position), self._val.at(position)


def eval_batches(dataset: Dataset, batch_size: int, *, shard_index: int = 0,
                 shard_count: int = 1) -> Iterator[Batch]:
  """One pass over ``dataset`` in stored order, unaugmented.

  Every example appears exactly once; the last batch may be smaller.
  """
  batches = Batches(dataset, batch_size, seed=0, shuffle=False, augment=False,
                    drop_remainder=False, shard_index=shard_index,
                    shard_count=shard_count)
  for step in range(batches.steps_per_epoch):
    yield batches.at(Position(0, step))


# ---------------------------------------------------------------------------
# Prefetching.


class _End(NamedTuple):
  pass


class _Failure(NamedTuple):
  error: BaseException


class Prefetcher:
  """Produces the items of an iterator in a background thread.

  Yields the same sequence as the iterator. When the source is a
  :class:`Batches` or :class:`SearchBatches`, :attr:`position` is the
  position of the next item the consumer will receive, so it is what to
  checkpoint; the source itself is then off limits (it runs ahead).
  An exception in the producer is raised by the consumer's ``next``.
  Call :meth:`close` (or use ``with``) when done; an unclosed producer idles
  in a daemon thread.
  """

  def __init__(self, source: Any, size: int = 2, *,
               transform: Callable[[Any], Any] | None = None):
    """Starts the producer thread.

    Args:
      source: an iterator.
      size: items produced ahead, at most.
      transform: applied to each item in the producer thread (e.g.
        ``jax.device_put``).
    """
    if size < 1:
      raise ValueError(f'prefetch size must be >= 1, got {size}.')
    self._source = source
    self._transform = transform
    self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    if isinstance(source, _Stream):
      self._position: Position | None = source.position
      self._steps_per_epoch: int | None = source.steps_per_epoch
      source._prefetcher_owned = True  # pylint: disable=protected-access
      self._produce = source._produce  # pylint: disable=protected-access
    else:
      iterator = iter(source)
      self._position = None
      self._steps_per_epoch = None
      self._produce = lambda: (next(iterator), None)
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='jaxdarts-prefetch')
    self._thread.start()

  @property
  def position(self) -> Position:
    """Position of the next item the consumer will receive."""
    if self._position is None:
      raise TypeError(f'{type(self._source).__name__} has no position; '
                      'prefetch a Batches or SearchBatches to get one.')
    return self._position

  @property
  def steps_per_epoch(self) -> int:
    if self._steps_per_epoch is None:
      raise TypeError(f'{type(self._source).__name__} has no epochs.')
    return self._steps_per_epoch

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  def _run(self):
    try:
      while not self._stop.is_set():
        item, position = self._produce()
        if self._transform is not None:
          item = self._transform(item)
        if not self._put((item, position)):
          return
    except StopIteration:
      self._put(_End())
    except BaseException as error:  # pylint: disable=broad-except
      self._put(_Failure(error))

  def __iter__(self) -> Prefetcher:
    return self

  def __next__(self) -> Any:
    if self._done:
      raise StopIteration
    while True:
      try:
        entry = self._queue.get(timeout=0.5)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          self._done = True
          raise StopIteration from None
    if isinstance(entry, _End):
      self._done = True
      raise StopIteration
    if isinstance(entry, _Failure):
      self.close()
      raise entry.error
    item, position = entry
    if position is not None:
      self._position = position
    return item

  def close(self):
    """Stops the producer; later ``next`` calls raise StopIteration."""
    self._done = True
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    if self._thread is not threading.current_thread():
      self._thread.join(timeout=5.0)

  def __enter__(self) -> Prefetcher:
    return self

  def __exit__(self, *exc_info: Any):
    self.close()


def prefetch(iterator: Any, size: int = 2, *,
             transform: Callable[[Any], Any] | None = None) -> Prefetcher:
  """Wraps an iterator in a :class:`Prefetcher` (a background producer).

  Checkpoint ``prefetcher.position``, never the wrapped stream's.
  """
  return Prefetcher(iterator, size, transform=transform)


# ---------------------------------------------------------------------------
# Command line: python -m jaxdarts.data {prepare,check} ...


def main(argv: Sequence[str] | None = None) -> int:
  """Prepares a CIFAR dataset, or checks that a dataset loads."""
  parser = argparse.ArgumentParser(
      prog='python -m jaxdarts.data',
      description='Prepare or check the datasets jaxdarts trains on.')
  commands = parser.add_subparsers(dest='command', required=True)
  prepare = commands.add_parser(
      'prepare', help='download and prepare CIFAR (needs network and '
      'TensorFlow)')
  prepare.add_argument('name', choices=TFDS_DATASETS)
  prepare.add_argument('--data_dir', default=None,
                       help='tensorflow-datasets root directory')
  check = commands.add_parser('check', help='load both splits and summarise')
  check.add_argument('name', help=VALID_NAMES)
  check.add_argument('--data_dir', default=None)
  args = parser.parse_args(argv)
  try:
    if args.command == 'prepare':
      print(f'Prepared {args.name} in '
            f'{prepare_dataset(args.name, data_dir=args.data_dir)}')
    else:
      for split in SPLITS:
        data = load_dataset(args.name, split, data_dir=args.data_dir)
        print(f'{data.name} {split}: {data.num_examples} images of '
              f'{data.image_shape}, {data.num_classes} classes, mean '
              f'{[round(float(v), 4) for v in data.mean]}, std '
              f'{[round(float(v), 4) for v in data.std]}')
  except (OSError, ImportError, ValueError, RuntimeError) as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
