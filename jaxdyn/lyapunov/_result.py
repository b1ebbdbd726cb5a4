"""Results of Lyapunov computations, result codes and derived quantities."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._types import Array


class RESULTS:
    """Result codes carried in `LyapunovResult.result` (an int array, so it survives jit/vmap).

    - `successful` (0): the run finished.
    - `diverged` (1): the trajectory or a tangent vector became non-finite; the exponents are
      those accumulated up to the last finite step, and `failed_step` says where it happened.
    - `degenerate` (2): a tangent vector collapsed to zero (a log of 0 in the QR step); the
      exponents are those accumulated up to that step.
    """

    successful = 0
    diverged = 1
    degenerate = 2
    _messages = {0: "successful", 1: "diverged: the trajectory or a tangent became non-finite",
                 2: "degenerate: a tangent vector collapsed to zero"}

    @classmethod
    def message(cls, code) -> str:
        return cls._messages.get(int(code), f"unknown result code {int(code)}")


class LyapunovResult(eqx.Module):
    r"""Lyapunov exponents with their convergence record.

    - `exponents`: shape `(k,)`, descending (per time unit for flows, per step for maps, per layer
      for networks).
    - `history`: running estimates after each renormalisation, shape `(n_renorm, k)`.
    - `times`: the elapsed time (or number of steps) of each row of `history`.
    - `stderr`: standard errors from independent chains (`None` for a single trajectory).
    - `result`: a [`RESULTS`][] code; `failed_step`: the step at which a run diverged (-1 if not).
    - `steps`: the number of steps accumulated (after the transient).
    - `final_state`, `final_tangents`: the (flat) state and the orthonormal tangent block at the
      end (chains stacked on a leading axis when there are several).

    Properties: `kaplan_yorke_dimension`, `drift` (a convergence diagnostic), `message`.
    """

    exponents: Array
    history: Array
    times: Array
    stderr: Array | None
    result: Array
    failed_step: Array
    steps: Array
    final_state: Array | None = None
    final_tangents: Array | None = None

    @property
    def message(self) -> str:
        return RESULTS.message(np.max(np.asarray(self.result)))

    @property
    def kaplan_yorke_dimension(self) -> Array:
        """The Kaplan-Yorke dimension $j + \\sum_{i \\le j} \\lambda_i / |\\lambda_{j+1}|$."""
        return kaplan_yorke_dimension(self.exponents)

    @property
    def drift(self) -> Array:
        """Convergence diagnostic: max over exponents of |estimate at the end - estimate at 3/4 of
        the run|. Small against the exponents' spacing means the running means have settled
        (for chaotic flows it decays like $1/T$ plus fluctuations of order $T^{-1/2}$)."""
        n = self.history.shape[-2]
        ref = self.history[..., (3 * n) // 4, :]
        return jnp.max(jnp.abs(self.history[..., -1, :] - ref), axis=-1)

    def plot(self, ax=None, **kwargs):
        """Running estimates against time; see [`jaxdyn.plot.plot_lyapunov_convergence`][]."""
        from ..plot import plot_lyapunov_convergence

        return plot_lyapunov_convergence(self, ax=ax, **kwargs)


def kaplan_yorke_dimension(exponents) -> Array:
    r"""Kaplan-Yorke (Lyapunov) dimension of a descending spectrum.

    $D = j + \sum_{i \le j}\lambda_i / |\lambda_{j+1}|$ with $j$ the largest index whose partial
    sum is non-negative; $0$ if $\lambda_1 < 0$; the number of exponents if every partial sum is
    non-negative (the spectrum is then too short to tell more).
    """
    lam = jnp.sort(jnp.asarray(exponents))[::-1]
    k = lam.shape[0]
    partial = jnp.cumsum(lam)
    nonneg = partial >= 0
    j = jnp.sum(jnp.cumprod(nonneg.astype(jnp.int32)))  # length of the non-negative prefix
    safe_j = jnp.clip(j, 1, k - 1) if k > 1 else 0
    frac = jnp.where(j >= 1, partial[safe_j - 1], 0.0) / jnp.abs(lam[jnp.minimum(safe_j, k - 1)])
    return jnp.where(j == 0, 0.0, jnp.where(j >= k, float(k), j + frac))
