"""How far are the paper's finite differences from the exact hypergradient?

DARTS's second-order hypergradient (eq. 7) needs the mixed term
``grad2_{a,w} L_train(w, a) . v``; the paper (eq. 8) and its code take it by
central differences at ``w +- eps v``, ``eps = 0.01 / ||v||``
(`jaxdarts.core.hypergradient.finite_difference`), jaxdarts also by
forward-over-reverse autodiff (``exact``). On identical weights, batches
and alphas this measures

* ``rel_l2``: ``||g_fd - g_exact|| / ||g_exact||`` of the hypergradients;
* ``cosine``: their cosine;
* ``sign_flips``: the fraction of alphas whose Adam step (the state's alpha
  optimizer, from its current moments) has another sign with ``g_fd`` than
  with ``g_exact``;
* ``fo_rel_l2``: the first-order gradient's distance to ``exact``, for scale.

Two parts (``--parts``):

* ``paper``: the paper's supernet (C=16, 8 cells, 4 nodes, the 8 DARTS ops)
  on random 32x32x3 images at initialisation (``--batch_size``, shrink with
  ``--channels``, ``--layers``, ``--image_size``);
* ``digits``, ``tiny``: the presets of ``experiments/configs/search.py``,
  searched (first order, as the presets do) with the state measured on the
  next batch pair at step 0 and after every ``--every`` epochs.

``--eigen`` also times `jaxdarts.health.hessian.hessian_max_eigenvalue` on
the paper-size supernet (seconds per evaluation, after compiling)::

    PYTHONPATH=. python benchmarks/fd_error.py --parts=paper,digits,tiny \\
        --batch_size=8 --eigen
"""

import json
import time

from absl import app
from absl import flags

flags.DEFINE_list('parts', ['paper', 'digits', 'tiny'], 'What to measure.')
flags.DEFINE_integer('channels', 16, 'paper: initial channels C.')
flags.DEFINE_integer('layers', 8, 'paper: cells.')
flags.DEFINE_integer('image_size', 32, 'paper: image height and width.')
flags.DEFINE_integer('batch_size', 64, 'paper: batch size (train and val).')
flags.DEFINE_integer('every', 2, 'presets: epochs between measurements.')
flags.DEFINE_integer('epochs', 0, 'presets: epochs to search (0: preset).')
flags.DEFINE_bool('eigen', False, 'paper: time the Hessian eigenvalue.')
flags.DEFINE_integer('eigen_iterations', 20, 'Lanczos steps per eigenvalue.')
FLAGS = flags.FLAGS


def bilevel_problem(state, train, val):
  """The step's bilevel problem at ``state`` (as `jaxdarts.core.step`)."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from jaxdarts.core import hypergradient as hg  # pylint: disable=g-import-not-at-top
  from jaxdarts.core.step import loss_fn  # pylint: disable=g-import-not-at-top
  step = state.step
  _, step_rng = jax.random.split(state.rng)
  arch_rng, _ = jax.random.split(step_rng)
  val_loss = loss_fn(state, val, rng=arch_rng)

  def arch_objective(params, alphas):
    loss, aux = val_loss(params, alphas)
    return state.method.arch_objective(loss, alphas, step=step), (loss, aux)

  def virtual_step(params, grads):
    updates, _ = state.weight_tx.update(grads, state.weight_opt_state, params)
    return optax.apply_updates(params, updates)

  return hg.BilevelProblem(
      train_loss=loss_fn(state, train, rng=arch_rng), val_loss=arch_objective,
      virtual_step=virtual_step, xi=state.weight_lr(step))


def _hypergradient(name, state, train, val):
  """Hypergradient ``name`` of the step's bilevel problem at ``state``."""
  from jaxdarts.core import hypergradient as hg  # pylint: disable=g-import-not-at-top
  problem = bilevel_problem(state, train, val)
  return hg.get(name)(problem, state.params, state.alphas)[0]


def _compare(state, grads, xi):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.flatten_util import ravel_pytree  # pylint: disable=g-import-not-at-top
  flat = {k: ravel_pytree(g)[0] for k, g in grads.items()}
  steps = {k: ravel_pytree(state.arch_tx.update(
      g, state.arch_opt_state, state.alphas)[0])[0] for k, g in grads.items()}
  exact = flat['exact']
  norm = jnp.linalg.norm
  rel = lambda g: norm(g - exact) / norm(exact)
  return {
      'rel_l2': rel(flat['finite_difference']),
      'cosine': flat['finite_difference'] @ exact / (
          norm(flat['finite_difference']) * norm(exact)),
      'sign_flips': jnp.mean(jnp.sign(steps['finite_difference'])
                             != jnp.sign(steps['exact'])),
      'fo_rel_l2': rel(flat['first_order']),
      'exact_norm': norm(exact),
      'xi': jnp.asarray(xi),
  }


def compare(state, train, val):
  """The figures at ``state``; each hypergradient is its own program (one
  program of all three does not compile in 23 GiB at the paper's size)."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  grads = {name: jax.jit(functools.partial(_hypergradient, name))(
      state, train, val) for name in ('finite_difference', 'exact',
                                      'first_order')}
  xi = bilevel_problem(state, train, val).xi
  return {k: float(v) for k, v in jax.jit(_compare)(state, grads, xi).items()}


def paper_part():
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jaxdarts  # pylint: disable=g-import-not-at-top
  from jaxdarts.health import hessian  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  shape = (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3)
  batch = lambda: {'image': rng.normal(size=shape).astype(np.float32),
                   'label': rng.integers(0, 10, shape[0]).astype(np.int32)}
  model = jaxdarts.SearchNetwork(10, channels=FLAGS.channels,
                                 layers=FLAGS.layers)
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, np.zeros(shape, np.float32), num_steps=19500)
  where = (f'paper C={FLAGS.channels} {FLAGS.layers} cells batch '
           f'{FLAGS.batch_size} {FLAGS.image_size}x{FLAGS.image_size}')
  train, val = batch(), batch()
  start = time.perf_counter()
  result = compare(state, train, val)
  print(json.dumps({'part': where, 'step': 0, **result,
                    'seconds_with_compile': time.perf_counter() - start}),
        flush=True)
  if FLAGS.eigen:
    fn = lambda: hessian.hessian_max_eigenvalue(
        state, val, iterations=FLAGS.eigen_iterations).block_until_ready()
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(2):
      start = time.perf_counter()
      value = float(fn())
      times.append(time.perf_counter() - start)
    print(json.dumps({'part': where, 'eigenvalue': value,
                      'iterations': FLAGS.eigen_iterations,
                      'first_call_s': compile_s, 'seconds': min(times)}),
          flush=True)


def preset_part(name):
  from experiments.configs import search as configs  # pylint: disable=g-import-not-at-top
  from jaxdarts.core.step import search_step  # pylint: disable=g-import-not-at-top
  from jaxdarts.run import search  # pylint: disable=g-import-not-at-top
  config = configs.get_config(name)
  if FLAGS.epochs:
    config.search.epochs = FLAGS.epochs
  halves = search.load_halves(config)
  batches = search.search_batches(config, halves)
  num_steps = config.search.epochs * batches.steps_per_epoch
  state = search.initial_state(config, halves, num_steps)
  for index, (train, val) in enumerate(batches):
    epoch, at_start = divmod(index, batches.steps_per_epoch)
    if at_start == 0 and (epoch % FLAGS.every == 0
                          or epoch == config.search.epochs):
      print(json.dumps({'part': name, 'step': index, 'epoch': epoch,
                        **compare(state, train, val)}), flush=True)
    if epoch == config.search.epochs:
      return
    state, _ = search_step(state, train, val)


def main(argv):
  del argv
  for part in FLAGS.parts:
    if part == 'paper':
      paper_part()
    else:
      preset_part(part)


if __name__ == '__main__':
  app.run(main)
