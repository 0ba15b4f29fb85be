"""jaxdarts's search step against the PyTorch reference, side by side.

One invocation times both implementations back to back on this machine:
the reference (Liu et al., 2019, github.com/quark0/darts, ``cnn/``:
``Architect.step`` followed by the weight step of its ``train_search.py``,
SGD with momentum and the gradient clipped to norm 5) and jaxdarts's
``search_step``, at the same shapes (C=16, 8 cells, 32x32x3 random images,
10 classes by default), each in its own fresh subprocess so that each
process's peak resident memory (``getrusage`` of that child) is its own::

    python3 -m pip install torch==2.13.0   # or: pip install .[reference]
    git clone https://github.com/quark0/darts /tmp/darts
    python benchmarks/vs_reference.py --reference_dir=/tmp/darts \\
        --batch_sizes=16 --methods=first_order,finite_difference,exact

Methods pair as follows: ``first_order`` with the reference's first order
(``unrolled=False``); ``finite_difference`` and ``exact`` (and
``unrolled``) with its second order (``unrolled=True``, the finite-difference
Hessian-vector product of the paper's eq. 8), which is timed once per batch
size and shared by those rows. ``speed`` is the reference's seconds per step
over jaxdarts's. jaxdarts's ``compile s`` is its initialisation plus the
step's trace and compile; the reference has none (its first, untimed step
is shown as ``warm-up s``).

The reference is imported from ``--reference_dir`` at run time (the clone's
root or its ``cnn/`` directory); nothing of it is copied here. Its CPU run
needs only in-memory patches: ``.cuda()`` becomes a no-op, and the
deprecated ``add_(scalar, tensor)`` / ``sub_``/``sub`` overloads it uses are
rewritten to ``(tensor, alpha=scalar)`` only if the installed torch refuses
them (torch 2.13 still accepts them, with a warning).

Both sides run with ``--threads`` CPU threads: torch via
``torch.set_num_threads`` and XLA by restricting the process to that many
cores (XLA:CPU sizes its thread pool by the schedulable cores). Run it on
an otherwise idle machine: with other jobs on the same cores, torch's
OpenMP threads wait for each other at every op and its step slows down
many-fold (on the 2-core development machine at a load of 10, a tiny
supernet's forward and backward took 10-31 s with 2 threads against 0.4 s
with 1), so the script prints each child's 1-minute load average and warns
when it exceeds the core count.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_lib import limit_cores  # pylint: disable=g-import-not-at-top,g-bad-import-order
from reference_lib import patch_torch_for_cpu  # pylint: disable=g-import-not-at-top,g-bad-import-order
from reference_lib import reference_cnn_dir  # pylint: disable=g-import-not-at-top,g-bad-import-order
from reference_lib import require_torch  # pylint: disable=g-import-not-at-top,g-bad-import-order

flags.DEFINE_string('reference_dir', None, 'A clone of quark0/darts (its '
                    'root or its cnn/ directory).')
flags.DEFINE_list('batch_sizes', ['16'], 'Batch sizes (train and val each).')
flags.DEFINE_list('methods', ['first_order', 'finite_difference', 'exact'],
                  'jaxdarts hypergradients (see the module docstring for '
                  'their reference counterparts).')
flags.DEFINE_list('sides', ['reference', 'jaxdarts'], 'Which to run.')
flags.DEFINE_integer('channels', 16, 'Initial channels C.')
flags.DEFINE_integer('layers', 8, 'Cells.')
flags.DEFINE_integer('image_size', 32, 'Image height and width.')
flags.DEFINE_integer('steps', 3, 'Timed steps (median) after one warm-up.')
flags.DEFINE_integer('threads', 2, 'CPU threads for each side.')
flags.DEFINE_string('single', None,
                    'Internal: run one "side:method:batch" here.')
FLAGS = flags.FLAGS

HYPERGRADIENTS = ('first_order', 'finite_difference', 'exact', 'unrolled')


def check_flags() -> None:
  """Validates the flags before any subprocess starts.

  Raises:
    ValueError: a bad flag value.
    ImportError: the reference side without torch.
  """
  unknown = set(FLAGS.methods) - set(HYPERGRADIENTS)
  if unknown:
    raise ValueError(f'--methods: unknown {sorted(unknown)}; choose from '
                     f'{", ".join(HYPERGRADIENTS)}.')
  bad_sides = set(FLAGS.sides) - {'reference', 'jaxdarts'}
  if bad_sides or not FLAGS.sides:
    raise ValueError('--sides: a subset of reference,jaxdarts.')
  if any(not b.isdigit() or int(b) < 1 for b in FLAGS.batch_sizes):
    raise ValueError(f'--batch_sizes: positive integers, got '
                     f'{FLAGS.batch_sizes}.')
  if 'reference' in FLAGS.sides:
    if not FLAGS.reference_dir:
      raise ValueError('--reference_dir is required for the reference side '
                       '(a clone of https://github.com/quark0/darts), or '
                       'pass --sides=jaxdarts.')
    reference_cnn_dir(FLAGS.reference_dir)
    require_torch()


# ---------------------------------------------------------------------------
# The reference side.


def measure_reference(unrolled: bool, batch_size: int) -> dict:
  """Times the reference's search step (train_search.py's loop body)."""
  import types  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  warnings.filterwarnings('ignore', category=UserWarning)
  torch.set_num_threads(FLAGS.threads)
  patch_torch_for_cpu(torch)
  sys.path.insert(0, reference_cnn_dir(FLAGS.reference_dir))
  import architect  # pylint: disable=g-import-not-at-top,import-error
  import model_search  # pylint: disable=g-import-not-at-top,import-error

  torch.manual_seed(0)
  criterion = torch.nn.CrossEntropyLoss()
  model = model_search.Network(FLAGS.channels, 10, FLAGS.layers, criterion)
  lr = 0.025  # The paper's; the cosine schedule's first value.
  optimizer = torch.optim.SGD(model.parameters(), lr, momentum=0.9,
                              weight_decay=3e-4)
  args = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4,
                               arch_learning_rate=3e-4, arch_weight_decay=1e-3)
  arch = architect.Architect(model, args)
  shape = (batch_size, 3, FLAGS.image_size, FLAGS.image_size)

  def batch():
    return torch.randn(shape), torch.randint(0, 10, (batch_size,))

  def step():
    (x, y), (xv, yv) = batch(), batch()
    model.train()
    arch.step(x, y, xv, yv, lr, optimizer, unrolled=unrolled)
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return loss.item()

  start = time.perf_counter()
  step()  # Also creates the momentum buffers the second order reads.
  warmup_s = time.perf_counter() - start
  times = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return {'warmup_s': warmup_s, 'step_s': statistics.median(times),
          'times': times, 'version': torch.__version__}


# ---------------------------------------------------------------------------
# The jaxdarts side.


def measure_jaxdarts(method: str, batch_size: int) -> dict:
  """Times ``jaxdarts.search_step`` after compiling it."""
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jaxdarts  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  shape = (batch_size, FLAGS.image_size, FLAGS.image_size, 3)

  def batch():
    return {'image': rng.normal(size=shape).astype(np.float32),
            'label': rng.integers(0, 10, batch_size).astype(np.int32)}

  model = jaxdarts.SearchNetwork(10, channels=FLAGS.channels,
                                 layers=FLAGS.layers)
  start = time.perf_counter()
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, np.zeros(shape, np.float32),
      hypergradient=method, num_steps=1000)
  init_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = jaxdarts.search_step.lower(state, batch(), batch()).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  state, metrics = compiled(state, batch(), batch())
  jax.block_until_ready(metrics)
  times = []
  for _ in range(FLAGS.steps):
    train, val = batch(), batch()
    start = time.perf_counter()
    state, metrics = compiled(state, train, val)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return {'init_s': init_s, 'compile_s': compile_s,
          'step_s': statistics.median(times), 'times': times,
          'temp_gib': memory.temp_size_in_bytes / 2**30 if memory else None,
          'version': jax.__version__}


# ---------------------------------------------------------------------------
# The parent: one fresh subprocess per measurement.


def run_child(side: str, method: str, batch_size: int) -> dict:
  """Runs one measurement in a fresh subprocess; adds its peak RSS."""
  flags_to_pass = [a for a in sys.argv[1:] if not a.startswith(
      ('--single', '--methods', '--batch_sizes', '--sides'))]
  cmd = [sys.executable, os.path.abspath(__file__),
         f'--single={side}:{method}:{batch_size}', *flags_to_pass]
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryFile('w+') as out, \
      tempfile.TemporaryFile('w+') as err:
    proc = subprocess.Popen(cmd, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
  if proc.returncode:
    return {'error': stderr[-3000:] or f'exit {proc.returncode}'}
  result = json.loads(stdout.strip().splitlines()[-1])
  result['peak_gib'] = usage.ru_maxrss / 2**20  # KiB on Linux.
  # Other jobs on a shared machine: the 1-minute load before and after.
  result['load'] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.single:
    side, method, batch = FLAGS.single.split(':')
    limit_cores(FLAGS.threads)
    if side == 'reference':
      result = measure_reference(method == 'second_order', int(batch))
    else:
      result = measure_jaxdarts(method, int(batch))
    print(json.dumps(result))
    return
  try:
    check_flags()
  except (ValueError, ImportError) as e:
    sys.exit(f'vs_reference.py: {e}')
  print(f'C={FLAGS.channels}, {FLAGS.layers} cells, '
        f'{FLAGS.image_size}x{FLAGS.image_size}x3 random data, '
        f'{FLAGS.threads} threads per side, median of {FLAGS.steps} steps '
        f'after one; {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}',
        flush=True)
  print(f'{"method":<18} {"batch":>5} {"ref s/step":>10} {"ref GiB":>8} '
        f'{"warm-up s":>9} {"jax s/step":>10} {"jax GiB":>8} {"temp GiB":>8} '
        f'{"compile s":>9} {"speed":>6}', flush=True)
  for batch in map(int, FLAGS.batch_sizes):
    references = {}
    for method in FLAGS.methods:
      ref_method = 'first_order' if method == 'first_order' else 'second_order'
      if 'reference' in FLAGS.sides and ref_method not in references:
        references[ref_method] = run_child('reference', ref_method, batch)
      ref = references.get(ref_method, {})
      jax_ = (run_child('jaxdarts', method, batch)
              if 'jaxdarts' in FLAGS.sides else {})
      for name, r in (('reference', ref), ('jaxdarts', jax_)):
        if max(r.get('load', [0]) or [0]) > os.cpu_count():
          print(f'warning: the {name} side ran with a 1-minute load of '
                f'{r["load"]} on {os.cpu_count()} cores: other jobs shared '
                'them (torch\'s OpenMP threads slow down many-fold then).',
                flush=True)
        if 'error' in r:
          print(f'{method} batch {batch}: the {name} side failed:\n'
                f'{r["error"]}', flush=True)
      nan = float('nan')
      ref_s, jax_s = ref.get('step_s', nan), jax_.get('step_s', nan)
      compile_s = jax_.get('init_s', nan) + jax_.get('compile_s', nan)
      print(f'{method:<18} {batch:>5} {ref_s:>10.2f} '
            f'{ref.get("peak_gib", nan):>8.2f} {ref.get("warmup_s", nan):>9.2f} '
            f'{jax_s:>10.2f} {jax_.get("peak_gib", nan):>8.2f} '
            f'{jax_.get("temp_gib") or nan:>8.2f} {compile_s:>9.1f} '
            f'{ref_s / jax_s:>5.2f}x', flush=True)
      print('  ' + json.dumps({'reference': ref, 'jaxdarts': jax_}),
            flush=True)


if __name__ == '__main__':
  app.run(main)
