r"""Digraph measures (Kuehn & Xu, arXiv 2107.08419): directed, possibly sparse, graph limits.

A digraph measure assigns to every vertex $x \in [0, 1]$ a finite measure $\eta^x$ on $[0, 1]$: the
"incoming neighbours" of $x$. Here $\eta^x = W(x, y)\,dy + \sum_a w_a(x)\,\delta_{y_a}$: a density part
(not necessarily symmetric) and atoms at fixed positions $y_a$ with $x$-dependent weights. The
Kuramoto field on it is $\partial_t \theta(x) = \omega(x) + K \int g(\theta(y) - \theta(x))\,d\eta^x(y)$.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._graphon import AbstractGraphon


class DigraphMeasure(eqx.Module):
    r"""$\eta^x = W(x, y)\,dy + \sum_a w_a(x)\,\delta_{y_a}$ for every $x \in [0, 1]$.

    **Arguments:**

    - `density`: `None`, an [`AbstractGraphon`][] or any vectorised callable `W(x, y) >= 0` (directed:
      `W(x, y)` is the weight of the edge from `y` into `x`; no symmetry needed, no upper bound).
    - `atom_positions`: shape `(A,)`, the positions $y_a \in [0, 1]$ of the atoms (or `None`).
    - `atom_weights`: shape `(R, A)`, non-negative; row `r` holds $w_a(x)$ for
      $x \in [r/R, (r + 1)/R)$ (a step function of $x$).

    A finite directed network with adjacency $A$ ($A_{ij}$: edge $j \to i$) is
    `DigraphMeasure.from_adjacency(A)`: atoms at the cell centres with weights $A_{ij}/N$, so that
    $K \int g\,d\eta^{x_i} = (K/N) \sum_j A_{ij} g(\theta_j - \theta_i)$ exactly.
    """

    density: object
    atom_positions: Array | None
    atom_weights: Array | None

    def __init__(self, density=None, atom_positions=None, atom_weights=None):
        if density is not None and not callable(density):
            raise TypeError(f"`density` must be None, a graphon or a callable W(x, y), got "
                            f"{type(density).__name__}.")
        if (atom_positions is None) != (atom_weights is None):
            raise ValueError("`atom_positions` and `atom_weights` must be given together.")
        if density is None and atom_positions is None:
            raise ValueError("a DigraphMeasure needs a `density`, atoms, or both.")
        self.density = density
        if atom_positions is not None:
            pos = jnp.atleast_1d(jnp.asarray(atom_positions, dtype=float))
            w = jnp.asarray(atom_weights, dtype=float)
            if pos.ndim != 1:
                raise ValueError(f"`atom_positions` must be a vector, got shape {pos.shape}.")
            if w.ndim != 2 or w.shape[1] != pos.shape[0]:
                raise ValueError(f"`atom_weights` must have shape (R, {pos.shape[0]}), got {w.shape}.")
            p, ww = np.asarray(pos), np.asarray(w)
            if np.any(p < 0) or np.any(p > 1):
                raise ValueError("`atom_positions` must lie in [0, 1].")
            if not np.all(np.isfinite(ww)) or np.any(ww < 0):
                raise ValueError("`atom_weights` must be finite and non-negative.")
            self.atom_positions, self.atom_weights = pos, w
        else:
            self.atom_positions = self.atom_weights = None
        if density is not None:
            x = (jnp.arange(9) + 0.5) / 9
            v = np.asarray(self.density(x[:, None], x[None, :]))
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise ValueError("`density` must be finite and non-negative.")

    @classmethod
    def from_adjacency(cls, adjacency) -> "DigraphMeasure":
        """The atomic digraph measure of a finite directed network (see the class docstring)."""
        a = jnp.asarray(adjacency, dtype=float)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"`adjacency` must be a square matrix, got shape {a.shape}.")
        n = a.shape[0]
        return cls(None, (jnp.arange(n) + 0.5) / n, a / n)

    @classmethod
    def from_graphon(cls, graphon: AbstractGraphon) -> "DigraphMeasure":
        """The digraph measure $\\eta^x = W(x, y)\\,dy$ of a graphon."""
        return cls(graphon)

    def coupling_matrix(self, x) -> Array:
        r"""The $N \times N$ matrix $M$ with $\frac1N \sum_j M_{ij} f(x_j) = \int f\,d\eta^{x_i}$
        for $f$ sampled at the nodes `x` (density by the rectangle rule, each atom moved to the
        nearest node)."""
        x = jnp.asarray(x, dtype=float)
        n = x.shape[0]
        m = jnp.zeros((n, n)) if self.density is None else jnp.asarray(
            self.density(x[:, None], x[None, :]), dtype=float)
        if self.atom_positions is not None:
            nodes = jnp.argmin(jnp.abs(x[:, None] - self.atom_positions[None, :]), axis=0)
            r = self.atom_weights.shape[0]
            rows = jnp.clip(jnp.floor(x * r).astype(int), 0, r - 1)
            m = m.at[:, nodes].add(n * self.atom_weights[rows])
        return m

    def total_mass(self, x) -> Array:
        r"""$\eta^x([0, 1])$ at the positions `x` (density integrated on a 1024-point grid)."""
        x = jnp.atleast_1d(jnp.asarray(x, dtype=float))
        out = jnp.zeros(x.shape)
        if self.density is not None:
            y = (jnp.arange(1024) + 0.5) / 1024
            out = out + jnp.mean(self.density(x[:, None], y[None, :]), axis=1)
        if self.atom_weights is not None:
            r = self.atom_weights.shape[0]
            rows = jnp.clip(jnp.floor(x * r).astype(int), 0, r - 1)
            out = out + jnp.sum(self.atom_weights[rows], axis=1)
        return out
