"""Picking the seed to keep, as the paper did: a short retraining of each.

DARTS (Liu et al., ICLR 2019, section 3.2) ran its search four times and
kept the cell whose network, trained from scratch for a short while (100
epochs on CIFAR-10 instead of 600), validated best. :func:`select_seeds`
retrains the final genotype of every ``seed_<i>/`` of a several-seed search
(`jaxdarts.run.seeds`) with `jaxdarts.run.retrain.run_train` and one
retraining config (so every seed gets the same epochs, data order and
initialisation seed), and ranks them by the retraining's held-out accuracy.

Each retraining runs in ``<search workdir>/select/seed_<i>/`` and resumes
like any run; the ranking is written to ``<search workdir>/selection.json``
(:meth:`jaxdarts.run.workdir.Workdir.write_selection`).

The held-out split is what ``run_train`` evaluates on: the dataset's test
split. The paper ranked on a validation set; a final accuracy reported for
the kept cell should come from a split the selection did not see.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import ml_collections

from jaxdarts.run import retrain
from jaxdarts.run.workdir import Workdir

logger = logging.getLogger('jaxdarts.run')

SELECT_DIR = 'select'


class Candidate(NamedTuple):
  """One seed's retraining.

  Attributes:
    index: the seed's index i (its ``seed_<i>/``).
    seed: its search seed (``config.search.seed + i``).
    genotype: its final genotype, as text.
    accuracy: the retrained network's held-out accuracy.
    workdir: the retraining's workdir.
  """
  index: int
  seed: int | None
  genotype: str
  accuracy: float
  workdir: str


def select_seeds(search_workdir: str | os.PathLike[str],
                 train_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Retrains every seed's genotype and ranks them.

  Args:
    search_workdir: the workdir of a search with ``config.search.seeds > 1``
      (or of a one-seed search: its single genotype is retrained).
    train_config: a retraining config (``experiments/configs/train.py``),
      typically short; its ``genotype`` field is replaced by each seed's.

  Returns:
    The selection (also written to ``selection.json``): ``candidates``
    (dicts of :class:`Candidate`, best first) and ``kept`` (the index of
    the best seed).

  Raises:
    FileNotFoundError: the workdir or a seed's final genotype is missing.
  """
  workdir = Workdir(search_workdir).check_exists()
  seed_dirs = workdir.seeds() or [workdir]
  candidates = []
  for position, seed_dir in enumerate(seed_dirs):
    index = _index(seed_dir, position)
    genotype, note = seed_dir.genotype()
    if note is not None:
      raise FileNotFoundError(f'{seed_dir.path}: {note} Let the search '
                              'finish before selecting.')
    config = train_config.copy_and_resolve_references()
    config.genotype = str(seed_dir / 'genotype.json')
    target = workdir / SELECT_DIR / f'seed_{index}'
    logger.info('Retraining seed %d: %s', index, genotype)
    result = retrain.run_train(config, target)
    candidates.append(Candidate(index, _search_seed(seed_dir), str(genotype),
                                float(result.test_accuracy), str(target)))
  ranked = sorted(candidates, key=lambda c: (-c.accuracy, c.index))
  selection = {'kept': ranked[0].index,
               'train_epochs': train_config.train.epochs,
               'candidates': [c._asdict() for c in ranked]}
  workdir.write_selection(selection)
  return selection


def format_table(selection: dict[str, Any]) -> str:
  """The selection as a text table, best first."""
  lines = [f'{"":2}{"seed":>6} {"index":>5} {"accuracy":>9}  genotype']
  for c in selection['candidates']:
    mark = '*' if c['index'] == selection['kept'] else ' '
    seed = '' if c['seed'] is None else c['seed']
    lines.append(f'{mark:2}{seed:>6} {c["index"]:>5} {c["accuracy"]:>9.4f}  '
                 f'{c["genotype"]}')
  lines.append(f'Keep seed index {selection["kept"]} (after '
               f'{selection["train_epochs"]} epochs of retraining each).')
  return '\n'.join(lines)


def _index(seed_dir: Workdir, default: int) -> int:
  name = seed_dir.path.name
  return int(name[len('seed_'):]) if name.startswith('seed_') else default


def _search_seed(seed_dir: Workdir) -> int | None:
  try:
    return int(seed_dir.config()['search']['seed'])
  except (FileNotFoundError, ValueError, KeyError, TypeError):
    return None
