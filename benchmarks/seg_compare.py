r"""Retrains searched vs hand-picked vs random genotypes on segdigits.

  python benchmarks/seg_compare.py --search_dir=/tmp/segdigits \
    --out=/tmp/seg_compare --seeds=0,1 --random=0,1

Each genotype is retrained with the ``segmentation_digits`` train preset
(`experiments/configs/train.py`), one workdir per run under ``--out``: the
searched genotype (``SEARCH_DIR/genotype.json``) and the all-sep_conv_3x3
one with every seed of ``--seeds``, the random genotypes of
``--random`` (`seg_genotypes.random_genotype`) with the first seed. Runs
of one genotype share a process, so they share the compiled step. Prints
a markdown table of the test mIoU and pixel accuracy (from each run's
``final_metrics.json``) and writes ``OUT/results.json``.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import train as train_configs
from jaxdarts.run import retrain
import seg_genotypes


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--search_dir', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--random', default='0,1')
  args = parser.parse_args()
  logging.getLogger('jaxdarts').setLevel(logging.INFO)
  logging.basicConfig()
  seeds = [int(s) for s in args.seeds.split(',')]
  space = seg_genotypes.space()
  runs = [('searched', str(Path(args.search_dir) / 'genotype.json'), seeds),
          ('sep_conv_3x3', str(seg_genotypes.sep_conv(space)), seeds)]
  runs += [(f'random:{r}', str(seg_genotypes.random_genotype(space, int(r))),
            seeds[:1]) for r in args.random.split(',') if r]
  out = Path(args.out)
  results = []
  # Seed by seed, so a run cut short still compares every genotype; jit
  # keeps each genotype's compiled step for its next seed.
  order = [(name, genotype, seed) for seed in seeds
           for name, genotype, run_seeds in runs if seed in run_seeds]
  for name, genotype, seed in order:
    config = train_configs.get_config('segmentation_digits')
    config.genotype, config.train.seed = genotype, seed
    workdir = out / f'{name.replace(":", "_")}_seed{seed}'
    start = time.time()
    retrain.run_train(config, workdir)
    final = json.loads((workdir / 'final_metrics.json').read_text())
    results.append({'genotype': name, 'seed': seed,
                    'seconds': round(time.time() - start),
                    **{k: final[k] for k in ('test_miou', 'test_accuracy',
                                             'test_loss')}})
    print(json.dumps(results[-1]), flush=True)
  (out / 'results.json').write_text(json.dumps(results, indent=1))
  print('| genotype | runs | test mIoU | pixel accuracy |\n|---|---|---|---|')
  for name, _, _ in runs:
    rows = [r for r in results if r['genotype'] == name]
    miou = np.array([r['test_miou'] for r in rows])
    acc = np.array([r['test_accuracy'] for r in rows])
    print(f'| {name} | {len(rows)} | {miou.mean():.4f} +- {miou.std():.4f} '
          f'({", ".join(f"{m:.4f}" for m in miou)}) | {acc.mean():.4f} |')


if __name__ == '__main__':
  main()
