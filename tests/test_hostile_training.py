"""Hostile inputs for jaxdyn.training (everything but SGD, whose rows are in test_hostile_sgd.py):
a clear error naming the argument before any compilation, or a result whose code says what failed
and where (step, time). Rows that fail inside `eqx.filter_jit` raise `eqx.EquinoxRuntimeError`,
whose message equinox prefixes with the stack inside the jitted function (`near_top=None`)."""

import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn._results import RESULTS, codes
from jaxdyn.training import (
    Checkpoint,
    GradientFlow,
    edge_of_stability,
    gd_endpoints,
    gd_map,
    gd_stability,
    gradient_flow,
    hyperbola_loss,
    train,
)

from .helpers import Hostile, hostile_ids, run_hostile

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))
Y = jnp.asarray(np.random.default_rng(1).normal(size=6))
P = {"w": jnp.asarray([0.5, -1.0]), "b": jnp.asarray(0.3)}


def lsq(p, x, y):
    return 0.5 * jnp.mean((x @ p["w"] + p["b"] - y) ** 2)


def log_loss(p, x, y):  # NaN once w goes negative: a loss that fails with finite data
    return jnp.mean(jnp.log(p["w"][0]) * y**2) + 0.0 * p["b"]


def T(**kw):
    kw = {"n_steps": 10, "lr": 0.1, "every": 5, "top_k": 0, "progress": False, **kw}
    return train(kw.pop("loss", lsq), kw.pop("params", P), kw.pop("x", X), kw.pop("y", Y), **kw)


@functools.cache
def overflow(throw=False):
    """GD with a step size far beyond 2/lambda_max: the loss overflows after a few dozen steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return T(n_steps=200, lr=1e3, every=10, top_k=1, throw=throw)


def _raises_at_end():
    overflow.cache_clear()
    return overflow(throw=True)


def _warns():
    with pytest.warns(RuntimeWarning, match=r"`train`: step \d+"):
        return T(n_steps=200, lr=1e3, every=10, top_k=1, throw=False)


def _nan_loss():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return T(loss=log_loss, params={"w": jnp.asarray([0.2, 1.0]), "b": jnp.asarray(0.0)}, lr=50.0,
                 throw=False)


def _train_failed(r, code):
    losses = np.asarray(r.losses)
    fs = int(r.failed_step)
    return (
        r.result == code
        and not r.successful
        and fs >= 0
        and np.all(np.isfinite(losses[:fs]))
        and np.all(np.isnan(losses[fs + 1 :]))
        and all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree_util.tree_leaves(r.params))
        and np.isfinite(float(r.failed_time))
        and "FAILED at step" in r.summary()
    )


def _blowup_flow(throw=False):
    # theta' = 4 theta^3 (L = -theta^4) blows up at t = 1 / (8 theta0^2) = 0.5
    return gradient_flow(
        lambda th: -jnp.sum(th**4),
        jnp.asarray([0.5]),
        ts=jnp.linspace(0.0, 1.0, 5),
        flow=GradientFlow(dt_max=0.05),
        throw=throw,
    )


def _stability_under_jit(throw=False):
    return eqx.filter_jit(lambda w: gd_stability(hyperbola_loss, w, 0.3, k=1, throw=throw))(
        jnp.asarray([jnp.nan, 1.0])
    )


ROWS = [
    # train: bad input, before any compilation
    Hostile("train: loss_fn not callable", lambda: T(loss="mse"), TypeError, r"`loss_fn`"),
    Hostile("train: NaN data", lambda: T(x=X.at[0, 0].set(jnp.nan)), ValueError, r"`data`"),
    Hostile("train: inf params", lambda: T(params={**P, "b": jnp.asarray(jnp.inf)}), ValueError, r"`params`"),
    Hostile("train: mismatched data sizes", lambda: T(y=Y[:-1]), ValueError, r"`data`"),
    Hostile("train: empty data", lambda: T(x=X[:0], y=Y[:0]), ValueError, r"`data`"),
    Hostile(
        "train: non-scalar loss", lambda: T(loss=lambda p, x, y: x @ p["w"] - y), ValueError, r"`loss_fn"
    ),
    Hostile("train: lr = 0", lambda: T(lr=0.0), ValueError, r"`lr`"),
    Hostile("train: lr < 0", lambda: T(lr=-0.1), ValueError, r"`lr`"),
    Hostile("train: lr NaN", lambda: T(lr=float("nan")), ValueError, r"`lr`"),
    Hostile("train: lr inf", lambda: T(lr=float("inf")), ValueError, r"`lr`"),
    Hostile("train: lr a vector", lambda: T(lr=jnp.ones(2)), ValueError, r"`lr`"),
    Hostile("train: no lr and no optimizer", lambda: T(lr=None), ValueError, r"`lr`"),
    Hostile("train: n_steps = 0", lambda: T(n_steps=0), ValueError, r"`n_steps`"),
    Hostile("train: n_steps not a multiple of every", lambda: T(n_steps=12), ValueError, r"`n_steps`"),
    Hostile("train: n_steps a float", lambda: T(n_steps=10.0), TypeError, r"`n_steps`"),
    Hostile("train: every = 0", lambda: T(every=0), ValueError, r"`every`"),
    Hostile("train: blocks_per_call = 0", lambda: T(blocks_per_call=0), ValueError, r"`blocks_per_call`"),
    Hostile(
        "train: blocks_per_call a float", lambda: T(blocks_per_call=1.5), TypeError, r"`blocks_per_call`"
    ),
    Hostile("train: top_k beyond the parameter count", lambda: T(top_k=4), ValueError, r"`top_k`"),
    Hostile("train: top_k < 0", lambda: T(top_k=-1), ValueError, r"`top_k`"),
    Hostile("train: optimizer of the wrong type", lambda: T(optimizer="adam"), TypeError, r"`optimizer`"),
    Hostile("train: flow of the wrong type", lambda: T(flow="yes"), TypeError, r"`flow`"),
    Hostile(
        "train: checkpoint of the wrong type", lambda: T(checkpoint="run.ckpt"), TypeError, r"`checkpoint`"
    ),
    Hostile("train: key is an int", lambda: T(key=0), TypeError, r"`key`"),
    Hostile("train: throw not a bool", lambda: T(throw="yes"), TypeError, r"`throw`"),
    # the shared jaxdyn._checkpoint.Checkpoint converts `path` with os.fspath, whose TypeError names
    # the expected type (str or os.PathLike) rather than the argument
    Hostile("Checkpoint: path not a str", lambda: Checkpoint(3), TypeError, r"`path`|os\.PathLike"),
    Hostile("Checkpoint: every = 0", lambda: Checkpoint("a.ckpt", every=0), ValueError, r"`every`"),
    # train: failures at run time are raised (default) or flagged (throw=False)
    Hostile(
        "train: step size that overflows",
        lambda: overflow(),
        None,
        flagged=lambda r: _train_failed(r, RESULTS.nonfinite_loss),
    ),
    Hostile("train: overflow warns with the step", _warns, None, flagged=lambda r: not r.successful),
    Hostile(
        "train: overflow with throw=True",
        _raises_at_end,
        eqx.EquinoxRuntimeError,
        r"loss became non-finite.*`train`: step \d+ .*was not taken",
    ),
    Hostile(
        "train: loss NaN from finite data",
        _nan_loss,
        None,
        flagged=lambda r: _train_failed(r, RESULTS.nonfinite_loss),
    ),
    Hostile(
        "train: optax optimizer that overflows",
        lambda: _adam_overflow(),
        None,
        flagged=lambda r: not r.successful and int(r.failed_step) >= 0,
    ),
    # gd_map
    Hostile("gd_map: loss_fn not callable", lambda: gd_map(None, 0.1), TypeError, r"`loss_fn`"),
    Hostile("gd_map: lr <= 0", lambda: gd_map(lsq, 0.0), ValueError, r"`lr`"),
    Hostile("gd_map: lr NaN", lambda: gd_map(lsq, float("nan")), ValueError, r"`lr`"),
    Hostile(
        "gd_map: NaN params",
        lambda: gd_map(lsq, 0.1)({**P, "b": jnp.asarray(jnp.nan)}, X, Y),
        ValueError,
        r"`params`",
    ),
    Hostile("gd_map: NaN data", lambda: gd_map(lsq, 0.1)(P, X, Y.at[0].set(jnp.nan)), ValueError, r"`data`"),
    Hostile(
        "gd_map: NaN params under jit",
        lambda: eqx.filter_jit(lambda p: gd_map(lsq, 0.1)(p, X, Y))({**P, "b": jnp.asarray(jnp.nan)}),
        eqx.EquinoxRuntimeError,
        r"`gd_map`: the step produced non-finite parameters",
        near_top=None,
    ),
    Hostile(
        "gd_map: overflow under jit",
        lambda: eqx.filter_jit(lambda p: gd_map(lambda p, x, y: 1e10 * lsq(p, x, y), 1e300)(p, X, Y))(P),
        eqx.EquinoxRuntimeError,
        r"`gd_map`.*non-finite",
        near_top=None,
    ),
    Hostile("gd_map: throw not a bool", lambda: gd_map(lsq, 0.1, throw=1), TypeError, r"`throw`"),
    # gd_stability
    Hostile(
        "gd_stability: NaN params",
        lambda: gd_stability(hyperbola_loss, jnp.asarray([jnp.nan, 1.0]), 0.3),
        ValueError,
        r"`params`",
    ),
    Hostile(
        "gd_stability: NaN data",
        lambda: gd_stability(lsq, P, 0.3, X, Y.at[0].set(jnp.nan)),
        ValueError,
        r"`data`",
    ),
    Hostile(
        "gd_stability: NaN params under jit",
        _stability_under_jit,
        None,
        flagged=lambda r: r.result != RESULTS.successful and bool(jnp.isnan(r.mu)),
    ),
    Hostile(
        "gd_stability: lr < 0", lambda: gd_stability(hyperbola_loss, jnp.ones(2), -0.3), ValueError, r"`lr`"
    ),
    Hostile(
        "gd_stability: k = 0", lambda: gd_stability(hyperbola_loss, jnp.ones(2), 0.3, k=0), ValueError, r"`k`"
    ),
    Hostile(
        "gd_stability: rank_tol >= 1",
        lambda: gd_stability(hyperbola_loss, jnp.ones(2), 0.3, rank_tol=1.5),
        ValueError,
        r"`rank_tol`",
    ),
    Hostile(
        "gd_stability: grad_tol < 0",
        lambda: gd_stability(hyperbola_loss, jnp.ones(2), 0.3, grad_tol=-1.0),
        ValueError,
        r"`grad_tol`",
    ),
    Hostile(
        "gd_stability: key is a float",
        lambda: gd_stability(hyperbola_loss, jnp.ones(2), 0.3, key=1.0),
        TypeError,
        r"`key`",
    ),
    # gd_endpoints
    Hostile(
        "gd_endpoints: inits without a batch axis",
        lambda: gd_endpoints(hyperbola_loss, jnp.asarray(1.0), 0.1),
        ValueError,
        r"`inits`",
    ),
    Hostile(
        "gd_endpoints: NaN inits",
        lambda: gd_endpoints(hyperbola_loss, jnp.full((2, 2), jnp.nan), 0.1),
        ValueError,
        r"`inits`",
    ),
    Hostile(
        "gd_endpoints: tol = 0",
        lambda: gd_endpoints(hyperbola_loss, jnp.ones((2, 2)), 0.1, tol=0.0),
        ValueError,
        r"`tol`",
    ),
    Hostile(
        "gd_endpoints: steps = 0",
        lambda: gd_endpoints(hyperbola_loss, jnp.ones((2, 2)), 0.1, n_steps=0),
        ValueError,
        r"`n_steps`",
    ),
    Hostile(
        "gd_endpoints: diverging runs",
        lambda: gd_endpoints(
            hyperbola_loss, jnp.asarray([[1.0, 1.0], [3.0, 3.0]]), 1.5, n_steps=200, throw=False
        ),
        None,
        flagged=lambda e: (
            e.n_diverged == 1
            and codes(e.result)[1] == codes(RESULTS.nonfinite_loss)
            and int(e.failed_step[1]) > 0
            and int(e.failed_step[0]) == -1
        ),
    ),
    # gradient_flow
    Hostile(
        "gradient_flow: ts decreasing",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([1.0, 0.0])),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "gradient_flow: ts NaN",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([0.0, jnp.nan])),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "gradient_flow: one time",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([0.0])),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "gradient_flow: NaN params",
        lambda: gradient_flow(lsq, {**P, "b": jnp.asarray(jnp.nan)}, X, Y, ts=jnp.asarray([0.0, 1.0])),
        ValueError,
        r"`params`",
    ),
    Hostile(
        "gradient_flow: flow of the wrong type",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([0.0, 1.0]), flow="rk4"),
        TypeError,
        r"`flow`",
    ),
    Hostile("GradientFlow: safety > 2", lambda: GradientFlow(safety=3.0), ValueError, r"`safety`"),
    Hostile("GradientFlow: dt_max <= 0", lambda: GradientFlow(dt_max=0.0), ValueError, r"`dt_max`"),
    Hostile(
        "gradient_flow: blow-up in finite time",
        _blowup_flow,
        None,
        flagged=lambda s: (
            s.result == RESULTS.nonfinite_state
            and s.result != RESULTS.successful
            and 0.5 <= float(s.failed_time) <= 0.75
            and int(s.failed_step) == 3
        ),
    ),
    # edge_of_stability
    Hostile(
        "edge_of_stability: not a TrainResult",
        lambda: edge_of_stability({"sharpness": 1.0}),
        TypeError,
        r"`result`",
    ),
    Hostile(
        "edge_of_stability: band >= 1", lambda: edge_of_stability(overflow(), band=1.5), ValueError, r"`band`"
    ),
    Hostile(
        "edge_of_stability: a diverged run",
        lambda: edge_of_stability(overflow(), throw=False),
        None,
        flagged=lambda e: (
            e.result == RESULTS.nonfinite_loss
            and e.failed_step >= 0
            and np.isfinite(e.final_sharpness)
            and np.isfinite(e.final_loss)
        ),
    ),
]


def neg_log_loss(w):  # NaN at a finite point with w[0] < 0: a failure of gd_stability without jit
    return jnp.log(w[0]) + 0.5 * w[1] ** 2


SHORT_FLOW = GradientFlow(dt_max=0.01, max_steps=4)  # 0.5 / 0.01 = 50 steps needed per interval

ROWS += [
    # both modes of every throw-capable entry (throw=True: the message; throw=False: the code)
    Hostile(
        "gd_map: throw=False passes NaN through under jit",
        lambda: eqx.filter_jit(lambda p: gd_map(lsq, 0.1, throw=False)(p, X, Y))(
            {**P, "b": jnp.asarray(jnp.nan)}
        ),
        None,
        flagged=lambda p: bool(jnp.isnan(p["b"])),
    ),
    Hostile(
        "gradient_flow: blow-up with throw=True",
        lambda: _blowup_flow(throw=True),
        eqx.EquinoxRuntimeError,
        r"state became non-finite.*`gradient_flow`: pass `throw=False`",
    ),
    Hostile(
        "gradient_flow: blow-up with throw=True under jit",
        lambda: eqx.filter_jit(lambda p: _flow_from(p, throw=True))(jnp.asarray([0.5])),
        eqx.EquinoxRuntimeError,
        r"state became non-finite",
        near_top=None,
    ),
    Hostile(
        "gradient_flow: max_steps reached (diffrax's code mapped), throw=False",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([0.0, 0.5]), flow=SHORT_FLOW, throw=False),
        None,
        flagged=lambda s: s.result == RESULTS.max_steps_reached and int(s.failed_step) == 1,
    ),
    Hostile(
        "gradient_flow: max_steps reached, throw=True",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([0.0, 0.5]), flow=SHORT_FLOW),
        eqx.EquinoxRuntimeError,
        r"maximum number of steps",
    ),
    Hostile(
        "train: flow hitting max_steps is flow_result",
        lambda: T(flow=SHORT_FLOW, lr=0.1, n_steps=10),
        None,
        flagged=lambda r: r.successful and r.flow_result == RESULTS.max_steps_reached,
    ),
    Hostile(
        "gd_stability: NaN loss at a finite point, throw=True",
        lambda: gd_stability(neg_log_loss, jnp.asarray([-1.0, 1.0]), 0.3, k=1),
        eqx.EquinoxRuntimeError,
        r"loss became non-finite.*`gd_stability`: pass `throw=False`",
    ),
    Hostile(
        "gd_stability: NaN loss at a finite point, throw=False",
        lambda: gd_stability(neg_log_loss, jnp.asarray([-1.0, 1.0]), 0.3, k=1, throw=False),
        None,
        flagged=lambda r: r.result == RESULTS.nonfinite_loss and not bool(r.successful),
    ),
    Hostile(
        "gd_stability: NaN params under jit, throw=True",
        lambda: _stability_under_jit(throw=True),
        eqx.EquinoxRuntimeError,
        r"non-finite",
        near_top=None,
    ),
    Hostile(
        "gd_stability: throw not a bool",
        lambda: gd_stability(hyperbola_loss, jnp.ones(2), 0.3, throw=None),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "gd_endpoints: diverging runs, throw=True",
        lambda: gd_endpoints(hyperbola_loss, jnp.asarray([[1.0, 1.0], [3.0, 3.0]]), 1.5, n_steps=200),
        eqx.EquinoxRuntimeError,
        r"loss became non-finite.*\(1 of 2\).*`gd_endpoints`: pass `throw=False`",
    ),
    Hostile(
        "gd_endpoints: throw not a bool",
        lambda: gd_endpoints(hyperbola_loss, jnp.ones((2, 2)), 0.1, throw=0),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "edge_of_stability: a diverged run, throw=True",
        lambda: edge_of_stability(overflow()),
        eqx.EquinoxRuntimeError,
        r"loss became non-finite.*`edge_of_stability`: the run failed at step \d+",
    ),
    Hostile(
        "edge_of_stability: throw not a bool",
        lambda: edge_of_stability(overflow(), throw="no"),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "gradient_flow: throw not a bool",
        lambda: gradient_flow(lsq, P, X, Y, ts=jnp.asarray([0.0, 1.0]), throw=1),
        TypeError,
        r"`throw`",
    ),
]


def _flow_from(p, throw):
    return gradient_flow(lambda th: -jnp.sum(th**4), p, ts=jnp.linspace(0.0, 1.0, 5),
                         flow=GradientFlow(dt_max=0.05), throw=throw)


def _adam_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return T(
            loss=log_loss,
            params={"w": jnp.asarray([0.2, 1.0]), "b": jnp.asarray(0.0)},
            optimizer=optax.sgd(50.0),
            throw=False,
        )


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)


def test_mixed_precision_train():
    """float32 parameters with float64 data train in float32 (the parameters' dtype): no error."""
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), P)
    r32, r64 = T(params=p32), T()
    assert r32.successful and r32.params["w"].dtype == jnp.float32
    np.testing.assert_allclose(r32.losses, r64.losses, rtol=1e-5)
