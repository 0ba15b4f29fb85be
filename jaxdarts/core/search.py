"""The bilevel search state and its pure, jitted step.

``search_step`` first updates the alphas with a hypergradient on the
validation batch, then the weights with the training loss on the training
batch, as in the paper's Algorithm 1. BatchNorm runs on batch statistics in
both passes (as the reference code does during search); its running
averages are updated only by the real weight step.

Use it in your own loop::

    state = create_search_state(rng, model, images, num_steps=n)
    for train_batch, val_batch in batches:
      state, metrics = search_step(state, train_batch, val_batch)
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdarts.core import hypergradient as hg
from jaxdarts.genotype import Genotype, derive_genotype

PyTree = Any
Batch = dict[str, jax.Array]  # {'image': [B, H, W, C] float, 'label': [B] int}


class SearchState(flax.struct.PyTreeNode):
  """Everything a search step reads and writes.

  The arrays are pytree leaves; the model, the hypergradient method, the
  optimizers and the learning-rate schedule are static, so changing any of
  them compiles a new step.
  """
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  alphas: PyTree
  weight_opt_state: optax.OptState
  arch_opt_state: optax.OptState
  rng: jax.Array
  model: nn.Module = flax.struct.field(pytree_node=False)
  hypergradient: str = flax.struct.field(pytree_node=False)
  weight_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  arch_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  weight_lr: Callable[[jax.Array], jax.Array] | None = flax.struct.field(
      pytree_node=False)

  def apply_fn(self, variables, images, alphas, **kwargs):
    return self.model.apply(variables, images, alphas, **kwargs)

  def genotype(self) -> Genotype:
    """The discrete architecture the current alphas stand for."""
    return derive_genotype(self.alphas, self.model.space)


def default_weight_optimizer(num_steps: int, *, learning_rate: float = 0.025,
                             min_learning_rate: float = 0.001,
                             momentum: float = 0.9, weight_decay: float = 3e-4,
                             grad_clip: float | None = 5.0):
  """The paper's weight optimizer and its learning-rate schedule.

  SGD with momentum 0.9 and (coupled, PyTorch-style) weight decay 3e-4, the
  learning rate cosine-annealed from 0.025 to 0.001 over ``num_steps``, and
  the gradient clipped to global norm 5.

  Returns:
    ``(tx, schedule)``.
  """
  schedule = optax.cosine_decay_schedule(
      learning_rate, max(num_steps, 1), alpha=min_learning_rate / learning_rate)
  tx = optax.chain(
      optax.clip_by_global_norm(grad_clip) if grad_clip else optax.identity(),
      optax.add_decayed_weights(weight_decay),
      optax.sgd(schedule, momentum=momentum))
  return tx, schedule


def default_arch_optimizer(*, learning_rate: float = 3e-4, b1: float = 0.5,
                           b2: float = 0.999, weight_decay: float = 1e-3):
  """The paper's alpha optimizer: Adam(3e-4, betas (0.5, 0.999)), L2 1e-3."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.adam(learning_rate, b1=b1, b2=b2))


def run_once(fn: Callable, *args, **jit_kwargs):
  """``jax.jit(fn, **jit_kwargs)(*args)`` for a program that runs once, such
  as an initialisation: compiled without XLA's backend optimisations.

  Initialising is one program (op by op is far slower), and almost all of
  it is random number generation: a threefry hash per weight array, which
  XLA:CPU's LLVM pipeline optimises for minutes in a program that then runs
  in a fraction of a second. Unoptimised, the 8-cell supernet's
  initialisation compiles in 20-38 s instead of 73-90 s on a 2-core CPU and
  runs in 0.15 s; its values are the same bits (``tests/test_search.py``
  checks). Under a transformation (``jax.eval_shape``, an enclosing
  ``jax.jit``) it is ``fn(*args)``, compiled with the enclosing program.
  """
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)):
    return fn(*args)
  compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})
  return compiled(*args)


def create_search_state(rng: jax.Array, model: nn.Module, sample_images, *,
                        hypergradient: str = 'first_order',
                        num_steps: int | None = None,
                        weight_tx: optax.GradientTransformation | None = None,
                        weight_lr: float | Callable | None = None,
                        arch_tx: optax.GradientTransformation | None = None,
                        alpha_init_scale: float = 1e-3) -> SearchState:
  """Initialise weights, BatchNorm statistics, alphas and both optimizers.

  Args:
    rng: a PRNG key.
    model: a :class:`~jaxdarts.SearchNetwork` (anything with ``space`` and
      the call ``model.apply(variables, images, alphas, train=...)``).
    sample_images: a batch with the training images' shape (only the shape
      is used).
    hypergradient: ``'first_order'``, ``'finite_difference'``, ``'exact'`` or
      ``'unrolled'`` (see :mod:`jaxdarts.core.hypergradient`).
    num_steps: length of the run, for the default cosine schedule.
    weight_tx: your own weight optimizer (any optax transformation).
    weight_lr: with ``weight_tx``, its learning rate (a float or a schedule
      of the step), used as xi by the second-order methods and logged.
    arch_tx: your own alpha optimizer.
    alpha_init_scale: alphas start as this times a standard normal.
  """
  method = hg.get(hypergradient)
  del method
  if weight_tx is None:
    if num_steps is None:
      raise ValueError('create_search_state: pass num_steps (the length of '
                       'the run, for the cosine learning rate) or your own '
                       'weight_tx.')
    weight_tx, weight_lr = default_weight_optimizer(num_steps)
  elif weight_lr is not None and not callable(weight_lr):
    weight_lr = optax.constant_schedule(weight_lr)
  if weight_lr is None and hypergradient in hg.SECOND_ORDER:
    raise ValueError(f'The {hypergradient!r} hypergradient needs the weight '
                     'learning rate xi: pass weight_lr= with your weight_tx.')
  arch_tx = arch_tx or default_arch_optimizer()

  def init(rng):
    rng, init_rng, alpha_rng = jax.random.split(rng, 3)
    alphas = model.space.init_alphas(alpha_rng, alpha_init_scale)
    images = jnp.zeros(sample_images.shape, jnp.float32)
    variables = model.init(init_rng, images, alphas, train=False)
    params = variables['params']
    return dict(step=jnp.zeros((), jnp.int32), params=params,
                batch_stats=variables.get('batch_stats', {}), alphas=alphas,
                weight_opt_state=weight_tx.init(params),
                arch_opt_state=arch_tx.init(alphas), rng=rng)

  return SearchState(**run_once(init, rng), model=model,
                     hypergradient=hypergradient,
                     weight_tx=weight_tx, arch_tx=arch_tx, weight_lr=weight_lr)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def op_entropy(alphas) -> jax.Array:
  """Mean entropy of the per-edge op distributions softmax(alphas)."""
  ent = [-jnp.sum(jax.nn.softmax(a, -1) * jax.nn.log_softmax(a, -1), -1)
         for a in jax.tree.leaves(alphas)]
  return jnp.mean(jnp.concatenate(ent))


def with_bn_axis(model: nn.Module, axis_name: str | None) -> nn.Module:
  """``model`` with its BatchNorm statistics averaged over ``axis_name``.

  The steps bind the model's ``bn_axis_name`` to their own ``axis_name``, so
  one state runs on one device (None: per-batch statistics) or on many
  (cross-replica BatchNorm) without rebuilding the model.

  Raises:
    TypeError: ``axis_name`` is given but the model has no ``bn_axis_name``
      field, so its statistics would differ from device to device.
  """
  if getattr(model, 'bn_axis_name', None) == axis_name:
    return model
  if not hasattr(model, 'bn_axis_name'):
    raise TypeError(
        f'{type(model).__name__} has no bn_axis_name field, so a step mapped '
        f'over {axis_name!r} cannot average its BatchNorm statistics across '
        'devices; add a field `bn_axis_name: str | None = None` and pass it '
        'to every nn.BatchNorm(axis_name=...).')
  return model.clone(bn_axis_name=axis_name)


def _loss_fn(state: SearchState, batch: Batch):
  """``(params, alphas) -> (loss, (batch_stats, logits))`` on ``batch``."""

  def loss(params, alphas):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        alphas, train=True, mutable=['batch_stats'])
    return cross_entropy(logits, batch['label']), (updates['batch_stats'],
                                                    logits)

  return loss


def search_step_fn(state: SearchState, train_batch: Batch, val_batch: Batch,
                   *, axis_name: str | None = None):
  """One bilevel step (unjitted; see :func:`search_step`).

  With ``axis_name`` (inside ``jax.pmap`` or ``jax.shard_map``, see
  :mod:`jaxdarts.core.parallel`), the weight and alpha gradients, BatchNorm batch
  statistics (the model's ``bn_axis_name`` is bound to ``axis_name``) and
  metrics are averaged over that mapped axis, so N devices, each on its
  equal share of a global batch, compute what one device computes on the
  whole batch. Each device's gradient is taken pmap-style (the transpose of
  a collective sums the cotangents of every device), so the mean of the
  per-device gradients is the gradient of the global loss.
  """
  if axis_name is None:
    reduce = lambda tree: tree
  else:
    reduce = lambda tree: jax.lax.pmean(tree, axis_name)
  model = state.model
  state = state.replace(model=with_bn_axis(model, axis_name))
  rng, _ = jax.random.split(state.rng)
  xi = state.weight_lr(state.step) if state.weight_lr else jnp.nan

  def virtual_step(params, grads):
    updates, _ = state.weight_tx.update(grads, state.weight_opt_state, params)
    return optax.apply_updates(params, updates)

  problem = hg.BilevelProblem(
      train_loss=_loss_fn(state, train_batch),
      val_loss=_loss_fn(state, val_batch),
      virtual_step=virtual_step, xi=xi, reduce=reduce)
  alpha_grad, (val_loss, (_, val_logits)) = hg.get(state.hypergradient)(
      problem, state.params, state.alphas)
  arch_updates, arch_opt_state = state.arch_tx.update(
      alpha_grad, state.arch_opt_state, state.alphas)
  alphas = optax.apply_updates(state.alphas, arch_updates)

  (train_loss, (batch_stats, logits)), grads = jax.value_and_grad(
      _loss_fn(state, train_batch), has_aux=True)(state.params, alphas)
  updates, weight_opt_state = state.weight_tx.update(
      reduce(grads), state.weight_opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  metrics = reduce({
      'train_loss': train_loss,
      'train_accuracy': accuracy(logits, train_batch['label']),
      'val_loss': val_loss,
      'val_accuracy': accuracy(val_logits, val_batch['label']),
      'hypergradient_norm': optax.tree.norm(alpha_grad),
      'entropy': op_entropy(alphas),
      'lr': jnp.asarray(xi, jnp.float32),
  })
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats,
      alphas=alphas, weight_opt_state=weight_opt_state,
      arch_opt_state=arch_opt_state, rng=rng, model=model)
  return new_state, metrics


search_step = jax.jit(search_step_fn, static_argnames='axis_name',
                      donate_argnums=0)
search_step.__doc__ = """One jitted bilevel step: ``(state, train_batch, val_batch) -> (state, metrics)``.

The input state's buffers are donated: keep using the returned state.
Metrics: ``train_loss``, ``train_accuracy``, ``val_loss``/``val_accuracy``
(the validation batch at the weights its hypergradient was taken at: ``w``
for first order, the virtual ``w'`` for second-order methods),
``hypergradient_norm``, ``entropy`` (mean over edges of the op
distribution's entropy) and ``lr``.
"""


def eval_step_fn(state: SearchState, batch: Batch):
  """Supernet loss and correct-count on a batch, with running BN statistics."""
  logits = state.apply_fn({'params': state.params,
                           'batch_stats': state.batch_stats},
                          batch['image'], state.alphas, train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['label'])
  return {'loss_sum': losses.sum(),
          'correct': jnp.sum(jnp.argmax(logits, -1) == batch['label']),
          'count': jnp.asarray(batch['label'].shape[0])}


eval_step = jax.jit(eval_step_fn)
