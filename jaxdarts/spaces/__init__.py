"""Search spaces by name: ``get('darts_cnn', num_nodes=4)``.

A space is one package under ``jaxdarts/spaces/`` whose space object
(a frozen dataclass, hashable: the supernet holds it as a field) provides:

* ``name``, ``cell_types`` (the keys of the architecture pytree, e.g.
  ``('normal', 'reduce')``), ``primitives`` and ``alpha_shape``;
* ``init_alphas(rng, scale)``: the architecture parameters;
* ``supernet(num_classes, **kwargs)``: its search network, called as
  ``model.apply(variables, images, mixing_weights, train=...)``;
* ``derive(weights)``: the genotype of per-edge op weights (its rule);
* ``parse_genotype(text)``: a genotype of the space from its text form.

The DARTS CNN space (:mod:`jaxdarts.spaces.darts_cnn`) is the reference.
"""

from __future__ import annotations

from typing import Any

from jaxdarts.spaces.darts_cnn.space import SearchSpace
from jaxdarts.spaces.darts_seg.space import SegSearchSpace
from jaxdarts.spaces.nb201.space import NB201Space

SPACES: dict[str, type] = {'darts_cnn': SearchSpace, 'darts_seg': SegSearchSpace,
                           'nb201': NB201Space}


def get(name: str, **options: Any):
  """The space ``name`` configured with ``options``.

  Raises:
    ValueError: an unknown space name, naming the known ones.
  """
  if name not in SPACES:
    raise ValueError(f'Unknown search space {name!r}; choose one of '
                     f'{sorted(SPACES)}.')
  return SPACES[name](**options)
