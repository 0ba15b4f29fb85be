"""The contract every registered search method keeps, on 4 fake devices.

`test_methods.py` runs this in a subprocess with 4 fake CPU devices
(``--xla_force_host_platform_device_count=4``)::

    python tests/contract.py OUT

For each method of `jaxdarts.methods.METHODS`, on a tiny DARTS supernet:
two steps on one device give finite metrics and a valid genotype; a state
checkpointed after the first step and restored continues bitwise as the
uninterrupted run; and a step on the 4-device mesh equals the one-device
step. On a tiny NAS-Bench-201-style supernet (the second space, which
every method runs on unchanged): a step gives finite metrics and a valid
genotype of that space. Writes ``OUT/report.json``: each method's name and
``'ok'`` or its traceback.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'tests')]
# XLA:CPU compiles these programs about twice as fast with its older
# fusion emitters (benchmarks/RESULTS.md); what they compute is the same
# mathematics, and every comparison below is within one compiled program or
# between two compiled alike.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                           + ' --xla_cpu_use_fusion_emitters=false')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp

import jaxdarts
from jaxdarts import methods, spaces
from jaxdarts.core import parallel
from jaxdarts.run.checkpoint import Checkpointer
from tiny import random_batch
# pylint: enable=g-import-not-at-top,wrong-import-position

TOLERANCE = 1e-5
WORKERS = 2
NUM_STEPS = 10
# One node and four ops: every kind of op (zero, pooling, identity, a
# convolution) on the cheapest cell that has them.
SPACE = jaxdarts.SearchSpace(
    ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3'), num_nodes=1)
# Three nodes (a node with two incoming edges, for PC-DARTS's edge
# normalisation), a zero, an identity and a convolution.
NB201 = spaces.get('nb201', primitives=(
    'none', 'skip_connect', 'nor_conv_3x3'), num_nodes=3)


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


def _raw(tree):
  """``tree`` with typed PRNG keys as their key data."""
  return jax.tree.map(
      lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
          x.dtype, jax.dtypes.prng_key) else x, tree)


def _assert_close(what, got, want, atol=TOLERANCE):
  got, want = jax.device_get(_raw((got, want)))
  for i, (x, y) in enumerate(zip(jax.tree.leaves(got),
                                 jax.tree.leaves(want), strict=True)):
    np.testing.assert_allclose(np.asarray(x, np.float64),
                               np.asarray(y, np.float64), rtol=0, atol=atol,
                               err_msg=f'{what}, leaf {i}')


def check(name: str, out: Path) -> None:
  """One method's contract (see the module docstring)."""
  model = SPACE.supernet(4, channels=4, layers=3)
  train, val = random_batch(1, batch=8), random_batch(2, batch=8)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, train['image'],
      method=methods.get(name, num_steps=NUM_STEPS), num_steps=NUM_STEPS)
  # Committed to the device like the step's outputs, so the step compiles
  # once for both steps and the resume (uncommitted inputs would key a
  # second compilation).
  state, train, val = jax.device_put((state, train, val), jax.devices()[0])
  first, metrics = jaxdarts.search_step(_copy(state), train, val)
  second, more = jaxdarts.search_step(_copy(first), train, val)
  _assert_finite(metrics, more)
  genotype = second.genotype()
  if hasattr(genotype, 'validate'):
    genotype.validate(SPACE)

  # Resume: checkpoint after the first step, restore, step again.
  with Checkpointer(out / name, keep=1) as ckpt:
    ckpt.save(1, first, {})
    ckpt.wait()
    restored, _, _ = ckpt.restore_latest(jax.eval_shape(lambda: state))
  resumed, _ = jaxdarts.search_step(restored, train, val)
  _assert_close('resumed', resumed, second, atol=0)

  mesh = parallel.make_mesh()
  meshed, mesh_metrics = parallel.mesh_search_step(
      parallel.mesh_replicate(state, mesh), parallel.mesh_shard(train, mesh),
      parallel.mesh_shard(val, mesh), mesh=mesh)
  _assert_close('mesh state', meshed, first)
  _assert_close('mesh metrics', mesh_metrics, metrics)
  check_nb201(name, train, val)


def _assert_finite(*step_metrics):
  for metrics in step_metrics:
    bad = {k: float(v) for k, v in metrics.items()
           if not math.isfinite(float(v))}
    assert not bad, f'non-finite metrics {bad}'


def check_nb201(name: str, train, val) -> None:
  """One step of ``name`` on the tiny NB201 supernet: finite, and its
  genotype one of that space (NAS-Bench-201's string form)."""
  state = jaxdarts.create_search_state(
      jax.random.key(0), NB201.supernet(4, channels=4, layers=3),
      train['image'], method=methods.get(name, num_steps=NUM_STEPS),
      num_steps=NUM_STEPS)
  state, metrics = jaxdarts.search_step(state, train, val)
  _assert_finite(metrics)
  genotype = state.genotype()
  assert NB201.parse_genotype(str(genotype)) == genotype, genotype


def _outcome(name: str, out: Path) -> str:
  start = time.perf_counter()
  try:
    check(name, out)
    outcome = 'ok'
  except Exception:  # pylint: disable=broad-except
    outcome = traceback.format_exc()
  print(f'{name} ({time.perf_counter() - start:.1f} s): {outcome}',
        flush=True)
  return outcome


def main() -> None:
  out = Path(sys.argv[1])
  assert jax.device_count() == 4, jax.devices()
  names = sorted(methods.METHODS)
  # Two methods at a time: one traces (Python) while the other compiles
  # (XLA, without the GIL). Each check has its own state and directory.
  with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
    outcomes = pool.map(_outcome, names, [out] * len(names))
    report = dict(zip(names, outcomes))
  (out / 'report.json').write_text(json.dumps(report, indent=1))


if __name__ == '__main__':
  main()
