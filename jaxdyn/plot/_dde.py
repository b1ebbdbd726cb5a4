"""Figures for neural DDEs and memory capacity (matplotlib imported inside functions)."""

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ._plots import _axes, _vector


def _capacity_e(r: Mapping) -> float:
    return float(r["K_tau_e"]) if "K_tau_e" in r else float(r["K_tau"]) * math.e


def _runs_by_variant(runs: Sequence[Mapping]) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault(r.get("variant", ""), []).append(r)
    return {k: sorted(v, key=_capacity_e) for k, v in out.items()}


_VARIANT_STYLES = ({"marker": "o", "ls": "-", "ms": 7},
                   {"marker": "s", "ls": "--", "ms": 4, "mfc": "none"},
                   {"marker": "^", "ls": ":", "ms": 5, "mfc": "none"},
                   {"marker": "D", "ls": "-.", "ms": 4, "mfc": "none"})


def _coinciding(groups: dict, key: str) -> list[float]:
    r"""The capacities $K\tau e$ at which runs of different variants give the same `key` and the
    same capacity (to 1e-9): their markers sit on each other."""
    seen: dict = {}
    same = set()
    for rs in groups.values():
        for r in rs:
            ce = _capacity_e(r)
            for other_ce, other_v in seen.items():
                if (abs(other_ce - ce) <= 1e-9 * max(1.0, abs(ce))
                        and abs(other_v - float(r[key])) <= 1e-9 * max(1.0, abs(float(r[key])))):
                    same.add(round(ce, 6))
        for r in rs:
            seen[_capacity_e(r)] = float(r[key])
    return sorted(same)


def plot_memory_sweep(runs: Sequence[Mapping], *, axes=None, monotone_bound: float | None = 0.5,
                      isotonic_limit: float | None = 0.75, title: str | None = None):
    r"""Sup error and number of interior critical points against $K\tau e$ ($K\tau$ the memory
    capacity).

    **Arguments:**

    - `runs`: a sequence of dicts, one per trained model, with keys `"K_tau_e"` (or `"K_tau"`),
      `"sup_error"`, `"n_critical_points"` and optionally `"variant"` (one line per variant, each
      with its own marker and dashes, so that runs that coincide stay visible; the legend names
      the capacities where they coincide).
    - `axes`: two matplotlib axes to draw into (default: a new figure with two panels).
    - `monotone_bound`, `isotonic_limit`: labelled horizontal reference lines on the error panel
      (`None` skips one).
    - `title`: a figure title.

    The threshold $K\tau e = 1$ of the theorem is a labelled vertical dashed line; the legends go
    below the axes.

    **Returns:** the matplotlib `Figure`.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from ._plots import _legend_outside

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    else:
        fig = axes[0].figure
    ax0, ax1 = axes
    groups = _runs_by_variant(runs)
    for i, (variant, rs) in enumerate(groups.items()):
        ce = np.array([_capacity_e(r) for r in rs], dtype=float)
        style = dict(_VARIANT_STYLES[i % len(_VARIANT_STYLES)])
        label = f"variant {variant!r}" if variant else None
        (line,) = ax0.plot(ce, [r["sup_error"] for r in rs], label=label, **style)
        ax1.plot(ce, [r["n_critical_points"] for r in rs], label=label, color=line.get_color(),
                 **style)
    for ax, key in ((ax0, "sup_error"), (ax1, "n_critical_points")):
        ax.axvline(1.0, color="black", ls="--", lw=1, label=r"$K\tau e = 1$ (theorem's threshold)")
        same = _coinciding(groups, key) if len(groups) > 1 else []
        if same:
            ax.plot([], [], ls="none", label="variants coincide at $K\\tau e$ = "
                    + ", ".join(f"{v:.3g}" for v in same) + " (cap not binding)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(r"$K\tau e$ ($K\tau$: memory capacity of the trained model)")
        ax.grid(alpha=0.3)
    if monotone_bound is not None:
        ax0.axhline(monotone_bound, color="tab:red", ls=":", lw=1.2,
                    label=f"{monotone_bound:g}: sup-error bound of monotone maps")
    if isotonic_limit is not None:
        ax0.axhline(isotonic_limit, color="grey", ls="-.", lw=1.2,
                    label=f"{isotonic_limit:g}: isotonic projection (least-squares monotone fit)")
    ax0.set_yscale("log")
    ax0.set_ylabel(r"sup error $\max_x |\Phi(x) - x^2|$")
    ax0.set_title("Sup error against $x^2$ on $[-1, 1]$")
    ax1.set_ylabel(r"interior critical points of $\Phi$ (count)")
    ax1.yaxis.get_major_locator().set_params(integer=True)
    ax1.set_title(r"Sign changes of $\Phi'$ on the grid")
    _legend_outside(ax0, "below")
    _legend_outside(ax1, "below")
    if title:
        fig.suptitle(title)
    return fig


def plot_dde_fits(x, target, runs: Sequence[Mapping], *, axes=None, target_label: str = "$x^2$"):
    r"""The fitted 1-D maps of a memory-capacity sweep against the target, one panel per variant.

    **Arguments:**

    - `x`, `target`: the evaluation grid and the target on it, shape `(n,)`.
    - `runs`: dicts with `"pred"` (values on `x`), `"K_tau_e"`, `"sup_error"` and optionally
      `"variant"`.
    - `axes`: a sequence of axes, one per variant (default: a new figure).

    The legends go below the axes.

    **Returns:** the matplotlib `Figure`.
    """
    import matplotlib.pyplot as plt

    from ._plots import _legend_outside

    x = _vector(x, "x")
    target = _vector(target, "target", x.shape[0])
    groups = _runs_by_variant(runs)
    if axes is None:
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 5.0),
                                 layout="constrained", squeeze=False)
        axes = axes[0]
    else:
        fig, _ = _axes(axes[0])
    cmap = plt.get_cmap("viridis")
    for ax, (variant, rs) in zip(axes, groups.items(), strict=False):
        ax.plot(x, target, color="black", lw=2.5, alpha=0.4, label=target_label)
        for i, r in enumerate(rs):
            pred = _vector(r["pred"], "pred", x.shape[0])
            ax.plot(x, pred, color=cmap(0.9 * i / max(1, len(rs) - 1)),
                    label=rf"$K\tau e$ = {_capacity_e(r):.2g}, sup error {r['sup_error']:.2f}")
        ax.set_xlabel("$x$")
        ax.set_ylabel(r"$\Phi(x) = h(T)$")
        ax.set_title(f"Fitted maps (variant {variant!r})" if variant else "Fitted maps")
        _legend_outside(ax, "below", ncols=2)
        ax.grid(alpha=0.3)
    return fig


def plot_dde_solution(sol, ax=None, *, n_points: int = 400, **kwargs):
    r"""The trajectories of a [`DDESolution`][jaxdyn.dde.DDESolution] against time, every component
    of the state (and every member of a `solve_batch` state) one line.

    The saved times are drawn when there are at least two; otherwise (`saveat` left at $t_1$) the
    dense output on `n_points` times of $[t_0, t_1]$ (up to the failure when there is one). A failure
    time is marked by a dotted red line. `kwargs` go to `ax.plot`.

    **Returns:** the axes.
    """
    import equinox as eqx

    ts = np.asarray(sol.ts)
    if ts.ndim != 1:
        raise ValueError("`plot` draws one solution: index one member of a vmapped batch first "
                         "(`jax.tree_util.tree_map(lambda x: x[i], sol)`).")
    _, ax = _axes(ax)
    failed_time = float(np.asarray(sol.failed_time))
    if ts.size >= 2:
        times, ys = ts, np.asarray(sol.ys)
    else:
        t0, t1 = float(np.asarray(sol.t0)), float(np.asarray(sol.t1))
        end = failed_time if np.isfinite(failed_time) else t1
        times = np.linspace(t0, end, n_points)
        ys = np.asarray(eqx.filter_jit(type(sol).evaluate)(sol, times))
    ys = ys.reshape(times.shape[0], -1)
    ax.plot(times, ys, **kwargs)
    if np.isfinite(failed_time):
        ax.axvline(failed_time, color="tab:red", ls=":", lw=1, label=f"failure at t = {failed_time:.4g}")
        ax.legend(fontsize="small")
    ax.set_xlabel("$t$")
    ax.set_ylabel("$y(t)$")
    ax.set_title("Delay equation: solution")
    ax.grid(alpha=0.3)
    return ax


def plot_memory_capacity(res, ax=None, **kwargs):
    r"""A [`MemoryCapacityResult`][jaxdyn.models.MemoryCapacityResult]: $K\tau$ (one marker per
    model of a batch) on a log axis, the threshold $K\tau e = 1$ dashed and the side where the
    theorem's hypothesis holds shaded. `kwargs` go to `ax.plot`.

    **Returns:** the axes.
    """
    _, ax = _axes(ax, figsize=(5.0, 2.2))
    capacity = np.ravel(np.asarray(res.capacity)).astype(float)
    threshold = 1 / math.e
    finite = capacity[np.isfinite(capacity) & (capacity > 0)]
    lo = min([threshold, *finite]) / 10
    hi = max([threshold, *finite]) * 10
    ax.axvspan(lo, threshold, color="tab:green", alpha=0.12, label=r"$K\tau e < 1$ (hypothesis holds)")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=r"$K\tau e = 1$")
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("ls", "none")
    ax.plot(capacity, np.zeros_like(capacity), label=r"$K\tau$", **kwargs)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_yticks([])
    ax.set_xlabel(r"memory capacity $K\tau_{\max}$")
    ax.set_title("Memory capacity against the threshold $K\\tau e = 1$")
    ax.legend(fontsize="small", loc="upper right")
    return ax
