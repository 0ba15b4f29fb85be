"""Tests of jaxdarts.run.retrain: retraining a searched genotype on digits.

One tiny run (3 cells of C=4, one epoch of 5 steps) is shared by the tests
(the ``reference`` fixture); the other runs in this process reuse its
compiled step.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest

from experiments.configs import train as configs
from jaxdarts import data as data_lib
from jaxdarts.core import parallel
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.run import retrain
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = ROOT / 'experiments' / 'configs' / 'train.py'
SCRIPT = ROOT / 'experiments' / 'cifar_train.py'
TIMEOUT = 600  # Seconds for a subprocess; it normally takes 10-30.

# A 3-node genotype of the small search space, as a digits search derives;
# its text is longer than a file name may be (255 bytes).
SEARCHED_TEXT = (
    "Genotype(normal=[('skip_connect', 0), ('max_pool_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 2), "
    "('sep_conv_3x3', 3)], normal_concat=[2, 3, 4], "
    "reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('max_pool_3x3', 1), ('skip_connect', 3)], "
    "reduce_concat=[2, 3, 4])")
SEARCHED = Genotype.parse(SEARCHED_TEXT)


def tiny_config(genotype: str, cache_dir: Path):
  config = configs.get_config('tiny')
  config.genotype = genotype
  config.train.batch_size = 256  # 5 steps.
  config.checkpoint_every_steps = 2
  config.log_every_steps = 2
  config.keep_checkpoints = 10
  config.compilation_cache_dir = str(cache_dir)
  return config


@pytest.fixture(scope='module')
def search_dir(tmp_path_factory) -> Path:
  """A search workdir's genotype file, as `run_search` writes it."""
  path = tmp_path_factory.mktemp('search')
  SEARCHED.save(path / 'genotype.json')
  (path / 'genotype.txt').write_text(f'{SEARCHED}\n')
  return path


@pytest.fixture(scope='module')
def reference(tmp_path_factory, search_dir):
  """An uninterrupted tiny run: ``(config, workdir, result)``."""
  cache = tmp_path_factory.mktemp('jax_cache')
  workdir = tmp_path_factory.mktemp('train')
  config = tiny_config(str(search_dir / 'genotype.json'), cache)
  result = retrain.run_train(config, workdir)
  return config, workdir, result


def _model_and_images(config, genotype):
  test = data_lib.load_dataset('digits', 'test')
  model = NetworkCIFAR(
      genotype, channels=config.model.channels, layers=config.model.layers,
      num_classes=test.num_classes, auxiliary=config.model.auxiliary)
  images = next(data_lib.eval_batches(test, 16))['image']
  return model, images


def test_run_writes_outputs(reference):
  config, workdir, result = reference
  assert result.finished
  assert int(result.state.step) == 5
  assert 0 <= result.test_accuracy <= 1
  assert json.loads((workdir / 'config.json').read_text())['genotype'] == (
      config.genotype)
  assert Genotype.load(workdir / 'genotype.json') == SEARCHED
  final = json.loads((workdir / 'final_metrics.json').read_text())
  assert final['step'] == 5
  assert final['test_accuracy'] == pytest.approx(result.test_accuracy)
  lines = [json.loads(line)
           for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in lines if 'loss' in r] == [2, 4, 5]
  assert lines[-1]['test_accuracy'] == pytest.approx(result.test_accuracy)
  rates = [r['drop_path_rate'] for r in lines if 'drop_path_rate' in r]
  assert all(0 <= r < config.train.drop_path_prob for r in rates)
  assert any((workdir / 'tensorboard').iterdir())
  assert any((workdir / 'checkpoints').iterdir())


def test_final_variables_reproduce_logits(reference):
  config, workdir, result = reference
  model, images = _model_and_images(config, SEARCHED)
  template = jax.eval_shape(functools.partial(model.init, train=False),
                            jax.random.PRNGKey(1), images)
  variables = flax.serialization.from_bytes(
      template, (workdir / 'final_variables.msgpack').read_bytes())
  apply = jax.jit(functools.partial(model.apply, train=False))
  np.testing.assert_allclose(apply(variables, images),
                             apply(result.state.variables, images),
                             rtol=1e-5, atol=1e-5)


def test_rerun_on_finished_workdir_reports(reference, caplog):
  config, workdir, result = reference
  caplog.set_level('INFO', logger='jaxdarts.run')
  again = retrain.run_train(config, workdir)
  assert again.finished
  assert again.test_accuracy == pytest.approx(result.test_accuracy)
  assert 'already finished' in caplog.text


def test_resume_is_exact(reference, tmp_path):
  config, workdir, result = reference
  resumed = tmp_path / 'resumed'
  shutil.copytree(workdir, resumed)
  for path in (resumed / 'checkpoints').iterdir():
    if path.name.isdigit() and int(path.name) > 2:
      shutil.rmtree(path)
  for name in ('final_metrics.json', 'final_variables.msgpack'):
    (resumed / name).unlink()
  again = retrain.run_train(config, resumed)
  assert int(again.state.step) == 5
  jax.tree.map(np.testing.assert_array_equal, again.state.params,
               result.state.params)
  assert again.test_accuracy == pytest.approx(result.test_accuracy)
  steps = [json.loads(line)['step']
           for line in (resumed / 'metrics.jsonl').read_text().splitlines()]
  assert steps == [2, 4, 5, 5]


def test_command_retrains_a_genotype_text(reference, tmp_path):
  """The README's retraining command, the genotype given as its text.

  The workdir is given with ``~``, a space and a trailing slash; the run
  must end with the very weights of the run of the same genotype's file.
  """
  config, workdir, _ = reference
  # The cache the reference run wrote to (JAX keeps the first one a process
  # configures, which may come from an earlier test).
  cache = jax.config.jax_compilation_cache_dir or config.compilation_cache_dir
  command = [sys.executable, str(SCRIPT), f'--config={CONFIG_FILE}:tiny',
             '--workdir=~/retrain runs/digits/', f'--genotype={SEARCHED_TEXT}',
             '--config.train.batch_size=256',
             '--config.checkpoint_every_steps=2', '--config.log_every_steps=2',
             '--config.keep_checkpoints=10',
             f'--config.compilation_cache_dir={cache}']
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, 'HOME': str(tmp_path)},
                          timeout=TIMEOUT, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Training finished at step 5.' in result.stdout
  out = tmp_path / 'retrain runs' / 'digits'
  assert json.loads((out / 'config.json').read_text())['genotype'] == (
      SEARCHED_TEXT)
  assert Genotype.load(out / 'genotype.json') == SEARCHED
  assert (out / 'final_variables.msgpack').read_bytes() == (
      workdir / 'final_variables.msgpack').read_bytes()


def test_non_finite_loss_stops_the_run(reference, tmp_path, monkeypatch):
  config, _, _ = reference
  real_step = parallel.mesh_train_step

  def nan_at_step_3(state, batch, **kwargs):
    state, metrics = real_step(state, batch, **kwargs)
    if int(state.step) == 3:
      metrics = {**metrics, 'loss': np.float32('nan')}
    return state, metrics

  monkeypatch.setattr(parallel, 'mesh_train_step', nan_at_step_3)
  with pytest.raises(FloatingPointError,
                     match='non-finite loss at step 3.*step 2'):
    retrain.run_train(config, tmp_path / 'nan')
  assert not (tmp_path / 'nan' / 'final_metrics.json').exists()
