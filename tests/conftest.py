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


# --- the two lanes ------------------------------------------------------------------------------
# `python -m pytest` runs the main lane (addopts: `-m "not slow"`); `python -m pytest -m slow` runs
# the slow lane (CI runs it after the main one). The slow lane is ONE list, here, rather than
# decorators scattered over the files: it is the lane's contract, read and reviewed in one place,
# each entry with the reason it is long and the main-lane test that still covers the same entry
# point. Entries are node-id prefixes: a whole file (`test_x.py`), a test (`test_x.py::test_y`) or
# one parametrisation (`test_x.py::test_y[case]`). A few tests also carry `@pytest.mark.slow` in
# their file (older; same lane). Never list a hostile-input table or tests/test_hostile_count.py,
# tests/test_api_walk.py: they stay in the main lane.
SLOW = {
    # entry -> why it is long (seconds: one test, 2 busy cores) ; what keeps the entry point in the main lane
    "test_cli.py::test_interrupted_reproduce_resumed_equals_uninterrupted":
        "47 s: two `reproduce` runs, one interrupted; test_reproduce_writes_report stays",
    "test_models_neural_ode.py::test_gradient_matches_central_differences":
        "30 s: central differences of a neural ODE; tests/test_gradients_models.py stays",
    "test_models_neural_ode.py::test_hessian_of_phi_matches_finite_differences":
        "17 s: second-order finite differences; test_linear_flow_equals_expm stays",
    "test_models_neural_ode.py::test_hvp_of_neural_ode_loss_matches_finite_differences":
        "16 s: finite-difference HVP; test_linear_flow_equals_expm stays",
    "test_models_neural_ode.py::test_trainable_with_optax": "15 s: an optax training run; fit tests stay",
    "test_models_neural_ode.py::test_shared_step_batch":
        "11 s: a batched variant; test_trajectory_and_lift_readout stays",
    "test_meanfield_large.py::test_sample_edges_pair_frequencies":
        "28 s: a frequency test over many draws; test_sample_edges_law_symmetry_loops_degree stays",
    "test_meanfield_large.py::test_grad_through_observable_with_adaptive_steps":
        "27 s: gradient under adaptive steps; test_grad_jit_vmap_through_observable stays",
    "test_meanfield_large.py::test_gaussian_quantiles_finite_in_float32_at_large_n":
        "10 s: large-N float32 variant; the float64 quantile tests stay",
    "test_invariant_dde_periodic.py::test_neural_delay_field_cycle_and_weight_gradient":
        "27 s: a neural delay field's cycle and gradient; test_hutchinson_cycle_matches_simulation stays",
    "test_dde_solve.py::test_gradients_match_finite_differences":
        "19 s: finite differences through the solver; tests/test_gradients_dde.py stays",
    "test_invariant_continuation.py::test_matrix_free_vmap_and_forward_derivative_of_the_branch_point":
        "19 s: vmap + jvp variant; test_matrix_free_path_agrees_on_the_branch_point stays",
    "test_lyapunov_flows_maps.py::test_sweep_sharded_equals_single_device":
        "15 s: one subprocess on 4 virtual devices; test_lorenz and the sweep tests stay",
    "test_invariant_floquet.py::test_derivatives_against_finite_differences":
        "12 s: finite differences; test_jit_no_retrace_and_vmap and the known multipliers stay",
    "test_lyapunov_dde.py::test_mackey_glass_trajectory_matches_jitcdde":
        "12 s: a long reference trajectory; test_mackey_glass_chaotic_exponent stays",
}


def _in_slow_lane(nodeid: str) -> bool:
    rel = nodeid.split("tests/", 1)[-1]
    return any(rel == entry or rel.startswith(entry + "::") or rel.startswith(entry + "[")
               for entry in SLOW)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _in_slow_lane(item.nodeid):
            item.add_marker(pytest.mark.slow)
