"""Vector fields f(t, y, args) in diffrax's convention."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._types import Args, Array, Key, Scalar
from ._affine import AbstractField


def _identity(x):
    return x


class MLPField(AbstractField):
    r"""An MLP vector field $f_\theta(t, h)$ for $h' = f_\theta(t, h)$ in diffrax's convention.

    Autonomous by default; with `time_dependent=True` the time is an extra input,
    $f_\theta(t, h) = \text{MLP}([t, h])$.

    **Arguments:**

    - `size`: the state dimension $m$.
    - `width_size`, `depth`: hidden width and number of hidden layers of the MLP.
    - `key`: a `jax.random` key for the initialisation.
    - `activation`: any elementwise function (default `tanh`).
    - `final_activation`: applied to the output (default identity).
    - `time_dependent`: feed $t$ as an extra input.
    - `scale`: multiplies the output (small values give near-identity flows at initialisation).

    **Example:**

    ```python
    field = MLPField(2, 32, 2, key=jax.random.key(0))
    dh = field(0.0, jnp.ones(2), None)
    ```
    """

    mlp: eqx.nn.MLP
    size: int = eqx.field(static=True)
    time_dependent: bool = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, size: int, width_size: int, depth: int, *, key: Key,
                 activation: Callable = jnp.tanh, final_activation: Callable = _identity,
                 time_dependent: bool = False, scale: float = 1.0):
        size = check_int(size, "size")
        width_size = check_int(width_size, "width_size")
        depth = check_int(depth, "depth", minimum=0)
        if not callable(activation):
            raise TypeError(f"`activation` must be callable, got {type(activation).__name__}.")
        if isinstance(scale, bool) or not np.isfinite(float(scale)):
            raise ValueError(f"`scale` must be a finite number, got {scale!r}.")
        in_size = size + 1 if time_dependent else size
        self.mlp = eqx.nn.MLP(in_size, size, width_size, depth, activation=activation,
                              final_activation=final_activation, key=key)
        self.size = size
        self.time_dependent = bool(time_dependent)
        self.scale = float(scale)

    def __call__(self, t: Scalar, y: Array, args: Args = None) -> Array:
        inp = jnp.concatenate([jnp.reshape(t, (1,)).astype(y.dtype), y]) if self.time_dependent else y
        return self.scale * self.mlp(inp)


class LinearField(AbstractField):
    r"""The linear field $f(t, y) = A y$ (a known-answer case: the flow is $e^{tA}$)."""

    matrix: Array

    def __init__(self, matrix):
        matrix = jnp.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"`matrix` must be square, got shape {matrix.shape}.")
        self.matrix = matrix

    @property
    def size(self) -> int:
        return self.matrix.shape[0]

    def __call__(self, t: Scalar, y: Array, args: Args = None) -> Array:
        return self.matrix @ y
