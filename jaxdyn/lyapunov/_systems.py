"""Systems for the QR engine: flows (RK4 or any diffrax solver), maps, random products."""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp

from .._types import Array


def tangent_step(step: Callable, x: Array, Q: Array) -> tuple[Array, Array]:
    """`step(x)` and its Jacobian applied to the columns of `Q`, matrix-free: `jax.jvp` vmapped
    over the columns (the primal is not batched, so it is computed once)."""
    jvp = lambda v: jax.jvp(step, (x,), (v,))
    x_new, Q_new = jax.vmap(jvp, in_axes=1, out_axes=(None, 1))(Q)
    return x_new, Q_new


class FlowRK4(eqx.Module):
    """Classical fixed-step RK4 on a (flattened) state; `field(t, y, args)` on the PyTree."""

    field: Any
    args: Any
    dt: Array
    t0: Array
    unravel: Callable = eqx.field(static=True)

    def _f(self, t, x):
        return jax.flatten_util.ravel_pytree(self.field(t, self.unravel(x), self.args))[0]

    def _step(self, x, i):
        dt = self.dt
        t = self.t0 + i * dt
        k1 = self._f(t, x)
        k2 = self._f(t + dt / 2, x + dt / 2 * k1)
        k3 = self._f(t + dt / 2, x + dt / 2 * k2)
        k4 = self._f(t + dt, x + dt * k3)
        return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def advance(self, x, i, key):
        return self._step(x, i)

    def tangent(self, x, Q, i, key):
        return tangent_step(lambda y: self._step(y, i), x, Q)


class FlowDiffrax(eqx.Module):
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

    def _step(self, x, i):
        t = self.t0 + i * self.dt
        sol = diffrax.diffeqsolve(
            self.terms, self.solver, t, t + self.dt, self.dt, self.unravel(x), self.args,
            stepsize_controller=self.controller, adjoint=diffrax.ForwardMode(),
            max_steps=self.max_steps, throw=False,
        )
        y1 = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        y1 = jax.flatten_util.ravel_pytree(y1)[0]
        # a failed solve (e.g. max_steps) is a divergence, reported through non-finite values
        return jnp.where(sol.result == diffrax.RESULTS.successful, y1, jnp.nan)

    def advance(self, x, i, key):
        return self._step(x, i)

    def tangent(self, x, Q, i, key):
        return tangent_step(lambda y: self._step(y, i), x, Q)


class MapSystem(eqx.Module):
    """`x_{n+1} = F(x_n, args)` or, with inputs, `x_{n+1} = F(x_n, u_n, args)`."""

    map_fn: Any
    args: Any
    inputs: Any
    unravel: Callable = eqx.field(static=True)

    def _step(self, x, i):
        y = self.unravel(x)
        if self.inputs is None:
            out = self.map_fn(y, self.args)
        else:
            u = jax.tree_util.tree_map(lambda a: a[i], self.inputs)
            out = self.map_fn(y, u, self.args)
        return jax.flatten_util.ravel_pytree(out)[0]

    def advance(self, x, i, key):
        return self._step(x, i)

    def tangent(self, x, Q, i, key):
        return tangent_step(lambda y: self._step(y, i), x, Q)


class ProductSystem(eqx.Module):
    """i.i.d. random linear maps `A_i = sample_fn(fold_in(key, i))` (matrices or matvecs)."""

    sample_fn: Any
    matvec: bool = eqx.field(static=True)

    def advance(self, x, i, key):
        return x

    def tangent(self, x, Q, i, key):
        A = self.sample_fn(jax.random.fold_in(key, i))
        if self.matvec:
            return x, jax.vmap(A, in_axes=1, out_axes=1)(Q)
        return x, A @ Q
