"""DARTS (Liu, Simonyan and Yang, ICLR 2019): the softmax relaxation.

Every edge mixes its candidate operations with ``softmax(alpha_edge)``
(eq. 2 of the paper); the genotype keeps, per node, the two incoming edges
whose strongest non-zero op weighs most, each with that op. These are the
defaults of :class:`~jaxdarts.methods.base.Method`, so DARTS overrides
nothing: it is the reference the other methods change.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxdarts.methods.base import Method


@dataclasses.dataclass(frozen=True)
class DARTS(Method):
  """Differentiable architecture search with a softmax over each edge."""
  name: ClassVar[str] = 'darts'
