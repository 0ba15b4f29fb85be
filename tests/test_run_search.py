"""Tests of jaxdarts.run.search.run_search and the search entry point.

Compiling a search step takes tens of seconds on a CPU, so the tests share
one uninterrupted run of the ``tiny`` preset (the ``reference`` fixture) and
one persistent compilation cache: the other runs in this process reuse its
compiled step, and the subprocesses load it from the cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.configs import search as configs
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.run import search
from jaxdarts.run.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'experiments' / 'cifar_search.py'
CONFIG_FILE = ROOT / 'experiments' / 'configs' / 'search.py'
TIMEOUT = 600  # Seconds for a subprocess; it normally takes 10-30.


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory) -> Path:
  return tmp_path_factory.mktemp('jax_cache')


def tiny_config(cache_dir: Path):
  config = configs.get_config('tiny')
  config.compilation_cache_dir = str(cache_dir)
  return config


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cache_dir):
  """An uninterrupted run of the tiny preset: ``(config, workdir, result)``."""
  config = tiny_config(cache_dir)
  workdir = tmp_path_factory.mktemp('reference')
  return config, workdir, search.run_search(config, workdir)


def num_steps(config) -> int:
  return config.search.epochs * 11  # 718 // 64 batches of digits per epoch.


def assert_same_search(result: search.SearchResult,
                       expected: search.SearchResult) -> None:
  """Alphas, weights, BN statistics, optimizer states and genotype agree."""
  assert int(result.state.step) == int(expected.state.step)
  for field in ('alphas', 'params', 'batch_stats', 'weight_opt_state',
                'arch_opt_state', 'rng'):
    got = jax.tree.leaves(getattr(result.state, field))
    want = jax.tree.leaves(getattr(expected.state, field))
    assert len(got) == len(want), field
    for x, y in zip(got, want):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), field)
  assert result.genotype == expected.genotype


def copy_workdir(source: Path, dest: Path) -> Path:
  shutil.copytree(source, dest)
  return dest


def checkpoint_steps(workdir: Path) -> list[int]:
  directory = workdir / 'checkpoints'
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def read_metrics(workdir: Path) -> list[dict]:
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


# --- configs ------------------------------------------------------------------


def test_presets():
  for name in configs.PRESETS:
    config = configs.get_config(name)
    assert set(config) >= {'data', 'model', 'search', 'optimizer',
                           'checkpoint_every_steps', 'keep_checkpoints',
                           'log_every_steps', 'compilation_cache_dir'}
  paper = configs.get_config('first_order')
  assert (paper.search.epochs, paper.search.batch_size) == (50, 64)
  assert (paper.model.channels, paper.model.layers) == (16, 8)
  assert paper.model.num_nodes == 4 and len(paper.model.primitives) == 8
  assert paper.search.hypergradient == 'first_order'
  assert configs.get_config('second_order').search.hypergradient == 'exact'
  assert configs.get_config().data.name == 'digits'
  with pytest.raises(ValueError, match='tiny'):
    configs.get_config('huge')


# --- one run, its outputs -------------------------------------------------------


def test_run_writes_its_outputs(reference):
  config, workdir, result = reference
  assert result.finished
  assert int(result.state.step) == num_steps(config)
  assert result.genotype == result.state.genotype()

  assert json.loads((workdir / 'config.json').read_text()) == json.loads(
      config.to_json())
  records = read_metrics(workdir)
  for record in records:
    assert all(math.isfinite(v) for v in record.values()), record
  train = [r for r in records if 'train_loss' in r]
  assert [r['step'] for r in train] == [4, 8, 11, 12, 16, 20, 22, 24, 28, 32,
                                        33]
  assert set(train[0]) >= {'step', 'epoch', 'train_loss', 'val_loss',
                           'train_accuracy', 'val_accuracy', 'entropy',
                           'hypergradient_norm', 'lr', 'steps_per_second'}
  supernet = [r for r in records if 'supernet_val_loss' in r]
  assert [(r['step'], r['epoch']) for r in supernet] == [(11, 0), (22, 1),
                                                         (33, 2)]
  assert all(0 <= r['supernet_val_accuracy'] <= 1 for r in supernet)

  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  final = Genotype.load(workdir / 'genotype.json')
  assert final == result.genotype
  assert Genotype.load(workdir / 'genotype.txt') == final
  for epoch in range(config.search.epochs):
    name = f'epoch_{epoch:03d}'
    Genotype.load(workdir / 'genotypes' / f'{name}.json')
    Genotype.load(workdir / 'genotypes' / f'{name}.txt')
    with np.load(workdir / 'alphas' / f'{name}.npz') as alphas:
      assert alphas['primitives'].tolist() == list(config.model.primitives)
      for cell in ('normal', 'reduce'):
        assert alphas[cell].shape == (5, 4)
        np.testing.assert_allclose(alphas[cell].sum(-1), 1.0, rtol=1e-5)
  # DARTS's op weights: the softmax of the alphas, in float64.
  weights = np.exp(np.asarray(result.state.alphas['normal'], np.float64))
  with np.load(workdir / 'alphas' / 'epoch_002.npz') as alphas:
    np.testing.assert_allclose(alphas['normal'],
                               weights / weights.sum(-1, keepdims=True))
  for name in ('normal.png', 'normal.svg', 'reduce.png', 'reduce.dot'):
    assert (workdir / 'cells' / name).stat().st_size > 0
  assert checkpoint_steps(workdir)[-1] == num_steps(config)


def test_rerun_of_a_finished_search_only_reports(reference, caplog):
  config, workdir, result = reference
  before = (workdir / 'metrics.jsonl').read_text()
  with caplog.at_level(logging.INFO, logger='jaxdarts.run'):
    again = search.run_search(config, workdir)
  assert 'already finished' in caplog.text
  assert again.finished
  assert_same_search(again, result)
  assert (workdir / 'metrics.jsonl').read_text() == before


def test_cifar10_under_mock_data(tmp_path, cache_dir):
  import tensorflow_datasets as tfds
  config = tiny_config(cache_dir)
  config.data.name = 'cifar10'
  config.model.primitives = ('skip_connect', 'max_pool_3x3')  # Compiles fast.
  config.model.num_nodes = 1
  config.search.epochs = 1
  config.search.batch_size = 8
  with tfds.testing.mock_data(num_examples=48):  # 24 + 24: 3 steps.
    result = search.run_search(config, tmp_path)
  assert result.finished and int(result.state.step) == 3
  assert result.state.model.num_classes == 10
  records = read_metrics(tmp_path)
  assert all(math.isfinite(v) for r in records for v in r.values())
  assert 'supernet_val_accuracy' in records[-1]
  assert Genotype.load(tmp_path / 'genotype.json') == result.genotype


# --- interruptions ------------------------------------------------------------


def cli(workdir: Path, cache_dir: Path) -> list[str]:
  return [sys.executable, str(SCRIPT), f'--config={CONFIG_FILE}:tiny',
          f'--workdir={workdir}', f'--config.compilation_cache_dir={cache_dir}']


def test_sigkill_and_rerun_gives_the_uninterrupted_result(
    reference, tmp_path, cache_dir):
  """The command is killed once a checkpoint exists, then run again."""
  config, _, expected = reference
  workdir = tmp_path / 'run'
  # The cache the reference run wrote to (JAX keeps the first one a process
  # configures, which may come from an earlier test).
  cache = jax.config.jax_compilation_cache_dir or cache_dir
  env = {**os.environ, 'JAX_LOG_COMPILES': '1'}
  with open(tmp_path / 'killed.log', 'wb') as log, subprocess.Popen(
      cli(workdir, cache), cwd=ROOT, env=env, stdout=log,
      stderr=subprocess.STDOUT) as process:
    try:
      deadline = time.monotonic() + TIMEOUT
      while not checkpoint_steps(workdir) and process.poll() is None:
        assert time.monotonic() < deadline, 'no checkpoint appeared'
        time.sleep(0.02)
    finally:
      process.kill()
  output = (tmp_path / 'killed.log').read_text()
  assert process.returncode == -signal.SIGKILL, (
      f'the run ended before it was killed:\n{output[-3000:]}')
  killed_at = checkpoint_steps(workdir)
  assert killed_at and killed_at[-1] < num_steps(config)
  assert 'Compiled and ran step 1' in output  # Progress reaches the console.
  # The new process loaded the step the reference run compiled.
  assert re.search(r"Persistent compilation cache hit for '\S*search_step_fn",
                   output), output[-3000:]

  with open(workdir / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 3')  # As if the kill had cut a line short.
  result = search.run_search(config, workdir)
  assert_same_search(result, expected)
  steps = [(r['step'], 'supernet_val_loss' in r) for r in read_metrics(workdir)]
  assert steps == sorted(set(steps))  # No line repeated by the rerun.


def test_sigterm_saves_and_stops(reference, tmp_path, caplog):
  """In-process: SIGTERM after the first checkpoint; the rerun completes."""
  config, _, expected = reference
  def send_sigterm_after_first_checkpoint():
    deadline = time.monotonic() + TIMEOUT
    while not checkpoint_steps(tmp_path):
      if time.monotonic() > deadline:
        return
      time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)

  previous = signal.signal(signal.SIGTERM, lambda *_: None)  # A safety net.
  try:
    threading.Thread(target=send_sigterm_after_first_checkpoint,
                     daemon=True).start()
    with caplog.at_level(logging.WARNING, logger='jaxdarts.run'):
      stopped = search.run_search(config, tmp_path)
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert not stopped.finished
  assert int(stopped.state.step) < num_steps(config)
  assert checkpoint_steps(tmp_path)[-1] == int(stopped.state.step)
  assert 'Stopped by a signal' in caplog.text
  assert_same_search(search.run_search(config, tmp_path), expected)


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_corrupt_latest_checkpoint_resumes_from_the_previous_one(
    reference, tmp_path, caplog):
  config, source, expected = reference
  workdir = copy_workdir(source, tmp_path / 'run')
  latest = checkpoint_steps(workdir)[-1]
  for path in (workdir / 'checkpoints' / str(latest) / 'state' / 'd').iterdir():
    with open(path, 'r+b') as f:
      f.truncate(path.stat().st_size // 2)
  with caplog.at_level(logging.WARNING):
    result = search.run_search(config, workdir)
  assert f'checkpoint step {latest}' in caplog.text
  assert 'cannot be restored' in caplog.text
  assert list((workdir / 'checkpoints').glob(f'{latest}.corrupt-*'))
  assert_same_search(result, expected)


def test_bad_intervals_are_refused(tmp_path):
  config = configs.get_config('tiny')
  config.log_every_steps = 0
  with pytest.raises(ValueError, match='log_every_steps must be >= 1'):
    search.run_search(config, tmp_path)


def test_config_mismatch_names_the_field(reference):
  config, workdir, _ = reference
  changed = config.copy_and_resolve_references()
  changed.model.channels = 8
  with pytest.raises(ValueError, match=r'model\.channels=4.*model\.channels=8'):
    search.run_search(changed, workdir)
  assert json.loads((workdir / 'config.json').read_text())['model'][
      'channels'] == 4  # Nothing was overwritten.


@pytest.mark.filterwarnings('ignore:.*encountered in:RuntimeWarning')
def test_non_finite_loss_stops_without_saving(reference, tmp_path,
                                              monkeypatch):
  config, source, expected = reference
  workdir = copy_workdir(source, tmp_path / 'run')
  good = 25
  for step in checkpoint_steps(workdir):
    if step > good:
      shutil.rmtree(workdir / 'checkpoints' / str(step))
  load = search.load_halves

  def poisoned(config):
    """Infinite training images (normalised by a std of 0), same shapes:
    the step the reference compiled runs them, no recompiling."""
    halves = load(config)
    weights = halves.weights_half
    return halves._replace(weights_half=weights._replace(
        std=np.zeros_like(weights.std)))

  with monkeypatch.context() as patch, pytest.raises(
      FloatingPointError) as info:
    patch.setattr(search, 'load_halves', poisoned)
    search.run_search(config, workdir)
  message = str(info.value)
  assert re.search(r'non-finite (loss at step \d+|weights)', message), message
  assert f'last good checkpoint, step {good}' in message
  assert 'learning rate' in message
  assert checkpoint_steps(workdir) == [good]
  with Checkpointer(workdir / 'checkpoints') as ckpt:
    _, extra, step = ckpt.restore_latest(expected.state)
  assert step == good and extra['position'] == {'epoch': 2, 'step': 3}
  # The original config resumes from it and ends where the reference did.
  assert_same_search(search.run_search(config, workdir), expected)


def test_report_builds_from_a_real_search_workdir(reference):
  import html  # pylint: disable=g-import-not-at-top
  from jaxdarts.viz.report import write_report  # pylint: disable=g-import-not-at-top
  _, workdir, result = reference
  page = write_report(workdir).read_text()
  assert html.escape(str(result.genotype)) in page
  assert 'data:image/png;base64,' in page
  assert (workdir / 'cells' / 'normal.png').stat().st_size > 0


def test_early_stop_ends_the_search_with_the_stop_epochs_genotype(
    tmp_path, cache_dir, caplog):
  """DARTS-ES with every=1, window=1, delta=1 and a factor every ratio
  exceeds: evaluations at epochs 0 and 1, a stop after epoch 1 keeping
  epoch 0's genotype; the same command then only reports."""
  from jaxdarts.spaces.darts_cnn.genotype import Genotype as G  # pylint: disable=g-import-not-at-top
  config = tiny_config(cache_dir)
  config.search.eigenvalue_iterations = 4
  config.search.early_stop.update(enabled=True, every=1, window=1, delta=1,
                                  factor=-1e30, start_epoch=0)
  result = search.run_search(config, tmp_path)
  assert result.finished and int(result.state.step) == 2 * 11
  record = json.loads((tmp_path / 'early_stop.json').read_text())
  assert (record['epoch'], record['stop_epoch']) == (1, 0)
  kept = G.load(tmp_path / 'genotypes' / 'epoch_000.json')
  assert result.genotype == kept == G.load(tmp_path / 'genotype.json')
  assert not (tmp_path / 'genotypes' / 'epoch_002.json').exists()
  lines = [json.loads(line) for line in
           (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  eigen = {r['epoch']: r['hessian_eigenvalue'] for r in lines
           if 'hessian_eigenvalue' in r}
  assert sorted(eigen) == [0, 1]
  ratio = [r['early_stop_ratio'] for r in lines if 'early_stop_ratio' in r]
  np.testing.assert_allclose(ratio, [eigen[1] / eigen[0]], rtol=1e-6)
  ends = [r for r in lines if 'supernet_val_loss' in r]  # One line an epoch,
  assert [r['epoch'] for r in ends] == [0, 1]  # with the health signals.
  assert all('normal_param_free_ops' in r for r in ends)
  with caplog.at_level(logging.INFO, logger='jaxdarts.run'):
    again = search.run_search(config, tmp_path)
  assert 'already finished' in caplog.text
  assert int(again.state.step) == 2 * 11 and again.genotype == kept
