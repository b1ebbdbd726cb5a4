r"""The edge of stability on real data (Cohen et al., arXiv 2103.00065).

Under full-batch gradient descent with step $\eta$ the sharpness $S = \lambda_{\max}(H)$ first
rises (progressive sharpening) until $S \approx 2/\eta$, then hovers there while the loss keeps
falling, non-monotonically; GD follows the gradient flow until $S$ crosses $2/\eta$ and leaves it
afterwards. [`edge_of_stability`][] reads these statements off a [`TrainResult`][] (the problem
of the `edge-of-stability` experiment lives in `jaxdyn.experiments._fixtures`).
"""

import equinox as eqx
import numpy as np

from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from ._loop import TrainResult


class EdgeOfStabilityResult(AbstractResult):
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
      run, with `throw=False`: its statistics use the rows before the failure only, and the
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

    def summary(self) -> str:
        r"""The first crossing of $2/\eta$, the sharpness after it and the loss."""
        text = f"edge of stability at step size {self.lr:.6g} (2/eta = {self.threshold:.6g}): "
        if self.first_crossing < 0:
            text += f"no crossing of 2/eta, max sharpness {self.max_sharpness:.6g}"
        else:
            text += (f"first crossing at step {self.first_crossing}, "
                     f"{100 * self.fraction_in_band:.0f}% of the rows after it within "
                     f"{100 * self.band:g}% of 2/eta, mean sharpness after it "
                     f"{self.mean_sharpness_after_ratio:.3f} x 2/eta, final sharpness "
                     f"{self.final_sharpness:.6g}, {self.loss_increases} loss increases after it")
        text += f"; final loss {self.final_loss:.6g}"
        if bool(self.successful):
            return text + "; successful."
        return text + f"; the run FAILED at step {self.failed_step}: " + message(self.result)

    def plot(self, ax=None, **kwargs):
        r"""The sharpness statistics in units of $2/\eta$ (bars) against the threshold 1; returns
        `ax`."""
        from ..plot._training import draw_edge_of_stability

        return draw_edge_of_stability(self, ax=ax, **kwargs)


def edge_of_stability(result: TrainResult, *, band: float = 0.1,
                      throw: bool = True) -> EdgeOfStabilityResult:
    r"""Edge-of-stability statistics of a GD run from [`train`][] (with `lr` and `top_k >= 1`).

    The sharpness is read at the tracked rows; the band statistic is the fraction of the rows
    from the first crossing of $2/\eta$ on with $|S - 2/\eta| < \text{band}\cdot 2/\eta$.

    `throw`: `True` (default): a run that failed (`result.result` not `successful`, e.g. from
    `train(..., throw=False)`) raises `eqx.EquinoxRuntimeError` with its message; `False`: the
    statistics of the rows before the failure, with the code in `.result`.

    **Returns:** an [`EdgeOfStabilityResult`][] (plain floats; `as_dict()` for reports).
    """
    if not isinstance(result, TrainResult):
        raise TypeError(f"`result` must be a TrainResult, got {type(result).__name__}.")
    if result.sharpness is None or result.lr is None:
        raise ValueError("`result` must come from `train` with `lr` and `top_k >= 1`.")
    if not (0 < band < 1):
        raise ValueError(f"`band` must be in (0, 1), got {band}.")
    check_throw(throw)
    out = _statistics(result, band)
    return raise_if_failed(out, out.result, throw, hint=f"(`edge_of_stability`: the run failed at "
                           f"step {out.failed_step}; pass `throw=False` to get the statistics of "
                           "the rows before it.)")


def _statistics(result: TrainResult, band: float) -> EdgeOfStabilityResult:
    lr = float(result.lr)
    thr = 2.0 / lr
    code = result.result
    fstep = int(result.failed_step)
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
        return EdgeOfStabilityResult(lr, thr, band, -1, nan, float(s.max()), float(s[-1]), nan, 0, nan,
                               float(losses[-1]), nan, nan if fd is None else float(fd[-1]), **extra)
    i = int(cross[0])
    after = s[i:]
    step = int(steps[i])
    tail = losses[step:]
    increases = int(np.sum(np.diff(tail) > 0)) if tail.size > 1 else 0
    return EdgeOfStabilityResult(
        lr=lr, threshold=thr, band=band, first_crossing=step,
        fraction_in_band=float(np.mean(np.abs(after - thr) < band * thr)),
        max_sharpness=float(s.max()), final_sharpness=float(s[-1]),
        mean_sharpness_after=float(after.mean()), loss_increases=increases,
        loss_at_crossing=float(losses[min(step, losses.size - 1)]), final_loss=float(losses[-1]),
        flow_distance_at_crossing=nan if fd is None else float(fd[i]),
        final_flow_distance=nan if fd is None else float(fd[-1]), **extra,
    )
