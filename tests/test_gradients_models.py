"""The gradient-check matrix of `jaxdyn.models`: derivatives against central differences.

Each configuration is checked by ONE jitted function (to keep compilation small): it evaluates the
model under `vmap` over two inputs at the points z + s h v of a five-point stencil, for one random
direction v per component (field/lift/readout parameters, the inputs x, the end time T), and
returns the finite differences together with `jax.jvp` (forward mode) and `jax.grad` of a random
projection (reverse mode) along the same directions. Relative tolerance 1e-6 throughout, float64,
h = eps^(1/5) (the optimum of the fourth-order stencil).

Adjoints: `RecursiveCheckpointAdjoint` (the default: reverse mode only; forward mode raises a
`TypeError` naming `custom_vjp`, tested), `DirectAdjoint` (via `second_order`: both modes) and
`BacksolveAdjoint` (reverse mode w.r.t. parameters and x; it cannot differentiate in T, which
raises a clear `TypeError`, tested), with adaptive (tight PID) and constant step sizes.
`fit` and `critical_points` are not differentiable: `jax.grad` through them raises (tested).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.models import (
    MLP,
    DenseResNet,
    MLPField,
    NeuralODE,
    ResNet,
    critical_points,
    embed,
    fit,
    random_affine,
    second_order,
)

from .helpers import random_like, rel_err, tree_dot

H = float(np.finfo(np.float64).eps ** 0.2)
RTOL = 1e-6
XS = jnp.array([[0.3, -0.5], [-0.7, 0.2]])
T = 0.75  # not a multiple of dt0 = 0.1: the constant-step solution is smooth in T there


def _base(controller, adjoint, dt0=None):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return NeuralODE(MLPField(3, 4, 1, key=k1), lift=random_affine(2, 3, key=k2),
                     readout=random_affine(3, 1, key=k3), t1=T, stepsize_controller=controller,
                     dt0=dt0, adjoint=adjoint, max_steps=None if dt0 else 32)


ADAPTIVE = diffrax.PIDController(rtol=1e-12, atol=1e-12)
CONSTANT = diffrax.ConstantStepSize()


def _split(model):
    """The array leaves of the model (field, lift, readout), x and T as one PyTree z (`t1` is a
    Python float in the model, so it is static; T enters by `eqx.tree_at`)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    z = {"params": params, "x": XS, "T": jnp.asarray(T)}

    def fn(z):
        m = eqx.tree_at(lambda m: m.t1, eqx.combine(z["params"], static), z["T"])
        return jax.vmap(m)(z["x"])

    return fn, z


@eqx.filter_jit
def _cotangent(z, key, fn):
    return random_like(key, fn(z))


@eqx.filter_jit
def _directions(z, key, components):
    """One random direction per component (zero elsewhere), stacked on a leading axis."""
    dirs = []
    for i, name in enumerate(components):
        v = jax.tree_util.tree_map(jnp.zeros_like, z)
        v[name] = random_like(jax.random.fold_in(key, i), z[name])
        dirs.append(v)
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *dirs)


STENCIL = jnp.array([2 * H, H, -H, -2 * H])


def _fd(fn):
    """Jitted: fourth-order central differences of `fn` at z along stacked directions `V`."""

    @jax.jit
    def run(z, V):
        def at(v, s):
            return fn(jax.tree_util.tree_map(lambda a, b: a + s * b, z, v))

        vals = jax.vmap(lambda v: jax.vmap(lambda s: at(v, s))(STENCIL))(V)
        return (-vals[:, 0] + 8 * vals[:, 1] - 8 * vals[:, 2] + vals[:, 3]) / (12 * H)

    return run


def _derivatives(fn, modes):
    """Jitted: `jax.jvp` along the stacked directions `V` and <grad <w, fn>, v> for each v."""

    @jax.jit
    def run(z, V, w):
        out = {}
        if "fwd" in modes:
            out["jvp"] = jax.vmap(lambda v: jax.jvp(fn, (z,), (v,))[1])(V)
        if "rev" in modes:
            g = jax.grad(lambda zz: jnp.vdot(w, fn(zz)))(z)
            out["gv"] = jax.vmap(lambda v: tree_dot(g, v))(V)
        return out

    return run


def _assert_matrix(fn, z, components, modes, *, fd=None, rtol=RTOL):
    """Derivatives of `fn` at `z` along one random direction per component vs finite differences
    (`fd`: precomputed differences along the same directions, shared by the adjoints of one
    solver configuration: the primal does not depend on the adjoint)."""
    key = jax.random.key(3)
    V = _directions(z, key, components)
    w = _cotangent(z, jax.random.fold_in(key, 99), fn)
    fd = _fd(fn)(z, V) if fd is None else fd
    out = _derivatives(fn, modes)(z, V, w)
    for i, name in enumerate(components):
        if "fwd" in modes:
            err = rel_err(out["jvp"][i], fd[i])
            assert err < rtol, f"forward mode, d/d{name}: relative error {err:.2e}"
        if "rev" in modes:
            want = float(jnp.vdot(w, fd[i]))
            err = abs(float(out["gv"][i]) - want) / abs(want)
            assert err < rtol, f"reverse mode, d/d{name}: relative error {err:.2e}"


ALL = ("params", "x", "T")


@pytest.fixture(scope="module")
def adaptive_fd():
    """Finite differences of the adaptive-step model (shared by every adjoint)."""
    fn, z = _split(_base(ADAPTIVE, None))
    return _fd(fn)(z, _directions(z, jax.random.key(3), ALL))


@pytest.mark.parametrize(
    "controller, adjoint, modes",
    [
        (ADAPTIVE, diffrax.RecursiveCheckpointAdjoint(), ("rev",)),
        (ADAPTIVE, diffrax.DirectAdjoint(), ("fwd",)),
        (CONSTANT, diffrax.DirectAdjoint(), ("rev", "fwd")),
    ],
    ids=["checkpoint-adaptive-rev", "direct-adaptive-fwd", "direct-constant-both"],
)
def test_neural_ode_matrix(controller, adjoint, modes, adaptive_fd):
    """d Phi / d(params, x, T) under jit and vmap. The configurations cross adjoints, step-size
    controllers and modes instead of taking their full product (compile time): reverse mode
    through the training adjoint with adaptive steps, forward mode through DirectAdjoint with
    adaptive steps, both modes through DirectAdjoint with constant steps. (The checkpointed
    adjoint with constant steps is `fit`'s usual path, checked in test_models_neural_ode.py.)"""
    model = _base(controller, adjoint, dt0=0.1 if controller is CONSTANT else None)
    fn, z = _split(model)
    _assert_matrix(fn, z, ALL, modes, fd=adaptive_fd if controller is ADAPTIVE else None)


def test_neural_ode_backsolve(adaptive_fd):
    """BacksolveAdjoint: reverse mode w.r.t. parameters and x (its gradient solves the adjoint
    equation backwards, accurate to the solver tolerance 1e-12: within 1e-6 here)."""
    model = eqx.tree_at(lambda m: m.adjoint, _base(ADAPTIVE, None), diffrax.BacksolveAdjoint())
    _, z = _split(model)  # same z and directions as `adaptive_fd`; T stays a Python float here
    params, static = eqx.partition(model, eqx.is_inexact_array)
    fn = lambda z: jax.vmap(eqx.combine(z["params"], static))(z["x"])
    _assert_matrix(fn, z, ("params", "x"), ("rev",), fd=adaptive_fd[:2])
    # d/dT is not supported by BacksolveAdjoint: a clear error, before any compilation
    with pytest.raises(TypeError, match="`t1` must be a Python number"):
        jax.grad(lambda t: eqx.tree_at(lambda m: m.t1, model, t)(XS[0])[0])(jnp.asarray(T))


def test_checkpointed_adjoint_refuses_forward_mode():
    """Forward mode through the default (checkpointed) adjoint is unsupported in diffrax: it
    raises a `TypeError` naming `custom_vjp` at trace time (documented in `NeuralODE`), and
    `second_order` is the way out."""
    model = _base(CONSTANT, None, dt0=0.1)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(model, (XS[0],), (jnp.ones(2),))
    assert isinstance(second_order(model).adjoint, diffrax.DirectAdjoint)


def test_variational_against_finite_differences():
    """`variational`: flow Jacobian vs central differences of the flow, input Jacobian vs
    B (that) A, log det vs log|det| of the finite-difference flow Jacobian (constant steps dt = 0.005:
    the Runge-Kutta variational equation is the exact derivative of the discrete flow, and the
    Liouville log det agrees with the discrete one to O(dt^5))."""
    base = _base(CONSTANT, None, dt0=0.1)
    model = NeuralODE(base.field, lift=base.lift, readout=base.readout, t1=T,
                      stepsize_controller=CONSTANT, dt0=0.005)
    x = XS[0]

    @jax.jit
    def run(x):
        var = model.variational(x)
        h0 = model.lift_input(x)
        vals = jax.vmap(lambda e: jax.vmap(lambda s: model.flow(h0 + s * e))(STENCIL))(jnp.eye(3))
        flow_fd = ((-vals[:, 0] + 8 * vals[:, 1] - 8 * vals[:, 2] + vals[:, 3]) / (12 * H)).T
        return var, flow_fd

    var, flow_fd = run(x)
    assert rel_err(var.flow_jacobian, flow_fd) < RTOL
    A, B = np.asarray(model.lift.weight), np.asarray(model.readout.weight)
    assert rel_err(var.jacobian, B @ np.asarray(flow_fd) @ A) < RTOL
    _, logdet = np.linalg.slogdet(np.asarray(flow_fd))
    assert abs(float(var.log_det_flow) - logdet) < RTOL * max(1.0, abs(logdet))


def test_discrete_models_and_embedding():
    """ResNet, DenseResNet and MLP w.r.t. parameters and input (forward and reverse, jit and vmap;
    the three in one compiled check), and an `embed` model: its derivatives in x and in the
    parameters of psi equal those of psi exactly (the embedding is exact with one Euler step)."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(4), 4)
    nets = [ResNet(3, 4, in_size=2, out_size=1, key=k1), DenseResNet(3, 3, in_size=2, out_size=1, key=k2),
            MLP((2, 5, 3, 1), key=k3)]
    parts = [eqx.partition(net, eqx.is_inexact_array) for net in nets]
    z = {"params": [p for p, _ in parts], "x": XS}

    def fn(z):
        return jnp.concatenate([jax.vmap(eqx.combine(p, static))(z["x"])
                                for p, (_, static) in zip(z["params"], parts)], axis=-1)

    _assert_matrix(fn, z, ("params", "x"), ("rev", "fwd"))

    psi = MLP((2, 4, 1), key=k4)
    model = embed(psi, 2, 1, solver=diffrax.Euler(), stepsize_controller=CONSTANT, dt0=1.0)
    grads = lambda f: eqx.filter_grad(lambda fx: fx[0](fx[1])[0])((f, XS[0]))
    g_model, gx_model = grads(model)
    g_psi, gx_psi = grads(psi)
    np.testing.assert_allclose(gx_model, gx_psi, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g_model.field.psi), jax.tree_util.tree_leaves(g_psi)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_not_differentiable_entries_say_so():
    """`fit` and `critical_points` are host-side and discrete: `jax.grad` through them raises a
    `TypeError` that says so (documented in their docstrings)."""
    net = MLP((1, 3, 1), key=jax.random.key(5))
    xs = jnp.linspace(-1, 1, 4)[:, None]
    with pytest.raises(TypeError, match="`fit` is not differentiable"):
        jax.grad(lambda a: fit(net, a * xs, xs, n_steps=1, progress=False).losses[0])(1.0)
    with pytest.raises(TypeError, match="`critical_points` is not differentiable"):
        jax.grad(lambda a: critical_points(lambda x: jnp.sum((x - a) ** 2), -jnp.ones(1), jnp.ones(1),
                                           key=jax.random.key(0), n_starts=2).values[0])(0.1)
