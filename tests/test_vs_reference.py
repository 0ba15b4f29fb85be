"""benchmarks/vs_reference.py refuses bad flags and a missing torch clearly.

The benchmark itself takes many minutes; these only run its flag checks,
which fail before any measurement starts. torch stays optional: the
missing-torch case hides it even where it is installed.
"""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'benchmarks' / 'vs_reference.py'

# Runs the script as __main__ with `import torch` failing.
WITHOUT_TORCH = ('import runpy, sys; sys.modules["torch"] = None; '
                 'sys.argv = sys.argv[1:]; '
                 'runpy.run_path(sys.argv[0], run_name="__main__")')


def run(*args: str, without_torch: bool = False):
  prefix = ['-c', WITHOUT_TORCH] if without_torch else []
  return subprocess.run([sys.executable, *prefix, str(SCRIPT), *args],
                        capture_output=True, text=True, timeout=60,
                        check=False)


@pytest.fixture
def fake_clone(tmp_path):
  (tmp_path / 'cnn').mkdir()
  for name in ('model_search.py', 'architect.py'):
    (tmp_path / 'cnn' / name).write_text('')
  return tmp_path


@pytest.mark.parametrize('args, message', [
    ((), '--reference_dir is required'),
    (('--reference_dir=/nonexistent/darts',), 'holds no cnn/model_search.py'),
    (('--sides=jaxdarts', '--methods=first_order,second'),
     "unknown ['second']"),
    (('--sides=jaxdarts', '--batch_sizes=16,x'), '--batch_sizes'),
    (('--sides=torch',), '--sides'),
])
def test_bad_flags_name_the_problem(args, message):
  out = run(*args)
  assert out.returncode == 1, out
  assert message in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr


def test_missing_torch_names_the_extra(fake_clone):
  out = run(f'--reference_dir={fake_clone}', without_torch=True)
  assert out.returncode == 1, out
  assert 'pip install torch==2.13.0' in out.stderr, out.stderr
  assert '--sides=jaxdarts' in out.stderr
