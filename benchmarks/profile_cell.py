"""Where one search cell's forward and backward spend their time, by op kind.

Profiles one normal search cell (C=16 at 32x32, inputs of 4C channels, batch
16 by default: the supernet's first stage) in the PyTorch reference
(quark0/darts ``cnn/model_search.Cell``, imported from ``--reference_dir``)
and in jaxdarts (``SearchCell``), each in its own subprocess, and prints the
time per kind of op: depthwise and 1x1 convolutions, BatchNorm, pooling,
the mixing sum, copies/pads/concatenations, ReLU, the rest::

    python benchmarks/profile_cell.py --reference_dir=/tmp/darts

Both compute the gradient of ``sum(cell(s0, s1, softmax(alpha)) * r)``
(fixed random ``r``) in the weights, the alphas and both inputs, BatchNorm
on batch statistics.

* torch: ``torch.profiler``, self CPU time per aten op (the op's own time,
  its sub-ops excluded), grouped by input shapes so that a convolution's
  weight ``[C, 1, k, k]`` marks it depthwise.
* jaxdarts: ``jax.profiler`` on XLA:CPU, the duration of every executed
  thunk (a fused kernel or a library call) of the compiled gradient, put in
  a kind by its HLO instruction's root op: the JAX op name (``dot_general``,
  ``concatenate``, ...) and the module path (``BatchNorm_0``, ``bn_1``, ...)
  in its metadata; pooling and depthwise convolutions are marked by wrapping
  their functions in ``jax.named_scope`` here. XLA runs independent thunks
  concurrently, so the kinds add up to more than the wall time.
"""

import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_lib  # pylint: disable=g-import-not-at-top,g-bad-import-order

flags.DEFINE_string('reference_dir', None, 'A clone of quark0/darts.')
flags.DEFINE_list('sides', ['torch', 'jax'], 'Which to profile.')
flags.DEFINE_integer('batch_size', 16, 'Batch size.')
flags.DEFINE_integer('channels', 16, 'C of the cell (inputs have 4C).')
flags.DEFINE_integer('image_size', 32, 'Height and width.')
flags.DEFINE_integer('steps', 5, 'Profiled runs after two warm-ups.')
flags.DEFINE_integer('threads', 2, 'CPU threads for each side.')
flags.DEFINE_string('dump_hlo', None, "Write jax's optimised HLO here.")
flags.DEFINE_integer('top', 12, "Print jax's slowest thunks.")
flags.DEFINE_string('single', None, 'Internal: profile one side here.')
FLAGS = flags.FLAGS

KINDS = ('depthwise conv', '1x1 conv', 'BatchNorm', 'pooling', 'mixing sum',
         'copy/pad/concat', 'ReLU', 'other')


# ---------------------------------------------------------------------------
# torch


def torch_kind(name: str, shapes) -> str:
  """The kind of the aten op ``name`` with input ``shapes``."""
  name = name.removeprefix('aten::')
  if 'conv' in name:
    weight = shapes[2] if 'backward' in name else shapes[1]
    return ('depthwise conv' if len(weight) == 4 and weight[1] == 1
            else '1x1 conv')
  if 'batch_norm' in name:
    return 'BatchNorm'
  if 'pool' in name:
    return 'pooling'
  if name in ('mul', 'mul_', 'add', 'add_', 'sum'):
    return 'mixing sum'
  if name in ('relu', 'relu_', 'threshold_backward'):
    return 'ReLU'
  if name in ('cat', 'copy_', 'clone', 'contiguous', 'constant_pad_nd',
              'slice_backward', 'fill_', 'zero_', 'zeros_like', 'empty_like',
              'as_strided', 'slice', 'narrow', 'view', 'reshape', 'zeros',
              'empty', 'new_zeros', 'empty_strided', 'select_backward'):
    return 'copy/pad/concat'
  return 'other'


def profile_torch() -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  from torch import profiler  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(FLAGS.threads)
  reference_lib.patch_torch_for_cpu(torch)
  sys.path.insert(0, reference_lib.reference_cnn_dir(FLAGS.reference_dir))
  import model_search  # pylint: disable=g-import-not-at-top,import-error

  torch.manual_seed(0)
  c, n, hw = FLAGS.channels, FLAGS.batch_size, FLAGS.image_size
  cell = model_search.Cell(4, 4, 4 * c, 4 * c, c, False, False)
  alphas = (1e-3 * torch.randn(14, 8)).requires_grad_()
  s0 = torch.randn(n, 4 * c, hw, hw, requires_grad=True)
  s1 = torch.randn(n, 4 * c, hw, hw, requires_grad=True)
  r = torch.randn(n, 4 * c, hw, hw)
  leaves = [*cell.parameters(), alphas, s0, s1]

  def run():
    out = cell(s0, s1, torch.softmax(alphas, -1))
    torch.autograd.grad((out * r).sum(), leaves)

  for _ in range(2):
    run()
  times = []
  with profiler.profile(activities=[profiler.ProfilerActivity.CPU],
                        record_shapes=True) as prof:
    for _ in range(FLAGS.steps):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
  per_kind = collections.Counter()
  for event in prof.key_averages(group_by_input_shape=True):
    per_kind[torch_kind(event.key, event.input_shapes)] += (
        event.self_cpu_time_total / 1e3 / FLAGS.steps)  # us -> ms per run
  return {'wall_ms': 1e3 * statistics.median(times), 'kinds': per_kind,
          'version': torch.__version__}


# ---------------------------------------------------------------------------
# jax


def scoped(name, fn):
  import jax  # pylint: disable=g-import-not-at-top

  def wrapped(*args, **kwargs):
    with jax.named_scope(name):
      return fn(*args, **kwargs)
  return wrapped


def hlo_kinds(hlo_text: str) -> dict[str, tuple[dict[str, float], str]]:
  """``{instruction: ({kind: share}, description)}`` for the optimised HLO.

  A fused kernel's time is shared among kinds in proportion to the number
  of its fused ops of each kind (parameters, constants and bitcasts
  excluded); any other instruction is one kind.
  """
  instr = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?\b([a-z\-]+)\(')
  top, fused, current = {}, collections.defaultdict(list), None
  for line in hlo_text.splitlines():
    header = re.match(r'^%?([\w.\-]+) .*\{$', line)
    if header and ' = ' not in line:
      current = header.group(1)
      continue
    m = instr.match(line)
    if not m:
      continue
    op_name = re.search(r'op_name="([^"]*)"', line)
    op_name = op_name.group(1) if op_name else ''
    called = re.search(r'calls=%?([\w.\-]+)', line)
    top[m.group(1)] = (m.group(2), op_name, called and called.group(1))
    if m.group(2) not in ('parameter', 'constant', 'bitcast', 'tuple',
                          'get-tuple-element'):
      fused[current].append((m.group(2), op_name))
  kinds = {}
  for name, (opcode, op_name, called) in top.items():
    if opcode == 'fusion' and fused.get(called):
      counts = collections.Counter(
          jax_kind(o, n or op_name) for o, n in fused[called])
      total = sum(counts.values())
      share = {k: v / total for k, v in counts.items()}
    else:
      share = {jax_kind(opcode, op_name): 1.0}
    kinds[name] = (share, f'{opcode} {op_name}')
  return kinds


def jax_kind(opcode: str, op_name: str) -> str:
  """The kind of an HLO instruction by its root op and JAX op name."""
  if 'pool' in op_name:
    return 'pooling'
  if 'depthwise' in op_name:
    return 'depthwise conv'
  if re.search(r'/(BatchNorm_\d+|pool_bn|bn_\d+)/', op_name):
    return 'BatchNorm'
  last = op_name.rsplit('/', 1)[-1]
  if last == 'dot_general' or opcode in ('dot', 'convolution'):
    return '1x1 conv'
  if last in ('max', 'relu') or 'relu' in op_name:
    return 'ReLU'
  if last in ('concatenate', 'pad', 'slice', 'dynamic_slice', 'transpose',
              'copy', 'broadcast_in_dim', 'reshape', 'squeeze',
              'dynamic_update_slice', 'gather', 'select_n') or opcode in (
                  'copy', 'concatenate', 'pad', 'slice', 'transpose',
                  'bitcast', 'broadcast', 'dynamic-update-slice'):
    return 'copy/pad/concat'
  if last in ('mul', 'add', 'add_any', 'reduce_sum'):
    return 'mixing sum'
  return 'other'


def profile_jax() -> dict:
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax._src.lib import _profiler  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jaxdarts  # pylint: disable=g-import-not-at-top
  from jaxdarts.spaces.darts_cnn import cell as cell_lib  # pylint: disable=g-import-not-at-top
  from jaxdarts.spaces.darts_cnn import ops  # pylint: disable=g-import-not-at-top

  ops.max_pool = scoped('max_pool', ops.max_pool)
  ops.avg_pool = scoped('avg_pool', ops.avg_pool)
  ops.depthwise_conv = scoped('depthwise', ops.depthwise_conv)

  c, n, hw = FLAGS.channels, FLAGS.batch_size, FLAGS.image_size
  rng = np.random.default_rng(0)
  s0, s1, r = (jnp.asarray(rng.normal(size=(n, hw, hw, 4 * c)), jnp.float32)
               for _ in range(3))
  cell = cell_lib.SearchCell(jaxdarts.DARTS_SPACE, c, False, False)
  alphas = jnp.asarray(1e-3 * rng.normal(size=(14, 8)), jnp.float32)
  variables = cell.init(jax.random.key(0), s0, s1,
                        jax.nn.softmax(alphas), True)

  def loss(params, alphas, s0, s1):
    out, _ = cell.apply({**variables, 'params': params}, s0, s1,
                        jax.nn.softmax(alphas), True, mutable=['batch_stats'])
    return jnp.sum(out * r)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
  args = (variables['params'], alphas, s0, s1)
  compiled = grad.lower(*args).compile()
  kinds = hlo_kinds(compiled.as_text())
  if FLAGS.dump_hlo:
    with open(FLAGS.dump_hlo, 'w') as f:
      f.write(compiled.as_text())
  for _ in range(2):
    jax.block_until_ready(compiled(*args))
  session = _profiler.ProfilerSession()
  times = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  data = jax.profiler.ProfileData.from_serialized_xspace(session.stop())
  per_kind, unmatched = collections.Counter(), collections.Counter()
  per_instruction = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      covered = 0  # Thunks inside a counted one (a while loop's) are in it.
      for event in sorted(line.events, key=lambda e: e.start_ns):
        if event.name in kinds:
          if event.start_ns < covered:
            continue
          covered = event.end_ns
          ms = event.duration_ns / 1e6 / FLAGS.steps
          for kind, share in kinds[event.name][0].items():
            per_kind[kind] += share * ms
          per_instruction[event.name] += ms
        elif not event.name.startswith(('end: ', 'Thread', 'Thunk')):
          unmatched[event.name] += event.duration_ns / 1e6 / FLAGS.steps
  return {'wall_ms': 1e3 * statistics.median(times), 'kinds': per_kind,
          'version': jax.__version__,
          'thunks': len(per_instruction),
          'top': [(name, round(ms, 2),
                   max(kinds[name][0], key=kinds[name][0].get),
                   kinds[name][1]) for name, ms in
                  per_instruction.most_common(FLAGS.top)],
          'unmatched_top': unmatched.most_common(5)}


def main(argv):
  del argv
  if FLAGS.single:
    reference_lib.limit_cores(FLAGS.threads)
    result = profile_torch() if FLAGS.single == 'torch' else profile_jax()
    print(json.dumps(result))
    return
  if 'torch' in FLAGS.sides and not FLAGS.reference_dir:
    sys.exit('profile_cell.py: --reference_dir (a clone of quark0/darts) is '
             'required for the torch side, or pass --sides=jax.')
  results = {}
  for side in FLAGS.sides:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f'--single={side}',
         *[a for a in sys.argv[1:] if not a.startswith('--sides')]],
        capture_output=True, text=True, check=False)
    if out.returncode:
      print(f'{side} failed:\n{out.stderr[-3000:]}')
      continue
    results[side] = json.loads(out.stdout.strip().splitlines()[-1])
  print(f'One normal cell, C={FLAGS.channels}, {FLAGS.image_size}x'
        f'{FLAGS.image_size}, batch {FLAGS.batch_size}, forward + backward, '
        f'{FLAGS.threads} threads; ms per run (median wall; kinds: mean over '
        f'{FLAGS.steps} runs)')
  sides = list(results)
  print(f'| kind | {" | ".join(sides)} |')
  print(f'| --- |{" ---: |" * len(sides)}')
  for kind in KINDS:
    cells = [f'{results[s]["kinds"].get(kind, 0.0):.1f}' for s in sides]
    print(f'| {kind} | {" | ".join(cells)} |')
  totals = [f'{sum(results[s]["kinds"].values()):.1f}' for s in sides]
  print(f'| sum of kinds | {" | ".join(totals)} |')
  walls = [f'{results[s]["wall_ms"]:.1f}' for s in sides]
  print(f'| wall (median) | {" | ".join(walls)} |')
  for s in sides:
    print(s, json.dumps({k: v for k, v in results[s].items()
                         if k not in ('kinds', 'top')}))
    for row in results[s].get('top', []):
      print('  ', *row[:3], row[3][-110:])


if __name__ == '__main__':
  app.run(main)
