"""The `jaxdyn` command: `jaxdyn list` and `jaxdyn reproduce [NAME ...]`."""

import argparse
import pathlib
import sys
import time
import traceback

DEFAULT_OUT = "jaxdyn-report"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxdyn",
        description="jaxdyn: neural networks as dynamical systems, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("list", help="list the experiments with a one-line description")
    rep = sub.add_parser(
        "reproduce",
        help="run experiments and write a report",
        description="Run experiments (all of them when no NAME is given) and write DIR/report.md, "
                    "DIR/results.json and one PNG per figure.",
    )
    rep.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default: all)")
    rep.add_argument("--quick", action="store_true", help="small budgets (a CI smoke run)")
    rep.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                     help=f"output directory (default: ./{DEFAULT_OUT})")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
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


def _reproduce(args, parser: argparse.ArgumentParser, argv) -> int:
    from .experiments import EXPERIMENTS

    unknown = [n for n in args.names if n not in EXPERIMENTS]
    if unknown:
        parser.error(
            f"unknown experiment(s): {', '.join(unknown)}. Valid names: "
            f"{', '.join(EXPERIMENTS) or '(none)'}."
        )
    names = list(dict.fromkeys(args.names)) or list(EXPERIMENTS)
    out = pathlib.Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"cannot create output directory {str(out)!r}: {err}")

    import matplotlib

    matplotlib.use("Agg")
    import jax

    from .experiments import ExperimentRecord, provenance, write_report

    prov = provenance(quick=args.quick, seed=args.seed, argv=argv)
    print(f"jaxdyn reproduce: {len(names)} experiment(s), {'quick' if args.quick else 'full'} "
          f"mode, seed {args.seed}, JAX on {prov['jax_backend']}", flush=True)
    records: list[ExperimentRecord] = []
    x64_before = bool(jax.config.jax_enable_x64)
    start = time.perf_counter()
    try:
        for i, name in enumerate(names, 1):
            tag = f"[{i}/{len(names)}] {name}"
            print(f"{tag}: running ...", flush=True)
            record = _run_one(EXPERIMENTS[name], args, out)
            if record.ok:
                print(f"{tag}: done in {record.wall_time_s:.1f} s", flush=True)
                _print_metrics(record.result.metrics)
            else:
                print(f"{tag}: FAILED after {record.wall_time_s:.1f} s: {record.error}",
                      file=sys.stderr, flush=True)
            records.append(record)
            prov["total_wall_time_s"] = round(time.perf_counter() - start, 3)
            write_report(out, records, prov)  # after each experiment: partial results survive
    finally:
        jax.config.update("jax_enable_x64", x64_before)
    prov["total_wall_time_s"] = round(time.perf_counter() - start, 3)
    report, results = write_report(out, records, prov)

    failed = [r.name for r in records if not r.ok]
    print(f"Total wall time {prov['total_wall_time_s']:.1f} s. Report: {report.resolve()}  "
          f"(results: {results.resolve()})", flush=True)
    if failed:
        print(f"{len(failed)} experiment(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run_one(exp, args, out: pathlib.Path):
    """Run one registered experiment and save its figures; an exception becomes an error record."""
    import jax
    import matplotlib.pyplot as plt

    from .experiments import ExperimentRecord, ExperimentResult, save_figures

    jax.config.update("jax_enable_x64", bool(exp.x64))
    t0 = time.perf_counter()
    try:
        result = exp.load()(quick=args.quick, seed=args.seed, progress=not args.no_progress)
        wall = time.perf_counter() - t0
        if not isinstance(result, ExperimentResult):
            raise TypeError(f"`run` must return an ExperimentResult, got {type(result).__name__}.")
        if result.name != exp.name:
            raise ValueError(f"`run` returned a result named {result.name!r}, not {exp.name!r}.")
        figures = save_figures(result, out)
        return ExperimentRecord(exp.name, result.title, "ok", wall, args.seed, exp.x64,
                                result=result, figures=figures)
    except Exception as err:  # noqa: BLE001 - recorded, reported, and the exit code says so
        return ExperimentRecord(exp.name, exp.description, "error", time.perf_counter() - t0,
                                args.seed, exp.x64, error=f"{type(err).__name__}: {err}",
                                traceback=traceback.format_exc())
    finally:
        plt.close("all")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jaxdyn` console script; returns the exit code.

    Argument errors exit with status 2 (argparse's convention), a failed experiment with 1.
    """
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    return _reproduce(args, parser, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
