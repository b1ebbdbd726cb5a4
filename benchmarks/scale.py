"""Past one device: weak scaling over devices and processes, and N = 10^7 particles on one machine.

No peer: these are jaxdyn's own figures against the issue's goals. Every measurement runs in a
fresh process (`benchmarks/_scale_worker.py`): the device count must be fixed (`XLA_FLAGS=
--xla_force_host_platform_device_count=D`) before JAX starts, and the peak resident set is a
per-process high-water mark. The worker times the first call (tracing + compilation) apart, then
`repeats` warm calls (median), each ending in `jax.block_until_ready`, and records the process's
CPU time beside the wall time.

Cases:

- `weak_sweep`: `jaxdyn.lyapunov.sweep` of the Lorenz spectrum (`flow_spectrum`, RK4, dt = 0.01,
  a fixed number of steps; rho_i = 28 + 8 sin(i), so the first parameters, rho_0 = 28 included,
  are the same in every configuration) with a fixed number of parameters **per device**, on 1, 2
  and 4 virtual CPU devices of one process and on 2 processes of one device each
  (`jaxdyn.distributed.launch`, gloo collectives, `mesh=global_mesh()`). Weak-scaling efficiency
  t(1 device) / t(configuration): 1 is perfect.
- `weak_particles`: Kuramoto on a rank-5 Fourier graphon (`LowRank` coupling: each evaluation is
  an O(N r) product whose V^T e^{i theta} is a sum over all nodes, i.e. an all-reduce over the
  devices), a fixed number of nodes **per device**, `meanfield.shard_nodes(field, mesh=...)` +
  `simulate` (classical RK4, fixed steps); the same grid of configurations.
- `fft_1e7` (**headline**): Kuramoto-Sakaguchi on `graphons.ring(0.35)` (phase lag 1.46, degree
  normalisation), N = 10^7 grid nodes, coupling by FFT (`Circulant`), classical RK4 (`meanfield.RK4`,
  dt = 0.01), outputs reduced on the fly where `simulate(observe=...)` exists (the order parameter
  and a 100-block local order parameter at every step, the final state kept; otherwise ts = [0, T];
  the float64 run is repeated with ts = [0, T] only, `float64_no_observe`, the cost of the observables;
  on diffrax, `float64_diffrax` (`simulate(fast=False)`); and as a hand-written `lax.scan` of RK4
  over the same field, `float64_floor`, what the field evaluations alone cost). Every record says
  which path ran (`path`: `simulate`'s fixed-step `lax.scan` fast path or diffrax):
  time per RK4 step (warm median) and the peak resident set of the whole process (building the
  field and running it; JAX's own ~200 MB included) per particle, also above the baseline after
  JAX started. Goals: <= 3 s per step and <= 400 bytes per particle in float64 on 2 cores. The same
  in float32 (reported).
- `sparse_1e6`: Kuramoto on a sparse W-random ring graph (`meanfield.sample_edges`, radius 0.35,
  density 100 / (0.7 (N - 1)): mean degree 100), N = 10^6, float64 and float32: sampling time, time
  per RK4 step, bytes per particle (graph included). Reported. One step per timed call and 2 warm
  repeats (a step over the 10^8 stored entries: 78 s of wall time before the chunked sparse
  products, 3.5-4.3 s after, on the loaded machine).
- `two_layer_1e6`: `meanfield.two_layer_gd` with 10^6 neurons (64 data points in d = 4): time per GD
  step and bytes per neuron, float64 and float32. Reported.

`--quick` shrinks everything (N = 10^6 for the FFT case, 10^5 for the sparse and two-layer ones,
smaller sweeps, fewer repeats); the goals are then not evaluated (they are for N = 10^7).

Results: `benchmarks/results/<platform>/scale.json` (every worker record, the `figures` summary,
the goals). In the run committed for the CPU (load 3.3-4.4 from other jobs) the FFT step goal was
not met in wall time (5.3 s; 3.9 s of CPU time per step) and the memory goal was (257 B/particle).

**On 2 cores, weak scaling cannot be ideal**: XLA:CPU already spreads one device's large
operations over both cores, so 2 devices compete for the same 2 cores (at best the efficiency
is t(1)/t(2) ~ (work on 1 device with 2 cores) / (twice the work on 2 cores)), and 4 devices
oversubscribe them 2:1 (expected efficiency <= 0.5 even for perfectly parallel work). The process
grid adds gloo's TCP all-reduce/all-gather and two runtimes' thread pools on the same cores. These
are measurements of overhead (the communication and the per-device dispatch), not of speed-up; on
a machine with a core (or a GPU) per device the same script measures the real thing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import Goal, fmt_s

NAME = "scale"
DESCRIPTION = ("weak scaling over 1/2/4 devices and 1/2 processes (Lyapunov sweep, sharded Kuramoto); "
               "N = 1e7 FFT Kuramoto, sparse N = 1e6 degree 100, two-layer 1e6 neurons: time per step, "
               "bytes per particle")
X64 = True
X64_REASON = ("the goals are stated in float64 (the FFT ring at N = 1e7); every large-N case is also "
              "run in float32, which the science allows here (phase oscillators, GD), and reported")
PEER = None
PEERS: dict[str, Any] = {}
HEADLINE = "fft_1e7"
CASES = ("weak_sweep", "weak_particles", "fft_1e7", "sparse_1e6", "two_layer_1e6")
STATEMENT = ("N = 1e7 FFT ring-graphon Kuramoto, float64, classical RK4 on 2 cores: <= 3 s per step and "
             "<= 400 bytes per particle (peak resident set / N)")
HERE = Path(__file__).resolve().parent
WORKER = HERE / "_scale_worker.py"
MARK = "SCALE_RESULT "

STEP_GOAL_S, BYTES_GOAL = 3.0, 400.0

# (label, devices per process, processes); the first is the baseline of the efficiencies
GRID = (("1 device", 1, 1), ("2 devices", 2, 1), ("4 devices", 4, 1), ("2 processes", 1, 2))

FULL = {"sweep": {"per_device": 64, "steps": 20_000}, "particles": {"per_device": 2 ** 18, "steps": 20},
        "fft": {"n": 10_000_000, "steps": 5},
        "sparse": {"n": 1_000_000, "degree": 100, "steps": 1, "repeats": 2},
        "two_layer": {"n": 1_000_000, "steps": 10}}
QUICK = {"sweep": {"per_device": 8, "steps": 2_000}, "particles": {"per_device": 2 ** 14, "steps": 5},
         "fft": {"n": 1_000_000, "steps": 3}, "sparse": {"n": 100_000, "degree": 100, "steps": 3},
         "two_layer": {"n": 100_000, "steps": 3}}
TIMEOUT_S = {"sweep": 600, "particles": 600, "fft": 1800, "sparse": 1800, "two_layer": 900}

PROBLEM = {
    "grid": [{"label": lab, "devices_per_process": d, "processes": p} for lab, d, p in GRID],
    "full": FULL, "quick": QUICK,
    "weak_sweep": "lyapunov.sweep(flow_spectrum(lorenz, [1, 1, 1], args=rho, dt=0.01, n_steps)), "
                  "rho_i = 28 + 8 sin(i), per_device parameters per device",
    "weak_particles": "Kuramoto(gaussian_quantiles(N), 2.0, graph=graphons.fourier([0.5, 0.3, 0.2]), "
                      "method=LowRankMethod(), phase_lag=0.3), shard_nodes(mesh=global_mesh('nodes')), "
                      "RK4 dt = 0.01",
    "fft_1e7": "Kuramoto(gaussian_quantiles(N), 1.0, graph=graphons.ring(0.35), phase_lag=1.46, "
               "normalisation='degree') (Circulant), RK4 dt = 0.01, theta0 ~ U[0, 2 pi)",
    "sparse_1e6": "sample_edges(graphons.ring(0.35), N, density=degree / (0.7 (N - 1))), Kuramoto(..., "
                  "normalisation='degree'), RK4 dt = 0.01",
    "two_layer_1e6": "TwoLayer.init(N, 4), 64 points x ~ N(0, I_4), y = tanh(x . (1, 2, 3, 4) / 4), "
                     "two_layer_gd(lr = 0.05)",
    "goals": {"fft_step_s": STEP_GOAL_S, "fft_bytes_per_particle": BYTES_GOAL},
}


# -- running the worker --------------------------------------------------------------------------


def worker_env(devices: int, base: dict[str, str] | None = None, *, cpu: bool = False) -> dict[str, str]:
    """The worker's environment: `devices` virtual CPU devices (set before JAX starts), the parent's
    thread settings kept; `cpu` pins JAX to the CPU (the device grid is of virtual CPU devices)."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    if not env["XLA_FLAGS"]:
        env.pop("XLA_FLAGS")
    if cpu:
        env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The last `SCALE_RESULT {json}` line of a worker's output (a launcher's `[0] ` prefix allowed)."""
    found = None
    for line in stdout.splitlines():
        i = line.find(MARK)
        if i >= 0:
            found = json.loads(line[i + len(MARK):])
    return found


def run_worker(spec: dict[str, Any], *, devices: int = 1, processes: int = 1, timeout: float = 600,
               cpu: bool = False) -> dict[str, Any]:
    """One measurement in a fresh process (`processes` > 1: through `python -m jaxdyn.launch`).
    Returns the worker's record, or `{"status": "failed", "reason": ...}` (never raises)."""
    cmd = [sys.executable, str(WORKER), json.dumps(spec)]
    if processes > 1:
        cmd = [sys.executable, "-m", "jaxdyn.launch", "-n", str(processes), "--devices-per-process",
               str(devices), "--timeout", str(timeout), "--", *cmd]
    env = worker_env(devices if processes == 1 else 1, cpu=cpu)
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout + 60,
                             cwd=str(HERE.parent))
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout + 60:g} s", "spec": spec}
    rec = parse_result(out.stdout)
    if out.returncode != 0 or rec is None:
        tail = (out.stdout + out.stderr).strip().splitlines()[-12:]
        return {"status": "failed", "reason": f"exit code {out.returncode}: " + " | ".join(tail)[-1500:],
                "spec": spec}
    rec["status"] = "ok"
    return rec


# -- weak scaling --------------------------------------------------------------------------------


def weak_efficiency(times: dict[str, float | None], workers: dict[str, int], base: str | None = None,
                    cpu: dict[str, float | None] | None = None) -> dict[str, dict[str, float | None]]:
    """Weak-scaling figures from warm times (the work per device fixed): `efficiency` = t(base) /
    t(config) (1: perfect, the larger problem in the same time) and `throughput_speedup` =
    workers x efficiency (how many times the base's work per second). With `cpu` (CPU seconds of
    a warm call, all processes): `cpu_work_efficiency` = (workers / base workers) x cpu(base) /
    cpu(config), the share of the CPU time that is the base's useful work (1: sharding costs no
    extra work; robust to the load of a shared machine, which wall times are not). `base`
    defaults to the first configuration; a missing time (a failed run) gives None."""
    if not times:
        return {}
    base = next(iter(times)) if base is None else base
    tb = times.get(base)
    cb = (cpu or {}).get(base)
    out = {}
    for label, t in times.items():
        eff = None if not tb or not t else tb / t
        scale = workers[label] / workers[base]
        out[label] = {"warm_s": t, "workers": workers[label], "efficiency": eff,
                      "throughput_speedup": None if eff is None else eff * scale}
        if cpu is not None:
            c = cpu.get(label)
            out[label]["cpu_s"] = c
            out[label]["cpu_work_efficiency"] = None if not cb or not c or not t else scale * cb / c
    return out


def _weak(ctx, task: str, note: str) -> dict[str, Any]:
    spec = dict((QUICK if ctx.quick else FULL)[task], task=task,
                repeats=max(1, min(ctx.opts.repeats, 2 if ctx.quick else 5)))
    rec: dict[str, Any] = {"speedup": {}, "note": note, "configs": {}}
    for label, dev, procs in GRID:
        print(f"  {task}: {label} ({procs} process(es) x {dev} device(s)) ...", flush=True)
        r = run_worker(spec, devices=dev, processes=procs, timeout=TIMEOUT_S[task], cpu=True)
        r.update(label=label, devices_per_process=dev, processes_requested=procs)
        rec["configs"][label] = r
        rec[label] = r  # printed by the harness (warm median, compile)
    times = {lab: (r["warm_median_s"] if r["status"] == "ok" else None) for lab, r in rec["configs"].items()}
    workers = {lab: d * p for lab, d, p in GRID}
    cpu = {lab: r.get("warm_median_cpu_s_total") for lab, r in rec["configs"].items()}
    rec["weak_scaling"] = weak_efficiency(times, workers, cpu=cpu)
    rec["spec"] = spec
    return rec


def case_weak_sweep(ctx) -> dict[str, Any]:
    rec = _weak(ctx, "sweep", "lyapunov.sweep: one single-device jit(vmap) program per device "
                              "(map_batches), results gathered; the per-device work is fixed")
    lams = {lab: r.get("lambda1_rho0") for lab, r in rec["configs"].items() if r["status"] == "ok"}
    rec["lambda1_at_rho28"] = lams
    rec["lambda1_identical"] = len(set(lams.values())) <= 1 if lams else None
    return rec


def case_weak_particles(ctx) -> dict[str, Any]:
    return _weak(ctx, "particles", "shard_nodes + simulate: one SPMD program; each RK4 stage "
                                   "all-reduces V^T e^{i theta} (rank 5 x 2 columns) over the devices")


# -- large N -------------------------------------------------------------------------------------


def _dtypes(ctx) -> tuple[str, ...]:
    d = getattr(ctx.opts, "dtype", "auto")
    return ("float64", "float32") if d in (None, "auto") else (d,)


def _large(ctx, task: str) -> dict[str, Any]:
    base = (QUICK if ctx.quick else FULL)[task]
    repeats = max(1, min(ctx.opts.repeats, base.get("repeats", 2 if ctx.quick else 3)))
    rec: dict[str, Any] = {"speedup": {}, "quick": ctx.quick}
    for dtype in _dtypes(ctx):
        print(f"  {task}: N = {base['n']:.0e}, {dtype} ...", flush=True)
        spec = dict(base, task=task, dtype=dtype, repeats=repeats)
        rec[dtype] = run_worker(spec, timeout=TIMEOUT_S[task])
    return rec


def case_fft_1e7(ctx) -> dict[str, Any]:
    rec = _large(ctx, "fft")
    if "float64" in _dtypes(ctx):  # the cost of the reduced outputs: the same run saving ts = [0, T] only
        base = (QUICK if ctx.quick else FULL)["fft"]
        print(f"  fft: N = {base['n']:.0e}, float64, no observables ...", flush=True)
        spec = dict(base, task="fft", dtype="float64", observe=False,
                    repeats=max(1, min(ctx.opts.repeats, 2 if ctx.quick else 3)))
        rec["float64_no_observe"] = run_worker(spec, timeout=TIMEOUT_S["fft"])
        # the same float64 run on diffrax (`fast=False`), and the floor (a bare lax.scan of RK4)
        for label, extra_spec in (("float64_diffrax", {"fast": False}), ("float64_floor", {"floor": True})):
            print(f"  fft: N = {base['n']:.0e}, {label} ...", flush=True)
            repeats = max(1, min(ctx.opts.repeats, 2 if ctx.quick else 3))
            spec = dict(base, task="fft", dtype="float64", repeats=repeats, **extra_spec)
            rec[label] = run_worker(spec, timeout=TIMEOUT_S["fft"])
    return rec


def case_sparse_1e6(ctx) -> dict[str, Any]:
    return _large(ctx, "sparse")


def case_two_layer_1e6(ctx) -> dict[str, Any]:
    return _large(ctx, "two_layer")


# -- report --------------------------------------------------------------------------------------


def _mb(b) -> str:
    return "-" if b is None else f"{b / 2 ** 20:.0f} MiB"


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    lines = []
    if case.startswith("weak_"):
        for lab, w in rec["weak_scaling"].items():
            r = rec["configs"][lab]
            if r["status"] != "ok":
                lines.append(f"{lab:12s} FAILED: {r['reason'][:200]}")
                continue
            cw = w.get("cpu_work_efficiency")
            lines.append(f"{lab:12s} warm {fmt_s(w['warm_s'])} (CPU {fmt_s(w.get('cpu_s'))}), "
                         f"efficiency {w['efficiency']:.2f}, throughput x{w['throughput_speedup']:.2f}, "
                         f"CPU-work efficiency {'-' if cw is None else f'{cw:.2f}'}, "
                         f"compile {fmt_s(r['compile_s'])}, load {r.get('loadavg_before')}")
        if case == "weak_sweep":
            lines.append(f"lambda_1(rho = 28) identical in every configuration: {rec['lambda1_identical']}")
        return lines
    for dtype in ("float64", "float32", "float64_no_observe", "float64_diffrax", "float64_floor"):
        r = rec.get(dtype)
        if r is None:
            continue
        if r["status"] != "ok":
            lines.append(f"{dtype}: FAILED: {r['reason'][:300]}")
            continue
        per = "neuron" if case == "two_layer_1e6" else "particle"
        bpp = r[f"bytes_per_{per}"]
        above = r[f"bytes_per_{per}_above_baseline"]
        extra = ""
        if case == "sparse_1e6":
            extra = (f", sampling {fmt_s(r['sample_s'])}, {r['stored_entries']} stored entries (mean degree "
                     f"{r['mean_degree']:.1f}), graph {r['graph_bytes_per_particle']:.0f} B/particle")
        lines.append(f"{dtype}: N = {r['n']:.0e}: {fmt_s(r['per_step_s'])} per "
                     f"{'GD' if per == 'neuron' else 'RK4'} step (CPU {fmt_s(r['per_step_cpu_s'])}; "
                     f"{r['steps']} steps x {r['n_repeats']} repeats), peak RSS {_mb(r['peak_rss'])} "
                     f"= {bpp:.0f} B/{per} ({above:.0f} above the {_mb(r['rss_baseline'])} baseline; build "
                     f"{_mb(r['peak_rss_build'])}, run {_mb(r['peak_rss_run'])}){extra}; "
                     f"{r.get('path', 'diffrax')}; load "
                     f"{r.get('loadavg_before')} -> {r.get('loadavg_after')}")
    return lines


def _headline(cases: dict[str, Any]) -> dict[str, Any] | None:
    rec = cases.get(HEADLINE) or {}
    r = rec.get("float64")
    if not r or r.get("status") != "ok" or rec.get("quick"):
        return None
    return r


def goals(cases: dict[str, Any]) -> list[Goal]:
    r = _headline(cases)
    rec = cases.get(HEADLINE) or {}
    note = None
    if rec.get("quick"):
        note = "--quick runs N = 1e6: the goals are for N = 1e7, not evaluated"
    elif rec and (rec.get("float64") or {}).get("status") not in (None, "ok"):
        note = "the float64 run failed"
    finite = bool(r and r.get("all_finite"))
    if r is not None:
        fastest = r.get("warm_min_s", r["per_step_s"] * r.get("steps", 1)) / r.get("steps", 1)
        note = (f"wall {r['per_step_s']:.3g} s per step (fastest repeat {fastest:.3g} s), CPU time "
                f"{r.get('per_step_cpu_s', float('nan')):.3g} s per step (the work: on 2 idle cores the wall "
                f"time is at least half of it), load average {r.get('loadavg_before')} -> "
                f"{r.get('loadavg_after')}")
    spread = None
    if r is not None and r.get("repeats_s"):
        per = [t / r["steps"] for t in r["repeats_s"]]
        q = statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1 else [per[0], per[0], per[0]]
        spread = {"median": r["per_step_s"], "iqr": [q[0], q[2]], "min": min(per), "max": max(per),
                  "n": len(per), "of": "the warm repeats' seconds per step"}
    return [Goal("fft_step_s", "N = 1e7 FFT ring Kuramoto, float64: <= 3 s per classical RK4 step (2 cores)",
                 "warm median seconds per RK4 step", STEP_GOAL_S, None if r is None else r["per_step_s"],
                 higher_is_better=False, condition=finite, note=note, spread=spread),
            Goal("fft_bytes_per_particle", "the same run: <= 400 bytes per particle",
                 "peak resident set of the process / N (bytes)", BYTES_GOAL,
                 None if r is None else r["bytes_per_particle"], higher_is_better=False, note=note)]


def figures(cases: dict[str, Any]) -> dict[str, Any]:
    """The reported figures (no threshold) in one flat record: efficiencies, times per step, bytes
    per particle."""
    out: dict[str, Any] = {}
    for case in ("weak_sweep", "weak_particles"):
        for lab, w in (cases.get(case) or {}).get("weak_scaling", {}).items():
            out[f"{case}.efficiency[{lab}]"] = w["efficiency"]
            out[f"{case}.cpu_work_efficiency[{lab}]"] = w.get("cpu_work_efficiency")
    for case in ("fft_1e7", "sparse_1e6", "two_layer_1e6"):
        for dtype in ("float64", "float32", "float64_no_observe", "float64_diffrax", "float64_floor"):
            r = (cases.get(case) or {}).get(dtype)
            if not r or r.get("status") != "ok":
                continue
            per = "neuron" if case == "two_layer_1e6" else "particle"
            out[f"{case}.{dtype}.n"] = r["n"]
            out[f"{case}.{dtype}.per_step_s"] = r["per_step_s"]
            out[f"{case}.{dtype}.per_step_cpu_s"] = r["per_step_cpu_s"]
            out[f"{case}.{dtype}.bytes_per_{per}"] = r[f"bytes_per_{per}"]
            out[f"{case}.{dtype}.bytes_per_{per}_above_baseline"] = r[f"bytes_per_{per}_above_baseline"]
            if r.get("path"):
                out[f"{case}.{dtype}.path"] = r["path"]
            if case == "sparse_1e6":
                out[f"{case}.{dtype}.sample_s"] = r["sample_s"]
    return out


def _device(cases: dict[str, Any]) -> dict[str, Any]:
    """The device the large-N workers ran on (the weak-scaling grid is virtual CPU devices)."""
    for case in ("fft_1e7", "sparse_1e6", "two_layer_1e6", "weak_sweep"):
        rec = cases.get(case) or {}
        for r in [rec.get("float64"), rec.get("float32"), *(rec.get("configs") or {}).values()]:
            if r and r.get("status") == "ok":
                return {"platform": r["platform"], "device_kind": r["device_kind"]}
    return {"platform": None, "device_kind": None}


def setup(ctx) -> None:
    ctx.state["cases"] = {}


def extra(ctx) -> dict[str, Any]:
    cases = ctx.state.get("cases", {})
    figs = figures(cases)
    dev = _device(cases)
    print(f"\n== scale figures (large-N cases on {dev['platform']}: {dev['device_kind']}; the weak-scaling "
          f"grid on virtual CPU devices, {os.cpu_count()} cores) ==")
    for k, v in figs.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return {"figures": figs, "device": dev, "reported_note": (
        "figures without a threshold (the issue asks them reported): the weak-scaling efficiencies, the "
        "sparse and two-layer cases, the float32 runs")}


def _keep(fn):
    """Store each case's record in the context, for `extra`'s summary."""

    def wrapped(ctx):
        rec = fn(ctx)
        ctx.state.setdefault("cases", {})[fn.__name__.removeprefix("case_")] = rec
        return rec

    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


case_weak_sweep = _keep(case_weak_sweep)
case_weak_particles = _keep(case_weak_particles)
case_fft_1e7 = _keep(case_fft_1e7)
case_sparse_1e6 = _keep(case_sparse_1e6)
case_two_layer_1e6 = _keep(case_two_layer_1e6)
