"""Large-N coupling sharded over 4 virtual CPU devices equals the single-device result (subprocess)."""

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
    w = graphons.fourier([0.5, 0.3, 0.2])
    ts = jnp.linspace(0.0, 2.0, 5)
    for method in ("dense",):
        field = mf.Kuramoto(omega, 2.0, graph=w, method=mf.DenseMethod(), phase_lag=0.3)
        one = mf.simulate(field, theta0, ts, solver=mf.RK4(), dt0=0.05).ys
        sharded = mf.shard_nodes(field)
        leaf = sharded.operator.matrix if method == "dense" else sharded.operator.u
        assert len(leaf.sharding.device_set) == 4
        four = mf.simulate(sharded, theta0, ts, solver=mf.RK4(), dt0=0.05).ys
        err = float(jnp.max(jnp.abs(four - one)))
        assert err <= 1e-12, err
        print(method, "max difference", err)
""")


def test_sharded_equals_single_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("max difference") == 1
