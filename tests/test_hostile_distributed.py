"""The hostile-input table of `jaxdyn.distributed` and of the `mesh=`/`devices=`/`gather=` arguments
of the sharded entry points: each bad input is a `TypeError`/`ValueError` naming the argument, before
anything is computed (single process, one device)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.distributed as jdist
from jaxdyn.invariant import equilibria, fixed_points
from jaxdyn.lyapunov import ftle_field, sweep
from jaxdyn.training import gd_endpoints, hyperbola_loss, sgd_stability_diagram
from tests.helpers import Hostile, hostile_ids, run_hostile

MESH = jdist.global_mesh()
DEV = jax.local_devices()
P = jnp.linspace(0.0, 1.0, 4)
BOX = (-jnp.ones(2), jnp.ones(2))
KEY = jax.random.key(0)


def _field(t, y, a):
    return -y


def _map(x, a):
    return 0.5 * x


def _lsq(theta, ex):
    return 0.5 * (jnp.dot(ex[0], theta) - ex[1]) ** 2


DATA = (jnp.eye(2), jnp.zeros(2))


def _with_env(name, value, call):
    def run():
        old = os.environ.get(name)
        os.environ[name] = value
        try:
            return call()
        finally:
            if old is None:
                del os.environ[name]
            else:
                os.environ[name] = old

    return run


def _under_vmap():
    return jax.vmap(lambda a: equilibria(_field, *BOX, args=a, key=KEY, n_starts=2, mesh=MESH).n_found)(P)


ROWS = [
    # --- global_mesh, put, replicate, gather ---
    Hostile("global_mesh: empty axis name", lambda: jdist.global_mesh(""), TypeError, r"`axis_name`"),
    Hostile("global_mesh: axis name not a string", lambda: jdist.global_mesh(3), TypeError, r"`axis_name`"),
    Hostile("global_mesh: no devices", lambda: jdist.global_mesh(devices=[]), ValueError, r"`devices`"),
    Hostile("global_mesh: devices a string", lambda: jdist.global_mesh(devices="cpu"), TypeError,
            r"`devices`"),
    Hostile("global_mesh: devices of ints", lambda: jdist.global_mesh(devices=[0, 1]), TypeError,
            r"`devices`"),
    Hostile("put: mesh a device list", lambda: jdist.put(np.ones(4), DEV), TypeError, r"`mesh`"),
    Hostile("replicate: mesh a string", lambda: jdist.replicate(np.ones(4), "batch"), TypeError, r"`mesh`"),
    # --- map_batches ---
    Hostile("map_batches: empty params", lambda: jdist.map_batches(jnp.sin, {}), ValueError, r"`params`"),
    Hostile("map_batches: scalar leaf", lambda: jdist.map_batches(jnp.sin, jnp.asarray(1.0)), ValueError,
            r"`params`"),
    Hostile("map_batches: leading axes differ", lambda: jdist.map_batches(lambda a, b: a, (P, P[:2])),
            ValueError, r"`params`"),
    Hostile("map_batches: empty sweep axis", lambda: jdist.map_batches(jnp.sin, P[:0]), ValueError,
            r"`params`"),
    Hostile("map_batches: fn not callable", lambda: jdist.map_batches(3, P), TypeError, r"`fn`"),
    Hostile("map_batches: mesh and devices", lambda: jdist.map_batches(jnp.sin, P, mesh=MESH, devices=DEV),
            ValueError, r"`mesh` or `devices`"),
    Hostile("map_batches: mesh of wrong type", lambda: jdist.map_batches(jnp.sin, P, mesh=DEV), TypeError,
            r"`mesh`"),
    Hostile("map_batches: devices of ints", lambda: jdist.map_batches(jnp.sin, P, devices=[0]), TypeError,
            r"`devices`"),
    Hostile("map_batches: shard a string", lambda: jdist.map_batches(jnp.sin, P, shard="yes"), TypeError,
            r"`shard`"),
    Hostile("map_batches: gather_output None", lambda: jdist.map_batches(jnp.sin, P, gather_output=None),
            TypeError, r"`gather_output`"),
    # --- mesh= / devices= / gather= on the sharded entry points ---
    Hostile("sweep: mesh a string", lambda: sweep(jnp.sin, P, mesh="batch"), TypeError, r"`mesh`"),
    Hostile("sweep: mesh and devices", lambda: sweep(jnp.sin, P, mesh=MESH, devices=DEV), ValueError,
            r"`mesh` or `devices`"),
    Hostile("ftle_field: mesh of wrong type",
            lambda: ftle_field(_field, jnp.ones((3, 2)), t1=1.0, dt=0.1, mesh=3), TypeError, r"`mesh`"),
    Hostile("ftle_field: gather a string",
            lambda: ftle_field(_field, jnp.ones((3, 2)), t1=1.0, dt=0.1, mesh=MESH, gather="no"), TypeError,
            r"`gather`"),
    Hostile("ftle_field: empty devices",
            lambda: ftle_field(_field, jnp.ones((3, 2)), t1=1.0, dt=0.1, devices=[]), ValueError,
            r"`devices`"),
    Hostile("gd_endpoints: mesh and devices",
            lambda: gd_endpoints(hyperbola_loss, jnp.ones((3, 2)), 0.1, mesh=MESH, devices=DEV), ValueError,
            r"`mesh` or `devices`"),
    Hostile("gd_endpoints: devices a string",
            lambda: gd_endpoints(hyperbola_loss, jnp.ones((3, 2)), 0.1, devices="cpu"), TypeError,
            r"`devices`"),
    Hostile("sgd_stability_diagram: mesh of wrong type",
            lambda: sgd_stability_diagram(_lsq, jnp.zeros(2), DATA, lrs=P[1:], batch_sizes=(1,), key=KEY,
                                          mesh=[MESH]), TypeError, r"`mesh`"),
    Hostile("sgd_stability_diagram: gather None",
            lambda: sgd_stability_diagram(_lsq, jnp.zeros(2), DATA, lrs=P[1:], batch_sizes=(1,), key=KEY,
                                          gather=None), TypeError, r"`gather`"),
    Hostile("equilibria: mesh of wrong type", lambda: equilibria(_field, *BOX, key=KEY, mesh=np.ones(2)),
            TypeError, r"`mesh`"),
    Hostile("equilibria: mesh under vmap", _under_vmap, ValueError, r"`mesh`"),
    Hostile("fixed_points: devices a string", lambda: fixed_points(_map, *BOX, key=KEY, devices="cpu"),
            TypeError, r"`devices`"),
    # --- initialize ---
    Hostile("initialize: no processes", lambda: jdist.initialize(num_processes=0, process_id=0), ValueError,
            r"`num_processes`"),
    Hostile("initialize: process_id out of range", lambda: jdist.initialize("h:1", 2, 2), ValueError,
            r"`process_id`"),
    Hostile("initialize: bool process count", lambda: jdist.initialize("h:1", True, 0), ValueError,
            r"`num_processes`"),
    Hostile("initialize: two processes without a coordinator", lambda: jdist.initialize(None, 2, 0),
            ValueError, r"`coordinator_address`"),
    Hostile("initialize: heartbeat_timeout 0", lambda: jdist.initialize(heartbeat_timeout=0), ValueError,
            r"`heartbeat_timeout`"),
    Hostile("initialize: fractional initialization_timeout",
            lambda: jdist.initialize(initialization_timeout=1.5), ValueError, r"`initialization_timeout`"),
    Hostile("initialize: unknown cpu_collectives", lambda: jdist.initialize(cpu_collectives="nccl"),
            ValueError, r"`cpu_collectives`"),
    Hostile("initialize: a non-integer JAXDYN_NUM_PROCESSES",
            _with_env("JAXDYN_COORDINATOR_ADDRESS", "127.0.0.1:1",
                      _with_env("JAXDYN_NUM_PROCESSES", "two", lambda: jdist.initialize())),
            ValueError, r"JAXDYN_NUM_PROCESSES"),
    Hostile("initialize: two processes after the devices started",
            lambda: jdist.initialize("127.0.0.1:1", 2, 1), RuntimeError, r"before any JAX computation"),
    # --- launch ---
    Hostile("launch: no processes", lambda: jdist.launch(["true"], n_processes=0), ValueError,
            r"`n_processes`"),
    Hostile("launch: bool process count", lambda: jdist.launch(["true"], n_processes=True), ValueError,
            r"`n_processes`"),
    Hostile("launch: empty command", lambda: jdist.launch([], n_processes=1), ValueError, r"`command`"),
    Hostile("launch: command a string", lambda: jdist.launch("python script.py", n_processes=1), TypeError,
            r"`command`"),
    Hostile("launch: command of ints", lambda: jdist.launch([1, 2], n_processes=1), TypeError, r"`command`"),
    Hostile("launch: no devices per process", lambda: jdist.launch(["true"], n_processes=1,
                                                                   devices_per_process=0),
            ValueError, r"`devices_per_process`"),
    Hostile("launch: negative timeout", lambda: jdist.launch(["true"], n_processes=1, timeout=-1.0),
            ValueError, r"`timeout`"),
    Hostile("launch: program not found", lambda: jdist.launch(["/nonexistent/program"], n_processes=1),
            ValueError, r"`command`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
