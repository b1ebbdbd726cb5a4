"""The gradient-check matrix of `jaxdyn.dde` and `NeuralDDE`.

The delay derivative is checked against the **exact** derivative of the method-of-steps solution
of $x'(t) = b\\,x(t - \\tau)$ with the history $h(t) = c_0 + a\\cos t + c\\sin t$ (closed forms on each
interval $[k\\tau, (k+1)\\tau]$: polynomials in $t$ times $1, \\cos t, \\sin t$, built below by exact
polynomial arithmetic and differentiated by JAX), everything else against central differences of
the same function (float64, 1e-6 relative). Compiled solves are shared: one solve per solver and
adjoint, `vmap`ped over cases, evaluation points as `saveat`.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import dde
from tests.helpers import rel_err

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


def test_exact_solution_is_exact():
    # x = 1 - t on [0, 1], 1 - t + (t - 1)^2 / 2 on [1, 2]; cos history: 1 - sin(t - tau) - sin(tau)
    got = exact_solution(jnp.array([0.5, 1.5]), 1.0, -1.0, jnp.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(got, [0.5, -0.375], rtol=1e-14)
    got = exact_solution(jnp.array([0.5]), 0.7, -1.0, jnp.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(got, [1 - np.sin(0.5 - 0.7) - np.sin(0.7)], rtol=1e-14)
    # the closed form of the constant-history derivative: sum_j (-1)^(j+1) (j-1) (t-(j-1)tau)^(j-1)/(j-1)!
    g = jax.jacfwd(exact_solution, 1)(jnp.array([3.5]), 1.0, -1.0, jnp.array([1.0, 0.0, 0.0]))
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
