"""Histories $h(t)$, $t \\le t_0$, of delay equations, and dense lookup in the step buffer.

Every accepted step $[a, b]$ is stored as the coefficients $c_0, \\dots, c_d$ of its dense output
in the centred monomial basis, $y(s) = \\sum_j c_j x^j$ with $x = (2s - a - b)/(b - a) \\in [-1, 1]$,
so that a delayed value costs one Horner evaluation (no rebuild of the solver's interpolant).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array

# Stored steps one delayed interval [t - tau, t + h - tau] may span (the steps are restricted so
# that it does): the stage lookups search only this window, found from a per-delay pointer.
WINDOW = 16


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


def chebyshev_basis(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev-Lobatto nodes $x_j = \\cos(\\pi j / d)$ on $[-1, 1]$ and the inverse of their
    monomial Vandermonde matrix (static NumPy arrays; well conditioned for $d \\le 8$)."""
    nodes = np.cos(np.pi * np.arange(degree + 1) / degree)
    vandermonde = nodes[:, None] ** np.arange(degree + 1)[None, :]
    return nodes, np.linalg.inv(vandermonde)


_DENSE_MATRICES: dict = {}


def _dense_matrix(solver, degree: int) -> np.ndarray:
    nodes, vinv = chebyshev_basis(degree)
    # unit inputs as the components of one vector-valued step: one evaluation per node gives M's columns
    basis = np.eye(2 + solver.tableau.num_stages)
    with jax.ensure_compile_time_eval():
        interp = solver.interpolation_cls(t0=jnp.asarray(0.0), t1=jnp.asarray(1.0), y0=jnp.asarray(basis[0]),
                                          y1=jnp.asarray(basis[1]), k=jnp.asarray(basis[2:]))
        table = jax.vmap(interp.evaluate)(jnp.asarray(0.5 * (nodes + 1)))
    return vinv @ np.asarray(table, dtype=np.float64)


def dense_matrix(solver, degree: int) -> np.ndarray:
    r"""The static matrix $M$, shape `(d + 1, 2 + s)`, with centred monomial coefficients
    $c = M\,(y_0, y_1, k_1, \dots, k_s)$ of `solver`'s dense output on a step ($k_i = h f_i$ the stage
    increments). Every diffrax Runge-Kutta interpolant is linear in these and depends on the step
    only through $\theta = (t - t_n)/h$, so $M$ is its values at the Chebyshev-Lobatto points for
    unit inputs times the inverse Vandermonde matrix (exact for an interpolant of degree $\le d$),
    computed once per solver type."""
    key = (type(solver), degree, bool(jax.config.jax_enable_x64))
    if key not in _DENSE_MATRICES:
        _DENSE_MATRICES[key] = _dense_matrix(solver, degree)
    return _DENSE_MATRICES[key]


def step_coefficients(matrix: np.ndarray, y0: Array, y1: Array, ks: Array) -> Array:
    """Centred monomial coefficients, shape `(d + 1, *y.shape)`, of one step's dense output."""
    inputs = jnp.concatenate([y0[None], y1[None], ks])
    return jnp.tensordot(jnp.asarray(matrix, y0.dtype), inputs, axes=1)


def horner(coeffs: Array, x) -> Array:
    """$\\sum_j c_j x^j$ for `coeffs` of shape `(d + 1, *y.shape)`."""
    out = coeffs[-1]
    for j in range(coeffs.shape[0] - 2, -1, -1):
        out = out * x + coeffs[j]
    return out


def _evaluate(a, b, coeffs, t0, history, t):
    """The stored polynomial of step $[a, b]$ at $t$, or the history for $t \\le t_0$. Unfilled slots
    ($a = +\\infty$) and the history branch are evaluated at safe arguments, so that neither can
    produce a NaN that would leak into gradients through `jnp.where`."""
    ok = jnp.isfinite(a) & (b > a)
    a = jnp.where(ok, a, t0)
    b = jnp.where(ok, b, t0 + 1)
    x = (2 * t - a - b) / (b - a)
    y_buf = horner(coeffs, x.astype(coeffs.dtype))
    y_hist = jnp.asarray(history(jnp.minimum(t, t0)))
    return jnp.where(t <= t0, y_hist, y_buf)


def window_lookup(window, t0, history, t):
    r"""$y(t)$ from a window of `WINDOW` consecutive stored steps (`window` = starts (`WINDOW + 1`),
    ends, coefficients), whose first step contains or follows every time it is asked for."""
    starts, ends, coeffs = window
    j = jnp.minimum(jnp.sum(starts[1:] <= t), WINDOW - 1)
    return _evaluate(starts[j], ends[j], coeffs[j], t0, history, t)


def lookup(starts, ends, coeffs, t, *, num_accepted, t0, history):
    r"""$y(t)$ from the history ($t \le t_0$) or from all accepted steps (a binary search for the
    last step starting at or before $t$; unused slots of `starts` are $+\infty$)."""
    t_buf = jnp.maximum(t, t0)
    index = jnp.searchsorted(starts, t_buf, side="right") - 1
    index = jnp.clip(index, 0, jnp.maximum(num_accepted - 1, 0))
    return _evaluate(starts[index], ends[index], coeffs[index], t0, history, t)
