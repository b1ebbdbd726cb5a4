"""Kuramoto oscillators: jaxdyn.meanfield vs the `kuramoto` package (NumPy + SciPy `odeint`).

Problem (identical on both sides): N = 2000 oscillators, frequencies N(0, 1) and initial phases
U[0, 2 pi) drawn once with NumPy's seed 0, coupling K = 2 normalised by 1/N on the all-to-all graph
(the `kuramoto` package divides K by the in-degree, N for a matrix of ones), T = 10, output on the
package's grid `linspace(0, 10, 1000)`, float64, both sides at rtol = atol = 1.49012e-8 (odeint's
default; jaxdyn: Tsit5 with a PID controller).

Cases:

- `dense_n2000` (**headline**): jaxdyn given the same dense N x N matrix of ones as the package
  (`Kuramoto(omega, K, graph=W)`): the coupling is one product W @ [cos theta, sin theta] per
  evaluation (N^2 multiply-adds, O(N) sines), against the package's N^2 sines per evaluation.
- `all_to_all_n2000`: the same problem with `graph=None` (jaxdyn's all-to-all path, O(N) per
  evaluation via the order parameter): what a user of jaxdyn would write for this network.
- `fft_scaling`: the ring graphon (radius 0.35) on N = 10^3 ... 10^6 grid nodes, coupling by FFT,
  100 classical RK4 steps (dt = 0.01) through diffrax; time per step against N and an N log N fit.
  No peer (no library simulates graphon-coupled oscillators).

Accuracy: every side's trajectory is compared with a reference (jaxdyn all-to-all, Dopri8,
rtol = atol = 1e-12) on the whole output grid. At the same nominal tolerance Tsit5's global error is
larger than LSODA's, so jaxdyn is also timed at rtol = atol = 1e-9 (`jaxdyn_tight`), where its error
is no larger than the package's: `speedup_at_no_larger_error`; the goal needs both ratios >= 50.
The package is run once per side and per mode (it
takes about a minute); jaxdyn's warm time is the median of repeats after a compile run.
"""

from __future__ import annotations

import time
from typing import Any

from _common import Options, missing_modules, select_cases, summarise

NAME = "meanfield"
DESCRIPTION = "Kuramoto N = 2000, T = 10, dense and all-to-all vs the kuramoto package; FFT ring to N = 1e6"
PEER = "kuramoto"
HEADLINE = "dense_n2000"
CASES = ("dense_n2000", "all_to_all_n2000", "fft_scaling")
GOAL = {
    "statement": "dense Kuramoto N = 2000, T = 10 (float64, matched tolerance) >= 50x faster than kuramoto",
    "metric": "speedup = peer time / jaxdyn warm median",
    "case": HEADLINE,
    "peer": PEER,
    "threshold": 50.0,
}
N, K, T1, N_OUT, TOL = 2000, 2.0, 10.0, 1000, 1.49012e-8
TIGHT_TOL = 1e-9
FFT_NS = (1_000, 10_000, 100_000, 1_000_000)
FFT_STEPS, FFT_DT, RING = 100, 0.01, 0.35


def _problem():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=N), 2 * np.pi * rng.random(N)


def _time_jax(fn, repeats: int) -> tuple[dict[str, Any], Any]:
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return summarise(first, times), out


def _peer(omega, theta0, state: dict) -> dict[str, Any]:
    """One run of the package (cached across cases)."""
    if "peer" in state:
        return state["peer"]
    import numpy as np

    missing = missing_modules(["kuramoto"])
    if missing:
        from _common import peer_missing_record

        state["peer"] = peer_missing_record("kuramoto", missing)
        return state["peer"]
    from kuramoto import Kuramoto as PeerKuramoto

    model = PeerKuramoto(coupling=K, dt=T1 / N_OUT, T=T1, natfreqs=np.array(omega))
    print("  kuramoto package: one run (about a minute) ...", flush=True)
    t0 = time.perf_counter()
    act = model.run(adj_mat=np.ones((N, N)), angles_vec=np.array(theta0))
    elapsed = time.perf_counter() - t0
    print(f"  kuramoto package: {elapsed:.1f} s", flush=True)
    state["peer"] = {"status": "ok", "warm_median_s": elapsed, "first_call_s": elapsed, "compile_s": 0.0,
                     "n_repeats": 1, "ys": act.T,
                     "note": "one run (NumPy/SciPy; no compilation); odeint (LSODA) rtol = atol = 1.49012e-8"}
    return state["peer"]


def _reference(omega, theta0, state: dict):
    if "ref" not in state:
        import diffrax
        import jax.numpy as jnp

        import jaxdyn.meanfield as mf

        ts = jnp.linspace(0.0, T1, N_OUT)
        sol = mf.simulate(mf.Kuramoto(jnp.asarray(omega), K), jnp.asarray(theta0), ts,
                          solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-12)
        state["ref"] = __import__("numpy").asarray(sol.ys)
    return state["ref"]


def _case_kuramoto(dense: bool, opts: Options, state: dict) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.meanfield as mf

    omega, theta0 = _problem()
    ref = _reference(omega, theta0, state)
    ts = jnp.linspace(0.0, T1, N_OUT)
    field = mf.Kuramoto(jnp.asarray(omega), K, graph=jnp.ones((N, N)) if dense else None)
    run = lambda: mf.simulate(field, jnp.asarray(theta0), ts, rtol=TOL, atol=TOL)
    rec_j, sol = _time_jax(run, max(1, min(opts.repeats, 5 if opts.quick else 10)))
    steps = int(sol.stats["num_steps"])
    rec_j.update({"operator": type(field.operator).__name__, "solver": "Tsit5 + PID", "steps": steps,
                  "rejected_steps": int(sol.stats["num_rejected_steps"]),
                  "max_abs_error_vs_reference": float(np.max(np.abs(np.asarray(sol.ys) - ref)))})
    if dense:
        # the physical limit here: the N x N product per evaluation (memory bound: 32 MB of float64)
        w = jnp.ones((N, N))
        v = jnp.stack([jnp.cos(jnp.asarray(theta0)), jnp.sin(jnp.asarray(theta0))], 1)
        mv = jax.jit(lambda a, b: a @ b)
        jax.block_until_ready(mv(w, v))
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            jax.block_until_ready(mv(w, v))
            times.append(time.perf_counter() - t0)
        evals = 6 * steps + 1  # Tsit5: 6 new stages per tried step (FSAL), plus the first
        mv_s = min(times)
        rec_j["matvec_s"] = mv_s
        rec_j["evaluations"] = evals
        rec_j["matvec_share_of_warm_time"] = evals * mv_s / rec_j["warm_median_s"]
        rec_j["matvec_bandwidth_GB_s"] = N * N * 8 / mv_s / 1e9
    # the same nominal tolerance gives Tsit5 a larger global error than LSODA here; a tighter run
    # gives the time at an error no larger than the package's
    run_tight = lambda: mf.simulate(field, jnp.asarray(theta0), ts, rtol=TIGHT_TOL, atol=TIGHT_TOL)
    rec_t, sol_t = _time_jax(run_tight, max(1, min(opts.repeats, 5 if opts.quick else 10)))
    rec_t.update({"rtol": TIGHT_TOL, "atol": TIGHT_TOL, "steps": int(sol_t.stats["num_steps"]),
                  "max_abs_error_vs_reference": float(np.max(np.abs(np.asarray(sol_t.ys) - ref)))})
    peer = _peer(omega, theta0, state)
    rec: dict[str, Any] = {"jaxdyn": rec_j, "jaxdyn_tight": rec_t, "headline": dense, "speedup": {}}
    if peer.get("status") == "ok":
        rec["kuramoto"] = {k: v for k, v in peer.items() if k != "ys"}
        peer_err = float(np.max(np.abs(peer["ys"] - ref)))
        rec["kuramoto"]["max_abs_error_vs_reference"] = peer_err
        rec["speedup"]["kuramoto"] = peer["warm_median_s"] / rec_j["warm_median_s"]
        rec["speedup_at_no_larger_error"] = (peer["warm_median_s"] / rec_t["warm_median_s"]
                                             if rec_t["max_abs_error_vs_reference"] <= peer_err else None)
        rec["max_abs_difference_jaxdyn_vs_kuramoto"] = float(np.max(np.abs(np.asarray(sol.ys) - peer["ys"])))
    else:
        rec["kuramoto"] = peer
        rec["speedup"]["kuramoto"] = None
    print(f"  jaxdyn ({rec_j['operator']}): compile {rec_j['compile_s']:.2f} s, "
          f"warm {rec_j['warm_median_s']:.3f} s, "
          f"{steps} steps, error {rec_j['max_abs_error_vs_reference']:.1e}; speedup "
          f"{rec['speedup']['kuramoto']}", flush=True)
    return rec


def _case_fft(opts: Options) -> dict[str, Any]:
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.meanfield as mf
    from jaxdyn.meanfield import graphons

    rows = []
    for n in FFT_NS:
        omega = mf.gaussian_quantiles(n)
        theta0 = jnp.asarray(np.random.default_rng(1).uniform(0, 2 * np.pi, n))
        field = mf.Kuramoto(omega, 1.0, graph=graphons.ring(RING), phase_lag=1.46, normalisation="degree")
        ts = jnp.asarray([0.0, FFT_STEPS * FFT_DT])
        run = lambda field=field, theta0=theta0, ts=ts: mf.simulate(field, theta0, ts, solver=mf.RK4(),
                                                                      dt0=FFT_DT, max_steps=FFT_STEPS + 1).ys
        reps = (1 if opts.quick else 2) if n >= 1_000_000 else (3 if n >= 100_000 else
                                                                 (5 if opts.quick else 10))
        r, ys = _time_jax(run, reps)
        assert np.all(np.isfinite(np.asarray(ys)))
        r.pop("repeats_s")
        r.update({"n": n, "operator": type(field.operator).__name__,
                  "per_step_s": r["warm_median_s"] / FFT_STEPS})
        print(f"  N = {n:>8d}: {r['per_step_s'] * 1e3:.3f} ms per RK4 step ({r['operator']})", flush=True)
        rows.append(r)
    ns = np.array([r["n"] for r in rows], dtype=float)
    per = np.array([r["per_step_s"] for r in rows])
    slope = float(np.polyfit(np.log(ns), np.log(per), 1)[0])
    big = rows[-1]
    return {"steps": FFT_STEPS, "dt": FFT_DT, "radius": RING, "rows": rows, "loglog_slope": slope,
            "per_step_s_at_1e6": big["per_step_s"], "headline": False, "speedup": {},
            "jaxdyn": {"warm_median_s": big["warm_median_s"], "compile_s": big["compile_s"],
                       "note": "N = 1e6, 100 RK4 steps"},
            "note": "slope of log(time per step) against log N; N log N looks like a slope slightly above 1 "
                    "at large N (small N is dominated by per-step overhead)"}


def run(opts: Options) -> dict[str, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)
    cases = select_cases(opts, CASES, NAME)
    state: dict[str, Any] = {}
    results: dict[str, Any] = {"cases": {}}
    for case in cases:
        print(f"\n== case {case!r} ==", flush=True)
        if case == "fft_scaling":
            results["cases"][case] = _case_fft(opts)
        else:
            results["cases"][case] = _case_kuramoto(case == "dense_n2000", opts, state)
    head = results["cases"].get(HEADLINE)
    speedup = None if head is None else head["speedup"].get("kuramoto")
    equal = None if head is None else head.get("speedup_at_no_larger_error")
    results["goal"] = dict(GOAL, speedup=speedup, speedup_at_no_larger_error=equal,
                           met=None if speedup is None else bool(speedup >= 50.0 and (equal or 0) >= 50.0),
                           note="met requires >= 50x both at the same nominal tolerance and with jaxdyn "
                                f"tightened (rtol = atol = {TIGHT_TOL:g}) to an error no larger than the "
                                "package's")
    results["problem"] = {"n": N, "coupling": K, "normalisation": "K / N", "t1": T1,
                          "save_grid": f"linspace(0, {T1:g}, {N_OUT})", "rtol": TOL, "atol": TOL,
                          "omega": "N(0, 1), numpy default_rng(0)", "theta0": "U[0, 2 pi), same generator",
                          "reference": "jaxdyn all-to-all, Dopri8, rtol = atol = 1e-12",
                          "fft_ns": list(FFT_NS)}
    try:
        import importlib.metadata as md

        results["peer_versions"] = {"kuramoto": md.version("kuramoto"), "scipy": md.version("scipy")}
    except Exception:  # noqa: BLE001 - provenance only
        results["peer_versions"] = None
    results["description"] = DESCRIPTION
    return results
