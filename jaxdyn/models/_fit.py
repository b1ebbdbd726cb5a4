"""Full-batch least-squares fitting of a model, as a jitted `lax.scan` over optax steps."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._deprecate import renamed_kwargs
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array


class FitResult(AbstractResult):
    """Output of [`fit`][].

    - `model`: the trained model; after a failure, the model of the last step whose loss,
      gradient and update were all finite.
    - `losses`: the loss before every step, shape `(n_steps,)`; NaN after a failure.
    - `result`: a `RESULTS` (`jaxdyn._results`) item: `successful`, `nonfinite_loss`,
      `nonfinite_gradient` or `nonfinite_parameters` (the update overflowed: lower the
      learning rate); `failed_step`: the first failing step (0-based), `-1` if none.
    """

    model: eqx.Module
    losses: Array
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)
    failed_step: int = -1

    def summary(self) -> str:
        """The number of steps, the first and final loss, and the result code's message."""
        losses = np.asarray(self.losses)
        if self.successful:
            last = losses[-1] if losses.size else float("nan")
            first = losses[0] if losses.size else float("nan")
            return f"fit: {losses.size} steps, loss {first:.6g} -> final loss {last:.6g}"
        return f"fit: {message(self.result)} First seen at step {self.failed_step}."

    def plot(self, ax=None, **kwargs):
        """The loss curve (log scale; `kwargs` go to `ax.plot`), with the failing step marked.
        Returns the axes."""
        from ..plot._plots import _axes, _finish

        _, ax = _axes(ax)
        losses = np.asarray(self.losses, dtype=float).ravel()
        ax.plot(np.arange(1, losses.size + 1), losses, label=kwargs.pop("label", "loss"), **kwargs)
        if self.failed_step >= 0:
            ax.axvline(self.failed_step + 1, color="tab:red", ls="--", lw=1, label="failure")
        ax.set_yscale("log")
        _finish(ax, "step", "loss", None)
        return ax


def mse_loss(model, xs: Array, ys: Array) -> Array:
    r"""$\frac{1}{2n} \sum_i \|\Phi(x_i) - y_i\|^2$ over a batch."""
    pred = jax.vmap(model)(xs)
    return 0.5 * jnp.mean(jnp.sum((pred - ys.reshape(pred.shape)) ** 2, axis=-1))


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(a)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guarded_step(carry, i, loss_of: Callable, optimizer):
    """One optax step on `loss_of(params)` with the failure policy of a training scan: `carry =
    (params, opt_state, (fail_step, fail_result))`; the first non-finite loss, gradient or update
    (in that order) is recorded with its step `i` and freezes the parameters and the optimiser
    state from then on. Returns `(carry, loss)` (NaN after the failing step). Shared by [`fit`][],
    `train_cnf` and `train_score`."""
    p, s, (fail_step, fail_result) = carry
    loss, g = jax.value_and_grad(loss_of)(p)
    updates, s_new = optimizer.update(g, s, p)
    p_new = optax.apply_updates(p, updates)
    bad_loss, bad_grad, bad_params = ~jnp.isfinite(loss), ~_all_finite(g), ~_all_finite(p_new)
    first = (fail_step < 0) & (bad_loss | bad_grad | bad_params)
    kind = RESULTS.where(bad_loss, RESULTS.nonfinite_loss,
                         RESULTS.where(bad_grad, RESULTS.nonfinite_gradient, RESULTS.nonfinite_parameters))
    fail_result = RESULTS.where(first, kind, fail_result)
    fail_step = jnp.where(first, i, fail_step)
    keep = fail_step < 0
    choose = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)
    p, s = choose(p_new, p), choose(s_new, s)
    return (p, s, (fail_step, fail_result)), jnp.where(keep | first, loss, jnp.nan)


@eqx.filter_jit
def _run_chunk(params, opt_state, failure, first_step, data, *, static, optimizer, loss_fn, n):
    """`n` optimiser steps in one `lax.scan`. Module-level and `filter_jit`ted with the model's
    structure, the optimiser and the loss as static data: repeated fits of models of the same
    structure with the same optimiser object compile once. `failure = (step, result)` carries the
    first failure (`-1` and `RESULTS.successful` when none); from it on the parameters stay at
    their last finite values. `data` is `(xs, ys)`."""
    xs, ys = data

    def loss_of(p):
        return loss_fn(eqx.combine(p, static), xs, ys)

    def step(carry, i):
        return guarded_step(carry, i, loss_of, optimizer)

    return lax.scan(step, (params, opt_state, failure), first_step + jnp.arange(n))


@renamed_kwargs(steps="n_steps")
def fit(model, xs: Array, ys: Array, *, n_steps: int = 1000,
        optimizer: optax.GradientTransformation | None = None, lr: float | None = None,
        loss_fn: Callable = mse_loss, chunk: int = 100, progress: bool = True,
        desc: str = "fit", throw: bool = True) -> FitResult:
    r"""Train `model` on $(x_i, y_i)$ by full-batch gradient steps with an optax optimiser.

    The array leaves of `model` (`eqx.is_inexact_array`) are trained; the steps run in jitted
    `lax.scan` chunks of length `chunk` (compiled once, and shared by later fits of models of
    the same structure with the same `optimizer` object and `loss_fn`), with a tqdm progress bar
    between chunks (`progress=False` turns it off).

    **Arguments:**

    - `model`: any Equinox model mapping shape `(d,)` to `(q,)`.
    - `xs`, `ys`: shapes `(n, d)` and `(n, q)` (or `(n,)` when `q = 1`), `n >= 1`, finite.
    - `n_steps`: the number of optimiser steps (formerly `steps`, deprecated).
    - `optimizer`: an optax optimiser, default `optax.adam(lr)`; `lr`: the learning rate of the
      default optimiser (default `1e-2`; give `lr` or `optimizer`, not both).
    - `loss_fn`: `loss_fn(model, xs, ys)`, default [`mse_loss`][].
    - `throw`: on a non-finite loss, gradient or update, `True` raises an
      `eqx.EquinoxRuntimeError` (a `RuntimeError`) with the result code's message and the step;
      `False` returns the last finite model with the result code (see [`FitResult`][]).
      Training stops at the end of the chunk in which it failed.

    **Returns:** a [`FitResult`][] with the trained model, the per-step losses and the result code.

    **Not differentiable.** `fit` is a host-side loop (a progress bar and chunked, compiled
    steps); it cannot be traced, and `jax.grad`/`jit`/`vmap` through it raise a `TypeError` that
    says so. Differentiate through the training steps yourself (e.g. `jaxdyn.training`) instead.
    """
    leaves = jax.tree_util.tree_leaves((model, xs, ys, lr))
    if not all(is_concrete(leaf) for leaf in leaves):
        raise TypeError(
            "`fit` is not differentiable and cannot run under jit/vmap/grad (it is a host-side "
            "training loop): call it on concrete `model`, `xs` and `ys`."
        )
    check_throw(throw)
    n_steps = check_int(n_steps, "n_steps")
    chunk = check_int(chunk, "chunk")
    xs = jnp.asarray(xs)
    ys = jnp.asarray(ys)
    if xs.ndim != 2:
        raise ValueError(f"`xs` must have shape (n, d), got {xs.shape}.")
    if xs.shape[0] == 0:
        raise ValueError(f"`xs` is empty (no samples, shape {xs.shape}): fit needs n >= 1 pairs.")
    if ys.ndim == 0 or ys.shape[0] != xs.shape[0]:
        raise ValueError(f"`ys` must have {xs.shape[0]} rows like `xs`, got shape {ys.shape}.")
    if not jnp.issubdtype(xs.dtype, jnp.inexact):
        xs = xs.astype(jnp.result_type(float))
    if not jnp.issubdtype(ys.dtype, jnp.inexact):
        ys = ys.astype(jnp.result_type(float))
    check_finite(xs, "xs")
    check_finite(ys, "ys")
    if loss_fn is mse_loss:
        try:
            out = jax.eval_shape(model, xs[0])
        except ValueError as err:
            raise ValueError(f"`xs` rows of shape {tuple(xs.shape[1:])} do not fit `model`: {err}") from err
        except Exception as err:  # noqa: BLE001 - re-raised with the arguments named
            raise ValueError(
                f"`model` failed on a row of `xs` (shape {tuple(xs.shape[1:])}); the error it raised "
                "is shown above."
            ) from err
        q = int(np.prod(out.shape)) if isinstance(out, jax.ShapeDtypeStruct) else 1
        if ys[0].size != q:
            raise ValueError(
                f"`ys` must have shape ({xs.shape[0]}, {q}) for a model with {q} outputs, got {ys.shape}."
            )
    if lr is not None:
        if optimizer is not None:
            raise ValueError("Give either `lr` (for the default Adam) or `optimizer`, not both.")
        check_positive(lr, "lr")
    optimizer = optax.adam(1e-2 if lr is None else float(lr)) if optimizer is None else optimizer
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    failure = (jnp.asarray(-1), RESULTS.successful)

    def run(carry, start, n):
        return _run_chunk(*carry, jnp.asarray(start), (xs, ys), static=static, optimizer=optimizer,
                          loss_fn=loss_fn, n=n)

    carry, losses = run_chunks(run, (params, opt_state, failure), n_steps=n_steps, chunk=chunk,
                               progress=progress, desc=desc)
    return fit_result(carry, static, losses, throw, hint=(
        "Training diverged at step {step} of `fit`: lower the learning rate (`lr`, or the "
        "optimizer's), or pass `throw=False` to get the last finite model and the result code."))


def run_chunks(run_chunk: Callable, carry, *, n_steps: int, chunk: int, progress: bool, desc: str,
               postfix: str = "loss", fmt: str = ".3e"):
    """The host side of a chunked training loop ([`fit`][], `train_cnf`, `train_score`): call
    `run_chunk(carry, start, n) -> (carry, losses)` on chunks of at most `chunk` steps, with a tqdm bar
    (`progress`; `desc`, the last loss as `postfix`), until `n_steps` are done or the failure record
    `carry[2] = (step, result)` holds a step (`>= 0`). Returns the last `carry` and the losses of all
    `n_steps` (NaN after the chunk that failed)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=desc, leave=False)
    parts, done = [], 0
    while done < n_steps:
        n = min(chunk, n_steps - done)
        carry, part = run_chunk(carry, done, n)
        parts.append(np.asarray(part))
        done += n
        if bar is not None:
            bar.update(n)
            bar.set_postfix({postfix: f"{float(parts[-1][-1]):{fmt}}"})
        if int(carry[2][0]) >= 0:
            break
    if bar is not None:
        bar.close()
    losses = np.concatenate(parts)
    return carry, np.concatenate([losses, np.full(n_steps - losses.size, np.nan, losses.dtype)])


def fit_result(carry, static, losses, throw: bool, *, hint: str) -> FitResult:
    """The [`FitResult`][] of a chunked training loop's last `carry = (params, opt_state, (step,
    result))` and the failure policy (`hint` may name the failing `{step}`)."""
    params, _, (step, result) = carry
    out = FitResult(model=eqx.combine(params, static), losses=jnp.asarray(losses), result=result,
                    failed_step=int(step))
    return raise_if_failed(out, result, throw, hint=hint.format(step=int(step)))
