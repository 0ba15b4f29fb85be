"""Trains every cell of an NB201-style (sub-)space; writes the table.

The logic is `jaxdarts.bench.minibench`. Make the 3-op table (not yet in
the repository: about 20-30 min on the shared 2-core CPU) with::

  flock /tmp/jaxdarts-cpu.lock env JAX_PLATFORMS=cpu PYTHONPATH=$PWD \\
    python3 benchmarks/minibench.py --out=benchmarks/minibench_nb201_3op.json.gz

(defaults: ops none, skip_connect, nor_conv_3x3 on all 6 edges = 729 cells,
78 after deduplication; C=8, 3 cells, 8 epochs, seeds 0 and 1, on
digits_canvas). Prints the table's spread at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxdarts.bench import minibench


def main(argv=None) -> None:
  defaults = minibench.BenchConfig()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='table path (.json.gz)')
  parser.add_argument('--primitives', default=','.join(defaults.primitives))
  parser.add_argument('--num_nodes', type=int, default=defaults.num_nodes)
  parser.add_argument('--data', default=defaults.data)
  parser.add_argument('--channels', type=int, default=defaults.channels)
  parser.add_argument('--layers', type=int, default=defaults.layers)
  parser.add_argument('--epochs', type=int, default=defaults.epochs)
  parser.add_argument('--batch_size', type=int, default=defaults.batch_size)
  parser.add_argument('--seeds', default=','.join(map(str, defaults.seeds)))
  parser.add_argument('--archs_per_call', type=int,
                      default=defaults.archs_per_call)
  parser.add_argument('--limit', type=int, default=None,
                      help='train only the first N unique architectures')
  args = parser.parse_args(argv)
  config = minibench.BenchConfig(
      primitives=tuple(args.primitives.split(',')), num_nodes=args.num_nodes,
      data=args.data, channels=args.channels, layers=args.layers,
      epochs=args.epochs, batch_size=args.batch_size,
      seeds=tuple(int(s) for s in args.seeds.split(',')),
      archs_per_call=args.archs_per_call)
  table = minibench.build_table(config, limit=args.limit,
                                log=lambda m: print(m, flush=True))
  table['command'] = ' '.join(['python3', 'benchmarks/minibench.py']
                              + sys.argv[1:] if argv is None else argv)
  minibench.write_table(table, args.out)
  print(json.dumps({'num_unique': table['num_unique'],
                    'space_size': table['space_size'],
                    'total_seconds': round(table['total_seconds'], 1),
                    'compile_seconds': round(table['compile_seconds'], 1),
                    **{f'{split}_{k}': round(v, 4) for split in ('val', 'test')
                       for k, v in minibench.summary(table, split).items()}},
                   indent=1))


if __name__ == '__main__':
  main()
