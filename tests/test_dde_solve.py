"""jaxdyn.dde.solve against exact piecewise-polynomial solutions, Lambert-W growth rates, transforms."""

import itertools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import Polynomial
from scipy.special import lambertw

import jaxdyn.dde as dde
from jaxdyn._results import RESULTS

T1 = 5.0
SAVE = np.linspace(0.0, T1, 501)
SQRT2 = float(np.sqrt(2.0))


def exact_linear_dde(delays, coeffs, t1):
    """Exact solution of x' = -sum_i c_i x(t - tau_i), x = 1 for t <= 0, by the method of steps.

    The breaking points B = {sum_i n_i tau_i <= t1} are closed under adding any tau_i, so on each
    interval [b_j, b_{j+1}] every delayed argument t - tau_i stays in one earlier interval (or the
    history) and x is a polynomial there: x(t) = x(b_j) - int_{b_j}^t sum_i c_i x(s - tau_i) ds.
    """
    pts = {0.0}
    for n in itertools.product(range(int(t1 / min(delays)) + 2), repeat=len(delays)):
        b = float(np.dot(n, delays))
        if b < t1:
            pts.add(b)
    bounds = sorted(pts) + [t1]
    pieces = []  # (a, b, polynomial in t)

    def piece_at(s):
        if s <= 0.0:
            return Polynomial([1.0])
        for a, b, p in pieces:
            if a - 1e-12 <= s <= b + 1e-12:
                return p
        raise AssertionError(s)

    x_a = 1.0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        mid = 0.5 * (a + b)
        rhs = Polynomial([0.0])
        for tau, c in zip(delays, coeffs, strict=True):
            rhs = rhs - c * piece_at(mid - tau)(Polynomial([-tau, 1.0]))
        p = x_a + rhs.integ(lbnd=a)
        pieces.append((a, b, p))
        x_a = p(b)

    def x(t):
        t = np.atleast_1d(np.asarray(t, dtype=float))
        out = np.empty_like(t)
        for k, s in enumerate(t):
            out[k] = 1.0 if s <= 0 else piece_at(s)(s)
        return out

    return x


def single_field(t, y, yd, args):
    return -args * yd[0]


def double_field(t, y, yd, args):
    return -yd[0] - 0.5 * yd[1]


@pytest.fixture(scope="module")
def exact_single():
    return exact_linear_dde([1.0], [1.0], T1)(SAVE)


@pytest.fixture(scope="module")
def fixed_bosh3():
    @eqx.filter_jit
    def run(dt0):
        return dde.solve(single_field, jnp.array(1.0), jnp.array([1.0]), 0.0, T1, dt0=dt0,
                         args=jnp.array(1.0), saveat=jnp.asarray(SAVE), solver=diffrax.Bosh3(),
                         max_steps=512).ys

    return run


@pytest.fixture(scope="module")
def adaptive_tsit5():
    @eqx.filter_jit
    def run(field, delays, t1, saveat, args, rtol):
        ctrl = diffrax.PIDController(rtol=rtol, atol=rtol)
        return dde.solve(field, jnp.array(1.0), delays, 0.0, t1, dt0=0.01, args=args, saveat=saveat,
                         solver=diffrax.Tsit5(), stepsize_controller=ctrl, max_steps=1024)

    return run


def test_exact_solution_adaptive(adaptive_tsit5, exact_single):
    sol = adaptive_tsit5(single_field, jnp.array([1.0]), T1, jnp.asarray(SAVE), jnp.array(1.0), 1e-10)
    err = np.max(np.abs(np.asarray(sol.ys) - exact_single))
    print(f"single delay, Tsit5 rtol=atol=1e-10: max error {err:.2e}, stats {sol.stats}")
    assert sol.result == RESULTS.successful
    assert err <= 1e-8


def test_fixed_step_order(fixed_bosh3, exact_single):
    dts = np.array([0.1, 0.05, 0.025, 0.0125])
    errs = np.array([np.max(np.abs(np.asarray(fixed_bosh3(jnp.asarray(dt))) - exact_single)) for dt in dts])
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    print(f"Bosh3 fixed step: errors {errs}, slope {slope:.3f}")
    assert abs(slope - 3.0) < 0.3


def test_two_delays_exact(adaptive_tsit5):
    exact = exact_linear_dde([1.0, SQRT2], [1.0, 0.5], T1)(SAVE)
    sol = adaptive_tsit5(double_field, jnp.array([1.0, SQRT2]), T1, jnp.asarray(SAVE), None, 1e-10)
    err = np.max(np.abs(np.asarray(sol.ys) - exact))
    print(f"two delays, Tsit5 rtol=atol=1e-10: max error {err:.2e}")
    assert sol.result == RESULTS.successful
    assert err <= 1e-8


@pytest.mark.parametrize("tau", [0.2, 1.0, 1.4, 2.0])
def test_growth_rate_lambert_w(adaptive_tsit5, tau):
    t1 = 60.0
    ts = np.linspace(0.0, t1, 6001)
    sol = adaptive_tsit5(single_field, jnp.array([tau]), t1, jnp.asarray(ts), jnp.array(1.0), 1e-9)
    assert sol.result == RESULTS.successful
    x = np.abs(np.asarray(sol.ys))
    late = ts >= 30.0
    t_late, x_late = ts[late], x[late]
    peaks = (x_late[1:-1] >= x_late[:-2]) & (x_late[1:-1] >= x_late[2:])
    if peaks.sum() >= 3:  # oscillatory: fit the envelope through the local maxima of |x|
        t_fit, x_fit = t_late[1:-1][peaks], x_late[1:-1][peaks]
    else:  # monotone decay (a tau < 1/e)
        t_fit, x_fit = t_late, x_late
    rate = np.polyfit(t_fit, np.log(x_fit), 1)[0]
    expected = lambertw(-tau).real / tau
    print(f"tau={tau}: fitted growth rate {rate:.5f}, Re W0(-tau)/tau = {expected:.5f}")
    assert abs(rate - expected) < 5e-4
    assert (rate < 0) == (tau < np.pi / 2)


def test_gradients_match_finite_differences():
    """Reverse mode (default adjoint: checkpointed loop) against central differences; forward mode
    (`DirectAdjoint`: bounded loop) against reverse mode."""
    saveat = jnp.array([1.0, 2.0, 3.0])

    def loss(a, delays, h0, adjoint=None):
        history = lambda t: h0 * jnp.cos(t)  # noqa: E731
        ys = dde.solve(single_field, history, delays, 0.0, 3.0, dt0=0.1, args=a, saveat=saveat,
                       solver=diffrax.Bosh3(), max_steps=128, adjoint=adjoint).ys
        return jnp.sum(ys**2) + jnp.sum(ys)

    loss_jit = jax.jit(loss)
    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    a, delays, h0 = jnp.array(0.8), jnp.array([0.95]), jnp.array(1.3)
    ga, gd, gh = grad_fn(a, delays, h0)
    eps = np.finfo(float).eps ** (1 / 3)
    fd_a = (loss_jit(a + eps, delays, h0) - loss_jit(a - eps, delays, h0)) / (2 * eps)
    fd_d = (loss_jit(a, delays + eps, h0) - loss_jit(a, delays - eps, h0)) / (2 * eps)
    fd_h = (loss_jit(a, delays, h0 + eps) - loss_jit(a, delays, h0 - eps)) / (2 * eps)
    print(f"grad a {float(ga):.8f} fd {float(fd_a):.8f}; grad tau {float(gd[0]):.8f} fd {float(fd_d):.8f}; "
          f"grad history {float(gh):.8f} fd {float(fd_h):.8f}")
    assert abs(ga - fd_a) < 1e-4 * abs(fd_a)
    assert abs(gd[0] - fd_d) < 1e-4 * abs(fd_d)
    assert abs(gh - fd_h) < 1e-4 * abs(fd_h)
    # forward mode (the loop is bounded, as diffrax's DirectAdjoint) agrees with reverse mode
    _, tangent = jax.jvp(lambda a, d: loss(a, d, h0, diffrax.DirectAdjoint()), (a, delays),
                         (jnp.array(0.0), jnp.array([1.0])))
    np.testing.assert_allclose(tangent, gd[0], rtol=1e-10)
    with pytest.raises(TypeError, match="`adjoint`"):
        loss(a, delays, h0, diffrax.BacksolveAdjoint())


def linear_field(t, y, yd, args):
    return args @ yd[0] - 0.1 * y


def test_jit_no_retrace_and_vmap():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(history, m):
        return dde.solve(linear_field, history, jnp.array([0.7]), 0.0, 2.0, dt0=0.1, args=m,
                         saveat=jnp.linspace(0.0, 2.0, 5), solver=diffrax.Bosh3(), max_steps=64).ys

    m = jnp.array([[0.0, 1.0], [-1.0, -0.2]])
    histories = jnp.array([[1.0, 0.0], [0.5, -1.0], [2.0, 3.0]])
    looped = np.stack([np.asarray(run(h, m)) for h in histories])
    run(histories[0], 2 * m)  # new values, same shapes: no retrace
    batched = jax.vmap(run, in_axes=(0, None))(histories, m)
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-12, atol=1e-14)
    # shared steps: with constant steps every member takes the steps it takes alone
    shared = dde.solve_batch(linear_field, histories, jnp.array([0.7]), 0.0, 2.0, dt0=0.1, args=m,
                             saveat=jnp.linspace(0.0, 2.0, 5), solver=diffrax.Bosh3(), max_steps=64).ys
    assert shared.shape == (5, 3, 2)
    np.testing.assert_allclose(np.moveaxis(np.asarray(shared), 1, 0), looped, rtol=1e-12, atol=1e-14)


def test_solve_batch_adaptive_exact(exact_single):
    """x' = -x(t - 1) is linear: from the constant history c the solution is c x_1(t). Shared adaptive
    steps with the largest member-wise error norm: every member meets the tolerance."""
    cs = jnp.array([0.5, 1.0, -2.0, 4.0])
    sol = dde.solve_batch(single_field, cs, jnp.array([1.0]), 0.0, T1, dt0=0.01, args=jnp.array(1.0),
                          saveat=jnp.asarray(SAVE), max_steps=1024,
                          stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))
    assert sol.result == RESULTS.successful
    err = np.abs(np.asarray(sol.ys) - np.asarray(cs)[None, :] * exact_single[:, None]).max(axis=0)
    print(f"solve_batch members: max errors {err}, stats {sol.stats}")
    assert np.all(err <= 1e-8 * np.abs(np.asarray(cs)))
    np.testing.assert_allclose(sol.evaluate(2.5), np.asarray(cs) * exact_linear_dde([1.0], [1.0], T1)(2.5),
                               rtol=1e-8)


def test_dense_coefficients_reproduce_interpolants():
    """The buffer's centred monomial coefficients reproduce each solver's own dense interpolant."""
    from jaxdyn.dde._history import dense_matrix, horner, step_coefficients

    rng = np.random.default_rng(0)
    theta = np.linspace(0.0, 1.0, 7)
    for solver in (diffrax.Tsit5(), diffrax.Bosh3(), diffrax.Dopri8()):
        y0, y1 = jnp.asarray(rng.normal(size=2)), jnp.asarray(rng.normal(size=2))
        ks = jnp.asarray(rng.normal(size=(solver.tableau.num_stages, 2)))
        coeffs = step_coefficients(dense_matrix(solver, max(3, solver.order(None))), y0, y1, ks)
        a, b = jnp.array(0.3), jnp.array(0.9)
        interp = solver.interpolation_cls(t0=a, t1=b, y0=y0, y1=y1, k=ks)
        exact = jax.jit(jax.vmap(interp.evaluate))(a + jnp.asarray(theta) * (b - a))
        approx = jax.vmap(lambda x, c=coeffs: horner(c, x))(2 * jnp.asarray(theta) - 1)
        np.testing.assert_allclose(approx, exact, rtol=0, atol=1e-13, err_msg=type(solver).__name__)


def test_breaking_points():
    bps = np.asarray(dde.breaking_points(0.0, 3.0, jnp.array([1.0, SQRT2]), 2))
    expected = sorted({0.0 + n1 + n2 * SQRT2 for n1 in range(3) for n2 in range(3)
                       if 1 <= n1 + n2 <= 2 and 0 < n1 + n2 * SQRT2 < 3})
    np.testing.assert_allclose(bps[np.isfinite(bps)], expected + [3.0])


def test_dense_output_and_history():
    sol = dde.solve(single_field, lambda t: jnp.cos(t), jnp.array([1.0]), 0.0, 2.0, dt0=0.05,
                    args=jnp.array(1.0), solver=diffrax.Bosh3(), max_steps=64)
    ts = jnp.array([-0.5, 0.0, 0.3, 2.0])
    ys = sol.evaluate(ts)
    assert ys.shape == (4,)
    np.testing.assert_allclose(jax.vmap(sol.evaluate)(ts), ys, rtol=1e-14)
    np.testing.assert_allclose(ys[:2], np.cos([-0.5, 0.0]))
    np.testing.assert_allclose(ys[3], sol.ys[0], rtol=1e-12)
    # on [0, 1]: x' = -cos(t - 1), x(0) = 1  =>  x = 1 - sin(t - 1) - sin(1)
    np.testing.assert_allclose(ys[2], 1 - np.sin(0.3 - 1) - np.sin(1), atol=1e-6)


def test_max_steps_reported():
    sol = dde.solve(single_field, jnp.array(1.0), jnp.array([1.0]), 0.0, 5.0, dt0=0.1, args=jnp.array(1.0),
                    solver=diffrax.Bosh3(), max_steps=10, throw=False)
    assert sol.result == RESULTS.max_steps_reached
    assert int(sol.stats["num_accepted_steps"]) == 10
    with pytest.raises(Exception, match="max_steps"):
        dde.solve(single_field, jnp.array(1.0), jnp.array([1.0]), 0.0, 5.0, dt0=0.1, args=jnp.array(1.0),
                  solver=diffrax.Bosh3(), max_steps=10)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delays": jnp.array([1.0, -0.5])}, "delays"),
        ({"delays": jnp.array([0.0])}, "delays"),
        ({"delays": jnp.array([[1.0]])}, "delays"),
        ({"history": jnp.ones(3)}, "history"),
        ({"history": lambda t: "nope"}, "history"),
        ({"field": lambda t, y, yd, args: yd[1]}, "field"),
        ({"field": lambda t, y, args: y}, "field"),
        ({"field": lambda t, y, yd, args: jnp.ones(3)}, "field"),
        ({"t1": -1.0}, "t1"),
        ({"dt0": 0.0}, "dt0"),
        ({"dt0": -0.1}, "dt0"),
        ({"solver": diffrax.Kvaerno5()}, "solver"),
    ],
)
def test_bad_input(kwargs, name):
    call = {"field": lambda t, y, yd, args: -jnp.eye(2) @ yd[0], "history": jnp.ones(2),
            "delays": jnp.array([1.0]), "t0": 0.0, "t1": 1.0, "dt0": 0.1}
    call.update(kwargs)
    field, history, delays, t0, t1 = (call.pop(k) for k in ("field", "history", "delays", "t0", "t1"))
    with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
        dde.solve(field, history, delays, t0, t1, **call)


@pytest.mark.parametrize(
    ("histories", "field", "name"),
    [
        (jnp.array(1.0), lambda t, y, yd, args: -yd[0], "histories"),
        (jnp.ones((3, 1)), lambda t, y, yd, args: jnp.ones(2), "field"),
        (jnp.ones((3, 1)), lambda t, y, args: y, "field"),
        (jnp.ones((3, 1)), lambda t, y, yd, args: -yd[0], "delays"),
    ],
)
def test_solve_batch_bad_input(histories, field, name):
    delays = jnp.array([-1.0]) if name == "delays" else jnp.array([1.0])
    with pytest.raises(ValueError, match=f"`{name}`"):
        dde.solve_batch(field, histories, delays, 0.0, 1.0, dt0=0.1)
