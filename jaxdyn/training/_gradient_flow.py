r"""The gradient flow $\theta' = -\nabla L(\theta)$ with diffrax, as a reference for gradient
descent: GD with step $\eta$ after $k$ steps is compared with the flow at time $t = k\eta$.

As Cohen et al. (arXiv 2103.00065) do, the flow is integrated with a fixed step
$h = \min(h_{\max}, c/S)$, re-chosen on every output interval from the sharpness
$S = \lambda_{\max}(H)$ at the interval's start ([`jaxdyn.curvature.sharpness`][]); $c \le 1$
keeps $h\,S \le 1$, well inside the stability region of the explicit solver.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import curvature as _curvature
from .._checks import check_int
from .._results import RESULTS
from .._types import Array, Key, PyTree
from ..curvature._lanczos import check_key
from ._gd import check_data, check_finite_now, check_loss, check_params, split_params


class GradientFlow(eqx.Module):
    r"""How the gradient-flow reference is integrated (a strategy object).

    - `solver`: an explicit diffrax solver (default `diffrax.Tsit5()`; Cohen et al. use RK4,
      `diffrax.Bosh3()` costs half as many gradients per step).
    - `dt_max`: the largest step $h_{\max}$.
    - `safety`: $c$ in $h = \min(h_{\max}, c/S)$ (default 1, Cohen et al.'s choice).
    - `max_steps`: the most solver steps per output interval (a run that needs more stops there
      and reports `result != 0`).
    - `num_iters`: Lanczos iterations for $S$ (`None`: the default of
      [`jaxdyn.curvature.top_eigenvalues`][]).
    - `t_max`: in [`train`][jaxdyn.training.train], follow the flow only up to this time (the
      flow is the expensive part: $\ge 1$ solver step per GD step once $S > 1/h_{\max}$); later
      rows of the distance are `nan`. Default: the whole run.
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    dt_max: float = eqx.field(static=True, default=1.0)
    safety: float = eqx.field(static=True, default=1.0)
    max_steps: int = eqx.field(static=True, default=4096)
    num_iters: int | None = eqx.field(static=True, default=None)
    t_max: float = eqx.field(static=True, default=float("inf"))

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
    the sharpness `S` at the last interval start and a diffrax result code (0: fine)."""

    y: Array
    t: Array
    steps: Array
    sharpness: Array
    result: Array


def _flat_loss(loss, unravel):
    return lambda y, *data: loss(unravel(y), *data)


def _field(t, y, args):
    flat_loss, data = args
    return -jax.grad(flat_loss)(y, *data)


def flow_init(y0: Array) -> FlowState:
    z = jnp.zeros((), y0.dtype)
    return FlowState(y0, z, jnp.zeros((), jnp.int32), jnp.full((), jnp.nan, y0.dtype),
                     jnp.zeros((), jnp.int32))


def flow_sharpness(flow: GradientFlow, flat_loss, y: Array, data: tuple, key: Key | None) -> Array:
    r"""$S = \lambda_{\max}$ of the loss Hessian at the flat point `y` (Lanczos)."""
    op = _curvature.hessian_operator(flat_loss, y, *data)
    return _curvature.top_eigenvalues(op, 1, key=key, num_iters=flow.num_iters).eigenvalues[0]


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
    ok = sol.result == diffrax.RESULTS.successful
    code = jnp.where(ok, 0, 1).astype(jnp.int32)
    return FlowState(y=y1, t=t1, steps=state.steps + sol.stats["num_steps"].astype(jnp.int32),
                     sharpness=S, result=jnp.maximum(state.result, code))


class GradientFlowSolution(eqx.Module):
    r"""The gradient flow sampled at `ts`.

    - `ts`: shape `(n,)`; `params`: the parameters at `ts` (each leaf with a leading axis `n`).
    - `losses`: $L(\theta(t_i))$; `sharpness`: $S$ used on the interval starting at `ts[i]`
      (`nan` for the last row).
    - `steps`: the solver steps taken in all; `result`: 0 if every interval finished, 1 if one
      hit `max_steps` or the flow became non-finite, and the values after it are not to be
      trusted.
    - `status`: the same as a [`jaxdyn._results.RESULTS`][] item (`nonfinite_state`: the flow
      blew up, `nonfinite_loss`: the loss overflowed while the state stayed finite,
      `max_steps_reached`; `result` stays an int for compatibility); `failed_step`: the index
      `i` of the first output time `ts[i]` at which the failure was seen (-1: none), and
      `failed_time = ts[i]`: the blow-up happened in `(ts[i-1], ts[i]]` (`nan`: none). Rows
      from `failed_step` on hold the NaN/inf values reached.
    """

    ts: Array
    params: PyTree
    losses: Array
    sharpness: Array
    steps: Array
    result: Array
    status: RESULTS
    failed_step: Array
    failed_time: Array

    @property
    def successful(self) -> bool:
        return bool(self.status == RESULTS.successful)


@eqx.filter_jit
def _solve(flow, loss, arrays, ts, data, key):
    y0, unravel = ravel_pytree(arrays)
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
                            RESULTS.where(~jnp.isfinite(value), RESULTS.nonfinite_loss,
                                          RESULTS.where(new.result == 0, RESULTS.successful,
                                                        RESULTS.max_steps_reached)))
        first = (code == RESULTS.successful) & (now != RESULTS.successful)
        code = RESULTS.where(first, now, code)
        fstep = jnp.where(first, i + 1, fstep).astype(jnp.int32)
        legacy = jnp.where(code == RESULTS.successful, new.result, 1).astype(jnp.int32)
        new = eqx.tree_at(lambda s: s.result, new, legacy)
        return (new, code, fstep), (new.y, value, S)

    code0 = RESULTS.where(jnp.isfinite(loss0), RESULTS.successful, RESULTS.nonfinite_loss)
    fstep0 = jnp.where(jnp.isfinite(loss0), -1, 0).astype(jnp.int32)
    (state, code, fstep), (ys, losses, sharp) = jax.lax.scan(
        body, (state, code0, fstep0), (ts[1:], jnp.arange(ts.shape[0] - 1)))
    ys = jnp.concatenate([y0[None], ys])
    losses = jnp.concatenate([loss0[None], losses])
    sharp = jnp.concatenate([sharp, jnp.full((1,), jnp.nan, sharp.dtype)])
    ftime = jnp.where(fstep >= 0, ts[jnp.maximum(fstep, 0)], jnp.nan)
    return ys, losses, sharp, state.steps, state.result, code, fstep, ftime


def gradient_flow(loss_fn: Callable, params: PyTree, *data, ts, flow: GradientFlow | None = None,
                  key: Key | None = None) -> GradientFlowSolution:
    r"""Solve the gradient flow $\theta' = -\nabla L(\theta)$, $\theta(t_0) = $ `params`.

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

    **Returns:** a [`GradientFlowSolution`][] (`params` combined with the non-array parts of the
    input, each array leaf stacked over `ts`). A blow-up is a value, not an error: `status`,
    `failed_step` and `failed_time` say where it was first seen.

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
    y0, unravel = ravel_pytree(arrays)
    ts = ts.astype(y0.dtype)
    ys, losses, sharp, steps, result, code, fstep, ftime = _solve(flow, loss, arrays, ts, data, key)
    stacked = jax.vmap(unravel)(ys)
    return GradientFlowSolution(ts=ts, params=eqx.combine(stacked, static), losses=losses,
                                sharpness=sharp, steps=steps, result=result, status=code,
                                failed_step=fstep, failed_time=ftime)
