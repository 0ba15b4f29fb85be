"""The contract of every registered search method (optax-style).

`contract.py` runs each method of `jaxdarts.methods.METHODS` in a subprocess
with 4 fake CPU devices: finite steps, a valid genotype, a bitwise resume
from a checkpoint, and a 4-device step equal to the one-device step. A
method registered later is checked without touching this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdarts import methods

SCRIPT = Path(__file__).resolve().parent / 'contract.py'
TIMEOUT = 900


@pytest.fixture(scope='module')
def report(tmp_path_factory) -> dict[str, str]:
  out = tmp_path_factory.mktemp('contract')
  flags = os.environ.get('XLA_FLAGS', '')
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': f'{flags} --xla_force_host_platform_device_count=4'}
  done = subprocess.run([sys.executable, str(SCRIPT), str(out)], env=env,
                        capture_output=True, text=True, timeout=TIMEOUT,
                        check=False)
  if done.returncode:
    pytest.fail(f'contract.py failed:\n{done.stdout[-3000:]}\n'
                f'{done.stderr[-3000:]}')
  return json.loads((out / 'report.json').read_text())


@pytest.mark.parametrize('name', sorted(methods.METHODS))
def test_method_keeps_the_contract(report, name):
  if report[name] != 'ok':
    pytest.fail(f'{name}:\n{report[name]}', pytrace=False)


def test_unknown_method_and_option_are_named():
  with pytest.raises(ValueError, match=r"Unknown search method 'dartz'; "
                     r"choose one of \[.*'darts'"):
    methods.get('dartz')
  with pytest.raises(ValueError, match="has no option tau"):
    methods.get('darts', tau=1.0)
  assert methods.get('darts', num_steps=10) == methods.get('darts')
