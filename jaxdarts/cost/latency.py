"""Latency measured on the running backend, cached as a JSON lookup table.

As ProxylessNAS (Cai, Zhu and Han, ICLR 2019) predicts a network's latency
from a table of its candidate ops' latencies, each candidate op here is
jitted alone at its edge's input shape and batch, in evaluation mode, run
``warmup`` times and then timed ``repeats`` times; the table keeps the
median in milliseconds. Its keys name the backend (platform and device
kind), the op (or fixed piece: stem, preprocessor, head), the input shape
with the batch, the stride and the dtype, so one file serves many runs and
machines (``--config.search.budget.latency_table=PATH``). Measured entries
are added to the file; existing ones are reused.

Every jitted call also pays a dispatch overhead that a whole network, one
jitted call, pays once: the table stores the median time of a trivial
jitted call on the same input (``dispatch|...``), subtracts it from each
piece (at least 0) and adds it once to the fixed part.

Measure the DARTS ops of a geometry (and, with a genotype, compare a whole
network's measured latency with the table's prediction)::

    python -m jaxdarts.cost.latency --dataset=digits --channels=8 \\
      --layers=5 --batch=32 --table=/tmp/latency.json [--genotype=...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts.cost import table as table_lib
from jaxdarts.spaces.darts_cnn.space import DARTS_SPACE, SearchSpace

FILE_NAME = 'latency_table.json'


def backend() -> str:
  """The running backend, e.g. ``'cpu:cpu'`` or ``'gpu:NVIDIA H100'``."""
  device = jax.devices()[0]
  return f'{device.platform}:{getattr(device, "device_kind", "")}'


def time_call(fn: Callable, *args, warmup: int = 3,
              repeats: int = 20) -> float:
  """Median wall time of ``fn(*args)`` in ms (results block until ready)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


class LatencyTable:
  """A JSON file of measured latencies ``{key: ms}``, measuring what it
  lacks. ``path=None`` keeps the table in memory."""

  def __init__(self, path: str | os.PathLike | None = None, *,
               warmup: int = 3, repeats: int = 20,
               dtype=jnp.float32):
    self.path = Path(path) if path else None
    self.warmup, self.repeats, self.dtype = warmup, repeats, jnp.dtype(dtype)
    self.entries: dict[str, float] = {}
    if self.path and self.path.exists():
      data = json.loads(self.path.read_text())
      if not isinstance(data, dict) or not isinstance(data.get('entries'),
                                                      dict):
        raise ValueError(f'{self.path} is not a latency table (a JSON '
                         'object with "entries"); delete it or point '
                         'config.search.budget.latency_table elsewhere.')
      self.entries = {k: float(v) for k, v in data['entries'].items()}
    self.measured = 0

  def key(self, what: str, batch: int) -> str:
    return f'{backend()}|{what}|n{batch}|{self.dtype.name}'

  def _raw(self, piece: table_lib.Piece, batch: int) -> float:
    key = self.key(piece.key, batch)
    if key not in self.entries:
      x = jnp.asarray(np.random.default_rng(0).normal(
          size=(batch,) + tuple(piece.shape)), self.dtype)
      variables = piece.module.init(jax.random.key(0), x, train=False)
      fn = jax.jit(lambda v, x: piece.module.apply(v, x, train=False))
      self.entries[key] = time_call(fn, variables, x, warmup=self.warmup,
                                    repeats=self.repeats)
      self.measured += 1
    return self.entries[key]

  def dispatch(self, shape: tuple[int, ...], batch: int) -> float:
    """The time of a trivial jitted call on an input of ``shape``."""
    key = self.key(f'dispatch|{"x".join(map(str, shape))}', batch)
    if key not in self.entries:
      x = jnp.zeros((batch,) + tuple(shape), self.dtype)
      self.entries[key] = time_call(jax.jit(lambda x: x[0, 0, 0, 0]), x,
                                    warmup=self.warmup, repeats=self.repeats)
      self.measured += 1
    return self.entries[key]

  def measure(self, piece: table_lib.Piece, batch: int) -> float:
    """``piece``'s latency less the dispatch overhead, in ms (>= 0)."""
    return max(0., self._raw(piece, batch)
               - self.dispatch(piece.shape, batch))

  def save(self) -> None:
    if self.path:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      tmp = self.path.with_suffix('.tmp')
      tmp.write_text(json.dumps({'entries': dict(sorted(
          self.entries.items()))}, indent=1) + '\n')
      tmp.replace(self.path)


def measure_table(table: table_lib.CostTable, latency: LatencyTable
                  ) -> table_lib.CostTable:
  """``table`` with its ``'ms'`` costs (per batch of ``geometry.batch``),
  measured by (or read from) ``latency``, which is then saved."""
  geometry, space = table.geometry, table.space
  fixed, edges = table_lib.tabulate(
      geometry, space, lambda p: latency.measure(p, geometry.batch))
  fixed += latency.dispatch(tuple(geometry.image_shape), geometry.batch)
  latency.save()
  return table.with_metric('ms', fixed, edges)


def network_latency(genotype, geometry: table_lib.Geometry, *,
                    warmup: int = 3, repeats: int = 20) -> float:
  """Measured ms per batch of ``genotype``'s whole `NetworkCIFAR`
  (evaluation mode, no auxiliary head), one jitted call."""
  from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR
  model = NetworkCIFAR(genotype, channels=geometry.channels,
                       layers=geometry.layers,
                       num_classes=geometry.num_classes, auxiliary=False,
                       stem_multiplier=geometry.stem_multiplier)
  x = jnp.asarray(np.random.default_rng(0).normal(
      size=(geometry.batch,) + tuple(geometry.image_shape)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
  return time_call(fn, variables, x, warmup=warmup, repeats=repeats)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m jaxdarts.cost.latency', description=__doc__.split(
          '\n\n')[0])
  parser.add_argument('--dataset', default='digits',
                      help='digits | cifar10 (sets the image shape and '
                      'classes)')
  parser.add_argument('--channels', type=int, default=8)
  parser.add_argument('--layers', type=int, default=5)
  parser.add_argument('--num_nodes', type=int, default=4)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--table', default=FILE_NAME,
                      help='the JSON lookup table to read and extend')
  parser.add_argument('--genotype', default='',
                      help='also time this genotype\'s network against the '
                      'table\'s prediction')
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args(argv)
  image_shape, classes = {'digits': ((8, 8, 1), 10),
                          'cifar10': ((32, 32, 3), 10)}[args.dataset]
  space = SearchSpace(DARTS_SPACE.primitives, num_nodes=args.num_nodes)
  geometry = table_lib.Geometry(image_shape, classes, args.channels,
                                args.layers, batch=args.batch)
  latency = LatencyTable(args.table, repeats=args.repeats)
  start = time.perf_counter()
  table = measure_table(table_lib.build(geometry, space), latency)
  print(f'# {backend()}, {geometry}; {latency.measured} entries measured '
        f'in {time.perf_counter() - start:.0f} s -> {args.table}')
  print('| op | input (HxWxC) | stride | ms per batch |')
  print('|---|---|---|---|')
  for key, ms in sorted(latency.entries.items()):
    parts = key.split('|')
    if parts[0] == backend() and parts[-2] == f'n{args.batch}':
      print(f'| {parts[1]} | {parts[2]} | {parts[3] if len(parts) > 5 else ""}'
            f' | {ms:.4f} |')
  if args.genotype:
    genotype = space.resolve_genotype(args.genotype)
    predicted = table.genotype_cost(genotype, 'ms')
    measured = network_latency(genotype, geometry, repeats=args.repeats)
    off = 100 * (predicted / measured - 1)
    print(f'network: predicted {predicted:.3f} ms, measured {measured:.3f} '
          f'ms per batch of {args.batch} ({off:+.1f}% off)')


if __name__ == '__main__':
  main()
