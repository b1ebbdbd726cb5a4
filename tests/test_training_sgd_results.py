"""SGD as a random dynamical system: the result objects (summary, plot), the renamed names and the
deprecated keyword, and the curvature strategies (behaviour on the strategy, no kind strings).

The problems and run settings are those of tests/test_training_sgd.py, so the compiled programs
are shared with it when both run in one process.
"""

import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import jaxdyn.training as training
from jaxdyn._results import RESULTS, AbstractResult
from jaxdyn.training import (
    AbstractCurvature,
    GaussNewton,
    Hessian,
    InterpolationCheckResult,
    InterpolationFitResult,
    SGDEscapeResult,
    SGDLyapunovResult,
    SGDStabilityDiagramResult,
    find_interpolating_minimum,
    interpolation_check,
    normal_space,
    sgd_escape,
    sgd_lyapunov,
    sgd_stability_diagram,
)
from tests.test_training_sgd import KEY, RUN, THETA1, curvature_data, lsq_loss, lsq_residual

DATA = curvature_data([1.05, 3.15])


@pytest.fixture(scope="module")
def results():
    """One result of each SGD class, on the problems of tests/test_training_sgd.py."""
    lyap = sgd_lyapunov(lsq_loss, THETA1, DATA, lr=jnp.asarray(1.0), batch_size=1, key=KEY, **RUN)
    diagram = sgd_stability_diagram(lsq_loss, THETA1, DATA, lrs=jnp.array([0.5, 1.0]),
                                    batch_sizes=(1, 2), key=KEY, curvature=GaussNewton(lsq_residual),
                                    **RUN)
    escape = sgd_escape(lsq_loss, THETA1, DATA, lr=jnp.asarray(1.0), batch_size=1, key=KEY,
                        n_steps=10, n_runs=2)
    check = interpolation_check(lsq_loss, THETA1, DATA)
    fit = find_interpolating_minimum(lsq_residual, THETA1 + 0.5, DATA, adam_steps=3, lm_steps=5)
    return {"lyap": lyap, "diagram": diagram, "escape": escape, "check": check, "fit": fit}


def test_every_result_follows_the_pattern(results):
    for cls in (SGDLyapunovResult, SGDStabilityDiagramResult, SGDEscapeResult,
                InterpolationCheckResult, InterpolationFitResult):
        assert issubclass(cls, AbstractResult)
        assert cls.summary is not AbstractResult.summary and cls.plot is not AbstractResult.plot
    for r in results.values():
        assert bool(np.all(np.asarray(r.successful))), r.summary()


def test_summaries_name_the_headline_numbers(results):
    lyap, diagram, escape = results["lyap"], results["diagram"], results["escape"]
    assert f"{float(lyap.exponent):.4g}" in lyap.summary() and "tolerance" in lyap.summary()
    assert f"{float(diagram.gd_boundary):.4g}" in diagram.summary()
    assert "successful" in diagram.summary()
    assert f"{float(escape.returned_fraction):.0%} returned" in escape.summary()
    check, fit = results["check"], results["fit"]
    assert f"{float(check.max_example_loss):.3g}" in check.summary()
    assert "an interpolating minimum" in check.summary()
    assert f"{float(fit.loss):.3g}" in fit.summary() and "successful" in fit.summary()


def test_plots_return_axes(results):
    for name in ("lyap", "escape", "check", "fit"):
        ax = results[name].plot()
        assert isinstance(ax, plt.Axes), name
        fig, given = plt.subplots()
        assert results[name].plot(ax=given) is given
        plt.close("all")
    diagram = results["diagram"]
    fig = diagram.plot()  # two panels: the figure
    assert len(fig.axes) >= 2
    _, given = plt.subplots()
    assert diagram.plot(ax=given) is given  # one axes: the exponents only
    _, pair = plt.subplots(1, 2)
    assert diagram.plot(ax=pair) is pair[0].figure
    plt.close("all")


def test_old_names_warn_and_work():
    for old, new in [("SGDStabilityDiagram", SGDStabilityDiagramResult),
                     ("InterpolationCheck", InterpolationCheckResult),
                     ("InterpolationFit", InterpolationFitResult)]:
        with pytest.warns(DeprecationWarning, match=new.__name__):
            assert getattr(training, old) is new


def test_on_not_interpolating_is_deprecated():
    kw = dict(lr=jnp.asarray(1.0), batch_size=1, key=KEY, **RUN)
    with pytest.warns(DeprecationWarning, match="throw=False"):
        r = sgd_lyapunov(lsq_loss, THETA1 + 0.1, DATA, on_not_interpolating="flag", **kw)
    assert RESULTS.not_interpolating == r.result and not bool(r.interpolating)
    with pytest.warns(DeprecationWarning, match="throw=True"), pytest.raises(
            ValueError, match="not an interpolating minimum"):
        sgd_lyapunov(lsq_loss, THETA1 + 0.1, DATA, on_not_interpolating="raise", **kw)


def test_no_deprecation_warnings_from_our_own_calls(results):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        sgd_lyapunov(lsq_loss, THETA1, DATA, lr=jnp.asarray(1.0), batch_size=1, key=KEY, **RUN)
        training.mean_square_bound(normal_space(lsq_loss, THETA1, DATA), 1.0, 1, dense_max_dim=0)


def test_strategies_carry_the_behaviour():
    abstract = AbstractCurvature.__abstractmethods__
    assert {"decompose", "sampler", "spread", "sandwich", "over_batch_sizes"} <= set(abstract)
    for strategy in (Hessian(), GaussNewton(lsq_residual)):
        assert not type(strategy).__abstractmethods__
        space = normal_space(lsq_loss, THETA1, DATA, curvature=strategy)
        assert space.curvature is strategy and not hasattr(space, "factor_kind")
        # both strategies give the same per-example curvature spread (h_i = 1.05, 3.15)
        assert float(strategy.spread(space.factors)) == pytest.approx(1.05, rel=1e-10)
    with pytest.raises(TypeError, match="`curvature`"):
        normal_space(lsq_loss, THETA1, DATA, curvature=jax.numpy)


def test_lanczos_iters_is_deprecated():
    space = normal_space(lsq_loss, THETA1, DATA, curvature=GaussNewton(lsq_residual))
    new = training.mean_square_bound(space, 1.0, 1, dense_max_dim=0, lanczos_steps=1)
    with pytest.warns(DeprecationWarning, match="lanczos_steps"):
        old = training.mean_square_bound(space, 1.0, 1, dense_max_dim=0, lanczos_iters=1)
    np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
