"""Large-N coupling sharded over 4 virtual CPU devices equals the single-device result (one subprocess):
dense rows, and the FFT (Circulant) coupling, plain and split, with one or several harmonics and for a
neural field (the FFT of a node-sharded field used to crash XLA's CPU FFT: fft_thunk RET_CHECK
IsMonotonicWithDim0Major), with outputs reduced on the fly; and `two_layer_gd(mesh=)` with its neurons
split over the devices."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxdyn.meanfield as mf
    from jaxdyn.meanfield import graphons
    assert len(jax.devices()) == 4, jax.devices()
    n = 256
    omega = mf.gaussian_quantiles(n)
    theta0 = jnp.sin(jnp.arange(n) * 0.7) * 3
    ts = jnp.linspace(0.0, 2.0, 5)
    ring = graphons.ring(0.3)
    cases = {
        "dense": mf.Kuramoto(omega, 2.0, graph=graphons.fourier([0.5, 0.3, 0.2]), method=mf.DenseMethod(),
                             phase_lag=0.3),
        "fft": mf.Kuramoto(omega, 2.0, graph=ring, phase_lag=0.3, method=mf.FFTMethod(split=1)),
        "fft split 2, two harmonics": mf.Kuramoto(omega, 2.0, graph=ring, phase_lag=0.3,
                                                  g=mf.Harmonics(sin=[1.0, 0.3], cos=[0.0, 0.2]),
                                                  method=mf.FFTMethod(split=2)),
        "fft split 4, neural field": mf.NeuralField(omega, graph=ring, method=mf.FFTMethod(split=4)),
    }
    obs = {"z": mf.OrderParameter(), "local": mf.LocalOrder(8)}
    for name, field in cases.items():
        one = mf.simulate(field, theta0, ts, solver=mf.RK4(), dt0=0.05)
        sharded = mf.shard_nodes(field)
        op = sharded.operator
        leaf = op.matrix if name == "dense" else op.hat_re
        assert len(leaf.sharding.device_set) == 4
        four = mf.simulate(sharded, theta0, ts, solver=mf.RK4(), dt0=0.05, observe=obs, snapshots=ts[1:])
        err = float(jnp.max(jnp.abs(four.ys - one.ys[1:])))
        err_z = float(jnp.max(jnp.abs(four.observed["z"] - mf.order_parameter(one.ys))))
        assert err <= 1e-12 and err_z <= 1e-12, (name, err, err_z)
        print(name, "max difference", err, err_z)
    from jax.sharding import Mesh
    mesh = Mesh(np.asarray(jax.devices()), ("neurons",))
    x = jax.random.normal(jax.random.key(1), (16, 3))
    model = mf.TwoLayer.init(64, 3, key=jax.random.key(2))
    one = mf.two_layer_gd(model, x, jnp.sin(x[:, 0]), n_steps=5, lr=0.5)
    four = mf.two_layer_gd(model, x, jnp.sin(x[:, 0]), n_steps=5, lr=0.5, mesh=mesh)
    err = max(float(jnp.max(jnp.abs(four.losses - one.losses))),
              float(jnp.max(jnp.abs(four.model.w - one.model.w))))
    assert err <= 1e-12, err
    print("two_layer_gd max difference", err)
""")


def test_sharded_equals_single_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("max difference") == 5
