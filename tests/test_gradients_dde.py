"""The gradient-check matrix of `jaxdyn.dde` and `NeuralDDE`.

The delay derivative is checked against the **exact** derivative of the method-of-steps solution
of $x'(t) = b\\,x(t - \\tau)$ with the history $h(t) = c_0 + a\\cos t + c\\sin t$ (closed forms on each
interval $[k\\tau, (k+1)\\tau]$: polynomials in $t$ times $1, \\cos t, \\sin t$, built below by exact
polynomial arithmetic and differentiated by JAX), everything else against central differences of
the same function (float64, 1e-6 relative). Compiled solves are shared: one solve per solver and
adjoint, `vmap`ped over cases, evaluation points as `saveat`.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import dde
from jaxdyn.models import DelayMLPField, NeuralDDE, random_affine
from tests.helpers import check_gradient, fd_directional, rel_err

# ---------------------------------------------------------------------------------------------
# The exact solution by the method of steps.
# ---------------------------------------------------------------------------------------------

_DEG = 12  # degree of the polynomial parts; interval k carries degree <= k + 1 (k <= 8 here)
_D = np.diag(np.arange(1.0, _DEG + 1), 1)  # p -> p' on coefficient vectors (c_0, ..., c_DEG)
_I = np.diag(1.0 / np.arange(1.0, _DEG + 1), -1)  # p -> antiderivative vanishing at 0
# B with B + B'' = r is sum_i (-D^2)^i r (finite: D is nilpotent)
_B = sum(np.linalg.matrix_power(-_D @ _D, i) for i in range(_DEG // 2 + 1))


def _poly(p, u):
    return (u[:, None] ** jnp.arange(_DEG + 1)) @ p


def exact_solution(T, tau, b, coef, n_intervals=9):
    r"""$x(T)$ at the times `T` (1-D) for $x'(t) = b\,x(t - \tau)$, $t_0 = 0$, history
    $c_0 + a\cos t + c\sin t$ (`coef`).

    On interval $k$ (local variable $u = t - k\tau$) $x = P(u) + C(u)\cos t + S(u)\sin t$; the
    delayed value on interval $k + 1$ has the same $u$, with $\cos(t - \tau)$, $\sin(t - \tau)$
    rotated into $\cos t$, $\sin t$; the integral of $Q_c \cos t + Q_s \sin t$ is
    $A\cos t + B\sin t$ with $B + B'' = Q_c + Q_s'$, $A = B' - Q_s$ (exact for polynomials)."""
    e0 = jnp.zeros(_DEG + 1).at[0].set(1.0)
    c0, a, c = coef[0], coef[1], coef[2]
    P, C, S = c0 * e0, a * e0, c * e0  # the history on interval -1 (its u = t + tau)
    x_start = c0 + a
    k_of_T = jnp.floor(T / tau)
    out = jnp.zeros_like(T)
    D, I, Bm = (jnp.asarray(m) for m in (_D, _I, _B))
    for k in range(n_intervals):
        ct, st = jnp.cos(tau), jnp.sin(tau)
        Cd, Sd = C * ct - S * st, C * st + S * ct
        beta = k * tau
        B = Bm @ (b * Cd + D @ (b * Sd))
        A = D @ B - b * Sd
        Pi = I @ (b * P)
        F0 = Pi[0] + A[0] * jnp.cos(beta) + B[0] * jnp.sin(beta)
        P, C, S = Pi.at[0].add(x_start - F0), A, B
        u = T - beta
        value = _poly(P, u) + _poly(C, u) * jnp.cos(T) + _poly(S, u) * jnp.sin(T)
        out = jnp.where(k_of_T == k, value, out)
        end = jnp.reshape(tau, (1,))
        x_start = (_poly(P, end) + _poly(C, end) * jnp.cos(beta + tau)
                   + _poly(S, end) * jnp.sin(beta + tau))[0]
    return out


@jax.jit
def _exact_checks():
    a = exact_solution(jnp.array([0.5, 1.5]), 1.0, -1.0, jnp.array([1.0, 0.0, 0.0]))
    b = exact_solution(jnp.array([0.5]), 0.7, -1.0, jnp.array([0.0, 1.0, 0.0]))
    g = jax.jacfwd(exact_solution, 1)(jnp.array([3.5]), 1.0, -1.0, jnp.array([1.0, 0.0, 0.0]))
    return a, b, g


def test_exact_solution_is_exact():
    # x = 1 - t on [0, 1], 1 - t + (t - 1)^2 / 2 on [1, 2]; cos history: 1 - sin(t - tau) - sin(tau)
    a, b, g = _exact_checks()
    np.testing.assert_allclose(a, [0.5, -0.375], rtol=1e-14)
    np.testing.assert_allclose(b, [1 - np.sin(0.5 - 0.7) - np.sin(0.7)], rtol=1e-14)
    # the closed form of the constant-history derivative: sum_j (-1)^(j+1) (j-1) (t-(j-1)tau)^(j-1)/(j-1)!
    np.testing.assert_allclose(g, [-2.5 + 2.25 - 0.0625], rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# The defect of issue #13: d x(T) / d tau under an adaptive controller.
# ---------------------------------------------------------------------------------------------


class TrigHistory(eqx.Module):
    coef: jax.Array

    def __call__(self, t):
        return self.coef[0] + self.coef[1] * jnp.cos(t) + self.coef[2] * jnp.sin(t)


def _field(t, y, yd, b):
    return b * yd[0]


# before, at and after the breaking points k tau (tau = 1)
TS = jnp.array([0.5, 0.999, 1.0, 1.001, 1.5, 2.0, 2.7, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 5.999])
T1 = 6.0
PID = diffrax.PIDController(rtol=1e-9, atol=1e-9)  # the reproducer of the issue


def _ys(p, solver, controller, adjoint, dt0=0.01):
    tau, b, coef = p
    sol = dde.solve(_field, TrigHistory(coef), jnp.reshape(tau, (1,)), 0.0, T1, dt0=dt0, args=b,
                    saveat=TS, solver=solver, stepsize_controller=controller, adjoint=adjoint,
                    max_steps=256)
    return sol.ys


def _exact_jacobian(p):
    return jax.jacfwd(lambda q: exact_solution(TS, *q))(p)


# two cases vmapped: the reproducer (history 1) and the smooth history cos t, both tau = 1, b = -1
CASES = (jnp.array([1.0, 1.0]), jnp.array([-1.0, -1.0]), jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


@pytest.fixture(scope="module")
def exact_jac():
    return jax.jit(jax.vmap(_exact_jacobian))(CASES)


def _assert_jac(got, want, rtol):
    for g, w, name in zip(got, want, ("tau", "b", "history"), strict=True):
        for case in range(2):
            g_case, w_case = g[case], w[case]
            if name == "history" and case == 0:
                # the reproducer's solution is piecewise polynomial, so Tsit5 steps over whole delay
                # intervals; the controller sees no error in the primal and none of the non-polynomial
                # perturbations a cos t + c sin t: only d / d c0 is resolved on that grid
                g_case, w_case = g_case[:, 0], w_case[:, 0]
            err = rel_err(g_case, w_case)
            assert err < rtol, f"d ys / d {name}, case {case}: relative error {err:.2e}"


def test_delay_gradient_adaptive_reverse_matches_closed_form(exact_jac):
    """The reproducer of issue #13 (was: +0.172 vs -0.3125 at T = 3.5), and the cos history (was
    1% off at T = 2.7): reverse mode, under jit and vmap."""
    jac = jax.jit(jax.vmap(jax.jacrev(lambda p: _ys(p, diffrax.Tsit5(), PID, None))))(CASES)
    _assert_jac(jac, exact_jac, 1e-6)
    # each evaluation point on its own too (not only relative to the largest entry)
    dtau, want = np.asarray(jac[0][0]), np.asarray(exact_jac[0][0])
    np.testing.assert_allclose(dtau, want, rtol=1e-6, atol=1e-9)


def test_delay_gradient_adaptive_forward_matches_closed_form(exact_jac):
    """Forward mode (`DirectAdjoint`), under jit and vmap; and its reverse mode."""
    fn = lambda p: _ys(p, diffrax.Tsit5(), PID, diffrax.DirectAdjoint())  # noqa: E731
    jac = jax.jit(jax.vmap(jax.jacfwd(fn)))(CASES)
    _assert_jac(jac, exact_jac, 1e-6)


# ---------------------------------------------------------------------------------------------
# The rest of the matrix: two delays, solve_batch, solve_fixed, NeuralDDE.
# ---------------------------------------------------------------------------------------------

# before and after the breaking points 0.73, 1.0, 1.46, 1.73, 2.0, 2.19 of delays (1.0, 0.73), at least
# 0.07 away from each: at a breaking point T = k tau the computed solution's derivative is one-sided
# (the step starting at T), and its two sides differ by the solver's error in x' (1e-5 with these
# steps), so a difference quotient straddling it would not test the derivative; the closed-form
# tests above check points at the breaking points against the exact derivative.
TS2 = jnp.array([0.5, 0.8, 1.1, 1.3, 1.55, 1.8, 2.3])


def _two_delays(p, adjoint):
    delays, ab, coef = p
    sol = dde.solve(lambda t, y, yd, args: args[0] * yd[0] + args[1] * yd[1], TrigHistory(coef), delays,
                    0.0, 2.5, dt0=0.07, args=ab, saveat=TS2, solver=diffrax.Bosh3(), adjoint=adjoint,
                    max_steps=128)
    return sol.ys


P2 = (jnp.array([1.0, 0.73]), jnp.array([-1.0, 0.4]), jnp.array([0.3, 1.0, -0.5]))


def test_two_delays_constant_steps_reverse(getkey):
    """Two delays, constant steps (Bosh3), reverse mode under jit: every delay, the field's
    parameters and the history's, against central differences of the same function. The grid
    gaps between breaking points are not near multiples of dt0 (no step count changes within the
    difference stencil)."""
    fn = jax.jit(lambda p: _two_delays(p, None))
    check_gradient(fn, P2, key=getkey(), modes=("rev",))


def test_two_delays_constant_steps_forward(getkey):
    fn = jax.jit(lambda p: _two_delays(p, diffrax.DirectAdjoint()))
    check_gradient(fn, P2, key=getkey(), modes=("fwd",))


def test_solve_batch_adaptive_matches_closed_form():
    """`solve_batch` (shared adaptive steps) w.r.t. the delay, the field parameter and the member
    histories; the equation is linear, so member b is c_b times the unit solution (closed form)."""
    cs = jnp.array([0.5, 1.0, 2.0])

    def fn(p):
        tau, b, hs = p
        sol = dde.solve_batch(_field, hs, jnp.reshape(tau, (1,)), 0.0, T1, dt0=0.01, args=b, saveat=TS,
                              stepsize_controller=PID, max_steps=256)
        return sol.ys  # (len(TS), B)

    got = jax.jit(jax.jacrev(fn))((1.0, -1.0, cs))
    unit = jnp.array([1.0, 0.0, 0.0])
    d_tau, d_b = jax.jacfwd(lambda q: exact_solution(TS, q[0], q[1], unit))((1.0, -1.0))
    x_unit = exact_solution(TS, 1.0, -1.0, unit)
    assert rel_err(got[0], d_tau[:, None] * cs) < 1e-6
    assert rel_err(got[1], d_b[:, None] * cs) < 1e-6
    assert rel_err(got[2], x_unit[:, None, None] * jnp.eye(3)) < 1e-6


def test_solve_fixed_gradients_jit_vmap(getkey):
    """`solve_fixed` (RK4 on a grid) w.r.t. two delays, the field's parameters and the history's,
    forward and reverse, under jit, and vmapped over two parameter sets. The delays sit away from
    the multiples of dt/2 where a stage time changes its Hermite interval (a kink of the scheme)."""

    def fn(p):
        delays, ab, coef = p
        ys = dde.solve_fixed(lambda t, y, yd, args: args[0] * yd[0] + args[1] * yd[1], TrigHistory(coef),
                             delays, 0.0, 2.0, n_steps=50, args=ab).ys
        return ys[::5]

    fn = jax.jit(fn)
    p = (jnp.array([0.97, 0.73]), P2[1], P2[2])  # tau mod dt = 0.01, dt = 0.04: 0.01 from every kink
    check_gradient(fn, p, key=getkey())
    batch = (jnp.stack([p[0], p[0]]), jnp.stack([p[1], 1.1 * p[1]]), jnp.stack([p[2], 0.9 * p[2]]))
    v = jax.tree_util.tree_map(jnp.ones_like, p)
    _, tangents = jax.vmap(lambda q: jax.jvp(fn, (q,), (v,)))(batch)
    for i in range(2):
        member = jax.tree_util.tree_map(lambda a, i=i: a[i], batch)
        assert rel_err(tangents[i], fd_directional(fn, member, v)) < 1e-6


def test_neural_dde_gradients(getkey):
    """`NeuralDDE` (fixed steps) w.r.t. its parameters (weights, lift, readout, delays) and its
    input, forward and reverse under jit. `t1` is a static field (a Python float): it is not a
    leaf, so there is no derivative w.r.t. T (changing it recompiles), as documented. (The adaptive
    stepping is `dde.solve`, checked above.)"""
    model = NeuralDDE(DelayMLPField(2, 4, 1, 1, key=getkey()), jnp.array([0.37]), t1=1.0,
                      lift=random_affine(2, 2, key=getkey()), readout=random_affine(2, 1, key=getkey()))
    x = jnp.array([0.3, -0.7])
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def fn(p):
        m = eqx.combine(p, static)
        return m(p_x[0])

    p_x = [x]
    check_gradient(jax.jit(fn), params, key=getkey())
    check_gradient(jax.jit(lambda z: model(z)), x, key=getkey(), modes=("fwd",))
    # static: not a leaf, so no transformation sees (or differentiates) it
    assert {f.name: f for f in dataclasses.fields(NeuralDDE)}["t1"].metadata.get("static")
    assert not any(leaf is model.t1 for leaf in jax.tree_util.tree_leaves(model))
