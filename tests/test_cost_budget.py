"""Searching under a budget: cost tables, penalties, hard-budget derivation."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdarts
from jaxdarts.cost import budget as budget_lib
from jaxdarts.cost import latency as latency_lib
from jaxdarts.cost import search as cost_search
from jaxdarts.cost import table as table_lib
from jaxdarts.spaces.darts_cnn.derive import top2_genotype
from jaxdarts.spaces.darts_cnn.space import (CELL_TYPES, DARTS_PRIMITIVES,
                                             SearchSpace)
from tests.tiny import MICRO_SPACE, MicroSupernet, random_batch

FULL = SearchSpace(DARTS_PRIMITIVES, num_nodes=3)
SMALL = SearchSpace(('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3'),
                    num_nodes=2)


def one_hot(genotype, space):
  """Mixing weights of ``genotype``: each kept edge on its op, every other
  edge on 'none'."""
  weights = {}
  for cell in CELL_TYPES:
    w = np.zeros(space.alpha_shape)
    w[:, space.primitives.index('none')] = 1
    pairs, _ = genotype.cell(cell)
    for k, (op, src) in enumerate(pairs):
      edge = space.edge_offset(k // 2) + src
      w[edge] = 0
      w[edge, space.primitives.index(op)] = 1
    weights[cell] = w
  return weights


def random_genotype(space, seed):
  rng = np.random.default_rng(seed)
  return top2_genotype({c: rng.random(space.alpha_shape) for c in CELL_TYPES},
                       space)


def test_one_hot_expected_cost_is_the_counted_network():
  # 4 cells: normal, reduce, reduce (after a reduction), normal.
  geometry = table_lib.Geometry((8, 8, 3), 10, channels=4, layers=4)
  table = table_lib.build(geometry, FULL)
  for seed in range(2):
    genotype = random_genotype(FULL, seed)
    params, macs = table_lib.network_counts(genotype, geometry)
    with jax.enable_x64(True):
      weights = jax.tree.map(jnp.asarray, one_hot(genotype, FULL))
      assert int(budget_lib.expected_cost(weights, table, 'params')) == params
      assert int(budget_lib.expected_cost(weights, table, 'macs')) == macs
    assert table.genotype_cost(genotype, 'macs') == macs


@functools.lru_cache(maxsize=1)
def _micro_table():
  geometry = table_lib.Geometry((8, 8, 3), 4, channels=4, layers=3)
  return table_lib.build(geometry, MICRO_SPACE)


def _steps(method, n=2):
  model = MicroSupernet()
  state = jaxdarts.create_search_state(
      jax.random.key(0), model, random_batch(0)['image'], method=method,
      weight_tx=optax.sgd(0.1), weight_lr=0.1, arch_tx=optax.sgd(1.0))
  first = jax.tree.map(np.array, state.alphas)
  for i in range(n):
    state, _ = jaxdarts.search_step(state, random_batch(2 * i),
                                    random_batch(2 * i + 1))
  return first, state


def test_zero_penalty_and_no_budget_is_bitwise_the_plain_search():
  darts = jaxdarts.methods.get('darts')
  budgeted = budget_lib.Budgeted(inner=darts, table=_micro_table(),
                                 penalty='add#linear', target=1e5,
                                 lambda_=0.)
  _, plain = _steps(darts)
  _, wrapped = _steps(budgeted)
  for a, b in zip(jax.tree.leaves((plain.alphas, plain.params)),
                  jax.tree.leaves((wrapped.alphas, wrapped.params))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert wrapped.genotype() == plain.genotype()
  # What the run logs each epoch.
  costs = cost_search.epoch_costs(wrapped)
  assert cost_search.epoch_costs(plain) == {}
  table = budgeted.table
  weights = jax.tree.map(lambda a: jax.nn.softmax(a, -1), wrapped.alphas)
  assert costs['expected_macs'] == pytest.approx(float(
      budget_lib.expected_cost(weights, table, 'macs')), rel=1e-5)
  assert costs['derived_params'] == table.genotype_cost(plain.genotype(),
                                                        'params')


def test_linear_penalty_adds_its_softmax_gradient():
  """One SGD(1) alpha step: the penalty adds lambda / T * dE/dalpha, with
  dE/dalpha_k = w_k (c_k - sum_j w_j c_j) per edge for a softmax."""
  darts, table, lam, target = jaxdarts.methods.get('darts'), _micro_table(), \
      0.5, 1e4
  budgeted = budget_lib.Budgeted(inner=darts, table=table, metric='macs',
                                 penalty='snas', target=target, lambda_=lam)
  start, plain = _steps(darts, n=1)
  _, penalised = _steps(budgeted, n=1)
  costs = table.edge_costs('macs')
  assert any(c.max() > 0 for c in costs.values())
  for cell in CELL_TYPES:
    w = jax.nn.softmax(np.asarray(start[cell], np.float64), axis=-1)
    c = costs[cell]
    grad = w * (c - (w * c).sum(-1, keepdims=True))
    np.testing.assert_allclose(
        np.asarray(penalised.alphas[cell]) - np.asarray(plain.alphas[cell]),
        -lam / target * grad, rtol=1e-4, atol=1e-7)


def test_penalties_match_their_formulas():
  loss, cost, target = 2.0, 3e6, 1e6
  got = budget_lib.penalized(loss, cost, penalty='mul#log', target=target)
  want = 0.2 * loss * (np.log(cost) / np.log(target)) ** 0.3
  assert float(got) == pytest.approx(want, rel=1e-6)
  got = budget_lib.penalized(loss, cost, penalty='add#linear', target=target,
                             lambda_=0.1)
  assert float(got) == pytest.approx(loss + 0.1 * 2.0, rel=1e-6)
  with pytest.raises(ValueError, match='Unknown budget penalty'):
    budget_lib.penalized(loss, cost, penalty='mul', target=target)


def _brute_force(table, strengths, limit):
  """The best genotype within ``limit``: every genotype enumerated."""
  space, costs = table.space, table.edge_costs('macs')
  ops = [k for k, p in enumerate(space.primitives) if p != 'none']
  per_cell = {}
  for cell in CELL_TYPES:
    nodes = []
    for node in range(space.num_nodes):
      base = space.edge_offset(node)
      nodes.append([((base + a, ka), (base + b, kb))
                    for a, b in itertools.combinations(range(2 + node), 2)
                    for ka in ops for kb in ops])
    per_cell[cell] = list(itertools.product(*nodes))
  best = None
  for normal, reduce in itertools.product(per_cell['normal'],
                                          per_cell['reduce']):
    cost, score = table.fixed_cost('macs'), 0.
    for cell, choice in (('normal', normal), ('reduce', reduce)):
      for e, k in itertools.chain(*choice):
        cost += costs[cell][e, k]
        score += np.log(strengths[cell][e, k])
    if cost <= limit and (best is None or score > best[0]):
      best = (score, cost)
  return best


def test_hard_budget_picks_the_best_genotype_within_it():
  geometry = table_lib.Geometry((8, 8, 3), 10, channels=4, layers=3)
  table = table_lib.build(geometry, SMALL)
  rng = np.random.default_rng(3)
  arch = {c: jnp.asarray(rng.normal(size=SMALL.alpha_shape))
          for c in CELL_TYPES}
  darts = jaxdarts.methods.get('darts')
  free = darts.derive(arch, SMALL)
  free_cost = table.genotype_cost(free, 'macs')
  strengths = darts.strengths(arch)
  cheapest = budget_lib.Budgeted(inner=darts, table=table).cheapest()[0]
  assert cheapest < free_cost
  for limit in (free_cost, 0.5 * (cheapest + free_cost), cheapest):
    method = budget_lib.Budgeted(inner=darts, table=table, limit=limit)
    genotype = method.derive(arch, SMALL)
    cost = table.genotype_cost(genotype, 'macs')
    assert cost <= limit
    score = sum(np.log(strengths[cell][SMALL.edge_offset(k // 2) + src,
                                       SMALL.primitives.index(op)])
                for cell in CELL_TYPES
                for k, (op, src) in enumerate(genotype.cell(cell)[0]))
    want_score, _ = _brute_force(table, strengths, limit)
    assert score == pytest.approx(want_score, abs=1e-9)
  assert method.derive(arch, SMALL) != free
  assert budget_lib.Budgeted(inner=darts, table=table,
                             limit=free_cost).derive(arch, SMALL) == free


def test_an_unreachable_budget_names_the_cheapest_cost():
  table = table_lib.build(table_lib.Geometry((8, 8, 3), 10, 4, 3), SMALL)
  cheapest = budget_lib.Budgeted(inner=jaxdarts.methods.get('darts'),
                                 table=table).cheapest()[0]
  with pytest.raises(budget_lib.BudgetError,
                     match=f'cheapest reachable .* costs '
                     f'{cheapest / 1e3:.4g}k multiply-adds'):
    budget_lib.Budgeted(inner=jaxdarts.methods.get('darts'), table=table,
                        limit=cheapest - 1)


def test_latency_table_sums_pieces_less_dispatch(tmp_path):
  """A table read from a file: every piece 1 ms, every dispatch 0.25 ms."""
  geometry = table_lib.Geometry((4, 4, 1), 2, channels=2, layers=3, batch=2)
  space = SearchSpace(('none', 'skip_connect', 'max_pool_3x3'), num_nodes=1)
  latency = latency_lib.LatencyTable(tmp_path / 'latency.json')
  # The edges' inputs: cell 0 (normal, C=2) at 4x4; cell 1 (reduce, C=4)
  # at 4x4 from its inputs (stride 2), then 2x2; cell 2 (reduce, C=8) at
  # 2x2, then 1x1.
  edges = [((4, 4, 2), 1), ((4, 4, 4), 2), ((2, 2, 4), 1), ((2, 2, 8), 2),
           ((1, 1, 8), 1)]
  pieces = table_lib.fixed_pieces(geometry, space) + [
      table_lib.op_piece(op, shape, stride) for op in space.primitives[1:]
      for shape, stride in edges]
  for piece in pieces:
    latency.entries[latency.key(piece.key, 2)] = 1.
    latency.entries[latency.key(
        f'dispatch|{"x".join(map(str, piece.shape))}', 2)] = 0.25
  latency.entries[latency.key('dispatch|4x4x1', 2)] = 0.25
  table = latency_lib.measure_table(table_lib.build(geometry, space), latency)
  assert latency.measured == 0
  # Stem, 2 preprocessors in each of 3 cells, head; one dispatch.
  assert table.fixed_cost('ms') == pytest.approx(8 * 0.75 + 0.25)
  edges = table.edge_costs('ms')  # 1 normal cell, 2 reduction cells.
  np.testing.assert_allclose(edges['normal'], [[0, .75, .75]] * 2)
  np.testing.assert_allclose(edges['reduce'], [[0, 1.5, 1.5]] * 2)
  assert (tmp_path / 'latency.json').exists()


def test_latency_is_measured_once_and_keyed(tmp_path):
  path = tmp_path / 'latency.json'
  piece = table_lib.op_piece('skip_connect', (4, 4, 2), 2)
  first = latency_lib.LatencyTable(path, warmup=1, repeats=2)
  ms = first.measure(piece, 2)
  first.save()
  assert ms >= 0 and first.measured == 2  # The op and the dispatch.
  second = latency_lib.LatencyTable(path)
  assert second.measure(piece, 2) == ms and second.measured == 0
  assert sorted(second.entries) == [
      f'{latency_lib.backend()}|dispatch|4x4x2|n2|float32',
      f'{latency_lib.backend()}|skip_connect|4x4x2|s2|n2|float32']


def test_cost_plot_and_budget_text(tmp_path):
  from jaxdarts.viz import cost as cost_viz
  records = [{'step': 10 * e, 'epoch': e, 'supernet_val_accuracy': 0.5 + e / 10,
              'expected_macs': 4e5 - e * 1e4, 'derived_macs': 3e5 - e * 1e4}
             for e in range(3)] + [{'step': 31, 'train_loss': 1.0}]
  assert len(cost_viz.cost_records(records)) == 3
  path = cost_viz.plot_cost_accuracy(records, tmp_path / 'cost.png',
                                     limit=3e5)
  assert path.stat().st_size > 0
  text = cost_viz.budget_text({'metric': 'macs', 'limit': 3e5,
                               'penalty': 'mul#log', 'target': 3e5,
                               'channels': 8, 'layers': 5})
  assert 'hard limit 300000 macs' in text and 'C=8, 5 cells' in text
  with pytest.raises(ValueError, match='derived_params'):
    cost_viz.plot_cost_accuracy(records, tmp_path / 'p.png', metric='params')
