"""PC-DARTS: partial channels, the bypass, the shuffle, edge normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdarts
from jaxdarts import methods, spaces
from jaxdarts.methods import pc_darts
from jaxdarts.spaces.darts_cnn.cell import MixedOp
from jaxdarts.spaces.nb201 import cell as nb201

PRIMITIVES = ('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3')


def test_channel_shuffle_is_the_reference_permutation():
  # PyTorch's view(B, 4, 2, H, W).transpose(1, 2): out[j * 4 + g] =
  # in[g * 2 + j].
  x = jnp.arange(8.0).reshape(1, 1, 1, 8)
  got = np.asarray(pc_darts.channel_shuffle(x, 4)).ravel()
  np.testing.assert_array_equal(got, [0, 2, 4, 6, 1, 3, 5, 7])
  y = np.asarray(pc_darts.channel_shuffle(jnp.arange(24.0).reshape(
      1, 1, 1, 24), 4)).ravel()
  assert sorted(y) == list(range(24))  # A permutation.


def _unshuffle(y, groups):
  """The inverse of `channel_shuffle`, written out with indices."""
  c = y.shape[-1]
  perm = [g * (c // groups) + j for j in range(c // groups)
          for g in range(groups)]  # out channel i came from perm[i]
  out = np.empty_like(y)
  out[..., perm] = y
  return out


def _max_pool_2x2(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@pytest.mark.parametrize('stride', [1, 2])
def test_only_c_over_k_channels_reach_the_ops_the_rest_bypass(stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 4, 4, 8)), jnp.float32)
  module = pc_darts.PartialChannelMixedOp(PRIMITIVES, 8, stride, True, k=4)
  weights = {'ops': jnp.asarray([0.1, 0.2, 0.3, 0.4]),
             'edge': jnp.asarray(0.5)}  # A power of 2: exact
  variables = jax.jit(module.init)(jax.random.key(0), x, weights)
  mixed = MixedOp(PRIMITIVES, 2, stride, True)

  @jax.jit
  def outputs(x):
    """The edge's output and DARTS's mixed op on the first C/k channels."""
    return (module.apply(variables, x, weights, mutable=['batch_stats'])[0],
            mixed.apply({c: v['mixed'] for c, v in variables.items()},
                        x[..., :2], weights['ops'],
                        mutable=['batch_stats'])[0])

  got, want = outputs(x)
  y = _unshuffle(np.asarray(got) / 0.5, 4)
  # The candidates see channels [0, 2) only, through DARTS's mixed op.
  np.testing.assert_allclose(y[..., :2], want, rtol=1e-5, atol=1e-5)
  # The others bypass them: exactly the input, or its 2x2 max-pool.
  bypass = np.asarray(x[..., 2:])
  np.testing.assert_array_equal(
      y[..., 2:], bypass if stride == 1 else _max_pool_2x2(bypass))
  # Changing the bypassed channels leaves the mixed part as it was.
  z = _unshuffle(np.asarray(outputs(x.at[..., 2:].add(5.0))[0]) / 0.5, 4)
  np.testing.assert_array_equal(z[..., :2], y[..., :2])


def test_edge_weights_are_a_softmax_over_each_nodes_inputs():
  betas = jnp.asarray([0.1, -0.3, 1.0, 0.0, 2.0])  # 2 nodes: edges 2 + 3.
  got = np.asarray(pc_darts.edge_weights([betas[:2], betas[2:]]))
  e = np.exp(np.asarray(betas, np.float64))
  want = np.concatenate([e[:2] / e[:2].sum(), e[2:] / e[2:].sum()])
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_init_relax_and_derivation_use_the_betas():
  space = jaxdarts.SearchSpace(PRIMITIVES, num_nodes=2)
  method = methods.get('pc_darts', num_steps=10)
  arch = method.init_arch(space, jax.random.key(0))
  assert [b.shape for b in arch['edge_betas']['normal']] == [(2,), (3,)]
  weights = method.relax(arch)
  assert set(weights['reduce']) == {'ops', 'edge'}

  # Node 0: edge 0 has the strongest op (sep_conv 0.9 vs 0.6 before the
  # betas), but edge 1's beta is far larger, so edge 1 ranks first.
  probs = np.full((5, 4), 0.1 / 3)
  probs[0, 3], probs[1, 1], probs[2, 2] = 0.9, 0.6, 0.6
  for row in range(5):
    probs[row, [k for k in range(4) if probs[row, k] == 0.1 / 3][0]] = (
        1 - probs[row].sum() + 0.1 / 3)
  alphas = np.log(probs)
  betas = np.array([0.0, 2.0, 0.0, 0.0, 0.0])
  arch = {'normal': alphas, 'reduce': alphas,
          'edge_betas': {'normal': [betas[:2], betas[2:]],
                         'reduce': [betas[:2], betas[2:]]}}
  strengths = method.strengths(arch)
  e = np.exp(betas[:2]) / np.exp(betas[:2]).sum()
  np.testing.assert_allclose(strengths['normal'][:2], probs[:2] * e[:, None],
                             rtol=1e-12)
  genotype = method.derive(arch, space)
  assert genotype.normal[:2] == (('max_pool_3x3', 1), ('sep_conv_3x3', 0))
  # Without the betas (DARTS's rule) edge 0 would come first.
  darts = methods.get('darts').derive(
      {'normal': alphas, 'reduce': alphas}, space)
  assert darts.normal[:2] == (('sep_conv_3x3', 0), ('max_pool_3x3', 1))


def test_channels_that_do_not_split_are_refused():
  module = pc_darts.PartialChannelMixedOp(PRIMITIVES, 6, 1, True, k=4)
  with pytest.raises(ValueError, match='divisible by k'):
    jax.eval_shape(lambda: module.init(
        jax.random.key(0), jnp.zeros((1, 4, 4, 6)),
        {'ops': jnp.ones(4), 'edge': jnp.ones(())}))


NB201_PRIMITIVES = ('none', 'skip_connect', 'nor_conv_3x3', 'avg_pool_3x3')


def test_nb201_edge_mixes_c_over_k_channels_through_its_ops():
  """On the NB201 space (stride 1): the first C/k channels go through the
  space's mixed op, the rest pass unchanged."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 8)),
                  jnp.float32)
  module = pc_darts.PartialChannelMixedOp(NB201_PRIMITIVES, 8, 1, True, k=4,
                                          mixed_op=nb201.MixedOp)
  weights = {'ops': jnp.asarray([0.1, 0.2, 0.3, 0.4]),
             'edge': jnp.asarray(0.5)}
  variables = jax.jit(module.init)(jax.random.key(0), x, weights)
  got = module.apply(variables, x, weights, mutable=['batch_stats'])[0]
  want = nb201.MixedOp(NB201_PRIMITIVES, 2, 1, True).apply(
      {c: v['mixed'] for c, v in variables.items()}, x[..., :2],
      weights['ops'], mutable=['batch_stats'])[0]
  y = _unshuffle(np.asarray(got) / 0.5, 4)
  np.testing.assert_allclose(y[..., :2], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(y[..., 2:], x[..., 2:])
  # The convolution sees C/k = 2 channels only.
  kernel = variables['params']['mixed']['nor_conv_3x3']['Conv_0']['kernel']
  assert kernel.shape == (3, 3, 2, 2)


def test_nb201_edge_normalisation_and_derivation():
  """NB201 node i normalises over its i edges; the betas scale whole rows,
  so the derivation (strongest op per edge) is the alphas' own."""
  space = spaces.get('nb201', primitives=NB201_PRIMITIVES)
  assert pc_darts.node_sizes(space) == [1, 2, 3]
  method = methods.get('pc_darts')
  arch = method.init_arch(space, jax.random.key(0))
  assert [b.shape for b in arch['edge_betas']['cell']] == [(1,), (2,), (3,)]
  alphas = np.asarray(jax.random.normal(jax.random.key(1), (6, 4)))
  betas = [np.array([5.0]), np.array([0.0, 3.0]), np.array([-2.0, 0.0, 1.0])]
  arch = {'cell': alphas, 'edge_betas': {'cell': betas}}
  edge = np.asarray(method.relax(arch)['cell']['edge'])
  np.testing.assert_allclose(edge[0], 1.0)  # Node 1's only edge.
  np.testing.assert_allclose(edge[1:3].sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(edge[3:].sum(), 1.0, rtol=1e-6)
  assert method.derive(arch, space) == methods.get('darts').derive(
      {'cell': alphas}, space)
