"""Eigenvalues of a product of matrices from its factors (`product_eigenvalues`): the periodic QR
method against closed forms, against the explicit product where that is well conditioned, and
the explicit product's failure on a 1e-12 multiplier; jit, vmap and derivatives."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.invariant._floquet import product_eigenvalues

from .helpers import rel_err

MU = np.array([1e8, 1.0, 1e-12])
# a non-normal eigenvector basis (condition number ~ 2)
N = np.array([[0.0, 0.5, 0.2], [0.0, 0.0, 0.3], [0.1, 0.0, 0.0]])


def _factors(m, strength=1.0, mu=MU):
    """m equal segments P diag(mu^(1/m)) P^-1: the product is P diag(mu) P^-1."""
    P = np.eye(len(mu)) + strength * N[: len(mu), : len(mu)]
    M = P @ np.diag(mu ** (1.0 / m)) @ np.linalg.inv(P)
    return jnp.asarray(np.stack([M] * m))


def _linear_flow_segments(m):
    """The segment Jacobians of a linear flow x' = A x over one period T = 1 with multipliers MU:
    A = P diag(log MU) P^-1, segment k is expm(A / m), all different through a rotating basis."""
    P = np.eye(3) + 0.3 * N
    thetas = np.linspace(0.0, 1.0, m + 1)
    mats = []
    for k in range(m):
        # a rotation R(theta) about the first axis, inserted and undone: factor
        # R_{k+1}^T P D^(1/m) P^-1 R_k, whose product telescopes to P D P^-1 (R_0 = R_m = I)
        def rot(t):
            c, s = np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)
            return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
        D = np.diag(MU ** (1.0 / m))
        R0 = rot(thetas[k]) if 0 < k else np.eye(3)
        R1 = rot(thetas[k + 1]) if k + 1 < m else np.eye(3)
        mats.append(R1 @ P @ D @ np.linalg.inv(P) @ R0.T)
    return jnp.asarray(np.stack(mats))


JIT = eqx.filter_jit(product_eigenvalues)


@pytest.mark.parametrize("m", [2, 8, 32])
def test_multipliers_1e8_1_1e_12(m):
    values, converged = JIT(_factors(m, strength=0.1))
    assert bool(converged)
    assert np.all(np.abs(np.asarray(values).imag) == 0.0)
    err = np.abs(np.asarray(values).real - MU) / MU
    assert np.max(err) < 1e-8, err
    assert abs(float(values[1].real) - 1.0) < 1e-10  # the "trivial" multiplier


@pytest.mark.parametrize("m", [8, 32])
def test_strongly_non_normal_factors(m):
    # with eigenvector basis of condition ~3 the factors themselves fix the 1e-12 multiplier to ~1e-14
    values, converged = JIT(_factors(m, strength=1.0))
    assert bool(converged)
    assert np.max(np.abs(np.asarray(values).real - MU) / MU) < 1e-8


def test_varying_segments_of_a_linear_flow():
    values, converged = JIT(_linear_flow_segments(8))
    assert bool(converged)
    assert np.max(np.abs(np.asarray(values) - MU) / MU) < 1e-8


def test_explicit_product_fails_on_the_small_multiplier():
    """The comparison: eigvals of the formed product has absolute error ~ eps * 1e8 ~ 1e-8, so the
    1e-12 multiplier comes out with no correct digit (even its sign is wrong here), while the
    factors give it to ~1e-14."""
    mats = _factors(8)
    product = np.linalg.multi_dot(list(np.asarray(mats)[::-1]))
    explicit = np.linalg.eigvals(product)
    explicit = explicit[np.argsort(-np.abs(explicit))]
    assert abs(explicit[2] - 1e-12) / 1e-12 > 1e3
    values, _ = JIT(mats)
    assert abs(complex(values[2]) - 1e-12) / 1e-12 < 1e-10


def test_complex_pair_and_agreement_with_the_explicit_product(getkey):
    theta, rho = 0.7, 0.9
    rot = rho * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    A = np.array([[1.0, 3.0], [0.2, 1.0]])
    M = A @ rot @ np.linalg.inv(A)
    values, converged = JIT(jnp.asarray(np.stack([M] * 5)))
    expected = rho**5 * np.exp(-1j * theta * 5)  # sin(3.5) < 0: this one has Im > 0
    assert bool(converged)
    assert abs(complex(values[0]) - expected) < 1e-13  # positive imaginary part first
    assert abs(complex(values[1]) - np.conj(expected)) < 1e-13
    # a random, well-conditioned product: the same as eigvals of the formed product
    mats = jax.random.normal(getkey(), (6, 5, 5)) + 2.0 * jnp.eye(5)
    values, converged = JIT(mats)
    explicit = np.linalg.eigvals(np.linalg.multi_dot(list(np.asarray(mats)[::-1])))
    explicit = explicit[np.lexsort((-explicit.imag, -np.abs(explicit)))]
    assert bool(converged)
    assert rel_err(values, explicit) < 1e-12


@pytest.mark.parametrize("similarity", ["orthogonal", "non-normal"])
def test_forty_evenly_graded_multipliers(similarity):
    """Regression: 40 multipliers exp(-2 pi s), s evenly in [0, 3] (neighbours in a ratio of 0.62),
    came out NaN and not converged: the clusters' mean log-modulus (a determinant's) settled at
    once while all 40 were still one cluster, larger than the window of 16. The sweeps now go on
    until the slowly shrinking couplings split them."""
    n, m = 40, 8
    d = np.exp(-2 * np.pi * np.linspace(0.0, 3.0, n))
    rng = np.random.default_rng(0)
    if similarity == "orthogonal":
        S, _ = np.linalg.qr(rng.standard_normal((n, n)))
    else:
        S = np.eye(n) + 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)  # condition ~ 5
    M = S @ np.diag(d ** (1.0 / m)) @ np.linalg.inv(S)
    values, converged = JIT(jnp.asarray(np.stack([M] * m)))
    assert bool(converged)
    assert np.max(np.abs(np.asarray(values) - d) / d) < 1e-10


def test_plus_minus_one_cluster_and_single_factor():
    # eigenvalues +1 and -1 (equal modulus: one cluster), and a 1x1 product of one factor
    P = np.eye(3) + 0.3 * N
    M = P @ np.diag([1.0, -1.0, 0.5]) @ np.linalg.inv(P)
    values, converged = JIT(jnp.asarray(M[None]))
    assert bool(converged)
    assert sorted(np.round(np.asarray(values).real[:2], 12)) == [-1.0, 1.0]
    assert abs(complex(values[2]) - 0.5) < 1e-14
    values, converged = product_eigenvalues(jnp.array([[[3.0]], [[-2.0]]]))
    assert bool(converged) and complex(values[0]) == -6.0


def test_jit_no_retrace_and_vmap():
    mats = _factors(8)
    fn = eqx.debug.assert_max_traces(product_eigenvalues, max_traces=1)
    jitted = eqx.filter_jit(fn)
    a, _ = jitted(mats)
    b, _ = jitted(mats * 1.0)
    eager, _ = product_eigenvalues(mats)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert rel_err(a, eager) < 1e-13
    scales = jnp.array([1.0, 0.5, 2.0])
    batched, converged = jax.vmap(lambda s: product_eigenvalues(mats * s))(scales)
    assert converged.shape == (3,) and bool(jnp.all(converged))
    for s, row in zip(np.asarray(scales), np.asarray(batched), strict=True):
        assert np.max(np.abs(row - MU * s**8) / (MU * s**8)) < 1e-8


def test_derivatives_against_finite_differences(getkey):
    mats = jax.random.normal(getkey(), (4, 3, 3)) + 2.0 * jnp.eye(3)
    V = jax.random.normal(getkey(), mats.shape)

    def top(A):
        return jnp.abs(product_eigenvalues(A)[0][0])

    h = 1e-6
    fd = (top(mats + h * V) - top(mats - h * V)) / (2 * h)
    grad = jax.grad(top)(mats)
    assert abs(float(jnp.sum(grad * V)) - float(fd)) < 1e-7 * abs(float(fd))
    # forward mode on the (linear) sum of the real parts, the last one a 1e-? multiplier
    def total(A):
        return jnp.sum(product_eigenvalues(A)[0].real)

    tangent = jax.jvp(total, (mats,), (V,))[1]
    fd = (total(mats + h * V) - total(mats - h * V)) / (2 * h)
    assert abs(float(tangent) - float(fd)) < 1e-7 * abs(float(fd))


def test_too_large_cluster_is_not_converged():
    # four multipliers of modulus one (two rotations in a skewed basis): one cluster of four,
    # solved in windows of at most two rows
    def rot(t):
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])

    B = np.zeros((4, 4))
    B[:2, :2], B[2:, 2:] = rot(0.3), rot(1.1)
    S = np.eye(4) + 0.4 * np.arange(16.0).reshape(4, 4) / 16
    M = S @ B @ np.linalg.inv(S)
    values, converged = product_eigenvalues(jnp.asarray(np.stack([M, M])), max_cluster=2, max_sweeps=5)
    assert not bool(converged)
    assert np.any(np.isnan(np.asarray(values)))
    # with the default budget the sweeps see the couplings stop shrinking (a genuine cluster) and stop
    values, converged = product_eigenvalues(jnp.asarray(np.stack([M, M])), max_cluster=2)
    assert not bool(converged)
    assert np.any(np.isnan(np.asarray(values)))
