"""Datasets, the DARTS search split, augmentation and resumable batch streams.

Sources (:func:`load_dataset`): ``'cifar10'`` and ``'cifar100'`` from a copy
prepared with tensorflow-datasets (a run never downloads; prepare once with
``python -m jaxdarts.data prepare cifar10 --data_dir=DIR``), ``'digits'``
(scikit-learn's bundled 8x8 digits, for quick offline runs), ``'segdigits'``
(a segmentation set pasted from them, :mod:`~jaxdarts.data.segdigits`),
``'oxford_iiit_pet'`` (pet masks from a prepared tensorflow-datasets copy,
:mod:`~jaxdarts.data.pets`) and
``'npz:PATH'`` (a user's arrays). Labels may be per-pixel masks ``[N, H,
W]``: the augmentation crops and flips them with their images. A split lives in host memory as uint8 NHWC images and int32
labels; batches are ``{'image': float32 [B, H, W, C] normalised, 'label':
int32 [B]}``.

Search split: :func:`search_split` gives the first ``floor(train_portion * N)``
training examples (in stored order) to the network weights and the rest to
the architecture parameters, as the reference DARTS code does: disjoint, and
the same on every run.

Determinism and resume: a batch is a pure function of ``(seed, epoch, step)``.
The order within an epoch is a permutation seeded by ``(seed, epoch)``; the
augmentation of a batch is seeded by ``(seed, epoch, step)``. A stream's
``position`` is the :class:`Position` of the NEXT batch it will yield: save
``position.to_dict()`` in a checkpoint and pass ``start=Position.from_dict(d)``
to get exactly the batches the uninterrupted run would have seen (with the
same numpy version; numpy does not promise its random streams across
releases). Behind :func:`prefetch`, read ``position`` from the prefetcher: it
counts the batches the consumer has received, not the ones produced ahead.

Sharding: with ``shard_count > 1`` each process reads the contiguous block
``shard_index`` of every global batch; the shards concatenated in order are
the unsharded batch, augmentation included.

Modules: :mod:`~jaxdarts.data.dataset` (the `Dataset` type),
:mod:`~jaxdarts.data.sources` (digits, npz and :func:`load_dataset`),
:mod:`~jaxdarts.data.cifar` (tensorflow-datasets), :mod:`~jaxdarts.data.split`,
:mod:`~jaxdarts.data.augmentation`, :mod:`~jaxdarts.data.streams`,
:mod:`~jaxdarts.data.prefetcher` and :mod:`~jaxdarts.data.cli` (the command
line). Every public name is importable from ``jaxdarts.data``.
"""

from jaxdarts.data.augmentation import augment, normalize
from jaxdarts.data.cifar import TFDS_DATASETS, prepare_dataset
from jaxdarts.data.cli import main
from jaxdarts.data.dataset import (Dataset, DatasetNotFoundError,
                                   MissingDependencyError, channel_stats)
from jaxdarts.data.prefetcher import Prefetcher, prefetch
from jaxdarts.data.sources import (NPZ_MIN_CROP_SIZE, NPZ_PREFIX, SPLITS,
                                   VALID_NAMES, load_dataset)
from jaxdarts.data.split import search_split
from jaxdarts.data.streams import (Batch, Batches, Position, SearchBatches,
                                   eval_batches)
