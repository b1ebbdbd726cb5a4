r"""Graphons: symmetric measurable $W: [0, 1]^2 \to [0, 1]$, evaluated vectorised.

Three abstract kinds, chosen so that the coupling of a particle system can use the cheapest exact
algorithm ([`jaxdyn.meanfield.coupling_operator`][]):

- [`AbstractGraphon`][]: any $W(x, y)$ (dense coupling, $O(N^2)$);
- [`AbstractConvolutionGraphon`][]: $W(x, y) = k((x - y) \bmod 1)$ (ring / nonlocal coupling; on a
  uniform grid the coupling matrix is circulant and applied by FFT in $O(N \log N)$);
- [`AbstractLowRankGraphon`][]: $W(x, y) = \sum_{k < r} u_k(x) v_k(y)$ (coupling in $O(N r)$).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._checks import is_concrete

_SLACK = 1e-12  # rounding slack of distance thresholds (grid distances k/N computed in float)


def _circle_distance(d):
    d = jnp.mod(d, 1.0)
    return jnp.minimum(d, 1.0 - d)


class AbstractGraphon(eqx.Module):
    r"""A graphon $W(x, y)$ on $[0, 1]^2$.

    Subclasses implement `__call__(x, y)`, broadcasting over arrays of positions.
    """

    @abc.abstractmethod
    def __call__(self, x: ArrayLike, y: ArrayLike) -> Array:
        """$W(x, y)$, broadcast over `x` and `y`."""


class AbstractConvolutionGraphon(AbstractGraphon):
    r"""A graphon of the form $W(x, y) = k((x - y) \bmod 1)$ (translation invariant on the circle)."""

    @abc.abstractmethod
    def kernel(self, d: ArrayLike) -> Array:
        r"""$k(d)$ for $d \in [0, 1)$."""

    def __call__(self, x, y):
        return self.kernel(jnp.mod(jnp.asarray(x) - jnp.asarray(y), 1.0))


class AbstractLowRankGraphon(AbstractGraphon):
    r"""A graphon of finite rank: $W(x, y) = \sum_{k < r} u_k(x) v_k(y)$."""

    @abc.abstractmethod
    def factors(self, x: ArrayLike) -> tuple[Array, Array]:
        r"""`(U, V)` of shapes `(n, r)` with $W(x_i, x_j) = (U V^\top)_{ij}$ at the positions `x`."""


def _check_values(values, name: str, token=None):
    """Values in [0, 1] (probabilities): `ValueError` naming `name` when concrete; when traced (under
    `grad`/`vmap`/`jit`) the check becomes an `eqx.error_if` on `token` (default: `values`)."""
    token = values if token is None else token
    if not is_concrete(values):
        v = jnp.asarray(values)
        bad = jnp.any(~jnp.isfinite(v) | (v < 0) | (v > 1))
        return eqx.error_if(token, bad, f"`{name}` must take finite values in [0, 1] (a probability).")
    v = np.asarray(values)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"`{name}` has non-finite values.")
    if np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"`{name}` must take values in [0, 1] (a probability), got values in "
                         f"[{v.min():.4g}, {v.max():.4g}].")
    return token


def _probe(w: AbstractGraphon, name: str, token, *, symmetric: bool = True):
    """Spot-check a graphon on a 17 x 17 grid of cell centres: values in [0, 1] and (optionally) symmetry.
    Returns `token` (with an `eqx.error_if` attached when the values are traced)."""
    x = (jnp.arange(17) + 0.5) / 17
    vals = w(x[:, None], x[None, :])
    token = _check_values(vals, name, token)
    if symmetric and is_concrete(vals) and not np.allclose(np.asarray(vals), np.asarray(vals).T, atol=1e-12):
        raise ValueError(f"`{name}` must be symmetric, W(x, y) = W(y, x); use a DigraphMeasure for "
                         "directed coupling.")
    return token


def _static_radius(radius, cls: str) -> float:
    """The radius of a ring-type graphon: a concrete float in (0, 1/2] (it sets the graph's edges)."""
    if isinstance(radius, jax.core.Tracer):
        raise TypeError(f"`radius` of {cls} must be a concrete float, not a traced value: the graphon is an "
                        "indicator of the circle distance, so its derivative with respect to the radius is "
                        "zero almost everywhere (and undefined at the node distances). Differentiate with "
                        "respect to a smooth profile instead (e.g. graphons.fourier coefficients).")
    r = float(radius)
    if not 0 < r <= 0.5:
        raise ValueError(f"`radius` must lie in (0, 1/2], got {radius}.")
    return r


class Graphon(AbstractGraphon):
    r"""A graphon from any vectorised function `fn(x, y)` (symmetric, values in $[0, 1]$).

    The coupling of a particle system on it is dense ($O(N^2)$ per evaluation).

    **Example:** `Graphon(lambda x, y: 0.5 * (1 + jnp.cos(2 * jnp.pi * (x - y))))`.
    """

    fn: object

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"`fn` must be a callable W(x, y), got {type(fn).__name__}.")
        self.fn = fn
        _probe(self, "fn", None)

    def __call__(self, x, y):
        return jnp.asarray(self.fn(jnp.asarray(x), jnp.asarray(y)), dtype=jnp.result_type(float))


class ConstantGraphon(AbstractConvolutionGraphon, AbstractLowRankGraphon):
    r"""$W \equiv p$: the limit of Erdos-Renyi graphs $G(N, p)$ (rank one)."""

    p: Array

    def __init__(self, p: float = 1.0):
        self.p = _check_values(jnp.asarray(p, dtype=float), "p")

    def kernel(self, d):
        return jnp.full(jnp.shape(d), self.p)

    def factors(self, x):
        x = jnp.asarray(x)
        return jnp.ones((x.shape[0], 1)), jnp.full((x.shape[0], 1), self.p)


class RingGraphon(AbstractConvolutionGraphon):
    r"""Nonlocal ring coupling: $W(x, y) = 1$ if the circle distance $|x - y|_{S^1} \le r$, else 0.

    On the grid $x_i = (i + 1/2)/N$ with $r = P/N$ every node couples to its $P$ neighbours on each
    side (and itself) (a rounding slack of 1e-12 keeps the boundary consistent).

    The radius is static (a Python float): $W$ is a step function of it, with no derivative (zero
    almost everywhere), so a traced radius (under `jax.grad`) raises a `TypeError` saying so.
    """

    radius: float = eqx.field(static=True)

    def __init__(self, radius: float):
        self.radius = _static_radius(radius, "graphons.ring")

    def kernel(self, d):
        return jnp.where(_circle_distance(d) <= self.radius + _SLACK, 1.0, 0.0)


class SmallWorldGraphon(AbstractConvolutionGraphon):
    r"""Small-world graphon: $W = p$ within circle distance $r$, $q$ beyond (Medvedev's $W$-small-world
    graphs have $p = 1 - q$).

    Differentiable with respect to `p` and `q`; the radius is static (no derivative, see
    [`RingGraphon`][])."""

    radius: float = eqx.field(static=True)
    p: Array
    q: Array

    def __init__(self, radius: float, p: float = 1.0, q: float = 0.1):
        self.radius = _static_radius(radius, "graphons.small_world")
        self.p = _check_values(jnp.asarray(p, float), "p")
        self.q = _check_values(jnp.asarray(q, float), "q")

    def kernel(self, d):
        return jnp.where(_circle_distance(d) <= self.radius + _SLACK, self.p, self.q)


class FourierGraphon(AbstractConvolutionGraphon, AbstractLowRankGraphon):
    r"""$W(x, y) = c_0 + \sum_{k=1}^{m} c_k \cos(2\pi k (x - y))$: convolution **and** rank $2m + 1$.

    Example: `FourierGraphon([0.5, 0.5])` is $(1 + \cos 2\pi(x - y))/2$ (rank 3).
    """

    coeffs: Array

    def __init__(self, coeffs):
        c = jnp.atleast_1d(jnp.asarray(coeffs, dtype=float))
        if c.ndim != 1 or c.shape[0] < 1:
            raise ValueError(f"`coeffs` must be a non-empty vector, got shape {c.shape}.")
        self.coeffs = c
        self.coeffs = _probe(self, "coeffs", c)

    def kernel(self, d):
        d = jnp.asarray(d)
        k = jnp.arange(1, self.coeffs.shape[0])
        return self.coeffs[0] + jnp.sum(self.coeffs[1:] * jnp.cos(2 * jnp.pi * k * d[..., None]), -1)

    def factors(self, x):
        x = jnp.asarray(x)
        k = jnp.arange(1, self.coeffs.shape[0])
        c, s = jnp.cos(2 * jnp.pi * k * x[:, None]), jnp.sin(2 * jnp.pi * k * x[:, None])
        u = jnp.concatenate([jnp.ones((x.shape[0], 1)), c, s], axis=1)
        v = jnp.concatenate([jnp.full((x.shape[0], 1), self.coeffs[0]), self.coeffs[1:] * c,
                             self.coeffs[1:] * s], axis=1)
        return u, v


class PowerLawGraphon(AbstractGraphon):
    r"""Truncated power law $W(x, y) = \min(1, \beta (x y)^{-\alpha})$, $0 < \alpha < 1$, $0 < \beta \le 1$.

    Hubs sit near $x = 0$; the expected degree of $x$ grows like $x^{-\alpha}$ until the cap.
    """

    alpha: Array
    beta: Array

    def __init__(self, alpha: float = 0.5, beta: float = 0.1):
        alpha, beta = jnp.asarray(alpha, float), jnp.asarray(beta, float)
        if is_concrete(alpha) and not 0 < float(alpha) < 1:
            raise ValueError(f"`alpha` must lie in (0, 1), got {alpha}.")
        if is_concrete(beta) and not 0 < float(beta) <= 1:
            raise ValueError(f"`beta` must lie in (0, 1], got {beta}.")
        self.alpha = eqx.error_if(alpha, ~((alpha > 0) & (alpha < 1)), "`alpha` must lie in (0, 1).")
        self.beta = eqx.error_if(beta, ~((beta > 0) & (beta <= 1)), "`beta` must lie in (0, 1].")

    def __call__(self, x, y):
        xy = jnp.maximum(jnp.asarray(x) * jnp.asarray(y), 1e-300)
        return jnp.minimum(1.0, self.beta * xy ** (-self.alpha))


class StepGraphon(AbstractLowRankGraphon):
    r"""A step graphon: $W(x, y) = B_{ab}$ for $x$ in block $a$, $y$ in block $b$.

    **Arguments:**

    - `values`: the symmetric $k \times k$ matrix $B$ with entries in $[0, 1]$.
    - `sizes`: block fractions summing to 1 (default: $k$ equal blocks). A stochastic block model's
      graphon; with $k = N$ equal blocks and $B$ an adjacency matrix, the step graphon of a graph.

    Differentiable with respect to `values` (the block probabilities). The block boundaries
    (`sizes`) decide which block a node falls in: no derivative, so they must be concrete (a
    traced `sizes` raises a `TypeError`).
    """

    values: Array
    edges: Array

    def __init__(self, values, sizes=None):
        self.values, self.edges = _blocks(values, sizes, "values", "sizes")

    def block(self, x):
        """Index of the block holding each position."""
        return jnp.clip(jnp.searchsorted(self.edges, jnp.asarray(x), side="right") - 1, 0,
                        self.values.shape[0] - 1)

    def __call__(self, x, y):
        return self.values[self.block(x), self.block(y)]

    def factors(self, x):
        onehot = jnp.eye(self.values.shape[0])[self.block(x)]
        return onehot, onehot @ self.values


def _blocks(values, sizes, values_name: str, sizes_name: str):
    """Check a block matrix and block fractions, naming the caller's arguments; `(B, left edges)`."""
    b = jnp.asarray(values, dtype=float)
    if b.ndim != 2 or b.shape[0] != b.shape[1]:
        raise ValueError(f"`{values_name}` must be a square matrix, got shape {b.shape}.")
    b = _check_values(b, values_name)
    if is_concrete(b) and not np.allclose(np.asarray(b), np.asarray(b).T):
        raise ValueError(f"`{values_name}` must be symmetric (use a DigraphMeasure for directed graphs).")
    k = b.shape[0]
    if sizes is not None and not all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(sizes)):
        raise TypeError(f"`{sizes_name}` must be concrete: block boundaries decide which block a node is "
                        "in, so they have no derivative.")
    s = np.full(k, 1.0 / k) if sizes is None else np.asarray(sizes, dtype=float)
    if s.shape != (k,) or not np.all(np.isfinite(s)) or np.any(s <= 0) or not np.isclose(s.sum(), 1.0):
        raise ValueError(f"`{sizes_name}` must be {k} positive fractions summing to 1 (one per row of "
                         f"`{values_name}`), got {sizes}.")
    return b, jnp.asarray(np.concatenate([[0.0], np.cumsum(s)[:-1]]))


def grid(n: int) -> Array:
    r"""The node positions $x_i = (i + 1/2)/n$, $i = 0, \dots, n - 1$ (cell centres)."""
    return (jnp.arange(n) + 0.5) / n
