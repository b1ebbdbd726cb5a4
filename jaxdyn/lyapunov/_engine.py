"""The Benettin/QR engine shared by every spectrum: state, blocks, chunks, checkpoints.

The engine runs any [`AbstractSystem`][jaxdyn.lyapunov._systems.AbstractSystem]: it calls
`system.tangent(x, Q, i, key)` (one step with the tangent block pushed through it) and nothing
else. Independent chains are a leading axis of the state (vmapped); a single trajectory is one
chain. Checkpoints are [`jaxdyn._checkpoint.Checkpoint`][] files.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checkpoint import Checkpoint
from .._checks import check_int
from .._results import RESULTS
from .._types import Array
from ._result import LyapunovResult
from ._systems import AbstractSystem


class EngineState(eqx.Module):
    """The full state of a QR run: everything needed to resume it."""

    x: Array            # base state (flat)
    Q: Array            # orthonormal tangent block, shape (n, k)
    log_sums: Array     # accumulated log |R_ii|, shape (k,)
    step: Array         # next step index
    key: Array          # the chain's random key (raw key data, uint32)
    good_blocks: Array  # renormalisation blocks accumulated
    result: RESULTS     # the chain's result code
    failed_step: Array  # first step with a non-finite value (-1 if none)


_SMALL_K = 8


def qr_positive(Q: Array) -> tuple[Array, Array]:
    """Reduced QR with the sign fixed so that `diag(R) >= 0`; returns `(Q, diag(R))`.

    For up to 8 columns: classical Gram-Schmidt with one full re-orthogonalisation pass
    ("twice is enough", Giraud et al. 2005: orthogonal to working precision whenever the block is
    numerically full rank), unrolled into plain vector operations, several times faster than a
    LAPACK call on tiny blocks. For more columns: Householder (`jnp.linalg.qr`). A zero column
    gives a zero diagonal entry (reported as `degenerate_tangent` by the engine), never a NaN.
    """
    k = Q.shape[1]
    if k > _SMALL_K:
        q, r = jnp.linalg.qr(Q, mode="reduced")
        d = jnp.diagonal(r)
        s = jnp.where(d < 0, -1.0, 1.0).astype(Q.dtype)
        return q * s[None, :], jnp.abs(d)
    cols: list[Array] = []
    diag = []
    for j in range(k):
        v = Q[:, j]
        for _ in range(2):
            if cols:
                basis = jnp.stack(cols, axis=1)
                v = v - basis @ (basis.T @ v)
        r = jnp.linalg.norm(v)
        cols.append(v / jnp.where(r > 0, r, 1.0))
        diag.append(r)
    return jnp.stack(cols, axis=1), jnp.stack(diag)


def init_state(x0: Array, Q0: Array, key=None) -> EngineState:
    """One chain's initial state (orthonormalised `Q0`)."""
    k = Q0.shape[1]
    dtype = x0.dtype
    Q, _ = qr_positive(Q0)
    i32 = jnp.int32
    key = jax.random.key(0) if key is None else key
    return EngineState(x=x0, Q=Q, log_sums=jnp.zeros(k, dtype), step=jnp.zeros((), i32),
                       key=jax.random.key_data(key), good_blocks=jnp.zeros((), i32),
                       result=RESULTS.where(True, RESULTS.successful, RESULTS.successful),
                       failed_step=jnp.full((), -1, i32))


def _key(state_key):
    return jax.random.wrap_key_data(state_key)


def _all_finite(*xs) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))


def _failure(x: Array, Q: Array, d: Array | None = None) -> tuple[Array, RESULTS]:
    """Whether a step failed, and its code: the state non-finite first, then the tangent block,
    then a tangent vector of zero length (`d`, the diagonal of R, when given)."""
    state_ok = _all_finite(x)
    tangent_ok = _all_finite(Q) if d is None else _all_finite(Q, d)
    nondegenerate = jnp.asarray(True) if d is None else jnp.all(d > 0)
    code = RESULTS.where(~state_ok, RESULTS.nonfinite_state,
                         RESULTS.where(~tangent_ok, RESULTS.nonfinite_tangent,
                                       RESULTS.where(~nondegenerate, RESULTS.degenerate_tangent,
                                                     RESULTS.successful)))
    return ~(state_ok & tangent_ok & nondegenerate), code


def run_transient(system: AbstractSystem, state: EngineState, n: int) -> EngineState:
    """`n` steps of the base dynamics *and* the tangents (orthonormalised every step, logs not
    accumulated): the state reaches the attractor and the tangent block aligns with the
    Oseledets directions before anything is counted. Finite-checked."""
    if n == 0:
        return state
    key = _key(state.key)

    def body(carry, _):
        x, Q, i, failed, code = carry
        x_new, Q_new = system.tangent(x, Q, i, key)
        Q_new, _ = qr_positive(Q_new)
        bad, new_code = _failure(x_new, Q_new)
        first = (failed < 0) & bad
        failed = jnp.where(first, i, failed)
        code = RESULTS.where(first, new_code, code)
        keep = failed < 0
        return (jnp.where(keep, x_new, x), jnp.where(keep, Q_new, Q), i + 1, failed, code), None

    init = (state.x, state.Q, state.step, state.failed_step, state.result)
    (x, Q, i, failed, result), _ = lax.scan(body, init, None, length=n)
    return eqx.tree_at(lambda s: (s.x, s.Q, s.step, s.failed_step, s.result), state,
                       (x, Q, i, failed, result))


def run_blocks(system: AbstractSystem, state: EngineState, n_groups: int, *, history_every: int,
               renorm_every: int, time_per_step, count_from=None) -> tuple[EngineState, Array]:
    """`n_groups * history_every` renormalisation blocks of `renorm_every` tangent steps; returns
    the new state and the running estimates after every `history_every` blocks, shape
    `(n_groups, k)`. Finiteness is checked once per block (a NaN carries through the block):
    `failed_step` is the first step of the block in which it appeared (exact when
    `renorm_every == 1`). Blocks starting before step `count_from` (a transient folded into the
    same loop) are renormalised but not counted."""

    key = _key(state.key)

    def inner(carry, _):
        x, Q, i = carry
        x_new, Q_new = system.tangent(x, Q, i, key)
        return (x_new, Q_new, i + 1), None

    def block(s: EngineState, _):
        if renorm_every == 1:  # no inner loop: a smaller program, faster to compile
            (x1, Q1, i1), _ = inner((s.x, s.Q, s.step), None)
        else:
            (x1, Q1, i1), _ = lax.scan(inner, (s.x, s.Q, s.step), None, length=renorm_every)
        Qn, d = qr_positive(Q1)
        bad, new_code = _failure(x1, Qn, d)
        running = s.result == RESULTS.successful
        ok = ~bad & running
        counted = ok if count_from is None else ok & (s.step >= count_from)
        code = RESULTS.where(running, new_code, s.result)
        failed = jnp.where((s.failed_step < 0) & running & ~ok, s.step, s.failed_step)
        log_sums = jnp.where(counted, s.log_sums + jnp.log(jnp.where(d > 0, d, 1.0)), s.log_sums)
        good = s.good_blocks + counted.astype(s.good_blocks.dtype)
        new = EngineState(
            x=jnp.where(ok, x1, s.x), Q=jnp.where(ok, Qn, s.Q), log_sums=log_sums, step=i1,
            key=s.key, good_blocks=good, result=code, failed_step=failed.astype(s.failed_step.dtype),
        )
        return new, None

    def group(s: EngineState, _):
        s, _ = lax.scan(block, s, None, length=history_every)
        elapsed = jnp.maximum(s.good_blocks, 1) * renorm_every * time_per_step
        return s, s.log_sums / elapsed

    return lax.scan(group, state, None, length=n_groups)


def _over_chains(fn, states, out_axes):
    """`vmap` over the chain axis; a single chain runs unbatched (a smaller program)."""
    if jax.tree_util.tree_leaves(states)[0].shape[0] == 1:
        out = fn(jax.tree_util.tree_map(lambda a: a[0], states))
        return jax.tree_util.tree_map(lambda a, ax: jnp.expand_dims(a, ax), out, out_axes)
    return jax.vmap(fn, out_axes=out_axes)(states)


def _transient_chains(system, states, n):
    fn = lambda s: run_transient(system, s, n)
    return _over_chains(fn, states, jax.tree_util.tree_map(lambda _: 0, states))


def _blocks_chains(system, states, n_groups, *, history_every, renorm_every, time_per_step,
                   transient_steps=0):
    fn = lambda s: run_blocks(system, s, n_groups, history_every=history_every,
                              renorm_every=renorm_every, time_per_step=time_per_step,
                              count_from=None if transient_steps == 0 else s.step + transient_steps)
    axes = (jax.tree_util.tree_map(lambda _: 0, states), 1)
    return _over_chains(fn, states, axes)


_jit_transient = eqx.filter_jit(_transient_chains)
_jit_blocks = eqx.filter_jit(_blocks_chains)


def is_traced(*trees: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer)
               for tree in trees for leaf in jax.tree_util.tree_leaves(tree))


def choose_history_every(n_blocks: int, requested: int | None, checkpoint) -> int:
    """Blocks per history row: the requested value (must divide `n_blocks`), 1 with a
    checkpoint (so resumed and extended runs keep one layout), else the largest divisor of
    `n_blocks` not above `n_blocks // 1000` (about 1000 rows at most)."""
    if requested is not None:
        h = check_int(requested, "history_every")
        if n_blocks % h:
            raise ValueError(
                f"`history_every` ({h}) must divide the number of renormalisations ({n_blocks})."
            )
        if checkpoint is not None and checkpoint.every % h:
            raise ValueError(f"`history_every` ({h}) must divide `checkpoint.every`.")
        return h
    if checkpoint is not None:
        return 1
    h = max(1, n_blocks // 1000)
    while n_blocks % h:
        h -= 1
    return h


def benettin(system: AbstractSystem, states: EngineState, *, transient_steps: int, n_blocks: int,
             renorm_every: int, time_per_step, progress: bool, checkpoint: Checkpoint | None,
             config: dict, desc: str, history_every: int | None = None,
             traced: bool = False) -> LyapunovResult:
    """Run the transient and `n_blocks` QR blocks on a batch of chains (leading axis of
    `states`); chunked with a progress bar and checkpoints when the inputs are concrete, one
    `lax.scan` when traced (inside jit/vmap/grad; `traced=True` when the caller knows the system
    closes over traced values). History rows every `history_every` blocks. Never raises on a
    failed run: the caller applies the failure policy."""
    h = choose_history_every(n_blocks, history_every, checkpoint)
    n_groups = n_blocks // h
    blocks = dict(history_every=h, renorm_every=renorm_every, time_per_step=time_per_step)
    traced = traced or is_traced(system, states, time_per_step)
    if traced:
        if checkpoint is not None:
            raise ValueError("`checkpoint` cannot be used inside jit/vmap (the inputs are traced).")
        return _traced_run(system, states, transient_steps=transient_steps, n_groups=n_groups,
                           **blocks)

    history_parts: list[np.ndarray] = []
    done = 0
    loaded = None if checkpoint is None else checkpoint.load(states, config)
    if loaded is not None:
        state, arrays = loaded
        history_parts.append(arrays["history"])
        done = arrays["history"].shape[0]
        if done > n_groups:
            raise ValueError(
                f"`checkpoint`: {checkpoint.path} already holds {done * h} renormalisations, "
                f"more than the {n_groups * h} asked for."
            )
    else:
        state = _jit_transient(system, states, transient_steps)
        if is_traced(state):
            # the system closes over traced values (e.g. `sample_fn` closing over a parameter
            # under `jax.grad`): finish as one traced loop
            if checkpoint is not None:
                raise ValueError("`checkpoint` cannot be used inside jit/vmap/grad (the inputs "
                                 "are traced).")
            state, history = _blocks_chains(system, state, n_groups, **blocks)
            return _finish(state, history, **blocks)
    chunk = checkpoint.every if checkpoint is not None else max(1, -(-n_groups // 50))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_groups, initial=done, desc=desc, leave=False)
    while done < n_groups:
        n = min(chunk, n_groups - done)
        state, hist = _jit_blocks(system, state, n, **blocks)
        history_parts.append(np.asarray(hist))
        done += n
        if bar is not None:
            bar.update(n)
        if checkpoint is not None:
            checkpoint.save(state, {"history": np.concatenate(history_parts)}, config)
    if bar is not None:
        bar.close()
    history = jnp.asarray(np.concatenate(history_parts))
    return _jit_finish(state, history, **blocks)


def _traced_run(system, states, *, transient_steps, n_groups, history_every, renorm_every,
                time_per_step) -> LyapunovResult:
    """The whole run as one traced loop (inside jit/vmap/grad)."""
    blocks = dict(history_every=history_every, renorm_every=renorm_every,
                  time_per_step=time_per_step)
    per_group = renorm_every * history_every
    if transient_steps % per_group == 0:
        # one loop for transient and measurement (one compiled body: faster to compile)
        n_pre = transient_steps // per_group
        state, history = _blocks_chains(system, states, n_pre + n_groups,
                                        transient_steps=transient_steps, **blocks)
        history = history[n_pre:]
    else:
        state = _transient_chains(system, states, transient_steps)
        state, history = _blocks_chains(system, state, n_groups, **blocks)
    return _finish(state, history, **blocks)


def _finish(state: EngineState, history: Array, *, renorm_every: int, history_every: int,
            time_per_step) -> LyapunovResult:
    """Per-chain exponents -> mean, standard error (chains > 1), descending order; NaN
    exponents when a chain failed (the transient included), and the code of the first chain
    that failed."""
    elapsed = jnp.maximum(state.good_blocks, 1) * renorm_every * time_per_step
    per_chain = state.log_sums / elapsed[:, None]
    n_chains = per_chain.shape[0]
    chain_ok = state.result == RESULTS.successful
    failed = ~jnp.all(chain_ok)
    per_chain = jnp.where(failed, jnp.nan, per_chain)
    exponents = jnp.mean(per_chain, axis=0)
    hist = jnp.mean(history, axis=1)
    stderr = None
    if n_chains > 1:
        stderr = jnp.std(per_chain, axis=0, ddof=1) / jnp.sqrt(n_chains)
    # ordered by the estimates accumulated so far (also when failed: `history` stays readable)
    order = jnp.argsort(-jnp.mean(state.log_sums / elapsed[:, None], axis=0))
    n = history.shape[0]
    times = (jnp.arange(1, n + 1) * (renorm_every * history_every)) * time_per_step
    squeeze = (lambda a: a[0]) if n_chains == 1 else (lambda a: a)
    first_failed = jnp.argmax(~chain_ok)
    result = jax.tree_util.tree_map(lambda v: v[first_failed], state.result)
    return LyapunovResult(
        exponents=exponents[order], history=hist[:, order], times=times,
        stderr=None if stderr is None else stderr[order], result=result,
        failed_step=squeeze(state.failed_step), steps=squeeze(state.good_blocks) * renorm_every,
        final_state=squeeze(state.x), final_tangents=squeeze(state.Q)[..., order],
    )


_jit_finish = eqx.filter_jit(_finish)
