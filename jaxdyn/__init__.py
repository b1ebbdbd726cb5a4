"""jaxdyn: neural networks as dynamical systems, in JAX."""

import importlib.metadata

from . import (
    curvature as curvature,
    dde as dde,
    lyapunov as lyapunov,
    meanfield as meanfield,
    models as models,
    plot as plot,
    training as training,
)

try:
    __version__ = importlib.metadata.version("jaxdyn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
    __version__ = "0.0.0"
