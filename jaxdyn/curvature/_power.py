"""Power iteration (a simple alternative to Lanczos) and the sharpness of a loss."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from .._checks import check_finite, check_int
from .._types import Array, Key, PyTree
from ._lanczos import (
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
def _power(op, v0, num_iters, tol):
    op_diff, op = op, _stop(op)
    dtype = v0.dtype
    v = v0 / jnp.linalg.norm(v0)
    w = op.mv(v).astype(dtype)
    lam = jnp.vdot(v, w)

    def cond(s):
        i, _, _, _, done = s
        return (i < num_iters) & ~done

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


def power_iteration(operator, *, key: Key | None = None, num_iters: int = 100,
                    tol: float | None = 1e-3) -> EigenResult:
    r"""The dominant eigenvalue by power iteration: $v \leftarrow Av/\|Av\|$, $\lambda = v^\top Av$.

    Converges to the eigenvalue of largest **magnitude** (for a Hessian with a large negative
    eigenvalue that is not $\lambda_{\max}$), at the rate $|\lambda_2/\lambda_1|$ per step:
    usually many more operator applications than [`top_eigenvalues`][] (Lanczos) for the same
    accuracy. Kept as the simple reference method (it is what PyHessian does).

    **Arguments:**

    - `operator`: as in [`top_eigenvalues`][].
    - `key`: start vector (normal draw); `None` gives the documented deterministic start
      `jax.random.normal(jax.random.key(0), (size,))`.
    - `num_iters`: the most operator applications.
    - `tol`: stop when two successive Rayleigh quotients differ by at most
      `tol * (|lambda| + 1e-6)` (PyHessian's relative criterion); `0` runs all `num_iters`.

    **Returns:** an [`EigenResult`][] with `k = 1`; `.residuals` is the true
    $\|Av - \lambda v\|$, `.num_hvp` the number of operator applications.
    """
    op, dtype = as_operator(operator)
    size = int(op.size)
    num_iters = check_int(num_iters, "num_iters")
    tol = _check_tol(tol, dtype)
    if key is not None:
        check_key(key)
    v0, _ = start_vector(key, size, dtype)
    return _power(op, v0, num_iters, tol)


def sharpness(loss_fn: Callable, params: PyTree, *data: PyTree, key: Key | None = None,
              chunk_size: int | None = None, num_iters: int | None = None,
              tol: float | None = None, criterion: str = "residual") -> Array:
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
    `key`, `num_iters`, `tol`, `criterion` as in [`top_eigenvalues`][] (`key=None`: the
    deterministic start).

    **Returns:** a scalar array.

    **Raises:** `ValueError` naming `params` or `data` when they hold NaN/inf (checked before
    any compilation when concrete); under `jit`/`vmap` an `eqx.error_if` error with the same
    message, and one saying that the sharpness is non-finite if the Hessian-vector products
    overflow. (Use [`top_eigenvalues`][] on [`hessian_operator`][] for a result code instead.)
    """
    dynamic, static = eqx.partition(params, eqx.is_inexact_array)
    params = eqx.combine(check_finite(dynamic, "params"), static)
    data = check_finite(data, "data")
    op = hessian_operator(loss_fn, params, *data, chunk_size=chunk_size)
    value = top_eigenvalues(op, 1, key=key, num_iters=num_iters, tol=tol,
                            criterion=criterion).eigenvalues[0]
    return eqx.error_if(value, ~jnp.isfinite(value),
                        "`sharpness`: the top Hessian eigenvalue is non-finite (NaN or inf): the "
                        "loss or its Hessian-vector products overflow at these `params`.")
