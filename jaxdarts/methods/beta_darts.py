"""beta-DARTS (Ye et al., CVPR 2022): the Beta-Decay regulariser.

"beta-DARTS: Beta-Decay Regularization for Differentiable Architecture
Search", official code https://github.com/Sunshine-Ye/Beta-DARTS
(``optimizers/darts/architect.py``: ``mlc_loss`` and ``_backward_step``).
The mixing weights are DARTS's softmax; the alphas minimise

    L_val + lambda_t * mean_{edges} logsumexp_k(alpha_{edge, k}),

the mean over every edge of both cells. The gradient of an edge's
logsumexp is its softmax, so the term pulls every alpha down in proportion
to its weight: it keeps the alphas' values and their spread small (the
"decay" of the softmax-activated parameters), which counters DARTS's
collapse into parameter-free ops.

``lambda_t`` grows linearly with the search: the official code uses
``50 * epoch / 100`` (0.5 per epoch, starting at 0). Here it grows with the
step, ``lambda_t = lambda_end * step / num_steps``; the ``beta_darts``
preset's ``lambda_end = 25`` gives the official 0.5 per epoch over the
50-epoch CIFAR-10 search.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxdarts.methods.base import Arch, Method


def beta_decay(arch: Arch) -> jax.Array:
  """``mean over edges of logsumexp(alpha_edge)``, over every cell."""
  rows = jnp.concatenate([jax.nn.logsumexp(a, axis=-1).reshape(-1)
                          for _, a in sorted(arch.items())])
  return jnp.mean(rows)


@dataclasses.dataclass(frozen=True)
class BetaDARTS(Method):
  """DARTS with the Beta-Decay term on the alphas (see the module docstring).

  Attributes:
    num_steps: the length of the search (for the schedule of lambda).
    lambda_end: lambda at the end of the search (0 at the start).
  """
  name: ClassVar[str] = 'beta_darts'
  num_steps: int
  lambda_end: float = 25.0

  def beta_lambda(self, step) -> jax.Array:
    """``lambda_end * step / num_steps``, clipped to ``[0, lambda_end]``."""
    progress = jnp.asarray(step, jnp.float32) / max(self.num_steps, 1)
    return self.lambda_end * jnp.clip(progress, 0., 1.)

  def arch_objective(self, loss, arch, *, step):
    return loss + self.beta_lambda(step).astype(loss.dtype) * beta_decay(arch)

  def schedule(self, step):
    return {'beta_lambda': self.beta_lambda(step)}
