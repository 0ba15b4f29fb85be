"""Published genotypes of DARTS and its successors, as data with their source.

Each genotype is kept as the text published in the authors' repository
(`PUBLISHED_TEXT`) and parsed with `Genotype.parse` at import, so the values
in `PUBLISHED` are exactly the published ones. `SOURCES` cites the paper and
the repository file of each.
"""

from __future__ import annotations

from jaxdarts.genotype import Genotype

# The text of each genotype as published (whitespace as in the source file).
PUBLISHED_TEXT: dict[str, str] = {
    'DARTS_V1': (
        "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
        "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
        "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"),
    'DARTS_V2': (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), "
        "('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
        "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
        "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"),
    'PC_DARTS': (
        "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), "
        "('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), "
        "('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], "
        "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), "
        "('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), "
        "('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"),
    'PC_DARTS_IMAGENET': (
        "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], "
        "normal_concat=range(2, 6), reduce=[('sep_conv_3x3', 0), "
        "('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), "
        "('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), "
        "('sep_conv_3x3', 3)], reduce_concat=range(2, 6))"),
    'PDARTS': (
        "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), "
        "('skip_connect', 0),('sep_conv_3x3', 1), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 3), ('sep_conv_3x3',0), ('dil_conv_5x5', 4)], "
        "normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), "
        "('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), "
        "('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), "
        "('dil_conv_5x5', 3)], reduce_concat=range(2, 6))"),
}

_DARTS_PAPER = ('Liu, Simonyan, Yang. DARTS: Differentiable Architecture '
                'Search. ICLR 2019')
_PC_DARTS_PAPER = ('Xu, Xie, Zhang, Chen, Qi, Tian, Xiong. PC-DARTS: Partial '
                   'Channel Connections for Memory-Efficient Architecture '
                   'Search. ICLR 2020')

SOURCES: dict[str, str] = {
    'DARTS_V1': (f'{_DARTS_PAPER}; first-order search, CIFAR-10. '
                 'github.com/quark0/darts cnn/genotypes.py (DARTS_V1; named '
                 'DARTS in early versions)'),
    'DARTS_V2': (f'{_DARTS_PAPER}; second-order search, CIFAR-10, the cell '
                 'of the paper\'s results. github.com/quark0/darts '
                 'cnn/genotypes.py (DARTS_V2, aliased DARTS)'),
    'PC_DARTS': (f'{_PC_DARTS_PAPER}; CIFAR-10 search. '
                 'github.com/yuhuixu1993/PC-DARTS genotypes.py '
                 '(PC_DARTS_cifar, aliased PCDARTS)'),
    'PC_DARTS_IMAGENET': (f'{_PC_DARTS_PAPER}; ImageNet search. '
                          'github.com/yuhuixu1993/PC-DARTS genotypes.py '
                          '(PC_DARTS_image)'),
    'PDARTS': ('Chen, Xie, Wu, Tian. Progressive Differentiable Architecture '
               'Search: Bridging the Depth Gap between Search and Evaluation. '
               'ICCV 2019; CIFAR-10 search. github.com/chenxin061/pdarts '
               'genotypes.py (PDARTS)'),
}

PUBLISHED: dict[str, Genotype] = {
    name: Genotype.parse(text) for name, text in PUBLISHED_TEXT.items()
}

# Other names under which the genotypes are known in the papers' code.
ALIASES: dict[str, str] = {
    'DARTS': 'DARTS_V2',
    'PCDARTS': 'PC_DARTS',
    'PC_DARTS_CIFAR': 'PC_DARTS',
    'PC_DARTS_IMAGE': 'PC_DARTS_IMAGENET',
    'P_DARTS': 'PDARTS',
}

DARTS_V1 = PUBLISHED['DARTS_V1']
DARTS_V2 = PUBLISHED['DARTS_V2']
PC_DARTS = PUBLISHED['PC_DARTS']
PC_DARTS_IMAGENET = PUBLISHED['PC_DARTS_IMAGENET']
PDARTS = PUBLISHED['PDARTS']


def names() -> tuple[str, ...]:
  """Names of the published genotypes (aliases not included)."""
  return tuple(PUBLISHED)


def _canonical(name: str) -> str:
  key = name.strip().upper().replace('-', '_')
  return ALIASES.get(key, key)


def get(name: str) -> Genotype:
  """The published genotype ``name``.

  Case-insensitive; ``-`` may stand for ``_``, and the aliases of the papers'
  code are accepted (``'DARTS'`` is ``'DARTS_V2'``, ``'PCDARTS'`` is
  ``'PC_DARTS'``).

  Raises:
    ValueError: if ``name`` is not known, listing the known names.
  """
  if not isinstance(name, str):
    raise ValueError(f'genotypes.get: name must be a string, got {name!r}')
  key = _canonical(name)
  if key not in PUBLISHED:
    raise ValueError(f'genotypes.get: unknown genotype {name!r}; known: '
                     f'{", ".join(names())} (aliases: {", ".join(ALIASES)})')
  return PUBLISHED[key]
