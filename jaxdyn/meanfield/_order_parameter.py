r"""Order parameters: the complex mean field $z = \frac1N \sum_j e^{i\theta_j}$ and local versions."""

import jax.numpy as jnp
from jaxtyping import Array

from ._coupling import AbstractCouplingMethod, as_method, coupling_operator
from ._graphon import RingGraphon


def order_parameter(theta, *, harmonic: int = 1, weights=None) -> Array:
    r"""The complex (Kuramoto-Daido) order parameter $z_k = \sum_j w_j e^{i k\theta_j}$, $r = |z|$.

    **Arguments:**

    - `theta`: phases, shape `(..., N)` (e.g. a trajectory `(T, N)`: one $z$ per time).
    - `harmonic`: $k$ (default 1: Kuramoto's $z$).
    - `weights`: optional weights of shape `(N,)` (default $1/N$).

    **Returns:** complex array of shape `theta.shape[:-1]`.
    """
    theta = jnp.asarray(theta)
    if theta.ndim < 1 or theta.shape[-1] < 1:
        raise ValueError(f"`theta` must have shape (..., N) with N >= 1, got {theta.shape}.")
    e = jnp.exp(1j * harmonic * theta)
    if weights is None:
        return jnp.mean(e, axis=-1)
    w = jnp.asarray(weights)
    if w.shape != theta.shape[-1:]:
        raise ValueError(f"`weights` must have shape ({theta.shape[-1]},), got {w.shape}.")
    return jnp.sum(w * e, axis=-1)


def local_order_parameter(theta, *, radius: float = 0.05, graph=None, positions=None,
                          method: AbstractCouplingMethod | None = None) -> Array:
    r"""Local order parameters $Z_i = \sum_j W_{ij} e^{i\theta_j} / \sum_j W_{ij}$ (complex).

    By default $W$ is a window of circle radius `radius` around each node on the grid
    ($x_i = (i + 1/2)/N$, computed by FFT): $|Z_i| \approx 1$ in coherent and $< 1$ in incoherent
    regions, which is how chimera states are seen. Pass `graph` (anything
    [`coupling_operator`][] takes) for another neighbourhood.

    **Arguments:** `theta` of shape `(..., N)`; `radius`, or `graph` / `positions` / `method` (`None`:
    the cheapest exact coupling, or an [`AbstractCouplingMethod`][]).

    **Returns:** complex array of the shape of `theta`.
    """
    theta = jnp.asarray(theta)
    n = theta.shape[-1]
    op = coupling_operator(RingGraphon(radius) if graph is None else graph, n, positions=positions,
                           method=as_method(method))
    flat = theta.reshape(-1, n).T  # (N, batch)
    c, s = jnp.cos(flat), jnp.sin(flat)
    u = op.matvec(jnp.concatenate([c, s], axis=1))
    b = flat.shape[1]
    deg = op.degrees()[:, None]
    z = (u[:, :b] + 1j * u[:, b:]) / deg
    return z.T.reshape(theta.shape)
