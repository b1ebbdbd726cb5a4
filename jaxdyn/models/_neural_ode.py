"""Neural ODEs with lift and readout: Phi(x) = R(phi_T(L(x)))."""

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_input_vector, check_int, check_positive, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, codes, is_successful, message
from .._types import Args, Array
from ._affine import AbstractLiftedModel, Affine, lift_readout_state

_DEFAULT_RTOL = 1e-6
_DEFAULT_ATOL = 1e-8

# The failures a solve can end in, each with its own sentence in the error raised by `throw=True`
# (diffrax's codes mapped onto ours: a collapse of the step size is a blow-up or a singular field,
# diffrax's other failures are `not_converged`).
_FAILURES = (RESULTS.nonfinite_state, RESULTS.finite_time_blowup, RESULTS.step_size_too_small,
             RESULTS.max_steps_reached, RESULTS.not_converged)
# Under `jit` an error message must be a static string: the time reached is reported to within
# t1 / _TIME_BUCKETS by choosing among one message per bucket (see `_failure_messages`).
_TIME_BUCKETS = 100


def _is_float_t1(t1) -> bool:
    return isinstance(t1, float)


class NeuralODE(AbstractLiftedModel):
    r"""A neural ODE as an input-output map, $\Phi(x) = R(\phi_T(L(x)))$.

    $L(x) = A x + a$ lifts $\mathbb{R}^d \to \mathbb{R}^m$, $\phi_T$ is the time-$T$ flow of
    $h' = f(t, h, \text{args})$ and $R(h) = B h + b$ reads out $\mathbb{R}^m \to \mathbb{R}^q$.
    Either affine map may be the identity (`None`). With $m \le d$ and a full-rank lift the
    architecture is *non-augmented* (it cannot represent maps with critical points); with
    $m \ge d + q$ it represents every smooth map exactly (see [`jaxdyn.models.embed`][]).

    **Arguments:**

    - `field`: any diffrax-compatible vector field `f(t, y, args)`: an Equinox module such as
      [`MLPField`][] (its parameters are trained) or a plain callable (then jit the model with
      `eqx.filter_jit`, which treats the function as static, rather than `jax.jit`).
    - `lift`, `readout`: `None` (identity), an [`Affine`][], an `eqx.nn.Linear` or a weight matrix.
    - `state_size`: $m$, needed only when it can be read from neither the lift, the readout nor
      `field.size`.
    - `t1`: the final time $T > 0$. A Python number is a constant of the model (it is not an
      array leaf, so [`jaxdyn.models.fit`][], `eqx.filter_grad` and the curvature operators leave
      it alone, and `eqx.filter_jit` compiles once per value). A JAX array scalar makes $T$ a
      differentiable leaf: $d\Phi/dT$ by `jax.grad`/`jax.jvp` (see the example), `vmap` over
      several $T$, or training $T$ with the other parameters.
    - `solver`, `stepsize_controller`, `dt0`, `max_steps`: passed to `diffrax.diffeqsolve`
      (defaults: `Tsit5()` with a `PIDController(rtol=1e-6, atol=1e-8)`; `max_steps` 4096, or
      the exact step count $\lceil T/dt_0 \rceil + 1$ with a constant step size, computed from
      the `t1` given here: give `max_steps` yourself before swapping in a larger $T$).
    - `adjoint`: how reverse-mode derivatives are taken (see the adjoint policy below).

    **Adjoint policy.** Training uses diffrax's `RecursiveCheckpointAdjoint` (the default here:
    reverse mode with bounded memory). It, like `BacksolveAdjoint`, cannot be differentiated a
    second time, nor in forward mode (`jax.jvp`/`jax.jacfwd` raise a `TypeError` that names
    `custom_vjp`), so everything in jaxdyn that needs second-order or forward-over-reverse
    derivatives (Hessians of $\Phi$ and Morse analysis, Hessian-vector products of losses, tangent
    propagation for Lyapunov exponents) calls [`jaxdyn.models.second_order`][] first, which swaps in
    `diffrax.DirectAdjoint` (any nesting of `jvp` and `vjp`). Do the same for your own
    forward-mode or second-order code: `jax.hessian(second_order(model))(x)`.
    `diffrax.BacksolveAdjoint` (reverse mode, memory independent of the number of steps,
    gradients accurate to the solver tolerance) is allowed when the field's parameters are
    passed as data (an Equinox module field, or `args`), never closed over, and with `t1` a
    Python number (it cannot differentiate in $T$: an array `t1` raises a `TypeError` there).

    **Failures.** A run that cannot reach $T$ is never silent. [`NeuralODE.solve`][] returns a
    [`NeuralODESolution`][] whose `result` (a `RESULTS` item of `jaxdyn._results`) says what
    failed: `finite_time_blowup` (the step size collapsed while the state grew without bound,
    e.g. $h' = h^2$, $h(0) = 1$ blows up at $t = 1$), `nonfinite_state` (the state became NaN or
    inf, typically with a constant step size), `step_size_too_small` (the field returned NaN or
    inf at a finite state), `max_steps_reached` (a genuine lack of steps), with `failed_step` and
    `failed_time` (and [`NeuralODE.variational`][] with `throw=False` returns the code in a
    [`VariationalResult`][]). `__call__`, `flow`, `batch`, `trajectory` and `variational` raise an
    `eqx.EquinoxRuntimeError` with the same diagnosis and the time reached: exact outside `jit`;
    inside `eqx.filter_jit` (where messages are static strings) to within $T/100$, by choosing
    among one message per time bucket, when $T$ is a Python number. A non-finite state is
    located (step and time) by `solve` and `trajectory`, which stop at it (a diffrax event, about
    a fifth more compile time, so the other methods skip it and say only "before t1"; with
    `BacksolveAdjoint`, which allows no events, it is seen at $T$). A collapse is told from a
    lack of steps by the controller's record: a blow-up rejects more steps than it accepts, a
    long regular run does not.

    **Example:**

    ```python
    key = jax.random.key(0)
    model = NeuralODE(MLPField(3, 32, 2, key=key), lift=random_affine(1, 3, key=key),
                      readout=random_affine(3, 1, key=key))
    y = model(jnp.array([0.5]))                 # shape (1,)
    ys = jax.vmap(model)(jnp.ones((8, 1)))      # a batch
    # d Phi / d T at T = 1
    at = lambda T: eqx.tree_at(lambda m: m.t1, model, T)(jnp.array([0.5]))
    jax.jacrev(at)(jnp.asarray(1.0))            # shape (1,)
    ```
    """

    field: Any
    lift: Affine | None
    readout: Affine | None
    t1: float | Array
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)

    def __init__(self, field, *, lift=None, readout=None, state_size: int | None = None,
                 t1: float | Array = 1.0, solver: diffrax.AbstractSolver | None = None,
                 stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                 dt0: float | None = None,
                 adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int | None = None):
        if not callable(field):
            raise TypeError(f"`field` must be a callable f(t, y, args), got {type(field).__name__}.")
        lift, readout, m = lift_readout_state(field, lift, readout, state_size)
        t1 = _as_t1(t1)
        if dt0 is not None:
            check_positive(dt0, "dt0")
        if solver is None:
            solver = diffrax.Tsit5()
        elif not isinstance(solver, diffrax.AbstractSolver):
            raise TypeError(f"`solver` must be a diffrax solver, got {type(solver).__name__}.")
        if stepsize_controller is None:
            stepsize_controller = diffrax.PIDController(rtol=_DEFAULT_RTOL, atol=_DEFAULT_ATOL)
        elif not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
            raise TypeError("`stepsize_controller` must be a diffrax step-size controller, got "
                            f"{type(stepsize_controller).__name__}.")
        if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise TypeError(f"`adjoint` must be a diffrax adjoint, got {type(adjoint).__name__}.")
        constant = isinstance(stepsize_controller, diffrax.ConstantStepSize)
        if constant and dt0 is None:
            raise ValueError("`dt0` is required with a constant step size.")
        if max_steps is None:
            if constant and not is_concrete(t1):
                raise ValueError("`max_steps` is required with a constant step size when `t1` is traced.")
            # a constant step size takes a known number of steps: a tight bound keeps the
            # checkpointing (and DirectAdjoint's bounded loop) small and fast to compile
            max_steps = int(np.ceil(float(t1) / float(dt0) - 1e-9)) + 1 if constant else 4096
        max_steps = check_int(max_steps, "max_steps")
        for name, affine in (("lift", lift), ("readout", readout)):
            if affine is not None and is_concrete(affine.weight) and is_concrete(affine.bias):
                check_finite((affine.weight, affine.bias), name)
        self.field = field
        self.lift = lift
        self.readout = readout
        self.t1 = t1
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        self.dt0 = None if dt0 is None else float(dt0)
        self.max_steps = max_steps
        self.state_size = int(m)

    # -- pieces ----------------------------------------------------------------------------
    def _check_input(self, x: Array) -> Array:
        return check_input_vector(
            x, self.in_size, batch_hint="use model.batch(xs), one shared step size, or "
            "jax.vmap(model)(xs), per-sample steps")

    def _check_parameters(self) -> None:
        """Reject NaN/inf parameters before anything compiles (when they are concrete; under
        `jit` a non-finite field is caught by the run-time diagnosis instead)."""
        for name, part in (("field", self.field), ("lift", self.lift), ("readout", self.readout)):
            leaves = [a for a in jax.tree_util.tree_leaves(part) if eqx.is_inexact_array(a)]
            if leaves and all(is_concrete(a) for a in leaves):
                check_finite(leaves, name)
        if is_concrete(self.t1):
            check_positive(self.t1, "t1")

    def _check_field(self, h0: Array, args: Args, field=None) -> None:
        field = self.field if field is None else field
        try:
            out = jax.eval_shape(field, 0.0, h0, args)
        except Exception as err:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(
                f"`field` failed when called as field(t, y, args) with a state of shape "
                f"{tuple(h0.shape)} and dtype {h0.dtype} (and the `args` given); the error it "
                "raised is shown above."
            ) from err
        if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != h0.shape:
            got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
            raise ValueError(f"`field` must return an array of the state's shape {h0.shape}, got {got}.")
        if out.dtype != h0.dtype:
            arg_dtypes = {jnp.result_type(a) for a in jax.tree_util.tree_leaves(args)
                          if eqx.is_inexact_array_like(a) and not isinstance(a, float | complex)}
            if any(dt != h0.dtype for dt in arg_dtypes):
                raise TypeError(
                    f"`args` holds arrays of dtype {sorted(str(d) for d in arg_dtypes)} but the state "
                    f"has dtype {h0.dtype}: the field returns {out.dtype}. Give `args` the state's "
                    "dtype (or the input and the parameters the dtype of `args`)."
                )
            raise TypeError(
                f"`field` returns dtype {out.dtype} for a state of dtype {h0.dtype}: give the input "
                "`x`, the lift and the field's parameters one floating dtype."
            )

    def _run(self, field, y0, args, ts=None, *, locate: bool = False) -> "_Run":
        """Integrate `field` (the model's field, or a wrapper of it for a batch or the variational
        system) from `y0` over $[0, T]$."""
        self._check_parameters()
        if isinstance(self.adjoint, diffrax.BacksolveAdjoint) and not _is_float_t1(self.t1):
            raise TypeError(
                "`t1` must be a Python number with `adjoint=diffrax.BacksolveAdjoint()`: that adjoint "
                "cannot differentiate with respect to the end time. Use RecursiveCheckpointAdjoint "
                "(the default) or DirectAdjoint for derivatives in T."
            )
        # `locate` stops at the first non-finite state (a diffrax event), so that its step and
        # time are known; it costs about a fifth more compile time, so only `solve` and
        # `trajectory` pay it (BacksolveAdjoint does not support events: never located there)
        locate = locate and not isinstance(self.adjoint, diffrax.BacksolveAdjoint)
        return _integrate(self, field, y0, args, ts, locate)

    def _throw(self, value, run: "_Run"):
        """Raise the diagnosis of a failed run (exact time when concrete, bucketed under jit)."""
        if all(is_concrete(a) for a in jax.tree_util.tree_leaves((run.result, run.t_end))):
            values = codes(run.result).ravel()
            failed = values != codes(RESULTS.successful)
            if np.any(failed):
                i = int(np.argmax(failed))
                failure = next(f for f in _FAILURES if codes(f) == values[i])
                t = float(np.ravel(np.asarray(run.t_end))[i])
                step = int(np.ravel(np.asarray(run.accepted))[i])
                t1 = float(np.ravel(np.asarray(self.t1))[0]) if is_concrete(self.t1) else None
                raise eqx.EquinoxRuntimeError(_failure_text(
                    failure, t, t1, self.max_steps, step=step, located=run.located))
            return value
        messages, index = _failure_messages(self, run)
        return eqx.branched_error_if(value, ~is_successful(run.result), index, messages)

    def flow(self, h0: Array, args: Args = None) -> Array:
        r"""$\phi_T(h_0)$, the time-$T$ flow of the field on the state space $\mathbb{R}^m$."""
        h0 = jnp.asarray(h0)
        if h0.shape != (self.state_size,):
            raise ValueError(f"`h0` must have shape ({self.state_size},), got {h0.shape}.")
        if not jnp.issubdtype(h0.dtype, jnp.inexact):
            h0 = h0.astype(jnp.result_type(float))
        h0 = check_finite(h0, "h0")
        self._check_field(h0, args)
        run = self._run(self.field, h0, args)
        return self._throw(run.y_end, run)

    def __call__(self, x: Array, args: Args = None) -> Array:
        """$\\Phi(x)$ for one input `x` of shape `(d,)`; returns shape `(q,)`.

        Raises `eqx.EquinoxRuntimeError` when the solve cannot reach `t1` (see **Failures**)."""
        x = self._check_input(x)
        h0 = self.lift_input(x)
        self._check_field(h0, args)
        run = self._run(self.field, h0, args)
        return self.read(self._throw(run.y_end, run))

    def solve(self, x: Array, args: Args = None, *, ts: Array | None = None,
              throw: bool = True) -> "NeuralODESolution":
        r"""$\Phi(x)$ with the solver's diagnosis: a [`NeuralODESolution`][].

        **Arguments:**

        - `x`: one input, shape `(d,)`; `args`: passed to the field.
        - `ts`: optional non-decreasing times in $[0, T]$ at which to return the hidden states.
        - `throw`: `True` raises `eqx.EquinoxRuntimeError` on failure (as `__call__` does);
          `False` returns the result code, `failed_step` and `failed_time` instead (works under
          `jit` and `vmap`).

        **Returns:** a [`NeuralODESolution`][]; on failure `output` is NaN, `state` the last
        state reached and `hidden` NaN at the times after `failed_time`.
        """
        check_throw(throw)
        x = self._check_input(x)
        ts = None if ts is None else self._check_ts(ts)
        h0 = self.lift_input(x)
        self._check_field(h0, args)
        run = self._run(self.field, h0, args, ts, locate=True)
        ok = is_successful(run.result)
        output = jnp.where(ok, self.read(run.y_end), jnp.nan)
        hidden = None
        if ts is not None:
            reached = (ts <= run.t_end) | ok
            hidden = jnp.where(reached[:, None], run.ys, jnp.nan)
        sol = NeuralODESolution(
            output=output, ts=ts, hidden=hidden, state=run.y_end, t_reached=run.t_end,
            result=run.result,
            failed_step=jnp.where(ok, -1, run.accepted),
            failed_time=jnp.where(ok, jnp.nan, run.t_end).astype(run.t_end.dtype),
            num_steps=run.num_steps,
        )
        return self._throw(sol, run) if throw else sol

    def batch(self, xs: Array, args: Args = None) -> Array:
        r"""$\Phi$ on a batch `xs` of shape `(B, d)` with **one shared step-size sequence**.

        The batch is integrated as one state of shape `(B, m)` (the field vmapped over rows), so
        the whole batch takes the same steps and the error is controlled over the whole batch,
        as torchdiffeq does. For training this is typically several times faster than
        `jax.vmap(model)(xs)` (which gives every sample its own adaptive steps, the most accurate
        per sample but the slowest, since the batched loop runs until the slowest sample ends).
        With a constant step size the two agree to rounding. A failure of any row fails the
        batch (the error names the time).
        """
        xs = jnp.asarray(xs)
        if xs.ndim != 2 or xs.shape[1] != self.in_size:
            raise ValueError(f"`xs` must have shape (batch, {self.in_size}), got {xs.shape}.")
        if xs.shape[0] == 0:
            raise ValueError("`xs` is empty (batch size 0).")
        if not jnp.issubdtype(xs.dtype, jnp.inexact):
            xs = xs.astype(jnp.result_type(float))
        xs = check_finite(xs, "xs")
        H0 = jax.vmap(self.lift_input)(xs)
        self._check_field(H0[0], args)
        # the field travels as data (a module), never closed over: every adjoint works
        run = self._run(_Rowwise(self.field), H0, args)
        return jax.vmap(self.read)(self._throw(run.y_end, run))

    def _check_ts(self, ts: Array) -> Array:
        ts = jnp.asarray(ts)
        if ts.ndim != 1 or ts.shape[0] == 0:
            raise ValueError(f"`ts` must be a non-empty vector of times, got shape {ts.shape}.")
        if not jnp.issubdtype(ts.dtype, jnp.inexact):
            ts = ts.astype(jnp.result_type(float))
        if is_concrete(ts):
            check_finite(ts, "ts")
            t1 = float(np.asarray(self.t1)) if is_concrete(self.t1) else np.inf
            if bool(jnp.any(ts < 0)) or bool(jnp.any(ts > t1)) or bool(jnp.any(jnp.diff(ts) < 0)):
                raise ValueError(f"`ts` must be non-decreasing times in [0, t1 = {self.t1}].")
        return ts

    def trajectory(self, x: Array, ts: Array, args: Args = None) -> Array:
        """The hidden states $h(t) = \\phi_t(L(x))$ at the times `ts` (in $[0, T]$), shape `(len(ts), m)`.

        Raises like `__call__` on failure; [`NeuralODE.solve`][] with `ts=` and `throw=False`
        returns the states reached with the failure's step and time instead."""
        x = self._check_input(x)
        ts = self._check_ts(ts)
        h0 = self.lift_input(x)
        self._check_field(h0, args)
        run = self._run(self.field, h0, args, ts, locate=True)
        return self._throw(run.ys, run)

    def variational(self, x: Array, args: Args = None, *, throw: bool = True) -> "VariationalResult":
        r"""$\Phi(x)$ with its input Jacobian, from the variational equation.

        Solves $h' = f(t, h)$ together with $Y' = D_h f(t, h) Y$, $Y(0) = I$ and
        $s' = \operatorname{tr} D_h f(t, h)$, so that $D\Phi(x) = B\,Y(T)\,A$ and
        $s(T) = \log\det D\phi_T(L x)$ (Liouville). In one dimension
        $\Phi'(x) = B A \exp(\int_0^T f'(h(t))\,dt)$, whose sign is that of $BA$: a non-augmented
        1-D neural ODE is strictly monotone and has no critical point.

        The result is differentiable like `__call__` (the augmented system is one more solve).

        `throw`: `True` raises `eqx.EquinoxRuntimeError` when the solve fails (as `__call__`
        does); `False` returns NaN arrays with the result code (works under `jit` and `vmap`).

        **Returns:** a [`VariationalResult`][].
        """
        check_throw(throw)
        x = self._check_input(x)
        h0 = self.lift_input(x)
        self._check_field(h0, args)
        m = h0.shape[0]
        state0 = (h0, jnp.eye(m, dtype=h0.dtype), jnp.zeros((), h0.dtype))
        run = self._run(_Augmented(self.field), state0, args)
        hT, YT, logdet = self._throw(run.y_end, run) if throw else run.y_end
        A = jnp.eye(m, dtype=h0.dtype) if self.lift is None else self.lift.weight
        B = jnp.eye(m, dtype=h0.dtype) if self.readout is None else self.readout.weight
        out = VariationalResult(output=self.read(hT), jacobian=B @ YT @ A, flow_jacobian=YT,
                                log_det_flow=logdet, result=run.result)
        if throw:
            return out
        failed = ~is_successful(run.result)
        return jax.tree_util.tree_map(
            lambda a: jnp.where(failed, jnp.nan, a) if eqx.is_inexact_array(a) else a, out)


def _as_t1(t1):
    """`t1` as a Python float (a constant of the model) or a 0-d float JAX array (a leaf)."""
    if isinstance(t1, jax.Array):
        if t1.shape != ():
            raise ValueError(f"`t1` must be a scalar, got shape {t1.shape}.")
        if not jnp.issubdtype(t1.dtype, jnp.inexact):
            t1 = t1.astype(jnp.result_type(float))
        if is_concrete(t1):
            check_positive(t1, "t1")
        return t1
    if isinstance(t1, bool) or not isinstance(t1, int | float | np.integer | np.floating | np.ndarray):
        raise TypeError(f"`t1` must be a positive number, got {type(t1).__name__}.")
    check_positive(t1, "t1")
    return float(t1)


class _Rowwise(eqx.Module):
    """A field applied to each row of a `(batch, m)` state."""

    field: Any

    def __call__(self, t, H, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, H, args)


class _Augmented(eqx.Module):
    """The variational system $(h, Y, s)' = (f, D_h f\\, Y, \\operatorname{tr} D_h f)$."""

    field: Any

    def __call__(self, t, state, args):
        h, Y, _ = state
        Jf = jax.jacfwd(lambda hh: self.field(t, hh, args))(h)
        return self.field(t, h, args), Jf @ Y, jnp.trace(Jf)


def _nonfinite(t, y, args, **kwargs):
    return ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(y)]))


class _Run(eqx.Module):
    """What one solve returns internally: the end state, saved states and the diagnosis."""

    y_end: Any
    ys: Any
    t_end: Array
    result: RESULTS
    accepted: Array
    num_steps: Array
    located: bool = eqx.field(static=True)


class _Watched(diffrax.AbstractAdaptiveStepSizeController):
    """An adaptive controller that also keeps the last accepted step size in its state, so that
    a collapse of the step size (time no longer advancing) can be told from a lack of steps."""

    inner: diffrax.AbstractAdaptiveStepSizeController

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def norm(self):
        return self.inner.norm

    def wrap(self, direction):
        return _Watched(self.inner.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, jnp.asarray(tnext - t0))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        state, last_dt = controller_state
        keep, t_next0, t_next1, jump, state, result = self.inner.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state)
        last_dt = jnp.where(keep, jnp.asarray(t1 - t0, jnp.result_type(last_dt)), last_dt)
        return keep, t_next0, t_next1, jump, (state, last_dt), result


@eqx.filter_jit
def _integrate(model: NeuralODE, field, y0, args, ts, locate: bool) -> _Run:
    """One `diffeqsolve` of `field` with the model's solver settings (throw=False) and its
    diagnosis; jitted so that eager calls compile once."""
    term = diffrax.ODETerm(field)
    controller = model.stepsize_controller
    watched = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
    if watched:
        controller = _Watched(controller)
    event = diffrax.Event(_nonfinite) if locate else None
    # one SaveAt (BacksolveAdjoint allows no `subs`): the requested `ts`, then the end point,
    # saved right after the last `ts` reached (later rows stay inf when the solve stops early)
    saveat = diffrax.SaveAt(t1=True, ts=ts, controller_state=watched)
    sol = diffrax.diffeqsolve(
        term, model.solver, 0.0, model.t1, model.dt0, y0, args, saveat=saveat,
        stepsize_controller=controller, adjoint=model.adjoint,
        max_steps=model.max_steps, event=event, throw=False,
    )
    if ts is None:
        t_end = sol.ts[-1]
        y_end = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        ys = None
    else:
        end = jnp.sum(jnp.isfinite(sol.ts)) - 1
        t_end = sol.ts[end]
        y_end = jax.tree_util.tree_map(lambda a: a[end], sol.ys)
        ys = jax.tree_util.tree_map(lambda a: a[:-1], sol.ys)
    accepted = sol.stats["num_accepted_steps"]
    dres = sol.result
    finite_state = ~_nonfinite(None, y_end, None)
    ended = (dres == diffrax.RESULTS.successful) | (dres == diffrax.RESULTS.event_occurred)
    max_steps = dres == diffrax.RESULTS.max_steps_reached
    t_s, y_s, y0_s = jax.lax.stop_gradient((t_end, y_end, y0))
    if watched:
        # the step size collapsed: time stopped advancing (a step of a few ulps of t, or zero)
        last_dt = jax.lax.stop_gradient(sol.controller_state[1])
        scale = jnp.maximum(jnp.abs(t_s), jnp.abs(jnp.asarray(model.t1, t_s.dtype)))
        collapsed = max_steps & (jnp.abs(last_dt) <= 100 * jnp.finfo(t_s.dtype).eps * scale)
    else:
        collapsed = jnp.asarray(False)
    # a collapse is a blow-up when the state grew and its growth rate |f| / |h| is huge on the
    # time scale of the run; otherwise the field is singular or non-finite near the state reached
    f_s = field(t_s, y_s, args)
    size, size0 = _max_abs(y_s), _max_abs(y0_s)
    rate = _max_abs(f_s) / jnp.maximum(size, jnp.finfo(size.dtype).tiny) * jnp.abs(model.t1)
    growing = (~_nonfinite(None, f_s, None)) & (size > 10 * jnp.maximum(size0, 1)) & (rate > 1e6)
    result = RESULTS.where(ended, RESULTS.successful, RESULTS.not_converged)
    result = RESULTS.where(max_steps, RESULTS.max_steps_reached, result)
    result = RESULTS.where(collapsed, RESULTS.step_size_too_small, result)
    result = RESULTS.where(collapsed & growing, RESULTS.finite_time_blowup, result)
    result = RESULTS.where(~finite_state, RESULTS.nonfinite_state, result)
    return _Run(y_end=y_end, ys=ys, t_end=t_end, result=result,
                accepted=jnp.asarray(accepted), num_steps=jnp.asarray(sol.stats["num_steps"]),
                located=locate)


def _max_abs(tree) -> Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in jax.tree_util.tree_leaves(tree)]))


def _failure_text(failure: RESULTS, t: float | None, t1: float | None, max_steps: int, *,
                  step: int | None = None, t_width: float | None = None, located: bool = True) -> str:
    """The sentence for one failure (an item of `_FAILURES`); `t` exact (eager) or a bucket
    centre (`t_width` wide). A non-finite state seen only at the end (`located=False`) has no
    time of its own."""
    if failure == RESULTS.nonfinite_state and not located:
        t = None
    end = "t1" if t1 is None else f"t1 = {t1:g}"
    if t is None:
        when = f"before {end}"
    elif t_width is None:
        when = f"at t = {t:.6g}" + ("" if step is None else f" (step {step})") + f", before {end}"
    else:
        when = f"at t = {t:.3g} (to within {t_width:.2g}), before {end}"
    more = (" Call `model.solve(x, throw=False)` for the result code, `failed_step` and "
            "`failed_time`.")
    if failure == RESULTS.nonfinite_state:
        return (f"NeuralODE: the solution blew up: the state became non-finite (NaN or inf) "
                f"{when} (a finite-time blow-up of the field, or too large a step `dt0`; check also the "
                "field's parameters and `args`)." + more)
    if failure == RESULTS.finite_time_blowup:
        return (f"NeuralODE: the solution blew up in finite time {when}: the state grew "
                "without bound and the step size collapsed (a finite-time singularity of the "
                "field, not a lack of `max_steps`)." + more)
    if failure == RESULTS.step_size_too_small:
        return (f"NeuralODE: the step size collapsed {when} with the state still bounded: the "
                "vector field is singular, discontinuous or non-finite (NaN or inf) there; check "
                "the field, its parameters and `args`." + more)
    if failure == RESULTS.max_steps_reached:
        return (f"NeuralODE: the maximum number of solver steps (`max_steps` = {max_steps}) was "
                f"reached {when}: raise `max_steps`." + more)
    return (f"NeuralODE: the solver failed {when} (an implicit solve did not converge or the "
            "step size fell below `dtmin`)." + more)


def _failure_messages(model: NeuralODE, run: _Run):
    """Static messages and a traced index into them, for `eqx.branched_error_if` under `jit`:
    one message per failure and, when `t1` is a Python number, per time bucket of width
    t1 / _TIME_BUCKETS (the message can then name the time although it must be a static string)."""
    position = sum(jnp.where(run.result == f, i, 0) for i, f in enumerate(_FAILURES))
    if _is_float_t1(model.t1):
        t1, n = model.t1, _TIME_BUCKETS
        messages = [_failure_text(f, b * t1 / n, t1, model.max_steps, t_width=t1 / n,
                                  located=run.located)
                    for f in _FAILURES for b in range(n + 1)]
        bucket = jnp.clip(jnp.round(run.t_end / t1 * n), 0, n).astype(jnp.int32)
        index = position * (n + 1) + bucket
    else:
        messages = [_failure_text(f, None, None, model.max_steps, located=run.located)
                    for f in _FAILURES]
        index = position
    return messages, jnp.where(is_successful(run.result), 0, index)


class NeuralODESolution(AbstractResult):
    r"""Output of [`NeuralODE.solve`][]: $\Phi(x)$ and how the solve went.

    - `output`: $\Phi(x)$, shape `(q,)`; NaN when the solve failed.
    - `ts`, `hidden`: the requested times and the hidden states there (`None` when no `ts` were
      asked for); NaN at times after `failed_time`.
    - `state`, `t_reached`: the last state reached and its time ($h(T)$ and $T$ on success).
    - `result`: a `RESULTS` (`jaxdyn._results`) item; `failed_step` (accepted steps taken when the failure
      was seen, `-1` if none) and `failed_time` (the time reached then, NaN if none).
    - `num_steps`: solver steps tried (accepted and rejected).
    """

    output: Array
    ts: Array | None
    hidden: Array | None
    state: Array
    t_reached: Array
    result: RESULTS
    failed_step: Array
    failed_time: Array
    num_steps: Array

    def summary(self) -> str:
        """One line (per batch member): success, or the failure with its step and time."""
        ok = np.atleast_1d(np.asarray(self.successful))
        steps = np.atleast_1d(np.asarray(self.failed_step))
        times = np.atleast_1d(np.asarray(self.failed_time))
        values = np.atleast_1d(codes(self.result))
        lines = []
        for i in range(ok.size):
            if ok[i]:
                lines.append(f"successful (t = {float(np.atleast_1d(self.t_reached)[i]):.6g})")
            else:
                lines.append(f"{message(values[i])} First seen at step {int(steps[i])}, "
                             f"t = {float(times[i]):.6g}.")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The hidden trajectories $h(t)$ at the requested `ts` (one line per coordinate and
        batch member; `kwargs` go to `ax.plot`), or the end states at `t_reached` when no `ts`
        were asked for; the failure time is marked. Returns the axes."""
        from ..plot._plots import _axes

        _, ax = _axes(ax)
        if self.hidden is not None:
            ts = np.asarray(self.ts, dtype=float).reshape(-1, np.shape(self.ts)[-1])
            hidden = np.asarray(self.hidden, dtype=float)
            hidden = hidden.reshape(-1, *hidden.shape[-2:])
            for member in range(hidden.shape[0]):
                t = ts[min(member, ts.shape[0] - 1)]
                for j in range(hidden.shape[-1]):
                    ax.plot(t, hidden[member, :, j], label=f"$h_{j + 1}$" if member == 0 else None,
                            **kwargs)
        else:
            states = np.asarray(self.state, dtype=float).reshape(-1, np.shape(self.state)[-1])
            times = np.broadcast_to(np.asarray(self.t_reached, dtype=float).ravel(), states.shape[:1])
            for j in range(states.shape[-1]):
                ax.plot(times, states[:, j], "o", label=f"$h_{j + 1}(t_{{end}})$", **kwargs)
        for t in np.atleast_1d(np.asarray(self.failed_time, dtype=float)):
            if np.isfinite(t):
                ax.axvline(t, color="tab:red", ls="--", lw=1)
        ax.set_xlabel("$t$")
        ax.set_ylabel("hidden state")
        ax.set_title(message(self.result))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        return ax


class VariationalResult(AbstractResult):
    """Output of [`NeuralODE.variational`][]: $\\Phi(x)$, $D\\Phi(x)$, $D\\phi_T$, $\\log\\det D\\phi_T$.

    - `output`: $\\Phi(x)$, shape `(q,)`; `jacobian`: $D\\Phi(x)$, shape `(q, d)`.
    - `flow_jacobian`: $D\\phi_T(L x)$, shape `(m, m)`; `log_det_flow`: $\\log\\det D\\phi_T$.
    - `result`: a `RESULTS` (`jaxdyn._results`) item, as in [`NeuralODESolution`][]; all the
      arrays are NaN when the solve failed (`throw=False`).
    """

    output: Array
    jacobian: Array
    flow_jacobian: Array
    log_det_flow: Array
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    def summary(self) -> str:
        """The output, the input Jacobian and $\\log\\det D\\phi_T$, and the result code's message."""
        fmt = lambda a: np.array2string(np.asarray(a), precision=6, suppress_small=True)
        return (f"variational: Phi(x) = {fmt(self.output)}, DPhi(x) = {fmt(self.jacobian)}, "
                f"log det Dphi_T = {float(np.ravel(np.asarray(self.log_det_flow))[0]):.6g}\n"
                f"{message(self.result)}")

    def plot(self, ax=None, **kwargs):
        """The input Jacobian $D\\Phi(x)$ as an image (`kwargs` go to `ax.imshow`), with a
        colour bar. Returns the axes."""
        from ..plot._plots import _axes

        fig, ax = _axes(ax)
        jac = np.asarray(self.jacobian, dtype=float)
        jac = jac.reshape(-1, jac.shape[-1])
        kwargs.setdefault("cmap", "RdBu_r")
        bound = float(np.nanmax(np.abs(jac))) if np.any(np.isfinite(jac)) else 1.0
        image = ax.imshow(jac, vmin=-bound, vmax=bound, **kwargs)
        fig.colorbar(image, ax=ax, shrink=0.9)
        ax.set_xlabel("input $j$")
        ax.set_ylabel("output $i$")
        ax.set_title(r"$D\Phi(x)$, $\log\det D\phi_T$ = "
                     f"{float(np.ravel(np.asarray(self.log_det_flow))[0]):.4g}")
        return ax


def second_order(model):
    """Return `model` with every `NeuralODE` inside it switched to `diffrax.DirectAdjoint`.

    This is jaxdyn's adjoint policy for derivatives of order two and for forward-over-reverse
    products (Hessians, Hessian-vector products, tangent propagation): the checkpointed adjoint
    used for training is reverse-mode only. Anything that is not a `NeuralODE` is returned
    unchanged, so this is safe to call on any model or function.
    """

    def swap(node):
        if isinstance(node, NeuralODE) and not isinstance(node.adjoint, diffrax.DirectAdjoint):
            return eqx.tree_at(lambda m: m.adjoint, node, diffrax.DirectAdjoint())
        return node

    is_node = lambda node: isinstance(node, NeuralODE)
    return jax.tree_util.tree_map(swap, model, is_leaf=is_node)
