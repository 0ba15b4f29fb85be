"""The run directory (workdir): the one module that writes and reads it.

Everything a search or a retraining run writes lives in its workdir:

* ``config.json``: the run's config;
* ``metrics.jsonl``: one JSON object per line, with ``step``, ``epoch``
  (0-based) and the metrics logged then (:meth:`Workdir.append_metrics`);
* ``tensorboard/``: the same numbers as TensorBoard events;
* ``checkpoints/``: the state and the data position (`jaxdarts.run.
  checkpoint`);
* a search's ``genotypes/epoch_NNN.json`` and ``.txt`` (the genotype derived
  at the end of epoch NNN, 0-based) and ``alphas/epoch_NNN.npz`` (the
  method's per-edge op weights then: one ``[edges, ops]`` array per cell
  type, and ``primitives``, the op names);
* a search's final ``genotype.json``, ``genotype.txt`` and ``cells/`` (the
  cell drawings);
* a search stopped early (DARTS-ES, `jaxdarts.run.health`):
  ``early_stop.json``, ``{epoch, stop_epoch, ratio, rule}``: the search
  ended after ``epoch`` and kept the genotype of ``stop_epoch``;
* a retraining's ``genotype.json`` (the genotype trained),
  ``final_variables.msgpack`` (the trained ``{'params', 'batch_stats'}``,
  `flax.serialization.to_bytes`) and ``final_metrics.json``;
* ``report/index.html``: the HTML report (`jaxdarts.viz.report`);
* ``selection.json`` and ``select/``: the seeds ranked by a short retraining
  of each (`jaxdarts.run.selection`);
* a search of several seeds (``config.search.seeds``, `jaxdarts.run.seeds`)
  writes each seed's files into ``seed_<i>/`` (:meth:`Workdir.seed`), as a
  one-seed search's workdir; metrics named ``seed_<i>/NAME`` go to
  ``seed_<i>/metrics.jsonl`` as ``NAME``.

The runners, the plots and the report read and write these files through
:class:`Workdir` only.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxdarts.spaces.darts_cnn.genotype import Genotype

PathLike = str | os.PathLike

_EPOCH_FILE = re.compile(r'^epoch_(\d+)\.(npz|json|txt)$')
_SEED_DIR = re.compile(r'^seed_(\d+)$')
_FROM_RUN = 'it is written by a run into its workdir'


class AlphaHistory(NamedTuple):
  """The op weights of every epoch of a search.

  Attributes:
    epochs: the epoch numbers, sorted (int array ``[T]``).
    weights: ``{cell type: [T, edges, ops]}`` float64 arrays.
    primitives: the op names (``ops`` of them).
  """
  epochs: np.ndarray
  weights: dict[str, np.ndarray]
  primitives: tuple[str, ...]


class Workdir:
  """The files of one run directory (see the module docstring).

  Attributes:
    path: the directory (``~`` expanded).
  """

  def __init__(self, path: PathLike, genotype_type: Any = Genotype):
    """Args:
      path: the run's directory; nothing is created until a write.
      genotype_type: the class genotypes are read as (its ``load``).
    """
    self.path = Path(path).expanduser()
    self.genotype_type = genotype_type

  def __truediv__(self, name: str) -> Path:
    return self.path / name

  def check_exists(self) -> Workdir:
    """Returns ``self``; raises FileNotFoundError if it is no directory."""
    if not self.path.is_dir():
      raise FileNotFoundError(f'{self.path}: no such directory (expected the '
                              'workdir of a run)')
    return self

  # -- Every run ---------------------------------------------------------------

  def write_config(self, config: Any) -> None:
    """Creates the directory and writes ``config.json`` (a ConfigDict)."""
    self.path.mkdir(parents=True, exist_ok=True)
    (self / 'config.json').write_text(config.to_json(indent=2) + '\n')

  def config(self) -> dict[str, Any]:
    """``config.json`` as a dict.

    Raises:
      FileNotFoundError: no ``config.json``.
      ValueError: it is not a JSON object.
    """
    path = self / 'config.json'
    if not path.is_file():
      raise FileNotFoundError(f'No config.json in {self.path}.')
    try:
      config = json.loads(path.read_text(encoding='utf-8'))
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} could not be read: {e}') from e
    if not isinstance(config, dict):
      raise ValueError(
          f'{path} holds a {type(config).__name__}, not a JSON object.')
    return config

  def append_metrics(self, step: int, epoch: int,
                     values: dict[str, float]) -> None:
    """Appends one ``metrics.jsonl`` line ``{step, epoch, **values}``.

    Values named ``seed_<i>/NAME`` go to ``seed_<i>/metrics.jsonl`` as
    ``NAME`` instead (a search of several seeds).
    """
    own, seeds = _split_seeds(values)
    for index, seed_values in sorted(seeds.items()):
      self.seed(index).path.mkdir(parents=True, exist_ok=True)
      self.seed(index).append_metrics(step, epoch, seed_values)
    if seeds and not own:
      return
    record = {'step': step, 'epoch': epoch,
              **{k: float(v) for k, v in own.items()}}
    with open(self / 'metrics.jsonl', 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')

  def trim_metrics(self, step: int) -> None:
    """Drops the metrics lines of steps after ``step`` (redone on resume)
    and any line cut short by a kill."""
    for seed in self.seeds():
      seed.trim_metrics(step)
    path = self / 'metrics.jsonl'
    if not path.exists():
      return
    kept = []
    for line in path.read_text().splitlines():
      try:
        keep = json.loads(line).get('step', 0) <= step
      except (json.JSONDecodeError, AttributeError):
        keep = False
      if keep:
        kept.append(line + '\n')
    path.write_text(''.join(kept))

  def metrics(self) -> list[dict[str, float]]:
    """The records of ``metrics.jsonl``, keeping only finite numeric values.

    Blank lines are skipped; a line that is not a JSON object (say, the
    last line of a run still writing) is skipped with a warning.

    Raises:
      FileNotFoundError: if the workdir or ``metrics.jsonl`` is missing.
    """
    path = self.check_exists() / 'metrics.jsonl'
    if not path.is_file():
      raise self._missing('metrics.jsonl')
    records = []
    with open(path, encoding='utf-8') as f:
      for lineno, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          record = None
        if not isinstance(record, dict):
          warnings.warn(f'{path}:{lineno}: not a JSON object, skipped')
          continue
        numbers = {k: _number(v) for k, v in record.items()}
        records.append({k: v for k, v in numbers.items() if v is not None})
    return records

  # -- A search ---------------------------------------------------------------

  def seed(self, index: int) -> Workdir:
    """The workdir of seed ``index`` of a several-seed search."""
    return Workdir(self / f'seed_{index}', self.genotype_type)

  def seeds(self) -> list[Workdir]:
    """The ``seed_<i>/`` workdirs present, by seed index (none for a
    one-seed run)."""
    if not self.path.is_dir():
      return []
    found = sorted(int(m.group(1)) for p in self.path.iterdir()
                   if p.is_dir() and (m := _SEED_DIR.match(p.name)))
    return [self.seed(i) for i in found]

  def write_epoch(self, epoch: int, genotype: Any,
                  weights: dict[str, Any], primitives: tuple[str, ...]) -> None:
    """``genotypes/epoch_NNN.{json,txt}`` and ``alphas/epoch_NNN.npz``."""
    name = f'epoch_{epoch:03d}'
    for directory in ('genotypes', 'alphas'):
      (self / directory).mkdir(parents=True, exist_ok=True)
    genotype.save(self / 'genotypes' / f'{name}.json')
    (self / 'genotypes' / f'{name}.txt').write_text(f'{genotype}\n')
    np.savez(self / 'alphas' / f'{name}.npz',
             **{cell: np.asarray(w) for cell, w in weights.items()},
             primitives=np.asarray(primitives, dtype=str))

  def epoch_genotype(self, epoch: int) -> Any | None:
    """The genotype written at the end of ``epoch``, if there is one."""
    path = self / 'genotypes' / f'epoch_{epoch:03d}.json'
    return self.genotype_type.load(path) if epoch >= 0 and path.exists() else None

  def genotype_history(self) -> list[tuple[int, Any]]:
    """The genotype derived at the end of every epoch, sorted by epoch.

    Reads ``genotypes/epoch_NNN.json``, or ``epoch_NNN.txt`` (the text form)
    for an epoch without a JSON file.

    Raises:
      FileNotFoundError: if the workdir or its genotype files are missing.
      ValueError: naming the file, if one is malformed.
    """
    directory = self.check_exists() / 'genotypes'
    files = {**_epoch_files(directory, 'txt'),
             **_epoch_files(directory, 'json')}
    if not files:
      raise self._missing('genotypes/epoch_*.json files')
    return [(epoch, self.genotype_type.load(files[epoch]))
            for epoch in sorted(files)]

  def alpha_history(self) -> AlphaHistory:
    """The op weights of every epoch, from ``alphas/epoch_*.npz``.

    Raises:
      FileNotFoundError: if the workdir or its ``alphas/epoch_*.npz`` files
        are missing.
      ValueError: if a file lacks an array or the files disagree in cell
        types, shape or primitives.
    """
    files = _epoch_files(self.check_exists() / 'alphas', 'npz')
    if not files:
      raise self._missing('alphas/epoch_*.npz files')
    epochs = sorted(files)
    stacks: dict[str, list[np.ndarray]] = {}
    primitives = None
    for epoch in epochs:
      weights, names = _read_alphas(files[epoch])
      first = f'those of epoch {epochs[0]}'
      if primitives is not None and names != primitives:
        raise ValueError(f'{files[epoch]}: primitives {names} differ from '
                         f'{first}: {primitives}')
      if stacks and (set(weights) != set(stacks) or any(
          w.shape != stacks[c][0].shape for c, w in weights.items())):
        raise ValueError(f'{files[epoch]}: cell types or alpha shapes differ '
                         f'from {first}')
      primitives = names
      for cell, w in weights.items():
        stacks.setdefault(cell, []).append(w)
    return AlphaHistory(np.array(epochs, dtype=np.int64),
                        {c: np.stack(a) for c, a in stacks.items()},
                        primitives)

  def write_genotype(self, genotype: Any) -> None:
    """``genotype.json`` and ``genotype.txt``: the final (or trained) one."""
    self.path.mkdir(parents=True, exist_ok=True)
    genotype.save(self / 'genotype.json')
    (self / 'genotype.txt').write_text(f'{genotype}\n')

  def genotype(self) -> tuple[Any, str | None]:
    """The final genotype, or the newest epoch's with a note saying so.

    Returns:
      ``(genotype, note)``; ``note`` is None for the final genotype.

    Raises:
      FileNotFoundError: no genotype at all.
      ValueError: the final genotype's file is malformed.
    """
    self.check_exists()
    for name in ('genotype.json', 'genotype.txt'):
      if (self / name).is_file():
        return self.genotype_type.load(self / name), None
    try:
      epoch, genotype = self.genotype_history()[-1]
    except FileNotFoundError:
      raise FileNotFoundError(
          f'{self.path}: no genotype: neither genotype.json (the final '
          'genotype) nor genotypes/epoch_NNN.json (one per epoch) exists. A '
          'search run writes them: python experiments/cifar_search.py '
          f'--config=... --workdir={self.path}') from None
    return genotype, ('genotype.json is missing (is the search still '
                      'running?); this is the genotype of the last epoch '
                      f'written, epoch {epoch}.')

  def write_early_stop(self, record: dict[str, Any]) -> None:
    """``early_stop.json``: where and why DARTS-ES stopped the search."""
    self.path.mkdir(parents=True, exist_ok=True)
    (self / 'early_stop.json').write_text(json.dumps(record, indent=2) + '\n')

  def early_stop(self) -> dict[str, Any] | None:
    """``early_stop.json``, or None if the search was not stopped early."""
    path = self / 'early_stop.json'
    return json.loads(path.read_text()) if path.is_file() else None

  def write_selection(self, selection: dict[str, Any]) -> None:
    """``selection.json``: the seeds ranked by a short retraining
    (`jaxdarts.run.selection`)."""
    self.path.mkdir(parents=True, exist_ok=True)
    (self / 'selection.json').write_text(json.dumps(selection, indent=2)
                                         + '\n')

  def selection(self) -> dict[str, Any] | None:
    """``selection.json``, or None if no selection was run."""
    path = self / 'selection.json'
    return json.loads(path.read_text()) if path.is_file() else None

  # -- A retraining ------------------------------------------------------------

  def write_final(self, variables_bytes: bytes,
                  metrics: dict[str, Any]) -> None:
    """``final_variables.msgpack`` and ``final_metrics.json``."""
    (self / 'final_variables.msgpack').write_bytes(variables_bytes)
    (self / 'final_metrics.json').write_text(
        json.dumps(metrics, indent=2) + '\n')

  def final_metrics(self) -> dict[str, Any] | None:
    """``final_metrics.json``, or None if the run has not written it."""
    path = self / 'final_metrics.json'
    return json.loads(path.read_text()) if path.exists() else None

  def _missing(self, what: str) -> FileNotFoundError:
    return FileNotFoundError(f'{self.path}: no {what} found; {_FROM_RUN}')


def _number(value: Any) -> float | None:
  """``value`` as a finite float, or None if it is not a finite number."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def _split_seeds(values: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
  """``values`` without the ``seed_<i>/NAME`` ones, and those by seed."""
  own, seeds = {}, {}
  for name, value in values.items():
    prefix, _, rest = name.partition('/')
    match = _SEED_DIR.match(prefix) if rest else None
    if match:
      seeds.setdefault(int(match.group(1)), {})[rest] = value
    else:
      own[name] = value
  return own, seeds


def _epoch_files(directory: Path, suffix: str) -> dict[int, Path]:
  """``epoch_NNN.<suffix>`` files of ``directory`` by epoch number."""
  if not directory.is_dir():
    return {}
  files = {}
  for path in directory.iterdir():
    match = _EPOCH_FILE.match(path.name)
    if match and match.group(2) == suffix:
      files[int(match.group(1))] = path
  return files


def _read_alphas(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
  """``({cell type: [edges, ops]}, primitives)`` of one alphas file."""
  try:
    with np.load(path, allow_pickle=False) as data:
      if 'primitives' not in data or len(data.files) < 2:
        raise ValueError(f'{path}: expected the arrays primitives and one per '
                         f'cell type; found {", ".join(data.files) or "none"}')
      weights = {k: np.asarray(data[k], dtype=np.float64)
                 for k in data.files if k != 'primitives'}
      primitives = data['primitives']
  except ValueError as e:
    if 'allow_pickle' in str(e):
      raise ValueError(f'{path}: holds an object array; save primitives as a '
                       'string array (np.asarray(names, dtype=str))') from e
    raise
  if primitives.dtype.kind == 'S':
    primitives = np.char.decode(primitives, 'utf-8')
  names = tuple(str(p) for p in np.atleast_1d(primitives).tolist())
  for cell, array in weights.items():
    if array.ndim != 2 or array.shape[1] != len(names):
      raise ValueError(f'{path}: {cell!r} has shape {array.shape}, expected '
                       f'[num_edges, {len(names)}] ({len(names)} primitives)')
  return weights, names
