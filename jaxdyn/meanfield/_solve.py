"""The one diffrax integration behind [`simulate`][], [`ott_antonsen`][] and [`vlasov`][]: diffrax's
result codes mapped onto [`jaxdyn.RESULTS`][], the step and time of a failure, and the failure policy."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, is_concrete
from .._results import RESULTS, is_successful, raise_if_failed

_BLOWUP = 1e8  # a collapsed step with |y| above this (times max(1, |y0|)) is a finite-time blow-up
_DTMIN = 1e-12  # the smallest adaptive step, relative to t1 - t0 (below it: a singularity, not a solve)


class Settings(eqx.Module):
    """The settings of one solve (a config module: no positional chains through the integrator)."""

    solver: diffrax.AbstractSolver
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = None
    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = 1_000_000
    adaptive: bool = True
    sde: bool = False
    progress: bool = False


def check_ts(ts):
    """Save times: a finite, strictly increasing vector of >= 2 times (`ValueError` naming `ts`)."""
    ts = jnp.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be a vector of >= 2 save times, got shape {ts.shape}.")
    ts = check_finite(ts, "ts")
    if is_concrete(ts) and not bool(np.all(np.diff(np.asarray(ts)) > 0)):
        raise ValueError(f"`ts` must be strictly increasing (t1 > t0), got {np.asarray(ts)[:4]}"
                         f"{' ...' if ts.shape[0] > 4 else ''}.")
    return ts


def check_adjoint(adjoint) -> diffrax.AbstractAdjoint:
    """The default (checkpointed) adjoint, or a `TypeError` naming `adjoint`."""
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(f"`adjoint` must be a diffrax adjoint (e.g. diffrax.ForwardMode()), got "
                        f"{type(adjoint).__name__}.")
    return adjoint


def _blew_up(t, y, args, **kwargs):
    """The event that stops a solve at the first non-finite state (checked after every accepted step)."""
    return jnp.logical_not(jnp.all(jnp.isfinite(y)))


def _code(sol, y0):
    """diffrax's result mapped onto ours, and max |y| where the solve stopped."""
    dr = diffrax.RESULTS
    code = sol.result
    size_end = jnp.max(jnp.abs(sol.ys[1][0]))
    blowup = size_end > _BLOWUP * jnp.maximum(1.0, jnp.max(jnp.abs(y0)))
    result = RESULTS.where(code == dr.successful, RESULTS.successful, RESULTS.not_converged)
    result = RESULTS.where(code == dr.event_occurred, RESULTS.nonfinite_state, result)
    result = RESULTS.where(code == dr.dt_min_reached,
                           RESULTS.where(blowup, RESULTS.finite_time_blowup, RESULTS.step_size_too_small),
                           result)
    result = RESULTS.where(code == dr.max_steps_reached, RESULTS.max_steps_reached, result)
    return result, size_end


def _unreached(saved_ts, tree):
    """The leaves of `tree` (leading axis: the save times `saved_ts`) with NaN where the time was never
    reached (diffrax marks those times inf)."""

    def mask(leaf):
        flag = jnp.isinf(saved_ts).reshape(saved_ts.shape + (1,) * (leaf.ndim - 1))
        return jnp.where(flag, jnp.asarray(jnp.nan, leaf.dtype), leaf)

    return jax.tree_util.tree_map(mask, tree)


@eqx.filter_jit
def integrate(field, y0, ts, *, args, key, settings: Settings, observe=None, snapshots=None):
    """Solve `field` from `y0` and save at `ts`: `(ys, result, failed_step, failed_time, stats)`.

    Save times after a failure hold NaN. An SDE (`settings.sde`) adds the diffusion `field.diffusion`
    driven by a virtual Brownian tree of `key`.

    With `observe` (a callable `(t, y, args) -> PyTree`), `observe` is evaluated at `ts` instead of
    saving the state, and the states are saved at `snapshots` only (a vector of times, possibly empty):
    the return is `(ys at snapshots, result, failed_step, failed_time, stats, observed)`; the memory is
    that of a few states whatever `len(ts)`."""
    drift = diffrax.ODETerm(field)
    if settings.sde:
        bm = diffrax.VirtualBrownianTree(ts[0], ts[-1], tol=settings.dt0 / 4, shape=y0.shape, key=key)
        terms = diffrax.MultiTerm(drift, diffrax.ControlTerm(field.diffusion, bm))
    else:
        terms = drift
    if settings.adaptive:
        controller = diffrax.PIDController(rtol=settings.rtol, atol=settings.atol,
                                           dtmin=_DTMIN * (ts[-1] - ts[0]), force_dtmin=False)
    else:
        controller = diffrax.ConstantStepSize()
    meter = diffrax.TqdmProgressMeter() if settings.progress else diffrax.NoProgressMeter()
    subs = [diffrax.SubSaveAt(ts=ts, fn=_save_fn(observe)), diffrax.SubSaveAt(t1=True)]
    if observe is not None and snapshots is not None and snapshots.shape[0]:
        subs.append(diffrax.SubSaveAt(ts=snapshots))
    saveat = diffrax.SaveAt(subs=subs)
    sol = diffrax.diffeqsolve(terms, settings.solver, ts[0], ts[-1], settings.dt0, y0, args=args,
                              saveat=saveat, stepsize_controller=controller, max_steps=settings.max_steps,
                              progress_meter=meter, adjoint=settings.adjoint, event=diffrax.Event(_blew_up),
                              throw=False)
    result, size_end = _code(sol, y0)
    failed = jnp.logical_not(is_successful(result))
    first = _unreached(sol.ts[0], sol.ys[0])
    failed_time = jnp.where(failed, sol.ts[1][0], jnp.nan).astype(ts.dtype)
    failed_step = jnp.where(failed, sol.stats["num_accepted_steps"], -1).astype(jnp.int32)
    stats = dict(sol.stats, max_abs_y_end=size_end)
    if observe is None:
        return first, result, failed_step, failed_time, stats
    if snapshots is not None and snapshots.shape[0]:
        ys = _unreached(sol.ts[2], sol.ys[2])
    else:
        ys = jnp.zeros((0,) + y0.shape, y0.dtype)
    return ys, result, failed_step, failed_time, stats, first


def _save_fn(observe):
    """diffrax's `SubSaveAt.fn`: the state itself, or the observables."""
    if observe is None:
        return lambda t, y, args: y
    return observe


def finish(out, throw: bool, *, name: str, keep: str, advice: str = ""):
    """The failure policy at the end of an entry point: raise (`throw=True`) with the code's message,
    where it failed (step and time, when concrete) and how to keep the output; else return `out`."""
    hint = f"{advice}pass `throw=False` to get {keep} up to the failure."
    hint = hint[0].upper() + hint[1:]
    if is_concrete(out.failed_step) and np.ndim(out.failed_step) == 0 and not bool(out.successful):
        hint = (f"`{name}` failed at step {int(out.failed_step)} (t = {float(out.failed_time):.6g}). "
                + hint)
    return raise_if_failed(out, out.result, throw, hint=hint)
