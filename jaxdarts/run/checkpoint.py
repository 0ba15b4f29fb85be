"""Checkpoints of a training state: save, resume, and stop cleanly.

:class:`Checkpointer` wraps one ``orbax.checkpoint.CheckpointManager`` over a
directory (e.g. ``workdir/checkpoints``). A checkpoint at step ``s`` is the
directory ``<directory>/<s>/`` with two items:

* ``state``: the training state, any JAX pytree (a ``flax.struct.PyTreeNode``
  such as ``SearchState``), written by orbax as arrays. Typed PRNG keys
  (``jax.random.key``) are stored as their raw key data and re-wrapped, on
  restore, with the key implementation of the target state.
* ``meta``: JSON with the caller's ``extra`` dict (the data position
  ``{'epoch': ..., 'step': ...}`` and whatever else the loop wants) and the
  run's flat ``model_config``.

Typical use in a loop::

  ckpt = Checkpointer(workdir / 'checkpoints', model_config=cfg)
  with ckpt, PreemptionGuard() as guard:  # jaxdarts.run.preemption
    restored = ckpt.restore_latest(init_state)
    state, extra, _ = restored or (init_state, {'epoch': 0, 'step': 0}, 0)
    for step, batch in ...:
      state = train_step(state, batch)
      ckpt.save(step, state, extra, force=guard.requested)
      if guard.requested:
        break

Resume: :meth:`Checkpointer.restore_latest` restores into a freshly
initialised state of the same structure, so arrays come back with the target's
structure, dtypes and shardings and the static fields (apply functions, optax
transformations) are the target's. It refuses a checkpoint written with a
different ``model_config`` or with differently shaped arrays (ValueError), and
falls back to an older checkpoint when the newest cannot be read (see there).

Atomicity: orbax writes a step into a temporary directory
(``<s>.orbax-checkpoint-tmp-*``) and renames it when complete (on GCS it writes
a ``commit_success.txt`` marker instead); uncommitted directories are never
listed as steps and are removed when a :class:`Checkpointer` is created.
Saving is asynchronous: :meth:`Checkpointer.save` returns once the arrays are
copied to host memory, and :meth:`Checkpointer.wait` or
:meth:`Checkpointer.close` make every started save durable.

Multi-host: call every method on all processes with the same arguments; the
state is saved and restored as the global arrays, and orbax arranges which
process writes what (the primary process writes the metadata and finalises
the step). ``extra`` must be the same on every process.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxdarts.run import checkpoint_trees as trees

logger = logging.getLogger(__name__)

PyTree = Any

_STATE = 'state'
_META = 'meta'
_FORMAT_VERSION = 1
_ABSENT = '<absent>'


class CheckpointMismatchError(ValueError):
  """The checkpoint was written for a different model than the current one."""


class Checkpointer:
  """Saves and restores a training state with orbax; a context manager.

  Every method must be called on all processes of a multi-host run.

  Attributes:
    directory: The directory holding one sub-directory per step.
  """

  def __init__(
      self,
      directory: str | os.PathLike[str],
      *,
      keep: int | None = 3,
      save_interval_steps: int | None = None,
      model_config: Mapping[str, Any] | None = None,
      model_config_defaults: Mapping[str, Any] | None = None,
  ) -> None:
    """Opens (creating if needed) the checkpoint directory.

    Args:
      directory: Where the checkpoints live, e.g. ``workdir/checkpoints``.
      keep: How many of the newest checkpoints to keep; None keeps all.
      save_interval_steps: If set, :meth:`save` writes only at steps that are
        multiples of it (and at the first save) unless forced; None writes at
        every call.
      model_config: The run's model-shape config, a flat dict of JSON values.
        Stored in each checkpoint and compared on restore; None skips both.
      model_config_defaults: Values of ``model_config`` fields added after
        checkpoints were written without them: such a checkpoint stands for
        these values.

    Raises:
      TypeError: If ``model_config`` is not JSON-serialisable.
    """
    self.directory = _as_path(directory)
    self._model_config = (
        None if model_config is None else _to_json(dict(model_config)))
    self._defaults = _to_json(dict(model_config_defaults or {}))
    preservation = ocp.checkpoint_managers.LatestN(n=keep)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_interval_steps or 1,
        preservation_policy=preservation,
        cleanup_tmp_directories=True,
        create=True,
    )
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_handlers={
            _STATE: ocp.StandardCheckpointHandler(),
            _META: ocp.JsonCheckpointHandler(),
        },
    )
    self._closed = False

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.close()

  def all_steps(self) -> list[int]:
    """Returns the steps of the committed checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """Returns the newest committed step, or None if there is none."""
    return self._manager.latest_step()

  def save(
      self, step: int, state: PyTree, extra: Mapping[str, Any], *,
      force: bool = False) -> bool:
    """Starts saving ``state`` and ``extra`` as the checkpoint of ``step``.

    Returns once the arrays are copied to host memory, so the caller may
    donate or overwrite ``state`` right away; the files are written in the
    background (see :meth:`wait`). Saving a step that already exists does
    nothing. Checking the state for non-finite values is the caller's job.

    Args:
      step: The training step the state belongs to.
      state: The pytree to save.
      extra: JSON-serialisable dict (numpy scalars are accepted), e.g. the
        data iterator position.
      force: Save even if ``save_interval_steps`` would skip this step (e.g.
        on preemption).

    Returns:
      Whether a checkpoint was started.

    Raises:
      TypeError: If ``extra`` is not JSON-serialisable.
    """
    step = int(step)
    meta = _to_json({
        'format_version': _FORMAT_VERSION,
        'extra': dict(extra),
        'model_config': self._model_config,
    })
    if step in self._manager.all_steps():
      logger.info('checkpoint step %d already exists in %s; not saving',
                  step, self.directory)
      return False
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(trees.encode_keys(state)),
        _META: ocp.args.JsonSave(meta),
    })
    return bool(self._manager.save(step, args=args, force=force))

  def restore_latest(
      self, target_state: PyTree) -> tuple[PyTree, dict[str, Any], int] | None:
    """Restores the newest checkpoint that can be read.

    A checkpoint that fails to restore (a data file deleted or truncated, a
    checksum error, a step directory with missing items, unreadable JSON) is
    reported with a warning naming the step and the error, and the next older
    one is tried. When an older one succeeds, the newer unreadable step
    directories are renamed to ``<step>.corrupt-<time>`` (kept for inspection,
    no longer listed) so that the resumed run can save those steps again.

    Args:
      target_state: A freshly initialised state of the same structure; it
        gives the structure, dtypes, shardings and static fields of the
        result.

    Returns:
      ``(state, extra, step)``, or None if there is no checkpoint.

    Raises:
      CheckpointMismatchError: (a ValueError) If a checkpoint was written with
        a different ``model_config`` or holds arrays of other shapes or
        another structure than ``target_state``.
      RuntimeError: If there are checkpoints but none can be restored.
    """
    self._manager.wait_until_finished()
    self._manager.reload()
    steps = sorted(self._manager.all_steps(), reverse=True)
    failed: list[tuple[int, str]] = []
    for step in steps:
      try:
        state, extra = self._restore_step(step, target_state)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        # Orbax and tensorstore report damaged files with many exception
        # types (ValueError, FileNotFoundError, JSONDecodeError, ...).
        problem = _describe(e)
        logger.warning(
            'checkpoint step %d in %s cannot be restored (%s); trying an '
            'older one', step, self.directory, problem)
        failed.append((step, problem))
        continue
      if failed:
        self._quarantine([s for s, _ in failed])
      return state, extra, step
    if failed:
      tried = '; '.join(f'step {s}: {p}' for s, p in failed)
      raise RuntimeError(
          f'no checkpoint in {self.directory} could be restored; tried '
          f'{tried}')
    return None

  def wait(self) -> None:
    """Blocks until every started save is written and committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for started saves and releases orbax's threads; idempotent."""
    if not self._closed:
      self._closed = True
      self._manager.close()

  def _restore_step(
      self, step: int, target_state: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Checks and restores one step; returns ``(state, extra)``."""
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))
    meta = restored[_META]
    self._check_config(meta.get('model_config'))
    encoded = trees.encode_keys(target_state)
    self._check_leaves(step, encoded)
    abstract = jax.tree.map(ocp.tree.to_shape_dtype_struct, encoded)
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract)}))
    state = trees.decode_keys(restored[_STATE], target_state)
    return state, dict(meta['extra'])

  def _check_config(self, stored: Mapping[str, Any] | None) -> None:
    """Raises if the stored model config differs from the current one.

    Only the current config's fields count: one that only the checkpoint
    has was retired (e.g. ``model.scan_cells``, which no longer changes the
    variables) and does not block a resume.
    """
    if stored is None or self._model_config is None:
      return
    stored = {**self._defaults, **stored}
    current = self._model_config
    fields = sorted(k for k in current
                    if stored.get(k, _ABSENT) != current[k])
    if not fields:
      return
    was = ', '.join(f'{k}={_show(stored.get(k, _ABSENT))}' for k in fields)
    now = ', '.join(f'{k}={_show(current.get(k, _ABSENT))}' for k in fields)
    raise CheckpointMismatchError(
        f'checkpoint in {self.directory} was written with {was}, but the '
        f'config says {now}; use a new --workdir or restore the original '
        f'value{"s" if len(fields) > 1 else ""}')

  def _check_leaves(self, step: int, encoded_target: PyTree) -> None:
    """Raises if the stored leaves' paths or shapes differ from the target's.

    Leaves whose stored dtype differs from the target's are restored with the
    target's dtype, with a warning (e.g. an optimizer whose state changes
    dtype after the first update).
    """
    metadata = self._manager.item_metadata(step)[_STATE]
    stored = trees.leaf_specs(getattr(metadata, 'tree', metadata))
    wanted = trees.leaf_specs(encoded_target)
    where = f'checkpoint in {self.directory} (step {step})'
    missing = [path for path in wanted if path not in stored]
    if missing:
      raise CheckpointMismatchError(
          f'{where} has no leaf {_join(missing[0])}, which the state has; use '
          'a new --workdir or restore the original config')
    unexpected = [path for path in stored if path not in wanted]
    if unexpected:
      raise CheckpointMismatchError(
          f'{where} has a leaf {_join(unexpected[0])} that the state lacks; '
          'use a new --workdir or restore the original config')
    cast = []
    for path, (shape, dtype) in wanted.items():
      stored_shape, stored_dtype = stored[path]
      if stored_shape is not None and stored_shape != shape:
        raise CheckpointMismatchError(
            f'{where} has {_join(path)} with shape {stored_shape}, but the '
            f'state has shape {shape}; a config value changed? use a new '
            '--workdir or restore the original value')
      if None not in (dtype, stored_dtype) and dtype != stored_dtype:
        cast.append(f'{_join(path)} ({stored_dtype} -> {dtype})')
    if cast:
      logger.warning('%s: restoring with the dtype of the target state: %s',
                     where, ', '.join(cast))

  def _quarantine(self, steps: Sequence[int]) -> None:
    """Renames unreadable step directories so they are no longer steps."""
    if jax.process_index() == 0:
      stamp = time.strftime('%Y%m%d-%H%M%S')
      for step in steps:
        path = self.directory / str(step)
        if path.exists():
          dest = path.parent / f'{path.name}.corrupt-{stamp}'
          path.rename(dest)
          logger.warning('moved unrestorable checkpoint %s to %s', path, dest)
    ocp.multihost.sync_global_processes(
        'jaxdarts_checkpoint_quarantine_' + '_'.join(map(str, steps)))
    self._manager.reload()


def _as_path(directory: str | os.PathLike[str]) -> epath.Path:
  """Returns ``directory`` as an absolute path (orbax needs one)."""
  text = os.fspath(directory)
  return epath.Path(text if '://' in text else os.path.abspath(text))


def _join(path: tuple[str, ...]) -> str:
  return '/'.join(path)


def _json_default(x: Any) -> Any:
  """Converts numpy scalars and small arrays for ``json.dumps``."""
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, (np.ndarray, jax.Array)):
    return np.asarray(x).tolist()
  raise TypeError(f'{type(x).__name__} is not JSON-serialisable: {x!r}')


def _to_json(value: Any) -> Any:
  """Returns ``value`` as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(value, default=_json_default))


def _show(value: Any) -> str:
  return value if value == _ABSENT else json.dumps(value)


def _describe(error: BaseException) -> str:
  """A one-line, bounded description of an exception."""
  text = str(error).strip().splitlines()
  first = text[0] if text else ''
  if len(first) > 300:
    first = first[:300] + '...'
  return f'{type(error).__name__}: {first}'
