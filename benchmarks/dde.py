"""Delay differential equations: jaxdyn.dde vs jitcdde (C), ddeint (SciPy) and torchdde (PyTorch).

Problems (float64 unless said):

- `mackey_glass` (**headline**): Mackey-Glass, y' = 0.2 y(t-17) / (1 + y(t-17)^10) - 0.1 y, constant
  history 1.2, on [0, 1000], saved on the grid 0, 1, ..., 1000. jaxdyn: `jax.jit` of
  `jaxdyn.dde.solve` (Tsit5, `diffrax.PIDController(rtol=tol, atol=tol)`, dt0 0.1, max_steps 8192);
  jitcdde: its adaptive Bogacki-Shampine (rtol = atol = tol, `adjust_diff` at the start, one
  `integrate` per save time, as jitcdde documents); ddeint: its fixed grid (SciPy `odeint` between
  grid points, linear interpolation of the past) at grid steps 0.25 and 0.1. Reference: jitcdde at
  rtol = atol = 1e-12 (it agrees with jaxdyn at 1e-11 to ~4e-10 on [0, 100]). Mackey-Glass is
  chaotic (top exponent ~0.005 per time unit, plus strong transient amplification), so errors
  grow with t: the error is the max abs error on the save times in [0, 100]; the error on [0, 1000]
  is recorded as well. The work-precision comparison interpolates jaxdyn's log(time) vs
  log(error) curve at each jitcdde point ("at equal error").
- `batch`: 256 constant histories in [0.5, 1.5], rtol = atol = 1e-6, same grid. jaxdyn, two ways:
  `jaxdyn.dde.solve_batch` (the goal's figure: the batch is one (256, 1) state with **shared
  steps**, the field vmapped over members, the controller's error norm the largest member-wise RMS
  norm, so every member meets the tolerance) and `jax.jit(jax.vmap(solve))` (each member its own
  steps; the batched loop runs until the slowest member is done). The peer: a Python loop over one
  compiled jitcdde (re-set with `constant_past`), which runs every 8th history (every 32nd with
  --quick), its time scaled by 8 (32).
- `neural_dde_step`: one training step (forward + backward + SGD update) of a neural DDE, float32:
  h' = MLP([h(t), h(t - 0.5)]), state 4, one hidden layer of width 32 (tanh), constant history
  h(s) = x, T = 1, classical RK4 with dt = 0.05 (20 steps), loss mean |h(T) - target|^2 over a
  batch of 64, gradients w.r.t. the MLP weights only (the delay fixed). jaxdyn:
  `jaxdyn.models.NeuralDDE(DelayMLPField, stepping=FixedStep(20, "rk4"))` (the `solve_fixed` ring
  buffer scan), `jax.vmap` over the batch, `jax.jit` of the whole step; torchdde:
  `torchdde.integrate(..., RK4(), ConstantStepSizeController(), dt0=0.05, delays=[0.5],
  discretize_then_optimize=True)` (backprop through the solver, as jaxdyn), `torch.optim.SGD`.
- `lyapunov`: top Lyapunov exponent of Mackey-Glass (tau 17), transient 100 time units then
  T = 20 000 (2 000 with --quick). jaxdyn `dde_spectrum` (RK4, dt 0.1, k = 1, QR every step, jitted);
  lyapax `lyapunov_spectrum_dde(dde_problem(..., integrator="rk4"))` (dt 0.1, k = 1, jitted);
  jitcdde_lyap (its adaptive integrator at rtol = atol = 1e-6, max_step 0.5, one `integrate` and
  orthonormalisation every 1 time unit, exponent = time-weighted mean). Exponents differ by
  finite-T sampling (~1e-3 at T = 2e4).

Compile time = first call - warm median (jitcdde: the C build, timed apart). Repeats are capped by a
time budget per side (counts in the JSON). Without --quick, `mackey_glass.profile` splits `solve`'s
time per step: Tsit5 with constant steps (as many as the adaptive run at tol 1e-8 tries), full
(default adjoint), with `adjoint=diffrax.DirectAdjoint()` (equinox's bounded loop), and with one
part patched out inside this process (the delayed-value lookups -> the history; the per-step dense
coefficients -> zeros), and diffrax.diffeqsolve of the corresponding ODE on the same steps as the
floor of one RK step in JAX. jaxdyn runs `solve` with its default adjoint
(`diffrax.RecursiveCheckpointAdjoint()`, reverse-mode differentiable, as diffrax's default).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

from _common import (
    Options,
    fmt_s,
    missing_modules,
    peer_missing_record,
    print_table,
    select_cases,
    summarise,
    versions,
)

NAME = "dde"
DESCRIPTION = ("Mackey-Glass DDE (work-precision) vs jitcdde and ddeint, a 256-history batch, a "
               "neural DDE training step vs torchdde, and the top Lyapunov exponent")
PEER = "jitcdde"
PEERS = ("jitcdde", "ddeint", "torchdde", "lyapax")
PEER_MODULES = {"jitcdde": ["jitcdde", "symengine"], "ddeint": ["ddeint"], "torchdde": ["torchdde", "torch"],
                "lyapax": ["lyapax"]}
HEADLINE = "mackey_glass"
CASES = ("mackey_glass", "batch", "neural_dde_step", "lyapunov")
GOAL = {
    "statement": ("one Mackey-Glass trajectory at equal error within 3x of jitcdde's time; the "
                  "256-history batch >= 5x faster than the jitcdde loop; a neural DDE training step "
                  ">= 3x faster than torchdde"),
    "metric": "speedup = peer warm median / jaxdyn warm median (at equal error for the headline)",
    "case": HEADLINE,
    "peer": PEER,
    "threshold": 1.0 / 3.0,
}

BETA, GAMMA, POWER, TAU, H0 = 0.2, 0.1, 10, 17.0, 1.2
T1 = 1000.0
ERR_WINDOW = 100.0
TOLS = (1e-4, 1e-6, 1e-8, 1e-10)
TOLS_QUICK = (1e-4, 1e-6, 1e-8)
REF_TOL = 1e-12
MAX_STEPS = 8192
DDEINT_DT = (0.25, 0.1)
DDEINT_DT_QUICK = (0.25,)
BATCH, BATCH_TOL = 256, 1e-6
NN = {"state": 4, "width": 32, "depth": 1, "tau": 0.5, "t1": 1.0, "dt": 0.05, "n_steps": 20, "batch": 64,
      "lr": 1e-2, "dtype": "float32"}
LYAP = {"dt": 0.1, "time": 20_000.0, "time_quick": 2_000.0, "transient_time": 100.0,
        "jitcdde_tol": 1e-6, "jitcdde_max_step": 0.5, "jitcdde_interval": 1.0}
BUDGET_S = {False: 5.0, True: 3.0}
BATCH_MAX_STEPS = 2048


# -- helpers -------------------------------------------------------------------------------------


def _block(x):
    import jax

    return jax.block_until_ready(x)


def _time(name: str, fn: Callable[[], Any], opts: Options, *, warm: bool = True, first_extra: float = 0.0,
          max_repeats: int | None = None) -> tuple[dict[str, Any], Any]:
    """First call, optional warm-up, then repeats capped by the time budget."""
    t0 = time.perf_counter()
    out = _block(fn())
    first = time.perf_counter() - t0 + first_extra
    est = first
    if warm:
        t0 = time.perf_counter()
        out = _block(fn())
        est = time.perf_counter() - t0
    reps = min(opts.repeats, max(1 if opts.quick else 2, int(BUDGET_S[opts.quick] / max(est, 1e-9))))
    if max_repeats is not None:
        reps = min(reps, max_repeats)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = _block(fn())
        times.append(time.perf_counter() - t0)
    rec = summarise(first, times)
    rec["repeats_capped_by_budget"] = reps < opts.repeats
    print(f"  {name}: first {fmt_s(first)}, warm {fmt_s(rec['warm_median_s'])} (n={reps})", flush=True)
    return rec, out


@contextlib.contextmanager
def _quiet_build_dir():
    """jitcdde builds with setuptools in the working directory, which would read jaxdyn's
    pyproject.toml: build from an empty directory, and keep its chatter out of the output."""
    with (tempfile.TemporaryDirectory(prefix="jaxdyn_bench_") as tmp, contextlib.chdir(tmp),
          contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
          warnings.catch_warnings()):
        warnings.simplefilter("ignore")
        yield


def _mg(t, y, yd, args):
    return BETA * yd[0] / (1 + yd[0] ** POWER) - GAMMA * y


def _save_grid():
    import numpy as np

    return np.linspace(0.0, T1, int(T1) + 1)


def _errors(ys, ref) -> dict[str, float]:
    import numpy as np

    ts = _save_grid()
    e = np.abs(np.asarray(ys).reshape(-1) - np.asarray(ref).reshape(-1))
    return {"max_abs_error_0_100": float(e[ts <= ERR_WINDOW].max()), "max_abs_error_0_1000": float(e.max())}


# -- sides ---------------------------------------------------------------------------------------


def _jaxdyn_solver(tol: float, max_steps: int = MAX_STEPS):
    import diffrax
    import jax
    import jax.numpy as jnp

    from jaxdyn.dde import solve

    ts = jnp.asarray(_save_grid())
    delays = jnp.array([TAU])

    def one(h):
        sol = solve(_mg, h, delays, 0.0, T1, dt0=0.1, saveat=ts, max_steps=max_steps,
                    stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol))
        return sol.ys[:, 0], sol.stats["num_accepted_steps"], sol.stats["num_steps"]

    return one, jax


def _jitcdde_build():
    from jitcdde import jitcdde, t, y

    with _quiet_build_dir():
        dde = jitcdde([BETA * y(0, t - TAU) / (1 + y(0, t - TAU) ** POWER) - GAMMA * y(0)], verbose=False)
        dde.compile_C(verbose=False)
    return dde


def _jitcdde_run(dde, tol: float, h0: float = H0):
    import numpy as np

    with _quiet_build_dir():
        dde.constant_past([h0])
        dde.set_integration_parameters(rtol=tol, atol=tol, first_step=0.1, max_step=TAU, min_step=1e-14)
        dde.adjust_diff()
        return np.array([dde.integrate(float(s))[0] for s in _save_grid()])


# -- cases ---------------------------------------------------------------------------------------


def _case_mackey_glass(opts: Options, status: dict[str, Any]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    tols = TOLS_QUICK if opts.quick else TOLS
    rec: dict[str, Any] = {"headline": True, "reference": None, "jaxdyn": {}, "jitcdde": {}, "ddeint": {}}
    h = jnp.array([H0])
    dde = None
    if status["jitcdde"]["status"] == "ok":
        t0 = time.perf_counter()
        dde = _jitcdde_build()
        build = time.perf_counter() - t0
        ref = _jitcdde_run(dde, REF_TOL)
        rec["reference"] = {"side": "jitcdde", "rtol": REF_TOL, "atol": REF_TOL}
    else:
        build = None
        one, _ = _jaxdyn_solver(1e-11, 16384)
        ref = np.asarray(jax.jit(one)(h)[0])
        rec["reference"] = {"side": "jaxdyn", "rtol": 1e-11, "atol": 1e-11}
    for tol in tols:
        one, _ = _jaxdyn_solver(tol)
        fn = jax.jit(one)
        r, out = _time(f"jaxdyn tol {tol:g}", lambda fn=fn: fn(h), opts)
        r.update(_errors(out[0], ref), accepted_steps=int(out[1]), tried_steps=int(out[2]),
                 us_per_tried_step=r["warm_median_s"] / int(out[2]) * 1e6)
        r.pop("repeats_s")
        rec["jaxdyn"][f"{tol:g}"] = r
    if dde is not None:
        for tol in tols:
            r, out = _time(f"jitcdde tol {tol:g}", lambda tol=tol: _jitcdde_run(dde, tol), opts, warm=False)
            r.update(_errors(out, ref))
            r["compile_s"] = build
            r.pop("repeats_s")
            rec["jitcdde"][f"{tol:g}"] = r
        rec["jitcdde_build_s"] = build
    else:
        rec["jitcdde"] = status["jitcdde"]
    if status["ddeint"]["status"] == "ok":
        from ddeint import ddeint

        def model(Y, t):
            d = Y(t - TAU)
            return BETA * d / (1 + d ** POWER) - GAMMA * Y(t)

        for dt in DDEINT_DT_QUICK if opts.quick else DDEINT_DT:
            grid = np.arange(0.0, T1 + dt / 2, dt)

            def run_ddeint(grid=grid):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ys = np.asarray(ddeint(model, lambda t: H0, grid)).reshape(-1)
                return np.interp(_save_grid(), grid, ys)

            r, out = _time(f"ddeint dt {dt:g}", run_ddeint, opts, warm=False, max_repeats=3)
            r.update(_errors(out, ref))
            r["compile_s"] = None
            r.pop("repeats_s")
            rec["ddeint"][f"dt {dt:g}"] = r
    else:
        rec["ddeint"] = status["ddeint"]
    rec["work_precision"] = _work_precision(rec)
    rec["speedup"] = {}
    wp = rec["work_precision"]
    head = next((w for w in wp if w["peer"] == "jitcdde" and w["peer_setting"] == "1e-08"), None)
    rec["speedup"]["jitcdde"] = None if head is None else head["speedup_at_equal_error"]
    rec["headline_point"] = head
    # per-tolerance records; `jaxdyn`/`jitcdde` become the headline point (for run.py's summary)
    rec["jaxdyn_by_tol"] = rec.pop("jaxdyn")
    rec["jitcdde_by_tol"] = rec.pop("jitcdde")
    rec["ddeint_by_grid"] = rec.pop("ddeint")
    j8 = rec["jaxdyn_by_tol"].get("1e-08", {})
    rec["jaxdyn"] = {"warm_median_s": None if head is None else head["jaxdyn_warm_s_at_equal_error"],
                     "compile_s": j8.get("compile_s"),
                     "note": "warm: interpolated at jitcdde's 1e-8 error; compile: at tol 1e-8"}
    rec["jitcdde"] = rec["jitcdde_by_tol"].get("1e-08", rec["jitcdde_by_tol"])
    if not opts.quick:
        print("  profile", flush=True)
        j8 = rec["jaxdyn_by_tol"]["1e-08"]
        rec["profile"] = _profile(opts, ref, j8["tried_steps"], j8["us_per_tried_step"])
    return rec


def _work_precision(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """For every peer point, jaxdyn's time at the same error (log-log interpolation)."""
    import numpy as np

    jd = sorted((v["max_abs_error_0_100"], v["warm_median_s"]) for v in rec["jaxdyn"].values())
    le = np.log([e for e, _ in jd])
    lt = np.log([t for _, t in jd])
    out = []
    for peer in ("jitcdde", "ddeint"):
        for setting, v in (rec.get(peer) or {}).items():
            if not isinstance(v, dict) or "warm_median_s" not in v:
                continue
            err = v["max_abs_error_0_100"]
            inside = le[0] <= math.log(err) <= le[-1]
            t_j = float(np.exp(np.interp(math.log(err), le, lt))) if inside else None
            out.append({"peer": peer, "peer_setting": setting, "peer_error": err,
                        "peer_warm_s": v["warm_median_s"], "jaxdyn_warm_s_at_equal_error": t_j,
                        "speedup_at_equal_error": None if t_j is None else v["warm_median_s"] / t_j,
                        "note": None if inside else "outside jaxdyn's error range (no extrapolation)"})
    return out


def _profile(opts: Options, ref, n_steps: int, adaptive_us: float) -> dict[str, Any]:
    """Where `solve`'s per-step time goes. Constant steps (`n_steps` of them, the tried steps of the
    adaptive run at tol 1e-8) so that every variant takes the same steps; variants patch one part out
    inside this process (their values are wrong; only their time is used)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    import jaxdyn.dde._solve as solve_mod
    from jaxdyn.dde import solve

    h = jnp.array([H0])
    dt = T1 / n_steps
    ts = jnp.asarray(_save_grid())
    delays = jnp.array([TAU])

    out: dict[str, Any] = {"n_steps": n_steps, "dt": dt}

    def measure(name, **kwargs):
        def constant_run(h):  # a fresh function each time: jit traces it again, with the patch
            sol = solve(_mg, h, delays, 0.0, T1, dt0=dt, saveat=ts, max_steps=n_steps + 64, throw=False,
                        **kwargs)
            return sol.ys[:, 0], sol.stats["num_steps"]

        fn = jax.jit(constant_run)
        r, res = _time(f"profile {name}", lambda fn=fn: fn(h), opts)
        out[name] = {"warm_median_s": r["warm_median_s"], "compile_s": r["compile_s"],
                     "us_per_step": r["warm_median_s"] / int(res[1]) * 1e6}

    measure("full")
    measure("direct_adjoint_bounded_loop", adjoint=diffrax.DirectAdjoint())
    saved = (solve_mod.window_lookup, solve_mod.step_coefficients)
    try:
        solve_mod.window_lookup = lambda window, t0, history, t: history(t)
        measure("no_delayed_lookup")
        solve_mod.window_lookup = saved[0]
        solve_mod.step_coefficients = lambda matrix, y0, y1, ks: jnp.zeros(
            (matrix.shape[0],) + y0.shape, y0.dtype)
        measure("no_dense_coefficients")
    finally:
        solve_mod.window_lookup, solve_mod.step_coefficients = saved
    # diffrax's own ODE step on the same steps (the field with y(t - tau) replaced by y(t))
    term = diffrax.ODETerm(lambda t, y, args: BETA * y / (1 + y ** POWER) - GAMMA * y)
    ode = jax.jit(lambda h: diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, T1, dt, h,
                                                saveat=diffrax.SaveAt(ts=ts), max_steps=n_steps + 64).ys)
    r, _ = _time("profile diffrax ODE", lambda: ode(h), opts)
    out["diffrax_ode_same_steps"] = {"warm_median_s": r["warm_median_s"], "compile_s": r["compile_s"],
                                     "us_per_step": r["warm_median_s"] / n_steps * 1e6}
    full = out["full"]["us_per_step"]
    out["adaptive_us_per_tried_step"] = adaptive_us
    out["breakdown_us_per_step"] = {
        "total_adaptive": adaptive_us,
        "adaptive_step_control": adaptive_us - full,
        "total_constant_steps": full,
        "delayed_lookups": full - out["no_delayed_lookup"]["us_per_step"],
        "dense_coefficients": full - out["no_dense_coefficients"]["us_per_step"],
        "extra_for_DirectAdjoint_bounded_loop": out["direct_adjoint_bounded_loop"]["us_per_step"] - full,
        "rest (stages, field, controller, buffer writes)": out["no_delayed_lookup"]["us_per_step"]
        - (full - out["no_dense_coefficients"]["us_per_step"]),
    }
    out["what"] = ("jaxdyn solve with Tsit5 and constant steps (as many as the adaptive run at tol 1e-8 "
                   "tries): full (default adjoint RecursiveCheckpointAdjoint: a plain while loop when not "
                   "differentiated); with adjoint=DirectAdjoint (equinox's bounded while loop, for forward "
                   "mode too); the delayed lookups (window search + Horner) replaced by the history; "
                   "the per-step dense coefficients (one small matrix product of the stages) replaced by "
                   "zeros; diffrax.diffeqsolve of the ODE y' = f(y, y) on the same steps "
                   "as the floor one RK step costs in JAX here. Parts are not additive exactly (XLA fuses "
                   "across them). adaptive_step_control: us per tried step of the adaptive run at tol 1e-8 "
                   "minus the constant-step run (PID controller, rejected steps).")
    return out


def _case_batch(opts: Options, status: dict[str, Any]) -> dict[str, Any]:
    import diffrax
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.dde import solve_batch

    hs = np.linspace(0.5, 1.5, BATCH)
    hj = jnp.asarray(hs)
    ts = jnp.asarray(_save_grid())
    rec: dict[str, Any] = {"n_histories": BATCH, "tol": BATCH_TOL}

    @jax.jit
    def shared(h):
        sol = solve_batch(_mg, h[:, None], jnp.array([TAU]), 0.0, T1, dt0=0.1, saveat=ts,
                          max_steps=BATCH_MAX_STEPS,
                          stepsize_controller=diffrax.PIDController(rtol=BATCH_TOL, atol=BATCH_TOL))
        return sol.ys[:, :, 0].T, sol.stats["num_steps"]

    r, out = _time("jaxdyn solve_batch (shared steps)", lambda: shared(hj), opts)
    r.update(max_steps=BATCH_MAX_STEPS, tried_steps=int(out[1]),
             api="jax.jit(solve_batch(mg, histories[:, None], [17], 0, 1000, PIDController(1e-6, 1e-6))): "
                 "one (256, 1) state, shared steps, error norm = max over members of the RMS norm")
    r.pop("repeats_s")
    rec["jaxdyn"] = r
    one, _ = _jaxdyn_solver(BATCH_TOL, BATCH_MAX_STEPS)
    fn = jax.jit(jax.vmap(lambda h: one(h[None])))
    rv, outv = _time("jaxdyn jit(vmap(solve)) (per-member steps)", lambda: fn(hj), opts, max_repeats=3)
    rv.update(max_steps=BATCH_MAX_STEPS, max_tried_steps=int(jnp.max(outv[2])),
              api="jax.jit(jax.vmap(solve)) over the 256 histories: each member its own steps")
    rv.pop("repeats_s")
    rec["jaxdyn_vmap"] = rv
    diff = np.abs(np.asarray(out[0]) - np.asarray(outv[0]))[:, _save_grid() <= ERR_WINDOW].max()
    rec["max_abs_diff_shared_vs_vmap_0_100"] = float(diff)
    rec["speedup"] = {}
    if status["jitcdde"]["status"] == "ok":
        stride = 32 if opts.quick else 8
        t0 = time.perf_counter()
        dde = _jitcdde_build()
        build = time.perf_counter() - t0
        sub = hs[::stride]

        def loop():
            return np.stack([_jitcdde_run(dde, BATCH_TOL, float(x)) for x in sub])

        rp, outp = _time(f"jitcdde loop ({len(sub)} histories, scaled x{stride})", loop, opts, warm=False,
                         max_repeats=5)
        measured = rp["warm_median_s"]
        rp = {"warm_median_s": measured * stride, "compile_s": build, "scaled": True, "stride": stride,
              "measured_warm_median_s": measured, "measured_histories": len(sub),
              "n_repeats": rp["n_repeats"], "warm_iqr_s": [x * stride for x in rp["warm_iqr_s"]]}
        diff = np.abs(np.asarray(out[0])[::stride] - outp)[:, _save_grid() <= ERR_WINDOW].max()
        rp["max_abs_diff_vs_jaxdyn_0_100"] = float(diff)
        rec["jitcdde"] = rp
        rec["speedup"]["jitcdde"] = rp["warm_median_s"] / r["warm_median_s"]
        rec["speedup_vmap_vs_jitcdde"] = rp["warm_median_s"] / rv["warm_median_s"]
    else:
        rec["jitcdde"] = status["jitcdde"]
    return rec


def _case_neural(opts: Options, status: dict[str, Any]) -> dict[str, Any]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.models import DelayMLPField, FixedStep, NeuralDDE

    m, w, B = NN["state"], NN["width"], NN["batch"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, m)).astype(np.float32)
    target = rng.normal(size=(B, m)).astype(np.float32) * 0.5
    field = DelayMLPField(m, w, NN["depth"], 1, key=jax.random.key(0))
    field = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, field)
    model = NeuralDDE(field, jnp.array([NN["tau"]], jnp.float32), t1=NN["t1"],
                      stepping=FixedStep(NN["n_steps"], "rk4"))
    # torch weights <- the same initial weights
    W = [(np.array(layer.weight), np.array(layer.bias)) for layer in model.field.mlp.layers]
    xj, yj = jnp.asarray(x), jnp.asarray(target)
    lr = NN["lr"]

    @eqx.filter_jit
    def step(mlp, rest):
        def loss(mlp):
            mdl = eqx.tree_at(lambda mm: mm.field.mlp, rest, mlp)
            return jnp.mean((jax.vmap(mdl)(xj) - yj) ** 2)

        val, g = eqx.filter_value_and_grad(loss)(mlp)
        mlp = jax.tree_util.tree_map(lambda p, gp: p - lr * gp if eqx.is_inexact_array(p) else p, mlp, g)
        return val, mlp

    mlp0 = model.field.mlp
    state = {"mlp": mlp0}

    def jstep():
        val, state["mlp"] = step(state["mlp"], model)
        return val

    rec: dict[str, Any] = {"problem": NN, "api": "NeuralDDE(DelayMLPField(4, 32, 1, 1), [0.5], t1=1, "
                           "stepping=FixedStep(20, 'rk4')) (jaxdyn.dde.solve_fixed), jax.vmap over the "
                           "batch, "
                           "eqx.filter_value_and_grad, SGD, one eqx.filter_jit"}
    r, loss_j = _time("jaxdyn step", jstep, opts)
    state["mlp"] = mlp0
    rec["initial_loss"] = {"jaxdyn": float(step(mlp0, model)[0])}
    r.pop("repeats_s")
    rec["jaxdyn"] = r
    rec["speedup"] = {}
    if status["torchdde"]["status"] != "ok":
        rec["torchdde"] = status["torchdde"]
        return rec
    import torch
    import torchdde

    torch.set_num_threads(opts.threads)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(2 * m, w)
            self.l2 = torch.nn.Linear(w, m)
            with torch.no_grad():
                self.l1.weight.copy_(torch.from_numpy(W[0][0]))
                self.l1.bias.copy_(torch.from_numpy(W[0][1]))
                self.l2.weight.copy_(torch.from_numpy(W[1][0]))
                self.l2.bias.copy_(torch.from_numpy(W[1][1]))

        def forward(self, t, y, args, *, history):
            return self.l2(torch.tanh(self.l1(torch.cat([y, history[0]], dim=-1))))

    f = Field()
    init = {k: v.clone() for k, v in f.state_dict().items()}
    opt = torch.optim.SGD(f.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(target)
    t0, t1 = torch.tensor(0.0), torch.tensor(NN["t1"])
    ts = torch.tensor([0.0, NN["t1"]])
    delays = torch.tensor([NN["tau"]])

    def tstep():
        opt.zero_grad()
        ys = torchdde.integrate(f, torchdde.RK4(), t0, t1, ts, lambda t: xt, None,
                                stepsize_controller=torchdde.ConstantStepSizeController(),
                                dt0=torch.tensor(NN["dt"]), delays=delays, discretize_then_optimize=True)
        loss = torch.mean((ys[:, -1] - yt) ** 2)
        loss.backward()
        opt.step()
        return loss.detach()

    with torch.no_grad():
        ys = torchdde.integrate(f, torchdde.RK4(), t0, t1, ts, lambda t: xt, None,
                                stepsize_controller=torchdde.ConstantStepSizeController(),
                                dt0=torch.tensor(NN["dt"]), delays=delays, discretize_then_optimize=True)
    rec["initial_loss"]["torchdde"] = float(torch.mean((ys[:, -1] - yt) ** 2))
    hT_j = np.asarray(jax.vmap(model)(xj))
    rec["max_abs_diff_hT_jaxdyn_vs_torchdde"] = float(np.abs(hT_j - ys[:, -1].numpy()).max())
    rt, _ = _time("torchdde step", tstep, opts)
    f.load_state_dict(init)
    rt.pop("repeats_s")
    rt["compile_s"] = None  # nothing to compile: the first call is a warm call
    rt["api"] = ("torchdde.integrate(field, RK4(), 0, 1, [0, 1], history, None, "
                 "ConstantStepSizeController(), dt0=0.05, delays=[0.5], discretize_then_optimize=True); "
                 "loss.backward(); SGD")
    rec["torchdde"] = rt
    rec["speedup"]["torchdde"] = rt["warm_median_s"] / r["warm_median_s"]
    return rec


def _case_lyapunov(opts: Options, status: dict[str, Any]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.lyapunov import dde_spectrum

    dt = LYAP["dt"]
    T = LYAP["time_quick"] if opts.quick else LYAP["time"]
    n = int(round(T / dt))
    ntr = int(round(LYAP["transient_time"] / dt))
    rec: dict[str, Any] = {"time": T, "dt": dt, "n_steps": n, "transient_steps": ntr, "speedup": {}}
    fn = jax.jit(lambda h: dde_spectrum(_mg, h, [TAU], dt=dt, n_steps=n, k=1, transient_steps=ntr,
                                        progress=False).exponents)
    h = jnp.array([H0])
    o2 = Options(quick=opts.quick, repeats=min(opts.repeats, 3), threads=opts.threads)
    r, out = _time("jaxdyn dde_spectrum", lambda: fn(h), o2)
    r["exponent"] = float(out[0])
    r.pop("repeats_s")
    rec["jaxdyn"] = r
    if status["lyapax"]["status"] == "ok":
        from lyapax.dde import dde_problem, lyapunov_spectrum_dde

        prob = dde_problem(lambda s, d: BETA * d / (1 + d ** POWER) - GAMMA * s, jnp.array([H0]), tau=TAU,
                           dt=dt, integrator="rk4")
        lfn = jax.jit(lambda: lyapunov_spectrum_dde(prob, n_steps=n, k=1,
                                                    t_transient=LYAP["transient_time"]).exponents)
        rl, outl = _time("lyapax lyapunov_spectrum_dde", lfn, o2)
        rl["exponent"] = float(np.asarray(outl).reshape(-1)[0])
        rl.pop("repeats_s")
        rl["api"] = ("lyapunov_spectrum_dde(dde_problem(rhs, [1.2], tau=17, dt=0.1, integrator='rk4'), "
                     "n_steps=N, k=1, t_transient=100) (tau is a whole number of steps: no interpolation)")
        rec["lyapax"] = rl
        rec["speedup"]["lyapax"] = rl["warm_median_s"] / r["warm_median_s"]
    else:
        rec["lyapax"] = status["lyapax"]
    if status["jitcdde"]["status"] == "ok":
        from jitcdde import jitcdde_lyap, t, y

        t0 = time.perf_counter()
        with _quiet_build_dir():
            dl = jitcdde_lyap([BETA * y(0, t - TAU) / (1 + y(0, t - TAU) ** POWER) - GAMMA * y(0)], n_lyap=1,
                              verbose=False)
            dl.compile_C(verbose=False)
        build = time.perf_counter() - t0
        step = LYAP["jitcdde_interval"]

        def run_lyap():
            with _quiet_build_dir():
                dl.constant_past([H0])
                dl.set_integration_parameters(rtol=LYAP["jitcdde_tol"], atol=LYAP["jitcdde_tol"],
                                              max_step=LYAP["jitcdde_max_step"], first_step=0.1)
                dl.adjust_diff()
                s = 0.0
                while s < LYAP["transient_time"] - 1e-9:
                    s += step
                    dl.integrate(s)
                num = den = 0.0
                for _ in range(int(round(T / step))):
                    s += step
                    _, ly, w = dl.integrate(s)
                    num += ly[0] * w
                    den += w
            return np.array(num / den)

        rj, outj = _time("jitcdde_lyap", run_lyap, Options(quick=opts.quick, repeats=min(opts.repeats, 2),
                                                            threads=opts.threads), warm=False)
        rj["exponent"] = float(outj)
        rj["compile_s"] = build
        rj.pop("repeats_s")
        rec["jitcdde_lyap"] = rj
        rec["speedup"]["jitcdde_lyap"] = rj["warm_median_s"] / r["warm_median_s"]
    else:
        rec["jitcdde_lyap"] = status["jitcdde"]
    return rec


# -- entry point ---------------------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)
    cases = select_cases(opts, CASES, NAME)
    status: dict[str, Any] = {}
    for p in PEERS:
        missing = missing_modules(PEER_MODULES[p])
        if missing:
            status[p] = peer_missing_record(p, missing)
        else:
            status[p] = {"status": "ok"}
    results: dict[str, Any] = {"cases": {}, "peer": status, "peer_versions": versions(
        ("jitcdde", "jitcxde_common", "symengine", "ddeint", "torchdde", "torch", "lyapax", "scipy"))}
    runners = {"mackey_glass": _case_mackey_glass, "batch": _case_batch, "neural_dde_step": _case_neural,
               "lyapunov": _case_lyapunov}
    for case in cases:
        print(f"\n== case {case!r} ==", flush=True)
        rec = runners[case](opts, status)
        results["cases"][case] = rec
        _print_case(case, rec)
    results["goal"] = _goals(results["cases"])
    print("\ngoals:")
    for g in results["goal"]["goals"]:
        verdict = "not evaluated" if g["met"] is None else ("MET" if g["met"] else "NOT MET")
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        print(f"  {g['statement']}: {value} (threshold {g['threshold']:g}): {verdict}")
    mg = {"beta": BETA, "gamma": GAMMA, "n": POWER, "tau": TAU, "history": H0, "t1": T1,
          "save_grid": "0, 1, ..., 1000", "error_window": [0, ERR_WINDOW],
          "tols": list(TOLS_QUICK if opts.quick else TOLS), "max_steps": MAX_STEPS,
          "ddeint_dt": list(DDEINT_DT_QUICK if opts.quick else DDEINT_DT)}
    results["problem"] = {"mackey_glass": mg,
                          "batch": {"n": BATCH, "histories": [0.5, 1.5], "tol": BATCH_TOL},
                          "neural_dde_step": NN, "lyapunov": LYAP}
    results["timing_method"] = {
        "compile_s": "first call - warm median; jitcdde: the C build (timed apart); ddeint: none",
        "repeats": f"min(--repeats, max(1 or 2, {BUDGET_S[opts.quick]:g} s / one run)) per side; ddeint at "
                   "most 3, jitcdde loop at most 5; see n_repeats",
        "warm-up": "one untimed warm-up call for JAX and torch sides",
    }
    results["description"] = DESCRIPTION
    return results


def _goals(cases: dict[str, Any]) -> dict[str, Any]:
    goals = []

    def add(name, statement, value, threshold):
        met = None if value is None else bool(value >= threshold)
        goals.append({"name": name, "statement": statement, "value": value, "threshold": threshold,
                      "met": met})

    mg = cases.get("mackey_glass")
    add("mackey_glass_vs_jitcdde", "one trajectory at equal error (jitcdde tol 1e-8) within 3x of jitcdde "
        "(speedup >= 1/3)", mg["speedup"].get("jitcdde") if mg else None, 1 / 3)
    b = cases.get("batch")
    add("batch_vs_jitcdde_loop", "256 histories >= 5x faster than the jitcdde loop",
        b["speedup"].get("jitcdde") if b else None, 5.0)
    n = cases.get("neural_dde_step")
    add("neural_step_vs_torchdde", "training step >= 3x faster than torchdde",
        n["speedup"].get("torchdde") if n else None, 3.0)
    evaluated = [g["met"] for g in goals if g["met"] is not None]
    return dict(GOAL, speedup=mg["speedup"].get("jitcdde") if mg else None,
                met=None if not evaluated else all(evaluated), goals=goals,
                all_evaluated=len(evaluated) == len(goals))


def _print_case(case: str, rec: dict[str, Any]) -> None:
    if case == "mackey_glass":
        rows = []
        for side in ("jaxdyn", "jitcdde", "ddeint"):
            key = side + ("_by_grid" if side == "ddeint" else "_by_tol")
            for setting, r in (rec.get(key) or {}).items():
                if isinstance(r, dict) and "warm_median_s" in r:
                    rows.append([side, setting, fmt_s(r["compile_s"]), fmt_s(r["warm_median_s"]),
                                 f"{r['max_abs_error_0_100']:.1e}", f"{r['max_abs_error_0_1000']:.1e}",
                                 str(r.get("tried_steps", "-"))])
        print_table(rows, ["side", "tol/grid", "compile", "warm", "err [0,100]", "err [0,1000]", "steps"])
        for w in rec["work_precision"]:
            sp = w["speedup_at_equal_error"]
            print(f"  at {w['peer']} {w['peer_setting']} error {w['peer_error']:.1e}: peer "
                  f"{fmt_s(w['peer_warm_s'])}, jaxdyn {fmt_s(w['jaxdyn_warm_s_at_equal_error'])}, speedup "
                  + ("-" if sp is None else f"{sp:.2f}x"))
        p = rec.get("profile")
        if p:
            for k, v in p.items():
                if isinstance(v, dict) and "us_per_step" in v:
                    print(f"  profile {k}: warm {fmt_s(v['warm_median_s'])}, "
                          f"{v['us_per_step']:.2f} us/step, compile {fmt_s(v['compile_s'])}")
            print("  per-step breakdown (us): " + ", ".join(
                f"{k} {v:.2f}" for k, v in p["breakdown_us_per_step"].items()))
        return
    rows = []
    for side, r in rec.items():
        if isinstance(r, dict) and "warm_median_s" in r:
            sp = rec["speedup"].get(side)
            extra = f"lambda1 {r['exponent']:.5f}" if "exponent" in r else ""
            rows.append([side, fmt_s(r.get("compile_s")), fmt_s(r["warm_median_s"]),
                         "-" if sp is None else f"{sp:.2f}x", extra])
    print_table(rows, ["side", "compile", "warm", "peer/jaxdyn", ""])
    if case == "batch" and "speedup_vmap_vs_jitcdde" in rec:
        print(f"  jitcdde loop / jit(vmap(solve)) (per-member steps): {rec['speedup_vmap_vs_jitcdde']:.2f}x; "
              f"peer/jaxdyn above is for solve_batch (shared steps)")
