"""The command forms the README and the config docstrings document.

Each entry point of ``experiments/`` runs here in-process on the strings a
user types: its flags parsed as `absl.app.run` parses them, its ``main``
run with the runner it calls replaced by a recorder, and what that runner
receives checked (the config fields, the genotype it resolves, the workdir).
The runs themselves are tested in test_run_search.py and test_retrain.py,
which also runs the retraining command end to end with a genotype text.
"""

from __future__ import annotations

import importlib.util
import logging as std_logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from absl import flags
from absl import logging as absl_logging

from experiments.configs import search as search_configs
from experiments.configs import train as train_configs
from jaxdarts import data
from jaxdarts import genotypes
from jaxdarts.core import parallel
from jaxdarts.run import retrain
from jaxdarts.run import search
from jaxdarts.viz import report

# config_flags loads the config files with importlib's deprecated load_module.
pytestmark = pytest.mark.filterwarnings(
    'ignore:the load_module:DeprecationWarning')

ROOT = Path(__file__).resolve().parents[1]
SEARCH = '--config=experiments/configs/search.py'
TRAIN = '--config=experiments/configs/train.py'


def _load(path: Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture
def command(monkeypatch):
  """``command(script, *args)`` runs ``experiments/SCRIPT`` in this process.

  From the repository root, as the README's commands; the script's flags
  are removed from absl's ``FLAGS`` afterwards, so each test may load one.
  """
  before = set(flags.FLAGS)
  loaded_multihost = 'multihost' not in sys.modules
  levels = (absl_logging.get_verbosity(),
            std_logging.getLogger('jaxdarts').level)
  monkeypatch.chdir(ROOT)
  monkeypatch.syspath_prepend(str(ROOT / 'experiments'))
  monkeypatch.delenv('JAX_COORDINATOR_ADDRESS', raising=False)

  def run(script: str, *args: str) -> None:
    argv = [f'experiments/{script}', *args]
    monkeypatch.setattr(sys, 'argv', argv)  # config_flags reads overrides.
    _load(ROOT / argv[0]).main(flags.FLAGS(argv))

  yield run
  flags.FLAGS.unparse_flags()
  for name in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, name)
  if loaded_multihost:
    sys.modules.pop('multihost', None)
  absl_logging.set_verbosity(levels[0])
  std_logging.getLogger('jaxdarts').setLevel(levels[1])


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
  """The ``(config, workdir)`` of each `run_search` or `run_train` call."""
  calls = []

  def run_search(config, workdir):
    calls.append((config, workdir))
    return SimpleNamespace(finished=True, state=SimpleNamespace(step=220),
                           genotype=genotypes.DARTS_V2)

  def run_train(config, workdir):
    calls.append((config, workdir))
    return retrain.TrainResult(SimpleNamespace(step=440), 0.96)

  monkeypatch.setattr(search, 'run_search', run_search)
  monkeypatch.setattr(retrain, 'run_train', run_train)
  return calls


# --- search and resume (the same command) -------------------------------------


@pytest.mark.parametrize('preset', search_configs.PRESETS)
def test_search_presets(command, calls, preset):
  command('cifar_search.py', f'{SEARCH}:{preset}', '--workdir=workdirs/digits')
  [(config, workdir)] = calls
  assert config.to_dict() == search_configs.get_config(preset).to_dict()
  assert workdir == 'workdirs/digits'


def test_search_workdir_with_home_space_and_slash(command, calls, home,
                                                  capsys):
  command('cifar_search.py', f'{SEARCH}:digits', '--workdir=~/my runs/digits/')
  [(_, workdir)] = calls
  assert Path(workdir).expanduser() == home / 'my runs' / 'digits'
  assert ('Written to ~/my runs/digits/genotypes/ (per epoch) and '
          '~/my runs/digits/genotype.txt') in capsys.readouterr().out


# Each type of config field, overridden as --config.FIELD=VALUE.
SEARCH_OVERRIDES = [
    ('search.epochs=10', 10),  # The README's example, with the next one.
    ('search.hypergradient=unrolled', 'unrolled'),
    ('optimizer.arch_lr=3e-3', 3e-3),
    ('optimizer.grad_clip=0', 0.0),
    ('data.augment=false', False),
    ('optimizer.arch_betas=(0.6, 0.99)', (0.6, 0.99)),
    ("model.primitives=('none', 'skip_connect', 'sep_conv_3x3')",
     ('none', 'skip_connect', 'sep_conv_3x3')),
    ('num_devices=2', 2),  # A placeholder: None until given.
    ('data.name=npz:~/my data/digits.npz', 'npz:~/my data/digits.npz'),
    ('data.dir=~/tensorflow_datasets', '~/tensorflow_datasets'),
    ('compilation_cache_dir=', ''),
    ('model.compute_dtype=bfloat16', 'bfloat16'),
]
TRAIN_OVERRIDES = [
    ('train.epochs=10', 10),
    ('genotype=PC_DARTS', 'PC_DARTS'),
    ('model.auxiliary=False', False),
    ('train.drop_path_prob=0.3', 0.3),
    ('data.cutout=0', 0),
    ('optimizer.learning_rate=0.1', 0.1),
]


def _field(config, dotted: str):
  for name in dotted.split('.'):
    config = config[name]
  return config


@pytest.mark.parametrize(
    'script, preset, override, expected',
    [('cifar_search.py', f'{SEARCH}:digits', *o) for o in SEARCH_OVERRIDES]
    + [('cifar_train.py', f'{TRAIN}:digits', *o) for o in TRAIN_OVERRIDES])
def test_config_overrides(command, calls, script, preset, override,
                          expected):
  command(script, preset, '--workdir=w', f'--config.{override}')
  [(config, _)] = calls
  value = _field(config, override.split('=')[0])
  assert value == expected and type(value) is type(expected)


def test_negated_bool_override(command, calls):
  command('cifar_search.py', f'{SEARCH}:digits', '--workdir=w',
          '--noconfig.data.augment')
  assert calls[0][0].data.augment is False


# --- retrain, with each --genotype form ---------------------------------------


def _genotype_forms(home: Path) -> dict[str, tuple[str, object]]:
  """Every form of --genotype: ``{label: (text, the genotype it names)}``."""
  forms = {
      'name': ('DARTS_V2', genotypes.DARTS_V2),
      'alias': ('pc-darts', genotypes.PC_DARTS),
  }
  for name in PUBLISHED:
    genotype = genotypes.get(name)
    forms[f'{name} text'] = (genotypes.PUBLISHED_TEXT[name], genotype)
    # As "$(cat genotype.json)" gives it.
    forms[f'{name} json'] = (genotype.to_json(indent=2), genotype)
  files = home / 'my genotypes'
  files.mkdir()
  genotypes.PDARTS.save(files / 'pdarts.json')
  (files / 'pc darts.txt').write_text(f'{genotypes.PC_DARTS}\n')
  search = home / 'search runs' / 'digits'
  search.mkdir(parents=True)
  genotypes.DARTS_V1.save(search / 'genotype.json')
  forms.update({
      '~ json file': ('~/my genotypes/pdarts.json', genotypes.PDARTS),
      'txt file': (f'{files}/pc darts.txt', genotypes.PC_DARTS),
      'search workdir': ('~/search runs/digits/', genotypes.DARTS_V1),
      'its genotype.json': ('~/search runs/digits/genotype.json',
                            genotypes.DARTS_V1),
  })
  return forms


PUBLISHED = ('DARTS_V1', 'DARTS_V2', 'PC_DARTS', 'PDARTS')
GENOTYPE_FORMS = (['name', 'alias', '~ json file', 'txt file', 'search workdir',
                   'its genotype.json']
                  + [f'{n} {form}' for n in PUBLISHED for form in ('text',
                                                                   'json')])


@pytest.mark.parametrize('form', GENOTYPE_FORMS)
def test_retrain_genotype_forms(command, calls, home, form):
  """`--genotype=X` reaches the run intact and names the genotype."""
  spec, expected = _genotype_forms(home)[form]
  command('cifar_train.py', f'{TRAIN}:digits', '--workdir=workdirs/t',
          f'--genotype={spec}')
  [(config, _)] = calls
  assert config.genotype == spec
  assert genotypes.resolve(config.genotype) == expected


@pytest.mark.parametrize('args, expected', [
    ((), 'DARTS_V2'),  # The config's default.
    (('--config.genotype=PDARTS',), 'PDARTS'),
    (('--config.genotype=PDARTS', f'--genotype={genotypes.DARTS_V1}'),
     str(genotypes.DARTS_V1)),  # --genotype wins.
])
def test_retrain_genotype_default_and_override(command, calls, args,
                                               expected):
  command('cifar_train.py', f'{TRAIN}:digits', '--workdir=workdirs/t', *args)
  assert calls[0][0].genotype == expected


@pytest.mark.parametrize('preset', train_configs.PRESETS)
def test_retrain_presets(command, calls, home, preset):
  command('cifar_train.py', f'{TRAIN}:{preset}', '--workdir=~/t/',
          '--genotype=~/digits/genotype.json')
  [(config, workdir)] = calls
  expected = train_configs.get_config(preset)
  expected.genotype = '~/digits/genotype.json'
  assert config.to_dict() == expected.to_dict()
  assert Path(workdir).expanduser() == home / 't'


# --- the multi-host flags -----------------------------------------------------


@pytest.mark.parametrize('script, preset', [('cifar_search.py', SEARCH),
                                            ('cifar_train.py', TRAIN)])
@pytest.mark.parametrize('args, expected', [
    (('--coordinator_address=host0:1234', '--num_processes=2',
      '--process_id=1'), (('host0:1234', 2, 1), {'detect': False})),
    (('--distributed',), ((None, None, None), {'detect': True})),
    ((), ((None, None, None), {'detect': False})),
])
def test_multihost_flags(command, calls, monkeypatch, script, preset, args,
                         expected):
  joined = []
  monkeypatch.setattr(parallel, 'initialize',
                      lambda *a, **k: joined.append((a, k)) or True)
  command(script, f'{preset}:tiny', '--workdir=DIR', *args)
  assert joined == [expected] and len(calls) == 1


def test_process_flags_without_an_address_are_refused(command, calls):
  with pytest.raises(ValueError, match='need a coordinator_address'):
    command('cifar_search.py', f'{SEARCH}:tiny', '--workdir=DIR',
            '--num_processes=2', '--process_id=1')
  assert not calls


# --- report -------------------------------------------------------------------


def test_report_workdir_forms(command, monkeypatch, home, capsys):
  written = []
  monkeypatch.setattr(report, 'write_report',
                      lambda workdir: written.append(workdir) or 'page.html')
  command('report.py', '--workdir=~/my runs/digits/')
  assert written == ['~/my runs/digits/']
  assert capsys.readouterr().out == 'page.html\n'


def test_report_of_a_missing_workdir_names_it(command, home):
  missing = re.escape(f'error: {home}/my runs/none: no such directory')
  with pytest.raises(SystemExit, match=missing):
    command('report.py', '--workdir=~/my runs/none/')


# --- python -m jaxdarts.data --------------------------------------------------


def test_data_help(capsys):
  with pytest.raises(SystemExit) as info:
    data.main(['--help'])
  assert info.value.code == 0
  assert '{prepare,check}' in capsys.readouterr().out


def test_data_check_npz_under_home_with_a_space(home, capsys):
  rng = np.random.default_rng(0)
  (home / 'my data').mkdir()
  np.savez(home / 'my data' / 'set.npz',
           images=rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8),
           labels=np.arange(6) % 3,
           test_images=rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8),
           test_labels=np.arange(3))
  assert data.main(['check', 'npz:~/my data/set.npz']) == 0
  assert 'train: 6 images of (8, 8, 1), 3 classes' in capsys.readouterr().out
