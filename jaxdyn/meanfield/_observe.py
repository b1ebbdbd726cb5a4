r"""Observables reduced on the fly by [`simulate`][] (`observe=`): the memory of a run is that of its
state, $O(N)$, not of its trajectory, $O(N T)$.

An observable is any callable `(t, y, args) -> PyTree` (evaluated at every save time, inside the
solve); these are the ready ones: [`OrderParameter`][] (complex $z$), [`LocalOrder`][] ($|z|$ on
contiguous blocks of nodes) and [`MeanActivity`][] (the mean state of a [`NeuralField`][]).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import check_int


class OrderParameter(eqx.Module):
    r"""The Kuramoto-Daido order parameter $z_k(t) = \frac1N \sum_j e^{i k\theta_j(t)}$ (complex scalar):
    $r = |z|$, $\psi = \arg z$. Equal to [`order_parameter`][] of the state.

    **Arguments:** `harmonic`: $k \ge 1$ (default 1).
    """

    harmonic: int = eqx.field(static=True)

    def __init__(self, harmonic: int = 1):
        self.harmonic = check_int(harmonic, "harmonic")

    def __call__(self, t, y, args=None) -> Array:
        return jnp.mean(jnp.exp(1j * self.harmonic * jnp.asarray(y)))


class LocalOrder(eqx.Module):
    r"""The local order parameter on a coarse grid: $R_b = |\frac1{|B_b|} \sum_{j \in B_b} e^{i\theta_j}|$
    over `n_bins` contiguous blocks $B_b$ of nodes (block $b$ holds the nodes $j$ with
    $\lfloor j\, n_{\text{bins}} / N \rfloor = b$; equal blocks when `n_bins` divides $N$). On a ring
    graphon, $R_b \approx 1$ in coherent and $< 1$ in incoherent regions (chimera states).

    **Arguments:** `n_bins`: the number of blocks, $1 \le$ `n_bins` $\le N$.

    **Returns** (when called): a real vector of shape `(n_bins,)`.
    """

    n_bins: int = eqx.field(static=True)

    def __init__(self, n_bins: int):
        self.n_bins = check_int(n_bins, "n_bins")

    def __call__(self, t, y, args=None) -> Array:
        y = jnp.asarray(y)
        n = y.shape[-1]
        if self.n_bins > n:
            raise ValueError(f"`n_bins` ({self.n_bins}) must be <= N = {n} nodes.")
        e = jnp.exp(1j * y)
        if n % self.n_bins == 0:
            z = jnp.mean(e.reshape(self.n_bins, n // self.n_bins), axis=1)
        else:
            ids = (np.arange(n, dtype=np.int64) * self.n_bins) // n  # exact integer block ids
            counts = np.bincount(ids, minlength=self.n_bins)
            ids = jnp.asarray(ids, dtype=jnp.int32)
            z = jax.ops.segment_sum(e, ids, self.n_bins, indices_are_sorted=True) / counts
        return jnp.abs(z)


class MeanActivity(eqx.Module):
    r"""The mean state $\bar x(t) = \frac1N \sum_j x_j(t)$ (real scalar): the mean activity of a
    [`NeuralField`][]."""

    def __call__(self, t, y, args=None) -> Array:
        return jnp.mean(jnp.asarray(y))
