"""The ``darts_seg`` space: the DARTS cell space, searched for segmentation.

The cells, alphas, genotypes and derivation rule are the DARTS CNN
space's (:class:`~jaxdarts.spaces.darts_cnn.space.SearchSpace`); only the
networks differ: the supernet is
:class:`~jaxdarts.spaces.darts_seg.supernet.SegSearchNetwork` and the
retraining network :class:`~jaxdarts.spaces.darts_seg.network.SegNetwork`,
both ending in per-pixel logits at stride 4. Use it with the
``segmentation`` task (:mod:`jaxdarts.tasks.segmentation`).
"""

from __future__ import annotations

import dataclasses

from jaxdarts.spaces.darts_cnn.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class SegSearchSpace(SearchSpace):
  """The DARTS cell space with segmentation networks (see the module)."""

  name = 'darts_seg'

  def network(self, genotype, num_classes: int, **kwargs):
    """The segmentation network of ``genotype`` (`SegNetwork`; see it for
    kwargs)."""
    from jaxdarts.spaces.darts_seg.network import SegNetwork
    return SegNetwork(genotype, num_classes=num_classes, **kwargs)

  def supernet(self, num_classes: int, **kwargs):
    """The segmentation supernet (`SegSearchNetwork`; see it for kwargs)."""
    from jaxdarts.spaces.darts_seg.supernet import SegSearchNetwork
    return SegSearchNetwork(num_classes, space=self, **kwargs)
