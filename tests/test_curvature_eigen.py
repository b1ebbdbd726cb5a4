"""Known answers for Lanczos, power iteration and sharpness (jaxdyn.curvature)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.curvature as cv

N = 30


@pytest.fixture(scope="module")
def quadratic():
    """theta^T A theta / 2 with a prescribed spectrum, negative eigenvalues included."""
    rng = np.random.default_rng(0)
    lam = np.concatenate([[-4.0, -1.5], np.linspace(0.1, 6.0, N - 5), [8.0, 9.5, 12.0]])
    U, _ = np.linalg.qr(rng.normal(size=(N, N)))
    A = (U * lam) @ U.T
    A = 0.5 * (A + A.T)
    Aj = jnp.asarray(A)
    H = cv.hessian_operator(lambda p: 0.5 * p @ Aj @ p, jnp.zeros(N))
    return A, np.sort(lam), H


def test_quadratic_top_k(quadratic):
    A, lam, H = quadratic
    res = cv.top_eigenvalues(H, 3)
    assert bool(res.converged)
    np.testing.assert_allclose(res.eigenvalues, lam[::-1][:3], atol=1e-8, rtol=0)
    # descending, unit eigenvectors, residuals are the true ||A y - theta y||
    assert np.all(np.diff(np.asarray(res.eigenvalues)) < 0)
    Y = np.asarray(res.eigenvectors)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-12)
    true_res = np.linalg.norm(Y @ A - np.asarray(res.eigenvalues)[:, None] * Y, axis=1)
    np.testing.assert_allclose(res.residuals, true_res, atol=1e-9)
    assert int(res.num_hvp) == int(res.iterations) <= N
    # the power-iteration-style rule (successive Ritz values) stops no later, less accurately
    chg = cv.top_eigenvalues(H, 3, criterion=cv.ChangeCriterion(), tol=1e-10)
    np.testing.assert_allclose(chg.eigenvalues, lam[::-1][:3], atol=1e-6, rtol=0)
    assert bool(chg.converged) and int(chg.num_hvp) <= N


def test_quadratic_smallest_and_power(quadratic):
    A, lam, H = quadratic
    res = cv.top_eigenvalues(H, 3, which="smallest", key=jax.random.key(3))
    np.testing.assert_allclose(res.eigenvalues, lam[:3][::-1], atol=1e-8, rtol=0)
    assert res.eigenvalues[-1] < 0  # negative curvature found
    # power iteration converges to the largest magnitude, 12 here, slowly (ratio 9.5/12)
    pw = cv.power_iteration(H, tol=1e-12, n_steps=500)
    np.testing.assert_allclose(pw.eigenvalues[0], 12.0, rtol=1e-9)
    assert int(pw.num_hvp) > int(cv.top_eigenvalues(H, 3).num_hvp)


def test_eigenvalue_bound_criterion(quadratic):
    # the residual-squared-over-gap rule certifies tol * |theta| from a larger residual than
    # the residual rule needs: fewer steps, and the true error is within the bound and tol
    A, lam, H = quadratic
    tol = float(np.sqrt(np.finfo(np.float64).eps))  # the default tol (shares compilations)
    for k, which, exact in ((3, "largest", lam[::-1][:3]), (1, "smallest", lam[:1])):
        bnd = cv.top_eigenvalues(H, k, which=which, criterion=cv.EigenvalueBoundCriterion())
        assert bool(bnd.converged) and int(bnd.num_hvp) <= N
        err = np.abs(np.asarray(bnd.eigenvalues) - exact)
        assert np.all(err <= np.asarray(bnd.error_bounds))
        assert np.all(err <= tol * np.abs(exact))
        assert np.all(np.asarray(bnd.error_bounds) <= tol * np.abs(np.asarray(bnd.eigenvalues)))
        # the bound is not vacuous: residuals that large would not pass the residual rule
        assert np.any(np.asarray(bnd.residuals) > tol * np.abs(exact))
    ref = cv.top_eigenvalues(H, 3)  # the residual rule (compiled in test_quadratic_top_k)
    assert int(cv.top_eigenvalues(H, 3, criterion=cv.EigenvalueBoundCriterion()).num_hvp) < int(ref.num_hvp)


def test_repeated_eigenvalues_and_default_start():
    # exactly repeated eigenvalues: the Krylov space becomes invariant; the restart finds copies
    D = jnp.diag(jnp.array([5.0, 5.0, 5.0, 1.0, 0.5, 0.2, 0.1, 0.0]))
    res = cv.top_eigenvalues(D, 3)
    np.testing.assert_allclose(res.eigenvalues, [5.0, 5.0, 5.0], atol=1e-12)
    # key=None is deterministic; a key changes the start but not the answer
    again = cv.top_eigenvalues(D, 3)
    np.testing.assert_array_equal(res.eigenvectors, again.eigenvectors)
    keyed = cv.top_eigenvalues(D, 3, key=jax.random.key(9))
    np.testing.assert_allclose(keyed.eigenvalues, [5.0, 5.0, 5.0], atol=1e-12)
    assert not np.allclose(keyed.eigenvectors, res.eigenvectors)


def test_least_squares_against_eigvalsh():
    rng = np.random.default_rng(1)
    n, d = 57, 12
    X = rng.normal(size=(n, d)) * np.linspace(0.2, 3.0, d)
    y = rng.normal(size=n)

    def loss(params, x, t):
        return 0.5 * jnp.mean((x @ params["w"] + params["b"] - t) ** 2)

    params = {"w": jnp.zeros(d), "b": jnp.zeros(())}
    Xa = np.hstack([X, np.ones((n, 1))])
    ref = np.linalg.eigvalsh(Xa.T @ Xa / n)
    H = cv.hessian_operator(loss, params, X, y)
    assert H.size == d + 1
    # a full Krylov space (tol=0, n_steps = size), through the lineax operator
    res = cv.top_eigenvalues(H.as_lineax(), 4, n_steps=d + 1, tol=0.0)
    np.testing.assert_allclose(res.eigenvalues, ref[::-1][:4], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.ritz_values), ref, rtol=1e-9)  # smallest too
    # the eigenvector unravels to the parameter PyTree
    tree = H.unravel(res.eigenvectors[0])
    assert tree["w"].shape == (d,) and tree["b"].shape == ()
    np.testing.assert_allclose(H.ravel(tree), res.eigenvectors[0])


def _rosenbrock(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def test_rosenbrock_and_transforms():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def eig2(q):
        return cv.top_eigenvalues(cv.hessian_operator(_rosenbrock, q), 2).eigenvalues

    np.testing.assert_allclose(eig2(jnp.array([1.0, 1.0])), [1001.6006, 0.39936], rtol=5e-6)
    np.testing.assert_allclose(eig2(jnp.array([1.0, 1.0])),
                               np.linalg.eigvalsh([[802.0, -400.0], [-400.0, 200.0]])[::-1],
                               rtol=1e-12)

    def exact(q):
        x, y = float(q[0]), float(q[1])
        Hm = np.array([[2 - 400 * (y - x * x) + 800 * x * x, -400 * x], [-400 * x, 200.0]])
        return np.linalg.eigvalsh(Hm)[::-1]

    # jit without retracing: new values, same shapes (assert_max_traces above)
    np.testing.assert_allclose(eig2(jnp.array([0.5, -0.2])), exact([0.5, -0.2]), rtol=1e-10)
    # vmap over parameters, through sharpness
    qs = jnp.array([[1.0, 1.0], [0.5, -0.2], [-1.0, 2.0]])
    vs = eqx.filter_jit(jax.vmap(lambda q: cv.sharpness(_rosenbrock, q)))(qs)
    np.testing.assert_allclose(vs, [exact(q)[0] for q in np.asarray(qs)], rtol=1e-10)


def test_bad_input(quadratic):
    _, _, H = quadratic
    with pytest.raises(ValueError, match="`k`"):
        cv.top_eigenvalues(H, N + 1)
    with pytest.raises(ValueError, match="`which`"):
        cv.top_eigenvalues(H, 1, which="middle")
    with pytest.raises(ValueError, match="`n_steps`"):
        cv.top_eigenvalues(H, 3, n_steps=2)
    with pytest.raises(ValueError, match="`criterion`"):
        cv.top_eigenvalues(H, 1, criterion="gradient")
    with pytest.raises(ValueError, match="`tol`"):
        cv.top_eigenvalues(H, 1, tol=-1.0)
    with pytest.raises(TypeError, match="`operator`"):
        cv.top_eigenvalues("not an operator", 1)
    with pytest.raises(ValueError, match="`operator`"):
        cv.top_eigenvalues(jnp.ones((3, 4)), 1)
    with pytest.raises(ValueError, match="`loss_fn`"):
        cv.hessian_operator(lambda p, x: p * x, jnp.ones(3), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="`data`"):
        cv.hessian_operator(lambda p, x, y: jnp.mean(x @ p - y), jnp.ones(3), jnp.ones((5, 3)),
                            jnp.ones(4))
    with pytest.raises(ValueError, match="`chunk_size`"):
        cv.hessian_operator(lambda p, x: jnp.mean(x @ p), jnp.ones(3), jnp.ones((5, 3)),
                            chunk_size=0)
