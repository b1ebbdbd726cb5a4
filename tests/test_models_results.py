"""The result objects of `jaxdyn.models`: summary(), plot(ax=None), both failure modes of every
throw-capable entry, the renamed names and keywords, and the shared residual-network base."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import pytest

import jaxdyn.models as jm
from jaxdyn._results import RESULTS, AbstractResult, codes
from jaxdyn.models import (
    MLP,
    AbstractField,
    CriticalPointsResult,
    DenseResNet,
    FitResult,
    NeuralODE,
    NeuralODESolution,
    ResNet,
    VariationalResult,
    critical_points,
    fit,
)
from jaxdyn.models._affine import AbstractLiftedModel
from jaxdyn.models._resnet import AbstractResidualNetwork

KEY = jax.random.key(0)
LOWER, UPPER = -jnp.ones(2), jnp.ones(2)


def _bowl(x):
    return jnp.sum(x**2) - 0.5 * x[0] * x[1]


def _log_bowl(x):
    """Non-finite (log of a negative number) on half of the box."""
    return jnp.sum(x**2) + jnp.log(x[0] + 2.0) + jnp.log(x[1])


class Square(eqx.Module):
    """h' = h^2: blows up at t = 1 from h(0) = 1."""

    def __call__(self, t, y, args):
        return y**2


BLOWUP = NeuralODE(Square(), state_size=1, t1=2.0)
DECAY = NeuralODE(lambda t, y, args: -y, state_size=2, t1=1.0)
XS = jnp.linspace(-1.0, 1.0, 6)[:, None]
NET = MLP((1, 3, 1), key=KEY)


@pytest.fixture(scope="module")
def cps():
    return critical_points(_bowl, LOWER, UPPER, key=KEY, n_starts=4, n_steps=20)


def _is(result, code):
    return bool(np.all(codes(result) == codes(code)))


def _closes(out):
    assert out is not None
    plt.close("all")


# --- CriticalPointsResult ------------------------------------------------------------------------
def test_critical_points_result(cps):
    assert isinstance(cps, CriticalPointsResult) and isinstance(cps, AbstractResult)
    assert _is(cps.result, RESULTS.successful) and bool(cps.successful)
    assert cps.n_points == 1
    assert cps.summary().startswith("1 critical point(s)")
    assert "minimum" in cps.summary()
    ax = cps.plot()
    assert ax.get_xlabel() == "" or ax is not None
    _closes(ax)
    _, given = plt.subplots()
    assert cps.plot(given, fn=_bowl, n=11, levels=4) is given  # level sets over the box searched
    _closes(given)


def test_critical_points_throw_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"gradient became non-finite.*throw=False"):
        critical_points(_log_bowl, LOWER, UPPER, key=KEY, n_starts=8, n_steps=5)
    res = critical_points(_log_bowl, LOWER, UPPER, key=KEY, n_starts=8, n_steps=5, throw=False)
    assert _is(res.result, RESULTS.nonfinite_gradient) and not bool(res.successful)
    assert "non-finite" in res.summary()
    with pytest.raises(TypeError, match="`throw`"):
        critical_points(_bowl, LOWER, UPPER, key=KEY, throw="no")


def test_critical_points_old_names(cps):
    with pytest.warns(DeprecationWarning, match="CriticalPointsResult"):
        old = jm.CriticalPoints
    assert old is CriticalPointsResult
    with pytest.warns(DeprecationWarning, match="n_steps"):
        res = critical_points(_bowl, LOWER, UPPER, key=KEY, n_starts=4, max_iter=20)
    np.testing.assert_array_equal(np.asarray(res.points), np.asarray(cps.points))


# --- FitResult -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    return fit(NET, XS, XS**2, n_steps=6, chunk=3, progress=False)


def test_fit_result(trained):
    assert isinstance(trained, FitResult) and bool(trained.successful)
    final = float(trained.losses[-1])
    assert f"final loss {final:.6g}" in trained.summary()
    ax = trained.plot()
    assert ax.get_yscale() == "log"
    _closes(ax)


def test_fit_throw_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"loss became non-finite.*step 1 .*`lr`"):
        fit(NET, XS, XS, n_steps=4, chunk=2, optimizer=optax.sgd(1e200), progress=False)
    res = fit(NET, XS, XS, n_steps=4, chunk=2, optimizer=optax.sgd(1e200), progress=False, throw=False)
    assert not bool(res.successful) and res.failed_step == 1
    assert _is(res.result, RESULTS.nonfinite_loss)
    assert "step 1" in res.summary() and np.isnan(np.asarray(res.losses[2:])).all()
    _closes(res.plot())
    with pytest.raises(TypeError, match="`throw`"):
        fit(NET, XS, XS, n_steps=1, progress=False, throw=1)


def test_fit_old_steps_keyword(trained):
    with pytest.warns(DeprecationWarning, match="n_steps"):
        res = fit(NET, XS, XS**2, steps=6, chunk=3, progress=False)
    np.testing.assert_array_equal(np.asarray(res.losses), np.asarray(trained.losses))


# --- NeuralODESolution and VariationalResult ----------------------------------------------------
def test_neural_ode_solution():
    sol = DECAY.solve(jnp.array([1.0, -0.5]), ts=jnp.linspace(0.0, 1.0, 5))
    assert isinstance(sol, NeuralODESolution) and bool(sol.successful)
    assert sol.summary() == "successful (t = 1)"
    ax = sol.plot()
    assert len(ax.lines) == 2
    _closes(ax)
    _closes(DECAY.solve(jnp.array([1.0, -0.5])).plot())  # no ts: the end state


def test_neural_ode_solve_throw_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match="blew up in finite time"):
        BLOWUP.solve(jnp.array([1.0]))
    sol = BLOWUP.solve(jnp.array([1.0]), ts=jnp.linspace(0.0, 2.0, 5), throw=False)
    assert _is(sol.result, RESULTS.finite_time_blowup)
    assert "First seen at step" in sol.summary()
    ax = sol.plot()
    assert "finite time" in ax.get_title()
    _closes(ax)
    with pytest.raises(TypeError, match="`throw`"):
        DECAY.solve(jnp.ones(2), throw=None)


def test_variational_result():
    var = DECAY.variational(jnp.array([1.0, -0.5]))
    assert isinstance(var, VariationalResult) and bool(var.successful)
    np.testing.assert_allclose(np.asarray(var.log_det_flow), -2.0, rtol=1e-6)
    assert "log det Dphi_T = -2" in var.summary()
    _closes(var.plot())
    with pytest.warns(DeprecationWarning, match="VariationalResult"):
        assert jm.Variational is VariationalResult


def test_variational_throw_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match="blew up"):
        BLOWUP.variational(jnp.array([1.0]))
    var = BLOWUP.variational(jnp.array([1.0]), throw=False)
    assert _is(var.result, RESULTS.finite_time_blowup)
    assert np.isnan(np.asarray(var.jacobian)).all() and "finite time" in var.summary()
    batched = jax.vmap(lambda x: BLOWUP.variational(x, throw=False))(jnp.array([[1.0], [-1.0]]))
    assert list(np.asarray(batched.successful)) == [False, True]


# --- the residual-network base and the field interface -------------------------------------------
@pytest.mark.parametrize("cls", [ResNet, DenseResNet])
def test_residual_networks_share_the_lifted_base(cls):
    net = cls(3, 4, in_size=2, out_size=1, key=KEY)
    assert isinstance(net, AbstractResidualNetwork) and isinstance(net, AbstractLiftedModel)
    x = jnp.array([0.3, -0.2])
    hs = net.hidden_states(x)
    np.testing.assert_array_equal(np.asarray(hs), np.asarray(net.states_from(net.lift(x))))
    np.testing.assert_array_equal(np.asarray(net(x)), np.asarray(net.readout(hs[-1])))
    assert (net.in_size, net.out_size, net.state_size) == (2, 1, 3)
    assert net.widths == (2, 3, 3, 3, 3, 3, 1)


def test_field_size_declared_by_abstract_field():
    class Rotation(AbstractField):
        size: int = 2

        def __call__(self, t, y, args):
            return jnp.array([-y[1], y[0]])

    assert NeuralODE(Rotation()).state_size == 2
    with pytest.raises(ValueError, match="AbstractField"):
        NeuralODE(lambda t, y, args: y)  # a plain callable declares no size
    sol = NeuralODE(Rotation(), solver=diffrax.Tsit5()).solve(jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(np.asarray(sol.output), [np.cos(1.0), np.sin(1.0)], rtol=1e-5)
