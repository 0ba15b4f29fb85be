"""jaxdarts: Differentiable Architecture Search (Liu et al., 2019) in JAX/Flax.

Where things are (the README has the full map):

* the bilevel step: :mod:`jaxdarts.core.step`; its state:
  :mod:`jaxdarts.core.state`; the hypergradients (first order, finite
  differences, exact, unrolled): :mod:`jaxdarts.core.hypergradient`; data
  parallelism: :mod:`jaxdarts.core.parallel`; retraining:
  :mod:`jaxdarts.core.train`;
* search methods (DARTS, ...): :mod:`jaxdarts.methods`;
* search spaces: :mod:`jaxdarts.spaces`; the DARTS CNN space's cell, supernet,
  operations, evaluation networks and published genotypes:
  :mod:`jaxdarts.spaces.darts_cnn` (genotypes in its ``genotype`` module);
* tasks (loss and metrics): :mod:`jaxdarts.tasks`;
* data: :mod:`jaxdarts.data`; parameter and multiply-add counts:
  :mod:`jaxdarts.cost`;
* the search and retraining runs, checkpoints, the workdir:
  :mod:`jaxdarts.run`; drawings and the HTML report: :mod:`jaxdarts.viz`.
"""

from jaxdarts import methods
from jaxdarts import spaces
from jaxdarts import tasks
from jaxdarts.core import hypergradient
from jaxdarts.core import parallel
from jaxdarts.core import train
from jaxdarts.core.evaluate import eval_step
from jaxdarts.core.state import (SearchState, create_search_state,
                                 default_arch_optimizer,
                                 default_weight_optimizer)
from jaxdarts.core.step import search_step, search_step_fn
from jaxdarts.cost import counting
from jaxdarts.cost.counting import count_flops, count_params
from jaxdarts.spaces.darts_cnn.genotype import Genotype
from jaxdarts.spaces.darts_cnn.derive import derive_genotype
from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn import networks
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet
from jaxdarts.spaces.darts_cnn.space import (DARTS_PRIMITIVES, DARTS_SPACE,
                                             SearchSpace)
from jaxdarts.spaces.darts_cnn.supernet import SearchNetwork

__version__ = '0.1.0'
