r"""Eigenvalues of a product of matrices without forming the product: Floquet multipliers.

The monodromy matrix of a periodic orbit computed by multiple shooting is a product
$P = M_{m-1} \cdots M_1 M_0$ of segment Jacobians. Its eigenvalues (the Floquet multipliers) span
many orders of magnitude: a strongly contracting direction gives $10^{-12}$, an unstable one
$10^{8}$. Forming $P$ and calling an eigenvalue routine loses every multiplier below
$\varepsilon \lVert P \rVert$ (about $10^{-8}$ here): the rounding error of the product is
absolute, of the size of its largest entries. [`product_eigenvalues`][] works on the factors.

**Method (a periodic QR iteration with graded deflation).**

1. *Periodic orthogonal iteration.* One sweep pushes an orthogonal basis around the loop,
   $M_k Q_k = Q_{k+1} R_k$ for $k = 0, \dots, m-1$ (one QR per factor), and then $Q_0 \leftarrow
   Q_m$. After a sweep $Q_0^\top P\, Q_0 = C\, R$ exactly, with $C = Q_0^\top Q_m$ orthogonal and
   $R = R_{m-1} \cdots R_0$ upper triangular. The diagonal of $R$ is the product of the diagonals
   of the $R_k$: it is accumulated in logarithms, and $R$ is kept row-normalised
   ($R = \mathrm{diag}(e^{L})\, T$, $T$ with unit-modulus diagonal), so neither overflow nor
   cancellation touches it. The sweep is the orthogonal iteration on $P$: the part of $C$ below
   the diagonal that couples directions of different growth shrinks like the ratio of their
   multipliers per sweep.
2. *Deflation.* Where every entry of $C$ coupling a later direction into an earlier one across
   a split point is at the rounding level, $C R$ is block upper triangular and its eigenvalues
   are those of its diagonal blocks $C_{bb} R_{bb}$. Dropping those entries is backward stable:
   an orthogonal change of $Q_m$ by $\delta$ is a change of the last factor by $\delta
   \lVert M_{m-1} \rVert$, of the size of its own rounding error. (The couplings must not be
   measured against the grading of $R$: their rounding floor, about $10^{-17}$, would then never
   split a $10^{8}$ from a $10^{-12}$.) Blocks are clusters of multipliers of comparable modulus (a
   complex pair, $\pm 1$ together, near-equal moduli whose coupling decays slowly); each is
   scaled by its own geometric mean modulus and solved by a small dense eigenvalue problem (a
   window of at most `max_cluster` rows), so a $10^{-12}$ multiplier is resolved to the relative
   accuracy of the factors whatever sits next to it; its modulus is the product of the
   $|R_{k,jj}|$, never a difference.
   A split is made where the coupling is at the rounding level ($10 n \varepsilon$), or where it
   has stopped decreasing below $10^{-10}$ (its rounding floor, above $n \varepsilon$ for
   ill-conditioned factors). A coupling that still decreases is never taken for a floor however
   slowly it does (tens of multipliers graded evenly: neighbours in a ratio of $0.9$ need a few
   hundred sweeps to split).
3. *Stopping.* Sweeps (`lax.while_loop`) stop when every cluster fits the window and the clusters'
   mean log-moduli (from the diagonal of $R$ alone: no eigenvalue problem inside the loop) settle
   to `rtol` between sweeps. (The mean log-modulus of a cluster is its determinant's: it settles at
   once for a cluster that has not split yet, which is why the size of the clusters is part of the
   test.) A cluster larger than the window whose couplings have all stopped decreasing (a genuine
   cluster: many multipliers of one modulus) ends the sweeps as not converged.
   Then one more sweep is made outside the loop, from the final basis held constant:
   since $Q_0^\top P Q_0$ is similar to $P$ for any fixed orthogonal $Q_0$, differentiating that
   last sweep (QR and small eigenvalue problems are differentiable) gives the derivatives of the
   eigenvalues, in forward and reverse mode.

Why our own: neither JAX nor lineax has a periodic Schur decomposition (SLICOT's `MB03WD` or the
periodic QZ of Kressner are Fortran, not JAX), and `jnp.linalg.eigvals` of the formed product is
exactly what fails here.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_finite, check_int, is_concrete
from .._types import Array

# The exponent of a row-normalisation factor is clipped here (early sweeps with an unsorted basis),
# so that a not-yet-graded product gives large finite entries, never inf * 0.
_MAX_EXPONENT = 600.0
# A coupling that has stopped shrinking below this is at its rounding floor (ill-conditioned factors
# put it above `n eps`): it is dropped. Above it, a stalled coupling is a genuine cluster.
_FLOOR = 1e-10
# Sweeps without a new smallest coupling after which a coupling below `_FLOOR` counts as stalled.
_PATIENCE = 4
# Sweeps without a new smallest coupling at any unsplit point after which no further split is coming:
# the sweeps stop (not converged if a cluster is still larger than `max_cluster`).
_GIVE_UP = 25


class _Sweep(eqx.Module):
    """One sweep around the loop: the new basis `Qm`, `C = Q0^T Qm`, the row-normalised product
    `T` of the triangular factors (unit-modulus diagonal) and the log-moduli `L` of its diagonal."""

    Qm: Array
    C: Array
    T: Array
    L: Array


def _sweep(mats: Array, Q0: Array, *, with_T: bool = True) -> _Sweep:
    """Push `Q0` around the loop: `M_k Q_k = Q_{k+1} R_k`, accumulating `R_{m-1} ... R_0` graded
    (without `T`, the identity then, when only the log-moduli `L` are needed: inside the loop)."""
    n = Q0.shape[0]
    upper = jnp.triu(jnp.ones((n, n), dtype=bool))
    tiny = jnp.finfo(Q0.dtype).tiny

    def step(carry, M):
        Q, T, L = carry
        Qn, R = jnp.linalg.qr(M @ Q)
        d = jnp.diagonal(R)
        absd = jnp.maximum(jnp.abs(d), tiny)
        if not with_T:
            return (Qn, T, L + jnp.log(absd)), None
        # row j of the new normalised product: sum_l (R_jl / |R_jj|) e^{L_l - L_j} T_l
        expo = jnp.where(upper, jnp.minimum(L[None, :] - L[:, None], _MAX_EXPONENT), 0.0)
        A = jnp.where(upper, R / absd[:, None] * jnp.exp(expo), 0.0)
        return (Qn, A @ T, L + jnp.log(absd)), None

    init = (Q0, jnp.eye(n, dtype=Q0.dtype), jnp.zeros((n,), Q0.dtype))
    (Qm, T, L), _ = lax.scan(step, init, mats)
    return _Sweep(Qm, Q0.T @ Qm, T, L)


def _couplings(C: Array) -> Array:
    """For each split point `i` (between `i` and `i+1`), the largest `|C_jk|` with `k <= i < j`."""
    n = C.shape[0]
    idx = jnp.arange(n)
    A = jnp.where(idx[:, None] > idx[None, :], jnp.abs(C), 0.0)
    below = lax.cummax(A, axis=0, reverse=True)  # below[i, k] = max_{j >= i} A[j, k]
    below = jnp.concatenate([below[1:], jnp.zeros((1, n), A.dtype)], axis=0)
    return jnp.max(jnp.where(idx[None, :] <= idx[:, None], below, 0.0), axis=1)[:-1]


def _blocks(split: Array) -> tuple[Array, Array]:
    """The clusters from the split points (`split[i]`: a split between `i` and `i+1`): for each index
    its block start, and for each index (as a start) the size of the block beginning there."""
    n = split.shape[0] + 1
    idx = jnp.arange(n)
    starts = jnp.concatenate([jnp.array([True]), split])
    start_of = lax.cummax(jnp.where(starts, idx, 0))
    nxt = lax.cummin(jnp.where(starts, idx, n), reverse=True)  # nxt[i] = first start >= i
    end = jnp.concatenate([nxt[1:], jnp.array([n])])
    return start_of, end - idx


class _Splits(eqx.Module):
    """The deflation state of the sweeps, per split point: the smallest coupling seen (`best`), the
    sweeps since it last decreased (`age`), and the points split for good because their coupling
    stalled below `_FLOOR` (`stalled`)."""

    best: Array
    age: Array
    stalled: Array


def _update_splits(coupling: Array, state: _Splits) -> tuple[Array, _Splits]:
    """`(split, new state)`. A split is made where the coupling is at the rounding level (`10 n eps`),
    or, for good, where it is below `_FLOOR` and has not decreased for `_PATIENCE` sweeps: its
    rounding floor, set by the conditioning of the factors. A coupling that still decreases, however
    slowly (near-equal moduli), is never split early: it is a rate, not a floor."""
    n = coupling.shape[0] + 1
    tol = 10.0 * n * jnp.finfo(coupling.dtype).eps
    improved = coupling < state.best
    best = jnp.minimum(coupling, state.best)
    age = jnp.where(improved, 0, state.age + 1)
    stalled = state.stalled | ((best <= _FLOOR) & (age >= _PATIENCE))
    return (coupling <= tol) | stalled, _Splits(best, age, stalled)


def _window_eigenvalues(C: Array, T: Array, L: Array, start: Array, size: Array, K: int):
    """The eigenvalues of the diagonal block `[start, start + size)` of `C diag(e^L) T`, scaled by
    the block's geometric mean modulus: `(values (K,), log_scale)`, the first `size` valid."""
    Cw = lax.dynamic_slice(C, (start, start), (K, K))
    Tw = lax.dynamic_slice(T, (start, start), (K, K))
    Lw = lax.dynamic_slice(L, (start,), (K,))
    valid = jnp.arange(K) < size
    log_scale = jnp.sum(jnp.where(valid, Lw, 0.0)) / jnp.maximum(size, 1)
    grade = jnp.exp(jnp.clip(jnp.where(valid, Lw - log_scale, 0.0), -_MAX_EXPONENT, _MAX_EXPONENT))
    W = (Cw * grade[None, :]) @ Tw
    both = valid[:, None] & valid[None, :]
    W = jnp.where(both, W, 0.0)
    # pad the rest with a value far from the block's eigenvalues (|lambda| <= ||W||_F)
    pad = -(1.0 + 2.0 * lax.stop_gradient(jnp.sqrt(jnp.sum(W * W))))
    W = W + jnp.diag(jnp.where(valid, 0.0, pad))
    values = jnp.linalg.eigvals(W)
    order = jnp.argsort(-lax.stop_gradient(jnp.abs(values - pad)))
    return values[order], log_scale


def _estimates(s: _Sweep, split: Array, K: int) -> tuple[Array, Array, Array]:
    """The eigenvalues of `C diag(e^L) T` by deflation at `split`: `(scaled values, log-scales, ok)`
    per index (value = scaled * e^{log-scale}); `ok` is False where a cluster exceeds `K` rows."""
    n = s.C.shape[0]
    start_of, sizes = _blocks(split)
    padC = jnp.pad(s.C, ((0, K), (0, K)))
    padT = jnp.pad(s.T, ((0, K), (0, K)))
    padL = jnp.pad(s.L, (0, K))
    idx = jnp.arange(n)
    sizes_k = jnp.minimum(sizes, K)
    values, log_scale = jax.vmap(lambda i, sz: _window_eigenvalues(padC, padT, padL, i, sz, K))(idx, sizes_k)
    mine = values[start_of, idx - start_of]
    scale = log_scale[start_of]
    ok = sizes[start_of] <= K
    return mine, scale, ok


def _block_log_moduli(L: Array, split: Array) -> Array:
    """The mean log-modulus of each index's cluster (the log-modulus of the cluster's determinant
    over its size): invariant under the rotation of a basis inside a cluster, so it settles when the
    clusters have (cheap: no eigenvalue problem inside the loop)."""
    n = L.shape[0]
    start_of, sizes = _blocks(split)
    member = (jnp.arange(n)[None, :] >= start_of[:, None]) & (
        jnp.arange(n)[None, :] < (start_of + sizes[start_of])[:, None])
    return jnp.sum(jnp.where(member, L[None, :], 0.0), axis=1) / sizes[start_of]


def _sorted(values: Array, scale: Array, ok: Array) -> tuple[Array, Array]:
    """Sorted by decreasing modulus (a conjugate pair: positive imaginary part first), with the
    log-moduli in the same order; NaN where a cluster was too large."""
    logmod = jnp.log(jnp.abs(values)) + scale
    logmod = jnp.where(ok, logmod, jnp.nan)
    key = lax.stop_gradient(jnp.where(jnp.isnan(logmod), -jnp.inf, logmod))
    order = jnp.lexsort((-lax.stop_gradient(values.imag), -key))
    full = values * jnp.exp(scale).astype(values.dtype)
    full = jnp.where(ok, full, jnp.nan)
    return full[order], logmod[order]


def product_eigenvalues(mats: Array, *, max_sweeps: int = 1000, rtol: float = 1e-12,
                        max_cluster: int | None = None) -> tuple[Array, Array]:
    r"""The eigenvalues of the product $P = M_{m-1} \cdots M_1 M_0$ of `mats` (`mats[0]` applied
    first), computed from the factors without forming $P$ (a periodic QR iteration with graded
    deflation: see the module docstring).

    Every eigenvalue is resolved to the relative accuracy with which the factors determine it,
    whatever its modulus: multipliers $10^{8}$, $1$ and $10^{-12}$ of one product come out to
    about $10^{-14}$ relative from well-conditioned factors, where `jnp.linalg.eigvals` of the
    formed product returns the $10^{-12}$ one with no correct digit.

    **Arguments:**

    - `mats`: the factors, shape `(m, n, n)`, real.
    - `max_sweeps`: the most sweeps around the loop (each sweep: `m` QR factorisations). The
      sweeps needed grow like $\log \varepsilon / \log \rho$, $\rho < 1$ the largest ratio of
      neighbouring moduli that must be split apart (about 300 for 200 multipliers graded evenly
      over eight decades).
    - `rtol`: the sweeps stop when the clusters' log-moduli change by less than this between sweeps
      (or by less than `sqrt(rtol)` and no longer shrinking: the rounding noise of ill-conditioned
      factors).
    - `max_cluster`: the largest cluster of multipliers of comparable modulus that is solved as one
      block (default `min(n, 16)`); a larger cluster leaves its eigenvalues NaN and
      `converged = False`.

    **Returns:**

    `(eigenvalues, converged)`: the `n` eigenvalues, complex, sorted by decreasing modulus (a
    conjugate pair with the positive imaginary part first), and a boolean scalar, `False` when the
    iteration did not settle within `max_sweeps`. jit-able, vmap-able, differentiable (the
    eigenvalues, where they are simple).

    **Example:**

    ```python
    mu = jnp.array([1e8, 1.0, 1e-12])
    P = jnp.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.1, 0.0, 1.0]])
    M = P @ jnp.diag(mu ** (1 / 8)) @ jnp.linalg.inv(P)
    values, converged = product_eigenvalues(jnp.stack([M] * 8))   # ~ [1e8, 1, 1e-12]
    ```
    """
    mats = jnp.asarray(mats)
    if mats.ndim != 3 or mats.shape[1] != mats.shape[2] or mats.shape[0] < 1 or mats.shape[1] < 1:
        raise ValueError(f"`mats` must have shape (m, n, n) with m, n >= 1, got {mats.shape}.")
    if not jnp.issubdtype(mats.dtype, jnp.floating):
        if jnp.issubdtype(mats.dtype, jnp.complexfloating):
            raise TypeError("`mats` must be real, got a complex array.")
        mats = mats.astype(jnp.result_type(float))
    if is_concrete(mats):  # traced: non-finite factors give NaN and `converged = False`
        mats = check_finite(mats, "mats")
    max_sweeps = check_int(max_sweeps, "max_sweeps")
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.integer | np.floating):
        raise TypeError(f"`rtol` must be a number, got {type(rtol).__name__}.")
    if not 0 < rtol < 1:
        raise ValueError(f"`rtol` must be in (0, 1), got {rtol!r}.")
    n = mats.shape[1]
    K = min(n, 16) if max_cluster is None else min(n, check_int(max_cluster, "max_cluster"))

    return _solve(mats, jnp.asarray(rtol, mats.dtype), max_sweeps=max_sweeps, K=K)


@eqx.filter_jit
def _solve(mats: Array, rtol: Array, *, max_sweeps: int, K: int) -> tuple[Array, Array]:
    """The sweeps to convergence (no derivatives through them), then one differentiable sweep."""
    n = mats.shape[1]
    frozen = lax.stop_gradient(mats)
    Q_init = jnp.eye(n, dtype=mats.dtype)

    def cond(carry):
        return (carry[0] < max_sweeps) & ~carry[-1]

    def body(carry):
        k, Q0, prev, splits, _, last_change, _, _ = carry
        s = _sweep(frozen, Q0, with_T=False)
        split, splits = _update_splits(_couplings(s.C), splits)
        logmod = jnp.sort(_block_log_moduli(s.L, split))
        change = jnp.max(jnp.abs(logmod - prev))
        # settled, or stalled at the rounding noise of ill-conditioned factors
        stalled = (change <= rtol**0.5) & (change >= 0.5 * last_change)
        _, sizes = _blocks(split)
        # a cluster larger than the window keeps the sweeps going while its couplings still shrink
        fits = jnp.max(sizes) <= K
        settled = (k >= 1) & jnp.all(jnp.isfinite(logmod)) & ((change <= rtol) | stalled) & fits
        hopeless = (k >= _GIVE_UP) & ~fits & jnp.all(split | (splits.age >= _GIVE_UP))
        return k + 1, s.Qm, logmod, splits, split, change, settled, settled | hopeless

    inf = jnp.asarray(jnp.inf, mats.dtype)
    splits = _Splits(jnp.full((n - 1,), inf), jnp.zeros((n - 1,), int), jnp.zeros((n - 1,), bool))
    no = jnp.array(False)
    init = (jnp.array(0), Q_init, jnp.full((n,), inf), splits, jnp.zeros((n - 1,), bool), inf, no, no)
    _, Q0, _, splits, split, _, settled, _ = lax.while_loop(cond, body, init)
    final = _sweep(mats, lax.stop_gradient(Q0))
    # the loop's last splits, and the final sweep's own couplings at the rounding level
    split = split | _update_splits(lax.stop_gradient(_couplings(final.C)), splits)[0]
    values, scale, ok = _estimates(final, split, K)
    eigenvalues, _ = _sorted(values, scale, ok)
    converged = settled & jnp.all(ok)
    return eigenvalues, converged
