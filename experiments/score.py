r"""Scores search methods against a minibench table (NB201-style space).

Runs each method (``name`` or ``name:hypergradient``, any registered
method) once per seed with the ``nb201_digits`` preset, then random search
with the mean wall time of the first method's searches, and prints the
scoreboard (`jaxdarts.bench.score`). Every method, first and exact second
order DARTS first::

  PYTHONPATH=$PWD python3 experiments/score.py \
    --table=benchmarks/minibench_nb201_3op.json.gz \
    --methods=darts:first_order,darts:exact,pc_darts,gdas,darts_minus,\
fair_darts,beta_darts,sdarts_rs,sdarts_adv,drnas \
    --seeds=0,1,2 --workdir=/tmp/score --out=/tmp/score/scores.json

(one ``--methods`` value, without spaces). Every method trains with the
preset's data, network and optimizers, so the rows differ by the method
alone; each keeps its own hyperparameters (the registry defaults: PC-DARTS
K=4, GDAS tau 10 -> 0.1, DARTS- beta 1 -> 0, beta-DARTS lambda 0 -> 25,
SDARTS eps 0.03 -> 0.3 and 7 PGD steps, FairDARTS w01 = 10, DrNAS without
KL). Their schedules run over the whole search, whatever
``--epochs``: the methods get the search's step count. PC-DARTS's alphas
stay frozen for the first 30% of the epochs (its paper: 15 of 50), 3 of
the preset's 10 (`method_config`).
"""
from __future__ import annotations

import argparse
import copy
import json
import os

import numpy as np

from jaxdarts import methods
from jaxdarts.bench import minibench
from jaxdarts.bench import score
from jaxdarts.core import hypergradient
from experiments.configs import search as search_configs


# The share of the epochs PC-DARTS keeps its alphas frozen (15 of 50).
PC_DARTS_WARMUP = 0.3


def method_config(config, name: str):
  """``config`` for method ``name``: a copy, with PC-DARTS's alpha warm-up
  scaled to the search's epochs (``round(0.3 * epochs)``)."""
  config = copy.deepcopy(config)
  if name == 'pc_darts':
    config.search.arch_warmup_epochs = round(
        PC_DARTS_WARMUP * config.search.epochs)
  return config


def parse_methods(spec: str) -> list[tuple[str, str]]:
  """``(method, hypergradient)`` pairs of a ``--methods`` value.

  Raises:
    SystemExit: an unknown method or hypergradient, or a second-order
      hypergradient for a method without one (GDAS), naming the choices.
  """
  pairs = []
  for item in spec.split(','):
    name, _, hg = item.partition(':')
    hg = hg or 'first_order'
    if name not in methods.METHODS:
      raise SystemExit(f'--methods: unknown method {name!r}; choose from '
                       f'{sorted(methods.METHODS)}.')
    try:
      hypergradient.get(hg)
    except ValueError as e:
      raise SystemExit(f'--methods {item}: {e}') from e
    if hg != 'first_order' and not methods.METHODS[name].second_order:
      raise SystemExit(f'--methods {item}: {name} takes first-order '
                       f'hypergradients only; write {name}:first_order.')
    pairs.append((name, hg))
  return pairs


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--table', required=True)
  parser.add_argument('--methods', default='darts:first_order')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--preset', default='nb201_digits')
  parser.add_argument('--epochs', type=int, default=None)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', default=None, help='JSON of every row')
  args = parser.parse_args(argv)
  table = minibench.read_table(args.table)
  config = search_configs.get_config(args.preset)
  if args.epochs:
    config.search.epochs = args.epochs
  seeds = [int(s) for s in args.seeds.split(',')]
  rows = []
  for name, hg in parse_methods(args.methods):
    rows += score.score_method(method_config(config, name), table, seeds,
                               args.workdir, method=name, hypergradient=hg)
  budget = float(np.mean([r['seconds'] for r in rows
                          if r['method'] == rows[0]['method']
                          and r['hypergradient'] == rows[0]['hypergradient']]))
  rows += score.score_random(table, budget, seeds)
  stats = minibench.summary(table)
  print('table:', json.dumps({k: round(v, 4) for k, v in stats.items()}))
  print(score.scoreboard(rows))
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
