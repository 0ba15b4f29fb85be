"""The segmentation network of a genotype, for retraining from scratch.

:class:`SegNetwork` stacks a genotype's cells as
:class:`~jaxdarts.spaces.darts_cnn.networks.NetworkCIFAR` does (the same
:class:`~jaxdarts.spaces.darts_cnn.networks.EvalCell`, reductions at 1/3
and 2/3 of the depth, drop path) after a stride-2 stem, and puts the
decoder of :mod:`jaxdarts.spaces.darts_seg.decoder` on its stride-8 and
stride-4 features, as the supernet of :mod:`.supernet` does::

    model = SegNetwork(genotypes.get('DARTS_V2'), num_classes=11)
    logits = model.apply(variables, images, train=False)  # [N, H/4, W/4, K]
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.networks import Rate, _CellStack, _conv
from jaxdarts.spaces.darts_seg.decoder import SegDecoder


class SegNetwork(_CellStack):
  """A genotype's segmentation network (see the module docstring).

  ``__call__(images, train, drop_path_rate=0., return_features=False)``
  returns the logits at stride 4 (no auxiliary head), or ``(logits,
  features)`` with the last cell output at strides 2, 4 and 8.

  Attributes:
    genotype: the architecture.
    channels: initial cell channels C.
    layers: number of cells (at least 3).
    num_classes: classes, the background included.
    auxiliary: must be False (there is no auxiliary segmentation head).
    stem_multiplier: stem channels / C.
    decoder_channels: width of the decoder; None: ``4 * channels``.
    bn_axis_name: average BatchNorm statistics over this mapped axis.
  """
  genotype: Any
  channels: int = 16
  layers: int = 8
  num_classes: int = 11
  auxiliary: bool = False
  stem_multiplier: int = 3
  decoder_channels: int | None = None
  bn_axis_name: str | None = None

  stem_stride = 2

  @nn.compact
  def __call__(self, images, train: bool, drop_path_rate: Rate = 0., *,
               return_features: bool = False):
    if self.auxiliary:
      raise ValueError('SegNetwork has no auxiliary head; set auxiliary=False '
                       '(config.model.auxiliary).')
    x = _conv(self.stem_multiplier * self.channels, 3, self.stem_stride,
              padding=1, name='stem_conv')(images)
    x = ops.batch_norm(train, True, self.bn_axis_name, name='stem_bn')(x)
    features = {}
    self._cells(x, x, train, drop_path_rate, features)
    high, low = features[4 * self.stem_stride], features[2 * self.stem_stride]
    logits = SegDecoder(self.num_classes,
                        self.decoder_channels or 4 * self.channels,
                        self.bn_axis_name, name='decoder')(high, low, train)
    return (logits, features) if return_features else logits
