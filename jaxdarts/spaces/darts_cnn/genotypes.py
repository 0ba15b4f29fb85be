"""Published genotypes of DARTS and its successors, and naming a genotype.

Each genotype is kept as the text published in the authors' repository
(`PUBLISHED_TEXT`) and parsed with `Genotype.parse` at import, so the values
in `PUBLISHED` are exactly the published ones. `SOURCES` cites the paper and
the repository file of each. `resolve` turns what a user gives on a
command line (a genotype text or JSON, a published name, a path) into a
genotype.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from pathlib import Path
from typing import Any

from jaxdarts.spaces.darts_cnn.genotype import Genotype

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


GENOTYPE_FORMS = (
    "a genotype text such as \"Genotype(normal=[('sep_conv_3x3', 0), ...], "
    'normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])" '
    '(or its JSON form)',
    f'a published name: {", ".join(names())}',
    'a path to a genotype file (the genotype.json or .txt a search writes, '
    'or a search workdir holding genotype.json)',
)


def resolve(spec: str | os.PathLike[str] | Genotype) -> Genotype:
  """The genotype ``spec`` names.

  The form is read off the text: one starting with ``Genotype(`` (after any
  ``#`` comment lines) is a genotype text and one starting with ``{`` its
  JSON form, neither ever tried as a path; a published name comes next; any
  other text is a path (``~`` expanded; one the file system cannot even
  look up, e.g. a name over its length limit, is no path).

  Args:
    spec: a `Genotype`; a genotype text ``Genotype(normal=..., ...)`` (or
      the JSON of `Genotype.to_json`); a published name of
      `PUBLISHED` (e.g. ``'DARTS_V2'``); or a path to a genotype
      file (JSON or text, as written by the search) or to a search workdir
      holding ``genotype.json``.

  Returns:
    The validated genotype.

  Raises:
    ValueError: if ``spec`` is none of these, or names a malformed text or
      file; the message says why (with the position of a syntax error) and
      lists the accepted forms.
  """
  if isinstance(spec, Genotype):
    return spec.validate()
  text = os.fspath(spec).strip() if isinstance(spec, (str, os.PathLike)) else ''
  try:
    if _GENOTYPE_TEXT.match(text):
      return (Genotype.from_json if text.startswith('{') else Genotype.parse)(
          text)
    path, why = _genotype_file(text)
    published = None
    with contextlib.suppress(ValueError):
      published = get(text)
    if published is not None:
      if path is not None:
        logging.getLogger('jaxdarts').warning(
            'genotype %r is a published name; the file %s is not read '
            '(write ./%s for it)', text, path, text)
      return published
    if path is not None:
      return Genotype.load(path)
  except ValueError as e:
    raise _refusal(spec, f'is malformed: {e}') from e
  raise _refusal(spec, f'is not a genotype{why or _did_you_mean(text)}')


# A genotype text, or its JSON form, possibly after '#' comment lines.
_GENOTYPE_TEXT = re.compile(r'(#[^\n]*\n\s*)*(Genotype\s*\(|\{)')


def _genotype_file(text: str) -> tuple[Path | None, str]:
  """The genotype file path ``text`` names, or None and why not."""
  if not text:
    return None, ''
  try:
    path = Path(text).expanduser()
    if path.is_dir():
      if (path / 'genotype.json').is_file():
        return path / 'genotype.json', ''
      return None, (f' ({path} holds no genotype.json: a search writes it '
                    'when it finishes, and one per epoch in genotypes/)')
    if path.is_file():
      return path, ''
  except (OSError, RuntimeError):  # Too long a name, an unknown ~user.
    pass
  if os.sep in text or text.endswith(('.json', '.txt')):
    return None, (' (no such file or directory: '
                  f'{os.path.expanduser(text)})')
  return None, ''


def _did_you_mean(text: str) -> str:
  """`` (did you mean NAME?)`` for a near miss of a published name."""
  close = difflib.get_close_matches(text.upper().replace('-', '_'),
                                    names(), n=1)
  return f' (did you mean {close[0]}?)' if close else ''


def _refusal(spec: Any, problem: str) -> ValueError:
  """The error for a ``spec`` naming no genotype, listing the forms."""
  shown = repr(spec) if len(repr(spec)) <= 80 else f'{repr(spec)[:76]}...'
  return ValueError(f'genotype {shown} {problem}; give one of:\n  - '
                    + '\n  - '.join(GENOTYPE_FORMS))
