"""The impure loop around the search step: `run_search(config, workdir)`.

`run_search` loads the data, builds the supernet and its `SearchState`,
resumes from ``workdir/checkpoints`` when there is a checkpoint, runs the
bilevel steps epoch by epoch and writes what a user looks at. Everything it
writes lives in ``workdir``:

* ``config.json``: the run's config;
* ``metrics.jsonl``: every ``log_every_steps`` (and at each epoch end) one
  JSON line with ``step``, ``epoch`` (0-based), the step metrics averaged
  since the previous line and ``steps_per_second`` (compiles excluded); at
  each epoch end one more line with ``supernet_val_loss`` and
  ``supernet_val_accuracy`` (the supernet on the alphas half, running BN
  statistics);
* ``tensorboard/``: the same numbers as TensorBoard events;
* ``genotypes/epoch_NNN.json`` and ``.txt``: the genotype derived at the end
  of epoch NNN (0-based);
* ``alphas/epoch_NNN.npz``: the softmax of the alphas then (``normal``,
  ``reduce``: ``[edges, ops]``; ``primitives``: the op names);
* ``genotype.json``, ``genotype.txt`` and ``cells/``: the final genotype and
  its cell drawings (`jaxdarts.viz.cells.draw_genotype`);
* ``checkpoints/``: the state and the data position, every
  ``checkpoint_every_steps`` and at every epoch end (see
  `jaxdarts.run.checkpoint`).

Resume is exact: a run killed at any point and started again with the same
command ends with the same alphas, weights and genotype as an uninterrupted
run (on the same machine, with the same software versions). SIGTERM saves a checkpoint and returns; a non-finite loss stops the run
with `FloatingPointError` without saving the bad state. Running the command
again on a finished workdir only reports the result.

Devices: the step runs on every local device (``config.num_devices``
limits them), on a mesh of the devices of every process when the run is
multi-process (`jaxdarts.core.parallel.initialize`); each process reads its own
rows of every global batch, only process 0 writes files, and every process
takes part in the checkpoints, which hold the global state and restore on
any number of devices. A global batch that does not split evenly over the
devices is refused before anything compiles.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdarts import data as data_lib
from jaxdarts.core import parallel
from jaxdarts.viz import cells as visualize
from jaxdarts.run.checkpoint import Checkpointer, PreemptionGuard
from jaxdarts.genotype import Genotype
from jaxdarts.core.search import (SearchState, create_search_state,
                             default_arch_optimizer, default_weight_optimizer,
                             eval_step, run_once)
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES, SearchSpace
from jaxdarts.spaces.darts_cnn.supernet import SearchNetwork

Metrics = dict[str, Any]

logger = logging.getLogger(__name__)


class SearchResult(NamedTuple):
  """What `run_search` returns.

  Attributes:
    state: the search state at the end (or where SIGTERM stopped it).
    genotype: the genotype derived from ``state.alphas``.
    finished: whether every epoch ran (False after a SIGTERM).
  """
  state: SearchState
  genotype: Genotype
  finished: bool


class _Data(NamedTuple):
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
  at INFO level on the ``jaxdarts.run.search`` logger. The config's
  ``compilation_cache_dir`` turns on JAX's persistent compilation cache for
  the whole process, unless one is configured already.

  Returns:
    The final state, its genotype and whether the search finished.

  Raises:
    FloatingPointError: a loss (or the state) became NaN or infinite.
    jaxdarts.run.checkpoint.CheckpointMismatchError: (a ValueError) the workdir
      holds a checkpoint of a run with another model or data config.
  """
  _check_intervals(config)
  mesh = _mesh(config, config.search.batch_size, 'config.search.batch_size')
  workdir = Path(workdir).expanduser()
  _enable_compilation_cache(config.compilation_cache_dir)
  halves = _load_halves(config)
  steps_per_epoch = _batches(config, halves).steps_per_epoch
  num_steps = config.search.epochs * steps_per_epoch
  initial = functools.partial(_initial_state, config, halves, num_steps)
  with Checkpointer(workdir / 'checkpoints', keep=config.keep_checkpoints,
                    model_config=_model_config(config)) as ckpt:
    state, position = _restore(ckpt, initial, mesh)
    if position.epoch >= config.search.epochs:
      logger.info('The search in %s already finished (step %d); its genotype '
                  'is in %s', workdir, int(state.step),
                  workdir / 'genotype.txt')
      return SearchResult(state, state.genotype(), True)
    if _is_writer():
      workdir.mkdir(parents=True, exist_ok=True)
      (workdir / 'config.json').write_text(config.to_json(indent=2) + '\n')
      _trim_metrics(workdir / 'metrics.jsonl', int(state.step))
    with _SearchLoop(config, workdir, ckpt, halves, steps_per_epoch,
                     mesh) as loop:
      state, finished = loop.run(state, position)
  return SearchResult(state, state.genotype(), finished)


def _model_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config fields a checkpoint must agree with to be resumed.

  Those that change the state's shapes, the data stream's positions or the
  learning-rate schedule.
  """
  return {
      'data.name': config.data.name,
      'data.train_portion': config.data.train_portion,
      'model.channels': config.model.channels,
      'model.layers': config.model.layers,
      'model.num_nodes': config.model.num_nodes,
      'model.primitives': list(config.model.primitives),
      'search.batch_size': config.search.batch_size,
      'search.epochs': config.search.epochs,
      'search.seed': config.search.seed,
  }


# ---------------------------------------------------------------------------
# Set-up.


def _is_writer() -> bool:
  """Whether this process writes files (process 0 of a multi-host run)."""
  return jax.process_index() == 0


def _mesh(config: ml_collections.ConfigDict, batch_size: int,
          name: str) -> jax.sharding.Mesh:
  """The devices of the run; refuses a batch they do not split evenly."""
  mesh = parallel.make_mesh(config.get('num_devices'))
  parallel.check_batch_size(batch_size, mesh.size, name)
  logger.info('Running on %d %s device%s (%d process%s)', mesh.size,
              jax.default_backend(), 's' if mesh.size > 1 else '',
              jax.process_count(), 'es' if jax.process_count() > 1 else '')
  return mesh


def _check_intervals(config: ml_collections.ConfigDict) -> None:
  for name in ('log_every_steps', 'checkpoint_every_steps'):
    if config[name] < 1:
      raise ValueError(f'config.{name} must be >= 1, got {config[name]}')


def _enable_compilation_cache(directory: str) -> None:
  """Turns on JAX's persistent compilation cache in ``directory``.

  A cache directory already configured (``JAX_COMPILATION_CACHE_DIR`` or an
  earlier ``jax.config.update``) is left in place: JAX reads the setting
  once per process.
  """
  if not directory:
    return
  path = os.path.abspath(os.path.expanduser(directory))
  current = jax.config.jax_compilation_cache_dir
  if current:
    if os.path.abspath(current) != path:
      logger.info('JAX already caches compilations in %s; not in %s',
                  current, path)
    return
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)


def _load_halves(config: ml_collections.ConfigDict) -> _Data:
  """The weights and alphas halves of the training split (no test data)."""
  train = data_lib.load_dataset(config.data.name, 'train',
                                data_dir=config.data.dir or None)
  return _Data(*data_lib.search_split(train, config.data.train_portion))


def _batches(config: ml_collections.ConfigDict, halves: _Data,
             start: data_lib.Position = data_lib.Position()
             ) -> data_lib.SearchBatches:
  return data_lib.SearchBatches(
      halves.weights_half, halves.alphas_half, config.search.batch_size,
      seed=config.search.seed, augment=config.data.augment, start=start,
      shard_index=jax.process_index(), shard_count=jax.process_count())


def _initial_state(config: ml_collections.ConfigDict, halves: _Data,
                   num_steps: int) -> SearchState:
  """A freshly initialised state (also the target a checkpoint restores to)."""
  space = SearchSpace(tuple(config.model.primitives), config.model.num_nodes)
  model = SearchNetwork(
      halves.weights_half.num_classes, channels=config.model.channels,
      layers=config.model.layers, space=space,
      scan_cells=config.model.scan_cells, remat_cells=config.model.remat_cells,
      compute_dtype=jnp.dtype(config.model.compute_dtype),
      depthwise=config.model.depthwise or None)
  fields = ((k, tuple(v) if isinstance(v, (list, tuple)) else v)
            for k, v in config.optimizer.items())  # Hashable, for the cache.
  weight_tx, weight_lr, arch_tx = _optimizers(num_steps, tuple(sorted(fields)))
  images = np.zeros((config.search.batch_size,)
                    + halves.weights_half.image_shape, np.float32)
  return create_search_state(
      jax.random.PRNGKey(config.search.seed), model, images,
      hypergradient=config.search.hypergradient, weight_tx=weight_tx,
      weight_lr=weight_lr, arch_tx=arch_tx)


@functools.lru_cache(maxsize=16)
def _optimizers(num_steps: int, fields: tuple[tuple[str, Any], ...]):
  """``(weight_tx, weight_lr, arch_tx)`` of the config's optimizer fields.

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
                                   weight_decay=opt['arch_weight_decay'])
  return weight_tx, weight_lr, arch_tx


def _restore(ckpt: Checkpointer, initial: Callable[[], Any],
             mesh: jax.sharding.Mesh) -> tuple[Any, data_lib.Position]:
  """The newest readable checkpoint's state and data position, or a start.

  The checkpoint is restored into the abstract shapes of ``initial()``, so a
  resumed run never compiles the initialisation, and replicated on ``mesh``
  whatever the number of devices it was saved from. Fresh or restored, the
  state has the same sharding: the step then lowers to the same program,
  which a resumed run finds in the compilation cache.
  """
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      jax.eval_shape(initial))
  restored = ckpt.restore_latest(target)
  if restored is None:
    logger.info('No checkpoint: initialising a fresh state (compiling its '
                'program first)')
    start = time.perf_counter()
    fresh = run_once(initial, out_shardings=sharding)  # On every device.
    logger.info('Initialised in %.1f s', time.perf_counter() - start)
    return fresh, data_lib.Position()
  state, extra, step = restored
  position = data_lib.Position.from_dict(extra['position'])
  logger.info('Resuming from the checkpoint of step %d (epoch %d, batch %d)',
              step, position.epoch, position.step)
  return state, position


def _trim_metrics(path: Path, step: int) -> None:
  """Drops the metrics lines of steps after ``step`` (redone on resume)."""
  if not path.exists():
    return
  kept = []
  for line in path.read_text().splitlines():
    try:
      keep = json.loads(line).get('step', 0) <= step
    except (json.JSONDecodeError, AttributeError):
      keep = False  # A line cut short by a kill.
    if keep:
      kept.append(line + '\n')
  path.write_text(''.join(kept))


# ---------------------------------------------------------------------------
# The loop.


class _Loop(contextlib.AbstractContextManager):
  """What the search and training loops share: checkpoints, metrics, checks.

  Subclasses set ``ckpt``, ``workdir``, ``pending``, ``tensorboard``,
  ``steps_per_epoch`` and ``num_steps``, and name their job and the fields
  to tune.
  """
  JOB = 'search'
  REMEDY = ('Lower the learning rate (config.optimizer.weight_lr, '
            'config.optimizer.arch_lr) or the gradient clip '
            '(config.optimizer.grad_clip), or check the data.')

  def _save(self, state, position: data_lib.Position) -> None:
    """Checkpoints ``state`` and the data position, if they are finite."""
    self._check_finite(state)
    step = position.global_step(self.steps_per_epoch)
    self.ckpt.save(step, state, {'position': position.to_dict()})

  def _restart_clock(self, step: int) -> None:
    """Measures steps per second from now and ``step`` on."""
    self._clock = (time.perf_counter(), step)

  def _flush_metrics(self, step: int) -> tuple[int, dict[str, float], str]:
    """Records the pending metrics' means (with steps/s) and restarts the
    clock; returns ``(epoch, means, 'rate | ETA' text)`` for the log line."""
    means = _means(self._check_finite())
    self.pending.clear()
    start, start_step = self._clock
    self._restart_clock(step)
    epoch = (step - 1) // self.steps_per_epoch
    speed = 'compiling'  # No step was timed yet: the first one compiled.
    if step > start_step:
      rate = (step - start_step) / (time.perf_counter() - start)
      means['steps_per_second'] = rate
      speed = (f'{rate:.2f} steps/s | ETA '
               f'{_hms((self.num_steps - step) / rate)}')
    self._record(step, epoch, means)
    return epoch, means, speed

  def _record(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
    """Appends one metrics.jsonl line and the TensorBoard scalars."""
    if not _is_writer():
      return
    record = {'step': step, 'epoch': epoch,
              **{k: float(v) for k, v in values.items()}}
    with open(self.workdir / 'metrics.jsonl', 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')
    for name, value in values.items():
      self.tensorboard.add_scalar(name, float(value), step)
    self.tensorboard.flush()

  def _check_finite(self, state=None
                    ) -> list[tuple[int, Metrics]]:
    """Fetches the pending metrics; raises if they or ``state`` are not finite.

    Returns:
      The pending ``(step, metrics)`` on the host.
    """
    self.pending = jax.device_get(self.pending)
    for step, metrics in self.pending:
      bad = {k: float(v) for k, v in metrics.items()
             if not math.isfinite(float(v))}
      if bad:
        what = 'loss' if any('loss' in k for k in bad) else 'metrics'
        raise self._non_finite(f'non-finite {what} at step {step} ({bad})')
    if state is not None and not bool(_all_finite(state)):
      raise self._non_finite(
          f'non-finite weights after step {int(state.step)}')
    return self.pending

  def _non_finite(self, what: str) -> FloatingPointError:
    self.ckpt.wait()
    last = self.ckpt.latest_step()
    kept = (f'the last good checkpoint, step {last}, is kept in '
            f'{self.ckpt.directory} and the same command resumes from it'
            if last is not None else 'no checkpoint was saved before it')
    return FloatingPointError(
        f'{what}: the {self.JOB} stopped without saving this state; {kept}. '
        + self.REMEDY)


class _SearchLoop(_Loop):
  """The epochs of one `run_search` call, with its outputs and timers."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: Path,
               ckpt: Checkpointer, halves: _Data, steps_per_epoch: int,
               mesh: jax.sharding.Mesh):
    self.config = config
    self.workdir = workdir
    self.ckpt = ckpt
    self.halves = halves
    self.mesh = mesh
    self.steps_per_epoch = steps_per_epoch
    self.num_steps = config.search.epochs * steps_per_epoch
    self.pending: list[tuple[int, Metrics]] = []  # Since the last log line.
    self.tensorboard = None
    if _is_writer():
      from tensorboardX import SummaryWriter
      self.tensorboard = SummaryWriter(str(workdir / 'tensorboard'))
    self._restart_clock(0)

  def __exit__(self, *exc_info: Any) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()

  def run(self, state: SearchState, position: data_lib.Position
          ) -> tuple[SearchState, bool]:
    """Steps from ``position`` to the end; returns ``(state, finished)``."""
    start = time.perf_counter()
    first_step = int(state.step) + 1
    previous = _epoch_genotype(self.workdir, position.epoch - 1)
    with _preemption_guard() as guard, data_lib.prefetch(
        _batches(self.config, self.halves, position),
        transform=functools.partial(parallel.mesh_shard,
                                    mesh=self.mesh)) as batches:
      for train_batch, val_batch in batches:
        state, metrics = parallel.mesh_search_step(
            state, train_batch, val_batch, mesh=self.mesh)
        position = batches.position
        step = position.global_step(self.steps_per_epoch)
        self.pending.append((step, metrics))
        if step == first_step:
          jax.block_until_ready(metrics)
          logger.info('Compiled and ran step %d in %.1f s', step,
                      time.perf_counter() - start)
          self._restart_clock(step)
        epoch_end = position.step == 0
        if epoch_end or step % self.config.log_every_steps == 0:
          self._log_progress(step)
        if epoch_end:
          previous = self._end_epoch(state, position.epoch - 1, previous)
        finished = position.epoch >= self.config.search.epochs
        if (epoch_end or guard.requested
            or step % self.config.checkpoint_every_steps == 0):
          self._save(state, position)
        if epoch_end:
          self._restart_clock(step)  # Steps/s counts training steps only.
        if finished:
          return state, True
        if guard.requested:
          logger.warning('Stopped by a signal at step %d; saved a '
                         'checkpoint: run the same command to resume.', step)
          return state, False
    raise AssertionError('the batch stream ended')  # It is infinite.

  def _log_progress(self, step: int) -> None:
    """Writes the averaged metrics since the last line and logs progress."""
    epoch, means, speed = self._flush_metrics(step)
    logger.info(
        'epoch %d/%d step %d/%d | %s | train loss %.4f acc %.3f | val loss '
        '%.4f acc %.3f', epoch + 1, self.config.search.epochs, step,
        self.num_steps, speed, means['train_loss'], means['train_accuracy'],
        means['val_loss'], means['val_accuracy'])

  def _end_epoch(self, state: SearchState, epoch: int,
                 previous: Genotype | None) -> Genotype:
    """Evaluates the supernet and writes the epoch's outputs."""
    self._check_finite(state)
    loss, accuracy = _evaluate_supernet(state, self.halves.alphas_half,
                                        self.config.search.batch_size,
                                        self.mesh)
    genotype = state.genotype()
    step = int(state.step)
    self._record(step, epoch, {'supernet_val_loss': loss,
                               'supernet_val_accuracy': accuracy})
    if _is_writer():
      _write_epoch_outputs(self.workdir, epoch, state, genotype)
      if epoch + 1 == self.config.search.epochs:
        _write_final_outputs(self.workdir, genotype)
    change = ('unchanged' if _same_architecture(genotype, previous) else
              f'{"derived" if previous is None else "changed"}: {genotype}')
    logger.info('epoch %d/%d done: supernet val loss %.4f accuracy %.4f; '
                'genotype %s', epoch + 1, self.config.search.epochs, loss,
                accuracy, change)
    return genotype



@contextlib.contextmanager
def _preemption_guard() -> Iterator[Any]:
  """A `PreemptionGuard` for SIGTERM, entered if this is the main thread.

  Signal handlers can only be installed from the main thread; elsewhere
  (e.g. a notebook's worker thread) the guard is never requested.
  """
  if threading.current_thread() is threading.main_thread():
    with PreemptionGuard() as guard:
      yield guard
  else:
    yield PreemptionGuard()


@jax.jit
def _all_finite(state) -> jax.Array:
  """Whether every floating-point array of ``state`` is finite."""
  leaves = [x for x in jax.tree.leaves(state)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _means(pending: list[tuple[int, Metrics]]) -> dict[str, float]:
  names = pending[0][1].keys()
  return {k: float(np.mean([m[k] for _, m in pending])) for k in names}


def _hms(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _evaluate_supernet(state: SearchState, dataset: data_lib.Dataset,
                       batch_size: int, mesh: jax.sharding.Mesh
                       ) -> tuple[float, float]:
  """Supernet loss and accuracy on ``dataset`` with running BN statistics.

  Uses the full batches only (the remainder, fewer than ``batch_size``
  examples, is skipped), so the evaluation compiles once, at the search's
  batch shape. Each process reads its rows of every batch, which is split
  over the mesh.
  """
  batches = data_lib.eval_batches(dataset, batch_size,
                                  shard_index=jax.process_index(),
                                  shard_count=jax.process_count())
  sums = jax.device_get([
      eval_step(state, parallel.mesh_shard(batch, mesh))
      for batch in itertools.islice(batches,
                                    dataset.num_examples // batch_size)])
  count = sum(int(s['count']) for s in sums)
  return (sum(float(s['loss_sum']) for s in sums) / count,
          sum(int(s['correct']) for s in sums) / count)


# ---------------------------------------------------------------------------
# Outputs.


def _epoch_genotype(workdir: Path, epoch: int) -> Genotype | None:
  """The genotype written at the end of ``epoch``, if there is one."""
  path = workdir / 'genotypes' / f'epoch_{epoch:03d}.json'
  return Genotype.load(path) if epoch >= 0 and path.exists() else None


def _same_architecture(a: Genotype, b: Genotype | None) -> bool:
  """Equal up to the order of a node's two inputs and of the concats."""
  return b is not None and visualize.stable_since([(0, a), (1, b)]) == 0


def _write_epoch_outputs(workdir: Path, epoch: int, state: SearchState,
                         genotype: Genotype) -> None:
  """``genotypes/epoch_NNN.{json,txt}`` and ``alphas/epoch_NNN.npz``."""
  name = f'epoch_{epoch:03d}'
  for directory in ('genotypes', 'alphas'):
    (workdir / directory).mkdir(exist_ok=True)
  genotype.save(workdir / 'genotypes' / f'{name}.json')
  (workdir / 'genotypes' / f'{name}.txt').write_text(f'{genotype}\n')
  # On the host: only process 0 gets here, so nothing may run on the mesh.
  weights = {cell: np.asarray(jax.nn.softmax(
      jax.device_get(state.alphas[cell]), axis=-1)) for cell in CELL_TYPES}
  np.savez(workdir / 'alphas' / f'{name}.npz', **weights,
           primitives=np.asarray(state.model.space.primitives, dtype=str))


def _write_final_outputs(workdir: Path, genotype: Genotype) -> None:
  """``genotype.json``, ``genotype.txt`` and the drawings in ``cells/``."""
  genotype.save(workdir / 'genotype.json')
  (workdir / 'genotype.txt').write_text(f'{genotype}\n')
  try:
    visualize.draw_genotype(genotype, workdir / 'cells')
  except ImportError as e:
    logger.warning('Not drawing the cells (%s); pip install matplotlib', e)
