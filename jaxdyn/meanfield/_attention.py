r"""Self-attention as an interacting particle system: tokens $x_1, \dots, x_n \in \mathbb{R}^d$ moved by
attention (Geshkovski, Letrouit, Polyanskiy, Rigollet, *A mathematical perspective on Transformers*,
2023).

$$\dot x_i = P_{x_i}\Big(\sum_{h} \sum_j w^h_{ij}\, V_h x_j\Big), \qquad
w^h_{ij} = \frac{e^{\beta \langle Q_h x_i, K_h x_j\rangle}}{Z^h_i}$$

with $Z^h_i = \sum_j e^{\beta \langle Q_h x_i, K_h x_j\rangle}$ (softmax) or $Z_i = n$ (uniform), and
$P_x v = v - \langle x, v\rangle x$ the projection onto the tangent space of the unit sphere.
[`SelfAttention`][] is a [`AbstractParticleSystem`][] (state: the `(n, d)` array of tokens), so
[`simulate`][] integrates it; [`Projected`][] wraps a diffrax solver so that every step ends on the
sphere; [`shard_tokens`][] splits the token axis over devices.

**Why this lives in `jaxdyn.meanfield`:** the tokens are particles with an all-to-all, state-dependent
coupling, and the machinery of the mean-field programme (`simulate`, its observables, the Vlasov
limit and W1 distances, sharding over the particle axis, the Lyapunov engine) applies unchanged; a
sibling package would duplicate `simulate` or import it across the layers.

**Kernel.** The scores $\beta \langle Q x_i, K x_j\rangle = \beta\, x_i^\top A x_j$ use
$A = Q^\top K$ (formed once per evaluation: $O(d^3)$), so one evaluation costs $n^2 d$
multiply-adds for the scores, $n^2$ exponentials and $n^2 d$ multiply-adds for
$\sum_j w_{ij} V x_j$ per head. Three layouts compute it, equal to rounding:

- dense: the `(n, n)` scores at once (memory $O(n^2)$; the automatic choice up to 512 tokens);
- rows: query blocks of 128 rows (`lax.map`), each against every key at once with the exact
  softmax of its rows (memory $O(n d + 128\, n)$, a block's scores cache-resident; automatic from
  513 to 16384 tokens, the fastest layout measured at $n = 4096$, $d = 64$);
- blocked: query blocks (`lax.map`) against key blocks (`lax.scan`) with the online (streaming)
  softmax of flash attention (a running maximum, a running normaliser and a running weighted sum,
  rescaled when the maximum grows), so the memory is $O(n d + \text{block}^2)$ per head whatever
  $n$ (automatic above 16384 tokens, blocks of 256 queries and 2048 keys; `block_size=b`: blocks
  of $b$ queries and $b$ keys).
"""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array

from .._checks import check_finite, is_concrete
from ._particles import AbstractParticleSystem, _noise

_NORMALISATIONS = ("softmax", "uniform")
_GEOMETRIES = ("sphere", "euclidean", "layernorm")
_DENSE_MAX = 512  # block_size=None: dense (n, n) scores up to this many keys (2 MiB per head in float64)
# block_size=None above: query blocks of 128 rows against every key up to 16384 keys (16 MiB of scores
# per block in float64), query blocks of 256 against key blocks of 2048 with the online softmax above.
# Measured at n = 4096, d = 64, float64, CPU time of one evaluation on the loaded 2-core machine: rows of
# 128: 0.051-0.059 s; online 128 x 1024: 0.068 s, 256 x 1024: 0.060 s; dense: 0.12 s; n = 16384: rows of
# 128 1.04 s, online 256 x 2048 1.11 s
_ROWS_MAX, _ROWS_BLOCK = 16384, 128
_QUERY_BLOCK, _KEY_BLOCK = 256, 2048
_LN_EPS = 1e-5  # LayerNorm's epsilon (PyTorch's nn.LayerNorm default)
_SPHERE_TOL = 1e-6  # tokens of geometry="sphere" must have |x_i| = 1 to this (relative), when concrete


def _matrices(x, name: str) -> Array:
    """`Q`, `K` or `V`: a finite `(d, d)` or `(h, d, d)` float array, returned as `(h, d, d)`."""
    a = jnp.asarray(x)
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        a = a.astype(jnp.result_type(float))
    square = a.ndim in (2, 3) and a.shape[-1] == a.shape[-2] and a.shape[-1] >= 1
    if not square or (a.ndim == 3 and a.shape[0] < 1):
        raise ValueError(f"`{name}` must be a square (d, d) matrix or a stack (h, d, d) of h >= 1 square "
                         f"matrices (one per head), got shape {a.shape}.")
    a = check_finite(a, name)
    return a[None] if a.ndim == 2 else a


def _beta(beta) -> Array:
    b = jnp.asarray(beta)
    if not jnp.issubdtype(b.dtype, jnp.inexact):
        b = b.astype(jnp.result_type(float))
    if b.shape != ():
        raise ValueError(f"`beta` must be a scalar (the inverse temperature), got shape {b.shape}.")
    return check_finite(b, "beta")


def _block_size(block_size) -> int | None:
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
        raise TypeError(f"`block_size` must be None (automatic) or an int >= 1, got "
                        f"{type(block_size).__name__}.")
    if block_size < 1:
        raise ValueError(f"`block_size` must be None (automatic) or an int >= 1, got {block_size}.")
    return int(block_size)


def _layernorm(x):
    """LayerNorm without affine parameters over the last axis: $(x - \\bar x)/\\sqrt{\\mathrm{var}(x) +
    \\epsilon}$, $\\epsilon = 10^{-5}$."""
    mu = jnp.mean(x, axis=-1, keepdims=True)
    c = x - mu
    return c * jax.lax.rsqrt(jnp.mean(c * c, axis=-1, keepdims=True) + _LN_EPS)


def _head(q, zk, vz, beta, softmax: bool, n: int):
    """One head's $\\sum_j w_{ij} V z_j$ for the query rows `q` (already $z_i^\\top A$) against every
    key `zk` at once, `vz` the values $V z_j$ (rows): exact softmax over the row."""
    s = beta * (q @ zk.T)
    if softmax:
        e = jnp.exp(s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
        return (e @ vz) / jnp.sum(e, axis=-1, keepdims=True)
    return (jnp.exp(s) @ vz) / n


def _dense(zq, zk, A, VT, beta, softmax: bool):
    """$\\sum_h \\sum_j w^h_{ij} V_h z_j$ for the queries `zq` against the keys `zk`, with each head's
    `(n_q, n)` scores at once; `VT` holds $V_h^\\top$."""
    n = zk.shape[0]
    return sum(_head(zq @ A[h], zk, zk @ VT[h], beta, softmax, n) for h in range(A.shape[0]))


def _rows(zq, zk, A, VT, beta, softmax: bool, block: int):
    """The same sum by query blocks of `block` rows (`lax.map`), each against every key at once (exact
    softmax of the block's rows): memory $O(n d + \\text{block}\\, n)$. The fastest layout measured
    up to $n = 16384$ keys (one pass over the keys, no rescaling)."""
    nq, d = zq.shape
    n, h = zk.shape[0], A.shape[0]
    bq = min(block, nq)
    nbq = -(-nq // bq)
    zq = jnp.pad(zq, ((0, nbq * bq - nq), (0, 0)))
    qa = jnp.stack([zq @ A[i] for i in range(h)], axis=1).reshape(nbq, bq, h, d)  # queries z_i^T A_h
    vz = [zk @ VT[i] for i in range(h)]  # values V_h z_j

    def query_block(q):
        return sum(_head(q[:, i], zk, vz[i], beta, softmax, n) for i in range(h))

    return jax.lax.map(query_block, qa).reshape(nbq * bq, d)[:nq]


def _blocked(zq, zk, A, VT, beta, softmax: bool, block: int, key_block: int | None = None):
    """The same sum by query blocks (`lax.map`) against key blocks (`lax.scan`) with the online
    (streaming) softmax: memory $O(n d + \\text{block}^2)$ whatever $n$. The token axes are padded to
    multiples of the blocks; padded keys are masked out, padded queries dropped. One key block: the
    exact softmax of `_rows`."""
    nq, d = zq.shape
    n, h = zk.shape[0], A.shape[0]
    bk = min(block if key_block is None else key_block, n)
    if bk == n:
        return _rows(zq, zk, A, VT, beta, softmax, block)
    bq = min(block, nq)
    nbq, nbk = -(-nq // bq), -(-n // bk)
    zq = jnp.pad(zq, ((0, nbq * bq - nq), (0, 0)))
    zk = jnp.pad(zk, ((0, nbk * bk - n), (0, 0)))
    valid = (jnp.arange(nbk * bk) < n).reshape(nbk, bk)
    qa = jnp.stack([zq @ A[i] for i in range(h)], axis=1).reshape(nbq, bq, h, d)  # queries z_i^T A_h
    vz = jnp.stack([zk @ VT[i] for i in range(h)], axis=1).reshape(nbk, bk, h, d)  # values V_h z_j
    keys = zk.reshape(nbk, bk, d)
    dtype = zq.dtype
    neg = jnp.asarray(-jnp.inf, dtype)

    def query_block(q):  # q: (bq, h, d) -> (bq, d)
        def key_block(carry, kv):
            k, v, ok = kv
            out = []
            for i in range(h):
                s = beta * (q[:, i] @ k.T)
                if softmax:
                    m, l, acc = carry[i]
                    s = jnp.where(ok, s, neg)
                    m_new = jax.lax.stop_gradient(jnp.maximum(m, jnp.max(s, axis=-1)))
                    c = jnp.exp(m - m_new)
                    p = jnp.exp(s - m_new[:, None])
                    out.append((m_new, l * c + jnp.sum(p, axis=-1), acc * c[:, None] + p @ v[:, i]))
                else:
                    out.append(carry[i] + jnp.where(ok, jnp.exp(s), 0.0) @ v[:, i])
            return tuple(out), None

        acc0 = jnp.zeros((bq, d), dtype)
        if softmax:
            carry0 = tuple((jnp.full((bq,), neg), jnp.zeros((bq,), dtype), acc0) for _ in range(h))
            carry, _ = jax.lax.scan(key_block, carry0, (keys, vz, valid))
            return sum(acc / l[:, None] for _, l, acc in carry)
        carry, _ = jax.lax.scan(key_block, tuple(acc0 for _ in range(h)), (keys, vz, valid))
        return sum(carry) / n

    return jax.lax.map(query_block, qa).reshape(nbq * bq, d)[:nq]


def _attend(zq, zk, A, VT, beta, softmax: bool, block_size: int | None):
    """The attention of the queries `zq` to the keys `zk`: `block_size` None picks dense scores up to
    512 keys, query blocks of 128 rows against every key up to 16384 keys, query blocks of 256
    against key blocks of 2048 (online softmax) above; an int is the query and key block length."""
    n = zk.shape[0]
    if block_size is None:
        if n <= _DENSE_MAX:
            return _dense(zq, zk, A, VT, beta, softmax)
        if n <= _ROWS_MAX:
            return _rows(zq, zk, A, VT, beta, softmax, _ROWS_BLOCK)
        return _blocked(zq, zk, A, VT, beta, softmax, _QUERY_BLOCK, _KEY_BLOCK)
    return _blocked(zq, zk, A, VT, beta, softmax, block_size)


class SelfAttention(AbstractParticleSystem):
    r"""Self-attention dynamics of $n$ tokens $x_i \in \mathbb{R}^d$: a vector field `field(t, x, args)`
    on the `(n, d)` array of tokens, for [`simulate`][].

    $$\dot x_i = \Pi_i\Big(\sum_{h=1}^{H} \sum_{j=1}^n w^h_{ij}\, V_h z_j + F(z_i)\Big), \qquad
    w^h_{ij} = \frac{\exp(\beta \langle Q_h z_i, K_h z_j\rangle)}{Z^h_i}$$

    - normalisation `"softmax"`: $Z^h_i = \sum_j \exp(\beta \langle Q_h z_i, K_h z_j\rangle)$
      (each row of weights sums to 1); `"uniform"`: $Z_i = n$ (the $1/N$ of mean-field models).
    - geometry `"sphere"`: $z = x$ and $\Pi_i = P_{x_i}$, $P_x v = v - \langle x, v\rangle x$, the
      projection onto the tangent space of the unit sphere $S^{d-1}$ (invariant for the flow:
      $\frac{d}{dt}|x_i|^2 = 2\langle x_i, P_{x_i} v\rangle = 2(1 - |x_i|^2)\langle x_i, v\rangle$
      vanishes on it). Tokens must start on the sphere (checked by [`simulate`][] when concrete);
      [`Projected`][] keeps them there to rounding. Without it the sphere is invariant only for the
      exact flow: a solver's error $e = |x_i|^2 - 1$ obeys $\dot e = -2\langle x_i, v\rangle e$, which
      grows where $\langle x_i, v\rangle < 0$, so with repulsive $V$ (negative eigenvalues) plain
      RK4 leaves the sphere and can blow up ($V = -I$, $\beta = 1$, $n = 32$: NaN at $t = 37$): use
      `Projected`.
    - `"euclidean"`: $z = x$, $\Pi_i$ the identity (no normalisation at all).
    - `"layernorm"`: the pre-LN residual stream $\dot x_i = \sum_j w_{ij}(z) V z_j + F(z_i)$ with
      $z_i = \mathrm{LN}(x_i) = (x_i - \bar x_i)/\sqrt{\mathrm{var}(x_i) + \epsilon}$, the mean and
      variance over the $d$ coordinates of the token, $\epsilon = 10^{-5}$ (PyTorch's default), **no
      affine parameters**: it is the LayerNorm of a pre-LN transformer (GPT-2 and after), the one
      the tokens see in practice; its scale $\gamma$ is absorbed into $Q, K, V$ (and its shift
      omitted). The uncentred variant $\sqrt d\, x/|x|$ (RMSNorm) gives the dynamics of `"sphere"`
      up to the radius and the projection, so it is not repeated.

    The interaction is the Kuramoto model on the circle: for $d = 2$, $Q = K = V = I$, uniform
    normalisation and $x_i = (\cos\theta_i, \sin\theta_i)$,
    $\dot\theta_i = \frac1n \sum_j e^{\beta\cos(\theta_j - \theta_i)}\sin(\theta_j - \theta_i)$:
    [`Kuramoto`][] with zero frequencies, coupling $K = 1$ and $g(\phi) = e^{\beta\cos\phi}\sin\phi$.

    **Arguments:**

    - `Q`, `K`, `V`: the query, key and value matrices, `(d, d)` (one head) or `(h, d, d)` ($h$ heads,
      whose outputs are summed), finite, the same $d$.
    - `beta`: the inverse temperature $\beta$, a finite scalar (an array leaf: changing it does not
      recompile). **$\beta < 0$ is allowed** with both normalisations: the weights stay positive and
      (softmax) normalised, so the field is as well posed as for $\beta > 0$; with softmax it is the
      field of $-Q$ at $|\beta|$ (attention to the least similar tokens), with uniform
      normalisation the Kuramoto coupling $e^{\beta\cos\phi}\sin\phi$ at that $\beta$.
    - `normalisation`: `"softmax"` (default) or `"uniform"`.
    - `geometry`: `"sphere"` (default), `"euclidean"` or `"layernorm"`.
    - `feedforward`: `None` or a callable $F: \mathbb{R}^d \to \mathbb{R}^d$ applied to each token
      (an equinox module's arrays are leaves of the field: differentiable), the residual
      feed-forward term, projected like the attention term on the sphere.
    - `block_size`: `None` (automatic: dense `(n, n)` scores up to $n = 512$, query blocks of 128
      rows against every key up to $n = 16384$, the online softmax over blocks of 256 queries and
      2048 keys above; see the module's **Kernel**) or an int $b$: blocks of $b$ queries against
      blocks of $b$ keys with the online softmax (memory $O(n d + b^2)$ per head).
    - `mesh`: `None`, or a `jax.sharding.Mesh` splitting the queries over its devices (set by
      [`shard_tokens`][]).
    - `noise`: $\sigma \ge 0$ (static); with $\sigma > 0$, [`simulate`][] adds $\sigma\, dB$ to every
      coordinate (not projected: use [`Projected`][]`(diffrax.Euler())` to retract each step).

    **Cost per evaluation:** $4 h n^2 d$ flops and $h n^2$ exponentials ($O(h n d^2)$ more for the
    projections $z A_h$, $V_h z$): at $n = 4096$, $d = 64$, one head, float64, 0.05-0.06 s of CPU
    time per evaluation, 0.34 s per RK4 step on a loaded 2-core machine (`benchmarks/attention.py`:
    5.7x a straightforward torch field; float32 0.19 s, 7.9x); memory $O(h n^2)$
    dense, $O(n d h + 128\, n)$ by rows, $O(n d h + h\,\text{block}^2)$ blocked. Batches of
    sequences: `jax.vmap` over a leading axis of `x` (one compilation).

    **Example:**

    ```python
    d, n = 3, 32
    x0 = jax.random.normal(jax.random.key(0), (n, d))
    x0 = x0 / jnp.linalg.norm(x0, axis=-1, keepdims=True)
    field = SelfAttention(jnp.eye(d), jnp.eye(d), jnp.eye(d), beta=4.0)
    sol = simulate(field, x0, jnp.linspace(0, 20, 101), solver=Projected(RK4()), dt0=0.05)
    ```
    """

    Q: Array
    K: Array
    V: Array
    beta: Array
    feedforward: Callable | None
    normalisation: str = eqx.field(static=True)
    geometry: str = eqx.field(static=True)
    block_size: int | None = eqx.field(static=True)
    multihead: bool = eqx.field(static=True)
    mesh: object = eqx.field(static=True)
    noise: float = eqx.field(static=True)
    nodes_from: ClassVar[str] = "`y0` (the tokens)"
    circular: ClassVar[bool] = False

    def __init__(self, Q, K, V, *, beta, normalisation: str = "softmax", geometry: str = "sphere",
                 feedforward: Callable | None = None, block_size: int | None = None, noise=0.0, mesh=None):
        q, k, v = _matrices(Q, "Q"), _matrices(K, "K"), _matrices(V, "V")
        if not q.shape[-1] == k.shape[-1] == v.shape[-1]:
            raise ValueError(f"`Q`, `K` and `V` must share d (the token dimension), got d = {q.shape[-1]}, "
                             f"{k.shape[-1]}, {v.shape[-1]}.")
        if not q.shape[0] == k.shape[0] == v.shape[0]:
            raise ValueError(f"`Q`, `K` and `V` must have the same number of heads, got {q.shape[0]}, "
                             f"{k.shape[0]}, {v.shape[0]}.")
        if normalisation not in _NORMALISATIONS:
            raise ValueError(f"`normalisation` must be one of {_NORMALISATIONS}, got {normalisation!r}.")
        if geometry not in _GEOMETRIES:
            raise ValueError(f"`geometry` must be one of {_GEOMETRIES}, got {geometry!r}.")
        if feedforward is not None and not callable(feedforward):
            raise TypeError(f"`feedforward` must be None or a callable R^d -> R^d (one token), got "
                            f"{type(feedforward).__name__}.")
        self.Q, self.K, self.V = q, k, v
        self.multihead = jnp.ndim(Q) == 3
        self.beta = _beta(beta)
        self.normalisation = normalisation
        self.geometry = geometry
        self.feedforward = feedforward
        self.block_size = _block_size(block_size)
        self.noise = _noise(noise)
        self.mesh = mesh

    @property
    def n(self) -> None:
        """`None`: any number $n \\ge 2$ of tokens."""
        return None

    @property
    def d(self) -> int:
        """The token dimension $d$."""
        return self.Q.shape[-1]

    @property
    def heads(self) -> int:
        """The number of heads $h$."""
        return self.Q.shape[0]

    def check_tokens(self, x, name: str = "y0") -> Array:
        """`x` as the float `(n, d)` array of $n \\ge 2$ finite tokens (a `ValueError` naming `name`
        otherwise); for `geometry="sphere"`, when concrete, every $|x_i| = 1$ to $10^{-6}$ (normalise
        with `x / jnp.linalg.norm(x, axis=-1, keepdims=True)`)."""
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.result_type(float))
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"`{name}` must be the (n, d) array of tokens with d = {self.d} (the size of "
                             f"`Q`, `K`, `V`), got shape {x.shape}; a batch of sequences: jax.vmap over it.")
        if x.shape[0] < 2:
            raise ValueError(f"`{name}` must hold n >= 2 tokens, got n = {x.shape[0]}.")
        x = check_finite(x, name)
        if self.geometry == "sphere" and is_concrete(x):
            r = np.linalg.norm(np.asarray(x, dtype=float), axis=-1)
            worst = float(np.max(np.abs(r - 1.0)))
            if worst > _SPHERE_TOL:
                raise ValueError(f"`{name}`: geometry='sphere' needs unit tokens |x_i| = 1, got "
                                 f"max | |x_i| - 1 | = {worst:.3g}; normalise them "
                                 "(x / jnp.linalg.norm(x, axis=-1, keepdims=True)).")
        return x

    def _tokens(self, x):
        return _layernorm(x) if self.geometry == "layernorm" else x

    def _shapes(self, x):
        if jnp.ndim(x) != 2 or jnp.shape(x)[1] != self.d or jnp.shape(x)[0] < 2:
            raise ValueError(f"`x` must be the (n, d) array of n >= 2 tokens with d = {self.d}, got shape "
                             f"{jnp.shape(x)}; a batch of sequences: jax.vmap over it.")

    def weights(self, x) -> Array:
        """The dense attention matrix $w_{ij}$: `(n, n)` for one head, `(h, n, n)` for a stack of
        heads (rows sum to 1 with softmax, to $\\frac1n\\sum_j e^{\\beta\\langle Q z_i, K z_j\\rangle}$
        with uniform). $O(h n^2)$ memory: for small $n$."""
        self._shapes(x)
        z = self._tokens(jnp.asarray(x))
        za = jnp.einsum("nd,hde->hne", z, self._scores().astype(z.dtype))
        s = self.beta.astype(z.dtype) * jnp.einsum("hne,me->hnm", za, z)
        w = jax.nn.softmax(s, axis=-1) if self.normalisation == "softmax" else jnp.exp(s) / z.shape[0]
        return w if self.multihead else w[0]

    def _scores(self) -> Array:
        """$A_h = Q_h^\\top K_h$: the scores are $x_i^\\top A_h x_j$."""
        return jnp.einsum("hcd,hce->hde", self.Q, self.K)

    def attention(self, x) -> Array:
        """$\\sum_h \\sum_j w^h_{ij} V_h z_j$ for every token: the unprojected attention term, `(n, d)`."""
        self._shapes(x)
        z = self._tokens(x)
        A = self._scores().astype(z.dtype)
        VT = jnp.swapaxes(self.V, -1, -2).astype(z.dtype)
        beta = self.beta.astype(z.dtype)
        softmax = self.normalisation == "softmax"
        if self.mesh is not None:
            return _sharded(self, z, A, VT, beta, softmax)
        return _attend(z, z, A, VT, beta, softmax, self.block_size)

    def __call__(self, t, x, args=None) -> Array:
        x = jnp.asarray(x)
        self._shapes(x)
        z = self._tokens(x)
        out = self.attention(x)
        if self.feedforward is not None:
            out = out + jax.vmap(self.feedforward)(z)
        if self.geometry == "sphere":
            out = out - jnp.sum(x * out, axis=-1, keepdims=True) * x
        return out

    def diffusion(self, t, x, args=None) -> lx.AbstractLinearOperator:
        """The diffusion $\\sigma I$ on every coordinate (a diffrax `ControlTerm`)."""
        return lx.DiagonalLinearOperator(jnp.full(jnp.shape(x), self.noise, dtype=jnp.result_type(x)))


def _sharded(field: SelfAttention, z, A, VT, beta, softmax: bool):
    """The attention term with the queries split over the devices of `field.mesh` (`shard_map`): each
    device attends its own rows to every key (the keys gathered: $O(n d)$ per device)."""
    from jax.sharding import PartitionSpec as P

    mesh = field.mesh
    names = tuple(mesh.axis_names)
    axis = names if len(names) > 1 else names[0]
    n = z.shape[0]
    if n % mesh.devices.size:
        raise ValueError(f"`x`: n = {n} tokens cannot be split over the {mesh.devices.size} devices of the "
                         "mesh (pad or pick n divisible by the device count).")

    def local(zq, zk, A, VT, beta):
        return _attend(zq, zk, A, VT, beta, softmax, field.block_size)

    # check_vma=False: the online-softmax scan carries start replicated and become per-device
    fn = jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(), P(), P(), P()), out_specs=P(axis),
                       check_vma=False)
    return fn(z, z, A, VT, beta)


def _retract(y):
    """Each row (the last axis) divided by its norm: the retraction onto the unit sphere."""
    return y / jnp.linalg.norm(y, axis=-1, keepdims=True)


class _Retracted(diffrax.AbstractLocalInterpolation):
    """A step's dense output, retracted onto the sphere (save times inside a step)."""

    inner: diffrax.AbstractLocalInterpolation

    @property
    def t0(self):
        return self.inner.t0

    @property
    def t1(self):
        return self.inner.t1

    def evaluate(self, t0, t1=None, left=True):
        if t1 is not None:
            return self.evaluate(t1, left=left) - self.evaluate(t0, left=left)
        return _retract(self.inner.evaluate(t0, left=left))


class _RetractedInterpolation(eqx.Module):
    """`interpolation_cls` of [`Projected`][]: builds the wrapped solver's interpolation, retracted
    (hashable: diffrax keeps it as a static field)."""

    inner: Callable = eqx.field(static=True)

    def __call__(self, **kwargs):
        return _Retracted(self.inner(**kwargs))


class Projected(diffrax.AbstractWrappedSolver):
    r"""A diffrax solver whose every step ends on the unit sphere: the wrapped solver's step $y_1$ is
    retracted token by token, $x_i \leftarrow x_i/|x_i|$ (the rows of the `(n, d)` state).

    The retraction changes a step by its distance to the sphere, which is of the size of the local
    error ($O(h^{p+1})$ for a method of order $p$), so the method keeps its order; the tokens stay
    on the sphere to rounding ($|x_i| = 1$ to $\sim 10^{-16}$ at every step in float64) where an
    unprojected RK4 or Tsit5 drifts by its local errors. Each step restarts the wrapped solver
    (`made_jump=True`): a first-same-as-last method such as `Tsit5` re-evaluates its first stage at
    the retracted state (one evaluation more per step) instead of reusing the one at the unretracted
    end. The dense output between steps (save times off the step grid, adaptive steps) is the
    wrapped solver's interpolation towards the retracted end, retracted too: every saved state is
    on the sphere to rounding.

    With [`simulate`][], a fixed-step `Projected` (`Projected(RK4())` with `dt0`; any wrapped
    explicit Runge-Kutta method without an error estimate, or `diffrax.Euler`) runs on the
    fixed-step fast path, each step retracted there too (the same values as diffrax's path to
    rounding; `fast=False` for diffrax's); `Projected(diffrax.Tsit5())` adapts its steps with the
    error estimate of the unretracted step, on diffrax's path.

    **Arguments:** `solver`: a diffrax solver (e.g. [`RK4`][]`()`, `diffrax.Tsit5()`,
    `diffrax.Euler()` for an SDE: a projected Euler-Maruyama scheme).

    For `geometry="sphere"` fields only: the `"euclidean"` and `"layernorm"` dynamics do not live
    on the unit sphere, and retracting them would change them.

    **Cost:** the wrapped solver's, plus one norm per token per step ($O(n d)$); with an FSAL
    method, one field evaluation more per step.

    **Example** (tokens on $S^2$ for 20 time units; every saved state has $|x_i| = 1$ to rounding,
    where plain RK4 drifted by $4 \times 10^{-7}$ over $t \in [0, 4]$ in the tests):

    ```python
    sol = simulate(SelfAttention(Q, K, V, beta=4.0), x0, jnp.linspace(0, 20, 101),
                   solver=Projected(RK4()), dt0=0.05)
    ```
    """

    solver: diffrax.AbstractSolver

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise TypeError(f"`solver` must be a diffrax solver (e.g. RK4() or diffrax.Tsit5()), got "
                            f"{type(self.solver).__name__}.")

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return _RetractedInterpolation(self.solver.interpolation_cls)

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def tableau(self):
        """The wrapped Runge-Kutta method's tableau (its error row tells whether steps adapt)."""
        return self.solver.tableau

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense_info, solver_state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, True)
        y1 = _retract(y1)
        if "y1" in dense_info:
            dense_info = dict(dense_info, y1=y1)
        return y1, y_error, dense_info, solver_state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def shard_tokens(field: SelfAttention, devices=None, *, mesh=None):
    r"""The field with its queries split over devices along the token axis (`jax.shard_map`): each
    device computes the attention of its $n/p$ tokens to all $n$ (the keys gathered, $O(n d)$ per
    device; memory $O(n d + (n/p)\,n)$ dense or $O(n d + \text{block}^2)$ blocked per device).

    **Arguments:** `field` (a [`SelfAttention`][]); `devices` (default all local ones) or `mesh` (a
    `jax.sharding.Mesh`: its axes together split the tokens). $n$ must be divisible by the number of
    devices (checked when the field is called).

    **Returns:** the field, which computes the same values to rounding (the sums are those of the
    single-device computation, by rows).

    **Example** (4 devices, e.g. `XLA_FLAGS=--xla_force_host_platform_device_count=4` on a CPU):

    ```python
    field = shard_tokens(SelfAttention(Q, K, V, beta=1.0))
    sol = simulate(field, x0, ts, solver=Projected(RK4()), dt0=0.05)  # n divisible by 4
    ```
    """
    from jax.sharding import Mesh

    from ..distributed._mesh import check_devices, check_mesh

    if not isinstance(field, SelfAttention):
        raise TypeError(f"`field` must be a SelfAttention, got {type(field).__name__}.")
    if mesh is not None and devices is not None:
        raise ValueError("give `mesh` or `devices`, not both.")
    if mesh is None:
        devices = check_devices(jax.local_devices() if devices is None else devices)
        mesh = Mesh(np.asarray(devices, dtype=object), ("tokens",))
    check_mesh(mesh)
    heads = (lambda a: a) if field.multihead else (lambda a: a[0])
    return SelfAttention(heads(field.Q), heads(field.K), heads(field.V), beta=field.beta,
                         normalisation=field.normalisation, geometry=field.geometry,
                         feedforward=field.feedforward, block_size=field.block_size, noise=field.noise,
                         mesh=mesh)
