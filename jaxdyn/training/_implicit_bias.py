r"""Implicit bias of the step size: where gradient descent can settle on a set of minima.

The test case $L(w_1, w_2) = (w_1 w_2 - 1)^2/2$ has the hyperbola $w_1 w_2 = 1$ of minima. At
$(a, 1/a)$ the Hessian is $v v^\top$ with $v = (1/a, a)$, its only nonzero eigenvalue
$a^2 + 1/a^2 \ge 2$; GD with step $\eta$ is linearly stable there only if
$a^2 + 1/a^2 \le 2/\eta$ (see [`gd_stability`][jaxdyn.training.gd_stability]), and for
$\eta > 1$ nowhere. [`gd_endpoints`][] runs GD from many initialisations at once (`vmap`) and
classifies every run as converged, diverged (overflow: counted with `throw=False`) or neither.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_int
from .._deprecate import renamed_kwargs
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, PyTree
from ..distributed._mesh import check_placement, gather as gather_tree, map_batches
from ._gd import all_finite, check_data, check_finite_now, check_lr, split_params


def hyperbola_loss(w: Array) -> Array:
    r"""$L(w_1, w_2) = (w_1 w_2 - 1)^2 / 2$ for `w` of shape `(2,)`."""
    return 0.5 * (w[0] * w[1] - 1.0) ** 2


class GDEndpointsResult(AbstractResult):
    """Where a batch of gradient-descent runs ended (from [`gd_endpoints`][]).

    - `params`: the final parameters (leading batch axis); `loss`: the final losses.
    - `converged`: final loss `< tol` (and finite); `diverged`: the run overflowed (a non-finite
      loss or parameter); runs that are neither are still moving at the end of the budget.
    - `first_converged`: the first step with loss `< tol` (-1: never).
    - `lr`, `tol`, `n_steps`: the settings.
    - `result`: per run, a [`jaxdyn._results.RESULTS`][] item: `nonfinite_loss`,
      `nonfinite_gradient` or `nonfinite_parameters` for a diverged run (the first quantity that
      overflowed), else `successful`; `failed_step`: per run, the step at which it first
      overflowed (-1: never). A diverged run keeps iterating (its `params` and `loss` hold the
      NaN/inf it reached), so these two say where the divergence began.
    """

    params: PyTree
    loss: Array
    converged: Array
    diverged: Array
    first_converged: Array
    lr: Array
    tol: Array
    result: RESULTS
    failed_step: Array
    n_steps: int = eqx.field(static=True)

    @property
    def n_converged(self) -> int:
        """How many runs converged."""
        return int(jnp.sum(self.converged))

    @property
    def n_diverged(self) -> int:
        """How many runs overflowed."""
        return int(jnp.sum(self.diverged))

    def summary(self) -> str:
        """How many runs converged, diverged or neither, and the result codes."""
        n = int(np.asarray(self.converged).size)
        neither = n - self.n_converged - self.n_diverged
        text = (f"GD endpoints at step size {float(self.lr):.6g}, {self.n_steps} steps: {n} runs, "
                f"{self.n_converged} converged (loss < {float(self.tol):.3g}), {self.n_diverged} "
                f"diverged, {neither} neither")
        if bool(np.all(np.asarray(self.successful))):
            return text + "; successful."
        return text + "; " + message(self.result)

    def plot(self, ax=None, **kwargs):
        """Runs on 2-vectors: where they settled, against the hyperbola of minima of
        [`hyperbola_loss`][] with its stable arcs; other runs: the final losses. Returns `ax`."""
        from ..plot._training import draw_endpoints

        return draw_endpoints(self, ax=ax, **kwargs)


def _endpoint(loss, data, lr, tol, n_steps, p0):
    def step(carry, i):
        p, first, code, fstep = carry
        value, g = jax.value_and_grad(loss)(p, *data)
        first = jnp.where((first < 0) & (value < tol), i, first)
        p = jax.tree_util.tree_map(lambda a, b: a - lr.astype(a.dtype) * b, p, g)
        new = RESULTS.where(~jnp.isfinite(value), RESULTS.nonfinite_loss,
                            RESULTS.where(~all_finite(g), RESULTS.nonfinite_gradient,
                                          RESULTS.where(all_finite(p), RESULTS.successful,
                                                        RESULTS.nonfinite_parameters)))
        now = (code == RESULTS.successful) & (new != RESULTS.successful)
        code = RESULTS.where(now, new, code)
        fstep = jnp.where(now, i, fstep)
        return (p, first, code, fstep), None

    init = (p0, jnp.asarray(-1, jnp.int32), RESULTS.successful, jnp.asarray(-1, jnp.int32))
    (p, first, code, fstep), _ = lax.scan(step, init, jnp.arange(n_steps, dtype=jnp.int32))
    value = loss(p, *data)
    finite = jnp.isfinite(value) & all_finite(p)
    code = RESULTS.where((code == RESULTS.successful) & ~finite, RESULTS.nonfinite_loss, code)
    fstep = jnp.where((fstep < 0) & ~finite, n_steps, fstep)
    first = jnp.where((first < 0) & (value < tol), n_steps, first)
    return p, value, finite & (value < tol), ~finite, first, code, fstep


@eqx.filter_jit
def _endpoints(loss, inits, data, lr, tol, n_steps):
    return jax.vmap(lambda p0: _endpoint(loss, data, lr, tol, n_steps, p0))(inits)


class _EndpointRun(eqx.Module):
    """One GD run from one initialisation (what a sharded `gd_endpoints` maps)."""

    loss: object
    data: tuple
    lr: Array
    tol: Array
    n_steps: int = eqx.field(static=True)

    def __call__(self, p0):
        return _endpoint(self.loss, self.data, self.lr, self.tol, self.n_steps, p0)


@renamed_kwargs(steps="n_steps")
def gd_endpoints(loss_fn: Callable, inits: PyTree, lr, *data, n_steps: int = 2000,
                 tol: float = 1e-20, mesh=None, devices=None, gather: bool = True,
                 throw: bool = True) -> GDEndpointsResult:
    r"""Run gradient descent with step `lr` from a batch of initialisations (`vmap`).

    **Arguments:**

    - `loss_fn`: `loss_fn(params, *data) -> scalar`.
    - `inits`: initial parameters with a leading batch axis on every array leaf.
    - `lr`: the step size $\eta > 0$ (an array: no recompilation between step sizes).
    - `*data`: dataset arrays (shared by all runs).
    - `n_steps`: the fixed step budget (`steps` is its deprecated spelling); `tol`: a run has
      converged when its final loss is below `tol` (default $10^{-20}$).
    - `throw`: `True` (default): a run whose loss or parameters become non-finite raises
      `eqx.EquinoxRuntimeError` with the code's message; `False`: overflow is a value: the run
      is counted in `diverged`, with its code in `result` and the step in `failed_step` (what a
      study of where GD settles wants: some step sizes make runs diverge).
    - `mesh`, `devices`, `gather`: split the initialisations over the devices of a
      `jax.sharding.Mesh` (e.g. [`jaxdyn.distributed.global_mesh`][]: every process of a
      multi-process job, the default there) or of one process's `devices`, with
      [`jaxdyn.distributed.map_batches`][] (the same numbers as unsharded); `gather=True`
      (default) returns the whole batch on every process, `False` global arrays whose shards stay
      where they were computed.

    **Raises:** `ValueError`/`TypeError` naming the argument for bad input (non-finite `inits`
    or data included), before any compilation.

    **Derivatives:** the final `params` and `loss` are differentiable with respect to `inits`
    and the data (forward and reverse mode through the `lax.scan`); `converged`, `diverged`,
    `first_converged`, `result` and `failed_step` are discrete and have no derivative (booleans
    and integers: `jax.grad` of them raises JAX's error for integer outputs).

    **Returns:** a [`GDEndpointsResult`][].

    **Example:**

    ```python
    w0 = jax.random.uniform(key, (256, 2), minval=-2.0, maxval=2.0)
    ends = gd_endpoints(hyperbola_loss, w0, 0.5, n_steps=3000, throw=False)
    a = ends.params[ends.converged, 0]        # a**2 + 1/a**2 <= 2/0.5
    ```
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    check_throw(throw)
    lr = check_lr(lr)
    n_steps = check_int(n_steps, "n_steps")
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.number) or not (tol > 0) \
            or not np.isfinite(tol):
        raise ValueError(f"`tol` must be a finite positive number, got {tol!r}.")
    check_data(data)
    check_finite_now(data, "data")
    leaves = jax.tree_util.tree_leaves(eqx.filter(inits, eqx.is_inexact_array))
    if not leaves:
        raise ValueError("`inits` must contain floating-point arrays with a leading batch axis.")
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError("`inits` must have one leading batch axis shared by all its array leaves.")
    check_finite_now(inits, "inits")
    one = jax.tree_util.tree_map(lambda a: a[0] if eqx.is_inexact_array(a) else a, inits)
    out = eqx.filter_eval_shape(loss_fn, one, *data)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = out.shape if isinstance(out, jax.ShapeDtypeStruct) else out
        raise ValueError(f"`loss_fn(params, *data)` must return a scalar, got {shape}.")
    sharded = check_placement(mesh, devices, gather, inputs=(inits, lr, data))
    arrays, loss, static = split_params(loss_fn, inits)
    if sharded:
        p, value, conv, div, first, code, fstep = map_batches(
            _EndpointRun(loss, tuple(data), lr, jnp.asarray(tol), n_steps), arrays, mesh=mesh,
            devices=devices, shard=True, gather_output=gather)
    else:
        p, value, conv, div, first, code, fstep = _endpoints(loss, arrays, data, lr, jnp.asarray(tol),
                                                             n_steps)
    out = GDEndpointsResult(params=eqx.combine(p, static), loss=value, converged=conv, diverged=div,
                            first_converged=first, lr=lr, tol=jnp.asarray(tol), result=code,
                            failed_step=fstep, n_steps=n_steps)
    return raise_if_failed(out, code if gather else gather_tree(code), throw,
                           hint="(`gd_endpoints`: pass `throw=False` to count diverged runs "
                           "instead, with `result` and `failed_step` per run.)")
