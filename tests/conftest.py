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


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """After each test module, drop JAX's compiled programs: every XLA executable holds memory
    mappings, and a long-lived xdist worker reached the kernel's `vm.max_map_count` (65 530
    mappings: 59 330 measured in one worker) after ~800 tests, which crashed it inside XLA."""
    yield
    jax.clear_caches()
