"""The NAS-Bench-201 macro skeleton: a search network and a discrete one.

Both are the paper's skeleton (Dong and Yang, ICLR 2020, Fig. 1): a 3x3
convolution stem to C channels with BatchNorm; three stages of N cells at
C, 2C and 4C channels, separated by residual reduction blocks (a ResNet
basic block of two ReLU-conv3x3-BN, the first with stride 2, plus a 2x2
average pool and a 1x1 convolution on the shortcut); BatchNorm, ReLU,
global average pooling and a linear classifier. The paper uses C = 16 and
N = 5 (``layers = 15`` cells).

`NB201SearchNetwork` takes the mixing weights ``{'cell': [edges, ops]}``
(or a search method's dict of per-edge arrays) as a call argument, like
the DARTS supernet; `NB201Network` is one genotype's
network. Their parameter trees share names, so the supernet's parameters
restricted to a genotype's ops (`restrict_params`) are its network's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn.cell import check_mixing_weights
from jaxdarts.spaces.darts_cnn.ops import batch_norm, torch_conv_init
from jaxdarts.spaces.nb201.cell import DiscreteCell, MixedOp, NorConv, SearchCell
from jaxdarts.spaces.nb201.space import NB201_SPACE, NB201Space


class ResidualReduction(nn.Module):
  """NAS-Bench-201's reduction: ``conv_b(conv_a(x)) + conv1x1(pool2(x))``."""
  features: int
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    y = NorConv(self.features, 3, stride=2, bn_axis_name=self.bn_axis_name,
                name='conv_a')(x, train)
    y = NorConv(self.features, 3, bn_axis_name=self.bn_axis_name,
                name='conv_b')(y, train)
    n, h, w, c = x.shape
    pooled = x[:, :h - h % 2, :w - w % 2].reshape(
        n, h // 2, 2, w // 2, 2, c).mean((2, 4))
    shortcut = nn.Conv(self.features, (1, 1), use_bias=False,
                       kernel_init=torch_conv_init, dtype=x.dtype,
                       name='shortcut')(pooled)
    return y + shortcut


def cells_per_stage(layers: int) -> int:
  """N of a ``layers``-cell network (three stages of N cells)."""
  if layers < 3 or layers % 3:
    raise ValueError('An NB201 network has three stages of N cells, so '
                     f'layers (the number of cells) must be 3N, got {layers}.')
  return layers // 3


class _Skeleton(nn.Module):
  """The skeleton around ``self.cell(i, channels)`` (subclasses' cells)."""
  num_classes: int
  channels: int = 16
  layers: int = 15
  bn_axis_name: str | None = None
  compute_dtype: Any = None

  def _run(self, images, train: bool, cell_fn):
    bn = self.bn_axis_name
    x = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False,
                kernel_init=torch_conv_init, name='stem_conv')(images)
    x = batch_norm(train, True, bn, name='stem_bn')(x)
    dtype = x.dtype
    x = x.astype(self.compute_dtype or dtype)
    n, index = cells_per_stage(self.layers), 0
    for stage in range(3):
      c = self.channels * 2**stage
      if stage:
        x = ResidualReduction(c, bn, name=f'reduction_{stage}')(x, train)
      for _ in range(n):
        x = cell_fn(index, c, x)
        index += 1
    x = batch_norm(train, True, bn, name='last_bn')(x.astype(dtype))
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=torch_conv_init,
                    name='classifier')(x)


class NB201SearchNetwork(_Skeleton):
  """The NAS-Bench-201 supernet, mixing weights as a call argument.

  Attributes (besides the skeleton's ``num_classes``, ``channels`` C,
  ``layers`` = 3N cells, ``bn_axis_name``, ``compute_dtype``):
    space: the cell space.
    affine: affine BatchNorm in the cells' convolutions (False in
      NAS-Bench-201's searches; True trains the one-hot supernet as the
      discrete networks are trained).
    edge, edge_options: the edge module (see `SearchCell`).
  """
  space: NB201Space = NB201_SPACE
  affine: bool = False
  edge: Any = MixedOp
  edge_options: tuple[tuple[str, Any], ...] = ()

  def init_alphas(self, rng, scale: float = 1e-3):
    return self.space.init_alphas(rng, scale)

  def check_weights(self, weights) -> None:
    """Refuses mixing weights that do not fit the space, saying why
    (`jaxdarts.spaces.darts_cnn.cell.check_mixing_weights`)."""
    check_mixing_weights(weights, self.space)

  @nn.compact
  def __call__(self, images, weights, train: bool):
    self.check_weights(weights)
    return self._run(images, train, lambda i, c, x: SearchCell(
        self.space, c, affine=self.affine, bn_axis_name=self.bn_axis_name,
        edge=self.edge, edge_options=self.edge_options,
        name=f'cell_{i}')(x, weights['cell'], train))


class NB201Network(_Skeleton):
  """The network of one genotype (NAS-Bench-201's trained networks).

  Attributes (besides the skeleton's): ``genotype``, and ``affine``
  (affine BatchNorm in the cells' convolutions).
  """
  genotype: Any = None
  affine: bool = True

  @nn.compact
  def __call__(self, images, train: bool):
    return self._run(images, train, lambda i, c, x: DiscreteCell(
        self.genotype, c, self.affine, self.bn_axis_name,
        name=f'cell_{i}')(x, train))


def restrict_params(tree, genotype):
  """The supernet's parameters (or BatchNorm statistics) restricted to
  ``genotype``'s ops: the tree of its `NB201Network`."""
  keep = {f'edge_{i}_{j}': op for i, node in enumerate(genotype.nodes, 1)
          for op, j in node}

  def cell(subtree):
    out = {}
    for name, value in subtree.items():
      op = keep.get(name)
      if op is None:
        out[name] = value
      elif op in value:
        out[name] = {op: value[op]}
    return out

  return {name: cell(value) if name.startswith('cell_') else value
          for name, value in tree.items()}
