"""Model size: parameter counts and multiply-adds, measured from the network.

* :func:`count_params` counts the parameters of a (possibly abstract)
  variables or params tree, leaving out the auxiliary head by default, as
  the reference code's ``count_parameters_in_MB`` does.
* :func:`count_flops` traces ``model.apply`` to a jaxpr on abstract inputs
  (nothing is compiled or run) and sums the multiply-adds of its
  convolutions and matrix products, the convention of the papers' "mult-adds"
  columns.

Both are cheap on the full-size networks::

    model = NetworkImageNet(genotypes.get('DARTS_V2'))
    variables = jax.eval_shape(lambda: model.init(rng, images, train=False))
    count_params(variables)                       # 4.7M
    count_flops(model, (1, 224, 224, 3))          # ~574M
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.extend.core as jex
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn.depthwise import shift_depthwise_p


def _path_names(path) -> list[str]:
  """The key names along a pytree path (dict keys, attributes, indices)."""
  names = []
  for entry in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(entry, attr):
        names.append(str(getattr(entry, attr)))
        break
  return names


def count_params(params_or_variables: Any, *,
                 exclude: Iterable[str] = ('auxiliary',)) -> int:
  """Number of parameters, leaving out some subtrees.

  Args:
    params_or_variables: a variables dict (only its ``'params'`` collection
      is counted; BatchNorm statistics are not parameters) or a params
      tree. Leaves may be arrays or ``jax.ShapeDtypeStruct`` (e.g. from
      ``jax.eval_shape(model.init, ...)``).
    exclude: leave out every leaf whose path has a key containing one of
      these strings (default: the auxiliary head). Pass ``()`` to count all.

  Returns:
    The total number of scalar parameters.
  """
  tree = params_or_variables
  if isinstance(tree, Mapping) and 'params' in tree:
    tree = tree['params']
  exclude = tuple(exclude)
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if any(word in name for name in _path_names(path) for word in exclude):
      continue
    total += math.prod(jnp.shape(leaf))
  return total


# ---------------------------------------------------------------------------
# Multiply-adds from a jaxpr.


def _conv_macs(eqn) -> int:
  """``conv_general_dilated``: output elements x kernel size per output.

  The kernel's input-feature dimension already holds ``in_channels /
  feature_group_count``, so a grouped (depthwise) convolution counts
  ``k * k`` per output element.
  """
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out, in, *spatial)
  per_output = rhs[rhs_spec[1]] * math.prod(rhs[d] for d in rhs_spec[2:])
  return math.prod(out) * per_output


def _dot_macs(eqn) -> int:
  """``dot_general``: batch x free(lhs) x free(rhs) x contracting dims.

  That is the output size times the contracted size. For the depthwise
  convolution of :mod:`jaxdarts.spaces.darts_cnn.ops` (``'nhwabc,abc->nhwc'`` on patches)
  it gives ``N * Ho * Wo * C * k * k``, the convolution's count.
  """
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  lhs = eqn.invars[0].aval.shape
  return math.prod(eqn.outvars[0].aval.shape) * math.prod(
      lhs[d] for d in lhs_contract)


def _sub_jaxprs(value) -> list[jex.Jaxpr]:
  """The jaxprs held by an equation parameter (alone or in a sequence)."""
  if isinstance(value, jex.ClosedJaxpr):
    return [value.jaxpr]
  if isinstance(value, jex.Jaxpr):
    return [value]
  if isinstance(value, (tuple, list)):
    return [j for v in value for j in _sub_jaxprs(v)]
  return []


def jaxpr_macs(jaxpr: jex.Jaxpr | jex.ClosedJaxpr) -> int:
  """Multiply-adds of the convolutions and matrix products in ``jaxpr``.

  Recurses into the sub-jaxprs of higher-order primitives (``pjit``,
  ``custom_jvp_call``, ``custom_vjp_call``, ``remat``, ...). A ``scan`` body
  counts ``length`` times, a ``cond`` its most expensive branch, a
  ``while`` body once (its trip count is not known when tracing).
  """
  if isinstance(jaxpr, jex.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      total += _conv_macs(eqn)
    elif name == 'dot_general':
      total += _dot_macs(eqn)
    elif eqn.primitive is shift_depthwise_p:  # output elements x k * k
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(
          eqn.invars[1].aval.shape[:2])
    elif name == 'cond':
      total += max((jaxpr_macs(b) for b in eqn.params['branches']), default=0)
    else:
      subs = [j for v in eqn.params.values() for j in _sub_jaxprs(v)]
      if name == 'while':  # cond_jaxpr and body_jaxpr: count the body once.
        subs = _sub_jaxprs(eqn.params['body_jaxpr'])
      macs = sum(jaxpr_macs(j) for j in subs)
      total += macs * (eqn.params['length'] if name == 'scan' else 1)
  return total


def count_flops(model: nn.Module, sample_input_shape: tuple[int, ...],
                **call_kwargs) -> int:
  """Multiply-adds of one forward pass, traced from the network itself.

  The model is initialised and applied on abstract inputs (``jax.eval_shape``
  and ``jax.make_jaxpr``: nothing is compiled or computed), and the
  multiply-adds of every ``conv_general_dilated`` (output elements x kernel
  height x width x input channels / groups) and ``dot_general`` (batch x
  free x contracted dims: dense layers, 1x1 convolutions) and of the CPU
  depthwise primitive of :mod:`jaxdarts.spaces.darts_cnn.depthwise` are summed (see
  :func:`jaxpr_macs`).

  Following the papers' convention, pooling, BatchNorm, activations,
  additions and other elementwise operations are not counted. The count is
  for the whole input batch: pass a batch of 1 for the per-image figure.

  Args:
    model: a Flax module called as ``model.apply(variables, images,
      **call_kwargs)``.
    sample_input_shape: the input's shape, e.g. ``(1, 224, 224, 3)``
      (float32).
    **call_kwargs: further call arguments; ``train`` defaults to False
      (evaluation mode, so no auxiliary head or drop path).

  Returns:
    The number of multiply-adds.
  """
  call_kwargs.setdefault('train', False)
  images = jax.ShapeDtypeStruct(tuple(sample_input_shape), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, **call_kwargs), images)
  jaxpr = jax.make_jaxpr(
      lambda v, x: model.apply(v, x, **call_kwargs))(variables, images)
  return jaxpr_macs(jaxpr)
