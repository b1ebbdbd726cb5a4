"""Large N: outputs reduced on the fly (`simulate(observe=, snapshots=)`), sparse W-random graphs sampled
without visiting the N^2 pairs (`sample_edges`), the lean `Sparse` coupling, the split FFT of `Circulant`
and the two-layer network at many neurons (small shapes here; the large ones are measured by
benchmarks/scale.py)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.meanfield import graphons

matplotlib.use("Agg")

N = 60
TS = jnp.linspace(0.0, 2.0, 9)


@pytest.fixture(scope="module")
def ring_field():
    return mf.Kuramoto(mf.gaussian_quantiles(N), 2.0, graph=graphons.ring(0.3), phase_lag=1.2,
                       normalisation="degree")


@pytest.fixture(scope="module")
def theta0():
    return jnp.sin(jnp.arange(N) * 0.7) * 3


@pytest.fixture(scope="module")
def full(ring_field, theta0):
    return mf.simulate(ring_field, theta0, TS, solver=mf.RK4(), dt0=0.05)


@pytest.fixture(scope="module")
def observed(ring_field, theta0):
    obs = {"z": mf.OrderParameter(), "z2": mf.OrderParameter(2), "local": mf.LocalOrder(6),
           "local7": mf.LocalOrder(7)}
    return mf.simulate(ring_field, theta0, TS, solver=mf.RK4(), dt0=0.05, observe=obs, snapshots=TS[2::3])


# --- 3. outputs reduced on the fly ---------------------------------------------------------------

def test_observed_order_parameter_equals_full_run(full, observed):
    np.testing.assert_allclose(observed.observed["z"], mf.order_parameter(full.ys), atol=1e-12, rtol=0)
    np.testing.assert_allclose(observed.observed["z2"], mf.order_parameter(full.ys, harmonic=2), atol=1e-12,
                               rtol=0)


def test_observed_local_order_equals_full_run(full, observed):
    ys = np.asarray(full.ys)
    expect = np.abs(np.exp(1j * ys).reshape(len(TS), 6, N // 6).mean(axis=2))
    np.testing.assert_allclose(observed.observed["local"], expect, atol=1e-12, rtol=0)
    blocks = (np.arange(N) * 7) // N  # unequal blocks: floor(j * n_bins / N)
    expect7 = np.stack([np.abs(np.exp(1j * ys[:, blocks == b]).mean(axis=1)) for b in range(7)], axis=1)
    np.testing.assert_allclose(observed.observed["local7"], expect7, atol=1e-12, rtol=0)


def test_snapshots_are_the_states_at_their_times(full, observed):
    assert observed.ys.shape == (3, N)
    np.testing.assert_array_equal(observed.snapshot_ts, TS[2::3])
    np.testing.assert_allclose(observed.ys, full.ys[2::3], atol=1e-12, rtol=0)


def test_default_snapshot_is_the_end_and_empty_snapshots(ring_field, theta0, full):
    end = mf.simulate(ring_field, theta0, TS, solver=mf.RK4(), dt0=0.05, observe=mf.OrderParameter())
    assert end.ys.shape == (1, N) and end.observed.shape == TS.shape
    np.testing.assert_allclose(end.ys[0], full.ys[-1], atol=1e-12, rtol=0)
    none = mf.simulate(ring_field, theta0, TS, solver=mf.RK4(), dt0=0.05, observe=mf.OrderParameter(),
                       snapshots=())
    assert none.ys.shape == (0, N)
    assert "order parameter" not in none.summary() and "successful" in none.summary()


def test_summary_and_plot(observed):
    text = observed.summary()
    assert "observed" in text and "3 snapshot(s)" in text and "successful" in text
    ax = observed.plot()
    assert len(ax.get_lines()) == 2  # |z| and |z2|
    import matplotlib.pyplot as plt

    plt.close("all")


def test_mean_activity_of_neural_field():
    # identity activation, no bias, all-to-all w = 1, K = 0.5: the mean obeys m' = (K - 1) m
    field = mf.NeuralField(jnp.zeros(8), coupling=0.5, activation=lambda x: x)
    x0 = jnp.linspace(0.5, 1.5, 8)
    out = mf.simulate(field, x0, TS, observe=mf.MeanActivity(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.observed, jnp.exp(-0.5 * TS), rtol=1e-8)


def _final_r(k, field, theta0):
    f = eqx.tree_at(lambda m: m.coupling, field, k)
    out = mf.simulate(f, theta0, TS, solver=mf.RK4(), dt0=0.05, observe=mf.OrderParameter())
    return jnp.abs(out.observed[-1])


def test_grad_jit_vmap_through_observable(ring_field, theta0, full):
    k = jnp.asarray(2.0)
    g = jax.grad(_final_r)(k, ring_field, theta0)
    h = jnp.finfo(float).eps ** (1 / 3) * 2.0
    fd = (_final_r(k + h, ring_field, theta0) - _final_r(k - h, ring_field, theta0)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    rs = eqx.filter_jit(jax.vmap(_final_r, in_axes=(0, None, None)))(jnp.array([1.0, 2.0]), ring_field,
                                                                       theta0)
    np.testing.assert_allclose(rs[1], jnp.abs(mf.order_parameter(full.ys[-1])), atol=1e-12)


def _final_r_adaptive(k, field, theta0, observe: bool):
    f = eqx.tree_at(lambda m: m.coupling, field, k)
    if observe:
        out = mf.simulate(f, theta0, TS, rtol=1e-10, atol=1e-10, observe=mf.OrderParameter())
        return jnp.abs(out.observed[-1])
    return jnp.abs(mf.order_parameter(mf.simulate(f, theta0, TS, rtol=1e-10, atol=1e-10).ys[-1]))


def test_grad_through_observable_with_adaptive_steps(ring_field, theta0):
    # Tsit5 + PID: saving observables instead of states does not change the steps, so the derivative
    # of the observed r(t1) is the one through the full states; both against central differences
    k = jnp.asarray(2.0)
    grad = eqx.filter_jit(jax.grad(_final_r_adaptive))
    g_obs = grad(k, ring_field, theta0, True)
    g_full = grad(k, ring_field, theta0, False)
    np.testing.assert_allclose(g_obs, g_full, rtol=1e-10)
    h = 1e-4
    fd = (_final_r_adaptive(k + h, ring_field, theta0, True)
          - _final_r_adaptive(k - h, ring_field, theta0, True)) / (2 * h)
    np.testing.assert_allclose(g_obs, fd, rtol=1e-5)


def test_unreached_observations_are_nan():
    # m' = m^2 from m = 1 blows up at t = 1: the observations after the failure are NaN
    field = mf.NeuralField(jnp.zeros(2), coupling=0.0, activation=jnp.square)
    out = mf.simulate(lambda t, y, a: y**2, jnp.ones(2), jnp.linspace(0, 2, 5), observe=mf.MeanActivity(),
                      throw=False)
    del field
    assert not bool(out.successful)
    assert np.isnan(np.asarray(out.observed)[-1]) and np.isfinite(np.asarray(out.observed)[0])


# --- 4. sparse W-random graphs -------------------------------------------------------------------

def test_sample_edges_law_symmetry_loops_degree():
    # a two-block graphon: every pair of one block type is i.i.d. Bernoulli(rho * W), so the edge count
    # of each type is Binomial(M_type, p): |z| < 5.3 for the three types fails by chance < 1e-6.
    n, rho = 1200, 0.6
    probs = np.array([[0.9, 0.2], [0.2, 0.5]])
    w = graphons.stochastic_block([0.5, 0.5], probs)
    sp = mf.sample_edges(w, n, key=jax.random.key(3), density=rho)
    rows, cols = np.asarray(sp.rows), np.asarray(sp.cols)
    assert sp.weights is None and sp.rows.dtype == jnp.int32 and sp.rows_sorted
    assert np.all(np.diff(rows) >= 0) and not np.any(rows == cols)
    a = set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert len(a) == rows.size and all((j, i) in a for i, j in a)  # symmetric, no duplicates
    upper = rows < cols
    bi, bj = rows[upper] >= n // 2, cols[upper] >= n // 2
    h = n // 2
    for (s, t), m_pairs in {(0, 0): h * (h - 1) // 2, (0, 1): h * h, (1, 1): h * (h - 1) // 2}.items():
        count = np.sum((bi == bool(s)) & (bj == bool(t)) | ((bi == bool(t)) & (bj == bool(s)) & (s != t)))
        p = rho * probs[s, t]
        z = (count - m_pairs * p) / math.sqrt(m_pairs * p * (1 - p))
        assert abs(z) < 5.3, (s, t, z)
    mean_degree = rows.size / n
    expect = rho * (n - 1) * 0.45  # mean of W: (0.9 + 2 * 0.2 + 0.5) / 4, minus the diagonal
    assert abs(mean_degree - expect) < 0.05 * expect


def test_sample_edges_pair_frequencies():
    # per-pair frequencies over repeated draws: a chi-square over the pairs with 0 < p < 1 (its 1e-6
    # upper quantile, by the Wilson-Hilferty approximation plus margin), p = 0 pairs never appear
    n, reps, rho = 12, 150, 0.8
    w = graphons.general(lambda x, y: 0.25 + 0.7 * x * y * (jnp.abs(x - y) > 0.2))
    x = mf.grid(n)
    p = rho * np.asarray(w(x[:, None], x[None, :]))
    counts = np.zeros((n, n))
    for r in range(reps):
        sp = mf.sample_edges(w, n, key=jax.random.key(r), density=rho)
        np.add.at(counts, (np.asarray(sp.rows), np.asarray(sp.cols)), 1.0)
    iu = np.triu_indices(n, 1)
    k, pp = counts[iu], p[iu]
    chi2 = float(np.sum((k - reps * pp) ** 2 / (reps * pp * (1 - pp))))
    df = k.size
    z6 = 4.8  # one-sided normal quantile of 1e-6 (4.75)
    bound = df * (1 - 2 / (9 * df) + z6 * math.sqrt(2 / (9 * df))) ** 3 * 1.05
    assert chi2 < bound, (chi2, bound)
    np.testing.assert_array_equal(counts, counts.T)
    assert np.all(np.diag(counts) == 0)


def test_sample_edges_is_a_function_of_the_key():
    w = graphons.ring(0.3)
    a = mf.sample_edges(w, 300, key=jax.random.key(7), density=0.3)
    b = mf.sample_edges(w, 300, key=jax.random.key(7), density=0.3)
    c = mf.sample_edges(w, 300, key=jax.random.key(8), density=0.3)
    np.testing.assert_array_equal(a.cols, b.cols)
    assert a.cols.shape != c.cols.shape or not np.array_equal(a.cols, c.cols)


def test_sparse_coupling_equals_dense(theta0):
    sp = mf.sample_edges(graphons.ring(0.3), N, key=jax.random.key(0), density=0.7)
    dense = jnp.asarray(sp.as_matrix())
    for g in (None, mf.Harmonics(sin=[1.0, 0.3], cos=[0.2, 0.1], const=0.1)):
        f_sparse = mf.Kuramoto(mf.gaussian_quantiles(N), 2.0, graph=sp, phase_lag=0.4, g=g,
                               normalisation="degree")
        f_dense = mf.Kuramoto(mf.gaussian_quantiles(N), 2.0, graph=dense, phase_lag=0.4, g=g,
                              normalisation="degree")
        np.testing.assert_allclose(f_sparse(0.0, theta0), f_dense(0.0, theta0), atol=1e-12, rtol=0)
    nf_sparse = mf.NeuralField(jnp.linspace(-1, 1, N), graph=sp, normalisation=0.7)
    nf_dense = mf.NeuralField(jnp.linspace(-1, 1, N), graph=dense, normalisation=0.7)
    np.testing.assert_allclose(nf_sparse(0.0, theta0), nf_dense(0.0, theta0), atol=1e-12, rtol=0)


def test_sparse_sorts_unsorted_edges_with_their_weights():
    rows, cols = np.array([3, 0, 2, 0, 1]), np.array([1, 2, 0, 3, 3])
    weights = np.array([0.5, 1.5, 2.0, -1.0, 3.0])
    sp = mf.Sparse(rows, cols, weights, 4)
    dense = np.zeros((4, 4))
    dense[rows, cols] = weights
    assert sp.rows_sorted and np.all(np.diff(np.asarray(sp.rows)) >= 0)
    v = jnp.arange(8.0).reshape(4, 2)
    np.testing.assert_allclose(sp.matvec(v), dense @ v, atol=1e-12)
    scalar = mf.Sparse(rows, cols, 2.0, 4)
    assert scalar.weights.shape == ()
    np.testing.assert_allclose(scalar.matvec(v), 2.0 * (dense != 0) @ v, atol=1e-12)


# --- 1. split FFTs -------------------------------------------------------------------------------

@pytest.mark.parametrize("n, p", [(4096, 2), (3 * 1024, 3), (4096, 4), (1000, 8)])
def test_split_fft_equals_fft(n, p):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, n)) + 1j * rng.standard_normal((2, n)))
    tw = mf.twiddles(n, p)
    for inverse, ref in ((False, jnp.fft.fft(x)), (True, jnp.fft.ifft(x))):
        got = mf.split_fft(x, p, tw, inverse=inverse)
        assert float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref))) < 1e-12


def test_split_circulant_equals_plain():
    n = 4096
    th = jnp.sin(jnp.arange(n) * 0.01) * 3
    for g in (None, mf.Harmonics(sin=[1.0, 0.3], cos=[0.2, 0.1], const=0.1)):
        plain = mf.Kuramoto(mf.gaussian_quantiles(n), 2.0, graph=graphons.ring(0.3), phase_lag=0.4, g=g,
                            method=mf.FFTMethod(split=1))
        split = mf.Kuramoto(mf.gaussian_quantiles(n), 2.0, graph=graphons.ring(0.3), phase_lag=0.4, g=g,
                            method=mf.FFTMethod(split=2))
        assert plain.operator.split == 1 and split.operator.split == 2
        ref = plain(0.0, th)
        assert float(jnp.max(jnp.abs(split(0.0, th) - ref)) / jnp.max(jnp.abs(ref))) < 1e-12
    v = jnp.asarray(np.random.default_rng(1).standard_normal((n, 3)))
    np.testing.assert_allclose(split.operator.matvec(v), plain.operator.matvec(v), atol=1e-12 * n)


def test_auto_split():
    assert mf.auto_split(1000) == 1 and mf.auto_split(2**15 + 1) == 1 and mf.auto_split(2**20) == 1
    field = mf.Kuramoto(mf.gaussian_quantiles(64), 1.0, graph=graphons.ring(0.3))
    assert field.operator.split == 1 and field.operator.tw_re is None


# --- 5. two-layer network at many neurons -----------------------------------------------------------

def test_two_layer_blocked_gradient_equals_autodiff(monkeypatch):
    from jaxdyn.meanfield import _two_layer

    x = jax.random.normal(jax.random.key(1), (16, 3))
    y = jnp.sin(x[:, 0])
    model = mf.TwoLayer.init(1003, 3, key=jax.random.key(2))  # not a multiple of the block: padded
    plain = mf.two_layer_gd(model, x, y, n_steps=4, lr=0.5)
    monkeypatch.setattr(_two_layer, "_BLOCK_ENTRIES", 16 * 100)
    assert _two_layer._block_size(16, 1003) == 100
    blocked = mf.two_layer_gd(model, x, y, n_steps=4, lr=0.5)
    np.testing.assert_allclose(blocked.losses, plain.losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose(blocked.model.w, plain.model.w, rtol=0, atol=1e-12)

    def final_loss(lr):
        return mf.two_layer_gd(model, x, y, n_steps=3, lr=lr).losses[-1]

    g = jax.grad(final_loss)(0.5)
    h = jnp.finfo(float).eps ** (1 / 3) * 0.5
    np.testing.assert_allclose(g, (final_loss(0.5 + h) - final_loss(0.5 - h)) / (2 * h), rtol=1e-6)


def test_sparse_in_edge_chunks_equals_one_chunk(monkeypatch):
    from jaxdyn.meanfield import _coupling

    sp = mf.sample_edges(graphons.ring(0.3), 200, key=jax.random.key(1), density=0.5)
    weighted = mf.Sparse(sp.rows, sp.cols, jnp.linspace(0.5, 1.5, sp.n_edges), 200)
    v = jnp.asarray(np.random.default_rng(0).standard_normal((200, 3)))
    z = v[:, 0] + 1j * v[:, 1]
    refs = [sp.matvec(v), sp.cmatvec(z), weighted.matvec(v)]
    monkeypatch.setattr(_coupling, "_EDGE_CHUNK", 1000)  # E ~ 12 000: 12 chunks and a remainder
    assert sp.n_edges % 1000
    for got, ref in zip([sp.matvec(v), sp.cmatvec(z), weighted.matvec(v)], refs, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-12, rtol=0)


def test_sample_edges_in_small_chunks(monkeypatch):
    from jaxdyn.meanfield import _sampling

    monkeypatch.setattr(_sampling, "_CHUNK", 1000)  # ~ 9 000 candidates: several chunks
    sp = mf.sample_edges(graphons.ring(0.3), 300, key=jax.random.key(2), density=0.3)
    rows, cols = np.asarray(sp.rows), np.asarray(sp.cols)
    dense = np.zeros((300, 300))
    dense[rows, cols] = 1
    assert dense.sum() == rows.size and np.array_equal(dense, dense.T) and not np.any(np.diag(dense))
    assert np.all(np.diff(rows) >= 0)
    assert all(np.all(np.diff(cols[rows == r]) > 0) for r in range(300))  # each row's columns ascending
    np.testing.assert_allclose(sp.matvec(jnp.ones(300)), dense.sum(axis=1))


def test_gaussian_quantiles_finite_in_float32_at_large_n():
    from scipy.special import ndtri

    n = 10**7
    with jax.enable_x64(False):
        w = mf.gaussian_quantiles(n)  # (n - 1/2)/n rounds to 1 in float32: the last quantile was inf
        assert w.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(w)))
        assert abs(float(w[-1]) - 5.3267) < 1e-3 and float(w[0]) == -float(w[-1])
    ref = ndtri((np.arange(1, 1001) - 0.5) / 1000)
    np.testing.assert_allclose(mf.gaussian_quantiles(1000), ref, atol=1e-12, rtol=0)
