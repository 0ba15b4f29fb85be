"""Tasks by name: ``get('classification')``; see :mod:`.base` for the seam."""

from __future__ import annotations

from typing import Any

from jaxdarts.tasks.base import Task
from jaxdarts.tasks.classification import Classification
from jaxdarts.tasks.segmentation import Segmentation

TASKS: dict[str, type] = {'classification': Classification}
TASKS['segmentation'] = Segmentation


def get(name: str, **options: Any) -> Task:
  """The task ``name`` configured with ``options``.

  Raises:
    ValueError: an unknown task name, naming the known ones.
  """
  if name not in TASKS:
    raise ValueError(f'Unknown task {name!r}; choose one of {sorted(TASKS)}.')
  return TASKS[name](**options)
