"""Figures for Lyapunov spectra: each returns a Figure with the expected artists (tiny inputs)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxdyn.lyapunov import LyapunovResult, PhaseDiagramResult, flow_spectrum, ftle_field
from jaxdyn.plot import plot_ftle_field, plot_lyapunov_convergence, plot_phase_diagram, plot_sweep

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def linear(t, y, A):
    return A @ y


@pytest.fixture(scope="module")
def flow_result():
    A = jnp.diag(jnp.array([0.5, -0.3, -1.2]))
    return flow_spectrum(linear, jnp.array([1.0, 0.5, -0.2]), args=A, dt=0.1, n_steps=40,
                         renorm_every=2, progress=False)


def _synthetic_result(history, times, stderr=None):
    """A LyapunovResult built by hand (plots only read history, times, exponents, stderr)."""
    history = jnp.asarray(history)
    return LyapunovResult(exponents=history[..., -1, :], history=history, times=jnp.asarray(times),
                          stderr=stderr, result=jnp.asarray(0), failed_step=jnp.asarray(-1),
                          steps=jnp.asarray(history.shape[-2]))


def _diagram(sigma_w2, sigma_b2, n_seeds, key=0):
    """A PhaseDiagram with a made-up chi_1 (crossing 1 at sigma_w2 = 1.761 + sigma_b2) and noisy
    'empirical' exponents around (1/2) log chi_1 (the real `order_to_chaos` is tested in
    test_lyapunov_network.py; this keeps the plot tests free of compilation)."""
    sw = np.asarray(sigma_w2, float)
    sb = np.atleast_1d(np.asarray(sigma_b2, float))
    chi = sw[None, :] / (1.761 + sb[:, None])
    noise = 0.02 * np.random.default_rng(key).normal(size=(*chi.shape, n_seeds))
    emp = 0.5 * np.log(chi)[..., None] + noise
    return PhaseDiagramResult(sigma_w2=jnp.asarray(sw), sigma_b2=jnp.asarray(sb), chi_1=jnp.asarray(chi),
                        q_star=jnp.ones_like(jnp.asarray(chi)), empirical=jnp.asarray(emp))


@pytest.fixture(scope="module")
def diagram_1d():
    return _diagram([1.0, 1.5, 2.0, 2.5], 0.05, n_seeds=2)


def _data_lines(ax):
    """Lines with data (legend proxies drawn with empty data and errorbar caps are left out)."""
    return [line for line in ax.get_lines()
            if len(line.get_xdata()) > 0 and line.get_linestyle() not in ("None", "")]


def test_convergence(flow_result):
    fig = plot_lyapunov_convergence(flow_result)
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    assert len(_data_lines(ax)) == 3
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith(r"$\lambda_{1}$ = ") and len(labels) == 3
    np.testing.assert_allclose(_data_lines(ax)[0].get_xdata(), flow_result.times)

    # reference lines: dashed, in the colour of their exponent; None skips one
    fig = plot_lyapunov_convergence(flow_result, reference=(0.5, None, -1.2), logx=False)
    ax = fig.axes[0]
    lines = _data_lines(ax)
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    assert len(lines) == 5 and len(dashed) == 2
    assert dashed[0].get_color() == lines[0].get_color()
    assert dashed[0].get_ydata()[0] == 0.5
    assert ax.get_xscale() == "linear"
    assert "reference" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_convergence_into_given_axes_and_methods(flow_result):
    fig, (ax0, ax1) = plt.subplots(1, 2)
    assert plot_lyapunov_convergence(flow_result, ax=ax1) is fig
    assert len(ax0.get_lines()) == 0 and len(_data_lines(ax1)) == 3
    # the result's own .plot() draws the same figure
    fig2 = flow_result.plot(reference=[0.5])
    assert len(_data_lines(fig2.axes[0])) == 4


def test_convergence_maps_and_stderr():
    steps = np.arange(1, 31)
    history = np.stack([0.42 + 1 / steps, -1.62 - 1 / steps], axis=1)
    res = _synthetic_result(history, steps)
    fig = plot_lyapunov_convergence(res, xlabel="step")
    assert len(_data_lines(fig.axes[0])) == 2 and fig.axes[0].get_xlabel() == "step"
    with_err = _synthetic_result(history, steps, stderr=jnp.array([0.01, 0.02]))
    fig = plot_lyapunov_convergence(with_err)
    assert r"$\pm$ 0.01" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_convergence_bad_input(flow_result):
    with pytest.raises(ValueError, match="`reference`"):
        plot_lyapunov_convergence(flow_result, reference=[0.0] * 4)
    batched = _synthetic_result(np.zeros((2, 5, 3)), np.arange(1, 6))  # as from vmap
    with pytest.raises(ValueError, match="one at a time"):
        plot_lyapunov_convergence(batched)


def test_phase_diagram_one_row(diagram_1d):
    fig = plot_phase_diagram(diagram_1d)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    # errorbar line, mean-field line, zero line, chi_1 = 1 vertical line
    assert len(_data_lines(ax)) == 4
    assert len(ax.containers) == 1  # the errorbar container
    np.testing.assert_allclose(_data_lines(ax)[0].get_ydata(), diagram_1d.lambda_1[0])
    np.testing.assert_allclose(_data_lines(ax)[1].get_ydata(), diagram_1d.lambda_mean_field[0])
    vline = [line for line in _data_lines(ax) if line.get_linestyle() == "--"]
    assert len(vline) == 1
    crit = float(diagram_1d.critical_sigma_w2("mean_field")[0])
    np.testing.assert_allclose(vline[0].get_xdata()[0], crit, rtol=1e-12)
    assert diagram_1d.plot() is not None  # PhaseDiagram.plot dispatches here


def test_phase_diagram_grid():
    diagram = _diagram([1.0, 1.5, 2.0, 2.5], [0.0, 0.1, 0.2], n_seeds=1, key=1)
    fig = plot_phase_diagram(diagram)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # with its colorbar
    assert len(ax.collections) >= 2  # the mesh and at least the chi_1 = 1 contour
    mesh = ax.collections[0]
    assert np.asarray(mesh.get_array()).size == 12
    fig, ax = plt.subplots()
    assert plot_phase_diagram(diagram, ax=ax, colorbar=False) is fig and len(fig.axes) == 1


def test_phase_diagram_bad_input():
    with pytest.raises(ValueError, match="two `sigma_w2`"):
        plot_phase_diagram(_diagram([1.5], 0.05, n_seeds=1))
    good = _diagram([1.0, 2.0], 0.05, n_seeds=2)
    with pytest.raises(ValueError, match="`empirical`"):
        plot_phase_diagram(PhaseDiagramResult(good.sigma_w2, good.sigma_b2, good.chi_1, good.q_star,
                                        good.empirical[..., 0]))


def test_ftle_field():
    xs = jnp.linspace(-1.0, 1.0, 5)
    ys = jnp.linspace(-0.5, 0.5, 4)
    pts = jnp.stack(jnp.meshgrid(xs, ys), axis=-1)  # (4, 5, 2)
    field = ftle_field(lambda t, y, a: jnp.array([y[1], y[0] - y[0] ** 3]), pts, t1=0.2, dt=0.05)
    fig = plot_ftle_field(field, title="Duffing")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert len(fig.axes) == 2 and len(ax.collections) == 1
    np.testing.assert_allclose(np.asarray(ax.collections[0].get_array()).reshape(4, 5),
                               field.ftle, rtol=1e-12)
    assert len(field.plot(colorbar=False).axes) == 1  # FTLEField.plot dispatches here
    with pytest.raises(ValueError, match="`coords`"):
        plot_ftle_field(field, coords=(0, 2))
    flat = ftle_field(lambda t, y, a: -y, pts.reshape(-1, 2), t1=0.1, dt=0.05)
    with pytest.raises(ValueError, match="2-D grid"):
        plot_ftle_field(flat)


def test_sweep():
    rho = np.linspace(0.0, 1.0, 7)
    fig = plot_sweep(rho, np.sin(rho), xlabel=r"$\rho$", vlines={"onset": 0.5})
    ax = fig.axes[0]
    # the curve, the zero line, one vertical line
    assert len(_data_lines(ax)) == 3 and ax.get_xlabel() == r"$\rho$"
    fig = plot_sweep(rho, np.stack([rho, -rho, 2 * rho], axis=1), zero_line=False)
    assert len(_data_lines(fig.axes[0])) == 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][2] == r"$\lambda_{3}$"
    fig, ax = plt.subplots()
    assert plot_sweep(jnp.asarray(rho), jnp.asarray(rho), ax=ax) is fig
    with pytest.raises(ValueError, match="`exponents`"):
        plot_sweep(rho, np.zeros(3))
    fig = plot_sweep(rho, rho, labels="rho")  # one string labels the single column
    assert len(_data_lines(fig.axes[0])) == 2
    with pytest.raises(ValueError, match="`labels`"):
        plot_sweep(rho, np.zeros((7, 2)), labels=["a"])
    with pytest.raises(ValueError, match="`params`"):
        plot_sweep(np.zeros((7, 2)), np.zeros(7))
