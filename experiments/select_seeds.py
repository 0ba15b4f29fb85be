r"""Retrains each seed of a several-seed search briefly and says which to keep.

  python experiments/select_seeds.py --search_workdir=/tmp/digits4 \
    --config=experiments/configs/train.py:digits --config.train.epochs=3

See `jaxdarts.run.selection`: the retrainings run in
SEARCH_WORKDIR/select/seed_<i>/ (rerunning resumes them), the ranking goes
to SEARCH_WORKDIR/selection.json and is printed as a table.
"""

import logging as std_logging
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxdarts.run import selection

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'A retraining config: experiments/configs/train.py:PRESET '
    '(its genotype is replaced by each seed\'s).', lock_config=True)
flags.DEFINE_string('search_workdir', None, 'Workdir of a search with '
                    '--config.search.seeds=N.')
flags.mark_flags_as_required(['config', 'search_workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  std_logging.getLogger('jaxdarts').setLevel(std_logging.INFO)
  try:
    result = selection.select_seeds(FLAGS.search_workdir, FLAGS.config)
  except FileNotFoundError as e:
    sys.exit(f'error: {e}')
  print(selection.format_table(result), flush=True)


if __name__ == '__main__':
  app.run(main)
