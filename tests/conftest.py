"""Shared test setup: float64, a `getkey` fixture, JAX's persistent compilation cache, the lanes (`SLOW`)."""

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
        "11 s: a batched variant; test_linear_flow_equals_expm stays",
    "test_meanfield_large.py::test_sample_edges_pair_frequencies":
        "28 s: a frequency test over many draws; test_sample_edges_law_symmetry_loops_degree stays",
    "test_meanfield_large.py::test_grad_through_observable_with_adaptive_steps":
        "27 s: gradient under adaptive steps; tests/test_gradients_meanfield.py stays",
    "test_meanfield_large.py::test_gaussian_quantiles_finite_in_float32_at_large_n":
        "10 s: large-N float32 variant; test_split_fft_equals_fft stays",
    # Second pass, from the fresh-clone CI at 5227287 (main lane 416 s; goal < 360 s on 2 quiet
    # cores): the tiny central-flow experiment (CI runs every experiment after the tests), two
    # heavy variants, and the hostile rows whose call compiles a whole solve before it fails
    # (>= 3.5 s each on busy cores); every other row of each table stays in the main lane.
    "test_experiments_central_flow.py::test_smoke_run_tiny":
        "34 s: a tiny central-flow experiment; CI runs every experiment after the tests",
    "test_meanfield_sharding.py::test_sharded_equals_single_device":
        "18 s: a subprocess on 4 virtual devices; tests/test_distributed.py (2 processes equal 1) stays",
    "test_meanfield_fixed_step.py::test_gradient_against_diffrax_and_differences":
        "12 s: finite differences; test_same_as_diffrax and tests/test_gradients_meanfield.py stay",
    "test_gradients_invariant.py::test_forward_and_reverse_match_central_differences"
    "[characteristic_roots: rightmost root in tau]": "8 s: the other rows of the matrix stay",
    "test_gradients_invariant.py::test_forward_and_reverse_match_central_differences"
    "[equilibria: Lorenz C+ in rho]": "6 s: the other rows of the matrix stay",
    "test_hostile_invariant_periodic.py::"
    "test_hostile[periodic_orbit: no orbit (mu < 0) flagged with throw=False]": "16 s",
    "test_hostile_dde.py::test_hostile[dde.solve: NaN history at delayed times]": "10 s",
    "test_hostile_central_flow.py::test_hostile[central_flow: blow-up under vmap flagged per member]": "10 s",
    "test_hostile_invariant_dde.py::test_hostile[dde_hopf: Newton out of budget raises]": "9 s",
    "test_hostile_invariant_manifolds.py::"
    "test_hostile[invariant_manifolds: a source (unstable dimension 2)]": "6 s",
    "test_hostile_central_flow.py::"
    "test_hostile[central_flow: traced NaN lr under jit raises naming the input]": "6 s",
    "test_hostile_invariant_manifolds.py::"
    "test_hostile[invariant_manifolds: a 4-D saddle with 2-D manifolds]": "6 s",
    "test_hostile_curvature_warm.py::test_hostile[top_eigenvalues v0: not converged raises]": "5 s",
    "test_hostile_invariant_manifolds.py::test_hostile"
    "[invariant_manifolds: a point that is no equilibrium (x^2 + 1 has no zero), throw=False]": "5 s",
    "test_hostile_curvature.py::test_float32_params_with_float64_data": "5 s",
    "test_hostile_central_flow.py::"
    "test_hostile[central_flow: finite-time blow-up raises (throw=True)]": "5 s",
    "test_hostile_invariant_dde.py::test_hostile[characteristic_roots: Newton out of budget raises]": "5 s",
    "test_hostile_meanfield.py::"
    "test_hostile[ott_antonsen: max_steps runs out (throw=False): code, step and time]": "5 s",
    "test_hostile_training.py::test_hostile[train: flow hitting max_steps is flow_result]": "5 s",
    "test_hostile_invariant_continuation.py::"
    "test_hostile[continuation: singular Jacobian at the start raises]": "5 s",
    "test_hostile_sgd.py::test_hostile[sgd_stability_diagram: not interpolating, throw=False]": "4 s",
    "test_hostile_training.py::test_hostile[gradient_flow: blow-up in finite time]": "4 s",
    "test_hostile_invariant_dde.py::"
    "test_hostile[characteristic_roots: too few nodes flagged (throw=False)]": "4 s",
    "test_hostile_training.py::test_hostile[gradient_flow: blow-up with throw=True]": "4 s",
    "test_hostile_lyapunov.py::test_hostile[product_spectrum: zero matrices (degenerate)]": "4 s",
    "test_hostile_training.py::"
    "test_hostile[gradient_flow: max_steps reached (diffrax's code mapped), throw=False]": "4 s",
    "test_hostile_training.py::test_hostile[gradient_flow: blow-up with throw=True under jit]": "4 s",
    "test_hostile_lyapunov.py::test_hostile[network_spectrum: NaN weights (code, failed layer, NaN)]": "4 s",
    "test_hostile_sgd.py::test_hostile[sgd_escape: a run that overflows]": "4 s",
    "test_hostile_meanfield.py::"
    "test_hostile[simulate: NeuralField blows up (adaptive): code, step and time]": "4 s",
    "test_invariant_dde_periodic.py::test_neural_delay_field_cycle_and_weight_gradient":
        "27 s: a neural delay field's cycle and gradient; test_floquet_multipliers_of_stuart_landau stays",
    "test_dde_solve.py::test_gradients_match_finite_differences":
        "19 s: finite differences through the solver; tests/test_gradients_dde.py stays",
    "test_invariant_continuation.py::test_matrix_free_vmap_and_forward_derivative_of_the_branch_point":
        "19 s: vmap + jvp variant; test_fold and test_lorenz_hopf_on_c_plus_after_switching stay",
    "test_lyapunov_flows_maps.py::test_sweep_sharded_equals_single_device":
        "15 s: one subprocess on 4 virtual devices; test_lorenz and the sweep tests stay",
    "test_invariant_floquet.py::test_derivatives_against_finite_differences":
        "12 s: finite differences; the known multipliers and tests/test_gradients_invariant.py stay",
    "test_lyapunov_dde.py::test_mackey_glass_trajectory_matches_jitcdde":
        "12 s: a long reference trajectory; test_mackey_glass_chaotic_exponent stays",
    # Heavy variants, measured one by one in the full run of 7 Dec 2026 (2 busy cores; seconds in the
    # value): each file keeps its cheaper known-answer, jit/vmap and throw-mode tests in the main lane.
    "test_benchmark_curvature.py::test_reference_against_dense_hessian": "5 s",
    "test_benchmark_curvature.py::test_same_loss_gradient_and_hvp_on_both_sides": "5 s",
    "test_benchmark_scale.py::test_worker_fft_tiny": "4 s",
    "test_benchmark_scale.py::test_worker_particles_two_devices": "6 s",
    "test_central_flow_known.py::test_adaptive_steps_same_known_answers": "5 s",
    "test_central_flow_known.py::test_comparison_fields_against_numpy": "5 s",
    "test_central_flow_known.py::test_scalar_rmsprop_holds_effective_sharpness_at_two": "4 s",
    "test_central_flow_known.py::test_sigma2_closed_form_and_sharpness_at_edge": "5 s",
    "test_central_flow_known.py::test_two_directions_at_the_edge": "7 s",
    "test_curvature_operators.py::test_hvp_matches_jax_hessian_and_chunks": "6 s",
    "test_curvature_operators.py::test_neural_ode_hvp": "5 s",
    "test_curvature_results.py::test_lanczos_criteria_are_strategy_objects": "4 s",
    "test_curvature_results.py::test_results_carry_a_code_a_summary_and_a_plot[eigen]": "4 s",
    "test_curvature_warm.py::test_block_shapes[1]": "5 s",
    "test_curvature_warm.py::test_block_shapes[2]": "6 s",
    "test_curvature_warm.py::test_block_shapes[7]": "7 s",
    "test_curvature_warm.py::test_eigenvalue_derivative_unchanged": "8 s",
    "test_curvature_warm.py::test_exact_warm_start_converges_at_once": "10 s",
    "test_curvature_warm.py::test_hand_over_keeps_the_whole_budget": "6 s",
    "test_curvature_warm.py::test_repeated_and_clustered_eigenvalues": "7 s",
    "test_curvature_warm.py::test_smallest_float32_start_and_full_space": "13 s",
    "test_curvature_warm.py::test_traced_in_scan_without_retracing_and_vmap": "16 s",
    "test_curvature_warm.py::test_train_warm_start": "14 s",
    "test_dde_fixed_neural.py::test_agrees_with_adaptive_solver": "6 s",
    "test_dde_fixed_neural.py::test_gradients_match_finite_differences": "5 s",
    "test_dde_fixed_neural.py::test_neural_dde_parameter_gradients": "8 s",
    "test_dde_fixed_neural.py::test_neural_dde_shapes_vmap_jit": "10 s",
    "test_dde_fixed_neural.py::test_neural_dde_tends_to_neural_ode": "5 s",
    "test_dde_fixed_neural.py::test_order_against_exact[method0-4]": "8 s",
    "test_dde_fixed_neural.py::test_unaligned_delay_is_second_order": "5 s",
    "test_dde_results.py::test_dde_solution_plot_dense_output_and_failure": "8 s",
    "test_dde_results.py::test_dde_solution_summary_and_plot": "4 s",
    "test_dde_solve.py::test_dense_output_and_history": "5 s",
    "test_dde_solve.py::test_jit_no_retrace_and_vmap": "9 s",
    "test_dde_solve.py::test_solve_batch_adaptive_exact": "6 s",
    "test_distributed.py::test_dead_process_stops_the_run": "7 s",
    "test_gradients_central_flow.py::test_grad_predicted_loss_wrt_lr": "13 s",
    "test_gradients_central_flow.py::test_jvp_predicted_loss_wrt_lr": "4 s",
    "test_gradients_central_flow.py::test_vmap_over_lr": "4 s",
    "test_gradients_curvature.py::test_sharpness_derivative_params_and_data": "5 s",
    "test_gradients_dde.py::test_delay_gradient_adaptive_reverse_matches_closed_form": "9 s",
    "test_gradients_dde.py::test_neural_dde_gradients": "9 s",
    "test_gradients_dde.py::test_solve_batch_adaptive_matches_closed_form": "10 s",
    "test_gradients_dde.py::test_solve_fixed_gradients_jit_vmap": "7 s",
    "test_gradients_dde.py::test_two_delays_constant_steps_reverse": "7 s",
    "test_gradients_invariant.py::test_forward_and_reverse_match_central_differences[dde_hopf: Hutchinson's Hopf delay in r]":  # noqa: E501
        "8 s",
    "test_gradients_meanfield.py::test_ott_antonsen_against_closed_form": "8 s",
    "test_gradients_meanfield.py::test_simulate_every_coupling_path": "10 s",
    "test_gradients_meanfield.py::test_vlasov": "7 s",
    "test_gradients_models.py::test_discrete_models_and_embedding": "14 s",
    "test_gradients_models.py::test_neural_ode_backsolve": "7 s",
    "test_gradients_models.py::test_neural_ode_matrix[checkpoint-adaptive-rev]": "11 s",
    "test_gradients_models.py::test_neural_ode_matrix[direct-constant-both]": "7 s",
    "test_gradients_sgd.py::test_sampled_exponents_in_lr": "4 s",
    "test_gradients_training.py::test_gradient_flow_endpoint_wrt_params_and_time": "12 s",
    "test_invariant_continuation.py::test_gd_map_flip_at_eta_one_and_its_period_two_branch": "4 s",
    "test_invariant_continuation.py::test_logistic_period_doublings": "4 s",
    "test_invariant_continuation.py::test_lorenz_branch_point_on_the_origin": "5 s",
    "test_invariant_continuation.py::test_matrix_free_branch_point_with_a_constant_null_vector": "5 s",
    "test_invariant_continuation.py::test_matrix_free_hopf_with_arnoldi_eigenvalues": "5 s",
    "test_invariant_continuation.py::test_matrix_free_path_agrees_on_the_branch_point": "8 s",
    "test_invariant_continuation.py::test_vmap_over_sigma_and_the_derivative_of_the_hopf_point": "5 s",
    "test_invariant_dde_periodic.py::test_branch_from_the_hopf_point_in_tau": "6 s",
    "test_invariant_dde_periodic.py::test_gradients_against_finite_differences": "5 s",
    "test_invariant_dde_periodic.py::test_hutchinson_cycle_matches_simulation": "7 s",
    "test_invariant_dde_periodic.py::test_mackey_glass_cycle_matches_simulation": "4 s",
    "test_invariant_dde_roots.py::test_float32_inputs_get_a_float32_tolerance": "4 s",
    "test_invariant_dde_roots.py::test_hutchinson_hopf_in_r": "5 s",
    "test_invariant_dde_roots.py::test_jit_eager_agree_and_no_retrace": "4 s",
    "test_invariant_equilibria.py::test_gd_map_fixed_points_vmap_over_eta": "5 s",
    "test_invariant_equilibria.py::test_grad_of_cplus_wrt_rho_implicit": "5 s",
    "test_invariant_equilibria.py::test_logistic_fixed_points_and_two_cycle": "11 s",
    "test_invariant_equilibria.py::test_lorenz_rho22_three_equilibria": "4 s",
    "test_invariant_equilibria.py::test_vmap_over_rho": "6 s",
    "test_invariant_floquet.py::test_complex_pair_and_agreement_with_the_explicit_product": "6 s",
    "test_invariant_floquet.py::test_jit_no_retrace_and_vmap": "5 s",
    "test_invariant_floquet.py::test_too_large_cluster_is_not_converged": "4 s",
    "test_invariant_manifolds.py::test_gradient_against_finite_differences": "10 s",
    "test_invariant_manifolds.py::test_jit_no_retrace_and_vmap": "6 s",
    "test_invariant_manifolds.py::test_throw_modes_not_a_saddle": "4 s",
    "test_invariant_periodic.py::test_branch_problem_interface": "5 s",
    "test_invariant_periodic.py::test_jit_no_retrace_vmap_over_mu_and_a_flagged_member": "9 s",
    "test_invariant_periodic.py::test_lifted_multipliers_1e_12_and_1e8": "6 s",
    "test_lyapunov_accuracy.py::test_liu_chen_bad_step_flagged_good_step_not": "5 s",
    "test_lyapunov_dde.py::test_linear_delay_lambert_w[0.2-0.004]": "4 s",
    "test_lyapunov_dde.py::test_linear_delay_lambert_w[1.0-0.03]": "5 s",
    "test_lyapunov_dde.py::test_linear_delay_lambert_w[1.4-0.028]": "4 s",
    "test_lyapunov_dde.py::test_mackey_glass_equilibrium_pair": "4 s",
    "test_lyapunov_flows_maps.py::test_covariant_vectors": "8 s",
    "test_lyapunov_flows_maps.py::test_gaussian_products[3]": "4 s",
    "test_lyapunov_flows_maps.py::test_gaussian_products[6]": "5 s",
    "test_lyapunov_flows_maps.py::test_jit_vmap_and_precision": "4 s",
    "test_lyapunov_flows_maps.py::test_linear_real_spectrum": "9 s",
    "test_lyapunov_flows_maps.py::test_products_of_matvecs_equal_matrices": "5 s",
    "test_lyapunov_flows_maps.py::test_sde_along_a_noise_realisation": "9 s",
    "test_lyapunov_network.py::test_identity_activation_mlp_equals_product_qr": "6 s",
    "test_lyapunov_results.py::test_product_matvec_closing_over_a_traced_parameter": "10 s",
    "test_lyapunov_results.py::test_summary_and_plot[LyapunovResult]": "13 s",
    "test_lyapunov_results.py::test_throw_true_raises_with_the_message[order_to_chaos]": "5 s",
    "test_meanfield_large.py::test_default_snapshot_is_the_end_and_empty_snapshots": "4 s",
    "test_meanfield_large.py::test_grad_jit_vmap_through_observable": "11 s",
    "test_meanfield_large.py::test_mean_activity_of_neural_field": "5 s",
    "test_meanfield_large.py::test_observed_order_parameter_equals_full_run": "8 s",
    "test_meanfield_large.py::test_split_circulant_equals_plain": "7 s",
    "test_meanfield_large.py::test_two_layer_blocked_gradient_equals_autodiff": "8 s",
    "test_meanfield_large.py::test_unreached_observations_are_nan": "4 s",
    "test_meanfield_limits.py::test_lorentzian_r_inf": "4 s",
    "test_meanfield_limits.py::test_two_layer_losses_converge_in_n": "6 s",
    "test_meanfield_limits.py::test_vlasov_w1_convergence": "8 s",
    "test_meanfield_particles.py::test_digraph_measure_reproduces_network_and_graphon": "5 s",
    "test_meanfield_particles.py::test_strategies_agree_with_direct_sum": "4 s",
    "test_meanfield_results.py::test_old_method_strings_warn_and_still_work": "4 s",
    "test_meanfield_results.py::test_ott_antonsen_result_and_both_modes": "4 s",
    "test_meanfield_results.py::test_user_particle_system_and_plain_vector_field": "4 s",
    "test_meanfield_results.py::test_vlasov_result_and_both_modes": "5 s",
    "test_models_embedding.py::test_critical_points_of_the_embedded_map": "13 s",
    "test_models_neural_ode.py::test_jit_does_not_retrace_and_vmap_equals_loop": "4 s",
    "test_models_neural_ode.py::test_time_dependent_mlp_field": "4 s",
    "test_models_neural_ode.py::test_trajectory_and_lift_readout": "4 s",
    "test_models_resnet.py::TestArchitectureClass::test_resnets": "7 s",
    "test_models_resnet.py::test_dense_resnet_matches_reference": "5 s",
    "test_models_resnet.py::test_resnet_converges_to_expm_with_order_one": "4 s",
    "test_models_resnet.py::test_resnet_default_blocks_match_loop": "7 s",
    "test_models_resnet.py::test_width_profile_vocabulary": "6 s",
    "test_models_results.py::test_neural_ode_solution": "5 s",
    "test_models_results.py::test_residual_networks_share_the_lifted_base[ResNet]": "5 s",
    "test_models_results.py::test_variational_throw_modes": "8 s",
    "test_training_central_flow.py::test_below_edge_is_gradient_flow": "5 s",
    "test_training_central_flow.py::test_edge_known_answers": "6 s",
    "test_training_central_flow.py::test_fields_and_shapes": "10 s",
    "test_training_central_flow.py::test_matrix_free_eigen_strategies[eigen0]": "12 s",
    "test_training_central_flow.py::test_matrix_free_eigen_strategies[eigen1]": "4 s",
    "test_training_central_flow.py::test_rmsprop_holds_effective_sharpness[optimizer0]": "14 s",
    "test_training_central_flow.py::test_rmsprop_holds_effective_sharpness[optimizer1]": "13 s",
    "test_training_central_flow.py::test_rmsprop_with_a_dead_coordinate": "14 s",
    "test_training_central_flow.py::test_two_at_the_edge": "10 s",
    "test_training_gd.py::test_overparameterised_least_squares_manifold": "4 s",
    "test_training_loop.py::test_sigint_during_checkpointed_train": "5 s",
    "test_training_loop.py::test_trackers_closed_form": "4 s",
    "test_training_results.py::test_train_result": "4 s",
    "test_training_sdcp.py::test_grad_under_jit_and_vmap": "5 s",
    "test_training_sdcp.py::test_jit_no_retrace_and_vmap": "6 s",
    "test_training_sdcp.py::test_jvp_and_grad_against_central_differences[0.0]": "9 s",
    "test_training_sgd.py::test_curve_of_minima_gives_normal_exponent": "4 s",
    "test_training_sgd.py::test_full_batch_exponent_equals_gd_mu": "12 s",
    "test_training_sgd.py::test_gauss_newton_equals_hessian_at_interpolation": "15 s",
    "test_training_sgd.py::test_jit_without_retracing_and_diagram_vmap": "6 s",
    "test_training_sgd.py::test_non_commuting_below_mean_square_bound": "8 s",
    "test_training_sgd_results.py::test_every_result_follows_the_pattern": "5 s",
    # --- #19 attention core (helper A1): add your entries below this line
    "test_attention_field.py::test_dense_and_blocked_agree":
        ("1.4 s: dense vs blocked kernels (moved by the lead: main lane 390 s in the CI at 5ddb5da); "
         "the Kuramoto known answer stays"),
    "test_attention_field.py::test_projected_paths_agree_and_unprojected_solvers_drift":
        "13-17 s: four solves (fast/diffrax Projected RK4, plain RK4, adaptive Tsit5 twice); "
        "test_sphere_is_invariant_with_the_projected_integrator stays",
    "test_attention_field.py::test_gradients_match_central_differences":
        "7-9 s: reverse mode through a solve and central differences; "
        "test_uniform_on_the_circle_is_kuramoto stays",
    "test_attention_field.py::test_automatic_blocked_path_above_the_dense_limit":
        "4 s: 549 tokens, blocked against dense; test_dense_and_blocked_agree[softmax] stays",
    "test_attention_field.py::test_layernorm_and_feedforward_as_written":
        "3 s: two more compiled layouts; test_uniform_on_the_circle_is_kuramoto stays",
    "test_attention_field.py::test_multihead_is_the_sum_of_heads_and_weights":
        "3 s: three layouts and the weights; test_dense_and_blocked_agree[softmax] (two heads) stays",
    "test_attention_field.py::test_batch_by_vmap_and_beta_does_not_recompile":
        "3 s: a vmapped compile; test_uniform_on_the_circle_is_kuramoto stays (beta traced, one compile)",
    "test_attention_field.py::test_key_blocks_differ_from_query_blocks":
        "2.5 s: two more blocked layouts; test_dense_and_blocked_agree[softmax] stays",
    "test_attention_field.py::test_simulate_on_the_circle_is_kuramoto":
        "1.5 s: two solves; test_uniform_on_the_circle_is_kuramoto (the fields) stays",
    "test_attention_field.py::test_dense_and_blocked_agree[uniform]":
        "1 s: the uniform layouts; test_dense_and_blocked_agree[softmax] stays",
    "test_benchmark_attention.py::test_peer_computes_the_same_steps":
        "4-8 s: a jaxdyn solve and torch at n = 64; test_benchmark_attention.py::test_module_contract stays",
    "test_benchmark_attention.py::test_large_case_worker_record":
        "8-12 s: the n = 65536 worker in a subprocess at n = 640; test_module_contract stays",
    "test_attention_field.py::test_sharded_tokens_equal_single_device":
        "18-30 s: a subprocess on 4 virtual CPU devices; "
        "tests/test_hostile_attention.py (shard_tokens rows) stays",
    # --- #19 attention clustering/limit/stability (helper A2): add your entries below this line
    "test_attention_dynamics.py::test_consensus_at_small_beta_and_long_lived_clusters_at_large_beta":
        "2.5 s: two 80-time-unit runs (moved by the lead, main lane budget); the consensus spectrum stays",
    "test_attention_clustering.py::test_figures":
        "5 s: every figure of plot/_attention (3-D snapshots, PCA); the clustering known answers stay "
        "(test_clustering_result_known_trajectory)",
    "test_attention_dynamics.py::test_flow_spectrum_at_consensus":
        "3 s: flow_spectrum at consensus to 1e-4; the Jacobian spectrum stays "
        "(test_consensus_spectrum_exact)",
    "test_attention_dynamics.py::test_cluster_count_grows_with_beta":
        "8 s: the table over 5 beta x 3 seeds to t = 160; consensus vs clusters stays "
        "(test_consensus_at_small_beta_and_long_lived_clusters_at_large_beta)",
    "test_attention_dynamics.py::test_dominant_positive_eigenvalue_aligns_tokens":
        "4 s: Projected RK4 to t = 80; consensus vs clusters stays",
    "test_attention_dynamics.py::test_negative_definite_value_matrix":
        "3 s: Projected RK4 to t = 80; consensus vs clusters stays",
    "test_attention_dynamics.py::test_token_w1_rate_on_the_circle":
        "15 s: W1 of n vs 4n tokens, 4 n x 6 repeats; w1_tokens = w1_circle stays "
        "(test_w1_tokens_against_circle_and_brute_force)",
    "test_attention_dynamics.py::test_circle_at_beta_zero_is_the_vlasov_particle_system":
        "7 s: two Tsit5 solves at rtol 1e-10; consensus vs clusters stays",
    "test_attention_dynamics.py::test_equilibria_of_three_tokens_on_the_circle_via_invariant":
        "8 s: invariant.equilibria (32 Newton starts) + 6 Jacobians; test_consensus_spectrum_exact stays",
    "test_attention_dynamics.py::test_metastable_clusters_have_d_minus_1_slow_directions_each":
        "5 s: two Projected RK4 runs, Jacobians, flow_spectrum runs; test_consensus_spectrum_exact stays",
    "test_attention_dynamics.py::test_consensus_spectrum_exact[softmax]":
        "2 s: a second Jacobian compilation; the uniform variant stays",
    "test_hostile_attention_analysis.py::test_hostile[clustering: NaN tokens raise]":
        "2 s: compiles the clustering kernels; test_clustering_result_known_trajectory (both modes) stays",
    "test_hostile_attention_analysis.py::test_hostile[clustering: NaN tokens, throw=False]":
        "2 s: compiles the clustering kernels; test_clustering_result_known_trajectory (both modes) stays",
    "test_hostile_attention_analysis.py::test_hostile[cluster_stability: NaN field raises]":
        "2 s: compiles a Jacobian; the stability known answer stays (test_consensus_spectrum_exact)",
    "test_hostile_attention_analysis.py::test_hostile[cluster_stability: NaN field, throw=False]":
        "2 s: compiles a Jacobian; the stability known answer stays (test_consensus_spectrum_exact)",
    # --- #19 attention experiment/trained attention (helper A3): add your entries below this line
    "test_experiments_attention.py::test_solve_equals_simulate_projected_rk4":
        ("2.4 s: the experiment's scan against simulate (moved by the lead, main lane budget); "
         "the claims tests stay"),
    "test_experiments_attention.py::test_smoke_run_tiny":
        "11 s (50 s at load 8): a tiny attention experiment (compiles every stage); CI runs every "
        "experiment after the tests; test_claims_reproduced_on_good_metrics stays",
    "test_experiments_attention.py::test_trained_attention_learns_and_runs":
        "3 s (10 s at load 8): Adam training (4 restarts) and a token run; test_isotropy and "
        "test_solve_equals_simulate_projected_rk4 stay",
    # --- #20 CNF (helper G1): add your entries below this line
    "test_models_cnf.py::test_hutchinson_is_unbiased":
        "2.1 s: 4000 keys (moved by the lead, main lane budget); the linear-field known answers stay",
    "test_models_cnf.py::test_failure_codes_and_throw":
        "1.2 s: a blow-up solve (moved by the lead, main lane budget); the hostile rows stay",
    "test_models_cnf.py::test_hutchinson_is_unbiased[gaussian]":
        "1 s CPU: the Gaussian-noise variant; the Rademacher one stays in the main lane",
    "test_models_cnf.py::test_hutchinson_unbiased_on_a_nonlinear_field":
        "2 s CPU: exact vs Hutchinson on an MLP field; test_hutchinson_is_unbiased[rademacher] stays",
    "test_models_cnf.py::test_backwards_time_push_inverse_sample_and_batch":
        "3 s CPU: six more compiled solves; test_linear_field_known_answers_jit_once_and_vmap stays",
    "test_models_cnf.py::test_grad_of_log_likelihood_matches_central_differences":
        "13 s CPU: reverse mode through the solve + central differences; the known answers stay",
    "test_models_cnf.py::test_moons_training_lowers_the_nll":
        "20 s CPU: train_cnf + fit on make_moons; test_hostile_cnf.py's train_cnf rows stay",
    "test_benchmark_generative.py::test_both_sides_take_the_same_steps_and_agree":
        "24 s CPU: torch + the compiled training step of both sides; test_goal_record stays",
    # --- #20 probability flow and scores (helper G2): add your entries below this line
    "test_models_score.py::test_gaussian_sampling_map_is_the_linear_transport[ve]": (
        "2.5 s: a second compiled solve (VE); the VP map stays in the main lane"),
    "test_models_score.py::test_empirical_score_is_the_gradient_of_the_mixture[ve]": (
        "0.6 s: the VE case; VP stays in the main lane"),
    "test_models_score.py::test_gaussian_score_is_the_gradient_of_its_density": (
        "1.1 s: the Gaussian score's density; its sampling map stays in the main lane"),
    "test_models_score.py::test_score_network_and_dsm_loss": (
        "1.9 s: network init and two compiled losses; DSM training is slow-lane too"),
    "test_models_score.py::test_empirical_flow_memorises_with_equal_polygon_basins": (
        "2.4 s: 400 empirical-flow samples; the empirical score's known answer stays in the main lane"),
    "test_models_score.py::test_log_prob_is_the_pushforward_density": "3.1 s: the augmented (trace) solve",
    "test_models_score.py::test_sample_jits_once_and_vmaps": "2.5 s: a jitted solve",
    "test_models_score.py::test_gradients_against_finite_differences": "4.8 s: reverse mode through log_prob",
    "test_models_score.py::test_dsm_training_lowers_the_loss": "7.4 s: 200 DSM steps and 32 samples",
    "test_models_score.py::test_failure_codes_and_result_object": "3.9 s: three more compiled solves",
    # --- #20 generative analyses/experiment (helper G3): add your entries below this line
    "test_generative_analyses.py::test_fixed_step_sampler_matches_adaptive_probability_flow": (
        "5-9 s: 200 adaptive probability-flow samples; the fixed-step polygon basins stay in the main lane"),
    "test_generative_analyses.py::test_ve_polygon_basins_equal_and_memorised": (
        "3 s: a second compiled sampler (VE); the VP polygon basins stay in the main lane"),
    "test_generative_analyses.py::test_sampling_map_jit_vmap_grad": (
        "2 s: reverse mode through the sampler; test_polygon_basins_equal_... stays"),
    "test_generative_analyses.py::test_ftle_ridges_separate_basins": (
        "3 s: a 41 x 41 FTLE grid; test_linear_sampling_map_ftle_and_lyapunov_closed_form stays"),
    "test_experiments_generative.py::test_smoke_run_tiny": (
        "52 s (loaded 2 cores): a tiny generative experiment (compile-bound: the quick run's ~20 "
        "programs); CI runs the quick one after the tests; test_claims_pass_on_good_metrics stays"),
}


def _slow_entries(nodeid: str) -> list[str]:
    """The entries of `SLOW` that put the test `nodeid` in the slow lane (none: the main lane)."""
    rel = nodeid.split("tests/", 1)[-1]
    return [entry for entry in SLOW
            if rel == entry or rel.startswith(entry + "::") or rel.startswith(entry + "[")]


def _in_slow_lane(nodeid: str) -> bool:
    return bool(_slow_entries(nodeid))


def pytest_collection_modifyitems(config, items):
    used = set()
    for item in items:
        entries = _slow_entries(item.nodeid)
        if entries:
            used.update(entries)
            item.add_marker(pytest.mark.slow)
    # A stale entry (a renamed or removed test) would silently move a long test back into the
    # main lane: when every file the list names was collected, each entry must match a test.
    files = {item.nodeid.split("tests/", 1)[-1].split("::", 1)[0] for item in items}
    if all(entry.split("::", 1)[0] in files for entry in SLOW):
        stale = sorted(set(SLOW) - used)
        if stale:
            raise pytest.UsageError("tests/conftest.py: SLOW entries that match no test (renamed or "
                                    "removed?): " + ", ".join(stale))
