"""`benchmarks/generative.py`: the goal record (main lane, no solve), the data and the two sides
computing the same thing on a small problem: same solver steps, same log-density and gradient
(slow lane: it builds torch and compiles the training step)."""

import copy
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
    spec = importlib.util.spec_from_file_location("bench_generative", BENCH / "generative.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_goal_record(bench):
    assert bench.HEADLINE in bench.CASES and set(bench.PROBLEM) == set(bench.CASES)
    rec = {"speedup": {"torchdiffeq": 2.5}, "speedup_paired": {"torchdiffeq": {"median": 2.5}},
           "agreement": {"same_steps": True}}
    (goal,) = bench.goals({bench.HEADLINE: rec})
    assert goal.met and goal.threshold == 2.0
    rec["agreement"]["same_steps"] = False  # a faster side that took other steps does not count
    (goal,) = bench.goals({bench.HEADLINE: rec})
    assert goal.met is False
    (goal,) = bench.goals({})
    assert goal.met is None


@pytest.mark.parametrize("case", ["train_step", "hutchinson_d64"])
def test_both_sides_take_the_same_steps_and_agree(bench, case, monkeypatch):
    pytest.importorskip("torchdiffeq")
    import jax

    problem = copy.deepcopy(bench.PROBLEM)
    problem["train_step"]["batch"] = 64
    problem["hutchinson_d64"].update(n=200, d=8, mlp_width=16)
    monkeypatch.setattr(bench, "PROBLEM", problem)
    x = bench.moons(512, 0)
    assert x.shape == (512, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-5)
    with jax.enable_x64(False):  # float32, as the benchmark runs
        js = bench.jax_side(case)
        ts = bench.torch_side(js, case)
        agreement = bench._agreement(js, ts, case)
    assert agreement["same_steps"], agreement
    assert agreement["steps_jaxdyn"]["accepted"] >= 2
    np.testing.assert_allclose(agreement["mean_log_prob_jaxdyn"], agreement["mean_log_prob_torch"], rtol=1e-4)
    if case == "train_step":
        assert agreement["grad_rel_l2_diff"] < 1e-3
