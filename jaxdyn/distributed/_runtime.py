r"""Joining a multi-process JAX job: where the coordinator is, how many processes, which one we are."""

from __future__ import annotations

import dataclasses
import os

import jax

from .._launch import ENV_ADDRESS, ENV_COUNT, ENV_ID

_STATE: dict = {"source": None, "address": None}


@dataclasses.dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands in the job (what [`initialize`][] and [`info`][] return).

    **Fields:** `process_index`, `process_count`, `device_count` (all processes),
    `local_device_count`, `platform` (`"cpu"`, `"gpu"`, `"tpu"`), `coordinator_address` (`None`
    for a single process) and `source`: where the settings came from (`"arguments"`,
    `"jaxdyn.launch"`, `"JAX_* environment"`, `"cluster (SLURM, ...)"` or `"single process"`).
    """

    process_index: int
    process_count: int
    device_count: int
    local_device_count: int
    platform: str
    coordinator_address: str | None
    source: str

    @property
    def is_main(self) -> bool:
        """Whether this is process 0 (the one that writes files and prints)."""
        return self.process_index == 0

    def summary(self) -> str:
        """One line: process i of n, devices, platform, and where the settings came from."""
        return (f"process {self.process_index} of {self.process_count} ({self.source}): "
                f"{self.local_device_count} local of {self.device_count} {self.platform} devices"
                + (f", coordinator {self.coordinator_address}" if self.coordinator_address else ""))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an integer, got {value!r}.") from None


def _resolve(coordinator_address, num_processes, process_id):
    """Arguments, then `jaxdyn.launch`'s variables, then JAX's, then JAX's cluster detection."""
    if coordinator_address is not None or num_processes is not None or process_id is not None:
        return coordinator_address, num_processes, process_id, "arguments"
    if os.environ.get(ENV_ADDRESS):
        return os.environ[ENV_ADDRESS], _env_int(ENV_COUNT), _env_int(ENV_ID), "jaxdyn.launch"
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and _env_int("JAX_NUM_PROCESSES") is not None:
        return (os.environ["JAX_COORDINATOR_ADDRESS"], _env_int("JAX_NUM_PROCESSES"),
                _env_int("JAX_PROCESS_ID"), "JAX_* environment")
    from jax._src import clusters  # JAX's own detection: SLURM, Open MPI, mpi4py, K8s, Cloud TPU

    for env in clusters.ClusterEnv._cluster_types:
        try:
            present = env.is_env_present()
        except Exception:  # noqa: BLE001 - a detector that cannot run means "not this cluster"
            present = False
        if present and getattr(env, "opt_in_only_method", False) is False:
            count = env.get_process_count()
            if count and count > 1:
                return None, None, None, f"cluster ({env.__name__})"
    return None, 1, 0, "single process"


def _backends_started() -> bool:
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_device_ids=None, cpu_collectives: str | None = "gloo",
               initialization_timeout: int = 300, heartbeat_timeout: int = 100) -> DistributedInfo:
    r"""Join the multi-process JAX job this process belongs to (a no-op for a single process).

    Call it first, before any JAX computation. The settings come from, in this order: the
    arguments; the variables that [`launch`][] (`python -m jaxdyn.launch`) sets
    (`JAXDYN_COORDINATOR_ADDRESS`, `JAXDYN_NUM_PROCESSES`, `JAXDYN_PROCESS_ID`); JAX's
    (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`); JAX's cluster detection
    (SLURM: `srun` sets `SLURM_NTASKS`, `SLURM_PROCID`, `SLURM_STEP_NODELIST`; Open MPI, mpi4py,
    Kubernetes, Cloud TPU). With none of these it is one process and nothing is started.

    Calling it again is harmless (it returns [`info`][]).

    **Arguments:** `coordinator_address` (`host:port` of process 0); `num_processes`; `process_id`
    (0-based); `local_device_ids` (GPUs this process uses, default all it sees, or what the
    cluster assigns); `cpu_collectives` (`"gloo"`, the default, makes cross-process computations
    work on CPU devices; `None` leaves JAX's setting); `initialization_timeout` (seconds to wait
    for every process to join); `heartbeat_timeout` (seconds after which a silent process is
    declared dead: JAX then aborts the others, "the JAX distributed service detected fatal
    errors"; measured on CPU: 10.9 s after a peer's death with `heartbeat_timeout=10`, 100.5 s
    with the default; a dead process 0, which hosts the service, stops the others at once).

    **Returns:** a [`DistributedInfo`][].

    **Raises:** `RuntimeError` if JAX has already started its devices in this process (call
    `initialize` before anything else); `ValueError` for an incomplete or inconsistent setting
    (named).
    """
    if jax.distributed.is_initialized():
        return info()
    address, count, pid, source = _resolve(coordinator_address, num_processes, process_id)
    if count is not None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"`num_processes` must be an integer >= 1, got {count!r}.")
        if pid is None or not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < count:
            raise ValueError(f"`process_id` must be an integer in [0, {count}), got {pid!r} ({source}).")
        if count > 1 and not address:
            raise ValueError(f"`coordinator_address` (host:port of process 0) is required for "
                             f"{count} processes ({source}).")
    for value, name in ((initialization_timeout, "initialization_timeout"),
                        (heartbeat_timeout, "heartbeat_timeout")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a whole number of seconds >= 1, got {value!r}.")
    if cpu_collectives not in (None, "gloo", "mpi"):
        raise ValueError(f"`cpu_collectives` must be 'gloo', 'mpi' or None, got {cpu_collectives!r}.")
    _STATE["source"] = source
    if count == 1:
        return info()
    if _backends_started():
        raise RuntimeError("jaxdyn.distributed.initialize must run before any JAX computation: this "
                           "process has already started its devices (as a single process). Call it "
                           "at the top of the script, right after the imports.")
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=pid,
                               local_device_ids=local_device_ids,
                               initialization_timeout=initialization_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)
    from jax._src import distributed as _dist

    _STATE["address"] = _dist.global_state.coordinator_address or address
    return info()


def info() -> DistributedInfo:
    """This process's place in the job (starts JAX's devices if they are not yet)."""
    devices = jax.devices()
    return DistributedInfo(
        process_index=jax.process_index(), process_count=jax.process_count(),
        device_count=len(devices), local_device_count=jax.local_device_count(),
        platform=devices[0].platform, coordinator_address=_STATE["address"] if jax.process_count() > 1
        else None, source=_STATE["source"] or ("single process" if jax.process_count() == 1 else "JAX"))


def is_main_process() -> bool:
    """Whether this is process 0 (true for a single process)."""
    return jax.process_index() == 0


def shutdown() -> None:
    """Leave the job (waits for the other processes; a no-op for a single process)."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()
