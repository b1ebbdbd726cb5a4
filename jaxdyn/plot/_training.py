"""Figures for training dynamics: sharpness against 2/eta, losses, the distance between gradient
descent and gradient flow, and where GD settles on the hyperbola of minima.

matplotlib is imported only when a function draws.
"""

from collections.abc import Mapping

import numpy as np

from ._plots import _axes


def _runs(results, name: str) -> dict:
    if not isinstance(results, Mapping) or not results:
        raise ValueError(f"`{name}` must be a non-empty dict from a label to a TrainResult.")
    return dict(results)


def _legend_outside(ax, **kwargs) -> None:
    """The legend to the right of the axes, off the data."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              **kwargs)


def plot_sharpness(results: Mapping, *, ax=None, title: str | None = None, log: bool = False):
    r"""Sharpness $S = \lambda_{\max}(H)$ against the step, one line per run (a dot at every
    tracked step), with the stability threshold $2/\eta$ of each run dashed in its colour and
    labelled (the edge of stability); the legend sits to the right of the axes.

    **Arguments:**

    - `results`: label -> [`jaxdyn.training.TrainResult`][] (from `train` with `lr` and
      `top_k >= 1`).
    - `ax`: draw into this axes (default: a new figure); `title`; `log`: logarithmic y axis.

    **Returns:** the matplotlib `Figure`.

    **Example:**

    ```python
    fig = plot_sharpness({f"eta = {lr}": train(..., lr=lr, top_k=1) for lr in (0.1, 0.2)})
    ```
    """
    results = _runs(results, "results")
    fig, ax = _axes(ax, figsize=(8.0, 4.2))
    for i, (label, res) in enumerate(results.items()):
        if res.sharpness is None:
            raise ValueError(f"`results[{label!r}]` has no sharpness (train with top_k >= 1).")
        (line,) = ax.plot(np.asarray(res.steps), np.asarray(res.sharpness), lw=1.3, marker=".",
                          ms=3.5, color=f"C{i}", label=label)
        if res.lr is not None:
            thr = 2.0 / float(res.lr)
            ax.axhline(thr, color=line.get_color(), ls="--", lw=1, alpha=0.8,
                       label=rf"$2/\eta$ = {thr:.3g} ({label})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("GD step $k$")
    ax.set_ylabel(r"sharpness $S = \lambda_{\max}(H)$")
    ax.set_title(title or "Progressive sharpening and the edge of stability")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return fig


def plot_training_loss(results: Mapping, *, ax=None, title: str | None = None, log: bool = True):
    """The loss at every step, one line per run (`TrainResult.losses`); a run with tracked
    sharpness and a step size gets a marker at its first tracked step with $S \\ge 2/\\eta$. The
    legend sits to the right of the axes.

    **Arguments:** `results`: label -> `TrainResult`; `ax`, `title`; `log`: logarithmic y axis.

    **Returns:** the matplotlib `Figure`.
    """
    results = _runs(results, "results")
    fig, ax = _axes(ax, figsize=(8.0, 4.2))
    for i, (label, res) in enumerate(results.items()):
        losses = np.asarray(res.losses, dtype=float)
        (line,) = ax.plot(np.arange(losses.size), losses, lw=1, color=f"C{i}", label=label)
        cross = _first_crossing(res)
        if cross is not None and cross < losses.size:
            ax.plot([cross], [losses[cross]], "o", ms=7, mfc="none", mec=line.get_color(), mew=1.5,
                    label=rf"{label}: $S$ first $\geq 2/\eta$")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("GD step $k$")
    ax.set_ylabel(r"training loss $L$ (MSE)")
    ax.set_title(title or "Loss: non-monotone, yet decreasing")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return fig


def _first_crossing(res) -> int | None:
    """The first tracked step with $S \\ge 2/\\eta$, or `None`."""
    if res.sharpness is None or res.lr is None:
        return None
    hit = np.flatnonzero(np.asarray(res.sharpness, dtype=float) >= 2.0 / float(res.lr))
    return int(np.asarray(res.steps)[hit[0]]) if hit.size else None


def plot_flow_distance(result, *, axes=None, ax=None, title: str | None = None):
    r"""GD against the gradient flow at matched times, in two panels sharing the step axis: the
    distance $\|\theta_{GD}(k) - \theta_{GF}(k\eta)\|_2$ (top, log scale) and the sharpness along
    both with the threshold $2/\eta$ (bottom); the first tracked step with $S \ge 2/\eta$ is a
    labelled dotted line in both. One quantity per axis; legends to the right of the axes.

    **Arguments:**

    - `result`: a `TrainResult` from `train(..., flow=...)`.
    - `axes`: two matplotlib axes to draw into (default: a new figure).
    - `ax`: one axes instead: only the distance panel is drawn there.
    - `title`: the figure title.

    **Returns:** the matplotlib `Figure`.
    """
    if result.flow_distance is None:
        raise ValueError("`result` has no gradient-flow reference (train with `flow=`).")
    if axes is not None and ax is not None:
        raise ValueError("pass `axes` (two axes) or `ax` (one), not both.")
    if ax is not None:
        fig, axes = ax.figure, [ax]
    elif axes is None:
        import matplotlib.pyplot as plt

        n = 2 if result.sharpness is not None else 1
        fig, axes = plt.subplots(n, 1, figsize=(8.0, 3.0 + 2.4 * n), sharex=True, layout="constrained",
                                 squeeze=False)
        axes = list(axes[:, 0])
    else:
        axes = list(np.asarray(axes, dtype=object).ravel())
        if len(axes) != 2:
            raise ValueError(f"`axes` must hold two axes, got {len(axes)}.")
        fig = axes[0].figure
    steps = np.asarray(result.steps)
    dist = np.asarray(result.flow_distance, dtype=float)
    ok = np.isfinite(dist) & (dist > 0)
    cross = _first_crossing(result)
    top = axes[0]
    top.plot(steps[ok], dist[ok], color="black", lw=1.6, marker=".", ms=4,
             label=r"$\|\theta_{GD}(k) - \theta_{GF}(k\eta)\|_2$")
    top.set_yscale("log")
    top.set_ylabel(r"distance GD to gradient flow $\|\Delta\theta\|_2$")
    if cross is not None:
        for a in axes:
            a.axvline(cross, color="red", ls=":", lw=1.2,
                      label=rf"$S$ first $\geq 2/\eta$ (step {cross})" if a is top else None)
    _legend_outside(top)
    top.grid(alpha=0.3)
    if len(axes) == 2 and result.sharpness is not None:
        bot = axes[1]
        bot.plot(steps, np.asarray(result.sharpness), color="C0", lw=1.3, marker=".", ms=3.5,
                 label="$S$ along GD")
        fs = np.asarray(result.flow_sharpness, dtype=float)
        keep = np.isfinite(dist)
        bot.plot(steps[keep], fs[keep], color="C1", lw=1.3, ls="--", marker="s", ms=3,
                 label="$S$ along the gradient flow")
        thr = 2.0 / float(result.lr)
        bot.axhline(thr, color="grey", ls="--", lw=1, label=rf"$2/\eta$ = {thr:.3g}")
        bot.set_ylabel(r"sharpness $S = \lambda_{\max}(H)$")
        _legend_outside(bot)
        bot.grid(alpha=0.3)
    axes[-1].set_xlabel(r"GD step $k$ (gradient-flow time $t = k\eta$)")
    eta = "" if result.lr is None else rf" ($\eta$ = {float(result.lr):g})"
    fig_title = title or "GD leaves the gradient-flow path at the edge of stability" + eta
    if len(axes) == 1:
        top.set_title(fig_title)
    else:
        fig.suptitle(fig_title)
    return fig


def plot_implicit_bias(endpoints: Mapping, *, ax=None, title: str | None = None,
                       lim: float = 3.0):
    r"""Where gradient descent settles on the hyperbola $w_1 w_2 = 1$ of minima of
    $(w_1 w_2 - 1)^2/2$, for several step sizes.

    Every converged run is a dot at its limit; the arcs where $a^2 + 1/a^2 \le 2/\eta$ (linearly
    stable for step $\eta$) are drawn thick in the colour of $\eta$ (none for $\eta > 1$). The
    legend sits to the right of the axes.

    **Arguments:**

    - `endpoints`: step size $\eta$ -> [`jaxdyn.training.GDEndpointsResult`][] of 2-vector runs.
    - `ax`, `title`; `lim`: the axes range $[-\text{lim}, \text{lim}]^2$.

    **Returns:** the matplotlib `Figure`.
    """
    if not isinstance(endpoints, Mapping) or not endpoints:
        raise ValueError("`endpoints` must be a non-empty dict from a step size to GDEndpointsResult.")
    fig, ax = _axes(ax, figsize=(8.2, 5.0))
    a = np.concatenate([-np.geomspace(lim, 1.0 / lim, 400), np.geomspace(1.0 / lim, lim, 400)])
    for sign in (-1, 1):
        part = a[np.sign(a) == sign]
        ax.plot(part, 1.0 / part, color="black", lw=0.8, alpha=0.5,
                label="minima $w_1 w_2 = 1$" if sign == 1 else None)
    for i, (eta, ends) in enumerate(sorted(endpoints.items(), key=lambda kv: float(kv[0]))):
        eta = float(eta)
        color = f"C{i}"
        w = np.asarray(ends.params, dtype=float).reshape(-1, 2)
        conv = np.asarray(ends.converged)
        stable = (a**2 + a**-2) <= 2.0 / eta
        arc = np.where(stable, a, np.nan)
        ax.plot(arc, 1.0 / arc, color=color, lw=5, alpha=0.3,
                label=(rf"$\eta$ = {eta:g}: stable arc $a^2 + 1/a^2 \leq$ {2 / eta:.3g}" if stable.any()
                       else rf"$\eta$ = {eta:g}: no stable arc ($2/\eta$ = {2 / eta:.3g} < 2)"))
        n_div = int(np.sum(np.asarray(ends.diverged)))
        ax.plot(w[conv, 0], w[conv, 1], ".", ms=4, color=color,
                label=rf"$\eta$ = {eta:g}: limits ({int(conv.sum())} converged, {n_div} diverged)")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("weight $w_1$")
    ax.set_ylabel("weight $w_2$")
    ax.set_title(title or r"GD settles only where $a^2 + 1/a^2 \leq 2/\eta$")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return fig


# -- the `plot(ax=None)` of the training results: one axes each, returned ---------------------------


def draw_train(result, *, ax=None, title: str | None = None):
    r"""A [`jaxdyn.training.TrainResult`][]: the loss at every step (log scale) and, when tracked,
    the sharpness with $2/\eta$ on a second axis. Returns the axes."""
    _, ax = _axes(ax, figsize=(6.5, 4.0))
    losses = np.asarray(result.losses, dtype=float)
    ax.plot(np.arange(losses.size), losses, color="black", lw=1, label="loss")
    if np.any(np.isfinite(losses) & (losses > 0)):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if result.sharpness is not None:
        ax2 = ax.twinx()
        ax2.plot(np.asarray(result.steps), np.asarray(result.sharpness), color="C0", lw=1.5,
                 label="sharpness")
        if result.lr is not None:
            ax2.axhline(2.0 / float(result.lr), color="C0", ls="--", lw=1, label=r"$2/\eta$")
        ax2.set_ylabel(r"sharpness $\lambda_{\max}(H)$")
        _twin_legend(ax, ax2)
    return _finish(ax, None if bool(result.successful) else int(result.failed_step),
                   title or "Training")


def draw_gradient_flow(sol, *, ax=None, title: str | None = None):
    r"""A [`jaxdyn.training.GradientFlowSolution`][]: the loss against time (log scale when
    positive) and the sharpness $S$ used on each interval on a second axis. Returns the axes."""
    _, ax = _axes(ax, figsize=(6.5, 4.0))
    ts = np.asarray(sol.ts, dtype=float)
    losses = np.asarray(sol.losses, dtype=float)
    ax.plot(ts, losses, color="black", lw=1.5, marker=".", label="loss")
    if np.all(np.isfinite(losses) & (losses > 0)):
        ax.set_yscale("log")
    ax.set_xlabel("time $t$")
    ax.set_ylabel(r"$L(\theta(t))$")
    ax2 = ax.twinx()
    ax2.step(ts, np.asarray(sol.sharpness, dtype=float), where="post", color="C0", lw=1.2,
             label="sharpness $S$")
    ax2.set_ylabel("sharpness")
    _twin_legend(ax, ax2)
    return _finish(ax, None if bool(sol.successful) else float(sol.failed_time),
                   title or "Gradient flow")


def _twin_legend(ax, ax2, **kwargs) -> None:
    """One legend for a plot with a second y axis."""
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize="small", **kwargs)


def _finish(ax, failed_at, title: str):
    """Mark the failure (a dotted red line at `failed_at`, unless `None`), title and grid."""
    if failed_at is not None:
        ax.axvline(failed_at, color="red", ls=":", lw=1.2)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def draw_gd_stability(res, *, ax=None, title: str | None = None):
    r"""A [`jaxdyn.training.GDStabilityResult`][] (one point or a batch): the factors
    $|1 - \eta\lambda|$ of the eigenvalues found against $\lambda$, the curve they lie on and the
    bound 1 (stable below). Returns the axes."""
    _, ax = _axes(ax)
    lr = np.broadcast_to(np.asarray(res.lr, dtype=float), np.shape(res.mu)).ravel()
    lams = np.concatenate([np.asarray(res.eigenvalues_largest, dtype=float).reshape(lr.size, -1),
                           np.asarray(res.eigenvalues_smallest, dtype=float).reshape(lr.size, -1)],
                          axis=1)
    for eta in np.unique(lr):
        grid = np.linspace(min(0.0, np.nanmin(lams)), max(2.5 / eta, np.nanmax(lams)), 200)
        ax.plot(grid, np.abs(1 - eta * grid), color="grey", lw=0.8)
    ax.plot(lams.ravel(), np.abs(1 - lr[:, None] * lams).ravel(), "o", color="C0", ms=4,
            label=r"eigenvalues found: $|1 - \eta\lambda|$")
    ax.axhline(1.0, color="red", ls="--", lw=1, label="stability bound")
    ax.set_xlabel(r"Hessian eigenvalue $\lambda$")
    ax.set_ylabel(r"$|1 - \eta\lambda|$")
    ax.legend(fontsize="small")
    ax.set_title(title or "Linear stability of gradient descent")
    ax.grid(alpha=0.3)
    return ax


def draw_edge_of_stability(stats, *, ax=None, title: str | None = None):
    r"""A [`jaxdyn.training.EdgeOfStabilityResult`][]: the maximum, final and mean-after-crossing
    sharpness in units of $2/\eta$, against 1. Returns the axes."""
    _, ax = _axes(ax)
    names = ["max", "final", "mean after crossing"]
    values = [stats.max_sharpness / stats.threshold, stats.final_sharpness_ratio,
              stats.mean_sharpness_after_ratio]
    ax.bar(names, np.nan_to_num(values), color=["C0", "C1", "C2"])
    ax.axhline(1.0, color="grey", ls="--", lw=1, label=r"$2/\eta$")
    ax.set_ylabel(r"sharpness / $(2/\eta)$")
    ax.legend(fontsize="small")
    ax.set_title(title or rf"Edge of stability at $\eta$ = {stats.lr:g}")
    ax.grid(alpha=0.3, axis="y")
    return ax


def draw_endpoints(ends, *, ax=None, title: str | None = None, lim: float = 3.0):
    """A [`jaxdyn.training.GDEndpointsResult`][]: runs on 2-vectors as in [`plot_implicit_bias`][];
    other runs: a histogram of the final losses. Returns the axes."""
    _, ax = _axes(ax)
    import jax

    leaves = jax.tree_util.tree_leaves(ends.params)
    if len(leaves) == 1 and np.ndim(leaves[0]) == 2 and np.shape(leaves[0])[1] == 2:
        plot_implicit_bias({float(ends.lr): ends}, ax=ax, title=title, lim=lim)
        return ax
    loss = np.asarray(ends.loss, dtype=float)
    finite = loss[np.isfinite(loss)]
    ax.hist(np.log10(np.maximum(finite, 1e-300)), bins=30, color="C0")
    ax.set_xlabel(r"$\log_{10}$ final loss")
    ax.set_ylabel("runs")
    ax.set_title(title or f"GD endpoints: {ends.n_converged} converged, {ends.n_diverged} diverged")
    ax.grid(alpha=0.3)
    return ax
