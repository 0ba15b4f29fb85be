"""Tests of jaxdarts.data's augmentation, resumable streams and prefetcher."""

import threading
import time

import numpy as np
import pytest

from jaxdarts import data


def _take(stream, count):
  return [next(stream) for _ in range(count)]


def _assert_same_batches(expected, actual):
  assert len(expected) == len(actual)
  for left, right in zip(expected, actual):
    if isinstance(left, tuple):
      _assert_same_batches(list(left), list(right))
      continue
    assert left.keys() == right.keys()
    for key in left:
      np.testing.assert_array_equal(left[key], right[key])


# --- normalisation and augmentation ------------------------------------------


def test_normalize():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
  mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
  out = data.normalize(images, mean, std)
  assert out.dtype == np.float32 and out.shape == images.shape
  np.testing.assert_allclose(out, (images / 255.0 - mean) / std, rtol=1e-5,
                             atol=1e-5)
  # Non-contiguous input.
  np.testing.assert_allclose(data.normalize(images[:, ::-1], mean, std),
                             out[:, ::-1], rtol=1e-6)


def _crops(image, padding):
  """All crops of a zero-padded image, plus their mirror images."""
  height, width, _ = image.shape
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  for top in range(2 * padding + 1):
    for left in range(2 * padding + 1):
      crop = padded[top:top + height, left:left + width]
      yield crop
      yield crop[:, ::-1]


def test_augment_crops_and_flips_each_image_independently():
  rng = np.random.default_rng(2)
  images = rng.integers(1, 256, (64, 6, 5, 3), dtype=np.uint8)
  out = data.augment(images, np.random.default_rng(0), crop_padding=2,
                     flip=True)
  assert out.shape == images.shape and out.dtype == np.uint8
  for image, result in zip(images, out):
    assert any(np.array_equal(result, crop) for crop in _crops(image, 2))
  assert len({result.tobytes() for result in out}) == 64
  # Every image moved or flipped with some probability: not all unchanged.
  assert not np.array_equal(out, images)
  flipped = data.augment(images, np.random.default_rng(0), crop_padding=0,
                         flip=True)
  is_flip = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
  is_same = [np.array_equal(f, i) for f, i in zip(flipped, images)]
  assert all(a or b for a, b in zip(is_flip, is_same))
  assert 10 < sum(is_flip) < 54
  unchanged = data.augment(images, np.random.default_rng(0), crop_padding=0,
                           flip=False)
  np.testing.assert_array_equal(unchanged, images)


# --- positions and batch streams ----------------------------------------------


def test_position_round_trip_and_arithmetic():
  position = data.Position(3, 7)
  restored = data.Position.from_dict(
      {'epoch': np.int64(3), 'step': np.array(7)})
  assert restored == position and type(restored.epoch) is int
  assert position.to_dict() == {'epoch': 3, 'step': 7}
  assert position.advanced(8) == data.Position(4, 0)
  assert position.advanced(9) == data.Position(3, 8)
  assert position.global_step(10) == 37
  assert data.Position.from_global_step(37, 10) == position
  with pytest.raises(ValueError):
    data.Position.from_dict({'epoch': -1, 'step': 0})


def test_batches_shapes_epochs_and_positions(digits_train):
  batches = data.Batches(digits_train, 100, seed=0)
  assert batches.steps_per_epoch == 14
  seen = []
  for step in range(14):
    assert batches.position == data.Position(0, step)
    batch = next(batches)
    assert batch['image'].shape == (100, 8, 8, 1)
    assert batch['image'].dtype == np.float32
    assert batch['label'].dtype == np.int32
    seen.append(batches.epoch_order(0)[step * 100:(step + 1) * 100])
  assert batches.position == data.Position(1, 0)
  seen = np.concatenate(seen)
  assert len(np.unique(seen)) == 1400  # No repeats within an epoch.
  next(batches)
  assert batches.position == data.Position(1, 1)


def test_batches_are_deterministic(digits_train):
  first = _take(data.Batches(digits_train, 64, seed=5, augment=True), 5)
  second = _take(data.Batches(digits_train, 64, seed=5, augment=True), 5)
  _assert_same_batches(first, second)
  other = next(data.Batches(digits_train, 64, seed=6, augment=True))
  assert not np.array_equal(other['image'], first[0]['image'])
  batches = data.Batches(digits_train, 64, seed=5)
  assert not np.array_equal(batches.epoch_order(0), batches.epoch_order(1))
  np.testing.assert_array_equal(
      np.sort(batches.epoch_order(1)), np.arange(digits_train.num_examples))


def test_unshuffled_unaugmented_batches_are_the_stored_order(digits_train):
  batch = next(data.Batches(digits_train, 32, seed=9, shuffle=False))
  np.testing.assert_array_equal(batch['label'], digits_train.labels[:32])
  np.testing.assert_array_equal(
      batch['image'],
      data.normalize(digits_train.images[:32], digits_train.mean,
                     digits_train.std))


@pytest.mark.parametrize('start', [data.Position(0, 5), data.Position(1, 20),
                                   data.Position(2, 0)])
def test_batches_resume_exactly(digits_train, start):
  kwargs = dict(seed=11, augment=True, cutout=4)
  full = data.Batches(digits_train, 64, **kwargs)  # 22 steps per epoch.
  skip = start.global_step(full.steps_per_epoch)
  expected = _take(full, skip + 6)[skip:]  # Crosses an epoch boundary.
  resumed = data.Batches(digits_train, 64, start=start, **kwargs)
  _assert_same_batches(expected, _take(resumed, 6))
  assert resumed.position == full.position


def test_batches_reject_bad_arguments(digits_train):
  with pytest.raises(ValueError, match='fewer than one batch'):
    data.Batches(digits_train, 5000, seed=0)
  with pytest.raises(ValueError, match='outside the stream'):
    data.Batches(digits_train, 100, seed=0, start=data.Position(0, 14))
  with pytest.raises(ValueError, match='seed'):
    data.Batches(digits_train, 100, seed=-1)


def test_cutout_zeroes_a_square(digits_train):
  plain = data.Batches(digits_train._replace(crop_padding=0), 64, seed=3,
                       augment=True)
  cut = data.Batches(digits_train._replace(crop_padding=0), 64, seed=3,
                     augment=True, cutout=4)
  before, after = next(plain)['image'], next(cut)['image']
  changed = before != after
  assert changed.any()
  assert np.all(after[changed] == 0)
  assert np.all(changed.sum(axis=(1, 2, 3)) <= 16)


def test_eval_batches_visit_every_example_once(digits_test):
  batches = list(data.eval_batches(digits_test, 100))
  assert [len(b['label']) for b in batches] == [100, 100, 100, 60]
  np.testing.assert_array_equal(
      np.concatenate([b['label'] for b in batches]), digits_test.labels)
  np.testing.assert_array_equal(
      np.concatenate([b['image'] for b in batches]),
      data.normalize(digits_test.images, digits_test.mean, digits_test.std))


# --- search batches -----------------------------------------------------------


def test_search_batches(digits_train):
  weights, alphas = data.search_split(digits_train, 0.75)  # 1077 / 360.
  stream = data.SearchBatches(weights, alphas, 32, seed=0)
  assert stream.steps_per_epoch == min(1077 // 32, 360 // 32) == 11
  train_batch, val_batch = next(stream)
  assert train_batch['image'].shape == val_batch['image'].shape == (
      32, 8, 8, 1)
  assert stream.position == data.Position(0, 1)
  clean = data.SearchBatches(weights, alphas, 32, seed=0, augment_val=False)
  _, clean_val = next(clean)
  normalised = data.normalize(alphas.images, alphas.mean, alphas.std)
  alpha_rows = {image.tobytes() for image in normalised}
  assert all(image.tobytes() in alpha_rows for image in clean_val['image'])
  # With the reference default, the val half is augmented too.
  assert not all(image.tobytes() in alpha_rows for image in val_batch['image'])


@pytest.mark.parametrize('start', [data.Position(0, 3), data.Position(1, 9)])
def test_search_batches_resume_exactly(digits_train, start):
  weights, alphas = data.search_split(digits_train)
  full = data.SearchBatches(weights, alphas, 64, seed=4)  # 11 steps/epoch.
  skip = start.global_step(full.steps_per_epoch)
  expected = _take(full, skip + 5)[skip:]
  resumed = data.SearchBatches(weights, alphas, 64, seed=4, start=start)
  _assert_same_batches(expected, _take(resumed, 5))
  assert resumed.position == full.position


# --- sharding -----------------------------------------------------------------


@pytest.mark.parametrize('shard_count', [2, 4])
def test_shards_reassemble_the_global_batch(digits_train, shard_count):
  kwargs = dict(seed=7, augment=True, cutout=3)
  whole = _take(data.Batches(digits_train, 64, **kwargs), 3)
  shards = [_take(data.Batches(digits_train, 64, shard_index=index,
                               shard_count=shard_count, **kwargs), 3)
            for index in range(shard_count)]
  for step, batch in enumerate(whole):
    parts = [shard[step] for shard in shards]
    assert parts[0]['image'].shape[0] == 64 // shard_count
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([part[key] for part in parts]), batch[key])


def test_sharded_eval_covers_everything(digits_test):
  parts = [list(data.eval_batches(digits_test, 100, shard_index=index,
                                  shard_count=2)) for index in range(2)]
  labels = np.concatenate([np.concatenate([p0['label'], p1['label']])
                           for p0, p1 in zip(*parts)])
  np.testing.assert_array_equal(labels, digits_test.labels)


def test_indivisible_batch_names_the_nearest_valid_sizes(digits_train):
  with pytest.raises(ValueError, match='nearest valid sizes are 63 and 66'):
    data.Batches(digits_train, 64, seed=0, shard_count=3)
  with pytest.raises(ValueError, match=r'nearest valid size is 4\.$'):
    data.Batches(digits_train, 3, seed=0, shard_count=4)
  with pytest.raises(ValueError, match='shard_index'):
    data.Batches(digits_train, 64, seed=0, shard_index=2, shard_count=2)


# --- prefetching --------------------------------------------------------------


def test_prefetch_yields_the_same_batches_and_consumer_positions(
    digits_train):
  weights, alphas = data.search_split(digits_train)
  expected = _take(data.SearchBatches(weights, alphas, 64, seed=1), 15)
  source = data.SearchBatches(weights, alphas, 64, seed=1)
  with data.prefetch(source, size=3) as stream:
    assert stream.position == data.Position(0, 0)
    received = []
    for count in range(1, 16):
      received.append(next(stream))
      time.sleep(0.001)  # Let the producer run ahead.
      assert stream.position == data.Position.from_global_step(count, 11)
    assert stream.steps_per_epoch == 11
    with pytest.raises(RuntimeError, match='being prefetched'):
      _ = source.position
    with pytest.raises(RuntimeError, match='being prefetched'):
      next(source)
  _assert_same_batches(expected, received)
  # Resuming from the consumer's position continues the sequence exactly.
  resumed = data.SearchBatches(weights, alphas, 64, seed=1,
                               start=stream.position)
  _assert_same_batches(
      _take(data.SearchBatches(weights, alphas, 64, seed=1), 17)[15:],
      _take(resumed, 2))


def test_prefetch_of_a_plain_iterator_with_transform():
  with data.prefetch(iter(range(10)), transform=lambda x: x * 2) as stream:
    assert list(stream) == [2 * x for x in range(10)]
    with pytest.raises(TypeError, match='no position'):
      _ = stream.position


def test_prefetch_propagates_producer_exceptions():

  def failing():
    yield 1
    yield 2
    raise ValueError('broken record 3')

  stream = data.prefetch(failing())
  assert next(stream) == 1
  assert next(stream) == 2
  with pytest.raises(ValueError, match='broken record 3'):
    next(stream)
  with pytest.raises(StopIteration):
    next(stream)


def test_prefetch_close_stops_the_producer(digits_train):
  before = threading.active_count()
  stream = data.prefetch(data.Batches(digits_train, 64, seed=0), size=2)
  next(stream)
  stream.close()
  assert not stream._thread.is_alive()  # pylint: disable=protected-access
  assert threading.active_count() == before
  with pytest.raises(StopIteration):
    next(stream)
  assert stream.position == data.Position(0, 1)
