"""Mean-field known answers: Lorentzian and Gaussian thresholds, Ott-Antonsen, Vlasov/W1, two-layer nets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.meanfield import graphons

N = 2000
TS = jnp.linspace(0.0, 30.0, 201)  # Lorentzian runs: r_inf is reached by t ~ 20
TS_LONG = jnp.linspace(0.0, 200.0, 201)  # same shape: the compiled solve is shared


@pytest.fixture(scope="module")
def solve():
    """One compiled all-to-all solve (N = 2000) shared by the threshold tests."""
    return lambda field, th0, ts=TS: mf.simulate(field, th0, ts, rtol=1e-6, atol=1e-6).ys


@pytest.fixture(scope="module")
def lorentzian(solve):
    gamma, k = 0.5, 1.5  # K = 1.5 K_c
    omega = mf.lorentzian_quantiles(N, gamma)
    th0 = mf.wrapped_cauchy_quantiles(N, 0.1, key=jax.random.key(0))  # on the Ott-Antonsen manifold
    r = np.abs(np.asarray(mf.order_parameter(solve(mf.Kuramoto(omega, k), th0))))
    return gamma, k, omega, th0, r


def test_lorentzian_r_inf(lorentzian):
    gamma, k, _, _, r = lorentzian
    assert 2 * gamma == pytest.approx(1.0)  # K_c = 2 gamma
    assert abs(r[134:].mean() - np.sqrt(1 - 2 * gamma / k)) < 0.02


def test_ott_antonsen_closed_form_and_particles(lorentzian):
    gamma, k, _, th0, r = lorentzian
    z0 = complex(mf.order_parameter(th0))
    z = mf.ott_antonsen(z0, TS, coupling=k, gamma=gamma).z
    exact = mf.ott_antonsen_r(TS, abs(z0), coupling=k, gamma=gamma)
    np.testing.assert_allclose(np.abs(z), exact, atol=1e-6, rtol=0)
    assert np.max(np.abs(r - np.abs(z))) < 0.05  # N = 2000 particles follow the reduction
    # graphon OA field with z uniform in x is the all-to-all field with K * integral of W
    w = graphons.fourier([0.6, 0.3])
    op = mf.coupling_operator(w, 16)
    y = jnp.array([0.3, -0.4])
    f_graph = mf.OttAntonsen(jnp.asarray(k), jnp.asarray(gamma), jnp.asarray(0.2), jnp.asarray(0.5), op)
    f_all = mf.OttAntonsen(jnp.asarray(0.6 * k), jnp.asarray(gamma), jnp.asarray(0.2), jnp.asarray(0.5), None)
    np.testing.assert_allclose(f_graph(0.0, jnp.repeat(y[:, None], 16, 1), None),
                               np.repeat(np.asarray(f_all(0.0, y, None))[:, None], 16, 1), atol=1e-14)


def test_constant_graphon_scales_threshold(solve, lorentzian):
    gamma, k, omega, th0, r_full = lorentzian
    p = 0.5  # K_c = 2 gamma / p: the same r at K / p
    r = np.abs(np.asarray(mf.order_parameter(solve(mf.Kuramoto(omega, k / p, graph=graphons.constant(p)),
                                                        th0))))
    np.testing.assert_allclose(r, r_full, atol=1e-6)
    assert abs(r[134:].mean() - np.sqrt(1 - 2 * gamma / (p * k / p))) < 0.02
    r_below = np.abs(np.asarray(mf.order_parameter(solve(mf.Kuramoto(omega, 1.5, graph=graphons.constant(p)),
                                                              th0))))
    assert r_below[134:].mean() < 0.1  # K = 1.5 > 2 gamma but < 2 gamma / p: incoherent


def test_gaussian_threshold(solve):
    # rule: K_c estimate = the first K on a 0.05 grid whose time-averaged r over [100, 200] exceeds 0.2
    omega = mf.gaussian_quantiles(N)
    th0 = mf.wrapped_cauchy_quantiles(N, 0.5, key=jax.random.key(1))
    kc = 2 / (np.pi * (1 / np.sqrt(2 * np.pi)))
    estimate = None
    for k in np.arange(1.3, 2.0, 0.05):
        r = np.abs(np.asarray(mf.order_parameter(solve(mf.Kuramoto(omega, k), th0))))
        if r[134:].mean() > 0.2:
            estimate = k
            break
    assert estimate is not None and abs(estimate / kc - 1) < 0.1


def test_vlasov_w1_convergence():
    # block graphon with M = 4 cells: a network of N = M P grid nodes is the Vlasov particle method with
    # P particles per cell, so the W1 between the network and a P_ref = 4096 reference decays ~ P^(-1/2).
    # One compiled solve: 9 independent systems (reference, 4 x P = 16, 4 x P = 256) as 36 cells of a
    # block-diagonal graph, padded to 4096 particles per cell with passive (zero-weight) particles.
    w = graphons.stochastic_block([0.5, 0.5], [[0.9, 0.2], [0.2, 0.7]])
    m, pmax, ts = 4, 4096, jnp.linspace(0.0, 5.0, 3)
    cells = w(mf.grid(m)[:, None], mf.grid(m)[None, :])
    sizes = [4096] + [16] * 4 + [256] * 4
    graph = jnp.kron(jnp.eye(len(sizes)), cells) * len(sizes)  # 1/M normalisation over 36 cells
    keys = jax.random.split(jax.random.key(0), 2 * len(sizes))
    mean = jnp.tile(jnp.linspace(0.0, 2.0, m), len(sizes))[:, None]
    th0 = mean + 0.8 * jax.random.normal(keys[0], (m * len(sizes), pmax))
    om = 0.3 * jax.random.normal(keys[1], (m * len(sizes), pmax))
    weights = jnp.concatenate([jnp.tile((jnp.arange(pmax) < p) / p, (m, 1)) for p in sizes])
    out = np.asarray(
        mf.vlasov(graph, th0, om, ts, coupling=2.0, weights=weights, rtol=1e-8, atol=1e-8).theta[-1]
    )
    blocks = [out[i * m:(i + 1) * m, :p] for i, p in enumerate(sizes)]
    w1 = {p: np.mean([mf.w1_cells(b, blocks[0]) for b, q in zip(blocks[1:], sizes[1:]) if q == p])
          for p in (16, 256)}
    ratio = w1[16] / w1[256]
    assert 2.0 < ratio < 8.0, (w1, ratio)  # sqrt(16) = 4
    # the Vlasov field on a block graphon is the network field on the grid
    th0, om = th0[:m, :8], om[:m, :8]
    net = mf.Kuramoto(om.ravel(), 2.0, graph=w)(0.0, th0.ravel())
    vl = mf.Vlasov(om, jnp.asarray(2.0), jnp.asarray(0.0), mf.coupling_operator(w, m))(0.0, th0)
    np.testing.assert_allclose(vl.ravel(), net, atol=1e-12)


def test_w1_circle_known_answers():
    assert mf.w1_circle([0.0], [np.pi / 2]) == pytest.approx(np.pi / 2)
    assert mf.w1_circle([0.1], [2 * np.pi - 0.1]) == pytest.approx(0.2)  # the short way round
    assert mf.w1_circle([0.0, np.pi], [np.pi / 2, 3 * np.pi / 2]) == pytest.approx(np.pi / 2)
    u = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    assert mf.w1_circle(u, u + 0.01) == pytest.approx(0.01, rel=1e-9)  # rotation by 0.01
    assert mf.w1_circle(u, u + 0.3 * 2 * np.pi / 64) == pytest.approx(0.3 * 2 * np.pi / 64, rel=1e-9)
    assert mf.w1_circle(u, u + 2 * np.pi / 64) == pytest.approx(0.0, abs=1e-12)  # the same set
    with pytest.raises(ValueError, match="theta_a"):
        mf.w1_cells(np.zeros((2, 3)), np.zeros((3, 3)))


def test_two_layer_losses_converge_in_n():
    key = jax.random.key(0)
    kx, kt = jax.random.split(key)
    x = jax.random.normal(kx, (64, 3))
    teacher = mf.TwoLayer.init(4, 3, key=kt)
    y = teacher(x) * 4  # a 4-neuron teacher with O(1) output
    losses = {n: np.asarray(mf.two_layer_gd(mf.TwoLayer.init(n, 3, key=jax.random.key(n)), x, y, n_steps=150,
                                            lr=0.5).losses) for n in (100, 1000, 10000)}
    gap = {n: np.max(np.abs(losses[n] - losses[10000])) for n in (100, 1000)}
    assert losses[10000][-1] < 0.5 * losses[10000][0]  # it trains
    assert gap[1000] < gap[100] and gap[1000] < 0.1 * losses[10000][0]
    # one GD step is one Euler step of the mean-field gradient flow (a diffrax vector field)
    m0 = mf.TwoLayer.init(100, 3, key=jax.random.key(100))
    flow = mf.TwoLayerGradientFlow()(0.0, m0, (x, y))
    euler = jax.tree_util.tree_map(lambda p, v: p + 0.5 * v, m0, flow)
    np.testing.assert_allclose(mf.mse(euler, x, y), losses[100][1], rtol=1e-12)
    with pytest.raises(ValueError, match="x"):
        mf.two_layer_gd(mf.TwoLayer.init(10, 3, key=key), x[:, :2], y, n_steps=2, lr=0.1)
