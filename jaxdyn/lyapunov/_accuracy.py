"""Accuracy control of flow spectra: step halving and tangent consistency."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._types import Array


def consistency_scan(system, x: Array, i0, n: int) -> Array:
    r"""Max over `n` steps from `x` (step index `i0`) of
    $\|F_i(x_{i+1}) - F_i(x_i) - DF_i(x_i)(x_{i+1} - x_i)\| / \|DF_i(x_i)(x_{i+1} - x_i)\|$:
    the neighbour is the trajectory one step later, so a jump of the field that the trajectory
    crosses is always between the two points (a random neighbour at a tiny distance would straddle
    it almost never). NaN if a value is non-finite."""

    def body(carry, _):
        x, i = carry
        step = lambda z: system.advance(z, i, None)
        x1 = step(x)
        _, lin = jax.jvp(step, (x,), (x1 - x,))
        fd = step(x1) - x1
        scale = jnp.linalg.norm(lin) + jnp.finfo(x.dtype).eps * (1.0 + jnp.linalg.norm(x))
        err = jnp.linalg.norm(fd - lin) / scale
        err = jnp.where(jnp.all(jnp.isfinite(x1)), err, jnp.nan)
        return (x1, i + 1), err

    _, errs = lax.scan(body, (x, jnp.asarray(i0, jnp.int32)), None, length=n)
    return jnp.where(jnp.any(jnp.isnan(errs)), jnp.nan, jnp.max(errs))


_jit_consistency = eqx.filter_jit(consistency_scan)
