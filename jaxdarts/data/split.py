"""The DARTS search split: weights and architecture halves of a training set."""

from __future__ import annotations

import math

from jaxdarts.data.dataset import Dataset


def _subset(dataset: Dataset, start: int, stop: int) -> Dataset:
  """Rows ``start:stop``, named like a tfds slice: ``'train[:25000]'``."""
  low = str(start) if start else ''
  high = '' if stop == dataset.num_examples else str(stop)
  return dataset._replace(images=dataset.images[start:stop],
                          labels=dataset.labels[start:stop],
                          split=f'{dataset.split}[{low}:{high}]')


def search_split(train: Dataset,
                 train_portion: float = 0.5) -> tuple[Dataset, Dataset]:
  """Splits a training set into the DARTS weight and architecture halves.

  As in the reference implementation, the first ``floor(train_portion * N)``
  examples in stored order train the network weights and the rest train the
  architecture parameters (alphas). The halves are disjoint views of
  ``train`` and the same on every run. (tensorflow-datasets stores CIFAR in a
  fixed hashed order, so the partition differs from PyTorch's file order;
  both are fixed, effectively random partitions.)

  Args:
    train: the training split.
    train_portion: fraction for the weights, strictly between 0 and 1.

  Returns:
    ``(weights_half, alphas_half)``, with the mean, std and augmentation
    defaults of ``train``.
  """
  if not 0.0 < train_portion < 1.0:
    raise ValueError(f'train_portion must be strictly between 0 and 1, got '
                     f'{train_portion}.')
  count = train.num_examples
  cut = int(math.floor(train_portion * count))
  if cut == 0 or cut == count:
    raise ValueError(f'train_portion={train_portion} of {count} examples '
                     f'leaves an empty half ({cut} / {count - cut}).')
  return _subset(train, 0, cut), _subset(train, cut, count)
