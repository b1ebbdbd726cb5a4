"""Stochastic trace (Hutchinson, Hutch++) and spectral density (SLQ) known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.curvature as cv

N = 40


@pytest.fixture(scope="module")
def spectrum():
    rng = np.random.default_rng(4)
    lam = np.concatenate([[-2.0, -0.5], rng.uniform(0.0, 3.0, N - 5), [6.0, 8.0, 15.0]])
    U, _ = np.linalg.qr(rng.normal(size=(N, N)))
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T), lam


def test_hutchinson_and_hutchpp(spectrum):
    A, lam = spectrum
    tr = cv.trace(A, key=jax.random.key(0), n_probes=300)
    assert tr.num_hvp == 300 and tr.method == "hutchinson"
    assert abs(float(tr.estimate) - lam.sum()) < 3 * float(tr.stderr)
    # Hutchinson's variance for Rademacher probes: 2 (||A||_F^2 - sum_i A_ii^2) / m
    var = 2 * (np.sum(A**2) - np.sum(np.diag(A) ** 2)) / 300
    assert 0.7 < float(tr.stderr) ** 2 / var < 1.4
    pp = cv.trace(A, key=jax.random.key(1), n_probes=60, method=cv.HutchPlusPlus())
    assert abs(float(pp.estimate) - lam.sum()) < 3 * float(pp.stderr)
    # Hutch++ is exact when the sketch captures the whole range (rank <= n_probes // 3)
    rng = np.random.default_rng(5)
    B = rng.normal(size=(N, 6))
    low = cv.trace(B @ B.T, key=jax.random.key(2), n_probes=60, method=cv.HutchPlusPlus())
    np.testing.assert_allclose(low.estimate, np.sum(B**2), rtol=1e-10)
    assert float(low.stderr) < 1e-8 * np.sum(B**2)


SIGMA = 0.05


def _slq(A, lam, backend=None):
    # one compiled program for every call: same operator type, shapes, probes, order, sigma
    grid = jnp.linspace(lam.min() - 1.0, lam.max() + 1.0, 4001)
    return cv.spectral_density(jnp.asarray(A), key=jax.random.key(3), n_probes=30, order=20,
                               sigma=SIGMA, grid=grid, backend=backend)


def test_slq_moments_and_broadening(spectrum):
    A, lam = spectrum
    sigma = SIGMA
    dens = _slq(A, lam)
    assert dens.nodes.shape == dens.weights.shape == (30, 20) and dens.num_hvp == 600
    np.testing.assert_allclose(jnp.sum(dens.weights, axis=1), 1.0, atol=1e-12)
    m1, e1 = dens.moment(1)
    m2, e2 = dens.moment(2)
    assert abs(float(m1) - lam.mean()) < 3 * float(e1)
    assert abs(float(m2) - np.mean(lam**2)) < 3 * float(e2)
    # the smoothed density integrates to 1 and its second moment is the nodes' plus sigma^2
    g, phi = np.asarray(dens.grid), np.asarray(dens.density)
    np.testing.assert_allclose(np.trapezoid(phi, g), 1.0, atol=1e-8)
    np.testing.assert_allclose(np.trapezoid(g * phi, g), float(m1), atol=1e-8)
    np.testing.assert_allclose(np.trapezoid(g**2 * phi, g), float(m2) + sigma**2, rtol=1e-8)
    # matfree's Lanczos (used directly as the backend) gives the same quadrature
    ref = _slq(A, lam, backend=cv.MatfreeLanczos())
    np.testing.assert_allclose(np.sort(ref.nodes, axis=1), np.sort(dens.nodes, axis=1), atol=1e-8)
    np.testing.assert_allclose(ref.density, dens.density, atol=1e-8)


def test_slq_breakdown_and_plots():
    # 4 distinct eigenvalues (each 10 times): the Krylov space is invariant after 4 steps; our
    # Lanczos restarts (the extra nodes get zero weight); matfree's would divide by zero
    lam = np.repeat([-1.0, 2.0, 5.0, 7.0], N // 4)
    dens = _slq(np.diag(lam), lam)
    assert bool(jnp.all(jnp.isfinite(dens.density)))
    heavy = np.asarray(dens.nodes)[np.asarray(dens.weights) > 1e-10]
    np.testing.assert_allclose(np.unique(np.round(heavy, 8)), [-1.0, 2.0, 5.0, 7.0], atol=1e-8)
    np.testing.assert_allclose(dens.moment(1)[0], lam.mean(), atol=1e-12)  # tr(D)/n exactly
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = dens.plot(reference=lam)
    assert fig.axes and fig.axes[0].get_xlabel().startswith("eigenvalue")
    res = cv.EigenResult(jnp.array([5.0, 2.0]), jnp.eye(2, 12), jnp.array([1e-9, 1e-9]),
                         jnp.array(3), jnp.array(3), jnp.array(True), jnp.array([2.0, 5.0]))
    fig2 = res.plot(reference=[5.0, 2.0])
    assert len(fig2.axes) == 1
    plt.close("all")


def test_density_bad_input(spectrum):
    A, _ = spectrum
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`method`"):
        cv.trace(A, key=key, method="exact")
    with pytest.raises(ValueError, match="`n_probes`"):
        cv.trace(A, key=key, n_probes=1)
    with pytest.raises(ValueError, match="`n_probes`"):
        cv.trace(A, key=key, n_probes=3, method=cv.HutchPlusPlus())
    with pytest.raises(ValueError, match="`sigma`"):
        cv.spectral_density(A, key=key, sigma=-1.0)
    with pytest.raises(ValueError, match="`backend`"):
        cv.spectral_density(A, key=key, backend="scipy")
    with pytest.raises(ValueError, match="`grid`"):
        cv.spectral_density(A, key=key, grid=jnp.ones((2, 2)))
