r"""`python -m jaxdyn.launch -n 2 -- python script.py`: start a multi-process JAX run on this machine.

Standard library only (the launcher itself never imports JAX). Each child gets the environment that
[`jaxdyn.distributed.initialize`][] reads: `JAXDYN_COORDINATOR_ADDRESS` (`127.0.0.1:<free port>`),
`JAXDYN_NUM_PROCESSES`, `JAXDYN_PROCESS_ID`, and with `--devices-per-process D` the XLA flag that
gives each process `D` virtual CPU devices. Its output lines are prefixed by `[rank]`.

Failure policy: the first child that exits with a non-zero code (or is killed by a signal) stops
the run: the launcher says which process failed, how and when, terminates the others (SIGTERM,
then SIGKILL after `--grace` seconds) and exits with that child's code (128 + the signal number
for a signal). A run longer than `--timeout` seconds is stopped the same way (exit code 124).
Nothing is left hanging: a peer blocked in a collective on a dead process is killed, not waited for.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

ENV_ADDRESS = "JAXDYN_COORDINATOR_ADDRESS"
ENV_COUNT = "JAXDYN_NUM_PROCESSES"
ENV_ID = "JAXDYN_PROCESS_ID"
DEVICE_FLAG = "--xla_force_host_platform_device_count"
TIMEOUT_EXIT = 124


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(rank: int, n_processes: int, address: str, *, devices_per_process: int | None = None,
              base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of process `rank` of `n_processes` (what `initialize` reads)."""
    env = dict(os.environ if base is None else base)
    env[ENV_ADDRESS], env[ENV_COUNT], env[ENV_ID] = address, str(n_processes), str(rank)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if devices_per_process is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
        env["XLA_FLAGS"] = " ".join([*flags, f"{DEVICE_FLAG}={devices_per_process}"])
    return env


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _pump(stream, rank: int, out, prefix: bool, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        text = line.decode(errors="replace")
        with lock:
            out.write(f"[{rank}] {text}" if prefix else text)
            out.flush()
    stream.close()


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to every live child's process group, SIGKILL after `grace` seconds."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(command: Sequence[str], *, n_processes: int, devices_per_process: int | None = None,
           timeout: float | None = None, port: int | None = None, grace: float = 10.0,
           prefix: bool = True, stdout=None, stderr=None, env: dict[str, str] | None = None) -> int:
    r"""Run `command` as `n_processes` local processes of one JAX job; return the exit code.

    **Arguments:** `command` (argv, e.g. `["python", "script.py"]`); `n_processes` ($\ge 1$);
    `devices_per_process` (virtual CPU devices per process; `None` leaves `XLA_FLAGS` alone);
    `timeout` (seconds for the whole run, `None`: none); `port` (coordinator port, default a free
    one); `grace` (seconds between SIGTERM and SIGKILL when stopping); `prefix` (prefix output
    lines with `[rank]`); `stdout`/`stderr` (text streams, default this process's); `env` (the
    base environment, default `os.environ`).

    **Returns:** 0 when every process exited with 0; else the first failing process's code (128 +
    the signal for a signal), or 124 after `timeout`. The reason is written to `stderr`.
    """
    if isinstance(command, (str, bytes)) or not hasattr(command, "__iter__"):
        raise TypeError(f"`command` must be a list of strings (argv, e.g. ['python', 'script.py']), "
                        f"got {type(command).__name__}.")
    command = list(command)
    if not command:
        raise ValueError("`command` is empty: give the program to run after `--`.")
    if not all(isinstance(c, (str, os.PathLike)) for c in command):
        raise TypeError("`command` must be a list of strings (argv, e.g. ['python', 'script.py']).")
    if not isinstance(n_processes, int) or isinstance(n_processes, bool) or n_processes < 1:
        raise ValueError(f"`n_processes` must be an integer >= 1, got {n_processes!r}.")
    if devices_per_process is not None and (not isinstance(devices_per_process, int)
                                            or isinstance(devices_per_process, bool)
                                            or devices_per_process < 1):
        raise ValueError(f"`devices_per_process` must be an integer >= 1, got {devices_per_process!r}.")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"`timeout` must be > 0 seconds, got {timeout!r}.")
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    address = f"127.0.0.1:{free_port() if port is None else int(port)}"
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    start = time.monotonic()
    reason = ""
    try:
        for rank in range(n_processes):
            try:
                p = subprocess.Popen(command, env=child_env(rank, n_processes, address,
                                                            devices_per_process=devices_per_process,
                                                            base=env),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as e:
                raise ValueError(f"`command`: cannot start {command[0]!r} ({e.strerror or e}).") from None
            procs.append(p)
            t = threading.Thread(target=_pump, args=(p.stdout, rank, out, prefix, lock), daemon=True)
            t.start()
            pumps.append(t)
        code = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, c = failed[0]
                others = sum(c is None for c in codes)
                reason = (f"jaxdyn.launch: process {rank} of {n_processes} {_describe(c)} after "
                          f"{time.monotonic() - start:.1f} s")
                with lock:
                    err.write(f"{reason}; stopping the other {others} process(es).\n")
                    err.flush()
                code = c if c > 0 else 128 - c
                break
            if all(c == 0 for c in codes):
                break
            if timeout is not None and time.monotonic() - start > timeout:
                reason = f"jaxdyn.launch: the run exceeded the timeout of {timeout:g} s"
                with lock:
                    err.write(f"{reason}; stopping {sum(c is None for c in codes)} process(es).\n")
                    err.flush()
                code = TIMEOUT_EXIT
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        reason = "jaxdyn.launch: interrupted"
        err.write(f"{reason}; stopping every process.\n")
        code = 130
    finally:
        _stop(procs, grace)
        for t in pumps:
            t.join(timeout=5)
    if reason:  # again as the last line: the others' shutdown messages come after the first one
        err.write(f"{reason}; every process stopped (exit code {code}).\n")
        err.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    else:
        command = []
    parser = argparse.ArgumentParser(
        prog="python -m jaxdyn.launch",
        description="Run a command as N local processes of one multi-process JAX job "
                    "(jaxdyn.distributed.initialize() in the script joins them).",
        epilog="example: python -m jaxdyn.launch -n 2 --devices-per-process 2 -- python script.py")
    parser.add_argument("-n", "--processes", type=int, required=True, help="number of processes (>= 1)")
    parser.add_argument("--devices-per-process", type=int, default=None,
                        help="virtual CPU devices per process (sets XLA_FLAGS)")
    parser.add_argument("--timeout", type=float, default=None, help="stop the run after this many seconds")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping (default 10)")
    parser.add_argument("--no-prefix", action="store_true", help="do not prefix output lines with [rank]")
    args = parser.parse_args(argv)
    if not command:
        parser.error("give the command to run after `--`, e.g. `-- python script.py`")
    try:
        return launch(command, n_processes=args.processes, devices_per_process=args.devices_per_process,
                      timeout=args.timeout, port=args.port, grace=args.grace, prefix=not args.no_prefix)
    except ValueError as e:
        parser.error(str(e))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
