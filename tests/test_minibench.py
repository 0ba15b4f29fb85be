"""The offline benchmark: the task, deduplication, a regenerated tiny
table (format, determinism), the table statistics and the scorer."""

from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np
import pytest

from jaxdarts.bench import minibench
from jaxdarts.spaces.nb201.genotype import Genotype

TINY = minibench.BenchConfig(primitives=('none', 'skip_connect'),
                             num_nodes=3, channels=2, epochs=1, seeds=(0, 1))


def test_unique_genotypes_by_hand():
  """none/skip on 3 nodes: the output is x times the number of skip paths
  from node 0 to node 2 (edge 0-2 plus path 0-1-2): 0, 1 or 2 copies."""
  reps, mapping = minibench.unique_genotypes(TINY.space)
  assert len(mapping) == 8
  assert sorted(g.canonical() for g in reps) == [(), ('x',), ('x', 'x')]
  for ops in itertools.product(('none', 'skip_connect'), repeat=3):
    paths = (ops[1] == 'skip_connect') + (
        ops[0] == 'skip_connect' and ops[2] == 'skip_connect')
    rep = Genotype.parse(mapping[str(Genotype.from_ops(ops))])
    assert rep.canonical() == ('x',) * paths


def test_digits_canvas_is_fixed_and_holds_the_digits():
  from jaxdarts import data  # pylint: disable=import-outside-toplevel
  train = data.load_dataset('digits_canvas', 'train')
  test = data.load_dataset('digits_canvas', 'test')
  digits = data.load_dataset('digits', 'test')
  assert train.images.shape == (1437, 16, 16, 1)
  assert test.images.shape == (1080, 16, 16, 1)
  np.testing.assert_array_equal(test.labels, np.tile(digits.labels, 3))
  np.testing.assert_array_equal(
      data.load_dataset('digits_canvas', 'train').images, train.images)
  # The digit is somewhere: the brightest 8x8 window of a canvas carries
  # about half of its ink (0.49); on noise and distractors alone, 0.33.
  canvas = train.images[..., 0].astype(np.float64)
  windows = np.lib.stride_tricks.sliding_window_view(canvas, (8, 8),
                                                     axis=(1, 2))
  share = windows.sum((-1, -2)).max((1, 2)) / canvas.sum((1, 2))
  assert np.median(share) > 0.42


@pytest.fixture(scope='module')
def tiny_tables():
  trainer = minibench.Trainer(TINY)
  first = minibench.build_table(TINY, trainer=trainer, log=lambda m: None)
  again = minibench.build_table(TINY, trainer=trainer, limit=2,
                                log=lambda m: None)
  return first, again


def _check_format(table, config):
  assert table['format'] == minibench.FORMAT
  assert table['space_size'] == config.space.size
  assert len(table['mapping']) <= config.space.size
  assert set(table['mapping'].values()) == set(table['archs'])
  for arch, entry in table['archs'].items():
    assert Genotype.parse(arch).canonical() not in (
        Genotype.parse(a).canonical() for a in table['archs'] if a != arch)
    for split in ('val', 'test'):
      assert len(entry[split]) == len(config.seeds)
      assert all(0 <= a <= 1 for a in entry[split])
    assert entry['params'] > 0 and entry['macs'] > 0
    assert entry['train_seconds'] > 0
  for key in ('jax', 'flax', 'optax', 'numpy'):
    assert table['versions'][key]


def test_tiny_table_format_and_determinism(tiny_tables, tmp_path):
  first, again = tiny_tables
  _check_format(first, TINY)
  assert first['num_unique'] == 3 and len(first['mapping']) == 8
  # The same entries, trained again: the same accuracies, bit for bit.
  for arch, entry in again['archs'].items():
    for split in ('val', 'test', 'final_train_loss'):
      assert entry[split] == first['archs'][arch][split]
  # The zero cell (no path to the output) predicts one class for all.
  zero = str(Genotype.from_ops(['none'] * 3))
  assert first['archs'][zero]['final_train_loss'][0] > 1.5
  minibench.write_table(first, tmp_path / 'a.json.gz')
  minibench.write_table(minibench.read_table(tmp_path / 'a.json.gz'),
                        tmp_path / 'b.json.gz')
  assert (tmp_path / 'a.json.gz').read_bytes() == (
      tmp_path / 'b.json.gz').read_bytes()


STORED = (pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'
          / 'minibench_nb201_3op.json.gz')


def test_stored_table():
  """The repository's table: the defaults' space, every cell, a wide spread."""
  table = minibench.read_table(STORED)
  config = minibench.BenchConfig()
  assert table['config']['primitives'] == list(config.primitives)
  assert table['command'].startswith('python3 benchmarks/minibench.py')
  _check_format(table, config)
  assert len(table['mapping']) == config.space.size == 729
  stats = minibench.summary(table)
  # The task tells cells apart: best - median is several seed deviations.
  assert stats['best'] - stats['median'] > 3 * stats['seed_std']
  assert stats['median'] > stats['all_skip']


def test_summary_by_hand():
  table = {'config': {'primitives': ['none', 'skip_connect'],
                      'num_nodes': 2},
           'mapping': {'|none~0|': '|none~0|',
                       '|skip_connect~0|': '|skip_connect~0|'},
           'archs': {'|none~0|': {'test': [0.1, 0.3]},
                     '|skip_connect~0|': {'test': [0.5, 0.7]}}}
  summary = minibench.summary(table)
  assert summary['best'] == pytest.approx(0.6)
  assert summary['median'] == pytest.approx(0.4)
  assert summary['all_skip'] == pytest.approx(0.6)
  assert summary['seed_std'] == pytest.approx(np.std([0.1, 0.3], ddof=1))
  assert minibench.percentile(table, 0.6) == pytest.approx(75)
  with pytest.raises(KeyError, match='not in the table'):
    minibench.mean_accuracy(table, '|nor_conv_3x3~0|')


# --- Scoring ---------------------------------------------------------------

from jaxdarts.bench import score  # pylint: disable=g-import-not-at-top,wrong-import-position


def _toy_table():
  """One edge, three ops: test accuracy none < skip < conv; conv is the
  slowest to train; validation ranks skip first."""
  archs = {'|none~0|': {'val': [0.1], 'test': [0.1], 'train_seconds': 1.0,
                        'params': 100},
           '|skip_connect~0|': {'val': [0.9], 'test': [0.5],
                                'train_seconds': 1.0, 'params': 100},
           '|nor_conv_3x3~0|': {'val': [0.8], 'test': [0.9],
                                'train_seconds': 10.0, 'params': 676}}
  return {'config': {'primitives': ['none', 'skip_connect', 'nor_conv_3x3'],
                     'num_nodes': 2},
          'mapping': {a: a for a in archs}, 'archs': archs}


def test_kendall_tau_by_hand():
  table = _toy_table()
  ops = table['config']['primitives']
  assert score.kendall_tau(np.array([[0.1, 0.3, 0.6]]), table,
                           ops) == pytest.approx(1)
  assert score.kendall_tau(np.array([[0.6, 0.3, 0.1]]), table,
                           ops) == pytest.approx(-1)
  # Pairs: (none, skip) concordant, (none, conv) and (skip, conv)
  # discordant: (1 - 2) / 3.
  assert score.kendall_tau(np.array([[0.2, 0.7, 0.1]]), table,
                           ops) == pytest.approx(-1 / 3)


def test_random_search_spends_the_budget_and_picks_by_validation():
  table = _toy_table()
  arch, count = score.random_search(table, 200, np.random.default_rng(0))
  assert arch == '|skip_connect~0|'  # Best validation, not best test.
  # A budget below one sample still samples once.
  arch, count = score.random_search(table, 0.5, np.random.default_rng(0))
  assert count == 1
  rows = score.score_random(table, 200, [0, 1])
  assert [r['regret'] for r in rows] == pytest.approx([0.4, 0.4])
  assert rows[0]['percentile'] == pytest.approx(100 * 1.5 / 3)
  assert rows[0]['params'] == 100
  assert (rows[0]['param_free'], rows[0]['none_edges']) == (1, 0)
  board = score.scoreboard(rows)
  assert '| random | - | 2 | 0.5000 +- 0.0000 | 0.4000 +- 0.0000 |' in board
  # No supernet; the skip cell's parameters and its one parameter-free op.
  assert '| - | 100 +- 0 | 1.0 +- 0.0 | 0.0 +- 0.0 |' in board


def test_collapse_signature_and_supernet_accuracy_by_hand():
  cell = Genotype.parse('|skip_connect~0|+|none~0|avg_pool_3x3~1|+'
                        '|nor_conv_3x3~0|skip_connect~1|nor_conv_1x1~2|')
  assert score.cell_ops(cell) == {'param_free': 3, 'none_edges': 1}
  records = [{'step': 1, 'train_loss': 2.0},
             {'step': 10, 'supernet_val_accuracy': 0.3},
             {'step': 20, 'supernet_val_accuracy': 0.6},
             {'step': 21, 'train_loss': 1.0}]
  assert score.final_supernet_accuracy(records) == 0.6
  assert np.isnan(score.final_supernet_accuracy(records[:1]))


def test_score_method_rows_carry_the_quality_columns(tiny_tables, tmp_path):
  """A one-epoch search in the tiny table's space, scored end to end."""
  from experiments.configs import search as search_configs  # pylint: disable=import-outside-toplevel
  table, _ = tiny_tables
  config = search_configs.get_config('nb201_digits')
  config.model.primitives = TINY.primitives
  config.model.num_nodes = TINY.num_nodes
  config.model.channels = 2
  config.search.epochs = 1
  config.search.eigenvalue_every = 0
  rows = score.score_method(config, table, [0], tmp_path,
                            method='darts_minus', log=lambda m: None)
  row, = rows
  metrics = [json.loads(line) for line in (
      tmp_path / 'darts_minus_first_order_s0' / 'metrics.jsonl'
  ).read_text().splitlines()]
  assert row['supernet_val'] == pytest.approx(
      [m for m in metrics if 'supernet_val_accuracy' in m][-1][
          'supernet_val_accuracy'])
  assert 0 <= row['supernet_val'] <= 1
  rep = table['mapping'][row['arch']]
  assert row['params'] == table['archs'][rep]['params']
  assert row['param_free'] + row['none_edges'] == 3  # Only none and skip.
  assert '| darts_minus | first_order | 1 |' in score.scoreboard(rows)


EVERY_METHOD = ('darts:first_order,darts:exact,pc_darts,gdas,darts_minus,'
                'fair_darts,beta_darts,sdarts_rs,sdarts_adv,drnas')


def test_score_command_takes_every_method():
  """The documented --methods value names every registered method; each
  builds with the preset's config, PC-DARTS with 3 of 10 epochs frozen."""
  from experiments import score as command  # pylint: disable=import-outside-toplevel
  from experiments.configs import search as search_configs  # pylint: disable=import-outside-toplevel
  from jaxdarts import methods  # pylint: disable=import-outside-toplevel
  assert EVERY_METHOD in command.__doc__.replace('\\\n', '')
  pairs = command.parse_methods(EVERY_METHOD)
  assert {name for name, _ in pairs} == set(methods.METHODS)
  assert ('darts', 'exact') in pairs and ('gdas', 'first_order') in pairs
  preset = search_configs.get_config('nb201_digits')
  for name, _ in pairs:
    config = command.method_config(preset, name)
    method = methods.get(name, num_steps=110, **config.method)
    assert method.name == name
    assert config.search.arch_warmup_epochs == (3 if name == 'pc_darts'
                                                else 0)
  assert preset.search.arch_warmup_epochs == 0  # A copy was changed.
  with pytest.raises(SystemExit, match='first-order hypergradients only'):
    command.parse_methods('gdas:exact')
  with pytest.raises(SystemExit, match='unknown method'):
    command.parse_methods('dartz')
