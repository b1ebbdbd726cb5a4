"""The `central-flow` experiment: its smoothing and metric definitions against hand computations,
the registration, the report text, and a smoke run of `run` on a tiny configuration (float32, as
the registry runs it). The full quick run is `jaxdyn reproduce central-flow --quick` (CI)."""

import dataclasses
import inspect

import jax
import numpy as np
import pytest

import jaxdyn.training as jt
from jaxdyn.experiments import EXPERIMENTS, central_flow as ex


def test_registered_float32_with_keyword_only_run():
    exp = EXPERIMENTS["central-flow"]
    assert exp.module == "jaxdyn.experiments.central_flow" and exp.x64 is False
    params = inspect.signature(exp.load()).parameters
    assert list(params) == ["quick", "seed", "progress"]
    assert [p.kind for p in params.values()] == [inspect.Parameter.KEYWORD_ONLY] * 3
    assert ex.FULL.n == 1000 and ex.FULL.width == 200 and ex.FULL.depth == 2  # the setting
    assert len(ex.QUICK.lrs) == len(ex.FULL.lrs) == 2


def test_smoothing_removes_a_period_two_oscillation_exactly():
    t = np.arange(41.0)
    trend = 1.0 + 0.01 * t + 1e-4 * t**2
    smoothed = ex.smooth_loss(trend + 0.3 * (-1.0) ** t, 10)
    inner = slice(5, 36)
    # the trapezoid average of a quadratic over [t - 5, t + 5]: trend + c2 (h^2 / 3 + 1/6) exactly
    np.testing.assert_allclose(smoothed[inner], trend[inner] + 1e-4 * (25 / 3 + 1 / 6), rtol=1e-13)
    assert np.isnan(smoothed[:5]).all() and np.isnan(smoothed[36:]).all()
    assert np.isnan(ex.smooth_loss(np.ones(8), 10)).all()  # shorter than the window: nothing
    assert ex.smooth_loss is jt.smooth_loss  # one smoothing: the plot's and the experiment's
    for bad in (3, 0, 2.0, True):
        with pytest.raises(ValueError, match="window"):
            ex.smooth_loss(trend, bad)


def test_phase_and_metrics_by_hand():
    ts = np.arange(0, 101, 10)
    phase = ex.eos_phase(ts, 40, 100, 10)
    assert ts[phase].tolist() == [40, 50, 60, 70, 80, 90]
    assert not ex.eos_phase(ts, -1, 100, 10).any()
    smoothed = np.full(101, 2.0)
    predicted = np.full(ts.shape, 2.0)
    predicted[ts >= 40] = [2.2, 1.9, 2.0, 2.1, 1.8, 2.0, 0.0]  # last point outside the phase
    flow = np.full(ts.shape, 1.0)
    m = ex.loss_metrics(ts, smoothed, predicted, flow, phase)
    assert m["phase_points"] == 6
    np.testing.assert_allclose(m["median_rel_error_cf"], 0.05)  # of 0.1, 0.05, 0, 0.05, 0.1, 0
    np.testing.assert_allclose([m["median_rel_error_gf"], m["max_rel_error_cf"]], [0.5, 0.1])
    np.testing.assert_allclose(m["gf_over_cf_error"], 10.0)
    d = ex.distance_metrics(np.full(ts.shape, 0.5), np.linspace(0.0, 10.0, ts.size), phase)
    np.testing.assert_allclose(d["distance_ratio_median"], 13.0)  # median of 4..9 over 0.5
    np.testing.assert_allclose([d["distance_ratio_end"], d["gd_to_cf_end"]], [18.0, 0.5])
    empty = ex.loss_metrics(ts, smoothed, predicted, flow, np.zeros(ts.shape, bool))
    assert empty["phase_points"] == 0 and np.isnan(empty["median_rel_error_cf"])


TINY = dataclasses.replace(ex.QUICK, lrs=(0.8, 0.6), steps=(40, 40), every=5, n=64, width=8,
                           k=1, dt=1.0, lanczos_steps=8, window=4, rms_steps=40, rms_lr=1e-4)


@pytest.fixture(scope="module")
def tiny_run():
    saved = ex.QUICK
    ex.QUICK = TINY
    jax.config.update("jax_enable_x64", False)
    try:
        yield ex.run(quick=True, seed=0, progress=False)
    finally:
        jax.config.update("jax_enable_x64", True)
        ex.QUICK = saved


def test_smoke_run_tiny(tiny_run):
    res = tiny_run
    assert res.name == "central-flow"
    assert set(res.metrics["runs"]) == {"0.8", "0.6"}
    for r in res.metrics["runs"].values():
        for key in ("median_rel_error_cf", "median_rel_error_gf", "distance_ratio_median",
                    "first_crossing", "seconds_per_step", "claims"):
            assert key in r
        assert r["n_steps"] == 40
    assert "median_rel_error_cf" in res.metrics["rmsprop"]
    assert res.metrics["dtype"] == "float32"
    assert set(res.figures) == {"eta_0_8", "eta_0_6", "rmsprop"}
    for name in ("Criterion", "Setup", "RMSProp"):
        assert name in res.summary
    assert "nan" not in res.summary and "**Question" not in res.summary
    assert res.question == ex.QUESTION and "Cohen, Damian" in res.claims[0].source
    assert len(res.claims) == 5 and all(c.measured not in (None, "") for c in res.claims)
    import matplotlib.pyplot as plt

    for fig in res.figures.values():
        for ax in fig.axes:
            assert ax.get_xlabel() or ax.get_ylabel()
        plt.close(fig)
