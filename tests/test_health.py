"""Search health: the Hessian eigenvalue, the architecture signals and the
DARTS-ES rule, each against an independent computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts.health import early_stop, hessian, signals
from jaxdarts.core.step import loss_fn
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from tiny import random_batch, tiny_model

# One node per cell keeps the float64 programs quick to compile.
ONE_NODE = jaxdarts.SearchSpace(
    ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3'), num_nodes=1)


def f64(tree):
  return jax.tree.map(
      lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating)
      else x, tree)


def test_lanczos_finds_the_largest_not_the_largest_magnitude_eigenvalue():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    # A dominant negative eigenvalue, a cluster, and a rank-deficient part.
    spectrum = np.concatenate([[-9.0, 3.0, 2.9, 2.5], np.zeros(26)])
    matrix = jnp.asarray((q * spectrum) @ q.T)
    top = hessian.lanczos_max_eigenvalue(
        lambda v: matrix @ v, 30, iterations=12, rng=jax.random.key(1),
        dtype=jnp.float64)
    np.testing.assert_allclose(float(top), 3.0, rtol=1e-10)


def test_lanczos_survives_an_invariant_krylov_space():
  """A rank-one matrix: the residual vanishes after one step; the restart
  keeps the Ritz values eigenvalues of the matrix."""
  with jax.enable_x64(True):
    u = jnp.asarray(np.random.default_rng(1).normal(size=8))
    matrix = -jnp.outer(u, u)  # One eigenvalue -||u||^2, the rest 0.
    top = hessian.lanczos_max_eigenvalue(
        lambda v: matrix @ v, 8, iterations=8, rng=jax.random.key(2),
        dtype=jnp.float64)
    assert np.isfinite(float(top))
    assert abs(float(top)) < 1e-10


def test_eigenvalue_matches_the_dense_hessian_of_a_tiny_supernet():
  with jax.enable_x64(True):
    model = tiny_model(space=ONE_NODE)
    batch = random_batch(3)
    state = jaxdarts.create_search_state(
        jax.random.key(0), model, batch['image'], num_steps=10,
        alpha_init_scale=0.5)
    state = state.replace(params=f64(state.params),
                          batch_stats=f64(state.batch_stats),
                          alphas=f64(state.alphas))
    batch = f64(batch)
    flat, unravel = jax.flatten_util.ravel_pytree(state.alphas)
    assert flat.size == 16 and flat.dtype == jnp.float64
    loss = lambda a: loss_fn(state, batch)(state.params, unravel(a))[0]
    dense = jax.jit(jax.hessian(loss))(flat)
    expected = np.linalg.eigvalsh(np.asarray(dense))[-1]
    got = hessian.hessian_max_eigenvalue(state, batch, iterations=10)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), expected, rtol=1e-4)


# -- DARTS-ES -----------------------------------------------------------------
# Evaluations at the ends of epochs 1, 3, 5, ... (every 2 epochs); the n-th
# (1-based) is at epoch 2n - 1.


def run_rule(eigenvalue_at, rule=early_stop.EarlyStopRule(), epochs=50):
  """Feeds the rule epoch by epoch; ``(epoch, decision)`` of the first stop
  or ``(None, None)``."""
  evaluations = []
  for epoch in range(epochs):
    if rule.evaluates(epoch):
      evaluations.append((epoch, eigenvalue_at(epoch)))
      decision = early_stop.decide(evaluations, rule)
      if decision.stop:
        return epoch, decision
  return None, None


def test_local_averages_by_hand():
  assert early_stop.local_averages([1, 2, 3, 4, 5, 6, 7], 5) == [
      2.0, 2.5, 3.0, 4.0, 5.0]  # Means of 3, 4, then the last 5 values.


def test_rule_stops_after_a_jump_and_keeps_the_epoch_before():
  # Epochs <= 29 have eigenvalue 1, then 3: at epoch 31 the local average
  # is (1 + 1 + 1 + 1 + 3) / 5 = 1.4 > 1.3 times that of 4 evaluations
  # earlier (1); it stands for epoch 31 - 4 = 27, the kept one 27 - 8 = 19.
  epoch, decision = run_rule(lambda e: 1.0 if e <= 29 else 3.0)
  assert epoch == 31
  assert decision.stop_epoch == 19
  np.testing.assert_allclose(decision.ratio, 1.4)


def test_rule_waits_for_the_average_to_exceed_the_factor():
  # A jump to 2: 1.2 at epoch 31 (no stop), 1.4 at epoch 33.
  epoch, decision = run_rule(lambda e: 1.0 if e <= 29 else 2.0)
  assert (epoch, decision.stop_epoch) == (33, 21)
  assert not early_stop.decide([(2 * n - 1, 1.0) for n in range(1, 26)]).stop


def test_rule_never_keeps_an_epoch_before_start_epoch():
  # Doubling from the start: the first epoch allowed is 23, keeping 11.
  epoch, decision = run_rule(lambda e: 2.0 ** e)
  assert (epoch, decision.stop_epoch) == (23, 11)
  rule = early_stop.EarlyStopRule(start_epoch=15)
  epoch, decision = run_rule(lambda e: 2.0 ** e, rule)
  assert (epoch, decision.stop_epoch) == (27, 15)


def test_rule_on_a_constructed_loss_whose_curvature_grows():
  """End to end with Lanczos: L_t(a) = c(t) / 2 a^T M a, lambda_max(M) = 1,
  so the dominant eigenvalue is c(t): 1 until epoch 29, then 3."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    m = jnp.asarray((q * np.linspace(-0.5, 1.0, 12)) @ q.T)
    a0 = jnp.asarray(rng.normal(size=12))

    @jax.jit
    def eigenvalue(c):
      loss = lambda a: 0.5 * c * a @ m @ a
      hvp = lambda v: jax.jvp(jax.grad(loss), (a0,), (v,))[1]
      return hessian.lanczos_max_eigenvalue(
          hvp, 12, iterations=12, rng=jax.random.key(0), dtype=jnp.float64)

    epoch, decision = run_rule(
        lambda e: float(eigenvalue(1.0 if e <= 29 else 3.0)))
  assert (epoch, decision.stop_epoch) == (31, 19)


def test_rule_constants_come_from_the_config():
  rule = early_stop.EarlyStopRule.from_config(
      {'enabled': True, 'every': 1, 'window': 3, 'delta': 2, 'factor': 2.0,
       'start_epoch': 0})
  assert rule == early_stop.EarlyStopRule(1, 3, 2, 2.0, 0)
  with pytest.raises(ValueError, match='early_stop.window'):
    early_stop.EarlyStopRule(window=0)


# -- Architecture signals -----------------------------------------------------


def test_architecture_signals_by_hand():
  weights = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])
  genotype = Genotype(
      normal=[('skip_connect', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0),
              ('skip_connect', 2)], normal_concat=[2, 3],
      reduce=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0),
              ('dil_conv_3x3', 1)], reduce_concat=[2, 3])
  got = signals.architecture_signals(
      {'normal': weights, 'reduce': 2 * weights}, genotype)
  entropy = (-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
             + np.log(3)) / 2
  assert got['normal_skip_ops'] == 2 and got['normal_pool_ops'] == 1
  assert got['normal_param_free_ops'] == 3
  assert got['reduce_skip_ops'] == 0 and got['reduce_pool_ops'] == 2
  for cell in ('normal', 'reduce'):  # Rows are normalised first.
    np.testing.assert_allclose(got[f'{cell}_edge_entropy'], entropy)
    np.testing.assert_allclose(got[f'{cell}_edge_margin'], (0.5 + 0) / 2)


# -- The workdir side: resume, plot, report -------------------------------------


def health_workdir(root):
  """The hand-made search workdir plus health records and a DARTS-ES stop."""
  from search_workdir import write_search_workdir  # pylint: disable=g-import-not-at-top
  from jaxdarts.run.workdir import Workdir  # pylint: disable=g-import-not-at-top
  write_search_workdir(root)
  workdir = Workdir(root)
  for epoch in range(4):
    workdir.append_metrics(100 * epoch + 99, epoch, {
        'hessian_eigenvalue': 0.1 * 2 ** epoch, 'normal_skip_ops': epoch,
        'normal_pool_ops': 1, 'reduce_skip_ops': 0, 'reduce_pool_ops': 3,
        'normal_edge_entropy': 1.3, 'reduce_edge_entropy': 1.2,
        'normal_edge_margin': 0.1 * epoch, 'reduce_edge_margin': 0.05})
  workdir.write_early_stop({'epoch': 3, 'stop_epoch': 1, 'ratio': 4.0,
                            'rule': {}})
  return workdir


def test_search_health_reads_back_the_rules_evaluations(tmp_path):
  from jaxdarts.run.health import SearchHealth  # pylint: disable=g-import-not-at-top
  from experiments.configs import search as configs  # pylint: disable=g-import-not-at-top
  workdir = health_workdir(tmp_path)
  config = configs.get_config('tiny')
  config.search.early_stop.update(enabled=True, every=2)
  health = SearchHealth(config, None, None, workdir)
  assert health.stopped()['stop_epoch'] == 1
  health.start(3)  # Resuming at epoch 3: epoch 1 was evaluated (every 2).
  assert health.evaluations == [(1, 0.2)]
  assert health.evaluates(3) and not health.evaluates(2)
  config.search.early_stop.enabled = False
  assert SearchHealth(config, None, None, workdir).stopped() is None


def test_report_shows_the_health_plot_and_the_stop(tmp_path):
  from jaxdarts.viz import health as viz_health  # pylint: disable=g-import-not-at-top
  from jaxdarts.viz import report  # pylint: disable=g-import-not-at-top
  workdir = health_workdir(tmp_path)
  series = viz_health.health_series(tmp_path)
  assert series['hessian_eigenvalue'] == ([0, 1, 2, 3], [0.1, 0.2, 0.4, 0.8])
  # The sections, not the whole page (its network size takes seconds).
  page = (report._health_section(workdir, tmp_path)  # pylint: disable=protected-access
          + report._history_section(workdir, {}))  # pylint: disable=protected-access
  assert (tmp_path / 'health.png').stat().st_size > 0
  assert 'Search health' in page and 'alt="search health"' in page
  assert 'DARTS-ES stopped the search after epoch 3' in page
  assert 'that of the stop epoch, 1.' in page
