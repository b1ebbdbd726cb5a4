"""The claims of the `kuramoto` and `invariant-sets` experiments, judged on synthetic metrics (no
experiment runs): every claim has a source, a criterion and a measured value; a failing metric gives
"not reproduced" or "partly" with a reason; the summaries print no `nan`/`None`."""

import copy

import numpy as np
import pytest

from jaxdyn.experiments import Claim, ExperimentResult, invariant_sets as inv, kuramoto as ku
from jaxdyn.experiments._progress import fmt


def _kuramoto_metrics():
    ks_l = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
    theory_l = np.sqrt(np.clip(1 - 1 / np.asarray(ks_l), 0, None))
    ks_g = [1.0, 1.6, 2.5, 3.0]
    theory_g = [0.0, 0.09, 0.87, 0.925]
    return {
        "n_sweep": 1000,
        "lorentzian": {"ks": ks_l, "r_mean": list(theory_l + 0.01), "theory": list(theory_l), "K_c": 1.0,
                       **ku._threshold_errors(ks_l, theory_l + 0.01, theory_l, 1.0)},
        "gaussian": {"ks": ks_g, "r_mean": [0.03, 0.14, 0.87, 0.925], "theory": theory_g, "K_c": 1.596,
                     **ku._threshold_errors(ks_g, [0.03, 0.14, 0.87, 0.925], theory_g, 1.596),
                     "first_K_with_r_above_0.2": 2.5, "theory_first_K_above_0.2": 2.5},
        "ott_antonsen": {"z0": [0.1, 0.0], "ks": [1.5, 3.0],
                         "max_abs_r_particles_minus_oa": {"1.5": 0.05, "3.0": 0.06},
                         "max_abs_r_difference_last_third": {"1.5": 0.02, "3.0": 0.01},
                         "rise_time_oa_minus_particles": {"1.5": 0.3, "3.0": 0.2},
                         "oa_vs_closed_form_max_error": 1e-11},
        "chimera": {"coupling_operator": "Circulant", "coherent_fraction": 0.3, "local_order_min": 0.2,
                    "local_order_max": 1.0, "frequency_spread": 0.5, "is_chimera": True},
        "w1": {"t0": {"n": [32, 128], "mean": [0.3, 0.15], "stderr": [0.01, 0.01], "slope": -0.5},
               "t1": {"n": [32, 128], "mean": [0.3, 0.15], "stderr": [0.01, 0.01], "slope": -0.45}},
        "two_layer": {"n": [32, 128, 512], "reference_n": 16384, "seeds": 4,
                      "max_gap_mean": [0.1, 0.05, 0.025], "max_gap_second_half_mean": [1e-4, 5e-5, 2e-5],
                      "max_gap_stderr": [0.01, 0.005, 0.002], "slope": -0.5, "final_loss_mean": [6e-4] * 3,
                      "reference_initial_loss": 0.66, "reference_final_loss": 5.7e-4},
    }


def _check_claims(claims):
    assert 2 <= len(claims) <= 5
    for c in claims:
        assert isinstance(c, Claim)
        assert c.source.strip() and c.criterion.strip() and c.measured not in (None, "", [], {})
    return [c.verdict for c in claims]


def test_kuramoto_claims_reproduced():
    claims = ku._claims(ku.QUICK, _kuramoto_metrics())
    assert _check_claims(claims) == ["reproduced"] * 5
    assert "Ott & Antonsen 2008" in claims[1].source and "Kuramoto 1975" in claims[0].source


def test_kuramoto_claims_fail_honestly():
    mt = _kuramoto_metrics()
    mt["ott_antonsen"]["max_abs_r_particles_minus_oa"]["3.0"] = 0.11  # 3/sqrt(1000) = 0.095
    mt["lorentzian"]["max_error_strong"] = 0.05
    mt["chimera"]["coherent_fraction"] = 1.0
    mt["w1"]["t1"]["slope"] = -0.2
    mt["two_layer"]["slope"] = -0.9
    claims = ku._claims(ku.QUICK, mt)
    assert _check_claims(claims) == ["partly", "partly", "partly", "partly", "not reproduced"]
    assert "Lorentzian above" in claims[0].why
    assert "$K = 3$ (0.110)" in claims[1].why and "rise ahead" in claims[1].why
    assert "plateaus (last third) agree" in claims[1].why
    assert "-0.90" in claims[4].why


def test_kuramoto_no_point_above_or_below_is_a_failure():
    mt = _kuramoto_metrics()
    mt["gaussian"].update(max_error_strong=None, n_strong=0)
    claims = ku._claims(ku.QUICK, mt)
    assert claims[0].verdict == "partly" and "Gaussian above" in claims[0].why


def test_kuramoto_summary_has_no_missing_cells():
    mt = _kuramoto_metrics()
    mt = _kuramoto_metrics()
    mt["gaussian"]["max_error_strong"] = None
    mt["ott_antonsen"]["rise_time_oa_minus_particles"]["3.0"] = float("nan")
    text = ku._summary(ku.QUICK, mt)
    for bad in ("nan", "None", "| |", "||"):
        assert bad not in text
    assert "| 1.5 | 0.0500 | 0.0200 | +0.30 |" in text and "| 3 | 0.0600 | 0.0100 | - |" in text
    assert "| 128 | 0.0500 ± 0.0050 | 5.0e-05 | 6.00e-04 |" in text
    ExperimentResult("kuramoto", "t", text, question=ku.QUESTION, claims=ku._claims(ku.QUICK, mt))


def test_threshold_errors():
    out = ku._threshold_errors([0.5, 1.0, 2.0], [0.05, 0.2, 0.72], [0.0, 0.0, 0.7071], 1.0)
    assert out["n_strong"] == 1 and out["n_weak"] == 1
    assert out["max_error_strong"] == pytest.approx(0.0129, abs=1e-4) and out["max_r_weak"] == 0.05
    assert ku._threshold_errors([1.0], [0.1], [0.0], 1.0)["max_error_strong"] is None


def test_rise_time_and_fmt():
    ts = np.linspace(0, 10, 11)
    assert ku._rise_time(ts, np.linspace(0.1, 1.1, 11), 0.1, 1.1) == pytest.approx(5.0)
    assert fmt(float("nan"), ".2f") == "-" and fmt(None, ".2f") == "-"
    assert fmt(0.5, ".1f") == "0.5"


def _invariant_metrics():
    return {
        "gd": {"double_well": {"eta_flip": 1.0, "error_vs_1": 0.0, "eta_flip_period2": 5**0.5 - 1,
                               "period2_flip_minus_sqrt5_minus_1": 4e-16},
               "mlp": {"n_params": 7, "n_data": 24, "loss_at_minimum": 0.0, "lambda_min": 1e-4,
                       "regime": "isolated", "eta_flip": 1.3, "critical_lr": 1.3, "relative_error": 1e-15,
                       "max_drift_of_branch": 0.0}},
        "ott_antonsen": {"cells": 32, "gamma": 0.1, "K_c_branch_point": 0.49, "K_c_discrete": 0.49,
                         "K_c_continuum": 0.4935, "error_vs_discrete": 1e-13, "error_vs_continuum": 1e-4,
                         "n_particles": 400, "max_abs_r_difference": 0.01, "ks": [0.7, 1.0],
                         "r_branch": [0.43, 0.59], "r_particles": [0.42, 0.60]},
        "dde": {"mackey_glass": {"tau_hopf": 0.47, "tau_error": 0.0, "omega": 3.87, "omega_error": 0.0,
                                 "cycle_tau_range": [0.48, 0.87], "cycle_points": 16,
                                 "cycle_max_amplitude": 0.5},
                "network": {"tau_hopf": 0.46, "tau_error": 0.0, "omega": 2.0, "omega_error": 0.0}},
        "neural_ode": {"final_training_loss": 1e-4, "n_equilibria": 2, "kinds": ["saddle", "unstable focus"],
                       "saddle_error_vs_target": 0.01, "cycle_max_radius": 0.4, "cycle_period": 6.5,
                       "cycle_multipliers": [1.0, 0.69], "cycle_stable": True,
                       "manifolds_successful": [True]},
    }


def test_invariant_claims_reproduced():
    claims = inv._claims(inv.QUICK, _invariant_metrics())
    assert _check_claims(claims) == ["reproduced"] * 5
    assert "Chiba & Medvedev 2019" in claims[1].source


def test_invariant_claims_fail_honestly():
    mt = copy.deepcopy(_invariant_metrics())
    mt["gd"]["mlp"]["relative_error"] = 1e-3
    mt["ott_antonsen"]["error_vs_discrete"] = 1e-3
    mt["ott_antonsen"]["r_particles"] = [0.93, 0.60]
    mt["dde"]["network"]["tau_error"] = 1e-4
    mt["neural_ode"].update(saddle_error_vs_target=float("nan"), kinds=["unstable focus"], cycle_stable=False)
    claims = inv._claims(inv.QUICK, mt)
    assert _check_claims(claims) == ["partly", "not reproduced", "partly", "partly", "not reproduced"]
    assert "the MLP's flip" in claims[0].why and "the network" in claims[3].why
    assert "0.500" in claims[2].why
    assert claims[4].why == "no saddle within the tolerance and the cycle found is not stable."
    assert claims[4].measured["saddle distance"] == "no saddle found"
    text = inv._summary(inv.QUICK, mt)
    assert "nan" not in text and "None" not in text and "is - from" in text
