"""DARTS- (Chu et al., ICLR 2021): an auxiliary skip connection that fades.

Every mixed operation gets an extra, architecture-independent skip
connection weighted by a scalar ``beta`` that decays linearly from
``beta_0 = 1`` to 0 over the search:

    f_e(x) = sum_k softmax(alpha_e)_k op_k(x) + beta(t) * skip(x),

``skip`` the identity, or on a stride-2 edge a factorized reduce of its own
(not shared with the candidate ``skip_connect``). The auxiliary path gives
the residual that made DARTS prefer parameter-free skip connections for
free, so the alphas stop collapsing onto them (the official code,
github.com/Meituan-AutoML/DARTS-, ``src/search/model_search.py``:
``res += self.auxiliary_op(x) * beta_decay_scheduler.decay_rate``). The
optimizers and derivation are DARTS's; at ``beta = 0`` the supernet is
DARTS's (``tests/test_methods_darts_minus.py``).

The mixing weights are ``{cell: {'ops': [edges, ops], 'aux': [edges]}}``
(beta repeated per edge, so the edge modules read it like any weight).
The edge wraps the space's own mixed op (``mixed_op``), so it runs on
every space; in ``nb201`` every edge has stride 1 and the skip is ``x``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.methods.base import Method
from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn.cell import EdgeModule


class AuxiliarySkipMixedOp(EdgeModule):
  """The space's mixed op plus ``aux * skip(x)``; called as ``(x, {'ops':
  [ops], 'aux': []})``. On a stride-2 edge (the DARTS cells' reductions;
  every ``nb201`` edge has stride 1) the skip is a factorized reduce."""

  @nn.compact
  def __call__(self, x, weights):
    out = self.mixed(self.primitives, self.channels, name='mixed')(
        x, weights['ops'])
    skip = x if self.stride == 1 else ops.FactorizedReduce(
        self.channels, False, self.bn_axis_name, name='auxiliary_skip')(
            x, self.train)
    return out + weights['aux'].astype(skip.dtype) * skip


@dataclasses.dataclass(frozen=True)
class DARTSMinus(Method):
  """DARTS with a decaying auxiliary skip connection on every edge.

  Attributes:
    num_steps: steps of the search, for the decay.
    beta_0: the auxiliary skip's weight at the first step.
  """
  name: ClassVar[str] = 'darts_minus'
  num_steps: int
  beta_0: float = 1.0

  def beta(self, step) -> jax.Array:
    """``beta_0 * (1 - step / num_steps)``: linear, 0 after the last step."""
    frac = jnp.minimum(jnp.asarray(step, jnp.float32)
                       / max(self.num_steps, 1), 1.0)
    return self.beta_0 * (1.0 - frac)

  def relax(self, arch, *, rng=None, step=0):
    del rng
    beta = self.beta(step)
    return {cell: {'ops': jax.nn.softmax(a, axis=-1),
                   'aux': jnp.full(a.shape[:1], beta, a.dtype)}
            for cell, a in arch.items()}

  def edge(self):
    return AuxiliarySkipMixedOp, {}

  def schedule(self, step):
    return {'aux_skip_beta': self.beta(step)}
