"""The evaluation networks match the reference DARTS model.py; counting.

The full-size networks are only traced (``jax.eval_shape``,
``jax.make_jaxpr``), never compiled; the compiled checks use a tiny network.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.cost.counting import count_flops, count_params, jaxpr_macs
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.networks import (EvalCell, NetworkCIFAR, NetworkImageNet,
                               drop_path)

DARTS_V2 = genotypes.get('DARTS_V2')

# 3 nodes; concat lists that skip nodes and (normal) include input 1.
G3 = Genotype(
    normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_3x3', 2),
            ('avg_pool_3x3', 0), ('skip_connect', 3), ('sep_conv_3x3', 1)],
    normal_concat=[1, 2, 4],
    reduce=[('max_pool_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 2),
            ('skip_connect', 0), ('avg_pool_3x3', 3), ('dil_conv_5x5', 2)],
    reduce_concat=[3, 4])

# 5 nodes, every intermediate node in the output.
G5 = Genotype(
    normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 2),
            ('max_pool_3x3', 1), ('dil_conv_3x3', 3), ('skip_connect', 0),
            ('avg_pool_3x3', 4), ('sep_conv_3x3', 2), ('skip_connect', 5),
            ('dil_conv_5x5', 1)],
    normal_concat=range(2, 7),
    reduce=[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 2),
            ('avg_pool_3x3', 0), ('sep_conv_5x5', 3), ('max_pool_3x3', 1),
            ('skip_connect', 4), ('dil_conv_3x3', 0), ('sep_conv_3x3', 5),
            ('skip_connect', 1)],
    reduce_concat=range(2, 7))


def abstract_init(model, shape):
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros(shape), train=False))


def abstract_apply(model, shape, train, **kwargs):
  """Output shapes of ``model.apply`` (training returns batch stats too)."""
  variables = abstract_init(model, shape)

  def apply(v, x):
    if not train:
      return model.apply(v, x, train=False, **kwargs)
    return model.apply(v, x, train=True, rngs={'dropout': jax.random.key(1)},
                       mutable=['batch_stats'], **kwargs)[0]

  return jax.eval_shape(apply, variables,
                        jax.ShapeDtypeStruct(shape, jnp.float32))


# ---------------------------------------------------------------------------
# Sizes of the paper's networks.


def test_darts_v2_cifar_has_the_reference_parameter_count():
  # Reference train.py (C=36, 20 cells, auxiliary) logs "param size =
  # 3.349342MB", counting all parameters outside the auxiliary head; the
  # paper's Table 1 says 3.3M.
  variables = abstract_init(NetworkCIFAR(DARTS_V2), (1, 32, 32, 3))
  assert count_params(variables) == 3_349_342
  assert count_params(variables['params']) == 3_349_342
  aux = count_params(variables['params']['auxiliary_head'], exclude=())
  assert count_params(variables, exclude=()) == 3_349_342 + aux
  # The head reads cell 13 (4 * 144 channels): 1x1 conv + BN, 2x2 conv + BN,
  # linear.
  assert aux == 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10


def test_count_params_reads_variables_and_excludes_by_key():
  params = {'a': jnp.zeros((2, 3)), 'aux_head': {'w': jnp.zeros(5)},
            'b': [jnp.zeros(4), jax.ShapeDtypeStruct((7,), jnp.float32)]}
  variables = {'params': params, 'batch_stats': {'mean': jnp.zeros(100)}}
  assert count_params(variables, exclude=()) == 6 + 5 + 4 + 7
  assert count_params(params, exclude=('aux',)) == 6 + 4 + 7
  assert count_params(params) == 6 + 5 + 4 + 7  # no key has 'auxiliary'


def _cell_macs(genotype, cell_type, c_pp, c_p, c, h, reduction):
  """Multiply-adds of one cell by hand: ``h`` is the input resolution of s1.

  Both preprocessings cost ``h*h*C_in*C`` (a factorized reduce is two 1x1
  convolutions to C/2 at half the resolution of a 2x larger s0).
  """
  pairs, concat = genotype.cell(cell_type)
  ho = h // 2 if reduction else h
  macs = h * h * (c_pp + c_p) * c
  for op, src in pairs:
    if op.startswith(('sep_conv', 'dil_conv')):
      k = int(op[-1])
      blocks = 2 if op.startswith('sep') else 1
      macs += blocks * ho * ho * (c * k * k + c * c)
    elif op == 'skip_connect' and reduction and src < 2:
      macs += ho * ho * c * c  # factorized reduce
  return macs, len(concat) * c, ho


def _imagenet_macs_by_hand(genotype, c, layers, num_classes):
  macs = 112 * 112 * (c // 2) * 27 + 56 * 56 * c * (c // 2) * 9
  macs += 28 * 28 * c * c * 9
  c_pp, c_p, c_cur, h = c, c, c, 28
  for i in range(layers):
    reduction = i in (layers // 3, 2 * layers // 3)
    c_cur *= 2 if reduction else 1
    cell, c_out, h = _cell_macs(genotype, 'reduce' if reduction else 'normal',
                                c_pp, c_p, c_cur, h, reduction)
    macs += cell
    c_pp, c_p = c_p, c_out
  return macs + c_p * num_classes


def test_darts_v2_imagenet_parameters_and_multiply_adds():
  # Paper, Table 2 (mobile setting, C=48, 14 cells): 4.7M params, 574M
  # multiply-adds.
  model = NetworkImageNet(DARTS_V2)
  assert count_params(abstract_init(model, (1, 224, 224, 3))) == 4_718_752
  macs = count_flops(model, (1, 224, 224, 3))
  # Counted from the traced network, the conv + linear MACs equal the
  # hand count exactly: 529.9M. The paper's 574M is not reproduced at C=48
  # by this (its stated) convention -- quark0/darts issue #46 reports 523M
  # with conv + fc layers -- but it is within 0.1% of the count at C=50,
  # the reference train_imagenet.py's default --init_channels (checked
  # below), so the paper's figure was most likely measured at C=50.
  assert macs == _imagenet_macs_by_hand(DARTS_V2, 48, 14, 1000) == 529_911_552
  macs_c50 = count_flops(NetworkImageNet(DARTS_V2, channels=50),
                         (1, 224, 224, 3))
  assert macs_c50 == _imagenet_macs_by_hand(DARTS_V2, 50, 14, 1000)
  assert abs(macs_c50 - 574e6) < 0.01 * 574e6


def test_count_flops_counts_convolutions_and_matmuls_only():
  # A grouped convolution (out elements * k * k * in_channels / groups), an
  # einsum depthwise convolution as in ops.py (out elements * k * k) and a
  # dense layer (batch * in * out); pooling, ReLU and the mean are free.

  class Small(nn.Module):

    @nn.compact
    def __call__(self, x, train):
      del train
      x = nn.Conv(8, (3, 3), padding=1, feature_group_count=2)(x)  # 4->8
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
      kernel = self.param('dw', nn.initializers.ones, (3, 3, 8))
      patches = jnp.stack([x] * 9, axis=3).reshape(x.shape[:3] + (3, 3, 8))
      x = jnp.einsum('nhwabc,abc->nhwc', patches, kernel)
      return nn.Dense(5)(x.mean(axis=(1, 2)))

  macs = count_flops(Small(), (2, 6, 6, 4))
  assert macs == (2 * 6 * 6 * 8 * 9 * 2) + (2 * 3 * 3 * 8 * 9) + 2 * 8 * 5


def test_count_flops_recurses_into_scan():

  def body(carry, _):
    return carry @ jnp.ones((3, 3)), None

  jaxpr = jax.make_jaxpr(
      lambda x: jax.lax.scan(body, jax.jit(lambda y: y @ y.T)(x), None,
                             length=4)[0])(jnp.ones((3, 3)))
  assert jaxpr_macs(jaxpr) == 27 + 4 * 27


# ---------------------------------------------------------------------------
# Shapes and structure.


def test_cifar_forward_shapes_with_and_without_auxiliary():
  model = NetworkCIFAR(DARTS_V2, channels=8, layers=5, num_classes=7)
  logits, aux = abstract_apply(model, (2, 32, 32, 3), train=True,
                               drop_path_rate=0.2)
  assert logits.shape == aux.shape == (2, 7)
  assert abstract_apply(model, (2, 32, 32, 3), train=False).shape == (2, 7)
  plain = NetworkCIFAR(DARTS_V2, channels=8, layers=5, num_classes=7,
                       auxiliary=False)
  for size in (8, 16):
    assert abstract_apply(plain, (2, size, size, 3), train=True).shape == (2, 7)
  assert 'auxiliary_head' not in abstract_init(plain, (2, 8, 8, 3))['params']
  with pytest.raises(ValueError, match='auxiliary=False'):
    abstract_apply(model, (2, 16, 16, 3), train=True)


def test_cifar_cell_channels_follow_the_reference():
  variables = abstract_init(NetworkCIFAR(DARTS_V2, channels=8, layers=5),
                            (1, 32, 32, 3))['params']
  # Cell 0 reads the 3C stem; reduction cells at 1 and 3 double C.
  assert variables['stem_conv']['kernel'].shape == (3, 3, 3, 24)
  assert variables['cell_0']['preprocess0']['Dense_0']['kernel'].shape == (
      24, 8)
  # After reduction cell 1, a factorized reduce of cell 0's 4C = 32
  # channels: two 1x1 convolutions to 16 / 2.
  assert variables['cell_2']['preprocess0']['Dense_0']['kernel'].shape == (
      32, 8)
  assert variables['cell_2']['preprocess1']['Dense_0']['kernel'].shape == (
      64, 16)
  assert variables['classifier']['kernel'].shape == (4 * 32, 10)
  assert variables['auxiliary_head']['conv_1x1']['kernel'].shape == (
      1, 1, 4 * 32, 128)
  # The identity (skip_connect at stride 1) has no module; stride 2 does.
  normal = variables['cell_0']
  assert sorted(k for k in normal if k.startswith('edge_')) == [
      f'edge_{k}' for k in range(8) if DARTS_V2.normal[k][0] != 'skip_connect']


def test_imagenet_forward_shapes():
  model = NetworkImageNet(DARTS_V2, channels=8, layers=5, num_classes=11)
  logits, aux = abstract_apply(model, (2, 224, 224, 3), train=True)
  assert logits.shape == aux.shape == (2, 11)
  assert abstract_apply(model, (2, 224, 224, 3), train=False).shape == (2, 11)
  params = abstract_init(model, (1, 224, 224, 3))['params']
  assert 'bn_2x2' not in params['auxiliary_head']  # as the reference code
  assert params['stem0_conv0']['kernel'].shape == (3, 3, 3, 4)
  # Cell 0 reads the 56x56 stem 0 through a factorized reduce.
  assert params['cell_0']['preprocess0']['Dense_0']['kernel'].shape == (8, 4)


@pytest.mark.parametrize('genotype', [G3, G5], ids=['3_nodes', '5_nodes'])
def test_other_node_counts_and_concat_lists_build(genotype):
  model = NetworkCIFAR(genotype, channels=4, layers=5, num_classes=3)
  logits, aux = abstract_apply(model, (2, 32, 32, 3), train=True,
                               drop_path_rate=0.1)
  assert logits.shape == aux.shape == (2, 3)
  params = abstract_init(model, (1, 32, 32, 3))['params']
  # The last cell is normal with C = 16.
  c_last = 16 * len(genotype.normal_concat)
  assert params['classifier']['kernel'].shape == (c_last, 3)


def test_a_reduction_cell_cannot_output_its_inputs():
  bad = G3._replace(reduce_concat=[0, 3])
  with pytest.raises(ValueError, match='reduction cell'):
    abstract_init(NetworkCIFAR(bad, channels=4, layers=3), (1, 8, 8, 3))
  with pytest.raises(ValueError, match='cell_type'):
    cell = EvalCell(G3, 'other', 4, False, False)
    jax.eval_shape(lambda: cell.init(jax.random.key(0), jnp.zeros(
        (1, 4, 4, 4)), jnp.zeros((1, 4, 4, 4)), train=False))


# ---------------------------------------------------------------------------
# Drop path (compiled, on a tiny 3-node network).


def test_drop_path_keeps_or_zeroes_whole_samples():
  x = jnp.arange(1., 1. + 64 * 6).reshape(64, 2, 3)
  y = drop_path(x, 0.5, jax.random.key(0))
  kept = np.asarray(jnp.all(y == 2 * x, axis=(1, 2)))
  dropped = np.asarray(jnp.all(y == 0, axis=(1, 2)))
  assert np.all(kept | dropped) and 0 < kept.sum() < 64
  assert jnp.array_equal(drop_path(x, 0., jax.random.key(0)), x)
  assert jnp.array_equal(drop_path(x, jnp.float32(0.), jax.random.key(1)), x)


@pytest.fixture(scope='module')
def tiny():
  model = NetworkCIFAR(G3, channels=4, layers=3, num_classes=5,
                       auxiliary=False)
  images = jax.random.normal(jax.random.key(3), (8, 8, 8, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0), images)
  return model, variables, images


def test_drop_path_is_identity_at_rate_zero_and_in_eval(tiny):
  model, variables, images = tiny

  @jax.jit
  def train_logits(rate):
    return model.apply(variables, images, train=True, drop_path_rate=rate,
                       rngs={'dropout': jax.random.key(7)},
                       mutable=['batch_stats'])[0]

  @jax.jit
  def eval_logits(rate):
    return model.apply(variables, images, train=False, drop_path_rate=rate)

  # Without drop path at all (a literal 0 needs no 'dropout' rng). Multiplying
  # by a mask of ones / 1 is exact, but the two programs are compiled
  # separately and XLA may order the BatchNorm reductions differently, so
  # allow float32 rounding.
  reference = jax.jit(lambda: model.apply(
      variables, images, train=True, mutable=['batch_stats'])[0])()
  np.testing.assert_allclose(train_logits(0.), reference, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(eval_logits(0.5), eval_logits(0.))
  assert not np.allclose(train_logits(0.5), reference, atol=1e-3)


def test_cell_output_channels_follow_the_concat_list(tiny):
  _, variables, _ = tiny
  # Normal concat [1, 2, 4] at C=4: cell 0 outputs 12 channels, which
  # cell 1 (reduction, preceded by a normal cell) reads via ReLUConvBN.
  params = variables['params']
  assert params['cell_1']['preprocess1']['Dense_0']['kernel'].shape == (12, 8)
  # Reduce concat [3, 4] at C=8: 16 channels into cell 2's factorized
  # reduce (two halves of 8 outputs each).
  assert params['cell_2']['preprocess0']['Dense_0']['kernel'].shape == (12, 8)
  assert params['cell_2']['preprocess1']['Dense_0']['kernel'].shape == (16, 16)
  # In the reduction cell, skip_connect from inputs 0/1 is a factorized
  # reduce (edges 1 and 3); in the normal cell (edges 1 and 4) it is the
  # identity, without a module.
  assert {'skip_connect'} == set(params['cell_1']['edge_1'])
  assert {'skip_connect'} == set(params['cell_1']['edge_3'])
  assert not {'edge_1', 'edge_4'} & set(params['cell_0'])
