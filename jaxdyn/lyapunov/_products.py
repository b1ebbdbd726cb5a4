"""Lyapunov exponents of products of i.i.d. random matrices or random linear maps."""

import jax
import jax.numpy as jnp

from .._checkpoint import Checkpoint
from .._checks import check_int
from .._results import check_throw
from ._common import check_k, check_key, check_steps, raise_failed
from ._engine import benettin, init_state, is_traced
from ._result import LyapunovResult
from ._systems import MatrixProductSystem, MatvecProductSystem


def product_spectrum(sample_fn, key, *, dim: int, n_steps: int, k: int | None = None,
                     n_chains: int = 1, renorm_every: int = 1, transient_steps: int = 0,
                     dtype=None, progress: bool = True,
                     checkpoint: Checkpoint | None = None,
                     history_every: int | None = None, throw: bool = True) -> LyapunovResult:
    r"""Lyapunov exponents of $A_n \cdots A_1$ with $A_i$ i.i.d., $\lambda_i = \lim \frac1n \log
    \sigma_i(A_n \cdots A_1)$ (almost surely, by Oseledets).

    **Arguments:**

    - `sample_fn(key)`: one random draw, either a `(dim, dim)` matrix or a function `v -> A v`
      (a matvec, for operators never formed, e.g. $I - \eta H_\xi$ from Hessian-vector
      products). Draw $i$ of a chain uses `jax.random.fold_in(chain_key, i)`.
    - `key`: split into `n_chains` independent chains; with `n_chains > 1` the exponents are the
      chain means and `stderr` their standard errors (std / sqrt(n_chains)).
    - `dim`, `n_steps`, `k`, `renorm_every`, `transient_steps`: as in [`map_spectrum`][].
    - `throw`: raise on a failed run (default), or with `False` return its code in `result`
      (`degenerate_tangent` when a tangent vector collapses to zero, e.g. singular draws;
      `nonfinite_tangent` when the draws are non-finite).

    **Example:** Gaussian $N \times N$ matrices with $N(0, 1)$ entries have
    $\lambda_i = (\ln 2 + \psi((N - i + 1)/2))/2$ (Newman 1986).
    """
    if not callable(sample_fn):
        raise TypeError(f"`sample_fn` must be callable, got {type(sample_fn).__name__}.")
    check_key(key, "key")
    check_throw(throw)
    dim = check_int(dim, "dim")
    n_chains = check_int(n_chains, "n_chains")
    n_steps, renorm_every, transient_steps = check_steps(n_steps, renorm_every, transient_steps)
    k = check_k(k, dim)
    dtype = jnp.result_type(float) if dtype is None else dtype
    try:
        sample = sample_fn(key)
    except Exception as err:  # noqa: BLE001 - re-raised naming the argument
        raise ValueError(f"`sample_fn` failed on a key: {err}") from err
    matvec = callable(sample)  # arrays are not callable
    if matvec:
        out = jax.eval_shape(sample, jax.ShapeDtypeStruct((dim,), dtype))
        shape = out.shape
    else:
        shape = jnp.shape(sample)
        if shape != (dim, dim):
            raise ValueError(f"`sample_fn` must return a ({dim}, {dim}) matrix or a matvec, got "
                             f"shape {shape}.")
    if matvec and shape != (dim,):
        raise ValueError(f"`sample_fn`'s matvec must map shape ({dim},) to ({dim},), got {shape}.")
    # a draw that depends on traced values (e.g. a parameter under jax.grad, closed over by
    # `sample_fn` or by the matvec it returns) makes the run traced
    traced = is_traced(sample) or (matvec and is_traced(sample(jnp.zeros((dim,), dtype))))
    system = (MatvecProductSystem if matvec else MatrixProductSystem)(sample_fn=sample_fn)
    keys = jax.random.split(key, n_chains)
    Q0 = jax.random.normal(jax.random.fold_in(key, -1 % 2**31), (dim, k), dtype)
    states = jax.vmap(lambda kk: init_state(jnp.zeros((1,), dtype), Q0, kk))(keys)
    config = {"kind": "product", "dim": dim, "k": k, "n_chains": n_chains,
              "renorm_every": renorm_every, "transient_steps": transient_steps}
    res = benettin(system, states, transient_steps=transient_steps,
                   n_blocks=n_steps // renorm_every, renorm_every=renorm_every,
                   time_per_step=jnp.asarray(1.0, dtype), progress=progress,
                   checkpoint=checkpoint, config=config, desc="product_spectrum",
                   history_every=history_every, traced=traced)
    return raise_failed(res, throw)
