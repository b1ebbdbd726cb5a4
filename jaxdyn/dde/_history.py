"""Histories $h(t)$, $t \\le t_0$, of delay equations, and dense lookup in the step buffer."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._types import Array


class ConstantHistory(eqx.Module):
    """The history $h(t) = c$ for all $t \\le t_0$."""

    value: Array

    def __call__(self, t):
        del t
        return self.value


def as_history(history: Any) -> Any:
    """A callable `h(t)`: `history` itself if callable, else a [`ConstantHistory`][] of the array."""
    if callable(history):
        return history
    try:
        value = jnp.asarray(history)
    except TypeError as err:
        raise TypeError(
            f"`history` must be a callable h(t) or an array, got {type(history).__name__}."
        ) from err
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        value = value.astype(jnp.result_type(float))
    return ConstantHistory(value)


def lookup(interpolation_cls, starts, ends, dense, num_accepted, t0, history, t):
    r"""$y(t)$ from the history ($t \le t_0$) or from the accepted steps stored so far.

    `starts`/`ends` hold the step intervals (unused slots of `starts` are $+\infty$, so that
    `searchsorted` finds the last step starting at or before $t$), `dense` the solver's dense
    output data of each step. Both branches are evaluated at clamped times so that neither can
    produce a NaN that would leak into gradients through `jnp.where`.
    """
    t_buf = jnp.maximum(t, t0)
    index = jnp.searchsorted(starts, t_buf, side="right") - 1
    index = jnp.clip(index, 0, jnp.maximum(num_accepted - 1, 0))
    valid = num_accepted > 0
    a = jnp.where(valid, starts[index], t0)
    b = jnp.where(valid, ends[index], t0 + 1)
    info = jax.tree_util.tree_map(lambda x: x[index], dense)
    y_buf = interpolation_cls(t0=a, t1=b, **info).evaluate(t_buf)
    y_hist = jnp.asarray(history(jnp.minimum(t, t0)))
    return jnp.where(t <= t0, y_hist, y_buf)
