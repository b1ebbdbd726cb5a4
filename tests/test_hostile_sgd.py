"""Hostile inputs for SGD as a random dynamical system (`jaxdyn.training`'s SGD entry points).

Bad input is rejected before any compilation with an error naming the argument; failures that can
only be seen at run time (non-finite traced inputs, runs that overflow) are result codes.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS, is_successful
from jaxdyn.training import (
    GaussNewton,
    find_interpolating_minimum,
    interpolation_check,
    mean_square_bound,
    normal_space,
    sgd_escape,
    sgd_lyapunov,
    sgd_stability_diagram,
)
from tests.helpers import Hostile, hostile_ids, run_hostile

# The problem and run settings of tests/test_training_sgd.py (`stable_case`): the rows that reach a
# compiled program reuse the programs compiled there (the same loss, shapes and static settings).
from tests.test_training_sgd import (
    KEY,
    RUN as _RUN,
    THETA1 as THETA,
    curvature_data,
    lsq_loss as loss,
    lsq_residual as residual,
)

RUN = dict(key=KEY, **_RUN)
DATA = curvature_data([1.05, 3.15])  # two examples, curvatures 1.05 and 3.15, minimum at 0.7
X = DATA[0]


def nan_at(tree, i=0):
    """`tree` with a NaN in the first entry of its `i`-th leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves[i] = jnp.asarray(leaves[i]).ravel().at[0].set(jnp.nan).reshape(jnp.shape(leaves[i]))
    return jax.tree_util.tree_unflatten(treedef, leaves)


@functools.cache
def space():
    return normal_space(loss, THETA, DATA)


def lyap(**kw):
    args = dict(lr=jnp.asarray(1.0), batch_size=1, **RUN)
    args.update(kw)
    params = args.pop("params", THETA)
    data = args.pop("data", DATA)
    return sgd_lyapunov(loss, params, data, **args)


def diagram(**kw):
    args = dict(lrs=jnp.array([0.5, 1.0]), batch_sizes=(1, 2), **RUN)
    args.update(kw)
    params = args.pop("params", THETA)
    return sgd_stability_diagram(loss, params, DATA, **args)


def escape(**kw):
    args = dict(lr=1.0, batch_size=1, key=KEY, n_steps=10, n_runs=2)
    args.update(kw)
    data = args.pop("data", DATA)
    return sgd_escape(loss, THETA, data, **args)


@eqx.filter_jit
def jit_flag(params, lr):
    """sgd_lyapunov under `eqx.filter_jit`: traced `params` and `lr` are not checked before compiling,
    so non-finite values are flags (one compiled program for the rows that use it)."""
    return lyap(params=params, lr=lr, normal_space=space(), throw=False)




@eqx.filter_jit
def jit_throw(params, lr):
    """sgd_lyapunov under `eqx.filter_jit` with `throw=True`: the interpolation check is traced, so a
    failed check raises through `eqx.error_if` (the code of the result)."""
    return lyap(params=params, lr=lr, normal_space=space())


def not_successful(result) -> bool:
    return not bool(np.all(np.asarray(is_successful(result))))


ROWS = [
    # -- sgd_lyapunov ----------------------------------------------------------------------------
    Hostile("sgd_lyapunov: batch_size > n", lambda: lyap(batch_size=3), ValueError, r"`batch_size`"),
    Hostile("sgd_lyapunov: batch_size = 0", lambda: lyap(batch_size=0), ValueError, r"`batch_size`"),
    Hostile("sgd_lyapunov: float batch_size", lambda: lyap(batch_size=1.0), TypeError, r"`batch_size`"),
    Hostile("sgd_lyapunov: lr = 0", lambda: lyap(lr=0.0), ValueError, r"`lr`"),
    Hostile("sgd_lyapunov: lr < 0", lambda: lyap(lr=-1.0), ValueError, r"`lr`"),
    Hostile("sgd_lyapunov: lr NaN", lambda: lyap(lr=jnp.nan), ValueError, r"`lr`"),
    Hostile("sgd_lyapunov: lr not a scalar", lambda: lyap(lr=jnp.ones(2)), ValueError, r"`lr`"),
    Hostile("sgd_lyapunov: NaN params", lambda: lyap(params=nan_at(THETA)), ValueError, r"`params`"),
    Hostile("sgd_lyapunov: NaN data", lambda: lyap(data=nan_at(DATA)), ValueError, r"`data`"),
    Hostile("sgd_lyapunov: inf data", lambda: lyap(data=(X, jnp.array([jnp.inf, 0.0]))), ValueError,
            r"`data`"),
    Hostile("sgd_lyapunov: mismatched leading sizes", lambda: lyap(data=(X, DATA[1][:1])), ValueError,
            r"`data`"),
    Hostile("sgd_lyapunov: empty data", lambda: lyap(data=(X[:0], DATA[1][:0])), ValueError, r"`data`"),
    Hostile("sgd_lyapunov: data without leaves", lambda: lyap(data=()), ValueError, r"`data`"),
    Hostile("sgd_lyapunov: params without float leaves", lambda: lyap(params=jnp.array([1])),
            ValueError, r"`params`"),
    Hostile("sgd_lyapunov: k > rank", lambda: lyap(k=2), ValueError, r"`k`"),
    Hostile("sgd_lyapunov: k = 0", lambda: lyap(k=0), ValueError, r"`k`"),
    Hostile("sgd_lyapunov: n_steps = 0", lambda: lyap(n_steps=0), ValueError, r"`n_steps`"),
    Hostile("sgd_lyapunov: n_chains = 0", lambda: lyap(n_chains=0), ValueError, r"`n_chains`"),
    Hostile("sgd_lyapunov: transient_steps < 0", lambda: lyap(transient_steps=-1), ValueError,
            r"`transient_steps`"),
    Hostile("sgd_lyapunov: float32 params, float64 data", lambda: lyap(params=THETA.astype(jnp.float32)),
            TypeError, r"`params`.*`data`"),
    Hostile("sgd_lyapunov: float64 params, float32 data",
            lambda: lyap(data=jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), DATA)),
            TypeError, r"`data`"),
    Hostile("sgd_lyapunov: not interpolating (raise)", lambda: lyap(params=THETA + 0.1), ValueError,
            r"`params` is not an interpolating minimum"),
    Hostile("sgd_lyapunov: not interpolating (flag)",  # the program of `stable_case`: no new compile
            lambda: lyap(params=THETA + 0.1, throw=False), None,
            flagged=lambda r: not bool(r.interpolating) and "tolerance" in r.summary()),
    Hostile("sgd_lyapunov: bad on_not_interpolating", lambda: lyap(on_not_interpolating="warn"),
            ValueError, r"`on_not_interpolating`"),
    Hostile("sgd_lyapunov: loss not callable", lambda: sgd_lyapunov(1.0, THETA, DATA, lr=1.0, batch_size=1,
                                                                    **RUN), TypeError,
            r"`per_example_loss`"),
    Hostile("sgd_lyapunov: normal_space of other data",
            lambda: lyap(data=(X[:1], DATA[1][:1]), normal_space=space()), ValueError,
            r"`normal_space`"),
    Hostile("sgd_lyapunov: normal_space of a wrong type", lambda: lyap(normal_space=3), TypeError,
            r"`normal_space`"),
    Hostile("sgd_lyapunov: NaN lr under jit, throw=False", lambda: jit_flag(THETA, jnp.asarray(jnp.nan)),
            None, flagged=lambda r: RESULTS.nonfinite_input == r.result and bool(jnp.isnan(r.exponent))
            and "non-finite" in r.summary()),
    Hostile("sgd_lyapunov: product overflows, throw=True",  # 1 - 1e308 * 3.15 = -inf: at run time
            lambda: lyap(lr=jnp.asarray(1e308)), eqx.EquinoxRuntimeError, r"non-finite",
            near_top=None),  # equinox prints the stack inside jit before the message
    Hostile("sgd_lyapunov: NaN params under jit", lambda: jit_flag(nan_at(THETA), jnp.asarray(1.0)), None,
            flagged=lambda r: not bool(r.interpolating) and bool(jnp.isnan(r.check.max_example_loss))),
    Hostile("sgd_lyapunov: jax.grad with respect to params",
            lambda: jax.grad(lambda p: lyap(params=p, normal_space=space()).exponent)(THETA), ValueError,
            r"not differentiable with respect to `params`"),
    Hostile("sgd_lyapunov: not interpolating under jit, throw=True",  # the check is traced: a code
            lambda: jit_throw(THETA + 0.1, jnp.asarray(1.0)), eqx.EquinoxRuntimeError,
            r"not an interpolating minimum", near_top=None),
    Hostile("sgd_lyapunov: not interpolating, throw=False",
            lambda: lyap(params=THETA + 0.1, throw=False), None,
            flagged=lambda r: RESULTS.not_interpolating == r.result and bool(jnp.isfinite(r.exponent))),
    Hostile("sgd_lyapunov: throw not a bool", lambda: lyap(throw="yes"), TypeError, r"`throw`"),
    # -- sgd_stability_diagram ------------------------------------------------------------------------
    Hostile("sgd_stability_diagram: lrs with 0", lambda: diagram(lrs=jnp.array([0.0, 1.0])), ValueError,
            r"`lrs`"),
    Hostile("sgd_stability_diagram: NaN lrs", lambda: diagram(lrs=jnp.array([jnp.nan])), ValueError,
            r"`lrs`"),
    Hostile("sgd_stability_diagram: empty lrs", lambda: diagram(lrs=jnp.zeros(0)), ValueError, r"`lrs`"),
    Hostile("sgd_stability_diagram: batch size > n", lambda: diagram(batch_sizes=(1, 3)), ValueError,
            r"`batch_size`"),
    Hostile("sgd_stability_diagram: no batch sizes", lambda: diagram(batch_sizes=()), ValueError,
            r"`batch_sizes`"),
    Hostile("sgd_stability_diagram: n_chains = 0", lambda: diagram(n_chains=0), ValueError, r"`n_chains`"),
    Hostile("sgd_stability_diagram: n_steps < 0", lambda: diagram(n_steps=-5), ValueError, r"`n_steps`"),
    Hostile("sgd_stability_diagram: NaN params", lambda: diagram(params=nan_at(THETA)), ValueError,
            r"`params`"),
    Hostile("sgd_stability_diagram: not interpolating", lambda: diagram(params=THETA + 0.1), ValueError,
            r"`params` is not an interpolating minimum"),
    Hostile("sgd_stability_diagram: not interpolating, throw=False",  # the grid of the GN test
            lambda: diagram(params=THETA + 0.1, curvature=GaussNewton(residual), throw=False), None,
            flagged=lambda r: bool(np.all(np.asarray(r.result._value) == RESULTS.not_interpolating._value))
            and bool(np.all(np.isfinite(np.asarray(r.exponent))))),
    Hostile("sgd_stability_diagram: a cell overflows, throw=True",
            lambda: diagram(lrs=jnp.array([0.5, 1e308]), curvature=GaussNewton(residual)),
            eqx.EquinoxRuntimeError, r"non-finite", near_top=None),
    Hostile("sgd_stability_diagram: a cell overflows, throw=False",
            lambda: diagram(lrs=jnp.array([0.5, 1e308]), curvature=GaussNewton(residual), throw=False),
            None, flagged=lambda r: not_successful(r.result) and bool(np.isnan(r.exponent[0, 1]))
            and bool(np.isfinite(r.exponent[0, 0]))),
    # -- normal_space ---------------------------------------------------------------------------------
    Hostile("normal_space: NaN params", lambda: normal_space(loss, nan_at(THETA), DATA), ValueError,
            r"`params`"),
    Hostile("normal_space: NaN data", lambda: normal_space(loss, THETA, nan_at(DATA, 1)), ValueError,
            r"`data`"),
    Hostile("normal_space: traced params", lambda: jax.jit(
        lambda p: normal_space(loss, p, DATA).eigenvalues)(THETA), ValueError, r"`params` must be concrete"),
    Hostile("normal_space: zero Hessian", lambda: normal_space(loss, THETA, (0 * X, 0 * DATA[1])),
            ValueError, r"`params`"),
    Hostile("normal_space: curvature of a wrong type", lambda: normal_space(loss, THETA, DATA,
                                                                            curvature="gn"),
            TypeError, r"`curvature`"),
    Hostile("normal_space: rtol <= 0", lambda: normal_space(loss, THETA, DATA, rtol=-1.0), ValueError,
            r"`rtol`"),
    Hostile("normal_space: GaussNewton residual not matching the loss",
            lambda: normal_space(loss, THETA, DATA, curvature=GaussNewton(lambda t, ex: 2 * residual(t, ex))),
            ValueError, r"`curvature=GaussNewton"),
    # -- interpolation_check --------------------------------------------------------------------------
    Hostile("interpolation_check: mismatched leading sizes",
            lambda: interpolation_check(loss, THETA, (X, DATA[1][:1])), ValueError, r"`data`"),
    Hostile("interpolation_check: float32/float64 mix",
            lambda: interpolation_check(loss, THETA.astype(jnp.float32), DATA), TypeError, r"`params`"),
    Hostile("interpolation_check: empty data", lambda: interpolation_check(loss, THETA, (X[:0], X[:0, 0])),
            ValueError, r"`data`"),
    Hostile("interpolation_check: not interpolating, throw=True",
            lambda: interpolation_check(loss, THETA + 0.1, DATA), eqx.EquinoxRuntimeError,
            r"not an interpolating minimum"),
    Hostile("interpolation_check: not interpolating, throw=False",
            lambda: interpolation_check(loss, THETA + 0.1, DATA, throw=False), None,
            flagged=lambda r: RESULTS.not_interpolating == r.result and not bool(r.interpolating)),
    # -- find_interpolating_minimum -------------------------------------------------------------------
    Hostile("find_interpolating_minimum: NaN data",
            lambda: find_interpolating_minimum(residual, THETA, nan_at(DATA)), ValueError, r"`data`"),
    Hostile("find_interpolating_minimum: NaN params",
            lambda: find_interpolating_minimum(residual, nan_at(THETA), DATA), ValueError, r"`params`"),
    Hostile("find_interpolating_minimum: lm_steps = 0",
            lambda: find_interpolating_minimum(residual, THETA, DATA, lm_steps=0), ValueError,
            r"`lm_steps`"),
    Hostile("find_interpolating_minimum: adam_lr < 0",
            lambda: find_interpolating_minimum(residual, THETA, DATA, adam_lr=-1e-3), ValueError,
            r"`adam_lr`"),
    Hostile("find_interpolating_minimum: empty data",
            lambda: find_interpolating_minimum(residual, THETA, (X[:0], X[:0, 0])), ValueError, r"`data`"),
    Hostile("find_interpolating_minimum: float32/float64 mix",
            lambda: find_interpolating_minimum(residual, THETA.astype(jnp.float32), DATA), TypeError,
            r"`params`"),
    Hostile("find_interpolating_minimum: not converged, throw=True",
            lambda: find_interpolating_minimum(residual, THETA + 5.0, DATA, adam_steps=0, lm_steps=1,
                                               target=1e-300), eqx.EquinoxRuntimeError,
            r"did not converge"),
    Hostile("find_interpolating_minimum: not converged, throw=False",
            lambda: find_interpolating_minimum(residual, THETA + 5.0, DATA, adam_steps=0, lm_steps=1,
                                               target=1e-300, throw=False), None,
            flagged=lambda r: RESULTS.not_converged == r.result and not bool(r.converged)),
    # -- sgd_escape ------------------------------------------------------------------------------------
    Hostile("sgd_escape: batch_size > n", lambda: escape(batch_size=5), ValueError, r"`batch_size`"),
    Hostile("sgd_escape: lr NaN", lambda: escape(lr=jnp.nan), ValueError, r"`lr`"),
    Hostile("sgd_escape: n_runs = 0", lambda: escape(n_runs=0), ValueError, r"`n_runs`"),
    Hostile("sgd_escape: radius = 0", lambda: escape(radius=0.0), ValueError, r"`radius`"),
    Hostile("sgd_escape: factor <= 1", lambda: escape(factor=0.5), ValueError, r"`factor`"),
    Hostile("sgd_escape: NaN data", lambda: escape(data=nan_at(DATA)), ValueError, r"`data`"),
    Hostile("sgd_escape: a run that overflows",  # |1 - 5 * 3.15| > 14 per step: inf within 300 steps
            lambda: escape(lr=5.0, batch_size=2, n_steps=300, throw=False), None,
            flagged=lambda r: bool(np.all(np.asarray(r.outcome) == -1))
            and bool(np.all(np.asarray(r.failed_step) > 0)) and not_successful(r.result)),
    Hostile("sgd_escape: a run that overflows, throw=True",
            lambda: escape(lr=5.0, batch_size=2, n_steps=300), eqx.EquinoxRuntimeError, r"non-finite"),
    # -- mean_square_bound ----------------------------------------------------------------------------
    Hostile("mean_square_bound: lr = 0", lambda: mean_square_bound(space(), 0.0, 1), ValueError, r"`lr`"),
    Hostile("mean_square_bound: batch_size > n", lambda: mean_square_bound(space(), 1.0, 3), ValueError,
            r"`batch_size`"),
    Hostile("mean_square_bound: batch_size = 0", lambda: mean_square_bound(space(), 1.0, 0), ValueError,
            r"`batch_size`"),
    Hostile("mean_square_bound: batch sizes outside [1, n]",
            lambda: mean_square_bound(space(), 1.0, jnp.array([1.0, 7.0])), ValueError, r"`batch_size`"),
    Hostile("mean_square_bound: not a NormalSpace", lambda: mean_square_bound(None, 1.0, 1), TypeError,
            r"`space`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)


def test_float32_throughout_is_accepted():
    """One precision everywhere (float32 params, data and normal space) with a float64 `lr`: the
    step size is cast, the whole program traces (no carry-type error; traced only, not compiled)."""
    f32 = lambda t: jax.tree_util.tree_map(  # noqa: E731
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, t)
    out = eqx.filter_eval_shape(
        lambda lr: sgd_lyapunov(loss, f32(THETA), f32(DATA), lr=lr, batch_size=1, normal_space=f32(space()),
                                loss_tol=1e-8, grad_tol=1e-4, **RUN), jnp.asarray(1.0, jnp.float64))
    assert out.exponent.dtype == jnp.float32 and out.exponents.shape == (1,)
