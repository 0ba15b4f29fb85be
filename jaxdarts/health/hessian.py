"""The dominant eigenvalue of the architecture Hessian, without forming it.

Zela et al. ("Understanding and Robustifying Differentiable Architecture
Search", ICLR 2020) found that DARTS's failures (a cell collapsing to skip
connections and poolings) go with a growing dominant eigenvalue of

    H = grad2_a L_val(w, a),

the Hessian of the validation loss with respect to the architecture
parameters ``a`` at the current weights ``w``. Their code builds ``H`` row
by row and hands it to a dense eigenvalue routine. Here ``H`` is never
formed: :func:`lanczos_max_eigenvalue` runs Lanczos iterations on
Hessian-vector products, each a forward-over-reverse JVP of the gradient
(``jax.jvp`` of ``jax.grad``, here through one ``jax.linearize`` of the
gradient that every product reuses), and the largest eigenvalue of the
small tridiagonal matrix it builds approximates the largest eigenvalue of
``H`` (the extreme eigenvalues converge first, in far fewer iterations than
the dimension of ``a``).

:func:`hessian_max_eigenvalue` does this for a search state on one fixed
validation batch, jitted once: the state's static fields (model, method,
optimizers) are the same every epoch, so later calls reuse the program.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxdarts.core.step import loss_fn


def lanczos_max_eigenvalue(matvec: Callable[[jax.Array], jax.Array],
                           dim: int, *, iterations: int, rng: jax.Array,
                           dtype=jnp.float32) -> jax.Array:
  """The largest eigenvalue of a symmetric ``dim x dim`` operator.

  Lanczos (Golub & Van Loan, Matrix Computations, sec. 10.1) with full
  reorthogonalisation: from a random unit vector ``q_0``, each iteration
  computes ``r = A q_i``, ``t_ii = q_i . r``, removes from ``r`` its
  components along every ``q_0 .. q_i`` (twice, for stability in float32),
  and sets ``t_{i,i+1} = ||r||``, ``q_{i+1} = r / ||r||``. The eigenvalues
  of the tridiagonal ``T`` (Ritz values) approximate those of ``A``, the
  extreme ones first; after ``dim`` iterations they are exact. If ``r``
  vanishes (the Krylov space is invariant, e.g. ``A`` of low rank), the
  iteration continues from a random vector orthogonal to the basis with
  ``t_{i,i+1} = 0``, so ``T`` stays block diagonal and every Ritz value is
  still an eigenvalue of ``A``.

  Args:
    matvec: ``v -> A v`` for ``[dim]`` vectors; ``A`` symmetric.
    dim: the dimension.
    iterations: Lanczos steps (clipped to ``dim``); each costs one
      ``matvec``.
    rng: a key for the start (and restart) vectors.
    dtype: the vectors' dtype.

  Returns:
    The largest Ritz value: the largest (algebraic, not absolute)
    eigenvalue of ``A`` once converged.
  """
  k = min(iterations, dim)
  start_rng, restart_rng = jax.random.split(rng)
  start = jax.random.normal(start_rng, (dim,), dtype)
  restarts = jax.random.normal(restart_rng, (k, dim), dtype)
  basis = jnp.zeros((k + 1, dim), dtype)
  basis = basis.at[0].set(start / jnp.linalg.norm(start))

  def orthogonalise(r, basis, i):
    used = (jnp.arange(k + 1) <= i)[:, None]
    for _ in range(2):
      r = r - (basis * used).T @ ((basis * used) @ r)
    return r

  def body(i, carry):
    basis, diagonal, off, scale = carry
    q = basis[i]
    r = matvec(q)
    d = jnp.vdot(q, r)
    r = orthogonalise(r, basis, i)
    norm = jnp.linalg.norm(r)
    scale = jnp.maximum(scale, jnp.maximum(jnp.abs(d), norm))
    invariant = norm <= 100 * jnp.finfo(dtype).eps * scale
    fresh = orthogonalise(restarts[i], basis, i)
    fresh = fresh / jnp.linalg.norm(fresh)
    following = jnp.where(invariant, fresh, r / jnp.where(invariant, 1, norm))
    return (basis.at[i + 1].set(following), diagonal.at[i].set(d),
            off.at[i].set(jnp.where(invariant, 0, norm)), scale)

  init = (basis, jnp.zeros(k, dtype), jnp.zeros(k, dtype),
          jnp.zeros((), dtype))
  _, diagonal, off, _ = jax.lax.fori_loop(0, k, body, init)
  tridiagonal = (jnp.diag(diagonal) + jnp.diag(off[:-1], 1)
                 + jnp.diag(off[:-1], -1))
  return jnp.linalg.eigvalsh(tridiagonal)[-1]


def alpha_hessian_vector_product(state, batch):
  """``(flat alphas, v -> H v, unravel)`` of the validation loss at
  ``state``'s weights on ``batch``.

  The loss is the task's loss of the supernet on the method's
  deterministic mixing weights (``relax`` without an rng), BatchNorm on
  batch statistics, as in the search step; ``H v`` is the JVP of its
  gradient along ``v`` (forward over reverse), linearised once.
  """
  flat, unravel = ravel_pytree(state.alphas)
  loss = loss_fn(state, batch)

  def grad(x):
    g = jax.grad(lambda a: loss(state.params, unravel(a))[0])(x)
    return g

  _, hvp = jax.linearize(grad, flat)
  return flat, hvp, unravel


@functools.partial(jax.jit, static_argnames='iterations')
def hessian_max_eigenvalue(state, batch, *, iterations: int = 20,
                           rng: jax.Array | None = None) -> jax.Array:
  """The dominant eigenvalue of ``grad2_a L_val(w, a)`` (Zela et al., 2020).

  Args:
    state: a :class:`~jaxdarts.core.state.SearchState` (its ``params``,
      ``batch_stats``, ``alphas`` and method are used).
    batch: a fixed validation batch ``{'image', 'label'}``.
    iterations: Lanczos steps, each one Hessian-vector product (about the
      cost of two backward passes); 20 resolve the largest eigenvalue of
      the DARTS space's 224 alphas well (see ``tests/test_health.py``).
    rng: the start vector's key (default: key 0, so the value is a
      deterministic function of the state and the batch).

  Returns:
    The largest eigenvalue (a scalar in the alphas' dtype).
  """
  flat, hvp, _ = alpha_hessian_vector_product(state, batch)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  return lanczos_max_eigenvalue(hvp, flat.size, iterations=iterations,
                                rng=rng, dtype=flat.dtype)
