"""Neural ODEs with lift and readout: Phi(x) = R(phi_T(L(x)))."""

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_input_vector, check_int, check_positive
from .._types import Args, Array
from ._affine import AbstractLiftedModel, Affine, lift_readout_state

_DEFAULT_RTOL = 1e-6
_DEFAULT_ATOL = 1e-8


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
    - `t1`: the final time $T > 0$.
    - `solver`, `stepsize_controller`, `dt0`, `max_steps`: passed to `diffrax.diffeqsolve`
      (defaults: `Tsit5()` with a `PIDController(rtol=1e-6, atol=1e-8)`; `max_steps` 4096, or
      the exact step count $\lceil T/dt_0 \rceil + 1$ with a constant step size).
    - `adjoint`: how reverse-mode derivatives are taken (see the adjoint policy below).

    **Adjoint policy.** Training uses diffrax's `RecursiveCheckpointAdjoint` (the default here:
    reverse mode with bounded memory). It, like `BacksolveAdjoint`, cannot be differentiated a
    second time, so everything in jaxdyn that needs second-order or forward-over-reverse
    derivatives (Hessians of $\Phi$ and Morse analysis, Hessian-vector products of losses, tangent
    propagation for Lyapunov exponents) calls [`jaxdyn.models.second_order`][] first, which swaps in
    `diffrax.DirectAdjoint` (any nesting of `jvp` and `vjp`). Do the same for your own
    second-order code: `jax.hessian(second_order(model))(x)`.

    **Example:**

    ```python
    key = jax.random.key(0)
    model = NeuralODE(MLPField(3, 32, 2, key=key), lift=random_affine(1, 3, key=key),
                      readout=random_affine(3, 1, key=key))
    y = model(jnp.array([0.5]))                 # shape (1,)
    ys = jax.vmap(model)(jnp.ones((8, 1)))      # a batch
    ```
    """

    field: Any
    lift: Affine | None
    readout: Affine | None
    t1: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)

    def __init__(self, field, *, lift=None, readout=None, state_size: int | None = None,
                 t1: float = 1.0, solver: diffrax.AbstractSolver | None = None,
                 stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                 dt0: float | None = None,
                 adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int | None = None):
        if not callable(field):
            raise TypeError(f"`field` must be a callable f(t, y, args), got {type(field).__name__}.")
        lift, readout, m = lift_readout_state(field, lift, readout, state_size)
        check_positive(t1, "t1")
        if dt0 is not None:
            check_positive(dt0, "dt0")
        if solver is None:
            solver = diffrax.Tsit5()
        if stepsize_controller is None:
            stepsize_controller = diffrax.PIDController(rtol=_DEFAULT_RTOL, atol=_DEFAULT_ATOL)
        constant = isinstance(stepsize_controller, diffrax.ConstantStepSize)
        if constant and dt0 is None:
            raise ValueError("`dt0` is required with a constant step size.")
        if max_steps is None:
            # a constant step size takes a known number of steps: a tight bound keeps the
            # checkpointing (and DirectAdjoint's bounded loop) small and fast to compile
            max_steps = int(np.ceil(float(t1) / float(dt0) - 1e-9)) + 1 if constant else 4096
        max_steps = check_int(max_steps, "max_steps")
        self.field = field
        self.lift = lift
        self.readout = readout
        self.t1 = float(t1)
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

    def _check_field(self, h0: Array, args: Args) -> None:
        out = jax.eval_shape(self.field, 0.0, h0, args)
        if getattr(out, "shape", None) != h0.shape:
            raise ValueError(
                f"`field` must return an array of the state's shape {h0.shape}, got "
                f"{getattr(out, 'shape', type(out).__name__)}."
            )

    def _solve(self, term, y0, args, saveat):
        return diffrax.diffeqsolve(
            term, self.solver, 0.0, self.t1, self.dt0, y0, args, saveat=saveat,
            stepsize_controller=self.stepsize_controller, adjoint=self.adjoint,
            max_steps=self.max_steps,
        )

    def flow(self, h0: Array, args: Args = None) -> Array:
        r"""$\phi_T(h_0)$, the time-$T$ flow of the field on the state space $\mathbb{R}^m$."""
        self._check_field(h0, args)
        sol = self._solve(diffrax.ODETerm(self.field), h0, args, diffrax.SaveAt(t1=True))
        return sol.ys[-1]

    def __call__(self, x: Array, args: Args = None) -> Array:
        """$\\Phi(x)$ for one input `x` of shape `(d,)`; returns shape `(q,)`."""
        x = self._check_input(x)
        return self.read(self.flow(self.lift_input(x), args))

    def batch(self, xs: Array, args: Args = None) -> Array:
        r"""$\Phi$ on a batch `xs` of shape `(B, d)` with **one shared step-size sequence**.

        The batch is integrated as one state of shape `(B, m)` (the field vmapped over rows), so
        the whole batch takes the same steps and the error is controlled over the whole batch,
        as torchdiffeq does. For training this is typically several times faster than
        `jax.vmap(model)(xs)` (which gives every sample its own adaptive steps, the most accurate
        per sample but the slowest, since the batched loop runs until the slowest sample ends).
        With a constant step size the two agree to rounding.
        """
        xs = jnp.asarray(xs)
        if xs.ndim != 2 or xs.shape[1] != self.in_size:
            raise ValueError(f"`xs` must have shape (batch, {self.in_size}), got {xs.shape}.")
        if not jnp.issubdtype(xs.dtype, jnp.inexact):
            xs = xs.astype(jnp.result_type(float))
        xs = check_finite(xs, "xs")
        H0 = jax.vmap(self.lift_input)(xs)
        self._check_field(H0[0], args)
        # the field travels as data (a module), never closed over: every adjoint works
        sol = self._solve(diffrax.ODETerm(_Rowwise(self.field)), H0, args,
                          diffrax.SaveAt(t1=True))
        return jax.vmap(self.read)(sol.ys[-1])

    def trajectory(self, x: Array, ts: Array, args: Args = None) -> Array:
        """The hidden states $h(t) = \\phi_t(L(x))$ at the times `ts` (in $[0, T]$), shape `(len(ts), m)`."""
        x = self._check_input(x)
        ts = jnp.asarray(ts)
        if ts.ndim != 1:
            raise ValueError(f"`ts` must be a vector of times, got shape {ts.shape}.")
        if not isinstance(ts, jax.core.Tracer) and (
            bool(jnp.any(ts < 0)) or bool(jnp.any(ts > self.t1)) or bool(jnp.any(jnp.diff(ts) < 0))
        ):
            raise ValueError(f"`ts` must be non-decreasing times in [0, t1 = {self.t1}].")
        h0 = self.lift_input(x)
        self._check_field(h0, args)
        sol = self._solve(diffrax.ODETerm(self.field), h0, args, diffrax.SaveAt(ts=ts))
        return sol.ys

    def variational(self, x: Array, args: Args = None) -> "Variational":
        r"""$\Phi(x)$ with its input Jacobian, from the variational equation.

        Solves $h' = f(t, h)$ together with $Y' = D_h f(t, h) Y$, $Y(0) = I$ and
        $s' = \operatorname{tr} D_h f(t, h)$, so that $D\Phi(x) = B\,Y(T)\,A$ and
        $s(T) = \log\det D\phi_T(L x)$ (Liouville). In one dimension
        $\Phi'(x) = B A \exp(\int_0^T f'(h(t))\,dt)$, whose sign is that of $BA$: a non-augmented
        1-D neural ODE is strictly monotone and has no critical point.
        """
        x = self._check_input(x)
        h0 = self.lift_input(x)
        self._check_field(h0, args)
        m = h0.shape[0]
        field = self.field

        def augmented(t, state, args):
            h, Y, _ = state
            Jf = jax.jacfwd(lambda hh: field(t, hh, args))(h)
            return field(t, h, args), Jf @ Y, jnp.trace(Jf)

        state0 = (h0, jnp.eye(m, dtype=h0.dtype), jnp.zeros((), h0.dtype))
        sol = self._solve(diffrax.ODETerm(augmented), state0, args, diffrax.SaveAt(t1=True))
        hT, YT, logdet = (leaf[-1] for leaf in sol.ys)
        A = jnp.eye(m, dtype=h0.dtype) if self.lift is None else self.lift.weight
        B = jnp.eye(m, dtype=h0.dtype) if self.readout is None else self.readout.weight
        return Variational(output=self.read(hT), jacobian=B @ YT @ A, flow_jacobian=YT,
                           log_det_flow=logdet)


class _Rowwise(eqx.Module):
    """A field applied to each row of a `(batch, m)` state."""

    field: Any

    def __call__(self, t, H, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, H, args)


class Variational(eqx.Module):
    """Output of [`NeuralODE.variational`][]: $\\Phi(x)$, $D\\Phi(x)$, $D\\phi_T$, $\\log\\det D\\phi_T$."""

    output: Array
    jacobian: Array
    flow_jacobian: Array
    log_det_flow: Array


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
