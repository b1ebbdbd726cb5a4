"""Accuracy control of flow spectra: step halving and tangent consistency."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._types import Array
from ._engine import qr_positive
from ._systems import AbstractFlowSystem


def consistency_scan(system: AbstractFlowSystem, half_system: AbstractFlowSystem, x: Array,
                     Q: Array, i0, n: int) -> tuple[Array, Array]:
    r"""Over `n` steps from `x` (step index `i0`) with the tangent block `Q`:

    - the tangent consistency, max of
      $\|F_i(x_{i+1}) - F_i(x_i) - DF_i(x_i)(x_{i+1} - x_i)\| / \|DF_i(x_i)(x_{i+1} - x_i)\|$:
      the neighbour is the trajectory one step later, so a jump of the field that the trajectory
      crosses is always between the two points (a random neighbour at a tiny distance would
      straddle it almost never); NaN if a value is non-finite;
    - the paired (local) step-halving change, shape `(k,)`: the mean over the window of
      $\log R_{jj}$ of two half steps minus that of one step, from the same point and tangent
      block, per unit time: the discretisation error of the tangent growth without the noise
      of comparing two trajectories.
    """
    dt = system.dt

    def body(carry, _):
        x, Q, i = carry
        step = lambda z: system.advance(z, i, None)
        x1 = step(x)
        _, lin = jax.jvp(step, (x,), (x1 - x,))
        fd = step(x1) - x1
        scale = jnp.linalg.norm(lin) + jnp.finfo(x.dtype).eps * (1.0 + jnp.linalg.norm(x))
        err = jnp.linalg.norm(fd - lin) / scale
        err = jnp.where(jnp.all(jnp.isfinite(x1)), err, jnp.nan)
        _, QF = system.tangent(x, Q, i, None)
        xh, Qh = half_system.tangent(x, Q, 2 * i, None)
        _, Qh = half_system.tangent(xh, Qh, 2 * i + 1, None)
        QF, rF = qr_positive(QF)
        _, rH = qr_positive(Qh)
        diff = jnp.log(rH) - jnp.log(rF)
        return (x1, QF, i + 1), (err, diff)

    _, (errs, diffs) = lax.scan(body, (x, Q, jnp.asarray(i0, jnp.int32)), None, length=n)
    consistency = jnp.where(jnp.any(jnp.isnan(errs)), jnp.nan, jnp.max(errs))
    return consistency, jnp.mean(diffs, axis=0) / dt


_jit_consistency = eqx.filter_jit(consistency_scan)
