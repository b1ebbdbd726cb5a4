r"""Mean-field limits: the Ott-Antonsen reduction, a Vlasov solver on graphons / digraph measures, and
the Wasserstein-1 distance used to measure the convergence of empirical measures.

**Ott-Antonsen.** For Lorentzian frequencies (centre $\omega_0$, half-width $\gamma$) and phases on the
Poisson-kernel manifold, the order parameter of $\dot\theta = \omega + K\,\mathrm{Im}(e^{-i\alpha} H
e^{-i\theta})$ obeys exactly
$$\dot z = (i\omega_0 - \gamma) z + \tfrac K2 \left(e^{-i\alpha} H - e^{i\alpha} \bar H z^2\right),$$
with $H = z$ all-to-all and $H(x) = \int W(x, y) z(y)\,dy$ on a graphon (a local $z(t, x)$).
For $\alpha = 0$ all-to-all, $r = |z|$ solves $\dot r = -\gamma r + \frac K2 r (1 - r^2)$ in closed form.

**Vlasov.** $\partial_t \rho + \partial_\theta(\rho V) = 0$,
$V(t, x, \theta) = \omega + K \int \mathrm{Im}(e^{-i(\theta + \alpha)} z(t, y))\,d\eta^x(y)$, solved by
a particle method: $M$ cells in $x$ (centres $x_m$), $P$ particles per cell carrying $(\theta, \omega)$;
the cell means $z_m = \frac1P \sum_p e^{i\theta_{m,p}}$ are coupled through the same coupling operators
as the finite networks (FFT, low rank, dense).

**W1 estimator** ([`w1_cells`][]): for measures on $[0, 1] \times S^1$ with the same $x$-marginal
carried by the same $M$ cells, we couple within cells only and report
$\frac1M \sum_m W_1^{S^1}(\mu_m, \nu_m)$, the cell-averaged exact circle $W_1$ between the phase
distributions in each cell (geodesic metric, radians). It is an upper bound of the $W_1$ of the
measures with the within-cell $x$-displacement (at most the cell width $1/M$) not counted; for $n$
particles per cell it decays like $n^{-1/2}$.
"""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import check_finite, check_int, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, is_successful, message
from ._coupling import AbstractCoupling, AbstractCouplingMethod, as_method, coupling_operator
from ._order_parameter import order_parameter
from ._solve import Settings, check_adjoint, check_ts, finish, integrate


class OttAntonsen(eqx.Module):
    r"""The Ott-Antonsen vector field on $y = (\mathrm{Re}\,z, \mathrm{Im}\,z)$, shape `(2,)` or `(2, M)`."""

    coupling: Array
    gamma: Array
    omega0: Array
    phase_lag: Array
    operator: AbstractCoupling | None

    def __call__(self, t, y, args=None):
        z = y[0] + 1j * y[1]
        if self.operator is None:
            h = z
        else:
            m = z.shape[0]
            u = self.operator.matvec(jnp.stack([y[0], y[1]], axis=1)) / m
            h = u[:, 0] + 1j * u[:, 1]
        lag = jnp.exp(-1j * self.phase_lag)
        dz = (1j * self.omega0 - self.gamma) * z + 0.5 * self.coupling * (lag * h - jnp.conj(lag * h) * z**2)
        return jnp.stack([dz.real, dz.imag])


def _common(ts, *, rtol, atol, adjoint, max_steps, progress, scalars):
    """Checks shared by the limit solvers; returns `(ts, settings, {name: array})` (Tsit5, adaptive)."""
    ts = check_ts(ts)
    for tol, name in ((rtol, "rtol"), (atol, "atol")):
        if not (isinstance(tol, int | float) and np.isfinite(tol) and tol > 0):
            raise ValueError(f"`{name}` must be a finite float > 0, got {tol!r}.")
    settings = Settings(diffrax.Tsit5(), check_adjoint(adjoint), rtol=rtol, atol=atol,
                        max_steps=check_int(max_steps, "max_steps"), progress=progress)
    out = {}
    for name, value in scalars.items():
        v = jnp.asarray(value, dtype=float)
        if v.shape != ():
            raise ValueError(f"`{name}` must be a scalar, got shape {v.shape}.")
        out[name] = check_finite(v, name)
    return ts, settings, out


def _batch_summary(name: str, ts, result) -> str:
    head = f"{name} (batch of {ts.shape[0]}): {ts.shape[-1]} save times"
    if bool(np.all(np.asarray(is_successful(result)))):
        return head + ": successful."
    return f"{head}: FAILED: {message(result)}"


class OttAntonsenResult(AbstractResult):
    r"""The result of [`ott_antonsen`][]: the complex order parameter $z$ at the save times.

    **Fields:** `ts` (shape `(T,)`); `z` (complex, shape `(T,)`, or `(T, M)` on a graphon: the local
    $z(t, x_m)$; NaN after a failure); `result` (a [`jaxdyn.RESULTS`][] code: `successful`,
    `max_steps_reached`, `nonfinite_state`, ...); `failed_step` (`-1` when none), `failed_time`
    (NaN when none); `stats` (diffrax's statistics).

    `.summary()` gives $r = |z|$ at the end; `.plot(ax=None)` draws $r(t) = |z(t)|$.
    """

    ts: Array
    z: Array
    result: RESULTS
    failed_step: Array
    failed_time: Array
    stats: dict

    def summary(self) -> str:
        """One line: the order parameter $r = |z|$ at the first and last save time, or the failure."""
        ts, z = np.asarray(self.ts), np.abs(np.asarray(self.z))
        if ts.ndim > 1:  # batched (vmap)
            return _batch_summary("ott_antonsen", ts, self.result)
        where = f" (M = {z.shape[-1]} positions, mean r)" if z.ndim > 1 else ""
        head = f"ott_antonsen{where}: {ts.shape[0]} save times on [{ts[0]:.6g}, {ts[-1]:.6g}]"
        r = z.mean(-1) if z.ndim > 1 else z
        if bool(np.all(np.asarray(self.successful))):
            return f"{head}, r = {r[0]:.4g} -> {r[-1]:.4g}: successful."
        return (f"{head}: FAILED at step {int(self.failed_step)} (t = {float(self.failed_time):.6g}): "
                f"{message(self.result)}")

    def plot(self, ax=None, **kwargs):
        """$r(t) = |z(t)|$ (one curve per position on a graphon); returns the axes."""
        from ..plot._meanfield import plot_order_parameter, single_axes

        fig, ax = single_axes(ax)
        z = np.asarray(self.z)
        curves = ({"Ott-Antonsen": z} if z.ndim == 1 else
                  {f"x = {(m + 0.5) / z.shape[1]:.3g}": z[:, m] for m in range(z.shape[1])})
        plot_order_parameter(self.ts, curves, ax=ax, **kwargs)
        return ax


def ott_antonsen(z0, ts, *, coupling, gamma, omega0=0.0, phase_lag=0.0, graph=None, positions=None,
                 method: AbstractCouplingMethod | None = None, rtol: float = 1e-11, atol: float = 1e-12,
                 max_steps: int = 1_000_000, progress: bool = False, adjoint=None,
                 throw: bool = True) -> OttAntonsenResult:
    r"""Solve the Ott-Antonsen equation (see the module docstring) for $z$ at `ts`.

    **Arguments:**

    - `z0`: a complex scalar (all-to-all, `graph=None`) or a complex vector of $M$ local order
      parameters $z(0, x_m)$ at `positions` (grid by default) for a graphon/digraph `graph`.
    - `ts`: save times. `coupling` $K$, `gamma` $\gamma \ge 0$, `omega0`, `phase_lag` $\alpha$ (sign
      convention of [`Kuramoto`][]).
    - `graph`, `positions`, `method`: as in [`coupling_operator`][] (graphon coupling, normalised
      by $1/M$: the quadrature of $\int W(x, y) z(y)\,dy$).
    - `rtol`, `atol`: the tolerances of Tsit5; `max_steps`: the step budget; `progress`: a bar.
    - `adjoint`: a diffrax adjoint; the default (checkpointed) is reverse mode only, pass
      `diffrax.ForwardMode()` for `jax.jvp`/`jax.jacfwd` (as in [`simulate`][]).
    - `throw`: on failure (`max_steps` ran out, the state blew up) raise an
      `eqx.EquinoxRuntimeError` naming it (`True`, the default) or return the code in `.result`
      (`False`).

    **Returns:** an [`OttAntonsenResult`][]: `.z` complex of shape `(len(ts),)` or `(len(ts), M)`,
    `.result`, `.summary()`, `.plot()`.

    **Derivatives:** differentiable with respect to `z0`, `coupling`, `gamma`, `omega0`, `phase_lag`
    and graphon parameters (the derivative of the adaptive solve with its step sizes held fixed:
    exact up to the tolerances). All-to-all with $\alpha = 0$, $r(t) \to \sqrt{1 - 2\gamma/K}$ for
    $K > 2\gamma$, so $\partial r_\infty/\partial K = \gamma/(K^2 r_\infty)$ and
    $\partial r_\infty/\partial\gamma = -1/(K r_\infty)$.
    """
    check_throw(throw)
    z0 = jnp.asarray(z0, dtype=complex)
    ts, settings, p = _common(ts, rtol=rtol, atol=atol, adjoint=adjoint, max_steps=max_steps,
                              progress=progress, scalars=dict(coupling=coupling, gamma=gamma, omega0=omega0,
                                                              phase_lag=phase_lag))
    if is_concrete(p["gamma"]) and float(p["gamma"]) < 0:
        raise ValueError(f"`gamma` must be >= 0, got {gamma}.")
    if is_concrete(z0) and np.any(np.abs(np.asarray(z0)) > 1):
        raise ValueError("`z0` must satisfy |z0| <= 1.")
    if graph is None:
        if z0.ndim != 0:
            raise ValueError(f"`z0` must be a scalar for all-to-all coupling (graph=None), got {z0.shape}.")
        op = None
    else:
        if z0.ndim != 1:
            raise ValueError(f"`z0` must be a vector (one z per position) with a graph, got {z0.shape}.")
        op = coupling_operator(graph, z0.shape[0], positions=positions, method=as_method(method))
    field = OttAntonsen(p["coupling"], p["gamma"], p["omega0"], p["phase_lag"], op)
    y0 = check_finite(jnp.stack([z0.real, z0.imag]), "z0")
    ys, result, failed_step, failed_time, stats = integrate(field, y0, ts, args=None, key=None,
                                                            settings=settings)
    out = OttAntonsenResult(ts, ys[:, 0] + 1j * ys[:, 1], result, failed_step, failed_time, stats)
    return finish(out, throw, name="ott_antonsen", keep="z")


def ott_antonsen_r(t, r0, *, coupling, gamma) -> Array:
    r"""Closed form of $\dot r = -\gamma r + \frac K2 r(1 - r^2)$ (all-to-all, $\alpha = 0$):
    $r(t)^{-2} = b/a + (r_0^{-2} - b/a) e^{-2at}$ with $a = K/2 - \gamma$, $b = K/2$
    ($r^{-2} = r_0^{-2} + 2bt$ when $a = 0$). As $t \to \infty$, $r \to \sqrt{1 - 2\gamma/K}$ for
    $K > K_c = 2\gamma$, else 0."""
    t = jnp.asarray(t, dtype=float)
    a = coupling / 2 - gamma
    b = coupling / 2
    safe_a = jnp.where(a == 0, 1.0, a)
    inv = jnp.where(a == 0, r0**-2 + 2 * b * t, b / safe_a + (r0**-2 - b / safe_a) * jnp.exp(-2 * a * t))
    return inv ** -0.5


class Vlasov(eqx.Module):
    r"""The particle-method Vlasov field: $\dot\theta_{m,p} = \omega_{m,p} + K\,\mathrm{Im}(e^{-i(\theta_{m,p}
    + \alpha)} H_m)$, $H = \frac1M W z$, state shape `(M, P)`."""

    omega: Array
    coupling: Array
    phase_lag: Array
    operator: AbstractCoupling
    weights: Array | None = None  # particle weights per row (normally summing to 1; None: 1/P each)

    def __call__(self, t, theta, args=None):
        m = theta.shape[0]
        c, s = jnp.cos(theta), jnp.sin(theta)
        if self.weights is None:
            zc, zs = jnp.mean(c, 1), jnp.mean(s, 1)
        else:
            zc, zs = jnp.sum(self.weights * c, 1), jnp.sum(self.weights * s, 1)
        u = self.operator.matvec(jnp.stack([zc, zs], axis=1)) / m
        hr, hi = u[:, :1], u[:, 1:]
        cl, sl = jnp.cos(self.phase_lag), jnp.sin(self.phase_lag)
        cos_t, sin_t = c * cl - s * sl, s * cl + c * sl  # e^{i(theta + alpha)}
        return self.omega + self.coupling * (cos_t * hi - sin_t * hr)


class VlasovResult(AbstractResult):
    r"""The result of [`vlasov`][]: the particle phases of the $M$ cells at the save times.

    **Fields:** `ts` (shape `(T,)`); `theta` (shape `(T, M, P)`: the empirical approximation of
    $\rho(t, x_m, \cdot)$; NaN after a failure); `weights` (the particle weights, `(M, P)`, or `None`
    for $1/P$); `result` (a [`jaxdyn.RESULTS`][] code); `failed_step`, `failed_time`; `stats`.

    `.summary()` gives the cell order parameters at the end; `.plot(ax=None)` draws
    $r_m(t) = |z_m(t)|$ of every cell against time.
    """

    ts: Array
    theta: Array
    weights: Array | None
    result: RESULTS
    failed_step: Array
    failed_time: Array
    stats: dict

    def cell_order_parameters(self) -> Array:
        r"""$z_m(t) = \sum_p w_{m,p} e^{i\theta_{m,p}(t)}$, shape `(T, M)` (complex)."""
        if self.weights is None:
            return order_parameter(self.theta)
        return jnp.sum(self.weights * jnp.exp(1j * self.theta), axis=-1)

    def summary(self) -> str:
        """One line: cells, particles, save times, and the cell order parameters at the end."""
        ts = np.asarray(self.ts)
        if ts.ndim > 1:  # batched (vmap)
            return _batch_summary("vlasov", ts, self.result)
        _, m, p = np.shape(self.theta)
        head = f"vlasov: {m} cells x {p} particles, {ts.shape[0]} save times on [{ts[0]:.6g}, {ts[-1]:.6g}]"
        if bool(np.all(np.asarray(self.successful))):
            r = np.abs(np.asarray(self.cell_order_parameters()))[-1]
            return f"{head}, cell order parameters r_m(t1) in [{r.min():.4g}, {r.max():.4g}]: successful."
        return (f"{head}: FAILED at step {int(self.failed_step)} (t = {float(self.failed_time):.6g}): "
                f"{message(self.result)}")

    def plot(self, ax=None, **kwargs):
        """$r_m(t) = |z_m(t)|$ of every cell against time; returns the axes."""
        from ..plot._meanfield import plot_order_parameter, single_axes

        fig, ax = single_axes(ax)
        z = np.asarray(self.cell_order_parameters())
        m = z.shape[1]
        plot_order_parameter(self.ts, {f"cell {i} (x = {(i + 0.5) / m:.3g})": z[:, i] for i in range(m)},
                             ax=ax, **kwargs)
        return ax


def vlasov(graph, theta0, omega, ts, *, coupling, phase_lag=0.0, weights=None,
           method: AbstractCouplingMethod | None = None, rtol: float = 1e-8, atol: float = 1e-8,
           max_steps: int = 1_000_000, progress: bool = False, adjoint=None,
           throw: bool = True) -> VlasovResult:
    r"""Solve the Vlasov equation on a graphon or digraph measure by $M$ cells $\times$ $P$ particles.

    **Arguments:**

    - `graph`: `None` (all-to-all), a graphon, a [`DigraphMeasure`][] or an $M \times M$ array, on
      the cell centres $x_m = (m + 1/2)/M$.
    - `theta0`, `omega`: initial phases and frequencies of the particles, shape `(M, P)` (row $m$:
      samples of $\rho_0(x_m, \cdot)$ and of the frequency law at $x_m$).
    - `ts`: save times; `coupling` $K$; `phase_lag` $\alpha$; `rtol`, `atol` of Tsit5;
      `max_steps` the step budget; `method` as in [`coupling_operator`][].
    - `weights`: optional particle weights, shape `(M, P)`, finite and non-negative (default $1/P$).
      A row is normally the empirical measure of one cell and sums to 1; a cell may also be split over
      several rows whose weights add up to 1 together (the graph then weights each row as a cell, as
      the `kuramoto` experiment's W1 study does), so row sums are not forced to 1. Zero weights make
      passive tracer particles (e.g. to pad cells to a common size).
    - `adjoint`: a diffrax adjoint (default: checkpointed, reverse mode only; `diffrax.ForwardMode()`
      for forward mode).
    - `throw`: on failure (`max_steps` ran out, the state blew up) raise an
      `eqx.EquinoxRuntimeError` naming it (`True`, the default) or return the code in `.result`
      (`False`).

    **Returns:** a [`VlasovResult`][]: `.theta`, the particle phases at `ts`, shape
    `(len(ts), M, P)`: the empirical approximation of $\rho(t, x_m, \cdot)$ (compare with
    [`w1_cells`][]); `.result`, `.summary()`, `.plot()`.

    **Derivatives:** differentiable with respect to `theta0`, `omega`, `coupling`, `phase_lag`,
    `weights` and graph parameters (adaptive step sizes held fixed).
    """
    check_throw(throw)
    theta0 = check_finite(jnp.asarray(theta0, dtype=float), "theta0")
    omega = check_finite(jnp.asarray(omega, dtype=float), "omega")
    if theta0.ndim != 2 or theta0.shape[0] < 1 or theta0.shape[1] < 1:
        raise ValueError(f"`theta0` must have shape (M, P) with M, P >= 1, got {theta0.shape}.")
    if omega.shape != theta0.shape:
        raise ValueError(f"`omega` must have the shape of `theta0` {theta0.shape}, got {omega.shape}.")
    ts, settings, p = _common(ts, rtol=rtol, atol=atol, adjoint=adjoint, max_steps=max_steps,
                              progress=progress, scalars=dict(coupling=coupling, phase_lag=phase_lag))
    op = coupling_operator(graph, theta0.shape[0], method=as_method(method))
    if weights is not None:
        weights = jnp.asarray(weights, dtype=float)
        if weights.shape != theta0.shape:
            raise ValueError(f"`weights` must have the shape of `theta0` {theta0.shape}, got {weights.shape}")
        if is_concrete(weights):
            w = np.asarray(weights)
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("`weights` must be finite and non-negative.")
    field = Vlasov(omega, p["coupling"], p["phase_lag"], op, weights)
    ys, result, failed_step, failed_time, stats = integrate(field, theta0, ts, args=None, key=None,
                                                            settings=settings)
    out = VlasovResult(ts, ys, weights, result, failed_step, failed_time, stats)
    return finish(out, throw, name="vlasov", keep="the phases")


def w1_circle(a, b) -> float:
    r"""Exact Wasserstein-1 distance between two empirical measures on the circle (geodesic metric).

    $W_1 = \min_c \int_0^{2\pi} |F_a(\theta) - F_b(\theta) - c|\,d\theta$ (the minimiser $c$ is the
    weighted median of $F_a - F_b$); exact for the circle of circumference $2\pi$.

    **Arguments:** `a`, `b`: 1-D arrays of angles (any real values; taken mod $2\pi$).

    **Returns:** the distance (a float, in radians).

    **No derivative:** computed in NumPy (sorting and a weighted median); a traced input (under
    `jax.grad`/`jit`) raises a `TypeError`.
    """
    if not (is_concrete(a) and is_concrete(b)):
        raise TypeError("`a` and `b` must be concrete arrays: `w1_circle` is computed in NumPy (sorting, "
                        "a weighted median) and has no JAX derivative.")
    a = np.mod(np.asarray(a, dtype=float).ravel(), 2 * np.pi)
    b = np.mod(np.asarray(b, dtype=float).ravel(), 2 * np.pi)
    if a.size == 0 or b.size == 0:
        raise ValueError("`a` and `b` must be non-empty.")
    pts = np.concatenate([a, b])
    jumps = np.concatenate([np.full(a.size, 1.0 / a.size), np.full(b.size, -1.0 / b.size)])
    order = np.argsort(pts, kind="stable")
    pts, jumps = pts[order], jumps[order]
    diff = np.cumsum(jumps)[:-1]  # F_a - F_b on [pts[k], pts[k+1])
    lengths = np.diff(pts)
    # the arc through 0 (from the last point to the first) carries difference 0
    vals = np.concatenate([diff, [0.0]])
    w = np.concatenate([lengths, [2 * np.pi - pts[-1] + pts[0]]])
    idx = np.argsort(vals)
    cw = np.cumsum(w[idx])
    c = vals[idx][np.searchsorted(cw, 0.5 * cw[-1])]
    return float(np.sum(w * np.abs(vals - c)))


def w1_cells(theta_a, theta_b) -> float:
    r"""The cell-averaged circle $W_1$ between two measures on $[0, 1] \times S^1$ (module docstring).

    **Arguments:** `theta_a` of shape `(M, n_a)` and `theta_b` of shape `(M, n_b)`: the phases of the
    particles in each of the $M$ cells (e.g. a network of $N = M n_a$ grid nodes reshaped to
    `(M, N // M)`, and a [`vlasov`][] solution).

    **Returns:** $\frac1M \sum_m W_1^{S^1}(a_m, b_m)$ (NumPy; no derivative, see [`w1_circle`][]).
    """
    if not (is_concrete(theta_a) and is_concrete(theta_b)):
        raise TypeError("`theta_a` and `theta_b` must be concrete arrays: `w1_cells` is computed in NumPy "
                        "and has no JAX derivative.")
    a, b = np.asarray(theta_a), np.asarray(theta_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"`theta_a` and `theta_b` must be (M, n) arrays with the same M, got {a.shape}, "
                         f"{b.shape}.")
    return float(np.mean([w1_circle(a[m], b[m]) for m in range(a.shape[0])]))
