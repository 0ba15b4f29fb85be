"""Pytree helpers for checkpoints: typed PRNG keys as raw data, leaf specs.

Orbax stores arrays, not typed PRNG keys (``jax.random.key``): `encode_keys`
replaces each key by its raw ``uint32`` data before a save and `decode_keys`
wraps the restored data again with the target state's key implementation.
`leaf_specs` names every leaf by its path, as orbax's metadata does, to
compare a checkpoint with the state it restores into.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

PyTree = Any


def is_key(x: Any) -> bool:
  """Whether ``x`` is an array (or abstract array) of typed PRNG keys."""
  return isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and (
      jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))


def encode_keys(tree: PyTree) -> PyTree:
  """Replaces typed PRNG keys by their raw uint32 key data."""

  def encode(x):
    if not is_key(x):
      return x
    if isinstance(x, jax.ShapeDtypeStruct):
      data = jax.eval_shape(jax.random.key_data, x)
      return jax.ShapeDtypeStruct(data.shape, data.dtype,
                                  sharding=_key_data_sharding(x))
    return jax.random.key_data(x)

  return jax.tree.map(encode, tree)


def _key_data_sharding(x: jax.ShapeDtypeStruct) -> Any:
  """The sharding of an abstract key's data: a replicated named sharding
  keeps its mesh (the data has one more, unsharded axis); others are
  dropped."""
  sharding = x.sharding
  if isinstance(sharding, jax.sharding.NamedSharding) and not any(
      sharding.spec):
    return sharding
  return None


def _key_impl(x: Any) -> Any:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x.dtype._impl  # pylint: disable=protected-access
  return jax.random.key_impl(x)


def decode_keys(restored: PyTree, target: PyTree) -> PyTree:
  """Puts restored leaves into the target's tree, re-wrapping PRNG keys."""
  leaves, treedef = jax.tree.flatten(target)
  values = jax.tree.leaves(restored)
  if len(values) != len(leaves):
    raise ValueError(
        f'restored {len(values)} arrays, the state has {len(leaves)}')
  out = [
      jax.random.wrap_key_data(v, impl=_key_impl(t))
      if is_key(t) else v for v, t in zip(values, leaves)]
  return jax.tree.unflatten(treedef, out)


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
  """Turns a jax key path into plain names, as orbax's metadata uses."""
  names = []
  for entry in path:
    for attr in ('name', 'key', 'idx'):
      if hasattr(entry, attr):
        names.append(str(getattr(entry, attr)))
        break
    else:
      names.append(str(entry))
  return tuple(names)


def leaf_specs(tree: PyTree) -> dict[tuple[str, ...], tuple[Any, Any]]:
  """Maps each leaf's path to its ``(shape, dtype)``, None where unknown.

  Python scalars have shape ``()`` and no dtype (orbax stores them as 64-bit
  numbers and returns Python scalars).
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  specs = {}
  for path, leaf in flat:
    if isinstance(leaf, (int, float, bool)):
      specs[path_names(path)] = ((), None)
      continue
    shape = getattr(leaf, 'shape', None)
    dtype = getattr(leaf, 'dtype', None)
    specs[path_names(path)] = (
        None if shape is None else tuple(shape),
        None if dtype is None else np.dtype(dtype))
  return specs
