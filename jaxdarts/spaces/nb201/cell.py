"""NAS-Bench-201 operations and cells: the mixed search cell, the discrete.

Operations (as in the reference code, ReLU-conv-BN order):

* ``nor_conv_kxk``: ReLU, k x k convolution (padding k // 2, no bias),
  BatchNorm (affine or not);
* ``avg_pool_3x3``: 3x3 average, padding 1, not counting the padding (no
  BatchNorm: input and output channels are equal inside a cell);
* ``skip_connect``: identity; ``none``: zero.

Every op keeps the channels and the resolution (the network reduces between
cells). Module names are the op names under ``edge_{node}_{input}`` in both
cells, so a supernet's parameters restricted to the chosen ops are the
discrete cell's parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn.cell import EdgeModule, edge_slice
from jaxdarts.spaces.darts_cnn.ops import avg_pool, batch_norm, torch_conv_init


class NorConv(nn.Module):
  """ReLU, ``kernel x kernel`` convolution, BatchNorm."""
  features: int
  kernel: int
  stride: int = 1
  affine: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    k = self.kernel
    x = nn.Conv(self.features, (k, k), strides=self.stride, padding=k // 2,
                use_bias=False, kernel_init=torch_conv_init,
                dtype=x.dtype)(nn.relu(x))
    return batch_norm(train, self.affine, self.bn_axis_name)(x)


KERNELS = {'nor_conv_1x1': 1, 'nor_conv_3x3': 3}


def apply_op(op: str, x, *, channels: int, train: bool,
             affine: bool, bn_axis_name: str | None):
  """``op(x)``, or None for ``none`` (zero).

  Call it inside a module's compact method: a convolution becomes a
  submodule of that module, named ``op``.
  """
  if op == 'none':
    return None
  if op == 'skip_connect':
    return x
  if op == 'avg_pool_3x3':
    return avg_pool(x, 1)
  if op in KERNELS:
    return NorConv(channels, KERNELS[op], affine=affine,
                   bn_axis_name=bn_axis_name, name=op)(x, train)
  raise ValueError(f'Unknown NB201 operation {op!r}.')


class MixedOp(EdgeModule):
  """``sum_k w_k op_k(x)`` over the candidate ops of one edge.

  An edge module of the method seam (see
  `jaxdarts.methods.base.Method.edge`); ``affine`` (this space's own
  field) gives the convolutions' BatchNorm a scale and bias.
  """
  affine: bool = False

  @nn.compact
  def __call__(self, x, weights):
    out = jnp.zeros_like(x)
    for k, op in enumerate(self.primitives):
      y = apply_op(op, x, channels=self.channels, train=self.train,
                   affine=self.affine, bn_axis_name=self.bn_axis_name)
      if y is not None:
        out = out + weights[k].astype(y.dtype) * y
    return out


class SearchCell(nn.Module):
  """The search cell: every edge mixes every candidate op.

  Every edge has stride 1 (the network reduces between cells). A search
  method's edge module (``edge``) gets this space's `MixedOp` as its
  ``mixed_op``, so it wraps these candidates.

  Attributes:
    space: the space (primitives, nodes).
    channels: channels of every node.
    affine: affine BatchNorm in the convolutions (NAS-Bench-201's search
      uses non-affine; its trained networks affine). Only with the default
      edge (`MixedOp`).
    bn_axis_name: average BatchNorm statistics over this mapped axis.
    edge: the edge module class (`MixedOp`, or a search method's).
    edge_options: extra fields of ``edge``, sorted ``(name, value)`` pairs.
  """
  space: Any
  channels: int
  affine: bool = False
  bn_axis_name: str | None = None
  edge: Any = MixedOp
  edge_options: tuple[tuple[str, Any], ...] = ()

  @nn.compact
  def __call__(self, x, weights, train: bool):
    """The output node; ``weights`` are this cell type's mixing weights,
    ``[edges, ops]`` or a method's dict of per-edge arrays."""
    options = dict(self.edge_options, mixed_op=MixedOp)
    if self.edge is MixedOp:
      options.setdefault('affine', self.affine)
    elif self.affine:
      raise ValueError(
          f'The NB201 supernet with affine=True takes the default mixed op '
          f'only, not the edge {self.edge.__name__} of a search method '
          '(searches use affine=False, as NAS-Bench-201\'s do): drop '
          'affine=True.')
    nodes = [x]
    for i in range(1, self.space.num_nodes):
      nodes.append(sum(
          self.edge(self.space.primitives, self.channels, 1, train,
                    self.bn_axis_name, None, name=f'edge_{i}_{j}',
                    **options)(nodes[j], edge_slice(
                        weights, self.space.edge_index(i, j)))
          for j in range(i)))
    return nodes[-1]


class DiscreteCell(nn.Module):
  """The cell of one genotype: one op per edge, ``none`` edges absent."""
  genotype: Any
  channels: int
  affine: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    nodes = [x]
    for i, node in enumerate(self.genotype.nodes, start=1):
      terms = []
      for op, j in node:
        edge = _Edge(op, self.channels, self.affine, self.bn_axis_name,
                     name=None if op in ('none', 'skip_connect',
                                         'avg_pool_3x3') else f'edge_{i}_{j}')
        y = edge(nodes[j], train)
        if y is not None:
          terms.append(y)
      nodes.append(sum(terms) if terms else jnp.zeros_like(x))
    return nodes[-1]


class _Edge(nn.Module):
  """One edge of a discrete cell (its convolution named by the op)."""
  op: str
  channels: int
  affine: bool
  bn_axis_name: str | None

  @nn.compact
  def __call__(self, x, train: bool):
    return apply_op(self.op, x, channels=self.channels, train=train,
                    affine=self.affine, bn_axis_name=self.bn_axis_name)
