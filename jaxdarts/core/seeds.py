"""Several independent searches as one program: a leading seed axis.

The paper ran its search four times with different seeds and kept the best
cell (Liu et al., ICLR 2019, "DARTS", section 3.2). :class:`SeedStates`
holds N independent `SearchState`\\ s stacked along a new leading axis
(weights, BatchNorm statistics, alphas, both optimizer states, the step
and each search's own rng), and :func:`seeds_step_fn` is the bilevel step
`jax.vmap`\\ ped over that axis: N searches, each on its own batches
(``[N, B, ...]``), advance in one compiled program::

    seeds = stack_states(lambda key: create_search_state(key, model, images,
                                                         num_steps=n),
                         jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)]))
    for train, val in batches:               # each [2, B, ...]
      seeds, metrics = seeds_search_step(seeds, train, val)
    genotypes = seeds.genotypes()

Seed ``i`` computes what a separate run from the same key on the same
batches computes, up to float rounding: the batched convolutions are other
XLA kernels (``tests/test_seeds.py`` checks the alphas to 1e-5).

On several devices (:func:`mesh_seeds_step`) the seed axis is replicated
and every seed's global batch is split over the devices as a single
search's is: each device runs all N seeds on ``B / devices`` examples each,
and the gradients, metrics and BatchNorm statistics are averaged over the
devices per seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdarts.core import parallel
from jaxdarts.core.state import SearchState
from jaxdarts.core.step import search_step_fn

PyTree = Any


def seed_prefix(index: int) -> str:
  """The prefix of seed ``index``'s metrics (and of its run directory)."""
  return f'seed_{index}'


class SeedStates(flax.struct.PyTreeNode):
  """N search states stacked along a leading seed axis.

  Attributes:
    states: a `SearchState` whose every array has a leading axis of N.
  """
  states: SearchState

  @property
  def step(self) -> jax.Array:
    """The step all seeds are at (they advance together)."""
    return self.states.step[0]

  @property
  def num_seeds(self) -> int:
    return int(self.states.step.shape[0])

  def seed(self, index: int) -> SearchState:
    """Seed ``index``'s own state (its slice of every array)."""
    return jax.tree.map(lambda x: x[index], self.states)

  def genotypes(self) -> tuple[Any, ...]:
    """The genotype each seed's alphas stand for, in seed order."""
    return tuple(self.seed(i).genotype() for i in range(self.num_seeds))


def stack_states(initial: Callable[[jax.Array], SearchState],
                 keys: jax.Array) -> SeedStates:
  """``initial(key)`` for every key of ``keys`` (``[N, ...]``), vmapped.

  The random draws are those of ``initial(keys[i])``: random bits depend
  on the key, not on the batching.
  """
  return SeedStates(jax.vmap(initial)(keys))


def per_seed_metrics(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """``{name: [N]}`` as scalars: the mean over seeds under ``name`` and
  seed i's value under ``seed_<i>/name``."""
  flat = {name: jnp.mean(value) for name, value in metrics.items()}
  for name, value in metrics.items():
    for i in range(value.shape[0]):
      flat[f'{seed_prefix(i)}/{name}'] = value[i]
  return flat


def seeds_step_fn(seeds: SeedStates, train_batch: PyTree, val_batch: PyTree,
                  *, axis_name: str | None = None
                  ) -> tuple[SeedStates, dict[str, jax.Array]]:
  """`jaxdarts.core.step.search_step_fn` vmapped over the seed axis.

  Args:
    seeds: the stacked states.
    train_batch, val_batch: ``[N, B, ...]``: seed i's batches at row i.
    axis_name: the device axis, as in ``search_step_fn``.

  Returns:
    ``(seeds, metrics)``, the metrics as :func:`per_seed_metrics`.
  """
  step = functools.partial(search_step_fn, axis_name=axis_name)
  states, metrics = jax.vmap(step)(seeds.states, train_batch, val_batch)
  return SeedStates(states), per_seed_metrics(metrics)


seeds_search_step = jax.jit(seeds_step_fn, static_argnames='axis_name',
                            donate_argnums=0)
seeds_search_step.__doc__ = """:func:`seeds_step_fn`, jitted; donates the
input states."""


@functools.lru_cache(maxsize=None)
def _mesh_seeds(mesh: jax.sharding.Mesh):
  spec = P(None, parallel.AXIS)  # Seeds replicated, each batch split.
  step = jax.shard_map(
      functools.partial(seeds_step_fn, axis_name=parallel.AXIS), mesh=mesh,
      in_specs=(P(), spec, spec), out_specs=P(), check_vma=False)
  return jax.jit(step, donate_argnums=0)


def mesh_seeds_step(seeds: SeedStates, train_batch: PyTree,
                    val_batch: PyTree, *, mesh: jax.sharding.Mesh):
  """:func:`seeds_step_fn` on every device of ``mesh``.

  Args:
    seeds: replicated on the mesh; donated.
    train_batch, val_batch: ``[N, B, ...]`` global batches split over the
      mesh along ``B`` (:func:`mesh_shard_seeds`).
    mesh: a mesh with the one axis `jaxdarts.core.parallel.AXIS`.

  Returns:
    ``(seeds, metrics)``, replicated on the mesh.
  """
  return _mesh_seeds(mesh)(seeds, train_batch, val_batch)


def mesh_shard_seeds(batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """``[N, rows, ...]`` (this process's rows of every seed's global batch)
  as global arrays split over ``mesh`` along the batch axis.

  Raises:
    ValueError: the global batch does not split evenly over the devices.
  """
  sharding = NamedSharding(mesh, P(None, parallel.AXIS))

  def put(x):
    parallel.check_batch_size(x.shape[1] * jax.process_count(), mesh.size)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))

  return jax.tree.map(put, batch)
