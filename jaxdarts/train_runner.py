"""The impure loop around the retraining step: `run_train(config, workdir)`.

`run_train` resolves the genotype (`resolve_genotype`), builds a
`jaxdarts.spaces.darts_cnn.networks.NetworkCIFAR` of it, trains it from scratch on the
training split (crop, flip and cutout augmentation; drop path ramped
linearly from 0 to ``config.train.drop_path_prob``) and evaluates it on the
test split at every epoch end. Everything it writes lives in ``workdir``:

* ``config.json``: the run's config; ``genotype.json``: the genotype trained;
* ``metrics.jsonl``: every ``log_every_steps`` (and at each epoch end) one
  JSON line with ``step``, ``epoch`` (0-based), the training metrics averaged
  since the previous line (``loss``, ``ce_loss``, ``aux_loss``,
  ``accuracy``, ``lr``, ``grad_norm``, ``drop_path_rate``) and
  ``steps_per_second`` (compiles excluded); at each epoch end one more line
  with ``test_loss`` and ``test_accuracy``;
* ``tensorboard/``: the same numbers as TensorBoard events;
* ``checkpoints/``: the state and the data position, every
  ``checkpoint_every_steps`` and at every epoch end (`jaxdarts.run.checkpoint`);
* ``final_variables.msgpack``: the trained ``{'params', 'batch_stats'}``
  (`flax.serialization.to_bytes`) and ``final_metrics.json``: the final
  ``test_accuracy``, ``test_loss`` and ``step``.

To use the trained network for inference::

    genotype = Genotype.load(workdir / 'genotype.json')
    model = NetworkCIFAR(genotype, channels=config.model.channels,
                         layers=config.model.layers, num_classes=10,
                         auxiliary=config.model.auxiliary)
    template = model.init(jax.random.PRNGKey(0), images, train=False)
    variables = flax.serialization.from_bytes(
        template, (workdir / 'final_variables.msgpack').read_bytes())
    logits = model.apply(variables, images, train=False)

(``flax.serialization.msgpack_restore(data)`` gives the same nested dict of
arrays without a template.) Images are normalised as the data pipeline
does: `jaxdarts.data.normalize` with the training split's mean and std.

Resume is exact, as in `jaxdarts.run.search.run_search`: a run killed at any
point and started again with the same command ends with the same weights as
an uninterrupted one. SIGTERM saves a checkpoint and returns; a non-finite
loss stops the run with `FloatingPointError` without saving the bad state;
running the command again on a finished workdir only reports the result.

Devices and processes as in `run_search`: all local devices by default
(``config.num_devices`` limits them), each process reading its rows of every
batch, process 0 writing the files, checkpoints restoring on any number of
devices.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdarts import data as data_lib
from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.core import parallel
from jaxdarts.run.checkpoint import Checkpointer
from jaxdarts.genotype import Genotype
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR
from jaxdarts.run.search import (_Loop, _check_intervals, _enable_compilation_cache,
                             _is_writer, _mesh, _preemption_guard, _restore,
                             _trim_metrics)
from jaxdarts.core.train import TrainState, create_train_state, default_optimizer

Metrics = dict[str, Any]

logger = logging.getLogger(__name__)

GENOTYPE_FORMS = (
    "a genotype text such as \"Genotype(normal=[('sep_conv_3x3', 0), ...], "
    'normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])" '
    '(or its JSON form)',
    f'a published name: {", ".join(genotypes.names())}',
    'a path to a genotype file (the genotype.json or .txt a search writes, '
    'or a search workdir holding genotype.json)',
)


class TrainResult(NamedTuple):
  """What `run_train` returns.

  Attributes:
    state: the training state at the end (or where SIGTERM stopped it).
    test_accuracy: the test accuracy of ``state`` (at the last epoch end
      evaluated; NaN if a SIGTERM stopped the run before the first).
    finished: whether every epoch ran (False after a SIGTERM).
  """
  state: TrainState
  test_accuracy: float
  finished: bool = True


class _Data(NamedTuple):
  train: data_lib.Dataset
  test: data_lib.Dataset


# ---------------------------------------------------------------------------
# Genotypes.


def resolve_genotype(spec: str | os.PathLike[str] | Genotype) -> Genotype:
  """The genotype ``spec`` names.

  The form is read off the text: one starting with ``Genotype(`` (after any
  ``#`` comment lines) is a genotype text and one starting with ``{`` its
  JSON form, neither ever tried as a path; a published name comes next; any
  other text is a path (``~`` expanded; one the file system cannot even
  look up, e.g. a name over its length limit, is no path).

  Args:
    spec: a `Genotype`; a genotype text ``Genotype(normal=..., ...)`` (or
      the JSON of `Genotype.to_json`); a published name of
      `jaxdarts.genotypes` (e.g. ``'DARTS_V2'``); or a path to a genotype
      file (JSON or text, as written by the search) or to a search workdir
      holding ``genotype.json``.

  Returns:
    The validated genotype.

  Raises:
    ValueError: if ``spec`` is none of these, or names a malformed text or
      file; the message says why (with the position of a syntax error) and
      lists the accepted forms.
  """
  if isinstance(spec, Genotype):
    return spec.validate()
  text = os.fspath(spec).strip() if isinstance(spec, (str, os.PathLike)) else ''
  try:
    if _GENOTYPE_TEXT.match(text):
      return (Genotype.from_json if text.startswith('{') else Genotype.parse)(
          text)
    path, why = _genotype_file(text)
    published = None
    with contextlib.suppress(ValueError):
      published = genotypes.get(text)
    if published is not None:
      if path is not None:
        logger.warning('genotype %r is a published name; the file %s is not '
                       'read (write ./%s for it)', text, path, text)
      return published
    if path is not None:
      return Genotype.load(path)
  except ValueError as e:
    raise _refusal(spec, f'is malformed: {e}') from e
  raise _refusal(spec, f'is not a genotype{why or _did_you_mean(text)}')


# A genotype text, or its JSON form, possibly after '#' comment lines.
_GENOTYPE_TEXT = re.compile(r'(#[^\n]*\n\s*)*(Genotype\s*\(|\{)')


def _genotype_file(text: str) -> tuple[Path | None, str]:
  """The genotype file path ``text`` names, or None and why not."""
  if not text:
    return None, ''
  try:
    path = Path(text).expanduser()
    if path.is_dir():
      if (path / 'genotype.json').is_file():
        return path / 'genotype.json', ''
      return None, (f' ({path} holds no genotype.json: a search writes it '
                    'when it finishes, and one per epoch in genotypes/)')
    if path.is_file():
      return path, ''
  except (OSError, RuntimeError):  # Too long a name, an unknown ~user.
    pass
  if os.sep in text or text.endswith(('.json', '.txt')):
    return None, (' (no such file or directory: '
                  f'{os.path.expanduser(text)})')
  return None, ''


def _did_you_mean(text: str) -> str:
  """`` (did you mean NAME?)`` for a near miss of a published name."""
  close = difflib.get_close_matches(text.upper().replace('-', '_'),
                                    genotypes.names(), n=1)
  return f' (did you mean {close[0]}?)' if close else ''


def _refusal(spec: Any, problem: str) -> ValueError:
  """The error for a ``spec`` naming no genotype, listing the forms."""
  shown = repr(spec) if len(repr(spec)) <= 80 else f'{repr(spec)[:76]}...'
  return ValueError(f'genotype {shown} {problem}; give one of:\n  - '
                    + '\n  - '.join(GENOTYPE_FORMS))


# ---------------------------------------------------------------------------
# The run.


def run_train(config: ml_collections.ConfigDict,
              workdir: str | os.PathLike[str]) -> TrainResult:
  """Trains (or resumes) a genotype's network; see the module docstring.

  Args:
    config: a config of ``experiments/configs/train.py``.
    workdir: the run's directory; created if missing.

  Progress (steps/s, ETA, losses, test accuracy at each epoch end) is logged
  at INFO level on the ``jaxdarts.train_runner`` logger.

  Returns:
    The final state, its test accuracy and whether the training finished.

  Raises:
    ValueError: ``config.genotype`` names no genotype.
    FloatingPointError: a loss (or the state) became NaN or infinite.
    jaxdarts.run.checkpoint.CheckpointMismatchError: (a ValueError) the workdir
      holds a checkpoint of a run with another genotype, model or data
      config.
  """
  _check_intervals(config)
  genotype = resolve_genotype(config.genotype)
  mesh = _mesh(config, config.train.batch_size, 'config.train.batch_size')
  workdir = Path(workdir).expanduser()
  _enable_compilation_cache(config.compilation_cache_dir)
  data = _Data(*(data_lib.load_dataset(config.data.name, split,
                                       data_dir=config.data.dir or None)
                 for split in ('train', 'test')))
  steps_per_epoch = _batches(config, data.train).steps_per_epoch
  num_steps = config.train.epochs * steps_per_epoch
  initial = functools.partial(_initial_state, config, genotype, data.train,
                              num_steps)
  with Checkpointer(workdir / 'checkpoints', keep=config.keep_checkpoints,
                    model_config=_model_config(config, genotype)) as ckpt:
    state, position = _restore(ckpt, initial, mesh)
    if position.epoch >= config.train.epochs:
      return _finished(config, workdir, state, data.test, mesh)
    if _is_writer():
      workdir.mkdir(parents=True, exist_ok=True)
      (workdir / 'config.json').write_text(config.to_json(indent=2) + '\n')
      genotype.save(workdir / 'genotype.json')
      _trim_metrics(workdir / 'metrics.jsonl', int(state.step))
    logger.info('Training %s: %d epochs of %d steps', genotype,
                config.train.epochs, steps_per_epoch)
    with _TrainLoop(config, workdir, ckpt, data, steps_per_epoch,
                    mesh) as loop:
      return loop.run(state, position)


def _model_config(config: ml_collections.ConfigDict,
                  genotype: Genotype) -> dict[str, Any]:
  """The config fields a checkpoint must agree with to be resumed."""
  return {
      'genotype': genotype.to_dict(),
      'data.name': config.data.name,
      'model.channels': config.model.channels,
      'model.layers': config.model.layers,
      'model.auxiliary': config.model.auxiliary,
      'train.batch_size': config.train.batch_size,
      'train.epochs': config.train.epochs,
      'train.seed': config.train.seed,
  }


def _batches(config: ml_collections.ConfigDict, train: data_lib.Dataset,
             start: data_lib.Position = data_lib.Position()
             ) -> data_lib.Batches:
  return data_lib.Batches(train, config.train.batch_size,
                          seed=config.train.seed, augment=config.data.augment,
                          cutout=config.data.cutout, start=start,
                          shard_index=jax.process_index(),
                          shard_count=jax.process_count())


def _initial_state(config: ml_collections.ConfigDict, genotype: Genotype,
                   train: data_lib.Dataset, num_steps: int) -> TrainState:
  """A freshly initialised state (also the target a checkpoint restores to)."""
  model = NetworkCIFAR(genotype, channels=config.model.channels,
                       layers=config.model.layers,
                       num_classes=train.num_classes,
                       auxiliary=config.model.auxiliary)
  opt = config.optimizer
  images = jax.ShapeDtypeStruct(
      (config.train.batch_size,) + train.image_shape, jnp.float32)
  state = create_train_state(
      jax.random.PRNGKey(config.train.seed), model, images,
      num_steps=num_steps, learning_rate=opt.learning_rate,
      momentum=opt.momentum, weight_decay=opt.weight_decay,
      grad_clip=opt.grad_clip or None)
  # Equal static fields let a second run in one process reuse the step.
  tx, schedule = _optimizer(num_steps, opt.learning_rate, opt.momentum,
                            opt.weight_decay, opt.grad_clip or None)
  return state.replace(tx=tx, learning_rate_fn=schedule)


@functools.lru_cache(maxsize=16)
def _optimizer(num_steps: int, learning_rate: float, momentum: float,
               weight_decay: float, grad_clip: float | None):
  """`jaxdarts.core.train.default_optimizer`, memoised (see `_initial_state`)."""
  return default_optimizer(num_steps, learning_rate=learning_rate,
                           momentum=momentum, weight_decay=weight_decay,
                           grad_clip=grad_clip)


def _finished(config: ml_collections.ConfigDict, workdir: Path,
              state: TrainState, test: data_lib.Dataset,
              mesh: jax.sharding.Mesh) -> TrainResult:
  """The result of a finished run, writing its final files if missing."""
  path = workdir / 'final_metrics.json'
  if path.exists():
    accuracy = json.loads(path.read_text())['test_accuracy']
  else:  # Killed between the last checkpoint and the final files.
    loss, accuracy = evaluate(state, test, config.train.eval_batch_size, mesh)
    if _is_writer():
      _write_final_outputs(workdir, state, loss, accuracy)
  logger.info('The training in %s already finished (step %d); test accuracy '
              '%.4f', workdir, int(state.step), accuracy)
  return TrainResult(state, float(accuracy), True)


# ---------------------------------------------------------------------------
# The loop.


class _TrainLoop(_Loop):
  """The epochs of one `run_train` call, with its outputs and timers."""
  JOB = 'training'
  REMEDY = ('Lower the learning rate (config.optimizer.learning_rate) or the '
            'gradient clip (config.optimizer.grad_clip), or check the data.')

  def __init__(self, config: ml_collections.ConfigDict, workdir: Path,
               ckpt: Checkpointer, data: _Data, steps_per_epoch: int,
               mesh: jax.sharding.Mesh):
    self.config = config
    self.workdir = workdir
    self.ckpt = ckpt
    self.data = data
    self.mesh = mesh
    self.steps_per_epoch = steps_per_epoch
    self.num_steps = config.train.epochs * steps_per_epoch
    self.pending: list[tuple[int, Metrics]] = []  # Since the last log line.
    self.test_accuracy = math.nan
    self.tensorboard = None
    if _is_writer():
      from tensorboardX import SummaryWriter
      self.tensorboard = SummaryWriter(str(workdir / 'tensorboard'))
    self._restart_clock(0)

  def __exit__(self, *exc_info: Any) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()

  def run(self, state: TrainState,
          position: data_lib.Position) -> TrainResult:
    """Steps from ``position`` to the end."""
    start = time.perf_counter()
    first_step = int(state.step) + 1
    with _preemption_guard() as guard, data_lib.prefetch(
        _batches(self.config, self.data.train, position),
        transform=functools.partial(parallel.mesh_shard,
                                    mesh=self.mesh)) as batches:
      for batch in batches:
        step = position.global_step(self.steps_per_epoch) + 1
        state, metrics = parallel.mesh_train_step(
            state, batch, mesh=self.mesh,
            drop_path_rate=self._drop_path_rate(step - 1),
            auxiliary_weight=self.config.train.auxiliary_weight)
        position = batches.position
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
          self._end_epoch(state, position.epoch - 1)
        finished = position.epoch >= self.config.train.epochs
        if (epoch_end or guard.requested
            or step % self.config.checkpoint_every_steps == 0):
          self._save(state, position)
        if epoch_end:
          self._restart_clock(step)  # Steps/s counts training steps only.
        if finished:
          return TrainResult(state, self.test_accuracy, True)
        if guard.requested:
          logger.warning('Stopped by a signal at step %d; saved a '
                         'checkpoint: run the same command to resume.', step)
          return TrainResult(state, self.test_accuracy, False)
    raise AssertionError('the batch stream ended')  # It is infinite.

  def _drop_path_rate(self, step: int) -> float:
    """The linear ramp ``drop_path_prob * step / num_steps`` (0-based step)."""
    return self.config.train.drop_path_prob * step / self.num_steps

  def _log_progress(self, step: int) -> None:
    """Writes the averaged metrics since the last line and logs progress."""
    epoch, means, speed = self._flush_metrics(step)
    logger.info('epoch %d/%d step %d/%d | %s | loss %.4f acc %.3f | lr %.4g '
                'drop path %.3f', epoch + 1, self.config.train.epochs, step,
                self.num_steps, speed, means['loss'], means['accuracy'],
                means['lr'], means['drop_path_rate'])

  def _end_epoch(self, state: TrainState, epoch: int) -> None:
    """Evaluates on the test split; writes the final files after the last."""
    self._check_finite(state)
    loss, accuracy = evaluate(state, self.data.test,
                              self.config.train.eval_batch_size, self.mesh)
    self.test_accuracy = accuracy
    self._record(int(state.step), epoch,
                 {'test_loss': loss, 'test_accuracy': accuracy})
    logger.info('epoch %d/%d done: test loss %.4f accuracy %.4f', epoch + 1,
                self.config.train.epochs, loss, accuracy)
    if epoch + 1 == self.config.train.epochs and _is_writer():
      _write_final_outputs(self.workdir, state, loss, accuracy)



# ---------------------------------------------------------------------------
# Evaluation and outputs.


@jax.jit
def _eval_sums(state: TrainState, batch: data_lib.Batch,
               mask: jax.Array) -> dict[str, jax.Array]:
  """Masked summed loss and correct count (running BN statistics)."""
  logits = state.model.apply(state.variables, batch['image'], train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['label'])
  correct = jnp.argmax(logits, -1) == batch['label']
  return {'loss_sum': jnp.sum(losses * mask),
          'correct': jnp.sum(correct * mask)}


def evaluate(state: TrainState, dataset: data_lib.Dataset, batch_size: int,
             mesh: jax.sharding.Mesh | None = None) -> tuple[float, float]:
  """``(loss, accuracy)`` of ``state`` on every example of ``dataset``.

  The last, short batch is padded to ``batch_size`` (and the padding
  masked out), so the evaluation compiles once. With a ``mesh``, the batch
  size is rounded up to a multiple of its devices, each process reads its
  rows of every batch and the batches are split over the devices.
  """
  shard = lambda tree: tree
  shard_index, shard_count = 0, 1
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
    shard = functools.partial(parallel.mesh_shard, mesh=mesh)
    shard_index, shard_count = jax.process_index(), jax.process_count()
  rows = batch_size // shard_count
  sums = []
  for batch in data_lib.eval_batches(dataset, batch_size,
                                     shard_index=shard_index,
                                     shard_count=shard_count):
    count = batch['label'].shape[0]
    mask = (np.arange(rows) < count).astype(np.float32)
    padded = {k: np.concatenate(
        [v, np.zeros((rows - count,) + v.shape[1:], v.dtype)])
              for k, v in batch.items()}
    sums.append(_eval_sums(state, shard(padded), shard(mask)))
  sums = jax.device_get(sums)
  total = dataset.num_examples
  return (sum(float(s['loss_sum']) for s in sums) / total,
          sum(float(s['correct']) for s in sums) / total)


def _write_final_outputs(workdir: Path, state: TrainState, loss: float,
                         accuracy: float) -> None:
  """``final_variables.msgpack`` and ``final_metrics.json``."""
  variables = jax.device_get({'params': state.params,
                              'batch_stats': state.batch_stats})
  (workdir / 'final_variables.msgpack').write_bytes(
      flax.serialization.to_bytes(variables))
  (workdir / 'final_metrics.json').write_text(json.dumps(
      {'step': int(state.step), 'test_accuracy': float(accuracy),
       'test_loss': float(loss)}, indent=2) + '\n')
