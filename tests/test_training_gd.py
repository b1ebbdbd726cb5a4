"""GD as a map and the stability of its fixed points (jaxdyn.training): known answers on quadratics
(isolated minima and saddles) and on the hyperbola of minima of (w1 w2 - 1)^2 / 2 (manifold regime),
the hyperbola bound from vmapped GD runs, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.training import gd_endpoints, gd_map, gd_stability, hyperbola_loss

from .helpers import central_directional, fd_step


def quad(theta, A):
    """theta^T A theta / 2 with A passed as data (rows of A = the 'samples')."""
    return 0.5 * theta @ (A @ theta)


SPD = np.diag([3.0, 1.0, 0.5])
SADDLE = np.diag([3.0, 1.0, -0.5])


def _rotate(D, seed):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=D.shape))
    return jnp.asarray(Q @ D @ Q.T)


@pytest.fixture(scope="module")
def spd():
    return _rotate(SPD, 0)


def _gd_run(A, lr, theta0, n):
    G = gd_map(quad, lr)

    def step(th, _):
        th = G(th, A)
        return th, jnp.linalg.norm(th)

    return jax.lax.scan(step, theta0, None, length=n)[1]


_gd_run_jit = jax.jit(_gd_run, static_argnums=3)


@pytest.mark.parametrize("lr", [0.1, 0.5, 0.6, 0.7, 1.0])
def test_quadratic_rate_and_stability(spd, lr):
    lams = np.linalg.eigvalsh(np.asarray(spd))
    rho = np.max(np.abs(1 - lr * lams))
    theta0 = jnp.array([1.0, -0.7, 0.4])
    norms = np.asarray(_gd_run_jit(spd, lr, theta0, 600))
    # the observed rate (ratio of norms over steps 100..200) is max |1 - eta lambda_i|
    rate = (norms[199] / norms[99]) ** (1 / 100)
    np.testing.assert_allclose(rate, rho, rtol=1e-6)
    converges = bool(norms[-1] < 1e-6 * norms[0])
    assert converges == (lr < 2 / lams.max())
    res = gd_stability(quad, jnp.zeros(3), lr, spd, k=3)
    assert res.regime == "isolated"
    assert bool(res.critical)
    assert bool(res.stable) == converges
    np.testing.assert_allclose(res.spectral_radius, rho, rtol=1e-8)
    np.testing.assert_allclose(res.mu, np.log(rho), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(res.critical_lr, 2 / 3.0, rtol=1e-8)
    np.testing.assert_allclose(res.lambda_min, 0.5, rtol=1e-8)


def test_saddle_unstable_for_every_lr():
    A = _rotate(SADDLE, 1)
    lrs = jnp.array([1e-4, 1e-2, 0.3, 0.6, 2.0])
    for lr in lrs:
        res = gd_stability(quad, jnp.zeros(3), lr, A, k=3)
        assert res.regime == "isolated"
        assert not bool(res.stable)
        np.testing.assert_allclose(res.lambda_min, -0.5, rtol=1e-8)
        np.testing.assert_allclose(res.spectral_radius,
                                   max(1 + 0.5 * float(lr), abs(1 - 3 * float(lr))), rtol=1e-8)


def test_hyperbola_manifold_regime():
    """At (a, 1/a) the nonzero eigenvalue is a^2 + 1/a^2 and mu = log|1 - eta (a^2 + 1/a^2)|; one
    jit(vmap(...)) call over points and step sizes, plus a non-critical point."""
    a = np.repeat([0.6, 1.0, 1.7], 6)
    lam = a**2 + a**-2
    lrs = np.tile([0.1, 0.3, 0.45, 0.99, 1.01, 1.2], 3)
    lrs[3::6] *= 2 / lam[3::6]
    lrs[4::6] *= 2 / lam[4::6]
    points = np.stack([a, 1 / a], axis=1)
    points = np.concatenate([points, [[2.0, 0.1]]])  # not a critical point
    lrs = np.concatenate([lrs, [0.1]])
    res = jax.jit(jax.vmap(lambda w, lr: gd_stability(hyperbola_loss, w, lr, k=2)))(
        jnp.asarray(points), jnp.asarray(lrs))
    crit = slice(0, -1)
    assert np.all(np.asarray(res.regime)[crit] == "manifold")
    assert np.all(np.asarray(res.critical)[crit])
    exact = np.log(np.abs(1 - lrs[crit] * lam))
    np.testing.assert_allclose(np.asarray(res.mu)[crit], exact, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(res.stable)[crit], exact < 0)
    np.testing.assert_allclose(np.asarray(res.lambda_max)[crit], lam, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.critical_lr)[crit], 2 / lam, rtol=1e-10)
    smallest = np.asarray(res.eigenvalues_smallest)[crit, -1]
    assert np.all(np.abs(smallest) <= np.asarray(res.zero_tolerance)[crit])
    assert not bool(res.critical[-1])
    np.testing.assert_allclose(res.gradient_norm[-1], 0.8 * np.hypot(0.1, 2.0), rtol=1e-12)


def test_overparameterised_least_squares_manifold():
    """12 weights, 5 samples: H = X^T X / n has rank 5, a 7-dimensional kernel (the tangent space
    of the affine set of minima). With k = 8 the smallest nonzero eigenvalue is resolved; with k = 3
    it is not (flagged), and mu, attained at lambda_max here, is right in both cases."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(5, 12)))
    y = jnp.asarray(rng.normal(size=5))
    w = jnp.linalg.pinv(x) @ y
    loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
    ev = np.linalg.eigvalsh(np.asarray(x.T @ x) / 5)
    nz = ev[ev > 1e-10]
    for k, resolved in ((3, False), (8, True)):
        res = gd_stability(loss, w, 0.5, x, y, k=k)
        assert res.regime == "manifold" and bool(res.critical)
        assert bool(res.resolved) == resolved
        np.testing.assert_allclose(res.mu, np.log(np.max(np.abs(1 - 0.5 * nz))), rtol=1e-10)
        assert not bool(res.stable)  # lambda_max > 2 / 0.5
    np.testing.assert_allclose(res.lambda_min_nonzero, nz.min(), rtol=1e-8)


def test_gd_map_and_jacobian():
    w = jnp.array([1.3, -0.4])
    G = gd_map(hyperbola_loss, 0.3)
    np.testing.assert_allclose(jax.jit(lambda w: G(w))(w), w - 0.3 * jax.grad(hyperbola_loss)(w), rtol=1e-14)
    v = jnp.array([0.2, 0.9])
    mv, dense, mat = jax.jit(lambda w, v: (G.jacobian(w).mv(v), jax.jacfwd(G)(w),
                                           G.jacobian(w).as_lineax().as_matrix()))(w, v)
    np.testing.assert_allclose(mv, dense @ v, rtol=1e-12)
    np.testing.assert_allclose(mat, dense, rtol=1e-12)
    h = fd_step(w)
    np.testing.assert_allclose(mv, central_directional(jax.jit(lambda w: G(w)), w, v, h), rtol=1e-8)


def test_hyperbola_bound_from_vmapped_runs(getkey):
    w0 = jax.random.uniform(getkey(), (512, 2), minval=-3.0, maxval=3.0)
    for lr in (0.25, 0.5, 0.8, 1.25):
        ends = gd_endpoints(hyperbola_loss, w0, lr, n_steps=3000, tol=1e-20, throw=False)
        conv = np.asarray(ends.converged)
        div = np.asarray(ends.diverged)
        assert not np.any(conv & div)
        a = np.asarray(ends.params)[conv, 0]
        assert np.all(a**2 + a**-2 <= (2 / lr) * (1 + 1e-9))
        assert np.all(np.asarray(ends.loss)[conv] < 1e-20)
        if lr > 1:
            assert conv.sum() == 0
            assert div.sum() > 0  # overflow counted, not raised
        else:
            assert conv.sum() > 50


def test_bad_input(spd):
    with pytest.raises(ValueError, match="`lr`"):
        gd_stability(quad, jnp.zeros(3), 0.0, spd)
    with pytest.raises(ValueError, match="`lr`"):
        gd_stability(quad, jnp.zeros(3), -0.1, spd)
    with pytest.raises(ValueError, match="`lr`"):
        gd_map(quad, -1.0)
    with pytest.raises(ValueError, match="`lr`"):
        gd_endpoints(hyperbola_loss, jnp.ones((4, 2)), 0.0)
    with pytest.raises(ValueError, match="scalar"):
        gd_stability(lambda th, A: A @ th, jnp.zeros(3), 0.1, spd)
    with pytest.raises(ValueError, match="`data`"):
        gd_stability(lambda th, x, y: jnp.mean((x @ th - y) ** 2), jnp.zeros(3), 0.1,
                     jnp.ones((5, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="`rank_tol`"):
        gd_stability(quad, jnp.zeros(3), 0.1, spd, rank_tol=2.0)
    with pytest.raises(TypeError, match="`loss_fn`"):
        gd_stability(None, jnp.zeros(3), 0.1, spd)
