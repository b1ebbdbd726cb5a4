"""The `invariant-sets` experiment's ingredients, fast: the closed forms its verdicts rest on
(the fields' linearisations), the real Ott-Antonsen reduction, and the report text. The full quick
run is `jaxdyn reproduce invariant-sets --quick` (CI), like the other experiments."""

import copy
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import meanfield as mf
from jaxdyn.experiments import EXPERIMENTS, invariant_sets as ex
from tests.test_experiments_claims_c import _invariant_metrics


def test_registered_with_keyword_only_run():
    assert EXPERIMENTS["invariant-sets"].module == "jaxdyn.experiments.invariant_sets"
    params = inspect.signature(EXPERIMENTS["invariant-sets"].load()).parameters
    assert [p.kind for p in params.values()] == [inspect.Parameter.KEYWORD_ONLY] * 3
    assert list(params) == ["quick", "seed", "progress"]


def test_double_well_and_mlp_closed_forms():
    mult = jax.jacfwd(ex.double_well_gd)(jnp.array(1.0), 1.0)  # 1 - eta L''(1) = 1 - 2 eta
    assert float(mult) == -1.0
    teacher = jnp.asarray(ex.TEACHER)
    x = jnp.linspace(-3.0, 3.0, 24)
    y = ex.mlp(teacher, x, 2)
    assert float(ex.mlp_loss(teacher, x, y)) == 0.0  # interpolating
    eig = np.linalg.eigvalsh(np.asarray(jax.hessian(ex.mlp_loss)(teacher, x, y)))
    assert eig.min() > 1e-5 * eig.max()  # an isolated minimum


def test_real_ott_antonsen_reduction():
    """On real z the reduced field is the real part of the library's Ott-Antonsen field, the
    imaginary part stays zero, and its linearisation at 0 loses stability at 2 gamma / lambda_max."""
    m, gamma, k = 16, 0.1, 0.7
    graph = mf.graphons.general(ex.uniform_attachment)
    op = mf.coupling_operator(graph, m)
    u = jnp.linspace(-0.5, 0.8, m)
    full = mf.OttAntonsen(k, gamma, 0.0, 0.0, op)(0.0, jnp.stack([u, jnp.zeros(m)]))
    np.testing.assert_allclose(np.asarray(ex.RealOttAntonsen(gamma, op)(0.0, u, k)), np.asarray(full[0]))
    np.testing.assert_allclose(np.asarray(full[1]), 0.0, atol=1e-15)
    xs = np.asarray(mf.grid(m))
    lam = np.max(np.linalg.eigvalsh(np.asarray(ex.uniform_attachment(xs[:, None], xs[None, :])) / m))
    kc = 2 * gamma / lam
    jac = jax.jacfwd(lambda v: ex.RealOttAntonsen(gamma, op)(0.0, v, kc))(jnp.zeros(m))
    assert abs(np.max(np.linalg.eigvals(np.asarray(jac)).real)) < 1e-12
    assert abs(lam - 4 / np.pi**2) < 1e-3  # the continuum eigenvalue, to the quadrature
    order = ex._golden_order(100)
    assert sorted(order.tolist()) == list(range(100))


def test_delay_linearisations_and_planar_target():
    a0, a1 = jax.jacfwd(lambda y, yd: ex.mackey_glass(0.0, y, (yd,), None), argnums=(0, 1))(
        jnp.ones(1), jnp.ones(1))
    np.testing.assert_allclose([float(a0[0, 0]), float(a1[0, 0])], [-1.0, -4.0], atol=1e-14)
    w = jnp.array([[-1.0, 2.0], [-2.0, -1.0]])
    net = ex.DelayedNetwork(w)
    jac = jax.jacfwd(lambda yd: net(0.0, jnp.zeros(2), (yd,), None))(jnp.zeros(2))
    np.testing.assert_allclose(np.asarray(jac), np.asarray(w))
    f = lambda y: ex.target_field(0.0, y, None)  # noqa: E731
    np.testing.assert_allclose(np.asarray(f(jnp.array([-1.0, 0.0]))), 0.0, atol=1e-15)
    saddle = np.linalg.eigvals(np.asarray(jax.jacfwd(f)(jnp.array([-1.0, 0.0]))))
    assert saddle.real.min() < 0 < saddle.real.max()
    focus = np.linalg.eigvals(np.asarray(jax.jacfwd(f)(jnp.zeros(2))))
    assert np.all(focus.real > 0) and np.all(np.abs(focus.imag) > 0)


def test_summary_and_claims():
    mt = copy.deepcopy(_invariant_metrics())  # the synthetic metrics of the claims tests
    mt["ott_antonsen"].update(max_abs_r_difference=0.5, ks=[0.7], r_branch=[0.43], r_particles=[0.93])
    text = ex._summary(ex.QUICK, mt)
    verdicts = [c.verdict for c in ex._claims(ex.QUICK, mt)]  # one K, r off by 0.5:
    assert verdicts == ["reproduced", "reproduced", "not reproduced", "reproduced", "reproduced"]
    assert "**holds**" not in text and "nan" not in text  # verdicts live in the claim table
    assert "cycle branch not computed in the quick run" in text
    assert "| 0.7 | 0.4300 | 0.9300 |" in text
    assert "period 6.500000" in text and "stable: True" in text
