"""Known answers of the probability-flow ODE and its scores (`jaxdyn.models._score`, issue #20).

Main lane: the schedules' consistency, the Gaussian sampling map against the closed-form linear
transport (VP and VE, to 1e-6) with the mapped samples' moments, the empirical score against the
autodiff gradient of the mixture's log-density, and memorisation/basins under the empirical flow.
Slow lane (tests/conftest.py SLOW): the log-density, jit once, grads against finite differences,
DSM training, failure codes and plots.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal

import jaxdyn.models as jm
from jaxdyn._results import RESULTS
from tests.helpers import fd_directional

MU = jnp.array([1.0, -0.5])
SIGMA = jnp.array([[2.0, 0.6], [0.6, 0.5]])
TIGHT = diffrax.PIDController(rtol=1e-10, atol=1e-10)
N_GAUSS = 512


def _polygon(m, radius=1.0):
    ang = 2 * np.pi * np.arange(m) / m
    return jnp.asarray(radius * np.stack([np.cos(ang), np.sin(ang)], axis=1))


@pytest.fixture(scope="module")
def latent():
    return jax.random.normal(jax.random.key(0), (N_GAUSS, 2))


@jax.jit
def _schedule_residuals(sde, t):
    """alpha' - f alpha and (sigma^2)' - 2 f sigma^2 - g^2 (f from the drift), relative."""
    f = sde.drift(t, jnp.ones(1))[0]
    da = jax.grad(sde.alpha)(t)
    ds2 = jax.grad(lambda s: sde.sigma(s) ** 2)(t)
    return (da - f * sde.alpha(t)) / sde.alpha(t), (ds2 - 2 * f * sde.sigma(t) ** 2 - sde.g2(t)) / sde.g2(t)


@pytest.mark.parametrize("sde", [jm.VP(), jm.VE(), jm.VP(beta_min=0.5, beta_max=5.0), jm.VE(0.05, 3.0)])
def test_schedule_is_consistent(sde):
    """alpha' = f alpha and (sigma^2)' = 2 f sigma^2 + g^2, sigma_0 = 0, alpha_0 = 1: the Gaussian
    marginals are those of the SDE (to 1e-10 relative)."""
    res_a, res_s = jax.vmap(lambda t: _schedule_residuals(sde, t))(jnp.array([1e-3, 0.3, 0.9]))
    assert np.abs(res_a).max() < 1e-12 and np.abs(res_s).max() < 1e-10
    assert float(sde.sigma(0.0)) == 0.0 and float(sde.alpha(0.0)) == 1.0


@pytest.mark.parametrize("kind", ["vp", pytest.param("ve", id="ve")])
def test_gaussian_sampling_map_is_the_linear_transport(kind, latent):
    """Exact Gaussian score: the PF map z -> x equals m_tmin + C_tmin^{1/2} C_T^{-1/2} (x_T - m_T)
    to 1e-6 (measured 5e-11 at rtol = atol = 1e-10; 5e-7 at the default rtol 1e-6, atol 1e-8),
    and the mapped N(0, I) samples have mean mu and covariance Sigma within sampling error (VP;
    under VE the prior N(0, sigma_max^2 I) is not p_T, so only the map is tested)."""
    score = jm.GaussianScore(MU, SIGMA, kind)
    flow = jm.ProbabilityFlow(score, stepsize_controller=TIGHT)
    xs = jax.vmap(flow.sample)(latent)
    exact = jax.vmap(lambda z: score.transport(flow.sde.prior_std * z, 1.0, flow.t_min))(latent)
    np.testing.assert_allclose(xs, exact, rtol=0, atol=1e-6)
    if kind == "vp":
        n = xs.shape[0]
        var = np.diag(np.asarray(SIGMA))
        se_mean = np.sqrt(var / n)
        assert np.all(np.abs(np.mean(xs, 0) - MU) < 4 * se_mean)
        se_cov = np.sqrt((np.outer(var, var) + np.asarray(SIGMA) ** 2) / n)
        assert np.all(np.abs(np.cov(np.asarray(xs).T) - SIGMA) < 4 * se_cov)


@eqx.filter_jit
def _score_and_autodiff(score, ts, xs):
    """score(t, x), grad_x log_density(t, x) and the weights' sums over a grid of t and x."""
    def at(t, x):
        return (score(t, x), jax.grad(lambda y: score.log_density(t, y))(x),
                jnp.sum(score.weights(t, x)) if hasattr(score, "weights") else jnp.ones(()))
    return jax.vmap(lambda t: jax.vmap(lambda x: at(t, x))(xs))(ts)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_empirical_score_is_the_gradient_of_the_mixture(kind):
    """The stable softmax form equals autodiff of log p_t = logsumexp - ..., to 1e-10 relative,
    from t = 1e-4 (weights one-hot, |score| ~ 1e4-1e6) to t = 1."""
    score = jm.EmpiricalScore(jax.random.normal(jax.random.key(1), (7, 3)), kind)
    xs = jax.random.normal(jax.random.key(2), (5, 3))
    got, want, total = _score_and_autodiff(score, jnp.array([1e-4, 1e-3, 0.05, 0.5, 1.0]), xs)
    assert np.all(np.isfinite(got))
    scale = np.abs(np.asarray(want)).max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(got - want) <= 1e-10 * scale)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_gaussian_score_is_the_gradient_of_its_density():
    score = jm.GaussianScore(MU, SIGMA, "ve")
    ts = jnp.array([1e-3, 0.5])
    x = jnp.array([[0.3, 2.0]])
    got, want, _ = _score_and_autodiff(score, ts, x)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    m, c = score.marginal(0.5)
    np.testing.assert_allclose(score.log_density(0.5, x[0]), multivariate_normal.logpdf(x[0], m, c),
                               rtol=1e-12)


def test_empirical_flow_memorises_with_equal_polygon_basins():
    """Exact empirical score of the 4 vertices of a square (VP, t_min = 1e-3): every one of 400
    samples ends within 10 sigma_tmin (0.105) of a vertex (measured: 3.5 sigma_tmin at most), and
    the basin fractions (nearest vertex) are 1/4 within 4 binomial standard errors (0.087)."""
    m, n = 4, 400
    pts = _polygon(m)
    flow = jm.ProbabilityFlow(jm.EmpiricalScore(pts, "vp"))
    xs = jax.vmap(flow.sample)(jax.random.normal(jax.random.key(3), (n, 2)))
    dist = jnp.linalg.norm(xs[:, None, :] - pts[None], axis=-1)
    sigma = float(flow.sde.sigma(flow.t_min))
    assert float(dist.min(1).max()) < 10 * sigma
    fractions = np.bincount(np.asarray(dist.argmin(1)), minlength=m) / n
    assert np.all(np.abs(fractions - 1 / m) < 4 * np.sqrt((1 / m) * (1 - 1 / m) / n))


@eqx.filter_jit
def _dsm_ve(score, xs, key):
    return jm.dsm_loss(score, xs, key, "ve")


def test_score_network_and_dsm_loss():
    """ScoreNetwork: shape and the 1/sigma_t output scaling; dsm_loss: exactly 0 for the exact score
    of a one-point data set (sigma_t s(t, x_t) = -eps), positive for a wrong score."""
    key = jax.random.key(4)
    net = jm.ScoreNetwork(2, 8, 1, key=key)
    scaled = eqx.tree_at(lambda n: n.sde, net, jm.VP(), is_leaf=lambda x: x is None)
    x = jnp.ones(2)
    out = net(0.5, x)
    assert out.shape == (2,)
    np.testing.assert_allclose(scaled(0.5, x), out / jm.VP().sigma(0.5), rtol=1e-12)
    point = jnp.array([[0.5, -1.0]])
    xs = jnp.repeat(point, 8, axis=0)
    assert float(_dsm_ve(jm.EmpiricalScore(point, "ve"), xs, key)) < 1e-20
    assert float(_dsm_ve(jm.EmpiricalScore(point + 1.0, "ve"), xs, key)) > 1e-3


# ---------------------------------------------------------------------------------------------
# Slow lane
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_flow():
    return jm.ProbabilityFlow(jm.GaussianScore(MU, SIGMA, "vp"), stepsize_controller=TIGHT)


def test_log_prob_is_the_pushforward_density(gaussian_flow):
    """log_prob (instantaneous change of variables, exact trace) equals the closed-form Gaussian
    density of the push-forward of N(0, I) by the exact linear map, to 1e-8 (vmapped)."""
    score = gaussian_flow.score
    t_min = gaussian_flow.t_min
    A = jax.jacfwd(lambda z: score.transport(z, 1.0, t_min))(jnp.zeros(2))
    b = score.transport(jnp.zeros(2), 1.0, t_min)
    xs = jax.random.normal(jax.random.key(5), (6, 2)) + MU
    got = jax.vmap(gaussian_flow.log_prob)(xs)
    want = multivariate_normal.logpdf(xs, b, A @ A.T)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


def test_sample_jits_once_and_vmaps(gaussian_flow):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def sample(flow, z):
        return flow.sample(z)

    z = jax.random.normal(jax.random.key(6), (3, 2))
    one = [sample(gaussian_flow, zi) for zi in z]
    batch = jax.vmap(gaussian_flow.sample)(z)
    np.testing.assert_allclose(jnp.stack(one), batch, rtol=1e-12, atol=1e-12)


def test_gradients_against_finite_differences(gaussian_flow):
    """grad of log_prob in x and in the score's mean (one reverse-mode program) against central
    differences (five-point stencil), to 1e-6 relative."""
    x = jnp.array([0.7, -0.2])
    v = jnp.array([0.6, 0.8])

    def log_prob(x, mu):
        return eqx.tree_at(lambda f: f.score.mean, gaussian_flow, mu).log_prob(x)

    gx, gm = jax.grad(log_prob, argnums=(0, 1))(x, MU)
    np.testing.assert_allclose(gx @ v, fd_directional(lambda y: log_prob(y, MU), x, v), rtol=1e-6)
    np.testing.assert_allclose(gm @ v, fd_directional(lambda mu: log_prob(x, mu), MU, v), rtol=1e-6)


def test_dsm_training_lowers_the_loss():
    """A short DSM training (make_moons, 200 Adam steps) lowers the loss, and the trained network
    samples near the data."""
    from sklearn.datasets import make_moons

    xs = jnp.asarray(make_moons(256, noise=0.05, random_state=0)[0])
    net = jm.ScoreNetwork(2, 32, 2, key=jax.random.key(7), sde="vp")
    fitted = jm.train_score(net, xs, key=jax.random.key(8), n_steps=200, lr=3e-3, batch_size=64,
                            progress=False)
    losses = np.asarray(fitted.losses)
    assert fitted.successful and np.all(np.isfinite(losses))
    assert losses[-30:].mean() < 0.5 * losses[:30].mean()
    samples = jax.vmap(jm.ProbabilityFlow(fitted.model).sample)(jax.random.normal(jax.random.key(9), (32, 2)))
    near = jnp.min(jnp.linalg.norm(samples[:, None] - xs[None], axis=-1), axis=1)
    assert float(jnp.median(near)) < 0.3


def test_failure_codes_and_result_object(gaussian_flow):
    flow = jm.ProbabilityFlow(gaussian_flow.score, max_steps=2)
    sol = flow.solve(jnp.ones(2), throw=False)
    assert int(sol.result._value) == RESULTS.max_steps_reached._value and np.isnan(sol.x).all()
    assert "FAILED" in sol.summary()
    with pytest.raises(eqx.EquinoxRuntimeError, match="maximum number of steps"):
        flow.sample(jnp.ones(2))
    assert np.isnan(float(flow.log_prob(jnp.ones(2), throw=False)))
    traj = gaussian_flow.trajectory(jnp.ones(2), n_points=5)
    assert traj.ys.shape == (5, 2) and traj.successful
    np.testing.assert_allclose(traj.ys[-1], traj.x, rtol=1e-12)
    np.testing.assert_allclose(traj.ys[0], jnp.ones(2), rtol=1e-12)
    assert "1 sample(s)" in traj.summary()
    ax = traj.plot()
    assert ax.get_title()
