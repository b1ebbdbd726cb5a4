"""jaxdyn: neural networks as dynamical systems, in JAX.

The subpackages (`jaxdyn.models`, `jaxdyn.dde`, `jaxdyn.invariant`, `jaxdyn.lyapunov`, `jaxdyn.curvature`,
`jaxdyn.training`, `jaxdyn.meanfield`, `jaxdyn.plot`) are imported on first access, so that
`import jaxdyn` and the command line (`jaxdyn --help`, `jaxdyn list`) do not pay for importing JAX.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import (
        curvature as curvature,
        dde as dde,
        distributed as distributed,
        invariant as invariant,
        lyapunov as lyapunov,
        meanfield as meanfield,
        models as models,
        plot as plot,
        training as training,
    )
    from ._results import RESULTS as RESULTS

_SUBPACKAGES = ("curvature", "dde", "distributed", "invariant", "lyapunov", "meanfield", "models", "plot",
                "training")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name == "RESULTS":  # the result codes shared by every result object
        from ._results import RESULTS

        globals()[name] = RESULTS
        return RESULTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_SUBPACKAGES, "RESULTS"})


__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)
