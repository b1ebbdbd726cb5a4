"""The fixed-step fast path of `meanfield.simulate` (`jaxdyn/meanfield/_fixed.py`): the same solve as
the diffrax path (`fast=False`) to 1e-12 in float64 (all-to-all, dense and FFT coupling in one stacked
state; RK4, Euler and a custom diffrax tableau; save times on and off the step grid, observables and
snapshots), the same failure codes, steps, times and stats, derivatives (reverse and forward mode)
against the diffrax path and central differences, `jit` without retracing, `vmap`, the progress bar,
and the cases that stay on diffrax."""

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn import RESULTS
from jaxdyn.meanfield import _fixed, graphons

N = 12
TOL = 1e-12


class _Stacked(eqx.Module):
    """Independent fields on consecutive blocks of one state (one compile for all coupling paths)."""

    fields: tuple

    def __call__(self, t, y, args=None):
        return jnp.concatenate([f(t, b, args) for f, b in zip(self.fields, jnp.split(y, len(self.fields)))])


def _field(k=1.5):
    om = jnp.linspace(-1.0, 1.0, N)
    return _Stacked((
        mf.Kuramoto(om, k, phase_lag=0.3),
        mf.Kuramoto(om, k, graph=graphons.fourier(jnp.array([0.5, 0.3])), method=mf.DenseMethod(),
                    phase_lag=0.3),
        mf.Kuramoto(om, k, graph=graphons.ring(0.35), phase_lag=1.46, normalisation="degree",
                    method=mf.FFTMethod()),
    ))


Y0 = jnp.sin(1.3 * jnp.arange(3 * N, dtype=float))
ON_GRID = jnp.linspace(0.0, 1.0, 11)  # dt = 0.1 (linspace rounding: within ULPs of the grid)
OFF_GRID = jnp.array([0.0, 0.37, 0.5, 0.81, 1.05])  # inside steps: the solver's interpolation


class _Kutta3(diffrax.AbstractERK):
    """Kutta's third-order method without an error estimate (a tableau the fast path reads)."""

    tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
        c=np.array([0.5, 1.0]), b_sol=np.array([1 / 6, 2 / 3, 1 / 6]), b_error=np.zeros(3),
        a_lower=(np.array([0.5]), np.array([-1.0, 2.0])))
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 3


def _leaves(out):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves((out.ys, out.observed))]


CASES = {
    "rk4-observe-off-grid": dict(solver=mf.RK4(), ts=OFF_GRID, dt0=0.1,
                                 observe={"z": mf.OrderParameter(), "local": mf.LocalOrder(4)},
                                 snapshots=jnp.array([0.37, 0.6, 1.05])),
    "euler-states-off-grid": dict(solver=diffrax.Euler(), ts=OFF_GRID, dt0=0.07),
    "kutta3-states-on-grid": dict(solver=_Kutta3(), ts=ON_GRID, dt0=0.05),
}


@pytest.fixture(scope="module")
def pairs():
    out = {}
    for name, kw in CASES.items():
        kw = dict(kw)
        ts = kw.pop("ts")
        assert _fixed.plan(kw["solver"], ts, kw["dt0"], kw.get("snapshots"), max_steps=10**6, fast=True,
                           adjoint=None, sde=False, adaptive=False, sharded=False) is not None
        out[name] = (mf.simulate(_field(), Y0, ts, **kw), mf.simulate(_field(), Y0, ts, fast=False, **kw))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_same_as_diffrax(pairs, name):
    fast, ref = pairs[name]
    for a, b in zip(_leaves(fast), _leaves(ref), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    assert set(fast.stats) == set(ref.stats)
    for key in fast.stats:
        assert np.asarray(fast.stats[key]) == pytest.approx(np.asarray(ref.stats[key]), abs=TOL), key
    assert fast.result == ref.result and int(fast.failed_step) == int(ref.failed_step) == -1
    assert np.isnan(fast.failed_time) and np.isnan(ref.failed_time)
    if fast.snapshot_ts is not None:
        np.testing.assert_array_equal(fast.snapshot_ts, ref.snapshot_ts)


def test_grid_is_diffrax_grid():
    """The step times: the first to t0 + dt0, then t0 + (t1 - t0) k / n, the last t1."""
    times = _fixed.grid(0.0, 1.05, 0.1, np.float64)
    assert times.shape == (12,) and times[1] == 0.1 and times[-1] == 1.05
    np.testing.assert_allclose(times[2:-1], 1.05 * np.arange(2, 11) / 11, rtol=1e-15)
    assert _fixed.grid(0.0, 1.0, 0.1, np.float64).shape == (11,)
    assert _fixed.grid(0.0, 0.05, 0.1, np.float64).tolist() == [0.0, 0.05]


def _blowup(t, y, args):
    return y**2


@pytest.mark.parametrize("solver", [mf.RK4(), diffrax.Euler()], ids=["rk4", "euler"])
def test_blowup_same_code_step_time(solver):
    """y' = y^2 from y(0) = 1 blows up at t = 1: the same code, step, time, stats and NaN saves."""
    ts = jnp.linspace(0.0, 2.0, 9)
    y0 = jnp.ones(2)
    kw = dict(solver=solver, dt0=0.05, throw=False)
    fast, ref = mf.simulate(_blowup, y0, ts, **kw), mf.simulate(_blowup, y0, ts, fast=False, **kw)
    assert fast.result == ref.result == RESULTS.nonfinite_state
    assert int(fast.failed_step) == int(ref.failed_step) > 0
    assert float(fast.failed_time) == pytest.approx(float(ref.failed_time), rel=1e-14)  # the step's end
    for key in ("num_steps", "num_accepted_steps", "num_rejected_steps", "max_steps"):
        assert int(fast.stats[key]) == int(ref.stats[key]), key
    assert not np.isfinite(fast.stats["max_abs_y_end"]) and not np.isfinite(ref.stats["max_abs_y_end"])
    np.testing.assert_array_equal(np.isfinite(fast.ys), np.isfinite(ref.ys))
    ok = np.isfinite(ref.ys)
    np.testing.assert_allclose(np.asarray(fast.ys)[ok], np.asarray(ref.ys)[ok], rtol=1e-12)
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        mf.simulate(_blowup, y0, ts, solver=solver, dt0=0.05)


def _loss(p, fast):
    field = mf.Kuramoto(p["omega"], p["K"], phase_lag=p["lag"])
    out = mf.simulate(field, p["y0"], jnp.array([0.0, 0.25, 0.6]), solver=mf.RK4(), dt0=0.1, fast=fast,
                      observe=mf.OrderParameter(), snapshots=jnp.array([0.6]))
    return jnp.sum(jnp.abs(out.observed) ** 2) + jnp.sum(jnp.sin(out.ys))


P = {"omega": jnp.linspace(-1.0, 1.0, 8), "K": jnp.asarray(2.0), "lag": jnp.asarray(0.4),
     "y0": jnp.cos(jnp.arange(8.0))}


def test_gradient_against_diffrax_and_differences():
    """Reverse mode through the scans (checkpointed steps) equals diffrax's checkpointed adjoint to
    1e-10 and central differences to 1e-6; forward mode (not available through diffrax's default
    adjoint) agrees with reverse mode."""
    g_fast = jax.grad(_loss)(P, True)
    g_ref = jax.grad(_loss)(P, False)
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    h = 1e-5
    for key in ("K", "lag"):
        up = dict(P, **{key: P[key] + h})
        down = dict(P, **{key: P[key] - h})
        fd = (_loss(up, True) - _loss(down, True)) / (2 * h)
        assert float(g_fast[key]) == pytest.approx(float(fd), rel=1e-6)
    tangent = jax.tree_util.tree_map(jnp.ones_like, P)
    _, jvp = jax.jvp(lambda p: _loss(p, True), (P,), (tangent,))
    dot = sum(float(jnp.vdot(g, t)) for g, t in zip(jax.tree_util.tree_leaves(g_fast),
                                                     jax.tree_util.tree_leaves(tangent), strict=True))
    assert float(jvp) == pytest.approx(dot, rel=1e-10)


def test_jit_without_retracing_and_vmap():
    field = _field()
    traces = []

    @jax.jit
    def final(y0):
        traces.append(1)
        return mf.simulate(field, y0, ON_GRID, solver=mf.RK4(), dt0=0.1).ys[-1]

    a = final(Y0)
    b = final(Y0 + 0.1)
    assert len(traces) == 1
    batch = jax.vmap(final)(jnp.stack([Y0, Y0 + 0.1]))
    np.testing.assert_allclose(batch, jnp.stack([a, b]), rtol=0, atol=TOL)
    ref = mf.simulate(field, Y0 + 0.1, ON_GRID, solver=mf.RK4(), dt0=0.1, fast=False).ys[-1]
    np.testing.assert_allclose(b, ref, rtol=0, atol=TOL)


def test_progress_bar(capsys):
    field = mf.Kuramoto(jnp.linspace(-1.0, 1.0, 4), 1.0)
    out = mf.simulate(field, jnp.zeros(4), jnp.array([0.0, 0.5]), solver=mf.RK4(), dt0=0.01, progress=True)
    assert out.successful
    assert "100.00%" in capsys.readouterr().err


def _plan(solver=None, ts=ON_GRID, dt0=0.1, snapshots=None, **kw):
    opts = dict(max_steps=10**6, fast=True, adjoint=None, sde=False, adaptive=False, sharded=False)
    opts.update(kw)
    return _fixed.plan(mf.RK4() if solver is None else solver, ts, dt0, snapshots, **opts)


def test_stays_on_diffrax():
    """`fast=False`, an adjoint, an SDE, an adaptive or implicit solver, a sharded field, too many
    steps, traced save times, two save times inside one step, many snapshots: the diffrax path."""
    assert _plan() is not None
    assert _plan(fast=False) is None
    assert _plan(adjoint=diffrax.ForwardMode()) is None
    assert _plan(sde=True) is None
    assert _plan(adaptive=True) is None
    assert _plan(sharded=True) is None
    assert _plan(solver=diffrax.Tsit5()) is None
    assert _plan(solver=diffrax.ImplicitEuler()) is None
    assert _plan(max_steps=5) is None
    assert _plan(ts=jnp.array([0.0, 0.31, 0.33, 1.0])) is None
    assert _plan(snapshots=jnp.linspace(0.0, 1.0, 40)) is None
    jax.jit(lambda ts: _plan(ts=ts) is None or (_ for _ in ()).throw(AssertionError()))(ON_GRID)
