"""Continuous normalizing flows: one maximum-likelihood training step on moons (jaxdyn `CNF` vs an
FFJORD-style torchdiffeq implementation), and the log-density of 10^5 samples in d = 64 with
Hutchinson's trace.

Case `train_step` (**headline**): forward + backward + Adam(lr=1e-3) on the negative
log-likelihood of a batch of 512 points of scikit-learn's `make_moons` (noise 0.05, standardised),
d = 2, **exact trace**. Both sides integrate the augmented state (z, log-density change) of the
whole batch as one state (one shared step size, FFJORD's way) from the data at t1 = 1 back to the
base at t0 = 0 with Dopri5, rtol = atol = 1e-5 (FFJORD's defaults), a first step of 0.01, an
I-controller (safety 0.9, factors [0.2, 10]) and the error measured by the RMS norm over the whole
augmented state (torchdiffeq's `norm` option set to diffrax's), float32, and backpropagate through
the solver (diffrax `RecursiveCheckpointAdjoint`, jaxdyn's default, vs autograd through
`torchdiffeq.odeint`). The field is the same MLP on [t, z] (3 -> 64 -> 64 -> 64 -> 2, tanh; the
JAX weights, times a gain of 3 so that the flow is not nearly linear (8 Dopri5 steps), are copied
into torch), so both sides take the same steps (checked). The torch side computes the exact trace as FFJORD's
`divergence_bf` does: one `autograd.grad` per dimension with `create_graph=True`; jaxdyn takes
one linearisation of the field and d vector-Jacobian products inside the solve (see `CNF`).
Where the jaxdyn time goes (2-core CPU, low load): forward solve ~7.5 ms, backward ~34 ms (the
checkpointed adjoint recomputes each step's forward, then reverse-over-reverse through the d
products: about 4x the forward's matrix products); XLA runs it on about 1.3 cores while torch
uses its 2 threads. Measured without gain: the divergence of the MLP by forward tangents fused
with the activations (stacked or not), a hand-written custom VJP of that fused evaluation, XLA
CPU flags (oneDNN, XNNPACK, 512-bit vectors, concurrency scheduler, one thread),
`DirectAdjoint` (3x slower); the batch split over 2 host devices (`shard_map`, a global error
norm) fails in equinox's checkpointed-loop backward (closure-convert check under shard_map,
equinox PR #1261 open).

Case `train_step_adjoint`: the same step with the continuous adjoint on both sides (FFJORD's own
default): diffrax `BacksolveAdjoint` vs `torchdiffeq.odeint_adjoint`, the adjoint solve's error
measured by the RMS norm over its whole augmented state on both sides, same rtol/atol. Reported,
not the headline (the headline was fixed before this case was added).

Case `hutchinson_d64`: log p of 10^5 points in d = 64 (a Gaussian cloud) under a CNF whose field
is an MLP on [t, z] (65 -> 128 -> 128 -> 64, tanh, weights times 1.5), Hutchinson's trace with one
Rademacher vector per point drawn once per solve (the same vectors on both sides), the 10^5
points as one state, Dopri5 at rtol = atol = 1e-5, float32, no gradient. jaxdyn:
`CNF.batch_log_prob`; torch: FFJORD's `divergence_approx` (one `autograd.grad` of e^T f per
evaluation) in `torchdiffeq.odeint`. Time reported (no goal).
"""

from __future__ import annotations

from typing import Any

from _common import Goal, Peer, Side, probe_threads, ratio_of, speedups, spread_of, time_sides

NAME = "generative"
DESCRIPTION = "CNF maximum-likelihood training step on moons vs an FFJORD-style torchdiffeq CNF"
X64 = False
X64_REASON = "float32 on both sides (FFJORD's default): a training step at rtol = atol = 1e-5 needs no more"
PEER = "torchdiffeq"
PEERS = {"torchdiffeq": Peer(("torch", "torchdiffeq"))}
HEADLINE = "train_step"
CASES = ("train_step", "train_step_adjoint", "hutchinson_d64")
STATEMENT = "jaxdyn >= 2x faster than an FFJORD-style torchdiffeq CNF per training step (moons, exact trace)"

PROBLEM = {
    "train_step": {
        "step": "forward + backward + Adam(lr=1e-3), NLL of the batch",
        "data": "sklearn make_moons(512, noise=0.05, random_state=0), standardised",
        "d": 2, "batch": 512, "trace": "exact (jaxdyn d vjps; torch autograd per dimension, FFJORD)",
        "field": "MLP on [t, z]: 3 -> 64 -> 64 -> 64 -> 2, tanh", "mlp_width": 64, "mlp_depth": 3,
        "weight_gain": 3.0, "t0": 0.0, "t1": 1.0, "solver": "Dopri5", "rtol": 1e-5, "atol": 1e-5,
        "dt0": 0.01, "controller": "I-controller, safety 0.9, factors [0.2, 10], RMS norm over the state",
        "dtype": "float32", "lr": 1e-3, "seed": 0,
    },
    "hutchinson_d64": {
        "evaluation": "log p of n points, no gradient", "n": 100_000, "d": 64,
        "trace": "Hutchinson, one Rademacher vector per point, fixed along the solve (same on both sides)",
        "field": "MLP on [t, z]: 65 -> 128 -> 128 -> 64, tanh", "mlp_width": 128, "mlp_depth": 2,
        "weight_gain": 1.5, "t0": 0.0, "t1": 1.0, "solver": "Dopri5", "rtol": 1e-5, "atol": 1e-5,
        "dt0": 0.01, "dtype": "float32", "seed": 1,
    },
}
PROBLEM["train_step_adjoint"] = dict(
    PROBLEM["train_step"], adjoint=("continuous adjoint on both sides: diffrax BacksolveAdjoint vs "
                                    "torchdiffeq.odeint_adjoint (FFJORD's default), adjoint norm RMS over "
                                    "the whole augmented state, same rtol/atol"))
QUICK_N = 10_000  # --quick: the d = 64 case on 10^4 points


def _problem(case: str, quick: bool) -> dict[str, Any]:
    p = dict(PROBLEM[case])
    if quick and case == "hutchinson_d64":
        p["n"] = QUICK_N
    return p


def moons(n: int, seed: int):
    """`make_moons(n, noise=0.05)` standardised to zero mean and unit variance, float32."""
    import numpy as np
    from sklearn.datasets import make_moons

    x = make_moons(n, noise=0.05, random_state=seed)[0]
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


# -- the jaxdyn side -----------------------------------------------------------------------------


def jax_side(case: str, quick: bool = False) -> dict[str, Any]:
    """The CNF, the data and the jitted work of `case` (jaxdyn)."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxdyn.models import CNF, MLPField, cnf_nll

    p = _problem(case, quick)
    kf, kx, ke = jax.random.split(jax.random.key(p["seed"]), 3)
    field = MLPField(p["d"], p["mlp_width"], p["mlp_depth"], time_dependent=True, key=kf)
    field = jax.tree_util.tree_map(lambda a: a * p["weight_gain"] if eqx.is_array(a) else a, field)
    controller = diffrax.PIDController(rtol=p["rtol"], atol=p["atol"])
    train = case.startswith("train_step")
    adjoint = diffrax.BacksolveAdjoint() if case == "train_step_adjoint" else None
    model = CNF(field, t0=p["t0"], t1=p["t1"], trace="exact" if train else "hutchinson",
                solver=diffrax.Dopri5(), stepsize_controller=controller, dt0=p["dt0"], adjoint=adjoint)
    if train:
        x = jnp.asarray(moons(p["batch"], p["seed"]))
        opt = optax.adam(p["lr"])
        opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))

        @eqx.filter_jit
        def step(m, s, xb):
            loss, grads = eqx.filter_value_and_grad(cnf_nll)(m, xb)
            updates, s = opt.update(grads, s, eqx.filter(m, eqx.is_inexact_array))
            return eqx.apply_updates(m, updates), s, loss

        def run():
            return step(model, opt_state, x)

        value = lambda: float(eqx.filter_jit(cnf_nll)(model, x))
        grads = lambda: [np.asarray(g) for g in jax.tree_util.tree_leaves(
            eqx.filter(eqx.filter_jit(eqx.filter_grad(cnf_nll))(model, x), eqx.is_inexact_array))]
        return {"model": model, "field": field, "x": x, "run": run, "value": value, "grads": grads,
                "steps": lambda: _steps(model, x, None)}
    x = jax.random.normal(kx, (p["n"], p["d"]), jnp.float32)
    eps = jax.random.rademacher(ke, x.shape, jnp.float32)  # what batch_log_prob draws from `ke`
    evaluate = eqx.filter_jit(lambda m, xs, k: m.batch_log_prob(xs, key=k))

    def run():
        return evaluate(model, x, ke)

    return {"model": model, "field": field, "x": x, "eps": eps, "run": run,
            "value": lambda: float(jnp.mean(run())), "steps": lambda: _steps(model, x, eps)}


def _steps(model, x, eps) -> dict[str, int]:
    """Accepted and rejected steps of the density solve (untimed), as jaxdyn takes them."""
    import diffrax
    import jax.numpy as jnp

    from jaxdyn.models._cnf import _Augmented

    aug = _Augmented(model.field, eps, model.t1, -1.0, True, True)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(aug), model.solver, 0.0, abs(model.t1 - model.t0), model.dt0,
                              (x, jnp.zeros(x.shape[0], x.dtype)), None,
                              stepsize_controller=model.stepsize_controller, max_steps=4096)
    stats = sol.stats
    return {"accepted": int(stats["num_accepted_steps"]), "rejected": int(stats["num_rejected_steps"])}


# -- the torch side (FFJORD-style) ---------------------------------------------------------------


def torch_side(js: dict[str, Any], case: str, quick: bool = False) -> dict[str, Any]:
    """An FFJORD-style CNF in torch with the same weights, solver settings and data."""
    import math

    import numpy as np
    import torch
    import torchdiffeq

    p = _problem(case, quick)
    layers = js["field"].mlp.layers
    counts = {"nfe": 0, "accepted": 0, "rejected": 0}

    class ODEFunc(torch.nn.Module):
        """FFJORD's ODEfunc: (z, logp)' = (f(t, z), -div f), the divergence exact (one autograd.grad
        per dimension, `divergence_bf`) or Hutchinson's (`divergence_approx`) with a fixed `e`."""

        def __init__(self):
            super().__init__()
            self.linears = torch.nn.ModuleList()
            for lin in layers:
                tl = torch.nn.Linear(lin.in_features, lin.out_features)
                with torch.no_grad():
                    tl.weight.copy_(torch.from_numpy(np.array(lin.weight)))
                    tl.bias.copy_(torch.from_numpy(np.array(lin.bias)))
                self.linears.append(tl)
            self.e = None

        def mlp(self, t, z):
            h = torch.cat([t.expand(z.shape[0], 1).to(z), z], 1)
            for lin in self.linears[:-1]:
                h = torch.tanh(lin(h))
            return self.linears[-1](h)

        def forward(self, t, states):
            counts["nfe"] += 1
            z = states[0]
            training = torch.is_grad_enabled()
            with torch.enable_grad():
                if not z.requires_grad:
                    z = z.requires_grad_(True)
                dz = self.mlp(t, z)
                if self.e is None:
                    div = 0.0
                    for i in range(z.shape[1]):
                        div = div + torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i]
                else:
                    e_dzdx = torch.autograd.grad(dz, z, self.e, create_graph=training)[0]
                    div = (e_dzdx * self.e).sum(1)
            return dz, -div

        def callback_accept_step(self, t0, y0, dt):
            counts["accepted"] += 1

        def callback_reject_step(self, t0, y0, dt):
            counts["rejected"] += 1

    func = ODEFunc()
    init = [q.detach().clone() for q in func.parameters()]
    x = torch.from_numpy(np.array(js["x"]))
    if "eps" in js:
        func.e = torch.from_numpy(np.array(js["eps"]))
    # from the data at t1 back to the base at t0, as jaxdyn's density solve
    times = torch.tensor([p["t1"], p["t0"]], dtype=torch.float32)

    def rms_all(tensors):  # diffrax's norm: RMS over the whole augmented state
        sq = sum(r.pow(2).sum() for r in tensors)
        return (sq / sum(r.numel() for r in tensors)).sqrt()

    opts = {"first_step": p["dt0"], "norm": rms_all}
    log2pi = math.log(2 * math.pi)

    def rms_adjoint(tensors):  # the same over the adjoint's augmented state (its time entry left out)
        return rms_all(tensors[1:])

    def log_prob(xb):
        zero = torch.zeros(xb.shape[0], dtype=xb.dtype)
        kw = dict(rtol=p["rtol"], atol=p["atol"], method="dopri5", options=opts)
        if case == "train_step_adjoint":
            z, delta = torchdiffeq.odeint_adjoint(func, (xb, zero), times, adjoint_options={
                "norm": rms_adjoint, "first_step": p["dt0"]}, **kw)
        else:
            z, delta = torchdiffeq.odeint(func, (xb, zero), times, **kw)
        z0, dl = z[-1], delta[-1]
        # d(logp)/dt = -div along t1 -> t0: dl = int_{t0}^{t1} div; log p(x) = log p0(z0) - dl
        return -0.5 * (z0**2).sum(1) - 0.5 * z0.shape[1] * log2pi - dl

    state: dict[str, Any] = {}

    def reset():
        with torch.no_grad():
            for q, q0 in zip(func.parameters(), init, strict=True):
                q.copy_(q0)
        state["opt"] = torch.optim.Adam(func.parameters(), lr=p.get("lr", 1e-3))

    def step():
        opt = state["opt"]
        opt.zero_grad(set_to_none=True)
        loss = -log_prob(x).mean()
        loss.backward()
        opt.step()
        return loss

    def evaluate():
        with torch.no_grad():
            return log_prob(x)

    def steps():
        reset()
        for k in counts:
            counts[k] = 0
        with torch.no_grad():
            value = float(log_prob(x).mean())
        return value, dict(counts)

    def grads():
        reset()
        loss = -log_prob(x).mean()
        return [g.detach().numpy() for g in torch.autograd.grad(loss, list(func.parameters()))]

    train = case.startswith("train_step")
    return {"run": step if train else evaluate, "reset": reset if train else None,
            "steps": steps, "grads": grads, "set_threads": torch.set_num_threads}


# -- cases ---------------------------------------------------------------------------------------


def _agreement(js, ts, case: str) -> dict[str, Any]:
    import numpy as np

    jsteps = js["steps"]()
    tvalue, tcounts = ts["steps"]()
    jvalue = js["value"]() if case == "hutchinson_d64" else -js["value"]()
    out = {"mean_log_prob_jaxdyn": jvalue, "mean_log_prob_torch": tvalue,
           "mean_log_prob_abs_diff": abs(jvalue - tvalue), "steps_jaxdyn": jsteps,
           "steps_torchdiffeq": {"accepted": tcounts["accepted"], "rejected": tcounts["rejected"],
                                 "nfe": tcounts["nfe"]},
           "same_steps": (jsteps["accepted"], jsteps["rejected"]) == (tcounts["accepted"],
                                                                      tcounts["rejected"])}
    if case.startswith("train_step"):
        jg = np.concatenate([g.ravel() for g in js["grads"]()])
        tg = np.concatenate([g.ravel() for g in ts["grads"]()])
        out["grad_rel_l2_diff"] = float(np.linalg.norm(jg - tg) / np.linalg.norm(tg))
    return out


def _case(ctx, case: str) -> dict[str, Any]:
    import jax

    js = jax_side(case, ctx.quick)
    sides = [Side("jaxdyn", js["run"], sync=jax.block_until_ready)]
    ts = torch_side(js, case, ctx.quick) if ctx.ok(PEER) else None
    rec: dict[str, Any] = {"problem": _problem(case, ctx.quick)}
    # the d = 64 evaluation takes seconds a call (torch tens): 3 interleaved rounds (2 with --quick),
    # torch at the thread count the headline case's probe chose
    repeats = ctx.opts.repeats if case.startswith("train_step") else ctx.paired_rounds + 1
    if ts is not None:
        peer_side = Side(PEER, ts["run"], sync=lambda out: out, before=ts["reset"])
        if case == HEADLINE or "torch_threads" not in ctx.state:
            best, probe = probe_threads(peer_side, ts["set_threads"], ctx.opts.threads,
                                        repeats=max(2, repeats // 4))
            ctx.state["torch_threads"] = best
            keep = ("warm_median_s", "n_repeats")
            rec[f"{PEER}_thread_probe"] = {n: {k: v for k, v in r.items() if k in keep}
                                           for n, r in probe.items()}
        else:
            best = ctx.state["torch_threads"]
            ts["set_threads"](best)
        sides.append(peer_side)
    timing, _ = time_sides(sides, repeats=repeats)
    rec["jaxdyn"] = timing["jaxdyn"]
    if ts is None:
        rec[PEER] = ctx.peers[PEER]
        rec["speedup"] = {PEER: None}
        rec["agreement"] = {"steps_jaxdyn": js["steps"]()}
    else:
        rec[PEER] = dict(timing[PEER], torch_threads=best)
        rec.update(speedups(timing, [PEER]))
        rec["agreement"] = _agreement(js, ts, case)
    return rec


def case_train_step(ctx) -> dict[str, Any]:
    return _case(ctx, "train_step")


def case_train_step_adjoint(ctx) -> dict[str, Any]:
    return _case(ctx, "train_step_adjoint")


def case_hutchinson_d64(ctx) -> dict[str, Any]:
    return _case(ctx, "hutchinson_d64")


def goals(cases: dict[str, Any]) -> list[Goal]:
    head = cases.get(HEADLINE)
    return [Goal("cnf_training_step_vs_torchdiffeq", STATEMENT,
                 "median over interleaved rounds of torchdiffeq time / jaxdyn time", 2.0,
                 ratio_of(head, PEER), spread=spread_of(head, PEER),
                 condition=bool((head or {}).get("agreement", {}).get("same_steps", True)))]


def describe(case: str, rec: dict[str, Any]) -> list[str]:
    a = rec.get("agreement", {})
    lines = [f"jaxdyn: {rec['jaxdyn']['warm_median_s']:.4g} s warm ({rec['problem'].get('n', '')} points)"
             if case == "hutchinson_d64" else ""]
    if "steps_torchdiffeq" in a:
        sj, st = a["steps_jaxdyn"], a["steps_torchdiffeq"]
        lines.append(f"steps: jaxdyn {sj['accepted']}+{sj['rejected']}, "
                     f"{PEER} {st['accepted']}+{st['rejected']} "
                     f"(accepted+rejected; same: {a['same_steps']}); mean log p: jaxdyn "
                     f"{a['mean_log_prob_jaxdyn']:.6g}, {PEER} {a['mean_log_prob_torch']:.6g}"
                     + (f"; grad rel diff {a['grad_rel_l2_diff']:.1e}" if "grad_rel_l2_diff" in a else ""))
    elif "steps_jaxdyn" in a:
        sj = a["steps_jaxdyn"]
        lines.append(f"steps: jaxdyn {sj['accepted']}+{sj['rejected']} (accepted+rejected)")
    return [line for line in lines if line]
