"""Tests of jaxdarts.viz.report on hand-made search workdirs (no search is run)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn.space import DARTS_PRIMITIVES, DARTS_SPACE
from jaxdarts.viz import report
from images import PNG_SIGNATURE

FINAL = genotypes.get('DARTS_V2')
EARLIER = genotypes.get('DARTS_V1')
SCRIPT = '<script>alert("x")</script>'

CONFIG = {
    'data': {'name': 'digits', 'train_portion': 0.5},
    'model': {'channels': 16, 'layers': 8,
              'primitives': list(DARTS_PRIMITIVES)},
    'search': {'hypergradient': 'exact', 'epochs': 3, 'seed': 0},
    'note': SCRIPT,
}


def write_config(workdir: Path) -> None:
  (workdir / 'config.json').write_text(json.dumps(CONFIG, indent=2))


def write_metrics(workdir: Path) -> None:
  lines = []
  for epoch in range(3):
    for step in (10 * epoch + 5, 10 * epoch + 10):
      lines.append({'step': step, 'epoch': epoch, 'train_loss': 2.0 / step,
                    'val_loss': 2.2 / step, 'train_accuracy': 0.1 * epoch,
                    'val_accuracy': 0.09 * epoch, 'steps_per_second': 3.0})
    lines.append({'step': 10 * epoch + 10, 'epoch': epoch,
                  'supernet_val_loss': 1.5 - 0.1 * epoch,
                  'supernet_val_accuracy': 0.4 + 0.1 * epoch})
  (workdir / 'metrics.jsonl').write_text(
      ''.join(json.dumps(line) + '\n' for line in lines))


def write_alphas(workdir: Path, epochs: range) -> None:
  """Random softmax weights over the DARTS primitives, one file per epoch."""
  (workdir / 'alphas').mkdir()
  rng = np.random.default_rng(0)
  for epoch in epochs:
    weights = {}
    for cell in ('normal', 'reduce'):
      logits = rng.normal(size=DARTS_SPACE.alpha_shape)
      weights[cell] = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.savez(workdir / 'alphas' / f'epoch_{epoch:03d}.npz', **weights,
             primitives=np.asarray(DARTS_PRIMITIVES, dtype=str))


def write_genotypes(workdir: Path, history: dict[int, object]) -> None:
  (workdir / 'genotypes').mkdir()
  for epoch, genotype in history.items():
    genotype.save(workdir / 'genotypes' / f'epoch_{epoch:03d}.json')


@pytest.fixture(scope='module')
def full_run(tmp_path_factory) -> tuple[Path, Path, str]:
  """A finished 3-epoch run, its report's path and the page's text."""
  workdir = tmp_path_factory.mktemp('run')
  write_config(workdir)
  write_metrics(workdir)
  write_alphas(workdir, range(3))
  write_genotypes(workdir, {0: EARLIER, 1: FINAL, 2: FINAL})
  FINAL.save(workdir / 'genotype.json')
  path = report.write_report(workdir)
  return workdir, path, path.read_text(encoding='utf-8')


def images(page: str) -> list[bytes]:
  return [base64.b64decode(data) for data in
          re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_page_is_written_in_the_workdir(full_run):
  workdir, path, page = full_run
  assert path == workdir / 'report' / 'index.html'
  assert page.startswith('<!DOCTYPE html>')
  assert page.rstrip().endswith('</html>')


def test_page_shows_the_final_genotype_text(full_run):
  _, _, page = full_run
  assert html.escape(str(FINAL)) in page


def test_images_are_embedded(full_run):
  _, _, page = full_run
  pngs = images(page)
  assert len(pngs) == 5  # 2 cells, 2 alpha plots, the curves.
  assert all(png.startswith(PNG_SIGNATURE) and len(png) > 1000 for png in pngs)
  sources = re.findall(r'(?:src|href)="([^"]*)"', page)
  assert all(s.startswith('data:') for s in sources), sources


def test_model_size_at_the_evaluation_size(full_run):
  _, _, page = full_run
  assert 'C=36, 20 cells, 10 classes, one 32x32x3 image' in page
  # The reference code's count for DARTS_V2: param size = 3.349342 MB.
  assert '3.35M (3,349,342)' in page
  assert re.search(r'multiply-adds</td><td>\d+\.\d\dM \([\d,]+\)', page)


def test_history_table_and_stable_since(full_run):
  _, _, page = full_run
  assert 'unchanged since epoch <b>1</b>' in page
  assert 'of 3 epochs' in page
  assert page.count('<td>changed</td>') == 1
  assert page.count('<td>same</td>') == 1
  assert html.escape(str(EARLIER)) in page


def test_metrics_and_config_are_shown(full_run):
  _, _, page = full_run
  assert 'supernet_val_accuracy' in page
  assert '<code>search.hypergradient</code>' in page
  assert 'class="note"' not in page  # Nothing is missing.


def test_everything_is_escaped(full_run):
  _, _, page = full_run
  assert SCRIPT not in page
  assert html.escape(json.dumps(SCRIPT)) in page


def test_missing_genotype_raises_naming_the_files(tmp_path):
  write_config(tmp_path)
  write_metrics(tmp_path)
  with pytest.raises(FileNotFoundError,
                     match=r'genotype\.json.*genotypes/epoch_NNN\.json.*'
                     r'experiments/cifar_search\.py'):
    report.write_report(tmp_path)
  assert not (tmp_path / 'report').exists()


def test_missing_workdir_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such directory'):
    report.write_report(tmp_path / 'nowhere')


def test_builds_with_only_a_genotype(tmp_path):
  FINAL.save(tmp_path / 'genotype.json')
  page = report.write_report(tmp_path).read_text(encoding='utf-8')
  assert html.escape(str(FINAL)) in page
  assert len(images(page)) == 2  # The cells.
  assert re.search(r'class="note">No curves: .*metrics\.jsonl', page)
  assert re.search(r'class="note">No alpha plots: .*alphas/epoch_', page)
  assert 'No per-epoch genotypes' in page
  assert 'No config.json' in page
  assert '3,349,342' in page


def test_running_search_reports_its_last_epoch(tmp_path):
  write_genotypes(tmp_path, {0: EARLIER, 2: FINAL})
  page = report.write_report(tmp_path).read_text(encoding='utf-8')
  assert 'genotype.json is missing' in page
  assert 'last epoch written, epoch 2' in page
  assert 'No genotype file for epoch(s) 1.' in page
  assert re.search(r'<pre>[^<]*</pre>', page).group() == (
      f'<pre>{html.escape(str(FINAL))}</pre>')
