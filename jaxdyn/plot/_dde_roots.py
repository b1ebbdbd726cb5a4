"""Figures for characteristic roots of delay equations and DDE Hopf points (matplotlib imported
inside functions)."""

import numpy as np

from ._plots import _axes


def plot_characteristic_roots(result, *, ax=None, title: str | None = None, **kwargs):
    r"""The characteristic roots of a
    [`CharacteristicRootsResult`][jaxdyn.invariant.CharacteristicRootsResult] in the complex plane,
    with the imaginary axis (the stability boundary) drawn.

    **Arguments:**

    - `result`: a `CharacteristicRootsResult` (one problem, not a batch).
    - `ax`: draw into this axes (default: a new figure). `title`: the axes title.
    - `kwargs`: passed to `ax.scatter` (e.g. `color`, `marker`).

    **Returns:** the matplotlib axes.

    **Example:**

    ```python
    ax = characteristic_roots(A0, A, delays).plot()
    ```
    """
    roots = np.asarray(result.roots)
    if roots.ndim != 1:
        raise ValueError(f"`result` must hold one problem's roots (shape (k,)), got shape {roots.shape}: "
                         "plot one member of a batch, e.g. `jax.tree_util.tree_map(lambda x: x[0], result)`.")
    _, ax = _axes(ax)
    unstable = roots.real >= 0
    style = {"s": 24, "zorder": 3} | kwargs
    ax.scatter(roots.real[~unstable], roots.imag[~unstable], marker="o", label="roots (Re < 0)", **style)
    if np.any(unstable):
        ax.scatter(roots.real[unstable], roots.imag[unstable], marker="x", color="tab:red",
                   label="roots (Re >= 0)", **style)
    ax.axvline(0.0, color="black", lw=1, ls="--", label="imaginary axis")
    abscissa = float(np.asarray(result.spectral_abscissa))
    ax.set_xlabel(r"Re $\lambda$")
    ax.set_ylabel(r"Im $\lambda$")
    ax.set_title(title or f"Characteristic roots (spectral abscissa {abscissa:.4g})")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def plot_dde_hopf(result, *, ax=None, title: str | None = None, n_points: int = 200, **kwargs):
    r"""The critical mode of a [`DDEHopfResult`][jaxdyn.invariant.DDEHopfResult]:
    $\operatorname{Re}(v_j e^{i\omega t})$ over one
    period $2\pi/\omega$, one line per component (the shape of the small cycle born at the Hopf
    point, up to amplitude and phase).

    **Arguments:**

    - `result`: a `DDEHopfResult` (one Hopf point, not a batch).
    - `ax`: draw into this axes (default: a new figure). `title`: the axes title.
    - `n_points`: samples over the period. `kwargs`: passed to `ax.plot`.

    **Returns:** the matplotlib axes.
    """
    omega = np.asarray(result.omega)
    if omega.ndim != 0:
        raise ValueError(f"`result` must hold one Hopf point, got a batch of shape {omega.shape}.")
    v = np.asarray(result.eigenvector)
    t = np.linspace(0.0, 2 * np.pi / float(omega), n_points)
    mode = np.real(v[None, :] * np.exp(1j * float(omega) * t)[:, None])
    _, ax = _axes(ax)
    for j in range(v.shape[0]):
        ax.plot(t, mode[:, j], label=f"component {j}", **kwargs)
    ax.set_xlabel("t")
    ax.set_ylabel(r"Re $(v\, e^{i \omega t})$")
    ax.set_title(title or f"Hopf mode at p = {float(np.asarray(result.parameter)):.6g}, "
                 f"period {2 * np.pi / float(omega):.6g}")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax
