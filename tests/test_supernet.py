"""The supernet matches the reference DARTS search network."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts.spaces.darts_cnn import ops
from jaxdarts.spaces.darts_cnn import supernet
from jaxdarts.spaces.darts_cnn.cell import MixedOp
from tiny import TINY_SPACE, random_batch, softmax, tiny_model


def abstract_variables(model, shape):
  weights = softmax(model.init_alphas(jax.random.key(1)))
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros(shape), weights, train=False))


def test_darts_supernet_has_the_reference_weight_count():
  # C=16, 8 cells, 10 classes, 32x32x3: the reference PyTorch model_search.py
  # Network has 1,930,618 weights (alphas excluded).
  variables = abstract_variables(jaxdarts.SearchNetwork(10), (2, 32, 32, 3))
  assert sum(p.size for p in jax.tree.leaves(variables['params'])) == 1_930_618
  assert 'alphas' not in str(jax.tree_util.tree_structure(variables))


def test_space_shapes_and_alpha_init():
  space = jaxdarts.DARTS_SPACE
  assert space.primitives == ('none', 'max_pool_3x3', 'avg_pool_3x3',
                              'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5',
                              'dil_conv_3x3', 'dil_conv_5x5')
  assert space.num_edges == 14 and space.alpha_shape == (14, 8)
  alphas = space.init_alphas(jax.random.key(0))
  assert set(alphas) == {'normal', 'reduce'}
  assert alphas['normal'].shape == (14, 8)
  assert 0 < float(jnp.std(alphas['normal'])) < 3e-3
  assert jaxdarts.SearchSpace(num_nodes=3).alpha_shape == (9, 8)
  assert space.edges[:5] == ((0, 0), (0, 1), (1, 0), (1, 1), (1, 2))


@pytest.fixture(scope='module')
def tiny():
  """A tiny supernet, its variables and jitted train/eval forward passes."""
  model = tiny_model()
  batch = random_batch(0)
  alphas = model.init_alphas(jax.random.key(1))
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0), batch['image'], softmax(alphas))
  train = jax.jit(functools.partial(model.apply, train=True,
                                    mutable=['batch_stats']))
  evaluate = jax.jit(functools.partial(model.apply, train=False))
  return batch, alphas, variables, train, evaluate


def test_forward_shapes_and_batch_stats_update(tiny):
  batch, alphas, variables, train, evaluate = tiny
  logits, updates = train(variables, batch['image'], softmax(alphas))
  assert logits.shape == (8, 4)
  assert np.isfinite(np.asarray(logits)).all()
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         variables['batch_stats'], updates['batch_stats'])
  assert any(jax.tree.leaves(changed))
  assert evaluate(variables, batch['image'], softmax(alphas)).shape == (8, 4)


def test_mixing_weights_are_an_argument_that_changes_the_output(tiny):
  batch, alphas, variables, _, evaluate = tiny
  pool_only = jax.tree.map(lambda a: a.at[:, 1].set(10.), alphas)
  a = evaluate(variables, batch['image'], softmax(alphas))
  b = evaluate(variables, batch['image'], softmax(pool_only))
  assert not np.allclose(a, b)


def test_bad_mixing_weights_name_the_problem(tiny):
  batch, alphas, variables, _, evaluate = tiny
  wrong = softmax(jaxdarts.DARTS_SPACE.init_alphas(jax.random.key(0)))
  with pytest.raises(ValueError, match=r"mixing weights\['normal'\] have "
                     r'shape \(14, 8\)'):
    evaluate(variables, batch['image'], wrong)
  with pytest.raises(ValueError, match='mixing weights must be a dict with '
                     'keys'):
    evaluate(variables, batch['image'], softmax({'normal': alphas['normal']}))


def test_unknown_op_is_refused():
  model = tiny_model(space=jaxdarts.SearchSpace(('none', 'conv_9x9')))
  with pytest.raises(ValueError, match="Unknown operation 'conv_9x9'"):
    abstract_variables(model, (2, 8, 8, 3))


@pytest.mark.parametrize('stride', [1, 2])
def test_pools_match_reference_semantics(stride):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  pads = ((1, 1), (1, 1))
  np.testing.assert_allclose(
      ops.max_pool(x, stride),
      nn.max_pool(x, (3, 3), (stride, stride), padding=pads), rtol=1e-6)
  np.testing.assert_allclose(
      ops.avg_pool(x, stride),
      nn.avg_pool(x, (3, 3), (stride, stride), padding=pads,
                  count_include_pad=False), rtol=1e-5)


def test_mixed_op_is_the_weighted_sum_of_its_ops():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  prims = TINY_SPACE.primitives
  weights = jnp.array([0.1, 0.2, 0.3, 0.4])
  mixed = MixedOp(prims, 4, 1, train=True)
  v = mixed.init(jax.random.key(0), x, weights)
  got, _ = mixed.apply(v, x, weights, mutable=['batch_stats'])
  edge = ops.EdgeOps(prims, 4, 1, True, affine=False, pool_bn=True)
  outs, _ = edge.apply({'params': v['params']['ops'],
                        'batch_stats': v['batch_stats']['ops']}, x,
                       mutable=['batch_stats'])
  expected = 0.2 * outs['max_pool_3x3'] + 0.3 * x + 0.4 * outs['sep_conv_3x3']
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert 'none' not in outs


@pytest.mark.parametrize('stride', [1, 2])
def test_edge_ops_equal_a_plain_relu_conv_bn_composition(stride):
  """The batched executor computes each op as the reference defines it."""
  prims = ('sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5')
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  edge = ops.EdgeOps(prims, 3, stride, True, affine=False)
  variables = jax.jit(edge.init)(jax.random.key(1), x)
  params = variables['params']
  outs, _ = jax.jit(functools.partial(edge.apply, mutable=['batch_stats']))(
      variables, x)

  def bn(y):  # train mode, no affine
    mean, var = y.mean((0, 1, 2)), y.var((0, 1, 2))
    return (y - mean) / jnp.sqrt(var + 1e-5)

  # Stacked 1x1 kernels follow the executor's order: by (kernel, dilation).
  order0 = ['sep_conv_3x3', 'dil_conv_3x3', 'sep_conv_5x5', 'dil_conv_5x5']
  order1 = ['sep_conv_3x3', 'sep_conv_5x5']

  def block(y, name, b, s, d, order):
    y = ops.depthwise_conv(jax.nn.relu(y), params[f'{name}_depthwise_{b}'],
                           stride=s, dilation=d, impl='conv')
    return bn(y @ params[f'pointwise_{b}'][order.index(name)])

  for name, d in [('dil_conv_3x3', 2), ('dil_conv_5x5', 2)]:
    expected = block(x, name, 0, stride, d, order0)
    np.testing.assert_allclose(outs[name], expected, rtol=1e-4, atol=1e-4)
  for name in order1:
    expected = block(block(x, name, 0, stride, 1, order0), name, 1, 1, 1,
                     order1)
    np.testing.assert_allclose(outs[name], expected, rtol=1e-4, atol=1e-4)


def test_stages_with_three_or_more_normal_cells_are_scanned():
  runs = {layers: jaxdarts.SearchNetwork(10, layers=layers).cell_runs()
          for layers in (8, 11, 20)}
  assert runs[8] == [(i,) for i in range(8)]  # two per stage: unrolled
  assert runs[11] == [(0, 1, 2), (3,), (4, 5, 6), (7,), (8, 9, 10)]
  assert runs[20] == [tuple(range(6)), (6,), tuple(range(7, 13)), (13,),
                      tuple(range(14, 20))]
  assert jaxdarts.SearchNetwork(10, layers=20, scan_cells=False).cell_runs(
  ) == [(i,) for i in range(20)]


def test_scanned_and_rematerialised_cells_compute_the_same_network(
    monkeypatch):
  # Scanning two-cell stages (not done by default) keeps the test small.
  # With 7 cells the stages' normal cells are then (0, 1), (3,) and (5, 6);
  # stage 1 receives the stem (3C channels, not 4C), stage 3 a factorized
  # reduce: both ways into a scan that preprocesses outside it.
  monkeypatch.setattr(supernet, 'MIN_SCAN', 2)
  space = jaxdarts.SearchSpace(('none', 'avg_pool_3x3', 'skip_connect'), 2)
  kwargs = dict(channels=4, layers=7, space=space, stem_multiplier=3)
  plain = jaxdarts.SearchNetwork(4, scan_cells=False, **kwargs)
  # Both transformations at once: each alone is the special case.
  scanned = jaxdarts.SearchNetwork(4, remat_cells=True, **kwargs)
  assert scanned.cell_runs() == [(0, 1), (2,), (3,), (4,), (5, 6)]
  batch = random_batch(0, batch=4)
  alphas = plain.init_alphas(jax.random.key(1), scale=1.0)
  variables = jax.jit(functools.partial(plain.init, train=False))(
      jax.random.key(0), batch['image'], softmax(alphas))
  assert jax.tree.structure(variables) == jax.tree.structure(jax.eval_shape(
      functools.partial(scanned.init, train=False), jax.random.key(0),
      batch['image'], softmax(alphas)))

  def results(model):
    def loss(params, alphas):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': variables['batch_stats']},
          batch['image'], softmax(alphas), train=True, mutable=['batch_stats'])
      xent = optax.softmax_cross_entropy_with_integer_labels(
          logits, batch['label']).mean()
      return xent, updates['batch_stats']
    evaluation = jax.jit(functools.partial(model.apply, train=False))(
        variables, batch['image'], softmax(alphas))
    return evaluation, jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(
        variables['params'], alphas)

  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5,
                                 atol=1e-6), results(scanned), results(plain))


def _remat_pair(space, layers, batch):
  """Plain and rematerialised supernets, variables and alphas."""
  models = [jaxdarts.SearchNetwork(4, channels=4, layers=layers, space=space,
                                   remat_cells=remat) for remat in (False,
                                                                    True)]
  alphas = space.init_alphas(jax.random.key(1), scale=1.0)
  variables = jax.jit(functools.partial(models[0].init, train=False))(
      jax.random.key(0), batch['image'], softmax(alphas))

  def loss(model, params, alphas):
    logits, _ = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']},
        batch['image'], softmax(alphas), train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()

  return [functools.partial(loss, m) for m in models], variables, alphas


def test_rematerialised_cells_hold_less_memory():
  """The compiled gradient keeps one cell's activations at a time (XLA's
  own count of its temporary buffers)."""
  space = jaxdarts.SearchSpace(('none', 'avg_pool_3x3', 'skip_connect'), 2)
  losses, variables, alphas = _remat_pair(space, 3, random_batch(
      0, batch=32, size=16))
  plain, remat = (jax.jit(jax.grad(loss, (0, 1))).lower(
      variables['params'], alphas).compile().memory_analysis().temp_size_in_bytes
                  for loss in losses)
  assert remat < 0.75 * plain, (remat, plain)


def test_rematerialised_cells_support_forward_over_reverse():
  """The JVP of the alpha gradient along the weights (the `exact`
  hypergradient's mixed term) through the cells' custom VJP."""
  space = jaxdarts.SearchSpace(('none', 'avg_pool_3x3', 'skip_connect'), 1)
  losses, variables, alphas = _remat_pair(space, 3, random_batch(0, batch=4))
  params = variables['params']
  tangent = jax.tree.map(
      lambda p: jnp.sin(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
      params)

  def mixed_term(loss):
    alpha_grad = lambda w: jax.grad(loss, 1)(w, alphas)
    return jax.jit(lambda w: jax.jvp(alpha_grad, (w,), (tangent,)))(params)

  plain, remat = map(mixed_term, losses)
  assert np.abs(jax.tree.leaves(plain[1])[0]).max() > 1e-3  # Not trivial.
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5,
                                 atol=1e-6), remat, plain)


def test_bfloat16_compute_stays_close_to_float32():
  batch = random_batch(0)
  space = jaxdarts.SearchSpace(('none', 'sep_conv_3x3'), 1)
  models = {dtype: jaxdarts.SearchNetwork(4, channels=4, layers=3,
                                          space=space, compute_dtype=dtype)
            for dtype in (jnp.float32, jnp.bfloat16)}
  alphas = space.init_alphas(jax.random.key(1), scale=1.0)
  variables = jax.jit(functools.partial(models[jnp.float32].init,
                                        train=False))(
                                            jax.random.key(0), batch['image'],
                                            softmax(alphas))

  def loss(model, params, alphas):
    logits, _ = model.apply({**variables, 'params': params}, batch['image'],
                            softmax(alphas), train=True,
                            mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()

  results = {}
  for dtype, model in models.items():
    fn = functools.partial(loss, model)
    program = str(jax.make_jaxpr(fn)(variables['params'], alphas))
    assert ('bf16[8,8,8,4]' in program) == (dtype == jnp.bfloat16)
    results[dtype] = jax.jit(jax.value_and_grad(fn, (0, 1)))(
        variables['params'], alphas)
  (l32, g32), (l16, g16) = results[jnp.float32], results[jnp.bfloat16]
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
  np.testing.assert_allclose(l16, l32, rtol=2e-2)
  flat32, flat16 = (jnp.concatenate([g.ravel() for g in jax.tree.leaves(g)])
                    for g in (g32, g16))
  cosine = flat16 @ flat32 / jnp.linalg.norm(flat16) / jnp.linalg.norm(flat32)
  assert cosine > 0.95
