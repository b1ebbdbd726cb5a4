r"""Spectral density by stochastic Lanczos quadrature (SLQ) with Gaussian broadening.

For a unit probe $v$, $v^\top f(A) v = \int f\,d\mu_v$ with $\mu_v = \sum_i (u_i^\top v)^2
\delta_{\lambda_i}$. After $m$ Lanczos steps from $v$, $T_m = S\,\mathrm{diag}(\theta)S^\top$
gives the $m$-node Gauss quadrature $\mu_v \approx \sum_j w_j \delta_{\theta_j}$, $w_j =
S_{1j}^2$, exact for polynomials of degree $< 2m$. With Rademacher probes scaled to unit norm,
$\mathbb{E}\,\mu_v = \frac1n\sum_i \delta_{\lambda_i}$, the normalised spectral measure; so
$\mathbb{E}\sum_j w_j\theta_j = \operatorname{tr}(A)/n$ and $\mathbb{E}\sum_j w_j\theta_j^2 =
\operatorname{tr}(A^2)/n$. The smoothed density is $\phi(t) = \frac1P\sum_{p,j} w_{pj}
\mathcal{N}(t; \theta_{pj}, \sigma^2)$ (second moment plus $\sigma^2$).

The Lanczos runs are a strategy (`backend=`): [`JaxdynLanczos`][] (the default) uses jaxdyn's
own iteration (breakdown-safe; see `_lanczos.py`); [`MatfreeLanczos`][] uses
`matfree.decomp.tridiag_sym` (full reorthogonalisation) instead, as a cross-check (it returns NaN
when the Krylov space becomes invariant, e.g. `order` larger than the number of distinct
eigenvalues).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._deprecate import renamed_kwargs, strategy
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key
from ._lanczos import _tridiagonal, check_key, lanczos
from ._operators import as_operator, map_batched


class DensityResult(AbstractResult):
    r"""A spectral density from stochastic Lanczos quadrature.

    - `nodes`, `weights`: shape `(n_probes, order)`: the Gauss quadrature of each probe's
      spectral measure (each row of `weights` sums to 1).
    - `grid`, `density`: the smoothed density $\phi$ on a grid (integrates to about 1).
    - `sigma`: the Gaussian broadening; `num_hvp`: operator applications.
    - `result`: `RESULTS.nonfinite_curvature` when a node or the density is NaN/inf (a
      non-finite operator), else `successful` (the default when built by hand).

    Methods: `moment(p)` gives the mean over probes of $\sum_j w_j\theta_j^p$ (an estimate of
    $\operatorname{tr}(A^p)/n$) and its standard error; `summary()`; `plot()`.
    """

    nodes: Array
    weights: Array
    grid: Array
    density: Array
    sigma: Array
    num_hvp: int = eqx.field(static=True)
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    def summary(self) -> str:
        """Probes, order, the spectrum's range and first moment, and the result code."""
        nodes = np.asarray(self.nodes, dtype=float)
        weights = np.asarray(self.weights, dtype=float)
        lines = [f"DensityResult: spectral density by stochastic Lanczos quadrature, "
                 f"{nodes.shape[-2]} probe(s) x order {nodes.shape[-1]} "
                 f"({self.num_hvp} operator applications)"]
        if nodes.ndim == 2:
            used = nodes[weights > 1e-12]
            lo, hi = (float(used.min()), float(used.max())) if used.size else (np.nan, np.nan)
            mean = float(np.mean(np.sum(weights * nodes, axis=-1)))
            lines.append(f"  nodes in [{lo:.6g}, {hi:.6g}], mean eigenvalue tr(A)/n ~ {mean:.6g}, "
                         f"broadening sigma = {float(np.asarray(self.sigma)):.3g}")
        else:
            lines.append(f"  batched densities, nodes of shape {nodes.shape}")
        lines.append(f"  result: {message(self.result)}")
        return "\n".join(lines)

    def moment(self, p: int) -> tuple[Array, Array]:
        """`(mean, stderr)` over probes of $\\sum_j w_j \\theta_j^p$."""
        per_probe = jnp.sum(self.weights * self.nodes ** p, axis=-1)
        n = per_probe.shape[-1]
        err = jnp.std(per_probe, axis=-1, ddof=1) / jnp.sqrt(n) if n > 1 else jnp.nan
        return jnp.mean(per_probe, axis=-1), err

    def plot(self, ax=None, **kwargs):
        """The smoothed density; see [`jaxdyn.plot.plot_spectral_density`][]."""
        from ..plot._curvature import plot_spectral_density

        return plot_spectral_density(self, ax=ax, **kwargs)


class AbstractLanczosBackend(eqx.Module):
    """How [`spectral_density`][] runs Lanczos on one probe: `quadrature(op, v, seed, order)`
    returns the Gauss quadrature of the probe's spectral measure, nodes $\\theta_j$ and weights
    $w_j$ (shape `(order,)` each, weights summing to 1). Traceable: it runs under `jit`."""

    @abc.abstractmethod
    def quadrature(self, op, v: Array, seed: Array, order: int) -> tuple[Array, Array]:
        """Nodes and weights from `order` Lanczos steps started at the unit vector `v`
        (`seed`: a scalar for restarts after a breakdown, where the backend has them)."""


class JaxdynLanczos(AbstractLanczosBackend):
    """jaxdyn's Lanczos (full reorthogonalisation, breakdown-safe: an invariant Krylov space
    restarts from a fresh vector, whose extra nodes get zero weight). The default."""

    def quadrature(self, op, v, seed, order):
        s = lanczos(op.mv, v, order, seed=seed, tol=0.0)
        T = _tridiagonal(s.alpha, s.beta, s.j, "largest")
        theta, S = jnp.linalg.eigh(T)
        return theta, S[0] ** 2


class MatfreeLanczos(AbstractLanczosBackend):
    """`matfree.decomp.tridiag_sym` with full reorthogonalisation, as an independent cross-check
    (NaN when the Krylov space becomes invariant: no restart; `seed` is unused)."""

    def quadrature(self, op, v, seed, order):
        from matfree import decomp

        tridiag = decomp.tridiag_sym(order, reortho="full", materialize=True, custom_vjp=False)
        _, T, *_ = tridiag(op.mv, v)
        theta, S = jnp.linalg.eigh(T)
        return theta, S[0] ** 2


_BACKENDS = {"jaxdyn": JaxdynLanczos, "matfree": MatfreeLanczos}


def _backend(backend) -> AbstractLanczosBackend:
    """`backend` as a strategy: `None` is jaxdyn's Lanczos; the old strings warn (one release)."""
    return strategy(backend, name="backend", base=AbstractLanczosBackend, default=JaxdynLanczos(),
                    old_strings=_BACKENDS, where="jaxdyn.curvature")

class _SLQConfig(eqx.Module):
    """The static settings of one `spectral_density` run (validated by the caller)."""

    n_probes: int
    order: int
    n_grid: int
    backend: AbstractLanczosBackend
    batch_size: int | None


@eqx.filter_jit
def _slq(op, key, grid, sigma, cfg: _SLQConfig):
    size, dtype = op.size, op.dtype
    n_probes, order = cfg.n_probes, cfg.order
    kprobe, krest = jax.random.split(key)
    V = jax.random.rademacher(kprobe, (n_probes, size), dtype) / jnp.sqrt(size).astype(dtype)
    seeds = jax.random.uniform(krest, (n_probes,), dtype)
    nodes, weights = map_batched(lambda a: cfg.backend.quadrature(op, a[0], a[1], order),
                                 (V, seeds), cfg.batch_size)
    used = weights > 0
    big = jnp.finfo(dtype).max
    lo = jnp.min(jnp.where(used, nodes, big))
    hi = jnp.max(jnp.where(used, nodes, -big))
    if sigma is None:
        sigma = 0.01 * (hi - lo) + jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(hi), jnp.abs(lo)) \
            + jnp.finfo(dtype).tiny
    sigma = jnp.asarray(sigma, dtype)
    if grid is None:
        grid = jnp.linspace(lo - 5 * sigma, hi + 5 * sigma, cfg.n_grid, dtype=dtype)
    grid = jnp.asarray(grid, dtype)
    z = (grid[:, None, None] - nodes[None]) / sigma
    kernel = jnp.exp(-0.5 * z**2) / (sigma * jnp.sqrt(2 * jnp.pi).astype(dtype))
    density = jnp.sum(kernel * weights[None], axis=(1, 2)) / n_probes
    finite = jnp.all(jnp.isfinite(nodes)) & jnp.all(jnp.isfinite(density))
    code = RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite_curvature)
    return DensityResult(nodes, weights, grid, density, sigma, n_probes * order, code)


@renamed_kwargs(num_probes="n_probes", num_grid="n_grid")
def spectral_density(operator, *, key: Key, n_probes: int = 8, order: int = 64, grid=None,
                     sigma=None, n_grid: int = 512,
                     backend: AbstractLanczosBackend | str | None = None,
                     probe_batch_size: int | None = None, throw: bool = True) -> DensityResult:
    r"""The eigenvalue density of a symmetric operator by stochastic Lanczos quadrature.

    See the module docstring for the mathematics: `n_probes` Rademacher probes (unit norm),
    `order` Lanczos steps each (full reorthogonalisation), Gauss nodes and weights per probe,
    and a Gaussian-broadened density averaged over probes.

    **Arguments:**

    - `operator`: as in [`top_eigenvalues`][].
    - `key`: a `jax.random` key (required: the probes are random).
    - `n_probes`: $P$ probes ($\ge 1$; $\ge 2$ for standard errors).
    - `order`: Lanczos steps per probe ($m$; capped at the operator size). Total HVPs $= Pm$.
    - `grid`: points at which to evaluate the density (default: `n_grid` points from the
      smallest node $- 5\sigma$ to the largest $+ 5\sigma$).
    - `sigma`: the broadening (default 1% of the node range).
    - `backend`: how each probe's Lanczos runs, a strategy object: [`JaxdynLanczos`][]`()`
      (the default, `None`; breakdown-safe) or [`MatfreeLanczos`][]`()`
      (`matfree.decomp.tridiag_sym`, a cross-check). The strings `"jaxdyn"` and `"matfree"`
      still work for one release, with a `DeprecationWarning` naming the object.
    - `probe_batch_size`: run this many probes at once (`lax.map` batch; default one at a time).
    - `throw`: `True` (default) raises `eqx.EquinoxRuntimeError` when a quadrature node or the
      density is non-finite (`RESULTS.nonfinite_curvature`: the operator overflows, or
      `MatfreeLanczos()` divided by zero on an invariant Krylov space); `False` returns the
      result with its code.
    - `num_probes`, `num_grid`: the old names of `n_probes`, `n_grid` (deprecated).

    **Returns:** a [`DensityResult`][].
    """
    op, _ = as_operator(operator)
    check_key(key)
    check_throw(throw)
    size = int(op.size)
    n_probes = check_int(n_probes, "n_probes")
    order = min(check_int(order, "order"), size)
    n_grid = check_int(n_grid, "n_grid", minimum=2)
    backend = _backend(backend)
    if sigma is not None and not isinstance(sigma, jax.core.Tracer):
        if not float(sigma) > 0:
            raise ValueError(f"`sigma` must be positive, got {sigma}.")
    if grid is not None:
        grid = jnp.asarray(grid)
        if grid.ndim != 1:
            raise ValueError(f"`grid` must be a vector, got shape {grid.shape}.")
    if probe_batch_size is not None:
        probe_batch_size = check_int(probe_batch_size, "probe_batch_size")
    cfg = _SLQConfig(n_probes, order, n_grid, backend, probe_batch_size)
    out = _slq(op, key, grid, sigma, cfg)
    return raise_if_failed(out, out.result, throw,
                           hint="`spectral_density`: pass `throw=False` to get the quadrature "
                                "with the code in `.result`.")
