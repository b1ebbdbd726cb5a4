"""Systems for the QR engine: flows (RK4 or any diffrax solver), maps, random products.

Every system is a final subclass of [`AbstractSystem`][]: one step of the base dynamics
(`advance`) and the same step with a block of tangent vectors pushed through its linearisation
(`tangent`). The engine (`_engine.py`) only calls these two methods.
"""

import abc
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp

from .._kernels import RK4, jvp_columns, rk_step
from .._types import Array


class AbstractSystem(eqx.Module):
    """A discrete-time system for the Benettin/QR engine.

    The step index `i` and the chain's `key` are the only sources of time and randomness (time
    `t = t0 + i dt`, random draws from `fold_in(key, i)`, input `u_i`), so that a run can be split
    into chunks, checkpointed and resumed to the same numbers.
    """

    @abc.abstractmethod
    def advance(self, x: Array, i: Array, key: Any) -> Array:
        """One step of the base dynamics alone: the flat state after step `i`."""

    @abc.abstractmethod
    def tangent(self, x: Array, Q: Array, i: Array, key: Any) -> tuple[Array, Array]:
        """One step of the base dynamics with the tangent block `Q` (shape `(n, k)`) pushed
        through the linearisation of that step: `(x_next, Q_next)`."""


class AbstractFlowSystem(AbstractSystem):
    """A system that steps a flow by `dt` (the accuracy control halves it)."""

    dt: eqx.AbstractVar[Array]


class FlowRK4(AbstractFlowSystem):
    """Classical fixed-step RK4 on a (flattened) state; `field(t, y, args)` on the PyTree."""

    field: Any
    args: Any
    dt: Array
    t0: Array
    unravel: Callable = eqx.field(static=True)

    def vector_field(self, t, x: Array) -> Array:
        """The field on the flat state: `ravel(field(t, unravel(x), args))`."""
        return jax.flatten_util.ravel_pytree(self.field(t, self.unravel(x), self.args))[0]

    def advance(self, x, i, key):
        return rk_step(self.vector_field, self.t0 + i * self.dt, x, self.dt, RK4)

    def tangent(self, x, Q, i, key):
        return jvp_columns(lambda y: self.advance(y, i, key), x, Q)


class FlowDiffrax(AbstractFlowSystem):
    """One interval `[t0 + i dt, t0 + (i + 1) dt]` of `diffrax.diffeqsolve` per step.

    Fixed step (one solver step of `dt`) or adaptive inside the interval; the QR grid stays
    fixed. Forward-mode differentiable (`diffrax.ForwardMode`). Accepts any diffrax term, e.g.
    an SDE `MultiTerm(ODETerm(drift), ControlTerm(diffusion, brownian))` whose Brownian path
    is fixed: the exponents are then those of that noise realisation.
    """

    terms: Any
    solver: diffrax.AbstractSolver
    controller: diffrax.AbstractStepSizeController
    args: Any
    dt: Array
    t0: Array
    max_steps: int = eqx.field(static=True)
    unravel: Callable = eqx.field(static=True)

    def advance(self, x, i, key):
        t = self.t0 + i * self.dt
        sol = diffrax.diffeqsolve(
            self.terms, self.solver, t, t + self.dt, self.dt, self.unravel(x), self.args,
            stepsize_controller=self.controller, adjoint=diffrax.ForwardMode(),
            max_steps=self.max_steps, throw=False,
        )
        y1 = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        y1 = jax.flatten_util.ravel_pytree(y1)[0]
        # a failed solve (e.g. max_steps) ends the run: reported as a non-finite state
        return jnp.where(sol.result == diffrax.RESULTS.successful, y1, jnp.nan)

    def tangent(self, x, Q, i, key):
        return jvp_columns(lambda y: self.advance(y, i, key), x, Q)


class MapSystem(AbstractSystem):
    """`x_{n+1} = F(x_n, args)`."""

    map_fn: Any
    args: Any
    unravel: Callable = eqx.field(static=True)

    def advance(self, x, i, key):
        return jax.flatten_util.ravel_pytree(self.map_fn(self.unravel(x), self.args))[0]

    def tangent(self, x, Q, i, key):
        return jvp_columns(lambda y: self.advance(y, i, key), x, Q)


class DrivenMapSystem(AbstractSystem):
    """`x_{n+1} = F(x_n, u_n, args)`: an input-driven map (an RNN along an input sequence)."""

    map_fn: Any
    args: Any
    inputs: Any
    unravel: Callable = eqx.field(static=True)

    def advance(self, x, i, key):
        u = jax.tree_util.tree_map(lambda a: a[i], self.inputs)
        return jax.flatten_util.ravel_pytree(self.map_fn(self.unravel(x), u, self.args))[0]

    def tangent(self, x, Q, i, key):
        return jvp_columns(lambda y: self.advance(y, i, key), x, Q)


class MatrixProductSystem(AbstractSystem):
    """i.i.d. random matrices `A_i = sample_fn(fold_in(key, i))`; the base state never moves."""

    sample_fn: Any

    def advance(self, x, i, key):
        return x

    def tangent(self, x, Q, i, key):
        return x, self.sample_fn(jax.random.fold_in(key, i)) @ Q


class MatvecProductSystem(AbstractSystem):
    """i.i.d. random linear maps `v -> A_i v`, `A_i = sample_fn(fold_in(key, i))` (never formed)."""

    sample_fn: Any

    def advance(self, x, i, key):
        return x

    def tangent(self, x, Q, i, key):
        A = self.sample_fn(jax.random.fold_in(key, i))
        return x, jax.vmap(A, in_axes=1, out_axes=1)(Q)
