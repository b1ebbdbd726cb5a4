"""Delay differential equations on a fixed grid: a `lax.scan` with a ring buffer of past states.

`solve_fixed` runs in named steps: `_validate` (bad input is an error naming the argument),
`_march` (the scan of explicit Runge-Kutta steps, `jaxdyn._kernels.rk_step`) and `_assemble` (the
solution with its cubic Hermite dense output, its result code and the failure policy).
"""

import math
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, is_concrete
from .._deprecate import REMOVED_IN
from .._kernels import RK4, TABLEAUS, Tableau, rk_step
from .._results import RESULTS, check_throw, raise_if_failed
from .._types import Args, Array
from ._history import as_history, chebyshev_basis, step_coefficients
from ._solve import DDESolution, _check_delays, _initial_state

# Slots beyond ceil(tau_max / dt) + 1 (the points one interpolation can touch): rounding margin.
_SLACK = 2


def as_tableau(method: Any, where: str) -> Tableau:
    """`method` as an explicit Runge-Kutta [`Tableau`][jaxdyn._kernels.Tableau]: a tableau itself,
    or (deprecated, one release) one of the strings `"rk4"`, `"heun"`, `"euler"`."""
    if isinstance(method, Tableau):
        return method
    if isinstance(method, str) and method in TABLEAUS:
        warnings.warn(f"`{where}(method={method!r})` is deprecated: pass the tableau `jaxdyn.dde."
                      f"{method.upper()}` (the string goes in jaxdyn {REMOVED_IN}).", DeprecationWarning,
                      stacklevel=3)
        return TABLEAUS[method]
    raise ValueError(f"`method` must be an explicit Runge-Kutta tableau (jaxdyn.dde.RK4, jaxdyn.dde.HEUN or "
                     f"jaxdyn.dde.EULER), got {method!r}.")


def _hermite(u, dt, y0, y1, f0, f1):
    """Cubic Hermite interpolant on one step, at the fraction `u` in [0, 1] of the step."""
    u2 = u * u
    u3 = u2 * u
    h00 = 2 * u3 - 3 * u2 + 1
    h10 = u3 - 2 * u2 + u
    h01 = -2 * u3 + 3 * u2
    h11 = u3 - u2
    return h00 * y0 + h10 * dt * f0 + h01 * y1 + h11 * dt * f1


def _hermite_matrix() -> np.ndarray:
    """The cubic Hermite interpolant in the step buffer's centred monomial basis: the matrix $M$
    with coefficients $c = M (y_0, y_1, \\Delta t f_0, \\Delta t f_1)$ (see `_history.dense_matrix`)."""
    nodes, vinv = chebyshev_basis(3)
    u = 0.5 * (nodes + 1)
    table = np.stack([_hermite(u, 1.0, *np.eye(4)[j]) for j in (0, 1, 2, 3)], axis=1)
    return vinv @ table


_HERMITE = _hermite_matrix()


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


class _Grid(eqx.Module):
    """The validated inputs of `solve_fixed` on its grid $t_j = t_0 + j \\Delta t$."""

    field: Callable
    history: Any
    args: Any
    delays: Array
    t0: Array
    t1: Array
    dt: Array
    y0: Array
    n_steps: int = eqx.field(static=True)
    capacity: int = eqx.field(static=True)


def _check_step(delays, dt, t0, t1, n_steps: int, max_delay):
    """$\\Delta t \\le \\tau_{\\min}$ (and the delays $\\le$ `max_delay`): a `ValueError` naming
    `n_steps` when concrete, `eqx.error_if` when the delays are traced."""
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
    return delays


def _validate(field, history, delays, t0, t1, *, n_steps: int, args, max_delay) -> _Grid:
    """Step 1: the inputs checked, the grid, the ring buffer's length and the initial state."""
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
    delays = _check_step(delays, dt, t0, t1, n_steps, max_delay)
    y0 = _initial_state(field, history, t0, delays.shape[0], args)
    return _Grid(field=field, history=history, args=args, delays=delays, t0=t0, t1=t1, dt=dt, y0=y0,
                 n_steps=n_steps, capacity=capacity)


def _march(grid: _Grid, tableau: Tableau) -> tuple[Array, Array]:
    """Step 2: `n_steps` Runge-Kutta steps under one `lax.scan`, the delayed values read from a ring
    buffer of grid values and slopes. Returns the states and slopes on the grid, `(n + 1, *y.shape)`."""
    t0, dt, y0, capacity = grid.t0, grid.dt, grid.y0, grid.capacity

    def delayed_value(ybuf, fbuf, n, s):
        # the step [t_k, t_{k+1}] containing s; k, k + 1 in the buffer: k + 1 <= n, k >= n - capacity + 1
        k = jnp.floor((s - t0) / dt).astype(jnp.int32)
        k = jnp.clip(k, jnp.maximum(n - capacity + 1, 0), jnp.maximum(n - 1, 0))
        u = (s - t0) / dt - k
        i0, i1 = k % capacity, (k + 1) % capacity
        y_buf = _hermite(u.astype(y0.dtype), dt.astype(y0.dtype), ybuf[i0], ybuf[i1], fbuf[i0], fbuf[i1])
        y_hist = jnp.asarray(grid.history(jnp.minimum(s, t0)))
        return jnp.where(s <= t0, y_hist, y_buf)

    def rhs(ybuf, fbuf, n, t, y):
        delayed = tuple(delayed_value(ybuf, fbuf, n, t - grid.delays[i]) for i in range(grid.delays.shape[0]))
        return grid.field(t, y, delayed, grid.args)

    ybuf0 = jnp.zeros((capacity,) + y0.shape, y0.dtype)
    fbuf0 = jnp.zeros((capacity,) + y0.shape, y0.dtype)
    f0 = rhs(ybuf0, fbuf0, jnp.array(0), t0, y0)  # every delayed time is <= t0: history only

    def step(carry, n):
        y, f, ybuf, fbuf = carry
        slot = n % capacity
        ybuf = ybuf.at[slot].set(y)
        fbuf = fbuf.at[slot].set(f)
        t = t0 + n * dt
        # the stages' delayed times are <= t_n (dt <= tau_min): all in the buffer or the history
        y_next = rk_step(lambda s, z: rhs(ybuf, fbuf, n, s, z), t, y, dt, tableau, first=f)
        f_next = rhs(ybuf, fbuf, n, t + dt, y_next)
        return (y_next, f_next, ybuf, fbuf), (y_next, f_next)

    _, (ys, fs) = jax.lax.scan(step, (y0, f0, ybuf0, fbuf0), jnp.arange(grid.n_steps))
    return jnp.concatenate([y0[None], ys]), jnp.concatenate([f0[None], fs])


def _assemble(grid: _Grid, ys: Array, fs: Array, throw: bool) -> DDESolution:
    """Step 3: the solution on the grid with its Hermite dense output; a non-finite state is
    `RESULTS.nonfinite_state` at the first step that produced one."""
    n = grid.n_steps
    ts = grid.t0 + grid.dt * jnp.arange(n + 1, dtype=grid.t0.dtype)
    ts = ts.at[-1].set(grid.t1)
    bad = ~jnp.all(jnp.isfinite(jnp.reshape(ys[1:], (n, -1))), axis=1)
    failed = jnp.any(bad)
    first = jnp.argmax(bad)
    result = RESULTS.where(failed, RESULTS.nonfinite_state, RESULTS.successful)
    hdt = grid.dt.astype(ys.dtype)
    ks = jnp.stack([hdt * fs[:-1], hdt * fs[1:]], axis=1)
    coeffs = jax.vmap(lambda a, b, k: step_coefficients(_HERMITE, a, b, k))(ys[:-1], ys[1:], ks)
    count = jnp.array(n)
    sol = DDESolution(ts=ts, ys=ys, stats={"num_accepted_steps": count, "num_rejected_steps": jnp.array(0),
                                           "num_steps": count},
                      result=result, failed_step=jnp.where(failed, first, -1),
                      failed_time=jnp.where(failed, ts[first], jnp.nan), t0=grid.t0, t1=grid.t1,
                      step_starts=ts[:-1], step_ends=ts[1:], step_coeffs=coeffs, history=grid.history)
    ys = raise_if_failed(ys, result, throw, hint="Pass `throw=False` to get the trajectory (NaN or inf from "
                         "`failed_time` on; see `failed_step`).")
    return eqx.tree_at(lambda s: s.ys, sol, ys)


def solve_fixed(field: Callable, history: Any, delays: Array, t0, t1, *, n_steps: int, args: Args = None,
                method: Tableau = RK4, max_delay: float | None = None, throw: bool = True) -> DDESolution:
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
    - **Order.** `RK4` is 4th order, `HEUN` 2nd, `EULER` 1st, provided the breaking points
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
    - `method`: the explicit Runge-Kutta tableau, [`jaxdyn.dde.RK4`][] (default),
      [`jaxdyn.dde.HEUN`][] or [`jaxdyn.dde.EULER`][] (the strings `"rk4"`, `"heun"`, `"euler"`
      still work for one release, with a `DeprecationWarning`).
    - `max_delay`: an optional static upper bound on the delays, to size the ring buffer when the
      delays are traced (checked with `eqx.error_if`).
    - `throw`: `True` (default) raises an `equinox.EquinoxRuntimeError` when the state becomes
      non-finite (NaN or inf); `False` returns the solution with `result` =
      `RESULTS.nonfinite_state` and the first such step in `failed_step`, `failed_time`.

    **Returns:** a [`DDESolution`][jaxdyn.dde.DDESolution]: `ts` the grid, shape `(n_steps + 1,)`,
    `ys` $y$ on it, shape `(n_steps + 1, *y.shape)`, and `evaluate(t)` the cubic Hermite dense
    output of the grid values and slopes (the interpolant the solver reads its delayed values
    from). Unpacking it as `ts, ys = solve_fixed(...)` (the tuple returned before) works for one
    release, with a `DeprecationWarning`.

    **Example:**

    ```python
    sol = solve_fixed(lambda t, y, yd, args: -yd[0], jnp.array(1.0), jnp.array([1.0]), 0.0, 5.0,
                      n_steps=50)
    sol.ys.shape     # (51,)
    ```
    """
    throw = check_throw(throw)
    n_steps = check_int(n_steps, "n_steps")
    tableau = as_tableau(method, "jaxdyn.dde.solve_fixed")
    grid = _validate(field, history, delays, t0, t1, n_steps=n_steps, args=args, max_delay=max_delay)
    ys, fs = _march(grid, tableau)
    return _assemble(grid, ys, fs, throw)
