"""Finite-time Lyapunov exponents on grids of initial conditions."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
from jax import lax

from .._checks import check_finite, check_int, check_positive
from .._types import Array
from ._common import check_args, check_dt, check_output
from ._result import RESULTS


class FTLEField(eqx.Module):
    """Finite-time exponents at each point: `exponents` shape `(..., n)` descending,
    `ftle` = the largest, `final_points` = $\\phi_T(x)$; `result` (shape `(...)`) a
    [`RESULTS`][jaxdyn.lyapunov.RESULTS] code per point: `diverged` where the trajectory or its
    Jacobian became non-finite (the exponents there are NaN)."""

    points: Array
    exponents: Array
    final_points: Array
    duration: Array
    result: Array | None = None

    @property
    def ftle(self) -> Array:
        return self.exponents[..., 0]

    def plot(self, ax=None, **kwargs):
        from ..plot import plot_ftle_field

        return plot_ftle_field(self, ax=ax, **kwargs)


def _rk4_flow(field, args, dt, n_steps, t0):
    def step(carry, i):
        y = carry
        t = t0 + i * dt
        k1 = field(t, y, args)
        k2 = field(t + dt / 2, y + dt / 2 * k1, args)
        k3 = field(t + dt / 2, y + dt / 2 * k2, args)
        k4 = field(t + dt, y + dt * k3, args)
        return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    return lambda y0: lax.scan(step, y0, jnp.arange(n_steps))[0]


@eqx.filter_jit
def _ftle_points(field, args, dt, t0, t1, n_steps: int, flat):
    # module-level: a new call with the same `field` object (and shapes) reuses the compilation
    flow = _rk4_flow(field, args, dt, n_steps, t0)

    def one(y0):
        J = jax.jacfwd(flow)(y0)
        s = jnp.linalg.svd(J, compute_uv=False)
        return jnp.log(s) / t1, flow(y0)

    return jax.vmap(one)(flat)


def ftle_field(field, points, *, t1, dt, args=None, t0=0.0) -> FTLEField:
    r"""Finite-time Lyapunov exponents $\frac{1}{T}\log\sigma_i(D\phi_T(x))$ at many points.

    The flow map $\phi_T$ of `field(t, y, args)` (fixed-step RK4 with `dt`, $T$ = `t1`) is
    differentiated in forward mode (`jax.jacfwd`, $n$ tangents) and its singular values give all
    $n$ exponents; the points (shape `(..., n)`, e.g. a meshgrid stacked on the last axis) are
    vmapped. For a trained neural ODE pass its field (`model.field`) and lifted points.
    """
    if not callable(field):
        raise TypeError(f"`field` must be a callable f(t, y, args), got {type(field).__name__}.")
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
    exps, finals = _ftle_points(field, args, jnp.asarray(dt, points.dtype),
                                jnp.asarray(t0, points.dtype), jnp.asarray(t1, points.dtype),
                                n_steps, flat)
    exps = exps.reshape(*points.shape[:-1], n)
    finals = finals.reshape(points.shape)
    bad = ~(jnp.all(jnp.isfinite(exps), axis=-1) & jnp.all(jnp.isfinite(finals), axis=-1))
    return FTLEField(points=points, exponents=jnp.where(bad[..., None], jnp.nan, exps),
                     final_points=finals, duration=jnp.asarray(t1, points.dtype),
                     result=jnp.where(bad, RESULTS.diverged, RESULTS.successful))
