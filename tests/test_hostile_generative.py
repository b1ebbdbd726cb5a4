"""The hostile-input table of the generative-flow analyses (`SamplingMap`, `basins`, `memorisation`,
`sampling_ftle`, `sampling_lyapunov`): each bad input gets a clear error naming the argument before any
compilation, or a result whose code says what failed and where."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.models as jm
from tests.helpers import Hostile, hostile_ids, run_hostile

POINTS = jnp.array([[1.0, 0.0], [-1.0, 0.0]])
LATENTS = jnp.array([[0.5, 0.1], [-0.3, 0.2], [0.0, 1.0]])


def _field(t, y, args):
    return -y


def _sampler():
    return jm.SamplingMap(_field, 1.0, 0.5, n_steps=4)


def _nan_right_half(z):
    # a "sampler" that fails (NaN) on latents with z_1 > 0: 1 of the 3 latents
    return jnp.where(z[0] > 0.2, jnp.nan, z)


def _flags_one_nan(out):
    codes = np.asarray(out.result._value)
    return (int(np.sum(codes != 0)) == 1 and int(np.asarray(out.labels)[0]) == -1
            and float(out.unassigned) == pytest.approx(1 / 3) and "1 of 3" in out.summary())


ROWS = [
    # --- SamplingMap construction ---
    Hostile("SamplingMap: field not callable", lambda: jm.SamplingMap(3.0, 1.0, 0.0), TypeError, r"`field`"),
    Hostile("SamplingMap: t1 equals t0", lambda: jm.SamplingMap(_field, 1.0, 1.0), ValueError, r"`t1`"),
    Hostile("SamplingMap: NaN t1", lambda: jm.SamplingMap(_field, 1.0, float("nan")), ValueError, r"`t1`"),
    Hostile("SamplingMap: vector t0", lambda: jm.SamplingMap(_field, jnp.ones(2), 0.0), ValueError, r"`t0`"),
    Hostile("SamplingMap: n_steps = 0", lambda: jm.SamplingMap(_field, 1.0, 0.0, n_steps=0), ValueError,
            r"`n_steps`"),
    Hostile("SamplingMap: float n_steps", lambda: jm.SamplingMap(_field, 1.0, 0.0, n_steps=10.0), TypeError,
            r"`n_steps`"),
    Hostile("SamplingMap: log_time with t1 = 0", lambda: jm.SamplingMap(_field, 1.0, 0.0, log_time=True),
            ValueError, r"`log_time=True`"),
    Hostile("SamplingMap: log_time not a bool", lambda: jm.SamplingMap(_field, 1.0, 0.1, log_time="yes"),
            TypeError, r"`log_time`"),
    Hostile("SamplingMap: negative scale", lambda: jm.SamplingMap(_field, 1.0, 0.5, scale=-1.0), ValueError,
            r"`scale`"),
    # --- basins ---
    Hostile("basins: sampler not callable", lambda: jm.basins(None, LATENTS, POINTS, tol=0.1), TypeError,
            r"`sampler`"),
    Hostile("basins: one latent as a vector", lambda: jm.basins(_sampler(), jnp.ones(2), POINTS, tol=0.1),
            ValueError, r"`latents`"),
    Hostile("basins: NaN training point",
            lambda: jm.basins(_sampler(), LATENTS, POINTS.at[0, 1].set(jnp.nan), tol=0.1), ValueError,
            r"`points`"),
    Hostile("basins: no training points", lambda: jm.basins(_sampler(), LATENTS, jnp.ones((0, 2)), tol=0.1),
            ValueError, r"`points`"),
    Hostile("basins: points of another dimension",
            lambda: jm.basins(_sampler(), LATENTS, jnp.ones((2, 3)), tol=0.1), ValueError, r"`points`"),
    Hostile("basins: tol = 0", lambda: jm.basins(_sampler(), LATENTS, POINTS, tol=0.0), ValueError, r"`tol`"),
    Hostile("basins: batch_size = 0", lambda: jm.basins(_sampler(), LATENTS, POINTS, tol=0.1, batch_size=0),
            ValueError, r"`batch_size`"),
    Hostile("basins: sampler returning a scalar",
            lambda: jm.basins(lambda z: jnp.sum(z), LATENTS, POINTS, tol=0.1), ValueError, r"`sampler`"),
    Hostile("basins: sampler that raises", lambda: jm.basins(lambda z: z @ jnp.ones((3, 2)), LATENTS, POINTS,
                                                             tol=0.1), ValueError, r"`sampler`"),
    Hostile("basins: throw not a bool", lambda: jm.basins(_sampler(), LATENTS, POINTS, tol=0.1, throw=0),
            TypeError, r"`throw`"),
    Hostile("basins: non-finite samples, throw=False: flagged per latent",
            lambda: jm.basins(_nan_right_half, LATENTS, POINTS, tol=2.0, throw=False), None,
            flagged=_flags_one_nan),
    Hostile("basins: non-finite samples raise (throw=True)",
            lambda: jm.basins(_nan_right_half, LATENTS, POINTS, tol=2.0), Exception, r"non-finite"),
    # --- memorisation ---
    Hostile("memorisation: NaN sample",
            lambda: jm.memorisation(LATENTS.at[1, 0].set(jnp.inf), POINTS, tol=0.1), ValueError,
            r"`samples`"),
    Hostile("memorisation: points of another dimension",
            lambda: jm.memorisation(LATENTS, jnp.ones((2, 3)), tol=0.1), ValueError, r"`points`"),
    Hostile("memorisation: negative tol", lambda: jm.memorisation(LATENTS, POINTS, tol=-1.0), ValueError,
            r"`tol`"),
    Hostile("memorisation: ratio above 1", lambda: jm.memorisation(LATENTS, POINTS, tol=0.1, ratio=2.0),
            ValueError, r"`ratio`"),
    Hostile("memorisation: samples as a string", lambda: jm.memorisation("abc", POINTS, tol=0.1), TypeError,
            r"`samples`"),
    # --- sampling_ftle / sampling_lyapunov ---
    Hostile("sampling_ftle: a plain function, not a SamplingMap",
            lambda: jm.sampling_ftle(lambda z: z, LATENTS), TypeError, r"`sampler`"),
    Hostile("sampling_ftle: NaN latent", lambda: jm.sampling_ftle(_sampler(), LATENTS.at[2, 1].set(jnp.nan)),
            ValueError, r"`latents`"),
    Hostile("sampling_ftle: throw not a bool", lambda: jm.sampling_ftle(_sampler(), LATENTS, throw="no"),
            TypeError, r"`throw`"),
    Hostile("sampling_lyapunov: renorm_every does not divide n_steps",
            lambda: jm.sampling_lyapunov(_sampler(), LATENTS, renorm_every=3), ValueError, r"`renorm_every`"),
    Hostile("sampling_lyapunov: k above the dimension",
            lambda: jm.sampling_lyapunov(_sampler(), LATENTS, k=3), ValueError, r"`k`"),
    Hostile("sampling_lyapunov: NaN latent",
            lambda: jm.sampling_lyapunov(_sampler(), LATENTS.at[0, 0].set(jnp.nan)), ValueError,
            r"`latents`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
