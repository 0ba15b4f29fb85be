"""DrNAS: Dirichlet mixing weights, their reparameterised gradient against
finite differences (float64, common random numbers), and the KL term."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammainc, gammaln

from jaxdarts import methods
from jaxdarts.methods.drnas import concentration

# Concentrations elu(alpha) + 1 from 0.14 (alpha = -2) to 3.
ALPHAS = [[0.3, -0.4, 1.2, -2.0], [2.0, 0.0, -1.0, 0.5]]


def _gamma_quantile(conc, u, start):
  """``x`` with ``P(conc, x) = u`` (regularised lower incomplete gamma), by
  Newton's method on ``log x`` from ``start`` (close: a few steps)."""

  def newton(_, t):
    x = jnp.exp(t)
    # dP/dlog x = x * density = exp(a log x - x - log G(a)).
    slope = jnp.exp(conc * t - x - gammaln(conc))
    return t - (gammainc(conc, x) - u) / slope

  return jnp.exp(jax.lax.fori_loop(0, 8, newton, jnp.log(start)))


def test_dirichlet_gradient_matches_finite_differences_in_float64():
  """The pathwise gradient of w ~ Dir(elu(alpha) + 1) with the random
  numbers held fixed: each gamma variable g_k of the sample (w = g / sum g)
  is the quantile ``P^-1(beta_k, u_k)`` of its uniform ``u_k = P(beta_k,
  g_k)``; moving alpha by +-h with the same u's and differencing gives the
  reparameterised Jacobian, independently of JAX's gamma gradient."""
  with jax.enable_x64(True):
    method, rng, h = methods.get('drnas'), jax.random.key(5), 1e-6
    relax = lambda a: method.relax({'normal': a}, rng=rng)['normal']

    @jax.jit
    def jacobians(alphas):
      # The gamma variables behind the sample (the cell's key, as relax).
      beta = concentration(alphas)
      gammas = jax.random.gamma(jax.random.split(rng, 1)[0], beta,
                                dtype=jnp.float64)
      uniforms = gammainc(beta, gammas)

      def sample_at(moved):
        g = _gamma_quantile(concentration(moved), uniforms, gammas)
        return g / g.sum(-1, keepdims=True)

      shifts = h * jnp.eye(alphas.size).reshape((-1,) + alphas.shape)
      fd = (jax.vmap(sample_at)(alphas + shifts)
            - jax.vmap(sample_at)(alphas - shifts)) / (2 * h)
      fd = jnp.moveaxis(fd.reshape(alphas.shape + alphas.shape), (0, 1),
                        (2, 3))
      return (jax.jacrev(relax)(alphas), fd, relax(alphas),
              gammas / gammas.sum(-1, keepdims=True))

    autodiff, fd, sample, normalised = jacobians(
        jnp.asarray(ALPHAS, jnp.float64))
    np.testing.assert_allclose(sample, normalised, rtol=1e-12)
    np.testing.assert_allclose(autodiff, fd, rtol=1e-5, atol=1e-8)
    # A sample depends only on its own edge's alphas.
    assert np.abs(fd[0, :, 1]).max() == 0 == np.abs(autodiff[0, :, 1]).max()
    assert np.abs(fd[0, :, 0]).min() > 0


def test_samples_are_on_the_simplex_reproducible_mean_without_rng():
  method = methods.get('drnas', num_steps=5)
  arch = {'normal': jnp.asarray(ALPHAS), 'reduce': -jnp.asarray(ALPHAS)}
  a = method.relax(arch, rng=jax.random.key(1))
  b = method.relax(arch, rng=jax.random.key(1))
  c = method.relax(arch, rng=jax.random.key(2))
  for cell in arch:
    w = np.asarray(a[cell])
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(-1), 1., rtol=1e-5)
    np.testing.assert_array_equal(w, b[cell])
    assert not np.allclose(w, c[cell])
  # Evaluation: the Dirichlet mean beta / sum(beta), beta = elu(alpha) + 1.
  beta = np.where(np.asarray(ALPHAS) > 0, np.asarray(ALPHAS) + 1.,
                  np.exp(np.asarray(ALPHAS)))
  np.testing.assert_allclose(method.relax(arch)['normal'],
                             beta / beta.sum(-1, keepdims=True), rtol=1e-6)


def test_kl_to_the_uniform_prior_by_hand():
  # KL(Dir(2, 1) || Dir(1, 1)) = log G(3) - log G(2) - log G(1) - log G(2)
  #   + (2 - 1) (psi(2) - psi(3)) = log 2 - 1/2; KL(Dir(1, 1) || .) = 0.
  arch = {'normal': jnp.array([[1., 0.], [0., 0.]]),   # beta (2, 1), (1, 1)
          'reduce': jnp.array([[0., 1.]])}             # beta (1, 2)
  method = methods.get('drnas', kl_weight=1e-3)
  np.testing.assert_allclose(method.kl(arch), 2 * (np.log(2.) - 0.5),
                             rtol=2e-5)  # float32 log-gamma
  np.testing.assert_allclose(
      method.arch_objective(jnp.float32(1.), arch, step=0),
      1. + 1e-3 * 2 * (np.log(2.) - 0.5), rtol=1e-6)
  # The official default (L2 through the alpha optimizer) adds nothing.
  assert float(methods.get('drnas').arch_objective(
      jnp.float32(1.), arch, step=0)) == 1.
