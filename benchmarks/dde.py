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

Compile time = first call - warm median (jitcdde: the C build, timed apart). The sides of a case
are timed together with interleaved repeats, each capped by a time budget (counts in the JSON).
Without --quick, `mackey_glass.profile` splits `solve`'s time per step: Tsit5 with constant steps
(as many as the adaptive run at tol 1e-8 tries), full (default adjoint), with
`adjoint=diffrax.DirectAdjoint()` (equinox's bounded loop), and with one part patched out inside
this process (the delayed-value lookups -> the history; the per-step dense coefficients -> zeros),
and diffrax.diffeqsolve of the corresponding ODE on the same steps as the floor of one RK step in
JAX. jaxdyn runs `solve` with its default adjoint (`diffrax.RecursiveCheckpointAdjoint()`,
reverse-mode differentiable, as diffrax's default).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import warnings
from typing import Any

from _common import Goal, Peer, Side, noop, paired, ratio_of, speedups, spread_of, time_sides

NAME = "dde"
DESCRIPTION = ("Mackey-Glass DDE (work-precision) vs jitcdde and ddeint, a 256-history batch, a "
               "neural DDE training step vs torchdde, and the top Lyapunov exponent")
X64 = True
X64_REASON = ("the work-precision curve runs to tolerance 1e-10 against a 1e-12 reference (float32 stops "
              "near 1e-7); the neural DDE step is float32 on both sides regardless")
PEER = "jitcdde"
PEERS = {"jitcdde": Peer(("jitcdde", "symengine"), ("jitcdde", "jitcxde_common", "symengine")),
         "ddeint": Peer(("ddeint",), ("ddeint", "scipy")),
         "torchdde": Peer(("torchdde", "torch"), ("torchdde", "torch")),
         "lyapax": Peer(("lyapax",))}
HEADLINE = "mackey_glass"
CASES = ("mackey_glass", "batch", "neural_dde_step", "lyapunov")
STATEMENT = ("one Mackey-Glass trajectory at equal error within 3x of jitcdde's time; the 256-history "
             "batch >= 5x faster than the jitcdde loop; a neural DDE training step >= 3x faster than "
             "torchdde")

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
PROBLEM = {"mackey_glass": {"beta": BETA, "gamma": GAMMA, "n": POWER, "tau": TAU, "history": H0, "t1": T1,
                            "save_grid": "0, 1, ..., 1000", "error_window": [0, ERR_WINDOW],
                            "max_steps": MAX_STEPS},
           "batch": {"n": BATCH, "histories": [0.5, 1.5], "tol": BATCH_TOL},
           "neural_dde_step": NN, "lyapunov": LYAP}


# -- the problem ---------------------------------------------------------------------------------


def _time(ctx, sides: list[Side]):
    """This module's timing policy: interleaved, each side capped by the time budget."""
    return time_sides(sides, repeats=ctx.opts.repeats, budget_s=BUDGET_S[ctx.quick],
                      min_repeats=ctx.paired_rounds)


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


def _jaxdyn_solver(tol: float, max_steps: int = MAX_STEPS):
    import diffrax
    import jax.numpy as jnp

    from jaxdyn.dde import solve

    ts = jnp.asarray(_save_grid())
    delays = jnp.array([TAU])

    def one(h):
        sol = solve(_mg, h, delays, 0.0, T1, dt0=0.1, saveat=ts, max_steps=max_steps,
                    stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol))
        return sol.ys[:, 0], sol.stats["num_accepted_steps"], sol.stats["num_steps"]

    return one


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


def _jitcdde(ctx):
    """One compiled jitcdde (C build timed once), shared by the cases."""
    if "jitcdde" not in ctx.state:
        recs, outs = time_sides([Side("jitcdde build", lambda dde: dde, build=_jitcdde_build, sync=noop,
                                      max_repeats=0)], repeats=1)
        ctx.state["jitcdde"] = outs["jitcdde build"], recs["jitcdde build"]["build_s"]
    return ctx.state["jitcdde"]


def _drop_repeats(recs: dict[str, dict[str, Any]]) -> None:
    for r in recs.values():
        r.pop("repeats_s", None)


# -- cases ---------------------------------------------------------------------------------------


def case_mackey_glass(ctx) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    tols = TOLS_QUICK if ctx.quick else TOLS
    rec: dict[str, Any] = {"headline": True}
    h = jnp.array([H0])
    if ctx.ok("jitcdde"):
        dde, build = _jitcdde(ctx)
        ref = _jitcdde_run(dde, REF_TOL)
        rec["reference"] = {"side": "jitcdde", "rtol": REF_TOL, "atol": REF_TOL}
    else:
        dde, build = None, None
        ref = np.asarray(jax.jit(_jaxdyn_solver(1e-11, 16384))(h)[0])
        rec["reference"] = {"side": "jaxdyn", "rtol": 1e-11, "atol": 1e-11}
    solvers = {tol: jax.jit(_jaxdyn_solver(tol)) for tol in tols}
    sides = [Side(f"jaxdyn {tol:g}", lambda tol=tol: solvers[tol](h)) for tol in tols]
    if dde is not None:
        sides += [Side(f"jitcdde {tol:g}", lambda tol=tol: _jitcdde_run(dde, tol), sync=noop, warmup=False)
                  for tol in tols]
    if ctx.ok("ddeint"):
        from ddeint import ddeint

        def model(Y, t):
            d = Y(t - TAU)
            return BETA * d / (1 + d ** POWER) - GAMMA * Y(t)

        def run_ddeint(grid):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ys = np.asarray(ddeint(model, lambda t: H0, grid)).reshape(-1)
            return np.interp(_save_grid(), grid, ys)

        sides += [Side(f"ddeint dt {dt:g}", lambda dt=dt: run_ddeint(np.arange(0.0, T1 + dt / 2, dt)),
                       sync=noop, warmup=False, max_repeats=3)
                  for dt in (DDEINT_DT_QUICK if ctx.quick else DDEINT_DT)]
    recs, outs = _time(ctx, sides)
    by: dict[str, dict[str, Any]] = {"jaxdyn": {}, "jitcdde": {}, "ddeint": {}}
    for name, r in recs.items():
        side, setting = name.split(" ", 1)
        out = outs[name]
        if side == "jaxdyn":
            r.update(_errors(out[0], ref), accepted_steps=int(out[1]), tried_steps=int(out[2]),
                     us_per_tried_step=r["warm_median_s"] / int(out[2]) * 1e6)
        else:
            r.update(_errors(out, ref))
            r["compile_s"] = build if side == "jitcdde" else None
        by[side][setting] = r
    for side in ("jitcdde", "ddeint"):
        if not ctx.ok(side):
            by[side] = ctx.peers[side]
    wp = _work_precision(by)
    head = next((w for w in wp if w["peer"] == "jitcdde" and w["peer_setting"] == "1e-08"), None)
    head_paired = None if head is None else _paired_at_equal_error(by, "jitcdde", "1e-08")
    _drop_repeats(recs)
    j8 = by["jaxdyn"].get("1e-08", {})
    rec.update({
        "jaxdyn_by_tol": by["jaxdyn"], "jitcdde_by_tol": by["jitcdde"], "ddeint_by_grid": by["ddeint"],
        "work_precision": wp, "headline_point": head,
        "speedup": {"jitcdde": None if head_paired is None else head_paired["median"]},
        "speedup_paired": {"jitcdde": head_paired},
        "speedup_of_medians": {"jitcdde": None if head is None else head["speedup_at_equal_error"]},
        # `jaxdyn`/`jitcdde`: the headline point (for run.py's summary)
        "jaxdyn": {"warm_median_s": None if head is None else head["jaxdyn_warm_s_at_equal_error"],
                   "compile_s": j8.get("compile_s"),
                   "note": "warm: interpolated at jitcdde's 1e-8 error; compile: at tol 1e-8"},
        "jitcdde": by["jitcdde"].get("1e-08", by["jitcdde"])})
    if build is not None:
        rec["jitcdde_build_s"] = build
    if not ctx.quick:
        print("  profile", flush=True)
        rec["profile"] = _profile(ctx, j8["tried_steps"], j8["us_per_tried_step"])
    return rec


def _work_precision(by: dict[str, Any]) -> list[dict[str, Any]]:
    """For every peer point, jaxdyn's time at the same error (log-log interpolation)."""
    import numpy as np

    jd = sorted((v["max_abs_error_0_100"], v["warm_median_s"]) for v in by["jaxdyn"].values())
    le = np.log([e for e, _ in jd])
    lt = np.log([t for _, t in jd])
    out = []
    for peer in ("jitcdde", "ddeint"):
        for setting, v in (by.get(peer) or {}).items():
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


def _paired_at_equal_error(by: dict[str, Any], peer: str, setting: str) -> dict[str, Any] | None:
    """The headline ratio per interleaved round: in round r, jaxdyn's log-time vs log-error curve
    (its round-r times at each tolerance) interpolated at the peer point's error, and the peer's
    round-r time over it; median, IQR, min, max, n over the rounds every side ran."""
    import numpy as np

    v = by[peer][setting]
    jd = sorted(by["jaxdyn"].values(), key=lambda r: r["max_abs_error_0_100"])
    le = np.log([r["max_abs_error_0_100"] for r in jd])
    err = math.log(v["max_abs_error_0_100"])
    if not le[0] <= err <= le[-1]:
        return None
    n = min(r["rounds"] for r in [*jd, v])
    if n == 0:
        return None
    slow = v["repeats_s"][:n]
    fast = [float(np.exp(np.interp(err, le, np.log([r["repeats_s"][i] for r in jd])))) for i in range(n)]
    out = paired({"repeats_s": slow, "rounds": n, "warm_median_s": None},
                 {"repeats_s": fast, "rounds": n, "warm_median_s": None})
    out["jaxdyn_times_at_equal_error_s"] = fast
    return out


@contextlib.contextmanager
def _patched(module, name: str, value):
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def _profile(ctx, n_steps: int, adaptive_us: float) -> dict[str, Any]:
    """Where `solve`'s per-step time goes (the ablations). Constant steps (`n_steps` of them, the
    tried steps of the adaptive run at tol 1e-8) so that every variant takes the same steps;
    variants patch one part of `jaxdyn.dde._solve` out while they are compiled (their values are
    wrong; only their time is used)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    import jaxdyn.dde._solve as solve_mod
    from jaxdyn.dde import solve

    h = jnp.array([H0])
    dt = T1 / n_steps
    ts = jnp.asarray(_save_grid())
    delays = jnp.array([TAU])

    def variant(patch=contextlib.nullcontext, **kwargs):
        def build():
            def constant_run(h):
                sol = solve(_mg, h, delays, 0.0, T1, dt0=dt, saveat=ts, max_steps=n_steps + 64,
                            throw=False, **kwargs)
                return sol.ys[:, 0], sol.stats["num_steps"]

            with patch():  # a fresh function compiled under the patch
                return jax.jit(constant_run).lower(h).compile()

        return build

    no_lookup = lambda: _patched(solve_mod, "window_lookup", lambda window, t0, history, t: history(t))
    no_coeffs = lambda: _patched(solve_mod, "step_coefficients", lambda matrix, y0, y1, ks: jnp.zeros(
        (matrix.shape[0],) + y0.shape, y0.dtype))
    builds = {"full": variant(), "direct_adjoint_bounded_loop": variant(adjoint=diffrax.DirectAdjoint())}
    missing = [n for n in ("window_lookup", "step_coefficients") if not hasattr(solve_mod, n)]
    if not missing:
        builds.update(no_delayed_lookup=variant(no_lookup), no_dense_coefficients=variant(no_coeffs))
    sides = [Side(f"profile {name}", lambda c: c(h), build=b) for name, b in builds.items()]
    # diffrax's own ODE step on the same steps (the field with y(t - tau) replaced by y(t))
    term = diffrax.ODETerm(lambda t, y, args: BETA * y / (1 + y ** POWER) - GAMMA * y)
    ode = jax.jit(lambda h: diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, T1, dt, h,
                                                saveat=diffrax.SaveAt(ts=ts), max_steps=n_steps + 64).ys)
    sides.append(Side("profile diffrax_ode_same_steps", lambda: ode(h)))
    recs, outs = _time(ctx, sides)
    out: dict[str, Any] = {"n_steps": n_steps, "dt": dt}
    for name, r in recs.items():
        name = name.removeprefix("profile ")
        steps = n_steps if name == "diffrax_ode_same_steps" else int(outs[f"profile {name}"][1])
        out[name] = {"warm_median_s": r["warm_median_s"], "compile_s": r["compile_s"],
                     "us_per_step": r["warm_median_s"] / steps * 1e6}
    full = out["full"]["us_per_step"]
    out["adaptive_us_per_tried_step"] = adaptive_us
    out["breakdown_us_per_step"] = {
        "total_adaptive": adaptive_us,
        "adaptive_step_control": adaptive_us - full,
        "total_constant_steps": full,
        "extra_for_DirectAdjoint_bounded_loop": out["direct_adjoint_bounded_loop"]["us_per_step"] - full,
    }
    if missing:
        out["patch_note"] = f"jaxdyn.dde._solve has no {missing}: lookup/coefficient ablations not run"
    else:
        out["breakdown_us_per_step"].update({
            "delayed_lookups": full - out["no_delayed_lookup"]["us_per_step"],
            "dense_coefficients": full - out["no_dense_coefficients"]["us_per_step"],
            "rest (stages, field, controller, buffer writes)": out["no_delayed_lookup"]["us_per_step"]
            - (full - out["no_dense_coefficients"]["us_per_step"])})
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


def case_batch(ctx) -> dict[str, Any]:
    import diffrax
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.dde import solve_batch

    hs = np.linspace(0.5, 1.5, BATCH)
    hj = jnp.asarray(hs)
    ts = jnp.asarray(_save_grid())

    @jax.jit
    def shared(h):
        sol = solve_batch(_mg, h[:, None], jnp.array([TAU]), 0.0, T1, dt0=0.1, saveat=ts,
                          max_steps=BATCH_MAX_STEPS,
                          stepsize_controller=diffrax.PIDController(rtol=BATCH_TOL, atol=BATCH_TOL))
        return sol.ys[:, :, 0].T, sol.stats["num_steps"]

    one = _jaxdyn_solver(BATCH_TOL, BATCH_MAX_STEPS)
    vmapped = jax.jit(jax.vmap(lambda h: one(h[None])))
    sides = [Side("jaxdyn", lambda: shared(hj), info={
                 "max_steps": BATCH_MAX_STEPS,
                 "api": "jax.jit(solve_batch(mg, histories[:, None], [17], 0, 1000, PIDController(1e-6, "
                        "1e-6))): one (256, 1) state, shared steps, error norm = max over members of the "
                        "RMS norm"}),
             Side("jaxdyn_vmap", lambda: vmapped(hj), max_repeats=max(3, ctx.paired_rounds), info={
                 "max_steps": BATCH_MAX_STEPS,
                 "api": "jax.jit(jax.vmap(solve)) over the 256 histories: each member its own steps"})]
    stride = 32 if ctx.quick else 8
    sub = hs[::stride]
    if ctx.ok("jitcdde"):
        dde, build = _jitcdde(ctx)
        sides.append(Side("jitcdde", lambda: np.stack([_jitcdde_run(dde, BATCH_TOL, float(x)) for x in sub]),
                          sync=noop, warmup=False, max_repeats=5, scale=lambda m, out: m * stride,
                          info={"compile_s": build, "stride": stride, "measured_histories": len(sub)}))
    recs, outs = _time(ctx, sides)
    sp = speedups(recs, ["jitcdde"])
    sp_vmap = speedups(recs, ["jitcdde"], base="jaxdyn_vmap")
    _drop_repeats(recs)
    recs["jaxdyn"]["tried_steps"] = int(outs["jaxdyn"][1])
    recs["jaxdyn_vmap"]["max_tried_steps"] = int(jnp.max(outs["jaxdyn_vmap"][2]))
    window = _save_grid() <= ERR_WINDOW
    shared_ys = np.asarray(outs["jaxdyn"][0])
    diff = np.abs(shared_ys - np.asarray(outs["jaxdyn_vmap"][0]))[:, window].max()
    rec: dict[str, Any] = {"n_histories": BATCH, "tol": BATCH_TOL, **recs,
                           "max_abs_diff_shared_vs_vmap_0_100": float(diff), "speedup": {}}
    if ctx.ok("jitcdde"):
        rp = recs["jitcdde"]
        rp["compile_s"] = build
        rp["measured_warm_median_s"] = rp["measured"]["warm_median_s"]
        diff_p = np.abs(shared_ys[::stride] - outs["jitcdde"])[:, window].max()
        rp["max_abs_diff_vs_jaxdyn_0_100"] = float(diff_p)
        rec.update(sp)
        rec["speedup_vmap_vs_jitcdde"] = sp_vmap["speedup"]["jitcdde"]
        rec["speedup_vmap_vs_jitcdde_paired"] = sp_vmap["speedup_paired"]["jitcdde"]
    else:
        rec["jitcdde"] = ctx.peers["jitcdde"]
    return rec


def _torchdde_side(ctx, W, x, target):
    """The torchdde training step on the same weights, data and grid; and h(T) at the start."""
    import numpy as np
    import torch
    import torchdde

    m, w = NN["state"], NN["width"]
    torch.set_num_threads(ctx.opts.threads)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(2 * m, w)
            self.l2 = torch.nn.Linear(w, m)
            with torch.no_grad():
                for lin, (wt, b) in zip((self.l1, self.l2), W, strict=True):
                    lin.weight.copy_(torch.from_numpy(wt))
                    lin.bias.copy_(torch.from_numpy(b))

        def forward(self, t, y, args, *, history):
            return self.l2(torch.tanh(self.l1(torch.cat([y, history[0]], dim=-1))))

    f = Field()
    init = {k: v.clone() for k, v in f.state_dict().items()}
    opt = torch.optim.SGD(f.parameters(), lr=NN["lr"])
    xt, yt = torch.from_numpy(x), torch.from_numpy(target)
    t0, t1 = torch.tensor(0.0), torch.tensor(NN["t1"])
    ts = torch.tensor([0.0, NN["t1"]])

    def integrate():
        return torchdde.integrate(f, torchdde.RK4(), t0, t1, ts, lambda t: xt, None,
                                  stepsize_controller=torchdde.ConstantStepSizeController(),
                                  dt0=torch.tensor(NN["dt"]), delays=torch.tensor([NN["tau"]]),
                                  discretize_then_optimize=True)

    def step():
        opt.zero_grad()
        loss = torch.mean((integrate()[:, -1] - yt) ** 2)
        loss.backward()
        opt.step()
        return loss.detach()

    with torch.no_grad():
        hT = integrate()[:, -1]
    return step, lambda: f.load_state_dict(init), np.asarray(hT.numpy()), float(torch.mean((hT - yt) ** 2))


def case_neural_dde_step(ctx) -> dict[str, Any]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.dde
    from jaxdyn.models import DelayMLPField, FixedStep, NeuralDDE

    m, w, B = NN["state"], NN["width"], NN["batch"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, m)).astype(np.float32)
    target = rng.normal(size=(B, m)).astype(np.float32) * 0.5
    field = DelayMLPField(m, w, NN["depth"], 1, key=jax.random.key(0))
    field = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, field)
    rk4 = getattr(jaxdyn.dde, "RK4", "rk4")  # the tableau; the string before issue 14
    model = NeuralDDE(field, jnp.array([NN["tau"]], jnp.float32), t1=NN["t1"],
                      stepping=FixedStep(NN["n_steps"], rk4))
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

    sides = [Side("jaxdyn", jstep)]
    rec: dict[str, Any] = {"problem": NN, "speedup": {},
                           "api": "NeuralDDE(DelayMLPField(4, 32, 1, 1), [0.5], t1=1, stepping=FixedStep(20, "
                                  "'rk4')) (jaxdyn.dde.solve_fixed), jax.vmap over the batch, "
                                  "eqx.filter_value_and_grad, SGD, one eqx.filter_jit"}
    if ctx.ok("torchdde"):
        tstep, treset, hT_t, loss_t = _torchdde_side(ctx, W, x, target)
        sides.append(Side("torchdde", tstep, sync=noop, info={
            "api": "torchdde.integrate(field, RK4(), 0, 1, [0, 1], history, None, "
                   "ConstantStepSizeController(), dt0=0.05, delays=[0.5], discretize_then_optimize=True); "
                   "loss.backward(); SGD"}))
        hT_j = np.asarray(jax.vmap(model)(xj))
        rec["max_abs_diff_hT_jaxdyn_vs_torchdde"] = float(np.abs(hT_j - hT_t).max())
    recs, _ = _time(ctx, sides)
    sp = speedups(recs, ["torchdde"])
    _drop_repeats(recs)
    state["mlp"] = mlp0
    rec["initial_loss"] = {"jaxdyn": float(step(mlp0, model)[0])}
    rec.update(recs)
    if ctx.ok("torchdde"):
        treset()
        rec["initial_loss"]["torchdde"] = loss_t
        rec["torchdde"]["compile_s"] = None  # nothing to compile: the first call is a warm call
        rec.update(sp)
    else:
        rec["torchdde"] = ctx.peers["torchdde"]
    return rec


def case_lyapunov(ctx) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.lyapunov import dde_spectrum

    dt = LYAP["dt"]
    T = LYAP["time_quick"] if ctx.quick else LYAP["time"]
    n = int(round(T / dt))
    ntr = int(round(LYAP["transient_time"] / dt))
    fn = jax.jit(lambda h: dde_spectrum(_mg, h, [TAU], dt=dt, n_steps=n, k=1, transient_steps=ntr,
                                        progress=False).exponents)
    h = jnp.array([H0])
    sides = [Side("jaxdyn", lambda: fn(h), max_repeats=max(3, ctx.paired_rounds))]
    if ctx.ok("lyapax"):
        from lyapax.dde import dde_problem, lyapunov_spectrum_dde

        prob = dde_problem(lambda s, d: BETA * d / (1 + d ** POWER) - GAMMA * s, jnp.array([H0]), tau=TAU,
                           dt=dt, integrator="rk4")
        lfn = jax.jit(lambda: lyapunov_spectrum_dde(prob, n_steps=n, k=1,
                                                    t_transient=LYAP["transient_time"]).exponents)
        sides.append(Side("lyapax", lfn, max_repeats=max(3, ctx.paired_rounds), info={
            "api": "lyapunov_spectrum_dde(dde_problem(rhs, [1.2], tau=17, dt=0.1, integrator='rk4'), "
                   "n_steps=N, k=1, t_transient=100) (tau is a whole number of steps: no interpolation)"}))
    if ctx.ok("jitcdde"):
        sides.append(Side("jitcdde_lyap", lambda dl: _jitcdde_lyap_run(dl, T), build=_jitcdde_lyap_build,
                          sync=noop, warmup=False, max_repeats=ctx.paired_rounds))
    recs, outs = _time(ctx, sides)
    sp = speedups(recs, [k for k in recs if k != "jaxdyn"])
    _drop_repeats(recs)
    for name, r in recs.items():
        r["exponent"] = float(np.asarray(outs[name]).reshape(-1)[0])
    if "jitcdde_lyap" in recs:
        recs["jitcdde_lyap"]["compile_s"] = recs["jitcdde_lyap"]["build_s"]
    rec: dict[str, Any] = {"time": T, "dt": dt, "n_steps": n, "transient_steps": ntr, **recs, **sp}
    for side, peer in (("lyapax", "lyapax"), ("jitcdde_lyap", "jitcdde")):
        if side not in recs:
            rec[side] = ctx.peers[peer]
    return rec


def _jitcdde_lyap_build():
    from jitcdde import jitcdde_lyap, t, y

    with _quiet_build_dir():
        dl = jitcdde_lyap([BETA * y(0, t - TAU) / (1 + y(0, t - TAU) ** POWER) - GAMMA * y(0)], n_lyap=1,
                          verbose=False)
        dl.compile_C(verbose=False)
    return dl


def _jitcdde_lyap_run(dl, T: float):
    """Transient, then one `integrate` and orthonormalisation per interval; time-weighted mean."""
    import numpy as np

    step = LYAP["jitcdde_interval"]
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


# -- goals, printing, extra JSON -----------------------------------------------------------------


def goals(cases: dict[str, Any]) -> list[Goal]:
    mg, batch, nn = cases.get("mackey_glass"), cases.get("batch"), cases.get("neural_dde_step")
    return [
        Goal("mackey_glass_vs_jitcdde", "one trajectory at equal error (jitcdde tol 1e-8) within 3x of "
             "jitcdde (speedup >= 1/3)", "median over interleaved rounds of jitcdde time / jaxdyn time "
             "interpolated at jitcdde's error on the round's work-precision curve", 1 / 3,
             ratio_of(mg, "jitcdde"), spread=spread_of(mg, "jitcdde")),
        Goal("batch_vs_jitcdde_loop", "256 histories >= 5x faster than the jitcdde loop",
             "median over interleaved rounds of jitcdde loop (scaled) / jaxdyn solve_batch time", 5.0,
             ratio_of(batch, "jitcdde"), spread=spread_of(batch, "jitcdde")),
        Goal("neural_step_vs_torchdde", "training step >= 3x faster than torchdde",
             "median over interleaved rounds of torchdde time / jaxdyn time", 3.0,
             ratio_of(nn, "torchdde"), spread=spread_of(nn, "torchdde"))]


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    if case == "lyapunov":
        return [f"{k}: lambda1 {r['exponent']:.5f}" for k, r in rec.items()
                if isinstance(r, dict) and "exponent" in r]
    if case == "batch" and "speedup_vmap_vs_jitcdde" in rec:
        return [f"jitcdde loop / jit(vmap(solve)) (per-member steps): {rec['speedup_vmap_vs_jitcdde']:.2f}x; "
                "peer/jaxdyn above is for solve_batch (shared steps)"]
    if case != "mackey_glass":
        return []
    lines = []
    for key in ("jaxdyn_by_tol", "jitcdde_by_tol", "ddeint_by_grid"):
        for setting, r in rec[key].items():
            if isinstance(r, dict) and "warm_median_s" in r:
                lines.append(f"{key.split('_')[0]} {setting}: warm {r['warm_median_s'] * 1e3:.2f} ms, "
                             f"err [0,100] {r['max_abs_error_0_100']:.1e}, [0,1000] "
                             f"{r['max_abs_error_0_1000']:.1e}, steps {r.get('tried_steps', '-')}")
    for w in rec["work_precision"]:
        sp = w["speedup_at_equal_error"]
        lines.append(f"at {w['peer']} {w['peer_setting']} error {w['peer_error']:.1e}: speedup "
                     + ("-" if sp is None else f"{sp:.2f}x"))
    if rec.get("profile"):
        lines.append("per-step breakdown (us): " + ", ".join(
            f"{k} {v:.2f}" for k, v in rec["profile"]["breakdown_us_per_step"].items()))
    return lines


def extra(ctx) -> dict[str, Any]:
    mg = dict(PROBLEM["mackey_glass"], tols=list(TOLS_QUICK if ctx.quick else TOLS),
              ddeint_dt=list(DDEINT_DT_QUICK if ctx.quick else DDEINT_DT))
    return {"problem": dict(PROBLEM, mackey_glass=mg), "timing_method": {
        "compile_s": "first call - warm median; jitcdde: the C build (timed apart); ddeint: none",
        "repeats": f"min(--repeats, max({ctx.paired_rounds}, {BUDGET_S[ctx.quick]:g} s / one run)) per "
                   "side, interleaved with the case's other sides; ddeint at most 3, jitcdde loop at most 5; "
                   "see n_repeats; every speedup is the median of the per-round ratios (speedup_paired)",
        "warm-up": "one untimed warm-up call for JAX and torch sides"}}
