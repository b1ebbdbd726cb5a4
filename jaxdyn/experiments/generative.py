r"""Generative models as dynamical systems: CNFs and probability flows on moons, the stretching of the
sampling map, the basins of the training points under the memorising flow, the memorisation curve.

Seven results, each judged by a claim whose criterion is fixed by the module-level constants below:

1. **Gaussian data, exact score.** The probability-flow ODE (VP) with the closed-form score of
   $N(\mu, \Sigma)$ maps the latent $z$ to the closed-form linear transport (Song et al. 2021:
   the probability flow has the diffusion's marginals), here through
   [`jaxdyn.models.SamplingMap`][] (fixed-step RK4 in a geometric clock).
2. **CNF on moons.** A [`jaxdyn.models.CNF`][] (FFJORD, exact trace in $d = 2$) trained a little
   by maximum likelihood: its held-out negative log-likelihood against the best Gaussian's.
3. **Score network on moons.** A [`jaxdyn.models.ScoreNetwork`][] trained by denoising score
   matching; its probability flow is a CNF with exact likelihoods (Song et al. 2021, Sec. 4.3):
   its held-out negative log-likelihood against the best Gaussian's (and, reported, the energy
   distance of its samples to held-out data).
4. **Change of variables along sampling trajectories.** The sum of the Lyapunov exponents along a
   trajectory ([`jaxdyn.models.sampling_lyapunov`][], QR of tangents) is the log-volume change
   of the sampling map: $\log p(x) = \log N(z) - \sum_i \lambda_i |t_1 - t_0|$, against the
   independent augmented-trace solve [`jaxdyn.models.ProbabilityFlow.log_prob`][].
5. **The empirical score memorises.** With the exact score of $m$ training points every sample
   ends within `TOL` of a training point, for every $m$ of the memorisation curve.
6. **Basins.** The basins of the vertices of a regular polygon under that flow have equal
   measure (within 3 binomial standard errors); the FTLE of the sampling map
   ([`jaxdyn.models.sampling_ftle`][]) peaks on the basin boundaries.
7. **Trained networks generalise as the training set grows.** The fraction of copies (nearest
   training point nearer than 1/3 of the second-nearest, Gu et al. 2023) among the samples of
   score networks trained on $m$ moons points, against $m$.
"""

import dataclasses
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .. import models as jm
from ._progress import fmt, stages
from ._result import Claim, ExperimentResult

NAME = "generative"
TITLE = "Generative flows as dynamical systems: CNF, probability flow, basins and memorisation"

QUESTION = (
    "Do flow-based generative models behave as the theory of their dynamics says: does the probability "
    "flow with an exact score transport the prior onto the data law, do a CNF and a score network learn "
    "moons, is the sum of the Lyapunov exponents along a sampling trajectory the log-density change, "
    "does the exact empirical score turn the training points into attractors with symmetric basins "
    "whose boundaries are ridges of the sampling map's FTLE, and do trained score networks copy their "
    "training points less as the training set grows?"
)

# The criteria of the claims, fixed before any run; never loosened to turn a verdict green.
TRANSPORT_TOL = 1e-6
"""Largest $|\\Phi(z) - (\\mu + \\Sigma^{1/2}$-transport$)(z)|$ allowed for the Gaussian score."""
NLL_GAIN = 0.3
"""The held-out NLL of the CNF and of the score network's probability flow must be at least this many
nats below the best (maximum-likelihood) Gaussian's."""
LOGDET_TOL = 1e-3
"""Largest gap (nats) between the log-density from the exponents and from `log_prob`."""
TOL = 0.05
"""Memorisation radius (standardised data units; $\\sigma(t_{\\min}) \\approx 0.01$)."""
BASIN_SE = 3.0
"""Equal basins: every fraction within this many binomial standard errors of $1/m$."""
RIDGE_GAP = 0.3
"""FTLE ridges: median FTLE on boundary cells at least this much above the interior's (per unit
flow time), and the grid's maximum on a boundary cell."""
COPY_SMALL, COPY_LARGE = 0.5, 0.5
"""Trained networks: copy fraction $\\ge 0.5$ at the smallest $m$ (memorising) and $\\le 0.5$ at the
largest $m$ (generalising)."""

SOURCE_SONG = "Song et al. 2021, Score-based generative modeling through SDEs (ICLR), Sec. 4.3, App. D"
SOURCE_CNF = ("Chen et al. 2018, Neural ODEs (NeurIPS), Thm. 1 (instantaneous change of variables); "
              "Grathwohl et al. 2019, FFJORD (ICLR)")
SOURCE_MEMO = ("Biroli, Bonnaire, de Bortoli & Mezard 2024, Dynamical regimes of diffusion models (Nat. "
               "Commun.): the exact empirical score collapses onto the training points; Gu et al. 2023, On "
               "memorization in diffusion models (arXiv 2310.02664)")
SOURCE_FTLE = ("Shadden, Lekien & Marsden 2005 (Physica D): ridges of the FTLE field separate regions of "
               "different fate; Haller 2015 (Annu. Rev. Fluid Mech.)")
SOURCE_GEN = ("Gu et al. 2023, On memorization in diffusion models (arXiv 2310.02664); Kadkhodaie, Guth, "
              "Simoncelli & Mallat 2024, Generalization in diffusion models arises from geometry-adaptive "
              "harmonic representations (ICLR)")


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    n_data: int = 4000  # moons points drawn (train + held-out)
    noise: float = 0.05  # make_moons noise (before standardisation)
    n_samples: int = 2000
    sampler_steps: int = 100  # RK4 steps of every SamplingMap
    cnf_width: int = 64
    cnf_steps: int = 600
    cnf_batch: int = 512
    cnf_dt: float = 0.05  # fixed Tsit5 step of the CNF over [0, 1]
    density_grid: int = 81
    score_width: int = 128
    score_steps: int = 4000
    score_batch: int = 512
    score_lr: float = 3e-3
    n_nll: int = 500  # held-out points whose log-density the probability flow computes
    n_logdet: int = 16  # samples whose log-density is computed twice
    polygon_m: int = 6
    n_basin_latents: int = 8000
    ftle_grid: int = 81
    memo_sizes: tuple = (8, 32, 128, 512, 2000)  # the last = every training point: the stage-3 network
    memo_samples: int = 1000
    n_lyapunov: int = 128  # trajectories of the trained flow
    lyapunov_renorm: int = 2


QUICK = Config(n_data=2000, n_samples=1000, sampler_steps=60, cnf_width=32, cnf_steps=80, cnf_batch=128,
               cnf_dt=0.2, density_grid=31, score_width=64, score_steps=2500, score_batch=256, n_nll=100,
               n_logdet=4, polygon_m=5, n_basin_latents=2000, ftle_grid=41, memo_sizes=(8, 64, 1000),
               memo_samples=500, n_lyapunov=16, lyapunov_renorm=3)
FULL = Config()


def moons(n: int, noise: float, seed: int):
    """`n` two-moons points (scikit-learn's `make_moons`, generated locally), standardised per axis;
    returns the points and the (mean, std) used."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=noise, random_state=seed)
    mean, std = x.mean(0), x.std(0)
    return (x - mean) / std, (mean, std)


def energy_distance(x, y) -> float:
    r"""The energy distance $2E|X - Y| - E|X - X'| - E|Y - Y'|$ of two samples (V-statistics)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def mean_dist(a, b):
        return np.mean(np.sqrt(np.sum((a[:, None] - b[None]) ** 2, -1)))

    return float(2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y))


def gaussian_nll(train, test) -> float:
    """Held-out NLL (nats per point) of the maximum-likelihood Gaussian of `train`."""
    mu, cov = train.mean(0), np.cov(train.T, bias=True)
    d = train.shape[1]
    diff = test - mu
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    return float(np.mean(0.5 * maha + 0.5 * np.log(np.linalg.det(2 * np.pi * cov))) + 0 * d)


def _sampler(flow, n_steps):
    return jm.SamplingMap(flow, flow.t1, flow.t_min, scale=flow.sde.prior_std, n_steps=n_steps)


def gaussian_transport(cfg: Config, key) -> dict:
    """The VP probability flow with the exact score of a correlated Gaussian against the closed form."""
    mean = jnp.array([1.0, -0.5])
    cov = jnp.array([[1.0, 0.6], [0.6, 0.5]])
    score = jm.GaussianScore(mean, cov, "vp")
    flow = jm.ProbabilityFlow(score)
    z = jax.random.normal(key, (256, 2))
    xs = jax.vmap(_sampler(flow, cfg.sampler_steps))(z)
    exact = jax.vmap(lambda zz: score.transport(flow.sde.prior_std * zz, flow.t1, flow.t_min))(z)
    return {"max_map_error": float(jnp.max(jnp.abs(xs - exact))), "n": int(z.shape[0]),
            "sample_mean": np.asarray(xs.mean(0)), "sample_cov": np.asarray(jnp.cov(xs.T))}


def train_cnf(cfg: Config, train, test, key):
    """A CNF on moons (exact trace, fixed Tsit5 steps), its held-out NLL and its density on a grid (one
    batched log-density call for the held-out points and the grid, before and after training: one
    compilation), and samples through its sampling map."""
    field = jm.MLPField(2, cfg.cnf_width, 2, time_dependent=True, key=key)
    cnf = jm.CNF(field, solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(),
                 dt0=cfg.cnf_dt)
    g = np.linspace(-2.5, 2.5, cfg.density_grid)
    gx, gy = np.meshgrid(g, g)
    n = cfg.n_nll
    points = jnp.concatenate([jnp.asarray(test[:n]), jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1))])
    nll0 = -float(jnp.mean(cnf.batch_log_prob(points)[:n]))
    fit = jm.train_cnf(cnf, jnp.asarray(train), key=jax.random.fold_in(key, 1), n_steps=cfg.cnf_steps,
                       batch_size=min(cfg.cnf_batch, train.shape[0]), lr=1e-2, chunk=cfg.cnf_steps,
                       progress=False)
    model = fit.model
    lp = np.asarray(model.batch_log_prob(points))
    nll, lp = -float(np.mean(lp[:n])), lp[n:].reshape(gx.shape)
    sampler = jm.SamplingMap(model.field, model.t0, model.t1, n_steps=round(1 / cfg.cnf_dt))
    samples = np.asarray(jax.vmap(sampler)(jax.random.normal(jax.random.fold_in(key, 2), (500, 2))))
    losses = np.asarray(fit.losses)
    return ({"steps": cfg.cnf_steps, "nll_test": nll, "nll_test_init": nll0,
             "nll_train_last": float(np.nanmean(losses[-10:]))}, (gx, gy, lp, samples))


def train_score_flow(cfg: Config, train, test, key):
    """A score network trained by denoising score matching; its probability flow's held-out NLL
    (`log_prob`: the augmented trace ODE), samples and their energy distance to held-out data (and a
    moment-matched Gaussian's, and a second held-out draw's: the noise floor); the Lyapunov exponents
    along sampling trajectories, and the log-density of a few samples twice: from the exponents and from
    `log_prob`."""
    net = jm.ScoreNetwork(2, cfg.score_width, 2, key=key, sde="vp")
    fit = jm.train_score(net, jnp.asarray(train), key=jax.random.fold_in(key, 1), n_steps=cfg.score_steps,
                         lr=cfg.score_lr, batch_size=cfg.score_batch, chunk=cfg.score_steps, progress=False)
    flow = jm.ProbabilityFlow(fit.model)
    sampler = _sampler(flow, cfg.sampler_steps)
    z = jax.random.normal(jax.random.fold_in(key, 2), (cfg.n_samples, 2))
    xs = np.asarray(jax.vmap(sampler)(z))
    finer = np.asarray(jax.vmap(_sampler(flow, 2 * cfg.sampler_steps))(z[:200]))
    n = min(cfg.n_samples, test.shape[0] // 2)
    ref, ref2 = test[:n], test[n:2 * n]
    rng = np.random.default_rng(0)
    gauss = rng.multivariate_normal(train.mean(0), np.cov(train.T), n)
    ed = {"samples": energy_distance(xs[:n], ref), "gaussian": energy_distance(gauss, ref),
          "held_out_data": energy_distance(ref2, ref), "n": n}
    # log-density twice: exponents along the trajectories (fixed RK4, QR) and the augmented trace solve
    lyap = jm.sampling_lyapunov(sampler, z[: cfg.n_lyapunov], renorm_every=cfg.lyapunov_renorm)
    k = cfg.n_logdet
    # one vmapped log_prob (one compilation): the held-out points, then k samples
    lp = np.asarray(jax.vmap(flow.log_prob)(jnp.concatenate([jnp.asarray(test[: cfg.n_nll]),
                                                              lyap.samples[:k]])))
    nll, from_trace = -float(np.mean(lp[: cfg.n_nll])), lp[cfg.n_nll:]
    span = float(sampler.duration)
    log_n = -0.5 * jnp.sum(z[:k] ** 2, 1) - jnp.log(2 * jnp.pi)
    from_exponents = np.asarray(log_n - lyap.exponents[:k].sum(1) * span)
    rates, times = np.asarray(lyap.local_rates), np.asarray(lyap.times)
    mid = np.sqrt(times[1:] * times[:-1])
    metrics = {"steps": cfg.score_steps, "width": cfg.score_width,
               "dsm_loss_last": float(np.nanmean(np.asarray(fit.losses)[-50:])), "nll_test": nll,
               "nll_gaussian_test": gaussian_nll(train, test[: cfg.n_nll]), "n_nll": cfg.n_nll,
               "energy_distance": ed, "step_doubling_max_change": float(np.max(np.abs(finer - xs[:200]))),
               "log_density": {"n": k, "max_abs_gap": float(np.max(np.abs(from_exponents - from_trace))),
                               "mean_log_p": float(np.mean(from_trace))},
               "lyapunov": {"n": cfg.n_lyapunov, "mean": np.asarray(lyap.mean),
                            "stderr": np.asarray(lyap.stderr),
                            "largest_local_rate": float(rates[:, 0].max()),
                            "time_of_largest_rate": float(mid[int(np.argmax(rates[:, 0]))]),
                            "smallest_local_rate": float(rates[:, -1].min()),
                            "time_of_smallest_rate": float(mid[int(np.argmin(rates[:, -1]))])}}
    return metrics, xs, fit.model, lyap


def polygon_basins(cfg: Config, key):
    """Basins of a regular polygon's vertices under the empirical-score flow, and the FTLE of its
    sampling map on a latent grid against the basin boundaries there."""
    m = cfg.polygon_m
    ang = 2 * np.pi * np.arange(m) / m + 0.3
    points = jnp.asarray(np.stack([np.cos(ang), np.sin(ang)], 1))
    flow = jm.ProbabilityFlow(jm.EmpiricalScore(points, "vp"))
    sampler = _sampler(flow, cfg.sampler_steps)
    latents = jax.random.normal(key, (cfg.n_basin_latents, 2))
    res = jm.basins(sampler, latents, points, tol=TOL)
    f, se = np.asarray(res.fractions), np.asarray(res.stderr)
    g = np.linspace(-3.0, 3.0, cfg.ftle_grid)
    grid = jnp.asarray(np.stack(np.meshgrid(g, g), -1))
    ftle = jm.sampling_ftle(sampler, grid)
    on_grid = jm.basins(sampler, grid.reshape(-1, 2), points, tol=TOL)
    lab = np.asarray(on_grid.labels).reshape(grid.shape[:2])
    edge = _boundary(lab)
    top = np.asarray(ftle.ftle)
    metrics = {
        "m": m, "n_latents": cfg.n_basin_latents, "fractions": f, "stderr": se,
        "max_deviation_in_se": float(np.max(np.abs(f - 1 / m) / np.where(se > 0, se, np.inf))),
        "unassigned": float(res.unassigned),
        "ftle": {"grid": cfg.ftle_grid, "max": float(top.max()), "min": float(top.min()),
                 "max_on_boundary": bool(top.max() == top[edge].max()) if edge.any() else False,
                 "median_boundary": float(np.median(top[edge])) if edge.any() else None,
                 "median_interior": float(np.median(top[~edge])), "boundary_cells": int(edge.sum())},
    }
    return metrics, res, ftle


def _boundary(lab):
    """Cells of a label grid with a 4-neighbour of another label."""
    edge = np.zeros(lab.shape, bool)
    dv, dh = lab[:-1] != lab[1:], lab[:, :-1] != lab[:, 1:]
    edge[:-1] |= dv
    edge[1:] |= dv
    edge[:, :-1] |= dh
    edge[:, 1:] |= dh
    return edge


def memorisation_curve(cfg: Config, data, test, key, full_model):
    """For each training-set size m: samples of the exact empirical score's flow and of a score network
    trained on the same m points (width and steps of stage 3; at m = every training point, the stage-3
    network `full_model` itself); the fraction within TOL of a training point and the fraction of copies
    (Gu et al.'s ratio 1/3), with held-out data's own fractions as the baseline."""
    out = {k: [] for k in ("empirical_within_tol", "empirical_copies", "trained_within_tol",
                           "trained_copies", "trained_copies_stderr", "data_within_tol", "data_copies",
                           "trained_median_distance", "empirical_median_distance")}
    moons_basins = None
    for i, m in enumerate(cfg.memo_sizes):
        pts = jnp.asarray(data[:m])
        z = jax.random.normal(jax.random.fold_in(key, 10 * i), (cfg.memo_samples, 2))
        emp = _sampler(jm.ProbabilityFlow(jm.EmpiricalScore(pts, "vp")), cfg.sampler_steps)
        b = jm.basins(emp, z, pts, tol=TOL)
        me = jm.memorisation(b.samples, pts, tol=TOL)
        if m == data.shape[0]:
            model = full_model
        else:
            net = jm.ScoreNetwork(2, cfg.score_width, 2, key=jax.random.fold_in(key, 10 * i + 1), sde="vp")
            model = jm.train_score(net, pts, key=jax.random.fold_in(key, 10 * i + 2), n_steps=cfg.score_steps,
                                   lr=cfg.score_lr, batch_size=cfg.score_batch, chunk=cfg.score_steps,
                                   progress=False).model
        xs = jax.vmap(_sampler(jm.ProbabilityFlow(model), cfg.sampler_steps))(z)
        mt = jm.memorisation(xs, pts, tol=TOL)
        md = jm.memorisation(jnp.asarray(test[: cfg.memo_samples]), pts, tol=TOL)
        for key_, val in (("empirical_within_tol", me.fraction), ("empirical_copies", me.ratio_fraction),
                          ("trained_within_tol", mt.fraction), ("trained_copies", mt.ratio_fraction),
                          ("trained_copies_stderr", mt.ratio_stderr), ("data_within_tol", md.fraction),
                          ("data_copies", md.ratio_fraction), ("trained_median_distance", mt.median_distance),
                          ("empirical_median_distance", me.median_distance)):
            out[key_].append(float(val))
        if i == 1:
            moons_basins = b
    return {"m": list(cfg.memo_sizes), "tol": TOL, "samples": cfg.memo_samples, "width": cfg.score_width,
            "steps": cfg.score_steps, **out}, moons_basins


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over its six stages."""
    cfg = QUICK if quick else FULL
    key = jax.random.key(seed)
    keys = jax.random.split(key, 6)
    data, (mu, sd) = moons(cfg.n_data, cfg.noise, seed)
    half = cfg.n_data // 2
    train, test = data[:half], data[half:]
    timings: dict[str, float] = {}
    cpu = time.process_time()
    with stages(progress, 6, NAME) as stage:
        stage("Gaussian transport")
        t0 = time.perf_counter()
        gauss = gaussian_transport(cfg, keys[0])
        timings["gaussian"] = round(time.perf_counter() - t0, 2)
        stage("CNF on moons")
        t0 = time.perf_counter()
        cnf, cnf_parts = train_cnf(cfg, train, test, keys[1])
        cnf["nll_gaussian_test"] = gaussian_nll(train, test[:cfg.n_nll])
        timings["cnf"] = round(time.perf_counter() - t0, 2)
        stage("score network and probability flow")
        t0 = time.perf_counter()
        score, score_samples, score_model, lyap = train_score_flow(cfg, train, test, keys[2])
        timings["score_flow"] = round(time.perf_counter() - t0, 2)
        stage("polygon basins, FTLE, Lyapunov")
        t0 = time.perf_counter()
        poly, poly_basins, ftle = polygon_basins(cfg, keys[3])
        timings["polygon"] = round(time.perf_counter() - t0, 2)
        stage("memorisation curve")
        t0 = time.perf_counter()
        memo, moons_basins = memorisation_curve(cfg, train, test, keys[4], score_model)
        timings["memorisation"] = round(time.perf_counter() - t0, 2)
        stage("figures")
        timings["cpu_before_figures"] = round(time.process_time() - cpu, 2)
        metrics = {"quick": quick, "seed": seed, "config": dataclasses.asdict(cfg), "timings_s": timings,
                   "standardisation": {"mean": mu, "std": sd}, "gaussian": gauss, "cnf": cnf, "score": score,
                   "polygon": poly, "memorisation": memo}
        figs = _figures(cfg, metrics, cnf_parts, score_samples, train, poly_basins, ftle, lyap, moons_basins)
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics), metrics, figs, question=QUESTION,
                            claims=_claims(cfg, metrics))


def _figures(cfg, mt, cnf_parts, score_samples, train, poly_basins, ftle, lyap, moons_basins) -> dict:
    import matplotlib.pyplot as plt

    from ..plot import plot_density, plot_ftle_field, plot_memorisation_curve

    figs = {}
    gx, gy, lp, cnf_samples = cnf_parts
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    plot_density(gx, gy, lp, ax=axes[0], samples=cnf_samples[:500],
                 title=f"CNF on moons: $\\log p$ and samples ({cfg.cnf_steps} steps)")
    axes[1].scatter(train[:, 0], train[:, 1], s=3, c="0.6", label="training data")
    axes[1].scatter(score_samples[:, 0], score_samples[:, 1], s=3, c="C1", label="probability-flow samples")
    axes[1].set_aspect("equal")
    axes[1].set_xlabel("$x_1$")
    axes[1].set_ylabel("$x_2$")
    axes[1].set_title(f"Score network ({cfg.score_steps} DSM steps) + probability flow")
    axes[1].legend(fontsize="small", loc="lower left", markerscale=3)
    figs["moons"] = fig

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    poly_basins.plot(ax=axes[0], title=f"Basins of a regular {cfg.polygon_m}-gon's vertices (latent plane)")
    plot_ftle_field(ftle, ax=axes[1], title="FTLE of the sampling map (per unit flow time)")
    top = np.asarray(ftle.ftle)
    axes[1].collections[0].set_clim(top.min(), np.percentile(top, 99))  # the centre saturates
    axes[1].set_xlabel("latent $z_1$")
    axes[1].set_ylabel("latent $z_2$")
    axes[1].set_aspect("equal")
    lyap.plot(ax=axes[2], title=f"Trained flow on moons: stretching along {cfg.n_lyapunov} trajectories")
    figs["basins_ftle"] = fig

    me = mt["memorisation"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    if moons_basins is not None:
        moons_basins.plot(ax=axes[0], legend=False, cmap="tab20",
                          title=f"Basins of {me['m'][1]} moons points under the empirical-score flow")
    plot_memorisation_curve(
        me["m"], {"exact empirical score": (me["empirical_copies"], None),
                  f"trained score network (width {me['width']})": (me["trained_copies"],
                                                                   me["trained_copies_stderr"]),
                  "held-out data (baseline)": (me["data_copies"], None)}, ax=axes[1],
        ylabel="fraction of copies (nearest < 1/3 second-nearest)",
        title="Memorisation against the training-set size")
    figs["memorisation"] = fig
    return figs


def _claims(cfg: Config, mt: dict) -> tuple[Claim, ...]:
    """The experiment's claims from its metrics (a pure function: tested on synthetic metrics)."""
    ga, cnf, sc, po, me = (mt[k] for k in ("gaussian", "cnf", "score", "polygon", "memorisation"))
    err = ga["max_map_error"]
    transport = Claim.check(
        "The probability-flow ODE has the marginals of the diffusion: with the exact score of $N(\\mu, "
        "\\Sigma)$ it maps $N(0, I)$ latents to $N(\\mu, \\Sigma)$ by the closed-form linear transport.",
        SOURCE_SONG,
        f"VP schedule, $t$ from 1 to $10^{{-3}}$, {ga['n']} latents: "
        f"$\\max |\\Phi(z) - \\text{{transport}}(z)| \\le {TRANSPORT_TOL:g}$",
        {"max error": err}, bool(err <= TRANSPORT_TOL),
        why=f"the map is {fmt(err, '.2e')} from the closed form.")

    gain = cnf["nll_gaussian_test"] - cnf["nll_test"]
    cnf_claim = Claim.check(
        "A continuous normalizing flow trained by maximum likelihood (exact trace, instantaneous change "
        "of variables) learns a non-Gaussian density: moons.",
        SOURCE_CNF,
        f"held-out NLL at least {NLL_GAIN:g} nats below the maximum-likelihood Gaussian's "
        f"({cnf['steps']} Adam steps)",
        {"CNF held-out NLL": cnf["nll_test"], "Gaussian held-out NLL": cnf["nll_gaussian_test"],
         "gain (nats)": gain}, bool(gain >= NLL_GAIN),
        why=f"the gain is {fmt(gain, '.3f')} nats.")

    pf_gain = sc["nll_gaussian_test"] - sc["nll_test"]
    score_claim = Claim.check(
        "A score network trained by denoising score matching learns the data law (moons); its "
        "probability-flow ODE is a continuous normalizing flow with exact likelihoods.",
        SOURCE_SONG,
        f"held-out NLL of the probability flow (`log_prob`, {sc['n_nll']} points) at least {NLL_GAIN:g} nats "
        f"below the maximum-likelihood Gaussian's ({sc['steps']} DSM steps)",
        {"probability-flow held-out NLL": sc["nll_test"], "Gaussian held-out NLL": sc["nll_gaussian_test"],
         "gain (nats)": pf_gain}, bool(pf_gain >= NLL_GAIN), why=f"the gain is {fmt(pf_gain, '.3f')} nats.")

    gap = sc["log_density"]["max_abs_gap"]
    logdet = Claim.check(
        "Along a sampling trajectory the sum of the Lyapunov exponents is the log-volume change: "
        "$\\log p(x) = \\log N(z) - |t_1 - t_0| \\sum_i \\lambda_i$ (Liouville; the instantaneous change of "
        "variables).",
        SOURCE_CNF,
        f"the two log-densities (QR of tangents along the fixed-step map; the augmented trace ODE of "
        f"`log_prob`, adaptive) agree within {LOGDET_TOL:g} nats on {sc['log_density']['n']} samples of "
        "the trained flow",
        {"max gap (nats)": gap}, bool(gap <= LOGDET_TOL), why=f"the largest gap is {fmt(gap, '.2e')} nats.")

    emp = me["empirical_within_tol"]
    memo_claim = Claim.check(
        "Under the exact score of the empirical distribution of $m$ training points the probability "
        "flow memorises: every sample ends on a training point (the training points are attractors).",
        SOURCE_MEMO,
        f"for every $m$ in {me['m']}: all samples within {TOL:g} of a training point ($t_{{\\min}} = "
        f"10^{{-3}}$, {me['samples']} samples)",
        {f"m = {m}": f for m, f in zip(me["m"], emp)}, [f >= 1.0 for f in emp],
        why="some samples end farther than tol: "
            + ", ".join(f"m = {m}: {f:.3f}" for m, f in zip(me["m"], emp) if f < 1.0) + ".")

    dev, un = po["max_deviation_in_se"], po["unassigned"]
    basins_claim = Claim.check(
        "The basins of symmetric training points (a regular polygon centred at the origin) under the "
        "memorising flow have equal measure under the rotation-invariant latent law.",
        SOURCE_MEMO + "; symmetry of the flow",
        f"{po['n_latents']} Gaussian latents, $m = {po['m']}$: every basin fraction within {BASIN_SE:g} "
        "binomial standard errors of $1/m$, none unassigned",
        {"fractions": po["fractions"], "largest deviation (standard errors)": dev, "unassigned": un},
        [dev <= BASIN_SE, un == 0.0],
        why=f"largest deviation {fmt(dev, '.2f')} standard errors, unassigned {fmt(un, '.3f')}.")

    ft = po["ftle"]
    mb, mi = ft["median_boundary"], ft["median_interior"]
    ridge_ok = mb is not None and mi is not None and mb - mi >= RIDGE_GAP
    ftle_claim = Claim.check(
        "The FTLE field of the memorising sampling map has its ridges on the boundaries between the "
        "training points' basins (nearby latents that end at different points separate).",
        SOURCE_FTLE,
        f"{ft['grid']}$\\times${ft['grid']} latent grid: the largest FTLE on a boundary cell, and the median "
        f"FTLE on boundary cells at least {RIDGE_GAP:g} above the interior's",
        {"max on boundary": ft["max_on_boundary"], "median boundary": mb, "median interior": mi},
        [bool(ft["max_on_boundary"]), bool(ridge_ok)],
        why=f"max on boundary: {ft['max_on_boundary']}; medians {fmt(mb, '.3f')} and {fmt(mi, '.3f')}.")

    cp = me["trained_copies"]
    gen_claim = Claim.check(
        "Trained score networks memorise small training sets and generalise as the training set grows "
        "(the fraction of samples that copy a training point falls with $m$).",
        SOURCE_GEN,
        f"copy fraction (nearest training point nearer than 1/3 of the second-nearest) $\\ge {COPY_SMALL:g}$ "
        f"at $m = {me['m'][0]}$ and $\\le {COPY_LARGE:g}$ at $m = {me['m'][-1]}$ (width {me['width']}, "
        f"{me['steps']} DSM steps each)",
        {f"m = {m}": c for m, c in zip(me["m"], cp)}, [cp[0] >= COPY_SMALL, cp[-1] <= COPY_LARGE],
        why=(f"copy fractions {', '.join(f'{c:.2f}' for c in cp)} for m = {me['m']}"
             + ("; the small-m network does not memorise within its training budget" if cp[0] < COPY_SMALL
                else "") + ("; the large-m network still copies" if cp[-1] > COPY_LARGE else "") + "."))
    return (transport, cnf_claim, score_claim, logdet, memo_claim, basins_claim, ftle_claim, gen_claim)


def _summary(cfg: Config, mt: dict) -> str:
    ga, cnf, sc, po, me = (mt[k] for k in ("gaussian", "cnf", "score", "polygon", "memorisation"))
    ed, ly, ft = sc["energy_distance"], sc["lyapunov"], po["ftle"]
    rows = ["| m | empirical: within tol | empirical: copies | trained: within tol | trained: copies | "
            "held-out data: copies |", "|---|---|---|---|---|---|"]
    rows += [f"| {m} | {a:.3f} | {b:.3f} | {c:.3f} | {d:.3f} ± {e:.3f} | {f:.3f} |" for m, a, b, c, d, e, f in
             zip(me["m"], me["empirical_within_tol"], me["empirical_copies"], me["trained_within_tol"],
                 me["trained_copies"], me["trained_copies_stderr"], me["data_copies"])]
    paras = [
        "**Setup.** Moons (scikit-learn `make_moons`, noise "
        f"{cfg.noise:g}, standardised per axis), {cfg.n_data // 2} training and {cfg.n_data // 2} held-out "
        "points. Every sampling map is a `SamplingMap`: fixed-step RK4 with "
        f"{cfg.sampler_steps} steps uniform in $\\log t$ from $T = 1$ down to $t_{{\\min}} = 10^{{-3}}$ (VP "
        "schedule, $\\beta \\in [0.1, 20]$); doubling the steps moves the trained flow's samples by at most "
        f"{sc['step_doubling_max_change']:.1e}.",
        f"**Gaussian score.** Largest distance of the sampling map to the closed-form transport: "
        f"{ga['max_map_error']:.1e} over {ga['n']} latents.",
        f"**CNF.** `MLPField` width {cfg.cnf_width}, exact trace, Tsit5 with a fixed step {cfg.cnf_dt:g}, "
        f"{cfg.cnf_steps} Adam steps (batch {cfg.cnf_batch}): held-out NLL {cnf['nll_test']:.3f} nats "
        f"(at initialisation {cnf['nll_test_init']:.3f}; the maximum-likelihood Gaussian "
        f"{cnf['nll_gaussian_test']:.3f}).",
        f"**Score network.** Width {cfg.score_width}, {cfg.score_steps} DSM steps (batch {cfg.score_batch}, "
        f"Adam {cfg.score_lr:g}), final loss {sc['dsm_loss_last']:.3f}. Held-out NLL of its probability flow "
        f"{sc['nll_test']:.3f} nats over {sc['n_nll']} points (maximum-likelihood Gaussian "
        f"{sc['nll_gaussian_test']:.3f}). Energy distance to {ed['n']} held-out points (reported, not "
        f"judged): samples {ed['samples']:.4f}, moment-matched Gaussian {ed['gaussian']:.4f}, a second "
        f"held-out draw (the finite-sample floor) {ed['held_out_data']:.4f}. Log-density of "
        f"{sc['log_density']['n']} samples from the exponents and from `log_prob`: largest gap "
        f"{sc['log_density']['max_abs_gap']:.1e} nats (mean $\\log p$ "
        f"{sc['log_density']['mean_log_p']:.3f}).",
        f"**Lyapunov exponents along {ly['n']} sampling trajectories of the trained flow.** Mean "
        f"{', '.join(f'{m:.3f} ± {s:.3f}' for m, s in zip(ly['mean'], ly['stderr']))} per unit flow time. "
        f"The mean local rate of the leading direction is largest, {ly['largest_local_rate']:.3g}, near "
        f"$t \\approx {ly['time_of_largest_rate']:.3f}$ "
        + ("(positive: on average nearby latents separate there, where the two moons form); "
           if ly["largest_local_rate"] > 0 else "(negative even there: averaged over the latent law the flow "
           "does not stretch); ")
        + f"the strongest contraction, {ly['smallest_local_rate']:.3g}, is near "
        f"$t \\approx {ly['time_of_smallest_rate']:.3g}$.",
        f"**Memorising flow: basins and FTLE.** Exact empirical score of a regular {po['m']}-gon "
        f"(radius 1): basin fractions {', '.join(f'{f:.3f}' for f in po['fractions'])} over "
        f"{po['n_latents']} latents (largest deviation {po['max_deviation_in_se']:.2f} standard errors), "
        f"unassigned {po['unassigned']:.3f}. FTLE on a {ft['grid']}$\\times${ft['grid']} latent grid: max "
        f"{ft['max']:.2f} (on a boundary cell: {ft['max_on_boundary']}), min {ft['min']:.2f}; median "
        f"{fmt(ft['median_boundary'], '.2f')} on the {ft['boundary_cells']} boundary cells against "
        f"{ft['median_interior']:.2f} inside: the map contracts almost everywhere (it sends the plane onto "
        f"{po['m']} points) and stretches only across the basin boundaries.",
        f"**Memorisation curve.** For each $m$ the first $m$ training points; {me['samples']} samples of the "
        f"exact empirical score's flow and of a score network (width {me['width']}, {me['steps']} DSM steps) "
        f"trained on the same points; tol = {me['tol']:g}. A copy: nearest training point nearer than 1/3 "
        "of the second-nearest (Gu et al. 2023). Held-out data's own fractions are the baseline for a "
        "model that generalises perfectly.",
        "\n".join(rows),
    ]
    return "\n\n".join(paras) + "\n"
