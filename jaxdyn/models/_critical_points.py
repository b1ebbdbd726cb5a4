"""Critical points of scalar maps on a box, with their Morse classification."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_finite, check_int, is_concrete
from .._deprecate import renamed_kwargs
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array, Key
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

    Multi-start Newton iteration on $\nabla f = 0$: `n_starts` points uniform in the box
    $[\text{lower}, \text{upper}]$, each iterated `n_steps` times with
    $x \leftarrow x - \alpha H^{-1} \nabla f$ (a Levenberg-regularised solve where $H$ is
    singular), $\alpha$ chosen by backtracking on the merit $\|\nabla f\|^2$, all starts at once
    (`vmap` of a `lax.scan`). Newton's method converges to critical points of every index, not
    only minima. Converged points inside the box (relative tolerance `box_tol`) are deduplicated
    (distance below `dedup_tol`, default $10^{-4}$ times the box diameter) and classified by the
    eigenvalues of the Hessian.

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
    lower, upper = _check_box(lower, upper)
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
    try:
        finals, vals, grads, eigs = _newton_solve(second_order(fn), starts, n_steps)
    except TypeError as err:
        if "custom_vjp" not in str(err):
            raise
        raise TypeError(
            "`fn` cannot be differentiated twice: it closes over a NeuralODE whose adjoint is "
            "first-order only (the training default). Close over `jaxdyn.models.second_order(model)` "
            "instead, or pass the model itself as `fn`."
        ) from err

    if not all(is_concrete(a) for a in (finals, vals, grads, eigs)):  # `fn` closes over a tracer
        raise TypeError(_NOT_TRACEABLE)
    out, n_bad = _classify((finals, vals, grads, eigs), lower, upper, gtol=gtol,
                           dedup_tol=dedup_tol, box_tol=box_tol, degenerate_tol=degenerate_tol)
    where = (f"{n_bad} of {n_starts} Newton runs met a non-finite value" if n_bad else
             "at a critical point found")
    return raise_if_failed(out, out.result, throw, hint=(
        f"({where}; pass `throw=False` to get the critical points found.)"))


def _check_box(lower, upper) -> tuple[Array, Array]:
    """The box corners as float vectors of one shape, finite, `lower < upper`."""
    lower = jnp.asarray(lower, dtype=jnp.result_type(float))
    upper = jnp.asarray(upper, dtype=jnp.result_type(float))
    if lower.ndim != 1:
        raise ValueError(f"`lower` must be a vector, got shape {lower.shape}.")
    if upper.shape != lower.shape:
        raise ValueError(f"`upper` must have the shape of `lower` {lower.shape}, got {upper.shape}.")
    check_finite(lower, "lower")
    check_finite(upper, "upper")
    if not bool(jnp.all(upper > lower)):
        raise ValueError("`upper` must be strictly greater than `lower` in every coordinate.")
    return lower, upper


def _classify(runs, lower, upper, *, gtol, dedup_tol, box_tol, degenerate_tol):
    """From the end points of the Newton runs `(finals, vals, grads, eigs)`: the converged points
    inside the box, deduplicated, sorted by value and classified, with the result code; and the
    number of runs that met a non-finite value."""
    finals, vals, grads, eigs = (np.asarray(a) for a in runs)
    n_starts, d = finals.shape
    gnorm = np.linalg.norm(grads, axis=-1)
    width = np.asarray(upper - lower)
    inside = np.all((finals >= np.asarray(lower) - box_tol * width)
                    & (finals <= np.asarray(upper) + box_tol * width), axis=-1)
    ok = (np.all(np.isfinite(finals), axis=-1) & np.isfinite(vals)
          & (gnorm <= gtol * np.maximum(1.0, np.abs(vals))) & inside)
    n_converged = int(ok.sum())
    order = np.argsort(np.where(ok, gnorm, np.inf))
    kept: list[int] = []
    for i in order[:n_converged]:
        if all(np.linalg.norm(finals[i] - finals[j]) > dedup_tol for j in kept):
            kept.append(int(i))
    kept.sort(key=lambda i: vals[i])
    idx = np.asarray(kept, dtype=int)
    eig = eigs[idx].reshape(len(idx), d)
    scale = np.maximum(1.0, np.abs(eig).max(axis=-1, initial=0.0))
    degenerate = np.abs(eig).min(axis=-1, initial=np.inf) <= degenerate_tol * scale
    finite = np.all(np.isfinite(finals), axis=-1) & np.isfinite(vals) & np.isfinite(gnorm)
    if not np.all(finite):
        result = RESULTS.nonfinite_gradient
    elif not np.all(np.isfinite(eig)):
        result = RESULTS.nonfinite_curvature
    else:
        result = RESULTS.successful
    out = CriticalPointsResult(
        points=jnp.asarray(finals[idx].reshape(len(idx), d)),
        values=jnp.asarray(vals[idx]),
        gradient_norms=jnp.asarray(gnorm[idx]),
        hessian_eigenvalues=jnp.asarray(eig),
        morse_indices=jnp.asarray((eig < 0).sum(axis=-1), dtype=jnp.int32),
        degenerate=jnp.asarray(degenerate),
        n_starts=n_starts,
        n_converged=n_converged,
        result=result,
        lower=lower,
        upper=upper,
    )
    return out, int(np.sum(~finite))


@eqx.filter_jit
def _newton_solve(fn, starts, n_steps):
    """Newton from every start, then value, gradient and Hessian eigenvalues at the end points:
    one compiled function, cached across calls on models of the same structure (`fn` is data)."""
    f = _scalar(fn)
    grad = jax.grad(f)
    hess = jax.jacfwd(grad)
    eps = jnp.finfo(starts.dtype).eps
    alphas = 0.5 ** jnp.arange(12)

    def newton_step(x, _):
        g = grad(x)
        H = hess(x)
        d = x.shape[0]
        lam = jnp.sqrt(eps) * (1.0 + jnp.max(jnp.abs(H)))
        step = jnp.linalg.solve(H.T @ H + lam**2 * jnp.eye(d, dtype=x.dtype), H.T @ g)
        step = jnp.where(jnp.all(jnp.isfinite(step)), step, g)
        merit0 = jnp.sum(g**2)
        trial = x[None, :] - alphas[:, None] * step[None, :]
        merits = jax.vmap(lambda y: jnp.sum(grad(y) ** 2))(trial)
        merits = jnp.where(jnp.isfinite(merits), merits, jnp.inf)
        accept = merits < (1.0 - 1e-4 * alphas) * merit0
        first = jnp.argmax(accept)
        x_new = jnp.where(jnp.any(accept), trial[first], x)
        return x_new, None

    def one(x0):
        x, _ = lax.scan(newton_step, x0, None, length=n_steps)
        return x, f(x), grad(x), jnp.linalg.eigvalsh(hess(x))

    return jax.vmap(one)(starts)
