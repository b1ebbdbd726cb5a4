r"""Kuramoto-type particle systems on graphs, graphons and digraph measures, as diffrax vector fields.

$$\dot\theta_i = \omega_i + K s_i \sum_j W_{ij}\, g(\theta_j - \theta_i - \alpha)$$

with $s_i = 1/N$ (default), $1/d_i$ (by degree) or $1/(\rho N)$ (sparse scaling), and the neural
field $\dot x_i = -x_i + K s_i \sum_j W_{ij} \sigma(x_j) + b_i$. Both are Equinox modules called as
`field(t, y, args)`, subclasses of [`AbstractParticleSystem`][]; [`simulate`][] integrates them
(ODE, or SDE with additive noise), and any plain vector field `f(t, y, args)` as an ODE.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._kernels import RK4 as _RK4
from .._results import RESULTS, AbstractResult, check_throw, message
from ..distributed._mesh import gather, put, replicate, sharded_mesh
from . import _fixed
from ._coupling import AbstractCoupling, AbstractCouplingMethod, as_method, coupling_operator, degrees
from ._order_parameter import order_parameter
from ._solve import Settings, check_adjoint, check_ts, finish, integrate


class Harmonics(eqx.Module):
    r"""A coupling function by Fourier modes: $g(\phi) = c + \sum_{k=1}^m a_k \sin k\phi + b_k \cos k\phi$.

    Fourier-mode couplings keep the cost of the sums $\sum_j W_{ij} g(\theta_j - \theta_i)$ at $m$
    products $W e^{ik\theta}$ (no $N^2$ transcendental functions). The default Kuramoto coupling is
    `Harmonics(sin=[1.0])`.
    """

    sin: Array
    cos: Array
    const: Array

    def __init__(self, sin=(1.0,), cos=None, const=0.0):
        a = jnp.atleast_1d(jnp.asarray(sin, dtype=float))
        b = jnp.zeros_like(a) if cos is None else jnp.atleast_1d(jnp.asarray(cos, dtype=float))
        m = max(a.shape[0], b.shape[0])
        self.sin = jnp.pad(a, (0, m - a.shape[0]))
        self.cos = jnp.pad(b, (0, m - b.shape[0]))
        self.const = jnp.asarray(const, dtype=float)

    def __call__(self, phi):
        k = jnp.arange(1, self.sin.shape[0] + 1)
        kp = k * jnp.asarray(phi)[..., None]
        return self.const + jnp.sum(self.sin * jnp.sin(kp) + self.cos * jnp.cos(kp), axis=-1)


def _scale(op: AbstractCoupling, normalisation, n: int) -> Array:
    if isinstance(normalisation, str):
        if normalisation == "1/N":
            return jnp.full((n,), 1.0 / n)
        if normalisation == "degree":
            d = degrees(op)
            return jnp.where(d > 0, 1.0 / jnp.where(d > 0, d, 1.0), 0.0)
        raise ValueError(f"`normalisation` must be '1/N', 'degree' or a number > 0, got {normalisation!r}.")
    rho = float(normalisation)
    if not np.isfinite(rho) or rho <= 0:
        raise ValueError(f"`normalisation` as a number (sparse scaling rho) must be positive, got {rho}.")
    return jnp.full((n,), 1.0 / (rho * n))


def _noise(noise) -> float:
    """The noise level as a static float (it decides between an ODE and an SDE)."""
    try:
        value = float(noise)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
        raise TypeError(f"`noise` must be a concrete scalar >= 0 (ODE or SDE), got {noise!r}.") from e
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`noise` must be a scalar >= 0, got {noise}.")
    return value


def _node_vector(x, name: str) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a vector of shape (N,), got shape {x.shape}.")
    if x.shape[0] < 1:
        raise ValueError(f"`{name}` must have N >= 1 entries, got N = 0.")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return check_finite(x, name)


class AbstractParticleSystem(eqx.Module):
    r"""A particle system on $N$ nodes for [`simulate`][]: a vector field `field(t, y, args)` with
    additive noise $\sigma\, dB$ (an SDE when `noise > 0`).

    Subclasses provide `n` (the number of nodes; `None`: any state shape), `noise` (a static float
    $\sigma \ge 0$), `nodes_from` (the argument that sets $N$, named in errors), `circular`
    (whether the state is a phase on the circle: drawn mod $2\pi$, summarised by its order
    parameter), `__call__` (the drift) and `diffusion` (a lineax operator).
    """

    n: eqx.AbstractVar[int | None]
    noise: eqx.AbstractVar[float]
    nodes_from: eqx.AbstractClassVar[str]
    circular: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(self, t, y, args=None) -> Array:
        """The drift $f(t, y)$."""

    @abc.abstractmethod
    def diffusion(self, t, y, args=None) -> lx.AbstractLinearOperator:
        """The diffusion (for a diffrax `ControlTerm`)."""


class _VectorField(AbstractParticleSystem):
    """A plain vector field `f(t, y, args)` as a noise-free particle system (any state shape)."""

    f: Callable
    n: int | None = eqx.field(static=True, default=None)
    noise: float = eqx.field(static=True, default=0.0)
    nodes_from: ClassVar[str] = "the field"
    circular: ClassVar[bool] = False

    def __call__(self, t, y, args=None):
        return self.f(t, y, args)

    def diffusion(self, t, y, args=None):
        raise TypeError("a plain vector field has no diffusion: subclass AbstractParticleSystem for an SDE.")


def _is_zero(value) -> bool:
    return isinstance(value, int | float | np.number) and float(value) == 0.0


def as_system(field) -> AbstractParticleSystem:
    """`field` as a particle system: itself, or a plain callable `f(t, y, args)` wrapped as an ODE."""
    if isinstance(field, AbstractParticleSystem):
        return field
    if not callable(field):
        raise TypeError("`field` must be an AbstractParticleSystem (e.g. Kuramoto) or a callable "
                        f"f(t, y, args), got {type(field).__name__}.")
    declared = {f.name for f in dataclasses.fields(field)} if isinstance(field, eqx.Module) else set()
    if "diffusion" in declared or ("noise" in declared and not _is_zero(field.noise)):
        # Refuse to guess rather than silently drop the noise of a would-be SDE.
        raise TypeError(f"`field` ({type(field).__name__}) declares noise but is not an "
                        "AbstractParticleSystem: subclass jaxdyn.meanfield.AbstractParticleSystem "
                        "(its `noise` and `diffusion` make it an SDE), or pass a plain ODE field.")
    return _VectorField(field)


class Kuramoto(AbstractParticleSystem):
    r"""Kuramoto(-Sakaguchi) oscillators on a graph: a diffrax vector field `field(t, theta, args)`.

    $$\dot\theta_i = \omega_i + K s_i \sum_j W_{ij}\, g(\theta_j - \theta_i - \alpha)$$

    **Sign convention of the phase lag** $\alpha$ (Sakaguchi): $g(\phi - \alpha)$, i.e.
    $\sin(\theta_j - \theta_i - \alpha)$ for the default $g = \sin$; $\alpha = 0$ is Kuramoto, and
    chimera states on the ring appear for $\alpha$ slightly below $\pi/2$.

    **Arguments:**

    - `omega`: natural frequencies, shape `(N,)`, $N \ge 1$.
    - `coupling`: the coupling strength $K$ (a scalar; an array leaf, so changing it does not
      recompile).
    - `graph`: `None` (all-to-all), an `(N, N)` array, a BCOO matrix or edge list, a graphon
      ([`jaxdyn.meanfield.graphons`][]), a [`DigraphMeasure`][] or an [`AbstractCoupling`][].
    - `phase_lag`: $\alpha$.
    - `g`: `None` ($\sin$), a [`Harmonics`][] (fast: $m$ coupling products per evaluation) or any
      vectorised callable $g(\phi)$ (general: $O(N^2)$ evaluations of $g$ on a dense graph, $O(E)$ on
      a sparse one).
    - `normalisation`: `"1/N"` ($s_i = 1/N$), `"degree"` ($s_i = 1/d_i$, $d_i = \sum_j W_{ij}$) or a
      number $\rho > 0$ ($s_i = 1/(\rho N)$: the scaling of sparse $W$-random graphs with edge
      probability $\rho W$, whose digraph-measure limit is $W$).
    - `positions`: node positions for graphons/digraph measures: `None`/`"grid"`
      ($x_i = (i + 1/2)/N$) or an array (e.g. [`sample_positions`][]).
    - `method`: the coupling algorithm: `None` (the cheapest exact one) or an
      [`AbstractCouplingMethod`][] ([`AllToAllMethod`][], [`DenseMethod`][], [`FFTMethod`][],
      [`LowRankMethod`][], [`SparseMethod`][]; see [`coupling_operator`][]).
    - `noise`: $\sigma \ge 0$ (a static float); with $\sigma > 0$ [`simulate`][] solves
      $d\theta_i = \dots dt + \sigma\, dB_i$.

    **Cost per evaluation** (default $g$): all-to-all $O(N)$; dense $O(N^2)$ multiply-adds and $O(N)$
    sines/cosines ($\sum_j W_{ij}\sin(\theta_j - \theta_i) = \mathrm{Im}(e^{-i\theta_i}(W e^{i\theta})_i)$);
    ring/convolution graphon $O(N \log N)$; rank $r$ $O(N r)$; sparse $O(E)$.

    **Example:**

    ```python
    field = Kuramoto(omega, 2.0, graph=graphons.ring(0.35), phase_lag=1.46, normalisation="degree")
    sol = simulate(field, theta0, jnp.linspace(0, 100, 501))
    ```
    """

    omega: Array
    coupling: Array
    phase_lag: Array
    operator: AbstractCoupling
    scale: Array
    degrees: Array
    harmonics: Harmonics | None
    fn: Callable | None = eqx.field(static=True)
    noise: float = eqx.field(static=True)
    nodes_from: ClassVar[str] = "`omega`"
    circular: ClassVar[bool] = True

    def __init__(self, omega, coupling, *, graph=None, phase_lag=0.0, g=None, normalisation="1/N",
                 positions=None, method: AbstractCouplingMethod | None = None, noise=0.0):
        self.omega = _node_vector(omega, "omega")
        n = self.omega.shape[0]
        self.coupling = check_finite(jnp.asarray(coupling, dtype=float), "coupling")
        if self.coupling.shape != ():
            raise ValueError(f"`coupling` must be a scalar, got shape {self.coupling.shape}.")
        self.phase_lag = check_finite(jnp.asarray(phase_lag, dtype=float), "phase_lag")
        self.noise = _noise(noise)
        op = coupling_operator(graph, n, positions=positions, method=as_method(method, stacklevel=4))
        if g is None:
            g = Harmonics()
        if isinstance(g, Harmonics):
            self.harmonics, self.fn = g, None
        elif callable(g):
            self.harmonics, self.fn = None, g
            op = op.pairs()  # a general g needs the pairs: O(N^2) evaluations (O(E) when sparse)
        else:
            raise TypeError(f"`g` must be None, a Harmonics or a callable g(phi), got {type(g).__name__}.")
        self.operator = op
        self.degrees = degrees(op)
        self.scale = _scale(op, normalisation, n)

    @property
    def n(self) -> int:
        return self.omega.shape[0]

    def interaction(self, theta) -> Array:
        r"""$\sum_j W_{ij}\, g(\theta_j - \theta_i - \alpha)$ for every $i$."""
        if self.fn is not None:
            return self.operator.pairwise(lambda phi: self.fn(phi - self.phase_lag), theta)
        h = self.harmonics
        m = h.sin.shape[0]
        k = jnp.arange(1, m + 1)
        lag = k * self.phase_lag
        cr = h.sin * jnp.cos(lag) + h.cos * jnp.sin(lag)  # (a + i b) e^{-ik alpha}
        ci = h.cos * jnp.cos(lag) - h.sin * jnp.sin(lag)
        if m == 1:  # one complex vector e^{i theta}: no (N, 2m) blocks
            z = jax.lax.complex(jnp.cos(theta), jnp.sin(theta))
            w = jnp.conj(z) * self.operator.cmatvec(z)  # e^{-i theta_i} (W e^{i theta})_i
            return cr[0] * w.imag + ci[0] * w.real + h.const * self.degrees
        kt = theta[:, None] * k
        z = jax.lax.complex(jnp.cos(kt), jnp.sin(kt))
        w = jnp.conj(z) * self.operator.cmatvec(z)  # e^{-ik theta_i} (W e^{ik theta})_i
        return jnp.sum(cr * w.imag + ci * w.real, axis=1) + h.const * self.degrees

    def __call__(self, t, theta, args=None):
        if jnp.shape(theta) != self.omega.shape:
            raise ValueError(f"`theta` must have shape {self.omega.shape} like `omega` (N = {self.n} "
                             f"oscillators), got {jnp.shape(theta)}.")
        return self.omega + self.coupling * self.scale * self.interaction(theta)

    def diffusion(self, t, theta, args=None):
        """The diffusion $\\sigma I$ (diagonal), for a diffrax `ControlTerm`."""
        return lx.DiagonalLinearOperator(jnp.full(theta.shape, self.noise, dtype=theta.dtype))


class NeuralField(AbstractParticleSystem):
    r"""The neural-field particle system $\dot x_i = -x_i + K s_i \sum_j W_{ij} \sigma(x_j) + b_i$.

    **Arguments:** `bias` ($b$, shape `(N,)`), `coupling` ($K$, default 1), `graph`, `normalisation`,
    `positions`, `method`, `noise` as in [`Kuramoto`][]; `activation` $\sigma$ (default `tanh`). With
    $\sigma$ the identity, $b = 0$ and constant $W = w$ the mean obeys $\dot m = (K w - 1) m$.
    """

    bias: Array
    coupling: Array
    operator: AbstractCoupling
    scale: Array
    activation: Callable = eqx.field(static=True)
    noise: float = eqx.field(static=True)
    nodes_from: ClassVar[str] = "`bias`"
    circular: ClassVar[bool] = False

    def __init__(self, bias, *, coupling=1.0, graph=None, activation=jnp.tanh, normalisation="1/N",
                 positions=None, method: AbstractCouplingMethod | None = None, noise=0.0):
        self.bias = _node_vector(bias, "bias")
        n = self.bias.shape[0]
        self.coupling = check_finite(jnp.asarray(coupling, dtype=float), "coupling")
        self.noise = _noise(noise)
        if not callable(activation):
            raise TypeError("`activation` must be callable.")
        self.activation = activation
        method = as_method(method, stacklevel=4)
        self.operator = coupling_operator(graph, n, positions=positions, method=method)
        self.scale = _scale(self.operator, normalisation, n)

    @property
    def n(self) -> int:
        return self.bias.shape[0]

    def __call__(self, t, x, args=None):
        if jnp.shape(x) != self.bias.shape:
            raise ValueError(f"`x` must have shape {self.bias.shape} like `bias` (N = {self.n} nodes), got "
                             f"{jnp.shape(x)}.")
        return -x + self.coupling * self.scale * self.operator.matvec(self.activation(x)) + self.bias

    def diffusion(self, t, x, args=None):
        """The diffusion $\\sigma I$ (diagonal), for a diffrax `ControlTerm`."""
        return lx.DiagonalLinearOperator(jnp.full(x.shape, self.noise, dtype=x.dtype))


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge-Kutta method (fixed steps only: it has no error estimate);
    its tableau is `jaxdyn._kernels.RK4`, the one every fixed-step RK4 of jaxdyn uses."""

    tableau: ClassVar[diffrax.ButcherTableau] = _RK4.to_diffrax()
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


class SimulationResult(AbstractResult):
    r"""The result of [`simulate`][]: the trajectory at the save times, and whether it got there.

    **Fields:**

    - `ts`: the save times asked for, shape `(T,)`.
    - `ys`: the state at `ts`, shape `(T, *y0.shape)`. Save times after a failure hold NaN (they
      were never reached); a save time inside the step that failed may hold NaN or inf too.
    - `result`: a [`jaxdyn.RESULTS`][] code: `successful`; `nonfinite_state` (the state became
      NaN/inf: the solution blew up); `finite_time_blowup` (the adaptive step fell below
      $10^{-12}(t_1 - t_0)$ with $\max|y| > 10^8 \max(1, \max|y_0|)$: a finite-time singularity);
      `step_size_too_small` (the same collapse at a moderate state: a stiff or singular problem);
      `max_steps_reached`; `not_converged` (an implicit solver's root find failed).
    - `failed_step`: the number of accepted steps when the failure appeared (the step that produced
      the non-finite state), `-1` when none. An integer: not differentiable.
    - `failed_time`: the time reached when the failure appeared, NaN when none.
    - `stats`: diffrax's statistics (`num_steps`, `num_accepted_steps`, `num_rejected_steps`,
      `max_steps`; counts: not differentiable) and `max_abs_y_end` ($\max|y|$ where the solve stopped).
    - `circular`: whether the state is a phase (a [`Kuramoto`][] field; static): `.summary()` then
      gives the order parameter $r = |z|$ at the end and `.plot()` draws phases mod $2\pi$.
    - `observed`: with `simulate(..., observe=...)`, the observables at `ts` (the PyTree or dict the
      observables return, leading axis `len(ts)`; NaN at unreached times); else `None`.
    - `snapshot_ts`: with `observe`, the times of the states kept in `ys` (`ys` then has shape
      `(len(snapshot_ts), N)`); else `None`.

    `.successful` is the boolean (elementwise under `vmap`); `.summary()` says the outcome in words;
    `.plot(ax=None)` draws the states over time (space-time image: node against time), or, for a run
    with `observe`, the observables over time (the order parameter $r = |z|$ of a complex observable).
    """

    ts: Array
    ys: Array
    result: RESULTS
    failed_step: Array
    failed_time: Array
    stats: dict
    circular: bool = eqx.field(static=True, default=False)
    observed: object = None
    snapshot_ts: Array | None = None

    def summary(self) -> str:
        """One line: `simulate: ... successful` (with $r$ at the end for phases) or the failure with
        its step, time and state size."""
        ts = np.asarray(self.ts)
        t0, t1 = float(np.min(ts[..., 0])), float(np.max(ts[..., -1]))
        batch = f" (batch of {ts.shape[0]})" if ts.ndim > 1 else ""
        head = (f"simulate{batch}: {ts.shape[-1]} save times on [{t0:.6g}, {t1:.6g}], "
                f"{int(np.max(np.asarray(self.stats['num_steps'])))} steps")
        if self.snapshot_ts is not None:
            names = (", ".join(map(str, self.observed)) if isinstance(self.observed, dict)
                     else type(self.observed).__name__)
            head += f", observed ({names}), {np.shape(self.snapshot_ts)[-1]} snapshot(s)"
        if bool(np.all(np.asarray(self.successful))):
            ended = self.snapshot_ts is None or (
                np.shape(self.snapshot_ts)[-1] and float(np.asarray(self.snapshot_ts)[..., -1].max()) == t1)
            if self.circular and not batch and ended:
                r = float(np.abs(np.asarray(order_parameter(self.ys[-1].ravel()))))
                return f"{head}, order parameter r(t1) = {r:.4g}: successful."
            return head + ": successful."
        if np.ndim(self.failed_step) == 0:
            size = float(self.stats["max_abs_y_end"])
            return (f"{head}: FAILED at step {int(self.failed_step)} (t = {float(self.failed_time):.6g}, "
                    f"max |y| = {size:.3g}): {message(self.result)}")
        return f"{head}: FAILED: {message(self.result)}"

    def plot(self, ax=None, **kwargs):
        """The states against time (one column per node; phases mod $2\\pi$), or for a run with
        `observe` the observables against time (see [`plot_observed`][jaxdyn.plot.plot_observed]);
        returns the axes."""
        from ..plot._meanfield import plot_observed, plot_states

        if self.snapshot_ts is not None:
            return plot_observed(self.ts, self.observed, ax=ax, **kwargs)
        return plot_states(self.ts, self.ys, ax=ax, circular=self.circular, **kwargs)


class _Observe(eqx.Module):
    """A dict of observables as one `(t, y, args) -> dict` callable."""

    fns: dict

    def __call__(self, t, y, args=None):
        return {name: fn(t, y, args) for name, fn in self.fns.items()}


def _check_observe(observe):
    """`observe` as one callable (a dict becomes a dict-valued one), or None."""
    if observe is None:
        return None
    if isinstance(observe, dict):
        if not observe:
            raise ValueError("`observe` must be a callable or a non-empty dict of callables, got {}.")
        for name, fn in observe.items():
            if not isinstance(name, str):
                raise TypeError(f"`observe` keys must be strings (names), got {name!r}.")
            if not callable(fn):
                raise TypeError(f"`observe[{name!r}]` must be a callable (t, y, args) -> PyTree, got "
                                f"{type(fn).__name__}.")
        return _Observe(dict(observe))
    if not callable(observe):
        raise TypeError("`observe` must be None, a callable (t, y, args) -> PyTree (e.g. OrderParameter()) "
                        f"or a dict of them, got {type(observe).__name__}.")
    return observe


def _check_snapshots(snapshots, ts, observe):
    """The snapshot times: only with `observe`; default the end `ts[-1:]`; strictly increasing in
    `[ts[0], ts[-1]]`."""
    if observe is None:
        if snapshots is not None:
            raise ValueError("`snapshots` needs `observe`: without it every state at `ts` is saved.")
        return None
    if snapshots is None:
        return ts[-1:]
    s = jnp.asarray(snapshots, dtype=ts.dtype)
    if s.ndim != 1:
        raise ValueError(f"`snapshots` must be a vector of times, got shape {s.shape}.")
    if s.shape[0] == 0:
        return s
    s = check_finite(s, "snapshots")
    if is_concrete(s) and is_concrete(ts):
        sn, tn = np.asarray(s), np.asarray(ts)
        if not np.all(np.diff(sn) > 0):
            raise ValueError(f"`snapshots` must be strictly increasing, got {sn[:4]}.")
        if sn[0] < tn[0] or sn[-1] > tn[-1]:
            raise ValueError(f"`snapshots` must lie in [ts[0], ts[-1]] = [{tn[0]:.6g}, {tn[-1]:.6g}], got "
                             f"[{sn[0]:.6g}, {sn[-1]:.6g}].")
    return s


def _check_y0(system: AbstractParticleSystem, y0) -> None:
    from ._attention import SelfAttention

    if isinstance(system, SelfAttention):  # tokens: (n, d), n >= 2, on the sphere for geometry="sphere"
        system.check_tokens(y0, "y0")
        return
    n = system.n
    if n is not None and y0.shape != (n,):
        raise ValueError(f"`y0` must have shape ({n},): {system.nodes_from} has N = {n} nodes, got shape "
                         f"{y0.shape}.")


def _has_error_estimate(solver) -> bool:
    """Whether `solver` adapts its steps: an explicit Runge-Kutta method needs a non-zero error row
    (our [`RK4`][] has none), any other solver declares it by subclassing `AbstractAdaptiveSolver`."""
    if isinstance(solver, diffrax.AbstractERK):
        return bool(np.any(np.asarray(solver.tableau.b_error) != 0))
    return isinstance(solver, diffrax.AbstractAdaptiveSolver)


def _settings(system: AbstractParticleSystem, ts, *, solver, dt0, rtol, atol, key, max_steps, progress,
              adjoint) -> Settings:
    """Check the solver settings of [`simulate`][] and pick the defaults (ODE or SDE)."""
    max_steps = check_int(max_steps, "max_steps")
    if dt0 is not None:
        check_positive(dt0, "dt0")
    sde = _noise(system.noise) > 0
    if sde:
        if key is None:
            raise ValueError("`key` is required when the field has `noise > 0` (an SDE).")
        solver = diffrax.Euler() if solver is None else solver
        if dt0 is None:
            dt0 = float(ts[1] - ts[0]) / 10
        adaptive = False
    else:
        solver = diffrax.Tsit5() if solver is None else solver
        adaptive = _has_error_estimate(solver)
        if not adaptive and dt0 is None:
            raise ValueError(f"`dt0` is required for the fixed-step solver {type(solver).__name__}.")
        if adaptive:
            check_positive(rtol, "rtol")
            check_positive(atol, "atol")
    return Settings(solver, check_adjoint(adjoint), dt0=dt0, rtol=rtol, atol=atol, max_steps=max_steps,
                    adaptive=adaptive, sde=sde, progress=progress)



def simulate(field, y0, ts, *, args=None, solver=None, dt0=None, rtol: float = 1e-8, atol: float = 1e-8,
             key=None, max_steps: int = 1_000_000, progress: bool = False, adjoint=None,
             throw: bool = True, observe=None, snapshots=None, fast: bool = True) -> SimulationResult:
    r"""Integrate a particle system `field(t, y, args)` and save at `ts`.

    **Arguments:**

    - `field`: an [`AbstractParticleSystem`][] ([`Kuramoto`][], [`NeuralField`][]; an SDE when its
      `noise > 0`) or any vector field `f(t, y, args)` (an ODE).
    - `y0`: the initial state (for a [`Kuramoto`][]/[`NeuralField`][]: shape `(N,)`, finite);
      `ts`: strictly increasing finite save times (the first is the initial time).
    - `solver`: a diffrax solver; default `Tsit5()` with a PID controller (`rtol`, `atol` > 0) for
      ODEs, `Euler()` (Euler-Maruyama) with fixed step `dt0` for SDEs. A solver without an error
      estimate (e.g. [`RK4`][], `Euler`) uses fixed steps `dt0`.
    - `dt0`: the (initial) step, > 0; required for fixed-step solvers (default for SDEs:
      `(ts[1] - ts[0]) / 10`).
    - `key`: a `jax.random` key, required when `field.noise > 0` (the Brownian motion).
    - `max_steps`: the step budget; `progress`: a tqdm progress bar.
    - `adjoint`: how derivatives are taken (a diffrax adjoint; giving one selects the diffrax path).
      The default on the diffrax path, `diffrax.RecursiveCheckpointAdjoint()`, is **reverse mode
      only** (`jax.grad`, `jax.jacrev`): under `jax.jvp`/`jax.jacfwd` JAX raises `TypeError: can't
      apply forward-mode autodiff (jvp) to a custom_vjp function`. For forward mode (and
      forward-over-reverse) pass `adjoint=diffrax.ForwardMode()` (forward only) or
      `diffrax.DirectAdjoint()` (both). The fixed-step fast path (below) differentiates in both
      modes.
    - `throw`: on failure (the state blew up, the step size collapsed, `max_steps` ran out) raise
      (`True`, the default: an `eqx.EquinoxRuntimeError` whose message names the failure, with the
      step and time; under plain `jax.jit` JAX wraps it in a longer trace) or return the code in
      `.result` with the step and time in `.failed_step`/`.failed_time` (`False`).
    - `observe`: reduce the outputs on the fly (memory $O(N)$ whatever `len(ts)`, not $O(N T)$):
      `None` (save the state at every `ts`), a callable `(t, y, args) -> PyTree` or a dict of them
      (name -> callable), evaluated at every `ts` inside the solve and returned as `.observed`
      (leading axis `len(ts)`). Ready ones: [`OrderParameter`][] (complex $z$), [`LocalOrder`][]
      ($|z|$ on `n_bins` blocks of nodes), [`MeanActivity`][].
    - `snapshots`: with `observe`, the times at which full states are kept (strictly increasing, in
      `[ts[0], ts[-1]]`; default `None`: only the end `ts[-1]`; `()`: none), returned as `.ys` of
      shape `(len(snapshots), N)` at `.snapshot_ts`.
    - `fast`: the **fixed-step fast path** (default `True`). An ODE solved by a fixed-step explicit
      Runge-Kutta method ([`RK4`][], `diffrax.Euler`, any `diffrax.AbstractERK` whose tableau has no
      error estimate) with the default `adjoint` runs as one `lax.scan` over the save times (an inner
      `lax.scan` over the steps between them) instead of diffrax's `diffeqsolve`: the same steps
      (diffrax's `ConstantStepSize` grid), the same values at `ts` and `snapshots` (the solver's own
      interpolation inside a step) to rounding, the same failure codes, `.failed_step`,
      `.failed_time` and `.stats` keys, without diffrax's per-step saving and error machinery
      (the FFT ring Kuramoto at $N = 10^7$, float64, observables at every step, on a loaded 2-core
      machine: 3.76 against 3.86 s of CPU time per RK4 step). It needs concrete `ts`, `dt0` and
      `snapshots` (their layout is compiled in: new values compile anew; under `jit` with traced
      `ts`, diffrax), at most one save time inside each step, at most 32 snapshots, `max_steps`
      covering the steps and a field not sharded over processes; otherwise, and with `fast=False`,
      an `adjoint`, an SDE or an adaptive solver, diffrax runs the solve. Reverse-mode derivatives
      keep one state per step (each step recomputed: `jax.checkpoint`).

    **Returns:** a [`SimulationResult`][]: `.ts`, `.ys` of shape `(len(ts), N)` (with `observe`: at
    `.snapshot_ts`), `.observed`, `.result`, `.failed_step`, `.failed_time`, `.stats`, `.summary()`,
    `.plot()`.

    **Example** (a million oscillators, the order parameter at 1001 times, one state kept):

    ```python
    out = simulate(field, theta0, jnp.linspace(0, 10, 1001), solver=RK4(), dt0=0.01,
                   observe={"z": OrderParameter(), "local": LocalOrder(100)})
    r = jnp.abs(out.observed["z"])
    ```

    **Derivatives:** `.ys` is differentiable with respect to every array of `field` (coupling $K$,
    frequencies, phase lag, the graphon parameters the coupling operator is built from), `y0` and
    `args`; the derivative is that of the discrete solve (exact for fixed steps; adaptive step sizes
    are not differentiated, an error of the order of the tolerances). `.result`, `.failed_step` and
    `.stats` are integers: no derivative.
    """
    check_throw(throw)
    system = as_system(field)
    ts = check_ts(ts)
    y0 = jnp.asarray(y0, dtype=float)  # float32 and integer states join the field's float dtype
    _check_y0(system, y0)
    y0 = check_finite(y0, "y0")
    settings = _settings(system, ts, solver=solver, dt0=dt0, rtol=rtol, atol=atol, key=key,
                         max_steps=max_steps, progress=progress, adjoint=adjoint)
    observe = _check_observe(observe)
    snapshots = _check_snapshots(snapshots, ts, observe)
    if not isinstance(fast, bool):
        raise TypeError(f"`fast` must be a bool (the fixed-step fast path), got {type(fast).__name__}.")
    mesh = sharded_mesh(system)
    fixed = _fixed.plan(settings.solver, ts, settings.dt0, snapshots, max_steps=settings.max_steps,
                        fast=fast, adjoint=adjoint, sde=settings.sde, adaptive=settings.adaptive,
                        sharded=mesh is not None)
    if fixed is not None:
        solved = _fixed.run(system, y0, ts, float(settings.dt0), args=args, plan=fixed,
                            max_steps=settings.max_steps, progress=settings.progress, observe=observe,
                            snapshots=snapshots)
        return _finish_simulate(system, ts, solved, observe, snapshots, throw)
    if mesh is not None:  # a field sharded over several processes: one SPMD program over all of them
        y0 = put(y0, mesh) if y0.ndim >= 1 and y0.shape[0] % mesh.devices.size == 0 else replicate(y0, mesh)
        ts, args, key, snapshots = replicate((ts, args, key, snapshots), mesh)
    if observe is None:
        solved = integrate(system, y0, ts, args=args, key=key, settings=settings)
    else:
        solved = integrate(system, y0, ts, args=args, key=key, settings=settings, observe=observe,
                           snapshots=snapshots)
    return _finish_simulate(system, ts, solved, observe, snapshots, throw, mesh)


def _finish_simulate(system, ts, solved, observe, snapshots, throw, mesh=None) -> SimulationResult:
    """The [`SimulationResult`][] of one solve (diffrax's or the fixed-step path's), gathered from
    the processes of `mesh`, and the failure policy."""
    if observe is None:
        ys, result, failed_step, failed_time, stats = solved
        out = SimulationResult(ts, ys, result, failed_step, failed_time, stats, system.circular)
    else:
        ys, result, failed_step, failed_time, stats, observed = solved
        out = SimulationResult(ts, ys, result, failed_step, failed_time, stats, system.circular,
                               observed=observed, snapshot_ts=snapshots)
    if mesh is not None:
        out = gather(out)
    return finish(out, throw, name="simulate", keep="the trajectory")


def shard_nodes(field, devices=None, *, mesh=None):
    r"""Place the node-indexed arrays of `field` (leading axis $N$) across devices with `jax.sharding`.

    Dense coupling matrices are split by rows, so each device computes its rows of $W e^{i\theta}$;
    under `jit` the rest follows from sharding propagation. The result is numerically the
    single-device computation (same operations, different placement; reductions such as FFTs and
    row sums may be summed in another order, a difference at the level of rounding). A
    [`Circulant`][] coupling with split FFTs is switched to plain FFTs (`split = 1`): XLA's CPU FFT
    rejects the batched operand of a split FFT once the nodes are sharded.

    With a `mesh` spanning several processes ([`jaxdyn.distributed.global_mesh`][]), each process
    holds only its devices' rows; [`simulate`][] then places `y0` the same way, runs one SPMD
    program over every process, and returns the trajectory gathered on every process.

    **Arguments:** `field` (a [`Kuramoto`][] or other [`AbstractParticleSystem`][]; for a plain
    vector field $N$ is the leading axis of its first array), built from the same data on every
    process; `devices` (one process's devices, default all local ones) or `mesh` (a
    `jax.sharding.Mesh`: its leading axis, over all its axes, takes the nodes); $N$ must be
    divisible by the number of devices.

    **Returns:** the field with its node-indexed leaves sharded.
    """
    from jax.sharding import Mesh

    from ..distributed._mesh import check_mesh, put

    if mesh is not None and devices is not None:
        raise ValueError("give `mesh` or `devices`, not both.")
    if mesh is None:
        devices = list(jax.local_devices() if devices is None else devices)
        if not devices:
            raise ValueError("`devices` is empty.")
        mesh = Mesh(np.asarray(devices, dtype=object), ("nodes",))
    check_mesh(mesh)
    n_dev = mesh.devices.size
    n = as_system(field).n or jnp.shape(jax.tree_util.tree_leaves(field)[0])[0]
    if n % n_dev:
        raise ValueError(f"`field` has N = {n} nodes, not divisible by {n_dev} devices.")
    from ..distributed._mesh import replicate
    from ._coupling import Circulant

    # A split FFT is a batch of FFTs whose (p, N/p) operand XLA's CPU FFT rejects once sharded
    # (fft_thunk RET_CHECK IsMonotonicWithDim0Major): sharded Circulants use plain 1-D FFTs.
    field = jax.tree_util.tree_map(lambda x: x.unsplit() if isinstance(x, Circulant) else x, field,
                                   is_leaf=lambda x: isinstance(x, Circulant))

    def place(leaf):
        if isinstance(leaf, jax.Array) and leaf.ndim >= 1 and leaf.shape[0] == n:
            return put(leaf, mesh)
        if isinstance(leaf, jax.Array):
            return replicate(leaf, mesh)
        return leaf

    return jax.tree_util.tree_map(place, field)
