r"""Central flows at the edge of stability on real data (Cohen, Damian et al., ICLR 2025, arXiv
2410.24206), on the digits problem of `edge-of-stability`.

Gradient descent at the edge of stability oscillates around a smooth path, the *central flow*
$\frac{dw}{dt} = -\eta\,[\nabla L(w) + \tfrac12 \nabla\langle\Sigma(t), H(w)\rangle]$ (time in
steps), whose covariance $\Sigma \succeq 0$ on the top eigenspace is chosen so that the effective
sharpness stays at the edge ([`jaxdyn.training.central_flow`][]). The flow predicts GD's
*time-averaged* loss by $L(w) + \tfrac12\langle\Sigma, H(w)\rangle$, and GD stays close to it in
parameter space, while the gradient flow $w' = -\eta\nabla L$ (the stable flow, $\Sigma = 0$)
keeps sharpening and drifts away.

Setup: $n$ standardised digits, MSE on one-hot targets, tanh MLP 64-200-200-10 (the fixtures of
`edge-of-stability`), float32. For two step sizes $\eta$:

- GD (every step's loss; sharpness by Lanczos every `every` steps) and the gradient flow
  alongside (fixed step $\min(1, 1/S)$ in flow time, [`jaxdyn.training.train`][] with `flow=`),
  giving $\|w_{GD}(t) - w_{GF}(t)\|$ and the flow's loss at matched times $t$ (in steps);
- the central flow (`compare=False`: the gradient flow above is the stable-flow reference, with
  its adaptive step $\min(1, 1/S)$, robust while its sharpness keeps growing), giving the
  predicted loss; GD's parameters at the save times ([`jaxdyn.training.GDMap`][] in a
  `lax.scan`) give $\|w_{GD}(t) - w_{CF}(t)\|$.

**Definitions** (the metrics of the report):

- GD's loss *smoothed* over a window of $W$ steps ($W$ even, centred): the average over
  $[t - W/2, t + W/2]$ by the trapezoid rule, weights $\tfrac12, 1, \dots, 1, \tfrac12$ over
  $W + 1$ steps divided by $W$ ([`smooth_loss`][]; a period-2 oscillation averages out exactly).
- The *edge-of-stability phase*: the save times $t$ from GD's first tracked step with
  $S \ge 2/\eta$ up to $n_{\text{steps}} - W/2$ (where the smoothed loss is defined).
- `median_rel_error_cf`: the median over the phase of
  $|L_{\text{pred}}(t) - \bar L_{GD}(t)| / \bar L_{GD}(t)$; `median_rel_error_gf` the same with
  the gradient flow's loss $L(w_{GF}(t))$ in place of the prediction.
- `distance_ratio_median`: the median over the phase of
  $\|w_{GD} - w_{GF}\| / \|w_{GD} - w_{CF}\|$; `distance_ratio_end` the same at the last save.

Claims checked: `median_rel_error_cf` $\le 0.10$, `median_rel_error_gf` at least `gf_factor`
times larger, and the distance ratio $> 1$ (GD is closer to the central flow), at both step sizes.
One RMSProp run (the paper's preconditioned central flow): the same loss metric against the
discrete RMSProp, with the phase starting where the central flow first holds an eigenvalue of the
effective Hessian $P^{-1}H$ at the edge 2, and the distances of RMSProp to the central flow and of
the stable flow to the central flow.
"""

import dataclasses
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import training as jt
from .._kernels import flatten
from .._results import message
from ..training._central_flow import smooth_loss as smooth_loss  # shared with the plot
from ._fixtures import digits_data, mse_onehot, tanh_mlp
from ._result import Claim, ExperimentResult

NAME = "central-flow"
TITLE = "Central flows on digits: GD's time-averaged loss and path at the edge of stability"


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    lrs: tuple = (0.4, 0.3)  # the two GD step sizes
    steps: tuple = (200, 300)  # per step size
    every: int = 5  # save interval of the flows and tracking rows (steps)
    n: int = 1000
    width: int = 200
    depth: int = 2
    k: int = 2  # eigenpairs in the central flow's complementarity problem
    dt: float = 1.0  # the central flow's step (in optimizer steps; RK4)
    cf_lanczos_steps: int = 20  # Lanczos steps per eigen-solve of the central flow
    cf_lanczos_tol: float = 1e-3  # and its relative residual tolerance (float32)
    lanczos_steps: int = 20  # GD's sharpness tracker
    window: int = 10  # smoothing window of GD's loss (steps, even)
    gf_factor: float = 2.0  # "off by much more": gradient flow's error at least this many times larger
    rms_lr: float = 6e-4
    rms_steps: int = 200
    # RMSProp's flow at dt = 1 (it turned nan at dt = 1 and 0.5 once an eigenvalue reached the edge:
    # the derivative of sqrt(nu) at nu = 0 on the blank pixels' weights, fixed in the library)
    rms_dt: float = 1.0
    rms_beta2: float = 0.99
    # RMSProp's nu starts from one update with the first gradient (the paper's convention), so
    # coordinates with small gradients start with huge effective steps; eps = 1e-3 (about the
    # median |g| at the start) bounds them, and the flow starts below the edge (lr * lambda_max
    # (P^{-1} H) ~ 1.8 at the start). With eps = 1e-8 it starts far above it (95 at lr = 4e-4,
    # n = 250) and the flow's first interval is non-finite (a toy started at 9x the edge is pulled
    # back to 2 within 5 steps: the restoring term works, but not from 50x at dt = 1).
    rms_eps: float = 1e-3


QUICK = Config(steps=(200, 220), lrs=(0.4, 0.35), n=250, rms_steps=200)
FULL = Config(lrs=(0.4, 0.3), steps=(250, 300), rms_steps=300)

# The criteria of the claims, fixed before the runs (see `_claims`; `gf_factor` is a Config field):
CF_REL_ERROR = 0.10  # the central flow's prediction: median relative error against the smoothed loss
CF_SHARPNESS_REL_DEV = 0.05  # the central flow's sharpness within 5% of 2/eta over the phase

SOURCE = ("Cohen, Damian et al., \"Understanding optimization in deep learning with central flows\", "
          "ICLR 2025 (arXiv 2410.24206)")
QUESTION = ("Does the central flow of Cohen, Damian et al. (ICLR 2025) predict the time-averaged loss of "
            "full-batch GD (and of RMSProp) at the edge of stability on real data, and does GD stay closer "
            "to it than to the gradient flow?")


# -- smoothing and metrics (plain NumPy: they read finished runs) ---------------------------------


def eos_phase(ts, start: float, n_steps: int, window: int) -> np.ndarray:
    """The save times of the edge-of-stability phase: from `start` (GD's first crossing of
    2/eta; negative: never, an empty phase) to `n_steps - window / 2`, as a boolean mask."""
    ts = np.asarray(ts, dtype=float)
    if start < 0:
        return np.zeros(ts.shape, bool)
    return (ts >= start) & (ts <= n_steps - window // 2)


def loss_metrics(ts, smoothed, predicted, flow_loss, phase) -> dict:
    """Relative errors of the central flow's prediction and of the gradient flow's loss against
    GD's smoothed loss at the save times `ts` (medians and maxima over the `phase` mask)."""
    idx = np.asarray(ts).astype(int)
    ref = np.asarray(smoothed, dtype=float)[idx]
    err_cf = np.abs(np.asarray(predicted, dtype=float) - ref) / ref
    err_gf = np.abs(np.asarray(flow_loss, dtype=float) - ref) / ref
    phase = np.asarray(phase, bool) & np.isfinite(err_cf) & np.isfinite(err_gf)
    if not phase.any():
        return {"phase_points": 0, "median_rel_error_cf": float("nan"),
                "median_rel_error_gf": float("nan"), "max_rel_error_cf": float("nan"),
                "gf_over_cf_error": float("nan")}
    med_cf, med_gf = float(np.median(err_cf[phase])), float(np.median(err_gf[phase]))
    return {"phase_points": int(phase.sum()), "median_rel_error_cf": med_cf,
            "median_rel_error_gf": med_gf, "max_rel_error_cf": float(err_cf[phase].max()),
            "gf_over_cf_error": med_gf / max(med_cf, 1e-30)}


def distance_metrics(gd_to_cf, gd_to_gf, phase) -> dict:
    """The ratio `gd_to_gf / gd_to_cf` over the `phase` mask: median and at its last point."""
    a, b = np.asarray(gd_to_cf, dtype=float), np.asarray(gd_to_gf, dtype=float)
    phase = np.asarray(phase, bool) & np.isfinite(a) & np.isfinite(b) & (a > 0)
    if not phase.any():
        return {"distance_ratio_median": float("nan"), "distance_ratio_end": float("nan"),
                "gd_to_cf_end": float("nan"), "gd_to_gf_end": float("nan")}
    ratio = b[phase] / a[phase]
    return {"distance_ratio_median": float(np.median(ratio)), "distance_ratio_end": float(ratio[-1]),
            "gd_to_cf_end": float(a[phase][-1]), "gd_to_gf_end": float(b[phase][-1])}


# -- the runs -------------------------------------------------------------------------------------


def _problem(cfg: Config, seed: int):
    xs, ys = digits_data(cfg.n, seed=seed)
    model = tanh_mlp(64, cfg.width, cfg.depth, 10, key=jax.random.key(seed))
    return model, xs, ys


def _gd_run(cfg: Config, problem, lr: float, n_steps: int, progress: bool):
    """GD with its sharpness and the gradient flow alongside ([`jaxdyn.training.train`][])."""
    model, xs, ys = problem
    flow = jt.GradientFlow(solver=diffrax.Bosh3(), dt_max=1.0, t_max=n_steps * lr,
                           lanczos_steps=cfg.lanczos_steps)
    res = jt.train(mse_onehot, model, xs, ys, n_steps=n_steps, lr=lr, every=cfg.every, top_k=1,
                   flow=flow, lanczos_steps=cfg.lanczos_steps, progress=progress,
                   desc=f"GD eta = {lr:g}")
    jax.block_until_ready(res.losses)
    return res


def _cf_run(cfg: Config, problem, lr: float, n_steps: int, optimizer, *, dt: float, compare: bool,
            progress: bool):
    """The central flow (`throw=False`: a failure is reported in the metrics, with the flow up
    to it)."""
    model, xs, ys = problem
    eigen = jt.LanczosEigen(n_steps=cfg.cf_lanczos_steps, tol=cfg.cf_lanczos_tol)
    res = jt.central_flow(mse_onehot, model, xs, ys, lr=lr, optimizer=optimizer, k=cfg.k,
                          n_steps=n_steps, every=cfg.every, dt=dt, eigen=eigen,
                          compare=compare, progress=progress, throw=False)
    jax.block_until_ready(res.predicted_loss)
    return res


@eqx.filter_jit
def _gd_path(model, xs, ys, lr, n_steps: int, every: int):
    """GD's parameters at steps 0, every, ..., n_steps (flat), by [`jaxdyn.training.GDMap`][]."""
    step = jt.GDMap(mse_onehot, jnp.asarray(lr), throw=False)
    arrays, static = eqx.partition(model, eqx.is_inexact_array)

    def block(arr, _):
        arr = lax.fori_loop(0, every, lambda _, a: eqx.filter(step(eqx.combine(a, static), xs, ys),
                                                              eqx.is_inexact_array), arr)
        return arr, flatten(arr)[0]

    _, path = lax.scan(block, arrays, None, length=n_steps // every)
    return jnp.concatenate([flatten(arrays)[0][None], path])


def _distance(params_path, flat_path) -> np.ndarray:
    """`|w(t) - w'(t)|` per save point: a PyTree with leading axis T against flat `(T, size)`."""
    flat = jax.vmap(lambda a: flatten(a)[0])(eqx.filter(params_path, eqx.is_inexact_array))
    return np.asarray(jnp.linalg.norm(flat - flat_path, axis=1), dtype=float)


def _gd_metrics(cfg: Config, lr: float, n_steps: int, gd, cf, gd_to_cf) -> tuple[dict, dict]:
    """The metrics of one step size, and the curves its figure draws: `gd` from `train` (with
    the gradient flow), `cf` the central flow, `gd_to_cf` the distance at its save points."""
    thr = 2.0 / lr
    rows = np.asarray(gd.steps)
    sharp = np.asarray(gd.sharpness, dtype=float)
    crossed = np.flatnonzero(sharp >= thr)
    cross = int(rows[crossed[0]]) if crossed.size else -1
    gd_loss = np.r_[np.asarray(gd.losses, dtype=float), float(np.asarray(gd.loss)[-1])]  # steps 0..n
    smoothed = smooth_loss(gd_loss, cfg.window)
    ts = np.asarray(cf.ts, dtype=float)
    phase = eos_phase(ts, cross, n_steps, cfg.window)
    # the tracked rows of `train` are the flow's save times (same `every`)
    flow_loss = np.asarray(gd.flow_loss, dtype=float)
    gd_to_gf = np.asarray(gd.flow_distance, dtype=float)
    m = {"lr": lr, "threshold": thr, "n_steps": n_steps, "first_crossing": cross}
    m.update(loss_metrics(ts, smoothed, cf.predicted_loss, flow_loss, phase))
    m.update(distance_metrics(gd_to_cf, gd_to_gf, phase))
    cf_sharp = np.asarray(cf.sharpness, dtype=float)
    active = np.asarray(cf.n_active) > 0
    m["cf_first_active"] = int(ts[active][0]) if active.any() else -1
    m["cf_sharpness_max_rel_dev"] = (float(np.max(np.abs(cf_sharp[phase] - thr)) / thr)
                                     if phase.any() else float("nan"))
    m["gd_mean_sharpness_ratio"] = (float(np.mean(sharp[rows >= cross]) / thr) if cross >= 0
                                    else float("nan"))
    m["gf_sharpness_end"] = float(np.asarray(gd.flow_sharpness, dtype=float)[-1])
    m["cf_max_n_active"] = int(np.max(np.asarray(cf.n_active)))
    m["sigma_max"] = float(np.max(np.asarray(cf.sigma)))
    m["gf_result"] = message(gd.flow_result)
    m["cf_result"] = message(cf.result)
    m["claims"] = {
        "cf_within_10pct": bool(m["median_rel_error_cf"] <= 0.10),
        "gf_much_worse": bool(m["gf_over_cf_error"] >= cfg.gf_factor),
        "gd_closer_to_cf": bool(m["distance_ratio_median"] > 1.0),
    }
    curves = {"steps": np.arange(gd_loss.size), "gd_loss": gd_loss, "smoothed": smoothed, "ts": ts,
              "predicted": np.asarray(cf.predicted_loss, dtype=float), "flow_loss": flow_loss,
              "rows": rows, "gd_sharpness": sharp, "cf_sharpness": cf_sharp,
              "gf_sharpness": np.asarray(gd.flow_sharpness, dtype=float),
              "gd_to_cf": gd_to_cf, "gd_to_gf": gd_to_gf,
              "cross": cross, "threshold": thr, "lr": lr, "phase": phase}
    return m, curves


def _rms_metrics(cfg: Config, cf) -> tuple[dict, dict]:
    """The RMSProp run: the phase starts at the central flow's first active eigenvalue."""
    ts = np.asarray(cf.ts, dtype=float)
    active = np.asarray(cf.n_active) > 0
    start = int(ts[active][0]) if active.any() else -1
    gd_loss = np.asarray(cf.gd_loss, dtype=float)
    smoothed = smooth_loss(gd_loss, cfg.window)
    phase = eos_phase(ts, start, cfg.rms_steps, cfg.window)
    eff = np.asarray(cf.eigenvalues, dtype=float)[:, 0]
    m = {"lr": cfg.rms_lr, "beta2": cfg.rms_beta2, "eps": cfg.rms_eps, "n_steps": cfg.rms_steps,
         "dt": cfg.rms_dt, "cf_first_active": start}
    m.update(loss_metrics(ts, smoothed, cf.predicted_loss, cf.flow_loss, phase))
    m.update(distance_metrics(cf.gd_distance, cf.flow_distance, phase))
    m["distance_ratio_median_note"] = "stable flow to CF over RMSProp to CF"
    m["cf_result"] = message(cf.result)
    m["cf_effective_sharpness_max"] = float(np.nanmax(eff)) if np.isfinite(eff).any() else float("nan")
    finite = np.isfinite(np.asarray(cf.predicted_loss, dtype=float))
    m["cf_finite_until"] = int(ts[finite][-1]) if finite.any() else -1  # last finite save point
    m["cf_effective_sharpness_max_dev"] = (float(np.max(np.abs(eff[phase] - 2.0))) if phase.any()
                                           else float("nan"))
    m["claims"] = {"cf_within_10pct": bool(m["median_rel_error_cf"] <= 0.10),
                   "gf_much_worse": bool(m["gf_over_cf_error"] >= cfg.gf_factor)}
    curves = {"steps": np.arange(gd_loss.size), "gd_loss": gd_loss, "smoothed": smoothed, "ts": ts,
              "predicted": np.asarray(cf.predicted_loss, dtype=float),
              "flow_loss": np.asarray(cf.flow_loss, dtype=float), "eff": eff,
              "gd_to_cf": np.asarray(cf.gd_distance, dtype=float),
              "gf_to_cf": np.asarray(cf.flow_distance, dtype=float), "cross": start, "phase": phase}
    return m, curves


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets."""
    cfg = QUICK if quick else FULL
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    problem = _problem(cfg, seed)
    per, curves = {}, {}
    for lr, n_steps in zip(cfg.lrs, cfg.steps, strict=True):
        t = time.perf_counter()
        gd = _gd_run(cfg, problem, lr, n_steps, progress)
        timings[f"gd_eta_{lr:g}"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        cf = _cf_run(cfg, problem, lr, n_steps, "gd", dt=cfg.dt, compare=False, progress=progress)
        timings[f"central_flow_eta_{lr:g}"] = round(time.perf_counter() - t, 2)
        gd_to_cf = _distance(cf.params, _gd_path(*problem, jnp.asarray(lr), n_steps, cfg.every))
        per[f"{lr:g}"], curves[lr] = _gd_metrics(cfg, lr, n_steps, gd, cf, gd_to_cf)
        per[f"{lr:g}"]["seconds_per_step"] = timings[f"central_flow_eta_{lr:g}"] / n_steps
    t = time.perf_counter()
    rms_opt = jt.RMSPropOptimizer(beta2=cfg.rms_beta2, eps=cfg.rms_eps)
    rms = _cf_run(cfg, problem, cfg.rms_lr, cfg.rms_steps, rms_opt, dt=cfg.rms_dt, compare=True,
                  progress=progress)
    timings["central_flow_rmsprop"] = round(time.perf_counter() - t, 2)
    rms_m, rms_curves = _rms_metrics(cfg, rms)
    rms_m["seconds_per_step"] = timings["central_flow_rmsprop"] / cfg.rms_steps
    timings["total"] = round(time.perf_counter() - t0, 2)
    metrics = {"runs": per, "rmsprop": rms_m,
               "all_claims_hold": bool(all(all(r["claims"].values()) for r in per.values())),
               "quick": quick, "seed": seed, "dtype": str(problem[1].dtype),
               "config": dataclasses.asdict(cfg), "timings_s": timings}
    figures = {f"eta_{lr:g}".replace(".", "_"): _gd_figure(c) for lr, c in curves.items()}
    figures["rmsprop"] = _rms_figure(rms_curves)
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics), metrics, figures,
                            question=QUESTION, claims=_claims(cfg, metrics))


def _num(x) -> float:
    """A metric as a float (`"nan"` strings of the JSON form included)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _claims(cfg: Config, m: dict) -> tuple[Claim, ...]:
    """The claims of the experiment from its metrics (pure: no run; tested on synthetic metrics)."""
    keys = [f"{lr:g}" for lr in cfg.lrs]
    runs = [m["runs"][k] for k in keys]
    no_phase = [k for k, r in zip(keys, runs) if not r["phase_points"]]
    none_txt = (f" (no edge-of-stability phase at $\\eta$ = {', '.join(no_phase)}: GD never reached "
                "$2/\\eta$)" if no_phase else "")

    def failing(ok):
        return ", ".join(f"$\\eta$ = {k}" for k, o in zip(keys, ok) if not o)

    err = [_num(r["median_rel_error_cf"]) for r in runs]
    ok1 = [bool(e <= CF_REL_ERROR) for e in err]  # nan: False
    predict = Claim.check(
        "At the edge of stability GD's loss averaged over its oscillations follows the central flow's "
        "prediction $L(w) + \\tfrac12\\langle\\Sigma, H(w)\\rangle$.",
        SOURCE,
        f"every step size: over the phase (from GD's first $S \\geq 2/\\eta$ to {cfg.window // 2} steps "
        f"before the end), the median of $|L_{{pred}} - \\bar L_{{GD}}| / \\bar L_{{GD}}$ is at most "
        f"{CF_REL_ERROR:g}; $\\bar L_{{GD}}$: GD's loss averaged over a centred {cfg.window}-step window",
        {k: {"median_rel_error": r["median_rel_error_cf"] if r["phase_points"] else "no phase",
             "phase_points": r["phase_points"]} for k, r in zip(keys, runs)},
        ok1, why=f"the prediction is off by more than {CF_REL_ERROR:.0%} at {failing(ok1)}{none_txt}.")
    ratio = [_num(r["gf_over_cf_error"]) for r in runs]
    ok2 = [bool(x >= cfg.gf_factor) for x in ratio]
    gf_worse = Claim.check(
        "The gradient flow (the stable flow, $\\Sigma = 0$), which keeps sharpening, does not predict "
        "GD's averaged loss: it is off by much more than the central flow.",
        SOURCE,
        f"every step size: the gradient flow's median relative error at least {cfg.gf_factor:g} times "
        "the central flow's (same phase, same smoothed loss)",
        {k: {"gf_median_rel_error": r["median_rel_error_gf"] if r["phase_points"] else "no phase",
             "gf_over_cf": r["gf_over_cf_error"] if r["phase_points"] else "no phase"}
         for k, r in zip(keys, runs)},
        ok2, why=f"the gradient flow is less than {cfg.gf_factor:g} times further off at "
        f"{failing(ok2)}{none_txt}.")
    dist = [_num(r["distance_ratio_median"]) for r in runs]
    ok3 = [bool(x > 1.0) for x in dist]
    closer = Claim.check(
        "GD's iterates stay closer to the central flow's path than to the gradient flow's.",
        SOURCE,
        "every step size: the median over the phase of $\\|w_{GD} - w_{GF}\\| / \\|w_{GD} - "
        "w_{CF}\\|$ above 1",
        {k: {"distance_ratio_median": r["distance_ratio_median"] if r["phase_points"] else "no phase",
             "distance_ratio_end": r["distance_ratio_end"] if r["phase_points"] else "no phase"}
         for k, r in zip(keys, runs)},
        ok3, why=f"GD is not closer to the central flow at {failing(ok3)}{none_txt}.")
    dev = [_num(r["cf_sharpness_max_rel_dev"]) for r in runs]
    ok4 = [bool(x <= CF_SHARPNESS_REL_DEV) for x in dev]
    edge = Claim.check(
        "The central flow holds its sharpness at the edge, $\\lambda_{\\max}(H(w)) = 2/\\eta$, while "
        "$\\Sigma \\neq 0$ (the complementarity condition that defines $\\Sigma$).",
        SOURCE,
        f"every step size: over the phase, $\\max|\\lambda_{{\\max}} - 2/\\eta| / (2/\\eta) \\leq "
        f"{CF_SHARPNESS_REL_DEV:g}$ along the central flow",
        {k: r["cf_sharpness_max_rel_dev"] if r["phase_points"] else "no phase" for k, r in zip(keys, runs)},
        ok4, why=f"the central flow's sharpness leaves the {CF_SHARPNESS_REL_DEV:.0%} band around "
        f"$2/\\eta$ at {failing(ok4)}{none_txt}.")
    q = m["rmsprop"]
    rms_err = _num(q["median_rel_error_cf"])
    rms = Claim.check(
        "For RMSProp the preconditioned central flow (effective sharpness $\\lambda_{\\max}(P^{-1}H)$ "
        "held at 2) predicts the optimiser's averaged loss too.",
        SOURCE,
        f"RMSProp ($\\eta$ = {cfg.rms_lr:g}): over the phase from the flow's first active eigenvalue, the "
        f"median relative error of the prediction against RMSProp's smoothed loss at most {CF_REL_ERROR:g}",
        {"median_rel_error": q["median_rel_error_cf"] if q["phase_points"] else "no phase",
         "phase_points": q["phase_points"], "cf_first_active_step": q["cf_first_active"]},
        bool(rms_err <= CF_REL_ERROR),
        why=("the central flow never reached the edge within the run, so there is no phase to compare."
             if q["cf_first_active"] < 0 or not q["phase_points"] else
             f"the prediction is off by {rms_err:.0%} (median), more than {CF_REL_ERROR:.0%}."))
    return (predict, gf_worse, closer, edge, rms)


# -- figures ----------------------------------------------------------------------------------------


def _legend(ax):
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _mark_phase(ax, start, label=None):
    if start >= 0:
        ax.axvline(start, color="grey", ls=":", lw=1.2, label=label)


def _loss_panel(ax, c, *, label_opt: str, phase_label: str):
    ax.plot(c["steps"], c["gd_loss"], color="C0", lw=0.6, alpha=0.45, label=f"{label_opt}, raw")
    ax.plot(c["steps"], c["smoothed"], color="C0", lw=1.8, label=f"{label_opt}, smoothed")
    ax.plot(c["ts"], c["predicted"], color="k", lw=1.6, ls="--",
            label=r"central flow $L + \frac{1}{2}\langle\Sigma, H\rangle$")
    ax.plot(c["ts"], c["flow_loss"], color="C3", lw=1.4, ls="-.", label="stable (gradient) flow $L$")
    _mark_phase(ax, c["cross"], f"{phase_label} (step {c['cross']})")
    ax.set_yscale("log")  # the step axis is shared: labelled once, under the last panel
    ax.set_ylabel(r"training loss $L$ (MSE)")
    ax.grid(alpha=0.3)
    _legend(ax)


def _gd_figure(c):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 10), layout="constrained", sharex=True)
    _loss_panel(axes[0], c, label_opt="GD", phase_label=r"GD's first $S \geq 2/\eta$")
    axes[0].set_title(rf"GD at $\eta$ = {c['lr']:g}: loss, sharpness and distances")
    ax = axes[1]
    ax.plot(c["rows"], c["gd_sharpness"], color="C0", lw=1.2, label="GD")
    ax.plot(c["ts"], c["cf_sharpness"], color="k", lw=1.6, ls="--", label="central flow")
    ok = np.isfinite(c["gf_sharpness"])
    ax.plot(c["rows"][ok], c["gf_sharpness"][ok], color="C3", lw=1.4, ls="-.", label="gradient flow")
    ax.axhline(c["threshold"], color="grey", lw=1, label=rf"$2/\eta$ = {c['threshold']:.3g}")
    _mark_phase(ax, c["cross"])
    ax.set_ylabel(r"sharpness $\lambda_{\max}(H)$")
    ax.grid(alpha=0.3)
    _legend(ax)
    ax = axes[2]
    ax.plot(c["ts"], c["gd_to_cf"], color="k", lw=1.6, label=r"$\|w_{GD} - w_{CF}\|$")
    ok = np.isfinite(c["gd_to_gf"])
    ax.plot(c["rows"][ok], c["gd_to_gf"][ok], color="C3", lw=1.4, ls="-.",
            label=r"$\|w_{GD} - w_{GF}\|$")
    _mark_phase(ax, c["cross"])
    ax.set_xlabel("step $t$ (flows at matched time $t$)")
    ax.set_ylabel(r"parameter distance $\|\Delta w\|_2$")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _rms_figure(c):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 10), layout="constrained", sharex=True)
    _loss_panel(axes[0], c, label_opt="RMSProp", phase_label="central flow reaches the edge")
    axes[0].set_title("RMSProp: loss, effective sharpness and distances")
    ax = axes[1]
    ax.plot(c["ts"], c["eff"], color="k", lw=1.6, ls="--", label="central flow")
    ax.axhline(2.0, color="grey", lw=1, label="edge of stability: 2")
    _mark_phase(ax, c["cross"])
    ax.set_ylabel(r"effective sharpness $\lambda_{\max}(P^{-1}H)$")
    ax.grid(alpha=0.3)
    _legend(ax)
    ax = axes[2]
    ax.plot(c["ts"], c["gd_to_cf"], color="k", lw=1.6, label=r"$\|w_{RMSProp} - w_{CF}\|$")
    ax.plot(c["ts"], c["gf_to_cf"], color="C3", lw=1.4, ls="-.", label=r"$\|w_{stable} - w_{CF}\|$")
    _mark_phase(ax, c["cross"])
    ax.set_xlabel("step $t$ (flows at matched time $t$)")
    ax.set_ylabel(r"parameter distance $\|\Delta w\|_2$")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


# -- report text ------------------------------------------------------------------------------------


def _fmt(x, spec: str) -> str:
    """A table cell: `x` formatted, or "-" where it is undefined (NaN, None)."""
    x = _num(x)
    return "-" if not np.isfinite(x) else format(x, spec)


def _verdict(flag: bool) -> str:
    return "**holds**" if flag else "**fails**"


def _rms_text(q: dict) -> str:
    head = (f"**RMSProp** ($\\eta = {q['lr']:g}$, $\\beta_2 = {q['beta2']:g}$, $\\epsilon = {q['eps']:g}$, "
            f"{q['n_steps']} steps, RK4 at $dt = {q['dt']:g}$; the phase starts where the central flow first "
            "holds an eigenvalue of $P^{-1}H$ at 2")
    if q["cf_first_active"] < 0:
        stop = ("" if q["cf_finite_until"] >= q["n_steps"] else
                f", and became non-finite after step {q['cf_finite_until']} ({q['cf_result'].rstrip('.')})")
        return (head + f"). The central flow did not reach the edge within the run (effective sharpness at "
                f"most {q['cf_effective_sharpness_max']:.3g}{stop}): no phase to measure.")
    return (head + f", step {q['cf_first_active']}): median relative error of the prediction against "
            f"RMSProp's smoothed loss {q['median_rel_error_cf']:.3f} "
            f"({_verdict(q['claims']['cf_within_10pct'])} within 10%), of the stable flow's loss "
            f"{q['median_rel_error_gf']:.3f}; the central flow's effective sharpness stays within "
            f"{q['cf_effective_sharpness_max_dev']:.2g} of 2; RMSProp to the central flow "
            f"{q['gd_to_cf_end']:.3g} at the end of the phase, the stable flow to it "
            f"{q['gd_to_gf_end']:.3g}.")


def _summary(cfg: Config, m: dict) -> str:
    rows = ["| $\\eta$ | $2/\\eta$ | GD first crossing (step) | phase points | median rel. error CF "
            "| median rel. error GF | GF / CF error | distance ratio GD-GF / GD-CF (median, end) "
            "| CF sharpness max dev. | s per CF step (wall, with compilation) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for lr in cfg.lrs:
        r = m["runs"][f"{lr:g}"]
        dev = _num(r["cf_sharpness_max_rel_dev"])
        cross = r["first_crossing"] if r["first_crossing"] >= 0 else "none"
        rows.append(
            f"| {lr:g} | {r['threshold']:.3g} | {cross} | "
            f"{r['phase_points']} | {_fmt(r['median_rel_error_cf'], '.3f')} | "
            f"{_fmt(r['median_rel_error_gf'], '.3f')} | {_fmt(r['gf_over_cf_error'], '.2f')} | "
            f"{_fmt(r['distance_ratio_median'], '.2f')}, {_fmt(r['distance_ratio_end'], '.2f')} | "
            f"{'-' if not np.isfinite(dev) else f'{100 * dev:.2g}%'} | {r['seconds_per_step']:.3f} |")
    if any(not m["runs"][f"{lr:g}"]["phase_points"] for lr in cfg.lrs):
        rows.append("\n*A dash: GD never reached $2/\\eta$ there, so the phase over which the errors and "
                    "ratios are taken is empty.*")
    q = m["rmsprop"]
    claims = " ".join(
        f"At $\\eta = {lr:g}$: prediction within 10% {_verdict(r['claims']['cf_within_10pct'])}, "
        f"gradient flow at least {cfg.gf_factor:g}x worse {_verdict(r['claims']['gf_much_worse'])}, "
        f"GD closer to the central flow {_verdict(r['claims']['gd_closer_to_cf'])}."
        for lr, r in ((lr, m["runs"][f"{lr:g}"]) for lr in cfg.lrs))
    codes = [(f"$\\eta = {lr:g}$", m["runs"][f"{lr:g}"]["cf_result"]) for lr in cfg.lrs]
    codes.append(("RMSProp", q["cf_result"]))
    failed = [f"{name}: {text.rstrip('.')}" for name, text in codes if text != "successful"]
    paras = [
        f"**Setup.** scikit-learn digits, $n = {cfg.n}$, MSE on one-hot targets, tanh MLP 64-"
        f"{'-'.join([str(cfg.width)] * cfg.depth)}-10, float32, GD at $\\eta$ = "
        f"{', '.join(f'{lr:g}' for lr in cfg.lrs)} for {', '.join(str(s) for s in cfg.steps)} steps. "
        f"Central flow with $k = {cfg.k}$ eigenpairs, step $dt = {cfg.dt:g}$ (optimizer steps), saved "
        f"every {cfg.every} steps. Gradient flow alongside GD (`train(flow=...)`, Bosh3 at step "
        "$\\min(1, 1/S)$).",
        f"**Criterion.** GD's loss smoothed over a centred window of {cfg.window} steps (trapezoid "
        "weights: a period-2 oscillation averages out). The edge-of-stability phase runs from GD's "
        f"first tracked step with $S \\ge 2/\\eta$ to {cfg.window // 2} steps before the end. Over it: "
        "the median relative error of the central flow's predicted loss against the smoothed loss "
        f"must be at most 10%, the gradient flow's loss at least {cfg.gf_factor:g} times further off, "
        "and the median ratio $\\|w_{GD} - w_{GF}\\| / \\|w_{GD} - w_{CF}\\|$ above 1.",
        "\n".join(rows),
        f"**Reading.** {claims}",
        _rms_text(q),
    ]
    if failed:
        paras.append("**Central-flow codes** (the flow is reported up to the failure): "
                     + "; ".join(failed) + ".")
    if cfg is QUICK:
        paras.append(f"Quick mode: $n = {cfg.n}$ digits and shorter runs; the full mode runs "
                     f"$n = {FULL.n}$ at $\\eta$ = {', '.join(f'{lr:g}' for lr in FULL.lrs)}.")
    return "\n\n".join(paras) + "\n"
