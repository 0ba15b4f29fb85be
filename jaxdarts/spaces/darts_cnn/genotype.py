"""The discrete architecture found by a search (a genotype), and its I/O.

A genotype names, for the normal and the reduction cell, the two inputs kept
by every intermediate node and the operation applied to each, plus the states
concatenated into the cell output. It is written as in the papers'
repositories::

  Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...],
           normal_concat=[2, 3, 4, 5],
           reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ...],
           reduce_concat=[2, 3, 4, 5])

``normal[2 * i]`` and ``normal[2 * i + 1]`` are the ``(op, input)`` pairs of
intermediate node ``i``; an input is a state index (0 = ``c_{k-2}``,
1 = ``c_{k-1}``, ``2 + m`` = node ``m``), so node ``i`` may read states
``0 .. 1 + i``.

This module holds the value type (`Genotype`) and its text, dict and JSON
forms; `genotype_text` reads the text form and `derive` holds DARTS's rule
that turns architecture parameters into a genotype.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxdarts.spaces.darts_cnn import genotype_text
from jaxdarts.spaces.darts_cnn.genotype_text import FIELDS, Pair
from jaxdarts.spaces.darts_cnn.space import (CELL_TYPES, DARTS_PRIMITIVES,
                                             SearchSpace)

# Operations a genotype may name when no search space is given: the DARTS
# primitives except the zero op, plus the extra ops of the reference code
# (used there by the NASNet and AmoebaNet cells).
KNOWN_OPS: frozenset[str] = frozenset(
    p for p in DARTS_PRIMITIVES if p != 'none') | {'sep_conv_7x7',
                                                   'conv_7x1_1x7'}

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------
# Normalisation of field values (used by the constructor).


def _as_int(value: Any, where: str) -> int:
  """``value`` as a Python int; bools and non-integral numbers are refused."""
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f'{where}: expected an integer, got {value!r}')
  try:
    return operator.index(value)
  except TypeError:
    raise ValueError(f'{where}: expected an integer, got {value!r}') from None


def _as_items(value: Any, where: str, what: str) -> tuple[Any, ...]:
  """``value`` as a tuple, refusing strings and non-iterables."""
  if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
    raise ValueError(f'{where}: expected {what}, got {value!r}')
  return tuple(value)


def _as_pairs(value: Any, where: str) -> tuple[Pair, ...]:
  """A cell's edge list as a tuple of ``(op: str, input: int)`` pairs."""
  pairs = []
  items = _as_items(value, where, 'a list of (op, input) pairs')
  for k, item in enumerate(items):
    item_where = f'{where}[{k}]'
    pair = _as_items(item, item_where, 'an (op, input) pair')
    if len(pair) != 2:
      raise ValueError(f'{item_where}: expected an (op, input) pair, '
                       f'got {len(pair)} items: {item!r}')
    op, state = pair
    if not isinstance(op, str):
      raise ValueError(f'{item_where}: op must be a string, got {op!r}')
    pairs.append((op, _as_int(state, item_where)))
  return tuple(pairs)


def _as_concat(value: Any, where: str) -> tuple[int, ...]:
  """A concat list (list, tuple or range) as a tuple of ints."""
  items = _as_items(value, where, 'a list of state indices')
  return tuple(_as_int(s, f'{where}[{k}]') for k, s in enumerate(items))


# ---------------------------------------------------------------------------
# Validation.


def _allowed_ops(space: SearchSpace | None) -> frozenset[str]:
  if space is None:
    return KNOWN_OPS
  return frozenset(p for p in space.primitives if p != 'none')


def _check_edge_counts(genotype: Genotype, space: SearchSpace | None) -> None:
  """Each cell: 2 edges per node, at least one node, same count in both."""
  for cell in CELL_TYPES:
    count = len(getattr(genotype, cell))
    if count == 0:
      raise ValueError(f'Genotype.{cell}: no edges; a cell needs at least one '
                       'node of 2 (op, input) pairs')
    if count % 2:
      raise ValueError(f'Genotype.{cell}: odd number of edges ({count}); every '
                       'intermediate node takes exactly 2 (op, input) pairs')
  n_normal, n_reduce = len(genotype.normal), len(genotype.reduce)
  if n_normal != n_reduce:
    raise ValueError(
        f'Genotype: normal has {n_normal // 2} nodes ({n_normal} edges) but '
        f'reduce has {n_reduce // 2} nodes ({n_reduce} edges); both cells '
        'must have the same number of nodes')
  if space is not None and genotype.num_nodes != space.num_nodes:
    raise ValueError(f'Genotype: {genotype.num_nodes} nodes per cell, but the '
                     f'search space has {space.num_nodes}')


def _check_pairs(cell: str, pairs: tuple[Pair, ...],
                 ops: frozenset[str]) -> None:
  """Known op names and in-range inputs for every edge of one cell."""
  for k, (op, state) in enumerate(pairs):
    node = k // 2
    where = f'Genotype.{cell}[{k}] (node {node})'
    if op == 'none':
      raise ValueError(f"{where}: op 'none' (the zero op) cannot be part of a "
                       'genotype')
    if op not in ops:
      raise ValueError(f'{where}: unknown op {op!r}; known ops: '
                       f'{", ".join(sorted(ops))}')
    if not 0 <= state < 2 + node:
      raise ValueError(f'{where}: input {state} out of range, must be '
                       f'0 <= input < {2 + node}')


def _check_concat(field: str, concat: tuple[int, ...], num_nodes: int) -> None:
  """A non-empty list of distinct states of the cell."""
  where = f'Genotype.{field}'
  if not concat:
    raise ValueError(
        f'{where}: empty; the cell output needs at least one state')
  seen = set()
  for k, state in enumerate(concat):
    if not 0 <= state < 2 + num_nodes:
      raise ValueError(f'{where}[{k}]: state {state} out of range, must be '
                       f'0 <= state < {2 + num_nodes}')
    if state in seen:
      raise ValueError(f'{where}[{k}]: state {state} repeats')
    seen.add(state)


# ---------------------------------------------------------------------------
# The value type.


class _GenotypeFields(NamedTuple):
  normal: tuple[Pair, ...]
  normal_concat: tuple[int, ...]
  reduce: tuple[Pair, ...]
  reduce_concat: tuple[int, ...]


class Genotype(_GenotypeFields):
  """The discrete architecture of a normal and a reduction cell.

  An immutable named tuple. The constructor normalises its arguments (lists,
  tuples, ``range``, numpy integers) to tuples of ``(str, int)`` pairs and of
  ints, so ``Genotype(normal=[...], ...)`` built from lists equals the one
  built from tuples and is hashable. The constructor checks only types; call
  `validate` (or build with `make`, which the parsers and loaders use) to
  check the architecture itself.

  Attributes:
    normal: ``(op, input)`` pairs of the normal cell, two per intermediate
      node, in node order.
    normal_concat: states concatenated into the normal cell's output.
    reduce: ``(op, input)`` pairs of the reduction cell.
    reduce_concat: states concatenated into the reduction cell's output.
  """

  __slots__ = ()

  def __new__(cls, normal: Iterable[Any], normal_concat: Iterable[Any],
              reduce: Iterable[Any], reduce_concat: Iterable[Any]) -> Genotype:
    return super().__new__(
        cls,
        _as_pairs(normal, 'Genotype.normal'),
        _as_concat(normal_concat, 'Genotype.normal_concat'),
        _as_pairs(reduce, 'Genotype.reduce'),
        _as_concat(reduce_concat, 'Genotype.reduce_concat'),
    )

  @classmethod
  def _make(cls, iterable: Iterable[Any]) -> Genotype:
    # NamedTuple's _make (and so _replace) bypasses __new__; keep normalising.
    return cls(*iterable)

  @classmethod
  def make(cls, normal: Iterable[Any], normal_concat: Iterable[Any],
           reduce: Iterable[Any], reduce_concat: Iterable[Any],
           space: SearchSpace | None = None) -> Genotype:
    """Builds a genotype and validates it (see `validate`).

    Raises:
      ValueError: if the genotype is malformed.
    """
    return cls(normal, normal_concat, reduce, reduce_concat).validate(space)

  @property
  def num_nodes(self) -> int:
    """Intermediate nodes per cell (two edges each)."""
    return len(self.normal) // 2

  def cell(self, cell_type: str) -> tuple[tuple[Pair, ...], tuple[int, ...]]:
    """``(pairs, concat)`` of the ``'normal'`` or the ``'reduce'`` cell."""
    if cell_type not in CELL_TYPES:
      raise ValueError(f'Genotype.cell: unknown cell type {cell_type!r}; '
                       f'expected one of {CELL_TYPES}')
    return getattr(self, cell_type), getattr(self, f'{cell_type}_concat')

  def validate(self, space: SearchSpace | None = None) -> Genotype:
    """Checks the architecture; returns ``self``.

    Checks that both cells have an even, non-zero number of edges and the
    same number of nodes (and, if ``space`` is given, ``space.num_nodes``);
    that every op is known (in ``space.primitives`` minus ``'none'`` if
    ``space`` is given, else in `KNOWN_OPS`); that every input of node ``i``
    is in ``0 .. 1 + i``; and that each concat list is non-empty, distinct and
    within ``0 .. 1 + num_nodes``.

    Args:
      space: the search space the genotype must belong to, or None.

    Returns:
      ``self``.

    Raises:
      ValueError: naming the first problem found and where it is.
    """
    _check_edge_counts(self, space)
    ops = _allowed_ops(space)
    for cell in CELL_TYPES:
      _check_pairs(cell, getattr(self, cell), ops)
      _check_concat(f'{cell}_concat', getattr(self, f'{cell}_concat'),
                    self.num_nodes)
    return self

  def same_architecture(self, other: Genotype | None) -> bool:
    """Whether ``other`` is the same architecture: equal up to the order of
    a node's two pairs (which only says which was stronger) and of the
    concat lists."""
    return other is not None and _canonical(self) == _canonical(other)

  # -- Text form -------------------------------------------------------------

  def __repr__(self) -> str:
    return (f'Genotype(normal={_pairs_text(self.normal)}, '
            f'normal_concat={list(self.normal_concat)}, '
            f'reduce={_pairs_text(self.reduce)}, '
            f'reduce_concat={list(self.reduce_concat)})')

  __str__ = __repr__

  @classmethod
  def parse(cls, text: str, space: SearchSpace | None = None) -> Genotype:
    """Parses the text form written by ``str()`` and by the papers' code.

    Accepts ``Genotype(normal=..., normal_concat=..., reduce=...,
    reduce_concat=...)`` with the fields in any order, the ``Genotype`` name
    optional, lists or tuples, single or double quotes, any whitespace and
    newlines, ``#`` comments, trailing commas, and ``range(stop)`` or
    ``range(start, stop)`` for a concat list. The text is parsed with `ast`
    and never evaluated; any other expression (a name, an operator, a call
    other than ``range``) is refused.

    Args:
      text: the genotype text.
      space: if given, the search space the genotype must belong to.

    Returns:
      The validated genotype.

    Raises:
      ValueError: on a syntax error (naming the position and an excerpt), a
        missing, unknown or repeated field, a pair that is not ``(op,
        input)``, a value that is not a literal (naming its position), or a
        genotype that fails `validate`.
    """
    fields = genotype_text.parse_fields(text)
    return cls.make(**fields, space=space)

  # -- Dict and JSON forms ---------------------------------------------------

  def to_dict(self) -> dict[str, list[Any]]:
    """A JSON-ready dict: pairs as ``[op, input]`` lists, concats as lists."""
    return {
        'normal': [[op, state] for op, state in self.normal],
        'normal_concat': list(self.normal_concat),
        'reduce': [[op, state] for op, state in self.reduce],
        'reduce_concat': list(self.reduce_concat),
    }

  @classmethod
  def from_dict(cls, data: Mapping[str, Any],
                space: SearchSpace | None = None) -> Genotype:
    """Inverse of `to_dict`; validates the result.

    Raises:
      ValueError: if ``data`` is not a mapping, lacks a key or has an unknown
        one, or holds a malformed genotype.
    """
    if not isinstance(data, Mapping):
      raise ValueError('Genotype.from_dict: expected a mapping with keys '
                       f'{", ".join(FIELDS)}; got {type(data).__name__}')
    for key in FIELDS:
      if key not in data:
        raise ValueError(f'Genotype.from_dict: missing key {key!r}')
    for key in data:
      if key not in FIELDS:
        raise ValueError(f'Genotype.from_dict: unknown key {key!r}; keys are '
                         f'{", ".join(FIELDS)}')
    return cls.make(**{key: data[key] for key in FIELDS}, space=space)

  def to_json(self, indent: int | None = None) -> str:
    """The dict form (`to_dict`) as JSON text."""
    return json.dumps(self.to_dict(), indent=indent)

  @classmethod
  def from_json(cls, text: str, space: SearchSpace | None = None) -> Genotype:
    """Inverse of `to_json`; validates the result.

    Raises:
      ValueError: on malformed JSON (naming line and column) or a malformed
        genotype.
    """
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f'Genotype.from_json: malformed JSON: {e.msg} at line '
                       f'{e.lineno} column {e.colno} (position {e.pos})') from e
    return cls.from_dict(data, space)

  def save(self, path: PathLike) -> None:
    """Writes the JSON form to ``path``."""
    with open(path, 'w', encoding='utf-8') as f:
      f.write(self.to_json(indent=2) + '\n')

  @classmethod
  def load(cls, path: PathLike, space: SearchSpace | None = None) -> Genotype:
    """Reads a genotype file: JSON (as written by `save`) or the text form.

    Raises:
      OSError: if the file cannot be read.
      ValueError: naming the file, if its content is malformed.
    """
    with open(path, encoding='utf-8') as f:
      text = f.read()
    try:
      if text.lstrip().startswith('{'):
        return cls.from_json(text, space)
      return cls.parse(text, space)
    except ValueError as e:
      raise ValueError(f'Genotype.load({os.fspath(path)!r}): {e}') from e


def _canonical(genotype: Genotype) -> tuple[Any, ...]:
  def cell(pairs: tuple[Pair, ...]) -> tuple[Any, ...]:
    return tuple(tuple(sorted(pairs[i:i + 2])) for i in range(0, len(pairs), 2))
  return (cell(genotype.normal), tuple(sorted(genotype.normal_concat)),
          cell(genotype.reduce), tuple(sorted(genotype.reduce_concat)))


def _pairs_text(pairs: tuple[Pair, ...]) -> str:
  return '[' + ', '.join(f'({op!r}, {state})' for op, state in pairs) + ']'
