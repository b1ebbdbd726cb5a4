r"""Transformers as interacting particles: self-attention dynamics on the sphere, its clusters, its
mean-field limit, and the token dynamics of a trained attention layer.

$n$ tokens $x_i \in S^{d-1}$ move by $\dot x_i = P_{x_i}\big(\sum_j w_{ij} V x_j\big)$,
$w_{ij} = e^{\beta \langle Q x_i, K x_j\rangle} / Z_i$ ([`jaxdyn.meanfield.SelfAttention`][]).
Six results, each against theory:

1. **Tokens on the circle are Kuramoto oscillators.** For $d = 2$, $Q = K = V = I$ and uniform
   normalisation ($Z_i = n$) the angles $\theta_i$ solve the Kuramoto model with identical
   frequencies and coupling function $g(\phi) = e^{\beta\cos\phi}\sin\phi$ (the classical one at
   $\beta = 0$): the two fields agree to rounding.
2. **Consensus at small $\beta$.** $Q = K = V = I$, $d = 3$, random tokens: one cluster, the
   mean token's norm $\to 1$ (Geshkovski, Letrouit, Polyanskiy, Rigollet 2023).
3. **Metastable clusters.** At large $\beta$ the tokens form several clusters that live for a long
   time; the count at a fixed time grows with $\beta$.
4. **Spectral selection.** For $Q^\top K = V = V^\top$ the flow selects eigendirections of $V$:
   alignment with the dominant eigenvector when one positive eigenvalue dominates, a sign split
   along the most negative eigendirection when $V$ is negative definite (Kuehn & Yoon 2026).
5. **The mean-field limit.** $W_1$ between the clouds of $n$ and $4n$ tokens evolved by the same
   flow shrinks like $n^{-1/2}$ (circle; on $S^2$ the sampling rate has a logarithmic factor).
6. **A trained attention layer as a field.** A single-head layer trained (float64, Adam) to map
   each token to the normalised mean of its $k$ nearest tokens; its $Q, K, V$ run as a
   [`SelfAttention`][jaxdyn.meanfield.SelfAttention] field and its token dynamics is compared with
   that of $Q = K = V = I$.

Every result is judged by a claim ([`Claim`][jaxdyn.experiments.Claim]) whose criterion is fixed
by the module-level constants below, before any run.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import meanfield as mf
from ._progress import fmt, stages
from ._result import Claim, ExperimentResult

NAME = "attention"
TITLE = "Transformers as interacting particles: clustering, metastability, spectral selection, W1 limit"

QUESTION = (
    "Do self-attention dynamics on the sphere behave as the particle theory of transformers says: "
    "Kuramoto on the circle, consensus at small $\\beta$, metastable clusters whose number grows with "
    "$\\beta$, spectral selection by the value matrix, the $n^{-1/2}$ mean-field rate; and what does a "
    "trained attention layer's token dynamics do?"
)

GESHKOVSKI = ("Geshkovski, Letrouit, Polyanskiy, Rigollet 2023, \"A mathematical perspective on "
              "Transformers\"")

# The criteria of the claims, fixed before any run; never loosened to turn a verdict green.
KURAMOTO_TOLERANCE = 1e-12
"""Largest $|\\dot\\theta^{\\mathrm{attention}} - \\dot\\theta^{\\mathrm{Kuramoto}}|$ allowed (float64)."""
CONSENSUS = 1e-3
"""Consensus: the mean token's norm $\\|\\frac1n\\sum_i x_i\\| \\ge 1 - 10^{-3}$ by the final time."""
ALIGNMENT = 0.99
"""Spectral selection: every $|\\langle x_i, v\\rangle| \\ge 0.99$ ($v$ the selected eigenvector)."""
SPLIT_FRACTION = 0.1
"""Sign split: each sign of $\\langle x_i, v\\rangle$ holds at least 10 % of the tokens."""
RATE, RATE_TOLERANCE = -0.5, 0.15
"""Mean-field rate: fitted log-log slope of $W_1$ against $n$ within $-1/2 \\pm 0.15$ (circle)."""
LOSS_FACTOR = 5.0
"""The trained layer: final training loss at most 1/5 of the initial one."""
ISOTROPY = 0.1
"""... and its $Q^\\top K$, $V$ within 10 % (relative Frobenius distance) of multiples of $I$ ..."""
SURROGATE = 0.05
"""... so that its order parameter $R(t) = \\|\\frac1n \\sum_i x_i(t)\\|$ stays within 0.05 (largest gap over
the run, same initial tokens) of that of $Q = K = I$, $V = vI$ at $\\beta = \\beta_{\\mathrm{eff}}$ ($v$,
$\\beta_{\\mathrm{eff}}$ the multiples; the consensus point itself is neutral, so tokens are not
compared one by one)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Budgets of one run (`QUICK` for `--quick`, else `FULL`)."""

    dt: float = 0.05
    kuramoto_n: int = 64
    kuramoto_betas: tuple = (0.0, 1.0, 4.0, 9.0)
    circle_n: int = 32
    circle_beta: float = 4.0
    n: int = 32
    d: int = 3
    consensus_beta: float = 1.0
    t_final: float = 30.0
    betas: tuple = (1.0, 2.0, 4.0, 9.0, 16.0, 25.0, 36.0)
    count_time: float = 30.0
    seeds: int = 8
    spectral_beta: float = 1.0
    spectral_eigenvalues: tuple = (1.0, 0.5, 0.25)
    w1_sizes: tuple = (8, 16, 32, 64, 128, 256, 512)
    w1_sphere_sizes: tuple = (8, 16, 32, 64, 128)
    w1_seeds: int = 32
    w1_sphere_seeds: int = 16
    w1_beta: float = 1.0
    w1_time: float = 1.0
    w1_dt: float = 0.2
    train_tokens: int = 8
    train_neighbours: int = 3
    train_sequences: int = 1024
    train_steps: int = 600
    train_lr: float = 0.03
    train_restarts: int = 4


QUICK = Config(kuramoto_betas=(0.0, 1.0, 9.0), betas=(1.0, 4.0, 9.0, 16.0, 36.0), seeds=2,
               w1_sizes=(8, 32, 128), w1_sphere_sizes=(8, 32, 128), w1_seeds=32, w1_sphere_seeds=8,
               train_sequences=256, train_steps=200)
FULL = Config()


# --- the trained attention layer -------------------------------------------------------------------

def sphere_tokens(key, shape) -> jax.Array:
    """Uniform random points on $S^{d-1}$: an array of `shape` $= (\\dots, d)$, normalised rows."""
    x = jax.random.normal(key, shape)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def neighbour_task(key, sequences: int, tokens: int, d: int, k: int):
    r"""The synthetic sequence task: `sequences` sequences of `tokens` uniform tokens on $S^{d-1}$;
    the target of token $i$ is the normalised mean of its `k` most aligned tokens (itself
    included): $y_i = \sum_{j \in N_k(i)} x_j / \|\sum_{j \in N_k(i)} x_j\|$.

    **Returns:** `(x, y)`, both of shape `(sequences, tokens, d)`."""
    x = sphere_tokens(key, (sequences, tokens, d))
    cos = jnp.einsum("mid,mjd->mij", x, x)
    kth = jnp.sort(cos, axis=-1)[..., -k][..., None]
    y = jnp.einsum("mij,mjd->mid", (cos >= kth).astype(x.dtype), x)
    return x, y / jnp.linalg.norm(y, axis=-1, keepdims=True)


def attention_layer(params: dict, x: jax.Array) -> jax.Array:
    r"""One softmax attention head: $\mathrm{out}_i = \sum_j \mathrm{softmax}_j(\langle Q x_i, K x_j
    \rangle)\, V x_j$ on `x` of shape `(..., n, d)`; `params` holds the `(d, d)` matrices `"Q"`, `"K"`,
    `"V"` (the temperature is inside $Q^\top K$: the field runs them at $\beta = 1$)."""
    scores = jnp.einsum("...id,...jd->...ij", x @ params["Q"].T, x @ params["K"].T)
    return jax.nn.softmax(scores, axis=-1) @ (x @ params["V"].T)


@dataclasses.dataclass(frozen=True)
class TrainedAttention:
    """What [`train_attention`][jaxdyn.experiments.attention.train_attention] returns.

    - `Q`, `K`, `V`: the trained `(d, d)` matrices of the best restart (NumPy, float64).
    - `losses`: that restart's training loss at every Adam step (NumPy).
    - `final_losses`: the final training loss of every restart (NumPy, `(restarts,)`).
    - `test_loss`: the best restart's loss on a fresh draw of the task.
    - `identity_loss`: the best test loss of $Q = K = \\sqrt{b} I$, $V = I$ over a grid of $b$ (a
      baseline: isotropic attention at its best temperature, $V$ not trained).
    """

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    losses: np.ndarray
    final_losses: np.ndarray
    test_loss: float
    identity_loss: float

    def field(self, **kwargs):
        """The trained layer as a [`SelfAttention`][jaxdyn.meanfield.SelfAttention] field at
        $\\beta = 1$ (its temperature is inside $Q^\\top K$); `kwargs` go to the constructor."""
        return mf.SelfAttention(jnp.asarray(self.Q), jnp.asarray(self.K), jnp.asarray(self.V),
                                **{"beta": 1.0, **kwargs})


def train_attention(key, *, d: int = 3, tokens: int = 8, neighbours: int = 3, sequences: int = 1024,
                    steps: int = 600, lr: float = 0.03, restarts: int = 4) -> TrainedAttention:
    r"""Train one softmax attention head ([`attention_layer`][jaxdyn.experiments.attention.attention_layer])
    on [`neighbour_task`][jaxdyn.experiments.attention.neighbour_task] with full-batch Adam (float64
    when `jax_enable_x64` is on), loss $\frac{1}{mn}\sum \|\mathrm{out}_i - y_i\|^2$, from `restarts`
    random initialisations ($Q, K, V$ with i.i.d. $N(0, 1/d)$ entries; trained together under
    `vmap`), keeping the one with the lowest final training loss: many initialisations end in a
    local minimum where $Q^\top K$ keeps a negative eigenvalue.

    **Arguments:** `key` (a JAX key), the task's sizes (`d`, `tokens` per sequence, `neighbours` $k$,
    `sequences` $m$), the number of Adam `steps`, the learning rate `lr`, the number of `restarts`.

    **Returns:** a [`TrainedAttention`][jaxdyn.experiments.attention.TrainedAttention]."""
    import optax

    kx, kt, kp = jax.random.split(key, 3)
    x, y = neighbour_task(kx, sequences, tokens, d, neighbours)
    xt, yt = neighbour_task(kt, sequences, tokens, d, neighbours)
    params = {name: jax.random.normal(k, (restarts, d, d)) / np.sqrt(d)
              for name, k in zip("QKV", jax.random.split(kp, 3))}

    def loss(p, x, y):
        return jnp.mean(jnp.sum((attention_layer(p, x) - y) ** 2, axis=-1))

    opt = optax.adam(lr)

    @jax.jit
    @jax.vmap
    def train(params):
        def step(carry, _):
            p, state = carry
            value, grad = jax.value_and_grad(loss)(p, x, y)
            updates, state = opt.update(grad, state, p)
            return (optax.apply_updates(p, updates), state), value

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return p, losses

    params, losses = train(params)
    final = np.asarray(losses[:, -1])
    best = int(np.argmin(final))
    params = {k: v[best] for k, v in params.items()}
    eye = jnp.eye(d)
    identity = min(float(loss({"Q": np.sqrt(b) * eye, "K": np.sqrt(b) * eye, "V": eye}, xt, yt))
                   for b in np.linspace(0.5, 10.0, 20))
    return TrainedAttention(*(np.asarray(params[n]) for n in "QKV"), np.asarray(losses[best]), final,
                            float(loss(params, xt, yt)), identity)


def isotropy(a) -> tuple[float, float]:
    r"""The multiple $c = \operatorname{tr}(A)/d$ of $I$ nearest to `a` and the relative distance
    $\|A - cI\|_F / \|A\|_F$."""
    a = np.asarray(a, dtype=float)
    c = float(np.trace(a) / a.shape[0])
    return c, float(np.linalg.norm(a - c * np.eye(a.shape[0])) / np.linalg.norm(a))


# --- the numerics: one projected RK4 solve, cluster counts, W1 ---------------------------------------

def _solve(field, x0, t1: float, dt: float, n_save: int):
    r"""Tokens at `n_save` equally spaced times in $[0, t_1]$ (the first is `x0`): classical RK4 with
    step $\approx$ `dt` (a whole number of steps between save times), each step retracted onto the
    sphere, $x_i \leftarrow x_i / |x_i|$: the scheme of
    [`Projected`][jaxdyn.meanfield.Projected]`(`[`RK4`][jaxdyn.meanfield.RK4]`())`, written as one
    `lax.scan` because it compiles in a fraction of the time of a diffrax solve (this experiment
    compiles one solve per token count; equal to [`jaxdyn.meanfield.simulate`][] with that solver to
    rounding: tests/test_experiments_attention.py)."""
    per = max(1, int(round(t1 / (n_save - 1) / dt)))
    h = t1 / ((n_save - 1) * per)

    def step(x, _):
        k1 = field(0.0, x)
        k2 = field(0.0, x + 0.5 * h * k1)
        k3 = field(0.0, x + 0.5 * h * k2)
        k4 = field(0.0, x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True), None

    def segment(x, _):
        x = jax.lax.scan(step, x, None, length=per)[0]
        return x, x

    x0 = jnp.asarray(x0)
    return jnp.concatenate([x0[None], jax.lax.scan(segment, x0, None, length=n_save - 1)[1]])


def _count(x) -> int:
    """The number of clusters of one token cloud (`mf.cluster_count`'s default tolerance)."""
    return int(mf.cluster_count(x))


def _mean_norm(xs):
    """$\\|\\frac1n \\sum_i x_i\\|$ along the last two axes."""
    return np.linalg.norm(np.asarray(xs).mean(axis=-2), axis=-1)


def _angles(x):
    x = np.asarray(x)
    return np.arctan2(x[..., 1], x[..., 0])


def kuramoto_gap(cfg: Config, key) -> dict:
    r"""Largest $|\dot\theta|$ difference between $d = 2$ uniform attention ($Q = K = V = I$) and
    Kuramoto with $g(\phi) = e^{\beta\cos\phi}\sin\phi$, for every $\beta$ in `kuramoto_betas`; and at
    $\beta = 0$ against the classical Kuramoto model ($g = \sin$, $K = 1$)."""
    n = cfg.kuramoto_n
    theta = jax.random.uniform(key, (n,), maxval=2 * np.pi)
    x = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
    tangent = jnp.stack([-jnp.sin(theta), jnp.cos(theta)], axis=1)
    eye = jnp.eye(2)
    gaps, scale = {}, {}
    for beta in cfg.kuramoto_betas:
        att = mf.SelfAttention(eye, eye, eye, beta=beta, normalisation="uniform")
        dtheta = jnp.sum(att(0.0, x, None) * tangent, axis=1)
        g = lambda phi, b=beta: jnp.exp(b * jnp.cos(phi)) * jnp.sin(phi)
        kura = mf.Kuramoto(jnp.zeros(n), 1.0, g=g)(0.0, theta, None)
        gaps[f"{beta:g}"] = float(jnp.max(jnp.abs(dtheta - kura)))
        scale[f"{beta:g}"] = float(jnp.max(jnp.abs(kura)))
    classical = float(jnp.max(jnp.abs(
        jnp.sum(mf.SelfAttention(eye, eye, eye, beta=0.0, normalisation="uniform")(0.0, x, None) * tangent,
                axis=1) - mf.Kuramoto(jnp.zeros(n), 1.0)(0.0, theta, None))))
    return {"n": n, "betas": list(cfg.kuramoto_betas), "max_difference": gaps, "max_abs_field": scale,
            "beta0_vs_classical": classical}


def circle_run(cfg: Config, key):
    """Tokens on the circle ($d = 2$, softmax, $Q = K = V = I$) over time."""
    x0 = sphere_tokens(key, (cfg.circle_n, 2))
    eye = jnp.eye(2)
    xs = _solve(mf.SelfAttention(eye, eye, eye, beta=cfg.circle_beta), x0, cfg.t_final, cfg.dt, 121)
    return np.linspace(0.0, cfg.t_final, 121), np.asarray(xs)


def beta_sweep(cfg: Config, key):
    r"""Cluster counts over time for every $\beta$ in `betas` and `seeds` random initial clouds
    ($Q = K = V = I$, $d$, $n$ of the config); one compiled solve for every $\beta$ (an array leaf)."""
    eye = jnp.eye(cfg.d)
    n_save = 61
    ts = np.linspace(0.0, cfg.t_final, n_save)
    x0s = [sphere_tokens(k, (cfg.n, cfg.d)) for k in jax.random.split(key, cfg.seeds)]

    @jax.jit
    def one(beta, x0):
        return _solve(mf.SelfAttention(eye, eye, eye, beta=beta), x0, cfg.t_final, cfg.dt, n_save)

    counts = np.zeros((len(cfg.betas), cfg.seeds, n_save), dtype=int)
    norms = np.zeros((len(cfg.betas), cfg.seeds, n_save))
    examples = {}
    for i, beta in enumerate(cfg.betas):
        for s, x0 in enumerate(x0s):
            xs = np.asarray(one(jnp.asarray(beta, dtype=float), x0))
            counts[i, s] = [_count(x) for x in xs]
            norms[i, s] = _mean_norm(xs)
            if s == 0:
                examples[beta] = xs
    return ts, counts, norms, examples


def spectral(cfg: Config, key) -> dict:
    r"""Spectral selection with $Q = I$, $K = V$ (so $Q^\top K = V = V^\top$): $V$ with eigenvalues
    `spectral_eigenvalues` (one dominant positive) and its negative (negative definite), in a random
    orthonormal eigenbasis; the alignment $\langle x_i, v\rangle$ with the selected eigenvector."""
    kb, kx = jax.random.split(key)
    basis, _ = jnp.linalg.qr(jax.random.normal(kb, (cfg.d, cfg.d)))
    lam = jnp.asarray(cfg.spectral_eigenvalues, dtype=float)
    x0 = sphere_tokens(kx, (cfg.n, cfg.d))
    n_save = 61
    out, traj = {}, {}
    for name, sign in (("positive", 1.0), ("negative", -1.0)):
        v_mat = sign * (basis * lam) @ basis.T
        field = mf.SelfAttention(jnp.eye(cfg.d), v_mat, v_mat, beta=cfg.spectral_beta)
        xs = np.asarray(_solve(field, x0, cfg.t_final, cfg.dt, n_save))
        vec = np.asarray(basis[:, 0])  # the dominant (positive case) / most negative (negative case) one
        proj = xs @ vec
        final = proj[-1]
        out[name] = {"eigenvalues": [float(sign * v) for v in cfg.spectral_eigenvalues],
                     "min_abs_alignment": float(np.min(np.abs(final))),
                     "mean_abs_alignment": float(np.mean(np.abs(final))),
                     "fraction_positive": float(np.mean(final > 0)),
                     "clusters": _count(xs[-1]), "mean_token_norm": float(_mean_norm(xs[-1]))}
        traj[name] = proj
    return {"beta": cfg.spectral_beta, "n": cfg.n, "d": cfg.d, "time": cfg.t_final, **out}, \
        (np.linspace(0.0, cfg.t_final, n_save), traj)


def w1_limit(cfg: Config, key) -> dict:
    r"""$W_1$ between $n$ and $4n$ tokens after the flow ($Q = K = V = I$, softmax, $\beta$ =
    `w1_beta`) ran to `w1_time`, both clouds i.i.d. from the law of $(2 e_1 + g)/|2 e_1 + g|$ ($g$
    standard Gaussian), `w1_seeds` draws per $n$; on the circle (exact $W_1$,
    [`jaxdyn.meanfield.w1_circle`][]) and on $S^2$ (exact, an assignment:
    [`jaxdyn.meanfield.w1_tokens`][]). The same measurement as [`jaxdyn.meanfield.token_w1_rate`][],
    with the draws of one size solved together (`vmap`, one compilation per token count)."""
    out = {}
    n_steps = max(1, int(round(cfg.w1_time / cfg.w1_dt)))
    for label, d, sizes, seeds, k in (("circle", 2, cfg.w1_sizes, cfg.w1_seeds, 0),
                                      ("sphere", 3, cfg.w1_sphere_sizes, cfg.w1_sphere_seeds, 1)):
        eye = jnp.eye(d)
        field = mf.SelfAttention(eye, eye, eye, beta=cfg.w1_beta)
        solve = jax.jit(jax.vmap(lambda x0, field=field: _solve(field, x0, cfg.w1_time, cfg.w1_time / n_steps,
                                                                 2)[-1]))
        # the draws by NumPy: jax.random compiles one sampler per shape (8 s of this stage on 2 cores)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(key, k))))
        w, w0 = np.zeros((len(sizes), seeds)), np.zeros((len(sizes), seeds))
        for i, n in enumerate(sizes):
            clouds = []
            for m in (n, 4 * n):
                g = rng.standard_normal((seeds, m, d)) + 2.0 * np.eye(d)[0]
                x0 = g / np.linalg.norm(g, axis=-1, keepdims=True)
                clouds.append((x0, np.asarray(solve(jnp.asarray(x0)))))
            for s in range(seeds):
                w0[i, s] = _w1(clouds[0][0][s], clouds[1][0][s])
                w[i, s] = _w1(clouds[0][1][s], clouds[1][1][s])
        out[label] = {"n": list(sizes), "mean": w.mean(1), "stderr": w.std(1, ddof=1) / np.sqrt(seeds),
                      "seeds": seeds, "mean_t0": w0.mean(1),
                      "slope": float(np.polyfit(np.log(sizes), np.log(w.mean(1)), 1)[0]),
                      "slope_t0": float(np.polyfit(np.log(sizes), np.log(w0.mean(1)), 1)[0])}
    return {"beta": cfg.w1_beta, "time": cfg.w1_time, "ratio": 4, **out}


def _w1(a, b) -> float:
    """Exact $W_1$ (geodesic) between two clouds of unit tokens: the circle formula for $d = 2$."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    if a.shape[-1] == 2:
        return float(mf.w1_circle(_angles(a), _angles(b)))
    return float(mf.w1_tokens(a, b))


def trained_dynamics(cfg: Config, key):
    r"""Train the layer, then run its $Q, K, V$ as a field next to $Q = K = V = I$ at $\beta = 1$
    and next to its isotropic surrogate ($Q = K = I$, $V = vI$, $\beta = \beta_{\mathrm{eff}}$)."""
    kt, kx = jax.random.split(key)
    tr = train_attention(kt, d=cfg.d, tokens=cfg.train_tokens, neighbours=cfg.train_neighbours,
                         sequences=cfg.train_sequences, steps=cfg.train_steps, lr=cfg.train_lr,
                         restarts=cfg.train_restarts)
    a = tr.Q.T @ tr.K
    b_eff, a_aniso = isotropy(a)
    v_eff, v_aniso = isotropy(tr.V)
    eye = jnp.eye(cfg.d)
    x0 = sphere_tokens(kx, (cfg.n, cfg.d))
    n_save = 61
    fields = {"trained": tr.field(), "identity": mf.SelfAttention(eye, eye, eye, beta=1.0),
              "surrogate": mf.SelfAttention(eye, eye, v_eff * eye, beta=b_eff)}
    runs = {k: np.asarray(_solve(f, x0, cfg.t_final, cfg.dt, n_save)) for k, f in fields.items()}
    ts = np.linspace(0.0, cfg.t_final, n_save)
    counts = {k: [_count(x) for x in xs] for k, xs in runs.items()}
    norms = {k: _mean_norm(xs) for k, xs in runs.items()}

    def first(k, pred):
        hit = [t for t, c in zip(ts, counts[k]) if pred(c)]
        return float(hit[0]) if hit else "not within the run"

    losses = tr.losses
    metrics = {
        "initial_loss": float(losses[0]), "final_loss": float(losses[-1]),
        "loss_factor": float(losses[0] / losses[-1]), "test_loss": tr.test_loss,
        "restarts_final_losses": tr.final_losses,
        "identity_attention_best_test_loss": tr.identity_loss,
        "QtK": a, "V": tr.V, "beta_eff": b_eff, "QtK_anisotropy": a_aniso, "v_eff": v_eff,
        "V_anisotropy": v_aniso, "QtK_eigenvalues": np.sort(np.linalg.eigvals(a).real),
        "V_eigenvalues": np.sort(np.linalg.eigvals(tr.V).real),
        "max_order_gap_to_surrogate": float(np.max(np.abs(norms["trained"] - norms["surrogate"]))),
        "max_token_distance_to_surrogate": float(np.max(np.linalg.norm(runs["trained"] - runs["surrogate"],
                                                                       axis=-1))),
        "final_mean_token_norm": {k: float(v[-1]) for k, v in norms.items()},
        "final_clusters": {k: int(v[-1]) for k, v in counts.items()},
        "time_to_one_cluster": {k: first(k, lambda c: c == 1) for k in runs},
        "time_to_mean_norm_0.99": {k: (float(ts[np.argmax(norms[k] >= 0.99)]) if np.any(norms[k] >= 0.99)
                                       else "not within the run") for k in runs},
        "sizes": {"d": cfg.d, "tokens": cfg.train_tokens, "neighbours": cfg.train_neighbours,
                  "sequences": cfg.train_sequences, "steps": cfg.train_steps, "n_dynamics": cfg.n},
    }
    return metrics, (ts, losses, runs, counts, norms)


def run(*, quick: bool, seed: int, progress: bool) -> ExperimentResult:
    """Run the experiment (see the module docstring); `quick` selects `QUICK` budgets; `progress`
    shows a bar over its six stages."""
    cfg = QUICK if quick else FULL
    keys = jax.random.split(jax.random.key(seed), 6)
    timings: dict[str, float] = {}
    with stages(progress, 6, NAME) as stage:
        stage("Kuramoto on the circle")
        t0 = time.perf_counter()
        kura = kuramoto_gap(cfg, keys[0])
        circle = circle_run(cfg, keys[1])
        timings["circle"] = round(time.perf_counter() - t0, 2)

        stage("beta sweep")
        t0 = time.perf_counter()
        ts, counts, norms, examples = beta_sweep(cfg, keys[2])
        timings["beta_sweep"] = round(time.perf_counter() - t0, 2)

        stage("spectral selection")
        t0 = time.perf_counter()
        spec, spec_traj = spectral(cfg, keys[3])
        timings["spectral"] = round(time.perf_counter() - t0, 2)

        stage("W1 limit")
        t0 = time.perf_counter()
        w1 = w1_limit(cfg, keys[4])
        timings["w1"] = round(time.perf_counter() - t0, 2)

        stage("trained attention")
        t0 = time.perf_counter()
        trained, trained_parts = trained_dynamics(cfg, keys[5])
        timings["trained"] = round(time.perf_counter() - t0, 2)

        stage("figures")
    i_count = int(np.argmin(np.abs(ts - cfg.count_time)))
    i_small = cfg.betas.index(cfg.consensus_beta)  # the consensus beta is one of the sweep's
    metrics = {
        "quick": quick, "seed": seed, "config": dataclasses.asdict(cfg), "timings_s": timings,
        "kuramoto": kura,
        "consensus": {"beta": cfg.consensus_beta, "time": cfg.t_final, "n": cfg.n, "d": cfg.d,
                      "seeds": cfg.seeds, "min_mean_token_norm": float(np.min(norms[i_small, :, -1])),
                      "final_clusters": counts[i_small, :, -1]},
        "metastable": {"betas": list(cfg.betas), "time": float(ts[i_count]), "n": cfg.n, "d": cfg.d,
                       "seeds": cfg.seeds, "counts": counts[:, :, i_count],
                       "counts_mean": counts[:, :, i_count].mean(1),
                       "counts_mean_half_time": counts[:, :, i_count // 2].mean(1)},
        "spectral": spec,
        "w1": w1,
        "trained": trained,
    }
    figs = _figures(cfg, metrics, circle, (ts, counts, norms, examples), spec_traj, trained_parts)
    return ExperimentResult(NAME, TITLE, _summary(cfg, metrics), metrics, figs, question=QUESTION,
                            claims=_claims(cfg, metrics))


def _claims(cfg: Config, mt: dict) -> tuple[Claim, ...]:
    """The experiment's claims from its metrics (a pure function: tested on synthetic metrics)."""
    ku, co, me, sp, w1, tr = (mt[k] for k in ("kuramoto", "consensus", "metastable", "spectral", "w1",
                                              "trained"))
    gaps = ku["max_difference"]
    cases = [g <= KURAMOTO_TOLERANCE for g in gaps.values()]
    cases.append(ku["beta0_vs_classical"] <= KURAMOTO_TOLERANCE)
    bad = [f"beta = {b}" for b, g in gaps.items() if g > KURAMOTO_TOLERANCE]
    if ku["beta0_vs_classical"] > KURAMOTO_TOLERANCE:
        bad.append("beta = 0 against the classical model")
    kuramoto = Claim.check(
        "For $d = 2$, $Q = K = V = I$ and uniform normalisation the tokens' angles solve the Kuramoto "
        "model with identical frequencies and coupling function $g(\\phi) = e^{\\beta\\cos\\phi}\\sin\\phi$ "
        "(the classical all-to-all model with $K = 1$ at $\\beta = 0$).",
        f"{GESHKOVSKI}, Sec. on the circle; the mission's paper (Chemnitz, Engel, Kuehn, Kuntz 2025), "
        "large networks as Kuramoto-type particle systems",
        f"$\\max_i |\\dot\\theta_i^{{\\mathrm{{attention}}}} - \\dot\\theta_i^{{\\mathrm{{Kuramoto}}}}| \\le "
        f"{KURAMOTO_TOLERANCE:g}$ at $n = {ku['n']}$ random angles, for every $\\beta$ in {ku['betas']} and "
        "at $\\beta = 0$ against `Kuramoto` with $g = \\sin$",
        {**{f"beta = {b}": g for b, g in gaps.items()}, "beta = 0 vs classical": ku["beta0_vs_classical"]},
        cases, why="the fields differ beyond rounding at " + ", ".join(bad) + ".")

    ok = co["min_mean_token_norm"] >= 1 - CONSENSUS
    consensus = Claim.check(
        "$Q = K = V = I$ on $S^{d-1}$: at small $\\beta$ the tokens converge to a single cluster "
        "(consensus; the mean token's norm tends to 1).",
        f"{GESHKOVSKI}, consensus theorems for $\\beta$ small",
        f"$\\min_{{\\mathrm{{seeds}}}} \\|\\frac1n\\sum_i x_i(T)\\| \\ge 1 - {CONSENSUS:g}$ at $\\beta = "
        f"{co['beta']:g}$, $T = {co['time']:g}$ ($n = {co['n']}$, $d = {co['d']}$, {co['seeds']} random "
        "initial clouds)",
        {"min mean-token norm": co["min_mean_token_norm"], "clusters at T": co["final_clusters"]},
        ok, why=f"the smallest mean-token norm at $T$ is {co['min_mean_token_norm']:.4f}.")

    counts = np.asarray(me["counts_mean"], dtype=float)
    monotone = bool(np.all(np.diff(counts) >= 0))
    several = bool(counts[-1] > 1)
    metastable = Claim.check(
        "At large $\\beta$ the tokens pass through a long metastable phase of several clusters before "
        "merging; at a fixed time the number of clusters grows with $\\beta$.",
        f"{GESHKOVSKI}, metastability",
        f"the cluster count at $t = {me['time']:g}$ (single linkage at chordal distance $10^{{-2}}$, mean "
        f"over {me['seeds']} initial clouds, $n = {me['n']}$, $d = {me['d']}$) is non-decreasing along "
        f"$\\beta$ = {me['betas']} and $> 1$ at the largest $\\beta$",
        {"beta": me["betas"], "mean count": me["counts_mean"]}, [monotone, several],
        why=("the mean count decreases somewhere along the $\\beta$ grid" if not monotone else "")
        + ("; " if not monotone and not several else "")
        + ("one cluster at the largest $\\beta$" if not several else "") + ".")

    pos, neg = sp["positive"], sp["negative"]
    pos_ok = pos["min_abs_alignment"] >= ALIGNMENT
    neg_ok = neg["min_abs_alignment"] >= ALIGNMENT
    split = min(neg["fraction_positive"], 1 - neg["fraction_positive"]) >= SPLIT_FRACTION
    labels = ("positive: alignment", "negative: alignment", "negative: split")
    failed = [lab for lab, c in zip(labels, (pos_ok, neg_ok, split)) if not c]
    spectral_claim = Claim.check(
        "With $Q^\\top K = V = V^\\top$ the flow selects an eigendirection of $V$: alignment with the "
        "dominant eigenvector's axis when one positive eigenvalue dominates all others in modulus; a "
        "sign split (two antipodal groups) along the most negative eigendirection when $V$ is negative "
        "definite.",
        "Kuehn & Yoon 2026, \"Spectral selection in symmetric self-attention dynamics\" (arXiv 2604.26085)",
        f"$Q = I$, $K = V$, eigenvalues $\\pm${list(cfg.spectral_eigenvalues)}, $\\beta = {sp['beta']:g}$, "
        f"$T = {sp['time']:g}$: every $|\\langle x_i(T), v\\rangle| \\ge {ALIGNMENT:g}$ in both cases, and "
        f"for negative definite $V$ each sign of $\\langle x_i, v\\rangle$ holding $\\ge "
        f"{100 * SPLIT_FRACTION:g}$ \\% of the tokens (for positive $V$ the signs are reported, not judged: "
        "the antipodal pair of clusters on the dominant axis is also locally stable)",
        {"positive V": {k: pos[k] for k in ("min_abs_alignment", "fraction_positive", "clusters")},
         "negative V": {k: neg[k] for k in ("min_abs_alignment", "fraction_positive", "clusters")}},
        [pos_ok, neg_ok, split], why="fails for " + ", ".join(failed) + ".")

    slope = w1["circle"]["slope"]
    w1_claim = Claim.check(
        "The empirical measure of the tokens follows a Vlasov (mean-field) equation: clouds of $n$ and "
        "$4n$ i.i.d. tokens stay $W_1$-close at the sampling rate, $n^{-1/2}$ on the circle.",
        f"{GESHKOVSKI}, mean-field limit; Fournier & Guillin 2015 (rate of empirical measures)",
        f"fitted slope of $\\log W_1$ against $\\log n$ at $t = {w1['time']:g}$ on the circle within "
        f"${RATE:g} \\pm {RATE_TOLERANCE:g}$ ({w1['circle']['seeds']} draws per $n$; the $S^2$ slope is "
        "reported, not judged: its rate has a $\\sqrt{\\log n}$ factor)",
        {"circle slope": slope, "circle slope at t = 0": w1["circle"]["slope_t0"],
         "sphere slope": w1["sphere"]["slope"], "sphere slope at t = 0": w1["sphere"]["slope_t0"],
         "n (circle)": w1["circle"]["n"]},
        abs(slope - RATE) <= RATE_TOLERANCE,
        why=f"the fitted circle slope {slope:.2f} is outside the interval.")

    loss_ok = tr["loss_factor"] >= LOSS_FACTOR
    iso_ok = max(tr["QtK_anisotropy"], tr["V_anisotropy"]) <= ISOTROPY
    sur_ok = tr["max_order_gap_to_surrogate"] <= SURROGATE
    cons_ok = tr["final_mean_token_norm"]["trained"] >= 1 - CONSENSUS
    labels = ("loss", "isotropy", "surrogate", "consensus")
    failed = [lab for lab, c in zip(labels, (loss_ok, iso_ok, sur_ok, cons_ok)) if not c]
    trained_claim = Claim.check(
        "An attention head trained to average each token with its nearest tokens learns an isotropic "
        "attention, $Q^\\top K \\approx \\beta_{\\mathrm{eff}} I$, $V \\approx v I$: as a field its tokens "
        "move like those of $Q = K = V = I$ at inverse temperature $\\beta_{\\mathrm{eff}}$ with time "
        "scaled by $v$, and reach consensus.",
        f"this experiment's hypothesis, from the isotropy of the task; {GESHKOVSKI} for the dynamics "
        "of $Q = K = V = I$",
        f"training loss reduced by a factor $\\ge {LOSS_FACTOR:g}$; relative Frobenius distances of "
        f"$Q^\\top K$ and $V$ to multiples of $I$ $\\le {ISOTROPY:g}$; order parameter $R(t)$ within "
        f"${SURROGATE:g}$ of the surrogate's over $[0, {cfg.t_final:g}]$; mean-token norm "
        f"$\\ge 1 - {CONSENSUS:g}$ at $T = {cfg.t_final:g}$",
        {"loss factor": tr["loss_factor"], "beta_eff": tr["beta_eff"], "v": tr["v_eff"],
         "QtK anisotropy": tr["QtK_anisotropy"], "V anisotropy": tr["V_anisotropy"],
         "max |R - R_surrogate|": tr["max_order_gap_to_surrogate"],
         "mean-token norm at T": tr["final_mean_token_norm"]["trained"]},
        [loss_ok, iso_ok, sur_ok, cons_ok], why="fails for " + ", ".join(failed) + ".")
    return (kuramoto, consensus, metastable, spectral_claim, w1_claim, trained_claim)


def _summary(cfg: Config, mt: dict) -> str:
    ku, co, me, sp, w1, tr = (mt[k] for k in ("kuramoto", "consensus", "metastable", "spectral", "w1",
                                              "trained"))
    krows = ["| beta | max abs field difference | max abs field |", "|---|---|---|"]
    krows += [f"| {b} | {g:.1e} | {ku['max_abs_field'][b]:.3f} |" for b, g in ku["max_difference"].items()]
    mrows = [f"| beta | mean count at t = {me['time']:g} | mean count at t = {me['time'] / 2:g} | "
             "counts per seed |", "|---|---|---|---|"]
    mrows += [f"| {b:g} | {c:.2f} | {h:.2f} | {', '.join(str(int(v)) for v in per)} |" for b, c, h, per in
              zip(me["betas"], me["counts_mean"], me["counts_mean_half_time"], me["counts"])]
    srows = ["| V | eigenvalues | min abs alignment | mean abs alignment | fraction positive | clusters |",
             "|---|---|---|---|---|---|"]
    srows += [f"| {name} | {sp[name]['eigenvalues']} | {sp[name]['min_abs_alignment']:.4f} | "
              f"{sp[name]['mean_abs_alignment']:.4f} | {sp[name]['fraction_positive']:.2f} | "
              f"{sp[name]['clusters']} |" for name in ("positive", "negative")]
    wrows = [f"| n | W1 circle, t = 0 | W1 circle, t = {w1['time']:g} |", "|---|---|---|"]
    wrows += [f"| {n} | {a:.4f} | {b:.4f} ± {s:.4f} |" for n, a, b, s in
              zip(w1["circle"]["n"], w1["circle"]["mean_t0"], w1["circle"]["mean"], w1["circle"]["stderr"])]
    wsrows = [f"| n | W1 sphere, t = 0 | W1 sphere, t = {w1['time']:g} |", "|---|---|---|"]
    wsrows += [f"| {n} | {a:.4f} | {b:.4f} ± {s:.4f} |" for n, a, b, s in
               zip(w1["sphere"]["n"], w1["sphere"]["mean_t0"], w1["sphere"]["mean"], w1["sphere"]["stderr"])]
    trows = ["| field | clusters at T | mean-token norm at T | first time with one cluster | "
             "first time with norm >= 0.99 |", "|---|---|---|---|---|"]
    trows += [f"| {k} | {tr['final_clusters'][k]} | {tr['final_mean_token_norm'][k]:.4f} | "
              f"{fmt(tr['time_to_one_cluster'][k], '.1f')} | {fmt(tr['time_to_mean_norm_0.99'][k], '.1f')} |"
              for k in ("trained", "surrogate", "identity")]
    sz = tr["sizes"]
    paras = [
        f"**Tokens on the circle.** $d = 2$, $Q = K = V = I$, uniform normalisation, $n = {ku['n']}$ "
        "random angles: the attention field, read as angular velocities, against `Kuramoto` with "
        "$g(\\phi) = e^{\\beta\\cos\\phi}\\sin\\phi$; at $\\beta = 0$ against the classical model: "
        f"{ku['beta0_vs_classical']:.1e}. The figure shows $n = {cfg.circle_n}$ tokens on the circle "
        f"(softmax, $\\beta = {cfg.circle_beta:g}$) over time.",
        "\n".join(krows),
        f"**Consensus and metastability.** $d = {me['d']}$, $n = {me['n']}$, $Q = K = V = I$, softmax, "
        f"projected RK4 (RK4 steps of {cfg.dt:g}, each retracted onto the sphere), "
        f"{me['seeds']} random initial clouds. At $\\beta = {co['beta']:g}$ the smallest mean-token norm at "
        f"$T = {co['time']:g}$ is {co['min_mean_token_norm']:.6f}. Clusters: single linkage at chordal "
        "distance $10^{-2}$ (`cluster_count`).",
        "\n".join(mrows),
        f"**Spectral selection.** $Q = I$, $K = V$ symmetric (so $Q^\\top K = V$) with eigenvalues "
        f"$\\pm${list(cfg.spectral_eigenvalues)} in a random orthonormal basis, $\\beta = {sp['beta']:g}$, "
        f"$T = {sp['time']:g}$; alignment = $|\\langle x_i, v\\rangle|$ with $v$ the eigenvector of the "
        "eigenvalue largest in modulus.",
        "\n".join(srows),
        f"**Mean-field limit.** $W_1$ between $n$ and $4n$ tokens (softmax, $Q = K = V = I$, "
        f"$\\beta = {w1['beta']:g}$) at $t = {w1['time']:g}$, both clouds drawn i.i.d. from the law of "
        "$(2e_1 + g)/|2e_1 + g|$, $g$ standard Gaussian, "
        f"{w1['circle']['seeds']} draws per $n$ on the circle, {w1['sphere']['seeds']} on $S^2$ (the "
        "measurement of `token_w1_rate`; exact $W_1$: the circle formula, an assignment on $S^2$). Fitted "
        f"slopes: circle {w1['circle']['slope']:.3f} ({w1['circle']['slope_t0']:.3f} at "
        f"$t = 0$), sphere {w1['sphere']['slope']:.3f} ({w1['sphere']['slope_t0']:.3f} at $t = 0$; "
        "$\\sqrt{\\log n / n}$ is shallower than $n^{-1/2}$).",
        "\n".join(wrows),
        "\n".join(wsrows),
        f"**A trained attention layer.** One softmax head, $d = {sz['d']}$, trained with full-batch Adam "
        f"(float64, {sz['steps']} steps, {sz['sequences']} sequences of {sz['tokens']} uniform tokens on "
        f"$S^{{{sz['d'] - 1}}}$) to map each token to the normalised mean of its {sz['neighbours']} most "
        f"aligned tokens: training loss {tr['initial_loss']:.3f} -> {tr['final_loss']:.4f} (factor "
        f"{tr['loss_factor']:.1f}), test loss {tr['test_loss']:.4f} (isotropic attention $Q = K = "
        f"\\sqrt b I$, $V = I$ at its best $b$: {tr['identity_attention_best_test_loss']:.4f}). It learned "
        f"$Q^\\top K \\approx {tr['beta_eff']:.3f}\\, I$ (relative distance {tr['QtK_anisotropy']:.3f}; "
        f"eigenvalues {', '.join(f'{v:.3f}' for v in tr['QtK_eigenvalues'])}) and $V \\approx "
        f"{tr['v_eff']:.3f}\\, I$ (relative distance {tr['V_anisotropy']:.3f}). As a `SelfAttention` field "
        f"at $\\beta = 1$ ($n = {sz['n_dynamics']}$ random tokens) its order parameter $R(t)$ stays within "
        f"{tr['max_order_gap_to_surrogate']:.2e} of that of the isotropic surrogate ($Q = K = I$, "
        f"$V = {tr['v_eff']:.3f} I$, $\\beta = {tr['beta_eff']:.3f}$; the tokens themselves end up to "
        f"{tr['max_token_distance_to_surrogate']:.2f} apart: the consensus point is neutral); against "
        "$Q = K = V = I$ at $\\beta = 1$ from the same tokens:",
        "\n".join(trows),
    ]
    return "\n\n".join(paras) + "\n"


def _figures(cfg: Config, mt: dict, circle, sweep, spec_traj, trained_parts) -> dict:
    import matplotlib.pyplot as plt

    from ..plot import plot_cluster_counts, plot_tokens, plot_w1_convergence

    figs = {}
    ts_c, xs_c = circle
    figs["circle"] = plot_tokens(ts_c, xs_c, title=rf"$n = {cfg.circle_n}$ tokens on the circle ($d = 2$, "
                                 rf"$Q = K = V = I$, softmax, $\beta = {cfg.circle_beta:g}$)")

    ts, counts, norms, examples = sweep
    b_show = max(b for b in cfg.betas if b <= 9.0)
    figs["sphere"] = plot_tokens(ts, examples[b_show], times=(0.0, 2.0, 8.0, cfg.t_final),
                                 labels=np.asarray(mf.cluster_labels(jnp.asarray(examples[b_show][-1]))),
                                 title=rf"$n = {cfg.n}$ tokens on $S^2$ ($Q = K = V = I$, softmax, "
                                 rf"$\beta = {b_show:g}$), coloured by their final cluster")

    me = mt["metastable"]
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), layout="constrained")
    plot_cluster_counts(ts, {rf"$\beta = {b:g}$": counts[i].mean(0) for i, b in enumerate(cfg.betas)},
                        ax=axes[0], title=f"Mean cluster count over time ({cfg.seeds} clouds, $n = {cfg.n}$)")
    axes[0].set_ylabel(f"number of clusters (mean over {cfg.seeds} clouds)")
    per = np.asarray(me["counts"], dtype=float)
    for s in range(per.shape[1]):
        axes[1].plot(me["betas"], per[:, s], "o", color="0.6", ms=4,
                     label="one initial cloud" if s == 0 else None)
    axes[1].plot(me["betas"], me["counts_mean"], "s-", color="C0", label=f"mean at $t = {me['time']:g}$")
    axes[1].plot(me["betas"], me["counts_mean_half_time"], "^--", color="C1",
                 label=f"mean at $t = {me['time'] / 2:g}$")
    axes[1].set_xscale("log")
    axes[1].set_xlabel(r"inverse temperature $\beta$")
    axes[1].set_ylabel("number of clusters")
    axes[1].set_title(r"Metastability: clusters at a fixed time against $\beta$")
    axes[1].grid(alpha=0.3, which="both")
    axes[1].legend(fontsize="small", loc="upper left")
    figs["clusters_vs_beta"] = fig

    ts_s, traj = spec_traj
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), layout="constrained", sharey=True)
    for ax, name in zip(axes, ("positive", "negative")):
        sp = mt["spectral"][name]
        ax.plot(ts_s, traj[name], color="C0" if name == "positive" else "C3", lw=0.8, alpha=0.7)
        ax.axhline(ALIGNMENT, color="k", ls=":", lw=1)
        ax.axhline(-ALIGNMENT, color="k", ls=":", lw=1, label=rf"$\pm${ALIGNMENT:g} (criterion)")
        ax.set_xlabel("time $t$")
        ax.set_title(("$V$ with a dominant positive eigenvalue" if name == "positive" else
                      "$V$ negative definite") + rf": eigenvalues {sp['eigenvalues']}", fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="center right")
    axes[0].set_ylabel(r"$\langle x_i(t), v\rangle$, $v$ the selected eigenvector")
    fig.suptitle(rf"Spectral selection, $Q^\top K = V = V^\top$ ($n = {cfg.n}$, $d = {cfg.d}$, "
                 rf"$\beta = {cfg.spectral_beta:g}$): every token's component along $v$")
    figs["spectral_selection"] = fig

    w1 = mt["w1"]
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), layout="constrained")
    for ax, label, name in ((axes[0], "circle", "the circle ($d = 2$)"),
                            (axes[1], "sphere", "$S^2$ ($d = 3$)")):
        plot_w1_convergence(w1[label]["n"], w1[label]["mean"], stderr=w1[label]["stderr"], ax=ax,
                            xlabel="number of tokens $n$",
                            ylabel=rf"$W_1$ between $n$ and $4n$ tokens at $t = {w1['time']:g}$ (rad)",
                            title=f"Mean-field limit on {name}")
    figs["w1_limit"] = fig

    ts_t, losses, runs, counts_t, norms_t = trained_parts
    fig, axes = plt.subplots(1, 3, figsize=(14.0, 4.0), layout="constrained")
    axes[0].semilogy(np.arange(losses.size), losses, color="C0")
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel(r"training loss $\frac{1}{mn}\sum \|\mathrm{out}_i - y_i\|^2$")
    axes[0].set_title("Training the attention head")
    axes[0].grid(alpha=0.3, which="both")
    styles = {"trained": ("C3", "-", "trained $Q, K, V$ ($\\beta = 1$)"),
              "surrogate": ("k", ":", r"$Q = K = I$, $V = v I$, $\beta = \beta_{\mathrm{eff}}$"),
              "identity": ("C0", "--", r"$Q = K = V = I$, $\beta = 1$")}
    for k, (c, ls, lab) in styles.items():
        axes[1].step(ts_t, counts_t[k], where="post", color=c, ls=ls, label=lab)
        axes[2].plot(ts_t, np.maximum(1 - norms_t[k], 1e-16), color=c, ls=ls, label=lab)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("time $t$")
    axes[1].set_ylabel("number of clusters")
    axes[1].set_title(f"Token dynamics of the trained head ($n = {cfg.n}$)")
    axes[1].grid(alpha=0.3, which="both")
    axes[1].legend(fontsize="small")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("time $t$")
    axes[2].set_ylabel(r"$1 - \|\frac{1}{n} \sum_i x_i\|$")
    axes[2].set_title("Approach to consensus (floor: rounding)")
    axes[2].grid(alpha=0.3, which="both")
    figs["trained_attention"] = fig
    return figs
