"""DrNAS (Chen et al., ICLR 2021): Dirichlet-distributed mixing weights.

"DrNAS: Dirichlet Neural Architecture Search", official code
https://github.com/xiangning-chen/DrNAS (``DARTS-space/model_search.py``,
``utils.process_step_vector``, ``architect.py``). Each edge's mixing
weights are a sample

    w ~ Dirichlet(beta),    beta = elu(alpha) + 1  (> 0),

drawn anew at every step with a reparameterised (pathwise) gradient, so the
alphas learn a distribution over architectures rather than a point
(``jax.random.dirichlet``, whose gradient is the implicit one through
``jax.random.gamma``; ``tests/test_drnas.py`` checks it against finite
differences). Without an rng (evaluation, the logged entropy) the weights
are the Dirichlet mean ``beta / sum(beta)``. The genotype is DARTS's rule on
``softmax(alpha)``, as the official ``genotype()``.

Regularisation toward the prior ``Dirichlet(1)``: the official default is
L2 (``--reg_type l2 --reg_scale 1e-3``, the alpha optimizer's weight decay;
the ``drnas`` preset's ``optimizer.arch_weight_decay = 1e-3``). Its other
choice, ``--reg_type kl``, adds ``reg_scale * sum_{edges} KL(Dir(beta) ||
Dir(1))`` over both cells to the alphas' objective: set ``kl_weight`` (and,
as the official code does then, ``optimizer.arch_weight_decay = 0``).

Not reproduced here: the official progressive scheme (partial channels,
K = 6 then 4, and pruning the candidate ops to 4 per edge after 25 epochs)
and its 10 warm-up epochs per stage without alpha updates.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from jaxdarts.methods.base import Arch, Method


def concentration(alphas: jax.Array) -> jax.Array:
  """``elu(alpha) + 1``: the Dirichlet concentration of each edge."""
  return jax.nn.elu(alphas) + 1.


def dirichlet_kl(beta: jax.Array, prior: float = 1.) -> jax.Array:
  """``KL(Dir(beta) || Dir(prior * 1))`` per row of ``beta`` (last axis).

  ``log G(b0) - sum log G(b_k) - log G(p0) + sum log G(p_k)
  + sum (b_k - p_k) (psi(b_k) - psi(b0))``, with ``b0``, ``p0`` the sums.
  """
  prior = jnp.full_like(beta, prior)
  b0, p0 = beta.sum(-1), prior.sum(-1)
  return (gammaln(b0) - gammaln(beta).sum(-1) - gammaln(p0)
          + gammaln(prior).sum(-1)
          + ((beta - prior) * (digamma(beta) - digamma(b0)[..., None])).sum(-1))


@dataclasses.dataclass(frozen=True)
class DrNAS(Method):
  """Dirichlet mixing weights (see the module docstring).

  Attributes:
    kl_weight: the weight of the KL term toward ``Dirichlet(1)`` (the
      official ``reg_scale`` with ``reg_type='kl'``); 0 (the default, as
      the official L2 choice) adds nothing to the objective.
  """
  name: ClassVar[str] = 'drnas'
  kl_weight: float = 0.0

  def relax(self, arch: Arch, *, rng=None, step=0):
    del step
    betas = {cell: concentration(a) for cell, a in arch.items()}
    if rng is None:
      return {cell: b / b.sum(-1, keepdims=True) for cell, b in betas.items()}
    cells = sorted(betas)
    keys = jax.random.split(rng, len(cells))
    return {cell: jax.random.dirichlet(key, betas[cell],
                                       dtype=betas[cell].dtype)
            for cell, key in zip(cells, keys)}

  def kl(self, arch: Arch) -> jax.Array:
    """``sum over every edge of KL(Dir(elu(alpha) + 1) || Dir(1))``."""
    return sum(dirichlet_kl(concentration(a)).sum()
               for _, a in sorted(arch.items()))

  def arch_objective(self, loss, arch, *, step):
    del step
    if not self.kl_weight:
      return loss
    return loss + self.kl_weight * self.kl(arch)
