"""Input validation shared by all entry points.

Bad input is rejected at the boundary with a `ValueError`/`TypeError` that names the argument.
Checks on values (finiteness) run eagerly when the value is concrete and become `eqx.error_if`
inside `jit`, so that a traced call still fails loudly instead of returning NaN.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """Whether `x` holds a value now (not a tracer inside `jit`/`vmap`/`grad`)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(x: Any, name: str) -> Any:
    """Reject non-finite entries of `x`: `ValueError` when concrete, `eqx.error_if` when traced."""
    leaves = jax.tree_util.tree_leaves(x)
    if all(is_concrete(leaf) for leaf in leaves):
        for leaf in leaves:
            arr = np.asarray(leaf)
            if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")
        return x
    bad = jnp.array(False)
    for leaf in leaves:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            bad = bad | ~jnp.all(jnp.isfinite(leaf))
    return eqx.error_if(x, bad, f"`{name}` contains non-finite values (NaN or inf).")


def check_shape(x: Any, shape: tuple[int, ...], name: str) -> None:
    """Raise `ValueError` naming `name` unless `jnp.shape(x) == shape`."""
    got = tuple(jnp.shape(x))
    if got != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}, got {got}.")


def check_positive(x: Any, name: str) -> None:
    """Raise `ValueError` unless `x > 0` (checked when concrete; skipped under tracing)."""
    if is_concrete(x):
        value = np.asarray(x)
        if value.shape != ():
            raise ValueError(f"`{name}` must be a scalar, got shape {value.shape}.")
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a finite positive number, got {value}.")


def check_int(x: Any, name: str, *, minimum: int = 1) -> int:
    """Return `x` as `int`, rejecting non-integers and values below `minimum`."""
    if isinstance(x, bool) or not isinstance(x, int | np.integer):
        raise TypeError(f"`{name}` must be an int, got {type(x).__name__}.")
    if x < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {x}.")
    return int(x)


def check_input_vector(x: Any, size: int, *, batch_hint: str = "use jax.vmap(model)(xs)") -> Any:
    """One model input: shape `(size,)` (a batch gets a hint), float dtype, finite values."""
    x = jnp.asarray(x)
    if x.shape != (size,):
        extra = f" (for a batch {batch_hint})" if x.ndim == 2 else ""
        raise ValueError(f"`x` must have shape ({size},), got {x.shape}{extra}.")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return check_finite(x, "x")
