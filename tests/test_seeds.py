"""Tests of several seeds in one program (jaxdarts.run.seeds, core.seeds).

One two-seed search of a tiny supernet (the ``two_seeds`` fixture) is
checked against a separate one-seed run with the seed of its second seed
(8), and resumed from a checkpoint in its middle. (Each compile of a
supernet step costs seconds, so seed 0's separate run is left out: its
slice and seed differ from seed 1's only by the index.)
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.configs import search as configs
from experiments.configs import train as train_configs
from jaxdarts.core.seeds import SeedStates
from jaxdarts.run import retrain
from jaxdarts.run import search
from jaxdarts.run import seeds as seeds_run
from jaxdarts.run import selection
from jaxdarts.run.workdir import Workdir
from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.viz import report
from jaxdarts.viz import seeds as seeds_view
from search_workdir import write_search_workdir

SEED = 7
STEPS = 11  # One epoch of 718 // 64 batches of digits.


def config_of(cache_dir: Path, *, seed: int = SEED, seeds: int = 2):
  """The tiny preset, 1 epoch, on a 2-op, 1-node supernet (fast compile).

  No max pooling: the batched convolutions round differently, which may
  route a max pool's gradient to another of two near-equal inputs (see
  ``tests/multidevice.py``).
  """
  config = configs.get_config('tiny')
  config.model.primitives = ('avg_pool_3x3', 'skip_connect')
  config.model.num_nodes = 1
  config.search.epochs = 1
  config.search.seed = seed
  config.search.seeds = seeds
  config.search.eigenvalue_every = 1  # Each seed's health, as a run's.
  config.compilation_cache_dir = str(cache_dir)
  return config


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory) -> Path:
  return tmp_path_factory.mktemp('jax_cache')


@pytest.fixture(scope='module')
def two_seeds(tmp_path_factory, cache_dir):
  """An uninterrupted two-seed search: ``(config, workdir, result)``."""
  config = config_of(cache_dir)
  workdir = tmp_path_factory.mktemp('two_seeds')
  return config, workdir, search.run_search(config, workdir)


def records(path: Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_seed_equals_its_separate_run(two_seeds, tmp_path, cache_dir):
  config, workdir, result = two_seeds
  assert result.finished and isinstance(result.state, SeedStates)
  assert int(result.state.step) == STEPS
  assert result.state.num_seeds == 2 and len(result.genotype) == 2
  for index in (1,):  # Seed 1: its own seed (SEED + 1), its own slice.
    separate = search.run_search(
        config_of(cache_dir, seed=SEED + index, seeds=1),
        tmp_path / f'seed{index}')
    assert int(separate.state.step) == STEPS
    mine = result.state.seed(index)
    for cell in ('normal', 'reduce'):
      np.testing.assert_allclose(mine.alphas[cell],
                                 separate.state.alphas[cell], atol=1e-5)
    assert result.genotype[index] == separate.genotype
    seed_dir = workdir / f'seed_{index}'
    assert Genotype.load(seed_dir / 'genotype.json') == separate.genotype
    # The seed's metrics are those of its separate run.
    got, want = (records(d / 'metrics.jsonl')
                 for d in (seed_dir, tmp_path / f'seed{index}'))
    assert [r['step'] for r in got] == [r['step'] for r in want]
    for mine_record, theirs in zip(got, want):
      for name in ('train_loss', 'val_loss', 'supernet_val_accuracy',
                   'hessian_eigenvalue', 'normal_param_free_ops',
                   'normal_edge_entropy', 'reduce_edge_margin'):
        if name in theirs:
          assert name in mine_record, name
          np.testing.assert_allclose(mine_record[name], theirs[name],
                                     rtol=1e-4, err_msg=name)
    assert 'hessian_eigenvalue' in want[-1] and 'normal_edge_entropy' in got[-1]
    seed_config = json.loads((seed_dir / 'config.json').read_text())
    assert seed_config['search']['seed'] == SEED + index
    assert seed_config['search']['seeds'] == 1
  # The two seeds searched differently (their own init and data order).
  assert not np.array_equal(result.state.seed(0).alphas['normal'],
                            result.state.seed(1).alphas['normal'])
  # The shared metrics are the means over the seeds.
  shared = [r for r in records(workdir / 'metrics.jsonl')
            if 'train_loss' in r]
  per_seed = [records(workdir / f'seed_{i}' / 'metrics.jsonl')
              for i in range(2)]
  for record in shared:
    values = [next(r['train_loss'] for r in seed if r['step'] ==
                   record['step']) for seed in per_seed]
    np.testing.assert_allclose(record['train_loss'], np.mean(values),
                               rtol=1e-5)


def test_resume_is_bitwise(two_seeds, tmp_path):
  config, source, expected = two_seeds
  workdir = tmp_path / 'run'
  shutil.copytree(source, workdir)
  for step in (10, 11):  # Resume from the checkpoint of step 5.
    shutil.rmtree(workdir / 'checkpoints' / str(step))
  for genotype in workdir.glob('seed_*/genotype.json'):
    genotype.unlink()
  result = search.run_search(config, workdir)
  assert int(result.state.step) == STEPS
  for x, y in zip(jax.tree.leaves(result.state),
                  jax.tree.leaves(expected.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert result.genotype == expected.genotype
  for index in range(2):
    lines = [(r['step'], 'supernet_val_loss' in r) for r in records(
        workdir / f'seed_{index}' / 'metrics.jsonl')]
    assert lines == sorted(set(lines)) == [(4, False), (8, False),
                                           (11, False), (11, True)]
    assert (workdir / f'seed_{index}' / 'genotype.json').exists()


def test_seeds_must_be_a_positive_integer(tmp_path, cache_dir):
  config = config_of(cache_dir, seeds=0)
  with pytest.raises(ValueError, match='config.search.seeds must be'):
    search.run_search(config, tmp_path)
  config = config_of(cache_dir)
  config.search.early_stop.enabled = True
  with pytest.raises(ValueError, match='separate searches'):
    search.run_search(config, tmp_path)
  assert seeds_run.seed_values(config_of(cache_dir, seeds=3)) == [7, 8, 9]


def test_workdir_splits_seed_metrics(tmp_path):
  workdir = Workdir(tmp_path)
  workdir.append_metrics(4, 0, {'loss': 1.5, 'seed_0/loss': 1.0,
                                'seed_1/loss': 2.0, 'seed_x/loss': 3.0})
  workdir.append_metrics(8, 0, {'seed_1/loss': 0.5})
  assert records(tmp_path / 'metrics.jsonl') == [
      {'step': 4, 'epoch': 0, 'loss': 1.5, 'seed_x/loss': 3.0}]
  assert records(tmp_path / 'seed_1' / 'metrics.jsonl') == [
      {'step': 4, 'epoch': 0, 'loss': 2.0},
      {'step': 8, 'epoch': 0, 'loss': 0.5}]
  assert [w.path.name for w in workdir.seeds()] == ['seed_0', 'seed_1']
  workdir.trim_metrics(4)
  assert [r['step'] for r in records(tmp_path / 'seed_1' /
                                     'metrics.jsonl')] == [4]


# --- selection and report, on hand-made seed directories ----------------------


def two_seed_workdir(root: Path) -> Path:
  """Seeds 0 and 1 as a search writes them, ending in DARTS_V2 and V1."""
  for index, name in enumerate(('DARTS_V2', 'DARTS_V1')):
    seed_dir = write_search_workdir(root / f'seed_{index}')
    genotypes.get(name).save(seed_dir / 'genotype.json')
    (seed_dir / 'config.json').write_text(
        json.dumps({'search': {'seed': SEED + index, 'seeds': 1}}))
  return root


def test_choice_counts_by_hand():
  counts = seeds_view.choice_counts(
      [genotypes.get('DARTS_V1'), genotypes.get('DARTS_V2')])
  assert counts[('normal', 0, 0, 'sep_conv_3x3')] == 2
  assert counts[('normal', 1, 0, 'skip_connect')] == 1
  assert counts[('normal', 1, 0, 'sep_conv_3x3')] == 1
  assert counts[('normal', 3, 2, 'dil_conv_3x3')] == 1
  assert counts[('reduce', 0, 0, 'max_pool_3x3')] == 2
  assert ('normal', 0, 0, 'skip_connect') not in counts
  # Every genotype keeps two edges per node in each of the two cells.
  assert sum(counts.values()) == 2 * 2 * 8


def test_selection_ranks_the_retrained_seeds(tmp_path, monkeypatch):
  workdir = two_seed_workdir(tmp_path)
  accuracy = {'DARTS_V2': 0.9, 'DARTS_V1': 0.95}  # Seed 1 retrains better.
  trained = []

  def run_train(config, target):
    genotype = Genotype.load(config.genotype)
    name = next(n for n in accuracy if genotypes.get(n) == genotype)
    trained.append((Path(config.genotype).parent.name, Path(target).name,
                    config.train.epochs))
    return retrain.TrainResult(None, accuracy[name])

  monkeypatch.setattr(retrain, 'run_train', run_train)
  train_config = train_configs.get_config('tiny')
  train_config.train.epochs = 2
  result = selection.select_seeds(workdir, train_config)
  assert trained == [('seed_0', 'seed_0', 2), ('seed_1', 'seed_1', 2)]
  assert result['kept'] == 1
  assert [(c['index'], c['seed'], c['accuracy'])
          for c in result['candidates']] == [(1, 8, 0.95), (0, 7, 0.9)]
  assert Workdir(workdir).selection() == result
  table = selection.format_table(result).splitlines()
  assert table[1].startswith('*') and 'DARTS' not in table[1]
  assert str(genotypes.get('DARTS_V1')) in table[1]
  assert 'Keep seed index 1' in table[-1]

  def no_size(genotype):  # Slow to measure, and not what is tested here.
    raise ValueError('not measured in this test')

  monkeypatch.setattr(report, 'cifar_model_size', no_size)
  # Drawing is tested in test_viz_*; here only which figures are asked for.
  monkeypatch.setattr(report, '_figure',
                      lambda draw, path, alt: f'<img alt="{alt}">')
  page = report.write_report(workdir).read_text()
  start = page.index('<h2>Seeds')
  seeds_part = page[start:page.index('</section>', start)]
  assert 'seed_1 (kept)' in seeds_part and '0.9500' in seeds_part
  assert seeds_part.count('normal cell"') == 2
  assert '<td>normal</td><td>3</td><td>2</td>' in seeds_part
  assert 'every seed\'s health' not in seeds_part  # No health recorded.
  # The rest of the page is the kept seed's.
  final = page[page.index('<h2>Final genotype'):]
  assert html.escape(str(genotypes.get('DARTS_V1'))) in final


def test_seeds_health_figure(tmp_path):
  root = two_seed_workdir(tmp_path)
  for index in range(2):
    seed_dir = Workdir(root / f'seed_{index}')
    (seed_dir / 'metrics.jsonl').unlink(missing_ok=True)
    for epoch in range(3):
      seed_dir.append_metrics(10 * epoch, epoch, {
          'hessian_eigenvalue': 0.1 * (epoch + index),
          'normal_param_free_ops': float(epoch),
          'reduce_param_free_ops': 1.0})
  path = seeds_view.plot_seeds_health(Workdir(root).seeds(),
                                      tmp_path / 'h.svg')
  svg = path.read_text()
  assert svg.count('seed_0') == 3 and svg.count('seed_1') == 3  # Legends.
  for title in ('eigenvalue', 'derived normal cell', 'derived reduce cell'):
    assert title in svg
