"""Lyapunov spectra of flows, maps and random products: known answers and transforms."""

import subprocess
import sys
import textwrap

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma

from jaxdyn._results import message
from jaxdyn.lyapunov import (
    RESULTS,
    Checkpoint,
    covariant_lyapunov_vectors,
    flow_spectrum,
    ftle_field,
    kaplan_yorke_dimension,
    map_spectrum,
    product_spectrum,
)


def lorenz(t, y, args):
    x, y_, z = y
    rho = 28.0 if args is None else args
    return jnp.array([10.0 * (y_ - x), x * (rho - z) - y_, x * y_ - 8.0 / 3.0 * z])


def henon(x, args):
    return jnp.array([1.0 - 1.4 * x[0] ** 2 + x[1], 0.3 * x[0]])


def linear(t, y, A):
    return A @ y


@pytest.fixture(scope="module")
def lorenz_result():
    return flow_spectrum(lorenz, jnp.array([1.0, 1.0, 1.0]), dt=0.01, n_steps=100_000,
                         transient_steps=1000, renorm_every=10, progress=False)


def test_linear_real_spectrum():
    lam = np.array([0.5, -0.3, -1.2])
    S = np.array([[1.0, 0.4, -0.2], [0.3, 1.0, 0.5], [-0.1, 0.2, 1.0]])
    A = jnp.asarray(S @ np.diag(lam) @ np.linalg.inv(S))
    res = flow_spectrum(linear, jnp.array([1.0, 0.5, -0.2]), args=A, dt=0.01, n_steps=2000,
                        transient_steps=3000, progress=False)
    np.testing.assert_allclose(res.exponents, lam, atol=1e-8)
    assert bool(res.result == RESULTS.successful) and int(res.failed_step) == -1
    # an adaptive diffrax solver re-orthonormalising on the fixed grid agrees too
    ad = flow_spectrum(linear, jnp.array([1.0, 0.5, -0.2]), args=A, dt=0.1, n_steps=200,
                       transient_steps=300, solver=diffrax.Tsit5(),
                       stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
                       progress=False)
    np.testing.assert_allclose(ad.exponents, lam, atol=1e-7)


def test_linear_complex_pairs():
    # eigenvalues 0.2 +- 2i and -0.5: a rotating pair
    A = jnp.array([[0.2, 2.0, 0.0], [-2.0, 0.2, 0.0], [0.3, 0.1, -0.5]])
    n_steps, dt = 4000, 0.01
    T = n_steps * dt
    # the transient aligns the 2-D tangent subspace with the rotating plane (gap 0.7: e^-28)
    res = flow_spectrum(linear, jnp.array([1.0, 0.0, 0.3]), args=A, dt=dt, n_steps=n_steps,
                        transient_steps=4000, progress=False)
    e = np.asarray(res.exponents)
    np.testing.assert_allclose(e[0] + e[1], 0.4, atol=1e-8)  # the pair's sum is exact
    np.testing.assert_allclose(e[2], -0.5, atol=1e-8)
    assert abs(e[0] - 0.2) < 5 / T and abs(e[1] - 0.2) < 5 / T


def test_lorenz(lorenz_result):
    e = np.asarray(lorenz_result.exponents)
    assert abs(e[0] - 0.9056) < 0.02 and abs(e[1]) < 0.01 and abs(e[2] + 14.5723) < 0.05
    assert abs(e.sum() + (10 + 1 + 8 / 3)) < 1e-3
    assert lorenz_result.history.shape == (1000, 3)  # one row every 10 renormalisations
    np.testing.assert_allclose(lorenz_result.times[-1], 1000.0)
    np.testing.assert_allclose(lorenz_result.history[-1], lorenz_result.exponents)
    assert float(lorenz_result.drift) < 0.05
    assert abs(float(lorenz_result.kaplan_yorke_dimension) - (2 + (e[0] + e[1]) / abs(e[2]))) < 1e-12
    assert 2.05 < float(lorenz_result.kaplan_yorke_dimension) < 2.07


def test_henon_and_logistic():
    res = map_spectrum(henon, jnp.zeros(2), n_steps=100_000, transient_steps=100,
                       progress=False)
    e = np.asarray(res.exponents)
    assert abs(e[0] - 0.419) < 0.01 and abs(e[1] + 1.623) < 0.01
    np.testing.assert_allclose(e.sum(), np.log(0.3), atol=1e-8)
    log = map_spectrum(lambda x, r: r * x * (1 - x), jnp.array([0.3]), args=4.0,
                       n_steps=100_000, transient_steps=100, progress=False)
    assert abs(float(log.exponents[0]) - np.log(2)) < 0.01


def test_input_driven_map():
    """x_{n+1} = A x_n + tanh(u_n): the input does not change the tangent dynamics."""
    A = jnp.array([[0.9, 0.5], [0.0, -0.4]])
    u = jax.random.normal(jax.random.key(0), (600, 2))
    res = map_spectrum(lambda x, u, A: A @ x + jnp.tanh(u), jnp.zeros(2), args=A, inputs=u,
                       n_steps=500, transient_steps=100, progress=False)
    np.testing.assert_allclose(res.exponents, np.log([0.9, 0.4]), atol=1e-10)
    with pytest.raises(ValueError, match="`inputs`"):
        map_spectrum(lambda x, u, A: A @ x, jnp.zeros(2), args=A, inputs=u[:10], n_steps=500)


@pytest.mark.parametrize("N", [3, 6])
def test_gaussian_products(N):
    res = product_spectrum(lambda key: jax.random.normal(key, (N, N)), jax.random.key(N),
                           dim=N, n_steps=5000, n_chains=16, progress=False)
    exact = np.array([(np.log(2) + digamma((N - i + 1) / 2)) / 2 for i in range(1, N + 1)])
    err = np.abs(np.asarray(res.exponents) - exact)
    assert np.all(err < 3 * np.asarray(res.stderr)), (err, res.stderr)
    assert res.stderr.shape == (N,)


def test_products_of_matvecs_equal_matrices():
    def draw(key):
        return jax.random.normal(key, (4, 4))

    mat = product_spectrum(draw, jax.random.key(1), dim=4, n_steps=300, n_chains=2,
                           progress=False)
    vec = product_spectrum(lambda key: (lambda v: draw(key) @ v), jax.random.key(1), dim=4,
                           n_steps=300, n_chains=2, progress=False)
    np.testing.assert_allclose(mat.exponents, vec.exponents, rtol=1e-12)


def test_sde_along_a_noise_realisation():
    """Geometric Brownian motion dX = a X dt + b X dW (Ito): lambda = a - b^2 / 2."""
    a, b, T, dt = 0.3, 0.6, 400.0, 0.01
    bm = diffrax.VirtualBrownianTree(0.0, T + 1.0, tol=dt / 4, shape=(1,), key=jax.random.key(3))
    terms = diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, args: a * y),
                              diffrax.ControlTerm(lambda t, y, args: b * y[:, None], bm))
    res = flow_spectrum(terms, jnp.array([1.0]), dt=dt, n_steps=int(T / dt),
                        solver=diffrax.Euler(), renorm_every=100, progress=False)
    assert abs(float(res.exponents[0]) - (a - b**2 / 2)) < 4 * b / np.sqrt(T)
    again = flow_spectrum(terms, jnp.array([1.0]), dt=dt, n_steps=int(T / dt),
                          solver=diffrax.Euler(), renorm_every=100, progress=False)
    assert float(again.exponents[0]) == float(res.exponents[0])  # the same noise path


def test_blow_up_is_reported():
    res = flow_spectrum(lambda t, y, args: y**2, jnp.array([1.0]), dt=0.01, n_steps=500,
                        progress=False, throw=False)
    assert bool(res.result == RESULTS.nonfinite_state)
    assert 50 <= int(res.failed_step) <= 110  # y = 1 / (1 - t) blows up at t = 1
    # issue #13: a failed run gives NaN exponents (was: the finite estimates before the failure,
    # which now stay in `history`)
    assert bool(jnp.all(jnp.isnan(res.exponents)))
    assert bool(jnp.all(jnp.isfinite(res.history)))
    assert "non-finite" in message(res.result)


def test_jit_vmap_and_precision():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def exps(y0):
        return map_spectrum(henon, y0, n_steps=2000, transient_steps=10, progress=False).exponents

    y0s = jnp.array([[0.0, 0.0], [0.1, 0.05], [-0.2, 0.1]])
    batched = jax.vmap(exps)(y0s)
    loop = jnp.stack([exps(y) for y in y0s])
    np.testing.assert_allclose(batched, loop, rtol=1e-12)
    exps(y0s[0] + 0.01)  # no retrace
    # float32 agrees with float64 to 1e-2 on a chaotic map (the documented tolerance): the
    # trajectories decorrelate, only the statistics agree
    e32 = map_spectrum(henon, jnp.zeros(2, jnp.float32), n_steps=50_000, transient_steps=100,
                       progress=False).exponents
    assert e32.dtype == jnp.float32
    e64 = map_spectrum(henon, jnp.zeros(2), n_steps=50_000, transient_steps=100,
                       progress=False).exponents
    np.testing.assert_allclose(e32, e64, atol=1e-2)


def test_checkpoint_resume(tmp_path):
    kw = dict(dt=0.01, transient_steps=100, renorm_every=5, progress=False)
    full = flow_spectrum(lorenz, jnp.ones(3), n_steps=2000, **kw)
    path = str(tmp_path / "lorenz.npz")
    ck = Checkpoint(path, every=40)
    half = flow_spectrum(lorenz, jnp.ones(3), n_steps=1000, checkpoint=ck, **kw)
    assert half.history.shape == (200, 3)
    resumed = flow_spectrum(lorenz, jnp.ones(3), n_steps=2000, checkpoint=ck, **kw)
    np.testing.assert_allclose(resumed.exponents, full.exponents, rtol=0, atol=1e-12)
    np.testing.assert_allclose(resumed.history, full.history, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="`checkpoint`"):
        flow_spectrum(lorenz, jnp.ones(3), n_steps=2000, checkpoint=ck, k=2, **kw)


def test_covariant_vectors():
    A = jnp.array([[2.0, 1.0], [0.0, 0.5]])
    res = covariant_lyapunov_vectors(lambda x, a: A @ x, jnp.ones(2), n_steps=20,
                                     transient_steps=20, backward_steps=20)
    np.testing.assert_allclose(res.exponents, np.log([2.0, 0.5]), atol=1e-12)
    _, eigvecs = np.linalg.eig(np.asarray(A))  # eigenvalues 2, 0.5 in that order
    for V in np.asarray(res.vectors):
        for j in range(2):
            assert abs(abs(V[:, j] @ eigvecs[:, j]) - 1) < 1e-10
    res = covariant_lyapunov_vectors(henon, jnp.zeros(2), n_steps=500, transient_steps=200,
                                     backward_steps=200)
    J = jax.vmap(jax.jacfwd(lambda x: henon(x, None)))(res.states[:-1])
    Jv = jnp.einsum("tij,tjk->tik", J, res.vectors[:-1])
    Jv = Jv / jnp.linalg.norm(Jv, axis=1, keepdims=True)
    assert float(jnp.max(1 - jnp.abs(jnp.sum(Jv * res.vectors[1:], axis=1)))) < 1e-10
    assert bool(jnp.all(res.angles > 0))


def test_ftle_field():
    pts = jnp.stack(jnp.meshgrid(jnp.linspace(-1, 1, 4), jnp.linspace(-1, 1, 3)), -1)
    A = jnp.array([[1.0, 0.0], [0.0, -2.0]])
    res = ftle_field(lambda t, y, a: A @ y, pts, t1=1.0, dt=0.01)
    assert res.exponents.shape == (3, 4, 2)
    np.testing.assert_allclose(res.exponents, np.broadcast_to([1.0, -2.0], (3, 4, 2)), atol=1e-8)
    np.testing.assert_allclose(res.ftle, 1.0, atol=1e-8)


def test_kaplan_yorke():
    assert float(kaplan_yorke_dimension(jnp.array([0.5, 0.0, -1.0]))) == pytest.approx(2.5)
    assert float(kaplan_yorke_dimension(jnp.array([-0.1, -1.0]))) == 0.0
    assert float(kaplan_yorke_dimension(jnp.array([0.2, 0.1]))) == 2.0
    assert float(kaplan_yorke_dimension(jnp.array([0.419, -1.623]))) == pytest.approx(
        1 + 0.419 / 1.623)


class TestBadInput:
    def test_flow(self):
        y0 = jnp.ones(3)
        with pytest.raises(ValueError, match="`k`"):
            flow_spectrum(lorenz, y0, dt=0.01, n_steps=10, k=4)
        with pytest.raises(ValueError, match="`n_steps`"):
            flow_spectrum(lorenz, y0, dt=0.01, n_steps=0)
        with pytest.raises(ValueError, match="`dt`"):
            flow_spectrum(lorenz, y0, dt=0.0, n_steps=10)
        with pytest.raises(ValueError, match="`dt`"):
            flow_spectrum(lorenz, y0, dt=-0.1, n_steps=10)
        with pytest.raises(ValueError, match="`y0`"):
            flow_spectrum(lorenz, jnp.array([1.0, jnp.nan, 0.0]), dt=0.01, n_steps=10)
        with pytest.raises(ValueError, match="`field`"):
            flow_spectrum(lambda t, y, a: y[:2], y0, dt=0.01, n_steps=10)
        with pytest.raises(TypeError, match="`field`"):
            flow_spectrum(3.0, y0, dt=0.01, n_steps=10)
        with pytest.raises(ValueError, match="`renorm_every`"):
            flow_spectrum(lorenz, y0, dt=0.01, n_steps=10, renorm_every=3)

    def test_map_and_products(self):
        with pytest.raises(ValueError, match="`map_fn`"):
            map_spectrum(lambda x, a: jnp.ones(3), jnp.zeros(2), n_steps=10)
        with pytest.raises(ValueError, match="`sample_fn`"):
            product_spectrum(lambda k: jnp.ones((2, 3)), jax.random.key(0), dim=2, n_steps=10)
        with pytest.raises(ValueError, match="`n_chains`"):
            product_spectrum(lambda k: jnp.eye(2), jax.random.key(0), dim=2, n_steps=10,
                             n_chains=0)


def test_sweep_sharded_equals_single_device():
    """Lorenz rho sweep on 4 virtual CPU devices equals the single-device result."""
    code = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from jaxdyn.lyapunov import flow_spectrum, sweep
        assert len(jax.devices()) == 4, jax.devices()

        def lorenz(t, y, rho):
            return jnp.array([10 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1],
                              y[0] * y[1] - 8 / 3 * y[2]])

        fn = lambda rho: flow_spectrum(lorenz, jnp.ones(3), args=rho, dt=0.01, n_steps=500,
                                       transient_steps=100, progress=False).exponents
        rhos = jnp.linspace(0.0, 250.0, 30)
        sharded = sweep(fn, rhos)
        assert len(sharded.sharding.device_set) == 4, sharded.sharding
        single = sweep(fn, rhos, shard=False)
        loop = np.stack([np.asarray(fn(r)) for r in rhos[:3]])
        np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(single)[:3], loop, rtol=0, atol=1e-12)
        print("OK", np.asarray(sharded)[-1])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
