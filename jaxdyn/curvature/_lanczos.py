r"""Lanczos with full reorthogonalisation under `jit`, and the extreme eigenvalues it gives.

Why our own Lanczos rather than `matfree.decomp.tridiag_sym`: we need (i) residual norms of the
Ritz pairs and a convergence test *inside* the loop (a `lax.while_loop` that stops as soon as
the wanted pairs have converged, which is what makes the sharpness cheap), (ii) breakdown
handling (an exactly invariant Krylov subspace, common for quadratics, low-rank Gauss-Newton
matrices and repeated eigenvalues, makes matfree divide by zero; here the iteration restarts
with a fresh vector orthogonal to the basis, which also resolves multiplicities), and (iii) a
count of operator applications. matfree is used for Hutchinson trace estimation and as the
independent reference in the tests and benchmark.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_int
from .._deprecate import renamed_kwargs, strategy
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key
from ._operators import as_operator

_WHICH = ("largest", "smallest")
_BLOCK = 16  # rows of the Lanczos basis orthogonalised against at a time (at least)
_SMALL_T = 32  # Ritz values from a leading (32, 32) tridiagonal while the basis is that small
_MAX_BLOCKS = 8  # at most this many row blocks (bounds the compiled program's size)


class EigenResult(AbstractResult):
    r"""Extreme eigenpairs of a symmetric operator.

    - `eigenvalues`: shape `(k,)`, **descending** (also for `which="smallest"`: then the last
      entry is the smallest eigenvalue).
    - `eigenvectors`: shape `(k, size)`, unit norm, row `i` belongs to `eigenvalues[i]` (flat;
      use the operator's `.unravel` for the parameter PyTree).
    - `residuals`: $\|A y_i - \theta_i y_i\|$ per pair (for Lanczos the estimate
      $|\beta_j s_{ji}|$, exact up to rounding with full reorthogonalisation). The eigenvalue
      error is at most the residual, and about residual$^2$/gap.
    - `iterations`: Lanczos steps (or power iterations) taken; `num_hvp`: operator
      applications (HVPs for a Hessian); `converged`: whether the tolerance was met.
    - `ritz_values`: shape `(n_steps,)`: every Ritz value of the last Krylov space,
      ascending, with `nan` in the `n_steps - iterations` unused slots (at the start for
      `which="largest"`, at the end for `"smallest"`); both ends of the spectrum at once.
    - `error_bounds`: shape `(k,)` or `None`: the eigenvalue error estimate
      $\min(r_i, r_i^2/\delta_i)$ per pair ($r_i$ the residual, $\delta_i$ the distance of
      $\theta_i$ to the nearest other Ritz value; see [`EigenvalueBoundCriterion`][] and
      [`top_eigenvalues`][] for when it is a guarantee).
    - `result`: a [`jaxdyn._results.RESULTS`][] item: `nonfinite_curvature` when an eigenvalue
      is NaN/inf (non-finite parameters, data or operator), `not_converged` when the tolerance
      was not met, else `successful` (the default when the result is built by hand).

    **Derivatives:** `eigenvalues` are differentiable (forward and reverse mode) with respect
    to everything the operator depends on (parameters, data, matrix entries), by the
    Hellmann-Feynman formula $d\lambda_i = y_i^\top (dA)\, y_i$ for the computed unit
    eigenvector $y_i$: exact for a simple eigenvalue (up to the eigenvector's residual), and
    the derivative along $y_i$ at a multiple eigenvalue, where $\lambda_i$ is not
    differentiable. The other fields (eigenvectors, residuals, counts) are returned with a zero
    derivative (`stop_gradient`): their derivatives are not provided.
    """

    eigenvalues: Array
    eigenvectors: Array
    residuals: Array
    iterations: Array
    num_hvp: Array
    converged: Array
    ritz_values: Array
    error_bounds: Array | None = None
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    def summary(self) -> str:
        """The eigenvalues with their residuals, the work done and the result code."""
        vals = np.atleast_1d(np.asarray(self.eigenvalues, dtype=float))
        res = np.atleast_1d(np.asarray(self.residuals, dtype=float))
        lines = [f"EigenResult: {vals.shape[-1]} extreme eigenvalue(s), "
                 f"{int(np.max(np.asarray(self.num_hvp)))} operator applications, "
                 f"{int(np.max(np.asarray(self.iterations)))} steps"]
        if vals.ndim == 1:
            pairs = ", ".join(f"{v:.6g} (residual {r:.1e})" for v, r in zip(vals, res, strict=True))
            lines.append(f"  eigenvalues (descending): {pairs}")
        else:
            lines.append(f"  batched eigenvalues of shape {vals.shape}: largest {np.nanmax(vals):.6g}")
        lines.append(f"  result: {message(self.result)}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """Eigenvalues with residual bars; see [`jaxdyn.plot.plot_eigenvalues`][]."""
        from ..plot._curvature import plot_eigenvalues

        return plot_eigenvalues(self, ax=ax, **kwargs)


class _LanczosState(eqx.Module):
    j: Array
    Q: tuple[Array, ...]  # the basis, rows 0..j-1, stored as blocks of rows
    alpha: Array
    beta: Array
    q: Array
    done: Array
    restarts: Array
    prev: Array
    q_prev: Array  # the previous Lanczos vector (zero at the start)
    beta_prev: Array  # its coupling beta_{j-1} (0 at the start and after a restart)


def _tridiagonal(alpha, beta, jj, which):
    """Dense `(m, m)` tridiagonal with the first `jj` rows active and the rest decoupled on the
    diagonal at a value outside the active spectrum (Gershgorin), on the side that is not wanted.
    """
    m = alpha.shape[0]
    idx = jnp.arange(m)
    active = idx < jj
    off = jnp.where(idx[:-1] < jj - 1, beta[:-1], 0.0)
    bmax = jnp.max(jnp.abs(jnp.where(active, beta, 0.0)))
    big = jnp.finfo(alpha.dtype).max
    lo = jnp.min(jnp.where(active, alpha, big)) - 2 * bmax
    hi = jnp.max(jnp.where(active, alpha, -big)) + 2 * bmax
    width = (hi - lo) + jnp.abs(hi) + jnp.abs(lo) + 1.0
    pad = lo - width if which == "largest" else hi + width
    d = jnp.where(active, alpha, pad)
    return jnp.diag(d) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _ritz(alpha, beta, jj, k, which):
    """Wanted Ritz values (descending), their coefficient vectors, residual estimates, and all
    Ritz values (ascending, `nan` in the `m - jj` inactive slots)."""
    m = alpha.shape[0]
    theta, S = jnp.linalg.eigh(_tridiagonal(alpha, beta, jj, which))
    idx = jnp.arange(m)
    if which == "largest":
        sel = jnp.arange(m - 1, m - 1 - k, -1)
        ritz = jnp.where(idx >= m - jj, theta, jnp.nan)
    else:
        sel = jnp.arange(k - 1, -1, -1)
        ritz = jnp.where(idx < jj, theta, jnp.nan)
    vals = theta[sel]
    coeffs = S[:, sel]
    last = jnp.clip(jj - 1, 0, m - 1)
    res = jnp.abs(beta[last] * coeffs[last])
    return vals, coeffs, res, ritz


def _gaps(vals, ritz):
    """Distance of each wanted Ritz value to the nearest *other* active Ritz value (`inf` when
    there is none); an estimate of its gap to the rest of the spectrum."""
    d = jnp.abs(vals[:, None] - ritz[None, :])
    # exclude the value itself (one copy: the smallest distance, which is 0 up to rounding)
    d = jnp.where(jnp.isnan(d), jnp.inf, d)
    own = jnp.argmin(d, axis=1)
    d = d.at[jnp.arange(vals.shape[0]), own].set(jnp.inf)
    return jnp.min(d, axis=1)


def _error_bound(res, gaps):
    r"""$\min(r, r^2/\delta)$: the residual bound, and the residual-squared-over-gap bound."""
    quad = jnp.where(gaps > 0, res * res / jnp.where(gaps > 0, gaps, 1.0), jnp.inf)
    return jnp.minimum(res, quad)


def _ritz_in_loop(alpha, beta, jj, k, which):
    """`_ritz` without eigenvectors for the stopping test; while `jj <= _SMALL_T` on the
    leading `_SMALL_T` rows only (a dense `eigh` of the full `(m, m)` matrix every step costs
    about as much as the step's orthogonalisation)."""
    m = alpha.shape[0]
    small = _SMALL_T
    if m <= small or k > small:
        vals, _, res, ritz = _ritz(alpha, beta, jj, k, which)
        return vals, res, ritz

    def part(alpha, beta):
        vals, _, res, ritz = _ritz(alpha[:small], beta[:small], jj, k, which)
        pad = (m - small, 0) if which == "largest" else (0, m - small)
        return vals, res, jnp.pad(ritz, pad, constant_values=jnp.nan)

    def full(alpha, beta):
        vals, _, res, ritz = _ritz(alpha, beta, jj, k, which)
        return vals, res, ritz

    return lax.cond(jj <= small, part, full, alpha, beta)


def _scale(vals, ritz):
    return jnp.maximum(jnp.nanmax(jnp.abs(ritz)), jnp.max(jnp.abs(vals)))


def _restart_vector(n, j, seed, dtype):
    """A deterministic pseudo-random vector (a sine hash of index, step and `seed`): cheap to
    compile, unlike a `jax.random` draw inside the loop; it only has to leave the Krylov space."""
    i = jnp.arange(1, n + 1, dtype=dtype)
    x = jnp.sin(i * (12.9898 + 7.233 * (j + 1)) + 78.233 * seed) * 43758.5453
    return x - jnp.floor(x) - 0.5


class RitzPairs(eqx.Module):
    """The wanted Ritz pairs at a step, as a stopping criterion sees them: `values` (`(k,)`,
    descending), their residual estimates `residuals`, all Ritz values `ritz` (ascending, `nan`
    where inactive), the wanted values of the step before (`previous`), and the step count
    `steps`."""

    values: Array
    residuals: Array
    ritz: Array
    previous: Array
    steps: Array


class AbstractLanczosCriterion(eqx.Module):
    """When [`top_eigenvalues`][]'s Lanczos stops, a strategy object.

    `min_steps(k)`: steps before the test may stop the iteration; `satisfied(pairs, tol)`: the
    test inside the loop (a boolean array, traced); `converged(pairs, tol, stopped)`: whether
    the final pairs meet `tol` (`stopped`: whether the loop's test stopped it). Final
    subclasses: [`ResidualCriterion`][] (the default), [`EigenvalueBoundCriterion`][],
    [`ChangeCriterion`][].
    """

    @abc.abstractmethod
    def min_steps(self, k: int) -> int:
        """The fewest steps before the test may stop the iteration."""

    @abc.abstractmethod
    def satisfied(self, pairs: RitzPairs, tol: float) -> Array:
        """Whether every wanted pair passes the test at this step."""

    @abc.abstractmethod
    def converged(self, pairs: RitzPairs, tol: float, stopped: Array) -> Array:
        """Whether the final pairs meet `tol` (reported as `.converged`)."""


class ResidualCriterion(AbstractLanczosCriterion):
    r"""Every wanted pair has residual $\le$ `tol` $\cdot\max|\theta|$, which bounds each
    eigenvalue's error by the residual (and by about residual$^2$/gap): a guarantee that needs
    no spectral information. The default."""

    def min_steps(self, k: int) -> int:
        return k + 5

    def satisfied(self, pairs, tol):
        return jnp.all(pairs.residuals <= tol * _scale(pairs.values, pairs.ritz))

    def converged(self, pairs, tol, stopped):
        return self.satisfied(pairs, tol)


class EigenvalueBoundCriterion(AbstractLanczosCriterion):
    r"""Every wanted pair has $\min(r_i,\ r_i^2/\delta_i) \le$ `tol` $\cdot|\theta_i|$, a
    **relative eigenvalue** tolerance (reported as `.error_bounds`).

    For a unit vector $y$ with Rayleigh quotient $\theta$ and residual $r = \|Ay - \theta y\|$
    there is always an eigenvalue within $r$ of $\theta$, and if $\theta$'s eigenvalue $\lambda$
    is the only one closer than $\delta$ to $\theta$ then $|\lambda - \theta| \le r^2/\delta$
    (Kato-Temple; Parlett, *The Symmetric Eigenvalue Problem*, ch. 11). Since the error shrinks
    like $r^2$, this certifies a relative eigenvalue tolerance after far fewer steps than
    [`ResidualCriterion`][] at the same `tol`. **Caveat:** the true gap $\delta$ (to the rest of
    the spectrum) is unknown; it is estimated by the distance $\delta_i$ to the nearest other
    Ritz value. Ritz values are interior, so for the extreme eigenvalue $\lambda_1$ this
    estimate is too large (the bound too optimistic) when $\lambda_2$ has not yet been resolved,
    e.g. a cluster or an eigenvalue whose eigenvector the start vector nearly misses; the error
    stays within the residual in any case. A guarantee for a well-separated, already-resolved
    neighbour, a sound heuristic otherwise (the standard one of Lanczos eigensolvers).
    """

    def min_steps(self, k: int) -> int:
        return k + 1

    def _bounded(self, pairs, tol):
        bounds = _error_bound(pairs.residuals, _gaps(pairs.values, pairs.ritz))
        return jnp.all(bounds <= tol * jnp.abs(pairs.values))

    def satisfied(self, pairs, tol):
        return self._bounded(pairs, tol) & (pairs.steps > pairs.values.shape[0])

    def converged(self, pairs, tol, stopped):
        return self._bounded(pairs, tol)


class ChangeCriterion(AbstractLanczosCriterion):
    """The wanted Ritz values change by at most `tol` relatively between two steps
    (power-iteration-style, PyHessian's rule: cheapest, no guarantee; the residuals are still
    reported)."""

    def min_steps(self, k: int) -> int:
        return k + 1

    def satisfied(self, pairs, tol):
        vals = pairs.values
        change = jnp.all(jnp.abs(vals - pairs.previous) <= tol * jnp.abs(vals))
        return change & (pairs.steps > vals.shape[0])

    def converged(self, pairs, tol, stopped):
        return stopped


_CRITERIA = {"residual": ResidualCriterion, "eigenvalue_bound": EigenvalueBoundCriterion,
             "change": ChangeCriterion}


def _criterion(criterion) -> AbstractLanczosCriterion:
    """`criterion` as a strategy: `None` is the residual test; the old strings warn (one
    release)."""
    return strategy(criterion, name="criterion", base=AbstractLanczosCriterion,
                    default=ResidualCriterion(), old_strings=_CRITERIA, where="jaxdyn.curvature",
                    stacklevel=5)

def lanczos(mv, v0, n_steps: int, *, seed=0.0, k: int = 1, which: str = "largest",
            tol=0.0, min_steps: int = 1, criterion: AbstractLanczosCriterion | None = None,
            first: tuple[Array, Array, Array] | None = None) -> _LanczosState:
    r"""Run Lanczos with full reorthogonalisation (classical Gram-Schmidt, repeated if needed) in
    a `lax.while_loop` of at most `n_steps` steps; stop early once the `k` wanted Ritz pairs
    have residual estimates $\le$ `tol` times the largest |Ritz value| (after `min_steps` steps;
    `tol = 0` runs all steps; `criterion=EigenvalueBoundCriterion()` instead stops when
    $\min(r, r^2/\delta) \le$ `tol` $|\theta|$ for each wanted pair, $\delta$ the distance to the
    nearest other Ritz value, see [`top_eigenvalues`][]; `criterion=ChangeCriterion()` when the wanted
    Ritz values change by at most `tol` relatively between two steps). Step j applies the
    three-term recurrence, then one classical Gram-Schmidt pass against the stored basis
    (a second where the first removed much of the norm: "twice is enough"). On breakdown
    ($\beta_j \approx 0$: an invariant subspace) a pseudo-random vector (a hash of the step and
    the scalar `seed`), orthogonalised against the basis, continues the iteration with $\beta_j = 0$ (the
    tridiagonal matrix becomes block diagonal). `first = (alpha_0, beta_0, q_1)`: the first step
    is already known (the warm start's hand-over, `_block.py`, which applied the operator to
    `v0`): the loop starts at step 1 and that application counts in `.j`.
    """
    n = v0.shape[0]
    m = n_steps
    criterion = ResidualCriterion() if criterion is None else criterion
    dtype = v0.dtype
    eps = jnp.finfo(dtype).eps
    q0 = v0 / jnp.linalg.norm(v0)
    # The basis is stored as a tuple of row blocks (at most `_MAX_BLOCKS`), and step j
    # orthogonalises against the blocks holding rows 0..j only (rows above j are still zero):
    # the cost grows with the basis, not with n_steps, and no slice or transposed copy of
    # the basis is ever materialised (a single (n_steps, size) array sliced by row blocks in
    # nested loops cost about 3 ms per step here for size 55 210: copies of the basis).
    blk = max(_BLOCK, -(-m // _MAX_BLOCKS))
    shapes = [(min(blk, m - i), n) for i in range(0, m, blk)]

    def orth(Q, w, j, twice):
        # classical Gram-Schmidt of the vector `w` against rows 0..j: one pass, then a second
        # one where `twice` is True or where the pass removed more than 1 - 1/sqrt(2) of the
        # norm (Daniel-Gragg-Kaufman-Stewart: "twice is enough"); returns `w` and the
        # projection coefficients. Blocks of rows not reached yet (all zero) are skipped by a
        # `lax.cond` per block (compile cost linear in the number of blocks).
        def one_pass(Q, w):
            h = [lax.cond(i * blk <= j, lambda r, w: r @ w, lambda r, w: jnp.zeros(r.shape[:1], dtype),
                          r, w) for i, r in enumerate(Q)]
            for i, (r, hb) in enumerate(zip(Q, h, strict=True)):
                w = lax.cond(i * blk <= j, lambda r, hb, w: w - hb @ r, lambda r, hb, w: w, r, hb, w)
            return w, jnp.concatenate(h)

        nrm0 = jnp.sum(w * w)
        w1, h1 = one_pass(Q, w)
        again = twice | (2 * jnp.sum(w1 * w1) < nrm0)
        w2, h2 = lax.cond(again, one_pass, lambda Q, w: (w, jnp.zeros_like(h1)), Q, w1)
        return w2, h1 + h2

    def set_row(Q, j, q):
        out = []
        for i, blockrows in enumerate(Q):
            size = blockrows.shape[0]
            local = j - i * blk
            local = jnp.where((local >= 0) & (local < size), local, size)  # size: dropped
            out.append(blockrows.at[local].set(q, mode="drop"))
        return tuple(out)

    def body(s: _LanczosState) -> _LanczosState:
        j = s.j
        Q = set_row(s.Q, j, s.q)
        w = mv(s.q).astype(dtype)
        # the three-term recurrence first (cheap: two vectors), then full reorthogonalisation,
        # which then only removes rounding-level components (one pass, rarely two)
        w = w - s.beta_prev * s.q_prev
        a0 = jnp.sum(s.q * w)
        w = w - a0 * s.q
        w, hc = orth(Q, w, j, False)
        a = a0 + hc[j]
        b = jnp.sqrt(jnp.sum(w * w))
        anorm = jnp.max(jnp.abs(s.alpha)) + jnp.max(s.beta) + jnp.abs(a) + b
        breakdown = b <= 100 * eps * jnp.maximum(anorm, jnp.finfo(dtype).tiny)

        def restart():
            # an invariant subspace: continue from a fresh vector orthogonal to the basis
            r = orth(Q, _restart_vector(n, j, seed, dtype), j, True)[0]
            return r / jnp.maximum(jnp.sqrt(jnp.sum(r * r)), jnp.finfo(dtype).tiny)

        q_next = lax.cond(breakdown, restart, lambda: w / jnp.where(breakdown, 1.0, b))
        alpha = s.alpha.at[j].set(a)
        beta = s.beta.at[j].set(jnp.where(breakdown, 0.0, b))
        jj = j + 1
        if tol is None or (isinstance(tol, float) and tol == 0.0):
            done, vals = jnp.array(False), s.prev
        else:
            vals, res, ritz = _ritz_in_loop(alpha, beta, jj, k, which)
            ok = criterion.satisfied(RitzPairs(vals, res, ritz, s.prev, jj), tol)
            done = ok & (jj >= max(min_steps, k)) & ~breakdown
        return _LanczosState(jj, Q, alpha, beta, q_next, done, s.restarts + breakdown, vals,
                             s.q, beta[j])

    init = _LanczosState(jnp.array(0), tuple(jnp.zeros(sh, dtype) for sh in shapes),
                         jnp.zeros((m,), dtype),
                         jnp.zeros((m,), dtype), q0, jnp.array(False), jnp.array(0),
                         jnp.full((k,), jnp.inf, dtype), jnp.zeros_like(q0), jnp.zeros((), dtype))
    if first is not None:
        a0, b0, q1 = first
        init = _LanczosState(jnp.array(1), set_row(init.Q, 0, q0), init.alpha.at[0].set(a0),
                             init.beta.at[0].set(b0), q1.astype(dtype), init.done, init.restarts,
                             init.prev, q0, jnp.asarray(b0, dtype))
    return lax.while_loop(lambda s: (s.j < m) & ~s.done, body, init)


def check_key(key, name: str = "key") -> None:
    """A `jax.random` key: a typed key array (`jax.random.key`) or a raw `uint32` key of shape
    `(2,)` (`jax.random.PRNGKey`); `TypeError` naming `name` otherwise. Tracers pass."""
    if isinstance(key, jax.core.Tracer):
        return
    dtype = key.dtype if isinstance(key, jax.Array | np.ndarray) else None
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if jnp.shape(key) != ():
            raise TypeError(f"`{name}` must be a single key, got a batch of shape {jnp.shape(key)}.")
        return
    if dtype is not None and dtype == jnp.uint32 and jnp.shape(key) == (2,):
        return
    raise TypeError(f"`{name}` must be a jax.random key (`jax.random.key(seed)`), got "
                    f"{type(key).__name__}{'' if dtype is None else f' of dtype {dtype}'}.")


def eigenvalues_with_derivative(op, vals: Array, vecs: Array) -> Array:
    r"""`vals` with the Hellmann-Feynman derivative attached: $d\lambda_i = y_i^\top dA\, y_i$,
    `y_i = vecs[i]`, where `dA` is the change of the operator `op` (its array leaves)."""
    return _rayleigh(op, lax.stop_gradient(vals), lax.stop_gradient(vecs))


@eqx.filter_custom_jvp
def _rayleigh(op, vals, vecs):
    return vals


@_rayleigh.def_jvp
def _rayleigh_jvp(primals, tangents):
    op, vals, vecs = primals
    t_op = tangents[0]
    if t_op is None or not jax.tree_util.tree_leaves(t_op):
        return vals, jnp.zeros_like(vals)

    def quotients(o):
        return jax.vmap(lambda y: jnp.vdot(y, o.mv(y).astype(y.dtype)))(vecs)

    _, dq = eqx.filter_jvp(quotients, (op,), (t_op,))
    if dq is None:  # the operator's tangent does not reach its matvec: a zero derivative
        return vals, jnp.zeros_like(vals)
    return vals, dq.astype(vals.dtype)


def _stop(op):
    """`op` with `stop_gradient` on its array leaves: the iteration itself is not differentiated."""
    dyn, static = eqx.partition(op, eqx.is_inexact_array)
    return eqx.combine(lax.stop_gradient(dyn), static)


def start_vector(key, size: int, dtype) -> tuple[Array, Array]:
    """The start vector and restart seed: `jax.random.normal(key, (size,))` and a uniform
    draw; for `key=None` the documented deterministic start
    `jax.random.normal(jax.random.key(0), (size,))` with seed 0. Drawn outside the jitted
    iteration (eager draws are compiled once per shape and cached)."""
    if key is None:
        return jax.random.normal(jax.random.key(0), (size,), dtype), jnp.zeros((), dtype)
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (size,), dtype), jax.random.uniform(k2, (), dtype)


def _check_which(which):
    if which not in _WHICH:
        raise ValueError(f"`which` must be one of {_WHICH}, got {which!r}.")


def _check_tol(tol, dtype):
    if tol is None:
        return float(np.sqrt(np.finfo(dtype).eps))
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"`tol` must be a finite number >= 0, got {tol}.")
    return tol


class _LanczosConfig(eqx.Module):
    """The static settings of one `top_eigenvalues` run (validated by the caller)."""

    k: int
    which: str
    n_steps: int
    tol: float
    min_steps: int
    criterion: AbstractLanczosCriterion


@eqx.filter_jit
def _top_eigenvalues(op, v0, seed, cfg: _LanczosConfig):
    op_diff, op = op, _stop(op)
    k, which, tol, criterion = cfg.k, cfg.which, cfg.tol, cfg.criterion
    state = lanczos(op.mv, v0, cfg.n_steps, seed=seed, k=k, which=which, tol=tol,
                    min_steps=cfg.min_steps, criterion=criterion)
    vals, vecs, res, ritz, converged = lanczos_pairs(state, k, which, tol, criterion)
    bounds = _error_bound(res, _gaps(vals, ritz))
    code = result_code(vals, converged)
    vals = eigenvalues_with_derivative(op_diff, vals, vecs)
    return EigenResult(vals, vecs, res, state.j, state.j, converged, ritz, bounds, code)


def lanczos_pairs(state: _LanczosState, k: int, which: str, tol: float,
                  criterion: AbstractLanczosCriterion):
    """The wanted Ritz pairs of a finished [`lanczos`][] run: values (descending), unit vectors
    `(k, size)`, residuals, all Ritz values, and whether `criterion` holds at `tol`."""
    vals, coeffs, res, ritz = _ritz(state.alpha, state.beta, state.j, k, which)
    vecs, start = 0.0, 0
    for rows in state.Q:  # block by block: no concatenated copy of the basis
        vecs = vecs + coeffs[start:start + rows.shape[0]].T @ rows
        start += rows.shape[0]
    vecs = vecs / jnp.linalg.norm(vecs, axis=1, keepdims=True)
    if tol == 0.0:
        converged = jnp.array(True)
    else:
        converged = criterion.converged(RitzPairs(vals, res, ritz, state.prev, state.j), tol,
                                        state.done)
    return vals, vecs, res, ritz, converged


def result_code(vals: Array, converged: Array) -> RESULTS:
    """`nonfinite_curvature` if an eigenvalue is not finite, else `not_converged` unless
    `converged`, else `successful`."""
    return RESULTS.where(~jnp.all(jnp.isfinite(vals)), RESULTS.nonfinite_curvature,
                         RESULTS.where(converged, RESULTS.successful, RESULTS.not_converged))


@renamed_kwargs(num_iters="n_steps")
def top_eigenvalues(operator, k: int = 1, *, v0: Array | None = None, key: Key | None = None,
                    which: str = "largest", n_steps: int | None = None, tol: float | None = None,
                    criterion: AbstractLanczosCriterion | str | None = None,
                    throw: bool = True) -> EigenResult:
    r"""The `k` largest (or smallest) algebraic eigenvalues of a symmetric operator, by Lanczos.

    Lanczos builds an orthonormal basis $Q_j$ of the Krylov space
    $\operatorname{span}\{v, Av, \dots, A^{j-1}v\}$ with $Q_j^\top A Q_j = T_j$ tridiagonal; the
    eigenvalues of $T_j$ (Ritz values) converge to the extreme eigenvalues of $A$ first. Full
    reorthogonalisation (after the three-term recurrence, Gram-Schmidt against every basis
    vector, repeated when it removes much of the norm) keeps $Q_j$ orthonormal in floating
    point, so no spurious copies appear. The loop is a `lax.while_loop` under `jit` that stops
    once every wanted pair meets `criterion` (by default residual
    $|\beta_j s_{ji}| \le$ `tol` $\cdot \max_i|\theta_i|$); each step costs one operator
    application plus $O(j \cdot \text{size})$ for the orthogonalisation against the $j$ basis
    vectors so far (not against all `n_steps` rows). `which="smallest"` finds negative
    curvature (saddles) from the same iteration. Our own implementation (not matfree's): see
    the module docstring for why.

    **Arguments:**

    - `operator`: an [`AbstractCurvatureOperator`][] (from [`hessian_operator`][] or
      [`gauss_newton_operator`][], or a subclass of your own), a square lineax operator (a bare
      matvec as `lineax.FunctionLinearOperator(mv, jax.ShapeDtypeStruct((n,), dtype),
      lineax.symmetric_tag)`), or a symmetric matrix; see [`as_operator`][].
    - `k`: how many eigenvalues ($1 \le k \le$ size).
    - `v0`: a warm start. `None` (default): Lanczos from a random vector (see `key`). A start
      vector of shape `(size,)`, or a block of `m >= 1` start vectors `(m, size)` (any `m`
      relative to `k`; typically the previous result's `.eigenvectors`, e.g. those at the
      previous training step): the iteration starts from their span
      (`jaxdyn/curvature/_block.py`): band (block) Lanczos, one operator application per step
      with the test after each, which refines every start vector at once and resolves
      eigenvalues of multiplicity up to `m`; a block found far from invariant at the first
      application hands over to single-vector Lanczos from the block's equal-weight sum. A
      pseudo-random guard row (from `key`) is appended to the block (unless it has `size`
      rows) and weighs in the hand-over's start, so that an eigenvalue rising into the top `k`
      from outside the block's span is seen. The same `criterion` and `tol`; the band's test
      may stop once every row has been applied and at least `k` applications made (`k + 2`
      for a block of exact eigenvectors) instead of the cold `criterion.min_steps(k)`. A warm
      start still finds the eigenpairs its Krylov space reaches first: an eigenvalue nearly
      orthogonal to the block can be found later than from a random vector; pass extra rows
      (`m > k`) for more guards. Real floating point, finite, no zero row; traced values work
      (under `jit`, `lax.scan`, `vmap`; the checks of values then do not run) and carry no
      derivative (the start of an iteration).
    - `key`: for the start vector (a normal draw) and the breakdown-restart seed. `None` uses the
      documented deterministic start `jax.random.normal(jax.random.key(0), (size,))`.
    - `which`: `"largest"` (algebraic, default) or `"smallest"`.
    - `n_steps`: the most Lanczos steps (= operator applications); default
      `min(size, 3k + 60)` (with a block `v0` of `m` rows `min(size, 3 max(k, m) + 60)`), capped
      at the size.
    - `tol`: relative residual tolerance (default $\sqrt{\epsilon}$ of the dtype: about
      $1.5\cdot 10^{-8}$ in float64, $3.5\cdot 10^{-4}$ in float32). `0` runs all `n_steps`.
    - `criterion`: when to stop, a strategy object: [`ResidualCriterion`][]`()` (the default,
      `None`): every wanted pair has residual $\le$ `tol` $\cdot\max|\theta|$, a guarantee
      that needs no spectral information; [`EigenvalueBoundCriterion`][]`()`: every wanted pair
      has $\min(r_i,\ r_i^2/\delta_i) \le$ `tol` $\cdot|\theta_i|$, a relative eigenvalue
      tolerance reached after far fewer steps (see its docstring for when it is a guarantee);
      [`ChangeCriterion`][]`()`: the wanted Ritz values change by at most `tol` relatively
      between two steps (PyHessian's rule: cheapest, no guarantee). The strings `"residual"`,
      `"eigenvalue_bound"` and `"change"` still work for one release, with a
      `DeprecationWarning` naming the object.
    - `throw`: with `True` (default) a run that fails raises `eqx.EquinoxRuntimeError` with
      the result code's message (eagerly, or through `eqx.error_if` under `jit`/`vmap`, where
      any batch member failing raises); with `False` the result is returned with its code.
    - `num_iters`: the old name of `n_steps` (deprecated).

    **Returns:** an [`EigenResult`][] (`.eigenvalues` descending, `.eigenvectors`,
    `.residuals`, `.iterations`, `.num_hvp`, `.converged`, `.result`). Failures: not meeting
    `tol` within `n_steps` is `RESULTS.not_converged` (the eigenvalues reached are kept, and
    `.converged` is `False`); a non-finite operator is `RESULTS.nonfinite_curvature` (`nan`
    eigenvalues). Either raises with `throw=True`; `throw=False` returns the code.

    **Derivatives:** the eigenvalues are differentiable in forward and reverse mode, under
    `jit` and `vmap` (see [`EigenResult`][]): the Lanczos loop itself is not differentiated.

    **Example:**

    ```python
    H = hessian_operator(loss, params, x, y)
    res = top_eigenvalues(H, 5)
    res.eigenvalues            # the 5 largest Hessian eigenvalues
    top_eigenvalues(H, 1, which="smallest").eigenvalues[0]   # < 0 at a saddle
    H2 = hessian_operator(loss, params_after_a_step, x, y)
    top_eigenvalues(H2, 5, v0=res.eigenvectors).num_hvp        # a few, from the warm start
    ```
    """
    op, dtype = as_operator(operator)
    size = int(op.size)
    k = check_int(k, "k")
    if k > size:
        raise ValueError(f"`k` = {k} exceeds the operator size (parameter count) {size}.")
    _check_which(which)
    check_throw(throw)
    block = None
    if v0 is not None:
        from ._block import check_start_block  # _block builds on this module's pieces

        block = check_start_block(v0, size, dtype)
    if n_steps is None:
        n_steps = min(size, 3 * max(k, 1 if block is None else block.shape[0]) + 60)
    n_steps = check_int(n_steps, "n_steps")
    if n_steps < k:
        raise ValueError(f"`n_steps` = {n_steps} must be >= k = {k}.")
    n_steps = min(n_steps, size)
    tol = _check_tol(tol, dtype)
    if key is not None:
        check_key(key)
    start, seed = start_vector(key, size, dtype)
    criterion = _criterion(criterion)
    if block is None:
        min_steps = min(n_steps, criterion.min_steps(k))
        out = _top_eigenvalues(op, start, seed, _LanczosConfig(k, which, n_steps, tol, min_steps,
                                                               criterion))
    else:
        from ._block import band_config, block_top_eigenvalues, with_guard

        guarded = with_guard(block, seed)
        cfg = band_config(k, which, n_steps, tol, criterion, guarded.shape[0],
                          guarded.shape[0] > block.shape[0], size)
        out = block_top_eigenvalues(op, guarded, seed, cfg)
    return raise_if_failed(out, out.result, throw,
                           hint="`top_eigenvalues`: pass `throw=False` to get the eigenvalues "
                                "reached with the code in `.result` (not converged: raise "
                                "`n_steps` or `tol`).")
