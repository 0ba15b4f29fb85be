"""Tests of jaxdarts.viz.cells and .layout: cell drawings and DOT text."""

from __future__ import annotations

import collections
import itertools
import re
import subprocess
import sys

import pytest

from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn.space import DARTS_PRIMITIVES
from jaxdarts.viz import cells
from jaxdarts.viz import layout
from images import assert_png, assert_svg

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
  paths = cells.draw_genotype(genotype, tmp_path / 'cells', prefix='g_')
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
    assert dot == cells.to_dot(genotype, cell)


@pytest.mark.parametrize('genotype', [G2, G5], ids=['2_nodes', '5_nodes'])
@pytest.mark.parametrize('cell', ['normal', 'reduce'])
def test_draw_cell_other_node_counts(genotype, cell, tmp_path):
  for suffix in ('.png', '.svg'):
    path = tmp_path / f'{cell}{suffix}'
    fig = cells.draw_cell(genotype, cell, path)
    assert fig is not None
  assert_png(tmp_path / f'{cell}.png')
  assert_svg(tmp_path / f'{cell}.svg')


def test_draw_cell_returns_figure_with_one_box_and_label_per_state_and_edge():
  fig = cells.draw_cell(genotypes.get('DARTS_V2'), 'reduce')
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
  assert cells.draw_cell(G2, 'normal', ax=axes[0]) is fig
  assert cells.draw_cell(G2, 'reduce', ax=axes[1]) is fig
  fig.savefig(tmp_path / 'both.png')
  assert_png(tmp_path / 'both.png')


@pytest.mark.parametrize('name,cell', ALL_CELLS)
def test_labels_overlap_neither_each_other_nor_boxes(name, cell):
  fig = cells.draw_cell(genotypes.get(name), cell)
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
    c = layout.cell_structure(genotype, cell)
    positions = layout.positions(c)
    for edge in c.edges:
      assert positions[edge.source][0] < positions[edge.target][0]
    assert all(x < positions[c.output][0] for s, (x, _) in positions.items()
               if s != c.output)
    assert positions[0][0] == positions[1][0] == 0.0
    assert len(set(positions.values())) == len(positions)


def test_draw_cell_rejects_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match='unsupported image format'):
    cells.draw_cell(G2, 'normal', tmp_path / 'cell.jpg')
  with pytest.raises(ValueError, match='unknown cell type'):
    cells.draw_cell(G2, 'other')
  bad = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 2)],
                 normal_concat=[2], reduce=[('sep_conv_3x3', 0),
                                            ('sep_conv_3x3', 1)],
                 reduce_concat=[2])
  with pytest.raises(ValueError, match='reads state 2'):
    cells.draw_cell(bad, 'normal')


# ---------------------------------------------------------------------------
# DOT.

EDGE_LINE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="([^"]+)"\];$')
CONCAT_LINE = re.compile(r'^\s*"([^"]+)" -> "c_\{k\}" \[color="[^"]+"\];$')


@pytest.mark.parametrize('genotype,cell',
                         [(genotypes.get(n), c) for n, c in ALL_CELLS]
                         + [(G2, 'normal'), (G5, 'reduce')])
def test_to_dot_lists_every_edge(genotype, cell):
  dot = cells.to_dot(genotype, cell)
  lines = dot.splitlines()
  assert lines[0] == f'digraph "{cell}" {{' and lines[-1] == '}'
  pairs, concat = genotype.cell(cell)
  names = lambda s: layout.state_name(s)
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
  dot = cells.to_dot(odd)
  assert '"c_{k-2}" -> "0" [label="my \\"op\\"\\\\x"];' in dot


def test_state_names():
  assert [layout.state_name(s) for s in range(4)] == [
      'c_{k-2}', 'c_{k-1}', '0', '1']
  assert layout.state_name(6, num_nodes=4) == 'c_{k}'
