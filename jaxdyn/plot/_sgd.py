"""Figures for SGD as a random dynamical system (matplotlib imported inside functions)."""

from collections.abc import Mapping

import numpy as np

from ._plots import _axes


def plot_sgd_lyapunov(result, ax=None, *, title: str | None = None):
    r"""Running estimate of the sampled product against steps, the reported SGD exponent
    $\lambda$ (after the GD control shift, or exact when the product is deterministic), the
    full-batch GD exponent $\mu$, the mean-square bound and 0.

    **Arguments:** `result`: a [`jaxdyn.training.SGDLyapunovResult`][]; `ax`: draw into this axes
    (default: a new figure); `title`: the axes title.

    **Returns:** the matplotlib `Figure`.

    **Example:** `fig = plot_sgd_lyapunov(sgd_lyapunov(loss, params, data, lr=1.0, batch_size=1,
    key=key))`
    """
    fig, ax = _axes(ax)
    lyap = result.lyapunov
    t = np.asarray(lyap.times)
    ax.plot(t, np.asarray(lyap.history)[:, 0], color="C0", alpha=0.7,
            label="running estimate of the sampled product")
    exact = bool(np.asarray(result.deterministic))
    ax.axhline(float(result.exponent), color="C0", lw=1.5,
               label=rf"SGD $\lambda$ = {float(result.exponent):.4g} $\pm$ {float(result.stderr):.2g}"
               + (" (exact)" if exact else ""))
    ax.axhline(float(result.gd_exponent), color="C1", ls="--",
               label=rf"GD $\mu$ = {float(result.gd_exponent):.4f}")
    msb = float(result.mean_square_bound)
    if np.isfinite(msb):
        ax.axhline(msb, color="C2", ls=":", label=f"mean-square bound {msb:.4f}")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("exponent per step")
    ax.set_title(title or rf"SGD at an interpolating minimum ($\eta$ = {float(result.lr):.3g}, "
                 f"B = {result.batch_size})")
    ax.legend(fontsize=8)
    return fig


def _draw_exponents(ax, diagram, x, relative: bool) -> None:
    r"""$\lambda(\eta)$ per batch size (3-stderr bars), GD's $\mu(\eta)$ and the GD boundary."""
    import matplotlib.pyplot as plt

    exp, se = np.asarray(diagram.exponent), np.asarray(diagram.stderr)
    cmap = plt.get_cmap("viridis")
    nb = len(diagram.batch_sizes)
    for i, b in enumerate(diagram.batch_sizes):
        ax.errorbar(x, exp[i], yerr=3 * np.nan_to_num(se[i]), color=cmap(i / max(nb - 1, 1)),
                    marker="o", ms=3, lw=1.2, capsize=2,
                    label=f"SGD $B$ = {b}" + (r" (= GD: coincides with $\mu$)" if b == diagram.n_examples
                                              else ""))
    ax.plot(x, np.asarray(diagram.gd_exponent), color="black", lw=2, alpha=0.6, ls="--",
            label=r"GD $\mu = \log\max_j|1 - \eta h_j|$")
    ax.axvline(1.0 if relative else float(diagram.gd_boundary), color="black", ls=":", lw=1.2,
               label=r"GD boundary $\eta = 2/\lambda_{\max}$")
    ax.axhline(0.0, color="grey", lw=0.8, label=r"$\lambda = 0$ (stability boundary)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel(r"step size $\eta\,\lambda_{\max}/2$ (1 = GD boundary)" if relative
                  else r"step size $\eta$")
    ax.set_ylabel(r"top Lyapunov exponent $\lambda$ per step" "\n"
                  r"(normal space; symlog, linear below $10^{-3}$)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)


def _draw_sign_map(ax, diagram, x, relative: bool) -> None:
    r"""The sign of $\lambda$ over $(\eta, B)$, pale where not significant; crosses where SGD and GD
    disagree."""
    exp, se = np.asarray(diagram.exponent), np.asarray(diagram.stderr)
    nb = len(diagram.batch_sizes)
    sure = np.abs(exp) > 3 * np.nan_to_num(se)
    code = np.where(exp < 0, -1.0, 1.0) * np.where(sure, 1.0, 0.35)
    edges = np.sqrt(x[1:] * x[:-1]) if len(x) > 1 else np.array([])
    xe = np.concatenate([[x[0] ** 2 / edges[0] if len(edges) else x[0] / 1.5], edges,
                         [x[-1] ** 2 / edges[-1] if len(edges) else x[0] * 1.5]])
    ye = np.arange(nb + 1) - 0.5
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("coolwarm")
    ax.pcolormesh(xe, ye, code, cmap=cmap, vmin=-1, vmax=1, shading="flat")
    dis = np.asarray(diagram.disagree)
    for i in range(nb):
        for j in range(len(x)):
            if dis[i, j]:
                ax.plot(x[j], i, "kx", ms=6)
    ax.axvline(1.0 if relative else float(diagram.gd_boundary), color="black", ls=":", lw=1.5)
    ax.set_xscale("log")
    ax.set_yticks(range(nb), [str(b) for b in diagram.batch_sizes])
    ax.set_ylabel("batch size $B$ (examples per step)")
    ax.set_xlabel(r"step size $\eta\,\lambda_{\max}/2$ (1 = GD boundary)" if relative
                  else r"step size $\eta$")
    ax.set_title(r"sign of $\lambda$ over $(\eta, B)$", fontsize=9)
    handles = [Patch(color=cmap(0.0), label=r"$\lambda < 0$ (stable), > 3 stderr"),
               Patch(color=cmap(0.325), label=r"$\lambda < 0$, within 3 stderr"),
               Patch(color=cmap(0.675), label=r"$\lambda > 0$, within 3 stderr"),
               Patch(color=cmap(1.0), label=r"$\lambda > 0$ (unstable), > 3 stderr"),
               Line2D([], [], color="black", marker="x", ls="none", label="SGD and GD disagree"),
               Line2D([], [], color="black", ls=":", label=r"GD boundary $\eta = 2/\lambda_{\max}$")]
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def plot_sgd_stability(diagram, *, axes=None, relative: bool = True, title: str | None = None):
    r"""Stability diagram of SGD over step size and batch size, against the GD boundary.

    Left: $\lambda(\eta)$ for each batch size (error bars: 3 standard errors), the GD exponent
    $\mu(\eta)$ (black) and the boundary $\eta = 2/\lambda_{\max}$ (dashed). Right: the sign map
    over $(\eta, B)$: blue stable, red unstable, pale where $|\lambda| < 3$ stderr; crosses mark
    the cells where SGD and GD disagree.

    **Arguments:**

    - `diagram`: a [`jaxdyn.training.SGDStabilityDiagramResult`][].
    - `axes`: two matplotlib axes (default: a new figure), or one axes: the left panel only.
    - `relative`: step sizes in units of the GD boundary $2/\lambda_{\max}$ (default).
    - `title`: the figure title (the axes title with one axes).

    **Returns:** the matplotlib `Figure`.
    """
    import matplotlib.pyplot as plt

    lrs = np.asarray(diagram.lrs)
    scale = float(diagram.gd_boundary) if relative else 1.0
    x = lrs / scale
    if axes is not None and not isinstance(axes, list | tuple | np.ndarray):  # one panel
        _draw_exponents(axes, diagram, x, relative)
        if title:
            axes.set_title(title)
        return axes.figure
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12.0, 5.4), layout="constrained")
    else:
        fig = axes[0].figure
    _draw_exponents(axes[0], diagram, x, relative)
    _draw_sign_map(axes[1], diagram, x, relative)
    fig.suptitle(title or f"SGD stability at an interpolating minimum (normal space of dimension "
                 f"{diagram.rank})")
    return fig


def plot_sgd_escape(results, ax=None, *, title: str | None = None):
    r"""SGD started next to the minimum: $\log_{10}(d_t/d_0)$ against steps, $d_t =
    \sqrt{L(\theta_t)}$, one colour per run group.

    **Arguments:** `results`: a [`jaxdyn.training.SGDEscapeResult`][] or a mapping label ->
    result; `ax`: draw into this axes (default: a new figure); `title`: the axes title.

    **Returns:** the matplotlib `Figure`.
    """
    if not isinstance(results, Mapping):
        results = {rf"$\eta$ = {float(results.lr):.3g}, $B$ = {results.batch_size}": results}
    fig, ax = _axes(ax, figsize=(9.0, 4.2))
    for c, (label, res) in enumerate(results.items()):
        logs = np.asarray(res.log_ratio) / np.log(10)
        steps = np.arange(logs.shape[1])
        for r in range(logs.shape[0]):
            ax.plot(steps, logs[r], color=f"C{c}", lw=0.8, alpha=0.7,
                    label=(f"{label}: {float(res.returned_fraction):.0%} returned, "
                           f"{float(res.escaped_fraction):.0%} escaped") if r == 0 else None)
    factors = sorted({float(res.factor) for res in results.values()})
    for k, f in enumerate(factors):
        lf = np.log10(f)
        ax.axhline(lf, color="grey", ls=":", lw=0.8,
                   label=rf"escaped: $d_t/d_0 \geq$ {f:g}" if k == 0 else None)
        ax.axhline(-lf, color="grey", ls="--", lw=0.8,
                   label=rf"returned: $d_t/d_0 \leq$ 1/{f:g}" if k == 0 else None)
    ax.set_xlabel("SGD step $t$")
    ax.set_ylabel(r"$\log_{10}(d_t / d_0)$, $d = \sqrt{L}$ (distance to the minimum)")
    ax.set_title(title or "SGD started next to the interpolating minimum")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


def plot_interpolation_check(check, ax=None, *, title: str | None = None):
    r"""The largest per-example loss and gradient norm against their tolerances (log scale).

    **Arguments:** `check`: a [`jaxdyn.training.InterpolationCheckResult`][]; `ax`: draw into
    this axes (default: a new figure); `title`: the axes title.

    **Returns:** the axes.
    """
    _, ax = _axes(ax, figsize=(5.0, 2.6))
    tiny = np.finfo(float).tiny
    values = [float(check.max_example_loss), float(check.max_example_grad)]
    tols = [float(check.loss_tol), float(check.grad_tol)]
    colors = ["C0" if v <= t else "C3" for v, t in zip(values, tols, strict=True)]
    ax.barh([0, 1], [max(abs(v), tiny) for v in values], color=colors, label="largest over examples")
    ax.plot(tols, [0, 1], "k|", ms=24, mew=2, label="tolerance")
    ax.set_xscale("log")
    ax.set_yticks([0, 1], [r"max $\ell_i$", r"max $\|\nabla \ell_i\|$"])
    ax.set_title(title or ("interpolating" if bool(check.interpolating) else "NOT interpolating"))
    ax.legend(fontsize=7)
    return ax


def plot_interpolation_fit(fit, ax=None, *, title: str | None = None):
    r"""The mean loss over the Adam steps and then the Levenberg-Marquardt iterations (log scale),
    with the target.

    **Arguments:** `fit`: a [`jaxdyn.training.InterpolationFitResult`][]; `ax`: draw into this
    axes (default: a new figure); `title`: the axes title.

    **Returns:** the axes.
    """
    _, ax = _axes(ax, figsize=(5.0, 3.5))
    adam = np.asarray(fit.adam_losses)
    used = int(fit.lm_steps)
    lm = np.asarray(fit.lm_losses)[:used]
    if adam.size:
        ax.plot(np.arange(1, adam.size + 1), adam, color="C0", label="Adam")
    if lm.size:
        ax.plot(adam.size + np.arange(1, lm.size + 1), lm, color="C1", marker="o", ms=3,
                label="Levenberg-Marquardt")
    ax.axhline(float(fit.target), color="black", ls="--", lw=1, label="target")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mean loss")
    ax.set_title(title or f"training to interpolation: loss {float(fit.loss):.2g}")
    ax.legend(fontsize=7)
    return ax
