"""GDAS (Dong and Yang, CVPR 2019): one sampled operation per edge.

Every step samples, per edge, one operation with the Gumbel-max trick and
computes that operation only. With Gumbel noise ``g_k = -log(-log u_k)``,

    p = softmax((log_softmax(alpha) + g) / tau),   i = argmax_k p_k,
    h = one_hot(i) + p - stop_gradient(p),

the edge outputs ``h_i * op_i(x)``: ``op_i(x)`` in the forward pass (``h``
is exactly one-hot) and, backwards, the straight-through gradient
``dL/dalpha = <dL/dy, op_i(x)> * dp_i/dalpha = c * p_i (e_i - p) / tau``
(the log-softmax drops out: a softmax ignores shifts). This is the official
code's DARTS-space cell (``MixedOp.forward_gdas`` of
github.com/D-X-Y/AutoDL-Projects, ``xautodl/models/cell_searchs/
search_cells.py``: ``self._ops[index](x) * weights[index]``), where
``hardwts = one_h - probs.detach() + probs``. The temperature decays
linearly from ``tau_max = 10`` to ``tau_min = 0.1`` over the search (the
official code per epoch, here per step).

The edge is :class:`SampledOp`, a ``lax.switch`` over the candidates, so a
step costs about one op per edge; its branch is the index of the one-hot
mixing weights. The hard samples have no second derivative to speak of, so
GDAS takes first-order hypergradients only. Without an rng (evaluation,
``state.predict``), each edge takes its most likely op, ``argmax alpha``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.methods.base import Method
from jaxdarts.spaces.darts_cnn.cell import EdgeModule


class SampledOp(EdgeModule):
  """``weights[i] * op_i(x)`` with ``i = argmax weights``, only op ``i``
  computed (``nn.switch``; at initialisation every op, for its variables).

  Op ``i`` is the space's mixed op over that one candidate (``mixed``,
  named after the op), so the edge runs on every space. ``weights`` must
  be one-hot in value (GDAS's ``h``); ``'none'`` gives zeros.
  ``vmappable = False``: mapped, a switch computes every branch.
  """
  vmappable: ClassVar[bool] = False

  @nn.compact
  def __call__(self, x, weights):
    shape = (x.shape[0], -(-x.shape[1] // self.stride),
             -(-x.shape[2] // self.stride), self.channels)

    def branch(name, k):
      def run(module, x, weights):
        if name == 'none':
          return jnp.zeros(shape, x.dtype)
        out = module.mixed((name,), self.channels, name=name)(
            x, weights[k:k + 1])
        return out.astype(x.dtype)
      return run

    branches = [branch(name, k) for k, name in enumerate(self.primitives)]
    if self.is_initializing():
      for run in branches:
        run(self, x, weights)
    return nn.switch(jnp.argmax(weights), branches, self, x, weights)


@dataclasses.dataclass(frozen=True)
class GDAS(Method):
  """Gradient-based search using a differentiable architecture sampler.

  Attributes:
    num_steps: steps of the search, for the temperature schedule.
    tau_max, tau_min: the temperature decays linearly from ``tau_max`` at
      the first step to ``tau_min`` at the last.
  """
  name: ClassVar[str] = 'gdas'
  second_order: ClassVar[bool] = False
  num_steps: int
  tau_max: float = 10.0
  tau_min: float = 0.1

  def tau(self, step) -> jax.Array:
    """``tau_max - (tau_max - tau_min) * step / (num_steps - 1)``."""
    frac = jnp.minimum(jnp.asarray(step, jnp.float32)
                       / max(self.num_steps - 1, 1), 1.0)
    return self.tau_max - (self.tau_max - self.tau_min) * frac

  def relax(self, arch, *, rng=None, step=0):
    """Straight-through one-hot samples ``h`` per edge (see the module
    docstring); without ``rng``, the one-hot of ``argmax alpha``."""
    if rng is None:
      return {cell: jax.nn.one_hot(jnp.argmax(a, -1), a.shape[-1],
                                   dtype=a.dtype)
              for cell, a in arch.items()}
    keys = jax.random.split(rng, len(arch))
    tau = self.tau(step)
    out = {}
    for key, (cell, a) in zip(keys, sorted(arch.items())):
      gumbel = jax.random.gumbel(key, a.shape, a.dtype)
      probs = jax.nn.softmax((jax.nn.log_softmax(a, -1) + gumbel) / tau, -1)
      hard = jax.nn.one_hot(jnp.argmax(probs, -1), a.shape[-1], dtype=a.dtype)
      out[cell] = hard + (probs - jax.lax.stop_gradient(probs))
    return out

  def edge(self):
    return SampledOp, {}

  def schedule(self, step):
    return {'tau': self.tau(step)}
