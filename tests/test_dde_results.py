"""The result objects of `jaxdyn.dde` and the neural DDE (`DDESolution`, `MemoryCapacityResult`):
summary and plot, both failure modes, the strategies, and the deprecated spellings."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import jaxdyn.models as jm
from jaxdyn import dde
from jaxdyn._results import RESULTS, AbstractResult


def decay(t, y, yd, args):
    return -yd[0]


def overflow(t, y, yd, args):
    return y**2 * yd[0]


@pytest.fixture(scope="module")
def adaptive():
    return dde.solve(decay, jnp.ones(2), jnp.array([1.0]), 0.0, 3.0, dt0=0.1,
                     saveat=jnp.linspace(0.0, 3.0, 7),
                     stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8), max_steps=256)


@pytest.fixture(scope="module")
def fixed():
    return dde.solve_fixed(decay, jnp.array(1.0), jnp.array([1.0]), 0.0, 3.0, n_steps=30)


def test_dde_solution_summary_and_plot(adaptive):
    assert isinstance(adaptive, AbstractResult)
    assert adaptive.result == RESULTS.successful
    text = adaptive.summary()
    assert f"{int(adaptive.stats['num_accepted_steps'])} accepted steps" in text
    assert "successful" in text
    assert f"{float(adaptive.ys[-1, 0]):.6f}"[:6] in text  # the state at the last saved time
    ax = adaptive.plot()
    assert len(ax.lines) == 2  # one line per component
    plt.close(ax.figure)
    fig, given = plt.subplots()
    assert adaptive.plot(ax=given) is given
    plt.close(fig)


def test_dde_solution_plot_dense_output_and_failure():
    only_end = dde.solve(decay, jnp.array(1.0), jnp.array([1.0]), 0.0, 3.0, dt0=0.1, max_steps=64)
    ax = only_end.plot()
    assert len(ax.lines[0].get_xdata()) == 400  # the dense output, not one saved point
    plt.close(ax.figure)
    failed = dde.solve_fixed(overflow, jnp.array(1.0), jnp.array([0.5]), 0.0, 5.0, n_steps=50, throw=False)
    text = failed.summary()
    assert "non-finite" in text and "failed at step" in text
    ax = failed.plot()
    assert any("failure" in str(line.get_label()) for line in ax.lines)
    plt.close(ax.figure)
    batched = jax.vmap(lambda h: dde.solve(decay, h, jnp.array([1.0]), 0.0, 1.0, dt0=0.1, max_steps=16))(
        jnp.ones(2))
    assert "2 solutions" in batched.summary()
    with pytest.raises(ValueError, match="member"):
        batched.plot()


def test_solve_fixed_solution_dense_output(fixed):
    """The fixed-step solution's dense output is the Hermite interpolant the solver reads its delayed
    values from: it reproduces the grid, the history, and the exact solution to the scheme's order."""
    np.testing.assert_allclose(fixed.evaluate(fixed.ts), fixed.ys, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fixed.evaluate(-0.5), 1.0)
    t = jnp.array([0.55, 1.55, 2.55])
    exact = np.array([1 - 0.55, 1 - 1.55 + 0.55**2 / 2, 1 - 2.55 + 1.55**2 / 2 - 0.55**3 / 6])
    np.testing.assert_allclose(fixed.evaluate(t), exact, atol=1e-5)
    assert f"{fixed.ts.shape[0]} times" in fixed.summary()


def test_solve_fixed_both_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        dde.solve_fixed(overflow, jnp.array(1.0), jnp.array([0.5]), 0.0, 5.0, n_steps=50)
    sol = dde.solve_fixed(overflow, jnp.array(1.0), jnp.array([0.5]), 0.0, 5.0, n_steps=50, throw=False)
    assert sol.result == RESULTS.nonfinite_state
    assert np.all(np.isfinite(np.asarray(sol.ys[: int(sol.failed_step)])))
    # under jit the same failure raises through eqx.error_if
    run = jax.jit(lambda h: dde.solve_fixed(overflow, h, jnp.array([0.5]), 0.0, 5.0, n_steps=50).ys)
    with pytest.raises(Exception, match="non-finite"):
        run(jnp.array(1.0))


def test_solve_both_modes_under_jit():
    def run(h, throw):
        return dde.solve(decay, h, jnp.array([1.0]), 0.0, 5.0, dt0=0.1, max_steps=8, throw=throw)

    sol = jax.jit(lambda h: run(h, False))(jnp.array(1.0))
    assert sol.result == RESULTS.max_steps_reached
    with pytest.raises(Exception, match="max_steps"):
        jax.jit(lambda h: run(h, True).ys)(jnp.array(1.0))


def test_memory_capacity_result_summary_and_plot(getkey):
    model = jm.NeuralDDE(jm.DelayMLPField(2, 4, 1, 1, key=getkey()), jnp.array([0.5]))
    res = jm.memory_capacity(model)
    assert isinstance(res, jm.MemoryCapacityResult) and isinstance(res, AbstractResult)
    assert res.result == RESULTS.successful
    text = res.summary()
    assert f"{float(res.capacity):.6g}" in text and "successful" in text
    ax = res.plot()
    assert ax.get_xscale() == "log"
    plt.close(ax.figure)


def test_deprecated_spellings(getkey):
    with pytest.warns(DeprecationWarning, match="jaxdyn.dde.HEUN"):
        old = dde.solve_fixed(decay, jnp.array(1.0), jnp.array([1.0]), 0.0, 2.0, n_steps=20, method="heun")
    new = dde.solve_fixed(decay, jnp.array(1.0), jnp.array([1.0]), 0.0, 2.0, n_steps=20, method=dde.HEUN)
    np.testing.assert_array_equal(old.ys, new.ys)
    with pytest.warns(DeprecationWarning, match="sol.ys"):
        ts, ys = new
    np.testing.assert_array_equal(ys, new.ys)
    with pytest.warns(DeprecationWarning, match="sol.ys"):
        assert new[1] is new.ys
    with pytest.warns(DeprecationWarning, match="jaxdyn.dde.EULER"):
        step = jm.FixedStep(20, "euler")
    assert step.method == dde.EULER
    with pytest.warns(DeprecationWarning, match="MemoryCapacityResult"):
        assert jm.MemoryCapacity is jm.MemoryCapacityResult


class HalvedFixedStep(jm.AbstractStepping):
    """A user strategy: the fixed-step path with twice the steps of `FixedStep`'s default."""

    n_steps: int | None = eqx.field(static=True, default=None)

    def resolve(self, t1, delays):
        return HalvedFixedStep(2 * jm.FixedStep().resolve(t1, delays).n_steps)

    def trajectory(self, field, h0, delays, t1, *, args=None):
        sol = dde.solve_fixed(field, h0, delays, 0.0, t1, n_steps=self.n_steps, args=args)
        return sol.ts, sol.ys


def test_stepping_strategy_interface(getkey):
    field = jm.DelayMLPField(2, 4, 1, 1, key=getkey())
    model = jm.NeuralDDE(field, jnp.array([0.5]), stepping=HalvedFixedStep())
    assert model.stepping.n_steps == 40
    reference = jm.NeuralDDE(field, jnp.array([0.5]), stepping=jm.FixedStep(40))
    x = jnp.array([0.3, -0.2])
    np.testing.assert_array_equal(model(x), reference(x))
    with pytest.raises(TypeError, match="delay_lipschitz"):
        jm.memory_capacity(jm.NeuralDDE(lambda t, h, hd, a: -hd[0], jnp.array([0.5]), state_size=2))
