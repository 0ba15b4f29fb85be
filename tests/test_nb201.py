"""The NAS-Bench-201-style space: genotype strings, derivation, the
supernet against the discrete network, and the search step on it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdarts import spaces
from jaxdarts.core.state import create_search_state
from jaxdarts.core.step import search_step
from jaxdarts.spaces.nb201.genotype import Genotype
from jaxdarts.spaces.nb201.network import restrict_params
from tiny import random_batch

# NAS-Bench-201's own example cell (its paper's Fig. 1 notation).
EXAMPLE = ('|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|'
           '+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|')
SMALL = spaces.get('nb201', primitives=('none', 'skip_connect',
                                        'nor_conv_3x3'), num_nodes=3)


def test_string_round_trip(tmp_path):
  space = spaces.get('nb201')
  genotype = space.parse_genotype(EXAMPLE)
  assert str(genotype) == EXAMPLE
  assert genotype.nodes[2] == (('skip_connect', 0), ('nor_conv_3x3', 1),
                               ('skip_connect', 2))
  assert genotype.ops == ('nor_conv_3x3', 'nor_conv_3x3', 'avg_pool_3x3',
                          'skip_connect', 'nor_conv_3x3', 'skip_connect')
  assert Genotype.from_ops(genotype.ops) == genotype
  genotype.save(tmp_path / 'g.json')
  assert Genotype.load(tmp_path / 'g.json') == genotype
  (tmp_path / 'g.txt').write_text(EXAMPLE + '\n')
  assert space.resolve_genotype(str(tmp_path / 'g.txt')) == genotype
  assert space.resolve_genotype(f'Genotype({EXAMPLE!r})') == genotype
  assert space.num_edges == 6 and space.size == 15625
  assert [space.edge_index(i, j) for i, j in space.edges] == list(range(6))


@pytest.mark.parametrize('text, message', [
    ('', 'empty'),
    ('nor_conv_3x3~0|', 'between bars'),
    ('|nor_conv_3x3|', "'op~input'"),
    ('|nor_conv_3x3~x|', "'op~input'"),
    ('|nor_conv_3x3~0|+|skip_connect~1|', 'one edge from each'),
    ('|nor_conv_3x3~0|+|skip_connect~0|skip_connect~0|', 'one edge from each'),
    ('|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|',
     "not among the space's primitives"),
    ('|none~0|+|none~0|none~1|', 'has 3 nodes; the space has 4'),
])
def test_parse_errors(text, message):
  with pytest.raises(ValueError, match=message):
    spaces.get('nb201').parse_genotype(text)


def test_canonical_forms_identify_isomorphic_cells():
  parse = Genotype.parse
  # conv(x) reaches the output through an identity, a relabelled node, or
  # directly: the same function.
  direct = parse('|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|')
  via_node1 = parse('|nor_conv_3x3~0|+|none~0|none~1|'
                    '+|none~0|skip_connect~1|none~2|')
  via_node2 = parse('|none~0|+|nor_conv_3x3~0|none~1|'
                    '+|none~0|none~1|skip_connect~2|')
  dead_node = parse('|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|'
                    '+|nor_conv_3x3~0|none~1|none~2|')
  for other in (via_node1, via_node2, dead_node):
    assert other.canonical() == ('nor_conv_3x3(x)',)
  assert direct.isomorphic(via_node2)
  # A conv of a zero node is zero; two convs are not one.
  zero = parse('|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|'
               'nor_conv_3x3~2|')
  assert zero.canonical() == ()
  two = parse('|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|'
              'skip_connect~1|none~2|')
  assert two.canonical() == ('nor_conv_3x3(x)', 'nor_conv_3x3(x)')
  # All skips: x reaches node 3 along 4 paths (0-3, 0-1-3, 0-2-3, 0-1-2-3).
  assert Genotype.from_ops(['skip_connect'] * 6).canonical() == ('x',) * 4


def test_derive_takes_each_edge_strongest_op_none_included():
  weights = np.array([[0.5, 0.2, 0.3],    # none
                      [0.1, 0.6, 0.3],    # skip
                      [0.2, 0.3, 0.5]])   # conv
  genotype = SMALL.derive({'cell': weights})
  assert str(genotype) == '|none~0|+|skip_connect~0|nor_conv_3x3~1|'
  assert SMALL.parse_genotype(str(genotype)) == genotype
  with pytest.raises(ValueError, match='expected'):
    SMALL.derive({'cell': weights[:2]})


def test_one_hot_supernet_equals_discrete_network(affine=True):
  """The supernet with a genotype's one-hot weights is its network, with
  the supernet's weights restricted to the genotype's ops."""
  batch = random_batch(0, size=8)
  genotype = SMALL.parse_genotype('|nor_conv_3x3~0|+|skip_connect~0|'
                                  'nor_conv_3x3~1|')
  other = SMALL.parse_genotype('|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|')
  supernet = SMALL.supernet(4, channels=4, layers=3, affine=affine)
  one_hot = {'cell': jnp.asarray(genotype.one_hot(SMALL.primitives))}
  # Non-trivial BatchNorm statistics and affine parameters.
  variables = jax.jit(lambda: jax.tree.map(
      lambda a: a + 0.1 * jax.random.uniform(jax.random.key(2), a.shape),
      supernet.init(jax.random.key(1), batch['image'], one_hot,
                    train=False)))()
  net = SMALL.network(genotype, 4, channels=4, layers=3, affine=affine)
  wrong = SMALL.network(other, 4, channels=4, layers=3, affine=affine)
  images = batch['image']

  @jax.jit
  def outputs(variables):
    restricted = {k: restrict_params(v, genotype)
                  for k, v in variables.items()}
    train = supernet.apply(variables, images, one_hot, train=True,
                           mutable=['batch_stats'])
    expected = net.apply(restricted, images, train=True,
                         mutable=['batch_stats'])
    return (train, expected, supernet.apply(variables, images, one_hot,
                                            train=False),
            net.apply(restricted, images, train=False),
            wrong.apply({k: restrict_params(v, other)
                         for k, v in variables.items()}, images, train=False))

  (out, stats), (expected, expected_stats), out_eval, expected_eval, wrong_out = (
      outputs(variables))
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
  jax.tree.map(np.testing.assert_allclose,
               restrict_params(stats['batch_stats'], genotype),
               expected_stats['batch_stats'])
  np.testing.assert_allclose(out_eval, expected_eval, rtol=1e-6, atol=1e-6)
  # Another genotype's network on the same weights computes something else.
  assert np.abs(wrong_out - out_eval).max() > 1e-3


def test_supernet_refuses_wrong_weights():
  supernet = SMALL.supernet(4, channels=4, layers=3)
  images = jnp.zeros((2, 8, 8, 3))
  with pytest.raises(ValueError, match=r"keys \['cell'\]"):
    supernet.init(jax.random.key(0), images,
                  {'normal': jnp.zeros((3, 3))}, train=False)
  with pytest.raises(ValueError, match=r'needs \(3, 3\)'):
    supernet.init(jax.random.key(0), images, {'cell': jnp.zeros((6, 3))},
                  train=False)
  with pytest.raises(ValueError, match='layers'):
    SMALL.supernet(4, layers=4).init(
        jax.random.key(0), images, {'cell': jnp.zeros((3, 3))}, train=False)


@pytest.mark.parametrize('hypergradient', ['first_order', 'exact'])
def test_search_step(hypergradient):
  """The library's bilevel step runs on the space unchanged: the alphas
  move, everything stays finite, a genotype of the space comes out."""
  space = spaces.get('nb201', primitives=('skip_connect', 'nor_conv_3x3'),
                     num_nodes=2)
  # The kwargs run_search passes to every space's supernet.
  model = space.supernet(4, channels=4, layers=3, scan_cells=True,
                         remat_cells=False, compute_dtype=jnp.float32,
                         depthwise=None)
  batch, val = random_batch(0), random_batch(1)
  state = create_search_state(jax.random.key(0), model, batch['image'],
                              num_steps=2, hypergradient=hypergradient)
  alphas = np.asarray(state.alphas['cell'])
  state, metrics = search_step(state, batch, val)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  moved = np.asarray(state.alphas['cell']) - alphas
  assert np.abs(moved).max() > 0
  genotype = state.genotype()
  assert isinstance(genotype, Genotype)
  assert space.parse_genotype(str(genotype)) == genotype
