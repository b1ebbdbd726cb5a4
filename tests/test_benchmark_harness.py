"""The benchmark harness (`benchmarks/run.py`, `benchmarks/_common.py`): the list, the README table
from a results folder, `run.py all` over a fake registry of two tiny benchmarks (one failing), and
the paired per-round ratios of interleaved timings. No peer and no real benchmark runs."""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run():
    return _load("run")


@pytest.fixture(scope="module")
def common():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import _common

    return _common


def test_list_shows_every_benchmark_and_scale(run, capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "scale" in out and all(name in out for name in run.BENCHMARKS)


def test_bad_command_lines(run, capsys):
    assert run.main(["no_such_benchmark"]) == 2
    assert "unknown benchmark 'no_such_benchmark'" in capsys.readouterr().err
    assert run.main(["all", "--skip", "no_such_benchmark"]) == 2  # before any benchmark runs
    for argv in (["all", "--cases", "a"], ["sgd", "--threads", "0"], ["sgd", "--repeats", "0"],
                 ["sgd", "--dtype", "float16"], ["sgd", "--platform-dir", "../x"]):
        with pytest.raises(SystemExit) as info:
            run.main(argv)
        assert info.value.code == 2, argv


def test_every_module_states_its_dtype(run):
    for name, (module, _) in run.BENCHMARKS.items():
        if not (BENCH / f"{module}.py").exists():
            continue  # a benchmark being written elsewhere
        text = (BENCH / f"{module}.py").read_text()
        assert "\nX64 = " in text and "\nX64_REASON = " in text, name


def _fake_json(platform, name, measured, spread=None, met=True):
    goal = {"name": f"{name}_goal", "statement": "s", "ratio": "peer / jaxdyn", "threshold": 2.0,
            "measured": measured, "value": measured, "higher_is_better": True, "met": met}
    if spread:
        goal["spread"] = spread
    return {"benchmark": name, "options": {"quick": False, "cases": None},
            "dtype": {"dtype": "float32"},
            "provenance": {"date_utc": "2026-12-07T10:00:00+00:00",
                           "device": {"platform": platform, "count": 1,
                                      "kind": "Fake H100" if platform == "gpu" else "cpu"}},
            "goal": {"case": "head", "speedup": measured, "met": met, "goals": [goal]}}


def test_table_from_a_fake_results_dir(run, tmp_path):
    root = tmp_path / "results"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "alpha.json").write_text(json.dumps(_fake_json(
        "cpu", "alpha", 3.0, {"median": 3.0, "iqr": [2.5, 3.5], "min": 2.0, "max": 4.0, "n": 3})))
    (root / "cpu" / "beta.json").write_text(json.dumps(_fake_json("cpu", "beta", 1.5, met=False)))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{run.TABLE_BEGIN}\nold table\n{run.TABLE_END}\n\nafter\n")
    assert run.main(["table", "--results-dir", str(root), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.rstrip().endswith("after")
    assert "old table" not in text and text.count(run.TABLE_BEGIN) == 1
    section = text.split(run.TABLE_BEGIN)[1].split(run.TABLE_END)[0]
    assert "### CPU" in section and "### GPU" in section and "no GPU run yet" in section
    row = "| `alpha` | head | alpha_goal (>= 2) | 3 [2.5, 3.5] | yes | cpu x 1 | float32 | 2026-12-07 |"
    assert row in section
    assert "| `beta` | head | beta_goal (>= 2) | 1.5 | **no** |" in section
    # a GPU run appears in its own section
    (root / "gpu").mkdir()
    (root / "gpu" / "alpha.json").write_text(json.dumps(_fake_json("gpu", "alpha", 30.0)))
    run.write_table(root, readme)
    gpu = readme.read_text().split("### GPU")[1]
    assert "no GPU run yet" not in gpu and "Fake H100 x 1" in gpu


TINY_OK = '''
from _common import Goal, Side, noop, ratio_of, speedups, spread_of, time_sides

NAME, DESCRIPTION, PEER, PEERS, HEADLINE = "tiny_ok", "a tiny benchmark", "slow", {}, "one"
CASES, STATEMENT, PROBLEM = ("one",), "slow side >= 1x the fast one", {"n": 3}
X64, X64_REASON = False, "a test"


def case_one(ctx):
    sides = [Side("jaxdyn", lambda: sum(range(2000)), sync=noop),
             Side("slow", lambda: sum(range(20000)), sync=noop)]
    recs, _ = time_sides(sides, repeats=ctx.paired_rounds)
    return {**recs, **speedups(recs, ["slow"])}


def goals(cases):
    head = cases.get(HEADLINE)
    return [Goal("slow_vs_fast", STATEMENT, "slow / jaxdyn", 1.0, ratio_of(head, "slow"),
                 spread=spread_of(head, "slow"))]
'''

TINY_FAIL = '''
from _common import Goal

NAME, DESCRIPTION, PEER, PEERS, HEADLINE = "tiny_fail", "fails", "none", {}, "one"
CASES, STATEMENT, PROBLEM, X64, X64_REASON = ("one",), "-", {}, False, "a test"


def case_one(ctx):
    raise RuntimeError("tiny_fail fails on purpose")


def goals(cases):
    return [Goal("g", STATEMENT, "-", 1.0, None)]
'''


@pytest.fixture(scope="module")
def all_run(tmp_path_factory):
    """`run.py all --quick` over a registry of tiny_fail then tiny_ok (a driver script that
    swaps `BENCHMARKS` and points `RUN_SCRIPT` at itself, so the children see the same registry)."""
    tmp = tmp_path_factory.mktemp("bench_all")
    (tmp / "tiny_ok.py").write_text(TINY_OK)
    (tmp / "tiny_fail.py").write_text(TINY_FAIL)
    driver = tmp / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp)!r}, {str(BENCH)!r}]
        import run
        run.BENCHMARKS = {{"tiny_fail": ("tiny_fail", "fails"), "tiny_ok": ("tiny_ok", "tiny")}}
        run.RUN_SCRIPT = __file__
        sys.exit(run.main(sys.argv[1:]))
    """))
    root = tmp / "results"
    proc = subprocess.run([sys.executable, str(driver), "all", "--quick", "--threads", "1",
                           "--results-dir", str(root)], capture_output=True, text=True, timeout=300)
    return proc, root


@pytest.mark.slow  # three JAX processes (the device probe, two benchmarks): 15-40 s on 2 shared cores
def test_all_writes_per_platform_json_and_goes_on_after_a_failure(all_run):
    proc, root = all_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.index("device: cpu") < out.index("######## tiny_fail")  # the device, first
    assert "tiny_fail fails on purpose" in proc.stderr and "going on with the others" in proc.stderr
    assert "1 of 2 failed: tiny_fail" in proc.stderr
    summary = out.split("== run.py all: summary")[1]
    assert "cpu (cpu x 1)" in summary.splitlines()[0]
    assert "FAILED (exit 1)" in summary and "ok" in summary
    assert not (root / "cpu" / "tiny_fail.json").exists()
    data = json.loads((root / "cpu" / "tiny_ok.json").read_text())
    dev = data["provenance"]["device"]
    assert dev["platform"] == "cpu" and dev["count"] >= 1 and dev["jax_version"] and dev["jaxlib_version"]
    assert data["dtype"]["dtype"] == "float32" and data["options"]["quick"]
    case = data["cases"]["one"]
    pr = case["speedup_paired"]["slow"]
    assert pr["n"] == 2 and pr["interleaved"] and case["speedup"]["slow"] == pr["median"]
    assert data["goal"]["goals"][0]["spread"]["n"] == 2
    table = (root / "README.md").read_text()
    assert "`tiny_ok`" in table and "no GPU run yet" in table


def _fake_clock(common, monkeypatch):
    """A clock that only the sides advance: side `cost` x the load of the current round."""
    clock = {"t": 0.0, "calls": 0}
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(common, "REWARM_BELOW_S", 0.0)

    def side(cost):
        def call():
            clock["calls"] += 1
            load = 1 + ((clock["calls"] - 1) // 2) ** 2  # grows from one round (two calls) to the next
            clock["t"] += cost * load
            return cost
        return call

    return side


def test_paired_ratio_of_interleaved_timings(common, monkeypatch):
    side = _fake_clock(common, monkeypatch)
    sides = [common.Side("jaxdyn", side(1.0), sync=common.noop, warmup=False),
             common.Side("peer", side(10.0), sync=common.noop, warmup=False, max_repeats=3)]
    recs, _ = common.time_sides(sides, repeats=5)
    assert recs["jaxdyn"]["rounds"] == 5 and recs["peer"]["rounds"] == 3
    sp = common.speedups(recs, ["peer"])
    pr = sp["speedup_paired"]["peer"]
    assert pr["n"] == 3 and pr["interleaved"]
    # the load moves both sides of a round alike: every paired ratio is 10; the ratio of the
    # medians (peer: rounds 0-2 only, jaxdyn: 0-4, under a growing load) is not
    assert pr["ratios"] == pytest.approx([10.0] * 3) and sp["speedup"]["peer"] == pytest.approx(10.0)
    assert pr["min"] == pytest.approx(10.0) and pr["iqr"] == pytest.approx([10.0, 10.0])
    assert sp["speedup_of_medians"]["peer"] == pytest.approx(5.0)
    assert common.fmt_ratio(pr).endswith("(n=3)")


def test_paired_without_rounds_is_marked(common):
    once = common.summarise(4.0, [])
    many = common.summarise(2.0, [1.0, 1.0, 1.0])
    assert once["rounds"] == 0 and many["rounds"] == 3
    pr = common.paired(once, many)
    assert pr["interleaved"] is False and pr["median"] == 4.0 and pr["n"] == 1
    with pytest.raises(ValueError, match="share no round"):
        common.paired_ratio([], [1.0])


def test_goal_spread_and_dtype_record(common):
    g = common.Goal("g", "s", "r", 2.0, 3.0, spread={"median": 3.0, "iqr": [2, 4], "n": 3, "ratios": [1]})
    rec = g.to_json()
    assert rec["met"] and rec["spread"] == {"median": 3.0, "iqr": [2, 4], "n": 3}

    class M:
        X64, X64_REASON = True, "why"

    assert common.dtype_record(M) == {"dtype": "float64", "x64": True, "requested": "auto",
                                      "module_default": "float64", "module_reason": "why",
                                      "overridden": False}
    assert common.dtype_record(M, "float32")["overridden"]
    with pytest.raises(ValueError, match="dtype"):
        common.dtype_record(M, "float16")
    assert common.Options(quick=True).paired_rounds == 2 and common.Options().paired_rounds == 3
    assert common.platform_name("cuda") == "gpu" and common.platform_name("tpu") == "tpu"
