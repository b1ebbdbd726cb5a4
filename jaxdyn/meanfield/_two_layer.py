r"""Two-layer networks as interacting particle systems (mean-field scaling).

$f(x) = \frac1N \sum_{i=1}^N a_i \sigma(w_i \cdot x)$ with particles $\theta_i = (a_i, w_i)$. For the
loss $L = \frac1{2n}\sum_k (f(x_k) - y_k)^2$, $\nabla_{\theta_i} L = O(1/N)$, so gradient descent with
the per-particle step $\eta N$ (equivalently gradient flow $\dot\theta_i = -N \nabla_{\theta_i} L$) is
the interacting particle system
$\dot\theta_i = -\nabla_\theta \Psi(\theta_i; \rho_N)$, $\Psi(\theta; \rho) = \frac1n\sum_k
(f_\rho(x_k) - y_k)\, a\, \sigma(w \cdot x_k)$, whose empirical measure $\rho_N$ has a mean-field
limit as $N \to \infty$ (Mei-Montanari-Nguyen 2018; Chizat-Bach 2018; Rotskoff-Vanden-Eijnden 2018):
the loss curves converge as $N$ grows.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._checks import check_int


class TwoLayer(eqx.Module):
    r"""$f(x) = \frac1N \sum_i a_i \sigma(w_i \cdot x)$; `a` shape `(N,)`, `w` shape `(N, d)`."""

    a: Array
    w: Array
    activation: Callable = eqx.field(static=True)

    def __init__(self, a, w, activation=jnp.tanh):
        self.a, self.w, self.activation = jnp.asarray(a, float), jnp.asarray(w, float), activation
        if self.w.ndim != 2 or self.a.shape != (self.w.shape[0],):
            raise ValueError(f"`a` must have shape (N,) and `w` (N, d), got {self.a.shape}, {self.w.shape}.")

    @classmethod
    def init(cls, n_particles: int, dim: int, *, key, activation=jnp.tanh) -> "TwoLayer":
        r"""i.i.d. particles $a_i \sim N(0, 1)$, $w_i \sim N(0, I/d)$ (an $N$-independent law)."""
        n = check_int(n_particles, "n_particles")
        d = check_int(dim, "dim")
        ka, kw = jax.random.split(key)
        return cls(jax.random.normal(ka, (n,)), jax.random.normal(kw, (n, d)) / jnp.sqrt(d), activation)

    def __call__(self, x):
        """$f(x)$ for `x` of shape `(d,)` or `(n, d)`."""
        return self.activation(jnp.asarray(x) @ self.w.T) @ self.a / self.a.shape[0]


def mse(model: TwoLayer, x, y) -> Array:
    r"""$\frac1{2n}\sum_k (f(x_k) - y_k)^2$."""
    return 0.5 * jnp.mean((model(x) - y) ** 2)


class TwoLayerGradientFlow(eqx.Module):
    r"""The mean-field gradient flow $\dot\theta_i = -N \nabla_{\theta_i} L$ as a diffrax vector field on
    a [`TwoLayer`][]; `args = (x, y)`."""

    def __call__(self, t, model, args):
        x, y = args
        n = model.a.shape[0]
        grads = eqx.filter_grad(mse)(model, x, y)
        return jax.tree_util.tree_map(lambda g: -n * g, grads)


class TwoLayerResult(eqx.Module):
    """Result of [`two_layer_gd`][]: `losses` (steps + 1,) and the trained `model`."""

    losses: Array
    model: TwoLayer


@eqx.filter_jit
def _gd(model, x, y, lr, steps):
    n = model.a.shape[0]

    def step(m, _):
        loss, g = eqx.filter_value_and_grad(mse)(m, x, y)
        m = jax.tree_util.tree_map(lambda p, q: p - lr * n * q, m, g)
        return m, loss

    model, losses = jax.lax.scan(step, model, None, length=steps)
    return TwoLayerResult(jnp.append(losses, mse(model, x, y)), model)


def two_layer_gd(model: TwoLayer, x, y, *, steps: int, lr: float) -> TwoLayerResult:
    r"""Gradient descent in mean-field scaling: $\theta_i \leftarrow \theta_i - \eta N \nabla_{\theta_i} L$.

    **Arguments:** `model` (a [`TwoLayer`][], e.g. `TwoLayer.init(N, d, key=key)`), data `x` `(n, d)`,
    `y` `(n,)`, `steps`, `lr` ($\eta$: the step of the limiting dynamics, independent of $N$).

    **Returns:** a [`TwoLayerResult`][] with the loss before every step and after the last.
    """
    steps = check_int(steps, "steps")
    x, y = jnp.asarray(x, float), jnp.asarray(y, float)
    if x.ndim != 2 or x.shape[1] != model.w.shape[1] or y.shape != (x.shape[0],):
        raise ValueError(f"`x` must have shape (n, {model.w.shape[1]}) and `y` shape (n,), got {x.shape}, "
                         f"{y.shape}.")
    return _gd(model, x, y, jnp.asarray(lr, float), steps)
