r"""Global meshes, placing host data on them, gathering results, and the batch map every sweep uses."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def global_mesh(axis_name: str = "batch", *, devices=None) -> Mesh:
    r"""A one-axis mesh over every device of every process (process-major order).

    **Arguments:** `axis_name` (default `"batch"`; e.g. `"nodes"` for particles); `devices` (a
    subset, default `jax.devices()`: all devices of all processes).

    **Returns:** a `jax.sharding.Mesh` of shape `(n_devices,)`.
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(f"`axis_name` must be a non-empty string, got {axis_name!r}.")
    devices = jax.devices() if devices is None else check_devices(devices)
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices, dtype=object), (axis_name,))


def check_mesh(mesh) -> Mesh:
    """`mesh` is a `jax.sharding.Mesh` (a `TypeError` naming `mesh` otherwise)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh (e.g. jaxdyn.distributed.global_mesh()), "
                        f"got {type(mesh).__name__}.")
    return mesh


def check_devices(devices) -> list | None:
    """`devices` is `None` or a non-empty sequence of `jax.Device` (a `TypeError`/`ValueError`
    naming `devices` otherwise); returned as a list."""
    if devices is None:
        return None
    if isinstance(devices, (str, bytes, Mesh)) or not hasattr(devices, "__iter__"):
        raise TypeError(f"`devices` must be a sequence of jax devices (e.g. jax.local_devices()), "
                        f"got {type(devices).__name__}.")
    devices = list(devices)
    if not devices:
        raise ValueError("`devices` is empty.")
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"`devices` must hold jax devices (e.g. jax.local_devices()), got "
                        f"{type(bad[0]).__name__}.")
    return devices


def check_placement(mesh, devices, gather, inputs=None) -> bool:
    r"""The placement arguments of a sharded entry point: `mesh` a `jax.sharding.Mesh` or `None`,
    `devices` a list of devices or `None` (not both), `gather` a bool. Returns whether the batch
    is to be split over devices: a mesh or devices given, or several processes. Under `jit` or
    `vmap` (a tracer among the leaves of `inputs`) nothing is split: the default is the
    unsharded path, and an explicit `mesh`/`devices` is a `ValueError`."""
    if mesh is not None:
        check_mesh(mesh)
    check_devices(devices)
    if mesh is not None and devices is not None:
        raise ValueError("give `mesh` or `devices`, not both.")
    if not isinstance(gather, (bool, np.bool_)):
        raise TypeError(f"`gather` must be a bool, got {type(gather).__name__}.")
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(inputs))
    if traced and (mesh is not None or devices is not None):
        raise ValueError("`mesh`/`devices` cannot be used under jit or vmap: call the entry point "
                         "eagerly (it compiles its per-device programs itself).")
    return not traced and (mesh is not None or devices is not None or jax.process_count() > 1)


def mesh_devices(mesh: Mesh) -> list:
    """The mesh's devices in the order its leading-axis shards go (row-major over all axes)."""
    return list(np.asarray(check_mesh(mesh).devices).flat)


def leading_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """The leading axis split over every axis of `mesh`, the others replicated."""
    names = tuple(mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(names if len(names) > 1 else names[0], *([None] * (ndim - 1))))


def put(tree, mesh: Mesh):
    r"""Place host data, the same on every process, on `mesh`, split along each leaf's leading axis.

    Each process copies only the slices that its own devices hold (`jax.make_array_from_callback`),
    so the data never travels between processes. Every array leaf needs a leading axis divisible by
    the number of devices of `mesh`; other leaves are returned unchanged.

    **Returns:** the PyTree with global `jax.Array` leaves.
    """
    check_mesh(mesh)
    n_dev = mesh.devices.size

    def place(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray)) or np.ndim(leaf) == 0:
            return leaf
        host = np.asarray(leaf)
        if host.shape[0] % n_dev:
            raise ValueError(f"a leaf with leading axis {host.shape[0]} cannot be split over the mesh's "
                             f"{n_dev} devices: pad it to a multiple of {n_dev}.")
        return jax.make_array_from_callback(host.shape, leading_sharding(mesh, host.ndim),
                                            lambda index: host[index])

    return jax.tree_util.tree_map(place, tree)


def gather(tree):
    r"""Every array leaf as one array on this process: the full value, gathered from every process.

    A single-process array is returned as it is; a global array that spans several processes is
    gathered (`multihost_utils.process_allgather`: every process must call `gather`) and comes
    back on this process's default device.
    """

    def one(leaf):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer) \
                and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return jnp.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return leaf

    return jax.tree_util.tree_map(one, tree)


@eqx.filter_jit
def _vmapped(fn, params):
    # module-level: calling again with the same `fn` object reuses the compilation
    return jax.vmap(fn)(params)


def _slice_tree(tree, lo: int, hi: int):
    return jax.tree_util.tree_map(lambda a: a[lo:hi], tree)


def map_batches(fn: Callable, params, *, mesh: Mesh | None = None, devices=None, shard: bool | None = None,
                gather_output: bool = True):
    r"""`jax.vmap(fn)(params)`, the leading axis of `params` split over the devices of `mesh`.

    The kernel behind every sharded sweep of jaxdyn ([`jaxdyn.lyapunov.sweep`][], `ftle_field`,
    `sgd_stability_diagram`, `gd_endpoints`, the multi-start root finders). The leading axis is
    padded to a multiple of the device count (repeating the last value; the padding is dropped);
    each device runs the *single-device* program `jit(vmap(fn))` on its slice, and the per-device
    outputs are assembled into global arrays. Dispatch is asynchronous, so separate accelerators
    and separate processes work concurrently; the virtual CPU devices of one process were measured
    to run one after another (`benchmarks/scale.py`: 2 devices, wall-time efficiency 0.50 at a
    CPU-work efficiency of 1.00), so on one CPU machine use processes. XLA compiles the program once
    per device (the executable is tied to its device). The numbers are those of one unsharded
    `vmap` (bit for bit on CPU): no SPMD-partitioned program, whose per-device code XLA may compile
    differently.

    **Arguments:** `fn(p)` of one member; `params` (a PyTree whose leaves share the leading axis,
    host data the same on every process); `mesh` (default: with several processes, the
    [`global_mesh`][] over all of them); `devices` (a single-process alternative to `mesh`);
    `shard` (default: when there is more than one device); `gather_output` (`True`: full arrays on
    every process, process 0 included; `False`: global arrays, each process holding its shards).
    """
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
    if mesh is not None:
        check_mesh(mesh)
    devices = check_devices(devices)
    if mesh is not None and devices is not None:
        raise ValueError("give `mesh` or `devices`, not both.")
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    if shard is not None and not isinstance(shard, (bool, np.bool_)):
        raise TypeError(f"`shard` must be a bool or None, got {type(shard).__name__}.")
    if not isinstance(gather_output, (bool, np.bool_)):
        raise TypeError(f"`gather_output` must be a bool, got {type(gather_output).__name__}.")
    if mesh is None and devices is None and jax.process_count() > 1:
        mesh = global_mesh()
    if mesh is not None:
        devices = mesh_devices(mesh)
    else:
        devices = jax.local_devices() if devices is None else devices
        if any(d.process_index != jax.process_index() for d in devices):
            raise ValueError("`devices` holds another process's devices: pass `mesh=` "
                             "(jaxdyn.distributed.global_mesh()) for a multi-process run.")
        mesh = Mesh(np.asarray(devices, dtype=object), ("batch",))
    shard = len(devices) > 1 if shard is None else bool(shard)
    if not shard:
        if jax.process_count() > 1 and len(devices) > 1:
            raise ValueError("`shard=False` with a multi-process mesh: every process would compute "
                             "everything; pass a one-process `devices` list instead.")
        return _vmapped(fn, params)
    n_dev = len(devices)
    per = -(-n // n_dev)
    padded_n = per * n_dev
    host = jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], padded_n - n, axis=0)]) if padded_n > n else a,
        params)
    me = jax.process_index()
    pieces = {}
    for i, dev in enumerate(devices):
        if dev.process_index != me:
            continue
        part = jax.device_put(_slice_tree(host, i * per, (i + 1) * per), dev)
        pieces[i] = _vmapped(fn, part)
    if not pieces:
        raise ValueError("this process holds none of `mesh`'s devices.")
    first = next(iter(pieces.values()))
    out_treedef = jax.tree_util.tree_structure(first)
    out_leaves = {i: jax.tree_util.tree_leaves(p) for i, p in pieces.items()}
    assembled = []
    for j, ref in enumerate(jax.tree_util.tree_leaves(first)):
        shape = (padded_n, *ref.shape[1:])
        sharding = leading_sharding(mesh, len(shape))
        assembled.append(jax.make_array_from_single_device_arrays(
            shape, sharding, [out_leaves[i][j] for i in sorted(out_leaves)]))
    out = jax.tree_util.tree_unflatten(out_treedef, assembled)
    if gather_output:
        return jax.tree_util.tree_map(lambda a: a[:n], gather(out))
    if padded_n == n:
        return out
    return jax.jit(lambda t: jax.tree_util.tree_map(lambda a: a[:n], t))(out)


def replicate(tree, mesh: Mesh):
    """Place host data, the same on every process, on every device of `mesh` (a full copy each)."""
    check_mesh(mesh)

    def place(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            return leaf
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, NamedSharding(mesh, PartitionSpec()),
                                            lambda index: host[index])

    return jax.tree_util.tree_map(place, tree)


def sharded_mesh(tree) -> Mesh | None:
    """The mesh of the first leaf of `tree` placed with a `NamedSharding` over several processes
    (`None` when every leaf lives in this process)."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer) \
                and not leaf.is_fully_addressable and isinstance(leaf.sharding, NamedSharding):
            return leaf.sharding.mesh
    return None
