"""Prints the RESULTS.md table of `benchmarks/budget_digits.sh OUT`."""

import sys
from pathlib import Path

from jaxdarts.run.workdir import Workdir

RUNS = (('free', 'none'), ('b450e3', '450k'), ('b350e3', '350k'),
        ('b250e3', '250k'))


def main(out: str) -> None:
  print('| MAC budget | derived MACs | derived params | supernet val acc '
        '| retrained test acc | genotype |')
  print('|---|---|---|---|---|---|')
  for run, budget in RUNS:
    workdir = Workdir(Path(out) / run)
    if not (workdir / 'genotype.json').exists():
      print(f'| {budget} | (not run) | | | | |')
      continue
    last = [r for r in workdir.metrics() if 'derived_macs' in r][-1]
    genotype, _ = workdir.genotype()
    final = Workdir(Path(out) / run / 'train').final_metrics() or {}
    print(f'| {budget} | {last["derived_macs"] / 1e3:.1f}k | '
          f'{last["derived_params"] / 1e3:.2f}k | '
          f'{last["supernet_val_accuracy"]:.3f} | '
          f'{final.get("test_accuracy", float("nan")):.3f} | `{genotype}` |')


if __name__ == '__main__':
  main(sys.argv[1])
