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

# the non-commuting problem of tests/test_training_sgd.py: the forward evaluations (finite
# differences) reuse the program compiled for `test_non_commuting_below_mean_square_bound`
from tests.test_training_sgd import KEY, RUN, THETA2 as THETA, X2, lsq_data, lsq_loss as loss

DATA = lsq_data(X2, THETA)


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


def test_sampled_exponents_in_lr():
    """B < n: the pathwise derivative of the estimate at fixed draws (the documented meaning), both
    exponents, reverse mode (the entry point is jitted inside). Forward mode through the same
    pipeline is checked at B = n below (one compile of the derivative program per mode and batch
    size costs about 4 s: the test budget keeps one of each)."""
    f = lambda lr: sgd_lyapunov(loss, THETA, DATA, lr=lr, batch_size=2, key=KEY, k=2,  # noqa: E731
                                **RUN).exponents
    check_gradient(f, jnp.asarray(0.5), key=KEY, n_dirs=1, modes=("rev",))  # well-conditioned batches


def test_full_batch_exponent_is_exact_in_lr(space):
    """B = n: the exact exponent, so its derivative is d mu / d eta (forward mode under jit)."""
    f = jax.jit(lambda lr: sgd_lyapunov(loss, THETA, DATA, lr=lr, batch_size=3, key=KEY,
                                        normal_space=space, n_steps=10, n_chains=2,
                                        mean_square=False, gd_control=False).exponent)
    lr = jnp.asarray(0.4)
    _, d = jax.jvp(f, (lr,), (jnp.ones_like(lr),))
    assert float(d) == pytest.approx(closed_form(space, 0.4), rel=1e-10)
    assert float(f(lr)) == pytest.approx(float(gd_exponent(space, lr)), rel=1e-12)


def test_mean_square_bound_in_lr(space):
    f = jax.jit(lambda lr: mean_square_bound(space, lr, 2)[0])
    check_gradient(f, jnp.asarray(0.7), key=KEY, n_dirs=1)


def test_no_derivative_with_respect_to_params(space):
    with pytest.raises(ValueError, match="not differentiable with respect to `params`"):
        jax.grad(lambda p: sgd_lyapunov(loss, p, DATA, lr=0.4, batch_size=1, normal_space=space, key=KEY,
                                        **RUN).exponent)(THETA)
    with pytest.raises(ValueError, match="`params`"):  # nor through a freshly computed normal space
        jax.grad(lambda p: sgd_lyapunov(loss, p, DATA, lr=0.4, batch_size=1, key=KEY, **RUN).exponent)(THETA)
