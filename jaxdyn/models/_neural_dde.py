"""Neural delay differential equations with lift and readout: Phi(x) = R(h(T)), h' = f(t, h, h(t - tau))."""

import abc
import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_input_vector, check_int, check_positive
from .._kernels import RK4, Tableau
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Args, Array, Key, Scalar
from ..dde import solve as dde_solve, solve_fixed
from ..dde._fixed import as_tableau
from ._affine import AbstractField, AbstractLiftedModel, Affine, lift_readout_state


class AbstractDelayField(AbstractField):
    r"""A delay vector field $f(t, h, (h_{\tau_1}, \dots, h_{\tau_k}), \text{args})$ that declares
    its state dimension `size`, its number of delayed inputs `n_delays`, and an upper bound on its
    Lipschitz constant in the delayed arguments (`delay_lipschitz()`, read by
    [`memory_capacity`][]).

    Subclass it (as [`DelayMLPField`][] does) to give [`NeuralDDE`][] the state dimension and the
    number of delays, and [`memory_capacity`][] its bound $K$; any other callable field works in
    [`NeuralDDE`][] too, with the state dimension given by a lift, a readout or `state_size`, and
    $K$ passed to [`memory_capacity`][] as `lipschitz`.
    """

    size: eqx.AbstractVar[int]
    n_delays: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(self, t: Scalar, h: Array, h_delayed: tuple[Array, ...], args: Args = None) -> Array:
        r"""$f(t, h, h_{\text{delayed}}, \text{args})$, shape `(size,)`; `h_delayed` a tuple of
        `n_delays` arrays of shape `(size,)` in the order of the delays."""

    @abc.abstractmethod
    def delay_lipschitz(self) -> Array:
        """An upper bound $K$ on the Lipschitz constant of $f$ in its delayed arguments jointly
        (Euclidean norm of the concatenated delayed states)."""


class DelayMLPField(AbstractDelayField):
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


class AbstractStepping(eqx.Module):
    """How a [`NeuralDDE`][] integrates its hidden state on $[0, T]$: [`FixedStep`][] or
    [`AdaptiveStep`][] (subclass it for another solver)."""

    @abc.abstractmethod
    def resolve(self, t1: float, delays: np.ndarray) -> "AbstractStepping":
        """This strategy for the interval $[0, t_1]$ and the initial `delays` (a NumPy array):
        defaults filled in, and a `ValueError` naming the setting that cannot work."""

    @abc.abstractmethod
    def trajectory(self, field: Callable, h0: Array, delays: Array, t1: float, *,
                   args: Args = None) -> tuple[Array, Array]:
        r"""`(ts, hs)`: the hidden state of $h' = f(t, h, h(t - \tau), \text{args})$ from the
        constant history `h0`, at `ts` (the last is $t_1$)."""


class FixedStep(AbstractStepping):
    """Strategy for [`NeuralDDE`][]: [`jaxdyn.dde.solve_fixed`][] with `n_steps` steps over $[0, T]$.

    `n_steps=None` picks $\\max(\\lceil 20\\,T \\rceil, \\lceil T/\\tau_{\\min} \\rceil)$ from the
    initial delays. `method`: the Runge-Kutta tableau, [`jaxdyn.dde.RK4`][] (default),
    [`jaxdyn.dde.HEUN`][] or [`jaxdyn.dde.EULER`][] (the strings `"rk4"`, `"heun"`, `"euler"` still
    work for one release, with a `DeprecationWarning`).

    The fixed-step path does not raise when the state becomes non-finite (a training loop sees
    the NaN loss and its own result code).
    """

    n_steps: int | None = eqx.field(static=True)
    method: Tableau = eqx.field(static=True)

    def __init__(self, n_steps: int | None = None, method: Tableau = RK4):
        self.n_steps = n_steps
        self.method = as_tableau(method, "jaxdyn.models.FixedStep")

    def resolve(self, t1: float, delays: np.ndarray) -> "FixedStep":
        tau_min = float(np.min(delays))
        needed = math.ceil(float(t1) / tau_min - 1e-9)
        if self.n_steps is None:
            return FixedStep(max(math.ceil(20 * float(t1) - 1e-9), needed), self.method)
        n = check_int(self.n_steps, "n_steps")
        if n < needed:
            raise ValueError(f"`n_steps` = {n} gives dt = {float(t1) / n:.6g} > min(delays) = "
                             f"{tau_min:.6g}: use n_steps >= {needed}.")
        return self

    def trajectory(self, field: Callable, h0: Array, delays: Array, t1: float, *,
                   args: Args = None) -> tuple[Array, Array]:
        sol = solve_fixed(field, h0, delays, 0.0, t1, n_steps=self.n_steps, args=args, method=self.method,
                          throw=False)
        return sol.ts, sol.ys


class AdaptiveStep(AbstractStepping):
    """Strategy for [`NeuralDDE`][]: the adaptive [`jaxdyn.dde.solve`][] (`Tsit5` with a PID
    controller); it raises when the solve fails (`max_steps` reached, a blow-up)."""

    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    dt0: float = eqx.field(static=True, default=0.05)
    max_steps: int = eqx.field(static=True, default=4096)

    def resolve(self, t1: float, delays: np.ndarray) -> "AdaptiveStep":
        del t1, delays
        return self

    def trajectory(self, field: Callable, h0: Array, delays: Array, t1: float, *,
                   args: Args = None) -> tuple[Array, Array]:
        sol = dde_solve(field, h0, delays, 0.0, t1, dt0=self.dt0, args=args,
                        stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
                        max_steps=self.max_steps)
        return sol.ts, sol.ys


class NeuralDDE(AbstractLiftedModel):
    r"""A neural DDE as an input-output map, $\Phi(x) = R(h(T))$ (Kuehn & Kuntz, arXiv 2505.07244).

    $h'(t) = f_\theta(t, h(t), (h(t - \tau_1), \dots, h(t - \tau_k)), \text{args})$ on $[0, T]$ with
    the constant history $h(s) = L(x)$ for $s \in [-\tau_{\max}, 0]$; $L(x) = A x + a$ lifts
    $\mathbb{R}^d \to \mathbb{R}^m$ and $R(h) = B h + b$ reads out $\mathbb{R}^m \to \mathbb{R}^q$, as in
    [`NeuralODE`][]. The delays are a learnable array. The memory capacity $K \tau$ decides whether
    the model behaves like a neural ODE ($K\tau e < 1$) or can approximate universally: see
    [`jaxdyn.models.memory_capacity`][].

    **Arguments:**

    - `field`: $f$ in the convention `field(t, h, h_delayed, args)`, e.g. [`DelayMLPField`][] (an
      [`AbstractDelayField`][] gives the state dimension and the number of delays).
    - `delays`: the initial delays $\tau_i > 0$, a 1-D array (trained with the model).
    - `lift`, `readout`: `None` (identity), an [`Affine`][], an `eqx.nn.Linear` or a weight matrix.
    - `state_size`: $m$, only when neither the lift, the readout nor `field.size` gives it.
    - `t1`: the final time $T > 0$. A static field (a Python float, part of the compiled
      structure): the model is **not** differentiable w.r.t. $T$ (it is not a leaf, so `jax.grad`
      and `eqx.filter_grad` never see it), and a new $T$ recompiles.
    - `stepping`: an [`AbstractStepping`][]: [`FixedStep`][] (default: the fast fixed-step path for
      training; $\Delta t$ must stay $\le \tau_{\min}$ while the delays are trained, else an
      `eqx.error_if` fires) or [`AdaptiveStep`][].

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
    stepping: AbstractStepping
    state_size: int = eqx.field(static=True)

    def __init__(self, field, delays, *, lift=None, readout=None, state_size: int | None = None,
                 t1: float = 1.0, stepping: AbstractStepping | None = None):
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
        if isinstance(field, AbstractDelayField) and field.n_delays != delays.shape[0]:
            raise ValueError(f"`delays` has {delays.shape[0]} entries but `field.n_delays` = "
                             f"{field.n_delays}.")
        lift, readout, m = lift_readout_state(field, lift, readout, state_size)
        check_positive(t1, "t1")
        if stepping is None:
            stepping = FixedStep()
        if not isinstance(stepping, AbstractStepping):
            raise TypeError(f"`stepping` must be a FixedStep or an AdaptiveStep (an AbstractStepping), got "
                            f"{type(stepping).__name__}.")
        stepping = stepping.resolve(float(t1), value)
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
        return self.stepping.trajectory(self.field, h0, self.delays, self.t1, args=args)

    def __call__(self, x: Array, args: Args = None) -> Array:
        """$\\Phi(x)$ for one input `x` of shape `(d,)`; returns shape `(q,)`."""
        _, hs = self.trajectory(x, args)
        return self.read(hs[-1])


class MemoryCapacityResult(AbstractResult):
    r"""Output of [`memory_capacity`][] (formerly `MemoryCapacity`).

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
    - `result`: a [`jaxdyn.RESULTS`][jaxdyn._results.RESULTS] item: `successful`, or
      `nonfinite_parameters` when $K$ or the delays are not finite.

    `summary()` states the capacity and the hypothesis; `plot(ax=None)` marks $K\tau$ against the
    threshold $K\tau e = 1$.
    """

    lipschitz: Array
    max_delay: Array
    capacity: Array
    K_tau_e_below_one: Array
    ode_like: Array
    result: RESULTS

    def summary(self) -> str:
        r"""The capacity $K\tau$, its factors, the theorem's hypothesis and the result."""
        capacity = np.ravel(np.asarray(self.capacity))
        K = np.ravel(np.asarray(self.lipschitz))
        tau = np.ravel(np.asarray(self.max_delay))
        below = np.ravel(np.asarray(self.K_tau_e_below_one))
        lines = []
        for c, k, t, b in zip(capacity, K, tau, below, strict=True):
            holds = "holds" if b else "does not hold"
            lines.append(f"Memory capacity K tau = {c:.6g} (K = {k:.6g}, tau_max = {t:.6g}); K tau e = "
                         f"{c * math.e:.4g}: the hypothesis K tau e < 1 of Kuehn & Kuntz {holds}.")
        lines.append(f"result: {message(self.result)}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        r"""$K\tau$ on a log axis against the threshold $K\tau e = 1$; returns the axes."""
        from ..plot._dde import plot_memory_capacity

        return plot_memory_capacity(self, ax=ax, **kwargs)


def memory_capacity(model: NeuralDDE, *, lipschitz=None, throw: bool = True) -> MemoryCapacityResult:
    r"""The memory capacity $K \tau_{\max}$ of a [`NeuralDDE`][] (Kuehn & Kuntz, arXiv 2505.07244).

    $K$ is an upper bound on the Lipschitz constant of $f_\theta$ in its delayed arguments jointly
    (Euclidean norm of the concatenated delayed states): `lipschitz` if given, else
    `model.field.delay_lipschitz()` of an [`AbstractDelayField`][] (for [`DelayMLPField`][]:
    spectral norm of the delayed columns of the first weight times the spectral norms of the later
    weights times `activation_lipschitz`$^{\text{depth}}$ times $|$`scale`$|$).

    `K_tau_e_below_one` ($K\tau_{\max} e < 1$) is the sufficient condition of the theorem: solutions
    are then attracted exponentially (as $t \to \infty$) to ODE-like special solutions. It is a
    statement about the bound $K$, so it is sufficient only, and it does not certify that the map
    $\Phi(x) = R(h(T))$ at a finite $T$ is monotone: measure that (see [`MemoryCapacityResult`][]).

    $K$ bounds **only** the Lipschitz constant in the delayed argument(s) $h(t - \tau_i)$: the
    dependence of $f_\theta$ on the current state $h(t)$ (and on $t$) is not bounded or used here,
    as in Kuehn & Kuntz's criterion.

    **Arguments:**

    - `model`: a [`NeuralDDE`][].
    - `lipschitz`: $K$ (a non-negative scalar) for a field that is not an [`AbstractDelayField`][].
    - `throw`: `True` (default) raises an `equinox.EquinoxRuntimeError` when $K$ or the delays are
      not finite (e.g. diverged weights); `False` returns the result with `result` =
      `RESULTS.nonfinite_parameters`.

    **Returns:** a [`MemoryCapacityResult`][] with `lipschitz` $K$, `max_delay` $\tau_{\max}$,
    `capacity` $K\tau_{\max}$ and `K_tau_e_below_one` (`ode_like` is the same flag).

    The flag is a comparison, so it has no derivative (`jax.grad` gives none for it); `capacity`
    and `lipschitz` are differentiable in the weights and delays.
    """
    throw = check_throw(throw)
    if not isinstance(model, NeuralDDE):
        raise TypeError(f"`model` must be a NeuralDDE, got {type(model).__name__}.")
    if lipschitz is None:
        if not isinstance(model.field, AbstractDelayField):
            raise TypeError("`model.field` is not an AbstractDelayField (it declares no "
                            "`delay_lipschitz()`): pass `lipschitz`, a Lipschitz bound of the field in its "
                            "delayed arguments.")
        K = model.field.delay_lipschitz()
    else:
        K = jnp.asarray(lipschitz)
        if K.shape != () or (not isinstance(K, jax.core.Tracer) and not float(K) >= 0):
            raise ValueError(f"`lipschitz` must be a non-negative scalar, got {lipschitz}.")
    tau = jnp.max(model.delays)
    capacity = K * tau
    below = capacity * jnp.e < 1
    result = RESULTS.where(jnp.isfinite(capacity), RESULTS.successful, RESULTS.nonfinite_parameters)
    out = MemoryCapacityResult(lipschitz=K, max_delay=tau, capacity=capacity, K_tau_e_below_one=below,
                               ode_like=below, result=result)
    return raise_if_failed(out, result, throw, hint="`memory_capacity`: the bound K or the delays are not "
                           "finite; pass `throw=False` to get the result with its code.")
