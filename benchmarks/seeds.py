"""Several seeds in one vmapped program against separate one-seed runs.

For a search preset, times in one process: the one-seed search step that
``run_search`` runs (``separate``: what each of N separate runs compiles
and steps), then the vmapped step of ``config.search.seeds = N``
(`jaxdarts.core.seeds`) for every N asked: compile seconds, seconds per
step (median of ``--steps`` after a warm-up), seconds per step per seed,
and the vmapped step against N separate steps run one after the other::

    python benchmarks/seeds.py --preset=digits --seeds=1,2,4 --steps=20
    python benchmarks/seeds.py --preset=first_order --random_cifar \\
        --batch_size=16 --seeds=1,2 --steps=2

Batches are the preset's (seed i's own stream); ``--random_cifar`` swaps
the data for random 32x32x3 images in 10 classes (an ``npz:`` dataset in
a temporary directory), the paper's supernet shape. No compilation cache.
"""

import json
import pathlib
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

# The repository root, for experiments.configs.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

flags.DEFINE_string('preset', 'digits', 'A preset of configs/search.py.')
flags.DEFINE_list('seeds', ['1', '2', '4'], 'Numbers of seeds N to time.')
flags.DEFINE_integer('steps', 20, 'Timed steps after one warm-up step.')
flags.DEFINE_integer('batch_size', None, 'Overrides search.batch_size.')
flags.DEFINE_bool('random_cifar', False, 'Random 32x32x3 data, 10 classes.')
FLAGS = flags.FLAGS


def _random_cifar(directory: str, batch_size: int) -> str:
  rng = np.random.default_rng(0)
  count = 2 * 4 * batch_size  # Two halves of 4 batches.
  path = pathlib.Path(directory) / 'random.npz'
  np.savez(path, images=rng.integers(0, 256, (count, 32, 32, 3), np.uint8),
           labels=rng.integers(0, 10, count), num_classes=np.array(10))
  return f'npz:{path}'


def _time(step, state, batches):
  """Compile seconds, then the median seconds of the timed steps."""
  import jax  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  state, metrics = step(state, *batches[0])
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for k in range(FLAGS.steps):
    start = time.perf_counter()
    state, metrics = step(state, *batches[1 + k % (len(batches) - 1)])
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  return compile_s, statistics.median(times)


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  import jax
  from experiments.configs import search as configs
  from jaxdarts import data as data_lib
  from jaxdarts.core import parallel
  from jaxdarts.core import seeds as seeds_lib
  from jaxdarts.run import search
  from jaxdarts.run import seeds as seeds_run
  # pylint: enable=g-import-not-at-top
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    config = configs.get_config(FLAGS.preset)
    if FLAGS.batch_size:
      config.search.batch_size = FLAGS.batch_size
    if FLAGS.random_cifar:
      config.data.name = _random_cifar(tmp, config.search.batch_size)
    mesh = parallel.make_mesh(1)
    halves = search.load_halves(config)
    steps = search.search_batches(config, halves).steps_per_epoch
    num_steps = config.search.epochs * steps
    positions = [data_lib.Position.from_global_step(k, steps)
                 for k in range(min(steps, 8))]

    # The one-seed step of run_search: what every separate run does.
    state = parallel.mesh_replicate(
        search.initial_state(config, halves, num_steps), mesh)
    stream = search.search_batches(config, halves)
    batches = [tuple(parallel.mesh_shard(b, mesh) for b in stream.at(p))
               for p in positions]
    step = lambda s, t, v: parallel.mesh_search_step(s, t, v, mesh=mesh)
    compile_s, single = _time(step, state, batches)
    rows.append(dict(what='separate (one seed)', seeds=1, compile_s=compile_s,
                     step_s=single, per_seed_s=single, vs_separate=1.0))
    print(json.dumps(rows[-1]), flush=True)
    del state

    for count in map(int, FLAGS.seeds):
      config.search.seeds = count
      states = parallel.mesh_replicate(
          seeds_run.initial_states(config, halves, num_steps), mesh)
      stream = seeds_run.SeedBatches(config, halves)
      batches = [tuple(seeds_lib.mesh_shard_seeds(b, mesh)
                       for b in stream.at(p)) for p in positions]
      step = lambda s, t, v: seeds_lib.mesh_seeds_step(s, t, v, mesh=mesh)
      compile_s, step_s = _time(step, states, batches)
      rows.append(dict(what='vmapped', seeds=count, compile_s=compile_s,
                       step_s=step_s, per_seed_s=step_s / count,
                       vs_separate=step_s / (count * single)))
      print(json.dumps(rows[-1]), flush=True)
      del states
  print(f'\n{jax.device_count()} {jax.default_backend()} device(s); preset '
        f'{FLAGS.preset}, batch {config.search.batch_size}, C='
        f'{config.model.channels}, {config.model.layers} cells\n')
  print('| step | seeds | compile s | s/step | s/step/seed | vs N separate |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  for r in rows:
    print(f'| {r["what"]} | {r["seeds"]} | {r["compile_s"]:.1f} | '
          f'{r["step_s"]:.4f} | {r["per_seed_s"]:.4f} | '
          f'{r["vs_separate"]:.2f} |')


if __name__ == '__main__':
  app.run(main)
