r"""Semidefinite linear complementarity problems in $k \times k$ symmetric matrices (the inner
problem of the central flow).

The problem $\mathrm{SDLCP}(q, M)$: given a symmetric $q \in \mathbb{S}^k$ and a linear map
$M: \mathbb{S}^k \to \mathbb{S}^k$, $M(S)_{ab} = \sum_{ij} M_{abij} S_{ij}$ (a `(k, k, k, k)` array,
symmetric in $(a, b)$ and in $(i, j)$), find $S$ with

$$S \succeq 0,\qquad W = q + M(S) \succeq 0,\qquad \langle S, W\rangle = 0.$$

When $M$ is symmetric positive semidefinite (gradient descent: $M$ is a Gram form) these are the
optimality conditions of the convex program $\min_{S \succeq 0} \langle q, S\rangle + \tfrac12
\langle S, M(S)\rangle$; for RMSProp $M$ is not symmetric and there is no such program.

**Why our own solver.** The existing ports call a host interior-point solver (cvxpy/CVXOPT)
at every step: it can neither be traced under `jit`/`lax.scan` nor differentiated, and its host
round trip dominates a small problem. The problem here is tiny ($m = k(k+1)/2 \le 55$
unknowns for $k \le 10$) and is solved warm-started many times, which favours a Newton method on
a nonsmooth equation over an interior-point method (which cannot be warm-started and needs
~20 iterations from scratch every time). No JAX library solves semidefinite complementarity
problems (optimistix solves smooth root-finding and least-squares problems; lineax linear ones),
so the iteration is written here; its linear algebra goes through lineax.

**The method** (semismooth Newton on the natural map, Sun & Sun 2002, with the regularisation of
Qi & Sun's regularised Newton methods). In the orthonormal symmetric vectorisation `svec`
(off-diagonals scaled by $\sqrt 2$, so inner products are kept) solve

$$F(x) = x - \Pi\big(x - c\,W(x)\big) = 0,\qquad W(x) = q + M x,$$

$\Pi$ the projection onto the PSD cone (one `eigh` of a $k \times k$ matrix), after scaling the
data to $\|q\| = \|M\| = 1$ (the method is scale invariant: $q \to a q$, $M \to b M$ give
$S \to (a / b) S$). $\Pi$ is strongly semismooth; its generalised Jacobian at
$Y = U \operatorname{diag}(\lambda) U^\top$ is $H \mapsto U (\Omega \circ U^\top H U) U^\top$ with
the divided differences $\Omega_{ij} = (\lambda_i^+ - \lambda_j^+)/(\lambda_i - \lambda_j)$ (1 or
0 on equal eigenvalues): it uses the eigenvalues and the eigenbasis only, never the derivative of
`eigh`, so repeated eigenvalues are harmless. The Newton direction solves
$(J + \mu I) d = -F$ with $J = I - D(I - M)$, $D$ that element, and $\mu = \nu \min(\|F\|, 1)$:
for monotone $M$ ($\langle S, M(S)\rangle \ge 0$) $J + \mu I$ is nonsingular, so the step is
defined where $J$ is singular (a rank-deficient $M$: $S$ not unique, $W$ and $M(S)$ unique;
strict complementarity failing), and $\mu \to 0$ keeps the convergence superlinear. A
backtracking line search on $\|F\|$ (step lengths 1, 1/2, 1/4, 1/8 along one direction, one
`eigh` each) globalises it; the damping $\nu$ is adapted as in Levenberg-Marquardt (divided by
4 after a full step, multiplied by 4 when the line search fails), so that an ill-conditioned
$M$ gets undamped Newton steps (a fixed $\mu = \|F\|$ stalled on a Gram form of condition 1.5e4)
and a degenerate one gets damped steps; where even heavy damping fails the iteration takes a
projection step $x \leftarrow \Pi(x - W(x)) = x - F(x)$ (free: already computed), which gets it
past the kinks of $\Pi$. (Levenberg-Marquardt steps through the normal equations
$J^\top J + \mu I$ were tried first: they square the condition number and stalled at
$\|F\| \approx 10^{-7}$ on ill-conditioned Gram forms.) The Newton matrix is formed rotated into
the eigenbasis ($T (J + \mu I) = (1 + \mu) T - \Omega T (I - M)$: one $m \times m$ product, $D$
never formed). The loop is one `lax.while_loop` with one `eigh` per iteration. Measured on
random instances with known solutions (k = 2..10, Gram and non-symmetric monotone M, rank-
deficient, strict complementarity failing; 400 solves): cold starts 4-37 iterations on average
(at most ~170 on rank-deficient degenerate M at k >= 8), warm starts from a perturbed problem's
solution 2-3 on average (at most ~100 on rank-deficient degenerate M), all to 1e-12.

Why not Fischer-Burmeister or an interior point: the Fischer-Burmeister Jacobian divides by
$\lambda_i + \lambda_j$ of $(S^2 + W^2)^{1/2}$, which vanishes exactly in the degenerate cases
(strict complementarity failing) that the central flow meets when an eigenvalue reaches the
edge; interior-point methods cannot be warm-started.

**Derivatives.** Where the solution is unique and strictly complementary ($S + W \succ 0$) it is
differentiable in $(q, M)$ and the implicit function theorem on $F$ gives
$dS = -J^{-1} D\, c\,(dq + dM(S))$: a `jax.custom_jvp` (forward mode) whose tangent is linear
(a lineax solve), so reverse mode transposes it. Where $J$ is singular the solve is a least-
squares (pseudo-inverse) one: the minimum-norm tangent. The start `init` carries no derivative
(the solution does not depend on it).
"""

import abc
import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax import lax

from .._checks import check_finite, check_int, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array


class AbstractComplementaritySolver(eqx.Module):
    """How the $k \\times k$ semidefinite complementarity problem is solved (a strategy object for
    `central_flow(..., sdcp=...)`).

    `solve(q, M, init)` takes `q` of shape `(k, k)`, `M` of shape `(k, k, k, k)` and a start
    `init` of shape `(k, k)` (the previous solution; zeros for a cold start) and returns
    `(S, result)`: the solution `(k, k)` and a [`RESULTS`][] item (`successful`, or
    `complementarity_not_solved` when the residual is above the solver's tolerance). It must
    trace under `jit`/`vmap`/`lax.scan`; a solver that cannot be traced (a host solver through
    `jax.pure_callback`) says so in its docstring. Derivatives: a solver whose `S` carries
    correct derivatives (implicit differentiation) says so; one that cannot must raise on
    differentiation rather than return a wrong derivative.
    """

    @abc.abstractmethod
    def solve(self, q: Array, M: Array, init: Array) -> tuple[Array, RESULTS]:
        """`(S, result)` for $\\mathrm{SDLCP}(q, M)$ started from `init`."""


# -- the symmetric vectorisation ----------------------------------------------------------------


class _Basis(NamedTuple):
    """Index arrays of `svec` for one `k` (NumPy constants): entry `p` is `(a[p], b[p])`, `a <=
    b`, scaled by `s[p]` (1 on the diagonal, sqrt 2 off it); the basis matrix of entry `r` is
    `c[r] (e_a e_b^T + e_b e_a^T)` (unit Frobenius norm)."""

    k: int
    a: np.ndarray
    b: np.ndarray
    s: np.ndarray
    c: np.ndarray
    index: np.ndarray    # (k, k): the svec entry of (a, b)
    unscale: np.ndarray  # (k, k): 1 / s of that entry


@functools.cache
def _basis(k: int) -> _Basis:
    a, b = (i.astype(np.int32) for i in np.triu_indices(k))  # int32: also with x64 off at run time
    diag = a == b
    s = np.where(diag, 1.0, np.sqrt(2.0))
    c = np.where(diag, 0.5, 1.0 / np.sqrt(2.0))  # E_r = c_r (e_i e_j^T + e_j e_i^T): unit norm
    index = np.zeros((k, k), dtype=np.int32)
    index[a, b] = index[b, a] = np.arange(a.size)
    return _Basis(k, a, b, s, c, index, 1.0 / s[index])


def _svec(X: Array, basis: _Basis) -> Array:
    """`svec` of the symmetric part of `X` (..., k, k) -> (..., m)."""
    sym = 0.5 * (X + jnp.swapaxes(X, -1, -2))
    return sym[..., basis.a, basis.b] * jnp.asarray(basis.s, X.dtype)


def _smat(v: Array, basis: _Basis) -> Array:
    """The inverse of `_svec`: (m,) -> symmetric (k, k) (a gather: transposable)."""
    return v[basis.index] * jnp.asarray(basis.unscale, v.dtype)


def _operator(M: Array, basis: _Basis) -> Array:
    """The `(m, m)` matrix of $S \\mapsto \\mathrm{sym}(M(S))$ on `svec` coordinates."""
    a, b = basis.a, basis.b
    sym = 0.25 * (M + jnp.swapaxes(M, 0, 1) + jnp.swapaxes(M, 2, 3)
                  + jnp.swapaxes(jnp.swapaxes(M, 0, 1), 2, 3))
    rows = sym[a, b]                       # (m, k, k): svec rows before scaling
    cols = rows[:, a, b] * 2.0             # (m, m): M_pr for E_r = c_r (e_i e_j^T + e_j e_i^T)
    return cols * (basis.s[:, None] * basis.c[None, :]).astype(M.dtype)


def _conjugation(U: Array, basis: _Basis) -> Array:
    """The orthogonal `(m, m)` matrix of $H \\mapsto U^\\top H U$ on `svec` coordinates."""
    a, b = basis.a, basis.b
    Ua, Ub = U[a], U[b]                    # rows i_r, j_r of U: (m, k)
    T = Ua[:, a] * Ub[:, b] + Ub[:, a] * Ua[:, b]   # (r, p)
    return (T * (basis.c[:, None] * basis.s[None, :]).astype(U.dtype)).T


def _rotation(U: Array, lam: Array, basis: _Basis) -> tuple[Array, Array]:
    r"""`(T, omega)`: an element of the generalised Jacobian of the PSD projection at
    $U \mathrm{diag}(\lambda) U^\top$ is `D = T^T diag(omega) T`, `T` the (orthogonal)
    conjugation by `U` and `omega` the divided differences of $\max(\lambda, 0)$ (in [0, 1]; 1
    or 0 on equal eigenvalues). Rotated by `T`, a Newton matrix `I - D A` is `T - omega * (T A)`:
    one `(m, m)` product, `D` is never formed."""
    pos = lam > 0
    lp = jnp.maximum(lam, 0)
    li, lj = lam[basis.a], lam[basis.b]
    pi, pj = pos[basis.a], pos[basis.b]
    mixed = pi != pj
    denom = jnp.where(mixed, li - lj, 1.0)
    omega = jnp.where(mixed, (lp[basis.a] - lp[basis.b]) / denom, jnp.where(pi, 1.0, 0.0))
    return _conjugation(U, basis), omega


# -- the Newton iteration -----------------------------------------------------------------------


class _Eval(NamedTuple):
    """The natural map at a point: `F`, and the eigen-decomposition of `x - W(x)` (scaled)."""

    F: Array
    U: Array
    lam: Array


def _evaluate(x: Array, qv: Array, Mm: Array, basis: _Basis) -> _Eval:
    y = x - (qv + Mm @ x)
    lam, U = jnp.linalg.eigh(_smat(y, basis))
    proj = _svec((U * jnp.maximum(lam, 0)) @ U.T, basis)
    return _Eval(x - proj, U, lam)


class _State(NamedTuple):
    x: Array
    ev: _Eval
    norm: Array          # |F(x)|
    nu: Array            # the damping factor: mu = nu * min(|F|, 1)
    d: Array             # the current direction
    t: Array             # the step length to try next along it
    n: Array             # iterations (natural-map evaluations)


def _direction(ev: _Eval, mu: Array, A: Array, basis: _Basis) -> Array:
    """The regularised semismooth Newton direction: $(J + \\mu I) d = -F$ with $J = I - D A$,
    $A = I - M$, solved rotated by `T`: $T (J + \\mu I) = (1 + \\mu) T - \\Omega T A$."""
    T, omega = _rotation(ev.U, ev.lam, basis)
    K = (1.0 + mu) * T - omega[:, None] * (T @ A)
    return -lx.linear_solve(lx.MatrixLinearOperator(K), T @ ev.F, lx.LU(), throw=False).value


class _Config(NamedTuple):
    """The static settings of one solve."""

    tol: float
    max_steps: int


_SIGMA = 1e-4                  # sufficient decrease of |F| (Armijo, on the step length t)
_MIN_STEP = 1.0 / 8            # below this step length: more damping (a new direction)
_NU_DOWN, _NU_UP = 0.25, 4.0   # the damping after a full step / after the line search failed
_NU_MIN, _NU_MAX = 1e-8, 1e3   # at _NU_MAX the iteration takes a projection step instead


def _iterate(cfg: _Config, qv: Array, Mm: Array, x0: Array, basis: _Basis) -> _State:
    """Damped semismooth Newton on the normalised problem: a backtracking line search along
    each direction; the damping adapted as in Levenberg-Marquardt (less after a full step, more
    when the line search fails); projection steps where damping fails too."""
    A = jnp.eye(x0.shape[0], dtype=x0.dtype) - Mm
    ev0 = _evaluate(x0, qv, Mm, basis)
    one = jnp.ones((), x0.dtype)
    init = _State(x0, ev0, jnp.linalg.norm(ev0.F), one, jnp.zeros_like(x0), one, jnp.array(0))

    def cond(s):
        scale = 1.0 + jnp.linalg.norm(s.x)
        return (s.norm > cfg.tol * scale) & (s.n < cfg.max_steps) & jnp.isfinite(s.norm)

    def body(s):
        fallback = s.nu >= _NU_MAX
        d = lax.cond(s.t == 1, lambda: _direction(s.ev, s.nu * jnp.minimum(s.norm, 1.0), A, basis),
                     lambda: s.d)
        trial = jnp.where(fallback, s.x - s.ev.F, s.x + s.t * d)
        ev = _evaluate(trial, qv, Mm, basis)
        norm = jnp.linalg.norm(ev.F)
        decrease = norm <= jnp.sqrt(1 - _SIGMA * s.t) * s.norm
        accept = fallback | decrease
        keep = lambda new, old: jax.tree_util.tree_map(lambda u, v: jnp.where(accept, u, v), new, old)
        x, ev, norm = keep((trial, ev, norm), (s.x, s.ev, s.norm))
        give_up = ~accept & (s.t <= _MIN_STEP)
        nu = jnp.where(fallback, one, jnp.where(decrease & (s.t == 1),
                                                  jnp.maximum(s.nu * _NU_DOWN, _NU_MIN), s.nu))
        nu = jnp.where(give_up, s.nu * _NU_UP, nu)
        t = jnp.where(accept | give_up, one, 0.5 * s.t)
        return _State(x, ev, norm, nu, d, t, s.n + 1)

    return lax.while_loop(cond, body, init)


def _finish(x: Array, ev: _Eval, qv: Array, Mm: Array, basis: _Basis) -> tuple[Array, Array]:
    """The solution `Pi(x - W(x))` (PSD by construction) and its relative residual: the largest of
    the natural-map residual, the PSD violation of `W` and the complementarity gap."""
    S = x - ev.F
    W = qv + Mm @ S
    wmin = jnp.linalg.eigvalsh(_smat(W, basis))[0]
    size = 1.0 + jnp.linalg.norm(S)
    F = jnp.linalg.norm(ev.F) / size
    gap = jnp.abs(jnp.dot(S, W)) / size**2
    return S, jnp.maximum(jnp.maximum(F, jnp.maximum(-wmin, 0) / size), gap)


def _scales(qv: Array, Mm: Array) -> tuple[Array, Array]:
    """The data scales `a = |q|`, `b = |M|` (1 where zero): `S = (a / b) S_hat`."""
    a = jnp.linalg.norm(qv)
    b = jnp.linalg.norm(Mm)
    return jnp.where(a > 0, a, 1.0), jnp.where(b > 0, b, 1.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _solve(cfg: _Config, q: Array, M: Array, init: Array) -> tuple[Array, Array, Array]:
    """`(S, residual, iterations)` of SDLCP(q, M) from `init`."""
    basis = _basis(q.shape[0])
    qv, Mm = _svec(q, basis), _operator(M, basis)
    a, b = _scales(qv, Mm)
    state = _iterate(cfg, qv / a, Mm / b, _svec(init, basis) * (b / a), basis)
    S, residual = _finish(state.x, state.ev, qv / a, Mm / b, basis)
    return _smat(S * (a / b), basis), residual, state.n


@_solve.defjvp
def _solve_jvp(cfg, primals, tangents):
    q, M, init = primals
    dq, dM, _ = tangents
    S, residual, n = _solve(cfg, q, M, init)
    basis = _basis(q.shape[0])
    qv, Mm, sv = _svec(q, basis), _operator(M, basis), _svec(S, basis)
    _, b = _scales(qv, Mm)
    # J dS = -D (dq + dM(S)) / b with J = I - D A, A = I - M / b; rotated by T (orthogonal):
    # (T - Omega T A) dS = -Omega T (dq + dM(S)) / b
    lam, U = jnp.linalg.eigh(_smat(sv - (qv + Mm @ sv) / b, basis))
    A = jnp.eye(sv.shape[0], dtype=sv.dtype) - Mm / b
    T, omega = _rotation(U, lam, basis)
    K = T - omega[:, None] * (T @ A)
    rhs = -omega * (T @ (_svec(dq, basis) + _operator(dM, basis) @ sv)) / b
    dS = lx.linear_solve(lx.MatrixLinearOperator(K), rhs, lx.SVD(), throw=False).value
    zero_n = np.zeros(np.shape(n), dtype=jax.dtypes.float0)
    return (S, residual, n), (_smat(dS, basis), jnp.zeros_like(residual), zero_n)


# One compiled solve per (settings, shapes, dtype): eager calls reuse it; under an outer `jit` it
# is inlined.
_solve_jit = jax.jit(_solve, static_argnums=0)


def _default_tol(dtype) -> float:
    return 1e-12 if jnp.finfo(dtype).bits >= 64 else 1e-6


class SemismoothNewton(AbstractComplementaritySolver):
    r"""Semismooth Newton on the natural map of $\mathrm{SDLCP}(q, M)$ (the default solver of
    [`psd_complementarity`][] and `central_flow`).

    Regularised semismooth Newton steps on $F(S) = S - \Pi(S - c(q + M(S)))$ with a
    backtracking line search on $\|F\|$, Levenberg-Marquardt-style adaptive damping and
    projection steps where damping fails (the module docstring says why this method). Traces
    under `jit`, `vmap` and `lax.scan`; `S` is differentiable in `q` and `M` (forward and
    reverse mode, implicit differentiation: exact
    where the solution is unique and strictly complementary, the minimum-norm tangent where it is
    not unique).

    **Arguments:**

    - `tol`: the relative residual to reach (the largest of $\|F\|$, the PSD violation of $W$ and
      $|\langle S, W\rangle|$, measured in the data's scale): default `1e-12` in float64,
      `1e-6` in float32.
    - `max_steps`: the budget of natural-map evaluations (one `eigh` each; default 200: a
      warm-started solve takes 2-4 on well-posed problems; a cold one 4-35 for k <= 10, up to
      ~170 on rank-deficient M with strict complementarity failing). Only a problem without a
      solution uses it all.

    **Example:**

    ```python
    S, result = SemismoothNewton().solve(q, M, jnp.zeros_like(q))
    ```
    """

    tol: float | None = eqx.field(default=None, static=True)
    max_steps: int = eqx.field(default=200, static=True)

    def __check_init__(self):
        if self.tol is not None:
            if isinstance(self.tol, bool) or not isinstance(self.tol, float | int | np.floating):
                raise TypeError(f"`tol` must be a float or None, got {type(self.tol).__name__}.")
            if not (np.isfinite(self.tol) and self.tol > 0):
                raise ValueError(f"`tol` must be a finite positive number, got {self.tol}.")
        check_int(self.max_steps, "max_steps", minimum=1)

    def _config(self, dtype) -> _Config:
        tol = _default_tol(dtype) if self.tol is None else float(self.tol)
        return _Config(tol, int(self.max_steps))

    def iterate(self, q: Array, M: Array, init: Array) -> tuple[Array, Array, Array, RESULTS]:
        """`(S, residual, iterations, result)`: `solve` with the relative residual reached and
        the number of natural-map evaluations."""
        cfg = self._config(jnp.result_type(q))
        S, residual, n = _solve_jit(cfg, q, M, init)
        ok = residual <= cfg.tol
        return S, residual, n, RESULTS.where(ok, RESULTS.successful, RESULTS.complementarity_not_solved)

    def solve(self, q: Array, M: Array, init: Array) -> tuple[Array, RESULTS]:
        S, _, _, result = self.iterate(q, M, init)
        return S, result


# -- the public entry point ---------------------------------------------------------------------


class PSDComplementarityResult(AbstractResult):
    r"""The solution of a semidefinite linear complementarity problem (from
    [`psd_complementarity`][]).

    - `S`: shape `(k, k)`, the solution ($S \succeq 0$).
    - `W`: shape `(k, k)`, $q + M(S)$ ($\succeq 0$, $\langle S, W\rangle = 0$).
    - `residual`: the relative residual reached (see [`SemismoothNewton`][]; it carries a zero
      derivative: the exact solution's residual is identically zero).
    - `iterations`: natural-map evaluations used (one `eigh` each).
    - `result`: `successful`, or `complementarity_not_solved` (residual above the tolerance: e.g.
      a problem without a solution).
    """

    S: Array
    W: Array
    residual: Array
    iterations: Array
    result: RESULTS

    def summary(self) -> str:
        """The eigenvalues of S and W, the residual and the result."""
        if np.ndim(self.residual):
            ok = int(np.sum(np.asarray(self.successful)))
            text = (f"PSD complementarity: batch of {np.size(self.residual)}, {ok} solved; largest "
                    f"residual {float(np.max(self.residual)):.2e}")
        else:
            s = np.linalg.eigvalsh(np.asarray(self.S))[::-1]
            w = np.linalg.eigvalsh(np.asarray(self.W))[::-1]
            text = (f"PSD complementarity (k={s.size}): rank S = {int(np.sum(s > 1e-8 * max(1.0, s[0])))}, "
                    f"residual {float(self.residual):.2e} after {int(self.iterations)} iterations\n"
                    f"  eig S: {np.array2string(s, precision=4)}\n"
                    f"  eig W: {np.array2string(w, precision=4)}")
        if not bool(np.all(np.asarray(self.successful))):
            text += f"\n  FAILED: {message(self.result)}"
        return text

    def plot(self, ax=None, **kwargs):
        """The eigenvalues of S and of W (complementary: where one is positive the other is 0);
        returns the axes."""
        from ..plot._sdcp import plot_psd_complementarity

        return plot_psd_complementarity(self, ax=ax, **kwargs)


def _check_inputs(q, M, init):
    """Shapes, dtypes, finiteness and symmetry of the data (before tracing)."""
    for name, x in (("q", q), ("M", M), ("init", init)):
        if x is None or isinstance(x, jax.core.Tracer):
            continue
        kind = np.asarray(x).dtype.kind
        if kind not in "biuf":
            what = "complex" if kind == "c" else f"dtype {np.asarray(x).dtype}"
            raise TypeError(f"`{name}` must be a real array, got {what} ({type(x).__name__}).")
    dtype = jnp.result_type(float, *(x for x in (q, M, init) if x is not None))
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`q` and `M` must be real arrays, got {dtype}.")
    q, M = jnp.asarray(q, dtype), jnp.asarray(M, dtype)
    if q.ndim != 2 or q.shape[0] != q.shape[1] or q.shape[0] < 1:
        raise ValueError(f"`q` must be a square (k, k) matrix with k >= 1, got shape {q.shape} "
                         "(for a batch use jax.vmap(psd_complementarity)).")
    k = q.shape[0]
    if M.shape != (k,) * 4:
        raise ValueError(f"`M` must have shape {(k,) * 4} for `q` of shape {q.shape}, got {M.shape}.")
    init = jnp.zeros_like(q) if init is None else jnp.asarray(init, dtype)
    if init.shape != (k, k):
        raise ValueError(f"`init` must have shape {(k, k)} like `q`, got {init.shape}.")
    q, M, init = check_finite(q, "q"), check_finite(M, "M"), check_finite(init, "init")
    tol = 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-4
    if is_concrete(q):
        qn = np.asarray(q)
        if np.max(np.abs(qn - qn.T)) > tol * max(1.0, np.max(np.abs(qn))):
            raise ValueError(f"`q` must be symmetric: |q - q^T| = {np.max(np.abs(qn - qn.T)):.2e}.")
    if is_concrete(M):
        Mn = np.asarray(M)
        Mn = 0.5 * (Mn + np.swapaxes(Mn, 2, 3))  # its action on symmetric S
        asym = np.max(np.abs(Mn - np.swapaxes(Mn, 0, 1)))
        if asym > tol * max(1.0, np.max(np.abs(Mn))):
            raise ValueError(f"`M` must map symmetric matrices to symmetric ones (M[a, b, i, j] + "
                             f"M[a, b, j, i] symmetric in (a, b)): asymmetry {asym:.2e}.")
    return q, M, init


def psd_complementarity(q, M, *, init=None, solver: SemismoothNewton | None = None,
                        throw: bool = True) -> PSDComplementarityResult:
    r"""Solve the semidefinite linear complementarity problem

    $$S \succeq 0,\qquad W = q + M(S) \succeq 0,\qquad \langle S, W\rangle = 0,
    \qquad M(S)_{ab} = \sum_{ij} M_{abij} S_{ij},$$

    the inner problem of the central flow (for symmetric positive semidefinite $M$ the optimality
    conditions of $\min_{S \succeq 0} \langle q, S\rangle + \tfrac12\langle S, M(S)\rangle$).
    Jit-able and vmap-able; `S` and `W` are differentiable in `q` and `M` (implicit
    differentiation; exact where the solution is unique and strictly complementary).

    **Arguments:**

    - `q`: symmetric `(k, k)` matrix.
    - `M`: `(k, k, k, k)` array, symmetric in its first two indices (only its action on symmetric
      matrices matters: it is symmetrised in the last two).
    - `init`: a start `(k, k)` (e.g. the previous solution); `None` = zeros.
    - `solver`: a [`SemismoothNewton`][] (its `tol`, `max_steps`); `None` = `SemismoothNewton()`.
    - `throw`: raise when the residual stays above the tolerance (else return the code).

    **Returns:** a [`PSDComplementarityResult`][] (`S`, `W`, `residual`, `iterations`, `result`).

    **Example:**

    ```python
    G = jax.random.normal(key, (3, 3, 6))                 # a Gram form M = G G^T: the GD case
    G = 0.5 * (G + G.transpose(1, 0, 2))
    M = jnp.einsum("abr,ijr->abij", G, G)
    res = psd_complementarity(-jnp.eye(3), M)
    res.S, res.W                                            # S >= 0, W >= 0, <S, W> = 0
    ```
    """
    check_throw(throw)
    solver = SemismoothNewton() if solver is None else solver
    if not isinstance(solver, SemismoothNewton):
        raise TypeError(f"`solver` must be a SemismoothNewton or None, got {type(solver).__name__} "
                        "(other AbstractComplementaritySolver strategies are called by their own "
                        "`.solve(q, M, init)`).")
    q, M, init = _check_inputs(q, M, init)
    S, residual, n, result = solver.iterate(q, M, init)
    W = q + jnp.einsum("abij,ij->ab", M, S)
    out = PSDComplementarityResult(S=S, W=0.5 * (W + W.T), residual=residual, iterations=n,
                                   result=result)
    return raise_if_failed(out, result, throw, hint="(`psd_complementarity`: pass `throw=False` to "
                           "get the last iterate with its residual and `result`.)")
