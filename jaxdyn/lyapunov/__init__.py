"""Lyapunov spectra of flows, maps, random products and deep networks."""

from .._checkpoint import Checkpoint as Checkpoint
from .._deprecate import deprecated_names as _deprecated_names
from .._results import RESULTS as RESULTS
from ._clv import CLVResult as CLVResult, covariant_lyapunov_vectors as covariant_lyapunov_vectors
from ._dde import dde_spectrum as dde_spectrum
from ._flow import flow_spectrum as flow_spectrum
from ._ftle import FTLEResult as FTLEResult, ftle_field as ftle_field
from ._map import map_spectrum as map_spectrum
from ._network import (
    PhaseDiagramResult as PhaseDiagramResult,
    SignalPropagationResult as SignalPropagationResult,
    network_spectrum as network_spectrum,
    order_to_chaos as order_to_chaos,
    random_network_exponent as random_network_exponent,
    signal_propagation as signal_propagation,
)
from ._products import product_spectrum as product_spectrum
from ._result import (
    AccuracyCheck as AccuracyCheck,
    AccuracyReport as AccuracyReport,
    LyapunovResult as LyapunovResult,
    kaplan_yorke_dimension as kaplan_yorke_dimension,
)
from ._sweep import sweep as sweep

# Old public names served for one release, with a DeprecationWarning naming the new one.
_RENAMED: dict[str, str] = {
    "FTLEField": "FTLEResult",
    "PhaseDiagram": "PhaseDiagramResult",
    "SignalPropagation": "SignalPropagationResult",
}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
