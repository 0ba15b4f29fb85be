"""Configs of a retraining run (`jaxdarts.run.retrain.run_train`).

Select a preset with ``--config=experiments/configs/train.py:NAME`` and
override any field with ``--config.FIELD=VALUE``, e.g.
``--config.train.epochs=10``; ``--genotype`` of
``experiments/cifar_train.py`` sets ``config.genotype``. Presets:

* ``cifar10``: the paper's CIFAR-10 evaluation of a cell (DARTS_V2).
* ``digits``: a small network on scikit-learn's 8x8 digits, offline, a
  few minutes on a CPU; retrains the genotype of a ``digits`` search.
* ``tiny``: a smoke test (and the tests' config), seconds after compiling.

``config.genotype`` is a genotype text ``Genotype(normal=..., ...)`` (or
its JSON), a published name (`jaxdarts.genotypes`) or a path to a genotype
file (the ``genotype.json`` a search writes, or the search's workdir); see
`jaxdarts.genotypes.resolve`.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every preset: the paper's CIFAR-10 evaluation."""
  config = ml_collections.ConfigDict()
  config.genotype = 'DARTS_V2'

  config.data = ml_collections.ConfigDict()
  config.data.name = 'cifar10'  # 'cifar10' | 'cifar100' | 'digits' | 'npz:PATH'
  config.data.dir = ''  # tensorflow-datasets root; '' = $TFDS_DATA_DIR or ~.
  config.data.augment = True  # The dataset's crop and flip, and cutout.
  config.data.cutout = 16  # Cutout square side; 0 disables it.

  config.model = ml_collections.ConfigDict()
  config.model.channels = 36
  config.model.layers = 20
  config.model.auxiliary = True

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 600
  config.train.batch_size = 96
  config.train.eval_batch_size = 500
  config.train.seed = 0
  config.train.drop_path_prob = 0.2  # Ramped linearly from 0.
  config.train.auxiliary_weight = 0.4

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 0.025  # Cosine-annealed to 0.
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 3e-4
  config.optimizer.grad_clip = 5.0  # Global norm; 0 disables clipping.

  # Local devices to use (per process); None: all of them. The global batch
  # must split evenly over the devices of every process.
  config.num_devices = ml_collections.config_dict.placeholder(int)
  config.checkpoint_every_steps = 1000  # Also at every epoch end.
  config.keep_checkpoints = 3
  config.log_every_steps = 100
  # Persistent XLA compilation cache; '' disables it.
  config.compilation_cache_dir = '~/.cache/jaxdarts/jax'
  return config


def cifar10() -> ml_collections.ConfigDict:
  """The paper's CIFAR-10 evaluation (Section 3.3 / the reference train.py).

  20 cells of C=36 with the auxiliary head (weight 0.4), 600 epochs of batch
  96, SGD with momentum 0.9, weight decay 3e-4, learning rate 0.025
  cosine-annealed to 0, gradient clip 5, cutout 16, drop path ramped to 0.2;
  CIFAR-10 must be prepared with ``python -m jaxdarts.data prepare
  cifar10``::

    python experiments/cifar_train.py \\
      --config=experiments/configs/train.py:cifar10 --workdir=DIR \\
      [--genotype=SEARCH_DIR/genotype.json]

  The paper reports a test error of 2.76 +- 0.09 % for DARTS_V2 (1.5 days
  on one GPU); not run to completion here (CPU only).
  """
  return base_config()


def digits() -> ml_collections.ConfigDict:
  """A small retraining on scikit-learn's 8x8 digits, offline.

  5 cells of C=8 without the auxiliary head (its 5x5 pooling needs maps of
  at least 8x8 at 2/3 of the depth; the digits are 8x8 before the first
  reduction), batch 32, 10 epochs of 44 steps (1437 training digits),
  cutout 4, drop path ramped to 0.1, learning rate 0.05. Train the genotype
  a ``digits`` search found (only its ops compile, so it is the fastest) or
  any published one::

    python experiments/cifar_train.py \\
      --config=experiments/configs/train.py:digits \\
      --workdir=/tmp/digits_train \\
      --genotype=/tmp/digits/genotype.json

  Expect a test accuracy of about 0.96 on the 360 test digits for the
  genotype of the ``digits`` search preset and about 0.98 for
  ``--genotype=DARTS_V2``; augmented training batches about 0.73 (cutout 4
  hides a quarter of an 8x8 digit). Wall times: ``benchmarks/RESULTS.md``.
  """
  config = base_config()
  config.data.name = 'digits'
  config.data.cutout = 4
  config.model.channels = 8
  config.model.layers = 5
  config.model.auxiliary = False
  config.train.epochs = 10
  config.train.batch_size = 32
  config.train.eval_batch_size = 120
  config.train.drop_path_prob = 0.1
  config.optimizer.learning_rate = 0.05
  config.checkpoint_every_steps = 100
  config.log_every_steps = 22
  return config


def tiny() -> ml_collections.ConfigDict:
  """A smoke test of the whole loop on digits (also the tests' config).

  As ``digits`` with 3 cells of C=4, batch 64, 1 epoch of 22 steps::

    python experiments/cifar_train.py \\
      --config=experiments/configs/train.py:tiny --workdir=/tmp/tiny_train \\
      --genotype=/tmp/tiny/genotype.json

  It only checks that everything runs.
  """
  config = digits()
  config.model.channels = 4
  config.model.layers = 3
  config.train.epochs = 1
  config.train.batch_size = 64
  config.checkpoint_every_steps = 10
  config.log_every_steps = 5
  return config


def segmentation_digits() -> ml_collections.ConfigDict:
  """Retrains a genotype as a segmentation network on ``segdigits``.

  `jaxdarts.spaces.darts_seg.network.SegNetwork` (a stride-2 stem, the
  genotype's cells down to output stride 8, a light decoder; no auxiliary
  head) of 5 cells of C=8, batch 32, 8 epochs of 48 steps, random crops
  (padding 4, labelled ignore), no cutout, drop path ramped to 0.1; the
  test split's loss, pixel accuracy and mIoU land in
  ``final_metrics.json``::

    python experiments/cifar_train.py \\
      --config=experiments/configs/train.py:segmentation_digits \\
      --workdir=/tmp/segdigits_train --genotype=/tmp/segdigits/genotype.json
  """
  config = digits()
  config.data.name = 'segdigits'
  config.data.cutout = 0
  config.model.space = 'darts_seg'
  config.task = 'segmentation'
  config.train.epochs = 8
  config.train.eval_batch_size = 128
  config.log_every_steps = 24
  return config


_PRESETS = {'cifar10': cifar10, 'digits': digits, 'tiny': tiny}
_PRESETS['segmentation_digits'] = segmentation_digits
PRESETS = tuple(_PRESETS)


def get_config(preset: str = 'digits') -> ml_collections.ConfigDict:
  """The config of ``preset``, one of `PRESETS`."""
  if preset not in _PRESETS:
    raise ValueError(f'unknown train preset {preset!r}; choose one of '
                     f'{", ".join(PRESETS)}')
  return _PRESETS[preset]()
