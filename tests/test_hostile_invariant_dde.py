"""Hostile inputs to the DDE characteristic roots, stability and Hopf points of `jaxdyn.invariant`.

Most rows fail before anything compiles; the run-time rows (Newton out of budget) share one small
scalar problem, x' = -x(t - 1) on a coarse discretisation.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import (
    DDEHopfProblem,
    characteristic_roots,
    dde_hopf,
    dde_stability,
    linearise_dde,
)

from .helpers import Hostile, hostile_ids, run_hostile

A0 = jnp.zeros((1, 1))
A = -jnp.ones((1, 1, 1))
TAU = jnp.array([1.0])
Y = jnp.ones(1)
ARGS = {"r": jnp.array(1.0), "tau": jnp.array(1.2)}


def hutchinson(t, y, yd, args):
    return args["r"] * y * (1 - yd[0])


def set_tau(args, p):
    return {**args, "tau": p}


def tau_of(args):
    return jnp.stack([args["tau"]])


def _is(result, code):
    return bool(np.all(np.asarray(result._value) == code._value))


def _hopf(**kwargs):
    base = dict(args=ARGS, parameter=set_tau)
    return dde_hopf(hutchinson, kwargs.pop("equilibrium", Y), kwargs.pop("delays", tau_of),
                    kwargs.pop("p0", 1.2), **(base | kwargs))


COARSE = dict(n_roots=2, n_nodes=4, n_newton=1)

ROWS = [
    # --- characteristic_roots: the linear system ---------------------------------------------
    Hostile("characteristic_roots: A0 not square", lambda: characteristic_roots(jnp.ones((1, 2)), A, TAU),
            ValueError, r"`A0`"),
    Hostile("characteristic_roots: A0 a string", lambda: characteristic_roots("zero", A, TAU), TypeError,
            r"`A0`"),
    Hostile("characteristic_roots: A0 complex", lambda: characteristic_roots(A0 + 1j, A, TAU), TypeError,
            r"`A0`"),
    Hostile("characteristic_roots: A0 NaN", lambda: characteristic_roots(A0 * jnp.nan, A, TAU), ValueError,
            r"`A0`"),
    Hostile("characteristic_roots: A a matrix, not a stack", lambda: characteristic_roots(A0, A[0], TAU),
            ValueError, r"`A` must have shape \(r, 1, 1\)"),
    Hostile("characteristic_roots: A of the wrong size",
            lambda: characteristic_roots(A0, jnp.ones((1, 2, 2)), TAU), ValueError, r"`A`"),
    Hostile("characteristic_roots: A inf", lambda: characteristic_roots(A0, A * jnp.inf, TAU), ValueError,
            r"`A`"),
    Hostile("characteristic_roots: A None", lambda: characteristic_roots(A0, None, TAU), TypeError, r"`A`"),
    Hostile("characteristic_roots: one delay too many",
            lambda: characteristic_roots(A0, A, jnp.array([1.0, 2.0])), ValueError, r"`delays`"),
    Hostile("characteristic_roots: delays a scalar", lambda: characteristic_roots(A0, A, 1.0), ValueError,
            r"`delays`"),
    Hostile("characteristic_roots: negative delay", lambda: characteristic_roots(A0, A, -TAU), ValueError,
            r"`delays` must be finite and > 0"),
    Hostile("characteristic_roots: zero delay", lambda: characteristic_roots(A0, A, 0 * TAU), ValueError,
            r"`delays`"),
    Hostile("characteristic_roots: NaN delay", lambda: characteristic_roots(A0, A, TAU * jnp.nan), ValueError,
            r"`delays`"),
    # --- characteristic_roots: settings ------------------------------------------------------
    Hostile("characteristic_roots: n_roots 0", lambda: characteristic_roots(A0, A, TAU, n_roots=0),
            ValueError, r"`n_roots`"),
    Hostile("characteristic_roots: n_roots a float", lambda: characteristic_roots(A0, A, TAU, n_roots=2.0),
            TypeError, r"`n_roots`"),
    Hostile("characteristic_roots: more roots than the discretisation has",
            lambda: characteristic_roots(A0, A, TAU, n_roots=10, n_nodes=5), ValueError, r"`n_roots`"),
    Hostile("characteristic_roots: n_nodes 2", lambda: characteristic_roots(A0, A, TAU, n_nodes=2),
            ValueError, r"`n_nodes`"),
    Hostile("characteristic_roots: n_newton 0", lambda: characteristic_roots(A0, A, TAU, n_newton=0),
            ValueError, r"`n_newton`"),
    Hostile("characteristic_roots: tol 0", lambda: characteristic_roots(A0, A, TAU, tol=0.0), ValueError,
            r"`tol`"),
    Hostile("characteristic_roots: tol a string", lambda: characteristic_roots(A0, A, TAU, tol="1e-12"),
            TypeError, r"`tol`"),
    Hostile("characteristic_roots: throw not a bool", lambda: characteristic_roots(A0, A, TAU, throw=1),
            TypeError, r"`throw`"),
    # --- characteristic_roots: run time ------------------------------------------------------
    Hostile("characteristic_roots: Newton out of budget raises",
            lambda: characteristic_roots(A0, A, TAU, **COARSE), eqx.EquinoxRuntimeError,
            r"did not converge.*`n_newton`"),
    Hostile("characteristic_roots: Newton out of budget flagged (throw=False)",
            lambda: characteristic_roots(A0, A, TAU, **COARSE, throw=False), None,
            flagged=lambda r: _is(r.result, RESULTS.not_converged) and not bool(r.successful)),
    Hostile("characteristic_roots: too few nodes flagged (throw=False)",
            lambda: characteristic_roots(A0, A, TAU, n_roots=8, n_nodes=8, throw=False), None,
            flagged=lambda r: _is(r.result, RESULTS.roots_unresolved) and "`n_nodes`" in r.summary()),
    # --- linearise_dde / dde_stability -------------------------------------------------------
    Hostile("linearise_dde: field not callable", lambda: linearise_dde(3.0, Y, TAU), TypeError, r"`field`"),
    Hostile("linearise_dde: field without y_delayed",
            lambda: linearise_dde(lambda t, y, args: -y, Y, TAU), ValueError, r"`field` must be callable"),
    Hostile("linearise_dde: field of the wrong output shape",
            lambda: linearise_dde(lambda t, y, yd, a: jnp.ones(3), Y, TAU), ValueError, r"`field`"),
    Hostile("linearise_dde: y_eq a matrix", lambda: linearise_dde(hutchinson, jnp.ones((1, 1)), TAU,
                                                                  args=ARGS), ValueError, r"`y_eq`"),
    Hostile("linearise_dde: y_eq NaN", lambda: linearise_dde(hutchinson, Y * jnp.nan, TAU, args=ARGS),
            ValueError, r"`y_eq`"),
    Hostile("linearise_dde: delays negative", lambda: linearise_dde(hutchinson, Y, -TAU, args=ARGS),
            ValueError, r"`delays`"),
    Hostile("dde_stability: empty delays", lambda: dde_stability(hutchinson, Y, jnp.zeros(0), args=ARGS),
            ValueError, r"`delays`"),
    Hostile("dde_stability: y_eq a string", lambda: dde_stability(hutchinson, "1", TAU, args=ARGS),
            TypeError, r"`y_eq`"),
    # --- dde_hopf ----------------------------------------------------------------------------
    Hostile("dde_hopf: field not callable", lambda: dde_hopf(None, Y, tau_of, 1.2, args=ARGS,
                                                            parameter=set_tau), TypeError, r"`field`"),
    Hostile("dde_hopf: parameter a string", lambda: _hopf(parameter="tau"), TypeError, r"`parameter`"),
    Hostile("dde_hopf: p0 a vector", lambda: _hopf(p0=jnp.ones(2)), ValueError, r"`p0`"),
    Hostile("dde_hopf: p0 NaN", lambda: _hopf(p0=float("nan")), ValueError, r"`p0`"),
    Hostile("dde_hopf: equilibrium of the wrong shape", lambda: _hopf(equilibrium=jnp.ones((2, 1))),
            ValueError, r"`equilibrium`"),
    Hostile("dde_hopf: delays callable giving a negative delay",
            lambda: _hopf(delays=lambda a: -tau_of(a)), ValueError, r"`delays`"),
    Hostile("dde_hopf: field fails on args", lambda: _hopf(args={"tau": jnp.array(1.2)}), ValueError,
            r"`field`"),
    Hostile("dde_hopf: n_nodes 1", lambda: _hopf(n_nodes=1), ValueError, r"`n_nodes`"),
    Hostile("dde_hopf: throw not a bool", lambda: _hopf(throw="no"), TypeError, r"`throw`"),
    Hostile("dde_hopf: Newton out of budget raises", lambda: _hopf(n_newton=1), eqx.EquinoxRuntimeError,
            r"did not converge.*dde_hopf"),
    Hostile("dde_hopf: Newton out of budget flagged (throw=False)", lambda: _hopf(n_newton=1, throw=False),
            None, flagged=lambda h: _is(h.result, RESULTS.not_converged) and not bool(h.successful)),
    # --- DDEHopfProblem ----------------------------------------------------------------------
    Hostile("DDEHopfProblem: hopf_parameter None",
            lambda: DDEHopfProblem(hutchinson, Y, tau_of, hopf_parameter=None, parameter=set_tau),
            TypeError, r"`hopf_parameter`"),
    Hostile("DDEHopfProblem: parameter a string",
            lambda: DDEHopfProblem(hutchinson, Y, tau_of, hopf_parameter=set_tau, parameter="r"),
            TypeError, r"`parameter`"),
    Hostile("DDEHopfProblem: field not callable",
            lambda: DDEHopfProblem(jnp.ones(1), Y, tau_of, hopf_parameter=set_tau, parameter=set_tau),
            TypeError, r"`field`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
