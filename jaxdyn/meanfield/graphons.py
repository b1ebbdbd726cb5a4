r"""The graphon library: constructors of common graph limits (all symmetric, values in $[0, 1]$).

| constructor | $W(x, y)$ | structure used by the coupling |
|---|---|---|
| `constant(p)` | $p$ (Erdos-Renyi) | all-to-all, $O(N)$ |
| `ring(r)` | $1$ if $|x - y|_{S^1} \le r$ (nonlocal ring) | FFT on the grid |
| `small_world(r, p, q)` | $p$ within $r$, $q$ beyond | FFT on the grid |
| `fourier(c)` | $c_0 + \sum_k c_k \cos 2\pi k(x - y)$ | FFT or rank $2m + 1$ |
| `power_law(alpha, beta)` | $\min(1, \beta (x y)^{-\alpha})$ | dense |
| `stochastic_block(sizes, probs)` | $B_{ab}$ on blocks | rank $k$ |
| `step(matrix)` | step graphon of a matrix ($N$ equal cells) | rank $N$ / dense |
| `general(fn)` | any vectorised `fn(x, y)` | dense |
"""

from ._graphon import (
    AbstractConvolutionGraphon as AbstractConvolutionGraphon,
    AbstractGraphon as AbstractGraphon,
    AbstractLowRankGraphon as AbstractLowRankGraphon,
    ConstantGraphon as ConstantGraphon,
    FourierGraphon as FourierGraphon,
    Graphon as Graphon,
    PowerLawGraphon as PowerLawGraphon,
    RingGraphon as RingGraphon,
    SmallWorldGraphon as SmallWorldGraphon,
    StepGraphon as StepGraphon,
    _blocks,
    grid as grid,
)


def constant(p: float = 1.0) -> ConstantGraphon:
    """$W \\equiv p$: the limit of Erdos-Renyi graphs $G(N, p)$."""
    return ConstantGraphon(p)


def ring(radius: float) -> RingGraphon:
    """Nonlocal ring coupling of circle radius `radius` in $(0, 1/2]$."""
    return RingGraphon(radius)


def small_world(radius: float, p: float = 1.0, q: float = 0.1) -> SmallWorldGraphon:
    """$p$ within circle distance `radius`, $q$ beyond."""
    return SmallWorldGraphon(radius, p, q)


def fourier(coeffs) -> FourierGraphon:
    """$c_0 + \\sum_k c_k \\cos 2\\pi k (x - y)$ (checked to stay in $[0, 1]$)."""
    return FourierGraphon(coeffs)


def power_law(alpha: float = 0.5, beta: float = 0.1) -> PowerLawGraphon:
    """Truncated power law $\\min(1, \\beta (x y)^{-\\alpha})$."""
    return PowerLawGraphon(alpha, beta)


def stochastic_block(sizes, probs) -> StepGraphon:
    """Stochastic block model: block fractions `sizes` (summing to 1), symmetric `probs` matrix with
    entries in $[0, 1]$ (differentiable with respect to `probs`, not `sizes`)."""
    _blocks(probs, sizes, "probs", "sizes")
    return StepGraphon(probs, sizes)


def step(matrix) -> StepGraphon:
    """The step graphon of a symmetric matrix with entries in $[0, 1]$ ($N$ equal cells)."""
    _blocks(matrix, None, "matrix", "sizes")
    return StepGraphon(matrix)


def general(fn) -> Graphon:
    """A graphon from any vectorised symmetric `fn(x, y)` with values in $[0, 1]$."""
    return Graphon(fn)
