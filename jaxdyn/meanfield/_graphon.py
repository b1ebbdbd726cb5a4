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
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

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


def _check_values(values, name: str) -> None:
    v = np.asarray(values)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"`{name}` has non-finite values.")
    if np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"`{name}` must take values in [0, 1] (a probability), got values in "
                         f"[{v.min():.4g}, {v.max():.4g}].")


def _probe(w: AbstractGraphon, name: str, *, symmetric: bool = True) -> None:
    """Spot-check a graphon on a 17 x 17 grid of cell centres: values in [0, 1] and (optionally) symmetry."""
    x = (jnp.arange(17) + 0.5) / 17
    vals = np.asarray(w(x[:, None], x[None, :]))
    _check_values(vals, name)
    if symmetric and not np.allclose(vals, vals.T, atol=1e-12):
        raise ValueError(f"`{name}` must be symmetric, W(x, y) = W(y, x); use a DigraphMeasure for "
                         "directed coupling.")


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
        _probe(self, "fn")

    def __call__(self, x, y):
        return jnp.asarray(self.fn(jnp.asarray(x), jnp.asarray(y)), dtype=jnp.result_type(float))


class ConstantGraphon(AbstractConvolutionGraphon, AbstractLowRankGraphon):
    r"""$W \equiv p$: the limit of Erdos-Renyi graphs $G(N, p)$ (rank one)."""

    p: Array

    def __init__(self, p: float = 1.0):
        _check_values(p, "p")
        self.p = jnp.asarray(p, dtype=float)

    def kernel(self, d):
        return jnp.full(jnp.shape(d), self.p)

    def factors(self, x):
        x = jnp.asarray(x)
        return jnp.ones((x.shape[0], 1)), jnp.full((x.shape[0], 1), self.p)


class RingGraphon(AbstractConvolutionGraphon):
    r"""Nonlocal ring coupling: $W(x, y) = 1$ if the circle distance $|x - y|_{S^1} \le r$, else 0.

    On the grid $x_i = (i + 1/2)/N$ with $r = P/N$ every node couples to its $P$ neighbours on each
    side (and itself) (a rounding slack of 1e-12 keeps the boundary consistent).
    """

    radius: float = eqx.field(static=True)

    def __init__(self, radius: float):
        if not 0 < float(radius) <= 0.5:
            raise ValueError(f"`radius` must lie in (0, 1/2], got {radius}.")
        self.radius = float(radius)

    def kernel(self, d):
        return jnp.where(_circle_distance(d) <= self.radius + _SLACK, 1.0, 0.0)


class SmallWorldGraphon(AbstractConvolutionGraphon):
    r"""Small-world graphon: $W = p$ within circle distance $r$, $q$ beyond (Medvedev's $W$-small-world
    graphs have $p = 1 - q$)."""

    radius: float = eqx.field(static=True)
    p: Array
    q: Array

    def __init__(self, radius: float, p: float = 1.0, q: float = 0.1):
        if not 0 < float(radius) <= 0.5:
            raise ValueError(f"`radius` must lie in (0, 1/2], got {radius}.")
        _check_values(p, "p")
        _check_values(q, "q")
        self.radius, self.p, self.q = float(radius), jnp.asarray(p, float), jnp.asarray(q, float)

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
        _probe(self, "coeffs")

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
        if not 0 < float(alpha) < 1:
            raise ValueError(f"`alpha` must lie in (0, 1), got {alpha}.")
        if not 0 < float(beta) <= 1:
            raise ValueError(f"`beta` must lie in (0, 1], got {beta}.")
        self.alpha, self.beta = jnp.asarray(alpha, float), jnp.asarray(beta, float)

    def __call__(self, x, y):
        xy = jnp.maximum(jnp.asarray(x) * jnp.asarray(y), 1e-300)
        return jnp.minimum(1.0, self.beta * xy ** (-self.alpha))


class StepGraphon(AbstractLowRankGraphon):
    r"""A step graphon: $W(x, y) = B_{ab}$ for $x$ in block $a$, $y$ in block $b$.

    **Arguments:**

    - `values`: the symmetric $k \times k$ matrix $B$ with entries in $[0, 1]$.
    - `sizes`: block fractions summing to 1 (default: $k$ equal blocks). A stochastic block model's
      graphon; with $k = N$ equal blocks and $B$ an adjacency matrix, the step graphon of a graph.
    """

    values: Array
    edges: Array

    def __init__(self, values, sizes=None):
        b = jnp.asarray(values, dtype=float)
        if b.ndim != 2 or b.shape[0] != b.shape[1]:
            raise ValueError(f"`values` must be a square matrix, got shape {b.shape}.")
        _check_values(b, "values")
        if not np.allclose(np.asarray(b), np.asarray(b).T):
            raise ValueError("`values` must be symmetric (use a DigraphMeasure for directed graphs).")
        k = b.shape[0]
        s = np.full(k, 1.0 / k) if sizes is None else np.asarray(sizes, dtype=float)
        if s.shape != (k,) or np.any(s <= 0) or not np.isclose(s.sum(), 1.0):
            raise ValueError(f"`sizes` must be {k} positive fractions summing to 1, got {sizes}.")
        self.values = b
        self.edges = jnp.asarray(np.concatenate([[0.0], np.cumsum(s)[:-1]]))

    def block(self, x):
        """Index of the block holding each position."""
        return jnp.clip(jnp.searchsorted(self.edges, jnp.asarray(x), side="right") - 1, 0,
                        self.values.shape[0] - 1)

    def __call__(self, x, y):
        return self.values[self.block(x), self.block(y)]

    def factors(self, x):
        onehot = jnp.eye(self.values.shape[0])[self.block(x)]
        return onehot, onehot @ self.values


def grid(n: int) -> Array:
    r"""The node positions $x_i = (i + 1/2)/n$, $i = 0, \dots, n - 1$ (cell centres)."""
    return (jnp.arange(n) + 0.5) / n
