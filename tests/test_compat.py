"""Checkpoints written before the package layout (0.1) still resume.

``data/checkpoint_0.1_tiny.json`` records the leaves (paths, shapes,
dtypes) and the model config of a checkpoint of the ``tiny`` search preset
written by jaxdarts 0.1. The state the runner builds today for that preset
must have the same leaves, and its config must accept the old one.
"""

import json
from pathlib import Path

import jax

from experiments.configs import search as search_configs
from jaxdarts.run import search
from jaxdarts.run.checkpoint import Checkpointer
from jaxdarts.run.checkpoint_trees import encode_keys, leaf_specs

OLD = json.loads((Path(__file__).parent / 'data' /
                  'checkpoint_0.1_tiny.json').read_text())


def test_the_state_has_the_leaves_of_a_0_1_checkpoint():
  config = search_configs.get_config('tiny')
  halves = search.load_halves(config)
  abstract = jax.eval_shape(lambda: search.initial_state(config, halves, 33))
  leaves = {'/'.join(path): [list(shape), str(dtype)] for path, (shape, dtype)
            in leaf_specs(encode_keys(abstract)).items()}
  assert leaves == OLD['leaves']


def test_a_0_1_model_config_is_accepted(tmp_path):
  config = search_configs.get_config('tiny')
  with Checkpointer(tmp_path, model_config=search.model_config(config),
                    model_config_defaults=search.MODEL_CONFIG_DEFAULTS) as ckpt:
    ckpt._check_config(OLD['model_config'])  # pylint: disable=protected-access

