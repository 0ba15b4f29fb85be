"""Retraining a genotype from scratch: `run_train(config, workdir)`.

`run_train` resolves the genotype (a text, a published name or a file; see
the space's ``resolve_genotype``), builds its evaluation network
(`jaxdarts.NetworkCIFAR` for the DARTS CNN space), trains it from scratch
on the training split (crop, flip and cutout augmentation; drop path
ramped linearly from 0 to ``config.train.drop_path_prob``) and evaluates it
on the test split at every epoch end, in the loop of `jaxdarts.run.loop`.
It writes into the workdir (`jaxdarts.run.workdir` has the format):
``config.json``, ``genotype.json``; ``metrics.jsonl`` and TensorBoard events
(the training metrics ``loss``, ``ce_loss``, ``aux_loss``, ``accuracy``,
``lr``, ``grad_norm``, ``drop_path_rate`` and ``steps_per_second``; at each
epoch end ``test_loss`` and ``test_accuracy``); checkpoints; and at the end
``final_variables.msgpack`` and ``final_metrics.json``.

To use the trained network for inference::

    genotype = Genotype.load(workdir / 'genotype.json')
    model = NetworkCIFAR(genotype, channels=config.model.channels,
                         layers=config.model.layers, num_classes=10,
                         auxiliary=config.model.auxiliary)
    template = model.init(jax.random.PRNGKey(0), images, train=False)
    variables = flax.serialization.from_bytes(
        template, (workdir / 'final_variables.msgpack').read_bytes())
    logits = model.apply(variables, images, train=False)

Images are normalised as the data pipeline does: `jaxdarts.data.normalize`
with the training split's mean and std.

Resume, SIGTERM, non-finite losses, devices and processes: as
`jaxdarts.run.search.run_search` (with drop path, N devices match one in
distribution only: each draws its own masks).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections

from jaxdarts import data as data_lib
from jaxdarts import spaces
from jaxdarts import tasks
from jaxdarts.core import parallel
from jaxdarts.core.train import (TrainState, create_train_state,
                                 default_optimizer)
from jaxdarts.run import loop
from jaxdarts.run.evaluate import evaluate
from jaxdarts.run.workdir import Workdir

logger = logging.getLogger('jaxdarts.run')


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


class Splits(NamedTuple):
  train: data_lib.Dataset
  test: data_lib.Dataset


def run_train(config: ml_collections.ConfigDict,
              workdir: str | os.PathLike[str]) -> TrainResult:
  """Trains (or resumes) a genotype's network; see the module docstring.

  Args:
    config: a config of ``experiments/configs/train.py``.
    workdir: the run's directory; created if missing.

  Progress (steps/s, ETA, losses, test accuracy at each epoch end) is logged
  at INFO level on the ``jaxdarts.run`` logger.

  Returns:
    The final state, its test accuracy and whether the training finished.

  Raises:
    ValueError: ``config.genotype`` names no genotype.
    FloatingPointError: a loss (or the state) became NaN or infinite.
    jaxdarts.run.checkpoint.CheckpointMismatchError: (a ValueError) the
      workdir holds a checkpoint of a run with another genotype, model or
      data config.
  """
  space = spaces.get(config.model.get('space', 'darts_cnn'))
  genotype = space.resolve_genotype(config.genotype)
  mesh, workdir = loop.prepare(config, workdir, config.train.batch_size,
                               'config.train.batch_size')
  data = Splits(*(data_lib.load_dataset(config.data.name, split,
                                        data_dir=config.data.dir or None)
                  for split in ('train', 'test')))
  job = TrainJob(config, data, mesh, workdir, genotype)
  state, finished = loop.run_or_resume(
      job, config,
      functools.partial(initial_state, config, space, genotype, data.train,
                        job.num_steps), mesh,
      model_config=model_config(config, genotype))
  return TrainResult(state, job.test_accuracy, finished)


def model_config(config: ml_collections.ConfigDict,
                 genotype: Any) -> dict[str, Any]:
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


def train_batches(config: ml_collections.ConfigDict, train: data_lib.Dataset,
                  start: data_lib.Position = data_lib.Position()
                  ) -> data_lib.Batches:
  """This process's rows of the retraining's batches."""
  return data_lib.Batches(train, config.train.batch_size,
                          seed=config.train.seed, augment=config.data.augment,
                          cutout=config.data.cutout, start=start,
                          shard_index=jax.process_index(),
                          shard_count=jax.process_count())


def initial_state(config: ml_collections.ConfigDict, space, genotype,
                  train: data_lib.Dataset, num_steps: int) -> TrainState:
  """A freshly initialised state (also the target a checkpoint restores to)."""
  model = space.network(genotype, train.num_classes,
                        channels=config.model.channels,
                        layers=config.model.layers,
                        auxiliary=config.model.auxiliary)
  opt = config.optimizer
  images = jax.ShapeDtypeStruct(
      (config.train.batch_size,) + train.image_shape, jnp.float32)
  state = create_train_state(
      jax.random.PRNGKey(config.train.seed), model, images,
      num_steps=num_steps, learning_rate=opt.learning_rate,
      momentum=opt.momentum, weight_decay=opt.weight_decay,
      grad_clip=opt.grad_clip or None,
      task=tasks.get(config.get('task', 'classification')))
  # Equal static fields let a second run in one process reuse the step.
  tx, schedule = _optimizer(num_steps, opt.learning_rate, opt.momentum,
                            opt.weight_decay, opt.grad_clip or None)
  return state.replace(tx=tx, learning_rate_fn=schedule)


@functools.lru_cache(maxsize=16)
def _optimizer(num_steps: int, learning_rate: float, momentum: float,
               weight_decay: float, grad_clip: float | None):
  """`jaxdarts.core.train.default_optimizer`, memoised (see `initial_state`)."""
  return default_optimizer(num_steps, learning_rate=learning_rate,
                           momentum=momentum, weight_decay=weight_decay,
                           grad_clip=grad_clip)


class TrainJob:
  """The retraining's part of the loop (see `jaxdarts.run.loop.Job`)."""
  name = 'training'
  remedy = ('Lower the learning rate (config.optimizer.learning_rate) or the '
            'gradient clip (config.optimizer.grad_clip), or check the data.')

  def __init__(self, config: ml_collections.ConfigDict, data: Splits,
               mesh: jax.sharding.Mesh, workdir: Workdir, genotype: Any):
    self.config, self.data, self.mesh = config, data, mesh
    self.workdir, self.genotype = workdir, genotype
    self.epochs = config.train.epochs
    self.steps_per_epoch = train_batches(config, data.train).steps_per_epoch
    self.num_steps = self.epochs * self.steps_per_epoch
    self.test_accuracy = math.nan

  def start(self, state: TrainState, position: data_lib.Position) -> None:
    del state, position
    if loop.is_writer():
      self.genotype.save(self.workdir / 'genotype.json')
    logger.info('Training %s: %d epochs of %d steps', self.genotype,
                self.epochs, self.steps_per_epoch)

  def already_finished(self, state: TrainState) -> None:
    """Reads the final metrics, writing the final files if missing."""
    final = self.workdir.final_metrics()
    if final is None:  # Killed between the last checkpoint and the files.
      final = {f'test_{k}': v for k, v in self.evaluate(state).items()}
      if loop.is_writer():
        _write_final(self.workdir, state, final)
    self.test_accuracy = float(final['test_accuracy'])
    logger.info('The training in %s already finished (step %d); test '
                'accuracy %.4f', self.workdir.path, int(state.step),
                self.test_accuracy)

  def batches(self, position: data_lib.Position):
    return data_lib.prefetch(
        train_batches(self.config, self.data.train, position),
        transform=functools.partial(parallel.mesh_shard, mesh=self.mesh))

  def step(self, state: TrainState, batch, step: int):
    # Drop path ramps linearly: drop_path_prob * (step - 1) / num_steps.
    rate = self.config.train.drop_path_prob * (step - 1) / self.num_steps
    return parallel.mesh_train_step(
        state, batch, mesh=self.mesh, drop_path_rate=rate,
        auxiliary_weight=self.config.train.auxiliary_weight)

  def progress(self, means: dict[str, float]) -> str:
    accuracy = f' acc {means["accuracy"]:.3f}' if 'accuracy' in means else ''
    return (f'loss {means["loss"]:.4f}{accuracy} | lr {means["lr"]:.4g} '
            f'drop path {means["drop_path_rate"]:.3f}')

  def evaluate(self, state: TrainState) -> dict[str, float]:
    return evaluate(state, self.data.test, self.config.train.eval_batch_size,
                    self.mesh)

  def end_epoch(self, state: TrainState, epoch: int, record) -> None:
    """Evaluates on the test split; writes the final files after the last."""
    results = self.evaluate(state)
    self.test_accuracy = results.get('accuracy', math.nan)
    record({f'test_{k}': v for k, v in results.items()})
    logger.info('epoch %d/%d done: test %s', epoch + 1, self.epochs,
                ', '.join(f'{k} {v:.4f}' for k, v in results.items()))
    if epoch + 1 == self.epochs and loop.is_writer():
      _write_final(self.workdir, state, results)


def _write_final(workdir: Workdir, state: TrainState,
                 results: dict[str, float]) -> None:
  """``final_variables.msgpack`` and ``final_metrics.json``."""
  variables = jax.device_get({'params': state.params,
                              'batch_stats': state.batch_stats})
  workdir.write_final(flax.serialization.to_bytes(variables), {
      'step': int(state.step),
      **{(k if k.startswith('test_') else f'test_{k}'): float(v)
         for k, v in results.items()}})
