"""The `generative` experiment: its claims on synthetic metrics (passing and failing cases), its
summary, its helpers' closed forms, and (slow lane) a tiny run. The quick run is
`jaxdyn reproduce generative --quick` (CI)."""

import copy
import dataclasses
import inspect

import numpy as np
import pytest

from jaxdyn.experiments import EXPERIMENTS, generative as ex


def _metrics():
    return {
        "gaussian": {"max_map_error": 4e-7, "n": 256},
        "cnf": {"steps": 80, "nll_test": 2.2, "nll_test_init": 2.9, "nll_train_last": 2.2,
                "nll_gaussian_test": 2.67},
        "score": {"steps": 2500, "width": 64, "dsm_loss_last": 0.5, "nll_test": 2.2,
                  "nll_gaussian_test": 2.67, "n_nll": 100, "step_doubling_max_change": 2e-4,
                  "energy_distance": {"samples": 0.015, "gaussian": 0.033, "held_out_data": 0.009, "n": 500},
                  "log_density": {"n": 4, "max_abs_gap": 8e-4, "mean_log_p": -3.2},
                  "lyapunov": {"n": 16, "mean": [-0.07, -0.5], "stderr": [0.1, 0.1],
                               "largest_local_rate": 0.1, "time_of_largest_rate": 0.84,
                               "smallest_local_rate": -2.7,
                               "time_of_smallest_rate": 0.0012}},
        "polygon": {"m": 5, "n_latents": 2000, "fractions": [0.2045, 0.206, 0.191, 0.1955, 0.203],
                    "stderr": [0.009] * 5, "max_deviation_in_se": 1.02, "unassigned": 0.0,
                    "ftle": {"grid": 41, "max": 31.2, "min": -4.4, "max_on_boundary": True,
                             "median_boundary": -2.5, "median_interior": -4.1, "boundary_cells": 199}},
        "memorisation": {"m": [8, 64, 1000], "tol": 0.05, "samples": 500, "width": 64, "steps": 2500,
                         "empirical_within_tol": [1.0, 1.0, 1.0], "empirical_copies": [0.97, 0.85, 0.33],
                         "trained_within_tol": [0.9, 0.3, 0.3], "trained_copies": [0.8, 0.2, 0.04],
                         "trained_copies_stderr": [0.02, 0.02, 0.01], "data_within_tol": [0.01, 0.1, 0.3],
                         "data_copies": [0.35, 0.13, 0.1], "trained_median_distance": [0.01, 0.05, 0.06],
                         "empirical_median_distance": [0.01, 0.01, 0.01]},
    }


def test_registered_with_keyword_only_run():
    assert EXPERIMENTS["generative"].module == "jaxdyn.experiments.generative"
    params = inspect.signature(ex.run).parameters
    assert [p.kind for p in params.values()] == [inspect.Parameter.KEYWORD_ONLY] * 3
    assert ex.QUICK.memo_sizes[-1] == ex.QUICK.n_data // 2  # the last size reuses the stage-3 network
    assert ex.FULL.memo_sizes[-1] == ex.FULL.n_data // 2


def test_claims_pass_on_good_metrics():
    claims = ex._claims(ex.QUICK, _metrics())
    assert [c.verdict for c in claims] == ["reproduced"] * 8
    assert "Song et al. 2021" in claims[0].source and "Grathwohl" in claims[1].source
    assert "Gu et al. 2023" in claims[-1].source


def test_claims_fail_honestly():
    mt = copy.deepcopy(_metrics())
    mt["gaussian"]["max_map_error"] = 2e-6
    mt["cnf"]["nll_test"] = 2.5  # gain 0.17 < 0.3
    mt["score"]["log_density"]["max_abs_gap"] = 0.01
    mt["memorisation"]["empirical_within_tol"] = [1.0, 1.0, 0.99]
    mt["polygon"]["unassigned"] = 0.01
    mt["polygon"]["ftle"].update(max_on_boundary=False, median_boundary=-4.0)
    mt["memorisation"]["trained_copies"] = [0.16, 0.04, 0.04]
    claims = ex._claims(ex.QUICK, mt)
    verdicts = [c.verdict for c in claims]
    assert verdicts == ["not reproduced", "not reproduced", "reproduced", "not reproduced", "partly",
                        "partly", "not reproduced", "partly"]
    assert "m = 1000: 0.990" in claims[4].why
    assert "does not memorise" in claims[-1].why
    mt["memorisation"]["trained_copies"] = [0.3, 0.6, 0.7]
    assert ex._claims(ex.QUICK, mt)[-1].verdict == "not reproduced"


def test_summary_reads_the_metrics():
    text = ex._summary(ex.QUICK, _metrics())
    assert "| 8 | 1.000 | 0.970 | 0.900 | 0.800 ± 0.020 | 0.350 |" in text
    assert "positive: on average nearby latents separate" in text
    mt = copy.deepcopy(_metrics())
    mt["score"]["lyapunov"]["largest_local_rate"] = -0.01
    mt["polygon"]["ftle"]["median_boundary"] = None
    text = ex._summary(ex.QUICK, mt)
    assert "negative even there" in text and "median - on the" in text


def test_helpers_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    assert ex.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert ex.energy_distance(x, x + 3.0) > 1.0
    # the Gaussian NLL of standard normal data under its own fit: (d/2) log(2 pi e) up to sampling error
    z = rng.normal(size=(5000, 2))
    assert ex.gaussian_nll(z, z) == pytest.approx(np.log(2 * np.pi * np.e), abs=0.05)
    lab = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
    assert ex._boundary(lab).sum() == 8  # every cell but the top-left corner


# --- slow lane (tests/conftest.py SLOW) -----------------------------------------------------------


def test_smoke_run_tiny(monkeypatch):
    """A tiny run end to end: every claim judged, figures drawn, metrics JSON-ready."""
    tiny = dataclasses.replace(
        ex.QUICK, n_data=200, n_samples=100, sampler_steps=20, cnf_width=8, cnf_steps=5, cnf_batch=50,
        cnf_dt=0.25, density_grid=9, score_width=16, score_steps=50, score_batch=50, n_nll=10, n_logdet=2,
        polygon_m=3, n_basin_latents=200, ftle_grid=9, memo_sizes=(4, 100), memo_samples=50, n_lyapunov=4,
        lyapunov_renorm=2)
    monkeypatch.setattr(ex, "QUICK", tiny)
    res = ex.run(quick=True, seed=0, progress=False)
    assert len(res.claims) == 8 and set(res.figures) == {"moons", "basins_ftle", "memorisation"}
    assert res.metrics["memorisation"]["m"] == [4, 100]
    data, _ = ex.moons(200, 0.05, 0)  # standardised per axis
    np.testing.assert_allclose(data.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.std(0), 1.0, atol=1e-12)
