"""The problem set-up of `benchmarks/curvature.py` (fast): the jax and torch sides build the same
network, loss, gradient and Hessian-vector product from the same data and weights; the tight
reference the achieved errors are measured against is right (against a dense Hessian); the
equal-error matching picks, per side, the cheapest setting whose measured error meets the level."""

import importlib.util
import math
import sys
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SMALL = (64, 6, 5, 10)  # 485 parameters: a dense Hessian is cheap


@pytest.fixture(scope="module")
def bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_curvature", BENCH / "curvature.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def problem(bench):
    X, Y = bench._data()
    return X, Y, bench._weights()


def test_data_and_weights(bench, problem):
    X, Y, weights = problem
    assert X.shape == (bench.N_SAMPLES, 64) and Y.shape == (bench.N_SAMPLES, 10)
    assert X.dtype == Y.dtype == np.float32
    np.testing.assert_array_equal(X[1797:], X[:bench.N_SAMPLES - 1797])  # the stated repeats
    np.testing.assert_array_equal(Y.sum(axis=1), 1.0)
    assert [W.shape for W, _ in weights] == [(64, 200), (200, 200), (200, 10)]
    assert sum(W.size + b.size for W, b in weights) == bench.PROBLEM["n_params"] == 55210
    for W, b in weights:  # torch.nn.Linear's default initialisation bound
        assert np.abs(W).max() <= 1 / math.sqrt(W.shape[0]) and np.abs(b).max() <= 1 / math.sqrt(W.shape[0])
    assert bench._data(300)[0].shape == (300, 64)


def test_same_loss_gradient_and_hvp_on_both_sides(bench, problem):
    """float64 copies of the very same values on both sides (the first 300 samples, for speed):
    agreement to rounding."""
    torch = pytest.importorskip("torch")
    X, Y, weights = problem
    X, Y = X[:300], Y[:300]
    p = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64)) for W, b in weights]
    x, y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
    model = bench._torch_model(weights, torch.float64)
    params = list(model.parameters())
    tx, ty = torch.from_numpy(X).double(), torch.from_numpy(Y).double()
    loss_t = torch.nn.MSELoss()(model(tx), ty)
    assert float(bench._jax_loss(p, x, y)) == pytest.approx(float(loss_t.detach()), rel=1e-13)

    g_t = torch.autograd.grad(loss_t, params, create_graph=True)
    g_j = jax.grad(bench._jax_loss)(p, x, y)
    rng = np.random.default_rng(0)
    v = [(rng.standard_normal(W.shape), rng.standard_normal(b.shape)) for W, b in weights]
    v_t = [torch.from_numpy(a.T.copy() if a.ndim == 2 else a) for pair in v for a in pair]
    hv_t = torch.autograd.grad(g_t, params, grad_outputs=v_t)
    hv_j = jax.jvp(lambda q: jax.grad(bench._jax_loss)(q, x, y), (p,),
                   ([(jnp.asarray(a), jnp.asarray(c)) for a, c in v],))[1]
    for i, ((gW, gb), (hW, hb)) in enumerate(zip(g_j, hv_j, strict=True)):
        # torch stores W as (out, in)
        np.testing.assert_allclose(np.asarray(gW), g_t[2 * i].detach().numpy().T, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(gb), g_t[2 * i + 1].detach().numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(hW), hv_t[2 * i].numpy().T, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(np.asarray(hb), hv_t[2 * i + 1].numpy(), rtol=1e-9, atol=1e-13)


@pytest.fixture(scope="module")
def small(bench):
    X, Y = bench._data(300)
    weights = bench._weights(SMALL)
    p = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64)) for W, b in weights]
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    H = jax.jit(jax.hessian(lambda th: bench._jax_loss(unravel(th), jnp.asarray(X, jnp.float64),
                                               jnp.asarray(Y, jnp.float64))))(flat)
    dense = np.sort(np.linalg.eigvalsh(np.asarray(H)))[::-1]
    return X, Y, weights, dense


def test_reference_against_dense_hessian(bench, small):
    X, Y, weights, dense = small
    vals, res = bench.reference(X, Y, weights)
    assert vals.dtype == np.float64 and vals.shape == (bench.REF_K,)
    assert bool(res.converged)
    np.testing.assert_allclose(vals, dense[: bench.REF_K], rtol=1e-9)
    assert bench.rel_error(vals[:10], dense) < 1e-9


@pytest.mark.slow
def test_reference_check_against_dense_hessian(bench, small):
    pytest.importorskip("curvlinops")
    X, Y, weights, dense = small
    np.testing.assert_allclose(bench.reference_check(X, Y, weights), dense[: bench.REF_K], rtol=1e-9)


def test_rel_error(bench):
    ref = np.array([4.0, 2.0, 1.0])
    assert bench.rel_error([2.0, 4.0], ref) == 0.0  # any order: sorted descending first
    assert bench.rel_error([4.4], ref) == pytest.approx(0.1)
    assert bench.rel_error([4.0, 1.0], ref) == pytest.approx(0.5)  # a missed eigenvalue counts
    assert bench.rel_error([np.nan], ref) == math.inf


def test_match_picks_cheapest_setting_meeting_each_level(bench):
    def row(family, t, err):
        return {"family": family, "warm_median_s": t, "rel_err": err, "hvps": int(100 * t),
                "repeats_s": [t, t * 1.1]}

    rows = {"j_loose": row("jaxdyn", 0.1, 5e-3), "j_tight": row("jaxdyn", 0.2, 5e-5),
            "p_loose": row("pyhessian", 0.3, 2e-3), "p_tight": row("pyhessian", 0.9, 5e-4)}
    out = bench._match(rows, ("pyhessian",), levels=(1e-2, 1e-3, 1e-4, 1e-6))
    assert out["0.01"]["setting"] == {"jaxdyn": "j_loose", "pyhessian": "p_loose"}
    assert out["0.01"]["speedup"]["pyhessian"] == pytest.approx(3.0)
    assert out["0.001"]["setting"] == {"jaxdyn": "j_tight", "pyhessian": "p_tight"}
    assert out["0.001"]["speedup"]["pyhessian"] == pytest.approx(4.5)
    assert out["0.001"]["speedup_paired"]["pyhessian"]["median"] == pytest.approx(4.5)
    assert out["0.0001"]["speedup"]["pyhessian"] is None and "pyhessian" in out["0.0001"]["note"]
    assert out["1e-06"]["setting"]["jaxdyn"] is None
    rec = bench._sweep_record(rows, ("pyhessian",))
    assert rec["jaxdyn"]["setting"] == "j_tight" and rec["speedup"]["pyhessian"] == pytest.approx(4.5)
    goal = bench.goals({bench.HEADLINE: rec})[0]
    assert goal.measured == pytest.approx(4.5) and goal.met


def test_headline_settings_retimed_in_paired_rounds(bench):
    """At the headline level the chosen settings run again together, interleaved: the headline
    speedup is the median of those rounds' ratios (a setting the sweep ran once included)."""
    from _common import Options, Side, noop

    def row(family, t, err, n):
        return {"family": family, "warm_median_s": t, "rel_err": err, "hvps": 1, "repeats_s": [t] * n,
                "rounds": n}

    rows = {"j": row("jaxdyn", 0.2, 5e-5, 3), "p": row("pyhessian", 0.9, 5e-4, 1)}
    calls = []
    entries = [{"side": Side(n, lambda n=n: calls.append(n), sync=noop, max_repeats=0)} for n in rows]

    class Ctx:
        paired_rounds = Options(quick=True).paired_rounds

    rec = bench._sweep_record(rows, ("pyhessian",), Ctx(), entries)
    assert calls.count("p") >= 1 + Ctx.paired_rounds  # the first call, then the rounds
    pr = rec["speedup_paired"]["pyhessian"]
    assert pr["n"] == Ctx.paired_rounds and pr["interleaved"] and rec["speedup"]["pyhessian"] == pr["median"]
    assert rec["speedup_of_medians"]["pyhessian"] == pytest.approx(4.5)
    goal = bench.goals({bench.HEADLINE: rec})[0]
    assert goal.measured == pr["median"] and goal.spread["n"] == Ctx.paired_rounds
