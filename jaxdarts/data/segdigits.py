"""``'segdigits'``: a segmentation set pasted together from sklearn's digits.

Each 32x32 grey canvas holds two of scikit-learn's bundled 8x8 digits,
each upscaled to 16x16 (nearest neighbour) at a random position; the
second covers the first over its region. A digit's region is its
ink grown by one 8x8 pixel (two canvas pixels) in every direction, so
objects are blobs rather than one-pixel strokes that an output stride of 4
could not resolve; its pixels are labelled with the digit's class plus
one, the rest background 0 (11 classes). The ignore label only appears
where augmentation pads. Train canvases use only the digits of the ``'digits'`` train
split, test canvases only its test digits, so no digit is shared.

Everything is a pure function of the seed (numpy's ``default_rng``, which
numpy keeps stable within a release): :func:`make_segdigits` with the same
arguments returns the same arrays; ``load_dataset('segdigits', split)``
uses seed 0.
"""

from __future__ import annotations

import numpy as np

from jaxdarts.data.dataset import Dataset, channel_stats, make_dataset

NAME = 'segdigits'
CANVAS = 32
NUM_CLASSES = 11  # Background and the ten digits.
SIZES = {'train': 1536, 'test': 384}
DIGITS_PER_CANVAS = 2
SCALES = (2,)  # Nearest-neighbour upscaling of the 8x8 digits: 16x16.
_SPLIT_IDS = {'train': 0, 'test': 1}
_DIGITS_TEST_SIZE = 360  # The 'digits' source's fixed split (sources.py).
_DIGITS_SPLIT_SEED = 0


def _digit_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The 8x8 digits (ink 0..16) and classes of the ``digits`` split."""
  from sklearn import datasets as sk_datasets
  digits = sk_datasets.load_digits()
  order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(
      len(digits.target))
  rows = (order[:-_DIGITS_TEST_SIZE] if split == 'train'
          else order[-_DIGITS_TEST_SIZE:])
  return digits.images[rows].astype(np.int32), digits.target[rows]


def _dilate(mask: np.ndarray) -> np.ndarray:
  """``mask`` grown by one pixel in the 8 directions (a 3x3 maximum)."""
  padded = np.pad(mask, 1)
  height, width = mask.shape
  return np.any([padded[dy:dy + height, dx:dx + width]
                 for dy in range(3) for dx in range(3)], axis=0)


def compose(rng: np.random.Generator, pool: np.ndarray, classes: np.ndarray,
            count: int, canvas: int = CANVAS
            ) -> tuple[np.ndarray, np.ndarray]:
  """``count`` canvases: uint8 images ``[count, canvas, canvas, 1]`` and
  int32 masks ``[count, canvas, canvas]``."""
  ink = np.zeros((count, canvas, canvas), np.int32)
  masks = np.zeros((count, canvas, canvas), np.int32)
  for n in range(count):
    for _ in range(DIGITS_PER_CANVAS):
      k = rng.integers(len(pool))
      scale = int(rng.choice(SCALES))
      block = np.ones((scale, scale), np.int32)
      digit = np.kron(pool[k], block)
      region = np.kron(_dilate(pool[k] > 0), block) > 0
      side = digit.shape[0]
      top, left = rng.integers(0, canvas - side + 1, size=2)
      window = (n, slice(top, top + side), slice(left, left + side))
      ink[window] = np.where(region, digit, ink[window])
      masks[window] = np.where(region, classes[k] + 1, masks[window])
  images = np.round(ink * (255. / 16.)).astype(np.uint8)[..., None]
  return images, masks


def make_segdigits(split: str, *, seed: int = 0,
                   size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The images and masks of ``split`` (``size`` canvases, default
  :data:`SIZES`), deterministic from ``seed``."""
  pool, classes = _digit_pool(split)
  rng = np.random.default_rng([seed, _SPLIT_IDS[split]])
  return compose(rng, pool, classes, SIZES[split] if size is None else size)


def load_segdigits(split: str, *, seed: int = 0) -> Dataset:
  """The ``'segdigits'`` split as a `Dataset` (labels ``[N, 32, 32]``).

  Normalised with the train images' statistics; augmentation defaults:
  random crops with 4 pixels of padding (labelled ignore), no flips (a
  mirrored digit is not a digit).
  """
  images, masks = make_segdigits(split, seed=seed)
  mean, std = channel_stats(make_segdigits('train', seed=seed)[0]
                            if split != 'train' else images)
  return make_dataset(images, masks, num_classes=NUM_CLASSES, name=NAME,
                      split=split, mean=mean, std=std, crop_padding=4,
                      flip=False)
