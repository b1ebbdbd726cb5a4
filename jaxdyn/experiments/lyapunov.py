r"""Lyapunov spectra: the Lorenz system and the order-to-chaos transition of deep networks.

Three reproductions, all in float64:

- **Lorenz spectrum** ($\sigma, \rho, \beta = 10, 28, 8/3$): the full spectrum by Benettin's QR
  method ([`jaxdyn.lyapunov.flow_spectrum`][], fixed-step RK4 with $dt = 0.01$) against the
  standard values $(0.9056, 0, -14.5723)$ (Sprott, *Chaos and Time-Series Analysis*, 2003). The
  sum of the exponents is the mean divergence of the field, exactly $-(\sigma + 1 + \beta) =
  -13.6667$, and the Kaplan-Yorke dimension is $2 + \lambda_1 / |\lambda_3| \approx 2.062$.
- **$\rho$ sweep**: $\lambda_1$ over $\rho \in [0, 250]$ with [`jaxdyn.lyapunov.sweep`][] (one
  `jit(vmap)` program, sharded over devices when there are several). Below the Hopf point
  $\rho_H = \sigma(\sigma + \beta + 3)/(\sigma - \beta - 1) \approx 24.74$ it is checked against
  the linear stability of the attracting equilibrium; above it, chaos with periodic windows.
- **Order to chaos**: the top per-layer Lyapunov exponent of deep random tanh networks
  ([`jaxdyn.lyapunov.order_to_chaos`][]) against the mean-field $\frac12 \log \chi_1$ of Poole
  et al. (2016); the transition $\chi_1 = 1$ is at $\sigma_w^2 = 1.761$ for $\sigma_b^2 = 0.05$.
"""

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._results import message
from ..lyapunov import flow_spectrum, order_to_chaos, signal_propagation, sweep
from ..plot import plot_lyapunov_convergence, plot_phase_diagram, plot_sweep
from ..plot._plots import _legend_outside
from ._progress import stages
from ._result import Claim, ExperimentResult

NAME = "lyapunov"
TITLE = "Lyapunov spectra: the Lorenz system and the order-to-chaos transition"

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
LORENZ_REFERENCE = (0.9056, 0.0, -14.5723)
"""Lyapunov exponents of the Lorenz system at (10, 28, 8/3) (Sprott 2003)."""
LORENZ_SUM = -(SIGMA + 1.0 + BETA)
"""The exact sum of the exponents: the (constant) divergence of the field, -13.6667."""
LORENZ_KY_REFERENCE = 2.0 + LORENZ_REFERENCE[0] / abs(LORENZ_REFERENCE[2])
RHO_HOPF = SIGMA * (SIGMA + BETA + 3.0) / (SIGMA - BETA - 1.0)
"""Subcritical Hopf bifurcation of the equilibria C+-, 24.7368."""
RHO_CHAOTIC_ATTRACTOR = 24.06
"""Where the chaotic attractor appears (it coexists with C+- up to RHO_HOPF)."""
SIGMA_B2 = 0.05
CRITICAL_SIGMA_W2 = 1.761
"""chi_1 = 1 for tanh at sigma_b^2 = 0.05 (Poole et al. 2016)."""

# The claims' criteria, fixed before the run (see `_claims`).
SUM_TOL = 1e-3
"""Absolute tolerance on the sum of the Lorenz exponents (exact up to the RK4 error)."""
EQUILIBRIUM_RHO_MAX = 20.0
"""The equilibrium regime checked: rho below this (away from the preturbulent transients that
lengthen as rho -> 24.06)."""
EQUILIBRIUM_TOL = 0.05
"""Absolute tolerance of lambda_1 against the equilibrium's linear stability (finite-time bias)."""
CHAOS_RHO_MAX = 40.0
"""Every swept rho in (rho_H, CHAOS_RHO_MAX] must be chaotic ..."""
CHAOS_MIN = 0.1
"""... with lambda_1 above this."""
PERIODIC_WINDOWS = ((150.0, 160.0), (220.0, 250.0))
"""Swept rho inside these (within Sparrow's windows 145 < rho < 166 and rho > 214.4) ..."""
PERIODIC_TOL = 0.05
"""... must have |lambda_1| below this (the zero exponent of a periodic orbit)."""
CRITICAL_TOL = 5e-4
"""Half a unit in the last digit of the published 1.761."""
MEAN_FIELD_GAP_TOL = 0.02
"""max |lambda_1 - log(chi_1)/2| per layer over the sigma_w^2 grid (finite width and depth)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    dt: float = 0.01  # RK4 step (Lorenz spectrum and sweep)
    lorenz_time: float = 200.0  # time units counted for the spectrum
    lorenz_transient: float = 10.0  # time units discarded first
    renorm_every: int = 10  # RK4 steps between QR renormalisations
    n_rho: int = 128  # sweep values in [0, rho_max]
    rho_max: float = 250.0
    sweep_time: float = 50.0  # time units counted per sweep value
    sweep_transient: float = 10.0
    width: int = 128  # random tanh networks
    depth: int = 200
    n_seeds: int = 2
    transient_layers: int = 50  # layers that bring q_l to q* before counting
    sigma_w2_step: float = 0.1  # grid over sigma_w^2 in [1, 3]
    sigma_b2_values: tuple[float, ...] = (SIGMA_B2,)  # a 2-D diagram when more than one


QUICK = Config()
FULL = Config(lorenz_time=1000.0, n_rho=512, sweep_time=200.0, width=256, depth=400, n_seeds=4,
              sigma_b2_values=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3))


def lorenz(t, y, rho):
    """The Lorenz field with $\\sigma = 10$, $\\beta = 8/3$ and $\\rho$ = `rho` (the `args`)."""
    x, y_, z = y
    return jnp.array([SIGMA * (y_ - x), x * (rho - z) - y_, x * y_ - BETA * z])


def equilibrium_exponent(rho: float) -> float:
    """The largest real part of the Jacobian's eigenvalues at the attracting equilibrium (the
    origin for $\\rho \\le 1$, $C_\\pm$ above): $\\lambda_1$ of the flow while that equilibrium
    attracts the trajectory ($\\rho < 24.06$)."""
    if rho <= 1.0:
        J = np.array([[-SIGMA, SIGMA, 0.0], [rho, -1.0, 0.0], [0.0, 0.0, -BETA]])
    else:
        x = np.sqrt(BETA * (rho - 1.0))
        J = np.array([[-SIGMA, SIGMA, 0.0], [1.0, -1.0, -x], [x, x, -BETA]])
    return float(np.max(np.linalg.eigvals(J).real))


def _steps(time_units: float, cfg: Config) -> int:
    n = int(round(time_units / cfg.dt))
    return n - n % cfg.renorm_every


def _part_lorenz(cfg: Config, key, timings: dict):
    t0 = time.perf_counter()
    res = flow_spectrum(lorenz, jnp.ones(3), args=jnp.asarray(RHO), dt=cfg.dt,
                        n_steps=_steps(cfg.lorenz_time, cfg),
                        transient_steps=_steps(cfg.lorenz_transient, cfg),
                        renorm_every=cfg.renorm_every, key=key, progress=False)
    exps = np.asarray(jax.block_until_ready(res.exponents))
    timings["lorenz_spectrum"] = time.perf_counter() - t0
    ref = np.asarray(LORENZ_REFERENCE)
    metrics = {
        "exponents": exps,
        "reference": ref,
        "errors": exps - ref,
        "sum": float(exps.sum()),
        "sum_exact": LORENZ_SUM,
        "sum_error": float(exps.sum() - LORENZ_SUM),
        "kaplan_yorke_dimension": float(res.kaplan_yorke_dimension),
        "kaplan_yorke_reference": LORENZ_KY_REFERENCE,
        "drift": float(res.drift),
        "time_units": float(np.asarray(res.times)[-1]),
        "result": message(res.result),
    }

    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.0), layout="constrained")
    plot_lyapunov_convergence(res, ax=ax0, reference=LORENZ_REFERENCE, legend="below",
                              xlabel="time $T$ (time units)",
                              ylabel=r"running estimate $\lambda_i(T)$ (1/time unit)",
                              title=f"Lorenz (10, 28, 8/3): RK4, $dt$ = {cfg.dt:g}, QR every "
                                    f"{cfg.renorm_every} steps")
    ax0.set_ylim(-16.5, 3.0)
    times = np.asarray(res.times)
    hist = np.asarray(res.history)
    for i, marker in zip(range(3), ("o", "s", "^"), strict=True):
        ax1.plot(times, np.maximum(np.abs(hist[:, i] - ref[i]), 1e-8), lw=1, marker=marker,
                 markevery=np.unique(np.geomspace(1, len(times) - 1, 14).astype(int)), ms=4,
                 label=rf"$|\lambda_{i + 1}(T) - \lambda_{i + 1}^{{\mathrm{{ref}}}}|$")
    guide = times[times >= 1.0]
    ax1.plot(guide, 1.0 / guide, color="black", ls="--", lw=1, label="$1/T$")
    ax1.plot(guide, 1.0 / np.sqrt(guide), color="black", ls=":", lw=1.5,
             label=r"$T^{-1/2}$ (claim 1's tolerance at the final $T$)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("time $T$ (time units)")
    ax1.set_ylabel(r"$|\lambda_i(T) - \lambda_i^{\mathrm{ref}}|$ (1/time unit)")
    ax1.set_title("Error of the running estimates against Sprott (2003)")
    _legend_outside(ax1, "below", ncols=2)
    ax1.grid(alpha=0.3)
    return metrics, fig


def _windows(rhos: np.ndarray, lam: np.ndarray, *, above: float, tol: float) -> list[list[float]]:
    """Contiguous runs of sweep values above `above` with $|\\lambda_1| < $ `tol` (periodic)."""
    periodic = (rhos > above) & (np.abs(lam) < tol)
    runs, start = [], None
    for i, p in enumerate(periodic):
        if p and start is None:
            start = i
        if start is not None and (not p or i == len(periodic) - 1):
            end = i if p else i - 1
            if end > start:  # at least two consecutive values
                runs.append([float(rhos[start]), float(rhos[end])])
            start = None
    return runs


def _extreme(values: np.ndarray, fn) -> float | str:
    """`fn(values)` as a float, or "no swept value" when `values` is empty."""
    return float(fn(values)) if values.size else "no swept value"


def _part_sweep(cfg: Config, key, timings: dict):
    rhos = jnp.linspace(0.0, cfg.rho_max, cfg.n_rho)
    n_steps = _steps(cfg.sweep_time, cfg)
    transient = _steps(cfg.sweep_transient, cfg)

    def lambda_1(rho):
        return flow_spectrum(lorenz, jnp.ones(3), args=rho, dt=cfg.dt, n_steps=n_steps, k=1,
                             transient_steps=transient, renorm_every=cfg.renorm_every, key=key,
                             progress=False).exponents[0]

    t0 = time.perf_counter()
    lam = np.asarray(jax.block_until_ready(sweep(lambda_1, rhos)))
    timings["rho_sweep"] = time.perf_counter() - t0
    rhos = np.asarray(rhos)
    stable = rhos < EQUILIBRIUM_RHO_MAX
    analytic = np.array([equilibrium_exponent(r) for r in rhos[stable]])
    chaotic = lam > CHAOS_MIN
    onset = (rhos > RHO_HOPF) & (rhos <= CHAOS_RHO_MAX)
    metrics = {
        "n_values": int(cfg.n_rho),
        "rho_spacing": float(cfg.rho_max / (cfg.n_rho - 1)),
        "time_units_per_value": cfg.sweep_time,
        "devices": len(jax.devices()),
        "max_error_vs_equilibrium_rho_below_20": _extreme(np.abs(lam[stable] - analytic), np.max),
        "first_rho_lambda1_above_0.1": float(rhos[np.argmax(chaotic)]) if chaotic.any()
        else "none",
        "min_lambda1_rho_hopf_to_40": _extreme(lam[onset], np.min),
        "fraction_lambda1_above_0.1": float(chaotic.mean()),
        "max_lambda1": float(lam.max()),
        "rho_at_max_lambda1": float(rhos[np.argmax(lam)]),
        "max_abs_lambda1_in_windows": [
            _extreme(np.abs(lam[(rhos >= a) & (rhos <= b)]), np.max) for a, b in PERIODIC_WINDOWS],
        "periodic_windows_rho_above_30": _windows(rhos, lam, above=30.0, tol=PERIODIC_TOL),
    }
    fig = plot_sweep(rhos, lam, xlabel=r"$\rho$", labels=[r"$\lambda_1$ (sweep)"],
                     ylabel=r"top exponent $\lambda_1$ (1/time unit)",
                     vlines={r"$\rho = 1$ (pitchfork)": 1.0},
                     title=f"Lorenz: top exponent over {cfg.n_rho} values of $\\rho$, "
                           f"{cfg.sweep_time:g} time units each")
    fig.set_size_inches(11.0, 4.2)
    ax = fig.axes[0]
    fine = np.linspace(0.0, RHO_HOPF, 400)
    ax.plot(fine, [equilibrium_exponent(r) for r in fine], color="black", lw=1.5, ls="--",
            label="linear stability of the attracting equilibrium")
    ax.axvspan(RHO_CHAOTIC_ATTRACTOR, RHO_HOPF, color="tab:red", alpha=0.5, lw=0,
               label=rf"$\rho_A$ = {RHO_CHAOTIC_ATTRACTOR} (chaotic attractor) to $\rho_H$ = "
                     f"{RHO_HOPF:.2f} (Hopf)")
    for i, (a, b) in enumerate(((145.0, 166.0), (214.4, cfg.rho_max))):
        ax.axvspan(a, b, color="tab:green", alpha=0.12, lw=0,
                   label="periodic windows (Sparrow 1982)" if i == 0 else None)
    _legend_outside(ax, "right")
    return metrics, fig


def mean_field_critical_sigma_w2(sigma_b2: float = SIGMA_B2, lo: float = 1.0, hi: float = 3.0,
                                 n_iter: int = 50) -> float:
    """The $\\sigma_w^2$ where the mean-field $\\chi_1 = 1$ for tanh (bisection on
    [`jaxdyn.lyapunov.signal_propagation`][] over `[lo, hi]`; no grid interpolation)."""
    chi_1 = jax.jit(lambda s: signal_propagation(s, sigma_b2).chi_1)  # compiled once
    f = lambda s: float(chi_1(jnp.asarray(s, dtype=float))) - 1.0  # noqa: E731
    f_lo = f(lo)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if (f_mid < 0) == (f_lo < 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _part_chaos(cfg: Config, key, timings: dict):
    sw = jnp.asarray(np.round(np.arange(1.0, 3.0 + 1e-9, cfg.sigma_w2_step), 10))
    grid_2d = len(cfg.sigma_b2_values) > 1
    sb = jnp.asarray(cfg.sigma_b2_values if grid_2d else (SIGMA_B2,))
    t0 = time.perf_counter()
    diagram = order_to_chaos(sw, sb, key=key, width=cfg.width, depth=cfg.depth,
                             n_seeds=cfg.n_seeds, transient=cfg.transient_layers)
    jax.block_until_ready(diagram.empirical)
    timings["order_to_chaos"] = time.perf_counter() - t0
    row = int(np.argmin(np.abs(np.asarray(sb) - SIGMA_B2)))
    one = diagram.row(row)
    mf = float(one.critical_sigma_w2("mean_field")[0])
    emp = float(one.critical_sigma_w2("empirical")[0])
    exact = mean_field_critical_sigma_w2(SIGMA_B2)
    gap = np.asarray(one.lambda_1 - one.lambda_mean_field)[0]
    metrics = {
        "sigma_b2": SIGMA_B2,
        "width": cfg.width,
        "depth": cfg.depth,
        "n_seeds": cfg.n_seeds,
        "critical_sigma_w2_mean_field_exact": exact,
        "critical_sigma_w2_mean_field_grid": mf,
        "critical_sigma_w2_expected": CRITICAL_SIGMA_W2,
        "critical_sigma_w2_empirical": emp if math.isfinite(emp) else "no sign change",
        "shift_empirical_minus_mean_field": emp - exact if math.isfinite(emp) else "-",
        "shift_in_grid_steps": (emp - exact) / cfg.sigma_w2_step if math.isfinite(emp) else "-",
        "max_abs_lambda1_minus_mean_field": float(np.max(np.abs(gap))),
        "sigma_w2_at_max_gap": float(np.asarray(sw)[np.argmax(np.abs(gap))]),
    }
    if grid_2d:
        metrics["critical_sigma_w2_by_sigma_b2"] = {
            "sigma_b2": np.asarray(sb),
            "mean_field": np.asarray(diagram.critical_sigma_w2("mean_field")),
            "empirical": np.asarray(diagram.critical_sigma_w2("empirical")),
        }

    import matplotlib.pyplot as plt

    if grid_2d:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
        plot_phase_diagram(diagram, ax=ax1,
                           title=f"Order to chaos over $(\\sigma_w^2, \\sigma_b^2)$ "
                                 f"(width {cfg.width}, depth {cfg.depth})")
    else:
        fig, ax0 = plt.subplots(figsize=(7, 5.2), layout="constrained")
    plot_phase_diagram(one, ax=ax0, legend="below",
                       title=f"Deep tanh networks, $\\sigma_b^2$ = {SIGMA_B2:g}: width {cfg.width}, "
                             f"depth {cfg.depth}, {cfg.n_seeds} seeds")
    return metrics, fig


def _fmt(x) -> str:
    return ", ".join(f"{v:.4f}" for v in np.atleast_1d(x))


def _num(x, spec: str) -> str:
    """`x` formatted with `spec` when it is a finite number, "none" when it is NaN (no crossing),
    else as it is (e.g. "no swept value")."""
    if isinstance(x, int | float):
        return format(x, spec) if math.isfinite(x) else "none"
    return str(x)


def _grid_sentence(oc: dict) -> str:
    g = oc["critical_sigma_w2_by_sigma_b2"]
    pairs = "; ".join(f"{float(b):g}: {_num(m, '.3f')} / {_num(e, '.3f')}"
                      for b, m, e in zip(g["sigma_b2"], g["mean_field"], g["empirical"]))
    return (" Over the 2-D grid, the transition (mean field / empirical) by $\\sigma_b^2$: "
            f"{pairs} (none: no sign change on the $\\sigma_w^2$ grid).")


def _is_num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _claims(cfg: Config, metrics: dict) -> tuple[Claim, ...]:
    """The experiment's claims, judged on `metrics` (`"lorenz"`, `"rho_sweep"`,
    `"order_to_chaos"`) with the criteria fixed in this module and in `cfg`."""
    lz, sw, oc = metrics["lorenz"], metrics["rho_sweep"], metrics["order_to_chaos"]
    claims = []

    tol = 1.0 / math.sqrt(cfg.lorenz_time)
    errors = [float(e) for e in lz["errors"]]
    claims.append(Claim.check(
        "The Lorenz system at $(\\sigma, \\rho, \\beta) = (10, 28, 8/3)$ has the Lyapunov spectrum "
        "$(0.9056, 0, -14.5723)$.",
        "Sprott, *Chaos and Time-Series Analysis* (2003), the standard values; computed by "
        "Benettin's QR method (Benettin et al. 1980)",
        f"each $\\lvert \\lambda_i(T) - \\lambda_i^{{\\mathrm{{ref}}}}\\rvert \\le T^{{-1/2}}$ = "
        f"{tol:.3f} "
        f"(1/time unit) at $T$ = {cfg.lorenz_time:g} time units (the envelope of the running "
        "estimates' fluctuations)",
        "exponents (" + ", ".join(f"{float(v):.4f}" for v in lz["exponents"]) + "), errors ("
        + ", ".join(f"{e:+.4f}" for e in errors) + f") after {cfg.lorenz_time:g} time units",
        [abs(e) <= tol for e in errors],
        why="the running estimate has not settled to within $T^{-1/2}$ of the reference for "
            "every exponent at this $T$."))

    claims.append(Claim.check(
        "The sum of the exponents is the (constant) divergence of the field, "
        "$-(\\sigma + 1 + \\beta) = -13.6667$.",
        "Liouville's formula: $\\sum_i \\lambda_i$ is the time average of "
        "$\\operatorname{tr} Df$ (Oseledets' theorem)",
        f"$\\lvert \\sum_i \\lambda_i + 13.6667\\rvert \\le$ {SUM_TOL:g} (RK4 with $dt$ = {cfg.dt:g})",
        f"sum {lz['sum']:.6f}, error {lz['sum_error']:+.1e}",
        abs(lz["sum_error"]) <= SUM_TOL,
        why="the sum differs from the divergence by more than the RK4 error allows."))

    eq = sw["max_error_vs_equilibrium_rho_below_20"]
    onset = sw["min_lambda1_rho_hopf_to_40"]
    windows = sw["max_abs_lambda1_in_windows"]
    cases = [_is_num(eq) and eq <= EQUILIBRIUM_TOL, _is_num(onset) and onset > CHAOS_MIN]
    cases += [_is_num(w) and w < PERIODIC_TOL for w in windows]
    win_text = ", ".join(f"[{a:g}, {b:g}]" for a, b in PERIODIC_WINDOWS)
    claims.append(Claim.check(
        "$\\lambda_1(\\rho)$ follows the Lorenz bifurcations: below $\\rho_A = 24.06$ it is the "
        "linear decay rate of the attracting equilibrium; above the Hopf point "
        "$\\rho_H = 24.74$ it is positive (chaos); it is 0 in the periodic windows "
        "$145 < \\rho < 166$ and $\\rho > 214.4$.",
        "Sparrow, *The Lorenz Equations* (1982) (bifurcations and periodic windows); linear "
        "stability of $C_\\pm$ (Lorenz 1963)",
        f"swept $\\rho < {EQUILIBRIUM_RHO_MAX:g}$: $\\lvert \\lambda_1 - \\max \\mathrm{{Re}}\\,"
        f"\\mathrm{{eig}}\\rvert \\le$ {EQUILIBRIUM_TOL:g}; every swept $\\rho \\in (\\rho_H, "
        f"{CHAOS_RHO_MAX:g}]$: $\\lambda_1 >$ {CHAOS_MIN:g}; every swept $\\rho$ in {win_text}: "
        f"$\\lvert \\lambda_1\\rvert <$ {PERIODIC_TOL:g} (1/time unit, {cfg.sweep_time:g} time "
        "units per value)",
        f"max error below {EQUILIBRIUM_RHO_MAX:g}: {_num(eq, '.4f')}; min $\\lambda_1$ on "
        f"$(\\rho_H, {CHAOS_RHO_MAX:g}]$: {_num(onset, '.3f')}; max "
        "$\\lvert \\lambda_1\\rvert$ in the windows: "
        + ", ".join(_num(w, ".3f") for w in windows)
        + f" ({sw['n_values']} values of $\\rho$, spacing {sw['rho_spacing']:.2f})",
        cases,
        why="some swept values of $\\rho$ miss the regime's criterion (a finite-time estimate "
            "near a bifurcation, or a window edge)."))

    exact = oc["critical_sigma_w2_mean_field_exact"]
    claims.append(Claim.check(
        "For tanh networks with $\\sigma_b^2 = 0.05$ the order-to-chaos transition "
        "$\\chi_1 = 1$ is at $\\sigma_w^2 = 1.761$.",
        "Poole et al. 2016 (exponential expressivity in deep networks), mean-field signal "
        "propagation; the mission's paper (Chemnitz, Engel, Kuehn, Kuntz 2025), vanishing and "
        "exploding gradients",
        f"$\\lvert \\sigma_w^2(\\chi_1 = 1) - 1.761\\rvert \\le$ {CRITICAL_TOL:g} (half a unit in "
        "the last published digit), by bisection on the quadrature $\\chi_1$",
        f"$\\sigma_w^2$ = {exact:.5f} (grid interpolation: "
        f"{oc['critical_sigma_w2_mean_field_grid']:.4f})",
        abs(exact - CRITICAL_SIGMA_W2) <= CRITICAL_TOL,
        why="the mean-field $\\chi_1$ crosses 1 elsewhere than the published value."))

    gap = oc["max_abs_lambda1_minus_mean_field"]
    shift = oc["shift_empirical_minus_mean_field"]
    claims.append(Claim.check(
        "The top Lyapunov exponent per layer of a deep random tanh network is "
        "$\\frac12 \\log \\chi_1$, so it changes sign at the mean-field transition.",
        "Poole et al. 2016; Schoenholz et al. 2017 (deep information propagation); the mission's "
        "paper, Lyapunov exponents of the layer map",
        f"max over the $\\sigma_w^2$ grid of $\\lvert \\lambda_1 - \\frac12 \\log\\chi_1\\rvert \\le$ "
        f"{MEAN_FIELD_GAP_TOL:g} per layer, and the empirical sign change within one grid step "
        f"({cfg.sigma_w2_step:g}) of the mean-field one (width {cfg.width}, depth {cfg.depth}, "
        f"{cfg.n_seeds} seeds)",
        f"max gap {gap:.4f} per layer (at $\\sigma_w^2$ = {oc['sigma_w2_at_max_gap']:g}); "
        f"sign change at {_num(oc['critical_sigma_w2_empirical'], '.4f')}, shift "
        f"{_num(shift, '+.4f')}",
        [gap <= MEAN_FIELD_GAP_TOL,
         _is_num(shift) and abs(shift) <= cfg.sigma_w2_step * (1 + 1e-9)],
        why="at this finite width and depth the empirical exponent deviates from the mean field "
            "by more than the tolerance, or changes sign more than a grid step away."))
    return tuple(claims)


def _summary(cfg: Config, lz: dict, sw: dict, oc: dict) -> str:
    windows = "; ".join(f"[{a:.1f}, {b:.1f}]" for a, b in sw["periodic_windows_rho_above_30"])
    paragraphs = [
        f"**Lorenz spectrum** ({cfg.lorenz_time:g} time units after a transient of "
        f"{cfg.lorenz_transient:g}, RK4 with $dt$ = {cfg.dt:g}, QR every {cfg.renorm_every} "
        f"steps). Exponents **({_fmt(lz['exponents'])})** against the reference "
        f"({_fmt(lz['reference'])}): errors ({', '.join(f'{e:+.4f}' for e in lz['errors'])}). "
        f"Their sum {lz['sum']:.6f} matches the divergence $-(\\sigma + 1 + \\beta)$ = "
        f"{LORENZ_SUM:.6f} to {abs(lz['sum_error']):.1e} (it is the mean log-determinant of the RK4 "
        "step, exact up to the method's error, not a statistical estimate). Kaplan-Yorke "
        f"dimension **{lz['kaplan_yorke_dimension']:.4f}** (reference "
        f"{lz['kaplan_yorke_reference']:.4f}). The running estimates settle like $1/T$ for the zero "
        "exponent (the flow direction) and with $T^{-1/2}$ fluctuations for the others.",
        f"**$\\rho$ sweep** ({sw['n_values']} values of $\\rho$ in [0, {cfg.rho_max:g}], "
        f"{cfg.sweep_time:g} time units each, one `jit(vmap)` program on {sw['devices']} "
        f"device(s)). Below $\\rho = {EQUILIBRIUM_RHO_MAX:g}$ the top exponent follows the linear "
        "stability of the attracting equilibrium to "
        f"{_num(sw['max_error_vs_equilibrium_rho_below_20'], '.3f')}. $\\lambda_1 > 0.1$ first at "
        f"$\\rho$ = {_num(sw['first_rho_lambda1_above_0.1'], '.2f')} (the chaotic attractor exists "
        f"from {RHO_CHAOTIC_ATTRACTOR}, and transient chaos before it can look chaotic over a "
        f"finite window); maximum {sw['max_lambda1']:.3f} at $\\rho$ = "
        f"{sw['rho_at_max_lambda1']:.1f}. Periodic windows ($|\\lambda_1| < {PERIODIC_TOL:g}$ on "
        f"consecutive values above $\\rho = 30$): {windows or 'none resolved'}. Over "
        f"{cfg.sweep_time:g} time units a chaotic exponent is itself uncertain by about "
        f"$T^{{-1/2}}$ = {1 / math.sqrt(cfg.sweep_time):.2f}.",
        f"**Order to chaos** (tanh, width {cfg.width}, depth {cfg.depth} after "
        f"{cfg.transient_layers} transient "
        f"layers, {cfg.n_seeds} seeds, $\\sigma_w^2$ in [1, 3] by {cfg.sigma_w2_step:g}). The "
        f"mean-field transition $\\chi_1 = 1$ at $\\sigma_b^2$ = {SIGMA_B2:g} is at $\\sigma_w^2$ = "
        f"**{oc['critical_sigma_w2_mean_field_exact']:.4f}** (expected {CRITICAL_SIGMA_W2}; the "
        f"grid interpolation in the figure gives {oc['critical_sigma_w2_mean_field_grid']:.4f}); "
        "the empirical top exponent changes sign at "
        f"**{_num(oc['critical_sigma_w2_empirical'], '.4f')}** (shift "
        f"{_num(oc['shift_empirical_minus_mean_field'], '+.4f')}, "
        f"{_num(oc['shift_in_grid_steps'], '+.2f')} grid steps: finite width and depth, and seed "
        "noise where the exponent is small), and follows $\\frac12 \\log\\chi_1$ to "
        f"{oc['max_abs_lambda1_minus_mean_field']:.3f} per layer over the whole grid."
        + (_grid_sentence(oc) if "critical_sigma_w2_by_sigma_b2" in oc else ""),
    ]
    return "\n\n".join(paragraphs) + "\n"


QUESTION = ("Does the Benettin/QR machinery reproduce the known Lyapunov spectrum of the Lorenz "
            "system and its $\\rho$-bifurcations, and does the top exponent per layer of deep "
            "random tanh networks change sign where the mean-field $\\chi_1$ crosses 1 "
            "(the order-to-chaos transition)?")


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over its three stages."""
    cfg = QUICK if quick else FULL
    k_lorenz, k_sweep, k_chaos = jax.random.split(jax.random.key(seed), 3)
    timings: dict[str, float] = {}
    with stages(progress, 3, NAME) as stage:
        stage("Lorenz spectrum")
        lz, fig_lorenz = _part_lorenz(cfg, k_lorenz, timings)
        stage("rho sweep")
        sw, fig_sweep = _part_sweep(cfg, k_sweep, timings)
        stage("order to chaos")
        oc, fig_chaos = _part_chaos(cfg, k_chaos, timings)
    metrics = {
        "quick": quick,
        "seed": seed,
        "lorenz": lz,
        "rho_sweep": sw,
        "order_to_chaos": oc,
        "config": dataclasses.asdict(cfg),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    return ExperimentResult(NAME, TITLE, _summary(cfg, lz, sw, oc), metrics,
                            {"lorenz_convergence": fig_lorenz, "rho_sweep": fig_sweep,
                             "order_to_chaos": fig_chaos},
                            question=QUESTION, claims=_claims(cfg, metrics))
