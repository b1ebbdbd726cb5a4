"""Large networks: graphons, digraph measures, Kuramoto-type particle systems and their mean-field limits."""

from .._deprecate import deprecated_names as _deprecated_names
from . import graphons as graphons
from ._attention import (
    Projected as Projected,
    SelfAttention as SelfAttention,
    shard_tokens as shard_tokens,
)
from ._clustering import (
    ClusteringResult as ClusteringResult,
    ClusterStabilityResult as ClusterStabilityResult,
    TokenW1Result as TokenW1Result,
    cluster_count as cluster_count,
    cluster_labels as cluster_labels,
    cluster_stability as cluster_stability,
    clustering as clustering,
    mean_token_norm as mean_token_norm,
    token_w1_rate as token_w1_rate,
    uniform_sphere as uniform_sphere,
    w1_tokens as w1_tokens,
)
from ._coupling import (
    AbstractCoupling as AbstractCoupling,
    AbstractCouplingMethod as AbstractCouplingMethod,
    AllToAll as AllToAll,
    AllToAllMethod as AllToAllMethod,
    Circulant as Circulant,
    Dense as Dense,
    DenseMethod as DenseMethod,
    FFTMethod as FFTMethod,
    LowRank as LowRank,
    LowRankMethod as LowRankMethod,
    Sparse as Sparse,
    SparseMethod as SparseMethod,
    auto_split as auto_split,
    coupling_operator as coupling_operator,
    split_fft as split_fft,
    twiddles as twiddles,
)
from ._digraph_measure import DigraphMeasure as DigraphMeasure
from ._graphon import (
    AbstractConvolutionGraphon as AbstractConvolutionGraphon,
    AbstractGraphon as AbstractGraphon,
    AbstractLowRankGraphon as AbstractLowRankGraphon,
    Graphon as Graphon,
    grid as grid,
)
from ._limits import (
    OttAntonsen as OttAntonsen,
    OttAntonsenResult as OttAntonsenResult,
    Vlasov as Vlasov,
    VlasovResult as VlasovResult,
    ott_antonsen as ott_antonsen,
    ott_antonsen_r as ott_antonsen_r,
    vlasov as vlasov,
    w1_cells as w1_cells,
    w1_circle as w1_circle,
)
from ._observe import (
    LocalOrder as LocalOrder,
    MeanActivity as MeanActivity,
    OrderParameter as OrderParameter,
)
from ._order_parameter import (
    local_order_parameter as local_order_parameter,
    order_parameter as order_parameter,
)
from ._particles import (
    RK4 as RK4,
    AbstractParticleSystem as AbstractParticleSystem,
    Harmonics as Harmonics,
    Kuramoto as Kuramoto,
    NeuralField as NeuralField,
    SimulationResult as SimulationResult,
    shard_nodes as shard_nodes,
    simulate as simulate,
)
from ._sampling import (
    gaussian_quantiles as gaussian_quantiles,
    lorentzian_quantiles as lorentzian_quantiles,
    sample_edges as sample_edges,
    sample_graph as sample_graph,
    sample_positions as sample_positions,
    step_graphon as step_graphon,
    wrapped_cauchy_quantiles as wrapped_cauchy_quantiles,
)
from ._two_layer import (
    TwoLayer as TwoLayer,
    TwoLayerGradientFlow as TwoLayerGradientFlow,
    TwoLayerResult as TwoLayerResult,
    mse as mse,
    two_layer_gd as two_layer_gd,
)

# Old public names served for one release, with a DeprecationWarning naming the new one.
_RENAMED: dict[str, str] = {}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
