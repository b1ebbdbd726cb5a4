"""Width profiles: non-augmented vs augmented architectures, and bottlenecks."""

import equinox as eqx

from ._neural_ode import NeuralODE
from ._resnet import MLP, AbstractResidualNetwork


def width_profile(model) -> tuple[int, ...]:
    r"""The widths $(n_0, n_1, \dots, n_L)$ of the layers a signal passes through.

    - [`MLP`][] and `eqx.nn.MLP`: input, hidden widths, output.
    - [`ResNet`][], [`DenseResNet`][]: $(d, m, \dots, m, q)$ with $L + 1$ copies of the width $m$.
    - [`NeuralODE`][]: $(d, m, q)$; the flow keeps the width $m$ throughout.
    """
    if isinstance(model, MLP | AbstractResidualNetwork):
        return tuple(model.widths)
    if isinstance(model, NeuralODE):
        return (model.in_size, model.state_size, model.out_size)
    if isinstance(model, eqx.nn.MLP):
        in_size = 1 if model.in_size == "scalar" else model.in_size
        out_size = 1 if model.out_size == "scalar" else model.out_size
        return (in_size, *([model.width_size] * model.depth), out_size)
    raise TypeError(
        f"`model` must be an MLP, ResNet, DenseResNet, NeuralODE or eqx.nn.MLP, got "
        f"{type(model).__name__}."
    )


def architecture_class(model) -> str:
    r"""`"non-augmented"` or `"augmented"`, after Kuehn & Kuntz (arXiv 2405.09351).

    **Definitions.**

    - An MLP, ResNet or DenseResNet is *non-augmented* iff its widths never increase,
      $n_0 \ge n_1 \ge \dots \ge n_L$ (lift and readout included in the profile).
    - A NeuralODE with lift $A \in \mathbb{R}^{m \times d}$ is *non-augmented* iff $m \le d$ and
      the lift has full rank (rank $m$; the identity lift counts as full rank).
    - Everything else is *augmented*.

    Non-augmented networks with scalar output and nonzero readout have no critical points (their
    input gradient never vanishes); augmented ones are generically Morse, and with $m \ge d + q$ a
    neural ODE represents every smooth map exactly ([`embed`][]). See also [`has_bottleneck`][].
    """
    if isinstance(model, NeuralODE):
        m, d = model.state_size, model.in_size
        full_rank = model.lift is None or model.lift.rank() == min(m, d)
        return "non-augmented" if (m <= d and full_rank) else "augmented"
    widths = width_profile(model)
    increasing = any(b > a for a, b in zip(widths[:-1], widths[1:], strict=True))
    return "augmented" if increasing else "non-augmented"


def has_bottleneck(model) -> bool:
    r"""Whether some hidden layer is narrower than both of its neighbours in the [`width_profile`][].

    That is, $n_l < n_{l-1}$ and $n_l < n_{l+1}$ for some $0 < l < L$. A run of equal hidden
    widths counts as one layer (the residual stream of a ResNet has $L + 1$ equal widths): a
    bottleneck is then a plateau $n_i = \dots = n_j$ ($0 < i \le j < L$) narrower than both
    $n_{i-1}$ and $n_{j+1}$.
    """
    w = width_profile(model)
    runs = [w[0]]
    for n in w[1:]:
        if n != runs[-1]:
            runs.append(n)
    # plateaus touching the input or output are not hidden: compress only, never drop ends
    return any(runs[i] < runs[i - 1] and runs[i] < runs[i + 1] for i in range(1, len(runs) - 1))
