"""The shared numeric kernels of jaxdyn: each is written once here, at the lowest layer that needs
it, and every subpackage calls it (see CONTRIBUTING.md, "one kernel, one place").

- Explicit Runge-Kutta steps as a map ([`rk_step`][], [`rk_map`][]) with the tableaus of the
  fixed-step methods jaxdyn uses (`EULER`, `HEUN`, `RK4`); `RK4.to_diffrax()` gives the same
  tableau to a diffrax solver.
- Tangent pushes: [`jvp_columns`][] (a map and its Jacobian applied to the columns of `Q`, by
  `jax.jvp` vmapped over the columns) and Hessian-vector products [`hvp`][] (forward over reverse).
- Flattening a PyTree of parameters to one vector and back: [`flatten`][] returns the vector and a
  hashable [`Flattener`][] (two equally-shaped trees compile to the same program).

Why our own: diffrax's solvers step a `diffeqsolve`, not a bare map inside our own `lax.scan`
(the QR engine, the FTLE field, the DDE window map and the fixed-step DDE solver all need one step
as a pure function, with a stage hook for delayed values); `jax.flatten_util.ravel_pytree` keeps a
closure (not hashable) and ravels integer leaves too.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import Array, PyTree

# -- explicit Runge-Kutta -------------------------------------------------------------------------


class Tableau(NamedTuple):
    r"""An explicit Runge-Kutta tableau: stage `nodes` $c_i$, the rows of the strictly lower stage
    matrix $a_{ij}$ (row `i` has `i` entries), the `weights` $b_i$ and the classical `order`.

    A tableau may be written over common divisors, as textbooks write RK4: stage `i` is
    $y + (\Delta t / d_i) \sum_j a_{ij} k_j$ with `row_divisors` $d_i$, and the step
    $y + (\Delta t / d) \sum_i b_i k_i$ with `weight_divisor` $d$ (so that `RK4` rounds exactly as
    $y + \Delta t/6\,(k_1 + 2k_2 + 2k_3 + k_4)$). The coefficients proper are `rows[i][j] / d_i`
    and `weights[i] / d` ([`to_diffrax`][] passes those on)."""

    nodes: tuple[float, ...]
    rows: tuple[tuple[float, ...], ...]
    weights: tuple[float, ...]
    order: int
    row_divisors: tuple[float, ...] | None = None
    weight_divisor: float = 1.0

    def to_diffrax(self):
        """The same tableau as a `diffrax.ButcherTableau` (no embedded error estimate)."""
        import diffrax

        divisors = self.row_divisors or (1.0,) * len(self.rows)
        return diffrax.ButcherTableau(
            c=np.asarray(self.nodes[1:]),
            b_sol=np.asarray(self.weights) / self.weight_divisor,
            b_error=np.zeros(len(self.weights)),
            a_lower=tuple(np.asarray(row) / d for row, d in zip(self.rows[1:], divisors[1:], strict=True)),
        )


EULER = Tableau((0.0,), ((),), (1.0,), 1)
HEUN = Tableau((0.0, 1.0), ((), (1.0,)), (0.5, 0.5), 2)
RK4 = Tableau((0.0, 0.5, 0.5, 1.0), ((), (1.0,), (0.0, 1.0), (0.0, 0.0, 1.0)), (1.0, 2.0, 2.0, 1.0), 4,
              row_divisors=(1.0, 2.0, 2.0, 1.0), weight_divisor=6.0)
TABLEAUS = {"euler": EULER, "heun": HEUN, "rk4": RK4}


def _combine(y: PyTree, dt: Any, coefficients, ks, divisor: float = 1.0) -> PyTree:
    """`y + (dt / divisor) * sum(a_j k_j)` over the nonzero coefficients, leaf by leaf (a unit
    coefficient multiplies nothing, a unit divisor divides nothing: the textbook rounding)."""
    terms = [(a, k) for a, k in zip(coefficients, ks, strict=False) if a != 0.0]
    if not terms:
        return y

    def leaf(y_leaf, *k_leaves):
        parts = [k if a == 1.0 else a * k for (a, _), k in zip(terms, k_leaves, strict=True)]
        step = parts[0]
        for part in parts[1:]:
            step = step + part
        h = jnp.asarray(dt, jnp.result_type(y_leaf))
        return y_leaf + (h if divisor == 1.0 else h / divisor) * step

    return jax.tree_util.tree_map(leaf, y, *[k for _, k in terms])


def rk_step(f: Callable, t: Any, y: PyTree, dt: Any, tableau: Tableau = RK4, *,
            first: PyTree | None = None, with_node: bool = False) -> PyTree:
    r"""One explicit Runge-Kutta step $y_{n+1} = y_n + \Delta t \sum_i b_i k_i$ of $y' = f(t, y)$.

    **Arguments:**

    - `f`: the right-hand side `f(t, y)` (or `f(t, y, c)` with `with_node=True`, where `c` is the
      stage node $c_i$ as a Python float: a delay solver uses it to pick the delayed value of the
      stage). `y` may be any PyTree of arrays.
    - `t`, `y`, `dt`: the time, the state and the step.
    - `tableau`: [`RK4`][] (default), [`HEUN`][] or [`EULER`][], or any explicit [`Tableau`][].
    - `first`: the first slope $k_1 = f(t, y)$ when the caller already has it (FSAL-style reuse).

    **Returns:** the state after one step (same structure as `y`).
    """
    call = (lambda s, z, c: f(s, z, c)) if with_node else (lambda s, z, c: f(s, z))
    divisors = tableau.row_divisors or (1.0,) * len(tableau.rows)
    ks = [call(t, y, tableau.nodes[0]) if first is None else first]
    for c, row, d in zip(tableau.nodes[1:], tableau.rows[1:], divisors[1:], strict=True):
        ks.append(call(t + c * dt, _combine(y, dt, row, ks, d), c))
    return _combine(y, dt, tableau.weights, ks, tableau.weight_divisor)


def rk_map(f: Callable, t0: Any, y0: PyTree, dt: Any, n_steps: int, tableau: Tableau = RK4, *,
           save: bool = False) -> PyTree:
    """`n_steps` fixed steps of [`rk_step`][] from `(t0, y0)` under one `lax.scan`.

    Returns the final state, or with `save=True` the states after every step (a leading axis of
    length `n_steps`, the initial state not included)."""
    dt = jnp.asarray(dt)

    def body(y, n):
        y_next = rk_step(f, t0 + n * dt, y, dt, tableau)
        return y_next, (y_next if save else None)

    y1, ys = jax.lax.scan(body, y0, jnp.arange(n_steps))
    return ys if save else y1


# -- tangents and curvature -----------------------------------------------------------------------


def jvp_columns(f: Callable, x: Array, Q: Array) -> tuple[Array, Array]:
    """`(f(x), J_f(x) Q)`: the map and its Jacobian applied to the columns of `Q` (matrix-free,
    `jax.jvp` vmapped over the columns; `f(x)` is computed once)."""
    push = lambda v: jax.jvp(f, (x,), (v,))  # noqa: E731
    return jax.vmap(push, in_axes=1, out_axes=(None, 1))(Q)


def hvp(fun: Callable, x: Array, v: Array, *args: Any) -> Array:
    r"""The Hessian-vector product $\nabla^2 f(x)\, v$ of a scalar `fun(x, *args)`, forward over
    reverse (`jax.jvp` of `jax.grad`: about the cost of 2-4 gradients, exact to rounding)."""
    return jax.jvp(lambda z: jax.grad(fun)(z, *args), (x,), (v,))[1]


# -- flattening -----------------------------------------------------------------------------------


class Flattener(eqx.Module):
    """Ravel/unravel between the floating-point array leaves of a PyTree and one flat vector.

    Hashable (static data only: treedef, shapes, dtypes, the non-array rest of the tree), so a new
    instance built from equally-shaped parameters does not recompile. Everything that is not a
    floating-point array (an Equinox model's activation functions, integer buffers) is kept as it
    was and put back by `unravel`. Calling the flattener is `unravel`.
    """

    treedef: Any = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)
    dtypes: tuple = eqx.field(static=True)
    static: Any = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    @property
    def size(self) -> int:
        """The length of the flat vector."""
        return int(sum(math.prod(s) for s in self.shapes))

    def ravel(self, tree: PyTree) -> Array:
        """The floating-point leaves of `tree` (same structure as flattened) as one vector."""
        leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
        if len(leaves) != len(self.shapes):
            raise ValueError(f"the tree has {len(leaves)} array leaves, expected {len(self.shapes)}.")
        if not leaves:
            return jnp.zeros((0,), self.dtype)
        return jnp.concatenate([jnp.ravel(x).astype(self.dtype) for x in leaves])

    def unravel(self, flat: Array) -> PyTree:
        """The PyTree with its floating-point leaves taken from `flat` (shape `(size,)`)."""
        flat = jnp.asarray(flat)
        if flat.shape != (self.size,):
            raise ValueError(f"`v` must have shape ({self.size},), got {flat.shape}.")
        out, start = [], 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            n = math.prod(shape)
            out.append(flat[start:start + n].reshape(shape).astype(dtype))
            start += n
        return eqx.combine(jax.tree_util.tree_unflatten(self.treedef, out), self.static)

    def __call__(self, flat: Array) -> PyTree:
        return self.unravel(flat)


def flatten(tree: PyTree, *, name: str = "params") -> tuple[Array, Flattener]:
    """Ravel the floating-point array leaves of `tree`: returns `(flat, flattener)`, with
    `flattener.unravel(flat)` giving `tree` back. A `ValueError` naming `name` if it has none."""
    arrays, static = eqx.partition(tree, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    if not leaves:
        raise ValueError(f"`{name}` has no floating-point array leaves.")
    dtype = jnp.result_type(*leaves)
    flattener = Flattener(treedef, tuple(tuple(jnp.shape(x)) for x in leaves),
                          tuple(jnp.result_type(x) for x in leaves), static, dtype)
    return flattener.ravel(arrays), flattener
