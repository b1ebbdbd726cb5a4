"""Invariant sets and their bifurcations: equilibria, fixed points and cycles of maps, periodic
orbits with their Floquet multipliers, pseudo-arclength continuation with special points, and the
characteristic roots of delay equations."""

from .._deprecate import deprecated_names as _deprecated_names
from ._branch import BranchResult as BranchResult, BranchStart as BranchStart, switch_branch as switch_branch
from ._branch_problems import (
    AbstractEigenvalues as AbstractEigenvalues,
    AbstractSwitchableProblem as AbstractSwitchableProblem,
    ArnoldiEigenvalues as ArnoldiEigenvalues,
    DenseEigenvalues as DenseEigenvalues,
    EquilibriumProblem as EquilibriumProblem,
    FixedPointProblem as FixedPointProblem,
    NoEigenvalues as NoEigenvalues,
)
from ._classify import (
    KINDS as KINDS,
    AbstractClassification as AbstractClassification,
    FlowClassification as FlowClassification,
    MapClassification as MapClassification,
)
from ._continuation import continuation as continuation
from ._dde_periodic import (
    DDEPeriodicOrbitProblem as DDEPeriodicOrbitProblem,
    DDEPeriodicOrbitResult as DDEPeriodicOrbitResult,
    dde_cycle_branch_start as dde_cycle_branch_start,
    dde_orbit_guess_from_hopf as dde_orbit_guess_from_hopf,
    dde_periodic_orbit as dde_periodic_orbit,
)
from ._dde_roots import (
    CharacteristicRootsResult as CharacteristicRootsResult,
    DDEHopfProblem as DDEHopfProblem,
    DDEHopfResult as DDEHopfResult,
    characteristic_roots as characteristic_roots,
    dde_hopf as dde_hopf,
    dde_stability as dde_stability,
    linearise_dde as linearise_dde,
)
from ._manifolds import ManifoldsResult as ManifoldsResult, invariant_manifolds as invariant_manifolds
from ._periodic import (
    PeriodicOrbitProblem as PeriodicOrbitProblem,
    PeriodicOrbitResult as PeriodicOrbitResult,
    periodic_orbit as periodic_orbit,
)
from ._problems import (
    SPECIAL_POINTS as SPECIAL_POINTS,
    AbstractBranchProblem as AbstractBranchProblem,
)
from ._roots import (
    CyclesResult as CyclesResult,
    EquilibriaResult as EquilibriaResult,
    cycles as cycles,
    equilibria as equilibria,
    fixed_points as fixed_points,
)

_RENAMED: dict[str, str] = {}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
