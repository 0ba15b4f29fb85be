"""Architecture gradients (hypergradients) of DARTS's bilevel problem.

The alphas minimise the validation loss at the weights the training loss
would reach, approximated by one weight step (paper, eq. 6)::

    min_a  L_val(w'(a), a),    w'(a) = w - xi * d(grad_w L_train(w, a)),

where ``d`` is the weight optimizer's update direction (SGD with momentum and
weight decay in the paper, whose ``d`` is affine in the gradient). Its
gradient (eq. 7) is

    dL/da = grad_a L_val(w', a) - xi * grad2_{a,w} L_train(w, a) . v,
    v     = grad_w' L_val(w', a).

Every method here is a pure function with the same signature::

    method(problem: BilevelProblem, params, alphas)
        -> (alpha_grad, (val_loss, val_aux))

* ``first_order``: drop the second-order term and take w' = w (xi = 0);
* ``finite_difference``: eq. 8, the mixed term by central differences at
  ``w +- eps v`` with ``eps = 0.01 / ||v||``, as the reference code does;
* ``exact``: the mixed term by forward-over-reverse autodiff, the JVP of
  ``grad_a L_train(., a)`` along ``v`` (a ``jax.linearize`` of the training
  gradient that also gives the virtual step), with no truncation error;
* ``unrolled``: reverse-mode autodiff straight through the optimizer's real
  update, exact for any optax optimizer (Adam, clipping, ...), at the cost of
  differentiating through a weight gradient.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import optax

PyTree = Any
# loss(params, alphas) -> (scalar loss, aux); aux is never differentiated.
LossFn = Callable[[PyTree, PyTree], tuple[jax.Array, Any]]


class BilevelProblem(NamedTuple):
  """What a hypergradient needs, with the batches already bound.

  Attributes:
    train_loss: ``L_train(params, alphas) -> (loss, aux)``.
    val_loss: ``L_val(params, alphas) -> (loss, aux)``.
    virtual_step: ``(params, weight_grads) -> w'``: one step of the weight
      optimizer from its current state, without committing it.
    xi: the virtual step's learning rate (the current weight learning rate).
    reduce: averages gradients over data-parallel devices (identity on one).
  """
  train_loss: LossFn
  val_loss: LossFn
  virtual_step: Callable[[PyTree, PyTree], PyTree]
  xi: jax.Array | float
  reduce: Callable[[PyTree], PyTree] = lambda tree: tree


def _grad(fn: LossFn, argnums):
  return jax.value_and_grad(fn, argnums=argnums, has_aux=True)


def _virtual_weights(problem: BilevelProblem, params, alphas):
  """w' = one optimizer step on the training loss, at the current alphas."""
  _, weight_grads = _grad(problem.train_loss, 0)(params, alphas)
  return problem.virtual_step(params, problem.reduce(weight_grads))


def _second_order(problem: BilevelProblem, params, alphas, weight_grads,
                  mixed_term):
  """Eq. 7, given ``weight_grads = grad_w L_train(w, a)`` (for the virtual
  step) and ``mixed_term(v) ~ grad2_{a,w} L_train(w, a) . v``."""
  w_virtual = problem.virtual_step(params, problem.reduce(weight_grads))
  val, (v, alpha_grad) = _grad(problem.val_loss, (0, 1))(w_virtual, alphas)
  v, alpha_grad = problem.reduce((v, alpha_grad))
  mixed = problem.reduce(mixed_term(v))
  hypergrad = jax.tree.map(lambda g, m: g - problem.xi * m, alpha_grad, mixed)
  return hypergrad, val


def first_order(problem: BilevelProblem, params, alphas):
  """``grad_a L_val(w, a)``: DARTS's first-order approximation (xi = 0)."""
  val, alpha_grad = _grad(problem.val_loss, 1)(params, alphas)
  return problem.reduce(alpha_grad), val


def _alpha_grad_at(problem: BilevelProblem, alphas):
  """``w -> grad_a L_train(w, a)``."""
  return lambda w: jax.grad(problem.train_loss, 1, has_aux=True)(w, alphas)[0]


def finite_difference(problem: BilevelProblem, params, alphas):
  """Eq. 8: the mixed term by central differences along ``v``."""
  alpha_grad_at = _alpha_grad_at(problem, alphas)

  def mixed_term(v):
    eps = 0.01 / optax.tree.norm(v)
    plus = alpha_grad_at(jax.tree.map(lambda w, d: w + eps * d, params, v))
    minus = alpha_grad_at(jax.tree.map(lambda w, d: w - eps * d, params, v))
    return jax.tree.map(lambda p, m: (p - m) / (2 * eps), plus, minus)

  _, weight_grads = _grad(problem.train_loss, 0)(params, alphas)
  return _second_order(problem, params, alphas, weight_grads, mixed_term)


def exact(problem: BilevelProblem, params, alphas):
  """Eq. 7 with the mixed term by forward-over-reverse autodiff.

  One ``jax.linearize`` of ``w -> (grad_w, grad_a) L_train(w, a)`` at the
  current weights gives both what the virtual step needs (its value,
  ``grad_w``) and the mixed term (its JVP along ``v``, ``grad_a`` part), so
  the training pass runs once, its linearisation held across the
  validation pass.
  """

  def train_grads(w):
    return jax.grad(problem.train_loss, (0, 1), has_aux=True)(w, alphas)[0]

  (weight_grads, _), train_grads_jvp = jax.linearize(train_grads, params)
  return _second_order(problem, params, alphas, weight_grads,
                       lambda v: train_grads_jvp(v)[1])


def unrolled(problem: BilevelProblem, params, alphas):
  """``d/da L_val(w'(a), a)`` through the optimizer's real update."""

  def objective(a):
    return problem.val_loss(_virtual_weights(problem, params, a), a)

  val, alpha_grad = jax.value_and_grad(objective, has_aux=True)(alphas)
  return problem.reduce(alpha_grad), val


METHODS: dict[str, Callable] = {
    'first_order': first_order,
    'finite_difference': finite_difference,
    'exact': exact,
    'unrolled': unrolled,
}
SECOND_ORDER = ('finite_difference', 'exact')


def get(name: str) -> Callable:
  try:
    return METHODS[name]
  except KeyError:
    raise ValueError(f'Unknown hypergradient {name!r}; choose one of '
                     f'{list(METHODS)}.') from None

