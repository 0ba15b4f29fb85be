"""``'digits_canvas'``: scikit-learn's digits at random places on a noisy
16x16 canvas, a small offline task on which architectures differ.

The 8x8 digits alone are too easy for a benchmark: almost every cell of a
NAS-Bench-201-style space fits them within a point of accuracy. Here each
digit is scaled by a random contrast in [0.5, 1], placed at a uniformly
random offset on a 16x16 canvas, and the canvas gets Gaussian noise (sigma
0.25 of the full range) and a random fragment of another digit (a 4x4
patch at half contrast) as a distractor, then is clipped to 0..255. A model
must find the digit first, so receptive fields, depth and convolutions
matter.

The split of the source digits is `jaxdarts.data.sources`'s fixed 1437 /
360 one; every train digit appears once (so the search's two halves hold
disjoint source digits) and every test digit three times (1080 test
images). Everything is drawn from fixed seeds: the same bytes on every run.
"""

from __future__ import annotations

import numpy as np

from jaxdarts.data.dataset import Dataset, channel_stats, make_dataset

CANVAS = 16
NOISE = 0.25
TEST_COPIES = 3
_SEEDS = {'train': 1, 'test': 2}


def render(digits: np.ndarray, rng: np.random.Generator, *,
           canvas: int = CANVAS, noise: float = NOISE) -> np.ndarray:
  """uint8 ``[N, canvas, canvas, 1]`` canvases of float ``[N, 8, 8]``
  digits in 0..1 (see the module docstring)."""
  n, size = len(digits), digits.shape[1]
  out = rng.normal(0.0, noise, (n, canvas, canvas)).astype(np.float32)
  contrast = rng.uniform(0.5, 1.0, n).astype(np.float32)
  offsets = rng.integers(0, canvas - size + 1, (n, 2))
  donors = rng.integers(0, n, n)
  frag = rng.integers(0, size - 4 + 1, (n, 2))
  spots = rng.integers(0, canvas - 4 + 1, (n, 2))
  for k in range(n):
    y, x = spots[k]
    a, b = frag[k]
    out[k, y:y + 4, x:x + 4] += 0.5 * digits[donors[k], a:a + 4, b:b + 4]
    y, x = offsets[k]
    out[k, y:y + size, x:x + size] += contrast[k] * digits[k]
  return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)[..., None]


def load_canvas(split: str) -> Dataset:
  """The ``'digits_canvas'`` split ``'train'`` (1437) or ``'test'`` (1080)."""
  from jaxdarts.data.sources import load_dataset  # pylint: disable=g-import-not-at-top
  source = load_dataset('digits', split)
  copies = 1 if split == 'train' else TEST_COPIES
  digits = np.tile(source.images[..., 0].astype(np.float32) / 255.0,
                   (copies, 1, 1))
  labels = np.tile(source.labels, copies)
  images = render(digits, np.random.default_rng(_SEEDS[split]))
  train = (images if split == 'train' else
           load_canvas('train').images)
  mean, std = channel_stats(train)
  return make_dataset(images, labels, num_classes=10, name='digits_canvas',
                      split=split, mean=mean, std=std, crop_padding=0,
                      flip=False)
