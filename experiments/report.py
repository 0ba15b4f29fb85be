r"""Writes the HTML report of a search run; see `jaxdarts.viz.report`.

  python experiments/report.py --workdir=workdirs/digits

The page, WORKDIR/report/index.html, is a single self-contained file (images
embedded) that can be mailed as it is.
"""

import sys

from absl import app
from absl import flags

from jaxdarts.viz import report
FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Workdir of a search run '
                    '(experiments/cifar_search.py --workdir).')
flags.mark_flags_as_required(['workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    path = report.write_report(FLAGS.workdir)
  except FileNotFoundError as e:  # No workdir or no genotype: say which.
    sys.exit(f'error: {e}')
  print(path, flush=True)


if __name__ == '__main__':
  app.run(main)
