"""A NAS-Bench-201-style cell space (Dong and Yang, ICLR 2020).

The cell is a DAG over ``num_nodes`` nodes (4 in the paper): node 0 is the
cell's input and every node ``i >= 1`` sums one operation on each earlier
node, so a 4-node cell has 6 edges; the last node is the cell's output.
Every edge picks one of five operations: ``none`` (zero), ``skip_connect``
(identity), ``nor_conv_1x1`` and ``nor_conv_3x3`` (ReLU-conv-BN) and
``avg_pool_3x3``: 5^6 = 15,625 cells. The network repeats one cell type
(``cell_types == ('cell',)``) in three stages separated by residual
reduction blocks (:mod:`jaxdarts.spaces.nb201.network`).

Edges are numbered node by node, inputs in order (``(1,0), (2,0), (2,1),
(3,0), (3,1), (3,2)``), which is also the sorted order of the reference
code's ``'i<-j'`` edge names. A genotype keeps on each edge its strongest
operation, ``none`` included, as the paper's DARTS baseline does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

NB201_PRIMITIVES = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3',
                    'avg_pool_3x3')
CELL_TYPES = ('cell',)


@dataclasses.dataclass(frozen=True)
class NB201Space:
  """Candidate operations and cell size of a NAS-Bench-201-style search.

  Attributes:
    primitives: the candidate ops of every edge, a subset of
      `NB201_PRIMITIVES`, in the order of the alphas' last axis.
    num_nodes: nodes per cell including the input node (4 in the paper).
  """

  primitives: tuple[str, ...] = NB201_PRIMITIVES
  num_nodes: int = 4

  name = 'nb201'
  cell_types = CELL_TYPES

  def __post_init__(self):
    object.__setattr__(self, 'primitives', tuple(self.primitives))
    unknown = [p for p in self.primitives if p not in NB201_PRIMITIVES]
    if unknown:
      raise ValueError(f'NB201Space: unknown primitives {unknown}; choose '
                       f'from {list(NB201_PRIMITIVES)} (set '
                       'config.model.primitives).')
    if len(set(self.primitives)) != len(self.primitives) or not [
        p for p in self.primitives if p != 'none']:
      raise ValueError('NB201Space needs distinct primitives, at least one '
                       f'other than "none"; got {self.primitives}.')
    if self.num_nodes < 2:
      raise ValueError('NB201Space.num_nodes counts the input node too and '
                       f'must be >= 2 (4 in NAS-Bench-201), got '
                       f'{self.num_nodes}.')

  @property
  def num_ops(self) -> int:
    return len(self.primitives)

  @property
  def edges(self) -> tuple[tuple[int, int], ...]:
    """``(node, input)`` of every edge, in alpha row order."""
    return tuple((i, j) for i in range(1, self.num_nodes) for j in range(i))

  @property
  def num_edges(self) -> int:
    return len(self.edges)

  @staticmethod
  def edge_index(node: int, src: int) -> int:
    """Row of edge ``src -> node`` in the alphas."""
    return node * (node - 1) // 2 + src

  @property
  def alpha_shape(self) -> tuple[int, int]:
    return (self.num_edges, self.num_ops)

  @property
  def size(self) -> int:
    """Number of genotypes: ``num_ops ** num_edges``."""
    return self.num_ops**self.num_edges

  def init_alphas(self, rng: jax.Array, scale: float = 1e-3,
                  dtype=jnp.float32) -> dict[str, jax.Array]:
    """Architecture parameters ``{'cell': scale * N(0, 1)}``."""
    return {'cell': scale * jax.random.normal(rng, self.alpha_shape, dtype)}

  # The space's face to the library: genotypes, supernet, networks.

  @property
  def genotype_type(self) -> type:
    from jaxdarts.spaces.nb201.genotype import Genotype
    return Genotype

  def derive(self, weights):
    """The genotype of op weights ``{'cell': [edges, ops]}``: each edge's
    strongest op (``none`` included, as in NAS-Bench-201's baselines)."""
    strengths = np.asarray(weights['cell'])
    if strengths.shape != self.alpha_shape:
      raise ValueError(f'NB201Space.derive: weights of shape '
                       f'{strengths.shape}, expected {self.alpha_shape}.')
    return self.genotype_type.from_ops(
        self.primitives[k] for k in strengths.argmax(-1))

  def parse_genotype(self, text: str):
    """A genotype from NAS-Bench-201's string form, checked against the
    space's primitives and node count."""
    return self.genotype_type.parse(text, self)

  def resolve_genotype(self, spec):
    """A genotype from its string form, JSON ``{"arch": ...}`` or a file."""
    if isinstance(spec, self.genotype_type):
      return spec.validate(self)
    text = str(spec)
    if os.path.isfile(text):
      return self.genotype_type.load(text, self)
    if text.lstrip().startswith('{'):
      return self.genotype_type.from_dict(json.loads(text), self)
    return self.parse_genotype(text)

  def genotypes(self):
    """Every genotype of the space, in lexicographic order of the ops."""
    for ops in itertools.product(self.primitives, repeat=self.num_edges):
      yield self.genotype_type.from_ops(ops)

  def network(self, genotype, num_classes: int, **kwargs):
    """The discrete network of ``genotype`` (`NB201Network`; see it for
    kwargs: channels, layers, affine, ...)."""
    from jaxdarts.spaces.nb201.network import NB201Network
    return NB201Network(num_classes, genotype=genotype, **kwargs)

  def supernet(self, num_classes: int, *, scan_cells: bool = True,
               remat_cells: bool = False, depthwise: str | None = None,
               **kwargs):
    """The search network (`NB201SearchNetwork`; see it for kwargs).

    ``scan_cells``, ``remat_cells`` and ``depthwise`` (DARTS supernet
    performance knobs) are accepted and have no effect here.
    """
    del scan_cells, remat_cells, depthwise
    from jaxdarts.spaces.nb201.network import NB201SearchNetwork
    return NB201SearchNetwork(num_classes, space=self, **kwargs)


NB201_SPACE = NB201Space()
