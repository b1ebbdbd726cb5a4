"""`jaxdyn.distributed` in one process: where `initialize` takes its settings from, its errors, the
launcher's command line and exit codes, and (in ONE subprocess with 4 virtual CPU devices) the mesh
helpers and `map_batches`: padding, `gather_output`, PyTrees, result objects, and the sharded paths
against their unsharded numbers."""

import io
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import jaxdyn.distributed as jdist
from jaxdyn import _launch
from jaxdyn.distributed import _runtime

ENV_NAMES = ("JAXDYN_COORDINATOR_ADDRESS", "JAXDYN_NUM_PROCESSES", "JAXDYN_PROCESS_ID",
             "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher, JAX or cluster variables (SLURM, Open MPI, ...) in the environment."""
    for name in list(os.environ):
        if name in ENV_NAMES or name.startswith(("SLURM_", "OMPI_", "PMI_", "TPU_", "KUBERNETES_")):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- initialize: where the settings come from --------------------------------------------------------


def test_resolve_single_process(clean_env):
    assert _runtime._resolve(None, None, None) == (None, 1, 0, "single process")


def test_resolve_jax_variables(clean_env):
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    clean_env.setenv("JAX_NUM_PROCESSES", "4")
    clean_env.setenv("JAX_PROCESS_ID", "3")
    assert _runtime._resolve(None, None, None) == ("10.0.0.1:1234", 4, 3, "JAX_* environment")


def test_resolve_launcher_before_jax(clean_env):
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    clean_env.setenv("JAX_NUM_PROCESSES", "4")
    clean_env.setenv("JAX_PROCESS_ID", "3")
    clean_env.setenv("JAXDYN_COORDINATOR_ADDRESS", "127.0.0.1:5555")
    clean_env.setenv("JAXDYN_NUM_PROCESSES", "2")
    clean_env.setenv("JAXDYN_PROCESS_ID", "1")
    assert _runtime._resolve(None, None, None) == ("127.0.0.1:5555", 2, 1, "jaxdyn.launch")


def test_resolve_arguments_first(clean_env):
    clean_env.setenv("JAXDYN_COORDINATOR_ADDRESS", "127.0.0.1:5555")
    clean_env.setenv("JAXDYN_NUM_PROCESSES", "2")
    clean_env.setenv("JAXDYN_PROCESS_ID", "1")
    assert _runtime._resolve("h:1", 3, 2, ) == ("h:1", 3, 2, "arguments")


def test_resolve_slurm(clean_env):
    clean_env.setenv("SLURM_JOB_ID", "77")
    clean_env.setenv("SLURM_NTASKS", "8")
    clean_env.setenv("SLURM_PROCID", "5")
    clean_env.setenv("SLURM_LOCALID", "1")
    clean_env.setenv("SLURM_STEP_NODELIST", "node[01-02]")
    address, count, pid, source = _runtime._resolve(None, None, None)
    assert source == "cluster (SlurmCluster)" and (address, count, pid) == (None, None, None)


def test_resolve_bad_variable(clean_env):
    clean_env.setenv("JAXDYN_COORDINATOR_ADDRESS", "127.0.0.1:5555")
    clean_env.setenv("JAXDYN_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAXDYN_NUM_PROCESSES"):
        _runtime._resolve(None, None, None)


def test_initialize_single_process(clean_env):
    info = jdist.initialize()
    assert info.process_count == 1 and info.process_index == 0 and info.is_main
    assert info.source == "single process" and info.coordinator_address is None
    assert "process 0 of 1" in info.summary()
    assert jdist.is_main_process()
    jdist.shutdown()  # a no-op for one process


def test_initialize_after_devices_started(clean_env):
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()
    with pytest.raises(RuntimeError, match="before any JAX computation"):
        jdist.initialize("127.0.0.1:1", 2, 0)
    with pytest.raises(RuntimeError, match="before any JAX computation"):
        clean_env.setenv("JAXDYN_COORDINATOR_ADDRESS", "127.0.0.1:1")
        clean_env.setenv("JAXDYN_NUM_PROCESSES", "2")
        clean_env.setenv("JAXDYN_PROCESS_ID", "1")
        jdist.initialize()


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_processes=0, process_id=0), "`num_processes`"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2), "`process_id`"),
    (dict(num_processes=2, process_id=0), "`coordinator_address`"),
    (dict(heartbeat_timeout=0), "`heartbeat_timeout`"),
    (dict(cpu_collectives="nccl"), "`cpu_collectives`"),
])
def test_initialize_errors(clean_env, kwargs, match):
    with pytest.raises(ValueError, match=match):
        jdist.initialize(**kwargs)


# --- the launcher ------------------------------------------------------------------------------------


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = _launch.launch(argv, n_processes=2, stdout=out, stderr=err, grace=2.0)
    return code, out.getvalue(), err.getvalue()


def test_launch_environment_and_prefix():
    code, out, err = _run([sys.executable, "-c", "import os; print(os.environ['JAXDYN_PROCESS_ID'], "
                                                 "os.environ['JAXDYN_NUM_PROCESSES'], "
                                                 "os.environ['JAXDYN_COORDINATOR_ADDRESS'])"])
    assert code == 0 and err == ""
    lines = sorted(out.splitlines())
    assert lines[0].startswith("[0] 0 2 127.0.0.1:") and lines[1].startswith("[1] 1 2 127.0.0.1:"), lines


def test_launch_exit_code_of_failing_process():
    code, out, err = _run([sys.executable, "-c", "import os, sys, time\n"
                                                 "if os.environ['JAXDYN_PROCESS_ID'] == '1': sys.exit(5)\n"
                                                 "time.sleep(60)"])
    assert code == 5
    assert "process 1 of 2 exited with code 5" in err.strip().splitlines()[-1]


def test_launch_signal():
    code, out, err = _run([sys.executable, "-c", "import os, signal\n"
                                                 "os.kill(os.getpid(), signal.SIGKILL)"])
    assert code == 128 + signal.SIGKILL
    assert "was killed by SIGKILL" in err


def test_child_env_devices_flag():
    env = _launch.child_env(1, 2, "127.0.0.1:9", devices_per_process=3,
                            base={"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo"})
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=3"
    assert (env["JAXDYN_PROCESS_ID"], env["JAXDYN_NUM_PROCESSES"]) == ("1", "2")


@pytest.mark.parametrize("argv, match", [
    ([], "required: -n"),
    (["-n", "2"], "give the command to run after `--`"),
    (["-n", "0", "--", "true"], "`n_processes` must be an integer >= 1"),
    (["-n", "1", "--timeout", "-1", "--", "true"], "`timeout` must be > 0"),
    (["-n", "1", "--", "/nonexistent/program"], "cannot start"),
])
def test_cli_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        _launch.main(argv)
    assert info.value.code == 2
    assert match in capsys.readouterr().err


def test_cli_module_runs():
    out = subprocess.run([sys.executable, "-m", "jaxdyn.launch", "-n", "2", "--no-prefix", "--",
                          sys.executable, "-c", "import sys; sys.exit(0)"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


# --- the mesh helpers and the sharded paths on 4 virtual devices (one subprocess) ---------------------

FOUR = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxdyn.distributed as jdist
    from jaxdyn.distributed import _mesh
    from jaxdyn.lyapunov import LyapunovResult, ftle_field, map_spectrum, sweep
    from jaxdyn.training import GaussNewton, gd_endpoints, hyperbola_loss, sgd_stability_diagram
    assert len(jax.devices()) == 4
    mesh = jdist.global_mesh()
    assert mesh.devices.shape == (4,) and mesh.axis_names == ("batch",)
    assert jdist.global_mesh("nodes", devices=jax.devices()[:2]).axis_names == ("nodes",)
    info = jdist.info()
    assert (info.device_count, info.local_device_count, info.process_count) == (4, 4, 1)

    # put / replicate / gather
    x = jdist.put({"a": np.arange(8.0), "b": np.ones((4, 3)), "s": 2.0}, mesh)
    assert len(x["a"].sharding.device_set) == 4 and x["a"].addressable_shards[1].data.shape == (2,)
    assert x["s"] == 2.0
    np.testing.assert_array_equal(jdist.gather(x)["a"], np.arange(8.0))
    try:
        jdist.put(np.arange(6.0), mesh)
        raise AssertionError("no error")
    except ValueError as e:
        assert "pad it to a multiple of 4" in str(e)
    r = jdist.replicate(np.arange(3.0), mesh)
    assert all(s.data.shape == (3,) for s in r.addressable_shards) and len(r.sharding.device_set) == 4
    assert _mesh.sharded_mesh(x) is None          # one process: every array is addressable

    # map_batches: padding (6 -> 8), PyTrees in and out, gather_output
    f = lambda p: (jnp.sin(p["a"]) * p["b"].sum(), {"c": p["a"] ** 2 * jnp.ones(2)})
    params = {"a": jnp.linspace(0.1, 1.0, 6), "b": jnp.arange(18.0).reshape(6, 3)}
    ref = jax.vmap(f)(params)
    for kw in (dict(), dict(mesh=mesh), dict(devices=jax.devices()[:3]), dict(shard=False)):
        out = jdist.map_batches(f, params, **kw)
        for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)):
            assert a.shape == b.shape and float(jnp.max(jnp.abs(a - b))) == 0.0, kw
    out = jdist.map_batches(f, params, mesh=mesh, gather_output=False)
    assert out[0].shape == (6,) and len(out[0].sharding.device_set) == 4
    np.testing.assert_array_equal(out[1]["c"], ref[1]["c"])
    out = jdist.map_batches(f, {"a": params["a"][:4], "b": params["b"][:4]}, gather_output=False)
    assert out[0].shape == (4,) and len(out[0].sharding.device_set) == 4   # no padding: as computed

    # result objects: a sweep of map spectra with a failing member
    logistic = lambda x, r: r * x * (1 - x)
    spec = lambda r: map_spectrum(logistic, jnp.array([0.3]), args=r, n_steps=300, progress=False,
                                  throw=False)
    res = sweep(spec, jnp.array([3.5, 3.9, 4.0, 5.0, 3.2]), mesh=mesh, throw=False)
    assert isinstance(res, LyapunovResult) and res.exponents.shape == (5, 1)
    one = sweep(spec, jnp.array([3.5, 3.9, 4.0, 5.0, 3.2]), shard=False, throw=False)
    assert float(jnp.nanmax(jnp.abs(res.exponents - one.exponents))) == 0.0
    codes = np.asarray(res.result._value)
    assert codes[3] != codes[0], codes         # r = 5 escapes to -inf: a code, not a crash
    try:
        sweep(spec, jnp.array([3.5, 5.0]), mesh=mesh)
        raise AssertionError("no error")
    except Exception as e:
        assert "1 of 2" in str(e) or "throw=False" in str(e), e

    # the sharded entry points against their unsharded numbers
    duff = lambda t, y, a: jnp.array([y[1], y[0] - y[0] ** 3 - a * y[1]])
    pts = jnp.stack(jnp.meshgrid(jnp.linspace(-1, 1, 3), jnp.linspace(-1, 1, 2)), -1)
    a = ftle_field(duff, pts, t1=1.0, dt=0.05, args=0.2)
    b = ftle_field(duff, pts, t1=1.0, dt=0.05, args=0.2, devices=jax.devices()[:3], gather=False)
    assert b.exponents.shape == (2, 3, 2) and float(jnp.max(jnp.abs(a.exponents - b.exponents))) == 0.0
    w0 = jax.random.uniform(jax.random.key(1), (5, 2), minval=-2.0, maxval=2.0)
    a = gd_endpoints(hyperbola_loss, w0, 0.3, n_steps=100, throw=False)
    b = gd_endpoints(hyperbola_loss, w0, 0.3, n_steps=100, throw=False, mesh=mesh, gather=False)
    assert float(jnp.max(jnp.abs(a.params - b.params))) == 0.0
    assert np.array_equal(np.asarray(a.result._value), np.asarray(b.result._value))
    X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))
    theta = jnp.array([0.7, -0.3])
    def loss(t, ex):
        return 0.5 * (jnp.dot(ex[0], t) - ex[1]) ** 2
    def residual(t, ex):
        return jnp.dot(ex[0], t) - ex[1]
    kw = dict(lrs=jnp.array([0.2, 0.5, 0.9]), batch_sizes=(1, 3), key=jax.random.key(0), n_steps=100,
              n_chains=2, transient_steps=10, curvature=GaussNewton(residual))
    a = sgd_stability_diagram(loss, theta, (X, X @ theta), **kw)
    b = sgd_stability_diagram(loss, theta, (X, X @ theta), mesh=mesh, **kw)
    assert b.exponent.shape == (2, 3)
    for u, v in ((a.exponent, b.exponent), (a.stderr, b.stderr), (a.mean_square_bound, b.mean_square_bound)):
        assert float(jnp.nanmax(jnp.abs(u - v))) <= 1e-12
    print("ok")
""")


@pytest.mark.slow
def test_mesh_helpers_on_four_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    import jax

    if jax.config.jax_compilation_cache_dir:  # the tests' persistent cache (conftest)
        env.update(JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    out = subprocess.run([sys.executable, "-c", FOUR], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert out.stdout.strip().endswith("ok")
