"""Gradient checks for SGD as a random dynamical system, against central differences of the same
function (float64, five-point stencil, 1e-6 relative).

- `gd_exponent`: $d\\mu/d\\eta = -h_j/(1 - \\eta h_j)$ (closed form), forward and reverse, jit, vmap.
  (`sgd_lyapunov` is checked under jit only: vmapping its derivative would compile the whole
  pipeline once more for no new path.)
- `sgd_lyapunov` with $B = n$ (deterministic: the exact exponent): the same closed form.
- `sgd_lyapunov` with $B < n$: the pathwise derivative of the finite-$N$ estimate at fixed draws
  (same `key`), which is what its docstring documents; against differences of the same estimate.
- `mean_square_bound`: $d/d\\eta$ of $\\tfrac12\\log\\rho(\\mathbb E[B\\otimes B])$ (dense path).
- With respect to `params` the exponent is not defined (the normal space is computed eagerly):
  `jax.grad` raises a `ValueError` naming `params`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.training import gd_exponent, mean_square_bound, normal_space, sgd_lyapunov
from tests.helpers import check_gradient

KEY = jax.random.key(0)
X = jnp.array([[1.0, 0.2], [0.3, 1.2], [-0.5, 0.9]])
THETA = jnp.array([0.3, -0.2])
DATA = (X, X @ THETA)
RUN = dict(key=KEY, n_steps=100, n_chains=2, transient_steps=0, mean_square=False)


def loss(theta, ex):
    x, y = ex
    return 0.5 * (jnp.dot(x, theta) - y) ** 2


@pytest.fixture(scope="module")
def space():
    return normal_space(loss, THETA, DATA)


def closed_form(space, lr):
    h = np.asarray(space.eigenvalues)
    j = np.argmax(np.abs(1 - lr * h))
    return -h[j] / (1 - lr * h[j])


def test_gd_exponent(space):
    lrs = jnp.array([0.3, 0.9, 1.6])  # GD stable, near the boundary, unstable (1 - eta h < 0)
    f = jax.jit(lambda lr: gd_exponent(space, lr))
    for lr in lrs:
        check_gradient(f, lr, key=KEY, n_dirs=1)
        assert float(jax.grad(f)(lr)) == pytest.approx(closed_form(space, float(lr)), rel=1e-12)
    batched = jax.vmap(jax.grad(f))(lrs)
    np.testing.assert_allclose(batched, [closed_form(space, float(lr)) for lr in lrs], rtol=1e-12)


def test_sgd_exponent_in_lr(space):
    """B = n (deterministic, the exact exponent: its derivative is d mu / d eta) and B = 1 (the
    pathwise derivative of the estimate at fixed draws, the documented meaning), in one compiled
    function; forward and reverse mode, under jit (vmap: `test_gd_exponent`; one compile fewer)."""

    def both(lr):
        kw = dict(lr=lr, normal_space=space, **RUN)
        return (sgd_lyapunov(loss, THETA, DATA, batch_size=1, **kw).exponent,
                sgd_lyapunov(loss, THETA, DATA, batch_size=3, gd_control=False, **kw).exponent)

    f = jax.jit(both)
    lr = jnp.asarray(0.4)
    check_gradient(f, lr, key=KEY, n_dirs=1)
    _, (d_sampled, d_exact) = jax.jvp(f, (lr,), (jnp.ones_like(lr),))
    assert float(d_exact) == pytest.approx(closed_form(space, 0.4), rel=1e-10)
    assert np.isfinite(float(d_sampled)) and float(d_sampled) != float(d_exact)


def test_mean_square_bound_in_lr(space):
    f = jax.jit(lambda lr: mean_square_bound(space, lr, 2)[0])
    check_gradient(f, jnp.asarray(0.7), key=KEY, n_dirs=1)


def test_no_derivative_with_respect_to_params(space):
    with pytest.raises(ValueError, match="not differentiable with respect to `params`"):
        jax.grad(lambda p: sgd_lyapunov(loss, p, DATA, lr=0.4, batch_size=1, normal_space=space,
                                        **RUN).exponent)(THETA)
    with pytest.raises(ValueError, match="`params`"):  # nor through a freshly computed normal space
        jax.grad(lambda p: sgd_lyapunov(loss, p, DATA, lr=0.4, batch_size=1, **RUN).exponent)(THETA)
