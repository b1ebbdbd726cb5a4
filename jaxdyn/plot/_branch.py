"""The bifurcation diagram of a continuation branch (matplotlib imported inside functions)."""

from collections.abc import Callable

import numpy as np

from ._plots import _axes


def _measure(branch, component: int | Callable) -> tuple[np.ndarray, np.ndarray, str]:
    """The plotted quantity along the branch and at its special points, and its axis label."""
    n = int(branch.n_points)
    count = min(int(branch.n_special), branch.special_kind.shape[0])
    if callable(component):
        along = np.array([float(component(u)) for u in np.asarray(branch.u[:n])])
        special = np.array([float(component(u)) for u in np.asarray(branch.special_u[:count])])
        return along, special, "measure of u"
    if isinstance(component, bool) or not isinstance(component, int | np.integer):
        raise TypeError("`component` must be an int or a callable u -> float, got "
                        f"{type(component).__name__}.")
    size = branch.u.shape[1]
    if not -size <= component < size:
        raise ValueError(f"`component` must index a state of size {size}, got {component}.")
    return (np.asarray(branch.u[:n, component]), np.asarray(branch.special_u[:count, component]),
            f"u[{component}]")


def plot_branch(branch, ax=None, *, component: int | Callable = 0, color=None, label: str | None = None,
                title: str | None = None, xlabel: str = "parameter $p$"):
    """The bifurcation diagram of a [`BranchResult`][jaxdyn.invariant.BranchResult]:
    `component` of `u` (an index, or a callable
    `u -> float`) against `p`, stable parts solid and unstable parts dashed, the special points
    marked and labelled (BP, F, H, PD, NS).

    **Arguments:**

    - `branch`: a [`BranchResult`][jaxdyn.invariant.BranchResult] (concrete, not batched).
    - `ax`: matplotlib axes to draw into (default: a new figure).
    - `component`: which state component to plot, or a callable of the state.
    - `color`, `label`: the line colour and the legend entry; `title`: the axes title; `xlabel`:
      the name of the continuation parameter (with its unit, if it has one).

    The legend (outside the axes, on the right) says which line style is stable and which unstable.

    **Returns:** the matplotlib axes.
    """
    from ..invariant._branch import LABELS  # noqa: PLC0415
    from ..invariant._problems import SPECIAL_POINTS  # noqa: PLC0415

    _, ax = _axes(ax)
    n = int(branch.n_points)
    p = np.asarray(branch.p[:n])
    y, y_special, ylabel = _measure(branch, component)
    stable = np.asarray(branch.stable[:n]) if branch.spectrum.shape[-1] else np.ones(n, bool)
    color = color or f"C{len(ax.get_lines()) % 10}"
    start = 0
    for i in range(1, n + 1):  # runs of equal stability, each drawn with the point after it
        if i == n or stable[i] != stable[start]:
            stop = min(i + 1, n)
            ax.plot(p[start:stop], y[start:stop], color=color, linestyle="-" if stable[start] else "--",
                    label=label if start == 0 else None)
            start = i
    for i, (value, kind) in enumerate(zip(y_special, np.asarray(branch.special_kind))):
        name = LABELS[SPECIAL_POINTS[int(kind)]]
        ax.plot(float(branch.special_p[i]), value, "o", color="black", markersize=5)
        ax.annotate(name, (float(branch.special_p[i]), value), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    from matplotlib.lines import Line2D  # noqa: PLC0415

    handles, labels = ax.get_legend_handles_labels()
    for style, name in (("-", "stable"), ("--", "unstable")):
        if name not in labels:
            handles.append(Line2D([], [], color="grey", linestyle=style))
            labels.append(name)
    ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return ax
