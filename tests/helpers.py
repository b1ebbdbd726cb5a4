"""Helpers shared by the tests: central finite differences with the right step."""

import jax
import jax.numpy as jnp
import numpy as np


def fd_step(x, dtype=np.float64):
    """eps^(1/3) * scale: the optimal step for central differences."""
    scale = max(1.0, float(np.max(np.abs(np.asarray(x))))) if np.size(x) else 1.0
    return float(np.finfo(dtype).eps ** (1.0 / 3.0) * scale)


def central_directional(fn, x, v, h):
    """(fn(x + h v) - fn(x - h v)) / (2h), for PyTrees x and v."""
    plus = jax.tree_util.tree_map(lambda a, b: a + h * b, x, v)
    minus = jax.tree_util.tree_map(lambda a, b: a - h * b, x, v)
    return jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), fn(plus), fn(minus))


def rel_err(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def random_like(key, tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, jnp.shape(l), jnp.result_type(l)) for k, l in zip(keys, leaves)]
    )
