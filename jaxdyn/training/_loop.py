r"""A full-batch optax training loop with trackers, a progress bar and checkpoint/resume.

The loop runs in jitted `lax.scan` chunks of blocks; a block is `every` optimiser steps followed
by the trackers (loss, gradient norm, accuracy, the top Hessian eigenvalues by Lanczos and the
distance to a gradient-flow reference integrated alongside). Between chunks the host updates a
tqdm bar and writes the checkpoint.

**Failures.** A step whose loss, gradient or new parameters are non-finite is not taken: the
parameters (and optimiser state) stay at the last finite point, the result records the code
([`jaxdyn._results.RESULTS`][]) and the step, and the host stops at the end of the chunk. Losses and
tracked rows after the failure are `nan` (they do not exist).

**Interrupts.** While the loop runs, the first SIGINT (Ctrl-C) is deferred to the end of the chunk
in flight: the device work is finished (`block_until_ready`), the checkpoint written (atomically:
a temporary file, flushed and `fsync`ed, then renamed), and only then is `KeyboardInterrupt`
raised. A KeyboardInterrupt arriving while XLA work was still in flight could otherwise unwind
the interpreter during its shutdown with computations and callbacks running, the likely source of
a segmentation fault seen once after Ctrl-C. A second SIGINT interrupts at once.
"""

import os
import signal
import threading
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from .. import curvature as _curvature
from .._checks import check_finite, check_int
from .._results import RESULTS, AbstractResult, message
from .._types import Array, Key, PyTree
from ..curvature._lanczos import check_key
from ._gd import _CombinedLoss, check_data, check_loss, check_lr, check_params, split_params
from ._gradient_flow import FlowState, GradientFlow, _flat_loss, flow_advance, flow_init


class Checkpoint(eqx.Module):
    """Write the training state to `path` every `every` tracking blocks, and resume from it.

    The file holds the settings, the step counter, the parameters, optimiser state and
    gradient-flow state (`eqx.tree_serialise_leaves`) and every tracked history so far. With
    `resume=True` (default) an existing file is loaded and training continues from it, also to
    extend a finished run to more `steps`: resumed and uninterrupted runs give the same numbers.
    The settings (`every`, `top_k`, `lr`, the flow reference, the trackers) must match.
    """

    path: str = eqx.field(static=True)
    every: int = eqx.field(static=True, default=10)
    resume: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not isinstance(self.path, str | os.PathLike):
            raise TypeError(f"`path` must be a str, got {type(self.path).__name__}.")
        check_int(self.every, "every")


class TrainResult(AbstractResult):
    r"""Output of [`train`][].

    - `params`: the final parameters (same structure as the input); `opt_state`: the optimiser
      state.
    - `losses`: the loss before every optimiser step, shape `(steps,)`.
    - `steps`: the step numbers of the tracked rows, `0, every, 2 every, ..., steps`.
    - `times`: `steps * lr` (gradient-flow time; `None` without `lr`).
    - `loss`, `gradient_norm`: at the tracked rows.
    - `eigenvalues`: the `top_k` largest Hessian eigenvalues per row (descending), shape
      `(rows, top_k)`; `sharpness` is its first column ($\lambda_{\max}$). `None` if `top_k = 0`.
    - `accuracy`: `accuracy_fn(params, *data)` per row (`None` without `accuracy_fn`).
    - `flow_distance`: $\|\theta_{GD}(k) - \theta_{GF}(k\eta)\|$ per row; `flow_loss`,
      `flow_sharpness`: the loss and sharpness along the flow; `flow_params`: the flow's final
      parameters; `flow_steps`: solver steps taken; `flow_result`: 0 if every interval finished
      (all `None` without a flow reference).
    - `lr`: the step size used for the flow time (`None` if not given).
    - `result`: a [`jaxdyn._results.RESULTS`][] item: `successful`, or the first failure
      (`nonfinite_loss`, `nonfinite_gradient`, `nonfinite_parameters`); `failed_step`: the step
      whose loss/gradient/update was non-finite (-1: none), `failed_time`: `failed_step * lr`
      (`nan` when none or without `lr`). After a failure `params` are the last finite ones
      (those of step `failed_step`) and later `losses` and rows are `nan`. `successful` (a bool)
      and `summary()` say it in words.
    """

    params: PyTree
    opt_state: PyTree
    losses: Array
    steps: Array
    times: Array | None
    loss: Array
    gradient_norm: Array
    sharpness: Array | None
    eigenvalues: Array | None
    accuracy: Array | None
    flow_distance: Array | None
    flow_loss: Array | None
    flow_sharpness: Array | None
    flow_params: PyTree | None
    flow_steps: Array | None
    flow_result: Array | None
    lr: Array | None
    result: RESULTS
    failed_step: Array
    failed_time: Array

    def summary(self) -> str:
        """One paragraph: steps, final loss and sharpness, and the failure if any."""
        n = int(self.losses.shape[0])
        last = np.asarray(self.loss)
        finite = last[np.isfinite(last)]
        text = f"train: {n} steps, final loss {finite[-1] if finite.size else float('nan'):.6g}"
        if self.sharpness is not None:
            s = np.asarray(self.sharpness)
            s = s[np.isfinite(s)]
            if s.size:
                text += f", final sharpness {s[-1]:.6g}"
        if self.successful:
            return text + "; successful."
        return (text + f"; FAILED at step {int(self.failed_step)} (time {float(self.failed_time):.6g}): "
                + message(self.result))


class _Carry(eqx.Module):
    params: PyTree
    opt_state: PyTree
    flow: FlowState | None
    step: Array
    result: RESULTS
    failed_step: Array


class _Config(eqx.Module):
    every: int = eqx.field(static=True)
    top_k: int = eqx.field(static=True)
    num_iters: int | None = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)


def _track(cfg: _Config, loss, accuracy, flow, flat_loss, params, fstate, data, key, step_time):
    """The tracked values at `params` and, with a flow, the sharpness at the flow's point (one
    Lanczos run for both, `vmap`ped over the two points)."""
    value, grads = jax.value_and_grad(loss)(params, *data)
    out = {"loss": value, "gradient_norm": jnp.linalg.norm(ravel_pytree(grads)[0])}
    flow_s = None
    k = max(cfg.top_k, 1 if fstate is not None else 0)
    if k > 0:
        flat = ravel_pytree(params)[0]
        points = flat[None] if fstate is None else jnp.stack([flat, fstate.y])

        def eig(y):
            op = _curvature.hessian_operator(flat_loss, y, *data, chunk_size=cfg.chunk_size)
            return _curvature.top_eigenvalues(op, k, key=key, num_iters=cfg.num_iters).eigenvalues

        lams = eig(points[0])[None] if fstate is None else jax.vmap(eig)(points)
        if cfg.top_k > 0:
            out["eigenvalues"] = lams[0, : cfg.top_k]
        if fstate is not None:
            flow_s = lams[1, 0]
    if accuracy is not None:
        out["accuracy"] = jnp.asarray(accuracy(params, *data))
    if fstate is not None:
        flat = ravel_pytree(params)[0]
        on = jnp.abs(fstate.t - step_time) <= 1e-6 * jnp.maximum(1.0, jnp.abs(step_time))
        nan = jnp.asarray(jnp.nan, value.dtype)
        out["flow_distance"] = jnp.where(on, jnp.linalg.norm(flat - fstate.y), nan)
        out["flow_loss"] = jnp.where(on, flat_loss(fstate.y, *data), nan)
        out["flow_sharpness"] = flow_s
    return out, flow_s


def _key_at(key, block):
    return None if key is None else jax.random.fold_in(key, block)


# block modes: the first block of a run only tracks the initial point, padding blocks (which fill
# the last chunk up to the common length, so that every chunk shares one compiled program) do
# nothing; both are `lax.cond` branches.
_INITIAL, _BLOCK, _PAD = 0, 1, 2


def _all_finite(tree) -> Array:
    ok = jnp.array(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def _select(pred, a, b):
    """`a` where `pred` else `b`, leaf by leaf (array leaves only)."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y) if eqx.is_array(x) else x, a, b)


@eqx.filter_jit
def _run_blocks(cfg, loss, accuracy, flow, optimizer, carry, modes, lr, data, key):
    flat_loss = _flat_loss(loss, ravel_pytree(carry.params)[1])

    def step(c, k):
        p, s, code, fstep = c
        value, g = jax.value_and_grad(loss)(p, *data)
        if optimizer is None:  # plain gradient descent; lr traced, so step sizes share one compile
            new_p = jax.tree_util.tree_map(lambda a, b: a - lr.astype(a.dtype) * b, p, g)
            new_s = s
        else:
            updates, new_s = optimizer.update(g, s, p)
            new_p = optax.apply_updates(p, updates)
        new_code = RESULTS.where(
            ~jnp.isfinite(value), RESULTS.nonfinite_loss,
            RESULTS.where(~_all_finite(g), RESULTS.nonfinite_gradient,
                          RESULTS.where(~(_all_finite(new_p) & _all_finite(new_s)),
                                        RESULTS.nonfinite_parameters, RESULTS.successful)))
        before = code != RESULTS.successful
        now = ~before & (new_code != RESULTS.successful)
        # a non-finite step is not taken: the last finite point is kept (frozen)
        keep = before | now
        p, s = _select(keep, (p, s), (new_p, new_s))
        code = RESULTS.where(before, code, new_code)
        fstep = jnp.where(now, k, fstep)
        return (p, s, code, fstep), jnp.where(before, jnp.asarray(jnp.nan, value.dtype), value)

    def run_steps(c: _Carry):
        ks = c.step + jnp.arange(cfg.every, dtype=c.step.dtype)
        (p, s, code, fstep), losses = lax.scan(step, (c.params, c.opt_state, c.result, c.failed_step),
                                               ks)
        n = c.step + cfg.every
        fstate = c.flow
        if fstate is not None:
            t1 = n.astype(lr.dtype) * lr
            fstate = lax.cond(t1 <= flow.t_max * (1 + 1e-6),
                              lambda f: flow_advance(flow, flat_loss, f, t1, data), lambda f: f, fstate)
        return _Carry(p, s, fstate, n, code, fstep), losses

    def no_steps(c: _Carry):
        value = jax.eval_shape(loss, c.params, *data)
        return c, jnp.full((cfg.every,), jnp.nan, value.dtype)

    def track(c: _Carry):
        return _track(cfg, loss, accuracy, flow, flat_loss, c.params, c.flow, data,
                      _key_at(key, c.step // cfg.every), c.step.astype(lr.dtype) * lr)

    def block(c: _Carry, mode):
        failed = c.result != RESULTS.successful
        c, losses = lax.cond((mode == _BLOCK) & ~failed, run_steps, no_steps, c)
        # after a failure the blocks are empty; the row that holds the failure is not recorded
        failed = c.result != RESULTS.successful
        shapes = jax.eval_shape(track, c)[0]

        def pad(c):
            dummy = jax.tree_util.tree_map(lambda z: jnp.full(z.shape, jnp.nan, z.dtype), shapes)
            return dummy, None if c.flow is None else c.flow.sharpness

        rec, flow_s = lax.cond((mode == _PAD) | failed, pad, track, c)
        if c.flow is not None:  # the step size of the next flow interval
            c = eqx.tree_at(lambda c: c.flow.sharpness, c, flow_s)
        return c, (losses, rec)

    return lax.scan(block, carry, modes)


def _config_repr(cfg: _Config, lr, flow, has_accuracy: bool, optimizer_given: bool) -> str:
    parts = {"every": cfg.every, "top_k": cfg.top_k, "num_iters": cfg.num_iters,
             "lr": None if lr is None else float(lr), "accuracy": has_accuracy,
             "optimizer": "custom" if optimizer_given else "sgd",
             "flow": None if flow is None else repr(flow), "format": 2}
    return repr(sorted(parts.items()))


def _save(checkpoint: Checkpoint, config: str, carry: _Carry, rows: dict, losses: np.ndarray):
    """Atomic: the device work is finished first, the file written to a temporary name, flushed
    and synced, then renamed over the old checkpoint (a crash leaves the old or the new file,
    never half of one)."""
    carry = jax.block_until_ready(carry)
    tmp = f"{checkpoint.path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(config))
        np.save(f, np.asarray([losses.shape[0]], dtype=np.int64))
        eqx.tree_serialise_leaves(f, carry)
        np.save(f, losses)
        np.save(f, np.asarray(sorted(rows)))
        for name in sorted(rows):
            np.save(f, rows[name])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, checkpoint.path)


def _load(checkpoint: Checkpoint, config: str, like: _Carry):
    if not (checkpoint.resume and os.path.exists(checkpoint.path)):
        return None
    with open(checkpoint.path, "rb") as f:
        saved = str(np.load(f))
        if saved != config:
            raise ValueError(f"`checkpoint`: {checkpoint.path} was written by a run with other "
                             "settings; remove it or pass resume=False.")
        np.load(f)
        carry = eqx.tree_deserialise_leaves(f, like)
        losses = np.load(f)
        names = [str(n) for n in np.load(f)]
        rows = {name: np.load(f) for name in names}
    return carry, rows, losses


class _DeferredInterrupt:
    """While active (main thread, default SIGINT handler only): the first SIGINT sets `pending`
    instead of raising; a second one raises `KeyboardInterrupt` at once."""

    def __init__(self):
        self.pending = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.pending:
            raise KeyboardInterrupt("`train` interrupted twice: stopped at once.")
        self.pending = True

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def train(loss_fn: Callable, params: PyTree, *data, steps: int, lr=None,
          optimizer: optax.GradientTransformation | None = None, every: int = 10, top_k: int = 1,
          accuracy_fn: Callable | None = None, flow: GradientFlow | bool | None = None,
          checkpoint: Checkpoint | None = None, key: Key | None = None,
          num_iters: int | None = None, chunk_size: int | None = None, chunk: int | None = None,
          progress: bool = True, desc: str = "train", throw: bool = False) -> TrainResult:
    r"""Full-batch training of `params` on `loss_fn(params, *data)` with trackers.

    Every `every` steps the loop records the loss, the gradient norm $\|\nabla L\|$, the `top_k`
    largest Hessian eigenvalues (Lanczos on Hessian-vector products,
    [`jaxdyn.curvature.top_eigenvalues`][]; the first is the sharpness $S = \lambda_{\max}$),
    `accuracy_fn(params, *data)` and, with a gradient-flow reference, the distance
    $\|\theta_k - \theta_{GF}(k\eta)\|$ to the flow $\theta' = -\nabla L$ started at the same
    point and integrated alongside with the step $\min(h_{\max}, c/S)$ ([`GradientFlow`][]).
    Rows are recorded at steps $0, \text{every}, \dots, \text{steps}$.

    The steps run as `lax.scan` chunks of `chunk` blocks under one `jit`; the first block only
    tracks the initial point and the last chunk is padded with empty blocks, so one program
    serves the whole run (and a resumed one). The host updates the progress bar and writes the
    checkpoint between chunks.

    **Arguments:**

    - `loss_fn`: the mean loss, `loss_fn(params, *data) -> scalar`.
    - `params`: any PyTree (an Equinox model: its floating-point arrays are trained).
    - `*data`: dataset arrays sharing their leading size (full batch).
    - `steps`: the number of optimiser steps, a multiple of `every`.
    - `lr`: the step size of plain gradient descent $\theta \leftarrow \theta - \eta\nabla L$
      (the default, compiled once for all step sizes) and the time per step of the gradient-flow
      reference.
    - `optimizer`: any optax optimiser instead (then `lr` only sets the flow time).
    - `every`: steps per tracking block; `top_k`: eigenvalues tracked (0: none).
    - `accuracy_fn`: optional `accuracy_fn(params, *data) -> scalar`.
    - `flow`: `True` or a [`GradientFlow`][] to track the distance to gradient flow (needs `lr`).
    - `checkpoint`: a [`Checkpoint`][] to write to and resume from.
    - `key`: Lanczos start vectors (default: deterministic); `num_iters`, `chunk_size`: passed to
      Lanczos and to the Hessian operator.
    - `chunk`: blocks per compiled call (default: `checkpoint.every`, else about 1/20 of the run);
      `progress`, `desc`: the tqdm bar.
    - `throw`: what a non-finite step does. `False` (default): training stops there, a
      `RuntimeWarning` names the quantity and the step, and the result carries the code
      (`result`, `failed_step`, `failed_time`) with everything recorded up to the failure.
      `True`: an `eqx.EquinoxRuntimeError` with the same message is raised once the checkpoint
      (if any) is written. The default keeps the data: a long run that diverges at its end still
      returns its history.

    **Returns:** a [`TrainResult`][].

    **Interrupts:** a first Ctrl-C (SIGINT) takes effect at the end of the chunk in flight, after
    the checkpoint is written; `KeyboardInterrupt` is then raised with a message saying where the
    run stopped. Rerunning with the same `checkpoint` resumes it to the same numbers.

    **Raises:** `ValueError`/`TypeError` naming the argument for bad input (non-finite `params` or
    `data` included), before any compilation.

    **Derivatives:** none: `train` is a host-side loop; `jax.grad`, `jit` or `vmap` over
    `params`, `data` or `lr` raise a `TypeError` saying so (use [`gd_map`][] in `lax.scan`).

    **Example:**

    ```python
    res = train(mse, model, xs, ys, steps=2000, lr=0.1, every=50, top_k=1, flow=True)
    res.sharpness        # against res.steps; compare with 2 / 0.1
    ```
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    steps = check_int(steps, "steps")
    every = check_int(every, "every")
    top_k = check_int(top_k, "top_k", minimum=0)
    if steps % every:
        raise ValueError(f"`steps` ({steps}) must be a multiple of `every` ({every}).")
    if lr is not None:
        lr = check_lr(lr)
    if optimizer is None:
        if lr is None:
            raise ValueError("`lr` is required when no `optimizer` is given.")
        optimizer_given = False
    else:
        optimizer_given = True
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"`optimizer` must be an optax GradientTransformation, got "
                            f"{type(optimizer).__name__}.")
    if flow is True:
        flow = GradientFlow()
    elif flow is False:
        flow = None
    if flow is not None:
        if not isinstance(flow, GradientFlow):
            raise TypeError(f"`flow` must be True, None or a GradientFlow, got {type(flow).__name__}.")
        if lr is None:
            raise ValueError("`lr` is required with a gradient-flow reference (`flow`): the flow "
                             "time of step k is k * lr.")
    if accuracy_fn is not None and not callable(accuracy_fn):
        raise TypeError(f"`accuracy_fn` must be callable, got {type(accuracy_fn).__name__}.")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"`checkpoint` must be a Checkpoint, got {type(checkpoint).__name__}.")
    traced = [name for name, value in (("params", params), ("data", data), ("lr", lr))
              if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))]
    if traced:
        raise TypeError(f"`{traced[0]}` is traced (under jax.grad/jit/vmap): `train` runs a host-side "
                        "loop (progress bar, checkpoints) and is neither differentiable nor traceable. "
                        "For derivatives through gradient-descent steps use `gd_map` in `lax.scan`.")
    if chunk is not None:
        chunk = check_int(chunk, "chunk")
    if not isinstance(throw, bool):
        raise TypeError(f"`throw` must be a bool, got {type(throw).__name__}.")
    if key is not None:
        check_key(key)
    check_params(params)
    check_data(data)
    check_loss(loss_fn, params, data)
    check_finite(eqx.filter(params, eqx.is_inexact_array), "params")
    check_finite(data, "data")

    arrays, loss, static = split_params(loss_fn, params)
    # strong dtypes: the carry keeps one abstract signature across chunks (and after a resume)
    arrays = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=a.dtype), arrays)
    size = ravel_pytree(arrays)[0].size
    if top_k > size:
        raise ValueError(f"`top_k` ({top_k}) must be at most the number of parameters ({size}).")
    accuracy = None if accuracy_fn is None else _CombinedLoss(accuracy_fn, static)
    cfg = _Config(every, top_k, num_iters, chunk_size)
    n_blocks = steps // every
    fstate = None if flow is None else flow_init(ravel_pytree(arrays)[0])
    opt_state = None if optimizer is None else optimizer.init(arrays)
    carry = _Carry(arrays, opt_state, fstate, jnp.zeros((), jnp.int32), RESULTS.successful,
                   jnp.asarray(-1, jnp.int32))
    config = _config_repr(cfg, lr, flow, accuracy is not None, optimizer_given)
    lr_arr = jnp.asarray(0.0 if lr is None else lr, ravel_pytree(arrays)[0].dtype)

    rows: dict[str, list] = {}
    loss_parts: list[np.ndarray] = []
    done = 0
    initial = True
    loaded = None if checkpoint is None else _load(checkpoint, config, carry)
    if loaded is not None:
        carry, saved_rows, saved_losses = loaded
        done = int(saved_losses.shape[0]) // every
        if done > n_blocks:
            raise ValueError(f"`checkpoint`: {checkpoint.path} already holds {done * every} steps, "
                             f"more than the {steps} asked for.")
        rows = {name: [value] for name, value in saved_rows.items()}
        loss_parts.append(saved_losses)
        initial = False

    if chunk is None:
        chunk = checkpoint.every if checkpoint is not None else max(1, -(-(n_blocks + 1) // 20))
    failed = carry.result != RESULTS.successful
    with _DeferredInterrupt() as interrupt:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=done * every, desc=desc, leave=False)
        try:
            since_save = 0
            while (initial or done < n_blocks) and not failed:
                n = min(chunk - int(initial), n_blocks - done)
                modes = [_INITIAL] * int(initial) + [_BLOCK] * n
                used = len(modes)
                modes = jnp.asarray(modes + [_PAD] * (chunk - used), jnp.int32)
                carry, (losses, rec) = _run_blocks(cfg, loss, accuracy, flow, optimizer, carry, modes,
                                                   lr_arr, data, key)
                carry, losses, rec = jax.block_until_ready((carry, losses, rec))
                failed = bool(carry.result != RESULTS.successful)
                loss_parts.append(np.asarray(losses)[int(initial):used].reshape(-1))
                for name, value in rec.items():
                    rows.setdefault(name, []).append(np.asarray(value)[:used])
                initial = False
                done += n
                since_save += n
                if bar is not None:
                    bar.update(n * every)
                    post = {"loss": f"{float(rec['loss'][used - 1]):.3e}"}
                    if "eigenvalues" in rec:
                        post["S"] = f"{float(rec['eigenvalues'][used - 1, 0]):.3g}"
                    bar.set_postfix(post)
                if checkpoint is not None and (since_save >= checkpoint.every or done == n_blocks
                                               or failed or interrupt.pending):
                    _save(checkpoint, config, carry, {k: np.concatenate(v) for k, v in rows.items()},
                          np.concatenate(loss_parts))
                    since_save = 0
                if interrupt.pending and done < n_blocks and not failed:
                    where = (f"the checkpoint {checkpoint.path} holds it: rerun with the same "
                             "`checkpoint` to resume" if checkpoint is not None else
                             "pass `checkpoint=Checkpoint(path)` to be able to resume")
                    raise KeyboardInterrupt(f"`train` interrupted after step {done * every} of "
                                            f"{steps}; {where}.")
        finally:
            if bar is not None:
                bar.close()

    if failed:  # the rest of the run does not exist: nan rows and losses
        missing = n_blocks + 1 - sum(len(v) for v in rows.get("loss", []))
        for parts in rows.values():
            like = parts[0]
            parts.append(np.full((missing, *like.shape[1:]), np.nan, like.dtype))
        have = sum(len(v) for v in loss_parts)
        dtype = loss_parts[0].dtype if loss_parts else np.float64
        loss_parts.append(np.full((steps - have,), np.nan, dtype))
    fstep = int(carry.failed_step)
    failed_time = jnp.asarray(fstep * float(lr) if (failed and lr is not None) else np.nan,
                              lr_arr.dtype)
    if failed:
        text = (f"`train`: step {fstep} (time {float(failed_time):.6g}) was not taken: "
                f"{message(carry.result)} Training stopped there; `params` are those of step {fstep}.")
        if throw:
            raise eqx.EquinoxRuntimeError(text)
        warnings.warn(text, RuntimeWarning, stacklevel=2)

    hist = {name: jnp.asarray(np.concatenate(parts)) for name, parts in rows.items()}
    step_rows = jnp.arange(n_blocks + 1) * every
    eig = hist.get("eigenvalues")
    flow_params = None
    if carry.flow is not None:
        unravel = ravel_pytree(arrays)[1]
        flow_params = eqx.combine(unravel(carry.flow.y), static)
    return TrainResult(
        params=eqx.combine(carry.params, static), opt_state=carry.opt_state,
        losses=jnp.asarray(np.concatenate(loss_parts)), steps=step_rows,
        times=None if lr is None else step_rows * lr_arr, loss=hist["loss"],
        gradient_norm=hist["gradient_norm"], sharpness=None if eig is None else eig[:, 0],
        eigenvalues=eig, accuracy=hist.get("accuracy"), flow_distance=hist.get("flow_distance"),
        flow_loss=hist.get("flow_loss"), flow_sharpness=hist.get("flow_sharpness"),
        flow_params=flow_params, flow_steps=None if carry.flow is None else carry.flow.steps,
        flow_result=None if carry.flow is None else carry.flow.result,
        lr=None if lr is None else lr_arr, result=carry.result, failed_step=carry.failed_step,
        failed_time=failed_time,
    )

