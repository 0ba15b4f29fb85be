"""A full pass over a split: every example once, one compiled step.

The last, short batch is padded to the batch size and the padding masked
out, so the evaluation compiles once and counts every example exactly once;
the task (:mod:`jaxdarts.tasks`) turns the added sums into its metrics.
Used for the supernet during a search and for the retrained network.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxdarts import data as data_lib
from jaxdarts.core import parallel
from jaxdarts.core.evaluate import eval_step


def evaluate(state, dataset: data_lib.Dataset, batch_size: int,
             mesh: jax.sharding.Mesh | None = None) -> dict[str, float]:
  """The task's metrics of ``state`` on every example of ``dataset``.

  Args:
    state: a search or retraining state (``predict`` and ``task``).
    dataset: the split.
    batch_size: examples per step; with a ``mesh``, rounded up to a multiple
      of its devices.
    mesh: split each batch over its devices, each process reading its rows
      of every batch; None runs on the default device.

  Returns:
    ``state.task.summarize`` of the sums, e.g. ``{'loss', 'accuracy'}``.
  """
  shard = lambda tree: tree
  shard_index, shard_count = 0, 1
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
    shard = functools.partial(parallel.mesh_shard, mesh=mesh)
    shard_index, shard_count = jax.process_index(), jax.process_count()
  rows = batch_size // shard_count
  sums = []
  for batch in data_lib.eval_batches(dataset, batch_size,
                                     shard_index=shard_index,
                                     shard_count=shard_count):
    count = batch['label'].shape[0]
    mask = (np.arange(rows) < count).astype(np.float32)
    padded = {k: np.concatenate(
        [v, np.zeros((rows - count,) + v.shape[1:], v.dtype)])
              for k, v in batch.items()}
    sums.append(eval_step(state, shard(padded), shard(mask)))
  total = jax.tree.map(lambda *xs: np.sum(np.asarray(xs, np.float64), 0),
                       *jax.device_get(sums))
  return state.task.summarize(total)
