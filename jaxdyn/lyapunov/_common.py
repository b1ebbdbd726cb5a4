"""Validation and set-up shared by the spectrum entry points."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_int, is_concrete
from .._results import raise_if_failed
from ._engine import init_state


def flatten_state(y0, name: str):
    """Ravel a PyTree state to a float vector; returns `(x0, unravel)`."""
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves:
        raise ValueError(f"`{name}` is empty.")
    x0, unravel = jax.flatten_util.ravel_pytree(y0)
    if not jnp.issubdtype(x0.dtype, jnp.inexact):
        x0 = x0.astype(jnp.result_type(float))
        unravel_int = unravel
        unravel = lambda x: unravel_int(x)  # noqa: E731 - keep float values
    x0 = check_finite(x0, name)
    return x0, unravel


def check_k(k, dim: int) -> int:
    if k is None:
        return dim
    k = check_int(k, "k")
    if k > dim:
        raise ValueError(f"`k` must be at most the dimension {dim}, got {k}.")
    return k


def check_steps(n_steps, renorm_every, transient_steps) -> tuple[int, int, int]:
    n_steps = check_int(n_steps, "n_steps")
    renorm_every = check_int(renorm_every, "renorm_every")
    transient_steps = check_int(transient_steps, "transient_steps", minimum=0)
    if n_steps % renorm_every:
        raise ValueError(
            f"`n_steps` ({n_steps}) must be a multiple of `renorm_every` ({renorm_every})."
        )
    return n_steps, renorm_every, transient_steps


def check_key(key, name: str = "key") -> None:
    """A JAX random key: typed (`jax.random.key`) or raw (`jax.random.PRNGKey`, uint32 (2,))."""
    dtype = key.dtype if isinstance(key, jax.Array | np.ndarray) else None
    ok = dtype is not None and (
        (jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(key) == 0)
        or (dtype == jnp.uint32 and jnp.shape(key) == (2,)))
    if not ok:
        raise TypeError(f"`{name}` must be one JAX random key (jax.random.key(seed)), got "
                        f"{type(key).__name__} {dtype if dtype is not None else ''} of shape "
                        f"{jnp.shape(key) if dtype is not None else '()'}.")


def check_dt(dt):
    if is_concrete(dt):
        value = np.asarray(dt)
        if value.shape != () or not np.isfinite(value) or value <= 0:
            raise ValueError(f"`dt` must be a finite positive scalar, got {dt}.")
    return dt


def initial_tangents(dim: int, k: int, key, dtype):
    """A random `(dim, k)` block of generic directions (orthonormalised by the caller).

    With `key=None` it is a fixed pseudo-random constant drawn by NumPy (seed 0), so that no
    random-number generator enters the compiled program; with a key, `jax.random.normal`."""
    if key is None:
        return jnp.asarray(np.random.default_rng(0).standard_normal((dim, k)), dtype)
    return jax.random.normal(key, (dim, k), dtype)


def single_chain(x0, Q0, key=None):
    state = init_state(x0, Q0, key)
    return jax.tree_util.tree_map(lambda a: a[None], state)


@eqx.filter_jit
def setup_chain(x0, k: int, key):
    """One chain's initial state with a random orthonormal tangent block (one compiled call)."""
    return single_chain(x0, initial_tangents(x0.shape[0], k, key, x0.dtype))


def check_output(fn, name: str, expected_shape, *example):
    try:
        out = jax.eval_shape(fn, *example)
    except Exception as err:  # noqa: BLE001 - re-raised naming the argument
        raise ValueError(f"`{name}` failed on the initial state: {err}") from err
    got = jax.flatten_util.ravel_pytree(
        jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), out))[0].shape
    state_dtype = jnp.result_type(*jax.tree_util.tree_leaves(example)) if example else None
    for leaf in jax.tree_util.tree_leaves(out):
        if (state_dtype is not None and jnp.issubdtype(leaf.dtype, jnp.inexact)
                and jnp.issubdtype(state_dtype, jnp.inexact) and leaf.dtype != state_dtype):
            raise TypeError(
                f"`{name}` returns {leaf.dtype} values for a {state_dtype} state: mixed precision "
                f"(e.g. a float32 state `y0`/`x0`/`history` with float64 `args`). Give the state "
                "and `args` one dtype."
            )
    if got != tuple(expected_shape):
        raise ValueError(
            f"`{name}` must return a state of the same size as the input ({expected_shape[0]} "
            f"values), got {got[0] if got else 0}."
        )


def check_args(args, name: str = "args"):
    """Reject NaN/inf in the floating-point arrays of `args` (other leaves, e.g. keys, ints,
    functions, are left alone); returns `args` (with `eqx.error_if` on those leaves when traced)."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    idx = [i for i, leaf in enumerate(leaves)
           if isinstance(leaf, float) or (isinstance(leaf, jax.Array | np.ndarray | np.generic)
                                          and jnp.issubdtype(leaf.dtype, jnp.inexact))]
    if not idx:
        return args
    checked = check_finite([leaves[i] for i in idx], name)
    for i, leaf in zip(idx, checked):
        leaves[i] = leaf
    return jax.tree_util.tree_unflatten(treedef, leaves)


def float_args_to_arrays(args):
    """Python floats in `args` become 0-d arrays, so that a new value does not recompile
    (ints and everything else are left alone: a field may use them as static sizes)."""
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a) if isinstance(a, float) else a, args)


def raise_failed(res, throw: bool, what: str = "the result with its code and `failed_step`"):
    """The failure policy of every entry point: raise the message of `res.result` unless
    `throw=False` (through `eqx.error_if` under `jit`/`vmap`)."""
    return raise_if_failed(res, res.result, throw, hint=f"(pass `throw=False` to get {what})")


def elementwise_code(select, *preds):
    """A [`jaxdyn.RESULTS`][] item per element: `select(*scalar_predicates)` (built with
    `RESULTS.where`, which takes scalars) vmapped over the broadcast predicate arrays."""
    preds = jnp.broadcast_arrays(*preds)
    shape = preds[0].shape
    flat = jax.vmap(select)(*[p.reshape(-1) for p in preds])
    return jax.tree_util.tree_map(lambda v: v.reshape(shape), flat)
