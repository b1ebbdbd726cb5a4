"""Figures for invariant manifolds and planar phase portraits (matplotlib imported lazily)."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._grid import evaluate
from ._plots import _axes


def plot_manifolds(result, *, ax=None, dims: tuple[int, int] = (0, 1), label: bool = True,
                   title: str | None = None, arrows: bool = True):
    """The stable and unstable manifolds of a saddle ([`jaxdyn.invariant.ManifoldsResult`][])
    projected onto the coordinates `dims`: unstable solid red, stable dashed blue, arrows in the
    direction of the flow, the saddle as a black cross.

    **Arguments:** `result`: a `ManifoldsResult` (or a batch of them: every member is drawn);
    `ax`; `dims`: the two coordinates drawn; `label`: add legend entries; `title`;
    `arrows`: mark the flow direction halfway along each branch.

    **Returns:** the axes.
    """
    fig, ax = _axes(ax)
    i, j = dims
    unstable = np.asarray(result.unstable).reshape(-1, *np.shape(result.unstable)[-2:])
    stable = np.asarray(result.stable).reshape(-1, *np.shape(result.stable)[-2:])
    points = np.asarray(result.point).reshape(-1, np.shape(result.point)[-1])
    for curves, style, name, forward in ((unstable, dict(color="tab:red", ls="-"), "unstable manifold", True),
                                         (stable, dict(color="tab:blue", ls="--"), "stable manifold", False)):
        for k, curve in enumerate(curves):
            ok = np.all(np.isfinite(curve), axis=-1)
            if not ok.any():
                continue
            ax.plot(curve[:, i], curve[:, j], lw=1.6, label=name if (label and k == 0) else None, **style)
            if arrows:
                _arrow(ax, curve[ok][:, [i, j]], forward, style["color"])
    ax.plot(points[:, i], points[:, j], "kx", ms=8, mew=2, label="saddle" if label else None)
    ax.set_xlabel(f"$y_{i}$")
    ax.set_ylabel(f"$y_{j}$")
    if title:
        ax.set_title(title)
    if label:
        ax.legend(fontsize="small")
    return ax


def _arrow(ax, curve: np.ndarray, forward: bool, color) -> None:
    """An arrow head at half the arc length of `curve`, pointing along the flow."""
    if len(curve) < 3:
        return
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0:
        return
    k = int(np.clip(np.searchsorted(arc, 0.5 * arc[-1]), 1, len(curve) - 2))
    a, b = (curve[k - 1], curve[k + 1]) if forward else (curve[k + 1], curve[k - 1])
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2))


def plot_phase_portrait(field: Callable, lower, upper, *, args: Any = None, ax=None, n: int = 25,
                        equilibria: Sequence[tuple[Any, str]] = (), manifolds: Sequence = (),
                        cycles: Sequence = (), title: str | None = None):
    r"""A planar phase portrait: streamlines of $f(0, y, \text{args})$ on the box, equilibria marked
    by kind, closed orbits and the manifolds of saddles.

    **Arguments:**

    - `field`: `f(t, y, args)` with `y` of shape `(2,)`; `args`: passed to it.
    - `lower`, `upper`: the box corners, shape `(2,)`; `n`: streamline grid points per axis.
    - `equilibria`: `(point, kind)` pairs; kinds starting with "stable" are filled circles,
      "saddle" crosses, others open circles.
    - `manifolds`: [`jaxdyn.invariant.ManifoldsResult`][]s drawn by [`plot_manifolds`][].
    - `cycles`: arrays of shape `(m, 2)` (points along a closed orbit), drawn as thick green lines.
    - `ax`, `title`.

    The streamlines are drawn in one grey (their direction, not their speed); the legend sits outside
    the axes, on the right.

    **Returns:** the axes.
    """
    fig, ax = _axes(ax, figsize=(7.5, 5.0))
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    xs, ys = np.linspace(lower[0], upper[0], n), np.linspace(lower[1], upper[1], n)
    X, Y = np.meshgrid(xs, ys)
    pts = np.stack([X.ravel(), Y.ravel()], axis=-1)
    V = evaluate(lambda y: field(0.0, y, args), pts).reshape(n, n, 2)
    ax.streamplot(xs, ys, V[..., 0], V[..., 1], color="0.6", density=1.2, linewidth=0.6, arrowsize=0.8)
    ax.plot([], [], color="0.6", lw=0.8, label="streamlines of the field")
    for k, cycle in enumerate(cycles):
        c = np.asarray(cycle)
        c = np.concatenate([c, c[:1]])
        ax.plot(c[:, 0], c[:, 1], color="tab:green", lw=2.5, label="limit cycle" if k == 0 else None)
    for k, res in enumerate(manifolds):
        plot_manifolds(res, ax=ax, label=k == 0)
    seen = set()
    for point, kind in equilibria:
        p = np.asarray(point)
        if kind.startswith("saddle"):
            style = dict(marker="x", color="k", ms=8, mew=2, ls="none")
        elif kind.startswith("stable"):
            style = dict(marker="o", color="k", ms=7, ls="none")
        else:
            style = dict(marker="o", mfc="white", mec="k", ms=7, ls="none")
        ax.plot(p[0], p[1], label=kind if kind not in seen else None, **style)
        seen.add(kind)
    ax.set_xlim(lower[0], upper[0])
    ax.set_ylim(lower[1], upper[1])
    ax.set_xlabel("state $y_0$")
    ax.set_ylabel("state $y_1$")
    ax.set_aspect("equal", adjustable="box")
    handles, labels = ax.get_legend_handles_labels()
    by_label = dict(zip(labels, handles, strict=True))
    if by_label:  # outside the axes, on the right: the portrait fills the whole box
        ax.legend(by_label.values(), by_label.keys(), fontsize="small", loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title)
    return ax
