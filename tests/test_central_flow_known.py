r"""Known answers of `central_flow` (issue 16) on a two-parameter loss with an explicit edge of
stability, against closed forms and an independent NumPy reference.

The toy loss (the issue's example) is

$$L_c(x, y) = \tfrac12 (1 + x^2) y^2 + \tfrac12 (x - c)^2,\qquad
H = \begin{pmatrix} 1 + y^2 & 2xy \\ 2xy & 1 + x^2 \end{pmatrix}.$$

Gradient flow drives $x \to c$ and $y \to 0$, so the sharpness $S \approx 1 + x^2$ grows along the
path (progressive sharpening) and meets $2/\eta$ at $x_\star = \sqrt{2/\eta - 1}$ when $c > x_\star$.
Closed forms (no autodiff; `_sharpness`, `_grad_sharpness`):

- $S = \tfrac{a + d}{2} + r$, $r = \sqrt{((a - d)/2)^2 + b^2}$ with $a = 1 + y^2$, $b = 2xy$,
  $d = 1 + x^2$; $\nabla S = \tfrac{\nabla a + \nabla d}{2} + \tfrac{(a - d)(\nabla a - \nabla d)/4
  + b \nabla b}{r}$.
- at the edge the scalar central flow has $\sigma^2 = -2 \langle \nabla S, \nabla L\rangle /
  \lVert\nabla S\rVert^2$ (positive when the gradient flow would raise $S$), which keeps
  $\tfrac{d}{dt} S = 0$: the flow is the gradient flow projected onto $\{S = 2/\eta\}$. On the
  axis $y = 0$: $\sigma^2 = (c - x_\star)/x_\star$, the flow is at rest at $(x_\star, 0)$ and the
  predicted loss is $\tfrac12 (x_\star - c)^2 + \sigma^2/\eta$. GD has the period-2 orbit
  $x = x_\star$, $y = \pm\sigma$ there (its oscillation variance is exactly $\sigma^2$).

`cf_reference` integrates that flow in NumPy with a fixed-step RK4 (1/8 step), locates the arrival
at the edge by bisection and projects back onto $\{S = 2/\eta\}$ after each step: an implementation
independent of jaxdyn's (no SDCP, no eigensolver, no diffrax).

The rate: for $\eta \in \{0.2, 0.1, 0.05, 0.025\}$ the family $c = 1.05\,x_\star(\eta)$ (so
$\sigma^2 = 0.05$ at every $\eta$), started four GD steps before the edge, $x_0 = x_\star - 4 \eta
(c - x_\star)$, $y_0 = 0.1$. GD's overshoot past the edge before its oscillation has grown
(self-stabilisation) is $\delta x \sim \sigma \sqrt{2 \log(\sigma / y)}$, so the relative error of
GD's two-step averages of the slow coordinate, $\max_t |\bar x_{GD} - \bar x_{CF}| / x_\star$,
shrinks like $\eta^{1/2}$; the fitted log-log slope is asserted to be positive (> 0.3) and printed.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.training import central_flow
from jaxdyn.training._central_flow import _RESTORING_RATE  # gamma, the documented restoring rate

# ------------------------------------------------------------------------------------------------
# The toy loss and its closed forms
# ------------------------------------------------------------------------------------------------


def toy_loss(w, c):
    """L_c(x, y) = (1 + x^2) y^2 / 2 + (x - c)^2 / 2; `c` is data of shape (1,)."""
    x, y = w[0], w[1]
    return 0.5 * (1 + x**2) * y**2 + 0.5 * (x - c[0]) ** 2


def pair_loss(w, c):
    """Two separable toy losses: params (x1, y1, x2, y2), `c` = (c1, c2)."""
    return toy_loss(w[:2], c[:1]) + toy_loss(w[2:], c[1:])


def edge_x(lr):
    """x_* = sqrt(2/lr - 1): where 1 + x^2 = 2/lr."""
    return np.sqrt(2.0 / lr - 1.0)


def _hess(w):
    x, y = w
    return 1 + y * y, 2 * x * y, 1 + x * x


def _sharpness(w):
    a, b, d = _hess(w)
    return (a + d) / 2 + np.sqrt(((a - d) / 2) ** 2 + b * b)


def _grad_sharpness(w):
    x, y = w
    a, b, d = _hess(w)
    r = np.sqrt(((a - d) / 2) ** 2 + b * b)
    da, dd, db = np.array([0.0, 2 * y]), np.array([2 * x, 0.0]), np.array([2 * y, 2 * x])
    return (da + dd) / 2 + ((a - d) * (da - dd) / 4 + b * db) / r


def _grad(w, c):
    x, y = w
    return np.array([x * y * y + x - c, (1 + x * x) * y])


def _loss(w, c):
    x, y = w
    return 0.5 * (1 + x * x) * y * y + 0.5 * (x - c) ** 2


def sigma2_closed(w, c):
    """The scalar central flow's sigma^2 at the edge: -2 <grad S, grad L> / |grad S|^2 (>= 0)."""
    gs, gl = _grad_sharpness(w), _grad(w, c)
    return max(0.0, -2.0 * (gs @ gl) / (gs @ gs))


def predicted_at_rest(lr, c):
    """L + sigma^2 S / 2 at the rest point (x_*, 0) of the flow on the edge."""
    xs = edge_x(lr)
    return 0.5 * (xs - c) ** 2 + (c - xs) / xs / lr


def gd_reference(w0, c, lr, n_steps):
    """GD in NumPy: the iterates w_0 .. w_n, shape (n + 1, 2)."""
    w = np.array(w0, float)
    out = [w.copy()]
    for _ in range(n_steps):
        w = w - lr * _grad(w, c)
        out.append(w.copy())
    return np.array(out)


def _rk4(f, w, h):
    k1 = f(w)
    k2 = f(w + h / 2 * k1)
    k3 = f(w + h / 2 * k2)
    k4 = f(w + h * k3)
    return w + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def cf_reference(w0, c, lr, n_steps, substeps=8):
    """The scalar central flow of the toy loss in NumPy (time in steps), saved at every step.

    Returns `(w, t_edge)`: `w` of shape (n + 1, 2) and the arrival time at the edge (inf if never).
    Off the edge: gradient flow dw/dt = -lr grad L; on it: the projection of -lr grad L onto the
    tangent of {S = 2/lr} (= -lr [grad L + sigma^2 grad S / 2]), RK4 with h = 1/substeps, the arrival
    located by bisection, a Newton projection back onto the edge after each step; the flow leaves
    the edge when sigma^2 would turn negative."""
    edge = 2.0 / lr

    def free(w):
        return -lr * _grad(w, c)

    def on_edge(w):
        gs, gl = _grad_sharpness(w), _grad(w, c)
        return -lr * (gl - (gs @ gl) / (gs @ gs) * gs)

    w = np.array(w0, float)
    out, h, t_edge = [w.copy()], 1.0 / substeps, np.inf
    for i in range(n_steps):
        for j in range(substeps):
            if t_edge < np.inf:
                w = _rk4(on_edge, w, h)
            elif _sharpness(_rk4(free, w, h)) >= edge:
                lo, hi = 0.0, h
                for _ in range(60):
                    mid = (lo + hi) / 2
                    lo, hi = (lo, mid) if _sharpness(_rk4(free, w, mid)) >= edge else (mid, hi)
                w = _rk4(on_edge, _rk4(free, w, lo), h - lo)
                t_edge = i + j * h + lo
            else:
                w = _rk4(free, w, h)
            if t_edge < np.inf:
                for _ in range(3):
                    gs = _grad_sharpness(w)
                    w = w - (_sharpness(w) - edge) * gs / (gs @ gs)
                if sigma2_closed(w, c) <= 0:
                    t_edge = np.inf
        out.append(w.copy())
    return np.array(out), t_edge


def two_step_average(w):
    """(w_n + w_{n+1}) / 2 along the leading axis."""
    return (w[:-1] + w[1:]) / 2


# ------------------------------------------------------------------------------------------------
# Shared compiled runs (module scope: one compilation for every step size)
# ------------------------------------------------------------------------------------------------

RATE_LRS = (0.2, 0.1, 0.05, 0.025)
RATE_STEPS = 120
C_FACTOR = 1.05


def rate_start(lr):
    xs = edge_x(lr)
    c = C_FACTOR * xs
    return np.array([xs - 4 * lr * (c - xs), 0.1]), c


@eqx.filter_jit
def _toy_flow(w0, c, lr, n_steps, k, optimizer, dt):
    return central_flow(toy_loss if k == 1 else pair_loss, w0, c, lr=lr, n_steps=n_steps, k=k,
                        optimizer=optimizer, dt=dt, compare=False, throw=False)


def run_toy(w0, c, lr, *, n_steps=RATE_STEPS, k=1, optimizer="gd", dt=None):
    """central_flow on the toy loss: `c` (a float or the pair) as data, `lr` traced."""
    return _toy_flow(jnp.asarray(w0, jnp.float64), jnp.atleast_1d(jnp.asarray(c, jnp.float64)),
                     jnp.asarray(lr, jnp.float64), n_steps, k, optimizer, dt)


@pytest.fixture(scope="module")
def rate_runs():
    runs = {}
    for lr in RATE_LRS:
        w0, c = rate_start(lr)
        # RK4 at the reference's step 1/8: the two discretisations agree before the edge
        res = run_toy(w0, c, lr, dt=0.125)
        ref, t_edge = cf_reference(w0, c, lr, RATE_STEPS)
        runs[lr] = dict(res=res, w0=w0, c=c, ref=ref, t_edge=t_edge,
                        gd=gd_reference(w0, c, lr, RATE_STEPS))
    return runs


def _edge_mask(run, settle=12.0):
    ts = np.asarray(run["res"].ts)
    return ts >= run["t_edge"] + settle


# ------------------------------------------------------------------------------------------------
# The reference itself (guards the guard)
# ------------------------------------------------------------------------------------------------


def test_reference_closed_forms():
    """grad S against central differences; sigma^2 on the axis equals (c - x_*)/x_*; the projected
    flow keeps S; GD's period-2 orbit (x_*, +-sigma) is exact."""
    w = np.array([3.2, 0.3])
    h = 1e-6
    fd = np.array([(_sharpness(w + h * e) - _sharpness(w - h * e)) / (2 * h) for e in np.eye(2)])
    np.testing.assert_allclose(_grad_sharpness(w), fd, rtol=1e-8)
    np.testing.assert_allclose(_sharpness(w), np.linalg.eigvalsh(
        np.array([[1 + 0.09, 2 * 3.2 * 0.3], [2 * 3.2 * 0.3, 1 + 3.2**2]]))[-1], rtol=1e-14)
    lr, c = 0.1, 5.0
    xs = edge_x(lr)
    assert sigma2_closed(np.array([xs, 0.0]), c) == pytest.approx((c - xs) / xs, rel=1e-14)
    s = np.sqrt((c - xs) / xs)
    orbit = gd_reference([xs, s], c, lr, 4)
    np.testing.assert_allclose(orbit[:, 0], xs, rtol=1e-13)
    np.testing.assert_allclose(orbit[:, 1], s * np.array([1, -1, 1, -1, 1]), rtol=1e-12)
    ref, t_edge = cf_reference([4.0, 0.1], c, lr, 30)
    assert 0 < t_edge < 10
    after = ref[int(np.ceil(t_edge)) + 1:]
    np.testing.assert_allclose([_sharpness(v) * lr for v in after], 2.0, rtol=1e-12)
    np.testing.assert_allclose(ref[-1], [xs, 0.0], atol=1e-9)


# ------------------------------------------------------------------------------------------------
# The known answers
# ------------------------------------------------------------------------------------------------


def test_sigma2_closed_form_and_sharpness_at_edge(rate_runs):
    """At the edge: sigma^2 = -2 <grad S, grad L>/|grad S|^2 at the flow's own point to 1e-10, the
    sharpness is 2/lr to 1e-8 (relative) and the predicted loss is L + sigma^2 S / 2 (once
    settled: the flow approaches the edge at the restoring rate gamma, e^(-gamma t)). While it
    settles, sigma^2 is the closed form with the restoring term, -2 (<grad S, grad L> + gamma
    (2 - lr S) / lr^2) / |grad S|^2, to 1e-12."""
    for lr, run in rate_runs.items():
        res, c = run["res"], run["c"]
        assert bool(res.successful), lr
        ws, sig = np.asarray(res.params), np.asarray(res.sigma)[:, 0]
        eff = np.asarray(res.eigenvalues)[:, 0]
        active = np.asarray(res.n_active) == 1
        assert np.all(active == (eff >= 1.95)), lr
        gs = np.array([_grad_sharpness(w) for w in ws])
        restoring = np.array([sigma2_closed(w, c) for w in ws]) - 2 * _RESTORING_RATE * (2 - eff) / (
            lr**2 * np.sum(gs * gs, axis=1))
        np.testing.assert_allclose(sig[active], np.maximum(restoring[active], 0.0), rtol=0, atol=1e-12,
                                   err_msg=f"sigma^2 with the restoring term at lr={lr}")
        mask = _edge_mask(run)
        assert mask.sum() > RATE_STEPS // 2, (lr, run["t_edge"])
        closed = np.array([sigma2_closed(w, c) for w in ws[mask]])
        np.testing.assert_allclose(sig[mask], closed, rtol=0, atol=1e-10, err_msg=f"sigma^2 at lr={lr}")
        np.testing.assert_allclose(np.asarray(res.sharpness)[mask] * lr / 2, 1.0, rtol=0, atol=1e-8,
                                   err_msg=f"sharpness at lr={lr}")
        np.testing.assert_allclose(eff[mask], 2.0, rtol=0, atol=1e-8)
        pred = np.array([_loss(w, c) + 0.5 * s * _sharpness(w) for w, s in zip(ws[mask], closed)])
        np.testing.assert_allclose(np.asarray(res.predicted_loss)[mask], pred, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(res.loss), [_loss(w, c) for w in ws], rtol=1e-12)
        np.testing.assert_array_equal(sig[~active], 0.0)


def test_flow_against_numpy_reference(rate_runs):
    """jaxdyn's flow and the independent NumPy RK4 reference: the same trajectory to 1e-9 of |w|
    before the edge and once settled on it. The arrival differs by design: the reference lands
    on the edge at once, the flow at the restoring rate (within 5e-3 of |w| over those steps)."""
    for lr, run in rate_runs.items():
        got, ref = np.asarray(run["res"].params), run["ref"]
        ts = np.asarray(run["res"].ts)
        np.testing.assert_allclose(ts, np.arange(RATE_STEPS + 1))
        err = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
        far = (ts < run["t_edge"] - 2.5) | (ts > run["t_edge"] + 12)
        assert err[far].max() < 1e-9, (lr, err[far].max(), ts[far][np.argmax(err[far])])
        assert err.max() < 5e-3, (lr, err.max())
        # at rest on the edge at the end: (x_*, 0)
        np.testing.assert_allclose(got[-1], [edge_x(lr), 0.0], rtol=1e-12, atol=1e-12)


def test_gd_two_step_averages_follow_the_flow(rate_runs):
    """GD's two-step averages of the slow coordinate x follow the central flow, with a relative
    error that shrinks with lr; the fitted log-log slope is printed (about 0.4: the overshoot of
    self-stabilisation ~ sigma sqrt(log(sigma/y)) over x_* ~ lr^(-1/2)). Gradient flow (the stable
    flow) is far off: it runs on to x = c."""
    errs = []
    for lr, run in rate_runs.items():
        gd_avg = two_step_average(run["gd"])[:, 0]
        cf_avg = two_step_average(np.asarray(run["res"].params))[:, 0]
        errs.append(np.max(np.abs(gd_avg - cf_avg)) / edge_x(lr))
    errs = np.array(errs)
    slope = np.polyfit(np.log(RATE_LRS), np.log(errs), 1)[0]
    print(f"\nGD two-step averages vs central flow: lr {RATE_LRS}, max relative error of x {errs}, "
          f"log-log slope {slope:.3f}")
    assert np.all(np.diff(errs) < 0), errs
    assert slope > 0.3, slope
    assert errs[-1] < 0.03, errs
    # over the last 20 steps GD's average sits at the flow's rest point x_*, much closer than
    # gradient flow's end point (near c = 1.05 x_*: relative distance 0.05)
    for lr, run in rate_runs.items():
        tail = two_step_average(run["gd"])[-20:, 0]
        assert np.max(np.abs(tail - edge_x(lr))) / edge_x(lr) < 0.2 * (C_FACTOR - 1), lr
    # and GD's loss, averaged over the last 20 steps, is the flow's predicted loss (on the exact
    # period-2 orbit they are equal), not the stable flow's (-> 0): closest where GD has settled
    for lr, tol in ((0.2, 1e-3), (0.1, 3e-2)):
        run = rate_runs[lr]
        gd_loss = np.mean([_loss(w, run["c"]) for w in run["gd"][-20:]])
        np.testing.assert_allclose(gd_loss, float(run["res"].predicted_loss[-1]), rtol=tol)


def test_before_edge_equals_gradient_flow():
    """Below the edge (lr S < threshold all the way: c = 2.5, lr = 0.1, lr (1 + c^2) = 0.725) the
    central flow is gradient flow: sigma = 0, predicted loss = loss, and the trajectory is the
    NumPy RK4 gradient flow at the same step to 1e-12, the exact flow (RK4 at 1/64) to 1e-8 of |w|."""
    lr, c, w0 = 0.1, 2.5, np.array([0.5, 1.0])
    res = run_toy(w0, c, lr, dt=0.125)  # the rate runs' compiled function
    ref, t_edge = cf_reference(w0, c, lr, RATE_STEPS)
    assert t_edge == np.inf
    fine, _ = cf_reference(w0, c, lr, RATE_STEPS, substeps=64)
    got = np.asarray(res.params)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got, fine, rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(res.sigma), 0.0)
    np.testing.assert_array_equal(np.asarray(res.n_active), 0)
    np.testing.assert_allclose(np.asarray(res.predicted_loss), np.asarray(res.loss), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(res.sharpness), [_sharpness(w) for w in got], rtol=1e-12)
    assert float(np.max(np.asarray(res.eigenvalues))) < 1.95


def test_two_directions_at_the_edge():
    """k = 2 on two separable toy losses with c1 != c2: both top eigenvalues held at 2/lr, and
    Sigma's eigenvalues are the two scalar closed forms (c_i - x_*)/x_* (descending)."""
    lr, c = 0.1, np.array([4.6, 5.0])
    w0 = np.array([4.2, 0.1, 4.0, 0.1])
    res = run_toy(w0, c, lr, n_steps=80, k=2)
    assert bool(res.successful)
    xs = edge_x(lr)
    end = np.asarray(res.params)[-1]
    np.testing.assert_allclose(end, [xs, 0.0, xs, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(res.eigenvalues)[-10:], 2.0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(res.sharpness)[-10:] * lr, 2.0, atol=1e-8)
    want = np.sort((c - xs) / xs)[::-1]
    np.testing.assert_allclose(np.asarray(res.sigma)[-1], want, rtol=1e-8)
    np.testing.assert_array_equal(np.asarray(res.n_active)[-1], 2)
    np.testing.assert_allclose(float(res.predicted_loss[-1]),
                               predicted_at_rest(lr, c[0]) + predicted_at_rest(lr, c[1]), rtol=1e-8)


def test_scalar_rmsprop_holds_effective_sharpness_at_two():
    """Scalar RMSProp on the toy: started above the edge (nu after one update is small), the
    effective sharpness lr S / sqrt(nu) is brought down to 2 and held there (to the integrator's
    error, 1e-5 at the default step) while nu keeps growing and sigma^2 > 0."""
    lr, c = 0.1, np.array([5.0])
    res = run_toy(np.array([4.0, 0.1]), c, lr, n_steps=80, optimizer="rmsprop_scalar")
    assert bool(res.successful)
    eff = np.asarray(res.eigenvalues)[:, 0]
    at = int(np.flatnonzero(np.abs(eff - 2.0) < 1e-3)[0])
    assert at < 10, eff
    np.testing.assert_allclose(eff[at + 4:], 2.0, atol=1e-5)
    assert np.all(np.asarray(res.sigma)[at:, 0] > 0)
    assert np.all(np.asarray(res.n_active)[at:] == 1)
    nu = np.asarray(res.opt_state)[:, 0]
    assert np.all(np.diff(nu[at:]) > 0)
    # the raw sharpness is at the moving edge 2 sqrt(nu) / lr
    np.testing.assert_allclose(np.asarray(res.sharpness)[at + 4:], 2 * np.sqrt(nu[at + 4:]) / lr, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(res.threshold), 2 * np.sqrt(nu) / lr, rtol=1e-12)


def test_predicted_loss_at_rest_closed_form():
    """The flow at rest on the edge: predicted loss = (x_* - c)^2/2 + sigma^2/lr, for three step
    sizes of one compiled run (120 steps, at rest after ~30)."""
    c = 5.0
    for lr in (0.09, 0.1, 0.11):
        res = run_toy(np.array([4.0, 0.1]), c, lr, dt=0.125)  # the rate runs' compiled function
        np.testing.assert_allclose(float(res.predicted_loss[-1]), predicted_at_rest(lr, c), rtol=1e-9)
        np.testing.assert_allclose(float(res.sigma[-1, 0]), (c - edge_x(lr)) / edge_x(lr), rtol=1e-9)


def test_comparison_fields_against_numpy():
    """`compare=True`: `gd_loss` is GD's loss at every step (NumPy GD to 1e-12), `gd_distance` is
    |w_GD(t) - w_CF(t)| and `flow_distance` / `flow_loss` are those of gradient flow (the NumPy
    RK4 flow at 1/64 step, which never stops at the edge)."""
    lr, n = 0.2, 40
    w0, c = rate_start(lr)
    res = central_flow(toy_loss, jnp.asarray(w0), jnp.array([c]), lr=lr, n_steps=n, every=2)
    assert bool(res.successful)
    gd = gd_reference(w0, c, lr, n)
    np.testing.assert_allclose(np.asarray(res.gd_loss), [_loss(w, c) for w in gd], rtol=1e-12)
    cf_w = np.asarray(res.params)
    np.testing.assert_allclose(np.asarray(res.gd_distance), np.linalg.norm(gd[::2] - cf_w, axis=1),
                               rtol=1e-10, atol=1e-12)
    edge = 2.0 / lr
    w, gf = np.array(w0, float), [np.array(w0, float)]
    for _ in range(n):
        for _ in range(64):
            w = _rk4(lambda v: -lr * _grad(v, c), w, 1.0 / 64)
        gf.append(w.copy())
    gf = np.array(gf)[::2]
    assert _sharpness(gf[-1]) > 1.02 * edge  # gradient flow runs past the edge
    np.testing.assert_allclose(np.asarray(res.flow_distance), np.linalg.norm(gf - cf_w, axis=1),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(res.flow_loss), [_loss(v, c) for v in gf], rtol=1e-6, atol=1e-9)


def test_adaptive_steps_same_known_answers():
    """An adaptive solver (Tsit5 with a PID controller) gives the same known answers: at rest on
    the edge, x = x_*, sharpness 2/lr to 1e-8, sigma^2 = (c - x_*)/x_* and the predicted loss to
    1e-9; before the edge it is the NumPy gradient flow."""
    import diffrax

    lr, c, w0 = 0.1, 5.0, np.array([4.0, 0.1])
    res = central_flow(toy_loss, jnp.asarray(w0), jnp.array([c]), lr=lr, n_steps=40, compare=False,
                       solver=diffrax.Tsit5(),
                       stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12))
    assert bool(res.successful)
    xs = edge_x(lr)
    np.testing.assert_allclose(np.asarray(res.params)[-1], [xs, 0.0], atol=1e-9)
    np.testing.assert_allclose(float(res.sharpness[-1]) * lr, 2.0, atol=1e-8)
    np.testing.assert_allclose(float(res.sigma[-1, 0]), (c - xs) / xs, rtol=1e-8)
    np.testing.assert_allclose(float(res.predicted_loss[-1]), predicted_at_rest(lr, c), rtol=1e-9)
    ref, t_edge = cf_reference(w0, c, lr, 40, substeps=64)
    before = np.asarray(res.ts) < t_edge - 1.0  # S = 0 until lr S ~ 2 - 0.03 here
    assert before.sum() >= 3, t_edge
    np.testing.assert_allclose(np.asarray(res.params)[before], ref[before], rtol=1e-8, atol=1e-10)
