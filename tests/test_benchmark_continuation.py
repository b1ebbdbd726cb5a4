"""The problem set-up of `benchmarks/continuation.py` (no peers needed, fast): the graphon's closed-form
top eigenvalue and K_c, the two residuals agreeing, the Stuart-Landau lift's exact orbit."""

import importlib.util
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_continuation", BENCH / "continuation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("n", [3, 64, 257])
def test_graphon_top_eigenvalue_closed_form(bench, n):
    w = bench.graphon_matrix(n)
    assert np.allclose(w, w.T) and w.min() >= 0.0 and w.max() <= 1.0
    values, vectors = np.linalg.eigh(w / n)
    assert values[-1] == pytest.approx(bench.MU_MAX, abs=1e-12)
    assert values[-2] == pytest.approx(bench.W_COS / 2, abs=1e-12)  # the cosine pair, well below
    assert np.allclose(np.abs(vectors[:, -1]), 1 / np.sqrt(n))  # the constant mode
    assert bench.K_C == pytest.approx(2 * bench.GAMMA / values[-1], rel=1e-12)


def test_oa_jacobian_singular_at_kc(bench):
    n = 64
    w = bench.graphon_matrix(n)
    G = bench.oa_residual_numpy(w)
    assert np.all(G(np.zeros(n), 2.0) == 0.0)  # z = 0 is on the branch for every K
    for k, sign in ((bench.K_C * 0.99, -1), (bench.K_C, 0), (bench.K_C * 1.01, 1)):
        top = np.max(np.linalg.eigvalsh(-bench.GAMMA * np.eye(n) + 0.5 * k * w / n))
        assert np.sign(np.round(top, 12)) == sign
    assert bench.K_STOP < bench.K_C < bench.K_START


def test_oa_fields_agree(bench):
    n = 50
    w = bench.graphon_matrix(n)
    z = np.random.default_rng(0).uniform(-0.5, 0.5, n)
    problem, args = bench.oa_jaxdyn(w, k=1.9)
    got = bench.oa_field(0.0, jnp.asarray(z), args)
    np.testing.assert_allclose(np.asarray(got), bench.oa_residual_numpy(w)(z, 1.9), rtol=1e-13, atol=1e-15)
    moved = bench.set_coupling(args, jnp.asarray(1.2))
    assert float(moved["k"]) == 1.2 and float(args["k"]) == 1.9
    assert problem.dimension(jnp.zeros(n)) == n


def test_stuart_landau_lift(bench):
    q, rates = bench.sl_data()
    assert q.shape == (bench.SL_DIM, bench.SL_DIM) and np.allclose(q.T @ q, np.eye(bench.SL_DIM))
    assert rates.shape == (bench.SL_DIM - 2,) and np.all(rates < 0)
    mu = 0.3
    u = bench.sl_orbit_u(q, mu)
    m, n = bench.SL_SEGMENTS, bench.SL_DIM
    assert u.shape == (m * n + 1,) and u[-1] == pytest.approx(2 * np.pi / bench.SL_OMEGA)
    args = {"q": jnp.asarray(q), "rates": jnp.asarray(rates), "mu": jnp.asarray(mu),
            "omega": jnp.asarray(bench.SL_OMEGA)}
    states = u[:-1].reshape(m, n)
    for x in states:  # on the circle of radius sqrt(mu) the flow is the rotation at omega
        v = q.T @ x
        assert np.linalg.norm(x) == pytest.approx(np.sqrt(mu))
        expected = q @ np.concatenate([[-bench.SL_OMEGA * v[1], bench.SL_OMEGA * v[0]], np.zeros(n - 2)])
        got = bench.sl_field(0.0, jnp.asarray(x), args)
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-13)
    mults = bench.sl_expected_multipliers(mu, rates)
    assert mults.shape == (n,) and mults[0] == 1.0 and np.all(np.diff(mults) <= 0)
    assert np.exp(-2 * mu * 2 * np.pi) in mults


def test_module_contract(bench):
    for name in ("NAME", "DESCRIPTION", "PEER", "PEERS", "HEADLINE", "CASES", "STATEMENT", "PROBLEM", "X64"):
        assert hasattr(bench, name)
    assert bench.HEADLINE in bench.CASES and bench.PEER in bench.PEERS
    assert all(callable(getattr(bench, f"case_{c}")) for c in bench.CASES)
    (goal,) = bench.goals({})
    assert goal.measured is None and goal.met is None and goal.threshold == 10.0
