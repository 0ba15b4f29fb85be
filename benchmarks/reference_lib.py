"""Helpers the side-by-side benchmarks share (no flags, no reference code).

The PyTorch reference (quark0/darts) is imported from the user's clone at
run time; this module only finds it, checks torch, patches torch in memory
for the reference's CPU run and limits a process's cores.
"""

import os


def reference_cnn_dir(reference_dir: str) -> str:
  """The reference's ``cnn/`` directory under ``reference_dir``.

  Raises:
    ValueError: ``reference_dir`` holds no ``model_search.py`` and
      ``architect.py`` (in itself or in ``cnn/``).
  """
  for d in (os.path.join(reference_dir, 'cnn'), reference_dir):
    if all(os.path.isfile(os.path.join(d, f))
           for f in ('model_search.py', 'architect.py')):
      return os.path.abspath(d)
  raise ValueError(
      f'--reference_dir={reference_dir} holds no cnn/model_search.py and '
      'cnn/architect.py: pass a clone of https://github.com/quark0/darts '
      '(git clone https://github.com/quark0/darts /tmp/darts).')


def require_torch() -> None:
  """Raises ImportError naming the fix if torch cannot be imported."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError(
        'The reference side needs PyTorch, an optional extra: '
        '`python3 -m pip install torch==2.13.0` (or `pip install '
        '.[reference]`), or pass --sides=jaxdarts.') from e


def limit_cores(threads: int) -> None:
  """Restricts this process to ``threads`` of its schedulable cores."""
  cores = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, cores[:threads])


def patch_torch_for_cpu(torch) -> None:
  """The reference's CPU run on torch 2: in-memory patches, nothing else.

  ``.cuda()`` returns its receiver; the deprecated ``add_(alpha, other)``,
  ``sub_(alpha, other)`` and ``sub(alpha, other)`` overloads (used by
  ``architect.py``) are rewritten to ``(other, alpha=alpha)`` only if this
  torch refuses them.
  """
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  torch.nn.Module.cuda = lambda self, *args, **kwargs: self
  for name in ('add_', 'sub_', 'sub'):
    original = getattr(torch.Tensor, name)
    try:
      import warnings  # pylint: disable=g-import-not-at-top
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        original(torch.zeros(1), 1.0, torch.ones(1))
      continue  # This torch still takes the old overload.
    except (TypeError, RuntimeError):
      pass

    def modern(self, *args, _original=original, **kwargs):
      if (len(args) == 2 and not kwargs and isinstance(args[1], torch.Tensor)
          and (not isinstance(args[0], torch.Tensor) or args[0].dim() == 0)):
        alpha = args[0]
        alpha = alpha.item() if isinstance(alpha, torch.Tensor) else alpha
        return _original(self, args[1], alpha=alpha)
      return _original(self, *args, **kwargs)
    setattr(torch.Tensor, name, modern)
