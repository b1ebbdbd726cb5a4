r"""Memory capacity of non-augmented neural DDEs (Kuehn & Kuntz, arXiv 2505.07244).

A one-dimensional neural DDE ($d = m = q = 1$, identity lift and readout)
$h'(t) = f_\theta(h(t), h(t - \tau))$ on $[0, T]$ with the constant history $h = x$ on
$[-\tau, 0]$ defines a map $\Phi(x) = h(T)$. Its memory capacity is $K\tau$, $K$ a Lipschitz bound
of $f_\theta$ in the delayed argument ([`jaxdyn.models.memory_capacity`][]). For $K\tau e < 1$ (the
hypothesis of the theorem, `K_tau_e_below_one`) the solutions are attracted, as $t \to \infty$, to
ODE-like special solutions; the question measured here is whether the trained map $\Phi$ at the
finite $T$ then shows the limits of non-augmented neural ODEs: $\Phi$ monotone, no interior critical
point, sup error against $x^2$ on $[-1, 1]$ at least $1/2$ (a least-squares fit tends to the
isotonic projection, sup error $3/4$). The report keeps the two apart: `K tau e < 1` is the
hypothesis (about the bound $K$), `monotone` is measured (the sign of $\Phi'$ on a grid). For large
$K\tau$ it approximates universally.

We fix $\tau = T = 1$ (so $h(t - \tau) = x$ on the whole interval: the delayed argument carries the
input, like an augmented coordinate) and control $K$ by **weight normalisation**: the first-layer
weights of a [`jaxdyn.models.DelayMLPField`][] are rescaled by $\min(1, K_{\max}/\text{bound})$ in
every evaluation, so the Lipschitz bound never exceeds the cap $K_{\max}$. Two variants:

- `"delay"`: only the columns that read the delayed input are rescaled, so the bound $K$ of
  [`memory_capacity`][] (delayed argument only) is $\le K_{\max}$ while the dependence on $h(t)$
  stays free;
- `"full"`: all first-layer columns are rescaled, so the Lipschitz bound of $f$ in $(h, h_\tau)$
  jointly is $\le K_{\max}$ (and hence also $K$).

The delays are frozen during training (an `optax.multi_transform`); one optimiser object serves all
fits, so each variant compiles once.
"""

import dataclasses
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import models as jm
from ..dde import RK4
from ..plot import plot_dde_fits, plot_losses, plot_memory_sweep
from ._progress import stages
from ._result import Claim, ExperimentResult

NAME = "dde-memory"
TITLE = ("Memory capacity of non-augmented neural DDEs: ODE-like below $K\\tau e = 1$, universal "
         "above")

MONOTONE_SUP_BOUND = 0.5
"""Every monotone map has sup error >= 1/2 against x^2 on [-1, 1] (claim 1's bound)."""
ISOTONIC_SUP_LIMIT = 0.75
"""Sup error of the L2 isotonic projection of x^2 on [-1, 1]."""
UNIVERSAL_SUP_TOL = 0.1
"""Claim 3: the largest-capacity fit of each variant must reach a sup error at most this."""

QUESTION = ("Does a non-augmented 1-D neural DDE behave like a neural ODE (monotone map, no "
            "interior critical point, sup error against $x^2$ at least 1/2) when its memory "
            "capacity satisfies $K\\tau e < 1$, and fit $x^2$ when $K\\tau$ is large?")


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    capacities_e: tuple = (0.5, 2.0, 8.0, 32.0)  # caps on K tau e
    variants: tuple = ("delay", "full")  # see the module docstring
    tau: float = 1.0
    t1: float = 1.0
    n_steps: int = 20  # fixed-step RK4 on [0, T]
    width: int = 16
    depth: int = 2
    lr: float = 1e-2  # Adam, cosine decay
    steps: int = 800
    n_train: int = 48
    n_eval: int = 801


QUICK = Config()
FULL = Config(capacities_e=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0, 32.0),
              steps=2000)


class CappedDelayField(jm.AbstractDelayField):
    r"""A [`DelayMLPField`][jaxdyn.models.DelayMLPField] whose Lipschitz bound is capped at `cap`.

    In every call the first-layer weights are multiplied by $\min(1, \text{cap}/\text{bound})$:
    with `delay_only=True` only the columns of the delayed inputs, `bound` the field's
    `delay_lipschitz()`; else all columns, `bound` the joint Lipschitz bound in $(h, h_\tau)$. The
    cap is an array leaf (so caps do not recompile); freeze it in training.
    """

    inner: jm.DelayMLPField
    cap: jax.Array
    delay_only: bool = eqx.field(static=True)
    size: int = eqx.field(static=True)
    n_delays: int = eqx.field(static=True)

    def __init__(self, inner: jm.DelayMLPField, cap, *, delay_only: bool):
        self.inner = inner
        self.cap = jnp.asarray(cap, dtype=float)
        self.delay_only = bool(delay_only)
        self.size = inner.size
        self.n_delays = inner.n_delays

    def _later(self, f):
        norms = [jnp.linalg.norm(layer.weight, ord=2) for layer in f.mlp.layers[1:]]
        depth = len(f.mlp.layers) - 1
        return abs(f.scale) * f.activation_lipschitz**depth * jnp.prod(jnp.stack(norms))

    def joint_lipschitz(self) -> jax.Array:
        """A Lipschitz bound of the (capped) field in all its inputs jointly."""
        f = self.effective()
        return self._later(f) * jnp.linalg.norm(f.mlp.layers[0].weight, ord=2)

    def effective(self) -> jm.DelayMLPField:
        f = self.inner
        w = f.mlp.layers[0].weight
        offset = f.size + (1 if f.time_dependent else 0)
        if self.delay_only:
            bound = f.delay_lipschitz()
        else:
            bound = self._later(f) * jnp.linalg.norm(w, ord=2)
        factor = jnp.minimum(1.0, self.cap / bound)
        if self.delay_only:
            w = w.at[:, offset:].multiply(factor)
        else:
            w = w * factor
        return eqx.tree_at(lambda g: g.mlp.layers[0].weight, f, w)

    def __call__(self, t, h, h_delayed, args=None):
        return self.effective()(t, h, h_delayed, args)

    def delay_lipschitz(self) -> jax.Array:
        return self.effective().delay_lipschitz()


def make_model(cap: float, variant: str, cfg: Config, *, key) -> jm.NeuralDDE:
    """A 1-D non-augmented neural DDE (identity lift and readout) with a capped field."""
    inner = jm.DelayMLPField(1, cfg.width, cfg.depth, 1, key=key)
    field = CappedDelayField(inner, cap, delay_only=(variant == "delay"))
    return jm.NeuralDDE(field, jnp.array([cfg.tau]), t1=cfg.t1,
                        stepping=jm.FixedStep(cfg.n_steps, RK4))


def _labels(params):
    labels = jax.tree_util.tree_map(lambda _: "train", params)
    return eqx.tree_at(lambda m: (m.delays, m.field.cap), labels, ("freeze", "freeze"))


def make_optimizer(cfg: Config) -> optax.GradientTransformation:
    """Adam with cosine decay on the weights; the delays and the cap are frozen."""
    adam = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.steps))
    return optax.multi_transform({"train": adam, "freeze": optax.set_to_zero()}, _labels)


def _value_and_derivative(model, x):
    phi = lambda s: model(jnp.reshape(s, (1,)))[0]
    return jax.value_and_grad(phi)(x)


@eqx.filter_jit
def _evaluate(model, x):
    return jax.vmap(lambda s: _value_and_derivative(model, s))(x)


def _sign_changes(v: np.ndarray) -> np.ndarray:
    s = np.sign(v)
    return np.flatnonzero(s[1:] * s[:-1] < 0)


def sweep(cfg: Config, key, *, progress: bool = False, timings: dict | None = None) -> list[dict]:
    """Train one model per (variant, cap) and measure it; returns a list of per-model dicts.
    `progress`: a bar over the fits (and each fit's own bar)."""
    timings = {} if timings is None else timings
    xs = jnp.linspace(-1.0, 1.0, cfg.n_train)[:, None]
    ys = xs**2
    x = np.linspace(-1.0, 1.0, cfg.n_eval)
    target = x**2
    optimizer = make_optimizer(cfg)
    runs = []
    with stages(progress, len(cfg.variants) * len(cfg.capacities_e), NAME, unit="fit") as stage:
        for variant in cfg.variants:
            for i, ce in enumerate(cfg.capacities_e):
                stage(f"{variant}, K tau e <= {ce:g}")
                runs.append(_fit_one(cfg, variant, i, ce, key, optimizer, xs, ys, x, target,
                                     progress, timings))
    return runs


def _fit_one(cfg, variant, i, ce, key, optimizer, xs, ys, x, target, progress, timings):
    """Train and measure the model of one (variant, cap)."""
    cap = ce / (cfg.tau * math.e)
    model = make_model(cap, variant, cfg, key=jax.random.fold_in(key, i))
    t0 = time.perf_counter()
    res = jm.fit(model, xs, ys, n_steps=cfg.steps, optimizer=optimizer, progress=progress,
                 desc=f"{variant} K tau e <= {ce:g}")
    timings[f"fit_{variant}_{ce:g}"] = round(time.perf_counter() - t0, 2)
    model = res.model
    pred, deriv = (np.asarray(a) for a in _evaluate(model, jnp.asarray(x)))
    mc = jm.memory_capacity(model)
    K = float(mc.lipschitz)
    tau = float(mc.max_delay)
    changes = _sign_changes(deriv)
    return {
        "variant": variant,
        "cap_K_tau_e": ce,
        "K": K,
        "tau": tau,
        "K_tau": K * tau,
        "K_tau_e": K * tau * math.e,
        "K_tau_e_below_one": bool(mc.K_tau_e_below_one),  # the theorem's hypothesis (about K)
        "joint_lipschitz": float(model.field.joint_lipschitz()),
        "sup_error": float(np.max(np.abs(pred - target))),
        "rms_error": float(np.sqrt(np.mean((pred - target) ** 2))),
        "final_loss": float(res.losses[-1]),
        "n_critical_points": int(changes.size),
        "critical_points_at": [float(0.5 * (x[j] + x[j + 1])) for j in changes],
        "monotone": bool(np.all(deriv > 0) or np.all(deriv < 0)),  # measured on the grid
        "derivative_range": [float(deriv.min()), float(deriv.max())],
        "pred": pred,
        "losses": np.asarray(res.losses),
    }


def _transition(runs: list[dict], variant: str) -> str:
    rs = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["K_tau_e"])
    good = [r["K_tau_e"] for r in rs if r["sup_error"] < 0.1]
    crit = [r["K_tau_e"] for r in rs if r["n_critical_points"] > 0]
    mono = [r["K_tau_e"] for r in rs if r["monotone"]]
    parts = []
    parts.append(f"monotone up to $K\\tau e$ = {max(mono):.3g}" if mono else "never monotone")
    parts.append(f"first interior critical point at $K\\tau e$ = {min(crit):.3g}" if crit
                 else "no interior critical point at any capacity")
    parts.append(f"sup error < 0.1 from $K\\tau e$ = {min(good):.3g}" if good
                 else "sup error never below 0.1")
    return "; ".join(parts)


def _same_model(a: dict, b: dict) -> bool:
    """Two runs that trained the same model (a cap that does not bind, same initialisation)."""
    return all(abs(a[k] - b[k]) <= 1e-12 * max(1.0, abs(a[k]))
               for k in ("K_tau_e", "sup_error", "final_loss", "joint_lipschitz"))


def _coinciding_runs(runs: list[dict]) -> list[tuple[dict, dict]]:
    return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
            if a["variant"] != b["variant"] and a["cap_K_tau_e"] == b["cap_K_tau_e"]
            and _same_model(a, b)]


def _summary(cfg: Config, runs: list[dict]) -> str:
    rows = ["| variant | cap on $K\\tau e$ | $K\\tau$ (trained) | $K\\tau e$ | $K\\tau e < 1$ "
            "(hypothesis) | joint Lipschitz bound | sup error | interior critical points | "
            "monotone (measured) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        rows.append(f"| {r['variant']} | {r['cap_K_tau_e']:g} | {r['K_tau']:.3f} | "
                    f"{r['K_tau_e']:.3f} | {'yes' if r['K_tau_e_below_one'] else 'no'} | "
                    f"{r['joint_lipschitz']:.3f} | {r['sup_error']:.3f} | "
                    f"{r['n_critical_points']} | {'yes' if r['monotone'] else 'no'} |")
    same = _coinciding_runs(runs)
    note = ""
    if same:
        note = ("\n\nRows " + "; ".join(
            f"{a['variant']} and {b['variant']} at cap {a['cap_K_tau_e']:g}" for a, b in same)
            + " are the same trained model: both variants start from the same initialisation, "
            "and a cap that does not bind changes nothing (the figures draw them with different "
            "markers and dashes, or in separate panels).")
    paras = [
        f"**Setup.** $\\tau = {cfg.tau:g}$, $T = {cfg.t1:g}$, constant history $h = x$, MLP field of "
        f"width {cfg.width} and depth {cfg.depth} with its first-layer weights rescaled so that the "
        "Lipschitz bound stays below a cap (variant `full`: jointly in $(h, h_\\tau)$; variant "
        "`delay`: in the delayed argument only, the $K$ of `memory_capacity`), fixed-step RK4 with "
        f"{cfg.n_steps} steps, {cfg.n_train} training points, {cfg.steps} Adam steps (cosine decay "
        f"from {cfg.lr:g}), delays frozen. $K$ is `memory_capacity(model).lipschitz` at the trained "
        "weights; critical points are sign changes of $\\Phi'$ (`jax.grad` through the solver) on "
        f"{cfg.n_eval} points of $[-1, 1]$.",
        "\n".join(rows) + note,
    ]
    for v in cfg.variants:
        small = [r for r in runs if r["variant"] == v and r["K_tau_e_below_one"]]
        note = ""
        if small:
            note = (" Runs with $K\\tau e < 1$: sup errors "
                    + ", ".join(f"{r['sup_error']:.3f}" for r in small)
                    + f" (all $\\ge 1/2$: "
                    f"{'yes' if all(r['sup_error'] >= MONOTONE_SUP_BOUND for r in small) else 'no'})"
                    ", monotone: " + ", ".join("yes" if r["monotone"] else "no" for r in small)
                    + ", min of $\\Phi'$: "
                    + ", ".join(f"{r['derivative_range'][0]:.3g}" for r in small) + ".")
        paras.append(f"**Transition ({v}).** " + _transition(runs, v) + "." + note)
    paras.append(
        "**Reading.** The bound $K$ is an upper bound of the true Lipschitz constant, so "
        "$K\\tau e < 1$ is sufficient for ODE-like behaviour in the theory, not necessary; and what "
        "it proves is asymptotic attraction to ODE-like solutions, not a monotone $\\Phi$ at "
        "$T = \\tau$: the column $K\\tau e < 1$ is the hypothesis, `monotone` what was measured. "
        "With only the delayed Lipschitz constant capped (`delay`), the dependence on "
        "$h(t)$ is free and can contract strongly: $h' = -M(h - g(x))$ gives "
        "$\\Phi'(x) = e^{-M} + (1 - e^{-M}) g'(x)$, which vanishes for a delayed Lipschitz constant "
        "$M|g'| = M/(e^M - 1)$, arbitrarily small for large $M$. So a capped $K$ alone does not force "
        "monotonicity at finite $T$; such fits stay near-flat (sup error still $\\ge 1/2$). With the "
        "joint Lipschitz bound capped (`full`), $K\\tau e < 1$ does force $\\Phi' > 0$ "
        "($e^{-K} > K e^{K}$ for $K \\le 1/e$, $T = \\tau = 1$).")
    return "\n\n".join(paras) + "\n"


SOURCE = ("Kuehn & Kuntz, arXiv 2505.07244 (neural DDEs, memory capacity $K\\tau$); the mission's "
          "paper (Chemnitz, Engel, Kuehn, Kuntz 2025), neural DDEs as the infinite-depth limit of "
          "DenseResNets")


def _claims(cfg: Config, runs: list[dict]) -> tuple[Claim, ...]:
    """The experiment's claims, judged on the per-run metrics `runs` (dicts with `variant`,
    `K_tau_e`, `K_tau_e_below_one`, `sup_error`, `n_critical_points`, `derivative_range`) with
    the criteria fixed in this module."""
    small = [r for r in runs if r["K_tau_e_below_one"]]

    def runs_text(rs, what):
        return "; ".join(f"{r['variant']} at $K\\tau e$ = {r['K_tau_e']:.3g}: {what(r)}"
                         for r in rs) or "no run has $K\\tau e < 1$"

    claims = [Claim.check(
        "With memory capacity $K\\tau e < 1$ a non-augmented neural DDE inherits the limits of "
        "non-augmented neural ODEs: it cannot approximate a non-degenerate extremum, so its sup "
        "error against $x^2$ on $[-1, 1]$ is at least 1/2 (the bound of monotone maps).",
        SOURCE,
        f"every trained run with $K\\tau e < 1$ (both variants): sup error $\\ge$ "
        f"{MONOTONE_SUP_BOUND:g} on {cfg.n_eval} points",
        runs_text(small, lambda r: f"sup error {r['sup_error']:.3f}"),
        [r["sup_error"] >= MONOTONE_SUP_BOUND for r in small] or False,
        why=("no run satisfied the hypothesis $K\\tau e < 1$." if not small else
             "a run with $K\\tau e < 1$ came closer to $x^2$ than any monotone map can."))]

    claims.append(Claim.check(
        "With $K\\tau e < 1$ the map $\\Phi(x) = h(T)$ behaves like a non-augmented neural ODE: "
        "no interior critical point ($\\Phi'$ of one sign, $\\Phi$ monotone).",
        SOURCE + "; the ODE-like special solutions attract as $t \\to \\infty$",
        f"every trained run with $K\\tau e < 1$: $\\Phi'$ (`jax.grad` through the solver) of one "
        f"sign on {cfg.n_eval} points of $[-1, 1]$ at $T = {cfg.t1:g}$",
        runs_text(small, lambda r: "min/max of $\\Phi'$ "
                  f"{r['derivative_range'][0]:.3g}/{r['derivative_range'][1]:.3g}, "
                  f"{r['n_critical_points']} interior critical point(s)"),
        [r["n_critical_points"] == 0 and r["derivative_range"][0] * r["derivative_range"][1] > 0
         for r in small] or False,
        why=("no run satisfied the hypothesis $K\\tau e < 1$." if not small else
             "with only the delayed Lipschitz constant capped (variant `delay`) the dependence on "
             "$h(t)$ is free, and at the finite $T = \\tau$ the map can have a flat interior "
             "critical point: the theorem's attraction is asymptotic in $t$, not a statement "
             "about $\\Phi$ at $T = \\tau$.")))

    top = {}
    for r in runs:
        if r["variant"] not in top or r["K_tau_e"] > top[r["variant"]]["K_tau_e"]:
            top[r["variant"]] = r
    claims.append(Claim.check(
        "For large memory capacity $K\\tau$ non-augmented neural DDEs approximate universally: "
        "they fit $x^2$, interior minimum included.",
        SOURCE,
        f"the run with the largest $K\\tau e$ of each variant: sup error $\\le$ "
        f"{UNIVERSAL_SUP_TOL:g} and at least one interior critical point",
        "; ".join(f"{v} at $K\\tau e$ = {r['K_tau_e']:.3g}: sup error {r['sup_error']:.3f}, "
                  f"{r['n_critical_points']} interior critical point(s)" for v, r in top.items())
        + (" (the same trained model: the cap does not bind)"
           if len(top) == 2 and _same_model(*top.values()) else ""),
        [r["sup_error"] <= UNIVERSAL_SUP_TOL and r["n_critical_points"] >= 1 for r in top.values()],
        why="the largest capacity tried was not enough for this training budget to fit $x^2$."))
    return tuple(claims)


def _losses_figure(runs: list[dict], variants) -> "object":
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 5.2),
                             layout="constrained", sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, v in zip(axes[0], variants, strict=True):
        rs = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["K_tau_e"])
        losses, styles = {}, {}
        for i, r in enumerate(rs):
            label = f"$K\\tau e$ = {r['K_tau_e']:.2g} (cap {r['cap_K_tau_e']:g})"
            losses[label] = r["losses"]
            styles[label] = dict(color=cmap(0.9 * i / max(1, len(rs) - 1)))
        plot_losses(losses, ax=ax, styles=styles, legend="below",
                    title=f"Training loss (variant {v!r})", xlabel="Adam step",
                    ylabel=r"training loss $\frac{1}{2n}\sum_i (\Phi(x_i) - x_i^2)^2$")
        if ax is not axes[0][0]:
            ax.set_ylabel("")
    return fig


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over the fits."""
    cfg = QUICK if quick else FULL
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    runs = sweep(cfg, jax.random.key(seed), progress=progress, timings=timings)
    timings["total"] = round(time.perf_counter() - t0, 2)
    x = np.linspace(-1.0, 1.0, cfg.n_eval)
    fig_sweep = plot_memory_sweep(runs, monotone_bound=MONOTONE_SUP_BOUND,
                                  isotonic_limit=ISOTONIC_SUP_LIMIT)
    fig_fits = plot_dde_fits(x, x**2, runs)
    fig_losses = _losses_figure(runs, cfg.variants)
    public = [{k: v for k, v in r.items() if k not in ("pred", "losses")} for r in runs]
    metrics = {
        "quick": quick,
        "seed": seed,
        "runs": public,
        "transition": {v: _transition(runs, v) for v in cfg.variants},
        "sup_error_bound_monotone": MONOTONE_SUP_BOUND,
        "sup_error_isotonic_limit": ISOTONIC_SUP_LIMIT,
        "config": dataclasses.asdict(cfg),
        "timings_s": timings,
    }
    return ExperimentResult(NAME, TITLE, _summary(cfg, runs), metrics,
                            {"sweep": fig_sweep, "fits": fig_fits, "losses": fig_losses},
                            question=QUESTION, claims=_claims(cfg, public))
