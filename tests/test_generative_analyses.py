"""Known answers of the generative-flow analyses (jaxdyn/models/_generative.py): the FTLE and the
Lyapunov exponents of a linear sampling map in closed form, the basins of a regular polygon's
vertices under the memorising (empirical-score) probability flow, memorisation of that flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import jaxdyn.models as jm

A = jnp.array([[0.5, 1.0], [0.0, -1.0]])
T0, T1 = 1.0, 0.2  # backwards in t, as a probability flow runs


def _linear(t, y, args):
    return args @ y


@pytest.fixture(scope="module")
def polygon():
    """Five vertices of a regular pentagon, the VP empirical-score flow down to t_min = 1e-3, and
    its basins over 1500 Gaussian latents (one compiled sampler, shared by the tests)."""
    m = 5
    ang = 2 * np.pi * np.arange(m) / m + 0.3
    points = jnp.asarray(np.stack([np.cos(ang), np.sin(ang)], 1))
    flow = jm.ProbabilityFlow(jm.EmpiricalScore(points, "vp"), t_min=1e-3)
    sampler = jm.SamplingMap(flow, flow.t1, flow.t_min, scale=flow.sde.prior_std, n_steps=60)
    latents = jax.random.normal(jax.random.key(0), (1500, 2))
    res = jm.basins(sampler, latents, points, tol=0.05, batch_size=512)
    return points, flow, sampler, latents, res


def test_linear_sampling_map_ftle_and_lyapunov_closed_form():
    """y' = A y from t = 1 back to 0.2: Phi = scale * expm(-0.8 A); FTLE = log sigma_i(Phi) / 0.8 at every
    latent, and the Lyapunov exponents along trajectories sum to (log det Phi) / 0.8
    = (2 log 2 + 0.8 * 0.5) / 0.8."""
    sampler = jm.SamplingMap(_linear, T0, T1, args=A, n_steps=40, scale=2.0)
    assert not sampler.log_time  # a ratio of 5: uniform steps
    span = T0 - T1
    phi = 2.0 * scipy.linalg.expm(-span * np.asarray(A))
    expected = np.log(np.linalg.svd(phi, compute_uv=False)) / span
    latents = jnp.array([[1.0, 0.0], [0.3, -2.0], [-1.0, 0.5]])
    ftle = jm.sampling_ftle(sampler, latents)
    np.testing.assert_allclose(ftle.exponents, np.broadcast_to(expected, (3, 2)), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ftle.final_points, latents @ phi.T, atol=1e-8)
    assert float(ftle.duration) == pytest.approx(span)
    lyap = jm.sampling_lyapunov(sampler, latents, renorm_every=4)
    np.testing.assert_allclose(lyap.exponents.sum(1), np.log(np.linalg.det(phi)) / span, atol=1e-10)
    # the local rates are those of the field: the trace of -A per unit time in every block
    np.testing.assert_allclose(lyap.local_rates.sum(1), -np.trace(np.asarray(A)), atol=1e-8)
    assert lyap.times.shape == (11,) and float(lyap.times[0]) == T0
    assert float(lyap.times[-1]) == pytest.approx(T1)


def test_polygon_basins_equal_within_sampling_error_and_every_sample_memorised(polygon):
    """Symmetric points (a pentagon centred at the origin, latents N(0, I)): basin fractions all equal 1/5
    within 3 binomial standard errors, every sample within tol = 0.05 of a training point, and the
    memorisation measure says 1 (median distance ~ sigma(t_min) ~ 0.014)."""
    points, _, _, latents, res = polygon
    assert res.labels.shape == (1500,) and bool(np.all(np.asarray(res.successful)))
    assert float(res.unassigned) == 0.0
    f, se = np.asarray(res.fractions), np.asarray(res.stderr)
    assert f.sum() == pytest.approx(1.0)
    assert np.all(np.abs(f - 0.2) <= 3 * se), (f, se)
    mem = jm.memorisation(res.samples, points, tol=0.05)
    assert float(mem.fraction) == 1.0 and float(mem.fraction_stderr) == 0.0
    assert 0.003 < float(mem.median_distance) < 0.03
    assert float(mem.spacing) == pytest.approx(2 * np.sin(np.pi / 5))
    assert "5 training points" in res.summary() and "fraction within tol: 1.0000" in mem.summary()


def test_memorisation_of_spread_samples_is_partial():
    """Known distances: samples at 0, 0.05 and 1 from the point (0, 0): 2/3 within tol = 0.1."""
    mem = jm.memorisation(jnp.array([[0.0, 0.0], [0.03, 0.04], [0.6, 0.8]]), jnp.array([[0.0, 0.0]]), tol=0.1)
    np.testing.assert_allclose(mem.distances, [0.0, 0.05, 1.0], atol=1e-15)
    assert np.all(np.isinf(mem.second_distances)) and float(mem.ratio_fraction) == 1.0
    assert float(mem.fraction) == pytest.approx(2 / 3)
    assert float(mem.fraction_stderr) == pytest.approx(np.sqrt(2 / 9 / 3))
    assert float(mem.median_distance) == pytest.approx(0.05)
    assert np.isnan(float(mem.spacing))
    # Gu et al.'s ratio: nearer than 1/3 of the second-nearest point; (0.4, 0) is at 0.4 from the first
    # point and 0.6 from the second (not a copy), (0.1, 0) at 0.1 and 0.9 (a copy)
    two = jm.memorisation(jnp.array([[0.4, 0.0], [0.1, 0.0]]), jnp.array([[0.0, 0.0], [1.0, 0.0]]), tol=0.5)
    np.testing.assert_allclose(two.second_distances, [0.6, 0.9], atol=1e-15)
    assert float(two.fraction) == 1.0 and float(two.ratio_fraction) == 0.5


def test_results_plot(polygon):
    import matplotlib.pyplot as plt

    points, _, _, _, res = polygon
    fig = res.plot()
    assert fig.axes[0].get_xlabel() == "latent $z_1$"
    fig2 = jm.memorisation(res.samples, points, tol=0.05).plot()
    plt.close(fig)
    plt.close(fig2)


# --- slow lane (tests/conftest.py SLOW) ---------------------------------------------------------------


def test_fixed_step_sampler_matches_adaptive_probability_flow(polygon):
    """The SamplingMap's 60 geometric RK4 steps against ProbabilityFlow.sample (Tsit5, rtol 1e-6): the same
    basins, samples within 1e-4; doubling n_steps changes them by less than 1e-4 too."""
    points, flow, sampler, latents, res = polygon
    xs = jax.vmap(flow.sample)(latents[:200])
    assert float(jnp.max(jnp.abs(xs - res.samples[:200]))) < 1e-4
    adaptive = jm.basins(flow.sample, latents[:200], points, tol=0.05)
    np.testing.assert_array_equal(adaptive.labels, res.labels[:200])
    finer = jm.SamplingMap(flow, flow.t1, flow.t_min, scale=flow.sde.prior_std, n_steps=120)
    assert float(jnp.max(jnp.abs(jax.vmap(finer)(latents[:200]) - res.samples[:200]))) < 1e-4


def test_ve_polygon_basins_equal_and_memorised():
    """The same symmetric known answer under the VE schedule (prior_std = sigma_max = 10: the latent is
    scaled)."""
    m = 4
    ang = 2 * np.pi * np.arange(m) / m
    points = jnp.asarray(np.stack([np.cos(ang), np.sin(ang)], 1))
    flow = jm.ProbabilityFlow(jm.EmpiricalScore(points, "ve"))
    sampler = jm.SamplingMap(flow, flow.t1, flow.t_min, scale=flow.sde.prior_std, n_steps=100)
    res = jm.basins(sampler, jax.random.normal(jax.random.key(1), (2000, 2)), points, tol=0.05)
    f, se = np.asarray(res.fractions), np.asarray(res.stderr)
    assert float(res.unassigned) == 0.0 and np.all(np.abs(f - 0.25) <= 3 * se), (f, se)


def test_sampling_map_jit_vmap_grad(polygon):
    """One compilation for many latents, vmap = loop, and the gradient of a sample coordinate in the
    latent against central differences (the fixed-step map is smooth)."""
    import equinox as eqx

    from tests.helpers import fd_directional

    _, _, sampler, latents, _ = polygon
    f = eqx.filter_jit(eqx.debug.assert_max_traces(lambda s, z: s(z), max_traces=1))
    loop = jnp.stack([f(sampler, z) for z in latents[:4]])
    np.testing.assert_allclose(loop, jax.vmap(sampler)(latents[:4]), rtol=1e-12, atol=1e-12)
    z, v = latents[7], jnp.array([0.6, -0.8])
    g = jax.grad(lambda z: sampler(z)[0])(z)
    fd = fd_directional(lambda z: sampler(z)[0], z, v)
    np.testing.assert_allclose(g @ v, fd, rtol=1e-5, atol=1e-8)


def test_ftle_ridges_separate_basins(polygon):
    """The FTLE field of the memorising flow: its largest values sit on basin boundaries (latents whose
    neighbours end at other points), the strongest contraction inside the basins."""
    points, _, sampler, _, _ = polygon
    g = np.linspace(-2.5, 2.5, 41)
    grid = jnp.asarray(np.stack(np.meshgrid(g, g), -1))
    ftle = jm.sampling_ftle(sampler, grid)
    b = jm.basins(sampler, grid.reshape(-1, 2), points, tol=0.05)
    lab = np.asarray(b.labels).reshape(41, 41)
    edge = np.zeros_like(lab, bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[1:] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, :-1] != lab[:, 1:]
    top = np.asarray(ftle.ftle)
    assert float(np.max(top)) == float(np.max(top[edge])) > 0
    assert float(np.min(top)) == float(np.min(top[~edge]))
    assert np.median(top[edge]) > np.median(top[~edge]) + 0.3, (np.median(top[edge]), np.median(top[~edge]))
