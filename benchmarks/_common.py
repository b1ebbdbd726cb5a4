"""The peer-benchmark harness: one timer, one run loop, one `Goal` record.

A benchmark module (`benchmarks/NAME.py`) holds only its problem, its sides and its ablations:

- `NAME`, `DESCRIPTION`, `PEER` (the headline peer), `HEADLINE` (the case that decides the
  headline goal), `STATEMENT` (the goals in one sentence), `PROBLEM` (every setting, for the JSON),
  `X64` (whether JAX runs in float64 by default) and `X64_REASON` (one line: why float64 is needed,
  or why float32 is enough); `run.py --dtype float32|float64` overrides `X64`;
- `PEERS = {"name": Peer(modules=[...], distributions=[...])}`: what each peer needs importable;
- `CASES = ("a", "b", ...)` and one function `case_a(ctx) -> dict` per case, which builds its
  `Side`s, times them with `time_sides` and returns the case's record (`speedup` included);
- `goals(cases) -> list[Goal]`; optionally `setup(ctx)`, `describe(case, rec) -> list[str]`
  (extra lines printed under the case's table) and `extra(ctx) -> dict` (more JSON fields).

`run_benchmark` (called by `run.py`) checks the peers (a peer that cannot be imported is
*skipped*, with the reason, never a crash), runs the chosen cases, prints each case and the goals
and returns the JSON record. Nothing here imports JAX or torch at module level: `run.py` must be
able to set thread environment variables before either is imported.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata as _md
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
PEERS_REQUIREMENTS = "benchmarks/requirements-peers.txt"
INSTALL_HINT = f"pip install -r {PEERS_REQUIREMENTS}"

VERSIONED = ("jaxdyn", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "torch",
             "torchdiffeq")


@dataclass
class Options:
    """What `run.py` passes to the run loop."""

    quick: bool = False
    repeats: int = 20
    threads: int = 1
    cases: list[str] | None = None  # None: every case the module defines
    dtype: str = "auto"  # "auto" (the module's X64), "float32" or "float64"

    @property
    def paired_rounds(self) -> int:
        """The fewest interleaved rounds a peer side runs with jaxdyn's (`MIN_PAIRED_ROUNDS`)."""
        return MIN_PAIRED_ROUNDS[self.quick]


# a slow peer still runs this many interleaved rounds with jaxdyn's sides (default, --quick); where
# that is too slow, the module shortens the peer's problem (`Side.scale`) and says so
MIN_PAIRED_ROUNDS = {False: 3, True: 2}


# -- peers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A peer library: the modules a side needs importable, the distributions whose versions go
    into the JSON."""

    modules: tuple[str, ...]
    distributions: tuple[str, ...] = ()


def peer_status(name: str, peer: Peer) -> dict[str, Any]:
    """`{"status": "ok", "versions": ...}`, or `{"status": "skipped", "reason": ...}` (printed)
    when a module cannot be imported (not installed, or broken on import) or the peer is named in
    the environment variable `JAXDYN_BENCH_SKIP` (comma-separated: time the jaxdyn sides only)."""
    if name in os.environ.get("JAXDYN_BENCH_SKIP", "").split(","):
        return {"status": "skipped", "reason": "named in JAXDYN_BENCH_SKIP"}
    missing, reasons = [], []
    for module in peer.modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any import failure skips the peer
            missing.append(module)
            reasons.append(f"{module}: {type(err).__name__}: {err}")
    if not missing:
        return {"status": "ok", "versions": versions(peer.distributions or peer.modules)}
    print(f"\n[{name}] skipped (cannot import {', '.join(missing)}).\n"
          f"  The jaxdyn side is still timed; to time the peer as well run\n"
          f"      {INSTALL_HINT}\n  in this environment and rerun.\n", file=sys.stderr)
    return {"status": "skipped", "reason": "; ".join(reasons), "missing_modules": missing,
            "install": INSTALL_HINT}


@dataclass
class Context:
    """What a case function gets: the options, each peer's status, state shared by the cases."""

    opts: Options
    peers: dict[str, dict[str, Any]]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.opts.quick

    @property
    def paired_rounds(self) -> int:
        return self.opts.paired_rounds

    def ok(self, peer: str) -> bool:
        return self.peers[peer]["status"] == "ok"


# -- the one timer -------------------------------------------------------------------------------


def block(x):
    """Wait for JAX's asynchronous dispatch (the default `Side.sync`)."""
    import jax

    return jax.block_until_ready(x)


def noop(x):
    """`Side.sync` for synchronous sides (NumPy, C, torch on the CPU)."""
    return x


@dataclass
class Side:
    """One timed side of a comparison.

    `call()` runs the whole computation once and returns its output; with `build`, `build()`
    makes what `call(built)` runs (a jitted function, a compiled C object) and its time is
    recorded as `build_s` (part of the first call). `sync(output)` blocks until the work is done.
    `before()` runs untimed before every call (e.g. to restore weights). `fresh_builds` > 1 times
    the first call on that many fresh builds (median). `scale(measured_s, output)` turns a
    shortened run's time into the full problem's (the record then says `scaled` and keeps the
    measured times under `measured`). `max_repeats` caps this side's repeats (0: the first call
    is the only run, and it is the warm time). `info` is copied into the record.
    """

    name: str
    call: Callable[..., Any]
    build: Callable[[], Any] | None = None
    sync: Callable[[Any], Any] = block
    before: Callable[[], Any] | None = None
    fresh_builds: int = 1
    warmup: bool = True
    scale: Callable[[float, Any], float] | None = None
    max_repeats: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def summarise(first: float, times: list[float]) -> dict[str, Any]:
    """Timing record: first call, warm median, IQR, all repeats; compile = first - warm median.
    With no repeats the first call is the warm time (compile 0) and `rounds` is 0: nothing to pair
    with another side's rounds."""
    rounds = len(times)
    times = times or [first]
    med = statistics.median(times)
    q1, q3 = _quartiles(times)
    return {"first_call_s": first, "compile_s": first - med, "warm_median_s": med,
            "warm_iqr_s": [q1, q3], "warm_min_s": min(times), "warm_max_s": max(times),
            "n_repeats": len(times), "rounds": rounds, "repeats_s": times}


def paired_ratio(slow: list[float], fast: list[float]) -> dict[str, Any]:
    """Per-round ratios `slow[r] / fast[r]` of two interleaved timings (over the rounds both
    ran): median, IQR `[q1, q3]`, min, max, n. A load change between rounds cancels in each ratio.
    Raises `ValueError` when the two share no round."""
    m = min(len(slow), len(fast))
    if m == 0:
        raise ValueError("paired_ratio: `slow` and `fast` share no round")
    ratios = [a / b for a, b in zip(slow[:m], fast[:m], strict=True)]
    q1, q3 = _quartiles(ratios)
    return {"median": statistics.median(ratios), "iqr": [q1, q3], "min": min(ratios),
            "max": max(ratios), "n": len(ratios), "ratios": ratios}


def paired(slow: dict[str, Any], fast: dict[str, Any]) -> dict[str, Any]:
    """`paired_ratio` of two `time_sides` records (over the interleaved rounds both ran). A record
    without rounds (a side that ran once, `max_repeats=0`) gives its one time over the other's
    median, marked `"interleaved": False`."""
    rs, rf = slow.get("rounds", len(slow["repeats_s"])), fast.get("rounds", len(fast["repeats_s"]))
    if rs and rf:
        out = paired_ratio(slow["repeats_s"][:rs], fast["repeats_s"][:rf])
        out["interleaved"] = True
        return out
    r = slow["warm_median_s"] / fast["warm_median_s"]
    return {"median": r, "iqr": [r, r], "min": r, "max": r, "n": 1, "ratios": [r], "interleaved": False}


def fmt_ratio(p: dict[str, Any] | float | None, digits: int = 3) -> str:
    """`median [q1, q3]` of a `paired_ratio` record (or a plain number)."""
    if p is None:
        return "-"
    if not isinstance(p, dict):
        return f"{p:.{digits}g}x"
    q1, q3 = p["iqr"]
    return f"{p['median']:.{digits}g}x [{q1:.{digits}g}, {q3:.{digits}g}] (n={p['n']})"


REWARM_BELOW_S = 0.05  # see `time_sides`


def time_sides(sides: list[Side], *, repeats: int, budget_s: float | None = None,
               min_repeats: int = 1) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Time `sides` with interleaved repeats; return `(records, outputs)` by side name.

    Each side: its first call(s) timed alone (compilation, lazy initialisation, builds), then one
    untimed warm-up call (unless `warmup=False`). Then rounds, each timing every side once in a
    rotating order, so that a load drift hits all sides alike. A side runs `repeats` rounds, or
    with `budget_s` `min(repeats, max(min_repeats, budget_s / one run))`, at most `max_repeats`.
    The warm time is the median of the repeats; `compile_s` = first call - warm median.

    A side whose one run takes less than `REWARM_BELOW_S` gets one untimed call right before each
    timed one (peers and jaxdyn alike): a call of a few milliseconds that follows another side's
    work otherwise pays for waking its thread pool and refilling its caches, which the
    back-to-back repeats of a real workload (a training loop, a batch) never do; the rounds still
    interleave the sides, so a load drift still hits all of them alike.
    """
    runs, outputs, first, build_s, scaled_first, est = {}, {}, {}, {}, {}, {}
    for s in sides:
        first[s.name], build_s[s.name] = [], []
        for _ in range(s.fresh_builds):
            if s.before:
                s.before()
            t0 = time.perf_counter()
            built = s.build() if s.build else None
            t1 = time.perf_counter()
            run = (lambda s=s, b=built: s.call(b)) if s.build else s.call
            out = s.sync(run())
            t2 = time.perf_counter()
            first[s.name].append(t2 - t0)
            build_s[s.name].append(t1 - t0)
            if s.scale is not None:
                scaled_first[s.name] = (t1 - t0) + s.scale(t2 - t1, out)
            runs[s.name], outputs[s.name], est[s.name] = run, out, t2 - t1
        if s.warmup and s.max_repeats != 0:
            if s.before:
                s.before()
            t0 = time.perf_counter()
            s.sync(runs[s.name]())
            est[s.name] = time.perf_counter() - t0
        print(f"  {s.name}: first call {fmt_s(statistics.median(first[s.name]))}, one run "
              f"{fmt_s(est[s.name])}", flush=True)
    reps = {}
    for s in sides:
        n = repeats if budget_s is None else min(repeats, max(min_repeats,
                                                              int(budget_s / max(est[s.name], 1e-9))))
        reps[s.name] = n if s.max_repeats is None else min(n, s.max_repeats)
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    scaled: dict[str, list[float]] = {s.name: [] for s in sides}
    for r in range(max(reps.values(), default=0)):
        for s in sides[r % len(sides):] + sides[: r % len(sides)]:
            if r >= reps[s.name]:
                continue
            if est[s.name] < REWARM_BELOW_S:
                if s.before:
                    s.before()
                s.sync(runs[s.name]())
            if s.before:
                s.before()
            t0 = time.perf_counter()
            out = s.sync(runs[s.name]())
            dt = time.perf_counter() - t0
            times[s.name].append(dt)
            if s.scale is not None:
                scaled[s.name].append(s.scale(dt, out))
    records = {}
    for s in sides:
        f = statistics.median(first[s.name])
        if s.scale is None:
            rec = summarise(f, times[s.name])
        else:
            rec = summarise(scaled_first[s.name], scaled[s.name])
            rec["scaled"] = True
            rec["measured"] = summarise(f, times[s.name])
        if s.fresh_builds > 1:
            rec["first_calls_s"] = first[s.name]
        if s.build is not None:
            rec["build_s"] = statistics.median(build_s[s.name])
        if budget_s is not None:
            rec["repeats_capped_by_budget"] = reps[s.name] < repeats
        rec.update(s.info)
        records[s.name] = rec
    return records, outputs


def speedups(recs: dict[str, dict[str, Any]], peers, base: str = "jaxdyn") -> dict[str, Any]:
    """For every peer of `peers` that has a record: `speedup[peer]`, the median of the per-round
    ratios peer / base over the interleaved rounds both ran (the headline figure);
    `speedup_paired[peer]`, that `paired` record (median, IQR, min, max, n); and
    `speedup_of_medians[peer]`, peer warm median / base warm median (the figure before the paired
    ratios)."""
    out: dict[str, Any] = {"speedup": {}, "speedup_paired": {}, "speedup_of_medians": {}}
    for p in peers:
        if p in recs:
            pr = paired(recs[p], recs[base])
            out["speedup"][p] = pr["median"]
            out["speedup_paired"][p] = pr
            out["speedup_of_medians"][p] = recs[p]["warm_median_s"] / recs[base]["warm_median_s"]
    return out


def probe_threads(side: Side, set_threads: Callable[[int], Any], threads: int,
                  repeats: int) -> tuple[int, dict[str, dict[str, Any]]]:
    """Time a torch side alone at 1 thread and at `threads`; set and return the faster count.

    On a small or shared CPU torch's intra-op threads can make it much slower, and a goal must
    not profit from that. Run alone (not interleaved): busy-waiting OpenMP threads of a
    multi-threaded torch call would slow whatever runs next."""
    probe = {}
    for n in sorted({1, threads}):
        before = side.before

        def set_and_reset(n=n, before=before):
            set_threads(n)
            if before:
                before()

        s = Side(side.name, side.call, sync=side.sync, before=set_and_reset)
        probe[n] = time_sides([s], repeats=repeats)[0][side.name]
    best = min(probe, key=lambda n: probe[n]["warm_median_s"])
    set_threads(best)
    return best, {str(n): r for n, r in probe.items()}


# -- goals ---------------------------------------------------------------------------------------


@dataclass
class Goal:
    """One goal: `measured` is the ratio `ratio` defines (None: not evaluated, e.g. the peer was
    skipped); `met` compares it with `threshold` (>= when `higher_is_better`, else <=) and needs
    `condition` (a side condition such as an accuracy target) too."""

    name: str
    statement: str
    ratio: str
    threshold: float
    measured: float | None
    higher_is_better: bool = True
    note: str | None = None
    condition: bool = True
    spread: dict[str, Any] | None = None  # the `paired` record `measured` is the median of
    met: bool | None = field(init=False)

    def __post_init__(self):
        m, t = self.measured, self.threshold
        self.met = None if m is None else bool((m >= t if self.higher_is_better else m <= t)
                                               and self.condition)

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "statement": self.statement, "ratio": self.ratio,
               "threshold": self.threshold, "measured": self.measured, "value": self.measured,
               "higher_is_better": self.higher_is_better, "met": self.met}
        if self.spread:
            out["spread"] = {k: v for k, v in self.spread.items() if k != "ratios"}
        if self.note:
            out["note"] = self.note
        return out


def ratio_of(rec: dict[str, Any] | None, side: str, key: str = "speedup") -> float | None:
    """`rec[key][side]`, or None when the case was not run or the side was skipped."""
    return None if not rec else (rec.get(key) or {}).get(side)


def spread_of(rec: dict[str, Any] | None, side: str, key: str = "speedup_paired") -> dict[str, Any] | None:
    """`rec[key][side]` (a `paired` record: the spread of a paired speedup), or None."""
    return None if not rec else (rec.get(key) or {}).get(side)


def goal_record(module, goals: list[Goal]) -> dict[str, Any]:
    """The JSON `goal`: the headline goal's fields (`speedup`, `threshold`, `metric`) as before,
    `met` over every evaluated goal, and `goals` (one record each)."""
    head = goals[0]
    evaluated = [g.met for g in goals if g.met is not None]
    out = {"statement": module.STATEMENT, "metric": head.ratio, "case": module.HEADLINE,
           "peer": module.PEER, "threshold": head.threshold, "speedup": head.measured,
           "met": None if not evaluated else all(evaluated), "goals": [g.to_json() for g in goals],
           "all_evaluated": len(evaluated) == len(goals)}
    if head.measured is None:
        out["note"] = f"headline case {module.HEADLINE!r} not run or {module.PEER} skipped"
    return out


# -- the one run loop ----------------------------------------------------------------------------


DTYPES = ("auto", "float32", "float64")


def dtype_record(module, dtype: str = "auto") -> dict[str, Any]:
    """The JSON's `dtype`: what JAX runs in (`dtype`, `x64`), what was asked (`requested`: auto =
    the module's `X64`), the module's default and its reason (`X64_REASON`)."""
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES}, got {dtype!r}")
    x64 = bool(module.X64) if dtype == "auto" else dtype == "float64"
    return {"dtype": "float64" if x64 else "float32", "x64": x64, "requested": dtype,
            "module_default": "float64" if module.X64 else "float32",
            "module_reason": getattr(module, "X64_REASON", None),
            "overridden": x64 != bool(module.X64)}


def select_cases(opts: Options, cases: tuple[str, ...], name: str) -> list[str]:
    """The cases a run asked for (`--cases a,b`, default all), rejecting unknown names."""
    chosen = list(opts.cases or cases)
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown} for {name}; choose from {list(cases)}")
    return chosen


def print_case(rec: dict[str, Any]) -> None:
    """Every side of a case with a warm time: compile, warm median, repeats, ratio to jaxdyn."""
    sides = [k for k, r in rec.items() if isinstance(r, dict) and r.get("warm_median_s") is not None]
    sides.sort(key=lambda k: k != "jaxdyn")
    rows = []
    for k in sides:
        r, sp = rec[k], (rec.get("speedup") or {}).get(k)
        pr = (rec.get("speedup_paired") or {}).get(k)
        rows.append([k + (" (scaled)" if r.get("scaled") else ""),
                     fmt_s(r.get("compile_s")),
                     fmt_s(r["warm_median_s"]), str(r.get("n_repeats", "-")),
                     fmt_ratio(pr) if pr else ("-" if sp is None else f"{sp:.3g}x")])
    for k, r in rec.items():
        if isinstance(r, dict) and r.get("status") not in (None, "ok"):
            rows.append([k, r["status"], "-", "-", r.get("reason", r.get("why", ""))[:60]])
    if rows:
        print_table(rows, ["side", "compile / first-call extra", "warm median", "n",
                           "peer/jaxdyn: median of paired rounds [IQR]"])


def run_benchmark(module, opts: Options) -> dict[str, Any]:
    """Peer status, the chosen cases (each printed), the goals: the module's JSON record."""
    cases = select_cases(opts, module.CASES, module.NAME)
    dtype = dtype_record(module, opts.dtype)
    if dtype["x64"] != module.X64:
        print(f"note: --dtype {opts.dtype} overrides {module.NAME}'s default "
              f"({'float64' if module.X64 else 'float32'}: {dtype['module_reason']})", flush=True)
    import jax

    jax.config.update("jax_enable_x64", dtype["x64"])
    ctx = Context(opts, {name: peer_status(name, p) for name, p in module.PEERS.items()})
    if hasattr(module, "setup"):
        module.setup(ctx)
    results: dict[str, Any] = {"description": module.DESCRIPTION, "problem": module.PROBLEM,
                               "dtype": dtype, "peer": ctx.peers, "cases": {}}
    for case in cases:
        print(f"\n== case {case!r} ==", flush=True)
        rec = getattr(module, f"case_{case}")(ctx)
        rec.setdefault("headline", case == module.HEADLINE)
        results["cases"][case] = rec
        print_case(rec)
        for line in module.describe(case, rec) if hasattr(module, "describe") else ():
            print("  " + line)
    goals = module.goals(results["cases"])
    results["goal"] = goal_record(module, goals)
    if hasattr(module, "extra"):
        results.update(module.extra(ctx))
    return results


# -- provenance ----------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def versions(dists) -> dict[str, str | None]:
    """Installed versions of `dists` (`None` where a distribution is missing)."""
    return {d: _version(d) for d in dists}


def _git_commit() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":(top)jaxdyn"], cwd=HERE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": head, "jaxdyn_dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "jaxdyn_dirty": None}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def platform_name(backend: str) -> str:
    """The results folder of a JAX backend: `cpu`, `gpu` (CUDA or ROCm) or `tpu`."""
    backend = backend.lower()
    return "gpu" if backend in ("gpu", "cuda", "rocm") else backend


def device_info() -> dict[str, Any]:
    """The device JAX runs on by default: `platform` (the results folder), `backend`, `kind`,
    `count` (devices of this process), `jax_version`, `jaxlib_version`. Imports JAX."""
    import jax
    import jaxlib

    devices = jax.devices()
    return {"platform": platform_name(jax.default_backend()), "backend": jax.default_backend(),
            "kind": devices[0].device_kind if devices else None, "count": len(devices),
            "jax_version": jax.__version__,
            "jaxlib_version": getattr(jaxlib, "__version__", None) or _version("jaxlib")}


def provenance(threads: int) -> dict[str, Any]:
    """Where and with what the numbers were measured. Call after JAX (and torch) are imported."""
    import jax

    devices = jax.devices()
    prov: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": device_info(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in devices],
        "jax_device_kind": devices[0].device_kind if devices else None,
        "jax_x64": bool(jax.config.jax_enable_x64),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_1_5_15": loadavg(),
        "versions": versions(VERSIONED),
        "threads": {"requested": threads, "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
                    "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
        "git": _git_commit(),
    }
    try:
        import torch

        prov["threads"]["torch_num_threads"] = torch.get_num_threads()
        prov["threads"]["torch_num_interop_threads"] = torch.get_num_interop_threads()
        prov["torch_cuda_available"] = torch.cuda.is_available()
    except ImportError:
        pass
    return prov


# -- output --------------------------------------------------------------------------------------


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
