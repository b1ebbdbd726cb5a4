r"""Finite objects from graph limits: node positions, $W$-random graphs, frequency quantiles.

Deterministic quantile draws (`lorentzian_quantiles`, `gaussian_quantiles`) remove the finite-$N$
sampling noise of random frequencies, which is what makes the known-answer tests sharp.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse
from jax.scipy.special import ndtri
from jaxtyping import Array

from .._checks import check_int, is_concrete
from ._coupling import evaluate_matrix
from ._graphon import AbstractGraphon, StepGraphon, _blocks, grid


def sample_positions(n: int, *, key) -> Array:
    """`n` sorted i.i.d. uniform node positions in $[0, 1]$."""
    n = check_int(n, "n")
    return jnp.sort(jax.random.uniform(key, (n,)))


def sample_graph(graphon: AbstractGraphon, n: int, *, key, positions=None, density: float = 1.0,
                 sparse: bool = False):
    r"""A $W$-random graph: $A_{ij} = A_{ji} \sim \mathrm{Bernoulli}(\rho W(x_i, x_j))$, $i < j$, no loops.

    **Arguments:**

    - `graphon`: the [`AbstractGraphon`][] $W$ (values must lie in $[0, 1]$: they are probabilities).
    - `n`: number of nodes ($\ge 1$); `key`: a `jax.random` key (the graph is a function of it).
    - `positions`: `None` (grid $x_i = (i + 1/2)/n$) or an array of shape `(n,)`.
    - `density`: $\rho \in (0, 1]$, for sparse graphs $p_{ij} = \rho W$ (couple them with
      `normalisation=rho`).
    - `sparse`: return a `jax.experimental.sparse.BCOO` (edges as indices) instead of a dense array.
      (Sampling still visits the $N^2$ pairs.)

    **Returns:** the adjacency matrix (dense float array or BCOO).

    **No derivative:** the graph is a discrete sample (its derivative with respect to the graphon's
    parameters is zero almost everywhere, and the expected graph is the graphon itself). A traced
    graphon (e.g. under `jax.grad`) raises a `TypeError` saying so: differentiate a particle system
    on the graphon (`graph=graphon`) instead.
    """
    n = check_int(n, "n")
    if not isinstance(graphon, AbstractGraphon):
        raise TypeError(f"`graphon` must be a graphon, got {type(graphon).__name__}.")
    if not all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(graphon)):
        raise TypeError("`graphon` must have concrete parameters: a W-random graph is a discrete sample, "
                        "with no derivative with respect to the graphon (zero almost everywhere). "
                        "Differentiate a particle system on the graphon itself (`graph=graphon`) instead.")
    if is_concrete(density) and not 0 < float(density) <= 1:
        raise ValueError(f"`density` must lie in (0, 1], got {density}.")
    x = grid(n) if positions is None else jnp.asarray(positions, dtype=float)
    if x.shape != (n,):
        raise ValueError(f"`positions` must have shape ({n},), got {x.shape}.")
    p = evaluate_matrix(graphon, x)
    pn = np.asarray(p)
    if np.any(pn < 0) or np.any(pn > 1) or not np.all(np.isfinite(pn)):
        raise ValueError(f"`graphon` values must lie in [0, 1] (edge probabilities), got values in "
                         f"[{np.nanmin(pn):.4g}, {np.nanmax(pn):.4g}].")
    a = _bernoulli(key, density * p)
    return jsparse.BCOO.fromdense(a) if sparse else a


@jax.jit
def _bernoulli(key, p):
    upper = jnp.triu(jax.random.uniform(key, p.shape) < p, k=1)
    return (upper | upper.T).astype(float)


def step_graphon(adjacency) -> StepGraphon:
    """The step graphon of a symmetric 0/1 (or $[0, 1]$-weighted) adjacency matrix: $N$ equal cells."""
    _blocks(adjacency, None, "adjacency", "sizes")
    return StepGraphon(adjacency)


def _scale_and_center(scale, center, scale_name: str):
    """A positive finite width and a finite centre (checked when concrete; differentiable)."""
    for value, name in ((scale, scale_name), (center, "center")):
        if is_concrete(value):
            v = np.asarray(value)
            if v.shape != ():
                raise ValueError(f"`{name}` must be a scalar, got shape {v.shape}.")
            if not np.isfinite(v):
                raise ValueError(f"`{name}` must be finite, got {value}.")
    if is_concrete(scale) and not float(scale) > 0:
        raise ValueError(f"`{scale_name}` must be > 0 (a width), got {scale}.")


def lorentzian_quantiles(n: int, gamma: float = 1.0, center: float = 0.0) -> Array:
    r"""$\omega_i = \omega_0 + \gamma \tan(\pi (i - 1/2)/N - \pi/2)$, $i = 1, \dots, N$: Cauchy quantiles.

    `gamma` > 0 is the half-width at half-maximum; `center` $\omega_0$. Differentiable in both."""
    n = check_int(n, "n")
    _scale_and_center(gamma, center, "gamma")
    i = jnp.arange(1, n + 1)
    return center + gamma * jnp.tan(jnp.pi * (i - 0.5) / n - jnp.pi / 2)


def gaussian_quantiles(n: int, sigma: float = 1.0, center: float = 0.0) -> Array:
    r"""$\omega_i = \omega_0 + \sigma \Phi^{-1}((i - 1/2)/N)$: normal quantiles (`sigma` > 0)."""
    n = check_int(n, "n")
    _scale_and_center(sigma, center, "sigma")
    return center + sigma * ndtri((jnp.arange(1, n + 1) - 0.5) / n)


def wrapped_cauchy_quantiles(n: int, r0: float, *, key=None) -> Array:
    r"""Phases with the wrapped Cauchy (Poisson kernel) law of order parameter $r_0 \in [0, 1)$: the
    Ott-Antonsen manifold. Quantiles $\theta = 2\arctan(\frac{1 - r_0}{1 + r_0}\tan(\pi(u - 1/2)))$ at
    $u = (i - 1/2)/N$, randomly permuted with `key` (to decouple them from quantile frequencies).
    Needs $N \ge 2$ (a single phase has order parameter 1 whatever $r_0$)."""
    n = check_int(n, "n", minimum=2)
    if is_concrete(r0) and not 0 <= float(r0) < 1:
        raise ValueError(f"`r0` must lie in [0, 1), got {r0}.")
    u = (jnp.arange(1, n + 1) - 0.5) / n
    theta = 2 * jnp.arctan((1 - r0) / (1 + r0) * jnp.tan(math.pi * (u - 0.5)))
    return theta if key is None else jax.random.permutation(key, theta)
