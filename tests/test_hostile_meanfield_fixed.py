"""The hostile-input table of `simulate(fast=)`, the fixed-step fast path of `jaxdyn.meanfield`."""

import jax.numpy as jnp
import pytest

import jaxdyn.meanfield as mf
from tests.helpers import Hostile, hostile_ids, run_hostile

N = 4
TS = jnp.linspace(0.0, 1.0, 3)


def _simulate(**kwargs):
    return mf.simulate(mf.Kuramoto(jnp.linspace(-1.0, 1.0, N), 1.0), jnp.zeros(N), TS, solver=mf.RK4(),
                       dt0=0.1, **kwargs)


ROWS = [
    Hostile("simulate: fast a string", lambda: _simulate(fast="yes"), TypeError, r"`fast`"),
    Hostile("simulate: fast an int", lambda: _simulate(fast=1), TypeError, r"`fast`"),
    Hostile("simulate: fast None", lambda: _simulate(fast=None), TypeError, r"`fast`"),
    Hostile("simulate: fast an array", lambda: _simulate(fast=jnp.asarray(True)), TypeError, r"`fast`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
