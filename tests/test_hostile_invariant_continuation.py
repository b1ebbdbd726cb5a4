"""Hostile inputs to `continuation`, its problems and `switch_branch`: a clear error naming the
argument, or a result code. Everything but the singular-start rows fails before compiling; those
share one compiled loop of the one-dimensional fold f = p - x^2 (singular at x = 0, p = 0)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import (
    ArnoldiEigenvalues,
    EquilibriumProblem,
    FixedPointProblem,
    continuation,
    switch_branch,
)
from jaxdyn.invariant._branch import BranchStart

from .helpers import Hostile, hostile_ids, run_hostile


def fold_field(t, y, p):
    return p - y**2


def _rate(t, y, args):
    return args["rate"] * y


FOLD = EquilibriumProblem(fold_field)
X = jnp.array([1.0])
OK = dict(p_min=-1.0, p_max=2.0, n_steps=10)


def _cont(**kwargs):
    settings = {**OK, **kwargs}
    u0 = settings.pop("u0", X)
    p0 = settings.pop("p0", 1.0)
    return continuation(settings.pop("problem", FOLD), u0, p0, **settings)


def _singular(**kwargs):
    return continuation(FOLD, jnp.array([0.0]), 0.0, **OK, **kwargs)


def _fake_branch():
    """A branch with one fold recorded (for switch_branch's rows; built without continuing)."""
    out = _singular(throw=False)
    return eqx.tree_at(lambda b: (b.special_kind, b.n_special, b.special_u, b.special_p),
                       out, (out.special_kind.at[0].set(0), jnp.asarray(1, jnp.int32),
                             out.special_u.at[0].set(0.0), out.special_p.at[0].set(0.0)))


ROWS = [
    # --- continuation: the problem and the start ---------------------------------------------
    Hostile("continuation: problem a function", lambda: _cont(problem=fold_field), TypeError, r"`problem`"),
    Hostile("continuation: u0 missing", lambda: continuation(FOLD, None, 1.0, **OK), ValueError, r"`u0`"),
    Hostile("continuation: u0 NaN", lambda: _cont(u0=jnp.array([jnp.nan])), ValueError, r"`u0`"),
    Hostile("continuation: u0 a matrix", lambda: _cont(u0=jnp.ones((1, 1))), ValueError, r"`u0`"),
    Hostile("continuation: u0 empty", lambda: _cont(u0=jnp.ones((0,))), ValueError, r"`u0`"),
    Hostile("continuation: u0 a string", lambda: _cont(u0="1"), TypeError, r"`u0`"),
    Hostile("continuation: p0 a vector", lambda: _cont(p0=jnp.ones(2)), ValueError, r"`p0`"),
    Hostile("continuation: p0 NaN", lambda: _cont(p0=float("nan")), ValueError, r"`p0`"),
    Hostile("continuation: p0 outside [p_min, p_max]", lambda: _cont(p0=3.0), ValueError, r"`p0`"),
    Hostile("continuation: p_min >= p_max", lambda: _cont(p_min=2.0, p_max=1.0), ValueError, r"`p_min`"),
    Hostile("continuation: field of the wrong output shape",
            lambda: _cont(problem=EquilibriumProblem(lambda t, y, p: jnp.ones(2))), ValueError,
            r"`problem`.*shape of `u0`"),
    Hostile("continuation: field fails on the arguments",
            lambda: _cont(problem=EquilibriumProblem(_rate), args={"speed": 1.0}), ValueError,
            r"`problem`'s residual fails"),
    Hostile("continuation: BranchStart with u0",
            lambda: continuation(BranchStart(FOLD, X, jnp.asarray(1.0), jnp.array([1.0, 0.0])), X, 1.0, **OK),
            ValueError, r"`u0` and `p0` must be None"),
    # --- continuation: settings ----------------------------------------------------------------
    Hostile("continuation: ds <= 0", lambda: _cont(ds=0.0), ValueError, r"`ds`"),
    Hostile("continuation: ds above ds_max", lambda: _cont(ds=1.0, ds_max=0.5), ValueError, r"`ds`"),
    Hostile("continuation: ds_min negative", lambda: _cont(ds_min=-1e-8), ValueError, r"`ds_min`"),
    Hostile("continuation: n_steps 1", lambda: _cont(n_steps=1), ValueError, r"`n_steps`"),
    Hostile("continuation: n_steps a float", lambda: _cont(n_steps=10.0), TypeError, r"`n_steps`"),
    Hostile("continuation: max_newton 0", lambda: _cont(max_newton=0), ValueError, r"`max_newton`"),
    Hostile("continuation: dense_max_dim negative", lambda: _cont(dense_max_dim=-1), ValueError,
            r"`dense_max_dim`"),
    Hostile("continuation: direction 0", lambda: _cont(direction=0), ValueError, r"`direction`"),
    Hostile("continuation: tangent of the wrong shape", lambda: _cont(tangent=jnp.ones(3)), ValueError,
            r"`tangent`"),
    Hostile("continuation: tangent zero", lambda: _cont(tangent=jnp.zeros(2)), ValueError, r"`tangent`"),
    Hostile("continuation: tangent NaN", lambda: _cont(tangent=jnp.array([1.0, jnp.nan])), ValueError,
            r"`tangent`"),
    Hostile("continuation: linear_solver a string", lambda: _cont(linear_solver="lu"), TypeError,
            r"`linear_solver`"),
    Hostile("continuation: newton_tol <= 0", lambda: _cont(newton_tol=0.0), ValueError, r"`newton_tol`"),
    Hostile("continuation: locate_tol NaN", lambda: _cont(locate_tol=float("nan")), ValueError,
            r"`locate_tol`"),
    Hostile("continuation: detect not a bool", lambda: _cont(detect=1), TypeError, r"`detect`"),
    Hostile("continuation: throw not a bool", lambda: _cont(throw="yes"), TypeError, r"`throw`"),
    # --- run time: a singular start ------------------------------------------------------------
    Hostile("continuation: singular Jacobian at the start raises", lambda: _singular(),
            eqx.EquinoxRuntimeError, r"Jacobian is singular at the start"),
    Hostile("continuation: singular Jacobian at the start flagged (throw=False)",
            lambda: _singular(throw=False), None,
            flagged=lambda b: b.result == RESULTS.singular_jacobian and int(b.n_points) == 0),
    Hostile("continuation: a start with no solution at p0 flagged (throw=False)",
            lambda: continuation(FOLD, X, -0.5, **OK, throw=False), None,
            flagged=lambda b: b.result == RESULTS.not_converged and int(b.n_points) == 0),
    Hostile("continuation: the step falls below ds_min: the branch so far kept (throw=False)",
            lambda: continuation(FOLD, X, 1.0, **OK, ds=0.2, ds_min=0.1, ds_max=0.5, newton_tol=1e-300,
                                 throw=False), None,
            flagged=lambda b: b.result == RESULTS.branch_step_too_small and int(b.n_points) >= 1
            and "below `ds_min`" in b.summary()),
    # --- problems ------------------------------------------------------------------------------
    Hostile("EquilibriumProblem: field not callable", lambda: EquilibriumProblem(jnp.ones(2)), TypeError,
            r"`field`"),
    Hostile("EquilibriumProblem: eigenvalues a string",
            lambda: EquilibriumProblem(fold_field, eigenvalues="dense"), TypeError, r"`eigenvalues`"),
    Hostile("EquilibriumProblem: parameter not callable",
            lambda: EquilibriumProblem(fold_field, parameter="rho"), TypeError, r"`parameter`"),
    Hostile("ArnoldiEigenvalues: n_eigs 0", lambda: ArnoldiEigenvalues(n_eigs=0), ValueError, r"`n_eigs`"),
    Hostile("ArnoldiEigenvalues: krylov_dim not above n_eigs",
            lambda: ArnoldiEigenvalues(n_eigs=6, krylov_dim=6), ValueError, r"`krylov_dim`"),
    Hostile("ArnoldiEigenvalues: shift negative", lambda: ArnoldiEigenvalues(shift=-1.0), ValueError,
            r"`shift`"),
    Hostile("FixedPointProblem: map not callable", lambda: FixedPointProblem(3.0), TypeError, r"`map`"),
    Hostile("FixedPointProblem: period 0", lambda: FixedPointProblem(lambda x, r: x, period=0), ValueError,
            r"`period`"),
    Hostile("FixedPointProblem: period a float", lambda: FixedPointProblem(lambda x, r: x, period=2.0),
            TypeError, r"`period`"),
    # --- switch_branch -------------------------------------------------------------------------
    Hostile("switch_branch: branch not a BranchResult", lambda: switch_branch("branch", 0), TypeError,
            r"`branch`"),
    Hostile("switch_branch: index out of range", lambda: switch_branch(_fake_branch(), 3), ValueError,
            r"`index`"),
    Hostile("switch_branch: index a bool", lambda: switch_branch(_fake_branch(), True), TypeError,
            r"`index`"),
    Hostile("switch_branch: amplitude zero", lambda: switch_branch(_fake_branch(), 0, amplitude=0.0),
            ValueError, r"`amplitude`"),
    Hostile("switch_branch: at a fold", lambda: switch_branch(_fake_branch(), 0), ValueError,
            r"`index` 0 is a fold"),
    Hostile("BranchResult.plot: component out of range",
            lambda: _fake_branch().plot(component=np.int64(4)), ValueError, r"`component`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
