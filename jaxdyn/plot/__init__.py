"""Figures (matplotlib is imported only when a function draws)."""

from ._attention import (
    plot_alignment_histogram as plot_alignment_histogram,
    plot_cluster_counts as plot_cluster_counts,
    plot_cluster_spectrum as plot_cluster_spectrum,
    plot_clustering as plot_clustering,
    plot_token_w1 as plot_token_w1,
    plot_tokens as plot_tokens,
)
from ._branch import plot_branch as plot_branch
from ._central_flow import plot_central_flow as plot_central_flow
from ._curvature import (
    plot_eigenvalues as plot_eigenvalues,
    plot_spectral_density as plot_spectral_density,
    plot_trace as plot_trace,
)
from ._dde import (
    plot_dde_fits as plot_dde_fits,
    plot_dde_solution as plot_dde_solution,
    plot_memory_capacity as plot_memory_capacity,
    plot_memory_sweep as plot_memory_sweep,
)
from ._dde_periodic import plot_dde_periodic_orbit as plot_dde_periodic_orbit
from ._dde_roots import (
    plot_characteristic_roots as plot_characteristic_roots,
    plot_dde_hopf as plot_dde_hopf,
)
from ._equilibria import plot_cycles as plot_cycles, plot_equilibria as plot_equilibria
from ._generative import (
    plot_basins as plot_basins,
    plot_density as plot_density,
    plot_memorisation as plot_memorisation,
    plot_memorisation_curve as plot_memorisation_curve,
    plot_sampling_lyapunov as plot_sampling_lyapunov,
)
from ._grid import evaluate as evaluate, grid_values as grid_values
from ._lyapunov import (
    plot_clv_angles as plot_clv_angles,
    plot_ftle_field as plot_ftle_field,
    plot_lyapunov_convergence as plot_lyapunov_convergence,
    plot_phase_diagram as plot_phase_diagram,
    plot_signal_propagation as plot_signal_propagation,
    plot_sweep as plot_sweep,
)
from ._manifolds import plot_manifolds as plot_manifolds, plot_phase_portrait as plot_phase_portrait
from ._meanfield import (
    plot_loss_curves as plot_loss_curves,
    plot_observed as plot_observed,
    plot_order_parameter as plot_order_parameter,
    plot_order_vs_coupling as plot_order_vs_coupling,
    plot_space_time as plot_space_time,
    plot_states as plot_states,
    plot_w1_convergence as plot_w1_convergence,
)
from ._periodic import plot_periodic_orbit as plot_periodic_orbit
from ._plots import (
    plot_critical_points as plot_critical_points,
    plot_fit as plot_fit,
    plot_fit_errors as plot_fit_errors,
    plot_level_sets as plot_level_sets,
    plot_losses as plot_losses,
)
from ._sdcp import plot_psd_complementarity as plot_psd_complementarity
from ._sgd import (
    plot_interpolation_check as plot_interpolation_check,
    plot_interpolation_fit as plot_interpolation_fit,
    plot_sgd_escape as plot_sgd_escape,
    plot_sgd_lyapunov as plot_sgd_lyapunov,
    plot_sgd_stability as plot_sgd_stability,
)
from ._training import (
    plot_flow_distance as plot_flow_distance,
    plot_implicit_bias as plot_implicit_bias,
    plot_sharpness as plot_sharpness,
    plot_training_loss as plot_training_loss,
)
