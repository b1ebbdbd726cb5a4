"""Neural networks as input-output maps built from flows ("dynamics on the network")."""

from .._deprecate import deprecated_names as _deprecated_names
from ._affine import (
    AbstractField as AbstractField,
    Affine as Affine,
    identity_affine as identity_affine,
    random_affine as random_affine,
)
from ._architecture import (
    architecture_class as architecture_class,
    has_bottleneck as has_bottleneck,
    width_profile as width_profile,
)
from ._cnf import (
    CNF as CNF,
    CNFSolution as CNFSolution,
    StandardNormal as StandardNormal,
    cnf_nll as cnf_nll,
    train_cnf as train_cnf,
)
from ._critical_points import (
    CriticalPointsResult as CriticalPointsResult,
    critical_points as critical_points,
)
from ._embedding import EmbeddingField as EmbeddingField, embed as embed
from ._fields import LinearField as LinearField, MLPField as MLPField
from ._fit import FitResult as FitResult, fit as fit, mse_loss as mse_loss
from ._generative import (
    BasinsResult as BasinsResult,
    MemorisationResult as MemorisationResult,
    SamplingLyapunovResult as SamplingLyapunovResult,
    SamplingMap as SamplingMap,
    basins as basins,
    memorisation as memorisation,
    sampling_ftle as sampling_ftle,
    sampling_lyapunov as sampling_lyapunov,
)
from ._neural_dde import (
    AbstractDelayField as AbstractDelayField,
    AbstractStepping as AbstractStepping,
    AdaptiveStep as AdaptiveStep,
    DelayMLPField as DelayMLPField,
    FixedStep as FixedStep,
    MemoryCapacityResult as MemoryCapacityResult,
    NeuralDDE as NeuralDDE,
    memory_capacity as memory_capacity,
)
from ._neural_ode import (
    NeuralODE as NeuralODE,
    NeuralODESolution as NeuralODESolution,
    VariationalResult as VariationalResult,
    second_order as second_order,
)
from ._resnet import (
    MLP as MLP,
    DenseResNet as DenseResNet,
    ResidualBlock as ResidualBlock,
    ResNet as ResNet,
    tie as tie,
)
from ._score import (
    VE as VE,
    VP as VP,
    AbstractSDE as AbstractSDE,
    EmpiricalScore as EmpiricalScore,
    GaussianPrior as GaussianPrior,
    GaussianScore as GaussianScore,
    ProbabilityFlow as ProbabilityFlow,
    ProbabilityFlowSolution as ProbabilityFlowSolution,
    ScoreNetwork as ScoreNetwork,
    dsm_loss as dsm_loss,
    train_score as train_score,
)

# Old public names served for one release, with a DeprecationWarning naming the new one.
_RENAMED: dict[str, str] = {
    "CriticalPoints": "CriticalPointsResult",
    "Variational": "VariationalResult",
    "MemoryCapacity": "MemoryCapacityResult",
}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
