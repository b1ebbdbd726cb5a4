"""Results of Lyapunov computations, accuracy diagnostics and derived quantities.

Result codes are those of [`jaxdyn.RESULTS`][]: a run whose trajectory becomes non-finite gives
`nonfinite_state`, one whose tangent block becomes non-finite while the trajectory stays finite
`nonfinite_tangent`, and a tangent vector that collapses to zero (a log of 0 in the QR step)
`degenerate_tangent`; `failed_step` says where, the exponents are NaN and `history` keeps the
running estimates accumulated before the failure.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._results import RESULTS, AbstractResult, message
from .._types import Array


class AccuracyCheck(eqx.Module):
    r"""Settings of the accuracy control of [`flow_spectrum`][] (`accuracy=True` uses the defaults).

    - `rtol`: a change is flagged when a partial sum $\sum_{i \le j} \lambda_i$ moves by more
      than `rtol` times the spectrum's scale ($\max_i |\lambda_i|$) plus 4 standard errors of
      the change (the noise of the finite-time estimates, from batch means of the running
      estimates): default 2%.
    - `consistency_steps`: steps of the tangent-consistency window (default 1000).
    - `consistency_tol`: the tangent-consistency threshold (default 0.1, see
      [`AccuracyReport`][]).
    """

    rtol: float = 0.02
    consistency_steps: int = 1000
    consistency_tol: float = 0.1


class AccuracyReport(eqx.Module):
    r"""The accuracy diagnostics of a flow spectrum (`flow_spectrum(..., accuracy=True)`).

    - `step_halving_change`: shape `(k,)`, $\lambda_i(dt/2) - \lambda_i(dt)$: the same run (same
      start, same time span and renormalisation times) repeated with half the step.
    - `step_halving_noise`: shape `(k,)`, the standard errors of the changes of the partial
      sums $\sum_{i \le j} \lambda_i$, $j = 1..k$ (batch means of both runs). The flag compares
      partial sums: the sum of exponents (the phase-space contraction rate) is far less noisy
      than single exponents, whose finite-time fluctuations largely cancel in it.
    - `local_step_halving_change`: shape `(k,)`, the paired step-halving change over the
      tangent-consistency window: from the same point and tangent block, the growth
      $\log R_{jj}$ of two steps of $dt/2$ minus that of one step of $dt$, averaged over the
      window, per unit time. No trajectory noise (both sides start from the same point), so it
      is flagged against `rtol` times the scale alone (partial sums, as above); it measures the
      one-step discretisation error of the tangent growth, the part of the bias that comes from
      the step near a stability limit.
    - `tangent_consistency`: the largest relative mismatch, over a window of
      `consistency_steps` steps from the final state, between the finite difference of the step
      map $F$ along the trajectory and its tangent prediction,
      $\|F(x_{i+1}) - F(x_i) - DF(x_i)(x_{i+1} - x_i)\| / \|DF(x_i)(x_{i+1} - x_i)\|$
      (nearby points: the trajectory one step later). For a smooth field it is of order
      $(\|f\| dt / L)^2$ ($L$ the scale on which $f$ varies: $10^{-6}$ to $10^{-3}$ for
      resolved runs); where the field jumps (`sign`, `where`, `floor`, clipping with a jump) it is
      of order one: `jax.jvp` sees the derivative on each side but not the jump, so the tangent
      dynamics miss the jumps (the saltation at a crossing) and the exponents are wrong.
    """

    step_halving_change: Array
    step_halving_noise: Array
    tangent_consistency: Array
    local_step_halving_change: Array
    rtol: float = eqx.field(static=True, default=0.02)
    consistency_tol: float = eqx.field(static=True, default=0.1)


def _np(x):
    return np.asarray(x, dtype=np.float64)


def batch_stderr(history, times, n_batches: int = 8) -> Array:
    """Standard errors of the final estimates from `n_batches` batch means of a history (NaN
    with fewer than 2 rows; works under `jit`). Each batch's exponent is the growth accumulated
    over it divided by its duration."""
    concrete = not any(isinstance(a, jax.core.Tracer) for a in (history, times))
    xp = np if concrete else jnp  # NumPy for concrete results: no dispatch or compilation
    h = xp.asarray(history)
    t = xp.asarray(times, dtype=h.dtype)
    n = h.shape[-2]
    b = min(n_batches, n)
    if b < 2:
        return xp.full(h.shape[-1:], np.nan, h.dtype)
    ends = np.round(np.arange(1, b + 1) * n / b).astype(int) - 1
    sums = h[..., ends, :] * t[ends][:, None]
    prev = xp.concatenate([xp.zeros_like(sums[..., :1, :]), sums[..., :-1, :]], axis=-2)
    dur = xp.diff(xp.concatenate([xp.zeros((1,), t.dtype), t[ends]]))
    per = (sums - prev) / dur[:, None]
    return xp.std(per, axis=-2, ddof=1) / np.sqrt(b)


class LyapunovResult(AbstractResult):
    r"""Lyapunov exponents with their convergence record.

    - `exponents`: shape `(k,)`, descending (per time unit for flows, per step for maps, per layer
      for networks). NaN when the run failed (`result` not successful), never the starting zeros.
    - `history`: running estimates after each renormalisation, shape `(n_renorm, k)` (after a
      failure: the estimates accumulated before it).
    - `times`: the elapsed time (or number of steps) of each row of `history`.
    - `stderr`: standard errors from independent chains (`None` for a single trajectory).
    - `result`: a [`jaxdyn.RESULTS`][] item (`nonfinite_state`, `nonfinite_tangent` or
      `degenerate_tangent` when the run failed); `failed_step`: the step at which the run failed
      (-1 if it did not).
    - `steps`: the number of steps accumulated (after the transient).
    - `final_state`, `final_tangents`: the (flat) state and the orthonormal tangent block at the
      end (chains stacked on a leading axis when there are several).
    - `accuracy`: an [`AccuracyReport`][] (step halving, tangent consistency) when asked for
      (`flow_spectrum(..., accuracy=True)`), else `None`.

    Properties: `kaplan_yorke_dimension`, `drift`, `run_length_change` and `noise` (convergence
    diagnostics, free), `accuracy_flags`; `summary()` prints it all, `plot()` draws the running
    estimates. `jaxdyn._results.message(result.result)` reads the result code.

    **Derivatives.** `exponents` of a run with a fixed number of steps are smooth functions of
    the parameters (away from degenerate, i.e. equal, exponents); `result`, `failed_step` and
    `steps` are integers: `jax.grad` through them raises a `TypeError`.
    """

    exponents: Array
    history: Array
    times: Array
    stderr: Array | None
    result: RESULTS
    failed_step: Array
    steps: Array
    final_state: Array | None = None
    final_tangents: Array | None = None
    accuracy: AccuracyReport | None = None

    @property
    def message(self) -> str:
        """Deprecated: use `jaxdyn._results.message(result.result)`."""
        warnings.warn("`LyapunovResult.message` is deprecated: use "
                      "`jaxdyn._results.message(res.result)` (it goes in jaxdyn 0.3).",
                      DeprecationWarning, stacklevel=2)
        return message(self.result)

    @property
    def kaplan_yorke_dimension(self) -> Array:
        """The Kaplan-Yorke dimension $j + \\sum_{i \\le j} \\lambda_i / |\\lambda_{j+1}|$ (NaN
        when an exponent is NaN)."""
        return kaplan_yorke_dimension(self.exponents)

    @property
    def drift(self) -> Array:
        """Convergence diagnostic: max over exponents of |estimate at the end - estimate at 3/4 of
        the run|. Small against the exponents' spacing means the running means have settled
        (for chaotic flows it decays like $1/T$ plus fluctuations of order $T^{-1/2}$)."""
        n = self.history.shape[-2]
        ref = self.history[..., (3 * n) // 4, :]
        return jnp.max(jnp.abs(self.history[..., -1, :] - ref), axis=-1)

    @property
    def run_length_change(self) -> Array:
        r"""Shape `(k,)`: $\lambda_i(T) - \lambda_i(T/2)$, the estimate at the end minus the one
        at half the run (from `history`, free). Its noise is about `noise`; a change well beyond
        it is a trend (a transient too short, or a run too short to settle)."""
        n = self.history.shape[-2]
        if n < 2:
            return jnp.full(self.history.shape[-1:], jnp.nan, self.history.dtype)
        return self.history[..., -1, :] - self.history[..., n // 2 - 1, :]

    @property
    def partial_sum_noise(self) -> Array:
        """Shape `(k,)`: the standard errors of the partial sums $\\sum_{i \\le j} \\lambda_i$
        (batch means of `history`)."""
        h = self.history
        cum = np.cumsum(np.asarray(h), axis=-1) if not isinstance(h, jax.core.Tracer) else (
            jnp.cumsum(h, axis=-1))
        return batch_stderr(cum, self.times)

    @property
    def noise(self) -> Array:
        """Shape `(k,)`: the standard error of each exponent from 8 batch means of `history`
        (NaN with fewer than 2 rows); for a single trajectory, where `stderr` is `None`."""
        return batch_stderr(self.history, self.times)

    @property
    def accuracy_flags(self) -> tuple[str, ...]:
        """The accuracy warnings of a concrete, unbatched result (empty when none); each names
        the diagnostic, the change and the tolerance it exceeded."""
        flags = []
        if not bool(np.all(self.successful)):
            flags.append(f"the run failed ({message(self.result)}) at step "
                         f"{int(np.max(self.failed_step))}")
            return tuple(flags)
        lam = _np(self.exponents)
        rtol = 0.02 if self.accuracy is None else self.accuracy.rtol
        scale = float(np.max(np.abs(lam))) if lam.size else 0.0
        change = np.cumsum(_np(self.run_length_change))
        i, tol = _exceeded(change, self.partial_sum_noise, rtol * scale)
        if i is not None:
            flags.append(
                f"run length: {_which(i)} moved by {change[i]:+.3g} between T/2 and T "
                f"(tolerance {tol[i]:.3g} = {rtol:g} x scale + 4 x noise): run longer or "
                "discard a longer transient")
        acc = self.accuracy
        if acc is not None:
            dh = np.cumsum(_np(acc.step_halving_change))
            i, tol = _exceeded(dh, acc.step_halving_noise, rtol * scale)
            if not np.all(np.isfinite(dh)):
                flags.append("step halving: the run at dt/2 failed")
            elif i is not None:
                flags.append(
                    f"step halving: {_which(i)} moved by {dh[i]:+.3g} from dt to dt/2 "
                    f"(tolerance {tol[i]:.3g}): the step is too large (near the method's "
                    "stability limit?); use a smaller `dt`")
            local = np.cumsum(_np(acc.local_step_halving_change))
            if np.all(np.isfinite(local)) and np.any(np.abs(local) > rtol * scale):
                i = int(np.argmax(np.abs(local)))
                flags.append(
                    f"paired step halving: {_which(i)} changes by {local[i]:+.3g} per unit time "
                    f"from one step of dt to two of dt/2 along the same trajectory (tolerance "
                    f"{rtol * scale:.3g}): the step is too large; use a smaller `dt`")
            c = float(acc.tangent_consistency)
            if not np.isfinite(c) or c > acc.consistency_tol:
                flags.append(
                    f"tangent consistency: finite differences along the trajectory and the "
                    f"tangent map disagree by {c:.3g} (tolerance {acc.consistency_tol:g}): the "
                    "field is not smooth on the scale of one step (a jump such as sign(z), whose "
                    "crossings the tangent dynamics miss, or a step too large for the field's "
                    "variation); the exponents are not trustworthy")
        return tuple(flags)

    def summary(self) -> str:
        """A plain-text report of a concrete, unbatched result: exponents, result code, failed
        step, the convergence and accuracy diagnostics, and a `WARNING` line per accuracy flag
        (run-length change, step-halving change, tangent consistency: see [`AccuracyReport`][])."""
        lam = _np(self.exponents)
        lines = [f"Lyapunov exponents (k = {lam.size}): "
                 + ", ".join(f"{v:.6g}" for v in lam)]
        if self.stderr is not None:
            lines.append("standard errors (chains): " + ", ".join(f"{v:.3g}" for v in _np(self.stderr)))
        lines.append(f"result: {message(self.result)}; failed_step: {int(np.max(self.failed_step))}; "
                     f"steps: {int(np.max(self.steps))}")
        lines.append(f"Kaplan-Yorke dimension: {_ky_numpy(lam):.6g}")
        lines.append("run-length change lambda(T) - lambda(T/2): "
                     + ", ".join(f"{v:+.3g}" for v in _np(self.run_length_change))
                     + " (noise " + ", ".join(f"{v:.3g}" for v in _np(self.noise)) + ")")
        if self.accuracy is None:
            lines.append("step halving / tangent consistency: not run (flow_spectrum(..., "
                         "accuracy=True))")
        else:
            acc = self.accuracy
            lines.append("step-halving change lambda(dt/2) - lambda(dt): "
                         + ", ".join(f"{v:+.3g}" for v in _np(acc.step_halving_change))
                         + " (noise of the partial sums "
                         + ", ".join(f"{v:.3g}" for v in _np(acc.step_halving_noise)) + ")")
            lines.append("paired step-halving change (same trajectory): "
                         + ", ".join(f"{v:+.3g}" for v in _np(acc.local_step_halving_change)))
            lines.append(f"tangent consistency: {float(acc.tangent_consistency):.3g} "
                         f"(tolerance {acc.consistency_tol:g})")
        flags = self.accuracy_flags
        lines.extend(f"WARNING: {f}" for f in flags)
        if not flags:
            lines.append("accuracy: no flag")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """Running estimates against time; see [`jaxdyn.plot.plot_lyapunov_convergence`][]."""
        from ..plot import plot_lyapunov_convergence

        return plot_lyapunov_convergence(self, ax=ax, **kwargs)


def _ky_numpy(lam: np.ndarray) -> float:
    """[`kaplan_yorke_dimension`][] of a concrete spectrum, in NumPy (for `summary`)."""
    if lam.size == 0 or np.any(np.isnan(lam)):
        return float("nan")
    lam = np.sort(lam)[::-1]
    partial = np.cumsum(lam)
    j = int(np.sum(np.cumprod(partial >= 0)))
    if j == 0:
        return 0.0
    if j >= lam.size:
        return float(lam.size)
    return j + partial[j - 1] / abs(lam[j])


def _exceeded(change, noise, floor):
    """The index of the partial sum whose `change` most exceeds its tolerance `floor + 4 x noise`
    (None when none does), and the tolerances."""
    tol = floor + 4 * np.nan_to_num(_np(noise), nan=0.0)
    if not np.any(np.abs(change) > tol):
        return None, tol
    return int(np.argmax(np.abs(change) - tol)), tol


def _which(i: int) -> str:
    return "exponent 1" if i == 0 else f"the sum of exponents 1..{i + 1}"


def kaplan_yorke_dimension(exponents) -> Array:
    r"""Kaplan-Yorke (Lyapunov) dimension of a spectrum (sorted here, descending).

    $D = j + \sum_{i \le j}\lambda_i / |\lambda_{j+1}|$ with $j$ the largest index whose partial
    sum is non-negative; $0$ if $\lambda_1 < 0$; the number of exponents if every partial sum is
    non-negative (the spectrum is then too short to tell more). **NaN** if any exponent is NaN
    (a failed run), never a number that looks like an answer.

    **Arguments:** `exponents`, shape `(k,)` (vmap for a batch).

    **Derivative.** $D$ is continuous and piecewise smooth in the exponents; it has a kink
    where a partial sum crosses zero ($j$ changes). `jax.grad` there returns the derivative of
    the branch with the larger $j$ (the partial sum counts as non-negative at zero); it is 0
    where $D = 0$ or $D = k$ (constant branches).
    """
    lam = jnp.asarray(exponents)
    if lam.ndim != 1 or lam.shape[0] == 0:
        raise ValueError(f"`exponents` must have shape (k,) with k >= 1, got {lam.shape}.")
    if not jnp.issubdtype(lam.dtype, jnp.inexact):
        lam = lam.astype(jnp.result_type(float))
    lam = jnp.sort(lam)[::-1]
    k = lam.shape[0]
    partial = jnp.cumsum(lam)
    nonneg = partial >= 0
    j = jnp.sum(jnp.cumprod(nonneg.astype(jnp.int32)))  # length of the non-negative prefix
    safe_j = jnp.clip(j, 1, k - 1) if k > 1 else 0
    denom = jnp.abs(lam[jnp.minimum(safe_j, k - 1)])
    denom = jnp.where(denom > 0, denom, 1.0)
    frac = jnp.where(j >= 1, partial[safe_j - 1], 0.0) / denom
    out = jnp.where(j == 0, 0.0, jnp.where(j >= k, float(k), j + frac))
    return jnp.where(jnp.any(jnp.isnan(lam)), jnp.nan, out)
