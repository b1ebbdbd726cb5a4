r"""Analyses of token dynamics (self-attention as interacting particles): clusters, the order
parameter on the sphere, pairwise alignments, the $W_1$ distance between token clouds and the
stability of clustered states.

**Clusters.** Tokens $x_1, \dots, x_n \in \mathbb R^d$ are linked when $|x_i - x_j| \le$ `tol`
(Euclidean distance: the chordal distance on the sphere); the clusters are the connected components
of that graph (single linkage), found by min-label propagation with pointer jumping inside a
`lax.while_loop` (jit-able, vmap-able; $O(n^2)$ memory per sweep, at most as many sweeps as the
longest chain of links). The default `tol = 1e-2` (chordal, i.e. an angle of about 0.01 rad): in
the attention dynamics a cluster's diameter contracts exponentially (rate 1 for softmax,
$e^\beta$ for uniform weights at consensus; see [`cluster_stability`][]) while distinct clusters
of the metastable phase sit $O(1)$ apart, so the count hardly depends on `tol` once the clusters
have formed. Measured ($n = 32$, $d = 3$, $Q = K = V = I$, softmax, one seed, `tol` $= 10^{-4},
10^{-3}, 10^{-2}, 0.1, 0.3$): for $\beta \le 16$ the counts at $t = 40$ agree for every `tol`
(clusters at least 1.0 apart), at $t = 20$ for $\beta \le 9$ (for $\beta = 16$: 8, 7, 6, 6, 6: two
clusters still collapsing); at $\beta = 25$ two clusters in the middle of a slow merge (0.07
apart) make the counts at $t = 40$ 12, 11, 11, 10, 10. Too large a `tol` merges neighbouring
clusters, too small a one counts a still-collapsing cluster as several (at $t = 10$ with
$\beta = 1$: 30 clusters at $10^{-4}$, 1 at $10^{-2}$).

**Order parameter.** $R = |\frac1n \sum_i x_i|$: for unit tokens in $d = 2$,
$x_i = (\cos\theta_i, \sin\theta_i)$, it is Kuramoto's $r = |\frac1n\sum_j e^{i\theta_j}|$; $R = 1$
exactly at consensus.

**Mean-field limit.** The empirical measure $\mu^n_t = \frac1n \sum_i \delta_{x_i(t)}$ of the
tokens solves (weakly) the Vlasov equation $\partial_t \mu + \nabla\cdot(\mu\, \mathcal X[\mu]) = 0$
with $\mathcal X[\mu](x) = P_x \int w(x, y)\, V y\, d\mu(y)$ ($w$ the attention kernel, normalised by
$\int e^{\beta\langle Qx, Ky\rangle} d\mu(y)$ for softmax). Solutions started from $n$ and $4n$
i.i.d. samples of the same law stay $W_1$-close (Dobrushin's stability estimate): their distance
at a fixed time inherits the sampling rate, $n^{-1/2}$ on the circle, $\sqrt{\log n / n}$ on
$S^2$ ([`token_w1_rate`][] measures it). On the circle with $Q = K = V = I$ and uniform weights
the token dynamics is the Kuramoto model with $g(\phi) = e^{\beta\cos\phi}\sin\phi$; at $\beta = 0$
it is the all-to-all Kuramoto model with $K = 1$ and [`vlasov`][] (one cell) is its mean-field
solver; for $\beta > 0$ [`vlasov`][] (sine coupling only) does not apply and the particle system with
large $n$ is the reference.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import check_int, is_concrete
from .._results import RESULTS, AbstractResult, check_throw, message, raise_if_failed
from ._limits import w1_circle

_METRICS = ("geodesic", "chordal")


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _check_tol(tol, name: str = "tol") -> Array:
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating | np.integer | jax.Array):
        raise TypeError(f"`{name}` must be a positive float, got {type(tol).__name__}.")
    t = jnp.asarray(tol, dtype=float)
    if t.shape != ():
        raise ValueError(f"`{name}` must be a scalar, got shape {t.shape}.")
    if is_concrete(t) and not (np.isfinite(float(t)) and float(t) > 0):
        raise ValueError(f"`{name}` must be a finite float > 0, got {float(t)}.")
    return t


def _check_tokens(x, name: str, *, batch: bool = False) -> Array:
    """Tokens of shape `(n, d)` (`(..., n, d)` when `batch`), float, n >= 2, d >= 1."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    if jnp.iscomplexobj(x):
        raise TypeError(f"`{name}` must be real, got dtype {x.dtype}.")
    shape = "(..., n, d)" if batch else "(n, d)"
    if x.ndim < 2 or (not batch and x.ndim != 2):
        raise ValueError(f"`{name}` must have shape {shape} (n tokens in R^d), got {x.shape}.")
    if x.shape[-2] < 2:
        raise ValueError(f"`{name}` must hold n >= 2 tokens (shape {shape}), got {x.shape}.")
    if x.shape[-1] < 1:
        raise ValueError(f"`{name}` must have d >= 1 coordinates, got {x.shape}.")
    return x


# ----------------------------------------------------------------------------------------------
# clusters
# ----------------------------------------------------------------------------------------------
def _labels_one(x: Array, tol: Array) -> Array:
    n = x.shape[0]
    sq = jnp.sum(x * x, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0.0)
    adj = d2 <= tol * tol
    idx = jnp.arange(n)

    def body(state):
        labels, _ = state
        new = jnp.min(jnp.where(adj, labels[None, :], n), axis=1)
        new = jnp.minimum(new, labels)
        new = new[new]  # pointer jumping: follow the label's own label
        return new, jnp.any(new != labels)

    labels, _ = jax.lax.while_loop(lambda s: s[1], body, (idx, jnp.array(True)))
    return labels


def _batched(fn, x: Array, tol: Array) -> Array:
    lead = x.shape[:-2]
    flat = x.reshape((-1, *x.shape[-2:]))
    out = jax.vmap(fn, in_axes=(0, None))(flat, tol)
    return out.reshape(lead + out.shape[1:])


@jax.jit
def _labels(x, tol):
    return _batched(_labels_one, x, tol)


@jax.jit
def _counts(x, tol):
    def one(y, t):
        labels = _labels_one(y, t)
        return jnp.sum(labels == jnp.arange(y.shape[0]))

    return _batched(one, x, tol)


def cluster_labels(x, *, tol=1e-2) -> Array:
    r"""The cluster of every token: tokens $i \sim j$ when $|x_i - x_j| \le$ `tol`, clusters the
    connected components (single linkage); each token gets the smallest index in its cluster.

    **Arguments:** `x`: tokens, shape `(n, d)` or a batch `(..., n, d)` (e.g. a trajectory
    `(T, n, d)`), $n \ge 2$; `tol`: the linking distance (> 0; default $10^{-2}$, chordal on the
    sphere: see the module docstring for why).

    **Returns:** integer labels of shape `x.shape[:-1]`. jit-able and vmap-able (a
    `lax.while_loop`; $O(n^2)$ memory). A non-finite token is linked to nothing (its own cluster).
    """
    x = _check_tokens(x, "x", batch=True)
    return _labels(x, _check_tol(tol))


def cluster_count(x, *, tol=1e-2) -> Array:
    r"""The number of clusters of the tokens `x` (see [`cluster_labels`][]): tokens closer than
    `tol` (Euclidean, i.e. chordal on the sphere) are in one cluster, and clusters are connected
    components (single linkage).

    **Arguments:** `x` of shape `(n, d)` or `(..., n, d)` ($n \ge 2$); `tol` > 0 (default
    $10^{-2}$: module docstring).

    **Returns:** an integer array of shape `x.shape[:-2]` (a scalar for one configuration).
    jit-able (`lax.while_loop`, no Python loop), vmap-able; $O(n^2)$ memory.

    **Example:** `cluster_count(jnp.array([[1., 0.], [1., 0.], [-1., 0.]]))` is 2.
    """
    x = _check_tokens(x, "x", batch=True)
    return _counts(x, _check_tol(tol))


# ----------------------------------------------------------------------------------------------
# clustering over time
# ----------------------------------------------------------------------------------------------
def mean_token_norm(x) -> Array:
    r"""The order parameter of tokens: $R = |\frac1n \sum_i x_i|$ for `x` of shape `(..., n, d)`
    (shape `x.shape[:-2]`). For unit tokens $R \in [0, 1]$, $R = 1$ at consensus, and in
    $d = 2$ it is Kuramoto's $r$ of the angles."""
    x = _check_tokens(x, "x", batch=True)
    return jnp.linalg.norm(jnp.mean(x, axis=-2), axis=-1)


def _alignment_histogram(x: Array, bins: int) -> Array:
    r"""The density histogram on $[-1, 1]$ (`bins` equal bins, the last one closed) of
    $\cos\angle(x_i, x_j)$, $i < j$ (the inner products of unit tokens): one scatter-add over the
    Gram matrix with the strict upper triangle as weights."""
    n = x.shape[0]
    u = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    g = jnp.clip(u @ u.T, -1.0, 1.0)
    b = jnp.clip(jnp.floor((g + 1.0) * (bins / 2.0)).astype(jnp.int32), 0, bins - 1)
    w = jnp.triu(jnp.ones((n, n), x.dtype), 1)
    counts = jnp.zeros(bins, x.dtype).at[b.ravel()].add(w.ravel())
    return counts / (n * (n - 1) / 2) * (bins / 2.0)


class ClusteringResult(AbstractResult):
    r"""The result of [`clustering`][]: how tokens gather into clusters over time.

    **Fields:**

    - `ts` (shape `(T,)`); `counts` (integer, `(T,)`: the number of clusters at each time, `-1`
      where the tokens are not finite); `order` (`(T,)`: the mean-token norm
      $R(t) = |\frac1n\sum_i x_i(t)|$, NaN where not finite).
    - `at` (`(H,)`: the save times of the histograms); `edges` (`(bins + 1,)`, on $[-1, 1]$);
      `histograms` (`(H, bins)`: the density of the pairwise alignments
      $\langle x_i, x_j\rangle / (|x_i||x_j|)$, $i < j$, at the times `at`).
    - `tol` (the linking distance); `n`, `d` (static); `result` (a [`jaxdyn.RESULTS`][] code:
      `successful`, or `nonfinite_state` when some tokens are NaN/inf).

    `.time_to(k)` is the first save time with at most `k` clusters (NaN if never);
    `.summary()` says the counts and $R$ at the start and end; `.plot()` draws the count, $R$ and
    the histograms.
    """

    ts: Array
    counts: Array
    order: Array
    at: Array
    edges: Array
    histograms: Array
    tol: Array
    result: RESULTS
    n: int = eqx.field(static=True)
    d: int = eqx.field(static=True)

    def time_to(self, k: int) -> float:
        """The first save time at which there are at most `k` clusters (NaN if never reached)."""
        k = check_int(k, "k", minimum=1)
        counts = np.asarray(self.counts)
        hit = np.nonzero((counts >= 0) & (counts <= k))[0]
        return float(np.asarray(self.ts)[hit[0]]) if hit.size else float("nan")

    def summary(self) -> str:
        """A few lines: tokens, tolerance, the cluster count and $R$ at the start and end, the time
        to consensus, and the result code."""
        ts, counts, order = np.asarray(self.ts), np.asarray(self.counts), np.asarray(self.order)
        head = (f"clustering: n = {self.n} tokens in R^{self.d}, {ts.shape[0]} save times on "
                f"[{ts[0]:.6g}, {ts[-1]:.6g}], tol = {float(self.tol):.3g}")
        if not bool(np.all(np.asarray(self.successful))):
            bad = int(np.sum(counts < 0))
            return f"{head}: FAILED ({bad} save times with non-finite tokens): {message(self.result)}"
        t1 = self.time_to(1)
        lines = [head + ": successful.",
                 f"  clusters {int(counts[0])} -> {int(counts[-1])}; mean-token norm R "
                 f"{order[0]:.4g} -> {order[-1]:.4g}",
                 "  one cluster (consensus) " + (f"from t = {t1:.6g}" if np.isfinite(t1) else "not reached")]
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """Three panels (a new figure when `ax` is `None`, or a sequence of three axes): the
        cluster count, the mean-token norm $R$, and the alignment histograms. Returns the figure."""
        from ..plot._attention import plot_clustering

        return plot_clustering(self, axes=ax, **kwargs)


def _nearest(ts: np.ndarray, at) -> np.ndarray:
    if at is None:
        idx = np.unique([0, (ts.shape[0] - 1) // 2, ts.shape[0] - 1])
    else:
        a = np.atleast_1d(np.asarray(at, dtype=float))
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"`at` must be None or a non-empty vector of times, got shape {a.shape}.")
        if not np.all(np.isfinite(a)) or np.any(a < ts[0]) or np.any(a > ts[-1]):
            raise ValueError(f"`at` must lie in [ts[0], ts[-1]] = [{ts[0]:.6g}, {ts[-1]:.6g}], got {a}.")
        idx = np.abs(ts[None, :] - a[:, None]).argmin(axis=1)
    return idx


@eqx.filter_jit
def _clustering_core(xs, tol, idx, bins: int):
    finite = jnp.all(jnp.isfinite(xs), axis=(1, 2))
    safe = jnp.where(finite[:, None, None], xs, 0.0)
    counts = jnp.where(finite, _counts(safe, tol), -1)
    order = jnp.where(finite, jnp.linalg.norm(jnp.mean(safe, axis=1), axis=-1), jnp.nan)
    edges = jnp.linspace(-1.0, 1.0, bins + 1)
    hists = jax.vmap(lambda x: _alignment_histogram(x, bins))(safe[idx])
    hists = jnp.where(finite[idx, None], hists, jnp.nan)
    return counts, order, edges, hists, finite


def clustering(ts, xs, *, tol=1e-2, bins: int = 40, at=None, throw: bool = True) -> ClusteringResult:
    r"""The clustering of tokens along a trajectory: cluster counts, the mean-token norm and the
    pairwise-alignment histograms.

    **Arguments:**

    - `ts`: the save times, shape `(T,)`, strictly increasing; `xs`: the tokens at those times,
      shape `(T, n, d)` (e.g. `simulate(SelfAttention(...), x0, ts).ys`), $n \ge 2$.
    - `tol`: the linking distance of [`cluster_count`][] (default $10^{-2}$: see the module
      docstring).
    - `bins`: histogram bins on $[-1, 1]$ (default 40); `at`: the times of the histograms (the
      nearest save times are used; default: first, middle and last).
    - `throw`: non-finite tokens (a blown-up or failed run) raise an `eqx.EquinoxRuntimeError`
      (`True`) or give `result = nonfinite_state` with count `-1` and $R$ NaN at those times
      (`False`).

    **Returns:** a [`ClusteringResult`][] (`.counts`, `.order`, `.histograms`, `.time_to(k)`,
    `.summary()`, `.plot()`).

    **Cost:** $O(T n^2 d)$ (the Gram matrices), computed by jit-compiled kernels; needs concrete
    `ts` and `at` (the histogram times are chosen on the host).
    """
    check_throw(throw)
    if not is_concrete(ts):
        raise TypeError("`ts` must be concrete: `clustering` picks the histogram times on the host.")
    ts_np = np.asarray(ts, dtype=float)
    if ts_np.ndim != 1 or ts_np.size < 1:
        raise ValueError(f"`ts` must be a non-empty vector of times, got shape {ts_np.shape}.")
    if not np.all(np.isfinite(ts_np)) or np.any(np.diff(ts_np) <= 0):
        raise ValueError("`ts` must be finite and strictly increasing.")
    xs = _check_tokens(xs, "xs", batch=True)
    if xs.ndim != 3:
        raise ValueError(f"`xs` must have shape (T, n, d) (tokens at each save time), got {xs.shape}.")
    if xs.shape[0] != ts_np.shape[0]:
        raise ValueError(f"`xs` must hold one configuration per save time: len(ts) = {ts_np.shape[0]}, "
                         f"got xs.shape[0] = {xs.shape[0]}.")
    bins = check_int(bins, "bins", minimum=1)
    tol = _check_tol(tol)
    idx = _nearest(ts_np, at)
    counts, order, edges, hists, finite = _clustering_core(xs, tol, jnp.asarray(idx), bins)
    code = RESULTS.where(jnp.all(finite), RESULTS.successful, RESULTS.nonfinite_state)
    out = ClusteringResult(jnp.asarray(ts_np), counts, order, jnp.asarray(ts_np[idx]), edges, hists, tol,
                           code, n=int(xs.shape[1]), d=int(xs.shape[2]))
    bad = int(np.sum(~np.asarray(finite)))
    return raise_if_failed(out, code, throw, hint=f"(`clustering`: `xs` has non-finite tokens at {bad} of "
                           f"{ts_np.shape[0]} save times; pass `throw=False` to analyse the rest.)")


# ----------------------------------------------------------------------------------------------
# W1 between token clouds
# ----------------------------------------------------------------------------------------------
def _check_metric(metric) -> str:
    if metric not in _METRICS:
        raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
    return metric


def _host_tokens(x, name: str) -> np.ndarray:
    if not is_concrete(x):
        raise TypeError(f"`{name}` must be a concrete array: `w1_tokens` solves an assignment problem "
                        "on the host (scipy) and has no JAX derivative.")
    a = np.asarray(_check_tokens(x, name))
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")
    return a


def w1_tokens(x, y, *, metric: str = "geodesic") -> float:
    r"""The exact Wasserstein-1 distance between the empirical measures of two token clouds,
    $W_1(\frac1n\sum_i \delta_{x_i}, \frac1m\sum_j \delta_{y_j})$.

    For $n = m$ an optimal plan is a permutation (Birkhoff), found by an assignment problem
    (`scipy.optimize.linear_sum_assignment` on the host; scipy comes with scikit-learn, a jaxdyn
    dependency). For $m = k n$ (or $n = k m$) each point of the smaller cloud is replicated $k$
    times with mass $1/m$: the two measures are unchanged, now uniform on $m$ atoms each, and the
    assignment is again exact (so $n$ against $4n$ tokens is an $4n \times 4n$ assignment).
    Sizes that are not multiples of each other are refused.

    **Arguments:**

    - `x`: tokens `(n, d)`; `y`: tokens `(m, d)`, the same $d$; $n, m \ge 2$.
    - `metric`: `"geodesic"` (the angle $\arccos\langle x, y\rangle$ on the unit sphere; tokens
      must have norm 1 to $10^{-6}$; for $d = 2$ this is the circle $W_1$ of [`w1_circle`][]) or
      `"chordal"` (the Euclidean distance $|x - y|$; any tokens).

    **Returns:** the distance (a float; radians for `"geodesic"`).

    **Cost:** $O(N^3)$ time and $O(N^2)$ memory for $N = \max(n, m)$ (0.55 s of CPU at
    $N = 2048$, 512 against 2048 tokens on $S^2$). No derivative (NumPy/scipy): a traced input
    raises a `TypeError`.
    """
    metric = _check_metric(metric)
    a, b = _host_tokens(x, "x"), _host_tokens(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`x` and `y` must have the same dimension d, got {a.shape[1]} and {b.shape[1]}.")
    n, m = a.shape[0], b.shape[0]
    if max(n, m) % min(n, m):
        raise ValueError(f"the sizes of `x` ({n}) and `y` ({m}) must be multiples of each other (n vs k n: "
                         "the smaller cloud is replicated).")
    if metric == "geodesic":
        for arr, name in ((a, "x"), (b, "y")):
            dev = float(np.max(np.abs(np.linalg.norm(arr, axis=1) - 1.0)))
            if dev > 1e-6:
                raise ValueError(f"`{name}` must hold unit tokens for metric='geodesic' (max | |x_i| - 1 | = "
                                 f"{dev:.3g} > 1e-6): project them onto the sphere or use metric='chordal'.")
    if n < m:
        a = np.repeat(a, m // n, axis=0)
    elif m < n:
        b = np.repeat(b, n // m, axis=0)
    from scipy.optimize import linear_sum_assignment

    if metric == "geodesic":
        cost = np.arccos(np.clip(a @ b.T, -1.0, 1.0))
    else:
        sq = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2 * a @ b.T
        cost = np.sqrt(np.maximum(sq, 0.0))
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def uniform_sphere(key, n: int, d: int) -> Array:
    """`n` i.i.d. tokens uniform on the unit sphere $S^{d-1} \\subset \\mathbb R^d$ (normalised
    Gaussians), shape `(n, d)`."""
    n, d = check_int(n, "n", minimum=1), check_int(d, "d", minimum=2)
    g = jax.random.normal(key, (n, d))
    return g / jnp.linalg.norm(g, axis=1, keepdims=True)


class TokenW1Result(AbstractResult):
    r"""The result of [`token_w1_rate`][]: $W_1$ between the token clouds of $n$ and `ratio` $n$
    tokens started i.i.d. from the same law, at $t = 0$ and at $t_1$.

    **Fields:** `ns` (`(K,)`); `w1` (`(K, repeats)` at $t_1$); `w1_initial` (`(K, repeats)` at
    $t = 0$); `slope`, `slope_initial` (the least-squares slopes of $\log \overline{W_1}$ against
    $\log n$: $-1/2$ for the $n^{-1/2}$ rate); `t1`, `ratio`, `d`, `metric`; `result` (a
    [`jaxdyn.RESULTS`][] code: `nonfinite_state` when a run blew up).
    """

    ns: Array
    w1: Array
    w1_initial: Array
    slope: Array
    slope_initial: Array
    result: RESULTS
    t1: float = eqx.field(static=True)
    ratio: int = eqx.field(static=True)
    d: int = eqx.field(static=True)
    metric: str = eqx.field(static=True)

    def summary(self) -> str:
        """The table of mean $W_1$ (t = 0 and $t_1$) against $n$ and the fitted slopes."""
        ns, w, w0 = np.asarray(self.ns), np.asarray(self.w1), np.asarray(self.w1_initial)
        head = (f"token_w1_rate: W1 ({self.metric}) between n and {self.ratio} n tokens in R^{self.d}, "
                f"{w.shape[1]} repeats")
        if not bool(np.all(np.asarray(self.successful))):
            return f"{head}: FAILED: {message(self.result)}"
        lines = [head + ":"]
        err = w.std(axis=1, ddof=1) / np.sqrt(w.shape[1]) if w.shape[1] > 1 else np.zeros(w.shape[0])
        for k, n in enumerate(ns):
            lines.append(f"  n = {int(n):6d}: W1(t=0) = {w0[k].mean():.4g}, W1(t={self.t1:g}) = "
                         f"{w[k].mean():.4g} +- {err[k]:.2g}")
        lines.append(f"  fitted slope of log W1 vs log n: {float(self.slope):.3f} at t = {self.t1:g}, "
                     f"{float(self.slope_initial):.3f} at t = 0 (n^(-1/2): -0.5)")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """$W_1$ against $n$ (log-log) at $t = 0$ and $t_1$ with an $n^{-1/2}$ guide; returns the axes."""
        from ..plot._attention import plot_token_w1

        return plot_token_w1(self, ax=ax, **kwargs)


def _slope(ns: np.ndarray, w: np.ndarray) -> float:
    m = w.mean(axis=1)
    if ns.size < 2 or not np.all(m > 0):
        return float("nan")
    return float(np.polyfit(np.log(ns), np.log(m), 1)[0])


def _w1_pair(x, y, metric: str, d: int) -> float:
    if metric == "geodesic":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        if d == 2:  # the exact circle W1 in O(n log n) (no assignment)
            return w1_circle(np.arctan2(x[:, 1], x[:, 0]), np.arctan2(y[:, 1], y[:, 0]))
    return w1_tokens(x, y, metric=metric)


def token_w1_rate(field, ns, *, d: int, t1: float, key, ratio: int = 4, repeats: int = 4,
                  dt: float = 0.05, metric: str = "geodesic", sample: Callable | None = None, args=None,
                  solver=None, progress: bool = True, throw: bool = True) -> TokenW1Result:
    r"""The mean-field limit measured: $W_1$ between $n$ and `ratio`$\cdot n$ tokens, i.i.d. from
    the same law, after the token dynamics ran to $t_1$, for each $n$ in `ns`.

    Both clouds are integrated by [`simulate`][] with `solver` (fixed step `dt`) and, for the
    geodesic metric, renormalised onto the sphere before $W_1$ is computed (RK4 leaves
    $||x_i| - 1|$ at the level of its local error; a projected integrator makes it exact). $W_1$ is
    [`w1_tokens`][] (the exact [`w1_circle`][] when $d = 2$), averaged over `repeats` independent
    draws. For i.i.d. samples the distance at $t = 0$ decays like $n^{-1/2}$ on the circle and like
    $\sqrt{\log n / n}$ on $S^2$; the mean-field (Vlasov) limit says the flow keeps that rate up to
    a factor $e^{L t_1}$. Keep $t_1$ short enough that this factor leaves the distance small: the
    uniform law is an unstable state of attention with $Q = K = V = I$ (on the circle at $\beta = 0$,
    Kuramoto's incoherent state grows at rate $K/2 = 1/2$), so at large $t_1$ the sampling error of
    the small $n$ is amplified to $O(1)$ and the fitted slope flattens. Measured (8 repeats, RK4
    $dt = 0.1$): circle, uniform, $\beta = 0$, $n = 32 \dots 1024$: slope $-0.54$ at $t_1 = 1$
    ($-0.54$ at $t = 0$); $S^2$, softmax, $\beta = 1$, $n = 16 \dots 512$: $-0.45$ at $t_1 = 1$
    ($-0.43$ at $t = 0$; $\sqrt{\log n / n}$ has local slope $\approx -0.39$ there); at $t_1 = 3$ the
    slopes were $-0.40$ (circle) and $-0.25$ ($S^2$).

    **Arguments:**

    - `field`: the token field `f(t, x, args)` on states `(n, d)` for every $n$ (e.g. a
      `SelfAttention`).
    - `ns`: token counts (ints $\ge 2$, increasing); `d`: the dimension; `t1` > 0: the time;
      `key`: a `jax.random` key; `ratio`: the size ratio (default 4); `repeats`: draws per $n$.
    - `dt`: the fixed step; `metric`: `"geodesic"` or `"chordal"` (as in [`w1_tokens`][]).
    - `solver`: a fixed-step diffrax solver (default [`RK4`][]`()`, the fast path of [`simulate`][]);
      pass [`Projected`][]`(RK4())` when the sphere is not attracting off itself (e.g. $V$ with
      negative eigenvalues: unprojected RK4 leaves the sphere and blows up there).
    - `sample`: `sample(key, n) -> (n, d)` the initial law (default: uniform on $S^{d-1}$,
      [`uniform_sphere`][]); `args`: passed to the field; `progress`: a tqdm bar over the runs.
    - `throw`: a run that blows up raises (`True`) or gives `result = nonfinite_state` and NaN
      distances (`False`).

    **Returns:** a [`TokenW1Result`][] (`.w1`, `.w1_initial`, `.slope`, `.summary()`, `.plot()`).
    Each new $n$ compiles the solve anew (shapes differ).
    """
    from ._particles import RK4, simulate

    check_throw(throw)
    if not callable(field):
        raise TypeError(f"`field` must be a callable f(t, x, args), got {type(field).__name__}.")
    d = check_int(d, "d", minimum=1)
    ratio = check_int(ratio, "ratio", minimum=1)
    repeats = check_int(repeats, "repeats", minimum=1)
    metric = _check_metric(metric)
    ns_list = [check_int(int(v) if isinstance(v, np.integer) else v, "ns", minimum=2)
               for v in np.atleast_1d(np.asarray(ns, dtype=object))]
    if not ns_list or np.any(np.diff(ns_list) <= 0):
        raise ValueError(f"`ns` must be a non-empty increasing list of token counts >= 2, got {ns_list}.")
    for value, name in ((t1, "t1"), (dt, "dt")):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and np.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` must be a finite float > 0, got {value!r}.")
    if sample is None:
        if d < 2:
            raise ValueError("`d` must be >= 2 for the default initial law (uniform on the sphere S^{d-1}).")

        def sample(k, n):
            return uniform_sphere(k, n, d)
    elif not callable(sample):
        raise TypeError(f"`sample` must be None or a callable sample(key, n) -> (n, d), got "
                        f"{type(sample).__name__}.")
    for size in (ns_list[0], ratio * ns_list[0]):  # the law's shape, checked without compiling anything
        try:
            shape = jax.eval_shape(lambda k, size=size: sample(k, size), key).shape
        except Exception:  # a sampler that JAX cannot trace (NumPy): checked on its first draw below
            break
        if tuple(shape) != (size, d):
            raise ValueError(f"`sample(key, {size})` must return shape ({size}, {d}), got {tuple(shape)}.")
    step = RK4() if solver is None else solver
    ts = jnp.array([0.0, float(t1)])
    w1 = np.full((len(ns_list), repeats), np.nan)
    w0 = np.full_like(w1, np.nan)
    ok = True
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ns_list) * repeats, desc="token_w1_rate", leave=False)
    keys = jax.random.split(key, (len(ns_list), repeats, 2))
    try:
        for a, n in enumerate(ns_list):
            for r in range(repeats):
                x0 = jnp.asarray(sample(keys[a, r, 0], n), dtype=float)
                y0 = jnp.asarray(sample(keys[a, r, 1], ratio * n), dtype=float)
                for arr, size in ((x0, n), (y0, ratio * n)):
                    if arr.shape != (size, d):
                        raise ValueError(f"`sample(key, {size})` must return shape ({size}, {d}), got "
                                         f"{arr.shape}.")
                ends = []
                for z0 in (x0, y0):
                    sol = simulate(field, z0, ts, args=args, solver=step, dt0=float(dt), throw=False)
                    ends.append(np.asarray(sol.ys[-1]))
                if all(np.all(np.isfinite(e)) for e in ends):
                    w0[a, r] = _w1_pair(np.asarray(x0), np.asarray(y0), metric, d)
                    w1[a, r] = _w1_pair(ends[0], ends[1], metric, d)
                else:
                    ok = False
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    nsa = np.asarray(ns_list, dtype=float)
    code = RESULTS.successful if ok else RESULTS.nonfinite_state
    out = TokenW1Result(jnp.asarray(ns_list), jnp.asarray(w1), jnp.asarray(w0),
                        jnp.asarray(_slope(nsa, w1)), jnp.asarray(_slope(nsa, w0)), code, t1=float(t1),
                        ratio=ratio, d=d, metric=metric)
    return raise_if_failed(out, code, throw, hint="(`token_w1_rate`: a token run blew up; pass `throw=False` "
                           "to keep the finite ones.)")


# ----------------------------------------------------------------------------------------------
# stability of clustered states
# ----------------------------------------------------------------------------------------------
def _tangent_basis(u: Array) -> Array:
    """An orthonormal basis of $u^\\perp$ (shape `(d, d - 1)`) for a unit vector `u`: the last
    $d - 1$ columns of the Householder reflection that maps $e_1$ to $\\pm u$."""
    d = u.shape[0]
    s = jnp.where(u[0] >= 0, 1.0, -1.0)
    v = u + s * jnp.eye(d, dtype=u.dtype)[0]
    h = jnp.eye(d, dtype=u.dtype) - 2.0 * jnp.outer(v, v) / jnp.dot(v, v)
    return h[:, 1:]


class ClusterStabilityResult(AbstractResult):
    r"""The result of [`cluster_stability`][]: the linearisation of the token dynamics at a
    configuration, restricted to the tangent space of the product of spheres
    $(S^{d-1})^n$.

    **Fields:**

    - `x` (`(n, d)`, the unit tokens); `residual` ($\max_i |f_i(x)|$: 0 at an equilibrium);
      `equilibrium` (whether `residual` $\le$ `tol`).
    - `eigenvalues` (complex, `(n (d - 1),)`, by decreasing real part): the spectrum of
      $B^\top \partial f/\partial x\, B$, $B$ the block-diagonal orthonormal bases of the tangent
      spaces $T_{x_i} S^{d-1}$ (intrinsic at an equilibrium: the field is tangent to the product
      of spheres).
    - `index` (the number of eigenvalues with $\Re\lambda >$ `tol`: unstable directions),
      `neutral` (the number with $|\Re\lambda| \le$ `tol`: at least the dimension of the orbit of
      the configuration under the rotations that commute with $Q, K, V$, e.g. $d - 1$ at consensus
      for $Q = K = V = I$), `kind` (an index into [`jaxdyn.invariant.KINDS`][], as
      [`jaxdyn.invariant.equilibria`][] classifies: `non-hyperbolic` whenever `neutral > 0`),
      `stable` (`index == 0`: stable up to the neutral directions).
    - `tol`; `result` (`successful`, or `nonfinite_field` when the field or its Jacobian is not
      finite at `x`).
    """

    x: Array
    residual: Array
    equilibrium: Array
    eigenvalues: Array
    index: Array
    neutral: Array
    kind: Array
    stable: Array
    tol: Array
    result: RESULTS

    def summary(self) -> str:
        """Lines: the configuration, whether it is an equilibrium, the tangent spectrum's extremes,
        the index and the neutral directions, and the verdict."""
        from ..invariant import KINDS

        n, d = np.shape(self.x)
        head = f"cluster_stability: n = {n} tokens on S^{d - 1}, tangent dimension {n * (d - 1)}"
        if not bool(np.all(np.asarray(self.successful))):
            return f"{head}: FAILED: {message(self.result)}"
        ev = np.asarray(self.eigenvalues)
        eq = ("an equilibrium" if bool(self.equilibrium)
              else "NOT an equilibrium (the spectrum is not intrinsic)")
        verdict = ("stable up to the neutral directions" if bool(self.stable)
                   else f"unstable ({int(self.index)} unstable directions)")
        return "\n".join([
            f"{head}: {eq}, max |f_i| = {float(self.residual):.3g}",
            f"  tangent eigenvalues: Re in [{ev.real.min():.6g}, {ev.real.max():.6g}]; "
            f"{int(self.neutral)} neutral (|Re| <= {float(self.tol):.1g}), index {int(self.index)}",
            f"  kind: {KINDS[int(self.kind)]}; {verdict}: successful."])

    def plot(self, ax=None, **kwargs):
        """The tangent eigenvalues in the complex plane; returns the axes."""
        from ..plot._attention import plot_cluster_spectrum

        return plot_cluster_spectrum(self, ax=ax, **kwargs)


@eqx.filter_jit
def _stability_core(field, x, args, tol):
    from ..invariant._classify import FlowClassification, classify, order_spectrum

    n, d = x.shape
    f = field(jnp.zeros((), x.dtype), x, args)
    jac = jax.jacfwd(lambda y: jnp.reshape(field(jnp.zeros((), x.dtype), y.reshape(n, d), args), (-1,)))(
        x.reshape(-1))
    bases = jax.vmap(_tangent_basis)(x)  # (n, d, d - 1)
    jb = jnp.einsum("ajk,jkl->ajl", jac.reshape(n * d, n, d), bases).reshape(n, d, n * (d - 1))
    red = jnp.einsum("ika,ikb->iab", bases, jb).reshape(n * (d - 1), n * (d - 1))  # B^T J B
    ev = order_spectrum(FlowClassification(), jnp.linalg.eigvals(red))
    kind, index, _ = classify(FlowClassification(), ev, tol)
    neutral = jnp.sum(jnp.abs(ev.real) <= tol)
    finite = jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(jac))
    residual = jnp.max(jnp.linalg.norm(f, axis=1))
    return residual, ev, kind, index, neutral, finite


def cluster_stability(field, x, *, args=None, tol: float = 1e-8,
                      throw: bool = True) -> ClusterStabilityResult:
    r"""The stability of a token configuration (typically a clustered equilibrium) of a field on
    the product of spheres: the eigenvalues of its Jacobian restricted to the tangent space.

    **Known answer** (consensus, $Q = K = V = I$, $x_i = e$ for all $i$): write
    $x_j = e + u_j$, $u_j \perp e$. Then $\langle x_i, x_j\rangle = 1 + O(|u|^2)$, so every weight
    is $e^\beta + O(|u|^2)$ and $P_{x_i}\sum_j w_{ij} x_j = c\,(\bar u - u_i) + O(|u|^2)$ with
    $c = e^\beta$ for uniform weights ($w_{ij} = e^{\beta\langle x_i, x_j\rangle}/n$) and $c = 1$
    for softmax ($Z_i = n e^\beta + O(|u|^2)$). The tangent linearisation
    $u_i' = c(\bar u - u_i)$ has eigenvalues $0$ ($d - 1$ times: the common rotations of the
    cluster) and $-c$ ($(n - 1)(d - 1)$ times): consensus is stable up to rotations, with rate
    $e^\beta$ (uniform) or $1$ (softmax) for every $\beta$.

    **Arguments:**

    - `field`: the token field `f(t, x, args)` on states `(n, d)` (e.g. a `SelfAttention` with
      `geometry="sphere"`), evaluated at $t = 0$; differentiated by `jax.jacfwd`.
    - `x`: the configuration, shape `(n, d)`, $n \ge 2$, $d \ge 2$, unit tokens (to $10^{-6}$).
    - `args`: passed to the field; `tol`: the threshold of zero for $|\Re\lambda|$ and for the
      residual (default $10^{-8}$).
    - `throw`: a non-finite field or Jacobian at `x` raises (`True`) or gives
      `result = nonfinite_field` (`False`).

    **Returns:** a [`ClusterStabilityResult`][] (`.eigenvalues`, `.index`, `.neutral`, `.kind`,
    `.stable`, `.summary()`, `.plot()`). Cost: the dense $nd \times nd$ Jacobian and an
    eigenvalue problem of size $n(d - 1)$.

    Find equilibria to analyse by running the dynamics to a clustered state, or with
    [`jaxdyn.invariant.equilibria`][] on a parametrisation of the sphere (e.g. the angles on the
    circle with one angle pinned to remove the rotation symmetry).
    """
    check_throw(throw)
    if not callable(field):
        raise TypeError(f"`field` must be a callable f(t, x, args), got {type(field).__name__}.")
    x = _check_tokens(x, "x")
    if x.shape[1] < 2:
        raise ValueError(f"`x` must have d >= 2 (tokens on the sphere S^(d-1)), got {x.shape}.")
    tol_a = _check_tol(tol)
    if is_concrete(x):
        xn = np.asarray(x)
        if not np.all(np.isfinite(xn)):
            raise ValueError("`x` contains non-finite values (NaN or inf).")
        dev = float(np.max(np.abs(np.linalg.norm(xn, axis=1) - 1.0)))
        if dev > 1e-6:
            raise ValueError(f"`x` must hold unit tokens (max | |x_i| - 1 | = {dev:.3g} > 1e-6): the "
                             "analysis is on the product of spheres.")
    residual, ev, kind, index, neutral, finite = _stability_core(field, x, args, tol_a)
    code = RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite_field)
    out = ClusterStabilityResult(x, residual, residual <= tol_a, ev, index, neutral, kind, index == 0, tol_a,
                                 code)
    return raise_if_failed(out, code, throw, hint="(`cluster_stability`: the field or its Jacobian is not "
                           "finite at `x`.)")
