"""The benchmark scripts stay in step with the library they time.

Running them takes minutes, so they are not run here. What breaks them
silently is a change to the library functions ``benchmarks/run_loop.py``
calls to time the bare step: each such call must name a function that
exists and bind to its signature.
"""

import ast
import inspect
from pathlib import Path

import pytest

from jaxdarts.run import search

BENCHMARKS = Path(__file__).resolve().parents[1] / 'benchmarks'


def search_calls(path: Path) -> list[ast.Call]:
  """The calls ``search.name(...)`` in the script at ``path``."""
  return [node for node in ast.walk(ast.parse(path.read_text()))
          if isinstance(node, ast.Call)
          and isinstance(node.func, ast.Attribute)
          and isinstance(node.func.value, ast.Name)
          and node.func.value.id == 'search']


@pytest.mark.parametrize('script', sorted(p.name for p in
                                          BENCHMARKS.glob('*.py')))
def test_search_calls_bind_to_the_runner(script):
  for call in search_calls(BENCHMARKS / script):
    name = call.func.attr
    where = f'{script}:{call.lineno} calls search.{name}'
    assert hasattr(search, name), f'{where}, which no longer exists'
    args = [None] * len(call.args)
    kwargs = {k.arg: None for k in call.keywords}
    try:
      inspect.signature(getattr(search, name)).bind(*args, **kwargs)
    except TypeError as e:
      pytest.fail(f'{where} with arguments its signature refuses: {e}')


def test_the_check_sees_run_loops_calls():
  names = {c.func.attr for c in search_calls(BENCHMARKS / 'run_loop.py')}
  assert names == {'run_search', 'load_halves', 'search_batches'}
