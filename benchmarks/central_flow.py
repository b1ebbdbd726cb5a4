"""Central flow: time per step with jaxdyn's native SDCP solver against a host (cvxpy) reference.

The central flow of gradient descent (Cohen, Damian et al., ICLR 2025, arXiv 2410.24206) solves,
at every field evaluation, a k x k semidefinite complementarity problem (SDCP) for the oscillation
covariance: S >= 0, W = q + M(S) >= 0, <S, W> = 0. The official PyTorch code and its JAX port
solve it on the host (a cvxpy problem with `Parameter`s built once per k and solved by CVXOPT; the
JAX port calls CVXOPT through `jax.pure_callback`), so the flow cannot be compiled into one device
program, every field evaluation waits on the host, and nothing can be differentiated through it.
jaxdyn solves it natively (`SemismoothNewton`, traced, implicit derivatives).

The reference (`HostCvxpySDCP`) is the ports' approach written as an
`AbstractComplementaritySolver`: `jax.pure_callback` to the official formulation (the quadratic
program min_S 1/2 <S, M(S)> + <q, S> over S >= 0, the KKT conditions of which are the SDCP when M
is symmetric positive semidefinite, as it is for GD; M normalised to unit RMS and replaced by its
PSD part, S = 0 returned at once when q >= 0, as the official `SDCPSolver` does) compiled once per k
with cvxpy `Parameter`s and solved by CLARABEL at tight tolerances (CVXOPT is not installed here;
CLARABEL is cvxpy's default interior-point conic solver, at least as accurate). The callback runs
inside `lax.scan`/`diffrax.diffeqsolve` (a host round trip per field evaluation, as in the port),
so both sides run the *same* jitted `central_flow` call: same model, k, eigen-solves, third
derivatives and integrator; the only difference is the inner solve and the host round trip it
forces. Differentiating through the reference raises (`pure_callback` has no JVP rule).

Cases:

- `digits` (**headline**): the issue's setting, the digits MLP of `edge-of-stability`
  (64-200-200-10 tanh, MSE on one-hot targets, n = 1000, p = 55 210 parameters, float64). GD at
  eta = 0.2 is run once (untimed) into the edge of stability; the flow starts from the midpoint of
  two consecutive GD iterates there, with k = the number of effective eigenvalues eta lambda_i at
  or above the threshold 1.95 (measured at the start; the JSON records them).
- `small`: a 64-3-10 tanh MLP (p = 235) on n = 200 digits, eta = 1.5, k = 10: ten effective
  eigenvalues at or above 1.95 after 1000 GD steps; the derivative work is cheap (dense Hessian,
  `DenseEigen`, the flow's own default below 257 parameters), so the inner solve and its host
  round trip weigh most in the reference.

Both cases use the flow's defaults otherwise (RK4, dt = 0.5 step: 8 field evaluations per step,
plus one at each save point; saved every step). `--quick` runs the `small` flows for 1 step and,
on `digits` (minutes per step on a 2-core CPU), only the cost split.

Per case: the time per central-flow step (warm median over interleaved repeats of one jitted
`central_flow(..., n_steps=N, compare=False)` call, divided by N; the speedup is the median of
the per-round ratios over at least 3 interleaved rounds, 2 with `--quick`), the inner solve alone (ours:
jitted `SemismoothNewton().solve` over the instances the flow produced, per solve; the reference:
cvxpy on the host per solve, and through the `pure_callback` round trip), max |Sigma_ours -
Sigma_ref| over the saved points (goal <= 1e-6), and the cost split of one step (eigen-solve,
third derivatives, SDCP, per field evaluation times the evaluations per step).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
import warnings
from typing import Any

from _common import Goal, Peer, Side, noop, paired, ratio_of, speedups, spread_of, time_sides

NAME = "central_flow"
DESCRIPTION = ("central flow (GD) per step: native SDCP (SemismoothNewton) vs a host cvxpy reference "
               "through pure_callback; digits 64-200-200-10 MLP and a 235-parameter MLP at k = 10")
X64 = True
X64_REASON = ("Sigma is compared with the reference's to 1e-6 and the SDCP is solved to 1e-6 relative: "
              "float32's 1e-7 resolution leaves no margin")
PEER = "cvxpy"
PEERS = {"cvxpy": Peer(("cvxpy", "clarabel"), ("cvxpy", "clarabel", "numpy"))}
HEADLINE = "digits"
CASES = ("digits", "small")
STATEMENT = ("central flow of GD on the digits MLP (64-200-200-10 tanh, n = 1000, float64) at the edge of "
             "stability: time per step >= 20x faster with jaxdyn's native SDCP than with the host cvxpy "
             "reference (same k, model, eigen-solves and integrator), Sigma equal to 1e-6")
SPEEDUP_GOAL = 20.0
SIGMA_TOL = 1e-6

# CLARABEL's tolerances for the reference (its defaults are 1e-8)
CLARABEL_TOL = 1e-12
RESIDUAL_OK = 1e-6  # a host solve counts as solved below this relative KKT residual

SETTINGS = {
    "digits": {"width": 200, "depth": 2, "n": 1000, "lr": 0.2, "gd_steps": 600, "k": None,
               "eigen": "lanczos", "n_steps": 1, "repeats": 2, "n_steps_quick": 0, "repeats_quick": 1,
               "seed": 0},
    "small": {"width": 3, "depth": 1, "n": 200, "lr": 1.5, "gd_steps": 1000, "k": 10, "eigen": "dense",
              "n_steps": 5, "repeats": 4, "n_steps_quick": 1, "repeats_quick": 1, "seed": 0},
}
THRESHOLD = 1.95  # the effective eigenvalues that count as at the edge (the paper's code)

PROBLEM = {
    "settings": SETTINGS,
    "loss": "1/(2n) sum_i |f(x_i) - y_i|^2 on one-hot targets (jaxdyn.experiments fixtures)",
    "data": "scikit-learn digits, n samples (seed 0), standardised",
    "dtype": "float64",
    "start": "midpoint of GD iterates gd_steps and gd_steps + 1 at the same lr (untimed)",
    "threshold": THRESHOLD,
    "reference": {"solver": "CLARABEL", "tol_gap_abs = tol_gap_rel = tol_feas": CLARABEL_TOL,
                  "formulation": "min 1/2 |L^T vec S|^2 + <q, S>, S PSD; L = PSD sqrt of M / rms(M)",
                  "call": "jax.pure_callback inside the jitted central_flow (vmap: sequential)"},
    "sigma_tol": SIGMA_TOL,
}


# -- the host reference --------------------------------------------------------------------------


_PROBLEMS: dict[int, Any] = {}  # k -> the cvxpy problem (built once per k, as the official code)
_RECORD: dict[str, Any] = {"on": False, "instances": []}


def reference_problem(k: int):
    """The parametrised cvxpy problem of size k: `(problem, q, L, S)`, built once per k."""
    if k not in _PROBLEMS:
        import cvxpy as cp

        q = cp.Parameter((k, k), symmetric=True, name="q")
        L = cp.Parameter((k * k, k * k), name="L")
        S = cp.Variable((k, k), PSD=True, name="S")
        objective = 0.5 * cp.sum_squares(L.T @ cp.vec(S, order="C")) + cp.sum(cp.multiply(q, S))
        _PROBLEMS[k] = (cp.Problem(cp.Minimize(objective)), q, L, S)
    return _PROBLEMS[k]


def host_sdcp(q, M, *, tol: float = CLARABEL_TOL):
    """Solve SDLCP(q, M) on the host with cvxpy (NumPy in, NumPy out): `(S, ok)`.

    The official formulation: S = 0 when q is positive semidefinite; otherwise M is scaled to unit
    RMS (and, beyond the official code, q to unit max-norm: S is then accurate to ~1e-7 relative
    on the flow's ill-conditioned M instead of ~3e-4 at the same tolerance), its `(k^2, k^2)`
    matrix symmetrised and replaced by its PSD square root L, and the quadratic program
    min 1/2 |L^T vec S|^2 + <q, S> over S PSD is solved by CLARABEL; S is scaled back. `ok` is 1
    when cvxpy reports `optimal` (or `optimal_inaccurate`) and the relative KKT residual
    (`sdcp_residual`) is at most `RESIDUAL_OK`.
    """
    import cvxpy as cp
    import numpy as np

    q = np.asarray(q, np.float64)
    M = np.asarray(M, np.float64)
    k = q.shape[0]
    q = 0.5 * (q + q.T)
    if np.linalg.eigvalsh(q).min() >= 0:
        S, ok = np.zeros((k, k)), 1
    else:
        m_scale = float(np.sqrt(np.mean(M**2))) + 1e-300
        q_scale = float(np.abs(q).max())
        B = M.reshape(k * k, k * k) / m_scale
        values, vectors = np.linalg.eigh(0.5 * (B + B.T))
        L = (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T
        problem, qp, Lp, Sv = reference_problem(k)
        qp.value, Lp.value = q / q_scale, L
        try:
            with warnings.catch_warnings():  # "may be inaccurate": judged by the residual below
                warnings.simplefilter("ignore", UserWarning)
                problem.solve(solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
            solved = problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) and Sv.value is not None
        except cp.SolverError:
            solved = False
        S = np.zeros((k, k)) if not solved else np.asarray(Sv.value) * (q_scale / m_scale)
        S = 0.5 * (S + S.T)
        ok = int(solved and sdcp_residual(q, M, S) <= RESIDUAL_OK)
    if _RECORD["on"]:
        _RECORD["instances"].append((q.copy(), M.copy(), S.copy()))
    return S, ok


def sdcp_residual(q, M, S) -> float:
    """The relative KKT residual of S for SDLCP(q, M) (NumPy): the largest of the PSD violations
    of S (relative to |S|) and of W = q + M(S) (relative to |q|), and |<S, W>| / (|S| |q|)."""
    import numpy as np

    W = q + np.einsum("abij,ij->ab", M, S)
    s_scale = max(float(np.abs(S).max()), 1e-300)
    q_scale = max(float(np.abs(q).max()), 1e-300)
    return max(0.0, -float(np.linalg.eigvalsh(S).min()) / s_scale,
               -float(np.linalg.eigvalsh(W).min()) / q_scale,
               abs(float(np.sum(S * W))) / (s_scale * q_scale))


@contextlib.contextmanager
def recording():
    """Collect `(q, M, S)` of every host solve made inside the block (a list, yielded)."""
    _RECORD["on"], _RECORD["instances"] = True, []
    try:
        yield _RECORD["instances"]
    finally:
        _RECORD["on"] = False


def _host_callback(q, M, tol):
    import numpy as np

    S, ok = host_sdcp(q, M, tol=tol)
    return S.astype(np.asarray(q).dtype), np.int32(ok)


def _reference_solver_class():
    """`HostCvxpySDCP`, built on first use (jaxdyn and JAX are imported lazily, after `run.py` has
    set the thread variables)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from jaxdyn._results import RESULTS
    from jaxdyn.training import AbstractComplementaritySolver

    class HostCvxpySDCP(AbstractComplementaritySolver):
        """The host reference: SDLCP(q, M) solved by cvxpy (CLARABEL) through `jax.pure_callback`.

        Traces under `jit`, `lax.scan` and `diffrax.diffeqsolve` (one host round trip per solve)
        and under `vmap` (the instances solved one after another). `init` is ignored (an
        interior-point method does not warm-start). Not differentiable: `pure_callback` has no
        JVP rule, so differentiating raises. Assumes M symmetric positive semidefinite (the GD
        central flow's case), as the official code does.
        """

        tol: float = eqx.field(static=True, default=CLARABEL_TOL)

        def solve(self, q, M, init):
            del init
            out = (jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((), jnp.int32))
            S, ok = jax.pure_callback(functools.partial(_host_callback, tol=self.tol), out, q, M,
                                      vmap_method="sequential")
            return S, RESULTS.where(ok == 1, RESULTS.successful, RESULTS.complementarity_not_solved)

    HostCvxpySDCP.__qualname__ = HostCvxpySDCP.__name__
    return HostCvxpySDCP


@functools.cache
def host_cvxpy_sdcp():
    """The `HostCvxpySDCP` class (see `_reference_solver_class`)."""
    return _reference_solver_class()


def __getattr__(name: str):
    if name == "HostCvxpySDCP":
        return host_cvxpy_sdcp()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the problems --------------------------------------------------------------------------------


def problem(case: str):
    """`(loss_fn, model, data, lr)` of a case: the digits fixtures of `edge-of-stability`, float64,
    `loss_fn(model, xs, ys)` (the convention of `central_flow`)."""
    import jax
    import jax.numpy as jnp

    from jaxdyn.experiments._fixtures import digits_data, mse_onehot, tanh_mlp

    s = SETTINGS[case]
    xs, ys = digits_data(s["n"], seed=s["seed"], dtype=jnp.float64)
    model = tanh_mlp(width=s["width"], depth=s["depth"], key=jax.random.key(s["seed"]), dtype=jnp.float64)
    return mse_onehot, model, (xs, ys), s["lr"]


def gd_to_edge(loss_fn, model, data, lr: float, n_steps: int):
    """GD from `model` for `n_steps` steps at `lr` (one jitted `lax.scan`), then the midpoint of
    iterates `n_steps` and `n_steps + 1` (GD oscillates across the central flow at the edge of
    stability; the two-step average lies on it to first order). Returns `(midpoint, losses)`."""
    import equinox as eqx
    import jax

    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p):
        return loss_fn(eqx.combine(p, static), *data)

    def step(p, _):
        value, g = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda a, b: a - lr * b, p, g), value

    @jax.jit
    def run(p):
        p, losses = jax.lax.scan(step, p, None, length=n_steps)
        p_next, _ = step(p, None)
        return jax.tree.map(lambda a, b: 0.5 * (a + b), p, p_next), losses

    mid, losses = run(params)
    return eqx.combine(mid, static), losses


def effective_spectrum(loss_fn, model, data, lr: float, k: int):
    """The `k` largest effective eigenvalues lr * lambda_i of the loss Hessian at `model` (dense
    `eigh` up to 2000 parameters, else Lanczos), descending (NumPy)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn._kernels import flatten
    from jaxdyn.curvature import hessian_operator, top_eigenvalues

    flat, unravel = flatten(model)
    if flat.size <= 2000:
        H = jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), *data)))(flat)
        values = jnp.linalg.eigvalsh(H)[::-1][:k]
    else:
        op = hessian_operator(loss_fn, model, *data)
        values = eqx.filter_jit(lambda o: top_eigenvalues(o, k, throw=False).eigenvalues)(op)
    return lr * np.asarray(values)


def edge_start(case: str) -> dict[str, Any]:
    """The start of a case at the edge of stability (untimed): the GD midpoint, its effective
    spectrum, and k (the setting's, or the count at or above `THRESHOLD`)."""
    import numpy as np

    loss_fn, model, data, lr = problem(case)
    s = SETTINGS[case]
    t0 = time.perf_counter()
    start, losses = gd_to_edge(loss_fn, model, data, lr, s["gd_steps"])
    spectrum = effective_spectrum(loss_fn, start, data, lr, 12)
    n_edge = int(np.sum(spectrum >= THRESHOLD))
    k = s["k"] if s["k"] is not None else max(1, n_edge)
    return {"loss_fn": loss_fn, "model": start, "data": data, "lr": lr, "k": k,
            "info": {"gd_steps": s["gd_steps"], "gd_final_loss": float(losses[-1]),
                     "start_effective_spectrum": [float(v) for v in spectrum],
                     "n_at_edge": n_edge, "k": k, "setup_s": time.perf_counter() - t0}}


# -- the sides -----------------------------------------------------------------------------------


def eigen_strategy(case: str):
    """The eigenpair strategy both sides use: `DenseEigen()` (p <= 256, the flow's own default
    there) or `LanczosEigen()` (warm-started Lanczos)."""
    from jaxdyn.training import DenseEigen, LanczosEigen

    return DenseEigen() if SETTINGS[case]["eigen"] == "dense" else LanczosEigen()


def flow_runner(start: dict[str, Any], n_steps: int, eigen):
    """`run(model, data, lr, sdcp) -> CentralFlowResult`: one jitted `central_flow` call (GD, the
    flow's default integrator and step, saved every step, no comparison runs, `throw=False`)."""
    import equinox as eqx

    from jaxdyn.training import central_flow

    loss_fn, k = start["loss_fn"], start["k"]

    @eqx.filter_jit
    def run(model, data, lr, sdcp):
        return central_flow(loss_fn, model, *data, lr=lr, k=k, n_steps=n_steps, eigen=eigen, sdcp=sdcp,
                            compare=False, throw=False)

    return run


def _with_cpu_time(call, store: list[float]):
    """`call`, blocking until its result is ready and appending the process CPU time it took to
    `store` (under a shared machine's load the CPU time is steadier than the wall time)."""
    import jax

    def timed():
        t0 = time.process_time()
        out = jax.block_until_ready(call())
        store.append(time.process_time() - t0)
        return out

    return timed


def third_derivatives(fn, w, U):
    """`T[p] = grad_w (u_a^T H(w) u_b)` for the k(k+1)/2 pairs a <= b (JVPs of HVPs), as the
    central flow's field computes them: shape `(k(k+1)/2, n)`."""
    import jax
    import numpy as np

    from jaxdyn._kernels import hvp

    ia, ib = np.triu_indices(U.shape[1])
    return jax.vmap(lambda ua, ub: jax.jvp(lambda z: hvp(fn, z, ub), (w,), (ua,))[1])(U[:, ia].T, U[:, ib].T)


def _sigma_record(ours, ref) -> dict[str, Any]:
    """max |Sigma_ours - Sigma_ref| over the saved points (absolute, and relative to max Sigma),
    at the first save point (the same instance on both sides), and the trajectories' distance."""
    import jax
    import numpy as np

    a, b = np.asarray(ours.sigma), np.asarray(ref.sigma)
    diff = np.abs(a - b)
    pa = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(ours.params)
                         if np.asarray(x).dtype.kind == "f"])
    pb = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(ref.params)
                         if np.asarray(x).dtype.kind == "f"])
    return {"sigma_max_abs_diff": float(diff.max()), "sigma_first_point_abs_diff": float(diff[0].max()),
            "sigma_max": float(np.abs(a).max()),
            "sigma_max_rel_diff": float(diff.max() / max(np.abs(a).max(), 1e-300)),
            "params_max_abs_diff_end": float(np.abs(pa - pb).max()),
            "sigma_ours_end": [float(x) for x in a[-1]], "sigma_ref_end": [float(x) for x in b[-1]]}


def _flow_record(res, n_steps: int) -> dict[str, Any]:
    import numpy as np

    from jaxdyn._results import message

    return {"result": message(res.result) or "successful", "n_steps": n_steps,
            "effective_eigenvalues_end": [float(x) for x in np.asarray(res.eigenvalues[-1])],
            "n_active_end": int(np.asarray(res.n_active)[-1]),
            "predicted_loss_end": float(np.asarray(res.predicted_loss)[-1])}


def inner_solves(ctx, instances, repeats: int) -> dict[str, Any]:
    """The inner solve alone, per solve, on the instances one reference run produced: ours
    (jitted `SemismoothNewton().solve` mapped over them, cold and warm-started from the previous
    instance's solution), cvxpy on the host (a Python loop) and cvxpy through the
    `pure_callback` round trip (jitted, mapped). Also max |S_ours - S_ref| over them."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdyn.training import SemismoothNewton

    qs = jnp.asarray(np.stack([q for q, _, _ in instances]))
    Ms = jnp.asarray(np.stack([M for _, M, _ in instances]))
    S_ref = np.stack([S for _, _, S in instances])
    warm = jnp.asarray(np.concatenate([np.zeros_like(S_ref[:1]), S_ref[:-1]]))
    cold = jnp.zeros_like(warm)
    m = len(instances)

    @eqx.filter_jit
    def mapped(solver, qs, Ms, inits):
        return jax.lax.map(lambda x: solver.solve(*x), (qs, Ms, inits))

    ours, ref = SemismoothNewton(), host_cvxpy_sdcp()()
    host_inputs = [(np.asarray(q), np.asarray(M)) for q, M, _ in instances]

    def host_loop():
        return [host_sdcp(q, M)[0] for q, M in host_inputs]

    sides = [Side("jaxdyn_cold", lambda: mapped(ours, qs, Ms, cold)),
             Side("jaxdyn_warm", lambda: mapped(ours, qs, Ms, warm)),
             Side("cvxpy_host", host_loop, sync=noop),
             Side("cvxpy_callback", lambda: mapped(ref, qs, Ms, cold))]
    recs, outs = time_sides(sides, repeats=repeats)
    S_ours = np.asarray(outs["jaxdyn_cold"][0])
    per = {name: rec["warm_median_s"] / m for name, rec in recs.items()}
    return {"n_instances": m, "k": int(qs.shape[1]),
            "q_psd_fraction": float(np.mean([np.linalg.eigvalsh(np.asarray(q)).min() >= 0 for q in qs])),
            "per_solve_s": per, "timings": recs,
            "ours_failed": int(np.sum(np.asarray(outs["jaxdyn_cold"][1]._value) != 0)),
            "S_max_abs_diff": float(np.abs(S_ours - S_ref).max()),
            "S_max_rel_diff": float(np.abs(S_ours - S_ref).max() / max(np.abs(S_ref).max(), 1e-300)),
            "speedup_host": paired(recs["cvxpy_host"], recs["jaxdyn_warm"])["median"],
            "speedup_callback": paired(recs["cvxpy_callback"], recs["jaxdyn_warm"])["median"],
            "speedup_host_paired": paired(recs["cvxpy_host"], recs["jaxdyn_warm"]),
            "speedup_callback_paired": paired(recs["cvxpy_callback"], recs["jaxdyn_warm"])}


def cost_split(start: dict[str, Any], eigen, repeats: int, *, warmup: bool = True) -> dict[str, Any]:
    """The pieces of one field evaluation at the start point, each jitted and timed alone: the
    gradient, the eigen-solve (cold: the flow's first call; warm: started from the eigenvectors
    at the point itself, the best case of the flow's warm start), the third derivatives
    (k(k+1)/2 JVPs of HVPs)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from jaxdyn._kernels import flatten

    flat, flattener = flatten(start["model"])
    data, k, lr = start["data"], start["k"], start["lr"]
    loss_fn = start["loss_fn"]

    def fn(w):
        return loss_fn(flattener.unravel(w), *data)

    d = jnp.full_like(flat, lr**0.5)  # GD: P = I / lr, D = P^(-1/2)
    top = eqx.filter_jit(lambda w, v0: eigen.top(fn, w, d, k, v0))
    lam, V, _ = top(flat, jnp.eye(flat.shape[0], k, dtype=flat.dtype).T)
    U = d[:, None] * V
    grad = jax.jit(jax.grad(fn))
    third = jax.jit(lambda w, U: third_derivatives(fn, w, U))
    cold = jnp.eye(flat.shape[0], k, dtype=flat.dtype).T
    sides = [Side("gradient", lambda: grad(flat), warmup=warmup),
             Side("eigen_cold", lambda: top(flat, cold), warmup=warmup),
             Side("eigen_warm", lambda: top(flat, V.T), warmup=warmup),
             Side("third_derivatives", lambda: third(flat, U), warmup=warmup)]
    recs, _ = time_sides(sides, repeats=repeats)
    return {"n_params": int(flat.shape[0]), "eigen": type(eigen).__name__, "pairs": k * (k + 1) // 2,
            "per_call_s": {name: rec["warm_median_s"] for name, rec in recs.items()}, "timings": recs}


def run_case(ctx, case: str) -> dict[str, Any]:
    """One case: the edge start, the two flows timed (interleaved), Sigma compared, the inner
    solves timed alone, the cost split."""
    import jax.numpy as jnp

    from jaxdyn.training import SemismoothNewton

    s = SETTINGS[case]
    start = edge_start(case)
    n_steps = s["n_steps_quick"] if ctx.quick else s["n_steps"]
    repeats = max(1, min(ctx.opts.repeats, s["repeats_quick"] if ctx.quick else s["repeats"]))
    if n_steps:  # the flows: at least MIN_PAIRED_ROUNDS interleaved rounds of both sides
        repeats = max(repeats, ctx.paired_rounds)
    eigen = eigen_strategy(case)
    if n_steps == 0:  # --quick on the digits MLP: the flows take minutes a step here; the split only
        return {"start": start["info"], "eigen": type(eigen).__name__, "n_steps": 0, "speedup": {},
                "note": "--quick: the flows are not run on this case (minutes per step), only the cost split",
                "cost_split": cost_split(start, eigen, repeats=repeats, warmup=False)}
    run = flow_runner(start, n_steps, eigen)
    model, data, lr = start["model"], start["data"], jnp.asarray(start["lr"])
    ours = SemismoothNewton()
    cpu: dict[str, list[float]] = {"jaxdyn": [], PEER: []}
    sides = [Side("jaxdyn", _with_cpu_time(lambda: run(model, data, lr, ours), cpu["jaxdyn"]), warmup=False,
                  info={"sdcp": "SemismoothNewton() (native, traced)"})]
    if ctx.ok(PEER):
        ref = host_cvxpy_sdcp()()
        sides.append(Side(PEER, _with_cpu_time(lambda: run(model, data, lr, ref), cpu[PEER]), warmup=False,
                          info={"sdcp": "HostCvxpySDCP(): cvxpy/CLARABEL through jax.pure_callback"}))
    with recording() as instances:
        recs, outs = time_sides(sides, repeats=repeats)
    rec: dict[str, Any] = {"start": start["info"], "eigen": type(eigen).__name__,
                           "n_steps": n_steps, "dt": "central_flow default"}
    for name, r in recs.items():
        r["per_step_s"] = r["warm_median_s"] / n_steps
        r["cpu_s"] = cpu[name][1:]  # the process CPU time of each timed call (the first call dropped)
        r["cpu_per_step_s"] = statistics.median(cpu[name][1:] or cpu[name]) / n_steps
        r["flow"] = _flow_record(outs[name], n_steps)
        rec[name] = r
    rec["cost_split"] = cost_split(start, eigen, repeats=repeats if ctx.quick else max(3, repeats),
                                   warmup=not ctx.quick)
    if PEER not in recs:
        rec["speedup"] = {}
        return rec
    per_run = len(instances) // (repeats + 1)
    rec["sdcp_solves_per_step"] = per_run / n_steps
    rec.update(speedups(recs, [PEER]))
    rec["speedup_cpu_time"] = recs[PEER]["cpu_per_step_s"] / recs["jaxdyn"]["cpu_per_step_s"]
    rec.update(_sigma_record(outs["jaxdyn"], outs[PEER]))
    rec["inner_solve"] = inner_solves(ctx, instances[:per_run][: 10 if ctx.quick else None],
                                      repeats=max(3, repeats))
    split = rec["cost_split"]["per_call_s"]
    evals = rec["sdcp_solves_per_step"]
    inner = rec["inner_solve"]["per_solve_s"]
    rec["per_step_model_s"] = {
        "evaluations_per_step": evals,
        "eigen_warm": evals * split["eigen_warm"], "eigen_cold": evals * split["eigen_cold"],
        "third_derivatives": evals * split["third_derivatives"], "gradient": evals * split["gradient"],
        "sdcp_ours": evals * inner["jaxdyn_warm"], "sdcp_ref_callback": evals * inner["cvxpy_callback"],
        "measured_ours": recs["jaxdyn"]["per_step_s"], "measured_ref": recs[PEER]["per_step_s"]}
    return rec


def case_digits(ctx) -> dict[str, Any]:
    return run_case(ctx, "digits")


def case_small(ctx) -> dict[str, Any]:
    return run_case(ctx, "small")


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    from _common import fmt_s

    lines = [f"start: k = {rec['start']['k']} ({rec['start']['n_at_edge']} effective eigenvalues >= "
             f"{THRESHOLD}), eigen {rec['eigen']}, {rec['n_steps']} steps per timed call"]
    split = rec["cost_split"]["per_call_s"]
    lines.append("one field evaluation's pieces: " + ", ".join(f"{k} {fmt_s(v)}" for k, v in split.items()))
    for side in ("jaxdyn", PEER):
        if side in rec:
            lines.append(f"{side}: {fmt_s(rec[side]['per_step_s'])} per step, CPU time "
                         f"{fmt_s(rec[side]['cpu_per_step_s'])} per step ({rec[side]['flow']['result']})")
    if "speedup_cpu_time" in rec:
        lines.append(f"ratio of CPU time per step: {rec['speedup_cpu_time']:.2f}x")
    if "sigma_max_abs_diff" in rec:
        lines.append(f"max |Sigma_ours - Sigma_ref| = {rec['sigma_max_abs_diff']:.2e} (relative "
                     f"{rec['sigma_max_rel_diff']:.2e}; first point {rec['sigma_first_point_abs_diff']:.2e})")
        inner = rec["inner_solve"]
        per = inner["per_solve_s"]
        lines.append(f"inner solve (k = {inner['k']}, {inner['n_instances']} instances): ours "
                     f"{fmt_s(per['jaxdyn_warm'])} warm / {fmt_s(per['jaxdyn_cold'])} cold, cvxpy "
                     f"{fmt_s(per['cvxpy_host'])} on the host, {fmt_s(per['cvxpy_callback'])} through the "
                     f"callback: {inner['speedup_callback']:.0f}x; max |S_ours - S_ref| "
                     f"{inner['S_max_abs_diff']:.1e}")
        m = rec["per_step_model_s"]
        lines.append(f"per step ({m['evaluations_per_step']:.0f} field evaluations): eigen "
                     f"{fmt_s(m['eigen_warm'])}..{fmt_s(m['eigen_cold'])} (warm..cold), third derivatives "
                     f"{fmt_s(m['third_derivatives'])}, SDCP ours {fmt_s(m['sdcp_ours'])} vs cvxpy "
                     f"{fmt_s(m['sdcp_ref_callback'])}; measured {fmt_s(m['measured_ours'])} vs "
                     f"{fmt_s(m['measured_ref'])}")
    return lines


def goals(cases: dict[str, Any]) -> list[Goal]:
    out = []
    for case, what in ((HEADLINE, "digits MLP (headline)"), ("small", "64-3-10 MLP, k = 10")):
        rec = cases.get(case)
        diff = None if not rec else rec.get("sigma_max_abs_diff")
        out.append(Goal(f"per_step_{case}", STATEMENT if case == HEADLINE else
                        f"central flow per step on the {what}: >= 20x faster than the host cvxpy "
                        "reference, Sigma equal to 1e-6",
                        "median over interleaved rounds of reference time per step / jaxdyn time per "
                        "step (same jitted central_flow)",
                        SPEEDUP_GOAL, ratio_of(rec, PEER), spread=spread_of(rec, PEER),
                        condition=diff is not None and diff <= SIGMA_TOL,
                        note=None if diff is None else f"max |Sigma_ours - Sigma_ref| = {diff:.2e} "
                        f"(needs <= {SIGMA_TOL:g})"))
    return out
