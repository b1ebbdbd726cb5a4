"""SGD Lyapunov exponent at an interpolating minimum of the digits MLP (p = 10 009): the
matrix-free path (one HVP of the mini-batch loss per step, in normal-space coordinates) against a
dense baseline that materialises each mini-batch Hessian H_xi (p x p, 800 MB in float64, p HVPs
via `jax.hessian`) and then applies U^T (I - eta H_xi) U.

Same problem, same float64, same step size, batch size, chains and steps; the target is a standard
error <= 0.01 on the exponent. The dense baseline is far too slow to run to the end (hours): a few
of its steps are timed after a warm-up step and the total is extrapolated (steps x per-step time);
the JSON says so (`extrapolated: true`). The Gauss-Newton coordinate path (exact at interpolation
for this squared loss) is timed as a third side.

Timing: the dense steps run in the same interleaved rounds as the two matrix-free sides (3 rounds,
2 with `--quick`: one dense step a round, shortened problem scaled by `Side.scale` to the whole
run's steps), and the speedup is the median of the per-round ratios (dense total / matrix-free
run), with its IQR, min and max next to it.
"""

from __future__ import annotations

import time
from typing import Any

from _common import Goal, Side, noop, paired, ratio_of, spread_of, time_sides

NAME = "sgd"
DESCRIPTION = ("SGD Lyapunov exponent (stderr <= 0.01) at an interpolating minimum of a p = 10 009 "
               "digits MLP: matrix-free HVPs vs materialised mini-batch Hessians")
X64 = True
X64_REASON = ("the exponent averages log-norm increments over 8 x 1100 steps to a stderr of 0.01 near an "
              "interpolating minimum fitted to float64 precision (float32 would blur its normal space)")
PEER = "dense"
PEERS: dict = {}  # the baseline is written here: nothing to import
HEADLINE = "digits_p10k"
CASES = (HEADLINE,)
STATEMENT = "matrix-free path >= 10x faster than the dense baseline (materialised H_xi) at p = 1e4"
PROBLEM = {
    "model": "eqx.nn.MLP(64, 'scalar', 72, depth 2, tanh), float64",
    "data": "n = 64 digits (sklearn bundled), standardised, target +-1 even/odd",
    "loss": "per-example 0.5 * (f(x_i) - y_i)^2, interpolating minimum by Levenberg-Marquardt",
    "lr_frac_of_gd_boundary": 0.6,
    "batch_size": 1,
    "n_steps": 1000,
    "transient_steps": 100,
    "n_chains": 8,
    "target_stderr": 0.01,
}


def _problem():
    from jaxdyn.experiments.sgd_stability import digits_problem
    from jaxdyn.training import GaussNewton, find_interpolating_minimum, normal_space

    model, data, residual, loss = digits_problem(n=64)
    t0 = time.perf_counter()
    fit = find_interpolating_minimum(residual, model, data, adam_steps=0, lm_steps=40)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    space_h = normal_space(loss, fit.params, data, ms_max_dim=0)
    t_h = time.perf_counter() - t0
    t0 = time.perf_counter()
    space_g = normal_space(loss, fit.params, data, curvature=GaussNewton(residual))
    t_g = time.perf_counter() - t0
    return fit, data, loss, space_h, space_g, {"fit_s": t_fit, "normal_space_hessian_s": t_h,
                                               "normal_space_gauss_newton_s": t_g}


def _dense_step(data, loss, space, lr):
    """One step of the dense baseline: materialise H_xi (jax.hessian of the mini-batch loss: p
    HVPs), then U^T (I - lr H_xi) U v and its norm. Each call takes the next mini-batch."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    theta, unravel, U = space.theta, space.unravel, space.basis
    n = space.n_examples

    def minibatch_loss(idx):
        batch = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], data)

        def mean_loss(th):  # the mean per-example loss at the parameters th (flat)
            return jnp.mean(jax.vmap(loss, in_axes=(None, 0))(unravel(th), batch))

        return mean_loss

    @eqx.filter_jit
    def step(v, key):
        idx = jax.random.choice(key, n, (PROBLEM["batch_size"],), replace=False)
        H = jax.hessian(minibatch_loss(idx))(theta)  # (p, p)
        w = U @ v
        v_new = U.T @ (w - lr * (H @ w))
        nrm = jnp.linalg.norm(v_new)
        return v_new / nrm, jnp.log(nrm), H.nbytes

    state = {"v": jnp.ones(space.rank) / jnp.sqrt(space.rank), "i": 0}

    def call():
        state["v"], lg, nbytes = step(state["v"], jax.random.fold_in(jax.random.key(0), state["i"]))
        state["i"] += 1
        return jax.block_until_ready(lg), int(nbytes)

    return call


def case_digits_p10k(ctx) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from jaxdyn.training import sgd_lyapunov

    fit, data, loss, space_h, space_g, setup = _problem()
    lr = PROBLEM["lr_frac_of_gd_boundary"] * 2 / float(space_h.lambda_max)
    kw = dict(lr=jnp.asarray(lr), batch_size=PROBLEM["batch_size"], key=jax.random.key(0),
              n_steps=PROBLEM["n_steps"], n_chains=PROBLEM["n_chains"],
              transient_steps=PROBLEM["transient_steps"], mean_square=False)
    repeats = max(ctx.paired_rounds, min(ctx.opts.repeats, 3 if ctx.quick else 5))
    # the dense baseline takes seconds per step: one step a round (after a first, compiling one),
    # interleaved with the matrix-free runs, scaled to the whole run's steps
    total_steps = PROBLEM["n_chains"] * (PROBLEM["n_steps"] + PROBLEM["transient_steps"])
    n_timed = ctx.paired_rounds
    sides = [Side("jaxdyn", lambda: sgd_lyapunov(loss, fit.params, data, normal_space=space_h, **kw),
                  warmup=False,
                  info={"method": "HVP of the mini-batch mean loss per step (forward-over-reverse), "
                                  "U^T/U matvecs"}),
             Side("jaxdyn_gauss_newton",
                  lambda: sgd_lyapunov(loss, fit.params, data, normal_space=space_g, **kw),
                  warmup=False,
                  info={"method": "per-example Gauss-Newton factors G_i = J_i U, O(B r) per step"}),
             Side("dense", _dense_step(data, loss, space_h, jnp.asarray(lr)), sync=noop, warmup=False,
                  max_repeats=n_timed, scale=lambda measured, out: measured * total_steps)]
    recs, outs = time_sides(sides, repeats=repeats)
    for name in ("jaxdyn", "jaxdyn_gauss_newton"):
        rec = recs[name]
        rec["exponent"] = float(outs[name].exponent)
        rec["stderr"] = float(outs[name].stderr)
        rec["stderr_target_met"] = float(outs[name].stderr) <= PROBLEM["target_stderr"]
    d = recs["dense"]["measured"]
    per_step = d["warm_median_s"]
    # compile = first call minus the fastest timed step (a step takes seconds and varies with load)
    dense = {"first_call_s": d["first_call_s"], "compile_s": max(0.0, d["first_call_s"] - d["warm_min_s"]),
             "per_step_s": per_step, "steps_timed": n_timed, "n_repeats": n_timed,
             "rounds": recs["dense"]["rounds"], "step_times_s": d["repeats_s"],
             "repeats_s": recs["dense"]["repeats_s"],
             "hessian_bytes": outs["dense"][1], "total_steps": total_steps,
             "warm_median_s": per_step * total_steps, "extrapolated": True, "scaled": True,
             "note": f"{n_timed} steps timed, one per interleaved round, after a first (compiling) step; "
                     f"total = per-step time x {total_steps} steps (chains x (steps + transient)); "
                     "repeats_s: the scaled totals"}
    jd, gn = recs["jaxdyn"], recs["jaxdyn_gauss_newton"]
    pr, pg = paired(dense, jd), paired(dense, gn)
    return {"headline": True,
            "problem": dict(PROBLEM, n_params=int(space_h.theta.shape[0]), rank=space_h.rank,
                            lr=lr, lambda_max=float(space_h.lambda_max), fit_loss=float(fit.loss)),
            "setup_s": setup, "jaxdyn": jd, "jaxdyn_gauss_newton": gn, "dense": dense,
            "speedup": {"dense": pr["median"]}, "speedup_paired": {"dense": pr},
            "speedup_of_medians": {"dense": dense["warm_median_s"] / jd["warm_median_s"]},
            "speedup_gauss_newton_over_dense": pg["median"],
            "speedup_gauss_newton_over_dense_paired": pg,
            "gd_exponent": float(outs["jaxdyn"].gd_exponent)}


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    return [f"{side}: exponent {rec[side]['exponent']:.4f} +- {rec[side]['stderr']:.4f}"
            for side in ("jaxdyn", "jaxdyn_gauss_newton")] + [
        f"dense: {rec['dense']['per_step_s']:.2f} s per step x {rec['dense']['total_steps']} "
        f"(extrapolated); setup {rec['setup_s']}"]


def goals(cases: dict[str, Any]) -> list[Goal]:
    rec = cases.get(HEADLINE)
    speed = ratio_of(rec, "dense")
    return [Goal("matrix_free_vs_dense", STATEMENT,
                 "median over interleaved rounds of dense total (extrapolated from the round's step) / "
                 "matrix-free run", 10.0,
                 speed, condition=bool(rec and rec["jaxdyn"]["stderr_target_met"]),
                 spread=spread_of(rec, "dense"),
                 note="met also requires the matrix-free stderr <= 0.01")]
