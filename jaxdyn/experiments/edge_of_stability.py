r"""The edge of stability on real data (Cohen et al., arXiv 2103.00065), on scikit-learn's digits.

Full-batch gradient descent $\theta_{k+1} = \theta_k - \eta\nabla L(\theta_k)$ on $n = 1000$
standardised 8x8 digits, MSE on one-hot targets, a fully connected tanh network 64-200-200-10,
at three step sizes. Tracked every few steps ([`jaxdyn.training.train`][]): the sharpness
$S = \lambda_{\max}(H)$ by Lanczos on Hessian-vector products, the loss at every step and, for
the largest step size, the distance to the gradient flow $\theta' = -\nabla L$ started at the
same point and integrated alongside (fixed step $\min(h_{\max}, 1/S)$, as Cohen et al.) and
compared at matched times $t = k\eta$. Expected: progressive sharpening up to $2/\eta$, then $S$
hovering at $2/\eta$ while the loss keeps falling non-monotonically, GD leaving the flow once $S$
crosses $2/\eta$, and a final sharpness that falls as $\eta$ grows. Runs in float32 (the
registry's `x64=False`), like the original.
"""

import dataclasses
import time

import diffrax
import jax
import numpy as np

from .. import training as jt
from .._results import message
from ..plot import plot_flow_distance, plot_sharpness, plot_training_loss
from ._fixtures import digits_data, mse_onehot, onehot_accuracy, tanh_mlp
from ._result import Claim, ExperimentResult

NAME = "edge-of-stability"
TITLE = "Edge of stability on digits: sharpness rises to 2/eta and hovers there"


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    lrs: tuple = (0.15, 0.25, 0.4)
    steps: tuple = (800, 500, 300)  # per step size
    every: tuple = (16, 10, 5)  # steps between sharpness evaluations, per step size (~50-60 rows each)
    flow_lr: float = 0.4  # the run with the gradient-flow reference
    flow_t_max: float = 52.0  # follow the flow up to this time (step 130 at eta = 0.4)
    flow_solver: str = "Bosh3"  # diffrax solver of the flow
    n: int = 1000
    width: int = 200
    depth: int = 2
    num_iters: int = 20  # Lanczos steps (at most) per sharpness
    band: float = 0.1


QUICK = Config()
FULL = Config(lrs=(0.1, 0.2, 0.3, 0.4), steps=(3000, 1500, 1200, 1000), every=(20, 10, 8, 5),
              flow_lr=0.2, flow_t_max=150.0, flow_solver="Tsit5", num_iters=40)

# The criteria of the claims, fixed before the runs (see `_claims`):
HOVER_MIN_FRACTION = 0.5  # hovering: at least this fraction of the rows after the crossing in the band
LEAVE_FACTOR = 10.0  # leaving the flow: distance at the window's end / largest distance up to the crossing

SOURCE = ("Cohen, Kaur, Li, Kolter, Talwalkar 2021, \"Gradient descent on neural networks typically "
          "occurs at the edge of stability\" (arXiv 2103.00065); the mission's paper (Chemnitz, Engel, "
          "Kuehn, Kuntz 2025), dynamics of the network (training): edge of stability")
QUESTION = ("Does full-batch GD on real data show progressive sharpening, then a sharpness hovering at "
            "$2/\\eta$ (the edge of stability) with a loss that decreases non-monotonically, and does GD "
            "leave the gradient-flow path once the sharpness crosses $2/\\eta$?")


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets."""
    cfg = QUICK if quick else FULL
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    xs, ys = digits_data(cfg.n, seed=seed)
    model = tanh_mlp(64, cfg.width, cfg.depth, 10, key=jax.random.key(seed))
    flow = jt.GradientFlow(solver=getattr(diffrax, cfg.flow_solver)(), dt_max=1.0,
                           t_max=cfg.flow_t_max, lanczos_steps=cfg.num_iters)
    runs, stats = {}, {}
    for lr, steps, every in zip(cfg.lrs, cfg.steps, cfg.every, strict=True):
        t = time.perf_counter()
        res = jt.train(mse_onehot, model, xs, ys, n_steps=steps, lr=lr, every=every, top_k=1,
                       accuracy_fn=onehot_accuracy, flow=flow if lr == cfg.flow_lr else None,
                       lanczos_steps=cfg.num_iters, progress=progress, desc=f"GD eta = {lr:g}")
        jax.block_until_ready(res.losses)
        timings[f"train_eta_{lr:g}"] = round(time.perf_counter() - t, 2)
        runs[lr] = res
        stats[lr] = jt.edge_of_stability(res, band=cfg.band)
    timings["total"] = round(time.perf_counter() - t0, 2)

    flow_run = runs[cfg.flow_lr]
    metrics = _metrics(cfg, runs, stats, flow_run)
    metrics.update(quick=quick, seed=seed, dtype=str(xs.dtype), config=dataclasses.asdict(cfg),
                   timings_s=timings)
    labels = {lr: rf"$\eta$ = {lr:g}" for lr in cfg.lrs}
    figures = {
        "sharpness": plot_sharpness({labels[lr]: r for lr, r in runs.items()}),
        "loss": plot_training_loss({labels[lr]: r for lr, r in runs.items()}),
        "flow_distance": plot_flow_distance(flow_run),
    }
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics), metrics, figures,
                            question=QUESTION, claims=_claims(cfg, metrics))


def _flow_metrics(res, st) -> dict:
    steps = np.asarray(res.steps)
    d = np.asarray(res.flow_distance, dtype=float)
    ok = np.isfinite(d)
    out = {"flow_steps": int(res.flow_steps), "flow_result": message(res.flow_result),
           "followed_to_step": int(steps[ok][-1])}
    cross = st.first_crossing
    if cross < 0:
        return out
    before = ok & (steps <= cross)
    after = ok & (steps > cross)
    out["distance_max_before_crossing"] = float(d[before].max())
    out["distance_at_crossing"] = float(d[steps == cross][0])
    if after.any():
        out["distance_end"] = float(d[after][-1])
        out["distance_growth_after_crossing"] = float(d[after][-1] / max(d[before].max(), 1e-30))
    gd_loss = np.asarray(res.loss, dtype=float)
    out["loss_gap_end"] = float(abs(gd_loss[ok][-1] - np.asarray(res.flow_loss)[ok][-1]))
    fs = np.asarray(res.flow_sharpness, dtype=float)[ok]
    out["flow_sharpness_end"] = float(fs[-1])
    out["gd_sharpness_at_flow_end"] = float(np.asarray(res.sharpness)[ok][-1])
    return out


def _metrics(cfg, runs, stats, flow_run) -> dict:
    per = {}
    for lr, res in runs.items():
        d = stats[lr].as_dict()
        for key in ("flow_distance_at_crossing", "final_flow_distance"):  # only the flow run has them,
            if not np.isfinite(d.get(key, 0.0)):  # and the flow is followed only part of the way:
                d.pop(key)  # the `flow` entry has the distances where they are defined
        d["final_accuracy"] = float(np.asarray(res.accuracy)[-1])
        d["initial_sharpness"] = float(np.asarray(res.sharpness)[0])
        d["steps"] = int(res.losses.shape[0])
        per[f"{lr:g}"] = d
    finals = [stats[lr].final_sharpness for lr in sorted(runs)]
    return {
        "runs": per,
        "final_sharpness_falls_with_eta": bool(all(a > b for a, b in zip(finals, finals[1:]))),
        "all_crossed": bool(all(stats[lr].first_crossing >= 0 for lr in runs)),
        "flow": {"lr": cfg.flow_lr, **_flow_metrics(flow_run, stats[cfg.flow_lr])},
    }


def _claims(cfg: Config, m: dict) -> tuple[Claim, ...]:
    """The claims of the experiment from its metrics (pure: no run; tested on synthetic metrics)."""
    keys = [f"{lr:g}" for lr in cfg.lrs]
    runs = [m["runs"][k] for k in keys]
    crossed = [r["first_crossing"] >= 0 for r in runs]
    sharpening = Claim.check(
        "Under full-batch GD the sharpness $S = \\lambda_{\\max}(H)$ rises (progressive sharpening) "
        "from below $2/\\eta$ until it reaches $2/\\eta$.",
        SOURCE,
        "every step size: $S_0 < 2/\\eta$ at step 0 and $S \\geq 2/\\eta$ at some tracked step within "
        "the budget",
        {k: {"S_0": r["initial_sharpness"], "2/eta": r["threshold"],
             "first_crossing_step": r["first_crossing"]} for k, r in zip(keys, runs)},
        [r["initial_sharpness"] < r["threshold"] and c for r, c in zip(runs, crossed)],
        why="at " + ", ".join(f"$\\eta$ = {k}" for k, r, c in zip(keys, runs, crossed)
                              if not (r["initial_sharpness"] < r["threshold"] and c))
        + " the sharpness did not rise from below $2/\\eta$ to $2/\\eta$ within the budget.")
    band = [c and r["fraction_in_band"] >= HOVER_MIN_FRACTION for r, c in zip(runs, crossed)]
    hover = Claim.check(
        "Once $S$ reaches $2/\\eta$ it stops rising and hovers at $2/\\eta$ (the edge of stability).",
        SOURCE,
        f"every step size: at least {HOVER_MIN_FRACTION:.0%} of the tracked steps from the first "
        f"crossing on have $|S/(2/\\eta) - 1| \\leq {cfg.band:g}$",
        {k: {"fraction_in_band": r["fraction_in_band"] if c else "no crossing",
             "mean_S_after_over_2/eta": r["mean_sharpness_after_ratio"] if c else "no crossing"}
         for k, r, c in zip(keys, runs, crossed)},
        band,
        why="; ".join(
            f"at $\\eta$ = {k} " + (f"only {r['fraction_in_band']:.0%} of the rows are in the band: $S$ "
                                    f"hovers {r['mean_sharpness_after_ratio'] - 1:+.0%} off $2/\\eta$ "
                                    "on average" if c else "$S$ never reached $2/\\eta$")
            for k, r, c, b in zip(keys, runs, crossed, band) if not b) + ".")
    loss_ok = [c and r["loss_increases"] > 0 and r["final_loss"] < r["loss_at_crossing"]
               for r, c in zip(runs, crossed)]
    loss = Claim.check(
        "At the edge of stability the loss keeps decreasing over long times, though not "
        "monotonically (it rises on some steps).",
        SOURCE,
        "every step size: after the first crossing, at least one step with $L_{k+1} > L_k$, and the "
        "final loss below the loss at the crossing",
        {k: {"loss_increases_after_crossing": r["loss_increases"],
             "loss_at_crossing": r["loss_at_crossing"] if c else "no crossing",
             "final_loss": r["final_loss"]} for k, r, c in zip(keys, runs, crossed)},
        loss_ok,
        why="at " + ", ".join(f"$\\eta$ = {k}" for k, ok in zip(keys, loss_ok) if not ok)
        + " the loss after the crossing was monotone or did not fall (or there was no crossing).")
    f = m["flow"]
    growth = f.get("distance_growth_after_crossing")
    leave = Claim.check(
        "GD follows the gradient flow $\\theta' = -\\nabla L$ (compared at $t = k\\eta$) while "
        "$S < 2/\\eta$ and leaves it once $S$ crosses $2/\\eta$.",
        SOURCE,
        f"at $\\eta$ = {f['lr']:g}: the distance $\\|\\theta_{{GD}}(k) - \\theta_{{GF}}(k\\eta)\\|$ at "
        f"the end of the followed window at least {LEAVE_FACTOR:g} times its largest value up to the "
        "first crossing",
        {"distance_max_up_to_crossing": f.get("distance_max_before_crossing", "no crossing"),
         "distance_end": f.get("distance_end", "no step after the crossing"),
         "growth_factor": "-" if growth is None else growth,
         "followed_to_step": f["followed_to_step"]},
        growth is not None and growth >= LEAVE_FACTOR,
        why=("GD never crossed $2/\\eta$ within the followed window, so there is nothing to leave."
             if "distance_at_crossing" not in f else
             "the flow was not followed past the crossing." if growth is None else
             f"the distance grew {growth:.3g}-fold by step {f['followed_to_step']} (the end of the "
             f"followed window), short of {LEAVE_FACTOR:g}-fold: GD departs from the flow, but less "
             "than the criterion asks within the window."))
    finals = [m["runs"][f"{lr:g}"]["final_sharpness"] for lr in sorted(cfg.lrs)]
    falls = Claim.check(
        "Because $S$ settles at $2/\\eta$, the final sharpness falls as $\\eta$ grows.",
        SOURCE,
        "the final sharpness strictly decreasing in $\\eta$ over all step sizes",
        {f"{lr:g}": v for lr, v in zip(sorted(cfg.lrs), finals)},
        bool(all(a > b for a, b in zip(finals, finals[1:]))),
        why="the final sharpness is not strictly decreasing in $\\eta$.")
    return (sharpening, hover, loss, leave, falls)


def _fmt(x, spec: str) -> str:
    """A table cell: `x` formatted, or "-" where it is undefined (NaN, None)."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)) or isinstance(x, str):
        return "-"
    return format(x, spec)


def _summary(cfg: Config, m: dict) -> str:
    rows = ["| $\\eta$ | $2/\\eta$ | $S$ at step 0 | first crossing (step) | fraction within 10% of "
            "$2/\\eta$ after it | mean $S$ after / $(2/\\eta)$ | final $S$ | loss increases after "
            "crossing | loss at crossing -> final | accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for lr in cfg.lrs:
        r = m["runs"][f"{lr:g}"]
        c = r["first_crossing"] >= 0
        rows.append(
            f"| {lr:g} | {r['threshold']:.3g} | {r['initial_sharpness']:.3g} | "
            f"{r['first_crossing'] if c else 'none'} | {_fmt(r['fraction_in_band'] if c else None, '.2f')} | "
            f"{_fmt(r['mean_sharpness_after_ratio'] if c else None, '.3f')} | {r['final_sharpness']:.3g} | "
            f"{r['loss_increases'] if c else '-'} | {_fmt(r['loss_at_crossing'] if c else None, '.4f')} -> "
            f"{r['final_loss']:.4f} | {r['final_accuracy']:.3f} |")
    note = ("\n\n*A dash: the run never reached $2/\\eta$, so the statistics after the crossing are "
            "undefined.*" if any(m["runs"][f"{lr:g}"]["first_crossing"] < 0 for lr in cfg.lrs) else "")
    f = m["flow"]
    flow_txt = (f"For $\\eta = {f['lr']:g}$ the gradient flow was followed to step {f['followed_to_step']} "
                f"(time {f['followed_to_step'] * f['lr']:g}, {f['flow_steps']} solver steps, "
                f"{cfg.flow_solver} at step $\\min(1, 1/S)$).")
    if "distance_at_crossing" in f:
        flow_txt += (
            f" The distance between GD and the flow at matched times was at most "
            f"{f['distance_max_before_crossing']:.3g} up to the first crossing of $2/\\eta$ "
            f"({f['distance_at_crossing']:.3g} there)")
        if "distance_end" in f:
            flow_txt += (f" and {f['distance_end']:.3g} at the end of the followed window (a factor "
                         f"{f['distance_growth_after_crossing']:.3g}); the flow's sharpness there was "
                         f"{f['flow_sharpness_end']:.3g}, GD's {f['gd_sharpness_at_flow_end']:.3g} "
                         f"($2/\\eta = {2 / f['lr']:.3g}$): the flow keeps sharpening, GD does not")
        flow_txt += "."
    falls = "falls" if m["final_sharpness_falls_with_eta"] else "does NOT fall monotonically"
    finals = ", ".join(f"{m['runs'][f'{lr:g}']['final_sharpness']:.3g}" for lr in sorted(cfg.lrs))
    low = [(lr, m["runs"][f"{lr:g}"]) for lr in cfg.lrs
           if m["runs"][f"{lr:g}"]["first_crossing"] >= 0
           and m["runs"][f"{lr:g}"]["fraction_in_band"] < HOVER_MIN_FRACTION]
    band_txt = "".join(
        f" At $\\eta = {lr:g}$ the sharpness hovers above the {cfg.band:.0%} band (mean "
        f"{r['mean_sharpness_after_ratio']:.2f} $\\times\\, 2/\\eta$ after the crossing, final "
        f"{r['final_sharpness_ratio']:.2f}): it stops rising and oscillates, but above $2/\\eta$, not "
        "at it." for lr, r in low)
    never = [f"{lr:g}" for lr in cfg.lrs if m["runs"][f"{lr:g}"]["first_crossing"] < 0]
    if never:
        band_txt += f" No crossing of $2/\\eta$ within the budget at $\\eta$ = {', '.join(never)}."
    paras = [
        f"**Setup.** scikit-learn digits, $n = {cfg.n}$ samples (standardised pixels), MSE "
        f"$\\frac{{1}}{{2n}}\\sum\\|f(x) - y\\|^2$ on one-hot targets, tanh MLP 64-"
        f"{'-'.join([str(cfg.width)] * cfg.depth)}-10 (Equinox initialisation), float32, full-batch "
        f"GD at $\\eta \\in$ {{{', '.join(f'{lr:g}' for lr in cfg.lrs)}}} for "
        f"{', '.join(str(s) for s in cfg.steps)} steps. Sharpness by Lanczos (at most {cfg.num_iters} "
        f"Hessian-vector products) every {', '.join(str(e) for e in cfg.every)} steps respectively; "
        "the band statistic counts the tracked rows from the first crossing on.",
        "\n".join(rows) + note,
        f"The final sharpness {falls} as $\\eta$ grows "
        f"({finals} for "
        f"$\\eta$ = {', '.join(f'{lr:g}' for lr in sorted(cfg.lrs))})." + band_txt + " " + flow_txt,
    ]
    if cfg is QUICK:
        paras.append("Quick mode: short runs with larger step sizes (which reach $2/\\eta$ sooner) and "
                     "Lanczos capped at 20 steps; the full mode runs $\\eta$ = 0.1, 0.2, 0.3, 0.4 for "
                     "longer, with the flow (Tsit5) at $\\eta = 0.2$.")
    return "\n\n".join(paras) + "\n"
