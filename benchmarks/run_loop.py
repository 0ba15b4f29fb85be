"""Overhead of `run_search`'s loop over the bare search step.

Runs a short search on random CIFAR-shaped data (an ``npz:`` dataset in a
temporary directory, 32x32x3, 10 classes) through
`jaxdarts.run.search.run_search`
with everything a real run does (input pipeline and augmentation, metrics,
TensorBoard, checkpoints, the per-epoch supernet evaluation and genotype),
then times the same compiled step alone on batches already on the device::

    python benchmarks/run_loop.py --steps_per_epoch=8 --epochs=3

It prints the loop's time per step (from the steps/s it logs, epoch ends
excluded) against the bare step's median and, for every epoch after the
first (which compiles), the epoch's wall time against ``steps_per_epoch``
times the bare step, the ratio of the two, and the same without the
supernet evaluation (timed apart). With few steps per epoch, the epoch's
fixed costs (outputs, checkpoint) dominate the ratio. The default model is
the paper's supernet (``--channels=16 --layers=8``) at batch 16.
"""

import json
import logging
import os
import pathlib
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

# The repository root, for experiments.configs.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

flags.DEFINE_integer('channels', 16, 'Initial channels C.')
flags.DEFINE_integer('layers', 8, 'Cells.')
flags.DEFINE_integer('batch_size', 16, 'Batch size (train and val each).')
flags.DEFINE_integer('steps_per_epoch', 8, 'Steps per epoch.')
flags.DEFINE_integer('epochs', 3, 'Epochs (the first compiles).')
flags.DEFINE_string('hypergradient', 'first_order', 'Hypergradient method.')
FLAGS = flags.FLAGS


class _Clock(logging.Handler):
  """Records when the runner logs the end of each epoch."""

  def __init__(self):
    super().__init__()
    self.epoch_ends: list[float] = []

  def emit(self, record: logging.LogRecord) -> None:
    if 'done: supernet val loss' in record.msg:
      self.epoch_ends.append(time.perf_counter())


def _dataset(directory: str) -> str:
  """A random CIFAR-shaped training set: two halves of whole batches."""
  rng = np.random.default_rng(0)
  count = 2 * FLAGS.steps_per_epoch * FLAGS.batch_size
  path = os.path.join(directory, 'random.npz')
  np.savez(path, images=rng.integers(0, 256, (count, 32, 32, 3), np.uint8),
           labels=rng.integers(0, 10, count), num_classes=np.array(10))
  return f'npz:{path}'


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  from experiments.configs import search as search_configs
  from jaxdarts.core import parallel
  from jaxdarts.run import search
  from jaxdarts.run.evaluate import evaluate
  # pylint: enable=g-import-not-at-top

  clock = _Clock()
  logging.getLogger('jaxdarts.run').addHandler(clock)
  logging.getLogger('jaxdarts.run').setLevel(logging.INFO)
  with tempfile.TemporaryDirectory() as tmp:
    config = search_configs.base_config()
    config.data.name = _dataset(tmp)
    config.model.channels = FLAGS.channels
    config.model.layers = FLAGS.layers
    config.search.batch_size = FLAGS.batch_size
    config.search.epochs = FLAGS.epochs
    config.search.hypergradient = FLAGS.hypergradient
    config.compilation_cache_dir = ''  # Measure the loop, not the cache.
    config.log_every_steps = max(1, FLAGS.steps_per_epoch // 2)
    start = time.perf_counter()
    workdir = os.path.join(tmp, 'workdir')
    result = search.run_search(config, workdir)
    total = time.perf_counter() - start
    # Steps/s between log lines, after the first epoch: the loop's steps
    # without the epoch-end work (evaluation, outputs, checkpoint).
    with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
      rates = [r['steps_per_second'] for r in map(json.loads, f)
               if r['epoch'] > 0 and 'steps_per_second' in r]
    loop_step_s = 1 / statistics.mean(rates)

    # The same compiled step, alone, on batches already on the devices.
    mesh = parallel.make_mesh(config.num_devices)
    halves = search.load_halves(config)
    batches = iter(search.search_batches(config, halves))
    train, val = (parallel.mesh_shard(b, mesh) for b in next(batches))
    state = result.state
    times = []
    for _ in range(FLAGS.steps_per_epoch):
      begin = time.perf_counter()
      state, metrics = parallel.mesh_search_step(state, train, val, mesh=mesh)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - begin)
    begin = time.perf_counter()
    evaluate(state, halves.alphas_half, FLAGS.batch_size, mesh)
    eval_s = time.perf_counter() - begin

  step_s = statistics.median(times)
  bare = FLAGS.steps_per_epoch * step_s
  print(f'C={FLAGS.channels}, {FLAGS.layers} cells, batch {FLAGS.batch_size}, '
        f'{FLAGS.hypergradient}, {FLAGS.steps_per_epoch} steps per epoch; '
        f'run_search took {total:.1f} s in all')
  print(f'step in the loop {loop_step_s:.3f} s, bare {step_s:.3f} s: ratio '
        f'{loop_step_s / step_s:.3f}')
  print(f'{"epoch":>5} {"wall s":>8} {"steps s":>8} {"eval s":>7} '
        f'{"ratio":>6} {"w/o eval":>8}')
  for epoch, (a, b) in enumerate(zip(clock.epoch_ends, clock.epoch_ends[1:]),
                                 start=2):
    print(f'{epoch:>5} {b - a:>8.2f} {bare:>8.2f} {eval_s:>7.2f} '
          f'{(b - a) / bare:>6.3f} {(b - a - eval_s) / bare:>8.3f}')


if __name__ == '__main__':
  app.run(main)
