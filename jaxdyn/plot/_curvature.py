"""Figures for curvature: spectral densities (SLQ), extreme eigenvalues and trace estimates.

matplotlib is imported only when a function draws.
"""

import numpy as np

from ._plots import _axes


def plot_spectral_density(result, ax=None, *, logy: bool = True, show_nodes: bool = True,
                          reference=None, title: str | None = None, label: str | None = None):
    r"""The smoothed eigenvalue density of a [`jaxdyn.curvature.DensityResult`][].

    **Arguments:**

    - `result`: from [`jaxdyn.curvature.spectral_density`][].
    - `ax`: draw into this axes (default: a new figure).
    - `logy`: logarithmic density axis (default; Hessian spectra have a bulk near zero and a
      few outliers, visible only on a log scale). Values below $10^{-6}$ of the peak are clipped.
    - `show_nodes`: mark the quadrature nodes with weight above $10^{-6}$ as ticks at the bottom.
    - `reference`: optional exact eigenvalues, drawn as a histogram density for comparison.
    - `title`, `label`: axes title and line label.

    **Returns:** the matplotlib `Figure`.

    **Example:**

    ```python
    dens = spectral_density(hessian_operator(loss, params, x, y), key=key, order=80)
    fig = plot_spectral_density(dens)
    ```
    """
    grid = np.asarray(result.grid, dtype=float)
    density = np.asarray(result.density, dtype=float)
    if grid.ndim != 1 or density.shape != grid.shape:
        raise ValueError(f"`result.grid` and `result.density` must be vectors of one length, got "
                         f"{grid.shape} and {density.shape} (plot vmapped results one at a time).")
    fig, ax = _axes(ax)
    if reference is not None:
        ref = np.asarray(reference, dtype=float).ravel()
        ax.hist(ref, bins=min(60, max(10, ref.size // 4)), density=True, color="grey", alpha=0.35,
                label="exact eigenvalues")
    if logy:
        floor = max(density.max(), 1e-300) * 1e-6
        ax.semilogy(grid, np.maximum(density, floor), label=label or "SLQ density")
        ax.set_ylim(bottom=floor)
    else:
        ax.plot(grid, density, label=label or "SLQ density")
    if show_nodes:
        nodes = np.asarray(result.nodes, dtype=float).ravel()
        weights = np.asarray(result.weights, dtype=float).ravel()
        keep = weights > 1e-6
        ax.plot(nodes[keep], np.full(keep.sum(), ax.get_ylim()[0]), "|", color="black", ms=8,
                alpha=0.5, label="quadrature nodes")
    ax.set_xlabel(r"eigenvalue $\lambda$")
    ax.set_ylabel("density")
    ax.set_title(title or rf"spectral density (SLQ, $\sigma$ = {float(result.sigma):.3g})")
    ax.legend(frameon=False)
    return fig


def plot_eigenvalues(result, ax=None, *, reference=None, title: str | None = None):
    r"""Eigenvalues of an [`jaxdyn.curvature.EigenResult`][] with their residual norms as bars.

    **Arguments:**

    - `result`: from [`jaxdyn.curvature.top_eigenvalues`][] or `power_iteration`.
    - `ax`: draw into this axes (default: a new figure).
    - `reference`: optional exact values (same order, descending), drawn as crosses.
    - `title`: axes title.

    **Returns:** the matplotlib `Figure`.
    """
    vals = np.asarray(result.eigenvalues, dtype=float)
    res = np.asarray(result.residuals, dtype=float)
    if vals.ndim != 1:
        raise ValueError(f"`result.eigenvalues` must be a vector, got shape {vals.shape} (plot "
                         "vmapped results one at a time).")
    idx = np.arange(1, vals.size + 1)
    fig, ax = _axes(ax)
    ax.errorbar(idx, vals, yerr=res, fmt="o", capsize=3, label="Lanczos (bars: residual norm)")
    if reference is not None:
        ref = np.asarray(reference, dtype=float).ravel()
        if ref.size != vals.size:
            raise ValueError(f"`reference` must have {vals.size} values, got {ref.size}.")
        ax.plot(idx, ref, "x", color="black", label="reference")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("index $i$")
    ax.set_ylabel(r"eigenvalue $\lambda_i$")
    ax.set_title(title or f"eigenvalues ({int(np.asarray(result.num_hvp))} operator applications)")
    ax.legend(frameon=False)
    return fig


def plot_trace(result, ax=None, *, reference=None, title: str | None = None):
    r"""The running estimate of a [`jaxdyn.curvature.TraceResult`][] over its probes.

    After $m$ Monte-Carlo samples the estimate is `offset` plus their mean, drawn with a band of
    one running standard error (from the second sample on); the final estimate is a horizontal
    line.

    **Arguments:**

    - `result`: from [`jaxdyn.curvature.trace`][].
    - `ax`: draw into this axes (default: a new figure).
    - `reference`: an optional exact trace, drawn as a dashed line.
    - `title`: axes title.

    **Returns:** the matplotlib `Figure`.
    """
    samples = np.asarray(result.samples, dtype=float)
    if samples.ndim != 1:
        raise ValueError(f"`result.samples` must be a vector, got shape {samples.shape} (plot "
                         "vmapped results one at a time).")
    m = np.arange(1, samples.size + 1)
    running = float(np.asarray(result.offset)) + np.cumsum(samples) / m
    fig, ax = _axes(ax)
    ax.plot(m, running, label=f"running estimate ({result.method})")
    if samples.size > 1:
        csum, csq = np.cumsum(samples)[1:], np.cumsum(samples**2)[1:]
        k = m[1:]
        var = np.maximum(csq - csum**2 / k, 0.0) / (k - 1)
        err = np.sqrt(var / k)
        ax.fill_between(k, running[1:] - err, running[1:] + err, alpha=0.25,
                        label="one standard error")
    estimate = float(np.asarray(result.estimate))
    ax.axhline(estimate, color="black", lw=0.8,
               label=f"estimate {estimate:.6g} +/- {float(np.asarray(result.stderr)):.2g}")
    if reference is not None:
        ax.axhline(float(reference), color="grey", ls="--", label="reference")
    ax.set_xlabel("Monte-Carlo samples")
    ax.set_ylabel(r"estimate of tr$(A)$")
    ax.set_title(title or f"stochastic trace ({result.num_hvp} operator applications)")
    ax.legend(frameon=False)
    return fig
