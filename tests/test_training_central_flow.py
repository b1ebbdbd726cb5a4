"""central_flow: below the edge it is gradient flow (closed form for a quadratic), at the edge the
scalar sigma^2 matches its closed form and the effective sharpness is held at 2 (GD, scalar
RMSProp, RMSProp), two eigenvalues at the edge at once (k = 2), result fields, summary/plot, throw."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.training import (
    CentralFlowResult,
    DenseEigen,
    GDOptimizer,
    LanczosEigen,
    RitzEigen,
    RMSPropOptimizer,
    ScalarRMSPropOptimizer,
    central_flow,
)

C = 3.0
LR = 0.25  # 2 / lr = 8 = 1 + x^2 at x = sqrt(7) < C: the toy reaches the edge
DATA = jnp.zeros((1,))


def toy(p, _):
    """L(x, y) = 1/2 (1 + x^2) y^2 + 1/2 (x - c)^2: the sharpness 1 + x^2 grows along the flow."""
    x, y = p
    return 0.5 * (1 + x**2) * y**2 + 0.5 * (x - C) ** 2


def two_toys(p, _):
    """Two independent toys (c = 3 and 2.9): both reach the edge, two eigenvalues at 2 at once."""
    x1, x2, y1, y2 = p
    return (0.5 * (1 + x1**2) * y1**2 + 0.5 * (x1 - 3.0) ** 2
            + 0.5 * (1 + x2**2) * y2**2 + 0.5 * (x2 - 2.9) ** 2)


W0 = jnp.array([0.5, 1.0])


@pytest.fixture(scope="module")
def gd_run():
    return central_flow(toy, W0, DATA, lr=LR, n_steps=60, every=5)


def closed_form_sigma2(w):
    """sigma^2 = -2 <grad S, grad L> / |grad S|^2 (the issue's scalar case), S = lambda_max(H)."""
    sharp = lambda z: jnp.linalg.eigvalsh(jax.hessian(toy)(z, DATA))[-1]  # noqa: E731
    gS, gL = jax.grad(sharp)(w), jax.grad(toy)(w, DATA)
    return -2.0 * jnp.dot(gS, gL) / jnp.dot(gS, gS)


def test_fields_and_shapes(gd_run):
    res = gd_run
    T = 60 // 5 + 1
    assert isinstance(res, CentralFlowResult)
    np.testing.assert_allclose(res.ts, np.arange(T) * 5.0)
    assert res.params.shape == (T, 2)
    for name in ("loss", "predicted_loss", "sharpness", "n_active", "threshold", "gd_distance",
                 "flow_loss", "flow_distance"):
        assert getattr(res, name).shape == (T,), name
    assert res.eigenvalues.shape == (T, 1) and res.sigma.shape == (T, 1)
    assert res.gd_loss.shape == (61,)
    assert res.opt_state is None
    np.testing.assert_allclose(res.threshold, 2.0 / LR)
    np.testing.assert_allclose(res.sharpness, res.eigenvalues[:, 0] / LR, rtol=1e-12)
    np.testing.assert_allclose(res.params[0], W0)
    np.testing.assert_allclose(res.gd_loss[0], toy(W0, DATA))
    assert res.gd_distance[0] == 0.0 and res.flow_distance[0] == 0.0
    assert bool(res.successful)


def test_edge_known_answers(gd_run):
    """At the edge: the effective sharpness is 2, sigma^2 is the closed form, and the flow settles
    at the fixed point x = sqrt(2/lr - 1), y = 0, sigma^2 = (c - x)/x."""
    res = gd_run
    at_edge = np.asarray(res.n_active) == 1
    assert at_edge[-6:].all() and not at_edge[0]
    np.testing.assert_allclose(res.eigenvalues[-6:, 0], 2.0, atol=1e-8)
    for i in np.flatnonzero(at_edge)[-4:]:
        np.testing.assert_allclose(res.sigma[i, 0], closed_form_sigma2(res.params[i]), rtol=1e-7)
    x = np.sqrt(2.0 / LR - 1.0)
    np.testing.assert_allclose(res.params[-1], [x, 0.0], atol=1e-6)
    np.testing.assert_allclose(res.sigma[-1, 0], (C - x) / x, rtol=1e-6)
    # predicted loss = L + 1/2 sigma^2 lambda_max(H)
    np.testing.assert_allclose(res.predicted_loss, res.loss + 0.5 * res.sigma[:, 0] * res.sharpness,
                               rtol=1e-10)
    # the stable flow (gradient flow) runs past the edge: its loss is far below the prediction
    assert res.flow_loss[-1] < 0.5 * res.predicted_loss[-1]


def test_below_edge_is_gradient_flow():
    """A quadratic below the edge: Sigma = 0 and the flow is w(t) = exp(-lr t A) w0."""
    A = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    quad = lambda w, _: 0.5 * w @ A @ w  # noqa: E731
    lr, w0 = 0.3, jnp.array([1.0, -2.0])  # lr * lambda_max = 1.09 < 2
    res = central_flow(quad, w0, DATA, lr=lr, n_steps=10, every=2, dt=0.125, compare=False)
    assert np.all(np.asarray(res.sigma) == 0.0) and np.all(np.asarray(res.n_active) == 0)
    vals, vecs = np.linalg.eigh(np.asarray(A))
    exact = np.stack([vecs @ (np.exp(-lr * t * vals) * (vecs.T @ np.asarray(w0))) for t in res.ts])
    np.testing.assert_allclose(res.params, exact, atol=1e-7)
    np.testing.assert_allclose(res.predicted_loss, res.loss)
    assert np.all(np.isnan(np.asarray(res.gd_distance)))
    assert "compare=False" in res.summary()
    import matplotlib.pyplot as plt

    assert len(res.plot()) == 4  # without the comparison lines
    plt.close("all")


def test_two_at_the_edge():
    """k = 2: both eigenvalues held at 2, Sigma's eigenvalues (c_i - x)/x at the fixed point."""
    w0 = jnp.array([0.5, 0.3, 1.0, 0.7])
    res = central_flow(two_toys, w0, DATA, lr=LR, k=2, n_steps=80, every=10, compare=False)
    np.testing.assert_allclose(res.eigenvalues[-3:], 2.0, atol=1e-8)
    assert np.all(np.asarray(res.n_active)[-3:] == 2)
    x = np.sqrt(2.0 / LR - 1.0)
    np.testing.assert_allclose(res.sigma[-1], [(3.0 - x) / x, (2.9 - x) / x], rtol=1e-6)


@pytest.mark.parametrize("optimizer", [ScalarRMSPropOptimizer(), RMSPropOptimizer()])
def test_rmsprop_holds_effective_sharpness(optimizer):
    res = central_flow(toy, W0, DATA, lr=0.05, optimizer=optimizer, n_steps=200, every=10)
    assert bool(res.successful)
    at_edge = np.asarray(res.n_active) == 1
    assert at_edge[-2:].all()
    np.testing.assert_allclose(res.eigenvalues[-2:, 0], 2.0, atol=1e-7)
    assert res.opt_state.shape == (21, 1 if isinstance(optimizer, ScalarRMSPropOptimizer) else 2)
    assert np.all(np.asarray(res.sigma)[-2:] > 0) and np.all(np.asarray(res.sigma) >= 0)
    stable = central_flow(toy, W0, DATA, lr=0.05, optimizer=optimizer, n_steps=200, every=10,
                          stable=True, compare=False)
    assert np.all(np.asarray(stable.sigma) == 0.0)
    np.testing.assert_allclose(stable.predicted_loss, stable.loss)
    # the stable flow (adaptive Tsit5 by default) is the central flow (RK4, dt = 0.5) before the
    # edge, up to RK4's discretisation error
    first = int(np.argmax(at_edge))
    np.testing.assert_allclose(stable.params[:first], res.params[:first], atol=1e-4)


def test_rmsprop_with_a_dead_coordinate():
    """A parameter the loss ignores (digits' always-0 pixels) has nu = 0 for ever; the derivative
    of sqrt(nu) there was inf * 0 = nan in dP/dt, and the flow turned nan at the first active
    eigenvalue (complementarity_not_solved). Now it is the 2-parameter flow, with z untouched."""
    dead = lambda p, d: toy(p[:2], d)  # noqa: E731
    w0 = jnp.array([0.5, 1.0, 0.3])
    res = central_flow(dead, w0, DATA, lr=0.05, optimizer=RMSPropOptimizer(), n_steps=200,
                       every=10, compare=False)
    ref = central_flow(toy, W0, DATA, lr=0.05, optimizer=RMSPropOptimizer(), n_steps=200,
                       every=10, compare=False)
    assert bool(res.successful) and bool(np.asarray(res.n_active)[-1] == 1)
    np.testing.assert_allclose(res.eigenvalues[-2:, 0], 2.0, atol=1e-7)
    np.testing.assert_allclose(res.params[:, :2], ref.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.params[:, 2], 0.3)
    np.testing.assert_allclose(res.opt_state[:, 2], 0.0)


@pytest.mark.parametrize("eigen", [LanczosEigen(), RitzEigen()])
def test_matrix_free_eigen_strategies(gd_run, eigen):
    """Warm-started Lanczos gives the dense flow; Rayleigh-Ritz between save points (exact here:
    the toy's top eigenvector stays in span{v, Av} of 2 parameters) too. With a progress bar."""
    res = central_flow(toy, W0, DATA, lr=LR, n_steps=60, every=5, eigen=eigen, compare=False,
                       progress=True)
    np.testing.assert_allclose(res.params, gd_run.params, atol=1e-7)
    np.testing.assert_allclose(res.sigma, gd_run.sigma, atol=1e-7)
    with pytest.raises(TypeError, match="not differentiable"):
        jax.grad(lambda a: central_flow(toy, W0, DATA, lr=a, n_steps=5, every=5, eigen=eigen,
                                        compare=False).predicted_loss[-1])(LR)


def test_summary_and_plot(gd_run):
    text = gd_run.summary()
    assert "effective sharpness" in text and "predicted loss" in text
    assert f"{float(gd_run.predicted_loss[-1]):.6g}" in text
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = gd_run.plot()
    assert len(axes) == 4
    # the optimiser's smoothed loss is `smooth_loss` (the experiment's trapezoid window)
    from jaxdyn.training import smooth_loss

    drawn = [ln for ln in axes[0].get_lines() if "smoothed" in ln.get_label()][0]
    np.testing.assert_array_equal(drawn.get_ydata(), smooth_loss(gd_run.gd_loss, 10))
    with pytest.raises(ValueError, match="window"):
        gd_run.plot(window=3)
    plt.close("all")


def test_throw_modes():
    """The loss turns NaN once the flow crosses w = 0: raise, or return the code."""
    bad = lambda w, _: w[0] + 0.0 * jnp.log(w[0])  # noqa: E731
    kwargs = dict(lr=0.1, n_steps=20, every=5, compare=False, eigen=DenseEigen())
    with pytest.raises(eqx.EquinoxRuntimeError, match="throw=False"):
        central_flow(bad, jnp.array([1.0]), DATA, **kwargs)
    res = central_flow(bad, jnp.array([1.0]), DATA, throw=False, **kwargs)
    assert not bool(res.successful)
    assert res.result != RESULTS.successful


def test_bad_input():
    with pytest.raises(ValueError, match="optimizer"):
        central_flow(toy, W0, DATA, lr=LR, n_steps=5, optimizer="adam")
    with pytest.raises(ValueError, match="multiple of `every`"):
        central_flow(toy, W0, DATA, lr=LR, n_steps=5, every=2)
    with pytest.raises(ValueError, match="`k`"):
        central_flow(toy, W0, DATA, lr=LR, n_steps=5, k=3)
    with pytest.raises(TypeError, match="eigen"):
        central_flow(toy, W0, DATA, lr=LR, n_steps=5, eigen="dense")
    for bad in (0.0, 2.5):
        with pytest.raises(ValueError, match="threshold"):
            central_flow(toy, W0, DATA, lr=LR, n_steps=5, threshold=bad)
    assert isinstance(GDOptimizer(), GDOptimizer)


@pytest.mark.slow
def test_grad_with_an_inactive_eigenpair():
    """k = 2 with one eigenvalue at the edge and one below it: the derivative must include the
    rotation of the active eigenvector into the inactive one (regression: it was left out)."""

    def coupled(p, _):
        return two_toys(p, _) + 0.1 * p[0] * p[2] * p[3]

    w0 = jnp.array([0.5, 0.3, 1.0, 0.7])

    def final(lr):
        res = central_flow(coupled, w0, DATA, lr=lr, k=2, n_steps=40, every=20, compare=False)
        return res.predicted_loss[-1] + res.params[-1, 0], res.n_active[-1]

    (value, n_active), grad = jax.value_and_grad(final, has_aux=True)(LR)
    assert int(n_active) == 1
    h = 1e-5
    fd = (final(LR + h)[0] - final(LR - h)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7)
