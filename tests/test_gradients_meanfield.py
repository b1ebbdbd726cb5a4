"""The gradient-check matrix of `jaxdyn.meanfield`: derivatives against central differences of the same
function (float64, five-point stencil with h = eps^(1/5) ~ 7e-4: truncation ~h^4 ~ 3e-13), forward and
reverse mode, under `jit` and `vmap`, at 1e-6 relative.

Compile time dominates, so each entry point is compiled twice only, both under `eqx.filter_jit`: once
as a `vmap` of `jax.jvp` over the base point and the stencil points (forward mode; the primal outputs
at the stencil points give the central differences) and once as a `jax.vjp` (reverse mode). The five
coupling paths of `simulate` (all-to-all, dense, FFT, low rank, sparse) are one stacked system
integrated by one solve; each path's output depends on its own parameters only, so each is checked
separately.

Modes: `simulate`, `ott_antonsen` and `vlasov` integrate with diffrax; their default adjoint (recursive
checkpointing) is reverse mode only, and forward mode needs `adjoint=diffrax.ForwardMode()` (tested:
the default raises JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp function").
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.experiments.kuramoto import gaussian_r_theory
from jaxdyn.meanfield import graphons

from .helpers import rel_err

RTOL = 1e-6
H = float(np.finfo(np.float64).eps ** 0.2)
STENCIL = (2.0, 1.0, -1.0, -2.0)
WEIGHTS = (-1.0, 8.0, -8.0, 1.0)  # (-f(2h) + 8 f(h) - 8 f(-h) + f(-2h)) / (12 h)


def _tmap(fn, *trees):
    return jax.tree_util.tree_map(fn, *trees)


def _np(tree):
    return _tmap(lambda a: np.asarray(a, dtype=np.float64), tree)


def _dot(a, b):
    return float(
        sum(np.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    )


def check_matrix(fn_fwd, fn_rev, x, *, seed, dirs=None, rtol=RTOL):
    """Check `fn(x)` (a dict of outputs) in forward and reverse mode against central differences.

    Directions: `dirs`, or one random direction per top-level key of `x` (zero on the other keys), so
    that a failure names the parameter group; each output key is compared separately.
    Forward mode: one compiled `jax.vmap` of `jax.jvp` of `fn_fwd` over the base point (its tangent)
    and the stencil points (their primals: the central difference). Reverse mode: one compiled
    `jax.vjp` of `fn_rev` with one random cotangent w, compared as <grad, v> with <w, FD>.
    The arithmetic around the compiled calls is NumPy (eager JAX ops would compile one kernel each).
    Returns `(tangents, gradient, cotangent)`."""
    rng = np.random.default_rng(seed)
    x = _np(x)
    labels = list(x) if dirs is None else list(range(len(dirs)))
    if dirs is None:
        dirs = [
            {k: _tmap(lambda a, k=k, j=j: rng.standard_normal(np.shape(a)) * (k == j), x[k]) for k in x}
            for j in x
        ]
    dirs = [_np(v) for v in dirs]
    points, tangents = [], []
    for v in dirs:
        for s in (0.0, *STENCIL):
            points.append(_tmap(lambda a, b, s=s: a + s * H * b, x, v))
            tangents.append(v)
    stack = lambda trees: _tmap(lambda *xs: np.stack(xs), *trees)
    fwd = eqx.filter_jit(jax.vmap(lambda p, t: jax.jvp(fn_fwd, (p,), (t,))))
    primals, tans = _np(fwd(stack(points), stack(tangents)))
    m = 1 + len(STENCIL)
    jvps, fds = [], []
    for i in range(len(dirs)):
        jvp = _tmap(lambda y, i=i: y[i * m], tans)
        fd = _tmap(
            lambda y, i=i: sum(w * y[i * m + 1 + j] for j, w in enumerate(WEIGHTS)) / (12 * H), primals
        )
        for name in fd:
            if np.max(np.abs(fd[name])) < 1e-9:  # an output the direction does not move (FD: rounding)
                err = float(np.max(np.abs(jvp[name])))
            else:
                err = rel_err(jvp[name], fd[name])
            assert err < rtol, (
                f"forward mode, output {name!r}, direction {labels[i]}: relative error {err:.3e}"
            )
        jvps.append(jvp)
        fds.append(fd)
    y = _tmap(lambda a: a[0], primals)
    w = _tmap(lambda a: rng.standard_normal(np.shape(a)), y)
    rev = eqx.filter_jit(lambda p, c: jax.vjp(fn_rev, p)[1](c)[0])
    g = _np(rev(x, w))
    for i, (v, fd) in enumerate(zip(dirs, fds)):
        got, want = _dot(g, v), _dot(w, fd)
        err = abs(got - want) / max(abs(want), 1e-300)
        assert err < rtol, f"reverse mode, direction {labels[i]}: {got} vs FD {want} ({err:.3e})"
    return jvps, g, w


# ------------------------------------------------------------------------------------------------
# simulate: the five coupling paths as one stacked system
# ------------------------------------------------------------------------------------------------

N = 6
PATHS = ("all_to_all", "dense", "fft", "low_rank", "sparse")
ROWS, COLS = np.nonzero((np.arange(N)[:, None] - np.arange(N)[None, :]) % N <= 2)  # a sparse directed graph


class _Stacked(eqx.Module):
    """Independent fields on consecutive blocks of one state (one solve for all coupling paths)."""

    fields: tuple
    noise: float = eqx.field(static=True, default=0.0)

    def __call__(self, t, y, args=None):
        return jnp.concatenate([f(t, b, args) for f, b in zip(self.fields, jnp.split(y, len(self.fields)))])


def _fields(p):
    def kura(q, graph, method):
        return mf.Kuramoto(q["omega"], q["K"], graph=graph, phase_lag=q["lag"], method=method)

    return (
        kura(p["all_to_all"], graphons.constant(p["all_to_all"]["p"]), mf.AllToAllMethod()),
        kura(p["dense"], graphons.fourier(p["dense"]["coeffs"]), mf.DenseMethod()),
        kura(p["fft"], graphons.small_world(0.25, p["fft"]["p"], p["fft"]["q"]), mf.FFTMethod()),
        kura(p["low_rank"], graphons.stochastic_block([0.5, 0.5], p["low_rank"]["probs"]),
             mf.LowRankMethod()),
        kura(p["sparse"], (ROWS, COLS, p["sparse"]["weights"]), mf.SparseMethod()),
    )


def _final_states(p, adjoint=None):
    y0 = jnp.tile(jnp.sin(1.3 * jnp.arange(N, dtype=float)), len(PATHS))
    sol = mf.simulate(
        _Stacked(_fields(p)), y0, jnp.array([0.0, 0.5, 1.0]), solver=diffrax.Euler(), dt0=0.1, adjoint=adjoint
    )
    return dict(zip(PATHS, jnp.split(sol.ys[-1], len(PATHS))))


def _params():
    def common(i):
        return {
            "K": jnp.asarray(1.5 + 0.1 * i),
            "omega": jnp.linspace(-1.0, 1.0, N) * (1 + 0.1 * i),
            "lag": jnp.asarray(0.3),
        }

    return {
        "all_to_all": {**common(0), "p": jnp.asarray(0.6)},
        "dense": {**common(1), "coeffs": jnp.array([0.5, 0.3])},
        "fft": {**common(2), "p": jnp.asarray(0.9), "q": jnp.asarray(0.2)},
        "low_rank": {**common(3), "probs": jnp.array([[0.8, 0.3], [0.3, 0.6]])},
        "sparse": {**common(4), "weights": jnp.linspace(0.5, 1.5, ROWS.size)},
    }


def test_simulate_every_coupling_path():
    """d y(T) / d (K, omega, phase lag, graphon parameters): all-to-all (constant p), dense (Fourier
    coefficients), FFT (small-world p, q), low rank (block probabilities), sparse (edge weights).
    Fixed-step Euler (a small program: the reverse-mode compile dominates this file's time), so the
    derivative is exact for the discrete solve; adaptive Tsit5 is checked by the limits below."""
    check_matrix(lambda p: _final_states(p, diffrax.ForwardMode()), _final_states, _params(), seed=0)


# ------------------------------------------------------------------------------------------------
# the mean-field limits
# ------------------------------------------------------------------------------------------------


def _oa_r(p, adjoint=None):
    z = mf.ott_antonsen(
        0.1 + 0.05j, jnp.array([0.0, 1.0, 20.0]), coupling=p["K"], gamma=p["gamma"], adjoint=adjoint
    ).z
    return {"t1": jnp.abs(z[1]), "t20": jnp.abs(z[2])}


def test_ott_antonsen_against_closed_form():
    """d r / d (K, gamma) at t = 1 (transient) and t = 20 (r_inf = sqrt(1 - 2 gamma / K) to e^-40):
    forward (`ForwardMode`, along the unit directions: the Jacobian's columns) and reverse
    (checkpointed: its rows) mode against the closed forms, and against central differences of the
    same adaptive solve (step sizes are not differentiated; rtol 1e-11)."""
    k, g = 3.0, 0.5
    p = {"K": jnp.asarray(k), "gamma": jnp.asarray(g)}
    units = [{"K": 1.0, "gamma": 0.0}, {"K": 0.0, "gamma": 1.0}]
    tangents, grad, w = check_matrix(lambda q: _oa_r(q, diffrax.ForwardMode()), _oa_r, p, seed=1, dirs=units)
    r_inf = np.sqrt(1 - 2 * g / k)
    exact = {"t20": np.array([g / (k**2 * r_inf), -1 / (k * r_inf)])}
    closed = jax.jacrev(lambda q: mf.ott_antonsen_r(1.0, abs(0.1 + 0.05j), coupling=q[0], gamma=q[1]))
    exact["t1"] = np.asarray(closed(jnp.array([k, g])))
    for name in ("t1", "t20"):
        columns = np.array([float(t[name]) for t in tangents])
        assert rel_err(columns, exact[name]) < RTOL, (name, columns, exact[name])
    # reverse mode: the gradient of <w, r> is w_1 * grad r(1) + w_20 * grad r(20)
    row = np.array([float(grad["K"]), float(grad["gamma"])])
    assert rel_err(row, w["t1"] * exact["t1"] + w["t20"] * exact["t20"]) < RTOL


def test_ott_antonsen_r_closed_form():
    """The closed form itself (no solver): jax.grad against central differences, above and below K_c."""
    for k, g in ((3.0, 0.5), (0.6, 0.5)):
        fn = lambda q: {"r": mf.ott_antonsen_r(jnp.array([0.5, 4.0]), 0.2, coupling=q["K"], gamma=q["gamma"])}
        check_matrix(
            fn, fn, {"K": k, "gamma": g}, seed=2, dirs=[{"K": 1.0, "gamma": 0.0}, {"K": 0.0, "gamma": 1.0}]
        )


def _vlasov_r(p, adjoint=None):
    theta0 = jnp.array([[0.1, 0.9, -0.7], [1.2, 2.0, 0.4]])
    ys = mf.vlasov(
        graphons.fourier(p["coeffs"]),
        theta0,
        p["omega"],
        jnp.array([0.0, 0.5, 1.0]),
        coupling=p["K"],
        phase_lag=p["lag"],
        method=mf.DenseMethod(),
        rtol=1e-12,
        atol=1e-12,
        adjoint=adjoint,
    ).theta
    return {"r": jnp.abs(mf.order_parameter(ys[-1].ravel())), "theta": ys[-1]}


def test_vlasov():
    """Order parameter and phases at T w.r.t. K, phase lag, frequencies and graphon coefficients."""
    p = {
        "K": jnp.asarray(2.0),
        "lag": jnp.asarray(0.2),
        "omega": jnp.array([[0.3, -0.2, 0.1], [0.0, 0.5, -0.4]]),
        "coeffs": jnp.array([0.5, 0.3]),
    }
    check_matrix(lambda q: _vlasov_r(q, diffrax.ForwardMode()), _vlasov_r, p, seed=3)


def _two_layer_losses(p):
    x = jnp.array([[0.3, -1.0], [1.2, 0.4], [-0.5, 0.8]])
    y = jnp.array([0.2, -0.4, 0.7])
    out = mf.two_layer_gd(mf.TwoLayer(p["a"], p["w"]), x, y, n_steps=5, lr=p["lr"])
    return {"losses": out.losses, "a": out.model.a}


def test_two_layer_gd():
    """The losses and the trained particles w.r.t. the initial particles and the step size (a scan:
    both modes)."""
    p = {
        "a": jnp.array([0.5, -1.0, 0.8, 0.2]),
        "w": jnp.linspace(-1.0, 1.0, 8).reshape(4, 2),
        "lr": jnp.asarray(0.3),
    }
    check_matrix(_two_layer_losses, _two_layer_losses, p, seed=4)


# ------------------------------------------------------------------------------------------------
# where a derivative is not defined or a mode is not supported
# ------------------------------------------------------------------------------------------------


def test_undefined_derivatives_raise():
    key = jax.random.key(0)
    # a W-random graph is a discrete sample
    with pytest.raises(TypeError, match="`graphon`.*discrete sample"):
        jax.grad(lambda p: mf.sample_graph(graphons.constant(p), 8, key=key).sum())(0.5)
    # the ring's width: an indicator of the distance (zero derivative almost everywhere)
    with pytest.raises(TypeError, match="`radius`"):
        jax.grad(lambda r: graphons.ring(r)(0.1, 0.3))(0.25)
    # block boundaries decide which block a node is in
    with pytest.raises(TypeError, match="`sizes`"):
        jax.grad(
            lambda s: graphons.stochastic_block(jnp.stack([s, 1 - s]), [[0.5, 0.1], [0.1, 0.5]])(0.1, 0.9)
        )(0.5)
    # the sparsity pattern of a graphon on the sparse path
    with pytest.raises(TypeError, match="sparsity pattern"):
        jax.grad(
            lambda p: mf.Kuramoto(
                jnp.zeros(4), 1.0, graph=graphons.constant(p), method=mf.SparseMethod()
            ).scale[0]
        )(0.5)
    # NumPy routines: W1 on the circle, the Gaussian self-consistency bisection (K_c by a threshold)
    with pytest.raises(TypeError, match="`a` and `b`"):
        jax.grad(lambda s: mf.w1_circle(jnp.array([0.0, s]), jnp.array([0.5, 1.0])))(0.3)
    with pytest.raises(TypeError, match="`k`"):
        jax.grad(gaussian_r_theory)(2.0)
    # forward mode through the diffrax path's default adjoint (the fixed-step fast path has both modes)
    field = mf.Kuramoto(jnp.zeros(3), 1.0)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(
            lambda y: mf.simulate(field, y, jnp.array([0.0, 1.0]), solver=mf.RK4(), dt0=0.5, fast=False).ys,
            (jnp.ones(3),),
            (jnp.ones(3),),
        )
