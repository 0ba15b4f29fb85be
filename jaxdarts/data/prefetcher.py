"""A background thread that produces a stream's batches ahead of the consumer.

Behind the prefetcher, checkpoint the prefetcher's ``position`` (what the
consumer has received), never the wrapped stream's (it runs ahead).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from jaxdarts.data.streams import Position, Stream


class _End(NamedTuple):
  pass


class _Failure(NamedTuple):
  error: BaseException


class Prefetcher:
  """Produces the items of an iterator in a background thread.

  Yields the same sequence as the iterator. When the source is a
  :class:`Batches` or :class:`SearchBatches`, :attr:`position` is the
  position of the next item the consumer will receive, so it is what to
  checkpoint; the source itself is then off limits (it runs ahead).
  An exception in the producer is raised by the consumer's ``next``.
  Call :meth:`close` (or use ``with``) when done; an unclosed producer idles
  in a daemon thread.
  """

  def __init__(self, source: Any, size: int = 2, *,
               transform: Callable[[Any], Any] | None = None):
    """Starts the producer thread.

    Args:
      source: an iterator.
      size: items produced ahead, at most.
      transform: applied to each item in the producer thread (e.g.
        ``jax.device_put``).
    """
    if size < 1:
      raise ValueError(f'prefetch size must be >= 1, got {size}.')
    self._source = source
    self._transform = transform
    self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    if isinstance(source, Stream):
      self._position: Position | None = source.position
      self._steps_per_epoch: int | None = source.steps_per_epoch
      source._prefetcher_owned = True  # pylint: disable=protected-access
      self._produce = source._produce  # pylint: disable=protected-access
    else:
      iterator = iter(source)
      self._position = None
      self._steps_per_epoch = None
      self._produce = lambda: (next(iterator), None)
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='jaxdarts-prefetch')
    self._thread.start()

  @property
  def position(self) -> Position:
    """Position of the next item the consumer will receive."""
    if self._position is None:
      raise TypeError(f'{type(self._source).__name__} has no position; '
                      'prefetch a Batches or SearchBatches to get one.')
    return self._position

  @property
  def steps_per_epoch(self) -> int:
    if self._steps_per_epoch is None:
      raise TypeError(f'{type(self._source).__name__} has no epochs.')
    return self._steps_per_epoch

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  def _run(self):
    try:
      while not self._stop.is_set():
        item, position = self._produce()
        if self._transform is not None:
          item = self._transform(item)
        if not self._put((item, position)):
          return
    except StopIteration:
      self._put(_End())
    except BaseException as error:  # pylint: disable=broad-except
      self._put(_Failure(error))

  def __iter__(self) -> Prefetcher:
    return self

  def __next__(self) -> Any:
    if self._done:
      raise StopIteration
    while True:
      try:
        entry = self._queue.get(timeout=0.5)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          self._done = True
          raise StopIteration from None
    if isinstance(entry, _End):
      self._done = True
      raise StopIteration
    if isinstance(entry, _Failure):
      self.close()
      raise entry.error
    item, position = entry
    if position is not None:
      self._position = position
    return item

  def close(self):
    """Stops the producer; later ``next`` calls raise StopIteration."""
    self._done = True
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    if self._thread is not threading.current_thread():
      self._thread.join(timeout=5.0)

  def __enter__(self) -> Prefetcher:
    return self

  def __exit__(self, *exc_info: Any):
    self.close()


def prefetch(iterator: Any, size: int = 2, *,
             transform: Callable[[Any], Any] | None = None) -> Prefetcher:
  """Wraps an iterator in a :class:`Prefetcher` (a background producer).

  Checkpoint ``prefetcher.position``, never the wrapped stream's.
  """
  return Prefetcher(iterator, size, transform=transform)
