"""Lyapunov spectra of maps x_{n+1} = F(x_n, args) and input-driven maps (RNNs)."""

import jax
import jax.numpy as jnp

from .._checkpoint import Checkpoint
from .._results import check_throw
from ._common import (
    check_args,
    check_k,
    check_output,
    check_steps,
    flatten_state,
    float_args_to_arrays,
    raise_failed,
    setup_chain,
)
from ._engine import benettin
from ._result import LyapunovResult
from ._systems import DrivenMapSystem, MapSystem


def map_spectrum(map_fn, x0, *, n_steps: int, k: int | None = None, args=None,
                 transient_steps: int = 0, inputs=None, renorm_every: int = 1, key=None,
                 progress: bool = True, checkpoint: Checkpoint | None = None,
                 history_every: int | None = None, throw: bool = True) -> LyapunovResult:
    r"""The $k$ largest Lyapunov exponents (per step) of $x_{n+1} = F(x_n, \text{args})$.

    With `inputs` (a PyTree whose leaves have a leading time axis of length at least
    `transient_steps + n_steps`), the map is input-driven, $x_{n+1} = F(x_n, u_n, \text{args})$:
    the exponents of an RNN along an input sequence. Tangents by `jax.jvp` vmapped over the $k$
    vectors, QR every `renorm_every` steps (sign-fixed), as in [`flow_spectrum`][].

    The dtype of `x0` sets the precision (float32 agrees with float64 to about $10^{-2}$ on
    chaotic maps; see [`flow_spectrum`][]).

    `key`, `progress`, `checkpoint`, `history_every` and `throw` (raise on a failed run, or
    with `False` return its code: `nonfinite_state`, `nonfinite_tangent`,
    `degenerate_tangent`) are as in [`flow_spectrum`][].

    **Example:** the Henon map, `map_spectrum(lambda x, a: jnp.array([1 - 1.4 * x[0]**2 + x[1],
    0.3 * x[0]]), jnp.zeros(2), n_steps=100_000)` gives about (0.419, -1.623).
    """
    if not callable(map_fn):
        raise TypeError(f"`map_fn` must be callable, got {type(map_fn).__name__}.")
    check_throw(throw)
    n_steps, renorm_every, transient_steps = check_steps(n_steps, renorm_every, transient_steps)
    args = check_args(float_args_to_arrays(args))
    x_flat, unravel = flatten_state(x0, "x0")
    dim = x_flat.shape[0]
    k = check_k(k, dim)
    if inputs is not None:
        lengths = {jnp.shape(a)[0] if jnp.ndim(a) else 0 for a in jax.tree_util.tree_leaves(inputs)}
        need = transient_steps + n_steps
        if not lengths or min(lengths) < need:
            raise ValueError(
                f"`inputs` must have a leading time axis of length >= transient_steps + n_steps "
                f"= {need}, got {sorted(lengths)}."
            )
    if inputs is None:
        system = MapSystem(map_fn=map_fn, args=args, unravel=unravel)
    else:
        system = DrivenMapSystem(map_fn=map_fn, args=args, inputs=inputs, unravel=unravel)
    check_output(lambda x: system.advance(x, 0, None), "map_fn", (dim,), x_flat)
    state0 = setup_chain(x_flat, k, key)
    config = {"kind": "map", "dim": dim, "k": k, "renorm_every": renorm_every,
              "transient_steps": transient_steps, "inputs": inputs is not None}
    res = benettin(system, state0, transient_steps=transient_steps,
                   n_blocks=n_steps // renorm_every, renorm_every=renorm_every,
                   time_per_step=jnp.asarray(1.0, x_flat.dtype), progress=progress,
                   checkpoint=checkpoint, config=config, desc="map_spectrum",
                   history_every=history_every)
    return raise_failed(res, throw)
