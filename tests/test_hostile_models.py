"""Hostile inputs to `jaxdyn.models`: each is a clear error naming the argument, or a flag.

Most rows fail before anything compiles. The run-time rows share one tiny scalar problem,
h' = h^2 from h(0) = 1 (blow-up at t = 1), whose compiled solves are reused across rows.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.models import (
    MLP,
    Affine,
    DenseResNet,
    MLPField,
    NeuralODE,
    ResNet,
    critical_points,
    embed,
    fit,
    random_affine,
    width_profile,
)

from .helpers import Hostile, hostile_ids, run_hostile

KEY = jax.random.key(0)
FIELD = MLPField(2, 3, 1, key=KEY)
X = jnp.array([0.1, 0.2])


class Square(eqx.Module):
    """h' = a h^2: blows up at t = 1 / (a h0)."""

    a: jax.Array

    def __call__(self, t, y, args):
        return self.a * y**2


class Scaled(eqx.Module):
    """h' = -args * h (float64 `args` against a float32 state)."""

    def __call__(self, t, y, args):
        return -args * y


def _blowup(**kwargs):
    return NeuralODE(Square(jnp.array(1.0)), state_size=1, t1=2.0, **kwargs)


CONSTANT = dict(stepsize_controller=diffrax.ConstantStepSize(), dt0=0.05)


def _is(result, code):
    return bool(np.all(np.asarray(result._value) == code._value))


def _flag_blowup(sol):
    return (_is(sol.result, RESULTS.finite_time_blowup) and abs(float(sol.failed_time) - 1.0) < 1e-3
            and int(sol.failed_step) > 0 and bool(np.isnan(sol.output).all()))


def _flag_nonfinite(sol):
    # y' = y^2 with Tsit5 at dt = 0.05 overflows at step 22, t = 1.1
    return (_is(sol.result, RESULTS.nonfinite_state) and int(sol.failed_step) == 22
            and abs(float(sol.failed_time) - 1.1) < 1e-12 and bool(np.isnan(sol.hidden[-1]).all()))


def _fit_flag(res):
    return (not res.successful) and res.failed_step >= 0 and bool(np.all(np.isfinite(
        jax.tree_util.tree_leaves(eqx.filter(res.model, eqx.is_inexact_array))[0])))


def _log_bowl(x):
    """Non-finite (log of a negative number) on half of the box."""
    return jnp.sum(x**2) + jnp.log(x[1])


XS = jnp.linspace(-1, 1, 6)[:, None]
NET = MLP((1, 3, 1), key=KEY)

ROWS = [
    # --- NeuralODE construction --------------------------------------------------------------
    Hostile("NeuralODE: field not callable", lambda: NeuralODE(jnp.ones(3), state_size=3), TypeError,
            r"`field`"),
    Hostile("NeuralODE: t1 = 0", lambda: NeuralODE(FIELD, t1=0.0), ValueError, r"`t1`"),
    Hostile("NeuralODE: t1 < 0", lambda: NeuralODE(FIELD, t1=-1.0), ValueError, r"`t1`"),
    Hostile("NeuralODE: t1 NaN", lambda: NeuralODE(FIELD, t1=float("nan")), ValueError, r"`t1`"),
    Hostile("NeuralODE: t1 a vector", lambda: NeuralODE(FIELD, t1=jnp.ones(2)), ValueError, r"`t1`"),
    Hostile("NeuralODE: t1 a string", lambda: NeuralODE(FIELD, t1="1"), TypeError, r"`t1`"),
    Hostile("NeuralODE: dt0 <= 0", lambda: NeuralODE(FIELD, dt0=-0.1), ValueError, r"`dt0`"),
    Hostile("NeuralODE: constant steps without dt0",
            lambda: NeuralODE(FIELD, stepsize_controller=diffrax.ConstantStepSize()), ValueError, r"`dt0`"),
    Hostile("NeuralODE: max_steps 0", lambda: NeuralODE(FIELD, max_steps=0), ValueError, r"`max_steps`"),
    Hostile("NeuralODE: solver not a solver", lambda: NeuralODE(FIELD, solver="tsit5"), TypeError,
            r"`solver`"),
    Hostile("NeuralODE: controller not a controller",
            lambda: NeuralODE(FIELD, stepsize_controller=1e-6), TypeError, r"`stepsize_controller`"),
    Hostile("NeuralODE: lift of the wrong size",
            lambda: NeuralODE(FIELD, lift=random_affine(2, 4, key=KEY)), ValueError, r"`lift`"),
    Hostile("NeuralODE: readout of the wrong size",
            lambda: NeuralODE(FIELD, readout=random_affine(3, 1, key=KEY)), ValueError, r"`readout`"),
    Hostile("NeuralODE: lift a string", lambda: NeuralODE(FIELD, lift="identity"), TypeError, r"`lift`"),
    Hostile("NeuralODE: lift a vector", lambda: NeuralODE(FIELD, lift=jnp.ones(2)), ValueError, r"`lift`"),
    Hostile("NeuralODE: lift with NaN",
            lambda: NeuralODE(FIELD, lift=jnp.array([[1.0, jnp.nan], [0.0, 1.0]])), ValueError, r"`lift`"),
    Hostile("NeuralODE: readout with inf",
            lambda: NeuralODE(FIELD, readout=Affine(jnp.array([[1.0, jnp.inf]]))), ValueError, r"`readout`"),
    Hostile("NeuralODE: no state dimension", lambda: NeuralODE(lambda t, y, a: y), ValueError,
            r"`state_size`"),
    Hostile("NeuralODE: state_size 0", lambda: NeuralODE(lambda t, y, a: y, state_size=0), ValueError,
            r"`state_size`"),
    Hostile("NeuralODE: adjoint not an adjoint", lambda: NeuralODE(FIELD, adjoint="direct"), TypeError,
            r"`adjoint`"),
    # --- NeuralODE calls, rejected before compiling ------------------------------------------
    Hostile("NeuralODE: x of the wrong size", lambda: NeuralODE(FIELD)(jnp.ones(3)), ValueError, r"`x`"),
    Hostile("NeuralODE: x a batch", lambda: NeuralODE(FIELD)(jnp.ones((4, 2))), ValueError, r"`x`.*vmap"),
    Hostile("NeuralODE: x NaN", lambda: NeuralODE(FIELD)(jnp.array([jnp.nan, 0.0])), ValueError, r"`x`"),
    Hostile("NeuralODE: field returns the wrong shape",
            lambda: NeuralODE(lambda t, y, a: jnp.ones(3), state_size=2)(X), ValueError, r"`field`"),
    Hostile("NeuralODE: field fails on the state",
            lambda: NeuralODE(lambda t, y, a: a["rate"] * y, state_size=2)(X, 1.0), ValueError, r"`field`"),
    Hostile("NeuralODE: float32 state with float64 args",
            lambda: NeuralODE(Scaled(), state_size=2)(X.astype(jnp.float32), jnp.asarray(np.float64(0.5))),
            TypeError, r"`args`"),
    Hostile("NeuralODE: NaN field parameters",
            lambda: NeuralODE(eqx.tree_at(lambda f: f.mlp.layers[0].bias, FIELD,
                                          jnp.full(3, jnp.nan)))(X), ValueError, r"`field`"),
    Hostile("NeuralODE: BacksolveAdjoint with an array t1",
            lambda: NeuralODE(FIELD, t1=jnp.asarray(1.0), adjoint=diffrax.BacksolveAdjoint())(X),
            TypeError, r"`t1`"),
    Hostile("NeuralODE.batch: xs of the wrong shape", lambda: NeuralODE(FIELD).batch(jnp.ones((3, 3))),
            ValueError, r"`xs`"),
    Hostile("NeuralODE.batch: empty xs", lambda: NeuralODE(FIELD).batch(jnp.ones((0, 2))), ValueError,
            r"`xs`"),
    Hostile("NeuralODE.trajectory: ts beyond t1",
            lambda: NeuralODE(FIELD).trajectory(X, jnp.array([0.5, 2.0])), ValueError, r"`ts`"),
    Hostile("NeuralODE.trajectory: ts NaN",
            lambda: NeuralODE(FIELD).trajectory(X, jnp.array([0.5, jnp.nan])), ValueError, r"`ts`"),
    Hostile("NeuralODE.flow: h0 of the wrong shape", lambda: NeuralODE(FIELD).flow(jnp.ones(3)),
            ValueError, r"`h0`"),
    # --- run-time failures: said with their time ---------------------------------------------
    Hostile("NeuralODE: finite-time blow-up (adaptive) raises with its time",
            lambda: _blowup()(jnp.array([1.0])), eqx.EquinoxRuntimeError,
            r"^NeuralODE: the solution blew up in finite time at t = 1 \(step \d+\), before t1 = 2"),
    Hostile("NeuralODE.solve: finite-time blow-up flagged with step and time",
            lambda: _blowup().solve(jnp.array([1.0]), throw=False), None, flagged=_flag_blowup),
    Hostile("NeuralODE: finite-time blow-up under filter_jit",
            lambda: eqx.filter_jit(lambda m, x: m(x))(_blowup(), jnp.array([1.0])), eqx.EquinoxRuntimeError,
            r"EquinoxRuntimeError: NeuralODE: the solution blew up in finite time at t = 1 \(to within",
            near_top=None),
    Hostile("NeuralODE.solve: blow-up under vmap flagged per member",
            lambda: jax.vmap(lambda x: _blowup().solve(x, throw=False))(jnp.array([[1.0], [-1.0]])), None,
            flagged=lambda s: list(np.asarray(s.successful)) == [False, True]),
    Hostile("NeuralODE.solve: constant-step overflow flagged at its step and time",
            lambda: _blowup(**CONSTANT).solve(jnp.array([1.0]), ts=jnp.linspace(0.0, 2.0, 5), throw=False),
            None, flagged=_flag_nonfinite),
    Hostile("NeuralODE.trajectory: constant-step overflow raises with its time",
            lambda: _blowup(**CONSTANT).trajectory(jnp.array([1.0]), jnp.linspace(0.0, 2.0, 5)),
            eqx.EquinoxRuntimeError, r"^NeuralODE: the solution blew up: the state became non-finite "
            r"\(NaN or inf\) at t = 1\.1 \(step 22\)"),
    Hostile("NeuralODE.solve: throw not a bool", lambda: NeuralODE(FIELD).solve(X, throw="no"), TypeError,
            r"`throw`"),
    Hostile("NeuralODE.variational: finite-time blow-up raises",
            lambda: _blowup().variational(jnp.array([1.0])), eqx.EquinoxRuntimeError,
            r"^NeuralODE: the solution blew up in finite time"),
    Hostile("NeuralODE.variational: finite-time blow-up flagged (throw=False)",
            lambda: _blowup().variational(jnp.array([1.0]), throw=False), None,
            flagged=lambda v: _is(v.result, RESULTS.finite_time_blowup) and bool(np.isnan(v.jacobian).all())),
    Hostile("NeuralODE: too few max_steps is not a blow-up",
            lambda: NeuralODE(Square(jnp.array(-1.0)), state_size=1, t1=2.0, max_steps=3)(jnp.array([1.0])),
            eqx.EquinoxRuntimeError, r"^NeuralODE: the maximum number of solver steps \(`max_steps` = 3\)"),
    # --- fit ---------------------------------------------------------------------------------
    Hostile("fit: empty dataset", lambda: fit(NET, XS[:0], XS[:0], progress=False), ValueError, r"`xs`"),
    Hostile("fit: mismatched x/y sizes", lambda: fit(NET, XS, XS[:4], progress=False), ValueError, r"`ys`"),
    Hostile("fit: y of the wrong width", lambda: fit(NET, XS, jnp.ones((6, 2)), progress=False),
            ValueError, r"`ys`"),
    Hostile("fit: x of the wrong width", lambda: fit(NET, jnp.ones((6, 2)), XS, progress=False),
            ValueError, r"`xs`"),
    Hostile("fit: NaN data", lambda: fit(NET, XS, XS.at[2, 0].set(jnp.nan), progress=False), ValueError,
            r"`ys`"),
    Hostile("fit: lr <= 0", lambda: fit(NET, XS, XS, lr=0.0, progress=False), ValueError, r"`lr`"),
    Hostile("fit: lr and optimizer", lambda: fit(NET, XS, XS, lr=0.1, optimizer=optax.sgd(0.1)),
            ValueError, r"`lr`"),
    Hostile("fit: n_steps 0", lambda: fit(NET, XS, XS, n_steps=0), ValueError, r"`n_steps`"),
    Hostile("fit: diverging step raises", lambda: fit(NET, XS, XS, n_steps=4, chunk=2, lr=1e200,
                                                      optimizer=None, progress=False),
            RuntimeError, r"`lr`"),
    Hostile("fit: diverging step flagged (throw=False)",
            lambda: fit(NET, XS, XS, n_steps=4, chunk=2, optimizer=optax.sgd(1e200), progress=False,
                        throw=False), None, flagged=_fit_flag),
    Hostile("fit: throw not a bool", lambda: fit(NET, XS, XS, progress=False, throw="yes"), TypeError,
            r"`throw`"),
    # --- critical_points ---------------------------------------------------------------------
    Hostile("critical_points: non-finite f raises",
            lambda: critical_points(_log_bowl, -jnp.ones(2), jnp.ones(2), key=KEY, n_starts=4, n_steps=2),
            eqx.EquinoxRuntimeError, r"gradient became non-finite.*`throw=False`"),
    Hostile("critical_points: non-finite f flagged (throw=False)",
            lambda: critical_points(_log_bowl, -jnp.ones(2), jnp.ones(2), key=KEY, n_starts=4, n_steps=2,
                                    throw=False), None,
            flagged=lambda r: _is(r.result, RESULTS.nonfinite_gradient) and not bool(r.successful)),
    Hostile("critical_points: throw not a bool",
            lambda: critical_points(jnp.sum, -jnp.ones(2), jnp.ones(2), key=KEY, throw=0), TypeError,
            r"`throw`"),
    Hostile("critical_points: lower >= upper",
            lambda: critical_points(jnp.sum, jnp.ones(2), jnp.ones(2), key=KEY), ValueError, r"`upper`"),
    Hostile("critical_points: n_starts < 1",
            lambda: critical_points(jnp.sum, -jnp.ones(2), jnp.ones(2), key=KEY, n_starts=0), ValueError,
            r"`n_starts`"),
    Hostile("critical_points: NaN bound",
            lambda: critical_points(jnp.sum, jnp.array([jnp.nan, 0.0]), jnp.ones(2), key=KEY), ValueError,
            r"`lower`"),
    Hostile("critical_points: fn not scalar",
            lambda: critical_points(lambda x: x, -jnp.ones(2), jnp.ones(2), key=KEY), ValueError, r"`fn`"),
    Hostile("critical_points: bounds of different shapes",
            lambda: critical_points(jnp.sum, -jnp.ones(2), jnp.ones(3), key=KEY), ValueError, r"`upper`"),
    # --- embed -------------------------------------------------------------------------------
    Hostile("embed: in_size 0", lambda: embed(lambda u: u[:1], 0, 1), ValueError, r"`in_size`"),
    Hostile("embed: psi output of the wrong size", lambda: embed(lambda u: u, 2, 1), ValueError, r"`psi`"),
    Hostile("embed: psi fails on the input size", lambda: embed(lambda u: u @ jnp.ones((3, 1)), 2, 1),
            ValueError, r"`psi`"),
    Hostile("embed: psi not callable", lambda: embed(3.0, 2, 1), TypeError, r"`psi`"),
    # --- ResNet / DenseResNet / MLP ----------------------------------------------------------
    Hostile("ResNet: width 0", lambda: ResNet(0, 3, key=KEY), ValueError, r"`width`"),
    Hostile("ResNet: depth a float", lambda: ResNet(3, 2.5, key=KEY), TypeError, r"`depth`"),
    Hostile("ResNet: delta NaN", lambda: ResNet(3, 2, key=KEY, delta=float("nan")), ValueError, r"`delta`"),
    Hostile("ResNet: layers without a depth axis",
            lambda: ResNet(2, 3, layers=eqx.nn.Linear(2, 2, key=KEY)), ValueError, r"`layers`"),
    Hostile("DenseResNet: depth 0", lambda: DenseResNet(3, 0, key=KEY), ValueError, r"`depth`"),
    Hostile("DenseResNet: weights of the wrong shape",
            lambda: DenseResNet(2, 2, weights=jnp.ones((2, 2, 2, 3))), ValueError, r"`weights`"),
    Hostile("DenseResNet: NaN weights",
            lambda: DenseResNet(2, 2, weights=jnp.full((2, 2, 2, 2), jnp.nan)), ValueError, r"`weights`"),
    Hostile("MLP: one width only", lambda: MLP((3,), key=KEY), ValueError, r"`widths`"),
    Hostile("MLP: a zero width", lambda: MLP((3, 0, 1), key=KEY), ValueError, r"`widths`"),
    Hostile("MLP: widths an int", lambda: MLP(3, key=KEY), TypeError, r"`widths`"),
    Hostile("MLP: x NaN", lambda: NET(jnp.array([jnp.nan])), ValueError, r"`x`"),
    Hostile("MLPField: negative depth", lambda: MLPField(2, 3, -1, key=KEY), ValueError, r"`depth`"),
    Hostile("MLPField: scale inf", lambda: MLPField(2, 3, 1, key=KEY, scale=float("inf")), ValueError,
            r"`scale`"),
    Hostile("width_profile: unknown model", lambda: width_profile(object()), TypeError, r"`model`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
