"""The DARTS CNN search space: candidate ops, nodes per cell, edges, alphas.

:class:`SearchSpace` is also the space's face to the rest of the library
(see :mod:`jaxdarts.spaces`): it builds its supernet and its evaluation
networks, and owns its genotype type and derivation rule.

A DARTS cell is a DAG over ``2 + num_nodes`` states. States 0 and 1 are the
cell's inputs (the outputs of the two previous cells, ``c_{k-2}`` and
``c_{k-1}``); state ``2 + i`` is intermediate node ``i``, the sum of one mixed
operation on each earlier state. The cell's output concatenates the
intermediate nodes. Edges are numbered node by node, inputs in order, as in
the reference implementation, so node ``i``'s edges are
``edge_offset(i) ... edge_offset(i) + 1 + i``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

DARTS_PRIMITIVES = (
    'none',
    'max_pool_3x3',
    'avg_pool_3x3',
    'skip_connect',
    'sep_conv_3x3',
    'sep_conv_5x5',
    'dil_conv_3x3',
    'dil_conv_5x5',
)

CELL_TYPES = ('normal', 'reduce')


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """Candidate operations and cell size of a DARTS search.

  Attributes:
    primitives: names of the candidate operations of every edge, in the
      order of the last axis of the alphas. ``'none'`` (the zero operation),
      if present, is never chosen when a genotype is derived.
    num_nodes: intermediate nodes per cell (4 in the paper).
  """

  primitives: tuple[str, ...] = DARTS_PRIMITIVES
  num_nodes: int = 4

  def __post_init__(self):
    object.__setattr__(self, 'primitives', tuple(self.primitives))
    if len(set(self.primitives)) != len(self.primitives):
      raise ValueError(f'SearchSpace primitives repeat a name: {self.primitives}')
    if not [p for p in self.primitives if p != 'none']:
      raise ValueError('SearchSpace needs at least one primitive other than "none".')
    if self.num_nodes < 1:
      raise ValueError(f'SearchSpace.num_nodes must be >= 1, got {self.num_nodes}.')

  name = 'darts_cnn'
  cell_types = CELL_TYPES

  @property
  def num_ops(self) -> int:
    return len(self.primitives)

  @property
  def num_edges(self) -> int:
    """Edges per cell: node ``i`` has ``2 + i`` inputs (14 for 4 nodes)."""
    return self.edge_offset(self.num_nodes)

  @staticmethod
  def edge_offset(node: int) -> int:
    """Index of the first edge into intermediate node ``node``."""
    return sum(2 + i for i in range(node))

  @property
  def edges(self) -> tuple[tuple[int, int], ...]:
    """``(node, input_state)`` of every edge, in alpha row order."""
    return tuple((i, j) for i in range(self.num_nodes) for j in range(2 + i))

  @property
  def concat(self) -> tuple[int, ...]:
    """States concatenated into the cell output: all intermediate nodes."""
    return tuple(range(2, 2 + self.num_nodes))

  @property
  def alpha_shape(self) -> tuple[int, int]:
    return (self.num_edges, self.num_ops)

  def init_alphas(self, rng: jax.Array, scale: float = 1e-3,
                  dtype=jnp.float32) -> dict[str, jax.Array]:
    """Architecture parameters ``{'normal', 'reduce'}``: ``scale * N(0, 1)``."""
    keys = jax.random.split(rng, len(CELL_TYPES))
    return {
        name: scale * jax.random.normal(key, self.alpha_shape, dtype)
        for name, key in zip(CELL_TYPES, keys)
    }


  # The space's face to the library: genotypes, supernet, networks.

  def derive(self, weights):
    """The genotype of per-edge op weights ``{cell type: [edges, ops]}``:
    two strongest incoming edges per node, each with its strongest op
    (`jaxdarts.spaces.darts_cnn.derive.top2_genotype`)."""
    from jaxdarts.spaces.darts_cnn.derive import top2_genotype
    return top2_genotype(weights, self)

  def parse_genotype(self, text: str):
    """A genotype of this space from its text form (``Genotype(...)``)."""
    from jaxdarts.spaces.darts_cnn.genotype import Genotype
    return Genotype.parse(text, self)

  def resolve_genotype(self, spec):
    """The genotype a user names: a genotype text or JSON, a published name
    or a path (`jaxdarts.spaces.darts_cnn.genotypes.resolve`)."""
    from jaxdarts.spaces.darts_cnn import genotypes
    return genotypes.resolve(spec)

  def network(self, genotype, num_classes: int, **kwargs):
    """The evaluation network of ``genotype`` for CIFAR-size images
    (`NetworkCIFAR`; see it for kwargs)."""
    from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR
    return NetworkCIFAR(genotype, num_classes=num_classes, **kwargs)

  def supernet(self, num_classes: int, **kwargs):
    """The search network of this space (see `SearchNetwork` for kwargs)."""
    from jaxdarts.spaces.darts_cnn.supernet import SearchNetwork
    return SearchNetwork(num_classes, space=self, **kwargs)


DARTS_SPACE = SearchSpace()


def reduction_cells(layers: int) -> tuple[int, ...]:
  """Indices of the reduction cells of a ``layers``-cell network: 1/3, 2/3."""
  if layers < 3:
    raise ValueError(f'A DARTS network needs at least 3 cells, got {layers}.')
  return (layers // 3, 2 * layers // 3)
