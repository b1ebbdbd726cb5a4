"""The one entry point of jaxdyn's peer benchmarks.

    python benchmarks/run.py --list
    python benchmarks/run.py NAME [--quick] [--repeats N] [--threads N] [--cases a,b]

Each benchmark is one module next to this file (its problem, sides and ablations; see
`_common.py` for what it defines); add a comparison by adding the module and one line to
`BENCHMARKS`. `_common.run_benchmark` runs it; this script adds provenance, prints the summary
and writes `benchmarks/results/NAME.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
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
    "scale": ("scale", "weak scaling over devices and processes (sweep, particles); N = 1e7 FFT Kuramoto, "
                       "sparse N = 1e6, two-layer 1e6 neurons: time per step and bytes per particle"),
}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="benchmark to run (see --list)")
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
    parser.add_argument("--output", default=None,
                        help="JSON path (default benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)

    if args.list or not args.name:
        if not args.list:
            parser.print_usage(sys.stderr)
        for name, (_, desc) in BENCHMARKS.items():
            print(f"{name:16s} {desc}")
        return 0 if args.list else 2
    if args.name not in BENCHMARKS:
        print(f"unknown benchmark {args.name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    _set_threads(args.threads)
    from _common import RESULTS_DIR, Options, fmt_s, loadavg, print_table, provenance, run_benchmark

    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    opts = Options(quick=args.quick, repeats=repeats, threads=args.threads,
                   cases=args.cases.split(",") if args.cases else None)
    module = importlib.import_module(BENCHMARKS[args.name][0])

    load_before = loadavg()
    print(f"benchmark {args.name}: {module.DESCRIPTION}")
    print(f"repeats {repeats}, threads {args.threads}, load average {load_before}")
    result = run_benchmark(module, opts)
    prov = provenance(args.threads)
    prov["loadavg_before"] = load_before
    prov["loadavg_after"] = prov.pop("loadavg_1_5_15")
    out = {
        "benchmark": args.name,
        "description": result.pop("description", module.DESCRIPTION),
        "options": {"quick": args.quick, "repeats": repeats, "threads": args.threads,
                    "cases": opts.cases, "command": " ".join(["python", *sys.argv])},
        "provenance": prov,
        **result,
    }

    print(f"\n== {args.name} summary ({prov['jax_backend']}: {prov['jax_device_kind']}, "
          f"{prov['cpu_count']} CPUs, threads {args.threads}) ==")
    rows = []
    for case, rec in result["cases"].items():
        jd = rec.get("jaxdyn") or {}
        for side, s in (rec.get("speedup") or {}).items():
            peer = rec.get(side) or {}
            rows.append([
                case + (" *" if rec.get("headline") else ""),
                fmt_s(jd.get("compile_s")), fmt_s(jd.get("warm_median_s")),
                side, fmt_s(peer.get("compile_s")), fmt_s(peer.get("warm_median_s")),
                "-" if s is None else f"{s:.2f}x",
            ])
    print_table(rows, ["case", "jaxdyn compile", "jaxdyn warm", "peer", "peer first-call extra",
                       "peer warm", "speedup"])
    goal = result["goal"]
    print(f"goals (* = headline case): {goal['statement']}")
    for g in goal["goals"]:
        verdict = "not evaluated" if g["met"] is None else ("MET" if g["met"] else "NOT MET")
        shown = "-" if g["measured"] is None else f"{g['measured']:.3g}"
        print(f"  {g['name']}: {shown} ({g['ratio']}; {'>=' if g['higher_is_better'] else '<='} "
              f"{g['threshold']:.3g}): {verdict}" + (f"; {g['note']}" if g.get("note") else ""))
    print(f"overall: {'not evaluated' if goal['met'] is None else 'MET' if goal['met'] else 'NOT MET'}")

    path = Path(args.output) if args.output else RESULTS_DIR / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
