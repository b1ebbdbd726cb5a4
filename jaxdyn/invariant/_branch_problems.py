r"""Branch problems of [`continuation`][]: equilibria of flows and fixed points/cycles of maps.

- [`EquilibriumProblem`][]: $G(u, p) = f(0, u, \mathrm{args}(p))$; its spectrum is the eigenvalues of
  $G_u$, computed by an eigenvalue strategy ([`DenseEigenvalues`][], [`NoEigenvalues`][]); its test
  function detects Hopf points. Eigenvalue strategies: [`DenseEigenvalues`][] (all, from the
  materialised Jacobian), [`ArnoldiEigenvalues`][] (the critical ones, matrix-free),
  [`NoEigenvalues`][].
- [`FixedPointProblem`][]: $G(u, p) = F^k(u, \mathrm{args}(p)) - u$ for a cycle of period $k$; its
  spectrum is the multipliers of the cycle (the eigenvalues of $DF(x_{k-1}) \cdots DF(x_0)$, from the
  Jacobians along it); its test functions detect period doubling and Neimark-Sacker points.

The Hopf and Neimark-Sacker test functions are products over the complex pairs of the spectrum,
$\tau_H = \prod_{\operatorname{Im}\lambda > 0} \operatorname{Re}\lambda / |\lambda|$ and
$\tau_{NS} = \prod_{\operatorname{Im}\mu > 0} (|\mu|^2 - 1)/(|\mu|^2 + 1)$: they vanish where a
complex pair crosses the imaginary axis (the unit circle) and not at a neutral saddle (a real pair
$\lambda, -\lambda$, or $\mu, 1/\mu$), which the classical bialternate products do not tell apart.
Where two real eigenvalues meet and leave the real axis the factor of the new pair appears with
modulus one: the sign may jump there, and the engine drops a sign change that locates onto a jump
instead of a zero (see [`continuation`][]). The period-doubling test is
$\operatorname{Re}\prod_i (\mu_i + 1)/(1 + |\mu_i|)$, the normalised $\det(M + I)$.

Branch switching from these problems ([`switch_branch`][]) goes through
[`AbstractSwitchableProblem.switch`][]: a period doubling of a period-$k$ cycle starts the
period-$2k$ branch, a Hopf point of an equilibrium starts the periodic-orbit branch.
"""

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from .._types import Array
from ._floquet import product_eigenvalues
from ._problems import AbstractBranchProblem, with_parameter

# Above this state dimension `eigenvalues=None` computes no spectrum (a dense eigendecomposition
# per branch point costs O(n^3)); pass an eigenvalue strategy to get one anyway.
AUTO_DENSE_MAX_DIM = 400


def _is_conjugate_pair(z: Array) -> Array:
    """The members of a complex spectrum with a clearly positive imaginary part (one per pair)."""
    scale = jnp.maximum(1.0, jnp.max(jnp.abs(z), initial=0.0))
    return jnp.imag(z) > 1e-8 * scale


class AbstractEigenvalues(eqx.Module):
    """How the eigenvalues of a Jacobian $G_u$ are computed along a branch (a strategy)."""

    @abc.abstractmethod
    def size(self, n: int) -> int:
        """How many eigenvalues are returned for a state of dimension `n` (static)."""

    @abc.abstractmethod
    def eigenvalues(self, matvec: Callable[[Array], Array], u: Array) -> Array:
        """The eigenvalues (complex, shape `(size(n),)`) of the linear map `matvec` at `u`."""


class DenseEigenvalues(AbstractEigenvalues):
    """All eigenvalues, from the materialised Jacobian (`jnp.linalg.eig`, O(n^3) per point)."""

    def size(self, n: int) -> int:
        return n

    def eigenvalues(self, matvec: Callable[[Array], Array], u: Array) -> Array:
        matrix = jax.vmap(matvec, out_axes=1)(jnp.eye(u.shape[0], dtype=u.dtype))
        return jnp.linalg.eigvals(matrix)


class NoEigenvalues(AbstractEigenvalues):
    """No spectrum: the branch carries no stability and no Hopf detection (large systems)."""

    def size(self, n: int) -> int:
        return 0

    def eigenvalues(self, matvec: Callable[[Array], Array], u: Array) -> Array:
        return jnp.zeros((0,), dtype=jnp.result_type(u.dtype, jnp.complex64))


def _start_vector(n: int, dtype) -> Array:
    """A fixed unit vector with no special direction (the start of the Arnoldi iteration)."""
    v = jnp.sin(0.7 + 1.3 * jnp.arange(n, dtype=dtype)) + 0.1
    return v / jnp.linalg.norm(v)


class ArnoldiEigenvalues(AbstractEigenvalues):
    r"""The critical eigenvalues (unstable, or near the imaginary axis) without forming the Jacobian:
    Arnoldi on the Cayley transform.

    $C = (A - \sigma I)^{-1}(A + \sigma I)$ maps an eigenvalue $\lambda$ of $A$ to
    $\mu = (\lambda + \sigma)/(\lambda - \sigma)$: the right half-plane goes outside the unit
    circle, the left half-plane inside, so every eigenvalue with a positive real part comes before
    every stable one in $|\mu|$, and among the stable ones those near the imaginary axis (relative
    to $|\lambda| \sim \sigma$) come first: what stability and Hopf detection need (not the
    rightmost stable ones in general: far-left eigenvalues also have $|\mu| \to 1$).
    Each Arnoldi step is one solve with $A - \sigma I$ (lineax `GMRES` on Jacobian-vector
    products); the `n_eigs` Ritz values of largest $|\mu|$ are mapped back by
    $\lambda = \sigma(\mu + 1)/(\mu - 1)$.

    **Arguments:**

    - `n_eigs`: how many eigenvalues to return (the spectrum has `min(n_eigs, n)` entries).
    - `krylov_dim`: the Arnoldi dimension (> `n_eigs`; `min(krylov_dim, n)` is used).
    - `shift`: $\sigma > 0$, of the order of the frequencies of interest.
    - `rtol`: the relative tolerance of the GMRES solves.
    """

    n_eigs: int = eqx.field(default=6, static=True)
    krylov_dim: int = eqx.field(default=30, static=True)
    shift: float = eqx.field(default=1.0, static=True)
    rtol: float = eqx.field(default=1e-12, static=True)

    def __check_init__(self):
        for name, value in (("n_eigs", self.n_eigs), ("krylov_dim", self.krylov_dim)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        if self.krylov_dim <= self.n_eigs:
            raise ValueError(f"`krylov_dim` ({self.krylov_dim}) must exceed `n_eigs` ({self.n_eigs}).")
        if not np.isfinite(self.shift) or self.shift <= 0:
            raise ValueError(f"`shift` must be a finite positive number, got {self.shift!r}.")

    def size(self, n: int) -> int:
        return min(self.n_eigs, n)

    def eigenvalues(self, matvec: Callable[[Array], Array], u: Array) -> Array:
        n, dtype, sigma = u.shape[0], u.dtype, self.shift
        k = min(self.krylov_dim, n)
        struct = jax.ShapeDtypeStruct((n,), dtype)
        shifted = lx.FunctionLinearOperator(lambda v: matvec(v) - sigma * v, struct)
        solver = lx.GMRES(rtol=self.rtol, atol=self.rtol * 1e-3, restart=min(n, 50),
                          stagnation_iters=min(n, 50), max_steps=20 * n + 200)

        def cayley(v):
            return v + 2 * sigma * lx.linear_solve(shifted, v, solver, throw=False).value

        def step(j, carry):
            basis, hess = carry
            w = cayley(basis[:, j])
            mask = (jnp.arange(k + 1) <= j).astype(dtype)
            for _ in range(2):  # classical Gram-Schmidt, twice
                h = (basis.T @ w) * mask
                w = w - basis @ h
                hess = hess.at[:, j].add(h)
            norm = jnp.linalg.norm(w)
            hess = hess.at[j + 1, j].set(norm)
            basis = basis.at[:, j + 1].set(w / jnp.where(norm > 0, norm, 1.0))
            return basis, hess

        basis = jnp.zeros((n, k + 1), dtype).at[:, 0].set(_start_vector(n, dtype))
        hess = jnp.zeros((k + 1, k), dtype)
        basis, hess = jax.lax.fori_loop(0, k, step, (basis, hess))
        mu = jnp.linalg.eigvals(hess[:k, :k])
        mu = mu[jnp.argsort(-jnp.abs(mu))][: self.size(n)]
        return sigma * (mu + 1) / (mu - 1)


class AbstractSwitchableProblem(AbstractBranchProblem):
    """A branch problem that can start a new branch at one of its own special points."""

    @abc.abstractmethod
    def switch(self, kind: str, u: Array, p: Array, args: Any, *,
               amplitude: float) -> tuple[AbstractBranchProblem, Array, Array, Array]:
        """`(problem, u0, p0, tangent)` of the branch that emanates at the special point of kind
        `kind` (an entry of `SPECIAL_POINTS`) located at `(u, p)`; `amplitude` is the distance of
        the start from the special point. A `ValueError` when the kind has no branch to switch to."""


def _check_callable(fn: Any, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}.")


def _check_parameter(parameter: Any) -> None:
    if parameter is not None and not callable(parameter):
        raise TypeError("`parameter` must be a callable `(args, p) -> args` or None (args is p), got "
                        f"{type(parameter).__name__}.")


class EquilibriumProblem(AbstractSwitchableProblem):
    r"""Equilibria of a flow $u' = f(t, u, \mathrm{args})$ along one parameter: $G(u, p) = f(0, u,
    \mathrm{args}(p))$.

    **Arguments:**

    - `field`: the vector field `f(t, y, args)` (diffrax convention) on flat states `y` of shape `(n,)`.
    - `parameter`: a callable `(args, p) -> args` that puts the continuation parameter into `args`,
      or `None` (the field's `args` is `p` itself).
    - `eigenvalues`: an [`AbstractEigenvalues`][] strategy for the spectrum of $G_u$; `None` chooses
      [`DenseEigenvalues`][] up to `AUTO_DENSE_MAX_DIM` = 400 states and [`NoEigenvalues`][] above;
      [`ArnoldiEigenvalues`][] gives stability and Hopf detection of large systems matrix-free.

    The spectrum is the eigenvalues of $G_u$ (stable when every real part is negative); the one test
    function is the Hopf test of the module docstring. At a Hopf point [`switch_branch`][] starts the
    periodic-orbit branch.

    **Example:**

    ```python
    def lorenz(t, y, a):
        return jnp.array([a["sigma"] * (y[1] - y[0]), y[0] * (a["rho"] - y[2]) - y[1],
                          y[0] * y[1] - a["beta"] * y[2]])
    problem = EquilibriumProblem(lorenz, parameter=lambda a, p: {**a, "rho": p})
    ```
    """

    field: Callable
    parameter: Callable | None = None
    eigenvalues: AbstractEigenvalues | None = None

    test_names: ClassVar[tuple[str, ...]] = ("hopf",)

    def __check_init__(self):
        _check_callable(self.field, "field")
        _check_parameter(self.parameter)
        if self.eigenvalues is not None and not isinstance(self.eigenvalues, AbstractEigenvalues):
            raise TypeError("`eigenvalues` must be an AbstractEigenvalues strategy (DenseEigenvalues(), "
                            f"NoEigenvalues()) or None, got {type(self.eigenvalues).__name__}.")

    def _strategy(self, n: int) -> AbstractEigenvalues:
        if self.eigenvalues is not None:
            return self.eigenvalues
        return DenseEigenvalues() if n <= AUTO_DENSE_MAX_DIM else NoEigenvalues()

    def residual(self, u: Array, p: Array, args: Any, u_ref: Array) -> Array:
        return self.field(0.0, u, with_parameter(self.parameter, args, p))

    def spectrum(self, u: Array, p: Array, args: Any) -> Array:
        full = with_parameter(self.parameter, args, p)
        _, matvec = jax.linearize(lambda y: self.field(0.0, y, full), u)
        return self._strategy(u.shape[0]).eigenvalues(matvec, u)

    def n_unstable(self, spectrum: Array) -> Array:
        return jnp.sum(jnp.real(spectrum) > 0).astype(jnp.int32)

    def test_functions(self, u: Array, p: Array, args: Any, spectrum: Array) -> Array:
        pairs = _is_conjugate_pair(spectrum)
        ratio = jnp.real(spectrum) / jnp.maximum(jnp.abs(spectrum), jnp.finfo(u.dtype).tiny)
        return jnp.prod(jnp.where(pairs, ratio, 1.0))[None]

    def dimension(self, u: Array) -> int:
        return int(u.shape[0])

    def switch(self, kind, u, p, args, *, amplitude):
        if kind != "hopf":
            raise ValueError(f"An equilibrium branch switches at a Hopf point (or a branch point), "
                             f"not at a {kind!r} point.")
        from ._periodic import PeriodicOrbitProblem, orbit_guess_from_hopf  # noqa: PLC0415

        full = with_parameter(self.parameter, args, p)
        matrix = jax.jacfwd(lambda y: self.field(0.0, y, full))(u)
        values, vectors = np.linalg.eig(np.asarray(matrix))
        upper = np.where(values.imag > 0, np.abs(values.real), np.inf)
        i = int(np.argmin(upper))
        omega = float(values[i].imag)
        if not np.isfinite(upper[i]):
            raise ValueError("The special point has no complex pair of eigenvalues: not a Hopf point.")
        n_segments = 8
        orbit = PeriodicOrbitProblem(self.field, parameter=self.parameter, n_segments=n_segments)
        u0 = orbit_guess_from_hopf(u, jnp.asarray(vectors[:, i]), omega, amplitude, n_segments)
        centre = orbit_guess_from_hopf(u, jnp.asarray(vectors[:, i]), omega, 0.0, n_segments)
        # the tangent of the cycle branch at the Hopf point: growing amplitude, fixed period and p
        tangent = jnp.concatenate([(u0 - centre).at[-1].set(0.0), jnp.zeros(1, dtype=u0.dtype)])
        return orbit, u0, jnp.asarray(p), tangent / jnp.linalg.norm(tangent)


class FixedPointProblem(AbstractSwitchableProblem):
    r"""Fixed points ($k = 1$) and period-$k$ cycles of a map $x \mapsto F(x, \mathrm{args})$ along one
    parameter: $G(u, p) = F^k(u, \mathrm{args}(p)) - u$.

    **Arguments:**

    - `map`: the map `F(x, args) -> x` on flat states of shape `(n,)`.
    - `parameter`: a callable `(args, p) -> args` putting the parameter into `args`, or `None`
      (`args` is `p`).
    - `period`: the period $k \geq 1$ of the cycle (`u` is one of its points).

    The spectrum is the $n$ multipliers of the cycle sorted by decreasing modulus (stable when all
    lie inside the unit circle); the test functions detect period doubling (a multiplier through
    $-1$) and Neimark-Sacker points (a complex pair through the unit circle). At a period doubling
    [`switch_branch`][] starts the period-$2k$ branch.

    **Example:**

    ```python
    logistic = FixedPointProblem(lambda x, r: r * x * (1 - x))   # args is r
    ```
    """

    map: Callable
    parameter: Callable | None = None
    period: int = eqx.field(default=1, static=True)

    test_names: ClassVar[tuple[str, ...]] = ("period_doubling", "neimark_sacker")

    def __check_init__(self):
        _check_callable(self.map, "map")
        _check_parameter(self.parameter)
        if isinstance(self.period, bool) or not isinstance(self.period, int | np.integer):
            raise TypeError(f"`period` must be an int, got {type(self.period).__name__}.")
        if self.period < 1:
            raise ValueError(f"`period` must be >= 1, got {self.period}.")

    def _iterate(self, u: Array, args: Any) -> Array:
        return jax.lax.fori_loop(0, self.period, lambda _, x: self.map(x, args), u)

    def _jacobians(self, u: Array, p: Array, args: Any) -> Array:
        full = with_parameter(self.parameter, args, p)

        def step(x, _):
            return self.map(x, full), jax.jacfwd(lambda y: self.map(y, full))(x)

        _, mats = jax.lax.scan(step, u, None, length=self.period)
        return mats

    def residual(self, u: Array, p: Array, args: Any, u_ref: Array) -> Array:
        return self._iterate(u, with_parameter(self.parameter, args, p)) - u

    def spectrum(self, u: Array, p: Array, args: Any) -> Array:
        return _multipliers(self._jacobians(u, p, args))

    def n_unstable(self, spectrum: Array) -> Array:
        return jnp.sum(jnp.abs(spectrum) > 1).astype(jnp.int32)

    def test_functions(self, u: Array, p: Array, args: Any, spectrum: Array) -> Array:
        flip = jnp.real(jnp.prod((spectrum + 1) / (1 + jnp.abs(spectrum))))
        size = jnp.abs(spectrum) ** 2
        pairs = _is_conjugate_pair(spectrum)
        torus = jnp.prod(jnp.where(pairs, (size - 1) / (size + 1), 1.0))
        return jnp.stack([flip, torus])

    def dimension(self, u: Array) -> int:
        return int(u.shape[0])

    def switch(self, kind, u, p, args, *, amplitude):
        if kind != "period_doubling":
            raise ValueError(f"A fixed-point branch switches at a period doubling (or a branch point), "
                             f"not at a {kind!r} point.")
        mats = np.asarray(self._jacobians(u, p, args))
        product = np.eye(u.shape[0])
        for m in mats:
            product = m @ product
        values, vectors = np.linalg.eig(product)
        i = int(np.argmin(np.abs(values + 1)))
        v = np.real(vectors[:, i])
        v = v / np.linalg.norm(v)
        v = v if v[np.argmax(np.abs(v))] > 0 else -v
        doubled = FixedPointProblem(self.map, parameter=self.parameter, period=2 * self.period)
        tangent = jnp.concatenate([jnp.asarray(v, dtype=u.dtype), jnp.zeros(1, dtype=u.dtype)])
        return doubled, u + amplitude * jnp.asarray(v, dtype=u.dtype), jnp.asarray(p), tangent


def _multipliers(mats: Array) -> Array:
    """The eigenvalues of `mats[-1] @ ... @ mats[0]`, sorted by decreasing modulus (one factor:
    `eigvals`; several: the periodic Schur method, which resolves multipliers of any modulus)."""
    if mats.shape[0] == 1:
        values = jnp.linalg.eigvals(mats[0])
        return values[jnp.argsort(-jnp.abs(values))]
    values, _ = product_eigenvalues(mats)
    return values
