"""Curvature of losses over datasets: Hessian and Gauss-Newton operators (matrix-free), their
extreme eigenvalues (Lanczos, power iteration), sharpness, spectral densities (stochastic
Lanczos quadrature) and traces (Hutchinson, Hutch++)."""

from .._deprecate import deprecated_names as _deprecated_names
from ._density import (
    AbstractLanczosBackend as AbstractLanczosBackend,
    DensityResult as DensityResult,
    JaxdynLanczos as JaxdynLanczos,
    MatfreeLanczos as MatfreeLanczos,
    spectral_density as spectral_density,
)
from ._lanczos import (
    AbstractLanczosCriterion as AbstractLanczosCriterion,
    ChangeCriterion as ChangeCriterion,
    EigenResult as EigenResult,
    EigenvalueBoundCriterion as EigenvalueBoundCriterion,
    ResidualCriterion as ResidualCriterion,
    RitzPairs as RitzPairs,
    top_eigenvalues as top_eigenvalues,
)
from ._operators import (
    AbstractCurvatureOperator as AbstractCurvatureOperator,
    AbstractOutputLoss as AbstractOutputLoss,
    CurvatureOperator as CurvatureOperator,
    GaussNewtonOperator as GaussNewtonOperator,
    HessianOperator as HessianOperator,
    MeanSquaredError as MeanSquaredError,
    SoftmaxCrossEntropy as SoftmaxCrossEntropy,
    as_operator as as_operator,
    gauss_newton_operator as gauss_newton_operator,
    hessian_operator as hessian_operator,
)
from ._power import power_iteration as power_iteration, sharpness as sharpness
from ._trace import (
    AbstractTraceEstimator as AbstractTraceEstimator,
    Hutchinson as Hutchinson,
    HutchPlusPlus as HutchPlusPlus,
    TraceResult as TraceResult,
    trace as trace,
)

# Old public names served for one release, with a DeprecationWarning naming the new one.
_RENAMED: dict[str, str] = {}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
