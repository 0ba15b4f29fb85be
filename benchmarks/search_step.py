"""Cost of one bilevel search step: compile time, step time, peak memory.

Each (batch size, hypergradient) pair runs in its own process, so peak memory
is that configuration's alone. Random data, the paper's supernet by default
(C=16, 8 cells, 4 nodes, 8 primitives, 32x32x3 images, 10 classes)::

    python benchmarks/search_step.py --batch_sizes=16,64 \
        --methods=first_order,exact --steps=5

``init s`` is ``create_search_state`` (mostly compiling the
initialisation), ``trace s`` and ``compile s`` the step's; the last column
projects the paper's 50-epoch CIFAR-10 search from the step time. Model
flags (``--layers=20``, ``--remat_cells``, ``--compute_dtype=bfloat16``,
``--depthwise=conv``) measure the performance options.

``--devices=1,2,4,8`` adds a devices dimension (see the end of the file):
the batch size is then per device, the step the mesh step of
`jaxdarts.core.parallel`, and the table gives steps/s and images/s per device.
On a CPU the devices are fake (they share the cores), so this only shows
the overhead of the mapping; on a GPU or TPU host it shows the scaling.
"""

import functools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list('batch_sizes', ['16'], 'Batch sizes (train and val each).')
flags.DEFINE_list('methods', ['first_order', 'finite_difference', 'exact',
                              'unrolled'], 'Hypergradient methods.')
flags.DEFINE_integer('channels', 16, 'Initial channels C.')
flags.DEFINE_integer('layers', 8, 'Cells.')
flags.DEFINE_integer('image_size', 32, 'Image height and width.')
flags.DEFINE_integer('steps', 5, 'Timed steps after one warm-up step.')
flags.DEFINE_bool('scan_cells', True, "Scan over each stage's normal cells.")
flags.DEFINE_bool('remat_cells', False, 'Rematerialise cells in backward.')
flags.DEFINE_enum('compute_dtype', 'float32', ['float32', 'bfloat16'],
                  'Activation and convolution dtype.')
flags.DEFINE_string('depthwise', None, "'shift' | 'conv'; default per backend.")
flags.DEFINE_string('single', None,
                    'Internal: run one "method:batch:devices" here.')
FLAGS = flags.FLAGS


def measure(method: str, batch_size: int, devices: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jaxdarts  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  shape = (batch_size, FLAGS.image_size, FLAGS.image_size, 3)

  def batch():
    return {'image': rng.normal(size=shape).astype(np.float32),
            'label': rng.integers(0, 10, batch_size).astype(np.int32)}

  model = jaxdarts.SearchNetwork(
      10, channels=FLAGS.channels, layers=FLAGS.layers,
      scan_cells=FLAGS.scan_cells, remat_cells=FLAGS.remat_cells,
      compute_dtype=FLAGS.compute_dtype, depthwise=FLAGS.depthwise)
  start = time.perf_counter()
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, np.zeros(shape, np.float32),
      hypergradient=method, num_steps=1000)
  init_s = time.perf_counter() - start  # Mostly compiling the initialisation.
  step, state, batch = on_devices(devices, state, batch)
  train, val = batch(), batch()
  start = time.perf_counter()
  lowered = step.lower(state, train, val)
  trace_s = time.perf_counter() - start
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start - trace_s
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
  # Device memory on accelerators; on CPU, the process's peak resident size.
  stats = jax.devices()[0].memory_stats() or {}
  peak_gib = (stats['peak_bytes_in_use'] / 2**30 if 'peak_bytes_in_use' in stats
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
  return {'method': method, 'batch': batch_size, 'devices': devices,
          'init_s': init_s, 'trace_s': trace_s,
          'compile_s': compile_s, 'step_s': statistics.median(times),
          'peak_gib': peak_gib, 'backend': jax.default_backend(),
          # What the compiled step allocates beyond its inputs and outputs.
          'temp_gib': memory.temp_size_in_bytes / 2**30 if memory else None}


def paper_search_hours(step_s: float, batch_size: int) -> float:
  """Wall time of the paper's search at this step time: 50 epochs over the
  25k-image weights half of CIFAR-10 (391 steps per epoch at batch 64)."""
  return step_s * 50 * math.ceil(25_000 / batch_size) / 3600


def main(argv):
  del argv
  if FLAGS.single:
    method, batch, devices = FLAGS.single.split(':')
    print(json.dumps(measure(method, int(batch), int(devices))))
    return
  print(f'C={FLAGS.channels}, {FLAGS.layers} cells, '
        f'{FLAGS.image_size}x{FLAGS.image_size}x3, median of {FLAGS.steps} '
        f'steps after warm-up; scan_cells={FLAGS.scan_cells}, '
        f'remat_cells={FLAGS.remat_cells}, {FLAGS.compute_dtype}, '
        f'depthwise={FLAGS.depthwise or "per backend"}', flush=True)
  print(f'{"method":<18} {"batch":>5} {"dev":>3} {"init s":>7} {"trace s":>8} '
        f'{"compile s":>10} {"s/step":>8} {"steps/s":>8} {"img/s/dev":>9} '
        f'{"peak GiB":>9} {"temp GiB":>9} {"search h":>9}', flush=True)
  passthrough = [a for a in sys.argv[1:] if not a.startswith(
      ('--batch_sizes', '--methods', '--devices'))]
  for devices in map(int, FLAGS.devices):
    for batch in FLAGS.batch_sizes:
      for method in FLAGS.methods:
        out = subprocess.run(
            [sys.executable, __file__, f'--single={method}:{batch}:{devices}',
             *passthrough], capture_output=True, text=True, check=False,
            env=device_env(devices))
        if out.returncode:
          print(f'{method:<18} {batch:>5} {devices:>3} failed:\n'
                f'{out.stderr[-2000:]}')
          continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f'{method:<18} {r["batch"]:>5} {devices:>3} {r["init_s"]:>7.1f} '
              f'{r["trace_s"]:>8.1f} '
              f'{r["compile_s"]:>10.1f} {r["step_s"]:>8.2f} '
              f'{1 / r["step_s"]:>8.2f} {r["batch"] / r["step_s"]:>9.1f} '
              f'{r["peak_gib"]:>9.2f} {r["temp_gib"] or float("nan"):>9.2f} '
              f'{paper_search_hours(r["step_s"], r["batch"] * devices):>9.2f}',
              flush=True)


# ---------------------------------------------------------------------------
# The devices dimension: the mesh step of jaxdarts.core.parallel on N devices,
# each with --batch_sizes examples (fake CPU devices where there is no
# accelerator).

flags.DEFINE_list('devices', ['1'], 'Device counts, e.g. 1,2,4,8; the batch '
                  'size is per device.')


def device_env(devices: int) -> dict[str, str]:
  """The environment of a run on ``devices`` devices: on a CPU, that many
  fake ones (the flag only affects the host platform)."""
  xla_flags = os.environ.get('XLA_FLAGS', '')
  return {**os.environ, 'XLA_FLAGS': f'{xla_flags} '
          f'--xla_force_host_platform_device_count={devices}'}


def on_devices(devices: int, state, batch):
  """``(step, state, batch)`` for ``devices``: the jitted search step (one
  device) or the mesh step, the state placed for it and a batch function
  giving ``devices`` times the per-device batch, split over the mesh."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jaxdarts  # pylint: disable=g-import-not-at-top
  from jaxdarts import parallel  # pylint: disable=g-import-not-at-top
  if devices == 1:
    return jaxdarts.search_step, state, batch
  mesh = parallel.make_mesh(devices)

  def global_batch():
    parts = [batch() for _ in range(devices)]
    return parallel.mesh_shard(
        jax.tree.map(lambda *xs: np.concatenate(xs), *parts), mesh)

  step = jax.jit(functools.partial(parallel.mesh_search_step, mesh=mesh),
                 donate_argnums=0)
  return step, parallel.mesh_replicate(state, mesh), global_batch


if __name__ == '__main__':
  app.run(main)
