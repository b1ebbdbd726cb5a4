r"""One-dimensional stable and unstable manifolds of saddle equilibria of flows.

At a hyperbolic equilibrium $u^*$ of $\dot y = f(y)$ with a simple real eigenvalue
$\lambda_u > 0$ that is the only one with positive real part, the unstable manifold $W^u$ is a curve
tangent to the eigenvector $v_u$; likewise $W^s$ with the only eigenvalue $\lambda_s < 0$ of
negative real part. Each curve has two branches, traced here by integrating the flow forward
(unstable, from $u^* \pm \varepsilon v_u$) or backward (stable, from $u^* \pm \varepsilon v_s$)
with diffrax. The four branches are one `vmap`ped solve of $\dot y = \sigma f(y)$,
$\sigma = \pm 1$: one compilation, adaptive steps shared.

The eigenvector is not taken from `jnp.linalg.eig` (whose eigenvectors have no JAX derivative):
the eigenvalue (from `eigvals`, differentiable when simple) is refined into the vector by the
bordered system $[J - \lambda I,\ c;\ c^T,\ 0]\,(v, s) = (0, 1)$ with $c$ the eigenvector of
`eig` without gradient, so that $v$ (and every point of the manifolds) is differentiable in the
field's `args`. The equilibrium is first polished by Newton on optimistix (implicit derivative).
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

from .._checks import check_finite, check_int, check_positive, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, from_diffrax, message, raise_if_failed
from .._types import Array


class ManifoldsResult(AbstractResult):
    r"""The stable and unstable manifolds of a saddle, from [`invariant_manifolds`][].

    - `point`: the equilibrium $u^*$ (after Newton polishing), shape `(n,)`.
    - `eigenvalues`: of the Jacobian at `point`, complex, shape `(n,)`, by decreasing real part.
    - `unstable_dimension`, `stable_dimension`: the number of eigenvalues with positive / negative
      real part (integer arrays).
    - `unstable_direction`, `stable_direction`: the unit eigenvectors $v_u$, $v_s$ (sign: the
      largest component positive); NaN where the manifold is not one-dimensional.
    - `ts`: the time grid, shape `(n_points,)`, from 0 to `t_max`.
    - `unstable`: shape `(2, n_points, n)`: the branches from $u^* + \varepsilon v_u$ and
      $u^* - \varepsilon v_u$ at times `ts`; `stable`: likewise at times `-ts` (backward).
      NaN after a branch left the `bound` and where the manifold is not one-dimensional.
    - `result`: a `RESULTS` item: `successful`; `not_converged` when Newton did not polish
      `point` into an equilibrium; `not_a_saddle` when neither manifold is one-dimensional (or the
      equilibrium is not hyperbolic); a diffrax failure of a branch (`max_steps_reached`,
      `nonfinite_state`, `step_size_too_small`).
    """

    point: Array
    eigenvalues: Array
    unstable_dimension: Array
    stable_dimension: Array
    unstable_direction: Array
    stable_direction: Array
    ts: Array
    unstable: Array
    stable: Array
    result: RESULTS

    def arc_lengths(self) -> np.ndarray:
        """The lengths of the four traced branches `(unstable +, unstable -, stable +, stable -)`,
        shape `(..., 4)` (NumPy; NaN segments skipped, NaN for a branch not traced)."""
        branches = np.concatenate([np.asarray(self.unstable), np.asarray(self.stable)], axis=-3)
        seg = np.linalg.norm(np.diff(branches, axis=-2), axis=-1)
        traced = np.any(np.isfinite(seg), axis=-1)
        return np.where(traced, np.nansum(seg, axis=-1), np.nan)

    def summary(self) -> str:
        """The equilibrium, its eigenvalues and saddle type, the length and end point of each
        branch, and the result code's message."""
        fmt = dict(precision=4, suppress_small=True)
        if np.ndim(self.point) > 1:
            lengths = self.arc_lengths()
            return (f"{np.shape(self.point)[0]} saddles (batched): branch lengths from "
                    f"{np.nanmin(lengths):.4g} to {np.nanmax(lengths):.4g}; use "
                    "jax.tree_util.tree_map(lambda x: x[i], result) for one.\n"
                    f"{message(self.result)}")
        point = np.round(np.asarray(self.point), 12) + 0.0
        lines = [f"Saddle at u* = {np.array2string(point, **fmt)}: eigenvalues "
                 f"{np.array2string(np.asarray(self.eigenvalues), **fmt)} (unstable dimension "
                 f"{int(self.unstable_dimension)}, stable dimension {int(self.stable_dimension)})"]
        lengths = self.arc_lengths()
        names = ("unstable +", "unstable -", "stable +", "stable -")
        branches = (*np.asarray(self.unstable), *np.asarray(self.stable))
        for name, length, branch in zip(names, lengths, branches, strict=True):
            finite = branch[np.all(np.isfinite(branch), axis=-1)]
            if finite.size == 0:
                lines.append(f"  {name}: not traced (not one-dimensional)")
                continue
            end = np.array2string(np.round(finite[-1], 12) + 0.0, **fmt)
            lines.append(f"  {name}: length {length:.4g}, ends at {end}")
        text = message(self.result)
        if text != "successful":
            lines.append(text)
        return "\n".join(lines)

    def plot(self, ax=None, *, dims: tuple[int, int] = (0, 1), **kwargs):
        """Draw the manifolds projected onto the coordinates `dims` (see
        [`jaxdyn.plot.plot_manifolds`][]): unstable solid red, stable dashed blue, the saddle
        marked. Returns the axes."""
        from ..plot._manifolds import plot_manifolds

        return plot_manifolds(self, ax=ax, dims=dims, **kwargs)


class _Config(eqx.Module):
    """The static settings of the branch integration."""

    n_points: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    bounded: bool = eqx.field(static=True)


def invariant_manifolds(field: Callable, point, *, args: Any = None, t_max: float = 20.0,
                        eps: float = 1e-6, n_points: int = 200, bound: float | None = None,
                        solver: diffrax.AbstractSolver | None = None, rtol: float = 1e-10,
                        atol: float = 1e-12, max_steps: int = 16384, hyperbolic_tol: float = 1e-8,
                        newton_tol: float = 1e-10, throw: bool = True) -> ManifoldsResult:
    r"""The one-dimensional stable and unstable manifolds of a saddle of a flow
    $\dot y = f(t, y, \text{args})$ (autonomous).

    `point` is polished by Newton (optimistix) into an equilibrium $u^*$; the Jacobian
    $J = \partial_y f(u^*)$ gives the eigenvalues. When exactly one eigenvalue $\lambda_u$ has
    positive real part (it is then real), the unstable manifold is traced from
    $u^* \pm \varepsilon v_u$ forward in time, $y(t)$ for $t \in [0, t_{max}]$, its points
    approaching $W^u$ at the rate of the stable eigenvalues while leaving $u^*$ like
    $\varepsilon e^{\lambda_u t}$; the stable manifold, when exactly one eigenvalue $\lambda_s$ has
    negative real part, backward in time from $u^* \pm \varepsilon v_s$. Planar saddles have both;
    the origin of Lorenz has the unstable one only. The starting error $O(\varepsilon^2)$ off the
    manifold is damped along it, so the traced curves are accurate to about
    $\varepsilon^2$ plus the solver tolerances.

    **Arguments:**

    - `field`: the vector field `f(t, y, args)` (diffrax's convention), `y` of shape `(n,)`.
    - `point`: an (approximate) saddle equilibrium, shape `(n,)`.
    - `args`: passed to `field` (the place of the parameters; vmap over them for a family).
    - `t_max`: the integration time of each branch (forward for $W^u$, backward for $W^s$).
    - `eps`: the distance of the start points from $u^*$ along the eigenvector.
    - `n_points`: the size of the time grid `ts` on which the branches are saved.
    - `bound`: stop a branch once $\|y - u^*\|_\infty >$ `bound` (its later points are NaN);
      `None`: no bound (every branch runs to `t_max`).
    - `solver`: a diffrax solver (default `diffrax.Tsit5()`), adaptive with `rtol`, `atol`;
      `max_steps` per branch.
    - `hyperbolic_tol`: an eigenvalue with $|\mathrm{Re}\,\lambda| \le$ `hyperbolic_tol`
      $\cdot \max(1, \max|\lambda|)$ makes the equilibrium non-hyperbolic (then no manifold is traced).
    - `newton_tol`: the tolerance of the Newton polish of `point`.
    - `throw`: `True` raises `eqx.EquinoxRuntimeError` on a failure (under `jit` through
      `eqx.error_if`); `False` returns the code in `result`.

    **Returns:** a [`ManifoldsResult`][] (`unstable`, `stable`: shape `(2, n_points, n)`).

    **Raises:** `TypeError`/`ValueError` naming the argument for bad input; when `point` and `args`
    are concrete, a `ValueError` naming the dimensions when neither manifold is one-dimensional
    (a node, a focus, a saddle with 2-D stable and unstable manifolds) or the equilibrium is not
    hyperbolic. Under `jit` that case is the code `not_a_saddle`.

    **Derivatives:** every array of the result is differentiable in `args` (and in `point`,
    trivially zero after the polish) where the eigenvalues are simple: implicit differentiation
    of the equilibrium, the bordered eigenvector system, and diffrax's adjoint.

    **Example:**

    ```python
    f = lambda t, y, args: jnp.array([y[0], -y[1] + y[0] ** 2])
    res = invariant_manifolds(f, jnp.zeros(2), t_max=14.0)
    x, y = res.unstable[0, :, 0], res.unstable[0, :, 1]   # y == x**2 / 3 on W^u
    ```
    """
    if not callable(field):
        raise TypeError(f"`field` must be callable `f(t, y, args)`, got {type(field).__name__}.")
    check_throw(throw)
    point = _check_point(point)
    for name, value in (("t_max", t_max), ("eps", eps), ("rtol", rtol), ("atol", atol),
                        ("hyperbolic_tol", hyperbolic_tol), ("newton_tol", newton_tol)):
        _check_scalar(value, name)
    if bound is not None:
        _check_scalar(bound, "bound")
    cfg = _Config(n_points=check_int(n_points, "n_points", minimum=2),
                  max_steps=check_int(max_steps, "max_steps"), bounded=bound is not None)
    if solver is None:
        solver = diffrax.Tsit5()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver (e.g. `diffrax.Tsit5()`), got "
                        f"{type(solver).__name__}.")
    try:
        out = jax.eval_shape(lambda y: field(0.0, y, args), point)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`field` failed on a state of shape {point.shape}: {err}") from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != point.shape:
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        raise ValueError(f"`field` must return an array of the shape of `point` {point.shape}, got {got}.")

    settings = {name: jnp.asarray(value, point.dtype) for name, value in (
        ("t_max", t_max), ("eps", eps), ("bound", jnp.inf if bound is None else bound), ("rtol", rtol),
        ("atol", atol), ("hyperbolic_tol", hyperbolic_tol), ("newton_tol", newton_tol))}
    res = _manifolds(cfg, field, point, args, solver, settings)
    if all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves((point, args, res))):
        _check_saddle(res)
    return raise_if_failed(res, res.result, throw, hint=(
        "(`invariant_manifolds`: pass `throw=False` to get the result with its code.)"))


@eqx.filter_jit
def _manifolds(cfg: _Config, field, point, args, solver, settings) -> ManifoldsResult:
    """The compiled core: polish, spectrum, eigenvectors, the four branches, the code."""
    u, polished = _polish(field, point, args, settings["newton_tol"])
    jac = jax.jacfwd(lambda y: field(0.0, y, args))(u)
    eigenvalues, n_unstable, n_stable, hyperbolic = _spectrum(jac, settings["hyperbolic_tol"])
    has_u = hyperbolic & (n_unstable == 1)
    has_s = hyperbolic & (n_stable == 1)
    v_u = jnp.where(has_u, _eigenvector(jac, eigenvalues[0]), jnp.nan)
    v_s = jnp.where(has_s, _eigenvector(jac, eigenvalues[-1]), jnp.nan)
    ts = jnp.linspace(0.0, 1.0, cfg.n_points, dtype=point.dtype) * settings["t_max"]
    branches, codes = _trace(cfg, field, u, jnp.stack([v_u, v_s]), args=args, ts=ts, solver=solver,
                             settings=settings)
    valid = jnp.where(jnp.arange(4) < 2, has_u, has_s)
    branches = jnp.where(valid[:, None, None] & jnp.isfinite(branches), branches, jnp.nan)
    ok = RESULTS.successful._value
    worst = jnp.max(jnp.where(valid & (codes != ok), codes, ok))  # a failure code present
    code = RESULTS.where(worst == ok, RESULTS.successful, _item(worst))
    code = RESULTS.where(has_u | has_s, code, RESULTS.not_a_saddle)
    code = RESULTS.where(polished, code, RESULTS.not_converged)
    return ManifoldsResult(point=u, eigenvalues=eigenvalues, unstable_dimension=n_unstable,
                           stable_dimension=n_stable, unstable_direction=v_u, stable_direction=v_s,
                           ts=ts, unstable=branches[:2], stable=branches[2:], result=code)


def _check_point(point) -> Array:
    if isinstance(point, bool) or not isinstance(point, jax.Array | np.ndarray | list | tuple | float | int):
        raise TypeError(f"`point` must be an array of shape (n,), got {type(point).__name__}.")
    point = jnp.asarray(point)
    if not jnp.issubdtype(point.dtype, jnp.floating):
        if jnp.issubdtype(point.dtype, jnp.complexfloating):
            raise TypeError("`point` must be real, got a complex array.")
        point = point.astype(jnp.result_type(float))
    if point.ndim != 1 or point.shape[0] < 2:
        raise ValueError(f"`point` must have shape (n,) with n >= 2 (a saddle needs two directions), "
                         f"got shape {point.shape}.")
    return check_finite(point, "point")


def _check_scalar(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number | jax.Array | np.ndarray):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.")
    check_positive(value, name)


def _polish(field, point, args, tol):
    """Newton (optimistix) from `point` on $f(u) = 0$; implicit derivative in `args`."""
    fn = lambda y, a: field(0.0, y, a)
    sol = optx.root_find(fn, optx.Newton(rtol=tol, atol=tol), point, args, max_steps=64, throw=False)
    u = sol.value
    residual = jnp.max(jnp.abs(fn(jax.lax.stop_gradient(u), args)))
    scale = jnp.maximum(1.0, jnp.max(jnp.abs(jax.lax.stop_gradient(u))))
    ok = (sol.result == optx.RESULTS.successful) | (residual <= 10 * tol * scale)
    return u, ok & jnp.all(jnp.isfinite(u))


def _spectrum(jac, tol):
    """Eigenvalues by decreasing real part, the numbers with positive / negative real part, and
    whether none is within the hyperbolicity band."""
    eig = jnp.linalg.eigvals(jac)
    eig = eig[jnp.argsort(-jax.lax.stop_gradient(eig.real))]
    band = tol * jnp.maximum(1.0, jnp.max(jnp.abs(jax.lax.stop_gradient(eig))))
    re = jax.lax.stop_gradient(eig.real)
    return (eig, jnp.sum(re > band).astype(jnp.int32), jnp.sum(re < -band).astype(jnp.int32),
            jnp.all(jnp.abs(re) > band))


def _check_saddle(res: ManifoldsResult) -> None:
    """On concrete input, the `ValueError` of an equilibrium without a one-dimensional manifold."""
    if not bool(res.result == RESULTS.not_a_saddle):
        return
    eig = np.round(np.asarray(res.eigenvalues), 6)
    n_u, n_s = int(res.unstable_dimension), int(res.stable_dimension)
    if n_u + n_s < eig.shape[0]:
        raise ValueError(f"`point` is a non-hyperbolic equilibrium (an eigenvalue with zero real part: "
                         f"{eig}): its stable and unstable manifolds are not defined by the linearisation.")
    raise ValueError(
        f"`point` has an unstable manifold of dimension {n_u} and a stable manifold of dimension {n_s} "
        f"(state dimension {eig.shape[0]}; eigenvalues {eig}): `invariant_manifolds` traces "
        "one-dimensional manifolds only (a saddle with a 1-D stable or unstable direction).")


def _eigenvector(jac, lam) -> Array:
    """The unit eigenvector of the simple real eigenvalue `lam`, by the bordered system
    $[J - \\lambda I, c; c^T, 0](v, s) = (0, 1)$ with $c$ the (gradient-free) eigenvector of `eig`."""
    n = jac.shape[0]
    lam = lam.real
    ws, vs = jnp.linalg.eig(jax.lax.stop_gradient(jac))
    k = jnp.argmin(jnp.abs(ws - jax.lax.stop_gradient(lam)))
    c = vs[:, k].real
    c = c / jnp.linalg.norm(c)
    c = c * jnp.sign(c[jnp.argmax(jnp.abs(c))])
    border = jnp.block([[jac - lam * jnp.eye(n, dtype=jac.dtype), c[:, None]],
                        [c[None, :], jnp.zeros((1, 1), jac.dtype)]])
    rhs = jnp.zeros(n + 1, jac.dtype).at[n].set(1.0)
    v = lx.linear_solve(lx.MatrixLinearOperator(border), rhs, lx.LU(), throw=False).value[:n]
    return v / jnp.linalg.norm(v)


def _trace(cfg: _Config, field, u, directions, *, args, ts, solver, settings):
    """The four branches $\\dot y = \\sigma f(\\sigma t, y)$ from $u^* \\pm \\varepsilon v$, one
    vmapped diffrax solve: `(4, n_points, n)` states and the four codes (ours, integers)."""
    signs = jnp.array([1.0, -1.0, 1.0, -1.0], u.dtype)
    sigmas = jnp.array([1.0, 1.0, -1.0, -1.0], u.dtype)
    starts = u + settings["eps"] * signs[:, None] * jnp.repeat(jnp.nan_to_num(directions), 2, axis=0)

    def rhs(t, y, sigma):
        return sigma * field(sigma * t, y, args)

    event = None
    if cfg.bounded:
        bound = settings["bound"]
        event = diffrax.Event(lambda t, y, args, **kw: jnp.max(jnp.abs(y - u)) > bound)
    controller = diffrax.PIDController(rtol=settings["rtol"], atol=settings["atol"])

    def one(y0, sigma):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(rhs), solver, 0.0, ts[-1], None, y0, sigma, saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller, event=event, max_steps=cfg.max_steps, throw=False)
        return sol.ys, sol.result

    ys, results = jax.vmap(one)(starts, sigmas)
    return ys, jax.vmap(lambda r: from_diffrax(r)._value)(results)


def _item(value) -> RESULTS:
    """The `RESULTS` item of an integer code array."""
    return type(RESULTS.successful)(value.astype(RESULTS.successful._value.dtype), RESULTS)
