"""Hostile inputs to `equilibria`, `fixed_points` and `cycles`: a clear error naming the argument,
or a result code.

Most rows fail before anything compiles. The run-time rows share two tiny 1-D problems (a field
without zeros, y' = y^2 + 1, and one that is NaN on half of the box, y' = log(y) - 1), each
compiled once for both throw modes.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS, codes
from jaxdyn.invariant import cycles, equilibria, fixed_points

from .helpers import Hostile, hostile_ids, run_hostile

KEY = jax.random.key(0)
LO, HI = -jnp.ones(2), jnp.ones(2)


def _decay(t, y, args):
    return -y


def _no_zero(t, y, args):
    return y**2 + 1.0


def _log_field(t, y, args):
    return jnp.log(y) - 1.0


def _half(x, args):
    return 0.5 * x


def _raises(t, y, args):
    raise RuntimeError("the user's field broke")


def _is(result, code):
    return bool(np.all(codes(result) == codes(code)))


ROWS = [
    # --- equilibria: arguments ----------------------------------------------------------------
    Hostile("equilibria: field not callable", lambda: equilibria(jnp.ones(2), LO, HI, key=KEY), TypeError,
            r"`field`"),
    Hostile("equilibria: lower == upper", lambda: equilibria(_decay, LO, LO, key=KEY), ValueError,
            r"`upper`"),
    Hostile("equilibria: lower > upper", lambda: equilibria(_decay, HI, LO, key=KEY), ValueError, r"`upper`"),
    Hostile("equilibria: bounds of different shapes",
            lambda: equilibria(_decay, LO, jnp.ones(3), key=KEY), ValueError, r"`upper`"),
    Hostile("equilibria: lower a matrix",
            lambda: equilibria(_decay, jnp.zeros((2, 2)), jnp.ones((2, 2)), key=KEY), ValueError, r"`lower`"),
    Hostile("equilibria: lower empty", lambda: equilibria(_decay, jnp.zeros(0), jnp.ones(0), key=KEY),
            ValueError, r"`lower`"),
    Hostile("equilibria: NaN bound", lambda: equilibria(_decay, jnp.array([jnp.nan, 0.0]), HI, key=KEY),
            ValueError, r"`lower`"),
    Hostile("equilibria: inf bound", lambda: equilibria(_decay, LO, jnp.array([1.0, jnp.inf]), key=KEY),
            ValueError, r"`upper`"),
    Hostile("equilibria: complex bounds", lambda: equilibria(_decay, LO + 0j, HI, key=KEY), TypeError,
            r"`lower`"),
    Hostile("equilibria: n_starts 0", lambda: equilibria(_decay, LO, HI, key=KEY, n_starts=0), ValueError,
            r"`n_starts`"),
    Hostile("equilibria: n_starts negative", lambda: equilibria(_decay, LO, HI, key=KEY, n_starts=-3),
            ValueError, r"`n_starts`"),
    Hostile("equilibria: n_starts a float", lambda: equilibria(_decay, LO, HI, key=KEY, n_starts=8.0),
            TypeError, r"`n_starts`"),
    Hostile("equilibria: n_steps 0", lambda: equilibria(_decay, LO, HI, key=KEY, n_steps=0), ValueError,
            r"`n_steps`"),
    Hostile("equilibria: tol negative", lambda: equilibria(_decay, LO, HI, key=KEY, tol=-1e-8), ValueError,
            r"`tol`"),
    Hostile("equilibria: tol a string", lambda: equilibria(_decay, LO, HI, key=KEY, tol="1e-8"), TypeError,
            r"`tol`"),
    Hostile("equilibria: dedup_tol NaN", lambda: equilibria(_decay, LO, HI, key=KEY, dedup_tol=float("nan")),
            ValueError, r"`dedup_tol`"),
    Hostile("equilibria: hyperbolic_tol zero",
            lambda: equilibria(_decay, LO, HI, key=KEY, hyperbolic_tol=0.0), ValueError, r"`hyperbolic_tol`"),
    Hostile("equilibria: key an int", lambda: equilibria(_decay, LO, HI, key=0), TypeError, r"`key`"),
    Hostile("equilibria: key a float array", lambda: equilibria(_decay, LO, HI, key=jnp.ones(2)), TypeError,
            r"`key`"),
    Hostile("equilibria: throw not a bool", lambda: equilibria(_decay, LO, HI, key=KEY, throw=1), TypeError,
            r"`throw`"),
    Hostile("equilibria: field of the wrong output shape",
            lambda: equilibria(lambda t, y, a: jnp.sum(y), LO, HI, key=KEY), ValueError, r"`field`"),
    Hostile("equilibria: field with the map's signature",
            lambda: equilibria(lambda x, a: x, LO, HI, key=KEY), ValueError, r"`field`"),
    Hostile("equilibria: field that raises", lambda: equilibria(_raises, LO, HI, key=KEY), ValueError,
            r"`field`"),
    Hostile("equilibria: field of integer output",
            lambda: equilibria(lambda t, y, a: jnp.zeros(2, int), LO, HI, key=KEY), ValueError, r"`field`"),
    # --- equilibria: run-time codes -------------------------------------------------------------
    Hostile("equilibria: no zero in the box raises",
            lambda: equilibria(_no_zero, -jnp.ones(1), jnp.ones(1), key=KEY, n_starts=4),
            eqx.EquinoxRuntimeError, r"No solution was found"),
    Hostile("equilibria: no zero in the box flagged (throw=False)",
            lambda: equilibria(_no_zero, -jnp.ones(1), jnp.ones(1), key=KEY, n_starts=4, throw=False), None,
            flagged=lambda r: _is(r.result, RESULTS.none_found) and int(r.n_found) == 0),
    Hostile("equilibria: non-finite field raises",
            lambda: equilibria(_log_field, -jnp.ones(1), 3 * jnp.ones(1), key=KEY, n_starts=4),
            eqx.EquinoxRuntimeError, r"non-finite"),
    Hostile("equilibria: non-finite field flagged (throw=False)",
            lambda: equilibria(_log_field, -jnp.ones(1), 3 * jnp.ones(1), key=KEY, n_starts=4, throw=False),
            None, flagged=lambda r: _is(r.result, RESULTS.nonfinite_field)),
    # --- fixed_points -------------------------------------------------------------------------------
    Hostile("fixed_points: map not callable", lambda: fixed_points("F", LO, HI, key=KEY), TypeError,
            r"`map`"),
    Hostile("fixed_points: map of the wrong output shape",
            lambda: fixed_points(lambda x, a: x[:1], LO, HI, key=KEY), ValueError, r"`map`"),
    Hostile("fixed_points: map with the field's signature",
            lambda: fixed_points(_decay, LO, HI, key=KEY), ValueError, r"`map`"),
    Hostile("fixed_points: lower >= upper", lambda: fixed_points(_half, HI, LO, key=KEY), ValueError,
            r"`upper`"),
    Hostile("fixed_points: n_starts 0", lambda: fixed_points(_half, LO, HI, key=KEY, n_starts=0), ValueError,
            r"`n_starts`"),
    Hostile("fixed_points: key missing", lambda: fixed_points(_half, LO, HI, key=None), TypeError, r"`key`"),
    # --- cycles -------------------------------------------------------------------------------------
    Hostile("cycles: period 0", lambda: cycles(_half, 0, LO, HI, key=KEY), ValueError, r"`period`"),
    Hostile("cycles: period negative", lambda: cycles(_half, -2, LO, HI, key=KEY), ValueError, r"`period`"),
    Hostile("cycles: period a float", lambda: cycles(_half, 2.0, LO, HI, key=KEY), TypeError, r"`period`"),
    Hostile("cycles: period a bool", lambda: cycles(_half, True, LO, HI, key=KEY), TypeError, r"`period`"),
    Hostile("cycles: map not callable", lambda: cycles(None, 2, LO, HI, key=KEY), TypeError, r"`map`"),
    Hostile("cycles: map of the wrong output shape",
            lambda: cycles(lambda x, a: jnp.concatenate([x, x]), 2, LO, HI, key=KEY), ValueError, r"`map`"),
    Hostile("cycles: throw not a bool", lambda: cycles(_half, 2, LO, HI, key=KEY, throw="yes"), TypeError,
            r"`throw`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
