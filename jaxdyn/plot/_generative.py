"""Figures for generative flows: basins of training points, memorisation, stretching along sampling
trajectories, the memorisation curve, samples over a log-density.

matplotlib is imported only when a function draws.
"""

from collections.abc import Mapping

import numpy as np

from ._plots import _axes, _legend_outside

_GREY = "0.75"


def plot_basins(result, ax=None, *, coords: tuple[int, int] = (0, 1), cmap: str = "tab10", size=None,
                title: str | None = None, legend: bool = True):
    r"""The latent plane coloured by basin: each latent drawn in the colour of the training point its
    sample ends at (grey: farther than `tol` from every point).

    **Arguments:**

    - `result`: a [`jaxdyn.models.BasinsResult`][]; `coords`: the two latent coordinates drawn.
    - `ax` (default: a new figure); `cmap`: a qualitative colormap (cycled when there are more
      points than colours); `size`: marker size (default from the number of latents); `title`;
      `legend`: the basin fractions beside the axes (up to 12 points).

    **Returns:** the matplotlib `Figure`.
    """
    import matplotlib as mpl

    latents = np.asarray(result.latents, dtype=float)
    labels = np.asarray(result.labels)
    i, j = coords
    if not (0 <= i < latents.shape[1] and 0 <= j < latents.shape[1]) or i == j:
        raise ValueError(f"`coords` must be two different indices below {latents.shape[1]}, got {coords}.")
    fig, ax = _axes(ax, figsize=(5.6, 4.4))
    colours = mpl.colormaps[cmap]
    n_colours = getattr(colours, "N", 10)
    m = np.shape(result.points)[0]
    fractions, stderr = np.asarray(result.fractions), np.asarray(result.stderr)
    s = size if size is not None else float(np.clip(4e4 / max(latents.shape[0], 1), 1.0, 30.0))
    un = labels < 0
    if un.any():
        ax.scatter(latents[un, i], latents[un, j], s=s, c=_GREY, marker="s", linewidths=0,
                   label=f"unassigned ({float(result.unassigned):.3f})")
    for k in range(m):
        sel = labels == k
        if not sel.any():
            continue
        ax.scatter(latents[sel, i], latents[sel, j], s=s, color=colours(k % n_colours), marker="s",
                   linewidths=0,
                   label=(f"point {k}: {fractions[k]:.3f} $\\pm$ {stderr[k]:.3f}" if m <= 12 else None))
    ax.set_aspect("equal")
    ax.set_xlabel(f"latent $z_{i + 1}$")
    ax.set_ylabel(f"latent $z_{j + 1}$")
    ax.set_title(title or f"Basins of {m} training points (tol = {float(result.tol):g})")
    if legend and m <= 12:
        _legend_outside(ax, "right", markerscale=max(1.0, 20 / s), title="basin fraction")
    return fig


def plot_memorisation(result, ax=None, *, bins: int = 40, title: str | None = None):
    r"""The distances of samples to their nearest training point (histogram, log scale), with the
    memorisation radius `tol` and the training points' own median spacing.

    **Arguments:**

    - `result`: a [`jaxdyn.models.MemorisationResult`][]; `ax` (default: a new figure); `bins`;
      `title`.

    **Returns:** the matplotlib `Figure`.
    """
    dist = np.asarray(result.distances, dtype=float)
    dist = dist[np.isfinite(dist)]
    fig, ax = _axes(ax, figsize=(5.4, 3.8))
    positive = dist[dist > 0]
    lo = np.log10(positive.min()) if positive.size else -6.0
    hi = np.log10(max(positive.max() if positive.size else 1.0, float(result.tol)))
    edges = np.logspace(lo - 0.1, hi + 0.1, bins + 1)
    ax.hist(np.clip(dist, edges[0], None), bins=edges, color="C0", alpha=0.8,
            label=f"{dist.size} samples")
    ax.axvline(float(result.tol), color="k", ls="--", lw=1.2,
               label=f"tol = {float(result.tol):g}: {float(result.fraction):.3f} within")
    spacing = float(result.spacing)
    if np.isfinite(spacing):
        ax.axvline(spacing, color="C3", ls=":", lw=1.4, label=f"training spacing {spacing:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("distance to the nearest training point")
    ax.set_ylabel("number of samples")
    ax.set_title(title or f"Memorisation: {np.shape(result.points)[0]} training points")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_sampling_lyapunov(result, ax=None, *, title: str | None = None, logx: bool | None = None):
    r"""The local stretching rates along sampling trajectories against flow time (the mean over the
    samples of $\log R_{ii} / |\Delta t|$ per block; symmetric-log scale), the sampling direction
    from left to right.

    **Arguments:**

    - `result`: a [`jaxdyn.models.SamplingLyapunovResult`][]; `ax` (default: a new figure);
      `title`; `logx`: a logarithmic time axis (default: when the times span a factor 10 or more).

    **Returns:** the matplotlib `Figure`.
    """
    times = np.asarray(result.times, dtype=float)
    rates = np.asarray(result.local_rates, dtype=float)
    mid = np.sqrt(times[1:] * times[:-1]) if np.all(times > 0) else 0.5 * (times[1:] + times[:-1])
    fig, ax = _axes(ax, figsize=(5.6, 4.0))
    styles = ("-", "--", "-.", ":")
    mean = np.asarray(result.mean, dtype=float)
    for i in range(rates.shape[1]):
        ax.plot(mid, rates[:, i], styles[i % 4], color=f"C{i}", lw=1.5,
                label=rf"direction {i + 1} (exponent {mean[i]:.3g})")
    ax.axhline(0.0, color="k", lw=0.8)
    if logx is None:
        lo, hi = np.min(times), np.max(times)
        logx = lo > 0 and hi / lo >= 10
    if logx:
        ax.set_xscale("log")
    if times[-1] < times[0]:
        ax.invert_xaxis()
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("flow time $t$ (sampling runs left to right)")
    ax.set_ylabel(r"local rate $\log R_{ii}/|\Delta t|$ (mean over samples)")
    ax.set_title(title or f"Stretching along {np.shape(result.latents)[0]} sampling trajectories")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_memorisation_curve(sizes, curves: Mapping, ax=None, *, xlabel: str = "training-set size $m$",
                            ylabel: str = "fraction of samples within tol of a training point",
                            title: str | None = None, logx: bool = True):
    r"""Memorisation against the training-set size (or a width): one line per model, with error bars.

    **Arguments:**

    - `sizes`: the x values (e.g. training-set sizes $m$).
    - `curves`: a mapping from a label to `(values, stderr)` (or just `values`), one value per size.
    - `ax` (default: a new figure); `xlabel`, `ylabel`, `title`, `logx`.

    **Returns:** the matplotlib `Figure`.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("`curves` must be a non-empty mapping from a label to (values, stderr).")
    sizes = np.asarray(sizes, dtype=float)
    fig, ax = _axes(ax, figsize=(5.6, 4.0))
    markers = ("o", "s", "^", "v", "D")
    for i, (label, curve) in enumerate(curves.items()):
        values, err = (curve if isinstance(curve, tuple) and len(curve) == 2 else (curve, None))
        values = np.asarray(values, dtype=float)
        if values.shape != sizes.shape:
            raise ValueError(f"`curves[{label!r}]` must have one value per size ({sizes.size}), got "
                             f"{values.shape}.")
        ax.errorbar(sizes, values, yerr=None if err is None else np.asarray(err, dtype=float),
                    marker=markers[i % 5], ms=5, capsize=3, lw=1.4, color=f"C{i}", label=str(label))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_density(grid_x, grid_y, log_density, ax=None, *, samples=None, points=None, cmap: str = "viridis",
                 title: str | None = None, colorbar: bool = True):
    r"""A model's log-density on a 2-D grid (filled contours), with samples and training points on top.

    **Arguments:**

    - `grid_x`, `grid_y`: the grid (shape `(ny, nx)` each, e.g. from `np.meshgrid`);
      `log_density`: $\log p$ there (same shape; non-finite values left blank).
    - `samples`, `points`: optional `(n, 2)` arrays drawn as dots (samples) and crosses (training
      points).
    - `ax` (default: a new figure); `cmap`, `title`, `colorbar`.

    **Returns:** the matplotlib `Figure`.
    """
    gx, gy = np.asarray(grid_x, dtype=float), np.asarray(grid_y, dtype=float)
    lp = np.asarray(log_density, dtype=float)
    if not (gx.shape == gy.shape == lp.shape) or gx.ndim != 2:
        raise ValueError(f"`grid_x`, `grid_y` and `log_density` must be 2-D arrays of one shape, got "
                         f"{gx.shape}, {gy.shape}, {lp.shape}.")
    fig, ax = _axes(ax, figsize=(5.4, 4.2))
    finite = lp[np.isfinite(lp)]
    floor = np.percentile(finite, 5) if finite.size else 0.0
    cs = ax.contourf(gx, gy, np.where(np.isfinite(lp), np.maximum(lp, floor), np.nan), levels=20, cmap=cmap)
    if colorbar:
        fig.colorbar(cs, ax=ax, label=r"$\log p(x)$")
    if samples is not None:
        s = np.asarray(samples, dtype=float)
        ax.scatter(s[:, 0], s[:, 1], s=3, c="k", alpha=0.6, linewidths=0, label=f"{s.shape[0]} samples")
    if points is not None:
        p = np.asarray(points, dtype=float)
        ax.scatter(p[:, 0], p[:, 1], s=18, c="C3", marker="x", linewidths=1.0, label="training points")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if samples is not None or points is not None:
        ax.legend(fontsize="small", loc="lower left")
    return fig
