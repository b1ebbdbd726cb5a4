r"""Central flows (Cohen, Damian et al., "Understanding Optimization in Deep Learning with Central
Flows", ICLR 2025, arXiv 2410.24206): the time-averaged dynamics of gradient descent and RMSProp at
the edge of stability, as one jit-able, differentiable computation.

A preconditioned optimiser $w_{t+1} = w_t - P(s_t)^{-1}\nabla L(w_t)$ with a state $s$ (RMSProp's
$\nu$) oscillates, at the edge of stability, along the top eigenvectors of the effective Hessian
$P^{-1/2} H P^{-1/2}$ whose eigenvalues sit at 2. The central flow follows the time average of
those oscillations: with $\Sigma = U S U^\top \succeq 0$ the oscillation covariance, supported on
the top-$k$ generalised eigenvectors $H U = P U \Lambda$ ($U^\top P U = I$),

$$\frac{dw}{dt} = -P^{-1}\Big[\nabla L + \tfrac12 \nabla_w\langle \Sigma, H(w)\rangle\Big],\qquad
  \frac{ds}{dt} = f(s, \nabla L) + \tfrac12 \sum_{ij} S_{ij}\, D_g^2 f[Hu_i, Hu_j],$$

where $S$ solves, at every evaluation of the field, the $k\times k$ semidefinite complementarity
problem that keeps $A = 2P - H \succeq 0$ on $\operatorname{span} U$: with
$\frac{d}{dt} U^\top A U = a + B(S)$ (affine in $S$, $U$ held fixed),

$$S \succeq 0,\quad W = \gamma(2I - \Lambda) + a + B(S) \succeq 0,\quad \langle S, W\rangle = 0.$$

Time is measured in optimiser steps. $\gamma$ (`_RESTORING_RATE`, 2 per step) is the rate at which
an active eigenvalue that integration error moved off 2 is pulled back (in exact arithmetic the
effective sharpness then approaches 2 from below and never crosses it); the paper's Euler
discretisation with step $\Delta t$ is the case $\gamma = 1/\Delta t$. Only eigenvalues at or above
`threshold` (1.95, as the paper's code) enter the problem; the others are masked out (fixed $k$
under `jit`).

The optimiser's state starts after one update with the first gradient, $s_0 = u(0, \nabla L(w_0))$
(RMSProp: $\nu_0 = (1-\beta_2) g_0^2$), as in the paper's code; the discrete optimiser of
`compare=True` starts from $s = 0$ and updates before each step, so both see the same $s$ at step 0.

Why our own: the paper's code is PyTorch with a host SDCP solver (cvxpy) at every step and Euler
substeps; here the field is a pure JAX function integrated by diffrax, the SDCP is solved natively
(`jaxdyn.training.psd_complementarity`'s strategies), and the third derivatives
$\nabla_w (u_i^\top H u_j)$ are JVPs of Hessian-vector products ([`jaxdyn._kernels.hvp`][]), so the
whole run is jit-able, vmap-able over the step size and differentiable.
"""

import abc
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax import lax

from .. import curvature as _curvature
from .._checks import check_int
from .._kernels import RK4 as _RK4_TABLEAU, Flattener, flatten, hvp
from .._results import RESULTS, AbstractResult, check_throw, from_diffrax, message, raise_if_failed
from .._types import Array, PyTree
from ._gd import check_data, check_finite_now, check_loss, check_lr, check_params, split_params
from ._sdcp import AbstractComplementaritySolver, SemismoothNewton

_RESTORING_RATE = 2.0  # gamma: per optimiser step (see the module docstring)
_DENSE_MAX = 256  # `eigen=None`: dense eigh up to this many parameters, warm-started Lanczos above
_SEPARATED = 1e-8  # eigenvalues of the top k further apart (relatively) get their rotation derivative
_STABLE_CONTROLLER = diffrax.PIDController(rtol=1e-8, atol=1e-10)  # the stable flow's default
_BAR: dict = {}  # the progress bar of the run in flight (updated by a host callback)


def _tick(done) -> None:
    bar = _BAR.get("bar")
    if bar is not None:
        done = int(np.max(np.asarray(done)))  # batched under vmap: the furthest member
        if done > bar.n:
            bar.update(done - bar.n)


# ------------------------------------------------------------------------------------------------
# optimisers: a state, a diagonal preconditioner, the discrete and the continuous state update


class AbstractCentralFlowOptimizer(eqx.Module):
    r"""A preconditioned optimiser $w \leftarrow w - P(s)^{-1}\nabla L(w)$ with a state $s$
    updated (before the step) by $s \leftarrow u(s, \nabla L)$, seen by [`central_flow`][].

    The preconditioner is diagonal, returned as its diagonal `p` (shape `(n,)`); the state is a
    flat vector (shape `(0,)` for plain GD). `rate(s, g)` is the continuous-time state velocity
    $f(s, g)$ of the flow; its second derivative in `g` gives the oscillations' effect on $s$.
    """

    @abc.abstractmethod
    def zero_state(self, w: Array) -> Array:
        """The state before the first step (`w`: the flat parameters, for shape and dtype)."""

    @abc.abstractmethod
    def update(self, s: Array, g: Array) -> Array:
        """The discrete state update $u(s, g)$ (applied before each step, as the paper does)."""

    @abc.abstractmethod
    def rate(self, s: Array, g: Array) -> Array:
        """The continuous state velocity $ds/dt = f(s, g)$."""

    @abc.abstractmethod
    def preconditioner(self, s: Array, lr: Array, w: Array) -> Array:
        """The diagonal of $P(s)$ (shape of `w`): $w$ moves by $-g / p$ per step."""

    @abc.abstractmethod
    def edge(self, s: Array, lr: Array) -> Array:
        r"""The raw-sharpness edge of stability $2p$ when $P = pI$ is isotropic, else `nan`."""

    @abc.abstractmethod
    def isotropic(self) -> bool:
        """Whether $P = pI$ (then the raw sharpness is the effective one times $p$)."""


class GDOptimizer(AbstractCentralFlowOptimizer):
    r"""Gradient descent $w \leftarrow w - \eta \nabla L$: $P = I/\eta$, no state (`"gd"`)."""

    def zero_state(self, w):
        return jnp.zeros((0,), w.dtype)

    def update(self, s, g):
        return s

    def rate(self, s, g):
        return s

    def preconditioner(self, s, lr, w):
        return jnp.ones_like(w) / lr

    def edge(self, s, lr):
        return 2.0 / lr

    def isotropic(self):
        return True


def _sqrt0(x: Array) -> Array:
    r"""$\sqrt{x}$ ($x \ge 0$) with derivative 0 at $x = 0$ instead of `inf`.

    RMSProp's $\nu_i$ is exactly 0 on coordinates whose gradient is always 0 (on digits: the
    first-layer weights of the pixels that are 0 in every image); there $\nu_i$ never moves and
    no eigenvector has weight, but `jax.jvp(jnp.sqrt)` gives `inf * 0 = nan` in $dP/dt$, which
    made every active complementarity problem (and so the flow, from the first eigenvalue at the
    edge on) `nan`. Where $x > 0$ the derivative is the exact $1/(2\sqrt x)$.
    """
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _check_beta2_eps(beta2, eps, name):
    beta2, eps = float(beta2), float(eps)
    if not 0.0 < beta2 < 1.0:
        raise ValueError(f"`{name}(beta2=...)` must be in (0, 1), got {beta2}.")
    if not (np.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"`{name}(eps=...)` must be a finite number >= 0, got {eps}.")
    return beta2, eps


class ScalarRMSPropOptimizer(AbstractCentralFlowOptimizer):
    r"""Scalar RMSProp (`"rmsprop_scalar"`): $\nu \leftarrow \nu + (1-\beta_2)(\|g\|^2 - \nu)$,
    then $w \leftarrow w - \eta\, g / (\sqrt\nu + \epsilon)$; $P = (\sqrt\nu + \epsilon)/\eta\, I$.

    The flow's state velocity is $d\nu/dt = \frac{1-\beta_2}{\beta_2}(\|g\|^2 - \nu)$ (the
    paper's division by $\beta_2$: the discrete update written in terms of the *new* state,
    $\nu_t - \nu_{t-1} = \frac{1-\beta_2}{\beta_2}(g_t^2 - \nu_t)$, since the step uses $\nu_t$).
    The state is `(1,)`: $\nu$.
    """

    beta2: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, beta2: float = 0.99, eps: float = 0.0):
        self.beta2, self.eps = _check_beta2_eps(beta2, eps, "ScalarRMSPropOptimizer")

    def zero_state(self, w):
        return jnp.zeros((1,), w.dtype)

    def update(self, s, g):
        return s + (1.0 - self.beta2) * (jnp.sum(g * g) - s)

    def rate(self, s, g):
        return (1.0 - self.beta2) / self.beta2 * (jnp.sum(g * g) - s)

    def preconditioner(self, s, lr, w):
        return jnp.ones_like(w) * ((_sqrt0(s[0]) + self.eps) / lr)

    def edge(self, s, lr):
        return 2.0 * (_sqrt0(s[0]) + self.eps) / lr

    def isotropic(self):
        return True


class RMSPropOptimizer(AbstractCentralFlowOptimizer):
    r"""RMSProp (`"rmsprop"`): $\nu \leftarrow \nu + (1-\beta_2)(g^2 - \nu)$ elementwise, then
    $w \leftarrow w - \eta\, g / (\sqrt\nu + \epsilon)$; $P = \operatorname{diag}(\sqrt\nu +
    \epsilon)/\eta$. The flow's $d\nu/dt = \frac{1-\beta_2}{\beta_2}(g^2 - \nu)$ (see
    [`ScalarRMSPropOptimizer`][]). The state is $\nu$, shape `(n,)`."""

    beta2: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, beta2: float = 0.99, eps: float = 1e-8):
        self.beta2, self.eps = _check_beta2_eps(beta2, eps, "RMSPropOptimizer")

    def zero_state(self, w):
        return jnp.zeros_like(w)

    def update(self, s, g):
        return s + (1.0 - self.beta2) * (g * g - s)

    def rate(self, s, g):
        return (1.0 - self.beta2) / self.beta2 * (g * g - s)

    def preconditioner(self, s, lr, w):
        return (_sqrt0(s) + self.eps) / lr

    def edge(self, s, lr):
        return jnp.full((), jnp.nan, s.dtype)

    def isotropic(self):
        return False


_OPTIMIZERS = {"gd": GDOptimizer, "rmsprop_scalar": ScalarRMSPropOptimizer, "rmsprop": RMSPropOptimizer}


def _optimizer(value) -> AbstractCentralFlowOptimizer:
    if isinstance(value, AbstractCentralFlowOptimizer):
        return value
    if isinstance(value, str):
        if value not in _OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {tuple(_OPTIMIZERS)} or an "
                             f"AbstractCentralFlowOptimizer, got {value!r}.")
        return _OPTIMIZERS[value]()
    raise TypeError("`optimizer` must be 'gd', 'rmsprop_scalar', 'rmsprop' or an "
                    f"AbstractCentralFlowOptimizer (GDOptimizer(), ...), got {type(value).__name__}.")


# ------------------------------------------------------------------------------------------------
# eigenpairs of the effective Hessian D H D (D = P^{-1/2})


class AbstractCentralFlowEigen(eqx.Module):
    r"""How [`central_flow`][] finds the top-$k$ eigenpairs of the effective Hessian
    $A = D H D$, $D = P^{-1/2}$ (a strategy object).

    `top(fn, w, d, k, v0)` takes the flat loss `fn(w)`, the point `w`, the diagonal `d` of $D$,
    `k` and a warm start `v0` (shape `(k, n)`: the previous eigenvectors; `None` at the start:
    a cold start) and returns
    `(lam, V, result)`: `lam` the `(k, k)` matrix $V^\top A V$ (diagonal, descending), `V` the
    `(n, k)` orthonormal eigenvectors, `result` a [`RESULTS`][] item. The derivatives of `lam`
    and `V` must be right (see [`DenseEigen`][]) or raise.
    """

    @abc.abstractmethod
    def top(self, fn: Callable, w: Array, d: Array, k: int,
            v0: Array | None) -> tuple[Array, Array, RESULTS]:
        """`(lam (k, k), V (n, k), result)` for $A = \\operatorname{diag}(d) H(w) \\operatorname{diag}(d)$
        at a save point (`v0`: the previous save point's eigenvectors, or `None`)."""

    @abc.abstractmethod
    def field_top(self, fn: Callable, w: Array, d: Array, k: int,
                  v0: Array) -> tuple[Array, Array, RESULTS]:
        """The same at an evaluation of the field between two save points (`v0`: the last save
        point's eigenvectors): `top` itself, or a cheaper update from `v0`."""


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _top_subspace(A: Array, k: int) -> tuple[Array, Array]:
    """The top-`k` eigenpairs of the symmetric `A` as `(diag(lam), V)`, with the derivative of the
    subspace (see `DenseEigen`)."""
    vals, vecs = jnp.linalg.eigh(A)
    return jnp.diag(vals[::-1][:k]), vecs[:, ::-1][:, :k]


@_top_subspace.defjvp
def _top_subspace_jvp(k, primals, tangents):
    (A,), (dA,) = primals, tangents
    vals, vecs = jnp.linalg.eigh(A)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    lam, V, mu, C = vals[:k], vecs[:, :k], vals[k:], vecs[:, k:]
    dAV = dA @ V
    M = V.T @ dAV
    M = 0.5 * (M + M.T)
    # inside the subspace: the eigenvector rotation between separated eigenvalues (an active and
    # an inactive one must rotate into each other), none between (nearly) equal ones (the gauge)
    gap = lam[None, :] - lam[:, None]
    sep = jnp.abs(gap) > _SEPARATED * (1.0 + jnp.max(jnp.abs(lam)))
    omega = jnp.where(sep, M / jnp.where(sep, gap, 1.0), 0.0)
    dlam = M + omega.T * lam[None, :] + lam[:, None] * omega  # V^T dA V + Om^T L + L Om
    dV = C @ ((C.T @ dAV) / (lam[None, :] - mu[:, None])) + V @ omega
    return (jnp.diag(lam), V), (dlam, dV)


class DenseEigen(AbstractCentralFlowEigen):
    r"""The dense effective Hessian (`jax.hessian`, $n$ HVPs) and `jnp.linalg.eigh`: for small
    parameter counts (the default up to 256 parameters).

    **Derivatives:** the rotation out of the top-$k$ subspace,
    $\sum_{j > k} c_j\, c_j^\top dA\, v_i / (\lambda_i - \mu_j)$, and inside it the rotation
    $v_j\, v_j^\top dA\, v_i / (\lambda_i - \lambda_j)$ between separated eigenvalues only; for
    (nearly) equal ones none, with the full block $d\Lambda_{ij} = v_i^\top dA\, v_j$ instead.
    The flow is covariant under rotations among eigenvectors that are all active (or all
    inactive), so this is the exact derivative of the flow whenever
    $\lambda_k > \lambda_{k+1}$, also when eigenvalues at the edge coincide (two at 2).
    """

    def top(self, fn, w, d, k, v0):
        H = jax.hessian(fn)(w)
        A = d[:, None] * (0.5 * (H + H.T)) * d[None, :]
        lam, V = _top_subspace(A, k)
        ok = jnp.all(jnp.isfinite(lam))
        return lam, V, RESULTS.where(ok, RESULTS.successful, RESULTS.nonfinite_curvature)

    def field_top(self, fn, w, d, k, v0):
        return self.top(fn, w, d, k, v0)


@eqx.filter_custom_jvp
def _no_derivative(x, operands):
    return x


@_no_derivative.def_jvp
def _no_derivative_jvp(primals, tangents):
    if any(t is not None for t in jax.tree_util.tree_leaves(tangents)):
        raise TypeError(
            "`central_flow(..., eigen=LanczosEigen(...))` is not differentiable: Lanczos gives no "
            "derivative of the eigenvectors. Differentiate with `eigen=DenseEigen()` (small models).")
    x = primals[0]
    return x, jax.tree_util.tree_map(jnp.zeros_like, x)


class LanczosEigen(AbstractCentralFlowEigen):
    r"""Lanczos ([`jaxdyn.curvature.top_eigenvalues`][]) on the matrix-free effective Hessian
    $v \mapsto D\,H(Dv)$, warm-started from the previous save point's eigenvectors.

    - `n_steps`: the most Lanczos steps (default: `top_eigenvalues`'s);
    - `tol`: its relative residual tolerance (default: `top_eigenvalues`'s).

    **Derivatives:** not provided (Lanczos gives none for the eigenvectors): differentiating a
    flow that uses this strategy raises a `TypeError`. Use [`DenseEigen`][] to differentiate.
    """

    n_steps: int | None = eqx.field(static=True, default=None)
    tol: float | None = eqx.field(static=True, default=None)

    def top(self, fn, w, d, k, v0):
        mv = lambda v: d * hvp(fn, w, d * v)  # noqa: E731
        op = lx.FunctionLinearOperator(mv, jax.ShapeDtypeStruct(w.shape, w.dtype), lx.symmetric_tag)
        res = _curvature.top_eigenvalues(op, k, v0=v0, n_steps=self.n_steps, tol=self.tol,
                                         throw=False)
        lam = lax.stop_gradient(jnp.diag(res.eigenvalues))
        V = lax.stop_gradient(res.eigenvectors.T)
        lam, V = _no_derivative((lam, V), (w, d, eqx.filter_closure_convert(fn, w)))
        return lam, V, res.result

    def field_top(self, fn, w, d, k, v0):
        return self.top(fn, w, d, k, v0)


class RitzEigen(AbstractCentralFlowEigen):
    r"""Lanczos at the save points, and in between (at every evaluation of the field) the
    Rayleigh-Ritz pairs of the $2k$-dimensional space $\operatorname{span}\{V, AV\}$ of the last
    save point's eigenvectors $V$: $2k$ HVPs per evaluation instead of a Lanczos run (one block
    Krylov step from a good start; the paper's code uses the cruder $u_i^\top A u_i$ of the
    stale $u_i$ between eigen-solves). For large models, with a short save interval `every`.

    - `lanczos`: the [`LanczosEigen`][] run at the save points.

    **Derivatives:** not provided (as [`LanczosEigen`][]): differentiating raises a `TypeError`.
    """

    lanczos: LanczosEigen = LanczosEigen()

    def top(self, fn, w, d, k, v0):
        return self.lanczos.top(fn, w, d, k, v0)

    def field_top(self, fn, w, d, k, v0):
        w_, d_ = lax.stop_gradient(w), lax.stop_gradient(d)
        mv = jax.vmap(lambda v: d_ * hvp(fn, w_, d_ * v), in_axes=1, out_axes=1)
        V = v0.T
        AV = mv(V)
        Z = jnp.concatenate([V, AV - V @ (V.T @ AV)], axis=1)  # V and its residuals
        AZ = jnp.concatenate([AV, mv(Z[:, k:])], axis=1)
        g, E = jnp.linalg.eigh(Z.T @ Z)  # an orthonormal basis of span Z, dropping null directions
        keep = g > 1e-12 * jnp.max(g)
        scale = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, g, 1.0)), 0.0)
        B = (Z @ (E * scale)).T @ (AZ @ (E * scale))
        B = 0.5 * (B + B.T)
        both = keep[:, None] & keep[None, :]
        floor = -10.0 * (jnp.max(jnp.abs(B)) + 1.0)  # dropped directions sink below every pair
        B = jnp.where(both, B, 0.0) + jnp.diag(jnp.where(keep, 0.0, floor))
        vals, vecs = jnp.linalg.eigh(B)
        lam, Vn = jnp.diag(vals[::-1][:k]), Z @ ((E * scale) @ vecs[:, ::-1][:, :k])
        lam, Vn = _no_derivative((lam, Vn), (w, d, eqx.filter_closure_convert(fn, w)))
        ok = jnp.all(jnp.isfinite(lam))
        return lam, Vn, RESULTS.where(ok, RESULTS.successful, RESULTS.nonfinite_curvature)


def _eigen(value, size: int) -> AbstractCentralFlowEigen:
    if value is None:
        return DenseEigen() if size <= _DENSE_MAX else LanczosEigen()
    if isinstance(value, AbstractCentralFlowEigen):
        return value
    raise TypeError("`eigen` must be None, DenseEigen() or LanczosEigen(...) (an "
                    f"AbstractCentralFlowEigen), got {type(value).__name__}.")


def _sdcp(value) -> AbstractComplementaritySolver:
    if value is None:
        return SemismoothNewton()
    if isinstance(value, AbstractComplementaritySolver):
        return value
    raise TypeError("`sdcp` must be None or an AbstractComplementaritySolver (e.g. "
                    f"SemismoothNewton()), got {type(value).__name__}.")


# ------------------------------------------------------------------------------------------------
# the field


class _FlatLoss(eqx.Module):
    loss: Callable
    flattener: Flattener

    def __call__(self, w, data):
        return self.loss(self.flattener.unravel(w), *data)


class _Problem(eqx.Module):
    """The static pieces of one run."""

    loss: _FlatLoss
    opt: AbstractCentralFlowOptimizer
    eigen: AbstractCentralFlowEigen
    sdcp: AbstractComplementaritySolver
    k: int = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)


class _Parts(eqx.Module):
    """The central-flow field at one point, with what the outputs need."""

    dw: Array
    ds: Array
    loss: Array
    p: Array  # (n,) the preconditioner's diagonal
    lam: Array  # (k, k) effective eigenvalue block
    V: Array  # (n, k)
    U: Array  # (n, k), P-orthonormal
    S: Array  # (k, k)
    active: Array  # (k,) bool
    code: RESULTS


def _third(fn, w, U):
    """`T[a, b] = grad_w (u_a^T H(w) u_b)` for all pairs, shape `(k, k, n)` (JVPs of HVPs over the
    k(k+1)/2 pairs a <= b)."""
    k = U.shape[1]
    ia, ib = (x.astype(np.int32) for x in np.triu_indices(k))  # int32: also with x64 off
    one = lambda ua, ub: jax.jvp(lambda z: hvp(fn, z, ub), (w,), (ua,))[1]  # noqa: E731
    upper = jax.vmap(one)(U[:, ia].T, U[:, ib].T)
    T = jnp.zeros((k, k, w.shape[0]), w.dtype).at[ia, ib].set(upper)
    return T.at[ib, ia].set(upper)


def _state_second(rate, s, g, HU):
    """`F[a, b] = 1/2 D_g^2 f(s, g)[h_a, h_b]`, shape `(k, k, m)` (the oscillations' effect on the
    state velocity)."""
    k = HU.shape[1]
    ia, ib = (x.astype(np.int32) for x in np.triu_indices(k))  # int32: also with x64 off

    def one(ha, hb):
        inner = lambda gg: jax.jvp(lambda x: rate(s, x), (gg,), (hb,))[1]  # noqa: E731
        return 0.5 * jax.jvp(inner, (g,), (ha,))[1]

    upper = jax.vmap(one)(HU[:, ia].T, HU[:, ib].T)
    F = jnp.zeros((k, k, s.shape[0]), s.dtype).at[ia, ib].set(upper)
    return F.at[ib, ia].set(upper)


def _stable_velocity(problem: _Problem, w, s, lr, data):
    """The stable flow's velocity $(-P^{-1} g, f(s, g))$, with the loss, gradient and $p$."""
    loss, g = jax.value_and_grad(problem.loss)(w, data)
    p = problem.opt.preconditioner(s, lr, w)
    return loss, g, p, -g / p, problem.opt.rate(s, g)


def _field_parts(problem: _Problem, w, s, lr, data, warm, *, stable: bool, at_save: bool) -> _Parts:
    """The velocity `(dw, ds)` at `(w, s)` and the pieces of the outputs. `warm = (V0, S0)`: the
    previous eigenvectors `(n, k)` and `S` (warm starts, no derivative flows through them)."""
    V0, S0 = jax.tree_util.tree_map(lax.stop_gradient, warm)  # V0: None for a cold start
    opt, k = problem.opt, problem.k
    fn = lambda z: problem.loss(z, data)  # noqa: E731
    loss, g, p, dw0, f0 = _stable_velocity(problem, w, s, lr, data)
    pinv = 1.0 / p
    d = jnp.sqrt(pinv)
    solve = problem.eigen.top if at_save else problem.eigen.field_top
    lam, V, code = solve(fn, w, d, k, None if V0 is None else V0.T)
    U = d[:, None] * V
    zero = jnp.zeros((k, k), w.dtype)
    if stable:
        return _Parts(dw0, f0, loss, p, lam, V, U, zero, jnp.zeros((k,), bool), code)
    diag = jnp.diagonal(lam)
    active = diag >= problem.threshold
    T = _third(fn, w, U)  # (k, k, n)
    HU = (p[:, None] * U) @ lam  # H U = P U Lambda
    F = _state_second(opt.rate, s, g, HU)  # (k, k, m)
    p_of = lambda z: opt.preconditioner(z, lr, w)  # noqa: E731
    dp0 = jax.jvp(p_of, (s,), (f0,))[1]
    dpF = jax.vmap(jax.vmap(lambda x: jax.jvp(p_of, (s,), (x,))[1]))(F)  # (k, k, n)
    # d/dt U^T A U = 2 U^T dP/dt U - U^T dH/dt U = a + B(S)
    a = 2.0 * jnp.einsum("na,nb,n->ab", U, U, dp0) - jnp.einsum("abn,n->ab", T, dw0)
    B = (2.0 * jnp.einsum("na,nb,ijn->abij", U, U, dpF)
         + 0.5 * jnp.einsum("abn,ijn->abij", T, pinv * T))
    q = problem.gamma * (2.0 * jnp.eye(k, dtype=w.dtype) - lam) + a
    both = active[:, None] & active[None, :]
    eye = jnp.eye(k, dtype=w.dtype)
    q = jnp.where(both, q, eye)
    B = jnp.where(both[:, :, None, None] & both[None, None, :, :], B, 0.0)
    S, sdcp_code = problem.sdcp.solve(q, B, jnp.where(both, S0, 0.0))
    S = jnp.where(both, S, 0.0)
    code = RESULTS.where(code == RESULTS.successful, sdcp_code, code)
    dw = dw0 - 0.5 * pinv * jnp.einsum("ij,ijn->n", S, T)
    ds = f0 + jnp.einsum("ij,ijm->m", S, F)
    return _Parts(dw, ds, loss, p, lam, V, U, S, active, code)


class _Field(eqx.Module):
    problem: _Problem
    stable: bool = eqx.field(static=True)

    def __call__(self, t, y, args):
        w, s = y
        lr, data, warm = args
        if self.stable:
            return _stable_velocity(self.problem, w, s, lr, data)[3:]
        parts = _field_parts(self.problem, w, s, lr, data, warm, stable=self.stable, at_save=False)
        return parts.dw, parts.ds


# ------------------------------------------------------------------------------------------------
# the run


class _RK4(diffrax.AbstractERK):
    """Classical RK4 (tableau `jaxdyn._kernels.RK4`), fixed steps."""

    tableau: ClassVar[diffrax.ButcherTableau] = _RK4_TABLEAU.to_diffrax()
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


class _Config(eqx.Module):
    """The static settings of one run."""

    n_steps: int = eqx.field(static=True)
    every: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    stable: bool = eqx.field(static=True)
    compare: bool = eqx.field(static=True)
    progress: bool = eqx.field(static=True)


class _Integrator(eqx.Module):
    solver: Any
    controller: Any
    adjoint: Any


class _Save(eqx.Module):
    """One save point."""

    w: Array
    s: Array
    loss: Array
    predicted: Array
    eigenvalues: Array
    sigma: Array
    sharpness: Array
    n_active: Array
    edge: Array


def _save_point(problem: _Problem, parts: _Parts, w, s, lr, sharp) -> _Save:
    lam = jnp.diagonal(parts.lam)
    predicted = parts.loss + 0.5 * jnp.trace(parts.S @ parts.lam)
    G = parts.U.T @ parts.U  # Sigma = U S U^T: its eigenvalues are those of G^(1/2) S G^(1/2)
    gv, gq = jnp.linalg.eigh(0.5 * (G + G.T))
    root = (gq * jnp.sqrt(jnp.maximum(gv, 0.0))) @ gq.T
    sigma = jnp.linalg.eigvalsh(root @ parts.S @ root)[::-1]
    return _Save(w, s, parts.loss, predicted, lam, sigma, sharp, jnp.sum(parts.active),
                 problem.opt.edge(s, lr))


def _sharpness(problem: _Problem, parts: _Parts, w, data, v0):
    """The raw sharpness: the effective one times $p$ for an isotropic preconditioner, else one
    more eigen-solve on the raw Hessian (warm-started from `v0`, `(1, n)` or `None`)."""
    if problem.opt.isotropic():
        return parts.lam[0, 0] * parts.p[0], v0, RESULTS.successful
    fn = lambda z: problem.loss(z, data)  # noqa: E731
    lam, V, code = problem.eigen.top(fn, w, jnp.ones_like(w), 1, v0)
    return lam[0, 0], V.T, code


def _check_state(loss, w, code):
    code = RESULTS.where((code == RESULTS.successful) & ~jnp.isfinite(loss), RESULTS.nonfinite_loss, code)
    return RESULTS.where((code == RESULTS.successful) & ~jnp.all(jnp.isfinite(w)),
                         RESULTS.nonfinite_parameters, code)


def _run_flow(cfg: _Config, problem: _Problem, integ: _Integrator, w0, s0, lr, data):
    """The central (or stable) flow: a `lax.scan` over the save intervals, each one
    `diffeqsolve` warm-started from the previous save point's eigenvectors and `S`."""
    stable = cfg.stable
    term = diffrax.ODETerm(_Field(problem, stable))
    k = problem.k

    def at_point(w, s, warm, vraw):
        parts = _field_parts(problem, w, s, lr, data, warm, stable=stable, at_save=True)
        sharp, vraw, scode = _sharpness(problem, parts, w, data, vraw)
        save = _save_point(problem, parts, w, s, lr, sharp)
        code = RESULTS.where(parts.code == RESULTS.successful, scode, parts.code)
        # a blown-up state first: its non-finite curvature is a consequence, not the cause
        state = _check_state(parts.loss, w, RESULTS.successful)
        return save, (parts.V, parts.S), vraw, RESULTS.where(state == RESULTS.successful, code, state)

    save0, warm0, vraw0, code0 = at_point(w0, s0, (None, jnp.zeros((k, k), w0.dtype)), None)
    if vraw0 is None:  # isotropic: no raw eigenvector carried
        vraw0 = jnp.zeros((0,), w0.dtype)

    def interval(carry, i):
        w, s, warm, vraw, code = carry
        t0 = (i * cfg.every).astype(w.dtype)
        sol = diffrax.diffeqsolve(term, integ.solver, t0, t0 + cfg.every, cfg.dt, (w, s),
                                  args=(lr, data, warm), stepsize_controller=integ.controller,
                                  max_steps=cfg.max_steps, throw=False, adjoint=integ.adjoint,
                                  saveat=diffrax.SaveAt(t1=True))
        w1, s1 = sol.ys[0][-1], sol.ys[1][-1]
        save, warm1, vraw1, code1 = at_point(w1, s1, warm, vraw)
        dcode = from_diffrax(sol.result)
        code1 = RESULTS.where(dcode == RESULTS.successful, code1, dcode)
        code = RESULTS.where(code == RESULTS.successful, code1, code)
        if cfg.progress:
            jax.debug.callback(_tick, i + 1)
        return (w1, s1, warm1, vraw1, code), save

    n_int = cfg.n_steps // cfg.every
    carry, saves = lax.scan(interval, (w0, s0, warm0, vraw0, code0), jnp.arange(n_int))
    saves = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), save0, saves)
    return saves, carry[-1]


def _run_discrete(cfg: _Config, problem: _Problem, w0, lr, data):
    """The discrete optimiser: every step's loss `(n_steps + 1,)` and the parameters at the save
    points `(T, n)`."""
    opt = problem.opt
    vg = jax.value_and_grad(lambda z: problem.loss(z, data))

    def step(carry, _):
        w, s = carry
        loss, g = vg(w)
        s = opt.update(s, g)
        return (w - g / opt.preconditioner(s, lr, w), s), loss

    def block(carry, _):
        carry, losses = lax.scan(step, carry, None, length=cfg.every)
        return carry, (losses, carry[0])

    (wN, _), (losses, ws) = lax.scan(block, (w0, opt.zero_state(w0)), None,
                                     length=cfg.n_steps // cfg.every)
    last = problem.loss(wN, data)
    return jnp.concatenate([losses.ravel(), last[None]]), jnp.concatenate([w0[None], ws])


def _run_stable_reference(cfg: _Config, problem: _Problem, w0, s0, lr, data):
    """The stable flow (Sigma = 0) for the comparison: adaptive Tsit5 (it stiffens as the
    sharpness grows past the edge), saved at the save times."""
    term = diffrax.ODETerm(_Field(problem, True))
    ts = jnp.arange(cfg.n_steps // cfg.every + 1, dtype=w0.dtype) * cfg.every
    sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, float(cfg.n_steps), 0.1, (w0, s0),
                              args=(lr, data, None),
                              stepsize_controller=_STABLE_CONTROLLER,
                              max_steps=64 * cfg.n_steps + 4096, throw=False,
                              saveat=diffrax.SaveAt(ts=ts))
    ws = sol.ys[0]
    losses = jax.vmap(lambda z: problem.loss(z, data))(ws)
    return ws, losses


@eqx.filter_jit
def _central_flow(cfg: _Config, problem: _Problem, integ: _Integrator, w0, lr, data):
    opt = problem.opt
    g0 = jax.grad(lambda z: problem.loss(z, data))(w0)
    s0 = opt.update(opt.zero_state(w0), g0)  # the paper's flows start after one state update
    saves, code = _run_flow(cfg, problem, integ, w0, s0, lr, data)
    # traced inputs (concrete ones were checked before tracing): the cause, not what followed
    finite = jnp.isfinite(lr) & jnp.all(jnp.isfinite(w0))
    for leaf in jax.tree_util.tree_leaves(data):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            finite = finite & jnp.all(jnp.isfinite(leaf))
    code = RESULTS.where(finite, RESULTS.where(lr > 0, code, RESULTS.invalid_step_size),
                         RESULTS.nonfinite_input)
    T = saves.loss.shape[0]
    nan_t = jnp.full((T,), jnp.nan, w0.dtype)
    if cfg.compare:
        gd_loss, gd_ws = _run_discrete(cfg, problem, w0, lr, data)
        gd_distance = jnp.linalg.norm(gd_ws - saves.w, axis=1)
        if cfg.stable:
            flow_loss, flow_distance = saves.loss, jnp.zeros((T,), w0.dtype)
        else:
            flow_ws, flow_loss = _run_stable_reference(cfg, problem, w0, s0, lr, data)
            flow_distance = jnp.linalg.norm(flow_ws - saves.w, axis=1)
    else:
        gd_loss = jnp.full((cfg.n_steps + 1,), jnp.nan, w0.dtype)
        gd_distance = flow_loss = flow_distance = nan_t
    return saves, code, gd_loss, gd_distance, flow_loss, flow_distance


# ------------------------------------------------------------------------------------------------
# the result and the entry point


def smooth_loss(losses, window: int) -> np.ndarray:
    r"""An optimiser's loss averaged over a centred window of `window` steps (even): at step $t$,
    $\frac{1}{W}[\tfrac12 L_{t - W/2} + L_{t - W/2 + 1} + \dots + L_{t + W/2 - 1} + \tfrac12 L_{t + W/2}]$
    (the trapezoid rule over $[t - W/2, t + W/2]$: a period-2 oscillation averages out exactly),
    `nan` within $W/2$ of either end. The smoothing of [`jaxdyn.plot.plot_central_flow`][] and of
    the `central-flow` experiment (plain NumPy: it reads a finished run's `gd_loss`).

    **Arguments:** `losses`: the loss at steps $0, 1, \dots$; `window`: $W$, even and $\ge 2$.

    **Returns:** an array of the same length.

    **Example:** `smooth_loss(res.gd_loss, 10)` for a [`CentralFlowResult`][] `res`.
    """
    losses = np.asarray(losses, dtype=float)
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2 or window % 2:
        raise ValueError(f"`window` must be an even int >= 2, got {window!r}.")
    half = int(window) // 2
    out = np.full(losses.shape, np.nan)
    if losses.size > window:
        weights = np.r_[0.5, np.ones(int(window) - 1), 0.5] / window
        out[half:losses.size - half] = np.convolve(losses, weights, mode="valid")
    return out


class CentralFlowResult(AbstractResult):
    r"""The central flow of [`central_flow`][], at the save times $t = 0, \text{every}, \dots,
    \text{n\_steps}$ (time in optimiser steps; `T = n_steps // every + 1` rows).

    - `ts (T,)`; `params`: the flow's parameters (the PyTree of `params`, leaves `(T, ...)`);
    - `loss (T,)`: $L(w)$; `predicted_loss (T,)`: $L(w) + \frac12\langle\Sigma, H(w)\rangle$,
      the predicted time-averaged loss of the optimiser;
    - `sharpness (T,)`: $\lambda_{\max}(H)$ of the raw Hessian; `threshold (T,)`: its edge
      $2/\eta$ for GD ($2(\sqrt\nu + \epsilon)/\eta$ for scalar RMSProp, `nan` for RMSProp);
    - `eigenvalues (T, k)`: the top-$k$ eigenvalues of the effective Hessian
      $P^{-1/2} H P^{-1/2}$ (GD: $\eta\lambda$), descending: the edge is at 2;
    - `sigma (T, k)`: the eigenvalues of $\Sigma$ (the predicted oscillation covariance, in
      parameter space), descending; `n_active (T,)`: eigenvalues in the complementarity problem;
    - `opt_state`: $\nu$ (`(T, 1)` scalar RMSProp, `(T, n)` RMSProp), `None` for GD; `lr`;
    - with `compare=True` (else `nan`): `gd_loss (n_steps + 1,)` the discrete optimiser's loss
      at every step, `gd_distance (T,)` $\|w_{\text{opt}}(t) - w_{CF}(t)\|$, `flow_loss (T,)`
      the stable flow's loss, `flow_distance (T,)` $\|w_{\text{stable}}(t) - w_{CF}(t)\|$;
    - `result`: a [`RESULTS`][] item.
    """

    ts: Array
    params: PyTree
    loss: Array
    predicted_loss: Array
    sharpness: Array
    eigenvalues: Array
    sigma: Array
    n_active: Array
    opt_state: Array | None
    lr: Array
    threshold: Array
    gd_loss: Array
    gd_distance: Array
    flow_loss: Array
    flow_distance: Array
    result: RESULTS

    def summary(self) -> str:
        """The final loss and predicted loss, the effective sharpness against the edge 2, the
        oscillation variance and the distances to the optimiser and to the stable flow."""
        ts = np.asarray(self.ts)
        lines = [f"CentralFlowResult: {ts.shape[-1]} save points over {ts[..., -1].max():g} steps, "
                 f"lr = {np.asarray(self.lr).ravel()[0]:.4g}" + (" (batched)" if ts.ndim > 1 else "")]
        last = lambda x: np.asarray(x)[..., -1]  # noqa: E731
        lines.append(f"  final loss {np.nanmax(last(self.loss)):.6g}, predicted loss "
                     f"{np.nanmax(last(self.predicted_loss)):.6g}")
        eff = np.asarray(self.eigenvalues)[..., -1, 0]
        lines.append(f"  effective sharpness {np.nanmax(eff):.10g} (edge 2), sharpness "
                     f"{np.nanmax(last(self.sharpness)):.6g}, active {int(np.max(last(self.n_active)))}, "
                     f"sigma max {np.nanmax(np.asarray(self.sigma)[..., -1, :]):.3e}")
        gd, fl = np.asarray(self.gd_distance), np.asarray(self.flow_distance)
        if np.all(np.isnan(gd)):
            lines.append("  (compare=False: no optimiser / stable-flow comparison)")
        else:
            lines.append(f"  distance to the optimiser: max {np.nanmax(gd):.4g}; to the stable flow: "
                         f"max {np.nanmax(fl):.4g}")
            if not np.all(np.isfinite(np.asarray(self.gd_loss))) or not np.all(np.isfinite(gd)):
                lines.append("  the discrete optimiser diverged (non-finite loss or parameters)")
            if not np.all(np.isfinite(fl)):
                lines.append("  the stable-flow reference stopped (non-finite or out of solver steps)")
        if not np.all(np.asarray(self.successful)):
            lines.append(f"  result: {message(self.result)}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The paper's figure set; see [`jaxdyn.plot.plot_central_flow`][] (`ax`: four axes)."""
        from ..plot._central_flow import plot_central_flow

        return plot_central_flow(self, axes=ax, **kwargs)


def _integrator(solver, controller, dt, *, every: int, stable: bool):
    r"""The solver, controller, first step and step budget per save interval. Defaults: RK4 with
    `dt = 0.5` for the central flow; adaptive `Tsit5` for the stable flow (it stiffens past the
    edge: $\lambda_{\max}(P^{-1}H)$ grows without bound)."""
    if stable and solver is None and controller is None:
        solver, controller = diffrax.Tsit5(), _STABLE_CONTROLLER
    dt = 0.5 if dt is None else float(dt)
    controller = diffrax.ConstantStepSize() if controller is None else controller
    n_sub = math.ceil(every / dt)
    if isinstance(controller, diffrax.ConstantStepSize):  # forward and reverse mode
        max_steps, adjoint = n_sub + 2, diffrax.DirectAdjoint()
    else:  # reverse mode only (a bounded while loop)
        max_steps = 16 * n_sub + 64 if not stable else 64 * every + 4096
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    return _Integrator(_RK4() if solver is None else solver, controller, adjoint), dt, max_steps


def _check_settings(loss_fn, params, data, *, lr, k, n_steps, every, dt, threshold, solver,
                    stepsize_controller):
    check_params(params)
    check_data(data)
    check_loss(loss_fn, params, data)
    check_finite_now(params, "params")
    check_finite_now(data, "data")
    lr = check_lr(lr)
    k = check_int(k, "k")
    n_steps = check_int(n_steps, "n_steps")
    every = check_int(every, "every")
    if n_steps % every:
        raise ValueError(f"`n_steps` ({n_steps}) must be a multiple of `every` ({every}).")
    if dt is not None:
        if isinstance(dt, bool) or not isinstance(dt, int | float) or not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"`dt` must be a positive finite number or None, got {dt!r}.")
    if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or not (np.isfinite(threshold) and 0.0 < threshold <= 2.0)):
        raise ValueError(f"`threshold` must be a number in (0, 2] (the edge of stability is at 2), "
                         f"got {threshold!r}.")
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver, got {type(solver).__name__}.")
    if stepsize_controller is not None and not isinstance(stepsize_controller,
                                                          diffrax.AbstractStepSizeController):
        raise TypeError("`stepsize_controller` must be a diffrax step-size controller, got "
                        f"{type(stepsize_controller).__name__}.")
    return lr, k, n_steps, every


def central_flow(loss_fn: Callable, params: PyTree, *data, lr, optimizer="gd", k: int = 1,
                 n_steps: int, every: int = 1, dt: float | None = None,
                 solver: diffrax.AbstractSolver | None = None,
                 stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                 eigen: AbstractCentralFlowEigen | None = None,
                 sdcp: AbstractComplementaritySolver | None = None, threshold: float = 1.95,
                 compare: bool = True, stable: bool = False, progress: bool = False,
                 throw: bool = True) -> CentralFlowResult:
    r"""The central flow of gradient descent or RMSProp from `params` (Cohen, Damian et al.,
    ICLR 2025): the time-averaged trajectory of the optimiser at the edge of stability.

    For GD ($P = I/\eta$) the flow is
    $\frac{dw}{dt} = -\eta\big[\nabla L + \tfrac12\nabla\langle\Sigma, H\rangle\big]$ with
    $\Sigma \succeq 0$ on the top-$k$ eigenspace of $H$, chosen (by a $k\times k$ semidefinite
    complementarity problem) so that the eigenvalues that reach $2/\eta$ stay there; below the
    edge $\Sigma = 0$ and it is gradient flow. For one eigenvalue at the edge,
    $\sigma^2 = -2\langle\nabla S, \nabla L\rangle / \|\nabla S\|^2$. RMSProp: the preconditioned
    version with its state $\nu$ (see the module docstring for the formulation). Time is in
    optimiser steps; the flow runs over $[0, \text{n\_steps}]$ and is saved every `every` steps.

    **Arguments:**

    - `loss_fn`: `loss_fn(params, *data) -> scalar`; `params`: any PyTree (an Equinox model);
      `*data`: dataset arrays (full batch).
    - `lr`: the step size $\eta$ (may be traced: one compilation for all step sizes, `vmap`).
    - `optimizer`: `"gd"`, `"rmsprop_scalar"`, `"rmsprop"` or an
      [`AbstractCentralFlowOptimizer`][] (`GDOptimizer()`, `ScalarRMSPropOptimizer(beta2,
      eps)`, `RMSPropOptimizer(beta2, eps)`).
    - `k`: eigenpairs tracked (the most eigenvalues that can be at the edge at once).
    - `n_steps`, `every`: the horizon and the save interval (`n_steps % every == 0`).
    - `dt`: the integrator's step (default 0.5 steps); `solver`: a diffrax solver (default
      RK4); `stepsize_controller`: default `diffrax.ConstantStepSize()` (a
      `diffrax.PIDController` with an adaptive solver works too).
    - `eigen`: [`DenseEigen`][]`()` (exact, differentiable), [`LanczosEigen`][]`(...)`
      (warm-started Lanczos at every field evaluation) or [`RitzEigen`][]`(...)` (Lanczos at the
      save points, Rayleigh-Ritz in between: cheapest, approximate); `None`: dense up to 256
      parameters, else `LanczosEigen()`.
    - `sdcp`: the complementarity solver (an `AbstractComplementaritySolver`; `None`:
      `SemismoothNewton()`).
    - `threshold`: effective eigenvalues at or above it enter the complementarity problem.
    - `compare`: also run the discrete optimiser and the stable flow from the same point.
    - `stable`: run the stable flow ($\Sigma = 0$: gradient flow for GD) instead.
    - `progress`: a tqdm bar over the save intervals (a host callback from the compiled loop;
      under an outer `jit` the bar is created when `central_flow` is traced).
    - `throw`: raise on failure (`True`) or return the code in `.result` (`False`).

    **Returns:** a [`CentralFlowResult`][].

    **Derivatives:** with `eigen=DenseEigen()`, differentiable in `lr`, `params` and `data`
    through the integration (exact derivatives of the discretised flow: the top-$k$ subspace by
    perturbation theory, $S$ by the SDCP solver's implicit derivatives): reverse mode always,
    forward mode with fixed steps (the default; diffrax's `DirectAdjoint`). With `LanczosEigen`
    or `RitzEigen` differentiating raises a `TypeError` (no eigenvector derivatives).

    **Defaults, measured** (float64; errors against a tight adaptive reference): RK4 with
    `dt = 0.5` (8 field evaluations per step) holds the active eigenvalues at 2 to $10^{-9}$ and
    gets the trajectory to $10^{-5}$..$10^{-3}$ (the field has a kink where an eigenvalue
    reaches the edge, which caps every fixed-step method's order); the paper's Euler with
    `dt = 0.25` (4 evaluations) is 10-30x less accurate; `diffrax.Tsit5()` with
    `diffrax.PIDController(rtol=1e-6, atol=1e-9)` is 10-1000x more accurate at a similar cost on
    a small MLP (holding 2 to about $10^{-7}$ only: the step grows once the flow settles).

    **Example:**

    ```python
    def loss(p, _):
        x, y = p
        return 0.5 * (1 + x**2) * y**2 + 0.5 * (x - 3.0) ** 2

    res = central_flow(loss, jnp.array([0.5, 1.0]), jnp.zeros((1,)), lr=0.25, n_steps=200)
    res.eigenvalues[:, 0]   # the effective sharpness: rises to 2 and stays there
    res.sigma[:, 0]         # the oscillation variance, 0 before the edge
    res.predicted_loss      # against res.gd_loss (the discrete GD loss every step)
    ```
    """
    check_throw(throw)
    lr, k, n_steps, every = _check_settings(loss_fn, params, data, lr=lr, k=k, n_steps=n_steps,
                                            every=every, dt=dt, threshold=threshold, solver=solver,
                                            stepsize_controller=stepsize_controller)
    for name, flag in (("compare", compare), ("stable", stable), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be a bool, got {type(flag).__name__}.")
    opt = _optimizer(optimizer)
    arrays, loss, static = split_params(loss_fn, params)
    w0, flattener = flatten(arrays)
    if k > w0.shape[0]:
        raise ValueError(f"`k` ({k}) must be at most the number of parameters ({w0.shape[0]}).")
    problem = _Problem(_FlatLoss(loss, flattener), opt, _eigen(eigen, w0.shape[0]), _sdcp(sdcp), k,
                       float(threshold), _RESTORING_RATE)
    integ, dt, max_steps = _integrator(solver, stepsize_controller, dt, every=every, stable=stable)
    cfg = _Config(n_steps, every, dt, max_steps, stable, compare, progress)
    lr_arr = jnp.asarray(lr, w0.dtype)
    if progress:
        from tqdm.auto import tqdm

        _BAR["bar"] = tqdm(total=n_steps // every, desc="central_flow", unit="interval", leave=False)
    try:
        saves, code, gd_loss, gd_dist, flow_loss, flow_dist = _central_flow(cfg, problem, integ, w0,
                                                                            lr_arr, data)
        if progress:
            jax.block_until_ready(saves.loss)
    finally:
        bar = _BAR.pop("bar", None)
        if bar is not None:
            bar.close()
    unravel = jax.vmap(flattener.unravel)
    out = CentralFlowResult(
        ts=jnp.arange(n_steps // every + 1, dtype=w0.dtype) * every,
        params=eqx.combine(unravel(saves.w), static),
        loss=saves.loss, predicted_loss=saves.predicted, sharpness=saves.sharpness,
        eigenvalues=saves.eigenvalues, sigma=saves.sigma, n_active=saves.n_active,
        opt_state=None if saves.s.shape[-1] == 0 else saves.s, lr=lr_arr,
        threshold=saves.edge, gd_loss=gd_loss, gd_distance=gd_dist, flow_loss=flow_loss,
        flow_distance=flow_dist, result=code)
    return raise_if_failed(out, out.result, throw,
                           hint="(`central_flow`: pass `throw=False` to get the flow up to the "
                                "failure with the code in `.result`.)")
