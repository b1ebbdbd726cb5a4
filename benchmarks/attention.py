"""Self-attention dynamics: time per RK4 step of `jaxdyn.meanfield.SelfAttention` against a
straightforward PyTorch CPU implementation of the same field, and the blocked kernel at n = 65536.

The field (identical on both sides): n tokens on the unit sphere of R^d,
x_i' = P_{x_i}(sum_j w_ij V x_j), w_ij = softmax_j(beta <Q x_i, K x_j>), P_x v = v - <x, v> x, one
head, beta = 1, Q, K, V with N(0, 1/d) entries and tokens uniform on the sphere (NumPy seed 0),
classical RK4 with h = 0.05.

Cases:

- `n4096` (**headline**): n = 4096, d = 64, float64 by default (`--dtype float32`: both sides in
  float32). jaxdyn: `simulate(field, x0, [0, S h], solver=RK4(), dt0=h)` (the fixed-step fast
  path: one compiled program for the S steps) with the automatic kernel (from 513 to 16384
  tokens: query blocks of 128 rows against every key, exact softmax per row, the scores formed as
  $x_i^\\top (Q^\\top K) x_j$, $Q^\\top K$ once per evaluation). The peer, written the straightforward
  way: per evaluation `q = X @ Q.T; k = X @ K.T; v = X @ V.T; w = torch.softmax(beta * q @ k.T,
  dim=-1); out = w @ v; out - (X * out).sum(-1, keepdim=True) * X` under `torch.inference_mode()`,
  the same S RK4 steps in a Python loop; torch's thread count is the faster of 1 and `--threads`
  (probed alone). S = 4 (1 with `--quick`); the time per step is the time of the S steps over S;
  the speedup is the median of the per-round ratios (torch / jaxdyn) over interleaved rounds. The
  final states are compared (max |difference|).
- `n65536`: n = 65536, d = 64, the blocked path (the dense n x n scores would need
  65536^2 x 8 B = 32 GiB per evaluation in float64): one RK4 step, in a fresh subprocess whose
  peak resident memory (`VmHWM` of `/proc/self/status`: `ru_maxrss` would carry the parent's
  peak over `exec`) is reported with its peak after the imports, before the field is built; no
  peer (the straightforward torch field cannot hold the scores). `--quick`: n = 8192 instead (the
  harness test).

Goals: the headline speedup >= 3x; the peak resident memory of the n = 65536 step <= 4 GiB (the
O(n d + block^2) memory of the blocked path, against the 32 GiB of dense scores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import Goal, Peer, Side, noop, probe_threads, ratio_of, speedups, spread_of, time_sides

NAME = "attention"
DESCRIPTION = ("self-attention particle dynamics, n = 4096, d = 64, softmax on the sphere: time per RK4 step "
               "vs a straightforward torch CPU field; blocked kernel at n = 65536")
X64 = True
X64_REASON = ("jaxdyn's default and the dtype of the attention known answers (1e-12); `--dtype float32` runs "
              "both sides in float32")
PEER = "torch"
PEERS = {"torch": Peer(("torch",))}
HEADLINE = "n4096"
CASES = ("n4096", "n65536")
STATEMENT = ("SelfAttention (n = 4096, d = 64, softmax, sphere) >= 3x faster per RK4 step than a "
             "straightforward PyTorch CPU field (torch.softmax on the n x n scores), same dtype; "
             "n = 65536 within 4 GiB")
SPEEDUP_GOAL = 3.0
MEMORY_GOAL_GIB = 4.0
D, BETA, H = 64, 1.0, 0.05
N_HEAD, N_LARGE, N_LARGE_QUICK = 4096, 65536, 8192
STEPS, STEPS_QUICK = 4, 1
PROBLEM = {"d": D, "beta": BETA, "h": H, "normalisation": "softmax", "geometry": "sphere", "heads": 1,
           "matrices": "Q, K, V entries N(0, 1/d), numpy default_rng(0)",
           "tokens": "N(0, I) normalised to the unit sphere, the same generator", "solver": "classical RK4",
           "n4096": {"n": N_HEAD, "steps": STEPS, "steps_quick": STEPS_QUICK},
           "n65536": {"n": N_LARGE, "n_quick": N_LARGE_QUICK, "steps": 1, "kernel": "blocked (automatic)"}}


def _problem(n: int, dtype: str):
    import numpy as np

    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(3, D, D)) / np.sqrt(D)
    x = rng.normal(size=(n, D))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return tuple(a.astype(dtype) for a in (q, k, v, x))


def _jax_dtype() -> str:
    import jax

    return "float64" if jax.config.jax_enable_x64 else "float32"


def jax_side(n: int, steps: int):
    """jaxdyn's S RK4 steps (the fixed-step fast path of `simulate`), returning the final state."""
    import jax.numpy as jnp

    import jaxdyn.meanfield as mf

    q, k, v, x = _problem(n, _jax_dtype())
    field = mf.SelfAttention(q, k, v, beta=BETA)
    x0 = jnp.asarray(x)
    ts = jnp.asarray([0.0, steps * H])

    def run():
        return mf.simulate(field, x0, ts, solver=mf.RK4(), dt0=H).ys[-1]

    return run


def torch_side(n: int, steps: int, dtype: str):
    """The straightforward torch field and S RK4 steps; `set_threads` for the probe."""
    import torch

    q, k, v, x = (torch.from_numpy(a) for a in _problem(n, dtype))

    def field(X):
        qx, kx, vx = X @ q.T, X @ k.T, X @ v.T
        w = torch.softmax(BETA * (qx @ kx.T), dim=-1)
        out = w @ vx
        return out - (X * out).sum(-1, keepdim=True) * X

    def run():
        with torch.inference_mode():
            y = x
            for _ in range(steps):
                k1 = field(y)
                k2 = field(y + 0.5 * H * k1)
                k3 = field(y + 0.5 * H * k2)
                k4 = field(y + H * k3)
                y = y + (H / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
            return y

    return {"run": run, "set_threads": torch.set_num_threads}


def case_n4096(ctx) -> dict[str, Any]:
    import numpy as np

    steps = STEPS_QUICK if ctx.quick else STEPS
    dtype = _jax_dtype()
    rec: dict[str, Any] = {"n": N_HEAD, "d": D, "steps_per_run": steps, "dtype": dtype}
    sides = [Side("jaxdyn", jax_side(N_HEAD, steps),
                  info={"kernel": "automatic: query blocks of 128 rows against every key (lax.map)",
                        "path": "simulate fixed-step fast path, RK4"})]
    repeats = max(ctx.paired_rounds, min(ctx.opts.repeats, 3 if ctx.quick else 10))
    ts = None
    if ctx.ok(PEER):
        ts = torch_side(N_HEAD, steps, dtype)
        peer_side = Side(PEER, ts["run"], sync=noop)
        best, probe = probe_threads(peer_side, ts["set_threads"], ctx.opts.threads,
                                    repeats=2 if ctx.quick else 3)
        rec["torch_thread_probe"] = {n: r["warm_median_s"] for n, r in probe.items()}
        rec["torch_threads"] = best
        sides.append(peer_side)
    timing, outs = time_sides(sides, repeats=repeats)
    rec["jaxdyn"] = dict(timing["jaxdyn"], per_step_s=timing["jaxdyn"]["warm_median_s"] / steps)
    if ts is None:
        rec[PEER] = ctx.peers[PEER]
        rec["speedup"] = {PEER: None}
        return rec
    rec[PEER] = dict(timing[PEER], per_step_s=timing[PEER]["warm_median_s"] / steps)
    rec.update(speedups(timing, [PEER]))
    diff = np.max(np.abs(np.asarray(outs["jaxdyn"]) - outs[PEER].numpy()))
    rec["max_abs_difference_final_state"] = float(diff)
    return rec


WORKER = """
import json, sys, time
import jax
jax.config.update("jax_enable_x64", {x64})
sys.path.insert(0, {bench!r})


def status(key):  # this process's own memory (ru_maxrss would carry the parent's peak over exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 2**20  # kB -> GiB


import attention
rss0 = status("VmHWM")
run = attention.jax_side({n}, 1)
t0 = time.perf_counter()
y = jax.block_until_ready(run())
first = time.perf_counter() - t0
step = first
if {second}:
    t0 = time.perf_counter()
    y = jax.block_until_ready(run())
    step = time.perf_counter() - t0
print(json.dumps({{"first_call_s": first, "per_step_s": step, "timed_call_includes_compile": not {second},
                  "max_rss_gib": status("VmHWM"), "rss_after_imports_gib": rss0,
                  "finite": bool(jax.numpy.all(jax.numpy.isfinite(y)))}}))
"""


def case_n65536(ctx) -> dict[str, Any]:
    import jax

    n = N_LARGE_QUICK if ctx.quick else N_LARGE
    x64 = bool(jax.config.jax_enable_x64)
    # one step at n = 65536 is minutes on 2 cores: time the first call only (its compile is ~1 s of
    # it), unless quick (n = 8192: a second, warm call)
    script = WORKER.format(x64=x64, bench=str(Path(__file__).resolve().parent), n=n, second=ctx.quick)
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the n = {n} worker failed:\n{out.stdout}\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    dense_gib = n * n * (8 if x64 else 4) / 2**30
    return {"n": n, "d": D, "dtype": "float64" if x64 else "float32", "steps": 1,
            "dense_scores_gib": dense_gib, "jaxdyn": dict(res, warm_median_s=res["per_step_s"]),
            "speedup": {}}


def goals(cases: dict[str, Any]) -> list[Goal]:
    head = cases.get(HEADLINE)
    large = cases.get("n65536")
    mem = None if not large or large.get("n") != N_LARGE else large["jaxdyn"]["max_rss_gib"]
    return [Goal("attention_rk4_step_vs_torch", STATEMENT,
                 "median over interleaved rounds of torch time / jaxdyn time per RK4 step", SPEEDUP_GOAL,
                 ratio_of(head, PEER), spread=spread_of(head, PEER),
                 condition=(head or {}).get("max_abs_difference_final_state", 0.0) <= 1e-6),
            Goal("attention_n65536_memory",
                 "peak resident memory of one RK4 step at n = 65536 (blocked kernel)",
                 "GiB (peak RSS of the worker process)", MEMORY_GOAL_GIB, mem, higher_is_better=False,
                 note="not evaluated with --quick (n = 8192)" if mem is None else None)]


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    j = rec.get("jaxdyn", {})
    if case == "n4096":
        lines = [f"per RK4 step ({rec['dtype']}): jaxdyn {j['per_step_s']:.4g} s"]
        if isinstance(rec.get(PEER), dict) and "per_step_s" in rec[PEER]:
            lines[0] += (f", torch {rec[PEER]['per_step_s']:.4g} s ({rec['torch_threads']} thread(s)); "
                         f"final states differ by {rec['max_abs_difference_final_state']:.2e}")
        return lines
    return [f"n = {rec['n']} ({rec['dtype']}): one RK4 step {j['per_step_s']:.4g} s"
            f"{' (first call, compile included)' if j.get('timed_call_includes_compile') else ''}; peak RSS "
            f"{j['max_rss_gib']:.3g} GiB ({j['rss_after_imports_gib']:.3g} GiB after imports); dense scores "
            f"would need {rec['dense_scores_gib']:.3g} GiB"]
