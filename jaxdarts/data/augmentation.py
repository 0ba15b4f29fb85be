"""Normalisation and augmentation: random crop, horizontal flip, Cutout.

The random numbers of a batch's augmentation are one draw (see
:func:`draw_augment`) that each transform reads its columns from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def draw_augment(rng: np.random.Generator, count: int) -> np.ndarray:
  """The random numbers of a batch's augmentation: uniform ``[count, 5]``.

  Columns: crop top, crop left, flip, cutout centre y, cutout centre x. All
  are drawn whatever the settings, so an image's randomness depends only on
  the stream key and its row in the global batch.
  """
  return rng.random((count, 5))


def crop_and_flip(images: np.ndarray, draw: np.ndarray, crop_padding: int,
                  flip: bool, *, fill: int = 0) -> np.ndarray:
  """Pads with ``fill``, crops back to ``H x W``, then flips, per image.

  Whole-pixel shifts and mirrors: a segmentation mask given the same
  ``draw`` (and the ignore label as ``fill``) stays aligned with its image.
  """
  count, height, width, channels = images.shape
  out = images
  if crop_padding > 0:
    span = 2 * crop_padding + 1
    top = np.floor(draw[:, 0] * span).astype(np.intp)
    left = np.floor(draw[:, 1] * span).astype(np.intp)
    padded = np.full((count, height + span - 1, width + span - 1, channels),
                     fill, images.dtype)
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


def apply_cutout(images: np.ndarray, draw: np.ndarray,
                 length: int) -> np.ndarray:
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
  draw = draw_augment(rng, images.shape[0])
  return crop_and_flip(images, draw, crop_padding, flip)
