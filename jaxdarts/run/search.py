"""An architecture search run: `run_search(config, workdir)`.

`run_search` loads the data, builds the supernet of the config's space, the
method and its `SearchState`, resumes from ``workdir/checkpoints`` when there
is a checkpoint, runs the bilevel steps epoch by epoch (`jaxdarts.run.loop`)
and writes into the workdir (`jaxdarts.run.workdir` has the format):
``config.json``; ``metrics.jsonl`` and TensorBoard events (every
``log_every_steps`` the step metrics averaged since the previous line and
``steps_per_second``; at each epoch end ``supernet_val_loss`` and
``supernet_val_accuracy``, the supernet on the alphas half with running BN
statistics); per epoch the genotype and the method's op weights; the final
genotype and its cell drawings; checkpoints every
``checkpoint_every_steps`` and at every epoch end. At every epoch end also
the search's health (`jaxdarts.run.health`): collapse signals, the
Hessian's dominant eigenvalue, and with ``config.search.early_stop.enabled``
DARTS-ES, which may end the search early with an earlier epoch's genotype.

Resume is exact: a run killed at any point and started again with the same
command ends with the same alphas, weights and genotype as an uninterrupted
run (on the same machine, with the same software versions). SIGTERM saves
a checkpoint and returns; a non-finite loss stops the run with
`FloatingPointError` without saving the bad state. Running the command again
on a finished workdir only reports the result.

Devices: the step runs on every local device (``config.num_devices``
limits them), on a mesh of the devices of every process when the run is
multi-process (`jaxdarts.core.parallel.initialize`); each process reads its
own rows of every global batch, only process 0 writes files, and every
process takes part in the checkpoints, which hold the global state and
restore on any number of devices. A global batch that does not split evenly
over the devices is refused before anything compiles.

Several seeds: ``config.search.seeds = N`` runs N independent searches,
seed i with the seed ``config.search.seed + i``, as one vmapped program
(`jaxdarts.run.seeds`); each seed's outputs go to ``workdir/seed_<i>/``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdarts import data as data_lib
from jaxdarts import methods
from jaxdarts import spaces
from jaxdarts import tasks
from jaxdarts.cost import search as budget_lib
from jaxdarts.core import parallel
from jaxdarts.core.state import (SearchState, create_search_state,
                                 default_arch_optimizer,
                                 default_weight_optimizer)
from jaxdarts.run import loop
from jaxdarts.run.evaluate import evaluate
from jaxdarts.run.health import SearchHealth
from jaxdarts.run.workdir import Workdir

logger = logging.getLogger('jaxdarts.run')


class SearchResult(NamedTuple):
  """What `run_search` returns.

  Attributes:
    state: the search state at the end (or where SIGTERM stopped it); with
      ``config.search.seeds > 1``, the stacked `jaxdarts.core.seeds.
      SeedStates`.
    genotype: the genotype derived from ``state.alphas``; with several
      seeds, the tuple of the seeds' genotypes.
    finished: whether every epoch ran (False after a SIGTERM).
  """
  state: SearchState
  genotype: Any
  finished: bool


class Halves(NamedTuple):
  """The two search halves of the training set."""
  weights_half: data_lib.Dataset
  alphas_half: data_lib.Dataset


def run_search(config: ml_collections.ConfigDict,
               workdir: str | os.PathLike[str]) -> SearchResult:
  """Runs (or resumes) an architecture search; see the module docstring.

  Args:
    config: a config of ``experiments/configs/search.py``.
    workdir: the run's directory; created if missing.

  Progress (steps/s, ETA, losses, the genotype at each epoch end) is logged
  at INFO level on the ``jaxdarts.run`` logger. The config's
  ``compilation_cache_dir`` turns on JAX's persistent compilation cache for
  the whole process, unless one is configured already.

  Returns:
    The final state, its genotype and whether the search finished.

  Raises:
    FloatingPointError: a loss (or the state) became NaN or infinite.
    jaxdarts.run.checkpoint.CheckpointMismatchError: (a ValueError) the
      workdir holds a checkpoint of a run with another model or data config.
  """
  mesh, workdir = loop.prepare(config, workdir, config.search.batch_size,
                               'config.search.batch_size')
  # Genotype files are read back (on resume) as the space's genotype type.
  workdir.genotype_type = getattr(_space(config), 'genotype_type',
                                  workdir.genotype_type)
  halves = load_halves(config)
  if config.search.get('seeds', 1) != 1:
    from jaxdarts.run import seeds  # pylint: disable=g-import-not-at-top
    return seeds.run_seeds(config, workdir, mesh, halves)
  job = SearchJob(config, halves, mesh, workdir)
  state, finished = loop.run_or_resume(
      job, config,
      functools.partial(initial_state, config, halves, job.num_steps,
                        workdir=workdir.path), mesh,
      model_config=model_config(config),
      model_config_defaults=MODEL_CONFIG_DEFAULTS)
  return SearchResult(state, job.final_genotype(state), finished)


def model_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config fields a checkpoint must agree with to be resumed.

  Those that change the state's shapes, the data stream's positions, the
  learning-rate schedule or what the alphas mean.
  """
  return {
      'data.name': config.data.name,
      'data.train_portion': config.data.train_portion,
      'model.space': config.model.space,
      'model.channels': config.model.channels,
      'model.layers': config.model.layers,
      'model.num_nodes': config.model.num_nodes,
      'model.primitives': list(config.model.primitives),
      'search.method': config.search.method,
      'search.batch_size': config.search.batch_size,
      'search.epochs': config.search.epochs,
      'search.seed': config.search.seed,
      'search.seeds': config.search.get('seeds', 1),
      'search.arch_warmup_epochs': config.search.get('arch_warmup_epochs', 0),
  }


# Fields added to `model_config` after checkpoints were written without
# them: such a checkpoint resumes if the config keeps the value it implied.
MODEL_CONFIG_DEFAULTS = {'model.space': 'darts_cnn', 'search.method': 'darts',
                         'search.seeds': 1, 'search.arch_warmup_epochs': 0}


def load_halves(config: ml_collections.ConfigDict) -> Halves:
  """The weights and alphas halves of the training split (no test data)."""
  train = data_lib.load_dataset(config.data.name, 'train',
                                data_dir=config.data.dir or None)
  return Halves(*data_lib.search_split(train, config.data.train_portion))


def search_batches(config: ml_collections.ConfigDict, halves: Halves,
                   start: data_lib.Position = data_lib.Position(), *,
                   seed: int | None = None) -> data_lib.SearchBatches:
  """This process's rows of the search's ``(train, val)`` batch pairs
  (with ``seed``, those of a run with ``config.search.seed = seed``)."""
  return data_lib.SearchBatches(
      halves.weights_half, halves.alphas_half, config.search.batch_size,
      seed=config.search.seed if seed is None else seed,
      augment=config.data.augment, start=start,
      shard_index=jax.process_index(), shard_count=jax.process_count())


def initial_state(config: ml_collections.ConfigDict, halves: Halves,
                  num_steps: int, *, rng: jax.Array | None = None,
                  workdir=None) -> SearchState:
  """A freshly initialised state (also the target a checkpoint restores to),
  from ``rng`` (default ``PRNGKey(config.search.seed)``).

  With a budget (``config.search.budget``), the method is wrapped by
  `jaxdarts.cost.search.wrap` (its latency table in ``workdir``).
  """
  space = _space(config)
  model = space.supernet(
      halves.weights_half.num_classes, channels=config.model.channels,
      layers=config.model.layers, scan_cells=config.model.scan_cells,
      remat_cells=config.model.remat_cells,
      compute_dtype=jnp.dtype(config.model.compute_dtype),
      depthwise=config.model.depthwise or None)
  warmup = config.search.get('arch_warmup_epochs', 0) * (
      num_steps // config.search.epochs)
  weight_tx, weight_lr, arch_tx = _optimizers(
      num_steps, _hashable(config.optimizer), warmup)
  method = methods.get(config.search.method, num_steps=num_steps,
                       **config.get('method', {}))
  method = budget_lib.wrap(config, method, space,
                           halves.weights_half.image_shape,
                           halves.weights_half.num_classes, workdir)
  images = np.zeros((config.search.batch_size,)
                    + halves.weights_half.image_shape, np.float32)
  return create_search_state(
      jax.random.PRNGKey(config.search.seed) if rng is None else rng, model,
      images, method=method,
      task=tasks.get(config.get('task', 'classification')),
      hypergradient=config.search.hypergradient, weight_tx=weight_tx,
      weight_lr=weight_lr, arch_tx=arch_tx)


def _space(config: ml_collections.ConfigDict):
  return spaces.get(config.model.space,
                    primitives=tuple(config.model.primitives),
                    num_nodes=config.model.num_nodes)


def _hashable(fields: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
  return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v)
                      for k, v in fields.items()))


@functools.lru_cache(maxsize=16)
def _optimizers(num_steps: int, fields: tuple[tuple[str, Any], ...],
                arch_warmup_steps: int = 0):
  """``(weight_tx, weight_lr, arch_tx)`` of the config's optimizer fields;
  the alphas stay fixed for ``arch_warmup_steps``.

  Memoised: the optimizers are static fields of the state, so equal
  objects let a second run in the same process reuse the compiled step.
  """
  opt = dict(fields)
  weight_tx, weight_lr = default_weight_optimizer(
      num_steps, learning_rate=opt['weight_lr'],
      min_learning_rate=opt['weight_min_lr'], momentum=opt['momentum'],
      weight_decay=opt['weight_decay'], grad_clip=opt['grad_clip'] or None)
  b1, b2 = opt['arch_betas']
  arch_tx = default_arch_optimizer(learning_rate=opt['arch_lr'], b1=b1, b2=b2,
                                   weight_decay=opt['arch_weight_decay'],
                                   warmup_steps=arch_warmup_steps)
  return weight_tx, weight_lr, arch_tx


class SearchJob:
  """The search's part of the loop (see `jaxdarts.run.loop.Job`)."""
  name = 'search'
  remedy = ('Lower the learning rate (config.optimizer.weight_lr, '
            'config.optimizer.arch_lr) or the gradient clip '
            '(config.optimizer.grad_clip), or check the data.')

  def __init__(self, config: ml_collections.ConfigDict, halves: Halves,
               mesh: jax.sharding.Mesh, workdir: Workdir):
    self.config, self.halves, self.mesh = config, halves, mesh
    self.workdir = workdir
    self.epochs = config.search.epochs
    self.steps_per_epoch = search_batches(config, halves).steps_per_epoch
    self.num_steps = self.epochs * self.steps_per_epoch
    self.previous = None  # The genotype of the epoch before.
    self.health = SearchHealth(config, halves.alphas_half, mesh, workdir)
    self.stop = self.health.stopped()  # Early-stop record of a past run.
    if self.stop is not None:  # DARTS-ES ended the search there.
      self.epochs = min(self.epochs, self.stop['epoch'] + 1)

  def start(self, state: SearchState, position: data_lib.Position) -> None:
    del state
    self.previous = self.workdir.epoch_genotype(position.epoch - 1)
    self.health.start(position.epoch)

  def final_genotype(self, state: SearchState):
    """The search's result: the stop epoch's genotype after DARTS-ES, else
    that of ``state``."""
    if self.stop is not None:
      return self.health.stop_genotype(self.stop['stop_epoch'])
    return state.genotype()

  def already_finished(self, state: SearchState) -> None:
    logger.info('The search in %s already finished (step %d); its genotype '
                'is in %s', self.workdir.path, int(state.step),
                self.workdir / 'genotype.txt')

  def batches(self, position: data_lib.Position):
    return data_lib.prefetch(
        search_batches(self.config, self.halves, position),
        transform=functools.partial(parallel.mesh_shard, mesh=self.mesh))

  def step(self, state: SearchState, batch, step: int):
    del step
    return parallel.mesh_search_step(state, *batch, mesh=self.mesh)

  def progress(self, means: dict[str, float]) -> str:
    return ' | '.join(
        f'{split} loss {means[f"{split}_loss"]:.4f}'
        + (f' acc {means[acc]:.3f}' if (acc := f'{split}_accuracy') in means
           else '') for split in ('train', 'val'))

  def end_epoch(self, state: SearchState, epoch: int, record) -> None:
    """Evaluates the supernet and writes the epoch's outputs."""
    results = evaluate(state, self.halves.alphas_half,
                       self.config.search.batch_size, self.mesh)
    genotype = state.genotype()
    strengths = state.method.strengths(jax.device_get(state.alphas))
    health, decision = self.health.end_epoch(state, epoch, genotype, strengths)
    costs = budget_lib.epoch_costs(state)  # {} without a budget.
    record({**{f'supernet_val_{k}': v for k, v in results.items()}, **health,
            **costs})
    if decision is not None:
      self.stop = {'epoch': epoch, 'stop_epoch': decision.stop_epoch,
                   'ratio': decision.ratio,
                   'rule': dict(self.config.search.early_stop)}
      self.epochs = epoch + 1  # The loop ends after this epoch.
    if epoch + 1 == self.epochs and isinstance(state.task,
                                               tasks.Segmentation):
      from jaxdarts.viz import segmentation  # pylint: disable=g-import-not-at-top
      samples = segmentation.samples(state, self.halves.alphas_half)
      if loop.is_writer():
        segmentation.save_samples(self.workdir / segmentation.SAMPLES_FILE,
                                  samples)
    if loop.is_writer():
      # On the host: only process 0 gets here, so nothing may run on the mesh.
      self.workdir.write_epoch(epoch, genotype, strengths,
                               state.model.space.primitives)
      if decision is not None:
        self.workdir.write_early_stop(self.stop)
      if epoch + 1 == self.epochs:
        final = self.final_genotype(state)
        self.workdir.write_genotype(final)
        _draw(final, self.workdir / 'cells')
    previous, self.previous = self.previous, genotype
    change = ('unchanged' if genotype.same_architecture(previous) else
              f'{"derived" if previous is None else "changed"}: {genotype}')
    logger.info('epoch %d/%d done: supernet val %s; genotype %s', epoch + 1,
                self.epochs, ', '.join(f'{k} {v:.4f}'
                                       for k, v in results.items()), change)
    if costs:
      logger.info('cost: %s', ', '.join(f'{k} {v:.6g}'
                                         for k, v in sorted(costs.items())))


def _draw(genotype, directory) -> None:
  """The cell drawings, if matplotlib is installed (DARTS CNN cells only)."""
  from jaxdarts.spaces.darts_cnn.genotype import Genotype  # pylint: disable=g-import-not-at-top
  from jaxdarts.viz import cells  # pylint: disable=g-import-not-at-top
  if not isinstance(genotype, Genotype):
    return  # Other spaces have no drawing yet; genotype.txt says it all.
  with contextlib.suppress(ImportError):
    cells.draw_genotype(genotype, directory)
    return
  logger.warning('Not drawing the cells: pip install matplotlib')
