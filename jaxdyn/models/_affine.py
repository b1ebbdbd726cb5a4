"""Affine maps used as lifts R^d -> R^m and readouts R^m -> R^q."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, check_int, is_concrete
from .._types import Array, Key


class Affine(eqx.Module):
    r"""The affine map $x \mapsto W x + b$ with $W \in \mathbb{R}^{\text{out} \times \text{in}}$.

    **Arguments:**

    - `weight`: the matrix $W$, shape `(out_size, in_size)`.
    - `bias`: the vector $b$, shape `(out_size,)`; `None` means zero.

    Build a random one with [`jaxdyn.models.random_affine`][].

    **Example:**

    ```python
    lift = Affine(jnp.array([[1.0], [0.0]]))   # x -> (x, 0): R -> R^2
    ```
    """

    weight: Array
    bias: Array

    def __init__(self, weight, bias=None):
        weight = jnp.asarray(weight)
        if weight.ndim != 2:
            raise ValueError(f"`weight` must be a matrix (out_size, in_size), got shape {weight.shape}.")
        if not jnp.issubdtype(weight.dtype, jnp.inexact):
            weight = weight.astype(jnp.result_type(float))
        bias = jnp.zeros(weight.shape[0], weight.dtype) if bias is None else jnp.asarray(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"`bias` must have shape ({weight.shape[0]},), got {bias.shape}.")
        self.weight = weight
        self.bias = bias.astype(weight.dtype)

    @property
    def in_size(self) -> int:
        return self.weight.shape[1]

    @property
    def out_size(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: Array) -> Array:
        return self.weight @ x + self.bias

    def rank(self, rtol: float | None = None) -> int:
        """Numerical rank of the weight (singular values above `rtol * max(shape) * s_max`)."""
        s = np.linalg.svd(np.asarray(self.weight), compute_uv=False)
        if s.size == 0 or s[0] == 0:
            return 0
        tol = (rtol if rtol is not None else np.finfo(s.dtype).eps) * max(self.weight.shape) * s[0]
        return int(np.sum(s > tol))


def random_affine(in_size: int, out_size: int, *, key: Key, bias: bool = True) -> Affine:
    """An [`Affine`][] map with LeCun-uniform weights (as `eqx.nn.Linear`)."""
    linear = eqx.nn.Linear(in_size, out_size, use_bias=bias, key=key)
    return Affine(linear.weight, linear.bias if bias else None)


def identity_affine(size: int, dtype=None) -> Affine:
    """The identity map of $\\mathbb{R}^{\\text{size}}$ as an [`Affine`][]."""
    return Affine(jnp.eye(size, dtype=dtype or jnp.result_type(float)))


def as_affine(value, name: str, *, key: Key | None = None) -> Affine | None:
    """Normalise a lift/readout argument: `None` (identity), an `Affine`, or a weight matrix."""
    if value is None:
        return value
    if isinstance(value, eqx.nn.Linear):
        value = Affine(value.weight, value.bias)
    elif isinstance(value, jax.Array | np.ndarray):
        if np.ndim(value) != 2:
            raise ValueError(f"`{name}` must be a weight matrix (out_size, in_size), got shape "
                             f"{np.shape(value)}.")
        if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
            raise TypeError(f"`{name}` must hold real numbers, got dtype {value.dtype}.")
        value = Affine(value)
    if isinstance(value, Affine):
        if is_concrete(value.weight) and is_concrete(value.bias):
            check_finite((value.weight, value.bias), name)
        return value
    raise TypeError(
        f"`{name}` must be None (identity), an Affine, an eqx.nn.Linear or a weight matrix, "
        f"got {type(value).__name__}."
    )


class AbstractField(eqx.Module):
    r"""A vector field that declares its state dimension $m$ as `size`.

    [`NeuralODE`][] and [`NeuralDDE`][] read $m$ from the `size` of a field that subclasses this
    (as [`MLPField`][], [`LinearField`][] and [`EmbeddingField`][] do), so that neither a lift, a
    readout nor `state_size` is needed; any other callable field works too, with the state
    dimension given by one of those. Subclasses are final and define `size` (a field or a
    property) and `__call__` in their own calling convention.
    """

    size: eqx.AbstractVar[int]


def lift_readout_state(
    field, lift, readout, state_size: int | None
) -> tuple[Affine | None, Affine | None, int]:
    """Normalise `lift`/`readout` (see [`as_affine`][]) and infer the state dimension $m$ from
    whichever of the lift, the readout, the `size` of an [`AbstractField`][] and `state_size`
    are given; a `ValueError` names them all when they disagree or when none is given."""
    lift = as_affine(lift, "lift")
    readout = as_affine(readout, "readout")
    if state_size is not None:
        state_size = check_int(state_size, "state_size")
    sizes = {
        "lift": None if lift is None else lift.out_size,
        "readout": None if readout is None else readout.in_size,
        "field.size": int(field.size) if isinstance(field, AbstractField) else None,
        "state_size": state_size,
    }
    known = {k: v for k, v in sizes.items() if v is not None}
    if not known:
        raise ValueError(
            "Cannot infer the state dimension m: give a lift, a readout, a field that declares "
            "its `size` (a subclass of jaxdyn.models.AbstractField), or `state_size`."
        )
    m = next(iter(known.values()))
    if any(value != m for value in known.values()):
        details = []
        for name, value in known.items():
            note = ""
            if name in ("lift", "readout"):
                note = f" (weight shape {(lift if name == 'lift' else readout).weight.shape})"
            details.append(f"`{name}` gives m = {value}{note}")
        raise ValueError("Inconsistent state dimension m: " + ", ".join(details) + ".")
    return lift, readout, int(m)


class AbstractLiftedModel(eqx.Module):
    r"""An input-output map $\Phi(x) = R(h(T))$ with an affine lift $h(0) = L(x)$ and readout $R$
    ($L$ or $R$ `None`: the identity), shared by [`NeuralODE`][] and [`NeuralDDE`][]."""

    lift: eqx.AbstractVar[Affine | None]
    readout: eqx.AbstractVar[Affine | None]
    state_size: eqx.AbstractVar[int]

    @property
    def in_size(self) -> int:
        """$d$, the input dimension."""
        return self.state_size if self.lift is None else self.lift.in_size

    @property
    def out_size(self) -> int:
        """$q$, the output dimension."""
        return self.state_size if self.readout is None else self.readout.out_size

    def lift_input(self, x: Array) -> Array:
        """$L(x)$."""
        return x if self.lift is None else self.lift(x)

    def read(self, h: Array) -> Array:
        """$R(h)$."""
        return h if self.readout is None else self.readout(h)
