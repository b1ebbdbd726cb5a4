"""The shared layer: Runge-Kutta kernels (order, PyTrees, stage nodes, diffrax tableau), the HVP,
the flattener, the checkpoint file, the deprecation helpers and the one failure policy."""

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import _kernels as K
from jaxdyn._checkpoint import Checkpoint
from jaxdyn._deprecate import deprecated_names, renamed_kwargs
from jaxdyn._results import RESULTS, check_throw, raise_if_failed


def _decay(t, y):
    return -y + jnp.sin(t)


def _exact(t):  # y' = -y + sin t, y(0) = 1
    return 1.5 * jnp.exp(-t) + 0.5 * (jnp.sin(t) - jnp.cos(t))


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_rk_map_has_its_classical_order(name):
    tableau = K.TABLEAUS[name]
    errors = []
    for n in (20, 40):
        y = K.rk_map(_decay, 0.0, jnp.asarray(1.0), 1.0 / n, n, tableau)
        errors.append(abs(float(y - _exact(1.0))))
    order = np.log2(errors[0] / errors[1])
    assert abs(order - tableau.order) < 0.2, (name, order)


def test_rk_step_pytree_stage_nodes_and_save():
    y = {"a": jnp.ones(2), "b": jnp.asarray(3.0)}
    f = lambda t, z: jax.tree_util.tree_map(lambda v: -v, z)  # noqa: E731
    out = K.rk_step(f, 0.0, y, 0.1)
    np.testing.assert_allclose(out["a"], np.exp(-0.1) * np.ones(2), rtol=1e-6)
    seen = []
    K.rk_step(lambda t, z, c: seen.append(c) or -z, 0.0, jnp.ones(1), 0.1, with_node=True)
    assert seen == [0.0, 0.5, 0.5, 1.0]
    ys = K.rk_map(_decay, 0.0, jnp.asarray(1.0), 0.1, 5, save=True)
    assert ys.shape == (5,)
    np.testing.assert_allclose(ys[-1], K.rk_map(_decay, 0.0, jnp.asarray(1.0), 0.1, 5))


def test_rk4_tableau_matches_diffrax_solver():
    tab = K.RK4.to_diffrax()

    class _RK4(diffrax.AbstractERK):
        tableau = tab
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    term = diffrax.ODETerm(lambda t, y, args: _decay(t, y))
    sol = diffrax.diffeqsolve(term, _RK4(), 0.0, 1.0, 0.1, jnp.asarray(1.0))
    np.testing.assert_allclose(sol.ys[-1], K.rk_map(_decay, 0.0, jnp.asarray(1.0), 0.1, 10),
                               rtol=1e-12)


def test_hvp_and_jvp_columns_match_dense():
    A = jnp.asarray([[2.0, 1.0], [1.0, 3.0]])
    fun = lambda x, s: s * (0.5 * x @ A @ x + jnp.sum(x**3))  # noqa: E731
    x, v = jnp.asarray([0.3, -0.7]), jnp.asarray([1.0, 2.0])
    dense = jax.hessian(fun)(x, 2.0)
    np.testing.assert_allclose(K.hvp(fun, x, v, 2.0), dense @ v, rtol=1e-12)
    f = lambda z: jnp.tanh(A @ z)  # noqa: E731
    Q = jnp.eye(2)[:, :1] + 0.5
    fx, JQ = K.jvp_columns(f, x, Q)
    np.testing.assert_allclose(fx, f(x))
    np.testing.assert_allclose(JQ, jax.jacfwd(f)(x) @ Q, rtol=1e-12)


def test_flattener_roundtrip_is_hashable_and_keeps_static_leaves():
    model = eqx.nn.MLP(2, 1, 3, 1, key=jax.random.key(0))
    flat, fl = K.flatten(model)
    assert flat.shape == (fl.size,) and fl.size == 2 * 3 + 3 + 3 + 1
    back = fl(flat)
    assert eqx.tree_equal(back, model)
    _, fl2 = K.flatten(eqx.nn.MLP(2, 1, 3, 1, key=jax.random.key(1)))
    assert hash(fl) == hash(fl2) and fl == fl2
    with pytest.raises(ValueError, match="shape"):
        fl.unravel(jnp.zeros(3))
    with pytest.raises(ValueError, match="`weights`"):
        K.flatten({"n": 3}, name="weights")


def test_checkpoint_roundtrip_keys_and_config(tmp_path):
    ck = Checkpoint(tmp_path / "run.npz", every=2)
    state = (jnp.arange(3.0), jax.random.key(3), jnp.asarray(7))
    ck.save(state, {"losses": np.arange(4.0)}, {"lr": 0.1})
    loaded, arrays = ck.load(state, {"lr": 0.1})
    np.testing.assert_array_equal(loaded[0], state[0])
    np.testing.assert_array_equal(jax.random.key_data(loaded[1]), jax.random.key_data(state[1]))
    np.testing.assert_array_equal(arrays["losses"], np.arange(4.0))
    with pytest.raises(ValueError, match="run.npz"):
        ck.load(state, {"lr": 0.2})
    assert Checkpoint(tmp_path / "run.npz", resume=False).load(state, {"lr": 0.1}) is None
    with pytest.raises(TypeError, match="every"):
        Checkpoint(tmp_path / "x.npz", every=1.5)


def test_renamed_kwargs_and_deprecated_names():
    @renamed_kwargs(steps="n_steps")
    def run(*, n_steps=1):
        return n_steps

    with pytest.warns(DeprecationWarning, match="n_steps"):
        assert run(steps=4) == 4
    with pytest.raises(TypeError, match="both"):
        run(steps=1, n_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(n_steps=3) == 3
    getattr_ = deprecated_names("pkg", {"New": 5}, {"Old": "New"})
    with pytest.warns(DeprecationWarning, match="pkg.New"):
        assert getattr_("Old") == 5
    with pytest.raises(AttributeError):
        getattr_("Other")


def test_one_failure_policy_eager_jit_and_batched():
    ok, bad = RESULTS.successful, RESULTS.nonfinite_state
    assert raise_if_failed(1.0, ok, True) == 1.0
    assert raise_if_failed(1.0, bad, False) == 1.0
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite.*throw=False"):
        raise_if_failed(1.0, bad, True, hint="pass throw=False")

    @eqx.filter_jit
    def run(x, fail):
        code = RESULTS.where(fail, RESULTS.nonfinite_state, RESULTS.successful)
        return raise_if_failed(x, code, True)

    assert float(run(jnp.asarray(2.0), jnp.asarray(False))) == 2.0
    with pytest.raises(Exception, match="non-finite"):
        run(jnp.asarray(2.0), jnp.asarray(True))
    batched = jax.vmap(lambda f: RESULTS.where(f, RESULTS.nonfinite_state, RESULTS.successful))(
        jnp.asarray([False, True]))
    with pytest.raises(eqx.EquinoxRuntimeError, match="1 of 2"):
        raise_if_failed(0.0, batched, True)
    with pytest.raises(TypeError, match="`throw`"):
        check_throw(1)
