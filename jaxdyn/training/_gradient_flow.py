r"""The gradient flow $\theta' = -\nabla L(\theta)$ with diffrax, as a reference for gradient
descent: GD with step $\eta$ after $k$ steps is compared with the flow at time $t = k\eta$.

As Cohen et al. (arXiv 2103.00065) do, the flow is integrated with a fixed step
$h = \min(h_{\max}, c/S)$, re-chosen on every output interval from the sharpness
$S = \lambda_{\max}(H)$ at the interval's start ([`jaxdyn.curvature.sharpness`][]); $c \le 1$
keeps $h\,S \le 1$, well inside the stability region of the explicit solver.
"""

import warnings
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import curvature as _curvature
from .._checks import check_int
from .._deprecate import REMOVED_IN
from .._kernels import flatten
from .._results import RESULTS, AbstractResult, check_throw, from_diffrax, message, raise_if_failed
from .._types import Array, Key, PyTree
from ..curvature._lanczos import check_key
from ._gd import check_data, check_finite_now, check_loss, check_params, split_params, top_eigenvalues


class GradientFlow(eqx.Module):
    r"""How the gradient-flow reference is integrated (a strategy object).

    - `solver`: an explicit diffrax solver (default `diffrax.Tsit5()`; Cohen et al. use RK4,
      `diffrax.Bosh3()` costs half as many gradients per step).
    - `dt_max`: the largest step $h_{\max}$.
    - `safety`: $c$ in $h = \min(h_{\max}, c/S)$ (default 1, Cohen et al.'s choice).
    - `max_steps`: the most solver steps per output interval (a run that needs more stops there
      and reports `RESULTS.max_steps_reached`).
    - `lanczos_steps`: the most Lanczos steps for $S$ (`None`: the default of
      [`jaxdyn.curvature.top_eigenvalues`][]; `num_iters=` is its deprecated spelling).
    - `t_max`: in [`train`][jaxdyn.training.train], follow the flow only up to this time (the
      flow is the expensive part: $\ge 1$ solver step per GD step once $S > 1/h_{\max}$); later
      rows of the distance are `nan`. Default: the whole run.
    """

    solver: diffrax.AbstractSolver
    dt_max: float = eqx.field(static=True)
    safety: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    lanczos_steps: int | None = eqx.field(static=True)
    t_max: float = eqx.field(static=True)

    def __init__(self, solver: diffrax.AbstractSolver | None = None, dt_max: float = 1.0,
                 safety: float = 1.0, max_steps: int = 4096, lanczos_steps: int | None = None,
                 t_max: float = float("inf"), **deprecated):
        if "num_iters" in deprecated:
            if lanczos_steps is not None:
                raise TypeError("`GradientFlow` got both `num_iters` (deprecated) and "
                                "`lanczos_steps`: pass `lanczos_steps` only.")
            warnings.warn("`GradientFlow(num_iters=...)` is deprecated: use `lanczos_steps=...` (the "
                          f"old name goes in jaxdyn {REMOVED_IN}).", DeprecationWarning, stacklevel=2)
            lanczos_steps = deprecated.pop("num_iters")
        if deprecated:
            raise TypeError(f"`GradientFlow` got unexpected arguments {sorted(deprecated)}.")
        self.solver = diffrax.Tsit5() if solver is None else solver
        self.dt_max = dt_max
        self.safety = safety
        self.max_steps = max_steps
        self.lanczos_steps = lanczos_steps
        self.t_max = t_max

    def __check_init__(self):
        if not self.t_max > 0:
            raise ValueError(f"`t_max` must be positive, got {self.t_max}.")
        if not (np.isfinite(self.dt_max) and self.dt_max > 0):
            raise ValueError(f"`dt_max` must be a positive number, got {self.dt_max}.")
        if not (0 < self.safety <= 2):
            raise ValueError(f"`safety` must be in (0, 2], got {self.safety}.")
        check_int(self.max_steps, "max_steps")


class FlowState(eqx.Module):
    """The state carried along the flow: flat parameters `y`, time `t`, solver steps taken so far,
    the sharpness `S` at the last interval start and the first failure of the solver (a
    [`RESULTS`][jaxdyn._results.RESULTS] item, `successful` while there is none)."""

    y: Array
    t: Array
    steps: Array
    sharpness: Array
    result: RESULTS


def _flat_loss(loss, unravel):
    return lambda y, *data: loss(unravel(y), *data)


def _field(t, y, args):
    flat_loss, data = args
    return -jax.grad(flat_loss)(y, *data)


def flow_init(y0: Array) -> FlowState:
    z = jnp.zeros((), y0.dtype)
    return FlowState(y0, z, jnp.zeros((), jnp.int32), jnp.full((), jnp.nan, y0.dtype),
                     RESULTS.successful)


def flow_sharpness(flow: GradientFlow, flat_loss, y: Array, data: tuple, key: Key | None) -> Array:
    r"""$S = \lambda_{\max}$ of the loss Hessian at the flat point `y` (Lanczos)."""
    op = _curvature.hessian_operator(flat_loss, y, *data)
    return top_eigenvalues(op, 1, key=key, lanczos_steps=flow.lanczos_steps).eigenvalues[0]


def flow_advance(flow: GradientFlow, flat_loss, state: FlowState, t1: Array, data: tuple) -> FlowState:
    r"""Integrate from `state.t` to `t1` with the fixed step $\min(h_{\max}, c/S)$, $S$ =
    `state.sharpness` (the sharpness at `state.y`; `nan` means unknown: $h_{\max}$). Traceable."""
    S = state.sharpness
    dtype = state.y.dtype
    dt_max = jnp.asarray(flow.dt_max, dtype)
    big = jnp.isfinite(S) & (S > flow.safety / dt_max)
    dt = jnp.where(big, flow.safety / jnp.where(big, S, 1.0), dt_max)
    t1 = jnp.asarray(t1, dtype)
    length = t1 - state.t
    # a step never longer than the interval (and never zero)
    dt = jnp.minimum(dt, jnp.maximum(length, jnp.finfo(dtype).eps))
    dt = jax.lax.stop_gradient(dt)  # a choice of discretisation: not differentiated
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_field), flow.solver, state.t, t1, dt, state.y, args=(flat_loss, data),
        stepsize_controller=diffrax.ConstantStepSize(), max_steps=flow.max_steps,
        saveat=diffrax.SaveAt(t1=True), throw=False,
    )
    y1 = sol.ys[-1]
    first = RESULTS.where(state.result == RESULTS.successful, from_diffrax(sol.result), state.result)
    return FlowState(y=y1, t=t1, steps=state.steps + sol.stats["num_steps"].astype(jnp.int32),
                     sharpness=S, result=first)


class GradientFlowSolution(AbstractResult):
    r"""The gradient flow sampled at `ts` (from [`gradient_flow`][]; named like `diffrax.Solution`,
    which it mirrors).

    - `ts`: shape `(n,)`; `params`: the parameters at `ts` (each leaf with a leading axis `n`).
    - `losses`: $L(\theta(t_i))$; `sharpness`: $S$ used on the interval starting at `ts[i]`
      (`nan` for the last row).
    - `steps`: the solver steps taken in all.
    - `result`: a [`jaxdyn._results.RESULTS`][] item: `successful`, `nonfinite_state` (the flow
      blew up), `nonfinite_loss` (the loss overflowed while the state stayed finite),
      `max_steps_reached` (an interval needed more than `GradientFlow.max_steps` steps), or
      diffrax's other failures mapped onto ours; `failed_step`: the index `i` of the first output
      time `ts[i]` at which the failure was seen (-1: none), and `failed_time = ts[i]`: the
      blow-up happened in `(ts[i-1], ts[i]]` (`nan`: none). Rows from `failed_step` on hold the
      NaN/inf values reached, not to be trusted.
    """

    ts: Array
    params: PyTree
    losses: Array
    sharpness: Array
    steps: Array
    result: RESULTS
    failed_step: Array
    failed_time: Array

    @property
    def status(self) -> RESULTS:
        """Deprecated: `result` (the code was called `status` while `result` held a 0/1 int)."""
        warnings.warn("`GradientFlowSolution.status` is deprecated: use `.result` (a RESULTS item; "
                      f"the old name goes in jaxdyn {REMOVED_IN}).", DeprecationWarning, stacklevel=2)
        return self.result

    def summary(self) -> str:
        """The time span, the loss at both ends, the solver steps and the result code."""
        ts = np.asarray(self.ts)
        losses = np.asarray(self.losses)
        text = (f"gradient flow: t from {ts[0]:.6g} to {ts[-1]:.6g} ({ts.size} outputs), loss "
                f"{losses[0]:.6g} -> {losses[-1]:.6g}, {int(self.steps)} solver steps")
        if bool(self.successful):
            return text + "; successful."
        return (text + f"; FAILED at output {int(self.failed_step)} (t = {float(self.failed_time):.6g}): "
                + message(self.result))

    def plot(self, ax=None, **kwargs):
        """The loss against time (log scale), with the sharpness on a second axis; returns `ax`."""
        from ..plot._training import draw_gradient_flow

        return draw_gradient_flow(self, ax=ax, **kwargs)


@eqx.filter_jit
def _solve(flow, loss, arrays, ts, data, key):
    y0, unravel = flatten(arrays)
    flat_loss = _flat_loss(loss, unravel)
    state = eqx.tree_at(lambda s: s.t, flow_init(y0), ts[0].astype(y0.dtype))

    loss0 = flat_loss(y0, *data)

    def body(carry, inp):
        state, code, fstep = carry
        t1, i = inp
        k = None if key is None else jax.random.fold_in(key, i)
        S = flow_sharpness(flow, flat_loss, state.y, data, k)
        new = flow_advance(flow, flat_loss, eqx.tree_at(lambda s: s.sharpness, state, S), t1, data)
        value = flat_loss(new.y, *data)
        now = RESULTS.where(~jnp.all(jnp.isfinite(new.y)), RESULTS.nonfinite_state,
                            RESULTS.where(~jnp.isfinite(value), RESULTS.nonfinite_loss, new.result))
        first = (code == RESULTS.successful) & (now != RESULTS.successful)
        code = RESULTS.where(first, now, code)
        fstep = jnp.where(first, i + 1, fstep).astype(jnp.int32)
        return (new, code, fstep), (new.y, value, S)

    code0 = RESULTS.where(jnp.isfinite(loss0), RESULTS.successful, RESULTS.nonfinite_loss)
    fstep0 = jnp.where(jnp.isfinite(loss0), -1, 0).astype(jnp.int32)
    (state, code, fstep), (ys, losses, sharp) = jax.lax.scan(
        body, (state, code0, fstep0), (ts[1:], jnp.arange(ts.shape[0] - 1)))
    ys = jnp.concatenate([y0[None], ys])
    losses = jnp.concatenate([loss0[None], losses])
    sharp = jnp.concatenate([sharp, jnp.full((1,), jnp.nan, sharp.dtype)])
    ftime = jnp.where(fstep >= 0, ts[jnp.maximum(fstep, 0)], jnp.nan)
    return ys, losses, sharp, state.steps, code, fstep, ftime


def gradient_flow(loss_fn: Callable, params: PyTree, *data, ts, flow: GradientFlow | None = None,
                  key: Key | None = None, throw: bool = True) -> GradientFlowSolution:
    r"""Solve the gradient flow $\theta' = -\nabla L(\theta)$, $\theta(t_0)$ = `params`.

    On each interval $[t_i, t_{i+1}]$ the step is fixed at $h = \min(h_{\max}, c/S)$ with $S$
    the sharpness at $\theta(t_i)$ (Lanczos on Hessian-vector products), so $hS \le c$; see
    [`GradientFlow`][]. GD with step $\eta$ after $k$ steps is to be compared with the flow at
    $t = k\eta$ (pass `ts = eta * steps`).

    **Arguments:**

    - `loss_fn`: the mean loss `loss_fn(params, *data) -> scalar`.
    - `params`: the initial point (any PyTree; Equinox models: their floating-point arrays).
    - `*data`: dataset arrays sharing their leading size.
    - `ts`: increasing output times, shape `(n,)` with `n >= 2`; `ts[0]` is the initial time.
    - `flow`: a [`GradientFlow`][] (solver, `dt_max`, `safety`, `max_steps`).
    - `key`: Lanczos start vectors (default: deterministic).
    - `throw`: `True` (default): a blow-up (or an interval that hits `max_steps`) raises
      `eqx.EquinoxRuntimeError` with the code's message (through `eqx.error_if` under `jit`);
      `False`: it is a value: `result`, `failed_step` and `failed_time` say where it was first
      seen.

    **Returns:** a [`GradientFlowSolution`][] (`params` combined with the non-array parts of the
    input, each array leaf stacked over `ts`).

    **Derivatives:** the flow is a fixed-step explicit diffrax solve, differentiable with respect
    to `params`, the data and `ts` (the end time included); the
    step $h = \min(h_{\max}, c/S)$ is chosen from the sharpness without a derivative (a
    discrete choice of discretisation, `stop_gradient`), so the derivative is that of the
    discrete solution with the steps held fixed. Reverse mode only: the solve uses diffrax's
    checkpointed adjoint, and forward mode (`jax.jvp`, `jax.jacfwd`) raises JAX's `TypeError`
    "can't apply forward-mode autodiff (jvp) to a custom_vjp function".

    **Example:**

    ```python
    A = jnp.diag(jnp.array([2.0, 0.5]))
    sol = gradient_flow(lambda th: 0.5 * th @ A @ th, jnp.ones(2), ts=jnp.linspace(0.0, 1.0, 11))
    # sol.params[-1] ~ exp(-A) @ ones
    ```
    """
    check_throw(throw)
    flow = GradientFlow() if flow is None else flow
    if not isinstance(flow, GradientFlow):
        raise TypeError(f"`flow` must be a GradientFlow, got {type(flow).__name__}.")
    check_params(params)
    check_data(data)
    check_loss(loss_fn, params, data)
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must have shape (n,) with n >= 2, got {ts.shape}.")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    if isinstance(ts, jax.core.Tracer):
        pass
    elif not np.all(np.isfinite(np.asarray(ts))):
        raise ValueError("`ts` contains non-finite values (NaN or inf).")
    elif np.any(np.diff(np.asarray(ts)) <= 0):
        raise ValueError("`ts` must be strictly increasing.")
    check_finite_now(params, "params")
    check_finite_now(data, "data")
    if key is not None:
        check_key(key)
    arrays, loss, static = split_params(loss_fn, params)
    y0, unravel = flatten(arrays)
    ts = ts.astype(y0.dtype)
    ys, losses, sharp, steps, code, fstep, ftime = _solve(flow, loss, arrays, ts, data, key)
    stacked = jax.vmap(unravel)(ys)
    sol = GradientFlowSolution(ts=ts, params=eqx.combine(stacked, static), losses=losses,
                               sharpness=sharp, steps=steps, result=code, failed_step=fstep,
                               failed_time=ftime)
    return raise_if_failed(sol, code, throw, hint="(`gradient_flow`: pass `throw=False` to get the "
                           "flow up to the failure, with `failed_step` and `failed_time`.)")
