"""Tests of jaxdarts.tasks.segmentation: loss, metrics, mIoU over a split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdarts import tasks
from jaxdarts.tasks.segmentation import IGNORE_LABEL, Segmentation, upsample

X = IGNORE_LABEL


def logits_of(predictions, num_classes=3):
  """Logits whose argmax is ``predictions`` (and softmax not one-hot)."""
  return 2. * jax.nn.one_hot(jnp.asarray(predictions), num_classes)


def test_registered():
  assert tasks.get('segmentation') == Segmentation()


def test_miou_against_a_hand_computed_confusion_matrix():
  """Two batches, the second padded with a masked-out example.

  Batch 1, labels / predictions (X: ignored):
     0 1 | 0 1      one pixel ignored (predicted 2: counts nowhere)
     X 2 | 2 2
  Batch 2, example 1, and example 2 (padding, mask 0):
     1 1 | 1 0      2 2 | 0 0
     0 2 | 0 1      2 2 | 0 0
  Confusion (rows true, columns predicted):
     true 0: pred 0 (b1), pred 0 (b2)            -> [2, 0, 0]
     true 1: pred 1 (b1), pred 1, pred 0 (b2)    -> [1, 2, 0]
     true 2: pred 2 (b1), pred 1 (b2)            -> [0, 1, 1]
  IoU_0 = 2 / (2 + 3 - 2) = 2/3; IoU_1 = 2 / (3 + 3 - 2) = 1/2;
  IoU_2 = 1 / (2 + 1 - 1) = 1/2; mIoU = 5/9. Pixel accuracy 5/7.
  """
  task = Segmentation()
  batches = [
      ({'label': jnp.array([[[0, 1], [X, 2]]])}, [[[0, 1], [2, 2]]], [1.]),
      ({'label': jnp.array([[[1, 1], [0, 2]], [[2, 2], [2, 2]]])},
       [[[1, 0], [0, 1]], [[0, 0], [0, 0]]], [1., 0.]),
  ]
  sums = [jax.device_get(task.eval_sums(logits_of(p), b, jnp.array(m)))
          for b, p, m in batches]
  total = jax.tree.map(lambda *x: np.sum(np.asarray(x, np.float64), 0), *sums)
  np.testing.assert_array_equal(total['confusion'],
                                [[2, 0, 0], [1, 2, 0], [0, 1, 1]])
  result = task.summarize(total)
  assert result['miou'] == pytest.approx(5 / 9)
  assert result['accuracy'] == pytest.approx(5 / 7)
  # The loss sums the 7 scored pixels: 5 right, 2 wrong.
  right = -np.log(np.exp(2) / (np.exp(2) + 2))
  wrong = -np.log(1 / (np.exp(2) + 2))
  assert result['loss'] == pytest.approx((5 * right + 2 * wrong) / 7)


def test_a_class_never_seen_nor_predicted_is_left_out_of_the_mean():
  task = Segmentation()
  batch = {'label': jnp.array([[[0, 1]]])}
  sums = task.eval_sums(logits_of([[[0, 0]]], 4), batch, jnp.ones(1))
  # IoU_0 = 1/2, IoU_1 = 0; classes 2 and 3 have an empty union.
  assert task.summarize(jax.device_get(sums))['miou'] == pytest.approx(0.25)


def test_loss_and_accuracy_skip_ignored_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 3, 4))
  labels = rng.integers(0, 4, (2, 3, 3))
  labels[0, 0, :] = X
  valid = labels != X
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None],
                              -1)[..., 0]
  task, batch = Segmentation(), {'label': jnp.asarray(labels)}
  np.testing.assert_allclose(task.loss(jnp.asarray(logits), batch),
                             -picked[valid].mean(), rtol=1e-5)
  correct = (logits.argmax(-1) == labels)[valid].mean()
  np.testing.assert_allclose(
      task.metrics(jnp.asarray(logits), batch)['accuracy'], correct)


def test_logits_are_upsampled_bilinearly_to_the_labels():
  """Half-pixel centres: output pixel i of a 2x upsampling reads the input
  at (i + 0.5) / 2 - 0.5, clamped: 0, 0.25, 0.75, 1 of the way."""
  logits = jnp.array([-2., 2.]).reshape(1, 1, 2, 1) * jnp.ones((1, 2, 2, 1))
  up = upsample(logits, (4, 4))
  np.testing.assert_allclose(up[0, 0, :, 0], [-2., -1., 1., 2.])
  np.testing.assert_allclose(up[0, :, 2, 0], [1.] * 4)
  # The task scores the upsampled logits: the left half is class 0.
  two = jnp.concatenate([-logits, logits], -1)  # Class 1 where x > 0.
  labels = jnp.array([[[0, 0, 1, 1]] * 4])
  assert float(Segmentation().metrics(two, {'label': labels})[
      'accuracy']) == pytest.approx(1.)


def test_classification_labels_are_refused_with_a_remedy():
  with pytest.raises(ValueError, match='per-pixel labels'):
    Segmentation().loss(jnp.zeros((2, 4, 4, 3)),
                        {'label': jnp.zeros((2,), jnp.int32)})
