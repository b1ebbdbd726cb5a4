"""The attention benchmark (`benchmarks/attention.py`): its module contract, its goals before any
run, the torch peer computing the same RK4 steps as jaxdyn (small n), and the n = 65536 worker's
record (run at a small n)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_attention", BENCH / "attention.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_module_contract(bench):
    for name in ("NAME", "DESCRIPTION", "PEER", "PEERS", "HEADLINE", "CASES", "STATEMENT", "PROBLEM", "X64",
                 "X64_REASON"):
        assert hasattr(bench, name)
    assert bench.HEADLINE in bench.CASES and bench.PEER in bench.PEERS
    assert all(callable(getattr(bench, f"case_{c}")) for c in bench.CASES)
    goals = bench.goals({})
    assert [g.threshold for g in goals] == [3.0, 4.0]
    assert all(g.measured is None and g.met is None for g in goals)
    quick = {"n65536": {"n": bench.N_LARGE_QUICK, "jaxdyn": {"max_rss_gib": 1.0}}}
    assert bench.goals(quick)[1].measured is None  # the memory goal is the n = 65536 run's only
    sys.path.insert(0, str(BENCH))
    import run

    assert run.BENCHMARKS["attention"][0] == "attention"


def test_peer_computes_the_same_steps(bench):
    pytest.importorskip("torch")
    ours = np.asarray(bench.jax_side(64, 2)())
    theirs = bench.torch_side(64, 2, "float64")["run"]().numpy()
    assert np.max(np.abs(ours - theirs)) <= 1e-12
    assert np.max(np.abs(np.linalg.norm(ours, axis=-1) - 1.0)) <= 1e-5  # still near the sphere


def test_large_case_worker_record(bench, monkeypatch):
    from _common import Context, Options

    monkeypatch.setattr(bench, "N_LARGE_QUICK", 640)  # above the dense limit: the blocked kernel
    rec = bench.case_n65536(Context(Options(quick=True), {}))
    j = rec["jaxdyn"]
    assert rec["n"] == 640 and j["finite"] and j["per_step_s"] > 0
    assert 0 < j["rss_after_imports_gib"] <= j["max_rss_gib"] < 8
    assert "n = 640" in bench.describe("n65536", rec)[0]
