r"""The linearisation of SGD at an interpolating minimum: per-example data, the normal space of the
set of minima, the interpolation check, and a helper that trains a model to interpolation.

At a minimum $\theta^*$ where every per-example loss vanishes (interpolation) and every
$\ell_i \ge 0$, each per-example Hessian $H_i = \nabla^2 \ell_i(\theta^*)$ is positive semidefinite,
so $\ker H = \bigcap_i \ker H_i$ for the full-batch Hessian $H = \frac1n \sum_i H_i$: every
mini-batch map $\theta \mapsto \theta - \eta \nabla L_\xi(\theta)$ fixes $\theta^*$ and its
Jacobian $A_\xi = I - \eta H_\xi$ is the identity on $\ker H$ (the tangent space of the set of
minima) and maps $\operatorname{range} H$ into itself. The normal space is $\operatorname{range} H$
with an orthonormal basis $U$ (columns), and $B_\xi = U^\top A_\xi U$ is the restriction.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._kernels import Flattener, flatten, hvp
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array

# -- data ------------------------------------------------------------------------------------------


def check_data(data) -> int:
    """The common leading size `n` of the leaves of `data` (a PyTree of arrays)."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("`data` has no array leaves.")
    sizes = [jnp.shape(leaf)[0] if jnp.ndim(leaf) > 0 else None for leaf in leaves]
    if any(s is None for s in sizes):
        raise ValueError("`data` leaves must have a leading example axis (got a scalar leaf).")
    if len(set(sizes)) != 1:
        raise ValueError(f"`data` leaves must share the leading axis (the examples), got sizes {sizes}.")
    n = int(sizes[0])
    if n < 1:
        raise ValueError("`data` holds no examples.")
    return n


def check_batch_size(batch_size, n: int) -> int:
    b = check_int(batch_size, "batch_size")
    if b > n:
        raise ValueError(f"`batch_size` ({b}) must be at most the number of examples ({n}).")
    return b


def check_lr(lr) -> Array:
    check_positive(lr, "lr")
    return jnp.asarray(lr)


def _float_dtypes(tree) -> set:
    return {leaf.dtype for leaf in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(leaf)}


def check_params_data(params, data) -> None:
    """Finite `params` and `data` (when concrete), and one floating-point precision for both: a
    float32 model with float64 data (or the reverse) is rejected with a `TypeError` naming both,
    instead of failing later inside a compiled loop."""
    p_types, d_types = _float_dtypes(params), _float_dtypes(data)
    if not p_types:
        raise ValueError("`params` has no floating-point array leaves.")
    if len(p_types) > 1:
        raise TypeError(f"`params` mixes floating-point precisions {sorted(str(t) for t in p_types)}: "
                        "cast every leaf to one dtype.")
    if d_types and d_types != p_types:
        raise TypeError(
            f"`params` ({', '.join(sorted(str(t) for t in p_types))}) and `data` "
            f"({', '.join(sorted(str(t) for t in d_types))}) mix floating-point precisions: cast both "
            "to one dtype (float64 with jax_enable_x64 for interpolating minima).")
    check_finite(eqx.filter(params, eqx.is_inexact_array), "params")
    check_finite(eqx.filter(data, eqx.is_inexact_array), "data")


def take(data, idx):
    """The examples `idx` of every leaf of `data`."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], data)


def draw_batch(key, n: int, batch_size: int) -> Array:
    """`batch_size` distinct indices out of `n`, uniformly (all of them, in order, when equal)."""
    if batch_size == n:
        return jnp.arange(n)
    return jax.random.choice(key, n, (batch_size,), replace=False)


def batch_mask(key, n: int, batch_size, dtype) -> Array:
    """0/1 weights of a batch: the first `batch_size` entries of a random permutation (the same
    subsets as `draw_batch`); `batch_size` may be an array."""
    perm = jax.random.permutation(key, n)
    return jnp.zeros(n, dtype).at[perm].set((jnp.arange(n) < batch_size).astype(dtype))


def per_example_values(per_example_loss, unravel: Flattener, theta: Array, data) -> Array:
    return jax.vmap(lambda ex: per_example_loss(unravel(theta), ex))(data)


def mean_loss_fn(per_example_loss, unravel: Flattener, data) -> Callable[[Array], Array]:
    """`theta -> mean_i l_i(theta)` over the examples in `data`."""
    return lambda t: jnp.mean(per_example_values(per_example_loss, unravel, t, data))


def hvp_fn(per_example_loss, unravel: Flattener, theta, data) -> Callable[[Array], Array]:
    """`w -> H w`, the Hessian of the mean loss over `data` at `theta` ([`jaxdyn._kernels.hvp`][])."""
    mean = mean_loss_fn(per_example_loss, unravel, data)
    return lambda w: hvp(mean, theta, w)


class _Objective(eqx.Module):
    """The per-example loss near a flat point: `loss(params, example)`, the flattener back to the
    parameter PyTree, the flat point `theta` and the examples (one argument for the compiled
    pieces of [`normal_space`][])."""

    loss: Callable
    unravel: Flattener
    theta: Array
    data: Any

    def example_loss(self, t: Array, ex) -> Array:
        return self.loss(self.unravel(t), ex)

    def hvp(self) -> Callable[[Array], Array]:
        """The full-batch Hessian-vector product at `theta`."""
        return hvp_fn(self.loss, self.unravel, self.theta, self.data)


# -- interpolation check ---------------------------------------------------------------------------


class InterpolationCheckResult(AbstractResult):
    """Whether `params` is an interpolating minimum, with the numbers that decide it.

    - `max_example_loss`: $\\max_i \\ell_i(\\theta)$; `max_example_grad`: $\\max_i \\|\\nabla
      \\ell_i(\\theta)\\|_2$; `mean_loss`: the full-batch loss.
    - `loss_tol`, `grad_tol`: the tolerances; `interpolating`: both maxima within them.
    - `result`: `RESULTS.not_interpolating` when not, else `RESULTS.successful`.
    """

    max_example_loss: Array
    max_example_grad: Array
    mean_loss: Array
    loss_tol: Array
    grad_tol: Array
    interpolating: Array
    result: RESULTS

    def numbers(self) -> str:
        """The maxima against their tolerances, in one line (concrete values only)."""
        return (f"max per-example loss {float(self.max_example_loss):.3g} (tolerance "
                f"{float(self.loss_tol):.3g}), max per-example gradient norm "
                f"{float(self.max_example_grad):.3g} (tolerance {float(self.grad_tol):.3g})")

    def summary(self) -> str:
        verdict = "an interpolating minimum" if bool(self.interpolating) else "NOT an interpolating minimum"
        return (f"Interpolation check: {verdict}; {self.numbers()}; mean loss "
                f"{float(self.mean_loss):.3g}. Result: {message(self.result)}.")

    def plot(self, ax=None, **kwargs):
        """The two maxima against their tolerances (log scale); returns the axes."""
        from ..plot._sgd import plot_interpolation_check

        return plot_interpolation_check(self, ax=ax, **kwargs)


@eqx.filter_jit
def _interp_values(objective: _Objective):
    vals, grads = jax.vmap(jax.value_and_grad(objective.example_loss),
                           in_axes=(None, 0))(objective.theta, objective.data)
    return jnp.max(jnp.abs(vals)), jnp.max(jnp.linalg.norm(grads, axis=1)), jnp.mean(vals)


def interpolation_check(per_example_loss, params, data, *, loss_tol=1e-10, grad_tol=1e-6,
                        throw: bool = True) -> InterpolationCheckResult:
    r"""Check that `params` interpolates `data`: every per-example loss $\le$ `loss_tol` and every
    per-example gradient norm $\le$ `grad_tol` (absolute tolerances; the defaults suit float64 and
    a model polished by [`find_interpolating_minimum`][], which reaches losses far below them).

    **Arguments:** `per_example_loss(params, example) -> scalar`, `params` (any PyTree),
    `data` (a PyTree whose leaves share the leading example axis); `throw`: raise (default) when
    `params` is not an interpolating minimum, or with `False` return the check with
    `result = RESULTS.not_interpolating`.

    **Returns:** an [`InterpolationCheckResult`][].
    """
    check_throw(throw)
    if not callable(per_example_loss):
        raise TypeError("`per_example_loss` must be callable.")
    check_data(data)
    check_params_data(params, data)
    theta, unravel = flatten(params, name="params")
    ml, mg, mean = _interp_values(_Objective(per_example_loss, unravel, theta, data))
    lt, gt = jnp.asarray(loss_tol, ml.dtype), jnp.asarray(grad_tol, ml.dtype)
    ok = (ml <= lt) & (mg <= gt)
    out = InterpolationCheckResult(ml, mg, mean, lt, gt, ok,
                                   RESULTS.where(ok, RESULTS.successful, RESULTS.not_interpolating))
    hint = (f"({out.numbers()}) " if is_concrete(ml) else "") + (
        "Loosen `loss_tol`/`grad_tol`, or pass `throw=False` to get the check.")
    return raise_if_failed(out, out.result, throw, hint=hint)


# -- the pieces of a normal space ------------------------------------------------------------------


class _Decomposition(eqx.Module):
    """What a curvature strategy finds at the minimum: the basis $U$ (`(p, rank)`), the nonzero
    eigenvalues $h$, the per-example factors (or `None`), the largest dropped eigenvalue, the most
    negative Ritz value seen, and the two residual checks (see [`NormalSpace`][])."""

    basis: Array
    eigenvalues: Array
    factors: Array | None
    dropped_max: float
    min_eigenvalue: float
    eig_residual: Array
    null_residual: Array


def _require_rank(r: int) -> int:
    if r == 0:
        raise ValueError("The full-batch Hessian at `params` is zero (within `rtol`): there is no "
                         "normal space (every direction is flat).")
    return r


def _residuals(objective: _Objective, U, h, key):
    hv = objective.hvp()
    p, r = U.shape
    k1, k2 = jax.random.split(key)
    c = jax.random.normal(k1, (r,), objective.theta.dtype)
    eig = jnp.linalg.norm(hv(U @ c) - U @ (h * c)) / (h[0] * jnp.linalg.norm(c))
    w = jax.random.normal(k2, (p,), objective.theta.dtype)
    w = w - U @ (U.T @ w)
    w = w - U @ (U.T @ w)
    wn = jnp.linalg.norm(w)
    null = jnp.where(wn > 0, jnp.linalg.norm(hv(w)) / (h[0] * jnp.where(wn > 0, wn, 1.0)), 0.0)
    return eig, null


# -- the Hessian strategy: a randomised range finder on HVPs ---------------------------------------


@eqx.filter_jit
def _range_round(objective: _Objective, key, m: int):
    theta = objective.theta
    omega = jax.random.normal(key, (theta.shape[0], m), theta.dtype)
    hv = objective.hvp()
    if m <= 64:
        block = lambda W: jax.vmap(hv, in_axes=1, out_axes=1)(W)  # noqa: E731
    else:  # bounded memory: 32 HVPs at a time
        block = lambda W: lax.map(hv, W.T, batch_size=32).T  # noqa: E731
    Q, _ = jnp.linalg.qr(block(omega), mode="reduced")
    T = Q.T @ block(Q)
    T = (T + T.T) / 2
    h, W = jnp.linalg.eigh(T)
    return Q, h[::-1], W[:, ::-1]


def _range_finder(objective: _Objective, key, *, rtol: float, start: int):
    """Rounds of [`_range_round`][] with `m` columns, doubling `m` until at least 8 are left over:
    returns `(Q, h_all, W, rank, m)`."""
    p = objective.theta.shape[0]
    m = min(p, start)
    oversample = 8
    while True:
        Q, h_all, W = _range_round(objective, jax.random.fold_in(key, m), m)
        h_all = np.asarray(h_all)
        r = int(np.sum(h_all > rtol * max(h_all[0], 0.0)))
        if r <= m - oversample or m == p:
            return Q, h_all, W, r, m
        m = min(p, 2 * m)


def _hessian_factors(objective: _Objective, U):
    """$U^\\top H_i U$ for every example, shape `(n, r, r)` (n r HVPs)."""

    def one(ex):
        hv = lambda w: hvp(lambda t: objective.example_loss(t, ex), objective.theta, w)  # noqa: E731
        HU = jax.vmap(hv, in_axes=1, out_axes=1)(U)
        K = U.T @ HU
        return (K + K.T) / 2

    return lax.map(one, objective.data)


@eqx.filter_jit
def _hessian_finish(objective: _Objective, Q, W, h_all, key, *, rank: int, with_factors: bool):
    """The basis $QW$, the residual checks and (when asked) the per-example matrices, compiled."""
    U = Q @ W[:, :rank]
    h = h_all[:rank]
    eig, null = _residuals(objective, U, h, key)
    factors = _hessian_factors(objective, U) if with_factors else None
    return U, h, eig, null, factors


# -- the Gauss-Newton strategy: one Jacobian and a thin SVD ----------------------------------------


@eqx.filter_jit
def _gauss_newton_parts(residual_fn, objective: _Objective):
    unravel, data = objective.unravel, objective.data

    def res(t):
        return jax.vmap(lambda ex: jnp.ravel(residual_fn(unravel(t), ex)))(data)

    J = jax.jacrev(res)(objective.theta)  # (n, q, p)
    n, q, p = J.shape
    _, s, Vt = jnp.linalg.svd(J.reshape(n * q, p) / jnp.sqrt(n), full_matrices=False)
    return J, s**2, Vt


@eqx.filter_jit
def _gauss_newton_finish(objective: _Objective, Vt, h_all, J, key, *, rank: int):
    """The basis (the top right singular vectors), the residual checks and $G_i = J_i U$."""
    U = Vt[:rank].T
    h = h_all[:rank]
    eig, null = _residuals(objective, U, h, key)
    return U, h, eig, null, jnp.einsum("nqp,pr->nqr", J, U)


@eqx.filter_jit
def _gn_test_values(objective: _Objective, residual_fn, key):
    ex = take(objective.data, 0)
    theta = objective.theta
    t = theta + 1e-3 * jax.random.normal(key, theta.shape, theta.dtype) * (1 + jnp.abs(theta))
    params = objective.unravel(t)
    return objective.loss(params, ex), 0.5 * jnp.sum(jnp.ravel(residual_fn(params, ex)) ** 2)


def _check_gauss_newton(objective: _Objective, residual_fn, key) -> None:
    """`per_example_loss` must equal 1/2 |residual|^2 (checked at a random nearby point)."""
    a, b = (float(v) for v in _gn_test_values(objective, residual_fn, key))
    if not abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-30) + 1e-300:
        raise ValueError(
            "`curvature=GaussNewton(residual_fn)` needs per_example_loss = 1/2 |residual_fn|^2; at a "
            f"test point they differ ({a:.6g} vs {b:.6g})."
        )


# -- one SGD step in normal coordinates ------------------------------------------------------------


class _HessianSample(eqx.Module):
    """$v \\mapsto v - \\eta U^\\top H_\\xi U v$ by an HVP of the mini-batch mean loss."""

    loss_fn: Any = eqx.field(static=True)
    space: "NormalSpace"
    data: Any
    lr: Array
    batch_size: int = eqx.field(static=True)

    def __call__(self, key):
        s = self.space
        batch = take(self.data, draw_batch(key, s.n_examples, self.batch_size))
        hv = hvp_fn(self.loss_fn, s.unravel, s.theta, batch)
        U = s.basis

        def matvec(v):
            return v - self.lr * (U.T @ hv(U @ v))

        return matvec


class _GaussNewtonSample(eqx.Module):
    r"""$v \mapsto v - \frac{\eta}{B}\sum_{i\in\xi} G_i^\top G_i v$ (per-example factors).

    The batch is a 0/1 mask over all $n$ examples (the first $B$ entries of a random
    permutation: the same subsets as `jax.random.choice(..., replace=False)`), so that the batch
    size is an array and a grid over it compiles once."""

    factors: Array
    lr: Array
    batch_size: Array
    n_examples: int = eqx.field(static=True)

    def __call__(self, key):
        n = self.n_examples
        mask = batch_mask(key, n, self.batch_size, self.factors.dtype)
        G = self.factors  # (n, q, r)
        w = self.lr * mask / self.batch_size

        def matvec(v):
            return v - jnp.einsum("nqr,nq->r", G, w[:, None] * (G @ v))

        return matvec


@eqx.filter_jit
def _one_row(row, batch_size):
    return row(batch_size)


@eqx.filter_jit
def _all_rows(row, batch_sizes):
    return jax.vmap(row)(batch_sizes)


class _AtBatchSize(eqx.Module):
    """A diagram row's cells at one (static) batch size, as a function of the step size."""

    row: Any
    batch_size: int = eqx.field(static=True)

    def __call__(self, lr):
        return self.row.cell(lr, self.batch_size)


class _Cells(eqx.Module):
    """A diagram's cells as a function of `(step size, batch size)`."""

    row: Any

    def __call__(self, cell):
        lr, batch_size = cell
        return self.row.cell(lr, batch_size)


# -- curvature strategies --------------------------------------------------------------------------


class AbstractCurvature(eqx.Module):
    """How the per-batch curvature $H_\\xi$ is found and applied: exact Hessian-vector products
    ([`Hessian`][]) or per-example Gauss-Newton factors ([`GaussNewton`][]).

    A strategy implements the steps jaxdyn calls:

    - `decompose`: the normal space at the minimum (basis, eigenvalues, per-example factors and
      the residual checks), eagerly (its rank sets array shapes);
    - `sampler`: the random SGD step on normal coordinates, `key -> (v -> B_xi v)`;
    - `spread`, `sandwich`: the per-example curvatures $K_i$ on the normal space, from the
      factors (for the deterministic-product test and the mean-square bound);
    - `over_batch_sizes`: how a grid over batch sizes is evaluated (and, given `batches`, a
      [`jaxdyn.distributed.map_batches`][] with the placement bound, how it is split over
      devices).
    """

    @abc.abstractmethod
    def decompose(self, objective: _Objective, *, rtol: float, ms_max_dim: int,
                  key) -> _Decomposition:
        """The normal space at `objective.theta`: eigenvalues above `rtol` times the largest."""

    @abc.abstractmethod
    def sampler(self, space: "NormalSpace", per_example_loss, data, lr,
                batch_size) -> Callable[[Any], Callable[[Array], Array]]:
        """`key -> (v -> v - lr U^T H_xi U v)` for a batch of `batch_size` drawn with `key`."""

    @abc.abstractmethod
    def spread(self, factors: Array) -> Array:
        """$\\max_i \\|K_i - \\bar K\\|_F$ from the per-example factors (one $K_i$ at a time)."""

    @abc.abstractmethod
    def sandwich(self, factors: Array, X: Array) -> Array:
        """$\\sum_i K_i X K_i$ from the per-example factors."""

    @abc.abstractmethod
    def over_batch_sizes(self, row: Callable, sizes: tuple[int, ...], *, dtype,
                         progress: bool, batches: Callable | None = None) -> Any:
        """`row(batch_size)` for every size in `sizes`, stacked along a leading axis; `row` is an
        `eqx.Module` (compiled here) with the step sizes `row.lrs` and one cell
        `row.cell(lr, batch_size)`; `batches(fn, params)` (when given) maps `fn` over the leading
        axis of `params` across devices."""


class Hessian(AbstractCurvature):
    r"""Exact per-batch Hessians, matrix-free: $H_\xi w$ by forward-over-reverse differentiation
    of the mini-batch mean loss (one HVP per tangent vector per SGD step).

    The normal space is found by a randomised range finder on full-batch HVPs: $Y = H\Omega$ for
    $m$ Gaussian columns, $Q = \mathrm{qr}(Y)$, then Rayleigh-Ritz $Q^\top H Q = W \Lambda W^\top$
    (exact when $m > \operatorname{rank} H$); $m$ starts at `max_rank` (default 32) and doubles
    until at least 8 columns are left over. Costs about $4\,\mathrm{rank}$ full-batch HVPs. The
    per-example matrices $U^\top H_i U$ (for the mean-square bound) are formed only when the rank
    is at most `ms_max_dim`. A batch is gathered (its size sets shapes): a grid over batch sizes
    compiles once per size.
    """

    max_rank: int | None = eqx.field(static=True, default=None)

    def decompose(self, objective, *, rtol, ms_max_dim, key):
        k_range, k_res, _ = jax.random.split(key, 3)
        Q, h_all, W, r, m = _range_finder(objective, k_range, rtol=rtol, start=self.max_rank or 32)
        _require_rank(r)
        dropped = float(np.max(np.abs(h_all[r:]), initial=0.0)) if r < m else 0.0
        min_eig = float(min(h_all[-1], 0.0))
        U, h, eig, null, factors = _hessian_finish(objective, Q, W, jnp.asarray(h_all), k_res,
                                                   rank=r, with_factors=r <= ms_max_dim)
        return _Decomposition(U, h, factors, dropped, min_eig, eig, null)

    def sampler(self, space, per_example_loss, data, lr, batch_size):
        return _HessianSample(per_example_loss, space, data, lr, batch_size)

    def spread(self, factors):
        mean = jnp.mean(factors, axis=0)
        return jnp.max(lax.map(lambda K: jnp.linalg.norm(K - mean), factors))

    def sandwich(self, factors, X):
        return jnp.einsum("nab,bc,ncd->ad", factors, X, factors)

    def over_batch_sizes(self, row, sizes, *, dtype, progress, batches=None):
        del dtype  # the batch size stays a Python int (it sets the gathered batch's shape)
        it = sizes
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(sizes, desc="sgd_stability_diagram", leave=False)
        if batches is None:
            rows = [_one_row(row, b) for b in it]
        else:  # per batch size, the step sizes split over the devices
            rows = [batches(_AtBatchSize(row, b), row.lrs) for b in it]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *rows)


class GaussNewton(AbstractCurvature):
    r"""Per-example Gauss-Newton curvature for squared losses
    $\ell_i(\theta) = \tfrac12\|r(\theta, x_i)\|^2$ (`residual_fn(params, example) -> array`):
    $\nabla^2 \ell_i = J_i^\top J_i + \sum_k r_{ik} \nabla^2 r_{ik}$, which equals $J_i^\top J_i$
    exactly at interpolation ($r_i = 0$).

    The stacked Jacobian $J$ ($nq \times p$) is formed once; $U$ holds the right singular vectors
    of $J/\sqrt n$ with $h_j = s_j^2$ above the rank tolerance, and the per-example coordinates
    $G_i = J_i U$ ($q \times r$) give $U^\top H_\xi U = \frac1B\sum_{i\in\xi} G_i^\top G_i$, so
    every SGD step costs $O(Bqr)$ and nothing of size $p$. A batch is a 0/1 mask over the
    examples, so the batch size is an array: a grid over batch sizes is one compiled program.
    """

    residual_fn: Callable = eqx.field(static=True)

    def decompose(self, objective, *, rtol, ms_max_dim, key):
        del ms_max_dim  # the factors G_i are always formed (n q r numbers)
        _, k_res, k_gn = jax.random.split(key, 3)
        _check_gauss_newton(objective, self.residual_fn, k_gn)
        J, h_all, Vt = _gauss_newton_parts(self.residual_fn, objective)
        h_all = np.asarray(h_all)
        r = _require_rank(int((h_all > rtol * h_all[0]).sum()))
        dropped = float(h_all[r]) if r < h_all.shape[0] else 0.0
        U, h, eig, null, factors = _gauss_newton_finish(objective, Vt, jnp.asarray(h_all), J, k_res,
                                                        rank=r)
        return _Decomposition(U, h, factors, dropped, 0.0, eig, null)

    def sampler(self, space, per_example_loss, data, lr, batch_size):
        return _GaussNewtonSample(space.factors, lr, jnp.asarray(batch_size), space.n_examples)

    def spread(self, factors):  # K_i = G_i^T G_i
        mean = jnp.einsum("nqr,nqs->rs", factors, factors) / factors.shape[0]
        return jnp.max(lax.map(lambda G: jnp.linalg.norm(G.T @ G - mean), factors))

    def sandwich(self, factors, X):
        inner = jnp.einsum("nqr,rs,nps->nqp", factors, X, factors)  # G_i X G_i^T
        return jnp.einsum("nqr,nqp,nps->rs", factors, inner, factors)

    def over_batch_sizes(self, row, sizes, *, dtype, progress, batches=None):
        del progress  # one compiled call
        if batches is None:
            return _all_rows(row, jnp.asarray(sizes, dtype))
        n_b, n_lr = len(sizes), row.lrs.shape[0]  # every (step size, batch size) cell over the devices
        cells = (jnp.tile(row.lrs, n_b), jnp.repeat(jnp.asarray(sizes, dtype), n_lr))
        out = batches(_Cells(row), cells)
        return jax.tree_util.tree_map(lambda a: a.reshape(n_b, n_lr, *a.shape[1:]), out)


# -- the normal space ------------------------------------------------------------------------------


class NormalSpace(eqx.Module):
    r"""The linearisation of SGD at $\theta^*$ restricted to the normal space.

    - `theta`, `unravel`: the flat minimum and the `Flattener` (`jaxdyn._kernels`) back
      to the parameter PyTree.
    - `basis`: $U$, shape `(p, rank)`, orthonormal, $U^\top H U = \mathrm{diag}(h)$.
    - `eigenvalues`: $h$, the nonzero eigenvalues of the full-batch Hessian, descending.
    - `factors`: per-example coordinates: `(n, q, rank)` Gauss-Newton factors $G_i$ with
      $U^\top H_i U = G_i^\top G_i$, or `(n, rank, rank)` matrices $U^\top H_i U$ from HVPs
      (only when `rank <= ms_max_dim`), or `None`.
    - `curvature`: the strategy that built it ([`Hessian`][] or [`GaussNewton`][]); it also
      applies the per-batch curvature in [`sgd_lyapunov`][].
    - `rtol`: the rank tolerance ($h_j > r\, h_1$ is kept, $r$ = `rtol`; smaller eigenvalues are
      treated as tangent, where their exponent $\log|1 - \eta h_j|$ is within $\eta\,
      \mathrm{rtol}\, h_1$ of the neutral 0); `dropped_max`: the largest eigenvalue dropped
      (0 if none).
    - `min_eigenvalue`: the most negative Ritz value seen (a clearly negative one means not a
      minimum).
    - `eig_residual`: $\|HUc - U(h \odot c)\| / (h_1\|c\|)$ for random $c$; `null_residual`:
      $\|H w\| / (h_1 \|w\|)$ for a random $w \perp U$ (both by exact HVPs; small values say the
      normal space is complete and the tangent space is flat).
    """

    theta: Array
    unravel: Flattener
    basis: Array
    eigenvalues: Array
    factors: Array | None
    rtol: Array
    dropped_max: Array
    min_eigenvalue: Array
    eig_residual: Array
    null_residual: Array
    curvature: AbstractCurvature
    n_examples: int = eqx.field(static=True)

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    @property
    def lambda_max(self) -> Array:
        """$\\lambda_{\\max}(H)$ (exact: the top Ritz value on the normal space)."""
        return self.eigenvalues[0]


def _default_rtol(p: int, dtype) -> float:
    return float(1e3 * p * np.finfo(dtype).eps)


def normal_space(per_example_loss, params, data, *, curvature: AbstractCurvature | None = None,
                 rtol: float | None = None, ms_max_dim: int = 64, key=None) -> NormalSpace:
    r"""The normal space of the set of minima at `params` and the per-example curvature on it.

    **Arguments:**

    - `per_example_loss(params, example) -> scalar`, `params`, `data`: as in
      [`sgd_lyapunov`][].
    - `curvature`: [`Hessian`][] (default: exact HVPs, randomised range finder) or
      [`GaussNewton`][] (squared losses: one Jacobian and a thin SVD of $J^\top$, cheap even at
      $p = 10^4$).
    - `rtol`: rank tolerance on the Hessian eigenvalues: $h_j > \mathrm{rtol}\cdot h_1$ span the
      normal space. Default $10^3\, p\, \varepsilon$ (about $2\cdot 10^{-9}$ at $p = 10^4$ in
      float64), above the rounding noise of HVPs and of $s_j^2$.
    - `ms_max_dim`: with [`Hessian`][], the per-example matrices $U^\top H_i U$ needed by the
      mean-square bound are formed (n rank HVPs) only when `rank <= ms_max_dim`.
    - `key`: random start for the range finder and the residual checks (default: a fixed key).

    Runs eagerly (the rank sets array shapes); the pieces inside are compiled.

    **Returns:** a [`NormalSpace`][].
    """
    if not callable(per_example_loss):
        raise TypeError("`per_example_loss` must be callable.")
    n = check_data(data)
    check_params_data(params, data)
    curvature = Hessian() if curvature is None else curvature
    if not isinstance(curvature, AbstractCurvature):
        raise TypeError("`curvature` must be jaxdyn.training.Hessian() or GaussNewton(residual_fn).")
    ms_max_dim = check_int(ms_max_dim, "ms_max_dim", minimum=0)
    if rtol is not None and not (is_concrete(rtol) and 0 < float(rtol) < 1):
        raise ValueError(f"`rtol` must be a number in (0, 1), got {rtol}.")
    theta, unravel = flatten(params, name="params")
    if not is_concrete(theta):
        raise ValueError("`params` must be concrete (not traced): the rank of the normal space sets "
                         "array shapes. Compute `normal_space(...)` outside jit and pass it in.")
    dtype = theta.dtype
    rtol = _default_rtol(theta.shape[0], dtype) if rtol is None else float(rtol)
    key = jax.random.key(0) if key is None else key
    parts = curvature.decompose(_Objective(per_example_loss, unravel, theta, data), rtol=rtol,
                                ms_max_dim=ms_max_dim, key=key)
    return NormalSpace(theta=theta, unravel=unravel, basis=parts.basis,
                       eigenvalues=parts.eigenvalues, factors=parts.factors,
                       rtol=jnp.asarray(rtol, dtype), dropped_max=jnp.asarray(parts.dropped_max, dtype),
                       min_eigenvalue=jnp.asarray(parts.min_eigenvalue, dtype),
                       eig_residual=parts.eig_residual, null_residual=parts.null_residual,
                       curvature=curvature, n_examples=n)


# -- training to interpolation ---------------------------------------------------------------------


class InterpolationFitResult(AbstractResult):
    """What [`find_interpolating_minimum`][] returns.

    - `params`: the trained parameters; `loss`: the final mean loss
      $\\frac1n\\sum_i \\tfrac12\\|r_i\\|^2$; `converged`: `loss < target`; `target`.
    - `adam_losses`: the loss after each Adam step; `lm_losses`: after each Levenberg-Marquardt
      iteration (padded with the last value after an early stop); `lm_steps`: iterations used.
    - `result`: `RESULTS.nonfinite_loss` when the final loss is not finite,
      `RESULTS.not_converged` when it is not below `target`, else `RESULTS.successful`.
    """

    params: Any
    loss: Array
    converged: Array
    adam_losses: Array
    lm_losses: Array
    lm_steps: Array
    target: Array
    result: RESULTS

    def summary(self) -> str:
        return (f"Training to interpolation: {self.adam_losses.shape[0]} Adam steps, then "
                f"{int(self.lm_steps)} Levenberg-Marquardt iterations: mean loss "
                f"{float(self.loss):.3g} (target {float(self.target):.3g}, converged: "
                f"{bool(self.converged)}). Result: {message(self.result)}.")

    def plot(self, ax=None, **kwargs):
        """The loss over the Adam steps and the Levenberg-Marquardt iterations; returns the axes."""
        from ..plot._sgd import plot_interpolation_fit

        return plot_interpolation_fit(self, ax=ax, **kwargs)


@eqx.filter_jit
def _fit(residual_fn, unravel, theta, data, *, adam_steps, adam_lr, lm_steps, stop):
    def res(t):
        return jax.vmap(lambda ex: jnp.ravel(residual_fn(unravel(t), ex)))(data).ravel()

    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    loss = lambda t: 0.5 * jnp.sum(res(t) ** 2) / n  # noqa: E731
    opt = optax.adam(adam_lr)

    def adam_step(carry, _):
        t, s = carry
        val, g = jax.value_and_grad(loss)(t)
        upd, s = opt.update(g, s, t)
        return (optax.apply_updates(t, upd), s), val

    (theta, _), adam_losses = lax.scan(adam_step, (theta, opt.init(theta)), None, length=adam_steps)

    def lm_body(carry):
        t, mu, i, hist = carry
        r = res(t)
        J = jax.jacrev(res)(t)  # (nq, p)
        K = J @ J.T
        scale = jnp.trace(K) / K.shape[0]
        a = jnp.linalg.solve(K + mu * scale * jnp.eye(K.shape[0], dtype=K.dtype), r)
        t_new = t - J.T @ a  # minimum-norm damped Gauss-Newton step
        old, new = loss(t), loss(t_new)
        ok = jnp.isfinite(new) & (new < old)
        t = jnp.where(ok, t_new, t)
        mu = jnp.where(ok, mu / 10, mu * 10)
        hist = hist.at[i].set(jnp.where(ok, new, old))
        return t, jnp.clip(mu, 1e-15, 1e8), i + 1, hist

    def lm_cond(carry):
        t, mu, i, hist = carry
        last = jnp.where(i > 0, hist[jnp.maximum(i - 1, 0)], jnp.inf)
        return (i < lm_steps) & (last > stop) & (mu < 1e8)

    hist0 = jnp.full((lm_steps,), jnp.nan, theta.dtype)
    theta, _, used, hist = lax.while_loop(lm_cond, lm_body, (theta, jnp.asarray(1e-3, theta.dtype),
                                                            jnp.asarray(0), hist0))
    final = loss(theta)
    hist = jnp.where(jnp.arange(lm_steps) < used, hist, final)
    return theta, final, adam_losses, hist, used


def find_interpolating_minimum(residual_fn, params, data, *, adam_steps: int = 500,
                               adam_lr: float = 1e-3, lm_steps: int = 50, target: float = 1e-12,
                               polish_to: float = 1e-26, throw: bool = True) -> InterpolationFitResult:
    r"""Train an overparameterised model to an interpolating minimum of the squared loss
    $L = \frac1n\sum_i \tfrac12\|r(\theta, x_i)\|^2$: Adam on the full batch, then
    Levenberg-Marquardt polishing in the minimum-norm form
    $\delta = -J^\top (JJ^\top + \mu\, \bar k I)^{-1} r$ ($\bar k$ the mean diagonal of $JJ^\top$,
    $\mu$ divided by 10 after a successful step, multiplied by 10 after a rejected one), which
    converges quadratically when the model can interpolate ($JJ^\top$ nonsingular, $p \ge nq$).
    Use float64 (`jax_enable_x64`): float32 cannot get below about $10^{-12}$.

    **Arguments:**

    - `residual_fn(params, example) -> array`: the residual of one example.
    - `params`: the starting parameters (any PyTree); `data`: the examples (leading axis).
    - `adam_steps`, `adam_lr`: the Adam phase (0 skips it); `lm_steps`: at most this many
      polishing iterations, stopping once the loss is below `polish_to`.
    - `target`: the loss that counts as interpolation (`converged`).
    - `throw`: raise (default) when the final loss is not below `target` (or not finite), or with
      `False` return the fit with its code in `result`.

    **Returns:** an [`InterpolationFitResult`][].
    """
    check_throw(throw)
    if not callable(residual_fn):
        raise TypeError("`residual_fn` must be callable.")
    check_data(data)
    check_params_data(params, data)
    adam_steps = check_int(adam_steps, "adam_steps", minimum=0)
    lm_steps = check_int(lm_steps, "lm_steps")
    check_positive(adam_lr, "adam_lr")
    check_positive(target, "target")
    theta, unravel = flatten(params, name="params")
    theta, final, adam_losses, hist, used = _fit(
        residual_fn, unravel, theta, data, adam_steps=adam_steps,
        adam_lr=jnp.asarray(adam_lr, theta.dtype), lm_steps=lm_steps,
        stop=jnp.asarray(polish_to, theta.dtype))
    target = jnp.asarray(target, theta.dtype)
    converged = final < target
    code = RESULTS.where(~jnp.isfinite(final), RESULTS.nonfinite_loss,
                         RESULTS.where(converged, RESULTS.successful, RESULTS.not_converged))
    out = InterpolationFitResult(params=unravel(theta), loss=final, converged=converged,
                                 adam_losses=adam_losses, lm_losses=hist, lm_steps=used,
                                 target=target, result=code)
    return raise_if_failed(out, out.result, throw,
                           hint="(`find_interpolating_minimum`: raise `lm_steps` or `adam_steps`, or "
                                "pass `throw=False` to get the parameters reached.)")
