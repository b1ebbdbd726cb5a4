"""Hostile inputs to the periodic orbits of delay equations (`dde_periodic_orbit`,
`DDEPeriodicOrbitProblem`, `dde_orbit_guess_from_hopf`): each is a clear error naming the
argument, or a result code.

Most rows fail before anything compiles; the two run-time rows share one compiled solve of
Hutchinson's equation at 16 points.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import (
    DDEPeriodicOrbitProblem,
    dde_cycle_branch_start,
    dde_orbit_guess_from_hopf,
    dde_periodic_orbit,
)

from .helpers import Hostile, hostile_ids, run_hostile


def hutchinson(t, y, yd, args):
    return y * (1.0 - yd[0])


N = 16
TAU = jnp.array([1.8])
S = jnp.arange(N) / N
GUESS = (1.0 + 0.8 * jnp.sin(2 * jnp.pi * S))[:, None]
FAR = (1.0 + 1.2 * jnp.sin(2 * jnp.pi * S))[:, None]   # outside Newton's basin
SOLVE = eqx.filter_jit(dde_periodic_orbit)


def orbit(**kwargs):
    base = dict(field=hutchinson, delays=TAU, guess=GUESS, period_guess=7.5, n_points=N)
    base.update(kwargs)
    return dde_periodic_orbit(base.pop("field"), base.pop("delays"), base.pop("guess"),
                              base.pop("period_guess"), **base)


def _code(code):
    return lambda out: bool(np.all(np.asarray(out.result._value) == code._value)) and not out.successful


ROWS = [
    # --- dde_periodic_orbit: the field and the delays ----------------------------------------------
    Hostile("dde_periodic_orbit: field not callable", lambda: orbit(field=jnp.ones(3)), TypeError,
            r"`field`"),
    Hostile("dde_periodic_orbit: field of the wrong signature", lambda: orbit(field=lambda t, y, a: y),
            ValueError, r"`field`"),
    Hostile("dde_periodic_orbit: field returns the wrong shape",
            lambda: orbit(field=lambda t, y, yd, a: jnp.ones(2)), ValueError, r"`field`"),
    Hostile("dde_periodic_orbit: delays a string", lambda: orbit(delays="1.8"), TypeError, r"`delays`"),
    Hostile("dde_periodic_orbit: delays 2-D", lambda: orbit(delays=jnp.ones((1, 1))), ValueError,
            r"`delays`"),
    Hostile("dde_periodic_orbit: delays empty", lambda: orbit(delays=jnp.zeros(0)), ValueError, r"`delays`"),
    Hostile("dde_periodic_orbit: delay negative", lambda: orbit(delays=jnp.array([-1.0])), ValueError,
            r"`delays`"),
    Hostile("dde_periodic_orbit: delay zero", lambda: orbit(delays=jnp.array([0.0])), ValueError,
            r"`delays`"),
    Hostile("dde_periodic_orbit: delay NaN", lambda: orbit(delays=jnp.array([jnp.nan])), ValueError,
            r"`delays`"),
    Hostile("dde_periodic_orbit: callable delays of the wrong shape",
            lambda: orbit(delays=lambda a: jnp.ones((1, 1))), ValueError, r"`delays`"),
    # --- the guess and the period --------------------------------------------------------------------
    Hostile("dde_periodic_orbit: guess with the wrong number of points", lambda: orbit(guess=GUESS[:8]),
            ValueError, r"`guess`"),
    Hostile("dde_periodic_orbit: guess 1-D", lambda: orbit(guess=GUESS[:, 0]), ValueError, r"`guess`"),
    Hostile("dde_periodic_orbit: guess with NaN", lambda: orbit(guess=GUESS.at[3, 0].set(jnp.nan)),
            ValueError, r"`guess`"),
    Hostile("dde_periodic_orbit: guess a string", lambda: orbit(guess="sine"), TypeError, r"`guess`"),
    Hostile("dde_periodic_orbit: callable guess of the wrong shape",
            lambda: orbit(guess=lambda s: jnp.ones((2, 2))), ValueError, r"`guess`"),
    Hostile("dde_periodic_orbit: period_guess zero", lambda: orbit(period_guess=0.0), ValueError,
            r"`period_guess`"),
    Hostile("dde_periodic_orbit: period_guess negative", lambda: orbit(period_guess=-7.5), ValueError,
            r"`period_guess`"),
    Hostile("dde_periodic_orbit: period_guess NaN", lambda: orbit(period_guess=float("nan")), ValueError,
            r"`period_guess`"),
    Hostile("dde_periodic_orbit: period_guess a vector", lambda: orbit(period_guess=jnp.ones(2)), ValueError,
            r"`period_guess`"),
    Hostile("dde_periodic_orbit: period_guess a string", lambda: orbit(period_guess="7.5"), TypeError,
            r"`period_guess`"),
    # --- settings --------------------------------------------------------------------------------------
    Hostile("dde_periodic_orbit: n_points negative", lambda: orbit(n_points=-16), ValueError, r"`n_points`"),
    Hostile("dde_periodic_orbit: n_points too small", lambda: orbit(n_points=4), ValueError, r"`n_points`"),
    Hostile("dde_periodic_orbit: n_points a float", lambda: orbit(n_points=16.0), TypeError, r"`n_points`"),
    Hostile("dde_periodic_orbit: n_newton zero", lambda: orbit(n_newton=0), ValueError, r"`n_newton`"),
    Hostile("dde_periodic_orbit: tol negative", lambda: orbit(tol=-1e-10), ValueError, r"`tol`"),
    Hostile("dde_periodic_orbit: tol NaN", lambda: orbit(tol=float("nan")), ValueError, r"`tol`"),
    Hostile("dde_periodic_orbit: n_multipliers negative", lambda: orbit(n_multipliers=-1), ValueError,
            r"`n_multipliers`"),
    Hostile("dde_periodic_orbit: history_periods zero", lambda: orbit(history_periods=0), ValueError,
            r"`history_periods`"),
    Hostile("dde_periodic_orbit: solver a string", lambda: orbit(solver="newton"), TypeError, r"`solver`"),
    Hostile("dde_periodic_orbit: throw not a bool", lambda: orbit(throw="no"), TypeError, r"`throw`"),
    # --- run-time failures are result codes ------------------------------------------------------------
    Hostile("dde_periodic_orbit: Newton diverges (throw=False)",
            lambda: SOLVE(hutchinson, TAU, FAR, jnp.array(7.5), n_points=N, throw=False), None,
            flagged=_code(RESULTS.not_converged)),
    Hostile("dde_periodic_orbit: collapse onto the equilibrium (throw=False)",
            lambda: SOLVE(hutchinson, TAU, jnp.ones((N, 1)), jnp.array(7.5), n_points=N, throw=False), None,
            flagged=_code(RESULTS.invalid_period)),
    # --- DDEPeriodicOrbitProblem -----------------------------------------------------------------------
    Hostile("DDEPeriodicOrbitProblem: field not callable", lambda: DDEPeriodicOrbitProblem("f", TAU),
            TypeError, r"`field`"),
    Hostile("DDEPeriodicOrbitProblem: parameter not callable",
            lambda: DDEPeriodicOrbitProblem(hutchinson, TAU, parameter=1.0), TypeError, r"`parameter`"),
    Hostile("DDEPeriodicOrbitProblem: delay negative",
            lambda: DDEPeriodicOrbitProblem(hutchinson, jnp.array([-1.0])), ValueError, r"`delays`"),
    Hostile("DDEPeriodicOrbitProblem: n_points too small",
            lambda: DDEPeriodicOrbitProblem(hutchinson, TAU, n_points=7), ValueError, r"`n_points`"),
    Hostile("DDEPeriodicOrbitProblem: n_chebyshev too small",
            lambda: DDEPeriodicOrbitProblem(hutchinson, TAU, n_chebyshev=2), ValueError, r"`n_chebyshev`"),
    # --- dde_orbit_guess_from_hopf ---------------------------------------------------------------------
    Hostile("dde_orbit_guess_from_hopf: omega zero",
            lambda: dde_orbit_guess_from_hopf(jnp.ones(1), jnp.ones(1, complex), 0.0, 0.1, 16), ValueError,
            r"`omega`"),
    Hostile("dde_orbit_guess_from_hopf: omega negative",
            lambda: dde_orbit_guess_from_hopf(jnp.ones(1), jnp.ones(1, complex), -1.0, 0.1, 16), ValueError,
            r"`omega`"),
    Hostile("dde_orbit_guess_from_hopf: eigenvector of the wrong shape",
            lambda: dde_orbit_guess_from_hopf(jnp.ones(2), jnp.ones(3, complex), 1.0, 0.1, 16), ValueError,
            r"`eigenvector`"),
    Hostile("dde_orbit_guess_from_hopf: eigenvector zero",
            lambda: dde_orbit_guess_from_hopf(jnp.ones(1), jnp.zeros(1, complex), 1.0, 0.1, 16), ValueError,
            r"`eigenvector`"),
    Hostile("dde_orbit_guess_from_hopf: y_eq 2-D",
            lambda: dde_orbit_guess_from_hopf(jnp.ones((1, 1)), jnp.ones(1, complex), 1.0, 0.1, 16),
            ValueError, r"`y_eq`"),
    Hostile("dde_orbit_guess_from_hopf: amplitude a vector",
            lambda: dde_orbit_guess_from_hopf(jnp.ones(1), jnp.ones(1, complex), 1.0, jnp.ones(2), 16),
            ValueError, r"`amplitude`"),
    Hostile("dde_orbit_guess_from_hopf: n_points zero",
            lambda: dde_orbit_guess_from_hopf(jnp.ones(1), jnp.ones(1, complex), 1.0, 0.1, 0), ValueError,
            r"`n_points`"),
    Hostile("DDEPeriodicOrbitProblem.switch: not a period doubling",
            lambda: DDEPeriodicOrbitProblem(hutchinson, TAU, n_points=N).switch(
                "hopf", jnp.concatenate([GUESS.ravel(), jnp.array([7.5])]), jnp.array(1.8), None,
                amplitude=0.1),
            ValueError, r"period doubling only"),
    # --- dde_cycle_branch_start ------------------------------------------------------------------------
    Hostile("dde_cycle_branch_start: hopf not a DDEHopfResult",
            lambda: dde_cycle_branch_start(jnp.ones(3), DDEPeriodicOrbitProblem(hutchinson, TAU)), TypeError,
            r"`hopf`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
