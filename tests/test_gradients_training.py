"""The gradient-check matrix of jaxdyn.training (GD, gradient flow; SGD has its own file), float64,
against five-point central differences of the same function, 1e-6 relative, each check one
compiled program covering forward and reverse mode under `jit` and `vmap` (`check_compiled`):

- `gd_map`: G(theta) and its Jacobian operator I - eta H against differences of G;
- several GD steps (`gd_map` in `lax.scan`) w.r.t. the initial parameters and the step size;
- `gradient_flow`: the endpoint w.r.t. the parameters and the end time (reverse mode; forward
  mode raises, documented);
- `gd_endpoints`: the final losses w.r.t. the initialisations;
- `train`: not differentiable (a host loop): `jax.grad` raises a clear error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxdyn.training import GradientFlow, gd_endpoints, gd_map, gradient_flow, hyperbola_loss, train

from .helpers import fd_directional, rel_err
from .test_gradients_curvature import check_compiled

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))
Y = jnp.asarray(np.random.default_rng(1).normal(size=6))
P = {"w": jnp.asarray([0.5, -1.0]), "b": jnp.asarray(0.3)}


def loss(p, x, y):
    return 0.5 * jnp.mean((jnp.tanh(x @ p["w"]) + p["b"] - y) ** 2)


def test_gd_map_and_jacobian(getkey):
    G = gd_map(loss, 0.3)
    check_compiled(lambda p: G(p, X, Y), P, key=getkey())
    J = G.jacobian(P, X, Y)
    for _ in range(2):
        v = jax.random.normal(getkey(), (J.size,))
        fd = fd_directional(lambda p: G(p, X, Y), P, J.hessian.unravel(v))
        assert rel_err(J.mv(v), ravel_pytree(fd)[0]) < 1e-6


def _gd_steps(p_lr, n=5):
    p, lr = p_lr
    G = gd_map(loss, lr)
    return jax.lax.scan(lambda q, _: (G(q, X, Y), None), p, None, length=n)[0]


def test_several_gd_steps_wrt_params_and_lr(getkey):
    check_compiled(_gd_steps, (P, jnp.asarray(0.4)), key=getkey())


FLOW = GradientFlow(dt_max=0.05)


def _flow_end(p_t1):
    p, t1 = p_t1
    sol = gradient_flow(loss, p, X, Y, ts=jnp.stack([jnp.zeros(()), t1]), flow=FLOW)
    return jax.tree_util.tree_map(lambda a: a[-1], sol.params), sol.losses[-1]


def test_gradient_flow_endpoint_wrt_params_and_time(getkey):
    # t1 = 0.33 with h = 0.05: 6 full steps and a partial one; the stencil (+-2 h_fd) never
    # changes the step count, so the discrete solution is smooth in t1
    check_compiled(_flow_end, (P, jnp.asarray(0.33)), key=getkey(), modes=("rev",), n_dirs=1)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(_flow_end, ((P, jnp.asarray(0.33)),), ((P, jnp.asarray(1.0)),))


def test_gd_endpoints_loss_wrt_inits(getkey):
    inits = jnp.asarray([[1.2, 0.5], [0.3, 2.0]])
    check_compiled(lambda w: gd_endpoints(hyperbola_loss, w, 0.1, n_steps=20).loss, inits, key=getkey())


def test_train_is_not_differentiable():
    with pytest.raises(TypeError, match=r"`params` is traced.*neither differentiable"):
        jax.grad(
            lambda w: train(
                loss, {"w": w, "b": P["b"]}, X, Y, n_steps=5, lr=0.1, every=5, top_k=0, progress=False
            ).losses[-1]
        )(P["w"])
    with pytest.raises(TypeError, match=r"`lr` is traced"):
        jax.grad(
            lambda lr: train(loss, P, X, Y, n_steps=5, lr=lr, every=5, top_k=0, progress=False).losses[-1]
        )(0.1)
