"""Known answers of the self-attention field `jaxdyn.meanfield.SelfAttention` (float64).

- d = 2, Q = K = V = I, uniform normalisation: the angular velocity on the circle is the Kuramoto
  field with zero frequencies, K = 1 and g(phi) = exp(beta cos phi) sin phi (to 1e-12), and at beta = 0
  the classical all-to-all model (g = sin); a short simulate of both agrees;
- softmax = uniform at beta = 0; softmax at beta < 0 is the field of -Q at |beta|;
- equivariance f(R x) = R f(x) for a rotation R commuting with Q, K, V (sphere and euclidean);
- the dense and the blocked (online-softmax) kernels agree, with padding, both normalisations;
- multi-head = the sum of the one-head fields; layernorm and feed-forward as written;
- the unit sphere is invariant to 1e-12 with `Projected(RK4())` (fast path = diffrax's path) and with
  adaptive `Projected(Tsit5())`; plain RK4 and Tsit5 drift;
- gradients of the final state with respect to beta and V match central differences (fixed steps);
- a batch of sequences under vmap, and a new beta does not recompile;
- the token axis split over 4 virtual CPU devices (`shard_tokens`) equals one device (a subprocess).
"""

import os
import subprocess
import sys
import textwrap

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.meanfield import _attention

I2 = np.eye(2)


def _unit(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _tokens(n, d, seed=0):
    return _unit(jax.random.normal(jax.random.key(seed), (n, d)))


def _angular(theta, v):
    """The tangential component of v at (cos theta, sin theta): d theta / dt."""
    return -jnp.sin(theta) * v[:, 0] + jnp.cos(theta) * v[:, 1]


THETA = np.array([0.1, 0.9, 1.3, 2.8, 3.0, 4.4, 5.9, 6.1])
X2 = np.stack([np.cos(THETA), np.sin(THETA)], axis=-1)
BETAS = (0.0, 1.7, -0.6)


def _block_diag(a, b):
    out = np.zeros((4, 4))
    out[:2, :2], out[2:, 2:] = a, b
    return out


def _block_rotation(a, b):
    """block-diag(R(a), R(b)): it commutes with block-diag(p I + q J, r I + s J)."""
    def r(t):
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return _block_diag(r(a), r(b))


def _commuting(p, q, r, s):
    J = np.array([[0.0, -1.0], [1.0, 0.0]])
    return _block_diag(p * np.eye(2) + q * J, r * np.eye(2) + s * J)


def _max(a):
    return float(jnp.max(jnp.abs(a)))


_call = eqx.filter_jit(lambda field, x: field(0.0, x))  # one compilation per static layout and shape
RNG = np.random.default_rng(0)
X3 = RNG.normal(size=(9, 3))
X3 /= np.linalg.norm(X3, axis=-1, keepdims=True)
Q3, K3, V3 = RNG.normal(size=(3, 3, 3))
X13 = RNG.normal(size=(13, 3))
X13 /= np.linalg.norm(X13, axis=-1, keepdims=True)
QH, KH, VH = RNG.normal(size=(3, 2, 3, 3))  # two heads


@jax.jit
def _kuramoto_errors(beta):
    """The field on the circle against Kuramoto(zeros, K = 1, g = exp(beta cos) sin) and, at any beta,
    the classical model's field (equal at beta = 0); one compilation for every beta."""
    v = mf.SelfAttention(I2, I2, I2, beta=beta, normalisation="uniform")(0.0, X2)
    omega = _angular(THETA, v)
    kuramoto = mf.Kuramoto(jnp.zeros(8), 1.0, g=lambda phi: jnp.exp(beta * jnp.cos(phi)) * jnp.sin(phi))
    classical = mf.Kuramoto(jnp.zeros(8), 1.0)
    return (jnp.max(jnp.abs(jnp.sum(v * X2, axis=-1))), jnp.max(jnp.abs(omega - kuramoto(0.0, THETA))),
            jnp.max(jnp.abs(omega - classical(0.0, THETA))))


@pytest.mark.parametrize("beta", [0.0, 1.7, -0.6])
def test_uniform_on_the_circle_is_kuramoto(beta):
    tangent, kuramoto, classical = (float(e) for e in _kuramoto_errors(beta))
    assert tangent <= 1e-15  # the field is tangent to the circle
    assert kuramoto <= 1e-12
    if beta == 0.0:  # the classical all-to-all Kuramoto model with K = 1 (g = sin)
        assert classical <= 1e-12


def test_softmax_equals_uniform_at_beta_zero_and_negative_beta_is_minus_q():
    soft = _call(mf.SelfAttention(Q3, K3, V3, beta=0.0), X3)
    assert _max(soft - _call(mf.SelfAttention(Q3, K3, V3, beta=0.0, normalisation="uniform"), X3)) <= 1e-12
    neg = _call(mf.SelfAttention(Q3, K3, V3, beta=-0.8), X3)
    assert _max(neg - _call(mf.SelfAttention(-Q3, K3, V3, beta=0.8), X3)) <= 1e-12


@pytest.mark.parametrize("geometry", ["sphere", "euclidean"])
def test_equivariance_under_commuting_rotation(geometry):
    R = _block_rotation(0.7, -1.9)
    Q = _commuting(1.0, 0.3, 0.5, -0.2)
    K = _commuting(0.8, -0.4, 1.1, 0.6)
    V = _commuting(0.2, 1.0, -0.7, 0.4)
    field = mf.SelfAttention(Q, K, V, beta=1.4, geometry=geometry)
    x = RNG.normal(size=(11, 4))
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    assert _max(_call(field, x @ R.T) - _call(field, x) @ R.T) <= 1e-12


@pytest.mark.parametrize("normalisation", ["softmax", "uniform"])
def test_dense_and_blocked_agree(normalisation):
    dense = _call(mf.SelfAttention(QH, KH, VH, beta=2.5, normalisation=normalisation), X13)
    for block in (5, 64):  # padded query and key blocks; one block larger than n
        field = mf.SelfAttention(QH, KH, VH, beta=2.5, normalisation=normalisation, block_size=block)
        assert _max(_call(field, X13) - dense) <= 1e-12 * max(1.0, _max(dense)), block  # |uniform| ~ e^beta


def test_multihead_is_the_sum_of_heads_and_weights():
    heads = mf.SelfAttention(QH, KH, VH, beta=1.1)
    one = [mf.SelfAttention(QH[h], KH[h], VH[h], beta=1.1) for h in range(2)]
    assert _max(_call(heads, X13) - _call(one[0], X13) - _call(one[1], X13)) <= 1e-12
    w = heads.weights(X13)
    assert w.shape == (2, 13, 13) and one[0].weights(X13).shape == (13, 13)
    assert _max(jnp.sum(w, axis=-1) - 1.0) <= 1e-12
    manual = np.exp(1.1 * (X13 @ QH[1].T) @ (X13 @ KH[1].T).T)
    assert _max(w[1] - manual / manual.sum(1, keepdims=True)) <= 1e-12
    assert heads.d == 3 and heads.heads == 2 and heads.n is None


def test_layernorm_and_feedforward_as_written():
    y = RNG.normal(size=(6, 3)) * 3.0 + 1.0
    W = RNG.normal(size=(3, 3))

    def ff(z):
        return jnp.tanh(W @ z)

    c = y - y.mean(-1, keepdims=True)
    z = c / np.sqrt((c * c).mean(-1, keepdims=True) + 1e-5)
    wz = jax.nn.softmax(0.7 * (z @ Q3.T) @ (z @ K3.T).T, axis=-1)
    ln = _call(mf.SelfAttention(Q3, K3, V3, beta=0.7, geometry="layernorm", feedforward=ff), y)
    assert _max(ln - wz @ (z @ V3.T) - jnp.tanh(z @ W.T)) <= 1e-12
    sphere = _call(mf.SelfAttention(Q3, K3, V3, beta=0.7, feedforward=ff), X3)
    ws = jax.nn.softmax(0.7 * (X3 @ Q3.T) @ (X3 @ K3.T).T, axis=-1)
    v = ws @ (X3 @ V3.T) + jnp.tanh(X3 @ W.T)
    assert _max(sphere - (v - jnp.sum(v * X3, -1, keepdims=True) * X3)) <= 1e-12


def test_simulate_on_the_circle_is_kuramoto():
    beta = 1.3
    ts = jnp.linspace(0.0, 2.0, 5)
    field = mf.SelfAttention(I2, I2, I2, beta=beta, normalisation="uniform")
    kuramoto = mf.Kuramoto(jnp.zeros(8), 1.0, g=lambda phi: jnp.exp(beta * jnp.cos(phi)) * jnp.sin(phi))
    tokens = mf.simulate(field, X2, ts, solver=mf.Projected(mf.RK4()), dt0=0.01).ys
    phases = mf.simulate(kuramoto, THETA, ts, solver=mf.RK4(), dt0=0.01).ys
    circle = jnp.stack([jnp.cos(phases), jnp.sin(phases)], axis=-1)
    # the projected RK4 step on the circle and RK4 on the phases are different O(h^4) methods
    assert float(jnp.max(jnp.abs(tokens - circle))) <= 1e-8


def test_key_blocks_differ_from_query_blocks():
    x = _tokens(13, 3, seed=4)
    Q, K, V = jax.random.normal(jax.random.key(2), (3, 2, 3, 3))
    A, VT = jnp.einsum("hcd,hce->hde", Q, K), jnp.swapaxes(V, -1, -2)
    for softmax in (True, False):
        raw = _attention._dense(x, x, A, VT, jnp.asarray(2.5), softmax)
        split = _attention._blocked(x, x, A, VT, jnp.asarray(2.5), softmax, 3, 6)
        assert float(jnp.max(jnp.abs(raw - split))) <= 1e-12


def test_sphere_is_invariant_with_the_projected_integrator():
    field = mf.SelfAttention(Q3, K3, V3, beta=2.0)
    out = mf.simulate(field, X3, jnp.linspace(0.0, 4.0, 9), solver=mf.Projected(mf.RK4()), dt0=0.05)
    assert _max(jnp.linalg.norm(out.ys, axis=-1) - 1.0) <= 1e-12


def test_projected_paths_agree_and_unprojected_solvers_drift():
    """Projected(RK4()) on the fast path = on diffrax's path; adaptive Projected(Tsit5()) with save
    times inside steps stays on the sphere; plain RK4 and Tsit5 drift (printed: the report's figures)."""
    field = mf.SelfAttention(Q3, K3, V3, beta=2.0)
    ts = jnp.linspace(0.0, 4.0, 9)
    fast = mf.simulate(field, X3, ts, solver=mf.Projected(mf.RK4()), dt0=0.05).ys
    slow = mf.simulate(field, X3, ts, solver=mf.Projected(mf.RK4()), dt0=0.05, fast=False).ys
    assert _max(fast - slow) <= 1e-13
    plain = mf.simulate(field, X3, ts, solver=mf.RK4(), dt0=0.05).ys
    drift_rk4 = _max(jnp.linalg.norm(plain, axis=-1) - 1.0)
    assert drift_rk4 > 1e-9 and _max(fast - plain) <= 1e-3  # the same solution to the integration error
    tsit5 = mf.simulate(field, X3, ts, solver=mf.Projected(diffrax.Tsit5()), rtol=1e-6, atol=1e-6).ys
    assert _max(jnp.linalg.norm(tsit5, axis=-1) - 1.0) <= 1e-12
    plain5 = mf.simulate(field, X3, ts, solver=diffrax.Tsit5(), rtol=1e-6, atol=1e-6).ys
    drift_tsit5 = _max(jnp.linalg.norm(plain5, axis=-1) - 1.0)
    assert drift_tsit5 > 1e-12
    print(f"drift of |x_i| over t in [0, 4]: RK4 dt = 0.05 {drift_rk4:.2e}, Tsit5 rtol = atol = 1e-6 "
          f"{drift_tsit5:.2e}; projected: {_max(jnp.linalg.norm(fast, axis=-1) - 1.0):.2e}")


def test_gradients_match_central_differences():
    x0 = _tokens(5, 3, seed=12)
    Q, K, V = jax.random.normal(jax.random.key(13), (3, 3, 3))
    ts = jnp.linspace(0.0, 1.0, 3)
    u = jax.random.normal(jax.random.key(14), (5, 3))

    def loss(beta, V):
        field = mf.SelfAttention(Q, K, V, beta=beta)
        return jnp.sum(u * mf.simulate(field, x0, ts, solver=mf.RK4(), dt0=0.1).ys[-1])

    loss_j = jax.jit(loss)
    g_beta, g_V = jax.jit(jax.grad(loss, argnums=(0, 1)))(1.5, V)
    eps = 1e-5
    fd_beta = (loss_j(1.5 + eps, V) - loss_j(1.5 - eps, V)) / (2 * eps)
    assert abs(float(g_beta - fd_beta)) <= 1e-8 * max(1.0, abs(float(fd_beta)))
    E = jnp.zeros((3, 3)).at[0, 2].set(1.0)
    fd_V = (loss_j(1.5, V + eps * E) - loss_j(1.5, V - eps * E)) / (2 * eps)
    assert abs(float(g_V[0, 2] - fd_V)) <= 1e-8 * max(1.0, abs(float(fd_V)))


def test_batch_by_vmap_and_beta_does_not_recompile():
    field = mf.SelfAttention(jnp.eye(3), jnp.eye(3), jnp.eye(3), beta=1.0)
    xs = jnp.stack([_tokens(6, 3, seed=s) for s in range(3)])
    traces = []

    @jax.jit
    def run(field, xs):
        traces.append(1)
        return jax.vmap(lambda x: field(0.0, x))(xs)

    out = run(field, xs)
    assert out.shape == (3, 6, 3)
    assert float(jnp.max(jnp.abs(out[1] - field(0.0, xs[1])))) <= 1e-14
    field2 = mf.SelfAttention(jnp.eye(3), jnp.eye(3), jnp.eye(3), beta=4.0)
    run(field2, xs)
    assert len(traces) == 1


def test_automatic_blocked_path_above_the_dense_limit():
    x = _tokens(_attention._DENSE_MAX + 37, 3, seed=15)
    Q, K, V = jax.random.normal(jax.random.key(16), (3, 3, 3))
    auto = mf.SelfAttention(Q, K, V, beta=1.2)(0.0, x)
    A, VT = (Q.T @ K)[None], V.T[None]
    dense = _attention._dense(x, x, A, VT, jnp.asarray(1.2), True)
    dense = dense - jnp.sum(x * dense, -1, keepdims=True) * x
    assert float(jnp.max(jnp.abs(auto - dense))) <= 1e-12


SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import jaxdyn.meanfield as mf
    assert len(jax.devices()) == 4, jax.devices()
    x = jax.random.normal(jax.random.key(0), (64, 3))
    x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    Q, K, V = jax.random.normal(jax.random.key(1), (3, 2, 3, 3))
    call = jax.jit(lambda f, x: f(0.0, x))
    for block in (None, 8):  # dense per device; online softmax over key blocks per device
        field = mf.SelfAttention(Q, K, V, beta=1.5, block_size=block)
        err = float(jnp.max(jnp.abs(call(mf.shard_tokens(field), x) - call(field, x))))
        assert err <= 1e-12, (block, err)
        print("block", block, "max difference", err)
    ts = jnp.linspace(0.0, 0.2, 3)
    one = mf.simulate(field, x, ts, solver=mf.Projected(mf.RK4()), dt0=0.1).ys
    four = mf.simulate(mf.shard_tokens(field), x, ts, solver=mf.Projected(mf.RK4()), dt0=0.1).ys
    err = float(jnp.max(jnp.abs(four - one)))
    assert err <= 1e-12, err
    print("simulate max difference", err)
""")


def test_sharded_tokens_equal_single_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("max difference") == 3
