"""jaxdyn.dde.solve_fixed (fixed-step DDEs) and jaxdyn.models.NeuralDDE."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import Polynomial

import jaxdyn.dde as dde
from jaxdyn.models import (
    AdaptiveStep,
    DelayMLPField,
    FixedStep,
    NeuralDDE,
    NeuralODE,
    memory_capacity,
    random_affine,
)

from .helpers import central_directional, fd_step, rel_err

T1 = 5.0


def exact_unit_delay(t1):
    """x' = -x(t - 1), x = 1 on [-1, 0]: by the method of steps x is a polynomial p_j on [j, j + 1]."""
    pieces = [Polynomial([1.0])]  # the history, on [-1, 0]
    x_a = 1.0
    for j in range(int(np.ceil(t1))):
        # p_j(t) = x(j) - int_j^t p_{j-1}(s - 1) ds
        p = x_a - pieces[-1](Polynomial([-1.0, 1.0])).integ(lbnd=j)
        pieces.append(p)
        x_a = p(j + 1)

    def x(t):
        t = np.asarray(t, dtype=float)
        j = np.clip(np.ceil(t) - 1, -1, len(pieces) - 2).astype(int)  # t in (j, j + 1]
        return np.array([pieces[k + 1](s) for k, s in zip(j, t, strict=True)])

    return x


def unit_field(t, y, yd, args):
    return -yd[0]


@pytest.mark.parametrize("method,order", [(dde.RK4, 4), (dde.HEUN, 2), (dde.EULER, 1)])
def test_order_against_exact(method, order):
    exact = exact_unit_delay(T1)
    ns = np.array([10, 20, 40])
    errs = []
    for n in ns:
        sol = dde.solve_fixed(unit_field, jnp.array(1.0), jnp.array([1.0]), 0.0, T1, n_steps=int(n),
                              method=method)
        ts, ys = sol.ts, sol.ys
        errs.append(np.max(np.abs(np.asarray(ys) - exact(np.asarray(ts)))))
    errs = np.array(errs)
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    print(f"order {method.order}: max errors {errs}, fitted order {slope:.3f}")
    assert abs(slope - order) < 0.25
    assert np.all(np.diff(errs) < 0)


def test_unaligned_delay_is_second_order():
    """With tau / dt not an integer, the step containing t0 + tau sees a kink: RK4 drops to order 2."""
    exact = exact_unit_delay(T1)
    ns = np.array([13, 26, 52])
    errs = []
    for n in ns:
        sol = dde.solve_fixed(unit_field, jnp.array(1.0), jnp.array([1.0]), 0.0, T1, n_steps=int(n))
        ts, ys = sol.ts, sol.ys
        errs.append(np.max(np.abs(np.asarray(ys) - exact(np.asarray(ts)))))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    print(f"rk4, unaligned grid: max errors {np.array(errs)}, fitted order {slope:.3f}")
    assert abs(slope - 2.0) < 0.25


def nonlinear_field(t, y, yd, args):
    return jnp.stack([y[1], -jnp.sin(yd[0][0]) - 0.3 * y[1] + 0.2 * jnp.tanh(yd[1][1])])


def test_agrees_with_adaptive_solver():
    history = lambda t: jnp.stack([jnp.cos(t), -jnp.sin(t)])
    delays = jnp.array([0.7, 1.3])

    def fixed(d):
        sol = dde.solve_fixed(nonlinear_field, history, d, 0.0, T1, n_steps=400)
        return sol.ts, sol.ys

    ts, ys = jax.jit(fixed)(delays)
    sol = jax.jit(lambda d, s: dde.solve(nonlinear_field, history, d, 0.0, T1, dt0=0.01, saveat=s,
                                         stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-11),
                                         max_steps=1024).ys)(delays, ts[::20])
    err = np.max(np.abs(np.asarray(ys[::20]) - np.asarray(sol)))
    print(f"nonlinear, two delays, rk4 n=400 vs adaptive Tsit5 1e-11: max difference {err:.2e}")
    assert err < 1e-7  # (solve raises when its result is not success)
    # concrete delays: a ring buffer of ceil(1.3 / dt) + 3 = 107 slots; traced (above): the whole grid
    ring = dde.solve_fixed(nonlinear_field, history, delays, 0.0, T1, n_steps=400).ys
    np.testing.assert_allclose(np.asarray(ring), np.asarray(ys), rtol=1e-13, atol=1e-14)


def grad_field(t, y, yd, args):
    return -args * yd[0] - 0.2 * y**3


def test_gradients_match_finite_differences():
    def loss(a, tau, c):
        ys = dde.solve_fixed(grad_field, c, jnp.reshape(tau, (1,)), 0.0, 3.0, n_steps=60, args=a).ys
        return jnp.sum(ys**2) / ys.shape[0]

    loss_jit = jax.jit(loss)
    # tau / dt = 18.6: no stage time t_j + c dt - tau sits at t0, where the delayed value has a kink
    x = (jnp.array(0.8), jnp.array(0.93), jnp.array(1.2))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*x)
    for i, name in enumerate(["args", "tau", "history"]):
        h = fd_step(x[i])
        plus = list(x)
        minus = list(x)
        plus[i] = x[i] + h
        minus[i] = x[i] - h
        fd = (loss_jit(*plus) - loss_jit(*minus)) / (2 * h)
        err = abs(float(grads[i]) - float(fd)) / abs(float(fd))
        print(f"d loss / d {name}: AD {float(grads[i]):.10f}, FD {float(fd):.10f}, rel err {err:.1e}")
        assert err < 1e-4
    tangent_dir = (jnp.array(0.0), jnp.array(1.0), jnp.array(0.0))
    _, tangent = jax.jit(lambda *p: jax.jvp(loss, x, p))(*tangent_dir)
    np.testing.assert_allclose(tangent, grads[1], rtol=1e-10)


def linear_field(t, y, yd, args):
    return args @ yd[0] - 0.1 * y


def test_jit_no_retrace_and_vmap():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(history, m, delays):
        return dde.solve_fixed(linear_field, history, delays, 0.0, 2.0, n_steps=20, args=m).ys

    m = jnp.array([[0.0, 1.0], [-1.0, -0.2]])
    delays = jnp.array([0.7])
    histories = jnp.array([[1.0, 0.0], [0.5, -1.0], [2.0, 3.0]])
    looped = np.stack([np.asarray(run(h, m, delays)) for h in histories])
    run(histories[0], 2 * m, 1.1 * delays)  # new values, same shapes: no retrace
    batched = jax.vmap(run, in_axes=(0, None, None))(histories, m, delays)
    assert batched.shape == (3, 21, 2)
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-12, atol=1e-14)


def test_solve_fixed_bad_input():
    y0 = jnp.array(1.0)
    with pytest.raises(ValueError, match="n_steps"):
        dde.solve_fixed(unit_field, y0, jnp.array([0.3]), 0.0, 1.0, n_steps=3)
    with pytest.raises(ValueError, match="delays"):
        dde.solve_fixed(unit_field, y0, jnp.array([-0.3]), 0.0, 1.0, n_steps=10)
    with pytest.raises(ValueError, match="method"):
        dde.solve_fixed(unit_field, y0, jnp.array([0.3]), 0.0, 1.0, n_steps=10, method="rk5")
    with pytest.raises(TypeError, match="n_steps"):
        dde.solve_fixed(unit_field, y0, jnp.array([0.3]), 0.0, 1.0, n_steps=10.0)
    with pytest.raises(Exception, match="n_steps"):  # traced delays: eqx.error_if at run time
        jax.jit(lambda d: dde.solve_fixed(unit_field, y0, d, 0.0, 1.0, n_steps=3).ys)(jnp.array([0.3]))


# ---------------------------------------------------------------------------------------------
# NeuralDDE


def make_model(key, tau=0.33, d=2, m=3, q=1, **kwargs):
    k1, k2, k3 = jax.random.split(key, 3)
    return NeuralDDE(DelayMLPField(m, 8, 1, 1, key=k1), jnp.array([tau]), lift=random_affine(d, m, key=k2),
                     readout=random_affine(m, q, key=k3), **kwargs)


def test_neural_dde_shapes_vmap_jit(getkey):
    model = make_model(getkey(), q=2)
    assert model.stepping.n_steps == 20

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(model, x):
        return model(x)

    x = jnp.array([0.3, -0.7])
    assert run(model, x).shape == (2,)
    xs = jax.random.normal(getkey(), (5, 2))
    batched = eqx.filter_jit(lambda m, xs: jax.vmap(m)(xs))(model, xs)
    assert batched.shape == (5, 2)
    # new values of the delays and inputs, same shapes: no retrace
    np.testing.assert_allclose(batched, np.stack([run(model, xi) for xi in xs]), rtol=1e-12, atol=1e-14)
    run(eqx.tree_at(lambda mm: mm.delays, model, jnp.array([0.4])), 2 * x)
    adaptive = make_model(getkey(), q=2, stepping=AdaptiveStep(rtol=1e-10, atol=1e-10, max_steps=256))
    fine = eqx.tree_at(lambda mm: mm.stepping, adaptive, FixedStep(200))
    call = eqx.filter_jit(lambda m, x: m(x))
    err = float(jnp.max(jnp.abs(call(adaptive, x) - call(fine, x))))
    print(f"NeuralDDE fixed (200 steps) vs adaptive: {err:.1e}")
    assert err < 1e-8


class Undelayed(eqx.Module):
    """The ODE field f(t, h, (h,)): the tau -> 0 limit of a one-delay DDE field."""

    field: DelayMLPField

    def __call__(self, t, h, args):
        return self.field(t, h, (h,), args)


def test_neural_dde_tends_to_neural_ode(getkey):
    k1, k2, k3 = getkey(), getkey(), getkey()
    field = DelayMLPField(3, 16, 1, 1, key=k1, scale=2.0)
    lift, readout = random_affine(2, 3, key=k2), random_affine(3, 2, key=k3)
    ode = NeuralODE(Undelayed(field), lift=lift, readout=readout,
                    stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-11))
    x = jnp.array([0.8, -0.4])
    target = eqx.filter_jit(lambda m, x: m(x))(ode, x)
    taus = np.array([0.4, 0.2, 0.1, 0.05])
    call = eqx.filter_jit(lambda m, x: m(x))  # one compile: the delays are traced
    errs = np.array([
        float(jnp.max(jnp.abs(call(NeuralDDE(field, jnp.array([tau]), lift=lift, readout=readout,
                                             stepping=FixedStep(400)), x) - target)))
        for tau in taus
    ])
    slope = np.polyfit(np.log(taus), np.log(errs), 1)[0]
    print(f"|NeuralDDE - NeuralODE| at tau {taus}: {errs}, fitted order {slope:.3f}")
    assert np.all(np.diff(errs) < 0)
    assert 0.8 < slope < 1.2


def test_memory_capacity_hand_built(getkey):
    field = DelayMLPField(2, 3, 1, 1, key=getkey())
    w1 = jnp.array([[1.0, 5.0, 2.0, 0.0], [0.0, 1.0, 0.0, 3.0], [7.0, 0.0, 0.0, 0.0]])
    w2 = jnp.array([[0.5, 0.0, 0.0], [0.0, 0.25, 0.0]])
    field = eqx.tree_at(lambda f: (f.mlp.layers[0].weight, f.mlp.layers[1].weight), field, (w1, w2))
    # delayed columns [[2, 0], [0, 3], [0, 0]]: spectral norm 3; ||w2|| = 0.5; tanh is 1-Lipschitz
    expected = 3.0 * 0.5
    for tau, ode_like in [(0.2, True), (0.5, False)]:
        res = memory_capacity(NeuralDDE(field, jnp.array([tau])))
        print(f"tau={tau}: K={float(res.lipschitz)}, K tau={float(res.capacity)}, "
              f"ode_like={bool(res.ode_like)}")
        np.testing.assert_allclose(res.lipschitz, expected, rtol=1e-12)
        np.testing.assert_allclose(res.capacity, expected * tau, rtol=1e-12)
        assert bool(res.ode_like) == ode_like == (expected * tau * np.e < 1)
    # the bound holds on random pairs
    h = jax.random.normal(getkey(), (2,))
    z1, z2 = jax.random.normal(getkey(), (2, 50, 2))
    df = jax.vmap(lambda a, b: jnp.linalg.norm(field(0.0, h, (a,), None) - field(0.0, h, (b,), None)))(z1, z2)
    assert np.all(np.asarray(df) <= expected * np.linalg.norm(np.asarray(z1 - z2), axis=1) + 1e-12)
    assert memory_capacity(NeuralDDE(field, jnp.array([0.2])), lipschitz=2.0).capacity == pytest.approx(0.4)


def test_neural_dde_parameter_gradients(getkey):
    model = make_model(getkey(), tau=0.33)  # tau / dt = 6.6: no stage time sits at t0
    xs = jax.random.normal(getkey(), (3, 2))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p):
        return jnp.mean(jax.vmap(eqx.combine(p, static))(xs) ** 2)

    loss_jit = jax.jit(loss)
    grads = jax.jit(jax.grad(loss))(params)
    # NumPy leaves for the directions and the perturbed points: no eager JAX dispatch per leaf
    params_np = jax.tree_util.tree_map(np.asarray, params)
    rng = np.random.default_rng(0)
    for i in range(2):
        v = jax.tree_util.tree_map(lambda leaf: rng.standard_normal(leaf.shape), params_np)
        ad = sum(float(np.vdot(g, w)) for g, w in zip(jax.tree_util.tree_leaves(grads),
                                                      jax.tree_util.tree_leaves(v), strict=True))
        fd = central_directional(loss_jit, params_np, v, fd_step(1.0))
        err = rel_err(ad, fd)
        print(f"NeuralDDE directional derivative {i}: AD {float(ad):.10f}, FD {float(fd):.10f}, "
              f"rel err {err:.1e}")
        assert err < 1e-4
    # the delay gets a gradient of its own
    assert float(jnp.abs(grads.delays[0])) > 0


def test_neural_dde_bad_input(getkey):
    model = make_model(getkey())
    with pytest.raises(ValueError, match="`x`"):
        model(jnp.ones(3))
    with pytest.raises(ValueError, match="`x`"):
        model(jnp.array([1.0, jnp.nan]))
    field = DelayMLPField(3, 8, 1, 1, key=getkey())
    with pytest.raises(ValueError, match="delays"):
        NeuralDDE(field, jnp.array([0.0]))
    with pytest.raises(ValueError, match="delays"):
        NeuralDDE(field, jnp.array([0.2, 0.3]))  # field has one delayed input
    with pytest.raises(ValueError, match="lift"):
        NeuralDDE(field, jnp.array([0.2]), lift=jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="readout"):
        NeuralDDE(field, jnp.array([0.2]), readout=jnp.ones((1, 2)))
    with pytest.raises(TypeError, match="lift"):
        NeuralDDE(field, jnp.array([0.2]), lift="identity")
    with pytest.raises(ValueError, match="n_steps"):
        NeuralDDE(field, jnp.array([0.2]), stepping=FixedStep(3))
    with pytest.raises(ValueError, match="t1"):
        NeuralDDE(field, jnp.array([0.2]), t1=-1.0)


def test_memory_capacity_flag_is_the_hypothesis_and_report_keeps_measured_apart(getkey):
    """`K_tau_e_below_one` is the theorem's hypothesis (`ode_like` the same value, kept); the
    dde-memory report shows it beside the measured monotonicity, so a run with the hypothesis and a
    non-monotone map reads as such."""
    from jaxdyn.experiments import dde_memory

    field = DelayMLPField(2, 4, 1, 1, key=getkey())
    model = NeuralDDE(field, jnp.array([0.5]))
    for K, below in [(0.1, True), (1.0, False)]:
        res = memory_capacity(model, lipschitz=K)
        assert bool(res.K_tau_e_below_one) == below == bool(res.ode_like)
    row = {"variant": "delay", "cap_K_tau_e": 0.5, "K": 0.18, "tau": 1.0, "K_tau": 0.18, "K_tau_e": 0.49,
           "K_tau_e_below_one": True, "joint_lipschitz": 3.0, "sup_error": 0.7, "rms_error": 0.3,
           "final_loss": 0.1, "n_critical_points": 1, "critical_points_at": [0.1], "monotone": False,
           "derivative_range": [-0.1, 0.5]}
    text = dde_memory._summary(dde_memory.QUICK, [row])
    assert r"$K\tau e < 1$ (hypothesis)" in text and "monotone (measured)" in text
    line = next(x for x in text.splitlines() if x.startswith("| delay |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "yes" and cells[-1] == "no"
    assert "not a monotone" in text
