"""Figures for Kuramoto-type particle systems and their mean-field limits (matplotlib imported lazily)."""

from collections.abc import Callable, Mapping

import numpy as np

from ._plots import _axes


def single_axes(ax):
    """`(fig, ax)`: `ax` and its figure, or a new figure with one axes (for the `.plot()` of results)."""
    return _axes(ax)


def plot_states(ts, ys, *, ax=None, circular: bool = False, title: str | None = None):
    r"""A trajectory of node states as a space-time image: node index across, time up.

    **Arguments:** `ts` `(T,)`; `ys` `(T, N)` (more axes are flattened per time); `circular`: phases,
    drawn mod $2\pi$ on a cyclic colour map (else a diverging one around 0); `ax`, `title`.

    **Returns:** the axes.
    """
    fig, ax = _axes(ax)
    ts = np.asarray(ts)
    ys = np.asarray(ys).reshape(len(ts), -1)
    if circular:
        values, cmap, kw, label = np.mod(ys, 2 * np.pi), "twilight", {"vmin": 0, "vmax": 2 * np.pi}, \
            r"$\theta$ mod $2\pi$"
    else:
        top = float(np.nanmax(np.abs(ys))) if np.any(np.isfinite(ys)) else 1.0
        values, cmap, kw, label = ys, "RdBu_r", {"vmin": -top, "vmax": top}, "state"
    return _space_time(fig, ax, values, ts, cmap=cmap, label=label, xlabel="node $i$", title=title, **kw)


def _space_time(fig, ax, values, ts, *, cmap, label, xlabel, title, **kw):
    """`values` of shape `(T, columns)` as an image (column across, time up) with its colour bar."""
    im = ax.imshow(values, aspect="auto", origin="lower", cmap=cmap, interpolation="nearest",
                   extent=(-0.5, values.shape[1] - 0.5, ts[0], ts[-1]), **kw)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("$t$")
    if title:
        ax.set_title(title)
    return ax


def plot_order_vs_coupling(curves: Mapping, *, theory: Mapping | None = None, kc: Mapping | None = None,
                           ax=None, title: str | None = None):
    r"""Stationary order parameter $r_\infty$ against the coupling $K$.

    **Arguments:**

    - `curves`: label -> `(ks, r)` measured values (markers).
    - `theory`: label -> callable `r(k)` or `(ks, r)` arrays (lines; the $i$-th in the colour of the
      $i$-th curve).
    - `kc`: label -> critical coupling, drawn as vertical dotted lines (the $i$-th in the colour of
      the $i$-th curve) and named in the legend.
    - `ax`, `title`: as usual.

    The legend sits outside the axes, on the right, so that it never covers data.

    **Returns:** the `Figure`.
    """
    fig, ax = _axes(ax, figsize=(8.0, 4.2))
    colours = []
    markers = ("o", "s", "^", "D", "v")
    for i, (label, (ks, r)) in enumerate(curves.items()):
        (line,) = ax.plot(np.asarray(ks), np.asarray(r), markers[i % len(markers)], ms=4.5, mfc="none",
                          mew=1.2, label=label)
        colours.append(line.get_color())
    all_ks = np.concatenate([np.asarray(k, dtype=float) for k, _ in curves.values()]) if curves else \
        np.linspace(0.0, 1.0, 2)
    for i, (label, th) in enumerate((theory or {}).items()):
        if callable(th):
            ks = np.linspace(all_ks.min(), all_ks.max(), 400)
            r = np.asarray(th(ks))
        else:
            ks, r = (np.asarray(a) for a in th)
        colour = colours[i] if i < len(colours) else None
        ax.plot(ks, r, "-", lw=1.5, color=colour, label=label)
    for i, (label, value) in enumerate((kc or {}).items()):
        colour = colours[i] if i < len(colours) else "grey"
        ax.axvline(value, color=colour, ls=":", lw=1.4, label=label)
    ax.set_xlabel("coupling $K$")
    ax.set_ylabel(r"order parameter $r_\infty$ (time average)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        ax.set_title(title)
    return fig


def plot_order_parameter(ts, curves: Mapping, *, ax=None, title: str | None = None,
                         styles: Mapping | None = None):
    r"""Order-parameter time series $r(t) = |z(t)|$: label -> values on `ts`. Returns the `Figure`."""
    fig, ax = _axes(ax)
    ts = np.asarray(ts)
    styles = dict(styles or {})
    for label, r in curves.items():
        ax.plot(ts, np.abs(np.asarray(r)), label=label, **styles.get(label, {}))
    ax.set_xlabel("$t$")
    ax.set_ylabel("$r(t) = |z(t)|$")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_space_time(ts, x, theta, *, local_order=None, frequency=None, title: str | None = None, ax=None,
                    threshold: float | None = None):
    r"""Space-time plot of phases on a ring (chimera states), with optional profiles.

    **Arguments:**

    - `ts`: times `(T,)`; `x`: node positions `(N,)`; `theta`: phases `(T, N)` (drawn mod $2\pi$).
    - `local_order`: optional `|Z_i|` at the final time `(N,)` (or `(T, N)`: the last row is used).
    - `frequency`: optional time-averaged phase velocities `(N,)`.
    - `threshold`: optional; a coherence threshold on $|Z|$, drawn as a labelled line in the
      local-order panel.
    - `ax`: `None` (a new figure), or one axes per panel (a single axes when there is no profile).

    **Returns:** the `Figure` (one image panel plus one panel per profile).
    """
    extra = [p for p in (local_order, frequency) if p is not None]
    if ax is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 1 + len(extra), figsize=(5.0 + 3.6 * len(extra), 4.0),
                                 layout="constrained", squeeze=False)
        axes = axes[0]
    else:
        axes = list(np.atleast_1d(np.asarray(ax, dtype=object)))
        if len(axes) != 1 + len(extra):
            raise ValueError(f"`ax` must hold {1 + len(extra)} axes (the image and one per profile), got "
                             f"{len(axes)}.")
        fig = axes[0].figure
    ts, x = np.asarray(ts), np.asarray(x)
    th = np.mod(np.asarray(theta), 2 * np.pi)
    im = axes[0].imshow(th, aspect="auto", origin="lower", cmap="twilight", vmin=0, vmax=2 * np.pi,
                        extent=(x[0], x[-1], ts[0], ts[-1]), interpolation="nearest")
    fig.colorbar(im, ax=axes[0], label=r"phase $\theta$ mod $2\pi$ (rad)")
    axes[0].set_xlabel("position $x$")
    axes[0].set_ylabel("time $t$")
    axes[0].set_title("phases")
    i = 1
    if local_order is not None:
        lo = np.abs(np.asarray(local_order))
        lo = lo[-1] if lo.ndim == 2 else lo
        axes[i].plot(x, lo, ".", ms=3)
        if threshold is not None:
            axes[i].axhline(threshold, color="k", ls="--", lw=1)
            axes[i].text(0.5, threshold, f"coherence threshold {threshold:g}", ha="center", va="top",
                         transform=axes[i].get_yaxis_transform(), fontsize="small",
                         bbox=dict(fc="white", ec="none", alpha=0.8))
        axes[i].set_ylim(0, 1.05)
        axes[i].set_xlabel("position $x$")
        axes[i].set_ylabel(r"local order $|Z(x)|$ at the final time")
        axes[i].grid(alpha=0.3)
        i += 1
    if frequency is not None:
        axes[i].plot(x, np.asarray(frequency), ".", ms=3)
        axes[i].set_xlabel("position $x$")
        axes[i].set_ylabel(r"mean phase velocity $\langle\dot\theta\rangle$ (rad per unit time)")
        axes[i].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_w1_convergence(ns, w1, *, stderr=None, ax=None, reference_slope: float = -0.5,
                        title: str | None = None, xlabel: str = "$N$",
                        ylabel: str = "$W_1$ to the Vlasov solution (rad)"):
    r"""$W_1$ distance to the mean-field limit (or any error) against $N$ on log-log axes, with an
    $N^{-1/2}$ guide (through the first point) and a fitted slope in the legend (placed in the lower
    left, empty for a decreasing error).

    **Arguments:** `ns`, `w1` (same length); `stderr` optional error bars; `reference_slope` the
    guide's exponent; `xlabel`, `ylabel` the axis labels. **Returns:** the `Figure`.
    """
    fig, ax = _axes(ax)
    ns, w1 = np.asarray(ns, dtype=float), np.asarray(w1, dtype=float)
    slope = np.polyfit(np.log(ns), np.log(w1), 1)[0]
    ax.errorbar(ns, w1, yerr=None if stderr is None else np.asarray(stderr), fmt="o-",
                label=f"measured (fitted slope {slope:.2f})")
    ax.plot(ns, w1[0] * (ns / ns[0]) ** reference_slope, "k--", lw=1,
            label=f"guide $\\propto N^{{{reference_slope:g}}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="lower left")
    if title:
        ax.set_title(title)
    return fig


def plot_loss_curves(curves: Mapping, *, ax=None, title: str | None = None,
                     transform: Callable | None = None):
    """Training-loss curves of two-layer networks (label -> losses per step), log scale.

    Returns the `Figure`."""
    fig, ax = _axes(ax)
    for label, values in curves.items():
        v = np.asarray(values, dtype=float)
        ax.plot(np.arange(v.size), v if transform is None else transform(v), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("GD step (mean-field scaling: step $\\eta N$ per particle)")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_observed(ts, observed, *, ax=None, title: str | None = None):
    r"""Observables of a run with `simulate(..., observe=...)` against time.

    Scalar series are lines (a complex one, e.g. the order parameter $z$, as $r = |z|$); when there
    is none, the first vector series (e.g. [`LocalOrder`][jaxdyn.meanfield.LocalOrder], shape
    `(T, n_bins)`) is drawn as a space-time image (block across, time up).

    **Arguments:** `ts` `(T,)`; `observed` a PyTree or dict of arrays with leading axis `T`; `ax`,
    `title`.

    **Returns:** the axes.
    """
    import jax

    fig, ax = _axes(ax)
    ts = np.asarray(ts)
    if isinstance(observed, dict):
        items = list(observed.items())
    else:
        leaves = jax.tree_util.tree_leaves(observed)
        items = [(f"observable {i}" if len(leaves) > 1 else "observable", v) for i, v in enumerate(leaves)]
    items = [(name, np.asarray(v)) for name, v in items]
    lines = [(name, v) for name, v in items if v.ndim == 1]
    if lines:
        for name, v in lines:
            if np.iscomplexobj(v):
                ax.plot(ts, np.abs(v), label=f"$r = |{name}|$" if name.isidentifier() else f"|{name}|")
            else:
                ax.plot(ts, v, label=name)
        ax.set_xlabel("$t$")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    elif items:
        name, v = items[0]
        v = np.abs(v.reshape(len(ts), -1))
        return _space_time(fig, ax, v, ts, cmap="viridis", label=name, xlabel="block", title=title)
    if title:
        ax.set_title(title)
    return ax
