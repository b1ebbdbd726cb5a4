"""Phase portraits of equilibria, fixed points and cycles (matplotlib imported inside functions)."""

from typing import Any

import numpy as np

from ._plots import _axes

# How a kind is drawn (codes of `jaxdyn.invariant.KINDS`): stable filled, unstable open,
# saddles crosses, non-hyperbolic diamonds.
_STYLE = {
    0: dict(marker="o", facecolors="C0", edgecolors="C0"),
    1: dict(marker="o", facecolors="C0", edgecolors="C0"),
    2: dict(marker="o", facecolors="none", edgecolors="C3"),
    3: dict(marker="o", facecolors="none", edgecolors="C3"),
    4: dict(marker="x", c="C2"),
    5: dict(marker="D", facecolors="none", edgecolors="C1"),
}


def _dims(n: int, dims) -> tuple[int, int | None]:
    if n == 1:
        return 0, None
    i, j = dims
    if not (0 <= i < n and 0 <= j < n and i != j):
        raise ValueError(f"`dims` must be two distinct coordinates below {n}, got {dims}.")
    return int(i), int(j)


def _stream(ax, result, field, args, *, dims: tuple[int, int], n_grid: int, density: float) -> None:
    """A streamplot of the flow (or the map's displacement) over the box, in the plane (i, j)
    through the box centre."""
    import jax
    import jax.numpy as jnp

    i, j = dims
    lower, upper = np.asarray(result.lower, float), np.asarray(result.upper, float)
    xs = np.linspace(lower[i], upper[i], n_grid)
    ys = np.linspace(lower[j], upper[j], n_grid)
    X, Y = np.meshgrid(xs, ys)
    base = np.tile(0.5 * (lower + upper), (X.size, 1))
    base[:, i], base[:, j] = X.ravel(), Y.ravel()
    v = jax.vmap(lambda x: result.classification.displacement(field, x, args))(jnp.asarray(base))
    v = np.asarray(v)
    U, V = v[:, i].reshape(X.shape), v[:, j].reshape(X.shape)
    ax.streamplot(xs, ys, U, V, density=density, color="0.7", linewidth=0.7, arrowsize=0.8)


def _mark(ax, pts, kinds, i, j, *, label_kinds: bool) -> None:
    from jaxdyn.invariant._classify import KINDS

    seen = set()
    for x, k in zip(pts, kinds, strict=True):
        k = int(k)
        label = KINDS[k] if label_kinds and k not in seen else None
        seen.add(k)
        yv = 0.0 if j is None else x[j]
        ax.scatter([x[i]], [yv], s=60, zorder=3, label=label, linewidths=1.5, **_STYLE[k])


def plot_equilibria(result, ax=None, *, field=None, args: Any = None, dims=(0, 1), n_grid: int = 30,
                    density: float = 1.0, title: str | None = None):
    """The points of an `EquilibriaResult` in a phase portrait.

    **Arguments:**

    - `result`: a [`jaxdyn.invariant.EquilibriaResult`][] (unbatched).
    - `ax`: draw into this axes (default: a new figure).
    - `field`: optional; the flow `f(t, y, args)` (or the map `F(x, args)`, drawn as its
      displacement $F(x) - x$), streamplotted over the box in the plane `dims` through its centre.
    - `args`: passed to `field`. `dims`: the two coordinates drawn (a 1-D system is drawn on a line).
    - `n_grid`, `density`: the streamplot's grid and density. `title`: the axes title.

    **Returns:** the axes.

    **Example:**

    ```python
    res = equilibria(field, lower, upper, key=key)
    ax = res.plot(field=field)
    ```
    """
    _, ax = _axes(ax)
    found = np.asarray(result.found)
    if found.ndim != 1:
        raise ValueError("`plot` draws one result; index a batched result first (e.g. `res[0]`).")
    n = int(np.asarray(result.points).shape[-1])
    i, j = _dims(n, dims)
    if field is not None and j is not None:
        _stream(ax, result, field, args, dims=(i, j), n_grid=n_grid, density=density)
    pts = np.asarray(result.points)[found]
    _mark(ax, pts, np.asarray(result.kinds)[found], i, j, label_kinds=True)
    _finish(ax, result, i, j, title or f"{int(found.sum())} point(s)")
    return ax


def plot_cycles(result, ax=None, *, field=None, args: Any = None, dims=(0, 1), n_grid: int = 30,
                density: float = 1.0, title: str | None = None):
    """The orbits of a `CyclesResult` in a phase portrait: each orbit's points joined in order
    (closed), marked by the cycle's kind. Arguments as [`plot_equilibria`][] (`field` is the map).

    **Returns:** the axes.

    **Example:**

    ```python
    res = cycles(logistic, 2, jnp.array([0.0]), jnp.array([1.0]), args=3.2, key=key)
    ax = res.plot()
    ```
    """
    _, ax = _axes(ax)
    found = np.asarray(result.found)
    if found.ndim != 1:
        raise ValueError("`plot` draws one result; index a batched result first (e.g. `res[0]`).")
    orbits = np.asarray(result.orbits)[found]
    n = orbits.shape[-1]
    i, j = _dims(n, dims)
    if field is not None and j is not None:
        _stream(ax, result, field, args, dims=(i, j), n_grid=n_grid, density=density)
    kinds = np.asarray(result.kinds)[found]
    for c, orbit in enumerate(orbits):
        closed = np.concatenate([orbit, orbit[:1]])
        yv = np.zeros(len(closed)) if j is None else closed[:, j]
        ax.plot(closed[:, i], yv, "-", color=f"C{c % 10}", alpha=0.6, lw=1)
        _mark(ax, orbit, np.full(len(orbit), kinds[c]), i, j, label_kinds=c == 0)
    _finish(ax, result, i, j, title or f"{len(orbits)} cycle(s) of period {result.period}")
    return ax


def _finish(ax, result, i, j, title) -> None:
    lower, upper = np.asarray(result.lower, float), np.asarray(result.upper, float)
    ax.set_xlim(lower[i], upper[i])
    if j is not None:
        ax.set_ylim(lower[j], upper[j])
        ax.set_ylabel(f"$x_{j}$")
    else:
        ax.set_yticks([])
    ax.set_xlabel(f"$x_{i}$")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
