"""A search's health at every epoch end, and DARTS-ES early stopping.

:class:`SearchHealth` is the search job's (`jaxdarts.run.search`) part that
records, at each epoch end, the collapse signals of
:mod:`jaxdarts.health.signals` (parameter-free op counts of the derived
cells, mean per-edge entropy and margin of the op weights) and, every
``config.search.eigenvalue_every`` epochs, ``hessian_eigenvalue``: the
dominant eigenvalue of the validation loss's Hessian in the alphas
(:mod:`jaxdarts.health.hessian`) on one fixed validation batch (the first
``config.search.batch_size`` examples of the alphas half, unaugmented).

With ``config.search.early_stop.enabled`` it also applies DARTS-ES
(:mod:`jaxdarts.health.early_stop`) at the epochs the rule evaluates; the
rule's ratio is recorded as ``early_stop_ratio``. On a stop the search
keeps the stop epoch's genotype, writes ``early_stop.json`` and ends.

Resuming: the rule's past eigenvalues are read back from ``metrics.jsonl``
(trimmed to the checkpoint's step), so a resumed run decides as an
uninterrupted one; a multi-process run needs its workdir on a filesystem
every process reads for that.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jax
import ml_collections

from jaxdarts import data as data_lib
from jaxdarts.core import parallel
from jaxdarts.health import early_stop, hessian, signals
from jaxdarts.run.workdir import Workdir

logger = logging.getLogger('jaxdarts.run')

EIGENVALUE = 'hessian_eigenvalue'
RATIO = 'early_stop_ratio'


class SearchHealth:
  """Epoch-end health records and the early-stopping decision of a search."""

  def __init__(self, config: ml_collections.ConfigDict,
               alphas_half: data_lib.Dataset, mesh: jax.sharding.Mesh,
               workdir: Workdir):
    search = config.search
    self.every = int(search.get('eigenvalue_every', 0) or 0)
    self.iterations = int(search.get('eigenvalue_iterations', 20))
    fields = search.get('early_stop', None)
    self.rule = (early_stop.EarlyStopRule.from_config(fields)
                 if fields is not None and fields.get('enabled', False)
                 else None)
    self.batch_size = search.batch_size
    self.alphas_half, self.mesh, self.workdir = alphas_half, mesh, workdir
    self.evaluations: list[tuple[int, float]] = []
    self.genotypes: dict[int, Any] = {}
    self._batch = None

  def stopped(self) -> dict[str, Any] | None:
    """The workdir's early-stop record, if early stopping is on and stopped
    this run before."""
    return self.workdir.early_stop() if self.rule is not None else None

  def start(self, epoch: int) -> None:
    """Reads back the rule's evaluations of the epochs before ``epoch``."""
    self.evaluations = []
    if self.rule is None or epoch == 0:
      return
    try:
      records = self.workdir.metrics()
    except FileNotFoundError:
      return
    for record in records:
      at = int(record.get('epoch', -1))
      if EIGENVALUE in record and at < epoch and self.rule.evaluates(at):
        self.evaluations.append((at, record[EIGENVALUE]))

  def evaluates(self, epoch: int) -> bool:
    """Whether the eigenvalue is computed at the end of ``epoch``."""
    return bool((self.every and (epoch + 1) % self.every == 0)
                or (self.rule is not None and self.rule.evaluates(epoch)))

  def eigenvalue(self, state) -> float:
    """The dominant Hessian eigenvalue at ``state`` on the fixed batch."""
    if self._batch is None:
      batch = next(data_lib.eval_batches(
          self.alphas_half, self.batch_size,
          shard_index=jax.process_index(), shard_count=jax.process_count()))
      self._batch = parallel.mesh_shard(batch, self.mesh)
    start = time.perf_counter()
    value = float(hessian.hessian_max_eigenvalue(
        state, self._batch, iterations=self.iterations))
    logger.info('Hessian eigenvalue %.5g (%d Lanczos steps, %.1f s)', value,
                self.iterations, time.perf_counter() - start)
    return value

  def signals(self, state, epoch: int, genotype: Any,
              strengths: dict[str, Any] | None) -> dict[str, float]:
    """The collapse signals at the end of ``epoch`` and, when due, the
    Hessian eigenvalue; no early-stopping decision."""
    values = signals.architecture_signals(strengths or {}, genotype)
    if self.evaluates(epoch):
      values[EIGENVALUE] = self.eigenvalue(state)
    return values

  def end_epoch(self, state, epoch: int, genotype: Any,
                strengths: dict[str, Any] | None
                ) -> tuple[dict[str, float], early_stop.Decision | None]:
    """The epoch's health values, and the decision if the rule stops.

    Args:
      state: the state at the end of ``epoch``.
      epoch: 0-based.
      genotype: derived at the end of ``epoch``.
      strengths: the method's op weights (None: no entropy or margins).

    Returns:
      ``(values for the epoch-end metrics, the stop decision or None)``.
    """
    values = self.signals(state, epoch, genotype, strengths)
    decision = None
    if EIGENVALUE in values:
      if self.rule is not None and self.rule.evaluates(epoch):
        self.genotypes[epoch] = genotype
        self.evaluations.append((epoch, values[EIGENVALUE]))
        decision = early_stop.decide(self.evaluations, self.rule)
        if decision.ratio is not None:
          values[RATIO] = decision.ratio
    if decision is not None and decision.stop:
      logger.warning(
          'DARTS-ES: the eigenvalue\'s local average grew %.3gx (> %g) in %d '
          'evaluations: stopping at epoch %d, keeping the genotype of epoch '
          '%d.', decision.ratio, self.rule.factor, self.rule.delta,
          epoch + 1, decision.stop_epoch)
      return values, decision
    return values, None

  def stop_genotype(self, stop_epoch: int) -> Any:
    """The genotype of ``stop_epoch`` (kept in memory, else the file)."""
    if stop_epoch in self.genotypes:
      return self.genotypes[stop_epoch]
    genotype = self.workdir.epoch_genotype(stop_epoch)
    if genotype is None:
      raise FileNotFoundError(
          f'DARTS-ES keeps the genotype of epoch {stop_epoch}, but '
          f'{self.workdir / "genotypes"} has no file for it.')
    return genotype
