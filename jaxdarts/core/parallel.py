"""Data parallelism: the same per-device step on many devices and hosts.

:func:`jaxdarts.core.step.search_step_fn` and
:func:`jaxdarts.core.train.train_step_fn` take an ``axis_name``; mapped over it,
they average gradients, metrics and BatchNorm batch statistics across the
devices, so N devices, each on ``B / N`` examples of a global batch of
``B``, compute what one device computes on all ``B`` (up to float rounding).
Two wrappers map them, with helpers to move states and batches:

* ``jax.pmap`` over this host's devices: :data:`pmap_search_step`,
  :func:`pmap_train_step`; the state is stacked along a leading device axis
  (:func:`replicate` / :func:`unreplicate`) and a batch split into
  ``[devices, B / devices, ...]`` (:func:`shard`)::

      state = parallel.replicate(state)
      for train_batch, val_batch in batches:
        state, metrics = parallel.pmap_search_step(
            state, parallel.shard(train_batch), parallel.shard(val_batch))
      state = parallel.unreplicate(state)

* a mesh of the devices of every process (``jax.make_mesh`` and
  ``jax.shard_map``): :func:`mesh_search_step`, :func:`mesh_train_step`;
  the state is one global array replicated on the mesh
  (:func:`mesh_replicate`, back with :func:`mesh_unreplicate`) and each
  process passes its own rows of every global batch (:func:`mesh_shard`).
  This is the path `jaxdarts.run.search.run_search` and
  `jaxdarts.train_runner.run_train` take::

      mesh = parallel.make_mesh()              # every device of every host
      state = parallel.mesh_replicate(state, mesh)
      for train_batch, val_batch in batches:   # this process's rows
        state, metrics = parallel.mesh_search_step(
            state, parallel.mesh_shard(train_batch, mesh),
            parallel.mesh_shard(val_batch, mesh), mesh=mesh)

Several hosts: call :func:`initialize` before anything else touches JAX;
every process then runs the same program on its own share of the data.

Both wrappers map with the pmap convention (``check_vma=False`` in
``shard_map``): the gradient a device takes includes the other devices'
losses through the BatchNorm collectives, and the steps' ``pmean`` of those
gradients is then the gradient of the global loss.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdarts.core.step import search_step_fn
from jaxdarts.core.train import train_step_fn

PyTree = Any

AXIS = 'data'
"""The name of the mapped device axis (and of the mesh's only axis)."""


# ---------------------------------------------------------------------------
# Processes, devices and batch sizes.


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None, *,
               detect: bool = False) -> bool:
  """Joins a multi-process run with ``jax.distributed.initialize``.

  Call it first, before any other JAX call. It initialises when an address
  is given (or ``JAX_COORDINATOR_ADDRESS`` is set), or with ``detect=True``,
  where JAX finds the cluster itself (Cloud TPU pods, SLURM, Open MPI,
  Kubernetes); otherwise the run stays single-process. On CPU the
  processes' collectives use gloo, JAX's default.

  Args:
    coordinator_address: ``host:port`` of process 0, the same for all.
    num_processes: the number of processes.
    process_id: this process's index, 0 to ``num_processes - 1``.
    detect: initialise even without an address, letting JAX detect the
      cluster.

  Returns:
    Whether the run is (now) multi-process.
  """
  if jax.distributed.is_initialized():
    return True
  address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not (address or detect):
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ValueError(
          f'num_processes={num_processes}, process_id={process_id} need a '
          'coordinator_address (host:port of process 0) to meet at.')
    return False
  jax.distributed.initialize(address, num_processes, process_id)
  return True


def local_devices(num_devices: int | None = None) -> list[jax.Device]:
  """The first ``num_devices`` of this process's devices (None: all)."""
  local = jax.local_devices()
  if num_devices is None:
    return local
  if not 1 <= num_devices <= len(local):
    raise ValueError(
        f'num_devices={num_devices}, but this process has {len(local)} '
        f'{jax.default_backend()} device{"s" if len(local) > 1 else ""}; use '
        f'1 to {len(local)}, or None for all of them.')
  return local[:num_devices]


def devices(num_devices: int | None = None) -> list[jax.Device]:
  """:func:`local_devices` of every process, process by process."""
  count = len(local_devices(num_devices))
  return [d for p in range(jax.process_count())
          for d in jax.local_devices(process_index=p)[:count]]


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A one-axis (:data:`AXIS`) mesh of :func:`devices`.

  ``jax.make_mesh`` may order the devices for the interconnect (a ring on
  TPUs); the rows of a global batch then reach the devices in that order,
  which changes nothing but float rounding: losses and BatchNorm statistics
  are means over the whole batch.

  Args:
    num_devices: devices per process; None: all of them.
  """
  chosen = devices(num_devices)
  return jax.make_mesh((len(chosen),), (AXIS,), devices=chosen,
                       axis_types=(jax.sharding.AxisType.Auto,))


def check_batch_size(batch_size: int, num_devices: int,
                     name: str = 'batch size') -> None:
  """Refuses a global batch that does not split evenly over the devices.

  Raises:
    ValueError: naming the nearest valid batch sizes.
  """
  if batch_size % num_devices == 0:
    return
  lower = batch_size // num_devices * num_devices
  sizes = [s for s in (lower, lower + num_devices) if s > 0]
  nearest = ' and '.join(map(str, sizes))
  raise ValueError(
      f'The global {name} {batch_size} does not split evenly over '
      f'{num_devices} devices; the nearest valid size'
      f'{"s are" if len(sizes) > 1 else " is"} {nearest} (or use a number '
      'of devices that divides it).')


# ---------------------------------------------------------------------------
# jax.pmap over this process's devices.


pmap_search_step = jax.pmap(
    functools.partial(search_step_fn, axis_name=AXIS), axis_name=AXIS,
    donate_argnums=0)
pmap_search_step.__doc__ = """`jaxdarts.search_step` on this host's devices.

``(state, train_batch, val_batch) -> (state, metrics)`` with the state
stacked by :func:`replicate` and batches split by :func:`shard`; the
metrics come back stacked too (every row equal). Donates the input state.
"""


def _train_step(state, batch, drop_path_rate, auxiliary_weight):
  return train_step_fn(state, batch, drop_path_rate=drop_path_rate,
                       auxiliary_weight=auxiliary_weight, axis_name=AXIS)


_pmapped_train_step = jax.pmap(
    _train_step, axis_name=AXIS, in_axes=(0, 0, None),
    static_broadcasted_argnums=(3,), donate_argnums=0)


def pmap_train_step(state, batch, *, drop_path_rate: float | jax.Array = 0.,
                    auxiliary_weight: float = 0.4):
  """`jaxdarts.core.train.train_step` on this host's devices (see
  :data:`pmap_search_step`; the arguments are ``train_step``'s)."""
  return _pmapped_train_step(state, batch,
                             jnp.asarray(drop_path_rate, jnp.float32),
                             auxiliary_weight)


def replicate(tree: PyTree, num_devices: int | None = None) -> PyTree:
  """A copy of ``tree`` on each of the first ``num_devices`` local devices
  (None: all), stacked along a new leading axis: the pmapped steps' state."""
  local = local_devices(num_devices)
  sharding = NamedSharding(jax.sharding.Mesh(np.array(local), (AXIS,)),
                           P(AXIS))
  return jax.device_put(
      jax.tree.map(lambda x: jnp.stack([x] * len(local)), tree), sharding)


def unreplicate(tree: PyTree) -> PyTree:
  """The first device's copy of a stacked tree (a pmapped step's output)."""
  return jax.tree.map(lambda x: x[0], tree)


def shard(batch: PyTree, num_devices: int | None = None) -> PyTree:
  """Splits a host batch ``[B, ...]`` into ``[devices, B / devices, ...]``.

  Raises:
    ValueError: ``B`` does not split evenly (naming the nearest sizes).
  """
  n = num_devices or jax.local_device_count()

  def split(x):
    check_batch_size(x.shape[0], n)
    return np.asarray(x).reshape((n, x.shape[0] // n) + x.shape[1:])

  return jax.tree.map(split, batch)


# ---------------------------------------------------------------------------
# A mesh over every process's devices (jax.shard_map).


@functools.lru_cache(maxsize=None)
def _mesh_search(mesh: jax.sharding.Mesh):
  step = jax.shard_map(
      functools.partial(search_step_fn, axis_name=AXIS), mesh=mesh,
      in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P(), check_vma=False)
  return jax.jit(step, donate_argnums=0)


def mesh_search_step(state, train_batch, val_batch, *,
                     mesh: jax.sharding.Mesh):
  """`jaxdarts.search_step` on every device of ``mesh``.

  Args:
    state: replicated on the mesh (:func:`mesh_replicate`); donated.
    train_batch, val_batch: global batches split over the mesh
      (:func:`mesh_shard`).
    mesh: a mesh with the one axis :data:`AXIS` (:func:`make_mesh`).

  Returns:
    ``(state, metrics)``, replicated on the mesh.
  """
  return _mesh_search(mesh)(state, train_batch, val_batch)


@functools.lru_cache(maxsize=None)
def _mesh_train(mesh: jax.sharding.Mesh, auxiliary_weight: float):
  step = jax.shard_map(
      functools.partial(_train_step, auxiliary_weight=auxiliary_weight),
      mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=P(), check_vma=False)
  return jax.jit(step, donate_argnums=0)


def mesh_train_step(state, batch, *, mesh: jax.sharding.Mesh,
                    drop_path_rate: float | jax.Array = 0.,
                    auxiliary_weight: float = 0.4):
  """`jaxdarts.core.train.train_step` on every device of ``mesh`` (see
  :func:`mesh_search_step`; the other arguments are ``train_step``'s)."""
  return _mesh_train(mesh, auxiliary_weight)(
      state, batch, jnp.asarray(drop_path_rate, jnp.float32))


def mesh_replicate(tree: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """``tree`` as global arrays with a full copy on every device of ``mesh``.

  With several processes, every process must pass the same values (host
  arrays, or arrays not yet committed to a device, such as a fresh
  initialisation); JAX checks that they agree. The result shares no buffer
  with ``tree``, so ``tree`` outlives the steps that donate the result.
  """
  copy = jax.tree.map(jnp.copy, tree)  # device_put may alias its input.
  return jax.device_put(copy, NamedSharding(mesh, P()))


def mesh_unreplicate(tree: PyTree) -> PyTree:
  """One local copy of a replicated tree: single-device arrays, usable with
  the unmapped steps or saved from any process."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


def mesh_shard(batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """A global batch split over ``mesh`` from this process's rows of it.

  Args:
    batch: this process's contiguous block of the global batch (all of it
      in a single-process run), e.g. from ``jaxdarts.data.Batches(...,
      shard_index=jax.process_index(), shard_count=jax.process_count())``.
    mesh: the mesh the step runs on.

  Raises:
    ValueError: the global batch does not split evenly over the devices.
  """
  sharding = NamedSharding(mesh, P(AXIS))

  def put(x):
    check_batch_size(x.shape[0] * jax.process_count(), mesh.size)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))

  return jax.tree.map(put, batch)
