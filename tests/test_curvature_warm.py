"""Warm-started eigenpairs: `top_eigenvalues(..., v0=...)` from a start vector or a block, and
`train(..., warm_start=True)`.

For the curvature benchmark (part d, tracking the top-10 every 10 GD steps): either call
`top_eigenvalues(H, 10, v0=previous.eigenvectors, ...)` per solve (`.num_hvp` per solve), or
`train(loss_fn, params, *data, n_steps=1000, lr=lr, every=10, top_k=10, warm_start=True)`
against `warm_start=False` and sum `TrainResult.num_hvp` (the operator applications per row).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.curvature as cv
from jaxdyn._results import RESULTS
from jaxdyn.training import train

from .helpers import fd_directional

N = 40
K = 4


def _matrix(lam, seed):
    U, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(lam), len(lam))))
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T)


def _top(A, k=K):
    return np.linalg.eigvalsh(np.asarray(A))[::-1][:k]


@pytest.fixture(scope="module")
def pair():
    """A matrix with separated top eigenvalues, a symmetric perturbation direction, and A's
    cold result."""
    lam = np.concatenate([np.linspace(0.1, 3.0, N - K), [4.0, 5.0, 6.5, 8.0]])
    A = _matrix(lam, 0)
    E = np.random.default_rng(1).normal(size=(N, N))
    cold = cv.top_eigenvalues(jnp.asarray(A), K)
    return jnp.asarray(A), jnp.asarray(E + E.T), cold


def test_exact_warm_start_converges_at_once(pair):
    A, _, cold = pair
    res = cv.top_eigenvalues(A, K, v0=cold.eigenvectors)
    assert bool(res.converged) and int(res.num_hvp) <= K + 2  # the block, the guard, one more
    np.testing.assert_allclose(res.eigenvalues, _top(A), atol=1e-10, rtol=0)
    assert int(cold.num_hvp) > 3 * K


@pytest.mark.parametrize("eps", [1e-7, 1e-3])
def test_perturbed_warm_start_equals_cold(pair, eps):
    # close (band Lanczos from the block) and far (handed over to Lanczos from the block's sum)
    A, E, cold = pair
    A2 = A + eps * E
    c2 = cv.top_eigenvalues(A2, K)
    w2 = cv.top_eigenvalues(A2, K, v0=cold.eigenvectors)
    assert bool(w2.converged) and w2.result == RESULTS.successful
    np.testing.assert_allclose(w2.eigenvalues, _top(A2), atol=1e-10, rtol=0)
    np.testing.assert_allclose(w2.eigenvalues, c2.eigenvalues, atol=1e-10, rtol=0)
    assert int(w2.num_hvp) < int(c2.num_hvp)
    # the same tolerance as cold: residuals (the true ones) within tol * max |theta|
    Y = np.asarray(w2.eigenvectors)
    true = np.linalg.norm(Y @ np.asarray(A2) - np.asarray(w2.eigenvalues)[:, None] * Y, axis=1)
    np.testing.assert_allclose(w2.residuals, true, atol=1e-9)
    assert np.max(true) <= np.sqrt(np.finfo(np.float64).eps) * 8.0 * 1.01
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("m", [1, 2, K, K + 3])
def test_block_shapes(pair, m):
    # (size,) and (m, size) with m < k, = k, > k (extra rows: random guard vectors)
    A, E, cold = pair
    A2 = A + 1e-5 * E
    extra = jax.random.normal(jax.random.key(m), (max(m - K, 0), N))
    v0 = jnp.concatenate([cold.eigenvectors, extra])[:m]
    res = cv.top_eigenvalues(A2, K, v0=v0[0] if m == 1 else v0)
    np.testing.assert_allclose(res.eigenvalues, _top(A2), atol=1e-10, rtol=0)
    assert int(res.num_hvp) >= min(m, N)  # every start vector is applied before a stop


def test_repeated_and_clustered_eigenvalues(pair):
    # a triple top eigenvalue and a cluster 1e-7 below: single-vector Lanczos from a random
    # start finds one copy per breakdown; the warm block resolves all of them
    _, E, _ = pair
    lam = np.concatenate([np.linspace(0.1, 3.0, N - 5), [4.0, 5.0 - 1e-7, 5.0, 6.0, 6.0]])
    A = _matrix(lam, 2)
    A2 = jnp.asarray(A) + 1e-6 * E
    U = np.linalg.eigh(A)[1][:, ::-1][:, :K + 1].T
    res = cv.top_eigenvalues(A2, K + 1, v0=jnp.asarray(U))
    np.testing.assert_allclose(res.eigenvalues, _top(A2, K + 1), atol=1e-10, rtol=0)
    exact = cv.top_eigenvalues(jnp.asarray(A), K + 1, v0=jnp.asarray(U))
    np.testing.assert_allclose(exact.eigenvalues, lam[::-1][:K + 1], atol=1e-10, rtol=0)


def test_smallest_float32_start_and_full_space(pair):
    A, E, _ = pair
    A2 = A + 1e-5 * E
    low = cv.top_eigenvalues(A, 2, which="smallest")
    res = cv.top_eigenvalues(A2, 2, which="smallest", v0=low.eigenvectors.astype(jnp.float32))
    assert res.eigenvalues.dtype == jnp.float64
    np.testing.assert_allclose(res.eigenvalues, np.linalg.eigvalsh(np.asarray(A2))[:2][::-1],
                               atol=1e-10, rtol=0)
    # tol = 0 runs every step; n_steps = size: the whole space, every Ritz value exact
    full = cv.top_eigenvalues(A2, K, v0=low.eigenvectors, tol=0.0, n_steps=N)
    assert int(full.num_hvp) == N
    np.testing.assert_allclose(full.ritz_values, np.linalg.eigvalsh(np.asarray(A2)), atol=1e-10)


def test_traced_in_scan_without_retracing_and_vmap(pair):
    A, E, cold = pair
    mats = jnp.stack([A, A + 1e-6 * E, A])

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def track(mats, v0):
        def step(v, M):
            res = cv.top_eigenvalues(M, K, v0=v, throw=False)
            return res.eigenvectors, (res.eigenvalues, res.num_hvp)

        return jax.lax.scan(step, v0, mats)[1]

    vals, hvps = track(mats, cold.eigenvectors)
    np.testing.assert_allclose(vals[1], _top(mats[1]), atol=1e-10, rtol=0)
    np.testing.assert_allclose(vals[2], _top(A), atol=1e-10, rtol=0)
    assert np.all(np.asarray(hvps) < int(cold.num_hvp))
    track(mats[::-1], cold.eigenvectors[::-1])  # new values, same shapes: no second trace
    # vmap over operators and start blocks together
    blocks = jnp.stack([cold.eigenvectors, cold.eigenvectors[::-1], cold.eigenvectors])
    batched = eqx.filter_jit(jax.vmap(lambda M, v: cv.top_eigenvalues(M, K, v0=v, throw=False)))
    out = batched(mats, blocks)
    for i in range(3):
        np.testing.assert_allclose(out.eigenvalues[i], _top(mats[i]), atol=1e-10, rtol=0)
    assert bool(jnp.all(out.result == RESULTS.successful))


def test_eigenvalue_derivative_unchanged(pair):
    # Hellmann-Feynman through the warm start: d sum(lambda_i) / dt of A + t E against central
    # differences; the start block carries no derivative (it only starts the iteration)
    A, E, cold = pair

    def total(t, v):
        return jnp.sum(cv.top_eigenvalues(A + t * E, K, v0=v).eigenvalues)

    dt, dv = jax.grad(total, argnums=(0, 1))(0.01, cold.eigenvectors)
    fd = fd_directional(lambda t: total(t, cold.eigenvectors), jnp.asarray(0.01), jnp.asarray(1.0),
                        h=1e-3)
    np.testing.assert_allclose(dt, fd, rtol=1e-6)
    assert float(jnp.max(jnp.abs(dv))) == 0.0


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(80, 40)) / np.sqrt(40))
    y = jnp.asarray(rng.normal(size=80))
    return jnp.asarray(rng.normal(size=40)), x, y


def _tanh_loss(w, x, y):
    return 0.5 * jnp.mean((jnp.tanh(x @ w) - y) ** 2)


def test_train_warm_start(regression):
    w0, x, y = regression
    kw = dict(n_steps=20, lr=0.05, every=5, top_k=3, progress=False)
    cold = train(_tanh_loss, w0, x, y, **kw)
    warm = train(_tanh_loss, w0, x, y, warm_start=True, **kw)
    np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, atol=1e-10, rtol=0)
    np.testing.assert_allclose(warm.sharpness, cold.sharpness, rtol=1e-9)
    assert warm.num_hvp.shape == cold.num_hvp.shape == (5,)
    assert int(jnp.sum(warm.num_hvp)) < int(jnp.sum(cold.num_hvp))
    assert np.all(np.asarray(warm.num_hvp[1:]) < np.asarray(cold.num_hvp[1:]))
    assert train(_tanh_loss, w0, x, y, **{**kw, "top_k": 0}).num_hvp is None


def test_hand_over_keeps_the_whole_budget():
    # a random block is far: Lanczos takes over from its first vector without a second
    # application of it, so n_steps = size still spans the whole space (exact pairs)
    A = jnp.asarray(_matrix(np.array([0.2, 0.7, 1.0, 5.0]), 4))
    res = cv.top_eigenvalues(A, 2, v0=jax.random.normal(jax.random.key(1), (2, 4)))
    assert int(res.num_hvp) <= 4 and bool(res.converged)
    np.testing.assert_allclose(res.eigenvalues, [5.0, 1.0], atol=1e-12, rtol=0)
