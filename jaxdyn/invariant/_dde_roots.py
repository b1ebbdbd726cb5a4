r"""Characteristic roots of linear delay equations, stability of DDE equilibria, DDE Hopf points.

The linear delay equation $x'(t) = A_0 x(t) + \sum_k A_k x(t - \tau_k)$ with constant delays
$\tau_k > 0$ has solutions $e^{\lambda t} v$ exactly when
$\Delta(\lambda) v = 0$, $\Delta(\lambda) = \lambda I - A_0 - \sum_k A_k e^{-\lambda \tau_k}$: infinitely
many characteristic roots, finitely many to the right of any vertical line. Its equilibrium is
stable iff every root has negative real part.

**Method.** The roots are the eigenvalues of the infinitesimal generator of the solution
semigroup on $C([-\tau_{\max}, 0])$. Its spectral (Chebyshev collocation) discretisation
(Breda, Maset & Vermiglio, SIAM J. Sci. Comput. 2005) is a dense matrix of size $(N + 1) n$
whose rightmost eigenvalues converge spectrally to the rightmost roots; they are computed with
`jnp.linalg.eig` and each is refined by Newton (optimistix) on the characteristic equation
$\Delta(\lambda) v = 0$, $c^H v = 1$ (unknowns $\lambda$ and $v$, real and imaginary parts), so
that the returned roots solve the characteristic equation itself to ~1e-12 whatever $N$, and
their derivatives with respect to the matrices and the delays are those of the characteristic
equation (implicit differentiation through `optx.ImplicitAdjoint`; the discretisation only gives
the starting points and carries no gradient). Newton steps are minimum-norm (`lineax.SVD`) so
that semisimple multiple roots (identical decoupled components) converge too; their derivative
is not defined.

Hopf points of a nonlinear DDE $x' = f(t, x, (x(t - \tau_1), ...), \text{args}(p))$ at an
equilibrium are zeros of the Hopf system $\Delta(i\omega; p) v = 0$, $c^H v = 1$ in the unknowns
$(\operatorname{Re} v, \operatorname{Im} v, \omega, p)$ (DDE-BIFTOOL's determining system), solved
by Newton from the rightmost complex root at the start value; [`DDEHopfProblem`][] is the same
system with a second parameter for [`continuation`][].

Why our own: no JAX (or differentiable) library computes characteristic roots of delay
equations; DDE-BIFTOOL (MATLAB) is the reference whose method this follows.
"""

import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

from .._checks import check_int, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array
from ._problems import AbstractBranchProblem, with_parameter

# ---------------------------------------------------------------------------------------------
# Input validation (before tracing; values checked eagerly when concrete, by error_if when traced)
# ---------------------------------------------------------------------------------------------


def _float_array(x: Any, name: str) -> Array:
    if isinstance(x, str | bytes) or x is None:
        raise TypeError(f"`{name}` must be a real array, got {type(x).__name__}.")
    try:
        arr = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a real array, got {type(x).__name__}.") from err
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` must be real, got dtype {arr.dtype}.")
    if not jnp.issubdtype(arr.dtype, jnp.number) and arr.dtype != jnp.bool_:
        raise TypeError(f"`{name}` must be a real array, got dtype {arr.dtype}.")
    if not jnp.issubdtype(arr.dtype, jnp.inexact):
        arr = arr.astype(jnp.result_type(float))
    return arr


def _finite(x: Array, name: str, *, positive: bool = False) -> Array:
    what = "finite and > 0" if positive else "finite (no NaN or inf)"
    if is_concrete(x):
        value = np.asarray(x)
        if not np.all(np.isfinite(value)) or (positive and np.any(value <= 0)):
            raise ValueError(f"`{name}` must be {what}, got {value}.")
        return x
    bad = ~jnp.all(jnp.isfinite(x))
    if positive:
        bad = bad | jnp.any(x <= 0)
    return eqx.error_if(x, bad, f"`{name}` must be {what}.")


def _check_system(A0: Any, A: Any, delays: Any) -> tuple[Array, Array, Array]:
    """`A0` `(n, n)`, `A` `(r, n, n)`, `delays` `(r,)`: real, finite, delays > 0."""
    A0 = _float_array(A0, "A0")
    A = _float_array(A, "A")
    delays = _float_array(delays, "delays")
    if A0.ndim != 2 or A0.shape[0] != A0.shape[1] or A0.shape[0] == 0:
        raise ValueError(f"`A0` must be a square matrix of shape (n, n), n >= 1, got shape {A0.shape}.")
    n = A0.shape[0]
    if A.ndim != 3 or A.shape[1:] != (n, n) or A.shape[0] == 0:
        raise ValueError(f"`A` must have shape (r, {n}, {n}) (one matrix per delay, r >= 1; for one delay "
                         f"pass `A[None]`), got shape {A.shape}.")
    if delays.ndim != 1 or delays.shape[0] != A.shape[0]:
        raise ValueError(f"`delays` must have shape ({A.shape[0]},) (one delay per matrix of `A`), got "
                         f"shape {delays.shape}.")
    dtype = jnp.result_type(A0, A, delays)
    return (_finite(A0.astype(dtype), "A0"), _finite(A.astype(dtype), "A"),
            _finite(delays.astype(dtype), "delays", positive=True))


def _check_tol(tol: Any, dtype: Any) -> float:
    """`None`: 1e-12 in float64, 1e-5 in float32 (Newton's attainable relative accuracy)."""
    if tol is None:
        return 1e-12 if jnp.finfo(dtype).bits >= 64 else 1e-5
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating):
        raise TypeError(f"`tol` must be a float, got {type(tol).__name__}.")
    if not math.isfinite(tol) or not 0 < tol < 1:
        raise ValueError(f"`tol` must be in (0, 1), got {tol}.")
    return float(tol)


def _check_settings(n: int, n_roots: Any, n_nodes: Any, n_newton: Any, tol: Any, *,
                    dtype: Any) -> tuple[int, int, int, float]:
    """The static settings; `n_nodes=None` picks enough Chebyshev nodes for `n_roots` roots."""
    n_roots = check_int(n_roots, "n_roots")
    if n_nodes is None:
        n_nodes = max(32, 2 * (n_roots // n) + 24)
    n_nodes = check_int(n_nodes, "n_nodes", minimum=4)
    if n_roots > (n_nodes + 1) * n:
        raise ValueError(f"`n_roots` ({n_roots}) must not exceed the size of the discretisation, "
                         f"(n_nodes + 1) * n = {(n_nodes + 1) * n}: raise `n_nodes`.")
    return n_roots, n_nodes, check_int(n_newton, "n_newton"), _check_tol(tol, dtype)


# ---------------------------------------------------------------------------------------------
# The characteristic matrix and the spectral discretisation of the generator
# ---------------------------------------------------------------------------------------------


def characteristic_matrix(lam: Array, A0: Array, A: Array, delays: Array) -> Array:
    r"""$\Delta(\lambda) = \lambda I - A_0 - \sum_k A_k e^{-\lambda \tau_k}$, complex `(n, n)`."""
    n = A0.shape[0]
    weights = jnp.exp(-lam * delays)
    return lam * jnp.eye(n) - A0 - jnp.einsum("k,kij->ij", weights, A)


def _chebyshev(n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chebyshev points $x_j = \\cos(j\\pi/N)$, the differentiation matrix (Trefethen's `cheb`) and
    the barycentric weights, on [-1, 1] with $x_0 = 1$."""
    j = np.arange(n_nodes + 1)
    x = np.cos(np.pi * j / n_nodes)
    c = np.where((j == 0) | (j == n_nodes), 2.0, 1.0) * (-1.0) ** j
    dx = x[:, None] - x[None, :] + np.eye(n_nodes + 1)
    D = np.outer(c, 1.0 / c) / dx
    D = D - np.diag(D.sum(axis=1))
    w = (-1.0) ** j * np.where((j == 0) | (j == n_nodes), 0.5, 1.0)
    return x, D, w


def _lagrange(x_nodes: Array, w: Array, xq: Array) -> Array:
    """The Lagrange basis on the Chebyshev nodes at the points `xq`, shape `(len(xq), N + 1)`
    (barycentric formula; a point on a node gives that node's unit row)."""
    diff = xq[:, None] - x_nodes[None, :]
    exact = diff == 0
    terms = w / jnp.where(exact, 1.0, diff)
    basis = terms / jnp.sum(terms, axis=1, keepdims=True)
    on_node = jnp.any(exact, axis=1, keepdims=True)
    return jnp.where(on_node, exact.astype(basis.dtype), basis)


def generator_matrix(A0: Array, A: Array, delays: Array, n_nodes: int) -> Array:
    r"""The Chebyshev collocation matrix of the infinitesimal generator on $[-\tau_{\max}, 0]$,
    shape `((n_nodes + 1) n, (n_nodes + 1) n)`: block row 0 is the DDE at $\theta = 0$
    ($A_0 \phi(0) + \sum_k A_k \phi(-\tau_k)$, $\phi(-\tau_k)$ by interpolation), block rows
    $1..N$ the derivative $\phi'(\theta_i)$ (Breda, Maset & Vermiglio 2005)."""
    n = A0.shape[0]
    x, D, w = (jnp.asarray(z, A0.dtype) for z in _chebyshev(n_nodes))
    tau_max = jnp.max(delays)
    basis = _lagrange(x, w, 1.0 - 2.0 * delays / tau_max)           # (r, N + 1)
    top = jnp.einsum("kj,kab->ajb", basis, A).reshape(n, (n_nodes + 1) * n)
    top = top.at[:, :n].add(A0)
    rest = jnp.kron(D[1:] * (2.0 / tau_max), jnp.eye(n, dtype=A0.dtype))
    return jnp.concatenate([top, rest], axis=0)


def _initial_roots(A0: Array, A: Array, delays: Array, *, n_nodes: int, n_roots: int) -> tuple[Array, Array]:
    """The `n_roots` rightmost eigenvalues of the discretised generator and their eigenvectors'
    values at $\\theta = 0$ (no gradient: they only start Newton)."""
    n = A0.shape[0]
    M = jax.lax.stop_gradient(generator_matrix(A0, A, delays, n_nodes))
    vals, vecs = jnp.linalg.eig(M)
    order = jnp.lexsort((-vals.imag, -vals.real))[:n_roots]
    return vals[order], vecs[:n, order].T


# ---------------------------------------------------------------------------------------------
# Newton on the characteristic equation
# ---------------------------------------------------------------------------------------------


def _complex(y: Array, n: int) -> tuple[Array, Array]:
    """Unknowns `(Re lam, Im lam, Re v, Im v)` -> `(lam, v)`."""
    return y[0] + 1j * y[1], y[2:2 + n] + 1j * y[2 + n:]


def _real(z: Array) -> Array:
    return jnp.concatenate([jnp.real(z), jnp.imag(z)])


def _root_residual(y: Array, args: tuple) -> Array:
    r"""$(\Delta(\lambda) v / s,\ c^H v - 1)$ in real and imaginary parts ($s$: the scale of the
    problem, so that `tol` is relative)."""
    A0, A, delays, c, scale = args
    n = A0.shape[0]
    lam, v = _complex(y, n)
    r = characteristic_matrix(lam, A0, A, delays) @ v / scale
    return jnp.concatenate([_real(r), _real(jnp.vdot(c, v)[None] - 1.0)])


def _scale(A0: Array, A: Array, lam: Array) -> Array:
    """The size of the terms of $\\Delta(\\lambda)$: $|\\lambda| + \\|A_0\\| + \\sum_k \\|A_k\\|$ (>= 1)."""
    size = jnp.abs(lam) + jnp.linalg.norm(A0) + jnp.sum(jnp.linalg.norm(A, axis=(1, 2)))
    return jax.lax.stop_gradient(jnp.maximum(size, 1.0))


def _newton(tol: float) -> optx.Newton:
    return optx.Newton(rtol=tol, atol=tol, linear_solver=lx.SVD())


def _refine_one(A0, A, delays, lam0, v0, *, n_newton: int, tol: float):
    """One root refined: `(lam, v, relative residual, converged)`."""
    n = A0.shape[0]
    c = v0 / jnp.vdot(v0, v0).real                       # c^H v0 = 1
    scale = _scale(A0, A, lam0)
    y0 = jnp.concatenate([jnp.stack([lam0.real, lam0.imag]), _real(v0)])
    sol = optx.root_find(_root_residual, _newton(tol), y0, (A0, A, delays, c, scale), max_steps=n_newton,
                         throw=False)
    lam, v = _complex(sol.value, n)
    res = jnp.linalg.norm(characteristic_matrix(lam, A0, A, delays) @ v) / (
        _scale(A0, A, lam) * jnp.linalg.norm(v))
    ok = (sol.result == optx.RESULTS.successful) & jnp.isfinite(res) & (res < 1e3 * tol)
    return lam, v, res, ok


# A refined root further than max(_MOVED, 1000 eps) (relative to 1 + |estimate|) from its
# discretised estimate says that the discretisation does not resolve it: roots may be missed or
# found twice. (1000 eps: the rounding of the dense eigenvalues in float32.)
_MOVED = 1e-6


def _sorted_roots(A0: Array, A: Array, delays: Array, *, n_roots: int, n_nodes: int, n_newton: int,
                  tol: float) -> tuple[Array, Array, Array, RESULTS]:
    """The refined rightmost roots by decreasing real part (then imaginary part), their vectors
    ($v$, normalised to unit norm), relative residuals and the result code."""
    lam0, v0 = _initial_roots(A0, A, delays, n_nodes=n_nodes, n_roots=n_roots)
    refine = jax.vmap(lambda lam, v: _refine_one(A0, A, delays, lam, v, n_newton=n_newton, tol=tol))
    lam, v, res, ok = refine(lam0, v0)
    limit = max(_MOVED, 1e3 * float(jnp.finfo(lam0.real.dtype).eps))
    moved = jnp.abs(jax.lax.stop_gradient(lam) - lam0) > limit * (1.0 + jnp.abs(lam0))
    code = RESULTS.where(jnp.all(ok), RESULTS.where(jnp.any(moved), RESULTS.roots_unresolved,
                                                    RESULTS.successful), RESULTS.not_converged)
    order = jnp.lexsort((-jax.lax.stop_gradient(lam.imag), -jax.lax.stop_gradient(lam.real)))
    v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
    return lam[order], v[order], res[order], code


# ---------------------------------------------------------------------------------------------
# Public: characteristic roots, linearisation, stability
# ---------------------------------------------------------------------------------------------


class CharacteristicRootsResult(AbstractResult):
    r"""The rightmost characteristic roots of a linear delay equation (or of a linearised DDE).

    - `roots`: complex, shape `(n_roots,)`, by decreasing real part (a conjugate pair: positive
      imaginary part first). Each solves $\det \Delta(\lambda) = 0$ to `tol` (relative).
    - `vectors`: complex `(n_roots, n)`, unit null vectors $v$ with $\Delta(\lambda) v = 0$.
    - `residuals`: shape `(n_roots,)`, the relative residuals
      $\|\Delta(\lambda) v\| / ((|\lambda| + \|A_0\| + \sum_k \|A_k\|) \|v\|)$.
    - `spectral_abscissa`: the largest real part; `stable`: whether it is negative (the
      equilibrium is asymptotically stable).
    - `result`: `RESULTS.successful`; `RESULTS.not_converged` when Newton did not converge for
      some root (the roots are then the last iterates); `RESULTS.roots_unresolved` when a
      refined root moved further than $10^{-6}(1 + |\lambda_0|)$ (float64; $10^{-4}$ in float32)
      from its discretised estimate $\lambda_0$ (too few nodes: the roots solve the
      characteristic equation but rightmost ones may be missing or repeated).
    """

    roots: Array
    vectors: Array
    residuals: Array
    spectral_abscissa: Array
    stable: Array
    result: RESULTS

    def summary(self) -> str:
        roots = np.asarray(self.roots)
        lines = [f"Characteristic roots of a delay equation: {roots.shape[-1]} rightmost.",
                 f"Spectral abscissa {np.asarray(self.spectral_abscissa)}: "
                 f"{'stable' if np.all(np.asarray(self.stable)) else 'unstable'}."]
        if roots.ndim == 1:
            shown = ", ".join(f"{z.real:.10g}{z.imag:+.10g}i" for z in roots[:4])
            lines.append(f"Rightmost roots: {shown}{', ...' if roots.size > 4 else ''}")
            lines.append(f"Largest relative residual {float(np.max(np.asarray(self.residuals))):.2e}.")
        if not np.all(np.asarray(self.successful)):
            lines.append(message(self.result))
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        from ..plot._dde_roots import plot_characteristic_roots

        return plot_characteristic_roots(self, ax=ax, **kwargs)


def characteristic_roots(A0: Any, A: Any, delays: Any, *, n_roots: int = 10, n_nodes: int | None = None,
                         n_newton: int = 50, tol: float | None = None,
                         throw: bool = True) -> CharacteristicRootsResult:
    r"""The rightmost characteristic roots of $x'(t) = A_0 x(t) + \sum_k A_k x(t - \tau_k)$.

    The roots of $\det \Delta(\lambda) = 0$, $\Delta(\lambda) = \lambda I - A_0 - \sum_k A_k
    e^{-\lambda \tau_k}$: the `n_roots` rightmost eigenvalues of the Chebyshev discretisation of
    the infinitesimal generator (Breda-Maset-Vermiglio), each refined by Newton on
    $\Delta(\lambda) v = 0$ (see the module docstring). Jit-able, vmap-able (over the matrices or
    the delays) and differentiable: the derivative of a simple root is that of the
    characteristic equation, $d\lambda = -w^H d\Delta\, v / (w^H \Delta'(\lambda) v)$.

    **Arguments:**

    - `A0`: the undelayed matrix, shape `(n, n)`.
    - `A`: the delayed matrices, shape `(r, n, n)`, one per delay (for one delay `A1[None]`).
    - `delays`: the delays $\tau_k > 0$, shape `(r,)`.
    - `n_roots`: how many rightmost roots to return.
    - `n_nodes`: Chebyshev nodes of the discretisation (`None`: `max(32, 2 n_roots / n + 24)`;
      raise it when roots far from the origin, $|\lambda| \tau_{\max} \gtrsim N$, are wanted).
    - `n_newton`, `tol`: Newton's iteration budget and relative tolerance (`None`: 1e-12 in
      float64, 1e-5 in float32).
    - `throw`: raise when Newton does not converge or the discretisation does not resolve the
      roots (else return `RESULTS.not_converged` / `RESULTS.roots_unresolved`).

    **Returns:** a [`CharacteristicRootsResult`][] (`roots`, `vectors`, `residuals`,
    `spectral_abscissa`, `stable`, `result`).

    **Example:**

    ```python
    res = characteristic_roots(jnp.zeros((1, 1)), -jnp.ones((1, 1, 1)), jnp.array([1.0]))
    res.roots[0]   # W_0(-1) = -0.3181315 + 1.3372357i for x' = -x(t - 1)
    ```
    """
    check_throw(throw)
    A0, A, delays = _check_system(A0, A, delays)
    n_roots, n_nodes, n_newton, tol = _check_settings(A0.shape[0], n_roots, n_nodes, n_newton, tol,
                                                      dtype=A0.dtype)
    roots, vectors, residuals, code = _sorted_roots(A0, A, delays, n_roots=n_roots, n_nodes=n_nodes,
                                                    n_newton=n_newton, tol=tol)
    abscissa = jnp.max(roots.real)
    out = CharacteristicRootsResult(roots=roots, vectors=vectors, residuals=residuals,
                                    spectral_abscissa=abscissa, stable=abscissa < 0, result=code)
    return raise_if_failed(out, code, throw, hint="(`characteristic_roots`: raise `n_newton` or `n_nodes`, "
                           "or pass `throw=False` to get the roots with `result`.)")


def _check_callable(field: Any) -> None:
    if not callable(field):
        raise TypeError("`field` must be callable as field(t, y, y_delayed, args), got "
                        f"{type(field).__name__}.")


def _check_field(field: Any, y_eq: Array, num_delays: int, args: Any) -> None:
    _check_callable(field)
    delayed = tuple(y_eq for _ in range(num_delays))
    try:
        out = jax.eval_shape(field, jnp.zeros((), y_eq.dtype), y_eq, delayed, args)
    except Exception as err:  # noqa: BLE001 - any failure here is a mismatch of `field` with the inputs
        raise ValueError(f"`field` must be callable as field(t, y, y_delayed, args) with `y` of shape "
                         f"{y_eq.shape} and `y_delayed` a tuple of {num_delays} such arrays (one per delay); "
                         f"calling it failed with {type(err).__name__}: {err}") from err
    if not isinstance(out, jax.ShapeDtypeStruct) or tuple(out.shape) != tuple(y_eq.shape):
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        raise ValueError(f"`field` must return an array of the state shape {tuple(y_eq.shape)}, got {got}.")


def _check_state(y: Any, name: str) -> Array:
    y = _float_array(y, name)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D state vector, got shape {y.shape}.")
    return _finite(y, name)


def _check_delay_vector(delays: Any) -> Array:
    delays = _float_array(delays, "delays")
    if delays.ndim != 1 or delays.shape[0] == 0:
        raise ValueError(f"`delays` must be a non-empty 1-D array, got shape {delays.shape}.")
    return _finite(delays, "delays", positive=True)


def _jacobians(field: Callable, y_eq: Array, num_delays: int, args: Any) -> tuple[Array, Array]:
    """`(A0, A)` of `field` at the constant history `y_eq` (forward mode)."""
    t = jnp.zeros((), y_eq.dtype)
    delayed = tuple(y_eq for _ in range(num_delays))
    A0, Ad = jax.jacfwd(field, argnums=(1, 2))(t, y_eq, delayed, args)
    return A0, jnp.stack(Ad)


def linearise_dde(field: Callable, y_eq: Any, delays: Any, *, args: Any = None) -> tuple[Array, Array]:
    r"""The linearisation of a delay equation at a constant solution $y^*$.

    For $x' = f(t, x(t), (x(t - \tau_1), ..., x(t - \tau_r)), \text{args})$ returns
    $A_0 = \partial f / \partial y$ and $A_k = \partial f / \partial y_{\text{delayed}, k}$ at
    $y = y_{\text{delayed}, k} = y^*$, $t = 0$ (the field is taken autonomous), by `jax.jacfwd`.

    **Arguments:**

    - `field`: `field(t, y, y_delayed, args)`, `y_delayed` a tuple in the order of `delays`.
    - `y_eq`: the equilibrium, shape `(n,)`.
    - `delays`: the delays, shape `(r,)` (only their number is used).
    - `args`: passed to `field`.

    **Returns:** `(A0, A)` of shapes `(n, n)` and `(r, n, n)`, the input of
    [`characteristic_roots`][].

    **Example:**

    ```python
    hutchinson = lambda t, y, yd, r: r * y * (1 - yd[0])
    A0, A = linearise_dde(hutchinson, jnp.ones(1), jnp.array([1.0]), args=1.5)   # 0, [[[-1.5]]]
    ```
    """
    y_eq = _check_state(y_eq, "y_eq")
    delays = _check_delay_vector(delays)
    _check_field(field, y_eq, delays.shape[0], args)
    return _jacobians(field, y_eq, delays.shape[0], args)


def dde_stability(field: Callable, y_eq: Any, delays: Any, *, args: Any = None, n_roots: int = 10,
                  n_nodes: int | None = None, n_newton: int = 50, tol: float | None = None,
                  throw: bool = True) -> CharacteristicRootsResult:
    r"""Linear stability of an equilibrium of a delay equation: the rightmost characteristic roots
    of its linearisation ([`linearise_dde`][] then [`characteristic_roots`][]).

    **Arguments:**

    - `field`, `y_eq`, `delays`, `args`: as in [`linearise_dde`][] (`delays` are used as values).
    - `n_roots`, `n_nodes`, `n_newton`, `tol`, `throw`: as in [`characteristic_roots`][].

    **Returns:** a [`CharacteristicRootsResult`][]; `stable` says whether $y^*$ is asymptotically
    stable.

    **Example:**

    ```python
    res = dde_stability(lambda t, y, yd, r: r * y * (1 - yd[0]), jnp.ones(1), jnp.array([1.0]),
                        args=jnp.array(1.2))
    res.stable   # True: Hutchinson's equilibrium is stable for r tau < pi / 2
    ```
    """
    A0, A = linearise_dde(field, y_eq, delays, args=args)
    return characteristic_roots(A0, A, delays, n_roots=n_roots, n_nodes=n_nodes, n_newton=n_newton, tol=tol,
                                throw=throw)


# ---------------------------------------------------------------------------------------------
# Hopf points
# ---------------------------------------------------------------------------------------------


def _resolve(value: Any, args: Any) -> Array:
    """An array, or a callable `args -> array` evaluated at `args`."""
    return jnp.asarray(value(args) if callable(value) else value)


class _HopfSystem(eqx.Module):
    """The DDE of a Hopf computation: how the equilibrium, the delays and `args` depend on the
    unknown parameter `p1` (and on a second parameter `p2` for continuation)."""

    field: Callable
    equilibrium: Any
    delays: Any
    hopf_parameter: Callable | None
    parameter: Callable | None = None

    def args_at(self, args: Any, p1: Array, p2: Array | None) -> Any:
        args = with_parameter(self.hopf_parameter, args, p1)
        return args if p2 is None else self.parameter(args, p2)

    def linear(self, args: Any) -> tuple[Array, Array, Array]:
        """`(A0, A, delays)` of the linearisation at the equilibrium of `args`."""
        y_eq = _resolve(self.equilibrium, args)
        delays = _resolve(self.delays, args)
        A0, A = _jacobians(self.field, y_eq, delays.shape[0], args)
        return A0, A, delays

    def residual(self, u: Array, args: Any, p2: Array | None, c: Array) -> Array:
        r"""$(\Delta(i\omega; p_1) v,\ c^H v - c^H c)$ in real parts, `u = (Re v, Im v, omega, p1)`."""
        n = (u.shape[0] - 2) // 2
        v = u[:n] + 1j * u[n:2 * n]
        A0, A, delays = self.linear(self.args_at(args, u[-1], p2))
        r = characteristic_matrix(1j * u[-2], A0, A, delays) @ v
        return jnp.concatenate([_real(r), _real(jnp.vdot(c, v - c)[None])])


def _crossing_speed(system: _HopfSystem, args: Any, lam: Array, v: Array, p: Array) -> Array:
    r"""$d \operatorname{Re}\lambda / dp$ of the critical root at the Hopf point (implicit function
    theorem on $\Delta(\lambda; p) v = 0$, $v^H (v - v_*) = 0$)."""
    n = v.shape[0]

    def G(y, p):
        lam_, w = _complex(y, n)
        A0, A, delays = system.linear(system.args_at(args, p, None))
        r = characteristic_matrix(lam_, A0, A, delays) @ w
        return jnp.concatenate([_real(r), _real(jnp.vdot(v, w - v)[None])])

    y = jnp.concatenate([jnp.stack([lam.real, lam.imag]), _real(v)])
    Gy, Gp = jax.jacfwd(G, argnums=(0, 1))(y, p)
    return -jnp.linalg.solve(Gy, Gp)[0]


class DDEHopfResult(AbstractResult):
    r"""A Hopf point of a delay equation: a pair of characteristic roots $\pm i\omega$.

    - `parameter`: the parameter value $p^*$; `omega`: the frequency $\omega > 0$ (the period of
      the emerging cycle is `period` $= 2\pi/\omega$).
    - `eigenvector`: complex `(n,)`, $\Delta(i\omega; p^*) v = 0$, unit norm.
    - `equilibrium`: the equilibrium at $p^*$.
    - `crossing_speed`: $d \operatorname{Re}\lambda / dp$ at $p^*$ (transversality: nonzero;
      positive when the pair enters the right half-plane as $p$ increases).
    - `residual_norm`: $\|\Delta(i\omega; p^*) v\|$ at the solution.
    - `result`: `RESULTS.successful`; `RESULTS.none_found` when no complex root starts the
      iteration at `p0`; `RESULTS.not_converged` when Newton did not converge.

    `unknowns` is the start point $(\operatorname{Re} v, \operatorname{Im} v, \omega, p^*)$ of a
    [`DDEHopfProblem`][] branch.
    """

    parameter: Array
    omega: Array
    eigenvector: Array
    equilibrium: Array
    crossing_speed: Array
    residual_norm: Array
    result: RESULTS

    @property
    def period(self) -> Array:
        """$2\\pi/\\omega$, the period of the cycle born at the Hopf point."""
        return 2 * jnp.pi / self.omega

    @property
    def unknowns(self) -> Array:
        """`(Re v, Im v, omega, p)`: the start of a [`DDEHopfProblem`][] branch."""
        v = self.eigenvector
        return jnp.concatenate([v.real, v.imag, jnp.stack([self.omega, self.parameter], axis=-1)], axis=-1)

    def summary(self) -> str:
        p, omega, speed = (np.asarray(x) for x in (self.parameter, self.omega, self.crossing_speed))
        if p.ndim:
            lines = [f"{p.size} Hopf points of a delay equation: parameter from {np.min(p):.10g} to "
                     f"{np.max(p):.10g}, omega from {np.min(omega):.10g} to {np.max(omega):.10g}."]
        else:
            side = "above" if speed > 0 else "below"
            lines = [f"Hopf point of a delay equation at parameter {float(p):.12g}.",
                     f"omega = {float(omega):.12g} (period {2 * np.pi / float(omega):.10g}), crossing speed "
                     f"dRe(lambda)/dp = {float(speed):.6g}: the pair is unstable {side} it.",
                     f"Residual {float(np.asarray(self.residual_norm)):.2e}."]
        if not np.all(np.asarray(self.successful)):
            lines.append(message(self.result))
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        from ..plot._dde_roots import plot_dde_hopf

        return plot_dde_hopf(self, ax=ax, **kwargs)


def _check_hopf_inputs(field, equilibrium, delays, p0, *, args, parameter):
    """Types and shapes of `dde_hopf`'s inputs, and one shape-only call of `field`."""
    _check_callable(field)
    if parameter is not None and not callable(parameter):
        raise TypeError(f"`parameter` must be None or a callable (args, p) -> args, got "
                        f"{type(parameter).__name__}.")
    p0 = _float_array(p0, "p0")
    if p0.ndim != 0:
        raise ValueError(f"`p0` must be a scalar, got shape {p0.shape}.")
    p0 = _finite(p0, "p0")
    at_p0 = with_parameter(parameter, args, p0)
    y_eq = _check_state(equilibrium(at_p0) if callable(equilibrium) else equilibrium, "equilibrium")
    taus = _check_delay_vector(delays(at_p0) if callable(delays) else delays)
    _check_field(field, y_eq, taus.shape[0], at_p0)
    return p0, y_eq, taus, at_p0


def _hopf_start(A0, A, delays, *, n_nodes: int):
    """The rightmost root with positive imaginary part of the discretised generator, its vector
    (normalised, $c^H c = 1$) and whether there is one."""
    n = A0.shape[0]
    k = min(8 * n, (n_nodes + 1) * n)
    lam, vecs = _initial_roots(A0, A, delays, n_nodes=n_nodes, n_roots=k)
    size = jnp.maximum(jnp.abs(lam), 1.0)
    complex_ = lam.imag > 1e-8 * size
    i = jnp.argmax(jnp.where(complex_, lam.real, -jnp.inf))
    v = vecs[i] / jnp.linalg.norm(vecs[i])
    return lam[i], v, jnp.any(complex_)


def _solve_hopf(system: _HopfSystem, u0: Array, c: Array, args: Any, *, scale: Array, n_newton: int,
                tol: float):
    """Newton on the Hopf system (the characteristic rows divided by `scale`: `tol` is relative)."""
    def fn(u, a):
        r = system.residual(u, a, None, c)
        return r.at[:-2].divide(scale)

    sol = optx.root_find(fn, optx.Newton(rtol=tol, atol=tol), u0, args, max_steps=n_newton, throw=False)
    return sol.value, sol.result == optx.RESULTS.successful


def dde_hopf(field: Callable, equilibrium: Any, delays: Any, p0: Any, *, args: Any = None,
             parameter: Callable | None = None, n_nodes: int | None = None, n_newton: int = 50,
             tol: float | None = None, throw: bool = True) -> DDEHopfResult:
    r"""The Hopf point of a delay equation's equilibrium nearest a parameter value.

    Solves the Hopf system $\Delta(i\omega; p) v = 0$, $c^H (v - c) = 0$ for
    $(\operatorname{Re} v, \operatorname{Im} v, \omega, p)$ by Newton (optimistix), where
    $\Delta(\lambda; p) = \lambda I - A_0(p) - \sum_k A_k(p) e^{-\lambda \tau_k(p)}$ is the
    characteristic matrix of the linearisation at the equilibrium, started from the rightmost
    characteristic root with positive imaginary part at `p0` ($\omega$ its imaginary part, $p = p_0$,
    $c = v$ its unit eigenvector). The parameter may enter the field, the equilibrium and the
    delays (Hopf points in $\tau$). Jit-able and vmap-able (over `args` or `p0`).

    **Arguments:**

    - `field`: `field(t, y, y_delayed, args)`, `y_delayed` a tuple in the order of `delays`.
    - `equilibrium`: the equilibrium, shape `(n,)`, or a callable `args -> y_eq` (an equilibrium
      that moves with the parameter).
    - `delays`: shape `(r,)`, or a callable `args -> delays` (so that a delay is the parameter).
    - `p0`: the parameter value to start from (a scalar).
    - `args`: the field's arguments; `parameter`: a callable `(args, p) -> args` that puts $p$
      into them, or `None`: `args` *is* $p$ (as in [`continuation`][]).
    - `n_nodes`: Chebyshev nodes of the starting discretisation (`None`: 32).
    - `n_newton`, `tol`: Newton's iteration budget and relative tolerance (`None`: 1e-12 in
      float64, 1e-5 in float32).
    - `throw`: raise on failure (else return the code in `result`).

    **Returns:** a [`DDEHopfResult`][] (`parameter`, `omega`, `period`, `eigenvector`,
    `crossing_speed`, ...).

    **Example:**

    ```python
    hutchinson = lambda t, y, yd, args: args["r"] * y * (1 - yd[0])
    hopf = dde_hopf(hutchinson, jnp.ones(1), lambda a: jnp.stack([a["tau"]]), 1.2,
                    args={"r": 1.0, "tau": 1.2}, parameter=lambda a, p: {**a, "tau": p})
    hopf.parameter, hopf.omega   # pi / 2, 1
    ```
    """
    check_throw(throw)
    p0, y_eq, taus, at_p0 = _check_hopf_inputs(field, equilibrium, delays, p0, args=args, parameter=parameter)
    n = y_eq.shape[0]
    _, n_nodes, n_newton, tol = _check_settings(n, 1, n_nodes, n_newton, tol, dtype=y_eq.dtype)
    system = _HopfSystem(field, equilibrium, delays, parameter)
    A0, A, _ = system.linear(at_p0)
    lam0, c, found = _hopf_start(jax.lax.stop_gradient(A0), jax.lax.stop_gradient(A),
                                 jax.lax.stop_gradient(taus), n_nodes=n_nodes)
    u0 = jnp.concatenate([_real(c), jnp.stack([lam0.imag, jax.lax.stop_gradient(p0)])])
    scale = _scale(jax.lax.stop_gradient(A0), jax.lax.stop_gradient(A), lam0)
    u, ok = _solve_hopf(system, u0, c, args, scale=scale, n_newton=n_newton, tol=tol)
    v = u[:n] + 1j * u[n:2 * n]
    sign = jnp.sign(u[-2])                                    # a negative frequency: the conjugate
    omega, v = sign * u[-2], jnp.where(sign < 0, jnp.conj(v), v)
    v = v / jnp.linalg.norm(v)
    p = u[-1]
    A0, A, delays_p = system.linear(system.args_at(args, p, None))
    residual = jnp.linalg.norm(characteristic_matrix(1j * omega, A0, A, delays_p) @ v)
    speed = _crossing_speed(system, args, 1j * omega, v, p)
    finite = jnp.all(jnp.isfinite(u)) & (omega > 0)
    code = RESULTS.where(found, RESULTS.where(ok & finite, RESULTS.successful, RESULTS.not_converged),
                         RESULTS.none_found)
    out = DDEHopfResult(parameter=p, omega=omega, eigenvector=v,
                        equilibrium=_resolve(equilibrium, system.args_at(args, p, None)),
                        crossing_speed=speed, residual_norm=residual, result=code)
    return raise_if_failed(out, code, throw, hint="(`dde_hopf`: start nearer the Hopf point, or pass "
                           "`throw=False` to get the last iterate with `result`.)")


class DDEHopfProblem(AbstractBranchProblem):
    r"""Hopf points of a delay equation as a branch in a second parameter, for [`continuation`][].

    Unknowns $u = (\operatorname{Re} v, \operatorname{Im} v, \omega, p_1)$ (size $2n + 2$) and the
    continuation parameter $p_2$; the residual is the Hopf system of [`dde_hopf`][],
    $\Delta(i\omega; p_1, p_2) v = 0$ with the normalisation $v_{\text{ref}}^H (v - v_{\text{ref}})
    = 0$ against the last accepted point. No spectrum and no test functions of its own (the
    engine's fold and branch-point detection still apply). Start it from
    `DDEHopfResult.unknowns` at the second parameter's value.

    **Arguments:**

    - `field`, `equilibrium`, `delays`: as in [`dde_hopf`][] (`equilibrium` and `delays` may be
      callables of `args`).
    - `hopf_parameter`: a callable `(args, p1) -> args` that puts the Hopf parameter (an
      unknown) into `args`.
    - `parameter`: a callable `(args, p2) -> args` that puts the continuation parameter in.

    **Example:**

    ```python
    hopf = dde_hopf(hutchinson, jnp.ones(1), lambda a: jnp.stack([a["tau"]]), 1.2, args=args,
                    parameter=set_tau)
    problem = DDEHopfProblem(hutchinson, jnp.ones(1), lambda a: jnp.stack([a["tau"]]),
                             hopf_parameter=set_tau, parameter=set_r)
    branch = continuation(problem, hopf.unknowns, args["r"], args=args, p_min=0.5, p_max=2.0)
    ```
    """

    field: Callable
    equilibrium: Any
    delays: Any
    hopf_parameter: Callable
    parameter: Callable
    test_names: ClassVar[tuple[str, ...]] = ()

    def __check_init__(self):
        _check_callable(self.field)
        for name, value in (("hopf_parameter", self.hopf_parameter), ("parameter", self.parameter)):
            if not callable(value):
                raise TypeError(f"`{name}` must be a callable (args, p) -> args, got {type(value).__name__}.")

    def _system(self) -> _HopfSystem:
        return _HopfSystem(self.field, self.equilibrium, self.delays, self.hopf_parameter, self.parameter)

    def residual(self, u: Array, p: Array, args: Any, u_ref: Array) -> Array:
        n = (u.shape[0] - 2) // 2
        c = u_ref[:n] + 1j * u_ref[n:2 * n]
        return self._system().residual(u, args, p, c)

    def spectrum(self, u: Array, p: Array, args: Any) -> Array:
        return jnp.zeros((0,), jnp.result_type(u.dtype, jnp.complex64))

    def n_unstable(self, spectrum: Array) -> Array:
        return jnp.zeros((), jnp.int32)

    def test_functions(self, u: Array, p: Array, args: Any, spectrum: Array) -> Array:
        return jnp.zeros((0,), u.dtype)

    def dimension(self, u: Array) -> int:
        return int(u.shape[0])
