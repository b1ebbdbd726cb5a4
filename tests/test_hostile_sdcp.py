"""Hostile inputs to `jaxdyn.training.psd_complementarity` and `SemismoothNewton`: each is a clear
error naming the argument, or a flagged result (a problem without a solution)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.training import SemismoothNewton, psd_complementarity

from .helpers import Hostile, hostile_ids, run_hostile

K = 2
Q = np.array([[-1.0, 0.2], [0.2, 0.5]])
M = np.einsum("ai,bj->abij", np.eye(K), np.eye(K))          # M(S) = S: S = max(-q, 0) in q's basis
M_NEG = -M                                                  # M = -I: no solution for this q


def _nan(x, index):
    y = np.array(x, dtype=float)
    y[index] = np.nan
    return y


def _gram(k):
    """A full-rank Gram form M = G G^T (the GD case)."""
    G = np.random.default_rng(0).normal(size=(k, k, k * (k + 1)))
    G = G + G.transpose(1, 0, 2)
    return np.einsum("abr,ijr->abij", G, G)


def _flagged(res):
    return (not bool(res.successful)
            and int(res.result._value) == RESULTS.complementarity_not_solved._value
            and "FAILED" in res.summary())


ROWS = [
    Hostile("psd_complementarity: q not square", lambda: psd_complementarity(np.ones((2, 3)), M),
            ValueError, r"`q` must be a square"),
    Hostile("psd_complementarity: q a vector", lambda: psd_complementarity(np.ones(2), M),
            ValueError, r"`q` must be a square"),
    Hostile("psd_complementarity: q a batch", lambda: psd_complementarity(np.stack([Q, Q]), M),
            ValueError, r"`q` must be a square.*vmap"),
    Hostile("psd_complementarity: q empty", lambda: psd_complementarity(np.ones((0, 0)), M),
            ValueError, r"`q` must be a square"),
    Hostile("psd_complementarity: M of the wrong size",
            lambda: psd_complementarity(Q, np.ones((3, 3, 3, 3))), ValueError, r"`M` must have shape"),
    Hostile("psd_complementarity: M a matrix", lambda: psd_complementarity(Q, np.eye(4)),
            ValueError, r"`M` must have shape"),
    Hostile("psd_complementarity: init of the wrong shape",
            lambda: psd_complementarity(Q, M, init=np.zeros((3, 3))), ValueError, r"`init` must have shape"),
    Hostile("psd_complementarity: q not symmetric",
            lambda: psd_complementarity(np.array([[0.0, 1.0], [0.0, 0.0]]), M), ValueError,
            r"`q` must be symmetric"),
    Hostile("psd_complementarity: M(S) not symmetric",
            lambda: psd_complementarity(Q, np.einsum("ai,bj->abij", np.eye(2), [[1.0, 1.0], [0.0, 1.0]])),
            ValueError, r"`M` must map symmetric matrices"),
    Hostile("psd_complementarity: NaN in q", lambda: psd_complementarity(_nan(Q, (0, 0)), M),
            ValueError, r"`q` contains non-finite"),
    Hostile("psd_complementarity: inf in M",
            lambda: psd_complementarity(Q, np.where(M > 0, np.inf, 0.0)), ValueError,
            r"`M` contains non-finite"),
    Hostile("psd_complementarity: NaN in init",
            lambda: psd_complementarity(Q, M, init=_nan(np.zeros((2, 2)), (1, 1))), ValueError,
            r"`init` contains non-finite"),
    Hostile("psd_complementarity: NaN in q under jit",
            lambda: jax.block_until_ready(eqx.filter_jit(
                lambda q: psd_complementarity(q, M, throw=False).S)(jnp.asarray(_nan(Q, (0, 1))))),
            eqx.EquinoxRuntimeError, r"`q` contains non-finite", near_top=None),
    Hostile("psd_complementarity: complex q", lambda: psd_complementarity(Q + 1j, M), TypeError,
            r"`q` must be a real array"),
    Hostile("psd_complementarity: q a string", lambda: psd_complementarity("q", M), TypeError,
            r"`q` must be a real array"),
    Hostile("psd_complementarity: solver a string", lambda: psd_complementarity(Q, M, solver="newton"),
            TypeError, r"`solver` must be a SemismoothNewton"),
    Hostile("psd_complementarity: throw not a bool", lambda: psd_complementarity(Q, M, throw=1),
            TypeError, r"`throw` must be a bool"),
    Hostile("SemismoothNewton: negative tol", lambda: SemismoothNewton(tol=-1e-8), ValueError,
            r"`tol` must be a finite positive"),
    Hostile("SemismoothNewton: NaN tol", lambda: SemismoothNewton(tol=float("nan")), ValueError,
            r"`tol` must be a finite positive"),
    Hostile("SemismoothNewton: tol a string", lambda: SemismoothNewton(tol="1e-8"), TypeError,
            r"`tol` must be a float"),
    Hostile("SemismoothNewton: max_steps zero", lambda: SemismoothNewton(max_steps=0), ValueError,
            r"`max_steps` must be >= 1"),
    Hostile("SemismoothNewton: max_steps a float", lambda: SemismoothNewton(max_steps=2.5), TypeError,
            r"`max_steps` must be an int"),
    Hostile("psd_complementarity: no solution (M = -I), throw=False",
            lambda: psd_complementarity(Q, M_NEG, throw=False), None, flagged=_flagged),
    Hostile("psd_complementarity: no solution (M = -I), throw=True",
            lambda: psd_complementarity(Q, M_NEG), eqx.EquinoxRuntimeError,
            r"complementarity problem .* was not solved"),
    Hostile("psd_complementarity: no solution under jit, throw=True",
            lambda: jax.block_until_ready(eqx.filter_jit(lambda q: psd_complementarity(q, M_NEG).S)(Q)),
            eqx.EquinoxRuntimeError, r"complementarity problem .* was not solved", near_top=None),
    Hostile("psd_complementarity: step budget too small, throw=False",
            lambda: psd_complementarity(-np.eye(3), _gram(3), solver=SemismoothNewton(max_steps=1),
                                        throw=False), None, flagged=_flagged),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
