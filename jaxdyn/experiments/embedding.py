r"""The other side of the universal embedding theorem.

With $m \ge d + q$ an augmented neural ODE $\Phi = R \circ \phi_T \circ L$ represents every smooth
map exactly ([`jaxdyn.models.embed`][]). Without augmentation ($m \le d$, full-rank lift) it
cannot: $D\Phi(x) = B\, D\phi_T(Lx)\, A$ with $D\phi_T$ invertible, so

- in one dimension ($d = m = q = 1$) $\Phi$ is strictly monotone, and its sup error against
  $x^2$ on $[-1, 1]$ is at least $1/2$ (the values at $-1, 0, 1$ force it); a least-squares fit
  tends to the isotonic projection ($1/4$ on $[-1, 1/2]$, then $x^2$), whose sup error is $3/4$;
- for $d = m = 2$, $q = 1$, $\nabla \Phi$ never vanishes, so $\Phi$ has no critical point and its
  sup error against $|x|^2$ on the unit disk is at least $1/2$ (its minimum over the closed disk
  sits on the circle, where $|x|^2 = 1$, while $|x|^2 = 0$ at the centre).

We train both kinds on both targets with the same optimiser and compare errors, monotonicity and
critical points (Kuehn & Kuntz, arXiv 2308.01213 and 2405.09351).
"""

import dataclasses
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import models as jm
from ..plot import (
    evaluate,
    grid_values,
    plot_fit,
    plot_fit_errors,
    plot_level_sets,
    plot_losses,
)
from ..plot._plots import _legend_outside
from ._progress import stages
from ._result import Claim, ExperimentResult

NAME = "embedding"
TITLE = "The other side of the universal embedding theorem"

MONOTONE_SUP_BOUND = 0.5
"""Every monotone map has sup error >= 1/2 against x^2 on [-1, 1] (and every map without critical
points has sup error >= 1/2 against |x|^2 on the unit disk)."""
ISOTONIC_SUP_LIMIT = 0.75
"""Sup error of the L2 isotonic projection of x^2 on [-1, 1] (1/4 on [-1, 1/2], then x^2)."""

# The claims' criteria, fixed before the run (see `_claims`; the 2-D augmented ones are `Config`
# fields, since an exact embedding and a trained model call for different tolerances).
ISOTONIC_SUP_TOL = 0.05
"""Claim 2: the best non-augmented 1-D fit's sup error within this of 3/4 ..."""
ISOTONIC_LOSS_RATIO = 1.05
"""... and its final loss at most this times the monotone-map floor (it reached the limit)."""
AUGMENTED_SUP_TOL = 0.05
"""Claim 3: the augmented 1-D fit's sup error at most this ..."""
AUGMENTED_CRITICAL_TOL = 0.05
"""... with exactly one sign change of its derivative, within this of x = 0."""

QUESTION = ("Augmented neural ODEs ($m \\ge d + q$) represent every smooth map exactly (the "
            "universal embedding theorem); do non-augmented ones ($m = d$, full-rank lift) fail "
            "as the theory says: no critical points, monotone in 1-D, and hence a sup error of at "
            "least 1/2 against $x^2$ and $x_1^2 + x_2^2$?")


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    width: int = 16  # hidden width of the MLP field
    depth: int = 2  # hidden layers of the MLP field
    dt0: float = 0.1  # Tsit5 with constant steps on [0, 1]
    lr: float = 1e-2  # Adam, cosine decay from lr to 0
    n_train_1d: int = 64
    steps_1d: int = 1000
    replicates_1d: int = 1  # independent initialisations of the 1-D fits
    m_1d: int = 2  # state dimension of the augmented 1-D model
    n_train_2d: int = 8  # per axis
    steps_2d: int = 1000
    m_2d: int = 3  # state dimension of the augmented 2-D model
    train_augmented_2d: bool = False  # False: the exact embedding `jm.embed(psi)`
    n_starts: int = 16  # Newton starts of `critical_points`
    max_iter: int = 30
    n_eval_1d: int = 2001
    n_eval_2d: int = 101
    sup_tol_augmented_2d: float = 1e-10  # claim 5: exact embedding to rounding
    point_tol_augmented_2d: float = 1e-6  # claim 5: its minimum at the origin


QUICK = Config()
FULL = Config(width=32, steps_1d=2000, replicates_1d=3, steps_2d=2000, train_augmented_2d=True,
              n_starts=64, max_iter=60, sup_tol_augmented_2d=0.1, point_tol_augmented_2d=0.1)

LOWER_2D = (-1.0, -1.0)
UPPER_2D = (1.0, 1.0)


def square(x):
    """$\\psi(x) = x^2$, the 1-D target (shape `(1,)` -> `(1,)`)."""
    return x**2


def bowl(x):
    """$\\psi(x) = x_1^2 + x_2^2$, the 2-D target (shape `(2,)` -> scalar): a minimum at 0."""
    return jnp.sum(x**2)


def isotonic_fit(y: np.ndarray, *, increasing: bool = True) -> np.ndarray:
    """Least-squares monotone fit of the sequence `y` (pool adjacent violators, equal weights)."""
    y = np.asarray(y, dtype=float) if increasing else -np.asarray(y, dtype=float)
    means: list[float] = []
    counts: list[int] = []
    for value in y:
        means.append(float(value))
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            c = counts[-2] + counts[-1]
            m = (means[-2] * counts[-2] + means[-1] * counts[-1]) / c
            means[-2:] = [m]
            counts[-2:] = [c]
    out = np.repeat(means, counts)
    return out if increasing else -out


def monotone_loss_floor(ys: np.ndarray) -> float:
    """The smallest `mse_loss` ($\\frac{1}{2n}\\sum_i (\\Phi(x_i) - y_i)^2$) any monotone map can reach
    on data `ys` sorted by `x`: that of the better of the two isotonic fits."""
    ys = np.asarray(ys, dtype=float).ravel()
    return min(0.5 * float(np.mean((isotonic_fit(ys, increasing=inc) - ys) ** 2))
               for inc in (True, False))


def _ode_kwargs(cfg: Config) -> dict:
    return dict(solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(),
                dt0=cfg.dt0)


def non_augmented(d: int, q: int, cfg: Config, *, key) -> jm.NeuralODE:
    """$m = d$, identity lift; identity readout when $q = d$, else a random $d \\to q$ one."""
    kf, kr = jax.random.split(key)
    readout = None if q == d else jm.random_affine(d, q, key=kr)
    return jm.NeuralODE(jm.MLPField(d, cfg.width, cfg.depth, key=kf), readout=readout,
                        state_size=d, **_ode_kwargs(cfg))


def augmented(d: int, q: int, m: int, cfg: Config, *, key) -> jm.NeuralODE:
    """State dimension $m > d$, random affine lift $d \\to m$ and readout $m \\to q$."""
    kf, kl, kr = jax.random.split(key, 3)
    return jm.NeuralODE(jm.MLPField(m, cfg.width, cfg.depth, key=kf),
                        lift=jm.random_affine(d, m, key=kl), readout=jm.random_affine(m, q, key=kr),
                        **_ode_kwargs(cfg))


def _train(model, xs, ys, steps: int, cfg: Config, *, progress: bool, desc: str):
    optimizer = optax.adam(optax.cosine_decay_schedule(cfg.lr, steps))
    t0 = time.perf_counter()
    res = jm.fit(model, xs, ys, n_steps=steps, optimizer=optimizer, progress=progress, desc=desc)
    return res.model, np.asarray(res.losses), time.perf_counter() - t0


def _value_and_derivative(model, xi):
    v = model.variational(xi)
    return v.output.reshape(()), v.jacobian.reshape(())


def _variational_1d(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """$\\Phi(x)$ and $\\Phi'(x)$ on the grid `x`, from the variational equation (compiled once
    per model structure: the model is an argument, not a constant)."""
    return evaluate(jax.tree_util.Partial(_value_and_derivative, model), x[:, None])


def _sign_changes(v: np.ndarray) -> np.ndarray:
    s = np.sign(v)
    return np.flatnonzero(s[1:] * s[:-1] < 0)


def _critical_summary(cp) -> dict:
    return {
        "n_points": cp.n_points,
        "n_converged": cp.n_converged,
        "n_starts": cp.n_starts,
        "points": (np.round(np.asarray(cp.points), 6) + 0.0).tolist(),  # + 0.0: no "-0.0"
        "values": np.asarray(cp.values).tolist(),
        "morse_indices": np.asarray(cp.morse_indices).tolist(),
        "hessian_eigenvalues": np.asarray(cp.hessian_eigenvalues).tolist(),
    }


def _part_1d(cfg: Config, key, progress: bool, timings: dict):
    xs = jnp.linspace(-1.0, 1.0, cfg.n_train_1d)[:, None]
    ys = jax.vmap(square)(xs)
    x = np.linspace(-1.0, 1.0, cfg.n_eval_1d)
    target = x**2
    runs = {"non-augmented": [], "augmented": []}
    for r in range(cfg.replicates_1d):
        k_non, k_aug = jax.random.split(jax.random.fold_in(key, r))
        suffix = f" #{r + 1}" if cfg.replicates_1d > 1 else ""
        for kind, model in (("non-augmented", non_augmented(1, 1, cfg, key=k_non)),
                            ("augmented", augmented(1, 1, cfg.m_1d, cfg, key=k_aug))):
            model, losses, secs = _train(model, xs, ys, cfg.steps_1d, cfg, progress=progress,
                                         desc=f"1-D {kind}{suffix}")
            timings[f"fit_1d_{kind}{suffix.replace(' #', '_')}"] = secs
            t0 = time.perf_counter()
            pred, jac = _variational_1d(model, x)
            timings[f"variational_1d_{kind}{suffix.replace(' #', '_')}"] = (
                time.perf_counter() - t0)
            runs[kind].append(dict(model=model, losses=losses, pred=pred, jac=jac,
                                   sup=float(np.max(np.abs(pred - target)))))

    # The replicate that training did best on (lowest final loss), not the one that happens to
    # have the smallest sup error (a non-augmented fit stuck near a constant can beat the
    # converged one on sup error).
    best = {kind: min(rs, key=lambda run: run["losses"][-1]) for kind, rs in runs.items()}
    jac = {kind: best[kind]["jac"] for kind in runs}
    floor = monotone_loss_floor(np.asarray(ys))
    iso = isotonic_fit(target)  # the L2 monotone projection on the fine grid
    jn = jac["non-augmented"]
    changes = _sign_changes(jac["augmented"])
    metrics = {
        "sup_error_non_augmented": best["non-augmented"]["sup"],
        "sup_error_augmented": best["augmented"]["sup"],
        "sup_error_bound_monotone": MONOTONE_SUP_BOUND,
        "sup_error_isotonic_limit": ISOTONIC_SUP_LIMIT,
        "sup_error_isotonic_grid": float(np.max(np.abs(iso - target))),
        "rms_error_non_augmented": float(np.sqrt(np.mean((best["non-augmented"]["pred"]
                                                          - target) ** 2))),
        "rms_error_augmented": float(np.sqrt(np.mean((best["augmented"]["pred"] - target) ** 2))),
        "final_loss_non_augmented": float(best["non-augmented"]["losses"][-1]),
        "final_loss_augmented": float(best["augmented"]["losses"][-1]),
        "loss_floor_monotone": floor,
        "non_augmented_monotone": bool(np.all(jn > 0) or np.all(jn < 0)),
        "non_augmented_jacobian_range": [float(jn.min()), float(jn.max())],
        "augmented_jacobian_sign_changes_at": [float(0.5 * (x[i] + x[i + 1])) for i in changes],
        "architecture_non_augmented": jm.architecture_class(best["non-augmented"]["model"]),
        "architecture_augmented": jm.architecture_class(best["augmented"]["model"]),
        "state_sizes": [1, cfg.m_1d],
    }
    for kind, rs in runs.items():
        key_ = kind.replace("-", "_")
        metrics[f"sup_errors_{key_}_all_initialisations"] = [run["sup"] for run in rs]
        metrics[f"final_losses_{key_}_all_initialisations"] = [float(run["losses"][-1])
                                                              for run in rs]
    metrics["non_augmented_jacobian_ranges_all_initialisations"] = [
        [float(run["jac"].min()), float(run["jac"].max())] for run in runs["non-augmented"]]

    import matplotlib.pyplot as plt

    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 5.6), layout="constrained")
    iso_label = "isotonic projection (least-squares limit of monotone fits)"
    preds = {f"non-augmented ($m = 1$), sup error {metrics['sup_error_non_augmented']:.3f}":
             best["non-augmented"]["pred"],
             f"augmented ($m = {cfg.m_1d}$), sup error {metrics['sup_error_augmented']:.2g}":
             best["augmented"]["pred"]}
    plot_fit(x, target, {**preds, iso_label: iso},
             data=(np.asarray(xs), np.asarray(ys)), ax=ax0, target_label="target $x^2$",
             title="Fits of $x^2$ by 1-D neural ODEs", legend="below",
             styles={iso_label: dict(color="black", ls="--", lw=1.2)})
    plot_fit_errors(x, target, dict(zip(("non-augmented", "augmented"), preds.values(),
                                        strict=True)),
                    ax=ax1, title="Pointwise error (log scale)", legend="below",
                    ylabel=r"$|\Phi(x) - x^2|$",
                    hlines={"1/2: sup-error bound of every monotone map": MONOTONE_SUP_BOUND,
                            "3/4: sup error of the isotonic projection": ISOTONIC_SUP_LIMIT})
    ax2.plot(x, jn, label=r"non-augmented: $\Phi'(x) > 0$ everywhere" if np.all(jn > 0) else
             "non-augmented")
    ax2.plot(x, jac["augmented"], ls="--",
             label="augmented: $\\Phi'$ changes sign at $x$ = "
                   + (", ".join(f"{0.5 * (x[i] + x[i + 1]):.3f}" for i in changes) or "-"))
    ax2.axhline(0.0, color="black", lw=0.8, label=r"$\Phi' = 0$")
    ax2.set_xlabel("$x$")
    ax2.set_ylabel(r"$\Phi'(x)$ (variational equation)")
    ax2.set_title("Input derivative")
    _legend_outside(ax2, "below")
    ax2.grid(alpha=0.3)
    losses = {"1-D non-augmented": best["non-augmented"]["losses"],
              "1-D augmented": best["augmented"]["losses"]}
    return metrics, fig, losses, floor


def _part_2d(cfg: Config, key, progress: bool, timings: dict, stage=lambda name: None):
    k_non, k_aug, k_cp = jax.random.split(key, 3)
    g = jnp.linspace(-1.0, 1.0, cfg.n_train_2d)
    xs = jnp.stack([a.ravel() for a in jnp.meshgrid(g, g)], axis=-1)
    ys = jax.vmap(bowl)(xs)[:, None]
    models, losses = {}, {}
    model, losses["2-D non-augmented"], timings["fit_2d_non-augmented"] = _train(
        non_augmented(2, 1, cfg, key=k_non), xs, ys, cfg.steps_2d, cfg, progress=progress,
        desc="2-D non-augmented")
    models["non-augmented"] = model
    if cfg.train_augmented_2d:
        model, losses["2-D augmented"], timings["fit_2d_augmented"] = _train(
            augmented(2, 1, cfg.m_2d, cfg, key=k_aug), xs, ys, cfg.steps_2d, cfg,
            progress=progress, desc="2-D augmented")
        aug_label = "trained"
    else:
        # The exact augmented model of the embedding theorem (m = d + q = 3). Its field
        # (0, psi(u)) is constant along each trajectory, so a single Euler step is exact (and
        # much cheaper to differentiate twice than an adaptive solve).
        model = jm.embed(bowl, 2, 1, solver=diffrax.Euler(),
                         stepsize_controller=diffrax.ConstantStepSize(), dt0=1.0)
        aug_label = "exact embedding"
    models["augmented"] = model

    stage("critical points")
    lower, upper = jnp.asarray(LOWER_2D), jnp.asarray(UPPER_2D)
    X, Y, target = grid_values(bowl, LOWER_2D, UPPER_2D, n=cfg.n_eval_2d)
    disk = X**2 + Y**2 <= 1.0
    metrics: dict = {}
    cps = {}
    t0 = time.perf_counter()
    cps["target"] = jm.critical_points(bowl, lower, upper, key=k_cp, n_starts=cfg.n_starts,
                                       n_steps=cfg.max_iter)
    for kind, model in models.items():
        tk = time.perf_counter()
        cps[kind] = jm.critical_points(model, lower, upper, key=k_cp, n_starts=cfg.n_starts,
                                       n_steps=cfg.max_iter)
        timings[f"critical_points_2d_{kind}"] = time.perf_counter() - tk
        _, _, Z = grid_values(model, LOWER_2D, UPPER_2D, n=cfg.n_eval_2d)
        key_ = kind.replace("-", "_")
        metrics[f"sup_error_{key_}"] = float(np.max(np.abs(Z - target)))
        metrics[f"sup_error_unit_disk_{key_}"] = float(np.max(np.abs(Z - target)[disk]))
        metrics[f"rms_error_{key_}"] = float(np.sqrt(np.mean((Z - target) ** 2)))
        metrics[f"architecture_{key_}"] = jm.architecture_class(model)
        metrics[f"critical_points_{key_}"] = _critical_summary(cps[kind])
    timings["critical_points_2d_total"] = time.perf_counter() - t0
    metrics["sup_error_bound_no_critical_points_unit_disk"] = MONOTONE_SUP_BOUND
    metrics["critical_points_target"] = _critical_summary(cps["target"])
    metrics["augmented_model"] = aug_label
    metrics["state_sizes"] = [2, models["augmented"].state_size]
    for kind in ("non-augmented", "augmented"):
        if f"2-D {kind}" in losses:
            metrics[f"final_loss_{kind.replace('-', '_')}"] = float(losses[f"2-D {kind}"][-1])

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6), layout="constrained")
    vmin, vmax = float(target.min()), float(target.max())
    panels = (("target", bowl, r"target $x_1^2 + x_2^2$"),
              ("non-augmented", models["non-augmented"],
               f"non-augmented ($m = 2$), sup error {metrics['sup_error_non_augmented']:.2f}"),
              ("augmented", models["augmented"],
               f"augmented ($m = {models['augmented'].state_size}$), {aug_label},\nsup error "
               f"{metrics['sup_error_augmented']:.2g}"))
    for ax, (kind, fn, title) in zip(axes, panels, strict=True):
        plot_level_sets(fn, LOWER_2D, UPPER_2D, critical_points=cps[kind], ax=ax,
                        n=cfg.n_eval_2d, vmin=vmin, vmax=vmax, title=title, colorbar=ax is axes[-1],
                        colorbar_label=r"$\Phi(x)$ (the target in the first panel; one scale)")
    return metrics, fig, losses


_KIND = {0: "minimum", 2: "maximum"}


def _describe(cps: dict) -> str:
    """'no critical point' or e.g. 'one critical point: a minimum (index 0) at (0.001, -0.002)'."""
    n = cps["n_points"]
    if n == 0:
        return f"no critical point ({cps['n_converged']}/{cps['n_starts']} starts converged)"
    items = [f"a {_KIND.get(i, 'saddle')} (index {i}) at ({p[0]:.3f}, {p[1]:.3f})"
             for p, i in zip(cps["points"], cps["morse_indices"], strict=True)]
    return f"{n} critical point(s): " + "; ".join(items)


def _summary(cfg: Config, m1: dict, m2: dict) -> str:
    lo, hi = m1["non_augmented_jacobian_range"]
    changes = ", ".join(f"{v:.3f}" for v in m1["augmented_jacobian_sign_changes_at"]) or "nowhere"
    near_iso = (", and close to" if abs(m1["sup_error_non_augmented"] - ISOTONIC_SUP_LIMIT) < 0.05
                else "; compare")
    trained_2d = (f"{cfg.n_train_2d}x{cfg.n_train_2d} grid of training points, {cfg.steps_2d} "
                  "Adam steps")
    paragraphs = [
        f"**1-D: $x^2$ on $[-1, 1]$** ({cfg.n_train_1d} training points, {cfg.steps_1d} Adam "
        f"steps with cosine decay from {cfg.lr:g}, MLP field of width {cfg.width} and depth "
        f"{cfg.depth}, Tsit5 with constant step {cfg.dt0:g}"
        + (f"; the best of {cfg.replicates_1d} initialisations by final loss" if cfg.replicates_1d > 1
           else "")
        + "). The non-augmented fit "
        f"($m = 1$, `architecture_class` {m1['architecture_non_augmented']!r}) has sup error "
        f"**{m1['sup_error_non_augmented']:.3f}**: above the bound 1/2 that holds for every "
        f"monotone map{near_iso} 3/4, the sup error of the isotonic projection (1/4 on "
        "[-1, 1/2], then $x^2$) that least-squares fits of monotone maps tend to. Its final loss "
        f"{m1['final_loss_non_augmented']:.4f} cannot go below {m1['loss_floor_monotone']:.4f}, "
        "the smallest loss any monotone map reaches on the training data (isotonic regression). "
        "Its derivative "
        f"$\\Phi'(x)$ from the variational equation stays in [{lo:.3g}, {hi:.3g}] on the grid: one "
        f"sign (monotone: {'yes' if m1['non_augmented_monotone'] else 'no'}). The augmented fit "
        f"($m = {cfg.m_1d}$, {m1['architecture_augmented']!r}) reaches sup error "
        f"**{m1['sup_error_augmented']:.2g}**; its derivative changes sign at $x$ = {changes}.",
        f"**2-D: $x_1^2 + x_2^2$ on $[-1, 1]^2$** ({trained_2d}). The non-augmented model "
        f"($m = d = 2$, identity lift, random readout) has sup error "
        f"**{m2['sup_error_non_augmented']:.2f}** (on the unit disk "
        f"{m2['sup_error_unit_disk_non_augmented']:.2f}, where no map without critical points does "
        "better than 1/2: its minimum over the disk lies on the circle), although its final "
        f"training loss is only {m2['final_loss_non_augmented']:.2g}: without an interior "
        "minimum, its low sublevel sets must reach the boundary somewhere (see the level sets). "
        "Newton's method finds "
        f"{_describe(m2['critical_points_non_augmented'])}. The augmented model "
        f"($m = {m2['state_sizes'][1]}$, {m2['augmented_model']}) has sup error "
        f"**{m2['sup_error_augmented']:.2g}** and "
        f"{_describe(m2['critical_points_augmented'])}, like the target "
        f"({_describe(m2['critical_points_target'])}).",
    ]
    return "\n\n".join(paragraphs) + "\n"


def _claims(cfg: Config, metrics: dict) -> tuple[Claim, ...]:
    """The experiment's claims, judged on `metrics` (`"1d"`, `"2d"`) with the criteria fixed in
    this module and in `cfg`."""
    m1, m2 = metrics["1d"], metrics["2d"]
    claims = []
    ranges = m1["non_augmented_jacobian_ranges_all_initialisations"]
    claims.append(Claim.check(
        "A non-augmented neural ODE ($d = m = q = 1$, full-rank lift) has no critical point: "
        "$\\Phi'(x) = B\\, D\\phi_T(Lx)\\, A$ never vanishes, so $\\Phi$ is strictly monotone.",
        "Kuehn & Kuntz, arXiv 2405.09351 (non-augmented neural ODEs have no critical points); "
        "the mission's paper (Chemnitz, Engel, Kuehn, Kuntz 2025), dynamics on the network",
        f"every initialisation ({len(ranges)}): $\\Phi'$ from the variational equation of one "
        f"sign on {cfg.n_eval_1d} points of $[-1, 1]$",
        "range of $\\Phi'$: " + "; ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in ranges),
        [lo * hi > 0 for lo, hi in ranges],
        why="$\\Phi'$ changed sign on the grid for some initialisation, which the theory excludes "
            "(a solver or variational-equation error)."))

    sups = m1["sup_errors_non_augmented_all_initialisations"]
    sup, loss, floor = (m1["sup_error_non_augmented"], m1["final_loss_non_augmented"],
                        m1["loss_floor_monotone"])
    claims.append(Claim.check(
        "Hence its sup error against $x^2$ on $[-1, 1]$ is at least 1/2 (the values at "
        "$-1, 0, 1$ force it), and a least-squares fit tends to the isotonic projection "
        "($1/4$ on $[-1, 1/2]$, then $x^2$), whose sup error is 3/4.",
        "Kuehn & Kuntz, arXiv 2405.09351 (monotone in 1-D); least-squares projection onto "
        "monotone maps (isotonic regression)",
        f"every initialisation: sup error $\\ge$ {MONOTONE_SUP_BOUND:g}; the best fit (by final "
        f"loss): $\\lvert$sup error $- 3/4\\rvert \\le$ {ISOTONIC_SUP_TOL:g} and final loss "
        f"$\\le$ {ISOTONIC_LOSS_RATIO:g} $\\times$ the monotone-map floor",
        "sup errors " + ", ".join(f"{v:.3f}" for v in sups) + f"; best fit: sup error {sup:.3f}, "
        f"final loss {loss:.4g} against the floor {floor:.4g} (ratio {loss / floor:.3f})",
        [all(v >= MONOTONE_SUP_BOUND for v in sups),
         abs(sup - ISOTONIC_SUP_LIMIT) <= ISOTONIC_SUP_TOL and loss <= ISOTONIC_LOSS_RATIO * floor],
        why="the bound 1/2 holds, but training did not reach the isotonic limit (sup error or "
            "final loss away from the projection's)." if all(v >= MONOTONE_SUP_BOUND for v in sups)
        else "a non-augmented fit came closer to $x^2$ than any monotone map can."))

    changes = m1["augmented_jacobian_sign_changes_at"]
    claims.append(Claim.check(
        f"An augmented neural ODE ($m = {m1['state_sizes'][1]} \\ge d + q = 2$) can represent "
        "$x^2$, interior minimum included (universal embedding).",
        "Kuehn & Kuntz, arXiv 2308.01213 (universal embedding: $m \\ge d + q$ represents every "
        "smooth map exactly); the mission's paper, dynamics on the network",
        f"sup error $\\le$ {AUGMENTED_SUP_TOL:g} and exactly one sign change of $\\Phi'$, within "
        f"{AUGMENTED_CRITICAL_TOL:g} of $x = 0$",
        f"sup error {m1['sup_error_augmented']:.3g}; $\\Phi'$ changes sign at "
        + (", ".join(f"{v:.4f}" for v in changes) or "no point"),
        [m1["sup_error_augmented"] <= AUGMENTED_SUP_TOL,
         len(changes) == 1 and abs(changes[0]) <= AUGMENTED_CRITICAL_TOL],
        why="the trained augmented model did not fit $x^2$ (or its minimum) to the tolerance in "
            "this budget."))

    cp_non = m2["critical_points_non_augmented"]
    disk = m2["sup_error_unit_disk_non_augmented"]
    claims.append(Claim.check(
        "In 2-D ($d = m = 2$, $q = 1$) a non-augmented neural ODE has no critical point, so on "
        "the unit disk its sup error against $x_1^2 + x_2^2$ is at least 1/2 (its minimum over "
        "the closed disk lies on the circle).",
        "Kuehn & Kuntz, arXiv 2405.09351 (Morse classification); the mission's paper, dynamics on "
        "the network",
        f"Newton's method from {cfg.n_starts} starts finds no critical point in $[-1, 1]^2$, and "
        f"the sup error on the unit disk is $\\ge$ {MONOTONE_SUP_BOUND:g} ({cfg.n_eval_2d}$^2$ "
        "grid)",
        f"{cp_non['n_points']} critical point(s) ({cp_non['n_converged']}/{cp_non['n_starts']} "
        f"starts converged; the same search finds "
        f"{m2['critical_points_target']['n_points']} of the target); sup error on the disk "
        f"{disk:.3f}",
        [cp_non["n_points"] == 0, disk >= MONOTONE_SUP_BOUND],
        why="Newton's method found a critical point of a non-augmented model, or it fitted the "
            "bowl better than a map without critical points can."))

    cp_aug = m2["critical_points_augmented"]
    pts, idx = cp_aug["points"], cp_aug["morse_indices"]
    dist = max(abs(v) for v in pts[0]) if len(pts) == 1 else float("inf")
    claims.append(Claim.check(
        f"The augmented model ($m = {m2['state_sizes'][1]} = d + q$, {m2['augmented_model']}) "
        "represents $x_1^2 + x_2^2$ and keeps its critical point: one minimum (Morse index 0) "
        "at the origin.",
        "Kuehn & Kuntz, arXiv 2308.01213 (universal embedding) and 2405.09351 (augmented models "
        "are Morse for generic weights)",
        f"sup error $\\le$ {cfg.sup_tol_augmented_2d:g} on the {cfg.n_eval_2d}$^2$ grid, and "
        f"exactly one critical point, of index 0, within {cfg.point_tol_augmented_2d:g} of the "
        "origin (max norm)",
        f"sup error {m2['sup_error_augmented']:.3g}; {cp_aug['n_points']} critical point(s)"
        + (f", index {idx[0]} at ({pts[0][0]:.2g}, {pts[0][1]:.2g})" if len(pts) == 1 else ""),
        [m2["sup_error_augmented"] <= cfg.sup_tol_augmented_2d,
         len(pts) == 1 and idx[0] == 0 and dist <= cfg.point_tol_augmented_2d],
        why="the augmented model missed the bowl (or its minimum) by more than the tolerance."))
    return tuple(claims)


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over its stages (1-D fits, 2-D fits, critical points) and one per fit."""
    cfg = QUICK if quick else FULL
    key_1d, key_2d = jax.random.split(jax.random.key(seed))
    timings: dict[str, float] = {}
    with stages(progress, 3, NAME) as stage:
        stage("1-D fits")
        m1, fig1, losses1, floor = _part_1d(cfg, key_1d, progress, timings)
        stage("2-D fits")
        m2, fig2, losses2 = _part_2d(cfg, key_2d, progress, timings, stage)
    fig3 = plot_losses({**losses1, **losses2}, title="Training loss (Adam, cosine decay)",
                       hlines={"monotone-map floor (1-D data; the 1-D non-augmented loss "
                               "reaches it)": floor}, xlabel="Adam step",
                       ylabel=r"training loss $\frac{1}{2n}\sum_i (\Phi(x_i) - y_i)^2$")

    summary = _summary(cfg, m1, m2)
    metrics = {
        "quick": quick,
        "seed": seed,
        "1d": m1,
        "2d": m2,
        "config": dataclasses.asdict(cfg),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    return ExperimentResult(NAME, TITLE, summary, metrics,
                            {"fits_1d": fig1, "level_sets_2d": fig2, "losses": fig3},
                            question=QUESTION, claims=_claims(cfg, metrics))
