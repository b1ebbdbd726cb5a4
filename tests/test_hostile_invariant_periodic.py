"""Hostile inputs to `jaxdyn.invariant.periodic_orbit`, `PeriodicOrbitProblem` and the Floquet
kernel `product_eigenvalues`: each is a clear error naming the argument, or a result code. All
rows but the last two fail before anything compiles; those two share one compile of the m = 8
Stuart-Landau problem (a negative mu: no orbit, the Newton iteration collapses or diverges)."""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import PeriodicOrbitProblem, periodic_orbit
from jaxdyn.invariant._floquet import product_eigenvalues
from jaxdyn.invariant._periodic import orbit_guess_from_hopf

from .helpers import Hostile, hostile_ids, run_hostile
from .test_invariant_periodic import ARGS, GUESS, stuart_landau


def po(**kwargs):
    """periodic_orbit on Stuart-Landau with one argument changed."""
    call = dict(field=stuart_landau, guess=GUESS, period_guess=6.0, args=ARGS)
    call.update(kwargs)
    field, guess, period = call.pop("field"), call.pop("guess"), call.pop("period_guess")
    return periodic_orbit(field, guess, period, **call)


def _flagged(res):
    return (not bool(res.successful)) and int(res.result._value) in (
        RESULTS.invalid_period._value, RESULTS.not_converged._value)


NO_ORBIT = (jnp.array(-1.0), jnp.array(1.0))
MATS = jnp.stack([jnp.eye(2)] * 3)

ROWS = [
    # --- periodic_orbit: the field and the guess ---------------------------------------------
    Hostile("periodic_orbit: field not callable", lambda: po(field="f"), TypeError,
            r"`field` must be callable"),
    Hostile("periodic_orbit: field of the wrong output shape", lambda: po(field=lambda t, y, a: y[:1]),
            ValueError, r"`field` must return an array of the state's shape"),
    Hostile("periodic_orbit: field returns a tuple", lambda: po(field=lambda t, y, a: (y, y)), ValueError,
            r"`field` must return one array"),
    Hostile("periodic_orbit: field fails on the state", lambda: po(field=lambda t, y, a: a["rate"] * y),
            ValueError, r"`field` failed on a state of shape"),
    Hostile("periodic_orbit: guess a string", lambda: po(guess="1,0"), TypeError,
            r"`guess` must be an array"),
    Hostile("periodic_orbit: guess a scalar", lambda: po(guess=jnp.array(1.0)), ValueError,
            r"`guess` must be a point \(n,\) or segment starts"),
    Hostile("periodic_orbit: guess three-dimensional", lambda: po(guess=jnp.ones((8, 2, 1))), ValueError,
            r"`guess` must be a point"),
    Hostile("periodic_orbit: guess empty", lambda: po(guess=jnp.ones((0,))), ValueError, r"`guess` must be"),
    Hostile("periodic_orbit: guess with NaN", lambda: po(guess=jnp.array([1.0, np.nan])), ValueError,
            r"`guess` contains non-finite"),
    Hostile("periodic_orbit: guess complex", lambda: po(guess=jnp.array([1.0 + 0j, 0.0])), TypeError,
            r"`guess` must be real"),
    Hostile("periodic_orbit: segment starts of the wrong count", lambda: po(guess=jnp.ones((3, 2))),
            ValueError, r"`guess` holds 3 segment starts but `n_segments` = 8"),
    # --- the period guess --------------------------------------------------------------------
    Hostile("periodic_orbit: period_guess zero", lambda: po(period_guess=0.0), ValueError,
            r"`period_guess` must be a finite positive number"),
    Hostile("periodic_orbit: period_guess negative", lambda: po(period_guess=-6.0), ValueError,
            r"`period_guess` must be a finite positive number"),
    Hostile("periodic_orbit: period_guess NaN", lambda: po(period_guess=float("nan")), ValueError,
            r"`period_guess`"),
    Hostile("periodic_orbit: period_guess inf", lambda: po(period_guess=float("inf")), ValueError,
            r"`period_guess`"),
    Hostile("periodic_orbit: period_guess a vector", lambda: po(period_guess=jnp.ones(2)), ValueError,
            r"`period_guess` must be a scalar"),
    Hostile("periodic_orbit: period_guess a string", lambda: po(period_guess="6"), TypeError,
            r"`period_guess` must be a number"),
    # --- settings ----------------------------------------------------------------------------
    Hostile("periodic_orbit: n_segments 0", lambda: po(n_segments=0), ValueError,
            r"`n_segments` must be >= 1"),
    Hostile("periodic_orbit: n_segments a float", lambda: po(n_segments=8.0), TypeError,
            r"`n_segments` must be an int"),
    Hostile("periodic_orbit: solver a string", lambda: po(solver="dopri8"), TypeError,
            r"`solver` must be an adaptive diffrax solver"),
    Hostile("periodic_orbit: solver without error control", lambda: po(solver=diffrax.Euler()), TypeError,
            r"`solver` must be an adaptive diffrax solver"),
    Hostile("periodic_orbit: rtol zero", lambda: po(rtol=0.0), ValueError, r"`rtol`"),
    Hostile("periodic_orbit: atol a string", lambda: po(atol="1e-12"), TypeError, r"`atol` must be a number"),
    Hostile("periodic_orbit: max_steps 0", lambda: po(max_steps=0), ValueError, r"`max_steps` must be >= 1"),
    Hostile("periodic_orbit: n_newton 0", lambda: po(n_newton=0), ValueError, r"`n_newton` must be >= 1"),
    Hostile("periodic_orbit: tol negative", lambda: po(tol=-1e-10), ValueError, r"`tol`"),
    Hostile("periodic_orbit: throw not a bool", lambda: po(throw="yes"), TypeError, r"`throw`"),
    # --- PeriodicOrbitProblem and orbit_guess_from_hopf ---------------------------------------
    Hostile("PeriodicOrbitProblem: field not callable", lambda: PeriodicOrbitProblem(3.0), TypeError,
            r"`field` must be callable"),
    Hostile("PeriodicOrbitProblem: parameter not callable",
            lambda: PeriodicOrbitProblem(stuart_landau, parameter="mu"), TypeError, r"`parameter` must be"),
    Hostile("PeriodicOrbitProblem: n_segments 0", lambda: PeriodicOrbitProblem(stuart_landau, n_segments=0),
            ValueError, r"`n_segments` must be >= 1"),
    Hostile("PeriodicOrbitProblem: solver a class, not an instance",
            lambda: PeriodicOrbitProblem(stuart_landau, solver=diffrax.Dopri8), TypeError, r"`solver`"),
    Hostile("orbit_guess_from_hopf: n_segments 0",
            lambda: orbit_guess_from_hopf(jnp.zeros(2), jnp.array([1.0, 1j]), 1.0, 0.1, 0), ValueError,
            r"`n_segments` must be >= 1"),
    # --- product_eigenvalues -----------------------------------------------------------------
    Hostile("product_eigenvalues: one matrix, not a stack", lambda: product_eigenvalues(jnp.eye(2)),
            ValueError, r"`mats` must have shape \(m, n, n\)"),
    Hostile("product_eigenvalues: non-square factors", lambda: product_eigenvalues(jnp.ones((3, 2, 3))),
            ValueError, r"`mats` must have shape \(m, n, n\)"),
    Hostile("product_eigenvalues: no factors", lambda: product_eigenvalues(jnp.ones((0, 2, 2))), ValueError,
            r"`mats` must have shape"),
    Hostile("product_eigenvalues: NaN factor", lambda: product_eigenvalues(MATS.at[1, 0, 0].set(jnp.nan)),
            ValueError, r"`mats` contains non-finite"),
    Hostile("product_eigenvalues: complex factors", lambda: product_eigenvalues(MATS.astype(complex)),
            TypeError, r"`mats` must be real"),
    Hostile("product_eigenvalues: max_sweeps 0", lambda: product_eigenvalues(MATS, max_sweeps=0), ValueError,
            r"`max_sweeps` must be >= 1"),
    Hostile("product_eigenvalues: rtol 1", lambda: product_eigenvalues(MATS, rtol=1.0), ValueError,
            r"`rtol` must be in \(0, 1\)"),
    Hostile("product_eigenvalues: rtol a string", lambda: product_eigenvalues(MATS, rtol="1e-12"), TypeError,
            r"`rtol` must be a number"),
    Hostile("product_eigenvalues: max_cluster 0", lambda: product_eigenvalues(MATS, max_cluster=0),
            ValueError, r"`max_cluster` must be >= 1"),
    # --- run-time failures: a result code, or raised with its message --------------------------
    Hostile("periodic_orbit: no orbit (mu < 0) flagged with throw=False",
            lambda: po(args=NO_ORBIT, throw=False), None, flagged=_flagged),
    Hostile("periodic_orbit: no orbit (mu < 0) raises", lambda: po(args=NO_ORBIT), eqx.EquinoxRuntimeError,
            r"period became non-positive|iteration did not converge", near_top=None),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
