"""The result objects of `jaxdyn.meanfield` (summary and plot), both failure modes of each entry that
can fail at run time, the coupling strategies, the particle-system interface and the deprecations."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import matplotlib.pyplot as plt
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn._kernels import RK4
from jaxdyn._results import RESULTS, AbstractResult, codes
from jaxdyn.meanfield import graphons

N = 8
OMEGA = jnp.linspace(-0.5, 0.5, N)
THETA = jnp.sin(jnp.arange(N, dtype=float))
TS = jnp.linspace(0.0, 2.0, 5)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _is_axes(ax):
    return hasattr(ax, "plot") and hasattr(ax, "figure")


# ------------------------------------------------------------------------------------------------
# results: summary() names the headline number, plot() returns axes
# ------------------------------------------------------------------------------------------------


def test_simulation_result():
    out = mf.simulate(mf.Kuramoto(OMEGA, 2.0), THETA, TS, rtol=1e-6, atol=1e-6)
    assert isinstance(out, mf.SimulationResult) and isinstance(out, AbstractResult)
    r = float(jnp.abs(mf.order_parameter(out.ys[-1])))
    text = out.summary()
    assert f"r(t1) = {r:.4g}" in text and "successful" in text
    assert _is_axes(out.plot())
    fig, ax = plt.subplots()
    assert out.plot(ax=ax) is ax
    # a neural field is not circular: no order parameter, drawn around 0
    nf = mf.simulate(mf.NeuralField(jnp.ones(4)), jnp.zeros(4), TS, rtol=1e-6, atol=1e-6)
    assert not nf.circular and "r(t1)" not in nf.summary()
    assert _is_axes(nf.plot())


def test_ott_antonsen_result_and_both_modes():
    out = mf.ott_antonsen(0.1 + 0.05j, TS, coupling=3.0, gamma=0.5)
    assert isinstance(out, mf.OttAntonsenResult) and bool(out.successful)
    assert f"{abs(complex(out.z[-1])):.4g}" in out.summary()
    assert _is_axes(out.plot())
    failed = mf.ott_antonsen(0.1 + 0.05j, TS, coupling=3.0, gamma=0.5, max_steps=2, throw=False)
    assert codes(failed.result) == RESULTS.max_steps_reached._value
    assert np.isnan(np.asarray(failed.z)[-1]) and "FAILED" in failed.summary()
    with pytest.raises(eqx.EquinoxRuntimeError, match="maximum number of steps"):
        mf.ott_antonsen(0.1 + 0.05j, TS, coupling=3.0, gamma=0.5, max_steps=2)
    # on a graphon: one local z per position
    local = mf.ott_antonsen(jnp.full(4, 0.2 + 0.1j), TS, coupling=3.0, gamma=0.5, graph=graphons.ring(0.25))
    assert local.z.shape == (5, 4) and "M = 4" in local.summary()
    assert _is_axes(local.plot())


def test_vlasov_result_and_both_modes():
    theta0, omega = THETA.reshape(2, 4), OMEGA.reshape(2, 4)
    weights = jnp.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    out = mf.vlasov(graphons.fourier([0.5, 0.3]), theta0, omega, TS, coupling=2.0, weights=weights)
    assert isinstance(out, mf.VlasovResult) and out.theta.shape == (5, 2, 4)
    z = np.asarray(out.cell_order_parameters())
    np.testing.assert_allclose(z[-1, 0], np.sum(weights[0] * np.exp(1j * np.asarray(out.theta[-1, 0]))))
    assert f"{np.abs(z[-1]).min():.4g}" in out.summary() and "2 cells x 4 particles" in out.summary()
    assert _is_axes(out.plot())
    failed = mf.vlasov(None, theta0, omega, TS, coupling=2.0, max_steps=2, throw=False)
    assert codes(failed.result) == RESULTS.max_steps_reached._value and "FAILED" in failed.summary()
    with pytest.raises(eqx.EquinoxRuntimeError, match="`vlasov` failed at step 2"):
        mf.vlasov(None, theta0, omega, TS, coupling=2.0, max_steps=2)


def _blowup():
    return mf.NeuralField(jnp.ones(4), coupling=2.0, activation=jnp.square)


def test_simulate_both_modes_and_under_jit():
    ts = TS * 1.5
    failed = mf.simulate(_blowup(), jnp.zeros(4), ts, throw=False)
    assert codes(failed.result) == RESULTS.finite_time_blowup._value
    with pytest.raises(eqx.EquinoxRuntimeError, match="blew up in finite time.*`simulate` failed at step"):
        mf.simulate(_blowup(), jnp.zeros(4), ts)
    # throw=False under jit and vmap: elementwise codes, no error
    batch = jnp.stack([jnp.zeros(4), jnp.full(4, -0.5)])
    run = eqx.filter_jit(eqx.filter_vmap(lambda y0: mf.simulate(_blowup(), y0, ts, throw=False).result))
    got = codes(run(batch))
    assert got[0] == RESULTS.finite_time_blowup._value


def test_two_layer_result_and_both_modes():
    x, y = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2), jnp.arange(4.0)
    model = mf.TwoLayer(jnp.ones(3), jnp.ones((3, 2)))
    out = mf.two_layer_gd(model, x, y, n_steps=5, lr=0.1)
    assert f"{float(out.losses[-1]):.6g}" in out.summary()
    assert _is_axes(out.plot())
    big = mf.TwoLayer(jnp.full(3, 3.0), jnp.ones((3, 2)), activation=lambda v: v**3)
    failed = mf.two_layer_gd(big, x, 3 * y, n_steps=40, lr=50.0, throw=False)
    assert not bool(failed.successful) and int(failed.failed_step) >= 0
    with pytest.raises(eqx.EquinoxRuntimeError, match="`two_layer_gd` failed at step"):
        mf.two_layer_gd(big, x, 3 * y, n_steps=40, lr=50.0)


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------


def test_none_picks_the_cheapest_exact_operator():
    cases = [
        (None, mf.AllToAll),
        (graphons.constant(0.3), mf.AllToAll),
        (graphons.ring(0.2), mf.Circulant),
        (graphons.stochastic_block([0.5, 0.5], [[0.9, 0.1], [0.1, 0.5]]), mf.LowRank),
        (graphons.power_law(), mf.Dense),
        (jnp.ones((N, N)), mf.Dense),
        (([0, 1], [1, 2]), mf.Sparse),
    ]
    for graph, op in cases:
        assert isinstance(mf.coupling_operator(graph, N), op), (graph, op)
    # off the grid the ring has no FFT: dense
    x = jnp.linspace(0.05, 0.95, N)
    assert isinstance(mf.coupling_operator(graphons.ring(0.2), N, positions=x), mf.Dense)
    for method in (mf.AllToAllMethod(), mf.DenseMethod(), mf.FFTMethod(), mf.LowRankMethod(),
                   mf.SparseMethod()):
        assert isinstance(method, mf.AbstractCouplingMethod)


def test_general_coupling_function_uses_the_pairs_of_every_operator():
    g = mf.Harmonics(sin=[1.0, -0.3], cos=[0.2])
    w = graphons.fourier([0.5, 0.5])
    ref = mf.Kuramoto(OMEGA, 1.3, graph=w, g=g, phase_lag=0.2)(0.0, THETA)
    for method in (mf.FFTMethod(), mf.LowRankMethod(), mf.DenseMethod(), mf.SparseMethod()):
        op = mf.coupling_operator(w, N, method=method)
        assert isinstance(op.pairs(), mf.Dense | mf.Sparse)
        field = mf.Kuramoto(OMEGA, 1.3, graph=op, g=lambda p: g(p), phase_lag=0.2)
        np.testing.assert_allclose(field(0.0, THETA), ref, atol=1e-13)


def test_old_method_strings_warn_and_still_work():
    w = graphons.fourier([0.5, 0.5])
    for old, new in (("dense", mf.DenseMethod), ("fft", mf.FFTMethod), ("low_rank", mf.LowRankMethod),
                     ("sparse", mf.SparseMethod), ("all_to_all", mf.AllToAllMethod)):
        graph = graphons.constant(0.5) if old == "all_to_all" else w
        with pytest.warns(DeprecationWarning, match=f"{new.__name__}\\(\\)"):
            field = mf.Kuramoto(OMEGA, 1.0, graph=graph, method=old)
        expect = mf.Kuramoto(OMEGA, 1.0, graph=graph, method=new())
        assert type(field.operator) is type(expect.operator)
    with pytest.warns(DeprecationWarning, match="method=None"):
        op = mf.coupling_operator(w, N, method="auto")
    assert isinstance(op, mf.Circulant)
    z0, th0, om0 = jnp.full(N, 0.1 + 0j), THETA.reshape(2, 4), OMEGA.reshape(2, 4)
    for call in (lambda m: mf.NeuralField(OMEGA, graph=w, method=m),
                 lambda m: mf.local_order_parameter(THETA, method=m),
                 lambda m: mf.ott_antonsen(z0, TS, coupling=1.0, gamma=0.5, graph=w, method=m),
                 lambda m: mf.vlasov(w, th0, om0, TS, coupling=1.0, method=m)):
        with pytest.warns(DeprecationWarning, match="DenseMethod"):
            call("dense")
    with pytest.raises(ValueError, match="`method`"):
        mf.coupling_operator(w, N, method="magic")


def test_old_steps_keyword_warns_and_still_works():
    x, y = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2), jnp.arange(4.0)
    model = mf.TwoLayer(jnp.ones(3), jnp.ones((3, 2)))
    with pytest.warns(DeprecationWarning, match="n_steps"):
        old = mf.two_layer_gd(model, x, y, steps=3, lr=0.1)
    new = mf.two_layer_gd(model, x, y, n_steps=3, lr=0.1)
    np.testing.assert_array_equal(old.losses, new.losses)


# ------------------------------------------------------------------------------------------------
# the particle-system interface and the shared RK4 tableau
# ------------------------------------------------------------------------------------------------


class _NoisyDrift(mf.AbstractParticleSystem):
    """A user particle system: dy = -y dt + sigma dB on n nodes."""

    n: int = eqx.field(static=True)
    noise: float = eqx.field(static=True)
    nodes_from = "`n`"
    circular = False

    def __call__(self, t, y, args=None):
        return -y

    def diffusion(self, t, y, args=None):
        return lx.DiagonalLinearOperator(jnp.full(y.shape, self.noise))


def test_user_particle_system_and_plain_vector_field():
    system = _NoisyDrift(4, 0.3)
    out = mf.simulate(system, jnp.ones(4), TS, key=jax.random.key(0), dt0=0.05)
    assert bool(out.successful) and out.ys.shape == (5, 4)
    with pytest.raises(ValueError, match="`y0` must have shape \\(4,\\): `n` has N = 4"):
        mf.simulate(system, jnp.ones(3), TS, key=jax.random.key(0))
    # a plain callable is an ODE of any state shape
    plain = mf.simulate(lambda t, y, args: -y, jnp.ones((2, 3)), TS, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(plain.ys[:, 0, 0], np.exp(-np.asarray(TS)), rtol=1e-8)


def test_rk4_is_the_shared_tableau():
    tab = mf.RK4.tableau
    ref = RK4.to_diffrax()
    np.testing.assert_array_equal(tab.b_sol, ref.b_sol)
    np.testing.assert_array_equal(tab.c, ref.c)
    for a, b in zip(tab.a_lower, ref.a_lower):
        np.testing.assert_array_equal(a, b)
    assert isinstance(mf.RK4(), diffrax.AbstractERK)


def test_batched_limits_summarise():
    run = eqx.filter_vmap(lambda k: mf.ott_antonsen(0.1 + 0.05j, TS, coupling=k, gamma=0.5, max_steps=64,
                                                    throw=False))
    out = run(jnp.array([2.0, 3.0]))
    assert out.z.shape == (2, 5) and "batch of 2" in out.summary()
    assert "FAILED" in out.summary() or "successful" in out.summary()
