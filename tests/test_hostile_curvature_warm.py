"""Hostile inputs for the warm starts of jaxdyn.curvature (`top_eigenvalues(..., v0=...)`) and
`train(..., warm_start=...)`: each row is a clear error naming the argument before any
compilation, or a result whose code says what failed."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.curvature import top_eigenvalues
from jaxdyn.training import train

from .helpers import Hostile, hostile_ids, run_hostile

A = jnp.asarray(np.diag([1.0, 2.0, 3.0, 4.0, 5.0]))
V = jnp.eye(5)[:2]
NAN_A = A.at[0, 0].set(jnp.nan)


def _top(v0, matrix=A, **kw):
    return top_eigenvalues(matrix, 2, v0=v0, **kw)


def _flag(code):
    return lambda out: bool(np.all(np.asarray(out.result == code)))


def _nan_operator_under_jit():
    # a NaN operator inside jit is not seen at the boundary: the code says it
    return eqx.filter_jit(lambda M, v: top_eigenvalues(M, 2, v0=v, throw=False))(NAN_A, V)


def _loss(w, x, y):
    return 0.5 * jnp.mean((x @ w - y) ** 2)


X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)))
Y = jnp.ones(6)

ROWS = [
    Hostile("top_eigenvalues v0: wrong size", lambda: _top(jnp.ones(6)), ValueError, r"`v0`.*size 5"),
    Hostile("top_eigenvalues v0: block of the wrong size", lambda: _top(jnp.ones((2, 4))), ValueError,
            r"`v0`"),
    Hostile("top_eigenvalues v0: three dimensions", lambda: _top(jnp.ones((1, 2, 5))), ValueError,
            r"`v0` must have shape"),
    Hostile("top_eigenvalues v0: a 0-d array", lambda: _top(jnp.asarray(1.0)), ValueError, r"`v0`"),
    Hostile("top_eigenvalues v0: empty block", lambda: _top(jnp.ones((0, 5))), ValueError, r"`v0`"),
    Hostile("top_eigenvalues v0: more rows than the size", lambda: _top(jnp.ones((6, 5))), ValueError,
            r"`v0`.*between 1 and 5"),
    Hostile("top_eigenvalues v0: a list", lambda: _top([1.0, 2.0, 3.0, 4.0, 5.0]), TypeError, r"`v0`"),
    Hostile("top_eigenvalues v0: a python float", lambda: _top(1.0), TypeError, r"`v0`"),
    Hostile("top_eigenvalues v0: integer dtype", lambda: _top(jnp.ones(5, jnp.int32)), TypeError,
            r"`v0`.*floating"),
    Hostile("top_eigenvalues v0: boolean dtype", lambda: _top(jnp.ones(5, bool)), TypeError, r"`v0`"),
    Hostile("top_eigenvalues v0: complex dtype", lambda: _top(jnp.ones(5, jnp.complex64)), TypeError,
            r"`v0`.*real"),
    Hostile("top_eigenvalues v0: NaN entry", lambda: _top(V.at[0, 1].set(jnp.nan)), ValueError,
            r"`v0`.*non-finite"),
    Hostile("top_eigenvalues v0: inf entry", lambda: _top(V.at[1, 0].set(jnp.inf)), ValueError,
            r"`v0`.*non-finite"),
    Hostile("top_eigenvalues v0: zero vector", lambda: _top(jnp.zeros(5)), ValueError, r"`v0`.*zero"),
    Hostile("top_eigenvalues v0: zero block", lambda: _top(jnp.zeros((3, 5))), ValueError,
            r"`v0`.*zero"),
    Hostile("top_eigenvalues v0: one zero row", lambda: _top(V.at[1].set(0.0)), ValueError,
            r"`v0`.*row 1"),
    Hostile("top_eigenvalues v0: n_steps below k", lambda: _top(V, n_steps=1), ValueError, r"`n_steps`"),
    Hostile("top_eigenvalues v0: not converged raises",
            lambda: top_eigenvalues(jnp.asarray(np.diag(np.arange(1.0, 41.0))), 3,
                                    v0=jnp.ones((1, 40)), n_steps=4),
            eqx.EquinoxRuntimeError, r"converge", near_top=None),
    Hostile("top_eigenvalues v0: not converged flagged",
            lambda: top_eigenvalues(jnp.asarray(np.diag(np.arange(1.0, 41.0))), 3,
                                    v0=jnp.ones((1, 40)), n_steps=4, throw=False),
            None, flagged=_flag(RESULTS.not_converged)),
    Hostile("top_eigenvalues v0: NaN operator under jit flagged", _nan_operator_under_jit, None,
            flagged=_flag(RESULTS.nonfinite_curvature)),
    Hostile("train: warm_start not a bool",
            lambda: train(_loss, jnp.zeros(3), X, Y, n_steps=2, lr=0.1, every=1, warm_start="yes",
                          progress=False),
            TypeError, r"`warm_start`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
