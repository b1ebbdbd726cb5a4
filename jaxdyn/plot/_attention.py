"""Figures of token dynamics (self-attention as interacting particles): tokens on the circle and the
sphere, cluster counts, alignment histograms, the W1 limit and the spectra of clustered states
(matplotlib imported lazily)."""

from collections.abc import Mapping

import numpy as np

from ._plots import _axes, _legend_outside


def _snapshots(ts: np.ndarray, times, default: int) -> np.ndarray:
    """Indices of the save times nearest to `times` (default: `default` evenly spread ones)."""
    if times is None:
        return np.unique(np.linspace(0, ts.shape[0] - 1, min(default, ts.shape[0])).round().astype(int))
    t = np.atleast_1d(np.asarray(times, dtype=float))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"`times` must be None or a non-empty vector of finite times, got {t}.")
    return np.abs(ts[None, :] - t[:, None]).argmin(axis=1)


def _token_colours(n: int, labels):
    import matplotlib as mpl

    if labels is None:
        return mpl.colormaps["viridis"](np.linspace(0, 1, n))
    lab = np.asarray(labels).ravel()
    if lab.shape != (n,):
        raise ValueError(f"`labels` must have one entry per token ({n}), got shape {np.shape(labels)}.")
    _, codes = np.unique(lab, return_inverse=True)
    return mpl.colormaps["tab10"](codes % 10)


def _unit_sphere(ax):
    u, v = np.mgrid[0:2 * np.pi:25j, 0:np.pi:13j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.8", lw=0.4)


def plot_tokens(ts, xs, *, times=None, labels=None, title: str | None = None, figsize=None):
    r"""Tokens over time: on the circle ($d = 2$: the angle $\theta_i = \mathrm{atan2}(x_{i2},
    x_{i1})$ of every token against time), on the sphere ($d = 3$: 3-D scatters at several
    snapshots on the unit sphere's wireframe) or, for $d > 3$, their projection on the first two
    principal components of all snapshots together ($d = 1$: the value against time).

    **Arguments:** `ts` `(T,)`; `xs` `(T, n, d)`; `times`: the snapshot times for $d \ge 3$ (nearest
    save times; default 4 evenly spread); `labels`: optional cluster labels per token (e.g.
    `cluster_labels(xs[-1])`) to colour by cluster (default: by token index, viridis); `title`;
    `figsize`.

    **Returns:** the `Figure`.
    """
    import matplotlib.pyplot as plt

    ts = np.asarray(ts, dtype=float)
    xs = np.asarray(xs, dtype=float)
    if xs.ndim != 3 or xs.shape[0] != ts.shape[0]:
        raise ValueError(f"`xs` must have shape (T, n, d) with T = len(ts) = {ts.shape[0]}, got {xs.shape}.")
    _, n, d = xs.shape
    colours = _token_colours(n, labels)
    if d <= 2:
        fig, ax = plt.subplots(figsize=figsize or (6.0, 3.8), layout="constrained")
        values = np.arctan2(xs[..., 1], xs[..., 0]) if d == 2 else xs[..., 0]
        for i in range(n):
            ax.scatter(ts, values[:, i], s=3, color=colours[i], lw=0)
        ax.set_xlabel("time $t$")
        ax.set_ylabel(r"token angle $\theta_i$ (rad)" if d == 2 else "token $x_i$")
        if d == 2:
            ax.set_ylim(-np.pi, np.pi)
            ax.set_yticks([-np.pi, 0, np.pi], [r"$-\pi$", "0", r"$\pi$"])
        ax.grid(alpha=0.3)
        if title:
            ax.set_title(title)
        return fig
    idx = _snapshots(ts, times, 4)
    k = idx.size
    if d == 3:
        fig = plt.figure(figsize=figsize or (3.0 * k, 3.2), layout="constrained")
        for c, i in enumerate(idx):
            ax = fig.add_subplot(1, k, c + 1, projection="3d")
            _unit_sphere(ax)
            ax.scatter(*xs[i].T, color=colours, s=12, depthshade=False)
            ax.set_title(f"$t = {ts[i]:.3g}$", fontsize="small")
            ax.set_box_aspect((1, 1, 1))
            ax.set_xlabel("$x_1$")
            ax.set_ylabel("$x_2$")
            ax.set_zlabel("$x_3$")
            for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
                axis.set_ticks([-1, 0, 1])
            ax.tick_params(labelsize="x-small", pad=0)
    else:
        pooled = xs[idx].reshape(-1, d)
        centre = pooled.mean(axis=0)
        _, _, vt = np.linalg.svd(pooled - centre, full_matrices=False)
        fig, axes = plt.subplots(1, k, figsize=figsize or (3.0 * k, 3.0), layout="constrained",
                                 squeeze=False, sharex=True, sharey=True)
        for c, i in enumerate(idx):
            ax = axes[0, c]
            p = (xs[i] - centre) @ vt[:2].T
            ax.scatter(p[:, 0], p[:, 1], color=colours, s=10)
            ax.set_title(f"$t = {ts[i]:.3g}$", fontsize="small")
            ax.set_xlabel("PC 1")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("PC 2")
    if title:
        fig.suptitle(title)
    return fig


def plot_cluster_counts(ts, counts, *, ax=None, title: str | None = None, log: bool = True):
    """The number of clusters against time: one curve, or a mapping label -> counts (e.g. one per
    $\\beta$; legend outside, right). `log`: a log-scaled count axis. Returns the axes."""
    fig, ax = _axes(ax)
    ts = np.asarray(ts, dtype=float)
    curves = counts if isinstance(counts, Mapping) else {None: counts}
    for label, c in curves.items():
        c = np.asarray(c, dtype=float)
        c = np.where(c < 0, np.nan, c)
        ax.step(ts, c, where="post", label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time $t$")
    ax.set_ylabel("number of clusters")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    _legend_outside(ax, "right")
    return ax


def plot_alignment_histogram(edges, histograms, times, *, ax=None, title: str | None = None):
    r"""Histograms of the pairwise alignments $\langle x_i, x_j\rangle$ ($i < j$, unit tokens) at
    several times: one step curve per time (legend outside, right). `edges` `(bins + 1,)`,
    `histograms` `(H, bins)` (densities), `times` `(H,)`. Returns the axes."""
    fig, ax = _axes(ax)
    edges = np.asarray(edges, dtype=float)
    hists = np.atleast_2d(np.asarray(histograms, dtype=float))
    times = np.atleast_1d(np.asarray(times, dtype=float))
    if hists.shape[0] != times.shape[0] or hists.shape[1] + 1 != edges.shape[0]:
        raise ValueError(f"`histograms` must have shape (len(times), len(edges) - 1) = ({times.shape[0]}, "
                         f"{edges.shape[0] - 1}), got {hists.shape}.")
    for h, t in zip(hists, times, strict=True):
        ax.stairs(h, edges, label=f"$t = {t:.3g}$")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(r"alignment $\langle x_i, x_j\rangle$")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    _legend_outside(ax, "right")
    return ax


def plot_clustering(result, *, axes=None, title: str | None = None):
    """The three panels of a [`ClusteringResult`][jaxdyn.meanfield.ClusteringResult]: cluster count,
    mean-token norm $R(t)$ and alignment histograms (onto `axes`, a sequence of three axes, or a new
    figure). Returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.6), layout="constrained")
    else:
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) != 3:
            raise ValueError(f"`ax` must be None or a sequence of three axes, got {len(axes)}.")
        fig = axes[0].figure
    ts = np.asarray(result.ts)
    plot_cluster_counts(ts, result.counts, ax=axes[0], title=f"clusters (tol = {float(result.tol):.2g})")
    axes[1].plot(ts, np.asarray(result.order))
    axes[1].set_ylim(0, 1.05)
    axes[1].set_xlabel("time $t$")
    axes[1].set_ylabel(r"mean-token norm $R = |\sum_i x_i| / n$")
    axes[1].grid(alpha=0.3)
    plot_alignment_histogram(result.edges, result.histograms, result.at, ax=axes[2])
    if title:
        fig.suptitle(title)
    return fig


def plot_token_w1(result, *, ax=None, title: str | None = None):
    r"""$W_1$ between $n$ and ratio$\cdot n$ tokens against $n$ (log-log) at $t = 0$ and at $t_1$
    (means with standard errors over the repeats), with an $n^{-1/2}$ guide; legend outside
    (right). Returns the axes."""
    fig, ax = _axes(ax, figsize=(6.0, 4.0))
    ns = np.asarray(result.ns, dtype=float)
    for w, slope, lab in ((result.w1_initial, result.slope_initial, "$t = 0$"),
                          (result.w1, result.slope, f"$t = {result.t1:g}$")):
        w = np.asarray(w)
        err = w.std(axis=1, ddof=1) / np.sqrt(w.shape[1]) if w.shape[1] > 1 else None
        ax.errorbar(ns, w.mean(axis=1), yerr=err, fmt="o-", capsize=2,
                    label=f"{lab} (slope {float(slope):.2f})")
    first = np.asarray(result.w1).mean(axis=1)[0]
    ax.plot(ns, first * (ns / ns[0]) ** -0.5, "k--", lw=1, label=r"$\propto n^{-1/2}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens $n$")
    unit = " (rad)" if result.metric == "geodesic" else ""
    ax.set_ylabel(f"$W_1$($n$ vs {result.ratio}$n$ tokens){unit}")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    _legend_outside(ax, "right")
    return ax


def plot_cluster_spectrum(result, *, ax=None, title: str | None = None):
    r"""The tangent-space eigenvalues of a [`ClusterStabilityResult`][jaxdyn.meanfield.ClusterStabilityResult]
    in the complex plane, the neutral band $|\Re\lambda| \le$ tol shaded. Returns the axes."""
    fig, ax = _axes(ax)
    ev = np.asarray(result.eigenvalues)
    ax.axvspan(-float(result.tol), float(result.tol), color="0.85", label="neutral band")
    ax.axvline(0.0, color="k", lw=0.6)
    ax.scatter(ev.real, ev.imag, s=18, label=f"{ev.size} tangent eigenvalues")
    ax.set_xlabel(r"$\mathrm{Re}\,\lambda$ (1/time unit)")
    ax.set_ylabel(r"$\mathrm{Im}\,\lambda$ (1/time unit)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    _legend_outside(ax, "right")
    return ax
