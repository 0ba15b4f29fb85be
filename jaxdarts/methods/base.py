"""The search-method seam: the hooks a DARTS-family method may change.

A search method decides how the architecture parameters (the alphas, a
pytree separate from the network weights) steer the supernet and how a
discrete architecture is read from them. The bilevel step
(:mod:`jaxdarts.core.step`) calls these hooks and nothing else, so a new
method is one small subclass of :class:`Method` that overrides the hooks it
changes; every hook's default is what DARTS (Liu et al., ICLR 2019) does.

* ``init_arch``: the architecture pytree (PC-DARTS adds edge betas);
* ``relax``: architecture -> mixing weights of the supernet's edges, with an
  rng and the step (softmax for DARTS; Gumbel samples, sigmoids, Dirichlet
  samples for others);
* ``weight_mixing``: the mixing weights of the weight step (SDARTS perturbs
  them; the default is ``relax``);
* ``arch_objective``: what the alphas minimise, from the validation loss
  (regularisers such as beta-DARTS's or resource penalties);
* ``edge``: the module that mixes an edge's candidate operations (PC-DARTS's
  partial channels, GDAS's single sampled op);
* ``strengths`` and ``derive``: the op weights a genotype is ranked by, and
  the genotype itself (the space's rule by default: top-2 incoming edges
  per node for the DARTS CNN space, one op per edge for a NAS-Bench-201
  cell);
* ``schedule``: scalars of the step's schedules (a temperature, ...), which
  the step logs.

Methods and hypergradients are orthogonal: every hypergradient of
:mod:`jaxdarts.core.hypergradient` differentiates ``arch_objective`` of the
validation loss through ``relax``, so it works with every method whose
mixing weights are differentiable in the alphas. A method whose weights are
not (hard samples) sets ``second_order = False`` and the state refuses
second-order hypergradients for it.

Methods are frozen dataclasses: hashable and compared by value, so a method
is a static field of :class:`~jaxdarts.core.state.SearchState` and one
configuration compiles one step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Arch = dict[str, jax.Array]  # cell type -> [edges, ops] (plus method extras)


@dataclasses.dataclass(frozen=True)
class Method:
  """DARTS's behaviour at every hook; subclasses override what they change.

  Class attributes:
    name: the registry name (``config.search.method``).
    second_order: whether second-order hypergradients make sense (the
      mixing weights are differentiable in the alphas).
  """
  name: ClassVar[str] = 'darts'
  second_order: ClassVar[bool] = True

  def init_arch(self, space, rng: jax.Array, scale: float = 1e-3) -> Arch:
    """The architecture parameters: the space's alphas, ``scale * N(0, 1)``."""
    return space.init_alphas(rng, scale)

  def relax(self, arch: Arch, *, rng: jax.Array | None = None,
            step: jax.Array | int = 0) -> PyTree:
    """Mixing weights ``{cell type: [edges, ops]}`` for the supernet.

    A method whose edge module takes more than op weights gives, per cell
    type, a dict of per-edge arrays with the op weights under ``'ops'``
    (``{'ops': [edges, ops], 'edge': [edges]}`` for PC-DARTS); see
    :func:`op_weights`.

    Args:
      arch: the architecture parameters.
      rng: a key for methods that sample; None asks for the deterministic
        weights (evaluation).
      step: the search step (0-based), for methods with schedules.
    """
    del rng, step
    return _softmax(arch)

  def weight_mixing(self, arch: Arch, *, rng: jax.Array, step: jax.Array,
                    loss, reduce) -> PyTree:
    """Mixing weights of the weight step (``relax`` by default).

    Args:
      arch: the architecture parameters (already updated this step).
      rng: a key for methods that sample or perturb.
      step: the search step (0-based).
      loss: ``mixing weights -> training loss`` at the current weights, for
        methods that perturb the weights adversarially (SDARTS-ADV).
      reduce: averages a pytree over data-parallel devices (identity on
        one); apply it to anything computed from the batch, such as a
        gradient of ``loss``, so N devices choose what one device would.
    """
    del loss, reduce
    return self.relax(arch, rng=rng, step=step)

  def arch_objective(self, loss: jax.Array, arch: Arch, *,
                     step: jax.Array) -> jax.Array:
    """What the alphas minimise, given the validation loss (``loss``)."""
    del arch, step
    return loss

  def edge(self) -> tuple[type, dict[str, Any]] | None:
    """``(module class, extra fields)`` of the edge module, or None for the
    space's default mixed op (``sum_k w_k op_k(x)`` over all candidates).

    The class is built as ``cls(primitives, channels, stride, train,
    bn_axis_name, depthwise, mixed_op=..., **fields)``, ``mixed_op``
    being the space's own mixed op, which the edge wraps (the ``nb201``
    cell passes its own; left None, the DARTS one: see
    `jaxdarts.spaces.darts_cnn.cell.EdgeModule`), so one edge class
    serves every space; it is called as ``(x, weights)``
    with one edge's ``[ops]`` weights (its slice of each per-edge array
    when ``relax`` gives a dict per cell type). A class attribute
    ``vmappable = False`` makes the cell build one module per edge instead
    of mapping the edges that read the same state with ``nn.vmap`` (needed
    when an edge branches on its weights, which ``vmap`` would turn into
    computing every branch).
    """
    return None

  def strengths(self, arch: Arch) -> dict[str, np.ndarray]:
    """Per-edge op weights a genotype is ranked by (float64, host arrays):
    the softmax of each cell type's alphas."""
    return {cell: _softmax64(a) for cell, a in arch.items()}

  def derive(self, arch: Arch, space):
    """The discrete architecture: the space's rule on ``strengths``."""
    return space.derive(self.strengths(arch))

  def schedule(self, step: jax.Array) -> dict[str, jax.Array]:
    """Scalars of the method's schedules at ``step`` (logged by the step)."""
    del step
    return {}


def _softmax(arch: Arch) -> dict[str, jax.Array]:
  return {cell: jax.nn.softmax(a, axis=-1) for cell, a in arch.items()}


def _softmax64(alphas: Any) -> np.ndarray:
  logits = np.asarray(jax.device_get(alphas), dtype=np.float64)
  shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return shifted / shifted.sum(axis=-1, keepdims=True)


def op_weights(cell_weights: Any) -> jax.Array:
  """The ``[edges, ops]`` op weights of one cell type's mixing weights: the
  array itself, or the ``'ops'`` entry of a method's dict of per-edge
  arrays (PC-DARTS adds edge weights, DARTS- an auxiliary skip weight)."""
  if isinstance(cell_weights, dict):
    return cell_weights['ops']
  return cell_weights


def mean_entropy(weights: dict[str, Any]) -> jax.Array:
  """Mean over every edge of the entropy of its op weights, normalised to
  sum to one (so sigmoid or unnormalised weights are measured alike)."""
  leaves = jax.tree.leaves(
      weights, is_leaf=lambda x: isinstance(x, dict) and 'ops' in x)
  entropies = [jax.scipy.special.entr(w / w.sum(-1, keepdims=True)).sum(-1)
               for w in map(op_weights, leaves)]
  return jnp.mean(jnp.concatenate([e.reshape(-1) for e in entropies]))
