"""Lyapunov spectra of flows y' = f(t, y, args)."""

import diffrax
import equinox as eqx
import jax.numpy as jnp

from .._checkpoint import Checkpoint
from .._checks import check_int
from .._results import check_throw
from ._accuracy import _jit_consistency, consistency_scan
from ._common import (
    check_args,
    check_dt,
    check_k,
    check_output,
    check_steps,
    flatten_state,
    float_args_to_arrays,
    raise_failed,
    setup_chain,
)
from ._engine import benettin, is_traced
from ._result import AccuracyCheck, AccuracyReport, LyapunovResult, batch_stderr
from ._systems import FlowDiffrax, FlowRK4


def flow_spectrum(field, y0, *, dt, n_steps: int, k: int | None = None, args=None,
                  transient_steps: int = 0, renorm_every: int = 1, t0=0.0,
                  solver: diffrax.AbstractSolver | None = None,
                  stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                  max_steps: int = 256, key=None, progress: bool = True,
                  checkpoint: Checkpoint | None = None,
                  history_every: int | None = None,
                  accuracy: bool | AccuracyCheck = False, throw: bool = True) -> LyapunovResult:
    r"""The $k$ largest Lyapunov exponents of $y' = f(t, y, \text{args})$ (Benettin/QR).

    The variational equation is never formed: the $k$ tangent vectors are pushed through the
    linearisation of each integration step by `jax.jvp`, vmapped over the vectors, so the cost
    grows with $k$ (not $n^2$). Every `renorm_every` steps the tangent block is re-orthonormalised
    by a QR with $\operatorname{diag} R > 0$, and $\log R_{ii}$ accumulates. The exponents are
    those of the discretised flow, which converge to the flow's as $dt \to 0$ with the method's
    order.

    **Arguments:**

    - `field`: `f(t, y, args)` on any PyTree `y` (an Equinox module or a plain function); or,
      with a `solver`, any diffrax term (e.g. an SDE `MultiTerm` with a fixed Brownian path: the
      exponents are then those along that noise realisation).
    - `y0`: the initial state. `dt`: the step (the renormalisation grid is a multiple of it).
    - `n_steps`: steps after the transient (a multiple of `renorm_every`); `transient_steps`:
      steps discarded first (the tangents run and are orthonormalised too, so that they align
      with the Oseledets directions before anything is counted). `k`: how many exponents (default all).
    - `solver`: `None` for the built-in fixed-step RK4 (fastest); any diffrax solver otherwise,
      stepping by `dt`, or adaptively inside each interval of length `dt` when a
      `stepsize_controller` is given (`max_steps` per interval).
    - `key`: the random initial tangent block (a documented deterministic default).
    - `progress`: a tqdm bar (when not traced); `checkpoint`: a [`Checkpoint`][] to write the
      state every so often and resume from it.
    - `history_every`: renormalisations per row of `history` (default: about 1000 rows in all;
      1 with a checkpoint). Recording less often is faster.
    - `accuracy`: `True` (or an [`AccuracyCheck`][] with its own tolerances) adds an
      [`AccuracyReport`][] to the result: the same run repeated with step `dt / 2` (same start,
      time span and renormalisation times: the **step-halving change**), and, over a short
      window from the final state, the **paired step-halving change** (one step against two half
      steps from the same points: no trajectory noise) and the **tangent consistency** of the
      field. Opt-in because the halved run costs twice
      the main run (three times in all) and compiles two more loops; the **run-length change**
      ($\lambda(T) - \lambda(T/2)$, from `history`) is free and always there.
      With a `checkpoint` only the main run is checkpointed (the rest is recomputed).
      `result.summary()` prints the diagnostics and a `WARNING` line for each that exceeds its
      tolerance (by default 2% of the spectrum's scale $\max|\lambda_i|$ plus 4 standard
      errors of the change, for the partial sums $\sum_{i \le j} \lambda_i$; tangent
      consistency above 0.1).
    - `throw`: with `True` (default) a failed run raises an `eqx.EquinoxRuntimeError` with the
      message of its code (through `eqx.error_if` under `jit`/`vmap`: any member failing); with
      `False` the code is returned in `result.result`.

    **Returns:** a [`LyapunovResult`][] (exponents per time unit, descending). A trajectory that
    blows up (in the transient too) gives, with `throw=False`,
    `result == jaxdyn.RESULTS.nonfinite_state` (`nonfinite_tangent` when only the tangents blow
    up), `failed_step` and NaN exponents (the estimates before the failure stay in `history`).

    **Accuracy.** A `successful` code says the run finished, not that the numbers are right. Two ways to
    get a wrong answer quietly: a step near the method's stability limit (RK4's real-axis limit
    is $|dt\,\lambda| \approx 2.79$ for the Jacobian's stiffest eigenvalue; e.g. a Liu-Chen
    system at $dt = 0.048$ gives a top exponent of 0.23-0.30 over $T = 100$-$200$ where small
    steps give 0.16, and an exponent sum of -15.8 where the flow's is -16.6): the paired
    step-halving change (-0.56 in the sum) and the tangent consistency (one step is far from
    linear) flag it, and the step-halving change of the whole run once it exceeds the noise;
    and a field with jumps (`jnp.sign(z) * y`): `jax.jvp` differentiates
    each side but not the jump, so the tangent dynamics miss the saltation at every crossing
    (0.003 where a two-trajectory estimate gives 0.25): the tangent consistency flags it, and a
    smaller step does not help (use a smoothed field or an event-based method).

    **Derivatives.** With a fixed number of steps the finite-time exponents are smooth
    functions of `args`, `y0` and `dt` (away from equal exponents): `jax.grad` and `jax.jvp`
    work with the built-in RK4 (tested against central differences). With a diffrax `solver`
    only forward mode (`jax.jvp`, `jax.jacfwd`) works: the steps use `diffrax.ForwardMode`, and
    reverse mode raises an error.

    **Precision.** The run follows the dtype of `y0`. On chaotic systems float32 and float64
    trajectories decorrelate after a few Lyapunov times, so only the statistics agree: the
    exponents typically within about $10^{-2}$ (tested on the Henon map), the sum (phase-space
    contraction) much closer. Use float64 for reference values.

    Inside `jit`/`vmap` (e.g. a parameter sweep `jax.vmap(lambda r: flow_spectrum(f, y0, args=r,
    ...).exponents)(rhos)`) the whole run is one `lax.scan`.

    **Example:**

    ```python
    def lorenz(t, y, args):
        x, y_, z = y
        return jnp.array([10 * (y_ - x), x * (28 - z) - y_, x * y_ - 8 / 3 * z])

    res = flow_spectrum(lorenz, jnp.ones(3), dt=0.01, n_steps=100_000, transient_steps=1000)
    res.exponents   # ~ [0.906, 0.0, -14.57]
    ```
    """
    if not callable(field) and not isinstance(field, diffrax.AbstractTerm):
        raise TypeError(f"`field` must be a callable f(t, y, args) or a diffrax term, got "
                        f"{type(field).__name__}.")
    check_throw(throw)
    n_steps, renorm_every, transient_steps = check_steps(n_steps, renorm_every, transient_steps)
    dt = check_dt(dt)
    args = check_args(float_args_to_arrays(args))
    x0, unravel = flatten_state(y0, "y0")
    dim = x0.shape[0]
    k = check_k(k, dim)
    dt_arr = jnp.asarray(dt, x0.dtype)
    system, method = _flow_system(field, x0, unravel, args=args, dt=dt_arr,
                                  t0=jnp.asarray(t0, x0.dtype), solver=solver,
                                  stepsize_controller=stepsize_controller, max_steps=max_steps)
    accuracy = _check_accuracy(accuracy)
    state0 = setup_chain(x0, k, key)
    config = {"kind": "flow", "method": method, "dim": dim, "k": k,
              "renorm_every": renorm_every, "transient_steps": transient_steps}
    res = benettin(system, state0, transient_steps=transient_steps,
                   n_blocks=n_steps // renorm_every, renorm_every=renorm_every,
                   time_per_step=dt_arr, progress=progress, checkpoint=checkpoint,
                   config=config, desc="flow_spectrum", history_every=history_every)
    if accuracy is not None:
        report = _accuracy_report(res, system, state0, accuracy, config=config, n_steps=n_steps,
                                  transient_steps=transient_steps, renorm_every=renorm_every)
        res = eqx.tree_at(lambda r: r.accuracy, res, report, is_leaf=lambda x: x is None)
    return raise_failed(res, throw)


def _flow_system(field, x0, unravel, *, args, dt, t0, solver, stepsize_controller, max_steps):
    """The system that steps the flow (built-in RK4, or a diffrax solver) and a name for it."""
    dim = x0.shape[0]
    if solver is None:
        if isinstance(field, diffrax.AbstractTerm):
            raise ValueError("`solver`: a diffrax term needs a diffrax solver.")
        if stepsize_controller is not None:
            raise ValueError("`stepsize_controller` needs a diffrax `solver`.")
        system = FlowRK4(field=field, args=args, dt=dt, t0=t0, unravel=unravel)
        check_output(lambda x: system.vector_field(t0, x), "field", (dim,), x0)
        return system, "rk4"
    terms = field if isinstance(field, diffrax.AbstractTerm) else diffrax.ODETerm(field)
    controller = diffrax.ConstantStepSize() if stepsize_controller is None else (
        stepsize_controller)
    max_steps = check_int(max_steps, "max_steps")
    if not isinstance(field, diffrax.AbstractTerm):
        check_output(lambda x: field(t0, unravel(x), args), "field", (dim,), x0)
    system = FlowDiffrax(terms=terms, solver=solver, controller=controller, args=args, dt=dt,
                         t0=t0, max_steps=max_steps, unravel=unravel)
    return system, type(solver).__name__


def _check_accuracy(accuracy) -> AccuracyCheck | None:
    if accuracy is True:
        return AccuracyCheck()
    if accuracy is False or accuracy is None:
        return None
    if not isinstance(accuracy, AccuracyCheck):
        raise TypeError(f"`accuracy` must be a bool or an AccuracyCheck, got "
                        f"{type(accuracy).__name__}.")
    check_int(accuracy.consistency_steps, "accuracy.consistency_steps")
    return accuracy


def _accuracy_report(res: LyapunovResult, system, state0, accuracy: AccuracyCheck, *, config,
                     n_steps, transient_steps, renorm_every) -> AccuracyReport:
    """The same run with dt / 2 (same start, time span and renormalisation times), and the
    tangent consistency and paired step halving over a window from the final state."""
    half_system = eqx.tree_at(lambda s: s.dt, system, system.dt / 2)
    n_rows = res.history.shape[0]
    half = benettin(half_system, state0, transient_steps=2 * transient_steps,
                    n_blocks=n_steps // renorm_every, renorm_every=2 * renorm_every,
                    time_per_step=system.dt / 2, progress=False, checkpoint=None, config=config,
                    desc="flow_spectrum (dt/2)",
                    history_every=(n_steps // renorm_every) // n_rows)
    noise = jnp.sqrt(batch_stderr(jnp.cumsum(res.history, axis=-1), res.times) ** 2
                     + batch_stderr(jnp.cumsum(half.history, axis=-1), half.times) ** 2)
    run = consistency_scan if is_traced(system, res.final_state) else _jit_consistency
    consistency, local = run(system, half_system, res.final_state, res.final_tangents,
                             transient_steps + n_steps, accuracy.consistency_steps)
    return AccuracyReport(step_halving_change=half.exponents - res.exponents,
                          step_halving_noise=noise, tangent_consistency=consistency,
                          local_step_halving_change=local, rtol=accuracy.rtol,
                          consistency_tol=accuracy.consistency_tol)
