"""Data parallelism: N devices and several processes compute what one does.

The checks that need several devices run in subprocesses with fake CPU
devices (``tests/multidevice.py``), so this session keeps its one device:
one process with 4 devices compares the pmapped and mesh steps with the
single-device steps and runs a reference search, while two processes with
2 devices each, joined by ``jax.distributed`` on loopback (gloo
collectives), run the same search. This process then resumes the 4-device
search on 1 device.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import numpy as np
import pytest

import multidevice
from jaxdarts.core import parallel
from jaxdarts.core.state import with_bn_axis

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'tests' / 'multidevice.py'
TIMEOUT = 600  # Seconds; the subprocesses normally take 30-70.


def device_env(count: int) -> dict[str, str]:
  """This session's environment with ``count`` fake CPU devices."""
  flags = os.environ.get('XLA_FLAGS', '')
  flags += f' --xla_force_host_platform_device_count={count}'
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': flags}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


class Runs(NamedTuple):
  """What the subprocesses left: the 4-device checks' report, their output
  directory (``search/`` is the reference search) and the workdir of the
  two-process search."""
  report: dict[str, str]
  out: Path
  two_processes: Path


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> Runs:
  """Runs the 4-device checks and the two-process search side by side.

  Each process compiles on about one core, so on a small machine the two
  runs take little more than the longer one.
  """
  out = tmp_path_factory.mktemp('four_devices')
  two = tmp_path_factory.mktemp('two_processes') / 'search'
  address = f'localhost:{free_port()}'
  commands = [(['checks', str(out)], 4)] + [
      (['search', str(two), f'--coordinator_address={address}',
        '--num_processes=2', f'--process_id={i}'], 2) for i in range(2)]
  logs = [out / f'log{i}.txt' for i in range(len(commands))]
  processes = []
  try:
    for (args, devices), log in zip(commands, logs):
      with open(log, 'w') as f:
        processes.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), *args], env=device_env(devices),
            stdout=f, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT
    for process in processes:
      process.wait(timeout=max(1, deadline - time.monotonic()))
  finally:
    for process in processes:
      process.kill()
  names = ['the 4-device checks', 'process 0', 'process 1']
  for name, process, log in zip(names, processes, logs):
    if process.returncode:
      pytest.fail(f'{name} failed:\n{log.read_text()[-4000:]}')
  return Runs(json.loads((out / 'report.json').read_text()), out, two)


def assert_check(report: dict[str, str], name: str) -> None:
  if report[name] != 'ok':
    pytest.fail(f'{name} on 4 devices:\n{report[name]}', pytrace=False)


def assert_same_leaves(path: Path, expected_path: Path) -> None:
  """The saved states agree within the equality tests' tolerance."""
  with np.load(path) as got, np.load(expected_path) as want:
    assert got.files == want.files
    for name in got.files:
      np.testing.assert_allclose(
          got[name].astype(np.float64), want[name].astype(np.float64),
          rtol=multidevice.RTOL, atol=multidevice.TOLERANCE, err_msg=name)


# --- 4 devices, one process ------------------------------------------------


@pytest.mark.parametrize('method', multidevice.METHODS)
def test_mapped_search_steps_equal_one_device(runs, method):
  """On the mesh for every method, also pmapped for the first."""
  assert_check(runs.report, f'search_step/{method}')


def test_pmap_and_mesh_train_steps_equal_one_device(runs):
  assert_check(runs.report, 'train_step')


def test_seeds_step_on_4_devices_equals_one_device(runs):
  """Several seeds: the batch split over devices, the seed axis replicated."""
  assert_check(runs.report, 'seeds_step')


def test_runs_refuse_an_indivisible_batch_before_compiling(runs):
  assert_check(runs.report, 'refused')


def test_checkpoint_of_4_devices_resumes_on_1(runs, tmp_path):
  """Saved on 4 devices, stopped, continued on 1: as if never stopped."""
  assert_check(runs.report, 'search')
  workdir = tmp_path / 'resumed'
  shutil.copytree(runs.out / 'search', workdir)
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  for step in steps[1:]:  # Resume from the first checkpoint.
    shutil.rmtree(workdir / 'checkpoints' / str(step))
  result = multidevice.run_search(workdir, num_devices=1)
  assert result.finished and int(result.state.step) == steps[-1] > steps[0]
  assert result.state.step.sharding.num_devices == 1
  assert_same_leaves(workdir / 'final_state.npz',
                     runs.out / 'search' / 'final_state.npz')


# --- 2 processes, 2 devices each -------------------------------------------


def test_two_processes_equal_one_process_with_4_devices(runs):
  """Same final state; each process read half of every batch; process 0
  alone wrote the outputs; orbax saved the global state."""
  assert_check(runs.report, 'search')
  workdir = runs.two_processes
  assert_same_leaves(workdir / 'final_state.npz',
                     runs.out / 'search' / 'final_state.npz')
  lines = [json.loads(line) for line in
           (workdir / 'metrics.jsonl').read_text().splitlines()]
  keys = [(r['step'], 'supernet_val_loss' in r) for r in lines]
  assert keys == sorted(set(keys)), 'a metrics line was written twice'
  assert (workdir / 'genotype.json').exists()
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps[-1] == 11


# --- one device, no compiling ----------------------------------------------


def test_batch_size_message_names_the_nearest_valid_sizes():
  parallel.check_batch_size(96, 8)
  with pytest.raises(ValueError, match='100 does not split evenly over 8 '
                     'devices; the nearest valid sizes are 96 and 104'):
    parallel.check_batch_size(100, 8)
  with pytest.raises(ValueError, match='nearest valid size is 4 '):
    parallel.check_batch_size(3, 4)
  with pytest.raises(ValueError, match='10 does not split evenly over 4'):
    parallel.shard({'image': np.zeros((10, 2))}, num_devices=4)


def test_devices_beyond_this_host_are_refused():
  assert parallel.local_devices() == jax.local_devices()
  assert parallel.make_mesh().shape == {parallel.AXIS: jax.device_count()}
  with pytest.raises(ValueError, match='num_devices=5, but this process has '
                     r'1 cpu device; use 1 to 1'):
    parallel.make_mesh(5)


def test_single_process_run_does_not_initialize(monkeypatch):
  monkeypatch.delenv('JAX_COORDINATOR_ADDRESS', raising=False)
  assert not parallel.initialize()
  with pytest.raises(ValueError, match='coordinator_address'):
    parallel.initialize(num_processes=2, process_id=1)


def test_steps_bind_the_models_batch_norm_axis():
  from tiny import tiny_model  # pylint: disable=g-import-not-at-top
  model = tiny_model()
  assert with_bn_axis(model, None) is model
  assert with_bn_axis(model, 'data').bn_axis_name == 'data'
  assert with_bn_axis(model.clone(bn_axis_name='x'), None).bn_axis_name is None

  class NoAxis(nn.Module):

    def __call__(self, x):
      return x

  assert with_bn_axis(NoAxis(), None) is not None
  with pytest.raises(TypeError, match='NoAxis has no bn_axis_name field'):
    with_bn_axis(NoAxis(), 'data')
