r"""The result of [`continuation`][] and branch switching at its special points.

A [`BranchResult`][] holds the points $(u_i, p_i)$ of a branch in fixed-capacity buffers (the first
`n_points` rows are filled, the rest NaN), their spectra and stability, and the special points
located on it (fold, branch point and the problem's own: Hopf, period doubling, Neimark-Sacker).
[`switch_branch`][] turns one special point into a [`BranchStart`][], which [`continuation`][]
accepts in place of `(problem, u0, p0)`:

- at a branch point, the same problem along the second tangent: the null vector of $[G_u\ G_p]$
  orthogonal to the branch tangent (from a dense SVD of $[G_u\ G_p]$ at the point);
- at any other kind, the problem's own [`AbstractSwitchableProblem.switch`][] (period doubling of
  a period-$k$ cycle: the period-$2k$ branch from $x + h v$; Hopf: the periodic-orbit branch).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete
from .._results import RESULTS, AbstractResult, message
from .._types import Array
from ._branch_problems import AbstractSwitchableProblem
from ._problems import SPECIAL_POINTS, AbstractBranchProblem

# The short labels of the special points in summaries and plots, in the order of SPECIAL_POINTS.
LABELS: dict[str, str] = {"fold": "F", "branch_point": "BP", "hopf": "H", "period_doubling": "PD",
                          "neimark_sacker": "NS"}


class BranchStart(eqx.Module):
    """Where a new branch starts: what [`continuation`][] needs in place of `(problem, u0, p0)`.

    **Fields:** `problem` (an [`AbstractBranchProblem`][]), `u0` (the start state), `p0` (the start
    parameter), `tangent` (the initial direction $(\\dot u, \\dot p)$, shape `(n + 1,)`, unit length;
    the first point is corrected in the hyperplane through `(u0, p0)` orthogonal to it).
    """

    problem: AbstractBranchProblem
    u0: Array
    p0: Array
    tangent: Array


class BranchResult(AbstractResult):
    r"""A branch of solutions of $G(u, p) = 0$ computed by [`continuation`][].

    **Fields:**

    - `u`: `(N, n)`, the states along the branch (rows `n_points` and above are NaN).
    - `p`: `(N,)`, the parameter values; `n_points`: how many rows are filled.
    - `spectrum`: `(N, k)`, complex: the problem's spectrum at each point (eigenvalues for flows,
      multipliers for maps and cycles; `k = 0` when the problem computes none).
    - `n_unstable`: `(N,)`, the number of unstable directions (-1 in empty rows);
      `stable`: `(N,)`, `n_unstable == 0`.
    - `test_values`: `(N, m)`, the test functions at each point: fold, branch point, then the
      problem's own (`problem.test_names`).
    - `special_kind`: `(S,)`, the index in `SPECIAL_POINTS` of each located special point (-1 empty);
      `special_u` `(S, n)`, `special_p` `(S,)`: where it lies; `special_position` `(S,)`: its place
      on the branch (a fractional row index: between rows `floor` and `floor + 1`);
      `special_spectrum` `(S, k)` and `special_tangent` `(S, n + 1)`: what switching needs;
      `n_special`: how many were located (more than `S` means the buffer overflowed; the first `S`
      are kept).
    - `problem`, `args`: the problem and the arguments of the branch (to switch from).
    - `result`: a [`RESULTS`][] code: `successful`, `singular_jacobian` (singular start, no
      tangent), `not_converged` (the start did not correct), `branch_step_too_small` (the branch so
      far is kept), `location_failed` (a special point kept at its last estimate),
      `max_steps_reached` (the iteration budget ran out).
    """

    u: Array
    p: Array
    n_points: Array
    spectrum: Array
    n_unstable: Array
    stable: Array
    test_values: Array
    special_kind: Array
    special_u: Array
    special_p: Array
    special_position: Array
    special_spectrum: Array
    special_tangent: Array
    n_special: Array
    problem: AbstractBranchProblem
    args: Any
    result: RESULTS

    def specials(self) -> list[tuple[str, float, float]]:
        """The located special points as `(kind, p, position)` (concrete, unbatched results)."""
        count = min(int(self.n_special), self.special_kind.shape[0])
        return [(SPECIAL_POINTS[int(self.special_kind[i])], float(self.special_p[i]),
                 float(self.special_position[i])) for i in range(count)]

    def summary(self) -> str:
        if np.ndim(self.p) > 1:
            return (f"{np.shape(self.p)[0]} branches (batched): use jax.tree_util.tree_map(lambda x: x[i], "
                    f"branch) for one. {message(self.result)}")
        n = int(self.n_points)
        name = type(self.problem).__name__
        lines = []
        if n == 0:
            lines.append(f"Branch of {name}: no point.")
        else:
            p = np.asarray(self.p[:n])
            lines.append(f"Branch of {name}: {n} points, p from {p[0]:.10g} to {p[-1]:.10g} "
                         f"(range {p.min():.10g} .. {p.max():.10g}).")
            if self.spectrum.shape[-1]:
                stable = np.asarray(self.stable[:n])
                lines.append(f"  stable at {int(stable.sum())} of {n} points.")
        for kind, p_sp, pos in self.specials():
            lines.append(f"  {LABELS[kind]:>2} {kind}: p = {p_sp:.10f} (between points {int(pos)} and "
                         f"{int(pos) + 1})")
        if int(self.n_special) > self.special_kind.shape[0]:
            lines.append(f"  ({int(self.n_special)} special points located, the first "
                         f"{self.special_kind.shape[0]} kept: raise `max_special`.)")
        if not bool(np.all(np.asarray(self.successful))):
            lines.append(message(self.result))
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        from ..plot._branch import plot_branch  # noqa: PLC0415

        return plot_branch(self, ax=ax, **kwargs)


def _null_second(branch: BranchResult, i: int) -> Array:
    """The unit null vector of $[G_u\\ G_p]$ at special point `i` orthogonal to the branch tangent."""
    u, p, t = branch.special_u[i], branch.special_p[i], np.asarray(branch.special_tangent[i])
    problem, args = branch.problem, branch.args

    def g(x):
        return problem.residual(x[:-1], x[-1], args, u)

    jac = np.asarray(jax.jacfwd(g)(jnp.concatenate([u, p[None]])))
    _, _, vt = np.linalg.svd(jac)
    null = vt[-2:]  # the right singular vectors of the two smallest singular values, (2, n + 1)
    a = null @ t  # the branch tangent in that plane
    second = -a[1] * null[0] + a[0] * null[1]  # its orthogonal complement in the plane
    second /= np.linalg.norm(second)
    return jnp.asarray(second if second[np.argmax(np.abs(second))] > 0 else -second, dtype=u.dtype)


def switch_branch(branch: BranchResult, index: int, *, amplitude: float = 1e-2) -> BranchStart:
    r"""Start a new branch at a located special point of `branch`.

    At a branch point the new branch is the same problem along the second tangent (the null vector
    of $[G_u\ G_p]$ orthogonal to the branch's), started at $x + h\,t_2$; at a period doubling of a
    [`FixedPointProblem`][] of period $k$ it is the period-$2k$ cycle started at $u + h v$ ($v$ the
    eigenvector of the multiplier $-1$); at a Hopf point of an [`EquilibriumProblem`][] the
    periodic-orbit branch from the Hopf eigenvector. A fold has no second branch.

    **Arguments:**

    - `branch`: a [`BranchResult`][] (concrete, not batched).
    - `index`: which special point (`0 <= index < min(n_special, S)`; see `branch.specials()`).
    - `amplitude`: $h$, the distance of the start from the special point (nonzero; its sign picks
      the side of a branch point or the half of a pitchfork).

    **Returns:** a [`BranchStart`][]: pass it to [`continuation`][] as the problem.

    **Example:**

    ```python
    branch = continuation(FixedPointProblem(logistic), jnp.array([2 / 3 - 0.1]), 2.7, p_min=2.5, p_max=3.3)
    doubled = continuation(switch_branch(branch, 0), p_min=2.5, p_max=3.6)
    ```
    """
    if not isinstance(branch, BranchResult):
        raise TypeError(f"`branch` must be a BranchResult from `continuation`, got {type(branch).__name__}.")
    if not is_concrete(branch.p) or np.ndim(branch.p) != 1:
        raise ValueError("`branch` must be one concrete branch (not batched, not traced).")
    count = min(int(branch.n_special), branch.special_kind.shape[0])
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise TypeError(f"`index` must be an int, got {type(index).__name__}.")
    if not 0 <= index < count:
        raise ValueError(f"`index` must be in [0, {count}) (the located special points), got {index}.")
    if isinstance(amplitude, bool) or not isinstance(amplitude, int | float | np.floating):
        raise TypeError(f"`amplitude` must be a float, got {type(amplitude).__name__}.")
    if not np.isfinite(amplitude) or amplitude == 0:
        raise ValueError(f"`amplitude` must be finite and nonzero, got {amplitude}.")
    kind = SPECIAL_POINTS[int(branch.special_kind[index])]
    u, p = branch.special_u[index], branch.special_p[index]
    if kind == "branch_point":
        second = _null_second(branch, index)
        x = jnp.concatenate([u, p[None]]) + amplitude * second
        return BranchStart(branch.problem, x[:-1], x[-1], second)
    if kind == "fold":
        raise ValueError(f"`index` {index} is a fold: no second branch starts there (continue through it).")
    if not isinstance(branch.problem, AbstractSwitchableProblem):
        raise TypeError(f"The branch's problem ({type(branch.problem).__name__}) is not an "
                        f"AbstractSwitchableProblem: it cannot start a branch at a {kind!r} point.")
    problem, u0, p0, tangent = branch.problem.switch(kind, u, p, branch.args, amplitude=amplitude)
    return BranchStart(problem, u0, p0, tangent)
