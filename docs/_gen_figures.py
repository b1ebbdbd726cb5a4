"""Regenerate the worked-example figures of the programme pages (docs/figures/*.png).

    python docs/_gen_figures.py            # all figures, about a minute on 2 CPU cores
    python docs/_gen_figures.py kuramoto   # one

Each function below is the worked example printed on its page (same code, same numbers); the PNGs
are committed so that `mkdocs build` does not run JAX.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

jax.config.update("jax_enable_x64", True)
OUT = Path(__file__).resolve().parent / "figures"


def critical_points():
    """Programme 1: the critical points of a 2-D map on its level sets."""
    from jaxdyn.models import critical_points

    f = lambda x: jnp.sin(3 * x[0]) * jnp.cos(2 * x[1])  # noqa: E731
    key = jax.random.split(jax.random.key(0), 3)[0]  # the README's key
    res = critical_points(f, -jnp.ones(2), jnp.ones(2), key=key, n_starts=64)
    print(res.summary())
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    res.plot(ax=ax, fn=f)
    ax.set_title(r"critical points of $f(x) = \sin(3x_1)\cos(2x_2)$")
    # the figure checklist: the legend off the data, the colour bar labelled
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=3, frameon=False)
    fig.axes[-1].set_ylabel("$f(x)$")
    return fig


def lyapunov():
    """Programme 1: the Lyapunov spectrum of the Lorenz flow, running estimates."""
    from jaxdyn.lyapunov import flow_spectrum

    def lorenz(t, y, rho):
        x, y_, z = y
        return jnp.array([10 * (y_ - x), x * (rho - z) - y_, x * y_ - 8 / 3 * z])

    res = flow_spectrum(lorenz, jnp.ones(3), args=28.0, dt=0.01, n_steps=50_000, transient_steps=1000,
                        progress=False)
    print(res.exponents)
    fig, ax = plt.subplots(figsize=(6, 4))
    res.plot(ax=ax)
    ax.set_ylabel(r"running estimate of $\lambda_i$ (per time unit)")
    ax.set_xlabel("time $t$ (time units of the flow)")
    return fig


def implicit_bias():
    """Programme 2: where 1000 GD runs settle on the hyperbola of minima (eta = 0.5)."""
    from jaxdyn.training import gd_endpoints, hyperbola_loss

    w0 = jax.random.uniform(jax.random.key(0), (1000, 2), minval=-3.0, maxval=3.0)
    ends = gd_endpoints(hyperbola_loss, w0, 0.5, n_steps=3000, throw=False)
    print(ends.n_converged, ends.n_diverged)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ends.plot(ax=ax)
    return fig


def kuramoto():
    """Programme 3: the order parameter of N = 2000 Kuramoto oscillators against the mean-field limit."""
    import jaxdyn.meanfield as mf

    gamma, ts = 0.5, jnp.linspace(0.0, 25.0, 201)
    omega = mf.lorentzian_quantiles(2000, gamma)
    theta0 = mf.wrapped_cauchy_quantiles(2000, 0.1, key=jax.random.key(1))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for K, style in [(1.5, "-"), (3.0, "--")]:
        sol = mf.simulate(mf.Kuramoto(omega, K), theta0, ts, rtol=1e-6, atol=1e-6, progress=False)
        r = jnp.abs(mf.order_parameter(sol.ys))
        ax.plot(ts, r, style, color="C0" if K == 1.5 else "C1", label=f"$N = 2000$, $K = {K}$")
        r_inf = (1 - 2 * gamma / K) ** 0.5
        ax.axhline(r_inf, color="0.4", lw=0.8, ls=":")
        ax.annotate(rf"$r_\infty = \sqrt{{1 - 2\gamma/K}} = {r_inf:.3f}$", (25.0, r_inf), xytext=(-4, 4),
                    textcoords="offset points", ha="right", va="bottom", fontsize=9)
        print(K, float(r[-40:].mean()), r_inf)
    ax.set_xlabel("time $t$ (dimensionless)")
    ax.set_ylabel("order parameter $r(t) = |z(t)|$")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, 25)
    ax.legend(loc="lower right", frameon=True)
    ax.set_title(r"Kuramoto, Lorentzian frequencies ($\gamma = 0.5$, $K_c = 1$)")
    return fig


def continuation():
    """Invariant sets: the Lorenz equilibria continued in rho, a branch point and a Hopf point."""
    import jaxdyn.invariant as inv

    def lorenz(t, y, a):
        x, y_, z = y
        return jnp.array([a["sigma"] * (y_ - x), x * (a["rho"] - z) - y_, x * y_ - a["beta"] * z])

    args = {"sigma": 10.0, "beta": 8 / 3, "rho": 22.0}
    problem = inv.EquilibriumProblem(lorenz, parameter=lambda a, p: {**a, "rho": p})
    origin = inv.continuation(problem, jnp.zeros(3), 0.5, args=args, p_min=0.0, p_max=30.0)
    c_plus = inv.continuation(inv.switch_branch(origin, 0, amplitude=0.1), args=args, p_min=0.0,
                              p_max=30.0, ds_max=2.0)
    print(c_plus.summary())
    fig, ax = plt.subplots(figsize=(6, 4))
    origin.plot(ax=ax)
    c_plus.plot(ax=ax)
    ax.set_xlabel(r"Rayleigh parameter $\rho$")
    ax.set_ylabel("$x$ at the equilibrium")
    ax.plot([], [], "k-", label="stable")
    ax.plot([], [], "k--", label="unstable")
    ax.legend(loc="upper left", title="origin (blue), $C^+$ (red)")
    return fig


def central_flow():
    """Central flows: GD at the edge of stability against its central flow."""
    from jaxdyn.training import central_flow

    def loss(p, _):
        x, y = p
        return 0.5 * (1 + x**2) * y**2 + 0.5 * (x - 3.0) ** 2

    res = central_flow(loss, jnp.array([0.5, 1.0]), jnp.zeros((1,)), lr=0.25, n_steps=200)
    print(res.sharpness[-1], res.sigma[-1, 0])
    axes = res.plot()
    return axes.flat[0].figure if hasattr(axes, "flat") else axes[0].figure


FIGURES = {f.__name__: f for f in [critical_points, lyapunov, implicit_bias, kuramoto, continuation,
                                    central_flow]}


def main(names):
    OUT.mkdir(exist_ok=True)
    for name in names or FIGURES:
        fig = FIGURES[name]()
        fig.savefig(OUT / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        print("wrote", OUT / f"{name}.png")


if __name__ == "__main__":
    main(sys.argv[1:])
