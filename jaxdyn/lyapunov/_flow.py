"""Lyapunov spectra of flows y' = f(t, y, args)."""

import diffrax
import jax.numpy as jnp

from .._checks import check_int
from ._common import (
    check_dt,
    check_k,
    check_output,
    check_steps,
    flatten_state,
    float_args_to_arrays,
    setup_chain,
)
from ._engine import Checkpoint, benettin
from ._result import LyapunovResult
from ._systems import FlowDiffrax, FlowRK4


def flow_spectrum(field, y0, *, dt, n_steps: int, k: int | None = None, args=None,
                  transient_steps: int = 0, renorm_every: int = 1, t0=0.0,
                  solver: diffrax.AbstractSolver | None = None,
                  stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                  max_steps: int = 256, key=None, progress: bool = True,
                  checkpoint: Checkpoint | None = None,
                  history_every: int | None = None) -> LyapunovResult:
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

    **Returns:** a [`LyapunovResult`][] (exponents per time unit, descending). A trajectory that
    blows up gives `result == RESULTS.diverged` and `failed_step`, never silent NaN exponents.

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
    n_steps, renorm_every, transient_steps = check_steps(n_steps, renorm_every, transient_steps)
    dt = check_dt(dt)
    args = float_args_to_arrays(args)
    x0, unravel = flatten_state(y0, "y0")
    dim = x0.shape[0]
    k = check_k(k, dim)
    dt_arr = jnp.asarray(dt, x0.dtype)
    t0_arr = jnp.asarray(t0, x0.dtype)
    if solver is None:
        if isinstance(field, diffrax.AbstractTerm):
            raise ValueError("`solver`: a diffrax term needs a diffrax solver.")
        if stepsize_controller is not None:
            raise ValueError("`stepsize_controller` needs a diffrax `solver`.")
        system = FlowRK4(field, args, dt_arr, t0_arr, unravel)
        check_output(lambda x: system._f(t0_arr, x), "field", (dim,), x0)
        method = "rk4"
    else:
        terms = field if isinstance(field, diffrax.AbstractTerm) else diffrax.ODETerm(field)
        controller = diffrax.ConstantStepSize() if stepsize_controller is None else (
            stepsize_controller)
        max_steps = check_int(max_steps, "max_steps")
        if not isinstance(field, diffrax.AbstractTerm):
            check_output(lambda x: field(t0_arr, unravel(x), args), "field", (dim,), x0)
        system = FlowDiffrax(terms, solver, controller, args, dt_arr, t0_arr, max_steps, unravel)
        method = type(solver).__name__
    state0 = setup_chain(x0, k, key)
    config = {"kind": "flow", "method": method, "dim": dim, "k": k,
              "renorm_every": renorm_every, "transient_steps": transient_steps}
    return benettin(system, state0, transient_steps=transient_steps,
                    n_blocks=n_steps // renorm_every, renorm_every=renorm_every,
                    time_per_step=dt_arr, progress=progress, checkpoint=checkpoint,
                    config=config, desc="flow_spectrum", history_every=history_every)
