r"""Stochastic trace estimation: Hutchinson (on matfree's pieces) and Hutch++.

matfree provides the Rademacher sampler (`matfree.stochtrace.sampler_signs`) and the
quadratic-form integrand (`matfree.stochtrace.monte_carlo_trace`) that Hutchinson's estimator
averages; we apply the probes with `lax.map` (bounded memory, `probe_batch_size` HVPs at once)
and report the sample standard error with Bessel's correction. matfree has no Hutch++ (it has
XTrace), so Hutch++ is implemented here.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from matfree import stochtrace

from .._checks import check_int
from .._types import Array, Key
from ._lanczos import check_key
from ._operators import as_operator, map_batched

_METHODS = ("hutchinson", "hutch++")


class TraceResult(eqx.Module):
    r"""A stochastic trace estimate.

    - `estimate`: the estimate of $\operatorname{tr}(A)$.
    - `stderr`: its standard error (sample standard deviation of the Monte-Carlo part over
      $\sqrt{\text{its probe count}}$).
    - `num_hvp`: operator applications used.
    - `method`: `"hutchinson"` or `"hutch++"`.
    """

    estimate: Array
    stderr: Array
    num_hvp: int = eqx.field(static=True)
    method: str = eqx.field(static=True)


def _apply_many(op, V, batch_size):
    return map_batched(op.mv, V, batch_size)


@eqx.filter_jit
def _hutchinson(op, key, num_probes, dtype, batch_size):
    size = op.size
    sampler = stochtrace.sampler_signs(jnp.zeros((size,), dtype), num=num_probes)
    integrand = stochtrace.monte_carlo_trace()
    V = sampler(key)
    AV = _apply_many(op, V, batch_size)
    vals = jax.vmap(lambda v, av: integrand(lambda _: av, v))(V, AV)
    return jnp.mean(vals), jnp.std(vals, ddof=1) / jnp.sqrt(num_probes)


@eqx.filter_jit
def _hutchpp(op, key, num_probes, dtype, batch_size):
    size = op.size
    s = min(num_probes // 3, size)  # a sketch as large as the space is already exact
    g = num_probes - 2 * s
    k1, k2 = jax.random.split(key)
    S = jax.random.rademacher(k1, (s, size), dtype)
    Y = _apply_many(op, S, batch_size)  # rows: A s_i
    Q, _ = jnp.linalg.qr(Y.T)  # (size, s)
    AQ = _apply_many(op, Q.T, batch_size)
    t_low = jnp.sum(Q.T * AQ)
    G = jax.random.rademacher(k2, (g, size), dtype)
    G = G - (G @ Q) @ Q.T
    AG = _apply_many(op, G, batch_size)
    vals = jnp.sum(G * AG, axis=1)
    return t_low + jnp.mean(vals), jnp.std(vals, ddof=1) / jnp.sqrt(g)


def trace(operator, *, key: Key, num_probes: int = 100, method: str = "hutchinson",
          probe_batch_size: int | None = None) -> TraceResult:
    r"""Stochastic estimate of $\operatorname{tr}(A)$ from matrix-vector products.

    - `"hutchinson"`: $\frac1m\sum_i z_i^\top A z_i$ with Rademacher $z_i$ (unbiased, variance
      $2(\|A\|_F^2 - \sum_i A_{ii}^2)/m$), using matfree's sampler and integrand.
    - `"hutch++"` (Meyer, Musco, Musco, Woodruff 2021): a third of the budget sketches the
      top of the spectrum ($Q = \operatorname{qr}(AS)$), whose trace $\operatorname{tr}(Q^\top
      AQ)$ is taken exactly (another third), and Hutchinson on the deflated
      $(I - QQ^\top)A(I - QQ^\top)$ with the rest: far lower variance when the spectrum decays
      (Hessians of neural networks).

    **Arguments:**

    - `operator`: as in [`top_eigenvalues`][].
    - `key`: a `jax.random` key (required).
    - `num_probes`: the total number of operator applications ($\ge 2$; $\ge 3$ for Hutch++,
      whose sketch takes `min(num_probes // 3, size)` of them twice and the rest go to the
      residual part).
    - `method`: `"hutchinson"` (default) or `"hutch++"`.
    - `probe_batch_size`: apply this many probes at once (`lax.map(..., batch_size=...)`;
      default one at a time, the least memory).

    **Returns:** a [`TraceResult`][] with `.estimate` and `.stderr`.
    """
    op, dtype = as_operator(operator)
    check_key(key)
    num_probes = check_int(num_probes, "num_probes", minimum=2)
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    if probe_batch_size is not None:
        probe_batch_size = check_int(probe_batch_size, "probe_batch_size")
    if method == "hutchinson":
        est, err = _hutchinson(op, key, num_probes, dtype, probe_batch_size)
    else:
        if num_probes < 3:
            raise ValueError(f"`num_probes` must be >= 3 for Hutch++, got {num_probes}.")
        if num_probes - 2 * (num_probes // 3) < 2:
            raise ValueError("`num_probes` leaves fewer than 2 probes for Hutch++'s residual part.")
        est, err = _hutchpp(op, key, num_probes, dtype, probe_batch_size)
    return TraceResult(est, err, num_probes, method)
