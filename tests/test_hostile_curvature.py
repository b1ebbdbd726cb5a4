"""Hostile inputs for jaxdyn.curvature: each row is a clear error naming the argument (before any
compilation) or a result whose code says what failed. Run-time failures inside `eqx.filter_jit`
raise `eqx.EquinoxRuntimeError`; equinox prefixes its message with the stack inside the jitted
function, so those rows check the message but not its position (`near_top=None`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.curvature import (
    HutchPlusPlus,
    SoftmaxCrossEntropy,
    gauss_newton_operator,
    hessian_operator,
    power_iteration,
    sharpness,
    spectral_density,
    top_eigenvalues,
    trace,
)

from .helpers import Hostile, hostile_ids, run_hostile

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)))
Y = jnp.asarray(np.random.default_rng(1).normal(size=6))
W = jnp.asarray([0.3, -0.5, 0.8])
A = jnp.asarray([[2.0, 1.0], [1.0, 3.0]])
NAN_A = A.at[0, 0].set(jnp.nan)
KEY = jax.random.key(0)


def loss(w, x, y):
    return 0.5 * jnp.mean((jnp.tanh(x @ w) - y) ** 2)


def model(w, x):
    return jnp.tanh(x @ w)[:, None]


def H(w=W, x=X, y=Y, **kw):
    return hessian_operator(loss, w, x, y, **kw)


def _nan_hessian_under_jit():
    # NaN parameters inside jit are not seen at the boundary: the eigen-solver's code says it
    return eqx.filter_jit(lambda w: top_eigenvalues(H(w), 1, throw=False))(W.at[0].set(jnp.nan))


def _flag(code):
    return lambda out: bool(np.all(np.asarray(out.result == code)))


def _overflow_loss(w, x, y):
    return jnp.sum(jnp.exp(1e4 * w * w)) + 0 * y[0]


# a Hessian whose products overflow at finite parameters: every estimate is non-finite
H_INF = hessian_operator(_overflow_loss, W, X, Y)


class _Quacks:
    """Has `.mv` and `.size` but is no declared operator type (duck typing is not accepted)."""

    size = 2

    def mv(self, v):
        return A @ v


ROWS = [
    # operators
    Hostile(
        "hessian_operator: loss_fn not callable",
        lambda: hessian_operator(3, W, X, Y),
        TypeError,
        r"`loss_fn`",
    ),
    Hostile(
        "hessian_operator: non-scalar loss",
        lambda: hessian_operator(lambda w, x, y: x @ w - y, W, X, Y),
        ValueError,
        r"`loss_fn`",
    ),
    Hostile("hessian_operator: mismatched data sizes", lambda: H(y=Y[:-1]), ValueError, r"`data`"),
    Hostile("hessian_operator: empty data", lambda: H(x=X[:0], y=Y[:0]), ValueError, r"`data`"),
    Hostile("hessian_operator: NaN data", lambda: H(x=X.at[1, 1].set(jnp.nan)), ValueError, r"`data`"),
    Hostile("hessian_operator: inf params", lambda: H(w=W.at[2].set(jnp.inf)), ValueError, r"`params`"),
    Hostile("hessian_operator: integer params only", lambda: H(w=jnp.arange(3)), ValueError, r"`params`"),
    Hostile("hessian_operator: chunk_size 0", lambda: H(chunk_size=0), ValueError, r"`chunk_size`"),
    Hostile("hessian_operator: chunk_size float", lambda: H(chunk_size=2.5), TypeError, r"`chunk_size`"),
    Hostile(
        "gauss_newton_operator: unknown loss",
        lambda: gauss_newton_operator(model, W, X, loss="l1"),
        ValueError,
        r"`loss`",
    ),
    Hostile("gauss_newton_operator: no data", lambda: gauss_newton_operator(model, W), ValueError, r"`data`"),
    Hostile(
        "gauss_newton_operator: loss of the wrong type",
        lambda: gauss_newton_operator(model, W, X, loss=len),
        TypeError,
        r"`loss`",
    ),
    Hostile(
        "gauss_newton_operator: cross-entropy on (batch,) outputs",
        lambda: gauss_newton_operator(lambda w, x: x @ w, W, X, loss=SoftmaxCrossEntropy()),
        ValueError,
        r"`loss=SoftmaxCrossEntropy\(\)`",
    ),
    Hostile(
        "gauss_newton_operator: outputs not (batch, q)",
        lambda: gauss_newton_operator(lambda w, x: jnp.sum(x @ w), W, X),
        ValueError,
        r"`model_fn`",
    ),
    Hostile(
        "gauss_newton_operator: NaN params",
        lambda: gauss_newton_operator(model, W * jnp.nan, X),
        ValueError,
        r"`params`",
    ),
    # eigenvalues
    Hostile("top_eigenvalues: k = 0", lambda: top_eigenvalues(A, 0), ValueError, r"`k`"),
    Hostile(
        "top_eigenvalues: k beyond the parameter count", lambda: top_eigenvalues(H(), 4), ValueError, r"`k`"
    ),
    Hostile("top_eigenvalues: k not an int", lambda: top_eigenvalues(A, 1.0), TypeError, r"`k`"),
    Hostile(
        "top_eigenvalues: unknown which",
        lambda: top_eigenvalues(A, 1, which="middle"),
        ValueError,
        r"`which`",
    ),
    Hostile("top_eigenvalues: tol < 0", lambda: top_eigenvalues(A, 1, tol=-1e-6), ValueError, r"`tol`"),
    Hostile(
        "top_eigenvalues: tol NaN", lambda: top_eigenvalues(A, 1, tol=float("nan")), ValueError, r"`tol`"
    ),
    Hostile(
        "top_eigenvalues: n_steps < k",
        lambda: top_eigenvalues(A, 2, n_steps=1),
        ValueError,
        r"`n_steps`",
    ),
    Hostile(
        "top_eigenvalues: unknown criterion",
        lambda: top_eigenvalues(A, 1, criterion="best"),
        ValueError,
        r"`criterion`",
    ),
    Hostile("top_eigenvalues: key is an int", lambda: top_eigenvalues(A, 1, key=0), TypeError, r"`key`"),
    Hostile(
        "top_eigenvalues: key is a float array",
        lambda: top_eigenvalues(A, 1, key=jnp.ones(2)),
        TypeError,
        r"`key`",
    ),
    Hostile(
        "top_eigenvalues: non-square matrix",
        lambda: top_eigenvalues(jnp.ones((2, 3)), 1),
        ValueError,
        r"`operator`",
    ),
    Hostile(
        "top_eigenvalues: non-symmetric matrix",
        lambda: top_eigenvalues(jnp.triu(A), 1),
        ValueError,
        r"`operator`",
    ),
    Hostile(
        "top_eigenvalues: operator of the wrong type",
        lambda: top_eigenvalues("H", 1),
        TypeError,
        r"`operator`",
    ),
    Hostile("top_eigenvalues: NaN matrix", lambda: top_eigenvalues(NAN_A, 1), ValueError, r"`operator`"),
    Hostile(
        "top_eigenvalues: NaN matrix under jit",  # one compile with "too few iterations"
        lambda: eqx.filter_jit(top_eigenvalues)(NAN_A, 1, n_steps=1, throw=False),
        None,
        flagged=lambda r: _flag(RESULTS.nonfinite_curvature)(r) and not bool(r.converged),
    ),
    Hostile(
        "top_eigenvalues: NaN params under jit",
        _nan_hessian_under_jit,
        None,
        flagged=_flag(RESULTS.nonfinite_curvature),
    ),
    Hostile(
        "top_eigenvalues: too few iterations",
        lambda: eqx.filter_jit(top_eigenvalues)(A, 1, n_steps=1, throw=False),
        None,
        flagged=lambda r: _flag(RESULTS.not_converged)(r) and not bool(r.converged),
    ),
    Hostile("power_iteration: n_steps 0", lambda: power_iteration(A, n_steps=0), ValueError, r"`n_steps`"),
    Hostile(
        "power_iteration: NaN matrix under jit",
        lambda: eqx.filter_jit(power_iteration)(NAN_A, throw=False),
        None,
        flagged=_flag(RESULTS.nonfinite_curvature),
    ),
    # the failure policy: throw=True (default) raises the code's message, throw=False returns it
    Hostile(
        "top_eigenvalues: too few steps, throw=True",
        lambda: top_eigenvalues(A, 1, n_steps=1),
        eqx.EquinoxRuntimeError,
        r"did not converge.*`throw=False`",
    ),
    Hostile(
        "top_eigenvalues: overflowing Hessian, throw=True",
        lambda: top_eigenvalues(H_INF, 1),
        eqx.EquinoxRuntimeError,
        r"non-finite",
    ),
    Hostile(
        "top_eigenvalues: overflowing Hessian, throw=False",
        lambda: top_eigenvalues(H_INF, 1, throw=False),
        None,
        flagged=_flag(RESULTS.nonfinite_curvature),
    ),
    Hostile(
        "top_eigenvalues: NaN params under jit, throw=True",
        lambda: eqx.filter_jit(lambda w: top_eigenvalues(H(w), 1))(W.at[0].set(jnp.nan)),
        eqx.EquinoxRuntimeError,
        r"non-finite",
        near_top=None,
    ),
    Hostile(
        "top_eigenvalues: throw not a bool", lambda: top_eigenvalues(A, 1, throw=1), TypeError, r"`throw`"
    ),
    Hostile(
        "top_eigenvalues: an object that only quacks like an operator",
        lambda: top_eigenvalues(_Quacks(), 1),
        TypeError,
        r"`operator`",
    ),
    Hostile(
        "power_iteration: too few steps, throw=True",
        lambda: power_iteration(A, n_steps=1),
        eqx.EquinoxRuntimeError,
        r"did not converge.*`throw=False`",
    ),
    Hostile(
        "power_iteration: too few steps, throw=False",
        lambda: power_iteration(A, n_steps=1, throw=False),
        None,
        flagged=lambda r: _flag(RESULTS.not_converged)(r) and bool(jnp.isfinite(r.eigenvalues[0])),
    ),
    Hostile(
        "power_iteration: NaN matrix under jit, throw=True",
        lambda: eqx.filter_jit(power_iteration)(NAN_A),
        eqx.EquinoxRuntimeError,
        r"non-finite",
        near_top=None,
    ),
    Hostile(
        "power_iteration: throw not a bool", lambda: power_iteration(A, throw="no"), TypeError, r"`throw`"
    ),
    Hostile(
        "sharpness: too few steps, throw=True",
        lambda: sharpness(loss, W, X, Y, n_steps=1),
        eqx.EquinoxRuntimeError,
        r"did not converge.*`sharpness`",
    ),
    Hostile(
        "sharpness: too few steps, throw=False",
        lambda: sharpness(loss, W, X, Y, n_steps=1, throw=False),
        None,
        flagged=lambda s: (
            bool(jnp.isfinite(s))
            and float(s) == float(top_eigenvalues(H(), 1, n_steps=1, throw=False).eigenvalues[0])
        ),
    ),
    Hostile(
        "sharpness: overflowing loss, throw=False",
        lambda: sharpness(_overflow_loss, W, X, Y, throw=False),
        None,
        flagged=lambda s: not bool(jnp.isfinite(s)),
    ),
    Hostile(
        "sharpness: throw not a bool", lambda: sharpness(loss, W, X, Y, throw=None), TypeError, r"`throw`"
    ),
    Hostile(
        "spectral_density: overflowing Hessian, throw=True",
        lambda: spectral_density(H_INF, key=KEY, n_probes=1, order=2),
        eqx.EquinoxRuntimeError,
        r"non-finite.*`throw=False`",
    ),
    Hostile(
        "spectral_density: overflowing Hessian, throw=False",
        lambda: spectral_density(H_INF, key=KEY, n_probes=1, order=2, throw=False),
        None,
        flagged=_flag(RESULTS.nonfinite_curvature),
    ),
    Hostile(
        "spectral_density: NaN matrix under jit, throw=True",
        lambda: eqx.filter_jit(spectral_density)(NAN_A, key=KEY, n_probes=1, order=2),
        eqx.EquinoxRuntimeError,
        r"non-finite",
        near_top=None,
    ),
    Hostile(
        "spectral_density: throw not a bool",
        lambda: spectral_density(A, key=KEY, throw=0),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "trace: overflowing Hessian, throw=True",
        lambda: trace(H_INF, key=KEY, n_probes=2),
        eqx.EquinoxRuntimeError,
        r"non-finite.*`throw=False`",
    ),
    Hostile(
        "trace: overflowing Hessian, throw=False",
        lambda: trace(H_INF, key=KEY, n_probes=2, throw=False),
        None,
        flagged=_flag(RESULTS.nonfinite_curvature),
    ),
    Hostile(
        "trace: NaN matrix under jit, throw=True",
        lambda: eqx.filter_jit(trace)(NAN_A, key=KEY, n_probes=4, method=HutchPlusPlus()),
        eqx.EquinoxRuntimeError,
        r"non-finite",
        near_top=None,
    ),
    Hostile("trace: throw not a bool", lambda: trace(A, key=KEY, throw=1.0), TypeError, r"`throw`"),
    Hostile("trace: method of the wrong type", lambda: trace(A, key=KEY, method=len), TypeError, r"`method`"),
    # sharpness
    Hostile(
        "sharpness: NaN params", lambda: sharpness(loss, W.at[0].set(jnp.nan), X, Y), ValueError, r"`params`"
    ),
    Hostile(
        "sharpness: NaN data", lambda: sharpness(loss, W, X, Y.at[0].set(jnp.nan)), ValueError, r"`data`"
    ),
    Hostile(
        "sharpness: NaN params under jit",
        lambda: eqx.filter_jit(lambda w: sharpness(loss, w, X, Y))(W.at[0].set(jnp.nan)),
        eqx.EquinoxRuntimeError,
        r"`params` contains non-finite",
        near_top=None,
    ),
    Hostile(
        "sharpness: overflowing loss under jit",
        lambda: eqx.filter_jit(
            lambda w: sharpness(lambda w, x, y: jnp.sum(jnp.exp(1e4 * w * w)) + 0 * y[0], w, X, Y)
        )(W),
        eqx.EquinoxRuntimeError,
        r"`sharpness`.*non-finite",
        near_top=None,
    ),
    Hostile(
        "sharpness: non-scalar loss",
        lambda: sharpness(lambda w, x, y: x @ w, W, X, Y),
        ValueError,
        r"`loss_fn`",
    ),
    Hostile("sharpness: key is a string", lambda: sharpness(loss, W, X, Y, key="seed"), TypeError, r"`key`"),
    # densities and traces
    Hostile("spectral_density: key missing", lambda: spectral_density(A, key=None), TypeError, r"`key`"),
    Hostile(
        "spectral_density: n_probes 0",
        lambda: spectral_density(A, key=KEY, n_probes=0),
        ValueError,
        r"`n_probes`",
    ),
    Hostile(
        "spectral_density: order 0", lambda: spectral_density(A, key=KEY, order=0), ValueError, r"`order`"
    ),
    Hostile(
        "spectral_density: sigma <= 0",
        lambda: spectral_density(A, key=KEY, sigma=-1.0),
        ValueError,
        r"`sigma`",
    ),
    Hostile(
        "spectral_density: unknown backend",
        lambda: spectral_density(A, key=KEY, backend="numpy"),
        ValueError,
        r"`backend`",
    ),
    Hostile("trace: key missing", lambda: trace(A, key=None), TypeError, r"`key`"),
    Hostile("trace: n_probes 1", lambda: trace(A, key=KEY, n_probes=1), ValueError, r"`n_probes`"),
    Hostile("trace: unknown method", lambda: trace(A, key=KEY, method="exact"), ValueError, r"`method`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)


def test_float32_params_with_float64_data():
    """Mixed precision is not an error: the operator works in the parameters' dtype."""
    res = top_eigenvalues(hessian_operator(loss, W.astype(jnp.float32), X, Y), 1)
    ref = top_eigenvalues(H(), 1)
    assert res.eigenvalues.dtype == jnp.float32
    np.testing.assert_allclose(res.eigenvalues, ref.eigenvalues, rtol=1e-5)
