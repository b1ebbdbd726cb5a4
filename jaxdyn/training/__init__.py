"""Training as a dynamical system: gradient descent as a map, its stability, the edge of stability,
implicit bias, and SGD as a random dynamical system."""

from .._checkpoint import Checkpoint as Checkpoint
from .._deprecate import deprecated_names as _deprecated_names
from ._central_flow import (
    AbstractCentralFlowEigen as AbstractCentralFlowEigen,
    AbstractCentralFlowOptimizer as AbstractCentralFlowOptimizer,
    CentralFlowResult as CentralFlowResult,
    DenseEigen as DenseEigen,
    GDOptimizer as GDOptimizer,
    LanczosEigen as LanczosEigen,
    RitzEigen as RitzEigen,
    RMSPropOptimizer as RMSPropOptimizer,
    ScalarRMSPropOptimizer as ScalarRMSPropOptimizer,
    central_flow as central_flow,
    smooth_loss as smooth_loss,
)
from ._edge_of_stability import (
    EdgeOfStabilityResult as EdgeOfStabilityResult,
    edge_of_stability as edge_of_stability,
)
from ._gd import (
    GDJacobian as GDJacobian,
    GDMap as GDMap,
    GDStabilityResult as GDStabilityResult,
    gd_map as gd_map,
    gd_stability as gd_stability,
)
from ._gradient_flow import (
    GradientFlow as GradientFlow,
    GradientFlowSolution as GradientFlowSolution,
    gradient_flow as gradient_flow,
)
from ._implicit_bias import (
    GDEndpointsResult as GDEndpointsResult,
    gd_endpoints as gd_endpoints,
    hyperbola_loss as hyperbola_loss,
)
from ._loop import TrainResult as TrainResult, train as train
from ._sdcp import (
    AbstractComplementaritySolver as AbstractComplementaritySolver,
    PSDComplementarityResult as PSDComplementarityResult,
    SemismoothNewton as SemismoothNewton,
    psd_complementarity as psd_complementarity,
)
from ._sgd_lyapunov import (
    SGDEscapeResult as SGDEscapeResult,
    SGDLyapunovResult as SGDLyapunovResult,
    SGDStabilityDiagramResult as SGDStabilityDiagramResult,
    gd_exponent as gd_exponent,
    mean_square_bound as mean_square_bound,
    sgd_escape as sgd_escape,
    sgd_lyapunov as sgd_lyapunov,
    sgd_stability_diagram as sgd_stability_diagram,
)
from ._sgd_normal import (
    AbstractCurvature as AbstractCurvature,
    GaussNewton as GaussNewton,
    Hessian as Hessian,
    InterpolationCheckResult as InterpolationCheckResult,
    InterpolationFitResult as InterpolationFitResult,
    NormalSpace as NormalSpace,
    find_interpolating_minimum as find_interpolating_minimum,
    interpolation_check as interpolation_check,
    normal_space as normal_space,
)

# Old public names served for one release, with a DeprecationWarning naming the new one.
_RENAMED: dict[str, str] = {
    "EdgeOfStability": "EdgeOfStabilityResult",
    "GDEndpoints": "GDEndpointsResult",
    "GDStability": "GDStabilityResult",
    "InterpolationCheck": "InterpolationCheckResult",
    "InterpolationFit": "InterpolationFitResult",
    "SGDStabilityDiagram": "SGDStabilityDiagramResult",
}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
