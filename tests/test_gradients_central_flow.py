r"""Transforms of `central_flow` (issue 16): one compilation across step sizes, `vmap` over the step
size, and derivatives against central finite differences and the closed form.

The problem is the toy loss of `test_central_flow_known` ($L_c = \tfrac12(1 + x^2)y^2 +
\tfrac12(x - c)^2$, $c = 5$) from $(4, 0.1)$: for $\eta \in [0.09, 0.11]$ the flow meets the edge
at $x_\star = \sqrt{2/\eta - 1}$ within ~5 steps and is at rest there by $t = 40$, where its
predicted loss is $P(\eta) = \tfrac12 (x_\star - c)^2 + (c - x_\star)/(x_\star \eta)$. So
$dP/d\eta$ has a closed form (differentiated here by `jax.grad` of that formula, an expression
independent of the flow) to compare the derivative through the whole run with.

Where a derivative is not provided (the matrix-free `LanczosEigen` strategy) differentiating must
raise, never return a silent zero.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.training import LanczosEigen, central_flow

from .helpers import fd_directional
from .test_central_flow_known import pair_loss, toy_loss

C = jnp.array([5.0])
W0 = jnp.array([4.0, 0.1])
N_STEPS = 40
LRS = jnp.array([0.09, 0.1, 0.11])


def predicted_at_rest(lr):
    """P(lr) = (x_* - c)^2 / 2 + sigma^2 / lr at the rest point (x_*, 0); jnp, differentiable."""
    xs = jnp.sqrt(2.0 / lr - 1.0)
    c = C[0]
    return 0.5 * (xs - c) ** 2 + (c - xs) / xs / lr


def _flow(lr, w0=W0, *, n_steps=N_STEPS, eigen=None):
    return central_flow(toy_loss, w0, C, lr=lr, n_steps=n_steps, eigen=eigen, compare=False,
                        throw=False)


def _f64(x):
    return jnp.asarray(x, jnp.float64)


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=1)
def _run(lr, w0):
    """(predicted loss (T,), params at T, sigma^2 at T, result): one compilation for every lr
    and start."""
    res = _flow(lr, w0)
    return res.predicted_loss, res.params[-1], res.sigma[-1, 0], res.result


@eqx.filter_jit
def _pullback(lr, w0, cotangent):
    """Reverse mode: the gradient of <cotangent, predicted_loss> w.r.t. (lr, w0)."""
    return jax.grad(lambda a, w: jnp.vdot(cotangent, _flow(a, w).predicted_loss), argnums=(0, 1))(lr, w0)


@pytest.fixture(scope="module")
def finals():
    return [_run(lr, W0) for lr in LRS]


def test_jit_once_across_step_sizes(finals):
    """Three step sizes (and starts, below) through one compiled function (a second trace would
    raise): each is the closed form at rest."""
    for lr, (pred, w, sig, code) in zip(LRS, finals):
        assert bool(code == RESULTS.successful)
        np.testing.assert_allclose(float(pred[-1]), float(predicted_at_rest(lr)), rtol=1e-9)
        xs = np.sqrt(2 / float(lr) - 1)
        np.testing.assert_allclose(np.asarray(w), [xs, 0.0], atol=1e-10)
        np.testing.assert_allclose(float(sig), (float(C[0]) - xs) / xs, rtol=1e-9)


def test_vmap_over_lr(finals):
    """`vmap` over the step size equals the one-at-a-time runs (a batched `result` too)."""
    res = jax.vmap(lambda lr: _flow(lr))(LRS)
    assert res.predicted_loss.shape == (3, N_STEPS + 1)
    assert res.params.shape == (3, N_STEPS + 1, 2)
    np.testing.assert_allclose(np.asarray(res.predicted_loss), np.stack([f[0] for f in finals]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.sigma[:, -1, 0]), [float(f[2]) for f in finals], rtol=1e-10)
    assert np.all(np.asarray(res.successful))
    np.testing.assert_allclose(np.asarray(res.lr), np.asarray(LRS))


def test_grad_predicted_loss_wrt_lr():
    """d predicted_loss(T) / d lr by reverse mode through the whole run (eigh, the complementarity
    solve, diffrax) against central differences (five-point, h = 1e-4) and the closed form
    dP/dlr."""
    lr = _f64(0.1)
    last = jnp.zeros(N_STEPS + 1).at[-1].set(1.0)
    grad_lr, _ = _pullback(lr, W0, last)
    fd = fd_directional(lambda a: _run(_f64(a), W0)[0][-1], lr, _f64(1.0), 1e-4)
    closed = jax.grad(predicted_at_rest)(lr)
    np.testing.assert_allclose(float(grad_lr), float(fd), rtol=1e-6)
    np.testing.assert_allclose(float(grad_lr), float(closed), rtol=1e-7)


def test_grad_wrt_params_through_arrival():
    """The predicted loss along the arrival at the edge (t = 0..8, where it still depends on the
    start; at rest it does not) as a function of the start point: reverse mode against
    five-point central differences along two directions."""
    lr = _f64(0.1)
    weights = jnp.zeros(N_STEPS + 1).at[:9].set(jnp.linspace(1.0, 2.0, 9))
    _, grad_w = _pullback(lr, W0, weights)
    for v in (jnp.array([1.0, 0.0]), jnp.array([0.3, -1.0])):
        fd = fd_directional(lambda w: jnp.vdot(weights, _run(lr, w)[0]), W0, v, 1e-4)
        np.testing.assert_allclose(float(grad_w @ v), float(fd), rtol=1e-6)
    assert float(jnp.linalg.norm(grad_w)) > 1e-3


def test_jvp_predicted_loss_wrt_lr():
    """Forward mode (`jax.jvp`) agrees with the closed form."""
    lr = _f64(0.1)
    _, tangent = jax.jvp(lambda a: _flow(a).predicted_loss[-1], (lr,), (_f64(1.0),))
    np.testing.assert_allclose(float(tangent), float(jax.grad(predicted_at_rest)(lr)), rtol=1e-7)


def test_lanczos_strategy_refuses_to_differentiate():
    """`LanczosEigen` gives no eigenvector derivatives: `grad` raises a TypeError that names the
    dense strategy (never a silent zero)."""
    with pytest.raises(TypeError, match="DenseEigen"):
        jax.grad(lambda a: _flow(a, eigen=LanczosEigen()).predicted_loss[-1])(_f64(0.1))


@pytest.mark.slow
def test_grad_two_coincident_eigenvalues_at_the_edge():
    """k = 2 on two separable toys (c = 4.6, 5.0) at rest: both eigenvalues sit at 2/lr (they
    coincide: the eigenvectors are a gauge), and d predicted_loss / d lr through the run equals the
    closed form d/dlr [P_4.6(lr) + P_5.0(lr)] and five-point differences."""
    c2 = jnp.array([4.6, 5.0])
    w0 = jnp.array([4.2, 0.1, 4.0, 0.1])

    def pred(lr):
        return central_flow(pair_loss, w0, c2, lr=lr, n_steps=60, k=2, compare=False,
                            throw=False).predicted_loss[-1]

    def closed(lr):
        xs = jnp.sqrt(2.0 / lr - 1.0)
        return jnp.sum(0.5 * (xs - c2) ** 2 + (c2 - xs) / xs / lr)

    lr = _f64(0.1)
    grad = eqx.filter_jit(jax.grad(pred))(lr)
    value = eqx.filter_jit(pred)
    fd = fd_directional(value, lr, _f64(1.0), 1e-4)
    np.testing.assert_allclose(float(value(lr)), float(closed(lr)), rtol=1e-10)
    np.testing.assert_allclose(float(grad), float(jax.grad(closed)(lr)), rtol=1e-8)
    np.testing.assert_allclose(float(grad), float(fd), rtol=1e-6)
