"""jaxdyn.lyapunov.dde_spectrum against Lambert-W roots, the linearised Mackey-Glass equation and
jitcdde (trajectory and jitcdde_lyap's exponent, stored in tests/data/mackey_glass_jitcdde.npz)."""

import pathlib

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import lambertw

import jaxdyn.dde as dde
from jaxdyn._results import message
from jaxdyn.lyapunov import dde_spectrum

REF = pathlib.Path(__file__).resolve().parent / "data" / "mackey_glass_jitcdde.npz"
BETA, GAMMA, N_HILL, TAU = 0.2, 0.1, 10, 17.0


def linear(t, y, yd, a):
    return -a * yd[0]


def mackey_glass(t, y, yd, args):
    return BETA * yd[0] / (1 + yd[0] ** N_HILL) - GAMMA * y


def _spectrum(*args_, **kwargs):
    return dde_spectrum(*args_, progress=False, **kwargs)


@pytest.mark.parametrize("tau, dt", [(0.2, 0.004), (1.0, 0.02), (1.4, 0.028), (2.0, 0.04),
                                     (1.0, 0.03)])
def test_linear_delay_lambert_w(tau, dt):
    """x' = -x(t - tau): rightmost roots lambda = W_k(-tau) / tau. tau = 0.2 (< 1/e): two real
    roots, W_0 and W_{-1}; tau = 1, 1.4, 2: a complex top pair, both exponents its real part
    (stable up to tau = pi/2, unstable at 2). dt = tau/50, and tau = 1 with dt = 0.03 (not a
    multiple: the delayed values are interpolated). Zero history: the tangents see the linear
    equation. Over T = 400 the pair members oscillate about the real part by ~1e-3 (the angle
    between the two vectors of the rotating pair), their mean agrees to ~1e-8."""
    T = 400.0
    res = _spectrum(linear, jnp.zeros(1), [tau], dt=dt, n_steps=int(round(T / dt)), k=2, args=1.0,
                    transient_steps=int(round(50.0 / dt)))
    assert message(res.result) == "successful"
    e = np.asarray(res.exponents)
    top = lambertw(-tau, 0).real / tau
    if tau < 1 / np.e:
        np.testing.assert_allclose(e[0], top, atol=1e-8)
        np.testing.assert_allclose(e[1], lambertw(-tau, -1).real / tau, rtol=1e-5)
    else:
        np.testing.assert_allclose(e, [top, top], atol=1.5e-3)
        np.testing.assert_allclose(e.mean(), top, atol=1e-7)


def test_mackey_glass_trajectory_matches_jitcdde():
    """jaxdyn.dde.solve (Tsit5, rtol = atol = 1e-10) against jitcdde (atol = rtol = 1e-12) on
    [0, 50] from the constant history 1.2: they agree to ~1.2e-9. On [0, tau] the solution is
    y = c/gamma + (1.2 - c/gamma) exp(-gamma t), c = beta 1.2 / (1 + 1.2^n): both match it."""
    ref = np.load(REF)
    ts, ys_ref = ref["times"], ref["values"]
    sol = dde.solve(mackey_glass, jnp.array([1.2]), jnp.array([TAU]), 0.0, 50.0, dt0=0.1,
                    saveat=jnp.asarray(ts),
                    stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))
    ys = np.asarray(sol.ys)
    np.testing.assert_allclose(ys, ys_ref, rtol=0, atol=5e-9)
    c = BETA * 1.2 / (1 + 1.2**N_HILL)
    first = ts <= TAU
    exact = c / GAMMA + (1.2 - c / GAMMA) * np.exp(-GAMMA * ts[first])
    np.testing.assert_allclose(ys_ref[first, 0], exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ys[first, 0], exact, rtol=0, atol=1e-10)


def test_mackey_glass_chaotic_exponent():
    """From the history 1.2, dt = 0.1 (state dimension 171), T = 2e4 after a transient of 1000:
    the top exponent is ~0.0045 (jitcdde_lyap over the same T: 0.00524; finite-time estimates of
    a chaotic flow scatter by a few 1e-4). About 2 s on one CPU core."""
    ref = np.load(REF)
    res = _spectrum(mackey_glass, jnp.array([1.2]), [TAU], dt=0.1, n_steps=200_000, k=1,
                    transient_steps=10_000)
    assert message(res.result) == "successful"
    top = float(res.exponents[0])
    assert 0.003 <= top <= 0.008
    assert abs(top - float(ref["lyap_top"])) < 1.5e-3
    assert res.final_state.shape == (171,)


def test_mackey_glass_equilibrium_pair():
    """At the equilibrium history y = 1 the tangents obey u' = -gamma u + beta (2 - n)/4 u(t-tau),
    whose rightmost roots are lambda = -gamma + W_0(-0.4 tau e^{gamma tau}) / tau = 0.041291 +-
    0.139i. T = 4000: each of the top pair within 1.5e-4 (observed 1.2e-4), their mean within
    1e-4 (observed 6e-5, a 1/T transient bias)."""
    lam = -GAMMA + lambertw(BETA * (2 - N_HILL) / 4 * TAU * np.exp(GAMMA * TAU), 0).real / TAU
    assert abs(lam - 0.0413) < 1e-4
    res = _spectrum(mackey_glass, jnp.ones(1), [TAU], dt=0.1, n_steps=40_000, k=2,
                    transient_steps=1000)
    e = np.asarray(res.exponents)
    np.testing.assert_allclose(e, [lam, lam], atol=1.5e-4)
    np.testing.assert_allclose(e.mean(), lam, atol=1e-4)


def test_jit_no_retrace():
    """A new value of `args` (an array) reuses the compiled run."""

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def top(a):
        return _spectrum(linear, jnp.zeros(1), [1.0], dt=0.1, n_steps=200, k=2, args=a).exponents

    e1 = top(jnp.asarray(1.0))
    e2 = top(jnp.asarray(0.5))
    assert e1.shape == e2.shape == (2,)
    assert not np.allclose(e1, e2)
    eager = _spectrum(linear, jnp.zeros(1), [1.0], dt=0.1, n_steps=200, k=2, args=0.5).exponents
    np.testing.assert_allclose(e2, eager, rtol=1e-10, atol=1e-12)


def test_history_forms_agree():
    """A constant, a window of shape (N + 1, n) and a callable give the same run."""
    kw = dict(dt=0.1, n_steps=100, k=1, args=1.0)
    a = _spectrum(linear, jnp.array([0.5]), [1.0], **kw)
    b = _spectrum(linear, jnp.full((11, 1), 0.5), [1.0], **kw)
    c = _spectrum(linear, lambda t: jnp.array([0.5]), [1.0], **kw)
    np.testing.assert_allclose(a.exponents, b.exponents)
    np.testing.assert_allclose(a.exponents, c.exponents)
    np.testing.assert_allclose(a.final_state, b.final_state)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(delays=[0.0]), "delays"),
        (dict(delays=[-1.0]), "delays"),
        (dict(delays=[0.05]), "delays"),  # shorter than dt
        (dict(delays=[[1.0]]), "delays"),
        (dict(dt=0.0), "dt"),
        (dict(dt=-0.1), "dt"),
        (dict(n_steps=0), "n_steps"),
        (dict(k=12), "k"),
        (dict(history=jnp.zeros((5, 1))), "history"),
        (dict(history=jnp.zeros((11, 1, 1))), "history"),
        (dict(field=lambda t, y, args: -y), "field"),
        (dict(field=lambda t, y, yd, args: jnp.zeros(3)), "field"),
    ],
)
def test_bad_input(kwargs, name):
    call = dict(field=linear, history=jnp.zeros(1), delays=[1.0], dt=0.1, n_steps=10, k=1)
    call.update(kwargs)
    field, history, delays = call.pop("field"), call.pop("history"), call.pop("delays")
    with pytest.raises(ValueError, match=f"`{name}"):
        _spectrum(field, history, delays, **call)


def test_traced_dt_rejected():
    with pytest.raises(ValueError, match="`dt`"):
        jax.jit(lambda dt: _spectrum(linear, jnp.zeros(1), [1.0], dt=dt, n_steps=10, k=1).exponents)(0.1)
