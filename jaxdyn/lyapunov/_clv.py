"""Covariant Lyapunov vectors by Ginelli's algorithm, for maps and flows."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._checks import check_int
from .._types import Array
from ._common import check_args, check_dt, check_k, check_output, flatten_state, initial_tangents
from ._engine import qr_positive
from ._result import RESULTS
from ._systems import FlowRK4, MapSystem


class CLVResult(eqx.Module):
    """Covariant Lyapunov vectors along a trajectory.

    - `vectors`: shape `(n_steps, n, k)`, unit columns, column $j$ spanning the $j$-th Oseledets
      direction at each stored step (covariant: $D F\\, v_j(x_i) \\parallel v_j(x_{i+1})$).
    - `states`: the base points, shape `(n_steps, n)`.
    - `exponents`: the exponents from the forward QR pass (descending), `times` per step.
    - `angles`: the minimal angle between $v_1$ and the span of the others at each step
      (near-tangencies are what makes a system non-hyperbolic).
    - `result`: a [`RESULTS`][jaxdyn.lyapunov.RESULTS] code (`diverged` when a state or vector
      became non-finite, the exponents are then NaN); `failed_step`: the first kept step with a
      non-finite value (0 when the run failed in the transient; -1 if none).
    """

    vectors: Array
    states: Array
    exponents: Array
    angles: Array
    result: Array | None = None
    failed_step: Array | None = None


def _ginelli(step_tangent, x0, Q0, n_transient, n_keep, n_backward, time_per_step):
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
    return V, xs[:n_keep], exponents


@eqx.filter_jit
def _run(system, x, Q, n_transient, n_keep, n_backward, tps):
    step = lambda xx, QQ, i: system.tangent(xx, QQ, i, None)
    return _ginelli(step, x, Q, n_transient, n_keep, n_backward, tps)


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
                               backward_steps: int = 1000, key=None) -> CLVResult:
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
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    n_steps = check_int(n_steps, "n_steps")
    transient_steps = check_int(transient_steps, "transient_steps", minimum=0)
    backward_steps = check_int(backward_steps, "backward_steps")
    args = check_args(args)
    x, unravel = flatten_state(x0, "x0")
    dim = x.shape[0]
    k = check_k(k, dim)
    if dt is None:
        system = MapSystem(fn, args, None, unravel)
        check_output(lambda y: system._step(y, 0), "fn", (dim,), x)
        tps = jnp.asarray(1.0, x.dtype)
    else:
        if isinstance(fn, diffrax.AbstractTerm):
            raise TypeError("`fn`: covariant vectors of diffrax terms are not supported; pass f.")
        dt = check_dt(dt)
        tps = jnp.asarray(dt, x.dtype)
        system = FlowRK4(fn, args, tps, jnp.asarray(0.0, x.dtype), unravel)
        check_output(lambda y: system._f(0.0, y), "fn", (dim,), x)
    Q0, _ = qr_positive(initial_tangents(dim, k, key, x.dtype))
    V, xs, exps = _run(system, x, Q0, transient_steps, n_steps, backward_steps, tps)
    bad = ~(jnp.all(jnp.isfinite(V), axis=(1, 2)) & jnp.all(jnp.isfinite(xs), axis=1))
    failed = jnp.any(bad) | ~jnp.all(jnp.isfinite(exps))
    result = jnp.where(failed, RESULTS.diverged, RESULTS.successful)
    failed_step = jnp.where(jnp.any(bad), jnp.argmax(bad), jnp.where(failed, 0, -1))
    return CLVResult(vectors=V, states=xs, exponents=jnp.where(failed, jnp.nan, exps),
                     angles=_min_angles(V), result=result, failed_step=failed_step)
