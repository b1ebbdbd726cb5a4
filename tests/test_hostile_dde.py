"""The hostile-input table of `jaxdyn.dde` and the neural DDE (`NeuralDDE`, `memory_capacity`)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import dde
from jaxdyn._results import RESULTS
from jaxdyn.models import DelayMLPField, FixedStep, NeuralDDE, memory_capacity
from tests.helpers import Hostile, hostile_ids, run_hostile


def decay(t, y, yd, args):
    return -yd[0]


def blowup(t, y, yd, args):
    return y * yd[0]  # x' = x(t) x(t - 1/2), x = 1 before 0: blows up near t = 2.77


def _solve(**kw):
    base = dict(field=decay, history=jnp.array(1.0), delays=jnp.array([1.0]), t0=0.0, t1=2.0, dt0=0.1)
    base.update(kw)
    field, history, delays, t0, t1 = (base.pop(k) for k in ("field", "history", "delays", "t0", "t1"))
    return lambda: dde.solve(field, history, delays, t0, t1, **base)


def _batch(**kw):
    base = dict(field=decay, histories=jnp.ones(3), delays=jnp.array([1.0]), t0=0.0, t1=2.0, dt0=0.1)
    base.update(kw)
    field, hs, delays, t0, t1 = (base.pop(k) for k in ("field", "histories", "delays", "t0", "t1"))
    return lambda: dde.solve_batch(field, hs, delays, t0, t1, **base)


def _fixed(**kw):
    base = dict(field=decay, history=jnp.array(1.0), delays=jnp.array([1.0]), t0=0.0, t1=2.0, n_steps=20)
    base.update(kw)
    field, history, delays, t0, t1 = (base.pop(k) for k in ("field", "history", "delays", "t0", "t1"))
    return lambda: dde.solve_fixed(field, history, delays, t0, t1, **base)


def _field(n_delays=1):
    return DelayMLPField(2, 4, 1, n_delays, key=jax.random.key(0))


def _model(**kw):
    base = dict(field=_field(), delays=jnp.array([0.5]))
    base.update(kw)
    field, delays = base.pop("field"), base.pop("delays")
    return lambda: NeuralDDE(field, delays, **base)


PID = diffrax.PIDController(rtol=1e-6, atol=1e-6)
_nan_history = lambda t: jnp.where(t < -0.5, jnp.nan, 1.0)  # noqa: E731
_blown = lambda s: (bool(s.result == RESULTS.step_size_too_small) and int(s.failed_step) > 0  # noqa: E731
                    and 2.7 < float(s.failed_time) < 2.8)


def overflow(t, y, yd, args):
    return y**2 * yd[0]  # x' = x^2 x(t - 1/2): overflows on a grid of 50 steps on [0, 5]


def _nan_weights():
    model = _model()()
    return eqx.tree_at(lambda m: m.field.mlp.layers[0].weight, model,
                       jnp.full_like(model.field.mlp.layers[0].weight, jnp.nan))


_overflowed = lambda s: (bool(s.result == RESULTS.nonfinite_state) and int(s.failed_step) > 0  # noqa: E731
                         and 0.5 < float(s.failed_time) < 2.0 and not bool(np.all(np.isfinite(s.ys))))


class _NoBound:
    n_delays = 1
    size = 2

    def __call__(self, t, h, hd, args=None):
        return -hd[0]


ROWS = [
    # dde.solve: arguments
    Hostile("dde.solve: delays <= 0", _solve(delays=jnp.array([-1.0])), ValueError, r"`delays`"),
    Hostile("dde.solve: a zero delay", _solve(delays=jnp.array([1.0, 0.0])), ValueError, r"`delays`"),
    Hostile("dde.solve: NaN delay", _solve(delays=jnp.array([jnp.nan])), ValueError, r"`delays`"),
    Hostile("dde.solve: empty delays", _solve(delays=jnp.zeros((0,))), ValueError, r"`delays`"),
    Hostile("dde.solve: 2-D delays", _solve(delays=jnp.ones((1, 1))), ValueError, r"`delays`"),
    Hostile("dde.solve: t1 < t0", _solve(t1=-1.0), ValueError, r"`t1`"),
    Hostile("dde.solve: NaN t0", _solve(t0=float("nan")), ValueError, r"`t0`"),
    Hostile("dde.solve: infinite t1", _solve(t1=float("inf")), ValueError, r"`t1`"),
    Hostile("dde.solve: dt0 = 0", _solve(dt0=0.0), ValueError, r"`dt0`"),
    Hostile("dde.solve: dt0 < 0", _solve(dt0=-0.1), ValueError, r"`dt0`"),
    Hostile("dde.solve: NaN dt0", _solve(dt0=float("nan")), ValueError, r"`dt0`"),
    Hostile("dde.solve: history a string", _solve(history="one"), TypeError, r"`history`"),
    Hostile("dde.solve: history returns no float", _solve(history=lambda t: "x"), ValueError, r"`history`"),
    Hostile("dde.solve: history shape wrong for field", _solve(field=lambda t, y, yd, a: -yd[0][1]),
            ValueError, r"`field`"),
    Hostile("dde.solve: field arity (t, y, args)", _solve(field=lambda t, y, args: -y),
            ValueError, r"`field`"),
    Hostile("dde.solve: field returns a wrong shape", _solve(field=lambda t, y, yd, a: jnp.ones(3)),
            ValueError, r"`field`"),
    Hostile("dde.solve: field reads two delays, one given", _solve(field=lambda t, y, yd, a: -yd[1]),
            ValueError, r"`field`"),
    Hostile("dde.solve: NaN history at t0", _solve(history=jnp.array(jnp.nan)), ValueError, r"`history`"),
    # run-time errors (eqx.error_if): after the first one in a process equinox prints the stack inside
    # JIT (our file names) above the message, so the position check is off for these rows
    Hostile("dde.solve: NaN history at delayed times", _solve(history=_nan_history),
            Exception, r"`history` returned non-finite", near_top=None),
    Hostile("dde.solve: NaN history flagged (throw=False)", _solve(history=_nan_history, throw=False), None,
            flagged=lambda s: (bool(s.result == RESULTS.nonfinite_state) and int(s.failed_step) == 0
                               and float(s.failed_time) == 0.0)),
    Hostile("dde.solve: NaN args", _solve(field=lambda t, y, yd, a: a * yd[0], args=jnp.array(jnp.nan)),
            ValueError, r"`args`"),
    Hostile("dde.solve: float32 state, float64 args",
            _solve(field=lambda t, y, yd, a: a * yd[0], history=jnp.array(1.0, jnp.float32),
                   args=jnp.array(-1.0, jnp.float64)), TypeError, r"`field`"),
    Hostile("dde.solve: implicit solver", _solve(solver=diffrax.Kvaerno5()), TypeError, r"`solver`"),
    Hostile("dde.solve: controller a string", _solve(stepsize_controller="pid"), TypeError,
            r"`stepsize_controller`"),
    Hostile("dde.solve: BacksolveAdjoint", _solve(adjoint=diffrax.BacksolveAdjoint()), TypeError,
            r"`adjoint`"),
    Hostile("dde.solve: max_steps = 0", _solve(max_steps=0), ValueError, r"`max_steps`"),
    Hostile("dde.solve: max_steps a float", _solve(max_steps=10.0), TypeError, r"`max_steps`"),
    Hostile("dde.solve: saveat outside [t0, t1]", _solve(saveat=jnp.array([3.0])), ValueError, r"`saveat`"),
    Hostile("dde.solve: 2-D saveat", _solve(saveat=jnp.ones((2, 2))), ValueError, r"`saveat`"),
    # dde.solve: run-time failures
    Hostile("dde.solve: finite-time blow-up (adaptive) flagged with step and time",
            _solve(field=blowup, delays=jnp.array([0.5]), t1=5.0, stepsize_controller=PID, throw=False),
            None, flagged=_blown),
    Hostile("dde.solve: finite-time blow-up raises as a blow-up, not max_steps",
            _solve(field=blowup, delays=jnp.array([0.5]), t1=5.0, stepsize_controller=PID),
            Exception, r"blew up in finite time", near_top=None),
    Hostile("dde.solve: max_steps reached flagged", _solve(max_steps=5, throw=False), None,
            flagged=lambda s: (bool(s.result == RESULTS.max_steps_reached)
                               and float(s.failed_time) < 2.0)),
    Hostile("dde.solve: max_steps reached raises (throw=True)", _solve(max_steps=5), Exception,
            r"`max_steps`", near_top=None),
    Hostile("dde.solve: throw not a bool", _solve(throw="yes"), TypeError, r"`throw`"),
    # dde.solve_batch
    Hostile("dde.solve_batch: histories without a batch axis", _batch(histories=jnp.array(1.0)), ValueError,
            r"`histories`"),
    Hostile("dde.solve_batch: empty batch", _batch(histories=jnp.ones((0,))), ValueError, r"`histories`"),
    Hostile("dde.solve_batch: field for a batch, not a member",
            _batch(field=lambda t, y, yd, a: -yd[0][:, None]), ValueError, r"`field`"),
    Hostile("dde.solve_batch: negative delay", _batch(delays=jnp.array([-0.5])), ValueError, r"`delays`"),
    Hostile("dde.solve_batch: histories a string", _batch(histories="ones"), TypeError, r"`history`"),
    Hostile("dde.solve_batch: max_steps reached raises (throw=True)", _batch(max_steps=5), Exception,
            r"`max_steps`", near_top=None),
    Hostile("dde.solve_batch: max_steps reached flagged (throw=False)", _batch(max_steps=5, throw=False),
            None,
            flagged=lambda s: bool(s.result == RESULTS.max_steps_reached) and s.ys.shape == (1, 3)),
    Hostile("dde.solve_batch: throw not a bool", _batch(throw=None), TypeError, r"`throw`"),
    # dde.solve_fixed
    Hostile("dde.solve_fixed: dt > min(delays)", _fixed(n_steps=1), ValueError, r"`n_steps`"),
    Hostile("dde.solve_fixed: n_steps = 0", _fixed(n_steps=0), ValueError, r"`n_steps`"),
    Hostile("dde.solve_fixed: n_steps a float", _fixed(n_steps=20.0), TypeError, r"`n_steps`"),
    Hostile("dde.solve_fixed: unknown method", _fixed(method="rk5"), ValueError, r"`method`"),
    Hostile("dde.solve_fixed: max_delay < 0", _fixed(max_delay=-1.0), ValueError, r"`max_delay`"),
    Hostile("dde.solve_fixed: t1 < t0", _fixed(t1=-1.0), ValueError, r"`t1`"),
    Hostile("dde.solve_fixed: NaN delay", _fixed(delays=jnp.array([jnp.nan])), ValueError, r"`delays`"),
    Hostile("dde.solve_fixed: overflow raises (throw=True)",
            _fixed(field=overflow, delays=jnp.array([0.5]), t1=5.0, n_steps=50), Exception, r"non-finite",
            near_top=None),
    Hostile("dde.solve_fixed: overflow flagged with step and time (throw=False)",
            _fixed(field=overflow, delays=jnp.array([0.5]), t1=5.0, n_steps=50, throw=False), None,
            flagged=_overflowed),
    Hostile("dde.solve_fixed: throw not a bool", _fixed(throw=0), TypeError, r"`throw`"),
    Hostile("dde.solve_fixed: method a number", _fixed(method=4), ValueError, r"`method`"),
    Hostile("dde.solve_fixed: float32 state with float64 times works",
            _fixed(history=jnp.array(1.0, jnp.float32)), None,
            flagged=lambda out: out.ys.dtype == jnp.float32 and bool(np.all(np.isfinite(out.ys)))),
    # NeuralDDE, FixedStep, memory_capacity
    Hostile("NeuralDDE: field not callable", _model(field=3), TypeError, r"`field`"),
    Hostile("NeuralDDE: negative delay", _model(delays=jnp.array([-0.5])), ValueError, r"`delays`"),
    Hostile("NeuralDDE: delays vs field.n_delays", _model(delays=jnp.array([0.5, 0.2])), ValueError,
            r"`delays`"),
    Hostile("NeuralDDE: t1 <= 0", _model(t1=0.0), ValueError, r"`t1`"),
    Hostile("NeuralDDE: stepping a string", _model(stepping="rk4"), TypeError, r"`stepping`"),
    Hostile("NeuralDDE: too few steps for the delay", _model(stepping=FixedStep(1)), ValueError,
            r"`n_steps`"),
    Hostile("NeuralDDE: FixedStep method unknown", lambda: FixedStep(10, "rk5"), ValueError, r"`method`"),
    Hostile("NeuralDDE call: x of the wrong shape", lambda: _model()()(jnp.ones(3)), ValueError, r"`x`"),
    Hostile("NeuralDDE call: NaN x", lambda: _model()()(jnp.array([jnp.nan, 1.0])), ValueError, r"`x`"),
    Hostile("memory_capacity: not a NeuralDDE", lambda: memory_capacity(_field()), TypeError, r"`model`"),
    Hostile("memory_capacity: negative lipschitz", lambda: memory_capacity(_model()(), lipschitz=-1.0),
            ValueError, r"`lipschitz`"),
    Hostile("memory_capacity: NaN lipschitz", lambda: memory_capacity(_model()(), lipschitz=float("nan")),
            ValueError, r"`lipschitz`"),
    Hostile("memory_capacity: NaN weights raise (throw=True)", lambda: memory_capacity(_nan_weights()),
            Exception, r"non-finite", near_top=None),
    Hostile("memory_capacity: NaN weights flagged (throw=False)",
            lambda: memory_capacity(_nan_weights(), throw=False), None,
            flagged=lambda r: bool(r.result == RESULTS.nonfinite_parameters)),
    Hostile("memory_capacity: throw not a bool", lambda: memory_capacity(_model()(), throw="no"), TypeError,
            r"`throw`"),
    Hostile("memory_capacity: field without a bound",
            lambda: memory_capacity(_model(field=_NoBound(), state_size=2)()),
            TypeError, r"`lipschitz`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
