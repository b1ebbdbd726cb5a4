"""Figures for periodic orbits (matplotlib imported lazily)."""

import numpy as np

from ._plots import _axes


def plot_periodic_orbit(result, *, ax=None, dims: tuple[int, int] = (0, 1), title: str | None = None,
                        **kwargs):
    """A periodic orbit ([`jaxdyn.invariant.PeriodicOrbitResult`][]) in the phase plane of the
    coordinates `dims`: the orbit over one period (solid when stable, dashed when unstable), the
    shooting segment starts as dots, the first one (on the phase section) ringed.

    **Arguments:** `result`: a `PeriodicOrbitResult` (or a batch: every member is drawn); `ax`;
    `dims`: the two coordinates drawn; `title`; further keyword arguments go to `ax.plot` of the
    orbit.

    **Returns:** the axes.
    """
    _, ax = _axes(ax)
    i, j = dims
    samples = np.asarray(result.samples)
    n = samples.shape[-1]
    if not (0 <= i < n and 0 <= j < n):
        raise ValueError(f"`dims` must name two of the {n} coordinates, got {dims}.")
    orbits = samples.reshape(-1, samples.shape[-3] * samples.shape[-2], n)
    starts = np.asarray(result.states).reshape(-1, *np.shape(result.states)[-2:])
    stable = np.asarray(result.stable).reshape(-1)
    periods = np.asarray(result.period).reshape(-1)
    for k, (orbit, start) in enumerate(zip(orbits, starts, strict=True)):
        closed = np.concatenate([orbit, orbit[:1]], axis=0)
        style = dict(lw=1.6, ls="-" if stable[k] else "--")
        style.update(kwargs)
        line, = ax.plot(closed[:, i], closed[:, j], label=f"T = {periods[k]:.6g}"
                        + ("" if stable[k] else " (unstable)"), **style)
        ax.plot(start[:, i], start[:, j], "o", ms=4, color=line.get_color())
        ax.plot(start[:1, i], start[:1, j], "o", ms=9, mfc="none", color=line.get_color())
    ax.set_xlabel(f"$y_{i}$")
    ax.set_ylabel(f"$y_{j}$")
    ax.set_title(title or "Periodic orbit")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax
