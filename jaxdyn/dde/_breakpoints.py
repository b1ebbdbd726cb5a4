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

    Points outside $(t_0, t_1)$ become $+\infty$; $t_1$ is appended, so the result has the static
    length (number of multi-indices) + 1 and its finite entries are the points to step onto.
    The points are differentiable in `delays`.
    """
    counts = jnp.asarray(multi_indices(delays.shape[0], max_order), dtype=delays.dtype)
    points = t0 + counts @ delays
    points = jnp.where((points > t0) & (points < t1), points, jnp.inf)
    return jnp.sort(jnp.concatenate([points, jnp.reshape(t1, (1,))]))
