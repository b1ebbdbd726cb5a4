"""Breaking points of delay equations with constant delays."""

import itertools

import jax.numpy as jnp
import numpy as np

from .._types import Array


def multi_indices(num_delays: int, max_order: int) -> np.ndarray:
    """All $n \\in \\mathbb{N}^k$ with $1 \\le \\sum_i n_i \\le$ `max_order` (a static NumPy array)."""
    rows = [n for n in itertools.product(range(max_order + 1), repeat=num_delays) if 1 <= sum(n) <= max_order]
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), num_delays)


def breaking_points(t0, t1, delays: Array, max_order: int) -> Array:
    r"""Sorted breaking points $t_0 + \sum_i n_i \tau_i$ with $1 \le \sum_i n_i \le$ `max_order`.

    With constant delays the solution of a DDE is not smooth where a delayed argument crosses an
    earlier non-smooth point: the derivative jumps at $t_0 + \tau_i$ (the history's slope differs
    from $y'(t_0^+)$), the second derivative at $t_0 + \tau_i + \tau_j$, and so on; a method of order
    $p$ must step onto those with $\sum_i n_i \le p + 1$ ([`jaxdyn.dde.solve`][] uses $p + 1$).

    **Arguments:**

    - `t0`, `t1`: the interval.
    - `delays`: a 1-D array of delays $\tau_i > 0$.
    - `max_order`: the largest $\sum_i n_i$ (static).

    **Returns:** an array of static length (number of multi-indices) + 1: the points in
    $(t_0, t_1)$ in increasing order, then $t_1$, then $+\infty$ for the points outside. The points
    are differentiable in `delays`.

    **Example:**

    ```python
    breaking_points(0.0, 3.0, jnp.array([1.0]), 4)   # [1., 2., 3., inf, inf]
    ```
    """
    counts = jnp.asarray(multi_indices(delays.shape[0], max_order), dtype=delays.dtype)
    points = t0 + counts @ delays
    points = jnp.where((points > t0) & (points < t1), points, jnp.inf)
    return jnp.sort(jnp.concatenate([points, jnp.reshape(t1, (1,))]))
