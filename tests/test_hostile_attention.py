"""The hostile-input table of the self-attention field (`jaxdyn.meanfield.SelfAttention`, `Projected`,
`shard_tokens`): each bad input gets a clear error naming the argument before any compilation.

Decisions the rows pin down: beta < 0 is allowed with softmax and with uniform normalisation (the
softmax field at beta < 0 is the field of -Q at |beta|; `tests/test_attention_field.py` checks it),
so it is not a row; tokens off the unit sphere with geometry="sphere" are a `ValueError` naming `y0`
when concrete (not silently projected)."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from tests.helpers import Hostile, hostile_ids, run_hostile

D = 3
EYE = jnp.eye(D)
X = jnp.asarray(np.eye(D)[[0, 1, 2, 0]] * np.array([[1.0], [1.0], [1.0], [-1.0]]))  # 4 unit tokens
TS = jnp.linspace(0.0, 1.0, 3)


def _sa(Q=EYE, K=EYE, V=EYE, beta=1.0, **kwargs):
    return mf.SelfAttention(Q, K, V, beta=beta, **kwargs)


def _field(**kwargs):
    return mf.SelfAttention(EYE, EYE, EYE, beta=1.0, **kwargs)


def _simulate(x, field=None):
    return mf.simulate(_field() if field is None else field, x, TS, solver=mf.Projected(mf.RK4()), dt0=0.1)


ROWS = [
    Hostile("SelfAttention: non-square Q", lambda: mf.SelfAttention(jnp.ones((3, 2)), EYE, EYE, beta=1.0),
            ValueError, r"`Q`"),
    Hostile("SelfAttention: non-square K", lambda: mf.SelfAttention(EYE, jnp.ones((3, 4)), EYE, beta=1.0),
            ValueError, r"`K`"),
    Hostile("SelfAttention: V a vector", lambda: mf.SelfAttention(EYE, EYE, jnp.ones(3), beta=1.0),
            ValueError, r"`V`"),
    Hostile("SelfAttention: Q with 4 axes", lambda: _sa(jnp.ones((1, 1, 3, 3))),
            ValueError, r"`Q`"),
    Hostile("SelfAttention: d of V differs from Q, K", lambda: _sa(V=jnp.eye(4)),
            ValueError, r"`Q`, `K` and `V` must share d"),
    Hostile("SelfAttention: heads differ",
            lambda: mf.SelfAttention(jnp.ones((2, 3, 3)), jnp.ones((3, 3, 3)), jnp.ones((2, 3, 3)), beta=1.0),
            ValueError, r"same number of heads"),
    Hostile("SelfAttention: NaN in K", lambda: _sa(K=EYE.at[0, 1].set(jnp.nan)),
            ValueError, r"`K`"),
    Hostile("SelfAttention: inf in V", lambda: _sa(V=EYE.at[2, 2].set(jnp.inf)),
            ValueError, r"`V`"),
    Hostile("SelfAttention: beta NaN", lambda: mf.SelfAttention(EYE, EYE, EYE, beta=float("nan")),
            ValueError, r"`beta`"),
    Hostile("SelfAttention: beta inf", lambda: _sa(beta=-np.inf), ValueError, r"`beta`"),
    Hostile("SelfAttention: beta a vector", lambda: mf.SelfAttention(EYE, EYE, EYE, beta=jnp.ones(2)),
            ValueError, r"`beta`"),
    Hostile("SelfAttention: unknown normalisation", lambda: _field(normalisation="softmin"), ValueError,
            r"`normalisation`"),
    Hostile("SelfAttention: unknown geometry", lambda: _field(geometry="torus"), ValueError, r"`geometry`"),
    Hostile("SelfAttention: block_size 0", lambda: _field(block_size=0), ValueError, r"`block_size`"),
    Hostile("SelfAttention: block_size float", lambda: _field(block_size=2.5), TypeError, r"`block_size`"),
    Hostile("SelfAttention: feedforward not callable", lambda: _field(feedforward=3.0), TypeError,
            r"`feedforward`"),
    Hostile("SelfAttention: noise < 0", lambda: _field(noise=-1.0), ValueError, r"`noise`"),
    Hostile("simulate: one token (n < 2)", lambda: _simulate(X[:1]), ValueError, r"`y0`.*n >= 2"),
    Hostile("simulate: tokens of another d", lambda: _simulate(jnp.eye(4)), ValueError, r"`y0`.*d = 3"),
    Hostile("simulate: a batch of sequences not vmapped", lambda: _simulate(jnp.stack([X, X])), ValueError,
            r"`y0`"),
    Hostile("simulate: tokens off the sphere", lambda: _simulate(2.0 * X), ValueError, r"`y0`.*unit tokens"),
    Hostile("simulate: NaN token", lambda: _simulate(X.at[1, 0].set(jnp.nan)), ValueError, r"`y0`"),
    Hostile("SelfAttention call: tokens of another d", lambda: _field()(0.0, jnp.ones((4, 5))), ValueError,
            r"`x`"),
    Hostile("SelfAttention.weights: one token", lambda: _field().weights(X[:1]), ValueError, r"`x`"),
    Hostile("Projected: not a solver", lambda: mf.Projected("rk4"), TypeError, r"`solver`"),
    Hostile("shard_tokens: not a SelfAttention", lambda: mf.shard_tokens(lambda t, y, args: y),
            TypeError, r"`field`"),
    Hostile("shard_tokens: devices and mesh", lambda: mf.shard_tokens(_field(), devices=[], mesh=object()),
            ValueError, r"`mesh` or `devices`"),
    Hostile("shard_tokens: empty devices", lambda: mf.shard_tokens(_field(), devices=[]), ValueError,
            r"`devices`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
