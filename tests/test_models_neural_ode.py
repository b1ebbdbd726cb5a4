"""NeuralODE: known answers, every transform, the adjoint policy and bad input."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import jaxdyn as jd
from jaxdyn.models import (
    Affine,
    LinearField,
    MLPField,
    NeuralODE,
    mse_loss,
    random_affine,
    second_order,
)

from .helpers import central_directional, fd_step, random_like, rel_err

TIGHT = diffrax.PIDController(rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def small_model():
    """A 2 -> 3 -> 1 augmented neural ODE solved tightly (float64)."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return NeuralODE(MLPField(3, 8, 1, key=k1), lift=random_affine(2, 3, key=k2),
                     readout=random_affine(3, 1, key=k3), stepsize_controller=TIGHT, max_steps=512)


@pytest.fixture(scope="module")
def data():
    key = jax.random.key(1)
    xs = jax.random.uniform(key, (6, 2), minval=-1, maxval=1)
    return xs, jnp.sin(xs[:, :1] * 2.0)


def test_linear_flow_equals_expm():
    A = jax.random.normal(jax.random.key(2), (5, 5)) / 2
    x = jax.random.normal(jax.random.key(3), (5,))
    T = 1.3
    model = NeuralODE(LinearField(A), t1=T, stepsize_controller=TIGHT)
    expected = scipy.linalg.expm(T * np.asarray(A)) @ np.asarray(x)
    assert model.in_size == model.out_size == 5
    np.testing.assert_allclose(model(x), expected, atol=1e-8, rtol=0)
    # the variational equation gives the flow Jacobian expm(TA) and log det = T tr A
    var = model.variational(x)
    np.testing.assert_allclose(var.flow_jacobian, scipy.linalg.expm(T * np.asarray(A)), atol=1e-8)
    np.testing.assert_allclose(var.log_det_flow, T * np.trace(A), atol=1e-9)


def test_trajectory_and_lift_readout():
    A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])  # rotation
    lift = Affine(jnp.array([[1.0], [0.0]]), jnp.array([0.0, 0.5]))
    readout = Affine(jnp.array([[0.0, 2.0]]), jnp.array([1.0]))
    model = NeuralODE(LinearField(A), lift=lift, readout=readout, t1=np.pi / 2,
                      stepsize_controller=TIGHT)
    x = jnp.array([0.7])
    ts = jnp.linspace(0, np.pi / 2, 5)
    hs = model.trajectory(x, ts)
    exact = jnp.stack([jnp.array([0.7 * jnp.cos(t) + 0.5 * jnp.sin(t),
                                  -0.7 * jnp.sin(t) + 0.5 * jnp.cos(t)]) for t in ts])
    np.testing.assert_allclose(hs, exact, atol=1e-9)
    np.testing.assert_allclose(model(x), 1.0 + 2.0 * exact[-1, 1:], atol=1e-9)
    assert (model.in_size, model.state_size, model.out_size) == (1, 2, 1)


def test_custom_callable_field_with_args():
    def field(t, y, args):
        return -args["rate"] * y + jnp.sin(t)

    model = NeuralODE(field, state_size=1, t1=2.0, stepsize_controller=TIGHT)
    y = model(jnp.array([1.0]), {"rate": jnp.array(0.5)})
    # exact: y' = -a y + sin t, y(0) = 1
    a, t = 0.5, 2.0
    c = 1.0 + 1.0 / (1 + a**2)
    exact = c * np.exp(-a * t) + (a * np.sin(t) - np.cos(t)) / (1 + a**2)
    np.testing.assert_allclose(y, [exact], atol=1e-9)


def test_time_dependent_mlp_field(getkey):
    field = MLPField(2, 8, 1, key=getkey(), time_dependent=True)
    y = jnp.array([0.1, -0.3])
    direct = field.scale * field.mlp(jnp.concatenate([jnp.array([0.25]), y]))
    np.testing.assert_allclose(field(0.25, y, None), direct)
    model = NeuralODE(field)
    assert model(y).shape == (2,)


def test_gradient_matches_central_differences(small_model, data):
    xs, ys = data
    params, static = eqx.partition(small_model, eqx.is_inexact_array)
    loss = jax.jit(lambda p: mse_loss(eqx.combine(p, static), xs, ys))
    grads = jax.jit(jax.grad(lambda p: mse_loss(eqx.combine(p, static), xs, ys)))(params)
    for seed in range(3):
        v = random_like(jax.random.key(10 + seed), params)
        directional = sum(jnp.vdot(g, w) for g, w in zip(jax.tree_util.tree_leaves(grads),
                                                         jax.tree_util.tree_leaves(v)))
        fd = central_directional(loss, params, v, fd_step(1.0))
        assert rel_err(directional, fd) < 1e-5
    # per-leaf check on the lift weight: every entry
    @jax.jit
    def loss_lift(W):
        model = eqx.tree_at(lambda m: m.lift.weight, small_model, W)
        return mse_loss(model, xs, ys)

    W = small_model.lift.weight
    g = jax.grad(loss_lift)(W)
    h = fd_step(W)
    fd = np.zeros(W.shape)
    for i in np.ndindex(W.shape):
        e = jnp.zeros(W.shape).at[i].set(1.0)
        fd[i] = (loss_lift(W + h * e) - loss_lift(W - h * e)) / (2 * h)
    assert rel_err(g, fd) < 1e-5


def test_hessian_of_phi_matches_finite_differences(small_model):
    model = second_order(small_model)
    assert isinstance(model.adjoint, diffrax.DirectAdjoint)
    assert isinstance(small_model.adjoint, diffrax.RecursiveCheckpointAdjoint)
    f = lambda x: model(x)[0]
    x = jnp.array([0.3, -0.4])
    H = jax.jit(jax.hessian(f))(x)
    grad = jax.jit(jax.grad(f))
    h = fd_step(x)
    H_fd = jnp.stack([(grad(x + h * e) - grad(x - h * e)) / (2 * h) for e in jnp.eye(2)])
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    assert rel_err(H, H_fd) < 1e-5
    # the input gradient agrees with the variational equation
    var = small_model.variational(x)
    np.testing.assert_allclose(var.jacobian[0], grad(x), rtol=1e-8)


def test_hvp_of_neural_ode_loss_matches_finite_differences(small_model, data):
    xs, ys = data
    model = second_order(small_model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss = lambda p: mse_loss(eqx.combine(p, static), xs, ys)
    grad = jax.jit(jax.grad(loss))
    v = random_like(jax.random.key(7), params)
    hvp = jax.jit(lambda p, v: jax.jvp(jax.grad(loss), (p,), (v,))[1])(params, v)
    fd = central_directional(grad, params, v, fd_step(1.0))
    flat = lambda t: jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(t)])
    assert rel_err(flat(hvp), flat(fd)) < 1e-5


def test_checkpointed_adjoint_is_first_order_only(small_model):
    """The policy exists because the training adjoint refuses forward-over-reverse."""
    f = lambda x: small_model(x)[0]
    with pytest.raises(Exception):  # noqa: B017 - diffrax/JAX raise a TypeError/ValueError
        jax.hessian(f)(jnp.array([0.1, 0.2]))


def test_jit_does_not_retrace_and_vmap_equals_loop(small_model):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def predict(model, xs):
        return jax.vmap(model)(xs)

    xs = jax.random.normal(jax.random.key(4), (5, 2))
    batched = predict(small_model, xs)
    predict(small_model, xs + 1.0)  # new values, same shapes: no retrace
    perturbed = eqx.tree_at(lambda m: m.readout.bias, small_model, small_model.readout.bias + 1)
    predict(perturbed, xs)  # new parameter values: no retrace
    loop = jnp.stack([small_model(x) for x in xs])
    np.testing.assert_allclose(batched, loop, rtol=1e-12, atol=1e-12)


def test_shared_step_batch(small_model):
    xs = jax.random.normal(jax.random.key(8), (7, 2))
    shared = eqx.filter_jit(lambda m, xs: m.batch(xs))(small_model, xs)
    np.testing.assert_allclose(shared, jax.vmap(small_model)(xs), atol=1e-10)  # both tight
    fixed = NeuralODE(small_model.field, lift=small_model.lift, readout=small_model.readout,
                      solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(),
                      dt0=0.05)
    np.testing.assert_allclose(fixed.batch(xs), jax.vmap(fixed)(xs), rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="`xs`"):
        small_model.batch(jnp.ones((3, 3)))


def test_trainable_with_optax(getkey):
    xs = jnp.linspace(-1, 1, 16)[:, None]
    ys = 0.5 * xs + 0.2
    model = NeuralODE(MLPField(1, 8, 1, key=getkey()), state_size=1,
                      solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(),
                      dt0=0.25, readout=random_affine(1, 1, key=getkey()))
    result = jd.models.fit(model, xs, ys, n_steps=200, progress=False)
    assert result.losses.shape == (200,)
    assert result.losses[-1] < 1e-2 * result.losses[0]


class TestBadInput:
    def test_wrong_input_dimension(self, small_model):
        with pytest.raises(ValueError, match="`x`"):
            small_model(jnp.ones(3))
        with pytest.raises(ValueError, match="vmap"):
            small_model(jnp.ones((4, 2)))

    def test_non_finite_input(self, small_model):
        with pytest.raises(ValueError, match="`x`.*non-finite"):
            small_model(jnp.array([jnp.nan, 0.0]))
        with pytest.raises(Exception, match="non-finite"):
            eqx.filter_jit(lambda m, x: m(x))(small_model, jnp.array([jnp.inf, 0.0]))

    def test_lift_and_readout_shapes(self, getkey):
        field = MLPField(3, 4, 1, key=getkey())
        with pytest.raises(ValueError, match="`lift`"):
            NeuralODE(field, lift=random_affine(2, 4, key=getkey()))
        with pytest.raises(ValueError, match="`readout`"):
            NeuralODE(field, readout=random_affine(2, 1, key=getkey()))
        with pytest.raises(TypeError, match="`lift`"):
            NeuralODE(field, lift="identity")
        with pytest.raises(ValueError, match="`weight`"):
            Affine(jnp.ones(3))
        with pytest.raises(ValueError, match="state dimension"):
            NeuralODE(lambda t, y, a: y)

    @pytest.mark.parametrize("t1", [0.0, -1.0, float("nan")])
    def test_non_positive_time(self, getkey, t1):
        with pytest.raises(ValueError, match="`t1`"):
            NeuralODE(MLPField(2, 4, 1, key=getkey()), t1=t1)

    def test_field_of_wrong_shape(self):
        model = NeuralODE(lambda t, y, args: jnp.ones(3), state_size=2)
        with pytest.raises(ValueError, match="`field`"):
            model(jnp.ones(2))

    def test_not_callable_field(self):
        with pytest.raises(TypeError, match="`field`"):
            NeuralODE(jnp.ones(3), state_size=3)


def test_second_order_swaps_only_neural_odes(small_model):
    pair = (small_model, MLPField(2, 3, 1, key=jax.random.key(0)))
    swapped = second_order(pair)
    assert isinstance(swapped[0].adjoint, diffrax.DirectAdjoint)
    assert eqx.tree_equal(swapped[1], pair[1])
    fn = lambda x: x
    assert second_order(fn) is fn


def test_trajectory_times_are_checked(small_model):
    with pytest.raises(ValueError, match="`ts`"):
        small_model.trajectory(jnp.ones(2), jnp.array([0.5, 2.0]))
    with pytest.raises(ValueError, match="`ts`"):
        small_model.trajectory(jnp.ones(2), jnp.array([0.5, 0.2]))
