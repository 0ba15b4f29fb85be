"""The one loop around a pure step, for searches and retraining alike.

:func:`run` steps a state epoch by epoch and does everything impure: it
logs progress (steps per second, ETA, the job's metrics), writes the
metrics (``metrics.jsonl``, TensorBoard), saves checkpoints every
``checkpoint_every`` steps and at every epoch end, stops on a non-finite
loss without saving the bad state, and on SIGTERM saves and returns. What
differs between a search and a retraining is a :class:`Job`: its batches,
its step, its log line and what it does at an epoch end.

The set-up every run shares is here too: the device mesh
(:func:`make_mesh`), the persistent compilation cache, and restoring the
newest checkpoint or initialising a fresh state (:func:`restore`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdarts import data as data_lib
from jaxdarts.core import parallel
from jaxdarts.core.state import run_once
from jaxdarts.run.checkpoint import Checkpointer
from jaxdarts.run.preemption import main_thread_guard
from jaxdarts.run.workdir import Workdir

Metrics = dict[str, Any]

logger = logging.getLogger('jaxdarts.run')


class Job(Protocol):
  """What one kind of run does inside the loop.

  Attributes:
    name: ``'search'`` or ``'training'``, for messages.
    remedy: what to tune when a loss becomes non-finite.
    epochs: the length of the run.
    steps_per_epoch: steps in one epoch.
    workdir: the run's directory.
  """
  name: str
  remedy: str
  epochs: int
  steps_per_epoch: int
  workdir: Workdir

  def start(self, state: Any, position: data_lib.Position) -> None:
    """Called before the first step of this process's run (fresh or
    resumed), after the config is written."""

  def already_finished(self, state: Any) -> None:
    """Called instead of running when the checkpoint is the run's end."""

  def batches(self, position: data_lib.Position) -> Any:
    """The batch stream from ``position`` (with a ``position`` attribute:
    that of the next batch), already sharded over the mesh."""

  def step(self, state: Any, batch: Any, step: int) -> tuple[Any, Metrics]:
    """One step; ``step`` is the 1-based number of the step being taken."""

  def progress(self, means: dict[str, float]) -> str:
    """The job's part of a progress line from the averaged metrics."""

  def end_epoch(self, state: Any, epoch: int,
                record: Callable[[dict[str, float]], None]) -> None:
    """Evaluates and writes the epoch's outputs (0-based ``epoch``);
    ``record(values)`` appends values to the metrics at this step."""


def is_writer() -> bool:
  """Whether this process writes files (process 0 of a multi-host run)."""
  return jax.process_index() == 0


def make_mesh(config: ml_collections.ConfigDict, batch_size: int,
              name: str) -> jax.sharding.Mesh:
  """The devices of the run; refuses a batch they do not split evenly."""
  mesh = parallel.make_mesh(config.get('num_devices'))
  parallel.check_batch_size(batch_size, mesh.size, name)
  logger.info('Running on %d %s device%s (%d process%s)', mesh.size,
              jax.default_backend(), 's' if mesh.size > 1 else '',
              jax.process_count(), 'es' if jax.process_count() > 1 else '')
  return mesh


def check_intervals(config: ml_collections.ConfigDict) -> None:
  for name in ('log_every_steps', 'checkpoint_every_steps'):
    if config[name] < 1:
      raise ValueError(f'config.{name} must be >= 1, got {config[name]}')


def enable_compilation_cache(directory: str) -> None:
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


def restore(ckpt: Checkpointer, initial: Callable[[], Any],
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


def prepare(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
            batch_size: int, name: str) -> tuple[jax.sharding.Mesh, Workdir]:
  """What every run does first: checks the config's intervals, picks the
  devices (refusing a batch they do not split), turns on the compilation
  cache. Returns the mesh and the workdir."""
  check_intervals(config)
  mesh = make_mesh(config, batch_size, name)
  enable_compilation_cache(config.compilation_cache_dir)
  return mesh, Workdir(workdir)


def run_or_resume(job: Job, config: ml_collections.ConfigDict,
                  initial: Callable[[], Any], mesh: jax.sharding.Mesh, *,
                  model_config: dict[str, Any],
                  model_config_defaults: dict[str, Any] | None = None
                  ) -> tuple[Any, bool]:
  """Restores the newest checkpoint (or initialises) and runs ``job`` to its
  end; a finished run only calls ``job.already_finished``.

  Args:
    job: the run.
    config: its config (``keep_checkpoints``, ``log_every_steps``,
      ``checkpoint_every_steps``; written to ``config.json``).
    initial: makes a fresh state (also the shapes a checkpoint restores to).
    mesh: the devices.
    model_config, model_config_defaults: what a checkpoint must agree with
      (see `jaxdarts.run.checkpoint.Checkpointer`).

  Returns:
    ``(state, finished)`` as :func:`run`.
  """
  with Checkpointer(job.workdir / 'checkpoints', keep=config.keep_checkpoints,
                    model_config=model_config,
                    model_config_defaults=model_config_defaults) as ckpt:
    state, position = restore(ckpt, initial, mesh)
    if position.epoch >= job.epochs:
      job.already_finished(state)
      return state, True
    if is_writer():
      job.workdir.write_config(config)
      job.workdir.trim_metrics(int(state.step))
    job.start(state, position)
    return run(job, state, position, ckpt=ckpt, workdir=job.workdir,
               log_every=config.log_every_steps,
               checkpoint_every=config.checkpoint_every_steps)


def run(job: Job, state: Any, position: data_lib.Position, *,
        ckpt: Checkpointer, workdir: Workdir, log_every: int,
        checkpoint_every: int) -> tuple[Any, bool]:
  """Steps ``state`` from ``position`` to the end of ``job``.

  Returns:
    ``(state, finished)``: ``finished`` is False after a SIGTERM (a
    checkpoint of the returned state was saved).

  Raises:
    FloatingPointError: a metric or the state became non-finite; the last
      good checkpoint is kept and the same command resumes from it.
  """
  with _Loop(job, ckpt, workdir) as loop:
    return loop.run(state, position, log_every, checkpoint_every)


class _Loop(contextlib.AbstractContextManager):
  """The state of one :func:`run`: pending metrics, the clock, TensorBoard."""

  def __init__(self, job: Job, ckpt: Checkpointer, workdir: Workdir):
    self.job = job
    self.ckpt = ckpt
    self.workdir = workdir
    self.num_steps = job.epochs * job.steps_per_epoch
    self.pending: list[tuple[int, Metrics]] = []  # Since the last log line.
    self.tensorboard = None
    if is_writer():
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.tensorboard = SummaryWriter(str(workdir / 'tensorboard'))
    self._restart_clock(0)

  def __exit__(self, *exc_info: Any) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()

  def run(self, state, position: data_lib.Position, log_every: int,
          checkpoint_every: int) -> tuple[Any, bool]:
    job, start = self.job, time.perf_counter()
    first_step = position.global_step(job.steps_per_epoch) + 1
    with main_thread_guard() as guard, job.batches(position) as batches:
      for batch in batches:
        step = position.global_step(job.steps_per_epoch) + 1
        state, metrics = job.step(state, batch, step)
        position = batches.position
        self.pending.append((step, metrics))
        if step == first_step:
          jax.block_until_ready(metrics)
          logger.info('Compiled and ran step %d in %.1f s', step,
                      time.perf_counter() - start)
          self._restart_clock(step)
        epoch_end = position.step == 0
        if epoch_end or step % log_every == 0:
          self._log_progress(step)
        if epoch_end:
          self._check_finite(state)
          epoch = position.epoch - 1
          job.end_epoch(state, epoch, lambda values, epoch=epoch, step=step:
                        self._record(step, epoch, values))
        finished = position.epoch >= job.epochs
        if epoch_end or guard.requested or step % checkpoint_every == 0:
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

  def _save(self, state, position: data_lib.Position) -> None:
    """Checkpoints ``state`` and the data position, if they are finite."""
    self._check_finite(state)
    step = position.global_step(self.job.steps_per_epoch)
    self.ckpt.save(step, state, {'position': position.to_dict()})

  def _restart_clock(self, step: int) -> None:
    """Measures steps per second from now and ``step`` on."""
    self._clock = (time.perf_counter(), step)

  def _log_progress(self, step: int) -> None:
    """Records the pending metrics' means (with steps/s), logs a line."""
    means = _means(self._check_finite())
    self.pending.clear()
    start, start_step = self._clock
    self._restart_clock(step)
    epoch = (step - 1) // self.job.steps_per_epoch
    speed = 'compiling'  # No step was timed yet: the first one compiled.
    if step > start_step:
      rate = (step - start_step) / (time.perf_counter() - start)
      means['steps_per_second'] = rate
      speed = (f'{rate:.2f} steps/s | ETA '
               f'{_hms((self.num_steps - step) / rate)}')
    self._record(step, epoch, means)
    logger.info('epoch %d/%d step %d/%d | %s | %s', epoch + 1,
                self.job.epochs, step, self.num_steps, speed,
                self.job.progress(means))

  def _record(self, step: int, epoch: int, values: dict[str, float]) -> None:
    """Appends one metrics.jsonl line and the TensorBoard scalars."""
    if not is_writer():
      return
    self.workdir.append_metrics(step, epoch, values)
    for name, value in values.items():
      self.tensorboard.add_scalar(name, float(value), step)
    self.tensorboard.flush()

  def _check_finite(self, state=None) -> list[tuple[int, Metrics]]:
    """Fetches the pending metrics; raises if they or ``state`` are not
    finite. Returns the pending ``(step, metrics)`` on the host."""
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
        f'{what}: the {self.job.name} stopped without saving this state; '
        f'{kept}. {self.job.remedy}')


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
