"""Discrete counterparts of neural ODEs: MLP, ResNet and DenseResNet."""

import abc
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_finite, check_input_vector, check_int, check_positive, is_concrete
from .._types import Array, Key
from ._affine import AbstractLiftedModel, Affine, as_affine


def _check_vector(x, size: int) -> Array:
    return check_input_vector(x, size)


def tie(layer: Any, depth: int) -> Any:
    """Stack `depth` copies of `layer` along a new leading axis (weight-tied layers for [`ResNet`][])."""
    depth = check_int(depth, "depth")
    return jax.tree_util.tree_map(
        lambda a: jnp.broadcast_to(a, (depth, *jnp.shape(a))) if eqx.is_array(a) else a, layer
    )


class ResidualBlock(eqx.Module):
    r"""The residual function $f(h; W, b) = \sigma(W h + b)$ of one ResNet layer."""

    weight: Array
    bias: Array
    activation: Callable = eqx.field(static=True)

    def __call__(self, h: Array) -> Array:
        return self.activation(self.weight @ h + self.bias)


def _stacked_blocks(width: int, depth: int, activation: Callable, key: Key) -> ResidualBlock:
    def make(k):
        lin = eqx.nn.Linear(width, width, key=k)
        return ResidualBlock(lin.weight, lin.bias, activation)

    return eqx.filter_vmap(make)(jax.random.split(key, depth))


def _lift_and_readout(width: int, key: Key | None, *, lift, readout, in_size, out_size):
    """The lift and readout of a residual network: given, or random from `in_size`/`out_size`
    (with the keys the networks have always used: the 2nd and 3rd of `split(key, 3)`)."""
    keys = [None, None, None] if key is None else list(jax.random.split(key, 3))
    lift = _make_affine(lift, in_size, width, keys[1], "lift", "in_size", into=True)
    readout = _make_affine(readout, out_size, width, keys[2], "readout", "out_size", into=False)
    if lift is not None and lift.out_size != width:
        raise ValueError(f"`lift` must map into R^{width}, its weight has shape {lift.weight.shape}.")
    if readout is not None and readout.in_size != width:
        raise ValueError(
            f"`readout` must map from R^{width}, its weight has shape {readout.weight.shape}."
        )
    return lift, readout, keys[0]


class AbstractResidualNetwork(AbstractLiftedModel):
    r"""A residual network with a lift and a readout, $\Phi(x) = R(h_L)$, $h_0 = L(x)$: the
    discrete counterpart of [`NeuralODE`][] with residual stream of width $m$ (`width`), `depth`
    layers and step $\delta$ (`delta`). Subclasses say how the layers are stacked
    ([`states_from`][]); the lift, the readout, the width profile and the call are shared.
    """

    width: eqx.AbstractVar[int]
    depth: eqx.AbstractVar[int]
    delta: eqx.AbstractVar[float]

    @property
    def state_size(self) -> int:
        """$m$, the width of the residual stream."""
        return self.width

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.in_size, *([self.width] * (self.depth + 1)), self.out_size)

    @abc.abstractmethod
    def states_from(self, h0: Array) -> Array:
        """The states $h_0, \\dots, h_L$ from a given residual state $h_0$ (after the lift),
        shape `(depth + 1, width)`."""

    def hidden_states(self, x: Array) -> Array:
        """All residual states $h_0, \\dots, h_L$, shape `(depth + 1, width)`."""
        return self.states_from(self.lift_input(_check_vector(x, self.in_size)))

    def __call__(self, x: Array) -> Array:
        return self.read(self.hidden_states(x)[-1])


class ResNet(AbstractResidualNetwork):
    r"""A residual network $h_{l+1} = h_l + \delta f(h_l, \theta_l)$, $l = 0, \dots, L-1$.

    The explicit Euler scheme of the neural ODE $h' = f(h, \theta(t))$ with step $\delta$, with the
    same lift and readout vocabulary as [`NeuralODE`][]. The layers run in one `lax.scan`
    (compile time independent of the depth).

    **Arguments:**

    - `width`: the width $m$ of the residual stream; `depth`: the number $L$ of layers.
    - `key`: initialisation key (not needed when `layers` is given).
    - `in_size`, `out_size`: add a random affine lift $\mathbb{R}^d \to \mathbb{R}^m$ / readout
      $\mathbb{R}^m \to \mathbb{R}^q$; or pass `lift` / `readout` explicitly (`None` = identity).
    - `activation`: $\sigma$ in the default blocks $f(h) = \sigma(W_l h + b_l)$.
    - `delta`: the step $\delta$ (default $1/L$, so the depth plays the role of $T = 1$).
    - `layers`: your own residual functions: one callable module `layer(h)` whose array leaves
      carry a leading axis of length `depth` (build tied copies with [`jaxdyn.models.tie`][]).

    **Example:**

    ```python
    net = ResNet(4, 16, in_size=2, out_size=1, key=jax.random.key(0))
    net(jnp.ones(2)).shape   # (1,)
    ```
    """

    layers: Any
    lift: Affine | None
    readout: Affine | None
    delta: float = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(self, width: int, depth: int, *, key: Key | None = None,
                 in_size: int | None = None, out_size: int | None = None, lift=None,
                 readout=None, activation: Callable = jnp.tanh, delta: float | None = None,
                 layers: Any = None):
        width = check_int(width, "width")
        depth = check_int(depth, "depth")
        self.lift, self.readout, layer_key = _lift_and_readout(
            width, key, lift=lift, readout=readout, in_size=in_size, out_size=out_size)
        if layers is None:
            if key is None:
                raise ValueError("`key` is required unless `layers` is given.")
            layers = _stacked_blocks(width, depth, activation, layer_key)
        else:
            leaves = [a for a in jax.tree_util.tree_leaves(layers) if eqx.is_array(a)]
            if not leaves or any(a.ndim == 0 or a.shape[0] != depth for a in leaves):
                raise ValueError(
                    f"`layers` must have a leading axis of length depth={depth} on every array."
                )
        self.layers = layers
        self.width = width
        self.depth = depth
        self.delta = _delta(delta, depth)

    def states_from(self, h0: Array) -> Array:
        """The residual states $h_0, \\dots, h_L$ from a given $h_0$ (after the lift)."""
        params, static = eqx.partition(self.layers, eqx.is_array)

        def step(h, p):
            layer = eqx.combine(p, static)
            h = h + self.delta * layer(h)
            return h, h

        _, hs = lax.scan(step, h0, params)
        return jnp.concatenate([h0[None], hs])


def _delta(delta, depth: int) -> float:
    if delta is None:
        return 1.0 / depth
    check_positive(delta, "delta")
    return float(delta)


def _make_affine(value, size, width, key, name, size_name, *, into: bool):
    if value is not None and size is not None:
        raise ValueError(f"Give either `{name}` or `{size_name}`, not both.")
    if size is None:
        return as_affine(value, name)
    if key is None:
        raise ValueError(f"`key` is required to initialise a random {name} from `{size_name}`.")
    size = check_int(size, size_name)
    lin = eqx.nn.Linear(size, width, key=key) if into else eqx.nn.Linear(width, size, key=key)
    return Affine(lin.weight, lin.bias)


class DenseResNet(AbstractResidualNetwork):
    r"""A ResNet with shortcuts to all earlier layers,
    $h_{l+1} = h_l + \delta\,\sigma\big(\sum_{j \le l} W_{l j} h_j + b_l\big)$.

    The dense connections give each layer a memory of the whole past; sparse choices of the
    $W_{lj}$ (e.g. only $j = l$ and $j = l - k$) give the Euler scheme of a neural delay equation
    $h'(t) = f(h(t), h(t - k\delta))$, its infinite-depth limit. The past states are kept in a
    fixed buffer inside one `lax.scan`; $W_{lj}$ for $j > l$ are masked out.

    **Arguments:** as [`ResNet`][]; `weights` of shape `(depth, depth, width, width)` and
    `biases` `(depth, width)` may be given instead of a `key` (the mask is applied on use).
    """

    weights: Array
    biases: Array
    lift: Affine | None
    readout: Affine | None
    activation: Callable = eqx.field(static=True)
    delta: float = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(self, width: int, depth: int, *, key: Key | None = None,
                 in_size: int | None = None, out_size: int | None = None, lift=None,
                 readout=None, activation: Callable = jnp.tanh, delta: float | None = None,
                 weights=None, biases=None):
        width = check_int(width, "width")
        depth = check_int(depth, "depth")
        self.lift, self.readout, weight_key = _lift_and_readout(
            width, key, lift=lift, readout=readout, in_size=in_size, out_size=out_size)
        if weights is None:
            if key is None:
                raise ValueError("`key` is required unless `weights` is given.")
            wkey, bkey = jax.random.split(weight_key)
            # fan-in of layer l is (l + 1) * width: scale each layer's block accordingly
            fan_in = (jnp.arange(depth) + 1.0)[:, None, None, None] * width
            lim = 1.0 / jnp.sqrt(fan_in)
            weights = jax.random.uniform(wkey, (depth, depth, width, width), minval=-1.0,
                                         maxval=1.0) * lim
            biases = jax.random.uniform(bkey, (depth, width), minval=-1.0, maxval=1.0) / jnp.sqrt(
                float(width))
        weights = jnp.asarray(weights)
        biases = jnp.zeros((depth, width), weights.dtype) if biases is None else jnp.asarray(biases)
        if weights.shape != (depth, depth, width, width):
            raise ValueError(
                f"`weights` must have shape {(depth, depth, width, width)}, got {weights.shape}."
            )
        if biases.shape != (depth, width):
            raise ValueError(f"`biases` must have shape {(depth, width)}, got {biases.shape}.")
        self.weights = weights
        self.biases = biases
        if is_concrete(weights) and is_concrete(biases):
            check_finite(weights, "weights")
            check_finite(biases, "biases")
        self.activation = activation
        self.width = width
        self.depth = depth
        self.delta = _delta(delta, depth)

    def states_from(self, h0: Array) -> Array:
        """The states $h_0, \\dots, h_L$ from a given residual state $h_0$ (after the lift)."""
        L = self.depth
        buffer = jnp.zeros((L + 1, self.width), h0.dtype).at[0].set(h0)
        past = jnp.arange(L)

        def step(buf, inputs):
            l, W_l, b_l = inputs
            mask = (past <= l).astype(buf.dtype)[:, None, None]
            pre = jnp.einsum("jab,jb->a", W_l * mask, buf[:L]) + b_l
            h_next = buf[l] + self.delta * self.activation(pre)
            return buf.at[l + 1].set(h_next), None

        buffer, _ = lax.scan(step, buffer, (past, self.weights, self.biases))
        return buffer


class MLP(eqx.Module):
    r"""A multilayer perceptron $h_{l+1} = \sigma(W_l h_l + b_l)$ described by its width profile.

    `widths = (n_0, n_1, ..., n_L)`: input $n_0$, hidden widths, output $n_L$ (the last layer is
    affine, without activation). This is the vocabulary of [`architecture_class`][]: the MLP is
    non-augmented iff $n_0 \ge n_1 \ge \dots \ge n_L$.
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable = eqx.field(static=True)
    widths: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, widths: Sequence[int], *, key: Key, activation: Callable = jnp.tanh):
        if isinstance(widths, str) or not isinstance(widths, Sequence | np.ndarray):
            raise TypeError(f"`widths` must be a sequence of ints (n_0, ..., n_L), got {widths!r}.")
        widths = tuple(check_int(int(w) if isinstance(w, np.integer) else w, "widths")
                       for w in widths)
        if len(widths) < 2:
            raise ValueError(f"`widths` needs at least input and output sizes, got {widths}.")
        keys = jax.random.split(key, len(widths) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k)
                            for a, b, k in zip(widths[:-1], widths[1:], keys, strict=True))
        self.activation = activation
        self.widths = widths

    @property
    def in_size(self) -> int:
        return self.widths[0]

    @property
    def out_size(self) -> int:
        return self.widths[-1]

    def __call__(self, x: Array) -> Array:
        h = _check_vector(x, self.in_size)
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)
