"""Shared machinery for the peer benchmarks: timing, provenance, peer checks, tables.

Nothing here imports JAX or torch at module level: `run.py` must be able to set thread
environment variables before either is imported.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata as _md
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
PEERS_REQUIREMENTS = "benchmarks/requirements-peers.txt"
INSTALL_HINT = f"pip install -r {PEERS_REQUIREMENTS}"

VERSIONED = ("jaxdyn", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "torch",
             "torchdiffeq")


@dataclass
class Options:
    """What `run.py` passes to a benchmark module's `run`."""

    quick: bool = False
    repeats: int = 20
    threads: int = 1
    cases: list[str] | None = None  # None: every case the module defines
    extra: dict[str, Any] = field(default_factory=dict)


# -- peers ---------------------------------------------------------------------------------------


def missing_modules(modules: list[str]) -> list[str]:
    """The modules of `modules` that cannot be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def select_cases(opts: Options, cases: tuple[str, ...], name: str) -> list[str]:
    """The cases a run asked for (`--cases a,b`, default all), rejecting unknown names."""
    chosen = list(opts.cases or cases)
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown} for {name}; choose from {list(cases)}")
    return chosen


def peer_missing_record(peer: str, missing: list[str]) -> dict[str, Any]:
    """Print a clear message and return the JSON record of a peer that is not installed."""
    print(
        f"\n[{peer}] not installed (cannot import: {', '.join(missing)}).\n"
        f"  The jaxdyn side is still timed; to time the peer as well run\n"
        f"      {INSTALL_HINT}\n"
        f"  in this environment and rerun.\n",
        file=sys.stderr,
    )
    return {"status": "missing", "missing_modules": missing, "install": INSTALL_HINT}


# -- timing --------------------------------------------------------------------------------------


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def summarise(first: float, times: list[float]) -> dict[str, Any]:
    """Timing record: first call, warm median, IQR, all repeats; compile = first - warm median."""
    med = statistics.median(times)
    q1, q3 = _quartiles(times)
    return {
        "first_call_s": first,
        "compile_s": first - med,
        "warm_median_s": med,
        "warm_iqr_s": [q1, q3],
        "warm_min_s": min(times),
        "warm_max_s": max(times),
        "n_repeats": len(times),
        "repeats_s": times,
    }


def paired_ratio(slow: list[float], fast: list[float]) -> dict[str, Any]:
    """Per-round ratios `slow[r] / fast[r]` of two interleaved timings: median, IQR, min, max.

    Each round times both sides back to back, so a load change between rounds cancels in the
    ratio; a robustness check on the ratio of medians, which stays the headline number.
    """
    ratios = [a / b for a, b in zip(slow, fast, strict=True)]
    q1, q3 = _quartiles(ratios)
    return {"median": statistics.median(ratios), "iqr": [q1, q3], "min": min(ratios),
            "max": max(ratios), "n": len(ratios)}


def time_interleaved(calls: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]], *,
                     repeats: int, before: dict[str, Callable[[], None]] | None = None,
                     ) -> dict[str, dict[str, Any]]:
    """Time several callables, interleaving their repeats so that load drifts hit all alike.

    `calls[name] = (fn, sync)`: `fn()` runs one step and `sync(result)` blocks until it is done
    (`jax.block_until_ready`, `torch.cuda.synchronize`, ...). `before[name]()`, if given, runs
    untimed before every call (e.g. to restore the weights so every repeat does the same work).
    The first call (compilation, lazy initialisation) is timed on its own; one more untimed
    warm-up call follows; then `repeats` rounds, each timing every callable once in a rotating
    order.
    """
    before = before or {}
    names = list(calls)
    first: dict[str, float] = {}
    for name in names:
        fn, sync = calls[name]
        if name in before:
            before[name]()
        t0 = time.perf_counter()
        sync(fn())
        first[name] = time.perf_counter() - t0
        if name in before:
            before[name]()
        sync(fn())  # warm-up
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn, sync = calls[name]
            if name in before:
                before[name]()
            t0 = time.perf_counter()
            sync(fn())
            times[name].append(time.perf_counter() - t0)
    return {name: summarise(first[name], times[name]) for name in names}


# -- provenance ----------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def versions(dists: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions of `dists` (`None` where a distribution is missing)."""
    return {d: _version(d) for d in dists}


def _git_commit() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":(top)jaxdyn"], cwd=HERE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": head, "jaxdyn_dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "jaxdyn_dirty": None}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def provenance(threads: int) -> dict[str, Any]:
    """Where and with what the numbers were measured. Call after JAX (and torch) are imported."""
    import jax

    devices = jax.devices()
    prov: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in devices],
        "jax_device_kind": devices[0].device_kind if devices else None,
        "jax_x64": bool(jax.config.jax_enable_x64),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_1_5_15": loadavg(),
        "versions": {name: _version(name) for name in VERSIONED},
        "threads": {
            "requested": threads,
            "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        },
        "git": _git_commit(),
    }
    try:
        import torch

        prov["threads"]["torch_num_threads"] = torch.get_num_threads()
        prov["threads"]["torch_num_interop_threads"] = torch.get_num_interop_threads()
        prov["torch_cuda_available"] = torch.cuda.is_available()
    except ImportError:
        pass
    return prov


# -- output --------------------------------------------------------------------------------------


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
