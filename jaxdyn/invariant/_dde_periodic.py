r"""Periodic orbits of delay differential equations by Fourier pseudo-spectral collocation.

A $T$-periodic solution of the autonomous delay equation
$x'(t) = f(t, x(t), (x(t - \tau_1), \dots, x(t - \tau_m)), \text{args})$ is a periodic function, so
its delayed values close on one period: $x(t - \tau) = x((t - \tau) \bmod T)$. In scaled time
$s = t / T \in [0, 1)$ the unknowns are the values $X_j = x(s_j)$ at $N$ equispaced points
$s_j = j / N$ and the period $T$; with the discrete Fourier coefficients $c_k$ of $X$,

- the derivative is $x'(s_j) = \sum_k 2\pi i k\, c_k e^{2\pi i k s_j}$ (FFT differentiation),
- a delayed value is the trigonometric interpolant shifted exactly:
  $x(s_j - \tau/T) = \sum_k c_k e^{-2\pi i k \tau / T} e^{2\pi i k s_j}$,
- the residual is $x'(s_j) - T f(T s_j, X_j, (x(s_j - \tau_i/T))_i)$ at the $N$ points, closed by
  the integral phase condition $\int_0^1 \langle x(s), x_{\rm ref}'(s) \rangle\, ds = 0$ against a
  reference orbit (the guess, or the last point of a branch).

For even $N$ the Nyquist mode $k = N/2$ is not a free mode: the derivative annihilates it, so its
collocation equation would degenerate to $-T \hat f_{N/2}$, whose linearisation carries the factor
$\cos(\pi N \tau / T)$ and changes sign along a branch (a spurious branch point of the discrete
problem). Its equation is replaced by "the Nyquist coefficient of $X$ vanishes".

Why this and not DDE-BIFTOOL's piecewise polynomial collocation: a periodic orbit of a DDE with
constant delays is as smooth as $f$ (analytic for analytic $f$), and on a periodic function the
trigonometric interpolant converges geometrically in $N$ while needing no mesh, no mesh adaptation
and no interpolation of the delayed argument into mesh intervals: the delay is one exact phase
factor per Fourier mode, and every operator is an FFT. The limit: a cycle with steep fronts (very
stiff or nearly non-smooth dynamics, e.g. Mackey-Glass with a large exponent near relaxation) has
slowly decaying coefficients and needs many more points; piecewise collocation with an adapted mesh
is then the better tool. The Fourier coefficients of `values` (their tail) and a comparison at two
values of `n_points` say when that happens.

The Floquet multipliers (the `spectrum` of [`DDEPeriodicOrbitProblem`][], `multipliers` of the
result) are the eigenvalues of a pseudo-spectral discretisation of the monodromy operator (after
Breda, Maset and Vermiglio): the history $\phi$ on $[-qT, 0]$ in $q$ pieces of one period
($q T \ge \tau_{\max}$), Chebyshev points of degree $M$ on each; the variational solution on
$[0, T]$ one Chebyshev polynomial collocated at the same points, with its delayed values
interpolated from itself or from the history; and the map $\phi \mapsto v_T$, whose pieces after
the first are the old pieces shifted by one period, node for node (exactly, so that a delay longer
than the period adds exact zero multipliers, not spurious ones). The eigenfunctions of the
monodromy are smooth (segments of Floquet solutions), so the dominant multipliers converge
spectrally in $M$. Dense `eigvals` of an $(qM + 1) n$ square matrix: meant for small $n$ (scalar
and low-dimensional delay equations, small neural DDEs), not for discretised fields.

Derivatives: implicit (the Newton solve is an `optx.root_find` with `ImplicitAdjoint`), so the
period, the orbit and the multipliers are differentiable with respect to `args`, the delays and
the parameters of a module `field`.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

from .._checks import check_int, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from .._types import Array
from ._branch import BranchStart
from ._branch_problems import AbstractSwitchableProblem
from ._dde_roots import DDEHopfResult, _check_field as _check_delay_field
from ._problems import AbstractBranchProblem, with_parameter

_HINT = ("(`dde_periodic_orbit`: pass `throw=False` to get the last Newton iterate with `result` and "
         "`residual_norm`.)")


# -- the Fourier operators ------------------------------------------------------------------------


def _wavenumbers(n_points: int) -> Array:
    return jnp.arange(n_points // 2 + 1)


def _derivative(values: Array) -> Array:
    """$dx/ds$ at the grid points of the trigonometric interpolant of `values` `(N, n)`."""
    n_points = values.shape[0]
    coeffs = jnp.fft.rfft(values, axis=0)
    k = _wavenumbers(n_points)[:, None]
    return jnp.fft.irfft(2j * jnp.pi * k * coeffs, n=n_points, axis=0)


def _shifted(values: Array, shifts: Array) -> Array:
    """$x(s_j - \\sigma_i)$ for each shift $\\sigma_i$ (scaled time): shape `(m, N, n)`."""
    n_points = values.shape[0]
    coeffs = jnp.fft.rfft(values, axis=0)
    phase = jnp.exp(-2j * jnp.pi * _wavenumbers(n_points)[None, :] * shifts[:, None])
    return jnp.fft.irfft(phase[:, :, None] * coeffs[None], n=n_points, axis=1)


def _interpolate(values: Array, s: Array) -> Array:
    """The trigonometric interpolant of `values` at arbitrary scaled times `s` (shape `(p,)`)."""
    return _shifted(values, -jnp.asarray(s))[:, 0, :]


def _fourier_derivatives(values: Array, s: Array) -> Array:
    """The interpolant and its first two derivatives in $s$ at the points `s` (shape `(p, n)`):
    shape `(3, p, n)`, by the direct sum over the modes (the Nyquist mode as a cosine)."""
    n_points = values.shape[0]
    coeffs = jnp.fft.rfft(values, axis=0)
    k = _wavenumbers(n_points)
    weight = jnp.where((k == 0) | (2 * k == n_points), 1.0, 2.0) / n_points
    wave = jnp.exp(2j * jnp.pi * k[None, None, :] * s[:, :, None])        # (p, n, K)
    terms = weight * coeffs.T[None] * wave
    factors = jnp.stack([jnp.ones_like(k), 2j * jnp.pi * k, -(2 * jnp.pi * k) ** 2])
    return jnp.real(jnp.einsum("dk,pnk->dpn", factors, terms))


def _extremes(values: Array, n_refine: int = 4) -> tuple[Array, Array]:
    """The maximum and minimum over one period of each component of the trigonometric interpolant:
    the best of 8 samples per grid interval, refined by Newton on $x'(s) = 0$. Shapes `(n,)`."""
    n_points = values.shape[0]
    fine_n = 8 * n_points
    coeffs = jnp.fft.rfft(values, axis=0)
    if n_points % 2 == 0:
        coeffs = coeffs.at[-1].multiply(0.5)                  # the Nyquist mode split into +-N/2
    padded = jnp.zeros((fine_n // 2 + 1, values.shape[1]), coeffs.dtype).at[: coeffs.shape[0]].set(coeffs)
    fine = jnp.fft.irfft(padded, n=fine_n, axis=0) * 8
    grid = jnp.arange(fine_n) / fine_n

    def refine(s):
        def step(s, _):
            _, d1, d2 = _fourier_derivatives(values, s[None])[:, 0]
            return s - jnp.where(d2 != 0, d1 / jnp.where(d2 != 0, d2, 1.0), 0.0), None

        s, _ = jax.lax.scan(step, s, None, length=n_refine)
        return _fourier_derivatives(values, s[None])[0, 0]

    top = refine(grid[jnp.argmax(fine, axis=0)])
    bottom = refine(grid[jnp.argmin(fine, axis=0)])
    return jnp.maximum(top, jnp.max(fine, axis=0)), jnp.minimum(bottom, jnp.min(fine, axis=0))


def _split(u: Array, n_points: int) -> tuple[Array, Array]:
    return u[:-1].reshape(n_points, -1), u[-1]


class _ConstantDelays(eqx.Module):
    """Delays that do not depend on `args` (an array given by the user)."""

    value: Array

    def __call__(self, args):
        return self.value


def _field_values(field, values, period, delays, args):
    """$f(T s_j, X_j, (x(s_j - \\tau_i / T))_i, \\text{args})$ at the $N$ grid points: `(N, n)`."""
    n_points = values.shape[0]
    delayed = _shifted(values, delays / period)
    times = period * jnp.arange(n_points) / n_points

    def one(t, y, yd):
        return field(t, y, tuple(yd[i] for i in range(delays.shape[0])), args)

    return jax.vmap(one, in_axes=(0, 0, 1))(times, values, delayed)


def _orbit_residual(field, delays_fn, u, args, u_ref, n_points):
    """The collocation residual and the phase condition, flat like `u`."""
    values, period = _split(u, n_points)
    delays = jnp.asarray(delays_fn(args), values.dtype)
    collocation = _derivative(values) - period * _field_values(field, values, period, delays, args)
    if n_points % 2 == 0:
        # the Nyquist mode: the derivative annihilates it, so its collocation equation degenerates
        # (to -T f_Nyquist, a factor cos(pi N tau / T) that changes sign along a branch); the
        # equation "Nyquist coefficient of X = 0" takes its place (X band-limited to |k| < N/2)
        spectrum = jnp.fft.rfft(collocation, axis=0)
        spectrum = spectrum.at[-1].set(jnp.fft.rfft(values, axis=0)[-1])
        collocation = jnp.fft.irfft(spectrum, n=n_points, axis=0)
    ref_values, _ = _split(u_ref, n_points)
    phase = jnp.mean(jnp.sum(values * _derivative(ref_values), axis=1))
    return jnp.concatenate([collocation.ravel(), phase[None]])


# -- Floquet multipliers: the discretised monodromy operator ----------------------------------------


def _chebyshev(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev points $\\cos(\\pi j / m)$ on $[-1, 1]$ (from 1 down to -1) and the differentiation
    matrix (Trefethen, Spectral Methods in MATLAB, `cheb`)."""
    x = np.cos(np.pi * np.arange(m + 1) / m)
    c = np.ones(m + 1)
    c[0] = c[-1] = 2.0
    c = c * (-1.0) ** np.arange(m + 1)
    dx = x[:, None] - x[None, :]
    d = np.outer(c, 1.0 / c) / (dx + np.eye(m + 1))
    d = d - np.diag(d.sum(axis=1))
    return x, d


def _barycentric(nodes: np.ndarray, points: Array) -> Array:
    """The Lagrange interpolation matrix `(p, m + 1)` from Chebyshev `nodes` to `points`."""
    m = nodes.shape[0] - 1
    w = (-1.0) ** np.arange(m + 1)
    w[0] *= 0.5
    w[-1] *= 0.5
    diff = points[:, None] - nodes[None, :]
    exact = jnp.abs(diff) < 1e-14
    safe = jnp.where(exact, 1.0, diff)
    terms = w[None, :] / safe
    mat = terms / jnp.sum(terms, axis=1, keepdims=True)
    hit = jnp.any(exact, axis=1, keepdims=True)
    return jnp.where(hit, exact.astype(mat.dtype), mat)


def _piece_index(n_cheb: int, n_pieces: int) -> np.ndarray:
    r"""Global node indices `(q, M + 1)` of the history pieces $[-(j+1)T, -jT]$, their shared end
    points counted once: piece 0 holds nodes `0..M` ($\theta = 0$ first), piece $j \ge 1$ reuses the
    last node of piece $j - 1$ and adds `M` new ones."""
    index = np.zeros((n_pieces, n_cheb + 1), dtype=int)
    index[0] = np.arange(n_cheb + 1)
    for j in range(1, n_pieces):
        index[j, 0] = index[j - 1, -1]
        index[j, 1:] = (n_cheb + 1) + (j - 1) * n_cheb + np.arange(n_cheb)
    return index


def _history_rows(x, lags, period, n_cheb, n_pieces):
    """The interpolation rows `(p, S)` from the history nodes to the (negative) times `lags`."""
    index = _piece_index(n_cheb, n_pieces)
    size = n_pieces * n_cheb + 1
    piece = jnp.clip(jnp.floor(-lags / period), 0, n_pieces - 1)
    rows = jnp.zeros((lags.shape[0], size), lags.dtype)
    for j in range(n_pieces):
        local = _barycentric(x, jnp.clip(2.0 * (lags + j * period) / period + 1.0, -1.0, 1.0))
        select = np.zeros((n_cheb + 1, size))
        select[np.arange(n_cheb + 1), index[j]] = 1.0
        rows = rows + jnp.where((piece == j)[:, None], local @ select, 0.0)
    return rows


def _monodromy(field, values, period, delays, args, n_cheb, n_pieces):
    r"""The discretised monodromy matrix `(S n, S n)`, `S = q M + 1`, of the variational equation
    along the orbit, on the history $[-qT, 0]$ in `q` pieces of one period (Chebyshev points of
    degree `M` on each; the variational solution on $[0, T]$ one polynomial on the same points, so
    that the shift of the history by one period is exact). NaN unless $\tau_{\max} \le qT$."""
    n = values.shape[1]
    m = n_cheb
    x, d = _chebyshev(m)
    size = n_pieces * m + 1
    t_nodes = period * (x + 1.0) / 2.0                     # solution nodes, T down to 0
    d_t = jnp.asarray(d) * 2.0 / period

    def jacobians(t):
        y = _interpolate(values, jnp.atleast_1d(t / period))[0]
        yd = tuple(_interpolate(values, jnp.atleast_1d((t - delays[i]) / period))[0]
                   for i in range(delays.shape[0]))
        jy, jd = jax.jacfwd(lambda a, b: field(t, a, b, args), argnums=(0, 1))(y, yd)
        return jy, jnp.stack(jd)

    colloc_t = t_nodes[:-1]                                # every node but t = 0
    a_mats, b_mats = jax.vmap(jacobians)(colloc_t)         # (m, n, n), (m, r, n, n)
    r = delays.shape[0]
    lag = (colloc_t[:, None] - delays[None, :]).ravel()    # (m r,): in the solution or the history
    in_sol = lag >= 0
    sol_rows = _barycentric(x, 2.0 * jnp.clip(lag, 0.0, None) / period - 1.0) * in_sol[:, None]
    hist_rows = _history_rows(x, jnp.minimum(lag, 0.0), period, m, n_pieces) * (~in_sol)[:, None]
    sol_rows, hist_rows = sol_rows.reshape(m, r, m + 1), hist_rows.reshape(m, r, size)
    eye = jnp.eye(n)
    lhs_rows = (jnp.kron(d_t[:-1], eye)
                - jnp.einsum("ij,iab->iajb", jnp.eye(m + 1)[:-1], a_mats).reshape(m * n, -1)
                - jnp.einsum("irj,irab->iajb", sol_rows, b_mats).reshape(m * n, -1))
    rhs_rows = jnp.einsum("irj,irab->iajb", hist_rows, b_mats).reshape(m * n, -1)
    # continuity at t = 0: v(0) = phi(0) (history node 0)
    lhs = jnp.concatenate([lhs_rows, jnp.kron(jnp.eye(m + 1)[-1:], eye)], axis=0)
    rhs = jnp.concatenate([rhs_rows, jnp.kron(jnp.eye(size)[:1], eye)], axis=0)
    solution = jnp.linalg.solve(lhs, rhs)                  # v at the solution nodes: the new piece 0
    # pieces j >= 1 of the new history: piece j - 1 of the old one, node for node
    shift = np.zeros((size, size))
    index = _piece_index(m, n_pieces)
    for j in range(1, n_pieces):
        shift[index[j, 1:], index[j - 1, 1:]] = 1.0
    mono = jnp.concatenate([solution, jnp.kron(jnp.asarray(shift[m + 1:]), eye)], axis=0)
    covered = jnp.max(delays) <= n_pieces * period * (1 + 1e-12)
    return jnp.where(covered, mono, jnp.nan)


def _multipliers(field, values, period, delays, args, n_cheb, n_pieces, n_keep):
    """The `n_keep` Floquet multipliers of largest modulus, by decreasing modulus (NaN when the
    history pieces do not cover the largest delay)."""
    mono = _monodromy(field, values, period, delays, args, n_cheb, n_pieces)
    bad = ~jnp.all(jnp.isfinite(mono))
    eigs = jnp.linalg.eigvals(jnp.where(bad, 0.0, mono))
    order = jnp.argsort(-jnp.abs(eigs))
    return jnp.where(bad, jnp.nan, eigs[order][:n_keep])


def _doubling_mode(field, values, period, delays, args, n_cheb, n_pieces):
    r"""The Floquet solution of the multiplier nearest $-1$ over $[0, 2T]$ at the $2N$ grid points,
    real, max-modulus 1: $v(t) = \mu \phi(t - T)$ on $[0, T]$ from the monodromy's eigenvector
    (piece 0 of the history), then $v(t + T) = -v(t)$."""
    n_points, n = values.shape
    mono = _monodromy(field, values, period, delays, args, n_cheb, n_pieces)
    eigs, vecs = jnp.linalg.eig(mono)
    i = jnp.argmin(jnp.abs(eigs + 1.0))
    phi = vecs[:, i].reshape(-1, n)[: n_cheb + 1]          # theta from 0 down to -T, Chebyshev points
    phi = phi * jnp.conj(phi.ravel()[jnp.argmax(jnp.abs(phi.ravel()))])
    x, _ = _chebyshev(n_cheb)
    t = period * jnp.arange(n_points) / n_points
    v = -(_barycentric(x, 2.0 * (t - period) / period + 1.0) @ phi).real
    w = jnp.concatenate([v, -v])
    return w / jnp.max(jnp.abs(w))


def _trivial_index(multipliers: Array) -> Array:
    return jnp.argmin(jnp.abs(multipliers - 1.0))


# -- the branch problem ---------------------------------------------------------------------------


def _as_delays(delays: Any) -> Callable:
    """A callable `args -> delays`; an array is checked (1-D, finite, positive) and wrapped."""
    if callable(delays):
        return delays
    try:
        value = jnp.asarray(delays)
    except TypeError as err:
        raise TypeError("`delays` must be a 1-D array of positive numbers or a callable args -> array, got "
                        f"{type(delays).__name__}.") from err
    if value.ndim != 1 or value.shape[0] == 0:
        raise ValueError(f"`delays` must be a non-empty 1-D array, got shape {value.shape}.")
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        value = value.astype(jnp.result_type(float))
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"`delays` must all be finite and > 0, got {arr}.")
    return _ConstantDelays(value)


def _check_n_points(n_points: Any) -> int:
    return check_int(n_points, "n_points", minimum=8)


class DDEPeriodicOrbitProblem(AbstractSwitchableProblem):
    r"""The periodic orbits of a delay equation as a branch problem for [`continuation`][]: the
    Fourier collocation residual of the module docstring, $G(u, p) = 0$ with
    $u = (X_{0}, \dots, X_{N-1}, T)$ flat (`values.ravel()` then the period).

    **Arguments:**

    - `field`: $f$, called as `field(t, y, y_delayed, args)` with `y` shape `(n,)` and `y_delayed` a
      tuple of arrays, one per delay in the order of `delays`; autonomous (the orbit's phase is
      free, `t` is passed as $T s$).
    - `delays`: a 1-D array of constant delays $\tau_i > 0$, or a callable `args -> array` (so that a
      delay can be the continuation parameter: `parameter=None`, `delays=lambda tau: jnp.array([tau])`).
    - `parameter`: how $p$ enters `args` (`(args, p) -> args`; `None`: `args` is $p$).
    - `n_points`: $N$, the number of collocation points per period ($\ge 8$; FFT-friendly sizes
      are fastest).
    - `n_multipliers`: how many Floquet multipliers `spectrum` returns (those of largest modulus,
      the trivial one included); `0` skips them (then the branch carries no stability).
    - `n_chebyshev`: $M$, the Chebyshev degree of the discretised monodromy operator on each piece
      of one period (the dominant multipliers converge spectrally in $M$; raise it for orbits
      with steep fronts).
    - `history_periods`: $q$, the history of the monodromy operator is $[-qT, 0]$ ($q$ pieces of
      one period); it must cover the largest delay, $\tau_{\max} \le qT$, else the multipliers
      are NaN (and no stability is detected).

    At a located period doubling, [`switch_branch`][] starts the doubled cycle (`switch`): the
    orbit traversed twice on $2N$ points plus `amplitude` times the Floquet solution of the
    multiplier $-1$ (antiperiodic over $T$, periodic over $2T$), period $2T$.

    `test_names` are `("period_doubling", "neimark_sacker")`: $\prod_i (\mu_i + 1)$ and
    $\prod_{i<j} (\mu_i \mu_j - 1)$ over the nontrivial multipliers of `spectrum` (real parts),
    each zero where a multiplier crosses $-1$, or a complex pair crosses the unit circle. With
    `n_multipliers = 0` both are the constant 1 (nothing is detected).
    """

    field: Callable
    delays: Callable
    parameter: Callable | None = None
    n_points: int = eqx.field(static=True, default=64)
    n_multipliers: int = eqx.field(static=True, default=6)
    n_chebyshev: int = eqx.field(static=True, default=64)
    history_periods: int = eqx.field(static=True, default=1)

    test_names = ("period_doubling", "neimark_sacker")

    def __init__(self, field: Callable, delays: Any, *, parameter: Callable | None = None,
                 n_points: int = 64, n_multipliers: int = 6, n_chebyshev: int = 64, history_periods: int = 1):
        if not callable(field):
            raise TypeError(f"`field` must be callable as field(t, y, y_delayed, args), got "
                            f"{type(field).__name__}.")
        if parameter is not None and not callable(parameter):
            raise TypeError(f"`parameter` must be None or a callable (args, p) -> args, got "
                            f"{type(parameter).__name__}.")
        self.field = field
        self.delays = _as_delays(delays)
        self.parameter = parameter
        self.n_points = _check_n_points(n_points)
        self.n_multipliers = check_int(n_multipliers, "n_multipliers", minimum=0)
        self.n_chebyshev = check_int(n_chebyshev, "n_chebyshev", minimum=4)
        self.history_periods = check_int(history_periods, "history_periods")

    def residual(self, u: Array, p: Array, args: Any, u_ref: Array) -> Array:
        return _orbit_residual(self.field, self.delays, u, with_parameter(self.parameter, args, p), u_ref,
                               self.n_points)

    def spectrum(self, u: Array, p: Array, args: Any) -> Array:
        if self.n_multipliers == 0:
            return jnp.zeros((0,), jnp.result_type(u.dtype, jnp.complex64))
        args = with_parameter(self.parameter, args, p)
        values, period = _split(u, self.n_points)
        delays = jnp.asarray(self.delays(args), values.dtype)
        return _multipliers(self.field, values, period, delays, args, self.n_chebyshev, self.history_periods,
                            self.n_multipliers)

    def n_unstable(self, spectrum: Array) -> Array:
        if spectrum.shape[0] == 0:
            return jnp.array(0, jnp.int32)
        nontrivial = jnp.arange(spectrum.shape[0]) != _trivial_index(spectrum)
        return jnp.sum(nontrivial & (jnp.abs(spectrum) > 1.0)).astype(jnp.int32)

    def test_functions(self, u: Array, p: Array, args: Any, spectrum: Array) -> Array:
        k = spectrum.shape[0]
        if k == 0:
            return jnp.ones((2,), u.dtype)
        nontrivial = jnp.arange(k) != _trivial_index(spectrum)
        pd = jnp.prod(jnp.where(nontrivial, spectrum + 1.0, 1.0)).real
        pairs = spectrum[:, None] * spectrum[None, :] - 1.0
        keep = nontrivial[:, None] & nontrivial[None, :] & (jnp.arange(k)[:, None] < jnp.arange(k)[None, :])
        ns = jnp.prod(jnp.where(keep, pairs, 1.0)).real
        return jnp.stack([pd, ns]).astype(u.dtype)

    def dimension(self, u: Array) -> int:
        return int(u.size)

    def switch(self, kind: str, u: Array, p: Array, args: Any, *,
               amplitude: float) -> tuple[AbstractBranchProblem, Array, Array, Array]:
        if kind != "period_doubling":
            raise ValueError(f"A cycle branch of a delay equation switches at a period doubling only, not at "
                             f"a {kind!r} point.")
        at_p = with_parameter(self.parameter, args, p)
        values, period = _split(u, self.n_points)
        delays = jnp.asarray(self.delays(at_p), values.dtype)
        w = _doubling_mode(self.field, values, period, delays, at_p, self.n_chebyshev, self.history_periods)
        doubled = DDEPeriodicOrbitProblem(self.field, self.delays, parameter=self.parameter,
                                          n_points=2 * self.n_points, n_multipliers=self.n_multipliers,
                                          n_chebyshev=2 * self.n_chebyshev,
                                          history_periods=self.history_periods)
        start = jnp.concatenate([values, values]) + amplitude * w
        u0 = jnp.concatenate([start.ravel(), 2 * period[None]])
        tangent = jnp.concatenate([w.ravel(), jnp.zeros(2, u.dtype)])
        return doubled, u0, p, tangent / jnp.linalg.norm(tangent)


# -- the one-shot solver --------------------------------------------------------------------------


class DDEPeriodicOrbitResult(AbstractResult):
    r"""A periodic orbit of a delay equation (returned by [`dde_periodic_orbit`][]).

    **Attributes:**

    - `values`: the orbit at $t_j = T j / N$, shape `(N, n)` (one period, $t_N = T$ left out).
    - `period`: $T$.
    - `amplitude`: $\max_t x_i - \min_t x_i$ per component, shape `(n,)` (over the grid).
    - `delays`: the delays at the solution, shape `(m,)` (for the delay embedding).
    - `multipliers`: the Floquet multipliers of largest modulus, trivial one included (shape `(k,)`,
      `k = n_multipliers`; empty when 0 were asked for).
    - `residual_norm`: the max-norm of the collocation residual and phase condition at the end.
    - `n_steps`: the Newton iterations taken.
    - `result`: `successful`, `not_converged` (Newton did not reach `tol` in `n_newton` steps) or
      `invalid_period` (the period became non-positive or non-finite, or the orbit collapsed to an
      equilibrium: amplitude below `1e-8` of the state's scale).
    """

    values: Array
    period: Array
    amplitude: Array
    delays: Array
    multipliers: Array
    residual_norm: Array
    n_steps: Array
    result: RESULTS

    def evaluate(self, t) -> Array:
        """The orbit at times `t` (any shape; periodic, by trigonometric interpolation): `(*t.shape, n)`."""
        t = jnp.asarray(t, self.values.dtype)
        out = _interpolate(self.values, jnp.ravel(t) / self.period)
        return out.reshape(t.shape + out.shape[1:])

    def summary(self) -> str:
        """The period, the amplitude, the residual, the multipliers and the result."""
        period = np.asarray(self.period)
        if period.ndim:
            ok = np.ravel(np.asarray(self.successful))
            good = np.ravel(period)[ok]
            span = f"period from {good.min():.10g} to {good.max():.10g}" if good.size else "no orbit found"
            return (f"{period.size} DDE periodic orbits (batched; index one for details): {int(ok.sum())} "
                    f"successful, {span}.\nresult: {message(self.result)}")
        amp = np.atleast_1d(np.asarray(self.amplitude))
        lines = [f"DDE periodic orbit ({self.values.shape[-2]} Fourier points, state dimension "
                 f"{self.values.shape[-1]}, delays {np.array2string(np.asarray(self.delays), precision=6)}):",
                 f"period T = {float(period):.10g}, amplitude (max - min) "
                 f"{np.array2string(amp[:6], precision=6)}" + (" ..." if amp.size > 6 else ""),
                 f"residual norm {float(self.residual_norm):.3g} after {int(self.n_steps)} Newton steps"]
        mult = np.asarray(self.multipliers)
        if mult.size:
            moduli = np.array2string(np.abs(mult)[:6], precision=6)
            lines.append(f"Floquet multipliers |mu|: {moduli}")
        lines.append(f"result: {message(self.result)}")
        return "\n".join(lines)

    def plot(self, ax=None, *, embedding: bool = False, **kwargs):
        """One period of the orbit against $t$ (every component), or with `embedding=True` the delay
        embedding $x_0(t)$ against $x_0(t - \\tau_1)$; returns the axes."""
        from ..plot._dde_periodic import plot_dde_periodic_orbit

        return plot_dde_periodic_orbit(self, ax=ax, embedding=embedding, **kwargs)


def _newton_fn(u, ctx):
    problem, args, u_ref = ctx
    return problem.residual(u, args, None, u_ref)


def _guess_values(guess: Any, n_points: int) -> Array:
    """The initial values `(N, n)` from an array or a callable `s -> x` on [0, 1)."""
    if callable(guess):
        s = jnp.arange(n_points) / n_points
        try:
            values = jax.vmap(guess)(s)
        except Exception as err:  # noqa: BLE001 - any failure is a mismatch of `guess`
            raise ValueError(f"`guess` must be an array (N, n) or a callable s -> x (shape (n,)); calling it "
                             f"failed with {type(err).__name__}: {err}") from err
    else:
        try:
            values = jnp.asarray(guess)
        except TypeError as err:
            raise TypeError(f"`guess` must be an array of shape (n_points, n) or a callable s -> x, got "
                            f"{type(guess).__name__}.") from err
    if values.ndim != 2 or values.shape[0] != n_points or values.shape[1] == 0:
        raise ValueError(f"`guess` must have shape (n_points, n) = ({n_points}, n), got {values.shape} "
                         "(a callable guess must return shape (n,)).")
    if not jnp.issubdtype(values.dtype, jnp.inexact):
        values = values.astype(jnp.result_type(float))
    if is_concrete(values) and not np.all(np.isfinite(np.asarray(values))):
        raise ValueError("`guess` contains non-finite values (NaN or inf).")
    return values


def _check_period(period_guess: Any, dtype) -> Array:
    if isinstance(period_guess, bool) or not isinstance(period_guess, int | float | np.number | np.ndarray
                                                        | jax.Array):
        raise TypeError(f"`period_guess` must be a number, got {type(period_guess).__name__}.")
    if jnp.ndim(period_guess) != 0:
        raise ValueError(f"`period_guess` must be a scalar, got shape {jnp.shape(period_guess)}.")
    try:
        period = jnp.asarray(period_guess, dtype)
    except TypeError as err:
        raise TypeError(f"`period_guess` must be a number, got {type(period_guess).__name__}.") from err
    if is_concrete(period) and not (np.isfinite(float(period)) and float(period) > 0):
        raise ValueError(f"`period_guess` must be finite and > 0, got {float(period)}.")
    return period


def _check_field(field, values, problem: DDEPeriodicOrbitProblem, args):
    """`field(t, y, y_delayed, args)` evaluated on shapes: a ValueError naming `field` otherwise."""
    try:
        n_delays = jax.eval_shape(problem.delays, args)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"`delays` (a callable) could not be evaluated at `args`: {type(err).__name__}: "
                         f"{err}") from err
    if len(n_delays.shape) != 1 or n_delays.shape[0] == 0:
        raise ValueError(f"`delays` must give a non-empty 1-D array, got shape {n_delays.shape}.")
    y = jax.ShapeDtypeStruct(values.shape[1:], values.dtype)
    _check_delay_field(field, y, n_delays.shape[0], args)


def _auto_history(problem: DDEPeriodicOrbitProblem, args: Any, period: Array) -> int:
    r"""$\lceil 1.5\, \tau_{\max} / T_{\rm guess} \rceil$ (at least 1) when both are concrete, else 1."""
    delays = problem.delays(args)
    if not (is_concrete(delays) and is_concrete(period)):
        return 1
    return max(1, int(np.ceil(1.5 * float(np.max(np.asarray(delays))) / float(period))))


def _result_code(sol, values, period, residual_norm, tol):
    scale = jnp.maximum(1.0, jnp.max(jnp.abs(values)))
    amplitude = jnp.max(jnp.max(values, axis=0) - jnp.min(values, axis=0))
    bad_period = ~jnp.isfinite(period) | (period <= 0) | (amplitude <= 1e-8 * scale)
    converged = (sol.result == optx.RESULTS.successful) & (residual_norm <= 100 * tol * scale)
    code = RESULTS.where(converged, RESULTS.successful, RESULTS.not_converged)
    return RESULTS.where(bad_period, RESULTS.invalid_period, code)


@eqx.filter_jit
def _solve(problem: DDEPeriodicOrbitProblem, u0: Array, args: Any, *, tol: float, n_newton: int,
           solver: Any) -> DDEPeriodicOrbitResult:
    """Newton from `u0` (the phase fixed against `u0`), then the diagnostics: one compiled program
    (an eager call compiles once instead of dispatching the iteration op by op)."""
    solver = optx.Newton(rtol=tol, atol=tol, linear_solver=lx.LU()) if solver is None else solver
    sol = optx.root_find(_newton_fn, solver, u0, args=(problem, args, u0), max_steps=n_newton, throw=False)
    u = sol.value
    out_values, out_period = _split(u, problem.n_points)
    residual_norm = jnp.max(jnp.abs(_newton_fn(jax.lax.stop_gradient(u), (problem, args, u0))))
    code = _result_code(sol, out_values, out_period, residual_norm, tol)
    out_delays = jnp.asarray(problem.delays(args), u0.dtype)
    multipliers = problem.spectrum(u, args, None)
    top, bottom = _extremes(out_values)
    out = DDEPeriodicOrbitResult(values=out_values, period=out_period, amplitude=top - bottom,
                                 delays=out_delays, multipliers=multipliers, residual_norm=residual_norm,
                                 n_steps=sol.stats["num_steps"], result=code)
    return out


def dde_periodic_orbit(field: Callable, delays: Any, guess: Any, period_guess: Any, *, args: Any = None,
                       n_points: int = 64, tol: float = 1e-10, n_newton: int = 40, n_multipliers: int = 0,
                       n_chebyshev: int = 64, history_periods: int | None = None, solver: Any = None,
                       throw: bool = True) -> DDEPeriodicOrbitResult:
    r"""A periodic orbit of $x'(t) = f(t, x(t), (x(t - \tau_1), \dots), \text{args})$: Newton
    (optimistix) on the Fourier collocation system of the module docstring, unknowns the values at
    $N$ equispaced points of one period and the period $T$, the phase fixed by
    $\int_0^1 \langle x, x_{\rm guess}' \rangle ds = 0$.

    Derivatives of the result (period, values) with respect to `args` and the delays are implicit
    ($dT/dp = -[G_u^{-1} G_p]_T$, optimistix's `ImplicitAdjoint`): exact derivatives of the
    discrete solution, at the cost of one linear solve.

    **Arguments:**

    - `field`: $f$, `field(t, y, y_delayed, args)`, `y` shape `(n,)`, `y_delayed` a tuple in the
      order of `delays`; autonomous.
    - `delays`: a 1-D array of delays $> 0$, or a callable `args -> array`.
    - `guess`: the initial orbit, values `(n_points, n)` at $s_j = j / N$, or a callable `s -> x`
      on $[0, 1)$ (one period in scaled time).
    - `period_guess`: the initial period, $> 0$.
    - `args`: passed to `field` (and to `delays` when callable).
    - `n_points`: $N$ ($\ge 8$); the error decays geometrically in $N$ for smooth orbits.
    - `tol`: the Newton tolerance (absolute and relative, max-norm); a solution is accepted when
      its residual is below `100 tol` (relative to the state's scale), whatever the `solver`.
    - `n_newton`: the maximum number of Newton steps.
    - `n_multipliers`: how many Floquet multipliers to compute (largest modulus; 0: none).
    - `n_chebyshev`: the Chebyshev degree of the discretised monodromy operator (per period).
    - `history_periods`: the history of the monodromy operator in periods (must cover the largest
      delay, else the multipliers are NaN); `None`: $\lceil 1.5\, \tau_{\max} / T_{\rm guess} \rceil$
      when both are concrete, else 1.
    - `solver`: an optimistix root finder or least-squares solver for the collocation system;
      `None`: `optx.Newton` with a dense LU solve and tolerance `tol`. Newton's basin is small
      for strongly nonlinear cycles; `optx.LevenbergMarquardt(rtol, atol)` reaches the cycle from
      farther (but may also settle on the equilibrium, which is flagged `invalid_period`).
    - `throw`: `True` raises on failure; `False` returns the code in `result`.

    **Returns:** a [`DDEPeriodicOrbitResult`][].

    **Example:**

    ```python
    # Hutchinson's equation x' = x (1 - x(t - tau)) at tau = 1.8
    f = lambda t, y, yd, args: y * (1.0 - yd[0])
    res = dde_periodic_orbit(f, jnp.array([1.8]), lambda s: 1.0 + 0.8 * jnp.sin(2 * jnp.pi * s)[None],
                             7.5, n_multipliers=3)
    res.period, res.amplitude     # 7.5303609415, 2.1012802662
    res.multipliers               # 1, 0.3578403, 4.6e-4 + 2.4e-4 i
    ```
    """
    throw = check_throw(throw)
    settings = dict(n_points=n_points, n_multipliers=n_multipliers, n_chebyshev=n_chebyshev)
    problem = DDEPeriodicOrbitProblem(field, delays, **settings,
                                      history_periods=1 if history_periods is None else history_periods)
    n_newton = check_int(n_newton, "n_newton")
    solvers = optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver
    if solver is not None and not isinstance(solver, solvers):
        raise TypeError("`solver` must be None or an optimistix root finder or least-squares solver (e.g. "
                        f"optx.Newton, optx.LevenbergMarquardt), got {type(solver).__name__}.")
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"`tol` must be a finite positive float, got {tol!r}.")
    values = _guess_values(guess, problem.n_points)
    _check_field(field, values, problem, args)
    period = _check_period(period_guess, values.dtype)
    if history_periods is None:
        problem = DDEPeriodicOrbitProblem(field, problem.delays, **settings,
                                          history_periods=_auto_history(problem, args, period))
    u0 = jnp.concatenate([values.ravel(), period[None]])
    out = _solve(problem, u0, args, tol=float(tol), n_newton=n_newton, solver=solver)
    return raise_if_failed(out, out.result, throw, hint=_HINT)


def dde_orbit_guess_from_hopf(y_eq: Any, eigenvector: Any, omega: Any, amplitude: Any,
                              n_points: int) -> Array:
    r"""A starting point for the cycle branch born at a Hopf point of a delay equation:
    $x(s) = y_* + a\, \mathrm{Re}(v e^{2\pi i s})$ at $N$ points, period $T = 2\pi/\omega$, with $v$ the
    critical eigenvector scaled to unit max-modulus.

    **Arguments:**

    - `y_eq`: the equilibrium, shape `(n,)`.
    - `eigenvector`: the eigenvector of the characteristic matrix at $i\omega$, complex `(n,)`.
    - `omega`: the Hopf frequency, $> 0$.
    - `amplitude`: $a$, the size of the oscillation in the guess (peak to peak $2a$ in the
      component of largest $|v_i|$).
    - `n_points`: $N$ ($\ge 8$).

    **Returns:** `u0 = concatenate([values.ravel(), [T]])`, the unknowns of
    [`DDEPeriodicOrbitProblem`][].
    """
    n_points = _check_n_points(n_points)
    y_eq = jnp.asarray(y_eq)
    if y_eq.ndim != 1:
        raise ValueError(f"`y_eq` must be a 1-D array (the equilibrium), got shape {y_eq.shape}.")
    v = jnp.asarray(eigenvector)
    if v.shape != y_eq.shape:
        raise ValueError(f"`eigenvector` must have the shape of `y_eq` {y_eq.shape}, got {v.shape}.")
    for name, value in (("omega", omega), ("amplitude", amplitude)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(value)}.")
    if is_concrete(omega) and not (np.isfinite(float(omega)) and float(omega) > 0):
        raise ValueError(f"`omega` must be finite and > 0, got {float(omega)}.")
    if is_concrete(v) and not (np.all(np.isfinite(np.asarray(v))) and np.any(np.asarray(v) != 0)):
        raise ValueError("`eigenvector` must be finite and nonzero.")
    dtype = jnp.result_type(y_eq.dtype, float)
    v = v / jnp.max(jnp.abs(v))
    s = jnp.arange(n_points) / n_points
    values = y_eq[None, :] + amplitude * jnp.real(v[None, :] * jnp.exp(2j * jnp.pi * s)[:, None])
    return jnp.concatenate([values.astype(dtype).ravel(), jnp.asarray(2 * jnp.pi / omega, dtype)[None]])


def dde_cycle_branch_start(hopf: DDEHopfResult, problem: DDEPeriodicOrbitProblem, *,
                           amplitude: Any = 0.01) -> BranchStart:
    r"""Where the cycle branch born at a Hopf point of a delay equation starts, for
    [`continuation`][]: the guess of [`dde_orbit_guess_from_hopf`][] at the Hopf parameter, and the
    tangent along the growing oscillation, $(x - y_*, \dot T = 0, \dot p = 0)$ normalised (at a Hopf
    point the branch leaves the equilibrium with $dp/da = dT/da = 0$). The first point is corrected
    in the hyperplane through the guess orthogonal to that tangent: a cycle of amplitude about $a$.

    **Arguments:**

    - `hopf`: a located Hopf point ([`dde_hopf`][]; its `parameter` must be the continuation
      parameter of `problem`).
    - `problem`: the [`DDEPeriodicOrbitProblem`][] to continue (its `n_points` sets the guess).
    - `amplitude`: $a$ (small: the cycle is found by Newton from the linear mode).

    **Returns:** a `BranchStart` to pass to [`continuation`][] in place of `(problem, u0, p0)`.

    **Example:**

    ```python
    delays = lambda tau: jnp.reshape(tau, (1,))
    hopf = dde_hopf(mackey_glass, jnp.ones(1), delays, 4.0)
    problem = DDEPeriodicOrbitProblem(mackey_glass, delays, n_points=64)
    branch = continuation(dde_cycle_branch_start(hopf, problem), p_min=4.0, p_max=14.0, ds_max=1.0)
    ```
    """
    if not isinstance(hopf, DDEHopfResult):
        raise TypeError(f"`hopf` must be a DDEHopfResult (from `dde_hopf`), got {type(hopf).__name__}.")
    if not isinstance(problem, DDEPeriodicOrbitProblem):
        raise TypeError(f"`problem` must be a DDEPeriodicOrbitProblem, got {type(problem).__name__}.")
    if np.ndim(hopf.parameter) != 0:
        raise ValueError("`hopf` must be one Hopf point, not a batch (index it first).")
    if is_concrete(hopf.result._value) and not bool(hopf.successful):
        raise ValueError(f"`hopf` is not a located Hopf point: {message(hopf.result)}")
    u0 = dde_orbit_guess_from_hopf(hopf.equilibrium, hopf.eigenvector, hopf.omega, amplitude,
                                   problem.n_points)
    offsets = u0[:-1] - jnp.tile(jnp.asarray(hopf.equilibrium, u0.dtype), problem.n_points)
    tangent = jnp.concatenate([offsets, jnp.zeros(2, u0.dtype)])
    return BranchStart(problem=problem, u0=u0, p0=jnp.asarray(hopf.parameter, u0.dtype),
                       tangent=tangent / jnp.linalg.norm(tangent))
