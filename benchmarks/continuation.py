"""Continuation: jaxdyn.invariant.continuation vs pycont-lite (and PyDSTool's PyCont, if it imports).

Cases:

- `oa_branch_point` (**headline**): the equilibrium branch of the Ott-Antonsen equation on a graphon,
  N = 2000 nodes, continued in the coupling K through the incoherent state z = 0, with branch-point
  detection and location. The real reduction (frequencies Lorentzian, symmetric about 0, so z is
  real): z_j' = -gamma z_j + (K / 2) (h_j - h_j z_j^2), h = W z / N, W_jk = W(x_j, x_k) with the
  cosine graphon W(x, y) = 0.6 + 0.4 cos(2 pi (x - y)) on the nodes x_j = j / N, gamma = 0.5,
  float64, W dense (one N x N product per evaluation on both sides). The spectrum of W / N is
  exactly {0.6 (the constant mode), 0.2, 0.2, 0, ...} for N >= 3 (a circulant matrix: the discrete
  Fourier sums of the cosine vanish), so the Jacobian at z = 0, -gamma I + (K / 2) W / N, is
  singular at K_c = 2 gamma / 0.6 = 5 / 3 (a pitchfork: the branch point). Both sides start at
  K = 2.5 on z = 0 and continue towards smaller K (corrector tolerance 1e-10), and both stop at
  K = 1.5 at the latest. jaxdyn: `continuation(EquilibriumProblem(field, parameter=...), ...)`
  (N > dense_max_dim: the matrix-free path, Newton-Krylov with lineax GMRES on Jacobian-vector
  products and the bordered branch-point test), the located point read from the result; timed
  twice, at the peer's steps (side `jaxdyn`: ds = ds_max = 0.01, ds_min = 1e-6) and at its own
  default steps (side `jaxdyn_natural`: ds = 0.05, adaptive up to ds_max = 0.5). The peer runs in
  the same interleaved rounds as both jaxdyn sides (3 rounds, 2 with `--quick`) and the speedups
  are medians of the per-round ratios (`speedup_paired`: IQR, min, max, n).
  pycont-lite: its one-branch routine
  (`pycont.ArclengthContinuation.continuation`) with the detection modules its public entry
  (`pycont.arclengthContinuation`) builds (parameter bound, branch point, fold) and the initial
  tangent computed as the public entry does; the public entry itself would go on to switch branches
  and continue the two new ones after the branch point, which jaxdyn's run does not do, so the
  peer's run ends at its located branch point (the jaxdyn run goes on to K = 1.5: more arclength,
  not less). Stability analysis off on the peer (jaxdyn computes no spectrum above 400 states
  either). Both sides' located K are compared with K_c = 5 / 3 (goal condition: both within 1e-6).
- `stuart_landau_100`: periodic-orbit continuation of the Stuart-Landau oscillator
  (r' = mu r - r^3, theta' = omega) lifted to 100 dimensions by 98 linear stable directions
  (rates -0.5 ... -3) and a random orthogonal rotation; the cycle branch continued in mu with
  `PeriodicOrbitProblem` (8 shooting segments); time per continuation step and per Floquet
  computation (segment Jacobians from the variational equation plus the periodic QR
  `product_eigenvalues`), and the known answers (period 2 pi / omega, radius sqrt(mu), multipliers
  1, exp(-2 mu T), exp(a_k T)). No peer: recorded for a later GPU run.

Why the peer starts above K_c. pycont-lite's branch-point test functions are beta_i =
-1 / (l_i^T J^{-1} r_i) with random unit vectors l_i, r_i in R^(N+1) (seeded, 3 of them): beside the
zero at the branch point each has a pole where l_i^T J^{-1} r_i = 0, at a distance of order 1 / N
from it in K (here at K = 1.612, 1.622 and 1.659 for its default seed, just below K_c = 1.667), and
the test is sampled every 5 steps. Continued upwards from K = 1.0 with the same steps, a sample
interval brackets a pole alone; the localisation (Brent on the bordered system, each evaluation a
scipy `newton_krylov` solve) then ran for more than 6 minutes without returning (measured, and
stopped). Continued downwards from K = 2.5 the first sign change is the branch point (the poles lie
beyond it), which pycont-lite locates; with ds_max = 0.02 it steps over the branch point and a
pole together and misses it. So the settings here are the ones under which the peer succeeds.

Which ratio is the headline: the default-steps one. The issue's goal is the time to the same
answer (the located K within 1e-6 of K_c), and each side is run at the steps under which it gives
that answer: ds_max = 0.01 is the largest step with which pycont-lite locates the branch point at
all (its random test functions have poles within 1 / N of K_c; at 0.02 it misses it), while
jaxdyn's test function (bordered with a positive vector renewed by one inverse iteration at every
point) has no pole near K_c, and its default adaptive steps locate K_c to 1e-15. Holding jaxdyn to
the peer's step would time a restriction that is the peer's own. The same-steps ratio (the same
101 points on both sides) is recorded beside it (`speedup_same_steps`) and printed.

PyDSTool (PyCont's home) is listed as a peer: PyDSTool 0.91.0 installs from PyPI but does not import
on NumPy 2 (`from numpy import Inf` in `PyDSTool/common.py`; `numpy.Inf` was removed in NumPy 2.0),
so it is skipped with that reason in the JSON.
"""

from __future__ import annotations

from typing import Any

from _common import Goal, Peer, Side, noop, paired, ratio_of, spread_of, time_sides

NAME = "continuation"
DESCRIPTION = ("Ott-Antonsen graphon N = 2000: equilibrium branch through a branch point vs pycont-lite; "
               "Stuart-Landau 100-D cycle branch (per step, per Floquet)")
X64 = True
X64_REASON = ("corrector tolerance 1e-10 and the located branch point compared with K_c = 5/3 to 1e-6: "
              "float32 resolves neither")
PEER = "pycont-lite"
PEERS = {"pycont-lite": Peer(("pycont",), ("pycont-lite", "scipy", "numpy")),
         "PyDSTool": Peer(("PyDSTool",), ("PyDSTool", "numpy"))}
HEADLINE = "oa_branch_point"
CASES = ("oa_branch_point", "stuart_landau_100")
STATEMENT = ("Ott-Antonsen graphon N = 2000, equilibrium branch K = 2.5 -> branch point (float64, each side "
             "at the steps it succeeds with: pycont-lite ds_max = 0.01, jaxdyn its defaults): jaxdyn >= 10x "
             "faster than pycont-lite, both located K within 1e-6 of 2 gamma / mu_max; the same-steps ratio "
             "is recorded beside it")
NATURAL = "jaxdyn_natural"  # the jaxdyn side at continuation's default steps (the headline)

# -- the Ott-Antonsen graphon problem ------------------------------------------------------------
N_OA = 2000
GAMMA = 0.5
W_MEAN, W_COS = 0.6, 0.4  # W(x, y) = W_MEAN + W_COS cos(2 pi (x - y))
MU_MAX = W_MEAN  # the top eigenvalue of W_N / N, exact for N >= 3 (constant eigenvector)
K_C = 2 * GAMMA / MU_MAX
K_START, K_STOP = 2.5, 1.5
DS, DS_MIN = 0.01, 1e-6
TOL = 1e-10
K_TOL = 1e-6  # the agreement the goal asks of the located K
PYCONT_SEED = 12345  # pycont-lite's default seed of its random test vectors
PEER_REPEATS = 3  # pycont-lite's timed runs (its one-run time varied 1.1..42 s with the load)
JAXDYN_CAPACITY = 200  # points; (2.5 - 1.5) / 0.01 = 100 steps are needed

# -- the Stuart-Landau lift ----------------------------------------------------------------------
SL_DIM = 100
SL_OMEGA = 1.0
SL_RATES = (-1.2, -3.0)  # the 98 linear directions' rates, linspace
SL_MU0, SL_MU1 = 0.25, 0.5
SL_SEGMENTS = 8
SL_DS = 0.05
SL_CAPACITY = 6  # points: 5 steps
SL_RTOL, SL_ATOL = 1e-9, 1e-11
# the dense path for the 801 unknowns: on the CPU one JVP through the adaptive segment solves costs
# 0.22 s (latency-bound) and the whole vmapped 801-column Jacobian 0.33 s, so GMRES (restart 50,
# ~150 JVPs a solve) would take minutes a step (measured: no step in 15 minutes)
SL_DENSE_MAX_DIM = 1000

PROBLEM = {
    "oa": {"n": N_OA, "gamma": GAMMA, "graphon": f"{W_MEAN} + {W_COS} cos(2 pi (x - y))",
           "nodes": "x_j = j / N", "equation": "z' = -gamma z + (K/2)(h - h z^2), h = W z / N",
           "mu_max_closed_form": MU_MAX, "K_c_closed_form": K_C, "k_start": K_START, "k_stop": K_STOP,
           "ds": DS, "ds_max": DS, "ds_min": DS_MIN, "tolerance": TOL, "k_agreement": K_TOL,
           "dtype": "float64", "pycont_seed": PYCONT_SEED},
    "stuart_landau": {"dim": SL_DIM, "omega": SL_OMEGA, "rates": f"linspace{SL_RATES} x 98",
                      "rotation": "Q from QR of a N(0,1) 100 x 100 matrix, numpy default_rng(0)",
                      "mu": [SL_MU0, SL_MU1], "n_segments": SL_SEGMENTS, "ds": SL_DS,
                      "rtol": SL_RTOL, "atol": SL_ATOL, "dense_max_dim": SL_DENSE_MAX_DIM},
}


def graphon_matrix(n: int):
    """The N x N matrix W_jk = W(x_j, x_k) (NumPy, float64)."""
    import numpy as np

    x = np.arange(n) / n
    return W_MEAN + W_COS * np.cos(2 * np.pi * (x[:, None] - x[None, :]))


def oa_residual_numpy(w, gamma: float = GAMMA):
    """The peer's G(z, K) on the matrix `w` (NumPy)."""
    n = w.shape[0]

    def G(z, k):
        h = w @ z / n
        return -gamma * z + 0.5 * k * (h - h * z * z)

    return G


def oa_jaxdyn(w, gamma: float = GAMMA, k: float = K_START):
    """`(problem, args)`: the jaxdyn `EquilibriumProblem` with K as its parameter, and the field's
    `args` (W, gamma, K as data, never closed over)."""
    import jax.numpy as jnp

    import jaxdyn.invariant as inv

    args = {"w": jnp.asarray(w), "gamma": jnp.asarray(gamma, jnp.float64), "k": jnp.asarray(k, jnp.float64)}
    return inv.EquilibriumProblem(oa_field, parameter=set_coupling), args


def oa_field(t, z, args):
    """z' = -gamma z + (K / 2)(h - h z^2), h = W z / N (the real Ott-Antonsen reduction)."""
    h = args["w"] @ z / args["w"].shape[0]
    return -args["gamma"] * z + 0.5 * args["k"] * (h - h * z * z)


def set_coupling(args, k):
    return {**args, "k": k}


def pycont_branch(G, n: int, *, k_start: float = K_START, k_stop: float = K_STOP, ds: float = DS,
                  ds_min: float = DS_MIN, n_steps: int = 1000) -> dict[str, Any]:
    """pycont-lite on the branch z = 0 from `k_start` downwards: the set-up of its public entry
    `arclengthContinuation` (solver parameters with its defaults, the initial tangent by its secant
    + `computeTangent`, the detection modules: parameter bound, branch point, fold), then its
    one-branch routine, which returns at the first located special point. Returns the terminating
    event's kind and K, the points and the G evaluations."""
    import numpy as np
    import scipy.optimize as opt
    from pycont import ArclengthContinuation as pac
    from pycont.detection import BifurcationDetectionModule, FoldDetectionModule, ParamMinDetectionModule
    from pycont.Logger import configureLOG
    from pycont.Tangent import computeTangent

    count = [0]

    def counted(z, k):
        count[0] += 1
        return G(z, k)

    configureLOG(verbosity="off")
    sp = {"tolerance": TOL, "param_min": k_stop, "initial_directions": "decrease_p",
          "analyze_stability": False, "rdiff": 6.6e-6, "nk_maxiter": 10, "seed": PYCONT_SEED,
          "s_jump": 0.01}
    u0 = np.zeros(n)
    modules = [ParamMinDetectionModule(counted, u0, k_start, sp, k_stop),
               BifurcationDetectionModule(counted, u0, k_start, sp)]
    rdiff = sp["rdiff"]
    u1 = opt.newton_krylov(lambda uu: counted(uu, k_start + rdiff), u0, f_tol=TOL, rdiff=rdiff,
                           maxiter=sp["nk_maxiter"])
    t0 = np.append((u1 - u0) / rdiff, 1.0)
    tangent = computeTangent(counted, u0, k_start, t0 / np.linalg.norm(t0), sp)
    modules.append(FoldDetectionModule(counted, u0, k_start, sp))
    tangent = tangent if tangent[n] < 0 else -tangent  # "decrease_p"
    branch, event = pac.continuation(counted, u0, k_start, tangent, ds_min, ds, ds, n_steps, 0, modules, sp)
    return {"kind": event.kind, "k": float(event.p), "max_abs_u": float(np.max(np.abs(event.u))),
            "n_points": int(len(branch.p_path)), "g_evaluations": count[0]}


def jaxdyn_runner(problem, n: int, *, natural: bool = False):
    """The jitted jaxdyn run `run(model) -> BranchResult` (K_START down to K_STOP): with the peer's
    steps (ds = ds_max = 0.01, ds_min = 1e-6), or with `natural=True` at `continuation`'s own
    defaults (ds 0.05, adaptive up to ds_max 0.5, ds_min 1e-8). Same tolerances either way."""
    import equinox as eqx
    import jax.numpy as jnp

    import jaxdyn.invariant as inv

    u0 = jnp.zeros(n)
    steps = {} if natural else {"ds": DS, "ds_min": DS_MIN, "ds_max": DS}

    @eqx.filter_jit
    def run(model):
        return inv.continuation(problem, u0, K_START, args=model, p_min=K_STOP, p_max=K_START,
                                n_steps=JAXDYN_CAPACITY, direction=-1, newton_tol=TOL, locate_tol=TOL,
                                throw=False, **steps)

    return run


def _branch_record(branch, rec: dict[str, Any]) -> dict[str, Any]:
    from jaxdyn._results import message

    bps = branch_points(branch)
    k = bps[0] if bps else None
    rec.update({"result": message(branch.result), "n_points": int(branch.n_points),
                "p_last": float(branch.p[int(branch.n_points) - 1]),
                "specials": [[kind, p] for kind, p, _ in branch.specials()],
                "k_located": k, "k_error": None if k is None else abs(k - K_C),
                "path": "matrix-free (N > dense_max_dim): Newton-Krylov, lineax GMRES"})
    return rec


def branch_points(branch) -> list[float]:
    """The K of every located branch point of a jaxdyn `BranchResult`."""
    return [p for kind, p, _ in branch.specials() if kind == "branch_point"]


def case_oa_branch_point(ctx) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    w = graphon_matrix(N_OA)
    problem, model = oa_jaxdyn(w)
    run = jaxdyn_runner(problem, N_OA)
    run_natural = jaxdyn_runner(problem, N_OA, natural=True)
    repeats = max(ctx.paired_rounds, min(ctx.opts.repeats, 2 if ctx.quick else 5))
    sides = [Side("jaxdyn", lambda: run(model), warmup=False),
             Side(NATURAL, lambda: run_natural(model), warmup=False)]
    peer_repeats = ctx.paired_rounds if ctx.quick else max(ctx.paired_rounds, PEER_REPEATS)
    if ctx.ok(PEER):
        G = oa_residual_numpy(w)
        print(f"  pycont-lite: 1 + {peer_repeats} runs interleaved with jaxdyn's rounds (1-40 s each, "
              "depending on the load) ...", flush=True)
        sides.append(Side(PEER, lambda: pycont_branch(G, N_OA), sync=noop, warmup=False,
                          max_repeats=peer_repeats,
                          info={"status": "ok", "note": f"{peer_repeats} runs after a first one, interleaved "
                                "with jaxdyn's rounds (NumPy/SciPy; no compilation); one-branch routine "
                                "with the public entry's set-up; stops at its located branch point"}))
    recs, outs = time_sides(sides, repeats=repeats)
    rec_j = _branch_record(outs["jaxdyn"], recs["jaxdyn"])
    rec_j["steps"] = "the peer's: ds = ds_max = 0.01, ds_min = 1e-6"
    rec_n = _branch_record(outs[NATURAL], recs[NATURAL])
    rec_n["steps"] = "continuation's defaults: ds = 0.05, ds_max = 0.5 (adaptive), ds_min = 1e-8"
    k_j, k_n = rec_j["k_located"], rec_n["k_located"]
    # the physical limit: one N x N product per Jacobian-vector product (memory bound, 32 MB)
    wj = jnp.asarray(w)
    v = jnp.ones(N_OA)
    mv = jax.jit(lambda a, b: a @ b)
    mv_s = time_sides([Side("matvec", lambda: mv(wj, v))], repeats=20)[0]["matvec"]["warm_min_s"]
    for r in (rec_j, rec_n):
        r.update(matvec_s=mv_s, matvec_equivalents=r["warm_median_s"] / mv_s)
    rec: dict[str, Any] = {"jaxdyn": rec_j, NATURAL: rec_n, "k_c_closed_form": K_C,
                           "speedup": {PEER: None}, "speedup_same_steps": {PEER: None},
                           "headline_settings": "natural (see the module docstring)",
                           "PyDSTool": ctx.peers["PyDSTool"]}
    if not ctx.ok(PEER):
        rec[PEER] = ctx.peers[PEER]
        return rec
    peer, out = dict(recs[PEER]), outs[PEER]
    k_p = out["k"] if out["kind"] == "BP" else None
    peer.update({"event": out["kind"], "k_event": out["k"], "k_located": k_p,
                 "k_error": None if k_p is None else abs(k_p - K_C), "n_points": out["n_points"],
                 "g_evaluations": out["g_evaluations"],
                 "matvec_equivalents": out["g_evaluations"]})
    peer["g_evaluation_share_of_time"] = out["g_evaluations"] * mv_s / peer["warm_median_s"]
    rec[PEER] = peer
    pn, pj = paired(peer, rec_n), paired(peer, rec_j)
    rec["speedup"][PEER] = pn["median"]
    rec["speedup_paired"] = {PEER: pn}
    rec["speedup_of_medians"] = {PEER: peer["warm_median_s"] / rec_n["warm_median_s"]}
    rec["speedup_same_steps"][PEER] = pj["median"]
    rec["speedup_same_steps_paired"] = {PEER: pj}

    def within(k):
        return k is not None and abs(k - K_C) <= K_TOL

    rec["both_located_within_tol"] = bool(within(k_n) and within(k_p))
    rec["same_steps_both_located_within_tol"] = bool(within(k_j) and within(k_p))
    rec["k_difference_jaxdyn_vs_peer"] = None if k_n is None or k_p is None else abs(k_n - k_p)
    rec["k_difference_jaxdyn_same_steps_vs_peer"] = None if k_j is None or k_p is None else abs(k_j - k_p)
    return rec


# -- Stuart-Landau lifted to 100 dimensions ------------------------------------------------------


def sl_data():
    """`(q, rates)`: the random rotation (NumPy's default_rng(0)) and the 98 linear rates."""
    import numpy as np

    q, r = np.linalg.qr(np.random.default_rng(0).normal(size=(SL_DIM, SL_DIM)))
    q = q * np.sign(np.diag(r))[None, :]
    return q, np.linspace(*SL_RATES, SL_DIM - 2)


def sl_field(t, y, args):
    """The rotated Stuart-Landau lift: v = Q^T y; (v_0, v_1) the oscillator, v_k' = a_k v_k."""
    import jax.numpy as jnp

    q, rates, mu, omega = args["q"], args["rates"], args["mu"], args["omega"]
    v = q.T @ y
    x1, x2 = v[0], v[1]
    r2 = x1 * x1 + x2 * x2
    dv = jnp.concatenate([jnp.stack([mu * x1 - omega * x2 - r2 * x1, omega * x1 + mu * x2 - r2 * x2]),
                          rates * v[2:]])
    return q @ dv


def set_mu(args, mu):
    return {**args, "mu": mu}


def sl_orbit_u(q, mu: float, m: int = SL_SEGMENTS, omega: float = SL_OMEGA):
    """The exact orbit at `mu` in `PeriodicOrbitProblem`'s layout `[states.ravel(), T]` (NumPy)."""
    import numpy as np

    theta = 2 * np.pi * np.arange(m) / m
    v = np.zeros((m, q.shape[0]))
    v[:, 0], v[:, 1] = np.sqrt(mu) * np.cos(theta), np.sqrt(mu) * np.sin(theta)
    return np.concatenate([(v @ q.T).ravel(), [2 * np.pi / omega]])


def sl_expected_multipliers(mu: float, rates, omega: float = SL_OMEGA):
    """1, exp(-2 mu T) and exp(a_k T), sorted by decreasing modulus."""
    import numpy as np

    T = 2 * np.pi / omega
    return np.sort(np.concatenate([[1.0, np.exp(-2 * mu * T)], np.exp(np.asarray(rates) * T)]))[::-1]


def case_stuart_landau_100(ctx) -> dict[str, Any]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.invariant as inv
    from jaxdyn._results import message
    from jaxdyn.invariant._floquet import product_eigenvalues
    from jaxdyn.invariant._periodic import _split, _variational

    q, rates = sl_data()
    args = {"q": jnp.asarray(q), "rates": jnp.asarray(rates), "mu": jnp.asarray(SL_MU0),
            "omega": jnp.asarray(SL_OMEGA)}
    problem = inv.PeriodicOrbitProblem(sl_field, parameter=set_mu, n_segments=SL_SEGMENTS, rtol=SL_RTOL,
                                       atol=SL_ATOL)
    u0 = jnp.asarray(sl_orbit_u(q, SL_MU0))

    @eqx.filter_jit
    def branch_run(args):
        return inv.continuation(problem, u0, SL_MU0, args=args, p_min=SL_MU0 - 1e-9, p_max=SL_MU1,
                                ds=SL_DS, ds_min=1e-6, ds_max=SL_DS, n_steps=SL_CAPACITY,
                                dense_max_dim=SL_DENSE_MAX_DIM, throw=False)

    @eqx.filter_jit
    def spectrum(u, args):
        return problem.spectrum(u, args["mu"], args)

    # the Floquet step split: segment Jacobians (variational equation, vmapped) and the periodic QR
    @eqx.filter_jit
    def jacobians(u, args):
        states, T = _split(u, SL_SEGMENTS)
        return jax.vmap(lambda x: _variational(problem.shooting, sl_field, x, T / SL_SEGMENTS, args,
                                               n_save=1))(states)[2]

    pqr = jax.jit(product_eigenvalues)
    repeats = max(1, min(ctx.opts.repeats, 2 if ctx.quick else 3))
    recs, outs = time_sides([Side("jaxdyn", lambda: branch_run(args), warmup=False)], repeats=repeats)
    rec_b = recs["jaxdyn"]
    branch = outs["jaxdyn"]
    n_pts = int(branch.n_points)
    mats = jacobians(u0, args)
    frecs, fouts = time_sides([Side("floquet", lambda: spectrum(u0, args)),
                               Side("segment_jacobians", lambda: jacobians(u0, args)),
                               Side("periodic_qr", lambda: pqr(mats))], repeats=max(3, repeats))
    # known answers at the last point of the branch
    u_last, mu_last = branch.u[n_pts - 1], float(branch.p[n_pts - 1])
    states, T = _split(u_last, SL_SEGMENTS)
    radius = np.linalg.norm(np.asarray(states), axis=1)
    mults = np.asarray(spectrum(u_last, set_mu(args, jnp.asarray(mu_last))))
    expected = sl_expected_multipliers(mu_last, rates)
    got = mults[np.argsort(-np.abs(mults))]
    rel = np.abs(np.abs(got) - expected) / expected
    start_mults = np.asarray(fouts["floquet"])
    start_rel = np.abs(np.abs(start_mults[np.argsort(-np.abs(start_mults))])
                       - sl_expected_multipliers(SL_MU0, rates)) / sl_expected_multipliers(SL_MU0, rates)
    steps = max(n_pts - 1, 1)
    rec_b.update({"result": message(branch.result), "n_points": n_pts, "mu_last": mu_last,
                  "per_step_s": rec_b["warm_median_s"] / steps, "unknowns": SL_SEGMENTS * SL_DIM + 1,
                  "period_error": abs(float(T) - 2 * np.pi / SL_OMEGA),
                  "radius_error": float(np.max(np.abs(radius - np.sqrt(mu_last)))),
                  "multiplier_max_rel_error": float(np.max(rel)),
                  "nontrivial_multiplier": float(np.exp(-2 * mu_last * 2 * np.pi / SL_OMEGA)),
                  "trivial_multiplier_error": float(np.min(np.abs(mults - 1.0)))})
    for r in frecs.values():
        r.pop("repeats_s", None)
    frecs["floquet"]["multiplier_max_rel_error_at_start"] = float(np.max(start_rel))
    return {"jaxdyn": rec_b, "floquet": frecs["floquet"], "segment_jacobians": frecs["segment_jacobians"],
            "periodic_qr": frecs["periodic_qr"], "headline": False, "speedup": {},
            "note": "no peer; time per continuation step = warm branch time / steps; one Floquet "
                    "computation = segment Jacobians (variational equation, 8 segments vmapped) + "
                    "periodic QR of the 8 factors (100 x 100)"}


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    j = rec["jaxdyn"]
    if case == "stuart_landau_100":
        return [f"branch: {j['n_points']} points to mu = {j['mu_last']:.4g} ({j['result']}), "
                f"{j['per_step_s']:.3g} s per step; one Floquet computation "
                f"{rec['floquet']['warm_median_s']:.3g} s (segment Jacobians "
                f"{rec['segment_jacobians']['warm_median_s']:.3g} s, periodic QR "
                f"{rec['periodic_qr']['warm_median_s'] * 1e3:.3g} ms)",
                f"known answers at the last point: period error {j['period_error']:.1e}, radius error "
                f"{j['radius_error']:.1e}, multipliers max relative error "
                f"{j['multiplier_max_rel_error']:.1e}, "
                f"trivial multiplier error {j['trivial_multiplier_error']:.1e}"]
    nat = rec[NATURAL]
    lines = [f"K_c (closed form) = {K_C!r}",
             f"jaxdyn, the peer's steps: {j['n_points']} points ({j['result']}), located K = "
             f"{j['k_located']} (error {j['k_error']}), ~{j['matvec_equivalents']:.0f} matvec-times "
             f"({j['matvec_s'] * 1e3:.2f} ms each)",
             f"jaxdyn, default steps (headline): {nat['n_points']} points ({nat['result']}), located K = "
             f"{nat['k_located']} (error {nat['k_error']}), {nat['warm_median_s']:.3g} s, "
             f"~{nat['matvec_equivalents']:.0f} matvec-times"]
    p = rec.get(PEER) or {}
    if p.get("status") == "ok":
        lines.append(f"pycont-lite: event {p['event']} at K = {p['k_event']!r} (error {p['k_error']}), "
                     f"{p['n_points']} points, {p['g_evaluations']} G evaluations "
                     f"({p['g_evaluation_share_of_time']:.0%} of its time at jaxdyn's matvec speed)")
        same = rec["speedup_same_steps"][PEER]
        lines.append(f"speedup: {rec['speedup'][PEER]:.3g}x (headline, default steps), {same:.3g}x (same "
                     "steps)")
    return lines


def goals(cases: dict[str, Any]) -> list[Goal]:
    head = cases.get(HEADLINE)
    ok = bool(head and head.get("both_located_within_tol"))
    note = None
    if head and ratio_of(head, PEER) is not None:
        note = (f"same steps (ds = ds_max = {DS}): {ratio_of(head, PEER, 'speedup_same_steps'):.3g}x, "
                f"located K {head['jaxdyn'].get('k_located')}")
        if not ok:
            note += (f"; located K: jaxdyn {head[NATURAL].get('k_located')}, {PEER} "
                     f"{head[PEER].get('k_located')}, closed form {K_C!r}: not both within {K_TOL:g}")
    return [Goal("oa_branch_point_vs_pycont_lite", STATEMENT,
                 f"median over interleaved rounds of {PEER} time / jaxdyn time (jaxdyn at its default "
                 "steps)", 10.0, ratio_of(head, PEER), condition=ok, note=note, spread=spread_of(head, PEER))]


def extra(ctx) -> dict[str, Any]:
    return {"peer_notes": {
        "pycont-lite": "one-branch routine with the public entry's set-up; started above K_c (see the "
                       "module docstring: upwards, a pole of its random test function precedes the "
                       "branch point and its localisation did not return in 6 minutes)",
        "PyDSTool": "0.91.0 installs but fails on import with NumPy 2 (numpy.Inf removed)"}}

