"""Delay differential equations on diffrax's Runge-Kutta solvers: the method of steps.

`solve` runs in named steps: `_validate` (bad input is an error naming the argument), `_setup` (the
breaking points, the step buffer and the loop's initial state), `_step` (one step of the loop:
`_next_time`, `_stage_delays`, the Runge-Kutta stages, `_accept`), `_run` (the bounded or
checkpointed loop) and `_assemble` (the solution, its result code and the failure policy).
"""

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._deprecate import REMOVED_IN
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Args, Array
from ._breakpoints import breaking_points
from ._history import WINDOW, as_history, dense_matrix, lookup, step_coefficients, window_lookup

# What a failure raised eagerly says after the code's message (the `hint` of `raise_if_failed`).
_HINT = "Pass `throw=False` to get the solution up to the failure (see `failed_step`, `failed_time`)."
_HISTORY_HINT = ("`history` returned non-finite values (NaN or inf) at a delayed time t - tau: the "
                 "solution became non-finite at `failed_time`.")
_BLOWUP_HINT = ("The solution blew up in finite time: the adaptive step size collapsed below the rounding "
                "of t at `failed_time`.")


class DDESolution(AbstractResult):
    r"""The solution of a delay differential equation (returned by [`jaxdyn.dde.solve`][],
    [`jaxdyn.dde.solve_batch`][] and [`jaxdyn.dde.solve_fixed`][]; named after `diffrax.Solution`).

    **Attributes:**

    - `ts`: the save times, shape `(n,)` (for `solve_fixed`: the grid).
    - `ys`: $y$ at `ts`, shape `(n, *y.shape)`, from the dense output.
    - `stats`: `num_accepted_steps`, `num_rejected_steps`, `num_steps` (all tried steps).
    - `result`: a [`jaxdyn.RESULTS`][jaxdyn._results.RESULTS] item: `successful`,
      `max_steps_reached` (`max_steps` tried steps before `t1`), `nonfinite_state` (NaN or inf in
      the state, e.g. a NaN history or an overflow under constant steps), `step_size_too_small`
      (a finite-time blow-up under an adaptive controller: the step size collapsed below the
      rounding of $t$); `jaxdyn._results.message(sol.result)` reads it.
    - `failed_step`: the loop iteration (tried step) at which the failure appeared, `-1` if none.
    - `failed_time`: the time $t$ reached when it appeared (NaN if none): the blow-up time to
      within the last step.
    - `t0`, `t1`: the integration interval.

    `evaluate(t)` gives the dense output at any $t \le t_1$ (the history for $t \le t_0$); it accepts a
    scalar or an array of times and is `vmap`-able. `summary()` says what was solved and how it
    ended; `plot(ax=None)` draws the trajectories against time.
    """

    ts: Array
    ys: Array
    stats: dict[str, Array]
    result: RESULTS
    failed_step: Array
    failed_time: Array
    t0: Array
    t1: Array
    step_starts: Array
    step_ends: Array
    step_coeffs: Array
    history: Any

    def evaluate(self, t) -> Array:
        """Dense output $y(t)$: a scalar `t` gives `y.shape`, an array `t` gives `(*t.shape, *y.shape)`."""
        t = jnp.asarray(t, dtype=self.t0.dtype)
        n = self.stats["num_accepted_steps"]

        def one(s):
            return lookup(self.step_starts, self.step_ends, self.step_coeffs, s, num_accepted=n, t0=self.t0,
                          history=self.history)

        if t.ndim == 0:
            return one(t)
        flat = jax.vmap(one)(t.reshape(-1))
        return flat.reshape(t.shape + flat.shape[1:])

    def summary(self) -> str:
        """What was solved (interval, steps, saved times), the last saved state and the result."""
        t0, t1 = np.ravel(np.asarray(self.t0)), np.ravel(np.asarray(self.t1))
        accepted = np.ravel(np.asarray(self.stats["num_accepted_steps"]))
        rejected = np.ravel(np.asarray(self.stats["num_rejected_steps"]))
        ts, ys = np.asarray(self.ts), np.asarray(self.ys)
        batch = f"{t0.size} solutions, " if t0.size > 1 else ""
        last = ys[:, -1] if t0.size > 1 and ts.ndim > 1 else ys[-1]
        lines = [f"DDE solution ({batch}t in [{t0[0]:g}, {t1[0]:g}]): {int(accepted.sum())} accepted steps, "
                 f"{int(rejected.sum())} rejected; saved at {ts.shape[-1]} times."]
        failed = np.ravel(np.asarray(self.failed_step)) >= 0
        if not np.any(failed):
            lines.append(f"y at t = {float(np.ravel(ts)[-1]):g}: "
                         f"{np.array2string(np.ravel(last)[:6], precision=6)}"
                         + (" ..." if np.size(last) > 6 else ""))
        lines.append(f"result: {message(self.result)}")
        if np.any(failed):
            times = np.ravel(np.asarray(self.failed_time))[failed]
            lines.append(f"failed at step {int(np.ravel(np.asarray(self.failed_step))[failed][0])}, "
                         f"t = {float(times[0]):.6g}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The trajectories against time (every component; the saved times, or the dense output
        when only `t1` was saved), the failure time marked; returns the axes."""
        from ..plot._dde import plot_dde_solution

        return plot_dde_solution(self, ax=ax, **kwargs)

    # Deprecated: `solve_fixed` returned the tuple `(ts, ys)` before it returned a `DDESolution`.
    def __iter__(self):
        _warn_tuple()
        return iter((self.ts, self.ys))

    def __getitem__(self, index):
        _warn_tuple()
        return (self.ts, self.ys)[index]


def _warn_tuple() -> None:
    warnings.warn("Unpacking a `DDESolution` as `(ts, ys)` (what `jaxdyn.dde.solve_fixed` returned) is "
                  f"deprecated: read `sol.ts` and `sol.ys` (the tuple goes in jaxdyn {REMOVED_IN}).",
                  DeprecationWarning, stacklevel=3)


class _State(eqx.Module):
    t: Array
    y: Array
    dt: Array
    f: Array
    controller_state: Any
    num_accepted: Array
    num_rejected: Array
    num_steps: Array
    result: RESULTS
    history_bad: Array
    failed_step: Array
    failed_time: Array
    starts: Array
    ends: Array
    coeffs: Array
    ptr: Array


class _Problem(eqx.Module):
    """The validated inputs of `solve`: the equation, the interval, the initial state, the save times."""

    field: Callable
    history: Any
    args: Any
    delays: Array
    t0: Array
    t1: Array
    y0: Array
    ts: Array
    dt0: Any


class _Stepper(eqx.Module):
    """What one step of the loop needs, built once by `_setup`."""

    problem: _Problem
    solver: diffrax.AbstractERK
    controller: Any
    tau_min: Array
    dt_base: Array
    snap_tol: Array
    bps: Array
    stage_c: Array
    dense: np.ndarray
    error_order: Any
    constant: bool = eqx.field(static=True)
    fsal: bool = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

def _erk_step(tableau, f, t, t_next, y, f0):
    r"""One explicit Runge-Kutta step of `tableau` (diffrax's convention: stage increments
    $k_i = h f_i$, error estimate $\sum_i \beta_i k_i$), unrolled: the stages are straight-line code,
    not a loop. `f(i, t, z)` is the slope of stage `i`. Returns `(y1, y_error, ks, f_last)`, `ks`
    stacked as diffrax's dense output expects and `f_last` the last stage's slope (the next step's
    first stage for FSAL tableaus)."""
    h = t_next - t
    hy = h.astype(y.dtype)
    ks = [hy * f0]
    f_last = f0
    for i, (c, row) in enumerate(zip(tableau.c, tableau.a_lower, strict=True)):
        z = y + sum(float(a) * k for a, k in zip(row, ks, strict=True) if a != 0)
        f_last = f(i + 1, t + float(c) * h, z)
        ks.append(hy * f_last)
    y1 = y + sum(float(b) * k for b, k in zip(tableau.b_sol, ks, strict=True) if b != 0)
    y_error = sum(float(b) * k for b, k in zip(tableau.b_error, ks, strict=True) if b != 0)
    return y1, y_error, jnp.stack(ks), f_last


def _initial_state(field, history, t0, num_delays, args):
    """`history(t0)`, after checking that the history gives a float array and that `field`
    accepts it with `num_delays` delayed values (ValueErrors naming the argument)."""
    try:
        y_struct = jax.eval_shape(history, t0)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`history` could not be evaluated at t0: {type(err).__name__}: {err}") from err
    if not isinstance(y_struct, jax.ShapeDtypeStruct) or not jnp.issubdtype(y_struct.dtype, jnp.inexact):
        raise ValueError(f"`history` must return a floating-point array, got {y_struct}.")
    _check_field(field, t0, jax.ShapeDtypeStruct(y_struct.shape, y_struct.dtype), num_delays, args)
    y0 = jnp.asarray(history(t0))
    if is_concrete(y0) and not np.all(np.isfinite(np.asarray(y0))):
        raise ValueError("`history` returned non-finite values (NaN or inf) at t0.")
    return y0


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
    if not isinstance(out, jax.ShapeDtypeStruct) or tuple(out.shape) != tuple(y0.shape):
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        raise ValueError(f"`field` must return an array of the state shape {tuple(y0.shape)} set by "
                         f"`history`, got {got}.")
    if out.dtype != y0.dtype:
        raise TypeError(f"`field` returned {out.dtype} for a {y0.dtype} state (the dtype of `history`): "
                        f"give `history` and `args` one floating dtype (e.g. `args` cast to {y0.dtype}).")


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


def _check_strategies(solver, controller, adjoint):
    """The defaults, and a `TypeError` naming the argument for a solver, controller or adjoint
    that the method of steps does not support."""
    solver = diffrax.Tsit5() if solver is None else solver
    controller = diffrax.ConstantStepSize() if controller is None else controller
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(solver, diffrax.AbstractERK):
        raise TypeError("`solver` must be an explicit diffrax Runge-Kutta solver (diffrax.AbstractERK, e.g. "
                        f"Tsit5, Bosh3, Dopri5), got {type(solver).__name__}.")
    if not isinstance(controller, diffrax.ConstantStepSize | diffrax.PIDController):
        raise TypeError("`stepsize_controller` must be diffrax.ConstantStepSize or diffrax.PIDController, "
                        f"got {type(controller).__name__}.")
    if not isinstance(adjoint, diffrax.RecursiveCheckpointAdjoint | diffrax.DirectAdjoint):
        raise TypeError("`adjoint` must be diffrax.RecursiveCheckpointAdjoint() or diffrax.DirectAdjoint(), "
                        f"got {type(adjoint).__name__}.")
    return solver, controller, adjoint


def _check_interval(t0, t1, dt0, args) -> None:
    check_positive(dt0, "dt0")
    for name, value in (("t0", t0), ("t1", t1)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(value)}.")
        if is_concrete(value) and not np.isfinite(float(value)):
            raise ValueError(f"`{name}` must be finite, got {float(value)}.")
    leaves = jax.tree_util.tree_leaves(args)
    if all(is_concrete(leaf) for leaf in leaves):
        check_finite([leaf for leaf in leaves if isinstance(leaf, jax.Array | np.ndarray | float)], "args")
    if is_concrete(t0) and is_concrete(t1) and not float(t1) > float(t0):
        raise ValueError(f"`t1` must be greater than `t0`, got t0={float(t0)}, t1={float(t1)}.")


def _save_times(saveat, t0, t1):
    if saveat is None:
        return jnp.reshape(t1, (1,))
    ts = jnp.asarray(saveat, t0.dtype)
    if ts.ndim != 1:
        raise ValueError(f"`saveat` must be a 1-D array of times, got shape {ts.shape}.")
    if is_concrete(ts) and is_concrete(t0) and is_concrete(t1):
        if np.any(np.asarray(ts) < float(t0)) or np.any(np.asarray(ts) > float(t1)):
            raise ValueError("`saveat` times must lie in [t0, t1].")
    return ts


def _validate(field, history, delays, t0, t1, *, dt0, args, saveat) -> _Problem:
    """Step 1: the inputs checked and cast to one time dtype; `history(t0)` is the initial state."""
    _check_interval(t0, t1, dt0, args)
    delays = _check_delays(delays)
    history = as_history(history)
    tdtype = jnp.result_type(t0, t1, delays.dtype, float)
    t0 = jnp.asarray(t0, tdtype)
    t1 = jnp.asarray(t1, tdtype)
    delays = delays.astype(tdtype)
    y0 = _initial_state(field, history, t0, delays.shape[0], args)
    return _Problem(field=field, history=history, args=args, delays=delays, t0=t0, t1=t1, y0=y0,
                    ts=_save_times(saveat, t0, t1), dt0=dt0)


def _field_at(problem: _Problem, t, y, windows):
    """$f(t, y, y(t - \\tau_1), \\dots)$ with the delayed values read from the windows."""
    delayed = tuple(window_lookup(windows[i], problem.t0, problem.history, t - problem.delays[i])
                    for i in range(problem.delays.shape[0]))
    return problem.field(t, y, delayed, problem.args)


def _windows(starts, ends, coeffs, ptr, num_accepted):
    """For each delay the `WINDOW` stored steps from its pointer: (starts, ends, coefficients)."""
    # plain indexing: inside the loop the buffers are equinox loop buffers (read by `[]`, written
    # by `.at[].set`), which the bounded loop updates in place instead of copying them per step.
    # Slots not yet written (index >= num_accepted) read as +inf explicitly: the checkpointed
    # loop's reverse pass re-runs this body against the *final* buffers, where those slots hold
    # later steps, so a read of their stored values would see other data than the forward pass
    # (and its cotangent would be lost). Equinox's buffer contract: read only what was written.
    index = ptr[:, None] + jnp.arange(WINDOW + 1)
    written = index < num_accepted
    return tuple((jnp.where(written[i], starts[index[i]], jnp.inf), ends[index[i, :WINDOW]],
                  coeffs[index[i, :WINDOW]]) for i in range(ptr.shape[0]))


def _setup(problem: _Problem, solver, controller, max_steps: int) -> tuple[_Stepper, _State]:
    """Step 2: the breaking points, the step buffer, the controller and the loop's initial state."""
    t0, t1, y0, delays = problem.t0, problem.t1, problem.y0, problem.delays
    tdtype = t0.dtype
    tableau = solver.tableau
    order = solver.order(None) or 4
    degree = max(3, order)
    tau_min = jnp.min(delays)
    constant = isinstance(controller, diffrax.ConstantStepSize)
    dt_base = jax.lax.stop_gradient(jnp.minimum(jnp.asarray(problem.dt0, tdtype), tau_min))
    # The buffer: step intervals and the centred monomial coefficients of each step's dense output,
    # padded by WINDOW + 1 slots (never written) so that every window slice stays inside it.
    size = max_steps + WINDOW + 1
    starts0 = jnp.full((size,), jnp.inf, tdtype)
    ends0 = jnp.zeros((size,), tdtype)
    coeffs0 = jnp.zeros((size, degree + 1) + y0.shape, y0.dtype)
    ptr0 = jnp.zeros((delays.shape[0],), jnp.int32)
    windows0 = _windows(starts0, ends0, coeffs0, ptr0, jnp.array(0))
    term = diffrax.ODETerm(lambda t, y, windows: _field_at(problem, t, y, windows))
    error_order = solver.error_order(term)
    controller_state0 = None
    if not constant:
        _, controller_state0 = controller.init(term, t0, t1, y0, dt_base, windows0, solver.func, error_order)
    fsal = bool(tableau.fsal)
    f_init = _field_at(problem, t0, y0, windows0) if fsal else jnp.zeros_like(y0)
    stepper = _Stepper(
        problem=problem, solver=solver, controller=controller, tau_min=tau_min, dt_base=dt_base,
        snap_tol=64 * jnp.finfo(tdtype).eps * jnp.maximum(jnp.maximum(jnp.abs(t0), jnp.abs(t1)), t1 - t0),
        bps=breaking_points(t0, t1, delays, order + 1),
        stage_c=jnp.asarray(np.concatenate([[0.0], np.asarray(tableau.c, dtype=float)]), tdtype),
        dense=dense_matrix(solver, degree), error_order=error_order, constant=constant, fsal=fsal,
        max_steps=max_steps)
    init = _State(t=t0, y=y0, dt=dt_base, f=f_init, controller_state=controller_state0,
                  num_accepted=jnp.array(0), num_rejected=jnp.array(0), num_steps=jnp.array(0),
                  result=RESULTS.successful, history_bad=jnp.array(False), failed_step=jnp.array(-1),
                  failed_time=jnp.array(jnp.nan, tdtype), starts=starts0, ends=ends0, coeffs=coeffs0,
                  ptr=ptr0)
    return stepper, init


def _next_time(stp: _Stepper, t, dt, windows):
    """The end of the next step: at most $\\tau_{\\min}$ and the lookup window ahead (the
    restriction), onto the next breaking point when the step would reach it."""
    delays = stp.problem.delays
    limit = jnp.min(jnp.stack([windows[i][0][WINDOW] + delays[i] for i in range(delays.shape[0])]))
    next_bp = jnp.min(jnp.where(stp.bps > t + stp.snap_tol, stp.bps, jnp.inf))
    t_next = jnp.minimum(t + jnp.minimum(dt, stp.tau_min), limit)
    return jnp.where(t_next >= next_bp - stp.snap_tol, next_bp, t_next)


def _stage_delays(stp: _Stepper, t, t_next, windows):
    """The delayed values of all stages at once, and whether the history gave a non-finite one."""
    # The stage times t + c_i h are known before the stages are (their states are not needed), so
    # one vectorised lookup per delay serves them all.
    problem = stp.problem
    h = t_next - t
    stage_times = [t + stp.stage_c * h - problem.delays[i] for i in range(problem.delays.shape[0])]
    delayed = tuple(
        jax.vmap(lambda u, i=i: window_lookup(windows[i], problem.t0, problem.history, u))(stage_times[i])
        for i in range(problem.delays.shape[0]))
    # a non-finite value read from the history (not produced by the solver) is the history's fault
    history_bad = jnp.any(jnp.stack([
        jnp.any(~jnp.isfinite(d) & jnp.reshape(u <= problem.t0, (-1,) + (1,) * (d.ndim - 1)))
        for d, u in zip(delayed, stage_times, strict=True)]))
    return delayed, history_bad


def _accept(stp: _Stepper, s: _State, t_next, y1, y_error):
    """Whether the step is kept, the next step size, the controller state and the step's result."""
    finite = jnp.all(jnp.isfinite(y1))
    if stp.constant:
        return (finite, stp.dt_base, s.controller_state,
                RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite_state))
    y_error = jnp.where(jnp.isfinite(y_error), y_error, jnp.inf)
    # The controller's proposal is a decision, not a function of the delays: its inputs carry no
    # derivative. (diffrax's PID controller freezes only its factor and multiplies the previous
    # step, whose length carries the derivative of the breaking point it was clipped to, so the
    # derivative d h / d tau of one clipped step would ride along every later step.) The grid moves
    # with the delays only where it is pinned: at the breaking points and where a step is limited by
    # tau_min or by the lookup window.
    sg = jax.lax.stop_gradient
    keep, nt0, nt1, _, controller_state, _ = stp.controller.adapt_step_size(
        sg(s.t), sg(t_next), sg(s.y), sg(y1), None, sg(y_error), stp.error_order, sg(s.controller_state))
    keep = keep & finite
    dt_new = nt1 - nt0
    proposed = jnp.isfinite(dt_new) & (dt_new > 0)
    # a proposal below the rounding of t cannot move t: a finite-time blow-up (the state grows
    # without bound as the steps shrink), reported as such instead of running into max_steps
    collapsed = proposed & ~keep & (dt_new <= stp.snap_tol)
    result = RESULTS.where(proposed, RESULTS.successful, RESULTS.nonfinite_state)
    result = RESULTS.where(collapsed, RESULTS.step_size_too_small, result)
    return keep, jnp.where(proposed & ~collapsed, dt_new, s.dt), controller_state, result


def _step(stp: _Stepper, s: _State) -> _State:
    """Step 3, the body of the loop: one tried step of the method of steps."""
    problem = stp.problem
    delays = problem.delays
    windows = _windows(s.starts, s.ends, s.coeffs, s.ptr, s.num_accepted)
    t_next = _next_time(stp, s.t, s.dt, windows)
    delayed, history_bad = _stage_delays(stp, s.t, t_next, windows)

    def stage_field(i, t, y):
        return problem.field(t, y, tuple(d[i] for d in delayed), problem.args)

    f0 = s.f if stp.fsal else stage_field(0, s.t, s.y)
    y1, y_error, ks, f_last = _erk_step(stp.solver.tableau, stage_field, s.t, t_next, s.y, f0)
    keep, dt_new, controller_state, result = _accept(stp, s, t_next, y1, y_error)
    result = RESULTS.where(history_bad, RESULTS.nonfinite_state, result)
    failed = result != RESULTS.successful
    n = s.num_accepted
    coeffs = step_coefficients(stp.dense, s.y, y1, ks)
    advance = jnp.stack([jnp.sum(windows[i][0][1:] <= t_next - delays[i]) for i in range(delays.shape[0])])

    def put(buf, value):
        return buf.at[n].set(value, pred=keep)

    return _State(
        t=jnp.where(keep, t_next, s.t),
        y=jnp.where(keep, y1, s.y),
        dt=dt_new,
        f=jnp.where(keep, f_last, s.f) if stp.fsal else s.f,
        controller_state=controller_state,
        num_accepted=n + keep.astype(n.dtype),
        num_rejected=s.num_rejected + (~keep).astype(n.dtype),
        num_steps=s.num_steps + 1,
        result=result,
        history_bad=history_bad,
        failed_step=jnp.where(failed, s.num_steps, s.failed_step),
        failed_time=jnp.where(failed, s.t, s.failed_time),
        starts=put(s.starts, s.t),
        ends=put(s.ends, t_next),
        coeffs=put(s.coeffs, coeffs),
        ptr=s.ptr + jnp.where(keep, advance, 0).astype(s.ptr.dtype),
    )


def _run(stp: _Stepper, init: _State, adjoint) -> _State:
    """Step 4: the loop, until $t_1$, a failure or `max_steps` tried steps."""
    max_steps = stp.max_steps
    t1 = stp.problem.t1

    def cond_fun(s):
        return (s.t < t1) & (s.result == RESULTS.successful) & (s.num_steps < max_steps)

    def body_fun(s):
        return _step(stp, s)

    buffers = lambda s: (s.starts, s.ends, s.coeffs)  # noqa: E731
    # Reverse mode must linearise around the steps the forward pass took. A step recomputed from an
    # earlier checkpoint is not bit-identical to the forward pass (XLA compiles it in another graph),
    # and an adaptive controller amplifies that rounding: its factor (1/err)^(1/p) of an error
    # estimate near rounding level moves the recomputed grid off the stored one (measured: 1e-7
    # errors in d/d tau at rtol 1e-12). So no step is recomputed from another: every step's input
    # state is kept (it is small; the step buffer, the large part, is never copied), and the
    # bounded loop is one flat scan (`base=max_steps`) whose residuals are stored, not rematerialised.
    if isinstance(adjoint, diffrax.DirectAdjoint):
        return eqxi.while_loop(cond_fun, body_fun, init, max_steps=max_steps, kind="bounded",
                               buffers=buffers, base=max(max_steps, 2))
    return eqxi.while_loop(cond_fun, body_fun, init, max_steps=max_steps, kind="checkpointed",
                           checkpoints=max_steps, buffers=buffers)


def _hint(result, history_bad) -> str:
    """What a failure raised eagerly adds to the code's message (the history's fault told apart)."""
    if not (is_concrete(result._value) and is_concrete(history_bad)) or np.ndim(history_bad):
        return _HINT
    if bool(history_bad):
        return f"{_HISTORY_HINT} {_HINT}"
    if bool(result == RESULTS.step_size_too_small):
        return f"{_BLOWUP_HINT} {_HINT}"
    return _HINT


def _assemble(problem: _Problem, final: _State, throw: bool) -> DDESolution:
    """Step 5: the solution (dense output at the save times), its result code, the failure policy."""
    out_of_steps = (final.result == RESULTS.successful) & (final.t < problem.t1)
    result = RESULTS.where(out_of_steps, RESULTS.max_steps_reached, final.result)
    stats = {"num_accepted_steps": final.num_accepted, "num_rejected_steps": final.num_rejected,
             "num_steps": final.num_steps}
    sol = DDESolution(ts=problem.ts, ys=jnp.zeros(()), stats=stats, result=result,
                      failed_step=jnp.where(out_of_steps, final.num_steps, final.failed_step),
                      failed_time=jnp.where(out_of_steps, final.t, final.failed_time),
                      t0=problem.t0, t1=problem.t1, step_starts=final.starts, step_ends=final.ends,
                      step_coeffs=final.coeffs, history=problem.history)
    ys = sol.evaluate(problem.ts)
    ys = raise_if_failed(ys, result, throw, hint=_hint(result, final.history_bad))
    return eqx.tree_at(lambda s: s.ys, sol, ys)


def solve(field: Callable, history: Any, delays: Array, t0, t1, *, dt0, args: Args = None,
          saveat: Array | None = None, solver: diffrax.AbstractERK | None = None,
          stepsize_controller: diffrax.AbstractStepSizeController | None = None,
          max_steps: int = 4096, adjoint: diffrax.AbstractAdjoint | None = None,
          throw: bool = True) -> DDESolution:
    r"""Solve $y'(t) = f(t, y(t), (y(t - \tau_1), \dots, y(t - \tau_k)), \text{args})$ on $[t_0, t_1]$.

    The method of steps on a diffrax explicit Runge-Kutta solver (its Butcher tableau, embedded
    error estimate and dense interpolant; the stages are unrolled into straight-line code). Every
    accepted step is stored in a buffer of fixed capacity `max_steps` as its interval
    $[t_n, t_{n+1}]$ and the coefficients of the solver's dense output on it (`Tsit5`: its 4th-order
    interpolant; `Bosh3`: a cubic Hermite polynomial) in the centred monomial basis
    $y(s) = \sum_{j=0}^{d} c_j x^j$, $x = (2s - t_n - t_{n+1})/(t_{n+1} - t_n)$, $d = \max(3, p)$:
    one small matrix product per step, $c = M (y_n, y_{n+1}, k_1, \dots, k_s)$, with $M$ fixed per
    solver (see `jaxdyn.dde._history.dense_matrix`). A delayed value $y(t - \tau_i)$ is one Horner
    evaluation, or the history when $t - \tau_i \le t_0$.

    - **Lookup.** For each delay a pointer to the stored step containing $t - \tau_i$ advances
      with $t$; the delayed times of all stages, $t + c_j h - \tau_i \in [t - \tau_i, t + h - \tau_i]$,
      are known before the stages are computed, so they are looked up together, once per step and
      delay, among the 16 stored steps after the pointer (a comparison count, no binary search).
    - **Restriction.** Steps are never longer than $\min_i \tau_i$, so every delayed time a stage of
      the step needs lies in an already accepted step or in the history: no implicit (iterated)
      stages are needed. A step is also clipped so that $[t - \tau_i, t + h - \tau_i]$ spans at most
      16 stored steps (this binds only right after a run of much smaller steps).
    - **Breaking points.** The solution of a DDE is not smooth at $t_0 + \sum_i n_i \tau_i$. All such
      points with $\sum_i n_i \le p + 1$ ($p$ the solver's order) in $(t_0, t_1)$ are precomputed
      (a static count, see [`jaxdyn.dde.breaking_points`][]) and stepped onto exactly, by clipping a
      step that would cross one.
    - **Step sizes.** With `diffrax.ConstantStepSize` (default) every step is $\min(dt_0, \tau_{\min})$
      unless clipped. With an adaptive controller such as `diffrax.PIDController(rtol, atol)` the
      solver's embedded error estimate goes through the controller's `adapt_step_size`, and the
      proposed step is then clipped as above.
    - **Accuracy.** With `Tsit5` the dense output is 4th order, so at tight tolerances the global
      error is limited by the interpolation of the delayed values (about $10^{-9}$ to $10^{-10}$
      at `rtol = atol = 1e-10` on the test problems); `Bosh3` reaches its full 3rd order. `Tsit5`
      is the default: on Mackey-Glass it is faster than `Bosh3` at every error below $10^{-5}$.
    - **Differentiation** (`adjoint`), as in diffrax: with `diffrax.RecursiveCheckpointAdjoint()`
      (default) the loop is a plain `while_loop` when nothing is differentiated, and reverse mode
      (`jax.grad`) recomputes from checkpoints; with `diffrax.DirectAdjoint()` it is
      `equinox.internal.while_loop(kind="bounded")`, so forward mode (`jax.jvp`, `jax.jacfwd`) and
      nestings work too, at about 3x the cost per step (measured on Mackey-Glass). Either way
      derivatives with respect to `args`, the history and `delays` (including the motion of the
      breaking points) are exact derivatives of the computed solution **on its step grid**: the
      controller's choice of steps is a decision and is not differentiated (the grid moves with
      the delays only where a step is pinned: at a breaking point, at $t + \tau_{\min}$ or at the
      end of the lookup window). Reverse mode never recomputes a step from an earlier one (a
      recomputed adaptive step is not bit-identical, and the controller amplifies the difference):
      every step's small loop state is stored (the step buffer is not), so the `checkpoints` of
      `RecursiveCheckpointAdjoint` is not used. The derivative's own accuracy is not
      error-controlled: it is that of the solver on the sensitivity equation, whose solution is
      one order less smooth at the breaking points and whose delayed values need the dense
      output's time derivative (one order lower). On $x' = -x(t - 1)$, $t \le 6$, `Tsit5` with
      `rtol = atol = 1e-9` gives $\partial x/\partial\tau$ to about $2\cdot 10^{-7}$ relative
      (exact closed form); with $\tau = 0.83$ about $10^{-5}$ ($2\cdot 10^{-6}$ at `1e-10`,
      $10^{-7}$ at `1e-12`). `Bosh3`, whose dense output has the method's full order, is at
      $10^{-7}$ already at `1e-10`.
    - **Batches.** `jax.vmap(solve)` works (each member keeps its own steps; the step buffer is an
      equinox loop buffer, written in place); [`jaxdyn.dde.solve_batch`][] integrates a batch with
      shared steps, several times faster for large batches.

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
    - `solver`: a diffrax explicit Runge-Kutta solver (`diffrax.AbstractERK`: `Tsit5` (default),
      `Bosh3`, `Dopri5`, `Dopri8`, `Heun`, ...).
    - `stepsize_controller`: `diffrax.ConstantStepSize()` (default) or `diffrax.PIDController`.
    - `max_steps`: the capacity of the step buffer and the bound on tried steps (static).
    - `adjoint`: `diffrax.RecursiveCheckpointAdjoint()` (default; reverse mode) or
      `diffrax.DirectAdjoint()` (forward and reverse mode, slower).
    - `throw`: `True` (default) raises an `equinox.EquinoxRuntimeError` with the message of
      `result` when it is not `RESULTS.successful` (eagerly, or through `eqx.error_if` under `jit`);
      `False` returns the solution with the code in `result` (and `failed_step`, `failed_time`).

    **Returns:** a [`DDESolution`][].

    **Example:**

    ```python
    sol = solve(lambda t, y, yd, args: -yd[0], jnp.array([1.0]), jnp.array([1.0]), 0.0, 5.0,
                dt0=0.05, saveat=jnp.linspace(0.0, 5.0, 11))
    sol.ys.shape            # (11, 1)
    sol.evaluate(2.5)       # dense output
    ```
    """
    throw = check_throw(throw)
    max_steps = check_int(max_steps, "max_steps")
    solver, controller, adjoint = _check_strategies(solver, stepsize_controller, adjoint)
    problem = _validate(field, history, delays, t0, t1, dt0=dt0, args=args, saveat=saveat)
    stepper, init = _setup(problem, solver, controller, max_steps)
    return _assemble(problem, _run(stepper, init, adjoint), throw)



class _BatchedField(eqx.Module):
    """`field` applied member by member to a batched state `(B, *y.shape)` (`jax.vmap`)."""

    field: Callable

    def __call__(self, t, y, y_delayed, args):
        return jax.vmap(lambda yb, ydb: self.field(t, yb, ydb, args))(y, y_delayed)


class _MemberMaxNorm(eqx.Module):
    """The largest member-wise norm of a batched (scaled) error: every member meets the tolerance."""

    norm: Callable

    def __call__(self, x):
        return jnp.max(jax.vmap(self.norm)(x))


def solve_batch(field: Callable, histories: Any, delays: Array, t0, t1, *, dt0, args: Args = None,
                saveat: Array | None = None, solver: diffrax.AbstractERK | None = None,
                stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                max_steps: int = 4096, adjoint: diffrax.AbstractAdjoint | None = None,
                throw: bool = True) -> DDESolution:
    r"""Solve one delay equation from a batch of $B$ histories with **shared steps**.

    The $B$ solutions are integrated as one state of shape `(B, *y.shape)` by [`solve`][]: `field`
    is applied member by member (`jax.vmap`), every step is taken by all members at once, and an
    adaptive controller's error norm is the **largest member-wise norm**
    $\max_b \|e_b / (\text{atol} + \text{rtol}\,|y_b|)\|$ (the controller's own `norm`, default RMS,
    per member), so every member meets the tolerance it would meet alone. The step sequence is the
    union of what the hardest member needs, so members get at least their own accuracy; with
    `diffrax.ConstantStepSize` the result equals per-member solves to rounding.

    `jax.vmap(solve)` works too (each member keeps its own steps, and equals a loop over members),
    but under `vmap` the loop's condition is per member: it runs until the slowest member is done,
    and every iteration selects the loop state member by member. On Mackey-Glass with 256 histories
    (`benchmarks/dde.py`) `solve_batch` is about 6x faster than `jax.jit(jax.vmap(solve))`.

    **Arguments:** as [`solve`][], except

    - `histories`: an array of shape `(B, *y.shape)` (constant histories, one per member) or a
      callable `h(t)` returning that shape.
    - `field`: $f$ for **one** member, `field(t, y, y_delayed, args)` with `y` of shape `y.shape`;
      `args` are shared by all members.

    **Returns:** a [`DDESolution`][] of the batched state: `ys` has shape `(len(ts), B, *y.shape)`
    (`ys[:, b]` is member `b`) and `evaluate(t)` returns `(B, *y.shape)`.

    **Example:**

    ```python
    sol = solve_batch(lambda t, y, yd, args: -yd[0], jnp.linspace(0.5, 1.5, 8), jnp.array([1.0]),
                      0.0, 5.0, dt0=0.1, stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
    sol.ys.shape            # (1, 8)
    ```
    """
    throw = check_throw(throw)
    if callable(histories):
        batched_history = histories
    else:
        batched_history = as_history(histories)
        if batched_history.value.ndim < 1 or batched_history.value.shape[0] == 0:
            raise ValueError("`histories` must have a leading batch axis of length >= 1, got shape "
                             f"{batched_history.value.shape}.")
    tdtype = jnp.result_type(t0, t1, float)
    try:
        struct = jax.eval_shape(batched_history, jnp.asarray(t0, tdtype))
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`histories` could not be evaluated at t0: {type(err).__name__}: {err}") from err
    if (not isinstance(struct, jax.ShapeDtypeStruct) or len(struct.shape) < 1
            or not jnp.issubdtype(struct.dtype, jnp.inexact)):
        raise ValueError("`histories` must give a floating-point array with a leading batch axis, got "
                         f"{struct}.")
    member = jax.ShapeDtypeStruct(struct.shape[1:], struct.dtype)
    delays = _check_delays(delays)
    _check_field(field, jnp.asarray(t0, tdtype), member, delays.shape[0], args)
    if isinstance(stepsize_controller, diffrax.PIDController):
        stepsize_controller = dataclasses.replace(stepsize_controller,
                                                  norm=_MemberMaxNorm(stepsize_controller.norm))
    return solve(_BatchedField(field), batched_history, delays, t0, t1, dt0=dt0, args=args, saveat=saveat,
                 solver=solver, stepsize_controller=stepsize_controller, max_steps=max_steps, adjoint=adjoint,
                 throw=throw)
