"""Hostile inputs for jaxdyn.lyapunov (issue #13): every public entry point, a clear error naming
the argument before any compilation, or a result whose code says what failed (and where)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.lyapunov import (
    RESULTS,
    covariant_lyapunov_vectors,
    dde_spectrum,
    flow_spectrum,
    ftle_field,
    kaplan_yorke_dimension,
    map_spectrum,
    network_spectrum,
    order_to_chaos,
    product_spectrum,
    signal_propagation,
    sweep,
)
from jaxdyn.models import ResNet
from tests.helpers import Hostile, hostile_ids, run_hostile


def lin(t, y, a):
    return -a * y


def lorenz(t, y, args):
    return jnp.array([10 * (y[1] - y[0]), y[0] * (28 - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]])


def henon(x, args):
    return jnp.array([1.0 - 1.4 * x[0] ** 2 + x[1], 0.3 * x[0]])


def dde_lin(t, y, yd, a):
    return -a * yd[0]


Y3 = jnp.ones(3)
KEY = jax.random.key(0)


def flow(**kw):
    call = dict(field=lorenz, y0=Y3, dt=0.01, n_steps=10, progress=False)
    call.update(kw)
    return lambda: flow_spectrum(call.pop("field"), call.pop("y0"), **call)


def map_(**kw):
    call = dict(map_fn=henon, x0=jnp.zeros(2), n_steps=10, progress=False)
    call.update(kw)
    return lambda: map_spectrum(call.pop("map_fn"), call.pop("x0"), **call)


def prod(**kw):
    call = dict(sample_fn=lambda k: jax.random.normal(k, (2, 2)), key=KEY, dim=2, n_steps=10,
                progress=False)
    call.update(kw)
    return lambda: product_spectrum(call.pop("sample_fn"), call.pop("key"), **call)


def dde(**kw):
    call = dict(field=dde_lin, history=jnp.zeros(1), delays=[1.0], dt=0.1, n_steps=10, k=1,
                args=1.0, progress=False)
    call.update(kw)
    return lambda: dde_spectrum(call.pop("field"), call.pop("history"), call.pop("delays"), **call)


def clv(**kw):
    call = dict(fn=henon, x0=jnp.zeros(2), n_steps=5, transient_steps=5, backward_steps=5)
    call.update(kw)
    return lambda: covariant_lyapunov_vectors(call.pop("fn"), call.pop("x0"), **call)


def ftle(**kw):
    call = dict(field=lambda t, y, a: -y, points=jnp.zeros((3, 2)), t1=0.1, dt=0.01)
    call.update(kw)
    return lambda: ftle_field(call.pop("field"), call.pop("points"), **call)


def failed(code):
    """A result with this code, a failed_step, and NaN exponents (not zeros)."""
    def check(res):
        return (bool(res.result == code) and int(res.failed_step) >= 0
                and bool(jnp.all(jnp.isnan(res.exponents))) and "WARNING" in res.summary())
    return check


def _jit_nan_args():
    @eqx.filter_jit
    def run(a):
        return flow_spectrum(lin, jnp.ones(1), args=a, dt=0.1, n_steps=2, progress=False).exponents
    return run(jnp.asarray(jnp.nan))


def _nan_weight_layers():
    W = jnp.eye(2).at[0, 0].set(jnp.nan)
    return network_spectrum([jnp.tanh, lambda h: W @ h], jnp.ones(2), throw=False)


ROWS = [
    # flow_spectrum
    Hostile("flow_spectrum: k beyond the dimension", flow(k=4), ValueError, r"`k`"),
    Hostile("flow_spectrum: k < 1", flow(k=0), ValueError, r"`k`"),
    Hostile("flow_spectrum: dt = 0", flow(dt=0.0), ValueError, r"`dt`"),
    Hostile("flow_spectrum: dt < 0", flow(dt=-0.01), ValueError, r"`dt`"),
    Hostile("flow_spectrum: dt NaN", flow(dt=float("nan")), ValueError, r"`dt`"),
    Hostile("flow_spectrum: dt not a scalar", flow(dt=jnp.ones(2)), ValueError, r"`dt`"),
    Hostile("flow_spectrum: n_steps = 0", flow(n_steps=0), ValueError, r"`n_steps`"),
    Hostile("flow_spectrum: n_steps a float", flow(n_steps=2.5), TypeError, r"`n_steps`"),
    Hostile("flow_spectrum: transient_steps < 0", flow(transient_steps=-1), ValueError,
            r"`transient_steps`"),
    Hostile("flow_spectrum: renorm_every does not divide n_steps", flow(renorm_every=3),
            ValueError, r"`renorm_every`"),
    Hostile("flow_spectrum: NaN y0", flow(y0=jnp.array([1.0, jnp.nan, 0.0])), ValueError, r"`y0`"),
    Hostile("flow_spectrum: inf y0", flow(y0=jnp.array([1.0, jnp.inf, 0.0])), ValueError, r"`y0`"),
    Hostile("flow_spectrum: empty y0", flow(y0=[]), ValueError, r"`y0`"),
    Hostile("flow_spectrum: NaN args", flow(field=lin, y0=jnp.ones(1), args=jnp.nan), ValueError,
            r"`args`"),
    Hostile("flow_spectrum: field returns the wrong shape", flow(field=lambda t, y, a: y[:2]),
            ValueError, r"`field`"),
    Hostile("flow_spectrum: field not callable", flow(field=3.0), TypeError, r"`field`"),
    Hostile("flow_spectrum: float32 y0 with float64 args",
            flow(field=lin, y0=jnp.ones(1, jnp.float32), args=jnp.asarray(1.0, jnp.float64)),
            TypeError, r"`y0`"),
    Hostile("flow_spectrum: accuracy not a bool", flow(accuracy="yes"), TypeError, r"`accuracy`"),
    Hostile("flow_spectrum: throw not a bool", flow(throw="yes"), TypeError, r"`throw`"),
    Hostile("map_spectrum: throw not a bool", map_(throw=None), TypeError, r"`throw`"),
    Hostile("product_spectrum: throw not a bool", prod(throw=1), TypeError, r"`throw`"),
    Hostile("dde_spectrum: throw not a bool", dde(throw="no"), TypeError, r"`throw`"),
    Hostile("covariant_lyapunov_vectors: throw not a bool", clv(throw=0), TypeError, r"`throw`"),
    Hostile("ftle_field: throw not a bool", ftle(throw="yes"), TypeError, r"`throw`"),
    Hostile("sweep: throw not a bool", lambda: sweep(lambda p: p, jnp.ones(2), throw=1), TypeError,
            r"`throw`"),
    Hostile("network_spectrum: throw not a bool",
            lambda: network_spectrum([jnp.tanh], jnp.ones(2), throw="yes"), TypeError, r"`throw`"),
    Hostile("signal_propagation: throw not a bool", lambda: signal_propagation(1.0, 0.05, throw=1),
            TypeError, r"`throw`"),
    Hostile("order_to_chaos: throw not a bool",
            lambda: order_to_chaos(1.0, 0.05, key=KEY, throw="yes"), TypeError, r"`throw`"),
    Hostile("flow_spectrum: blow-up mid-run (code, failed_step, NaN)",
            flow(field=lambda t, y, a: y**2, y0=jnp.ones(1), n_steps=300, throw=False),
            None, flagged=failed(RESULTS.nonfinite_state)),
    Hostile("flow_spectrum: blow-up in the transient (NaN, not zeros)",
            flow(field=lambda t, y, a: y**2, y0=jnp.ones(1), n_steps=10, transient_steps=300,
                 throw=False),
            None, flagged=failed(RESULTS.nonfinite_state)),
    Hostile("flow_spectrum: NaN args under filter_jit", _jit_nan_args, eqx.EquinoxRuntimeError,
            r"`args`", near_top=None),
    # map_spectrum
    Hostile("map_spectrum: map_fn returns the wrong shape",
            map_(map_fn=lambda x, a: jnp.ones(3)), ValueError, r"`map_fn`"),
    Hostile("map_spectrum: map_fn not callable", map_(map_fn=None), TypeError, r"`map_fn`"),
    Hostile("map_spectrum: NaN x0", map_(x0=jnp.array([jnp.nan, 0.0])), ValueError, r"`x0`"),
    Hostile("map_spectrum: k beyond the dimension", map_(k=3), ValueError, r"`k`"),
    Hostile("map_spectrum: inputs too short",
            map_(map_fn=lambda x, u, a: x, inputs=jnp.zeros((3, 2))), ValueError, r"`inputs`"),
    Hostile("map_spectrum: inf args", map_(map_fn=lambda x, a: a * x, args=jnp.inf), ValueError,
            r"`args`"),
    Hostile("map_spectrum: float32 x0 with float64 args",
            map_(map_fn=lambda x, a: a * x, x0=jnp.ones(2, jnp.float32),
                 args=jnp.asarray(0.5, jnp.float64)),
            TypeError, r"`x0`"),
    Hostile("map_spectrum: blow-up mid-run", map_(map_fn=lambda x, a: x**2 + 1.0, x0=jnp.ones(1),
                                                  n_steps=20, throw=False), None,
            flagged=failed(RESULTS.nonfinite_state)),
    # product_spectrum
    Hostile("product_spectrum: dim = 0", prod(dim=0), ValueError, r"`dim`"),
    Hostile("product_spectrum: n_chains = 0", prod(n_chains=0), ValueError, r"`n_chains`"),
    Hostile("product_spectrum: k beyond dim", prod(k=3), ValueError, r"`k`"),
    Hostile("product_spectrum: matrix of the wrong shape",
            prod(sample_fn=lambda k: jnp.ones((2, 3))), ValueError, r"`sample_fn`"),
    Hostile("product_spectrum: matvec of the wrong shape",
            prod(sample_fn=lambda k: (lambda v: jnp.ones(3))), ValueError, r"`sample_fn`"),
    Hostile("product_spectrum: key an int", prod(key=0), TypeError, r"`key`"),
    Hostile("product_spectrum: sample_fn fails on a key",
            prod(sample_fn=lambda k: jnp.ones((2, 2)) @ jnp.ones(3)), ValueError, r"`sample_fn`"),
    Hostile("product_spectrum: zero matrices (degenerate)",
            prod(sample_fn=lambda k: jnp.zeros((2, 2)), throw=False), None,
            flagged=failed(RESULTS.degenerate_tangent)),
    # network_spectrum
    Hostile("network_spectrum: NaN x", lambda: network_spectrum([jnp.tanh], jnp.array([jnp.nan])),
            ValueError, r"`x`"),
    Hostile("network_spectrum: ResNet input of the wrong shape",
            lambda: network_spectrum(ResNet(3, 2, key=KEY), jnp.ones(4)), ValueError, r"`x`"),
    Hostile("network_spectrum: k beyond the width",
            lambda: network_spectrum([jnp.tanh], jnp.ones(2), k=3), ValueError, r"`k`"),
    Hostile("network_spectrum: not a network", lambda: network_spectrum(3, jnp.ones(2)),
            TypeError, r"`model_or_layers`"),
    Hostile("network_spectrum: no layers", lambda: network_spectrum([], jnp.ones(2)), ValueError,
            r"`model_or_layers`"),
    Hostile("network_spectrum: layers of mismatched widths",
            lambda: network_spectrum([lambda h: jnp.ones((3, 2)) @ h, lambda h: jnp.ones((3, 2)) @ h],
                                     jnp.ones(2)), ValueError, r"`model_or_layers`"),
    Hostile("network_spectrum: NaN weights (code, failed layer, NaN)", _nan_weight_layers, None,
            flagged=lambda r: bool(r.result == RESULTS.nonfinite_state) and int(r.failed_step) == 1
            and bool(jnp.all(jnp.isnan(r.exponents)))),
    # signal_propagation and order_to_chaos
    Hostile("signal_propagation: negative sigma_w2", lambda: signal_propagation(-1.0, 0.05),
            ValueError, r"`sigma_w2`"),
    Hostile("signal_propagation: NaN sigma_b2", lambda: signal_propagation(1.0, float("nan")),
            ValueError, r"`sigma_b2`"),
    Hostile("signal_propagation: n_quad = 0", lambda: signal_propagation(1.0, 0.0, n_quad=0),
            ValueError, r"`n_quad`"),
    Hostile("order_to_chaos: width = 0",
            lambda: order_to_chaos(1.0, 0.05, key=KEY, width=0), ValueError, r"`width`"),
    Hostile("order_to_chaos: n_seeds = 0",
            lambda: order_to_chaos(1.0, 0.05, key=KEY, n_seeds=0), ValueError, r"`n_seeds`"),
    Hostile("order_to_chaos: key an int", lambda: order_to_chaos(1.0, 0.05, key=0), TypeError,
            r"`key`"),
    Hostile("order_to_chaos: negative sigma_w2",
            lambda: order_to_chaos(jnp.array([-1.0, 1.0]), 0.05, key=KEY), ValueError,
            r"`sigma_w2`"),
    # covariant_lyapunov_vectors
    Hostile("covariant_lyapunov_vectors: n_steps = 0", clv(n_steps=0), ValueError, r"`n_steps`"),
    Hostile("covariant_lyapunov_vectors: backward_steps = 0", clv(backward_steps=0), ValueError,
            r"`backward_steps`"),
    Hostile("covariant_lyapunov_vectors: k beyond the dimension", clv(k=3), ValueError, r"`k`"),
    Hostile("covariant_lyapunov_vectors: dt <= 0", clv(fn=lorenz, x0=Y3, dt=-0.01), ValueError,
            r"`dt`"),
    Hostile("covariant_lyapunov_vectors: NaN x0", clv(x0=jnp.array([0.0, jnp.nan])), ValueError,
            r"`x0`"),
    Hostile("covariant_lyapunov_vectors: fn returns the wrong shape",
            clv(fn=lambda x, a: x[:1]), ValueError, r"`fn`"),
    Hostile("covariant_lyapunov_vectors: blow-up (code, failed_step, NaN)",
            clv(fn=lambda x, a: x**2 + 1.0, x0=jnp.ones(1), n_steps=20, transient_steps=0,
                throw=False), None,
            flagged=lambda r: bool(r.result == RESULTS.nonfinite_state) and int(r.failed_step) >= 0
            and bool(jnp.all(jnp.isnan(r.exponents)))),
    # ftle_field
    Hostile("ftle_field: NaN points", ftle(points=jnp.full((3, 2), jnp.nan)), ValueError,
            r"`points`"),
    Hostile("ftle_field: scalar points", ftle(points=1.0), ValueError, r"`points`"),
    Hostile("ftle_field: t1 not a multiple of dt", ftle(t1=0.105), ValueError, r"`t1`"),
    Hostile("ftle_field: t1 <= 0", ftle(t1=-0.1), ValueError, r"`t1`"),
    Hostile("ftle_field: dt = 0", ftle(dt=0.0), ValueError, r"`dt`"),
    Hostile("ftle_field: blow-up at some points (code per point, NaN)",
            ftle(field=lambda t, y, a: y**2, points=jnp.array([[0.1, 0.1], [30.0, 0.0]]), t1=1.0,
                 dt=0.05, throw=False), None,
            flagged=lambda r: list(np.asarray(r.result == RESULTS.successful)) == [True, False]
            and list(np.asarray(r.result == RESULTS.nonfinite_state)) == [False, True]
            and bool(jnp.all(jnp.isnan(r.exponents[1])))
            and bool(jnp.all(jnp.isfinite(r.exponents[0])))),
    Hostile("ftle_field: field returns the wrong shape", ftle(field=lambda t, y, a: y[:1]),
            ValueError, r"`field`"),
    # sweep
    Hostile("sweep: empty params", lambda: sweep(lambda p: p, []), ValueError, r"`params`"),
    Hostile("sweep: leading axes differ",
            lambda: sweep(lambda p: p, (jnp.ones(3), jnp.ones(4))), ValueError, r"`params`"),
    Hostile("sweep: scalar params", lambda: sweep(lambda p: p, 1.0), ValueError, r"`params`"),
    Hostile("sweep: fn not callable", lambda: sweep(None, jnp.ones(3)), TypeError, r"`fn`"),
    # dde_spectrum
    Hostile("dde_spectrum: delays <= 0", dde(delays=[-1.0]), ValueError, r"`delays`"),
    Hostile("dde_spectrum: delay shorter than dt", dde(delays=[0.05]), ValueError, r"`delays`"),
    Hostile("dde_spectrum: dt = 0", dde(dt=0.0), ValueError, r"`dt`"),
    Hostile("dde_spectrum: NaN history", dde(history=jnp.array([jnp.nan])), ValueError,
            r"`history`"),
    Hostile("dde_spectrum: history window of the wrong length", dde(history=jnp.zeros((5, 1))),
            ValueError, r"`history`"),
    Hostile("dde_spectrum: k beyond the dimension", dde(k=12), ValueError, r"`k`"),
    Hostile("dde_spectrum: n_steps = 0", dde(n_steps=0), ValueError, r"`n_steps`"),
    Hostile("dde_spectrum: NaN args", dde(args=float("nan")), ValueError, r"`args`"),
    Hostile("dde_spectrum: field without y_delayed", dde(field=lambda t, y, a: -y), ValueError,
            r"`field`"),
    Hostile("dde_spectrum: blow-up mid-run",
            dde(field=lambda t, y, yd, a: y**2 + yd[0] ** 2, history=jnp.ones(1), n_steps=100,
                throw=False),  # y * y' overflows before y: the tangent first
            None, flagged=failed(RESULTS.nonfinite_tangent)),
    # kaplan_yorke_dimension
    Hostile("kaplan_yorke_dimension: NaN exponent gives NaN",
            lambda: kaplan_yorke_dimension(jnp.array([0.5, jnp.nan, -1.0])), None,
            flagged=lambda d: bool(np.isnan(float(d)))),
    Hostile("kaplan_yorke_dimension: 2-D exponents",
            lambda: kaplan_yorke_dimension(jnp.ones((2, 2))), ValueError, r"`exponents`"),
    Hostile("kaplan_yorke_dimension: empty", lambda: kaplan_yorke_dimension(jnp.zeros(0)),
            ValueError, r"`exponents`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
