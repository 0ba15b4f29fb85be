"""Checks that need several devices or processes, run in subprocesses.

`test_parallel.py` starts these with fake CPU devices
(``--xla_force_host_platform_device_count``), so the rest of the test
session keeps one device::

    python tests/multidevice.py checks OUT      # 4 devices
    python tests/multidevice.py search WORKDIR [--coordinator_address=...
        --num_processes=2 --process_id=I]

``checks`` compares the mapped steps with the single-device steps (every
hypergradient on the mesh, the first also pmapped), checks that an
indivisible batch is refused, and runs the reference search of
`search_config` on 4 devices into ``OUT/search``; it writes
``OUT/report.json``: each check's name and ``'ok'`` or its traceback.
``search`` runs that search on this process's devices (one process of
several with the flags). Both save the final state's leaves in
``WORKDIR/final_state.npz``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'tests')]

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp

import jaxdarts
from experiments.configs import search as search_configs
from experiments.configs import train as train_configs
from jaxdarts.core import parallel
from jaxdarts.run import retrain
from jaxdarts.run import search
from tiny import MicroNetwork, MicroSupernet, random_batch
# pylint: enable=g-import-not-at-top,wrong-import-position

# Devices and processes sum the same float32 numbers in different orders:
# leaves agree to `TOLERANCE` plus `RTOL` of their size (two processes and
# one device were seen 1.35e-5 apart on one leaf, over `TOLERANCE` alone).
TOLERANCE = 1e-5
RTOL = 1e-5
METHODS = ('first_order', 'finite_difference', 'exact', 'unrolled')
SEARCH_FIELDS = ('params', 'batch_stats', 'alphas', 'weight_opt_state',
                 'arch_opt_state')


def search_config(num_devices: int | None = None):
  """A small search of 11 steps on digits, checkpoints at steps 5, 10, 11.

  No max pooling: its gradient goes to the largest input of each window,
  and the digits' flat regions make near-ties that rounding decides, so runs
  on different device layouts (which sum in different orders) would route
  some gradients differently: with ``max_pool_3x3`` the two-process and the
  4-device searches end with momenta up to 8e-3 apart, with
  ``avg_pool_3x3`` within 3e-7.
  """
  config = search_configs.get_config('tiny')
  config.model.primitives = ('skip_connect', 'avg_pool_3x3')
  config.model.num_nodes = 1
  config.search.epochs = 1
  config.compilation_cache_dir = ''
  config.num_devices = num_devices
  return config


def assert_close(what: str, got, want) -> None:
  """Every leaf of ``got`` within `TOLERANCE` of ``want``'s."""
  got, want = jax.device_get((got, want))
  got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got_leaves) == len(want_leaves), what
  for i, (x, y) in enumerate(zip(got_leaves, want_leaves)):
    np.testing.assert_allclose(np.asarray(x, np.float64),
                               np.asarray(y, np.float64), rtol=RTOL,
                               atol=TOLERANCE, err_msg=f'{what}, leaf {i}')


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


@functools.cache
def _micro_state(shape):
  """A search state of `MicroSupernet`, initialised once for every method."""
  return jaxdarts.create_search_state(
      jax.random.key(0), MicroSupernet(), np.zeros(shape, np.float32),
      num_steps=10)


def check_search_step(method: str, with_pmap: bool) -> None:
  """A mesh step (and a pmapped one) equals the single-device step."""
  train_batch = random_batch(1, batch=8)
  val_batch = random_batch(2, batch=8)
  state = _micro_state(train_batch['image'].shape).replace(
      hypergradient=method)
  want, want_metrics = jaxdarts.search_step(_copy(state), train_batch,
                                            val_batch)

  if with_pmap:
    pmapped, metrics = parallel.pmap_search_step(
        parallel.replicate(state), parallel.shard(train_batch),
        parallel.shard(val_batch))
    pmapped, metrics = parallel.unreplicate((pmapped, metrics))
    for field in SEARCH_FIELDS:
      assert_close(f'pmap {field}', getattr(pmapped, field),
                   getattr(want, field))
    assert_close('pmap metrics', metrics, want_metrics)

  mesh = parallel.make_mesh()
  meshed, metrics = parallel.mesh_search_step(
      parallel.mesh_replicate(state, mesh),
      parallel.mesh_shard(train_batch, mesh),
      parallel.mesh_shard(val_batch, mesh), mesh=mesh)
  for field in SEARCH_FIELDS:
    assert_close(f'mesh {field}', getattr(meshed, field), getattr(want, field))
  assert_close('mesh metrics', metrics, want_metrics)


def check_seeds_step() -> None:
  """Two seeds' vmapped mesh step equals their single-device step, and
  seed 1's slice equals its own unbatched step."""
  from jaxdarts.core import seeds  # pylint: disable=g-import-not-at-top
  shape = (8, 8, 8, 3)
  keys = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
  make = lambda key: jaxdarts.create_search_state(
      key, MicroSupernet(), np.zeros(shape, np.float32), num_steps=10)
  states = seeds.stack_states(make, keys)
  stacked = [jax.tree.map(lambda *xs: jnp.stack(xs), random_batch(2 * i),
                          random_batch(2 * i + 1)) for i in (1, 2)]
  want, want_metrics = seeds.seeds_search_step(_copy(states), *stacked)
  mesh = parallel.make_mesh()
  meshed, metrics = seeds.mesh_seeds_step(
      parallel.mesh_replicate(states, mesh),
      *(seeds.mesh_shard_seeds(b, mesh) for b in stacked), mesh=mesh)
  assert_close('seeds mesh state', meshed, want)
  assert_close('seeds mesh metrics', metrics, want_metrics)
  one, one_metrics = jaxdarts.search_step(
      make(keys[1]), *(jax.tree.map(lambda x: x[1], b) for b in stacked))
  assert_close('seed 1 alone', want.seed(1), one)
  assert_close('seed 1 metrics', {k: want_metrics[f'seed_1/{k}']
                                  for k in one_metrics}, one_metrics)


def check_train_step() -> None:
  """One pmapped and one mesh retraining step equal the single-device one."""
  batch = random_batch(3, batch=8)
  state = jaxdarts.core.train.create_train_state(
      jax.random.key(0), MicroNetwork(), batch['image'], num_steps=10)
  want, want_metrics = jaxdarts.core.train.train_step(_copy(state), batch)
  fields = ('params', 'batch_stats', 'opt_state')

  pmapped, metrics = parallel.unreplicate(parallel.pmap_train_step(
      parallel.replicate(state), parallel.shard(batch)))
  for field in fields:
    assert_close(f'pmap {field}', getattr(pmapped, field),
                 getattr(want, field))
  assert_close('pmap metrics', metrics, want_metrics)

  mesh = parallel.make_mesh()
  meshed, metrics = parallel.mesh_train_step(
      parallel.mesh_replicate(state, mesh), parallel.mesh_shard(batch, mesh),
      mesh=mesh)
  for field in fields:
    assert_close(f'mesh {field}', getattr(meshed, field), getattr(want, field))
  assert_close('mesh metrics', metrics, want_metrics)


def check_indivisible_batch_is_refused(workdir: Path) -> None:
  """Before anything compiles, naming the nearest valid batch sizes."""
  search_run = search_config()
  search_run.search.batch_size = 30
  train_run = train_configs.get_config('tiny')
  train_run.train.batch_size = 30
  for name, run, config in (('search', search.run_search, search_run),
                            ('train', retrain.run_train, train_run)):
    try:
      run(config, workdir / 'refused')
    except ValueError as e:
      assert f'config.{name}.batch_size 30' in str(e), str(e)
      assert '28 and 32' in str(e), str(e)
    else:
      raise AssertionError(f'{name}: batch 30 was accepted on 4 devices')
  assert not (workdir / 'refused').exists()


def save_final_state(state, path: Path) -> None:
  leaves = jax.tree.leaves(jax.device_get(state))
  np.savez(path, *[np.asarray(x) for x in leaves])


def run_search(workdir: Path, num_devices: int | None = None):
  result = search.run_search(search_config(num_devices), workdir)
  if jax.process_index() == 0:
    save_final_state(result.state, workdir / 'final_state.npz')
  return result


def checks(out: Path) -> None:
  assert jax.device_count() == 4, jax.devices()
  report = {}
  # pmap and the mesh map the same per-device step, which holds each
  # method's averaging: every method runs on the mesh (run_search's path),
  # the pmap wrapper once.
  named = [(f'search_step/{m}',
            lambda m=m: check_search_step(m, with_pmap=m == METHODS[0]))
           for m in METHODS]
  named += [('seeds_step', check_seeds_step),
            ('train_step', check_train_step),
            ('refused', lambda: check_indivisible_batch_is_refused(out)),
            ('search', lambda: run_search(out / 'search'))]
  for name, check in named:
    start = time.perf_counter()
    try:
      check()
      report[name] = 'ok'
    except Exception:  # pylint: disable=broad-except
      report[name] = traceback.format_exc()
    seconds = time.perf_counter() - start
    print(f'{name} ({seconds:.1f} s): {report[name]}', flush=True)
  (out / 'report.json').write_text(json.dumps(report, indent=1))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('command', choices=('checks', 'search'))
  parser.add_argument('path', type=Path)
  parser.add_argument('--coordinator_address')
  parser.add_argument('--num_processes', type=int)
  parser.add_argument('--process_id', type=int)
  args = parser.parse_args()
  parallel.initialize(args.coordinator_address, args.num_processes,
                      args.process_id)
  if args.command == 'checks':
    checks(args.path)
  else:
    run_search(args.path)


if __name__ == '__main__':
  main()
