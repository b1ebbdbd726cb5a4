"""Delay differential equations on a fixed grid: a `lax.scan` with a ring buffer of past states."""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, is_concrete
from .._types import Args, Array
from ._history import as_history
from ._solve import _check_delays, _initial_state

# Explicit Runge-Kutta tableaus (c, a, b): name -> (nodes, stage matrix rows, weights, order).
_TABLEAUS = {
    "euler": ((0.0,), ((),), (1.0,), 1),
    "heun": ((0.0, 1.0), ((), (1.0,)), (0.5, 0.5), 2),
    "rk4": ((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
            (1 / 6, 1 / 3, 1 / 3, 1 / 6), 4),
}

# Slots beyond ceil(tau_max / dt) + 1 (the points one interpolation can touch): rounding margin.
_SLACK = 2


def _hermite(u, dt, y0, y1, f0, f1):
    """Cubic Hermite interpolant on one step, at the fraction `u` in [0, 1] of the step."""
    u2 = u * u
    u3 = u2 * u
    h00 = 2 * u3 - 3 * u2 + 1
    h10 = u3 - 2 * u2 + u
    h01 = -2 * u3 + 3 * u2
    h11 = u3 - u2
    return h00 * y0 + h10 * dt * f0 + h01 * y1 + h11 * dt * f1


def _capacity(n_steps: int, t0, t1, delays, max_delay) -> int:
    """Static ring-buffer length: ceil(tau_max / dt) + 3 when knowable now, else `n_steps + 1`."""
    full = n_steps + 1
    if not (is_concrete(t0) and is_concrete(t1)):
        return full
    if max_delay is not None:
        bound = float(max_delay)
    elif is_concrete(delays):
        bound = float(np.max(np.asarray(delays)))
    else:
        return full
    dt = (float(t1) - float(t0)) / n_steps
    return min(full, math.ceil(bound / dt) + 1 + _SLACK)


def solve_fixed(field: Callable, history: Any, delays: Array, t0, t1, *, n_steps: int, args: Args = None,
                method: str = "rk4", max_delay: float | None = None) -> tuple[Array, Array]:
    r"""Solve $y'(t) = f(t, y(t), (y(t - \tau_1), \dots, y(t - \tau_k)), \text{args})$ in equal steps.

    The fixed-step fast path for training neural DDEs (the adaptive, breaking-point-aware solver is
    [`jaxdyn.dde.solve`][]). One `jax.lax.scan` takes `n_steps` explicit Runge-Kutta steps of size
    $\Delta t = (t_1 - t_0)/n$ on the grid $t_j = t_0 + j\,\Delta t$.

    - **Ring buffer.** The grid values $y_j$ and slopes $f_j = f(t_j, y_j, \dots)$ are stored in a
      buffer of static length $\lceil \tau_{\max}/\Delta t \rceil + 3$ (slot $j \bmod$ length), enough
      for every delayed time a step can need. When that length cannot be known at trace time (the
      delays or $t_0, t_1$ are traced, e.g. under `jax.grad` w.r.t. the delays) the buffer holds the
      whole grid ($n + 1$ slots) unless `max_delay` gives a static bound.
    - **Delayed values.** $y(s)$ for $s > t_0$ is the **cubic Hermite** interpolant of
      $(y_j, f_j), (y_{j+1}, f_{j+1})$ on the step containing $s$: local error $O(\Delta t^4)$, so the
      delayed values do not lower the order of RK4. For $s \le t_0$ the history is used. The
      interpolant is $C^1$ in $s$, so derivatives with respect to the delays exist.
    - **Restriction.** Every stage time $t_j + c\,\Delta t - \tau_i$ must lie at or before $t_j$, so
      $\Delta t \le \tau_{\min}$ is required (a `ValueError` naming `n_steps`, or `eqx.error_if`
      when the delays are traced); no implicit (iterated) stages are needed.
    - **Order.** `"rk4"` is 4th order, `"heun"` 2nd, `"euler"` 1st, provided the breaking points
      $t_0 + \sum_i n_i \tau_i$ (where the solution is not smooth) lie on the grid, i.e. each
      $\tau_i$ is an integer multiple of $\Delta t$. Otherwise the step containing $t_0 + \tau_i$ sees
      a kink in the delayed value (the history's slope differs from $y'(t_0^+)$), its quadrature is
      only $O(\Delta t^2)$ accurate, and RK4 is **globally 2nd order** (measured: slope 2.0 for
      $x' = -x(t - 1)$ with $\Delta t = 5/13, \dots, 5/104$). Use [`jaxdyn.dde.solve`][], which steps
      onto the breaking points, for reference solutions.
    - **Transforms.** Differentiable (forward and reverse) w.r.t. `args`, the history values and
      `delays`; `vmap`-able over histories; `jit` retraces only when shapes or `n_steps` change.
    - **Gradients w.r.t. the delays** are those of the discrete scheme: piecewise smooth in $\tau_i$.
      The grid step holding $t_j + c\,\Delta t - \tau_i$ (the Hermite interval used) changes where a
      stage's delayed time crosses a grid point, i.e. where $\tau_i$ crosses a multiple of
      $c\,\Delta t$ relative to the grid; the interpolant is $C^1$ there, but its second derivative,
      and the breaking-point kink the scheme smears over one step, make $\partial/\partial\tau_i$ only
      $O(\Delta t)$-accurate near multiples of $\Delta t$ (it approximates the exact derivative of the
      continuous problem as $\Delta t \to 0$). Use [`jaxdyn.dde.solve`][], whose breaking points move
      with $\tau$, where accurate delay gradients matter.

    **Arguments:**

    - `field`: $f$, called as `field(t, y, y_delayed, args)` with `y_delayed` a tuple of arrays in
      the order of `delays` (the convention of [`jaxdyn.dde.solve`][]).
    - `history`: a callable `h(t)` for $t \le t_0$, or a constant array; $y(t_0) = h(t_0)$.
    - `delays`: a 1-D array of constant delays $\tau_i > 0$.
    - `t0`, `t1`: the interval, $t_1 > t_0$.
    - `n_steps`: the number of steps (static); needs $(t_1 - t_0)/n \le \tau_{\min}$.
    - `args`: passed to `field`.
    - `method`: `"rk4"` (default), `"heun"` or `"euler"`.
    - `max_delay`: an optional static upper bound on the delays, to size the ring buffer when the
      delays are traced (checked with `eqx.error_if`).

    **Returns:** `(ts, ys)`: the grid, shape `(n_steps + 1,)`, and $y$ on it, shape
    `(n_steps + 1, *y.shape)`.

    **Example:**

    ```python
    ts, ys = solve_fixed(lambda t, y, yd, args: -yd[0], jnp.array(1.0), jnp.array([1.0]), 0.0, 5.0,
                         n_steps=50)
    ys.shape     # (51,)
    ```
    """
    n_steps = check_int(n_steps, "n_steps")
    if method not in _TABLEAUS:
        raise ValueError(f"`method` must be one of {sorted(_TABLEAUS)}, got {method!r}.")
    for name, value in (("t0", t0), ("t1", t1)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(value)}.")
    if is_concrete(t0) and is_concrete(t1) and not float(t1) > float(t0):
        raise ValueError(f"`t1` must be greater than `t0`, got t0={float(t0)}, t1={float(t1)}.")
    if max_delay is not None and not (np.isfinite(float(max_delay)) and float(max_delay) > 0):
        raise ValueError(f"`max_delay` must be a finite positive number, got {max_delay}.")
    delays = _check_delays(delays)
    history = as_history(history)
    tdtype = jnp.result_type(t0, t1, delays.dtype, float)
    capacity = _capacity(n_steps, t0, t1, delays, max_delay)
    t0 = jnp.asarray(t0, tdtype)
    t1 = jnp.asarray(t1, tdtype)
    delays = delays.astype(tdtype)
    dt = (t1 - t0) / n_steps
    if is_concrete(delays) and is_concrete(dt):
        tau_min = float(np.min(np.asarray(delays)))
        if float(dt) > tau_min * (1 + 1e-12):
            needed = math.ceil(float(t1 - t0) / tau_min - 1e-9)
            raise ValueError(
                f"`n_steps` = {n_steps} gives dt = {float(dt):.6g} > min(delays) = {tau_min:.6g}; the "
                f"fixed-step solver needs dt <= min(delays): use n_steps >= {needed}."
            )
    else:
        delays = eqx.error_if(delays, dt > jnp.min(delays) * (1 + 1e-12),
                              "`jaxdyn.dde.solve_fixed`: dt = (t1 - t0) / n_steps exceeds min(delays); "
                              "increase `n_steps`.")
    if max_delay is not None and not (is_concrete(delays) and float(np.max(np.asarray(delays))) <= max_delay):
        delays = eqx.error_if(delays, jnp.max(delays) > max_delay,
                              "`jaxdyn.dde.solve_fixed`: a delay exceeds `max_delay`.")
    y0 = _initial_state(field, history, t0, delays.shape[0], args)

    nodes, rows, weights, _ = _TABLEAUS[method]
    num_delays = delays.shape[0]

    def delayed_value(ybuf, fbuf, n, s):
        # the step [t_k, t_{k+1}] containing s; k, k + 1 in the buffer: k + 1 <= n, k >= n - capacity + 1
        k = jnp.floor((s - t0) / dt).astype(jnp.int32)
        k = jnp.clip(k, jnp.maximum(n - capacity + 1, 0), jnp.maximum(n - 1, 0))
        u = (s - t0) / dt - k
        i0, i1 = k % capacity, (k + 1) % capacity
        y_buf = _hermite(u.astype(y0.dtype), dt.astype(y0.dtype), ybuf[i0], ybuf[i1], fbuf[i0], fbuf[i1])
        y_hist = jnp.asarray(history(jnp.minimum(s, t0)))
        return jnp.where(s <= t0, y_hist, y_buf)

    def rhs(ybuf, fbuf, n, t, y):
        delayed = tuple(delayed_value(ybuf, fbuf, n, t - delays[i]) for i in range(num_delays))
        return field(t, y, delayed, args)

    ybuf0 = jnp.zeros((capacity,) + y0.shape, y0.dtype)
    fbuf0 = jnp.zeros((capacity,) + y0.shape, y0.dtype)
    f0 = rhs(ybuf0, fbuf0, jnp.array(0), t0, y0)  # every delayed time is <= t0: history only

    dty = dt.astype(y0.dtype)  # the state keeps its dtype (a float32 state with float64 times)

    def step(carry, n):
        y, f, ybuf, fbuf = carry
        t = t0 + n * dt
        slot = n % capacity
        ybuf = ybuf.at[slot].set(y)
        fbuf = fbuf.at[slot].set(f)
        ks = [f]
        for c, row in zip(nodes[1:], rows[1:], strict=True):
            yi = y + dty * sum(a * k for a, k in zip(row, ks, strict=False) if a != 0.0)
            ks.append(rhs(ybuf, fbuf, n, t + c * dt, yi))
        y_next = y + dty * sum(b * k for b, k in zip(weights, ks, strict=True))
        # the slope at t_{n+1}: its delayed times are <= t_n, all in the buffer or the history
        f_next = rhs(ybuf, fbuf, n, t + dt, y_next)
        return (y_next, f_next, ybuf, fbuf), y_next

    _, ys = jax.lax.scan(step, (y0, f0, ybuf0, fbuf0), jnp.arange(n_steps))
    ts = t0 + dt * jnp.arange(n_steps + 1, dtype=tdtype)
    ts = ts.at[-1].set(t1)
    return ts, jnp.concatenate([y0[None], ys])
