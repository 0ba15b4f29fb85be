"""CIFAR-10/100 from a prepared tensorflow-datasets copy, and preparing one.

A run never downloads: :func:`load_tfds` reads a copy made once by
:func:`prepare_dataset` (``python -m jaxdarts.data prepare cifar10
--data_dir=DIR``, which needs network access and TensorFlow). Copies prepared
as array_record files are read without TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdarts.data.dataset import (Dataset, DatasetNotFoundError,
                                   MissingDependencyError, make_dataset)

TFDS_DATASETS = ('cifar10', 'cifar100')


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
# Segmentation sets read by their own modules (oxford_iiit_pet: pets.py).
TFDS_SEGMENTATION = {'oxford_iiit_pet': 'Oxford-IIIT Pet'}


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
  title = (_TFDS_INFO[name].title if name in _TFDS_INFO
           else TFDS_SEGMENTATION[name])
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


def load_tfds(name: str, split: str,
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
  return make_dataset(images, labels, num_classes=info.num_classes,
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
  if name not in TFDS_DATASETS + tuple(TFDS_SEGMENTATION):
    raise ValueError(f'Only {", ".join(map(repr, TFDS_DATASETS))} and '
                     f'{", ".join(map(repr, TFDS_SEGMENTATION))} need '
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
