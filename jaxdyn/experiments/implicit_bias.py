r"""Implicit bias of the step size on $L(w_1, w_2) = (w_1 w_2 - 1)^2/2$.

The minima form the hyperbola $w_1 w_2 = 1$; at $(a, 1/a)$ the only nonzero Hessian eigenvalue
is $a^2 + 1/a^2 \ge 2$ (the other, zero, is tangent to the hyperbola), so gradient descent with
step $\eta$ is linearly stable there only if $a^2 + 1/a^2 \le 2/\eta$, and for $\eta > 1$
nowhere (MATH.md section 2; Chemnitz & Engel, arXiv 2407.20209, for the manifold criterion).
We run GD from many random initialisations at once (`vmap`,
[`jaxdyn.training.gd_endpoints`][]) at several step sizes, call a run converged when its loss
is below $10^{-20}$ within a fixed budget, count overflowing runs as diverged, and check that
every converged run satisfies the bound; [`jaxdyn.training.gd_stability`][] at the limits gives
the manifold regime and $\mu = \log|1 - \eta(a^2 + 1/a^2)| \le 0$.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import training as jt
from ..plot import plot_implicit_bias
from ._result import Claim, ExperimentResult

NAME = "implicit-bias"
TITLE = "Implicit bias of the step size: GD settles only where a^2 + 1/a^2 <= 2/eta"


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    lrs: tuple = (0.25, 0.5, 0.8, 1.25)
    n_inits: int = 2000
    init_range: float = 3.0  # initialisations uniform in [-r, r]^2
    steps: int = 3000
    tol: float = 1e-20  # converged: final loss below tol
    bound_slack: float = 1e-9  # relative slack on a^2 + 1/a^2 <= 2/eta (rounding)
    n_stability: int = 16  # gd_stability checks at converged limits per step size


QUICK = Config()
FULL = Config(n_inits=20000, steps=10000, n_stability=64)

# The criteria of the claims, fixed before the runs (see `_claims`):
COVER_FRACTION = 0.9  # the limits reach the outer 10% of the stable arc: max a^2 + 1/a^2 >= 0.9 * 2/eta
MU_TOL = 1e-8  # gd_stability's mu against log|1 - eta (a^2 + 1/a^2)| (absolute)

SOURCE_ARC = ("the mission's paper (Chemnitz, Engel, Kuehn, Kuntz 2025), dynamics of the network "
              "(training): the implicit-bias test case $(w_1 w_2 - 1)^2/2$ and linear stability of GD on "
              "a manifold of minima (Chemnitz & Engel, arXiv 2407.20209, Theorem A)")
SOURCE_THM_A = "Chemnitz & Engel, arXiv 2407.20209, Theorem A (GD on a manifold of minima)"
QUESTION = ("On $L = (w_1 w_2 - 1)^2/2$, does gradient descent with step $\\eta$ settle only at points "
            "$(a, 1/a)$ of the hyperbola of minima with $a^2 + 1/a^2 \\le 2/\\eta$, and nowhere for "
            "$\\eta > 1$?")


def _tex(x: float) -> str:
    """A tolerance in TeX: `1e-09` -> `10^{-9}`, `0.5` -> `0.5`."""
    m, e = f"{x:.0e}".split("e")
    if abs(x) >= 1e-3:
        return f"{x:g}"
    return (f"10^{{{int(e)}}}" if m == "1" else f"{m} \\times 10^{{{int(e)}}}")


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over the step sizes."""
    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    key = jax.random.key(seed)
    w0 = jax.random.uniform(key, (cfg.n_inits, 2), minval=-cfg.init_range, maxval=cfg.init_range)
    ends, per = {}, {}
    lrs = cfg.lrs
    if progress:  # one vmapped scan per step size, a few seconds each with compilation
        from tqdm.auto import tqdm

        lrs = tqdm(cfg.lrs, desc="implicit-bias: step sizes", unit="eta", leave=False)
    for lr in lrs:
        e = jt.gd_endpoints(jt.hyperbola_loss, w0, lr, n_steps=cfg.steps, tol=cfg.tol, throw=False)
        ends[lr] = e
        w = np.asarray(e.params)
        conv = np.asarray(e.converged)
        div = np.asarray(e.diverged)
        a = w[conv, 0]
        lam = a**2 + a**-2
        bound = 2.0 / lr
        ok = lam <= bound * (1 + cfg.bound_slack)
        stab = _stability_checks(w[conv][: cfg.n_stability], lr)
        neither = ~conv & ~div
        wn = w[neither]
        ln = np.asarray(e.loss)[neither]
        per[f"{lr:g}"] = {
            "lr": lr, "bound_2_over_eta": bound, "n_converged": int(conv.sum()),
            "n_diverged": int(div.sum()), "n_neither": int((~conv & ~div).sum()),
            "all_converged_obey_bound": bool(ok.all()),
            "n_violations": int((~ok).sum()),
            "max_curvature_at_limit": float(lam.max()) if lam.size else None,
            "max_curvature_over_bound": float(lam.max() / bound) if lam.size else None,
            "a_range": [float(np.abs(a).min()), float(np.abs(a).max())] if a.size else None,
            "stability_checked": stab["n"],
            "stability_all_manifold": stab["manifold"],
            "stability_mu_max": stab["mu_max"],
            "stability_mu_error_max": stab["mu_error_max"],
            "neither_balance_gap_max": float(np.max(np.abs(np.abs(wn[:, 0]) - np.abs(wn[:, 1]))))
            if wn.size else None,
            "neither_loss_range": [float(ln.min()), float(ln.max())] if ln.size else None,
        }
    elapsed = round(time.perf_counter() - t0, 2)
    last = f"{max(cfg.lrs):g}"
    metrics = {
        "quick": quick, "seed": seed, "runs": per,
        "all_bounds_hold": bool(all(r["all_converged_obey_bound"] for r in per.values())),
        "none_converge_above_1": bool(all(r["n_converged"] == 0 for r in per.values() if r["lr"] > 1)),
        "config": dataclasses.asdict(cfg), "timings_s": {"total": elapsed},
    }
    fig = plot_implicit_bias(ends, lim=cfg.init_range)
    figures = {"hyperbola": fig, "curvature": _curvature_figure(ends)}
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics, last), metrics, figures,
                            question=QUESTION, claims=_claims(cfg, metrics))


def _claims(cfg: Config, m: dict) -> tuple[Claim, ...]:
    """The claims of the experiment from its metrics (pure: no run; tested on synthetic metrics)."""
    runs = m["runs"]
    bound = Claim.check(
        "GD with step $\\eta$ settles only at minima $(a, 1/a)$ where the nonzero Hessian eigenvalue "
        "satisfies $a^2 + 1/a^2 \\leq 2/\\eta$ (linear stability on the manifold of minima).",
        SOURCE_ARC,
        f"every step size: every converged run (final loss $< {_tex(cfg.tol)}$) has $a^2 + 1/a^2 \\leq "
        f"2/\\eta$ (relative slack ${_tex(cfg.bound_slack)}$ for rounding)",
        {k: {"converged": r["n_converged"], "violations": r["n_violations"],
             "max_curvature_over_2/eta": "-" if r["max_curvature_over_bound"] is None
             else r["max_curvature_over_bound"]} for k, r in runs.items()},
        [r["all_converged_obey_bound"] for r in runs.values()],
        why="converged runs violate the bound at $\\eta$ = "
        + ", ".join(k for k, r in runs.items() if not r["all_converged_obey_bound"]) + ".")
    above = {k: r for k, r in runs.items() if r["lr"] > 1}
    nowhere = Claim.check(
        "For $\\eta > 1$ no minimum is linearly stable ($a^2 + 1/a^2 \\geq 2 > 2/\\eta$): GD "
        "converges nowhere.",
        SOURCE_ARC,
        "every step size $\\eta > 1$: no converged run",
        {k: {"converged": r["n_converged"], "diverged": r["n_diverged"], "neither": r["n_neither"]}
         for k, r in above.items()} or "no step size above 1 in this run",
        [r["n_converged"] == 0 for r in above.values()] or False,
        why=("runs converged at $\\eta$ = " + ", ".join(k for k, r in above.items() if r["n_converged"])
             + ", above 1.") if above else
        "the configuration has no step size above 1, so the claim was not tested.")
    below = {k: r for k, r in runs.items() if r["lr"] <= 1}
    cover_ok = [r["max_curvature_over_bound"] is not None
                and r["max_curvature_over_bound"] >= COVER_FRACTION for r in below.values()]
    cover = Claim.check(
        "Every point of the stable arc with $\\mu = \\log|1 - \\eta(a^2 + 1/a^2)| < 0$ attracts a "
        "positive-measure set of initialisations, so the limits fill the stable arc up to its ends.",
        SOURCE_THM_A,
        f"every step size $\\eta \\leq 1$: the largest $a^2 + 1/a^2$ over the limits at least "
        f"{COVER_FRACTION:g} $\\times\\, 2/\\eta$ ({cfg.n_inits} initialisations uniform in "
        f"$[-{cfg.init_range:g}, {cfg.init_range:g}]^2$)",
        {k: "no converged run" if r["max_curvature_over_bound"] is None else r["max_curvature_over_bound"]
         for k, r in below.items()} or "no step size up to 1 in this run",
        cover_ok or False,
        why=("the limits stop short of the arc's ends at $\\eta$ = "
             + ", ".join(k for k, ok in zip(below, cover_ok) if not ok) + ".") if below else
        "the configuration has no step size up to 1, so the claim was not tested.")
    checked = {k: r for k, r in runs.items() if r["stability_checked"]}
    stab_ok = [bool(r["stability_all_manifold"]) and r["stability_mu_max"] <= 0
               and r["stability_mu_error_max"] <= MU_TOL for r in checked.values()]
    stab = Claim.check(
        "At a limit the GD map's Jacobian $I - \\eta H$ has the eigenvalue 1 along the hyperbola "
        "(tangent, the manifold regime) and $\\mu = \\log|1 - \\eta(a^2 + 1/a^2)| \\leq 0$ across it.",
        SOURCE_THM_A,
        f"every step size with converged runs: `gd_stability` at up to {cfg.n_stability} limits reports "
        f"the manifold regime, $\\mu \\leq 0$, and $|\\mu - \\log|1 - \\eta(a^2 + 1/a^2)|| \\leq "
        f"{_tex(MU_TOL)}$",
        {k: {"limits_checked": r["stability_checked"], "manifold": r["stability_all_manifold"],
             "mu_max": r["stability_mu_max"], "mu_error_max": r["stability_mu_error_max"]}
         for k, r in checked.items()} or "no converged run to check",
        stab_ok or False,
        why=("`gd_stability` disagrees with the closed form or the regime at $\\eta$ = "
             + ", ".join(k for k, ok in zip(checked, stab_ok) if not ok) + ".") if checked else
        "no step size had a converged run to check.")
    return (bound, nowhere, cover, stab)


def _curvature_figure(ends: dict):
    """The curvature $a^2 + 1/a^2$ at every converged limit in units of $2/\\eta$, one histogram
    per step size, against the bound 1 (the claim: no limit beyond it)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 3.8), layout="constrained")
    bins = np.linspace(0.0, 1.1, 45)
    for i, (lr, e) in enumerate(sorted(ends.items())):
        a = np.asarray(e.params)[np.asarray(e.converged), 0]
        label = rf"$\eta$ = {lr:g}: {a.size} converged"
        if a.size:
            ax.hist((a**2 + a**-2) * lr / 2.0, bins=bins, histtype="step", lw=1.6, color=f"C{i}",
                    ls=("-", "--", ":", "-.")[i % 4], label=label)
        else:
            ax.plot([], [], ls="none", label=label + " (no limit to show)")
    ax.axvline(1.0, color="black", ls="--", lw=1.2, label=r"bound $a^2 + 1/a^2 = 2/\eta$")
    ax.axvline(0.0, color="white", lw=0)  # keep 0 in view
    ax.set_xlabel(r"curvature at the limit in units of the bound, $(a^2 + 1/a^2)\,\eta/2$")
    ax.set_ylabel("converged runs per bin")
    ax.set_title(r"Curvature at GD's limits against the bound $2/\eta$ (left edge: $a = \pm 1$)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return fig


def _stability_checks(limits: np.ndarray, lr: float) -> dict:
    """`gd_stability` at converged limits: the manifold regime and mu against the closed form."""
    if limits.shape[0] == 0:
        return {"n": 0, "manifold": None, "mu_max": None, "mu_error_max": None}
    res = jax.vmap(lambda w: jt.gd_stability(jt.hyperbola_loss, w, lr, k=2))(jnp.asarray(limits))
    a = limits[:, 0]
    exact = np.log(np.abs(1.0 - lr * (a**2 + a**-2)))
    mu = np.asarray(res.mu)
    return {"n": int(limits.shape[0]), "manifold": bool(np.all(np.asarray(res.manifold))),
            "mu_max": float(mu.max()), "mu_error_max": float(np.max(np.abs(mu - exact)))}


def _summary(cfg: Config, m: dict, last: str) -> str:
    rows = ["| $\\eta$ | $2/\\eta$ | converged | diverged (overflow) | neither | max $a^2 + 1/a^2$ at a "
            "limit | all obey the bound | `gd_stability`: manifold, max $\\mu$ |",
            "|---|---|---|---|---|---|---|---|"]
    for key, r in m["runs"].items():
        mx = "-" if r["max_curvature_at_limit"] is None else f"{r['max_curvature_at_limit']:.6g}"
        st = "-" if r["stability_checked"] == 0 else (
            f"{r['stability_all_manifold']}, {r['stability_mu_max']:.3g} ({r['stability_checked']} limits)")
        obey = r["all_converged_obey_bound"] if r["n_converged"] else "-"
        rows.append(f"| {key} | {r['bound_2_over_eta']:.4g} | {r['n_converged']} | {r['n_diverged']} | "
                    f"{r['n_neither']} | {mx} | {obey} | {st} |")
    verdict = ("Every converged run obeys the bound" if m["all_bounds_hold"]
               else "SOME converged runs violate the bound")
    none = (f"and at $\\eta = {last}$ none converges" if m["none_converge_above_1"]
            else f"but at $\\eta = {last}$ some runs converge")
    paras = [
        f"**Setup.** {cfg.n_inits} initialisations uniform in $[-{cfg.init_range:g}, "
        f"{cfg.init_range:g}]^2$ (the same for every $\\eta$), float64, {cfg.steps} GD steps, "
        f"`vmap`ped. Converged: final loss $< {_tex(cfg.tol)}$; diverged: the loss or the weights "
        "overflowed (counted, not raised); neither: still moving at the end of the budget. The bound "
        f"is checked with a relative slack of ${_tex(cfg.bound_slack)}$ for rounding.",
        "\n".join(rows) + ("\n\n*A dash: no converged run at that step size, so there is no limit to "
                           "measure or check.*" if any(r["n_converged"] == 0 for r in m["runs"].values())
                           else ""),
        f"**Reading.** {verdict}, {none}. The largest curvature at a limit sits just below $2/\\eta$: "
        "GD fills the whole stable arc of the hyperbola, and the limits at the arc's ends are where "
        "the linearisation $1 - \\eta(a^2 + 1/a^2)$ has modulus close to 1. `gd_stability` at the "
        "limits reports the manifold regime (one zero eigenvalue, tangent to the hyperbola) and "
        "$\\mu \\le 0$, matching $\\log|1 - \\eta(a^2 + 1/a^2)|$ to the error shown in the metrics.",
    ]
    for key, r in m["runs"].items():
        if r["n_neither"]:
            paras.append(
                f"At $\\eta = {key}$, {r['n_neither']} runs neither converged nor overflowed: they end "
                f"balanced, $\\max||w_1| - |w_2|| = {r['neither_balance_gap_max']:.2g}$, with losses "
                f"{r['neither_loss_range'][0]:.3g} to {r['neither_loss_range'][1]:.3g}, still oscillating "
                "(not a fixed point: the loss is far from 0).")
    return "\n\n".join(paras) + "\n"
