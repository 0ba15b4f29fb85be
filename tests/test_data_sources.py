"""Tests of jaxdarts.data's sources: digits, CIFAR, npz, the split, the CLI."""

import importlib.util
import time

import numpy as np
import pytest

from jaxdarts import data

HAS_TENSORFLOW = importlib.util.find_spec('tensorflow') is not None


def _rows(images, labels):
  return sorted(image.tobytes() + bytes([label])
                for image, label in zip(images, labels))


# --- digits -----------------------------------------------------------------


def test_digits_loads(digits_train, digits_test):
  for split, count in ((digits_train, 1437), (digits_test, 360)):
    assert split.images.shape == (count, 8, 8, 1)
    assert split.images.dtype == np.uint8
    assert split.labels.shape == (count,)
    assert split.labels.dtype == np.int32
    assert split.num_classes == 10
    assert split.name == 'digits'
    assert split.crop_padding == 1 and not split.flip
  assert set(np.unique(digits_train.labels)) == set(range(10))
  assert digits_train.images.max() == 255
  assert digits_train.mean.shape == digits_train.std.shape == (1,)
  np.testing.assert_array_equal(digits_train.mean, digits_test.mean)
  mean, std = data.channel_stats(digits_train.images)
  np.testing.assert_allclose(digits_train.mean, mean)
  np.testing.assert_allclose(
      std, (digits_train.images / 255.0).std(), rtol=1e-5)


def test_digits_split_is_fixed_and_a_partition(digits_train, digits_test):
  from sklearn import datasets as sk_datasets
  again = data.load_dataset('digits', 'train')
  np.testing.assert_array_equal(again.images, digits_train.images)
  np.testing.assert_array_equal(again.labels, digits_train.labels)
  full = sk_datasets.load_digits()
  all_images = np.round(full.images * 255 / 16).astype(np.uint8)[..., None]
  union = np.concatenate([digits_train.images, digits_test.images])
  union_labels = np.concatenate([digits_train.labels, digits_test.labels])
  assert _rows(union, union_labels) == _rows(all_images, full.target)


def test_loaded_arrays_are_read_only(digits_train):
  with pytest.raises(ValueError):
    digits_train.images[0, 0, 0, 0] = 1


# --- search split -------------------------------------------------------------


def test_search_split(digits_train):
  weights, alphas = data.search_split(digits_train)
  assert (weights.num_examples, alphas.num_examples) == (718, 719)
  assert (weights.split, alphas.split) == ('train[:718]', 'train[718:]')
  np.testing.assert_array_equal(
      np.concatenate([weights.images, alphas.images]), digits_train.images)
  np.testing.assert_array_equal(
      np.concatenate([weights.labels, alphas.labels]), digits_train.labels)
  np.testing.assert_array_equal(weights.mean, digits_train.mean)
  again, _ = data.search_split(data.load_dataset('digits', 'train'))
  np.testing.assert_array_equal(again.images, weights.images)
  small, rest = data.search_split(digits_train, 0.1)
  assert (small.num_examples, rest.num_examples) == (143, 1294)


@pytest.mark.parametrize('portion', [0.0, 1.0, -0.5, 1.5, 1e-6])
def test_search_split_rejects_bad_portions(digits_train, portion):
  with pytest.raises(ValueError, match='train_portion'):
    data.search_split(digits_train, portion)


# --- CIFAR via tensorflow-datasets --------------------------------------------


@pytest.mark.parametrize('name,classes', [('cifar10', 10), ('cifar100', 100)])
def test_cifar_loads_under_mock_data(name, classes):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6):
    for split in data.SPLITS:
      dataset = data.load_dataset(name, split)
      assert dataset.images.shape == (6, 32, 32, 3)
      assert dataset.images.dtype == np.uint8
      assert dataset.labels.shape == (6,)
      assert dataset.labels.dtype == np.int32
      assert dataset.labels.min() >= 0 and dataset.labels.max() < classes
      assert dataset.num_classes == classes
      assert dataset.mean.shape == dataset.std.shape == (3,)
      assert dataset.crop_padding == 4 and dataset.flip
  expected_mean = {'cifar10': 0.4914, 'cifar100': 0.5071}[name]
  assert dataset.mean[0] == pytest.approx(expected_mean)


def test_missing_cifar_is_one_clear_error(tmp_path):
  start = time.monotonic()
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.load_dataset('cifar10', 'train', data_dir=tmp_path)
  assert time.monotonic() - start < 20
  message = str(info.value)
  assert isinstance(info.value, FileNotFoundError)
  assert "'cifar10'" in message and str(tmp_path) in message
  assert f'python -m jaxdarts.data prepare cifar10 --data_dir={tmp_path}' in (
      message)
  assert 'pip install tensorflow' in message
  assert '--config.data.dir' in message
  assert info.value.__cause__ is not None  # Chained, not swallowed.
  assert not any(tmp_path.iterdir())  # Nothing was downloaded or written.


@pytest.mark.skipif(HAS_TENSORFLOW, reason='needs TensorFlow to be absent')
def test_tfrecord_copy_without_tensorflow_says_what_to_install(tmp_path):
  import tensorflow_datasets as tfds
  builder = tfds.builder('cifar10', data_dir=tmp_path)  # Default: tfrecord.
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)
  with pytest.raises(data.MissingDependencyError,
                     match=r"needs TensorFlow.*jaxdarts\[cifar\]"):
    data.load_dataset('cifar10', 'train', data_dir=tmp_path)


def test_unknown_names_and_splits():
  with pytest.raises(ValueError, match=r"'cifar10', 'cifar100', 'digits'"):
    data.load_dataset('mnist', 'train')
  with pytest.raises(ValueError, match="Unknown split 'validation'"):
    data.load_dataset('digits', 'validation')


# --- npz ----------------------------------------------------------------------


def _save(tmp_path, **arrays):
  path = tmp_path / 'arrays.npz'
  np.savez(path, **arrays)
  return f'npz:{path}'


def test_npz_round_trip_uint8(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (20, 24, 24, 3), dtype=np.uint8)
  labels = rng.integers(0, 4, 20)
  test_images = rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
  name = _save(tmp_path, images=images, labels=labels,
               test_images=test_images, test_labels=np.array([0, 1, 2, 3, 6]))
  train = data.load_dataset(name, 'train')
  np.testing.assert_array_equal(train.images, images)
  np.testing.assert_array_equal(train.labels, labels)
  assert train.labels.dtype == np.int32
  assert train.num_classes == 7  # The largest label in the file, plus one.
  assert train.crop_padding == 4 and not train.flip
  np.testing.assert_allclose(train.mean, images.mean((0, 1, 2)) / 255,
                             rtol=1e-5)
  np.testing.assert_allclose(train.std, (images / 255).std((0, 1, 2)),
                             rtol=1e-4)
  test = data.load_dataset(name, 'test')
  np.testing.assert_array_equal(test.images, test_images)
  assert test.num_classes == 7
  np.testing.assert_array_equal(test.mean, train.mean)


def test_npz_float_images_and_num_classes(tmp_path):
  images = np.linspace(0, 1, 4 * 8 * 8).reshape(4, 8, 8, 1).astype(np.float32)
  name = _save(tmp_path, images=images, labels=np.array([0, 1, 0, 1]),
               num_classes=np.array(5))
  dataset = data.load_dataset(name, 'train')
  assert dataset.images.dtype == np.uint8
  np.testing.assert_array_equal(dataset.images,
                                np.round(images * 255).astype(np.uint8))
  assert dataset.num_classes == 5
  assert dataset.crop_padding == 0  # Smaller than 16 px.
  with pytest.raises(ValueError, match='has no test split'):
    data.load_dataset(name, 'test')


@pytest.mark.parametrize('arrays,match', [
    (dict(images=np.zeros((10, 8, 8), np.uint8), labels=np.zeros(10, int)),
     r"'images' must be NHWC with 4 dims, got shape \(10, 8, 8\)"),
    (dict(images=np.zeros((10, 8, 8, 1), np.uint8), labels=np.zeros(9, int)),
     r"'labels' must have shape \(10,\) to match the images, got \(9,\)"),
    (dict(images=np.zeros((10, 8, 8, 1), np.uint8)),
     r"missing key 'labels' \(found \['images'\]\)"),
    (dict(labels=np.zeros(3, int)), "missing key 'images'"),
    (dict(images=np.full((2, 4, 4, 3), 2.0), labels=np.zeros(2, int)),
     r"float 'images' must lie in 0..1, got values in \[2, 2\]"),
    (dict(images=np.zeros((2, 4, 4, 3), np.int64), labels=np.zeros(2, int)),
     'must be uint8 .0..255. or float .0..1., got dtype int64'),
    (dict(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(2)),
     "'labels' must be integers"),
    (dict(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, -1])),
     "'labels' must be >= 0"),
    (dict(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 3]),
          num_classes=np.array(2)), "'num_classes' is 2 but a label is 3"),
    (dict(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(2, int),
          test_images=np.zeros((2, 4, 4, 3), np.uint8)),
     "'test_images' and 'test_labels' must be given together"),
    (dict(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(2, int),
          test_images=np.zeros((2, 5, 4, 3), np.uint8),
          test_labels=np.zeros(2, int)), r"'test_images' are \(5, 4, 3\)"),
])
def test_npz_validation(tmp_path, arrays, match):
  name = _save(tmp_path, **arrays)
  with pytest.raises(ValueError, match=match) as info:
    data.load_dataset(name, 'train')
  assert str(info.value).startswith(name)


def test_npz_missing_file(tmp_path):
  with pytest.raises(data.DatasetNotFoundError, match='no such file'):
    data.load_dataset(f'npz:{tmp_path}/absent.npz', 'train')
  with pytest.raises(ValueError, match='give a file path'):
    data.load_dataset('npz:', 'train')


# --- command line -------------------------------------------------------------


def test_cli_check_digits(capsys):
  assert data.main(['check', 'digits']) == 0
  output = capsys.readouterr().out
  assert 'digits train: 1437 images of (8, 8, 1), 10 classes' in output
  assert 'digits test: 360 images' in output


@pytest.mark.skipif(HAS_TENSORFLOW, reason='would download CIFAR')
def test_cli_prepare_without_tensorflow_explains(tmp_path, capsys):
  assert data.main(['prepare', 'cifar10', f'--data_dir={tmp_path}']) == 1
  assert 'needs TensorFlow' in capsys.readouterr().err
