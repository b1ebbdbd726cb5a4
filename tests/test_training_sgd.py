"""SGD as a random dynamical system: Lyapunov exponents at interpolating minima (known answers)."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.training import (
    GaussNewton,
    find_interpolating_minimum,
    normal_space,
    sgd_escape,
    sgd_lyapunov,
    sgd_stability_diagram,
)

KEY = jax.random.key(0)
RUN = dict(n_steps=1000, n_chains=8, transient_steps=20)


def lsq_loss(theta, ex):
    """Least squares: l_i = (x_i . theta - y_i)^2 / 2, Hessian x_i x_i^T."""
    x, y = ex
    return 0.5 * (jnp.dot(x, theta) - y) ** 2


def lsq_residual(theta, ex):
    x, y = ex
    return jnp.dot(x, theta) - y


def lsq_data(X, theta):
    X = jnp.asarray(X, jnp.float64)
    return X, X @ theta


THETA1 = jnp.array([0.7])


def curvature_data(h):
    """One-parameter examples with curvatures `h` (x_i = sqrt(h_i)), minimum at 0.7."""
    return lsq_data(np.sqrt(np.asarray(h, float))[:, None], THETA1)


def exact_1d(h, lr):
    h = np.asarray(h)
    return np.mean(np.log(np.abs(1 - lr * h)))


@pytest.fixture(scope="module")
def stable_case():
    """h in {1.05, 3.15}, eta = 1, B = 1: GD unstable, SGD stable."""
    return sgd_lyapunov(lsq_loss, THETA1, curvature_data([1.05, 3.15]), lr=jnp.asarray(1.0),
                        batch_size=1, key=KEY, **RUN)


@pytest.fixture(scope="module")
def unstable_case():
    """h in {0, 2}, eta = 1.5: GD stable, SGD unstable."""
    return sgd_lyapunov(lsq_loss, THETA1, curvature_data([0.0, 2.0]), lr=jnp.asarray(1.5),
                        batch_size=1, key=KEY, **RUN)


def test_sgd_stable_where_gd_unstable(stable_case):
    r = stable_case
    exact = (np.log(0.05) + np.log(2.15)) / 2
    assert abs(exact - (-1.1151)) < 1e-4
    assert abs(float(r.exponent) - exact) < 3 * float(r.stderr)
    assert float(r.stderr) < 0.05
    assert float(r.gd_exponent) == pytest.approx(np.log(1.1), rel=1e-10)  # |1 - 2.1|
    assert bool(r.sgd_stable) and not bool(r.gd_stable)
    ms = 0.5 * np.log(np.mean((1 - np.array([1.05, 3.15])) ** 2))
    assert float(r.mean_square_bound) == pytest.approx(ms, rel=1e-10)
    assert r.rank == 1 and bool(r.interpolating)
    assert float(r.lambda_max) == pytest.approx(2.1, rel=1e-10)


def test_sgd_unstable_where_gd_stable(unstable_case):
    r = unstable_case
    exact = np.log(2) / 2
    assert abs(float(r.exponent) - exact) < 3 * float(r.stderr)
    assert float(r.gd_exponent) == pytest.approx(np.log(0.5), rel=1e-10)
    assert bool(r.gd_stable) and not bool(r.sgd_stable)
    assert float(r.exponent) <= float(r.mean_square_bound) + 3 * float(r.stderr)


def test_escape_agrees_with_sign():
    kw = dict(batch_size=1, key=jax.random.key(3), n_steps=200, n_runs=6)
    back = sgd_escape(lsq_loss, THETA1, curvature_data([1.05, 3.15]), lr=jnp.asarray(1.0), **kw)
    away = sgd_escape(lsq_loss, THETA1, curvature_data([0.0, 2.0]), lr=jnp.asarray(1.5), **kw)
    assert np.all(np.asarray(back.outcome) == 1)
    assert np.all(np.asarray(away.outcome) == -1)
    assert float(jnp.mean(back.rate)) < -0.5 and float(jnp.mean(away.rate)) > 0.1


# -- a non-commuting two-dimensional case ------------------------------------------------------------

X2 = np.array([[1.0, 0.2], [0.3, 1.2], [-0.5, 0.9]])
THETA2 = jnp.array([0.3, -0.2])


def _ms_by_enumeration(X, lr, b):
    """(1/2) log rho(E[A (x) A]) over every b-subset (independent of the closed form)."""
    n, p = X.shape
    subsets = list(itertools.combinations(range(n), b))
    E = np.zeros((p * p, p * p))
    for s in subsets:
        A = np.eye(p) - lr * X[list(s)].T @ X[list(s)] / b
        E += np.kron(A, A) / len(subsets)
    return 0.5 * np.log(np.max(np.abs(np.linalg.eigvals(E))))


def _lyap_reference(X, lr, b, n_steps=10000, seed=1):
    """Plain numpy product of materialised 2x2 matrices with Gram-Schmidt renormalisation."""
    rng = np.random.default_rng(seed)
    n, p = X.shape
    v = np.ones(p) / np.sqrt(p)
    total = 0.0
    for _ in range(n_steps):
        s = rng.choice(n, b, replace=False)
        v = v - lr * X[s].T @ (X[s] @ v) / b
        nv = np.linalg.norm(v)
        total += np.log(nv)
        v /= nv
    return total / n_steps


def test_non_commuting_below_mean_square_bound():
    lr, b = 1.1, 2  # batches of 2 out of 3: both terms of the closed-form expectation
    r = sgd_lyapunov(lsq_loss, THETA2, lsq_data(X2, THETA2), lr=jnp.asarray(lr), batch_size=b,
                     key=KEY, k=2, **RUN)
    assert r.rank == 2 and r.exponents.shape == (2,)
    ms = _ms_by_enumeration(X2, lr, b)
    assert float(r.mean_square_bound) == pytest.approx(ms, rel=1e-9, abs=1e-12)
    assert float(r.exponent) < float(r.mean_square_bound)
    ref = _lyap_reference(X2, lr, b)
    assert abs(float(r.exponent) - ref) < 3 * float(r.stderr) + 0.02
    # the exponents of the two-step product sum to E log |det B|
    dets = [np.log(abs(np.linalg.det(np.eye(2) - lr * X2[list(s)].T @ X2[list(s)] / b)))
            for s in itertools.combinations(range(3), b)]
    assert abs(float(jnp.sum(r.exponents)) - np.mean(dets)) < 3 * float(jnp.sum(r.stderrs)) + 0.02


# -- minima on a curve: the normal exponent, not the neutral 0 ---------------------------------------


def curve_loss(w, x):
    """l = x^2 (w1 w2 - 1)^2 / 2: minima on the hyperbola w1 w2 = 1."""
    return 0.5 * x**2 * (w[0] * w[1] - 1) ** 2


def test_curve_of_minima_gives_normal_exponent():
    xs = jnp.sqrt(jnp.array([0.5, 1.5]))
    a = 1.25
    w = jnp.array([a, 1 / a])
    lr = 0.4
    r = sgd_lyapunov(curve_loss, w, xs, lr=jnp.asarray(lr), batch_size=1, key=KEY, **RUN)
    vv = a**2 + 1 / a**2  # |v|^2 with v = (1/a, a)
    exact = exact_1d(np.array([0.5, 1.5]) * vv, lr)
    assert r.rank == 1  # the tangent direction is excluded
    assert abs(float(r.exponent) - exact) < 3 * float(r.stderr)
    assert float(r.exponent) < -0.5  # not the neutral 0
    assert float(r.null_residual) < 1e-10 and float(r.eig_residual) < 1e-10


# -- a small MLP trained to interpolation: Hessian and Gauss-Newton paths agree ----------------------


def mlp(params, x):
    W1, b1, w2, b2 = params
    return jnp.dot(w2, jnp.tanh(W1 @ x + b1)) + b2


def mlp_residual(params, ex):
    x, y = ex
    return mlp(params, x) - y


def mlp_loss(params, ex):
    return 0.5 * mlp_residual(params, ex) ** 2


@pytest.fixture(scope="module")
def mlp_minimum():
    k1, k2, k3 = jax.random.split(jax.random.key(7), 3)
    width, n = 6, 5
    params = (jax.random.normal(k1, (width, 2)), jnp.zeros(width),
              jax.random.normal(k2, (width,)) / np.sqrt(width), jnp.zeros(()))
    x = jax.random.normal(k3, (n, 2))
    y = jnp.sin(2 * x[:, 0]) + x[:, 1] ** 2
    fit = find_interpolating_minimum(mlp_residual, params, (x, y), adam_steps=0,
                                     lm_steps=40)
    return fit, (x, y)


def test_find_interpolating_minimum(mlp_minimum):
    fit, data = mlp_minimum
    assert bool(fit.converged) and float(fit.loss) < 1e-12
    assert fit.adam_losses.shape == (0,) and 0 < int(fit.lm_steps) <= 40
    assert float(fit.lm_losses[-1]) == float(fit.loss)
    resid = jax.vmap(lambda x, y: mlp_residual(fit.params, (x, y)))(*data)
    assert float(jnp.max(jnp.abs(resid))) < 1e-10


def test_gauss_newton_equals_hessian_at_interpolation(mlp_minimum):
    fit, data = mlp_minimum
    sh = normal_space(mlp_loss, fit.params, data)
    sg = normal_space(mlp_loss, fit.params, data, curvature=GaussNewton(mlp_residual))
    assert sh.rank == sg.rank == 5  # p = 25 parameters, n = 5 scalar residuals
    np.testing.assert_allclose(sh.eigenvalues, sg.eigenvalues, rtol=1e-8)
    # the per-example curvatures agree as operators on parameter space: U K_i U^T
    Kh = jnp.einsum("pa,nab,qb->npq", sh.basis, sh.factors, sh.basis)
    Kg = jnp.einsum("pa,nka,nkb,qb->npq", sg.basis, sg.factors, sg.factors, sg.basis)
    np.testing.assert_allclose(Kh, Kg, atol=1e-8 * float(jnp.max(jnp.abs(Kg))))
    assert float(sh.null_residual) < 1e-10 and float(sg.null_residual) < 1e-10
    # through the whole pipeline on the trained model (Gauss-Newton path)
    rg = sgd_lyapunov(mlp_loss, fit.params, data, lr=jnp.asarray(0.3), batch_size=2, key=KEY,
                      normal_space=sg, **RUN)
    assert bool(rg.interpolating) and rg.rank == 5
    assert float(rg.exponent) < float(rg.mean_square_bound)
    from jaxdyn.training import mean_square_bound

    lr = jnp.asarray(0.3)
    np.testing.assert_allclose(mean_square_bound(sh, lr, 2)[0], rg.mean_square_bound, rtol=1e-8)
    # above the dense limit the bound comes from Lanczos on X -> E[B X B] (25 dimensions here)
    lanczos, acc = mean_square_bound(sg, lr, 2, dense_max_dim=4)
    assert float(acc) < 1e-8
    np.testing.assert_allclose(lanczos, rg.mean_square_bound, rtol=1e-8)


# -- transforms ----------------------------------------------------------------------------------


def test_jit_without_retracing_and_diagram_vmap():
    data = curvature_data([1.05, 3.15])
    space = normal_space(lsq_loss, THETA1, data)
    traces = []

    @jax.jit
    def exponent(lr):
        traces.append(1)
        return sgd_lyapunov(lsq_loss, THETA1, data, lr=lr, batch_size=1, key=KEY,
                            normal_space=space, **RUN).exponent

    e1, e2 = exponent(jnp.asarray(1.0)), exponent(jnp.asarray(0.5))
    assert len(traces) == 1
    assert float(e1) != float(e2)
    lrs = jnp.array([0.5, 1.0])
    # the Gauss-Newton path vmaps over batch sizes too (masked batches: the same subsets)
    d = sgd_stability_diagram(lsq_loss, THETA1, data, lrs=lrs, batch_sizes=(1, 2), key=KEY,
                              curvature=GaussNewton(lsq_residual), **RUN)
    assert d.exponent.shape == (2, 2)
    # the vmapped cell is the same computation as the single call (same key)
    np.testing.assert_allclose(d.exponent[0], [float(e2), float(e1)], rtol=1e-10)
    # B = n is full-batch GD: the exponent is mu exactly (1-D), and the boundary is 2/lambda_max
    np.testing.assert_allclose(d.exponent[1], d.gd_exponent, rtol=1e-10)
    assert float(d.gd_boundary) == pytest.approx(2 / 2.1)
    np.testing.assert_array_equal(d.disagree[0], [False, True])  # GD unstable, SGD stable at 1.0


# -- bad input -----------------------------------------------------------------------------------


def test_bad_input():
    data = curvature_data([1.05, 3.15])
    kw = dict(key=KEY, **RUN)
    with pytest.raises(ValueError, match="batch_size"):
        sgd_lyapunov(lsq_loss, THETA1, data, lr=1.0, batch_size=3, **kw)
    with pytest.raises(ValueError, match="lr"):
        sgd_lyapunov(lsq_loss, THETA1, data, lr=0.0, batch_size=1, **kw)
    with pytest.raises(ValueError, match="lr"):
        sgd_lyapunov(lsq_loss, THETA1, data, lr=-1.0, batch_size=1, **kw)
    with pytest.raises(ValueError, match="leading axis"):
        sgd_lyapunov(lsq_loss, THETA1, (data[0], data[1][:1]), lr=1.0, batch_size=1, **kw)
    with pytest.raises(ValueError, match="not an interpolating minimum"):
        sgd_lyapunov(lsq_loss, THETA1 + 0.1, data, lr=1.0, batch_size=1, **kw)
    with pytest.raises(ValueError, match="GaussNewton"):
        sgd_lyapunov(lsq_loss, THETA1, data, lr=1.0, batch_size=1,
                     curvature=GaussNewton(lambda t, ex: 2 * lsq_residual(t, ex)), **kw)
    with pytest.raises(ValueError, match="`k`"):
        sgd_lyapunov(lsq_loss, THETA1, data, lr=1.0, batch_size=1, k=2, **kw)
    with pytest.raises(TypeError, match="batch_size"):
        sgd_lyapunov(lsq_loss, THETA1, data, lr=1.0, batch_size=1.0, **kw)


def test_not_interpolating_flagged():
    data = curvature_data([1.05, 3.15])
    r = sgd_lyapunov(lsq_loss, THETA1 + 0.1, data, lr=jnp.asarray(1.0), batch_size=1,
                     throw=False, key=KEY, **RUN)
    assert not bool(r.interpolating)
    assert float(r.check.max_example_loss) > 1e-3
    assert "tolerance" in r.summary()


def test_result_is_a_module(stable_case):
    assert isinstance(stable_case, eqx.Module)
    assert stable_case.lyapunov.history.shape[-1] == 1



# -- B = n is full-batch GD: the exponent is mu exactly (issue 13) ------------------------------------


@pytest.fixture(scope="module")
def digits_minimum():
    """The `sgd-stability` experiment's construction (tanh MLP on standardised digits, float64,
    Levenberg-Marquardt to interpolation, Gauss-Newton normal space) at a test size: n = 12 digits,
    one hidden layer of 8 (p = 529). The experiment's own model (n = 64, 64-72-72-1) is measured in
    the issue note."""
    from jaxdyn.experiments.sgd_stability import digits_problem

    model, data, residual, loss = digits_problem(12, 8, 1, 0)
    fit = find_interpolating_minimum(residual, model, data, adam_steps=0, lm_steps=40)
    space = normal_space(loss, fit.params, data, curvature=GaussNewton(residual))
    return fit, data, loss, space


def test_full_batch_exponent_equals_gd_mu(digits_minimum):
    fit, data, loss, space = digits_minimum
    n = space.n_examples
    assert bool(fit.converged) and space.rank == n
    h = np.asarray(space.eigenvalues)
    boundary = 2 / h[0]
    # small steps: mu = log(1 - eta h_min) is a tiny negative number set by clustered small
    # curvatures, where a finite product from a random start was biased low several-fold
    lrs = jnp.asarray(boundary * np.array([0.03, 0.3, 1.2]))

    kw = dict(key=KEY, n_steps=200, n_chains=2, transient_steps=0, normal_space=space,
              mean_square=False)
    runs = [sgd_lyapunov(loss, fit.params, data, lr=lr, batch_size=n, **kw) for lr in lrs]  # one compile
    exp, se, mu, det, code = (np.array([f(r) for r in runs]) for f in (
        lambda r: r.exponent, lambda r: r.stderr, lambda r: r.gd_exponent, lambda r: r.deterministic,
        lambda r: r.result._value))
    half = sgd_lyapunov(loss, fit.params, data, lr=lrs[0], batch_size=n // 2, **kw)
    np.testing.assert_allclose(mu, np.log(np.max(np.abs(1 - np.asarray(lrs)[:, None] * h), axis=1)),
                               rtol=1e-12)
    assert np.all(np.abs(exp - mu) <= se)  # equal within the reported error ...
    assert np.all(se < 0.1 * np.abs(mu))  # ... which is below 10% of |mu|
    assert np.all(det) and np.all(code == 0)
    # B = n/2 is a random product (sampled); at the smallest step it is GD to O(eta^2) (a long run,
    # 4 x 10^5 steps, gives lambda within 1e-4 |mu| of mu): the raw 200-step estimate is more than
    # twice mu, the GD control variate brings it within 5%
    assert not bool(half.deterministic)
    raw = float(half.lyapunov.exponents[0])
    assert abs(raw - mu[0]) > abs(mu[0]) and abs(float(half.exponent) - mu[0]) < 0.05 * abs(mu[0])


def test_identical_examples_are_deterministic_for_any_batch():
    """All mini-batch matrices coincide (every example has the same curvature): exact for B < n."""
    r = sgd_lyapunov(lsq_loss, THETA1, curvature_data([2.0, 2.0]), lr=jnp.asarray(0.3),
                     batch_size=1, key=KEY, **RUN)  # the shapes of `stable_case`: no new compile
    assert bool(r.deterministic) and "exact" in r.summary()
    assert float(r.exponent) == pytest.approx(np.log(0.4), rel=1e-12)
    assert float(r.stderr) < 1e-10
