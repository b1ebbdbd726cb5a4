"""Power iteration (a simple alternative to Lanczos) and the sharpness of a loss."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from .._checks import check_finite, check_int
from .._deprecate import renamed_kwargs
from .._results import check_throw, raise_if_failed
from .._types import Array, Key, PyTree
from ._lanczos import (
    AbstractLanczosCriterion,
    EigenResult,
    _check_tol,
    _stop,
    check_key,
    eigenvalues_with_derivative,
    result_code,
    start_vector,
    top_eigenvalues,
)
from ._operators import as_operator, hessian_operator


@eqx.filter_jit
def _power(op, v0, n_steps, tol):
    op_diff, op = op, _stop(op)
    dtype = v0.dtype
    v = v0 / jnp.linalg.norm(v0)
    w = op.mv(v).astype(dtype)
    lam = jnp.vdot(v, w)

    def cond(s):
        i, _, _, _, done = s
        return (i < n_steps) & ~done

    def body(s):
        i, v, w, lam, _ = s
        v_new = w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(dtype).tiny)
        w_new = op.mv(v_new).astype(dtype)
        lam_new = jnp.vdot(v_new, w_new)
        done = jnp.abs(lam_new - lam) <= tol * (jnp.abs(lam) + 1e-6)
        return i + 1, v_new, w_new, lam_new, done

    i, v, w, lam, done = lax.while_loop(cond, body, (jnp.array(1), v, w, lam, jnp.array(False)))
    res = jnp.linalg.norm(w - lam * v)
    vals = eigenvalues_with_derivative(op_diff, lam[None], v[None])
    return EigenResult(vals, v[None], res[None], i, i, done, lam[None], None,
                       result_code(lam[None], done))


@renamed_kwargs(num_iters="n_steps")
def power_iteration(operator, *, key: Key | None = None, n_steps: int = 100,
                    tol: float | None = 1e-3, throw: bool = True) -> EigenResult:
    r"""The dominant eigenvalue by power iteration: $v \leftarrow Av/\|Av\|$, $\lambda = v^\top Av$.

    Converges to the eigenvalue of largest **magnitude** (for a Hessian with a large negative
    eigenvalue that is not $\lambda_{\max}$), at the rate $|\lambda_2/\lambda_1|$ per step:
    usually many more operator applications than [`top_eigenvalues`][] (Lanczos) for the same
    accuracy. Kept as the simple reference method (it is what PyHessian does).

    **Arguments:**

    - `operator`: as in [`top_eigenvalues`][].
    - `key`: start vector (normal draw); `None` gives the documented deterministic start
      `jax.random.normal(jax.random.key(0), (size,))`.
    - `n_steps`: the most operator applications (`num_iters`: its old name, deprecated).
    - `tol`: stop when two successive Rayleigh quotients differ by at most
      `tol * (|lambda| + 1e-6)` (PyHessian's relative criterion); `0` runs all `n_steps`.
    - `throw`: as in [`top_eigenvalues`][]: `True` raises when the Rayleigh quotients did
      not settle within `n_steps` (`RESULTS.not_converged`) or became non-finite
      (`RESULTS.nonfinite_curvature`); `False` returns the result with its code.

    **Returns:** an [`EigenResult`][] with `k = 1`; `.residuals` is the true
    $\|Av - \lambda v\|$, `.num_hvp` the number of operator applications.
    """
    op, dtype = as_operator(operator)
    size = int(op.size)
    n_steps = check_int(n_steps, "n_steps")
    tol = _check_tol(tol, dtype)
    check_throw(throw)
    if key is not None:
        check_key(key)
    v0, _ = start_vector(key, size, dtype)
    out = _power(op, v0, n_steps, tol)
    return raise_if_failed(out, out.result, throw,
                           hint="`power_iteration`: pass `throw=False` to get the estimate "
                                "reached with the code in `.result` (not converged: raise "
                                "`n_steps` or `tol`).")


@renamed_kwargs(num_iters="n_steps")
def sharpness(loss_fn: Callable, params: PyTree, *data: PyTree, key: Key | None = None,
              chunk_size: int | None = None, n_steps: int | None = None,
              tol: float | None = None,
              criterion: AbstractLanczosCriterion | str | None = None,
              throw: bool = True) -> Array:
    r"""The sharpness $S = \lambda_{\max}(\nabla^2 L(\theta))$ of a mean loss over a dataset.

    [`hessian_operator`][] then [`top_eigenvalues`][] with `k = 1` (Lanczos on
    forward-over-reverse HVPs). Gradient descent with step $\eta$ is linearly unstable along
    the top eigenvector when $S > 2/\eta$ (the edge of stability hovers there). Jit-able and
    vmap-able (call it under `jax.jit`/`eqx.filter_jit` with `params` and the data as
    arguments).

    **Derivatives:** forward and reverse mode with respect to `params` and the data, by
    $dS = v^\top (dH) v$ with $v$ the computed top eigenvector (a third derivative of the
    loss, one extra pass; the Lanczos loop is not differentiated). Exact where
    $\lambda_{\max}$ is simple; at a multiple top eigenvalue $S$ is not differentiable and
    the value returned is the derivative along $v$.

    **Arguments:** `loss_fn`, `params`, `*data`, `chunk_size` as in [`hessian_operator`][];
    `key`, `n_steps`, `tol`, `criterion` as in [`top_eigenvalues`][] (`key=None`: the
    deterministic start; `num_iters` is the old name of `n_steps`, deprecated).

    - `throw`: `True` (default) raises `eqx.EquinoxRuntimeError` when the top eigenvalue is
      non-finite (the loss or its Hessian-vector products overflow) or Lanczos did not meet
      `tol` within `n_steps` (`RESULTS.not_converged`), eagerly or through `eqx.error_if`
      under `jit`/`vmap`. `False` returns the value reached whatever happened (`nan` when
      non-finite). The sharpness is a plain scalar, so it carries no code: for the code, call
      [`top_eigenvalues`][] on [`hessian_operator`][] with `throw=False` (the same numbers).

    **Returns:** a scalar array.

    **Raises:** `ValueError` naming `params` or `data` when they hold NaN/inf (checked before
    any compilation when concrete; under `jit`/`vmap` an `eqx.error_if` error with the same
    message): bad input is an error with either `throw`.
    """
    check_throw(throw)
    dynamic, static = eqx.partition(params, eqx.is_inexact_array)
    params = eqx.combine(check_finite(dynamic, "params"), static)
    data = check_finite(data, "data")
    op = hessian_operator(loss_fn, params, *data, chunk_size=chunk_size)
    res = top_eigenvalues(op, 1, key=key, n_steps=n_steps, tol=tol, criterion=criterion,
                          throw=False)
    value = res.eigenvalues[0]
    if not throw:
        return value
    value = eqx.error_if(value, ~jnp.isfinite(value),
                         "`sharpness`: the top Hessian eigenvalue is non-finite (NaN or inf): the "
                         "loss or its Hessian-vector products overflow at these `params`.")
    return raise_if_failed(value, res.result, throw,
                           hint="`sharpness`: raise `n_steps` or `tol`, or pass `throw=False` to "
                                "get the value reached.")
