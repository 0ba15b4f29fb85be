"""DARTS-ES: stop the search when the Hessian's dominant eigenvalue grows.

Zela et al. ("Understanding and Robustifying Differentiable Architecture
Search", ICLR 2020, sec. 4.2) stop DARTS before it collapses: with the
dominant eigenvalue ``lambda`` of the architecture Hessian computed every
``every`` epochs, and ``lambda_bar`` its local average over a window of
``window`` evaluations, the search stops once

    lambda_bar(now) / lambda_bar(delta evaluations earlier) > factor,

and the architecture kept is the one of the epoch the earlier average
stands for. The defaults are those of the authors' code: an evaluation
every 2 epochs, a window of 5, ``delta = 4``, ``factor = 1.3``, and no stop
whose kept epoch would be before epoch 10.

As in that code, a local average is formed once ``ceil(window / 2)``
eigenvalues exist (the mean of all of them until there are ``window``, then
of the last ``window``), and it stands for the epoch at the window's centre,
``every * floor(window / 2)`` epochs before the newest evaluation; the stop
epoch is ``every * delta`` epochs before that. :func:`decide` is a pure
function of the evaluations so far, so a resumed run decides exactly as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


@dataclasses.dataclass(frozen=True)
class EarlyStopRule:
  """The DARTS-ES constants (``config.search.early_stop``).

  Attributes:
    every: epochs between eigenvalue evaluations; an epoch ``e`` (0-based)
      is evaluated when ``(e + 1) % every == 0``.
    window: evaluations averaged into one local average.
    delta: how many local averages back the current one is compared with.
    factor: stop when the ratio exceeds it.
    start_epoch: no stop whose stop epoch is before this epoch.
  """
  every: int = 2
  window: int = 5
  delta: int = 4
  factor: float = 1.3
  start_epoch: int = 10

  def __post_init__(self):
    for name in ('every', 'window', 'delta'):
      if getattr(self, name) < 1:
        raise ValueError(f'config.search.early_stop.{name} must be >= 1, got '
                         f'{getattr(self, name)}')

  @classmethod
  def from_config(cls, fields: Mapping[str, Any]) -> EarlyStopRule:
    """The rule of ``config.search.early_stop`` (its ``enabled`` ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in names})

  def evaluates(self, epoch: int) -> bool:
    """Whether the eigenvalue is evaluated at the end of ``epoch``."""
    return (epoch + 1) % self.every == 0


class Decision(NamedTuple):
  """The rule's verdict after the newest evaluation.

  Attributes:
    stop: whether to stop now.
    stop_epoch: the epoch whose genotype to keep (None unless ``stop``).
    ratio: the local averages' ratio, or None when the rule could not be
      applied yet (too few evaluations, or before ``start_epoch``).
    local_average: the newest local average, or None if none exists yet.
  """
  stop: bool
  stop_epoch: int | None
  ratio: float | None
  local_average: float | None


def local_averages(eigenvalues: Sequence[float], window: int) -> list[float]:
  """The local averages after each evaluation from the ``ceil(window/2)``-th
  on: the mean of the first ``n`` values while ``n < window``, then of the
  last ``window``."""
  first = math.ceil(window / 2)
  return [sum(eigenvalues[max(0, n - window):n]) / min(n, window)
          for n in range(first, len(eigenvalues) + 1)]


def decide(evaluations: Sequence[tuple[int, float]],
           rule: EarlyStopRule = EarlyStopRule()) -> Decision:
  """Applies DARTS-ES after the newest of ``evaluations``.

  Args:
    evaluations: ``(epoch, dominant eigenvalue)`` of every evaluation so far,
      oldest first (the epochs where ``rule.evaluates``).
    rule: the constants.

  Returns:
    The decision; ``stop_epoch = e - every * (floor(window / 2) + delta)``
    for the newest evaluation's epoch ``e``.
  """
  if not evaluations:
    return Decision(False, None, None, None)
  averages = local_averages([v for _, v in evaluations], rule.window)
  newest = averages[-1] if averages else None
  centre = evaluations[-1][0] - rule.every * (rule.window // 2)
  stop_epoch = centre - rule.every * rule.delta
  if (len(averages) <= rule.delta or stop_epoch < rule.start_epoch
      or averages[-1 - rule.delta] == 0):
    return Decision(False, None, None, newest)
  ratio = averages[-1] / averages[-1 - rule.delta]
  stop = ratio > rule.factor
  return Decision(stop, stop_epoch if stop else None, ratio, newest)
