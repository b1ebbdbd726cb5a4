"""The problem of the `edge-of-stability` experiment and notebook 04 (Cohen et al., arXiv
2103.00065): scikit-learn's bundled 8x8 digits, standardised, a fully connected tanh network, MSE
on one-hot targets and the accuracy. Fixtures of the experiments, not part of `jaxdyn.training`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._types import Array


def digits_data(n: int = 1000, *, seed: int = 0, dtype=None) -> tuple[Array, Array]:
    """scikit-learn's bundled digits (no download): `n` samples drawn without replacement with
    `seed`, every pixel standardised to mean 0 and variance 1 over these samples (constant pixels
    become 0), and one-hot targets.

    **Returns:** `(xs, ys)` of shapes `(n, 64)` and `(n, 10)` (dtype: JAX's default float unless
    given). Needs scikit-learn.
    """
    n = check_int(n, "n")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dev dependency
        raise ImportError("`digits_data` needs scikit-learn (pip install scikit-learn).") from err
    x, y = load_digits(return_X_y=True)
    if n > x.shape[0]:
        raise ValueError(f"`n` must be at most {x.shape[0]}, got {n}.")
    idx = np.random.default_rng(seed).permutation(x.shape[0])[:n]
    x = x[idx].astype(np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jnp.asarray(x, dtype), jnp.asarray(np.eye(10)[y[idx]], dtype)


def tanh_mlp(in_size: int = 64, width: int = 200, depth: int = 2, out_size: int = 10, *, key,
             dtype=None) -> eqx.nn.MLP:
    """A fully connected tanh network `in_size - width x depth - out_size` (Equinox's default
    initialisation): 64-200-200-10 by default, Cohen et al.'s fc-tanh on digits."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return eqx.nn.MLP(in_size, out_size, width, depth, activation=jnp.tanh, key=key, dtype=dtype)


def mse_onehot(model, xs: Array, ys: Array) -> Array:
    r"""$\frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2$ (Cohen et al.'s MSE on one-hot targets)."""
    pred = jax.vmap(model)(xs)
    return 0.5 * jnp.mean(jnp.sum((pred - ys) ** 2, axis=-1))


def onehot_accuracy(model, xs: Array, ys: Array) -> Array:
    """The fraction of samples whose largest output is the target class."""
    pred = jax.vmap(model)(xs)
    return jnp.mean(jnp.argmax(pred, axis=-1) == jnp.argmax(ys, axis=-1))
