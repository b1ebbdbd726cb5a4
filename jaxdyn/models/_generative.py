r"""Generative flows as dynamical systems: the sampling map, its stretching, its basins, memorisation.

A flow-based generative model samples by integrating an ODE from a latent $z$ to a data point
$x = \Phi(z)$: a continuous normalizing flow ([`jaxdyn.models.CNF`][]) from $t = 0$ to $1$, the
probability-flow ODE of a diffusion model ([`jaxdyn.models.ProbabilityFlow`][]) backwards in
diffusion time, from $T$ down to $t_{\min}$. [`SamplingMap`][] is that map, as data (the field, the
two end times, a fixed-step RK4 with `n_steps` steps); the analyses here are questions about it:

- [`sampling_ftle`][]: the finite-time Lyapunov exponents of $\Phi$ over the latent space (where
  it separates modes), by [`jaxdyn.lyapunov.ftle_field`][] on the sampling field;
- [`sampling_lyapunov`][]: the exponents along sampling trajectories, and when in diffusion time
  the stretching and the contraction happen, by [`jaxdyn.lyapunov.flow_spectrum`][];
- [`basins`][]: which training point each latent ends at (the basins of the training points under
  a memorising flow), by vmapped sampling in batches;
- [`memorisation`][]: distances of samples to their nearest training point.

**Where and why.** These live in `jaxdyn.models`, next to the models they analyse, rather than in
`jaxdyn.lyapunov`: they are about the *sampling map* of a generative model (its time
parametrisation, its latents, its training set), and they call the generic engines of
`jaxdyn.lyapunov` for the numerics (the layers of CONTRIBUTING.md allow an analysis of `models` to
import `lyapunov`'s entry points lazily; nothing in `lyapunov` imports this module).

**Integrator.** Fixed-step RK4 (`jaxdyn._kernels.rk_map`, the kernel the FTLE and Lyapunov
engines use), in a *sampling time* $u \in [0, 1]$ with $t(u)$ linear or geometric
($t(u) = t_0 (t_1/t_0)^u$, `log_time=True`, the default when both ends are positive and differ by
a factor 10 or more). The geometric clock is what makes fixed steps work for a diffusion model's
probability flow: near $t_{\min}$ the empirical-score field contracts at a rate $\sim 1/(2t)$
(stiff in $t$), which in $u$ is a constant $\tfrac12\log(t_0/t_1)$. The map is the same map (a
change of the time variable), and fixed steps make it one smooth function of $z$ that `jacfwd`,
`vmap` and `grad` go through; its accuracy is checked by doubling `n_steps`.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._kernels import RK4, rk_map
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array

_LOG_TIME_RATIO = 10.0  # log_time=None: geometric clock when max(t0, t1) / min(t0, t1) >= this


class SamplingMap(eqx.Module):
    r"""The sampling map $z \mapsto x = \Phi(z)$ of a flow: `field(t, y, args)` integrated from
    `t0` (the latent's time) to `t1` (the data's time; `t1 < t0` runs backwards, as a diffusion
    model's probability flow from $T$ to $t_{\min}$ does) with `n_steps` fixed RK4 steps.

    **Arguments:**

    - `field`: the flow's vector field `f(t, y, args)` (e.g. a
      [`jaxdyn.models.ProbabilityFlow`][], a CNF's field, or any callable).
    - `t0`, `t1`: the start and end times (finite, different).
    - `n_steps`: RK4 steps (default 100).
    - `args`: passed to `field`.
    - `scale`: the latent is scaled first, $y(t_0) = s z$ with $s$ = `scale` (a probability flow's
      prior standard deviation, `flow.sde.prior_std`, so that $z \sim N(0, I)$; default 1).
    - `log_time`: steps uniform in $\log t$ (geometric: $t(u) = t_0 (t_1/t_0)^u$) rather than in
      $t$; needs $t_0, t_1 > 0$. `None` (default): geometric when both are positive and one is at
      least 10 times the other (a probability flow down to a small $t_{\min}$).

    For a [`jaxdyn.models.ProbabilityFlow`][] `flow`:
    `SamplingMap(flow, flow.t1, flow.t_min, scale=flow.sde.prior_std)` (the map of `flow.sample`
    with fixed steps); for a [`jaxdyn.models.CNF`][] `cnf`: `SamplingMap(cnf.field, cnf.t0, cnf.t1)`
    (the map of `cnf.transform`).

    Calling it on a latent `z` of shape `(d,)` returns the sample (shape `(d,)`); it is an
    Equinox module, so `jax.vmap(sampler)(zs)`, `jax.jacfwd(sampler)(z)` and `jit` work.
    [`SamplingMap.field_u`][] is the field in sampling time $u \in [0, 1]$ (what the analyses
    integrate); [`SamplingMap.trajectory`][] the states at every step.
    """

    field: Callable
    t0: Array
    t1: Array
    args: Any
    scale: Array
    n_steps: int = eqx.field(static=True)
    log_time: bool = eqx.field(static=True)

    def __init__(self, field, t0, t1, *, n_steps: int = 100, args=None, scale=1.0,
                 log_time: bool | None = None):
        if not callable(field):
            raise TypeError(f"`field` must be a callable f(t, y, args), got {type(field).__name__}.")
        self.n_steps = check_int(n_steps, "n_steps")
        for name, value in (("t0", t0), ("t1", t1)):
            if jnp.ndim(value) != 0:
                raise ValueError(f"`{name}` must be a scalar time, got shape {jnp.shape(value)}.")
            check_finite(value, name)
        concrete = is_concrete(t0) and is_concrete(t1)
        if concrete and float(t0) == float(t1):
            raise ValueError(f"`t1` must differ from `t0` (both {float(t0)}): the map would be the identity.")
        if log_time is None:
            if not concrete:
                raise ValueError("`log_time` must be given (True or False) when `t0` or `t1` is traced.")
            lo, hi = sorted((float(t0), float(t1)))
            log_time = lo > 0 and hi / lo >= _LOG_TIME_RATIO
        if not isinstance(log_time, bool):
            raise TypeError(f"`log_time` must be a bool or None, got {type(log_time).__name__}.")
        if log_time and concrete and min(float(t0), float(t1)) <= 0:
            raise ValueError(f"`log_time=True` needs positive times, got t0 = {float(t0)}, t1 = {float(t1)}.")
        self.log_time = log_time
        self.field = field
        dtype = jnp.result_type(float)
        self.t0 = jnp.asarray(t0, dtype)
        self.t1 = jnp.asarray(t1, dtype)
        self.args = args
        if jnp.ndim(scale) != 0:
            raise ValueError(f"`scale` must be a scalar, got shape {jnp.shape(scale)}.")
        if is_concrete(scale):
            check_positive(scale, "scale")
        self.scale = jnp.asarray(scale, dtype)

    def time(self, u):
        """The flow's time $t(u)$ at sampling time $u \\in [0, 1]$."""
        if self.log_time:
            return self.t0 * (self.t1 / self.t0) ** u
        return self.t0 + u * (self.t1 - self.t0)

    def field_u(self, u, y, args=None):
        """The field in sampling time: $\\frac{dy}{du} = t'(u)\\, f(t(u), y)$ on $u \\in [0, 1]$
        (`args` is ignored: the map's own `args` are used)."""
        t = self.time(u)
        rate = t * jnp.log(self.t1 / self.t0) if self.log_time else self.t1 - self.t0
        return rate * self.field(t, y, self.args)

    def __call__(self, z):
        h = jnp.asarray(1.0 / self.n_steps, jnp.result_type(z, float))
        return rk_map(self.field_u, jnp.zeros((), h.dtype), self.scale.astype(h.dtype) * z, h, self.n_steps,
                      RK4)

    def trajectory(self, z):
        """`(times, states)`: the flow's times $t(u_k)$ (shape `(n_steps + 1,)`) and the states
        there (shape `(n_steps + 1, d)`), the scaled latent first."""
        h = jnp.asarray(1.0 / self.n_steps, jnp.result_type(z, float))
        y0 = self.scale.astype(h.dtype) * z
        ys = rk_map(self.field_u, jnp.zeros((), h.dtype), y0, h, self.n_steps, RK4, save=True)
        us = jnp.arange(self.n_steps + 1, dtype=h.dtype) * h
        return self.time(us), jnp.concatenate([y0[None], ys])

    @property
    def duration(self):
        """$|t_1 - t_0|$, the flow time the map spans."""
        return jnp.abs(self.t1 - self.t0)


# -- checks --------------------------------------------------------------------------------------


def _as_float(x, name: str):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _check_batch(x, name: str, *, dim: int | None = None):
    """A finite `(n, d)` array with n, d >= 1 (and d == dim when given)."""
    if isinstance(x, str) or x is None:
        raise TypeError(f"`{name}` must be an array of shape (n, d), got {type(x).__name__}.")
    try:
        x = _as_float(x, name)
    except TypeError as err:
        raise TypeError(f"`{name}` must be an array of shape (n, d), got {type(x).__name__}.") from err
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"`{name}` must have shape (n, d) with n, d >= 1, got {x.shape}.")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"`{name}` must have {dim} columns (the dimension of the other argument), "
                         f"got shape {x.shape}.")
    return check_finite(x, name)


def _check_sampler(sampler, latents, name: str = "sampler"):
    if not callable(sampler):
        raise TypeError(f"`{name}` must be a callable z -> x (e.g. a SamplingMap), got "
                        f"{type(sampler).__name__}.")
    try:
        out = jax.eval_shape(sampler, latents[0])
    except Exception as err:  # noqa: BLE001 - re-raised naming the argument
        raise ValueError(f"`{name}` failed on the first latent: {err}") from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim != 1:
        raise ValueError(f"`{name}` must map a latent of shape {latents.shape[1:]} to one sample of "
                         f"shape (d,), got {getattr(out, 'shape', type(out).__name__)}.")
    return out.shape[0]


def _check_sampling_map(sampler, name: str = "sampler") -> SamplingMap:
    if not isinstance(sampler, SamplingMap):
        raise TypeError(f"`{name}` must be a SamplingMap (the field and its two end times are needed), "
                        f"got {type(sampler).__name__}.")
    return sampler


def _check_batch_size(batch_size):
    if batch_size is None:
        return None
    return check_int(batch_size, "batch_size")


def _check_tol(tol):
    check_positive(tol, "tol")
    return tol


def _sample(sampler, latents, batch_size):
    """The samples of every latent: vmapped, in batches of `batch_size` (bounds the memory)."""
    return _sample_jit(sampler, latents, batch_size=batch_size)


@eqx.filter_jit
def _sample_jit(sampler, latents, *, batch_size):
    if batch_size is None or batch_size >= latents.shape[0]:
        return jax.vmap(sampler)(latents)
    return jax.lax.map(sampler, latents, batch_size=batch_size)


def _squared_distances(samples, points):
    r"""All squared distances, shape `(n, m)`. Differences are formed directly (exact near zero
    distance) unless they would exceed 2^24 numbers; then $|x|^2 + |p|^2 - 2 x \cdot p$ (shapes
    are static: the choice is too)."""
    if samples.shape[0] * points.shape[0] * samples.shape[1] <= 2**24:
        return jnp.sum((samples[:, None, :] - points[None, :, :]) ** 2, -1)
    return jnp.maximum(jnp.sum(samples**2, 1)[:, None] + jnp.sum(points**2, 1)[None, :]
                       - 2 * samples @ points.T, 0.0)


def _nearest(samples, points):
    """Index of and distance to the nearest point of each sample (NaN distance for a NaN sample)."""
    d2 = _squared_distances(samples, points)
    idx = jnp.argmin(jnp.where(jnp.isnan(d2), jnp.inf, d2), axis=1)
    dist = jnp.sqrt(jnp.take_along_axis(d2, idx[:, None], 1)[:, 0])
    return idx, dist


def _codes(bad):
    """A [`jaxdyn.RESULTS`][] item per latent: `nonfinite_state` where `bad`."""
    ok, fail = RESULTS.successful, RESULTS.nonfinite_state
    return type(ok)(jnp.where(bad, fail._value, ok._value).astype(ok._value.dtype), RESULTS)


# -- basins ----------------------------------------------------------------------------------------


class BasinsResult(AbstractResult):
    r"""Which training point each latent's sample ends at.

    - `latents` `(n, d)`, `samples` `(n, d)`: the latents and their samples $\Phi(z)$.
    - `points` `(m, d)`: the training points; `tol`: the assignment radius.
    - `nearest` `(n,)`: index of the nearest training point; `distances` `(n,)`: the distance to it.
    - `labels` `(n,)`: `nearest` where the distance is at most `tol`, else `-1` (unassigned; also
      for a non-finite sample).
    - `fractions` `(m,)`: the fraction of latents in each basin; `stderr` `(m,)`: its binomial
      standard error $\sqrt{p(1-p)/n}$ (latents drawn i.i.d. from the latent law; on a grid it is
      the error of a quadrature, usually smaller).
    - `unassigned`, `unassigned_stderr`: the fraction with label `-1` and its standard error.
    - `result`: a [`jaxdyn.RESULTS`][] item per latent (`nonfinite_state` where the sample is
      non-finite).
    """

    latents: Array
    samples: Array
    points: Array
    nearest: Array
    distances: Array
    labels: Array
    fractions: Array
    stderr: Array
    unassigned: Array
    unassigned_stderr: Array
    tol: Array
    result: RESULTS

    def summary(self) -> str:
        """Counts, the spread of the basin fractions in standard errors, and the unassigned share."""
        f, se = np.asarray(self.fractions), np.asarray(self.stderr)
        n, m = np.shape(self.latents)[0], f.size
        mean = (1 - float(self.unassigned)) / m
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, np.abs(f - mean) / se, 0.0)
        lines = [f"Basins of {m} training points over {n} latents (tol = {float(self.tol):g})",
                 f"fractions: min {f.min():.4f}, max {f.max():.4f} (equal share {mean:.4f}); largest "
                 f"deviation from the equal share {np.max(z):.2f} standard errors",
                 f"unassigned (farther than tol): {float(self.unassigned):.4f} +- "
                 f"{float(self.unassigned_stderr):.4f}; median distance to the nearest point "
                 f"{float(np.nanmedian(np.asarray(self.distances))):.3g}",
                 f"result: {message(self.result)}"]
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The latent plane coloured by basin; see [`jaxdyn.plot.plot_basins`][]."""
        from ..plot._generative import plot_basins

        return plot_basins(self, ax=ax, **kwargs)


def basins(sampler, latents, points, *, tol, batch_size: int | None = 4096,
           throw: bool = True) -> BasinsResult:
    r"""The basins of the training points under a sampling map: for each latent $z$, the training
    point $x_j$ nearest to its sample $\Phi(z)$ (label $j$ when $|\Phi(z) - x_j| \le$ `tol`, else
    $-1$), and the fraction of latents each point attracts.

    Under the exact empirical score of $m$ training points (a memorising model) the probability
    flow down to a small $t_{\min}$ sends every latent to within $\sim\sigma(t_{\min})$ of a
    training point: the training points are attractors and the latent space is split into their
    basins. For points symmetric under a symmetry of the latent law (the vertices of a regular
    polygon centred at the origin, a rotation-invariant Gaussian) the fractions are equal.

    **Arguments:**

    - `sampler`: the sampling map, a callable $z \mapsto x$ on one latent of shape `(d,)` (a
      [`SamplingMap`][], or any function, e.g. `lambda z: flow.sample(z)`).
    - `latents`: shape `(n, d)` (e.g. `jax.random.normal` draws, or a grid).
    - `points`: the training points, shape `(m, d_x)`.
    - `tol`: the radius within which a sample counts as reaching a point.
    - `batch_size`: latents per vmapped batch (bounds the memory; `None`: all at once).
    - `throw`: raise if any sample is non-finite (default), or with `False` flag it per latent
      in `result` (label `-1`).

    **Returns:** a [`BasinsResult`][].
    """
    check_throw(throw)
    latents = _check_batch(latents, "latents")
    points = _check_batch(points, "points")
    tol = _check_tol(tol)
    batch_size = _check_batch_size(batch_size)
    d_x = _check_sampler(sampler, latents)
    if d_x != points.shape[1]:
        raise ValueError(f"`points` must have the samples' dimension {d_x} columns, got shape "
                         f"{points.shape}.")
    samples = _sample(sampler, latents, batch_size)
    return _basins_from_samples(latents, samples, points, tol, throw)


def _basins_from_samples(latents, samples, points, tol, throw):
    res = _basins_jit(latents, samples, points, jnp.asarray(tol, samples.dtype))
    return raise_if_failed(res, res.result, throw,
                           hint="(`basins`: pass `throw=False` to count the failed latents as unassigned, "
                                "with a code per latent.)")


@jax.jit
def _basins_jit(latents, samples, points, tol):
    """Everything after the sampling, in one compiled program (eager, each small op compiles)."""
    nearest, dist = _nearest(samples, points)
    bad = ~jnp.all(jnp.isfinite(samples), axis=1)
    labels = jnp.where(bad | ~(dist <= tol), -1, nearest)
    n, m = latents.shape[0], points.shape[0]
    fractions = jnp.bincount(labels + 1, length=m + 1)[1:] / n
    unassigned = jnp.mean(labels < 0)
    return BasinsResult(latents=latents, samples=samples, points=points, nearest=nearest, distances=dist,
                        labels=labels, fractions=fractions,
                        stderr=jnp.sqrt(jnp.clip(fractions * (1 - fractions), 0.0) / n),
                        unassigned=unassigned,
                        unassigned_stderr=jnp.sqrt(jnp.clip(unassigned * (1 - unassigned), 0.0) / n),
                        tol=tol, result=_codes(bad))


# -- memorisation ----------------------------------------------------------------------------------


class MemorisationResult(AbstractResult):
    r"""Distances of samples to the nearest training point.

    - `samples` `(n, d)`, `points` `(m, d)`, `tol`.
    - `nearest` `(n,)`, `distances` `(n,)`: the nearest training point and the distance to it.
    - `fraction`: the fraction of samples within `tol` of a training point (memorised);
      `fraction_stderr`: its binomial standard error.
    - `median_distance`: the median of `distances`.
    - `second_distances` `(n,)`: the distance to the second-nearest training point (inf when
      $m = 1$); `ratio_fraction`, `ratio_stderr`: the fraction of samples with `distances` $<$
      `ratio` $\times$ `second_distances` (a copy of one point rather than a point between
      several: the scale-free criterion of Gu et al. 2023, `ratio` = 1/3) and its standard error.
    - `spacing`: the median nearest-neighbour distance between training points (a scale: a
      sample at a small fraction of it from a point copies that point).
    - `result`: [`jaxdyn.RESULTS`][]`.successful` (the samples are checked finite on input).
    """

    samples: Array
    points: Array
    nearest: Array
    distances: Array
    fraction: Array
    fraction_stderr: Array
    median_distance: Array
    second_distances: Array
    ratio_fraction: Array
    ratio_stderr: Array
    ratio: Array
    spacing: Array
    tol: Array
    result: RESULTS

    def summary(self) -> str:
        """The memorised fraction, the median distance and the training set's spacing."""
        return "\n".join([
            f"Memorisation of {np.shape(self.points)[0]} training points by {np.shape(self.samples)[0]} "
            f"samples (tol = {float(self.tol):g})",
            f"fraction within tol: {float(self.fraction):.4f} +- {float(self.fraction_stderr):.4f}; "
            f"median distance {float(self.median_distance):.4g} (training points' median "
            f"nearest-neighbour spacing {float(self.spacing):.4g})",
            f"fraction nearer than {float(self.ratio):.3g} x the second-nearest point: "
            f"{float(self.ratio_fraction):.4f} +- {float(self.ratio_stderr):.4f}",
            f"result: {message(self.result)}"])

    def plot(self, ax=None, **kwargs):
        """The distances' histogram; see [`jaxdyn.plot.plot_memorisation`][]."""
        from ..plot._generative import plot_memorisation

        return plot_memorisation(self, ax=ax, **kwargs)


def memorisation(samples, points, *, tol, ratio: float = 1 / 3) -> MemorisationResult:
    r"""How close samples are to the training set: the distance of each sample to its nearest
    training point, the fraction within `tol` (memorised: a copy of a training point up to `tol`),
    and the median distance.

    A model that generalises puts its samples between and around the training points (distances
    comparable to the training points' own spacing); a memorising one (the exact score of the
    empirical distribution, integrated to a small $t_{\min}$) puts them on the points (distances
    $\sim \sigma(t_{\min})$).

    **Arguments:**

    - `samples`: shape `(n, d)`, finite.
    - `points`: the training points, shape `(m, d)`, finite.
    - `tol`: the radius that counts as memorised (positive).
    - `ratio`: the scale-free criterion: a sample is a copy when its nearest training point is
      nearer than `ratio` times its second-nearest (default 1/3, Gu et al. 2023, "On memorization
      in diffusion models"); in $(0, 1]$.

    **Returns:** a [`MemorisationResult`][].
    """
    samples = _check_batch(samples, "samples")
    points = _check_batch(points, "points", dim=samples.shape[1])
    tol = _check_tol(tol)
    check_positive(ratio, "ratio")
    if is_concrete(ratio) and float(ratio) > 1:
        raise ValueError(f"`ratio` must lie in (0, 1], got {float(ratio)}.")
    return _memorisation_jit(samples, points, jnp.asarray(tol, samples.dtype),
                             jnp.asarray(ratio, samples.dtype))


@jax.jit
def _memorisation_jit(samples, points, tol, ratio):
    d2 = _squared_distances(samples, points)
    if points.shape[0] > 1:
        two = -jax.lax.top_k(-d2, 2)[0]
        dist, second = jnp.sqrt(two[:, 0]), jnp.sqrt(two[:, 1])
    else:
        dist, second = jnp.sqrt(d2[:, 0]), jnp.full(d2.shape[:1], jnp.inf, d2.dtype)
    nearest = jnp.argmin(d2, axis=1)
    n = samples.shape[0]
    inside = jnp.mean(dist <= tol)
    copies = jnp.mean(dist < ratio * second)
    if points.shape[0] > 1:
        _, nn = _nearest_other(points)
        spacing = jnp.median(nn)
    else:
        spacing = jnp.asarray(jnp.nan, samples.dtype)
    return MemorisationResult(samples=samples, points=points, nearest=nearest, distances=dist,
                              fraction=inside, fraction_stderr=jnp.sqrt(inside * (1 - inside) / n),
                              median_distance=jnp.median(dist), second_distances=second,
                              ratio_fraction=copies, ratio_stderr=jnp.sqrt(copies * (1 - copies) / n),
                              ratio=ratio, spacing=spacing, tol=tol, result=RESULTS.successful)


def _nearest_other(points):
    """Nearest other point of each point (index, distance)."""
    diff = points[:, None, :] - points[None, :, :]
    d2 = jnp.sum(diff**2, -1) + jnp.diag(jnp.full(points.shape[0], jnp.inf, points.dtype))
    idx = jnp.argmin(d2, 1)
    return idx, jnp.sqrt(jnp.min(d2, 1))


# -- FTLE of the sampling map ------------------------------------------------------------------------


def sampling_ftle(sampler: SamplingMap, latents, *, mesh=None, devices=None, throw: bool = True):
    r"""Finite-time Lyapunov exponents of the sampling map over the latent space:
    $\frac{1}{|t_1 - t_0|}\log\sigma_i(D\Phi(z))$ at every latent.

    Large values mark where nearby latents are sent far apart: the ridges between the modes of
    the learned distribution (the boundaries of the training points' basins for a memorising
    flow); negative ones where the flow contracts a region onto a mode. The field is integrated in
    the sampler's sampling time $u \in [0, 1]$ (forwards, whatever the direction of $t$) by
    [`jaxdyn.lyapunov.ftle_field`][] with the sampler's RK4 steps, so the exponents are those of
    exactly the map `sampler` computes, divided by the flow time it spans.

    **Arguments:**

    - `sampler`: a [`SamplingMap`][].
    - `latents`: shape `(..., d)` (e.g. a meshgrid stacked on the last axis, for
      [`jaxdyn.plot.plot_ftle_field`][]).
    - `mesh`, `devices`: split the latents over devices (as in `ftle_field`).
    - `throw`: raise if a sample or its Jacobian became non-finite (default), or with `False` a
      code per latent.

    **Returns:** a [`jaxdyn.lyapunov.FTLEResult`][] (`points` = the latents, `final_points` = the
    samples, `duration` = $|t_1 - t_0|$, exponents per unit of flow time).
    """
    from ..lyapunov import ftle_field

    sampler = _check_sampling_map(sampler)
    check_throw(throw)
    latents = _as_float(latents, "latents")
    if latents.ndim < 1 or latents.shape[-1] == 0 or latents.size == 0:
        raise ValueError(f"`latents` must have shape (..., d) with d >= 1, got {latents.shape}.")
    latents = check_finite(latents, "latents")
    res = ftle_field(sampler.field_u, sampler.scale.astype(latents.dtype) * latents, t1=1.0,
                     dt=1.0 / sampler.n_steps, mesh=mesh, devices=devices, throw=throw)
    span = sampler.duration.astype(res.exponents.dtype)
    exponents = (res.exponents + jnp.log(sampler.scale).astype(span.dtype)) / span
    return eqx.tree_at(lambda r: (r.points, r.exponents, r.duration), res, (latents, exponents, span))


# -- Lyapunov exponents along sampling trajectories ----------------------------------------------


class SamplingLyapunovResult(AbstractResult):
    r"""Lyapunov exponents along sampling trajectories.

    - `latents` `(n, d)`, `samples` `(n, d)`.
    - `exponents` `(n, k)`: the finite-time exponents of each trajectory, per unit of flow time
      ($\frac{1}{|t_1 - t_0|}(\log \text{scale} + \sum \log R_{ii})$ over the QR
      renormalisations: the map from the latent, as in [`sampling_ftle`][]).
    - `mean`, `stderr` `(k,)`: their average over the samples and its standard error.
    - `times` `(n_blocks + 1,)`: the flow times of the renormalisation grid, from $t_0$ to $t_1$.
    - `local_rates` `(n_blocks, k)`: the mean over samples of the growth rate of each tangent
      direction in each block, per unit of flow time ($\log R_{ii} / |\Delta t|$): when along the
      sampling the flow stretches (positive) or contracts (negative).
    - `result`: a [`jaxdyn.RESULTS`][] item per latent.
    """

    latents: Array
    samples: Array
    exponents: Array
    mean: Array
    stderr: Array
    times: Array
    local_rates: Array
    result: RESULTS

    def summary(self) -> str:
        """The mean exponents with their standard errors, and where the stretching peaks."""
        mean, se = np.asarray(self.mean), np.asarray(self.stderr)
        rates, times = np.asarray(self.local_rates), np.asarray(self.times)
        mid = 0.5 * (times[1:] + times[:-1])
        i = int(np.nanargmax(rates[:, 0])) if np.any(np.isfinite(rates[:, 0])) else 0
        j = int(np.nanargmin(rates[:, -1])) if np.any(np.isfinite(rates[:, -1])) else 0
        return "\n".join([
            f"Lyapunov exponents along {np.shape(self.latents)[0]} sampling trajectories, t from "
            f"{times[0]:g} to {times[-1]:g} (per unit of flow time)",
            "mean: " + ", ".join(f"{m:.4g} +- {s:.2g}" for m, s in zip(mean, se)),
            f"largest mean local rate (leading direction) {rates[i, 0]:.4g} at t ~ {mid[i]:.3g}; strongest "
            f"contraction {rates[j, -1]:.4g} at t ~ {mid[j]:.3g}",
            f"result: {message(self.result)}"])

    def plot(self, ax=None, **kwargs):
        """The local rates against flow time; see [`jaxdyn.plot.plot_sampling_lyapunov`][]."""
        from ..plot._generative import plot_sampling_lyapunov

        return plot_sampling_lyapunov(self, ax=ax, **kwargs)


def sampling_lyapunov(sampler: SamplingMap, latents, *, k: int | None = None, renorm_every: int = 1,
                      key=None, throw: bool = True) -> SamplingLyapunovResult:
    r"""Lyapunov exponents along sampling trajectories, averaged over the samples, and the local
    stretching rates against flow time.

    [`jaxdyn.lyapunov.flow_spectrum`][] (Benettin/QR, tangents by `jax.jvp`) runs on the sampler's
    field in sampling time (the same RK4 steps as the map), vmapped over the latents; the
    per-block $\log R_{ii}$ divided by the flow time of each block give the local rates. Over a
    whole trajectory the sum of the exponents is the log-volume change $\frac{1}{|t_1 - t_0|}
    \int \nabla\cdot f\,dt$ (the CNF's log-density change), and the exponents equal the
    [`sampling_ftle`][] exponents at the same latent up to the alignment of the tangents (exact
    for the sum).

    **Arguments:**

    - `sampler`: a [`SamplingMap`][]; `latents`: shape `(n, d)`.
    - `k`: how many exponents (default all); `renorm_every`: RK4 steps per QR block (a divisor
      of `sampler.n_steps`); `key`: the random initial tangents (a fixed default).
    - `throw`: raise if a trajectory or its tangents became non-finite (default), or with `False`
      a code per latent.

    **Returns:** a [`SamplingLyapunovResult`][].
    """
    from ..lyapunov import flow_spectrum

    sampler = _check_sampling_map(sampler)
    check_throw(throw)
    latents = _check_batch(latents, "latents")
    renorm_every = check_int(renorm_every, "renorm_every")
    n_steps = sampler.n_steps
    if n_steps % renorm_every:
        raise ValueError(f"`renorm_every` ({renorm_every}) must divide the sampler's `n_steps` ({n_steps}).")
    d = latents.shape[1]
    if k is not None:
        k = check_int(k, "k")
        if k > d:
            raise ValueError(f"`k` must be at most the dimension {d}, got {k}.")
    _check_sampler(sampler, latents)
    out = _lyapunov_runs(sampler, latents, k=k, renorm_every=renorm_every, key=key,
                         flow_spectrum=flow_spectrum)
    history, times_u, codes, samples = out
    n_blocks = n_steps // renorm_every
    us = jnp.arange(n_blocks + 1, dtype=latents.dtype) / n_blocks
    times = sampler.time(us)
    # history rows are running means over sampling time u: cumulative sums, then per-block increments
    cum = history * times_u[..., None]
    inc = jnp.diff(jnp.concatenate([jnp.zeros_like(cum[:, :1]), cum], axis=1), axis=1)
    dt_blocks = jnp.abs(jnp.diff(times))
    span = sampler.duration.astype(latents.dtype)
    exponents = (cum[:, -1] + jnp.log(sampler.scale).astype(span.dtype)) / span
    ok = jnp.all(jnp.isfinite(exponents), axis=1)
    n_ok = jnp.maximum(jnp.sum(ok), 1)
    mean = jnp.sum(jnp.where(ok[:, None], exponents, 0.0), 0) / n_ok
    var = jnp.sum(jnp.where(ok[:, None], (exponents - mean) ** 2, 0.0), 0) / jnp.maximum(n_ok - 1, 1)
    local = jnp.sum(jnp.where(ok[:, None, None], inc, 0.0), 0) / n_ok / dt_blocks[:, None]
    res = SamplingLyapunovResult(latents=latents, samples=samples, exponents=exponents, mean=mean,
                                 stderr=jnp.sqrt(var / n_ok), times=times, local_rates=local, result=codes)
    return raise_if_failed(res, codes, throw,
                           hint="(`sampling_lyapunov`: pass `throw=False` to get a code per latent.)")


@eqx.filter_jit
def _lyapunov_runs(sampler, latents, *, k, renorm_every, key, flow_spectrum):
    h = 1.0 / sampler.n_steps

    def one(z):
        r = flow_spectrum(sampler.field_u, sampler.scale.astype(z.dtype) * z, dt=h, n_steps=sampler.n_steps,
                          k=k, renorm_every=renorm_every, history_every=1, key=key, progress=False,
                          throw=False)
        return r.history, r.times, r.result, r.final_state

    hist, times, codes, finals = jax.vmap(one)(latents)
    return hist, times, codes, finals
