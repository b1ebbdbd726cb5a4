"""The hostile-input table of the token-dynamics analyses of `jaxdyn.meanfield` (cluster counts,
clustering, W1 between token clouds, the W1 sweep, the stability of clustered states): each bad input
gets a clear error naming the argument before anything is compiled, or a result whose code says what
failed."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn._results import RESULTS
from tests.helpers import Hostile, hostile_ids, run_hostile

E = jnp.eye(3)
X = jnp.concatenate([jnp.tile(E[0], (3, 1)), jnp.tile(E[1], (2, 1))])  # 5 unit tokens, 2 clusters
TS = jnp.linspace(0.0, 1.0, 4)
XS = jnp.stack([X] * 4)
KEY = jax.random.key(0)


def _field(t, x, args=None):
    m = jnp.mean(x, axis=0)
    return m - jnp.sum(x * m, axis=1, keepdims=True) * x


def _nan_field(t, x, args=None):
    return x * jnp.nan


def _result():
    """A ClusteringResult built directly (no compilation)."""
    return mf.ClusteringResult(TS, jnp.array([5, 2, 2, 2]), jnp.full(4, 0.2), TS[:1], jnp.linspace(-1, 1, 3),
                               jnp.ones((1, 2)) / 2, jnp.asarray(0.01), RESULTS.successful, n=5, d=3)


def _flagged(code):
    def check(out):
        return int(out.result._value) == code._value and "FAILED" in out.summary()

    return check


ROWS = [
    # --- cluster_count / cluster_labels / mean_token_norm ---
    Hostile("cluster_count: a vector, not (n, d) tokens", lambda: mf.cluster_count(jnp.ones(5)), ValueError,
            r"`x`"),
    Hostile("cluster_count: one token (n < 2)", lambda: mf.cluster_count(jnp.ones((1, 3))), ValueError,
            r"`x`.*n >= 2"),
    Hostile("cluster_count: tol = 0", lambda: mf.cluster_count(X, tol=0.0), ValueError, r"`tol`"),
    Hostile("cluster_count: tol < 0", lambda: mf.cluster_count(X, tol=-1e-2), ValueError, r"`tol`"),
    Hostile("cluster_count: NaN tol", lambda: mf.cluster_count(X, tol=float("nan")), ValueError, r"`tol`"),
    Hostile("cluster_count: vector tol", lambda: mf.cluster_count(X, tol=jnp.ones(2)), ValueError, r"`tol`"),
    Hostile("cluster_count: string tol", lambda: mf.cluster_count(X, tol="0.01"), TypeError, r"`tol`"),
    Hostile("cluster_count: complex tokens", lambda: mf.cluster_count(X * 1j), TypeError, r"`x`"),
    Hostile("cluster_labels: one token (n < 2)", lambda: mf.cluster_labels(jnp.ones((1, 2))), ValueError,
            r"`x`"),
    Hostile("mean_token_norm: a vector", lambda: mf.mean_token_norm(jnp.ones(3)), ValueError, r"`x`"),
    # --- clustering ---
    Hostile("clustering: xs of one configuration (n, d), not (T, n, d)", lambda: mf.clustering(TS, X),
            ValueError, r"`xs`"),
    Hostile("clustering: len(ts) != len(xs)", lambda: mf.clustering(TS[:3], XS), ValueError, r"`xs`"),
    Hostile("clustering: ts not increasing", lambda: mf.clustering(TS[::-1], XS), ValueError, r"`ts`"),
    Hostile("clustering: ts a matrix", lambda: mf.clustering(jnp.ones((4, 1)), XS), ValueError, r"`ts`"),
    Hostile("clustering: tol = 0", lambda: mf.clustering(TS, XS, tol=0.0), ValueError, r"`tol`"),
    Hostile("clustering: bins = 0", lambda: mf.clustering(TS, XS, bins=0), ValueError, r"`bins`"),
    Hostile("clustering: bins a float", lambda: mf.clustering(TS, XS, bins=10.0), TypeError, r"`bins`"),
    Hostile("clustering: histogram time outside ts", lambda: mf.clustering(TS, XS, at=[2.0]), ValueError,
            r"`at`"),
    Hostile("clustering: throw not a bool", lambda: mf.clustering(TS, XS, throw=1), TypeError, r"`throw`"),
    Hostile("clustering: NaN tokens raise",
            lambda: mf.clustering(TS, XS.at[2:].set(jnp.nan)), eqx.EquinoxRuntimeError, r"`xs`"),
    Hostile("clustering: NaN tokens, throw=False",
            lambda: mf.clustering(TS, XS.at[2:].set(jnp.nan), throw=False), None,
            flagged=_flagged(RESULTS.nonfinite_state)),
    Hostile("ClusteringResult.time_to: k = 0", lambda: _result().time_to(0), ValueError, r"`k`"),
    # --- w1_tokens ---
    Hostile("w1_tokens: clouds of different d", lambda: mf.w1_tokens(X, jnp.ones((5, 2)) / np.sqrt(2)),
            ValueError, r"`x` and `y`.*dimension"),
    Hostile("w1_tokens: sizes not multiples (5 vs 7)", lambda: mf.w1_tokens(X, jnp.tile(E[0], (7, 1))),
            ValueError, r"`x`.*`y`.*multiples"),
    Hostile("w1_tokens: geodesic on non-unit tokens", lambda: mf.w1_tokens(2 * X, X), ValueError,
            r"`x`.*unit"),
    Hostile("w1_tokens: unknown metric", lambda: mf.w1_tokens(X, X, metric="euclid"), ValueError,
            r"`metric`"),
    Hostile("w1_tokens: NaN tokens", lambda: mf.w1_tokens(X.at[0, 0].set(jnp.nan), X), ValueError, r"`x`"),
    Hostile("w1_tokens: one token", lambda: mf.w1_tokens(X[:1], X), ValueError, r"`x`"),
    Hostile("w1_tokens: traced input (no derivative)", lambda: jax.jit(lambda a: mf.w1_tokens(a, X))(X),
            TypeError, r"`x`.*concrete"),
    # --- token_w1_rate (all fail before any solve) ---
    Hostile("token_w1_rate: ns not increasing",
            lambda: mf.token_w1_rate(_field, [16, 8], d=3, t1=1.0, key=KEY), ValueError, r"`ns`"),
    Hostile("token_w1_rate: n < 2", lambda: mf.token_w1_rate(_field, [1, 4], d=3, t1=1.0, key=KEY),
            ValueError, r"`ns`"),
    Hostile("token_w1_rate: t1 = 0", lambda: mf.token_w1_rate(_field, [4], d=3, t1=0.0, key=KEY),
            ValueError, r"`t1`"),
    Hostile("token_w1_rate: NaN dt",
            lambda: mf.token_w1_rate(_field, [4], d=3, t1=1.0, dt=float("nan"), key=KEY),
            ValueError, r"`dt`"),
    Hostile("token_w1_rate: ratio = 0",
            lambda: mf.token_w1_rate(_field, [4], d=3, t1=1.0, ratio=0, key=KEY), ValueError,
            r"`ratio`"),
    Hostile("token_w1_rate: d = 1 with the default law (a sphere needs d >= 2)",
            lambda: mf.token_w1_rate(_field, [4], d=1, t1=1.0, key=KEY), ValueError, r"`d`"),
    Hostile("token_w1_rate: sample returns the wrong shape",
            lambda: mf.token_w1_rate(_field, [4], d=3, t1=1.0, key=KEY, progress=False,
                                     sample=lambda k, n: jnp.ones((n, 2))), ValueError, r"`sample"),
    Hostile("token_w1_rate: field not callable",
            lambda: mf.token_w1_rate(3.0, [4], d=3, t1=1.0, key=KEY), TypeError, r"`field`"),
    Hostile("token_w1_rate: unknown metric",
            lambda: mf.token_w1_rate(_field, [4], d=3, t1=1.0, metric="l2", key=KEY), ValueError,
            r"`metric`"),
    # --- cluster_stability ---
    Hostile("cluster_stability: non-unit tokens", lambda: mf.cluster_stability(_field, 2 * X), ValueError,
            r"`x`.*unit"),
    Hostile("cluster_stability: d = 1", lambda: mf.cluster_stability(_field, jnp.ones((3, 1))), ValueError,
            r"`x`.*d >= 2"),
    Hostile("cluster_stability: one token", lambda: mf.cluster_stability(_field, X[:1]), ValueError, r"`x`"),
    Hostile("cluster_stability: NaN tokens", lambda: mf.cluster_stability(_field, X.at[0].set(jnp.nan)),
            ValueError, r"`x`"),
    Hostile("cluster_stability: field not callable", lambda: mf.cluster_stability(None, X), TypeError,
            r"`field`"),
    Hostile("cluster_stability: tol < 0", lambda: mf.cluster_stability(_field, X, tol=-1.0), ValueError,
            r"`tol`"),
    Hostile("cluster_stability: NaN field raises", lambda: mf.cluster_stability(_nan_field, X),
            eqx.EquinoxRuntimeError, r"`cluster_stability`"),
    Hostile("cluster_stability: NaN field, throw=False",
            lambda: mf.cluster_stability(_nan_field, X, throw=False), None,
            flagged=_flagged(RESULTS.nonfinite_field)),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
