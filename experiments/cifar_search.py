r"""Runs a DARTS architecture search; see `jaxdarts.run.search.run_search`.

  python experiments/cifar_search.py \
    --config=experiments/configs/search.py:digits --workdir=/tmp/digits

Rerunning the same command resumes an interrupted search from its last
checkpoint, or reports a finished one.
"""

from pathlib import Path

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxdarts.run import search
import multihost

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'A search config: experiments/configs/search.py:PRESET.',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the run: checkpoints, '
                    'metrics, genotypes.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  multihost.start(argv)
  result = search.run_search(FLAGS.config, FLAGS.workdir)
  state = 'finished' if result.finished else 'stopped early (resumable)'
  workdir = Path(FLAGS.workdir)
  if FLAGS.config.search.get('seeds', 1) > 1:  # One genotype per seed.
    print(f'Search of {len(result.genotype)} seeds {state} at step '
          f'{int(result.state.step)}.', flush=True)
    for index, genotype in enumerate(result.genotype):
      print(f'seed_{index}: {genotype}', flush=True)
    print(f'Written to {workdir}/seed_<i>/; pick one with '
          'experiments/select_seeds.py.', flush=True)
    return
  print(f'Search {state} at step {int(result.state.step)}.\n'
        f'Genotype: {result.genotype}\n'
        f'Written to {workdir / "genotypes"}/ (per epoch)'
        + (f' and {workdir / "genotype.txt"}' if result.finished else ''),
        flush=True)


if __name__ == '__main__':
  app.run(main)
