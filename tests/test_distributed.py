"""Two processes x two virtual CPU devices (a 4-device global mesh, gloo collectives), launched by
`jaxdyn.distributed.launch`, give the single-process numbers to 1e-12 (float64); a process that dies
mid-run stops the others with a message naming it; `--timeout` stops a run that hangs (exit 124).

The launcher run happens once (module-scoped fixture): the script computes every case of
`compute_cases` on the global mesh and process 0 saves them; the test computes the same cases here,
in one process without a mesh."""

import io
import os
import pathlib
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.distributed as jdist

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOL = 1e-12


def _lorenz(t, y, rho):
    x, yy, z = y
    return jnp.array([10.0 * (yy - x), x * (rho - z) - yy, x * yy - 8.0 / 3.0 * z])


def _duffing(t, y, a):
    return jnp.array([y[1], y[0] - y[0] ** 3 - a * y[1]])


def _lsq_loss(theta, ex):
    x, y = ex
    return 0.5 * (jnp.dot(x, theta) - y) ** 2


def _lorenz_exponents(rho):
    from jaxdyn.lyapunov import flow_spectrum

    return flow_spectrum(_lorenz, jnp.array([1.0, 1.0, 20.0]), args=rho, dt=0.01, n_steps=2000,
                         progress=False).exponents


def compute_cases(mesh=None) -> dict[str, np.ndarray]:
    """Every sharded path on `mesh` (`None`: one process, unsharded); the arrays to compare."""
    import jaxdyn.meanfield as mf
    from jaxdyn.invariant import equilibria
    from jaxdyn.lyapunov import ftle_field, sweep
    from jaxdyn.meanfield import graphons
    from jaxdyn.training import gd_endpoints, hyperbola_loss, sgd_stability_diagram

    out = {}
    # (a) a Lyapunov sweep of Lorenz over 6 values of rho (padded to 8 on 4 devices)
    rhos = jnp.array([20.0, 24.0, 28.0, 32.0, 36.0, 40.0])
    out["sweep"] = sweep(_lorenz_exponents, rhos, mesh=mesh)
    # (b) an SGD stability diagram (Hessian curvature: the step sizes split over the devices, per batch
    # size; the Gauss-Newton cells are checked on 4 devices in test_distributed_unit.py)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))
    theta = jnp.array([0.7, -0.3])
    d = sgd_stability_diagram(_lsq_loss, theta, (X, X @ theta), lrs=jnp.array([0.2, 0.5, 0.9]),
                              batch_sizes=(1, 3), key=jax.random.key(0), n_steps=200, n_chains=4,
                              transient_steps=10, mesh=mesh)
    out["sgd_diagram"] = np.stack([d.exponent, d.stderr, d.mean_square_bound])
    # (c) dense Kuramoto on a graphon, N = 64 nodes over the 4 devices
    n = 64
    field = mf.Kuramoto(mf.gaussian_quantiles(n), 2.0, graph=graphons.fourier([0.5, 0.3, 0.2]),
                        method=mf.DenseMethod(), phase_lag=0.3)
    if mesh is not None:
        field = mf.shard_nodes(field, mesh=mesh)
    theta0 = jnp.sin(jnp.arange(n) * 0.7) * 3
    out["kuramoto"] = mf.simulate(field, theta0, jnp.linspace(0.0, 2.0, 5), solver=mf.RK4(), dt0=0.05).ys
    # (d) FTLE field, GD endpoints, equilibria (the starts split)
    pts = jnp.stack(jnp.meshgrid(jnp.linspace(-1.0, 1.0, 3), jnp.linspace(-1.0, 1.0, 3)), -1)
    out["ftle"] = ftle_field(_duffing, pts, t1=1.0, dt=0.05, args=0.2, mesh=mesh).exponents
    w0 = jax.random.uniform(jax.random.key(1), (7, 2), minval=-2.0, maxval=2.0)
    # gather=False: global arrays, each process holding its devices' runs; gathered here
    ends = gd_endpoints(hyperbola_loss, w0, 0.3, n_steps=200, throw=False, mesh=mesh, gather=mesh is None)
    params, loss = jdist.gather((ends.params, ends.loss))
    out["gd_endpoints"] = np.concatenate([params, loss[:, None]], axis=1)
    eq = equilibria(_lorenz, -30 * jnp.ones(3), 30 * jnp.ones(3), args=22.0, key=jax.random.key(0),
                    n_starts=16, mesh=mesh)
    out["equilibria"] = np.concatenate([eq.points[: int(eq.n_found)],
                                        eq.spectra[: int(eq.n_found)].real], axis=1)
    return {k: np.asarray(v) for k, v in out.items()}


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import jax
    import numpy as np
    import jaxdyn.distributed as jdist
    info = jdist.initialize()            # first: joins the job that jaxdyn.launch started
    jax.config.update("jax_enable_x64", True)
    print(info.summary(), flush=True)
    assert info.process_count == 2 and info.device_count == 4, info
    from tests.test_distributed import compute_cases
    out = compute_cases(jdist.global_mesh())
    if jdist.is_main_process():
        np.savez(sys.argv[1], **out)
    print("done", flush=True)
""")

DIES = textwrap.dedent("""
    import os
    import sys
    import jax
    import jax.numpy as jnp
    import numpy as np
    import jaxdyn.distributed as jdist
    jdist.initialize()
    mesh = jdist.global_mesh()
    x = jdist.put(np.arange(8.0), mesh)
    if jax.process_index() == 1:
        print("process 1 dies now", flush=True)
        os._exit(3)
    for _ in range(1000):                 # process 0 waits in collectives on a dead peer
        x = jdist.gather(x)
        x = jdist.put(np.asarray(x), mesh)
""")


def _launch(script_text: str, tmp: pathlib.Path, *args: str, timeout: float = 600, n: int = 2):
    script = tmp / "script.py"
    script.write_text(script_text)
    buf_out, buf_err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cache = jax.config.jax_compilation_cache_dir  # the tests' persistent cache (conftest), if set
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    code = jdist.launch([sys.executable, str(script), *args], n_processes=n, devices_per_process=2,
                        timeout=timeout, grace=5.0, stdout=buf_out, stderr=buf_err, env=env)
    return code, time.monotonic() - t0, buf_out.getvalue(), buf_err.getvalue()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    target = tmp / "out.npz"
    code, elapsed, out, err = _launch(SCRIPT.format(root=str(ROOT)), tmp, str(target))
    assert code == 0, f"exit {code} after {elapsed:.0f} s\n{out[-6000:]}\n{err[-3000:]}"
    assert out.count("done") == 2, out[-3000:]
    with np.load(target) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def one_process():
    return compute_cases(None)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sweep", "sgd_diagram", "kuramoto", "ftle", "gd_endpoints", "equilibria"])
def test_two_processes_equal_one(two_processes, one_process, case):
    a, b = two_processes[case], one_process[case]
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.all(np.isfinite(b)), b
    err = float(np.max(np.abs(a - b)))
    print(f"{case}: max |difference| {err:.3g}")
    assert err <= TOL, f"{case}: max |difference| {err:.3g}"


def test_lorenz_sweep_is_chaotic(one_process):
    lam = one_process["sweep"]
    assert lam.shape == (6, 3)
    assert np.all(lam[2:, 0] > 0.5)  # rho >= 28: chaotic (the largest exponent ~0.9 at rho = 28)


def test_dead_process_stops_the_run(tmp_path):
    code, elapsed, out, err = _launch(DIES, tmp_path, timeout=120)
    assert code == 3, (code, out[-2000:], err[-2000:])
    assert elapsed < 60, elapsed
    last = err.strip().splitlines()[-1]
    assert "process 1 of 2 exited with code 3" in last, err
    assert "every process stopped (exit code 3)" in last, err


def test_timeout_exit_124(tmp_path):
    code, elapsed, out, err = _launch("import time\ntime.sleep(60)\n", tmp_path, timeout=1.0)
    assert code == 124
    assert elapsed < 20, elapsed
    assert "exceeded the timeout of 1 s" in err.strip().splitlines()[-1], err


HEARTBEAT = textwrap.dedent("""
    import os
    import time
    import numpy as np
    import jaxdyn.distributed as jdist
    info = jdist.initialize(heartbeat_timeout=5)
    mesh = jdist.global_mesh()
    jdist.gather(jdist.put(np.arange(4.0), mesh))
    if info.process_index == 1:
        os._exit(3)
    print("process 0 in local work", flush=True)
    for _ in range(600):                 # no collective: only JAX's coordination service can stop it
        time.sleep(0.1)
""")


@pytest.mark.slow
def test_without_launcher_heartbeat_stops_survivor(tmp_path):
    """No launcher: JAX's coordination service aborts process 0 about `heartbeat_timeout` after
    process 1 died (measured 10.9 s with heartbeat_timeout=10, 100.5 s with the default 100)."""
    import subprocess

    from jaxdyn import _launch

    script = tmp_path / "heartbeat.py"
    script.write_text(HEARTBEAT)
    address = f"127.0.0.1:{_launch.free_port()}"
    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=_launch.child_env(r, 2, address, devices_per_process=1, base=base))
             for r in range(2)]
    try:
        out0, _ = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    elapsed = time.monotonic() - t0
    assert procs[1].returncode == 3
    assert procs[0].returncode not in (0, None), out0[-3000:]
    assert "process 0 in local work" in out0
    assert "heartbeat timeout" in out0 or "distributed service detected fatal errors" in out0, out0[-3000:]
    assert elapsed < 90, elapsed
