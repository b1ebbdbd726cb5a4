"""Shared test setup: float64, a `getkey` fixture, JAX's persistent compilation cache."""

import os
import pathlib

# Several test processes may share one accelerator: allocate memory on demand (set before JAX starts).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
_cache = os.environ.get(
    "JAXDYN_TEST_CACHE", str(pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax")
)
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def getkey():
    """Each call returns a fresh `jax.random` key (deterministic per test)."""
    state = {"key": jax.random.key(5678)}

    def _getkey():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _getkey
