"""Accuracy control of Lyapunov spectra (issue #13): step halving, run length, tangent
consistency, NaN exponents on failure.

All cases run one quadratic 3-D field whose coefficients are data (`args`), with the same step
counts, so the loops compile once: Lorenz, a Liu-Chen system (the dysts parameterisation
x' = 0.4 x + y z, y' = -12 y - x z, z' = -5 z - x y, top exponent 0.15-0.16 with small steps)
and Sprott's "More" system with a jump (y' = -x - sign(z) y)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.lyapunov import (
    RESULTS,
    AccuracyCheck,
    AccuracyReport,
    flow_spectrum,
    kaplan_yorke_dimension,
)


def quadratic(t, y, p):
    """A y + B(y, y) + s sign(y_2) y_1 + e exp(-y_0^2)."""
    return (p["A"] @ y + jnp.einsum("ijk,j,k->i", p["B"], y, y)
            + p["s"] * jnp.sign(y[2]) * y[1] + p["e"] * jnp.exp(-y[0] ** 2))


def _params(A, quad, s=(0.0, 0.0, 0.0), e=(0.0, 0.0, 0.0)):
    B = np.zeros((3, 3, 3))
    for (i, j, k), c in quad.items():
        B[i, j, k] = c
    return {"A": jnp.asarray(A, float), "B": jnp.asarray(B), "s": jnp.asarray(s, float),
            "e": jnp.asarray(e, float)}


LORENZ = _params([[-10, 10, 0], [28, -1, 0], [0, 0, -8 / 3]], {(1, 0, 2): -1, (2, 0, 1): 1})
LIU_CHEN = _params(np.diag([0.4, -12.0, -5.0]), {(0, 1, 2): 1, (1, 0, 2): -1, (2, 0, 1): -1})
SPROTT_MORE = _params([[0, 1, 0], [-1, 0, 0], [0, 0, 0]], {(2, 1, 1): 1}, s=(0, -1, 0),
                      e=(0, 0, -1))
N_STEPS, TRANSIENT = 5000, 2000


@eqx.filter_jit
def _jit_run(p, dt, y0):
    # under jit each run (transient folded in) is one loop: main, dt / 2 and the consistency
    # window compile once for every case (the eager path is tested below)
    return flow_spectrum(quadratic, y0, args=p, dt=dt, n_steps=N_STEPS,
                         transient_steps=TRANSIENT, progress=False, accuracy=True)


def _run(p, dt, y0=(1.0, 1.0, 1.0)):
    return _jit_run(p, jnp.asarray(dt), jnp.asarray(y0))


def test_liu_chen_bad_step_flagged_good_step_not():
    """dt = 0.048, near RK4's stability limit for this system (it diverges at 0.052): result code
    0, yet the sum of the exponents is -15.8 where the flow's is exactly the divergence -16.6
    (and runs of T = 100-200 give a top exponent of 0.23-0.30 where small steps give 0.15-0.16).
    Flagged by the tangent consistency (0.4-1.0 over several windows: one step of the map is far
    from linear) and by the paired step-halving change of the exponent sum (-0.56 per unit time
    against a tolerance of 0.32); the step-halving change between the two full runs, -0.75,
    stays just inside its tolerance here (0.32 + 4 x 0.14: the sum is noisy at the bad step).
    At dt = 0.01 nothing is flagged (tangent consistency 3e-10 to 0.03, paired change -9e-4)."""
    bad = _run(LIU_CHEN, 0.048)
    assert bool(bad.result == RESULTS.successful)
    assert bad.accuracy_flags, bad.summary()
    assert "WARNING" in bad.summary()
    good = _run(LIU_CHEN, 0.01)
    assert bool(good.result == RESULTS.successful)
    assert good.accuracy_flags == (), good.summary()
    assert float(good.accuracy.tangent_consistency) < 0.05
    assert abs(float(np.sum(good.accuracy.local_step_halving_change))) < 0.01
    assert abs(float(np.sum(bad.accuracy.local_step_halving_change))) > 0.1
    # the sum of exponents is the (constant) divergence 0.4 - 12 - 5 at the good step
    np.testing.assert_allclose(float(np.sum(good.exponents)), -16.6, atol=1e-3)
    assert abs(float(np.sum(bad.exponents)) + 16.6) > 0.5


def test_field_with_a_jump_flagged():
    """y' = -x - sign(z) y: jax.jvp sees -sign(z) on each side and not the jump: the tangent
    consistency is of order one."""
    res = _run(SPROTT_MORE, 0.01, y0=(1.0, 0.5, 0.1))
    assert bool(res.result == RESULTS.successful)
    assert float(res.accuracy.tangent_consistency) > 0.3
    assert any("tangent consistency" in f for f in res.accuracy_flags), res.summary()


def test_lorenz_not_flagged():
    res = _run(LORENZ, 0.01)
    assert res.accuracy_flags == (), res.summary()
    assert float(res.accuracy.tangent_consistency) < 0.05
    assert abs(float(np.sum(res.exponents)) + 41 / 3) < 1e-3
    assert "accuracy: no flag" in res.summary()
    assert res.accuracy.step_halving_change.shape == (3,)


def test_divergence_in_the_transient_gives_nan_and_a_code():
    """y' = y^2 from 1 blows up at t = 1, inside the transient of 500 steps of 0.01 (eager path,
    with the accuracy check)."""
    res = flow_spectrum(lambda t, y, a: y**2, jnp.array([1.0]), dt=0.01, n_steps=100,
                        transient_steps=500, progress=False,
                        accuracy=AccuracyCheck(consistency_steps=10), throw=False)
    assert bool(res.result == RESULTS.nonfinite_state)
    assert 90 <= int(res.failed_step) <= 110
    assert bool(jnp.all(jnp.isnan(res.exponents)))  # not the starting zeros
    assert bool(jnp.isnan(res.kaplan_yorke_dimension))
    assert "failed" in res.summary() and "WARNING" in res.summary()


def test_kaplan_yorke_nan():
    assert np.isnan(float(kaplan_yorke_dimension(jnp.array([0.5, jnp.nan, -1.0]))))
    assert np.isnan(float(kaplan_yorke_dimension(jnp.array([jnp.nan]))))


def test_accuracy_check_settings():
    with pytest.raises(TypeError, match="`accuracy`"):
        flow_spectrum(quadratic, jnp.ones(3), args=LORENZ, dt=0.01, n_steps=10, accuracy="yes")
    res = _run(LORENZ, 0.01)
    assert res.accuracy.rtol == AccuracyCheck().rtol
    acc = res.accuracy
    strict = AccuracyReport(acc.step_halving_change, acc.step_halving_noise,
                            acc.tangent_consistency, acc.local_step_halving_change, rtol=0.0,
                            consistency_tol=1e-9)
    flags = eqx.tree_at(lambda r: r.accuracy, res, strict).accuracy_flags
    assert any("tangent consistency" in f for f in flags)
