"""Evaluating maps on grids (shared by the plotting functions and the experiments)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int


@eqx.filter_jit
def _batched(fn, points):
    return jax.vmap(fn)(points)


def evaluate(fn, points):
    """`fn` applied to each row of `points` (shape `(n, d)`), jitted and vmapped.

    Returns NumPy arrays of shape `(n, *out)` (a PyTree of them when `fn` returns one). An
    Equinox model is traced (its arrays are inputs, so a second call with the same model, or
    one of the same structure, reuses the compiled code).
    """
    points = jnp.asarray(points, dtype=jnp.result_type(float))
    if points.ndim != 2:
        raise ValueError(f"`points` must have shape (n, d), got {points.shape}.")
    return jax.tree_util.tree_map(np.asarray, _batched(fn, points))


def grid_values(fn, lower, upper, *, n: int = 101):
    r"""Evaluate a scalar map $f: \mathbb{R}^2 \to \mathbb{R}$ on an `n` by `n` grid of a box.

    **Arguments:**

    - `fn`: takes shape `(2,)`, returns a scalar or shape `(1,)` (e.g. a neural ODE with $q = 1$).
    - `lower`, `upper`: the box corners, shape `(2,)`.
    - `n`: grid points per axis.

    **Returns:** `(X, Y, Z)`, NumPy arrays of shape `(n, n)` as from `np.meshgrid` (`Z[i, j]` is
    $f(X[i, j], Y[i, j])$).
    """
    n = check_int(n, "n", minimum=2)
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    if lower.shape != (2,) or upper.shape != (2,):
        raise ValueError(f"`lower` and `upper` must have shape (2,), got {lower.shape} and "
                         f"{upper.shape}.")
    if not np.all(upper > lower):
        raise ValueError("`upper` must be strictly greater than `lower` in every coordinate.")
    X, Y = np.meshgrid(np.linspace(lower[0], upper[0], n), np.linspace(lower[1], upper[1], n))
    values = evaluate(fn, np.stack([X.ravel(), Y.ravel()], axis=-1))
    if values.size != n * n:
        raise ValueError(f"`fn` must return a scalar or shape (1,), got shape {values.shape[1:]}.")
    return X, Y, values.reshape(n, n)
