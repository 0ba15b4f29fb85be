"""NAS-Bench-201 genotypes: one operation per edge of a 4-node cell.

The text form is NAS-Bench-201's (Dong and Yang, ICLR 2020): nodes
``1 .. n-1`` separated by ``+``, each listing its ``op~input`` edges between
bars, e.g. ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|
nor_conv_3x3~1|skip_connect~2|`` (without the line break). Node ``i`` has one
edge from every earlier node ``0 .. i-1``; ``none`` marks an absent edge.

:meth:`Genotype.canonical` identifies architectures that compute the same
function: ``none`` edges and nodes that cannot reach the output drop out,
``skip_connect`` passes its input's terms through, and a node is the
multiset of its terms (addition commutes and associates). Two genotypes with
equal canonical forms differ only in node order, identity edges or dead
nodes, so a benchmark trains one of them (NAS-Bench-201 deduplicates its
15,625 cells the same way, by a similar string of each cell's
computation).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

import numpy as np

PathLike = str | os.PathLike[str]
Edge = tuple[str, int]  # (op, input node)


def _edges_text(node: tuple[Edge, ...]) -> str:
  return '|' + '|'.join(f'{op}~{src}' for op, src in node) + '|'


@dataclasses.dataclass(frozen=True)
class Genotype:
  """The discrete cell: ``nodes[i - 1]`` holds node ``i``'s edges.

  Attributes:
    nodes: for each node ``i = 1 .. n-1``, its ``(op, input)`` pairs, one
      per input ``0 .. i-1``, in input order.
  """
  nodes: tuple[tuple[Edge, ...], ...]

  def __post_init__(self):
    nodes = tuple(tuple((str(op), int(src)) for op, src in node)
                  for node in self.nodes)
    object.__setattr__(self, 'nodes', nodes)
    if not nodes:
      raise ValueError('An NB201 genotype needs at least one node.')
    for i, node in enumerate(nodes, start=1):
      if [src for _, src in node] != list(range(i)):
        raise ValueError(
            f'Node {i} of {self} must have one edge from each of the nodes '
            f'0..{i - 1} in order (e.g. |op~0|op~1|), got inputs '
            f'{[src for _, src in node]}.')

  @property
  def num_nodes(self) -> int:
    """Nodes including the input node (4 in NAS-Bench-201)."""
    return len(self.nodes) + 1

  @property
  def ops(self) -> tuple[str, ...]:
    """The op of every edge, in edge order ``(1,0), (2,0), (2,1), ...``."""
    return tuple(op for node in self.nodes for op, _ in node)

  @classmethod
  def from_ops(cls, ops: Iterable[str]) -> Genotype:
    """The genotype whose edges, in edge order, carry ``ops``.

    Raises:
      ValueError: the number of ops is not that of a complete DAG
        (1, 3, 6, 10, ... edges).
    """
    ops, nodes, k = list(ops), [], 0
    while k < len(ops):
      i = len(nodes) + 1
      if k + i > len(ops):
        raise ValueError(f'{len(ops)} ops do not fill a complete cell DAG; '
                         'node i has i edges, so give 1, 3, 6, 10, ... ops.')
      nodes.append(tuple((op, src) for src, op in enumerate(ops[k:k + i])))
      k += i
    return cls(tuple(nodes))

  def validate(self, space=None) -> Genotype:
    """Checks the ops (and the node count) against ``space``; returns self.

    Raises:
      ValueError: an op outside ``space.primitives`` or another number of
        nodes than ``space.num_nodes``, naming the fix.
    """
    if space is None:
      return self
    if self.num_nodes != space.num_nodes:
      raise ValueError(f'{self} has {self.num_nodes} nodes; the space has '
                       f'{space.num_nodes} (num_nodes).')
    unknown = sorted(set(self.ops) - set(space.primitives))
    if unknown:
      raise ValueError(f'{self} uses {unknown}, which are not among the '
                       f"space's primitives {list(space.primitives)}.")
    return self

  def same_architecture(self, other: Genotype | None) -> bool:
    """Whether ``other`` has the same op on every edge."""
    return isinstance(other, Genotype) and self.nodes == other.nodes

  def canonical(self) -> tuple[str, ...]:
    """The output node's computation as a sorted tuple of terms (see the
    module docstring); ``()`` when the output is always zero."""
    exprs: list[tuple[str, ...]] = [('x',)]
    for node in self.nodes:
      terms: list[str] = []
      for op, src in node:
        if op == 'none' or not exprs[src]:
          continue  # A zero edge, or an op of zero (zero for every op).
        if op == 'skip_connect':
          terms += exprs[src]
        else:
          terms.append(f'{op}({"+".join(exprs[src])})')
      exprs.append(tuple(sorted(terms)))
    return exprs[-1]

  def isomorphic(self, other: Genotype) -> bool:
    """Whether both compute the same function (equal `canonical` forms)."""
    return self.canonical() == other.canonical()

  def one_hot(self, primitives: tuple[str, ...]) -> np.ndarray:
    """``[edges, ops]`` one-hot mixing weights of this genotype (float32).

    Raises:
      ValueError: an op not in ``primitives``.
    """
    missing = sorted(set(self.ops) - set(primitives))
    if missing:
      raise ValueError(f'{self} uses {missing}, not in {list(primitives)}.')
    weights = np.zeros((len(self.ops), len(primitives)), np.float32)
    for e, op in enumerate(self.ops):
      weights[e, primitives.index(op)] = 1
    return weights

  # -- Text form -------------------------------------------------------------

  def __str__(self) -> str:
    return '+'.join(_edges_text(node) for node in self.nodes)

  def __repr__(self) -> str:
    return f'Genotype({str(self)!r})'

  @classmethod
  def parse(cls, text: str, space=None) -> Genotype:
    """Reads NAS-Bench-201's string form (see the module docstring).

    Raises:
      ValueError: naming the malformed part and the expected form.
    """
    form = ("NAS-Bench-201's form, e.g. "
            "'|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|'")
    text = str(text).strip()
    if text.startswith('Genotype(') and text.endswith(')'):
      text = text[len('Genotype('):-1].strip().strip('\'"')
    if not text:
      raise ValueError(f'An empty NB201 genotype; expected {form}.')
    nodes = []
    for i, part in enumerate(text.split('+'), start=1):
      if not (part.startswith('|') and part.endswith('|')) or len(part) < 3:
        raise ValueError(f'Node {i} of {text!r} is {part!r}: each node is '
                         f"'|op~input|...|' between bars; expected {form}.")
      edges = []
      for item in part[1:-1].split('|'):
        op, sep, src = item.partition('~')
        if not sep or not op or not src.strip().isdigit():
          raise ValueError(f"Edge {item!r} of node {i} in {text!r} is not "
                           f"'op~input' (an op name and an input node "
                           f'number); expected {form}.')
        edges.append((op.strip(), int(src)))
      nodes.append(tuple(edges))
    try:
      genotype = cls(tuple(nodes))
    except ValueError as e:
      raise ValueError(f'{e} Expected {form}.') from None
    return genotype.validate(space)

  def to_dict(self) -> dict[str, Any]:
    return {'arch': str(self)}

  @classmethod
  def from_dict(cls, data: dict[str, Any], space=None) -> Genotype:
    if not isinstance(data, dict) or not isinstance(data.get('arch'), str):
      raise ValueError('An NB201 genotype dict is {"arch": "|op~0|+..."}, '
                       f'got {data!r}.')
    return cls.parse(data['arch'], space)

  def save(self, path: PathLike) -> None:
    """Writes the JSON form ``{"arch": "..."}`` to ``path``."""
    with open(path, 'w', encoding='utf-8') as f:
      f.write(json.dumps(self.to_dict()) + '\n')

  @classmethod
  def load(cls, path: PathLike, space=None) -> Genotype:
    """Reads a file written by `save`, or one holding the string form.

    Raises:
      ValueError: naming the file, if its content is malformed.
    """
    with open(path, encoding='utf-8') as f:
      text = f.read()
    try:
      if text.lstrip().startswith('{'):
        return cls.from_dict(json.loads(text), space)
      return cls.parse(text, space)
    except (ValueError, json.JSONDecodeError) as e:
      raise ValueError(f'Genotype.load({os.fspath(path)!r}): {e}') from e
