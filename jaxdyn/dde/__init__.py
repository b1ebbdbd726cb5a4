"""Delay differential equations: the method of steps on diffrax solvers."""

from .._deprecate import deprecated_names as _deprecated_names
from .._kernels import EULER as EULER, HEUN as HEUN, RK4 as RK4, Tableau as Tableau
from ._breakpoints import breaking_points as breaking_points
from ._fixed import solve_fixed as solve_fixed
from ._history import ConstantHistory as ConstantHistory
from ._solve import DDESolution as DDESolution, solve as solve, solve_batch as solve_batch

# Old public names served for one release, with a DeprecationWarning naming the new one.
_RENAMED: dict[str, str] = {}
__getattr__ = _deprecated_names(__name__, globals(), _RENAMED)
