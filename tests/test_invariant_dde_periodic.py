"""Periodic orbits of delay equations (`jaxdyn.invariant.dde_periodic_orbit`, the branch problem).

Known answers: Hutchinson's equation x' = r x (1 - x(t - tau)) (the cycle at r tau = 1.8 against a
long simulation with `jaxdyn.dde.solve`; the branch from the Hopf point r tau = pi/2, period -> 2 pi / r),
Mackey-Glass at tau = 8 against simulation, spectral convergence in N, and the Floquet multipliers of
Stuart-Landau written as a delay equation (exp(-2 mu T)).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optimistix as optx
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.dde import solve
from jaxdyn.invariant import (
    DDEPeriodicOrbitProblem,
    DDEPeriodicOrbitResult,
    continuation,
    dde_cycle_branch_start,
    dde_hopf,
    dde_orbit_guess_from_hopf,
    dde_periodic_orbit,
    switch_branch,
)

from .helpers import fd_directional

TAU = 1.8


def hutchinson(t, y, yd, args):
    """x' = r x (1 - x(t - tau)), r = args (None: r = 1)."""
    r = 1.0 if args is None else args
    return r * y * (1.0 - yd[0])


def hutchinson_in_tau(t, y, yd, tau):
    """Hutchinson with r = 1 when `args` is the delay (the continuation parameter)."""
    return y * (1.0 - yd[0])


def mackey_glass(t, y, yd, args):
    z = yd[0]
    return 0.2 * z / (1.0 + z**10) - 0.1 * y


def mackey_glass_in_tau(t, y, yd, tau):
    return mackey_glass(t, y, yd, None)


def stuart_landau(t, y, yd, args):
    """r' = mu r - r^3, theta' = omega (mu = 0.5, omega = 1.3), plus the delayed feedback
    K (x(t - tau) - x(t)) with K = args (Pyragas control: with tau = T it vanishes on the cycle)."""
    rr = jnp.sum(y**2)
    own = jnp.array([0.5 * y[0] - 1.3 * y[1] - rr * y[0], 1.3 * y[0] + 0.5 * y[1] - rr * y[1]])
    return own + args * (yd[0] - y)


def sine_guess(s):
    return 1.0 + 0.8 * jnp.sin(2 * jnp.pi * s)[None]


def _simulate(field, tau, t1):
    return solve(field, jnp.array([1.2]), jnp.array([tau]), 0.0, t1, dt0=0.05, max_steps=20000,
                 stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))


def _simulated_cycle(sol, t1, window):
    """Period (mean spacing of upward crossings of x = 1) and amplitude (max - min, each extreme
    refined by a parabola through its three samples) over the last `window` of a long run."""
    ts = np.linspace(t1 - window, t1, int(window * 500) + 1)
    xs = np.asarray(sol.evaluate(ts))[:, 0]
    z = xs - 1.0
    i = np.where((z[:-1] < 0) & (z[1:] >= 0))[0]
    crossings = ts[i] - z[i] * (ts[i + 1] - ts[i]) / (z[i + 1] - z[i])

    def extreme(sign):
        j = int(np.argmax(sign * xs))
        a, b, c = xs[j - 1], xs[j], xs[j + 1]
        return b - (a - c) ** 2 / (8 * (a - 2 * b + c))

    return float(np.mean(np.diff(crossings))), extreme(1) - extreme(-1)


@pytest.fixture(scope="module")
def orbit_fn():
    """One compiled solver per shape, shared by the tests."""
    return eqx.filter_jit(dde_periodic_orbit)


@pytest.fixture(scope="module")
def hutch(orbit_fn):
    return orbit_fn(hutchinson, jnp.array([TAU]), sine_guess, jnp.array(7.5), n_points=32, n_multipliers=4)


def test_hutchinson_cycle_matches_simulation(hutch):
    period, amplitude = _simulated_cycle(_simulate(hutchinson, TAU, 150.0), 150.0, 40.0)
    assert hutch.successful
    assert abs(float(hutch.period) - period) < 1e-6 * period        # measured ~1e-9
    assert abs(float(hutch.amplitude[0]) - amplitude) < 1e-6         # measured ~1e-9
    assert abs(float(hutch.period) - 7.5303609415) < 1e-9
    assert float(hutch.residual_norm) < 1e-10


def test_spectral_convergence(orbit_fn, hutch):
    """N = 32, 64 and 127 (odd: no Nyquist mode) agree to rounding: the cycle is analytic, the
    Fourier error geometric."""
    finer = [orbit_fn(hutchinson, jnp.array([TAU]), sine_guess, jnp.array(7.5), n_points=n)
             for n in (64, 127)]
    for res in finer:
        assert abs(float(res.period) - float(hutch.period)) < 1e-11
        assert abs(float(res.amplitude[0]) - float(hutch.amplitude[0])) < 1e-9
    # the same orbit in the same phase (the phase condition against the same guess function)
    fine_on_coarse = finer[1].evaluate(jnp.arange(32) * finer[1].period / 32)
    assert finer[1].values.shape == (127, 1)
    assert float(jnp.max(jnp.abs(fine_on_coarse - hutch.values))) < 1e-9


def test_mackey_glass_cycle_matches_simulation(orbit_fn):
    sol = _simulate(mackey_glass, 8.0, 400.0)
    period, amplitude = _simulated_cycle(sol, 400.0, 60.0)
    n = 64
    guess = np.asarray(sol.evaluate(400.0 - period + period * np.arange(n) / n))
    res = orbit_fn(mackey_glass, jnp.array([8.0]), jnp.asarray(guess), jnp.array(period), n_points=n,
                   n_multipliers=3)
    assert res.successful
    assert abs(float(res.period) - period) < 1e-6 * period           # 25.7661347
    assert abs(float(res.amplitude[0]) - amplitude) < 1e-6
    mult = np.asarray(res.multipliers)
    assert abs(mult[0] - 1.0) < 1e-7                                 # the trivial multiplier
    assert np.all(np.abs(mult[1:]) < 1.0)                            # the cycle is stable


def test_floquet_multipliers_of_stuart_landau(orbit_fn):
    """Stuart-Landau with delayed feedback K (x(t - tau) - x(t)). K = 0, tau = 10 > T: the ODE's
    multipliers 1 and exp(-2 mu T), then zeros. K = 0.3, tau = T (Pyragas): the cycle is unchanged and,
    in the co-rotating frame, each multiplier z solves z = exp(T (-2 mu - K + K / z)) (radial) or
    z = exp(T (-K + K / z)) (phase): checked to 1e-12 for the six largest."""
    period = 2 * np.pi / 1.3
    circle = lambda s: 0.6 * jnp.array([jnp.cos(2 * jnp.pi * s), jnp.sin(2 * jnp.pi * s)])  # noqa: E731
    for tau, k in ((10.0, 0.0), (period, 0.3)):
        res = orbit_fn(stuart_landau, jnp.array([tau]), circle, jnp.array(5.0), args=jnp.array(k),
                       n_points=16, n_multipliers=6, n_chebyshev=40, history_periods=3)
        assert abs(float(res.period) - period) < 1e-12
        assert abs(float(res.amplitude[0]) - 2 * np.sqrt(0.5)) < 1e-12
        z = np.asarray(res.multipliers)
        assert abs(z[0] - 1.0) < 1e-10
        if k == 0.0:
            assert abs(z[1] - np.exp(-2 * 0.5 * period)) < 1e-10
            assert np.all(np.abs(z[2:]) < 1e-8)
        else:
            radial = np.abs(np.exp(period * (-1.0 - k + k / z)) - z)
            phase = np.abs(np.exp(period * (-k + k / z)) - z)
            assert np.all(np.minimum(radial, phase) < 1e-12), (z, radial, phase)
            assert np.all(np.abs(z[1:]) > 0.1)                       # six genuine roots, no zeros
    # a history shorter than the delay: the multipliers are NaN, not wrong
    short = DDEPeriodicOrbitProblem(stuart_landau, jnp.array([10.0]), n_points=16, n_multipliers=2,
                                    n_chebyshev=8, history_periods=1)
    u = jnp.concatenate([res.values.ravel(), res.period[None]])
    assert np.all(np.isnan(np.asarray(eqx.filter_jit(short.spectrum)(u, jnp.array(0.0), None))))


def test_hutchinson_multipliers_converge_in_chebyshev_degree(hutch):
    problem = DDEPeriodicOrbitProblem(hutchinson, jnp.array([TAU]), n_points=32, n_multipliers=3,
                                      n_chebyshev=48)
    u = jnp.concatenate([hutch.values.ravel(), hutch.period[None]])
    coarse = np.asarray(eqx.filter_jit(problem.spectrum)(u, None, None))
    fine = np.asarray(hutch.multipliers[:3])
    assert np.max(np.abs(coarse - fine)) < 1e-8
    assert abs(fine[0] - 1.0) < 1e-10
    assert abs(fine[1] - 0.3578403) < 1e-6
    assert int(problem.n_unstable(jnp.asarray(fine))) == 0


def test_jit_no_retrace_and_vmap_over_tau():
    def orbit(tau):
        return dde_periodic_orbit(hutchinson, tau[None], sine_guess, 7.5, n_points=16, throw=False)

    jitted = eqx.filter_jit(eqx.debug.assert_max_traces(orbit, max_traces=1))
    taus = jnp.array([1.7, 1.75, 1.8])
    one = [float(jitted(tau).period) for tau in taus]
    batched = jax.vmap(orbit)(taus)
    eager = float(dde_periodic_orbit(hutchinson, jnp.array([1.8]), sine_guess, 7.5, n_points=16).period)
    assert abs(one[2] - eager) < 1e-12
    np.testing.assert_allclose(np.asarray(batched.period), one, rtol=1e-12)
    assert one[0] < one[1] < one[2]
    assert batched.summary().startswith("3 DDE periodic orbits (batched")


def hutchinson_r_tau(t, y, yd, args):
    return args[0] * y * (1.0 - yd[0])


def test_gradients_against_finite_differences():
    """dT/dr and dT/dtau (both in `args`, tau through callable delays) by the implicit function
    theorem, and the derivative of the second Floquet multiplier's modulus."""

    @eqx.filter_jit
    def quantities(x):
        res = dde_periodic_orbit(hutchinson_r_tau, lambda a: a[1][None], sine_guess, 7.5, args=(x[0], x[1]),
                                 n_points=16, tol=1e-12, n_multipliers=3, n_chebyshev=32)
        return jnp.stack([res.period, jnp.abs(res.multipliers[1])])

    x = jnp.array([1.0, TAU])
    jac = np.asarray(jax.jacrev(quantities)(x))
    for i in range(2):
        v = jnp.zeros(2).at[i].set(1.0)
        fd = np.asarray(fd_directional(quantities, x, v, 1e-3))
        np.testing.assert_allclose(jac[:, i], fd, rtol=1e-7)
    # T(r, tau) = T(1, r tau) / r: r dT/dr = tau dT/dtau - T
    assert abs(jac[0, 0] - (TAU * jac[0, 1] - float(quantities(x)[0]))) < 1e-8


def test_levenberg_marquardt_from_outside_newtons_basin(orbit_fn):
    far = lambda s: 1.0 + 1.2 * jnp.sin(2 * jnp.pi * s)[None]  # noqa: E731 - Newton diverges from here
    res = orbit_fn(hutchinson, jnp.array([TAU]), far, jnp.array(7.5), n_points=32,
                   solver=optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10))
    assert res.successful and abs(float(res.period) - 7.5303609415) < 1e-9


def test_throw_modes(orbit_fn):
    s = jnp.arange(16) / 16
    far = (1.0 + 1.2 * jnp.sin(2 * jnp.pi * s))[:, None]       # outside Newton's basin
    out = orbit_fn(hutchinson, jnp.array([TAU]), far, jnp.array(7.5), n_points=16, throw=False)
    assert not out.successful and out.result == RESULTS.not_converged
    with pytest.raises(eqx.EquinoxRuntimeError, match="did not converge"):
        orbit_fn(hutchinson, jnp.array([TAU]), far, jnp.array(7.5), n_points=16)
    flat = orbit_fn(hutchinson, jnp.array([TAU]), jnp.ones((16, 1)), jnp.array(7.5), n_points=16, throw=False)
    assert flat.result == RESULTS.invalid_period
    assert "collapsed" in flat.summary()


def test_summary_and_plot(hutch):
    text = hutch.summary()
    assert "period T = 7.53036094" in text and "amplitude" in text and "successful" in text
    assert "Floquet" in text
    assert isinstance(hutch, DDEPeriodicOrbitResult)
    ax = hutch.plot()
    assert ax.get_xlabel() == "$t$"
    ax2 = hutch.plot(embedding=True)
    assert "tau" in ax2.get_xlabel()
    plt.close("all")


def test_problem_interface(hutch):
    problem = DDEPeriodicOrbitProblem(hutchinson_in_tau, lambda tau: jnp.reshape(tau, (1,)), n_points=32,
                                      n_multipliers=0)
    u = jnp.concatenate([hutch.values.ravel(), hutch.period[None]])
    assert float(jnp.max(jnp.abs(problem.residual(u, jnp.array(TAU), None, u)))) < 1e-10
    assert problem.spectrum(u, jnp.array(TAU), None).shape == (0,)
    assert problem.test_functions(u, jnp.array(TAU), None, jnp.zeros((0,), complex)).shape == (2,)
    assert problem.dimension(u) == 33
    assert problem.test_names == ("period_doubling", "neimark_sacker")


def test_guess_from_hopf():
    u0 = dde_orbit_guess_from_hopf(jnp.array([1.0, 2.0]), jnp.array([1.0j, 2.0]), 0.5, 0.1, 8)
    assert u0.shape == (17,)
    assert abs(float(u0[-1]) - 4 * np.pi) < 1e-14
    values = np.asarray(u0[:-1]).reshape(8, 2)
    np.testing.assert_allclose(values.max(0) - values.min(0), [0.1, 0.2], atol=1e-2)
    np.testing.assert_allclose(values[0], [1.0, 2.1], atol=1e-14)


def test_branch_from_the_hopf_point_in_tau():
    """Hutchinson (r = 1) continued in tau from the Hopf point tau = pi/2: the amplitude -> 0 and the
    period -> 2 pi / omega = 2 pi there (extrapolated in amplitude^2), every cycle stable."""
    n = 16
    problem = DDEPeriodicOrbitProblem(hutchinson_in_tau, lambda tau: jnp.reshape(tau, (1,)), n_points=n,
                                      n_multipliers=3, n_chebyshev=24)
    u0 = dde_orbit_guess_from_hopf(jnp.array([1.0]), jnp.array([1.0 + 0j]), 1.0, 0.02, n)
    tangent = jnp.concatenate([u0[:-1] - 1.0, jnp.zeros(2)])
    branch = continuation(problem, u0, jnp.pi / 2, args=None, p_min=1.5, p_max=1.75,
                          tangent=tangent / jnp.linalg.norm(tangent), ds=0.02, ds_max=0.1, n_steps=12,
                          max_newton=20, throw=False)
    k = int(branch.n_points)
    assert k >= 8
    us, ps = np.asarray(branch.u[:k]), np.asarray(branch.p[:k])
    amp = us[:, :-1].max(1) - us[:, :-1].min(1)
    assert np.all(np.diff(amp) > 0) and np.all(np.diff(ps) > 0)
    # tau - pi/2 and T - 2 pi are quadratic in the amplitude near the Hopf point
    fit_p = np.polyfit(amp[:4] ** 2, ps[:4], 2)
    fit_t = np.polyfit(amp[:4] ** 2, us[:4, -1], 2)
    assert abs(fit_p[-1] - np.pi / 2) < 1e-6
    assert abs(fit_t[-1] - 2 * np.pi) < 1e-5
    assert bool(np.all(np.asarray(branch.stable[:k])))
    assert int(branch.n_special) == 0          # no spurious branch point (the Nyquist mode is pinned)


def _upward_crossings(ts, xs):
    z = xs - 1.0
    i = np.where((z[:-1] < 0) & (z[1:] >= 0))[0]
    return ts[i] - z[i] * (ts[i + 1] - ts[i]) / (z[i + 1] - z[i])


def _last_intervals(field, tau):
    """The last two intervals between upward crossings of x = 1 in a long simulation: equal on a
    period-1 cycle, different on a period-2 cycle."""
    t1 = 3000.0
    sol = solve(field, jnp.array([1.2]), jnp.array([tau]), 0.0, t1, dt0=0.1, max_steps=20000,
                stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
    ts = np.linspace(t1 - 200, t1, 100001)
    return np.diff(_upward_crossings(ts, np.asarray(sol.evaluate(ts))[:, 0]))[-2:]


@pytest.mark.slow
def test_mackey_glass_hopf_to_period_doubling():
    """The issue's pipeline on Mackey-Glass in tau: the Hopf point of the equilibrium (`dde_hopf`),
    the cycle branch from it, stable until its period doubling at tau = 13.24921526 (N = 128,
    M = 96; N = 96, M = 64 agrees to 6e-7), the doubled cycle by `switch_branch` up to tau = 13.7:
    its two sub-periods against a simulation (where the period-1 cycle at tau = 12.8 is stable)."""
    delays = lambda tau: jnp.reshape(tau, (1,))  # noqa: E731
    hopf = dde_hopf(mackey_glass_in_tau, jnp.ones(1), delays, 4.0)
    b = 0.2 * (1 - 10 / 2) / 2
    omega = np.sqrt(b**2 - 0.01)
    assert abs(float(hopf.omega) - omega) < 1e-9
    assert abs(float(hopf.parameter) - np.arccos(0.1 / b) / omega) < 1e-9
    n = 64
    problem = DDEPeriodicOrbitProblem(mackey_glass_in_tau, delays, n_points=n, n_multipliers=3,
                                      n_chebyshev=48)
    branch = continuation(dde_cycle_branch_start(hopf, problem, amplitude=0.01), p_min=4.0, p_max=14.0,
                          ds=0.02, ds_max=1.0, n_steps=60, max_newton=20)
    specials = branch.specials()
    assert [kind for kind, _, _ in specials] == ["period_doubling"]
    assert abs(specials[0][1] - 13.24921526) < 5e-5                   # measured 1.3e-5
    k = int(branch.n_points)
    ps, stable = np.asarray(branch.p[:k]), np.asarray(branch.stable[:k])
    assert np.all(stable[ps < 13.2]) and not np.any(stable[ps > 13.3])
    assert abs(float(branch.u[0, -1]) - 2 * np.pi / omega) < 0.1       # the period at the Hopf end
    assert abs(np.diff(_last_intervals(mackey_glass, 12.8))[0]) < 1e-3   # period 1: a slow transient
    # switch onto the doubled cycle and follow it to tau = 13.7, where it is stable
    doubled = continuation(switch_branch(branch, 0, amplitude=0.02), p_min=13.0, p_max=13.7, ds=0.02,
                           ds_max=0.2, n_steps=20, max_newton=20, throw=False)
    k = int(doubled.n_points)
    ps = np.asarray(doubled.p[:k])
    assert type(doubled.problem).__name__ == "DDEPeriodicOrbitProblem" and doubled.problem.n_points == 2 * n
    assert ps[0] > specials[0][1] and ps[-1] > 13.5 and bool(np.all(np.asarray(doubled.stable[:k])))
    last = np.asarray(doubled.u[k - 1])
    res = dde_periodic_orbit(mackey_glass, jnp.array([13.7]), last[:-1].reshape(2 * n, 1), last[-1],
                             n_points=2 * n)
    ts = np.linspace(0.0, 2 * float(res.period), 20001)
    crossings = _upward_crossings(ts, np.asarray(res.evaluate(ts))[:, 0])
    sub = np.sort(np.diff(crossings)[:2])                             # 40.6106833, 40.7575511
    np.testing.assert_allclose(sub, np.sort(_last_intervals(mackey_glass, 13.7)), atol=1e-5)
    assert abs(float(res.period) - sub.sum()) < 1e-6


class DelayedTanh(eqx.Module):
    """A one-neuron neural DDE, x' = -x + w_0 tanh(w_1 x(t - tau)) (odd: its cycle has the symmetry
    x(t + T/2) = -x(t)); the weights are module leaves."""

    w: jax.Array

    def __call__(self, t, y, yd, args):
        return -y + self.w[0] * jnp.tanh(self.w[1] * yd[0])


def test_neural_delay_field_cycle_and_weight_gradient():
    """A module field: the cycle beyond the Hopf point tau = 2 pi / (3 sqrt 3), its odd symmetry, and
    dT/dw through `eqx.filter_grad` (the weights as leaves of the field) against finite differences."""

    @eqx.filter_jit
    def solve_for(model):
        return dde_periodic_orbit(model, jnp.array([2.0]), lambda s: jnp.sin(2 * jnp.pi * s)[None], 5.0,
                                  n_points=32, tol=1e-12)

    model = DelayedTanh(jnp.array([-2.0, 1.0]))
    res = solve_for(model)
    assert abs(float(res.period) - 5.470746807595) < 1e-9
    half = res.evaluate(jnp.arange(32) * res.period / 32 + res.period / 2)
    assert float(jnp.max(jnp.abs(half + res.values))) < 1e-10
    grad = eqx.filter_grad(lambda m: solve_for(m).period)(model).w
    for i in range(2):
        v = jnp.zeros(2).at[i].set(1.0)
        fd = float(fd_directional(lambda w: solve_for(DelayedTanh(w)).period, model.w, v, 1e-3))
        assert abs(float(grad[i]) - fd) < 1e-7 * abs(fd), (i, float(grad[i]), fd)
