"""Periodic orbits by multiple shooting (`periodic_orbit`, `PeriodicOrbitProblem`): Stuart-Landau
against its closed form (radius sqrt(mu), period 2 pi / omega, multipliers 1 and exp(-2 mu T)),
multipliers independent of the number of segments, a lifted Stuart-Landau with multipliers 1e-12
and 1e8, the transforms (jit without retracing, vmap over mu, grad of the period w.r.t. omega),
both throw modes, summary/plot, and the branch-problem interface."""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import PeriodicOrbitProblem, PeriodicOrbitResult, periodic_orbit
from jaxdyn.invariant._periodic import orbit_guess_from_hopf

matplotlib.use("Agg")

TWO_PI = 2 * np.pi
A_SMALL = np.log(1e-12) / TWO_PI  # z' = a z over T = 2 pi: multiplier 1e-12
A_BIG = np.log(1e8) / TWO_PI  # multiplier 1e8


def stuart_landau(t, y, args):
    """r' = mu r - r^3, theta' = omega, in Cartesian form."""
    mu, omega = args
    r2 = y[0] ** 2 + y[1] ** 2
    return jnp.stack([mu * y[0] - omega * y[1] - r2 * y[0], omega * y[0] + mu * y[1] - r2 * y[1]])


def lifted(t, y, args):
    """Stuart-Landau with extra linear directions z_k' = a_k z_k."""
    mu, omega, a = args
    return jnp.concatenate([stuart_landau(t, y[:2], (mu, omega)), a * y[2:]])


ARGS = (jnp.array(1.0), jnp.array(1.0))
GUESS = jnp.array([1.2, 0.1])


def _sl(args, guess, *, n_segments=8, throw=False):
    return periodic_orbit(stuart_landau, guess, 6.0, args=args, n_segments=n_segments, throw=throw)


@pytest.fixture(scope="module")
def by_segments():
    """One compile per number of segments (shared by the tests); m = 2 starts from segment starts."""
    starts = 1.05 * np.stack([np.cos(np.pi * np.arange(2)), np.sin(np.pi * np.arange(2)) + 0.1], axis=1)
    guesses = {2: jnp.asarray(starts), 8: GUESS, 32: GUESS}
    return {m: _sl(ARGS, guesses[m], n_segments=m) for m in (2, 8, 32)}


def _expected(mu, omega):
    T = TWO_PI / omega
    return T, np.array([1.0, np.exp(-2 * mu * T)])


def test_stuart_landau_closed_form(by_segments):
    res = by_segments[8]
    assert isinstance(res, PeriodicOrbitResult) and bool(res.successful)
    T, mults = _expected(1.0, 1.0)
    assert abs(float(res.period) - T) < 1e-8
    assert np.max(np.abs(np.linalg.norm(np.asarray(res.states), axis=1) - 1.0)) < 1e-8  # radius sqrt(mu)
    assert np.max(np.abs(np.asarray(res.multipliers) - mults)) < 1e-8
    assert float(res.trivial_error) < 1e-8
    assert bool(res.stable) and float(res.residual_norm) < 1e-9
    ts, ys = res.orbit()
    assert ts.shape[0] == ys.shape[0] and float(ts[0]) == 0.0
    assert np.max(np.abs(np.linalg.norm(np.asarray(ys), axis=1) - 1.0)) < 1e-8


def test_multipliers_do_not_depend_on_the_number_of_segments(by_segments):
    T, mults = _expected(1.0, 1.0)
    for m, res in by_segments.items():
        assert bool(res.successful), m
        assert res.states.shape == (m, 2)
        assert abs(float(res.period) - T) < 1e-8, m
        assert np.max(np.abs(np.asarray(res.multipliers) - mults)) < 1e-8, m
        assert float(res.trivial_error) < 1e-8, m
    values = np.stack([np.asarray(r.multipliers) for r in by_segments.values()])
    assert np.max(np.abs(values - values[0])) < 1e-8


def test_lifted_multipliers_1e_12_and_1e8():
    args = (jnp.array(1.0), jnp.array(1.0), jnp.array([A_SMALL, A_BIG]))
    res = periodic_orbit(lifted, jnp.array([1.1, 0.0, 0.0, 0.0]), 6.3, args=args, n_segments=8)
    expected = np.array([1e8, 1.0, np.exp(-2 * TWO_PI), 1e-12])
    assert np.max(np.abs(np.asarray(res.multipliers) - expected) / expected) < 1e-8
    assert float(res.trivial_error) < 1e-8
    assert not bool(res.stable)
    text = res.summary()
    assert "unstable" in text and "6.28318530" in text


def test_summary_and_plot(by_segments):
    import matplotlib.pyplot as plt

    res = by_segments[8]
    text = res.summary()
    assert "T = 6.283185307" in text and "stable" in text and "Floquet" in text
    ax = res.plot()
    assert ax.get_xlabel() == "$y_0$"
    plt.close(ax.figure)
    fig, ax = plt.subplots()
    assert res.plot(ax=ax, dims=(1, 0)) is ax
    plt.close(fig)


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=1)
def _batch(mus):
    """vmap over mu under one jit; the guess scales with the radius sqrt(mu) (a negative mu has no
    orbit: that member must be flagged, not the batch)."""
    def one(mu):
        guess = jnp.sqrt(jnp.abs(mu)) * GUESS
        return periodic_orbit(stuart_landau, guess, 6.0, args=(mu, jnp.array(1.0)), throw=False)

    return jax.vmap(one)(mus)


def test_jit_no_retrace_vmap_over_mu_and_a_flagged_member(by_segments):
    mus = jnp.array([0.5, 1.0, 1.5, -1.0])
    batch = _batch(mus)
    again = _batch(jnp.array([0.5, 1.0, 1.5, -1.0]))  # no second trace (assert_max_traces)
    assert np.array_equal(np.asarray(batch.period), np.asarray(again.period), equal_nan=True)
    assert batch.period.shape == (4,)
    assert list(np.asarray(batch.successful)) == [True, True, True, False]
    assert int(batch.result._value[3]) in (RESULTS.invalid_period._value, RESULTS.not_converged._value)
    for k, mu in enumerate(np.asarray(mus)[:3]):
        T, mults = _expected(mu, 1.0)
        assert abs(float(batch.period[k]) - T) < 1e-8
        assert np.max(np.abs(np.asarray(batch.multipliers[k]) - mults)) < 1e-8
        radius = np.linalg.norm(np.asarray(batch.states[k]), axis=1)
        assert np.max(np.abs(radius - np.sqrt(mu))) < 1e-8
    assert abs(float(batch.period[1]) - float(by_segments[8].period)) < 1e-10  # jit == eager
    assert "4 periodic orbits" in batch.summary()


@pytest.mark.slow
def test_grad_of_the_period_and_a_multiplier():
    """Reverse mode, implicit: d(T, mu_2)/d(mu, omega) with T = 2 pi / omega, mu_2 = exp(-2 mu T)."""
    def outputs(p):
        res = periodic_orbit(stuart_landau, GUESS, 6.0, args=(p[0], p[1]), n_segments=4, throw=False)
        return jnp.stack([res.period, jnp.real(res.multipliers[1])])

    mu, omega = 1.0, 1.3
    p = jnp.array([mu, omega])
    jac = np.asarray(jax.jacrev(outputs)(p))
    T = TWO_PI / omega
    m2 = np.exp(-2 * mu * T)
    expected = np.array([[0.0, -TWO_PI / omega**2], [-2 * T * m2, 2 * mu * TWO_PI / omega**2 * m2]])
    assert np.max(np.abs(jac - expected) / np.array([[1.0, 1.0], [abs(m2), abs(m2)]])) < 1e-7
    h = 1e-5
    step = jnp.array([0.0, h])
    fd = (np.asarray(outputs(p + step)) - np.asarray(outputs(p - step))) / (2 * h)
    assert abs(jac[0, 1] - fd[0]) < 1e-6


def test_throw_modes():
    # mu < 0: the only invariant set is the stable focus at 0; Newton collapses onto it or diverges
    args = (jnp.array(-1.0), jnp.array(1.0))
    res = _sl(args, GUESS)  # the compile of the m = 8 fixture
    assert not bool(res.successful)
    assert int(res.result._value) in (RESULTS.invalid_period._value, RESULTS.not_converged._value)
    assert "period" in res.summary() or "iteration" in res.summary()
    with pytest.raises(eqx.EquinoxRuntimeError, match="period|iteration"):
        _sl(args, GUESS, throw=True)


def test_branch_problem_interface(by_segments):
    res = by_segments[8]
    problem = PeriodicOrbitProblem(stuart_landau, parameter=lambda a, p: (p, a[1]), n_segments=8)
    assert problem.test_names == ("period_doubling", "neimark_sacker")
    u = jnp.concatenate([res.states.ravel(), res.period[None]])
    assert problem.dimension(u) == 17

    @eqx.filter_jit
    def evaluate(problem, u, p):
        return problem.residual(u, p, ARGS, u), problem.spectrum(u, p, ARGS)

    r, spectrum = evaluate(problem, u, jnp.array(1.0))
    assert r.shape == (17,) and float(jnp.max(jnp.abs(r))) < 1e-9
    assert np.max(np.abs(np.asarray(spectrum) - _expected(1.0, 1.0)[1])) < 1e-8
    assert int(problem.n_unstable(spectrum)) == 0
    tests = np.asarray(problem.test_functions(u, jnp.array(1.0), ARGS, spectrum))
    assert tests.shape == (2,) and tests[0] > 0
    # the test functions change sign as a real multiplier crosses -1 / a pair crosses the circle
    flip = [problem.test_functions(u, 0.0, ARGS, jnp.array([1.0, x + 0j]))[0] for x in (-0.9, -1.1)]
    assert float(flip[0]) > 0 > float(flip[1])
    ring = [problem.test_functions(u, 0.0, ARGS, jnp.array([1.0, r * np.exp(0.5j), r * np.exp(-0.5j)]))[1]
            for r in (0.9, 1.1)]
    assert float(ring[0]) * float(ring[1]) < 0
    assert int(problem.n_unstable(jnp.array([1.0 + 1e-9, 1.5, 0.2]))) == 1


def test_orbit_guess_from_hopf():
    u0 = orbit_guess_from_hopf(jnp.array([0.0, 0.0]), jnp.array([1.0, -1j]), 2.0, 0.5, 4)
    states, T = u0[:-1].reshape(4, 2), float(u0[-1])
    assert abs(T - np.pi) < 1e-15
    v = np.array([1.0, -1j]) / np.sqrt(2)
    expected = 0.5 * np.real(np.exp(2j * np.pi * np.arange(4) / 4)[:, None] * v[None, :])
    assert np.allclose(np.asarray(states), expected, atol=1e-15)


@pytest.mark.slow
def test_hopf_switch_onto_the_periodic_orbit_branch():
    """The equilibrium branch of Stuart-Landau in mu has a Hopf point at mu = 0; switching there
    follows PeriodicOrbitProblem with radius sqrt(mu) and period 2 pi, stable."""
    from jaxdyn.invariant import EquilibriumProblem, continuation, switch_branch

    def field(t, y, mu):
        return stuart_landau(t, y, (mu, jnp.array(1.0)))

    equilibria = continuation(EquilibriumProblem(field), jnp.zeros(2), -0.5, p_min=-1.0, p_max=1.0, ds=0.1,
                              n_steps=30)
    assert [kind for kind, _, _ in equilibria.specials()] == ["hopf"]
    orbits = continuation(switch_branch(equilibria, 0, amplitude=0.1), p_min=-0.1, p_max=0.5, ds=0.05,
                          ds_max=0.1, n_steps=8)
    p, u = np.asarray(orbits.p), np.asarray(orbits.u)
    keep = np.isfinite(p) & (p > 0)
    assert keep.sum() >= 6
    radius = np.linalg.norm(u[keep].reshape(keep.sum(), -1)[:, :2], axis=1)
    assert np.max(np.abs(radius - np.sqrt(p[keep]))) < 1e-9
    assert np.max(np.abs(u[keep][:, -1] - TWO_PI)) < 1e-9
    assert "stable at" in orbits.summary()
