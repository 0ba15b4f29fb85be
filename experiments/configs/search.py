"""Configs of an architecture search (`jaxdarts.run.search.run_search`).

Select a preset with ``--config=experiments/configs/search.py:NAME`` and
override any field with ``--config.FIELD=VALUE``, e.g.
``--config.search.epochs=10``. Presets (see their functions below):

* ``first_order``: the paper's CIFAR-10 search, DARTS (first order).
* ``second_order``: the paper's CIFAR-10 search, DARTS (second order).
* ``digits``: a small search on scikit-learn's 8x8 digits, offline, a few
  minutes on a CPU.
* ``tiny``: a smoke test (and the tests' config).
* ``pc_darts``, ``gdas``, ``darts_minus``: those methods' CIFAR-10
  searches, with their papers' hyperparameters.
* ``digits_budget``: ``digits`` under a multiply-add budget.
* ``nb201_digits``: a search in the NAS-Bench-201-style space on
  ``digits_canvas``, scored against the stored table.

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
  # Search health (jaxdarts.run.health): the dominant eigenvalue of the
  # alphas' Hessian on one fixed validation batch every `eigenvalue_every`
  # epochs (0: never), by `eigenvalue_iterations` Lanczos steps (each one
  # Hessian-vector product).
  config.search.eigenvalue_every = 1
  config.search.eigenvalue_iterations = 20
  # DARTS-ES (Zela et al., ICLR 2020): the eigenvalue every `every` epochs,
  # local averages over `window` evaluations; stop once the newest is more
  # than `factor` times the one `delta` averages earlier, keeping the
  # genotype of that earlier average's epoch if it is >= `start_epoch`.
  config.search.early_stop = ml_collections.ConfigDict(dict(
      enabled=False, every=2, window=5, delta=4, factor=1.3, start_epoch=10))
  # Independent searches run together as one vmapped program; seed i uses
  # the seed `seed + i` and writes workdir/seed_<i>/ (jaxdarts.run.seeds).
  config.search.seeds = 1
  # Epochs at the start during which the alphas stay fixed (PC-DARTS: 15).
  config.search.arch_warmup_epochs = 0
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
  config.search.eigenvalue_every = 0  # Keeps the tests' compiles short.
  return config


def pc_darts() -> ml_collections.ConfigDict:
  """PC-DARTS's CIFAR-10 search (Xu et al., ICLR 2020; the official
  ``train_search.py`` of github.com/yuhuixu1993/PC-DARTS).

  Partial channels with K = 4 and edge normalisation
  (`jaxdarts.methods.pc_darts`); batch 256, SGD learning rate 0.1
  cosine-annealed to 1e-3, momentum 0.9, weight decay 3e-4; Adam 6e-4,
  betas (0.5, 0.999), weight decay 1e-3 on the alphas and betas; 50
  epochs, the architecture frozen for the first 15::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:pc_darts --workdir=DIR

  The paper reports 0.1 GPU-days and 2.57 +- 0.07 % retrained test error.
  Add ``--config.data.name=digits`` for a run on the embedded digits.
  """
  config = base_config()
  config.search.method = 'pc_darts'
  config.method.k = 4
  config.search.batch_size = 256
  config.search.epochs = 50
  config.search.arch_warmup_epochs = 15
  config.optimizer.weight_lr = 0.1
  config.optimizer.weight_min_lr = 1e-3
  config.optimizer.arch_lr = 6e-4
  config.optimizer.arch_betas = (0.5, 0.999)
  config.optimizer.arch_weight_decay = 1e-3
  return config


def gdas() -> ml_collections.ConfigDict:
  """GDAS's CIFAR-10 search in the DARTS space (Dong and Yang, CVPR 2019;
  github.com/D-X-Y/AutoDL-Projects, ``configs/search-opts/
  GDAS-NASNet-CIFAR.config`` and its search script's flags).

  One Gumbel-sampled op per edge (`jaxdarts.methods.gdas`), the
  temperature linear from 10 to 0.1; batch 256, SGD learning rate 0.025
  cosine-annealed to 1e-3, momentum 0.9, weight decay 5e-4 (the official
  config also uses Nesterov momentum, which this optimizer does not), 250
  epochs; Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3 on the alphas;
  first-order hypergradients only::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:gdas --workdir=DIR

  The paper reports 0.21 GPU-days and 2.93 % retrained test error.
  """
  config = base_config()
  config.search.method = 'gdas'
  config.method.tau_max = 10.0
  config.method.tau_min = 0.1
  config.search.batch_size = 256
  config.search.epochs = 250
  config.optimizer.weight_lr = 0.025
  config.optimizer.weight_min_lr = 1e-3
  config.optimizer.weight_decay = 5e-4
  config.optimizer.arch_lr = 3e-4
  config.optimizer.arch_betas = (0.5, 0.999)
  config.optimizer.arch_weight_decay = 1e-3
  return config


def darts_minus() -> ml_collections.ConfigDict:
  """DARTS-'s CIFAR-10 search (Chu et al., ICLR 2021; the official
  ``scripts/run_darts_minus.sh`` of github.com/Meituan-AutoML/DARTS-).

  DARTS's first-order search (`first_order`: 50 epochs, batch 64, ...)
  with an auxiliary skip connection on every edge whose weight decays
  linearly from 1 to 0 (`jaxdarts.methods.darts_minus`)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:darts_minus --workdir=DIR

  The paper reports 2.59 +- 0.08 % retrained test error (0.4 GPU-days).
  """
  config = base_config()
  config.search.method = 'darts_minus'
  config.method.beta_0 = 1.0
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


def segmentation_digits() -> ml_collections.ConfigDict:
  """A small cell search for semantic segmentation, offline.

  The ``darts_seg`` space (`jaxdarts.spaces.darts_seg`: DARTS search cells
  after a stride-2 stem, down to output stride 8, and a light decoder) on
  ``segdigits`` (32x32 canvases of two 16x16 sklearn digits, 11 classes
  with the background; `jaxdarts.data.segdigits`) with the ``segmentation``
  task (per-pixel cross-entropy, pixel accuracy, mIoU). 3 cells of C=8 with
  3 nodes and 4 ops (`SMALL_PRIMITIVES`), batch 32, 8 epochs of 24 steps
  (1536 canvases split 768 / 768)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:segmentation_digits \\
      --workdir=/tmp/segdigits

  Retrain its genotype with the ``segmentation_digits`` train preset.
  """
  config = digits()
  config.data.name = 'segdigits'
  config.model.space = 'darts_seg'
  config.task = 'segmentation'
  config.search.epochs = 8
  config.checkpoint_every_steps = 48
  config.log_every_steps = 12
  return config


def nb201_digits() -> ml_collections.ConfigDict:
  """A first-order search in the NAS-Bench-201-style space, scored offline.

  The ``nb201`` space restricted to the ops of the stored table
  (``none``, ``skip_connect``, ``nor_conv_3x3`` on 6 edges: 729 cells),
  C=8, 3 cells (one per stage), on ``digits_canvas`` (digits at random
  places on a noisy 16x16 canvas), batch 64, 10 epochs of 11 steps::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:nb201_digits --workdir=DIR

  Score the derived cell (and other methods, several seeds) against the
  table of ``benchmarks/minibench.py`` with ``experiments/score.py``.
  """
  config = digits()
  config.data.name = 'digits_canvas'
  config.data.augment = False
  config.model.space = 'nb201'
  config.model.primitives = ('none', 'skip_connect', 'nor_conv_3x3')
  config.model.num_nodes = 4
  config.model.channels = 8
  config.model.layers = 3
  config.search.epochs = 10
  config.search.batch_size = 64
  return config


_PRESETS = {'first_order': first_order, 'second_order': second_order,
            'digits': digits, 'tiny': tiny}
_PRESETS.update(pc_darts=pc_darts, gdas=gdas, darts_minus=darts_minus)
_PRESETS['digits_budget'] = digits_budget
_PRESETS['segmentation_digits'] = segmentation_digits
_PRESETS['nb201_digits'] = nb201_digits
PRESETS = tuple(_PRESETS)


def get_config(preset: str = 'digits') -> ml_collections.ConfigDict:
  """The config of ``preset``, one of `PRESETS`."""
  if preset not in _PRESETS:
    raise ValueError(f'unknown search preset {preset!r}; choose one of '
                     f'{", ".join(PRESETS)}')
  return _PRESETS[preset]()


# Presets of the methods that fixed DARTS (jaxdarts.methods), each with the
# CIFAR-10 hyperparameters of its paper's official code; each also runs on
# the embedded digits with --config.data.name=digits.


def fair_darts() -> ml_collections.ConfigDict:
  """FairDARTS (Chu et al., ECCV 2020) on CIFAR-10, its official settings.

  Sigmoid mixing, zero-one loss weight 10, threshold 0.85; the 7 DARTS ops
  without 'none'; batch 128, weight lr 0.005 cosine to 0.001, alpha Adam
  3e-3 with betas (0.9, 0.999) and decay 1e-3, 50 epochs
  (github.com/xiaomi-automl/FairDARTS, ``fairdarts/train_search.py``)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:fair_darts --workdir=DIR
  """
  config = base_config()
  config.model.primitives = tuple(p for p in DARTS_PRIMITIVES if p != 'none')
  config.search.method = 'fair_darts'
  config.method.zero_one_weight = 10.0
  config.method.threshold = 0.85
  config.search.batch_size = 128
  config.optimizer.weight_lr = 0.005
  config.optimizer.weight_min_lr = 0.001
  config.optimizer.arch_lr = 3e-3
  config.optimizer.arch_betas = (0.9, 0.999)
  return config


def beta_darts() -> ml_collections.ConfigDict:
  """beta-DARTS (Ye et al., CVPR 2022) on CIFAR-10.

  DARTS's first-order settings plus the Beta-Decay term, lambda growing
  linearly 0 -> 25 over the 50 epochs (the official ``50 * epoch / 100``;
  github.com/Sunshine-Ye/Beta-DARTS)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:beta_darts --workdir=DIR
  """
  config = base_config()
  config.search.method = 'beta_darts'
  config.method.lambda_end = 25.0
  return config


def sdarts_rs() -> ml_collections.ConfigDict:
  """SDARTS-RS (Chen and Hsieh, ICML 2020) on CIFAR-10.

  DARTS's first-order settings; the weight step's mixing weights get
  uniform noise of radius eps, 0.03 -> 0.3 linearly
  (github.com/xiangning-chen/SmoothDARTS, ``sota/cnn/train_search.py``)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:sdarts_rs --workdir=DIR
  """
  config = base_config()
  config.search.method = 'sdarts_rs'
  config.method.epsilon_start = 0.03
  config.method.epsilon_end = 0.3
  return config


def sdarts_adv() -> ml_collections.ConfigDict:
  """SDARTS-ADV on CIFAR-10: as ``sdarts_rs`` with a 7-step PGD attack on
  the training loss instead of random noise (8 forward-backward passes per
  weight step)::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:sdarts_adv --workdir=DIR
  """
  config = sdarts_rs()
  config.search.method = 'sdarts_adv'
  config.method.attack_steps = 7
  return config


def drnas() -> ml_collections.ConfigDict:
  """DrNAS (Chen et al., ICLR 2021) on CIFAR-10, its official settings.

  Dirichlet(elu(alpha) + 1) mixing weights; the official DARTS-space search
  network (20 cells of C=36), batch 64, weight lr 0.1 cosine to 0, alpha
  Adam 6e-4 with betas (0.5, 0.999) and the L2 regulariser 1e-3 (its
  weight decay), 50 epochs (github.com/xiangning-chen/DrNAS,
  ``DARTS-space/train_search.py``). The official partial channels and
  op pruning are not part of this method, so a step here costs several
  times the official one::

    python experiments/cifar_search.py \\
      --config=experiments/configs/search.py:drnas --workdir=DIR
  """
  config = base_config()
  config.search.method = 'drnas'
  config.method.kl_weight = 0.0
  config.model.channels = 36
  config.model.layers = 20
  config.optimizer.weight_lr = 0.1
  config.optimizer.weight_min_lr = 0.0
  config.optimizer.arch_lr = 6e-4
  config.optimizer.arch_weight_decay = 1e-3
  return config


_PRESETS.update(fair_darts=fair_darts, beta_darts=beta_darts,
                sdarts_rs=sdarts_rs, sdarts_adv=sdarts_adv, drnas=drnas)
PRESETS = tuple(_PRESETS)
