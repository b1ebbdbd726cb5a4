r"""Kuramoto oscillators and their mean-field limits: thresholds, Ott-Antonsen, chimeras, W1 rates.

Four results, each against theory:

1. **r against K.** All-to-all Kuramoto with quantile frequencies (Lorentzian, half-width $\gamma$,
   and standard Gaussian), time-averaged $r$ against the self-consistency theory:
   $r_\infty = \sqrt{1 - 2\gamma/K}$ (Lorentzian, $K_c = 2\gamma$) and
   $1 = K\int_{-\pi/2}^{\pi/2}\cos^2\phi\, g(K r \sin\phi)\,d\phi$ (Gaussian, $K_c = 2/(\pi g(0))$).
   The sweep reuses one compiled solve for every $K$.
2. **Particles against Ott-Antonsen.** $r(t)$ of the particles (phases started on the Poisson-kernel
   manifold) against the OA ODE for the same $z(0)$.
3. **Chimera on the ring graphon.** Identical oscillators, $W(x, y) = 1$ for $|x - y|_{S^1} \le 0.35$,
   degree normalisation, phase lag $\alpha = 1.46$ (near $\pi/2$; convention
   $\sin(\theta_j - \theta_i - \alpha)$), Abrams-Strogatz initial data; coupling by FFT.
4. **$N^{-1/2}$ convergence.** Networks on a two-block graphon (nodes on the grid) against the Vlasov
   solution (cells x particles), $W_1$ by the cell-averaged exact circle distance
   ([`jaxdyn.meanfield.w1_cells`][]); plus the loss curves of two-layer networks in mean-field
   scaling for $N = 10^2, 10^3, 10^4$.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import meanfield as mf
from ..meanfield import graphons
from ..plot import (
    plot_loss_curves,
    plot_order_parameter,
    plot_order_vs_coupling,
    plot_space_time,
    plot_w1_convergence,
)
from ._result import ExperimentResult

NAME = "kuramoto"
TITLE = "Kuramoto oscillators: synchronisation threshold, Ott-Antonsen, chimera, mean-field convergence"


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    n_sweep: int = 2000
    gamma: float = 0.5
    ks_lorentz: tuple = tuple(np.round(np.arange(0.25, 3.01, 0.25), 2))
    ks_gauss: tuple = tuple(np.round(np.concatenate([np.arange(0.5, 1.4, 0.25), np.arange(1.4, 1.9, 0.05),
                                                     np.arange(2.0, 3.01, 0.25)]), 2))
    t_lorentz: float = 40.0
    t_gauss: float = 150.0
    oa_ks: tuple = (1.5, 2.0, 3.0)
    n_chimera: int = 512
    t_chimera: float = 500.0
    chimera_radius: float = 0.35
    chimera_lag: float = 1.46
    w1_cells: int = 4
    w1_sizes: tuple = (8, 32, 128, 512)  # particles per cell: N = cells x size
    w1_reference: int = 32768
    w1_seeds: int = 4
    w1_time: float = 5.0
    two_layer_sizes: tuple = (100, 1000, 10000)
    two_layer_steps: int = 400
    two_layer_points: int = 128
    sweep_rtol: float = 1e-6


QUICK = Config(n_sweep=1000, ks_lorentz=tuple(np.round(np.arange(0.5, 3.01, 0.25), 2)),
               ks_gauss=(0.75, 1.0, 1.25, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0, 2.25, 2.5, 3.0), t_lorentz=24.0,
               t_gauss=100.0,
               n_chimera=256, t_chimera=300.0, w1_sizes=(8, 32, 128, 512), w1_reference=8192,
               two_layer_steps=200, two_layer_points=64)
FULL = Config()


def gaussian_r_theory(k: float, sigma: float = 1.0) -> float:
    r"""Solve $1 = K \int_{-\pi/2}^{\pi/2} \cos^2\phi\, g(K r \sin\phi)\, d\phi$ for $r$ (0 below $K_c$).

    **No JAX derivative:** a NumPy bisection (and a threshold at $K_c$); a traced `k` or `sigma`
    (under `jax.grad`/`jit`) raises a `TypeError`. The derivative $dr/dK$ exists above $K_c$ by the
    implicit function theorem, but this routine does not provide it."""
    if isinstance(k, jax.core.Tracer) or isinstance(sigma, jax.core.Tracer):
        raise TypeError("`k` and `sigma` must be concrete numbers: gaussian_r_theory is a NumPy bisection "
                        "with no JAX derivative.")
    phi = np.linspace(-np.pi / 2, np.pi / 2, 2001)
    g = lambda w: np.exp(-0.5 * (w / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    h = lambda r: k * np.trapezoid(np.cos(phi) ** 2 * g(k * r * np.sin(phi)), phi) - 1
    if h(1e-9) <= 0:
        return 0.0
    lo, hi = 1e-9, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if h(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def sweep(omega, theta0, ks, t1, *, n_save: int = 201, rtol: float = 1e-6):
    """r(t) for every coupling in `ks` (all-to-all, O(N) per evaluation).

    One compiled solve reused for every K (the coupling is an array leaf of the field): a Python loop
    over K is faster here than `vmap`, whose batched adaptive steps all follow the slowest member.
    """
    ts = jnp.linspace(0.0, t1, n_save)

    @jax.jit
    def one(k):
        ys = mf.simulate(mf.Kuramoto(omega, k), theta0, ts, rtol=rtol, atol=rtol).ys
        return jnp.abs(mf.order_parameter(ys))

    return ts, np.stack([np.asarray(one(jnp.asarray(k, dtype=float))) for k in ks])


def chimera(cfg: Config, key):
    """Identical oscillators on the ring graphon with a phase lag near pi/2."""
    n = cfg.n_chimera
    x = mf.grid(n)
    u = jax.random.uniform(key, (n,), minval=-0.5, maxval=0.5)
    theta0 = 6 * u * jnp.exp(-30 * (x - 0.5) ** 2)  # Abrams & Strogatz (2004)
    field = mf.Kuramoto(jnp.zeros(n), 1.0, graph=graphons.ring(cfg.chimera_radius),
                        phase_lag=cfg.chimera_lag, normalisation="degree")
    ts = jnp.linspace(0.0, cfg.t_chimera, 601)
    ys = np.asarray(mf.simulate(field, theta0, ts, rtol=1e-6, atol=1e-6).ys)
    half = ts.shape[0] // 2
    freq = (ys[-1] - ys[half]) / float(ts[-1] - ts[half])
    local = np.abs(np.asarray(mf.local_order_parameter(ys[-1], radius=0.05)))
    return np.asarray(ts), np.asarray(x), ys, local, freq, type(field.operator).__name__


def w1_convergence(cfg: Config, key):
    r"""$W_1$ between networks of $N = M P$ grid nodes on a two-block graphon and the Vlasov solution.

    On a block graphon constant on the $M$ cells the network is exactly the cell particle system with
    $P$ particles per cell, so all systems (the reference and `w1_seeds` networks per size) run as one
    block-diagonal system in one compiled solve: rows of `width = max(w1_sizes)` particles, one row per
    cell for a network (padded with passive zero-weight particles), `w1_reference / width` rows per
    cell for the reference (the cell mean is linear in the particle weights, so rows of one cell add up).
    """
    m = cfg.w1_cells
    w = graphons.stochastic_block([0.5, 0.5], [[0.9, 0.2], [0.2, 0.7]])
    cells = np.asarray(w(mf.grid(m)[:, None], mf.grid(m)[None, :]))
    width = max(cfg.w1_sizes)
    sizes = [cfg.w1_reference] + [p for p in cfg.w1_sizes for _ in range(cfg.w1_seeds)]
    rows_per_cell = [max(1, p // width) for p in sizes]
    system = np.concatenate([np.full(m * r, i) for i, r in enumerate(rows_per_cell)])
    cell = np.concatenate([np.repeat(np.arange(m), r) for r in rows_per_cell])
    n_rows = system.size
    same = system[:, None] == system[None, :]
    graph = jnp.asarray(np.where(same, cells[cell[:, None], cell[None, :]] * n_rows / m, 0.0))
    weights = np.concatenate([np.tile((np.arange(width) < p) / p, (m * r, 1)) for p, r in
                              zip(sizes, rows_per_cell)])
    k1, k2 = jax.random.split(key)
    mean = jnp.linspace(0.0, 2.0, m)[cell][:, None]
    theta0 = mean + 0.8 * jax.random.normal(k1, (n_rows, width))
    omega = 0.3 * jax.random.normal(k2, (n_rows, width))
    ts = jnp.linspace(0.0, cfg.w1_time, 3)
    out = np.asarray(mf.vlasov(graph, theta0, omega, ts, coupling=2.0, weights=weights, rtol=1e-8,
                               atol=1e-8).theta)

    def phases(state, i):  # (M, P) phases of system i
        rows = system == i
        blk = state[rows][:, : min(sizes[i], width)]
        return blk.reshape(m, -1)  # rows are grouped by cell

    res = {}
    for label, state in (("t0", out[0]), ("t1", out[-1])):
        ref = phases(state, 0)
        per = {p: [] for p in cfg.w1_sizes}
        for i, p in enumerate(sizes[1:], start=1):
            per[p].append(mf.w1_cells(phases(state, i), ref))
        res[label] = {"n": [m * p for p in cfg.w1_sizes],
                      "mean": [float(np.mean(per[p])) for p in cfg.w1_sizes],
                      "stderr": [float(np.std(per[p]) / np.sqrt(len(per[p]))) for p in cfg.w1_sizes]}
    for r in res.values():
        r["slope"] = float(np.polyfit(np.log(r["n"]), np.log(r["mean"]), 1)[0])
    return res


def two_layer(cfg: Config, key):
    """Loss curves of f(x) = (1/N) sum a_i tanh(w_i . x) under mean-field GD for several N."""
    kx, kt = jax.random.split(key)
    x = jax.random.normal(kx, (cfg.two_layer_points, 3))
    y = mf.TwoLayer.init(4, 3, key=kt)(x) * 4  # a 4-neuron teacher
    curves = {}
    for n in cfg.two_layer_sizes:
        model = mf.TwoLayer.init(n, 3, key=jax.random.fold_in(key, n))
        curves[n] = np.asarray(mf.two_layer_gd(model, x, y, n_steps=cfg.two_layer_steps, lr=0.5).losses)
    big = curves[max(curves)]
    gaps = {n: float(np.max(np.abs(c - big))) for n, c in curves.items() if n != max(curves)}
    return curves, gaps


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets."""
    del progress  # every solve here is short; no progress bar needed
    cfg = QUICK if quick else FULL
    key = jax.random.key(seed)
    keys = jax.random.split(key, 5)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    n = cfg.n_sweep
    om_l = mf.lorentzian_quantiles(n, cfg.gamma)
    th_l = mf.wrapped_cauchy_quantiles(n, 0.1, key=keys[0])
    ks_l = tuple(sorted(set(cfg.ks_lorentz) | set(cfg.oa_ks)))
    ts_l, r_l = sweep(om_l, th_l, ks_l, cfg.t_lorentz, rtol=cfg.sweep_rtol)
    r_oa_runs = r_l[[ks_l.index(k) for k in cfg.oa_ks]]
    r_l = r_l[[ks_l.index(k) for k in cfg.ks_lorentz]]
    om_g = mf.gaussian_quantiles(n)
    th_g = mf.wrapped_cauchy_quantiles(n, 0.5, key=keys[1])
    ts_g, r_g = sweep(om_g, th_g, cfg.ks_gauss, cfg.t_gauss, rtol=cfg.sweep_rtol)
    timings["sweeps"] = round(time.perf_counter() - t0, 2)
    late_l = ts_l >= 2 * cfg.t_lorentz / 3
    late_g = ts_g >= 2 * cfg.t_gauss / 3
    rbar_l, rbar_g = r_l[:, late_l].mean(1), r_g[:, late_g].mean(1)
    kc_l, kc_g = 2 * cfg.gamma, 2 * np.sqrt(2 * np.pi) / np.pi
    theory_l = np.sqrt(np.clip(1 - 2 * cfg.gamma / np.asarray(cfg.ks_lorentz), 0, None))
    theory_g = np.array([gaussian_r_theory(k) for k in cfg.ks_gauss])
    kc_est_g = next((k for k, r in zip(cfg.ks_gauss, rbar_g) if r > 0.2), float("nan"))
    strong = np.asarray(cfg.ks_lorentz) >= 1.5 * kc_l
    err_l = float(np.max(np.abs(rbar_l - theory_l)[strong]))

    t0 = time.perf_counter()
    z0 = complex(mf.order_parameter(th_l))
    r_oa = {k: np.abs(np.asarray(mf.ott_antonsen(z0, ts_l, coupling=k, gamma=cfg.gamma).z))
            for k in cfg.oa_ks}
    oa_err = {str(k): float(np.max(np.abs(r_oa_runs[i] - r_oa[k]))) for i, k in enumerate(cfg.oa_ks)}
    closed = {k: np.asarray(mf.ott_antonsen_r(ts_l, abs(z0), coupling=k, gamma=cfg.gamma)) for k in cfg.oa_ks}
    oa_closed_err = max(float(np.max(np.abs(r_oa[k] - closed[k]))) for k in cfg.oa_ks)
    timings["ott_antonsen"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    ts_c, x_c, th_c, local, freq, op_name = chimera(cfg, keys[2])
    coherent = local > 0.95
    timings["chimera"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    w1 = w1_convergence(cfg, keys[3])
    timings["w1"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    curves, gaps = two_layer(cfg, keys[4])
    timings["two_layer"] = round(time.perf_counter() - t0, 2)

    figs = {}
    k_fine = np.linspace(0.5, 3, 101)
    figs["r_vs_k"] = plot_order_vs_coupling(
        {f"Lorentzian, gamma = {cfg.gamma:g} (N = {n})": (cfg.ks_lorentz, rbar_l),
         f"Gaussian, sigma = 1 (N = {n})": (cfg.ks_gauss, rbar_g)},
        theory={"theory sqrt(1 - 2 gamma / K)": lambda k: np.sqrt(np.clip(1 - 2 * cfg.gamma / k, 0, None)),
                "theory (Gaussian self-consistency)": (k_fine, [gaussian_r_theory(k) for k in k_fine])},
        kc={"K_c Lorentzian": kc_l, "K_c Gaussian": kc_g},
        title="Stationary order parameter against coupling (all-to-all)")
    figs["ott_antonsen"] = plot_order_parameter(
        ts_l, {**{f"particles, K = {k:g}": r_oa_runs[i] for i, k in enumerate(cfg.oa_ks)},
               **{f"Ott-Antonsen, K = {k:g}": r_oa[k] for k in cfg.oa_ks}},
        styles={f"Ott-Antonsen, K = {k:g}": {"ls": "--", "color": "black", "lw": 1} for k in cfg.oa_ks},
        title=f"N = {n} Lorentzian oscillators against the Ott-Antonsen ODE")
    stride = max(1, th_c.shape[0] // 300)
    omega_coh = float(np.median(freq[coherent])) if coherent.any() else 0.0  # co-rotating frame
    figs["chimera"] = plot_space_time(
        ts_c[::stride], x_c, th_c[::stride] - omega_coh * ts_c[::stride, None], local_order=local,
        frequency=freq,
        title=f"Chimera on the ring graphon (r = {cfg.chimera_radius}, alpha = {cfg.chimera_lag}, "
              f"N = {cfg.n_chimera}); phases in the frame rotating with the coherent part")
    figs["w1_convergence"] = plot_w1_convergence(
        w1["t1"]["n"], w1["t1"]["mean"], stderr=w1["t1"]["stderr"],
        title=f"Network vs Vlasov at t = {cfg.w1_time:g}: W1 (cell-averaged circle distance)")
    figs["two_layer"] = plot_loss_curves({f"N = {k}": v for k, v in curves.items()},
                                         title="Two-layer network, GD in mean-field scaling")

    metrics = {
        "quick": quick, "seed": seed, "config": dataclasses.asdict(cfg), "timings_s": timings,
        "lorentzian": {"ks": cfg.ks_lorentz, "r_mean": rbar_l, "theory": theory_l, "K_c": kc_l,
                       "max_error_K_ge_1.5Kc": err_l},
        "gaussian": {"ks": cfg.ks_gauss, "r_mean": rbar_g, "theory": theory_g, "K_c": kc_g,
                     "K_c_estimate_first_r_above_0.2": kc_est_g,
                     "K_c_relative_error": float(kc_est_g / kc_g - 1)},
        "ott_antonsen": {"z0": [z0.real, z0.imag], "max_abs_r_particles_minus_oa": oa_err,
                         "oa_vs_closed_form_max_error": oa_closed_err},
        "chimera": {"coupling_operator": op_name, "coherent_fraction": float(coherent.mean()),
                    "local_order_min": float(local.min()), "local_order_max": float(local.max()),
                    "frequency_spread": float(freq.max() - freq.min()),
                    "is_chimera": bool(0.05 < coherent.mean() < 0.95 and local.min() < 0.8)},
        "w1": w1,
        "two_layer": {"sizes": list(cfg.two_layer_sizes), "final_loss": {str(k): float(v[-1]) for k, v in
                                                                        curves.items()},
                      "initial_loss": {str(k): float(v[0]) for k, v in curves.items()},
                      "max_gap_to_largest_N": {str(k): v for k, v in gaps.items()}},
    }
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics), metrics, figs)


def _summary(cfg: Config, mt: dict) -> str:
    lo, ga, oa, ch, w1, tl = (mt[k] for k in ("lorentzian", "gaussian", "ott_antonsen", "chimera", "w1",
                                              "two_layer"))
    rows = ["| K | r (Lorentzian) | theory |", "|---|---|---|"]
    rows += [f"| {k:g} | {r:.3f} | {t:.3f} |" for k, r, t in zip(lo["ks"], lo["r_mean"], lo["theory"])]
    w1rows = [f"| N | W1 at t = 0 | W1 at t = {cfg.w1_time:g} |", "|---|---|---|"]
    w1rows += [f"| {n} | {a:.4f} | {b:.4f} ± {s:.4f} |" for n, a, b, s in
               zip(w1["t1"]["n"], w1["t0"]["mean"], w1["t1"]["mean"], w1["t1"]["stderr"])]
    paras = [
        f"**Threshold, all-to-all.** N = {cfg.n_sweep} oscillators with quantile frequencies, time "
        f"average of r over the last third of each run (one compiled solve per law, reused for every K). "
        f"Lorentzian "
        f"($\\gamma = {cfg.gamma:g}$, $K_c = {lo['K_c']:g}$): largest deviation from "
        f"$\\sqrt{{1 - 2\\gamma/K}}$ for $K \\ge 1.5 K_c$ is {lo['max_error_K_ge_1.5Kc']:.4f}. Gaussian: "
        f"$K_c = 2/(\\pi g(0)) = {ga['K_c']:.4f}$; rule 'first K on the grid with r > 0.2' gives "
        f"{ga['K_c_estimate_first_r_above_0.2']:g} (relative error {ga['K_c_relative_error']:+.1%}; the grid "
        "spacing near $K_c$ bounds the resolution of this estimate).",
        "\n".join(rows),
        "**Ott-Antonsen.** Phases started on the Poisson-kernel manifold ($r_0 \\approx 0.1$). Max "
        "$|r_{particles}(t) - r_{OA}(t)|$ over the run: "
        + ", ".join(f"K = {k}: {v:.4f}" for k, v in oa["max_abs_r_particles_minus_oa"].items())
        + f"; the OA solver against the closed form: {oa['oa_vs_closed_form_max_error']:.1e}.",
        f"**Chimera.** N = {cfg.n_chimera} identical oscillators on the ring graphon "
        f"($r = {cfg.chimera_radius}$, degree normalisation, $\\alpha = {cfg.chimera_lag}$, coupling by "
        f"`{ch['coupling_operator']}` (FFT)), t up to {cfg.t_chimera:g}. Fraction of nodes with local "
        f"order $|Z| > 0.95$: {ch['coherent_fraction']:.2f}; min local order {ch['local_order_min']:.2f}; "
        f"spread of mean phase velocities {ch['frequency_spread']:.3f}. Chimera (coherent and incoherent "
        f"regions coexist): **{ch['is_chimera']}**. Chimeras of finite N are long transients (Wolfrum & "
        "Omelchenko 2011); this run shows one at the final time.",
        f"**Convergence of empirical measures.** Two-block graphon, {cfg.w1_cells} cells; networks of "
        f"N = {cfg.w1_cells} x P grid nodes (exactly the cell particle system for a block graphon), "
        f"{cfg.w1_seeds} random draws of initial phases and frequencies per N, against a Vlasov "
        f"reference with {cfg.w1_reference} particles per cell. Estimator: mean over cells of the exact "
        "circle W1 between the phase distributions: the optimal cost over couplings that keep mass "
        "inside each cell (the x-displacement inside a cell, at most 1/M, is not counted). Fitted slope "
        "in log N: "
        f"{w1['t1']['slope']:.2f} at t = {cfg.w1_time:g} ({w1['t0']['slope']:.2f} at t = 0); theory "
        "-1/2 (up to logs). The reference's own sampling error "
        f"(~{cfg.w1_reference}^(-1/2) per cell) limits the largest N.",
        "\n".join(w1rows),
        "**Two-layer networks as particles.** f(x) = (1/N) sum a_i tanh(w_i . x), 4-neuron teacher, "
        f"{cfg.two_layer_points} points in R^3, GD with per-particle step 0.5 N for "
        f"{cfg.two_layer_steps} steps. Max gap of the loss curve to the largest N: "
        + ", ".join(f"N = {k}: {v:.4f}" for k, v in tl["max_gap_to_largest_N"].items())
        + " (the curves converge as N grows); final losses "
        + ", ".join(f"N = {k}: {v:.4f}" for k, v in tl["final_loss"].items()) + ".",
    ]
    return "\n\n".join(paras) + "\n"

