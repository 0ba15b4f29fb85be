r"""Baseline genotypes for the segmentation_digits comparison.

Prints the text of a genotype of the ``segmentation_digits`` search space
(3 nodes, the small presets' ops), for ``cifar_train.py --genotype``:

  python benchmarks/seg_genotypes.py sep_conv    # every op sep_conv_3x3
  python benchmarks/seg_genotypes.py random:SEED # a random genotype

The hand-picked one feeds node i from states i and i + 1 with
``sep_conv_3x3`` in both cells. A random genotype is the space's own rule
(two strongest inputs per node, each with its strongest op other than
``none``) applied to i.i.d. uniform op weights: every input pair and op is
equally likely, as in the random baselines of Li & Talwalkar (2019).
"""

import sys

import numpy as np

from experiments.configs import search as search_configs
from jaxdarts import spaces
from jaxdarts.spaces.darts_cnn.genotype import Genotype


def space():
  config = search_configs.get_config('segmentation_digits')
  return spaces.get(config.model.space,
                    primitives=tuple(config.model.primitives),
                    num_nodes=config.model.num_nodes)


def sep_conv(space) -> Genotype:
  pairs = [(('sep_conv_3x3', i), ('sep_conv_3x3', i + 1))
           for i in range(space.num_nodes)]
  cell = [p for pair in pairs for p in pair]
  concat = list(space.concat)
  return Genotype(cell, concat, cell, concat).validate(space)


def random_genotype(space, seed: int) -> Genotype:
  rng = np.random.default_rng(seed)
  return space.derive({name: rng.random(space.alpha_shape)
                       for name in space.cell_types})


def main(spec: str) -> None:
  s = space()
  if spec == 'sep_conv':
    print(sep_conv(s))
  elif spec.startswith('random:'):
    print(random_genotype(s, int(spec.split(':')[1])))
  else:
    raise SystemExit(f'unknown genotype {spec!r}: sep_conv or random:SEED')


if __name__ == '__main__':
  main(sys.argv[1])
