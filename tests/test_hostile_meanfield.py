"""The hostile-input table of `jaxdyn.meanfield`: each bad input gets a clear error naming the argument
before any compilation, or a result whose code says what failed and where."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse as jsparse

import jaxdyn.meanfield as mf
from jaxdyn._results import RESULTS
from jaxdyn.meanfield import graphons
from tests.helpers import Hostile, hostile_ids, run_hostile

N = 6
OMEGA = jnp.linspace(-1.0, 1.0, N)
THETA = jnp.sin(jnp.arange(N, dtype=float))
TS = jnp.linspace(0.0, 1.0, 3)
X = jnp.ones((4, 2))
Y = jnp.ones(4)


def _model():
    return mf.TwoLayer(jnp.ones(3), jnp.ones((3, 2)))


class _NoisyModule(eqx.Module):
    """A would-be SDE written as a plain module: its noise must not be dropped silently."""

    noise: float = 0.1

    def __call__(self, t, y, args=None):
        return -y


def _blowup_field():
    # m' = -m + 2 m^2 + 1 (all-to-all, quadratic activation): a finite-time blow-up near t = 1.46
    return mf.NeuralField(jnp.ones(4), coupling=2.0, activation=jnp.square)


def _fails(code, *, time=None):
    """A flag: the result's code is `code`, with a failed step and (optionally) a failed time near `time`."""

    def check(out):
        ok = int(out.result._value) == code._value and int(out.failed_step) >= 0
        if time is not None:
            ok = ok and abs(float(out.failed_time) - time) < 0.05
        return ok and "FAILED" in out.summary()

    return check


def _float64_and_successful(out):
    return out.ys.dtype == jnp.float64 and bool(out.successful)


ROWS = [
    # --- Kuramoto / NeuralField construction ---
    Hostile(
        "Kuramoto: NaN omega", lambda: mf.Kuramoto(OMEGA.at[0].set(jnp.nan), 1.0), ValueError, r"`omega`"
    ),
    Hostile("Kuramoto: inf coupling", lambda: mf.Kuramoto(OMEGA, jnp.inf), ValueError, r"`coupling`"),
    Hostile(
        "Kuramoto: NaN phase lag",
        lambda: mf.Kuramoto(OMEGA, 1.0, phase_lag=jnp.nan),
        ValueError,
        r"`phase_lag`",
    ),
    Hostile("Kuramoto: vector coupling", lambda: mf.Kuramoto(OMEGA, jnp.ones(2)), ValueError, r"`coupling`"),
    Hostile(
        "Kuramoto: no oscillators (N = 0)", lambda: mf.Kuramoto(jnp.zeros(0), 1.0), ValueError, r"`omega`"
    ),
    Hostile("Kuramoto: noise < 0", lambda: mf.Kuramoto(OMEGA, 1.0, noise=-0.1), ValueError, r"`noise`"),
    Hostile(
        "Kuramoto: NaN noise", lambda: mf.Kuramoto(OMEGA, 1.0, noise=float("nan")), ValueError, r"`noise`"
    ),
    Hostile(
        "Kuramoto: graph of another size",
        lambda: mf.Kuramoto(OMEGA, 1.0, graph=jnp.ones((N + 1, N + 1))),
        ValueError,
        r"`graph`",
    ),
    Hostile(
        "Kuramoto: non-square graph",
        lambda: mf.Kuramoto(OMEGA, 1.0, graph=jnp.ones((N, N + 1)), method=mf.DenseMethod()),
        ValueError,
        r"`graph`",
    ),
    Hostile(
        "Kuramoto: positions of another size",
        lambda: mf.Kuramoto(OMEGA, 1.0, graph=graphons.ring(0.2), positions=jnp.linspace(0, 1, N + 2)),
        ValueError,
        r"`positions`",
    ),
    Hostile(
        "Kuramoto: positions outside [0, 1]",
        lambda: mf.Kuramoto(OMEGA, 1.0, graph=graphons.ring(0.2), positions=jnp.linspace(0, 2, N)),
        ValueError,
        r"`positions`",
    ),
    Hostile(
        "Kuramoto: edge list index out of range",
        lambda: mf.Kuramoto(OMEGA, 1.0, graph=([0, N], [1, 2])),
        ValueError,
        r"`graph`",
    ),
    Hostile(
        "Kuramoto: negative edge index",
        lambda: mf.Kuramoto(OMEGA, 1.0, graph=([0, -1], [1, 2])),
        ValueError,
        r"`graph`",
    ),
    Hostile(
        "Kuramoto: BCOO with indices out of range",
        lambda: mf.Kuramoto(
            OMEGA, 1.0, graph=jsparse.BCOO((jnp.ones(1), jnp.array([[0, N + 3]])), shape=(N, N))
        ),
        ValueError,
        r"`graph`",
    ),
    Hostile(
        "Sparse: column index out of range", lambda: mf.Sparse([0, 1], [1, N], 1.0, N), ValueError, r"`cols`"
    ),
    Hostile(
        "Sparse: weights of another length",
        lambda: mf.Sparse([0, 1], [1, 2], jnp.ones(3), N),
        ValueError,
        r"`weights`",
    ),
    Hostile(
        "Kuramoto: unknown method", lambda: mf.Kuramoto(OMEGA, 1.0, method="magic"), ValueError, r"`method`"
    ),
    Hostile(
        "NeuralField: NaN bias", lambda: mf.NeuralField(jnp.array([0.0, jnp.nan])), ValueError, r"`bias`"
    ),
    # --- graphons and digraph measures ---
    Hostile("graphons.constant: p > 1", lambda: graphons.constant(1.2), ValueError, r"`p`"),
    Hostile("graphons.small_world: q < 0", lambda: graphons.small_world(0.2, 0.9, -0.1), ValueError, r"`q`"),
    Hostile(
        "graphons.general: values outside [0, 1]",
        lambda: graphons.general(lambda x, y: 1.5 + 0 * x),
        ValueError,
        r"`fn`",
    ),
    Hostile(
        "graphons.fourier: values outside [0, 1]",
        lambda: graphons.fourier([0.5, 0.8]),
        ValueError,
        r"`coeffs`",
    ),
    Hostile("graphons.ring: radius > 1/2", lambda: graphons.ring(0.7), ValueError, r"`radius`"),
    Hostile("graphons.power_law: alpha >= 1", lambda: graphons.power_law(1.5), ValueError, r"`alpha`"),
    Hostile(
        "graphons.stochastic_block: probs > 1",
        lambda: graphons.stochastic_block([0.5, 0.5], [[0.9, 1.2], [1.2, 0.7]]),
        ValueError,
        r"`probs`",
    ),
    Hostile(
        "graphons.stochastic_block: asymmetric probs",
        lambda: graphons.stochastic_block([0.5, 0.5], [[0.9, 0.1], [0.2, 0.7]]),
        ValueError,
        r"`probs`",
    ),
    Hostile(
        "graphons.stochastic_block: sizes not summing to 1",
        lambda: graphons.stochastic_block([0.5, 0.6], [[0.9, 0.1], [0.1, 0.7]]),
        ValueError,
        r"`sizes`",
    ),
    Hostile(
        "graphons.stochastic_block: sizes of another length",
        lambda: graphons.stochastic_block([1.0], [[0.9, 0.1], [0.1, 0.7]]),
        ValueError,
        r"`sizes`",
    ),
    Hostile(
        "graphons.step: matrix outside [0, 1]",
        lambda: graphons.step(np.array([[0.0, 2.0], [2.0, 0.0]])),
        ValueError,
        r"`matrix`",
    ),
    Hostile(
        "DigraphMeasure: negative atom weights",
        lambda: mf.DigraphMeasure(None, jnp.array([0.5]), jnp.array([[-1.0]])),
        ValueError,
        r"`atom_weights`",
    ),
    Hostile(
        "DigraphMeasure: negative density",
        lambda: mf.DigraphMeasure(lambda x, y: x - y),
        ValueError,
        r"`density`",
    ),
    Hostile(
        "DigraphMeasure: atoms outside [0, 1]",
        lambda: mf.DigraphMeasure(None, jnp.array([1.5]), jnp.array([[1.0]])),
        ValueError,
        r"`atom_positions`",
    ),
    Hostile(
        "sample_graph: graphon outside [0, 1]",
        lambda: mf.sample_graph(_BadGraphon(), 10, key=jax.random.key(0)),
        ValueError,
        r"`graphon`",
    ),
    Hostile(
        "sample_graph: density > 1",
        lambda: mf.sample_graph(graphons.constant(0.5), 10, key=jax.random.key(0), density=1.5),
        ValueError,
        r"`density`",
    ),
    Hostile(
        "sample_graph: n = 0",
        lambda: mf.sample_graph(graphons.constant(0.5), 0, key=jax.random.key(0)),
        ValueError,
        r"`n`",
    ),
    # --- frequency and phase samples ---
    Hostile(
        "lorentzian_quantiles: negative width",
        lambda: mf.lorentzian_quantiles(8, -1.0),
        ValueError,
        r"`gamma`",
    ),
    Hostile(
        "lorentzian_quantiles: NaN centre",
        lambda: mf.lorentzian_quantiles(8, 1.0, float("nan")),
        ValueError,
        r"`center`",
    ),
    Hostile("gaussian_quantiles: zero width", lambda: mf.gaussian_quantiles(8, 0.0), ValueError, r"`sigma`"),
    Hostile(
        "wrapped_cauchy_quantiles: N = 1 (one phase has no order parameter r0 < 1)",
        lambda: mf.wrapped_cauchy_quantiles(1, 0.4),
        ValueError,
        r"`n`",
    ),
    Hostile(
        "wrapped_cauchy_quantiles: r0 = 1", lambda: mf.wrapped_cauchy_quantiles(8, 1.0), ValueError, r"`r0`"
    ),
    # --- simulate ---
    Hostile(
        "simulate: theta0 of another length than omega",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), jnp.zeros(N + 2), TS),
        ValueError,
        r"`y0`",
    ),
    Hostile(
        "simulate: NeuralField state of another length",
        lambda: mf.simulate(mf.NeuralField(jnp.ones(3)), jnp.zeros(5), TS),
        ValueError,
        r"`y0`",
    ),
    Hostile(
        "Kuramoto.__call__: theta of another length",
        lambda: mf.Kuramoto(OMEGA, 1.0)(0.0, jnp.zeros(N + 1)),
        ValueError,
        r"`theta`",
    ),
    Hostile(
        "simulate: NaN phases",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA.at[1].set(jnp.nan), TS),
        ValueError,
        r"`y0`",
    ),
    Hostile(
        "simulate: inf phases",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA.at[1].set(jnp.inf), TS),
        ValueError,
        r"`y0`",
    ),
    Hostile(
        "simulate: t1 < t0",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, jnp.array([1.0, 0.0])),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "simulate: NaN save time",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, jnp.array([0.0, jnp.nan, 1.0])),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "simulate: one save time",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, jnp.array([0.0])),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "simulate: dt0 = 0",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, solver=mf.RK4(), dt0=0.0),
        ValueError,
        r"`dt0`",
    ),
    Hostile(
        "simulate: dt0 < 0",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, solver=mf.RK4(), dt0=-0.1),
        ValueError,
        r"`dt0`",
    ),
    Hostile(
        "simulate: fixed-step solver without dt0",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, solver=mf.RK4()),
        ValueError,
        r"`dt0`",
    ),
    Hostile(
        "simulate: rtol <= 0",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, rtol=0.0),
        ValueError,
        r"`rtol`",
    ),
    Hostile(
        "simulate: max_steps = 0",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, max_steps=0),
        ValueError,
        r"`max_steps`",
    ),
    Hostile(
        "simulate: SDE without key",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 0.0, noise=0.1), THETA, TS),
        ValueError,
        r"`key`",
    ),
    Hostile(
        "simulate: adjoint not a diffrax adjoint",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, adjoint="forward"),
        TypeError,
        r"`adjoint`",
    ),
    Hostile(
        "simulate: float32 state with a float64 field (promoted)",  # the compiled solve of the row below
        lambda: mf.simulate(
            _blowup_field(), jnp.full(4, 0.1, jnp.float32), TS * 0.3, solver=mf.RK4(), dt0=0.01
        ),
        None,
        flagged=_float64_and_successful,
    ),
    Hostile(
        "simulate: NeuralField blows up (adaptive): code, step and time",
        lambda: mf.simulate(_blowup_field(), jnp.zeros(4), TS * 3, throw=False),
        None,
        flagged=_fails(RESULTS.finite_time_blowup, time=1.46),
    ),
    Hostile(
        "simulate: NeuralField blows up (fixed steps): non-finite state, step and time",
        lambda: mf.simulate(_blowup_field(), jnp.zeros(4), TS * 3, solver=mf.RK4(), dt0=0.01, throw=False),
        None,
        flagged=_fails(RESULTS.nonfinite_state, time=1.49),
    ),
    Hostile(
        "simulate: blow-up raises by default, saying where",
        lambda: mf.simulate(_blowup_field(), jnp.zeros(4), TS * 3),
        eqx.EquinoxRuntimeError,
        r"`simulate` failed .*step \d+ \(t = 1\.46",
    ),
    Hostile(
        "simulate: blow-up under eqx.filter_jit raises",
        lambda: eqx.filter_jit(lambda y0: mf.simulate(_blowup_field(), y0, TS * 3).ys)(jnp.zeros(4)),
        eqx.EquinoxRuntimeError,
        r"blew up in finite time",
        near_top=None,
    ),
    # --- mean-field limits ---
    Hostile(
        "ott_antonsen: gamma < 0",
        lambda: mf.ott_antonsen(0.1, TS, coupling=1.0, gamma=-0.5),
        ValueError,
        r"`gamma`",
    ),
    Hostile(
        "ott_antonsen: NaN gamma",
        lambda: mf.ott_antonsen(0.1, TS, coupling=1.0, gamma=float("nan")),
        ValueError,
        r"`gamma`",
    ),
    Hostile(
        "ott_antonsen: inf coupling",
        lambda: mf.ott_antonsen(0.1, TS, coupling=jnp.inf, gamma=0.5),
        ValueError,
        r"`coupling`",
    ),
    Hostile(
        "ott_antonsen: |z0| > 1",
        lambda: mf.ott_antonsen(1.5, TS, coupling=1.0, gamma=0.5),
        ValueError,
        r"`z0`",
    ),
    Hostile(
        "ott_antonsen: t1 < t0",
        lambda: mf.ott_antonsen(0.1, TS[::-1], coupling=1.0, gamma=0.5),
        ValueError,
        r"`ts`",
    ),
    Hostile(
        "vlasov: omega of another shape",
        lambda: mf.vlasov(None, jnp.zeros((2, 3)), jnp.zeros((2, 4)), TS, coupling=1.0),
        ValueError,
        r"`omega`",
    ),
    Hostile(
        "vlasov: NaN phases",
        lambda: mf.vlasov(None, jnp.full((2, 3), jnp.nan), jnp.zeros((2, 3)), TS, coupling=1.0),
        ValueError,
        r"`theta0`",
    ),
    Hostile(
        "vlasov: NaN weights",
        lambda: mf.vlasov(
            None, jnp.zeros((2, 3)), jnp.zeros((2, 3)), TS, coupling=1.0,
            weights=jnp.full((2, 3), jnp.nan),
        ),
        ValueError,
        r"`weights`",
    ),
    Hostile(
        "vlasov: negative weights",
        lambda: mf.vlasov(
            None, jnp.zeros((2, 3)), jnp.zeros((2, 3)), TS, coupling=1.0, weights=-jnp.ones((2, 3)) / 3
        ),
        ValueError,
        r"`weights`",
    ),
    Hostile(
        "vlasov: NaN coupling",
        lambda: mf.vlasov(None, jnp.zeros((2, 3)), jnp.zeros((2, 3)), TS, coupling=jnp.nan),
        ValueError,
        r"`coupling`",
    ),
    Hostile(
        "w1_cells: different numbers of cells",
        lambda: mf.w1_cells(np.zeros((2, 3)), np.zeros((3, 3))),
        ValueError,
        r"`theta_a`",
    ),
    Hostile(
        "order_parameter: weights of another length",
        lambda: mf.order_parameter(THETA, weights=jnp.ones(2)),
        ValueError,
        r"`weights`",
    ),
    # --- two-layer networks ---
    Hostile(
        "two_layer_gd: lr < 0 (gradient ascent)",
        lambda: mf.two_layer_gd(_model(), X, Y, n_steps=2, lr=-0.1),
        ValueError,
        r"`lr`",
    ),
    Hostile(
        "two_layer_gd: NaN lr",
        lambda: mf.two_layer_gd(_model(), X, Y, n_steps=2, lr=float("nan")),
        ValueError,
        r"`lr`",
    ),
    Hostile(
        "two_layer_gd: NaN data",
        lambda: mf.two_layer_gd(_model(), X.at[0, 0].set(jnp.nan), Y, n_steps=2, lr=0.1),
        ValueError,
        r"`x`",
    ),
    Hostile(
        "two_layer_gd: inf targets",
        lambda: mf.two_layer_gd(_model(), X, Y.at[0].set(jnp.inf), n_steps=2, lr=0.1),
        ValueError,
        r"`y`",
    ),
    Hostile(
        "two_layer_gd: NaN parameters",
        lambda: mf.two_layer_gd(
            mf.TwoLayer(jnp.array([1.0, jnp.nan, 0.0]), jnp.ones((3, 2))), X, Y, n_steps=2, lr=0.1
        ),
        ValueError,
        r"`model`",
    ),
    Hostile(
        "two_layer_gd: n_steps = 0",
        lambda: mf.two_layer_gd(_model(), X, Y, n_steps=0, lr=0.1),
        ValueError,
        r"`n_steps`",
    ),
    Hostile(
        "two_layer_gd: data of the wrong width",
        lambda: mf.two_layer_gd(_model(), jnp.ones((4, 3)), Y, n_steps=2, lr=0.1),
        ValueError,
        r"`x`",
    ),
    Hostile(
        "two_layer_gd: lr that overflows: code, step and time",
        lambda: mf.two_layer_gd(
            mf.TwoLayer(jnp.full(3, 3.0), jnp.ones((3, 2)), activation=_cube),
            X,
            3 * Y,
            n_steps=40,
            lr=50.0,
            throw=False,
        ),
        None,
        flagged=lambda out: (
            (not bool(out.successful))
            and int(out.failed_step) >= 0
            and np.isnan(np.asarray(out.losses)[-1])
            and "FAILED at step" in out.summary()
        ),
    ),
    Hostile(
        "two_layer_gd: overflow raises by default",
        lambda: mf.two_layer_gd(
            mf.TwoLayer(jnp.full(3, 3.0), jnp.ones((3, 2)), activation=_cube), X, 3 * Y, n_steps=40, lr=50.0
        ),
        eqx.EquinoxRuntimeError,
        r"`two_layer_gd` failed",
    ),
    Hostile(
        "two_layer_gd: float32 model with float64 data (promoted)",
        lambda: mf.two_layer_gd(
            mf.TwoLayer(jnp.full(3, 3.0, jnp.float32), jnp.ones((3, 2), jnp.float32), activation=_cube),
            X,
            3 * Y,
            n_steps=40,
            lr=1e-4,
        ),
        None,
        flagged=lambda out: bool(out.successful) and out.losses.dtype == jnp.float64,
    ),
    # --- failure policy of the limits (throw=True raises, throw=False returns the code) ---
    Hostile(
        "ott_antonsen: max_steps runs out (throw=False): code, step and time",
        lambda: mf.ott_antonsen(0.1, TS, coupling=1.0, gamma=0.5, max_steps=2, throw=False),
        None,
        flagged=_fails(RESULTS.max_steps_reached),
    ),
    Hostile(
        "ott_antonsen: max_steps runs out raises by default",
        lambda: mf.ott_antonsen(0.1, TS, coupling=1.0, gamma=0.5, max_steps=2),
        eqx.EquinoxRuntimeError,
        r"maximum number of steps",
    ),
    Hostile(
        "ott_antonsen: max_steps = 0",
        lambda: mf.ott_antonsen(0.1, TS, coupling=1.0, gamma=0.5, max_steps=0),
        ValueError,
        r"`max_steps`",
    ),
    Hostile(
        "vlasov: max_steps runs out (throw=False): code, step and time",
        lambda: mf.vlasov(None, THETA.reshape(2, 3), OMEGA.reshape(2, 3), TS, coupling=1.0, max_steps=2,
                          throw=False),
        None,
        flagged=_fails(RESULTS.max_steps_reached),
    ),
    Hostile(
        "vlasov: max_steps runs out raises by default",
        lambda: mf.vlasov(None, THETA.reshape(2, 3), OMEGA.reshape(2, 3), TS, coupling=1.0, max_steps=2),
        eqx.EquinoxRuntimeError,
        r"maximum number of steps.*`vlasov` failed at step",
    ),
    Hostile(
        "simulate: throw not a bool",
        lambda: mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, throw="yes"),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "ott_antonsen: throw not a bool",
        lambda: mf.ott_antonsen(0.1, TS, coupling=1.0, gamma=0.5, throw=None),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "vlasov: throw not a bool",
        lambda: mf.vlasov(None, jnp.zeros((2, 3)), jnp.zeros((2, 3)), TS, coupling=1.0, throw=1),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "two_layer_gd: throw not a bool",
        lambda: mf.two_layer_gd(_model(), X, Y, n_steps=2, lr=0.1, throw="no"),
        TypeError,
        r"`throw`",
    ),
    Hostile(
        "two_layer_gd: both steps and n_steps",
        lambda: mf.two_layer_gd(_model(), X, Y, steps=2, n_steps=2, lr=0.1),
        TypeError,
        r"`n_steps`",
    ),
    # --- coupling strategies ---
    Hostile(
        "coupling_operator: method of the wrong type",
        lambda: mf.coupling_operator(None, N, method=3),
        TypeError,
        r"`method`",
    ),
    Hostile(
        "Kuramoto: a coupling operator class instead of a method",
        lambda: mf.Kuramoto(OMEGA, 1.0, method=mf.Dense),
        TypeError,
        r"`method`",
    ),
    Hostile(
        "ott_antonsen: FFTMethod on a graphon without convolution structure",
        lambda: mf.ott_antonsen(jnp.full(4, 0.1 + 0j), TS, coupling=1.0, gamma=0.5,
                                graph=graphons.power_law(), method=mf.FFTMethod()),
        ValueError,
        r"`method=FFTMethod\(\)`",
    ),
    Hostile(
        "vlasov: LowRankMethod on a plain matrix",
        lambda: mf.vlasov(jnp.ones((2, 2)), jnp.zeros((2, 3)), jnp.zeros((2, 3)), TS, coupling=1.0,
                          method=mf.LowRankMethod()),
        ValueError,
        r"`method=LowRankMethod\(\)`",
    ),
    Hostile(
        "local_order_parameter: AllToAllMethod on a ring",
        lambda: mf.local_order_parameter(THETA, radius=0.2, method=mf.AllToAllMethod()),
        ValueError,
        r"`method=AllToAllMethod\(\)`",
    ),
    Hostile(
        "simulate: field neither a particle system nor callable",
        lambda: mf.simulate(3.0, THETA, TS),
        TypeError,
        r"`field`",
    ),
    Hostile(
        "simulate: a module field with noise that is not an AbstractParticleSystem (not run as an ODE)",
        lambda: mf.simulate(_NoisyModule(), THETA, TS),
        TypeError,
        r"`field`.*AbstractParticleSystem",
    ),
    Hostile(
        "TwoLayer: a and w of different N",
        lambda: mf.TwoLayer(jnp.ones(3), jnp.ones((4, 2))),
        ValueError,
        r"`a`",
    ),
    Hostile(
        "TwoLayer.init: no particles",
        lambda: mf.TwoLayer.init(0, 2, key=jax.random.key(0)),
        ValueError,
        r"`n_particles`",
    ),
]


def _cube(x):
    return x**3


class _BadGraphon(graphons.AbstractGraphon):
    def __call__(self, x, y):
        return 1.5 + 0 * (x + y)


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
