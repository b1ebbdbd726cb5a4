"""Parameter sweeps: vmap over a parameter array, optionally sharded over devices."""

from collections.abc import Callable

import jax

from .._results import AbstractResult, check_throw, raise_if_failed
from ..distributed._mesh import check_mesh, map_batches


def sweep(fn: Callable, params, *, mesh=None, devices=None, shard: bool | None = None,
          gather: bool = True, throw: bool = True):
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
    PyTree whose leaves share the leading axis (host data, the same on every process); `mesh`
    (a `jax.sharding.Mesh`, e.g. [`jaxdyn.distributed.global_mesh`][]: the devices of every
    process of a multi-process job; the default with several processes); `devices` (one process's
    devices, default all local ones); `shard` (default: when there is more than one device);
    `gather`: return full arrays on every process (default) or global arrays whose shards stay
    where they were computed (`False`); `throw`: when `fn` returns results (e.g. a
    [`LyapunovResult`][], computed with `throw=False` inside `fn` so that one failed member does
    not stop the sweep), raise if any member of the sweep failed (default), naming how many; with
    `False` the batched codes are returned in the results' `result` fields.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    check_throw(throw)
    if mesh is not None:
        check_mesh(mesh)
    out = map_batches(fn, params, mesh=mesh, devices=devices, shard=shard, gather_output=gather)
    return _raise_any_failed(out, throw)


def _raise_any_failed(out, throw: bool):
    """The failure policy on every result object in the output of a sweep."""
    is_result = lambda x: isinstance(x, AbstractResult)  # noqa: E731
    for res in filter(is_result, jax.tree_util.tree_leaves(out, is_leaf=is_result)):
        out = raise_if_failed(out, res.result, throw,
                              hint="(pass `throw=False` to `sweep` to get the batched codes)")
    return out
