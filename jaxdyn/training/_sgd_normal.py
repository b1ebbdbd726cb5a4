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

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._types import Array

# -- flattening and data ---------------------------------------------------------------------------


class Unravel(eqx.Module):
    """Flat vector -> the parameter PyTree (hashable, so a new instance does not recompile).

    The floating-point array leaves are the parameters; everything else in the PyTree (e.g. an
    Equinox model's activation functions, integer buffers) is kept as it was."""

    treedef: Any = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)
    dtypes: tuple = eqx.field(static=True)
    static: Any = eqx.field(static=True)

    def __call__(self, flat: Array):
        out, start = [], 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            size = math.prod(shape)
            out.append(flat[start:start + size].reshape(shape).astype(dtype))
            start += size
        return eqx.combine(jax.tree_util.tree_unflatten(self.treedef, out), self.static)


def flatten_params(params) -> tuple[Array, Unravel]:
    """Ravel the floating-point array leaves of `params`: returns `(theta, unravel)`."""
    arrays_tree, static = eqx.partition(params, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(arrays_tree)
    if not leaves:
        raise ValueError("`params` has no floating-point array leaves.")
    theta = jnp.concatenate([a.ravel() for a in leaves]) if len(leaves) > 1 else leaves[0].ravel()
    return theta, Unravel(treedef, tuple(a.shape for a in leaves), tuple(a.dtype for a in leaves),
                          static)


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


def per_example_values(per_example_loss, unravel: Unravel, theta: Array, data) -> Array:
    return jax.vmap(lambda ex: per_example_loss(unravel(theta), ex))(data)


def mean_loss_fn(per_example_loss, unravel: Unravel, data) -> Callable[[Array], Array]:
    """`theta -> mean_i l_i(theta)` over the examples in `data`."""
    return lambda t: jnp.mean(per_example_values(per_example_loss, unravel, t, data))


def hvp_fn(per_example_loss, unravel, theta, data) -> Callable[[Array], Array]:
    """Forward-over-reverse Hessian-vector product of the mean loss over `data` at `theta`."""
    grad = jax.grad(mean_loss_fn(per_example_loss, unravel, data))
    return lambda w: jax.jvp(grad, (theta,), (w,))[1]


# -- interpolation check ---------------------------------------------------------------------------


class InterpolationCheck(eqx.Module):
    """Whether `params` is an interpolating minimum, with the numbers that decide it.

    - `max_example_loss`: $\\max_i \\ell_i(\\theta)$; `max_example_grad`: $\\max_i \\|\\nabla
      \\ell_i(\\theta)\\|_2$; `mean_loss`: the full-batch loss.
    - `loss_tol`, `grad_tol`: the tolerances; `interpolating`: both maxima within them.
    """

    max_example_loss: Array
    max_example_grad: Array
    mean_loss: Array
    loss_tol: Array
    grad_tol: Array
    interpolating: Array

    def message(self) -> str:
        return (f"max per-example loss {float(self.max_example_loss):.3g} (tolerance "
                f"{float(self.loss_tol):.3g}), max per-example gradient norm "
                f"{float(self.max_example_grad):.3g} (tolerance {float(self.grad_tol):.3g})")


@eqx.filter_jit
def _interp_values(per_example_loss, unravel, theta, data):
    vals, grads = jax.vmap(jax.value_and_grad(lambda t, ex: per_example_loss(unravel(t), ex)),
                           in_axes=(None, 0))(theta, data)
    return jnp.max(jnp.abs(vals)), jnp.max(jnp.linalg.norm(grads, axis=1)), jnp.mean(vals)


def interpolation_check(per_example_loss, params, data, *, loss_tol=1e-10,
                        grad_tol=1e-6) -> InterpolationCheck:
    r"""Check that `params` interpolates `data`: every per-example loss $\le$ `loss_tol` and every
    per-example gradient norm $\le$ `grad_tol` (absolute tolerances; the defaults suit float64 and
    a model polished by [`find_interpolating_minimum`][], which reaches losses far below them).

    **Arguments:** `per_example_loss(params, example) -> scalar`, `params` (any PyTree),
    `data` (a PyTree whose leaves share the leading example axis).

    **Returns:** an [`InterpolationCheck`][].
    """
    if not callable(per_example_loss):
        raise TypeError("`per_example_loss` must be callable.")
    check_data(data)
    check_params_data(params, data)
    theta, unravel = flatten_params(params)
    ml, mg, mean = _interp_values(per_example_loss, unravel, theta, data)
    lt, gt = jnp.asarray(loss_tol, ml.dtype), jnp.asarray(grad_tol, ml.dtype)
    return InterpolationCheck(ml, mg, mean, lt, gt, (ml <= lt) & (mg <= gt))


# -- curvature strategies --------------------------------------------------------------------------


class AbstractCurvature(eqx.Module):
    """How the per-batch curvature $H_\\xi$ is applied: exact Hessian-vector products
    ([`Hessian`][]) or per-example Gauss-Newton factors ([`GaussNewton`][])."""


class Hessian(AbstractCurvature):
    r"""Exact per-batch Hessians, matrix-free: $H_\xi w$ by forward-over-reverse differentiation
    of the mini-batch mean loss (one HVP per tangent vector per SGD step).

    The normal space is found by a randomised range finder on full-batch HVPs: $Y = H\Omega$ for
    $m$ Gaussian columns, $Q = \mathrm{qr}(Y)$, then Rayleigh-Ritz $Q^\top H Q = W \Lambda W^\top$
    (exact when $m > \operatorname{rank} H$); $m$ starts at `max_rank` (default 32) and doubles
    until at least 8 columns are left over. Costs about $4\,\mathrm{rank}$ full-batch HVPs.
    """

    max_rank: int | None = eqx.field(static=True, default=None)


class GaussNewton(AbstractCurvature):
    r"""Per-example Gauss-Newton curvature for squared losses
    $\ell_i(\theta) = \tfrac12\|r(\theta, x_i)\|^2$ (`residual_fn(params, example) -> array`):
    $\nabla^2 \ell_i = J_i^\top J_i + \sum_k r_{ik} \nabla^2 r_{ik}$, which equals $J_i^\top J_i$
    exactly at interpolation ($r_i = 0$).

    The stacked Jacobian $J$ ($nq \times p$) is formed once; $U$ holds the right singular vectors
    of $J/\sqrt n$ with $h_j = s_j^2$ above the rank tolerance, and the per-example coordinates
    $G_i = J_i U$ ($q \times r$) give $U^\top H_\xi U = \frac1B\sum_{i\in\xi} G_i^\top G_i$, so
    every SGD step costs $O(Bqr)$ and nothing of size $p$.
    """

    residual_fn: Callable = eqx.field(static=True)


# -- the normal space ------------------------------------------------------------------------------


class NormalSpace(eqx.Module):
    r"""The linearisation of SGD at $\theta^*$ restricted to the normal space.

    - `theta`, `unravel`: the flat minimum and the map back to the parameter PyTree.
    - `basis`: $U$, shape `(p, rank)`, orthonormal, $U^\top H U = \mathrm{diag}(h)$.
    - `eigenvalues`: $h$, the nonzero eigenvalues of the full-batch Hessian, descending.
    - `factors`: per-example coordinates: `(n, q, rank)` Gauss-Newton factors $G_i$ with
      $U^\top H_i U = G_i^\top G_i$, or `(n, rank, rank)` matrices $U^\top H_i U$ from HVPs
      (only when `rank <= ms_max_dim`), or `None`.
    - `factor_kind`: `"gauss_newton"`, `"hessian"` or `"none"`.
    - `rtol`: the rank tolerance ($h_j > $ `rtol` $\cdot h_1$ is kept; smaller eigenvalues are
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
    unravel: Unravel
    basis: Array
    eigenvalues: Array
    factors: Array | None
    rtol: Array
    dropped_max: Array
    min_eigenvalue: Array
    eig_residual: Array
    null_residual: Array
    n_examples: int = eqx.field(static=True)
    factor_kind: str = eqx.field(static=True)

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    @property
    def lambda_max(self) -> Array:
        """$\\lambda_{\\max}(H)$ (exact: the top Ritz value on the normal space)."""
        return self.eigenvalues[0]


def _default_rtol(p: int, dtype) -> float:
    return float(1e3 * p * np.finfo(dtype).eps)


@eqx.filter_jit
def _range_round(per_example_loss, unravel, theta, data, key, m: int):
    omega = jax.random.normal(key, (theta.shape[0], m), theta.dtype)
    hvp = hvp_fn(per_example_loss, unravel, theta, data)
    if m <= 64:
        block = lambda W: jax.vmap(hvp, in_axes=1, out_axes=1)(W)  # noqa: E731
    else:  # bounded memory: 32 HVPs at a time
        block = lambda W: lax.map(hvp, W.T, batch_size=32).T  # noqa: E731
    Q, _ = jnp.linalg.qr(block(omega), mode="reduced")
    T = Q.T @ block(Q)
    T = (T + T.T) / 2
    h, W = jnp.linalg.eigh(T)
    return Q, h[::-1], W[:, ::-1]


@eqx.filter_jit
def _finish(per_example_loss, unravel, theta, data, Q, W, h_all, r: int, key, J,
            hessian_factors: bool):
    """The basis, residual checks and the per-example factors, in one compiled call."""
    U = Q[:r].T if W is None else Q @ W[:, :r]
    h = h_all[:r]
    eig, null = _residuals(per_example_loss, unravel, theta, data, U, h, key)
    if J is not None:
        factors = jnp.einsum("nqp,pr->nqr", J, U)
    elif hessian_factors:
        factors = _hessian_factors(per_example_loss, unravel, theta, data, U)
    else:
        factors = None
    return U, h, eig, null, factors


def _residuals(per_example_loss, unravel, theta, data, U, h, key):
    hvp = hvp_fn(per_example_loss, unravel, theta, data)
    p, r = U.shape
    k1, k2 = jax.random.split(key)
    c = jax.random.normal(k1, (r,), theta.dtype)
    eig = jnp.linalg.norm(hvp(U @ c) - U @ (h * c)) / (h[0] * jnp.linalg.norm(c))
    w = jax.random.normal(k2, (p,), theta.dtype)
    w = w - U @ (U.T @ w)
    w = w - U @ (U.T @ w)
    wn = jnp.linalg.norm(w)
    null = jnp.where(wn > 0, jnp.linalg.norm(hvp(w)) / (h[0] * jnp.where(wn > 0, wn, 1.0)), 0.0)
    return eig, null


def _hessian_factors(per_example_loss, unravel, theta, data, U):
    """$U^\\top H_i U$ for every example, shape `(n, r, r)` (n r HVPs)."""

    def one(ex):
        grad = jax.grad(lambda t: per_example_loss(unravel(t), ex))
        hv = lambda w: jax.jvp(grad, (theta,), (w,))[1]  # noqa: E731
        HU = jax.vmap(hv, in_axes=1, out_axes=1)(U)
        K = U.T @ HU
        return (K + K.T) / 2

    return lax.map(one, data)


@eqx.filter_jit
def _gauss_newton_parts(residual_fn, unravel, theta, data, rtol):
    def res(t):
        return jax.vmap(lambda ex: jnp.ravel(residual_fn(unravel(t), ex)))(data)

    J = jax.jacrev(res)(theta)  # (n, q, p)
    n, q, p = J.shape
    _, s, Vt = jnp.linalg.svd(J.reshape(n * q, p) / jnp.sqrt(n), full_matrices=False)
    return J, s**2, Vt


@eqx.filter_jit
def _gn_test_values(per_example_loss, residual_fn, unravel, theta, data, key):
    ex = take(data, 0)
    t = theta + 1e-3 * jax.random.normal(key, theta.shape, theta.dtype) * (1 + jnp.abs(theta))
    return per_example_loss(unravel(t), ex), 0.5 * jnp.sum(jnp.ravel(residual_fn(unravel(t), ex)) ** 2)


def _check_gauss_newton(per_example_loss, residual_fn, unravel, theta, data, key) -> None:
    """`per_example_loss` must equal 1/2 |residual|^2 (checked at a random nearby point)."""
    a, b = (float(v) for v in _gn_test_values(per_example_loss, residual_fn, unravel, theta, data,
                                              key))
    if not abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-30) + 1e-300:
        raise ValueError(
            "`curvature=GaussNewton(residual_fn)` needs per_example_loss = 1/2 |residual_fn|^2; at a "
            f"test point they differ ({a:.6g} vs {b:.6g})."
        )


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
    theta, unravel = flatten_params(params)
    if not is_concrete(theta):
        raise ValueError("`params` must be concrete (not traced): the rank of the normal space sets "
                         "array shapes. Compute `normal_space(...)` outside jit and pass it in.")
    p = theta.shape[0]
    dtype = theta.dtype
    rtol = _default_rtol(p, dtype) if rtol is None else float(rtol)
    key = jax.random.key(0) if key is None else key
    k_range, k_res, k_gn = jax.random.split(key, 3)
    if isinstance(curvature, GaussNewton):
        _check_gauss_newton(per_example_loss, curvature.residual_fn, unravel, theta, data, k_gn)
        J, h_all, Vt = _gauss_newton_parts(curvature.residual_fn, unravel, theta, data, rtol)
        h_all = np.asarray(h_all)
        keep = h_all > rtol * h_all[0]
        r = int(keep.sum())
        Q, W = Vt, None
        dropped = float(h_all[r]) if r < h_all.shape[0] else 0.0
        kind = "gauss_newton"
        min_eig = 0.0
    else:
        m = min(p, curvature.max_rank or 32)
        oversample = 8
        while True:
            Q, h_all, W = _range_round(per_example_loss, unravel, theta, data,
                                       jax.random.fold_in(k_range, m), m)
            h_all = np.asarray(h_all)
            r = int(np.sum(h_all > rtol * max(h_all[0], 0.0)))
            if r <= m - oversample or m == p:
                break
            m = min(p, 2 * m)
        dropped = float(np.max(np.abs(h_all[r:]), initial=0.0)) if r < m else 0.0
        min_eig = float(min(h_all[-1], 0.0))
        J = None
        kind = "hessian" if 0 < r <= ms_max_dim else "none"
    if r == 0:
        raise ValueError("The full-batch Hessian at `params` is zero (within `rtol`): there is no "
                         "normal space (every direction is flat).")
    U, h, eig_res, null_res, factors = _finish(per_example_loss, unravel, theta, data, Q, W,
                                               jnp.asarray(h_all), r, k_res, J, kind == "hessian")
    return NormalSpace(theta=theta, unravel=unravel, basis=U, eigenvalues=h, factors=factors,
                       rtol=jnp.asarray(rtol, dtype), dropped_max=jnp.asarray(dropped, dtype),
                       min_eigenvalue=jnp.asarray(min_eig, dtype), eig_residual=eig_res,
                       null_residual=null_res, n_examples=n, factor_kind=kind)


# -- training to interpolation ---------------------------------------------------------------------


class InterpolationFit(eqx.Module):
    """What [`find_interpolating_minimum`][] returns.

    - `params`: the trained parameters; `loss`: the final mean loss
      $\\frac1n\\sum_i \\tfrac12\\|r_i\\|^2$; `converged`: `loss < target`.
    - `adam_losses`: the loss after each Adam step; `lm_losses`: after each Levenberg-Marquardt
      iteration (padded with the last value after an early stop); `lm_steps`: iterations used.
    """

    params: Any
    loss: Array
    converged: Array
    adam_losses: Array
    lm_losses: Array
    lm_steps: Array


@eqx.filter_jit
def _fit(residual_fn, unravel, theta, data, adam_steps, adam_lr, lm_steps, stop):
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
                               polish_to: float = 1e-26) -> InterpolationFit:
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

    **Returns:** an [`InterpolationFit`][].
    """
    if not callable(residual_fn):
        raise TypeError("`residual_fn` must be callable.")
    check_data(data)
    check_params_data(params, data)
    adam_steps = check_int(adam_steps, "adam_steps", minimum=0)
    lm_steps = check_int(lm_steps, "lm_steps")
    check_positive(adam_lr, "adam_lr")
    check_positive(target, "target")
    theta, unravel = flatten_params(params)
    theta, final, adam_losses, hist, used = _fit(
        residual_fn, unravel, theta, data, adam_steps, jnp.asarray(adam_lr, theta.dtype), lm_steps,
        jnp.asarray(polish_to, theta.dtype))
    return InterpolationFit(unravel(theta), final, final < target, adam_losses, hist, used)
