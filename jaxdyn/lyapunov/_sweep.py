"""Parameter sweeps: vmap over a parameter array, optionally sharded over devices."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._results import AbstractResult, check_throw, raise_if_failed


@eqx.filter_jit
def _vmapped(fn, params):
    # module-level: calling `sweep` again with the same `fn` object reuses the compilation
    return jax.vmap(fn)(params)


def sweep(fn: Callable, params, *, devices=None, shard: bool | None = None, throw: bool = True):
    r"""`jax.vmap(fn)(params)` under `jit`, the leading axis of `params` split across devices.

    Any entry point is vmap-able over its numeric inputs, so a sweep is
    `sweep(lambda rho: flow_spectrum(lorenz, y0, args=rho, dt=0.01, n_steps=10_000,
    progress=False).exponents, rhos)`. With several devices (GPUs, TPU cores, or virtual CPU
    devices from `XLA_FLAGS=--xla_force_host_platform_device_count=N`), the parameters are laid
    out with a `NamedSharding` along the sweep axis (padded to a multiple of the device count by
    repeating the last value, and the padding dropped); each device runs the single-device
    program `jit(vmap(fn))` on its slice, concurrently, and the outputs come back as one array
    with the same sharding. The result equals the single-device one (bit for bit on CPU).

    The compiled program is cached on `fn`'s identity (and the parameters' shapes): define `fn`
    once and call `sweep` with that object again to skip the compilation.

    **Arguments:** `fn(p)` for one parameter (any PyTree of leading-axis slices); `params` a
    PyTree whose leaves share the leading axis; `devices` (default all); `shard` (default: when
    there is more than one device); `throw`: when `fn` returns results (e.g. a
    [`LyapunovResult`][], computed with `throw=False` inside `fn` so that one failed member does
    not stop the sweep), raise if any member of the sweep failed (default), naming how many; with
    `False` the batched codes are returned in the results' `result` fields.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    check_throw(throw)
    return _raise_any_failed(_sweep(fn, params, devices=devices, shard=shard), throw)


def _raise_any_failed(out, throw: bool):
    """The failure policy on every result object in the output of a sweep."""
    is_result = lambda x: isinstance(x, AbstractResult)  # noqa: E731
    for res in filter(is_result, jax.tree_util.tree_leaves(out, is_leaf=is_result)):
        out = raise_if_failed(out, res.result, throw,
                              hint="(pass `throw=False` to `sweep` to get the batched codes)")
    return out


def _sweep(fn, params, *, devices, shard):
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("`devices` is empty.")
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("`params` is empty.")
    if any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError("`params`: every leaf needs a leading (sweep) axis; got a scalar (use "
                         "jnp.atleast_1d or an array of values).")
    n = jnp.shape(leaves[0])[0]
    if n == 0:
        raise ValueError("`params` has an empty sweep axis.")
    if any(jnp.shape(leaf)[0] != n for leaf in leaves):
        raise ValueError("`params`: every leaf must share the leading (sweep) axis.")
    shard = len(devices) > 1 if shard is None else shard
    batched = lambda p: _vmapped(fn, p)
    if not shard:
        return batched(params)
    n_dev = len(devices)
    pad = (-n) % n_dev
    padded = jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a, params)
    mesh = Mesh(np.asarray(devices), ("sweep",))
    sharding = NamedSharding(mesh, PartitionSpec("sweep"))
    placed = jax.device_put(padded, sharding)
    # Each device runs the *single-device* compiled program on its own slice (dispatch is
    # asynchronous, so the devices work concurrently); the per-device outputs are assembled into
    # one array sharded the same way. Unlike an SPMD-partitioned jit (whose per-device program XLA
    # compiles differently, so chaotic runs drift apart at the 1e-14 level per step), this gives
    # the same numbers as an unsharded vmap, bit for bit on CPU.
    leaves, treedef = jax.tree_util.tree_flatten(placed)
    per_device = []
    for i in range(n_dev):
        part = [sorted(leaf.addressable_shards, key=lambda sh: sh.index[0].start or 0)[i].data
                for leaf in leaves]
        per_device.append(batched(jax.tree_util.tree_unflatten(treedef, part)))
    out_leaves = [jax.tree_util.tree_leaves(out) for out in per_device]
    out_treedef = jax.tree_util.tree_structure(per_device[0])
    assembled = []
    for j in range(len(out_leaves[0])):
        pieces = [out_leaves[i][j] for i in range(n_dev)]
        shape = (sum(p.shape[0] for p in pieces), *pieces[0].shape[1:])
        assembled.append(jax.make_array_from_single_device_arrays(shape, sharding, pieces))
    out = jax.tree_util.tree_unflatten(out_treedef, assembled)
    return jax.tree_util.tree_map(lambda a: a[:n], out)
