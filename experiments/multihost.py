r"""Flags of a multi-process run, shared by the entry points.

Every process runs the same command (the same ``--workdir``, on a file
system they share) with its own ``--process_id``; e.g. on two hosts::

  host0$ python experiments/cifar_search.py --config=... --workdir=DIR \
      --coordinator_address=host0:1234 --num_processes=2 --process_id=0
  host1$ python experiments/cifar_search.py --config=... --workdir=DIR \
      --coordinator_address=host0:1234 --num_processes=2 --process_id=1

On Cloud TPU pods, SLURM, Open MPI or Kubernetes, ``--distributed`` lets JAX
find these values itself. See `jaxdarts.core.parallel.initialize`.
"""

import logging as std_logging

from absl import app
from absl import flags
from absl import logging

from jaxdarts.core import parallel

_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 of a multi-process '
    'run, the same on every process.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'Index of this process, 0 to num_processes - 1.')
_DETECT = flags.DEFINE_bool(
    'distributed', False, 'Join a multi-process run whose processes JAX '
    'detects (Cloud TPU pod, SLURM, Open MPI, Kubernetes).')


def initialize() -> bool:
  """Joins the multi-process run the flags describe; whether there is one."""
  return parallel.initialize(_ADDRESS.value, _NUM_PROCESSES.value,
                             _PROCESS_ID.value, detect=_DETECT.value)


def start(argv: list[str]) -> None:
  """What every entry point does first: refuse stray arguments, join the
  multi-process run (before anything touches a device), and log jaxdarts's
  progress at INFO while absl (orbax logs every save) stays at WARNING
  unless ``--verbosity`` is given."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  initialize()
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger('jaxdarts').setLevel(std_logging.INFO)
