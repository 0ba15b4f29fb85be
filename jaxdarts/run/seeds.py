"""A search of several seeds in one program (``config.search.seeds = N``).

`jaxdarts.run.search.run_search` hands a config with ``search.seeds > 1``
to :func:`run_seeds`: N independent searches, seed ``i`` with the seed
``config.search.seed + i`` (its initialisation and its own data order and
augmentation, exactly as a run with ``--config.search.seed=<seed + i>``),
stacked along a leading seed axis (`jaxdarts.core.seeds.SeedStates`) and
advanced by one vmapped step, compiled once. The paper ran four searches
and kept the best cell after a short retraining
(``experiments/select_seeds.py``).

The workdir holds what every seed shares: ``config.json``, the
``checkpoints/`` (one checkpoint of all seeds; a resumed run is bitwise
the uninterrupted one), ``metrics.jsonl`` and TensorBoard (the means over
seeds, and seed i's values as ``seed_<i>/NAME``); and one directory per
seed, ``seed_<i>/``, laid out as a one-seed search's workdir: its
``config.json`` (the config of the equivalent one-seed run),
``metrics.jsonl``, ``genotypes/``, ``alphas/``, ``genotype.json``,
``genotype.txt`` and ``cells/``.

Health: every seed's collapse signals and, every
``config.search.eigenvalue_every`` epochs, its Hessian eigenvalue
(`jaxdarts.run.health`) go to its ``metrics.jsonl``, so the report draws
them per seed. DARTS-ES early stopping would end the seeds at different
epochs and is refused: run those seeds separately.

Devices: each seed's global batch is split over the devices as in a
one-seed search and the seed axis is replicated, so every device holds
all N states (N times a search's memory).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdarts import data as data_lib
from jaxdarts.core import seeds as seeds_lib
from jaxdarts.core.seeds import SeedStates
from jaxdarts.data.streams import Stream
from jaxdarts.run import loop
from jaxdarts.run import search
from jaxdarts.run.evaluate import evaluate
from jaxdarts.run.workdir import Workdir

logger = logging.getLogger('jaxdarts.run')


def num_seeds(config: ml_collections.ConfigDict) -> int:
  """``config.search.seeds`` (1 if absent), checked.

  Raises:
    ValueError: it is not a positive integer.
  """
  count = config.search.get('seeds', 1)
  if isinstance(count, bool) or not isinstance(count, int) or count < 1:
    raise ValueError(f'config.search.seeds must be an integer >= 1 (the '
                     f'number of searches to run together), got {count!r}')
  return count


def seed_values(config: ml_collections.ConfigDict) -> list[int]:
  """The seed of each search: ``config.search.seed + i``."""
  return [config.search.seed + i for i in range(num_seeds(config))]


def seed_config(config: ml_collections.ConfigDict,
                index: int) -> ml_collections.ConfigDict:
  """The config of the one-seed run that seed ``index`` reproduces."""
  one = config.copy_and_resolve_references()
  one.search.seed = config.search.seed + index
  one.search.seeds = 1
  return one


class SeedBatches(Stream):
  """The seeds' ``(train, val)`` pairs stacked: ``[N, rows, ...]`` each.

  Seed i's rows are those of `jaxdarts.run.search.search_batches` with the
  seed ``config.search.seed + i``.
  """

  def __init__(self, config: ml_collections.ConfigDict,
               halves: search.Halves,
               start: data_lib.Position = data_lib.Position()):
    self._streams = [search.search_batches(config, halves, start, seed=seed)
                     for seed in seed_values(config)]
    super().__init__(self._streams[0].steps_per_epoch, start)

  def at(self, position: data_lib.Position):
    pairs = [stream.at(position) for stream in self._streams]
    return tuple(jax.tree.map(lambda *xs: np.stack(xs), *half)
                 for half in zip(*pairs))


def initial_states(config: ml_collections.ConfigDict, halves: search.Halves,
                   num_steps: int) -> SeedStates:
  """Every seed's fresh state, stacked (seed i from ``PRNGKey(seed + i)``)."""
  keys = jnp.stack([jax.random.PRNGKey(s) for s in seed_values(config)])
  return seeds_lib.stack_states(
      lambda key: search.initial_state(config, halves, num_steps, rng=key),
      keys)


def run_seeds(config: ml_collections.ConfigDict, workdir: Any,
              mesh: jax.sharding.Mesh,
              halves: search.Halves) -> search.SearchResult:
  """Runs (or resumes) the N searches; see the module docstring.

  Returns:
    `jaxdarts.run.search.SearchResult` with the `SeedStates` and the tuple
    of the seeds' genotypes.
  """
  fields = config.search.get('early_stop', None)
  if fields is not None and fields.get('enabled', False):
    raise ValueError(
        'config.search.early_stop.enabled with config.search.seeds > 1: '
        'DARTS-ES would stop each seed at its own epoch. Run the seeds as '
        'separate searches (--config.search.seed=S), or turn early stopping '
        'off (--config.search.early_stop.enabled=False).')
  job = SeedsJob(config, halves, mesh, workdir)
  states, finished = loop.run_or_resume(
      job, config,
      functools.partial(initial_states, config, halves, job.num_steps), mesh,
      model_config=search.model_config(config),
      model_config_defaults=search.MODEL_CONFIG_DEFAULTS)
  return search.SearchResult(states, states.genotypes(), finished)


class SeedsJob(search.SearchJob):
  """The loop's job for N seeds (see `jaxdarts.run.loop.Job`)."""

  def __init__(self, config: ml_collections.ConfigDict,
               halves: search.Halves, mesh: jax.sharding.Mesh,
               workdir: Workdir):
    super().__init__(config, halves, mesh, workdir)
    self.seeds = seed_values(config)
    self.seed_workdirs = [workdir.seed(i) for i in range(len(self.seeds))]
    self.previous = [None] * len(self.seeds)

  def start(self, state: SeedStates, position: data_lib.Position) -> None:
    del state
    if loop.is_writer():
      for i, seed_dir in enumerate(self.seed_workdirs):
        seed_dir.write_config(seed_config(self.config, i))
    self.previous = [w.epoch_genotype(position.epoch - 1)
                     for w in self.seed_workdirs]

  def already_finished(self, state: SeedStates) -> None:
    logger.info('The %d searches in %s already finished (step %d); their '
                'genotypes are in %s/seed_*/genotype.txt', len(self.seeds),
                self.workdir.path, int(state.step), self.workdir.path)

  def batches(self, position: data_lib.Position):
    return data_lib.prefetch(
        SeedBatches(self.config, self.halves, position),
        transform=functools.partial(seeds_lib.mesh_shard_seeds,
                                    mesh=self.mesh))

  def step(self, state: SeedStates, batch, step: int):
    del step
    return seeds_lib.mesh_seeds_step(state, *batch, mesh=self.mesh)

  def end_epoch(self, state: SeedStates, epoch: int, record) -> None:
    """Evaluates each seed's supernet and health and writes each seed's
    outputs."""
    values, means = {}, {}
    for i, seed_dir in enumerate(self.seed_workdirs):
      one = state.seed(i)
      results = {f'supernet_val_{k}': v for k, v in evaluate(
          one, self.halves.alphas_half, self.config.search.batch_size,
          self.mesh).items()}
      genotype = one.genotype()
      strengths = one.method.strengths(jax.device_get(one.alphas))
      health = self.health.signals(one, epoch, genotype, strengths)
      prefix = seeds_lib.seed_prefix(i)
      for k, v in {**results, **health}.items():
        values[f'{prefix}/{k}'] = v
        means.setdefault(k, []).append(v)
      if loop.is_writer():
        seed_dir.write_epoch(epoch, genotype, strengths,
                             one.model.space.primitives)
        if epoch + 1 == self.epochs:
          seed_dir.write_genotype(genotype)
          draw = search._draw  # pylint: disable=protected-access
          draw(genotype, seed_dir / 'cells')
      previous, self.previous[i] = self.previous[i], genotype
      change = ('unchanged' if genotype.same_architecture(previous) else
                f'{"derived" if previous is None else "changed"}: {genotype}')
      logger.info('epoch %d/%d done, seed %d (%d): supernet val %s; genotype '
                  '%s', epoch + 1, self.epochs, i, self.seeds[i],
                  ', '.join(f'{k.removeprefix("supernet_val_")} {v:.4f}'
                            for k, v in results.items()),
                  change)
    record({**{k: float(np.mean(v)) for k, v in means.items()}, **values})
