r"""Retrains a genotype from scratch; see `jaxdarts.run.retrain.run_train`.

  python experiments/cifar_train.py \
    --config=experiments/configs/train.py:digits --workdir=/tmp/digits_train \
    --genotype=/tmp/digits/genotype.json

``--genotype`` (a ``Genotype(...)`` text, quoted, or its JSON; a published
name such as ``DARTS_V2``; a genotype file or a search workdir) overrides
``config.genotype``; see `jaxdarts.genotypes.resolve`.
Rerunning the same command resumes an interrupted run from its last
checkpoint, or reports a finished one.
"""


from absl import app
from absl import flags
from ml_collections import config_flags

from jaxdarts.run import retrain

import multihost

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'A train config: experiments/configs/train.py:PRESET.',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the run: checkpoints, '
                    'metrics, final variables.')
flags.DEFINE_string('genotype', None, 'Overrides config.genotype: a '
                    'Genotype(...) text, a published name, a genotype file '
                    'or a search workdir.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  multihost.start(argv)
  config = FLAGS.config
  if FLAGS.genotype is not None:
    with config.unlocked():
      config.genotype = FLAGS.genotype
  result = retrain.run_train(config, FLAGS.workdir)
  state = 'finished' if result.finished else 'stopped early (resumable)'
  print(f'Training {state} at step {int(result.state.step)}.\n'
        f'Test accuracy: {result.test_accuracy:.4f}\n'
        f'Written to {FLAGS.workdir}', flush=True)


if __name__ == '__main__':
  app.run(main)
