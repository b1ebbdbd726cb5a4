"""The interface every branch of [`continuation`][] follows: a one-parameter zero problem.

A branch is a curve of solutions $(u, p)$ of $G(u, p) = 0$ with $u \\in \\mathbb{R}^n$ (a flat
vector) and one scalar parameter $p$. Equilibria of flows ($G = f(u, p)$), fixed points and cycles
of maps ($G = F^k(u, p) - u$), periodic orbits (the multiple-shooting residual with its phase
condition, the period among the unknowns) and Hopf points of delay equations (the characteristic
equation at $\\lambda = i\\omega$) are all such problems. The continuation engine only calls the
methods declared here (no type tests): a new kind of invariant object is a new final subclass.

How a parameter enters the user's function: the field or map takes `args` as usual
(`f(t, y, args)`, `F(x, args)`); a problem holds `parameter`, a callable `(args, p) -> args` that
puts $p$ into `args` (for example `lambda args, p: eqx.tree_at(lambda a: a.rho, args, p)`), or
`None`, meaning that `args` *is* the parameter (`f(t, y, p)`).

Special points are named by the strings of `SPECIAL_POINTS`. The engine itself detects folds
(the $p$-component of the tangent changes sign) and branch points (the determinant, or a bordered
test function in the matrix-free path, of the augmented Jacobian $[G_u\\ G_p;\\ t^T]$ changes
sign); a problem adds its own test functions (`test_names`, `test_functions`): Hopf for equilibria
of flows, period doubling and Neimark-Sacker for maps and cycles.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx

from .._types import Array

# The kinds of special point a branch can carry, in the order of their integer codes.
SPECIAL_POINTS: tuple[str, ...] = (
    "fold",
    "branch_point",
    "hopf",
    "period_doubling",
    "neimark_sacker",
)


def with_parameter(parameter: Callable | None, args: Any, p: Any) -> Any:
    """`args` with the continuation parameter `p` put in (see the module docstring)."""
    return p if parameter is None else parameter(args, p)


class AbstractBranchProblem(eqx.Module):
    """A one-parameter family of zero problems $G(u, p) = 0$, $u \\in \\mathbb{R}^n$ flat.

    Final subclasses implement every abstract method; `test_names` is a class-level tuple of
    entries of `SPECIAL_POINTS` (the problem's own test functions, in the order of
    `test_functions`). All methods are pure JAX functions of arrays (jit/vmap-able).
    """

    test_names: eqx.AbstractClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def residual(self, u: Array, p: Array, args: Any, u_ref: Array) -> Array:
        """$G(u, p)$, shape `(n,)` like `u`. `u_ref` is the last accepted point of the branch (for
        phase conditions of periodic orbits; problems without one ignore it)."""

    @abc.abstractmethod
    def spectrum(self, u: Array, p: Array, args: Any) -> Array:
        """The stability spectrum at a solution, complex, of a fixed shape `(k,)`: the eigenvalues
        of the Jacobian (equilibria of flows) or the multipliers (fixed points and cycles of maps;
        the Floquet multipliers of periodic orbits, trivial multiplier included). `k = 0` when
        the problem computes none (then the branch carries no stability)."""

    @abc.abstractmethod
    def n_unstable(self, spectrum: Array) -> Array:
        """The number of unstable directions of `spectrum` (an integer array scalar): eigenvalues
        with positive real part for flows, multipliers of modulus above one for maps and cycles
        (the trivial Floquet multiplier excluded)."""

    @abc.abstractmethod
    def test_functions(self, u: Array, p: Array, args: Any, spectrum: Array) -> Array:
        """The problem's own test functions at a solution, real, shape `(len(test_names),)`: each
        changes sign where the special point of the same position in `test_names` lies."""

    @abc.abstractmethod
    def dimension(self, u: Array) -> int:
        """The state dimension used for the dense/matrix-free choice (static, from shapes)."""
