r"""Lyapunov spectra of delay differential equations $y' = f(t, y(t), (y(t - \tau_i))_i, \text{args})$.

The state of a DDE is a function segment; discretised on a grid of step $dt$ it is the window
$X = (y(t - N dt), \dots, y(t))$, and one fixed RK4 step is a map of windows (shift by one point,
append the new one). The QR engine runs on that map with the function-space inner product.
"""

import inspect
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, is_concrete
from .._kernels import RK4, jvp_columns, rk_step
from .._results import check_throw
from .._types import Array
from ._common import (
    check_args,
    check_dt,
    check_k,
    check_output,
    check_steps,
    float_args_to_arrays,
    raise_failed,
    setup_chain,
)
from ._engine import benettin
from ._result import LyapunovResult
from ._systems import AbstractSystem

_STAGES = tuple(sorted(set(RK4.nodes)))  # RK4 stage offsets (in units of dt): 0, 1/2, 1


def _stencil(p: float, n_points: int, n_grid: int) -> tuple[int, np.ndarray]:
    """Lagrange weights of the `n_points` grid nodes around position `p` (in grid units, window
    index `0..n_grid`), the stencil shifted to stay inside the window. A node gives exact weights
    (1 there, 0 elsewhere)."""
    j0 = int(np.clip(np.floor(p) - (n_points // 2 - 1), 0, n_grid + 1 - n_points))
    nodes = np.arange(j0, j0 + n_points, dtype=np.float64)
    w = np.ones(n_points)
    for m in range(n_points):
        for j in range(n_points):
            if j != m:
                w[m] *= (p - nodes[j]) / (nodes[m] - nodes[j])
    return j0, w


class DDEWindowRK4(AbstractSystem):
    r"""One RK4 step of a DDE as a map of history windows (a system for the QR engine).

    The base state `x` is the flat window $(y_{-N}, \dots, y_0)$, shape `((N + 1) * n,)`; the
    tangent block `Q` lives in the *scaled* coordinates $\sqrt{w_j}\, \delta y_j$ (trapezoid
    weights $w_j$), so that the engine's Euclidean QR is the $L^2$ inner product on the segment.
    Delayed values at the stage times come from the window by cubic Lagrange interpolation on
    four neighbouring grid points (`stencils`: static start indices; `weights`: their weights).
    """

    field: Any
    args: Any
    dt: Array
    sqrt_w: Array            # (N + 1,) square roots of the trapezoid weights
    weights: Array           # (n_delays, 3, n_points) interpolation weights per stage offset
    stencils: tuple = eqx.field(static=True)   # (n_delays, 3) start indices
    n_points: int = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def _delayed(self, window, stage):
        out = []
        for i, starts in enumerate(self.stencils):
            j0 = starts[stage]
            seg = window[j0:j0 + self.n_points]
            out.append(self.weights[i, stage] @ seg)
        return tuple(out)

    def advance(self, x, i, key):
        window = x.reshape(-1, self.n)

        def f(s, yy, c):  # the stage node c picks the interpolation weights of the delays
            return self.field(s, yy, self._delayed(window, _STAGES.index(c)), self.args)

        y_new = rk_step(f, i * self.dt, window[-1], self.dt, RK4, with_node=True)
        return jnp.concatenate([window[1:], y_new[None]]).reshape(-1)

    def tangent(self, x, Q, i, key):
        s = jnp.repeat(self.sqrt_w, self.n)[:, None]
        x_new, V = jvp_columns(lambda z: self.advance(z, i, key), x, Q / s)
        return x_new, V * s


def _check_delays(delays, dt: float) -> np.ndarray:
    if not is_concrete(delays):
        raise ValueError("`delays` must be concrete (they fix the size of the state), not traced.")
    d = np.asarray(delays, dtype=np.float64)
    if d.ndim == 0:
        d = d[None]
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"`delays` must be a 1-D array of delays, got shape {d.shape}.")
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"`delays` must be finite and positive, got {d}.")
    if np.any(d < dt * (1 - 1e-9)):
        raise ValueError(
            f"`delays` must be at least `dt` ({dt}) so that every stage is explicit, got {d}."
        )
    return d


def _check_field(field, n_delays: int) -> None:
    if not callable(field):
        raise TypeError(f"`field` must be a callable f(t, y, y_delayed, args), got "
                        f"{type(field).__name__}.")
    try:
        sig = inspect.signature(field)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(0.0, None, (None,) * n_delays, None)
    except TypeError as err:
        raise ValueError(
            f"`field` must accept four arguments f(t, y, y_delayed, args), got signature {sig}."
        ) from err


def _history_window(history, n_grid: int, dt: float, dtype) -> Array:
    """The initial window, shape `(N + 1, n)`, from a constant `(n,)`, a window `(N + 1, n)` or
    a callable `h(t)` evaluated at $t_j = (j - N) dt$."""
    if callable(history):
        ts = (np.arange(n_grid + 1) - n_grid) * dt
        try:
            rows = [jnp.asarray(history(jnp.asarray(s, dtype))) for s in ts]
        except Exception as err:  # noqa: BLE001 - re-raised naming the argument
            raise ValueError(f"`history` failed when called at a grid time: {err}") from err
        shapes = {r.shape for r in rows}
        if len(shapes) != 1 or rows[0].ndim != 1:
            raise ValueError(
                f"`history(t)` must return a 1-D array of one shape at every t, got {shapes}."
            )
        window = jnp.stack(rows)
    else:
        window = jnp.asarray(history)
        if window.ndim == 1:
            window = jnp.broadcast_to(window, (n_grid + 1, window.shape[0]))
        elif window.ndim != 2 or window.shape[0] != n_grid + 1:
            raise ValueError(
                f"`history` must be a constant state of shape (n,), a window of shape "
                f"({n_grid + 1}, n) on the grid t = -{n_grid} dt, ..., 0, or a callable h(t); "
                f"got shape {window.shape}."
            )
    if window.shape[1] == 0:
        raise ValueError("`history` is empty.")
    if not jnp.issubdtype(window.dtype, jnp.inexact):
        window = window.astype(dtype)
    return check_finite(window, "history")


def dde_spectrum(field: Callable, history, delays, *, dt, n_steps: int, k: int | None = None,
                 args=None, transient_steps: int = 0, renorm_every: int = 1, key=None,
                 progress: bool = True, history_every: int | None = None,
                 throw: bool = True) -> LyapunovResult:
    r"""The $k$ largest Lyapunov exponents of $y'(t) = f(t, y(t), (y(t - \tau_1), \dots), \text{args})$.

    A DDE with constant delays is a dynamical system on history segments. On the grid of step
    $dt$, with $N = \lceil \tau_{\max} / dt \rceil$, the state is the window
    $X = (y(t - N dt), \dots, y(t))$ of $(N + 1) n$ values, and one step of classical RK4 maps the
    window to the next one (drop the oldest point, append $y(t + dt)$). The delayed values at the
    stage times $t, t + dt/2, t + dt$ are read from the window by **cubic Lagrange interpolation**
    on the four nearest grid points (exact at grid points: with delays that are multiples of $dt$
    only the half-step stages interpolate; other delays are allowed, $\tau_i \ge dt$, so that
    every stage is explicit). Interpolation error $O(dt^4)$ matches RK4's global order.

    The tangent vectors are pushed through the linearisation of that map by `jax.jvp`, vmapped
    over the $k$ vectors, and re-orthonormalised by the Benettin/QR engine (as
    [`flow_spectrum`][]). **Inner product:** the function-space $L^2$ one on the segment,
    $\langle X, Z \rangle = \sum_j w_j X_j \cdot Z_j$ with trapezoid weights $w_j$ ($dt/2$ at
    both ends, $dt$ inside), implemented by scaling the tangent coordinates by $\sqrt{w_j}$
    before the QR. The asymptotic exponents do not depend on the norm (all norms on a finite
    dimensional space are equivalent), but the finite-time estimates do: the $L^2$ norm is
    uniform in $N$, so the $O(\log(\text{condition}) / T)$ bias does not grow as $dt \to 0$.

    The discretised system has $(N + 1) n$ exponents; the top ones approximate the DDE's
    (for a linear DDE the real parts of its rightmost characteristic roots, each complex pair
    giving two equal exponents) to $O(dt^4)$.

    **Arguments:**

    - `field`: `f(t, y, y_delayed, args)` with `y` of shape `(n,)` and `y_delayed` a tuple of
      `(n,)` arrays in the order of `delays` (as [`jaxdyn.dde.solve`][]); `t = i dt`.
    - `history`: the initial segment: a constant array of shape `(n,)`, a window of shape
      `(N + 1, n)` on the times $-N dt, \dots, 0$ (e.g. the `final_state` of an earlier run,
      reshaped), or a callable `h(t)` returning `(n,)`.
    - `delays`: concrete positive delays, each $\ge dt$ (they fix the state size).
    - `dt`: the step (concrete). `n_steps`: steps after the transient (a multiple of
      `renorm_every`); `transient_steps`: steps discarded first (the tangents run and are
      orthonormalised too).
    - `k`: how many exponents (default all $(N + 1) n$: usually ask for a few).
    - `args`: passed to `field` (Python floats become arrays: a new value does not recompile).
    - `key`, `progress`, `history_every`, `throw` (raise on a failed run, or with `False`
      return its code in `result`): as [`flow_spectrum`][].

    **Returns:** a [`LyapunovResult`][] (exponents per time unit, descending). `final_state` is
    the flat window; `final_tangents` are in the $\sqrt{w}$-scaled coordinates.

    **Example:**

    ```python
    def mackey_glass(t, y, yd, args):
        return 0.2 * yd[0] / (1 + yd[0] ** 10) - 0.1 * y

    res = dde_spectrum(mackey_glass, jnp.array([1.2]), [17.0], dt=0.1, n_steps=200_000, k=1,
                       transient_steps=10_000)
    res.exponents   # ~ [0.005]
    ```
    """
    check_throw(throw)
    n_steps, renorm_every, transient_steps = check_steps(n_steps, renorm_every, transient_steps)
    dt = check_dt(dt)
    if not is_concrete(dt):
        raise ValueError("`dt` must be concrete (it fixes the size of the state), not traced.")
    dt_f = float(np.asarray(dt))
    d = _check_delays(delays, dt_f)
    _check_field(field, d.size)
    ratios = d / dt_f
    near = np.abs(ratios - np.round(ratios)) < 1e-9 * np.maximum(ratios, 1.0)
    ratios = np.where(near, np.round(ratios), ratios)  # multiples of dt hit the grid exactly
    n_grid = int(np.ceil(ratios.max()))
    args = check_args(float_args_to_arrays(args))
    dtype = jnp.result_type(float)
    window = _history_window(history, n_grid, dt_f, dtype)
    dtype = window.dtype
    n = window.shape[1]

    n_points = min(4, n_grid + 1)
    starts, weights = [], []
    for r in ratios:
        row_s, row_w = [], []
        for c in _STAGES:
            j0, w = _stencil(n_grid + c - r, n_points, n_grid)
            row_s.append(j0)
            row_w.append(w)
        starts.append(tuple(row_s))
        weights.append(row_w)
    w_trap = np.full(n_grid + 1, dt_f)
    w_trap[[0, -1]] = dt_f / 2
    dt_arr = jnp.asarray(dt_f, dtype)
    system = DDEWindowRK4(field=field, args=args, dt=dt_arr,
                          sqrt_w=jnp.asarray(np.sqrt(w_trap), dtype),
                          weights=jnp.asarray(np.array(weights), dtype), stencils=tuple(starts),
                          n_points=n_points, n=n)

    x0 = window.reshape(-1)
    dim = x0.shape[0]
    k = check_k(k, dim)
    y_example = window[-1]
    check_output(lambda y: field(dt_arr * 0, y, (y,) * d.size, args), "field", (n,), y_example)
    state0 = setup_chain(x0, k, key)
    config = {"kind": "dde", "dim": dim, "k": k, "renorm_every": renorm_every,
              "transient_steps": transient_steps}
    res = benettin(system, state0, transient_steps=transient_steps,
                   n_blocks=n_steps // renorm_every, renorm_every=renorm_every,
                   time_per_step=dt_arr, progress=progress, checkpoint=None, config=config,
                   desc="dde_spectrum", history_every=history_every)
    return raise_failed(res, throw)
