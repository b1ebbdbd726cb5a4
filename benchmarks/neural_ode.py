"""One training step of an MLP-field neural ODE: jaxdyn (diffrax) vs torchdiffeq.

The step is **forward + backward + Adam update** on both sides: the MSE loss of the time-`T`
flow of a batch against fixed targets, its gradient with respect to every weight of the field by
backpropagating through the solver, and one `Adam(lr=1e-3)` update. Every repeat starts from the
same weights and a fresh optimizer state, so every repeat does the same work.

Problem (identical on both sides): state dimension 8, lift and readout the identity, field
`MLP(8 -> 64 -> 64 -> 8)` with tanh (jaxdyn `MLPField(8, 64, 2)`), the JAX weights copied into
torch, batch 256, float32, `t` in `[0, 5]`, Dopri5 with a first step of 0.01 (see the README) and an
I-controller (safety 0.9, factors [0.2, 10]), rtol 1e-3 and atol 1e-6. The weights are the
default initialisation multiplied by 3: at the default initialisation the flow is nearly linear and
Dopri5 needs only 3 steps, so the benchmark would time the fixed per-call overhead only; with the
gain it takes about ten steps, like a field that has started to train.

Cases (`jaxdyn` side; the torchdiffeq side is the same `odeint` call in the first two):

- `matched` (**headline**): the whole batch is one state of shape `(256, 8)` (a field that maps the
  MLP over the rows), as torchdiffeq integrates it: one shared step size, error measured by the
  RMS norm over the whole batch, so both sides take the same steps (checked). Backprop through the
  solver on both sides (discretise-then-optimise): diffrax `RecursiveCheckpointAdjoint` (the
  jaxdyn default) vs autograd through `torchdiffeq.odeint`.
- `vmap`: `jax.vmap(model)` over the batch, the way jaxdyn documents batching. Each sample has its
  own adaptive step size (per-sample error control, a different, finer discretisation); the
  vmapped while loop runs until the slowest sample finishes. Not the headline: the two sides do
  not take the same steps.
- `backsolve`: continuous adjoint (optimise-then-discretise) on both sides: diffrax
  `BacksolveAdjoint` (batch as one state) vs `torchdiffeq.odeint_adjoint`, whose adjoint norm is
  set to diffrax's (RMS over the whole augmented state), with the same rtol/atol on the adjoint
  solve.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from _common import Goal, Options, Peer, Side, probe_threads, ratio_of, speedups, spread_of, time_sides

NAME = "neural_ode"
DESCRIPTION = "one training step (fwd + bwd + Adam) of an MLP-field neural ODE vs torchdiffeq"
X64 = False
X64_REASON = ("float32 on both sides (torchdiffeq's default): a training step at rtol 1e-3, atol 1e-6 needs "
              "no more")
PEER = "torchdiffeq"
PEERS = {"torchdiffeq": Peer(("torch", "torchdiffeq"))}
HEADLINE = "matched"
CASES = ("matched", "vmap", "backsolve")
STATEMENT = "jaxdyn >= 2x faster than torchdiffeq per training step (headline case)"

PROBLEM = {
    "step": "forward + backward + Adam(lr=1e-3) update, MSE loss",
    "state_dim": 8,
    "mlp_width": 64,
    "mlp_depth": 2,
    "activation": "tanh",
    "lift_readout": "identity",
    "weight_gain": 3.0,
    "batch": 256,
    "t0": 0.0,
    "t1": 5.0,
    "solver": "Dopri5 (diffrax.Dopri5 / torchdiffeq method='dopri5')",
    "controller": "I-controller, safety 0.9, factormin 0.2, factormax 10",
    "dt0": 0.01,
    "rtol": 1e-3,
    "atol": 1e-6,
    "dtype": "float32",
    "lr": 1e-3,
    "seed": 0,
    "max_steps": 4096,
}


# -- the jaxdyn side -----------------------------------------------------------------------------


def _jax_side(case: str):
    """Build the jaxdyn model, data and a jitted training step for `case`."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from jaxdyn.models import MLPField, NeuralODE

    p = PROBLEM
    kf, kx = jax.random.split(jax.random.key(p["seed"]))
    field = MLPField(p["state_dim"], p["mlp_width"], p["mlp_depth"], key=kf)
    gain = p["weight_gain"]
    field = jax.tree_util.tree_map(lambda a: a * gain if eqx.is_array(a) else a, field)
    x = jax.random.normal(kx, (p["batch"], p["state_dim"]), jnp.float32)
    y = jnp.sin(2.0 * x[:, ::-1])  # any fixed target: the reversed, folded input

    class BatchField(eqx.Module):
        """The field applied row by row to a `(batch, m)` state (one ODE for the whole batch)."""

        field: MLPField

        def __call__(self, t, h, args):
            return jax.vmap(self.field, in_axes=(None, 0, None))(t, h, args)

    controller = diffrax.PIDController(rtol=p["rtol"], atol=p["atol"])
    common = dict(t1=p["t1"], solver=diffrax.Dopri5(), stepsize_controller=controller,
                  dt0=p["dt0"], max_steps=p["max_steps"])
    if case == "vmap":
        model = NeuralODE(field, **common)

        def predict(m, xb):
            return jax.vmap(m)(xb)
    else:
        adjoint = diffrax.BacksolveAdjoint() if case == "backsolve" else None
        model = NeuralODE(field, adjoint=adjoint, **common)

        def predict(m, xb):
            return m.batch(xb)  # one shared step-size sequence for the batch, as torchdiffeq

    def loss_fn(m, xb, yb):
        return jnp.mean((predict(m, xb) - yb) ** 2)

    opt = optax.adam(p["lr"])
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(m, s, xb, yb):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(m, xb, yb)
        updates, s = opt.update(grads, s, eqx.filter(m, eqx.is_inexact_array))
        return eqx.apply_updates(m, updates), s, loss

    forward = eqx.filter_jit(loss_fn)

    def solver_stats():
        """Steps taken by the forward solve (same settings as the model; untimed)."""
        kw = dict(stepsize_controller=controller, max_steps=p["max_steps"])
        if case == "vmap":
            term = diffrax.ODETerm(field)
            sol = jax.vmap(lambda x0: diffrax.diffeqsolve(term, diffrax.Dopri5(), p["t0"], p["t1"],
                                                          p["dt0"], x0, None, **kw))(x)
            tot = sol.stats["num_accepted_steps"] + sol.stats["num_rejected_steps"]
            return {"per_sample_steps_min": int(tot.min()), "per_sample_steps_mean":
                    float(tot.mean()), "per_sample_steps_max": int(tot.max()),
                    "loop_iterations": int(tot.max())}
        saveat = diffrax.SaveAt(steps=True, fn=lambda t, y, args: t)
        sol = diffrax.diffeqsolve(diffrax.ODETerm(BatchField(field)), diffrax.Dopri5(), p["t0"],
                                  p["t1"], p["dt0"], x, None, saveat=saveat, **kw)
        ends = [float(t) for t in sol.ts if math.isfinite(float(t))]
        return {"accepted": int(sol.stats["num_accepted_steps"]),
                "rejected": int(sol.stats["num_rejected_steps"]), "step_ends": ends}

    def grads_flat():
        grads = eqx.filter_grad(loss_fn)(model, x, y)
        leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
        return [jnp.asarray(g) for g in leaves]

    return {
        "field": field, "x": x, "y": y, "model": model, "opt_state": opt_state, "step": step,
        "forward": forward, "solver_stats": solver_stats, "grads_flat": grads_flat,
        "loss_fn": loss_fn,
    }


# -- the torchdiffeq side ------------------------------------------------------------------------


def _torch_side(jax_field, x, y, case: str):
    import numpy as np
    import torch
    import torchdiffeq

    device = "cuda" if torch.cuda.is_available() else "cpu"
    p = PROBLEM

    class TorchMLPField(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.linears = torch.nn.ModuleList()
            for lin in layers:
                tl = torch.nn.Linear(lin.in_features, lin.out_features)
                with torch.no_grad():
                    tl.weight.copy_(torch.from_numpy(np.array(lin.weight)))
                    tl.bias.copy_(torch.from_numpy(np.array(lin.bias)))
                self.linears.append(tl)
            self.counts = {"nfe": 0, "accepted": 0, "rejected": 0, "adj_accepted": 0,
                           "adj_rejected": 0}
            self.step_ends: list[float] = []

        def reset_counts(self):
            for k in self.counts:
                self.counts[k] = 0
            self.step_ends = []

        def forward(self, t, h):
            self.counts["nfe"] += 1
            for lin in self.linears[:-1]:
                h = torch.tanh(lin(h))
            return self.linears[-1](h)

        # torchdiffeq calls these if they exist (used to check that both sides take the same steps)
        def callback_accept_step(self, t0, y0, dt):
            self.counts["accepted"] += 1
            self.step_ends.append(t0 + dt)  # a tensor; converted to float only in check()

        def callback_reject_step(self, t0, y0, dt):
            self.counts["rejected"] += 1

        def callback_accept_step_adjoint(self, t0, y0, dt):
            self.counts["adj_accepted"] += 1

        def callback_reject_step_adjoint(self, t0, y0, dt):
            self.counts["adj_rejected"] += 1

    f = TorchMLPField(jax_field.mlp.layers).to(device)
    init = [q.detach().clone() for q in f.parameters()]
    tx = torch.from_numpy(np.array(x)).to(device)
    ty = torch.from_numpy(np.array(y)).to(device)
    tt = torch.tensor([p["t0"], p["t1"]], dtype=torch.float32, device=device)
    kw = dict(rtol=p["rtol"], atol=p["atol"], method="dopri5",
              options={"first_step": p["dt0"]})
    if case == "backsolve":
        def rms_all(tensors):  # diffrax's norm: RMS over the whole augmented state
            _vjp_t, *rest = tensors
            sq = sum(r.pow(2).sum() for r in rest)
            return (sq / sum(r.numel() for r in rest)).sqrt()

        def solve(func, y0):
            return torchdiffeq.odeint_adjoint(
                func, y0, tt, adjoint_options={"norm": rms_all, "first_step": p["dt0"]}, **kw)
    else:
        def solve(func, y0):
            return torchdiffeq.odeint(func, y0, tt, **kw)

    state: dict[str, Any] = {}

    def reset():
        f.reset_counts()
        with torch.no_grad():
            for q, q0 in zip(f.parameters(), init, strict=True):
                q.copy_(q0)
        state["opt"] = torch.optim.Adam(f.parameters(), lr=p["lr"])

    def loss():
        return ((solve(f, tx)[-1] - ty) ** 2).mean()

    def step():
        opt = state["opt"]
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        opt.step()
        return value

    def forward():
        with torch.no_grad():
            return loss()

    def sync(_):
        if device == "cuda":
            torch.cuda.synchronize()

    def check():
        """Loss, gradients and step counts at the initial weights (untimed)."""
        reset()
        value = loss()
        fwd_counts = dict(f.counts)
        step_ends = [float(t) for t in f.step_ends]
        grads = torch.autograd.grad(value, list(f.parameters()))
        counts = dict(f.counts)
        counts["nfe_forward"] = fwd_counts["nfe"]
        counts["nfe_total"] = counts.pop("nfe")
        counts["step_ends"] = step_ends
        reset()
        return value.item(), [g.detach().cpu().numpy() for g in grads], counts

    def set_threads(n: int) -> None:
        torch.set_num_threads(n)

    return {"step": step, "forward": forward, "reset": reset, "sync": sync, "check": check,
            "device": device, "set_threads": set_threads}


@functools.cache
def _reference_grad():
    """Gradient at the initial weights from a tight solve (rtol 1e-6, atol 1e-8, float32, batch as
    one state, jaxdyn): the yardstick for both sides' rtol-1e-3 gradients."""
    import diffrax
    import equinox as eqx
    import jax
    import numpy as np

    js = _jax_side(HEADLINE)
    tight = diffrax.PIDController(rtol=1e-6, atol=1e-8)
    model = eqx.tree_at(lambda m: m.stepsize_controller, js["model"], tight)
    grads = eqx.filter_jit(eqx.filter_grad(js["loss_fn"]))(model, js["x"], js["y"])
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    return np.concatenate([np.asarray(g).ravel() for g in leaves])


# -- agreement and roofline ----------------------------------------------------------------------


def _agreement(js, ts, case: str) -> dict[str, Any]:
    """Loss, gradient and solver steps of both sides at the initial weights (untimed)."""
    import numpy as np

    jloss = float(js["loss_fn"](js["model"], js["x"], js["y"]))
    # jaxdyn's leaves are (weight, bias) per layer: the order of torch's parameters()
    jg = np.concatenate([np.asarray(g).ravel() for g in js["grads_flat"]()])
    tloss, tgrads, counts = ts["check"]()
    tg = np.concatenate([g.ravel() for g in tgrads])
    ref = _reference_grad()

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    out: dict[str, Any] = {
        "loss_jaxdyn": jloss,
        "loss_torchdiffeq": tloss,
        "loss_rel_diff": abs(jloss - tloss) / abs(tloss),
        "grad_rel_l2_diff": rel(jg, tg),
        "grad_rel_l2_err_vs_tight_reference": {"jaxdyn": rel(jg, ref), PEER: rel(tg, ref),
                                               "reference": "jaxdyn, rtol 1e-6, atol 1e-8"},
        "steps_jaxdyn": js["solver_stats"](),
        "steps_torchdiffeq": {"accepted": counts["accepted"], "rejected": counts["rejected"],
                              "nfe_forward": counts["nfe_forward"],
                              "nfe_total": counts["nfe_total"], "step_ends": counts["step_ends"]},
    }
    if case == "backsolve":
        out["steps_torchdiffeq"]["adjoint_accepted"] = counts["adj_accepted"]
        out["steps_torchdiffeq"]["adjoint_rejected"] = counts["adj_rejected"]
    if case != "vmap":
        sj, st = out["steps_jaxdyn"], out["steps_torchdiffeq"]
        same_count = (sj["accepted"], sj["rejected"]) == (st["accepted"], st["rejected"])
        # torchdiffeq steps past t1 and interpolates; diffrax clips its last step to t1, so
        # compare every accepted step but the last
        a, b = np.array(sj["step_ends"][:-1]), np.array(st["step_ends"][:-1])
        gap = float(np.max(np.abs(a - b))) if same_count and a.size else None
        out["max_step_end_diff_before_last"] = gap
        out["same_steps"] = bool(same_count and (gap is None or gap < 1e-4 * PROBLEM["t1"]))
    return out


def _field_flops(batch: int) -> int:
    p = PROBLEM
    m, w, d = p["state_dim"], p["mlp_width"], p["mlp_depth"]
    return 2 * batch * (m * w + (d - 1) * w * w + w * m)


def _matmul_rates(repeats: int, torch_too: bool) -> dict[str, float]:
    """FLOP/s of a chain of 200 dependent same-size matmuls (batch x width @ width x width), in
    JAX on its device and in torch (on its device, at the threads it was timed at)."""
    import jax
    import jax.numpy as jnp

    p = PROBLEM
    shape_a, shape_b, inner = (p["batch"], p["mlp_width"]), (p["mlp_width"], p["mlp_width"]), 200
    a, b = jnp.ones(shape_a, jnp.float32), jnp.full(shape_b, 1.0 / p["mlp_width"], jnp.float32)
    many = jax.jit(lambda a, b: jax.lax.fori_loop(0, inner, lambda i, acc: acc @ b, a))
    sides = [Side("jaxdyn", lambda: many(a, b))]
    if torch_too:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        ta = torch.ones(shape_a, device=device)
        tb = torch.full(shape_b, 1.0 / p["mlp_width"], device=device)

        def torch_many():
            acc = ta
            with torch.no_grad():
                for _ in range(inner):
                    acc = acc @ tb
            if device == "cuda":
                torch.cuda.synchronize()
            return acc

        sides.append(Side(PEER, torch_many, sync=lambda x: x))
    recs, _ = time_sides(sides, repeats=max(3, repeats // 2))
    flops = 2 * p["batch"] * p["mlp_width"] ** 2 * inner
    return {k: flops / r["warm_median_s"] for k, r in recs.items()}


def _case(ctx, case: str) -> dict[str, Any]:
    import jax

    js = _jax_side(case)
    sides = [Side("jaxdyn", lambda: js["step"](js["model"], js["opt_state"], js["x"], js["y"]),
                  sync=jax.block_until_ready)]
    ts = _torch_side(js["field"], js["x"], js["y"], case) if ctx.ok(PEER) else None
    if ts is not None:
        ctx.peers[PEER]["device"] = ts["device"]
        peer_side = Side(PEER, ts["step"], sync=ts["sync"], before=ts["reset"])
        best, probe = probe_threads(peer_side, ts["set_threads"], ctx.opts.threads,
                                    repeats=max(3, ctx.opts.repeats // 4))
        sides.append(peer_side)
    timing, _ = time_sides(sides, repeats=ctx.opts.repeats)
    rec: dict[str, Any] = {"jaxdyn": timing["jaxdyn"]}
    if ts is None:
        rec[PEER] = ctx.peers[PEER]
        rec["speedup"] = {PEER: None}
    else:
        peer = dict(timing[PEER], torch_threads=best)
        # the very first torch call was the first probe's: report its extra time
        peer["first_call_s"] = probe[min(probe, key=int)]["first_call_s"]
        peer["compile_s"] = peer["first_call_s"] - peer["warm_median_s"]
        rec[PEER] = peer
        rec[f"{PEER}_thread_probe"] = {
            n: {k: v for k, v in r.items() if k not in ("first_call_s", "compile_s")}
            for n, r in probe.items()}
        rec.update(speedups(timing, [PEER]))
        rec["agreement"] = _agreement(js, ts, case)
    if case == HEADLINE and not ctx.quick:
        rec["breakdown"] = _breakdown(js, ts, rec, ctx.opts)
    return rec


def case_matched(ctx) -> dict[str, Any]:
    return _case(ctx, "matched")


def case_vmap(ctx) -> dict[str, Any]:
    return _case(ctx, "vmap")


def case_backsolve(ctx) -> dict[str, Any]:
    return _case(ctx, "backsolve")


def goals(cases: dict[str, Any]) -> list[Goal]:
    return [Goal("training_step_vs_torchdiffeq", STATEMENT,
                 "median over interleaved rounds of torchdiffeq time / jaxdyn time", 2.0,
                 ratio_of(cases.get(HEADLINE), PEER), spread=spread_of(cases.get(HEADLINE), PEER))]


def _breakdown(js, ts, rec, opts: Options) -> dict[str, Any]:
    """Where the time goes (headline case): forward-only loss vs the whole step, per solver step,
    and the forward pass's FLOP rate against a same-size matmul."""
    import jax

    sides = [Side("jaxdyn_forward", lambda: js["forward"](js["model"], js["x"], js["y"]),
                  sync=jax.block_until_ready)]
    if ts is not None:
        sides.append(Side(f"{PEER}_forward", ts["forward"], sync=ts["sync"]))
    t, _ = time_sides(sides, repeats=max(5, opts.repeats // 2))
    out: dict[str, Any] = {name: {"warm_median_s": v["warm_median_s"], "warm_iqr_s":
                                  v["warm_iqr_s"], "compile_s": v["compile_s"]}
                           for name, v in t.items()}
    stats = js["solver_stats"]()
    steps = stats["accepted"] + stats["rejected"]
    nfe = 6 * steps + 1  # Dopri5 is FSAL: one evaluation at t0, then six per step
    flops = nfe * _field_flops(PROBLEM["batch"])
    rates = _matmul_rates(opts.repeats, torch_too=ts is not None)
    out.update(solver_steps=steps, nfe_forward=nfe, forward_flops=flops,
               matmul_shape=[PROBLEM["batch"], PROBLEM["mlp_width"], PROBLEM["mlp_width"]],
               matmul_flop_rate=rates)
    # FLOPs of a step, counting matmuls only: the forward F, its vector-Jacobian product 2F and,
    # for jaxdyn, the forward recomputed by RecursiveCheckpointAdjoint's backward pass F
    step_flops = {"jaxdyn": 4 * flops, PEER: 3 * flops}
    out["step_flops_model"] = "matmul FLOPs: jaxdyn 4F (fwd, recomputed fwd, vjp 2F), peer 3F"
    for side in rates:
        fwd = out[f"{side}_forward"]["warm_median_s"]
        whole = rec[side]["warm_median_s"]
        out[side] = {
            "forward_s": fwd,
            "backward_and_update_s": whole - fwd,
            "step_per_solver_step_s": whole / steps,
            "forward_per_solver_step_s": fwd / steps,
            "forward_flop_rate": flops / fwd,
            "forward_fraction_of_matmul_rate": flops / fwd / rates[side],
            "step_flop_rate": step_flops[side] / whole,
            "step_fraction_of_matmul_rate": step_flops[side] / whole / rates[side],
        }
    return out


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    lines = [f"{PEER} thread probe, {n} thread(s): warm median {r['warm_median_s'] * 1e3:.2f} ms "
             f"(n={r['n_repeats']})" for n, r in rec.get(f"{PEER}_thread_probe", {}).items()]
    if rec["speedup"][PEER] is None:
        return lines
    p = rec["speedup_paired"][PEER]
    lines.append(f"per-round ratios ({PEER} / jaxdyn): median {p['median']:.2f}x, IQR "
                 f"{p['iqr'][0]:.2f}..{p['iqr'][1]:.2f}x")
    a = rec["agreement"]
    sj, st = a["steps_jaxdyn"], a["steps_torchdiffeq"]
    if "accepted" in sj:
        steps = (f"jaxdyn {sj['accepted']}+{sj['rejected']}, {PEER} {st['accepted']}+{st['rejected']} "
                 f"(accepted+rejected), same steps: {a['same_steps']}")
    else:
        steps = (f"jaxdyn per-sample {sj['per_sample_steps_min']}...{sj['per_sample_steps_max']} "
                 f"(mean {sj['per_sample_steps_mean']:.1f}), {PEER} {st['accepted']}+{st['rejected']} shared")
    ref = a["grad_rel_l2_err_vs_tight_reference"]
    lines.append(f"agreement: loss rel diff {a['loss_rel_diff']:.1e}, grad rel diff "
                 f"{a['grad_rel_l2_diff']:.1e} (vs a tight solve: jaxdyn {ref['jaxdyn']:.1e}, "
                 f"{PEER} {ref[PEER]:.1e}); steps {steps}")
    for side in ("jaxdyn", PEER) if PEER in rec.get("breakdown", {}) else ():
        d = rec["breakdown"][side]
        lines.append(f"{side}: forward {d['forward_s'] * 1e3:.2f} ms, backward+update "
                     f"{d['backward_and_update_s'] * 1e3:.2f} ms, forward at "
                     f"{100 * d['forward_fraction_of_matmul_rate']:.0f}% and whole step at "
                     f"{100 * d['step_fraction_of_matmul_rate']:.0f}% of a same-size matmul chain")
    return lines
