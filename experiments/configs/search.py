"""Configs of an architecture search (`jaxdarts.run.search.run_search`).

Select a preset with ``--config=experiments/configs/search.py:NAME`` and
override any field with ``--config.FIELD=VALUE``, e.g.
``--config.search.epochs=10``. Presets (see their functions below):

* ``first_order``: the paper's CIFAR-10 search, DARTS (first order).
* ``second_order``: the paper's CIFAR-10 search, DARTS (second order).
* ``digits``: a small search on scikit-learn's 8x8 digits, offline, a few
  minutes on a CPU.
* ``tiny``: a smoke test (and the tests' config).
* ``digits_budget``: ``digits`` under a multiply-add budget.

Wall times on the development CPU are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import ml_collections

from jaxdarts.cost import search as budget_lib
from jaxdarts.spaces.darts_cnn.space import DARTS_PRIMITIVES

# A reduced candidate set for the small presets, to keep their compile
# short: 'none', a pooling, the identity and a convolution.
SMALL_PRIMITIVES = ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3')


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every preset: the paper's CIFAR-10 search."""
  config = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = 'cifar10'  # 'cifar10' | 'cifar100' | 'digits' | 'npz:PATH'
  config.data.dir = ''  # tensorflow-datasets root; '' = $TFDS_DATA_DIR or ~.
  config.data.train_portion = 0.5  # Weights half; the rest trains the alphas.
  config.data.augment = True

  config.model = ml_collections.ConfigDict()
  config.model.space = 'darts_cnn'  # jaxdarts.spaces
  config.model.channels = 16
  config.model.layers = 8
  config.model.num_nodes = 4
  config.model.primitives = DARTS_PRIMITIVES
  # Performance knobs; none changes the mathematics (jaxdarts.SearchNetwork).
  config.model.scan_cells = True  # Compile one normal cell per stage.
  config.model.remat_cells = False  # Recompute cells in backward: less memory.
  config.model.compute_dtype = 'float32'  # | 'bfloat16' (mixed precision)
  config.model.depthwise = ''  # '' = per backend | 'shift' | 'conv'

  config.search = ml_collections.ConfigDict()
  config.search.method = 'darts'  # jaxdarts.methods; options in config.method
  # 'first_order' | 'finite_difference' | 'exact' | 'unrolled'.
  config.search.hypergradient = 'first_order'
  config.search.epochs = 50
  config.search.batch_size = 64
  config.search.seed = 0
  # Searching under a computational budget (jaxdarts.cost.search).
  config.search.budget = budget_lib.default_config()

  # The method's options (fields of its class), e.g. a temperature range.
  config.method = ml_collections.ConfigDict()
  config.task = 'classification'  # jaxdarts.tasks

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.weight_lr = 0.025  # Cosine-annealed to weight_min_lr.
  config.optimizer.weight_min_lr = 0.001
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 3e-4
  config.optimizer.grad_clip = 5.0  # Global norm; 0 disables clipping.
  config.optimizer.arch_lr = 3e-4
  config.optimizer.arch_betas = (0.5, 0.999)
  config.optimizer.arch_weight_decay = 1e-3

  # Local devices to use (per process); None: all of them. The global batch
  # must split evenly over the devices of every process.
  config.num_devices = ml_collections.config_dict.placeholder(int)
  config.checkpoint_every_steps = 500  # Also at every epoch end.
  config.keep_checkpoints = 3
  config.log_every_steps = 50
  # Persistent XLA compilation cache, so a resumed or repeated run skips the
  # compile; '' disables it.
  config.compilation_cache_dir = '~/.cache/jaxdarts/jax'
  return config


def first_order() -> ml_collections.ConfigDict:
  """The paper's CIFAR-10 search with the first-order approximation.

  50 epochs, batch 64, 8 cells of C=16 with 4 nodes and the 8 DARTS ops,
  on 25k/25k halves of the training set (which must be prepared with
  ``python -m jaxdarts.data prepare cifar10``)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:first_order --workdir=DIR

  The paper reports 1.5 GPU-days for first order on a 1080Ti and a retrained
  test error of 3.00 +- 0.14 % for the derived cell. A preset for a GPU:
  on a CPU its 19,500 steps of batch 64 take weeks (``benchmarks/RESULTS.md``;
  ``benchmarks/gpu.sh`` projects its wall time on a GPU).
  """
  return base_config()


def second_order() -> ml_collections.ConfigDict:
  """The paper's CIFAR-10 search with the exact second-order hypergradient.

  As ``first_order`` but the alpha gradient differentiates through one
  virtual weight step (``search.hypergradient='exact'``)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:second_order --workdir=DIR

  The paper reports 4 GPU-days on a 1080Ti and 2.76 +- 0.09 % retrained test
  error. Not run here (see ``first_order``: a GPU preset).
  """
  config = base_config()
  config.search.hypergradient = 'exact'
  return config


def digits() -> ml_collections.ConfigDict:
  """A small first-order search on scikit-learn's 8x8 digits, offline.

  3 cells of C=8 with 3 nodes and 4 ops (`SMALL_PRIMITIVES`), batch 32,
  10 epochs of 22 steps (the 1437 training digits split 718 / 719)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:digits --workdir=/tmp/digits

  Expect a final supernet accuracy on the alphas half of about 0.97 (loss
  about 0.08) and the same genotype on every run on one machine.
  """
  config = base_config()
  config.data.name = 'digits'
  config.model.channels = 8
  config.model.layers = 3
  config.model.num_nodes = 3
  config.model.primitives = SMALL_PRIMITIVES
  config.search.epochs = 10
  config.search.batch_size = 32
  # 220 steps instead of the paper's ~20k: a 10x alpha learning rate lets
  # the alphas move far enough to mean something.
  config.optimizer.arch_lr = 3e-3
  config.checkpoint_every_steps = 50
  config.log_every_steps = 10
  return config


def tiny() -> ml_collections.ConfigDict:
  """A smoke test of the whole loop on digits (also the tests' config).

  As ``digits`` with 3 cells of C=4 and 2 nodes, batch 64, 3 epochs of 11
  steps, a checkpoint every 5 steps::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:tiny --workdir=/tmp/tiny

  The supernet barely learns in 33 steps (accuracy about 0.2); it only
  checks that everything runs.
  """
  config = digits()
  config.model.channels = 4
  config.model.num_nodes = 2
  config.search.epochs = 3
  config.search.batch_size = 64
  config.checkpoint_every_steps = 5
  config.log_every_steps = 4
  return config


def digits_budget() -> ml_collections.ConfigDict:
  """The ``digits`` search under a multiply-add budget (`jaxdarts.cost`).

  The budget is for the network the ``digits`` retraining preset builds
  (5 cells of C=8, one 8x8 digit): ProxylessNAS's ``mul#log`` penalty
  towards 300k multiply-adds and a hard limit of 300k on the derived
  genotype (the space's networks cost 175k to 558k multiply-adds,
  ``benchmarks/RESULTS.md``)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:digits_budget \\
      --workdir=/tmp/digits_budget --config.search.budget.limit=250e3

  Set ``search.budget.metric='ms'`` (and ``target``/``limit`` in ms per
  batch of 32) to search under measured latency; the lookup table is
  ``WORKDIR/latency_table.json`` or ``search.budget.latency_table``.
  """
  config = digits()
  budget = config.search.budget
  budget.metric = 'macs'
  budget.penalty = 'mul#log'
  budget.target = 300e3
  budget.limit = 300e3
  budget.channels = 8
  budget.layers = 5
  return config


_PRESETS = {'first_order': first_order, 'second_order': second_order,
            'digits': digits, 'tiny': tiny}
_PRESETS['digits_budget'] = digits_budget
PRESETS = tuple(_PRESETS)


def get_config(preset: str = 'digits') -> ml_collections.ConfigDict:
  """The config of ``preset``, one of `PRESETS`."""
  if preset not in _PRESETS:
    raise ValueError(f'unknown search preset {preset!r}; choose one of '
                     f'{", ".join(PRESETS)}')
  return _PRESETS[preset]()
