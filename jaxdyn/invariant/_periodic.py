r"""Periodic orbits of flows by multiple shooting, their Floquet multipliers, and the
periodic-orbit branch problem of [`continuation`][].

A periodic orbit of $\dot y = f(t, y)$ (autonomous) with period $T$ is cut into $m$ segments of
duration $T/m$ with starts $x_0, \dots, x_{m-1}$. The unknowns $u = (x_0, \dots, x_{m-1}, T)$
($mn + 1$ numbers) solve

$$\varphi_{T/m}(x_j) - x_{j+1 \bmod m} = 0 \quad (j = 0, \dots, m-1), \qquad
\langle f(x^{\mathrm{ref}}), x_0 - x^{\mathrm{ref}} \rangle = 0,$$

the shooting residual and a phase condition (a Poincare section through a reference point
$x^{\mathrm{ref}}$, which removes the time-shift invariance). Newton's method on it runs through
optimistix, and derivatives of the orbit and its period with respect to `args` come by implicit
differentiation (`optx.ImplicitAdjoint`), not through the iterations. The segment map carries a
custom derivative: with respect to the starts and the period it is the segment Jacobian from the
variational equation and the field at the segment end (one augmented solve per segment, where
pushing the $mn + 1$ Newton directions through the solver's steps would cost $mn + 1$ solves:
25x slower for a 100-dimensional orbit); with respect to parameters it is forward mode through
the solver (`diffrax.DirectAdjoint`, which the reverse mode of the implicit derivative can
transpose).

**Why multiple shooting (and not collocation).** The segments are integrated by diffrax's adaptive
high-order solvers with error control, so the accuracy of the orbit is the solver's tolerance
whatever the orbit's shape, with $mn + 1$ unknowns instead of collocation's
$(\text{mesh} \times \text{degree}) \cdot n$; the $m$ segments are independent (one vmapped solve);
and the monodromy matrix comes as the product of the $m$ segment Jacobians, which is exactly the
form the periodic QR method needs for the Floquet multipliers. Single shooting ($m = 1$) would
put all of the orbit's expansion into one Jacobian; $m$ segments keep each factor well
conditioned. Collocation is better for stiff or very unstable orbits where a segment cannot be
integrated at all; that is not the case jaxdyn's networks present.

**Floquet multipliers.** The segment Jacobians are solved from the variational equation
$\dot Y = \partial_y f(y)\, Y$ together with the orbit, every entry under relative error
control (a contracting direction with multiplier $10^{-12}$ is then resolved to the solver's
relative tolerance, which forward-mode differentiation of the steps, controlled by the orbit
alone, would not give). Their product is never formed: [`product_eigenvalues`][] (a periodic QR
method) returns its eigenvalues, the trivial multiplier $1$ included.
"""

import math
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._checks import check_finite, check_int, check_positive
from .._kernels import jvp_columns
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array
from ._floquet import product_eigenvalues
from ._problems import AbstractBranchProblem, with_parameter

# Points saved per segment for the fine orbit of the result (static: about 256 in all).
_SAMPLES = 256


def _default_solver() -> diffrax.AbstractSolver:
    return diffrax.Dopri8()


class _Shooting(eqx.Module):
    """The static settings of the segment solves."""

    solver: diffrax.AbstractSolver
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def controller(self) -> diffrax.PIDController:
        return diffrax.PIDController(rtol=self.rtol, atol=self.atol)


def _segment(cfg: _Shooting, field: Callable, x: Array, duration: Array, args: Any, *,
             adjoint: diffrax.AbstractAdjoint | None = None) -> tuple[Array, Array]:
    """`phi_duration(x)` and the diffrax result (`adjoint`: default diffrax's)."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), cfg.solver, 0.0, duration, None, x, args=args,
        stepsize_controller=cfg.controller(), max_steps=cfg.max_steps,
        adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint(), saveat=diffrax.SaveAt(t1=True), throw=False,
    )
    return sol.ys[0], sol.result


@eqx.filter_custom_jvp
def _ends(field: Callable, states: Array, duration: Array, args: Any, *, cfg: _Shooting) -> Array:
    """The segment ends `phi_duration(x_j)`, `(m, n)`. Their derivative is custom (below): with
    respect to the starts, the segment Jacobians from the variational equation (one augmented
    solve, not `m n` tangents pushed through the solver: the Newton Jacobian of a 100-dimensional
    orbit costs about one variational solve)."""
    return jax.vmap(lambda x: _segment(cfg, field, x, duration, args)[0])(states)


@_ends.def_jvp
def _ends_jvp(primals, tangents, *, cfg: _Shooting):
    field, states, duration, args = primals
    t_field, t_states, t_duration, t_args = tangents
    _, ends, jacobians, _ = jax.vmap(lambda x: _variational(cfg, field, x, duration, args, n_save=1))(states)
    ends, jacobians = jax.lax.stop_gradient((ends, jacobians))
    tangent = jnp.zeros_like(ends)
    if t_states is not None:
        tangent = tangent + jnp.einsum("mij,mj->mi", jacobians, t_states)
    if t_duration is not None:
        tangent = tangent + jax.vmap(lambda y: field(0.0, y, args))(ends) * t_duration
    if any(t is not None for t in jax.tree_util.tree_leaves((t_field, t_args), is_leaf=lambda t: t is None)):
        # parameters of the field or in args: forward mode through the solver (DirectAdjoint, which
        # can also be transposed for reverse-mode implicit derivatives)
        dynamic, static = eqx.partition((field, args), eqx.is_inexact_array)
        def fill(p, t):  # a parameter that is not differentiated gets a zero tangent
            return None if p is None else (jnp.zeros_like(p) if t is None else t)

        t_dynamic = jax.tree_util.tree_map(fill, dynamic, (t_field, t_args), is_leaf=lambda t: t is None)

        def push(d):
            f, a = eqx.combine(d, static)
            return jax.vmap(lambda x: _segment(cfg, f, x, duration, a, adjoint=diffrax.DirectAdjoint())[0])(
                states)

        tangent = tangent + jax.jvp(push, (dynamic,), (t_dynamic,))[1]
    return ends, tangent


def _variational(cfg: _Shooting, field: Callable, x: Array, duration: Array, args: Any, *,
                 n_save: int) -> tuple[Array, Array, Array, Array]:
    """The orbit and the Jacobian of `phi_duration` at `x` from the variational equation, both
    under error control: `(samples (n_save, n) at n_save equally spaced times in [0, duration),
    end state, Jacobian, whether the solve succeeded)`. Differentiable in reverse mode (diffrax's default
    adjoint), so `jax.grad` of a multiplier works; forward mode is refused by diffrax, loudly."""
    n = x.shape[0]

    def augmented(t, state, args):
        y, Y = state
        fy, JY = jvp_columns(lambda z: field(t, z, args), y, Y)
        return fy, JY

    ts = duration * jnp.arange(n_save + 1) / n_save
    # relative control of every entry (max norm, atol scaled down by rtol): a Jacobian entry that
    # decays to 1e-6 over a segment keeps its relative accuracy (the 1e-12 multipliers need it)
    controller = diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol * cfg.rtol, norm=optx.max_norm)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(augmented), cfg.solver, 0.0, duration, None, (x, jnp.eye(n, dtype=x.dtype)),
        args=args, stepsize_controller=controller, max_steps=cfg.max_steps,
        saveat=diffrax.SaveAt(ts=ts), throw=False,
    )
    ys, Ys = sol.ys
    return ys[:-1], ys[-1], Ys[-1], sol.result == diffrax.RESULTS.successful


def _split(u: Array, m: int) -> tuple[Array, Array]:
    """`u = concatenate([states.ravel(), [T]])` -> `(states (m, n), T)`."""
    n = (u.shape[0] - 1) // m
    return u[:-1].reshape(m, n), u[-1]


def _shooting_residual(cfg: _Shooting, field: Callable, u: Array, args: Any, x_ref: Array, *,
                       m: int) -> Array:
    """The multiple-shooting residual with the phase condition through `x_ref` (length `m n + 1`)."""
    states, T = _split(u, m)
    ends = _ends(field, states, T / m, args, cfg=cfg)
    gaps = ends - jnp.roll(states, -1, axis=0)
    f_ref = field(0.0, x_ref, args)
    phase = jnp.dot(f_ref, states[0] - x_ref)
    return jnp.concatenate([gaps.ravel(), phase[None]])


def _multipliers(cfg: _Shooting, field: Callable, u: Array, args: Any, *, m: int,
                 n_save: int) -> tuple[Array, Array, Array, Array]:
    """`(multipliers (n,), converged, samples (m, n_save, n), segments solved)` at the orbit `u`."""
    states, T = _split(u, m)
    samples, _, jacobians, solved = jax.vmap(
        lambda x: _variational(cfg, field, x, T / m, args, n_save=n_save))(states)
    values, converged = product_eigenvalues(jacobians)
    return values, converged, samples, jnp.all(solved)


def _nontrivial(multipliers: Array) -> tuple[Array, Array]:
    """`(mask of the non-trivial multipliers, distance of the trivial one from 1)`: the trivial
    multiplier is the one closest to 1."""
    distance = jnp.abs(multipliers - 1.0)
    trivial = jnp.argmin(jnp.where(jnp.isnan(distance), jnp.inf, distance))
    mask = jnp.arange(multipliers.shape[0]) != trivial
    return mask, distance[trivial]


def orbit_guess_from_hopf(x_eq: Array, eigenvector: Array, omega: Any, amplitude: Any,
                          n_segments: int) -> Array:
    r"""A starting point on the periodic-orbit branch born at a Hopf point, in the unknown layout
    of [`PeriodicOrbitProblem`][]: states $x_j = x_{eq} + a\, \mathrm{Re}(v\, e^{2\pi i j/m})$
    ($v$ the eigenvector of $i\omega$ normalised to unit length, $a$ = `amplitude`) and period
    $T = 2\pi/\omega$; returns `concatenate([states.ravel(), [T]])`."""
    m = check_int(n_segments, "n_segments")
    x_eq = jnp.asarray(x_eq)
    v = jnp.asarray(eigenvector).astype(jnp.result_type(x_eq.dtype, jnp.complex64))
    v = v / jnp.linalg.norm(v)
    phases = jnp.exp(2j * jnp.pi * jnp.arange(m) / m)
    states = x_eq[None, :] + amplitude * jnp.real(phases[:, None] * v[None, :])
    T = 2 * jnp.pi / jnp.asarray(omega, x_eq.dtype)
    return jnp.concatenate([states.ravel(), jnp.reshape(T, (1,)).astype(x_eq.dtype)])


def _log_product(factors: Array, mask: Array) -> Array:
    """The real product of the masked complex `factors` (real in exact arithmetic: conjugate pairs)
    as a continuous, bounded test function: its sign times the geometric mean modulus (no
    underflow for many factors; zero exactly where a factor vanishes)."""
    logs = jnp.where(mask, jnp.log(jnp.abs(factors)), 0.0)
    angle = jnp.sum(jnp.where(mask, jnp.angle(factors), 0.0))
    count = jnp.maximum(jnp.sum(mask), 1)
    return jnp.cos(angle) * jnp.exp(jnp.sum(logs) / count)


class PeriodicOrbitProblem(AbstractBranchProblem):
    r"""Periodic orbits of a flow `field(t, y, args)` as a branch problem of [`continuation`][].

    The unknown is `u = concatenate([states.ravel(), [T]])` (the `n_segments` segment starts and
    the period, length `m n + 1`); `residual` is the multiple-shooting residual with the phase
    condition $\langle f(x^{\mathrm{ref}}), x_0 - x^{\mathrm{ref}} \rangle = 0$ through the first
    state of `u_ref`; `spectrum` the `n` Floquet multipliers (trivial included); the test
    functions are $\prod_i (\mu_i + 1)$ (a real multiplier crosses $-1$: period doubling) and
    $\prod_{i<j} (\mu_i \mu_j - 1)$ (a complex pair crosses the unit circle: Neimark-Sacker), both
    over the non-trivial multipliers, each factor scaled to modulus at most one.

    **Arguments:**

    - `field`: the vector field `f(t, y, args)`, `y` flat `(n,)`, autonomous.
    - `parameter`: `(args, p) -> args` putting the continuation parameter in, or `None` (then
      `args` is the parameter).
    - `n_segments`: the number of shooting segments `m`.
    - `solver`, `rtol`, `atol`, `max_steps`: the diffrax solver of the segments (default
      `diffrax.Dopri8()`) and its tolerances and step budget per segment.
    """

    field: Callable
    parameter: Callable | None
    n_segments: int = eqx.field(static=True)
    shooting: _Shooting
    test_names: ClassVar[tuple[str, ...]] = ("period_doubling", "neimark_sacker")

    def __init__(self, field: Callable, *, parameter: Callable | None = None, n_segments: int = 8,
                 solver: diffrax.AbstractSolver | None = None, rtol: float = 1e-10, atol: float = 1e-12,
                 max_steps: int = 4096):
        if not callable(field):
            raise TypeError(f"`field` must be callable as field(t, y, args), got {type(field).__name__}.")
        if parameter is not None and not callable(parameter):
            raise TypeError(f"`parameter` must be None or a callable (args, p) -> args, got "
                            f"{type(parameter).__name__}.")
        self.field = field
        self.parameter = parameter
        self.n_segments = check_int(n_segments, "n_segments")
        self.shooting = _shooting_config(solver, rtol, atol, max_steps)

    def residual(self, u: Array, p: Array, args: Any, u_ref: Array) -> Array:
        m = self.n_segments
        n = (u.shape[0] - 1) // m
        return _shooting_residual(self.shooting, self.field, u, with_parameter(self.parameter, args, p),
                                  u_ref[:n], m=m)

    def spectrum(self, u: Array, p: Array, args: Any) -> Array:
        values, _, _, _ = _multipliers(self.shooting, self.field, u, with_parameter(self.parameter, args, p),
                                    m=self.n_segments, n_save=1)
        return values

    def n_unstable(self, spectrum: Array) -> Array:
        mask, _ = _nontrivial(spectrum)
        return jnp.sum(mask & (jnp.abs(spectrum) > 1.0))

    def test_functions(self, u: Array, p: Array, args: Any, spectrum: Array) -> Array:
        mask, _ = _nontrivial(spectrum)
        flip = _log_product((spectrum + 1.0) / (1.0 + jnp.abs(spectrum)), mask)
        i, j = np.triu_indices(spectrum.shape[0], k=1)
        pairs = spectrum[i] * spectrum[j]
        torus = _log_product((pairs - 1.0) / (1.0 + jnp.abs(pairs)), mask[i] & mask[j])
        return jnp.stack([flip, torus])

    def dimension(self, u: Array) -> int:
        return int(u.shape[0])


def _shooting_config(solver, rtol, atol, max_steps) -> _Shooting:
    """Validate the segment-solver settings (errors name the argument)."""
    if solver is None:
        solver = _default_solver()
    elif not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise TypeError(f"`solver` must be an adaptive diffrax solver (e.g. diffrax.Dopri8()), got "
                        f"{type(solver).__name__}.")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.")
        check_positive(value, name)
    return _Shooting(solver, float(rtol), float(atol), check_int(max_steps, "max_steps"))


class PeriodicOrbitResult(AbstractResult):
    """A periodic orbit found by [`periodic_orbit`][].

    - `states`: the segment starts `(m, n)` (`states[0]` on the phase section).
    - `period`: the period `T`.
    - `multipliers`: the `n` Floquet multipliers, complex, by decreasing modulus (trivial included).
    - `trivial_error`: the distance from 1 of the multiplier closest to 1 (an accuracy check).
    - `residual_norm`: the largest entry of the shooting residual (phase condition included).
    - `stable`: whether every non-trivial multiplier lies inside the unit circle.
    - `samples`: the orbit at `m * k` equally spaced times over one period, `(m, k, n)` (see
      [`orbit`][]).
    - `n_newton`: the Newton iterations taken.
    - `result`: a [`RESULTS`][] code.
    """

    states: Array
    period: Array
    multipliers: Array
    trivial_error: Array
    residual_norm: Array
    stable: Array
    samples: Array
    n_newton: Array
    result: RESULTS

    def orbit(self) -> tuple[Array, Array]:
        """The orbit on a fine time grid over one period: `(ts (m k,), ys (m k, n))`, `ts[0] = 0`
        at `states[0]`."""
        m, k, n = self.samples.shape[-3:]
        ts = self.period[..., None] * jnp.arange(m * k) / (m * k)
        return ts, self.samples.reshape(*self.samples.shape[:-3], m * k, n)

    def summary(self) -> str:
        mult = np.asarray(self.multipliers)
        if mult.ndim != 1:
            return (f"{mult.shape[0]} periodic orbits: periods {np.asarray(self.period)}\n"
                    f"{message(self.result)}")
        shown = ", ".join(f"{complex(z).real:.6g}{complex(z).imag:+.3g}j" if abs(complex(z).imag) > 0
                          else f"{complex(z).real:.6g}" for z in mult)
        lines = [f"Periodic orbit: period T = {float(self.period):.10g} "
                 f"({self.states.shape[0]} shooting segment{'s' if self.states.shape[0] > 1 else ''}, "
                 f"residual {float(self.residual_norm):.2e})",
                 f"Floquet multipliers: {shown}",
                 f"trivial multiplier 1 to {float(self.trivial_error):.1e}; "
                 f"{'stable' if bool(self.stable) else 'unstable'}"]
        if not np.all(np.asarray(self.successful)):
            lines.append(message(self.result))
        return "\n".join(lines)

    def plot(self, ax=None, dims: tuple[int, int] = (0, 1), **kwargs):
        from ..plot._periodic import plot_periodic_orbit

        return plot_periodic_orbit(self, ax=ax, dims=dims, **kwargs)


def _validate(field, guess, period_guess, n_segments, n_newton, tol, args) -> tuple[Array, int]:
    """Reject bad input before tracing; returns `(guess as a float array, m)`."""
    if not callable(field):
        raise TypeError(f"`field` must be callable as field(t, y, args), got {type(field).__name__}.")
    m = check_int(n_segments, "n_segments")
    check_int(n_newton, "n_newton")
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.integer | np.floating):
        raise TypeError(f"`tol` must be a number, got {type(tol).__name__}.")
    check_positive(tol, "tol")
    if isinstance(period_guess, bool) or not isinstance(period_guess, int | float | np.number | jax.Array
                                                         | np.ndarray):
        raise TypeError(f"`period_guess` must be a number, got {type(period_guess).__name__}.")
    if jnp.shape(period_guess) != ():
        raise ValueError(f"`period_guess` must be a scalar, got shape {jnp.shape(period_guess)}.")
    check_positive(period_guess, "period_guess")
    if not isinstance(guess, jax.Array | np.ndarray | list | tuple):
        raise TypeError(f"`guess` must be an array, a point (n,) or segment starts (m, n), got "
                        f"{type(guess).__name__}.")
    guess = jnp.asarray(guess)
    if not jnp.issubdtype(guess.dtype, jnp.floating):
        if not jnp.issubdtype(guess.dtype, jnp.integer):
            raise TypeError(f"`guess` must be real, got dtype {guess.dtype}.")
        guess = guess.astype(jnp.result_type(float))
    if guess.ndim not in (1, 2) or guess.shape[-1] < 1:
        raise ValueError(f"`guess` must be a point (n,) or segment starts (n_segments, n), got shape "
                         f"{guess.shape}.")
    if guess.ndim == 2 and guess.shape[0] != m:
        raise ValueError(f"`guess` holds {guess.shape[0]} segment starts but `n_segments` = {m}.")
    guess = check_finite(guess, "guess")
    point = guess if guess.ndim == 1 else guess[0]
    try:
        out = jax.eval_shape(lambda y: field(0.0, y, args), point)
    except Exception as error:  # a field that fails on the state says so, naming `field`
        raise ValueError(f"`field` failed on a state of shape {point.shape}: {error}") from error
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"`field` must return one array of the state's shape {point.shape}, got "
                         f"{type(out).__name__}.")
    if out.shape != point.shape:
        raise ValueError(f"`field` must return an array of the state's shape {point.shape}, got {out.shape}.")
    return guess, m


def _initial_states(cfg: _Shooting, field: Callable, guess: Array, period: Array, args: Any,
                    m: int) -> Array:
    """The segment starts: `guess` when it holds them, else the guess point integrated over
    `period_guess` and sampled at `T j / m` (no derivatives through the guess)."""
    if guess.ndim == 2:
        return guess
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), cfg.solver, 0.0, period, None, guess, args=args,
        stepsize_controller=cfg.controller(), max_steps=cfg.max_steps,
        saveat=diffrax.SaveAt(ts=period * jnp.arange(m) / m), throw=False,
    )
    return jax.lax.stop_gradient(sol.ys)


def _root(fn_args: tuple, u: Array) -> Array:
    """The residual as optimistix sees it: `fn(u, (config, field, args, x_ref, m))`."""
    cfg, field, args, x_ref, m = fn_args
    return _shooting_residual(cfg, field, u, args, jax.lax.stop_gradient(x_ref), m=m)


def _code(u: Array, residual: Array, newton_ok: Array, segments_ok: Array, floquet_ok: Array,
          speed: Array, m: int) -> RESULTS:
    """The result code: a collapsed or non-positive period first, then the segment solves, Newton,
    and the periodic QR iteration."""
    states, T = _split(u, m)
    size = 1.0 + jnp.max(jnp.abs(states))
    collapsed = T * speed <= 1e-6 * size
    invalid = ~jnp.isfinite(T) | (T <= 0) | collapsed | ~jnp.all(jnp.isfinite(states))
    code = RESULTS.where(floquet_ok, RESULTS.successful, RESULTS.floquet_not_converged)
    code = RESULTS.where(newton_ok & jnp.all(jnp.isfinite(residual)), code, RESULTS.not_converged)
    code = RESULTS.where(segments_ok, code, RESULTS.max_steps_reached)
    return RESULTS.where(invalid, RESULTS.invalid_period, code)


def periodic_orbit(field: Callable, guess: Array, period_guess: Any, *, args: Any = None,
                   n_segments: int = 8, solver: diffrax.AbstractSolver | None = None,
                   rtol: float = 1e-10, atol: float = 1e-12, max_steps: int = 4096, n_newton: int = 40,
                   tol: float = 1e-10, throw: bool = True) -> PeriodicOrbitResult:
    r"""A periodic orbit of the autonomous flow $\dot y = f(t, y, \text{args})$ by multiple
    shooting, with its period and Floquet multipliers.

    Solves $\varphi_{T/m}(x_j) = x_{j+1 \bmod m}$ ($j < m$) and the phase condition
    $\langle f(x^{\mathrm{ref}}), x_0 - x^{\mathrm{ref}} \rangle = 0$ ($x^{\mathrm{ref}}$ the first
    start of the guess) for the starts $x_j$ and the period $T$ by Newton's method (optimistix),
    then the multipliers, the eigenvalues of the monodromy matrix
    $\prod_j \partial \varphi_{T/m}(x_j)$, by a periodic QR method on the segment Jacobians (never
    the explicit product: multipliers of modulus $10^{-12}$ and $10^{8}$ are resolved, and the
    trivial multiplier is 1 to the solver's tolerance whatever `n_segments`). Why multiple
    shooting rather than collocation: see the module docstring of `jaxdyn.invariant._periodic`
    (adaptive error-controlled segments, `m n + 1` unknowns, the monodromy matrix as a product of
    well-conditioned factors).

    **Arguments:**

    - `field`: the vector field `f(t, y, args)`, `y` flat `(n,)`; autonomous.
    - `guess`: a point `(n,)` near the orbit (the starts are then taken from integrating it over
      `period_guess`), or the segment starts `(n_segments, n)`.
    - `period_guess`: a guess of the period, `> 0`.
    - `args`: passed to `field`. Derivatives with respect to it are implicit (through the
      shooting equations, not the Newton iterations): `jax.grad` of the period, the states or a
      multiplier with respect to a parameter works. Reverse mode only (`jax.grad`, `jax.vjp`):
      the variational solve of the multipliers uses diffrax's reverse-mode adjoint, so `jax.jvp`
      raises.
    - `n_segments`: the number of shooting segments `m`.
    - `solver`, `rtol`, `atol`, `max_steps`: the adaptive diffrax solver of the segments (default
      `diffrax.Dopri8()`), its tolerances, and its step budget per segment.
    - `n_newton`: the most Newton iterations; `tol`: their tolerance (on the update and residual).
    - `throw`: raise on failure (`True`) or return the code in `result` (`False`).

    **Returns:**

    A [`PeriodicOrbitResult`][]. Its `result` is `RESULTS.invalid_period` when the period became
    non-positive or the orbit collapsed onto an equilibrium, `RESULTS.not_converged` when Newton
    did not converge, `RESULTS.max_steps_reached` when a segment ran out of steps,
    `RESULTS.floquet_not_converged` when the periodic QR iteration did not settle.

    **Example:**

    ```python
    def stuart_landau(t, y, args):
        mu, omega = args
        r2 = y[0] ** 2 + y[1] ** 2
        return jnp.stack([mu * y[0] - omega * y[1] - r2 * y[0], omega * y[0] + mu * y[1] - r2 * y[1]])

    res = periodic_orbit(stuart_landau, jnp.array([1.2, 0.0]), 6.0, args=(1.0, 1.0))
    res.period        # 2 pi
    res.multipliers   # [1, exp(-2 mu T)]
    ```
    """
    check_throw(throw)
    guess, m = _validate(field, guess, period_guess, n_segments, n_newton, tol, args)
    cfg = _shooting_config(solver, rtol, atol, max_steps)
    out = _solve(cfg, field, guess, jnp.asarray(period_guess, guess.dtype), args, m=m, n_newton=n_newton,
                 tol=float(tol))
    return raise_if_failed(out, out.result, throw, hint="(`periodic_orbit`: pass `throw=False` to get "
                           "the last iterate with its `result` code.)")


@eqx.filter_jit
def _solve(cfg: _Shooting, field: Callable, guess: Array, period: Array, args: Any, *, m: int,
           n_newton: int, tol: float) -> PeriodicOrbitResult:
    """Starts, Newton (optimistix, implicit derivatives), then multipliers and the fine orbit."""
    states0 = _initial_states(cfg, field, guess, period, args, m)
    u0 = jnp.concatenate([states0.ravel(), jnp.reshape(period, (1,))])
    x_ref = states0[0]
    fn_args = (cfg, field, args, x_ref, m)
    sol = optx.root_find(lambda u, a: _root(a, u), optx.Newton(rtol=tol, atol=tol), u0, fn_args,
                         max_steps=n_newton, throw=False, adjoint=optx.ImplicitAdjoint())
    u = sol.value
    newton_ok = sol.result == optx.RESULTS.successful
    residual = _root(fn_args, jax.lax.stop_gradient(u))
    states, T = _split(u, m)
    frozen = jax.lax.stop_gradient(u)
    n_save = max(2, math.ceil(_SAMPLES / m))
    # from `u` itself: the multipliers' derivatives (reverse mode) include the orbit's implicit ones
    multipliers, floquet_ok, samples, segments_ok = _multipliers(cfg, field, u, args, m=m, n_save=n_save)
    mask, trivial_error = _nontrivial(multipliers)
    stable = jnp.all(jnp.where(mask, jnp.abs(multipliers) < 1.0, True))
    speed = jnp.max(jax.vmap(lambda x: jnp.linalg.norm(field(0.0, x, args)))(_split(frozen, m)[0]))
    code = _code(frozen, residual, newton_ok, segments_ok, floquet_ok, speed, m)
    return PeriodicOrbitResult(states, T, multipliers, trivial_error, jnp.max(jnp.abs(residual)), stable,
                               samples, sol.stats["num_steps"], code)
