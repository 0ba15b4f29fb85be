"""SDARTS (Chen and Hsieh, ICML 2020): perturbed mixing weights in the
weight step.

"Stabilizing Differentiable Architecture Search via Perturbation-based
Regularization", official code https://github.com/xiangning-chen/SmoothDARTS
(``sota/cnn/train_search.py``, ``attacker/perturb.py``,
``Network.clip``). The alpha step is DARTS's. The weight step trains the
supernet at mixing weights perturbed around ``A = softmax(alpha)``, which
smooths the validation loss landscape in the alphas (a smaller Hessian
eigenvalue) so that the derived architecture keeps the supernet's accuracy:

* SDARTS-RS (``sdarts_rs``): ``A + U(-eps, eps)``, element-wise;
* SDARTS-ADV (``sdarts_adv``): an L-infinity PGD attack on the training
  loss: a random start ``A + U(-eps, eps)``, then 7 steps of size
  ``2 eps / 7`` along the sign of the loss gradient, each clipped back to
  the box ``|W - A| <= eps`` and to the simplex; if the attack ends below
  the unperturbed loss, ``A`` itself is used.

"Back to the simplex" is the official ``Network.clip``, per edge: clamp to
``[0, 1]``, put a 1 on the edge's largest entry if everything clamped to
0, and divide by the sum. It keeps the box only up to that
renormalisation: the perturbation is within ``eps`` before it, the weights
are on the simplex after it. ``eps`` grows linearly from 0.03 to 0.3 over
the search (the official ``0.03 + (0.3 - 0.03) * epoch / epochs``, here
per step).

Differences from the official code: its attack runs the network in
evaluation mode (BatchNorm on running statistics); the weight-step hook
here gives the training loss with batch statistics, the loss the weights
are then trained on. Every device computes the same perturbation: the
attack's gradients and losses are averaged over data-parallel devices.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxdarts.methods.base import Method

PyTree = Any


def to_simplex(weights: jax.Array) -> jax.Array:
  """The official ``clip`` of each edge's weights (last axis): clamp to
  ``[0, 1]``, a one-hot of the largest entry where all clamp to 0, then
  normalise to sum to one."""
  clamped = jnp.clip(weights, 0., 1.)
  total = clamped.sum(-1, keepdims=True)
  one_hot = jax.nn.one_hot(jnp.argmax(weights, -1), weights.shape[-1],
                           dtype=weights.dtype)
  clamped = jnp.where(total == 0., one_hot, clamped)
  return clamped / clamped.sum(-1, keepdims=True)


def uniform_noise(rng: jax.Array, like: PyTree, eps) -> PyTree:
  """``U(-eps, eps)`` noise shaped like every leaf of ``like``."""
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(rng, len(leaves))
  return jax.tree.unflatten(treedef, [
      jax.random.uniform(k, x.shape, x.dtype, -eps, eps)
      for k, x in zip(keys, leaves)])


def random_perturbation(weights: PyTree, rng: jax.Array, eps) -> PyTree:
  """SDARTS-RS: ``to_simplex(weights + U(-eps, eps))`` per edge."""
  noise = uniform_noise(rng, weights, eps)
  return jax.tree.map(lambda w, d: to_simplex(w + d), weights, noise)


def pgd_perturbation(weights: PyTree, rng: jax.Array, eps, *, loss,
                     reduce=lambda tree: tree, steps: int = 7) -> PyTree:
  """SDARTS-ADV: an L-infinity PGD ascent of ``loss`` around ``weights``.

  Args:
    weights: the unperturbed mixing weights (on the simplex).
    rng: a key for the random start.
    eps: the radius of the box.
    loss: ``mixing weights -> scalar training loss``.
    reduce: averages over data-parallel devices (gradients, losses).
    steps: PGD steps, each of size ``2 eps / steps``.
  """
  size = 2. * eps / steps
  start = random_perturbation(weights, rng, eps)

  def ascend(_, current):
    grads = reduce(jax.grad(loss)(current))
    moved = jax.tree.map(lambda w, g: w + size * jnp.sign(g), current, grads)
    return jax.tree.map(
        lambda w, w0: to_simplex(w0 + jnp.clip(w - w0, -eps, eps)),
        moved, weights)

  attacked = jax.lax.fori_loop(0, steps, ascend, start)
  worse = reduce(loss(attacked)) >= reduce(loss(weights))
  return jax.tree.map(lambda a, w: jnp.where(worse, a, w), attacked, weights)


@dataclasses.dataclass(frozen=True)
class SDARTSRandom(Method):
  """SDARTS-RS: uniform noise on the weight step's mixing weights.

  Attributes:
    num_steps: the length of the search (for the schedule of eps).
    epsilon_start: eps at the first step (0.03).
    epsilon_end: eps the schedule reaches at ``num_steps`` (0.3).
  """
  name: ClassVar[str] = 'sdarts_rs'
  num_steps: int
  epsilon_start: float = 0.03
  epsilon_end: float = 0.3

  def epsilon(self, step) -> jax.Array:
    """``eps`` at ``step``: linear from ``epsilon_start`` to ``epsilon_end``."""
    progress = jnp.clip(jnp.asarray(step, jnp.float32)
                        / max(self.num_steps, 1), 0., 1.)
    return self.epsilon_start + (self.epsilon_end
                                 - self.epsilon_start) * progress

  def perturb(self, weights, *, rng, step, loss, reduce):
    del loss, reduce
    return random_perturbation(weights, rng, self.epsilon(step))

  def weight_mixing(self, arch, *, rng, step, loss, reduce):
    weights = self.relax(arch, rng=None, step=step)
    return self.perturb(weights, rng=rng, step=step, loss=loss, reduce=reduce)

  def schedule(self, step):
    return {'epsilon': self.epsilon(step)}


@dataclasses.dataclass(frozen=True)
class SDARTSAdversarial(SDARTSRandom):
  """SDARTS-ADV: a PGD attack on the weight step's mixing weights.

  Attributes:
    attack_steps: PGD steps (7), each of size ``2 eps / attack_steps``.
  """
  name: ClassVar[str] = 'sdarts_adv'
  attack_steps: int = 7

  def perturb(self, weights, *, rng, step, loss, reduce):
    return pgd_perturbation(weights, rng, self.epsilon(step), loss=loss,
                            reduce=reduce, steps=self.attack_steps)
