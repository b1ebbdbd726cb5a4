"""Kuramoto-type particle systems: coupling strategies, known answers, transforms, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.meanfield import graphons

from .helpers import central_directional, fd_step

N = 48
METHODS = (mf.DenseMethod(), mf.FFTMethod(), mf.LowRankMethod(), mf.SparseMethod())
TS = jnp.linspace(0.0, 5.0, 11)
_rhs = eqx.filter_jit(lambda field, y: field(0.0, y))  # one compile per operator type


@pytest.fixture(scope="module")
def state():
    key = jax.random.key(3)
    k1, k2 = jax.random.split(key)
    theta = jax.random.uniform(k1, (N,), minval=-np.pi, maxval=np.pi)
    omega = jax.random.normal(k2, (N,))
    return theta, omega


def _direct(theta, omega, w, k, lag, g=np.sin, scale=None):
    """The defining double sum, in NumPy."""
    th = np.asarray(theta)
    scale = 1.0 / len(th) if scale is None else scale
    return np.asarray(omega) + k * scale * np.sum(np.asarray(w) * g(th[None, :] - th[:, None] - lag), 1)


def test_strategies_agree_with_direct_sum(state):
    # W(x, y) = (1 + cos 2 pi (x - y)) / 2: circulant and rank 3
    theta, omega = state
    w = graphons.fourier([0.5, 0.5])
    x = mf.grid(N)
    wm = w(x[:, None], x[None, :])
    ref = _direct(theta, omega, wm, 1.7, 0.4)
    ops = set()
    for method in METHODS:
        field = mf.Kuramoto(omega, 1.7, graph=w, phase_lag=0.4, method=method)
        ops.add(type(field.operator).__name__)
        np.testing.assert_allclose(_rhs(field, theta), ref, atol=1e-12, rtol=0)
    assert ops == {"Dense", "Circulant", "LowRank", "Sparse"}
    assert isinstance(mf.Kuramoto(omega, 1.0, graph=w).operator, mf.Circulant)  # auto: FFT on the grid
    # the same matrix as an array, a BCOO and an edge list
    a = (wm > 0.6).astype(float)
    ref_a = _direct(theta, omega, a, 1.7, 0.4)
    rows, cols = np.nonzero(np.asarray(a))
    from jax.experimental import sparse as jsparse

    for graph in (a, jsparse.BCOO.fromdense(a), (rows, cols), (rows, cols, np.ones(rows.size))):
        np.testing.assert_allclose(_rhs(mf.Kuramoto(omega, 1.7, graph=graph, phase_lag=0.4), theta), ref_a,
                                   atol=1e-12, rtol=0)


def test_ring_fft_and_degree_normalisation(state):
    theta, omega = state
    ring = graphons.ring(0.25)
    x = mf.grid(N)
    wm = np.asarray(ring(x[:, None], x[None, :]))
    assert np.all(wm.sum(1) == 2 * 12 + 1)  # r = 12/N: 12 neighbours each side and itself
    ref = _direct(theta, omega, wm, 2.0, 1.46, scale=1.0 / wm.sum(1))
    for method in (mf.FFTMethod(), mf.DenseMethod(), mf.SparseMethod()):
        f = mf.Kuramoto(omega, 2.0, graph=ring, phase_lag=1.46, normalisation="degree", method=method)
        np.testing.assert_allclose(_rhs(f, theta), ref, atol=1e-12, rtol=0)
    # sparse scaling rho: K / (rho N)
    f = mf.Kuramoto(omega, 2.0, graph=wm, normalisation=0.25)
    np.testing.assert_allclose(_rhs(f, theta), _direct(theta, omega, wm, 2.0, 0.0, scale=1 / (0.25 * N)),
                               atol=1e-12)


def test_harmonics_and_general_g(state):
    theta, omega = state
    g = mf.Harmonics(sin=[1.0, -0.3], cos=[0.2, 0.1], const=0.05)
    gnp = lambda p: np.asarray(g(jnp.asarray(p)))
    w = graphons.small_world(0.2, 0.9, 0.1)
    x = mf.grid(N)
    wm = w(x[:, None], x[None, :])
    ref = _direct(theta, omega, wm, 1.3, 0.7, g=gnp)
    for method in (mf.FFTMethod(), mf.DenseMethod(), mf.SparseMethod()):
        f = mf.Kuramoto(omega, 1.3, graph=w, g=g, phase_lag=0.7, method=method)
        np.testing.assert_allclose(_rhs(f, theta), ref, atol=1e-12, rtol=0)
    f = mf.Kuramoto(omega, 1.3, graph=w, g=lambda p: g(p), phase_lag=0.7)  # general callable
    assert isinstance(f.operator, mf.Dense)
    np.testing.assert_allclose(_rhs(f, theta), ref, atol=1e-12, rtol=0)
    fs = mf.Kuramoto(omega, 1.3, graph=w, g=lambda p: g(p), phase_lag=0.7, method=mf.SparseMethod())
    np.testing.assert_allclose(_rhs(fs, theta), ref, atol=1e-12, rtol=0)


def test_neural_field_strategies(state):
    x0, b = state
    w = graphons.fourier([0.5, 0.25, 0.2])
    xs = mf.grid(N)
    wm = np.asarray(w(xs[:, None], xs[None, :]))
    ref = -np.asarray(x0) + 0.8 / N * wm @ np.tanh(np.asarray(x0)) + np.asarray(b)
    for method in METHODS:
        f = mf.NeuralField(b, coupling=0.8, graph=w, method=method)
        np.testing.assert_allclose(_rhs(f, x0), ref, atol=1e-12, rtol=0)


@pytest.fixture(scope="module")
def dense_solve():
    """One compiled adaptive solve for every dense N x N test below."""
    return lambda field, y0, ts: mf.simulate(field, y0, ts, rtol=1e-10, atol=1e-10)


def test_digraph_measure_reproduces_network_and_graphon(state, dense_solve):
    theta, omega = state
    a = (jax.random.uniform(jax.random.key(7), (N, N)) < 0.3).astype(float)  # directed
    assert not np.allclose(a, a.T)
    ts = TS
    net = dense_solve(mf.Kuramoto(omega, 3.0, graph=a, phase_lag=0.2), theta, ts).ys
    meas = dense_solve(mf.Kuramoto(omega, 3.0, graph=mf.DigraphMeasure.from_adjacency(a), phase_lag=0.2),
                       theta, ts).ys
    np.testing.assert_allclose(meas, net, atol=1e-10, rtol=0)
    w = graphons.fourier([0.5, 0.5])
    gra = dense_solve(mf.Kuramoto(omega, 3.0, graph=w, method=mf.DenseMethod()), theta, ts).ys
    measure = mf.DigraphMeasure(lambda x, y: w(x, y))
    den = dense_solve(mf.Kuramoto(omega, 3.0, graph=measure, method=mf.DenseMethod()), theta, ts).ys
    np.testing.assert_allclose(den, gra, atol=1e-10, rtol=0)
    # a directed density plus atoms: the coupling matrix adds N * atom weights at the nearest nodes
    dm = mf.DigraphMeasure(lambda x, y: x * (1 - y) + 0 * y, jnp.array([0.26]), jnp.array([[0.5], [2.0]]))
    m = np.asarray(dm.coupling_matrix(mf.grid(4)))
    expect = np.asarray([[xi * (1 - yj) for yj in mf.grid(4)] for xi in mf.grid(4)])
    expect[:, 1] += 4 * np.array([0.5, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(m, expect, atol=1e-14)
    np.testing.assert_allclose(dm.total_mass(jnp.array([0.1, 0.9])), [0.05 + 0.5, 0.45 + 2.0], atol=1e-6)


def test_zero_coupling_is_free_rotation_and_jit_does_not_retrace(state, dense_solve):
    theta, omega = state

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def rhs(field, y):
        return field(0.0, y)

    for k in (0.0, 1.0, 2.5):  # coupling is an array leaf: no retrace
        rhs(mf.Kuramoto(omega, k, graph=graphons.ring(0.2)), theta)
    for graph in (None, graphons.ring(0.2)):  # dense: shares the compiled solve of the digraph test
        sol = dense_solve(mf.Kuramoto(omega, 0.0, graph=graph, method=mf.DenseMethod()), theta, TS)
        np.testing.assert_allclose(sol.ys, theta + TS[:, None] * omega, atol=1e-12, rtol=0)


def _identity(x):
    return x


def test_linear_neural_field_mean():
    # sigma = id, b = 0, W = w: m(t) = m0 exp((w - 1) t)
    x0 = jnp.linspace(-1.0, 2.0, 16)
    ts = jnp.linspace(0.0, 2.0, 5)
    for w in (0.3, 0.9):  # fixed-step RK4, dt = 0.01: error ~ 1e-10
        f = mf.NeuralField(jnp.zeros(16), graph=graphons.constant(w), activation=_identity)
        m = jnp.mean(mf.simulate(f, x0, ts, solver=mf.RK4(), dt0=0.01).ys, axis=1)
        np.testing.assert_allclose(m, jnp.mean(x0) * jnp.exp((w - 1) * ts), rtol=1e-8)


def test_vmap_and_grad(state):
    theta, omega = state
    f = mf.Kuramoto(omega, 1.5, graph=graphons.fourier([0.5, 0.5]), phase_lag=0.3)
    batch = jnp.stack([theta, theta + 0.3, -theta])
    np.testing.assert_allclose(eqx.filter_vmap(_rhs, in_axes=(None, 0))(f, batch),
                               np.stack([_rhs(f, y) for y in batch]), atol=1e-13)

    # gradient of a scalar of the field in (K, theta) against central differences
    w = graphons.fourier([0.5, 0.5])

    def loss(k, th):
        return jnp.sum(jnp.sin(mf.Kuramoto(omega, k, graph=w, phase_lag=0.3)(0.0, th)))

    k0 = jnp.asarray(1.5)
    gk, gth = jax.jit(jax.grad(loss, argnums=(0, 1)))(k0, theta)
    v = jnp.cos(jnp.arange(N))
    fd_k = central_directional(lambda k: loss(k, theta), k0, jnp.asarray(1.0), fd_step(k0))
    fd_t = central_directional(lambda th: loss(k0, th), theta, v, fd_step(theta))
    np.testing.assert_allclose(gk, fd_k, rtol=1e-7)
    np.testing.assert_allclose(jnp.dot(gth, v), fd_t, rtol=1e-7)


def test_noise_is_brownian():
    # K = 0, d theta = omega dt + sigma dB: theta(T) - theta0 - omega T ~ N(0, sigma^2 T)
    n, sigma, t1 = 2000, 0.5, 2.0
    f = mf.Kuramoto(jnp.ones(n), 0.0, noise=sigma)
    ts = jnp.linspace(0.0, t1, 3)
    sol = mf.simulate(f, jnp.zeros(n), ts, key=jax.random.key(0), dt0=0.1)
    inc = np.asarray(sol.ys[-1]) - t1
    assert abs(inc.mean()) < 4 * sigma * np.sqrt(t1 / n)
    assert abs(inc.var() / (sigma**2 * t1) - 1) < 0.15  # 4.7 standard errors
    with pytest.raises(ValueError, match="key"):
        mf.simulate(f, jnp.zeros(n), ts)


def test_order_parameters():
    theta = jnp.full(32, 0.7)
    np.testing.assert_allclose(mf.order_parameter(theta), np.exp(0.7j), atol=1e-14)
    np.testing.assert_allclose(mf.order_parameter(2 * np.pi * np.arange(32) / 32), 0.0, atol=1e-14)
    traj = jnp.stack([theta, 2 * np.pi * jnp.arange(32) / 32])
    assert mf.order_parameter(traj).shape == (2,)
    # local order: coherent half (|Z| = 1 away from the border), splay half (|Z| ~ 0)
    x = mf.grid(64)
    th = jnp.where(x < 0.5, 0.3, 2 * np.pi * 8 * x)
    z = np.abs(mf.local_order_parameter(th, radius=4 / 64))
    np.testing.assert_allclose(z[6:26], 1.0, atol=1e-12)
    assert np.all(z[38:58] < 0.2)


def test_sampled_graphs():
    key = jax.random.key(11)
    a = mf.sample_graph(graphons.constant(0.3), 200, key=key)
    assert np.allclose(a, a.T) and np.all(np.diag(a) == 0)
    assert abs(float(a.sum()) / (200 * 199) - 0.3) < 0.015
    s = mf.sample_graph(graphons.ring(0.25), 200, key=key, density=0.5, sparse=True)
    assert s.shape == (200, 200) and s.nse == int(np.count_nonzero(np.asarray(s.todense())))
    deg = np.asarray(s.todense()).sum(1)
    assert abs(deg.mean() / (0.5 * 200 * 0.5) - 1) < 0.1  # degree ~ rho N 2r
    b = mf.sample_graph(graphons.stochastic_block([0.5, 0.5], [[0.8, 0.0], [0.0, 0.8]]), 100, key=key)
    assert float(b[:50, 50:].sum()) == 0.0
    np.testing.assert_allclose(mf.lorentzian_quantiles(4, 2.0), 2 * np.tan(np.pi * (np.arange(4) + 0.5) / 4
                                                                            - np.pi / 2))
    assert abs(float(jnp.abs(mf.order_parameter(mf.wrapped_cauchy_quantiles(20000, 0.4)))) - 0.4) < 1e-3


def test_bad_input(state):
    theta, omega = state
    with pytest.raises(ValueError, match="fn"):
        graphons.general(lambda x, y: 1.5 + 0 * x)
    with pytest.raises(ValueError, match="coeffs"):
        graphons.fourier([0.5, 0.8])
    with pytest.raises(ValueError, match="p"):
        graphons.constant(1.2)
    with pytest.raises(ValueError, match="values"):
        graphons.step(np.array([[0.0, 2.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="graphon"):
        mf.sample_graph(_BadGraphon(), 10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="graph"):
        mf.Kuramoto(omega, 1.0, graph=jnp.ones((N + 1, N + 1)))
    with pytest.raises(ValueError, match="graph"):
        mf.Kuramoto(omega, 1.0, graph=([0, N], [1, 2]))
    with pytest.raises(ValueError, match="omega"):
        mf.Kuramoto(jnp.zeros(0), 1.0)
    with pytest.raises(ValueError, match="omega"):
        mf.Kuramoto(jnp.zeros((3, 3)), 1.0)
    with pytest.raises(ValueError, match="omega"):
        mf.Kuramoto(omega.at[0].set(jnp.nan), 1.0)
    with pytest.raises(ValueError, match="n"):
        mf.sample_graph(graphons.constant(0.5), 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="method"):
        mf.Kuramoto(omega, 1.0, method="magic")
    with pytest.raises(ValueError, match="fft"):
        mf.Kuramoto(omega, 1.0, graph=graphons.power_law(), method=mf.FFTMethod())
    with pytest.raises(ValueError, match="normalisation"):
        mf.Kuramoto(omega, 1.0, normalisation="sum")
    with pytest.raises(ValueError, match="positions"):
        mf.Kuramoto(omega, 1.0, graph=graphons.ring(0.1), positions=jnp.zeros(3))
    with pytest.raises(ValueError, match="radius"):
        graphons.ring(0.7)
    with pytest.raises(TypeError, match="g"):
        mf.Kuramoto(omega, 1.0, g=3.0)
    with pytest.raises(ValueError, match="dt0"):
        mf.simulate(mf.Kuramoto(omega, 1.0), theta, jnp.linspace(0, 1, 3), solver=mf.RK4())


class _BadGraphon(graphons.AbstractGraphon):
    def __call__(self, x, y):
        return 1.5 + 0 * (x + y)
