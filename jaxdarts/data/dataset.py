"""The `Dataset` type: one split of a dataset in host memory, and its errors.

Every source (:mod:`jaxdarts.data.sources`, :mod:`jaxdarts.data.cifar`)
builds its splits with :func:`make_dataset`: uint8 NHWC images and int32
labels, read-only, with the per-channel mean and std that normalise them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class DatasetNotFoundError(FileNotFoundError):
  """A dataset is not available locally (a run never downloads one)."""


class MissingDependencyError(ImportError):
  """An optional package needed to read or prepare a dataset is missing."""


class Dataset(NamedTuple):
  """One split of a dataset, in host memory.

  Attributes:
    images: uint8 ``[N, H, W, C]``, read-only.
    labels: int32 ``[N]``, read-only; or per-pixel labels ``[N, H, W]``
      (segmentation masks; augmentation moves them with their images).
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


def make_dataset(images: np.ndarray, labels: np.ndarray, *,
                 num_classes: int, name: str, split: str,
                 mean: Sequence[float], std: Sequence[float],
                 crop_padding: int, flip: bool) -> Dataset:
  """Builds a `Dataset`, fixing dtypes and making the arrays read-only."""
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'{name}: images must be uint8 NHWC, got '
                     f'{images.dtype} {images.shape}.')
  if labels.shape not in (images.shape[:1], images.shape[:3]):
    raise ValueError(f'{name}: {images.shape[0]} images but labels of shape '
                     f'{labels.shape}; expected {images.shape[:1]} (classes) '
                     f'or {images.shape[:3]} (per-pixel masks).')
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

