r"""A full-batch optax training loop with trackers, a progress bar and checkpoint/resume.

The loop runs as compiled calls (`lax.scan` under `jit`) of `blocks_per_call` blocks; a block is
`every` optimiser steps followed by the trackers (loss, gradient norm, accuracy, the top Hessian
eigenvalues by Lanczos and the distance to a gradient-flow reference integrated alongside).
Between calls the host updates a tqdm bar and writes the checkpoint
([`jaxdyn._checkpoint.Checkpoint`][]: the state and the histories so far).

**Failures.** A step whose loss, gradient or new parameters are non-finite is not taken: the
parameters (and optimiser state) stay at the last finite point, the result records the code
([`jaxdyn._results.RESULTS`][]) and the step, and the host stops at the end of the call. Losses and
tracked rows after the failure are `nan` (they do not exist).

**Interrupts.** While the loop runs, the first SIGINT (Ctrl-C) is deferred to the end of the call
in flight: the device work is finished (`block_until_ready`), the checkpoint written (atomically:
a temporary file, flushed and `fsync`ed, then renamed), and only then is `KeyboardInterrupt`
raised. A KeyboardInterrupt arriving while XLA work was still in flight could otherwise unwind
the interpreter during its shutdown with computations and callbacks running, the likely source of
a segmentation fault seen once after Ctrl-C. A second SIGINT interrupts at once.
"""

import dataclasses
import functools
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

from .. import curvature as _curvature
from .._checkpoint import Checkpoint
from .._checks import check_finite, check_int
from .._deprecate import renamed_kwargs
from .._kernels import flatten
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key, PyTree
from ..curvature._lanczos import check_key
from ._gd import (
    _CombinedLoss,
    check_data,
    check_loss,
    check_lr,
    check_params,
    split_params,
    top_eigenvalues,
)
from ._gradient_flow import FlowState, GradientFlow, _flat_loss, flow_advance, flow_init


class TrainResult(AbstractResult):
    r"""Output of [`train`][].

    - `params`: the final parameters (same structure as the input); `opt_state`: the optimiser
      state.
    - `losses`: the loss before every optimiser step, shape `(n_steps,)`.
    - `steps`: the step numbers of the tracked rows, `0, every, 2 every, ..., n_steps`.
    - `times`: `steps * lr` (gradient-flow time; `None` without `lr`).
    - `loss`, `gradient_norm`: at the tracked rows.
    - `eigenvalues`: the `top_k` largest Hessian eigenvalues per row (descending), shape
      `(rows, top_k)`; `sharpness` is its first column ($\lambda_{\max}$). `None` if `top_k = 0`.
    - `accuracy`: `accuracy_fn(params, *data)` per row (`None` without `accuracy_fn`).
    - `flow_distance`: $\|\theta_{GD}(k) - \theta_{GF}(k\eta)\|$ per row; `flow_loss`,
      `flow_sharpness`: the loss and sharpness along the flow; `flow_params`: the flow's final
      parameters; `flow_steps`: solver steps taken (all `None` without a flow reference);
      `flow_result`: a [`jaxdyn._results.RESULTS`][] item, the flow's first failure
      (`max_steps_reached`, ...; `successful` when every interval finished or no flow ran).
    - `lr`: the step size used for the flow time (`None` if not given).
    - `num_hvp`: the Hessian-vector products of each row's eigenvalue computations (the sum
      over the trained point and the flow's; 0 for the rows after a failure, which do not
      exist; `-1` for rows resumed from a checkpoint written before counts were kept); `None`
      if no eigenvalues are tracked. Its sum is the tracking's cost (compare `warm_start=True`
      and `False`).
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
    flow_result: RESULTS
    lr: Array | None
    result: RESULTS
    failed_step: Array
    failed_time: Array
    num_hvp: Array | None = None

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

    def plot(self, ax=None, **kwargs):
        r"""The loss at every step (log scale) and, when tracked, the sharpness against $2/\eta$ on
        a second axis; returns `ax`."""
        from ..plot._training import draw_train

        return draw_train(self, ax=ax, **kwargs)


class _Carry(eqx.Module):
    params: PyTree
    opt_state: PyTree
    flow: FlowState | None
    step: Array
    result: RESULTS
    failed_step: Array
    eigenvectors: Array | None = None  # warm start: the last row's, (points, k, size)


class _Config(eqx.Module):
    """The static settings of the compiled blocks."""

    every: int = eqx.field(static=True)
    top_k: int = eqx.field(static=True)
    lanczos_steps: int | None = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)
    warm_start: bool = eqx.field(static=True, default=False)


class _Problem(eqx.Module):
    """What is trained and tracked: the loss of the array leaves, the accuracy (or `None`), the
    gradient-flow reference (or `None`) and the optax optimiser (`None`: plain GD with `lr`)."""

    loss: _CombinedLoss
    accuracy: _CombinedLoss | None
    flow: GradientFlow | None
    optimizer: optax.GradientTransformation | None


def _tracked_k(cfg: _Config, with_flow: bool) -> int:
    """Eigenvalues computed per row: `top_k`, at least one with a flow (its step size)."""
    return max(cfg.top_k, 1 if with_flow else 0)


def _track(cfg: _Config, flat_loss, params, fstate, *, problem: _Problem, data, key, step_time,
           vecs=None):
    """The tracked values at `params` and, with a flow, the sharpness at the flow's point (one
    Lanczos run for both, `vmap`ped over the two points); with `cfg.warm_start` each run starts
    from the previous row's eigenvectors `vecs` (`(points, k, size)`). Returns the row, the
    flow's sharpness and the new eigenvectors."""
    value, grads = jax.value_and_grad(problem.loss)(params, *data)
    out = {"loss": value, "gradient_norm": jnp.linalg.norm(flatten(grads, name="gradient")[0])}
    flow_s = None
    k = _tracked_k(cfg, fstate is not None)
    flat = flatten(params)[0]
    if k > 0:
        points = flat[None] if fstate is None else jnp.stack([flat, fstate.y])

        def eig(y, v):
            op = _curvature.hessian_operator(flat_loss, y, *data, chunk_size=cfg.chunk_size)
            if cfg.warm_start:
                res = _curvature.top_eigenvalues(op, k, v0=v, key=key, n_steps=cfg.lanczos_steps,
                                                 throw=False)
                return res.eigenvalues, res.eigenvectors, res.num_hvp
            res = top_eigenvalues(op, k, key=key, lanczos_steps=cfg.lanczos_steps)
            return res.eigenvalues, None, res.num_hvp

        if fstate is None:
            lams, vecs, hvps = jax.tree_util.tree_map(
                lambda a: a[None], eig(points[0], None if vecs is None else vecs[0]))
        else:
            lams, vecs, hvps = jax.vmap(eig)(points, vecs)
        out["num_hvp"] = jnp.sum(hvps).astype(jnp.int32)
        if cfg.top_k > 0:
            out["eigenvalues"] = lams[0, : cfg.top_k]
        if fstate is not None:
            flow_s = lams[1, 0]
    if problem.accuracy is not None:
        out["accuracy"] = jnp.asarray(problem.accuracy(params, *data))
    if fstate is not None:
        on = jnp.abs(fstate.t - step_time) <= 1e-6 * jnp.maximum(1.0, jnp.abs(step_time))
        nan = jnp.asarray(jnp.nan, value.dtype)
        out["flow_distance"] = jnp.where(on, jnp.linalg.norm(flat - fstate.y), nan)
        out["flow_loss"] = jnp.where(on, flat_loss(fstate.y, *data), nan)
        out["flow_sharpness"] = flow_s
    return out, flow_s, vecs


def _key_at(key, block):
    return None if key is None else jax.random.fold_in(key, block)


# block modes: the first block of a run only tracks the initial point, padding blocks (which fill
# the last call up to the common length, so that every call shares one compiled program) do
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


def _gd_step(problem: _Problem, lr, data):
    """One optimiser step as a `lax.scan` body over the step numbers: a non-finite loss, gradient
    or update is not taken (the last finite point is kept) and its code and step recorded."""

    def step(c, k):
        p, s, code, fstep = c
        value, g = jax.value_and_grad(problem.loss)(p, *data)
        if problem.optimizer is None:  # plain gradient descent; lr traced: one compile for all
            new_p = jax.tree_util.tree_map(lambda a, b: a - lr.astype(a.dtype) * b, p, g)
            new_s = s
        else:
            updates, new_s = problem.optimizer.update(g, s, p)
            new_p = optax.apply_updates(p, updates)
        new_code = RESULTS.where(
            ~jnp.isfinite(value), RESULTS.nonfinite_loss,
            RESULTS.where(~_all_finite(g), RESULTS.nonfinite_gradient,
                          RESULTS.where(~(_all_finite(new_p) & _all_finite(new_s)),
                                        RESULTS.nonfinite_parameters, RESULTS.successful)))
        before = code != RESULTS.successful
        now = ~before & (new_code != RESULTS.successful)
        keep = before | now
        p, s = _select(keep, (p, s), (new_p, new_s))
        code = RESULTS.where(before, code, new_code)
        fstep = jnp.where(now, k, fstep)
        return (p, s, code, fstep), jnp.where(before, jnp.asarray(jnp.nan, value.dtype), value)

    return step


@eqx.filter_jit
def _run_blocks(cfg: _Config, problem: _Problem, carry: _Carry, modes, *, lr, data, key):
    """`lax.scan` over the blocks of one compiled call (`modes`: `_INITIAL`, `_BLOCK`, `_PAD`)."""
    flat_loss = _flat_loss(problem.loss, flatten(carry.params)[1])
    flow = problem.flow
    step = _gd_step(problem, lr, data)

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
        return _Carry(p, s, fstate, n, code, fstep, c.eigenvectors), losses

    def no_steps(c: _Carry):
        value = jax.eval_shape(problem.loss, c.params, *data)
        return c, jnp.full((cfg.every,), jnp.nan, value.dtype)

    def track(c: _Carry):
        return _track(cfg, flat_loss, c.params, c.flow, problem=problem, data=data,
                      key=_key_at(key, c.step // cfg.every), step_time=c.step.astype(lr.dtype) * lr,
                      vecs=c.eigenvectors)

    def block(c: _Carry, mode):
        failed = c.result != RESULTS.successful
        c, losses = lax.cond((mode == _BLOCK) & ~failed, run_steps, no_steps, c)
        # after a failure the blocks are empty; the row that holds the failure is not recorded
        failed = c.result != RESULTS.successful
        shapes = jax.eval_shape(track, c)[0]

        def pad(c):
            dummy = jax.tree_util.tree_map(
                lambda z: jnp.full(z.shape, jnp.nan if jnp.issubdtype(z.dtype, jnp.inexact) else 0,
                                   z.dtype), shapes)
            return dummy, None if c.flow is None else c.flow.sharpness, c.eigenvectors

        rec, flow_s, vecs = lax.cond((mode == _PAD) | failed, pad, track, c)
        if c.flow is not None:  # the step size of the next flow interval
            c = eqx.tree_at(lambda c: c.flow.sharpness, c, flow_s)
        if vecs is not None:
            c = eqx.tree_at(lambda c: c.eigenvectors, c, vecs)
        return c, (losses, rec)

    return lax.scan(block, carry, modes)


def _settings(cfg: _Config, lr, problem: _Problem, optimizer_given: bool) -> dict:
    """The settings a checkpoint must match to be resumed."""
    out = {"every": cfg.every, "top_k": cfg.top_k, "lanczos_steps": cfg.lanczos_steps,
           "lr": None if lr is None else float(lr), "accuracy": problem.accuracy is not None,
           "optimizer": "custom" if optimizer_given else "sgd",
           "flow": None if problem.flow is None else repr(problem.flow), "format": 3}
    if cfg.warm_start:  # only then: checkpoints of cold runs written before stay resumable
        out["warm_start"] = True
    return out


@dataclasses.dataclass
class _History:
    """The host-side record of a run: the tracked rows and the per-step losses, in parts (one per
    compiled call); `arrays()`/`from_arrays` give the checkpoint's named arrays."""

    rows: dict = dataclasses.field(default_factory=dict)
    losses: list = dataclasses.field(default_factory=list)

    def arrays(self) -> dict:
        out = {f"row_{k}": np.concatenate(v) for k, v in self.rows.items()}
        out["losses"] = np.concatenate(self.losses)
        return out

    @staticmethod
    def from_arrays(arrays: dict) -> "_History":
        rows = {k[len("row_"):]: [v] for k, v in arrays.items() if k.startswith("row_")}
        return _History(rows, [arrays["losses"]])


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


@renamed_kwargs(steps="n_steps", chunk="blocks_per_call", num_iters="lanczos_steps")
def train(loss_fn: Callable, params: PyTree, *data, n_steps: int, lr=None,
          optimizer: optax.GradientTransformation | None = None, every: int = 10, top_k: int = 1,
          accuracy_fn: Callable | None = None, flow: GradientFlow | bool | None = None,
          checkpoint: Checkpoint | None = None, key: Key | None = None,
          lanczos_steps: int | None = None, chunk_size: int | None = None,
          warm_start: bool = False, blocks_per_call: int | None = None, progress: bool = True,
          desc: str = "train", throw: bool = True) -> TrainResult:
    r"""Full-batch training of `params` on `loss_fn(params, *data)` with trackers.

    Every `every` steps the loop records the loss, the gradient norm $\|\nabla L\|$, the `top_k`
    largest Hessian eigenvalues (Lanczos on Hessian-vector products,
    [`jaxdyn.curvature.top_eigenvalues`][]; the first is the sharpness $S = \lambda_{\max}$),
    `accuracy_fn(params, *data)` and, with a gradient-flow reference, the distance
    $\|\theta_k - \theta_{GF}(k\eta)\|$ to the flow $\theta' = -\nabla L$ started at the same
    point and integrated alongside with the step $\min(h_{\max}, c/S)$ ([`GradientFlow`][]).
    Rows are recorded at steps $0, \text{every}, \dots, \text{n\_steps}$.

    The run is cut into blocks of `every` steps (each followed by the trackers), and the blocks
    into compiled calls of `blocks_per_call` blocks (`lax.scan` under one `jit`); the first block
    only tracks the initial point and the last call is padded with empty blocks, so one program
    serves the whole run (and a resumed one). The host updates the progress bar and writes the
    checkpoint between calls.

    **Arguments:**

    - `loss_fn`: the mean loss, `loss_fn(params, *data) -> scalar`.
    - `params`: any PyTree (an Equinox model: its floating-point arrays are trained).
    - `*data`: dataset arrays sharing their leading size (full batch).
    - `n_steps`: the number of optimiser steps, a multiple of `every` (`steps` is its deprecated
      spelling).
    - `lr`: the step size of plain gradient descent $\theta \leftarrow \theta - \eta\nabla L$
      (the default, compiled once for all step sizes) and the time per step of the gradient-flow
      reference.
    - `optimizer`: any optax optimiser instead (then `lr` only sets the flow time).
    - `every`: steps per tracking block; `top_k`: eigenvalues tracked (0: none).
    - `accuracy_fn`: optional `accuracy_fn(params, *data) -> scalar`.
    - `flow`: `True` or a [`GradientFlow`][] to track the distance to gradient flow (needs `lr`).
    - `checkpoint`: a [`Checkpoint`][jaxdyn.training.Checkpoint] to write to (every
      `checkpoint.every` blocks) and resume from.
    - `key`: Lanczos start vectors (default: deterministic); `lanczos_steps`: the most Lanczos
      steps per eigenvalue computation (default: that of [`jaxdyn.curvature.top_eigenvalues`][];
      `num_iters` is its deprecated spelling).
    - `chunk_size`: examples per Hessian-vector product (a memory knob of the Hessian operator,
      as in [`jaxdyn.curvature.hessian_operator`][]; default: the whole dataset at once).
    - `warm_start`: start each row's eigenvalue computation from the previous row's
      eigenvectors (`top_eigenvalues(..., v0=...)`; the first row from a random block drawn
      with `key`), carried through the compiled loop; same tolerance, fewer Hessian-vector
      products when the eigenvectors move little between rows (`TrainResult.num_hvp`). Off by
      default: the rows then equal those of earlier releases.
    - `blocks_per_call`: tracking blocks per compiled call, i.e. how often the host sees the run
      (default: `checkpoint.every`, else about 1/20 of the run; `chunk` is its deprecated
      spelling). Only the cadence of the progress bar and of interrupts changes, not the numbers.
    - `progress`, `desc`: the tqdm bar.
    - `throw`: what a non-finite step does (it is never taken: training stops at the last finite
      point). `True` (default): an `eqx.EquinoxRuntimeError` naming the quantity and the step is
      raised once the checkpoint (if any) is written. `False`: a `RuntimeWarning` says the same
      and the result carries the code (`result`, `failed_step`, `failed_time`) with everything
      recorded up to the failure: a long run that diverges at its end still returns its history.

    **Returns:** a [`TrainResult`][].

    **Interrupts:** a first Ctrl-C (SIGINT) takes effect at the end of the compiled call in
    flight, after the checkpoint is written; `KeyboardInterrupt` is then raised with a message
    saying where the run stopped. Rerunning with the same `checkpoint` resumes it to the same
    numbers.

    **Raises:** `ValueError`/`TypeError` naming the argument for bad input (non-finite `params` or
    `data` included), before any compilation.

    **Derivatives:** none: `train` is a host-side loop; `jax.grad`, `jit` or `vmap` over
    `params`, `data` or `lr` raise a `TypeError` saying so (use [`gd_map`][] in `lax.scan`).

    **Example:**

    ```python
    res = train(mse, model, xs, ys, n_steps=2000, lr=0.1, every=50, top_k=1, flow=True)
    res.sharpness        # against res.steps; compare with 2 / 0.1
    ```
    """
    lr, flow = _check_arguments(loss_fn, params, data, n_steps=n_steps, every=every, top_k=top_k,
                                lr=lr, optimizer=optimizer, flow=flow, accuracy_fn=accuracy_fn,
                                checkpoint=checkpoint, key=key, blocks_per_call=blocks_per_call,
                                throw=throw)
    arrays, loss, static = split_params(loss_fn, params)
    # strong dtypes: the carry keeps one abstract signature across calls (and after a resume)
    arrays = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=a.dtype), arrays)
    flat0 = flatten(arrays)[0]
    if top_k > flat0.size:
        raise ValueError(f"`top_k` ({top_k}) must be at most the number of parameters ({flat0.size}).")
    problem = _Problem(loss, None if accuracy_fn is None else _CombinedLoss(accuracy_fn, static), flow,
                       optimizer)
    if not isinstance(warm_start, bool):
        raise TypeError(f"`warm_start` must be True or False, got {type(warm_start).__name__}.")
    cfg = _Config(every, top_k, lanczos_steps, chunk_size, warm_start)
    n_blocks = n_steps // every
    carry = _Carry(arrays, None if optimizer is None else optimizer.init(arrays),
                   None if flow is None else flow_init(flat0), jnp.zeros((), jnp.int32),
                   RESULTS.successful, jnp.asarray(-1, jnp.int32),
                   _first_block(cfg, flow is not None, flat0, key))
    settings = _settings(cfg, lr, problem, optimizer is not None)
    lr_arr = jnp.asarray(0.0 if lr is None else lr, flat0.dtype)

    history, done = _History(), None
    loaded = None if checkpoint is None else checkpoint.load(carry, settings)
    if loaded is not None:
        carry, saved = loaded
        history = _History.from_arrays(saved)
        done = int(saved["losses"].shape[0]) // every
        if done > n_blocks:
            raise ValueError(f"`checkpoint`: {checkpoint.path} already holds {done * every} steps, "
                             f"more than the {n_steps} asked for.")
    if blocks_per_call is None:
        blocks_per_call = (checkpoint.every if checkpoint is not None
                           else max(1, -(-(n_blocks + 1) // 20)))
    run = functools.partial(_run_blocks, cfg, problem, lr=lr_arr, data=data, key=key)
    carry = _drive(run, carry, history, done=done, n_blocks=n_blocks, every=every,
                   blocks_per_call=blocks_per_call, checkpoint=checkpoint, settings=settings,
                   progress=progress, desc=desc)
    out = _assemble(carry, history, static=static, n_blocks=n_blocks, every=every, lr=lr,
                    lr_arr=lr_arr, unravel=flatten(arrays)[1])
    if out.successful:
        return out
    fstep = int(out.failed_step)
    where = (f"`train`: step {fstep} (time {float(out.failed_time):.6g}) was not taken; training "
             f"stopped there and `params` are those of step {fstep}.")
    if not throw:
        warnings.warn(f"{where} {message(out.result)}", RuntimeWarning, stacklevel=2)
    return raise_if_failed(out, out.result, throw,
                           hint=f"{where} Pass `throw=False` to get the history up to the failure.")


def _first_block(cfg: _Config, with_flow: bool, flat0, key) -> Array | None:
    """The warm start of the first row: a normal block `(points, k, size)` drawn with `key`
    (default `jax.random.key(0)`); `None` without a warm start or eigenvalues."""
    k = _tracked_k(cfg, with_flow)
    if not cfg.warm_start or k == 0:
        return None
    draw = jax.random.key(0) if key is None else key
    return jax.random.normal(draw, (2 if with_flow else 1, k, flat0.size), flat0.dtype)


def _check_arguments(loss_fn, params, data, *, n_steps, every, top_k, lr, optimizer, flow,
                     accuracy_fn, checkpoint, key, blocks_per_call, throw):
    """Validate the arguments of `train` before any compilation; return `(lr, flow)` (`lr` an
    array or `None`, `flow` a `GradientFlow` or `None`)."""
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    n_steps = check_int(n_steps, "n_steps")
    check_int(every, "every")
    check_int(top_k, "top_k", minimum=0)
    if n_steps % every:
        raise ValueError(f"`n_steps` ({n_steps}) must be a multiple of `every` ({every}).")
    if lr is not None:
        lr = check_lr(lr)
    if optimizer is None:
        if lr is None:
            raise ValueError("`lr` is required when no `optimizer` is given.")
    elif not isinstance(optimizer, optax.GradientTransformation):
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
    if blocks_per_call is not None:
        check_int(blocks_per_call, "blocks_per_call")
    check_throw(throw)
    if key is not None:
        check_key(key)
    check_params(params)
    check_data(data)
    check_loss(loss_fn, params, data)
    check_finite(eqx.filter(params, eqx.is_inexact_array), "params")
    check_finite(data, "data")
    return lr, flow


def _drive(run, carry: _Carry, history: _History, *, done, n_blocks, every, blocks_per_call,
           checkpoint, settings, progress, desc) -> _Carry:
    """The host loop: compiled calls of `blocks_per_call` blocks until `n_blocks` are done or a
    step fails, the progress bar, the checkpoint, and a deferred Ctrl-C. `done` is the number of
    blocks a resumed run already holds (`None`: a fresh run, whose first block tracks the initial
    point). Appends to `history` in place; returns the final carry."""
    initial = done is None
    done = 0 if done is None else done
    n_steps = n_blocks * every
    failed = carry.result != RESULTS.successful
    with _DeferredInterrupt() as interrupt:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_steps, initial=done * every, desc=desc, leave=False)
        try:
            since_save = 0
            while (initial or done < n_blocks) and not failed:
                n = min(blocks_per_call - int(initial), n_blocks - done)
                modes = [_INITIAL] * int(initial) + [_BLOCK] * n
                used = len(modes)
                modes = jnp.asarray(modes + [_PAD] * (blocks_per_call - used), jnp.int32)
                carry, (losses, rec) = jax.block_until_ready(run(carry, modes))
                failed = bool(carry.result != RESULTS.successful)
                history.losses.append(np.asarray(losses)[int(initial):used].reshape(-1))
                for name, value in rec.items():
                    history.rows.setdefault(name, []).append(np.asarray(value)[:used])
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
                    checkpoint.save(carry, history.arrays(), settings)
                    since_save = 0
                if interrupt.pending and done < n_blocks and not failed:
                    where = (f"the checkpoint {checkpoint.path} holds it: rerun with the same "
                             "`checkpoint` to resume" if checkpoint is not None else
                             "pass `checkpoint=Checkpoint(path)` to be able to resume")
                    raise KeyboardInterrupt(f"`train` interrupted after step {done * every} of "
                                            f"{n_steps}; {where}.")
        finally:
            if bar is not None:
                bar.close()
    return carry


def _assemble(carry: _Carry, history: _History, *, static, n_blocks, every, lr, lr_arr,
              unravel) -> TrainResult:
    """The `TrainResult` of a finished (or failed) run; after a failure the rest of the run does
    not exist: `nan` rows and losses."""
    failed = bool(carry.result != RESULTS.successful)
    n_steps = n_blocks * every
    if failed:
        missing = n_blocks + 1 - sum(len(v) for v in history.rows.get("loss", []))
        for parts in history.rows.values():
            like = parts[0]
            fill = np.nan if np.issubdtype(like.dtype, np.inexact) else 0  # no work: 0 HVPs
            parts.append(np.full((missing, *like.shape[1:]), fill, like.dtype))
        have = sum(len(v) for v in history.losses)
        dtype = history.losses[0].dtype if history.losses else np.float64
        history.losses.append(np.full((n_steps - have,), np.nan, dtype))
    fstep = int(carry.failed_step)
    failed_time = jnp.asarray(fstep * float(lr) if (failed and lr is not None) else np.nan,
                              lr_arr.dtype)
    hist = {name: np.concatenate(parts) for name, parts in history.rows.items()}
    if "num_hvp" in hist:  # rows resumed from a checkpoint written before counts were kept
        hist["num_hvp"] = np.pad(hist["num_hvp"], (n_blocks + 1 - len(hist["num_hvp"]), 0),
                                 constant_values=-1)
    hist = {name: jnp.asarray(value) for name, value in hist.items()}
    step_rows = jnp.arange(n_blocks + 1) * every
    eig = hist.get("eigenvalues")
    fs = carry.flow
    return TrainResult(
        params=eqx.combine(carry.params, static), opt_state=carry.opt_state,
        losses=jnp.asarray(np.concatenate(history.losses)), steps=step_rows,
        times=None if lr is None else step_rows * lr_arr, loss=hist["loss"],
        gradient_norm=hist["gradient_norm"], sharpness=None if eig is None else eig[:, 0],
        eigenvalues=eig, accuracy=hist.get("accuracy"), flow_distance=hist.get("flow_distance"),
        flow_loss=hist.get("flow_loss"), flow_sharpness=hist.get("flow_sharpness"),
        flow_params=None if fs is None else eqx.combine(unravel(fs.y), static),
        flow_steps=None if fs is None else fs.steps,
        flow_result=RESULTS.successful if fs is None else fs.result,
        lr=None if lr is None else lr_arr, result=carry.result, failed_step=carry.failed_step,
        failed_time=failed_time, num_hvp=hist.get("num_hvp"),
    )
