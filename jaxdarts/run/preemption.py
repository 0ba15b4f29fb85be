"""Stopping a run cleanly on SIGTERM: save the current step, then exit."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import types
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger(__name__)


class PreemptionGuard:
  """Turns SIGTERM (by default) into a flag the training loop polls.

  Inside ``with PreemptionGuard() as guard:`` the first delivery of a guarded
  signal only sets ``guard.requested``; the loop checks it between steps,
  saves with ``force=True`` and exits. A second delivery runs the handler
  that was installed before (so a second Ctrl-C or SIGTERM still stops the
  process). The previous handlers are restored on exit. Must be entered in
  the main thread.

  This is the single-host mechanism. On multi-host TPU/GPU runs with JAX's
  preemption service, ``jax.experimental.multihost_utils
  .reached_preemption_sync_point(step)`` gives all processes the same step to
  stop at, and orbax's ``CheckpointManager.should_save`` already saves at it.

  Attributes:
    requested: Whether a guarded signal arrived.
  """

  def __init__(self, signals: Iterable[int] = (signal.SIGTERM,)) -> None:
    """Prepares the guard.

    Args:
      signals: The signals to catch, e.g. ``(signal.SIGTERM, signal.SIGINT)``.
    """
    self.requested = False
    self._signals = tuple(signals)
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> PreemptionGuard:
    for signum in self._signals:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info: object) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    """Sets the flag; on a repeated signal, defers to the previous handler."""
    if not self.requested:
      self.requested = True
      logger.warning('received %s; stopping after the current step',
                     signal.Signals(signum).name)
      return
    previous = self._previous.get(signum, signal.SIG_DFL)
    if callable(previous):
      previous(signum, frame)
    elif previous == signal.SIG_DFL:
      signal.signal(signum, signal.SIG_DFL)
      signal.raise_signal(signum)


@contextlib.contextmanager
def main_thread_guard() -> Iterator[PreemptionGuard]:
  """A `PreemptionGuard` for SIGTERM, entered if this is the main thread.

  Signal handlers can only be installed from the main thread; elsewhere
  (e.g. a notebook's worker thread) the guard is never requested.
  """
  if threading.current_thread() is threading.main_thread():
    with PreemptionGuard() as guard:
      yield guard
  else:
    yield PreemptionGuard()
