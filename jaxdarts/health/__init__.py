"""Search health: the architecture Hessian's dominant eigenvalue, collapse
signals and DARTS-ES early stopping (Zela et al., ICLR 2020).

* :mod:`jaxdarts.health.hessian`: the eigenvalue by Lanczos on
  Hessian-vector products;
* :mod:`jaxdarts.health.signals`: parameter-free op counts, per-edge
  entropy and margin;
* :mod:`jaxdarts.health.early_stop`: the DARTS-ES rule, a pure function.
"""

from jaxdarts.health.early_stop import Decision, EarlyStopRule, decide
from jaxdarts.health.signals import architecture_signals
