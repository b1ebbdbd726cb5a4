r"""Score-based diffusion models as dynamical systems: SDE schedules, scores and the probability-flow ODE.

A forward SDE $dx = f(t) x\,dt + g(t)\,dW$ on $t \in [0, T]$, $T = 1$, carries the data
distribution $p_0$ to a Gaussian prior; its marginals are $x_t = \alpha_t x_0 + \sigma_t \varepsilon$
with $\varepsilon \sim N(0, I)$. The probability-flow ODE

$$\frac{dx}{dt} = f(t) x - \tfrac12 g(t)^2 \nabla_x \log p_t(x)$$

has the same marginals as the SDE; integrated from $T$ down to a small $t_{\min} > 0$ it is a
deterministic sampling map $z \mapsto x$ from the prior's latent to data space (a continuous
normalizing flow run backwards in time), the object whose Lyapunov and basin structure
`jaxdyn` studies.

This module lives in `jaxdyn.models` beside [`jaxdyn.models.NeuralODE`][] and the CNF: a score
network is a model, trained like the others, and the probability flow is a neural ODE with a
fixed time reversal. The analyses of the sampling map (FTLE fields, basins, memorisation) build
on [`ProbabilityFlow.sample`][] from outside this module.

**Scores.** Every score is a callable `score(t, x)` of a scalar time and one state `x` of shape
`(d,)`, returning $\nabla_x \log p_t(x)$ of shape `(d,)` (no `args`: a score is a function of
the state, not a vector field; the vector field is [`ProbabilityFlow`][], which follows
diffrax's `(t, y, args)`). Batches by `jax.vmap`.
"""

import abc
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, from_diffrax, message, raise_if_failed
from .._types import Array, Key, Scalar
from ._cnf import CNF
from ._fit import FitResult, fit_result, guarded_step, run_chunks

T_END = 1.0
_DEFAULT_T_MIN = 1e-3
_DEFAULT_RTOL = 1e-6
_DEFAULT_ATOL = 1e-8


def _scalar(value: Any, name: str) -> float:
    if isinstance(value, bool | str) or np.ndim(value) != 0:
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.")
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.") from err
    if not np.isfinite(out):
        raise ValueError(f"`{name}` must be finite, got {out}.")
    return out


# ---------------------------------------------------------------------------------------------
# SDE schedules
# ---------------------------------------------------------------------------------------------


class AbstractSDE(eqx.Module):
    r"""A linear forward SDE $dx = f(t) x\,dt + g(t)\,dW$ on $[0, T]$, $T = 1$.

    Its transition from the data is Gaussian: $x_t \mid x_0 \sim N(\alpha_t x_0, \sigma_t^2 I)$.
    Subclasses give `alpha(t)`, `sigma(t)`, `drift(t, x)` ($= f(t) x$), `g2(t)` ($= g(t)^2$)
    and `prior_std` $s$ (the latent $z \sim N(0, I)$ starts the sampling at $x_T = s z$; the
    prior mean is zero). They satisfy $\frac{d}{dt}\alpha_t = f(t)\alpha_t$ and
    $\frac{d}{dt}\sigma_t^2 = 2 f(t) \sigma_t^2 + g(t)^2$, so that a Gaussian's marginals are
    carried exactly by the probability flow.
    """

    @abc.abstractmethod
    def alpha(self, t: Scalar) -> Array:
        """The mean factor $\\alpha_t$."""

    @abc.abstractmethod
    def sigma(self, t: Scalar) -> Array:
        """The noise standard deviation $\\sigma_t$ of $x_t \\mid x_0$."""

    @abc.abstractmethod
    def drift(self, t: Scalar, x: Array) -> Array:
        """The drift $f(t) x$."""

    @abc.abstractmethod
    def g2(self, t: Scalar) -> Array:
        """The squared diffusion coefficient $g(t)^2$."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """The standard deviation of the Gaussian prior at $T$."""


class VP(AbstractSDE):
    r"""The variance-preserving SDE of Song et al. (2021):
    $dx = -\tfrac12 \beta(t) x\,dt + \sqrt{\beta(t)}\,dW$,
    $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$.

    $\alpha_t = \exp(-\tfrac12 \int_0^t \beta)$, $\sigma_t^2 = 1 - \alpha_t^2$ (computed as
    `-expm1`, accurate at small $t$), prior $N(0, I)$ (`prior_std = 1`; at $T = 1$ with the
    defaults $\alpha_T \approx 6.6 \times 10^{-3}$).

    **Arguments:** `beta_min`, `beta_max`: $0 < \beta_{\min} \le \beta_{\max}$ (defaults 0.1, 20).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __check_init__(self):
        if is_concrete(self.beta_min) and is_concrete(self.beta_max):
            bmin, bmax = _scalar(self.beta_min, "beta_min"), _scalar(self.beta_max, "beta_max")
            if bmin <= 0:
                raise ValueError(f"`beta_min` must be positive, got {bmin}.")
            if bmax < bmin:
                raise ValueError(f"`beta_max` must be >= `beta_min` ({bmin}), got {bmax}.")

    def beta(self, t: Scalar) -> Array:
        """$\\beta(t)$."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha(self, t: Scalar) -> Array:
        return jnp.exp(-0.5 * self._integral(t))

    def sigma(self, t: Scalar) -> Array:
        return jnp.sqrt(-jnp.expm1(-self._integral(t)))

    def drift(self, t: Scalar, x: Array) -> Array:
        return -0.5 * self.beta(t) * x

    def g2(self, t: Scalar) -> Array:
        return self.beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0


class VE(AbstractSDE):
    r"""The variance-exploding SDE of Song et al. (2021): $dx = \sqrt{d\sigma(t)^2/dt}\,dW$,
    $\sigma(t) = \sigma_{\min} (\sigma_{\max}/\sigma_{\min})^t$.

    Convention: $\alpha_t = 1$ and $\sigma_t^2 = \sigma(t)^2 - \sigma_{\min}^2$ (the exact
    variance of the SDE started at the data, so $\sigma_0 = 0$ and $p_0$ is the data itself);
    $g(t)^2 = 2 \log(\sigma_{\max}/\sigma_{\min})\, \sigma(t)^2$. The prior is
    $N(0, \sigma_{\max}^2 I)$ (`prior_std = sigma_max`, which neglects $\sigma_{\min}^2$ and the
    data's spread: take $\sigma_{\max}$ near the largest distance between data points).

    **Arguments:** `sigma_min`, `sigma_max`: $0 < \sigma_{\min} < \sigma_{\max}$ (defaults 0.01, 10).
    """

    sigma_min: float = 0.01
    sigma_max: float = 10.0

    def __check_init__(self):
        if is_concrete(self.sigma_min) and is_concrete(self.sigma_max):
            smin, smax = _scalar(self.sigma_min, "sigma_min"), _scalar(self.sigma_max, "sigma_max")
            if smin <= 0:
                raise ValueError(f"`sigma_min` must be positive, got {smin}.")
            if smax <= smin:
                raise ValueError(f"`sigma_max` must be > `sigma_min` ({smin}), got {smax}.")

    def _log_ratio(self):
        return jnp.log(self.sigma_max / self.sigma_min)

    def alpha(self, t: Scalar) -> Array:
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))

    def sigma(self, t: Scalar) -> Array:
        # sigma_min^2 (r^{2t} - 1), by expm1 so that it stays accurate at small t
        return self.sigma_min * jnp.sqrt(jnp.expm1(2.0 * t * self._log_ratio()))

    def drift(self, t: Scalar, x: Array) -> Array:
        return jnp.zeros_like(x)

    def g2(self, t: Scalar) -> Array:
        return 2.0 * self._log_ratio() * (self.sigma_min * jnp.exp(t * self._log_ratio())) ** 2

    @property
    def prior_std(self) -> float:
        return float(self.sigma_max)


def as_sde(sde: Any, name: str = "sde") -> AbstractSDE:
    """`"vp"` -> `VP()`, `"ve"` -> `VE()`, a schedule unchanged; anything else a clear error."""
    if isinstance(sde, AbstractSDE):
        return sde
    if isinstance(sde, str):
        key = sde.strip().lower()
        if key == "vp":
            return VP()
        if key == "ve":
            return VE()
        raise ValueError(f'`{name}` must be "vp", "ve" or a schedule (VP(...), VE(...)), got {sde!r}.')
    raise TypeError(f'`{name}` must be "vp", "ve" or an AbstractSDE (VP(...), VE(...)), got '
                    f"{type(sde).__name__}.")


def _same_sde(a: AbstractSDE, b: AbstractSDE) -> bool:
    if type(a) is not type(b):
        return False
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    if not all(is_concrete(x) for x in la + lb):
        return True
    return len(la) == len(lb) and all(np.allclose(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _time(t, x):
    return jnp.asarray(t, dtype=x.dtype)


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def _float_array(x, name, ndim):
    x = jnp.asarray(x)
    if x.ndim != ndim:
        want = {1: "(d,)", 2: "(m, d)"}[ndim] if name != "cov" else "(d, d)"
        raise ValueError(f"`{name}` must have shape {want}, got {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


class GaussianScore(eqx.Module):
    r"""The exact score of Gaussian data $N(\mu, \Sigma)$ under a schedule.

    The marginal at time $t$ is $N(m_t, C_t)$ with $m_t = \alpha_t \mu$ and
    $C_t = \alpha_t^2 \Sigma + \sigma_t^2 I$, so $\nabla \log p_t(x) = -C_t^{-1}(x - m_t)$
    (by the eigendecomposition of $\Sigma$, computed once). All $C_t$ commute, and the
    probability flow from $s$ to $t$ is the linear map [`GaussianScore.transport`][]
    $x \mapsto m_t + C_t^{1/2} C_s^{-1/2}(x - m_s)$: the known answer of the sampling map.

    **Arguments:**

    - `mean`: $\mu$, shape `(d,)`, finite.
    - `cov`: $\Sigma$, shape `(d, d)`, symmetric positive definite.
    - `sde`: `"vp"`, `"ve"` or a schedule ([`VP`][], [`VE`][]); default `"vp"`.

    The eigendecomposition of $\Sigma$ is taken at construction (the fields `eigenvalues`,
    `eigenvectors`): to differentiate with respect to `cov`, build the score inside the
    differentiated function (`mean` may be swapped with `eqx.tree_at`).

    **Example:**

    ```python
    score = GaussianScore(jnp.zeros(2), jnp.eye(2), "vp")
    score(0.5, jnp.ones(2))          # = -x for the standard normal (C_t = I under VP)
    ```
    """

    mean: Array
    cov: Array
    eigenvalues: Array
    eigenvectors: Array
    sde: AbstractSDE

    def __init__(self, mean, cov, sde: Any = "vp"):
        mean = _float_array(mean, "mean", 1)
        cov = _float_array(cov, "cov", 2)
        d = mean.shape[0]
        if d == 0:
            raise ValueError("`mean` is empty (d = 0).")
        if cov.shape != (d, d):
            raise ValueError(f"`cov` must have shape ({d}, {d}) like `mean`, got {cov.shape}.")
        self.sde = as_sde(sde)
        mean = check_finite(mean, "mean")
        cov = check_finite(cov, "cov")
        if is_concrete(cov):
            c = np.asarray(cov, dtype=float)
            if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(c).max())):
                raise ValueError("`cov` must be symmetric (a covariance matrix).")
            low = np.linalg.eigvalsh(0.5 * (c + c.T)).min()
            if low <= 0:
                raise ValueError(f"`cov` must be positive definite, its smallest eigenvalue is {low:.3g}.")
        lam, vecs = jnp.linalg.eigh(0.5 * (cov + cov.T))
        self.mean, self.cov = mean, cov
        self.eigenvalues, self.eigenvectors = lam, vecs

    @property
    def size(self) -> int:
        """The dimension $d$."""
        return int(self.mean.shape[0])

    def _variances(self, t):
        a, s = self.sde.alpha(t), self.sde.sigma(t)
        return a, a**2 * self.eigenvalues + s**2

    def marginal(self, t: Scalar) -> tuple[Array, Array]:
        """$(m_t, C_t)$, the mean and covariance of $p_t$."""
        a, c = self._variances(t)
        return a * self.mean, (self.eigenvectors * c) @ self.eigenvectors.T

    def __call__(self, t: Scalar, x: Array) -> Array:
        """$\\nabla_x \\log p_t(x)$ for one `x` of shape `(d,)`."""
        t = _time(t, x)
        a, c = self._variances(t)
        y = self.eigenvectors.T @ (x - a * self.mean)
        return -self.eigenvectors @ (y / c)

    def log_density(self, t: Scalar, x: Array) -> Array:
        """$\\log p_t(x)$."""
        t = _time(t, x)
        a, c = self._variances(t)
        y = self.eigenvectors.T @ (x - a * self.mean)
        return -0.5 * (jnp.sum(y**2 / c) + jnp.sum(jnp.log(c)) + self.size * jnp.log(2 * jnp.pi))

    def transport(self, x: Array, s: Scalar, t: Scalar) -> Array:
        r"""The exact probability-flow map from time `s` to time `t`:
        $m_t + C_t^{1/2} C_s^{-1/2} (x - m_s)$."""
        s, t = _time(s, x), _time(t, x)
        a_s, c_s = self._variances(s)
        a_t, c_t = self._variances(t)
        y = self.eigenvectors.T @ (x - a_s * self.mean)
        return a_t * self.mean + self.eigenvectors @ (jnp.sqrt(c_t / c_s) * y)


class EmpiricalScore(eqx.Module):
    r"""The exact score of the empirical distribution of $m$ training points $x_1, \dots, x_m$
    (the memorising model: a network that minimised denoising score matching perfectly).

    $p_t$ is the mixture $\frac1m \sum_k N(\alpha_t x_k, \sigma_t^2 I)$ and

    $$\nabla \log p_t(x) = \sum_k w_k(t, x) \frac{\alpha_t x_k - x}{\sigma_t^2}, \qquad
    w(t, x) = \operatorname{softmax}_k\Big(-\frac{\|x - \alpha_t x_k\|^2}{2\sigma_t^2}\Big),$$

    the softmax computed stably (the largest logit subtracted), so that it stays finite down to
    small $t$ where the weights become one-hot. Under its probability flow every sample ends near
    a training point as $t_{\min} \to 0$ (at a distance of order $\sigma_{t_{\min}}$).

    **Arguments:**

    - `points`: the training points, shape `(m, d)`, `m >= 1`, finite.
    - `sde`: `"vp"`, `"ve"` or a schedule; default `"vp"`.
    """

    points: Array
    sde: AbstractSDE

    def __init__(self, points, sde: Any = "vp"):
        points = _float_array(points, "points", 2)
        if points.shape[0] == 0 or points.shape[1] == 0:
            raise ValueError(
                f"`points` must hold m >= 1 points of dimension d >= 1, got shape {points.shape}.")
        self.sde = as_sde(sde)
        self.points = check_finite(points, "points")

    @property
    def size(self) -> int:
        """The dimension $d$."""
        return int(self.points.shape[1])

    def _logits(self, t, x):
        a, s = self.sde.alpha(t), self.sde.sigma(t)
        return -jnp.sum((x - a * self.points) ** 2, axis=-1) / (2 * s**2), a, s

    def weights(self, t: Scalar, x: Array) -> Array:
        """The posterior weights $w_k(t, x)$ of the training points, shape `(m,)`."""
        t = _time(t, x)
        return jax.nn.softmax(self._logits(t, x)[0])

    def __call__(self, t: Scalar, x: Array) -> Array:
        """$\\nabla_x \\log p_t(x)$ for one `x` of shape `(d,)`."""
        t = _time(t, x)
        logits, a, s = self._logits(t, x)
        w = jax.nn.softmax(logits)
        return (a * (w @ self.points) - x) / s**2

    def log_density(self, t: Scalar, x: Array) -> Array:
        """$\\log p_t(x)$ of the Gaussian mixture (by `logsumexp`)."""
        t = _time(t, x)
        logits, _, s = self._logits(t, x)
        m, d = self.points.shape
        return jax.nn.logsumexp(logits) - jnp.log(m) - 0.5 * d * jnp.log(2 * jnp.pi * s**2)


class ScoreNetwork(eqx.Module):
    r"""A small score network $s_\theta(t, x)$: an MLP on $x$ and a time embedding.

    The input is $[x, t, \sin(\pi k t), \cos(\pi k t)]_{k=1..K}$ ($K$ = `n_frequencies`). With
    `sde` given, the output is divided by $\sigma_t$ (the network predicts $-\varepsilon$, the
    usual noise parametrisation: the score's $1/\sigma_t$ growth at small $t$ is built in);
    without, the MLP's output is the score.

    **Arguments:**

    - `d`: the data dimension; `width`, `depth`: the MLP's hidden width and number of hidden layers.
    - `key`: a `jax.random` key.
    - `sde`: `None`, `"vp"`, `"ve"` or a schedule (for the $1/\sigma_t$ output scaling).
    - `n_frequencies`: $K$ (default 4); `activation`: default `jax.nn.silu`.
    """

    mlp: eqx.nn.MLP
    sde: AbstractSDE | None
    d: int = eqx.field(static=True)
    n_frequencies: int = eqx.field(static=True)

    def __init__(self, d: int, width: int, depth: int, *, key: Key, sde: Any = None,
                 n_frequencies: int = 4, activation: Callable = jax.nn.silu):
        d = check_int(d, "d")
        width = check_int(width, "width")
        depth = check_int(depth, "depth", minimum=0)
        n_frequencies = check_int(n_frequencies, "n_frequencies", minimum=0)
        if not callable(activation):
            raise TypeError(f"`activation` must be callable, got {type(activation).__name__}.")
        self.sde = None if sde is None else as_sde(sde)
        self.d = d
        self.n_frequencies = n_frequencies
        self.mlp = eqx.nn.MLP(d + 1 + 2 * n_frequencies, d, width, depth, activation=activation, key=key)

    @property
    def size(self) -> int:
        """The dimension $d$."""
        return self.d

    def __call__(self, t: Scalar, x: Array) -> Array:
        """$s_\\theta(t, x)$ for one `x` of shape `(d,)`."""
        t = _time(t, x)
        k = jnp.pi * jnp.arange(1, self.n_frequencies + 1, dtype=x.dtype)
        inp = jnp.concatenate([x, t[None], jnp.sin(k * t), jnp.cos(k * t)])
        out = self.mlp(inp.astype(x.dtype))
        return out if self.sde is None else out / self.sde.sigma(t)


# ---------------------------------------------------------------------------------------------
# Denoising score matching
# ---------------------------------------------------------------------------------------------


def dsm_loss(score: Callable, xs: Array, key: Key, sde: Any = "vp", *,
             t_min: float = _DEFAULT_T_MIN) -> Array:
    r"""The denoising score-matching loss with the weight $\lambda(t) = \sigma_t^2$:

    $$\mathcal L = \frac1n \sum_i \big\| \sigma_{t_i} s(t_i, \alpha_{t_i} x_i + \sigma_{t_i}\varepsilon_i)
    + \varepsilon_i \big\|^2, \quad t_i \sim U[t_{\min}, 1],\ \varepsilon_i \sim N(0, I),$$

    minimised by the score of $p_t$ (its minimum over all functions is the empirical score of
    `xs`: [`EmpiricalScore`][]).

    **Arguments:** `score`: `score(t, x)`; `xs`: data, shape `(n, d)`; `key`: for $t_i$ and
    $\varepsilon_i$; `sde`: `"vp"`, `"ve"` or a schedule; `t_min`: the smallest time drawn.

    **Returns:** the scalar loss (differentiable in the score's parameters).
    """
    sde = as_sde(sde)
    kt, ke = jax.random.split(key)
    n = xs.shape[0]
    t = jax.random.uniform(kt, (n,), dtype=xs.dtype, minval=t_min, maxval=T_END)
    eps = jax.random.normal(ke, xs.shape, dtype=xs.dtype)
    a, s = jax.vmap(sde.alpha)(t), jax.vmap(sde.sigma)(t)
    xt = a[:, None] * xs + s[:, None] * eps
    pred = jax.vmap(score)(t, xt)
    return jnp.mean(jnp.sum((s[:, None] * pred + eps) ** 2, axis=-1))


@eqx.filter_jit
def _train_chunk(params, opt_state, failure, key, xs, steps, *, static, optimizer, sde, batch_size, t_min):
    """`len(steps)` DSM steps in one `lax.scan` (minibatches drawn with replacement); the first
    failure is carried as in [`jaxdyn.models.fit`][] and freezes the parameters."""

    def step(carry, i):
        kb, kl = jax.random.split(jax.random.fold_in(key, i))
        batch = xs[jax.random.randint(kb, (batch_size,), 0, xs.shape[0])]
        return guarded_step(carry, i, lambda q: dsm_loss(eqx.combine(q, static), batch, kl, sde, t_min=t_min),
                            optimizer)

    return lax.scan(step, (params, opt_state, failure), steps)


def train_score(score: eqx.Module, xs: Array, sde: Any = None, *, key: Key, n_steps: int = 2000,
                lr: float = 1e-3, batch_size: int = 256, t_min: float = _DEFAULT_T_MIN,
                optimizer: optax.GradientTransformation | None = None, chunk: int = 100,
                progress: bool = True, throw: bool = True) -> FitResult:
    r"""Train a score model by denoising score matching ([`dsm_loss`][]) with Adam on minibatches.

    The steps run in jitted `lax.scan` chunks of `chunk` steps (one compilation), with a tqdm
    progress bar between chunks (`progress=False` turns it off), as in [`jaxdyn.models.fit`][].

    **Arguments:**

    - `score`: an Equinox score model `score(t, x)` (e.g. [`ScoreNetwork`][]); its inexact array
      leaves are trained.
    - `xs`: the training data, shape `(n, d)`, finite.
    - `sde`: `"vp"`, `"ve"` or a schedule; default: `score.sde` when the model has one, else `"vp"`.
    - `key`: a `jax.random` key (minibatches, times and noises); `n_steps`, `lr`, `batch_size`,
      `t_min`: as named (`batch_size` may exceed `n`: minibatches are drawn with replacement).
    - `optimizer`: an optax optimiser (default `optax.adam(lr)`).
    - `throw`: on a non-finite loss, gradient or update `True` raises, `False` returns the last
      finite model with the result code.

    **Returns:** a [`FitResult`][] with the trained score (`model`) and the per-step losses.
    """
    check_throw(throw)
    if not isinstance(score, eqx.Module) or not callable(score):
        raise TypeError(f"`score` must be a callable Equinox module score(t, x), got {type(score).__name__}.")
    model_sde = getattr(score, "sde", None)
    sde = as_sde(sde) if sde is not None else (model_sde if isinstance(model_sde, AbstractSDE) else VP())
    if isinstance(model_sde, AbstractSDE) and not _same_sde(model_sde, sde):
        raise ValueError(f"`sde` ({sde}) differs from the score's own schedule `score.sde` ({model_sde}).")
    xs = _float_array(xs, "xs", 2)
    if xs.shape[0] == 0:
        raise ValueError(f"`xs` is empty (shape {xs.shape}): training needs n >= 1 points.")
    check_finite(xs, "xs")
    n_steps = check_int(n_steps, "n_steps")
    batch_size = check_int(batch_size, "batch_size")
    chunk = check_int(chunk, "chunk")
    t_min = _check_t_min(t_min)
    size = getattr(score, "size", None)
    if isinstance(size, int) and xs.shape[1] != size:
        raise ValueError(f"`xs` must have rows of dimension {size} like the score, got shape {xs.shape}.")
    try:
        out = jax.eval_shape(score, jnp.asarray(0.5, xs.dtype), xs[0])
    except Exception as err:  # noqa: BLE001 - re-raised with the arguments named
        raise ValueError(f"`score` failed on a row of `xs` (shape {tuple(xs.shape[1:])}); the error it "
                         "raised is shown above.") from err
    if getattr(out, "shape", None) != xs.shape[1:]:
        raise ValueError(f"`score` must return the shape of a row of `xs` {tuple(xs.shape[1:])}, got "
                         f"{getattr(out, 'shape', type(out).__name__)}.")
    if optimizer is None:
        check_positive(lr, "lr")
        optimizer = optax.adam(float(lr))
    params, static = eqx.partition(score, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    failure = (jnp.asarray(-1), RESULTS.successful)

    def run(carry, start, n):
        return _train_chunk(*carry, key, xs, jnp.arange(start, start + n), static=static,
                            optimizer=optimizer, sde=sde, batch_size=batch_size, t_min=t_min)

    carry, losses = run_chunks(run, (params, opt_state, failure), n_steps=n_steps, chunk=chunk,
                               progress=progress, desc="train_score")
    return fit_result(carry, static, losses, throw, hint=(
        "Training diverged at step {step} of `train_score`: lower `lr`, or pass `throw=False`."))


# ---------------------------------------------------------------------------------------------
# The probability-flow ODE
# ---------------------------------------------------------------------------------------------


def _check_t_min(t_min) -> float:
    if not is_concrete(t_min):
        raise TypeError("`t_min` must be a Python number (it fixes the end of the sampling integration).")
    value = _scalar(t_min, "t_min")
    if not 0.0 < value < T_END:
        raise ValueError(f"`t_min` must lie in (0, {T_END}) (the sampling runs from T = 1 down to it), "
                         f"got {value}.")
    return value


class ProbabilityFlowSolution(AbstractResult):
    """Output of [`ProbabilityFlow.solve`][] (batched under `vmap`).

    - `x`: the sample at $t_{\\min}$ (NaN after a failure), shape `(d,)`.
    - `ts`, `ys`: the saved times (decreasing from $T$ to $t_{\\min}$) and states, shapes `(k,)`
      and `(k, d)`, or `None` when no `ts` were asked for.
    - `result`: a `RESULTS` item (`successful`, `max_steps_reached`, `nonfinite_state`,
      `step_size_too_small`, ...); `num_steps`: the accepted steps.
    """

    x: Array
    ts: Array | None
    ys: Array | None
    num_steps: Array
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    def summary(self) -> str:
        """The number of samples, the steps taken and the result code's message."""
        x = np.asarray(self.x)
        n = 1 if x.ndim == 1 else int(np.prod(x.shape[:-1]))
        steps = np.asarray(self.num_steps)
        head = (f"probability flow: {n} sample(s) in {x.shape[-1]} dimensions, "
                f"{int(steps.max())} steps at most")
        text = message(self.result)
        return head if text == "successful" else f"{head}. FAILED: {text}"

    def plot(self, ax=None, **kwargs):
        """The sampling trajectories in the first two coordinates (dots at the samples); returns the axes."""
        from ..plot._plots import _axes

        _, ax = _axes(ax)
        x = np.asarray(self.x).reshape(-1, np.shape(self.x)[-1])
        if self.ys is not None:
            ys = np.asarray(self.ys)
            ys = ys.reshape(-1, *ys.shape[-2:])
            for path in ys:
                ax.plot(path[:, 0], path[:, 1] if path.shape[1] > 1 else np.zeros(len(path)),
                        lw=kwargs.get("lw", 0.6), alpha=kwargs.get("alpha", 0.5), color="tab:blue")
        ax.scatter(x[:, 0], x[:, 1] if x.shape[1] > 1 else np.zeros(len(x)), s=8, color="tab:red",
                   zorder=3, label="samples")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title("probability-flow sampling")
        return ax


class ProbabilityFlow(eqx.Module):
    r"""The probability-flow ODE of a score-based diffusion model, as a vector field and a sampler.

    $$\frac{dx}{dt} = v(t, x) = f(t) x - \tfrac12 g(t)^2\, s(t, x), \qquad t: T = 1 \to t_{\min},$$

    with $s$ the score. Called as `flow(t, x, args)` it is the field $v$ (diffrax's convention,
    `args` unused). [`ProbabilityFlow.sample`][] maps a latent $z \sim N(0, I)$ to
    $x_T = s z$ ($s$ = `sde.prior_std`) and integrates backwards in time from $T$ to $t_{\min}$: the
    sampling map. [`ProbabilityFlow.log_prob`][] is the log-density of the samples by the
    instantaneous change of variables: the flow is a [`CNF`][] with its time reversed
    ([`ProbabilityFlow.cnf`][]: $t_0 = T$, $t_1 = t_{\min}$, base $N(0, \text{prior\_std}^2 I)$),
    with the exact trace of $\partial v / \partial x$ or Hutchinson's estimate.

    **Integrator.** `diffrax.diffeqsolve` with `Tsit5` and a `PIDController(rtol=1e-6,
    atol=1e-8)` by default (the same defaults as [`NeuralODE`][]), `max_steps=4096`, reverse
    mode by `RecursiveCheckpointAdjoint`: `jax.grad`/`jax.jacrev` of samples and log-densities
    work; for `jax.jvp`/`jax.jacfwd` pass `adjoint=diffrax.DirectAdjoint()`. The end time
    $t_{\min} > 0$ (default $10^{-3}$, the usual choice of Song et al.) keeps the integration
    away from $t = 0$ where a data distribution's score (e.g. [`EmpiricalScore`][]) is singular;
    the samples are then draws of $p_{t_{\min}}$, the data blurred by $\sigma_{t_{\min}}$
    ($\approx 0.01$ for the default VP schedule).

    **Arguments:**

    - `score`: a callable `score(t, x)` (any of [`GaussianScore`][], [`EmpiricalScore`][],
      [`ScoreNetwork`][] or your own; an Equinox module is passed as data, so its parameters
      can be differentiated).
    - `sde`: `"vp"`, `"ve"` or a schedule; default: `score.sde` when the score has one, else
      `"vp"`. A schedule that differs from the score's own is a `ValueError`.
    - `t_min`: the final time, in $(0, 1)$.
    - `solver`, `stepsize_controller`, `dt0` (a positive step, applied backwards; required with
      a constant step size), `max_steps`, `adjoint`: passed to `diffrax.diffeqsolve`.

    **Example:**

    ```python
    flow = ProbabilityFlow(EmpiricalScore(points, "vp"))
    xs = jax.vmap(flow.sample)(jax.random.normal(key, (256, 2)))   # memorised samples
    ```
    """

    score: Any
    sde: AbstractSDE
    t_min: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(self, score: Callable, sde: Any = None, *, t_min: float = _DEFAULT_T_MIN,
                 solver: diffrax.AbstractSolver | None = None,
                 stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                 dt0: float | None = None, max_steps: int = 4096,
                 adjoint: diffrax.AbstractAdjoint | None = None):
        if not callable(score):
            raise TypeError(f"`score` must be a callable score(t, x), got {type(score).__name__}.")
        own = getattr(score, "sde", None)
        if sde is None:
            sde = own if isinstance(own, AbstractSDE) else VP()
        sde = as_sde(sde)
        if isinstance(own, AbstractSDE) and not _same_sde(own, sde):
            raise ValueError(f"`sde` ({sde}) differs from the score's own schedule `score.sde` ({own}): "
                             "the probability flow must use the schedule the score belongs to.")
        self.t_min = _check_t_min(t_min)
        if solver is None:
            solver = diffrax.Tsit5()
        elif not isinstance(solver, diffrax.AbstractSolver):
            raise TypeError(f"`solver` must be a diffrax solver, got {type(solver).__name__}.")
        if stepsize_controller is None:
            stepsize_controller = diffrax.PIDController(rtol=_DEFAULT_RTOL, atol=_DEFAULT_ATOL)
        elif not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
            raise TypeError("`stepsize_controller` must be a diffrax step-size controller, got "
                            f"{type(stepsize_controller).__name__}.")
        if dt0 is not None:
            check_positive(dt0, "dt0")
        if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
            raise ValueError("`dt0` is required with a constant step size.")
        if adjoint is None:
            adjoint = diffrax.RecursiveCheckpointAdjoint()
        elif not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise TypeError(f"`adjoint` must be a diffrax adjoint, got {type(adjoint).__name__}.")
        self.score = score
        self.sde = sde
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.dt0 = None if dt0 is None else float(dt0)
        self.max_steps = check_int(max_steps, "max_steps")

    @property
    def t1(self) -> float:
        """The start time $T = 1$ of the sampling."""
        return T_END

    def __call__(self, t: Scalar, x: Array, args: Any = None) -> Array:
        """The field $v(t, x) = f(t) x - \\frac12 g(t)^2 s(t, x)$."""
        t = _time(t, x)
        return self.sde.drift(t, x) - 0.5 * self.sde.g2(t) * self.score(t, x)

    # -- checks --------------------------------------------------------------------------------
    def _check_state(self, x, name):
        x = jnp.asarray(x)
        if x.ndim != 1 or x.shape[0] == 0:
            extra = f" (for a batch use jax.vmap(flow.{'sample' if name == 'z' else 'log_prob'}))" \
                if x.ndim == 2 else ""
            raise ValueError(f"`{name}` must have shape (d,), got {x.shape}{extra}.")
        size = getattr(self.score, "size", None)
        if isinstance(size, int) and x.shape != (size,):
            raise ValueError(f"`{name}` must have shape ({size},) like the score, got {x.shape}.")
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.result_type(float))
        x = check_finite(x, name)
        try:
            out = jax.eval_shape(self.score, jnp.asarray(0.5, x.dtype), x)
        except Exception as err:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(f"`score` failed when called as score(t, x) with x of shape {x.shape}; the "
                             "error it raised is shown above.") from err
        if getattr(out, "shape", None) != x.shape:
            raise ValueError(f"`score` must return the shape of `{name}` {x.shape}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}.")
        return x

    def _check_ts(self, ts, dtype):
        ts = jnp.asarray(ts, dtype=dtype)
        if ts.ndim != 1 or ts.shape[0] == 0:
            raise ValueError(f"`ts` must be a non-empty vector of times, got shape {ts.shape}.")
        if is_concrete(ts):
            check_finite(ts, "ts")
            arr = np.asarray(ts)
            if arr.max() > T_END or arr.min() < self.t_min or np.any(np.diff(arr) > 0):
                raise ValueError(f"`ts` must be non-increasing times in [t_min, 1] = [{self.t_min}, 1] "
                                 "(the sampling runs backwards in time).")
        return ts

    # -- solves --------------------------------------------------------------------------------
    def _integrate(self, term, y0, t0, t1, saveat):
        dt0 = None if self.dt0 is None else (self.dt0 if t1 > t0 else -self.dt0)
        return diffrax.diffeqsolve(term, self.solver, t0, t1, dt0, y0, saveat=saveat,
                                   stepsize_controller=self.stepsize_controller, adjoint=self.adjoint,
                                   max_steps=self.max_steps, throw=False)

    def solve(self, z: Array, *, ts: Array | None = None, throw: bool = True) -> ProbabilityFlowSolution:
        r"""The sampling map with its diagnosis: latent `z` (shape `(d,)`) $\to x_T = s z \to
        x_{t_{\min}}$ ($s$ = `prior_std`), saving the states at `ts` (non-increasing times in
        $[t_{\min}, 1]$) when given. `throw=False` returns the result code (under `jit`/`vmap`)
        instead of raising an `eqx.EquinoxRuntimeError`.

        **Returns:** a [`ProbabilityFlowSolution`][].
        """
        check_throw(throw)
        z = self._check_state(z, "z")
        ts = None if ts is None else self._check_ts(ts, z.dtype)
        saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(t1=True, ts=ts)
        x_T = self.sde.prior_std * z
        sol = self._integrate(diffrax.ODETerm(self), x_T, T_END, self.t_min, saveat)
        result = from_diffrax(sol.result)
        ok = result == RESULTS.successful
        x = jnp.where(ok, sol.ys[-1], jnp.nan)
        # the saved states (SaveAt order: ts, then t1); those after a failure are NaN
        ys = None if ts is None else jnp.where(jnp.isfinite(sol.ys[:-1]), sol.ys[:-1], jnp.nan)
        out = ProbabilityFlowSolution(x=x, ts=ts, ys=ys, num_steps=sol.stats["num_accepted_steps"],
                                  result=result)
        return raise_if_failed(out, result, throw, hint=(
            "in the probability-flow sampling: raise `max_steps`, check the score for NaN at small t, or "
            "pass `throw=False` to get the result code."))

    def sample(self, z: Array) -> Array:
        r"""The sample $x_{t_{\min}}$ of one latent `z` of shape `(d,)` (vmap over a batch: each
        sample takes its own adaptive steps). Raises `eqx.EquinoxRuntimeError` on a failed solve
        (use [`ProbabilityFlow.solve`][] with `throw=False` for the code)."""
        return self.solve(z).x

    def trajectory(self, z: Array, ts: Array | None = None, *, n_points: int = 101,
                   throw: bool = True) -> ProbabilityFlowSolution:
        """The sampling trajectory of `z` saved at `ts` (default `n_points` times evenly spaced from
        $T = 1$ down to $t_{\\min}$): a [`ProbabilityFlowSolution`][] with `ts` and `ys`."""
        if ts is None:
            n_points = check_int(n_points, "n_points", minimum=2)
            z_arr = jnp.asarray(z)
            dtype = z_arr.dtype if jnp.issubdtype(z_arr.dtype, jnp.inexact) else jnp.result_type(float)
            ts = jnp.linspace(T_END, self.t_min, n_points, dtype=dtype)
        return self.solve(z, ts=ts, throw=throw)

    def cnf(self, size: int | None = None, *, trace: str = "exact", noise: str = "rademacher") -> CNF:
        r"""The probability flow as a [`CNF`][] (its time reversed): field `self`, $t_0 = T = 1$
        (the prior's time), $t_1 = t_{\min}$ (the data's), base $N(0, \text{prior\_std}^2 I)$, and
        this flow's solver settings. `size`: $d$ (default `score.size`); `trace`, `noise`: as in
        [`CNF`][] (`"hutchinson"` for large $d$, with a `key` per call)."""
        if size is None:
            size = getattr(self.score, "size", None)
            if not isinstance(size, int):
                raise ValueError("`size` is required: the dimension d cannot be read from `score.size`.")
        size = check_int(size, "size")
        return CNF(self, t0=T_END, t1=self.t_min, trace=trace, noise=noise,
                   base=GaussianPrior(size, self.sde.prior_std), solver=self.solver,
                   stepsize_controller=self.stepsize_controller, dt0=self.dt0, adjoint=self.adjoint,
                   max_steps=self.max_steps)

    def log_prob(self, x: Array, *, key: Key | None = None, trace: str = "exact",
                 throw: bool = True) -> Array:
        r"""$\log p(x)$ of the model's samples (the push-forward of the prior by the sampling map)
        at one point `x` of shape `(d,)`, by the instantaneous change of variables of
        [`CNF.log_prob`][] (the flow as [`ProbabilityFlow.cnf`][]):

        $$\log p(x) = \log N(x_T; 0, \text{prior\_std}^2 I) + \int_{t_{\min}}^{T} \operatorname{tr}
        \frac{\partial v}{\partial x}(t, x_t)\, dt,$$

        with $x_t$ the flow run forwards from $x_{t_{\min}} = x$. `trace="exact"` (default: $d$
        forward tangents per step) or `"hutchinson"` (then `key` is required). Differentiable in
        `x` and in the score's parameters (reverse mode); vmap over points. `throw`: raise on a
        failed solve, or return NaN (`False`)."""
        check_throw(throw)
        x = self._check_state(x, "x")
        return self.cnf(x.shape[0], trace=trace).log_prob(x, key=key, throw=throw)


class GaussianPrior(eqx.Module):
    r"""The prior $N(0, s^2 I_d)$ of a probability flow, as a [`CNF`][] base density
    (`log_prob(z)`, `sample(key, n)`, `size`).

    **Arguments:** `size`: $d$; `std`: $s > 0$ (a schedule's `prior_std`).
    """

    size: int = eqx.field(static=True)
    std: float = eqx.field(static=True)

    def __init__(self, size: int, std: float = 1.0):
        self.size = check_int(size, "size")
        check_positive(std, "std")
        self.std = float(std)

    def log_prob(self, z: Array) -> Array:
        r"""$\log N(z; 0, s^2 I)$."""
        d = z.shape[-1]
        return (-0.5 * jnp.sum(z**2, axis=-1) / self.std**2 - d * jnp.log(self.std)
                - 0.5 * d * jnp.log(2 * jnp.pi))

    def sample(self, key: Key, n: int) -> Array:
        """`n` draws, shape `(n, d)`."""
        return self.std * jax.random.normal(key, (check_int(n, "n"), self.size), jnp.result_type(float))
