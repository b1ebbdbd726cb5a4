"""Hessian curvature of an MLP on digits: jaxdyn vs PyHessian, curvlinops (PyTorch) and matfree.

Problem (identical on every side): scikit-learn's bundled digits (8x8 images, 1797 samples),
each feature standardised (zero-variance pixels set to 0); all 1797 samples plus the first 203
again, i.e. **2000 samples** (the repeats are said here and in the JSON). One-hot targets. A
fully connected tanh network 64-200-200-10 (55 210 parameters) with PyTorch's default
initialisation drawn once by NumPy (uniform in +-1/sqrt(fan_in), seed 0) and copied into both
frameworks. Loss: `torch.nn.MSELoss()` semantics, the mean over all 2000 x 10 entries of
(f - y)^2, float32 on both sides, full batch, CPU.

**Equal achieved error** (issue 16; issue 5 showed that comparing at the same *requested*
tolerance measured how each side reads its tolerance, not the work needed for an answer). Every
side runs a sweep of its own settings; each setting records its time, its HVP count and its
*achieved* error against a tight reference: jaxdyn's Lanczos in **float64** (the float32 weights
and data cast exactly, residual tolerance 1e-10, 300 steps, the top 12), checked against an
independent float64 reference (curvlinops' operator in float64 and scipy `eigsh`, tol 1e-12)
when curvlinops is installed. The error of a top-k answer is the largest relative error over its
k eigenvalues (sorted descending, compared with the reference's k largest). For each error level
e in `LEVELS` each side's **cheapest setting whose measured error is <= e** is picked (nothing
interpolated) and the ratio of their warm medians is reported, with the paired per-round ratios
(median, spread). At the headline level the chosen settings are then timed again together, in 3
interleaved rounds (2 with `--quick`; the sweep's time budget leaves a slow setting one run), and
the headline speedup is the median of those per-round ratios, its IQR, min and max beside it.
The headline level is `HEADLINE_LEVEL` = 1e-3, fixed before measuring: it is
the precision at which the sharpness is compared with 2/eta at the edge of stability and the
tolerance the earlier goal used; the other levels are reported beside it.

Cases:

- `top_eigenvalue` (**headline**, goal (a)): the largest eigenvalue. jaxdyn:
  `top_eigenvalues(hessian_operator(...), 1, tol=t, criterion=C)` (Lanczos, full
  reorthogonalisation), C in {`EigenvalueBoundCriterion()`, `ChangeCriterion()`}, t in `TOLS`,
  the operator built inside one `eqx.filter_jit`. PyHessian: `hessian(model, MSELoss(), data=(x,
  y), cuda=False).eigenvalues(maxIter=1000, tol=t, top_n=1)` (power iteration, stops when
  successive estimates change by less than t relatively), t in `TOLS`, seed 0; `maxIter` 1000
  (not its default 100) so that its tolerance, not the cap, decides. `cost_model` in the JSON:
  the FLOPs of one HVP (XLA's cost analysis) over the machine's float32 matmul rate.
- `top10` (goals (b) and (c)): the 10 largest eigenvalues. jaxdyn: `top_eigenvalues(..., 10,
  n_steps=150, tol=t, criterion=C)`, C in {`EigenvalueBoundCriterion()`, `ResidualCriterion()`},
  and the band Lanczos from a fixed random block of 2 start vectors (`v0=` a `(2, size)` normal
  draw: still a cold start; a block resolves the near-multiple eigenvalues 0.6749/0.6737 that a
  single Krylov vector takes longer to separate), `ResidualCriterion()` at the three loosest t.
  PyHessian: `eigenvalues(top_n=10, tol=t)` (deflated power iteration) at its default `maxIter`
  100 per eigenvalue. curvlinops: its documented way, `scipy.sparse.linalg.eigsh(
  HessianLinearOperator(model, MSELoss(), params, [(x, y)]).to_scipy(numpy.float32), k=10,
  which="LA", tol=t, ncv=m, v0=...)` (ARPACK, implicitly restarted Lanczos), t in `TOLS` plus 0
  (machine precision), m in {None (ARPACK's 2k+1 = 21), 40}, a fixed start vector; its matvecs
  are counted by a wrapper around the SciPy operator (each is one HVP).
- `tracking` (part (d), reported, no goal): GD (lr `TRACK_LR`) from the same weights, the top 10
  every `TRACK_EVERY` steps over `TRACK_STEPS` steps (200 with `--quick`): each eigen-solve
  started cold (the documented deterministic start) vs warm (`v0=` the previous solve's
  eigenvectors, where `top_eigenvalues` accepts `v0`), the same criterion and tolerance. Total
  HVPs, time, and the largest relative difference of the two eigenvalue tracks.
- `hvp_over_grad`: one Hessian-vector product over one gradient, both jitted, same data (goal
  <= 3). Torch's ratios for information: a full HVP (forward, gradient with `create_graph`,
  second backward) and PyHessian's per-iteration HVP, which reuses a stored gradient graph.
- `density`: spectral density by stochastic Lanczos quadrature, 1 probe, 100 Lanczos steps
  (PyHessian's defaults `iter=100, n_v=1`). jaxdyn `spectral_density(order=100, n_probes=1)` vs
  PyHessian `density(iter=100, n_v=1)` vs matfree used directly
  (`matfree.decomp.tridiag_sym(100, reortho="full")` on the same HVP, then `eigh`). PyHessian's
  `density` calls `torch.eig`, removed from PyTorch (2.0+): the unmodified call is tried and its
  error recorded; then it is timed with a one-line shim `torch.eig = eigh-based replacement`.

Timing: the harness's `time_sides` (first call on its own, one warm-up, then interleaved
repeats; every setting of a sweep, jaxdyn's and the peers', in the same rounds). Sweeps use at
most `SWEEP_REPEATS` repeats (2 with --quick), slow peer settings fewer. torch is first probed
at 1 thread and at --threads on the PyHessian call and then run at the faster count for every
case (on a shared 2-core machine torch's intra-op threads can be many times slower when another
process holds a core; the probe is in the JSON under `peer.pyhessian.thread_probe`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from typing import Any

# OpenBLAS (NumPy's, SciPy's, and jaxlib's LAPACK kernels, e.g. `eigh` of a Lanczos tridiagonal
# larger than 64) otherwise starts one busy-waiting thread per core for every small call: on a
# shared 2-core machine a 90 x 90 `eigh` then took 200-400 ms instead of 0.5 ms, which made a
# top-10 Lanczos (an `eigh` per step) 7x slower and slowed ARPACK alike. One thread for both
# sides, set before NumPy is imported (run.py imports this module first); recorded in the JSON.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _common import Goal, Peer, Side, noop, paired, probe_threads, speedups, time_sides

NAME = "curvature"
DESCRIPTION = ("top-1 and top-10 Hessian eigenvalues at equal achieved error, eigenvalue tracking, "
               "HVP/gradient cost and SLQ density of a 64-200-200-10 tanh MLP on 2000 digits "
               "samples vs PyHessian, curvlinops (torch) and matfree")
X64 = False
X64_REASON = ("float32 on both sides (torch's default): the error levels compared (1e-3 headline, down to "
              "1e-6) are relative errors of eigenvalues, within float32's reach")
PEER = "pyhessian"
CURVLINOPS = "curvlinops"
PEERS = {"pyhessian": Peer(("torch", "pyhessian"), ("torch", "PyHessian")),
         CURVLINOPS: Peer(("torch", "curvlinops", "scipy"), ("torch", "curvlinops-for-pytorch", "scipy"))}
HEADLINE = "top_eigenvalue"
CASES = ("top_eigenvalue", "top10", "tracking", "hvp_over_grad", "density")
STATEMENT = ("at equal achieved error 1e-3 (against a float64 reference): top Hessian eigenvalue "
             ">= 2x faster than PyHessian, top 10 >= 5x PyHessian and >= 2x curvlinops (scipy "
             "eigsh); hvp_over_grad <= 3")
GOAL_TOP1 = 2.0
GOAL_TOP10_PYHESSIAN = 5.0
GOAL_TOP10_CURVLINOPS = 2.0
LEVELS = (1e-2, 1e-3, 1e-4, 1e-5)
HEADLINE_LEVEL = 1e-3
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
TOLS_QUICK = (1e-2, 1e-3, 1e-4)
K_TOP = 10
TOP10_STEPS = 150
TOP10_BLOCK = 2  # rows of the random start block of jaxdyn's band-Lanczos settings
PYHESSIAN_MAXITER_TOP1 = 1000
PYHESSIAN_MAXITER_TOP10 = 100
PYHESSIAN_LONG_TOP10 = ((1e-4, 1000), (1e-5, 1000))  # (tol, maxIter): one run each, full mode
EIGSH_NCV = (None, 40)
REF_K = 12
REF_TOL = 1e-10
REF_STEPS = 300
SWEEP_REPEATS = 5
TRACK_LR = 2.0
TRACK_EVERY = 10
TRACK_STEPS = 1000
TRACK_STEPS_QUICK = 200
TRACK_TOL = 1e-4
ORDER = 100
N_SAMPLES = 2000
WIDTHS = (64, 200, 200, 10)
PROBLEM = {
    "data": "sklearn load_digits: 1797 samples, standardised per feature; all 1797 plus the first "
            "203 repeated = 2000 samples",
    "n_samples": N_SAMPLES,
    "model": "tanh MLP 64-200-200-10, torch-default uniform init (NumPy seed 0), copied",
    "n_params": sum(a * b + b for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True)),
    "loss": "mean over all n x 10 entries of (f - onehot)^2 (torch.nn.MSELoss)",
    "dtype": "float32",
    "error": "achieved: max over the k eigenvalues of |lambda_i - lambda_i_ref| / |lambda_i_ref|",
    "reference": f"jaxdyn Lanczos in float64 (the same float32 values cast), top {REF_K}, residual "
                 f"tol {REF_TOL}, {REF_STEPS} steps; checked against curvlinops float64 + eigsh",
    "levels": list(LEVELS),
    "headline_level": HEADLINE_LEVEL,
    "tols": list(TOLS),
    "tracking": {"lr": TRACK_LR, "every": TRACK_EVERY, "n_steps": TRACK_STEPS,
                 "n_steps_quick": TRACK_STEPS_QUICK, "k": K_TOP, "tol": TRACK_TOL,
                 "criterion": "EigenvalueBoundCriterion"},
    "density_order": ORDER,
    "density_probes": 1,
}


# -- problem ---------------------------------------------------------------------------------------


def _data(n_samples: int = N_SAMPLES):
    """Standardised digits, the first `n_samples - 1797` repeated after all 1797 (or the first
    `n_samples` when fewer), one-hot targets; float32."""
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    std = X.std(axis=0)
    X = np.where(std > 0, (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)
    idx = np.concatenate([np.arange(len(X)), np.arange(max(n_samples - len(X), 0))])[:n_samples]
    X, y = X[idx], y[idx]
    Y = np.eye(10)[y]
    return X.astype(np.float32), Y.astype(np.float32)


def _weights(widths=WIDTHS):
    """torch.nn.Linear's default initialisation drawn by NumPy (seed 0): `[(W (in, out), b)]`."""
    import numpy as np

    rng = np.random.default_rng(0)
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        bound = 1.0 / math.sqrt(fan_in)
        W = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        b = rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)
        params.append((W, b))
    return params


def _jax_loss(params, x, y):
    import jax.numpy as jnp

    h = x
    for i, (W, b) in enumerate(params):
        h = h @ W + b
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return jnp.mean((h - y) ** 2)


def _torch_model(weights, dtype=None):
    """The same network in torch (`nn.Linear` stores W transposed), float32 unless `dtype`."""
    import torch

    layers = []
    for i, (W, b) in enumerate(weights):
        lin = torch.nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
        if i < len(weights) - 1:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    return model if dtype is None else model.to(dtype)


def reference(X, Y, weights, k: int = REF_K):
    """The tight reference: the `k` largest Hessian eigenvalues by jaxdyn's Lanczos in float64
    (the float32 values cast exactly), residual tolerance `REF_TOL`; `(eigenvalues, EigenResult)`.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxdyn.curvature as cv

    with jax.enable_x64(True):
        p = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64)) for W, b in weights]
        x, y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        n = sum(W.size + b.size for W, b in weights)
        res = cv.top_eigenvalues(cv.hessian_operator(_jax_loss, p, x, y), k, tol=REF_TOL,
                                 n_steps=min(REF_STEPS, n), criterion=cv.ResidualCriterion())
        return np.asarray(res.eigenvalues, np.float64), res


def reference_check(X, Y, weights, k: int = REF_K):
    """An independent float64 reference: curvlinops' Hessian operator in float64 and scipy
    `eigsh` (tol 1e-12); the `k` largest eigenvalues, descending."""
    import numpy as np
    import torch
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh

    model = _torch_model(weights, torch.float64)
    data = [(torch.from_numpy(X).double(), torch.from_numpy(Y).double())]
    op = HessianLinearOperator(model, torch.nn.MSELoss(), list(model.parameters()), data,
                               check_deterministic=False).to_scipy(np.float64)
    v0 = np.random.default_rng(5).standard_normal(op.shape[0])
    vals = eigsh(op, k=k, which="LA", tol=1e-12, v0=v0, return_eigenvectors=False)
    return np.sort(vals)[::-1]


def rel_error(vals, ref) -> float:
    """The largest relative error of the eigenvalues `vals` (any order) against the descending
    reference's first `len(vals)`; inf when a value is not finite."""
    import numpy as np

    vals = np.sort(np.asarray(vals, np.float64))[::-1]
    ref = np.asarray(ref, np.float64)[: vals.size]
    if not np.all(np.isfinite(vals)):
        return math.inf
    return float(np.max(np.abs(vals - ref) / np.abs(ref)))


def _has_kw(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


# -- sides -----------------------------------------------------------------------------------------


def _jax_side(X, Y, weights):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import jaxdyn.curvature as cv

    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in weights]
    x, y = jnp.asarray(X), jnp.asarray(Y)
    warm = _has_kw(cv.top_eigenvalues, "v0")

    @eqx.filter_jit
    def top(p, x, y, k, tol, criterion, n_steps=None):
        return cv.top_eigenvalues(cv.hessian_operator(_jax_loss, p, x, y), k, tol=tol,
                                  criterion=criterion, n_steps=n_steps, throw=False)

    @eqx.filter_jit
    def top_from(p, x, y, v0, k, tol, criterion, n_steps=None):
        return cv.top_eigenvalues(cv.hessian_operator(_jax_loss, p, x, y), k, tol=tol,
                                  criterion=criterion, n_steps=n_steps, v0=v0, throw=False)

    @eqx.filter_jit
    def gd_block(p, x, y, lr):
        def step(p, _):
            g = jax.grad(_jax_loss)(p, x, y)
            return jax.tree.map(lambda a, b: a - lr * b, p, g), _jax_loss(p, x, y)

        return jax.lax.scan(step, p, None, length=TRACK_EVERY)

    @eqx.filter_jit
    def hvp(p, x, y, v):
        return cv.hessian_operator(_jax_loss, p, x, y).mv(v)

    grad = jax.jit(jax.grad(_jax_loss))

    @eqx.filter_jit
    def hvp_loop(p, x, y, v):
        # 10 HVPs in a loop, as inside Lanczos (the primal is loop-invariant and hoisted)
        op = cv.hessian_operator(_jax_loss, p, x, y)

        def body(_, v):
            w = op.mv(v)
            return w / jnp.linalg.norm(w)

        return jax.lax.fori_loop(0, 10, body, v)

    matmul = jax.jit(lambda a, b: a @ b)

    @eqx.filter_jit
    def density(p, x, y, key):
        return cv.spectral_density(cv.hessian_operator(_jax_loss, p, x, y), key=key, order=ORDER,
                                   n_probes=1)

    @jax.jit
    def matfree_density(p, x, y, key):
        from jax.flatten_util import ravel_pytree
        from matfree import decomp

        flat, unravel = ravel_pytree(p)

        def mv(v):
            g = jax.grad(lambda th: _jax_loss(unravel(th), x, y))
            return jax.jvp(g, (flat,), (v,))[1]

        # the probe jaxdyn's spectral_density draws for this key (the same random vector)
        kprobe, _ = jax.random.split(key)
        v = jax.random.rademacher(kprobe, (1, flat.size), flat.dtype)[0] / jnp.sqrt(flat.size)
        _, T, *_ = decomp.tridiag_sym(ORDER, reortho="full", materialize=True)(mv, v)
        theta, S = jnp.linalg.eigh(T)
        return theta, S[0] ** 2

    n = PROBLEM["n_params"]
    v = jax.random.normal(jax.random.key(7), (n,), jnp.float32)
    block = jax.random.normal(jax.random.key(1), (TOP10_BLOCK, n), jnp.float32)
    return {"params": params, "x": x, "y": y, "top": top, "top_from": top_from if warm else None,
            "gd_block": gd_block, "hvp": hvp, "hvp_loop": hvp_loop, "matmul": matmul, "grad": grad,
            "density": density, "matfree_density": matfree_density, "v": v, "cv": cv,
            "block": block}


def _torch_side(X, Y, weights, threads):
    import sys

    import torch
    from pyhessian import hessian as ph_hessian

    ph_mod = sys.modules["pyhessian.hessian"]  # the module (the package re-exports the class)

    torch.set_num_threads(threads)
    model = _torch_model(weights)
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    criterion = torch.nn.MSELoss()
    counter = {"hvp": 0}
    original = ph_mod.hessian_vector_product

    def counting(gradsH, params, v):
        counter["hvp"] += 1
        return original(gradsH, params, v)

    ph_mod.hessian_vector_product = counting

    def top(top_n=1, tol=1e-3, max_iter=100):
        torch.manual_seed(0)
        counter["hvp"] = 0
        h = ph_hessian(model, criterion, data=(x, y), cuda=False)
        vals, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=top_n)
        return [float(v) for v in vals], counter["hvp"]

    params = list(model.parameters())

    def grad():
        model.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        return params[0].grad

    torch.manual_seed(1)
    v = [torch.randn_like(p) for p in params]

    def hvp_full():
        loss = criterion(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=v)

    loss0 = criterion(model(x), y)
    gH = torch.autograd.grad(loss0, params, create_graph=True)

    def hvp_pyhessian():
        return torch.autograd.grad(gH, params, grad_outputs=v, retain_graph=True)

    def density():
        torch.manual_seed(2)
        h = ph_hessian(model, criterion, data=(x, y), cuda=False)
        return h.density(iter=ORDER, n_v=1)

    return {"top": top, "grad": grad, "hvp_full": hvp_full, "hvp_pyhessian": hvp_pyhessian,
            "density": density, "torch": torch, "model": model, "x": x, "y": y}


def _curvlinops_side(ts):
    """`eigsh` on curvlinops' Hessian operator, built inside the timed call (without its
    determinism probe, which costs extra matvecs), matvecs counted."""
    import numpy as np
    import torch
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, data = ts["model"], [(ts["x"], ts["y"])]
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    v0 = np.random.default_rng(0).standard_normal(n).astype(np.float32)

    def top(k, tol, ncv):
        H = HessianLinearOperator(model, torch.nn.MSELoss(), params, data,
                                  check_deterministic=False).to_scipy(np.float32)
        count = [0]

        def mv(v):
            count[0] += 1 if v.ndim == 1 or v.shape[1] == 1 else v.shape[1]
            return H @ v

        op = LinearOperator(H.shape, matvec=mv, matmat=mv, dtype=np.float32)
        vals = eigsh(op, k=k, which="LA", tol=tol, ncv=ncv, v0=v0, return_eigenvectors=False)
        return [float(v) for v in vals], count[0]

    H = HessianLinearOperator(model, torch.nn.MSELoss(), params, data,
                              check_deterministic=False).to_scipy(np.float32)

    def matvec():
        return H @ v0

    return {"top": top, "matvec": matvec}


def setup(ctx) -> None:
    import numpy as np

    X, Y = _data()
    weights = _weights()
    ctx.state["js"] = _jax_side(X, Y, weights)
    ctx.state["ts"] = ts = _torch_side(X, Y, weights, ctx.opts.threads) if ctx.ok(PEER) else None
    ctx.state["cl"] = None
    if ts is not None:
        best, probe = probe_threads(Side(PEER, ts["top"], sync=noop), ts["torch"].set_num_threads,
                                    ctx.opts.threads, repeats=3)
        ctx.peers[PEER]["thread_probe"] = {
            "warm_median_s": {n: r["warm_median_s"] for n, r in probe.items()}, "chosen_threads": best}
        print(f"torch thread probe (PyHessian top eigenvalue): {ctx.peers[PEER]['thread_probe']}")
    if ctx.ok(CURVLINOPS) and ts is not None:
        ctx.state["cl"] = _curvlinops_side(ts)
    vals, res = reference(X, Y, weights)
    ref = {"eigenvalues": vals.tolist(), "residuals": np.asarray(res.residuals, float).tolist(),
           "hvps": int(res.num_hvp), "converged": bool(res.converged)}
    if ctx.ok(CURVLINOPS):
        check = reference_check(X, Y, weights)
        ref["check_curvlinops_float64_eigsh"] = check.tolist()
        ref["check_max_rel_diff"] = rel_error(check, vals)
    ctx.state["ref"] = vals
    ctx.state["reference"] = ref
    print(f"reference (float64): {vals[:K_TOP]}, check {ref.get('check_max_rel_diff')}")


def extra(ctx) -> dict[str, Any]:
    return {"reference": ctx.state.get("reference"),
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS")}


def _sweep_repeats(ctx) -> int:
    return min(ctx.opts.repeats, 2 if ctx.quick else SWEEP_REPEATS)


def _tols(ctx):
    return TOLS_QUICK if ctx.quick else TOLS


# -- sweeps at equal achieved error ----------------------------------------------------------------


def _jax_read(res):
    import numpy as np

    return np.asarray(res.eigenvalues, np.float64), int(res.num_hvp), bool(res.converged)


def _peer_read(out):
    vals, hvps = out
    return vals, int(hvps), None


def _entry(family, name, settings, call, *, peer=False, max_repeats=None):
    """One setting of a sweep: its side (torch sides: no warm-up, torch compiles nothing) and
    how its output reads as (eigenvalues, HVPs, converged)."""
    side = (Side(name, call, sync=noop, warmup=False, max_repeats=max_repeats) if peer
            else Side(name, call, max_repeats=max_repeats))
    return {"family": family, "settings": settings, "side": side,
            "read": _peer_read if peer else _jax_read}


def _run_sweep(ctx, entries, ref, budget_s):
    """Time every setting (interleaved rounds, the slow ones capped by `budget_s`) and record
    each one's time, HVPs and achieved error against `ref`."""
    repeats = _sweep_repeats(ctx)
    timing, outs = time_sides([e["side"] for e in entries], repeats=repeats, budget_s=budget_s)
    rows = {}
    for e in entries:
        name = e["side"].name
        vals, hvps, converged = e["read"](outs[name])
        t = timing[name]
        rows[name] = {"family": e["family"], "settings": e["settings"], "hvps": hvps,
                      "rel_err": rel_error(vals, ref), "converged": converged,
                      "eigenvalues": [float(v) for v in sorted(vals, reverse=True)],
                      **{key: t[key] for key in ("first_call_s", "warm_median_s", "warm_iqr_s",
                                                 "n_repeats", "rounds", "repeats_s")}}
    return rows


def _match(rows, peers, levels=LEVELS):
    """Per error level: each family's cheapest setting (warm median) whose achieved error is
    <= the level, and the peers' ratios to jaxdyn's (plain and paired per round)."""
    out = {}
    for level in levels:
        best = {}
        for fam in ("jaxdyn", *peers):
            cands = [(r["warm_median_s"], name) for name, r in rows.items()
                     if r["family"] == fam and r["rel_err"] <= level]
            best[fam] = min(cands)[1] if cands else None
        entry: dict[str, Any] = {"setting": best, "speedup": {}, "speedup_paired": {},
                                 "hvps": {f: rows[s]["hvps"] if s else None for f, s in best.items()}}
        jd = best["jaxdyn"]
        for p in peers:
            if jd is None or best[p] is None:
                entry["speedup"][p] = None
                entry.setdefault("note", {})[p] = (
                    "no setting of " + ("jaxdyn" if jd is None else p) + " reached this error "
                    "within its sweep")
                continue
            entry["speedup"][p] = rows[best[p]]["warm_median_s"] / rows[jd]["warm_median_s"]
            entry["speedup_paired"][p] = paired(rows[best[p]], rows[jd])
        out[f"{level:g}"] = entry
    return out


def _sweep_record(rows, peers, ctx=None, entries=()):
    """The case record: the sweep, the matches per level, and (for the summary table and the
    goals) the headline level's chosen settings as `jaxdyn` / `<peer>`, re-timed together in
    `ctx.paired_rounds` interleaved rounds (the sweep's budget gives a slow setting one run): the
    headline `speedup` is the median of those per-round ratios (`speedup_paired`), the sweep's
    ratio of warm medians is kept as `speedup_of_medians`. Without `ctx`, no re-timing."""
    levels = _match(rows, peers)
    head = levels[f"{HEADLINE_LEVEL:g}"]
    rec: dict[str, Any] = {"settings": rows, "levels": levels, "headline_level": HEADLINE_LEVEL,
                           "speedup": dict(head["speedup"]),
                           "speedup_paired": dict(head["speedup_paired"]),
                           "speedup_of_medians": dict(head["speedup"])}
    for fam, name in head["setting"].items():
        if name is not None:
            rec[fam] = {**rows[name], "setting": name}
    jd = head["setting"].get("jaxdyn")
    chosen = {p: head["setting"][p] for p in peers if head["setting"].get(p)}
    if ctx is not None and jd is not None and chosen:
        by_name = {e["side"].name: e["side"] for e in entries}
        names = list(dict.fromkeys([jd, *chosen.values()]))
        print(f"  headline level {HEADLINE_LEVEL:g}: {', '.join(names)} in {ctx.paired_rounds} "
              "interleaved rounds", flush=True)
        timing, _ = time_sides([dataclasses.replace(by_name[n], max_repeats=None) for n in names],
                               repeats=ctx.paired_rounds)
        sp = speedups({**{p: timing[n] for p, n in chosen.items()}, "jaxdyn": timing[jd]}, list(chosen))
        rec["speedup"].update(sp["speedup"])
        rec["speedup_paired"].update(sp["speedup_paired"])
        head["speedup_headline_rounds"] = sp["speedup"]
        head["speedup_headline_rounds_paired"] = sp["speedup_paired"]
        rec["headline_rounds"] = timing
        for fam, name in [("jaxdyn", jd), *chosen.items()]:
            rec[fam]["headline_rounds"] = {k: timing[name][k] for k in (
                "warm_median_s", "warm_iqr_s", "n_repeats", "rounds", "repeats_s")}
    return rec


def _jax_entries(js, k, tols, criteria, n_steps=None, block=None):
    """jaxdyn's settings: each criterion at each tolerance; with `block`, Lanczos is started
    from that fixed random block of start vectors (`v0=`, the band Lanczos: still a cold start,
    no information about the operator)."""
    p, x, y, cv = js["params"], js["x"], js["y"], js["cv"]
    out = []
    for cname in criteria:
        crit = getattr(cv, cname)()
        for tol in tols:
            settings = {"criterion": cname, "tol": tol, "k": k, "n_steps": n_steps}
            if block is None:
                name = f"jaxdyn[{cname.removesuffix('Criterion')},{tol:g}]"
                call = (lambda c=crit, t=tol: js["top"](p, x, y, k, t, c, n_steps))
            else:
                name = f"jaxdyn[band{block.shape[0]},{cname.removesuffix('Criterion')},{tol:g}]"
                settings["v0"] = f"random block ({block.shape[0]}, size), key 1"
                call = (lambda c=crit, t=tol: js["top_from"](p, x, y, block, k, t, c, n_steps))
            out.append(_entry("jaxdyn", name, settings, call))
    return out


def _pyhessian_entries(ts, k, tols, max_iter, max_repeats=None):
    return [_entry(PEER, f"pyhessian[{tol:g},maxIter={max_iter}]",
                   {"tol": tol, "top_n": k, "maxIter": max_iter},
                   lambda t=tol: ts["top"](k, t, max_iter), peer=True, max_repeats=max_repeats)
            for tol in tols]


def case_top_eigenvalue(ctx) -> dict[str, Any]:
    js, ts = ctx.state["js"], ctx.state["ts"]
    entries = _jax_entries(js, 1, _tols(ctx), ("EigenvalueBoundCriterion", "ChangeCriterion"))
    if ts is not None:
        entries += _pyhessian_entries(ts, 1, _tols(ctx), PYHESSIAN_MAXITER_TOP1)
    rows = _run_sweep(ctx, entries, ctx.state["ref"], budget_s=3.0 if ctx.quick else 10.0)
    rec = _sweep_record(rows, (PEER,) if ts is not None else (), ctx, entries)
    rec["headline"] = True
    if "jaxdyn" in rec:
        rec["cost_model"] = _cost_model(js, rec)
    return rec


def case_top10(ctx) -> dict[str, Any]:
    js, ts, cl = ctx.state["js"], ctx.state["ts"], ctx.state["cl"]
    tols = _tols(ctx)
    entries = _jax_entries(js, K_TOP, tols, ("EigenvalueBoundCriterion", "ResidualCriterion"),
                           TOP10_STEPS)
    if js["top_from"] is not None:  # band Lanczos from a random block: resolves the clusters
        entries += _jax_entries(js, K_TOP, tols[:3], ("ResidualCriterion",), TOP10_STEPS,
                                block=js["block"])
    peers = []
    if ts is not None:
        peers.append(PEER)
        entries += _pyhessian_entries(ts, K_TOP, tols, PYHESSIAN_MAXITER_TOP10)
        if not ctx.quick:  # longer runs (a cap of 1000 per eigenvalue), timed once
            for tol, max_iter in PYHESSIAN_LONG_TOP10:
                entries += _pyhessian_entries(ts, K_TOP, (tol,), max_iter, max_repeats=0)
    if cl is not None:
        peers.append(CURVLINOPS)
        for ncv in EIGSH_NCV:
            for tol in (*tols, 0.0):
                entries.append(_entry(CURVLINOPS, f"curvlinops[{tol:g},ncv={ncv}]",
                                      {"tol": tol, "ncv": ncv, "k": K_TOP, "which": "LA"},
                                      lambda t=tol, m=ncv: cl["top"](K_TOP, t, m), peer=True))
    rows = _run_sweep(ctx, entries, ctx.state["ref"], budget_s=5.0 if ctx.quick else 15.0)
    rec = _sweep_record(rows, tuple(peers), ctx, entries)
    rec["headline"] = False
    return rec


def _cost_model(js, rec):
    """Why a ratio is (or is not) reachable: FLOPs per HVP vs the measured matmul rate."""
    import jax
    import jax.numpy as jnp

    p, x, y, v = js["params"], js["x"], js["y"], js["v"]

    def flops(fn, *args):
        cost = fn.lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        return float(cost["flops"])

    f_hvp = flops(jax.jit(lambda p, x, y, v: js["hvp"](p, x, y, v)), p, x, y, v)
    f_grad = flops(js["grad"], p, x, y)
    a = jnp.ones((N_SAMPLES, 200), jnp.float32)
    b = jnp.ones((200, 200), jnp.float32)
    t = time_sides([Side("matmul", lambda: js["matmul"](a, b)),
                    Side("hvp_loop10", lambda: js["hvp_loop"](p, x, y, v))], repeats=15)[0]
    rate = 2 * N_SAMPLES * 200 * 200 / t["matmul"]["warm_median_s"]
    hvp_in_loop = t["hvp_loop10"]["warm_median_s"] / 10
    jd, hvps = rec["jaxdyn"]["warm_median_s"], rec["jaxdyn"]["hvps"]
    out = {
        "flops_hvp_standalone": f_hvp,
        "flops_grad": f_grad,
        "flops_hvp_in_loop": f_hvp - f_grad,
        "flops_note": "XLA cost analysis; in the loop the primal (= the gradient's FLOPs) is "
                      "loop-invariant and hoisted, so an HVP there costs the tangent part only",
        "matmul_gflops": rate / 1e9,
        "matmul_note": "float32 (2000 x 200) @ (200 x 200), jitted, warm median",
        "hvp_in_loop_s": hvp_in_loop,
        "hvp_in_loop_gflops": (f_hvp - f_grad) / hvp_in_loop / 1e9,
        "hvp_in_loop_at_matmul_rate_s": (f_hvp - f_grad) / rate,
        "lanczos_overhead_per_step_s": (jd - hvps * hvp_in_loop) / max(hvps, 1),
        "at_headline_level": {"jaxdyn_setting": rec["jaxdyn"]["setting"], "jaxdyn_hvps": hvps},
    }
    if PEER in rec:
        ph = rec[PEER]
        out["at_headline_level"].update(
            pyhessian_setting=ph["setting"], pyhessian_hvps=ph["hvps"],
            pyhessian_s_per_hvp=ph["warm_median_s"] / max(ph["hvps"], 1),
            jaxdyn_s_per_hvp=jd / max(hvps, 1), hvp_count_ratio=ph["hvps"] / max(hvps, 1))
    return out


# -- tracking --------------------------------------------------------------------------------------


def _track(js, n_steps, warm):
    """GD from the benchmark's weights, the top 10 every `TRACK_EVERY` steps, each solve cold
    or warm-started from the previous one's eigenvectors; `(eigenvalues (rows, 10), HVPs,
    all converged, losses)`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    p, x, y, cv = js["params"], js["x"], js["y"], js["cv"]
    crit = cv.EigenvalueBoundCriterion()
    vals, hvps, conv, losses, v0 = [], [], [], [], None
    for b in range(n_steps // TRACK_EVERY + 1):
        if warm and v0 is not None:
            res = js["top_from"](p, x, y, v0, K_TOP, TRACK_TOL, crit, TOP10_STEPS)
        else:
            res = js["top"](p, x, y, K_TOP, TRACK_TOL, crit, TOP10_STEPS)
        vals.append(res.eigenvalues)
        hvps.append(res.num_hvp)
        conv.append(res.converged)
        v0 = res.eigenvectors
        if b < n_steps // TRACK_EVERY:
            p, loss = js["gd_block"](p, x, y, jnp.float32(TRACK_LR))
            losses.append(loss)
    jax.block_until_ready((vals, p))
    return (np.asarray(jnp.stack(vals), np.float64), int(jnp.sum(jnp.stack(hvps))),
            bool(jnp.all(jnp.stack(conv))), np.asarray(jnp.concatenate(losses), np.float64))


def _gd_only(js, n_steps):
    import jax
    import jax.numpy as jnp

    p, x, y = js["params"], js["x"], js["y"]
    for _ in range(n_steps // TRACK_EVERY):
        p, _loss = js["gd_block"](p, x, y, jnp.float32(TRACK_LR))
    return jax.block_until_ready(p)


def case_tracking(ctx) -> dict[str, Any]:
    import numpy as np

    js = ctx.state["js"]
    n_steps = TRACK_STEPS_QUICK if ctx.quick else TRACK_STEPS
    modes = ("cold", "warm") if js["top_from"] is not None else ("cold",)
    for mode in modes:  # compile everything untimed: two blocks
        _track(js, 2 * TRACK_EVERY, mode == "warm")
    sides = [Side(f"jaxdyn_{mode}", lambda m=mode: _track(js, n_steps, m == "warm"), sync=noop,
                  max_repeats=0) for mode in modes]
    sides.append(Side("gd_only", lambda: _gd_only(js, n_steps), max_repeats=0))
    timing, outs = time_sides(sides, repeats=1)
    rec: dict[str, Any] = {"headline": False, "n_steps": n_steps, "every": TRACK_EVERY,
                           "k": K_TOP, "lr": TRACK_LR, "tol": TRACK_TOL,
                           "criterion": "EigenvalueBoundCriterion", "speedup": {}}
    gd_s = timing["gd_only"]["warm_median_s"]
    rec["gd_only"] = timing["gd_only"]
    for mode in modes:
        vals, hvps, conv, losses = outs[f"jaxdyn_{mode}"]
        t = timing[f"jaxdyn_{mode}"]["warm_median_s"]
        rec[f"jaxdyn_{mode}"] = {**timing[f"jaxdyn_{mode}"], "hvps": hvps, "all_converged": conv,
                                 "solves": int(vals.shape[0]), "eigen_s": t - gd_s,
                                 "sharpness_first_last": [float(vals[0, 0]), float(vals[-1, 0])],
                                 "loss_first_last": [float(losses[0]), float(losses[-1])]}
    if "jaxdyn_warm" in rec:
        cold, warm = outs["jaxdyn_cold"][0], outs["jaxdyn_warm"][0]
        rec["warm_vs_cold_max_rel_diff"] = float(np.max(np.abs(warm - cold) / np.abs(cold)))
        rec["hvp_ratio_cold_over_warm"] = rec["jaxdyn_cold"]["hvps"] / rec["jaxdyn_warm"]["hvps"]
        rec["time_ratio_cold_over_warm"] = (timing["jaxdyn_cold"]["warm_median_s"]
                                            / timing["jaxdyn_warm"]["warm_median_s"])
        rec["eigen_time_ratio_cold_over_warm"] = (rec["jaxdyn_cold"]["eigen_s"]
                                                  / rec["jaxdyn_warm"]["eigen_s"])
        rec["jaxdyn"] = rec["jaxdyn_warm"]
    else:
        rec["warm_start"] = "not available: top_eigenvalues has no `v0` in this version"
        rec["jaxdyn"] = rec["jaxdyn_cold"]
    return rec


# -- HVP cost and density --------------------------------------------------------------------------


def case_hvp_over_grad(ctx) -> dict[str, Any]:
    js, ts, cl = ctx.state["js"], ctx.state["ts"], ctx.state["cl"]
    p, x, y, v = js["params"], js["x"], js["y"], js["v"]
    sides = [Side("jaxdyn_hvp", lambda: js["hvp"](p, x, y, v)),
             Side("jaxdyn_grad", lambda: js["grad"](p, x, y))]
    if ts is not None:
        sides += [Side(name, ts[key], sync=noop) for name, key in (
            ("torch_grad", "grad"), ("torch_hvp_full", "hvp_full"), ("torch_hvp_pyhessian", "hvp_pyhessian"))]
    if cl is not None:  # curvlinops' matvec through its SciPy operator, as eigsh calls it
        sides.append(Side("torch_hvp_curvlinops", cl["matvec"], sync=noop))
    timing, _ = time_sides(sides, repeats=ctx.opts.repeats)
    med = {k: t["warm_median_s"] for k, t in timing.items()}
    rec: dict[str, Any] = {"headline": False, "jaxdyn": timing["jaxdyn_hvp"], **timing,
                           "hvp_over_grad": med["jaxdyn_hvp"] / med["jaxdyn_grad"], "speedup": {}}
    hg = paired(timing["jaxdyn_hvp"], timing["jaxdyn_grad"])
    rec["hvp_over_grad_paired"] = hg
    rec["hvp_over_grad_of_medians"] = rec["hvp_over_grad"]
    rec["hvp_over_grad"] = hg["median"]
    if ts is not None:
        rec["torch_hvp_full_over_grad"] = med["torch_hvp_full"] / med["torch_grad"]
        rec["torch_hvp_pyhessian_over_grad"] = med["torch_hvp_pyhessian"] / med["torch_grad"]
        rec["grad_speedup_vs_torch"] = paired(timing["torch_grad"], timing["jaxdyn_grad"])["median"]
    rec.update(speedups({**timing, "jaxdyn": timing["jaxdyn_hvp"]},
                        [k for k in ("torch_hvp_full", "torch_hvp_pyhessian", "torch_hvp_curvlinops")
                         if k in timing]))
    return rec


def case_density(ctx) -> dict[str, Any]:
    import jax
    import numpy as np

    js, ts = ctx.state["js"], ctx.state["ts"]
    p, x, y = js["params"], js["x"], js["y"]
    key = jax.random.key(3)
    sides = [Side("jaxdyn", lambda: js["density"](p, x, y, key)),
             Side("matfree", lambda: js["matfree_density"](p, x, y, key))]
    rec: dict[str, Any] = {"headline": False}
    unpatched = None
    if ts is not None:
        torch = ts["torch"]
        try:
            ts["density"]()
            unpatched = {"status": "ok"}
        except Exception as err:  # noqa: BLE001 - recorded, then shimmed
            unpatched = {"status": "failed", "error": f"{type(err).__name__}: {err}"}

            def eig_shim(T, eigenvectors=True):
                w, V = torch.linalg.eigh(T)
                return torch.stack([w, torch.zeros_like(w)], dim=1), V

            torch.eig = eig_shim
            rec["pyhessian_shim"] = ("torch.eig(T, eigenvectors=True) replaced by torch.linalg.eigh "
                                     "(T is symmetric tridiagonal), returning (eigenvalues, zeros) "
                                     "columns and eigenvectors as torch.eig did")
        sides.append(Side(PEER, ts["density"], sync=noop))
    rec["pyhessian_unpatched"] = unpatched
    timing, outs = time_sides(sides, repeats=max(ctx.paired_rounds,
                                                 min(ctx.opts.repeats, 2 if ctx.quick else 5)))
    rec.update(timing)
    sp = speedups(timing, ["matfree", PEER])
    speedup = {"matfree": sp["speedup"]["matfree"], PEER: None}
    d = outs["jaxdyn"]
    nodes, weights = np.asarray(d.nodes[0], float), np.asarray(d.weights[0], float)
    mt, mw = (np.asarray(a, float) for a in outs["matfree"])
    moments = {"jaxdyn": [float(weights @ nodes), float(weights @ nodes**2)],
               "matfree": [float(mw @ mt), float(mw @ mt**2)]}
    if ts is not None:
        speedup[PEER] = sp["speedup"][PEER]
        en, ew = outs[PEER]
        en, ew = np.asarray(en[0], float), np.asarray(ew[0], float)
        moments[PEER] = [float(ew @ en), float(ew @ en**2)]
    rec["speedup"] = speedup
    rec["speedup_paired"] = sp["speedup_paired"]
    rec["speedup_of_medians"] = sp["speedup_of_medians"]
    rec["moments_m1_m2"] = moments
    rec["moments_note"] = ("sum_j w_j theta_j^p of each side's single probe (different random "
                           "probes in torch): estimates of tr(H^p)/n; agreement to sampling error "
                           "only. jaxdyn and matfree use the same probe and agree to float32 "
                           "rounding")
    rec["hvps"] = {"jaxdyn": ORDER, "matfree": ORDER, PEER: ORDER}
    return rec


# -- report ----------------------------------------------------------------------------------------


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    from _common import fmt_s

    lines = []
    if "settings" in rec:
        lines.append("sweep (warm median, HVPs, achieved relative error):")
        for name, r in rec["settings"].items():
            lines.append(f"  {name:34s} {fmt_s(r['warm_median_s']):>10s} {r['hvps']:6d} HVPs  "
                         f"err {r['rel_err']:.2e}")
        lines.append("at equal achieved error (cheapest setting per side with error <= level):")
        for level, m in rec["levels"].items():
            parts = [f"{f}={s} ({m['hvps'][f]} HVPs)" for f, s in m["setting"].items()]
            ratios = ", ".join(f"{p} {r:.2f}x" if r is not None else f"{p} -"
                               for p, r in m["speedup"].items())
            lines.append(f"  <= {level}: {'; '.join(parts)}; ratios: {ratios}")
    elif "hvps" in rec:
        lines.append(f"HVPs: {rec['hvps']}")
    if "hvp_over_grad" in rec:
        lines.append(f"hvp_over_grad (jaxdyn): {rec['hvp_over_grad']:.2f}")
    if case == "tracking":
        for mode in ("cold", "warm"):
            r = rec.get(f"jaxdyn_{mode}")
            if r:
                lines.append(f"{mode}: {r['hvps']} HVPs over {r['solves']} solves, "
                             f"{fmt_s(r['warm_median_s'])} (eigen part {fmt_s(r['eigen_s'])}), "
                             f"all converged {r['all_converged']}")
        if "warm_vs_cold_max_rel_diff" in rec:
            lines.append(f"cold/warm: HVPs {rec['hvp_ratio_cold_over_warm']:.2f}x, time "
                         f"{rec['time_ratio_cold_over_warm']:.2f}x; eigenvalues differ by at most "
                         f"{rec['warm_vs_cold_max_rel_diff']:.1e} relatively")
    return lines


def _spread_at_headline(rec, peer):
    if not rec:
        return None
    m = rec["levels"][f"{HEADLINE_LEVEL:g}"]
    return (m.get("speedup_headline_rounds_paired") or m["speedup_paired"]).get(peer)


def _at_headline(rec, peer):
    """The ratio at the headline level, and a note when a side reached no setting there."""
    if not rec:
        return None, None
    m = rec["levels"][f"{HEADLINE_LEVEL:g}"]
    return (m.get("speedup_headline_rounds") or m["speedup"]).get(peer), (m.get("note") or {}).get(peer)


def goals(cases: dict[str, Any]) -> list[Goal]:
    hvp = cases.get("hvp_over_grad")
    top1, top1_note = _at_headline(cases.get(HEADLINE), PEER)
    b, b_note = _at_headline(cases.get("top10"), PEER)
    c, c_note = _at_headline(cases.get("top10"), CURVLINOPS)
    what = (f"at equal achieved error <= {HEADLINE_LEVEL:g}: the peer's cheapest setting / jaxdyn's "
            "cheapest setting, median over interleaved rounds of the two")
    top, top10 = cases.get(HEADLINE), cases.get("top10")
    return [Goal("top_eigenvalue_vs_pyhessian", "top Hessian eigenvalue >= 2x faster than "
                 "PyHessian at equal achieved error", what, GOAL_TOP1, top1, note=top1_note,
                 spread=_spread_at_headline(top, PEER)),
            Goal("top10_vs_pyhessian", "top 10 Hessian eigenvalues >= 5x faster than PyHessian "
                 "(deflated power iteration) at equal achieved error", what, GOAL_TOP10_PYHESSIAN,
                 b, note=b_note, spread=_spread_at_headline(top10, PEER)),
            Goal("top10_vs_curvlinops", "top 10 Hessian eigenvalues >= 2x faster than curvlinops "
                 "+ scipy eigsh at equal achieved error", what, GOAL_TOP10_CURVLINOPS, c,
                 note=c_note, spread=_spread_at_headline(top10, CURVLINOPS)),
            Goal("hvp_over_grad", "one HVP costs <= 3 gradients", "median over interleaved rounds of "
                 "jaxdyn HVP time / jaxdyn gradient time", 3.0, hvp["hvp_over_grad"] if hvp else None,
                 higher_is_better=False, spread=hvp.get("hvp_over_grad_paired") if hvp else None)]
