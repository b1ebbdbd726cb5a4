"""Delay differential equations on diffrax's Runge-Kutta solvers: the method of steps."""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, check_positive, is_concrete
from .._types import Args, Array
from ._breakpoints import breaking_points
from ._history import as_history, lookup

SUCCESS = 0
MAX_STEPS_REACHED = 1
NONFINITE = 2
_MESSAGES = [
    "",
    "`jaxdyn.dde.solve`: `max_steps` was reached before `t1` (the step buffer is full).",
    "`jaxdyn.dde.solve`: the solution became non-finite (NaN or inf).",
]


class DDESolution(eqx.Module):
    r"""The solution of a delay differential equation (returned by [`jaxdyn.dde.solve`][]).

    **Attributes:**

    - `ts`: the save times, shape `(n,)`.
    - `ys`: $y$ at `ts`, shape `(n, *y.shape)`, from the dense output.
    - `stats`: `num_accepted_steps`, `num_rejected_steps`, `num_steps` (all tried steps).
    - `result`: `0` success, `1` `max_steps` reached before `t1`, `2` non-finite solution.
    - `t0`, `t1`: the integration interval.

    `evaluate(t)` gives the dense output at any $t \le t_1$ (the history for $t \le t_0$); it accepts a
    scalar or an array of times and is `vmap`-able.
    """

    ts: Array
    ys: Array
    stats: dict[str, Array]
    result: Array
    t0: Array
    t1: Array
    step_starts: Array
    step_ends: Array
    dense_info: Any
    history: Any
    interpolation_cls: Callable = eqx.field(static=True)

    def evaluate(self, t) -> Array:
        """Dense output $y(t)$: a scalar `t` gives `y.shape`, an array `t` gives `(*t.shape, *y.shape)`."""
        t = jnp.asarray(t, dtype=self.t0.dtype)
        n = self.stats["num_accepted_steps"]

        def one(s):
            return lookup(self.interpolation_cls, self.step_starts, self.step_ends, self.dense_info, n,
                          self.t0, self.history, s)

        if t.ndim == 0:
            return one(t)
        flat = jax.vmap(one)(t.reshape(-1))
        return flat.reshape(t.shape + flat.shape[1:])


class _State(eqx.Module):
    t: Array
    y: Array
    dt: Array
    solver_state: Any
    controller_state: Any
    num_accepted: Array
    num_rejected: Array
    num_steps: Array
    result: Array
    starts: Array
    ends: Array
    dense: Any


def _initial_state(field, history, t0, num_delays, args):
    """`history(t0)`, after checking that the history gives a float array and that `field`
    accepts it with `num_delays` delayed values (ValueErrors naming the argument)."""
    try:
        y_struct = jax.eval_shape(history, t0)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`history` could not be evaluated at t0: {type(err).__name__}: {err}") from err
    if not hasattr(y_struct, "shape") or not jnp.issubdtype(y_struct.dtype, jnp.inexact):
        raise ValueError(f"`history` must return a floating-point array, got {y_struct}.")
    _check_field(field, t0, jax.ShapeDtypeStruct(y_struct.shape, y_struct.dtype), num_delays, args)
    return jnp.asarray(history(t0))


def _check_field(field, t0, y0, num_delays, args):
    delayed = tuple(y0 for _ in range(num_delays))
    try:
        out = jax.eval_shape(field, t0, y0, delayed, args)
    except Exception as err:  # noqa: BLE001 - any failure here is a mismatch of `field` with the inputs
        raise ValueError(
            f"`field` must be callable as field(t, y, y_delayed, args) with `y_delayed` a tuple of "
            f"{num_delays} arrays of the state shape {y0.shape} set by `history` (one per delay); calling "
            f"it failed with "
            f"{type(err).__name__}: {err}"
        ) from err
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(y0.shape):
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"`field` must return an array of the state shape {tuple(y0.shape)} set by "
                         f"`history`, got {got}.")


def _check_delays(delays):
    try:
        delays = jnp.asarray(delays)
    except TypeError as err:
        raise ValueError("`delays` must be a 1-D array of positive numbers.") from err
    if delays.ndim != 1 or delays.shape[0] == 0:
        raise ValueError(f"`delays` must be a non-empty 1-D array, got shape {delays.shape}.")
    if not jnp.issubdtype(delays.dtype, jnp.inexact):
        delays = delays.astype(jnp.result_type(float))
    if is_concrete(delays):
        value = np.asarray(delays)
        if not np.all(np.isfinite(value)) or np.any(value <= 0):
            raise ValueError(f"`delays` must all be finite and > 0, got {value}.")
    else:
        delays = eqx.error_if(delays, jnp.any(delays <= 0) | ~jnp.all(jnp.isfinite(delays)),
                              "`delays` must all be finite and > 0.")
    return delays


def solve(field: Callable, history: Any, delays: Array, t0, t1, *, dt0, args: Args = None,
          saveat: Array | None = None, solver: diffrax.AbstractRungeKutta | None = None,
          stepsize_controller: diffrax.AbstractStepSizeController | None = None,
          max_steps: int = 4096, throw: bool = True) -> DDESolution:
    r"""Solve $y'(t) = f(t, y(t), (y(t - \tau_1), \dots, y(t - \tau_k)), \text{args})$ on $[t_0, t_1]$.

    The method of steps on a diffrax Runge-Kutta solver. Every accepted step is stored in a buffer
    of fixed capacity `max_steps` as its interval $[t_n, t_{n+1}]$ and the solver's own dense-output
    data (`dense_info`: for `Tsit5` its 4th-order interpolant, for `Bosh3` a cubic Hermite
    polynomial, 4th-order locally); delayed values $y(t - \tau_i)$ are read from that buffer (the step
    containing $t - \tau_i$ is found with `jnp.searchsorted`) or from the history when
    $t - \tau_i \le t_0$.

    - **Restriction.** Steps are never longer than $\min_i \tau_i$, so every delayed time a stage of
      the step needs lies in an already accepted step or in the history: no implicit (iterated)
      stages are needed.
    - **Breaking points.** The solution of a DDE is not smooth at $t_0 + \sum_i n_i \tau_i$. All such
      points with $\sum_i n_i \le p + 1$ ($p$ the solver's order) in $(t_0, t_1)$ are precomputed
      (a static count) and stepped onto exactly, by clipping a step that would cross one.
    - **Step sizes.** With `diffrax.ConstantStepSize` (default) every step is $\min(dt_0, \tau_{\min})$
      unless clipped. With an adaptive controller such as `diffrax.PIDController(rtol, atol)` the
      solver's embedded error estimate goes through the controller's `adapt_step_size`, and the
      proposed step is then clipped as above.
    - **Accuracy.** With `Tsit5` the dense output is 4th order, so at tight tolerances the global
      error is limited by the interpolation of the delayed values (about $10^{-9}$ to $10^{-10}$
      at `rtol = atol = 1e-10` on the test problems); `Bosh3` reaches its full 3rd order.
    - **Differentiation.** The loop is `equinox.internal.while_loop(kind="bounded")` (as diffrax's
      `DirectAdjoint`), so forward and reverse mode, and their nestings, work; derivatives with
      respect to `delays` include the motion of the breaking points.

    **Arguments:**

    - `field`: $f$, called as `field(t, y, y_delayed, args)` with `y_delayed` a tuple of arrays in
      the order of `delays`.
    - `history`: a callable `h(t)` for $t \le t_0$, or a constant array. $y(t_0) = h(t_0)$, and its
      shape is the shape of the state.
    - `delays`: a 1-D array of constant delays $\tau_i > 0$ (differentiable).
    - `t0`, `t1`: the interval, $t_1 > t_0$.
    - `dt0`: the (initial) step size, $> 0$.
    - `args`: passed to `field`.
    - `saveat`: an array of times in $[t_0, t_1]$ to save at (default: `t1` only).
    - `solver`: a diffrax explicit Runge-Kutta solver with dense output (default `diffrax.Tsit5()`).
    - `stepsize_controller`: `diffrax.ConstantStepSize()` (default) or `diffrax.PIDController`.
    - `max_steps`: the capacity of the step buffer and the bound on tried steps (static).
    - `throw`: raise (via `eqx.error_if`) when `result` is not success; with `throw=False` read
      `result` instead.

    **Returns:** a [`DDESolution`][].

    **Example:**

    ```python
    sol = solve(lambda t, y, yd, args: -yd[0], jnp.array([1.0]), jnp.array([1.0]), 0.0, 5.0,
                dt0=0.05, saveat=jnp.linspace(0.0, 5.0, 11))
    sol.ys.shape            # (11, 1)
    sol.evaluate(2.5)       # dense output
    ```
    """
    max_steps = check_int(max_steps, "max_steps")
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = diffrax.ConstantStepSize()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver, got {type(solver).__name__}.")
    if not isinstance(stepsize_controller, diffrax.ConstantStepSize | diffrax.PIDController):
        raise TypeError("`stepsize_controller` must be diffrax.ConstantStepSize or diffrax.PIDController, "
                        f"got {type(stepsize_controller).__name__}.")
    constant = isinstance(stepsize_controller, diffrax.ConstantStepSize)
    if getattr(solver, "scan_kind", "bounded") is None:
        # As diffrax's `DirectAdjoint`: stage loops that support forward mode and higher derivatives.
        solver = eqx.tree_at(lambda s: s.scan_kind, solver, "bounded", is_leaf=lambda x: x is None)
    check_positive(dt0, "dt0")
    for name, value in (("t0", t0), ("t1", t1)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(value)}.")
    if is_concrete(t0) and is_concrete(t1) and not float(t1) > float(t0):
        raise ValueError(f"`t1` must be greater than `t0`, got t0={float(t0)}, t1={float(t1)}.")
    delays = _check_delays(delays)
    history = as_history(history)
    tdtype = jnp.result_type(t0, t1, delays.dtype, float)
    t0 = jnp.asarray(t0, tdtype)
    t1 = jnp.asarray(t1, tdtype)
    delays = delays.astype(tdtype)
    y0 = _initial_state(field, history, t0, delays.shape[0], args)
    if saveat is None:
        ts = jnp.reshape(t1, (1,))
    else:
        ts = jnp.asarray(saveat, tdtype)
        if ts.ndim != 1:
            raise ValueError(f"`saveat` must be a 1-D array of times, got shape {ts.shape}.")
        if is_concrete(ts) and is_concrete(t0) and is_concrete(t1):
            if np.any(np.asarray(ts) < float(t0)) or np.any(np.asarray(ts) > float(t1)):
                raise ValueError("`saveat` times must lie in [t0, t1].")

    num_delays = delays.shape[0]
    tau_min = jnp.min(delays)
    interp_cls = solver.interpolation_cls
    order = solver.order(None) or 4

    def vector_field(t, y, buffer):
        starts, ends, dense, n = buffer
        delayed = tuple(lookup(interp_cls, starts, ends, dense, n, t0, history, t - delays[i])
                        for i in range(num_delays))
        return field(t, y, delayed, args)

    term = diffrax.ODETerm(vector_field)
    bps = breaking_points(t0, t1, delays, order + 1)
    snap_tol = 64 * jnp.finfo(tdtype).eps * jnp.maximum(jnp.maximum(jnp.abs(t0), jnp.abs(t1)), t1 - t0)
    dt_base = jnp.minimum(jnp.asarray(dt0, tdtype), tau_min)

    # Shapes of the per-step dense output, for the buffer: one step of a term that reads no buffer.
    shape_term = diffrax.ODETerm(lambda t, y, _: field(t, y, tuple(y for _ in range(num_delays)), args))

    def _one_step_dense():
        state = solver.init(shape_term, t0, t0 + dt_base, y0, None)
        return solver.step(shape_term, t0, t0 + dt_base, y0, None, state, made_jump=False)[2]

    dense_struct = jax.eval_shape(_one_step_dense)
    dense0 = jax.tree_util.tree_map(lambda s: jnp.zeros((max_steps,) + s.shape, s.dtype), dense_struct)
    empty_buffer = (jnp.full((max_steps,), jnp.inf, tdtype), jnp.zeros((max_steps,), tdtype), dense0,
                    jnp.array(0))
    solver_state0 = solver.init(term, t0, t0 + dt_base, y0, empty_buffer)
    error_order = solver.error_order(term)
    if constant:
        controller_state0 = None
    else:
        _, controller_state0 = stepsize_controller.init(term, t0, t1, y0, dt_base, empty_buffer, solver.func,
                                                        error_order)

    init = _State(t=t0, y=y0, dt=dt_base, solver_state=solver_state0, controller_state=controller_state0,
                  num_accepted=jnp.array(0), num_rejected=jnp.array(0), num_steps=jnp.array(0),
                  result=jnp.array(SUCCESS), starts=empty_buffer[0], ends=empty_buffer[1], dense=dense0)

    def cond_fun(s):
        return (s.t < t1) & (s.result == SUCCESS) & (s.num_steps < max_steps)

    def body_fun(s):
        next_bp = jnp.min(jnp.where(bps > s.t + snap_tol, bps, jnp.inf))
        t_next = s.t + jnp.minimum(s.dt, tau_min)
        t_next = jnp.where(t_next >= next_bp - snap_tol, next_bp, t_next)
        buffer = (s.starts, s.ends, s.dense, s.num_accepted)
        y1, y_error, dense_info, solver_state, _ = solver.step(term, s.t, t_next, s.y, buffer, s.solver_state,
                                                               made_jump=False)
        finite = jnp.all(jnp.isfinite(y1))
        if constant:
            keep = finite
            dt_new = dt_base
            controller_state = s.controller_state
            result = jnp.where(finite, SUCCESS, NONFINITE)
        else:
            y_error = jnp.where(jnp.isfinite(y_error), y_error, jnp.inf)
            keep, nt0, nt1, _, controller_state, _ = stepsize_controller.adapt_step_size(
                s.t, t_next, s.y, y1, buffer, y_error, error_order, s.controller_state)
            keep = keep & finite
            dt_new = nt1 - nt0
            result = jnp.where(jnp.isfinite(dt_new) & (dt_new > 0), SUCCESS, NONFINITE)
            dt_new = jnp.where(result == SUCCESS, dt_new, s.dt)
        n = s.num_accepted

        def put(buf, value):
            return buf.at[n].set(jnp.where(keep, value, buf[n]))

        def select(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)

        return _State(
            t=jnp.where(keep, t_next, s.t),
            y=jnp.where(keep, y1, s.y),
            dt=dt_new,
            solver_state=select(solver_state, s.solver_state),
            controller_state=controller_state,
            num_accepted=n + keep.astype(n.dtype),
            num_rejected=s.num_rejected + (~keep).astype(n.dtype),
            num_steps=s.num_steps + 1,
            result=result,
            starts=put(s.starts, s.t),
            ends=put(s.ends, t_next),
            dense=jax.tree_util.tree_map(put, s.dense, dense_info),
        )

    final = eqxi.while_loop(cond_fun, body_fun, init, max_steps=max_steps, kind="bounded")
    result = jnp.where((final.result == SUCCESS) & (final.t < t1), MAX_STEPS_REACHED, final.result)
    stats = {"num_accepted_steps": final.num_accepted, "num_rejected_steps": final.num_rejected,
             "num_steps": final.num_steps}
    sol = DDESolution(ts=ts, ys=jnp.zeros(()), stats=stats, result=result, t0=t0, t1=t1,
                      step_starts=final.starts, step_ends=final.ends, dense_info=final.dense, history=history,
                      interpolation_cls=interp_cls)
    ys = sol.evaluate(ts)
    if throw:
        ys = eqx.branched_error_if(ys, result != SUCCESS, result, _MESSAGES)
    return eqx.tree_at(lambda s: s.ys, sol, ys)
