"""Figures for Lyapunov spectra: convergence, order-to-chaos diagrams, signal propagation, FTLE
fields, covariant-vector angles, sweeps.

matplotlib is imported only when a function draws.
"""

from collections.abc import Mapping

import numpy as np

from ._plots import _axes, _finish, _legend_outside

_LINESTYLES = (":", "--", "-.")


def _label(i: int) -> str:
    return rf"$\lambda_{{{i + 1}}}$"


def plot_lyapunov_convergence(result, ax=None, reference=None, *, logx: bool = True,
                              title: str | None = None, xlabel: str = "time $T$ (time units)",
                              ylabel: str = r"running estimate $\lambda_i(T)$ (1/time unit)",
                              legend: str = "right"):
    r"""Running estimates of Lyapunov exponents against time, one line per exponent.

    **Arguments:**

    - `result`: a [`jaxdyn.lyapunov.LyapunovResult`][] (its `history` of shape `(n, k)` is drawn
      against its `times`; a batch of results from `vmap` must be plotted one at a time).
    - `ax`: draw into this axes (default: a new figure).
    - `reference`: optional known values, a sequence of at most `k` numbers (`None` skips one),
      drawn as dashed horizontal lines in the colour of the matching exponent.
    - `logx`: logarithmic time axis (default), where the $1/T$ approach is easiest to read.
    - `title`, `xlabel`, `ylabel`: axes title and labels (`"layer"` suits
      [`jaxdyn.lyapunov.network_spectrum`][], `"step"` maps; give the units, e.g.
      `"time $T$ (time units)"` and `r"$\lambda_i(T)$ (1/time unit)"`).
    - `legend`: `"right"` of the axes (default) or `"below"` them: outside, over no data.

    **Returns:** the matplotlib `Figure`.

    **Example:**

    ```python
    res = flow_spectrum(lorenz, jnp.ones(3), dt=0.01, n_steps=20_000, renorm_every=10)
    fig = plot_lyapunov_convergence(res, reference=(0.9056, 0.0, -14.5723))
    ```
    """
    history = np.asarray(result.history, dtype=float)
    times = np.asarray(result.times, dtype=float)
    if history.ndim != 2:
        raise ValueError(
            "`result.history` must have shape (n, k); got shape "
            f"{history.shape} (plot the results of a vmapped batch one at a time)."
        )
    if times.shape != (history.shape[0],):
        raise ValueError(f"`result.times` must have shape ({history.shape[0]},) like the history, "
                         f"got {times.shape}.")
    k = history.shape[1]
    if reference is None:
        reference = []
    else:
        reference = [reference] if np.ndim(reference) == 0 else list(reference)
    if len(reference) > k:
        raise ValueError(f"`reference` has {len(reference)} values but the result has {k} exponents.")
    exponents = np.asarray(result.exponents, dtype=float).reshape(-1)
    stderr = None if result.stderr is None else np.asarray(result.stderr, dtype=float).reshape(-1)
    fig, ax = _axes(ax, figsize=(6.0, 4.0))
    for i in range(k):
        label = f"{_label(i)} = {exponents[i]:.4g}" if exponents.shape == (k,) else _label(i)
        if stderr is not None and stderr.shape == (k,):
            label += rf" $\pm$ {stderr[i]:.2g}"
        (line,) = ax.plot(times, history[:, i], lw=1.5, label=label)
        if i < len(reference) and reference[i] is not None:
            ax.axhline(float(reference[i]), color=line.get_color(), ls="--", lw=1, alpha=0.8)
    if reference:
        # one legend entry for all the dashed lines
        ax.plot([], [], color="grey", ls="--", lw=1, label="reference")
    if logx:
        ax.set_xscale("log")
    _finish(ax, xlabel, ylabel, title, outside=legend)
    return fig


def _spread(empirical: np.ndarray) -> np.ndarray:
    n = empirical.shape[-1]
    return np.std(empirical, axis=-1, ddof=1) if n > 1 else np.zeros(empirical.shape[:-1])


def plot_phase_diagram(diagram, ax=None, *, title: str | None = None, cmap: str = "RdBu_r",
                       colorbar: bool = True, legend: str = "right"):
    r"""The order-to-chaos diagram of a [`jaxdyn.lyapunov.PhaseDiagramResult`][].

    With one $\sigma_b^2$ row: the empirical top exponent $\lambda_1$ against $\sigma_w^2$ (mean
    $\pm$ standard deviation over the seeds), the mean-field $\frac12 \log \chi_1$, and the
    mean-field transition $\chi_1 = 1$ as a vertical line. With several rows: $\lambda_1$ over
    the $(\sigma_w^2, \sigma_b^2)$ grid (colour, centred at 0), the $\chi_1 = 1$ curve (solid)
    and the empirical $\lambda_1 = 0$ curve (dashed).

    **Arguments:** `diagram` (at least two `sigma_w2` values); `ax` (default: a new figure);
    `title`; `cmap` and `colorbar` for the 2-D view; `legend`: `"right"` of the axes (default)
    or `"below"` them (outside, over no data).

    **Returns:** the matplotlib `Figure`.
    """
    sw = np.asarray(diagram.sigma_w2, dtype=float).reshape(-1)
    sb = np.asarray(diagram.sigma_b2, dtype=float).reshape(-1)
    emp = np.asarray(diagram.empirical, dtype=float)
    chi = np.asarray(diagram.chi_1, dtype=float)
    if sw.shape[0] < 2:
        raise ValueError(f"`diagram` needs at least two `sigma_w2` values to plot, got {sw.shape[0]}.")
    if emp.ndim != 3 or emp.shape[:2] != (sb.shape[0], sw.shape[0]) or chi.shape != emp.shape[:2]:
        raise ValueError(
            f"`diagram`: `empirical` must have shape (sigma_b2, sigma_w2, seeds) = ({sb.shape[0]}, "
            f"{sw.shape[0]}, seeds) and `chi_1` shape ({sb.shape[0]}, {sw.shape[0]}); got "
            f"{emp.shape} and {chi.shape}."
        )
    lam = emp.mean(axis=-1)
    mean_field = 0.5 * np.log(chi)
    if sb.shape[0] == 1:
        fig, ax = _axes(ax, figsize=(6.0, 4.0))
        n_seeds = emp.shape[-1]
        ax.errorbar(sw, lam[0], yerr=_spread(emp)[0], fmt="o-", ms=4, lw=1.2, capsize=2,
                    label=rf"empirical $\lambda_1$ (mean $\pm$ sd, {n_seeds} seed"
                          f"{'s' if n_seeds > 1 else ''})")
        ax.plot(sw, mean_field[0], color="black", lw=1.5,
                label=r"mean field $\frac{1}{2}\log\chi_1$")
        ax.axhline(0.0, color="grey", lw=0.8, label=r"$\lambda_1 = 0$: order below, chaos above")
        crit = _crossing(sw, mean_field[0])
        if np.isfinite(crit):
            ax.axvline(crit, color="tab:red", ls="--", lw=1.2,
                       label=rf"$\chi_1 = 1$ at $\sigma_w^2 \approx$ {crit:.3f} (linear interpolation "
                             "on the grid)")
        ax.set_xlabel(r"$\sigma_w^2$")
        ax.set_ylabel(r"top exponent $\lambda_1$ (per layer)")
        ax.set_title(title or rf"Order to chaos, $\sigma_b^2$ = {sb[0]:g}")
        _legend_outside(ax, legend)
        ax.grid(alpha=0.3)
        return fig

    import matplotlib.colors as mcolors

    fig, ax = _axes(ax, figsize=(6.0, 4.2))
    lo, hi = float(np.nanmin(lam)), float(np.nanmax(lam))
    norm = (mcolors.TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi) if lo < 0 < hi
            else mcolors.Normalize(vmin=lo, vmax=hi))
    mesh = ax.pcolormesh(sw, sb, lam, cmap=cmap, norm=norm, shading="nearest")
    if colorbar:
        fig.colorbar(mesh, ax=ax, label=r"empirical $\lambda_1$ (per layer)")
    if np.nanmin(chi) < 1 < np.nanmax(chi):
        ax.contour(sw, sb, chi, levels=[1.0], colors="black", linewidths=1.5)
        ax.plot([], [], color="black", lw=1.5, label=r"$\chi_1 = 1$ (mean field)")
    if lo < 0 < hi:
        ax.contour(sw, sb, lam, levels=[0.0], colors="0.3", linewidths=1.2, linestyles="--")
        ax.plot([], [], color="0.3", ls="--", lw=1.2, label=r"empirical $\lambda_1 = 0$")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.set_title(title or "Order to chaos")
    _legend_outside(ax, "below" if colorbar else legend)
    return fig


def _crossing(xs: np.ndarray, ys: np.ndarray) -> float:
    """First upward zero crossing of `ys` over `xs` by linear interpolation (NaN if none)."""
    idx = np.flatnonzero((ys[:-1] < 0) & (ys[1:] >= 0))
    if idx.size == 0:
        return float("nan")
    i = idx[0]
    return float(xs[i] - ys[i] * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i]))


def plot_signal_propagation(result, ax=None, *, title: str | None = None):
    r"""Mean-field $\chi_1$ against $\sigma_w^2$ from a
    [`jaxdyn.lyapunov.SignalPropagationResult`][] (one point, or a line for a vmapped batch),
    with the order-to-chaos transition $\chi_1 = 1$ as a horizontal line.

    **Arguments:** `result`; `ax` (default: a new figure); `title`.

    **Returns:** the matplotlib `Figure`.
    """
    sw = np.asarray(result.sigma_w2, dtype=float).reshape(-1)
    chi = np.asarray(result.chi_1, dtype=float).reshape(-1)
    if sw.shape != chi.shape:
        sw = np.broadcast_to(sw, chi.shape)
    order = np.argsort(sw)
    fig, ax = _axes(ax, figsize=(5.0, 3.6))
    ax.plot(sw[order], chi[order], "o-" if sw.size > 1 else "o", ms=4, lw=1.2,
            label=r"mean field $\chi_1$")
    ax.axhline(1.0, color="tab:red", ls="--", lw=1, label=r"$\chi_1 = 1$ (order | chaos)")
    _finish(ax, r"$\sigma_w^2$", r"$\chi_1$", title)
    return fig


def plot_clv_angles(result, ax=None, *, title: str | None = None, xlabel: str = "step"):
    r"""The minimal angle between the first covariant Lyapunov vector and the span of the others
    along the trajectory, from a [`jaxdyn.lyapunov.CLVResult`][] (dips towards 0 are
    near-tangencies, the mark of a non-hyperbolic system).

    **Arguments:** `result`; `ax` (default: a new figure); `title`; `xlabel`.

    **Returns:** the matplotlib `Figure`.
    """
    angles = np.asarray(result.angles, dtype=float)
    if angles.ndim != 1:
        raise ValueError(f"`result.angles` must have shape (n_steps,), got {angles.shape} (plot "
                         "the results of a vmapped batch one at a time).")
    fig, ax = _axes(ax, figsize=(6.0, 3.6))
    ax.plot(np.arange(angles.size), angles, lw=1, label=r"angle($v_1$, span($v_2, \dots$))")
    ax.set_ylim(0.0, np.pi / 2 * 1.05)
    _finish(ax, xlabel, "angle (rad)", title)
    return fig


def plot_ftle_field(field, ax=None, *, coords: tuple[int, int] = (0, 1), cmap: str = "magma",
                    colorbar: bool = True, title: str | None = None):
    r"""The largest finite-time Lyapunov exponent over a 2-D grid of initial points
    (`pcolormesh`); ridges mark the stable manifolds and basin boundaries.

    **Arguments:**

    - `field`: a [`jaxdyn.lyapunov.FTLEResult`][] whose `points` have shape `(ny, nx, n)` (a
      meshgrid stacked on the last axis); `coords` picks the two coordinates drawn (for lifted
      points with $n > 2$).
    - `ax` (default: a new figure); `cmap`, `colorbar`, `title`.

    **Returns:** the matplotlib `Figure`.
    """
    points = np.asarray(field.points, dtype=float)
    ftle = np.asarray(field.ftle, dtype=float)
    if points.ndim != 3:
        raise ValueError(f"`field.points` must be a 2-D grid of points, shape (ny, nx, n), got "
                         f"{points.shape}.")
    i, j = coords
    if not (0 <= i < points.shape[-1] and 0 <= j < points.shape[-1]) or i == j:
        raise ValueError(f"`coords` must be two different indices below {points.shape[-1]}, got "
                         f"{coords}.")
    fig, ax = _axes(ax, figsize=(5.2, 4.2))
    mesh = ax.pcolormesh(points[..., i], points[..., j], ftle, cmap=cmap, shading="auto")
    if colorbar:
        T = float(np.asarray(field.duration))
        fig.colorbar(mesh, ax=ax, label=f"FTLE (T = {T:g})")
    ax.set_xlabel(f"$x_{i + 1}$")
    ax.set_ylabel(f"$x_{j + 1}$")
    if title:
        ax.set_title(title)
    return fig


def plot_sweep(params, exponents, ax=None, *, xlabel: str = "parameter", labels=None,
               vlines: Mapping | None = None, title: str | None = None, zero_line: bool = True,
               ylabel: str = "Lyapunov exponent", legend: str = "right"):
    r"""Lyapunov exponents against a swept parameter (e.g. $\lambda_1$ of the Lorenz system
    against $\rho$, from [`jaxdyn.lyapunov.sweep`][]).

    **Arguments:**

    - `params`: the parameter values, shape `(n,)`.
    - `exponents`: shape `(n,)` or `(n, k)`, one line per column.
    - `ax` (default: a new figure); `xlabel`; `labels` (one per column; default
      $\lambda_1, \dots$); `vlines` (label -> parameter value, dotted vertical lines);
      `zero_line` (a horizontal line at 0); `title`; `ylabel` (give the unit, e.g.
      `r"$\lambda_1$ (1/time unit)"`); `legend`: `"right"` of the axes (default) or `"below"`
      them (outside, over no data).

    **Returns:** the matplotlib `Figure`.
    """
    params = np.asarray(params, dtype=float).squeeze()
    exps = np.asarray(exponents, dtype=float)
    if params.ndim != 1:
        raise ValueError(f"`params` must have shape (n,), got {params.shape}.")
    if exps.ndim == 1:
        exps = exps[:, None]
    if exps.ndim != 2 or exps.shape[0] != params.shape[0]:
        raise ValueError(f"`exponents` must have shape ({params.shape[0]},) or ({params.shape[0]}, k), "
                         f"got {np.shape(exponents)}.")
    k = exps.shape[1]
    if isinstance(labels, str):
        labels = [labels]
    labels = [_label(i) for i in range(k)] if labels is None else list(labels)
    if len(labels) != k:
        raise ValueError(f"`labels` must give one label per exponent ({k}), got {labels!r}.")
    fig, ax = _axes(ax, figsize=(7.0, 3.6))
    marker = "." if params.shape[0] <= 200 else None
    for i in range(k):
        ax.plot(params, exps[:, i], marker=marker, ms=3, lw=1, label=labels[i])
    if zero_line:
        ax.axhline(0.0, color="black", lw=0.8)
    for n, (label, value) in enumerate((vlines or {}).items()):
        ax.axvline(value, color="grey", ls=_LINESTYLES[n % 3], lw=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if k > 1 or vlines:
        _legend_outside(ax, legend)
    ax.grid(alpha=0.3)
    return fig
