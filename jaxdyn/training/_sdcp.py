r"""Semidefinite linear complementarity problems in $k \times k$ symmetric matrices (the inner
problem of the central flow).

SKELETON (lead): the interface below is fixed; the solver is being written.

The problem $\mathrm{SDLCP}(q, M)$: given a symmetric $q \in \mathbb{S}^k$ and a linear map
$M: \mathbb{S}^k \to \mathbb{S}^k$, $M(S)_{ab} = \sum_{ij} M_{abij} S_{ij}$ (a `(k, k, k, k)` array,
symmetric in $(a, b)$ and in $(i, j)$), find $S$ with

$$S \succeq 0,\qquad W = q + M(S) \succeq 0,\qquad \langle S, W\rangle = 0.$$
"""

import abc

import equinox as eqx

from .._results import RESULTS
from .._types import Array


class AbstractComplementaritySolver(eqx.Module):
    """How the $k \\times k$ semidefinite complementarity problem is solved (a strategy object for
    `central_flow(..., sdcp=...)`).

    `solve(q, M, init)` takes `q` of shape `(k, k)`, `M` of shape `(k, k, k, k)` and a start
    `init` of shape `(k, k)` (the previous solution; zeros for a cold start) and returns
    `(S, result)`: the solution `(k, k)` and a [`RESULTS`][] item (`successful`, or
    `complementarity_not_solved` when the residual is above the solver's tolerance). It must
    trace under `jit`/`vmap`/`lax.scan`; a solver that cannot be traced (a host solver through
    `jax.pure_callback`) says so in its docstring. Derivatives: a solver whose `S` carries
    correct derivatives (implicit differentiation) says so; one that cannot must raise on
    differentiation rather than return a wrong derivative.
    """

    @abc.abstractmethod
    def solve(self, q: Array, M: Array, init: Array) -> tuple[Array, RESULTS]:
        """`(S, result)` for $\\mathrm{SDLCP}(q, M)$ started from `init`."""
