"""Searching under a computational budget: penalties and a hard limit.

:func:`expected_cost` is the cost of the supernet under its mixing weights,
differentiable in the alphas through any method's ``relax`` (softmax,
Gumbel samples, sigmoids, Dirichlet samples)::

    E[cost] = fixed + sum_{cell type t} sum_{edge e, op k} w_t[e, k] c_t[e, k]

with ``c_t`` a :class:`~jaxdarts.cost.table.CostTable` (every cell of type
``t`` at the retraining geometry summed). With one-hot weights that put
each kept edge on its op and every other edge on ``'none'`` (cost 0), it is
the derived network's cost exactly. As in SNAS, ``'none'`` removes an
edge's cost, so E[cost] counts all edges, while DARTS's derivation keeps two
per node whatever ``'none'`` weighs: the hard budget below is what bounds
the derived network.

:class:`Budgeted` wraps any method (composition, no method is edited): its
``arch_objective`` adds a penalty to the method's own objective ``L``:

* ``'mul#log'`` (ProxylessNAS, Cai et al., ICLR 2019, its code's
  ``add_regularization_loss``): ``alpha * L * (log E / log T) ** beta``,
  alpha 0.2 and beta 0.3 by default (its ``arch_search.py``);
* ``'add#linear'`` (ProxylessNAS): ``L + lambda * (E - T) / T``, lambda 0.1;
* ``'snas'`` (the resource constraint of SNAS, Xie et al., ICLR 2019):
  ``L + lambda * E / T``, linear in the weights; it differs from
  ``add#linear`` by a constant, so its gradient is the same. (SNAS takes
  the cost of its relaxed Gumbel sample; here every method's cost is taken
  under its deterministic weights, ``relax(arch, rng=None)``, the
  expectation ProxylessNAS uses, since ``arch_objective`` gets no rng.)

``T`` is ``target`` in the table's metric (parameters, multiply-adds per
image, or ms per batch). Its ``derive`` keeps the method's genotype if it
fits ``limit`` and otherwise the best one that does by the method's own
ranking (the product of the kept ops' ``strengths``, which the top-2 rule
maximises), found exactly by merging Pareto fronts of (cost, score) node
by node: a multiple-choice knapsack.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts.cost.table import CostTable, describe
from jaxdarts.methods.base import Method
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.space import CELL_TYPES

PENALTIES = ('', 'mul#log', 'add#linear', 'snas')


class BudgetError(ValueError):
  """No architecture of the space fits the budget."""


def expected_cost(weights: dict[str, jax.Array], table: CostTable,
                  metric: str) -> jax.Array:
  """``fixed + sum_t sum_{e,k} w_t[e, k] c_t[e, k]`` in the weights' dtype."""
  costs = table.edge_costs(metric)
  dtype = jnp.result_type(*jax.tree.leaves(weights))
  total = sum(jnp.sum(weights[cell] * jnp.asarray(costs[cell], dtype))
              for cell in CELL_TYPES)
  return total + jnp.asarray(table.fixed_cost(metric), dtype)


def penalized(loss: jax.Array, cost: jax.Array, *, penalty: str,
              target: float, alpha: float = 0.2, beta: float = 0.3,
              lambda_: float = 0.1) -> jax.Array:
  """``loss`` with a resource penalty (see the module docstring)."""
  if penalty == 'mul#log':
    return alpha * loss * (jnp.log(cost) / np.log(target)) ** beta
  if penalty == 'add#linear':
    return loss + lambda_ * (cost - target) / target
  if penalty == 'snas':
    return loss + lambda_ * cost / target
  if not penalty:
    return loss
  raise ValueError(f'Unknown budget penalty {penalty!r}; choose one of '
                   f'{list(PENALTIES)}.')


_OWN = frozenset({'arch_objective', 'derive', 'inner', 'table', 'metric',
                  'penalty', 'target', 'limit', 'alpha', 'beta', 'lambda_',
                  'expected', 'cheapest', 'second_order'})


@dataclasses.dataclass(frozen=True)
class Budgeted(Method):
  """``inner`` searching under a budget; every other hook is ``inner``'s.

  Attributes:
    inner: the search method.
    table: costs at the retraining geometry.
    metric: ``'params'``, ``'macs'`` or ``'ms'``.
    penalty: one of :data:`PENALTIES` (``''``: none).
    target: the penalty's target T, in ``metric``.
    limit: the hard budget of ``derive`` in ``metric`` (0: none).
    alpha, beta: ``mul#log``'s factors.
    lambda_: the linear penalties' weight.
  """
  name: ClassVar[str] = 'budgeted'
  inner: Method = None
  table: CostTable = dataclasses.field(default=None, repr=False)
  metric: str = 'macs'
  penalty: str = ''
  target: float = 0.
  limit: float = 0.
  alpha: float = 0.2
  beta: float = 0.3
  lambda_: float = 0.1

  def __post_init__(self):
    if not isinstance(self.inner, Method) or not isinstance(self.table,
                                                            CostTable):
      raise ValueError('Budgeted needs inner= a search method and table= a '
                       'jaxdarts.cost.table.CostTable.')
    self.table.check(self.metric)
    if self.penalty not in PENALTIES:
      raise ValueError(f'Unknown budget penalty {self.penalty!r}; choose one '
                       f'of {list(PENALTIES)}.')
    if self.penalty and self.target <= 0:
      raise ValueError(f'The {self.penalty!r} penalty needs a positive '
                       'target (config.search.budget.target).')
    if self.limit > 0 and self.cheapest()[0] > self.limit:
      raise BudgetError(self._none_fits())

  def __getattribute__(self, name: str) -> Any:
    # Hooks this wrapper does not change are the inner method's, including
    # hooks added to Method later.
    if name.startswith('_') or name in _OWN:
      return object.__getattribute__(self, name)
    return getattr(object.__getattribute__(self, 'inner'), name)

  @property
  def second_order(self) -> bool:  # pylint: disable=invalid-overridden-method
    return self.inner.second_order

  def expected(self, arch, *, step=0) -> jax.Array:
    """E[cost] under the inner method's deterministic mixing weights."""
    return expected_cost(self.inner.relax(arch, rng=None, step=step),
                         self.table, self.metric)

  def arch_objective(self, loss, arch, *, step):
    objective = self.inner.arch_objective(loss, arch, step=step)
    if not self.penalty or (self.penalty != 'mul#log' and not self.lambda_):
      return objective  # No penalty: the inner method's program, unchanged.
    return penalized(objective, self.expected(arch, step=step),
                     penalty=self.penalty, target=self.target,
                     alpha=self.alpha, beta=self.beta, lambda_=self.lambda_)

  def derive(self, arch, space):
    genotype = self.inner.derive(arch, space)
    if self.limit <= 0 or self.table.genotype_cost(
        genotype, self.metric) <= self.limit:
      return genotype
    return self._best_within(self.inner.strengths(arch), self.limit)

  # -- the knapsack ----------------------------------------------------------

  def cheapest(self) -> tuple[float, Genotype]:
    """The cheapest derivable genotype and its cost."""
    uniform = {c: np.ones(self.table.space.alpha_shape) for c in CELL_TYPES}
    front = self._front(uniform)
    cost, _, choice = front[0]
    return cost, self._genotype(choice)

  def _none_fits(self) -> str:
    cost, _ = self.cheapest()
    return (f'No architecture fits the budget of '
            f'{describe(self.table, self.metric, self.limit)}: the cheapest '
            f'reachable at C={self.table.geometry.channels}, '
            f'{self.table.geometry.layers} cells costs '
            f'{describe(self.table, self.metric, cost)}. Raise '
            'config.search.budget.limit or shrink the retraining network '
            '(config.search.budget.channels / layers).')

  def _front(self, strengths) -> list[tuple[float, float, tuple]]:
    """The Pareto front ``[(cost, score, choice)]`` over whole genotypes,
    cheapest first, score = sum of log strengths of the kept ops."""
    space, costs = self.table.space, self.table.edge_costs(self.metric)
    ops = [k for k, p in enumerate(space.primitives) if p != 'none']
    front = [(self.table.fixed_cost(self.metric), 0., ())]
    for cell in CELL_TYPES:
      score = np.log(np.maximum(np.asarray(strengths[cell], np.float64),
                                1e-300))
      for node in range(space.num_nodes):
        base = space.edge_offset(node)
        options = []
        for a, b in itertools.combinations(range(2 + node), 2):
          for ka, kb in itertools.product(ops, ops):
            options.append((
                costs[cell][base + a, ka] + costs[cell][base + b, kb],
                score[base + a, ka] + score[base + b, kb],
                ((cell, node, a, ka, score[base + a, ka]),
                 (cell, node, b, kb, score[base + b, kb]))))
        front = _pareto([(c + oc, s + os, ch + och)
                         for c, s, ch in front
                         for oc, os, och in _pareto(options)])
    return front

  def _best_within(self, strengths, limit: float) -> Genotype:
    fits = [entry for entry in self._front(strengths) if entry[0] <= limit]
    if not fits:
      raise BudgetError(self._none_fits())
    return self._genotype(fits[-1][2])

  def _genotype(self, choice) -> Genotype:
    space = self.table.space
    cells = {cell: [] for cell in CELL_TYPES}
    for pair in zip(choice[::2], choice[1::2]):
      # Each node's two edges, the stronger first (ties: lower input).
      kept = sorted(pair, key=lambda e: (-e[4], e[2]))
      cells[pair[0][0]] += [(space.primitives[k], src)
                            for _, _, src, k, _ in kept]
    return Genotype.make(normal=cells['normal'], normal_concat=space.concat,
                         reduce=cells['reduce'], reduce_concat=space.concat,
                         space=space)


def _pareto(entries):
  """Entries not dominated in (lower cost, higher score), cheapest first."""
  out, best = [], -np.inf
  for entry in sorted(entries, key=lambda e: (e[0], -e[1])):
    if entry[1] > best:
      out.append(entry)
      best = entry[1]
  return out
