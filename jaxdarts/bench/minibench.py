"""A NAS-Bench-201-style table on an offline task, trained here.

NAS-Bench-201 (Dong and Yang, ICLR 2020) trained all 15,625 cells of its
space, so a search is scored by the true accuracy of the cell it returns.
This module does the same for a (sub-)space of `NB201Space` on a small
offline task (by default ``'digits_canvas'``, `jaxdarts.data.canvas`):

1. Every genotype of the space is mapped to its canonical form
   (`Genotype.canonical`: ``none`` edges and dead nodes removed, identity
   edges passed through, node order forgotten); one representative per
   form is trained and every genotype points to it.
2. The network is the space's supernet (NB201 skeleton, affine BatchNorm)
   with the architecture as a runtime input: one-hot mixing weights, so
   one program is compiled for every architecture. ``archs_per_call``
   architectures train at once under ``jax.vmap`` on the same batches;
   every seed has its own initial weights (shared by all architectures
   of that seed, common random numbers) and its own batch order.
3. Each is trained on the search's weights half of the training split
   (SGD, Nesterov momentum 0.9, weight decay 5e-4, cosine learning rate,
   as NAS-Bench-201 trains, with a short budget), and scored with running
   BatchNorm statistics on the alphas half (``val``) and the test split.

The table (`write_table`, gzipped JSON) holds, per trained architecture,
the accuracies per seed, its parameters and multiply-adds (of the discrete
network, `jaxdarts.cost.counting`) and the training seconds per model, and
maps every genotype string of the space to its representative.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdarts import data as data_lib
from jaxdarts.cost.counting import count_flops, count_params
from jaxdarts.spaces.nb201.genotype import Genotype
from jaxdarts.spaces.nb201.space import NB201Space

FORMAT = 'jaxdarts-minibench-1'


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """What a table is trained with (all of it is stored in the table).

  Attributes:
    primitives: the sub-space's ops; every edge takes one.
    num_nodes: nodes per cell, the input node included.
    data: the dataset name (`jaxdarts.data.load_dataset`).
    channels: C of the first stage.
    layers: cells (three stages of layers / 3).
    epochs: training epochs over the weights half.
    batch_size: training batch.
    learning_rate: initial learning rate (cosine-annealed to 0).
    weight_decay: coupled L2 weight decay.
    seeds: one training per seed and architecture.
    archs_per_call: architectures trained at once by ``jax.vmap`` (1 on a
      CPU, where vmapped convolutions become grouped convolutions: 12 at
      once took 8x longer per model than one at a time here; raise it on
      an accelerator).
  """
  primitives: tuple[str, ...] = ('none', 'skip_connect', 'nor_conv_3x3')
  num_nodes: int = 4
  data: str = 'digits_canvas'
  channels: int = 8
  layers: int = 3
  epochs: int = 8
  batch_size: int = 64
  learning_rate: float = 0.1
  weight_decay: float = 5e-4
  seeds: tuple[int, ...] = (0, 1)
  archs_per_call: int = 1

  @property
  def space(self) -> NB201Space:
    return NB201Space(tuple(self.primitives), self.num_nodes)


def unique_genotypes(space: NB201Space) -> tuple[list[Genotype],
                                                 dict[str, str]]:
  """``(representatives, {genotype string: representative string})``: one
  representative (the first in `NB201Space.genotypes` order) per canonical
  form."""
  reps, by_form, mapping = [], {}, {}
  for genotype in space.genotypes():
    form = genotype.canonical()
    if form not in by_form:
      by_form[form] = genotype
      reps.append(genotype)
    mapping[str(genotype)] = str(by_form[form])
  return reps, mapping


class _Data:
  """Normalised float arrays of the three parts of the task."""

  def __init__(self, name: str):
    train = data_lib.load_dataset(name, 'train')
    weights_half, alphas_half = data_lib.search_split(train, 0.5)
    test = data_lib.load_dataset(name, 'test')
    norm = lambda d: ((d.images.astype(np.float32) / 255.0 - d.mean)
                      / d.std).astype(np.float32)
    self.train = (norm(weights_half), np.asarray(weights_half.labels))
    self.val = (norm(alphas_half), np.asarray(alphas_half.labels))
    self.test = (norm(test), np.asarray(test.labels))
    self.num_classes = train.num_classes
    self.image_shape = train.image_shape


class Trainer:
  """Trains batches of (architecture, seed) models with one compiled step."""

  def __init__(self, config: BenchConfig):
    self.config = config
    self.space = config.space
    self.data = _Data(config.data)
    self.model = self.space.supernet(
        self.data.num_classes, channels=config.channels,
        layers=config.layers, affine=True)
    n = len(self.data.train[1])
    self.steps_per_epoch = n // config.batch_size
    num_steps = self.steps_per_epoch * config.epochs
    self.tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(optax.cosine_decay_schedule(config.learning_rate,
                                              num_steps),
                  momentum=0.9, nesterov=True))
    self._step = jax.jit(jax.vmap(self._train_step, in_axes=(0, 0, None)))
    self._eval = jax.jit(jax.vmap(self._logits, in_axes=(0, 0, None)))
    self._init = jax.jit(self._init_one)

  def warm_up(self) -> float:
    """Compiles the step and the evaluation; returns the seconds taken."""
    start = time.perf_counter()
    first = self.space.genotype_type.from_ops(
        [self.space.primitives[-1]] * self.space.num_edges)
    self.train([first], 0, steps=1)
    return time.perf_counter() - start

  def _init_one(self, seed):
    images = jnp.zeros((1,) + self.data.image_shape, jnp.float32)
    weights = {'cell': jnp.zeros(self.space.alpha_shape, jnp.float32)}
    variables = self.model.init(jax.random.PRNGKey(seed), images, weights,
                                train=False)
    return variables['params'], variables['batch_stats']

  def _train_step(self, state, onehot, batch):
    params, stats, opt_state = state
    images, labels = batch

    def loss_fn(params):
      logits, updates = self.model.apply(
          {'params': params, 'batch_stats': stats}, images, {'cell': onehot},
          train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
      return loss.mean(), updates['batch_stats']

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), stats, opt_state), loss

  def _logits(self, variables, onehot, images):
    return self.model.apply(variables, images, {'cell': onehot}, train=False)

  def _accuracy(self, params, stats, onehots, split) -> np.ndarray:
    images, labels = split
    correct = 0
    for start in range(0, len(labels), 512):
      logits = self._eval({'params': params, 'batch_stats': stats}, onehots,
                          images[start:start + 512])
      correct = correct + np.asarray(
          (logits.argmax(-1) == labels[start:start + 512]).sum(-1))
    return correct / len(labels)

  def train(self, genotypes: list[Genotype], seed: int, *,
            steps: int | None = None) -> tuple[list[dict[str, float]], float]:
    """Trains ``genotypes`` (at most ``archs_per_call``; padded to that
    many, so one program serves every call) with ``seed``.

    Args:
      genotypes: the architectures.
      seed: the initial weights' and the batch order's seed.
      steps: stop after this many steps (for warming up); None: all.

    Returns:
      ``(per genotype {'val': ..., 'test': ..., 'final_train_loss': ...},
      seconds)``.
    """
    cfg = self.config
    count = len(genotypes)
    padded = genotypes + [genotypes[-1]] * (cfg.archs_per_call - count)
    onehots = jnp.asarray(np.stack([g.one_hot(self.space.primitives)
                                    for g in padded]))
    start = time.perf_counter()
    params, stats = self._init(seed)
    tile = lambda tree: jax.tree.map(
        lambda a: jnp.broadcast_to(a, (cfg.archs_per_call,) + a.shape), tree)
    state = (tile(params), tile(stats),
             tile(self.tx.init(params)))
    images, labels = self.data.train
    order_rng = np.random.default_rng(seed)
    b = cfg.batch_size
    num_steps = steps or cfg.epochs * self.steps_per_epoch
    for step in range(num_steps):
      k = step % self.steps_per_epoch
      if k == 0:
        order = order_rng.permutation(len(labels))
      rows = order[k * b:(k + 1) * b]
      state, loss = self._step(state, onehots, (images[rows], labels[rows]))
    params, stats, _ = state
    val = self._accuracy(params, stats, onehots, self.data.val)
    test = self._accuracy(params, stats, onehots, self.data.test)
    loss = np.asarray(loss)
    seconds = time.perf_counter() - start
    return [{'val': float(val[i]), 'test': float(test[i]),
             'final_train_loss': float(loss[i])} for i in range(count)], seconds

  def cost(self, genotype: Genotype) -> dict[str, int]:
    """Parameters and multiply-adds (per image) of the discrete network."""
    net = self.space.network(genotype, self.data.num_classes,
                             channels=self.config.channels,
                             layers=self.config.layers)
    shape = (1,) + self.data.image_shape
    variables = jax.eval_shape(
        lambda: net.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=False))
    return {'params': count_params(variables),
            'macs': count_flops(net, shape)}


def build_table(config: BenchConfig, *, limit: int | None = None,
                trainer: Trainer | None = None, log=print) -> dict[str, Any]:
  """Trains every representative (the first ``limit`` of them) and returns
  the table (see the module docstring); ``trainer`` reuses a `Trainer` of
  ``config`` and its compiled programs."""
  trainer = trainer or Trainer(config)
  compile_seconds = trainer.warm_up()
  reps, mapping = unique_genotypes(config.space)
  if limit is not None:
    reps = reps[:limit]
    kept = {str(g) for g in reps}
    mapping = {k: v for k, v in mapping.items() if v in kept}
  archs = {str(g): {'val': [], 'test': [], 'final_train_loss': [],
                    'train_seconds': 0.0, **trainer.cost(g)} for g in reps}
  n = config.archs_per_call
  total = time.perf_counter()
  for seed in config.seeds:
    for first in range(0, len(reps), n):
      chunk = reps[first:first + n]
      results, seconds = trainer.train(chunk, seed)
      for genotype, result in zip(chunk, results):
        entry = archs[str(genotype)]
        for key, value in result.items():
          entry[key].append(value)
        entry['train_seconds'] += seconds / len(chunk) / len(config.seeds)
      log(f'seed {seed}: {first + len(chunk)}/{len(reps)} architectures, '
          f'{seconds:.1f} s for {len(chunk)}; best val so far '
          f'{max(max(e["val"]) for e in archs.values() if e["val"]):.3f}')
  return {
      'format': FORMAT,
      'config': dataclasses.asdict(config),
      'space_size': config.space.size,
      'num_unique': len(reps),
      'archs': archs,
      'mapping': mapping,
      'compile_seconds': compile_seconds,
      'total_seconds': time.perf_counter() - total,
      'versions': versions(),
  }


def versions() -> dict[str, str]:
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': jaxlib.__version__, 'flax': flax.__version__, 'optax': optax.__version__,
          'numpy': np.__version__, 'backend': jax.default_backend(),
          'machine': platform.machine()}


def write_table(table: dict[str, Any], path: str | os.PathLike[str]) -> None:
  """Writes the table as gzipped JSON (deterministic bytes: no name or
  mtime in the header)."""
  text = json.dumps(table, indent=None, sort_keys=True).encode()
  with open(path, 'wb') as f:
    with gzip.GzipFile(filename='', fileobj=f, mode='wb', mtime=0) as z:
      z.write(text)


def read_table(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads a table written by `write_table`, checking its format.

  Raises:
    ValueError: not a minibench table.
  """
  with gzip.open(path, 'rt', encoding='utf-8') as f:
    table = json.load(f)
  if table.get('format') != FORMAT:
    raise ValueError(f'{os.fspath(path)} is not a {FORMAT} table (format '
                     f'{table.get("format")!r}).')
  return table


def mean_accuracy(table: dict[str, Any], arch: str, split: str = 'test'
                  ) -> float:
  """Mean over seeds of ``arch``'s accuracy (any genotype string of the
  space: it is mapped to its representative).

  Raises:
    KeyError: ``arch`` is not in the table's space, naming the space.
  """
  if arch not in table['mapping']:
    raise KeyError(f'{arch} is not in the table (its space has the ops '
                   f'{table["config"]["primitives"]} and '
                   f'{table["config"]["num_nodes"]} nodes).')
  return float(np.mean(table['archs'][table['mapping'][arch]][split]))


def accuracies(table: dict[str, Any], split: str = 'test') -> np.ndarray:
  """Mean accuracy of every genotype of the space (not just of the
  representatives: each counts as often as it occurs), sorted."""
  means = {rep: float(np.mean(e[split])) for rep, e in table['archs'].items()}
  return np.sort([means[rep] for rep in table['mapping'].values()])


def percentile(table: dict[str, Any], accuracy: float,
               split: str = 'test') -> float:
  """Percentage of the space's genotypes with a lower mean accuracy (ties
  count half)."""
  acc = accuracies(table, split)
  return float(100 * (np.sum(acc < accuracy) + 0.5 * np.sum(acc == accuracy))
               / len(acc))


def summary(table: dict[str, Any], split: str = 'test') -> dict[str, float]:
  """The spread of the table: best, 90th percentile, median, worst and the
  all-``skip_connect`` cell's mean accuracy, and the seed-to-seed
  standard deviation (mean over architectures)."""
  acc = accuracies(table, split)
  out = {'best': float(acc[-1]), 'p90': float(np.percentile(acc, 90)),
         'median': float(np.median(acc)), 'worst': float(acc[0])}
  cfg = table['config']
  if 'skip_connect' in cfg['primitives']:
    edges = cfg['num_nodes'] * (cfg['num_nodes'] - 1) // 2
    skip = Genotype.from_ops(['skip_connect'] * edges)
    out['all_skip'] = mean_accuracy(table, str(skip), split)
  out['seed_std'] = float(np.mean([np.std(e[split], ddof=1)
                                   for e in table['archs'].values()
                                   if len(e[split]) > 1] or [np.nan]))
  return out
