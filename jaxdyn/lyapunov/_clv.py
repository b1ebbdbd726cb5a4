"""Covariant Lyapunov vectors by Ginelli's algorithm, for maps and flows."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_int
from .._results import RESULTS, AbstractResult, check_throw, message
from .._types import Array
from ._common import (
    check_args,
    check_dt,
    check_k,
    check_output,
    flatten_state,
    initial_tangents,
    raise_failed,
)
from ._engine import qr_positive
from ._systems import FlowRK4, MapSystem


class CLVResult(AbstractResult):
    """Covariant Lyapunov vectors along a trajectory.

    - `vectors`: shape `(n_steps, n, k)`, unit columns, column $j$ spanning the $j$-th Oseledets
      direction at each stored step (covariant: $D F\\, v_j(x_i) \\parallel v_j(x_{i+1})$).
    - `states`: the base points, shape `(n_steps, n)`.
    - `exponents`: the exponents from the forward QR pass (descending), `times` per step.
    - `angles`: the minimal angle between $v_1$ and the span of the others at each step
      (near-tangencies are what makes a system non-hyperbolic).
    - `result`: a [`jaxdyn.RESULTS`][] item (`nonfinite_state` when a state became non-finite,
      `nonfinite_tangent` when only a vector did; the exponents are then NaN); `failed_step`:
      the first kept step with a non-finite value (0 when the run failed in the transient; -1
      if none).
    """

    vectors: Array
    states: Array
    exponents: Array
    angles: Array
    result: RESULTS
    failed_step: Array

    def summary(self) -> str:
        """The exponents of the forward pass, the angles between $v_1$ and the other vectors,
        and the result code."""
        n, dim, k = np.shape(self.vectors)
        angles = np.asarray(self.angles, dtype=float)
        lines = [f"Covariant Lyapunov vectors: {k} of dimension {dim} at {n} steps",
                 "exponents (forward QR): "
                 + ", ".join(f"{v:.6g}" for v in np.asarray(self.exponents, dtype=float))]
        if k > 1:
            lines.append(f"angle between v_1 and the others: min {np.nanmin(angles):.4g} rad, "
                         f"median {np.nanmedian(angles):.4g} rad")
        lines.append(f"result: {message(self.result)}; failed_step: {int(self.failed_step)}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The minimal angle between $v_1$ and the span of the other vectors along the
        trajectory (near-tangencies dip towards 0); see [`jaxdyn.plot.plot_clv_angles`][]."""
        from ..plot._lyapunov import plot_clv_angles

        return plot_clv_angles(self, ax=ax, **kwargs)


def _ginelli(step_tangent, x0, Q0, *, n_transient, n_keep, n_backward, time_per_step):
    # forward: transient (QR only), then store Q and R over n_keep + n_backward steps
    def fwd(carry, i):
        x, Q = carry
        x1, Q1 = step_tangent(x, Q, i)
        Qn, _ = qr_positive(Q1)
        r = jnp.linalg.qr(Q1, mode="r")
        s = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0)
        R = r * s[:, None]
        return (x1, Qn), (x, Q, R)

    (x, Q), _ = lax.scan(fwd, (x0, Q0), jnp.arange(n_transient))
    (_, _), (xs, Qs, Rs) = lax.scan(fwd, (x, Q), jnp.arange(n_transient,
                                                              n_transient + n_keep + n_backward))
    k = Q0.shape[1]
    logs = jnp.log(jnp.abs(jnp.diagonal(Rs[:n_keep], axis1=1, axis2=2)))
    exponents = jnp.sum(logs, axis=0) / (n_keep * time_per_step)

    # backward: C_i = R_i^{-1} C_{i+1}, columns normalised (upper triangular throughout)
    def bwd(C, R):
        C_prev = jax.scipy.linalg.solve_triangular(R, C, lower=False)
        C_prev = C_prev / jnp.linalg.norm(C_prev, axis=0, keepdims=True)
        return C_prev, C_prev

    C_end = jnp.triu(jnp.ones((k, k), Q0.dtype))
    C_end = C_end / jnp.linalg.norm(C_end, axis=0, keepdims=True)
    C, _ = lax.scan(bwd, C_end, Rs[n_keep:], reverse=True)
    _, Cs = lax.scan(bwd, C, Rs[:n_keep], reverse=True)
    # (Q_i C_i) spans the CLVs at the *start* of step i, i.e. at x_i
    V = jnp.einsum("tnk,tkj->tnj", Qs[:n_keep], Cs)
    V = V / jnp.linalg.norm(V, axis=1, keepdims=True)
    state_ok = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(xs))
    return V, xs[:n_keep], exponents, state_ok


@eqx.filter_jit
def _run(system, x, Q, *, n_transient, n_keep, n_backward, time_per_step):
    step = lambda xx, QQ, i: system.tangent(xx, QQ, i, None)
    return _ginelli(step, x, Q, n_transient=n_transient, n_keep=n_keep, n_backward=n_backward,
                    time_per_step=time_per_step)


def _min_angles(V):
    if V.shape[-1] < 2:
        return jnp.full(V.shape[0], jnp.pi / 2, V.dtype)

    def one(Vi):
        v1, rest = Vi[:, 0], Vi[:, 1:]
        q, _ = jnp.linalg.qr(rest)
        proj = jnp.linalg.norm(q.T @ v1)
        return jnp.arccos(jnp.clip(proj, -1.0, 1.0))

    return jax.vmap(one)(V)


def covariant_lyapunov_vectors(fn, x0, *, n_steps: int, dt=None, k: int | None = None,
                               args=None, transient_steps: int = 1000,
                               backward_steps: int = 1000, key=None,
                               throw: bool = True) -> CLVResult:
    r"""Covariant Lyapunov vectors (Ginelli et al. 2007) of a map or a flow.

    Forward: Benettin QR after every step, storing $Q_i$ and $R_i$ (after `transient_steps`
    steps that align the Gram-Schmidt vectors). Backward: from a generic upper-triangular $C$,
    $C_i = R_i^{-1} C_{i+1}$ with normalised columns, run first over `backward_steps` extra steps
    (to converge onto the covariant subspaces), then over the `n_steps` kept steps; the CLVs are
    $V_i = Q_i C_i$.

    **Arguments:**

    - `fn`: a map `F(x, args)` (when `dt is None`) or a field `f(t, y, args)` (with `dt`:
      fixed-step RK4, as in [`flow_spectrum`][]).
    - `x0`: the initial state; `k`: how many vectors (default all).
    - `throw`: raise when a state or vector became non-finite (default), or with `False`
      return the code in `result` (NaN exponents, `failed_step`).

    **Returns:** a [`CLVResult`][].
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    check_throw(throw)
    n_steps = check_int(n_steps, "n_steps")
    transient_steps = check_int(transient_steps, "transient_steps", minimum=0)
    backward_steps = check_int(backward_steps, "backward_steps")
    args = check_args(args)
    x, unravel = flatten_state(x0, "x0")
    dim = x.shape[0]
    k = check_k(k, dim)
    if dt is None:
        system = MapSystem(map_fn=fn, args=args, unravel=unravel)
        check_output(lambda y: system.advance(y, 0, None), "fn", (dim,), x)
        tps = jnp.asarray(1.0, x.dtype)
    else:
        if isinstance(fn, diffrax.AbstractTerm):
            raise TypeError("`fn`: covariant vectors of diffrax terms are not supported; pass f.")
        dt = check_dt(dt)
        tps = jnp.asarray(dt, x.dtype)
        system = FlowRK4(field=fn, args=args, dt=tps, t0=jnp.asarray(0.0, x.dtype), unravel=unravel)
        check_output(lambda y: system.vector_field(0.0, y), "fn", (dim,), x)
    Q0, _ = qr_positive(initial_tangents(dim, k, key, x.dtype))
    V, xs, exps, state_ok = _run(system, x, Q0, n_transient=transient_steps, n_keep=n_steps,
                                 n_backward=backward_steps, time_per_step=tps)
    bad = ~(jnp.all(jnp.isfinite(V), axis=(1, 2)) & jnp.all(jnp.isfinite(xs), axis=1))
    failed = jnp.any(bad) | ~jnp.all(jnp.isfinite(exps)) | ~state_ok
    result = RESULTS.where(~state_ok, RESULTS.nonfinite_state,
                           RESULTS.where(failed, RESULTS.nonfinite_tangent, RESULTS.successful))
    failed_step = jnp.where(jnp.any(bad), jnp.argmax(bad), jnp.where(failed, 0, -1))
    res = CLVResult(vectors=V, states=xs, exponents=jnp.where(failed, jnp.nan, exps),
                    angles=_min_angles(V), result=result, failed_step=failed_step)
    return raise_failed(res, throw)
