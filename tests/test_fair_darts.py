"""FairDARTS: sigmoid mixing, the zero-one loss, the threshold derivation,
and an exact hypergradient through them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdarts
from experiments.configs import search as search_configs
from jaxdarts import methods
from jaxdarts.methods.fair_darts import FairDARTS
from tiny import MicroSupernet, random_batch

LN3 = float(np.log(3.))


def logit(p):
  return float(np.log(p / (1. - p)))


def test_mixing_is_an_independent_sigmoid_per_op():
  arch = {'normal': jnp.array([[0., LN3, -LN3]])}
  weights = FairDARTS().relax(arch, rng=jax.random.key(0))
  np.testing.assert_allclose(weights['normal'], [[0.5, 0.75, 0.25]],
                             rtol=1e-6)


def test_zero_one_term_and_its_gradient_by_hand():
  # sigmoids 0.5, 0.75 | 0.25, 0.5: squared distances to 0.5 are
  # 0, 1/16, 1/16, 0, so L01 = -(1/8) / 4 = -1/32 and w01 * L01 = -0.3125.
  arch = {'normal': jnp.array([[0., LN3]]), 'reduce': jnp.array([[-LN3, 0.]])}
  method = methods.get('fair_darts', num_steps=10)
  loss = jnp.float32(1.5)
  objective = method.arch_objective(loss, arch, step=jnp.int32(3))
  np.testing.assert_allclose(objective, 1.5 - 0.3125, rtol=1e-6)
  # d/da [-10 mean (s - 1/2)^2] = -10 * 2/4 * (s - 1/2) * s (1 - s).
  grads = jax.grad(lambda a: method.arch_objective(loss, a, step=0))(arch)
  by_hand = lambda s: -10. * 0.5 * (s - 0.5) * s * (1. - s)
  np.testing.assert_allclose(grads['normal'], [[0., by_hand(0.75)]],
                             atol=1e-7)
  np.testing.assert_allclose(grads['reduce'], [[by_hand(0.25), 0.]],
                             atol=1e-7)
  assert by_hand(0.75) < 0 < by_hand(0.25)  # Pushed away from 1/2.


def test_derivation_keeps_ops_above_the_threshold_two_edges_per_node():
  space = jaxdarts.SearchSpace(
      ('max_pool_3x3', 'skip_connect', 'sep_conv_3x3'), num_nodes=2)
  sig = {
      'normal': [[0.90, 0.10, 0.20],    # node 0, input 0: max_pool kept
                 [0.30, 0.86, 0.10],    # node 0, input 1: skip kept
                 [0.50, 0.60, 0.70],    # node 1, input 0: third, not ranked
                 [0.20, 0.30, 0.95],    # node 1, input 1: sep_conv kept
                 [0.84, 0.10, 0.10]],   # node 1, input 2: below 0.85
      'reduce': [[0.50, 0.52, 0.51]] * 5,  # nothing reaches 0.85
  }
  arch = {cell: jnp.array([[logit(p) for p in row] for row in rows],
                          jnp.float32) for cell, rows in sig.items()}
  method = FairDARTS()
  sparse = method.sparse_cells(arch, space)
  assert sparse['normal'] == [[('max_pool_3x3', 0), ('skip_connect', 1)],
                              [('sep_conv_3x3', 1)]]
  assert sparse['reduce'] == [[], []]
  # The genotype keeps the same two edges per node, below threshold too.
  genotype = method.derive(arch, space)
  assert genotype.normal == (('max_pool_3x3', 0), ('skip_connect', 1),
                             ('sep_conv_3x3', 1), ('max_pool_3x3', 2))
  assert genotype.reduce == (('skip_connect', 0), ('skip_connect', 1),
                             ('skip_connect', 0), ('skip_connect', 1))
  dropped = method.below_threshold(arch, space)
  assert dropped['normal'] == [(1, ('max_pool_3x3', 2))]
  assert len(dropped['reduce']) == 4
  assert FairDARTS(threshold=0.8).sparse_cells(arch, space)['normal'][1] == [
      ('sep_conv_3x3', 1), ('max_pool_3x3', 2)]


LR = 0.1


def test_exact_hypergradient_equals_autodiff_of_the_unrolled_objective():
  """One real step with the exact hypergradient and SGD(1) on the alphas:
  the alphas move by minus ``d/da [L_val(w'(a), a) + 10 L01(a)]``, with
  ``w'(a) = w - LR grad_w L_train(w, a)`` written out here (float64)."""
  with jax.enable_x64(True):
    model = MicroSupernet()
    f64 = lambda t: jax.tree.map(lambda x: x.astype(jnp.float64), t)
    train, val = ({'image': f64(b['image']), 'label': b['label']}
                  for b in (random_batch(0), random_batch(1)))
    weight_tx, arch_tx = optax.sgd(LR), optax.sgd(1.)
    state = jaxdarts.create_search_state(
        jax.random.key(0), model, train['image'], method=FairDARTS(),
        weight_tx=weight_tx, weight_lr=LR, arch_tx=arch_tx,
        hypergradient='exact')
    params = f64(state.params)
    alphas = jax.tree.map(
        lambda a: jnp.asarray(np.random.default_rng(3).normal(size=a.shape)),
        state.alphas)
    state = state.replace(
        params=params, batch_stats=f64(state.batch_stats), alphas=alphas,
        weight_opt_state=weight_tx.init(params),
        arch_opt_state=arch_tx.init(alphas))

    def loss(p, a, batch):
      logits, _ = model.apply(
          {'params': p, 'batch_stats': state.batch_stats}, batch['image'],
          jax.tree.map(jax.nn.sigmoid, a), train=True,
          mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, batch['label']).mean()

    def objective(p, a):
      sig = jnp.concatenate([jax.nn.sigmoid(x).ravel()
                             for x in jax.tree.leaves(a)])
      return loss(p, a, val) - 10. * jnp.mean((sig - 0.5) ** 2)

    @jax.jit
    def references(a):
      def unrolled(a):
        grads = jax.grad(loss)(params, a, train)
        return objective(jax.tree.map(lambda w, g: w - LR * g, params, grads),
                         a)
      return jax.grad(unrolled)(a), jax.grad(objective, 1)(params, a)

    unrolled_grad, first_order_grad = references(alphas)
    new, _ = jaxdarts.search_step(jax.tree.map(jnp.copy, state), train, val)
    for cell in ('normal', 'reduce'):
      np.testing.assert_allclose(new.alphas[cell],
                                 alphas[cell] - unrolled_grad[cell],
                                 rtol=0, atol=1e-10)
      # The second-order term is not negligible here.
      assert np.abs(unrolled_grad[cell] - first_order_grad[cell]).max() > 1e-6


def test_the_preset_has_no_zero_op():
  config = search_configs.get_config('fair_darts')
  assert 'none' not in config.model.primitives
  assert config.search.method == 'fair_darts'
  assert config.method.zero_one_weight == 10.
  assert config.method.threshold == 0.85



def test_nb201_derivation_never_takes_the_zero_op():
  """One op per edge: the strongest non-'none' sigmoid, however large the
  zero op's (it weighs a zero output)."""
  space = jaxdarts.spaces.get('nb201', primitives=(
      'none', 'skip_connect', 'nor_conv_3x3'), num_nodes=3)
  probs = np.array([[0.99, 0.2, 0.6], [0.99, 0.7, 0.1], [0.1, 0.3, 0.2]])
  alphas = np.log(probs / (1 - probs))
  genotype = methods.get('fair_darts').derive({'cell': alphas}, space)
  assert genotype.ops == ('nor_conv_3x3', 'skip_connect', 'skip_connect')
