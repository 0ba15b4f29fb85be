"""Test-session settings: small, fast-compiling XLA programs on one CPU device.

XLA:CPU spends most of a tiny supernet's test time compiling, not running,
so the tests ask for less backend optimisation. Set before jax is imported.
Also the digits splits the data tests share (read-only arrays).
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault(
    'XLA_FLAGS',
    '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
    # The fusion emitters compile a search step about twice as slowly
    # (benchmarks/RESULTS.md, the method contract's cost).
    ' --xla_cpu_use_fusion_emitters=false')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


@pytest.fixture(scope='module')
def digits_train():
  from jaxdarts import data  # pylint: disable=import-outside-toplevel
  return data.load_dataset('digits', 'train')


@pytest.fixture(scope='module')
def digits_test():
  from jaxdarts import data  # pylint: disable=import-outside-toplevel
  return data.load_dataset('digits', 'test')


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
  """A home directory that ``~`` expands to."""
  path = tmp_path / 'home'
  path.mkdir()
  monkeypatch.setenv('HOME', str(path))
  return path
