"""Warm-started eigenpairs: `top_eigenvalues(..., v0=...)` from a start vector or a block.

For the curvature benchmark (part d, tracking the top-10 every 10 GD steps): the call is
`train(loss_fn, params, *data, n_steps=1000, lr=lr, every=10, top_k=10, warm_start=True)` against
`warm_start=False`; `TrainResult.num_hvp` holds the operator applications per tracked row (sum it).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.curvature as cv

N = 40
K = 4


def _matrix(lam, seed):
    U, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(lam), len(lam))))
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T)


@pytest.fixture(scope="module")
def pair():
    """A matrix with separated top eigenvalues, a perturbation of it, and A's cold result."""
    lam = np.concatenate([np.linspace(0.1, 3.0, N - K), [4.0, 5.0, 6.5, 8.0]])
    A = _matrix(lam, 0)
    E = np.random.default_rng(1).normal(size=(N, N))
    A2 = A + 1e-4 * (E + E.T)
    cold = cv.top_eigenvalues(jnp.asarray(A), K)
    return jnp.asarray(A), jnp.asarray(A2), cold


def test_exact_warm_start_converges_at_once(pair):
    A, _, cold = pair
    res = cv.top_eigenvalues(A, K, v0=cold.eigenvectors)
    assert bool(res.converged) and int(res.num_hvp) <= K + 1
    np.testing.assert_allclose(res.eigenvalues, cold.eigenvalues, atol=1e-10, rtol=0)


def test_perturbed_warm_start_equals_cold(pair):
    _, A2, cold = pair
    ref = np.linalg.eigvalsh(np.asarray(A2))[::-1][:K]
    c2 = cv.top_eigenvalues(A2, K)
    w2 = cv.top_eigenvalues(A2, K, v0=cold.eigenvectors)
    assert bool(w2.converged)
    np.testing.assert_allclose(w2.eigenvalues, ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(w2.eigenvalues, c2.eigenvalues, atol=1e-10, rtol=0)
    # the residuals are the true ones
    Y = np.asarray(w2.eigenvectors)
    true = np.linalg.norm(Y @ np.asarray(A2) - np.asarray(w2.eigenvalues)[:, None] * Y, axis=1)
    np.testing.assert_allclose(w2.residuals, true, atol=1e-9)


@pytest.mark.parametrize("m", [1, 2, K, K + 3])
def test_block_shapes(pair, m):
    _, A2, cold = pair
    ref = np.linalg.eigvalsh(np.asarray(A2))[::-1][:K]
    extra = jax.random.normal(jax.random.key(m), (max(m - K, 0), N))
    v0 = jnp.concatenate([cold.eigenvectors, extra])[:m]
    res = cv.top_eigenvalues(A2, K, v0=v0[0] if m == 1 else v0)
    np.testing.assert_allclose(res.eigenvalues, ref, atol=1e-10, rtol=0)


def test_traced_in_scan_without_retracing(pair):
    A, A2, cold = pair
    mats = jnp.stack([A, A2, A])

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def track(mats, v0):
        def step(v, M):
            res = cv.top_eigenvalues(M, K, v0=v, throw=False)
            return res.eigenvectors, (res.eigenvalues, res.num_hvp)

        return jax.lax.scan(step, v0, mats)[1]

    vals, hvps = track(mats, cold.eigenvectors)
    ref = np.linalg.eigvalsh(np.asarray(A2))[::-1][:K]
    np.testing.assert_allclose(vals[1], ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(vals[2], cold.eigenvalues, atol=1e-10, rtol=0)
    assert np.all(np.asarray(hvps) <= 3 * K + 60)
    track(mats[::-1], cold.eigenvectors[::-1])  # new values, same shapes: no second trace
