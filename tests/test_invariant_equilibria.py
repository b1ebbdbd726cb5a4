"""Equilibria of flows, fixed points and cycles of maps: known answers, transforms, results.

Known answers: Lorenz (sigma 10, beta 8/3) at rho = 22 (C+- stable foci, the origin a saddle of
index 1) and rho = 0.5 (one stable node); the logistic map at r = 3.2 (fixed points 0, 1 - 1/r with
multipliers r, 2 - r; the 2-cycle ((r+1) +- sqrt((r+1)(r-3)))/(2r) with multiplier -r^2 + 2r + 4);
GD on L(x) = (x^2 - 1)^2/4 (fixed points -1, 0, 1, multiplier 1 - 2 eta at +-1, a flip at eta = 1).
One compiled search per problem, shared by the tests (module-level functions, fixed shapes).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxdyn._results import RESULTS, AbstractResult, codes
from jaxdyn.invariant import (
    KINDS,
    CyclesResult,
    EquilibriaResult,
    FlowClassification,
    MapClassification,
    cycles,
    equilibria,
    fixed_points,
)

from .helpers import fd_directional

SIGMA, BETA = 10.0, 8.0 / 3.0
KEY = jax.random.key(0)
LO3, HI3 = -30.0 * jnp.ones(3), 30.0 * jnp.ones(3)
N_STARTS = 24


def lorenz(t, u, rho):
    x, y, z = u
    return jnp.array([SIGMA * (y - x), x * (rho - z) - y, x * y - BETA * z])


def logistic(x, r):
    return r * x * (1.0 - x)


def gd_map(x, eta):
    """GD on L(x) = (x^2 - 1)^2 / 4: x <- x - eta x (x^2 - 1)."""
    return x - eta * x * (x**2 - 1.0)


def _lorenz(rho, **kw):
    return equilibria(lorenz, LO3, HI3, args=rho, key=KEY, n_starts=N_STARTS, **kw)


def _is(result, code):
    return bool(np.all(codes(result) == codes(code)))


TRACES = []


def _lorenz_traced(rho):
    TRACES.append(rho)
    return _lorenz(rho, throw=False)


@pytest.fixture(scope="module")
def lorenz_jit():
    """One compiled entry for every rho (jit over the parameter); `TRACES` counts its traces."""
    return eqx.filter_jit(_lorenz_traced)


@pytest.fixture(scope="module")
def lorenz22(lorenz_jit):
    return lorenz_jit(jnp.asarray(22.0))


@pytest.fixture(scope="module")
def logistic_results():
    r = 3.2
    lo, hi = jnp.array([-0.5]), jnp.array([1.5])
    return (fixed_points(logistic, lo, hi, args=r, key=KEY, n_starts=16),
            cycles(logistic, 2, lo, hi, args=r, key=KEY, n_starts=16))


@pytest.fixture(scope="module")
def gd_results():
    """GD-map fixed points for eta = 0.3, 1 (the flip), 1.2: one vmapped call."""
    lo, hi = jnp.array([-1.5]), jnp.array([1.5])
    etas = jnp.array([0.3, 1.0, 1.2])
    return jax.vmap(lambda e: fixed_points(gd_map, lo, hi, args=e, key=KEY, n_starts=16, throw=False))(etas)


def _cplus(rho):
    c = np.sqrt(BETA * (rho - 1.0))
    return np.array([c, c, rho - 1.0])


# --- known answers -------------------------------------------------------------------------------
def test_lorenz_rho22_three_equilibria(lorenz22):
    res = lorenz22
    assert isinstance(res, EquilibriaResult) and isinstance(res, AbstractResult)
    assert _is(res.result, RESULTS.successful) and int(res.n_found) == 3
    pts = np.asarray(res.points[:3])
    np.testing.assert_allclose(pts[2], _cplus(22.0), rtol=1e-12)
    np.testing.assert_allclose(pts[0], _cplus(22.0) * [-1, -1, 1], rtol=1e-12)
    np.testing.assert_allclose(pts[1], 0.0, atol=1e-12)
    assert res.kind_names() == ["stable focus", "saddle", "stable focus"]
    assert np.asarray(res.indices[:3]).tolist() == [0, 1, 0]
    assert np.asarray(res.stable[:3]).tolist() == [True, False, True]
    assert not bool(jnp.any(res.non_hyperbolic))
    # the origin: -beta and (-(sigma+1) +- sqrt((sigma+1)^2 + 4 sigma (rho-1))) / 2
    disc = np.sqrt((SIGMA + 1) ** 2 + 4 * SIGMA * 21.0)
    want = np.sort([-BETA, (-(SIGMA + 1) + disc) / 2, (-(SIGMA + 1) - disc) / 2])[::-1]
    np.testing.assert_allclose(np.asarray(res.spectra[1]).real, want, rtol=1e-12)
    # C+-: one real eigenvalue and a complex pair, all in the left half-plane, roots of
    # l^3 + (sigma + beta + 1) l^2 + beta (sigma + rho) l + 2 sigma beta (rho - 1)
    for k in (0, 2):
        lam = np.asarray(res.spectra[k])
        assert np.all(lam.real < 0) and np.sum(np.abs(lam.imag) > 1e-8) == 2
        poly = lam**3 + (SIGMA + BETA + 1) * lam**2 + BETA * (SIGMA + 22.0) * lam + 2 * SIGMA * BETA * 21.0
        assert np.max(np.abs(poly)) < 1e-9
    # padding
    assert not bool(jnp.any(res.found[3:])) and bool(jnp.all(jnp.isnan(res.points[3:])))
    assert np.asarray(res.kinds[3:]).tolist() == [-1] * (N_STARTS - 3)
    assert float(jnp.max(res.residuals[:3])) < 1e-10


def test_lorenz_rho_half_one_stable_node(lorenz_jit):
    res = lorenz_jit(jnp.asarray(0.5))
    assert int(res.n_found) == 1 and res.kind_names() == ["stable node"]
    np.testing.assert_allclose(res.points[0], 0.0, atol=1e-12)
    disc = np.sqrt((SIGMA + 1) ** 2 + 4 * SIGMA * (0.5 - 1.0))
    want = np.sort([-BETA, (-(SIGMA + 1) + disc) / 2, (-(SIGMA + 1) - disc) / 2])[::-1]
    np.testing.assert_allclose(np.asarray(res.spectra[0]).real, want, rtol=1e-12)


def test_box_without_equilibria_both_throw_modes():
    lo, hi = jnp.array([1.0, 1.0, 1.0]), jnp.array([5.0, 5.0, 5.0])
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"No solution was found.*throw=False"):
        equilibria(lorenz, lo, hi, args=22.0, key=KEY, n_starts=N_STARTS)
    res = equilibria(lorenz, lo, hi, args=22.0, key=KEY, n_starts=N_STARTS, throw=False)
    assert _is(res.result, RESULTS.none_found) and not bool(res.successful)
    assert int(res.n_found) == 0 and int(res.n_converged) == 0
    assert "No solution was found" in res.summary()


def test_nonfinite_field_is_a_code():
    """log(y) - 1 on [-1, 3]: the root e is found, the starts at y < 0 met NaN."""
    field = lambda t, y, args: jnp.log(y) - 1.0
    lo, hi = jnp.array([-1.0]), jnp.array([3.0])
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        equilibria(field, lo, hi, key=KEY, n_starts=8)
    res = equilibria(field, lo, hi, key=KEY, n_starts=8, throw=False)
    assert _is(res.result, RESULTS.nonfinite_field)
    assert int(res.n_found) == 1 and abs(float(res.points[0, 0]) - np.e) < 1e-12


def test_logistic_fixed_points_and_two_cycle(logistic_results):
    r = 3.2
    fp, cy = logistic_results
    assert int(fp.n_found) == 2
    np.testing.assert_allclose(np.asarray(fp.points[:2, 0]), [0.0, 1 - 1 / r], atol=1e-13)
    np.testing.assert_allclose(np.asarray(fp.spectra[:2, 0]).real, [r, 2 - r], rtol=1e-12)
    assert fp.kind_names() == ["unstable node", "unstable node"]
    assert isinstance(fp.classification, MapClassification)

    assert isinstance(cy, CyclesResult) and cy.period == 2
    assert int(cy.n_found) == 1  # one orbit; the fixed points are not 2-cycles
    s = np.sqrt((r + 1) * (r - 3))
    np.testing.assert_allclose(np.asarray(cy.orbits[0, :, 0]), [(r + 1 - s) / (2 * r), (r + 1 + s) / (2 * r)],
                               rtol=1e-12)
    np.testing.assert_allclose(complex(cy.multipliers[0, 0]), -(r**2) + 2 * r + 4, atol=1e-12)
    assert cy.kind_names() == ["stable node"] and bool(cy.stable[0])
    np.testing.assert_allclose(cy.points[0], cy.orbits[0, 0])
    assert "cycle(s) of period 2" in cy.summary() and "0.513045" in cy.summary()


def test_gd_map_fixed_points_vmap_over_eta(gd_results):
    """x <- x - eta x (x^2 - 1): -1, 0, 1 with multipliers 1 - 2 eta, 1 + eta, 1 - 2 eta."""
    res = gd_results
    assert np.asarray(res.n_found).tolist() == [3, 3, 3]
    np.testing.assert_allclose(np.asarray(res.points[:, :3, 0]), [[-1, 0, 1]] * 3, atol=1e-13)
    for b, eta in enumerate((0.3, 1.0, 1.2)):
        mu = np.asarray(res.spectra[b, :3, 0]).real
        np.testing.assert_allclose(mu, [1 - 2 * eta, 1 + eta, 1 - 2 * eta], rtol=1e-12)
    # stable for eta < 1, unstable (flip) beyond
    assert np.asarray(res.stable[:, :3]).tolist() == [[True, False, True], [False, False, False],
                                                      [False, False, False]]
    assert "batch" in res.summary()


def test_gd_map_flip_at_eta_one_is_non_hyperbolic(gd_results):
    res = gd_results
    assert np.asarray(res.non_hyperbolic[:, :3]).tolist() == [[False] * 3, [True, False, True], [False] * 3]
    assert [KINDS[int(k)] for k in res.kinds[1, :3]] == ["non-hyperbolic", "unstable node", "non-hyperbolic"]
    np.testing.assert_allclose(np.asarray(res.spectra[1, [0, 2], 0]).real, [-1.0, -1.0], atol=1e-12)
    one = jax.tree_util.tree_map(lambda a: a[1], res)
    assert "non-hyperbolic" in one.summary()


def test_classification_strategies():
    s = jnp.array([0.5 + 1j, -2.0, 0.0])
    np.testing.assert_allclose(FlowClassification().margin(s), [0.5, -2.0, 0.0])
    np.testing.assert_allclose(MapClassification().margin(s), [np.sqrt(1.25) - 1, 1.0, -1.0])
    assert KINDS[4] == "saddle"


# --- transforms ----------------------------------------------------------------------------------
def test_jit_same_numbers_no_retrace(lorenz_jit, lorenz22):
    n = len(TRACES)
    b = lorenz_jit(jnp.asarray(23.0))
    c = lorenz_jit(jnp.asarray(24.0))
    assert len(TRACES) == n == 1  # traced once, by the fixture
    eager = _lorenz(jnp.asarray(22.0))
    np.testing.assert_allclose(lorenz22.points, eager.points, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(np.asarray(lorenz22.kinds), np.asarray(eager.kinds))
    np.testing.assert_allclose(b.points[2], _cplus(23.0), rtol=1e-12)
    np.testing.assert_allclose(c.points[2], _cplus(24.0), rtol=1e-12)


def test_vmap_over_rho(lorenz_jit):
    rhos = jnp.array([0.5, 22.0, 28.0])
    res = jax.vmap(lorenz_jit)(rhos)
    assert np.asarray(res.n_found).tolist() == [1, 3, 3]
    assert _is(res.result, RESULTS.successful)
    for b, rho in ((1, 22.0), (2, 28.0)):
        np.testing.assert_allclose(res.points[b, 2], _cplus(rho), rtol=1e-12)
    # rho = 28: C+- are unstable foci with a stable direction (saddle-foci of index 2)
    assert np.asarray(res.indices[2, :3]).tolist() == [2, 1, 2]


def test_grad_of_cplus_wrt_rho_implicit(lorenz_jit):
    """d C+ / d rho = (beta / (2 sqrt(beta (rho - 1))), same, 1): reverse mode (implicit adjoint)
    against the closed form and central differences."""
    rho = jnp.asarray(22.0)
    c = np.sqrt(BETA * 21.0)
    want = np.array([BETA / (2 * c), BETA / (2 * c), 1.0])
    w = jnp.array([1.0, 2.0, 3.0])
    rev = eqx.filter_jit(jax.grad(lambda r: jnp.dot(_lorenz(r, throw=False).points[2], w)))(rho)
    np.testing.assert_allclose(float(rev), want @ np.asarray(w), rtol=1e-10)
    fd = fd_directional(lambda r: lorenz_jit(r).points[2], rho, jnp.asarray(1.0), h=1e-3)
    np.testing.assert_allclose(fd, want, rtol=1e-8)


class _AffineField(eqx.Module):
    """y' = A y + b: one equilibrium, -A^{-1} b."""

    A: jax.Array
    b: jax.Array

    def __call__(self, t, y, args):
        return self.A @ y + self.b


def test_grad_wrt_the_fields_parameters():
    field = _AffineField(jnp.array([[-1.0, 2.0], [-0.5, -3.0]]), jnp.array([0.3, -0.2]))

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(f):
        return jnp.sum(equilibria(f, -jnp.ones(2), jnp.ones(2), key=KEY, n_starts=4).points[0])

    g = grad(field)
    A = np.asarray(field.A)
    x = -np.linalg.solve(A, np.asarray(field.b))
    w = -np.linalg.solve(A.T, np.ones(2))  # d sum(x) / d b
    np.testing.assert_allclose(g.b, w, rtol=1e-10)
    np.testing.assert_allclose(g.A, np.outer(w, x), rtol=1e-10)


# --- summary and plot ----------------------------------------------------------------------------
def test_summary_and_plot(lorenz22):
    text = lorenz22.summary()
    assert text.startswith("3 point(s) found") and "saddle (index 1)" in text and "7.483315" in text
    assert "eigenvalues" in text
    ax = lorenz22.plot(field=lorenz, args=22.0, dims=(0, 2), n_grid=9)
    assert ax is not None and ax.get_xlabel() == "$x_0$" and ax.get_ylabel() == "$x_2$"
    plt.close("all")
    _, given = plt.subplots()
    assert lorenz22.plot(given) is given
    plt.close("all")


def test_cycles_plot(logistic_results):
    fp, cy = logistic_results
    ax = cy.plot(field=logistic, args=3.2)
    assert ax is not None and len(ax.lines) == 1
    plt.close("all")
    assert fp.plot(field=logistic, args=3.2) is not None
    plt.close("all")
