"""The one entry point of jaxdyn's peer benchmarks.

    python benchmarks/run.py --list
    python benchmarks/run.py NAME [--quick] [--repeats N] [--threads N] [--cases a,b] [--dtype D]
    python benchmarks/run.py all [--quick] [--dtype D] [--skip a,b] [--timeout S]
    python benchmarks/run.py table

Each benchmark is one module next to this file (its problem, sides and ablations; see
`_common.py` for what it defines); add a comparison by adding the module and one line to
`BENCHMARKS`. `_common.run_benchmark` runs it; this script adds provenance, prints the summary
and writes `benchmarks/results/<platform>/NAME.json`, where `<platform>` (`cpu`, `gpu`, `tpu`) is
JAX's default backend. `all` runs every benchmark on whatever device JAX sees, each in its own
process (a benchmark sets float64 and thread variables before JAX starts), goes on after a failing
one (exit status 1 at the end) and rewrites the results table of `benchmarks/README.md` (`table`
does only that).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# name -> (module next to this file, one-line description). Add new comparisons here.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "neural_ode": ("neural_ode", "MLP-field neural ODE training step vs torchdiffeq (Dopri5)"),
    "lyapunov": ("lyapunov", "Lorenz Lyapunov spectrum and rho sweep vs lyapax, jitcode_lyap, lyapynov"),
    "sgd": ("sgd", "SGD Lyapunov exponent at an interpolating minimum, p = 1e4: matrix-free vs dense H_xi"),
    "dde": ("dde", "Mackey-Glass DDE, batch, neural DDE step, Lyapunov vs jitcdde, ddeint, torchdde, lyapax"),
    "meanfield": ("meanfield", "Kuramoto N = 2000 (dense, all-to-all) vs kuramoto; FFT ring to N = 1e6"),
    "curvature": ("curvature", "top-1/top-10 Hessian eigenvalues at equal achieved error, tracking, "
                               "HVP/grad, SLQ density vs PyHessian, curvlinops, matfree"),
    "continuation": ("continuation",
                     "Ott-Antonsen graphon N = 2000 branch point vs pycont-lite; 100-D cycles"),
    "central_flow": ("central_flow", "central flow per step: native SDCP vs a host cvxpy reference"),
    "generative": ("generative", "CNF training step on moons (exact trace) vs FFJORD-style torchdiffeq; "
                                 "Hutchinson log-density of 1e5 points in d = 64"),
    "attention": ("attention", "self-attention n = 4096, d = 64: RK4 step vs torch; n = 65536 blocked"),
    "scale": ("scale", "weak scaling over devices and processes (sweep, particles); N = 1e7 FFT Kuramoto, "
                       "sparse N = 1e6, two-layer 1e6 neurons: time per step and bytes per particle"),
}

RESULTS_DIR = HERE / "results"
README = HERE / "README.md"
RUN_SCRIPT = Path(__file__).resolve()  # what `all` runs for each benchmark (a test may point it elsewhere)
TABLE_BEGIN, TABLE_END = "<!-- results:begin -->", "<!-- results:end -->"
PLATFORMS = ("cpu", "gpu", "tpu")  # table sections; cpu and gpu always shown, tpu once it has results
DTYPES = ("auto", "float32", "float64")


def _set_threads(threads: int) -> None:
    """Thread settings for both sides. Must run before JAX, NumPy or torch is imported.

    OpenBLAS runs at one thread unless told otherwise (`OPENBLAS_NUM_THREADS`): its busy-waiting
    threads made a 90 x 90 `eigh` (one per Lanczos step) 400x slower on a loaded 2-core machine,
    on both sides (measured by the `curvature` benchmark; recorded in the JSON's provenance)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        extra = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {extra}".strip()
    # torch.set_num_threads(threads) is called by each module when it builds the torch side.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?",
                        help="benchmark to run (see --list), `all` (every one, each in its own process) "
                             "or `table` (rewrite the README's results table from the JSONs)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true",
                        help="few repeats, no breakdown (a smoke test; numbers are noisier)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per side (default 20, or 5 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads for both sides (default: the CPU count). 1 also makes "
                             "XLA single-threaded; otherwise XLA uses its default pool.")
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of the benchmark's cases (default: all)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="JAX's float width: auto (each module's X64, see its X64_REASON), float32 "
                             "(e.g. on a GPU, where the science allows) or float64; recorded in the JSON")
    parser.add_argument("--results-dir", default=None,
                        help=f"results root; JSONs go to ROOT/<platform>/NAME.json (default {RESULTS_DIR})")
    parser.add_argument("--platform-dir", default=None,
                        help="folder name under the results root for this run's JSONs, instead of the "
                             "platform's (e.g. gpu-h200 beside gpu: the table shows it as its own section)")
    parser.add_argument("--output", default=None,
                        help="JSON path of a single benchmark (default ROOT/<platform>/NAME.json)")
    parser.add_argument("--readme", default=None,
                        help="file whose results section `table` and `all` rewrite (default "
                             "benchmarks/README.md, or ROOT/README.md with a --results-dir)")
    parser.add_argument("--skip", default=None, help="`all`: comma-separated benchmarks to leave out")
    parser.add_argument("--timeout", type=float, default=None,
                        help="`all`: seconds one benchmark may run before it is stopped (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    if args.list or not args.name:
        if not args.list:
            parser.print_usage(sys.stderr)
        for name, (_, desc) in BENCHMARKS.items():
            print(f"{name:16s} {desc}")
        return 0 if args.list else 2
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    root = Path(args.results_dir) if args.results_dir else RESULTS_DIR
    readme = Path(args.readme) if args.readme else (README if root == RESULTS_DIR else root / "README.md")
    if args.name == "table":
        path = write_table(root, readme)
        print(f"wrote the results table of {path} from {root}")
        return 0
    pdir = args.platform_dir
    if pdir is not None and (not pdir or Path(pdir).name != pdir or pdir in (".", "..")):
        parser.error(f"--platform-dir must be a plain folder name, got {args.platform_dir!r}")
    if args.name == "all":
        if args.output or args.cases:
            parser.error("`all` takes neither --output nor --cases")
        return run_all(args, root, readme)
    if args.name not in BENCHMARKS:
        print(f"unknown benchmark {args.name!r}; known: {', '.join(BENCHMARKS)}, all, table",
              file=sys.stderr)
        return 2
    return run_one(args, root)


# -- one benchmark -------------------------------------------------------------------------------


def run_one(args: argparse.Namespace, root: Path) -> int:
    """Run benchmark `args.name` in this process and write its JSON."""
    _set_threads(args.threads)
    from _common import (
        Options,
        device_info,
        fmt_ratio,
        fmt_s,
        loadavg,
        print_table,
        provenance,
        run_benchmark,
    )

    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    opts = Options(quick=args.quick, repeats=repeats, threads=args.threads,
                   cases=args.cases.split(",") if args.cases else None, dtype=args.dtype)
    module = importlib.import_module(BENCHMARKS[args.name][0])

    load_before = loadavg()
    dev = device_info()
    print(f"benchmark {args.name}: {module.DESCRIPTION}")
    print(f"device: {_device_line(dev)}")
    print(f"repeats {repeats}, threads {args.threads}, dtype {args.dtype}, load average {load_before}")
    result = run_benchmark(module, opts)
    prov = provenance(args.threads)
    prov["loadavg_before"] = load_before
    prov["loadavg_after"] = prov.pop("loadavg_1_5_15")
    out = {
        "benchmark": args.name,
        "description": result.pop("description", module.DESCRIPTION),
        "options": {"quick": args.quick, "repeats": repeats, "threads": args.threads,
                    "cases": opts.cases, "dtype": args.dtype, "command": " ".join(["python", *sys.argv])},
        "provenance": prov,
        **result,
    }

    print(f"\n== {args.name} summary ({_device_line(prov['device'])}, {prov['cpu_count']} CPUs, "
          f"threads {args.threads}, {result.get('dtype', {}).get('dtype', '?')}) ==")
    rows = []
    for case, rec in result["cases"].items():
        jd = rec.get("jaxdyn") or {}
        for side, s in (rec.get("speedup") or {}).items():
            peer = rec.get(side) or {}
            pr = (rec.get("speedup_paired") or {}).get(side)
            rows.append([
                case + (" *" if rec.get("headline") else ""),
                fmt_s(jd.get("compile_s")), fmt_s(jd.get("warm_median_s")),
                side, fmt_s(peer.get("compile_s")), fmt_s(peer.get("warm_median_s")),
                fmt_ratio(pr) if pr else ("-" if s is None else f"{s:.3g}x"),
            ])
    print_table(rows, ["case", "jaxdyn compile", "jaxdyn warm", "peer", "peer first-call extra",
                       "peer warm", "speedup: median of paired rounds [IQR]"])
    goal = result["goal"]
    print(f"goals (* = headline case): {goal['statement']}")
    for g in goal["goals"]:
        verdict = "not evaluated" if g["met"] is None else ("MET" if g["met"] else "NOT MET")
        shown = "-" if g["measured"] is None else f"{g['measured']:.3g}"
        if g.get("spread") and g["measured"] is not None:
            q1, q3 = g["spread"]["iqr"]
            shown += f" [{q1:.3g}, {q3:.3g}] (n={g['spread']['n']})"
        print(f"  {g['name']}: {shown} ({g['ratio']}; {'>=' if g['higher_is_better'] else '<='} "
              f"{g['threshold']:.3g}): {verdict}" + (f"; {g['note']}" if g.get("note") else ""))
    print(f"overall: {'not evaluated' if goal['met'] is None else 'MET' if goal['met'] else 'NOT MET'}")

    folder = args.platform_dir or prov["device"]["platform"]
    path = Path(args.output) if args.output else root / folder / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"device used: {_device_line(prov['device'])}")
    print(f"wrote {path}")
    return 0


def _device_line(dev: dict) -> str:
    return (f"{dev.get('platform')} ({dev.get('kind')} x {dev.get('count')}), jax {dev.get('jax_version')}, "
            f"jaxlib {dev.get('jaxlib_version')}")


# -- every benchmark -----------------------------------------------------------------------------


def probe_device(env: dict[str, str] | None = None) -> dict:
    """The device a benchmark process will see, from a short child process (this process never
    imports JAX: on a GPU its memory preallocation would starve the benchmarks)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from _common import device_info; "
            "print(json.dumps(device_info()))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True, text=True,
                              timeout=300, env=env)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as err:
        return {"platform": None, "error": f"{type(err).__name__}: {err}"}


def run_all(args: argparse.Namespace, root: Path, readme: Path) -> int:
    """Every benchmark of `BENCHMARKS` (less `--skip`), each in a child process of `RUN_SCRIPT`;
    a failure is reported and the others still run. Prints the device first and in the summary,
    rewrites the results table and returns 1 if any benchmark failed."""
    skip = set(args.skip.split(",")) if args.skip else set()
    unknown = skip - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s) in --skip: {sorted(unknown)}", file=sys.stderr)
        return 2
    names = [n for n in BENCHMARKS if n not in skip]
    dev = probe_device()
    print(f"run.py all: {len(names)} benchmarks ({', '.join(names)})")
    print(f"device: {_device_line(dev) if dev.get('platform') else dev.get('error')}", flush=True)
    flags = ["--threads", str(args.threads), "--dtype", args.dtype, "--results-dir", str(root)]
    if args.platform_dir:
        flags += ["--platform-dir", args.platform_dir]
    if args.quick:
        flags.append("--quick")
    if args.repeats is not None:
        flags += ["--repeats", str(args.repeats)]
    rows, failed, start = [], [], time.perf_counter()
    for name in names:
        print(f"\n######## {name} ########", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run([sys.executable, str(RUN_SCRIPT), name, *flags],
                                timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        wall = time.perf_counter() - t0
        path = root / str(args.platform_dir or dev.get("platform")) / f"{name}.json"
        status = "ok" if rc == 0 else (f"TIMEOUT after {args.timeout:g} s" if rc == "timeout"
                                       else f"FAILED (exit {rc})")
        if rc != 0:
            failed.append(name)
            print(f"[{name}] {status}; going on with the others", file=sys.stderr, flush=True)
        goal = _read_goal(path) if rc == 0 else None
        rows.append([name, status, f"{wall:.0f} s", _goal_cell(goal), str(path) if rc == 0 else "-"])
    from _common import print_table

    print(f"\n== run.py all: summary ({_device_line(dev) if dev.get('platform') else dev.get('error')}; "
          f"{time.perf_counter() - start:.0f} s in all) ==")
    print_table(rows, ["benchmark", "status", "wall", "headline goal", "JSON"])
    path = write_table(root, readme)
    print(f"wrote the results table of {path}")
    if failed:
        print(f"{len(failed)} of {len(names)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _read_goal(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()).get("goal")
    except (OSError, ValueError):
        return None


def _goal_cell(goal: dict | None) -> str:
    """`headline value (its verdict); all goals: verdict` of a JSON's `goal`."""
    if not goal:
        return "-"

    def verdict(met):
        return "not evaluated" if met is None else "MET" if met else "NOT MET"

    head = (goal.get("goals") or [{}])[0]
    shown = "-" if goal.get("speedup") is None else f"{goal['speedup']:.3g}"
    return f"{shown} ({verdict(head.get('met'))}); all goals: {verdict(goal.get('met'))}"


# -- the README table ----------------------------------------------------------------------------


def _measured_cell(g: dict) -> str:
    m = g.get("measured", g.get("value"))
    if m is None:
        return "-"
    sp = g.get("spread")
    if sp and sp.get("iqr"):
        return f"{m:.3g} [{sp['iqr'][0]:.3g}, {sp['iqr'][1]:.3g}]"
    return f"{m:.3g}"


def table_rows(data: dict, stem: str) -> list[list[str]]:
    """The table rows of one results JSON: one per goal."""
    prov = data.get("provenance") or {}
    dev = prov.get("device") or {"kind": prov.get("jax_device_kind"),
                                 "count": len(prov.get("jax_devices") or []) or None}
    device = f"{dev.get('kind')} x {dev.get('count')}" if dev.get("count") else str(dev.get("kind"))
    dtype = (data.get("dtype") or {}).get("dtype") or ("float64" if prov.get("jax_x64") else "float32")
    quick = (data.get("options") or {}).get("quick")
    date = (prov.get("date_utc") or "-")[:10] + (" (quick)" if quick else "")
    goal = data.get("goal") or {}
    bench = data.get("benchmark", stem)
    name = f"`{bench}`" + ("" if bench == stem else f" ({stem}.json)")
    goals = goal.get("goals")
    if not goals and goal.get("threshold") is not None:  # a JSON from before the Goal records
        goals = [{"name": "headline", "measured": goal.get("speedup"), "threshold": goal["threshold"],
                  "met": goal.get("met"), "higher_is_better": True}]
    if not goals:
        return [[name, str(goal.get("case", "-")), "-", "-", "-", device, dtype, date]]
    partial = bool((data.get("options") or {}).get("cases"))
    rows = []
    for g in goals:
        met = g.get("met")
        if partial and g.get("measured", g.get("value")) is None:
            continue  # a run of some cases only: the goals it did not evaluate
        lower = g.get("higher_is_better") is False or "<=" in g.get("statement", "")
        rows.append([name, str(goal.get("case", "-")), f"{g['name']} ({'<=' if lower else '>='} "
                     f"{g['threshold']:.3g})", _measured_cell(g),
                     "-" if met is None else ("yes" if met else "**no**"), device, dtype, date])
    return rows


def render_table(root: Path) -> str:
    """The results section: one table per platform (`cpu`, `gpu`; `tpu` and others when present)
    from `root/<platform>/*.json`."""
    header = ["benchmark", "headline case", "goal", "measured: median [IQR] of paired rounds",
              "met?", "device", "dtype", "date"]
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    folders = sorted({*present, "cpu", "gpu"}, key=lambda f: (  # cpu, cpu-*, gpu, gpu-*, tpu, others
        PLATFORMS.index(f.split("-")[0]) if f.split("-")[0] in PLATFORMS else len(PLATFORMS), f))
    platforms = [f for f in folders if f in ("cpu", "gpu") or f in present]
    lines = ["_Generated by `python benchmarks/run.py table` from `benchmarks/results/<platform>/*.json`; "
             "do not edit by hand. One row per goal; a measured value with `[q1, q3]` is the median of "
             "the per-round ratios of interleaved rounds (its IQR in brackets); one without is from a run "
             "before the paired ratios (a ratio of warm medians) or not a peer ratio. "
             "`(quick)`: a `--quick` run._", ""]
    for plat in platforms:
        lines.append(f"### {plat.upper()}")
        lines.append("")
        files = sorted((root / plat).glob("*.json")) if (root / plat).is_dir() else []
        if not files:
            lines += [f"no {plat.upper()} run yet", ""]
            continue
        rows = []
        for f in files:
            try:
                rows += table_rows(json.loads(f.read_text()), f.stem)
            except (OSError, ValueError, KeyError, TypeError) as err:
                rows.append([f"`{f.stem}`", "-", f"unreadable: {type(err).__name__}", *["-"] * 5])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_table(root: Path, readme: Path) -> Path:
    """Rewrite the section of `readme` between `TABLE_BEGIN` and `TABLE_END` (appended, under a
    `## Results by platform` heading, when the markers are missing; the file is created if need be)."""
    body = f"{TABLE_BEGIN}\n{render_table(root)}{TABLE_END}"
    text = readme.read_text() if readme.exists() else ""
    if TABLE_BEGIN in text and TABLE_END in text:
        head, rest = text.split(TABLE_BEGIN, 1)
        tail = rest.split(TABLE_END, 1)[1]
        text = head + body + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "") + "## Results by platform\n\n" + body + "\n"
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(text)
    return readme


if __name__ == "__main__":
    raise SystemExit(main())
