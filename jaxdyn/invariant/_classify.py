"""Stability and kind of an equilibrium, fixed point or cycle from its spectrum.

A flow's equilibrium is stable when every eigenvalue $\\lambda$ of the Jacobian has $\\Re\\lambda < 0$;
a map's fixed point or cycle when every multiplier $\\mu$ has $|\\mu| < 1$. The two differ only in the
*margin* of a spectral value to the stability boundary ($\\Re\\lambda$, or $|\\mu| - 1$), which is the
one method of the strategy: the kind (node, focus, saddle with its index, non-hyperbolic) follows
from the margins the same way for both.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._types import Array

# The kinds of a point, in the order of their integer codes (-1: no point).
KINDS: tuple[str, ...] = (
    "stable node",
    "stable focus",
    "unstable node",
    "unstable focus",
    "saddle",
    "non-hyperbolic",
)


class AbstractClassification(eqx.Module):
    """How a spectrum decides stability. Final subclasses: [`FlowClassification`][] (eigenvalues of
    the Jacobian against the imaginary axis) and [`MapClassification`][] (multipliers against the
    unit circle)."""

    label: ClassVar[str]

    @abc.abstractmethod
    def margin(self, spectrum: Array) -> Array:
        """The signed distance of each spectral value to the stability boundary (real, the shape of
        `spectrum`): positive is unstable."""

    @abc.abstractmethod
    def displacement(self, fn, x: Array, args) -> Array:
        """The vector drawn at `x` in a phase portrait: $f(0, x)$ for a flow, $F(x) - x$ for a map."""


class FlowClassification(AbstractClassification):
    """Equilibria of flows: the margin of an eigenvalue is $\\Re\\lambda$."""

    label: ClassVar[str] = "eigenvalues"

    def margin(self, spectrum: Array) -> Array:
        return jnp.real(spectrum)

    def displacement(self, fn, x: Array, args) -> Array:
        return fn(jnp.zeros((), x.dtype), x, args)


class MapClassification(AbstractClassification):
    """Fixed points and cycles of maps: the margin of a multiplier is $|\\mu| - 1$."""

    label: ClassVar[str] = "multipliers"

    def margin(self, spectrum: Array) -> Array:
        return jnp.abs(spectrum) - 1.0

    def displacement(self, fn, x: Array, args) -> Array:
        return fn(x, args) - x


def order_spectrum(classification: AbstractClassification, spectrum: Array) -> Array:
    """`spectrum` (shape `(n,)`) by decreasing margin; a conjugate pair with the positive imaginary
    part first."""
    order = jnp.lexsort((-jnp.imag(spectrum), -classification.margin(spectrum)))
    return spectrum[order]


def classify(classification: AbstractClassification, spectrum: Array, tol) -> tuple[Array, Array, Array]:
    """`(kind, index, non_hyperbolic)` of one spectrum of shape `(n,)`: the code into `KINDS`, the
    number of unstable directions (margin above `tol`), and whether some margin is within `tol` of
    zero (then the kind is `"non-hyperbolic"` and the index counts only the clearly unstable
    directions)."""
    m = classification.margin(spectrum)
    n = spectrum.shape[-1]
    index = jnp.sum(m > tol, axis=-1)
    non_hyperbolic = jnp.any(jnp.abs(m) <= tol, axis=-1)
    rotating = jnp.any(jnp.abs(jnp.imag(spectrum)) > tol, axis=-1)
    kind = jnp.where(index == 0, jnp.where(rotating, 1, 0),
                     jnp.where(index == n, jnp.where(rotating, 3, 2), 4))
    kind = jnp.where(non_hyperbolic, 5, kind)
    return kind.astype(jnp.int32), index.astype(jnp.int32), non_hyperbolic
