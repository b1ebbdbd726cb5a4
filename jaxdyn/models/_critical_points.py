"""Critical points of scalar maps on a box, with their Morse classification.

The gradient-field case of the package's one root finder, the deflated multi-start Newton search of
`jaxdyn.invariant._roots` (which also finds the equilibria of flows and the fixed points and cycles
of maps): here the residual is $\\nabla f$ and the classification is Morse's, by the signs of the
Hessian's eigenvalues.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, is_concrete
from .._deprecate import renamed_kwargs
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key
from ..invariant._roots import _GradientZeros, _search, _Settings, check_box
from ._neural_ode import second_order


class CriticalPointsResult(AbstractResult):
    """Critical points found by [`critical_points`][], sorted by function value.

    - `points`: shape `(k, d)`; `values`: $f$ there; `gradient_norms`: $\\|\\nabla f\\|$ there.
    - `hessian_eigenvalues`: shape `(k, d)`, ascending.
    - `morse_indices`: number of negative Hessian eigenvalues (0 = minimum, d = maximum).
    - `degenerate`: whether the smallest $|$eigenvalue$|$ is below `degenerate_tol` times the
      largest (then the Morse index is not meaningful).
    - `n_starts`, `n_converged`: how many Newton runs started and how many met `gtol` in the box.
    - `result`: a `RESULTS` (`jaxdyn._results`) item: `successful`, or `nonfinite_gradient` when
      $f$ or its gradient was non-finite (NaN or inf) where a Newton run went (the search is then
      incomplete there), or `nonfinite_curvature` when a Hessian eigenvalue at a found point was.
    - `lower`, `upper`: the box searched (for [`plot`][]; `None` when not recorded).
    """

    points: Array
    values: Array
    gradient_norms: Array
    hessian_eigenvalues: Array
    morse_indices: Array
    degenerate: Array
    n_starts: int = eqx.field(static=True)
    n_converged: int = eqx.field(static=True)
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)
    lower: Array | None = None
    upper: Array | None = None

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    def summary(self) -> str:
        """The number of critical points, one line per point (where, value, Hessian spectrum,
        kind), and the result code's message."""
        kinds = {0: "minimum"}
        d = self.points.shape[1] if self.points.ndim == 2 else 0
        lines = [f"{self.n_points} critical point(s) ({self.n_converged}/{self.n_starts} starts "
                 "converged)"]
        for p, v, eig, idx, deg in zip(np.asarray(self.points), np.asarray(self.values),
                                       np.asarray(self.hessian_eigenvalues),
                                       np.asarray(self.morse_indices),
                                       np.asarray(self.degenerate), strict=True):
            kind = "degenerate" if deg else kinds.get(int(idx), "maximum" if idx == d else
                                                       f"saddle (index {int(idx)})")
            p = np.round(p, 12) + 0.0  # tiny values print as 0., never "-0."
            lines.append(f"  x = {np.array2string(p, precision=4, suppress_small=True)}  f = {v:.6g}  "
                         f"eig(H) = {np.array2string(eig, precision=4, suppress_small=True)}  {kind}")
        text = message(self.result)
        if text != "successful":
            lines.append(text)
        return "\n".join(lines)

    def plot(self, ax=None, *, fn: Callable | None = None, annotate: bool = True, **kwargs):
        """Mark the points of a 2-D map by Morse index (see
        [`jaxdyn.plot.plot_critical_points`][]); with `fn`, on its level sets over the box
        searched (or `lower`/`upper` given in `kwargs`). Returns the axes."""
        from ..plot._plots import _axes, plot_critical_points

        if fn is not None:
            kwargs.setdefault("lower", self.lower)
            kwargs.setdefault("upper", self.upper)
        fig, ax = _axes(ax)
        plot_critical_points(self, fn, ax=ax, annotate=annotate, **kwargs)
        return ax


_NOT_TRACEABLE = (
    "`critical_points` is not differentiable and cannot run under jit/vmap/grad: it returns a "
    "data-dependent number of points (call it on concrete `fn`, `lower` and `upper`; differentiate "
    "a point you found through `fn` itself, e.g. by the implicit function theorem)."
)


def _scalar(fn):
    def f(x):
        out = fn(x)
        if jnp.size(out) != 1:
            raise ValueError(f"`fn` must return a scalar (or shape (1,)), got shape {jnp.shape(out)}.")
        return jnp.reshape(out, ())

    return f


@renamed_kwargs(max_iter="n_steps")
def critical_points(fn: Callable, lower, upper, *, key: Key, n_starts: int = 64,
                    n_steps: int = 60, gtol: float | None = None,
                    dedup_tol: float | None = None, degenerate_tol: float = 1e-6,
                    box_tol: float = 1e-6, throw: bool = True) -> CriticalPointsResult:
    r"""All critical points of a scalar map $f: \mathbb{R}^d \to \mathbb{R}$ found on a box.

    The package's root finder ([`jaxdyn.invariant.equilibria`][]'s deflated multi-start Newton on
    optimistix) on the gradient field $\nabla f = 0$: `n_starts` points uniform in the box
    $[\text{lower}, \text{upper}]$, run one after the other, each by Newton on the deflated
    residual $M(x) \nabla f(x)$ (so that a critical point found is not found again), then
    polished on $\nabla f$ itself (at most `n_steps` steps each). Newton's method converges to
    critical points of every index, not only minima. Converged points inside the box (relative
    tolerance `box_tol`) are deduplicated (distance below `dedup_tol`, default $10^{-4}$ times the
    box diameter) and classified by the eigenvalues of the Hessian.

    A [`NeuralODE`][] (or a model containing one) is switched to the second-order adjoint first
    ([`second_order`][]); a model with a one-element output is treated as scalar.

    **Arguments:**

    - `fn`: the scalar map, taking shape `(d,)`.
    - `lower`, `upper`: the box corners, shape `(d,)`, `lower < upper`.
    - `key`: for the start points. `n_starts`, `n_steps` (Newton steps per start; formerly
      `max_iter`, deprecated): effort.
    - `gtol`: accept $\|\nabla f\| \le$ `gtol` (default $10^{-6}$ in float64, $10^{-3}$ in float32,
      times $\max(1, |f|)$ at the point).
    - `degenerate_tol`: flag a point as degenerate when
      $\min|\lambda_i| \le$ `degenerate_tol` $\cdot \max(1, \max|\lambda_i|)$.

    - `throw`: when $f$ or its gradient is non-finite (NaN or inf) where a Newton run went, or
      a Hessian eigenvalue at a found point is, `True` raises an `eqx.EquinoxRuntimeError` with
      the message; `False` returns the points found with the code in `result`.

    **Returns:** a [`CriticalPointsResult`][].

    **Not differentiable.** The output is a data-dependent set of points (its size, the
    deduplication and the Morse indices are discrete choices): `critical_points` runs on concrete
    inputs only, and `jax.grad`/`jit`/`vmap` through it raise a `TypeError` that says so.

    **Example:**

    ```python
    res = critical_points(lambda x: jnp.sum(x**2), -jnp.ones(2), jnp.ones(2), key=key)
    res.points, res.morse_indices   # [[0., 0.]], [0]
    ```
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    if not all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves((fn, lower, upper))):
        raise TypeError(_NOT_TRACEABLE)
    lower, upper = check_box(lower, upper)
    check_throw(throw)
    n_starts = check_int(n_starts, "n_starts")
    n_steps = check_int(n_steps, "n_steps")
    d = lower.shape[0]
    f = _scalar(second_order(fn))
    try:
        jax.eval_shape(f, lower)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`fn` failed on an input of shape ({d},): {err}") from err

    if gtol is None:
        gtol = 1e-6 if lower.dtype == jnp.float64 else 1e-3
    diameter = float(jnp.linalg.norm(upper - lower))
    if dedup_tol is None:
        dedup_tol = 1e-4 * diameter

    starts = jax.random.uniform(key, (n_starts, d), lower.dtype, lower, upper)
    newton_tol = 1e-10 if lower.dtype == jnp.float64 else 1e-5
    settings = _Settings(n_steps=n_steps, rtol=newton_tol, atol=newton_tol,
                         accept=jnp.asarray(gtol, lower.dtype), dedup_tol=jnp.asarray(dedup_tol, lower.dtype),
                         box_tol=jnp.asarray(box_tol, lower.dtype))
    try:
        model = second_order(fn)
        found = _search(_GradientZeros(model), starts, None, lower, upper, settings)
        k = int(found.n_found)
        runs = _evaluate(model, found.ends, found.points[:k])
    except TypeError as err:
        if "custom_vjp" not in str(err):
            raise
        raise TypeError(
            "`fn` cannot be differentiated twice: it closes over a NeuralODE whose adjoint is "
            "first-order only (the training default). Close over `jaxdyn.models.second_order(model)` "
            "instead, or pass the model itself as `fn`."
        ) from err
    except jax.errors.ConcretizationTypeError as err:  # `fn` closes over a tracer
        raise TypeError(_NOT_TRACEABLE) from err

    if not all(is_concrete(a) for a in jax.tree_util.tree_leaves(runs)):  # `fn` closes over a tracer
        raise TypeError(_NOT_TRACEABLE)
    out, n_bad = _classify(found, runs, lower, upper, gtol=gtol, degenerate_tol=degenerate_tol)
    where = (f"{n_bad} of {n_starts} Newton runs met a non-finite value" if n_bad else
             "at a critical point found")
    return raise_if_failed(out, out.result, throw, hint=(
        f"({where}; pass `throw=False` to get the critical points found.)"))


def _classify(found, runs, lower, upper, *, gtol, degenerate_tol):
    """From the search (`found`) and the values at its end points and zeros (`runs`): the
    critical points sorted by value and classified by the Hessian's eigenvalues, with the result
    code; and the number of runs that met a non-finite value."""
    end_vals, end_grads, vals, grads, eig = (np.asarray(a) for a in runs)
    ends = np.asarray(found.ends)
    n_starts, d = ends.shape
    finite = (np.all(np.isfinite(ends), axis=-1) & np.isfinite(end_vals)
              & np.all(np.isfinite(end_grads), axis=-1) & ~np.asarray(found.nonfinite))
    gnorm = np.linalg.norm(grads, axis=-1)
    keep = np.isfinite(vals) & (gnorm <= gtol * np.maximum(1.0, np.abs(vals)))
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(vals[idx], kind="stable")]
    eig = eig[idx].reshape(len(idx), d)
    scale = np.maximum(1.0, np.abs(eig).max(axis=-1, initial=0.0))
    degenerate = np.abs(eig).min(axis=-1, initial=np.inf) <= degenerate_tol * scale
    if not np.all(finite):
        result = RESULTS.nonfinite_gradient
    elif not np.all(np.isfinite(eig)):
        result = RESULTS.nonfinite_curvature
    else:
        result = RESULTS.successful
    points = np.asarray(found.points)[idx].reshape(len(idx), d)
    out = CriticalPointsResult(
        points=jnp.asarray(points),
        values=jnp.asarray(vals[idx]),
        gradient_norms=jnp.asarray(gnorm[idx]),
        hessian_eigenvalues=jnp.asarray(eig),
        morse_indices=jnp.asarray((eig < 0).sum(axis=-1), dtype=jnp.int32),
        degenerate=jnp.asarray(degenerate),
        n_starts=n_starts,
        n_converged=int(np.sum(np.asarray(found.converged))),
        result=result,
        lower=lower,
        upper=upper,
    )
    return out, int(np.sum(~finite))


@eqx.filter_jit
def _evaluate(fn, ends, points):
    """Value and gradient at the end point of every Newton run, and value, gradient and Hessian
    eigenvalues at the critical points found: one forward-over-reverse pass of `fn` (the value,
    gradient and Hessian columns of one `jvp` of `value_and_grad`), compiled once per model
    structure."""
    f = _scalar(fn)
    value_and_grad = jax.value_and_grad(f)

    def at(x):
        (vals, grads), (_, columns) = jax.vmap(lambda v: jax.jvp(value_and_grad, (x,), (v,)))(
            jnp.eye(x.shape[0], dtype=x.dtype))
        return vals[0], grads[0], columns

    k = ends.shape[0]
    all_vals, all_grads, hessians = jax.vmap(at)(jnp.concatenate([ends, points]))
    eigs = jnp.linalg.eigvalsh(hessians[k:])
    return all_vals[:k], all_grads[:k], all_vals[k:], all_grads[k:], eigs
