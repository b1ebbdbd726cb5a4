r"""Gradient descent as a map $G(\theta) = \theta - \eta \nabla L(\theta)$, its Jacobian
$DG = I - \eta H$ (matrix-free) and the linear stability of a critical point.

The Hessian operator, Lanczos and the sharpness all come from [`jaxdyn.curvature`][]; this module
only composes them.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import curvature as _curvature
from .._checks import check_int, check_positive, is_concrete
from .._deprecate import renamed_kwargs
from .._kernels import flatten
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key, PyTree
from ..curvature._lanczos import check_key

# ------------------------------------------------------------------------------------------------
# input checks and parameter handling shared by the training modules


class _CombinedLoss(eqx.Module):
    """`loss_fn(eqx.combine(p, static), *data)`: a loss of the array leaves of `params` only.

    A module (not a lambda) so that two calls with the same `loss_fn` and the same model structure
    compare equal, and jitted functions taking it as static data do not recompile."""

    loss_fn: Callable
    static: Any

    def __call__(self, params, *data):
        return self.loss_fn(eqx.combine(params, self.static), *data)


def split_params(loss_fn: Callable, params: PyTree) -> tuple[PyTree, "_CombinedLoss", Any]:
    """Split `params` into its inexact array leaves and the rest (activation functions, ints of an
    Equinox model); return `(arrays, loss_of_arrays, static)`."""
    arrays, static = eqx.partition(params, eqx.is_inexact_array)
    return arrays, _CombinedLoss(loss_fn, static), static


def check_lr(lr: Any, name: str = "lr") -> Array:
    """A positive finite scalar step size (checked when concrete); returned as an array."""
    if isinstance(lr, bool | str | bytes) or lr is None:
        raise TypeError(f"`{name}` must be a positive number, got {type(lr).__name__} {lr!r}.")
    if is_concrete(lr) and np.ndim(lr) != 0:
        raise ValueError(f"`{name}` must be a positive scalar, got {lr!r}.")
    check_positive(lr, name)
    return jnp.asarray(lr, dtype=jnp.result_type(float))


def check_data(data: tuple) -> None:
    """All array leaves of `data` must share their leading (sample) size."""
    leaves = jax.tree_util.tree_leaves(data)
    sizes = []
    for leaf in leaves:
        shape = jnp.shape(leaf)
        if len(shape) == 0:
            raise ValueError("`data` arrays must have a leading sample axis, got a scalar.")
        sizes.append(shape[0])
    if len(set(sizes)) > 1:
        shapes = [tuple(jnp.shape(leaf)) for leaf in leaves]
        raise ValueError(f"`data` arrays must share their leading (sample) size, got shapes {shapes}.")
    if sizes and sizes[0] == 0:
        raise ValueError("`data` must hold at least one example (got a leading size of 0).")


def check_loss(loss_fn: Callable, params: PyTree, data: tuple) -> None:
    """`loss_fn(params, *data)` must be a real scalar (checked by `eqx.filter_eval_shape`)."""
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    try:
        out = eqx.filter_eval_shape(loss_fn, params, *data)
    except Exception as e:  # a loss that does not run on these inputs: say which call failed
        raise ValueError(f"`loss_fn` failed on `(params, *data)`: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        raise ValueError(f"`loss_fn(params, *data)` must return a scalar, got {shape}.")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"`loss_fn(params, *data)` must return a real float, got dtype {out.dtype}.")


def check_params(params: PyTree) -> None:
    if not jax.tree_util.tree_leaves(eqx.filter(params, eqx.is_inexact_array)):
        raise ValueError("`params` must contain at least one floating-point array.")


def check_finite_now(x: PyTree, name: str) -> None:
    """`ValueError` naming `name` if a concrete floating-point leaf of `x` holds NaN/inf
    (traced leaves are skipped: under `jit` the failure is a result code or an error there)."""
    for leaf in jax.tree_util.tree_leaves(eqx.filter(x, eqx.is_inexact_array)):
        if is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")


def top_eigenvalues(operator, k: int, *, key, lanczos_steps: int | None, which: str = "largest"):
    """[`jaxdyn.curvature.top_eigenvalues`][] with at most `lanczos_steps` Lanczos steps, its code
    returned (`throw=False`: the training modules report or ignore Lanczos' convergence
    themselves; the one place they call it)."""
    return _curvature.top_eigenvalues(operator, k, key=key, which=which, n_steps=lanczos_steps,
                                      throw=False)


def all_finite(tree: PyTree) -> Array:
    """Whether every floating-point leaf of `tree` is finite (traceable)."""
    ok = jnp.array(True)
    for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array)):
        ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


# ------------------------------------------------------------------------------------------------
# the map and its Jacobian


class GDJacobian(eqx.Module):
    r"""The Jacobian $DG(\theta) = I - \eta H(\theta)$ of the gradient-descent map, matrix-free.

    - `hessian`: the [`jaxdyn.curvature.hessian_operator`][] at $\theta$ (flat vectors).
    - `lr`: the step size $\eta$.

    `mv(v)` applies $v - \eta H v$ to a flat vector of size `size`; `as_lineax()` returns a
    symmetric `lineax.FunctionLinearOperator`.
    """

    hessian: Any
    lr: Array

    @property
    def size(self) -> int:
        return self.hessian.size

    @property
    def dtype(self):
        return self.hessian.dtype

    def mv(self, v: Array) -> Array:
        """$v - \\eta H v$ for a flat vector `v`."""
        return v - self.lr * self.hessian.mv(v)

    def as_lineax(self):
        """The operator as a symmetric `lineax.FunctionLinearOperator`."""
        import lineax as lx

        struct = jax.ShapeDtypeStruct((self.size,), self.dtype)
        return lx.FunctionLinearOperator(self.mv, struct, lx.symmetric_tag)


class GDMap(eqx.Module):
    r"""The gradient-descent map $G(\theta) = \theta - \eta \nabla L(\theta)$.

    Call it as `G(params, *data)` (any PyTree `params`; only its floating-point arrays move);
    `G.jacobian(params, *data)` is the [`GDJacobian`][] $I - \eta H$. For
    [`jaxdyn.lyapunov.map_spectrum`][] use `lambda x, data: G(x, *data)`.

    Differentiable (forward and reverse, under `jit` and `vmap`) in `params`, the data and
    `lr`. With `throw=True` (default) non-finite `params`/data are a `ValueError` when concrete,
    and a step that produces non-finite parameters is an `eqx.error_if` error under `jit`;
    `throw=False` passes NaN/inf through (check the output yourself).
    """

    loss_fn: Callable
    lr: Array
    throw: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_throw(self.throw)

    def __call__(self, params: PyTree, *data) -> PyTree:
        if self.throw:
            check_finite_now(params, "params")
            check_finite_now(data, "data")
        arrays, loss, static = split_params(self.loss_fn, params)
        grads = jax.grad(loss)(arrays, *data)
        new = jax.tree_util.tree_map(lambda p, g: p - self.lr.astype(p.dtype) * g, arrays, grads)
        if self.throw:
            new = eqx.error_if(new, ~all_finite(new),
                               "`gd_map`: the step produced non-finite parameters (NaN or inf): "
                               "`params`, the data or the gradient at `params` overflowed (or `lr` "
                               "is too large). Pass `throw=False` to return them.")
        return eqx.combine(new, static)

    def jacobian(self, params: PyTree, *data, chunk_size: int | None = None) -> GDJacobian:
        """The Jacobian $I - \\eta H$ at `params` (flat vectors; `chunk_size` as in
        [`jaxdyn.curvature.hessian_operator`][])."""
        arrays, loss, _ = split_params(self.loss_fn, params)
        op = _curvature.hessian_operator(loss, arrays, *data, chunk_size=chunk_size)
        return GDJacobian(op, self.lr)


def gd_map(loss_fn: Callable, lr, *, throw: bool = True) -> GDMap:
    r"""Gradient descent with step `lr` on `loss_fn(params, *data)` as a map.

    **Arguments:**

    - `loss_fn`: the mean loss, `loss_fn(params, *data) -> scalar`.
    - `lr`: the step size $\eta > 0$.
    - `throw`: `True` (default): raise on non-finite input (eagerly) or output (`eqx.error_if`,
      also under `jit`); `False` passes NaN/inf through (a map returns parameters, not a result:
      check them yourself).

    **Returns:** a [`GDMap`][] `G` with `G(params, *data)` $= \theta - \eta\nabla L(\theta)$ and
    `G.jacobian(params, *data)` $= I - \eta H(\theta)$ as a matrix-free operator.

    **Example:**

    ```python
    G = gd_map(lambda w: 0.5 * (w[0] * w[1] - 1.0) ** 2, 0.5)
    w1 = G(jnp.array([2.0, 0.1]))
    J = G.jacobian(jnp.array([2.0, 0.5]))   # J.mv(v) = v - 0.5 H v
    ```
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    check_throw(throw)
    return GDMap(loss_fn, check_lr(lr), throw)


# ------------------------------------------------------------------------------------------------
# linear stability of a critical point


class GDStabilityResult(AbstractResult):
    r"""Linear stability of a critical point under gradient descent (from [`gd_stability`][]).

    - `regime`: `"isolated"` (no Hessian eigenvalue within the rank tolerance of zero) or
      `"manifold"` (zero eigenvalues: directions tangent to a set of minima); a property computed
      from the boolean array `manifold`, so that the result survives `jit`/`vmap`.
    - `spectral_radius`: $\rho = \max |1 - \eta\lambda|$ over the **nonzero** eigenvalues found;
      in the isolated regime this is $\rho(I - \eta H)$, in the manifold regime the radius of $DG$
      on the normal space (on the tangent space $DG$ is the identity).
    - `mu`: $\log\rho$; `stable`: $\mu < 0$.
    - `critical_lr`: $2/\lambda_{\max}$ (`inf` when $\lambda_{\max} \le 0$).
    - `lambda_max`, `lambda_min`: the extreme eigenvalues; `lambda_min_nonzero`: the smallest
      eigenvalue above the zero band; `resolved`: `False` when all `k` smallest eigenvalues are
      in the zero band and no negative one exists (then `mu` is a lower bound of the true value,
      and `stable` is still exact: every nonzero eigenvalue lies in $(0, \lambda_{\max}]$).
    - `eigenvalues_largest`, `eigenvalues_smallest`: the `k` eigenvalues from each end
      (descending), from [`jaxdyn.curvature.top_eigenvalues`][].
    - `zero_tolerance`: the absolute zero band `rank_tol * max|lambda|`.
    - `loss`, `gradient_norm`, `critical`: the loss, $\|\nabla L\|$ and whether it is at most
      `grad_tol` (the analysis assumes a critical point).
    - `lr`: the step size.
    - `result`: a [`jaxdyn._results.RESULTS`][] item: `nonfinite_loss`, `nonfinite_gradient`,
      `nonfinite_curvature` (a NaN/inf eigenvalue: then `mu` etc. are NaN), `not_converged`
      (Lanczos did not meet its tolerance at one end of the spectrum) or `successful`.
    """

    manifold: Array
    spectral_radius: Array
    mu: Array
    stable: Array
    critical_lr: Array
    lambda_max: Array
    lambda_min: Array
    lambda_min_nonzero: Array
    resolved: Array
    eigenvalues_largest: Array
    eigenvalues_smallest: Array
    zero_tolerance: Array
    loss: Array
    gradient_norm: Array
    critical: Array
    lr: Array
    result: RESULTS

    @property
    def regime(self):
        m = np.asarray(self.manifold)
        if m.ndim == 0:
            return "manifold" if bool(m) else "isolated"
        return np.where(m, "manifold", "isolated")

    def summary(self) -> str:
        r"""The regime, $\mu$, stability, $\lambda_{\max}$ against $2/\eta$ and the result code
        (the worst member of a batch, with how many are stable)."""
        mu = np.asarray(self.mu, dtype=float)
        stable = np.asarray(self.stable)
        lam = np.asarray(self.lambda_max, dtype=float)
        lr = np.asarray(self.lr, dtype=float)
        if mu.ndim == 0:
            text = (f"GD stability at step size {float(lr):.6g}: {self.regime} regime, mu = "
                    f"{float(mu):.6g} ({'stable' if bool(stable) else 'unstable'}), lambda_max = "
                    f"{float(lam):.6g}, critical step size 2/lambda_max = "
                    f"{float(np.asarray(self.critical_lr)):.6g}")
        else:
            text = (f"GD stability at {mu.size} points: {int(np.sum(stable))} stable, mu from "
                    f"{np.nanmin(mu):.6g} to {np.nanmax(mu):.6g}")
        ok = np.all(np.asarray(self.successful))
        return text + ("; successful." if ok else "; " + message(self.result))

    def plot(self, ax=None, **kwargs):
        r"""The factors $|1 - \eta\lambda|$ of the eigenvalues found against $\lambda$, with the
        stability bound 1; returns `ax`."""
        from ..plot._training import draw_gd_stability

        return draw_gd_stability(self, ax=ax, **kwargs)


@eqx.filter_jit
def _stability(loss, arrays, data, lr, key, *, k, rank_tol, grad_tol, lanczos_steps, chunk_size):
    value, grads = jax.value_and_grad(loss)(arrays, *data)
    gnorm = jnp.linalg.norm(flatten(grads, name="gradient")[0])
    op = _curvature.hessian_operator(loss, arrays, *data, chunk_size=chunk_size)
    if key is None:
        k_top = k_bot = None
    else:
        k_top, k_bot = jax.random.split(key)
    top = top_eigenvalues(op, k, key=k_top, which="largest", lanczos_steps=lanczos_steps)
    bot = top_eigenvalues(op, k, key=k_bot, which="smallest", lanczos_steps=lanczos_steps)
    lam_top = top.eigenvalues
    lam_bot = bot.eigenvalues
    allv = jnp.concatenate([lam_top, lam_bot])
    lam_max = jnp.max(allv)
    lam_min = jnp.min(allv)
    dtype = allv.dtype
    tiny = jnp.finfo(dtype).tiny
    tol = rank_tol * jnp.maximum(jnp.max(jnp.abs(allv)), tiny)
    zero = jnp.abs(allv) <= tol
    manifold = jnp.any(zero)
    lr = lr.astype(dtype)
    factors = jnp.where(zero, -jnp.inf, jnp.abs(1.0 - lr * allv))
    rho = jnp.max(factors)
    rho = jnp.where(jnp.isfinite(rho), rho, jnp.asarray(0.0, dtype))  # all zero: H = 0
    nonzero_bot = jnp.where(jnp.abs(lam_bot) > tol, lam_bot, jnp.inf)
    lam_min_nz = jnp.min(jnp.where(jnp.abs(allv) > tol, allv, jnp.inf))
    resolved = jnp.any(jnp.isfinite(nonzero_bot)) | (lam_min < -tol)
    critical_lr = jnp.where(lam_max > 0, 2.0 / jnp.where(lam_max > 0, lam_max, 1.0), jnp.inf)
    if grad_tol is None:
        grad_tol = jnp.sqrt(jnp.finfo(dtype).eps)
    mu = jnp.log(rho)
    code = RESULTS.where(
        ~jnp.isfinite(value), RESULTS.nonfinite_loss,
        RESULTS.where(~jnp.isfinite(gnorm), RESULTS.nonfinite_gradient,
                      RESULTS.where(~jnp.all(jnp.isfinite(allv)), RESULTS.nonfinite_curvature,
                                    RESULTS.where(top.converged & bot.converged, RESULTS.successful,
                                                  RESULTS.not_converged))))
    nan = jnp.asarray(jnp.nan, dtype)
    bad = ~jnp.all(jnp.isfinite(allv))
    rho, mu, critical_lr = (jnp.where(bad, nan, x) for x in (rho, mu, critical_lr))
    return GDStabilityResult(
        manifold=manifold, spectral_radius=rho, mu=mu, stable=mu < 0, critical_lr=critical_lr,
        lambda_max=lam_max, lambda_min=lam_min, lambda_min_nonzero=lam_min_nz, resolved=resolved,
        eigenvalues_largest=lam_top, eigenvalues_smallest=lam_bot, zero_tolerance=tol, loss=value,
        gradient_norm=gnorm, critical=gnorm <= grad_tol, lr=lr, result=code,
    )


@renamed_kwargs(num_iters="lanczos_steps")
def gd_stability(loss_fn: Callable, params: PyTree, lr, *data, key: Key | None = None,
                 k: int = 4, rank_tol: float | None = None, grad_tol: float | None = None,
                 lanczos_steps: int | None = None, chunk_size: int | None = None,
                 throw: bool = True) -> GDStabilityResult:
    r"""Linear stability of a critical point $\theta^*$ under gradient descent with step `lr`.

    Gradient descent $G(\theta) = \theta - \eta\nabla L(\theta)$ has the fixed point $\theta^*$
    with Jacobian $DG = I - \eta H$, eigenvalues $1 - \eta\lambda_i$.

    - **Isolated regime** ($H$ nonsingular): $\theta^*$ is linearly stable iff
      $\rho(I - \eta H) < 1$, i.e. $0 < \lambda_{\min}$ and $\lambda_{\max} < 2/\eta$. A saddle
      ($\lambda_{\min} < 0$) has $|1 - \eta\lambda_{\min}| > 1$: unstable for every $\eta > 0$.
    - **Manifold regime** (overparameterised: $\theta^*$ on a manifold of minima): the tangent
      space lies in $\ker H$ where $DG$ is the identity; only the normal space decides, through
      $\mu = \log \max_{\lambda \ne 0} |1 - \eta\lambda|$ (Chemnitz & Engel, arXiv 2407.20209):
      $\mu < 0$ stable, $\mu > 0$ not.

    Because $|1 - \eta\lambda|$ is convex in $\lambda$, its maximum over the nonzero eigenvalues
    is attained at the largest eigenvalue or at the smallest nonzero one, so Lanczos
    ([`jaxdyn.curvature.top_eigenvalues`][]) is run at **both ends** of the spectrum with `k`
    eigenvalues each. **Rank tolerance:** an eigenvalue counts as zero when
    $|\lambda| \le \text{rank\_tol}\cdot\max|\lambda|$ (default `rank_tol` $= 10\sqrt{\epsilon}$
    of the dtype: $1.5\cdot10^{-7}$ in float64, $3.5\cdot10^{-3}$ in float32); the regime is
    `"manifold"` when any of the $2k$ eigenvalues is zero in this sense. Zero eigenvalues in the
    interior of the spectrum of a saddle are not seen, which does not change `stable`.

    **Arguments:**

    - `loss_fn`: the mean loss `loss_fn(params, *data) -> scalar`.
    - `params`: the point (any PyTree; Equinox models included: their floating-point arrays are
      the parameters).
    - `lr`: the step size $\eta > 0$.
    - `*data`: dataset arrays sharing their leading size (passed to `loss_fn`).
    - `key`: start vectors of Lanczos (default: the documented deterministic start of
      [`jaxdyn.curvature.top_eigenvalues`][]).
    - `k`: eigenvalues from each end (capped at the parameter count).
    - `rank_tol`, `grad_tol`: the relative zero band of the spectrum, and the gradient norm up to
      which `params` counts as critical (default $\sqrt{\epsilon}$).
    - `lanczos_steps`: the most Lanczos steps per end of the spectrum (`None`: the default of
      [`jaxdyn.curvature.top_eigenvalues`][]; `num_iters` is its deprecated spelling).
    - `chunk_size`: examples per Hessian-vector product (as in
      [`jaxdyn.curvature.hessian_operator`][]).
    - `throw`: `True` (default): a non-finite loss, gradient or eigenvalue, or Lanczos that did
      not converge, raises `eqx.EquinoxRuntimeError` with the code's message (through
      `eqx.error_if` under `jit`; under `vmap` if any member failed); `False`: the code is
      returned in `.result` (with NaN `mu` for a non-finite eigenvalue).

    **Returns:** a [`GDStabilityResult`][] with `.regime`, `.spectral_radius`, `.mu`, `.stable`,
    `.critical_lr` $= 2/\lambda_{\max}$, the eigenvalues used, the gradient norm and `.result`.

    **Raises:** `ValueError`/`TypeError` naming the argument for bad input, non-finite `params`
    or `data` included when concrete (under `jit` they are a failure code instead).

    **Derivatives:** the eigenvalues (hence `mu`, `lambda_max`, `critical_lr`) are
    differentiable by [`jaxdyn.curvature.top_eigenvalues`][]'s eigenvalue derivative;
    `stable`, `manifold`, `resolved`, `critical` are booleans (no derivative).

    **Example:**

    ```python
    loss = lambda w: 0.5 * (w[0] * w[1] - 1.0) ** 2
    res = gd_stability(loss, jnp.array([2.0, 0.5]), 0.3)
    res.regime, res.mu        # "manifold", log|1 - 0.3 * 4.25|
    ```
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    check_throw(throw)
    lr = check_lr(lr)
    check_params(params)
    check_data(data)
    check_loss(loss_fn, params, data)
    check_finite_now(params, "params")
    check_finite_now(data, "data")
    if key is not None:
        check_key(key)
    arrays, loss, _ = split_params(loss_fn, params)
    size = sum(int(np.prod(jnp.shape(a))) for a in jax.tree_util.tree_leaves(arrays))
    k = min(check_int(k, "k"), size)
    if rank_tol is None:
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(arrays))
        rank_tol = float(10.0 * np.sqrt(np.finfo(dtype).eps))
    elif isinstance(rank_tol, bool) or not isinstance(rank_tol, int | float | np.number) \
            or not (np.isfinite(rank_tol) and 0 <= rank_tol < 1):
        raise ValueError(f"`rank_tol` must be in [0, 1), got {rank_tol}.")
    if grad_tol is not None and (not isinstance(grad_tol, int | float | np.number)
                                 or not np.isfinite(grad_tol) or not grad_tol >= 0):
        raise ValueError(f"`grad_tol` must be a finite number >= 0, got {grad_tol!r}.")
    out = _stability(loss, arrays, data, lr, key, k=k, rank_tol=float(rank_tol),
                     grad_tol=None if grad_tol is None else float(grad_tol), lanczos_steps=lanczos_steps,
                     chunk_size=chunk_size)
    return raise_if_failed(out, out.result, throw,
                           hint="(`gd_stability`: pass `throw=False` to get the result with its code.)")
