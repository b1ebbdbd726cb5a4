"""The result objects of jaxdyn.training (GD, gradient flow, edge of stability, implicit bias):
`summary()` names the headline number, `plot()` returns axes, codes are `RESULTS` items; the old
names and keywords still work with a DeprecationWarning."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import jaxdyn.training as jt
from jaxdyn._results import RESULTS
from jaxdyn.training import (
    EdgeOfStabilityResult,
    GDEndpointsResult,
    GDStabilityResult,
    GradientFlow,
    GradientFlowSolution,
    TrainResult,
    edge_of_stability,
    gd_endpoints,
    gd_stability,
    gradient_flow,
    hyperbola_loss,
    train,
)

X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)))
Y = jnp.asarray(np.random.default_rng(1).normal(size=8))
P = {"w": jnp.asarray([0.5, -1.0]), "b": jnp.asarray(0.3)}


def lsq(p, x, y):
    return 0.5 * jnp.mean((x @ p["w"] + p["b"] - y) ** 2)


@pytest.fixture(scope="module")
def trained():
    return train(lsq, P, X, Y, n_steps=20, lr=0.5, every=5, top_k=1, flow=GradientFlow(dt_max=0.1),
                 progress=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _check_plot(result):
    ax = result.plot()
    assert hasattr(ax, "plot") and ax.figure is not None
    _, given = plt.subplots()
    assert result.plot(ax=given) is given


def test_train_result(trained):
    assert isinstance(trained, TrainResult) and trained.successful
    assert trained.flow_result == RESULTS.successful
    text = trained.summary()
    assert "20 steps" in text and f"{float(trained.loss[-1]):.6g}" in text and "successful" in text
    _check_plot(trained)
    plain = train(lsq, P, X, Y, n_steps=10, lr=0.1, every=5, top_k=0, progress=False)
    assert plain.flow_result == RESULTS.successful  # no flow ran: nothing to report
    _check_plot(plain)


def test_gradient_flow_solution():
    sol = gradient_flow(lsq, P, X, Y, ts=jnp.linspace(0.0, 1.0, 5), flow=GradientFlow(dt_max=0.1))
    assert isinstance(sol, GradientFlowSolution) and sol.result == RESULTS.successful
    text = sol.summary()
    assert f"{float(sol.losses[-1]):.6g}" in text and "successful" in text
    _check_plot(sol)
    with pytest.warns(DeprecationWarning, match="status"):
        assert sol.status == RESULTS.successful


def test_gd_stability_result():
    res = gd_stability(hyperbola_loss, jnp.asarray([2.0, 0.5]), 0.3, k=2)
    assert isinstance(res, GDStabilityResult)
    text = res.summary()
    assert "manifold" in text and f"{float(res.mu):.6g}" in text and "successful" in text
    _check_plot(res)
    batch = jax.vmap(lambda w: gd_stability(hyperbola_loss, w, 0.3, k=2))(
        jnp.asarray([[2.0, 0.5], [1.0, 1.0]]))
    assert "2 points" in batch.summary()
    _check_plot(batch)


def test_edge_of_stability_result(trained):
    stats = edge_of_stability(trained)
    assert isinstance(stats, EdgeOfStabilityResult) and stats.result == RESULTS.successful
    text = stats.summary()
    assert f"{stats.threshold:.6g}" in text and f"{stats.final_loss:.6g}" in text
    _check_plot(stats)


def test_gd_endpoints_result():
    w0 = jnp.asarray([[1.0, 1.0], [3.0, 3.0], [0.5, 1.5]])
    ends = gd_endpoints(hyperbola_loss, w0, 1.5, n_steps=200, throw=False)
    assert isinstance(ends, GDEndpointsResult) and ends.n_steps == 200
    text = ends.summary()
    assert f"{ends.n_diverged} diverged" in text and "non-finite" in text
    _check_plot(ends)
    other = gd_endpoints(lambda p: jnp.sum(p**2), jnp.ones((4, 3)), 0.1, n_steps=5)
    _check_plot(other)


def test_results_pass_through_jit():
    res = eqx.filter_jit(lambda w: gd_stability(hyperbola_loss, w, 0.3, k=2))(jnp.asarray([2.0, 0.5]))
    assert res.result == RESULTS.successful


def test_old_names_and_keywords_warn():
    for old, new in (("GDStability", GDStabilityResult), ("EdgeOfStability", EdgeOfStabilityResult),
                     ("GDEndpoints", GDEndpointsResult)):
        with pytest.warns(DeprecationWarning, match=old):
            assert getattr(jt, old) is new
    with pytest.warns(DeprecationWarning, match=r"steps=\.\.\.\)` is deprecated: use `n_steps"):
        old = train(lsq, P, X, Y, steps=10, lr=0.1, every=5, top_k=0, progress=False)
    with pytest.warns(DeprecationWarning, match=r"chunk=\.\.\.\)` is deprecated: use `blocks_per_call"):
        chunked = train(lsq, P, X, Y, n_steps=10, lr=0.1, every=5, top_k=0, chunk=1, progress=False)
    np.testing.assert_array_equal(old.losses, chunked.losses)
    with pytest.warns(DeprecationWarning, match="n_steps"):
        ends = gd_endpoints(hyperbola_loss, jnp.ones((2, 2)), 0.1, steps=3)
    assert ends.n_steps == 3
    with pytest.raises(TypeError, match="both"):
        gd_endpoints(hyperbola_loss, jnp.ones((2, 2)), 0.1, steps=3, n_steps=3)
    with pytest.warns(DeprecationWarning, match="lanczos_steps"):
        lanczos = train(lsq, P, X, Y, n_steps=10, lr=0.1, every=5, top_k=1, num_iters=5, progress=False)
    np.testing.assert_array_equal(
        lanczos.sharpness,
        train(lsq, P, X, Y, n_steps=10, lr=0.1, every=5, top_k=1, lanczos_steps=5, progress=False).sharpness,
    )
    with pytest.warns(DeprecationWarning, match="lanczos_steps"):
        res = gd_stability(hyperbola_loss, jnp.asarray([2.0, 0.5]), 0.3, k=1, num_iters=2)
    assert res.result == RESULTS.successful
    with pytest.warns(DeprecationWarning, match="lanczos_steps"):
        assert GradientFlow(num_iters=7) == GradientFlow(lanczos_steps=7)
    with pytest.raises(TypeError, match="both"):
        GradientFlow(num_iters=7, lanczos_steps=7)


def test_fixtures_left_training():
    from jaxdyn.experiments._fixtures import digits_data, mse_onehot, onehot_accuracy, tanh_mlp

    for name in ("digits_data", "tanh_mlp", "mse_onehot", "onehot_accuracy"):
        assert not hasattr(jt, name)
    xs, ys = digits_data(20, seed=1)
    model = tanh_mlp(64, 8, 1, 10, key=jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(float(mse_onehot(model, xs, ys)))
        assert 0.0 <= float(onehot_accuracy(model, xs, ys)) <= 1.0
