r"""Continuous normalizing flows: a neural ODE that carries $\log p$ (FFJORD's instantaneous
change of variables), with exact or Hutchinson traces, and maximum-likelihood training."""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, is_successful, message
from .._types import Args, Array, Key
from ._fit import FitResult, fit_result, guarded_step, run_chunks
from ._neural_ode import NeuralODE

_TRACES = ("exact", "hutchinson")
_NOISES = ("rademacher", "gaussian")
_LOG_2PI = float(np.log(2.0 * np.pi))
# exact traces up to this dimension unroll the d vector-Jacobian products (beyond: one vmap)
_UNROLL = 16


class StandardNormal(eqx.Module):
    r"""The standard normal base density $\mathcal N(0, I_d)$ of a [`CNF`][].

    Any other base is an object with the same two methods: `log_prob(z)` (a scalar, for one
    point of shape `(d,)`) and `sample(key, n)` (shape `(n, d)`), and a `size` attribute $d$.

    **Arguments:**

    - `size`: the dimension $d$.
    """

    size: int = eqx.field(static=True)

    def __init__(self, size: int):
        self.size = check_int(size, "size")

    def log_prob(self, z: Array) -> Array:
        r"""$\log \mathcal N(z; 0, I) = -\tfrac12 \|z\|^2 - \tfrac d2 \log 2\pi$."""
        return -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * z.shape[-1] * _LOG_2PI

    def sample(self, key: Key, n: int) -> Array:
        """`n` independent draws, shape `(n, d)`, in JAX's default floating dtype."""
        return jax.random.normal(key, (n, self.size), jnp.result_type(float))


def _as_time(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        if isinstance(value, jax.Array | np.ndarray) and np.shape(value) == () and is_concrete(value):
            value = float(value)
        else:
            raise TypeError(f"`{name}` must be a number (a constant of the flow), got "
                            f"{type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return value


class _Augmented(eqx.Module):
    r"""The augmented field in the solve's own time $s \in [0, |t_1 - t_0|]$: the model time is
    $t = t_{start} + \sigma s$ ($\sigma = \pm 1$), and the state $(z, \ell)$ obeys
    $dz/ds = \sigma f(t, z)$, $d\ell/ds = -\sigma \operatorname{tr} D_z f(t, z)$, so that
    $\ell(|t_1 - t_0|) = -\int_{t_{start}}^{t_{end}} \operatorname{tr} D_z f\, dt$. With `eps` the
    trace is Hutchinson's $\varepsilon^\top D_z f\, \varepsilon$ (one jvp); without it, exact:
    $\sum_i e_i^\top D_z f\, e_i$ from one linearisation and $d$ vector-Jacobian products (see
    [`CNF`][]). `rows`: the state is a batch `(B, d)` (the field mapped over the rows, one shared
    step size); the products are then taken on the whole batch at once (the rows are independent,
    so the batch Jacobian is block diagonal)."""

    field: Any
    eps: Array | None
    t_start: float = eqx.field(static=True)
    sign: float = eqx.field(static=True)
    rows: bool = eqx.field(static=True)
    with_trace: bool = eqx.field(static=True)

    def __call__(self, s, state, args):
        z = state[0] if self.with_trace else state
        t = self.t_start + self.sign * s
        if self.rows:
            f = lambda zz: jax.vmap(self.field, in_axes=(None, 0, None))(t, zz, args)
        else:
            f = lambda zz: self.field(t, zz, args)
        if not self.with_trace:
            return self.sign * f(z)
        if self.eps is None:
            fz, pullback = jax.vjp(f, z)
            d = z.shape[-1]
            if d <= _UNROLL:
                # d one-hot cotangents, one pullback each: measured cheaper to differentiate
                # (training) than d forward tangents (jacfwd), on CPU, by about a third
                tr = sum(pullback(jnp.zeros_like(fz).at[..., i].set(1))[0][..., i] for i in range(d))
            else:
                eye = jnp.eye(d, dtype=fz.dtype).reshape((d,) + (1,) * (fz.ndim - 1) + (d,))
                basis = jnp.broadcast_to(eye, (d,) + fz.shape)
                rows_of_jac = jax.vmap(pullback)(basis)[0]  # (d, ..., d): e_i^T Df
                tr = jnp.sum(jnp.diagonal(rows_of_jac, axis1=0, axis2=-1), axis=-1)
        else:
            fz, jv = jax.jvp(f, (z,), (self.eps,))
            tr = jnp.sum(self.eps * jv, axis=-1)
        return self.sign * fz, -self.sign * tr


class CNF(eqx.Module):
    r"""A continuous normalizing flow (FFJORD): a neural ODE that carries the log-density.

    The latent $z(t_0)$ is drawn from the base density $p_0$ (default $\mathcal N(0, I_d)$), the
    data point is $x = z(t_1)$ with $dz/dt = f(t, z, \text{args})$, and the instantaneous change
    of variables $d \log p(z(t))/dt = -\operatorname{tr} D_z f(t, z(t))$ gives

    $$\log p(x) = \log p_0(z(t_0)) - \int_{t_0}^{t_1} \operatorname{tr} D_z f(t, z(t))\, dt,$$

    computed by solving the augmented state $(z, \int \operatorname{tr})$ backwards from $x$ at
    $t_1$ to $t_0$. Any $t_0 \ne t_1$ is allowed ($t_1 < t_0$ runs the flow backwards in $t$: a
    probability-flow ODE whose time goes from $T$ down to a small $t_{min}$ is a CNF field with
    `t0=T, t1=t_min`).

    The solves reuse [`NeuralODE`][]'s integrator, adjoint policy and failure diagnosis: each
    is a [`NeuralODE`][] solve over $s \in [0, |t_1 - t_0|]$ with $t = t_{start} \pm s$, so `dt0`,
    `max_steps` and the tolerances mean what they mean there, and a time in a failure message
    counts from the start of that solve ($t_1$ for densities and inverses, $t_0$ for samples).

    **Arguments:**

    - `field`: any `(t, z, args)` field on $\mathbb{R}^d$, e.g.
      `MLPField(d, 64, 3, time_dependent=True, key=key)` (its array leaves are trained).
    - `t0`, `t1`: the times of the base and of the data (numbers, $t_0 \ne t_1$; defaults 0, 1).
    - `trace`: `"exact"` ($\sum_i e_i^\top D_z f\, e_i$: one linearisation of the field and $d$
      vector-Jacobian products per evaluation, for small $d$) or `"hutchinson"`
      ($\varepsilon^\top D_z f\, \varepsilon$ by one jvp, an unbiased estimate; $\varepsilon$ is
      drawn once per solve from the `key` given to the method and held fixed along the solve).
      The exact trace takes $d$ reverse products rather than $d$ forward tangents (`jacfwd`):
      the same cost forward, but a training step (reverse mode through them) measured about
      a third cheaper on CPU (moons, $d = 2$, batch 512: 32 against 51 ms).
    - `noise`: Hutchinson's $\varepsilon$, `"rademacher"` ($\pm 1$, the lower variance) or
      `"gaussian"`.
    - `base`: `None` ([`StandardNormal`][] of dimension $d$) or an object with `log_prob(z)`,
      `sample(key, n)` and `size`.
    - `size`: $d$, needed only when neither `field.size` nor `base.size` gives it.
    - `solver`, `stepsize_controller`, `dt0`, `adjoint`, `max_steps`: as in [`NeuralODE`][]
      (defaults `Tsit5()`, `PIDController(rtol=1e-6, atol=1e-8)`, `RecursiveCheckpointAdjoint()`).

    **Failures.** `log_prob`, `push`, `inverse`, `sample` and `batch_log_prob` take
    `throw=True` (raise an `eqx.EquinoxRuntimeError` with NeuralODE's diagnosis: blow-up,
    collapse of the step size, `max_steps`) or `throw=False` (NaN outputs where the solve
    failed); [`CNF.solve`][] returns a [`CNFSolution`][] with the result code.

    **Example:**

    ```python
    key = jax.random.key(0)
    cnf = CNF(MLPField(2, 32, 2, time_dependent=True, key=key))
    lp = cnf.log_prob(jnp.array([0.5, -0.2]))             # a scalar
    xs = cnf.sample(key, 100)                              # (100, 2)
    lps = jax.vmap(cnf.log_prob)(xs)                       # (100,)
    ```
    """

    field: Any
    base: Any
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    trace: str = eqx.field(static=True)
    noise: str = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)
    size: int = eqx.field(static=True)

    def __init__(self, field, *, t0: float = 0.0, t1: float = 1.0, trace: str = "exact",
                 noise: str = "rademacher", base=None, size: int | None = None,
                 solver: diffrax.AbstractSolver | None = None,
                 stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                 dt0: float | None = None, adjoint: diffrax.AbstractAdjoint | None = None,
                 max_steps: int | None = None):
        if not callable(field):
            raise TypeError(f"`field` must be a callable f(t, z, args), got {type(field).__name__}.")
        t0, t1 = _as_time(t0, "t0"), _as_time(t1, "t1")
        if t0 == t1:
            raise ValueError(f"`t1` must differ from `t0` (both {t0}): the flow would be the identity.")
        if not isinstance(trace, str) or trace not in _TRACES:
            raise ValueError(f"`trace` must be one of {_TRACES}, got {trace!r}.")
        if not isinstance(noise, str) or noise not in _NOISES:
            raise ValueError(f"`noise` must be one of {_NOISES}, got {noise!r}.")
        if size is not None:
            size = check_int(size, "size")
        sizes = {"size": size, "field.size": getattr(field, "size", None),
                 "base.size": None if base is None else getattr(base, "size", None)}
        known = {k: v for k, v in sizes.items()
                 if isinstance(v, int | np.integer) and not isinstance(v, bool)}
        if not known:
            raise ValueError("`size` is required: the dimension d can be read from neither `field.size` "
                             "nor `base.size`.")
        if len(set(known.values())) > 1:
            raise ValueError(f"`size`, `field` and `base` disagree on the dimension d: {known}.")
        d = int(next(iter(known.values())))
        if base is None:
            base = StandardNormal(d)
        elif not (callable(getattr(base, "log_prob", None)) and callable(getattr(base, "sample", None))):
            raise TypeError(f"`base` must have `log_prob(z)` and `sample(key, n)` methods, got "
                            f"{type(base).__name__}.")
        # NeuralODE validates the solver settings (the same errors, named the same way)
        ode = NeuralODE(field, state_size=d, t1=abs(t1 - t0), solver=solver,
                        stepsize_controller=stepsize_controller, dt0=dt0, adjoint=adjoint,
                        max_steps=max_steps)
        self.field = field
        self.base = base
        self.solver = ode.solver
        self.stepsize_controller = ode.stepsize_controller
        self.adjoint = ode.adjoint
        self.t0, self.t1 = t0, t1
        self.trace, self.noise = trace, noise
        self.dt0 = ode.dt0
        self.max_steps = max_steps
        self.size = d

    # -- pieces ----------------------------------------------------------------------------
    def _ode(self) -> NeuralODE:
        return NeuralODE(self.field, state_size=self.size, t1=abs(self.t1 - self.t0), solver=self.solver,
                         stepsize_controller=self.stepsize_controller, dt0=self.dt0, adjoint=self.adjoint,
                         max_steps=self.max_steps)

    def _check_point(self, y, name: str, *, batch: bool = False) -> Array:
        y = jnp.asarray(y)
        want = ("n", self.size) if batch else (self.size,)
        if y.ndim != len(want) or y.shape[-1] != self.size:
            hint = "" if batch else " (a batch: jax.vmap over the method, or batch_log_prob)"
            raise ValueError(f"`{name}` must have shape {want}".replace("'", "")
                             + f", got {tuple(y.shape)}{hint}.")
        if batch and y.shape[0] == 0:
            raise ValueError(f"`{name}` is empty (no rows).")
        if not jnp.issubdtype(y.dtype, jnp.inexact):
            y = y.astype(jnp.result_type(float))
        return check_finite(y, name)

    def _noise(self, key, shape, dtype) -> Array | None:
        if self.trace == "exact":
            return None
        if key is None:
            raise ValueError("`key` is required with trace='hutchinson': the noise epsilon is drawn once "
                             "per solve from it.")
        if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)) and not (
                isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}.")
        if self.noise == "rademacher":
            return jax.random.rademacher(key, shape, dtype)
        return jax.random.normal(key, shape, dtype)

    def _solve(self, y, key, args, *, forward: bool, rows: bool, with_trace: bool):
        """One NeuralODE solve of the augmented field from `y`: `forward` from t0 to t1 (latent
        to data), else from t1 to t0. Returns `(ode, run)`; the end state is `(z, ell)` with
        ell = -int_{start}^{end} tr."""
        start, end = (self.t0, self.t1) if forward else (self.t1, self.t0)
        sign = 1.0 if end > start else -1.0
        eps = self._noise(key, y.shape, y.dtype) if with_trace else None
        aug = _Augmented(self.field, eps, start, sign, rows, with_trace)
        ode = self._ode()
        ode._check_field(y[0] if rows else y, args)
        y0 = (y, jnp.zeros(y.shape[:-1], y.dtype)) if with_trace else y
        return ode, ode._run(aug, y0, args)

    def _finish(self, ode, run, value, throw: bool):
        if throw:
            return ode._throw(value, run)
        failed = ~is_successful(run.result)
        return jax.tree_util.tree_map(lambda a: jnp.where(failed, jnp.nan, a), value)

    # -- public ----------------------------------------------------------------------------
    def log_prob(self, x: Array, *, key: Key | None = None, args: Args = None, throw: bool = True) -> Array:
        r"""$\log p(x)$ for one point `x` of shape `(d,)` (a scalar).

        `key`: required with `trace="hutchinson"` (the noise of this solve; the result is then an
        unbiased-trace estimate). `throw`: raise on a failed solve, or return NaN (`False`).
        Vmappable (`jax.vmap(cnf.log_prob)(xs)` gives every point its own steps)."""
        check_throw(throw)
        x = self._check_point(x, "x")
        ode, run = self._solve(x, key, args, forward=False, rows=False, with_trace=True)
        z, ell = run.y_end
        return self._finish(ode, run, self.base.log_prob(z) - ell, throw)

    def batch_log_prob(self, xs: Array, *, key: Key | None = None, args: Args = None,
                       throw: bool = True) -> Array:
        r"""$\log p(x_i)$ for a batch `xs` of shape `(n, d)`, integrated as one state of shape
        `(n, d)` with **one shared step size** (as torchdiffeq/FFJORD do; several times faster
        to train than a vmap, whose loop runs until the slowest sample ends). Returns `(n,)`.
        With Hutchinson, one noise vector per row, drawn from `key`."""
        check_throw(throw)
        xs = self._check_point(xs, "xs", batch=True)
        ode, run = self._solve(xs, key, args, forward=False, rows=True, with_trace=True)
        z, ell = run.y_end
        return self._finish(ode, run, jax.vmap(self.base.log_prob)(z) - ell, throw)

    def push(self, z: Array, *, key: Key | None = None, args: Args = None,
             throw: bool = True) -> tuple[Array, Array]:
        r"""Push a latent `z` (shape `(d,)`) forward from $t_0$ to $t_1$: returns `(x, delta_logp)`
        with $\log p(x) = \log p_0(z) + \delta$, $\delta = -\int_{t_0}^{t_1} \operatorname{tr}
        D_z f\, dt$. `key` as in [`CNF.log_prob`][]."""
        check_throw(throw)
        z = self._check_point(z, "z")
        ode, run = self._solve(z, key, args, forward=True, rows=False, with_trace=True)
        return self._finish(ode, run, run.y_end, throw)

    def inverse(self, x: Array, *, args: Args = None, throw: bool = True) -> Array:
        """The latent $z(t_0)$ of a data point `x` (shape `(d,)`): the flow from $t_1$ back to
        $t_0$ without the trace (no key needed)."""
        check_throw(throw)
        x = self._check_point(x, "x")
        ode, run = self._solve(x, None, args, forward=False, rows=False, with_trace=False)
        return self._finish(ode, run, run.y_end, throw)

    def transform(self, z: Array, *, args: Args = None, throw: bool = True) -> Array:
        """The sampling map $z(t_0) \\mapsto x = z(t_1)$ for one latent `z` of shape `(d,)`
        (no trace): the map whose FTLE field and Lyapunov exponents jaxdyn's analyses compute."""
        check_throw(throw)
        z = self._check_point(z, "z")
        ode, run = self._solve(z, None, args, forward=True, rows=False, with_trace=False)
        return self._finish(ode, run, run.y_end, throw)

    def sample(self, key: Key, n: int, *, args: Args = None, throw: bool = True) -> Array:
        """`n` samples, shape `(n, d)`: latents drawn from the base with `key`, pushed from $t_0$
        to $t_1$ as one batch with a shared step size (no trace)."""
        check_throw(throw)
        n = check_int(n, "n")
        if key is None:
            raise ValueError("`key` is required to sample.")
        zs = self._check_point(self.base.sample(key, n), "base.sample(key, n)", batch=True)
        ode, run = self._solve(zs, None, args, forward=True, rows=True, with_trace=False)
        return self._finish(ode, run, run.y_end, throw)

    def solve(self, x: Array, *, key: Key | None = None, args: Args = None,
              throw: bool = True) -> "CNFSolution":
        r"""$\log p(x)$ with the solve's diagnosis: a [`CNFSolution`][] (`throw=False` works under
        `jit` and `vmap` and returns the result code instead of raising)."""
        check_throw(throw)
        x = self._check_point(x, "x")
        ode, run = self._solve(x, key, args, forward=False, rows=False, with_trace=True)
        z, ell = run.y_end
        ok = is_successful(run.result)
        nan = lambda a: jnp.where(ok, a, jnp.nan)
        sol = CNFSolution(x=x, z=run.y_end[0], log_prob=nan(self.base.log_prob(z) - ell),
                          log_det=nan(ell), result=run.result,
                          failed_time=jnp.where(ok, jnp.nan, run.t_end).astype(run.t_end.dtype),
                          num_steps=run.num_steps)
        return ode._throw(sol, run) if throw else sol


class CNFSolution(AbstractResult):
    r"""Output of [`CNF.solve`][]: one density evaluation and how its solve went.

    - `x`: the data point; `z`: its latent $z(t_0)$ (the last state reached on failure).
    - `log_prob`: $\log p(x)$; `log_det`: $\int_{t_0}^{t_1} \operatorname{tr} D_z f\, dt$
      ($= \log p_0(z) - \log p(x)$, the log-volume expansion of the sampling map); NaN on failure.
    - `result`: a `RESULTS` item; `failed_time`: the solve's time $s$ (counted from $t_1$)
      reached at the failure, NaN if none; `num_steps`: solver steps tried.
    """

    x: Array
    z: Array
    log_prob: Array
    log_det: Array
    result: RESULTS
    failed_time: Array
    num_steps: Array

    def summary(self) -> str:
        """$\\log p(x)$, the log-volume change and the result code's message (per batch member)."""
        lp = np.atleast_1d(np.asarray(self.log_prob, dtype=float))
        ld = np.atleast_1d(np.asarray(self.log_det, dtype=float))
        steps = np.atleast_1d(np.asarray(self.num_steps))
        lines = [f"CNF: log p(x) = {lp[i]:.6g}, int tr Df dt = {ld[i]:.6g} "
                 f"({int(steps[i % steps.size])} steps)" for i in range(lp.size)]
        return "\n".join(lines[:10] + ([f"... {lp.size - 10} more"] if lp.size > 10 else [])
                         + [message(self.result)])

    def plot(self, ax=None, **kwargs):
        """The data points and their latents, joined by a segment, coloured by $\\log p(x)$
        (the first two coordinates; `kwargs` go to `ax.scatter`). Returns the axes."""
        from ..plot._plots import _axes

        fig, ax = _axes(ax)
        x = np.asarray(self.x, dtype=float).reshape(-1, np.shape(self.x)[-1])
        z = np.asarray(self.z, dtype=float).reshape(x.shape)
        lp = np.asarray(self.log_prob, dtype=float).ravel()
        if x.shape[1] < 2:
            x, z = np.c_[x, np.zeros(len(x))], np.c_[z, np.zeros(len(z))]
        for a, b in zip(x, z, strict=True):
            ax.plot([a[0], b[0]], [a[1], b[1]], color="0.8", lw=0.6, zorder=0)
        ax.scatter(z[:, 0], z[:, 1], marker="x", color="0.5", s=12, label="latent $z(t_0)$")
        points = ax.scatter(x[:, 0], x[:, 1], c=lp, label="data $x$", **kwargs)
        fig.colorbar(points, ax=ax, shrink=0.9, label=r"$\log p(x)$")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(message(self.result))
        ax.legend(fontsize="small")
        return ax


def cnf_nll(model: CNF, xs: Array, ys: Array | None = None, *, key: Key | None = None,
            args: Args = None) -> Array:
    r"""The negative log-likelihood $-\frac1n \sum_i \log p(x_i)$ of a batch under a [`CNF`][].

    Usable as `loss_fn` of [`jaxdyn.models.fit`][] (which passes targets `ys`: they are ignored,
    give e.g. `jnp.zeros(len(xs))`): `fit(cnf, xs, jnp.zeros(len(xs)), loss_fn=cnf_nll)`. The
    batch is one state with a shared step size ([`CNF.batch_log_prob`][]). With
    `trace="hutchinson"` a `key` is needed (`functools.partial(cnf_nll, key=key)` holds one noise
    for the whole fit; [`train_cnf`][] draws a fresh one every step).
    """
    del ys
    return -jnp.mean(model.batch_log_prob(xs, key=key, args=args))


@eqx.filter_jit
def _train_chunk(params, opt_state, failure, data, keys, index, *, static, optimizer, loss, batch):
    xs = data

    def step(carry, inp):
        k, i = inp
        kb, kn = jax.random.split(k)
        if batch is None:
            xb = xs
        else:
            xb = xs[jax.random.choice(kb, xs.shape[0], (batch,), replace=False)]
        return guarded_step(carry, i, lambda pp: loss(eqx.combine(pp, static), xb, kn), optimizer)

    return jax.lax.scan(step, (params, opt_state, failure), (keys, index))


def train_cnf(model: CNF, xs: Array, *, key: Key, n_steps: int = 500, batch_size: int | None = None,
              lr: float = 1e-2, optimizer: optax.GradientTransformation | None = None,
              loss_fn: Callable | None = None, chunk: int = 50, progress: bool = True,
              desc: str = "train_cnf", throw: bool = True) -> FitResult:
    r"""Maximum-likelihood training of a [`CNF`][] by Adam steps on minibatches, with a fresh
    Hutchinson noise (and minibatch) drawn from `key` at every step.

    Like [`jaxdyn.models.fit`][] (jitted `lax.scan` chunks, a progress bar, the same failure
    policy and [`FitResult`][]), but for an unsupervised, keyed loss.

    **Arguments:**

    - `model`: a [`CNF`][]; `xs`: the data, shape `(n, d)`, finite.
    - `key`: a `jax.random` key (minibatches and the Hutchinson noise of every step).
    - `n_steps`: optimiser steps; `batch_size`: rows per step (`None`: the whole of `xs`).
    - `lr` or `optimizer`: Adam's learning rate, or any optax optimiser.
    - `loss_fn`: `loss_fn(model, xb, key)`, default `cnf_nll(model, xb, key=key)` (the key is
      ignored with the exact trace).
    - `chunk`, `progress`, `desc`, `throw`: as in [`jaxdyn.models.fit`][].

    **Returns:** a [`FitResult`][] (the trained CNF, the loss before every step, the result code).
    """
    if not isinstance(model, CNF):
        raise TypeError(f"`model` must be a CNF, got {type(model).__name__}.")
    check_throw(throw)
    n_steps = check_int(n_steps, "n_steps")
    chunk = check_int(chunk, "chunk")
    xs = model._check_point(xs, "xs", batch=True)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
        if batch_size > xs.shape[0]:
            raise ValueError(f"`batch_size` ({batch_size}) exceeds the number of rows of `xs` "
                             f"({xs.shape[0]}).")
    if key is None:
        raise ValueError("`key` is required (minibatches and Hutchinson noise).")
    check_positive(lr, "lr")
    optimizer = optax.adam(float(lr)) if optimizer is None else optimizer
    loss = (lambda m, xb, k: cnf_nll(m, xb, key=k)) if loss_fn is None else loss_fn
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    failure = (jnp.asarray(-1), RESULTS.successful)
    keys = jax.random.split(key, n_steps)

    def run(carry, start, n):
        return _train_chunk(*carry, xs, keys[start:start + n], jnp.arange(start, start + n), static=static,
                            optimizer=optimizer, loss=loss, batch=batch_size)

    carry, losses = run_chunks(run, (params, opt_state, failure), n_steps=n_steps, chunk=chunk,
                               progress=progress, desc=desc, postfix="nll", fmt=".4f")
    return fit_result(carry, static, losses, throw, hint=(
        "Training diverged at step {step} of `train_cnf`: lower the learning rate, or pass "
        "`throw=False` to get the last finite model and the result code."))
