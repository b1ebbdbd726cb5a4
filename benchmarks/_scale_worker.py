"""One measurement of the `scale` benchmark, in a fresh process (driven by `benchmarks/scale.py`).

    python benchmarks/_scale_worker.py '{"task": "fft", "n": 16384, "steps": 2, "repeats": 1}'

A fresh process per measurement because the device count (`XLA_FLAGS=
--xla_force_host_platform_device_count=N`) must be set before JAX starts, and the peak resident set
(`getrusage(RUSAGE_SELF).ru_maxrss`) is a per-process high-water mark. Under `python -m
jaxdyn.launch -n P -- python benchmarks/_scale_worker.py SPEC` it joins the multi-process job
(`jaxdyn.distributed.initialize()`) and process 0 reports.

Tasks (`spec["task"]`): `sweep` (a Lyapunov-spectrum sweep, `per_device` parameters per device),
`particles` (a node-sharded Kuramoto system, `per_device` nodes per device), `fft` (the ring-graphon
Kuramoto by FFT at `n` nodes), `sparse` (a sparse W-random ring graph at `n` nodes and mean degree
`degree`), `two_layer` (`two_layer_gd` with `n` neurons). `dtype` is `"float64"` (default) or
`"float32"`. Every timed call ends with `jax.block_until_ready`; the first call (tracing and
compilation) is timed apart, then `repeats` warm calls (median). The process's CPU time (user +
system, all threads) is recorded beside the wall time of every call.

Output: one line `SCALE_RESULT {json}` on stdout (process 0 only); memory figures in bytes:
`rss_baseline` (after importing JAX and starting its devices), `peak_rss_build` (high-water mark
while building the problem), `peak_rss_run` (high-water mark while running it, after the mark was
reset through `/proc/self/clear_refs` where the kernel allows; otherwise the same mark as the
build's), `peak_rss` (the larger: the process's peak), `ru_maxrss` (as `getrusage` reports it at
the end). `warm_median_cpu_s_total`: the CPU time of a warm call summed over the processes
(the work done, robust to the machine's load where wall time is not); `loadavg_before/after`.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

MARK = "SCALE_RESULT "
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# -- memory and time -----------------------------------------------------------------------------


def rss_now() -> int | None:
    """This process's resident set now, in bytes (Linux `/proc/self/statm`)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def ru_maxrss() -> int:
    """`getrusage(RUSAGE_SELF).ru_maxrss` in bytes (Linux reports kibibytes, macOS bytes)."""
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(v) if sys.platform == "darwin" else int(v) * 1024


def hwm() -> int:
    """The resident-set high-water mark in bytes (`VmHWM`, which `clear_refs` resets; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return ru_maxrss()


def reset_peak() -> bool:
    """Reset the high-water mark to the current resident set (Linux >= 4.0; False where refused)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(call, repeats: int) -> dict:
    """First call timed alone, then `repeats` warm calls: wall and CPU seconds, medians."""
    import jax

    c0, t0 = cpu_s(), time.perf_counter()
    out = jax.block_until_ready(call())
    first, first_cpu = time.perf_counter() - t0, cpu_s() - c0
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = cpu_s(), time.perf_counter()
        out = jax.block_until_ready(call())
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_s() - c0)
    warm = statistics.median(walls) if walls else first
    return {"first_call_s": first, "first_call_cpu_s": first_cpu, "warm_median_s": warm,
            "compile_s": first - warm if walls else 0.0,
            "warm_min_s": min(walls) if walls else first, "warm_max_s": max(walls) if walls else first,
            "warm_median_cpu_s": statistics.median(cpus) if cpus else first_cpu,
            "repeats_s": walls, "repeats_cpu_s": cpus, "n_repeats": len(walls), "output": out}


# -- the tasks -----------------------------------------------------------------------------------


def _lorenz(t, y, rho):
    import jax.numpy as jnp

    return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - 8.0 / 3.0 * y[2]])


def task_sweep(spec: dict, mesh) -> dict:
    """`lyapunov.sweep` of the Lorenz spectrum over rho, `per_device` values per device."""
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.lyapunov as ly

    n_dev = mesh.devices.size
    n = spec["per_device"] * n_dev
    steps, dt = spec.get("steps", 2000), spec.get("dt", 0.01)
    rhos = 28.0 + 8.0 * np.sin(np.arange(n))  # the first values are the same in every configuration
    y0 = jnp.asarray([1.0, 1.0, 1.0])

    def fn(rho):
        return ly.flow_spectrum(_lorenz, y0, args=rho, dt=dt, n_steps=steps, progress=False,
                                throw=False).exponents

    rec = timed(lambda: ly.sweep(fn, rhos, mesh=mesh, throw=False), spec.get("repeats", 3))
    lam = np.asarray(rec.pop("output"))
    rec.update(n_params=n, per_device=spec["per_device"], steps=steps, dt=dt,
               lambda1_rho0=float(lam[0, 0]), rho0=float(rhos[0]), all_finite=bool(np.all(np.isfinite(lam))))
    return rec


def task_particles(spec: dict, mesh) -> dict:
    """Kuramoto on a rank-5 Fourier graphon (`LowRank` coupling, rows split over the devices)."""
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.meanfield as mf
    from jaxdyn.meanfield import graphons

    n_dev = mesh.devices.size
    n = spec["per_device"] * n_dev
    steps, dt = spec.get("steps", 20), spec.get("dt", 0.01)
    field = mf.Kuramoto(mf.gaussian_quantiles(n), 2.0, graph=graphons.fourier([0.5, 0.3, 0.2]),
                        method=mf.LowRankMethod(), phase_lag=0.3)
    if n_dev > 1:
        field = mf.shard_nodes(field, mesh=mesh)
    theta0 = np.sin(np.arange(n) * 0.7) * 3.0
    ts = jnp.asarray([0.0, steps * dt])

    def run():
        return mf.simulate(field, theta0, ts, solver=mf.RK4(), dt0=dt, max_steps=steps + 1).ys

    rec = timed(run, spec.get("repeats", 3))
    ys = np.asarray(rec.pop("output"))
    rec.update(n=n, per_device=spec["per_device"], steps=steps, dt=dt, operator=type(field.operator).__name__,
               per_step_s=rec["warm_median_s"] / steps, all_finite=bool(np.all(np.isfinite(ys))),
               order_parameter_end=float(np.abs(np.mean(np.exp(1j * ys[-1])))))
    return rec


def _observed(mf, steps: int, dt: float):
    """The reduced outputs (order parameter and a 100-block local order at every step) when
    `simulate(observe=...)` exists; else None (then only ts = [0, T] is saved)."""
    import inspect

    if "observe" not in inspect.signature(mf.simulate).parameters or not hasattr(mf, "OrderParameter"):
        return None
    return {"z": mf.OrderParameter(), "local": mf.LocalOrder(100)}


def _omega(mf, n: int):
    """`mf.gaussian_quantiles(n)`; where that is not finite (float32 at N = 1e7: (N - 1/2)/N rounds to
    1 and its quantile is inf), the same quantiles computed on the host in float64 (mirrored, so
    that no probability rounds to 1) and cast to JAX's default float. Returns `(omega, note)`."""
    import jax.numpy as jnp
    import numpy as np

    omega = mf.gaussian_quantiles(n)
    if bool(jnp.all(jnp.isfinite(omega))):
        return omega, None
    from scipy.special import ndtri

    i = np.arange(n)
    q = np.where(i < n / 2, ndtri((i + 0.5) / n), -ndtri((n - i - 0.5) / n))
    return jnp.asarray(q, dtype=omega.dtype), (
        f"mf.gaussian_quantiles({n}) in {omega.dtype} is not finite (its last value is "
        f"{float(omega[-1])}): the quantiles were computed on the host in float64 instead")


def _path(mf, theta0, ts, dt: float, steps: int, fast: bool) -> str:
    """Which integrator `simulate` runs for these settings: the fixed-step `lax.scan` fast path
    (`jaxdyn/meanfield/_fixed.py`, where it exists) or diffrax's `diffeqsolve`."""
    try:
        from jaxdyn.meanfield import _fixed
    except ImportError:
        return "diffrax (no fixed-step fast path in this version)"
    plan = _fixed.plan(mf.RK4(), ts, dt, None, max_steps=steps + 1, fast=fast, adjoint=None, sde=False,
                       adaptive=False, sharded=False)
    return "diffrax (fast=False)" if plan is None else "fixed-step lax.scan (fast path)"


def _simulate_steps(mf, field, theta0, steps: int, dt: float, observe: bool = True, fast: bool = True):
    import inspect

    import jax.numpy as jnp

    observe = _observed(mf, steps, dt) if observe else None
    kw = {"fast": fast} if "fast" in inspect.signature(mf.simulate).parameters else {}
    if observe is None:
        ts = jnp.asarray([0.0, steps * dt])
        run = lambda: mf.simulate(field, theta0, ts, solver=mf.RK4(), dt0=dt, max_steps=steps + 1, **kw).ys  # noqa: E731
        return run, "ts = [0, T]: the initial and final states", _path(mf, theta0, ts, dt, steps, fast)
    ts = jnp.linspace(0.0, steps * dt, steps + 1)

    def run():
        out = mf.simulate(field, theta0, ts, solver=mf.RK4(), dt0=dt, max_steps=steps + 1, observe=observe,
                          **kw)
        return out.ys, out.observed

    return run, (f"observe: the order parameter and a 100-block local order at each of {steps + 1} times, "
                 "the final state kept"), _path(mf, theta0, ts, dt, steps, fast)


def _floor(field, theta0, steps: int, dt: float):
    """The floor: a hand-written `lax.scan` of classical RK4 over the same field (no saving, no failure
    checks, no observables): what the field evaluations alone cost."""
    import jax

    @jax.jit
    def rk4(f, y):
        def step(y, _):
            k1 = f(0.0, y)
            k2 = f(0.0, y + 0.5 * dt * k1)
            k3 = f(0.0, y + 0.5 * dt * k2)
            k4 = f(0.0, y + dt * k3)
            return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

        return jax.lax.scan(step, y, None, length=steps)[0]

    return lambda: rk4(field, theta0)


def _step_record(rec: dict, steps: int, n: int, mem: dict) -> dict:
    rec.update(mem)
    rec.update(steps=steps, n=n, per_step_s=rec["warm_median_s"] / steps,
               per_step_cpu_s=rec["warm_median_cpu_s"] / steps,
               first_call_per_step_s=rec["first_call_s"] / steps,
               bytes_per_particle=mem["peak_rss"] / n,
               bytes_per_particle_above_baseline=(mem["peak_rss"] - mem["rss_baseline"]) / n)
    return rec


def _finite_state(out) -> bool:
    import jax
    import numpy as np

    return bool(all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(out)))


def task_fft(spec: dict, mesh, mem: dict) -> dict:
    """The ring graphon (radius 0.35) Kuramoto-Sakaguchi by FFT (`Circulant`), classical RK4."""
    import jax
    import jax.numpy as jnp

    import jaxdyn.meanfield as mf
    from jaxdyn.meanfield import graphons

    n, steps, dt = spec["n"], spec.get("steps", 5), spec.get("dt", 0.01)
    t0 = time.perf_counter()
    omega, omega_note = _omega(mf, n)
    field = mf.Kuramoto(omega, 1.0, graph=graphons.ring(0.35), phase_lag=1.46, normalisation="degree")
    del omega
    theta0 = jax.random.uniform(jax.random.key(1), (n,), maxval=2 * jnp.pi, dtype=field.omega.dtype)
    jax.block_until_ready((field, theta0))
    build_s = time.perf_counter() - t0
    if spec.get("floor"):
        run, saved = _floor(field, theta0, steps, dt), "the final state"
        path = "hand-written lax.scan RK4 (floor)"
    else:
        run, saved, path = _simulate_steps(mf, field, theta0, steps, dt, spec.get("observe", True),
                                           spec.get("fast", True))
    mem_run = _phase_peak(mem)
    rec = timed(run, spec.get("repeats", 3))
    mem_run(rec)
    finite = _finite_state(rec.pop("output"))
    rec = _step_record(rec, steps, n, mem)
    rec.update(build_s=build_s, dt=dt, operator=type(field.operator).__name__, saved=saved, all_finite=finite,
               dtype=str(field.omega.dtype), split=getattr(field.operator, "split", None),
               omega_note=omega_note, path=path)
    return rec


def _fallback_edges(n: int, degree: float, seed: int):
    """Erdos-Renyi G(n, p = degree / (n - 1)) edges, when `mf.sample_edges` is not available: E ~
    Binomial(M, p) pairs i < j drawn uniformly (duplicates dropped: about E^2 / 2M of them)."""
    import numpy as np

    import jaxdyn.meanfield as mf

    rng = np.random.default_rng(seed)
    m = n * (n - 1) // 2
    e = int(rng.binomial(m, degree / (n - 1)))
    i = rng.integers(0, n, size=2 * e)
    j = rng.integers(0, n, size=2 * e)
    keep = i != j
    lo, hi = np.minimum(i, j)[keep][:e], np.maximum(i, j)[keep][:e]
    key = np.unique(lo.astype(np.int64) * n + hi)
    lo, hi = (key // n).astype(np.int32), (key % n).astype(np.int32)
    rows, cols = np.concatenate([lo, hi]), np.concatenate([hi, lo])
    order = np.argsort(rows, kind="stable")
    return mf.Sparse(rows[order], cols[order], 1.0, n), "fallback Erdos-Renyi sampler (no mf.sample_edges)"


def task_sparse(spec: dict, mesh, mem: dict) -> dict:
    """Kuramoto on a sparse W-random ring graph (radius 0.35), mean degree `degree`, classical RK4."""
    import jax
    import jax.numpy as jnp

    import jaxdyn.meanfield as mf
    from jaxdyn.meanfield import graphons

    n, degree = spec["n"], spec.get("degree", 100)
    steps, dt = spec.get("steps", 5), spec.get("dt", 0.01)
    g = graphons.ring(0.35)
    density = degree / (0.7 * (n - 1))
    t0 = time.perf_counter()
    if hasattr(mf, "sample_edges"):
        edges = mf.sample_edges(g, n, key=jax.random.key(0), density=density)
        sampler = f"mf.sample_edges(graphons.ring(0.35), n, density={density:.6g})"
    else:
        edges, sampler = _fallback_edges(n, degree, 0)
    jax.block_until_ready(edges)
    sample_s = time.perf_counter() - t0
    rss_graph = rss_now()
    t0 = time.perf_counter()
    omega, omega_note = _omega(mf, n)
    field = mf.Kuramoto(omega, 1.0, graph=edges, normalisation="degree")
    del omega
    theta0 = jax.random.uniform(jax.random.key(1), (n,), maxval=2 * jnp.pi, dtype=field.omega.dtype)
    jax.block_until_ready((field, theta0))
    build_s = time.perf_counter() - t0
    del edges
    run, saved, path = _simulate_steps(mf, field, theta0, steps, dt)
    mem_run = _phase_peak(mem)
    rec = timed(run, spec.get("repeats", 3))
    mem_run(rec)
    finite = _finite_state(rec.pop("output"))
    rec = _step_record(rec, steps, n, mem)
    op = field.operator
    n_entries = int(op.rows.shape[0]) if hasattr(op, "rows") else None
    graph_bytes = sum(int(x.size) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(op)
                      if hasattr(x, "dtype"))
    rec.update(path=path, sample_s=sample_s, build_s=build_s, sampler=sampler, dt=dt, degree_target=degree,
               density=density, stored_entries=n_entries,
               mean_degree=None if n_entries is None else n_entries / n,
               graph_bytes=graph_bytes, graph_bytes_per_particle=graph_bytes / n,
               rss_after_sampling=rss_graph, operator=type(op).__name__, saved=saved, all_finite=finite,
               dtype=str(field.omega.dtype), omega_note=omega_note)
    return rec


def task_two_layer(spec: dict, mesh, mem: dict) -> dict:
    """`two_layer_gd` on a `TwoLayer` of `n` neurons, 64 data points in d = 4 (a teacher neuron)."""
    import jax
    import jax.numpy as jnp

    import jaxdyn.meanfield as mf

    n, d, n_data = spec["n"], spec.get("dim", 4), spec.get("n_data", 64)
    steps, lr = spec.get("steps", 5), spec.get("lr", 0.05)
    kx, km = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n_data, d))
    y = jnp.tanh(x @ (jnp.arange(1.0, d + 1) / d))
    model = mf.TwoLayer.init(n, d, key=km)
    jax.block_until_ready(model)
    mem_run = _phase_peak(mem)
    rec = timed(lambda: mf.two_layer_gd(model, x, y, n_steps=steps, lr=lr), spec.get("repeats", 3))
    mem_run(rec)
    out = rec.pop("output")
    rec = _step_record(rec, steps, n, mem)
    rec["bytes_per_neuron"] = rec.pop("bytes_per_particle")
    rec["bytes_per_neuron_above_baseline"] = rec.pop("bytes_per_particle_above_baseline")
    rec.update(dim=d, n_data=n_data, lr=lr, loss_first=float(out.losses[0]), loss_last=float(out.losses[-1]),
               successful=bool(out.successful), dtype=str(model.a.dtype))
    return rec


def _phase_peak(mem: dict):
    """Close the build phase (its peak), reset the mark, and return the closure that records the
    run phase's peak into `mem` and the record."""
    mem["peak_rss_build"] = hwm()
    mem["rss_after_build"] = rss_now()
    mem["peak_reset"] = reset_peak()

    def done(rec):
        mem["peak_rss_run"] = hwm()
        mem["peak_rss"] = max(mem["peak_rss_build"], mem["peak_rss_run"])
        mem["ru_maxrss"] = ru_maxrss()

    return done


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


TASKS = {"sweep": task_sweep, "particles": task_particles, "fft": task_fft, "sparse": task_sparse,
         "two_layer": task_two_layer}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1]) if len(argv) > 1 else {}
    task = spec.get("task")
    if task not in TASKS:
        print(f"unknown task {task!r}; choose from {sorted(TASKS)}", file=sys.stderr)
        return 2
    load_before = _loadavg()
    import jax

    jax.config.update("jax_enable_x64", spec.get("dtype", "float64") == "float64")
    import jaxdyn.distributed as jdist

    info = jdist.initialize()
    import jax.numpy as jnp

    jax.block_until_ready(jnp.zeros(1) + 1)  # the devices and the runtime started: the baseline
    mem = {"rss_baseline": rss_now(), "peak_rss_baseline": hwm()}
    mesh = jdist.global_mesh("nodes" if task == "particles" else "batch")
    t0 = time.perf_counter()
    if task in ("sweep", "particles"):
        rec = TASKS[task](spec, mesh)
    else:
        rec = TASKS[task](spec, mesh, mem)
    rec.update(task=task, spec=spec, total_s=time.perf_counter() - t0, processes=info.process_count,
               devices=info.device_count, local_devices=info.local_device_count, platform=info.platform,
               device_kind=jax.devices()[0].device_kind, x64=bool(jax.config.jax_enable_x64))
    if task in ("sweep", "particles"):
        rec.update(mem, ru_maxrss=ru_maxrss())
    # every process's CPU time of a warm call (the sum is the work done; process 0 reports)
    cpus = [rec["warm_median_cpu_s"]]
    if info.process_count > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        cpus = [float(c) for c in np.ravel(multihost_utils.process_allgather(np.asarray([cpus[0]])))]
    rec.update(warm_median_cpu_s_per_process=cpus, warm_median_cpu_s_total=float(sum(cpus)),
               loadavg_after=_loadavg(), loadavg_before=load_before)
    rec.pop("output", None)
    if jdist.is_main_process():
        print(MARK + json.dumps(rec), flush=True)
    jdist.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
