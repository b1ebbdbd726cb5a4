"""Gradient-check matrix of jaxdyn.lyapunov (issue #13): derivatives of finite-time exponents
against central differences of the same finite-time computation (float64, five-point stencil,
h = eps^(1/5) ~ 7e-4 along random directions: truncation O(h^4) ~ 3e-13 relative, rounding
eps / h ~ 3e-13), forward and reverse mode, under jit and vmap. With a fixed number of steps (and
a fixed key for random products) an exponent is a smooth function of the parameters away from
equal exponents; counts and result codes are integers and `jax.grad` through them raises."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.lyapunov import (
    dde_spectrum,
    flow_spectrum,
    ftle_field,
    kaplan_yorke_dimension,
    map_spectrum,
    network_spectrum,
    product_spectrum,
    sweep,
)
from tests.helpers import fd_directional, random_like, rel_err, tree_dot


def check_gradient(fn, x, *, key, rtol=1e-6, modes=("rev", "fwd"), h=None, n_dirs=1):
    """As `tests.helpers.check_gradient` (jvp and <grad <w, fn>, v> against the five-point central
    difference along random directions), compiled as two programs instead of three: the
    difference quotients use the primal output of the compiled jvp, so `fn` itself is never
    compiled alone (XLA compilation dominates these tests' time)."""
    h = float(np.finfo(np.float64).eps ** 0.2) if h is None else h
    jvp = jax.jit(lambda x, v: jax.jvp(fn, (x,), (v,)))
    grad = jax.jit(jax.grad(lambda x, w: tree_dot(w, fn(x))))
    out = jax.eval_shape(fn, x)
    shift = lambda x, v, s: jax.tree_util.tree_map(lambda a, b: a + s * b, x, v)
    flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(t)])
    for _ in range(n_dirs):
        kv, kw, key = jax.random.split(key, 3)
        v, w = random_like(kv, x), random_like(kw, out)
        at = lambda s, v=v: flat(jvp(shift(x, v, s), v)[0])
        fd = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
        if "fwd" in modes:
            err = rel_err(flat(jvp(x, v)[1]), fd)
            assert err < rtol, f"forward mode: relative error {err:.3e} >= {rtol}"
        if "rev" in modes:
            got, want = float(tree_dot(grad(x, w), v)), float(np.dot(flat(w), fd))
            err = abs(got - want) / max(abs(want), 1e-300)
            assert err < rtol, f"reverse mode: {got} vs FD {want} ({err:.3e})"
    return jvp, grad


def lorenz(t, y, p):
    rho, sigma = p[0], p[1]
    return jnp.array([sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]])


def henon(x, p):
    return jnp.array([1.0 - p[0] * x[0] ** 2 + x[1], p[1] * x[0]])


Y0 = jnp.array([1.0, 2.0, 20.0])


def duffing(t, y, p):
    return jnp.array([y[1], -p[0] * y[0] - p[1] * y[1] - y[0] ** 3 + 0.3 * jnp.cos(t)])


def flow_exps(py):
    """Both finite-time exponents of a forced Duffing oscillator over T = 2 (40 RK4 steps, QR
    every step), as a function of (args, y0). (A small program: compilation dominates.)"""
    p, y0 = py
    return flow_spectrum(duffing, y0, args=p, dt=0.05, n_steps=40, progress=False).exponents


def test_flow_spectrum_wrt_args_and_y0(getkey):
    check_gradient(flow_exps, (jnp.array([-1.0, 0.25]), jnp.array([0.5, -0.2])), key=getkey(),
                   n_dirs=2)


def test_flow_spectrum_diffrax_forward_only(getkey):
    """With a diffrax solver the steps use diffrax.ForwardMode: forward mode matches central
    differences; reverse mode raises (documented in flow_spectrum)."""

    def top(p):
        return flow_spectrum(lorenz, Y0, args=p, dt=0.01, n_steps=20, k=1,
                             solver=diffrax.Heun(), progress=False).exponents

    check_gradient(top, jnp.array([28.0, 10.0]), key=getkey(), modes=("fwd",))
    with pytest.raises(Exception, match="(?i)reverse|forward|transpose|jvp"):
        jax.eval_shape(jax.grad(lambda p: top(p)[0]), jnp.array([28.0, 10.0]))


def map_exps(p):
    """Finite-time spectrum of the Henon map over 12 steps (derivatives grow like
    e^(0.42 n): a long chaotic run is not differentiable in any useful sense)."""
    return map_spectrum(henon, jnp.array([0.1, 0.1]), args=p, n_steps=10, transient_steps=2,
                        progress=False).exponents


def test_map_spectrum_jit_and_vmap_sweep(getkey):
    p = jnp.array([1.4, 0.3])
    # h = 1e-5, not eps^(1/5): the finite-time Henon exponents have large higher derivatives
    # (the tangent passes near the fold, where log R_ii is steep): the five-point error is 7e-5
    # at h = 1e-3, 7e-9 at 1e-4 and 1e-11 at 1e-5 (the jvp is the limit)
    _, grad = check_gradient(map_exps, p, key=getkey(), h=1e-5, n_dirs=2)
    # vmap (sweep) of the gradient equals the (checked, jitted) gradient of each member
    w = jnp.array([1.0, 0.0])
    ps = jnp.array([[1.4, 0.3], [1.3, 0.3], [1.2, 0.25]])
    swept = sweep(lambda q: jax.grad(lambda qq: map_exps(qq)[0])(q), ps)
    for q, g in zip(ps, swept):
        np.testing.assert_allclose(g, grad(q, w), rtol=1e-12)


def test_ftle_field_wrt_parameters_and_points(getkey):
    def field(t, y, A):
        return A @ y - 0.1 * y**3

    A = jnp.array([[0.3, 1.0], [-1.0, -0.2]])
    pts = jnp.array([[0.5, -0.3], [1.0, 0.2]])
    fn = lambda ax: ftle_field(field, ax[1], t1=0.5, dt=0.05, args=ax[0]).exponents
    check_gradient(fn, (A, pts), key=getkey())


def test_network_spectrum_wrt_weights_and_input(getkey):
    Ws = jax.random.normal(getkey(), (3, 2, 2)) / jnp.sqrt(2.0)
    x = jnp.array([0.3, -0.5])

    def exps(wx):
        Ws, x = wx
        layers = [lambda h, W=W: jnp.tanh(W @ h) for W in Ws]
        return network_spectrum(layers, x).exponents

    check_gradient(exps, (Ws, x), key=getkey())


def test_product_spectrum_fixed_key_wrt_matrix(getkey):
    """The draws depend on the parameter through a closure (traced values inside `sample_fn`
    are detected and the run becomes one traced loop)."""
    key = jax.random.key(3)

    def exps(theta):
        sample = lambda k: theta + 0.3 * jax.random.normal(k, (2, 2))
        return product_spectrum(sample, key, dim=2, n_steps=20, progress=False).exponents

    check_gradient(exps, jnp.array([[1.0, 0.5], [-0.3, 0.8]]), key=getkey())


def test_dde_spectrum_wrt_field_parameter(getkey):
    def field(t, y, yd, p):
        return -p[0] * yd[0] + p[1] * jnp.tanh(y)

    def exps(p):
        return dde_spectrum(field, jnp.array([0.5]), [1.0], dt=0.1, n_steps=30, k=1, args=p,
                            progress=False).exponents

    check_gradient(exps, jnp.array([1.0, 0.3]), key=getkey())


def test_kaplan_yorke_derivative():
    """Smooth inside a branch (vs central differences); at a kink (a partial sum exactly 0) the
    derivative of the branch with the larger j, as documented; 0 on the constant branches."""
    ky = jax.jit(kaplan_yorke_dimension)
    grad = jax.jit(jax.grad(kaplan_yorke_dimension))
    lam = jnp.array([0.5, -0.1, -1.3])
    g = grad(lam)
    for i in range(3):
        e = jnp.zeros(3).at[i].set(1.0)
        np.testing.assert_allclose(g[i], fd_directional(ky, lam, e), rtol=1e-6)
    kink = jnp.array([0.5, -0.5, -1.0])  # S_2 = 0: D = 2 + S_2 / |lambda_3|
    np.testing.assert_allclose(grad(kink), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(grad(jnp.array([-0.1, -1.0, -2.0])), 0.0)  # D = 0
    np.testing.assert_allclose(grad(jnp.array([0.2, 0.1, 0.0])), 0.0)  # D = k


def test_counts_and_codes_have_no_derivative():
    """`result`, `failed_step` and `steps` are integers: jax.grad raises a TypeError."""
    p = jnp.array([1.4, 0.3])
    run = lambda q: map_spectrum(henon, jnp.array([0.1, 0.1]), args=q, n_steps=5, progress=False)
    res = jax.eval_shape(run, p)  # traced only
    for field in ("result", "failed_step", "steps"):  # `result` is a RESULTS item over an int
        (leaf,) = jax.tree_util.tree_leaves(getattr(res, field))
        assert jnp.issubdtype(leaf.dtype, jnp.integer)
    with pytest.raises(TypeError):
        jax.eval_shape(jax.grad(lambda q: run(q).result), p)
