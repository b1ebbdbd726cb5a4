"""Finite-time Lyapunov exponents on grids of initial conditions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_int, check_positive
from .._kernels import RK4, rk_map
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array
from ..distributed._mesh import check_placement, gather as gather_tree, map_batches
from ._common import check_args, check_dt, check_output, elementwise_code, raise_failed


class FTLEResult(AbstractResult):
    """Finite-time exponents at each point: `exponents` shape `(..., n)` descending,
    `ftle` = the largest, `final_points` = $\\phi_T(x)$; `result` (shape `(...)`) a
    [`jaxdyn.RESULTS`][] item per point: `nonfinite_state` where the trajectory became non-finite,
    `nonfinite_tangent` where only its Jacobian did (the exponents there are NaN)."""

    points: Array
    exponents: Array
    final_points: Array
    duration: Array
    result: RESULTS

    @property
    def ftle(self) -> Array:
        return self.exponents[..., 0]

    def summary(self) -> str:
        """How many points, the range of the largest exponent, and the result codes."""
        ftle = np.asarray(self.ftle, dtype=float)
        lines = [f"Finite-time Lyapunov exponents at {ftle.size} points over T = "
                 f"{float(np.asarray(self.duration)):g} (dimension {np.shape(self.points)[-1]})"]
        if np.any(np.isfinite(ftle)):
            lines.append(f"largest exponent: max {np.nanmax(ftle):.6g}, mean {np.nanmean(ftle):.6g}, "
                         f"min {np.nanmin(ftle):.6g}")
        lines.append(f"result: {message(self.result)}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The largest exponent over a 2-D grid of points; see [`jaxdyn.plot.plot_ftle_field`][]."""
        from ..plot._lyapunov import plot_ftle_field

        return plot_ftle_field(self, ax=ax, **kwargs)


@eqx.filter_jit
def _ftle_points(field, args, flat, *, dt, t0, t1, n_steps: int):
    # module-level: a new call with the same `field` object (and shapes) reuses the compilation
    flow = lambda y0: rk_map(lambda t, y: field(t, y, args), t0, y0, dt, n_steps, RK4)

    def one(y0):
        J = jax.jacfwd(flow)(y0)
        s = jnp.linalg.svd(J, compute_uv=False)
        return jnp.log(s) / t1, flow(y0)

    return jax.vmap(one)(flat)


class _FTLEPoint(eqx.Module):
    """The exponents and the end point from one start (what a sharded `ftle_field` maps)."""

    field: object
    args: object
    dt: Array
    t0: Array
    t1: Array
    n_steps: int = eqx.field(static=True)

    def __call__(self, y0):
        flow = lambda y: rk_map(lambda t, u: self.field(t, u, self.args), self.t0, y, self.dt,  # noqa: E731
                                self.n_steps, RK4)
        J = jax.jacfwd(flow)(y0)
        s = jnp.linalg.svd(J, compute_uv=False)
        return jnp.log(s) / self.t1, flow(y0)


def ftle_field(field, points, *, t1, dt, args=None, t0=0.0, mesh=None, devices=None, gather: bool = True,
               throw: bool = True) -> FTLEResult:
    r"""Finite-time Lyapunov exponents $\frac{1}{T}\log\sigma_i(D\phi_T(x))$ at many points.

    The flow map $\phi_T$ of `field(t, y, args)` (fixed-step RK4 with `dt`, $T$ = `t1`) is
    differentiated in forward mode (`jax.jacfwd`, $n$ tangents) and its singular values give all
    $n$ exponents; the points (shape `(..., n)`, e.g. a meshgrid stacked on the last axis) are
    vmapped. For a trained neural ODE pass its field (`model.field`) and lifted points.

    `throw`: raise if the trajectory or its Jacobian became non-finite at any point (default),
    or with `False` return a code per point in `result` (NaN exponents there).

    **Across devices and processes:** `mesh` (a `jax.sharding.Mesh`, e.g.
    [`jaxdyn.distributed.global_mesh`][]) or `devices` (one process's devices) splits the points
    (flattened batch axes) over the devices with [`jaxdyn.distributed.map_batches`][]; with
    several processes and neither, over every device of every process. The numbers equal the
    unsharded ones (each device runs the same single-device program). `gather`: every process
    gets the whole field (default), or with `False` global arrays whose shards stay where they
    were computed.

    **Returns:** an [`FTLEResult`][].
    """
    if not callable(field):
        raise TypeError(f"`field` must be a callable f(t, y, args), got {type(field).__name__}.")
    check_throw(throw)
    points = jnp.asarray(points)
    if not jnp.issubdtype(points.dtype, jnp.inexact):
        points = points.astype(jnp.result_type(float))
    if points.ndim < 1 or points.shape[-1] == 0 or points.size == 0:
        raise ValueError(f"`points` must have shape (..., n) with n >= 1, got {points.shape}.")
    points = check_finite(points, "points")
    args = check_args(args)
    check_positive(t1, "t1")
    dt = check_dt(dt)
    n_steps = int(round(float(t1) / float(dt)))
    n_steps = check_int(n_steps, "t1 / dt")
    if abs(n_steps * float(dt) - float(t1)) > 1e-9 * max(1.0, abs(float(t1))):
        raise ValueError(f"`t1` ({t1}) must be a multiple of `dt` ({dt}).")
    n = points.shape[-1]
    check_output(lambda y: field(jnp.asarray(t0, points.dtype), y, args), "field", (n,),
                 points.reshape(-1, n)[0])
    flat = points.reshape(-1, n)
    if check_placement(mesh, devices, gather, inputs=(points, args, t0, dt, t1)):
        one = _FTLEPoint(field, args, jnp.asarray(dt, points.dtype), jnp.asarray(t0, points.dtype),
                         jnp.asarray(t1, points.dtype), n_steps)
        exps, finals = map_batches(one, flat, mesh=mesh, devices=devices, shard=True, gather_output=gather)
    else:
        exps, finals = _ftle_points(field, args, flat, dt=jnp.asarray(dt, points.dtype),
                                    t0=jnp.asarray(t0, points.dtype), t1=jnp.asarray(t1, points.dtype),
                                    n_steps=n_steps)
    exps = exps.reshape(*points.shape[:-1], n)
    finals = finals.reshape(points.shape)
    bad_state = ~jnp.all(jnp.isfinite(finals), axis=-1)
    bad = ~jnp.all(jnp.isfinite(exps), axis=-1) | bad_state
    result = elementwise_code(
        lambda s, b: RESULTS.where(s, RESULTS.nonfinite_state,
                                   RESULTS.where(b, RESULTS.nonfinite_tangent, RESULTS.successful)),
        bad_state, bad)
    res = FTLEResult(points=points, exponents=jnp.where(bad[..., None], jnp.nan, exps),
                     final_points=finals, duration=jnp.asarray(t1, points.dtype), result=result)
    if not gather:  # the codes of every process, for the failure policy only
        return raise_if_failed(res, gather_tree(res.result), throw,
                               hint="(pass `throw=False` to get the exponents with a code per point)")
    return raise_failed(res, throw, "the exponents with a code per point")
