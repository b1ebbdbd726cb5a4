"""Neural delay differential equations with lift and readout: Phi(x) = R(h(T)), h' = f(t, h, h(t - tau))."""

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_input_vector, check_int, check_positive
from .._types import Args, Array, Key, Scalar
from ..dde import solve as dde_solve, solve_fixed
from ._affine import AbstractLiftedModel, Affine, lift_readout_state


class DelayMLPField(eqx.Module):
    r"""An MLP delay field, $f_\theta(t, h, (h_{\tau_1}, \dots)) = s\,\text{MLP}([h, h_{\tau_1}, \dots])$.

    The convention of [`jaxdyn.dde.solve`][]: called as `field(t, h, h_delayed, args)` with
    `h_delayed` a tuple of `n_delays` arrays of shape `(size,)`. With `time_dependent=True` the time
    is a first extra input, $\text{MLP}([t, h, h_{\tau_1}, \dots])$.

    **Arguments:**

    - `size`: the state dimension $m$.
    - `width_size`, `depth`: hidden width and number of hidden layers of the MLP.
    - `n_delays`: $k$, the number of delayed inputs.
    - `key`: a `jax.random` key.
    - `activation`: an elementwise function (default `tanh`).
    - `activation_lipschitz`: a Lipschitz constant of `activation` (1 for `tanh`, ReLU, GELU
      is about 1.13), used by [`jaxdyn.models.memory_capacity`][].
    - `time_dependent`: feed $t$ as an extra input.
    - `scale`: multiplies the output.

    **Example:**

    ```python
    field = DelayMLPField(3, 16, 1, 1, key=jax.random.key(0))
    dh = field(0.0, jnp.ones(3), (jnp.zeros(3),), None)    # shape (3,)
    ```
    """

    mlp: eqx.nn.MLP
    size: int = eqx.field(static=True)
    n_delays: int = eqx.field(static=True)
    time_dependent: bool = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    activation_lipschitz: float = eqx.field(static=True)

    def __init__(self, size: int, width_size: int, depth: int, n_delays: int, *, key: Key,
                 activation: Callable = jnp.tanh, activation_lipschitz: float = 1.0,
                 time_dependent: bool = False, scale: float = 1.0):
        size = check_int(size, "size")
        width_size = check_int(width_size, "width_size")
        depth = check_int(depth, "depth", minimum=0)
        n_delays = check_int(n_delays, "n_delays")
        check_positive(activation_lipschitz, "activation_lipschitz")
        in_size = (n_delays + 1) * size + (1 if time_dependent else 0)
        self.mlp = eqx.nn.MLP(in_size, size, width_size, depth, activation=activation, key=key)
        self.size = size
        self.n_delays = n_delays
        self.time_dependent = bool(time_dependent)
        self.scale = float(scale)
        self.activation_lipschitz = float(activation_lipschitz)

    def __call__(self, t: Scalar, h: Array, h_delayed: tuple[Array, ...], args: Args = None) -> Array:
        parts = [h, *h_delayed]
        if self.time_dependent:
            parts = [jnp.reshape(t, (1,)).astype(h.dtype), *parts]
        return self.scale * self.mlp(jnp.concatenate(parts))

    def delay_lipschitz(self) -> Array:
        r"""An upper bound $K$ on the Lipschitz constant of $f$ in its delayed arguments jointly.

        For all $t, h$ and delayed tuples $z, z'$ (concatenated, Euclidean norm),
        $|f(t, h, z) - f(t, h, z')|_2 \le K\,|z - z'|_2$ with
        $K = |s|\,\|W_1^{\text{delay}}\|_2\,\prod_{l \ge 2}\|W_l\|_2\;L_\sigma^{\text{depth}}$:
        $W_1^{\text{delay}}$ the columns of the first weight matrix that read the delayed inputs,
        $W_l$ the later weight matrices (spectral norms), $L_\sigma$ = `activation_lipschitz`.
        """
        first = self.mlp.layers[0].weight
        offset = self.size + (1 if self.time_dependent else 0)
        norms = [jnp.linalg.norm(first[:, offset:], ord=2)]
        norms += [jnp.linalg.norm(layer.weight, ord=2) for layer in self.mlp.layers[1:]]
        depth = len(self.mlp.layers) - 1
        return abs(self.scale) * self.activation_lipschitz**depth * jnp.prod(jnp.stack(norms))


class FixedStep(eqx.Module):
    """Strategy for [`NeuralDDE`][]: [`jaxdyn.dde.solve_fixed`][] with `n_steps` steps over $[0, T]$.

    `n_steps=None` picks $\\max(\\lceil 20\\,T \\rceil, \\lceil T/\\tau_{\\min} \\rceil)$ from the
    initial delays. `method`: `"rk4"`, `"heun"` or `"euler"`.
    """

    n_steps: int | None = eqx.field(static=True, default=None)
    method: str = eqx.field(static=True, default="rk4")

    def __check_init__(self):
        if self.method not in ("rk4", "heun", "euler"):
            raise ValueError(f"`method` must be 'rk4', 'heun' or 'euler', got {self.method!r}.")


class AdaptiveStep(eqx.Module):
    """Strategy for [`NeuralDDE`][]: the adaptive [`jaxdyn.dde.solve`][] (`Tsit5` with a PID controller)."""

    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    dt0: float = eqx.field(static=True, default=0.05)
    max_steps: int = eqx.field(static=True, default=4096)


class NeuralDDE(AbstractLiftedModel):
    r"""A neural DDE as an input-output map, $\Phi(x) = R(h(T))$ (Kuehn & Kuntz, arXiv 2505.07244).

    $h'(t) = f_\theta(t, h(t), (h(t - \tau_1), \dots, h(t - \tau_k)), \text{args})$ on $[0, T]$ with
    the constant history $h(s) = L(x)$ for $s \in [-\tau_{\max}, 0]$; $L(x) = A x + a$ lifts
    $\mathbb{R}^d \to \mathbb{R}^m$ and $R(h) = B h + b$ reads out $\mathbb{R}^m \to \mathbb{R}^q$, as in
    [`NeuralODE`][]. The delays are a learnable array. The memory capacity $K \tau$ decides whether
    the model behaves like a neural ODE ($K\tau e < 1$) or can approximate universally: see
    [`jaxdyn.models.memory_capacity`][].

    **Arguments:**

    - `field`: $f$ in the convention `field(t, h, h_delayed, args)`, e.g. [`DelayMLPField`][].
    - `delays`: the initial delays $\tau_i > 0$, a 1-D array (trained with the model).
    - `lift`, `readout`: `None` (identity), an [`Affine`][], an `eqx.nn.Linear` or a weight matrix.
    - `state_size`: $m$, only when neither the lift, the readout nor `field.size` gives it.
    - `t1`: the final time $T > 0$. A static field (a Python float, part of the compiled
      structure): the model is **not** differentiable w.r.t. $T$ (it is not a leaf, so `jax.grad`
      and `eqx.filter_grad` never see it), and a new $T$ recompiles.
    - `stepping`: [`FixedStep`][] (default: the fast fixed-step path for training; $\Delta t$ must
      stay $\le \tau_{\min}$ while the delays are trained, else an `eqx.error_if` fires) or
      [`AdaptiveStep`][].

    **Accuracy of the fixed-step path.** The constant history makes $h'$ jump at $0$ (from $0$ to
    $f(0, L x, L x)$), so unless every $\tau_i$ is a multiple of $\Delta t$ the fixed-step RK4 is
    globally 2nd order in $\Delta t$ (see [`jaxdyn.dde.solve_fixed`][]); the loss is also only
    piecewise smooth in $\tau$, with kinks of size $O(\Delta t^2)$ where a stage time crosses $0$.
    Under `jax.grad` w.r.t. the delays they are traced, so the solver's buffer holds the whole
    grid ($n + 1$ states and slopes) rather than a ring of $\lceil\tau_{\max}/\Delta t\rceil + 3$.

    **Example:**

    ```python
    key1, key2, key3 = jax.random.split(jax.random.key(0), 3)
    model = NeuralDDE(DelayMLPField(3, 16, 1, 1, key=key1), jnp.array([0.5]),
                      lift=random_affine(2, 3, key=key2), readout=random_affine(3, 1, key=key3))
    model(jnp.ones(2))                       # shape (1,)
    jax.vmap(model)(jnp.ones((8, 2)))        # a batch, shape (8, 1)
    ```
    """

    field: Any
    delays: Array
    lift: Affine | None
    readout: Affine | None
    t1: float = eqx.field(static=True)
    stepping: FixedStep | AdaptiveStep
    state_size: int = eqx.field(static=True)

    def __init__(self, field, delays, *, lift=None, readout=None, state_size: int | None = None,
                 t1: float = 1.0, stepping: FixedStep | AdaptiveStep | None = None):
        if not callable(field):
            raise TypeError(f"`field` must be a callable f(t, h, h_delayed, args), got "
                            f"{type(field).__name__}.")
        delays = jnp.asarray(delays)
        if delays.ndim != 1 or delays.shape[0] == 0:
            raise ValueError(f"`delays` must be a non-empty 1-D array, got shape {delays.shape}.")
        if not jnp.issubdtype(delays.dtype, jnp.inexact):
            delays = delays.astype(jnp.result_type(float))
        value = np.asarray(delays)
        if not np.all(np.isfinite(value)) or np.any(value <= 0):
            raise ValueError(f"`delays` must all be finite and > 0, got {value}.")
        n_field = getattr(field, "n_delays", None)
        if isinstance(n_field, int) and n_field != delays.shape[0]:
            raise ValueError(f"`delays` has {delays.shape[0]} entries but `field.n_delays` = {n_field}.")
        lift, readout, m = lift_readout_state(field, lift, readout, state_size)
        check_positive(t1, "t1")
        if stepping is None:
            stepping = FixedStep()
        if not isinstance(stepping, FixedStep | AdaptiveStep):
            raise TypeError(f"`stepping` must be a FixedStep or an AdaptiveStep, got "
                            f"{type(stepping).__name__}.")
        if isinstance(stepping, FixedStep):
            tau_min = float(np.min(value))
            needed = math.ceil(float(t1) / tau_min - 1e-9)
            if stepping.n_steps is None:
                stepping = FixedStep(max(math.ceil(20 * float(t1) - 1e-9), needed), stepping.method)
            else:
                n = check_int(stepping.n_steps, "n_steps")
                if n < needed:
                    raise ValueError(f"`n_steps` = {n} gives dt = {float(t1) / n:.6g} > min(delays) = "
                                     f"{tau_min:.6g}: use n_steps >= {needed}.")
        self.field = field
        self.delays = delays
        self.lift = lift
        self.readout = readout
        self.t1 = float(t1)
        self.stepping = stepping
        self.state_size = int(m)

    def _check_input(self, x: Array) -> Array:
        return check_input_vector(x, self.in_size)

    def trajectory(self, x: Array, args: Args = None) -> tuple[Array, Array]:
        """`(ts, hs)`: the hidden state on the solver's grid (fixed step) or at $T$ only (adaptive)."""
        x = self._check_input(x)
        h0 = self.lift_input(x)
        if isinstance(self.stepping, FixedStep):
            return solve_fixed(self.field, h0, self.delays, 0.0, self.t1, n_steps=self.stepping.n_steps,
                               args=args, method=self.stepping.method)
        s = self.stepping
        sol = dde_solve(self.field, h0, self.delays, 0.0, self.t1, dt0=s.dt0, args=args,
                        stepsize_controller=diffrax.PIDController(rtol=s.rtol, atol=s.atol),
                        max_steps=s.max_steps)
        return sol.ts, sol.ys

    def __call__(self, x: Array, args: Args = None) -> Array:
        """$\\Phi(x)$ for one input `x` of shape `(d,)`; returns shape `(q,)`."""
        _, hs = self.trajectory(x, args)
        return self.read(hs[-1])


class MemoryCapacity(eqx.Module):
    r"""Output of [`memory_capacity`][].

    **Attributes:**

    - `lipschitz`: $K$, an upper bound on the Lipschitz constant of the field in its delayed
      arguments.
    - `max_delay`: $\tau_{\max}$.
    - `capacity`: $K\tau_{\max}$.
    - `K_tau_e_below_one`: $K\tau_{\max} e < 1$, the **hypothesis** of Kuehn & Kuntz's theorem,
      a statement about the bound $K$. What it proves: every solution is attracted exponentially,
      as $t \to \infty$, to an ODE-like special solution. What it does **not** prove: that the
      trained map $\Phi$ at a finite $T$ is monotone or otherwise behaves like a non-augmented
      neural ODE (the attraction is only asymptotic, and $K$ leaves the dependence on $h(t)$
      free). That is a measurement: e.g. `monotone` in the `dde-memory` experiment, which finds
      runs with `K_tau_e_below_one` whose $\Phi$ is not monotone.
    - `ode_like`: the same value as `K_tau_e_below_one`, kept for compatibility; despite its
      name it is the theorem's hypothesis, not a measured property of the model.
    """

    lipschitz: Array
    max_delay: Array
    capacity: Array
    K_tau_e_below_one: Array
    ode_like: Array


def memory_capacity(model: NeuralDDE, *, lipschitz=None) -> MemoryCapacity:
    r"""The memory capacity $K \tau_{\max}$ of a [`NeuralDDE`][] (Kuehn & Kuntz, arXiv 2505.07244).

    $K$ is an upper bound on the Lipschitz constant of $f_\theta$ in its delayed arguments jointly
    (Euclidean norm of the concatenated delayed states): `lipschitz` if given, else
    `model.field.delay_lipschitz()` (for [`DelayMLPField`][]: spectral norm of the delayed columns
    of the first weight times the spectral norms of the later weights times
    `activation_lipschitz`$^{\text{depth}}$ times $|$`scale`$|$).

    `K_tau_e_below_one` ($K\tau_{\max} e < 1$) is the sufficient condition of the theorem: solutions
    are then attracted exponentially (as $t \to \infty$) to ODE-like special solutions. It is a
    statement about the bound $K$, so it is sufficient only, and it does not certify that the map
    $\Phi(x) = R(h(T))$ at a finite $T$ is monotone: measure that (see [`MemoryCapacity`][]).

    $K$ bounds **only** the Lipschitz constant in the delayed argument(s) $h(t - \tau_i)$: the
    dependence of $f_\theta$ on the current state $h(t)$ (and on $t$) is not bounded or used here,
    as in Kuehn & Kuntz's criterion.

    **Returns:** a [`MemoryCapacity`][] with `lipschitz` $K$, `max_delay` $\tau_{\max}$,
    `capacity` $K\tau_{\max}$ and `K_tau_e_below_one` (`ode_like` is the same flag).

    The flag is a comparison, so it has no derivative (`jax.grad` gives none for it); `capacity`
    and `lipschitz` are differentiable in the weights and delays.
    """
    if not isinstance(model, NeuralDDE):
        raise TypeError(f"`model` must be a NeuralDDE, got {type(model).__name__}.")
    if lipschitz is None:
        bound = getattr(model.field, "delay_lipschitz", None)
        if bound is None:
            raise TypeError("`model.field` has no `delay_lipschitz()` method: pass `lipschitz`, a Lipschitz "
                            "bound of the field in its delayed arguments.")
        K = bound()
    else:
        K = jnp.asarray(lipschitz)
        if K.shape != () or (not isinstance(K, jax.core.Tracer) and not float(K) >= 0):
            raise ValueError(f"`lipschitz` must be a non-negative scalar, got {lipschitz}.")
    tau = jnp.max(model.delays)
    capacity = K * tau
    below = capacity * jnp.e < 1
    return MemoryCapacity(lipschitz=K, max_delay=tau, capacity=capacity, K_tau_e_below_one=below,
                          ode_like=below)
