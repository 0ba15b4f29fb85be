"""The search state and its initialisation, with the paper's optimizers.

A :class:`SearchState` holds every array a search step reads and writes
(weights, BatchNorm statistics, architecture parameters, both optimizer
states, the step and an rng) and, as static fields, what defines the step:
the supernet, the search method, the task, the hypergradient and the
optimizers. :func:`create_search_state` builds one::

    model = SearchNetwork(num_classes=10)
    state = create_search_state(rng, model, images, num_steps=n)
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdarts import methods as methods_lib
from jaxdarts.core import hypergradient as hg
from jaxdarts.methods.base import Method
from jaxdarts.tasks.classification import Classification

PyTree = Any


class SearchState(flax.struct.PyTreeNode):
  """Everything a search step reads and writes.

  The arrays are pytree leaves; the model, the method, the task, the
  hypergradient, the optimizers and the learning-rate schedule are static,
  so changing any of them compiles a new step.
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
  method: Method = flax.struct.field(pytree_node=False,
                                     default=methods_lib.DARTS())
  task: Any = flax.struct.field(pytree_node=False, default=Classification())

  def mixing_weights(self, rng: jax.Array | None = None) -> PyTree:
    """The supernet's mixing weights at the current alphas (deterministic
    without ``rng``)."""
    return self.method.relax(self.alphas, rng=rng, step=self.step)

  def predict(self, images: jax.Array) -> jax.Array:
    """The supernet's outputs in evaluation mode (running BN statistics)."""
    return self.model.apply(
        {'params': self.params, 'batch_stats': self.batch_stats}, images,
        self.mixing_weights(), train=False)

  def genotype(self):
    """The discrete architecture the current alphas stand for."""
    return self.method.derive(self.alphas, self.model.space)


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
                           b2: float = 0.999, weight_decay: float = 1e-3,
                           warmup_steps: int = 0):
  """The paper's alpha optimizer: Adam(3e-4, betas (0.5, 0.999)), L2 1e-3.

  Args:
    warmup_steps: leave the architecture unchanged for this many steps
      (PC-DARTS trains only the weights for its first 15 epochs): the
      update is zero and Adam's state waits, so step ``warmup_steps`` is
      Adam's first. A count in the optimizer state decides, inside the
      compiled step (``optax.transforms.conditionally_mask``), so the step
      compiles once.
  """
  tx = optax.chain(optax.add_decayed_weights(weight_decay),
                   optax.adam(learning_rate, b1=b1, b2=b2))
  if warmup_steps > 0:
    tx = optax.transforms.conditionally_mask(
        tx, lambda count: count >= warmup_steps)
  return tx


def run_once(fn: Callable, *args, **jit_kwargs):
  """``jax.jit(fn, **jit_kwargs)(*args)`` for a program that runs once, such
  as an initialisation: compiled without XLA's backend optimisations.

  Initialising is one program (op by op is far slower), and almost all of
  it is random number generation: a threefry hash per weight array, which
  XLA:CPU's LLVM pipeline optimises for minutes in a program that then runs
  in a fraction of a second. Unoptimised, it compiles several times faster
  and gives the same bits (``tests/test_search.py`` checks). Under a
  transformation (``jax.eval_shape``, an enclosing ``jax.jit``) it is
  ``fn(*args)``, compiled with the enclosing program.
  """
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)):
    return fn(*args)
  compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})
  return compiled(*args)


def create_search_state(rng: jax.Array, model: nn.Module, sample_images, *,
                        method: str | Method = 'darts',
                        task: Any = None,
                        hypergradient: str = 'first_order',
                        num_steps: int | None = None,
                        weight_tx: optax.GradientTransformation | None = None,
                        weight_lr: float | Callable | None = None,
                        arch_tx: optax.GradientTransformation | None = None,
                        alpha_init_scale: float = 1e-3) -> SearchState:
  """Initialise weights, BatchNorm statistics, alphas and both optimizers.

  Args:
    rng: a PRNG key.
    model: a supernet (:class:`~jaxdarts.SearchNetwork`, or anything with
      ``space`` and the call ``model.apply(variables, images,
      mixing_weights, train=...)``).
    sample_images: a batch with the training images' shape (only the shape
      is used).
    method: a search method or its registry name (see
      :mod:`jaxdarts.methods`); a name is built with ``num_steps``. A method
      with its own edge module is built into ``model``.
    task: what the outputs are scored by (default: classification).
    hypergradient: ``'first_order'``, ``'finite_difference'``, ``'exact'`` or
      ``'unrolled'`` (see :mod:`jaxdarts.core.hypergradient`).
    num_steps: length of the run, for the default cosine schedule and the
      methods' schedules.
    weight_tx: your own weight optimizer (any optax transformation).
    weight_lr: with ``weight_tx``, its learning rate (a float or a schedule
      of the step), used as xi by the second-order methods and logged.
    arch_tx: your own alpha optimizer.
    alpha_init_scale: alphas start as this times a standard normal.

  Raises:
    ValueError: an unknown hypergradient or method, a second-order
      hypergradient with a method that cannot take one, or a missing
      ``num_steps``/``weight_lr``.
  """
  hg.get(hypergradient)  # Fails early on an unknown name.
  if isinstance(method, str):
    method = methods_lib.get(
        method, **({} if num_steps is None else {'num_steps': num_steps}))
  if hypergradient != 'first_order' and not method.second_order:
    raise ValueError(
        f'The {method.name!r} method has no differentiable mixing weights, '
        f'so the {hypergradient!r} hypergradient cannot be taken through it; '
        "use hypergradient='first_order'.")
  edge = method.edge()
  if edge is not None:
    cls, fields = edge
    model = model.clone(edge=cls, edge_options=tuple(sorted(fields.items())))
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
    alphas = method.init_arch(model.space, alpha_rng, alpha_init_scale)
    weights = method.relax(alphas, rng=None, step=jnp.zeros((), jnp.int32))
    images = jnp.zeros(sample_images.shape, jnp.float32)
    variables = model.init(init_rng, images, weights, train=False)
    params = variables['params']
    return dict(step=jnp.zeros((), jnp.int32), params=params,
                batch_stats=variables.get('batch_stats', {}), alphas=alphas,
                weight_opt_state=weight_tx.init(params),
                arch_opt_state=arch_tx.init(alphas), rng=rng)

  return SearchState(**run_once(init, rng), model=model,
                     hypergradient=hypergradient, weight_tx=weight_tx,
                     arch_tx=arch_tx, weight_lr=weight_lr, method=method,
                     task=task or Classification())


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
