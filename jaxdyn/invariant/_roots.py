r"""Every equilibrium of a flow, fixed point or cycle of a map in a box: multi-start deflated Newton.

One root finder serves them all (and [`jaxdyn.models.critical_points`][], the gradient-field case).
A problem is a residual $G$: $G(x) = f(0, x)$ for a flow, $G(x) = F^k(x) - x$ for a map's
period-$k$ points, $G(x) = \nabla f(x)$ for critical points. The search:

1. `n_starts` points uniform in the box; each runs Newton (`optx.root_find` with `optx.Newton`,
   iterates clipped to the box enlarged by its width on each side, SVD solves so that a singular
   Jacobian gives a least-squares step instead of a NaN) on the *deflated* residual
   $M(x) G(x)$, $M(x) = \prod_i (1 / \|(x - r_i)/w\|^2 + 1)$ over the roots $r_i$ found so far
   ($w$ the box widths; Farrell, Birkisson & Funke 2015, power 2 and shift 1): $M$ blows up at a
   found root, so Newton is pushed away from it toward roots not yet found. The starts run one
   after the other in a `lax.scan` that carries a fixed-capacity buffer of the found roots (each
   start adds at most one orbit), so the search is jit- and vmap-able.
2. Each end point is polished by Newton on the undeflated $G$ (the same `root_find`, deflation
   switched off), then accepted when its residual max-norm is at most `tol`, it lies in the box
   (relative slack $10^{-6}$), and it is farther than `dedup_tol` from every root found (for a
   cycle: from every point of every orbit found, so cyclic shifts are one orbit; points of a
   smaller period are deflated but not reported).
3. The accepted roots are solved once more by `optx.root_find` *with the parameters live*: its
   `ImplicitAdjoint` gives the derivative of each root with respect to `args` by the implicit
   function theorem, $\partial x / \partial p = -G_x^{-1} G_p$ (nothing is differentiated
   through the search).
4. Sorting (lexicographic in the coordinates, rounded to `dedup_tol`), the spectrum (Jacobian
   eigenvalues, or multipliers: along a cycle by the periodic QR of
   `jaxdyn.invariant._floquet.product_eigenvalues`, not the explicit product) and the
   classification of [`jaxdyn.invariant._classify`][].

Why our own loop around optimistix: optimistix solves one root from one start; deflation, the
found-root buffer and the acceptance are the multi-start search itself, which no library in the
ecosystem provides.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jax import lax

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key
from ._classify import (
    KINDS,
    AbstractClassification,
    FlowClassification,
    MapClassification,
    classify,
    order_spectrum,
)
from ._floquet import product_eigenvalues

_BOX_TOL = 1e-6  # relative slack of the box test
_POLISH_STEPS = 8  # Newton steps of the final (differentiable) solve from a converged root


# --------------------------------------------------------------------------------------------
# Problems: the residual whose zeros are sought, the orbit of a zero, its spectrum.
# --------------------------------------------------------------------------------------------
class _AbstractZeros(eqx.Module):
    """A zero problem $G(x) = 0$, $x$ flat, with the orbit and spectrum of a zero."""

    classification: eqx.AbstractVar[AbstractClassification]

    @abc.abstractmethod
    def residual(self, x: Array, args: Any) -> Array:
        """$G(x)$, shape `(n,)`."""

    @abc.abstractmethod
    def orbit(self, x: Array, args: Any) -> Array:
        """The points of the invariant object through the zero `x`, shape `(p, n)`, `x` first."""

    @abc.abstractmethod
    def spectrum(self, orbit: Array, args: Any) -> tuple[Array, Array]:
        """`(values, converged)`: eigenvalues or multipliers at `orbit`, complex `(n,)`."""


class _FlowZeros(_AbstractZeros):
    """Equilibria of an autonomous flow `field(t, y, args)` (evaluated at $t = 0$)."""

    field: Callable
    classification: AbstractClassification = FlowClassification()

    def residual(self, x, args):
        return self.field(jnp.zeros((), x.dtype), x, args)

    def orbit(self, x, args):
        return x[None]

    def spectrum(self, orbit, args):
        jac = jax.jacfwd(self.residual)(orbit[0], args)
        return jnp.linalg.eigvals(jac), jnp.array(True)


class _MapZeros(_AbstractZeros):
    """Period-`period` points of a map `map(x, args)`: zeros of $F^{period}(x) - x$."""

    map: Callable
    period: int = eqx.field(static=True)
    classification: AbstractClassification = MapClassification()

    def orbit(self, x, args):
        def step(y, _):
            return self.map(y, args), y

        _, points = lax.scan(step, x, None, length=self.period)
        return points

    def residual(self, x, args):
        def step(y, _):
            return self.map(y, args), None

        y, _ = lax.scan(step, x, None, length=self.period)
        return y - x

    def spectrum(self, orbit, args):
        mats = jax.vmap(jax.jacfwd(self.map), (0, None))(orbit, args)
        if self.period == 1:
            return jnp.linalg.eigvals(mats[0]), jnp.array(True)
        return product_eigenvalues(mats)


class _GradientZeros(_AbstractZeros):
    """Critical points of a scalar `fn(x)`: zeros of $\\nabla f$ (its Hessian's eigenvalues)."""

    fn: Callable
    classification: AbstractClassification = FlowClassification()

    def residual(self, x, args):
        return jax.grad(lambda y: jnp.reshape(self.fn(y), ()))(x)

    def orbit(self, x, args):
        return x[None]

    def spectrum(self, orbit, args):
        hess = jax.jacfwd(self.residual)(orbit[0], args)
        return jnp.linalg.eigvalsh(hess).astype(jnp.result_type(hess.dtype, jnp.complex64)), jnp.array(True)


# --------------------------------------------------------------------------------------------
# The search.
# --------------------------------------------------------------------------------------------
class _Settings(eqx.Module):
    """The settings of the search: Newton's tolerances and step budget are static."""

    n_steps: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    accept: Array  # residual max-norm accepted as a zero
    dedup_tol: Array  # distance under which two zeros are one
    box_tol: Array  # relative slack of the box test


class _Found(eqx.Module):
    """What the search returns: the reported zeros (NaN beyond `n_found`), and per start its
    polished end point, whether that converged (to a new zero or a known one), and whether the
    residual was non-finite where the start went."""

    points: Array
    found: Array
    n_found: Array
    ends: Array
    converged: Array
    nonfinite: Array


def _deflated(x, a):
    """$M(x) G(x)$ with $M = \\prod_i (1/\\|(x - r_i)/w\\|^2 + 1)$ over the masked roots."""
    problem, args, roots, mask, width = a
    g = problem.residual(x, args)
    d2 = jnp.sum(((x - roots) / width) ** 2, axis=-1)
    d2 = jnp.where(mask, d2, 1.0)
    log_m = jnp.sum(jnp.where(mask, jnp.log1p(1.0 / d2), 0.0))
    return jnp.exp(log_m) * g


def _is_minimal(orbit: Array, tol) -> Array:
    """Whether the orbit's first point is not a fixed point of $F^q$, $q$ a proper divisor."""
    p = orbit.shape[0]
    out = jnp.array(True)
    for q in range(1, p):
        if p % q == 0:
            out = out & (jnp.linalg.norm(orbit[q] - orbit[0]) > tol)
    return out


def _stop(tree):
    return jax.tree_util.tree_map(lambda a: lax.stop_gradient(a) if eqx.is_inexact_array(a) else a, tree)


def _admit(problem, args, settings, carry, y, converged, p: int):
    """Keep `y` when it converged and lies farther than `dedup_tol` from every orbit kept so far:
    its orbit joins the deflation set, and it is reported when it is the orbit's representative.
    The one acceptance rule of the deflated search and of the merge of sharded chunks."""
    roots, n_roots, points, n_found = carry
    mask = jnp.arange(roots.shape[0]) < n_roots
    dist = jnp.where(mask, jnp.linalg.norm(y - roots, axis=-1), jnp.inf)
    new = converged & (jnp.min(dist) > settings.dedup_tol)
    orbit = problem.orbit(y, args)
    roots = jnp.where(new, lax.dynamic_update_slice(roots, orbit, (n_roots, 0)), roots)
    report = new & _is_minimal(orbit, settings.dedup_tol)
    points = jnp.where(report, lax.dynamic_update_slice(points, y[None], (n_found, 0)), points)
    return roots, n_roots + p * new, points, n_found + report


@eqx.filter_jit
def _search(problem: _AbstractZeros, starts: Array, args: Any, lower: Array, upper: Array,
            settings: _Settings) -> _Found:
    """The deflated multi-start search (step 1 and 2 of the module docstring); not differentiated."""
    problem, args = _stop((problem, args))
    cap, n = starts.shape
    p = jax.eval_shape(problem.orbit, starts[0], args).shape[0]
    width = upper - lower
    slack = settings.box_tol * width
    solver = optx.Newton(settings.rtol, settings.atol, linear_solver=lx.SVD())
    clip = dict(lower=lower - width, upper=upper + width)

    def one_start(carry, x0):
        roots, n_roots = carry[:2]
        mask = jnp.arange(cap * p) < n_roots

        def phase(y, deflate):
            sol = optx.root_find(_deflated, solver, y, args=(problem, args, roots, mask & deflate, width),
                                 options=clip, max_steps=settings.n_steps, throw=False)
            finite = jnp.all(jnp.isfinite(sol.value))
            return jnp.where(finite, sol.value, y), finite

        y, finite = lax.scan(phase, x0, jnp.array([True, False]))
        g0, g = jax.vmap(problem.residual, (0, None))(jnp.stack([x0, y]), args)  # one copy of G
        nonfinite = ~jnp.all(finite) | ~jnp.all(jnp.isfinite(g)) | ~jnp.all(jnp.isfinite(g0))
        inside = jnp.all((y >= lower - slack) & (y <= upper + slack))
        converged = jnp.all(jnp.isfinite(g)) & (jnp.max(jnp.abs(g)) <= settings.accept) & inside
        carry = _admit(problem, args, settings, carry, y, converged, p)
        return carry, (y, converged, nonfinite)

    init = (jnp.zeros((cap * p, n), starts.dtype), jnp.array(0), jnp.full((cap, n), jnp.nan, starts.dtype),
            jnp.array(0))
    (_, _, points, n_found), (ends, converged, nonfinite) = lax.scan(one_start, init, starts)
    return _Found(points=points, found=jnp.arange(cap) < n_found, n_found=n_found, ends=ends,
                  converged=converged, nonfinite=nonfinite)


def _live_residual(x, a):
    """The residual where `active`, else $x - $ `anchor` (a padded slot solves trivially)."""
    problem, args, active, anchor = a
    return jnp.where(active, problem.residual(x, args), x - anchor)


def _polish(problem: _AbstractZeros, found: _Found, args: Any, settings: _Settings,
            anchor: Array) -> Array:
    """Step 3: the found zeros solved again with `args` live (implicit derivative); padded slots
    come back as `anchor`."""
    solver = optx.Newton(settings.rtol, settings.atol)

    def one(x, active):
        x0 = lax.stop_gradient(jnp.where(active, x, anchor))
        sol = optx.root_find(_live_residual, solver, x0, args=(problem, args, active, anchor),
                             max_steps=_POLISH_STEPS, throw=False)
        return sol.value

    return jax.vmap(one)(found.points, found.found)


def _canonical(orbit: Array) -> Array:
    """A cycle's orbit rotated to start at its point of smallest first coordinate."""
    p = orbit.shape[0]
    k = jnp.argmin(lax.stop_gradient(orbit[:, 0]))
    return orbit[(jnp.arange(p) + k) % p]


class _Assembled(eqx.Module):
    orbits: Array
    found: Array
    spectra: Array
    kinds: Array
    indices: Array
    non_hyperbolic: Array
    residuals: Array
    result: RESULTS


def _assemble(problem: _AbstractZeros, found: _Found, args: Any, settings: _Settings, *,
              anchor: Array, hyperbolic_tol) -> _Assembled:
    """Steps 3 and 4: polish with the implicit derivative, orbits, sort, spectra, kinds, code."""
    live = _polish(problem, found, args, settings, anchor)
    orbits = jax.vmap(lambda x: _canonical(problem.orbit(x, args)))(live)
    reps = orbits[:, 0]
    keys = lax.stop_gradient(jnp.round(reps / settings.dedup_tol))
    order = jnp.lexsort((*(keys[:, i] for i in range(keys.shape[1] - 1, -1, -1)), ~found.found))
    orbits, active = orbits[order], found.found[order]
    values, converged = jax.vmap(lambda o: problem.spectrum(o, args))(orbits)
    values = jax.vmap(lambda s: order_spectrum(problem.classification, s))(values)
    kinds, indices, non_hyperbolic = jax.vmap(
        lambda s: classify(problem.classification, s, hyperbolic_tol))(values)
    residuals = jax.vmap(lambda x: jnp.max(jnp.abs(problem.residual(x, args))))(orbits[:, 0])
    finite = jnp.all(jnp.isfinite(values), axis=-1)
    bad = jnp.any(found.nonfinite) | jnp.any(active & converged & ~finite)
    result = RESULTS.where(
        bad, RESULTS.nonfinite_field,
        RESULTS.where(found.n_found == 0, RESULTS.none_found,
                      RESULTS.where(jnp.any(active & ~converged), RESULTS.floquet_not_converged,
                                    RESULTS.successful)))
    nan = jnp.nan
    return _Assembled(
        orbits=jnp.where(active[:, None, None], orbits, nan),
        found=active,
        spectra=jnp.where(active[:, None], values, nan),
        kinds=jnp.where(active, kinds, -1),
        indices=jnp.where(active, indices, -1),
        non_hyperbolic=active & non_hyperbolic,
        residuals=jnp.where(active, residuals, nan),
        result=result,
    )


# --------------------------------------------------------------------------------------------
# Input checks shared by the entries (and by `jaxdyn.models.critical_points`).
# --------------------------------------------------------------------------------------------
def check_box(lower, upper) -> tuple[Array, Array]:
    """The box corners as float vectors of one shape, finite, `lower < upper` (values checked
    when concrete, before anything is traced)."""
    for name, x in (("lower", lower), ("upper", upper)):
        dtype = jnp.result_type(x) if isinstance(x, jax.Array | np.ndarray) else np.asarray(x).dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
            raise TypeError(f"`{name}` must be a real array, got dtype {dtype}.")
    if jnp.ndim(lower) != 1 or jnp.shape(lower)[0] < 1:
        raise ValueError(f"`lower` must be a non-empty vector, got shape {jnp.shape(lower)}.")
    if jnp.shape(upper) != jnp.shape(lower):
        raise ValueError(f"`upper` must have the shape of `lower` {jnp.shape(lower)}, "
                         f"got {jnp.shape(upper)}.")
    check_finite(lower, "lower")
    check_finite(upper, "upper")
    if is_concrete(lower) and is_concrete(upper) and not np.all(np.asarray(upper) > np.asarray(lower)):
        raise ValueError("`upper` must be strictly greater than `lower` in every coordinate.")
    dtype = jnp.result_type(float, lower, upper)
    return jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)


def check_key(key: Any) -> Any:
    """A `jax.random` key (typed, or a legacy `uint32[2]`), else a `TypeError` naming `key`."""
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return key
    what = f" of dtype {key.dtype}, shape {key.shape}" if isinstance(key, jax.Array) else ""
    raise TypeError(f"`key` must be a `jax.random.key`, got {type(key).__name__}{what}.")


def _check_tol(value, name: str) -> None:
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number | jax.Array | np.ndarray):
            raise TypeError(f"`{name}` must be a positive number, got {type(value).__name__}.")
        check_positive(value, name)


def _check_output(call: Callable, lower: Array, name: str) -> None:
    """The user's function, called once abstractly on a state like `lower` (`call(x)`): it must
    return a real vector of the same shape."""
    n = lower.shape[0]
    try:
        out = jax.eval_shape(call, lower)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`{name}` failed on a state of shape ({n},): {type(err).__name__}: {err}") from err
    if out.shape != (n,) or not jnp.issubdtype(out.dtype, jnp.inexact):
        raise ValueError(f"`{name}` must return a real vector of shape ({n},) like the state, got "
                         f"{out.dtype}{list(out.shape)}.")


def _settings(lower: Array, upper: Array, *, n_starts, n_steps, tol, dedup_tol, hyperbolic_tol):
    """Validated static settings and tolerances (defaults by dtype and box size)."""
    check_int(n_starts, "n_starts")
    n_steps = check_int(n_steps, "n_steps")
    _check_tol(tol, "tol")
    _check_tol(dedup_tol, "dedup_tol")
    _check_tol(hyperbolic_tol, "hyperbolic_tol")
    if tol is None:
        tol = 1e-10 if lower.dtype == jnp.float64 else 1e-5
    elif not is_concrete(tol):
        raise TypeError("`tol` must be a concrete number (Newton's static tolerance), not a traced value.")
    if dedup_tol is None:
        dedup_tol = 1e-4 * jnp.linalg.norm(upper - lower)
    tol = float(tol)
    return _Settings(n_steps=n_steps, rtol=tol, atol=tol, accept=jnp.asarray(tol, lower.dtype),
                     dedup_tol=jnp.asarray(dedup_tol, lower.dtype),
                     box_tol=jnp.asarray(_BOX_TOL, lower.dtype))


# --------------------------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------------------------
def _point_lines(points, spectra, kinds, indices, label) -> list[str]:
    lines = []
    for x, s, k, i in zip(points, spectra, kinds, indices, strict=True):
        x = np.round(np.asarray(x), 12) + 0.0
        name = KINDS[int(k)] + (f" (index {int(i)})" if KINDS[int(k)] in ("saddle", "non-hyperbolic") else "")
        lines.append(f"  x = {np.array2string(x, precision=6, suppress_small=True)}  {label} = "
                     f"{np.array2string(np.asarray(s), precision=4, suppress_small=True)}  {name}")
    return lines


def _summary(what: str, result, *, orbits, found, spectra, kinds, indices, n_starts, label, tol) -> str:
    found = np.asarray(found)
    if found.ndim > 1:  # a batch (vmap): counts per member
        counts = found.sum(axis=-1)
        lines = [f"{what} of a batch of shape {counts.shape}: found {counts.ravel().tolist()} "
                 f"({n_starts} starts each)"]
    else:
        k = int(found.sum())
        lines = [f"{k} {what} found in the box ({n_starts} starts; non-hyperbolic when a margin "
                 f"is within {float(np.asarray(tol)):.2g})"]
        lines += _point_lines(np.asarray(orbits)[found][:, 0], np.asarray(spectra)[found],
                              np.asarray(kinds)[found], np.asarray(indices)[found], label)
    text = message(result)
    if text != "successful":
        lines.append(text)
    return "\n".join(lines)


class _AbstractFound(AbstractResult):
    """What [`EquilibriaResult`][] and [`CyclesResult`][] share: the fixed-capacity bookkeeping of
    the search (`found`, `n_found`, `n_converged`, `n_starts`, the box) and the classification of
    each zero (`kinds`, `indices`, `non_hyperbolic` with `hyperbolic_tol`, `residuals`)."""

    found: Array
    n_found: Array
    kinds: Array
    indices: Array
    non_hyperbolic: Array
    residuals: Array
    n_converged: Array
    hyperbolic_tol: Array
    classification: AbstractClassification
    lower: Array
    upper: Array
    n_starts: int = eqx.field(static=True)

    @property
    def stable(self) -> Array:
        """Whether each point (or cycle) is asymptotically stable (a stable node or focus)."""
        return (self.kinds == 0) | (self.kinds == 1)

    def kind_names(self) -> list[str]:
        """The kinds of the found points (or cycles), as words (unbatched results)."""
        return [KINDS[int(k)] for k, f in zip(np.asarray(self.kinds), np.asarray(self.found)) if f]


class EquilibriaResult(_AbstractFound):
    """Equilibria of a flow ([`equilibria`][]) or fixed points of a map ([`fixed_points`][]) found
    in a box. Fixed-size, capacity `n_starts` (one zero at most per start): entries beyond
    `n_found` are padding (NaN points and spectra, kind `-1`), marked by `found`. Sorted
    lexicographically in the coordinates.

    - `points`: shape `(n_starts, n)`; `found`: `(n_starts,)` bool; `n_found`: integer scalar.
    - `spectra`: complex `(n_starts, n)`: the Jacobian's eigenvalues (flows) by decreasing real
      part, or the multipliers (maps) by decreasing modulus.
    - `kinds`: codes into `jaxdyn.invariant.KINDS` (`"stable node"`, `"stable focus"`,
      `"unstable node"`, `"unstable focus"`, `"saddle"`, `"non-hyperbolic"`); `indices`: the
      number of unstable directions (the saddle index); `non_hyperbolic`: a margin within
      `hyperbolic_tol` of the stability boundary ($|\\Re\\lambda|$, or $||\\mu| - 1|$).
    - `residuals`: the max-norm of the residual at each point; `n_converged`: how many starts
      ended at a zero in the box (new or found before).
    - `result`: `successful`, `none_found`, or `nonfinite_field` (the field was NaN/inf where a
      start went: the search is incomplete there).
    - `classification`: the strategy that read the spectra ([`FlowClassification`][] or
      [`MapClassification`][]); `lower`, `upper`: the box.
    """

    points: Array
    spectra: Array
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    def summary(self) -> str:
        """How many points, one line per point (where, spectrum, kind), and the result code."""
        return _summary("point(s)", self.result, orbits=np.asarray(self.points)[..., None, :],
                        found=self.found, spectra=self.spectra, kinds=self.kinds, indices=self.indices,
                        n_starts=self.n_starts, label=self.classification.label, tol=self.hyperbolic_tol)

    def plot(self, ax=None, *, field: Callable | None = None, args: Any = None, **kwargs):
        """A 2-D phase portrait (see [`jaxdyn.plot.plot_equilibria`][]): the points marked by kind
        (stable filled, unstable open, saddles crosses), a streamplot of `field` (the flow, or the
        map's displacement $F(x) - x$) over the box when given. Returns the axes."""
        from ..plot._equilibria import plot_equilibria

        return plot_equilibria(self, ax=ax, field=field, args=args, **kwargs)


class CyclesResult(_AbstractFound):
    """Cycles of minimal period `period` of a map, found in a box by [`cycles`][]: one orbit per
    cycle, started at its point of smallest first coordinate. Fixed-size like
    [`EquilibriaResult`][] (capacity `n_starts`, `found` marks the cycles).

    - `orbits`: shape `(n_starts, period, n)`; `points` (property): their first points.
    - `multipliers`: complex `(n_starts, n)`, of the cycle (the eigenvalues of the product of the
      Jacobians along the orbit, by a periodic QR method), by decreasing modulus.
    - `kinds`, `indices`, `non_hyperbolic`, `residuals`, `n_converged`, `result`: as in
      [`EquilibriaResult`][]; `result` can also be `floquet_not_converged`.
    """

    orbits: Array
    multipliers: Array
    period: int = eqx.field(static=True)
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    @property
    def points(self) -> Array:
        """The first point of each orbit, shape `(n_starts, n)`."""
        return self.orbits[..., 0, :]

    def summary(self) -> str:
        """How many cycles, one line per cycle (first point, multipliers, kind), the result code."""
        return _summary(f"cycle(s) of period {self.period}", self.result, orbits=self.orbits,
                        found=self.found, spectra=self.multipliers, kinds=self.kinds,
                        indices=self.indices, n_starts=self.n_starts, label=self.classification.label,
                        tol=self.hyperbolic_tol)

    def plot(self, ax=None, *, field: Callable | None = None, args: Any = None, **kwargs):
        """The orbits in a 2-D phase portrait, their points joined and marked by kind (see
        [`jaxdyn.plot.plot_cycles`][]), over the map's displacement field when `field` is given.
        Returns the axes."""
        from ..plot._equilibria import plot_cycles

        return plot_cycles(self, ax=ax, field=field, args=args, **kwargs)


# --------------------------------------------------------------------------------------------
# The entries.
# --------------------------------------------------------------------------------------------
def _array_floats(args: Any) -> Any:
    """Python floats in `args` as arrays, so that a new value does not compile anew (ints and
    other leaves are left as they are)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a) if isinstance(a, float | complex) else a, args)


@eqx.filter_jit
def _run(problem: _AbstractZeros, lower, upper, *, args, key, settings: _Settings, n_starts: int,
         hyperbolic_tol):
    """Starts, search, assembly: the part shared by the three entries (one compiled function)."""
    starts = jax.random.uniform(key, (n_starts, lower.shape[0]), lower.dtype, lower, upper)
    found = _search(problem, starts, args, lower, upper, settings)
    out = _assemble(problem, found, args, settings, anchor=lax.stop_gradient(0.5 * (lower + upper)),
                    hyperbolic_tol=hyperbolic_tol)
    return found, out


class _ChunkSearch(eqx.Module):
    """The deflated search of one device's chunk of starts (deflating only its own roots)."""

    problem: _AbstractZeros
    args: Any
    lower: Array
    upper: Array
    settings: _Settings

    def __call__(self, starts):
        found = _search(self.problem, starts, self.args, self.lower, self.upper, self.settings)
        return found.ends, found.converged, found.nonfinite


@eqx.filter_jit
def _merge(problem: _AbstractZeros, ends: Array, converged: Array, nonfinite: Array, args: Any,
           settings: _Settings) -> _Found:
    """The chunks' end points in start order: a converged end is a new zero when it is farther than
    `dedup_tol` from every orbit kept so far (the acceptance of `_search`, without Newton)."""
    problem, args = _stop((problem, args))
    cap, n = ends.shape
    p = jax.eval_shape(problem.orbit, ends[0], args).shape[0]

    def one(carry, item):
        y, conv = item
        return _admit(problem, args, settings, carry, y, conv, p), None

    init = (jnp.zeros((cap * p, n), ends.dtype), jnp.array(0), jnp.full((cap, n), jnp.nan, ends.dtype),
            jnp.array(0))
    (_, _, points, n_found), _ = lax.scan(one, init, (ends, converged))
    return _Found(points=points, found=jnp.arange(cap) < n_found, n_found=n_found, ends=ends,
                  converged=converged, nonfinite=nonfinite)


@eqx.filter_jit
def _finish(problem: _AbstractZeros, found: _Found, lower, upper, *, args, settings: _Settings,
            hyperbolic_tol):
    return _assemble(problem, found, args, settings, anchor=lax.stop_gradient(0.5 * (lower + upper)),
                     hyperbolic_tol=hyperbolic_tol)


def _run_sharded(problem: _AbstractZeros, lower, upper, *, args, key, settings: _Settings, n_starts: int,
                 hyperbolic_tol, mesh, devices):
    """The starts split into one chunk per device (in order, padding at the end), each chunk
    searched with deflation on its device, the end points merged in start order, then polished
    and classified as in `_run` (on every process)."""
    from ..distributed._mesh import global_mesh, map_batches, mesh_devices

    if mesh is None and devices is None and jax.process_count() > 1:
        mesh = global_mesh()
    n_dev = len(mesh_devices(mesh) if mesh is not None else (devices or jax.local_devices()))
    n = lower.shape[0]
    starts = jax.random.uniform(key, (n_starts, n), lower.dtype, lower, upper)
    per = -(-n_starts // n_dev)
    padded = jnp.concatenate([starts, jnp.repeat(starts[-1:], per * n_dev - n_starts, axis=0)])
    ends, converged, nonfinite = map_batches(_ChunkSearch(problem, args, lower, upper, settings),
                                             padded.reshape(n_dev, per, n), mesh=mesh, devices=devices,
                                             shard=True)
    ends, converged, nonfinite = (a.reshape(n_dev * per, *a.shape[2:])[:n_starts]
                                  for a in (ends, converged, nonfinite))
    found = _merge(problem, ends, converged, nonfinite, args, settings)
    return found, _finish(problem, found, lower, upper, args=args, settings=settings,
                          hyperbolic_tol=hyperbolic_tol)


def _common(name: str, fn, lower, upper, *, key, throw, n_starts, n_steps, tol, dedup_tol,
            hyperbolic_tol):
    if not callable(fn):
        raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}.")
    check_throw(throw)
    lower, upper = check_box(lower, upper)
    check_key(key)
    settings = _settings(lower, upper, n_starts=n_starts, n_steps=n_steps, tol=tol, dedup_tol=dedup_tol,
                         hyperbolic_tol=hyperbolic_tol)
    return lower, upper, settings


def _search_all(problem, lower, upper, *, args, key, settings, n_starts, hyperbolic_tol, mesh, devices):
    """`_run`, or with a placement (`mesh`, `devices`, several processes) `_run_sharded`."""
    from ..distributed._mesh import check_placement

    kw = dict(args=_array_floats(args), key=key, settings=settings, n_starts=n_starts,
              hyperbolic_tol=jnp.asarray(hyperbolic_tol, lower.dtype))
    if check_placement(mesh, devices, True, inputs=(lower, upper, args, key)):
        return _run_sharded(problem, lower, upper, mesh=mesh, devices=devices, **kw)
    return _run(problem, lower, upper, **kw)


def _points_result(problem, lower, upper, *, args, key, settings, n_starts, hyperbolic_tol, throw, entry,
                   mesh=None, devices=None):
    found, out = _search_all(problem, lower, upper, args=args, key=key, settings=settings, n_starts=n_starts,
                             hyperbolic_tol=hyperbolic_tol, mesh=mesh, devices=devices)
    res = EquilibriaResult(
        points=out.orbits[:, 0], found=out.found, n_found=found.n_found, spectra=out.spectra,
        kinds=out.kinds, indices=out.indices, non_hyperbolic=out.non_hyperbolic, residuals=out.residuals,
        n_converged=jnp.sum(found.converged), hyperbolic_tol=jnp.asarray(hyperbolic_tol),
        classification=problem.classification, lower=lower, upper=upper, n_starts=n_starts,
        result=out.result)
    return raise_if_failed(res, res.result, throw, hint=(
        f"(`{entry}`: pass `throw=False` to get the points found, with the code in `result`.)"))


def equilibria(field: Callable, lower, upper, *, args: Any = None, key: Key, n_starts: int = 64,
               n_steps: int = 60, tol: float | None = None, dedup_tol: float | None = None,
               hyperbolic_tol: float = 1e-8, mesh=None, devices=None, throw: bool = True) -> EquilibriaResult:
    r"""Every equilibrium $f(x) = 0$ of an autonomous flow $\dot y = f(t, y, \text{args})$ found in
    the box $[\text{lower}, \text{upper}]$, with its eigenvalues and kind.

    Multi-start Newton (optimistix) with deflation, so that a root found is not found again
    (Farrell, Birkisson & Funke 2015; the algorithm is in the module docstring of
    `jaxdyn.invariant._roots`), deduplication, the eigenvalues $\lambda$ of the Jacobian
    $\partial f / \partial y$ and a classification: stable/unstable node or focus, saddle with its
    index (the number of eigenvalues with $\Re\lambda > 0$), non-hyperbolic when some
    $|\Re\lambda| \le$ `hyperbolic_tol`.

    jit-able and vmap-able (over `args`, e.g. a vector of parameters): the output has a fixed
    capacity `n_starts`, padded with NaN beyond `n_found`. Differentiable: the points with
    respect to `args` (and the field's parameters) by implicit differentiation,
    $\partial x / \partial p = -f_y^{-1} f_p$, through optimistix's `ImplicitAdjoint`.

    **Arguments:**

    - `field`: the vector field `f(t, y, args)` (diffrax's convention), `y` of shape `(n,)`;
      evaluated at $t = 0$.
    - `lower`, `upper`: the box corners, shape `(n,)`, `lower < upper`.
    - `args`: passed to `field` (a PyTree; vmap over it for a family of parameters).
    - `key`: a `jax.random.key` for the start points (uniform in the box).
    - `n_starts`: the number of Newton starts, also the capacity of the output.
    - `n_steps`: Newton's step budget per start (deflated solve, then the polishing solve).
    - `tol`: Newton's tolerance (relative on the step, absolute on the residual) and the largest
      residual max-norm accepted at a zero (default $10^{-10}$ in float64, $10^{-5}$ in float32).
    - `dedup_tol`: two zeros closer than this are one (default $10^{-4}$ times the box diagonal).
    - `hyperbolic_tol`: the non-hyperbolic flag's tolerance on $|\Re\lambda|$.
    - `mesh`, `devices`: split the starts over the devices of a `jax.sharding.Mesh` (e.g.
      [`jaxdyn.distributed.global_mesh`][]: every process of a multi-process job, the default
      there) or of one process's `devices`: one chunk of consecutive starts per device, searched
      with deflation of that chunk's roots, then the chunks' end points are merged in start order
      (deduplicated), polished and classified on every process. The roots found are those of one
      search up to rounding, but a chunk does not deflate the other chunks' roots, so which start
      finds which root (and with a crowded box, how many are found) can differ from the
      unsharded search. Not under `jit`/`vmap` (the unsharded search is).
    - `throw`: when nothing is found in the box (`none_found`) or the field was non-finite where a
      start went (`nonfinite_field`), `True` raises an `eqx.EquinoxRuntimeError` with the message,
      `False` returns the result with the code in `result`.

    **Returns:** an [`EquilibriaResult`][].

    **Example:**

    ```python
    def lorenz(t, u, rho):
        x, y, z = u
        return jnp.array([10 * (y - x), x * (rho - z) - y, x * y - 8 / 3 * z])

    res = equilibria(lorenz, -30 * jnp.ones(3), 30 * jnp.ones(3), args=22.0, key=jax.random.key(0))
    res.n_found, res.kind_names()   # 3, ['stable focus', 'saddle', 'stable focus']
    ```
    """
    lower, upper, settings = _common("field", field, lower, upper, key=key, throw=throw, n_starts=n_starts,
                                     n_steps=n_steps, tol=tol, dedup_tol=dedup_tol,
                                     hyperbolic_tol=hyperbolic_tol)
    _check_output(lambda x: field(jnp.zeros((), x.dtype), x, args), lower, "field")
    problem = _FlowZeros(field)
    return _points_result(problem, lower, upper, args=args, key=key, settings=settings, n_starts=n_starts,
                          hyperbolic_tol=hyperbolic_tol, throw=throw, entry="equilibria", mesh=mesh,
                          devices=devices)


def fixed_points(map: Callable, lower, upper, *, args: Any = None, key: Key, n_starts: int = 64,
                 n_steps: int = 60, tol: float | None = None, dedup_tol: float | None = None,
                 hyperbolic_tol: float = 1e-8, mesh=None, devices=None,
                 throw: bool = True) -> EquilibriaResult:
    r"""Every fixed point $F(x) = x$ of a map $x \mapsto F(x, \text{args})$ found in the box, with
    its multipliers (the eigenvalues $\mu$ of $\partial F / \partial x$) and kind.

    The search of [`equilibria`][] on the residual $F(x) - x$; stable when every $|\mu| < 1$,
    the saddle index counts $|\mu| > 1$, non-hyperbolic when some $||\mu| - 1| \le$
    `hyperbolic_tol`. jit-able, vmap-able over `args`, differentiable (implicit) like
    [`equilibria`][].

    **Arguments:** as [`equilibria`][], with `map` the map `F(x, args)` (`x` of shape `(n,)`) in
    place of `field`.

    **Returns:** an [`EquilibriaResult`][] (its `spectra` are the multipliers).

    **Example:**

    ```python
    logistic = lambda x, r: r * x * (1 - x)
    res = fixed_points(logistic, jnp.array([-0.5]), jnp.array([1.5]), args=3.2, key=jax.random.key(0))
    res.points[:res.n_found, 0], res.spectra[:res.n_found, 0]   # [0, 0.6875], [3.2, -1.2]
    ```
    """
    lower, upper, settings = _common("map", map, lower, upper, key=key, throw=throw, n_starts=n_starts,
                                     n_steps=n_steps, tol=tol, dedup_tol=dedup_tol,
                                     hyperbolic_tol=hyperbolic_tol)
    _check_output(lambda x: map(x, args), lower, "map")
    problem = _MapZeros(map, 1)
    return _points_result(problem, lower, upper, args=args, key=key, settings=settings, n_starts=n_starts,
                          hyperbolic_tol=hyperbolic_tol, throw=throw, entry="fixed_points", mesh=mesh,
                          devices=devices)


def cycles(map: Callable, period: int, lower, upper, *, args: Any = None, key: Key, n_starts: int = 64,
           n_steps: int = 60, tol: float | None = None, dedup_tol: float | None = None,
           hyperbolic_tol: float = 1e-8, mesh=None, devices=None, throw: bool = True) -> CyclesResult:
    r"""Every cycle of minimal period `period` of a map $F$ with a point in the box: the zeros of
    $F^{\text{period}}(x) - x$ that are not fixed points of $F^q$ for a proper divisor $q$, one
    orbit per cycle.

    The search of [`equilibria`][] on $F^{\text{period}}(x) - x$, with every point of every orbit
    found deflated (so a cyclic shift of a found cycle is not found again, and points of a smaller
    period are found once and dropped). The multipliers of a cycle are the eigenvalues of
    $DF(x_{p-1}) \cdots DF(x_0)$, computed from the factors by a periodic QR method
    (`product_eigenvalues`), not from the explicit product. jit-able, vmap-able over `args`,
    differentiable (implicit) like [`equilibria`][].

    **Arguments:** as [`fixed_points`][], and `period`: the minimal period sought (an int >= 1;
    `period=1` gives the fixed points as cycles of length one).

    **Returns:** a [`CyclesResult`][] (orbits of shape `(n_starts, period, n)`).

    **Example:**

    ```python
    logistic = lambda x, r: r * x * (1 - x)
    res = cycles(logistic, 2, jnp.array([0.0]), jnp.array([1.0]), args=3.2, key=jax.random.key(0))
    res.orbits[0, :, 0], res.multipliers[0, 0]   # [0.5130, 0.7995], 0.16
    ```
    """
    if isinstance(period, bool) or not isinstance(period, int | np.integer):
        raise TypeError(f"`period` must be an int, got {type(period).__name__}.")
    if period < 1:
        raise ValueError(f"`period` must be >= 1, got {period}.")
    lower, upper, settings = _common("map", map, lower, upper, key=key, throw=throw, n_starts=n_starts,
                                     n_steps=n_steps, tol=tol, dedup_tol=dedup_tol,
                                     hyperbolic_tol=hyperbolic_tol)
    _check_output(lambda x: map(x, args), lower, "map")
    problem = _MapZeros(map, int(period))
    found, out = _search_all(problem, lower, upper, args=args, key=key, settings=settings, n_starts=n_starts,
                             hyperbolic_tol=hyperbolic_tol, mesh=mesh, devices=devices)
    res = CyclesResult(
        orbits=out.orbits, found=out.found, n_found=found.n_found, multipliers=out.spectra,
        kinds=out.kinds, indices=out.indices, non_hyperbolic=out.non_hyperbolic, residuals=out.residuals,
        n_converged=jnp.sum(found.converged), hyperbolic_tol=jnp.asarray(hyperbolic_tol),
        classification=problem.classification, lower=lower, upper=upper, n_starts=n_starts,
        period=int(period), result=out.result)
    return raise_if_failed(res, res.result, throw, hint=(
        "(`cycles`: pass `throw=False` to get the cycles found, with the code in `result`.)"))
