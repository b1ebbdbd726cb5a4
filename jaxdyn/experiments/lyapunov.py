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
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._results import message
from ..lyapunov import flow_spectrum, order_to_chaos, sweep
from ..plot import plot_lyapunov_convergence, plot_phase_diagram, plot_sweep
from ._result import ExperimentResult

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


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    dt: float = 0.01  # RK4 step (Lorenz spectrum and sweep)
    lorenz_time: float = 200.0  # time units counted for the spectrum
    lorenz_transient: float = 10.0  # time units discarded first
    renorm_every: int = 10  # RK4 steps between QR renormalisations
    n_rho: int = 64  # sweep values in [0, rho_max]
    rho_max: float = 250.0
    sweep_time: float = 50.0  # time units counted per sweep value
    sweep_transient: float = 10.0
    width: int = 128  # random tanh networks
    depth: int = 200
    n_seeds: int = 2
    transient_layers: int = 50  # layers that bring q_l to q* before counting
    sigma_w2_step: float = 0.1  # grid over sigma_w^2 in [1, 3]
    sigma_b2_values: tuple[float, ...] = ()  # a 2-D diagram over these (empty: none)


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


def _part_lorenz(cfg: Config, key, progress: bool, timings: dict):
    t0 = time.perf_counter()
    res = flow_spectrum(lorenz, jnp.ones(3), args=jnp.asarray(RHO), dt=cfg.dt,
                        n_steps=_steps(cfg.lorenz_time, cfg),
                        transient_steps=_steps(cfg.lorenz_transient, cfg),
                        renorm_every=cfg.renorm_every, key=key, progress=progress)
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

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    plot_lyapunov_convergence(res, ax=ax0, reference=LORENZ_REFERENCE,
                              title=f"Lorenz (10, 28, 8/3): RK4, dt = {cfg.dt:g}, QR every "
                                    f"{cfg.renorm_every} steps")
    ax0.set_ylim(-16.5, 3.0)
    times = np.asarray(res.times)
    hist = np.asarray(res.history)
    for i in range(3):
        ax1.plot(times, np.maximum(np.abs(hist[:, i] - ref[i]), 1e-8),
                 label=rf"$|\lambda_{i + 1}(T) - \lambda_{i + 1}^{{ref}}|$")
    guide = times[times >= 1.0]
    ax1.plot(guide, 1.0 / guide, color="black", ls="--", lw=1, label="$1/T$")
    ax1.plot(guide, 1.0 / np.sqrt(guide), color="black", ls=":", lw=1, label=r"$1/\sqrt{T}$")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("time $T$")
    ax1.set_ylabel("error of the running estimate")
    ax1.set_title("Convergence against the reference values")
    ax1.legend(fontsize="small")
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
    stable = rhos < 20.0  # well below 24.06: the equilibria attract every trajectory
    analytic = np.array([equilibrium_exponent(r) for r in rhos[stable]])
    chaotic = lam > 0.1
    metrics = {
        "n_values": int(cfg.n_rho),
        "time_units_per_value": cfg.sweep_time,
        "devices": len(jax.devices()),
        "max_error_vs_equilibrium_rho_below_20": float(np.max(np.abs(lam[stable] - analytic))),
        "first_rho_lambda1_above_0.1": float(rhos[np.argmax(chaotic)]) if chaotic.any() else None,
        "fraction_lambda1_above_0.1": float(chaotic.mean()),
        "max_lambda1": float(lam.max()),
        "rho_at_max_lambda1": float(rhos[np.argmax(lam)]),
        "periodic_windows_rho_above_30": _windows(rhos, lam, above=30.0, tol=0.05),
    }
    fig = plot_sweep(rhos, lam, xlabel=r"$\rho$", labels=[r"$\lambda_1$ (sweep)"],
                     vlines={r"$\rho = 1$ (pitchfork)": 1.0,
                             rf"$\rho$ = {RHO_CHAOTIC_ATTRACTOR} (chaotic attractor)":
                             RHO_CHAOTIC_ATTRACTOR,
                             rf"$\rho_H$ = {RHO_HOPF:.2f} (Hopf)": RHO_HOPF},
                     title=f"Lorenz: top exponent over {cfg.n_rho} values of $\\rho$, "
                           f"{cfg.sweep_time:g} time units each")
    ax = fig.axes[0]
    fine = np.linspace(0.0, RHO_HOPF, 400)
    ax.plot(fine, [equilibrium_exponent(r) for r in fine], color="black", lw=1.5, alpha=0.6,
            label="linear stability of the equilibrium")
    ax.legend(fontsize="small", loc="lower center")
    return metrics, fig


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
    gap = np.asarray(one.lambda_1 - one.lambda_mean_field)[0]
    metrics = {
        "sigma_b2": SIGMA_B2,
        "width": cfg.width,
        "depth": cfg.depth,
        "n_seeds": cfg.n_seeds,
        "critical_sigma_w2_mean_field": mf,
        "critical_sigma_w2_expected": CRITICAL_SIGMA_W2,
        "critical_sigma_w2_empirical": emp,
        "shift_empirical_minus_mean_field": emp - mf,
        "shift_in_grid_steps": (emp - mf) / cfg.sigma_w2_step,
        "max_abs_lambda1_minus_mean_field": float(np.max(np.abs(gap))),
    }
    if grid_2d:
        metrics["critical_sigma_w2_by_sigma_b2"] = {
            "sigma_b2": np.asarray(sb),
            "mean_field": np.asarray(diagram.critical_sigma_w2("mean_field")),
            "empirical": np.asarray(diagram.critical_sigma_w2("empirical")),
        }

    import matplotlib.pyplot as plt

    if grid_2d:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
        plot_phase_diagram(diagram, ax=ax1,
                           title=f"Order to chaos over $(\\sigma_w^2, \\sigma_b^2)$ "
                                 f"(width {cfg.width}, depth {cfg.depth})")
    else:
        fig, ax0 = plt.subplots(figsize=(7, 4.4), layout="constrained")
    plot_phase_diagram(one, ax=ax0,
                       title=f"Deep tanh networks, $\\sigma_b^2$ = {SIGMA_B2:g}: width {cfg.width}, "
                             f"depth {cfg.depth}, {cfg.n_seeds} seeds")
    return metrics, fig


def _fmt(x) -> str:
    return ", ".join(f"{v:.4f}" for v in np.atleast_1d(x))


def _grid_sentence(oc: dict) -> str:
    g = oc["critical_sigma_w2_by_sigma_b2"]
    pairs = "; ".join(f"{float(b):g}: {float(m):.3f} / {float(e):.3f}"
                      for b, m, e in zip(g["sigma_b2"], g["mean_field"], g["empirical"]))
    return (" Over the 2-D grid, the transition (mean field / empirical) by $\\sigma_b^2$: "
            f"{pairs}.")


def _summary(cfg: Config, lz: dict, sw: dict, oc: dict) -> str:
    windows = "; ".join(f"[{a:.1f}, {b:.1f}]" for a, b in sw["periodic_windows_rho_above_30"])
    paragraphs = [
        f"**Lorenz spectrum** ({cfg.lorenz_time:g} time units after a transient of "
        f"{cfg.lorenz_transient:g}, RK4 with dt = {cfg.dt:g}, QR every {cfg.renorm_every} steps). "
        f"Exponents **({_fmt(lz['exponents'])})** against the reference "
        f"({_fmt(lz['reference'])}): errors ({', '.join(f'{e:+.4f}' for e in lz['errors'])}). "
        f"Their sum {lz['sum']:.6f} matches the divergence $-(\\sigma + 1 + \\beta)$ = "
        f"{LORENZ_SUM:.6f} to {abs(lz['sum_error']):.1e} (it is the mean log-determinant of the RK4 "
        "step, exact up to the method's error, not a statistical estimate). Kaplan-Yorke "
        f"dimension **{lz['kaplan_yorke_dimension']:.4f}** (reference "
        f"{lz['kaplan_yorke_reference']:.4f}). The running estimates settle like $1/T$ for the zero "
        "exponent (the flow direction) and with $T^{-1/2}$ fluctuations for the others.",
        f"**$\\rho$ sweep** ({sw['n_values']} values of $\\rho$ in [0, {cfg.rho_max:g}], "
        f"{cfg.sweep_time:g} time units each, one `jit(vmap)` program on {sw['devices']} "
        f"device(s)). Below $\\rho = 20$ the top exponent follows the linear stability of the "
        f"attracting equilibrium to {sw['max_error_vs_equilibrium_rho_below_20']:.3f}. "
        f"$\\lambda_1 > 0.1$ first at $\\rho$ = {sw['first_rho_lambda1_above_0.1']:.2f} (the chaotic "
        f"attractor exists from {RHO_CHAOTIC_ATTRACTOR}, and transient chaos before it can look "
        f"chaotic over a finite window); maximum {sw['max_lambda1']:.3f} at $\\rho$ = "
        f"{sw['rho_at_max_lambda1']:.1f}. Periodic windows ($|\\lambda_1| < 0.05$ on consecutive "
        f"values above $\\rho = 30$): {windows or 'none resolved'}.",
        f"**Order to chaos** (tanh, width {cfg.width}, depth {cfg.depth} after "
        f"{cfg.transient_layers} transient "
        f"layers, {cfg.n_seeds} seeds, $\\sigma_w^2$ in [1, 3] by {cfg.sigma_w2_step:g}). The "
        f"mean-field transition $\\chi_1 = 1$ at $\\sigma_b^2$ = {SIGMA_B2:g} is at $\\sigma_w^2$ = "
        f"**{oc['critical_sigma_w2_mean_field']:.4f}** (expected {CRITICAL_SIGMA_W2}); the "
        f"empirical top exponent changes sign at **{oc['critical_sigma_w2_empirical']:.4f}** "
        f"(shift {oc['shift_empirical_minus_mean_field']:+.4f}, "
        f"{oc['shift_in_grid_steps']:+.2f} grid steps: finite width and depth, and seed noise "
        "where the exponent is small), and follows $\\frac12 \\log\\chi_1$ to "
        f"{oc['max_abs_lambda1_minus_mean_field']:.3f} over the whole grid."
        + (_grid_sentence(oc) if "critical_sigma_w2_by_sigma_b2" in oc else ""),
    ]
    return "\n\n".join(paragraphs) + "\n"


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets."""
    cfg = QUICK if quick else FULL
    k_lorenz, k_sweep, k_chaos = jax.random.split(jax.random.key(seed), 3)
    timings: dict[str, float] = {}
    lz, fig_lorenz = _part_lorenz(cfg, k_lorenz, progress, timings)
    sw, fig_sweep = _part_sweep(cfg, k_sweep, timings)
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
                             "order_to_chaos": fig_chaos})
