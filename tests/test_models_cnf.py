"""CNF: the known answers of a linear field, Hutchinson's trace, jit/vmap/grad and a moons run.

Main lane: one compiled, vmapped `solve` of a linear CNF (the exact log-volume change, the
closed-form Gaussian density, the latents, jit once) and one vmapped Hutchinson solve over many
keys of the same linear field (unbiased within 3 standard errors of the known trace). Everything
else (a nonlinear field, t1 < t0, push/inverse/sample, gradients against finite differences, a
training run) is in the slow lane (tests/conftest.py SLOW)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from scipy.stats import multivariate_normal

from jaxdyn.models import CNF, CNFSolution, LinearField, MLPField, cnf_nll, fit, train_cnf

from .helpers import fd_step

TIGHT = diffrax.PIDController(rtol=1e-12, atol=1e-12)
A = np.array([[-0.3, 0.5], [-0.2, 0.1]])
T = 1.5
XS = np.array([[0.1, 0.2], [1.0, -2.0], [0.0, 0.0], [-0.7, 0.4], [2.0, 1.5]])


def _gaussian_logpdf(xs, t0, t1):
    """log N(x; 0, M M^T) with M = exp(A (t1 - t0)): N(0, I) pushed by the linear flow."""
    m = sla.expm(A * (t1 - t0))
    return multivariate_normal.logpdf(xs, np.zeros(2), m @ m.T)


@pytest.fixture(scope="module")
def linear():
    return CNF(LinearField(A), t1=T, stepsize_controller=TIGHT, max_steps=1000)


@pytest.fixture(scope="module")
def solve_batch():
    traces = []

    @eqx.filter_jit
    def run(model, xs):
        traces.append(1)
        return jax.vmap(lambda x: model.solve(x, throw=False))(xs)

    return run, traces


def test_linear_field_known_answers_jit_once_and_vmap(linear, solve_batch):
    run, traces = solve_batch
    sol = run(linear, XS)
    assert isinstance(sol, CNFSolution) and bool(np.all(sol.successful))
    # the log-volume change int_0^T tr(A) dt = tr(A) T (log p changes by -tr(A) T), exactly
    np.testing.assert_allclose(sol.log_det, np.trace(A) * T, rtol=0, atol=1e-10)
    # N(0, I) pushed by exp(A T) is N(0, e^{AT} e^{A^T T})
    np.testing.assert_allclose(sol.log_prob, _gaussian_logpdf(XS, 0.0, T), rtol=0, atol=1e-8)
    np.testing.assert_allclose(sol.z, XS @ sla.expm(-A * T).T, rtol=0, atol=1e-9)
    # a second call with other points and another matrix of the same shape: no retracing
    other = eqx.tree_at(lambda m: m.field.matrix, linear, 0.5 * A)
    sol2 = run(other, XS[::-1] + 0.25)
    m = sla.expm(0.5 * A * T)
    ref = multivariate_normal.logpdf(XS[::-1] + 0.25, np.zeros(2), m @ m.T)
    np.testing.assert_allclose(sol2.log_prob, ref, rtol=0, atol=1e-8)
    assert len(traces) == 1


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise):
    """eps^T A eps with eps fixed along the solve: mean tr(A) T within 3 standard errors over
    many keys (vmapped), and the same key gives the same estimate."""
    model = CNF(LinearField(A), t1=T, trace="hutchinson", noise=noise,
                stepsize_controller=diffrax.ConstantStepSize(), dt0=0.5)
    keys = jax.random.split(jax.random.key(7), 4000)
    est = eqx.filter_jit(lambda m, k: jax.vmap(lambda kk: m.solve(XS[1], key=kk, throw=False).log_det)(k))(
        model, keys)
    est = np.asarray(est)
    stderr = est.std(ddof=1) / np.sqrt(est.size)
    assert stderr > 1e-3  # a genuine estimator (off-diagonal A: nonzero variance)
    assert abs(est.mean() - float(np.trace(A)) * T) < 3 * stderr
    if noise == "rademacher":  # eps_i^2 = 1: the error is the off-diagonal part only
        assert np.all(np.isclose(np.abs(est - float(np.trace(A)) * T), (0.5 - 0.2) * T))


# ------------------------------------------------------------------- slow lane ------------------
def _mlp_cnf(**kw):
    field = MLPField(2, 8, 1, time_dependent=True, key=jax.random.key(0), scale=1.5)
    kw.setdefault("stepsize_controller", diffrax.PIDController(rtol=1e-10, atol=1e-10))
    return CNF(field, **kw)


def test_hutchinson_unbiased_on_a_nonlinear_field():
    """The Hutchinson estimate of int tr Df along the (noise-independent) path of an MLP field is
    unbiased: mean within 3 standard errors of the exact trace's, for both noises."""
    exact = float(_mlp_cnf().solve(XS[1]).log_det)
    for noise in ("rademacher", "gaussian"):
        model = _mlp_cnf(trace="hutchinson", noise=noise)
        keys = jax.random.split(jax.random.key(3), 3000)
        est = np.asarray(jax.vmap(lambda k, m=model: m.solve(XS[1], key=k, throw=False).log_det)(keys))
        stderr = est.std(ddof=1) / np.sqrt(est.size)
        assert stderr > 1e-4
        assert abs(est.mean() - exact) < 3 * stderr, (noise, est.mean(), exact, stderr)


def test_backwards_time_push_inverse_sample_and_batch(linear):
    """t1 < t0 (a probability-flow ODE's convention), push/inverse/transform round trips, the
    shared-step batch against the vmap, and sample's law (the covariance of the samples)."""
    back = CNF(LinearField(A), t0=T, t1=0.0, stepsize_controller=TIGHT, max_steps=1000)
    lp = jax.vmap(back.log_prob)(XS)
    np.testing.assert_allclose(lp, _gaussian_logpdf(XS, T, 0.0), atol=1e-8)
    z = jnp.array([0.3, -0.7])
    x, delta = linear.push(z)
    np.testing.assert_allclose(delta, -np.trace(A) * T, atol=1e-12)
    np.testing.assert_allclose(x, sla.expm(A * T) @ z, atol=1e-10)
    np.testing.assert_allclose(linear.transform(z), x, atol=1e-10)
    np.testing.assert_allclose(linear.inverse(x), z, atol=1e-10)
    np.testing.assert_allclose(linear.log_prob(x), linear.base.log_prob(z) + delta, atol=1e-10)
    np.testing.assert_allclose(linear.batch_log_prob(XS), _gaussian_logpdf(XS, 0.0, T), atol=1e-8)
    samples = linear.sample(jax.random.key(0), 20000)
    m = sla.expm(A * T)
    np.testing.assert_allclose(np.cov(np.asarray(samples).T), m @ m.T, atol=0.05)
    sol = linear.solve(XS[1])
    assert "log p(x)" in sol.summary() and "successful" in sol.summary()


def test_failure_codes_and_throw():
    """A field that blows up in finite time (z' = z^2 from the data side): throw=False gives NaN
    and a failure code, throw=True raises."""
    blow = CNF(lambda t, z, args: z**2, size=1, max_steps=64)
    sol = blow.solve(jnp.array([-2.0]), throw=False)
    assert not bool(sol.successful) and np.isnan(float(sol.log_prob))
    assert np.isnan(float(blow.log_prob(jnp.array([-2.0]), throw=False)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="NeuralODE"):
        blow.log_prob(jnp.array([-2.0]))


def test_grad_of_log_likelihood_matches_central_differences():
    """d log p(x) / d theta along a random direction of the MLP's weights, against central
    differences of the same solve (tight tolerance), for one point and for cnf_nll's batch."""
    model = _mlp_cnf()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    key = jax.random.key(5)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    direction = jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)])
    for loss in (lambda m: m.log_prob(XS[1]), lambda m: cnf_nll(m, XS[:3])):
        f = lambda p, loss=loss: loss(eqx.combine(p, static))
        g = jax.grad(f)(params)
        analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                      jax.tree_util.tree_leaves(direction), strict=True))
        h = fd_step(1.0) * 10
        shift = lambda s: jax.tree_util.tree_map(lambda p, v, s=s: p + s * v, params, direction)
        numeric = (f(shift(h)) - f(shift(-h))) / (2 * h)
        np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)


def test_moons_training_lowers_the_nll():
    """train_cnf (Hutchinson, fresh noise each step) and fit (exact trace, cnf_nll) on
    make_moons: the exact NLL of the data drops by more than 0.4 nats in 150 + 60 steps."""
    from sklearn.datasets import make_moons

    x = make_moons(256, noise=0.05, random_state=0)[0]
    xs = jnp.asarray((x - x.mean(0)) / x.std(0))
    ctrl = diffrax.PIDController(rtol=1e-5, atol=1e-5)
    field = MLPField(2, 32, 2, time_dependent=True, key=jax.random.key(0))
    model = CNF(field, trace="hutchinson", stepsize_controller=ctrl)
    exact = lambda m: float(cnf_nll(CNF(m.field, stepsize_controller=ctrl), xs))
    before = exact(model)
    out = train_cnf(model, xs, key=jax.random.key(1), n_steps=150, batch_size=128, lr=1e-2, progress=False)
    after = exact(out.model)
    assert out.successful and after < before - 0.4, (before, after)
    tuned = fit(CNF(out.model.field, stepsize_controller=ctrl), xs, jnp.zeros(len(xs)), loss_fn=cnf_nll,
                n_steps=60, lr=5e-3, progress=False)
    assert tuned.successful and exact(tuned.model) < after, (after, exact(tuned.model))
