"""Vanishing/exploding gradients as Lyapunov exponents, and the order-to-chaos transition."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.lyapunov import network_spectrum, order_to_chaos, signal_propagation
from jaxdyn.models import MLP, DenseResNet, ResNet, tie


def _orthogonal(key, n):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n)))
    return q * jnp.sign(jnp.diagonal(r))


@pytest.mark.parametrize("s", [0.7, 1.0, 1.3])
def test_scaled_orthogonal_layers(s):
    n, L = 6, 30
    mats = [s * _orthogonal(jax.random.key(i), n) for i in range(L)]
    layers = [lambda h, M=M: M @ h for M in mats]
    res = network_spectrum(layers, jnp.ones(n))
    np.testing.assert_allclose(res.exponents, np.full(n, np.log(s)), atol=1e-12)
    assert res.history.shape == (L, n)


def _qr_exponents(P, L):
    """Benettin exponents of a finite product from the identity start: log |diag R(P)| / L."""
    return np.sort(np.log(np.abs(np.diagonal(np.linalg.qr(np.asarray(P))[1]))) / L)[::-1]


def test_identity_activation_mlp_equals_product_qr(getkey):
    mlp = MLP((5, 5, 5, 5, 5), key=getkey(), activation=lambda x: x)
    res = network_spectrum(mlp, jnp.ones(5), include_readout=True)
    P = np.eye(5)
    for lin in mlp.layers:
        P = np.asarray(lin.weight) @ P
    np.testing.assert_allclose(res.exponents, _qr_exponents(P, 4), rtol=1e-10)
    np.testing.assert_allclose(res.exponents.sum(), np.log(abs(np.linalg.det(P))) / 4, rtol=1e-10)
    # widths that shrink: k is limited by the narrowest layer
    narrow = MLP((6, 4, 3, 3), key=getkey())
    assert network_spectrum(narrow, jnp.ones(6)).exponents.shape == (3,)
    with pytest.raises(ValueError, match="`k`"):
        network_spectrum(narrow, jnp.ones(6), k=5)


def test_resnet_and_dense_resnet(getkey):
    A = jax.random.normal(getkey(), (3, 3)) / 3
    L = 50
    lin = eqx.tree_at(lambda l: l.weight, eqx.nn.Linear(3, 3, use_bias=False, key=getkey()), A)
    net = ResNet(3, L, layers=tie(lin, L), delta=0.1)
    res = network_spectrum(net, jnp.ones(3))
    P = np.linalg.matrix_power(np.eye(3) + 0.1 * np.asarray(A), L)
    np.testing.assert_allclose(res.exponents, _qr_exponents(P, L), rtol=1e-9)
    dense = DenseResNet(3, 6, key=getkey(), in_size=2)
    x = jnp.array([0.3, -0.2])
    out = network_spectrum(dense, x)
    J = jax.jacfwd(lambda h: _dense_final(dense, h))(dense.lift(x))
    np.testing.assert_allclose(out.exponents, _qr_exponents(J, 6), rtol=1e-9)


def _dense_final(net, h0):
    # the hidden states starting from a given h0 (bypassing the lift)
    no_lift = eqx.tree_at(lambda n: n.lift, net, None, is_leaf=lambda x: x is None)
    return no_lift.hidden_states(h0)[-1]


def test_signal_propagation_known_values():
    sp = signal_propagation(1.761, 0.05)
    assert abs(float(sp.chi_1) - 1.0) < 1e-3
    # vmap over a grid; chi_1 increases with sigma_w^2 at fixed sigma_b^2
    grid = jax.vmap(lambda a: signal_propagation(a, 0.05).chi_1)(jnp.linspace(1.0, 3.0, 5))
    assert bool(jnp.all(jnp.diff(grid) > 0))
    # sigma_b = 0, sigma_w^2 < 1: q* = 0 and chi_1 = sigma_w^2
    np.testing.assert_allclose(signal_propagation(0.8, 0.0).chi_1, 0.8, atol=1e-6)


@pytest.mark.slow
def test_order_to_chaos_crossing():
    sw = jnp.round(jnp.arange(1.4, 2.25, 0.1), 10)
    diagram = order_to_chaos(sw, 0.05, key=jax.random.key(0), width=256, depth=400, n_seeds=4)
    mf = float(diagram.critical_sigma_w2("mean_field")[0])
    emp = float(diagram.critical_sigma_w2("empirical")[0])
    print(f"chi_1 = 1 at sigma_w^2 = {mf:.4f}; empirical crossing {emp:.4f} (shift {emp - mf:+.4f})")
    assert abs(mf - 1.761) < 5e-3
    assert abs(emp - mf) < 0.1  # within one grid step
    # the empirical exponents follow the mean-field (1/2) log chi_1 closely at width 256
    np.testing.assert_allclose(diagram.lambda_1, diagram.lambda_mean_field, atol=0.01)
