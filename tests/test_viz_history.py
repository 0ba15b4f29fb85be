"""Tests of jaxdarts.viz.history: the plots of a search run's history."""

from __future__ import annotations

from pathlib import Path

import pytest

from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn.space import SearchSpace
from jaxdarts.viz import history
from images import assert_png, assert_svg
from search_workdir import write_search_workdir


@pytest.fixture
def workdir(tmp_path) -> Path:
  return write_search_workdir(tmp_path / 'run')


def test_edge_names():
  assert history.edge_label(2, 1) == 'node 2 <- c_{k-1}'
  assert history.edge_label(3, 2) == 'node 3 <- node 0'
  for n in range(1, 8):
    assert history.nodes_for_edges(SearchSpace(num_nodes=n).num_edges) == n
  with pytest.raises(ValueError, match='13 edges'):
    history.nodes_for_edges(13)


def test_plot_alpha_evolution(workdir, tmp_path):
  path = history.plot_alpha_evolution(workdir, tmp_path / 'a' / 'normal.png')
  assert path == tmp_path / 'a' / 'normal.png'
  assert_png(path)
  svg = history.plot_alpha_evolution(workdir, tmp_path / 'reduce.svg',
                                     cell='reduce')
  text = ''.join(assert_svg(svg).itertext())
  assert 'node 3 <- node 2' in text and 'node 0 <- c_{k-2}' in text
  assert text.count('sep_conv_3x3') == 1  # One legend.


def test_plot_curves(workdir, tmp_path):
  path = history.plot_curves(workdir, tmp_path / 'curves.png')
  assert_png(path)
  text = ''.join(assert_svg(
      history.plot_curves(workdir, tmp_path / 'curves.svg')).itertext())
  for key in ('train_loss', 'val_accuracy', 'supernet_val_accuracy', 'lr',
              'entropy', 'hypergradient_norm', 'steps_per_second'):
    assert key in text
  assert 'note' not in text


def test_stable_since():
  a, b = genotypes.get('DARTS_V1'), genotypes.get('DARTS_V2')
  assert history.stable_since([]) is None
  assert history.stable_since([(0, a)]) == 0
  assert history.stable_since([(0, a), (1, a), (2, a)]) == 0
  assert history.stable_since([(0, a), (1, b), (2, a), (3, a)]) == 2
  assert history.stable_since([(0, a), (1, a), (2, b)]) == 2
  assert history.stable_since([(3, a), (0, b), (2, a), (1, b)]) == 2
  # The order of a node's two pairs (which was stronger) is no change.
  swapped = b._replace(normal=b.normal[1::-1] + b.normal[2:])
  assert swapped != b
  assert history.stable_since([(0, a), (1, b), (2, swapped)]) == 1


def test_plots_name_the_missing_files(tmp_path):
  """As `jaxdarts.run.workdir.Workdir` reports them."""
  out = tmp_path / 'out.png'
  with pytest.raises(FileNotFoundError, match=r'no alphas/epoch_\*\.npz'):
    history.plot_alpha_evolution(tmp_path, out)
  with pytest.raises(FileNotFoundError, match=r'no metrics\.jsonl'):
    history.plot_curves(tmp_path, out)
  for plot in (history.plot_alpha_evolution, history.plot_curves):
    with pytest.raises(FileNotFoundError, match='no such directory'):
      plot(tmp_path / 'nowhere', out)
  assert not out.exists()


def test_plot_curves_without_numbers_raises(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"note": "x"}\n')
  with pytest.raises(ValueError, match='no numeric metrics'):
    history.plot_curves(tmp_path, tmp_path / 'curves.png')
