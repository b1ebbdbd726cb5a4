"""Figures for periodic orbits of delay equations (matplotlib imported inside functions)."""

import numpy as np

from ._plots import _axes


def plot_dde_periodic_orbit(result, ax=None, *, embedding: bool = False, n_samples: int = 400,
                            component: int = 0, title: str | None = None):
    r"""One period of a [`DDEPeriodicOrbitResult`][jaxdyn.invariant.DDEPeriodicOrbitResult]:
    every component against $t \in [0, T]$ (the
    trigonometric interpolant, the collocation points marked), or with `embedding=True` the delay
    embedding $x_c(t)$ against $x_c(t - \tau_1)$ (a closed curve).

    **Arguments:**

    - `result`: the orbit (not batched).
    - `ax`: the axes to draw into (default: a new figure).
    - `embedding`: draw the delay embedding instead of the time series.
    - `n_samples`: points of the interpolant per period.
    - `component`: the component of the embedding.
    - `title`: the title (default: the period).

    **Returns:** the matplotlib axes.
    """
    fig, ax = _axes(ax)
    period = float(np.asarray(result.period))
    t = np.linspace(0.0, period, n_samples + 1)
    xs = np.asarray(result.evaluate(t))
    if embedding:
        tau = float(np.asarray(result.delays)[0])
        lagged = np.asarray(result.evaluate(t - tau))
        ax.plot(lagged[:, component], xs[:, component], lw=1.5)
        ax.set_xlabel(rf"$x_{{{component}}}(t - \tau)$, $\tau$ = {tau:.4g}")
        ax.set_ylabel(rf"$x_{{{component}}}(t)$")
    else:
        values = np.asarray(result.values)
        grid = period * np.arange(values.shape[0]) / values.shape[0]
        for i in range(xs.shape[1]):
            line, = ax.plot(t, xs[:, i], lw=1.5, label=rf"$x_{{{i}}}$")
            ax.plot(grid, values[:, i], ".", color=line.get_color(), ms=3)
        ax.set_xlabel("$t$")
        ax.set_ylabel("$x(t)$")
        if xs.shape[1] > 1:
            ax.legend(fontsize="small")
    ok = bool(np.all(np.asarray(result.successful)))
    ax.set_title(title or (f"periodic orbit, T = {period:.6g}" + ("" if ok else " (failed)")))
    ax.grid(alpha=0.3)
    return ax
