"""The universal embedding, critical points and Morse indices."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.models import NeuralODE, architecture_class, critical_points, embed

PSI_SCALAR = lambda x: x[0] ** 2 + x[1] ** 2
PSI_VECTOR = lambda x: jnp.array([jnp.sin(x[0]) * x[1], jnp.exp(-x[0] ** 2), x[0] - x[1] ** 3])


@pytest.fixture(scope="module")
def points():
    return jax.random.uniform(jax.random.key(3), (1000, 2), minval=-2.0, maxval=2.0)


@pytest.fixture(scope="module")
def scalar_model():
    return embed(PSI_SCALAR, 2, 1)


def test_embed_scalar(scalar_model, points):
    assert isinstance(scalar_model, NeuralODE)
    assert (scalar_model.in_size, scalar_model.state_size, scalar_model.out_size) == (2, 3, 1)
    assert architecture_class(scalar_model) == "augmented"
    out = jax.jit(jax.vmap(scalar_model))(points)
    assert out.shape == (1000, 1)
    assert float(jnp.max(jnp.abs(out[:, 0] - jax.vmap(PSI_SCALAR)(points)))) <= 1e-6


def test_embed_vector_valued(points):
    model = embed(PSI_VECTOR, 2, 3)
    assert model.state_size == 5
    out = jax.jit(jax.vmap(model))(points)
    assert float(jnp.max(jnp.abs(out - jax.vmap(PSI_VECTOR)(points)))) <= 1e-6


def test_embed_other_solver(points):
    model = embed(PSI_VECTOR, 2, 3, solver=diffrax.Heun(),
                  stepsize_controller=diffrax.ConstantStepSize(), dt0=0.5)
    out = jax.vmap(model)(points[:50])
    assert float(jnp.max(jnp.abs(out - jax.vmap(PSI_VECTOR)(points[:50])))) <= 1e-6


def test_critical_points_of_the_embedded_map(scalar_model):
    res = critical_points(scalar_model, -jnp.ones(2), jnp.ones(2), key=jax.random.key(0),
                          n_starts=8, n_steps=20)
    assert res.n_points == 1
    np.testing.assert_allclose(res.points[0], [0.0, 0.0], atol=1e-8)
    np.testing.assert_allclose(res.hessian_eigenvalues[0], [2.0, 2.0], rtol=1e-6)
    assert res.morse_indices.tolist() == [0]
    assert res.degenerate.tolist() == [False]


def test_critical_points_of_psi_directly():
    res = critical_points(PSI_SCALAR, -jnp.ones(2), jnp.ones(2), key=jax.random.key(1),
                          n_starts=32)
    assert res.n_points == 1 and res.n_converged == 32
    np.testing.assert_allclose(res.points[0], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(res.hessian_eigenvalues[0], [2.0, 2.0], rtol=1e-12)
    assert res.morse_indices.tolist() == [0]


def test_critical_points_every_index():
    """sin(3x) cos(2y) on [-1, 1]^2: a minimum, a maximum and two saddles, all known."""
    f = lambda x: jnp.sin(3 * x[0]) * jnp.cos(2 * x[1])
    res = critical_points(f, -jnp.ones(2), jnp.ones(2), key=jax.random.key(2), n_starts=64)
    assert res.n_points == 4
    pts = {tuple(np.round(np.asarray(p), 6)): int(i) for p, i in zip(res.points, res.morse_indices)}
    a, b = np.round(np.pi / 6, 6), np.round(np.pi / 4, 6)
    expected = {(-a, 0.0): 0, (a, 0.0): 2, (0.0, b): 1, (0.0, -b): 1}
    assert {tuple(abs(v) if v == 0 else v for v in k): i for k, i in pts.items()} == expected
    eig = np.sort(np.asarray(res.hessian_eigenvalues), axis=1)
    np.testing.assert_allclose(eig[0], [4.0, 9.0], rtol=1e-8)   # minimum: (4, 9)
    np.testing.assert_allclose(eig[-1], [-9.0, -4.0], rtol=1e-8)
    assert not bool(jnp.any(res.degenerate))
    assert "saddle (index 1)" in res.summary()


def test_rosenbrock_and_degenerate_points():
    rosen = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    res = critical_points(rosen, jnp.array([-2.0, -1.0]), jnp.array([2.0, 3.0]),
                          key=jax.random.key(4), n_starts=32)
    assert res.n_points == 1
    np.testing.assert_allclose(res.points[0], [1.0, 1.0], atol=1e-8)
    np.testing.assert_allclose(res.hessian_eigenvalues[0], [0.39936, 1001.6006], rtol=1e-4)
    cubic = lambda x: x[0] ** 3 + x[1] ** 2
    res = critical_points(cubic, -jnp.ones(2), jnp.ones(2), key=jax.random.key(5), n_starts=8)
    assert res.n_points == 1 and res.degenerate.tolist() == [True]


def test_no_critical_points():
    res = critical_points(lambda x: x[0] + 2 * x[1], -jnp.ones(2), jnp.ones(2),
                          key=jax.random.key(6), n_starts=8, n_steps=10)
    assert res.n_points == 0 and res.points.shape == (0, 2)


class TestBadInput:
    def test_psi_wrong_shape(self):
        with pytest.raises(ValueError, match="`psi`"):
            embed(lambda x: jnp.ones(3), 2, 2)
        with pytest.raises(ValueError, match="`psi`"):
            embed(lambda x: x[0] ** 2, 2, 2)
        with pytest.raises(ValueError, match="`psi`"):
            embed(lambda x: x @ jnp.ones(3), 2, 1)
        with pytest.raises(TypeError, match="`psi`"):
            embed(3.0, 2, 1)
        with pytest.raises(ValueError, match="`in_size`"):
            embed(PSI_SCALAR, 0, 1)

    def test_critical_points_args(self):
        f = lambda x: jnp.sum(x**2)
        key = jax.random.key(0)
        with pytest.raises(ValueError, match="`upper`"):
            critical_points(f, jnp.zeros(2), jnp.ones(3), key=key)
        with pytest.raises(ValueError, match="`upper`"):
            critical_points(f, jnp.ones(2), jnp.zeros(2), key=key)
        with pytest.raises(ValueError, match="`lower`"):
            critical_points(f, jnp.array([jnp.nan, 0.0]), jnp.ones(2), key=key)
        with pytest.raises(ValueError, match="`fn`"):
            critical_points(lambda x: x, jnp.zeros(2), jnp.ones(2), key=key)
        with pytest.raises(ValueError, match="`n_starts`"):
            critical_points(f, jnp.zeros(2), jnp.ones(2), key=key, n_starts=0)


def test_closure_over_first_order_model_is_explained(scalar_model):
    with pytest.raises(TypeError, match="second_order"):
        critical_points(lambda x: scalar_model(x)[0] ** 2, -jnp.ones(2), jnp.ones(2),
                        key=jax.random.key(0), n_starts=2, n_steps=1)
