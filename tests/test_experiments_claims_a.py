"""The claims of the embedding, lyapunov and dde-memory experiments, judged on synthetic metrics
(no experiment runs), and the figure helpers they draw with (legends outside the axes,
coinciding runs named)."""

import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxdyn.experiments import Claim, dde_memory, embedding, lyapunov
from jaxdyn.plot import plot_losses, plot_memory_sweep


def _verdicts(claims):
    assert all(isinstance(c, Claim) for c in claims)
    assert 2 <= len(claims) <= 5
    for c in claims:
        assert c.statement and c.source and c.criterion
        assert c.measured not in (None, "", [], {})
        assert "|" not in c.criterion  # `\lvert`/`\rvert`: a bare pipe would split a table cell
    return [c.verdict for c in claims]


# ---------------------------------------------------------------------------------- lyapunov

LYAPUNOV = {
    "lorenz": {"exponents": [0.8997, 0.0073, -14.5736], "errors": [-0.0059, 0.0073, -0.0013],
               "sum": -13.666565, "sum_error": 1.0e-4},
    "rho_sweep": {"n_values": 128, "rho_spacing": 1.97, "max_error_vs_equilibrium_rho_below_20":
                  0.0057, "min_lambda1_rho_hopf_to_40": 0.81,
                  "max_abs_lambda1_in_windows": [0.021, 0.026]},
    "order_to_chaos": {"critical_sigma_w2_mean_field_exact": 1.76095,
                       "critical_sigma_w2_mean_field_grid": 1.762,
                       "critical_sigma_w2_empirical": 1.856,
                       "shift_empirical_minus_mean_field": 0.095,
                       "max_abs_lambda1_minus_mean_field": 0.0137, "sigma_w2_at_max_gap": 1.8},
}


def test_lyapunov_claims_reproduced():
    assert _verdicts(lyapunov._claims(lyapunov.QUICK, LYAPUNOV)) == ["reproduced"] * 5


def test_lyapunov_claims_fail_when_the_numbers_do():
    m = copy.deepcopy(LYAPUNOV)
    m["lorenz"]["errors"] = [0.2, 0.0, 0.0]  # lambda_1 off by more than T^{-1/2} = 0.071
    m["lorenz"]["sum_error"] = 5e-3
    m["rho_sweep"]["min_lambda1_rho_hopf_to_40"] = "no swept value"
    m["order_to_chaos"]["critical_sigma_w2_mean_field_exact"] = 1.7625
    m["order_to_chaos"]["shift_empirical_minus_mean_field"] = "-"  # no empirical sign change
    claims = lyapunov._claims(lyapunov.QUICK, m)
    assert _verdicts(claims) == ["partly", "not reproduced", "partly", "not reproduced", "partly"]
    assert all(c.why for c in claims)
    # the tolerance of claim 1 follows the counted time, T^{-1/2}
    assert "0.071" in claims[0].criterion
    assert "0.032" in lyapunov._claims(lyapunov.FULL, LYAPUNOV)[0].criterion


def test_mean_field_critical_value():
    assert lyapunov.mean_field_critical_sigma_w2() == pytest.approx(1.7609546, abs=1e-6)


# ---------------------------------------------------------------------------------- dde-memory

def _run(variant, cap, kte, sup, n_crit, dmin, dmax):
    return {"variant": variant, "cap_K_tau_e": cap, "K_tau_e": kte, "K_tau_e_below_one": kte < 1,
            "sup_error": sup, "n_critical_points": n_crit, "derivative_range": [dmin, dmax],
            "monotone": dmin * dmax > 0 and n_crit == 0, "final_loss": sup / 10,
            "joint_lipschitz": kte}


DDE_RUNS = [_run("delay", 0.5, 0.5, 0.733, 1, -0.0105, 1.86),
            _run("delay", 32, 17.79, 0.031, 1, -1.7, 1.6),
            _run("full", 0.5, 0.429, 1.408, 0, 0.756, 0.757),
            _run("full", 32, 17.79, 0.031, 1, -1.7, 1.6)]


def test_dde_claims():
    claims = dde_memory._claims(dde_memory.QUICK, DDE_RUNS)
    assert _verdicts(claims) == ["reproduced", "partly", "reproduced"]
    assert "asymptotic" in claims[1].why
    # a run with K tau e < 1 that beats the monotone bound; no large-capacity fit good enough
    bad = copy.deepcopy(DDE_RUNS)
    bad[2]["sup_error"] = 0.3
    bad[1]["sup_error"] = bad[3]["sup_error"] = 0.4
    assert _verdicts(dde_memory._claims(dde_memory.QUICK, bad)) == ["partly", "partly",
                                                                    "not reproduced"]
    # no run satisfies the hypothesis: said, not silently passed
    none = [r for r in DDE_RUNS if not r["K_tau_e_below_one"]]
    claims = dde_memory._claims(dde_memory.QUICK, none)
    assert [c.verdict for c in claims[:2]] == ["not reproduced"] * 2
    assert "hypothesis" in claims[0].why


def test_dde_summary_names_coinciding_runs():
    runs = [dict(r, K_tau=r["K_tau_e"] / math.e, rms_error=0.0) for r in DDE_RUNS]
    text = dde_memory._summary(dde_memory.QUICK, runs)
    assert "delay and full at cap 32 are the same trained model" in text
    assert "nan" not in text and "None" not in text and "| |" not in text


# ---------------------------------------------------------------------------------- embedding

EMBEDDING = {
    "1d": {"non_augmented_jacobian_ranges_all_initialisations": [[0.000474, 1.85]],
           "sup_errors_non_augmented_all_initialisations": [0.744],
           "sup_error_non_augmented": 0.744, "final_loss_non_augmented": 0.0301,
           "loss_floor_monotone": 0.0299, "sup_error_augmented": 0.019,
           "augmented_jacobian_sign_changes_at": [0.007], "state_sizes": [1, 2]},
    "2d": {"critical_points_non_augmented": {"n_points": 0, "n_converged": 0, "n_starts": 16,
                                             "points": [], "morse_indices": []},
           "sup_error_unit_disk_non_augmented": 1.23, "sup_error_augmented": 0.0,
           "critical_points_augmented": {"n_points": 1, "n_converged": 16, "n_starts": 16,
                                         "points": [[0.0, 0.0]], "morse_indices": [0]},
           "critical_points_target": {"n_points": 1},
           "state_sizes": [2, 3], "augmented_model": "exact embedding"},
}


def test_embedding_claims():
    assert _verdicts(embedding._claims(embedding.QUICK, EMBEDDING)) == ["reproduced"] * 5
    m = copy.deepcopy(EMBEDDING)
    m["1d"]["final_loss_non_augmented"] = 0.05  # stuck above the isotonic limit
    m["1d"]["augmented_jacobian_sign_changes_at"] = [-0.4, 0.3]
    m["2d"]["critical_points_non_augmented"]["n_points"] = 1
    m["2d"]["sup_error_augmented"] = 1e-3  # exact embedding expected to rounding
    m["1d"]["non_augmented_jacobian_ranges_all_initialisations"] = [[-0.1, 1.0]]
    claims = embedding._claims(embedding.QUICK, m)
    assert _verdicts(claims) == ["not reproduced", "partly", "partly", "partly", "partly"]
    assert "isotonic limit" in claims[1].why
    # the trained augmented 2-D model of the full run has its own (looser) tolerances
    assert embedding._claims(embedding.FULL, m)[4].verdict == "reproduced"


# ---------------------------------------------------------------------------------- figures

def test_memory_sweep_names_coinciding_runs_and_keeps_legends_outside():
    runs = [dict(r, K_tau=r["K_tau_e"] / math.e) for r in DDE_RUNS]
    fig = plot_memory_sweep(runs)
    for ax in fig.axes:
        legend = ax.get_legend()
        texts = [t.get_text() for t in legend.get_texts()]
        assert any("coincide" in t and "17.8" in t for t in texts)
        assert legend.get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below the axes
    # one marker style per variant, so that coinciding points stay visible
    markers = {line.get_marker() for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 1}
    assert {"o", "s"} <= markers
    plt.close(fig)


def test_losses_styles_and_outside_legend():
    fig = plot_losses({"a": np.ones(5), "b": np.ones(5)}, styles={"b": {"ls": "--"}},
                      hlines={"floor": 0.5})
    ax = fig.axes[0]
    assert [line.get_linestyle() for line in ax.get_lines()][:2] == ["-", "--"]
    assert ax.get_xlabel() == "optimiser step" and ax.get_ylabel() == "training loss"
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1
    plt.close(fig)


def test_legend_place_is_checked():
    from jaxdyn.plot import plot_fit

    x = np.linspace(-1.0, 1.0, 5)
    with pytest.raises(ValueError, match="`legend`"):
        plot_fit(x, x**2, {"line": x}, legend="inside")
    plt.close("all")


def test_lyapunov_texts_say_none_not_nan():
    grid = {"critical_sigma_w2_by_sigma_b2": {"sigma_b2": np.array([0.0, 0.05]),
                                              "mean_field": np.array([1.017, 1.761]),
                                              "empirical": np.array([np.nan, 1.8])}}
    text = lyapunov._grid_sentence(grid)
    assert "nan" not in text.lower() and "0: 1.017 / none" in text
