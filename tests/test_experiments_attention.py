"""The `attention` experiment: its claims judged on synthetic metrics (no run) and its integrator
against `simulate(Projected(RK4()))` (main lane); the trained attention layer and a tiny run (slow
lane)."""

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import meanfield as mf
from jaxdyn.experiments import EXPERIMENTS, Claim, ExperimentResult, attention as at


def _metrics():
    return {
        "kuramoto": {"n": 64, "betas": [0.0, 1.0, 9.0],
                     "max_difference": {"0": 1e-16, "1": 2e-16, "9": 5e-13},
                     "max_abs_field": {"0": 0.5, "1": 1.2, "9": 900.0}, "beta0_vs_classical": 4e-17},
        "consensus": {"beta": 1.0, "time": 30.0, "n": 32, "d": 3, "seeds": 2, "min_mean_token_norm": 1.0,
                      "final_clusters": [1, 1]},
        "metastable": {"betas": [1.0, 4.0, 9.0, 16.0, 36.0], "time": 30.0, "n": 32, "d": 3, "seeds": 2,
                       "counts": [[1, 1], [2, 2], [4, 3], [7, 5], [11, 13]],
                       "counts_mean": [1.0, 2.0, 3.5, 6.0, 12.0],
                       "counts_mean_half_time": [1.0, 2.0, 4.5, 8.0, 13.5]},
        "spectral": {"beta": 1.0, "n": 32, "d": 3, "time": 30.0,
                     "positive": {"eigenvalues": [1.0, 0.5, 0.25], "min_abs_alignment": 0.99999999,
                                  "mean_abs_alignment": 1.0, "fraction_positive": 0.44, "clusters": 2,
                                  "mean_token_norm": 0.1},
                     "negative": {"eigenvalues": [-1.0, -0.5, -0.25], "min_abs_alignment": 0.9999999,
                                  "mean_abs_alignment": 1.0, "fraction_positive": 0.47, "clusters": 2,
                                  "mean_token_norm": 0.06}},
        "w1": {"beta": 1.0, "time": 1.0, "ratio": 4,
               "circle": {"n": [8, 32, 128], "mean": [0.3, 0.17, 0.08], "stderr": [0.02, 0.01, 0.005],
                          "seeds": 16, "mean_t0": [0.4, 0.2, 0.1], "slope": -0.47, "slope_t0": -0.5},
               "sphere": {"n": [8, 32, 128], "mean": [0.4, 0.22, 0.12], "stderr": [0.02, 0.01, 0.005],
                          "seeds": 8, "mean_t0": [0.5, 0.3, 0.15], "slope": -0.43, "slope_t0": -0.44}},
        "trained": {"initial_loss": 0.9, "final_loss": 0.09, "loss_factor": 10.0, "test_loss": 0.089,
                    "restarts_final_losses": [0.09, 0.3, 0.35, 0.29],
                    "identity_attention_best_test_loss": 0.118, "QtK": np.eye(3) * 1.9, "V": np.eye(3) * 1.3,
                    "beta_eff": 1.9, "QtK_anisotropy": 0.04, "v_eff": 1.33, "V_anisotropy": 0.014,
                    "QtK_eigenvalues": [1.88, 1.9, 1.95], "V_eigenvalues": [1.32, 1.33, 1.34],
                    "max_order_gap_to_surrogate": 0.016, "max_token_distance_to_surrogate": 0.55,
                    "final_mean_token_norm": {"trained": 1.0, "identity": 1.0, "surrogate": 1.0},
                    "final_clusters": {"trained": 1, "identity": 1, "surrogate": 1},
                    "time_to_one_cluster": {"trained": 6.0, "identity": 7.0, "surrogate": 5.5},
                    "time_to_mean_norm_0.99": {"trained": 5.0, "identity": 6.0,
                                               "surrogate": "not within the run"},
                    "sizes": {"d": 3, "tokens": 8, "neighbours": 3, "sequences": 256, "steps": 300,
                              "n_dynamics": 32}},
    }


def _verdicts(mt):
    claims = at._claims(at.QUICK, mt)
    assert len(claims) == 6
    for c in claims:
        assert isinstance(c, Claim)
        assert c.source.strip() and c.criterion.strip() and c.measured not in (None, "", [], {})
    return [c.verdict for c in claims], claims


def test_claims_reproduced_on_good_metrics():
    verdicts, _ = _verdicts(_metrics())
    assert verdicts == ["reproduced"] * 6


@pytest.mark.parametrize("where, value, index, verdict", [
    (("kuramoto", "max_difference", "9"), 3e-12, 0, "partly"),
    (("consensus", "min_mean_token_norm"), 0.998, 1, "not reproduced"),
    (("metastable", "counts_mean"), [1.0, 2.0, 1.5, 6.0, 12.0], 2, "partly"),
    (("metastable", "counts_mean"), [1.0, 1.0, 1.0, 1.0, 1.0], 2, "partly"),
    (("spectral", "negative", "fraction_positive"), 0.0, 3, "partly"),
    (("spectral", "positive", "min_abs_alignment"), 0.5, 3, "partly"),
    (("w1", "circle", "slope"), -0.2, 4, "not reproduced"),
    (("trained", "loss_factor"), 3.1, 5, "partly"),
    (("trained", "max_order_gap_to_surrogate"), 0.2, 5, "partly"),
])
def test_claims_fail_honestly(where, value, index, verdict):
    mt = copy.deepcopy(_metrics())
    d = mt
    for k in where[:-1]:
        d = d[k]
    d[where[-1]] = value
    verdicts, claims = _verdicts(mt)
    assert verdicts[index] == verdict
    assert claims[index].why and claims[index].why.strip()
    assert [v for i, v in enumerate(verdicts) if i != index] == ["reproduced"] * 5


def test_summary_and_result():
    mt = _metrics()
    text = at._summary(at.QUICK, mt)
    assert "nan" not in text and "None" not in text
    assert "not within the run" not in text  # a missing time prints "-"
    res = ExperimentResult("attention", at.TITLE, text, mt, question=at.QUESTION,
                           claims=at._claims(at.QUICK, mt))
    assert res.verdict == "reproduced"


def test_registered_after_central_flow():
    names = list(EXPERIMENTS)
    assert names.index("attention") == names.index("central-flow") + 1
    assert EXPERIMENTS["attention"].module == "jaxdyn.experiments.attention"


def test_isotropy():
    c, rel = at.isotropy(2.0 * np.eye(3))
    assert c == 2.0 and rel == 0.0
    c, rel = at.isotropy(np.diag([1.0, 2.0, 3.0]))
    assert c == 2.0 and rel == pytest.approx(np.sqrt(2.0) / np.sqrt(14.0))


def test_solve_equals_simulate_projected_rk4():
    eye = jnp.eye(3)
    field = mf.SelfAttention(eye, 2 * eye, eye, beta=2.0)
    x0 = at.sphere_tokens(jax.random.key(2), (12, 3))
    ours = at._solve(field, x0, 2.0, 0.05, 5)
    ref = mf.simulate(field, x0, jnp.linspace(0.0, 2.0, 5), solver=mf.Projected(mf.RK4()), dt0=0.05).ys
    assert float(jnp.max(jnp.abs(ours - ref))) < 1e-12



# --- slow lane --------------------------------------------------------------------------------------

TRAIN_FACTOR = 5.0  # the stated factor: the training loss drops at least 5-fold


def test_trained_attention_learns_and_runs():
    tr = at.train_attention(jax.random.key(0), sequences=128, steps=200, restarts=4)
    assert tr.losses[0] / tr.losses[-1] >= TRAIN_FACTOR
    assert tr.final_losses.shape == (4,) and tr.losses[-1] == tr.final_losses.min()
    assert tr.test_loss < tr.identity_loss  # a trained V beats isotropic attention with V = I
    field = tr.field()
    assert isinstance(field, mf.SelfAttention) and float(field.beta) == 1.0
    x0 = at.sphere_tokens(jax.random.key(1), (16, 3))
    xs = at._solve(field, x0, 10.0, 0.05, 11)
    assert xs.shape == (11, 16, 3) and bool(jnp.all(jnp.isfinite(xs)))
    assert float(jnp.max(jnp.abs(jnp.linalg.norm(xs, axis=-1) - 1))) < 1e-14
    r = np.asarray(mf.mean_token_norm(xs))
    assert r[-1] > r[0]  # the tokens gather


def test_smoke_run_tiny(monkeypatch):
    tiny = dataclasses.replace(
        at.QUICK, kuramoto_n=16, kuramoto_betas=(0.0, 1.0), circle_n=8, n=12, t_final=6.0, betas=(1.0, 9.0),
        count_time=6.0, seeds=1, w1_sizes=(8, 16), w1_sphere_sizes=(8, 16), w1_seeds=2, w1_sphere_seeds=2,
        train_sequences=32, train_steps=20, train_restarts=2)
    monkeypatch.setattr(at, "QUICK", tiny)
    res = at.run(quick=True, seed=0, progress=False)
    assert set(res.figures) == {"circle", "sphere", "clusters_vs_beta", "spectral_selection", "w1_limit",
                                "trained_attention"}
    assert len(res.claims) == 6
    assert res.claims[0].verdict == "reproduced"  # the Kuramoto identity holds at any size
    assert res.metrics["config"]["n"] == 12
