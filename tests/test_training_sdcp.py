"""The semidefinite complementarity solver (`jaxdyn.training.psd_complementarity`,
`SemismoothNewton`): against cvxpy on the convex (Gram) case, complementarity checked directly on
non-symmetric M, the k = 1 closed form, transforms (jit without retracing, vmap, jvp/grad against
central differences), both throw modes, summary and plot.

Instances are built with a known solution: S*, W* PSD with complementary ranges (rank S* +
rank W* = k for strict complementarity, < k for the degenerate case), M a Gram form G G^T (the GD
case; rank-deficient G: S not unique, W unique) plus optionally a skew part (monotone, not
symmetric: the RMSProp case), q = W* - M(S*).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.training import PSDComplementarityResult, SemismoothNewton, psd_complementarity

from .helpers import central_directional, fd_step


def _instance(rng, k, *, rank=None, r_s=None, r_w=None, skew=0.0):
    m = k * (k + 1) // 2
    r = m if rank is None else rank
    G = rng.normal(size=(k, k, r))
    G = 0.5 * (G + G.transpose(1, 0, 2))
    M = np.einsum("abr,ijr->abij", G, G)
    if skew:
        K = rng.normal(size=(k, k, k, k))
        K = K + K.transpose(1, 0, 2, 3)
        K = K + K.transpose(0, 1, 3, 2)
        M = M + skew * (K - K.transpose(2, 3, 0, 1))
    U = np.linalg.qr(rng.normal(size=(k, k)))[0]
    r_s = int(rng.integers(0, k + 1)) if r_s is None else r_s
    r_w = k - r_s if r_w is None else r_w
    s = np.zeros(k)
    s[:r_s] = rng.uniform(0.5, 2.0, r_s)
    w = np.zeros(k)
    w[r_s:r_s + r_w] = rng.uniform(0.5, 2.0, r_w)
    S, W = (U * s) @ U.T, (U * w) @ U.T
    return W - np.einsum("abij,ij->ab", M, S), M, S, W


def _apply(M, S):
    return np.einsum("abij,ij->ab", M, S)


def _cvxpy_reference(q, M):
    cp = pytest.importorskip("cvxpy")
    k = q.shape[0]
    B = M.reshape(k * k, k * k)
    w, V = np.linalg.eigh(0.5 * (B + B.T))
    L = V * np.sqrt(np.maximum(w, 0.0))
    S = cp.Variable((k, k), PSD=True)
    objective = 0.5 * cp.sum_squares(L.T @ cp.vec(S, order="C")) + cp.sum(cp.multiply(q, S))
    problem = cp.Problem(cp.Minimize(objective))
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10,
                  max_iter=200)
    return np.asarray(S.value)


def _objective(q, M, S):
    return float(np.sum(q * S) + 0.5 * np.sum(S * _apply(M, S)))


CASES = [(k, rank, degenerate) for k in (1, 2, 3, 5) for rank in (None, 2) for degenerate in
         (False, True)]


@pytest.mark.parametrize("k, rank, degenerate", CASES)
def test_against_cvxpy(k, rank, degenerate):
    """The convex (Gram) case against cvxpy/CLARABEL and the known solution. `rank=None`: a
    full-rank, well-conditioned M (G with 2m columns): S unique; `rank=2`: S not unique, W and
    M(S) are. `degenerate`: S* and W* share a zero eigenvalue (strict complementarity fails)."""
    rng = np.random.default_rng(100 * k + (rank or 0) + 7 * degenerate)
    m = k * (k + 1) // 2
    for _ in range(2):
        r_s = int(rng.integers(0, k + 1))
        r_w = k - r_s - (1 if degenerate and r_s < k else 0)
        q, M, S_star, W_star = _instance(rng, k, rank=rank or 2 * m, r_s=r_s, r_w=r_w)
        res = psd_complementarity(q, M)
        S = np.asarray(res.S)
        assert float(res.residual) <= 1e-12
        # the known solution (exact): W and M(S) are unique even where S is not
        np.testing.assert_allclose(res.W, W_star, atol=1e-9)
        np.testing.assert_allclose(_apply(M, S), _apply(M, S_star), atol=1e-9)
        if rank is None:
            np.testing.assert_allclose(S, S_star, atol=1e-9)
        # the dense reference: cvxpy's minimiser (CLARABEL; an interior point, accurate to about
        # 1e-5 here: the known solution above is the 1e-9 reference); ours is at least as good
        S_ref = _cvxpy_reference(q, M)
        obj = _objective(q, M, S)
        assert obj <= _objective(q, M, S_ref) + 1e-12 * (1 + abs(obj))
        np.testing.assert_allclose(res.W, q + _apply(M, S_ref), atol=1e-4 * (1 + np.abs(q).max()))
        if rank is None:
            np.testing.assert_allclose(S, S_ref, atol=1e-4)


def test_zero_solution_when_q_psd():
    rng = np.random.default_rng(3)
    q, M, _, _ = _instance(rng, 3, r_s=0, r_w=3)
    res = psd_complementarity(q, M)
    assert np.abs(np.asarray(res.S)).max() == 0.0
    assert int(res.iterations) == 0
    np.testing.assert_allclose(res.W, q, atol=1e-15)


@pytest.mark.parametrize("k, rank, degenerate", [(2, None, False), (3, 2, True), (5, None, True),
                                                 (5, 3, False)])
def test_nonsymmetric_complementarity(k, rank, degenerate):
    rng = np.random.default_rng(11 * k)
    for _ in range(3):
        r_s = int(rng.integers(1, k + 1))
        r_w = k - r_s - (1 if degenerate and r_s < k else 0)
        q, M, _, _ = _instance(rng, k, rank=rank, r_s=r_s, r_w=r_w, skew=0.3)
        res = psd_complementarity(q, M)
        S, W = np.asarray(res.S), np.asarray(res.W)
        scale = 1.0 + np.abs(S).max()
        assert np.linalg.eigvalsh(S).min() > -1e-10 * scale
        assert np.linalg.eigvalsh(W).min() > -1e-10 * scale
        assert abs(np.sum(S * W)) < 1e-10 * scale**2
        np.testing.assert_allclose(W, q + _apply(M, S), atol=1e-12 * scale)


def test_copositive_not_monotone():
    """M(S) = S - 1.5 <E, S> E, E = (e0 e1^T + e1 e0^T)/sqrt 2: <S, M(S)> < 0 for S = E (not
    monotone) but >= |S|^2 / 4 on the PSD cone (strictly copositive: a solution for every q)."""
    k = 3
    eye = np.eye(k)
    E = (np.outer(eye[0], eye[1]) + np.outer(eye[1], eye[0])) / np.sqrt(2.0)
    M = np.einsum("ai,bj->abij", eye, eye) - 1.5 * np.einsum("ab,ij->abij", E, E)
    rng = np.random.default_rng(12)
    for _ in range(4):
        q = rng.normal(size=(k, k))
        res = psd_complementarity(q + q.T, M)
        S, W = np.asarray(res.S), np.asarray(res.W)
        assert np.linalg.eigvalsh(S).min() > -1e-10 and np.linalg.eigvalsh(W).min() > -1e-10
        assert abs(np.sum(S * W)) < 1e-10 * (1.0 + np.abs(S).max()) ** 2


def test_ill_conditioned_gram_form():
    """The docstring's example: a Gram form with condition number 1.5e4 and q = -I; the
    solution lies far out in the normalised units (|S| |M| / |q| ~ 2000): a fixed damping
    mu ~ |F| stalled here (3e-4 after 2000 steps); the adaptive damping takes ~11."""
    G = jax.random.normal(jax.random.key(0), (3, 3, 6))
    G = 0.5 * (G + G.transpose(1, 0, 2))
    M = jnp.einsum("abr,ijr->abij", G, G)
    res = psd_complementarity(-jnp.eye(3), M)
    assert float(res.residual) <= 1e-12 and int(res.iterations) <= 30
    S, W = np.asarray(res.S), np.asarray(res.W)
    assert np.linalg.eigvalsh(S).min() > -1e-10 and np.linalg.eigvalsh(W).min() > -1e-10
    assert abs(np.sum(S * W)) < 1e-10 * np.abs(S).max()


def test_scalar_closed_form():
    for q, m in [(-3.0, 2.0), (1.5, 0.7), (-1e-3, 5e2), (0.0, 1.0), (-2.0, 1e-6)]:
        res = psd_complementarity(jnp.array([[q]]), jnp.array([[[[m]]]]))
        expected = max(0.0, -q / m)
        assert abs(float(res.S[0, 0]) - expected) <= 1e-14 * max(1.0, expected)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(5)
    items = [_instance(rng, 3, r_s=r, r_w=3 - r) for r in (0, 1, 2, 3)]
    return tuple(jnp.asarray(np.stack(x)) for x in zip(*items))


def test_jit_no_retrace_and_vmap(batch):
    qs, Ms, S_star, W_star = batch

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def solve(q, M):
        return psd_complementarity(q, M, throw=False)

    for i in range(qs.shape[0]):
        res = solve(qs[i], Ms[i])
        eager = psd_complementarity(qs[i], Ms[i])
        np.testing.assert_allclose(res.S, eager.S, atol=1e-13)
        np.testing.assert_allclose(res.S, S_star[i], atol=1e-9)
    out = jax.vmap(lambda q, M: psd_complementarity(q, M, throw=False))(qs, Ms)
    assert isinstance(out, PSDComplementarityResult)
    assert out.S.shape == (4, 3, 3)
    np.testing.assert_allclose(out.S, S_star, atol=1e-9)
    np.testing.assert_allclose(out.W, W_star, atol=1e-9)
    assert bool(np.all(np.asarray(out.successful)))
    assert "batch of 4" in out.summary()


def test_warm_start_takes_fewer_iterations(batch):
    qs, Ms, S_star, _ = batch
    cold = psd_complementarity(qs[2], Ms[2])
    warm = psd_complementarity(qs[2] + 1e-4, Ms[2], init=cold.S)
    assert int(warm.iterations) < int(cold.iterations)
    assert int(warm.iterations) <= 4


def _strict(seed, k=3, skew=0.0):
    rng = np.random.default_rng(seed)
    q, M, _, _ = _instance(rng, k, r_s=2, r_w=k - 2, skew=skew)
    dq = rng.normal(size=(k, k))
    dq = dq + dq.T
    dM = rng.normal(size=(k, k, k, k))
    dM = dM + dM.transpose(1, 0, 2, 3)
    R = rng.normal(size=(k, k))
    return jnp.asarray(q), jnp.asarray(M), jnp.asarray(dq), jnp.asarray(dM), jnp.asarray(R)


@pytest.mark.parametrize("skew", [0.0, 0.3])
def test_jvp_and_grad_against_central_differences(skew):
    q, M, dq, dM, R = _strict(21, skew=skew)

    def f(qM):
        return psd_complementarity(qM[0], qM[1]).S

    h = fd_step(np.abs(np.asarray(M)).max())
    fd = central_directional(f, (q, M), (dq, dM), h)
    _, tangent = jax.jvp(f, ((q, M),), ((dq, dM),))
    assert np.abs(np.asarray(tangent) - np.asarray(fd)).max() < 1e-7 * max(1.0, np.abs(fd).max())

    def scalar(qM):
        return jnp.sum(R * f(qM)) + 0.3 * jnp.sum(R * psd_complementarity(qM[0], qM[1]).W)

    gq, gM = jax.grad(scalar)((q, M))
    directional = float(jnp.sum(gq * dq) + jnp.sum(gM * dM))
    fd_scalar = float(central_directional(scalar, (q, M), (dq, dM), h))
    assert abs(directional - fd_scalar) < 1e-7 * max(1.0, abs(fd_scalar))


def test_grad_under_jit_and_vmap(batch):
    qs, Ms, _, _ = batch

    def loss(q, M):
        return jnp.sum(psd_complementarity(q, M, throw=False).S ** 2)

    grads = jax.jit(jax.vmap(jax.grad(loss)))(qs, Ms)
    single = jax.grad(loss)(qs[1], Ms[1])
    np.testing.assert_allclose(grads[1], single, atol=1e-12)
    assert bool(np.all(np.isfinite(np.asarray(grads))))


def test_no_solution_both_throw_modes():
    k = 2
    M = -np.einsum("ai,bj->abij", np.eye(k), np.eye(k))   # M = -identity: no solution
    q = np.diag([-1.0, 0.5])
    res = psd_complementarity(q, M, throw=False)
    assert int(res.result._value) == RESULTS.complementarity_not_solved._value
    assert not bool(res.successful)
    assert "FAILED" in res.summary()
    with pytest.raises(eqx.EquinoxRuntimeError, match="complementarity"):
        psd_complementarity(q, M)
    with pytest.raises(Exception, match="complementarity"):
        jax.block_until_ready(eqx.filter_jit(lambda a, b: psd_complementarity(a, b).S)(q, M))


def test_solver_strategy_direct_and_tolerance():
    rng = np.random.default_rng(8)
    q, M, S_star, _ = _instance(rng, 3, r_s=1, r_w=2)
    S, result = SemismoothNewton().solve(jnp.asarray(q), jnp.asarray(M), jnp.zeros((3, 3)))
    assert int(result._value) == RESULTS.successful._value
    np.testing.assert_allclose(S, S_star, atol=1e-10)
    loose = psd_complementarity(q, M, solver=SemismoothNewton(tol=1e-3, max_steps=20))
    assert float(loose.residual) <= 1e-3
    short = psd_complementarity(q, M, solver=SemismoothNewton(max_steps=1), throw=False)
    assert not bool(short.successful)


def test_float32():
    rng = np.random.default_rng(9)
    q, M, S_star, _ = _instance(rng, 3, r_s=2, r_w=1)
    res = psd_complementarity(jnp.asarray(q, jnp.float32), jnp.asarray(M, jnp.float32))
    assert res.S.dtype == jnp.float32
    np.testing.assert_allclose(res.S, S_star, atol=1e-4)


def test_summary_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(10)
    q, M, _, _ = _instance(rng, 3, r_s=1, r_w=2)
    res = psd_complementarity(q, M)
    text = res.summary()
    assert "residual" in text and "eig S" in text and "rank S = 1" in text
    ax = res.plot()
    assert ax is not None and len(ax.lines) >= 2
    plt.close("all")
    fig, ax2 = plt.subplots()
    assert res.plot(ax=ax2) is ax2
    plt.close(fig)
