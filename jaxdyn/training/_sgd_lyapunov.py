r"""SGD as a random dynamical system: the Lyapunov exponent at an interpolating minimum.

Chemnitz & Engel (arXiv 2407.20209, Theorem B): at a minimum $\theta^*$ that interpolates the data,
every mini-batch map $\theta \mapsto \theta - \eta\nabla L_\xi(\theta)$ fixes $\theta^*$; the
linearisation is the random product of $A_n = I - \eta H_{\xi_n}(\theta^*)$ over i.i.d.
mini-batches, and the sign of its top Lyapunov exponent $\lambda$ on the normal space decides
whether SGD can settle at $\theta^*$ ($\lambda < 0$: with positive probability; $\lambda > 0$: with
probability zero). By Jensen $\lambda \le \tfrac12\log\rho(\mathbb E[B\otimes B])$ (the mean-square
criterion), $B = U^\top A U$.

**Mini-batches** are drawn uniformly *without replacement within a batch* (a uniformly random
subset of `batch_size` distinct examples) and *independently across steps* (no epochs), so the
$A_n$ are i.i.d. as the theorem assumes. The mini-batch loss is the mean over the batch.

**Normal-space coordinates.** Everything is computed on $v \in \mathbb R^r$, $r = \operatorname{rank}
H$: a step is $v \mapsto U^\top(Uv - \eta H_\xi U v)$, which re-projects onto the normal space at
every step (rounding error in $\ker H$ is not damped by SGD, it would grow relative to the
contracting normal directions and drag the estimate to 0 within tens of steps).
"""

import functools
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from .._checks import check_int, check_positive, is_concrete
from .._deprecate import renamed_kwargs
from .._results import RESULTS, AbstractResult, check_throw, is_successful, message, raise_if_failed
from .._types import Array
from ..distributed._mesh import check_placement, gather as gather_tree, map_batches
from ..lyapunov import product_spectrum
from ..lyapunov._result import LyapunovResult
from ._sgd_normal import (
    AbstractCurvature,
    InterpolationCheckResult,
    NormalSpace,
    batch_mask,
    check_batch_size,
    check_data,
    check_lr,
    check_params_data,
    interpolation_check,
    mean_loss_fn,
    normal_space,
)


class _Problem(eqx.Module):
    """Linearised SGD at a minimum: the per-example loss, its normal space and the examples (one
    argument for the compiled pieces)."""

    loss: Callable
    space: NormalSpace
    data: Any


class _Run(eqx.Module):
    """Static settings of a sampled product (one compiled program per distinct value)."""

    n_steps: int = eqx.field(static=True)
    n_chains: int = eqx.field(static=True)
    transient_steps: int = eqx.field(static=True)
    k: int = eqx.field(static=True, default=1)
    mean_square: bool = eqx.field(static=True, default=True)
    gd_control: bool = eqx.field(static=True, default=True)
    progress: bool = eqx.field(static=True, default=False)


# -- GD exponent and the mean-square bound ---------------------------------------------------------


def gd_exponent(space: NormalSpace, lr) -> Array:
    r"""Full-batch GD exponent on the normal space, $\mu = \log\max_j |1 - \eta h_j|$.

    Differentiable in `lr` (where the maximising $j$ is unique and $1 - \eta h_j \ne 0$):
    $d\mu/d\eta = -h_j / (1 - \eta h_j)$ for the maximising $j$.
    """
    return jnp.log(jnp.max(jnp.abs(1 - lr * space.eigenvalues)))


# -- the deterministic case: every mini-batch matrix is the same -----------------------------------


def _spread(space: NormalSpace) -> Array:
    r"""$\max_i \|K_i - \bar K\|_F$ (absolute; $\infty$ when the factors are unavailable): 0 when
    every example has the same curvature on the normal space, so that every mini-batch matrix is
    the same. One $r\times r$ matrix at a time (`lax.map`), never all $n$ of them."""
    if space.factors is None:
        return jnp.asarray(jnp.inf, space.basis.dtype)
    return space.curvature.spread(space.factors)


def _deterministic(space: NormalSpace, batch_size) -> tuple[Array, Array]:
    r"""Whether the product is deterministic (`batch_size == n`, or all $K_i$ coincide to rounding),
    and the size of the perturbation of each step's matrix from $\bar K$ (0 for `B = n`)."""
    spread = _spread(space)
    tol = 1e3 * jnp.finfo(space.basis.dtype).eps * space.lambda_max
    full = jnp.asarray(batch_size) == space.n_examples
    return full | (spread <= tol), jnp.where(full, 0.0, spread)


def _exact_spectrum(space: NormalSpace, lr, k: int, perturbation) -> tuple[Array, Array]:
    r"""The top `k` exponents of the deterministic product $(I - \eta\,\mathrm{diag}(h))^N$:
    $\log|1 - \eta h_j|$ in descending order, and an accuracy figure for each: a perturbation
    $\delta$ of the step matrix moves $\log|1 - \eta h_j|$ by at most
    $\eta\delta/|1 - \eta h_j|$ to first order, with $\delta = \lambda_{\max}\cdot$
    `eig_residual` (the eigen-solver's residual) plus `perturbation`."""
    g = jnp.abs(1 - lr * space.eigenvalues)
    order = jnp.argsort(-g)[:k]
    delta = space.lambda_max * space.eig_residual + perturbation
    return jnp.log(g[order]), lr * delta / g[order]


def _kxk(space: NormalSpace, X: Array) -> Array:
    """$\\sum_i K_i X K_i$ with $K_i = U^\\top H_i U$."""
    return space.curvature.sandwich(space.factors, X)


def _ms_operator(space: NormalSpace, lr, batch_size: int):
    """$X \\mapsto \\mathbb E[B_\\xi X B_\\xi]$ exactly for batches drawn uniformly without
    replacement: with $G_\\xi = \\frac1B\\sum_{i\\in\\xi} K_i$, $P(i\\in\\xi) = B/n$ and
    $P(i, j\\in\\xi) = B(B-1)/(n(n-1))$ for $i \\ne j$, so
    $\\mathbb E[G X G] = c_1\\sum_i K_i X K_i + c_2 S X S$, $S = \\sum_i K_i = n\\,\\mathrm{diag}(h)$,
    $c_1 = \\frac{n - B}{Bn(n-1)}$, $c_2 = \\frac{B-1}{Bn(n-1)}$ (so $c_1 = 0$, $c_2 = n^{-2}$
    for $B = n$: GD)."""
    n, B = space.n_examples, batch_size
    if n == 1:
        c1, c2 = 0.0, 1.0
    else:  # B may be an array (a grid over batch sizes); at B = n, c1 = 0 and c2 = 1/n^2
        c1, c2 = (n - B) / (B * n * (n - 1)), (B - 1) / (B * n * (n - 1))
    d = space.eigenvalues
    s = n * d

    def T(X):
        first = X - lr * (d[:, None] * X + X * d[None, :])
        second = c1 * _kxk(space, X) + c2 * (s[:, None] * X * s[None, :])
        return first + lr**2 * second

    return T


def _mean_square_operator(space: NormalSpace, lr, batch_size):
    r"""$\mathrm{vec}(X) \mapsto \mathrm{vec}(\mathbb E[B_\xi X B_\xi])$ as a symmetric lineax
    operator, for Lanczos (`batch_size`: an int, or an array on a grid over batch sizes)."""
    import lineax as lx

    r = space.rank
    T = _ms_operator(space, lr, batch_size)
    return lx.FunctionLinearOperator(lambda v: T(v.reshape(r, r)).ravel(),
                                     jax.ShapeDtypeStruct((r * r,), space.basis.dtype),
                                     lx.symmetric_tag)


@renamed_kwargs(lanczos_iters="lanczos_steps")
def mean_square_bound(space: NormalSpace, lr, batch_size, *, dense_max_dim: int = 24,
                      lanczos_steps: int = 100) -> tuple[Array, Array]:
    r"""$\tfrac12\log\rho(\mathbb E[B_\xi\otimes B_\xi])$ on the normal space, the expectation taken
    exactly over all mini-batches (closed form, see `_ms_operator`), and an accuracy figure.

    $T: X\mapsto\mathbb E[BXB]$ is symmetric in the Frobenius inner product and maps positive
    semidefinite matrices to positive semidefinite ones, so $\rho(T)$ is its largest algebraic
    eigenvalue (Krein-Rutman). For `rank <= dense_max_dim` the $r^2\times r^2$ matrix is formed
    and diagonalised (exact; accuracy 0). Above, Lanczos with full reorthogonalisation
    ([`jaxdyn.curvature.top_eigenvalues`][], `lanczos_steps` steps); the top Ritz value plus its
    residual is returned (an upper estimate, so that the bound is not understated by an
    unconverged iteration), with accuracy = residual / Ritz value. NaN when the per-example
    factors are unavailable (a [`Hessian`][] normal space with rank above its `ms_max_dim`).

    **Arguments:** `space`: a [`NormalSpace`][]; `lr`: $\eta > 0$; `batch_size`: $1 \le B \le n$
    (an int, or an array under `jit`/`vmap`); `dense_max_dim`, `lanczos_steps`: as above
    (`lanczos_iters` is the deprecated spelling of `lanczos_steps`).

    **Returns:** `(bound, accuracy)`.
    """
    if not isinstance(space, NormalSpace):
        raise TypeError("`space` must be a NormalSpace from jaxdyn.training.normal_space, got "
                        f"{type(space).__name__}.")
    check_lr(lr)
    _check_batch_sizes(batch_size, space.n_examples)
    dense_max_dim = check_int(dense_max_dim, "dense_max_dim", minimum=0)
    lanczos_steps = check_int(lanczos_steps, "lanczos_steps")
    return _mean_square_bound(space, lr, batch_size, dense_max_dim=dense_max_dim,
                              lanczos_steps=lanczos_steps)


def _check_batch_sizes(batch_size, n: int) -> None:
    """An int in `[1, n]`, or (concrete) numbers in `[1, n]`; traced values are not checked."""
    if isinstance(batch_size, int | np.integer | bool):
        check_batch_size(batch_size, n)
    elif is_concrete(batch_size):
        b = np.asarray(batch_size)
        if not np.issubdtype(b.dtype, np.number) or not np.all((b >= 1) & (b <= n)):
            raise ValueError(f"`batch_size` must lie between 1 and the number of examples ({n}), "
                             f"got {batch_size}.")


@eqx.filter_jit
def _mean_square_bound(space: NormalSpace, lr, batch_size, *, dense_max_dim: int = 24,
                       lanczos_steps: int = 100) -> tuple[Array, Array]:
    r = space.rank
    dtype = space.basis.dtype
    zero = jnp.zeros((), dtype) + 0 * lr
    if space.factors is None:
        return zero + jnp.nan, zero + jnp.nan
    if r <= dense_max_dim:
        T = _ms_operator(space, lr, batch_size)
        basis = jnp.eye(r * r, dtype=dtype).reshape(r * r, r, r)
        M = jax.vmap(lambda E: T(E).ravel())(basis).T
        ev = jnp.linalg.eigvalsh((M + M.T) / 2)
        return 0.5 * jnp.log(jnp.max(jnp.abs(ev))), zero
    from ..curvature import top_eigenvalues

    eig = top_eigenvalues(_mean_square_operator(space, lr, batch_size), 1,
                          n_steps=min(r * r, lanczos_steps), tol=0.0, throw=False)
    top = eig.eigenvalues[0] + eig.residuals[0]
    return 0.5 * jnp.log(top), eig.residuals[0] / eig.eigenvalues[0]


class SGDLyapunovResult(AbstractResult):
    r"""The stability of SGD at an interpolating minimum.

    - `exponent`: the top Lyapunov exponent $\lambda$ on the normal space (per step);
      `stderr`: its standard error over the chains; `exponents`, `stderrs`: the top `k`.
    - `deterministic`: every mini-batch matrix is the same ($B = n$, or all examples have the same
      curvature on the normal space). The product is then $(I - \eta H)^N$ and the exponents are
      exact, $\log|1 - \eta h_j|$ (so `exponent == gd_exponent`); `stderrs` are then the
      accuracy figure from the eigen-solver's residual (see [`NormalSpace`][]), not a sampling
      error. A finite product from a random start would converge to them only at rate
      $\log(\text{overlap})/N$ plus a transient of order $1/(\eta\,\text{gap})$ steps, which is
      far too slow where the small curvatures cluster.
    - `gd_exponent`: full-batch GD, $\mu = \log\max_j|1 - \eta h_j|$.
    - `mean_square_bound`: $\tfrac12\log\rho(\mathbb E[B\otimes B])$ ($\ge\lambda$), NaN where not
      computed; `mean_square_accuracy`: 0 when exact (dense), else the power-iteration spread.
    - `lr`, `batch_size`, `n_examples`; `rank`: the normal-space dimension; `lambda_max`:
      $\lambda_{\max}(H)$; `gd_boundary`: $2/\lambda_{\max}$.
    - `check`: the [`InterpolationCheckResult`][]; `interpolating`: its verdict.
    - `eig_residual`, `null_residual`, `rtol`, `dropped_max`: the normal space's checks (see
      [`NormalSpace`][]).
    - `gd_control_shift`: shape `(k,)`, what was subtracted from the sampled product's estimate
      (`lyapunov.exponents`): the error of the same finite run on full-batch GD, whose exact value
      is known (see `gd_control` in [`sgd_lyapunov`][]); zeros with `gd_control=False`.
    - `lyapunov`: the [`LyapunovResult`][jaxdyn.lyapunov.LyapunovResult] of the sampled
      product (history, result code, steps; its exponents are the raw estimates, before the
      control shift; in the deterministic case the finite-$N$ simulation, whose running estimate
      tends to `exponent`).
    - `result`: a [`jaxdyn.RESULTS`][] code: `nonfinite_input` when the step size is non-finite,
      `nonfinite_curvature` when the normal-space curvatures are (both possible only under `jit`,
      where inputs are not checked), `nonfinite_tangent` when the product became non-finite
      (`lyapunov.failed_step` says at which step), `not_interpolating` when `params` failed the
      interpolation check (with `throw=False`; the exponents then describe the linearised map at
      a point that SGD does not fix), else `successful`. The exponents are NaN whenever the code
      is one of the first three.

    Properties: `sgd_stable` ($\lambda < 0$), `gd_stable` ($\mu < 0$), `significant`
    ($|\lambda| > 3$ stderr).
    """


    exponent: Array
    stderr: Array
    exponents: Array
    stderrs: Array
    gd_exponent: Array
    mean_square_bound: Array
    mean_square_accuracy: Array
    lr: Array
    lambda_max: Array
    gd_boundary: Array
    check: InterpolationCheckResult
    interpolating: Array
    eig_residual: Array
    null_residual: Array
    rtol: Array
    dropped_max: Array
    lyapunov: LyapunovResult
    deterministic: Array
    gd_control_shift: Array
    result: RESULTS
    batch_size: int = eqx.field(static=True)
    n_examples: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)

    @property
    def sgd_stable(self) -> Array:
        return self.exponent < 0

    @property
    def gd_stable(self) -> Array:
        return self.gd_exponent < 0

    @property
    def significant(self) -> Array:
        return jnp.abs(self.exponent) > 3 * self.stderr

    def summary(self) -> str:
        """A few lines with the numbers that decide stability."""
        exact = " (exact: every mini-batch matrix is the same)" if bool(self.deterministic) else ""
        failure = "" if bool(self.successful) else f"; FAILED: {message(self.result)}"
        return (f"SGD (eta={float(self.lr):.4g}, B={self.batch_size}/{self.n_examples}) on a "
                f"{self.rank}-dim normal space: lambda = {float(self.exponent):.4g} +- "
                f"{float(self.stderr):.2g}{exact}; GD mu = {float(self.gd_exponent):.4g} (boundary "
                f"eta = {float(self.gd_boundary):.4g}); mean-square bound "
                f"{float(self.mean_square_bound):.4f}; interpolation: {self.check.numbers()}{failure}")

    def plot(self, ax=None, **kwargs):
        """Running estimate with the GD exponent and the bound (see
        [`jaxdyn.plot.plot_sgd_lyapunov`][]); returns the axes."""
        from ..plot._sgd import plot_sgd_lyapunov

        fig = plot_sgd_lyapunov(self, ax=ax, **kwargs)
        return fig.axes[0] if ax is None else ax


# -- checks shared by the entry points -------------------------------------------------------------


@jax.custom_jvp
def _guard(arrays):
    return arrays


def _guard_jvp(primals, tangents):
    if any(not isinstance(t, SymbolicZero) for t in jax.tree_util.tree_leaves(tangents)):
        raise ValueError(
            "sgd_lyapunov is not differentiable with respect to `params`: the normal space is "
            "computed outside the differentiated program (its rank sets array shapes). "
            "Differentiate with respect to `lr`, or differentiate the curvature yourself.")
    return primals[0], tangents[0]


_guard.defjvp(_guard_jvp, symbolic_zeros=True)


def _no_params_derivative(params):
    """`params` unchanged; differentiating through it raises a `ValueError` naming `params`."""
    arrays, static = eqx.partition(params, eqx.is_inexact_array)
    return eqx.combine(_guard(arrays), static)


def _check_common(per_example_loss, data, batch_size, lr):
    if not callable(per_example_loss):
        raise TypeError(f"`per_example_loss` must be callable, got {type(per_example_loss).__name__}.")
    n = check_data(data)
    batch_size = check_batch_size(batch_size, n)
    lr = check_lr(lr)
    return n, batch_size, lr


def _space_for(per_example_loss, params, data, *, space, curvature, rtol, ms_max_dim) -> NormalSpace:
    """`space` (checked against `data`), or the normal space computed here."""
    if space is None:
        space = normal_space(per_example_loss, params, data, curvature=curvature, rtol=rtol,
                             ms_max_dim=ms_max_dim)
    elif not isinstance(space, NormalSpace):
        raise TypeError("`normal_space` must be a NormalSpace from jaxdyn.training.normal_space.")
    n = check_data(data)
    if space.n_examples != n:
        raise ValueError(f"`normal_space` was built for {space.n_examples} examples, `data` has {n}.")
    return space


def _check_interpolating(per_example_loss, params, data, *, loss_tol, grad_tol,
                         throw: bool) -> InterpolationCheckResult:
    """The interpolation check; with `throw`, a `ValueError` naming `params` when it fails (and
    its numbers are concrete: under `jit` the code goes into the result, see `raise_if_failed`)."""
    check = interpolation_check(per_example_loss, params, data, loss_tol=loss_tol, grad_tol=grad_tol,
                                throw=False)
    if throw and is_concrete(check.interpolating) and not bool(check.interpolating):
        raise ValueError(
            "`params` is not an interpolating minimum: " + check.numbers() + ". Train to "
            "interpolation (find_interpolating_minimum), loosen loss_tol/grad_tol, or pass "
            "throw=False.")
    return check


def _throw_policy(throw: bool, on_not_interpolating: str | None) -> bool:
    """`throw`, with the deprecated `on_not_interpolating` ('raise' -> True, 'flag' -> False)."""
    check_throw(throw)
    if on_not_interpolating is None:
        return throw
    if on_not_interpolating not in ("raise", "flag"):
        raise ValueError(f"`on_not_interpolating` must be 'raise' or 'flag', got {on_not_interpolating!r}.")
    warnings.warn("`on_not_interpolating` is deprecated: pass `throw=True` (for 'raise') or "
                  "`throw=False` (for 'flag'); it goes in jaxdyn 0.3.", DeprecationWarning, stacklevel=3)
    return throw and on_not_interpolating == "raise"


def _flag_not_interpolating(code: RESULTS, interpolating) -> RESULTS:
    """`not_interpolating` where the run itself succeeded but `params` failed the check
    (elementwise for a batch of codes)."""
    bad = ~jnp.asarray(interpolating)

    def flag(c):
        return RESULTS.where(is_successful(c) & bad, RESULTS.not_interpolating, c)

    for _ in range(jnp.ndim(code._value)):
        flag = jax.vmap(flag)
    return flag(code)


# -- the sampled product ---------------------------------------------------------------------------


def _exponents(problem: _Problem, lr, batch_size, key, run: _Run) -> LyapunovResult:
    space = problem.space
    sample = space.curvature.sampler(space, problem.loss, problem.data, lr, batch_size)
    return product_spectrum(sample, key, dim=space.rank, n_steps=run.n_steps, k=run.k,
                            n_chains=run.n_chains, transient_steps=run.transient_steps,
                            dtype=space.basis.dtype, progress=run.progress, throw=False)


class _GDSample(eqx.Module):
    r"""Full-batch GD in normal coordinates, $v \mapsto (1 - \eta h) \odot v$ (deterministic)."""

    gain: Array

    def __call__(self, key):
        return lambda v: self.gain * v


def _gd_control_shift(space: NormalSpace, lr, key, run: _Run) -> Array:
    r"""The finite-run error of the same estimator on full-batch GD: the product of
    $I - \eta\,\mathrm{diag}(h)$ run with the same start block (same `key`), the same transient and
    length, minus its exact exponents. It is the error of starting from a random tangent block
    (about $\log(\text{overlap})/N$, and a transient of order $1/(\eta\,\text{gap})$ where the small
    curvatures cluster), which a mini-batch product shares where it is close to GD (small
    $\eta$ or $B$ close to $n$); it tends to 0 as $N \to \infty$."""
    gd = product_spectrum(_GDSample(1 - lr * space.eigenvalues), key, dim=space.rank,
                          n_steps=run.n_steps, k=run.k, n_chains=1,
                          transient_steps=run.transient_steps, dtype=space.basis.dtype,
                          progress=False, throw=False)
    exact, _ = _exact_spectrum(space, lr, run.k, 0.0)
    return gd.exponents - exact


def _select(space: NormalSpace, lr, batch_size, lyap: LyapunovResult, *, exps, stderrs):
    """The exact exponents where the product is deterministic, the sampled ones elsewhere, and the
    result code."""
    det, perturbation = _deterministic(space, batch_size)
    exact, accuracy = _exact_spectrum(space, lr, exps.shape[-1], perturbation)
    exps = jnp.where(det, exact, exps)
    stderrs = jnp.where(det, accuracy, stderrs)
    bad_lr = ~jnp.isfinite(lr)
    bad_curvature = ~jnp.all(jnp.isfinite(space.eigenvalues))
    bad_product = jnp.any(lyap.failed_step >= 0) | ~jnp.all(jnp.isfinite(exps))
    code = RESULTS.where(
        bad_lr, RESULTS.nonfinite_input,
        RESULTS.where(bad_curvature, RESULTS.nonfinite_curvature,
                      RESULTS.where(bad_product, RESULTS.nonfinite_tangent, RESULTS.successful)))
    ok = is_successful(code)
    return jnp.where(ok, exps, jnp.nan), jnp.where(ok, stderrs, jnp.nan), det, code


def _estimate(problem: _Problem, lr, batch_size, key, run: _Run):
    """The sampled product, the GD control shift and the selected exponents:
    `(lyap, exps, stderrs, deterministic, code, shift)`."""
    lyap = _exponents(problem, lr, batch_size, key, run)
    stderrs = lyap.stderr if lyap.stderr is not None else jnp.full_like(lyap.exponents, jnp.nan)
    if run.gd_control:
        shift = _gd_control_shift(problem.space, lr, key, run)
    else:
        shift = jnp.zeros_like(lyap.exponents)
    exps, stderrs, det, code = _select(problem.space, lr, batch_size, lyap,
                                       exps=lyap.exponents - shift, stderrs=stderrs)
    return lyap, exps, stderrs, det, code, shift


def _assemble(problem: _Problem, lr, batch_size, key, check: InterpolationCheckResult,
              run: _Run) -> SGDLyapunovResult:
    space = problem.space
    lyap, exps, stderrs, det, code, shift = _estimate(problem, lr, batch_size, key, run)
    dtype = space.basis.dtype
    if run.mean_square:
        msb, msa = _mean_square_bound(space, lr, batch_size)
    else:
        msb = msa = jnp.asarray(jnp.nan, dtype) + 0 * lr
    return SGDLyapunovResult(
        exponent=exps[0], stderr=stderrs[0], exponents=exps, stderrs=stderrs,
        gd_exponent=gd_exponent(space, lr), mean_square_bound=msb, mean_square_accuracy=msa,
        lr=jnp.asarray(lr, dtype), lambda_max=space.lambda_max, gd_boundary=2 / space.lambda_max,
        check=check, interpolating=check.interpolating, eig_residual=space.eig_residual,
        null_residual=space.null_residual, rtol=space.rtol, dropped_max=space.dropped_max,
        lyapunov=lyap, deterministic=det, gd_control_shift=shift,
        result=_flag_not_interpolating(code, check.interpolating), batch_size=batch_size,
        n_examples=space.n_examples, rank=space.rank,
    )


_assemble_jit = eqx.filter_jit(_assemble)


# -- the entry point -------------------------------------------------------------------------------


def sgd_lyapunov(per_example_loss, params, data, *, lr, batch_size: int, key, n_steps: int = 2000,
                 n_chains: int = 8, k: int = 1, transient_steps: int = 100,
                 curvature: AbstractCurvature | None = None, normal_space: NormalSpace | None = None,
                 rtol: float | None = None, mean_square: bool = True, ms_max_dim: int = 64,
                 loss_tol: float = 1e-10, grad_tol: float = 1e-6, progress: bool = False,
                 throw: bool = True, gd_control: bool = True,
                 on_not_interpolating: str | None = None) -> SGDLyapunovResult:
    r"""Top Lyapunov exponent(s) of SGD linearised at an interpolating minimum, on the normal space.

    $\lambda = \lim_N \frac1N\log\|B_N\cdots B_1\|$ with $B_n = U^\top(I - \eta H_{\xi_n})U$, by
    [`jaxdyn.lyapunov.product_spectrum`][] (QR renormalisation every step, independent chains).
    With a one-dimensional normal space $\lambda = \mathbb E\log|1 - \eta h_\xi|$ exactly.

    **Arguments:**

    - `per_example_loss(params, example) -> scalar`: the loss of one example, $\ell_i \ge 0$.
    - `params`: the minimum $\theta^*$ (any PyTree of float arrays, e.g. an Equinox model's
      parameters).
    - `data`: a PyTree whose leaves share the leading axis $n$ (the examples).
    - `lr`: the step size $\eta > 0$ (an array: new values do not recompile; vmappable through
      [`sgd_stability_diagram`][]). `batch_size`: $B \le n$; batches are drawn uniformly without
      replacement within a batch, i.i.d. across steps.
    - `key`: the chains' randomness. `n_steps`, `n_chains`, `transient_steps`: the product
      length, the number of independent chains (the standard error needs 2 or more) and the
      steps run before counting (aligning the tangent block). `k`: how many exponents.
    - `curvature`: [`Hessian`][] (default, exact HVPs) or [`GaussNewton`][]`(residual_fn)`
      (squared losses: exact at interpolation, faster). `normal_space`: a precomputed
      [`NormalSpace`][] (reused across step sizes and batch sizes); `rtol`, `ms_max_dim`: passed
      to [`normal_space`][] when it is computed here.
    - `mean_square`: also compute the mean-square bound ([`mean_square_bound`][]).
    - `loss_tol`, `grad_tol`: the interpolation check ([`interpolation_check`][]).
    - `progress`: a progress bar for the product.
    - `throw`: with `True` (default) a `params` that fails the interpolation check is a
      `ValueError` (before anything is run), and a failed run (a non-finite exponent, possible only
      under `jit` with non-finite traced inputs, or an overflowing product) raises its
      [`jaxdyn.RESULTS`][] message (through `eqx.error_if` under `jit`, where the check's verdict
      is traced too). With `False` the code is returned in `result` (`not_interpolating`, with
      `interpolating=False`: the exponent then describes the linearised map at a point that SGD
      does not fix).
    - `on_not_interpolating`: deprecated; `"raise"` is `throw=True`, `"flag"` is `throw=False`.

    **Deterministic products.** With `batch_size == n` (or when every example has the same
    curvature on the normal space) every step multiplies by the same $I - \eta H$: the exponents
    are then returned exactly, $\log|1 - \eta h_j|$ (`deterministic=True`), instead of the
    finite-$N$ estimate, which from a random start is biased low by about
    $\log(\text{overlap})/N$ plus a transient of $1/(\eta\,\text{gap})$ steps.

    **Control variate (`gd_control`, default on).** The finite-$N$ estimate from a random start
    block carries an error that does not shrink with more chains: $\log(\text{overlap})/N$ and a
    transient of $1/(\eta\,\text{gap})$ steps, which where the small curvatures cluster is
    several times $|\lambda|$ itself. The same run on full-batch GD (the deterministic product
    $I - \eta\,\mathrm{diag}(h)$, same start block, same length; cheap, $O(r)$ per step) has that
    error exactly computable, and it is subtracted (`gd_control_shift`). The estimator stays
    consistent (the shift tends to 0 as $N\to\infty$). Where the mini-batch product is close to GD
    (small $\eta$, $B$ close to $n$: where $|\lambda|$ is tiny and its sign is in question) both
    runs share their start-up error and the shift removes it. Elsewhere the two start-up errors
    are independent draws of the same law (the start block is isotropic): the raw estimate is
    biased low by about $(\psi(r/2) - \psi(1/2))/(2N)$ with spread $\approx 1.1/N$, the shifted
    one is unbiased to this order with spread $\approx 1.6/N$, small against $|\lambda|$ there.
    `stderr` is the spread between chains (which share the start block) and includes neither.

    **Derivatives.** With respect to `lr`: in the deterministic case the exact
    $d\mu/d\eta$; otherwise the pathwise derivative of the finite-$N$ estimate at fixed batch
    draws (the same `key`), i.e. the derivative of the number returned, not of the limit
    $\lambda$ (it converges to $d\lambda/d\eta$ only where $\lambda$ is differentiable, and its
    sampling error is not reported). With respect to `params`: not defined here (the normal space
    is computed eagerly, its rank sets array shapes); `jax.grad` raises a `ValueError` naming
    `params`. `batch_size`, `n_steps`, `n_chains`, `k` are integers (no derivative).

    **Returns:** an [`SGDLyapunovResult`][].

    **Example:**

    ```python
    res = sgd_lyapunov(loss, params, (x, y), lr=1.0, batch_size=1, key=jax.random.key(0))
    res.exponent, res.stderr, res.gd_exponent, res.mean_square_bound
    ```
    """
    throw = _throw_policy(throw, on_not_interpolating)
    n, batch_size, lr = _check_common(per_example_loss, data, batch_size, lr)
    run = _Run(n_steps=check_int(n_steps, "n_steps"), n_chains=check_int(n_chains, "n_chains"),
               transient_steps=check_int(transient_steps, "transient_steps", minimum=0),
               k=check_int(k, "k"), mean_square=bool(mean_square), gd_control=bool(gd_control),
               progress=bool(progress))
    check_params_data(params, data)
    params = _no_params_derivative(params)
    check = _check_interpolating(per_example_loss, params, data, loss_tol=loss_tol,
                                 grad_tol=grad_tol, throw=throw)
    space = _space_for(per_example_loss, params, data, space=normal_space, curvature=curvature,
                       rtol=rtol, ms_max_dim=ms_max_dim)
    lr = jnp.asarray(lr).astype(space.basis.dtype)  # one precision: a float64 `lr` with float32 params
    if run.k > space.rank:
        raise ValueError(f"`k` ({run.k}) must be at most the normal-space rank ({space.rank}).")
    assemble = _assemble if run.progress else _assemble_jit  # one compiled program unless a bar
    out = assemble(_Problem(per_example_loss, space, data), lr, batch_size, key, check, run)
    return raise_if_failed(out, out.result, throw,
                           hint="(`sgd_lyapunov`: pass `throw=False` to get the result with its code.)")


# -- stability diagram -----------------------------------------------------------------------------


class SGDStabilityDiagramResult(AbstractResult):
    r"""Lyapunov exponents of SGD over a grid of step sizes and batch sizes.

    - `lrs`: shape `(m,)`; `batch_sizes`: a tuple of `nb` ints.
    - `exponent`, `stderr`, `mean_square_bound`: shape `(nb, m)`.
    - `gd_exponent`: shape `(m,)`; `lambda_max`, `gd_boundary` ($2/\lambda_{\max}$).
    - `deterministic`: shape `(nb,)`, the rows whose product is deterministic ($B = n$, or every
      example has the same curvature): their exponent is exact and equals `gd_exponent`, their
      `stderr` is the eigen-solver's accuracy figure (see [`SGDLyapunovResult`][]).
    - `gd_control_shift`: shape `(m,)`, what was subtracted from the sampled estimates of every
      row at each step size (the GD control variate, see [`sgd_lyapunov`][]).
    - `result`: shape `(nb, m)`, a [`jaxdyn.RESULTS`][] code per cell (`nonfinite_tangent` where the
      product became non-finite, `not_interpolating` everywhere when `params` failed the
      interpolation check and `throw=False`).
    - `sgd_stable` / `gd_stable`: signs; `disagree`: where the two differ and $\lambda$ is
      farther than 3 standard errors from 0.
    """

    lrs: Array
    exponent: Array
    stderr: Array
    mean_square_bound: Array
    deterministic: Array
    gd_control_shift: Array
    result: RESULTS
    gd_exponent: Array
    lambda_max: Array
    gd_boundary: Array
    batch_sizes: tuple = eqx.field(static=True)
    n_examples: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)

    @property
    def sgd_stable(self) -> Array:
        return self.exponent < 0

    @property
    def gd_stable(self) -> Array:
        return jnp.broadcast_to(self.gd_exponent < 0, self.exponent.shape)

    @property
    def disagree(self) -> Array:
        sure = jnp.abs(self.exponent) > 3 * self.stderr
        return sure & (self.sgd_stable != self.gd_stable)

    def summary(self) -> str:
        exp, dis = np.asarray(self.exponent), np.asarray(self.disagree)
        return (f"SGD stability diagram: {len(self.lrs)} step sizes x batch sizes "
                f"{list(self.batch_sizes)} (n = {self.n_examples}, a {self.rank}-dim normal "
                f"space); GD boundary eta = 2/lambda_max = {float(self.gd_boundary):.4g}. "
                f"GD stable but SGD significantly unstable in {int(np.sum(dis & (exp > 0)))} cells, "
                f"SGD significantly stable where GD is not in {int(np.sum(dis & (exp < 0)))}. "
                f"Result: {message(self.result)}.")

    def plot(self, ax=None, **kwargs):
        """The exponents against the step size and the sign map (see
        [`jaxdyn.plot.plot_sgd_stability`][]): `ax=None` or two axes give both panels (returns the
        figure); one axes gets the exponents only (returns it)."""
        from ..plot._sgd import plot_sgd_stability

        fig = plot_sgd_stability(self, axes=ax, **kwargs)
        return fig if ax is None or isinstance(ax, list | tuple | np.ndarray) else ax


def _diagram_cell(problem: _Problem, lr, batch_size, key, run: _Run):
    """One cell $(\\eta, B)$ of the diagram: exponent, stderr, mean-square bound, deterministic,
    code, GD control shift."""
    lyap, exps, ses, det, code, shift = _estimate(problem, lr, batch_size, key, run)
    msb = _mean_square_bound(problem.space, lr, batch_size)[0] if run.mean_square else jnp.nan * lr
    return exps[0], ses[0], msb, det, code, shift[0]


def _diagram_row_impl(problem: _Problem, lrs, batch_size, key, run: _Run):
    return jax.vmap(lambda lr: _diagram_cell(problem, lr, batch_size, key, run))(lrs)


class _DiagramRow(eqx.Module):
    """One row of the diagram as a function of the batch size (compiled by the strategy's
    `over_batch_sizes`: once per size, or once for all)."""

    problem: _Problem
    lrs: Array
    key: Any
    run: _Run

    def __call__(self, batch_size):
        return _diagram_row_impl(self.problem, self.lrs, batch_size, self.key, self.run)

    def cell(self, lr, batch_size):
        """One cell (what a sharded diagram maps over the step sizes, or over the cells)."""
        return _diagram_cell(self.problem, lr, batch_size, self.key, self.run)


def _check_lrs(lrs) -> Array:
    lrs = jnp.asarray(lrs)
    if lrs.ndim != 1 or lrs.shape[0] == 0:
        raise ValueError(f"`lrs` must be a non-empty vector, got shape {lrs.shape}.")
    if not bool(jnp.all(jnp.isfinite(lrs) & (lrs > 0))):
        raise ValueError("`lrs` must be finite and positive.")
    return lrs


def sgd_stability_diagram(per_example_loss, params, data, *, lrs, batch_sizes, key,
                          n_steps: int = 2000, n_chains: int = 8, transient_steps: int = 100,
                          curvature: AbstractCurvature | None = None,
                          normal_space: NormalSpace | None = None, rtol: float | None = None,
                          mean_square: bool = True, loss_tol: float = 1e-10, grad_tol: float = 1e-6,
                          progress: bool = False, gd_control: bool = True, mesh=None, devices=None,
                          gather: bool = True, throw: bool = True) -> SGDStabilityDiagramResult:
    r"""$\lambda(\eta, B)$ over `lrs` x `batch_sizes`, with the GD exponent and the GD boundary
    $\eta = 2/\lambda_{\max}$.

    The normal space is computed once; for each batch size one compiled call vmaps
    [`sgd_lyapunov`][]'s product over the step sizes (with [`GaussNewton`][] one call vmaps over
    the batch sizes too). The same `key` is used for every cell (common random numbers:
    differences between cells are not sampling noise of the batch draws). Arguments as in
    [`sgd_lyapunov`][] (`gd_control` included). `throw`: with `True` (default) a `params` that is
    not an interpolating minimum is a `ValueError` and a failed cell raises its message; with
    `False` the codes are returned in `result`. Rows with $B = n$ are exact and equal
    `gd_exponent`.

    **Across devices and processes:** `mesh` (a `jax.sharding.Mesh`, e.g.
    [`jaxdyn.distributed.global_mesh`][]) or `devices` (one process's devices) splits the work
    with [`jaxdyn.distributed.map_batches`][]: with [`Hessian`][] curvature the step sizes of
    each batch size (the batch size sets shapes), with [`GaussNewton`][] all (step size, batch
    size) cells at once. With several processes and neither, every device of every process is
    used. The numbers are those of the unsharded diagram (each device runs the same
    single-device program on its cells). `gather`: the whole diagram on every process
    (default), or with `False` global arrays whose shards stay where they were computed.

    **Returns:** an [`SGDStabilityDiagramResult`][].
    """
    check_throw(throw)
    if not callable(per_example_loss):
        raise TypeError("`per_example_loss` must be callable.")
    sharded = check_placement(mesh, devices, gather, inputs=(params, data, lrs))
    n = check_data(data)
    lrs = _check_lrs(lrs)
    sizes = tuple(check_batch_size(b, n) for b in batch_sizes)
    if not sizes:
        raise ValueError("`batch_sizes` is empty.")
    run = _Run(n_steps=check_int(n_steps, "n_steps"), n_chains=check_int(n_chains, "n_chains"),
               transient_steps=check_int(transient_steps, "transient_steps", minimum=0), k=1,
               mean_square=bool(mean_square), gd_control=bool(gd_control), progress=False)
    check_params_data(params, data)
    check = _check_interpolating(per_example_loss, params, data, loss_tol=loss_tol,
                                 grad_tol=grad_tol, throw=throw)
    space = _space_for(per_example_loss, params, data, space=normal_space, curvature=curvature,
                       rtol=rtol, ms_max_dim=64)
    lrs = lrs.astype(space.basis.dtype)
    row = _DiagramRow(_Problem(per_example_loss, space, data), lrs, key, run)
    batches = (functools.partial(map_batches, mesh=mesh, devices=devices, shard=True, gather_output=gather)
               if sharded else None)
    exp, se, msb, det, code, shift = space.curvature.over_batch_sizes(
        row, sizes, dtype=lrs.dtype, progress=progress, batches=batches)
    out = SGDStabilityDiagramResult(
        lrs=lrs, exponent=exp, stderr=se, mean_square_bound=msb, deterministic=det[:, 0],
        gd_control_shift=shift[0], result=_flag_not_interpolating(code, check.interpolating),
        gd_exponent=jax.vmap(lambda lr: gd_exponent(space, lr))(lrs), lambda_max=space.lambda_max,
        gd_boundary=2 / space.lambda_max, batch_sizes=sizes, n_examples=n, rank=space.rank)
    return raise_if_failed(out, out.result if gather else gather_tree(out.result), throw,
                           hint="(`sgd_stability_diagram`: pass "
                           "`throw=False` to get the diagram with a code per cell.)")


# -- simulation check ------------------------------------------------------------------------------


class SGDEscapeResult(AbstractResult):
    r"""Nonlinear SGD started at $\theta^* + \varepsilon\, U z/\|z\|$ (a random normal direction).

    - `log_ratio`: $\log(d_t/d_0)$ with $d_t = \sqrt{L(\theta_t)}$ (full-batch loss; near the set
      of minima $d_t$ is a weighted distance to it), shape `(n_runs, n_steps + 1)`; NaN after a
      run becomes non-finite.
    - `outcome`: per run, $+1$ returned ($d_N/d_0 < 1/$`factor`), $-1$ escaped ($d_t/d_0 >$
      `factor` at some step, or non-finite), 0 undecided.
    - `rate`: per run, $\log(d_\tau/d_0)/\tau$ with $\tau$ the first step leaving
      $[d_0/\text{factor}, d_0\,\text{factor}]$ (or the last step): an estimate of $\lambda$
      in the linear regime.
    - `failed_step`: per run, the first SGD step after which the loss or the parameters were
      non-finite (-1 if none); `result`: per run, a [`jaxdyn.RESULTS`][] code,
      `nonfinite_parameters` for those runs (an escape to infinity; `outcome` is then -1), else
      `successful`.
    - `returned_fraction`, `escaped_fraction`.
    """

    log_ratio: Array
    outcome: Array
    rate: Array
    failed_step: Array
    result: RESULTS
    lr: Array
    radius: Array
    factor: Array
    batch_size: int = eqx.field(static=True)

    @property
    def returned_fraction(self) -> Array:
        return jnp.mean(self.outcome == 1)

    @property
    def escaped_fraction(self) -> Array:
        return jnp.mean(self.outcome == -1)

    def summary(self) -> str:
        rate = np.asarray(self.rate)
        finite = rate[np.isfinite(rate)]
        mean_rate = f"{float(np.mean(finite)):+.4g}" if finite.size else "n/a"
        return (f"Nonlinear SGD (eta={float(self.lr):.4g}, B={self.batch_size}) from "
                f"{float(self.radius):.2g} off the minimum, {self.outcome.shape[0]} runs of "
                f"{self.log_ratio.shape[1] - 1} steps: {float(self.returned_fraction):.0%} returned, "
                f"{float(self.escaped_fraction):.0%} escaped (factor {float(self.factor):.3g}); "
                f"mean rate {mean_rate} per step. Result: {message(self.result)}.")

    def plot(self, ax=None, **kwargs):
        """$\\log_{10}(d_t/d_0)$ of every run (see [`jaxdyn.plot.plot_sgd_escape`][]); returns the
        axes."""
        from ..plot._sgd import plot_sgd_escape

        fig = plot_sgd_escape(self, ax=ax, **kwargs)
        return fig.axes[0] if ax is None else ax


class _Escape(eqx.Module):
    """The settings of the escape runs: the start distance, the decisive factor, the steps and the
    number of runs (static)."""

    radius: Array
    factor: Array
    n_steps: int = eqx.field(static=True)
    n_runs: int = eqx.field(static=True)


def _outcome(logs, n_steps: int, factor):
    """The outcome, rate and first failed step of one run from its `log(d_t/d_0)`."""
    finite = jnp.isfinite(logs)
    first_bad = jnp.argmin(finite)  # the first non-finite entry (0 if none)
    all_finite = jnp.all(finite)
    idx = jnp.arange(n_steps + 1)
    alive = all_finite | (idx < first_bad)
    logs = jnp.where(alive, logs, jnp.nan)
    lf = jnp.log(factor)
    out_ = alive & (jnp.abs(logs) > lf)
    exit_step = jnp.where(jnp.any(out_), jnp.argmax(out_), jnp.where(all_finite, n_steps,
                                                                      first_bad - 1))
    escaped = ~all_finite | jnp.any(alive & (logs > lf))
    returned = all_finite & (logs[-1] < -lf) & ~escaped
    outcome = jnp.where(escaped, -1, jnp.where(returned, 1, 0))
    tau = jnp.maximum(exit_step, 1)
    rate = jnp.where(jnp.isfinite(logs[tau]), logs[tau] / tau, jnp.inf)
    failed = jnp.where(all_finite, -1, first_bad)
    return logs, outcome, rate, failed


@eqx.filter_jit
def _simulate(problem: _Problem, lr, batch_size, key, settings: _Escape):
    space, per_example_loss, data = problem.space, problem.loss, problem.data
    n = space.n_examples
    n_steps = settings.n_steps
    full = mean_loss_fn(per_example_loss, space.unravel, data)

    def run(k):
        kz, ks = jax.random.split(k)
        z = jax.random.normal(kz, (space.rank,), space.basis.dtype)
        theta0 = space.theta + settings.radius * space.basis @ (z / jnp.linalg.norm(z))
        d0 = jnp.sqrt(full(theta0))

        def batch_loss(theta, key):  # masked mean: the batch size is an array (one compile)
            mask = batch_mask(key, n, batch_size, theta.dtype)
            vals = jax.vmap(lambda ex: per_example_loss(space.unravel(theta), ex))(data)
            return jnp.sum(mask * vals) / batch_size

        def step(theta, i):
            g = jax.grad(batch_loss)(theta, jax.random.fold_in(ks, i))
            theta = theta - lr * g
            d = jnp.sqrt(jnp.maximum(full(theta), 0.0))
            return theta, jnp.log(d / d0)

        _, logs = jax.lax.scan(step, theta0, jnp.arange(n_steps))
        logs = jnp.concatenate([jnp.zeros((1,), logs.dtype), logs])
        return _outcome(logs, n_steps, settings.factor)

    return jax.vmap(run)(jax.random.split(key, settings.n_runs))


def sgd_escape(per_example_loss, params, data, *, lr, batch_size: int, key, n_steps: int = 300,
               n_runs: int = 8, radius: float = 1e-6, factor: float = 1e3,
               curvature: AbstractCurvature | None = None,
               normal_space: NormalSpace | None = None, throw: bool = True) -> SGDEscapeResult:
    r"""Simulation check of [`sgd_lyapunov`][]: run the actual (nonlinear) SGD from
    $\theta^* + r\, Uz/\|z\|$ ($r$ = `radius`) and see whether it returns to the set of minima or
    escapes. Away from $\lambda = 0$ the outcome follows the sign of $\lambda$ (returns for
    $\lambda < 0$, escapes for $\lambda > 0$); `rate` estimates $\lambda$ itself.

    Batches as in [`sgd_lyapunov`][] (the same draw rule; here as 0/1 weights over all $n$
    examples, so that batch sizes share one compiled program). Arguments: `n_steps` SGD steps in each
    of `n_runs` runs (vmapped), `factor`: the change of $d_t = \sqrt{L(\theta_t)}$ that counts
    as returned ($1/$factor) or escaped (factor). `throw`: with `True` (default) a run whose
    parameters become non-finite raises; with `False` such runs carry
    `RESULTS.nonfinite_parameters` in `result` (and count as escaped).

    **Returns:** an [`SGDEscapeResult`][].
    """
    check_throw(throw)
    n, batch_size, lr = _check_common(per_example_loss, data, batch_size, lr)
    n_steps = check_int(n_steps, "n_steps")
    n_runs = check_int(n_runs, "n_runs")
    check_positive(radius, "radius")
    check_positive(factor, "factor")
    if is_concrete(factor) and float(factor) <= 1:
        raise ValueError(f"`factor` must be greater than 1, got {factor}.")
    check_params_data(params, data)
    space = _space_for(per_example_loss, params, data, space=normal_space, curvature=curvature,
                       rtol=None, ms_max_dim=0)
    dtype = space.basis.dtype
    radius, factor = jnp.asarray(radius, dtype), jnp.asarray(factor, dtype)
    logs, outcome, rate, failed = _simulate(
        _Problem(per_example_loss, space, data), lr.astype(dtype), jnp.asarray(batch_size, dtype),
        key, _Escape(radius, factor, n_steps, n_runs))
    code = jax.vmap(lambda f: RESULTS.where(f >= 0, RESULTS.nonfinite_parameters,
                                            RESULTS.successful))(failed)
    out = SGDEscapeResult(logs, outcome, rate, failed, code, lr, radius, factor, batch_size)
    return raise_if_failed(out, out.result, throw, hint="(`sgd_escape`: a run diverged; pass "
                           "`throw=False` to count it as escaped.)")
