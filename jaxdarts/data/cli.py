"""Command line: ``python -m jaxdarts.data {prepare,check} NAME``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxdarts.data.cifar import (TFDS_DATASETS, TFDS_SEGMENTATION,
                                 prepare_dataset)
from jaxdarts.data.sources import SPLITS, VALID_NAMES, load_dataset


def main(argv: Sequence[str] | None = None) -> int:
  """Prepares a CIFAR dataset, or checks that a dataset loads."""
  parser = argparse.ArgumentParser(
      prog='python -m jaxdarts.data',
      description='Prepare or check the datasets jaxdarts trains on.')
  commands = parser.add_subparsers(dest='command', required=True)
  prepare = commands.add_parser(
      'prepare', help='download and prepare CIFAR (needs network and '
      'TensorFlow)')
  prepare.add_argument('name',
                       choices=TFDS_DATASETS + tuple(TFDS_SEGMENTATION))
  prepare.add_argument('--data_dir', default=None,
                       help='tensorflow-datasets root directory')
  check = commands.add_parser('check', help='load both splits and summarise')
  check.add_argument('name', help=VALID_NAMES)
  check.add_argument('--data_dir', default=None)
  args = parser.parse_args(argv)
  try:
    if args.command == 'prepare':
      print(f'Prepared {args.name} in '
            f'{prepare_dataset(args.name, data_dir=args.data_dir)}')
    else:
      for split in SPLITS:
        data = load_dataset(args.name, split, data_dir=args.data_dir)
        print(f'{data.name} {split}: {data.num_examples} images of '
              f'{data.image_shape}, {data.num_classes} classes, mean '
              f'{[round(float(v), 4) for v in data.mean]}, std '
              f'{[round(float(v), 4) for v in data.std]}')
  except (OSError, ImportError, ValueError, RuntimeError) as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 1
  return 0

