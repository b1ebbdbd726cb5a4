"""The constructive universal embedding: an augmented neural ODE that equals any map psi."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_int
from .._types import Args, Array, Scalar
from ._affine import AbstractField, Affine
from ._neural_ode import NeuralODE


class EmbeddingField(AbstractField):
    r"""The field $f(t, (u, v)) = (0, \psi(u))$ on $\mathbb{R}^{d + q}$ (state stored flat)."""

    psi: Callable
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    @property
    def size(self) -> int:
        return self.in_size + self.out_size

    def __call__(self, t: Scalar, y: Array, args: Args = None) -> Array:
        u = y[: self.in_size]
        out = jnp.reshape(self.psi(u), (self.out_size,))
        return jnp.concatenate([jnp.zeros_like(u), out.astype(y.dtype)])


def embed(psi: Callable, in_size: int, out_size: int, *, solver=None, stepsize_controller=None,
          dt0: float | None = None, adjoint=None, max_steps: int | None = None) -> NeuralODE:
    r"""The universal embedding of $\psi: \mathbb{R}^d \to \mathbb{R}^q$ as an augmented neural ODE.

    Kuehn & Kuntz (arXiv 2308.01213): with $m = d + q$, lift $x \mapsto (x, 0)$, field
    $f(t, (u, v)) = (0, \psi(u))$, $T = 1$ and readout $(u, v) \mapsto v$, the flow keeps
    $u = x$ and gives $v(1) = \psi(x)$, so $\Phi = \psi$ exactly (up to solver rounding: the field
    is constant along each trajectory, which every Runge-Kutta method integrates exactly).

    **Arguments:**

    - `psi`: a function of one input of shape `(in_size,)` returning shape `(out_size,)` (a
      scalar is accepted when `out_size == 1`). It may be an Equinox module (then trainable).
    - `in_size`, `out_size`: $d$ and $q$.
    - `solver`, `stepsize_controller`, `dt0`, `adjoint`, `max_steps`: as in [`NeuralODE`][]
      (defaults Tsit5 + PID). Since the field is constant along trajectories, one Euler step
      (`solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=1.0`) is
      already exact, and the cheapest choice for second-order analyses.

    **Returns:** a [`NeuralODE`][] with `state_size = d + q`.
    """
    if not callable(psi):
        raise TypeError(f"`psi` must be callable, got {type(psi).__name__}.")
    d = check_int(in_size, "in_size")
    q = check_int(out_size, "out_size")
    dtype = jnp.result_type(float)
    try:
        out = jax.eval_shape(psi, jax.ShapeDtypeStruct((d,), dtype))
    except Exception as err:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(f"`psi` failed on an input of shape ({d},): {err}") from err
    shape = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
    if shape != (q,) and not (q == 1 and shape == ()):
        raise ValueError(f"`psi` must return shape ({q},) for inputs of shape ({d},), got {shape}.")
    lift = Affine(jnp.concatenate([jnp.eye(d, dtype=dtype), jnp.zeros((q, d), dtype)]))
    readout = Affine(jnp.concatenate([jnp.zeros((q, d), dtype), jnp.eye(q, dtype=dtype)], axis=1))
    if stepsize_controller is None and solver is None:
        stepsize_controller = diffrax.PIDController(rtol=1e-10, atol=1e-12)
    return NeuralODE(EmbeddingField(psi, d, q), lift=lift, readout=readout, t1=1.0, solver=solver,
                     stepsize_controller=stepsize_controller, dt0=dt0, adjoint=adjoint,
                     max_steps=max_steps)
