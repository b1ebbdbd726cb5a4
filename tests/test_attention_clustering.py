"""Known answers of the token-dynamics analyses: cluster counts (single linkage, against scipy),
the clustering result over time, the order parameter on the sphere (= Kuramoto's r for d = 2),
W1 between token clouds (= the exact circle W1 for d = 2; brute force over permutations), and the
figures."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn._results import RESULTS


def _circle(theta):
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def test_cluster_count_single_linkage_against_scipy():
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 3))
    x = np.concatenate([c + 0.03 * rng.normal(size=(10, 3)) for c in centres])
    z = linkage(x, "single")
    tols = (0.02, 0.05, 0.1, 0.3, 1.0)
    want = [len(np.unique(fcluster(z, tol, "distance"))) for tol in tols]
    assert [int(mf.cluster_count(x, tol=tol)) for tol in tols] == want  # one compilation
    # jit and vmap over a traced tolerance: the same counts; labels name the smallest index of
    # each cluster
    counts, labels = jax.jit(jax.vmap(lambda t: (mf.cluster_count(x, tol=t), mf.cluster_labels(x, tol=t))))(
        jnp.asarray(tols))
    assert np.asarray(counts).tolist() == want
    for lab, w in zip(np.asarray(labels), want, strict=True):
        assert len(np.unique(lab)) == w and np.all(lab <= np.arange(x.shape[0]))
    # a chain of tokens 0.02 apart is one cluster at tol 0.03 (single linkage), 40 at 0.01
    chain = np.concatenate([_circle(np.arange(40) * 0.02), np.zeros((40, 1))], axis=1)
    assert int(mf.cluster_count(chain, tol=0.03)) == 1 and int(mf.cluster_count(chain, tol=0.01)) == 40


def test_clustering_result_known_trajectory():
    # 12 tokens on the circle in 3 groups whose spreads shrink like e^{-t}: the count is known at
    # every time; R is Kuramoto's r of the angles
    ts = np.linspace(0.0, 8.0, 17)  # NumPy inputs: no eager JAX ops to compile
    centre = np.repeat([0.0, 2.0, 4.0], 4)
    offset = np.tile([-1.5, -0.5, 0.5, 1.5], 3) * 0.1
    theta = centre + offset * np.exp(-ts)[:, None]
    xs = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    out = mf.clustering(ts, xs, tol=1e-2, bins=20)
    gap = 0.1 * np.exp(-ts)  # neighbours' chordal distance is 2 sin(gap / 2) ~ gap
    want = np.where(2 * np.sin(gap / 2) <= 1e-2, 3, 12)
    assert np.asarray(out.counts).tolist() == want.tolist()
    r = np.abs(np.mean(np.exp(1j * theta), axis=1))  # Kuramoto's r
    np.testing.assert_allclose(out.order, r, rtol=0, atol=1e-12)
    assert out.time_to(3) == pytest.approx(ts[np.argmax(want == 3)])
    assert np.isnan(out.time_to(1))
    widths = np.diff(np.asarray(out.edges))
    np.testing.assert_allclose(np.asarray(out.histograms) @ widths, 1.0, atol=1e-12)
    assert out.histograms.shape == (3, 20) and out.n == 12 and out.d == 2
    assert "clusters 12 -> 3" in out.summary() and "not reached" in out.summary()
    # a failed run's NaN states: flagged with throw=False, counts -1 there
    bad = xs.copy()
    bad[10:] = np.nan
    flagged = mf.clustering(ts, bad, bins=20, throw=False)
    assert int(flagged.result._value) == RESULTS.nonfinite_state._value
    assert np.asarray(flagged.counts)[10:].tolist() == [-1] * 7 and "FAILED" in flagged.summary()
    with pytest.raises(eqx.EquinoxRuntimeError, match="`xs`"):
        mf.clustering(ts, bad, bins=20)


def test_w1_tokens_against_circle_and_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 2 * np.pi, 7), rng.uniform(0, 2 * np.pi, 28)
    # d = 2 geodesic: the exact circle W1, n vs n and n vs 4n (replication)
    assert mf.w1_tokens(_circle(a), _circle(b[:7])) == pytest.approx(mf.w1_circle(a, b[:7]), abs=1e-12)
    assert mf.w1_tokens(_circle(a), _circle(b)) == pytest.approx(mf.w1_circle(a, b), abs=1e-12)
    assert mf.w1_tokens(_circle(b), _circle(a)) == pytest.approx(mf.w1_circle(a, b), abs=1e-12)
    # chordal, 6 points in R^3: the minimum over all 720 permutations
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    cost = np.linalg.norm(x[:, None] - y[None], axis=-1)
    brute = min(cost[np.arange(6), list(p)].mean() for p in itertools.permutations(range(6)))
    assert mf.w1_tokens(x, y, metric="chordal") == pytest.approx(brute, abs=1e-12)
    assert mf.w1_tokens(x, x, metric="chordal") == pytest.approx(0.0, abs=1e-12)


def test_figures(getkey):
    import matplotlib.pyplot as plt

    from jaxdyn import plot

    ts = jnp.linspace(0.0, 4.0, 9)
    for d in (2, 3, 5):
        x0 = mf.uniform_sphere(getkey(), 8, d)
        xs = x0[None] * (1 + 0 * ts[:, None, None])
        fig = plot.plot_tokens(ts, xs, labels=mf.cluster_labels(xs[-1]), title=f"d = {d}")
        assert fig.axes and all(ax.get_xlabel() for ax in fig.axes)
        out = mf.clustering(ts, xs)
        fig = out.plot()
        assert len(fig.axes) == 3 and fig.axes[0].get_ylabel() == "number of clusters"
    ax = plot.plot_cluster_counts(ts, {"beta = 1": np.ones(9), "beta = 9": np.full(9, 4)})
    assert ax.get_legend() is not None
    w1 = mf.TokenW1Result(jnp.array([8, 16, 32]), jnp.array([[0.4, 0.5], [0.3, 0.3], [0.2, 0.25]]),
                          jnp.array([[0.3, 0.3], [0.2, 0.2], [0.15, 0.14]]), jnp.asarray(-0.5),
                          jnp.asarray(-0.52), RESULTS.successful, t1=1.0, ratio=4, d=3, metric="geodesic")
    assert "slope" in w1.summary() and w1.plot().get_xlabel() == "tokens $n$"
    eye = jnp.eye(3)
    st = mf.cluster_stability(mf.SelfAttention(eye, eye, eye, beta=1.0), jnp.tile(eye[0], (3, 1)))
    assert "neutral" in st.summary() and st.plot().get_xlabel().startswith(r"$\mathrm{Re}")
    plt.close("all")
