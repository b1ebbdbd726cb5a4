"""The `jaxdyn` command: `jaxdyn list`, `jaxdyn reproduce [NAME ...]` and `jaxdyn --version`.

JAX is imported only once `reproduce` has checked its arguments: `--help`, `--version` and `list`
answer without it. `reproduce` prints the verdict table of the run (one line per experiment, each
claim that was not reproduced with its reason) and the report's path; progress bars go to stderr
(`--no-progress` turns them off); `--verbose` adds a line as each experiment starts and ends, and its
metrics.

Exit codes:

- `0`: every requested experiment succeeded.
- `1`: an experiment failed (its error is in the report and the others still ran), or writing
  the results failed after the probe of `--out` passed (a full disk).
- `2`: a usage error (unknown experiment or flag, an `--out` that cannot be written, an `--out` that
  holds earlier results without `--resume`/`--force`, a `--resume` that does not fit): one line on
  stderr after argparse's usage, said before any experiment runs (argparse's convention).
- `130` after SIGINT (Ctrl-C), `143` after SIGTERM: 128 + the signal number, the shell's convention,
  so that a script can tell an interruption from a usage error. Every experiment that had finished
  is kept (`results.json`, `report.md` and figures are written after each experiment, atomically);
  the same command with `--resume` finishes the run without recomputing them.
"""

import argparse
import contextlib
import difflib
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
import traceback

from . import __version__

DEFAULT_OUT = "jaxdyn-report"
MAX_SEED = 2**31

_RERUN_POLICY = """\
An --out that already holds results (results.json with finished experiments) is never overwritten
silently: the run stops with exit code 2 unless one of these is given:

  --resume  keep the stored experiments and run only the missing or failed ones. A stored
            experiment is reused only if its configuration equals this run's: --quick, --seed,
            float64 or float32, the JAX backend and device kinds, the versions of jaxdyn, jax,
            jaxlib, diffrax, equinox, optax, numpy and Python, and a SHA-256 of the jaxdyn
            sources; if any stored experiment differs, nothing runs (exit code 2) and the
            differences are named. The report is rebuilt from all experiments, stored and new.
  --force   discard the stored results and recompute (the old results.json is replaced when the
            first experiment finishes).

Interrupted runs (SIGINT, SIGTERM) keep what finished: exit code 130 (143 for SIGTERM); rerun
the same command with --resume.
"""


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (a `KeyboardInterrupt`, so that `except Exception` lets it by)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class _Signals:
    """Within `with _Signals() as sig:`, SIGINT and SIGTERM raise `_Interrupted`, except inside
    `with sig.critical():` (writing results), where they are held until the block ends.

    A signal that the parent process set to be ignored stays ignored; outside the main thread
    nothing is installed (Python only delivers signals there)."""

    def __init__(self):
        self._saved = {}
        self._depth = 0
        self._pending = None

    def _handler(self, signum, frame):
        if self._depth:
            self._pending = self._pending or signum
            return
        # Also held as pending: a handler's exception that lands in code which swallows it (a
        # finaliser, a callback run by a C extension prints "Exception ignored" and goes on) is
        # raised again when the running experiment's results are written, so the run still stops.
        self._pending = self._pending or signum
        raise _Interrupted(signum)

    def clear(self):
        """The interruption is being handled: forget the pending signal."""
        self._pending = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(signum)
                if previous is not signal.SIG_IGN:
                    self._saved[signum] = previous
                    signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._saved.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._saved.clear()
        return False

    @contextlib.contextmanager
    def critical(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise _Interrupted(signum)


def _seed(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"`--seed` must be an integer in [0, 2**31), got {text!r}")
    return value


def _out_dir(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"`--out` must name a directory, got {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxdyn",
        description="jaxdyn: neural networks as dynamical systems, in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"jaxdyn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("list", help="list the experiments with a one-line description")
    rep = sub.add_parser(
        "reproduce",
        help="run experiments and write a report",
        description="Run experiments (all of them when no NAME is given) and write DIR/report.md,\n"
                    "DIR/results.json and one PNG per figure, after each experiment.",
        epilog=_RERUN_POLICY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default: all)")
    rep.add_argument("--quick", action="store_true", help="small budgets (a CI smoke run)")
    rep.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", type=_out_dir,
                     help=f"output directory (default: ./{DEFAULT_OUT})")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.add_argument("--verbose", "-v", action="store_true",
                     help="also print each experiment's start, end and metrics (default: only the "
                          "verdict table and the report's path)")
    rep.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed (default: 0)")
    again = rep.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="reuse the experiments stored in DIR/results.json (same configuration "
                            "only) and run the rest")
    again.add_argument("--force", action="store_true",
                       help="discard the results stored in DIR and recompute")
    rep.set_defaults(usage_error=rep.error)  # usage errors found later show this command's usage
    return parser


def _list() -> int:
    from .experiments import EXPERIMENTS

    width = max((len(n) for n in EXPERIMENTS), default=0)
    for name, exp in EXPERIMENTS.items():
        print(f"{name:<{width}}  {exp.description}")
    return 0


def _print_metrics(metrics) -> None:
    from .experiments._report import format_metrics

    for key, value in format_metrics(metrics):
        print(f"    {key} = {value}", flush=True)


def _check_names(names: list[str], known, usage_error) -> list[str]:
    """The requested names without repeats (all of `known` if none); a usage error naming the
    unknown ones, with close matches, otherwise."""
    known = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        said = []
        for name in dict.fromkeys(unknown):
            normal = name.strip().lower().replace("_", "-")
            close = [k for k in known if k == normal] or difflib.get_close_matches(normal, known, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            said.append((name if name.strip() == name and name else repr(name)) + hint)
        usage_error(f"unknown experiment(s): {', '.join(said)}. Valid `NAME`s: "
                    f"{', '.join(known) or '(none)'}; `jaxdyn list` describes them.")
    return list(dict.fromkeys(names)) or known


def _check_out(out: pathlib.Path, usage_error) -> None:
    """Create `out` if needed and probe that it, `report.md` and `results.json` can be written."""
    if out.exists() and not out.is_dir():
        usage_error(f"`--out` {str(out)!r} is a file, not a directory; choose a directory "
                    "(it is created if missing).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        usage_error(f"`--out` {str(out)!r}: cannot create the directory ({err.strerror}).")
    for name in ("report.md", "results.json"):
        target = out / name
        if target.exists() and not target.is_file():
            kind = "a directory" if target.is_dir() else "not a regular file"
            usage_error(f"`--out` {str(out)!r}: {name} there is {kind}; remove it or choose another "
                        "`--out`.")
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".jaxdyn-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        usage_error(f"`--out` {str(out)!r} is not writable ({err.strerror}).")


def _stored_results(out: pathlib.Path, args, usage_error) -> dict:
    """The records of `out/results.json` that `--resume` keeps ({} without `--resume`); a usage
    error if the file holds results and neither `--resume` nor `--force` was given, or if
    `--resume` cannot read it."""
    from .experiments import read_results

    path = out / "results.json"
    if args.force or not path.exists():
        return {}
    try:
        _, records = read_results(path)
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) else str(err)
        flag = "`--resume`" if args.resume else "`--out`"
        usage_error(f"{flag}: cannot read {str(path)!r}: {why}. Use `--force` to overwrite it, or "
                    "choose another `--out`.")
    if records and not args.resume:
        names = ", ".join(records)
        usage_error(f"`--out` {str(out)!r} already holds results of {len(records)} experiment(s) "
                    f"({names}); pass `--resume` to keep them and run only what is missing, "
                    "`--force` to overwrite them, or choose another `--out`.")
    return records


def _flat(config, prefix=""):
    rows = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            rows.update(_flat(value, f"{prefix}{key}."))
        else:
            rows[f"{prefix}{key}"] = value
    return rows


def _check_configs(stored: dict, configs: dict, path: pathlib.Path, usage_error) -> None:
    """A usage error naming the differences if a stored record's configuration is not this run's."""
    differences: dict[str, list[str]] = {}
    for name, record in stored.items():
        if record.config is None:
            differences.setdefault("no configuration stored (an older jaxdyn)", []).append(name)
            continue
        old, new = _flat(record.config), _flat(configs[name])
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                if key == "jaxdyn_source_sha256":
                    what = "the jaxdyn sources changed"
                else:
                    what = f"{key}: {old.get(key)!r} stored, {new.get(key)!r} now"
                differences.setdefault(what, []).append(name)
    if differences:
        said = "; ".join(f"{what} ({', '.join(names)})" for what, names in differences.items())
        usage_error(f"`--resume`: {str(path)!r} was made with another configuration: {said}. "
                    "Rerun with the stored settings, use `--force` to recompute, or choose another "
                    "`--out`.")


def _reproduce(args, argv) -> int:
    from .experiments import EXPERIMENTS

    names = _check_names(args.names, EXPERIMENTS, args.usage_error)
    out = pathlib.Path(args.out)
    _check_out(out, args.usage_error)
    stored = _stored_results(out, args, args.usage_error)

    try:
        with _Signals() as sig:
            return _start(names, stored, args, out, argv, sig)
    except KeyboardInterrupt as err:  # before the first experiment started: nothing to keep
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"jaxdyn reproduce: interrupted by {signal.Signals(signum).name} before any "
              "experiment ran; nothing was written.", file=sys.stderr, flush=True)
        return 128 + int(signum)


def _start(names, stored, args, out: pathlib.Path, argv, sig: "_Signals") -> int:
    """Import JAX, check the configuration of stored results, and run."""
    import matplotlib

    from .experiments import EXPERIMENTS

    matplotlib.use("Agg")
    import jax

    from .experiments import experiment_config, provenance, source_fingerprint

    source = source_fingerprint()
    configs = {
        name: experiment_config(
            quick=args.quick, seed=args.seed, source=source,
            x64=EXPERIMENTS[name].x64 if name in EXPERIMENTS else stored[name].x64)
        for name in dict.fromkeys([*names, *stored])
    }
    _check_configs(stored, configs, out / "results.json", args.usage_error)
    if args.resume and not stored:
        print(f"jaxdyn reproduce: nothing to resume in {str(out)!r} (no stored results); running "
              "everything.", file=sys.stderr, flush=True)

    prov = provenance(quick=args.quick, seed=args.seed, argv=argv)
    if args.verbose:
        print(f"jaxdyn reproduce: {len(names)} experiment(s), {'quick' if args.quick else 'full'} "
              f"mode, seed {args.seed}, JAX on {prov['jax_backend']}", flush=True)
    x64_before = bool(jax.config.jax_enable_x64)
    try:
        return _run_all(names, stored, configs, prov=prov, args=args, out=out, sig=sig)
    except OSError as err:  # writing the results failed after the probe passed (disk full, ...)
        print(f"jaxdyn reproduce: cannot write the results to `--out` {str(out)!r}: "
              f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}. Experiments "
              "whose results were written before are kept.", file=sys.stderr, flush=True)
        return 1
    finally:
        jax.config.update("jax_enable_x64", x64_before)


def _run_all(names, stored, configs, *, prov, args, out: pathlib.Path, sig: _Signals) -> int:
    """Run `names` in order, writing the results after each; print the verdict table at the end
    (with `--verbose`, also a line as each experiment starts and ends, and its metrics)."""
    from .experiments import EXPERIMENTS, format_verdicts, save_figures, write_report

    def say(text: str) -> None:
        if args.verbose:
            print(text, flush=True)

    done: list = []  # this run's records, in the order of `names`
    reused: list[str] = []
    start = time.perf_counter()

    def records():  # this run's records, then the stored ones not (yet) replaced
        seen = {r.name for r in done}
        return done + [r for name, r in stored.items() if name not in seen]

    def write(extra=None):
        prov["total_wall_time_s"] = round(time.perf_counter() - start, 3)
        prov["reused"] = list(reused)
        prov.pop("interrupted", None)
        prov.update(extra or {})
        return write_report(out, records(), prov)

    current = "(starting)"
    try:
        for i, name in enumerate(names, 1):
            current = name
            tag = f"[{i}/{len(names)}] {name}"
            old = stored.get(name)
            if old is not None and old.ok:
                missing = [f for f in old.figures.values() if not (out / f).is_file()]
                if not missing:
                    say(f"{tag}: reused from results.json (finished {old.finished_utc}; same "
                        "configuration, not recomputed)")
                    done.append(old)
                    reused.append(name)
                    continue
                say(f"{tag}: stored result lacks figure(s) {', '.join(missing)}; recomputing")
            say(f"{tag}: running ...")
            record, result = _run_one(EXPERIMENTS[name], args, configs[name])
            with sig.critical():
                if record.ok:
                    try:
                        figures = save_figures(result, out)
                        record = _with(record, figures=figures)
                    except Exception as err:  # noqa: BLE001 - recorded like a failed run
                        record = _failed(record, err)
                    finally:
                        _close_figures()
                if record.ok:
                    say(f"{tag}: done in {record.wall_time_s:.1f} s")
                    if args.verbose:
                        _print_metrics(record.result.metrics)
                else:
                    print(f"{tag}: FAILED after {record.wall_time_s:.1f} s: {record.error}",
                          file=sys.stderr, flush=True)
                done.append(record)
                write()  # after each experiment: finished results survive an interruption
        current = "(writing the report)"
        with sig.critical():
            report, results = write()
    except KeyboardInterrupt as err:
        sig.clear()
        signum = getattr(err, "signum", signal.SIGINT)
        finished = [r.name for r in records() if r.ok]
        not_run = [n for n in names if n not in {r.name for r in done}]
        sig_name = signal.Signals(signum).name
        try:
            with sig.critical():
                if done or stored:
                    write({"interrupted": {"signal": sig_name, "during": current,
                                           "not_run": not_run}})
        except KeyboardInterrupt:
            pass  # a second signal while saving: held until the save was done; now we stop anyway
        kept = (f"kept {len(finished)} finished experiment(s) ({', '.join(finished)}) in "
                f"{str(out / 'results.json')!r} and report.md" if finished
                else "no experiment had finished")
        print(f"jaxdyn reproduce: interrupted by {sig_name} during {current}; {kept}; not run: "
              f"{', '.join(not_run) or '(none)'}. Rerun the same command with `--resume` to finish "
              "without recomputing what finished.", file=sys.stderr, flush=True)
        return 128 + int(signum)

    failed = [r.name for r in done if not r.ok]
    say(f"Total wall time {prov['total_wall_time_s']:.1f} s; results: {results.resolve()}")
    print(format_verdicts(records(), report_path=report.resolve()), flush=True)
    if failed:
        print(f"{len(failed)} experiment(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _with(record, **changes):
    import dataclasses

    return dataclasses.replace(record, **changes)


def _failed(record, err: BaseException):
    return _with(record, status="error", result=None, figures={},
                 error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())


def _close_figures() -> None:
    import matplotlib.pyplot as plt

    plt.close("all")


def _run_one(exp, args, config):
    """Run one registered experiment: (its record, its result); an exception becomes an error
    record. The figures are not saved here (see `_run_all`)."""
    import jax

    from .experiments import ExperimentRecord, ExperimentResult
    from .experiments._report import utc_now

    jax.config.update("jax_enable_x64", bool(exp.x64))
    record = ExperimentRecord(exp.name, exp.description, "error", 0.0, args.seed, exp.x64,
                              config=config)
    t0 = time.perf_counter()
    try:
        result = exp.load()(quick=args.quick, seed=args.seed, progress=not args.no_progress)
        wall = time.perf_counter() - t0
        if not isinstance(result, ExperimentResult):
            raise TypeError(f"`run` must return an ExperimentResult, got {type(result).__name__}.")
        if result.name != exp.name:
            raise ValueError(f"`run` returned a result named {result.name!r}, not {exp.name!r}.")
        return _with(record, title=result.title, status="ok", wall_time_s=wall, result=result,
                     finished_utc=utc_now()), result
    except Exception as err:  # noqa: BLE001 - recorded, reported, and the exit code says so
        _close_figures()
        return _with(_failed(record, err), wall_time_s=time.perf_counter() - t0,
                     finished_utc=utc_now()), None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jaxdyn` console script; returns the exit code.

    Usage errors exit with status 2 (argparse's convention) before any experiment runs, a failed
    experiment gives 1, an interruption 130 (SIGINT) or 143 (SIGTERM), after keeping every
    finished experiment.
    """
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    return _reproduce(args, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
