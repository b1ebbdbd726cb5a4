r"""The fixed-step fast path of [`simulate`][]: explicit Runge-Kutta steps under `lax.scan`.

With a fixed-step explicit Runge-Kutta solver (an `AbstractERK` without an error estimate, such as
[`RK4`][], or `diffrax.Euler`) on an ODE, [`simulate`][] does not need diffrax's adaptive machinery
(the while loop over a step budget, the save buffers, the dense-output bookkeeping of every step,
the checkpointed adjoint). This module runs the same solve as one `lax.scan` over the save times
(an inner `lax.scan` over the steps between them) and returns what the diffrax path returns, to
rounding:

- the same step grid: diffrax's `ConstantStepSize` takes $n = \lceil (t_1 - t_0)/\mathrm{dt}_0^+\rceil$
  steps, the first to $t_0 + \mathrm{dt}_0$, step $k \ge 2$ to $t_0 + (t_1 - t_0) k / n$, the last
  to $t_1$ (times within 100 ULP of $t_1$ rounded to $t_1$); the grid is laid out in NumPy from the
  concrete `ts` and `dt0`, in the dtype of the times;
- the same save values: a save time on the grid (within 4 ULP of a grid time) takes the state
  there, one inside a step the solver's own interpolation (`solver.interpolation_cls`, the dense
  output diffrax evaluates) of that step;
- the same failure: the first step whose state is not finite ends the solve
  (`RESULTS.nonfinite_state`, its step and its end time), the save times after it hold NaN;
- the same `.stats` (`num_steps`, `num_accepted_steps`, `num_rejected_steps`, `max_steps`,
  `max_abs_y_end`).

Derivatives are JAX's own through the scans (reverse and forward mode), each step rematerialised
(`jax.checkpoint`) so that reverse mode keeps one state per step and save time. `plan` says
whether the fast path applies (else `None`: [`simulate`][] uses diffrax).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete
from .._kernels import RK4 as _RK4_TABLEAU, Tableau
from .._results import RESULTS

_ON_GRID_ULPS = 4  # a save time this close to a grid time is on it (the state there; `linspace` rounding)
_MAX_SEGMENTS = 32  # snapshots split the scan: beyond this many, diffrax (one program, no unrolling)


class Plan(eqx.Module):
    """The static layout of one fixed-step solve (hashable: part of the compiled program).

    `n_steps` steps; `events`: one tuple `(steps, dense, obs, snap)` per save time after `t0`, in
    time order: the steps to advance before it (`dense`: the last of them is the step that holds
    it, interpolated), and its index into `ts` (`obs`) and into `snapshots` (`snap`), -1 for none."""

    n_steps: int = eqx.field(static=True)
    events: tuple = eqx.field(static=True)
    first_snap: bool = eqx.field(static=True)  # snapshots[0] == ts[0] (the initial state kept)
    tableau: Tableau | None = eqx.field(static=True)  # None: diffrax.Euler
    interpolation: object = eqx.field(static=True)
    retract: bool = eqx.field(static=True, default=False)  # a `Projected` solver: each step onto the sphere


def _tableau(solver) -> Tableau | None:
    """The tableau of a fixed-step explicit RK solver, `None` for `diffrax.Euler` (its own step and
    interpolation), or `False` when `solver` is not one the fast path runs exactly like diffrax."""
    from ._particles import RK4

    if type(solver) is diffrax.Euler:
        return None
    if type(solver) is RK4:
        return _RK4_TABLEAU
    if not isinstance(solver, diffrax.AbstractERK):
        return False
    if type(solver).step is not diffrax.AbstractRungeKutta.step:
        return False  # a solver with its own step: only diffrax knows what it does
    tab = solver.tableau
    if not isinstance(tab, diffrax.ButcherTableau) or np.any(np.asarray(tab.b_error) != 0):
        return False
    a = [tuple(float(x) for x in row) for row in tab.a_lower]
    return Tableau((0.0,) + tuple(float(c) for c in tab.c), ((),) + tuple(a),
                   tuple(float(b) for b in tab.b_sol), 1)


def grid(t0: float, t1: float, dt0: float, dtype) -> np.ndarray:
    """The step times of diffrax's `ConstantStepSize` from `t0` to `t1` with step `dt0`, as diffrax
    computes them (same dtype, same operations)."""
    dtype = np.dtype(dtype)
    t0, t1, dt0 = dtype.type(t0), dtype.type(t1), dtype.type(dt0)
    n = int(np.ceil((t1 - t0) / np.nextafter(dt0, dtype.type(np.inf))))
    n = max(n, 1)
    k = np.arange(n + 1)
    ts = t0 + (t1 - t0) * (k.astype(dtype) / dtype.type(n))
    ts[0] = t0
    ts[1] = t0 + dt0
    ts[n] = t1
    floor = t1
    for _ in range(100):
        floor = np.nextafter(floor, dtype.type(-np.inf))
    ts[1:] = np.where(ts[1:] > floor, t1, ts[1:])
    return ts.astype(dtype)


def plan(solver, ts, dt0, snapshots, *, max_steps: int, fast: bool, adjoint, sde: bool, adaptive: bool,
         sharded: bool) -> Plan | None:
    """The fast-path layout of a [`simulate`][] call, or `None` when diffrax runs it: `fast=False`, an
    `adjoint` given, an SDE, an adaptive or non-RK solver, traced `ts`/`dt0`/`snapshots`, a sharded
    field over several processes, more than `max_steps` steps, save times finer than the steps
    (two inside one step), or more than 32 snapshots. A [`Projected`][] fixed-step solver runs its
    wrapped method, each step retracted onto the sphere (as its diffrax step does)."""
    if not fast or adjoint is not None or sde or adaptive or sharded:
        return None
    from ._attention import Projected

    retract = type(solver) is Projected  # its wrapped method's steps, each retracted onto the sphere
    tab = _tableau(solver.solver if retract else solver)
    if tab is False:
        return None
    if not all(is_concrete(x) for x in (ts, dt0, snapshots) if x is not None):
        return None
    ts_np = np.asarray(ts)
    dtype = ts_np.dtype
    times = grid(ts_np[0], ts_np[-1], float(dt0), dtype)
    n = times.shape[0] - 1
    if n > max_steps:
        return None  # diffrax reports max_steps_reached
    snap = np.zeros((0,), dtype) if snapshots is None else np.asarray(snapshots).astype(dtype)
    if snap.shape[0] > _MAX_SEGMENTS:
        return None
    marks = {}
    for i, s in enumerate(ts_np[1:], start=1):
        marks.setdefault(s, [-1, -1])[0] = i
    first_snap = False
    for i, s in enumerate(snap):
        if s == ts_np[0]:
            first_snap = i == 0
            continue
        marks.setdefault(s, [-1, -1])[1] = i
    events, pos = [], 0
    ulp = np.spacing(np.maximum(np.abs(times), np.finfo(dtype).tiny)).astype(dtype)
    for s in sorted(marks):
        k = int(np.searchsorted(times, s, side="left"))  # the first step end >= s (diffrax's save rule)
        k = min(max(k, 1), n)
        if abs(s - times[k]) <= _ON_GRID_ULPS * ulp[k]:
            dense, end = False, k
        elif abs(s - times[k - 1]) <= _ON_GRID_ULPS * ulp[k - 1] and k - 1 >= pos:
            dense, end = False, k - 1
        else:
            dense, end = True, k
            if k <= pos:
                return None  # two save times inside one step: diffrax's dense output
        events.append((int(end - pos), bool(dense), int(marks[s][0]), int(marks[s][1])))
        pos = end
    if pos != n:
        return None  # cannot happen (ts[-1] == t1 is a grid time); diffrax decides
    interp = solver.interpolation_cls
    return Plan(n, tuple(events), first_snap, tab, interp, retract)


def _stages(field, t, y, h, tab: Tableau | None, args):
    """One step from `(t, y)` of size `h`: `(y1, ks)` with the stage increments $k_i = h f_i$ stacked
    (`(s, *y.shape)`, what diffrax's dense output takes); `ks` is `None` for `diffrax.Euler`."""
    f = lambda s, z: field(s, z, args)  # noqa: E731
    if tab is None:  # diffrax.Euler: y + f h
        return y + f(t, y) * h, None
    return _stage_loop(f, t, y, h, tab)


def _coefficients(tab: Tableau):
    """The tableau as arrays: the stage matrix `a` (s, s), the nodes `c` and the weights `b`."""
    s = len(tab.nodes)
    divisors = tab.row_divisors or (1.0,) * s
    a = np.zeros((s, s))
    for i, (row, d) in enumerate(zip(tab.rows, divisors, strict=True)):
        a[i, :len(row)] = np.asarray(row, dtype=float) / d
    return a, np.asarray(tab.nodes, dtype=float), np.asarray(tab.weights, dtype=float) / tab.weight_divisor


def _stage_loop(f, t, y, h, tab: Tableau):
    """The stages as a loop (`lax.fori_loop`, the field traced once, the increments $k_i = h f_i$ in
    one `(s, *y.shape)` buffer), as diffrax's Runge-Kutta step runs them: on large states cheaper
    than unrolled stages (measured on the FFT ring Kuramoto, N = 10^6, float64: 0.279 against 0.334 s
    of CPU time per RK4 step)."""
    a, c, b = _coefficients(tab)
    s = len(c)
    dtype = y.dtype
    a, c, b = jnp.asarray(a, dtype), jnp.asarray(c, dtype), jnp.asarray(b, dtype)

    def stage(i, ks):
        yi = y + jnp.tensordot(a[i], ks, axes=1)
        return ks.at[i].set(f(t + c[i] * h, yi) * h)

    ks = jax.lax.fori_loop(0, s, stage, jnp.zeros((s,) + y.shape, dtype))
    return y + jnp.tensordot(b, ks, axes=1), ks


@eqx.filter_jit
def run(field, y0, ts, dt0, *, args, plan: Plan, max_steps: int, progress: bool, observe=None,
        snapshots=None):
    """The fixed-step solve laid out by `plan`: the same return as `_solve.integrate`."""
    dtype = ts.dtype
    t0, t1 = ts[0], ts[-1]
    n = plan.n_steps
    n_f = jnp.asarray(n, dtype)
    dt0 = jnp.asarray(dt0, dtype)
    floor = t1
    for _ in range(100):
        floor = jnp.nextafter(floor, jnp.asarray(-jnp.inf, dtype))

    def time(k):
        """The end of step k (k = 0: t0), as diffrax's ConstantStepSize places it."""
        tk = t0 + (t1 - t0) * (k.astype(dtype) / n_f)
        tk = jnp.where(k == n, t1, tk)
        tk = jnp.where(k == 1, t0 + dt0, tk)
        tk = jnp.where(k >= 1, jnp.where(tk > floor, t1, tk), t0)
        return tk

    meter = diffrax.TqdmProgressMeter() if progress else None

    def advance(carry, dense):
        """One step; with `dense`, also the step's interpolation (diffrax's dense output)."""
        y, k, fail_k, fail_size, mstate = carry
        k1 = k + 1
        ta, tb = time(k), time(k1)
        h = tb - ta
        y1, ks = _stages(field, ta, y, h, plan.tableau, args)
        if plan.retract:
            y1 = y1 / jnp.linalg.norm(y1, axis=-1, keepdims=True)
        bad = jnp.logical_not(jnp.all(jnp.isfinite(y1)))
        first = jnp.logical_and(bad, fail_k < 0)
        fail_k = jnp.where(first, k1, fail_k)
        size = lambda: jnp.max(jnp.abs(y1)).astype(fail_size.dtype)  # noqa: E731 (a pass only on failure)
        fail_size = jax.lax.cond(first, size, lambda: fail_size)
        if meter is not None:
            mstate = meter.step(mstate, (ta - t0) / (t1 - t0))
        carry = (y1, k1, fail_k, fail_size, mstate)
        if not dense:
            return carry, None
        if plan.tableau is None:
            interp = plan.interpolation(t0=ta, t1=tb, y0=y, y1=y1)
        else:
            interp = plan.interpolation(t0=ta, t1=tb, y0=y, y1=y1, k=ks)
        return carry, interp

    plain = jax.checkpoint(lambda c: advance(c, False)[0], prevent_cse=False)

    def save(t, y):
        return y if observe is None else observe(t, y, args)

    def event(carry, n_plain, dense, t_save, length):
        """Advance `n_plain` plain steps (an int, or a traced count under a scan of `length` masked
        steps), then, when `dense` (a bool, or traced), the step that holds `t_save`, interpolated;
        the state at `t_save`."""
        if length:
            def body(c, i):
                if isinstance(n_plain, int):
                    return plain(c), None
                return jax.lax.cond(i < n_plain, plain, lambda c: c, c), None

            carry, _ = jax.lax.scan(body, carry, jnp.arange(length))

        def with_dense(c):
            c, interp = advance(c, True)
            return c, interp.evaluate(t_save)

        def without(c):
            return c, c[0]

        if isinstance(dense, bool):
            return jax.checkpoint(with_dense, prevent_cse=False)(carry) if dense else without(carry)
        return jax.lax.cond(dense, jax.checkpoint(with_dense, prevent_cse=False), without, carry)

    fail_size0 = jnp.zeros((), jnp.result_type(jnp.max(jnp.abs(y0))))
    carry = (y0, jnp.asarray(0, jnp.int32), jnp.asarray(-1, jnp.int32), fail_size0,
             meter.init() if meter is not None else None)
    obs_out = {0: save(t0, y0)}
    snap_out = {0: y0} if plan.first_snap else {}

    # Segments end at the snapshot times: a scan over each segment's events, its last event unrolled
    # (its state is a snapshot: the scan would stack states at every event).
    segments, current = [], []
    for ev in plan.events:
        current.append(ev)
        if ev[3] >= 0:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    for seg in segments:
        body_events, last = (seg[:-1], seg[-1]) if seg[-1][3] >= 0 else (seg, None)
        if body_events:
            steps = np.asarray([e[0] for e in body_events], np.int32)
            dense = np.asarray([e[1] for e in body_events])
            obs_idx = [e[2] for e in body_events]
            t_saves = ts[np.asarray(obs_idx)]
            n_plain = steps - dense.astype(np.int32)
            max_plain = int(n_plain.max())
            uniform_plain = bool(np.all(n_plain == max_plain))
            uniform_dense = bool(np.all(dense == dense[0]))

            def scan_body(c, x, uniform_plain=uniform_plain, uniform_dense=uniform_dense,
                          max_plain=max_plain, dense0=bool(dense[0])):
                n_x, d_x, t_save = x
                c, y_save = event(c, max_plain if uniform_plain else n_x, dense0 if uniform_dense else d_x,
                                  t_save, max_plain)
                return c, save(t_save, y_save)

            xs = (jnp.asarray(n_plain), jnp.asarray(dense), t_saves)
            carry, outs = jax.lax.scan(scan_body, carry, xs)
            for j, i in enumerate(obs_idx):
                obs_out[i] = jax.tree_util.tree_map(lambda a, j=j: a[j], outs)
        if last is not None:
            steps, dense, i_obs, i_snap = last
            t_save = ts[i_obs] if i_obs >= 0 else snapshots[i_snap]
            carry, y_save = event(carry, steps - int(dense), bool(dense), t_save, steps - int(dense))
            if i_obs >= 0:
                obs_out[i_obs] = save(t_save, y_save)
            snap_out[i_snap] = y_save
    y_end, k_end, fail_k, fail_size, mstate = carry
    if meter is not None:
        meter.close(mstate)

    observed = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[obs_out[i] for i in range(ts.shape[0])])
    failed = fail_k >= 0
    failed_time = jnp.where(failed, time(jnp.maximum(fail_k, 0)), jnp.nan).astype(dtype)
    result = RESULTS.where(failed, RESULTS.nonfinite_state, RESULTS.successful)
    size_end = jnp.where(failed, fail_size, jnp.max(jnp.abs(y_end)))
    steps_done = jnp.where(failed, fail_k, k_end).astype(jnp.int32)
    stats = dict(num_steps=steps_done, num_accepted_steps=steps_done,
                 num_rejected_steps=jnp.asarray(0, jnp.int32), max_steps=max_steps, max_abs_y_end=size_end)
    failed_step = jnp.where(failed, fail_k, -1).astype(jnp.int32)

    def unreached(times, tree):
        late = jnp.logical_and(failed, times > failed_time)

        def mask(leaf):
            flag = late.reshape(late.shape + (1,) * (leaf.ndim - 1))
            return jnp.where(flag, jnp.asarray(jnp.nan, leaf.dtype), leaf)

        return jax.tree_util.tree_map(mask, tree)

    observed = unreached(ts, observed)
    if observe is None:
        return observed, result, failed_step, failed_time, stats
    if snapshots is not None and snapshots.shape[0]:
        ys = unreached(snapshots, jnp.stack([snap_out[i] for i in range(snapshots.shape[0])]))
    else:
        ys = jnp.zeros((0,) + y0.shape, y0.dtype)
    return ys, result, failed_step, failed_time, stats, observed
