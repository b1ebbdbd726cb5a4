r"""SGD as a random dynamical system at an interpolating minimum of a real network
(Chemnitz & Engel, arXiv 2407.20209, Theorem B).

An overparameterised tanh MLP (64-72-72-1, $p = 10\,009$ parameters, float64) is trained on
$n = 64$ standardised digits ($n = 32$ in quick mode; scikit-learn's bundled 8x8 images; target
$\pm 1$ for even/odd) to an interpolating minimum with
[`jaxdyn.training.find_interpolating_minimum`][] (Levenberg-Marquardt, mean loss below $10^{-30}$).
The squared loss is exactly Gauss-Newton there, so the normal space is the row space of the
stacked per-example Jacobians ($\operatorname{rank} = n$).

Over a grid of step sizes $\eta$ (in units of the GD boundary $2/\lambda_{\max}$) and batch sizes
$B \in \{1, 2, 4, 8, 16, n\}$ we compute the top Lyapunov exponent $\lambda$ of the linearised SGD
on the normal space ([`jaxdyn.training.sgd_stability_diagram`][]; $B = n$ is full-batch GD: the
product is deterministic and its exponent is computed exactly, $\mu = \log\max_j|1 - \eta h_j|$),
the mean-square bound, and check the sign of $\lambda$ with nonlinear SGD started next to the
minimum ([`jaxdyn.training.sgd_escape`][]).
"""

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..plot import plot_sgd_escape, plot_sgd_stability
from ..training import (
    GaussNewton,
    find_interpolating_minimum,
    normal_space,
    sgd_escape,
    sgd_stability_diagram,
)
from ._result import Claim, ExperimentResult

NAME = "sgd-stability"
TITLE = "SGD at an interpolating minimum: Lyapunov exponent vs the GD boundary (digits, tanh MLP)"


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    n: int = 32  # digits
    width: int = 72
    depth: int = 2
    lr_fracs: tuple = (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95, 1.02, 1.1, 1.3)  # x 2/lambda_max
    batch_sizes: tuple = (1, 2, 4, 8, 16, 32)
    n_steps: int = 1000
    n_chains: int = 6
    escape_steps: int = 600
    escape_runs: int = 4


# The criteria of the claims, fixed before the runs (see `_claims`):
N_SIGMA = 3.0  # significance: |lambda| > N_SIGMA stderr
GD_ROW_TOL = 1e-10  # B = n: |lambda - mu| <= GD_ROW_TOL (1 + |mu|)
SMALL_ETA_REL = 0.1  # smallest eta: |lambda_B - mu| <= N_SIGMA stderr + SMALL_ETA_REL |mu|

SOURCE_B = ("Chemnitz & Engel, arXiv 2407.20209, Theorem B (SGD at an interpolating minimum as a random "
            "dynamical system); the mission's paper (Chemnitz, Engel, Kuehn, Kuntz 2025), dynamics of the "
            "network (training): SGD")
QUESTION = ("At an interpolating minimum of a real network, where is linearised SGD stable (top Lyapunov "
            "exponent $\\lambda < 0$) over step size $\\eta$ and batch size $B$, how does that compare "
            "with the GD boundary $\\eta = 2/\\lambda_{\\max}$, and does the sign of $\\lambda$ predict "
            "whether nonlinear SGD started next to the minimum returns or escapes?")

QUICK = Config()
FULL = Config(n=64, batch_sizes=(1, 2, 4, 8, 16, 64),
              lr_fracs=tuple(np.round(np.geomspace(0.03, 1.5, 24), 4)), n_steps=4000, n_chains=16,
              escape_steps=2000, escape_runs=8)


def digits_problem(n: int = 64, width: int = 72, depth: int = 2, seed: int = 0):
    r"""The digits regression problem used here and in `benchmarks/sgd.py`.

    $n$ images (fixed random subset), pixels scaled by 1/16 and standardised, target $+1$ for
    even and $-1$ for odd digits; an `eqx.nn.MLP(64, "scalar", width, depth, tanh)` in float64.

    **Returns:** `(model, data, residual_fn, loss_fn)` with `data = (x, y)`,
    `residual_fn(model, (x_i, y_i)) = model(x_i) - y_i` and `loss_fn = residual^2 / 2`.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), n, replace=False)
    x = X[idx] / 16.0
    x = (x - x.mean(0)) / (x.std(0) + 0.1)
    t = np.where(y[idx] % 2 == 0, 1.0, -1.0)
    data = (jnp.asarray(x, jnp.float64), jnp.asarray(t, jnp.float64))
    model = eqx.nn.MLP(64, "scalar", width, depth, activation=jnp.tanh, key=jax.random.key(seed))
    model = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
    return model, data, _residual, _loss


def _residual(model, ex):
    x, y = ex
    return model(x) - y


def _loss(model, ex):
    return 0.5 * _residual(model, ex) ** 2


def _tex(x: float) -> str:
    """A tolerance in TeX: `1e-09` -> `10^{-9}`, `0.5` -> `0.5`."""
    m, e = f"{x:.0e}".split("e")
    if abs(x) >= 1e-3:
        return f"{x:g}"
    return (f"10^{{{int(e)}}}" if m == "1" else f"{m} \\times 10^{{{int(e)}}}")


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets."""
    cfg = QUICK if quick else FULL
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model, data, residual, loss = digits_problem(cfg.n, cfg.width, cfg.depth, seed)
    bar = None
    if progress:  # the diagram has its own bar; this one counts the fit, the diagram and the escapes
        from tqdm.auto import tqdm

        bar = tqdm(total=3, desc="sgd-stability", unit="stage", leave=False)
        bar.set_postfix_str("fit to interpolation")
    fit = find_interpolating_minimum(residual, model, data, adam_steps=0, lm_steps=40)
    timings["fit"] = round(time.perf_counter() - t0, 2)
    t1 = time.perf_counter()
    space = normal_space(loss, fit.params, data, curvature=GaussNewton(residual))
    timings["normal_space"] = round(time.perf_counter() - t1, 2)
    boundary = 2 / float(space.lambda_max)
    lrs = boundary * np.asarray(cfg.lr_fracs)
    sizes = tuple(b if b <= cfg.n else cfg.n for b in cfg.batch_sizes)
    t1 = time.perf_counter()
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str("stability diagram")
    diag = sgd_stability_diagram(loss, fit.params, data, lrs=lrs, batch_sizes=sizes,
                                 key=jax.random.key(seed + 1), n_steps=cfg.n_steps,
                                 n_chains=cfg.n_chains, normal_space=space, progress=progress)
    timings["diagram"] = round(time.perf_counter() - t1, 2)

    exp, se = np.asarray(diag.exponent), np.asarray(diag.stderr)
    gd = np.asarray(diag.gd_exponent)
    msb = np.asarray(diag.mean_square_bound)
    sure = np.abs(exp) > 3 * se
    dis = np.asarray(diag.disagree)
    gd_stable_sgd_not = dis & (exp > 0)
    sgd_stable_gd_not = dis & (exp < 0)
    # simulation checks: the smallest step where B = 1 is unstable (GD stable there), with B = 1
    # and with B = n (GD) at the same step; and a step above the GD boundary with B = 16
    i1 = sizes.index(1) if 1 in sizes else 0
    cand = np.flatnonzero(gd_stable_sgd_not[i1])
    j_dis = int(cand[len(cand) // 2]) if len(cand) else int(np.argmin(np.abs(np.asarray(cfg.lr_fracs) - 0.5)))
    checks = [(j_dis, sizes[i1]), (j_dis, cfg.n)]
    t1 = time.perf_counter()
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str("nonlinear SGD escapes")
    escapes, sim = {}, []
    for j, b in checks:
        res = sgd_escape(loss, fit.params, data, lr=float(lrs[j]), batch_size=b,
                         key=jax.random.key(seed + 2), n_steps=cfg.escape_steps,
                         n_runs=cfg.escape_runs, radius=1e-7, factor=10.0, normal_space=space,
                         throw=False)  # a run to infinity is an escape (outcome -1), not a failure
        i = sizes.index(b)
        label = rf"$\eta$ = {cfg.lr_fracs[j]:.2f} $\times\, 2/\lambda_{{\max}}$, $B$ = {b}"
        escapes[label] = res
        lam = float(exp[i, j])
        agree = (lam > 0 and float(res.escaped_fraction) == 1.0) or (
            lam < 0 and float(res.escaped_fraction) == 0.0)
        sim.append({"lr_frac": cfg.lr_fracs[j], "batch_size": b, "lambda": lam,
                    "stderr": float(se[i, j]), "returned_fraction": float(res.returned_fraction),
                    "escaped_fraction": float(res.escaped_fraction),
                    "mean_rate": float(np.nanmean(np.where(np.isfinite(res.rate), res.rate, np.nan))),
                    "agrees_with_sign": bool(agree)})
    timings["escape"] = round(time.perf_counter() - t1, 2)
    if bar is not None:
        bar.update(1)
        bar.close()
    timings["total"] = round(time.perf_counter() - t0, 2)

    fig_diag = plot_sgd_stability(diag)
    fig_escape = plot_sgd_escape(escapes)
    # B = n is GD: the product is deterministic and its exponent is computed exactly (= mu)
    in_gd = sizes.index(cfg.n) if cfg.n in sizes else None
    metrics = {
        "quick": quick, "seed": seed, "config": dataclasses.asdict(cfg),
        "n_params": int(space.theta.shape[0]), "n_examples": cfg.n, "rank": space.rank,
        "fit_loss": float(fit.loss), "lm_steps": int(fit.lm_steps),
        "max_example_loss": float(jnp.max(jax.vmap(lambda ex: loss(fit.params, ex))(data))),
        "lambda_max": float(space.lambda_max), "lambda_min_normal": float(space.eigenvalues[-1]),
        "gd_boundary_lr": boundary, "eig_residual": float(space.eig_residual),
        "null_residual": float(space.null_residual),
        "lrs": lrs, "batch_sizes": list(sizes), "exponent": exp, "stderr": se, "gd_exponent": gd,
        "mean_square_bound": msb, "significant": sure,
        "n_gd_stable_sgd_unstable": int(gd_stable_sgd_not.sum()),
        "n_sgd_stable_gd_unstable": int(sgd_stable_gd_not.sum()),
        "first_unstable_lr_frac": {
            str(b): (None if not np.any((exp[i] > 0) & sure[i]) else
                     float(np.asarray(cfg.lr_fracs)[np.argmax((exp[i] > 0) & sure[i])]))
            for i, b in enumerate(sizes)},
        "lambda_le_ms_bound": bool(np.all(exp <= msb + 3 * se + 1e-10 * (1 + np.abs(msb)))),
        "gd_row_max_abs_diff_mu": None if in_gd is None else float(np.max(np.abs(exp[in_gd] - gd))),
        "gd_row_max_stderr_over_mu": None if in_gd is None else float(np.max(se[in_gd] / np.abs(gd))),
        "deterministic_rows": [b for b, d in zip(sizes, np.asarray(diag.deterministic)) if d],
        "max_gd_control_shift": float(np.max(np.abs(np.asarray(diag.gd_control_shift)))),
        "simulation": sim, "timings_s": timings,
    }
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics),
                            metrics, {"diagram": fig_diag, "escape": fig_escape},
                            question=QUESTION, claims=_claims(cfg, metrics))


def _claims(cfg: Config, m: dict) -> tuple[Claim, ...]:
    """The claims of the experiment from its metrics (pure: no run; tested on synthetic metrics)."""
    exp = np.asarray(m["exponent"], dtype=float)
    se = np.nan_to_num(np.asarray(m["stderr"], dtype=float))
    msb = np.asarray(m["mean_square_bound"], dtype=float)
    gd = np.asarray(m["gd_exponent"], dtype=float)
    fracs = np.asarray(cfg.lr_fracs, dtype=float)
    sizes = list(m["batch_sizes"])
    n = m["n_examples"]
    # 1. Jensen: lambda <= the mean-square bound (per batch size, cells with a finite bound)
    excess = exp - msb - N_SIGMA * se - 1e-10 * (1 + np.abs(msb))
    fin = np.isfinite(msb) & np.isfinite(exp)
    rows_ok = [bool(np.all(excess[i][fin[i]] <= 0)) for i in range(len(sizes))]
    jensen = Claim.check(
        "The top exponent of the random product is at most the mean-square bound, $\\lambda \\leq "
        "\\frac12\\log\\rho(\\mathbb{E}[B \\otimes B])$ (Jensen), on the normal space.",
        SOURCE_B,
        f"every cell $(\\eta, B)$ with a finite bound: $\\lambda \\leq$ bound $+ {N_SIGMA:g}$ stderr",
        {f"B = {b}": float(np.max(np.where(fin[i], exp[i] - msb[i], -np.inf))) if fin[i].any() else "-"
         for i, b in enumerate(sizes)} | {"quantity": "max over eta of lambda - bound"},
        rows_ok,
        why="the estimate exceeds the mean-square bound by more than its error at $B$ = "
        + ", ".join(str(b) for b, ok in zip(sizes, rows_ok) if not ok) + ".")
    # 2. B = n is GD: the exponent is mu exactly
    if n in sizes:
        i = sizes.index(n)
        dev = float(np.max(np.abs(exp[i] - gd)))
        tol_ok = bool(np.all(np.abs(exp[i] - gd) <= GD_ROW_TOL * (1 + np.abs(gd))))
        gd_row = Claim.check(
            "Full-batch SGD ($B = n$) is GD: its exponent is $\\mu = \\log\\max_j|1 - \\eta h_j|$ "
            "over the nonzero curvatures $h_j$.",
            SOURCE_B,
            f"row $B = n = {n}$: $|\\lambda - \\mu| \\leq {_tex(GD_ROW_TOL)}\\,(1 + |\\mu|)$ at every "
            "$\\eta$",
            {"max_abs_lambda_minus_mu": dev}, tol_ok,
            why=f"the $B = n$ row deviates from $\\mu$ by up to {dev:.2g}.")
    else:
        gd_row = Claim("Full-batch SGD ($B = n$) is GD: its exponent is $\\mu$.", SOURCE_B,
                       f"row $B = n = {n}$ present", "no B = n row in this run", "not reproduced",
                       "the configuration has no full-batch row, so the claim was not tested.")
    # 3. the sign of lambda decides what nonlinear SGD does next to the minimum
    sim = m["simulation"]
    sign_ok = [bool(s["agrees_with_sign"]) and abs(s["lambda"]) > N_SIGMA * s["stderr"] for s in sim]
    sign = Claim.check(
        "$\\lambda < 0$: SGD started near the minimum converges to it with positive probability; "
        "$\\lambda > 0$: with probability zero (it escapes).",
        SOURCE_B,
        f"every simulated cell (nonlinear SGD, {cfg.escape_runs} runs from $10^{{-7}}$ off the minimum): "
        f"$|\\lambda| > {N_SIGMA:g}$ stderr, and all runs escape (grow 10-fold) when $\\lambda > 0$, none "
        "when $\\lambda < 0$",
        [{"eta_over_2/lambda_max": s["lr_frac"], "B": s["batch_size"], "lambda": s["lambda"],
          "stderr": s["stderr"], "escaped_fraction": s["escaped_fraction"]} for s in sim]
        or "no simulation",
        sign_ok or False,
        why="in some simulated cells the outcome does not match the sign of $\\lambda$ (or $\\lambda$ "
        "is not significant)." if sim else "no simulation was run.")
    # 4. small batches lose stability before the GD boundary
    first = m["first_unstable_lr_frac"]
    b_min = min(sizes)
    f1 = first.get(str(b_min))
    early = Claim.check(
        "SGD's stability differs from GD's: with small batches $\\lambda > 0$ at step sizes where GD "
        "is stable ($\\mu < 0$, $\\eta < 2/\\lambda_{\\max}$).",
        SOURCE_B,
        f"$B = {b_min}$: $\\lambda > {N_SIGMA:g}$ stderr at some $\\eta < 2/\\lambda_{{\\max}}$",
        {"first_unstable_eta_over_2/lambda_max": {
            f"B = {b}": "none" if v is None else v for b, v in first.items()},
         "cells_gd_stable_sgd_unstable": m["n_gd_stable_sgd_unstable"]},
        f1 is not None and f1 < 1.0,
        why=f"with $B = {b_min}$ no significantly positive exponent was found below the GD boundary.")
    # 5. eta -> 0: SGD is GD to O(eta^2), so lambda_B -> mu
    j = int(np.argmin(fracs))
    gap = np.abs(exp[:, j] - gd[j])
    tol = N_SIGMA * se[:, j] + SMALL_ETA_REL * abs(gd[j])
    small_ok = [bool(g <= t) for g, t in zip(gap, tol)]
    small = Claim.check(
        "For small $\\eta$ SGD agrees with GD to $O(\\eta^2)$ per step, so $\\lambda_B \\to \\mu$ "
        "as $\\eta \\to 0$ for every batch size.",
        SOURCE_B,
        f"at the smallest step size ($\\eta$ = {fracs[j]:g} $\\times\\, 2/\\lambda_{{\\max}}$), every "
        f"$B$: $|\\lambda_B - \\mu| \\leq {N_SIGMA:g}$ stderr $+ {SMALL_ETA_REL:g}\\,|\\mu|$",
        {"mu": float(gd[j])} | {f"B = {b}": float(exp[i, j]) for i, b in enumerate(sizes)},
        small_ok,
        why="at the smallest step size $\\lambda_B$ is off $\\mu$ by more than the tolerance for $B$ = "
        + ", ".join(str(b) for b, ok in zip(sizes, small_ok) if not ok) + ".")
    return (jensen, gd_row, sign, early, small)


def _summary(cfg: Config, m: dict) -> str:
    first = ", ".join(f"$B$ = {b}: {'none' if v is None else f'{v:g}'}"
                      for b, v in m["first_unstable_lr_frac"].items())
    sims = "; ".join(
        f"$\\eta$ = {s['lr_frac']:.2f} $\\times\\, 2/\\lambda_{{\\max}}$, $B$ = {s['batch_size']}: "
        f"$\\lambda$ = {s['lambda']:+.4f} $\\pm$ {s['stderr']:.2g}, {s['escaped_fraction']:.0%} escaped, "
        f"{s['returned_fraction']:.0%} returned "
        f"({'agrees' if s['agrees_with_sign'] else 'DOES NOT agree'} with the sign)"
        for s in m["simulation"])
    dis = m["n_gd_stable_sgd_unstable"]
    rev = m["n_sgd_stable_gd_unstable"]
    return f"""A tanh MLP 64-{cfg.width}-{cfg.width}-1 with $p$ = {m['n_params']} parameters was trained to an
interpolating minimum of $n$ = {m['n_examples']} digits (mean loss {m['fit_loss']:.2e} after
{m['lm_steps']} Levenberg-Marquardt steps; largest per-example loss {m['max_example_loss']:.1e}).
The normal space has dimension {m['rank']} ($= n$); its curvatures span
{m['lambda_min_normal']:.3g} .. {m['lambda_max']:.3g}, so the GD boundary is $\\eta =
2/\\lambda_{{\\max}}$ =
{m['gd_boundary_lr']:.4g}. Residual checks: $\\|HU - U\\,\\mathrm{{diag}}(h)\\|$
{m['eig_residual']:.1e}, $\\|H w\\|$ for $w$
tangent {m['null_residual']:.1e} (relative to $\\lambda_{{\\max}}$).

**Where GD and SGD disagree.** Over {len(cfg.lr_fracs)} step sizes x {len(cfg.batch_sizes)} batch
sizes ({cfg.n_chains} chains x {cfg.n_steps} steps per cell), {dis} cells have GD stable but SGD
significantly unstable ($\\lambda$ > 3 stderr > 0), and {rev} have SGD significantly stable where GD
is unstable. The smallest step size (in units of $2/\\lambda_{{\\max}}$) with a significantly positive
exponent: {first}. Small batches lose stability well before the GD boundary: the per-example
curvature $\\|J_i\\|^2$ along a sampled direction is larger than the averaged $\\lambda_{{\\max}}$, and
the random
product does not average it away. Every estimate stays below the mean-square bound (within 3
stderr): {m['lambda_le_ms_bound']}.

**Simulation check** (nonlinear SGD from $\\theta^* + 10^{{-7}}\\,v$, $v$ a random unit normal
direction; escaped: the
distance $\\sqrt{{L}}$ grew 10-fold; returned: it shrank 10-fold): {sims}.

**$B = n$ is GD.** Every step of full-batch GD multiplies by the same $I - \\eta H$, so the $B = n$ row
(rows {m['deterministic_rows']} are deterministic) is computed exactly, $\\log\\max_j|1 - \\eta h_j|$:
its largest deviation from the GD exponent $\\mu$ is {m['gd_row_max_abs_diff_mu']:.1e}, with a reported
error (from the eigen-solver's residual) of at most {m['gd_row_max_stderr_over_mu']:.1e} $|\\mu|$. (A
finite product from a random start converges to it too slowly to be used here: in the stable region
the top exponent is a tiny negative number, about $-\\eta\\lambda_{{\\min}}$, and the smallest normal
curvatures
are close together, so the tangent vector aligns only after $\\sim 1/(\\eta\\,\\mathrm{{gap}})$ steps.)
For $B < n$ the
estimates are sampled products of {cfg.n_steps} steps from which the same run's error on GD (known
exactly) is subtracted, a control variate that removes this start-up error where SGD is close to GD
(small $\\eta$, $B$ close to $n$; the largest shift here is {m['max_gd_control_shift']:.1e}): the $B <
n$ rows
now meet $\\mu$ as $\\eta \\to 0$, as they must (there SGD is GD to $O(\\eta^2)$). Their stderr is the
spread
between chains and does not include the remaining $O(1/N)$ start-up error.
"""
