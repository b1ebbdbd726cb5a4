r"""The mission's invariant objects located and followed: fixed points of GD, incoherence on a
graphon, delay-induced oscillations, and the phase portrait of a trained neural ODE.

Four results, each against a closed form or an independent computation:

1. **GD as a map, continued in the step size.** On $L(x) = (x^2 - 1)^2/4$ the minimum $x = 1$ of
   $G_\eta(x) = x - \eta L'(x)$ flips at $\eta = 2/L''(1) = 1$; branch switching at the flip follows
   the period-2 orbit (which flips again, period 4). For a small tanh MLP at an interpolating minimum
   (teacher-student, 7 parameters, 24 points: an isolated minimum), the continued branch of
   fixed points in $\eta$ is trivial in $\theta$, and its flip is where the top multiplier
   $1 - \eta\lambda_{\max}$ crosses $-1$: against [`jaxdyn.training.gd_stability`][]'s
   `critical_lr` $= 2/\lambda_{\max}$.
2. **Ott-Antonsen on a graphon, continued in $K$.** On the uniform-attachment graphon
   $W(x, y) = 1 - \max(x, y)$ (top eigenvalue $4/\pi^2$, eigenfunction $\cos(\pi x/2)$) the
   incoherent state $z \equiv 0$ of $\partial_t z = -\gamma z + \frac K2 (Wz - \overline{Wz}\,z^2)$
   has a branch point at $K_c = 2\gamma/\lambda_{\max}$ ($= \gamma\pi^2/2$ in the continuum);
   switching onto the synchronised branch gives $r_\infty(K) = |\int z\,dx|$, compared with
   simulations of the finite particle system ([`jaxdyn.meanfield.Kuramoto`][] on the graphon).
   The real subspace $z \in \mathbb{R}$ is invariant (no frequency shift, no phase lag, symmetric
   $W$): restricting to it removes the rotation symmetry, so the bifurcation is a simple branch point.
3. **Delay-induced Hopf bifurcations.** Mackey-Glass $x' = \beta x_\tau / (1 + x_\tau^n) - \gamma x$
   ($\beta = 2, \gamma = 1, n = 10$, $x_* = 1$, linearisation $x' = -x - 4 x_\tau$: Hopf at
   $\omega = \sqrt{15}$, $\tau = \arccos(-1/4)/\sqrt{15}$) and a delayed two-neuron network
   $x' = -x + W \tanh(x_\tau)$ ($W$ with eigenvalues $-1 \pm 2i$: Hopf at $\omega = 2$,
   $\tau = (\pi - 2\arctan 2)/2$): [`jaxdyn.invariant.dde_hopf`][] in $\tau$, then the branch of
   periodic orbits beyond it ([`jaxdyn.invariant.DDEPeriodicOrbitProblem`][]), period and amplitude
   against $\tau$.
4. **A trained neural ODE.** An [`jaxdyn.models.MLPField`][] regressed on the planar field
   $x' = y$, $y' = -x - x^2 + \mu(a - x^2 - y^2)y$ (a saddle at $(-1, 0)$, an unstable focus at the
   origin inside a stable limit cycle); its equilibria ([`jaxdyn.invariant.equilibria`][]), its
   cycle with its Floquet multipliers ([`jaxdyn.invariant.periodic_orbit`][]), and the stable and
   unstable manifolds of its
   saddle ([`jaxdyn.invariant.invariant_manifolds`][]) in a phase portrait.

Every result is judged by a claim ([`Claim`][jaxdyn.experiments.Claim]) whose criterion is fixed
by the module-level constants below, before any run.
"""

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import meanfield as mf
from ..invariant import (
    DDEPeriodicOrbitProblem,
    EquilibriumProblem,
    FixedPointProblem,
    continuation,
    dde_hopf,
    dde_orbit_guess_from_hopf,
    equilibria,
    invariant_manifolds,
    periodic_orbit,
    switch_branch,
)
from ..meanfield import graphons
from ..models import MLPField
from ..training import GDMap, gd_stability
from ._progress import fmt, stages
from ._result import Claim, ExperimentResult

NAME = "invariant-sets"
TITLE = "Invariant sets of the mission: GD flips, graphon incoherence, delay Hopf, a trained neural ODE"
QUESTION = (
    "Do the invariant-set tools (continuation with branch switching, DDE Hopf points and periodic orbits, "
    "equilibria, cycles and manifolds) find the mission's bifurcations where theory puts them: GD's flip "
    "at $\\eta = 2/\\lambda_{\\max}$, the loss of stability of incoherence on a graphon at "
    "$K_c = 2\\gamma/\\lambda_{\\max}(W)$, delay-induced Hopf points, and the invariant sets of a "
    "trained neural ODE?"
)

# The criteria of the claims, fixed before any run; never loosened to turn a verdict green.
FLIP_TOLERANCE = 1e-8
"""Absolute error allowed for the double well's flips ($\\eta = 1$ and $\\sqrt5 - 1$)."""
MLP_FLIP_TOLERANCE = 1e-6
"""Relative error allowed between the MLP's located flip and $2/\\lambda_{\\max}$."""
BRANCH_POINT_TOLERANCE = 1e-6
"""Absolute error allowed between the graphon branch point and $2\\gamma/\\lambda_{\\max}$."""
R_TOLERANCE = 0.1
"""Largest $|r_{\\mathrm{branch}} - r_{\\mathrm{particles}}|$ allowed on the synchronised branch."""
HOPF_TOLERANCE = 1e-8
"""Absolute error allowed for the delay Hopf points' $\\tau_H$ and $\\omega$."""
SADDLE_TOLERANCE = 0.05
"""Largest distance allowed between the learned saddle and the target's $(-1, 0)$."""


def _tex(value: float) -> str:
    """A tolerance for the claim tables: a power of ten as `10^{-8}`, else as `:g`."""
    exponent = np.log10(value)
    return f"10^{{{int(round(exponent))}}}" if abs(exponent - round(exponent)) < 1e-12 else f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    mlp_points: int = 24
    oa_cells: int = 64
    oa_gamma: float = 0.1
    oa_particles: int = 1000
    oa_ks: tuple = (0.6, 0.8, 1.0, 1.3)
    oa_time: float = 200.0
    dde_points: int = 32
    dde_steps: int = 40
    network_cycles: bool = True
    node_train_points: int = 1024
    node_train_steps: int = 3000
    node_width: int = 48


QUICK = Config(oa_cells=32, oa_particles=400, oa_ks=(0.7, 1.0), oa_time=200.0, dde_points=16,
               dde_steps=16, network_cycles=False, node_train_points=512, node_train_steps=1200,
               node_width=32)
FULL = Config()


def _index_of(branch, kind: str) -> int:
    """The index of the first special point of `kind` on `branch` (a `ValueError` if none)."""
    for i, (name, _, _) in enumerate(branch.specials()):
        if name == kind:
            return i
    raise ValueError(f"no {kind} point on the branch: {branch.summary()}")


# -- 1. gradient descent as a map --------------------------------------------------------------------


def double_well_gd(x, eta):
    """GD on L(x) = (x^2 - 1)^2 / 4: G(x) = x - eta x (x^2 - 1)."""
    return x - eta * x * (x**2 - 1)


def mlp(theta, x, width: int):
    """A 1-`width`-1 tanh MLP on scalar inputs `x` (shape `(m,)`), parameters flat."""
    w1, b1, w2 = theta[:width], theta[width:2 * width], theta[2 * width:3 * width]
    return jnp.tanh(x[:, None] * w1 + b1) @ w2 + theta[3 * width]


def mlp_loss(theta, x, y):
    """Half the mean squared error of [`mlp`][] (width read from the parameter count)."""
    width = (theta.shape[0] - 1) // 3
    return 0.5 * jnp.mean((mlp(theta, x, width) - y) ** 2)


def _gd_step(theta, a):
    return GDMap(mlp_loss, a["eta"], throw=False)(theta, a["x"], a["y"])


# A 1-2-1 tanh teacher (w1, b1, w2, b2), fixed rather than drawn: its minimum on 24 points of
# [-3, 3] is isolated and well conditioned (lambda_min / lambda_max ~ 6e-5), while random tanh
# teachers often give Hessians with eigenvalues ~1e-10 (nearly redundant units).
TEACHER = (1.0, -2.0, 0.5, 0.5, 1.0, -1.0, 0.2)


def gd_flips(cfg: Config):
    """The double well: flip at eta = 1 and the period-2 branch; the MLP: flip vs gd_stability."""
    well = FixedPointProblem(double_well_gd)
    fixed = continuation(well, jnp.ones(1), 0.2, p_min=0.1, p_max=1.35, ds=0.05, ds_max=0.1, n_steps=60)
    start = switch_branch(fixed, _index_of(fixed, "period_doubling"), amplitude=0.05)
    period2 = continuation(start, args=fixed.args, p_min=0.1, p_max=1.35, ds=0.02, ds_max=0.05, n_steps=80)
    eta_flip = fixed.specials()[_index_of(fixed, "period_doubling")][1]
    eta_flip2 = period2.specials()[_index_of(period2, "period_doubling")][1]

    teacher = jnp.asarray(TEACHER)
    w = (teacher.shape[0] - 1) // 3
    x = jnp.linspace(-3.0, 3.0, cfg.mlp_points)
    y = mlp(teacher, x, w)
    stab = gd_stability(mlp_loss, teacher, 0.1, x, y)
    crit = float(stab.critical_lr)
    args = {"eta": jnp.asarray(0.2 * crit), "x": x, "y": y}
    problem = FixedPointProblem(_gd_step, parameter=lambda a, p: {**a, "eta": p})
    mlp_branch = continuation(problem, teacher, 0.2 * crit, args=args, p_min=0.1 * crit, p_max=1.5 * crit,
                              ds=0.1 * crit, ds_max=0.2 * crit, n_steps=40)
    mlp_flip = mlp_branch.specials()[_index_of(mlp_branch, "period_doubling")][1]
    n = int(mlp_branch.n_points)
    drift = float(np.max(np.abs(np.asarray(mlp_branch.u[:n]) - np.asarray(teacher))))
    metrics = {
        "double_well": {"eta_flip": eta_flip, "error_vs_1": abs(eta_flip - 1.0),
                        "eta_flip_period2": eta_flip2,
                        "period2_flip_minus_sqrt5_minus_1": eta_flip2 - (5**0.5 - 1),
                        "n_points": int(fixed.n_points), "n_points_period2": int(period2.n_points)},
        "mlp": {"n_params": int(teacher.shape[0]), "n_data": cfg.mlp_points, "regime": stab.regime,
                "loss_at_minimum": float(mlp_loss(teacher, x, y)), "lambda_max": float(stab.lambda_max),
                "lambda_min": float(stab.lambda_min), "critical_lr": crit, "eta_flip": mlp_flip,
                "relative_error": abs(mlp_flip / crit - 1), "max_drift_of_branch": drift},
    }
    return metrics, (fixed, period2, mlp_branch)


# -- 2. Ott-Antonsen on a graphon ---------------------------------------------------------------------


def uniform_attachment(x, y):
    """W(x, y) = 1 - max(x, y): top eigenvalue 4 / pi^2."""
    return 1.0 - jnp.maximum(x, y)


class RealOttAntonsen(eqx.Module):
    """The Ott-Antonsen field of [`jaxdyn.meanfield.OttAntonsen`][] on the invariant real subspace
    (Im z = 0): `f(t, u, K)` with `u = Re z` on the grid cells."""

    gamma: float
    operator: mf.AbstractCoupling

    def __call__(self, t, u, coupling):
        field = mf.OttAntonsen(coupling, self.gamma, 0.0, 0.0, self.operator)
        return field(t, jnp.stack([u, jnp.zeros_like(u)]))[0]


def _golden_order(n: int) -> np.ndarray:
    """A permutation spreading quantile ranks evenly over consecutive nodes (golden-ratio sequence)."""
    return np.argsort(np.mod(np.arange(n) * (np.sqrt(5) - 1) / 2, 1.0))


def ott_antonsen_branch(cfg: Config, key):
    """The branch point of incoherence at K_c and r_inf(K) on the synchronised branch vs particles."""
    graph = graphons.general(uniform_attachment)
    m = cfg.oa_cells
    op = mf.coupling_operator(graph, m)
    xs = np.asarray(mf.grid(m))
    dense = np.asarray(uniform_attachment(xs[:, None], xs[None, :])) / m
    lam_discrete = float(np.max(np.linalg.eigvalsh(dense)))
    kc_discrete = 2 * cfg.oa_gamma / lam_discrete
    kc_continuum = cfg.oa_gamma * np.pi**2 / 2
    problem = EquilibriumProblem(RealOttAntonsen(cfg.oa_gamma, op))
    k_max = max(cfg.oa_ks) * 1.1
    trivial = continuation(problem, jnp.zeros(m), 0.5 * kc_discrete, p_min=0.1, p_max=k_max, ds=0.05,
                           ds_max=0.2, n_steps=40)
    i_bp = _index_of(trivial, "branch_point")
    k_bp = trivial.specials()[i_bp][1]
    sync = continuation(switch_branch(trivial, i_bp, amplitude=0.02), args=trivial.args, p_min=0.1,
                        p_max=k_max, ds=0.02, ds_max=0.1, n_steps=80)
    n = int(sync.n_points)
    us, ks = np.asarray(sync.u[:n]), np.asarray(sync.p[:n])
    r_branch = np.abs(us.mean(axis=1))
    keep = np.argsort(ks)
    ks_sorted, r_sorted = ks[keep], r_branch[keep]
    r_theory = np.interp(cfg.oa_ks, ks_sorted, r_sorted)

    # particles: N nodes on the grid, Lorentzian quantile frequencies spread evenly along the graphon
    N = cfg.oa_particles
    omega = mf.lorentzian_quantiles(N, cfg.oa_gamma)[_golden_order(N)]
    theta0 = 2 * jnp.pi * jax.random.uniform(key, (N,))
    ts = jnp.linspace(0.0, cfg.oa_time, 301)

    @jax.jit
    def r_of(k):
        field = mf.Kuramoto(omega, k, graph=graph)
        ys = mf.simulate(field, theta0, ts, rtol=1e-6, atol=1e-6).ys
        return jnp.abs(mf.order_parameter(ys))

    late = np.asarray(ts) >= cfg.oa_time / 2
    r_particles = np.array([float(np.asarray(r_of(jnp.asarray(k)))[late].mean()) for k in cfg.oa_ks])
    metrics = {
        "K_c_branch_point": k_bp, "K_c_discrete": kc_discrete, "K_c_continuum": kc_continuum,
        "error_vs_discrete": abs(k_bp - kc_discrete), "error_vs_continuum": abs(k_bp - kc_continuum),
        "cells": m, "gamma": cfg.oa_gamma, "ks": list(cfg.oa_ks), "r_branch": r_theory,
        "r_particles": r_particles, "n_particles": N,
        "max_abs_r_difference": float(np.max(np.abs(r_theory - r_particles))),
    }
    return metrics, (trivial, sync, (ks_sorted, r_sorted))


# -- 3. delay equations: Hopf in tau and the cycles beyond --------------------------------------------


def mackey_glass(t, y, yd, args):
    """x' = beta x_tau / (1 + x_tau^n) - gamma x with beta = 2, gamma = 1, n = 10."""
    return 2.0 * yd[0] / (1.0 + yd[0] ** 10) - y


class DelayedNetwork(eqx.Module):
    """A delayed two-neuron network x' = -x + W tanh(x(t - tau))."""

    weights: jax.Array

    def __call__(self, t, y, yd, args):
        return -y + self.weights @ jnp.tanh(yd[0])


def _tau(tau):
    return jnp.reshape(tau, (1,))


def cycle_branch(field, y_eq, hopf, cfg: Config, *, p_max: float, amplitude: float):
    """The branch of periodic orbits in tau from just past the Hopf point up to `p_max` (the first
    point corrected by Newton from the Hopf eigenvector's orbit of size `amplitude`)."""
    tau0 = float(hopf.parameter) * 1.02
    u0 = dde_orbit_guess_from_hopf(y_eq, hopf.eigenvector, hopf.omega, amplitude, cfg.dde_points)
    problem = DDEPeriodicOrbitProblem(field, _tau, n_points=cfg.dde_points, n_multipliers=0)
    branch = continuation(problem, u0, tau0, p_min=0.5 * tau0, p_max=p_max, ds=0.05, ds_max=0.2,
                          n_steps=cfg.dde_steps, max_newton=25, detect=False)
    k = int(branch.n_points)
    n = y_eq.shape[0]
    values = np.asarray(branch.u[:k, :-1]).reshape(k, cfg.dde_points, n)
    amp = values[..., 0].max(axis=1) - values[..., 0].min(axis=1)
    return branch, {"tau": np.asarray(branch.p[:k]), "period": np.asarray(branch.u[:k, -1]), "amplitude": amp}


def delay_hopf(cfg: Config):
    """Hopf in tau of Mackey-Glass and of the delayed network, with the cycle branches."""
    out, curves = {}, {}
    mg = dde_hopf(mackey_glass, jnp.ones(1), _tau, 0.4)
    omega_mg, tau_mg = np.sqrt(15.0), np.arccos(-0.25) / np.sqrt(15.0)
    _, curves["Mackey-Glass"] = cycle_branch(mackey_glass, jnp.ones(1), mg, cfg, p_max=1.0, amplitude=0.1)
    out["mackey_glass"] = {"tau_hopf": float(mg.parameter), "omega": float(mg.omega), "tau_theory": tau_mg,
                           "omega_theory": omega_mg, "tau_error": abs(float(mg.parameter) - tau_mg),
                           "omega_error": abs(float(mg.omega) - omega_mg)}
    net = DelayedNetwork(jnp.array([[-1.0, 2.0], [-2.0, -1.0]]))
    hn = dde_hopf(net, jnp.zeros(2), _tau, 0.4)
    tau_net = (np.pi - 2 * np.arctan(2.0)) / 2
    if cfg.network_cycles:
        _, curves["delayed network"] = cycle_branch(net, jnp.zeros(2), hn, cfg, p_max=1.2, amplitude=0.1)
    out["network"] = {"tau_hopf": float(hn.parameter), "omega": float(hn.omega), "tau_theory": tau_net,
                      "omega_theory": 2.0, "tau_error": abs(float(hn.parameter) - tau_net),
                      "omega_error": abs(float(hn.omega) - 2.0)}
    for name, c in curves.items():
        key = "mackey_glass" if name == "Mackey-Glass" else "network"  # noqa: PLW2901
        out[key]["cycle_points"] = len(c["tau"])
        out[key]["cycle_tau_range"] = [float(c["tau"].min()), float(c["tau"].max())]
        out[key]["cycle_max_amplitude"] = float(c["amplitude"].max())
    return out, curves


# -- 4. a trained planar neural ODE --------------------------------------------------------------------

MU, A = 0.5, 0.1
LOWER, UPPER = np.array([-1.6, -1.0]), np.array([1.0, 1.0])


def target_field(t, y, args):
    """x' = y, y' = -x - x^2 + mu (a - x^2 - y^2) y: saddle (-1, 0), unstable focus at 0, a cycle."""
    return jnp.stack([y[1], -y[0] - y[0] ** 2 + MU * (A - y[0] ** 2 - y[1] ** 2) * y[1]])


def train_field(cfg: Config, key):
    """An MLPField regressed on `target_field` on the box (Adam, full batch)."""
    k_init, k_data = jax.random.split(key)
    model = MLPField(2, cfg.node_width, 2, key=k_init)
    pts = jax.random.uniform(k_data, (cfg.node_train_points, 2), minval=LOWER, maxval=UPPER)
    target = jax.vmap(lambda p: target_field(0.0, p, None))(pts)
    opt = optax.adam(optax.cosine_decay_schedule(3e-3, cfg.node_train_steps))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = opt.init(params)

    def loss(p):
        m = eqx.combine(p, static)
        return jnp.mean((jax.vmap(lambda q: m(0.0, q, None))(pts) - target) ** 2)

    def step(carry, _):
        p, s = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    (params, _), losses = jax.jit(lambda c: jax.lax.scan(step, c, None, length=cfg.node_train_steps))(
        (params, state))
    return eqx.combine(params, static), np.asarray(losses)


def neural_ode_portrait(cfg: Config, key):
    """Equilibria, cycle and saddle manifolds of the trained field."""
    k_train, k_eq = jax.random.split(key)
    model, losses = train_field(cfg, k_train)
    eq = equilibria(model, jnp.asarray(LOWER), jnp.asarray(UPPER), key=k_eq, n_starts=32)
    k = int(eq.n_found)
    points = np.asarray(eq.points[:k])
    kinds = eq.kind_names()
    saddles = [p for p, kind in zip(points, kinds, strict=True) if kind.startswith("saddle")]
    manifolds = [invariant_manifolds(model, jnp.asarray(p), t_max=30.0, n_points=400, eps=1e-5, bound=1.5)
                 for p in saddles]
    # the cycle: multiple shooting from a point near it, with its Floquet multipliers
    orbit = periodic_orbit(model, jnp.array([0.35, 0.0]), 2 * np.pi, n_segments=4, rtol=1e-8, atol=1e-10)
    cycle = np.asarray(orbit.orbit()[1])
    radius = float(np.max(np.linalg.norm(cycle, axis=1)))
    true_saddle = np.array([-1.0, 0.0])
    saddle_error = (float(min(np.linalg.norm(s - true_saddle) for s in saddles)) if saddles
                    else float("nan"))
    metrics = {
        "final_training_loss": float(losses[-1]), "n_equilibria": k,
        "equilibria": [[float(v) for v in p] for p in points], "kinds": kinds,
        "saddle_error_vs_target": saddle_error, "cycle_max_radius": radius,
        "cycle_period": float(orbit.period), "cycle_multipliers": np.abs(np.asarray(orbit.multipliers)),
        "cycle_stable": bool(orbit.stable), "cycle_trivial_multiplier_error": float(orbit.trivial_error),
        "manifold_lengths": [m.arc_lengths().tolist() for m in manifolds],
        "manifolds_successful": [bool(m.successful) for m in manifolds],
    }
    return metrics, (model, points, kinds, manifolds, cycle)


# -- the run ------------------------------------------------------------------------------------------


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over its four parts."""
    cfg = QUICK if quick else FULL
    keys = jax.random.split(jax.random.key(seed), 3)
    timings = {}

    with stages(progress, 4, NAME) as stage:
        def timed(name, part, *part_args):
            stage(name)
            t0 = time.perf_counter()
            out = part(*part_args)
            timings[name] = round(time.perf_counter() - t0, 2)
            return out

        gd, gd_branches = timed("gd", gd_flips, cfg)
        oa, oa_parts = timed("ott_antonsen", ott_antonsen_branch, cfg, keys[1])
        dde, dde_curves = timed("dde", delay_hopf, cfg)
        node, node_parts = timed("neural_ode", neural_ode_portrait, cfg, keys[2])
    metrics = {"quick": quick, "seed": seed, "config": dataclasses.asdict(cfg), "timings_s": timings,
               "gd": gd, "ott_antonsen": oa, "dde": dde, "neural_ode": node}
    figures = _figures(cfg, gd, gd_branches, oa, oa_parts, dde, dde_curves, node_parts)
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics), metrics, figures, question=QUESTION,
                            claims=_claims(cfg, metrics))


def _figures(cfg, gd, gd_branches, oa, oa_parts, dde, dde_curves, node_parts):
    import matplotlib.pyplot as plt

    from ..plot._manifolds import plot_phase_portrait

    figs = {}
    fixed, period2, mlp_branch = gd_branches
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
    fixed.plot(ax=axes[0], label="fixed point $x = 1$")
    period2.plot(ax=axes[0], label="period-2 orbit (one of its points)")
    axes[0].set_xlabel(r"step size $\eta$")
    axes[0].set_ylabel("state $x$")
    axes[0].set_title(r"GD on $(x^2 - 1)^2/4$: flip at $\eta = 1$, then at $\sqrt{5} - 1$")
    axes[0].legend(fontsize="small", loc="upper left",
                   title="solid: stable, dashed: unstable; PD: flip", title_fontsize="small")
    n = int(mlp_branch.n_points)
    etas = np.asarray(mlp_branch.p[:n])
    lowest = np.asarray(mlp_branch.spectrum[:n]).real.min(axis=1)
    axes[1].plot(etas, lowest, ".-", label=r"lowest multiplier $1 - \eta\lambda_{\max}$ (continuation)")
    axes[1].axhline(-1.0, color="k", lw=0.8, ls="--", label="flip threshold: multiplier $-1$")
    axes[1].axvline(gd["mlp"]["critical_lr"], color="grey", ls=":",
                    label=rf"gd_stability: $2/\lambda_{{\max}} = {gd['mlp']['critical_lr']:.6f}$")
    flip = gd["mlp"]["eta_flip"]
    axes[1].plot([flip], [-1.0], "ko", mfc="none", ms=9, label=rf"flip located: $\eta = {flip:.6f}$")
    axes[1].set_xlabel(r"step size $\eta$")
    axes[1].set_ylabel(r"multiplier of $DG_\eta$ at the minimum")
    axes[1].set_title("GD map of a 1-2-1 tanh MLP at its minimum")
    axes[1].legend(fontsize="small", loc="lower left")
    axes[1].grid(alpha=0.3)
    figs["gd_flips"] = fig

    trivial, sync, (ks, rs) = oa_parts
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    ax.plot(ks, rs, "-", color="C0", label="synchronised branch (continuation)")
    ax.plot(oa["ks"], oa["r_particles"], "o", color="C1", mfc="none", mew=1.5,
            label=f"particles, $N = {oa['n_particles']}$ (time average)")
    ax.axvline(oa["K_c_branch_point"], color="C2", ls=":", lw=1.5,
               label=rf"branch point $K_c = {oa['K_c_branch_point']:.4f}$")
    ax.axvline(oa["K_c_continuum"], color="k", ls="--", lw=0.8,
               label=rf"continuum $\gamma \pi^2 / 2 = {oa['K_c_continuum']:.4f}$ (coincides)")
    ax.set_xlabel("coupling $K$")
    ax.set_ylabel(r"order parameter $r_\infty = |\int z\,dx|$")
    ax.set_title(rf"Ott-Antonsen on $W(x, y) = 1 - \max(x, y)$, $\gamma = {oa['gamma']:g}$, "
                 f"{oa['cells']} cells")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    figs["ott_antonsen"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
    hopf = {"Mackey-Glass": dde["mackey_glass"]["tau_hopf"], "delayed network": dde["network"]["tau_hopf"]}
    for i, (name, c) in enumerate(dde_curves.items()):
        style = dict(color=f"C{i}", marker="os"[i % 2], ms=4)
        axes[0].plot(c["tau"], c["amplitude"], "-", label=name, **style)
        axes[1].plot(c["tau"], c["period"], "-", label=name, **style)
        for ax in axes:
            ax.axvline(hopf[name], color=f"C{i}", ls=":", lw=1.2,
                       label=rf"Hopf point $\tau_H = {hopf[name]:.4f}$ ({name})")
        omega = dde["mackey_glass" if name == "Mackey-Glass" else "network"]["omega"]
        axes[0].plot([hopf[name]], [0.0], "*", color=f"C{i}", ms=10, mec="k",
                     label=f"amplitude 0 at the Hopf point ({name})")
        axes[1].plot([hopf[name]], [2 * np.pi / omega], "*", color=f"C{i}", ms=10, mec="k",
                     label=rf"$2\pi/\omega$ at the Hopf point ({name})")
    axes[0].set_ylabel(r"amplitude of $x_0$ ($\max - \min$ over a period)")
    axes[1].set_ylabel("period $T$ (time units)")
    # the legends where the branches leave room: below the growing amplitude, above the growing period
    axes[0].legend(fontsize="small", loc="lower right")
    axes[1].legend(fontsize="small", loc="upper left")
    for ax in axes:
        ax.set_xlabel(r"delay $\tau$ (time units)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Cycle branches born at the delay Hopf points")
    axes[1].set_title("Period of the cycles")
    figs["dde_cycles"] = fig

    model, points, kinds, manifolds, cycle = node_parts
    ax = plot_phase_portrait(model, LOWER, UPPER, equilibria=list(zip(points, kinds, strict=True)),
                             manifolds=manifolds, cycles=[cycle],
                             title="Trained neural ODE: equilibria, cycle, saddle manifolds")
    figs["neural_ode"] = ax.figure
    return figs


def _claims(cfg: Config, mt: dict) -> tuple[Claim, ...]:
    """The experiment's claims from its metrics (a pure function: tested on synthetic metrics)."""
    gd, oa, dde, node = mt["gd"], mt["ott_antonsen"], mt["dde"], mt["neural_ode"]
    well, net = gd["double_well"], gd["mlp"]
    flip_cases = [well["error_vs_1"] <= FLIP_TOLERANCE,
                  abs(well["period2_flip_minus_sqrt5_minus_1"]) <= FLIP_TOLERANCE,
                  net["relative_error"] <= MLP_FLIP_TOLERANCE]
    names = ("the double well's flip", "the period-2 flip", "the MLP's flip")
    flips = Claim.check(
        "GD as a map $G_\\eta(\\theta) = \\theta - \\eta\\nabla L$: an isolated minimum is linearly stable "
        "iff $\\lambda_{\\max}(H) < 2/\\eta$ and loses stability by a flip (multiplier $-1$) at "
        "$\\eta = 2/\\lambda_{\\max}$; on $(x^2 - 1)^2/4$ the period-2 orbit born there flips at "
        "$\\eta = \\sqrt5 - 1$.",
        "mission paper (dynamics of the network: GD as a map, stability of isolated minima)",
        f"double well: $|\\eta_{{\\mathrm{{flip}}}} - 1| \\le {_tex(FLIP_TOLERANCE)}$ and "
        f"$|\\eta_{{\\mathrm{{flip}},2}} - (\\sqrt5 - 1)| \\le {_tex(FLIP_TOLERANCE)}$; MLP: "
        f"$|\\eta_{{\\mathrm{{flip}}}}\\,\\lambda_{{\\max}}/2 - 1| \\le {_tex(MLP_FLIP_TOLERANCE)}$",
        {"double well |eta_flip - 1|": well["error_vs_1"],
         "|eta_flip,2 - (sqrt5 - 1)|": abs(well["period2_flip_minus_sqrt5_minus_1"]),
         "MLP relative error": net["relative_error"], "MLP 2/lambda_max": net["critical_lr"]},
        flip_cases,
        why="outside the tolerance: " + ", ".join(n for n, ok in zip(names, flip_cases) if not ok) + ".")

    bp = Claim.check(
        "On a graphon $W$ the incoherent state $z \\equiv 0$ of the Ott-Antonsen equation loses "
        "stability at $K_c = 2\\gamma/\\lambda_{\\max}(W)$ ($= \\gamma\\pi^2/2$ for "
        "$W = 1 - \\max(x, y)$), where the synchronised branch bifurcates.",
        "Chiba & Medvedev 2019; mission paper (large networks and mean-field limits)",
        f"branch point located by continuation within ${_tex(BRANCH_POINT_TOLERANCE)}$ of "
        f"$2\\gamma/\\lambda_{{\\max}}$ of the discretised operator ({oa['cells']} cells)",
        {"K_c (branch point)": oa["K_c_branch_point"], "2 gamma / lambda_max": oa["K_c_discrete"],
         "error": oa["error_vs_discrete"], "continuum gamma pi^2/2": oa["K_c_continuum"]},
        oa["error_vs_discrete"] <= BRANCH_POINT_TOLERANCE,
        why=f"the branch point is {oa['error_vs_discrete']:.1e} from $2\\gamma/\\lambda_{{\\max}}$.")

    diffs = [abs(a - b) for a, b in zip(oa["r_branch"], oa["r_particles"], strict=True)]
    sync = Claim.check(
        "Beyond $K_c$ the synchronised Ott-Antonsen branch gives the stationary order parameter "
        "$r_\\infty(K)$ of the graphon Kuramoto network (Lorentzian frequencies) as $N \\to \\infty$.",
        "Ott & Antonsen 2008; Chiba & Medvedev 2019",
        f"$|r_{{\\mathrm{{branch}}}}(K) - \\bar r_N(K)| \\le {R_TOLERANCE:g}$ for every $K$ in "
        f"{list(oa['ks'])} "
        f"($N = {oa['n_particles']}$, time average over the second half)",
        {f"K = {k:g}": {"branch": a, "particles": b} for k, a, b in
         zip(oa["ks"], oa["r_branch"], oa["r_particles"], strict=True)},
        [d <= R_TOLERANCE for d in diffs],
        why="the particles differ from the branch by " + ", ".join(f"{d:.3f}" for d in diffs) + ".")

    mg, nw = dde["mackey_glass"], dde["network"]
    hopf_cases = [max(d["tau_error"], d["omega_error"]) <= HOPF_TOLERANCE for d in (mg, nw)]
    hopf = Claim.check(
        "A delay destabilises an equilibrium through a Hopf bifurcation where the characteristic "
        "equation has roots $\\pm i\\omega$: Mackey-Glass (linearisation $x' = -x - 4x_\\tau$) at "
        "$\\omega = \\sqrt{15}$, $\\tau_H = \\arccos(-1/4)/\\sqrt{15}$; the delayed network "
        "$x' = -x + W\\tanh(x_\\tau)$ at $\\omega = 2$, $\\tau_H = (\\pi - 2\\arctan 2)/2$.",
        "Hale & Verduyn Lunel 1993 (characteristic equations); mission paper (neural DDEs, "
        "Kuehn & Kuntz 2025)",
        f"$|\\tau_H - \\tau_{{\\mathrm{{closed}}}}| \\le {_tex(HOPF_TOLERANCE)}$ and "
        f"$|\\omega - \\omega_{{\\mathrm{{closed}}}}| \\le {_tex(HOPF_TOLERANCE)}$ for both systems",
        {"Mackey-Glass": {"tau_H": mg["tau_hopf"], "tau error": mg["tau_error"],
                          "omega error": mg["omega_error"]},
         "network": {"tau_H": nw["tau_hopf"], "tau error": nw["tau_error"],
                     "omega error": nw["omega_error"]}},
        hopf_cases,
        why="outside the tolerance for " + " and ".join(n for n, ok in zip(("Mackey-Glass", "the network"),
                                                                          hopf_cases) if not ok) + ".")

    saddle_err = node["saddle_error_vs_target"]
    found = isinstance(saddle_err, int | float) and bool(np.isfinite(saddle_err))
    saddle_ok = found and saddle_err <= SADDLE_TOLERANCE
    cycle_ok = bool(node["cycle_stable"])
    node_claim = Claim.check(
        "A neural ODE trained on a planar field inherits its invariant sets: the saddle at $(-1, 0)$ with "
        "its stable and unstable manifolds, and the stable limit cycle around the unstable focus.",
        "mission paper (dynamics on the network: neural ODEs as dynamical systems)",
        f"a saddle of the learned field within {SADDLE_TOLERANCE:g} of $(-1, 0)$, and a periodic orbit "
        "whose non-trivial Floquet multiplier has modulus $< 1$",
        {"saddle distance": saddle_err if found else "no saddle found",
         "Floquet multipliers |mu|": node["cycle_multipliers"], "period": node["cycle_period"]},
        [saddle_ok, cycle_ok],
        why=("no saddle within the tolerance" if not saddle_ok else "")
            + (" and " if not saddle_ok and not cycle_ok else "")
            + ("the cycle found is not stable" if not cycle_ok else "") + ".")
    return (flips, bp, sync, hopf, node_claim)


def _summary(cfg: Config, mt: dict) -> str:
    gd, oa, dde, node = mt["gd"], mt["ott_antonsen"], mt["dde"], mt["neural_ode"]
    well, net = gd["double_well"], gd["mlp"]

    rows = ["| K | r (branch) | r (particles) |", "|---|---|---|"]
    rows += [f"| {k:g} | {a:.4f} | {b:.4f} |"
             for k, a, b in zip(oa["ks"], oa["r_branch"], oa["r_particles"], strict=True)]

    def cycles(d: dict) -> str:
        if "cycle_tau_range" not in d:
            return "cycle branch not computed in the quick run"
        lo, hi = d["cycle_tau_range"]
        return (f"cycles followed for $\\tau$ in [{lo:.3f}, {hi:.3f}] ({d['cycle_points']} points, amplitude "
                f"up to {d['cycle_max_amplitude']:.3f})")

    mg, nw = dde["mackey_glass"], dde["network"]
    multipliers = np.array2string(np.asarray(node["cycle_multipliers"]), precision=6)
    paras = [
        "**GD flips at $2/\\lambda_{\\max}$.** Double well: the minimum's flip located at $\\eta$ = "
        f"{well['eta_flip']:.12f} (error {well['error_vs_1']:.1e} against 1); the period-2 branch from "
        f"branch switching flips again at $\\eta$ = {well['eta_flip_period2']:.12f} ($\\sqrt5 - 1$ to "
        f"{abs(well['period2_flip_minus_sqrt5_minus_1']):.1e}). Tanh MLP 1-2-1 "
        f"({net['n_params']} parameters, {net['n_data']} teacher-student points, loss at the minimum "
        f"{net['loss_at_minimum']:.1e}, $\\lambda_{{\\min}}$ = {net['lambda_min']:.1e}, gd_stability's "
        f"regime '{net['regime']}'): flip at $\\eta$ = {net['eta_flip']:.10f} against gd_stability's "
        "critical step "
        f"{net['critical_lr']:.10f} (relative error {net['relative_error']:.1e}; the branch stays at the "
        f"minimum to {net['max_drift_of_branch']:.1e}).",
        f"**Incoherence on a graphon loses stability at $K_c$.** {oa['cells']} cells, "
        f"$\\gamma$ = {oa['gamma']}: "
        f"branch point at K = {oa['K_c_branch_point']:.10f} against $2\\gamma/\\lambda_{{\\max}}$ of the "
        f"discretised operator {oa['K_c_discrete']:.10f} (error {oa['error_vs_discrete']:.1e}) and the "
        f"continuum $\\gamma\\pi^2/2$ = {oa['K_c_continuum']:.6f} (error {oa['error_vs_continuum']:.1e}, the "
        f"quadrature). $r_\\infty$ on the synchronised branch against {oa['n_particles']} particles (time "
        f"average of the second half): largest difference {oa['max_abs_r_difference']:.3f}.",
        "\n".join(rows),
        f"**Delay-induced Hopf.** Mackey-Glass: $\\tau_H$ = {mg['tau_hopf']:.12f} (closed form error "
        f"{mg['tau_error']:.1e}), $\\omega$ = {mg['omega']:.10f} (error {mg['omega_error']:.1e}); "
        f"{cycles(mg)}. "
        f"Delayed network: $\\tau_H$ = {nw['tau_hopf']:.12f} (error {nw['tau_error']:.1e}), $\\omega$ = "
        f"{nw['omega']:.10f} (error {nw['omega_error']:.1e}); {cycles(nw)}.",
        f"**A trained neural ODE.** Training loss {node['final_training_loss']:.1e}; {node['n_equilibria']} "
        f"equilibria: {', '.join(node['kinds']) or 'none'}; the learned saddle is "
        f"{fmt(node['saddle_error_vs_target'], '.1e')} from the target's (-1, 0) (\"-\": no saddle found). "
        f"Its limit cycle (multiple shooting): period {node['cycle_period']:.6f}, radius up to "
        f"{node['cycle_max_radius']:.3f}, Floquet multipliers of modulus {multipliers} (stable: "
        f"{node['cycle_stable']}). The saddle's stable and unstable manifolds are drawn in the phase "
        f"portrait (traced: {node['manifolds_successful']}).",
    ]
    return "\n\n".join(paras) + "\n"
