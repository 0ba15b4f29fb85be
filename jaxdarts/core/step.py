"""The bilevel search step: pure, jitted, one function for any method.

``search_step`` first updates the alphas with a hypergradient on the
validation batch, then the weights with the training loss on the training
batch, as in the paper's Algorithm 1. The method (:mod:`jaxdarts.methods`)
turns the alphas into the supernet's mixing weights and says what the
alphas minimise; the task (:mod:`jaxdarts.tasks`) scores the outputs; the
hypergradient (:mod:`jaxdarts.core.hypergradient`) is independent of both.
BatchNorm runs on batch statistics in both passes (as the reference code
does during search); its running averages are updated only by the real
weight step.

Use it in your own loop::

    state = create_search_state(rng, model, images, num_steps=n)
    for train_batch, val_batch in batches:
      state, metrics = search_step(state, train_batch, val_batch)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxdarts.core import hypergradient as hg
from jaxdarts.core.state import SearchState, with_bn_axis
from jaxdarts.methods.base import mean_entropy

Batch = dict[str, jax.Array]  # {'image': [B, H, W, C] float, 'label': [B] int}


def _weights_loss(state: SearchState, model, batch: Batch):
  """``(params, mixing weights) -> (task loss, (batch_stats, outputs))``."""

  def loss(params, weights):
    outputs, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        weights, train=True, mutable=['batch_stats'])
    return state.task.loss(outputs, batch), (updates['batch_stats'], outputs)

  return loss


def loss_fn(state: SearchState, batch: Batch, *, rng: jax.Array | None = None,
            model=None):
  """``(params, alphas) -> (task loss, (batch_stats, outputs))`` on
  ``batch``, through the method's relaxation (drawn with ``rng``), BatchNorm
  on batch statistics: the training and validation losses of the bilevel
  problem."""
  loss = _weights_loss(state, model or state.model, batch)
  return lambda params, alphas: loss(
      params, state.method.relax(alphas, rng=rng, step=state.step))


def search_step_fn(state: SearchState, train_batch: Batch, val_batch: Batch,
                   *, axis_name: str | None = None):
  """One bilevel step (unjitted; see :func:`search_step`).

  With ``axis_name`` (inside ``jax.pmap`` or ``jax.shard_map``, see
  :mod:`jaxdarts.core.parallel`), the weight and alpha gradients, BatchNorm
  batch statistics (the model's ``bn_axis_name`` is bound to
  ``axis_name``) and metrics are averaged over that mapped axis, so N
  devices, each on its equal share of a global batch, compute what one
  device computes on the whole batch. Each device's gradient is taken
  pmap-style (the transpose of a collective sums the cotangents of every
  device), so the mean of the per-device gradients is the gradient of the
  global loss. Every device draws the same random numbers (the state's rng
  is replicated), so a sampling method samples one architecture for all.
  """
  if axis_name is None:
    reduce = lambda tree: tree
  else:
    reduce = lambda tree: jax.lax.pmean(tree, axis_name)
  model = with_bn_axis(state.model, axis_name)
  method, step = state.method, state.step
  rng, step_rng = jax.random.split(state.rng)
  arch_rng, weight_rng = jax.random.split(step_rng)
  xi = state.weight_lr(step) if state.weight_lr else jnp.nan
  val_loss = loss_fn(state, val_batch, rng=arch_rng, model=model)

  def arch_objective(params, alphas):
    loss, aux = val_loss(params, alphas)
    return method.arch_objective(loss, alphas, step=step), (loss, aux)

  def virtual_step(params, grads):
    updates, _ = state.weight_tx.update(grads, state.weight_opt_state, params)
    return optax.apply_updates(params, updates)

  problem = hg.BilevelProblem(
      train_loss=loss_fn(state, train_batch, rng=arch_rng, model=model),
      val_loss=arch_objective,
      virtual_step=virtual_step, xi=xi, reduce=reduce)
  alpha_grad, (_, (val_ce, (_, val_outputs))) = hg.get(state.hypergradient)(
      problem, state.params, state.alphas)
  arch_updates, arch_opt_state = state.arch_tx.update(
      alpha_grad, state.arch_opt_state, state.alphas)
  alphas = optax.apply_updates(state.alphas, arch_updates)

  train_loss = _weights_loss(state, model, train_batch)
  weights = method.weight_mixing(
      alphas, rng=weight_rng, step=step,
      loss=lambda w: train_loss(state.params, w)[0], reduce=reduce)
  (loss, (batch_stats, outputs)), grads = jax.value_and_grad(
      train_loss, has_aux=True)(state.params, weights)
  updates, weight_opt_state = state.weight_tx.update(
      reduce(grads), state.weight_opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  task = state.task
  metrics = reduce({
      'train_loss': loss,
      **_prefixed('train_', task.metrics(outputs, train_batch)),
      'val_loss': val_ce,
      **_prefixed('val_', task.metrics(val_outputs, val_batch)),
      'hypergradient_norm': optax.tree.norm(alpha_grad),
      'entropy': mean_entropy(method.relax(alphas, rng=None, step=step)),
      'lr': jnp.asarray(xi, jnp.float32),
      **method.schedule(step),
  })
  new_state = state.replace(
      step=step + 1, params=params, batch_stats=batch_stats, alphas=alphas,
      weight_opt_state=weight_opt_state, arch_opt_state=arch_opt_state,
      rng=rng)
  return new_state, metrics


def _prefixed(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
  return {prefix + name: value for name, value in metrics.items()}


search_step = jax.jit(search_step_fn, static_argnames='axis_name',
                      donate_argnums=0)
search_step.__doc__ = """One jitted bilevel step: ``(state, train_batch, val_batch) -> (state, metrics)``.

The input state's buffers are donated: keep using the returned state.
Metrics: ``train_loss`` and the task's metrics with a ``train_`` prefix
(``train_accuracy``), ``val_loss``/``val_accuracy`` (the validation batch
at the weights its hypergradient was taken at: ``w`` for first order, the
virtual ``w'`` for second-order methods), ``hypergradient_norm``,
``entropy`` (mean over edges of the op distribution's entropy), ``lr`` and
the method's schedules (e.g. a temperature).
"""
