"""The hostile-input table of the probability flow and its scores (`jaxdyn.models._score`, issue #20):
each bad input gets a clear error naming the argument before any solve is compiled."""

import diffrax
import jax
import jax.numpy as jnp
import pytest

import jaxdyn.models as jm
from tests.helpers import Hostile, hostile_ids, run_hostile

MU = jnp.array([1.0, -0.5])
COV = jnp.array([[2.0, 0.6], [0.6, 0.5]])
PTS = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
XS = jnp.ones((8, 2))


def _flow(**kwargs):
    return jm.ProbabilityFlow(jm.GaussianScore(MU, COV, "vp"), **kwargs)


def _train(**kwargs):
    kwargs = {"key": jax.random.key(0), "n_steps": 1, "progress": False, **kwargs}
    xs = kwargs.pop("xs", XS)
    # a cheap Equinox score (its points are trainable leaves): no network to initialise
    return jm.train_score(jm.EmpiricalScore(PTS, "vp"), xs, **kwargs)


ROWS = [
    # --- schedules ---
    Hostile("VP: beta_min <= 0", lambda: jm.VP(beta_min=0.0), ValueError, r"`beta_min`"),
    Hostile("VP: beta_max < beta_min", lambda: jm.VP(beta_min=2.0, beta_max=1.0), ValueError, r"`beta_max`"),
    Hostile("VP: NaN beta_max", lambda: jm.VP(beta_max=float("nan")), ValueError, r"`beta_max`"),
    Hostile(
        "VE: sigma_max <= sigma_min", lambda: jm.VE(sigma_min=1.0, sigma_max=0.5), ValueError, r"`sigma_max`"
    ),
    Hostile("VE: string sigma_min", lambda: jm.VE(sigma_min="0.01"), TypeError, r"`sigma_min`"),
    # --- scores ---
    Hostile(
        "GaussianScore: cov not positive definite",
        lambda: jm.GaussianScore(MU, jnp.array([[1.0, 2.0], [2.0, 1.0]])),
        ValueError,
        r"`cov`.*definite",
    ),
    Hostile(
        "GaussianScore: cov not symmetric",
        lambda: jm.GaussianScore(MU, jnp.array([[1.0, 0.5], [0.0, 1.0]])),
        ValueError,
        r"`cov`.*symmetric",
    ),
    Hostile(
        "GaussianScore: cov of another size", lambda: jm.GaussianScore(MU, jnp.eye(3)), ValueError, r"`cov`"
    ),
    Hostile(
        "GaussianScore: NaN mean", lambda: jm.GaussianScore(MU.at[0].set(jnp.nan), COV), ValueError, r"`mean`"
    ),
    Hostile(
        "GaussianScore: bad sde string", lambda: jm.GaussianScore(MU, COV, "vpsde"), ValueError, r"`sde`"
    ),
    Hostile(
        "EmpiricalScore: points of shape (d,)",
        lambda: jm.EmpiricalScore(jnp.ones(3)),
        ValueError,
        r"`points`.*\(m, d\)",
    ),
    Hostile(
        "EmpiricalScore: no points", lambda: jm.EmpiricalScore(jnp.ones((0, 2))), ValueError, r"`points`"
    ),
    Hostile(
        "EmpiricalScore: inf point",
        lambda: jm.EmpiricalScore(PTS.at[1, 1].set(jnp.inf)),
        ValueError,
        r"`points`",
    ),
    Hostile(
        "ScoreNetwork: d = 0", lambda: jm.ScoreNetwork(0, 8, 1, key=jax.random.key(0)), ValueError, r"`d`"
    ),
    Hostile(
        "ScoreNetwork: float width",
        lambda: jm.ScoreNetwork(2, 8.0, 1, key=jax.random.key(0)),
        TypeError,
        r"`width`",
    ),
    # --- ProbabilityFlow construction ---
    Hostile(
        "ProbabilityFlow: bad sde string",
        lambda: jm.ProbabilityFlow(lambda t, x: -x, "subvp"),
        ValueError,
        r"`sde`",
    ),
    Hostile(
        "ProbabilityFlow: sde of a wrong type",
        lambda: jm.ProbabilityFlow(lambda t, x: -x, 3),
        TypeError,
        r"`sde`",
    ),
    Hostile(
        "ProbabilityFlow: sde differs from the score's",
        lambda: jm.ProbabilityFlow(jm.EmpiricalScore(PTS, "vp"), "ve"),
        ValueError,
        r"`sde`",
    ),
    Hostile("ProbabilityFlow: t_min = 0", lambda: _flow(t_min=0.0), ValueError, r"`t_min`"),
    Hostile("ProbabilityFlow: t_min = 1.5", lambda: _flow(t_min=1.5), ValueError, r"`t_min`"),
    Hostile("ProbabilityFlow: NaN t_min", lambda: _flow(t_min=float("nan")), ValueError, r"`t_min`"),
    Hostile(
        "ProbabilityFlow: score not callable", lambda: jm.ProbabilityFlow(jnp.ones(2)), TypeError, r"`score`"
    ),
    Hostile(
        "ProbabilityFlow: constant steps without dt0",
        lambda: _flow(stepsize_controller=diffrax.ConstantStepSize()),
        ValueError,
        r"`dt0`",
    ),
    Hostile("ProbabilityFlow: max_steps = 0", lambda: _flow(max_steps=0), ValueError, r"`max_steps`"),
    # --- sampling and densities (fail before a solve is compiled) ---
    Hostile("sample: z of another dimension", lambda: _flow().sample(jnp.ones(3)), ValueError, r"`z`"),
    Hostile("sample: a batch of z", lambda: _flow().sample(jnp.ones((4, 2))), ValueError, r"`z`.*vmap"),
    Hostile("sample: NaN z", lambda: _flow().sample(jnp.array([0.0, jnp.nan])), ValueError, r"`z`"),
    Hostile(
        "sample: score of a wrong output shape",
        lambda: jm.ProbabilityFlow(lambda t, x: x[:1]).sample(jnp.ones(2)),
        ValueError,
        r"`score`",
    ),
    Hostile("solve: throw not a bool", lambda: _flow().solve(jnp.ones(2), throw=1), TypeError, r"`throw`"),
    Hostile(
        "trajectory: increasing ts",
        lambda: _flow().trajectory(jnp.ones(2), jnp.array([0.1, 0.5])),
        ValueError,
        r"`ts`",
    ),
    Hostile("log_prob: x of another dimension", lambda: _flow().log_prob(jnp.ones(1)), ValueError, r"`x`"),
    Hostile(
        "log_prob: hutchinson without a key",
        lambda: _flow().log_prob(jnp.ones(2), trace="hutchinson"),
        ValueError,
        r"`key`",
    ),
    Hostile(
        "cnf: no size from a plain score",
        lambda: jm.ProbabilityFlow(lambda t, x: -x).cnf(),
        ValueError,
        r"`size`",
    ),
    Hostile("GaussianPrior: std = 0", lambda: jm.GaussianPrior(2, 0.0), ValueError, r"`std`"),
    # --- training ---
    Hostile("train_score: xs of shape (n,)", lambda: _train(xs=jnp.ones(8)), ValueError, r"`xs`"),
    Hostile("train_score: NaN in xs", lambda: _train(xs=XS.at[0, 0].set(jnp.nan)), ValueError, r"`xs`"),
    Hostile("train_score: batch_size = 0", lambda: _train(batch_size=0), ValueError, r"`batch_size`"),
    Hostile("train_score: negative lr", lambda: _train(lr=-1e-3), ValueError, r"`lr`"),
    Hostile("train_score: sde differs from the score's", lambda: _train(sde="ve"), ValueError, r"`sde`"),
    Hostile(
        "train_score: xs of another dimension",
        lambda: _train(xs=jnp.ones((8, 3))),
        ValueError,
        r"`score`|`xs`",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
