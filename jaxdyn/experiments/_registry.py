"""The experiment registry: one line per reproduced result.

To add an experiment, write `jaxdyn/experiments/<name>.py` with a function
`run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult` and add one
`Experiment(...)` line to `_ALL` below. Modules are imported only when their experiment runs, so
`jaxdyn list` stays fast.
"""

import dataclasses
import importlib
from collections.abc import Callable

from ._result import ExperimentResult


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registry entry.

    - `name`: the command-line name (`jaxdyn reproduce NAME`).
    - `module`: import path of the module that defines `run(*, quick, seed, progress)`.
    - `description`: one line for `jaxdyn list`.
    - `x64`: run in float64 (`jax_enable_x64`); the default.
    """

    name: str
    module: str
    description: str
    x64: bool = True

    def load(self) -> Callable[..., ExperimentResult]:
        """Import the module and return its `run` function."""
        run = getattr(importlib.import_module(self.module), "run", None)
        if not callable(run):
            raise TypeError(f"Experiment module {self.module!r} has no function `run`.")
        return run


_ALL = (
    Experiment(
        "embedding",
        "jaxdyn.experiments.embedding",
        "The other side of the universal embedding theorem: non-augmented neural ODEs cannot fit "
        "x^2 or |x|^2 (monotone / no critical points), augmented ones can.",
    ),
    Experiment("lyapunov", "jaxdyn.experiments.lyapunov", "Lorenz spectrum and rho sweep; order to chaos."),
    Experiment("dde-memory", "jaxdyn.experiments.dde_memory", "Neural DDE memory capacity K tau: x^2 fits."),
    Experiment("edge-of-stability", "jaxdyn.experiments.edge_of_stability",
               "Full-batch GD on digits: sharpness rises to 2/eta and hovers there; GD leaves gradient flow.",
               x64=False),
    Experiment("implicit-bias", "jaxdyn.experiments.implicit_bias",
               "GD on (w1 w2 - 1)^2/2 settles only where a^2 + 1/a^2 <= 2/eta on the hyperbola."),
    Experiment("sgd-stability", "jaxdyn.experiments.sgd_stability",
               "SGD Lyapunov exponent at an interpolating minimum vs the GD boundary (digits MLP)."),
    Experiment("kuramoto", "jaxdyn.experiments.kuramoto",
               "Kuramoto r(K) vs theory, particles vs Ott-Antonsen, ring chimera, N^(-1/2) mean-field rate."),
    Experiment("invariant-sets", "jaxdyn.experiments.invariant_sets",
               "GD flip at 2/lambda_max, graphon K_c branch point, delay Hopf + cycles, neural ODE saddles."),
    Experiment("central-flow", "jaxdyn.experiments.central_flow",
               "Central flows on digits: GD's smoothed loss and path follow the central flow at 2/eta.",
               x64=False),
    Experiment("attention", "jaxdyn.experiments.attention",
               "Tokens as particles: Kuramoto on the circle, clusters vs beta, spectral selection, W1 rate."),
    Experiment("generative", "jaxdyn.experiments.generative",
               "CNF and probability flow on moons; FTLE, basins and memorisation of the sampling map."),
)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _ALL}
"""All registered experiments by name, in report order."""
