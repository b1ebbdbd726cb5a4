"""The figure set of a central flow (Cohen, Damian et al., ICLR 2025): the optimiser's raw and
smoothed loss against the flow's predicted loss and the stable flow's loss, the effective sharpness
against the edge 2, the predicted oscillation variance, and the distances.

matplotlib is imported only when a function draws.
"""

import numpy as np


def _legend(ax):
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_central_flow(result, axes=None, *, window: int = 10, title: str | None = None):
    r"""The paper's figure set for a [`jaxdyn.training.CentralFlowResult`][], in four panels:

    1. loss: the optimiser's loss at every step (raw, thin) and smoothed over `window` steps
       ([`jaxdyn.training.smooth_loss`][]: centred trapezoid window, exact for a period-2
       oscillation, the `central-flow` experiment's metric), the central flow's predicted loss
       $L + \frac12\langle\Sigma,H\rangle$, its loss $L(w)$, and the stable flow's loss;
    2. the top effective Hessian eigenvalues against the edge of stability 2;
    3. $\sigma$: the eigenvalues of $\Sigma$ (the predicted oscillation variance);
    4. the distances $\|w_{\text{opt}} - w_{CF}\|$ and $\|w_{\text{stable}} - w_{CF}\|$.

    The comparison lines are drawn only when the run had `compare=True`. Legends sit to the right
    of each panel, off the data.

    **Arguments:**

    - `result`: a `CentralFlowResult` (not batched: index a `vmap`ped one first).
    - `axes`: four matplotlib axes to draw into (default: a new 2 x 2 figure).
    - `window`: the smoothing window in steps (even, >= 2); `title`: the figure title.

    **Returns:** the array of the four axes.

    **Example:**

    ```python
    res = central_flow(loss, params, x, y, lr=0.05, n_steps=2000, every=10)
    axes = res.plot()          # or plot_central_flow(res, window=20)
    ```
    """
    ts = np.asarray(result.ts, dtype=float)
    if ts.ndim != 1:
        raise ValueError(f"`result` must not be batched (its `ts` has shape {ts.shape}): index it first.")
    from ..training._central_flow import smooth_loss

    smooth_loss(np.zeros(0), window)  # checks `window` (an even int >= 2) before drawing
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 2, figsize=(12.0, 7.0), layout="constrained")
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != 4:
        raise ValueError(f"`axes` must hold four axes, got {axes.size}.")
    compare = not np.all(np.isnan(np.asarray(result.gd_distance, dtype=float)))

    ax = axes[0]
    if compare:
        gd = np.asarray(result.gd_loss, dtype=float)
        steps = np.arange(gd.size)
        ax.plot(steps, gd, color="0.7", lw=0.6, label="optimiser (raw)")
        ax.plot(steps, smooth_loss(gd, window), color="k", lw=1.2, label=f"optimiser (smoothed, {window})")
        ax.plot(ts, np.asarray(result.flow_loss, dtype=float), color="tab:green", ls=":", lw=1.5,
                label="stable flow")
    ax.plot(ts, np.asarray(result.loss, dtype=float), color="tab:blue", ls="--", lw=1.2,
            label="central flow $L(w)$")
    ax.plot(ts, np.asarray(result.predicted_loss, dtype=float), color="tab:blue", lw=2.0,
            label=r"predicted $L + \frac{1}{2}\langle\Sigma, H\rangle$")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    _legend(ax)

    ax = axes[1]
    eig = np.asarray(result.eigenvalues, dtype=float)
    for i in range(eig.shape[1]):
        ax.plot(ts, eig[:, i], lw=1.5, label=f"$\\lambda_{{{i + 1}}}$ (effective)")
    ax.axhline(2.0, color="k", ls="--", lw=1.0, label="edge of stability (2)")
    ax.set_xlabel("step")
    ax.set_ylabel(r"eigenvalues of $P^{-1/2} H P^{-1/2}$")
    _legend(ax)

    ax = axes[2]
    sig = np.asarray(result.sigma, dtype=float)
    for i in range(sig.shape[1]):
        ax.plot(ts, sig[:, i], lw=1.5, label=f"$\\sigma_{{{i + 1}}}$")
    ax.set_xlabel("step")
    ax.set_ylabel(r"eigenvalues of $\Sigma$ (oscillation variance)")
    _legend(ax)

    ax = axes[3]
    if compare:
        ax.plot(ts, np.asarray(result.gd_distance, dtype=float), lw=1.5, label="optimiser to central flow")
        ax.plot(ts, np.asarray(result.flow_distance, dtype=float), lw=1.5, ls=":",
                label="stable flow to central flow")
        _legend(ax)
    else:
        ax.text(0.5, 0.5, "compare=False", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("step")
    ax.set_ylabel("distance in parameter space")
    for a in axes:
        a.grid(alpha=0.3)
    if title:
        axes[0].figure.suptitle(title)
    return axes
