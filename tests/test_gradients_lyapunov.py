"""Gradient-check matrix of jaxdyn.lyapunov (issue #13): derivatives of finite-time exponents
against central differences of the same finite-time computation (float64, five-point stencil,
h = eps^(1/5) ~ 7e-4 along random directions: truncation O(h^4) ~ 3e-13 relative, rounding
eps / h ~ 3e-13), forward and reverse mode, under jit and vmap. With a fixed number of steps (and
a fixed key for random products) an exponent is a smooth function of the parameters away from
equal exponents; counts and result codes are integers and `jax.grad` through them raises."""

import diffrax
import equinox as eqx
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
from tests.helpers import check_gradient, fd_directional


def lorenz(t, y, p):
    rho, sigma = p[0], p[1]
    return jnp.array([sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]])


def henon(x, p):
    return jnp.array([1.0 - p[0] * x[0] ** 2 + x[1], p[1] * x[0]])


Y0 = jnp.array([1.0, 2.0, 20.0])


@eqx.filter_jit
def flow_exps(py):
    """Finite-time spectrum of Lorenz over T = 0.5 (50 RK4 steps, 10 transient, QR every 5
    steps), as a function of (args, y0)."""
    p, y0 = py
    return flow_spectrum(lorenz, y0, args=p, dt=0.01, n_steps=50, transient_steps=10,
                         renorm_every=5, progress=False).exponents


def test_flow_spectrum_wrt_args_and_y0(getkey):
    check_gradient(flow_exps, (jnp.array([28.0, 10.0]), Y0), key=getkey())


def test_flow_spectrum_diffrax_forward_only(getkey):
    """With a diffrax solver the steps use diffrax.ForwardMode: forward mode matches central
    differences; reverse mode raises (documented in flow_spectrum)."""

    @eqx.filter_jit
    def top(p):
        return flow_spectrum(lorenz, Y0, args=p, dt=0.01, n_steps=20, k=1,
                             solver=diffrax.Heun(), progress=False).exponents

    check_gradient(top, jnp.array([28.0, 10.0]), key=getkey(), modes=("fwd",), n_dirs=1)
    with pytest.raises(Exception, match="(?i)reverse|forward|transpose|jvp"):
        jax.grad(lambda p: top(p)[0])(jnp.array([28.0, 10.0]))


@eqx.filter_jit
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
    check_gradient(map_exps, p, key=getkey(), h=1e-5)
    # vmap (sweep) of the gradient equals the gradient of each member
    top_grad = jax.grad(lambda q: map_exps(q)[0])
    ps = jnp.array([[1.4, 0.3], [1.3, 0.3], [1.2, 0.25]])
    swept = sweep(top_grad, ps)
    for q, g in zip(ps, swept):
        np.testing.assert_allclose(g, top_grad(q), rtol=1e-10)
    v = jnp.array([1.0, 0.0])
    fd = fd_directional(lambda q: map_exps(q)[0], ps[1], v, h=1e-5)
    np.testing.assert_allclose(swept[1] @ v, fd, rtol=1e-6)


def test_ftle_field_wrt_parameters_and_points(getkey):
    def field(t, y, A):
        return A @ y - 0.1 * y**3

    A = jnp.array([[0.3, 1.0], [-1.0, -0.2]])
    pts = jnp.array([[0.5, -0.3], [1.0, 0.2]])
    fn_A = lambda a: ftle_field(field, pts, t1=0.5, dt=0.05, args=a).exponents
    fn_x = lambda x: ftle_field(field, x, t1=0.5, dt=0.05, args=A).exponents
    check_gradient(fn_A, A, key=getkey(), n_dirs=1)
    check_gradient(fn_x, pts, key=getkey(), n_dirs=1)


def test_network_spectrum_wrt_weights_and_input(getkey):
    Ws = jax.random.normal(getkey(), (4, 3, 3)) / jnp.sqrt(3.0)
    x = jnp.array([0.3, -0.5, 0.8])

    def exps(Ws, x=x):
        layers = [lambda h, W=W: jnp.tanh(W @ h) for W in Ws]
        return network_spectrum(layers, x).exponents

    check_gradient(exps, Ws, key=getkey(), n_dirs=1)
    check_gradient(lambda xx: exps(Ws, xx), x, key=getkey(), n_dirs=1)


def test_product_spectrum_fixed_key_wrt_matrix(getkey):
    """The draws depend on the parameter through a closure (traced values inside `sample_fn`
    are detected and the run becomes one traced loop)."""
    key = jax.random.key(3)

    def exps(theta):
        sample = lambda k: theta + 0.3 * jax.random.normal(k, (2, 2))
        return product_spectrum(sample, key, dim=2, n_steps=20, progress=False).exponents

    check_gradient(exps, jnp.array([[1.0, 0.5], [-0.3, 0.8]]), key=getkey(), n_dirs=1)


def test_dde_spectrum_wrt_field_parameter(getkey):
    def field(t, y, yd, p):
        return -p[0] * yd[0] + p[1] * jnp.tanh(y)

    @eqx.filter_jit
    def exps(p):
        return dde_spectrum(field, jnp.array([0.5]), [1.0], dt=0.1, n_steps=30, k=2, args=p,
                            progress=False).exponents

    check_gradient(exps, jnp.array([1.0, 0.3]), key=getkey(), n_dirs=1)


def test_kaplan_yorke_derivative():
    """Smooth inside a branch (vs central differences); at a kink (a partial sum exactly 0) the
    derivative of the branch with the larger j, as documented; 0 on the constant branches."""
    lam = jnp.array([0.5, -0.1, -1.3])
    g = jax.grad(kaplan_yorke_dimension)(lam)
    for i in range(3):
        e = jnp.zeros(3).at[i].set(1.0)
        np.testing.assert_allclose(g[i], fd_directional(kaplan_yorke_dimension, lam, e), rtol=1e-6)
    kink = jnp.array([0.5, -0.5, -1.0])  # S_2 = 0: D = 2 + S_2 / |lambda_3|
    np.testing.assert_allclose(jax.grad(kaplan_yorke_dimension)(kink), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(jax.grad(kaplan_yorke_dimension)(jnp.array([-0.1, -1.0])), 0.0)
    np.testing.assert_allclose(jax.grad(kaplan_yorke_dimension)(jnp.array([0.2, 0.1])), 0.0)


def test_counts_and_codes_have_no_derivative():
    """`result`, `failed_step` and `steps` are integers: jax.grad raises a TypeError."""
    for field in ("result", "failed_step", "steps"):
        with pytest.raises(TypeError):
            jax.grad(lambda p, f=field: getattr(
                map_spectrum(henon, jnp.array([0.1, 0.1]), args=p, n_steps=5, progress=False), f)
            )(jnp.array([1.4, 0.3]))
