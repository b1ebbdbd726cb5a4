"""Characteristic roots of delay equations, DDE stability and Hopf points against closed forms.

x' = -x(t - tau): roots W_k(-tau) / tau (Lambert W); Hutchinson x' = r x (1 - x(t - tau)) at x = 1:
Hopf at r tau = pi / 2 with omega = r; Mackey-Glass: the Hopf delay of the scalar linearisation
x' = -gamma x + b x(t - tau) in closed form; two delays checked by an independent Newton (scipy).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import fsolve
from scipy.special import lambertw

from jaxdyn._results import RESULTS
from jaxdyn.invariant import (
    CharacteristicRootsResult,
    DDEHopfProblem,
    DDEHopfResult,
    characteristic_roots,
    dde_hopf,
    dde_stability,
    linearise_dde,
)

from .helpers import fd_directional

ZERO = jnp.zeros((1, 1))
MINUS_ONE = -jnp.ones((1, 1, 1))


def _roots_fn(A0, A, delays):
    return characteristic_roots(A0, A, delays, throw=False)


ROOTS = eqx.filter_jit(_roots_fn)


def hutchinson(t, y, yd, args):
    return args["r"] * y * (1 - yd[0])


def set_tau(args, p):
    return {**args, "tau": p}


def set_r(args, p):
    return {**args, "r": p}


def tau_of(args):
    return jnp.stack([args["tau"]])


def _lambert_roots(tau, k):
    ws = np.array([lambertw(-tau, j) for j in range(-k, k + 1)]) / tau
    return ws[np.lexsort((-ws.imag, -ws.real))]


@pytest.fixture(scope="module")
def lambert():
    return ROOTS(ZERO, MINUS_ONE, jnp.array([1.0]))


def test_lambert_w_roots(lambert):
    exact = _lambert_roots(1.0, 8)[:10]
    roots = np.asarray(lambert.roots)
    assert abs(roots[0] - complex(-0.318131505204764, 1.337235701430689)) < 1e-10
    assert abs(roots[1] - complex(-0.318131505204764, -1.337235701430689)) < 1e-10
    np.testing.assert_allclose(roots, exact, atol=1e-10, rtol=0)
    assert float(np.max(lambert.residuals)) < 1e-12
    assert bool(lambert.stable) and abs(float(lambert.spectral_abscissa) + 0.318131505204764) < 1e-10
    assert isinstance(lambert, CharacteristicRootsResult) and bool(lambert.successful)


def test_jit_eager_agree_and_no_retrace(lambert):
    eager = characteristic_roots(ZERO, MINUS_ONE, jnp.array([1.0]), n_roots=10)
    np.testing.assert_allclose(np.asarray(eager.roots), np.asarray(lambert.roots), atol=1e-13)
    counted = eqx.debug.assert_max_traces(_roots_fn, max_traces=1)
    jitted = eqx.filter_jit(counted)
    jitted(ZERO, MINUS_ONE, jnp.array([1.0]))
    second = jitted(ZERO, MINUS_ONE, jnp.array([2.0]))
    np.testing.assert_allclose(np.asarray(second.roots[:2]), _lambert_roots(2.0, 3)[:2], atol=1e-10)


def test_vmap_over_tau():
    taus = jnp.array([0.5, 1.0, 1.5])
    batch = eqx.filter_jit(jax.vmap(lambda tau: _roots_fn(ZERO, MINUS_ONE, tau[None])))(taus)
    for i, tau in enumerate(np.asarray(taus)):
        np.testing.assert_allclose(np.asarray(batch.roots[i, :4]), _lambert_roots(tau, 3)[:4], atol=1e-10)
    assert bool(np.all(np.asarray(batch.successful)))
    assert "stable" in batch.summary()


def test_grad_of_rightmost_root_wrt_tau():
    def abscissa(tau):
        return _roots_fn(ZERO, MINUS_ONE, tau[None]).roots[0].real

    tau = jnp.array(1.0)
    grad = jax.jit(jax.grad(abscissa))(tau)
    lam = complex(lambertw(-1.0, 0))
    exact = (-(lam**2) / (1 + lam)).real                    # d lambda / d tau = -lambda^2 / (1 + lambda tau)
    fd = fd_directional(jax.jit(abscissa), tau, jnp.array(1.0))
    assert abs(float(grad) - exact) < 1e-8
    assert abs(float(grad) - float(fd)) < 1e-6


def test_two_delays_against_independent_newton():
    # x' = A0 x + A1 x(t - 0.7) + A2 x(t - 1.3), two non-commuting 2 x 2 couplings
    A0 = jnp.array([[-0.5, 0.3], [0.1, -0.2]])
    A = jnp.array([[[-0.8, 0.2], [0.0, -0.4]], [[0.1, -0.6], [0.5, -0.3]]])
    delays = jnp.array([0.7, 1.3])
    res = ROOTS(A0, A, delays)
    An, An0, dn = np.asarray(A), np.asarray(A0), np.asarray(delays)

    def det(z):
        lam = z[0] + 1j * z[1]
        M = lam * np.eye(2) - An0 - sum(np.exp(-lam * t) * a for a, t in zip(An, dn))
        d = np.linalg.det(M)
        return [d.real, d.imag]

    for lam in np.asarray(res.roots):
        start = [lam.real + 1e-3, lam.imag - 1e-3]
        z = fsolve(det, start, xtol=1e-13)
        assert abs(complex(z[0], z[1]) - lam) < 1e-10, (lam, z)
    assert float(np.max(res.residuals)) < 1e-12


def test_scalar_two_delays_by_residual():
    a, b, t1, t2 = 1.0, 0.5, 1.0, 2.5
    res = ROOTS(ZERO, jnp.array([[[-a]], [[-b]]]), jnp.array([t1, t2]))
    lam = np.asarray(res.roots)
    char = lam + a * np.exp(-lam * t1) + b * np.exp(-lam * t2)
    assert float(np.max(np.abs(char) / (1 + np.abs(lam)))) < 1e-12
    assert np.all(np.diff(lam.real) <= 1e-12)


def test_hutchinson_stability_and_linearisation():
    A0, A = linearise_dde(hutchinson, jnp.ones(1), jnp.array([1.0]), args={"r": 1.5})
    np.testing.assert_allclose(np.asarray(A0), [[0.0]])
    np.testing.assert_allclose(np.asarray(A), [[[-1.5]]])
    stability = eqx.filter_jit(lambda delays: dde_stability(hutchinson, jnp.ones(1), delays,
                                                            args={"r": jnp.array(1.0)}, n_roots=4))
    below, above = stability(jnp.array([1.2])), stability(jnp.array([1.8]))
    assert bool(below.stable) and not bool(above.stable)


def _hopf_at(r):
    args = {"r": r, "tau": jnp.array(1.2)}
    return dde_hopf(hutchinson, jnp.ones(1), tau_of, 1.2 / r, args=args, parameter=set_tau, throw=False)


RS = jnp.array([0.8, 1.0, 1.25])


@pytest.fixture(scope="module")
def hopf_batch():
    return eqx.filter_jit(jax.vmap(_hopf_at))(RS)


@pytest.fixture(scope="module")
def hopf_tau(hopf_batch):
    return jax.tree_util.tree_map(lambda x: x[1], hopf_batch)


def test_hutchinson_hopf_in_tau(hopf_tau):
    assert isinstance(hopf_tau, DDEHopfResult) and bool(hopf_tau.successful)
    assert abs(float(hopf_tau.parameter) - np.pi / 2) < 1e-10
    assert abs(float(hopf_tau.omega) - 1.0) < 1e-10
    assert abs(float(hopf_tau.period) - 2 * np.pi) < 1e-9
    # d Re(lambda) / d tau = Re(-lambda^2 / (1 + lambda tau)) at lambda = i: unstable above
    assert abs(float(hopf_tau.crossing_speed) - 1 / (1 + np.pi**2 / 4)) < 1e-10
    assert float(hopf_tau.residual_norm) < 1e-12


def test_hutchinson_hopf_in_r():
    args = {"r": jnp.array(0.8), "tau": jnp.array(2.0)}
    hopf = dde_hopf(hutchinson, jnp.ones(1), tau_of, 0.8, args=args, parameter=set_r)
    assert abs(float(hopf.parameter) * 2.0 - np.pi / 2) < 1e-10
    assert abs(float(hopf.omega) - float(hopf.parameter)) < 1e-10
    assert float(hopf.crossing_speed) > 0


def test_mackey_glass_hopf_delay():
    beta, gamma, n = 0.2, 0.1, 10

    def mackey_glass(t, y, yd, tau):
        return beta * yd[0] / (1 + yd[0] ** n) - gamma * y

    b = beta * (1 - n / 2) / 2
    omega = np.sqrt(b**2 - gamma**2)
    tau = np.arccos(gamma / b) / omega
    hopf = dde_hopf(mackey_glass, jnp.ones(1), lambda tau: jnp.stack([tau]), 4.0)
    assert abs(float(hopf.parameter) - tau) < 1e-10
    assert abs(float(hopf.omega) - omega) < 1e-10


def test_hopf_jit_and_vmap_over_r(hopf_batch):
    np.testing.assert_allclose(np.asarray(hopf_batch.parameter * RS), np.pi / 2, atol=1e-10)
    np.testing.assert_allclose(np.asarray(hopf_batch.omega), np.asarray(RS), atol=1e-10)
    assert "3 Hopf points" in hopf_batch.summary()


def test_hopf_problem_residual_vanishes_at_the_hopf_point(hopf_tau):
    problem = DDEHopfProblem(hutchinson, jnp.ones(1), tau_of, hopf_parameter=set_tau, parameter=set_r)
    u = hopf_tau.unknowns
    args = {"r": jnp.array(1.0), "tau": jnp.array(0.0)}
    assert u.shape == (4,) and problem.dimension(u) == 4
    assert float(jnp.max(jnp.abs(problem.residual(u, jnp.array(1.0), args, u)))) < 1e-12
    assert float(jnp.max(jnp.abs(problem.residual(u, jnp.array(1.1), args, u)))) > 1e-3
    assert problem.spectrum(u, jnp.array(1.0), args).shape == (0,)
    assert problem.test_functions(u, jnp.array(1.0), args, problem.spectrum(u, 1.0, args)).shape == (0,)
    assert int(problem.n_unstable(jnp.zeros((0,), complex))) == 0 and DDEHopfProblem.test_names == ()


def test_throw_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match="did not converge"):
        characteristic_roots(ZERO, MINUS_ONE, jnp.array([1.0]), n_roots=2, n_nodes=4, n_newton=1)
    res = characteristic_roots(ZERO, MINUS_ONE, jnp.array([1.0]), n_roots=2, n_nodes=4, n_newton=1,
                               throw=False)
    assert res.result == RESULTS.not_converged and "did not converge" in res.summary()


def test_summary_and_plot(lambert, hopf_tau):
    import matplotlib.pyplot as plt

    assert "-0.3181315052" in lambert.summary() and "stable" in lambert.summary()
    assert "1.57079632679" in hopf_tau.summary() and "omega = 1" in hopf_tau.summary()
    ax = lambert.plot()
    assert ax.get_xlabel().startswith("Re")
    fig, ax2 = plt.subplots()
    assert hopf_tau.plot(ax=ax2) is ax2
    plt.close("all")


def test_continuation_of_hutchinson_hopf_points_in_r(hopf_tau):
    invariant = pytest.importorskip("jaxdyn.invariant")
    if "continuation" not in vars(invariant):
        pytest.skip("continuation has not landed")
    problem = DDEHopfProblem(hutchinson, jnp.ones(1), tau_of, hopf_parameter=set_tau, parameter=set_r)
    args = {"r": jnp.array(1.0), "tau": jnp.array(1.2)}
    branch = invariant.continuation(problem, hopf_tau.unknowns, jnp.array(1.0), args=args, p_min=0.5,
                                    p_max=2.0, n_steps=20, ds=0.1)
    n = int(branch.n_points)
    u, r = np.asarray(branch.u)[:n], np.asarray(branch.p)[:n]
    assert n >= 5 and r.max() > 2.0
    np.testing.assert_allclose(u[:, -1] * r, np.pi / 2, atol=1e-10)     # r tau = pi / 2 along the branch
    np.testing.assert_allclose(u[:, -2], r, atol=1e-10)                # omega = r


class Hutchinson(eqx.Module):
    """x' = r x (1 - x(t - tau)) with r a field parameter (a model as data); args is tau."""

    r: jax.Array

    def __call__(self, t, y, yd, tau):
        return self.r * y * (1 - yd[0])


def test_grad_of_hopf_delay_wrt_field_parameter():
    def hopf_delay(r):
        return dde_hopf(Hutchinson(r), jnp.ones(1), lambda tau: jnp.stack([tau]), 1.2, throw=False).parameter

    r = jnp.array(1.25)
    grad = jax.jit(jax.grad(hopf_delay))(r)
    fd = fd_directional(jax.jit(hopf_delay), r, jnp.array(1.0))
    assert abs(float(grad) + np.pi / (2 * 1.25**2)) < 1e-9               # tau_H = pi / (2 r)
    assert abs(float(grad) - float(fd)) < 1e-6


def test_float32_inputs_get_a_float32_tolerance():
    f32 = jnp.float32
    res = characteristic_roots(ZERO.astype(f32), MINUS_ONE.astype(f32), jnp.array([1.0], f32), n_roots=2)
    assert res.roots.dtype == jnp.complex64 and bool(res.successful)
    assert abs(complex(res.roots[0]) - complex(lambertw(-1.0, 0))) < 1e-5
