"""Search methods by name: ``get('darts')``; see :mod:`.base` for the hooks.

Register a new method with :func:`register` (a subclass of
:class:`~jaxdarts.methods.base.Method` with its own ``name``); the runner
builds ``get(config.search.method, num_steps=..., **config.method)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxdarts.methods.base import Method
from jaxdarts.methods.darts import DARTS
from jaxdarts.methods.beta_darts import BetaDARTS
from jaxdarts.methods.drnas import DrNAS
from jaxdarts.methods.fair_darts import FairDARTS
from jaxdarts.methods.sdarts import SDARTSAdversarial, SDARTSRandom

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
  """Adds ``cls`` to :data:`METHODS` under ``cls.name``; returns it."""
  METHODS[cls.name] = cls
  return cls


for _cls in (DARTS,):
  register(_cls)
for _cls in (FairDARTS, BetaDARTS, SDARTSRandom, SDARTSAdversarial, DrNAS):
  register(_cls)

from jaxdarts.methods.darts_minus import DARTSMinus  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxdarts.methods.gdas import GDAS  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxdarts.methods.pc_darts import PCDARTS  # pylint: disable=g-import-not-at-top,wrong-import-position
register(PCDARTS)
register(GDAS)
register(DARTSMinus)


def get(name: str, **options: Any) -> Method:
  """The method ``name`` configured with ``options``.

  A ``num_steps`` option (the length of the search, for schedules) is
  dropped for methods without schedules.

  Raises:
    ValueError: an unknown method name or option, naming the valid ones.
  """
  if name not in METHODS:
    raise ValueError(f'Unknown search method {name!r}; choose one of '
                     f'{sorted(METHODS)} (or register your own with '
                     'jaxdarts.methods.register).')
  cls = METHODS[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  if 'num_steps' not in fields:
    options.pop('num_steps', None)
  unknown = sorted(set(options) - fields)
  if unknown:
    raise ValueError(f'Search method {name!r} has no option '
                     f'{", ".join(unknown)}; its options are '
                     f'{sorted(fields) or "none"}.')
  missing = sorted(f.name for f in dataclasses.fields(cls)
                   if f.name not in options
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING)
  if missing:
    raise ValueError(f'Search method {name!r} needs {", ".join(missing)} '
                     '(num_steps: the length of the search, for its '
                     'schedules).')
  return cls(**options)
