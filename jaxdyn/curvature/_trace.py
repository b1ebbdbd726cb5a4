r"""Stochastic trace estimation: Hutchinson (on matfree's pieces) and Hutch++, as strategies.

matfree provides the Rademacher sampler (`matfree.stochtrace.sampler_signs`) and the
quadratic-form integrand (`matfree.stochtrace.monte_carlo_trace`) that Hutchinson's estimator
averages; we apply the probes with `lax.map` (bounded memory, `probe_batch_size` HVPs at once)
and report the sample standard error with Bessel's correction. matfree has no Hutch++ (it has
XTrace), so Hutch++ is implemented here.

An estimator is a strategy object: [`AbstractTraceEstimator`][] declares what one does (check
its probe budget, draw and apply the probes), [`Hutchinson`][] and [`HutchPlusPlus`][] are the
final implementations, and [`trace`][] takes one as `method=`.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from matfree import stochtrace

from .._checks import check_int
from .._deprecate import renamed_kwargs, strategy
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key
from ._lanczos import check_key
from ._operators import AbstractCurvatureOperator, as_operator, map_batched


class AbstractTraceEstimator(eqx.Module):
    """A stochastic estimator of $\\operatorname{tr}(A)$ from matrix-vector products.

    A final subclass has a `name` (a class variable, for summaries), checks that a probe
    budget suits it (`check_probes`, a `ValueError` naming `n_probes` otherwise) and draws
    and applies the probes (`estimate`, traceable: it runs under `jit`). `estimate` returns
    `(estimate, stderr, samples, offset)`: the trace estimate and its standard error, the
    Monte-Carlo samples $z_i^\\top A z_i$, and the part computed exactly that they are added to
    (`estimate = offset + mean(samples)`).
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def check_probes(self, n_probes: int) -> None:
        """`ValueError` naming `n_probes` when the budget is too small for this estimator."""

    @abc.abstractmethod
    def estimate(self, op: AbstractCurvatureOperator, key: Key, n_probes: int,
                 batch_size: int | None) -> tuple[Array, Array, Array, Array]:
        """Spend `n_probes` operator applications (`batch_size` at once) on the estimate."""


def _apply_many(op, V, batch_size):
    return map_batched(op.mv, V, batch_size)


class Hutchinson(AbstractTraceEstimator):
    r"""Hutchinson's estimator $\frac1m\sum_i z_i^\top A z_i$ with Rademacher $z_i$.

    Unbiased, with variance $2(\|A\|_F^2 - \sum_i A_{ii}^2)/m$; uses matfree's sampler and
    integrand. Needs at least 2 probes (for the standard error).
    """

    name: ClassVar[str] = "hutchinson"

    def check_probes(self, n_probes: int) -> None:
        return None  # `trace` already asks for >= 2

    def estimate(self, op, key, n_probes, batch_size) -> tuple[Array, Array, Array, Array]:
        sampler = stochtrace.sampler_signs(jnp.zeros((op.size,), op.dtype), num=n_probes)
        integrand = stochtrace.monte_carlo_trace()
        V = sampler(key)
        AV = _apply_many(op, V, batch_size)
        vals = jax.vmap(lambda v, av: integrand(lambda _: av, v))(V, AV)
        return (jnp.mean(vals), jnp.std(vals, ddof=1) / jnp.sqrt(n_probes), vals,
                jnp.zeros((), vals.dtype))


class HutchPlusPlus(AbstractTraceEstimator):
    r"""Hutch++ (Meyer, Musco, Musco, Woodruff 2021).

    A third of the budget sketches the top of the spectrum ($Q = \operatorname{qr}(AS)$), whose
    trace $\operatorname{tr}(Q^\top AQ)$ is taken exactly (another third), and Hutchinson on the
    deflated $(I - QQ^\top)A(I - QQ^\top)$ with the rest: far lower variance when the spectrum
    decays (Hessians of neural networks). The sketch takes `min(n_probes // 3, size)` probes
    (twice); at least 2 must be left for the residual part.
    """

    name: ClassVar[str] = "hutch++"

    def check_probes(self, n_probes: int) -> None:
        if n_probes < 3:
            raise ValueError(f"`n_probes` must be >= 3 for Hutch++, got {n_probes}.")
        if n_probes - 2 * (n_probes // 3) < 2:
            raise ValueError("`n_probes` leaves fewer than 2 probes for Hutch++'s residual part.")

    def estimate(self, op, key, n_probes, batch_size) -> tuple[Array, Array, Array, Array]:
        size, dtype = op.size, op.dtype
        s = min(n_probes // 3, size)  # a sketch as large as the space is already exact
        g = n_probes - 2 * s
        k1, k2 = jax.random.split(key)
        S = jax.random.rademacher(k1, (s, size), dtype)
        Y = _apply_many(op, S, batch_size)  # rows: A s_i
        Q, _ = jnp.linalg.qr(Y.T)  # (size, s)
        AQ = _apply_many(op, Q.T, batch_size)
        t_low = jnp.sum(Q.T * AQ)
        G = jax.random.rademacher(k2, (g, size), dtype)
        G = G - (G @ Q) @ Q.T
        AG = _apply_many(op, G, batch_size)
        vals = jnp.sum(G * AG, axis=1)
        return t_low + jnp.mean(vals), jnp.std(vals, ddof=1) / jnp.sqrt(g), vals, t_low


class TraceResult(AbstractResult):
    r"""A stochastic trace estimate.

    - `estimate`: the estimate of $\operatorname{tr}(A)$.
    - `stderr`: its standard error (sample standard deviation of the Monte-Carlo part over
      $\sqrt{\text{its probe count}}$).
    - `samples`: the Monte-Carlo samples $z_i^\top A z_i$ (for Hutch++ those of the deflated
      operator), in the order drawn; `offset`: the part computed exactly (Hutch++'s
      $\operatorname{tr}(Q^\top A Q)$, 0 for Hutchinson). `estimate = offset + mean(samples)`.
    - `num_hvp`: operator applications used.
    - `estimator`: the [`AbstractTraceEstimator`][] used; `method` is its name
      (`"hutchinson"` or `"hutch++"`).
    - `result`: `RESULTS.nonfinite_curvature` when the estimate is NaN/inf, else `successful`.

    `summary()` says it in words; `plot()` draws the running estimate
    ([`jaxdyn.plot._curvature.plot_trace`][]).
    """

    estimate: Array
    stderr: Array
    samples: Array
    offset: Array
    result: RESULTS
    estimator: AbstractTraceEstimator
    num_hvp: int = eqx.field(static=True)

    @property
    def method(self) -> str:
        """The estimator's name: `"hutchinson"` or `"hutch++"`."""
        return self.estimator.name

    def summary(self) -> str:
        """The estimate with its standard error, the estimator and the result code."""
        est = np.asarray(self.estimate, dtype=float)
        err = np.asarray(self.stderr, dtype=float)
        head = (f"{float(est):.6g} +/- {float(err):.2g} (standard error)" if est.ndim == 0
                else f"batched estimates of shape {est.shape}")
        return "\n".join([f"TraceResult: tr(A) = {head}",
                          f"  {self.method} estimator, {self.num_hvp} operator applications",
                          f"  result: {message(self.result)}"])

    def plot(self, ax=None, **kwargs):
        """The running estimate over the probes with its standard-error band; see
        `jaxdyn.plot._curvature.plot_trace`."""
        from ..plot._curvature import plot_trace

        return plot_trace(self, ax=ax, **kwargs)


_BY_NAME = {"hutchinson": Hutchinson, "hutch++": HutchPlusPlus}


def _estimator(method) -> AbstractTraceEstimator:
    """`method` as an estimator: `None` is Hutchinson; the old strings warn (one release)."""
    return strategy(method, name="method", base=AbstractTraceEstimator, default=Hutchinson(),
                    old_strings=_BY_NAME, where="jaxdyn.curvature")

@eqx.filter_jit
def _trace(estimator, op, key, n_probes, batch_size):
    estimate, stderr, samples, offset = estimator.estimate(op, key, n_probes, batch_size)
    code = RESULTS.where(jnp.isfinite(estimate), RESULTS.successful, RESULTS.nonfinite_curvature)
    return TraceResult(estimate, stderr, samples, offset, code, estimator, n_probes)


@renamed_kwargs(num_probes="n_probes")
def trace(operator, *, key: Key, n_probes: int = 100,
          method: AbstractTraceEstimator | str | None = None,
          probe_batch_size: int | None = None, throw: bool = True) -> TraceResult:
    r"""Stochastic estimate of $\operatorname{tr}(A)$ from matrix-vector products.

    **Arguments:**

    - `operator`: as in [`top_eigenvalues`][].
    - `key`: a `jax.random` key (required).
    - `n_probes`: the total number of operator applications ($\ge 2$; $\ge 3$ for Hutch++,
      whose sketch takes `min(n_probes // 3, size)` of them twice and the rest go to the
      residual part).
    - `method`: the estimator, a strategy object: [`Hutchinson`][]`()` (the default, `None`):
      $\frac1m\sum_i z_i^\top A z_i$ with Rademacher $z_i$; or [`HutchPlusPlus`][]`()`: a
      low-rank sketch taken exactly plus Hutchinson on the rest, far lower variance when the
      spectrum decays. The strings `"hutchinson"` and `"hutch++"` still work for one release,
      with a `DeprecationWarning` naming the object.
    - `probe_batch_size`: apply this many probes at once (`lax.map(..., batch_size=...)`;
      default one at a time, the least memory).
    - `throw`: `True` (default) raises `eqx.EquinoxRuntimeError` when the estimate is
      non-finite (`RESULTS.nonfinite_curvature`: the operator overflows); `False` returns the
      result with its code.
    - `num_probes`: the old name of `n_probes` (deprecated).

    **Returns:** a [`TraceResult`][] with `.estimate`, `.stderr` and `.result`.

    **Example:**

    ```python
    H = hessian_operator(loss, params, x, y)
    tr = trace(H, key=jax.random.key(0), n_probes=90, method=HutchPlusPlus())
    print(tr.summary())
    ```
    """
    op, _ = as_operator(operator)
    check_key(key)
    n_probes = check_int(n_probes, "n_probes", minimum=2)
    estimator = _estimator(method)
    check_throw(throw)
    if probe_batch_size is not None:
        probe_batch_size = check_int(probe_batch_size, "probe_batch_size")
    estimator.check_probes(n_probes)
    out = _trace(estimator, op, key, n_probes, probe_batch_size)
    return raise_if_failed(out, out.result, throw,
                           hint="`trace`: pass `throw=False` to get the estimate with the code "
                                "in `.result`.")
