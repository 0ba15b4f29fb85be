"""Tests of the segmentation data: segdigits, masks through the streams."""

import numpy as np
import pytest

from jaxdarts import data
from jaxdarts.data import segdigits
from jaxdarts.data.dataset import make_dataset
from jaxdarts.tasks.segmentation import IGNORE_LABEL


def test_segdigits_is_a_pure_function_of_the_seed():
  images, masks = segdigits.make_segdigits('test', seed=3, size=12)
  again = segdigits.make_segdigits('test', seed=3, size=12)
  other = segdigits.make_segdigits('test', seed=4, size=12)
  np.testing.assert_array_equal(images, again[0])
  np.testing.assert_array_equal(masks, again[1])
  assert not np.array_equal(masks, other[1])
  assert images.shape == (12, 32, 32, 1) and masks.shape == (12, 32, 32)


def test_segdigits_labels_cover_the_ink():
  images, masks = segdigits.make_segdigits('train', seed=0, size=40)
  assert set(np.unique(masks)) <= set(range(11))
  assert not masks[images[..., 0] > 0].min() == 0  # Ink is never background.
  # A region is its ink grown by 2 canvas pixels: more, but not all.
  assert 1.2 < (masks > 0).mean() / (images > 0).mean() < 4
  # Every canvas shows at least one digit's class.
  assert all(((m >= 1) & (m <= 10)).any() for m in masks)


def test_dilation_grows_a_mask_by_one_pixel():
  mask = np.zeros((5, 5), bool)
  mask[2, 2] = True
  grown = segdigits._dilate(mask)
  assert grown.sum() == 9 and grown[1:4, 1:4].all()


def test_load_dataset_gives_masks_with_their_images():
  test = data.load_dataset('segdigits', 'test')
  assert test.num_classes == 11 and test.labels.shape == (384, 32, 32)
  assert test.images.shape == (384, 32, 32, 1)


def test_a_label_of_another_shape_is_refused():
  with pytest.raises(ValueError, match='per-pixel masks'):
    make_dataset(np.zeros((2, 4, 4, 1), np.uint8), np.zeros((2, 4, 3)),
                 num_classes=2, name='x', split='train', mean=[0.], std=[1.],
                 crop_padding=0, flip=False)


def test_augmentation_keeps_masks_aligned_with_their_images():
  """Each image pixel is its label + 1, so after a crop and a flip the
  pairs must still agree; the padding is image 0 and label ignore."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 7, (16, 9, 9)).astype(np.int32)
  dataset = make_dataset((labels + 1).astype(np.uint8)[..., None], labels,
                         num_classes=7, name='aligned', split='train',
                         mean=[0.], std=[1 / 255], crop_padding=3, flip=True)
  batches = data.Batches(dataset, 8, seed=5, augment=True)
  moved = 0
  for step in range(4):
    batch = batches.at(data.Position(step // 2, step % 2))
    image = np.round(batch['image'][..., 0]).astype(np.int32)
    padding = batch['label'] == IGNORE_LABEL
    np.testing.assert_array_equal(image[padding], 0)
    np.testing.assert_array_equal(image[~padding], batch['label'][~padding]
                                  + 1)
    moved += padding.any(axis=(1, 2)).sum()
  assert moved > 8  # Most crops moved (and so the test can fail).
  # Two shards of the batch are its halves, masks included.
  halves = [data.Batches(dataset, 8, seed=5, augment=True, shard_index=i,
                         shard_count=2).at(data.Position(1, 1))
            for i in (0, 1)]
  np.testing.assert_array_equal(
      np.concatenate([h['label'] for h in halves]), batch['label'])


def test_npz_masks_are_a_segmentation_dataset(tmp_path):
  masks = np.zeros((4, 8, 8), np.int64)
  masks[:, 0] = IGNORE_LABEL
  masks[1, 4, 4] = 5
  path = tmp_path / 'masks.npz'
  np.savez(path, images=np.zeros((4, 8, 8, 3), np.uint8), labels=masks)
  train = data.load_dataset(f'npz:{path}', 'train')
  assert train.num_classes == 6  # The ignore label is no class.
  np.testing.assert_array_equal(train.labels, masks)


def test_masks_are_coloured_by_class_with_ignore_white(tmp_path):
  from jaxdarts.viz import segmentation  # pylint: disable=g-import-not-at-top
  rgb = segmentation.colour(np.array([[0, 1, 2, IGNORE_LABEL]]), 3)
  np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
  np.testing.assert_array_equal(rgb[0, 3], [1, 1, 1])
  assert not np.array_equal(rgb[0, 1], rgb[0, 2])
  path = tmp_path / 'samples.npz'
  segmentation.save_samples(path, {
      'images': np.zeros((2, 4, 4, 1), np.uint8),
      'labels': np.zeros((2, 4, 4), np.int32),
      'predictions': np.ones((2, 4, 4), np.int32), 'num_classes': 3})
  assert segmentation.draw_samples(path, tmp_path / 's.png').stat().st_size


def test_the_report_shows_the_segmentation_samples(tmp_path):
  from jaxdarts.spaces.darts_cnn import genotypes  # pylint: disable=g-import-not-at-top
  from jaxdarts.viz import report, segmentation  # pylint: disable=g-import-not-at-top
  genotypes.get('DARTS_V2').save(tmp_path / 'genotype.json')
  images, masks = segdigits.make_segdigits('test', size=2)
  segmentation.save_samples(tmp_path / segmentation.SAMPLES_FILE, {
      'images': images, 'labels': masks, 'predictions': masks[::-1],
      'num_classes': 11})
  page = report.write_report(tmp_path).read_text()
  section = page[page.index('true and predicted masks'):]
  assert section.index('data:image/png;base64,') < section.index('<h2>')


def test_pets_load_under_mock_data_as_two_class_masks():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=3):
    pets = data.load_dataset('oxford_iiit_pet', 'test')
  assert pets.images.shape == (3, 64, 64, 3) and pets.labels.shape == (3, 64,
                                                                       64)
  assert set(np.unique(pets.labels)) <= {0, 1, IGNORE_LABEL}
  assert pets.num_classes == 2 and pets.flip


def test_missing_pets_is_one_clear_error(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.load_dataset('oxford_iiit_pet', 'train', data_dir=tmp_path)
  assert ('python -m jaxdarts.data prepare oxford_iiit_pet --data_dir='
          f'{tmp_path}') in str(info.value)


def test_masks_are_resized_by_nearest_neighbour():
  from jaxdarts.data import pets  # pylint: disable=g-import-not-at-top
  mask = np.array([[1, 2], [3, 1]])
  np.testing.assert_array_equal(pets.nearest(mask, 4), np.kron(mask, np.ones(
      (2, 2), int)))
  np.testing.assert_array_equal(pets.nearest(np.arange(9).reshape(3, 3), 2),
                                [[0, 2], [6, 8]])
