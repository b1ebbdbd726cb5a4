"""The host reference of `benchmarks/central_flow.py` (cvxpy through `jax.pure_callback`): it solves
the same semidefinite complementarity problems as jaxdyn's native solver, to 1e-6, inside `jit`,
`lax.scan` and `vmap`, and refuses to be differentiated. Fast: k <= 3, a few instances."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS

pytest.importorskip("cvxpy")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_central_flow", BENCH / "central_flow.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the reference's class is built in it (dataclass lookups)
    spec.loader.exec_module(module)
    return module


def _planted_instance(rng, k, rank_s, rank_m=None):
    """A Gram-form M (symmetric PSD as a map on symmetric matrices, of rank `rank_m`) and q = W* -
    M(S*) for a planted strictly complementary pair: S* of rank `rank_s` and W* PSD on the
    complement of its range. Returns `(q, M, S*, W*)`."""
    G = rng.standard_normal((k * k, k * k if rank_m is None else rank_m))
    M = (G @ G.T).reshape(k, k, k, k)
    M = 0.5 * (M + M.transpose(1, 0, 2, 3))
    M = 0.5 * (M + M.transpose(0, 1, 3, 2))
    V = np.linalg.qr(rng.standard_normal((k, k)))[0]
    s = np.where(np.arange(k) < rank_s, rng.uniform(0.5, 2.0, k), 0.0)
    w = np.where(np.arange(k) >= rank_s, rng.uniform(0.5, 2.0, k), 0.0)
    S, W = (V * s) @ V.T, (V * w) @ V.T
    return W - _apply(M, S), M, S, W


@pytest.fixture(scope="module")
def instances():
    rng = np.random.default_rng(16)
    out = [_planted_instance(rng, k, r) for k in (2, 3) for r in range(1, k + 1)]
    out.append(_planted_instance(rng, 3, 1, rank_m=4))  # M singular: S not unique, M(S) and W are
    out.append(_planted_instance(rng, 2, 0))  # q PSD: S = 0
    return out


def _apply(M, S):
    return np.einsum("abij,ij->ab", M, S)


def _assert_close(actual, desired, scale, rel=1e-6):
    """|actual - desired| <= rel * scale elementwise (the instances' entries are O(1..10))."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rel * max(1.0, scale))


def test_scalar_closed_form(bench):
    for q, m in ((-0.3, 2.0), (0.7, 1.5), (-1e-3, 40.0)):
        S, ok = bench.host_sdcp(np.array([[q]]), np.array([[[[m]]]]))
        assert ok == 1
        assert S[0, 0] == pytest.approx(max(0.0, -q / m), rel=1e-8, abs=1e-14)


def test_reference_solves_the_sdcp(bench, instances):
    for q, M, S_star, W_star in instances:
        S, ok = bench.host_sdcp(q, M)
        assert ok == 1
        assert bench.sdcp_residual(q, M, S) <= 1e-6
        scale = np.abs(q).max()
        _assert_close(q + _apply(M, S), W_star, scale)  # W (and M(S)) unique
        k = q.shape[0]
        if np.linalg.matrix_rank(M.reshape(k * k, k * k)) == k * (k + 1) // 2:
            _assert_close(S, S_star, np.abs(S_star).max())
    q, M, _, _ = instances[-1]
    assert np.all(bench.host_sdcp(q, M)[0] == 0.0)


def test_reference_equals_native_solver(bench, instances):
    training = pytest.importorskip("jaxdyn.training")
    if not hasattr(training, "SemismoothNewton"):
        pytest.skip("SemismoothNewton not yet in jaxdyn.training")
    native = training.SemismoothNewton()
    solve = jax.jit(native.solve)
    for q, M, _, _ in instances:
        k = q.shape[0]
        S_ref, _ = bench.host_sdcp(q, M)
        S, result = solve(jnp.asarray(q), jnp.asarray(M), jnp.zeros((k, k)))
        assert bool(result == RESULTS.successful)
        # M(S) and W are unique (S too when M is nonsingular): compare M(S) always, S where unique
        _assert_close(_apply(M, np.asarray(S)), _apply(M, S_ref), np.abs(q).max())
        if np.linalg.matrix_rank(M.reshape(k * k, k * k)) == k * (k + 1) // 2:
            _assert_close(np.asarray(S), S_ref, np.abs(S_ref).max())


def test_callback_in_jit_scan_and_vmap(bench, instances):
    solver = bench.HostCvxpySDCP()
    q3 = [(q, M) for q, M, _, _ in instances if q.shape[0] == 3]
    qs = jnp.asarray(np.stack([q for q, _ in q3]))
    Ms = jnp.asarray(np.stack([M for _, M in q3]))
    init = jnp.zeros((3, 3))

    @jax.jit
    def scanned(qs, Ms):
        def body(carry, x):
            S, result = solver.solve(x[0], x[1], init)
            return carry, (S, result._value)

        return jax.lax.scan(body, 0, (qs, Ms))[1]

    S_scan, codes = scanned(qs, Ms)
    S_vmap, result = jax.jit(jax.vmap(lambda q, M: solver.solve(q, M, init)))(qs, Ms)
    assert np.all(np.asarray(codes) == 0) and np.all(np.asarray(result._value) == 0)
    for i, (q, M) in enumerate(q3):
        S_ref, _ = bench.host_sdcp(q, M)
        _assert_close(_apply(M, np.asarray(S_scan[i])), _apply(M, S_ref), np.abs(q).max())
        _assert_close(_apply(M, np.asarray(S_vmap[i])), _apply(M, S_ref), np.abs(q).max())


def test_reference_refuses_derivatives(bench, instances):
    q, M, _, _ = instances[0]
    solver = bench.HostCvxpySDCP()
    with pytest.raises(ValueError, match="JVP"):
        jax.grad(lambda q: solver.solve(q, jnp.asarray(M), jnp.zeros_like(q))[0].sum())(jnp.asarray(q))


def test_recording_collects_instances(bench, instances):
    q, M, _, _ = instances[0]
    with bench.recording() as rec:
        bench.host_sdcp(q, M)
    bench.host_sdcp(q, M)
    assert len(rec) == 1 and rec[0][0].shape == q.shape and rec[0][1].shape == M.shape


def test_module_contract(bench):
    for name in ("NAME", "DESCRIPTION", "PEER", "PEERS", "HEADLINE", "CASES", "STATEMENT", "PROBLEM", "X64"):
        assert hasattr(bench, name)
    assert bench.HEADLINE in bench.CASES and bench.PEER in bench.PEERS
    assert all(callable(getattr(bench, f"case_{c}")) for c in bench.CASES)
    goals = bench.goals({})
    assert goals[0].measured is None and goals[0].met is None and goals[0].threshold == 20.0
