"""Full-batch least-squares fitting of a model, as a jitted `lax.scan` over optax steps."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .._checks import check_finite, check_int
from .._types import Array


class FitResult(eqx.Module):
    """Output of [`fit`][]: the trained `model` and the loss after every step (`losses`)."""

    model: eqx.Module
    losses: Array


def mse_loss(model, xs: Array, ys: Array) -> Array:
    r"""$\frac{1}{2n} \sum_i \|\Phi(x_i) - y_i\|^2$ over a batch."""
    pred = jax.vmap(model)(xs)
    return 0.5 * jnp.mean(jnp.sum((pred - ys.reshape(pred.shape)) ** 2, axis=-1))


@eqx.filter_jit
def _run_chunk(params, opt_state, static, optimizer, loss_fn, xs, ys, n):
    """`n` optimiser steps in one `lax.scan`. Module-level and `filter_jit`ted with the model's
    structure, the optimiser and the loss as static data: repeated fits of models of the same
    structure with the same optimiser object compile once."""

    def loss_of(p):
        return loss_fn(eqx.combine(p, static), xs, ys)

    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(loss_of)(p)
        updates, s = optimizer.update(g, s, p)
        return (optax.apply_updates(p, updates), s), loss

    return lax.scan(step, (params, opt_state), None, length=n)


def fit(model, xs: Array, ys: Array, *, steps: int = 1000,
        optimizer: optax.GradientTransformation | None = None,
        loss_fn: Callable = mse_loss, chunk: int = 100, progress: bool = True,
        desc: str = "fit") -> FitResult:
    r"""Train `model` on $(x_i, y_i)$ by full-batch gradient steps with an optax optimiser.

    The array leaves of `model` (`eqx.is_inexact_array`) are trained; the steps run in jitted
    `lax.scan` chunks of length `chunk` (compiled once, and shared by later fits of models of
    the same structure with the same `optimizer` object and `loss_fn`), with a tqdm progress bar
    between chunks (`progress=False` turns it off).

    **Arguments:**

    - `model`: any Equinox model mapping shape `(d,)` to `(q,)`.
    - `xs`, `ys`: shapes `(n, d)` and `(n, q)` (or `(n,)` when `q = 1`).
    - `steps`: the number of optimiser steps; `optimizer`: default `optax.adam(1e-2)`.
    - `loss_fn`: `loss_fn(model, xs, ys)`, default [`mse_loss`][].

    **Returns:** a [`FitResult`][] with the trained model and the per-step losses.
    """
    steps = check_int(steps, "steps")
    chunk = check_int(chunk, "chunk")
    xs = jnp.asarray(xs)
    ys = jnp.asarray(ys)
    if xs.ndim != 2:
        raise ValueError(f"`xs` must have shape (n, d), got {xs.shape}.")
    if ys.shape[0] != xs.shape[0]:
        raise ValueError(f"`ys` must have {xs.shape[0]} rows like `xs`, got shape {ys.shape}.")
    check_finite(xs, "xs")
    check_finite(ys, "ys")
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    run = lambda p, s, n: _run_chunk(p, s, static, optimizer, loss_fn, xs, ys, n)

    losses = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False)
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        (params, opt_state), chunk_losses = run(params, opt_state, n)
        losses.append(np.asarray(chunk_losses))
        done += n
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{float(chunk_losses[-1]):.3e}")
    if bar is not None:
        bar.close()
    return FitResult(model=eqx.combine(params, static), losses=jnp.asarray(np.concatenate(losses)))
