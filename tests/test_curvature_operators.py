"""Hessian and Gauss-Newton operators (jaxdyn.curvature): HVPs against jax.hessian, the GGN
against (1/n) J^T J, chunking, a NeuralODE loss, bad input."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.curvature as cv
from jaxdyn.models import MLPField, NeuralODE, random_affine

N_DATA = 10


@pytest.fixture(scope="module")
def mlp_problem():
    key = jax.random.key(0)
    k1, k2, k3 = jax.random.split(key, 3)
    model = eqx.filter_jit(lambda k: eqx.nn.MLP(3, 2, 4, 1, activation=jnp.tanh, key=k))(k1)
    x = jax.random.normal(k2, (N_DATA, 3))
    y = jax.random.normal(k3, (N_DATA, 2))

    def model_fn(m, xs, ys=None):
        return jax.vmap(m)(xs)

    def loss(m, xs, ys):
        return 0.5 * jnp.mean(jnp.sum((model_fn(m, xs) - ys) ** 2, axis=-1))

    return model, x, y, model_fn, loss


def _flat_fn(fn, model):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return flat, lambda th: fn(eqx.combine(unravel(th), static))


def test_hvp_matches_jax_hessian_and_chunks(mlp_problem):
    model, x, y, _, loss = mlp_problem
    H = cv.hessian_operator(loss, model, x, y)
    Hc = cv.hessian_operator(loss, model, x, y, chunk_size=4)  # chunks 4, 4 and a remainder 2
    flat, f = _flat_fn(lambda m: loss(m, x, y), model)
    assert H.size == flat.size == 26
    ref = jax.hessian(f)(flat)
    np.testing.assert_allclose(H.matrix(), ref, atol=1e-12)
    # the chunked dataset gives the eigenvalues of the one-batch Hessian (full Krylov space)
    e2 = cv.top_eigenvalues(Hc, 3, tol=0.0, n_steps=H.size)
    np.testing.assert_allclose(e2.eigenvalues, np.linalg.eigvalsh(ref)[::-1][:3], atol=1e-10,
                               rtol=0)


def test_ggn_is_jtj_over_n(mlp_problem):
    model, x, y, model_fn, _ = mlp_problem
    G = cv.gauss_newton_operator(model_fn, model, x, y, loss=cv.MeanSquaredError(), chunk_size=3)
    Gce = cv.gauss_newton_operator(model_fn, model, x, y, loss=cv.SoftmaxCrossEntropy())
    flat, f = _flat_fn(lambda m: model_fn(m, x), model)
    J = jax.jacfwd(f)(flat)  # (n, q, p)
    p = J.shape[-1]
    Jf = J.reshape(-1, p)
    dense, dense_ce = eqx.filter_jit(lambda a, b: (a.matrix(), b.matrix()))(G, Gce)
    # loss = (1/n) sum_i 0.5 ||f(x_i) - y_i||^2  =>  GGN = (1/n) J^T J
    np.testing.assert_allclose(dense, Jf.T @ Jf / N_DATA, atol=1e-12)
    probs = jax.nn.softmax(f(flat), axis=-1)
    Hout = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(probs)
    ref_ce = jnp.einsum("iap,iab,ibr->pr", J, Hout, J) / N_DATA
    np.testing.assert_allclose(dense_ce, ref_ce, atol=1e-12)
    assert jnp.linalg.eigvalsh(dense).min() > -1e-12
    lxop = G.as_lineax()
    assert lxop.in_size() == p and "positive_semidefinite" in str(lxop.tags)


def test_neural_ode_hvp():
    def build(key):
        k1, k2 = jax.random.split(key)
        return NeuralODE(MLPField(2, 4, 1, key=k1), readout=random_affine(2, 1, key=k2),
                         solver=diffrax.Heun(), stepsize_controller=diffrax.ConstantStepSize(),
                         dt0=0.5)

    model = eqx.filter_jit(build)(jax.random.key(1))
    x = jnp.stack([jnp.linspace(-1, 1, 4), jnp.linspace(0.5, -0.5, 4)], axis=1)
    y = jnp.sin(3 * x[:, :1])

    def loss(m, xs, ys):
        return 0.5 * jnp.mean((m.batch(xs) - ys) ** 2)

    # the operator switches the model to DirectAdjoint (jaxdyn's second-order adjoint policy)
    H = cv.hessian_operator(loss, model, x, y)
    rng = np.random.default_rng(2)
    u, v = (jnp.asarray(rng.normal(size=H.size)) for _ in range(2))
    Hu, Hv = H.mv(u), H.mv(v)
    np.testing.assert_allclose(u @ Hv, v @ Hu, rtol=1e-10)  # symmetric
    # v^T H v against a central second difference of the loss
    h = np.finfo(np.float64).eps ** 0.25
    forward = eqx.filter_jit(loss)  # plain forward solves, with the training adjoint

    def shifted(s):
        moved = eqx.combine(H.unravel(H.theta + s * v), H.params_static)
        moved = eqx.tree_at(lambda m: m.adjoint, moved, model.adjoint)
        return forward(moved, x, y)

    second = (shifted(h) - 2 * shifted(0.0) + shifted(-h)) / h**2
    np.testing.assert_allclose(v @ Hv, second, rtol=1e-5)


def test_jit_without_retracing_and_vmap():
    def loss(w, x, y):
        return 0.5 * jnp.mean((jnp.tanh(x @ w) - y) ** 2)

    x = jnp.linspace(-1, 1, 12).reshape(6, 2)
    y = jnp.arange(6.0) / 6

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def hv(w, v):
        return cv.hessian_operator(loss, w, x, y, chunk_size=4).mv(v)

    w1, w2 = jnp.array([0.3, -0.2]), jnp.array([1.0, 0.5])
    e = jnp.eye(2)
    hess = jax.jit(jax.hessian(loss))
    for w in (w1, w2):
        ref = hess(w, x, y)
        np.testing.assert_allclose(jnp.stack([hv(w, e[0]), hv(w, e[1])]), ref, atol=1e-13)
    # vmap over parameters
    ws = jnp.stack([w1, w2])
    out = jax.vmap(lambda w: cv.hessian_operator(loss, w, x, y, chunk_size=4).mv(e[0]))(ws)
    np.testing.assert_allclose(out[1], hess(w2, x, y)[0], atol=1e-13)


def test_operator_bad_input(mlp_problem):
    model, x, y, model_fn, loss = mlp_problem
    with pytest.raises(ValueError, match="`loss_fn` must return a scalar"):
        cv.hessian_operator(lambda m, a, b: model_fn(m, a) - b, model, x, y)
    with pytest.raises(ValueError, match="`data`"):
        cv.hessian_operator(loss, model, x, y[:-1])
    with pytest.raises(TypeError, match="`loss_fn`"):
        cv.hessian_operator(3.0, model, x, y)
    with pytest.raises(ValueError, match="`params`"):
        cv.hessian_operator(lambda p, a: jnp.mean(a), {"n": 3}, x)
    with pytest.raises(ValueError, match="`loss`"):
        cv.gauss_newton_operator(model_fn, model, x, loss="hinge")
    with pytest.raises(ValueError, match="`model_fn`"):
        cv.gauss_newton_operator(lambda m, a: jnp.sum(model_fn(m, a)), model, x)
    with pytest.raises(ValueError, match="`data`"):
        cv.gauss_newton_operator(model_fn, model)
    H = cv.hessian_operator(loss, model, x, y)
    with pytest.raises(ValueError, match="`v`"):
        H.unravel(jnp.ones(3))
