"""The gradient-check matrix of jaxdyn.curvature (float64, 1e-6 relative unless stated):

- Hessian-vector products against central differences of the gradient (plain and chunked), and
  the derivative of the HVP itself (a third derivative) in forward and reverse mode;
- the Gauss-Newton operator against J^T H_out J with J from central differences of the model;
- eigenvalue derivatives (Hellmann-Feynman: d lambda = v^T dA v) of `top_eigenvalues`,
  `power_iteration` and `sharpness`, forward and reverse, under `jit` and `vmap`, against
  five-point central differences (h = eps^(1/5)) of the same function, solved to tol = 1e-13
  so that the difference quotient is not swamped by the solver's tolerance;
- eigenvectors: documented to carry no derivative (zero), tested.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.curvature import (
    MeanSquaredError,
    SoftmaxCrossEntropy,
    gauss_newton_operator,
    hessian_operator,
    power_iteration,
    sharpness,
    top_eigenvalues,
)

from .helpers import fd_directional, random_like, rel_err

N = 6
X = jnp.asarray(np.random.default_rng(0).normal(size=(N, 3)))
Y = jnp.asarray(np.random.default_rng(1).normal(size=(N, 2)))
P = {"w": jnp.asarray(np.random.default_rng(2).normal(size=(3, 2))), "b": jnp.asarray([0.1, -0.2])}
TOL = 1e-13


def model(p, x):
    return jnp.tanh(x @ p["w"] + p["b"])


def loss(p, x, y):
    return 0.5 * jnp.mean(jnp.sum((model(p, x) - y) ** 2, axis=-1))


def ce_loss(p, x, y):
    logits = model(p, x) * 3.0
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.softmax(y), axis=-1))


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_hvp_vs_finite_differences_of_gradients(getkey, chunk_size):
    H = hessian_operator(loss, P, X, Y, chunk_size=chunk_size)
    v = jax.random.normal(getkey(), (H.size,))
    grad = lambda p: jax.grad(loss)(p, X, Y)  # noqa: E731
    fd = fd_directional(grad, P, H.unravel(v))
    assert rel_err(H.mv(v), H.ravel(fd)) < 1e-6


def test_hvp_derivative_fwd_rev_jit(getkey):
    """The HVP as a function of the parameters (third derivatives), forward and reverse, jitted."""
    v = jax.random.normal(getkey(), (8,))

    def hvp(p):
        return hessian_operator(loss, p, X, Y, chunk_size=4).mv(v)

    check_compiled(hvp, P, key=getkey())


def _jacobian_fd(p):
    """d model(p, X) / d theta by central differences along each unit vector (flat theta)."""
    H = hessian_operator(loss, p, X, Y)
    eye = np.eye(H.size)
    cols = [np.ravel(fd_directional(lambda q: model(q, X), p, H.unravel(jnp.asarray(e)))) for e in eye]
    return np.stack(cols, axis=1)  # (N * q, size)


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
def test_gauss_newton_vs_finite_difference_jacobians(kind):
    J = _jacobian_fd(P)
    if kind == "mse":
        G_ref = J.T @ J / N
        G = gauss_newton_operator(model, P, X, loss=MeanSquaredError())
    else:
        logits = np.asarray(model(P, X))
        Jl = J * 1.0
        blocks = []
        for i in range(N):
            p = np.exp(logits[i] - logits[i].max())
            p /= p.sum()
            blocks.append(np.diag(p) - np.outer(p, p))
        Hout = np.zeros((2 * N, 2 * N))
        for i, b in enumerate(blocks):
            Hout[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = b
        G_ref = Jl.T @ Hout @ Jl / N
        G = gauss_newton_operator(model, P, X, loss=SoftmaxCrossEntropy())
    assert rel_err(G.matrix(), G_ref) < 1e-6
    # at a zero-residual point the mse GGN is the Hessian: a second, independent check
    if kind == "mse":
        Hz = hessian_operator(loss, P, X, model(P, X))
        assert rel_err(Hz.matrix(), G_ref) < 1e-6


def check_compiled(fn, x, *, key, n_dirs=2, rtol=1e-6, h=None, modes=("fwd", "rev")):
    """Derivatives of `fn` at `x` against five-point central differences of the same function,
    all in ONE compiled program: forward mode (`jvp`, vmapped over the directions), reverse mode
    (`vjp`, vmapped over random cotangents), and the stencil points (`fn` vmapped over them).
    So the check covers `jit` and `vmap` of both modes; one compilation per function."""
    h = float(np.finfo(np.float64).eps ** 0.2) if h is None else h
    kv, kw = jax.random.split(key)
    V = jax.vmap(lambda k: random_like(k, x))(jax.random.split(kv, n_dirs))
    W = jax.vmap(lambda k: random_like(k, jax.eval_shape(fn, x)))(jax.random.split(kw, n_dirs))

    @jax.jit
    def run(x, V, W):
        if "fwd" in modes:
            tangents = jax.vmap(lambda v: jax.jvp(fn, (x,), (v,))[1])(V)
        else:
            tangents = None
        _, pullback = jax.vjp(fn, x)
        cotangents = jax.vmap(lambda w: pullback(w)[0])(W)
        steps = jnp.asarray([2.0, 1.0, -1.0, -2.0]) * h
        shifted = jax.vmap(
            lambda v: jax.vmap(lambda s: fn(jax.tree_util.tree_map(lambda a, b: a + s * b, x, v)))(steps)
        )(V)
        fd = jax.tree_util.tree_map(
            lambda y: (-y[:, 0] + 8 * y[:, 1] - 8 * y[:, 2] + y[:, 3]) / (12 * h), shifted
        )
        return tangents, cotangents, fd

    tangents, cotangents, fd = run(x, V, W)
    flat = lambda t, i: np.concatenate([np.ravel(a[i]) for a in jax.tree_util.tree_leaves(t)])  # noqa: E731
    worst = 0.0
    for i in range(n_dirs):
        err_f = rel_err(flat(tangents, i), flat(fd, i)) if tangents is not None else 0.0
        got, want = flat(cotangents, i) @ flat(V, i), flat(W, i) @ flat(fd, i)
        err_r = abs(got - want) / abs(want)
        if tangents is None:
            err_f = 0.0
        assert err_f < rtol, f"forward mode, direction {i}: {err_f:.2e}"
        assert err_r < rtol, f"reverse mode, direction {i}: {got} vs {want} ({err_r:.2e})"
        worst = max(worst, err_f, err_r)
    return worst


def test_sharpness_derivative_params_and_data(getkey):
    """d S / d (params, data): forward and reverse, under jit and vmap."""
    check_compiled(lambda pd: sharpness(loss, pd[0], pd[1], Y, tol=TOL), (P, X), key=getkey())


A0 = jnp.asarray(np.diag([4.0, 2.5, 1.0, -0.5]))
B = jnp.asarray(np.random.default_rng(3).normal(size=(4, 4)))
B = B + B.T


def _eigs(m):
    m = 0.5 * (m + m.T)
    return jnp.concatenate(
        [
            top_eigenvalues(m, 2, tol=TOL).eigenvalues,
            power_iteration(m, tol=0.0, n_steps=300).eigenvalues,
        ]
    )


def test_eigenvalue_derivatives(getkey):
    """The two largest eigenvalues (Lanczos) and the dominant one (power iteration) of a symmetric
    matrix as functions of its entries (`which="smallest"` runs the same code path)."""
    check_compiled(_eigs, A0 + 0.1 * B, key=getkey())


def test_eigenvectors_have_no_derivative():
    """Documented: only the eigenvalues carry a derivative; eigenvectors get zero (stop_gradient)."""
    dv = jax.jit(
        lambda m: jax.jvp(lambda m: top_eigenvalues(0.5 * (m + m.T), 2, tol=TOL).eigenvectors, (m,), (B,))[1]
    )(A0 + 0.1 * B)
    assert float(jnp.max(jnp.abs(dv))) == 0.0
