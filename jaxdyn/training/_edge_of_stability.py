r"""The edge of stability on real data (Cohen et al., arXiv 2103.00065).

Under full-batch gradient descent with step $\eta$ the sharpness $S = \lambda_{\max}(H)$ first
rises (progressive sharpening) until $S \approx 2/\eta$, then hovers there while the loss keeps
falling, non-monotonically; GD follows the gradient flow until $S$ crosses $2/\eta$ and leaves it
afterwards. This module holds the problem of the `edge-of-stability` experiment (scikit-learn's
bundled 8x8 digits, standardised, MSE on one-hot targets, a fully connected tanh network) and
[`edge_of_stability`][], which reads these statements off a [`TrainResult`][].
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._results import RESULTS, message
from .._types import Array
from ._loop import TrainResult


def digits_data(n: int = 1000, *, seed: int = 0, dtype=None) -> tuple[Array, Array]:
    """scikit-learn's bundled digits (no download): `n` samples drawn without replacement with
    `seed`, every pixel standardised to mean 0 and variance 1 over these samples (constant pixels
    become 0), and one-hot targets.

    **Returns:** `(xs, ys)` of shapes `(n, 64)` and `(n, 10)` (dtype: JAX's default float unless
    given). Needs scikit-learn.
    """
    n = check_int(n, "n")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dev dependency
        raise ImportError("`digits_data` needs scikit-learn (pip install scikit-learn).") from err
    x, y = load_digits(return_X_y=True)
    if n > x.shape[0]:
        raise ValueError(f"`n` must be at most {x.shape[0]}, got {n}.")
    idx = np.random.default_rng(seed).permutation(x.shape[0])[:n]
    x = x[idx].astype(np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jnp.asarray(x, dtype), jnp.asarray(np.eye(10)[y[idx]], dtype)


def tanh_mlp(in_size: int = 64, width: int = 200, depth: int = 2, out_size: int = 10, *, key,
             dtype=None) -> eqx.nn.MLP:
    """A fully connected tanh network `in_size - width x depth - out_size` (Equinox's default
    initialisation): 64-200-200-10 by default, Cohen et al.'s fc-tanh on digits."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return eqx.nn.MLP(in_size, out_size, width, depth, activation=jnp.tanh, key=key, dtype=dtype)


def mse_onehot(model, xs: Array, ys: Array) -> Array:
    r"""$\frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2$ (Cohen et al.'s MSE on one-hot targets)."""
    pred = jax.vmap(model)(xs)
    return 0.5 * jnp.mean(jnp.sum((pred - ys) ** 2, axis=-1))


def onehot_accuracy(model, xs: Array, ys: Array) -> Array:
    """The fraction of samples whose largest output is the target class."""
    pred = jax.vmap(model)(xs)
    return jnp.mean(jnp.argmax(pred, axis=-1) == jnp.argmax(ys, axis=-1))


class EdgeOfStability(eqx.Module):
    r"""The edge-of-stability statistics of one GD run (from [`edge_of_stability`][]).

    - `lr`, `threshold`: $\eta$ and $2/\eta$.
    - `first_crossing`: the first tracked step with $S \ge 2/\eta$ (-1: never).
    - `fraction_in_band`: of the tracked rows from the first crossing on, the fraction with
      $|S - 2/\eta| < \text{band}\cdot 2/\eta$ (nan without a crossing).
    - `max_sharpness`, `final_sharpness`, `mean_sharpness_after`: $S$ overall, at the end and
      averaged after the crossing (in units of $2/\eta$: `*_ratio`).
    - `loss_increases`: per-step loss increases after the crossing (non-monotone);
      `loss_at_crossing`, `final_loss`: the loss keeps decreasing overall when the second is
      smaller.
    - `flow_distance_at_crossing`, `final_flow_distance`: $\|\theta_{GD} - \theta_{GF}\|$ at the
      first crossing and at the end (nan without a flow reference).
    - `result`, `failed_step`: the run's [`TrainResult`][] code and failing step (a diverged
      run is flagged here; its statistics use the rows before the failure only, and the
      "final" values are those of the last finite row).
    """

    lr: float
    threshold: float
    band: float
    first_crossing: int
    fraction_in_band: float
    max_sharpness: float
    final_sharpness: float
    mean_sharpness_after: float
    loss_increases: int
    loss_at_crossing: float
    final_loss: float
    flow_distance_at_crossing: float
    final_flow_distance: float
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)
    failed_step: int = -1

    @property
    def final_sharpness_ratio(self) -> float:
        """Final sharpness over $2/\\eta$."""
        return self.final_sharpness / self.threshold

    @property
    def mean_sharpness_after_ratio(self) -> float:
        """Mean sharpness after the first crossing over $2/\\eta$."""
        return self.mean_sharpness_after / self.threshold

    def as_dict(self) -> dict:
        """All statistics as a plain dict (with the two ratios), for reports."""
        names = [f.name for f in self.__dataclass_fields__.values()]
        out = {name: getattr(self, name) for name in names}
        out["result"] = message(self.result)
        out["final_sharpness_ratio"] = self.final_sharpness_ratio
        out["mean_sharpness_after_ratio"] = self.mean_sharpness_after_ratio
        return out


def edge_of_stability(result: TrainResult, *, band: float = 0.1) -> EdgeOfStability:
    r"""Edge-of-stability statistics of a GD run from [`train`][] (with `lr` and `top_k >= 1`).

    The sharpness is read at the tracked rows; the band statistic is the fraction of the rows
    from the first crossing of $2/\eta$ on with $|S - 2/\eta| < \text{band}\cdot 2/\eta$.

    **Returns:** an [`EdgeOfStability`][] (plain floats; `as_dict()` for reports).
    """
    if not isinstance(result, TrainResult):
        raise TypeError(f"`result` must be a TrainResult, got {type(result).__name__}.")
    if result.sharpness is None or result.lr is None:
        raise ValueError("`result` must come from `train` with `lr` and `top_k >= 1`.")
    if not (0 < band < 1):
        raise ValueError(f"`band` must be in (0, 1), got {band}.")
    lr = float(result.lr)
    thr = 2.0 / lr
    code = getattr(result, "result", RESULTS.successful)
    fstep = int(getattr(result, "failed_step", -1))
    s = np.asarray(result.sharpness, dtype=float)
    steps = np.asarray(result.steps)
    losses = np.asarray(result.losses, dtype=float)
    if fstep >= 0:  # only the rows and losses before the failure exist
        keep = max(1, int(np.sum(steps <= fstep)))
        s, steps = s[:keep], steps[:keep]
        losses = losses[:max(1, fstep)]
        fd_all = None if result.flow_distance is None else np.asarray(result.flow_distance)[:keep]
    else:
        fd_all = None if result.flow_distance is None else np.asarray(result.flow_distance)
    extra = {"result": code, "failed_step": fstep}
    cross = np.flatnonzero(s >= thr)
    nan = float("nan")
    fd = None if fd_all is None else np.asarray(fd_all, dtype=float)
    if cross.size == 0:
        return EdgeOfStability(lr, thr, band, -1, nan, float(s.max()), float(s[-1]), nan, 0, nan,
                               float(losses[-1]), nan, nan if fd is None else float(fd[-1]), **extra)
    i = int(cross[0])
    after = s[i:]
    step = int(steps[i])
    tail = losses[step:]
    increases = int(np.sum(np.diff(tail) > 0)) if tail.size > 1 else 0
    return EdgeOfStability(
        lr=lr, threshold=thr, band=band, first_crossing=step,
        fraction_in_band=float(np.mean(np.abs(after - thr) < band * thr)),
        max_sharpness=float(s.max()), final_sharpness=float(s[-1]),
        mean_sharpness_after=float(after.mean()), loss_increases=increases,
        loss_at_crossing=float(losses[min(step, losses.size - 1)]), final_loss=float(losses[-1]),
        flow_distance_at_crossing=nan if fd is None else float(fd[i]),
        final_flow_distance=nan if fd is None else float(fd[-1]), **extra,
    )
