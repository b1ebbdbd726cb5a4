"""Hostile input for the `jaxdyn` command: every usage error exits with code 2 and one clear line on
stderr naming the argument, before any experiment runs (no row here runs an experiment: a row whose
check did not fire would run one and fail on its exit code)."""

import contextlib
import io
import json
import os
import pathlib

import pytest

from jaxdyn._cli import main
from tests.helpers import Hostile, hostile_ids, run_hostile

_DIR: dict[str, pathlib.Path] = {}


@pytest.fixture(autouse=True)
def _workdir(tmp_path):
    """Each row gets a fresh directory (`_tmp()`)."""
    _DIR["path"] = tmp_path
    yield
    _DIR.clear()


def _tmp() -> pathlib.Path:
    return _DIR["path"]


def _usage_error(argv):
    """Run `jaxdyn ARGV` in-process; it must exit with code 2, and what it said on stderr is raised
    as a `ValueError` for `run_hostile` to match."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    if code != 2:
        raise AssertionError(f"jaxdyn {argv}: exit code {code}, not 2; stderr: {err.getvalue()}")
    raise ValueError(err.getvalue())


def _reproduce(*extra, out=None):
    """`jaxdyn reproduce implicit-bias --quick --out OUT EXTRA...` (OUT: a fresh directory)."""
    out = _tmp() / "out" if out is None else out
    return _usage_error(["reproduce", "implicit-bias", "--quick", "--no-progress", "--out", str(out),
                         *extra])


def _with_file(name: str, text: str | None = None, *, directory: bool = False) -> pathlib.Path:
    """A fresh output directory holding `name` (a directory, or a file with `text`)."""
    out = _tmp() / "out"
    out.mkdir()
    if directory:
        (out / name).mkdir()
    else:
        (out / name).write_text(text or "", encoding="utf-8")
    return out


def _stored(config_change=None, *, config=True) -> pathlib.Path:
    """An output directory whose results.json holds a finished `implicit-bias` computed with this
    run's configuration, changed by `config_change`."""
    from jaxdyn.experiments import experiment_config

    cfg = experiment_config(quick=True, seed=0, x64=True)
    cfg.update(config_change or {})
    record = {"title": "t", "status": "ok", "wall_time_s": 1.0, "seed": 0, "x64": True, "summary": "s",
              "metrics": {"a": 1.0}, "figures": {}, "error": None, "traceback": None,
              "config": cfg if config else None, "finished_utc": "2026-01-01T00:00:00.000+00:00"}
    payload = {"provenance": {"quick": True}, "experiments": {"implicit-bias": record}}
    return _with_file("results.json", json.dumps(payload))


def _read_only_dir() -> pathlib.Path:
    """A directory in which no file can be created (root ignores permission bits: use /proc)."""
    if os.geteuid() == 0:
        return pathlib.Path("/proc/self")
    out = _tmp() / "ro"
    out.mkdir()
    out.chmod(0o555)
    return out


ROWS = [
    # names
    Hostile("reproduce: unknown name", lambda: _usage_error(["reproduce", "nope"]), ValueError,
            r"unknown experiment\(s\): nope"),
    Hostile("reproduce: misspelt name suggests the close one",
            lambda: _usage_error(["reproduce", "lyapunow"]), ValueError, r"did you mean lyapunov\?"),
    Hostile("reproduce: snake_case name suggests the registry's",
            lambda: _usage_error(["reproduce", "dde_memory"]), ValueError, r"did you mean dde-memory\?"),
    Hostile("reproduce: empty name", lambda: _usage_error(["reproduce", ""]), ValueError,
            r"unknown experiment\(s\): ''"),
    Hostile("reproduce: blank name", lambda: _usage_error(["reproduce", " "]), ValueError,
            r"unknown experiment\(s\): ' '"),
    Hostile("reproduce: one good name and one bad",
            lambda: _usage_error(["reproduce", "implicit-bias", "bogus", "--out", str(_tmp() / "o")]),
            ValueError, r"unknown experiment\(s\): bogus\..*`NAME`s: .*implicit-bias"),
    # flags
    Hostile("reproduce: unknown flag", lambda: _reproduce("--bogus"), ValueError, r"--bogus"),
    Hostile("reproduce: --seed not an int", lambda: _reproduce("--seed", "abc"), ValueError,
            r"`--seed` must be an integer.*'abc'"),
    Hostile("reproduce: --seed a float", lambda: _reproduce("--seed", "1.5"), ValueError, r"`--seed`"),
    Hostile("reproduce: --seed negative", lambda: _reproduce("--seed", "-1"), ValueError,
            r"`--seed` must be an integer"),
    Hostile("reproduce: --seed too large", lambda: _reproduce("--seed", str(2**31)), ValueError,
            r"`--seed` must be an integer in \[0, 2\*\*31\)"),
    Hostile("reproduce: --seed without a value",
            lambda: _usage_error(["reproduce", "implicit-bias", "--seed"]), ValueError, r"--seed"),
    Hostile("reproduce: --out without a value",
            lambda: _usage_error(["reproduce", "implicit-bias", "--out"]), ValueError, r"--out"),
    Hostile("reproduce: --resume with --force", lambda: _reproduce("--resume", "--force"), ValueError,
            r"--force.*not allowed with.*--resume"),
    Hostile("reproduce: --verbose given a value", lambda: _reproduce("--verbose=yes"), ValueError,
            r"--verbose/-v: ignored explicit argument 'yes'"),
    Hostile("jaxdyn: --version given a value", lambda: _usage_error(["--version=2"]), ValueError,
            r"--version: ignored explicit argument '2'"),
    Hostile("list: --version after the subcommand", lambda: _usage_error(["list", "--version"]), ValueError,
            r"unrecognized arguments: --version"),
    Hostile("jaxdyn: no subcommand", lambda: _usage_error([]), ValueError, r"COMMAND"),
    Hostile("jaxdyn: unknown subcommand", lambda: _usage_error(["frobnicate"]), ValueError, r"frobnicate"),
    Hostile("list: extra argument", lambda: _usage_error(["list", "lyapunov"]), ValueError,
            r"unrecognized arguments: lyapunov"),
    # --out
    Hostile("reproduce: --out empty", lambda: _reproduce(out=""), ValueError,
            r"`--out` must name a directory"),
    Hostile("reproduce: --out is a file",
            lambda: _reproduce(out=_with_file("f.txt") / "f.txt"), ValueError, r"`--out` .* is a file"),
    Hostile("reproduce: --out below a file (cannot be created)",
            lambda: _reproduce(out=_with_file("f.txt") / "f.txt" / "sub"), ValueError,
            r"`--out` .*cannot create the directory"),
    Hostile("reproduce: --out not writable", lambda: _reproduce(out=_read_only_dir()), ValueError,
            r"`--out` .*(is not writable|cannot create)"),
    Hostile("reproduce: report.md is a directory",
            lambda: _reproduce(out=_with_file("report.md", directory=True)), ValueError,
            r"`--out` .*report\.md there is a directory"),
    Hostile("reproduce: results.json is a directory",
            lambda: _reproduce(out=_with_file("results.json", directory=True)), ValueError,
            r"`--out` .*results\.json there is a directory"),
    # earlier results in --out
    Hostile("reproduce: rerun into an --out with results, no --resume/--force",
            lambda: _reproduce(out=_stored()), ValueError,
            r"`--out` .*already holds results of 1 experiment\(s\) \(implicit-bias\); pass `--resume`"),
    Hostile("reproduce: corrupt results.json without --resume",
            lambda: _reproduce(out=_with_file("results.json", '{"provenance": {}, "experim')), ValueError,
            r"`--out`: cannot read .*not valid JSON.*`--force`"),
    Hostile("reproduce: --resume with a corrupt results.json",
            lambda: _reproduce("--resume", out=_with_file("results.json", "{not json")), ValueError,
            r"`--resume`: cannot read .*not valid JSON"),
    Hostile("reproduce: --resume with a results.json of another shape",
            lambda: _reproduce("--resume", out=_with_file("results.json", "[1, 2]")), ValueError,
            r"`--resume`: cannot read .*no 'provenance' and 'experiments'"),
    Hostile("reproduce: --resume with a results.json of another configuration (quick)",
            lambda: _reproduce("--resume", out=_stored({"quick": False})), ValueError,
            r"`--resume`: .*another configuration: quick: False stored, True now \(implicit-bias\)"),
    Hostile("reproduce: --resume with a results.json of another configuration (seed)",
            lambda: _reproduce("--resume", "--seed", "3", out=_stored()), ValueError,
            r"`--resume`: .*another configuration: seed: 0 stored, 3 now"),
    Hostile("reproduce: --resume with results of other jaxdyn sources",
            lambda: _reproduce("--resume", out=_stored({"jaxdyn_source_sha256": "0" * 64})), ValueError,
            r"`--resume`: .*the jaxdyn sources changed"),
    Hostile("reproduce: --resume with results without a stored configuration",
            lambda: _reproduce("--resume", out=_stored(config=False)), ValueError,
            r"`--resume`: .*no configuration stored"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)


def test_nothing_is_written_on_a_usage_error(tmp_path):
    """A bad name is found before `--out` is created; refused reruns leave results.json as it was."""
    out = tmp_path / "never"
    with pytest.raises(ValueError):
        _usage_error(["reproduce", "implicit-bias", "bogus", "--out", str(out)])
    assert not out.exists()
    _DIR["path"] = tmp_path
    stored = _stored({"quick": False})
    before = (stored / "results.json").read_bytes()
    for extra in ((), ("--resume",)):
        with pytest.raises(ValueError):
            _reproduce(*extra, out=stored)
    assert (stored / "results.json").read_bytes() == before
    assert sorted(p.name for p in stored.iterdir()) == ["results.json"]  # no probe file left
