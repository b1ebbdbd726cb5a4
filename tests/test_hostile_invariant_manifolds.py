"""Hostile inputs to `jaxdyn.invariant.invariant_manifolds`: each is a clear error naming the
argument, or a result code. All rows but the last fail before anything compiles."""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import invariant_manifolds

from .helpers import Hostile, hostile_ids, run_hostile


def saddle(t, y, args):
    return jnp.stack([y[0], -y[1]])


def no_zero(t, y, args):  # x' = x^2 + 1 has no equilibrium: Newton cannot polish
    return jnp.stack([y[0] ** 2 + 1, -y[1]])


def linear(t, y, a):  # one field for the rows that compile: source, center, 4-D saddle
    return a @ y


Z = jnp.zeros(2)

ROWS = [
    Hostile("invariant_manifolds: field not callable", lambda: invariant_manifolds("f", Z), TypeError,
            r"`field` must be callable"),
    Hostile("invariant_manifolds: point a string", lambda: invariant_manifolds(saddle, "0"), TypeError,
            r"`point` must be an array"),
    Hostile("invariant_manifolds: point a scalar", lambda: invariant_manifolds(saddle, 0.0), ValueError,
            r"`point` must have shape \(n,\) with n >= 2"),
    Hostile("invariant_manifolds: point a matrix", lambda: invariant_manifolds(saddle, jnp.zeros((2, 2))),
            ValueError, r"`point` must have shape \(n,\)"),
    Hostile("invariant_manifolds: point with NaN",
            lambda: invariant_manifolds(saddle, jnp.array([0.0, np.nan])), ValueError,
            r"`point` contains non-finite"),
    Hostile("invariant_manifolds: point complex", lambda: invariant_manifolds(saddle, jnp.zeros(2, complex)),
            TypeError, r"`point` must be real"),
    Hostile("invariant_manifolds: field of the wrong output shape",
            lambda: invariant_manifolds(lambda t, y, a: y[:1], Z), ValueError,
            r"`field` must return an array of the shape of `point`"),
    Hostile("invariant_manifolds: field that fails on the state",
            lambda: invariant_manifolds(lambda t, y: y, Z), ValueError, r"`field` failed on a state"),
    Hostile("invariant_manifolds: negative t_max", lambda: invariant_manifolds(saddle, Z, t_max=-1.0),
            ValueError, r"`t_max` must be a finite positive"),
    Hostile("invariant_manifolds: zero eps", lambda: invariant_manifolds(saddle, Z, eps=0.0), ValueError,
            r"`eps` must be a finite positive"),
    Hostile("invariant_manifolds: NaN bound", lambda: invariant_manifolds(saddle, Z, bound=np.nan),
            ValueError, r"`bound` must be a finite positive"),
    Hostile("invariant_manifolds: eps a string", lambda: invariant_manifolds(saddle, Z, eps="small"),
            TypeError, r"`eps` must be a number"),
    Hostile("invariant_manifolds: n_points one", lambda: invariant_manifolds(saddle, Z, n_points=1),
            ValueError, r"`n_points` must be >= 2"),
    Hostile("invariant_manifolds: n_points a float", lambda: invariant_manifolds(saddle, Z, n_points=10.0),
            TypeError, r"`n_points` must be an int"),
    Hostile("invariant_manifolds: max_steps zero", lambda: invariant_manifolds(saddle, Z, max_steps=0),
            ValueError, r"`max_steps` must be >= 1"),
    Hostile("invariant_manifolds: solver a string", lambda: invariant_manifolds(saddle, Z, solver="tsit5"),
            TypeError, r"`solver` must be a diffrax solver"),
    Hostile("invariant_manifolds: throw not a bool", lambda: invariant_manifolds(saddle, Z, throw=1),
            TypeError, r"`throw` must be a bool"),
    Hostile("invariant_manifolds: a source (unstable dimension 2)",
            lambda: invariant_manifolds(linear, Z, args=jnp.eye(2), n_points=2), ValueError,
            r"unstable manifold of dimension 2 and a stable manifold of dimension 0"),
    Hostile("invariant_manifolds: a 4-D saddle with 2-D manifolds",
            lambda: invariant_manifolds(linear, jnp.zeros(4), args=jnp.diag(jnp.array([1.0, 1, -1, -1])),
                                        n_points=2), ValueError,
            r"unstable manifold of dimension 2 and a stable manifold of dimension 2"),
    Hostile("invariant_manifolds: a center (non-hyperbolic)",
            lambda: invariant_manifolds(linear, Z, args=jnp.array([[0.0, 1.0], [-1.0, 0.0]]), n_points=2),
            ValueError, r"`point` is a non-hyperbolic equilibrium"),
    Hostile("invariant_manifolds: a point that is no equilibrium (x^2 + 1 has no zero), throw=False",
            lambda: invariant_manifolds(no_zero, Z, n_points=2, throw=False),
            None, flagged=lambda res: bool(res.result == RESULTS.not_converged)),
    Hostile("invariant_manifolds: a point that is no equilibrium, throw=True",
            lambda: invariant_manifolds(no_zero, Z, n_points=2), eqx.EquinoxRuntimeError,
            r"did not converge"),
]

assert diffrax  # the solver row names diffrax's solvers


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
