"""`benchmarks/scale.py` (`python benchmarks/run.py scale`): the module contract, the weak-scaling
arithmetic on fake timings, the goals, and the worker on tiny problems in fresh processes (an FFT
Kuramoto at N = 2^14 and a 2-device sharded particle system). No large run here."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scale():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_module_contract(scale):
    for attr in ("NAME", "DESCRIPTION", "PEER", "PEERS", "HEADLINE", "CASES", "STATEMENT", "PROBLEM", "X64",
                 "X64_REASON"):
        assert hasattr(scale, attr), attr
    assert scale.NAME == "scale" and scale.HEADLINE in scale.CASES and scale.PEERS == {}
    for case in scale.CASES:
        assert callable(getattr(scale, f"case_{case}"))
    assert set(scale.CASES) == {"weak_sweep", "weak_particles", "fft_1e7", "sparse_1e6", "two_layer_1e6"}
    # --quick shrinks every task; the full FFT case is the N = 1e7
    assert scale.FULL["fft"]["n"] == 10_000_000 and scale.QUICK["fft"]["n"] < scale.FULL["fft"]["n"]
    for task in scale.FULL:
        size = "n" if "n" in scale.FULL[task] else "per_device"
        assert scale.QUICK[task][size] <= scale.FULL[task][size]
    assert [(d, p) for _, d, p in scale.GRID] == [(1, 1), (2, 1), (4, 1), (1, 2)]


def test_weak_efficiency_from_fake_timings(scale):
    times = {"1 device": 2.0, "2 devices": 2.5, "4 devices": 8.0, "2 processes": None}
    workers = {"1 device": 1, "2 devices": 2, "4 devices": 4, "2 processes": 2}
    w = scale.weak_efficiency(times, workers)
    assert w["1 device"]["efficiency"] == 1.0 and w["1 device"]["throughput_speedup"] == 1.0
    assert w["2 devices"]["efficiency"] == pytest.approx(0.8)
    assert w["2 devices"]["throughput_speedup"] == pytest.approx(1.6)
    assert w["4 devices"]["efficiency"] == pytest.approx(0.25)
    assert w["4 devices"]["throughput_speedup"] == pytest.approx(1.0)
    assert w["2 processes"]["efficiency"] is None  # a failed configuration
    assert "cpu_work_efficiency" not in w["1 device"]
    w = scale.weak_efficiency(times, workers, cpu={"1 device": 1.0, "2 devices": 2.5, "4 devices": 4.0,
                                                   "2 processes": None})
    assert w["1 device"]["cpu_work_efficiency"] == 1.0
    assert w["2 devices"]["cpu_work_efficiency"] == pytest.approx(0.8)  # 25% more CPU for twice the work
    assert w["4 devices"]["cpu_work_efficiency"] == pytest.approx(1.0)
    assert w["2 processes"]["cpu_work_efficiency"] is None
    assert scale.weak_efficiency({}, {}) == {}
    # a failed baseline leaves every efficiency unknown, never a division by None
    assert all(v["efficiency"] is None for v in scale.weak_efficiency({"a": None, "b": 1.0},
                                                                     {"a": 1, "b": 2}).values())


def test_parse_result_and_env(scale):
    out = "noise\n[0] SCALE_RESULT {\"a\": 1}\n[1] other\nSCALE_RESULT {\"a\": 2, \"b\": [1]}\n"
    assert scale.parse_result(out) == {"a": 2, "b": [1]}
    assert scale.parse_result("nothing here") is None
    env = scale.worker_env(4, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo"}, cpu=True)
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=4"
    assert env["JAX_PLATFORMS"] == "cpu"
    assert "XLA_FLAGS" not in scale.worker_env(1, {})


def _fft_record(step_s, bpp, finite=True):
    return {"status": "ok", "per_step_s": step_s, "bytes_per_particle": bpp, "all_finite": finite}


def test_goals(scale):
    g = scale.goals({})
    assert [x.name for x in g] == ["fft_step_s", "fft_bytes_per_particle"]
    assert all(x.measured is None and x.met is None for x in g)
    g = scale.goals({"fft_1e7": {"float64": _fft_record(2.5, 300.0), "quick": False}})
    assert [x.met for x in g] == [True, True] and g[0].threshold == 3.0 and g[1].threshold == 400.0
    rec = dict(_fft_record(2.5, 300.0), steps=5, repeats_s=[12.0, 12.5, 14.0], warm_min_s=12.0)
    g = scale.goals({"fft_1e7": {"float64": rec, "quick": False}})
    assert g[0].spread["iqr"] == [pytest.approx(2.45), pytest.approx(2.65)] and g[0].spread["n"] == 3
    assert "fastest repeat 2.4 s" in g[0].note
    g = scale.goals({"fft_1e7": {"float64": _fft_record(3.5, 450.0), "quick": False}})
    assert [x.met for x in g] == [False, False]
    g = scale.goals({"fft_1e7": {"float64": _fft_record(1.0, 100.0, finite=False), "quick": False}})
    assert g[0].met is False  # a non-finite trajectory does not meet the time goal
    g = scale.goals({"fft_1e7": {"float64": _fft_record(1.0, 100.0), "quick": True}})
    assert all(x.measured is None for x in g) and "quick" in g[0].note  # N = 1e6 is not the goal's N


@pytest.fixture(scope="module")
def tiny_fft(scale):
    return scale.run_worker({"task": "fft", "n": 2 ** 14, "steps": 2, "repeats": 1}, timeout=240)


def test_worker_fft_tiny(scale, tiny_fft):
    r = tiny_fft
    assert r["status"] == "ok", r.get("reason")
    assert r["n"] == 2 ** 14 and r["steps"] == 2 and r["n_repeats"] == 1 and r["all_finite"]
    assert r["operator"] == "Circulant" and r["x64"] and r["dtype"] == "float64" and r["platform"]
    assert r["per_step_s"] > 0 and r["first_call_s"] >= r["warm_median_s"] > 0
    assert r["rss_baseline"] > 0 and r["peak_rss"] >= r["rss_baseline"] and r["ru_maxrss"] > 0
    assert r["peak_rss"] == max(r["peak_rss_build"], r["peak_rss_run"])
    assert r["bytes_per_particle"] == pytest.approx(r["peak_rss"] / r["n"])
    assert r["warm_median_cpu_s_per_process"] == [r["warm_median_cpu_s"]]
    lines = scale.describe("fft_1e7", {"float64": r})
    assert len(lines) == 1 and "per RK4 step" in lines[0] and "B/particle" in lines[0]
    figs = scale.figures({"fft_1e7": {"float64": r}})
    assert figs["fft_1e7.float64.per_step_s"] == r["per_step_s"]


def test_worker_particles_two_devices(scale):
    r = scale.run_worker({"task": "particles", "per_device": 256, "steps": 2, "repeats": 1}, devices=2,
                         timeout=240, cpu=True)
    assert r["status"] == "ok", r.get("reason")
    assert r["devices"] == 2 and r["processes"] == 1 and r["n"] == 512 and r["operator"] == "LowRank"
    assert r["all_finite"] and r["warm_median_s"] > 0


def test_worker_failure_is_a_record(scale):
    r = scale.run_worker({"task": "no_such_task"}, timeout=60)
    assert r["status"] == "failed" and "exit code 2" in r["reason"]


def test_worker_omega_fallback():
    """Where `gaussian_quantiles` is not finite (float32 at N = 1e7), the worker uses host float64
    quantiles, mirrored so that no probability rounds to 1."""
    import jax.numpy as jnp
    import numpy as np
    from scipy.special import ndtri

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import _scale_worker as worker

    import jaxdyn.meanfield as mf

    omega, note = worker._omega(mf, 1001)
    assert note is None and np.allclose(np.asarray(omega), np.asarray(mf.gaussian_quantiles(1001)))

    class Broken:
        @staticmethod
        def gaussian_quantiles(n):
            return jnp.full(n, jnp.inf)

    omega, note = worker._omega(Broken, 1001)
    ref = ndtri((np.arange(1001) + 0.5) / 1001)
    assert "not finite" in note and np.allclose(np.asarray(omega), ref, rtol=1e-12, atol=1e-12)
