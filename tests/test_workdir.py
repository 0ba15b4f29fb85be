"""Tests of jaxdarts.run.workdir: reading and writing a run's directory."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from jaxdarts.run.workdir import Workdir
from jaxdarts.spaces.darts_cnn import genotypes
from search_workdir import EPOCHS, SPACE, write_search_workdir


@pytest.fixture
def workdir(tmp_path) -> Workdir:
  return Workdir(write_search_workdir(tmp_path / 'run'))


def test_alpha_history(workdir):
  epochs, weights, primitives = workdir.alpha_history()
  assert epochs.tolist() == list(EPOCHS)
  assert primitives == SPACE.primitives
  for cell in ('normal', 'reduce'):
    assert weights[cell].shape == (len(EPOCHS),) + SPACE.alpha_shape
    np.testing.assert_allclose(weights[cell].sum(-1), 1.0, rtol=1e-6)
  with np.load(workdir / 'alphas' / 'epoch_010.npz') as data:
    np.testing.assert_array_equal(weights['normal'][-1], data['normal'])


def test_metrics_skips_bad_values_and_lines(workdir):
  with open(workdir / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 41')  # A line still being written.
  with pytest.warns(UserWarning, match='metrics.jsonl:.*skipped'):
    records = workdir.metrics()
  assert records[-1] == {'step': 400.0}  # NaN and bool values dropped.
  assert all('note' not in r for r in records)
  assert any('supernet_val_accuracy' in r for r in records)


def test_trim_metrics_keeps_the_steps_up_to_a_resumed_one(tmp_path):
  workdir = Workdir(tmp_path)
  for step in (4, 8, 11, 12):
    workdir.append_metrics(step, step // 11, {'train_loss': 1 / step})
  with open(workdir / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 1')  # Cut short by a kill.
  workdir.trim_metrics(11)
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(line)['step'] for line in lines] == [4, 8, 11]
  assert json.loads(lines[-1]) == {'step': 11, 'epoch': 1,
                                   'train_loss': 1 / 11}


def test_genotype_history(workdir):
  history = workdir.genotype_history()
  assert [epoch for epoch, _ in history] == list(EPOCHS)
  assert history[0][1] == genotypes.get('DARTS_V1')
  assert history[-1][1] == genotypes.get('DARTS_V2')
  for path in (workdir / 'genotypes').glob('*.json'):
    path.unlink()
  assert workdir.genotype_history() == history  # From the .txt files.


def test_epoch_outputs_read_back(tmp_path):
  workdir = Workdir(tmp_path / 'new')
  weights = {'normal': np.full(SPACE.alpha_shape, 1 / SPACE.num_ops),
             'reduce': np.eye(*SPACE.alpha_shape)}
  workdir.write_epoch(3, genotypes.DARTS_V1, weights, SPACE.primitives)
  assert workdir.epoch_genotype(3) == genotypes.DARTS_V1
  assert workdir.epoch_genotype(2) is None
  assert workdir.epoch_genotype(-1) is None  # Before the first epoch.
  assert workdir.genotype() == (genotypes.DARTS_V1, (
      'genotype.json is missing (is the search still running?); this is the '
      'genotype of the last epoch written, epoch 3.'))
  epochs, history, primitives = workdir.alpha_history()
  assert epochs.tolist() == [3] and primitives == SPACE.primitives
  for cell, array in weights.items():
    np.testing.assert_array_equal(history[cell][0], array)
  workdir.write_genotype(genotypes.DARTS_V2)
  assert workdir.genotype() == (genotypes.DARTS_V2, None)


@pytest.mark.parametrize('missing,read', [
    ('alphas/epoch_', Workdir.alpha_history),
    ('metrics.jsonl', Workdir.metrics),
    ('genotypes/epoch_', Workdir.genotype_history),
])
def test_missing_files_are_named(missing, read, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=re.escape(missing)) as info:
    read(Workdir(empty))
  assert 'written by a run into its workdir' in str(info.value)
  with pytest.raises(FileNotFoundError, match='no such directory'):
    read(Workdir(tmp_path / 'nowhere'))


def test_bad_alpha_files_raise(workdir):
  path = workdir / 'alphas' / 'epoch_003.npz'
  np.savez(path, normal=np.ones(SPACE.alpha_shape))
  with pytest.raises(ValueError, match=r'epoch_003\.npz: expected the arrays '
                     'primitives and one per cell type; found normal'):
    workdir.alpha_history()
  np.savez(path, normal=np.ones((9, 8)), reduce=np.ones((9, 8)),
           primitives=np.asarray(SPACE.primitives))
  with pytest.raises(ValueError, match='differ'):
    workdir.alpha_history()
  np.savez(path, normal=np.ones(SPACE.alpha_shape),
           reduce=np.ones(SPACE.alpha_shape),
           primitives=np.asarray(SPACE.primitives, dtype=object))
  with pytest.raises(ValueError, match='string array'):
    workdir.alpha_history()
