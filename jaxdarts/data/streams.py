"""Resumable, deterministic batch streams (contract: :mod:`jaxdarts.data`).

A batch is a pure function of ``(seed, epoch, step)``, and process shards
are contiguous blocks of the global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxdarts.data.augmentation import (apply_cutout, crop_and_flip,
                                        draw_augment, normalize)
from jaxdarts.data.dataset import Dataset
from jaxdarts.tasks.segmentation import IGNORE_LABEL

Batch = dict[str, np.ndarray]


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


class Stream:
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

  def __iter__(self) -> Stream:
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


class Batches(Stream):
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
    labels = self.dataset.labels[indices]
    draw = None
    if self._augment:
      rng = _stream_rng(self._seed, self._stream, _AUGMENT, epoch, step)
      draw = draw_augment(rng, len(rows))[low:high]
      images = crop_and_flip(images, draw, self.dataset.crop_padding,
                             self.dataset.flip)
      if labels.ndim == 3:  # Masks move with their images.
        labels = crop_and_flip(labels[..., None], draw,
                               self.dataset.crop_padding, self.dataset.flip,
                               fill=IGNORE_LABEL)[..., 0]
    images = normalize(images, self.dataset.mean, self.dataset.std)
    if draw is not None and self._cutout:
      images = apply_cutout(images, draw, self._cutout)
    return {'image': images, 'label': labels}


class SearchBatches(Stream):
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
