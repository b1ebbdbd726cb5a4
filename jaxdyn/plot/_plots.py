"""Figures for fits, level sets and critical points (matplotlib imported inside functions)."""

from collections.abc import Mapping

import numpy as np

from ._grid import grid_values


def _axes(ax, figsize=(5.0, 4.0)):
    """Return `(fig, ax)`: `ax`'s figure, or a new pyplot figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _legend_outside(ax, where: str = "right", **kwargs):
    """A small legend outside the axes (so that it never covers data): `"right"` of the axes,
    top-aligned, or `"below"` them, centred (under the x label). `kwargs` go to `ax.legend`.
    Returns the legend, or `None` when nothing is labelled."""
    if where not in ("right", "below"):
        raise ValueError(f"`legend` must be 'right' or 'below', got {where!r}.")
    if not ax.get_legend_handles_labels()[0]:
        return None
    kwargs.setdefault("fontsize", "small")
    if where == "right":
        return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)
    # "below": anchored a fixed distance (in points) under the axes: clear of the tick labels and the
    # x label whatever the axes' height
    import matplotlib as mpl
    from matplotlib.transforms import offset_copy

    gap = 4.0 * float(mpl.rcParams["font.size"])
    below = offset_copy(ax.transAxes, fig=ax.figure, y=-gap, units="points")
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                     borderaxespad=0.0, **kwargs)


def _finish(ax, xlabel: str, ylabel: str, title: str | None, *, outside: str | None = None
            ) -> None:
    """Axis labels, the optional title, a small legend (inside at the best place, or outside
    the axes: `outside="right"`/`"below"`) and a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if outside is None:
        ax.legend(fontsize="small")
    else:
        _legend_outside(ax, outside)
    ax.grid(alpha=0.3)


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=float).squeeze()
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a vector (shape (n,) or (n, 1)), got shape {x.shape}.")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"`{name}` must have {n} entries like `x`, got {x.shape[0]}.")
    return x


def plot_fit(x, target, predictions: Mapping, *, data=None, ax=None, title: str | None = None,
             target_label: str = "target", styles: Mapping | None = None,
             legend: str = "right"):
    """Fitted 1-D maps against the target, on one axes.

    **Arguments:**

    - `x`: the evaluation grid, shape `(n,)` (or `(n, 1)`).
    - `target`: the target on the grid, shape `(n,)`.
    - `predictions`: label -> values on the grid (shape `(n,)` or `(n, 1)`), one line each.
    - `data`: optional `(xs, ys)` training points, drawn as dots.
    - `ax`: draw into this axes (default: a new figure). `title`: the axes title.
    - `styles`: optional label -> dict of `ax.plot` keyword arguments.
    - `legend`: where the legend goes, outside the axes so that it covers no data: `"right"`
      (default) or `"below"`.

    **Returns:** the matplotlib `Figure`.

    **Example:**

    ```python
    fig = plot_fit(x, x**2, {"neural ODE": jax.vmap(model)(x[:, None])})
    ```
    """
    x = _vector(x, "x")
    fig, ax = _axes(ax)
    ax.plot(x, _vector(target, "target", len(x)), color="black", lw=2.5, alpha=0.35,
            label=target_label)
    styles = dict(styles or {})
    for label, values in predictions.items():
        ax.plot(x, _vector(values, f"predictions[{label!r}]", len(x)), label=label,
                **styles.get(label, {}))
    if data is not None:
        xs, ys = data
        ax.plot(np.asarray(xs).ravel(), np.asarray(ys).ravel(), ".", color="grey", ms=3,
                label="training data")
    _finish(ax, "$x$", r"$\Phi(x)$", title, outside=legend)
    return fig


def plot_fit_errors(x, target, predictions: Mapping, *, ax=None, log: bool = True,
                    title: str | None = None, hlines: Mapping | None = None,
                    ylabel: str = r"absolute error $|\Phi(x) - \psi(x)|$", legend: str = "right"):
    r"""Pointwise errors $|\Phi(x) - \psi(x)|$ of 1-D fits (log scale by default).

    `hlines`: optional label -> value drawn as horizontal reference lines (e.g. a theoretical
    lower bound on the sup error), each labelled in the legend. `ylabel`: the y label. Other
    arguments as in [`plot_fit`][]. Returns the `Figure`.
    """
    x = _vector(x, "x")
    target = _vector(target, "target", len(x))
    fig, ax = _axes(ax)
    for label, values in predictions.items():
        err = np.abs(_vector(values, f"predictions[{label!r}]", len(x)) - target)
        ax.plot(x, np.maximum(err, 1e-16) if log else err, label=label)
    for i, (label, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color="black", ls=(":", "--", "-.")[i % 3], lw=1, label=label)
    if log:
        ax.set_yscale("log")
    _finish(ax, "$x$", ylabel, title, outside=legend)
    return fig


def plot_losses(losses: Mapping, *, ax=None, title: str | None = None,
                hlines: Mapping | None = None, styles: Mapping | None = None,
                xlabel: str = "optimiser step", ylabel: str = "training loss",
                legend: str = "right"):
    """Training-loss curves (label -> per-step losses) on a log scale, with optional horizontal
    reference lines (label -> value), `styles` (label -> dict of `ax.plot` keyword arguments,
    e.g. dashes for curves that coincide), axis labels and the legend outside the axes
    (`"right"` or `"below"`). Returns the `Figure`."""
    fig, ax = _axes(ax, figsize=(9.0, 4.2) if legend == "right" else (6.0, 5.2))
    styles = dict(styles or {})
    for label, values in losses.items():
        values = np.asarray(values, dtype=float).ravel()
        ax.plot(np.arange(1, len(values) + 1), values, label=label, **styles.get(label, {}))
    for i, (label, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color="black", ls=(":", "--", "-.")[i % 3], lw=1, label=label)
    ax.set_yscale("log")
    _finish(ax, xlabel, ylabel, title, outside=legend)
    return fig


_KINDS = {  # (label, marker, face colour)
    "minimum": ("minimum", "o", "white"),
    "maximum": ("maximum", "^", "tab:orange"),
    "saddle": ("saddle", "X", "tab:red"),
    "degenerate": ("degenerate", "s", "tab:grey"),
}


def _kind(index: int, d: int, degenerate: bool) -> str:
    if degenerate:
        return "degenerate"
    if index == 0:
        return "minimum"
    return "maximum" if index == d else "saddle"


def _draw_critical_points(ax, result, *, annotate: bool = True, empty_note: bool = True):
    points = np.asarray(result.points, dtype=float)
    if points.size == 0:
        points = points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"Critical points must be 2-D to be drawn, got shape {points.shape}.")
    indices = np.asarray(result.morse_indices).ravel()
    degenerate = np.asarray(result.degenerate).ravel()
    seen = set()
    for p, idx, deg in zip(points, indices, degenerate, strict=True):
        kind = _kind(int(idx), 2, bool(deg))
        label, marker, colour = _KINDS[kind]
        ax.plot(p[0], p[1], marker=marker, ms=10, mfc=colour, mec="black", mew=1.5, ls="none",
                label=None if kind in seen else label, zorder=5)
        seen.add(kind)
        if annotate:
            ax.annotate(f"index {int(idx)}", p, xytext=(8, 8), textcoords="offset points",
                        fontsize="small", color="black", zorder=6,
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", alpha=0.7, lw=0))
    if not seen and empty_note:  # said in the legend, below the axes, not over the data
        ax.plot([], [], ls="none", label=f"no critical points ({result.n_converged}/"
                f"{result.n_starts} Newton starts converged)")
    _legend_outside(ax, "below")


def plot_level_sets(fn, lower, upper, critical_points=None, ax=None, *, n: int = 101,
                    levels: int = 20, cmap: str = "viridis", colorbar: bool = True,
                    title: str | None = None, vmin: float | None = None,
                    vmax: float | None = None, colorbar_label: str = r"$f(x)$"):
    r"""Filled level sets (`contourf`) of a scalar map $f: \mathbb{R}^2 \to \mathbb{R}$ on a box.

    **Arguments:**

    - `fn`: takes shape `(2,)`, returns a scalar or shape `(1,)`; evaluated jitted and vmapped
      on an `n` by `n` grid (see [`grid_values`][]).
    - `lower`, `upper`: the box corners, shape `(2,)`.
    - `critical_points`: optional [`jaxdyn.models.CriticalPointsResult`][] to mark (by Morse index;
      see [`plot_critical_points`][]).
    - `ax`: draw into this axes (default: a new figure).
    - `levels`, `cmap`, `colorbar`, `vmin`, `vmax`: passed to `contourf`/`colorbar` (give the
      same `vmin`/`vmax` to panels that should share a colour scale); `colorbar_label` labels
      the colour bar.

    The legend of the critical points (or the note that there are none) goes below the axes.

    **Returns:** the matplotlib `Figure`.

    **Example:**

    ```python
    res = jaxdyn.models.critical_points(model, -jnp.ones(2), jnp.ones(2), key=key)
    fig = plot_level_sets(model, -jnp.ones(2), jnp.ones(2), critical_points=res)
    ```
    """
    X, Y, Z = grid_values(fn, lower, upper, n=n)
    fig, ax = _axes(ax, figsize=(5.0, 4.2))
    lo = np.nanmin(Z) if vmin is None else vmin
    hi = np.nanmax(Z) if vmax is None else vmax
    bounds = np.linspace(lo, hi, levels + 1) if hi > lo else levels
    cs = ax.contourf(X, Y, Z, levels=bounds, cmap=cmap, extend="both")
    ax.contour(X, Y, Z, levels=bounds, colors="black", linewidths=0.3, alpha=0.5)
    if colorbar:
        fig.colorbar(cs, ax=ax, shrink=0.9, label=colorbar_label)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if critical_points is not None:
        _draw_critical_points(ax, critical_points)
    return fig


def plot_critical_points(result, fn=None, lower=None, upper=None, *, ax=None,
                         annotate: bool = True, **level_set_kwargs):
    """Draw a [`jaxdyn.models.CriticalPointsResult`][] result of a 2-D scalar map.

    With `fn`, `lower` and `upper` the level sets of `fn` are drawn first ([`plot_level_sets`][],
    which takes `level_set_kwargs`); without them the points are marked on `ax` (default: a new
    figure). Minima are white circles, saddles red crosses, maxima orange triangles, degenerate
    points grey squares, each labelled with its Morse index; the legend (or, for an empty result,
    the note that there is no critical point) goes below the axes.

    **Returns:** the matplotlib `Figure`.
    """
    if fn is not None:
        if lower is None or upper is None:
            raise ValueError("`lower` and `upper` are required when `fn` is given.")
        fig = plot_level_sets(fn, lower, upper, ax=ax, **level_set_kwargs)
        ax = ax if ax is not None else fig.axes[0]
    else:
        if level_set_kwargs:
            raise TypeError(f"Unexpected arguments without `fn`: {sorted(level_set_kwargs)}.")
        fig, ax = _axes(ax)
    _draw_critical_points(ax, result, annotate=annotate)
    return fig
