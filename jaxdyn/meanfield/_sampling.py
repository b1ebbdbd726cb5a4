r"""Finite objects from graph limits: node positions, $W$-random graphs, frequency quantiles.

Deterministic quantile draws (`lorentzian_quantiles`, `gaussian_quantiles`) remove the finite-$N$
sampling noise of random frequencies, which is what makes the known-answer tests sharp.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse
from jax.scipy.special import ndtri
from jaxtyping import Array

from .._checks import check_int, is_concrete
from ._coupling import Sparse, evaluate_matrix
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
      (Sampling still visits the $N^2$ pairs: for large sparse graphs use [`sample_edges`][].)

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


_CHUNK = 1 << 22  # candidate pairs per host chunk (a few tens of MB of temporaries)
_MAX_CANDIDATES = 2e9  # expected candidate pairs above this: refuse (tens of GB) rather than thrash


def _numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded by the bits of a `jax.random` key (typed or raw `uint32[2]`)."""
    if key is None:
        raise TypeError("`key` must be a jax.random key (e.g. jax.random.key(0)), got None.")
    try:
        k = jnp.asarray(key)
        bits = jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k
        bits = np.asarray(bits)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
        raise TypeError(f"`key` must be a concrete jax.random key, got {type(key).__name__}.") from e
    if bits.dtype != np.uint32 or bits.size < 1:
        raise TypeError(f"`key` must be a jax.random key (e.g. jax.random.key(0)), got {bits.dtype} array "
                        f"of shape {bits.shape}.")
    return np.random.default_rng(bits.ravel().astype(np.uint64).tolist())


@eqx.filter_jit
def _pair_values(graphon, x, i, j):
    return jnp.asarray(graphon(x[i], x[j]), dtype=x.dtype)


def _decode_pairs(k, n: int):
    """Row-major linear indices `k` of the strict upper triangle of an `n x n` matrix -> `(i, j)`, i < j."""
    b = 2 * n - 1
    i = np.floor((b - np.sqrt(np.maximum(float(b) * b - 8.0 * k, 0.0))) / 2).astype(np.int64)
    i = np.clip(i, 0, n - 2)
    for _ in range(3):  # fix the rounding of the square root (off by one at most)
        offset = i * (2 * n - i - 1) // 2
        i = np.where(offset > k, i - 1, i)
        nxt = (i + 1) * (2 * n - i - 2) // 2
        i = np.where(nxt <= k, i + 1, i)
    offset = i * (2 * n - i - 1) // 2
    return i, k - offset + i + 1


def sample_edges(graphon: AbstractGraphon, n: int, *, key, density: float = 1.0, positions=None) -> Sparse:
    r"""A sparse $W$-random graph sampled without visiting the $N^2$ pairs, as a [`Sparse`][] coupling.

    The law is exactly that of [`sample_graph`][]: $A_{ij} = A_{ji} \sim \mathrm{Bernoulli}(\rho
    W(x_i, x_j))$ independently for $i < j$, no loops. Since $W \le 1$, each of the $M = N(N-1)/2$
    pairs is first a candidate with probability $\rho$ (the candidates are drawn directly, by
    geometric gaps between consecutive ones: the number drawn is $\mathrm{Binomial}(M, \rho)$), and a
    candidate is kept with probability $W(x_i, x_j)$: the work is $O(\rho N^2 + N)$, about
    (mean degree / mean of $W$) $\times N / 2$ pairs, on the host (NumPy, in chunks; the graphon is
    evaluated by JAX on each chunk). Measured on the shared 2-core machine: $N = 10^6$, mean degree
    100 on `graphons.ring(0.35)` ($E \approx 10^8$ directed edges) in 16-17 s, peak resident set
    2.5 GB (the graph itself: 0.8 GB, 8 bytes per directed edge).

    **Arguments:**

    - `graphon`: the [`AbstractGraphon`][] $W$, values in $[0, 1]$ (probabilities; a value outside
      is a `ValueError`), with concrete parameters.
    - `n`: the number of nodes $N \ge 1$.
    - `key`: a `jax.random` key (the graph is a function of it; drawn by NumPy from its bits).
    - `density`: $\rho \in (0, 1]$; the mean degree is about $\rho (N - 1) \bar W$. Couple the
      result with `normalisation=density` (the sparse scaling) or `"degree"`.
    - `positions`: `None` (grid $x_i = (i + 1/2)/N$) or an array of shape `(n,)` in $[0, 1]$.

    **Returns:** an unweighted [`Sparse`][] coupling (both directions of every edge, sorted by row,
    `int32` indices: 8 bytes per directed edge), usable as `graph=` of [`Kuramoto`][] and
    [`NeuralField`][].

    **No derivative:** the graph is a discrete sample (see [`sample_graph`][]).

    **Example:**

    ```python
    w = graphons.ring(0.35)  # mean of W: 0.7
    graph = sample_edges(w, 10**6, key=jax.random.key(0), density=100 / (0.7 * (10**6 - 1)))
    field = Kuramoto(omega, 1.0, graph=graph, normalisation="degree")
    ```
    """
    n = check_int(n, "n")
    if not isinstance(graphon, AbstractGraphon):
        raise TypeError(f"`graphon` must be a graphon, got {type(graphon).__name__}.")
    if not all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(graphon)):
        raise TypeError("`graphon` must have concrete parameters: a W-random graph is a discrete sample, "
                        "with no derivative with respect to the graphon.")
    if not is_concrete(density) or np.ndim(density) != 0:
        raise TypeError(f"`density` must be a concrete scalar in (0, 1], got {density!r}.")
    rho = float(density)
    if not 0 < rho <= 1:
        raise ValueError(f"`density` must lie in (0, 1], got {density}.")
    if positions is None:
        x = grid(n)
    else:
        x = jnp.asarray(positions, dtype=float)
        if x.shape != (n,):
            raise ValueError(f"`positions` must have shape ({n},), got {x.shape}.")
        xn = np.asarray(x)
        if not np.all(np.isfinite(xn)) or np.any(xn < 0) or np.any(xn > 1):
            raise ValueError("`positions` must lie in [0, 1].")
    m = n * (n - 1) // 2
    if rho * m > _MAX_CANDIDATES:
        raise ValueError(f"`density` = {rho:.3g} with n = {n} gives about {rho * m:.3g} candidate pairs "
                         f"(more than {_MAX_CANDIDATES:.0e}): too dense for an edge list; lower `density`.")
    rng = _numpy_rng(key)
    upper_i, upper_j = [], []
    start = -1  # linear index of the last candidate
    while m and start < m - 1:
        gaps = rng.geometric(rho, size=_CHUNK) if rho < 1 else np.ones(_CHUNK, dtype=np.int64)
        k = start + np.cumsum(gaps)
        start = int(k[-1])
        k = k[k < m]
        if not k.size:
            break
        i, j = _decode_pairs(k, n)
        pad = (1 << (k.size - 1).bit_length()) - k.size  # few compiled sizes: powers of two
        w = np.asarray(_pair_values(graphon, x, jnp.asarray(np.pad(i, (0, pad)), jnp.int32),
                                    jnp.asarray(np.pad(j, (0, pad)), jnp.int32)))[:k.size]
        if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w > 1):
            raise ValueError(f"`graphon` values must lie in [0, 1] (edge probabilities), got values in "
                             f"[{np.nanmin(w):.4g}, {np.nanmax(w):.4g}].")
        keep = rng.random(k.size) < w
        upper_i.append(i[keep].astype(np.int32))
        upper_j.append(j[keep].astype(np.int32))
    i = np.concatenate(upper_i) if upper_i else np.zeros(0, np.int32)
    j = np.concatenate(upper_j) if upper_j else np.zeros(0, np.int32)
    del upper_i, upper_j
    return _symmetric_csr(i, j, n)


def _symmetric_csr(i, j, n: int) -> Sparse:
    """The [`Sparse`][] coupling of both directions of the edges `(i, j)` (i < j, sorted by `(i, j)`):
    rows sorted, the columns of each row ascending (its lower entries, then its upper ones). Filled in
    chunks, so that the temporaries stay small next to the `int32` edge arrays."""
    lo = np.bincount(j, minlength=n)  # row r: the edges (i, r) with i < r
    up = np.bincount(i, minlength=n)  # row r: the edges (r, j) with j > r
    deg = lo + up
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(deg, out=indptr[1:])
    cols = np.empty(int(indptr[-1]), dtype=np.int32)
    up_start = np.cumsum(up) - up  # where row r's upper edges begin in the (i, j)-sorted list
    seen = np.zeros(n, dtype=np.int64)  # lower entries of each row placed so far
    for s in range(0, i.size, _CHUNK):
        ii, jj = i[s:s + _CHUNK], j[s:s + _CHUNK]
        rank = np.arange(s, s + ii.size, dtype=np.int64) - up_start[ii]
        cols[indptr[ii] + lo[ii] + rank] = jj  # upper entries of row ii
        order = np.argsort(jj, kind="stable")  # lower entries of row jj, ascending in i (edge order)
        js = jj[order]
        rank = np.arange(js.size, dtype=np.int64) - np.searchsorted(js, js, side="left")
        cols[indptr[js] + seen[js] + rank] = ii[order]
        seen += np.bincount(jj, minlength=n)
    del seen, up_start, indptr
    cols = jnp.asarray(cols)
    rows = _repeat_rows(jnp.asarray(deg, jnp.int32), cols.shape[0])
    out = object.__new__(Sparse)  # valid by construction: no O(E) checks or copies again
    for name, value in (("rows", rows), ("cols", cols), ("weights", None), ("n", n), ("rows_sorted", True)):
        object.__setattr__(out, name, value)
    return out


@functools.partial(jax.jit, static_argnums=1)
def _repeat_rows(deg, total: int):
    return jnp.repeat(jnp.arange(deg.shape[0], dtype=jnp.int32), deg, total_repeat_length=total)


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
    i = jnp.arange(1, n + 1)
    # By symmetry Phi^{-1}(u) = -Phi^{-1}(1 - u), with 1 - u = (n - i + 1/2)/n formed exactly: in float32
    # (i - 1/2)/n rounds to 1 near the top end for large n (N = 10^7: an infinite last quantile).
    upper = 2 * i > n
    u = jnp.where(upper, n - i + 0.5, i - 0.5) / n
    return center + sigma * jnp.where(upper, -ndtri(u), ndtri(u))


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
