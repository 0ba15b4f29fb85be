"""Cost of a search step per method, relative to DARTS (first order).

Every registered method (`jaxdarts.methods.METHODS`) runs the first-order
bilevel step on the same random data and supernet, each in a fresh process
so its peak memory is its own::

    python benchmarks/methods.py                     # C=16, 8 cells, batch 64
    python benchmarks/methods.py --channels=8 --layers=5 --batch_size=16 \
        --image_size=16 --steps=3 --methods=darts,pc_darts,gdas

Columns: seconds per step (median of ``--steps`` after a warm-up step),
its ratio to DARTS's, the compiled step's temporary buffers
(``memory_analysis``: what XLA allocates beyond inputs and outputs, on any
backend) and the process's peak memory (device peak on an accelerator,
resident set on a CPU), with their ratios to DARTS's, and the compile
time. The paper's setting: C=16, 8 cells, 4 nodes, the 8 DARTS
primitives, 32x32x3 images, 10 classes, batch 64 (``--batch_size`` each for
the training and the validation batch). A method is built with
``num_steps=--num_steps`` (for schedules); DARTS is always measured, as the
reference.
"""

import json
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list('methods', None, 'Methods to measure (default: all '
                  'registered); darts is always added as the reference.')
flags.DEFINE_integer('channels', 16, 'Initial channels C.')
flags.DEFINE_integer('layers', 8, 'Cells.')
flags.DEFINE_integer('num_nodes', 4, 'Intermediate nodes per cell.')
flags.DEFINE_integer('batch_size', 64, 'Training and validation batch size.')
flags.DEFINE_integer('image_size', 32, 'Image height and width.')
flags.DEFINE_integer('steps', 5, 'Timed steps after one warm-up step.')
flags.DEFINE_integer('num_steps', 1000, "The methods' schedule length.")
flags.DEFINE_string('single', None, 'Internal: measure this method here.')
FLAGS = flags.FLAGS


def measure(name: str) -> dict:
  """One method's step: seconds (median), compile seconds and memory."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jaxdarts  # pylint: disable=g-import-not-at-top
  from jaxdarts import methods  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  shape = (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3)

  def batch():
    return jax.device_put({
        'image': rng.normal(size=shape).astype(np.float32),
        'label': rng.integers(0, 10, FLAGS.batch_size).astype(np.int32)})

  space = jaxdarts.SearchSpace(num_nodes=FLAGS.num_nodes)
  model = space.supernet(10, channels=FLAGS.channels, layers=FLAGS.layers)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, np.zeros(shape, np.float32),
      method=methods.get(name, num_steps=FLAGS.num_steps),
      num_steps=FLAGS.num_steps)
  state = jax.device_put(state, jax.devices()[0])
  train, val = batch(), batch()
  start = time.perf_counter()
  compiled = jaxdarts.search_step.lower(state, train, val).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  state, metrics = compiled(state, train, val)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(FLAGS.steps):
    train, val = batch(), batch()
    start = time.perf_counter()
    state, metrics = compiled(state, train, val)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  stats = jax.devices()[0].memory_stats() or {}
  peak_mib = (stats['peak_bytes_in_use'] / 2**20
              if 'peak_bytes_in_use' in stats
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10)
  return {'method': name, 'step_s': statistics.median(times),
          'compile_s': compile_s, 'peak_mib': peak_mib,
          'temp_mib': memory.temp_size_in_bytes / 2**20 if memory else None,
          'backend': jax.default_backend()}


def main(argv):
  del argv
  if FLAGS.single:
    print(json.dumps(measure(FLAGS.single)))
    return
  from jaxdarts import methods  # pylint: disable=g-import-not-at-top
  names = ['darts'] + [n for n in (FLAGS.methods or sorted(methods.METHODS))
                       if n != 'darts']
  print(f'C={FLAGS.channels}, {FLAGS.layers} cells, {FLAGS.num_nodes} nodes, '
        f'batch {FLAGS.batch_size}, {FLAGS.image_size}x{FLAGS.image_size}x3, '
        f'first order, median of {FLAGS.steps} steps after warm-up',
        flush=True)
  print(f'{"method":<14} {"s/step":>8} {"x darts":>8} {"temp MiB":>9} '
        f'{"x darts":>8} {"peak MiB":>9} {"x darts":>8} {"compile s":>10}',
        flush=True)
  passthrough = [a for a in sys.argv[1:] if not a.startswith('--methods')]
  reference = None
  for name in names:
    out = subprocess.run(
        [sys.executable, __file__, f'--single={name}', *passthrough],
        capture_output=True, text=True, check=False)
    if out.returncode:
      print(f'{name:<14} failed:\n{out.stderr[-2000:]}', flush=True)
      continue
    r = json.loads(out.stdout.strip().splitlines()[-1])
    reference = reference or r
    temp, ref_temp = r['temp_mib'] or float('nan'), reference['temp_mib']
    print(f'{name:<14} {r["step_s"]:>8.3f} '
          f'{r["step_s"] / reference["step_s"]:>8.2f} {temp:>9.1f} '
          f'{temp / (ref_temp or float("nan")):>8.2f} '
          f'{r["peak_mib"]:>9.0f} '
          f'{r["peak_mib"] / reference["peak_mib"]:>8.2f} '
          f'{r["compile_s"]:>10.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
