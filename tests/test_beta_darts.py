"""beta-DARTS: the Beta-Decay term, its gradient and its schedule by hand."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdarts import methods

LN2, LN3 = float(np.log(2.)), float(np.log(3.))


def test_beta_decay_term_and_gradient_by_hand():
  # Rows (edges) of both cells: logsumexp [0, ln3] = ln4, [ln2, ln2] = ln4,
  # [0, 0] = ln2; their mean is (2 ln4 + ln2) / 3 = 5 ln2 / 3.
  arch = {'normal': jnp.array([[0., LN3], [LN2, LN2]]),
          'reduce': jnp.array([[0., 0.]])}
  method = methods.get('beta_darts', num_steps=100, lambda_end=25.)
  step = jnp.int32(40)  # lambda = 25 * 40 / 100 = 10.
  loss = jnp.float32(0.7)
  np.testing.assert_allclose(method.arch_objective(loss, arch, step=step),
                             0.7 + 10. * 5. * LN2 / 3., rtol=1e-6)
  # d logsumexp(row) / d row = softmax(row); the mean divides by 3 rows.
  grads = jax.grad(lambda a: method.arch_objective(loss, a, step=step))(arch)
  np.testing.assert_allclose(grads['normal'],
                             10. / 3. * np.array([[0.25, 0.75], [0.5, 0.5]]),
                             rtol=1e-6)
  np.testing.assert_allclose(grads['reduce'], 10. / 3. * np.array([[.5, .5]]),
                             rtol=1e-6)


def test_lambda_grows_linearly_with_the_step():
  method = methods.get('beta_darts', num_steps=200, lambda_end=25.)
  got = [float(method.schedule(jnp.int32(s))['beta_lambda'])
         for s in (0, 50, 100, 200, 260)]
  np.testing.assert_allclose(got, [0., 6.25, 12.5, 25., 25.], rtol=1e-6)
  # At lambda = 0 the objective is the validation loss alone (DARTS).
  arch = {'normal': jnp.ones((2, 3)), 'reduce': jnp.zeros((2, 3))}
  assert float(method.arch_objective(jnp.float32(0.3), arch,
                                     step=jnp.int32(0))) == np.float32(0.3)
  # The mixing weights are DARTS's softmax.
  np.testing.assert_allclose(
      method.relax(arch)['normal'], np.full((2, 3), 1. / 3.), rtol=1e-6)
