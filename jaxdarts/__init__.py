"""jaxdarts: Differentiable Architecture Search (Liu et al., 2019) in JAX/Flax.

Where things are:

* the candidate operations: :mod:`jaxdarts.ops`;
* the search space (primitives, nodes, alpha shapes): :mod:`jaxdarts.space`;
* the supernet, its cell and mixed op: :mod:`jaxdarts.supernet`;
* the hypergradients (first order, finite differences, exact, unrolled):
  :mod:`jaxdarts.hypergradient`;
* the bilevel state and step: :mod:`jaxdarts.search`;
* genotypes, their derivation and I/O: :mod:`jaxdarts.genotype`; the
  published ones: :mod:`jaxdarts.genotypes`;
* evaluation networks from a genotype: :mod:`jaxdarts.networks`, their
  retraining steps: :mod:`jaxdarts.train`, parameter and multiply-add
  counts: :mod:`jaxdarts.counting`;
* data parallelism over devices and hosts (pmap, mesh, multi-host
  set-up): :mod:`jaxdarts.parallel`;
* the search and retraining loops: :mod:`jaxdarts.runner` (``run_search``)
  and :mod:`jaxdarts.train_runner` (``run_train``); a run's HTML report:
  :mod:`jaxdarts.report`.
"""

from jaxdarts.core import hypergradient
from jaxdarts.core import parallel
from jaxdarts.core import train
from jaxdarts.cost import counting
from jaxdarts.cost.counting import count_flops, count_params
from jaxdarts.core.search import (SearchState, create_search_state,
                                  default_arch_optimizer,
                                  default_weight_optimizer, eval_step,
                                  search_step, search_step_fn)
from jaxdarts.genotype import Genotype, derive_genotype
from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn import networks
from jaxdarts.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet
from jaxdarts.spaces.darts_cnn.space import (DARTS_PRIMITIVES, DARTS_SPACE,
                                             SearchSpace)
from jaxdarts.spaces.darts_cnn.supernet import SearchNetwork

__version__ = '0.1.0'
