"""The supernet matches the reference DARTS search network."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdarts
from jaxdarts import ops
from tiny import TINY_SPACE, random_batch, tiny_model


def abstract_variables(model, shape):
  alphas = model.init_alphas(jax.random.key(1))
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros(shape), alphas, train=False))


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
      jax.random.key(0), batch['image'], alphas)
  train = jax.jit(functools.partial(model.apply, train=True,
                                    mutable=['batch_stats']))
  evaluate = jax.jit(functools.partial(model.apply, train=False))
  return batch, alphas, variables, train, evaluate


def test_forward_shapes_and_batch_stats_update(tiny):
  batch, alphas, variables, train, evaluate = tiny
  logits, updates = train(variables, batch['image'], alphas)
  assert logits.shape == (8, 4)
  assert np.isfinite(np.asarray(logits)).all()
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         variables['batch_stats'], updates['batch_stats'])
  assert any(jax.tree.leaves(changed))
  assert evaluate(variables, batch['image'], alphas).shape == (8, 4)


def test_alphas_are_an_argument_that_changes_the_output(tiny):
  batch, alphas, variables, _, evaluate = tiny
  pool_only = jax.tree.map(lambda a: a.at[:, 1].set(10.), alphas)
  a = evaluate(variables, batch['image'], alphas)
  b = evaluate(variables, batch['image'], pool_only)
  assert not np.allclose(a, b)


def test_bad_alphas_name_the_problem(tiny):
  batch, alphas, variables, _, evaluate = tiny
  wrong = jaxdarts.DARTS_SPACE.init_alphas(jax.random.key(0))
  with pytest.raises(ValueError, match=r"alphas\['normal'\] has shape \(14, 8\)"):
    evaluate(variables, batch['image'], wrong)
  with pytest.raises(ValueError, match='keys'):
    evaluate(variables, batch['image'], {'normal': alphas['normal']})


def test_unknown_op_is_refused():
  model = tiny_model(space=jaxdarts.SearchSpace(('none', 'conv_9x9')))
  with pytest.raises(ValueError, match="Unknown operation 'conv_9x9'"):
    abstract_variables(model, (2, 8, 8, 3))


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('kernel,dilation', [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_depthwise_conv_matches_lax_grouped_convolution(kernel, dilation,
                                                        stride):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  k = jax.random.normal(jax.random.key(1), (kernel, kernel, 3))
  pad = dilation * (kernel - 1) // 2
  expected = jax.lax.conv_general_dilated(
      x, k[:, :, None, :], (stride, stride), [(pad, pad)] * 2,
      rhs_dilation=(dilation, dilation),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=3)
  got = ops.depthwise_conv(x, k, stride=stride, dilation=dilation)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


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
  mixed = jaxdarts.supernet.MixedOp(prims, 4, 1, train=True)
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
  params = edge.init(jax.random.key(1), x)['params']
  outs, _ = edge.apply({'params': params, **edge.init(
      jax.random.key(1), x)}, x, mutable=['batch_stats'])

  def bn(y):  # train mode, no affine
    mean, var = y.mean((0, 1, 2)), y.var((0, 1, 2))
    return (y - mean) / jnp.sqrt(var + 1e-5)

  # Stacked 1x1 kernels follow the executor's order: by dilation, then name.
  order0 = ['sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5']
  order1 = ['sep_conv_3x3', 'sep_conv_5x5']

  def block(y, name, b, s, d, order):
    y = ops.depthwise_conv(jax.nn.relu(y), params[f'{name}_depthwise_{b}'],
                           stride=s, dilation=d)
    return bn(y @ params[f'pointwise_{b}'][order.index(name)])

  for name, d in [('dil_conv_3x3', 2), ('dil_conv_5x5', 2)]:
    expected = block(x, name, 0, stride, d, order0)
    np.testing.assert_allclose(outs[name], expected, rtol=1e-4, atol=1e-4)
  for name in order1:
    expected = block(block(x, name, 0, stride, 1, order0), name, 1, 1, 1,
                     order1)
    np.testing.assert_allclose(outs[name], expected, rtol=1e-4, atol=1e-4)
