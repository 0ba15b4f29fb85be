r"""Scores search methods against a minibench table (NB201-style space).

Runs each method (``name`` or ``name:hypergradient``) once per seed with
the ``nb201_digits`` preset, then random search with the mean wall time of
the first method's searches, and prints the scoreboard
(`jaxdarts.bench.score`)::

  PYTHONPATH=$PWD python3 experiments/score.py \
    --table=benchmarks/minibench_nb201_3op.json.gz \
    --methods=darts:first_order,darts:exact --seeds=0,1,2 \
    --workdir=/tmp/score --out=/tmp/score/scores.json
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from jaxdarts.bench import minibench
from jaxdarts.bench import score
from experiments.configs import search as search_configs


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
  for spec in args.methods.split(','):
    name, _, hg = spec.partition(':')
    rows += score.score_method(config, table, seeds, args.workdir,
                               method=name, hypergradient=hg or 'first_order')
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
