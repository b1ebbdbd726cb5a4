"""ResNet, DenseResNet and MLP: the discrete counterparts, and the width-profile vocabulary."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st

from jaxdyn.models import (
    MLP,
    Affine,
    DenseResNet,
    LinearField,
    MLPField,
    NeuralODE,
    ResNet,
    architecture_class,
    has_bottleneck,
    random_affine,
    tie,
    width_profile,
)


def _linear_layers(A, depth):
    lin = eqx.nn.Linear(A.shape[0], A.shape[0], use_bias=False, key=jax.random.key(0))
    lin = eqx.tree_at(lambda l: l.weight, lin, A)
    return tie(lin, depth)


def test_resnet_converges_to_expm_with_order_one():
    A = jax.random.normal(jax.random.key(11), (4, 4)) / 2
    x = jax.random.normal(jax.random.key(12), (4,))
    T = 1.0
    exact = scipy.linalg.expm(T * np.asarray(A)) @ np.asarray(x)
    depths = np.array([16, 32, 64, 128, 256])
    errors = []
    for L in depths:
        net = ResNet(4, int(L), layers=_linear_layers(A, int(L)), delta=T / L)
        errors.append(np.linalg.norm(np.asarray(net(x)) - exact))
        # h_L is exactly (I + delta A)^L x
        np.testing.assert_allclose(net(x), np.linalg.matrix_power(np.eye(4) + A / L, L) @ x,
                                   rtol=1e-10)
    slope = np.polyfit(np.log(depths), np.log(errors), 1)[0]
    assert abs(slope - (-1.0)) < 0.2, slope
    assert errors[-1] < 1e-2


def test_resnet_default_blocks_match_loop(getkey):
    net = ResNet(3, 5, in_size=2, out_size=1, key=getkey(), delta=0.3)
    x = jnp.array([0.4, -1.0])
    h = net.lift(x)
    for l in range(5):
        W, b = net.layers.weight[l], net.layers.bias[l]
        h = h + 0.3 * jnp.tanh(W @ h + b)
    np.testing.assert_allclose(net(x), net.readout(h), rtol=1e-12)
    assert net.hidden_states(x).shape == (6, 3)
    assert width_profile(net) == (2, 3, 3, 3, 3, 3, 3, 1)
    xs = jax.random.normal(getkey(), (4, 2))
    np.testing.assert_allclose(jax.vmap(net)(xs), jnp.stack([net(x) for x in xs]), rtol=1e-12)


def test_resnet_euler_of_neural_ode(getkey):
    """A weight-tied ResNet of an autonomous field is Euler's method for the NeuralODE."""
    field = MLPField(2, 8, 1, key=getkey())

    class Block(eqx.Module):
        f: MLPField

        def __call__(self, h):
            return self.f(0.0, h, None)

    L = 64
    net = ResNet(2, L, layers=tie(Block(field), L), delta=1.0 / L)
    euler = NeuralODE(field, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(),
                      dt0=1.0 / L)
    x = jnp.array([0.3, 0.1])
    np.testing.assert_allclose(net(x), euler(x), rtol=1e-10)


def test_dense_resnet_matches_reference(getkey):
    m, L = 3, 6
    net = DenseResNet(m, L, in_size=2, out_size=2, key=getkey(), delta=0.5)
    x = jnp.array([0.2, -0.7])
    hs = [net.lift(x)]
    for l in range(L):
        pre = sum(net.weights[l, j] @ hs[j] for j in range(l + 1)) + net.biases[l]
        hs.append(hs[l] + 0.5 * jnp.tanh(pre))
    np.testing.assert_allclose(net.hidden_states(x), jnp.stack(hs), rtol=1e-12)
    np.testing.assert_allclose(net(x), net.readout(hs[-1]), rtol=1e-12)
    # entries above the diagonal (j > l) are ignored
    noisy = eqx.tree_at(lambda n: n.weights, net,
                        net.weights + jnp.triu(jnp.ones((L, L)), 1)[:, :, None, None])
    np.testing.assert_allclose(noisy(x), net(x), rtol=1e-12)


def test_dense_resnet_with_one_shortcut_is_a_delay_scheme():
    """Only W_{l,l} and W_{l,l-k}: the Euler scheme of h' = tanh(a h(t) + b h(t - k delta))."""
    m, L, k, a, b = 1, 20, 4, -0.5, 0.8
    W = np.zeros((L, L, m, m))
    for l in range(L):
        W[l, l] = a
        W[l, max(l - k, 0)] += b if l - k >= 0 else 0.0
    net = DenseResNet(m, L, weights=jnp.asarray(W), delta=0.1)
    h = [0.5]
    for l in range(L):
        delayed = h[l - k] if l - k >= 0 else 0.0
        h.append(h[l] + 0.1 * np.tanh(a * h[l] + b * delayed))
    np.testing.assert_allclose(net(jnp.array([0.5])), [h[-1]], rtol=1e-12)


def test_mlp_matches_manual(getkey):
    mlp = MLP((3, 5, 4, 2), key=getkey(), activation=jax.nn.relu)
    x = jnp.array([1.0, -2.0, 0.5])
    h = jax.nn.relu(mlp.layers[0].weight @ x + mlp.layers[0].bias)
    h = jax.nn.relu(mlp.layers[1].weight @ h + mlp.layers[1].bias)
    np.testing.assert_allclose(mlp(x), mlp.layers[2].weight @ h + mlp.layers[2].bias, rtol=1e-12)


class TestArchitectureClass:
    def test_mlps(self, getkey):
        assert architecture_class(MLP((4, 4, 3, 1), key=getkey())) == "non-augmented"
        assert architecture_class(MLP((2, 5, 1), key=getkey())) == "augmented"
        assert not has_bottleneck(MLP((4, 4, 3, 1), key=getkey()))
        assert has_bottleneck(MLP((4, 2, 3, 1), key=getkey()))
        assert not has_bottleneck(MLP((2, 5, 1), key=getkey()))
        assert has_bottleneck(MLP((4, 2, 2, 3), key=getkey()))  # a plateau of two layers
        assert not has_bottleneck(MLP((2, 2, 3, 1), key=getkey()))  # the plateau holds the input
        assert architecture_class(eqx.nn.MLP(3, 1, 2, 2, key=getkey())) == "non-augmented"
        assert architecture_class(eqx.nn.MLP(3, 1, 8, 2, key=getkey())) == "augmented"

    def test_resnets(self, getkey):
        assert architecture_class(ResNet(2, 3, in_size=2, out_size=1, key=getkey())) == (
            "non-augmented")
        assert architecture_class(ResNet(3, 3, in_size=2, out_size=1, key=getkey())) == "augmented"
        assert architecture_class(DenseResNet(4, 2, in_size=2, key=getkey())) == "augmented"
        # widths (3, 2, 2, 2, 3): the width-2 residual stream is one plateau narrower than both ends
        assert has_bottleneck(ResNet(2, 2, in_size=3, out_size=3, key=getkey()))
        assert not has_bottleneck(ResNet(2, 2, in_size=3, out_size=1, key=getkey()))
        assert not has_bottleneck(ResNet(3, 2, in_size=2, out_size=3, key=getkey()))

    def test_neural_odes(self, getkey):
        f2 = MLPField(2, 4, 1, key=getkey())
        assert architecture_class(NeuralODE(f2)) == "non-augmented"
        assert architecture_class(NeuralODE(f2, lift=random_affine(3, 2, key=getkey()))) == (
            "non-augmented")
        assert architecture_class(NeuralODE(f2, lift=random_affine(1, 2, key=getkey()))) == (
            "augmented")
        rank_deficient = Affine(jnp.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))
        assert architecture_class(NeuralODE(f2, lift=rank_deficient)) == "augmented"
        assert architecture_class(NeuralODE(LinearField(jnp.eye(3)),
                                             lift=random_affine(1, 3, key=getkey()),
                                             readout=random_affine(3, 1, key=getkey()))) == (
            "augmented")
        assert width_profile(NeuralODE(f2, readout=random_affine(2, 1, key=getkey()))) == (2, 2, 1)
        assert has_bottleneck(NeuralODE(MLPField(1, 4, 1, key=getkey()),
                                         lift=random_affine(2, 1, key=getkey()),
                                         readout=random_affine(1, 2, key=getkey())))

    def test_unknown_model(self):
        with pytest.raises(TypeError, match="`model`"):
            architecture_class(lambda x: x)


class TestBadInput:
    def test_resnet(self, getkey):
        with pytest.raises(ValueError, match="`layers`"):
            ResNet(2, 4, layers=tie(eqx.nn.Linear(2, 2, key=getkey()), 3))
        with pytest.raises(ValueError, match="`key`"):
            ResNet(2, 4)
        with pytest.raises(ValueError, match="`lift`"):
            ResNet(2, 4, key=getkey(), lift=random_affine(2, 3, key=getkey()))
        with pytest.raises(ValueError, match="`x`"):
            ResNet(2, 4, key=getkey())(jnp.ones(3))
        with pytest.raises(TypeError, match="`depth`"):
            ResNet(2, 4.0, key=getkey())

    def test_dense_and_mlp(self, getkey):
        with pytest.raises(ValueError, match="`weights`"):
            DenseResNet(2, 3, weights=jnp.zeros((3, 3, 2, 3)))
        with pytest.raises(ValueError, match="`x`"):
            MLP((2, 3, 1), key=getkey())(jnp.array([jnp.nan, 1.0]))
        with pytest.raises(ValueError, match="`widths`"):
            MLP((2,), key=getkey())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=6))
def test_width_profile_vocabulary(widths):
    """architecture_class and has_bottleneck agree with their definitions on random profiles."""
    mlp = MLP(widths, key=jax.random.key(0))
    assert width_profile(mlp) == tuple(widths)
    increasing = any(b > a for a, b in zip(widths[:-1], widths[1:]))
    assert architecture_class(mlp) == ("augmented" if increasing else "non-augmented")
    # brute force: a plateau widths[i..j] of hidden layers narrower than both outer neighbours
    n = len(widths)
    brute = any(
        len(set(widths[i : j + 1])) == 1 and widths[i] < widths[i - 1] and widths[i] < widths[j + 1]
        for i in range(1, n - 1)
        for j in range(i, n - 1)
    )
    assert has_bottleneck(mlp) == brute


def test_missing_key_is_named(getkey):
    layers = tie(eqx.nn.Linear(3, 3, key=getkey()), 4)
    with pytest.raises(ValueError, match="`key`"):
        ResNet(3, 4, layers=layers, in_size=2)
    with pytest.raises(ValueError, match="`key`"):
        DenseResNet(3, 2, weights=jnp.zeros((2, 2, 3, 3)), out_size=1)
