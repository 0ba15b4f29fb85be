"""The segmentation supernet: DARTS search cells down to output stride 8.

:class:`SegSearchNetwork` is the DARTS supernet
(:class:`~jaxdarts.spaces.darts_cnn.supernet.SearchNetwork`: the same
search cells, mixing weights, scans and rematerialisation) with a stride-2
stem, so its two reduction cells (at 1/3 and 2/3 of the depth) bring the
features to strides 4 and 8, and the light decoder of
:mod:`jaxdarts.spaces.darts_seg.decoder` in place of the classifier. It
searches the cells of a fixed network, as Auto-DeepLab's cell level (Liu
et al., CVPR 2019); the network-level search (a path over resolutions) is
not implemented. Called like the classification supernet::

    logits = model.apply(variables, images, mixing_weights, train=False)

returns per-pixel logits ``[N, H / 4, W / 4, num_classes]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.space import reduction_cells
from jaxdarts.spaces.darts_cnn.supernet import SearchNetwork
from jaxdarts.spaces.darts_seg.decoder import SegDecoder


class SegSearchNetwork(SearchNetwork):
  """The DARTS supernet for segmentation (see the module docstring).

  Attributes (besides :class:`SearchNetwork`'s):
    stem_stride: stride of the stem convolution (2: output stride 8).
    decoder_channels: width of the decoder; None: ``4 * channels``.
  """
  stem_stride: int = 2
  decoder_channels: int | None = None

  @nn.compact
  def __call__(self, images, weights, train: bool):
    """Logits ``[N, H / (2 stem_stride), W / (2 stem_stride), K]``."""
    self.check_weights(weights)
    bn = self.bn_axis_name
    x = nn.Conv(self.stem_multiplier * self.channels, (3, 3),
                strides=self.stem_stride, padding=1, use_bias=False,
                kernel_init=ops.torch_conv_init, name='stem_conv')(images)
    x = ops.batch_norm(train, True, bn, name='stem_bn')(x)

    stem_dtype = x.dtype
    s0 = s1 = x.astype(self.compute_dtype or stem_dtype)
    reductions = reduction_cells(self.layers)
    low = None
    for run in self.cell_runs():
      if run[0] == reductions[1]:
        low = s1  # The last features before the second reduction.
      kind = 'reduce' if run[0] in reductions else 'normal'
      if len(run) > 1 and not self.is_initializing():
        s0, s1 = self._scan_cells(run, s0, s1, weights[kind], train)
        continue
      for i in run:
        if self.remat_cells and not self.is_initializing():
          out = self._remat_cell(i, s0, s1, weights[kind], train)
        else:
          out = self._cell(i, name=f'cell_{i}')(s0, s1, weights[kind], train)
        s0, s1 = s1, out
    return SegDecoder(self.num_classes,
                      self.decoder_channels or 4 * self.channels, bn,
                      name='decoder')(s1.astype(stem_dtype),
                                      low.astype(stem_dtype), train)
