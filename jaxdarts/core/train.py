"""Retraining an evaluation network from scratch: state and pure steps.

As in the paper's evaluation (Section 3.3) and the reference ``train.py``:
SGD with momentum 0.9 and (coupled) weight decay 3e-4, the learning rate
cosine-annealed from 0.025 to 0 over the run, gradients clipped to global
norm 5, the auxiliary loss weighted 0.4, and drop path whose rate the
caller ramps linearly over training. Use it in your own loop::

    model = NetworkCIFAR(genotypes.get('DARTS_V2'))
    state = create_train_state(rng, model, images, num_steps=n)
    for step, batch in enumerate(batches):
      state, metrics = train_step(state, batch,
                                  drop_path_rate=0.2 * step / n)
    totals = jaxdarts.eval_step(state, test_batch)  # core/evaluate.py

``drop_path_rate`` is traced, so changing it every step never recompiles.
The loss and metrics are the state's task's (:mod:`jaxdarts.tasks`;
classification by default, with optional label smoothing).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdarts.core.state import run_once, with_bn_axis
from jaxdarts.tasks.classification import Classification

PyTree = Any
Batch = dict[str, jax.Array]  # {'image': [B, H, W, C] float, 'label': [B] int}
Schedule = Callable[[jax.Array], jax.Array]


class TrainState(flax.struct.PyTreeNode):
  """Everything a retraining step reads and writes.

  The arrays are pytree leaves; the model, the optimizer, the learning
  rate schedule and the task are static, so changing any of them compiles
  a new step.
  """
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState
  rng: jax.Array
  model: nn.Module = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  learning_rate_fn: Schedule | None = flax.struct.field(pytree_node=False,
                                                        default=None)
  task: Any = flax.struct.field(pytree_node=False, default=Classification())

  @property
  def variables(self) -> dict[str, PyTree]:
    return {'params': self.params, 'batch_stats': self.batch_stats}

  def predict(self, images: jax.Array) -> jax.Array:
    """The network's outputs in evaluation mode (running BN statistics)."""
    return self.model.apply(self.variables, images, train=False)


def default_optimizer(num_steps: int, *, learning_rate: float = 0.025,
                      momentum: float = 0.9, weight_decay: float = 3e-4,
                      grad_clip: float | None = 5.
                      ) -> tuple[optax.GradientTransformation, Schedule]:
  """The paper's retraining optimizer and its learning-rate schedule.

  Clip to global norm ``grad_clip``, add ``weight_decay * params`` (PyTorch
  SGD's coupled decay), SGD with momentum; the learning rate follows a
  cosine from ``learning_rate`` to 0 over ``num_steps``.

  Returns:
    ``(tx, schedule)``.
  """
  schedule = optax.cosine_decay_schedule(learning_rate, max(num_steps, 1))
  tx = optax.chain(
      optax.clip_by_global_norm(grad_clip) if grad_clip else optax.identity(),
      optax.add_decayed_weights(weight_decay),
      optax.sgd(schedule, momentum=momentum))
  return tx, schedule


def create_train_state(rng: jax.Array, model: nn.Module, sample_images, *,
                       num_steps: int, learning_rate: float = 0.025,
                       momentum: float = 0.9, weight_decay: float = 3e-4,
                       grad_clip: float | None = 5.,
                       task: Any = None) -> TrainState:
  """Initialises the weights, BatchNorm statistics and the optimizer.

  Args:
    rng: a PRNG key (split into the init key and the state's dropout key).
    model: an evaluation network (:class:`~jaxdarts.NetworkCIFAR`,
      :class:`~jaxdarts.spaces.darts_cnn.networks.NetworkImageNet`, or anything called as
      ``model.apply(variables, images, train=..., drop_path_rate=...)``
      returning logits or ``(logits, aux_logits)``).
    sample_images: an array (or ``jax.ShapeDtypeStruct``) with the training
      images' shape; only the shape is used.
    num_steps: length of the run, for the cosine learning rate.
    learning_rate, momentum, weight_decay, grad_clip: see
      :func:`default_optimizer`.
    task: what the outputs are scored by (default: classification; e.g.
      ``Classification(label_smoothing=0.1)`` for ImageNet).
  """
  tx, schedule = default_optimizer(
      num_steps, learning_rate=learning_rate, momentum=momentum,
      weight_decay=weight_decay, grad_clip=grad_clip)
  rng, init_rng = jax.random.split(rng)
  variables = run_once(lambda key: model.init(
      key, jnp.zeros(sample_images.shape, jnp.float32), train=False), init_rng)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}),
                    opt_state=tx.init(params), rng=rng, model=model, tx=tx,
                    learning_rate_fn=schedule, task=task or Classification())


def _split_outputs(outputs) -> tuple[jax.Array, jax.Array | None]:
  """``logits`` or ``(logits, aux_logits)`` -> ``(logits, aux or None)``."""
  if isinstance(outputs, tuple):
    return outputs
  return outputs, None


def train_step_fn(state: TrainState, batch: Batch, *,
                  drop_path_rate: float | jax.Array,
                  auxiliary_weight: float = 0.4,
                  axis_name: str | None = None
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One training step (unjitted; see :func:`train_step`).

  The loss is the task's loss of the logits plus ``auxiliary_weight`` times
  that of the auxiliary logits (when the model returns them). BatchNorm
  uses batch statistics and its running averages are updated.

  Args:
    state: the current state.
    batch: ``{'image': [B, H, W, C], 'label': [B]}``.
    drop_path_rate: the drop-path probability for this step (a float or a
      traced scalar; nothing branches on it).
    auxiliary_weight: weight of the auxiliary loss.
    axis_name: with a mapped axis (see :mod:`jaxdarts.core.parallel`), the
      gradients, the BatchNorm batch statistics (the model's
      ``bn_axis_name`` is bound to it) and the metrics are averaged over it,
      so N devices on a global batch compute what one device computes;
      each replica draws its own drop-path masks, so with drop path the
      result matches one device's in distribution only.

  Returns:
    ``(new_state, metrics)``; metrics: ``loss`` (the total), ``ce_loss``
    (the task's loss of the logits), ``aux_loss`` (0 without an auxiliary
    head), the task's metrics (``accuracy``), ``lr``, ``grad_norm``
    (before clipping) and ``drop_path_rate``.
  """
  rng, dropout_rng = jax.random.split(state.rng)
  if axis_name is not None:
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))
  reduce = ((lambda tree: tree) if axis_name is None else
            (lambda tree: jax.lax.pmean(tree, axis_name)))
  model, task = with_bn_axis(state.model, axis_name), state.task

  def loss_fn(params):
    outputs, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        train=True, drop_path_rate=drop_path_rate,
        rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
    logits, aux_logits = _split_outputs(outputs)
    ce_loss = task.loss(logits, batch)
    aux_loss = (jnp.zeros_like(ce_loss) if aux_logits is None else
                task.loss(aux_logits, batch))
    loss = ce_loss + auxiliary_weight * aux_loss
    return loss, (updates['batch_stats'], logits, ce_loss, aux_loss)

  (loss, (batch_stats, logits, ce_loss, aux_loss)), grads = (
      jax.value_and_grad(loss_fn, has_aux=True)(state.params))
  grads = reduce(grads)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  lr = (state.learning_rate_fn(state.step) if state.learning_rate_fn
        else jnp.nan)
  metrics = reduce({
      'loss': loss, 'ce_loss': ce_loss, 'aux_loss': aux_loss,
      **task.metrics(logits, batch),
  })
  metrics.update(lr=jnp.asarray(lr, jnp.float32),
                 grad_norm=optax.tree.norm(grads),
                 drop_path_rate=jnp.asarray(drop_path_rate, jnp.float32))
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=batch_stats, opt_state=opt_state,
                            rng=rng)
  return new_state, metrics


_jitted_train_step = jax.jit(
    train_step_fn, donate_argnums=0,
    static_argnames=('auxiliary_weight', 'axis_name'))


def train_step(state: TrainState, batch: Batch, *,
               drop_path_rate: float | jax.Array = 0.,
               auxiliary_weight: float = 0.4
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One jitted training step: ``(state, batch) -> (state, metrics)``.

  See :func:`train_step_fn`. ``drop_path_rate`` is passed to the compiled
  step as a float32 array, so every value (0, 0.1, a Python int or float)
  reuses one compiled program; ``auxiliary_weight`` is a compile-time
  constant. The input state's buffers are donated: keep
  using the returned state.
  """
  return _jitted_train_step(
      state, batch, drop_path_rate=jnp.asarray(drop_path_rate, jnp.float32),
      auxiliary_weight=auxiliary_weight)
