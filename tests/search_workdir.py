"""A hand-made search workdir, as a search writes it, for the tests that
read one (`jaxdarts.run.workdir`, the plots of `jaxdarts.viz.history`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn.space import SearchSpace

SPACE = SearchSpace()
EPOCHS = (0, 1, 2, 10)  # 10 after 2: epochs are sorted by number.


def softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def write_search_workdir(root: Path) -> Path:
  """A fake search-run workdir at ``root``: alphas, genotypes (DARTS_V1
  until epoch 1, then DARTS_V2) and metrics, with a blank line and a line
  of non-numbers at the end of ``metrics.jsonl``."""
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
