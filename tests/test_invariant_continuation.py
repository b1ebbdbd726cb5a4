"""Pseudo-arclength continuation: known special points, branch switching, transforms, results.

Known answers: Lorenz (sigma 10, beta 8/3) has a pitchfork at rho = 1 on the origin branch and a Hopf
point at rho = sigma (sigma + beta + 3)/(sigma - beta - 1) on C+; the logistic map flips at r = 3 and
its period-2 cycle at r = 1 + sqrt(6); the GD map of L(x) = (x^2 - 1)^2/4 flips at eta = 1 at x = 1;
f = p - x^2 folds at p = 0. Each problem is one module-level object so that its compiled loop is
shared by the tests (the loop is cached per problem and static settings).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from jaxdyn._results import RESULTS
from jaxdyn.invariant import (
    ArnoldiEigenvalues,
    BranchResult,
    BranchStart,
    EquilibriumProblem,
    FixedPointProblem,
    continuation,
    switch_branch,
)

matplotlib.use("Agg")


def lorenz(t, y, a):
    return jnp.array([a["sigma"] * (y[1] - y[0]), y[0] * (a["rho"] - y[2]) - y[1],
                      y[0] * y[1] - a["beta"] * y[2]])


def _rho(a, p):
    return {**a, "rho": p}


def logistic(x, r):
    return r * x * (1 - x)


def gd(x, eta):
    return x - eta * x * (x**2 - 1)


def fold_field(t, y, p):
    return p - y**2


BETA = 8 / 3
LORENZ = EquilibriumProblem(lorenz, parameter=_rho)
ARGS = {"sigma": jnp.asarray(10.0), "beta": jnp.asarray(BETA)}
L_SET = dict(p_min=0.0, p_max=30.0, n_steps=60, ds_max=2.0)
LOGISTIC = FixedPointProblem(logistic)
GD = FixedPointProblem(gd)
M_SET = dict(n_steps=40, ds=0.02, ds_max=0.1)
FOLD = EquilibriumProblem(fold_field)
F_SET = dict(p_min=-1.0, p_max=2.0, n_steps=30, ds=0.1, ds_max=0.3, direction=-1)


def _hopf_rho(sigma):
    return sigma * (sigma + BETA + 3) / (sigma - BETA - 1)


def _kinds(branch):
    return [kind for kind, _, _ in branch.specials()]


@pytest.fixture(scope="module")
def origin():
    return continuation(LORENZ, jnp.zeros(3), 0.5, args=ARGS, **L_SET)


@pytest.fixture(scope="module")
def c_plus(origin):
    return continuation(switch_branch(origin, 0, amplitude=0.1), args=ARGS, **L_SET)


@pytest.fixture(scope="module")
def logistic_branches():
    one = continuation(LOGISTIC, jnp.array([1 - 1 / 2.7]), 2.7, p_min=2.5, p_max=3.2, **M_SET)
    two = continuation(switch_branch(one, 0, amplitude=1e-2), p_min=2.9, p_max=3.6, **M_SET)
    return one, two


@pytest.fixture(scope="module")
def gd_branches():
    one = continuation(GD, jnp.array([1.0]), 0.5, p_min=0.1, p_max=1.3, **M_SET)
    two = continuation(switch_branch(one, 0, amplitude=1e-2), p_min=0.5, p_max=1.5, **M_SET)
    return one, two


@pytest.fixture(scope="module")
def fold():
    return continuation(FOLD, jnp.array([1.0]), 1.0, **F_SET)


def test_lorenz_branch_point_on_the_origin(origin):
    assert isinstance(origin, BranchResult) and origin.successful
    # one special point: the pitchfork (the neutral saddle at rho = 4.64 is not a Hopf point)
    assert _kinds(origin) == ["branch_point"]
    assert abs(float(origin.special_p[0]) - 1.0) < 1e-8
    assert float(jnp.max(jnp.abs(origin.special_u[0]))) < 1e-8
    n = int(origin.n_points)
    p, stable = np.asarray(origin.p[:n]), np.asarray(origin.stable[:n])
    assert stable[p < 1].all() and not stable[p > 1].any()
    assert np.all(np.asarray(origin.n_unstable[:n])[p > 1] == 1)


def test_lorenz_hopf_on_c_plus_after_switching(c_plus):
    assert c_plus.successful and _kinds(c_plus) == ["hopf"]  # the node-to-focus change is dropped
    assert abs(float(c_plus.special_p[0]) - _hopf_rho(10.0)) < 1e-6
    n = int(c_plus.n_points)
    u, p = np.asarray(c_plus.u[:n]), np.asarray(c_plus.p[:n])
    np.testing.assert_allclose(u[:, 0], np.sqrt(BETA * (p - 1)), atol=1e-8)  # C+: x = y > 0
    np.testing.assert_allclose(u[:, 1], u[:, 0], atol=1e-8)
    np.testing.assert_allclose(u[:, 2], p - 1, atol=1e-8)
    stable = np.asarray(c_plus.stable[:n])
    assert stable[p < _hopf_rho(10.0)].all() and not stable[p > _hopf_rho(10.0)].any()
    eig = np.asarray(c_plus.special_spectrum[0])
    critical = eig[np.argmin(np.abs(eig.real))]
    assert abs(critical.real) < 1e-6 and abs(critical.imag) > 1.0


def test_matrix_free_path_agrees_on_the_branch_point(origin):
    free = continuation(LORENZ, jnp.zeros(3), 0.5, args=ARGS, dense_max_dim=0, **L_SET)
    assert free.successful and _kinds(free) == ["branch_point"]
    assert abs(float(free.special_p[0]) - 1.0) < 1e-8
    assert abs(float(free.special_p[0]) - float(origin.special_p[0])) < 1e-8
    n = int(origin.n_points)
    assert int(free.n_points) == n
    np.testing.assert_allclose(free.p[:n], origin.p[:n], atol=1e-8)


def test_singular_start_both_throw_modes():
    with pytest.raises(eqx.EquinoxRuntimeError, match="Jacobian is singular at the start"):
        continuation(LORENZ, jnp.zeros(3), 1.0, args=ARGS, **L_SET)
    out = continuation(LORENZ, jnp.zeros(3), 1.0, args=ARGS, throw=False, **L_SET)
    assert out.result == RESULTS.singular_jacobian and int(out.n_points) == 0
    assert "singular" in out.summary()


def test_logistic_period_doublings(logistic_branches):
    one, two = logistic_branches
    assert _kinds(one) == ["period_doubling"] and abs(float(one.special_p[0]) - 3.0) < 1e-8
    assert _kinds(two) == ["period_doubling"]
    assert abs(float(two.special_p[0]) - (1 + np.sqrt(6))) < 1e-8
    assert two.problem.period == 2
    n = int(two.n_points)
    x, r = np.asarray(two.u[:n, 0]), np.asarray(two.p[:n])
    np.testing.assert_allclose(logistic(logistic(x, r), r), x, atol=1e-10)  # period-2 points...
    assert np.all(np.abs(logistic(x, r) - x)[1:] > 1e-3)  # ... that are not fixed points
    assert abs(complex(two.special_spectrum[0][0]) + 1) < 1e-8  # the multiplier -1 at the flip


def test_gd_map_flip_at_eta_one_and_its_period_two_branch(gd_branches):
    one, two = gd_branches
    assert _kinds(one) == ["period_doubling"]
    assert abs(float(one.special_p[0]) - 1.0) < 1e-10
    assert abs(float(one.special_u[0, 0]) - 1.0) < 1e-12  # x = 1 is a fixed point for every eta
    n = int(one.n_points)
    p = np.asarray(one.p[:n])
    assert np.asarray(one.stable[:n])[p < 1].all() and not np.asarray(one.stable[:n])[p > 1].any()
    n2 = int(two.n_points)
    x, eta = np.asarray(two.u[:n2, 0]), np.asarray(two.p[:n2])
    assert n2 > 5 and eta.max() > 1.2
    np.testing.assert_allclose(gd(gd(x, eta), eta), x, atol=1e-10)
    assert np.all(np.abs(gd(x, eta) - x)[2:] > 1e-3)
    assert abs(complex(two.special_spectrum[0][0]) + 1) < 1e-8  # its own flip...
    assert abs(float(two.special_p[0]) - (np.sqrt(5) - 1)) < 1e-8  # ... at eta = sqrt(5) - 1


def delayed_logistic(x, r):
    return jnp.array([r * x[0] * (1 - x[1]), x[0]])


def test_neimark_sacker_of_the_delayed_logistic_map():
    """x' = r x (1 - y), y' = x: the fixed point 1 - 1/r has multipliers of modulus sqrt(r - 1), a
    complex pair for r > 5/4 (the real pair meeting there is dropped) crossing the circle at r = 2
    at exp(+-i pi/3)."""
    branch = continuation(FixedPointProblem(delayed_logistic), jnp.full(2, 1 - 1 / 1.1), 1.1, p_min=1.05,
                          p_max=2.3, ds=0.05, ds_max=0.1, n_steps=40)
    assert _kinds(branch) == ["neimark_sacker"]
    assert abs(float(branch.special_p[0]) - 2.0) < 1e-10
    np.testing.assert_allclose(np.sort_complex(np.asarray(branch.special_spectrum[0])),
                               np.sort_complex(np.exp(np.array([-1j, 1j]) * np.pi / 3)), atol=1e-10)


def test_fold(fold):
    assert fold.successful and _kinds(fold) == ["fold"]
    assert abs(float(fold.special_p[0])) < 1e-10
    assert abs(float(fold.special_u[0, 0])) < 1e-5
    n = int(fold.n_points)
    x, stable = np.asarray(fold.u[:n, 0]), np.asarray(fold.stable[:n])
    assert x.min() < -0.5  # went round the fold onto the lower half
    assert stable[x > 1e-6].all() and not stable[x < -1e-6].any()


def test_jit_without_retrace(fold):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(u0, p0):
        return continuation(FOLD, u0, p0, **F_SET)

    first = run(jnp.array([1.0]), jnp.asarray(1.0))
    second = run(jnp.array([np.sqrt(1.2)]), jnp.asarray(1.2))
    assert abs(float(first.special_p[0]) - float(fold.special_p[0])) < 1e-12
    np.testing.assert_allclose(first.p[: int(first.n_points)], fold.p[: int(fold.n_points)], atol=1e-12)
    assert abs(float(second.special_p[0])) < 1e-10


def test_progress_bar(fold, capsys):
    out = continuation(FOLD, jnp.array([1.0]), 1.0, progress=True, **F_SET)
    assert "continuation" in capsys.readouterr().err  # the tqdm bar, on stderr
    np.testing.assert_allclose(out.p, fold.p, atol=0, equal_nan=True)


def test_vmap_over_sigma_and_the_derivative_of_the_hopf_point():
    """Vmapped over sigma inside `args`, each member locates its own Hopf point; forward mode
    through the loop (Newton by optimistix's implicit derivative, the location's iterations) gives
    d rho_H / d sigma of the closed form."""
    sigmas = jnp.array([10.0, 12.0, 16.0])
    start = jnp.array([np.sqrt(BETA), np.sqrt(BETA), 1.0])  # C+ at rho = 2

    def hopf(sigma):
        branch = continuation(LORENZ, start, 2.0, args={"sigma": sigma, "beta": jnp.asarray(BETA)},
                              throw=False, **L_SET)
        is_hopf = branch.special_kind == 2
        return branch.special_p[jnp.argmax(is_hopf)], (branch.successful, jnp.sum(is_hopf))

    def value_and_derivative(sigma):
        return jax.jvp(hopf, (sigma,), (jnp.ones_like(sigma),), has_aux=True)

    rho, drho, (ok, count) = jax.vmap(value_and_derivative)(sigmas)
    assert np.all(np.asarray(ok)) and np.all(np.asarray(count) == 1)
    np.testing.assert_allclose(rho, _hopf_rho(np.asarray(sigmas)), atol=1e-6)
    np.testing.assert_allclose(drho, jax.vmap(jax.grad(_hopf_rho))(sigmas), rtol=1e-6)


RATES = jnp.linspace(0.5, 3.0, 18)


def hopf_plus_decay(t, y, mu):
    """A Hopf normal form (frequency 2) driving 18 decaying modes: Hopf at mu = 0, n = 20."""
    x, z = y[0], y[1]
    r2 = x * x + z * z
    head = jnp.array([mu * x - 2 * z - x * r2, 2 * x + mu * z - z * r2])
    return jnp.concatenate([head, -RATES * y[2:] + 0.1 * x * jnp.roll(y[2:], 1)])


def test_matrix_free_hopf_with_arnoldi_eigenvalues():
    problem = EquilibriumProblem(hopf_plus_decay, eigenvalues=ArnoldiEigenvalues(n_eigs=4, krylov_dim=12))
    branch = continuation(problem, jnp.zeros(20), -0.5, p_min=-1.0, p_max=0.5, ds=0.1, ds_max=0.2,
                          n_steps=20, dense_max_dim=0)
    assert branch.successful and _kinds(branch) == ["hopf"]
    assert abs(float(branch.special_p[0])) < 1e-10
    n = int(branch.n_points)
    spectrum, mu = np.asarray(branch.spectrum[:n]), np.asarray(branch.p[:n])
    assert spectrum.shape[1] == 4
    lead = spectrum[np.arange(n), np.argmax(spectrum.real, axis=1)]
    np.testing.assert_allclose(lead.real, mu, atol=1e-8)  # the pair mu +- 2i, found matrix-free
    np.testing.assert_allclose(np.abs(lead.imag), 2.0, atol=1e-8)
    assert np.array_equal(np.asarray(branch.stable[:n]), mu < 0)


def test_branch_start_fields(origin):
    start = switch_branch(origin, 0, amplitude=0.1)
    assert isinstance(start, BranchStart) and start.problem is LORENZ
    assert abs(float(jnp.linalg.norm(start.tangent)) - 1) < 1e-12
    assert abs(float(start.tangent[-1])) < 1e-8  # the pitchfork's second branch leaves at fixed rho
    assert float(start.u0[0]) > 0  # positive amplitude: C+


def test_summary_names_the_special_points(origin, c_plus, logistic_branches):
    text = origin.summary()
    assert "BP branch_point: p = 1.0000000000" in text and f"{int(origin.n_points)} points" in text
    assert "H hopf: p = 24.7368421053" in c_plus.summary()
    assert "PD period_doubling: p = 3.4494897428" in logistic_branches[1].summary()


def test_plot_returns_axes(c_plus, fold):
    import matplotlib.pyplot as plt

    ax = c_plus.plot(component=0)
    assert ax.get_xlabel() == "parameter $p$"
    styles = {line.get_linestyle() for line in ax.get_lines()}
    assert {"-", "--"} <= styles
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["stable", "unstable"]  # the line styles are explained, outside the axes
    assert any(t.get_text() == "H" for t in ax.texts)
    fig, ax2 = plt.subplots()
    assert fold.plot(ax=ax2, component=lambda u: u[0] ** 2) is ax2
    plt.close("all")


def oa_graphon(t, z, args):
    """The real Ott-Antonsen reduction on the cosine graphon W = 0.6 + 0.4 cos(2 pi (x - y)):
    z' = -gamma z + (K / 2)(h - h z^2), h = W z / N (W / N circulant, top eigenvalue 0.6 exactly,
    constant eigenvector)."""
    h = args["w"] @ z / z.shape[0]
    return -args["gamma"] * z + 0.5 * args["k"] * (h - h * z * z)


def test_matrix_free_branch_point_with_a_constant_null_vector():
    """The synchronisation branch point of incoherence at K_c = 2 gamma / 0.6 = 5 / 3 (closed form),
    matrix-free: the null vector there is constant, which a zero-mean bordering vector misses."""
    n = 60
    x = np.arange(n) / n
    w = jnp.asarray(0.6 + 0.4 * np.cos(2 * np.pi * (x[:, None] - x[None, :])))
    problem = EquilibriumProblem(oa_graphon, parameter=lambda a, k: {**a, "k": k})
    branch = continuation(problem, jnp.zeros(n), 2.5, args={"w": w, "gamma": 0.5, "k": 2.5}, p_min=1.5,
                          p_max=2.5, direction=-1, dense_max_dim=0, n_steps=40)
    assert branch.successful and _kinds(branch) == ["branch_point"]
    assert abs(float(branch.special_p[0]) - 5 / 3) < 1e-8
    assert float(branch.p[int(branch.n_points) - 1]) < 1.5  # on through the branch point to the end


def test_matrix_free_vmap_and_forward_derivative_of_the_branch_point():
    """Matrix-free (warm-started Krylov solves): vmapped over gamma, K_c = 2 gamma / 0.6, and
    dK_c / dgamma = 1 / 0.6 x 2 by forward mode (implicit derivatives through the skipped solves)."""
    n = 30
    x = np.arange(n) / n
    w = jnp.asarray(0.6 + 0.4 * np.cos(2 * np.pi * (x[:, None] - x[None, :])))
    problem = EquilibriumProblem(oa_graphon, parameter=lambda a, k: {**a, "k": k})

    def run(gamma):
        return continuation(problem, jnp.zeros(n), 2.5, args={"w": w, "gamma": gamma, "k": 2.5}, p_min=1.0,
                            p_max=2.5, direction=-1, dense_max_dim=0, n_steps=40, throw=False)

    gammas = jnp.array([0.5, 0.6])
    out = eqx.filter_vmap(run)(gammas)
    np.testing.assert_allclose(out.special_p[:, 0], 2 * np.asarray(gammas) / 0.6, atol=1e-8)
    slope = jax.jacfwd(lambda g: run(g).special_p[0])(0.5)
    assert abs(float(slope) - 2 / 0.6) < 1e-6
