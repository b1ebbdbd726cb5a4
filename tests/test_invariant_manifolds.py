"""`jaxdyn.invariant.invariant_manifolds`: known answers (a linear saddle's eigen-lines, the
parabola y = c x^2 / 3 of x' = x, y' = -y + c x^2, the Lorenz origin), jit without retracing,
vmap over the parameter, derivatives against finite differences, both throw modes, summary and plot.
Hostile inputs: tests/test_hostile_invariant_manifolds.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import ManifoldsResult, invariant_manifolds

from .helpers import fd_directional


def parabola(t, y, c):
    """x' = x, y' = -y + c x^2: W^u is y = c x^2 / 3, W^s the y-axis."""
    return jnp.stack([y[0], -y[1] + c * y[0] ** 2])


def linear(t, y, a):
    return a @ y


N_CALLS = {"parabola": 0}


@eqx.filter_jit
def solve_parabola(c):
    N_CALLS["parabola"] += 1
    return invariant_manifolds(parabola, jnp.zeros(2), args=c, t_max=14.0, n_points=64)


@pytest.fixture(scope="module")
def nonlinear():
    return solve_parabola(jnp.asarray(1.0))


def test_parabola_unstable_manifold(nonlinear):
    res = nonlinear
    assert isinstance(res, ManifoldsResult) and bool(res.successful)
    np.testing.assert_allclose(np.asarray(res.eigenvalues), [1.0, -1.0], atol=1e-14)
    assert int(res.unstable_dimension) == 1 and int(res.stable_dimension) == 1
    for branch in np.asarray(res.unstable):
        x, y = branch[:, 0], branch[:, 1]
        np.testing.assert_allclose(y, x**2 / 3, atol=1e-9)
        assert abs(x[-1]) > 1.0  # the branch went far from the saddle (eps e^14 ~ 1.2)
    assert np.sign(res.unstable[0, -1, 0]) == -np.sign(res.unstable[1, -1, 0])
    stable = np.asarray(res.stable)
    np.testing.assert_allclose(stable[..., 0], 0.0, atol=1e-14)  # the y-axis
    assert abs(stable[0, -1, 1]) > 1.0
    np.testing.assert_allclose(np.abs(np.asarray(res.unstable_direction)), [1.0, 0.0], atol=1e-14)


def test_jit_no_retrace_and_vmap(nonlinear):
    before = N_CALLS["parabola"]
    again = solve_parabola(jnp.asarray(1.0))
    assert N_CALLS["parabola"] == before  # no retrace on a second call
    np.testing.assert_array_equal(np.asarray(again.unstable), np.asarray(nonlinear.unstable))
    eager = invariant_manifolds(parabola, jnp.zeros(2), args=jnp.asarray(1.0), t_max=14.0, n_points=64)
    np.testing.assert_allclose(np.asarray(eager.unstable), np.asarray(nonlinear.unstable), atol=1e-13)
    cs = jnp.array([-1.0, 0.5, 2.0])
    batch = jax.vmap(solve_parabola)(cs)
    assert batch.unstable.shape == (3, 2, 64, 2)
    for c, branches in zip(np.asarray(cs), np.asarray(batch.unstable), strict=True):
        x, y = branches[..., 0], branches[..., 1]
        np.testing.assert_allclose(y, c * x**2 / 3, atol=1e-9 * max(1, abs(c)))
    assert bool(np.all(np.asarray(batch.successful)))
    assert batch.summary().startswith("3 saddles (batched)")


def test_gradient_against_finite_differences():
    """d/dc of the end point of the unstable branch (y_end = c x_end^2 / 3, x_end independent of c)."""
    def end(c):
        res = invariant_manifolds(parabola, jnp.zeros(2), args=c, t_max=6.0, n_points=64, eps=1e-3)
        return res.unstable[0, -1]

    c = jnp.asarray(0.7)
    grad = jax.jacrev(end)(c)
    fd = fd_directional(end, c, jnp.asarray(1.0))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(fd), rtol=1e-6, atol=1e-9)
    x_end = float(end(c)[0])
    np.testing.assert_allclose(float(grad[1]), x_end**2 / 3, rtol=1e-6)


def test_linear_saddle_eigen_lines():
    """A linear saddle with non-orthogonal eigenvectors: the manifolds are the eigen-lines."""
    a = jnp.array([[1.0, 2.0], [0.0, -2.0]])  # eigenvalues 1 (e_1) and -2 ((2, -3) / sqrt 13)
    res = invariant_manifolds(linear, jnp.array([0.3, -0.1]), args=a, t_max=10.0, n_points=32)
    np.testing.assert_allclose(np.asarray(res.point), [0.0, 0.0], atol=1e-14)  # polished by Newton
    v_s = np.array([2.0, -3.0]) / np.sqrt(13.0)
    np.testing.assert_allclose(np.asarray(res.stable_direction), -v_s, atol=1e-12)  # largest entry > 0
    for branch in np.asarray(res.unstable):
        np.testing.assert_allclose(branch[:, 1], 0.0, atol=1e-14)
    for branch in np.asarray(res.stable):
        cross = branch[:, 0] * v_s[1] - branch[:, 1] * v_s[0]
        assert np.max(np.abs(cross)) <= 1e-10 * np.max(np.linalg.norm(branch, axis=-1))
        assert np.max(np.linalg.norm(branch, axis=-1)) > 1.0


def test_lorenz_origin_unstable_only_with_bound():
    """Lorenz at rho = 10: the origin has one unstable and two stable directions; only W^u is
    traced; with `bound` the branches stop (NaN) once they leave the box."""
    def lorenz(t, y, rho):
        return jnp.stack([10 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]])

    res = invariant_manifolds(lorenz, jnp.zeros(3), args=10.0, t_max=4.0, n_points=40, bound=5.0)
    assert bool(res.successful)
    assert int(res.unstable_dimension) == 1 and int(res.stable_dimension) == 2
    assert bool(np.all(np.isnan(np.asarray(res.stable))))
    lam = (-11 + np.sqrt(81 + 40 * 10)) / 2
    np.testing.assert_allclose(float(res.eigenvalues[0].real), lam, rtol=1e-12)
    u = np.asarray(res.unstable)
    assert bool(np.any(np.isnan(u[0]))) and bool(np.any(np.isfinite(u[0, :, 0])))
    finite = u[0][np.all(np.isfinite(u[0]), axis=-1)]
    assert np.max(np.abs(finite)) <= 5.0
    np.testing.assert_allclose(u[0, :, 0], -u[1, :, 0], atol=1e-10)  # the symmetry (x, y, z) -> (-x, -y, z)
    text = res.summary()
    assert "unstable dimension 1" in text and "stable dimension 2" in text and "not traced" in text


def test_throw_modes_not_a_saddle():
    """A stable node (the linear field of the eigen-line test, compiled once): a ValueError on
    concrete input; under jit the code, raised with throw=True."""
    node = -jnp.eye(2)
    with pytest.raises(ValueError, match="stable manifold of dimension 2"):
        invariant_manifolds(linear, jnp.zeros(2), args=node, t_max=10.0, n_points=32)
    res = invariant_manifolds(linear, jnp.zeros(2), args=jnp.diag(jnp.array([1.0, -2.0])), t_max=10.0,
                              n_points=32, throw=False)
    assert bool(res.successful)
    run = eqx.filter_jit(lambda a: invariant_manifolds(linear, jnp.zeros(2), args=a, t_max=10.0, n_points=32))
    with pytest.raises(eqx.EquinoxRuntimeError, match="one-dimensional"):
        run(node)
    code = eqx.filter_jit(lambda a: invariant_manifolds(linear, jnp.zeros(2), args=a, throw=False,
                                                        t_max=10.0, n_points=32).result)(node)
    assert bool(code == RESULTS.not_a_saddle)


def test_throw_modes_max_steps():
    kwargs = dict(args=1.0, t_max=14.0, n_points=4, max_steps=3)
    with pytest.raises(eqx.EquinoxRuntimeError, match="maximum number of steps"):
        invariant_manifolds(parabola, jnp.zeros(2), **kwargs)
    res = invariant_manifolds(parabola, jnp.zeros(2), throw=False, **kwargs)
    assert bool(res.result == RESULTS.max_steps_reached)
    assert "max_steps" in res.summary()


def test_summary_and_plot(nonlinear):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = nonlinear.summary()
    assert "Saddle at u* = [0. 0.]" in text and "unstable +: length" in text
    end = abs(float(nonlinear.stable[0, -1, 1]))
    np.testing.assert_allclose(nonlinear.arc_lengths()[2], end - 1e-6, rtol=1e-10)  # from eps on
    ax = nonlinear.plot()
    assert ax is not None and len(ax.lines) >= 5
    plt.close(ax.figure)
    fig, ax2 = plt.subplots()
    assert nonlinear.plot(ax=ax2) is ax2
    from jaxdyn.plot._manifolds import plot_phase_portrait

    out = plot_phase_portrait(parabola, [-1.5, -1.5], [1.5, 1.5], args=1.0, n=8, manifolds=[nonlinear],
                              equilibria=[(np.zeros(2), "saddle")], cycles=[np.ones((5, 2))])
    assert out.get_legend() is not None
    plt.close("all")
