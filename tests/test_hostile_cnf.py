"""The hostile-input table of the continuous normalizing flows (`jaxdyn.models.CNF`, `cnf_nll`,
`train_cnf`): each bad input gets a clear error naming the argument before any solve compiles."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.models import CNF, LinearField, StandardNormal, cnf_nll, train_cnf
from tests.helpers import Hostile, hostile_ids, run_hostile

A = jnp.array([[-0.3, 0.5], [-0.2, 0.1]])
KEY = jax.random.key(0)
X = jnp.array([0.1, 0.2])
XS = jnp.ones((4, 2))
QUIET = {"progress": False}


def _cnf(**kw):
    return CNF(LinearField(A), **kw)


def _wrong_shape(t, z, args):
    return jnp.concatenate([z, z])


ROWS = [
    # --- construction ---
    Hostile("CNF: field not callable", lambda: CNF(A), TypeError, r"`field`"),
    Hostile("CNF: unknown trace", lambda: _cnf(trace="approximate"), ValueError, r"`trace`"),
    Hostile("CNF: trace not a string", lambda: _cnf(trace=1), ValueError, r"`trace`"),
    Hostile("CNF: unknown noise", lambda: _cnf(noise="uniform"), ValueError, r"`noise`"),
    Hostile("CNF: t0 == t1", lambda: _cnf(t0=1.0, t1=1.0), ValueError, r"`t1`"),
    Hostile("CNF: NaN t1", lambda: _cnf(t1=float("nan")), ValueError, r"`t1`"),
    Hostile("CNF: infinite t0", lambda: _cnf(t0=-np.inf), ValueError, r"`t0`"),
    Hostile("CNF: t0 a string", lambda: _cnf(t0="0"), TypeError, r"`t0`"),
    Hostile("CNF: t1 a vector", lambda: _cnf(t1=jnp.ones(2)), TypeError, r"`t1`"),
    Hostile("CNF: no dimension for a plain function", lambda: CNF(lambda t, z, a: -z), ValueError, r"`size`"),
    Hostile("CNF: size disagrees with the field", lambda: _cnf(size=3), ValueError, r"`size`"),
    Hostile("CNF: size zero", lambda: CNF(lambda t, z, a: -z, size=0), ValueError, r"`size`"),
    Hostile("CNF: base of another dimension", lambda: _cnf(base=StandardNormal(3)), ValueError, r"`base`"),
    Hostile("CNF: base without log_prob/sample", lambda: CNF(lambda t, z, a: -z, size=2, base=object()),
            TypeError, r"`base`"),
    Hostile("CNF: solver not a diffrax solver", lambda: _cnf(solver="dopri5"), TypeError, r"`solver`"),
    Hostile("CNF: constant steps without dt0", lambda: _cnf(stepsize_controller=diffrax.ConstantStepSize()),
            ValueError, r"`dt0`"),
    Hostile("CNF: negative dt0", lambda: _cnf(dt0=-0.1), ValueError, r"`dt0`"),
    # --- evaluation ---
    Hostile("CNF.log_prob: x of the wrong dimension", lambda: _cnf().log_prob(jnp.ones(3)), ValueError,
            r"`x`"),
    Hostile("CNF.log_prob: a batch given for one point", lambda: _cnf().log_prob(XS), ValueError, r"`x`"),
    Hostile("CNF.log_prob: NaN x", lambda: _cnf().log_prob(jnp.array([jnp.nan, 0.0])), ValueError, r"`x`"),
    Hostile("CNF.log_prob: infinite x", lambda: _cnf().log_prob(jnp.array([jnp.inf, 0.0])), ValueError,
            r"`x`"),
    Hostile("CNF.log_prob: hutchinson without key", lambda: _cnf(trace="hutchinson").log_prob(X),
            ValueError, r"`key`"),
    Hostile("CNF.log_prob: key an int", lambda: _cnf(trace="hutchinson").log_prob(X, key=0), TypeError,
            r"`key`"),
    Hostile("CNF.log_prob: throw not a bool", lambda: _cnf().log_prob(X, throw="yes"), TypeError, r"`throw`"),
    Hostile("CNF.log_prob: field returns the wrong shape", lambda: CNF(_wrong_shape, size=2).log_prob(X),
            ValueError, r"`field`"),
    Hostile("CNF.push: z of the wrong dimension", lambda: _cnf().push(jnp.ones(1)), ValueError, r"`z`"),
    Hostile("CNF.push: hutchinson without key", lambda: _cnf(trace="hutchinson").push(X), ValueError,
            r"`key`"),
    Hostile("CNF.inverse: NaN x", lambda: _cnf().inverse(jnp.array([0.0, jnp.nan])), ValueError, r"`x`"),
    Hostile("CNF.transform: z a batch", lambda: _cnf().transform(XS), ValueError, r"`z`"),
    Hostile("CNF.solve: x of the wrong dimension", lambda: _cnf().solve(jnp.ones(5)), ValueError, r"`x`"),
    Hostile("CNF.batch_log_prob: one point, not a batch", lambda: _cnf().batch_log_prob(X), ValueError,
            r"`xs`"),
    Hostile("CNF.batch_log_prob: empty batch", lambda: _cnf().batch_log_prob(jnp.ones((0, 2))), ValueError,
            r"`xs`"),
    Hostile("CNF.sample: n = 0", lambda: _cnf().sample(KEY, 0), ValueError, r"`n`"),
    Hostile("CNF.sample: n a float", lambda: _cnf().sample(KEY, 2.5), (TypeError, ValueError), r"`n`"),
    Hostile("CNF.sample: no key", lambda: _cnf().sample(None, 3), ValueError, r"`key`"),
    Hostile("cnf_nll: rows of the wrong dimension", lambda: cnf_nll(_cnf(), jnp.ones((4, 3))), ValueError,
            r"`xs`"),
    Hostile("cnf_nll: hutchinson without key", lambda: cnf_nll(_cnf(trace="hutchinson"), XS), ValueError,
            r"`key`"),
    # --- training ---
    Hostile("train_cnf: model not a CNF",
            lambda: train_cnf(LinearField(A), XS, key=KEY, **QUIET), TypeError, r"`model`"),
    Hostile("train_cnf: batch_size above n", lambda: train_cnf(_cnf(), XS, key=KEY, batch_size=5, **QUIET),
            ValueError, r"`batch_size`"),
    Hostile("train_cnf: non-positive lr", lambda: train_cnf(_cnf(), XS, key=KEY, lr=-1.0, **QUIET),
            ValueError, r"`lr`"),
    Hostile("train_cnf: NaN data", lambda: train_cnf(_cnf(), XS.at[0, 0].set(jnp.nan), key=KEY, **QUIET),
            ValueError, r"`xs`"),
    Hostile("train_cnf: no key", lambda: train_cnf(_cnf(), XS, key=None, **QUIET), ValueError, r"`key`"),
    Hostile("train_cnf: n_steps = 0", lambda: train_cnf(_cnf(), XS, key=KEY, n_steps=0, **QUIET),
            ValueError, r"`n_steps`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
