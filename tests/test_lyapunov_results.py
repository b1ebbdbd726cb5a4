"""The result pattern of jaxdyn.lyapunov: `RESULTS` codes, `summary()`/`plot()` on every result,
the `throw` failure policy (both modes for every entry that can fail), and the deprecated names."""

import re
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import jaxdyn
import jaxdyn.lyapunov as lyap
from jaxdyn._checkpoint import Checkpoint
from jaxdyn._results import AbstractResult, message
from jaxdyn.lyapunov import (
    RESULTS,
    covariant_lyapunov_vectors,
    dde_spectrum,
    flow_spectrum,
    ftle_field,
    map_spectrum,
    network_spectrum,
    order_to_chaos,
    product_spectrum,
    signal_propagation,
    sweep,
)


def blow_up(t, y, a):
    return a * y**2


def henon(x, args):
    return jnp.array([1.0 - 1.4 * x[0] ** 2 + x[1], 0.3 * x[0]])


def _nan_layers():
    W = jnp.eye(2).at[0, 0].set(jnp.nan)
    return [jnp.tanh, lambda h: W @ h]


def _sweep_blow_up(throw):
    fn = lambda a: flow_spectrum(blow_up, jnp.ones(1), args=a, dt=0.01, n_steps=300,
                                 progress=False, throw=False)
    return sweep(fn, jnp.array([0.0, 100.0]), throw=throw)


# name -> (call(throw) that fails, the code it fails with)
FAILING = {
    "flow_spectrum": (lambda throw: flow_spectrum(blow_up, jnp.ones(1), args=1.0, dt=0.01,
                                                  n_steps=300, progress=False, throw=throw),
                      RESULTS.nonfinite_state),
    "map_spectrum": (lambda throw: map_spectrum(lambda x, a: x**2 + 1.0, jnp.ones(1), n_steps=20,
                                                progress=False, throw=throw),
                     RESULTS.nonfinite_state),
    "product_spectrum": (lambda throw: product_spectrum(lambda k: jnp.zeros((2, 2)),
                                                        jax.random.key(0), dim=2, n_steps=10,
                                                        progress=False, throw=throw),
                         RESULTS.degenerate_tangent),
    "network_spectrum": (lambda throw: network_spectrum(_nan_layers(), jnp.ones(2), throw=throw),
                         RESULTS.nonfinite_state),
    "dde_spectrum": (lambda throw: dde_spectrum(lambda t, y, yd, a: y**2 + yd[0] ** 2, jnp.ones(1),
                                                [1.0], dt=0.1, n_steps=100, k=1, progress=False,
                                                throw=throw),
                     RESULTS.nonfinite_tangent),
    "covariant_lyapunov_vectors": (
        lambda throw: covariant_lyapunov_vectors(lambda x, a: x**2 + 1.0, jnp.ones(1), n_steps=20,
                                                 transient_steps=0, backward_steps=5, throw=throw),
        RESULTS.nonfinite_state),
    "ftle_field": (lambda throw: ftle_field(lambda t, y, a: y**2,
                                            jnp.array([[0.1, 0.1], [30.0, 0.0]]), t1=1.0, dt=0.05,
                                            throw=throw),
                   RESULTS.nonfinite_state),
    "sweep": (_sweep_blow_up, RESULTS.nonfinite_state),
    "order_to_chaos": (lambda throw: order_to_chaos(jnp.array([1.0, 2.0]), 0.05,
                                                    key=jax.random.key(0), width=4, depth=5,
                                                    n_seeds=1, transient=0, activation=jnp.sqrt,
                                                    throw=throw),
                       RESULTS.nonfinite_state),
    "signal_propagation": (lambda throw: signal_propagation(1.0, 0.05, activation=jnp.exp,
                                                            n_steps=20, throw=throw),
                           RESULTS.nonfinite_state),
}


@pytest.mark.parametrize("name", sorted(FAILING))
def test_throw_true_raises_with_the_message(name):
    call, code = FAILING[name]
    with pytest.raises(eqx.EquinoxRuntimeError, match=re.escape(message(code))):
        call(True)


@pytest.mark.parametrize("name", sorted(FAILING))
def test_throw_false_returns_the_code(name):
    call, code = FAILING[name]
    res = call(False)
    assert bool(np.any(np.asarray(res.result == code))), message(res.result)
    assert not bool(np.all(np.asarray(res.successful)))


@pytest.mark.parametrize("name", ["flow_spectrum", "ftle_field", "network_spectrum"])
def test_throw_must_be_a_bool(name):
    call, _ = FAILING[name]
    with pytest.raises(TypeError, match="`throw`"):
        call("yes")


def test_throw_under_jit():
    """Under `eqx.filter_jit` the failure raises through `eqx.error_if`; `throw=False` returns it."""
    run = eqx.filter_jit(lambda y0, throw: flow_spectrum(blow_up, y0, args=1.0, dt=0.01,
                                                         n_steps=300, progress=False, throw=throw))
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        jax.block_until_ready(run(jnp.ones(1), True))
    assert bool(run(jnp.ones(1), False).result == RESULTS.nonfinite_state)


def test_success_does_not_raise():
    res = map_spectrum(henon, jnp.zeros(2), n_steps=200, progress=False)
    assert bool(res.result == RESULTS.successful) and int(res.failed_step) == -1
    # an exactly singular layer (a dead ReLU layer) is an answer, not a failure
    dead = network_spectrum([lambda h: 0.0 * h, jnp.tanh], jnp.ones(2))
    assert bool(dead.result == RESULTS.successful) and bool(jnp.all(jnp.isneginf(dead.exponents)))


def test_one_enumeration_and_exports():
    assert lyap.RESULTS is jaxdyn.RESULTS
    assert lyap.Checkpoint is Checkpoint
    for name in ("EngineState", "qr_positive"):
        assert not hasattr(lyap, name)


@pytest.mark.parametrize("old,new", [("FTLEField", "FTLEResult"),
                                     ("PhaseDiagram", "PhaseDiagramResult"),
                                     ("SignalPropagation", "SignalPropagationResult")])
def test_old_names_warn(old, new):
    with pytest.warns(DeprecationWarning, match=new):
        cls = getattr(lyap, old)
    assert cls is getattr(lyap, new)


def test_old_keywords_and_message_warn():
    with pytest.warns(DeprecationWarning, match="n_steps"):
        old = signal_propagation(1.5, 0.05, n_iter=50)
    new = signal_propagation(1.5, 0.05, n_steps=50)
    assert float(old.chi_1) == float(new.chi_1)
    res = map_spectrum(henon, jnp.zeros(2), n_steps=20, progress=False)
    with pytest.warns(DeprecationWarning, match="message"):
        assert res.message == "successful"


# -- summary() and plot() of every result ---------------------------------------------------------


@pytest.fixture(scope="module")
def results():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # none from our own code
        xs = jnp.linspace(-1.0, 1.0, 4)
        pts = jnp.stack(jnp.meshgrid(xs, xs), axis=-1)
        return {
            "LyapunovResult": map_spectrum(henon, jnp.zeros(2), n_steps=400, transient_steps=10,
                                           progress=False),
            "CLVResult": covariant_lyapunov_vectors(henon, jnp.zeros(2), n_steps=50,
                                                    transient_steps=20, backward_steps=20),
            "FTLEResult": ftle_field(lambda t, y, a: jnp.array([y[1], y[0] - y[0] ** 3]), pts,
                                     t1=0.2, dt=0.05),
            "PhaseDiagramResult": order_to_chaos(jnp.array([1.0, 1.5, 2.0, 2.5]), 0.05,
                                                 key=jax.random.key(0), width=16, depth=20,
                                                 n_seeds=2, transient=5),
            "SignalPropagationResult": jax.vmap(lambda a: signal_propagation(a, 0.05))(
                jnp.array([1.0, 1.761, 2.5])),
        }


def _headline(name, res) -> str:
    if name == "LyapunovResult":
        return f"{float(res.exponents[0]):.6g}"
    if name == "CLVResult":
        return f"{float(res.exponents[0]):.6g}"
    if name == "FTLEResult":
        return f"{float(jnp.max(res.ftle)):.6g}"
    if name == "PhaseDiagramResult":
        return f"{float(res.critical_sigma_w2('mean_field')[0]):.4g}"
    return f"{float(jnp.max(res.chi_1)):.6g}"


@pytest.mark.parametrize("name", ["LyapunovResult", "CLVResult", "FTLEResult", "PhaseDiagramResult",
                                  "SignalPropagationResult"])
def test_summary_and_plot(results, name):
    res = results[name]
    assert type(res).__name__ == name and isinstance(res, AbstractResult)
    text = res.summary()
    assert _headline(name, res) in text, text
    assert "successful" in text
    fig = res.plot()
    assert fig.axes and fig.axes[0].has_data()
    plt.close(fig)
    fig, ax = plt.subplots()
    assert res.plot(ax=ax) is fig and ax.has_data()
    plt.close("all")


def test_signal_propagation_summary_scalar():
    text = signal_propagation(2.5, 0.05).summary()
    assert "chaotic" in text and "chi_1" in text


def test_product_matvec_closing_over_a_traced_parameter():
    """A matvec that closes over a parameter under `jax.grad` makes the run traced (detected by
    applying it once): the same gradient as the matrix form."""
    key = jax.random.key(3)

    def exps(theta, matvec):
        def sample(k):
            A = theta + 0.3 * jax.random.normal(k, (2, 2))
            return (lambda v: A @ v) if matvec else A
        return product_spectrum(sample, key, dim=2, n_steps=20, progress=False).exponents[0]

    theta = jnp.array([[1.0, 0.5], [-0.3, 0.8]])
    np.testing.assert_allclose(jax.grad(exps)(theta, True), jax.grad(exps)(theta, False),
                               rtol=1e-12)
