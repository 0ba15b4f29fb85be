"""Tests of jaxdarts.viz.cells: cell drawings, DOT text and search-run plots."""

from __future__ import annotations

import collections
import itertools
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.viz import cells as visualize
from jaxdarts.genotype import Genotype
from jaxdarts.spaces.darts_cnn.space import DARTS_PRIMITIVES, SearchSpace

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'

# Hand-built cells with 2 and 5 intermediate nodes.
G2 = Genotype(
    normal=[('sep_conv_3x3', 0), ('skip_connect', 1),
            ('dil_conv_3x3', 2), ('max_pool_3x3', 0)],
    normal_concat=[2, 3],
    reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1),
            ('skip_connect', 2), ('avg_pool_3x3', 1)],
    reduce_concat=[2, 3],
)
G5 = Genotype(
    normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
            ('skip_connect', 0), ('dil_conv_3x3', 2),
            ('sep_conv_3x3', 3), ('avg_pool_3x3', 1),
            ('dil_conv_5x5', 4), ('sep_conv_3x3', 0),
            ('max_pool_3x3', 5), ('skip_connect', 2)],
    normal_concat=range(2, 7),
    reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1),
            ('max_pool_3x3', 0), ('skip_connect', 1),
            ('skip_connect', 0), ('avg_pool_3x3', 1),
            ('sep_conv_5x5', 1), ('dil_conv_3x3', 0),
            ('max_pool_3x3', 1), ('sep_conv_3x3', 0)],
    reduce_concat=range(2, 7),
)

ALL_CELLS = [(name, cell) for name in genotypes.names()
             for cell in ('normal', 'reduce')]


def assert_png(path: Path) -> None:
  data = Path(path).read_bytes()
  assert data.startswith(PNG_SIGNATURE), path
  assert len(data) > 1000, path


def assert_svg(path: Path) -> ET.Element:
  root = ET.parse(path).getroot()
  assert root.tag.endswith('svg'), root.tag
  assert len(root) > 0
  return root


# ---------------------------------------------------------------------------
# Import.


def test_import_needs_no_matplotlib():
  code = ('import sys, jaxdarts.viz.cells; '
          'print("matplotlib" in sys.modules)')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, check=True)
  assert result.stdout.strip() == 'False'


# ---------------------------------------------------------------------------
# Drawings.


@pytest.mark.parametrize('name', genotypes.names())
def test_draw_genotype_writes_png_svg_and_dot(name, tmp_path):
  genotype = genotypes.get(name)
  paths = visualize.draw_genotype(genotype, tmp_path / 'cells', prefix='g_')
  assert [p.name for p in paths] == [
      'g_normal.png', 'g_normal.svg', 'g_normal.dot',
      'g_reduce.png', 'g_reduce.svg', 'g_reduce.dot']
  for path in paths:
    assert path.is_file() and path.stat().st_size > 0
  for cell in ('normal', 'reduce'):
    assert_png(tmp_path / 'cells' / f'g_{cell}.png')
    root = assert_svg(tmp_path / 'cells' / f'g_{cell}.svg')
    text = ''.join(root.itertext())
    for op, _ in genotype.cell(cell)[0]:
      assert op in text  # Labels are drawn (and kept as SVG text).
    dot = (tmp_path / 'cells' / f'g_{cell}.dot').read_text()
    assert dot == visualize.to_dot(genotype, cell)


@pytest.mark.parametrize('genotype', [G2, G5], ids=['2_nodes', '5_nodes'])
@pytest.mark.parametrize('cell', ['normal', 'reduce'])
def test_draw_cell_other_node_counts(genotype, cell, tmp_path):
  for suffix in ('.png', '.svg'):
    path = tmp_path / f'{cell}{suffix}'
    fig = visualize.draw_cell(genotype, cell, path)
    assert fig is not None
  assert_png(tmp_path / f'{cell}.png')
  assert_svg(tmp_path / f'{cell}.svg')


def test_draw_cell_returns_figure_with_one_box_and_label_per_state_and_edge():
  fig = visualize.draw_cell(genotypes.get('DARTS_V2'), 'reduce')
  (ax,) = fig.axes
  texts = [t.get_text() for t in ax.texts]
  pairs = genotypes.get('DARTS_V2').reduce
  assert sorted(t for t in texts if t in DARTS_PRIMITIVES) == sorted(
      op for op, _ in pairs)
  assert {'$c_{k-2}$', '$c_{k-1}$', '0', '1', '2', '3', '$c_{k}$'} <= set(texts)


def test_draw_cell_into_given_axes(tmp_path):
  from matplotlib.figure import Figure
  fig = Figure(figsize=(10, 4))
  axes = fig.subplots(1, 2)
  assert visualize.draw_cell(G2, 'normal', ax=axes[0]) is fig
  assert visualize.draw_cell(G2, 'reduce', ax=axes[1]) is fig
  fig.savefig(tmp_path / 'both.png')
  assert_png(tmp_path / 'both.png')


@pytest.mark.parametrize('name,cell', ALL_CELLS)
def test_labels_overlap_neither_each_other_nor_boxes(name, cell):
  fig = visualize.draw_cell(genotypes.get(name), cell)
  (ax,) = fig.axes
  labels = [t.get_window_extent() for t in ax.texts
            if t.get_text() in DARTS_PRIMITIVES]
  boxes = [p.get_window_extent() for p in ax.patches
           if type(p).__name__ == 'FancyBboxPatch']
  assert len(boxes) == 2 + genotypes.get(name).num_nodes + 1
  for a, b in itertools.combinations(labels, 2):
    assert not a.overlaps(b), (a, b)
  for label, box in itertools.product(labels, boxes):
    assert not label.overlaps(box), (label, box)


def test_layout_goes_left_to_right():
  for genotype, cell in itertools.product([G2, G5, genotypes.get('PDARTS')],
                                          ('normal', 'reduce')):
    c = visualize._cell(genotype, cell)
    positions = visualize._layout(c)
    for edge in c.edges:
      assert positions[edge.source][0] < positions[edge.target][0]
    assert all(x < positions[c.output][0] for s, (x, _) in positions.items()
               if s != c.output)
    assert positions[0][0] == positions[1][0] == 0.0
    assert len(set(positions.values())) == len(positions)


def test_draw_cell_rejects_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match='unsupported image format'):
    visualize.draw_cell(G2, 'normal', tmp_path / 'cell.jpg')
  with pytest.raises(ValueError, match='unknown cell type'):
    visualize.draw_cell(G2, 'other')
  bad = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 2)],
                 normal_concat=[2], reduce=[('sep_conv_3x3', 0),
                                            ('sep_conv_3x3', 1)],
                 reduce_concat=[2])
  with pytest.raises(ValueError, match='reads state 2'):
    visualize.draw_cell(bad, 'normal')


# ---------------------------------------------------------------------------
# DOT.

EDGE_LINE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="([^"]+)"\];$')
CONCAT_LINE = re.compile(r'^\s*"([^"]+)" -> "c_\{k\}" \[color="[^"]+"\];$')


@pytest.mark.parametrize('genotype,cell',
                         [(genotypes.get(n), c) for n, c in ALL_CELLS]
                         + [(G2, 'normal'), (G5, 'reduce')])
def test_to_dot_lists_every_edge(genotype, cell):
  dot = visualize.to_dot(genotype, cell)
  lines = dot.splitlines()
  assert lines[0] == f'digraph "{cell}" {{' and lines[-1] == '}'
  pairs, concat = genotype.cell(cell)
  names = lambda s: visualize.state_name(s)
  expected = collections.Counter(
      (names(state), str(k // 2), op) for k, (op, state) in enumerate(pairs))
  found = collections.Counter(
      m.groups() for m in map(EDGE_LINE.match, lines) if m)
  assert found == expected
  concat_sources = [m.group(1) for m in map(CONCAT_LINE.match, lines) if m]
  assert concat_sources == [names(s) for s in concat]
  for node in ['c_{k-2}', 'c_{k-1}', 'c_{k}'] + [
      str(m) for m in range(genotype.num_nodes)]:
    assert any(line.strip().startswith(f'"{node}" [') for line in lines), node


def test_to_dot_quotes_labels():
  odd = Genotype(normal=[('my "op"\\x', 0), ('sep_conv_3x3', 1)],
                 normal_concat=[2], reduce=[('sep_conv_3x3', 0),
                                            ('sep_conv_3x3', 1)],
                 reduce_concat=[2])
  dot = visualize.to_dot(odd)
  assert '"c_{k-2}" -> "0" [label="my \\"op\\"\\\\x"];' in dot


def test_state_and_edge_names():
  assert [visualize.state_name(s) for s in range(4)] == [
      'c_{k-2}', 'c_{k-1}', '0', '1']
  assert visualize.state_name(6, num_nodes=4) == 'c_{k}'
  assert visualize.edge_label(2, 1) == 'node 2 <- c_{k-1}'
  assert visualize.edge_label(3, 2) == 'node 3 <- node 0'
  for n in range(1, 8):
    assert visualize.nodes_for_edges(SearchSpace(num_nodes=n).num_edges) == n
  with pytest.raises(ValueError, match='13 edges'):
    visualize.nodes_for_edges(13)


# ---------------------------------------------------------------------------
# Search workdir.

SPACE = SearchSpace()
EPOCHS = (0, 1, 2, 10)  # 10 after 2: epochs are sorted by number.


def softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.fixture
def workdir(tmp_path) -> Path:
  """A fake search-run workdir: alphas, genotypes and metrics."""
  root = tmp_path / 'run'
  (root / 'alphas').mkdir(parents=True)
  (root / 'genotypes').mkdir()
  rng = np.random.default_rng(0)
  for epoch in EPOCHS:
    np.savez(root / 'alphas' / f'epoch_{epoch:03d}.npz',
             normal=softmax(rng.normal(size=SPACE.alpha_shape) * epoch),
             reduce=softmax(rng.normal(size=SPACE.alpha_shape)),
             primitives=np.asarray(SPACE.primitives))
    genotype = genotypes.get('DARTS_V1' if epoch < 2 else 'DARTS_V2')
    genotype.save(root / 'genotypes' / f'epoch_{epoch:03d}.json')
    (root / 'genotypes' / f'epoch_{epoch:03d}.txt').write_text(str(genotype))
  records = []
  for step in range(0, 400, 10):
    records.append({'step': step, 'epoch': step // 100,
                    'train_loss': 2.3 - step / 300,
                    'train_accuracy': step / 500,
                    'val_loss': 2.4 - step / 300, 'val_accuracy': step / 600,
                    'lr': 0.025, 'entropy': 2.07, 'hypergradient_norm': 0.01,
                    'steps_per_second': 3.1, 'note': 'text is skipped'})
    if step % 100 == 90:
      records.append({'step': step + 10, 'epoch': step // 100,
                      'supernet_val_loss': 2.0 - step / 400,
                      'supernet_val_accuracy': step / 700})
  lines = [json.dumps(r) for r in records]
  lines += ['', '{"step": 400, "train_loss": NaN, "lr": true}']
  (root / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
  (root / 'config.json').write_text('{}')
  genotypes.get('DARTS_V2').save(root / 'genotype.json')
  return root


def test_load_alpha_history(workdir):
  epochs, weights, primitives = visualize.load_alpha_history(workdir)
  assert epochs.tolist() == list(EPOCHS)
  assert primitives == SPACE.primitives
  for cell in ('normal', 'reduce'):
    assert weights[cell].shape == (len(EPOCHS),) + SPACE.alpha_shape
    np.testing.assert_allclose(weights[cell].sum(-1), 1.0, rtol=1e-6)
  with np.load(workdir / 'alphas' / 'epoch_010.npz') as data:
    np.testing.assert_array_equal(weights['normal'][-1], data['normal'])


def test_plot_alpha_evolution(workdir, tmp_path):
  path = visualize.plot_alpha_evolution(workdir, tmp_path / 'a' / 'normal.png')
  assert path == tmp_path / 'a' / 'normal.png'
  assert_png(path)
  svg = visualize.plot_alpha_evolution(workdir, tmp_path / 'reduce.svg',
                                       cell='reduce')
  text = ''.join(assert_svg(svg).itertext())
  assert 'node 3 <- node 2' in text and 'node 0 <- c_{k-2}' in text
  assert text.count('sep_conv_3x3') == 1  # One legend.


def test_plot_curves(workdir, tmp_path):
  path = visualize.plot_curves(workdir, tmp_path / 'curves.png')
  assert_png(path)
  text = ''.join(assert_svg(
      visualize.plot_curves(workdir, tmp_path / 'curves.svg')).itertext())
  for key in ('train_loss', 'val_accuracy', 'supernet_val_accuracy', 'lr',
              'entropy', 'hypergradient_norm', 'steps_per_second'):
    assert key in text
  assert 'note' not in text


def test_load_metrics_skips_bad_values_and_lines(workdir):
  with open(workdir / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 41')  # A line still being written.
  with pytest.warns(UserWarning, match='metrics.jsonl:.*skipped'):
    records = visualize.load_metrics(workdir)
  assert records[-1] == {'step': 400.0}  # NaN and bool values dropped.
  assert all('note' not in r for r in records)
  assert any('supernet_val_accuracy' in r for r in records)


def test_genotype_history(workdir):
  history = visualize.genotype_history(workdir)
  assert [epoch for epoch, _ in history] == list(EPOCHS)
  assert history[0][1] == genotypes.get('DARTS_V1')
  assert history[-1][1] == genotypes.get('DARTS_V2')
  assert visualize.stable_since(history) == 2
  for path in (workdir / 'genotypes').glob('*.json'):
    path.unlink()
  assert visualize.genotype_history(workdir) == history  # From the .txt files.


def test_stable_since():
  a, b = genotypes.get('DARTS_V1'), genotypes.get('DARTS_V2')
  assert visualize.stable_since([]) is None
  assert visualize.stable_since([(0, a)]) == 0
  assert visualize.stable_since([(0, a), (1, a), (2, a)]) == 0
  assert visualize.stable_since([(0, a), (1, b), (2, a), (3, a)]) == 2
  assert visualize.stable_since([(0, a), (1, a), (2, b)]) == 2
  assert visualize.stable_since([(3, a), (0, b), (2, a), (1, b)]) == 2
  # The order of a node's two pairs (which was stronger) is no change.
  swapped = b._replace(normal=b.normal[1::-1] + b.normal[2:])
  assert swapped != b
  assert visualize.stable_since([(0, a), (1, b), (2, swapped)]) == 1


@pytest.mark.parametrize('missing,call', [
    ('alphas/epoch_', lambda w, p: visualize.plot_alpha_evolution(w, p)),
    ('alphas/epoch_', lambda w, p: visualize.load_alpha_history(w)),
    ('metrics.jsonl', lambda w, p: visualize.plot_curves(w, p)),
    ('genotypes/epoch_', lambda w, p: visualize.genotype_history(w)),
])
def test_missing_files_are_named(missing, call, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=re.escape(missing)) as info:
    call(empty, tmp_path / 'out.png')
  assert 'search run' in str(info.value)
  with pytest.raises(FileNotFoundError, match='no such directory'):
    call(tmp_path / 'nowhere', tmp_path / 'out.png')


def test_bad_alpha_files_raise(workdir):
  path = workdir / 'alphas' / 'epoch_003.npz'
  np.savez(path, normal=np.ones(SPACE.alpha_shape))
  with pytest.raises(ValueError, match=r'epoch_003\.npz.*reduce, primitives'):
    visualize.load_alpha_history(workdir)
  np.savez(path, normal=np.ones((9, 8)), reduce=np.ones((9, 8)),
           primitives=np.asarray(SPACE.primitives))
  with pytest.raises(ValueError, match='differ'):
    visualize.load_alpha_history(workdir)
  np.savez(path, normal=np.ones(SPACE.alpha_shape),
           reduce=np.ones(SPACE.alpha_shape),
           primitives=np.asarray(SPACE.primitives, dtype=object))
  with pytest.raises(ValueError, match='string array'):
    visualize.load_alpha_history(workdir)


def test_plot_curves_without_numbers_raises(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"note": "x"}\n')
  with pytest.raises(ValueError, match='no numeric metrics'):
    visualize.plot_curves(tmp_path, tmp_path / 'curves.png')
