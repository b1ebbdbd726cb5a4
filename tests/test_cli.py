"""The `jaxdyn` command: `list`, argument errors, and the report of `reproduce` on fake experiments.

The real experiments are not run here (the CI runs `jaxdyn reproduce --quick` separately).
"""

import json
import math
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn
from jaxdyn._cli import main
from jaxdyn.experiments import EXPERIMENTS, Experiment, ExperimentResult, to_jsonable
from jaxdyn.models import CriticalPoints

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fake_run(*, quick, seed, progress):
    from jaxdyn.plot import plot_critical_points, plot_fit, plot_level_sets

    x = np.linspace(-1.0, 1.0, 21)
    fig1 = plot_fit(x, x**2, {"line": 0.5 + 0.0 * x}, data=(x[::4], x[::4] ** 2))
    bowl = lambda z: jnp.sum(z**2)
    cp = CriticalPoints(
        points=jnp.zeros((1, 2)), values=jnp.zeros(1), gradient_norms=jnp.zeros(1),
        hessian_eigenvalues=jnp.full((1, 2), 2.0), morse_indices=jnp.zeros(1, jnp.int32),
        degenerate=jnp.zeros(1, bool), n_starts=4, n_converged=4,
    )
    fig2 = plot_level_sets(bowl, -jnp.ones(2), jnp.ones(2), critical_points=cp, n=11)
    fig3 = plot_critical_points(cp, bowl, -jnp.ones(2), jnp.ones(2), n=11, levels=5)
    metrics = {
        "quick": quick,
        "seed": seed,
        "progress": progress,
        "dtype": str(jnp.zeros(()).dtype),
        "value": np.float32(0.25),
        "vector": np.arange(3),
        "nested": {"a": 1, "b": [1.5, jnp.asarray(2.5)]},
        "nan": math.nan,
    }
    return ExperimentResult("fake", "A fake experiment", "Some *markdown* summary.", metrics,
                            {"fit": fig1, "levels": fig2, "critical": fig3})


def _broken_run(*, quick, seed, progress):
    raise RuntimeError("this experiment is broken")


def _f32_run(*, quick, seed, progress):
    return ExperimentResult("f32", "float32 experiment", "s", {"dtype": str(jnp.zeros(()).dtype)})


@pytest.fixture
def fake_registry(monkeypatch):
    """Replace the registry by fake experiments (same dict object, so every importer sees it)."""
    for name, run in (("fake", _fake_run), ("broken", _broken_run), ("f32", _f32_run)):
        module = types.ModuleType(f"_jaxdyn_test_{name}")
        module.run = run
        monkeypatch.setitem(sys.modules, module.__name__, module)
    saved = dict(EXPERIMENTS)
    EXPERIMENTS.clear()
    EXPERIMENTS["fake"] = Experiment("fake", "_jaxdyn_test_fake", "A fake experiment.")
    EXPERIMENTS["broken"] = Experiment("broken", "_jaxdyn_test_broken", "Always raises.")
    EXPERIMENTS["f32"] = Experiment("f32", "_jaxdyn_test_f32", "Runs in float32.", x64=False)
    yield EXPERIMENTS
    EXPERIMENTS.clear()
    EXPERIMENTS.update(saved)


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == len(EXPERIMENTS)
    assert "embedding" in EXPERIMENTS
    for line, (name, exp) in zip(lines, EXPERIMENTS.items(), strict=True):
        assert line.startswith(name)
        assert exp.description in line
        assert "\n" not in exp.description


def test_console_entry_point(tmp_path):
    """The same `main` as a process: exit codes reach the shell."""
    cmd = [sys.executable, "-m", "jaxdyn._cli"]
    ok = subprocess.run([*cmd, "list"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "embedding" in ok.stdout.split()
    bad = subprocess.run([*cmd, "reproduce", "nope", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "unknown experiment(s): nope" in bad.stderr


def test_registry_entries_load():
    for exp in EXPERIMENTS.values():
        assert callable(exp.load())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["reproduce", "--seed", "abc"],
        ["reproduce", "--bogus"],
    ],
)
def test_argument_errors(argv, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_unknown_experiment(tmp_path, capsys):
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "embedding", "no-such-thing", "--out", str(out)])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert "no-such-thing" in msg
    assert "embedding" in msg  # the valid names are listed
    assert not out.exists()  # nothing ran


def test_reproduce_writes_report(fake_registry, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["reproduce", "fake", "--quick", "--out", str(out), "--no-progress",
                 "--seed", "7"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "[1/1] fake" in stdout
    assert str((out / "report.md").resolve()) in stdout

    for key in ("fit", "levels", "critical"):
        png = out / f"fake_{key}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC

    report = (out / "report.md").read_text()
    assert report.startswith("# jaxdyn reproduce report")
    assert f"jax {jax.__version__}" in report
    assert "## fake: A fake experiment" in report
    assert "Some *markdown* summary." in report
    assert "| `value` | 0.25 |" in report
    assert "| `nested.a` | 1 |" in report
    assert "| `vector` | [0, 1, 2] |" in report
    for key in ("fit", "levels", "critical"):
        assert f"(fake_{key}.png)" in report
        assert "![" in report

    data = json.loads((out / "results.json").read_text())
    prov = data["provenance"]
    for pkg in ("jaxdyn", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "python"):
        assert pkg in prov["versions"]
    assert prov["versions"]["jaxdyn"] == jaxdyn.__version__
    assert prov["quick"] is True
    assert prov["seed"] == 7
    assert prov["jax_backend"] == jax.default_backend()
    assert prov["jax_devices"]
    assert prov["total_wall_time_s"] >= 0
    assert "date_utc" in prov
    fake = data["experiments"]["fake"]
    assert fake["status"] == "ok"
    assert fake["wall_time_s"] >= 0
    assert fake["x64"] is True
    assert fake["figures"] == {k: f"fake_{k}.png" for k in ("fit", "levels", "critical")}
    assert fake["metrics"] == {
        "quick": True, "seed": 7, "progress": False, "dtype": "float64", "value": 0.25,
        "vector": [0, 1, 2], "nested": {"a": 1, "b": [1.5, 2.5]}, "nan": "nan",
    }


def test_failure_is_recorded_and_others_run(fake_registry, tmp_path, capsys):
    out = tmp_path / "rep"
    x64_before = jax.config.jax_enable_x64
    code = main(["reproduce", "--out", str(out), "--no-progress"])  # all: fake, broken, f32
    assert code == 1
    captured = capsys.readouterr()
    assert "broken" in captured.err and "this experiment is broken" in captured.err
    data = json.loads((out / "results.json").read_text())
    assert list(data["experiments"]) == ["fake", "broken", "f32"]
    assert data["experiments"]["fake"]["status"] == "ok"
    broken = data["experiments"]["broken"]
    assert broken["status"] == "error"
    assert broken["error"] == "RuntimeError: this experiment is broken"
    assert "Traceback" in broken["traceback"]
    assert data["experiments"]["f32"]["metrics"]["dtype"] == "float32"
    assert data["experiments"]["f32"]["x64"] is False
    assert data["provenance"]["quick"] is False
    report = (out / "report.md").read_text()
    assert "2/3 experiment(s) succeeded" in report
    assert "RuntimeError: this experiment is broken" in report
    assert jax.config.jax_enable_x64 == x64_before  # restored after the float32 experiment


def test_experiment_result_validation():
    with pytest.raises(ValueError, match="figures"):
        ExperimentResult("x", "t", "s", {}, {"bad name.png": object()})
    with pytest.raises(TypeError, match="Figure"):
        ExperimentResult("x", "t", "s", {}, {"fig": object()})
    with pytest.raises(TypeError, match=r"metrics\['obj'\]"):
        ExperimentResult("x", "t", "s", {"obj": object()})
    with pytest.raises(ValueError, match="name"):
        ExperimentResult("a/b", "t", "s")
    assert to_jsonable({"a": np.float64(math.inf), "b": (np.int32(1), np.bool_(True))}) == {
        "a": "inf", "b": [1, True]}
