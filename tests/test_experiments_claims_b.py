"""The claims of the experiments edge-of-stability, implicit-bias, sgd-stability and central-flow:
`_claims(cfg, metrics)` on synthetic metrics (no experiment runs), a passing and a failing case
each, and the question of every experiment. Cheap: plain Python on small dicts."""

import copy

import numpy as np
import pytest

from jaxdyn.experiments import Claim, central_flow, edge_of_stability, implicit_bias, sgd_stability

MODULES = (edge_of_stability, implicit_bias, sgd_stability, central_flow)


def _verdicts(claims):
    return [c.verdict for c in claims]


def _check_claims(claims, n_min=2, n_max=5):
    assert n_min <= len(claims) <= n_max
    for c in claims:
        assert isinstance(c, Claim)
        assert c.statement and c.source and c.criterion
        assert c.measured not in (None, "", [], {})
        if c.verdict != "reproduced":
            assert c.why and c.why.strip().endswith(".")


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_question_and_sources(mod):
    assert mod.QUESTION.strip().endswith("?") and "**Question" not in mod.QUESTION


# -- edge-of-stability ------------------------------------------------------------------------------


def _eos_metrics():
    cfg = edge_of_stability.QUICK
    runs = {}
    for lr, final in zip(cfg.lrs, (13.6, 8.4, 5.2)):
        thr = 2 / lr
        runs[f"{lr:g}"] = {"threshold": thr, "initial_sharpness": 4.4, "first_crossing": 75,
                           "fraction_in_band": 0.8, "mean_sharpness_after_ratio": 1.04,
                           "final_sharpness": final, "final_sharpness_ratio": final / thr,
                           "loss_increases": 50, "loss_at_crossing": 0.12, "final_loss": 0.07,
                           "final_accuracy": 0.99}
    flow = {"lr": cfg.flow_lr, "flow_steps": 276, "flow_result": "successful", "followed_to_step": 125,
            "distance_max_before_crossing": 0.05, "distance_at_crossing": 0.05, "distance_end": 1.0,
            "distance_growth_after_crossing": 20.0, "loss_gap_end": 0.03, "flow_sharpness_end": 8.9,
            "gd_sharpness_at_flow_end": 5.2}
    return {"runs": runs, "final_sharpness_falls_with_eta": True, "all_crossed": True, "flow": flow}


def test_edge_of_stability_claims_pass_and_fail():
    cfg, m = edge_of_stability.QUICK, _eos_metrics()
    claims = edge_of_stability._claims(cfg, m)
    _check_claims(claims)
    assert set(_verdicts(claims)) == {"reproduced"}
    # the case: band fraction 0 at eta = 0.4 -> the hover claim is only partly reproduced
    bad = copy.deepcopy(m)
    bad["runs"]["0.4"].update(fraction_in_band=0.0, mean_sharpness_after_ratio=1.16)
    bad["flow"]["distance_growth_after_crossing"] = 8.7
    bad["runs"]["0.25"]["first_crossing"] = -1
    bad["runs"]["0.25"]["fraction_in_band"] = float("nan")
    v = edge_of_stability._claims(cfg, bad)
    _check_claims(v)
    assert _verdicts(v)[:4] == ["partly", "partly", "partly", "not reproduced"]
    assert "0.4" in v[1].why and "+16%" in v[1].why
    assert "8.7-fold" in v[3].why
    assert v[1].measured["0.25"]["fraction_in_band"] == "no crossing"
    # no crossing in the flow run: nothing to leave
    bad["flow"] = {"lr": 0.4, "flow_steps": 10, "flow_result": "successful", "followed_to_step": 125}
    assert edge_of_stability._claims(cfg, bad)[3].verdict == "not reproduced"
    text = edge_of_stability._summary(cfg, bad)
    assert "nan" not in text and "None" not in text and "| none |" in text


# -- implicit-bias ----------------------------------------------------------------------------------


def _ib_metrics():
    runs = {}
    for lr in implicit_bias.QUICK.lrs:
        conv = 0 if lr > 1 else 100
        runs[f"{lr:g}"] = {
            "lr": lr, "bound_2_over_eta": 2 / lr, "n_converged": conv, "n_diverged": 10,
            "n_neither": 0, "all_converged_obey_bound": True, "n_violations": 0,
            "max_curvature_at_limit": None if not conv else 0.97 * 2 / lr,
            "max_curvature_over_bound": None if not conv else 0.97,
            "a_range": None, "stability_checked": 16 if conv else 0,
            "stability_all_manifold": True if conv else None,
            "stability_mu_max": -0.1 if conv else None, "stability_mu_error_max": 1e-14 if conv else None,
            "neither_balance_gap_max": None, "neither_loss_range": None}
    return {"runs": runs, "all_bounds_hold": True, "none_converge_above_1": True}


def test_implicit_bias_claims_pass_and_fail():
    cfg, m = implicit_bias.QUICK, _ib_metrics()
    claims = implicit_bias._claims(cfg, m)
    _check_claims(claims)
    assert set(_verdicts(claims)) == {"reproduced"}
    bad = copy.deepcopy(m)
    bad["runs"]["0.5"].update(all_converged_obey_bound=False, n_violations=3)
    bad["runs"]["1.25"].update(n_converged=2)
    bad["runs"]["0.8"].update(max_curvature_over_bound=0.5)
    bad["runs"]["0.25"].update(stability_mu_error_max=1e-3)
    v = implicit_bias._claims(cfg, bad)
    _check_claims(v)
    assert _verdicts(v) == ["partly", "not reproduced", "partly", "partly"]
    assert "0.5" in v[0].why and "0.8" in v[2].why and "0.25" in v[3].why
    text = implicit_bias._summary(cfg, m, "1.25")
    assert "None" not in text and "nan" not in text and "A dash" in text


# -- sgd-stability ----------------------------------------------------------------------------------


def _sgd_metrics():
    cfg = sgd_stability.QUICK
    fr = np.asarray(cfg.lr_fracs)
    sizes = list(cfg.batch_sizes)
    gd = np.log(np.abs(1 - 2 * fr * np.where(fr < 1, 0.99, 1.0)))  # mu < 0 below the boundary
    gd = np.where(fr < 1, -1e-3 * fr, 0.1 * fr)
    exp = np.tile(gd, (len(sizes), 1))
    exp[0, fr >= 0.2] = 0.2  # B = 1 unstable from 0.2
    se = np.full(exp.shape, 1e-5)
    se[-1] = 0.0
    msb = exp + 0.01
    sim = [{"lr_frac": 0.6, "batch_size": 1, "lambda": 0.2, "stderr": 1e-3, "escaped_fraction": 1.0,
            "returned_fraction": 0.0, "agrees_with_sign": True},
           {"lr_frac": 0.6, "batch_size": 32, "lambda": -6e-4, "stderr": 1e-16, "escaped_fraction": 0.0,
            "returned_fraction": 1.0, "agrees_with_sign": True}]
    return {"exponent": exp.tolist(), "stderr": se.tolist(), "mean_square_bound": msb.tolist(),
            "gd_exponent": gd.tolist(), "batch_sizes": sizes, "n_examples": cfg.n, "simulation": sim,
            "first_unstable_lr_frac": {str(b): (0.2 if b == 1 else 1.02) for b in sizes},
            "n_gd_stable_sgd_unstable": 8}


def test_sgd_stability_claims_pass_and_fail():
    cfg, m = sgd_stability.QUICK, _sgd_metrics()
    claims = sgd_stability._claims(cfg, m)
    _check_claims(claims)
    assert set(_verdicts(claims)) == {"reproduced"}
    bad = copy.deepcopy(m)
    bad["mean_square_bound"][1] = [e - 1.0 for e in bad["exponent"][1]]  # B = 2 above its bound
    bad["mean_square_bound"][2][0] = "nan"  # a JSON NaN: that cell is skipped
    bad["exponent"][-1][3] += 1e-6  # B = n row off mu
    bad["simulation"][0]["escaped_fraction"] = 0.5
    bad["simulation"][0]["agrees_with_sign"] = False
    bad["first_unstable_lr_frac"]["1"] = None
    bad["exponent"][2][0] = 1.0  # B = 4 far from mu at the smallest step
    v = sgd_stability._claims(cfg, bad)
    _check_claims(v)
    assert _verdicts(v) == ["partly", "not reproduced", "partly", "not reproduced", "partly"]
    assert "B$ = 2" in v[0].why and "4" in v[4].why
    no_gd = copy.deepcopy(m)
    no_gd["n_examples"] = 64
    assert sgd_stability._claims(cfg, no_gd)[1].verdict == "not reproduced"


# -- central-flow -----------------------------------------------------------------------------------


def _cf_metrics():
    runs = {}
    for lr in central_flow.QUICK.lrs:
        runs[f"{lr:g}"] = {"lr": lr, "threshold": 2 / lr, "first_crossing": 60, "phase_points": 25,
                           "median_rel_error_cf": 0.04, "median_rel_error_gf": 0.5,
                           "max_rel_error_cf": 0.1, "gf_over_cf_error": 12.5,
                           "distance_ratio_median": 3.0, "distance_ratio_end": 4.0,
                           "cf_sharpness_max_rel_dev": 0.01, "seconds_per_step": 0.1}
    rms = {"lr": 6e-4, "phase_points": 20, "median_rel_error_cf": 0.05, "cf_first_active": 40,
           "median_rel_error_gf": 0.3}
    return {"runs": runs, "rmsprop": rms}


def test_central_flow_claims_pass_and_fail():
    cfg, m = central_flow.QUICK, _cf_metrics()
    claims = central_flow._claims(cfg, m)
    _check_claims(claims)
    assert set(_verdicts(claims)) == {"reproduced"}
    bad = copy.deepcopy(m)
    first, second = (f"{lr:g}" for lr in cfg.lrs)
    bad["runs"][first].update(median_rel_error_cf=0.2, gf_over_cf_error=1.5, distance_ratio_median=0.8,
                              cf_sharpness_max_rel_dev=0.2)
    bad["runs"][second].update(phase_points=0, first_crossing=-1, median_rel_error_cf="nan",
                               median_rel_error_gf="nan", gf_over_cf_error="nan",
                               distance_ratio_median="nan", distance_ratio_end="nan",
                               cf_sharpness_max_rel_dev="nan")
    bad["rmsprop"].update(phase_points=0, cf_first_active=-1, median_rel_error_cf="nan")
    v = central_flow._claims(cfg, bad)
    _check_claims(v)
    assert set(_verdicts(v)) == {"not reproduced"}
    assert "no edge-of-stability phase" in v[0].why and "never reached the edge" in v[4].why
    assert v[0].measured[second]["median_rel_error"] == "no phase"
    half = copy.deepcopy(m)
    half["runs"][first]["median_rel_error_cf"] = 0.3
    assert central_flow._claims(cfg, half)[0].verdict == "partly"


# -- the figures of these experiments against the figure checklist (synthetic inputs) -------------


def _train_like(lr, n=60, every=5, flow=False):
    from types import SimpleNamespace

    steps = np.arange(0, n + 1, every)
    sharp = np.minimum(4.0 + 0.1 * steps, 2 / lr * (1.05 + 0.05 * np.sin(steps)))
    dist = np.where(steps > 0, 1e-2 * np.exp(0.05 * steps), 0.0) if flow else None
    return SimpleNamespace(steps=steps, sharpness=sharp, lr=lr, losses=np.exp(-np.arange(n) / 30.0),
                           flow_distance=dist, flow_sharpness=4.0 + 0.12 * steps if flow else None)


def _checklist(fig):
    """Labelled axes, mathtext instead of raw underscores/"lmax", legends off the axes' data area."""
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.get_ylabel(), ax
        texts = [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        leg = ax.get_legend()
        if leg is not None:
            texts += [t.get_text() for t in leg.get_texts()]
            assert not leg.get_window_extent().overlaps(ax.get_window_extent()), "legend over the axes"
        for t in texts:
            assert "lmax" not in t and "K tau" not in t
            assert "_" not in t or "$" in t, t
    assert any(ax.get_xlabel() for ax in fig.axes)


def test_training_figures_pass_the_checklist():
    import matplotlib.pyplot as plt

    from jaxdyn.plot import plot_flow_distance, plot_sharpness, plot_training_loss

    runs = {rf"$\eta$ = {lr:g}": _train_like(lr) for lr in (0.25, 0.4)}
    for fig in (plot_sharpness(runs), plot_training_loss(runs)):
        _checklist(fig)
        plt.close(fig)
    res = _train_like(0.4, flow=True)
    fig = plot_flow_distance(res)
    assert len(fig.axes) == 2  # one quantity per axis: distance and sharpness in two panels
    assert "distance" in fig.axes[0].get_ylabel() and "sharpness" in fig.axes[1].get_ylabel()
    _checklist(fig)
    plt.close(fig)
    with pytest.raises(ValueError, match="axes"):
        plot_flow_distance(res, axes=[None, None, None])
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="not both"):
        plot_flow_distance(res, axes=[ax, ax], ax=ax)
    assert plot_flow_distance(res, ax=ax) is fig and len(fig.axes) == 1  # one axes: distance only
    plt.close(fig)


def test_implicit_bias_figure_passes_the_checklist():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from jaxdyn.plot import plot_implicit_bias

    a = np.linspace(0.6, 1.6, 20)
    ends = {lr: SimpleNamespace(params=np.stack([a, 1 / a], 1), converged=np.ones(20, bool),
                                diverged=np.zeros(20, bool)) for lr in (0.5, 1.25)}
    fig = plot_implicit_bias(ends)
    _checklist(fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("no stable arc" in t for t in labels) and any("stable arc" in t for t in labels)
    plt.close(fig)
    ends[1.25].converged[:] = False
    fig = implicit_bias._curvature_figure(ends)
    _checklist(fig)
    plt.close(fig)


def test_sgd_figures_pass_the_checklist():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from jaxdyn.plot import plot_sgd_escape, plot_sgd_stability

    fr = np.array([0.1, 0.5, 1.2])
    exp = np.array([[-1e-3, 0.1, 0.3], [-1e-3, -5e-3, 0.2]])
    diag = SimpleNamespace(lrs=fr * 0.2, gd_boundary=0.2, exponent=exp, stderr=np.full(exp.shape, 1e-4),
                           batch_sizes=(1, 4), n_examples=4, gd_exponent=exp[1], rank=4,
                           disagree=np.array([[False, True, False], [False, False, False]]))
    fig = plot_sgd_stability(diag)
    _checklist(fig)
    plt.close(fig)
    logs = np.cumsum(np.full((2, 20), 0.1), axis=1)
    runs = {rf"$B$ = {b}": SimpleNamespace(log_ratio=s * logs, factor=10.0, returned_fraction=r,
                                           escaped_fraction=1 - r)
            for b, s, r in ((1, 1.0, 0.0), (4, -1.0, 1.0))}
    fig = plot_sgd_escape(runs)
    _checklist(fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sum("escaped: " in t for t in labels) == 1 and sum("returned: " in t for t in labels) == 1
    plt.close(fig)
