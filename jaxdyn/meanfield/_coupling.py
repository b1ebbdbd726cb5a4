r"""Coupling operators: $v \mapsto W v$ for the coupling matrix $W_{ij}$ of a particle system.

Every particle system of `jaxdyn.meanfield` reduces its interaction to products $W V$ with a real
block $V$ of shape `(N, m)` (for Kuramoto: the columns $\cos k\theta$, $\sin k\theta$; for neural
fields: $\sigma(x)$). These operators compute that product in the cheapest exact way:

| operator | graph | cost per product |
|---|---|---|
| [`AllToAll`][] | all-to-all or constant graphon $p$ | $O(N m)$ |
| [`Circulant`][] | convolution graphon on the uniform grid (ring, Fourier) | $O(N m \log N)$ (FFT) |
| [`LowRank`][] | $W = U V^\top$ of rank $r$ (Fourier, step / block graphons) | $O(N r m)$ |
| [`Sparse`][] | edge list / BCOO, $E$ edges | $O(E m)$ (segment sums) |
| [`Dense`][] | anything else | $O(N^2 m)$ multiply-adds |

[`coupling_operator`][] picks one from a graph description (`method=None`: the cheapest exact one) or
builds the one a strategy asks for: [`AllToAllMethod`][], [`DenseMethod`][], [`FFTMethod`][],
[`LowRankMethod`][], [`SparseMethod`][] (subclasses of [`AbstractCouplingMethod`][]).
"""

import abc
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jax.experimental import sparse as jsparse
from jaxtyping import Array

from .._checks import check_finite, check_int, is_concrete
from ._digraph_measure import DigraphMeasure
from ._graphon import (
    AbstractConvolutionGraphon,
    AbstractGraphon,
    AbstractLowRankGraphon,
    ConstantGraphon,
    grid,
)


class AbstractCoupling(eqx.Module):
    """A linear operator $V \\mapsto W V$ on real blocks of shape `(n, m)`."""

    n: AbstractVar[int]

    @abc.abstractmethod
    def matvec(self, v: Array) -> Array:
        """$W v$ for `v` of shape `(n, m)` (or `(n,)`)."""

    def degrees(self) -> Array:
        r"""In-degrees (row sums) $d_i = \sum_j W_{ij}$."""
        return self.matvec(jnp.ones((self.n, 1)))[:, 0]

    def as_matrix(self) -> Array:
        """The dense $n \\times n$ matrix (for general coupling functions and tests)."""
        return self.matvec(jnp.eye(self.n))

    @abc.abstractmethod
    def cmatvec(self, z: Array) -> Array:
        r"""$W z$ for a complex `z` of shape `(n,)` or `(n, m)` (for Kuramoto: $z = e^{ik\theta}$), with
        no complex copy of $W$: one complex FFT pair for [`Circulant`][], a complex gather for
        [`Sparse`][], two real products (real and imaginary parts) otherwise."""

    @abc.abstractmethod
    def pairs(self) -> "AbstractCoupling":
        r"""This operator in a form that evaluates pairwise sums (for a general coupling function):
        itself for [`Dense`][] and [`Sparse`][], a [`Dense`][] copy otherwise (built once)."""

    @abc.abstractmethod
    def pairwise(self, fn: Callable, theta: Array) -> Array:
        r"""$\sum_j W_{ij}\, \mathrm{fn}(\theta_j - \theta_i)$ for every $i$ (through [`pairs`][])."""


def _cmatvec_real(op: AbstractCoupling, z) -> Array:
    """$W z$ through the real product of `[Re z, Im z]` (no complex copy of a real $W$)."""
    z = jnp.asarray(z)
    v = z[:, None] if z.ndim == 1 else z
    m = v.shape[1]
    u = op.matvec(jnp.concatenate([v.real, v.imag], axis=1))
    out = u[:, :m] + 1j * u[:, m:]
    return out[:, 0] if z.ndim == 1 else out


def _as_2d(fn):
    def wrapped(self, v):
        v = jnp.asarray(v)
        if v.ndim == 1:
            return fn(self, v[:, None])[:, 0]
        return fn(self, v)

    return wrapped


class AllToAll(AbstractCoupling):
    r"""$W_{ij} = p$ for all $i, j$: $W v = p \mathbf 1 \mathbf 1^\top v$ in $O(N m)$."""

    weight: Array
    n: int = eqx.field(static=True)

    def __init__(self, n: int, weight=1.0):
        self.n, self.weight = int(n), jnp.asarray(weight, dtype=float)

    @_as_2d
    def matvec(self, v):
        return jnp.broadcast_to(self.weight * jnp.sum(v, axis=0, keepdims=True), v.shape)

    def cmatvec(self, z):
        return _cmatvec_real(self, z)

    def pairs(self) -> AbstractCoupling:
        return Dense(self.as_matrix())

    def pairwise(self, fn, theta) -> Array:
        return self.pairs().pairwise(fn, theta)


class Dense(AbstractCoupling):
    """A dense matrix: one matrix-matrix product (the matrix is read once for all `m` columns)."""

    matrix: Array
    n: int = eqx.field(static=True)

    def __init__(self, matrix):
        self.matrix = check_finite(jnp.asarray(matrix, dtype=float), "graph")
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"`graph` must be a square (N, N) matrix, got shape {self.matrix.shape}.")
        self.n = self.matrix.shape[0]

    @_as_2d
    def matvec(self, v):
        return self.matrix @ v

    def cmatvec(self, z):
        return _cmatvec_real(self, z)

    def pairs(self) -> AbstractCoupling:
        return self

    def pairwise(self, fn, theta) -> Array:
        return jnp.sum(self.matrix * fn(theta[None, :] - theta[:, None]), axis=1)


def auto_split(n: int) -> int:
    r"""The radix $p$ that [`Circulant`][] splits its FFTs by when `split=None`: 1 (plain FFTs) for
    now, whatever $N$ and backend; pass `FFTMethod(split=2)` to split.

    Why: splitting pays only if XLA runs the batch of $p$ shorter FFTs on several cores at once.
    Measured on the shared 2-core CPU machine of the project (other jobs running, load 3-4), $N = 10^7$,
    complex128: one `jnp.fft.fft` 0.275 s, a batch of two of length $N/2$ 0.270 s, both at 1.0 CPU
    second per wall second (no second core to be had), so the butterflies were pure overhead: an
    fft + ifft pair through [`Circulant`][] 0.74 s plain, 0.82 s split in 2; one classical RK4 step of
    the ring Kuramoto (interleaved runs) 2.98 s plain, 3.58 s split in 2 (an earlier, more loaded run:
    9.7 s and 8.6 s). On a quiet machine a batch of two ran in 0.157 s against 0.27-0.29 s for one
    transform: there `split=2` should save about a quarter of each FFT pair; measure before choosing it.
    """
    check_int(n, "n")
    return 1


def twiddles(n: int, p: int) -> Array:
    r"""The twiddle factors $w_N^{rk} = e^{-2\pi i r k / N}$ for $r = 1 .. p-1$, $k < N/p$ of
    [`split_fft`][jaxdyn.meanfield.split_fft] (complex, shape `(p - 1, N/p)`; the angle reduced
    exactly mod $N$ on the host)."""
    n, p = check_int(n, "n"), check_int(p, "p")
    if n % p:
        raise ValueError(f"`p` = {p} must divide `n` = {n}.")
    re, im = _twiddles(n, p)
    return jnp.asarray(re + 1j * im)


def _twiddles(n: int, p: int):
    k = np.arange(n // p, dtype=np.int64)
    r = np.arange(1, p, dtype=np.int64)[:, None]
    angle = -2 * np.pi * ((r * k) % n) / n
    return np.cos(angle), np.sin(angle)


def _small_dft(parts, sign: int):
    r"""$Y_q = \sum_r e^{\mp 2\pi i r q / p} X_r$ over a short list of arrays (radix 2 and 4 by hand)."""
    p = len(parts)
    if p == 2:
        return [parts[0] + parts[1], parts[0] - parts[1]]
    if p == 4:
        a, b, c, d = parts
        s, t = a + c, a - c
        u, v = b + d, (b - d) * (-1j * sign)
        return [s + u, t + v, s - u, t - v]
    out = []
    for q in range(p):
        acc = parts[0]
        for r in range(1, p):
            acc = acc + np.exp(-2j * np.pi * sign * r * q / p) * parts[r]
        out.append(acc)
    return out


def split_fft(x, p: int, twiddle, *, inverse: bool = False):
    r"""The FFT (or inverse FFT) of `x` along its last axis (length $N = p L$) as a batch of $p$
    transforms of length $L$ joined by one radix-$p$ butterfly, so that XLA runs them on $p$ threads.

    Forward (decimation in time): $X_r = \mathrm{FFT}_L(x_{p l + r})$, then
    $X[k + qL] = \sum_r e^{-2\pi i rq/p}\, w_N^{rk} X_r[k]$ (for $p = 2$:
    $X[k] = E[k] + w^k O[k]$, $X[k + N/2] = E[k] - w^k O[k]$). Inverse (decimation in frequency):
    $Z_r[k] = \bar w_N^{rk} \sum_q e^{2\pi i rq/p} X[k + qL]$, $x_{pl + r} = \mathrm{IFFT}_L(Z_r)[l] / p$.
    Equal to `jnp.fft.fft`/`ifft` up to rounding (~1e-15 relative).

    **Arguments:** `x` (complex, last axis of length $N$); `p` (the radix, dividing $N$; 1: the
    plain FFT); `twiddle`: the complex $w_N^{rk} = e^{-2\pi i rk/N}$, $r = 1 .. p-1$, $k < L$, shape
    `(p - 1, L)` (see [`twiddles`][jaxdyn.meanfield.twiddles]); `inverse`: the inverse FFT.

    **Returns:** the transform, shape of `x`.
    """
    n = x.shape[-1]
    p = check_int(p, "p")
    if n % p:
        raise ValueError(f"`p` = {p} must divide the length N = {n} of the last axis of `x`.")
    if p == 1:
        return jnp.fft.ifft(x, axis=-1) if inverse else jnp.fft.fft(x, axis=-1)
    twiddle = jnp.asarray(twiddle)
    if twiddle.shape != (p - 1, n // p):
        raise ValueError(f"`twiddle` must have shape ({p - 1}, {n // p}) (w_N^(rk)), got {twiddle.shape}.")
    lead = x.shape[:-1]
    ell = n // p
    if not inverse:
        xs = jnp.swapaxes(x.reshape(*lead, ell, p), -1, -2)  # (..., p, L): x[p l + r]
        f = jnp.fft.fft(xs, axis=-1)
        parts = [f[..., 0, :]] + [f[..., r, :] * twiddle[r - 1] for r in range(1, p)]
        return jnp.concatenate(_small_dft(parts, 1), axis=-1)
    xq = x.reshape(*lead, p, ell)
    parts = _small_dft([xq[..., q, :] for q in range(p)], -1)
    z = jnp.stack([parts[0]] + [parts[r] * jnp.conj(twiddle[r - 1]) for r in range(1, p)], axis=-2)
    xs = jnp.fft.ifft(z, axis=-1) / p  # (..., p, L)
    return jnp.swapaxes(xs, -1, -2).reshape(*lead, n)


class Circulant(AbstractCoupling):
    r"""A circulant matrix $C_{ij} = c_{(i - j) \bmod N}$, applied by FFTs in $O(N \log N)$.

    Built from a convolution graphon on the grid $x_i = (i + 1/2)/N$: $c_d = k(d/N)$. Since $C$ is
    real, two real columns $a, b$ go through one complex FFT pair: $C(a + ib) = Ca + iCb$ (for
    Kuramoto, $a = \cos\theta$, $b = \sin\theta$, i.e. one FFT pair of $e^{i\theta}$; see
    [`cmatvec`][jaxdyn.meanfield.AbstractCoupling.cmatvec]).

    **Split FFTs on CPU.** XLA's CPU backend runs one FFT on one thread; a batch of FFTs can use
    several cores. With `split` $= p > 1$ every length-$N$ transform becomes a batch of $p$
    transforms of length $N/p$ and radix-$p$ butterflies (decimation in frequency forward, in time
    backward, the spectrum kept in split order: no transposes; equal to the plain product to ~2e-15
    relative). `split=None` asks [`auto_split`][jaxdyn.meanfield.auto_split], which says 1 (plain
    FFTs) for now: on the shared 2-core machine the batch found no free core and the split measured
    slower (figures there). The twiddle factors cost $16 (p - 1)/p$ bytes per node.

    **Arguments:** `column`: the first column $c$ (shape `(N,)`); `split`: `None` (auto), 1 (plain
    FFTs) or the radix $p \ge 2$ (must divide $N$).
    """

    hat_re: Array  # the FFT of the first column, stored as two real arrays (diffrax prefers real
    hat_im: Array  # leaves); with split p > 1 in split order: [r N/p + k] holds hat[p k + r]
    tw_re: Array | None  # the twiddles w_N^{rk} of the split FFT, shape (p - 1, N/p), or None
    tw_im: Array | None
    n: int = eqx.field(static=True)
    split: int = eqx.field(static=True)

    def __init__(self, column, *, split: int | None = None):
        column = jnp.asarray(column, dtype=float)
        if column.ndim != 1 or column.shape[0] < 1:
            raise ValueError(f"`column` must be a vector of shape (N,), got shape {column.shape}.")
        self.n = n = column.shape[0]
        if split is None:
            split = auto_split(n)
        split = check_int(split, "split")
        if n % split:
            raise ValueError(f"`split` = {split} must divide N = {n}.")
        self.split = split
        if split > 1:
            tw_re, tw_im = _twiddles(n, split)
            self.tw_re, self.tw_im = jnp.asarray(tw_re, column.dtype), jnp.asarray(tw_im, column.dtype)
        else:
            self.tw_re = self.tw_im = None
        hat = jnp.fft.fft(column)
        if split > 1:  # the spectrum in the order of the split transforms: [r L + k] holds hat[p k + r]
            hat = hat.reshape(n // split, split).T.reshape(n)
        self.hat_re, self.hat_im = hat.real, hat.imag

    def unsplit(self) -> "Circulant":
        """The same operator with plain FFTs (`split = 1`; the spectrum back in natural order)."""
        if self.split == 1:
            return self
        p, ell = self.split, self.n // self.split

        def natural(h):
            return h.reshape(p, ell).T.reshape(self.n)

        out = object.__new__(Circulant)  # the fields directly: no FFT of a column again
        for name, value in (("hat_re", natural(self.hat_re)), ("hat_im", natural(self.hat_im)),
                            ("tw_re", None), ("tw_im", None), ("n", self.n), ("split", 1)):
            object.__setattr__(out, name, value)
        return out

    def _product(self, z):
        r"""$C z$ for one complex vector: $\mathrm{IFFT}(\mathrm{FFT}(z) \hat c)$."""
        hat = self.hat_re + 1j * self.hat_im
        p = self.split
        if p == 1:
            return jnp.fft.ifft(jnp.fft.fft(z) * hat)
        # Decimation in frequency forward, in time backward: the spectrum stays in the split order
        # (p, L) with [r, k] = X[p k + r], so no transpose of N-vectors is needed anywhere.
        ell = self.n // p
        tw = self.tw_re + 1j * self.tw_im
        zq = z.reshape(p, ell)  # [q, l] = z[q L + l]
        parts = _small_dft([zq[q] for q in range(p)], 1)
        y = jnp.stack([parts[0]] + [parts[r] * tw[r - 1] for r in range(1, p)])
        spec = jnp.fft.fft(y, axis=-1) * hat.reshape(p, ell)  # p transforms: p threads
        back = jnp.fft.ifft(spec, axis=-1)
        parts = [back[0]] + [back[r] * jnp.conj(tw[r - 1]) for r in range(1, p)]
        return jnp.concatenate(_small_dft(parts, -1)) / p

    def cmatvec(self, z):
        z = jnp.asarray(z)
        if z.ndim == 1:
            return self._product(z)
        # One 1-D FFT pair per column: a transposed (m, N) operand of a batched FFT gets a layout
        # that XLA's CPU FFT rejects once the nodes are sharded over devices (fft_thunk RET_CHECK
        # IsMonotonicWithDim0Major); 1-D operands always have the default layout.
        return jnp.stack([self.cmatvec(z[:, j]) for j in range(z.shape[1])], axis=1)

    @_as_2d
    def matvec(self, v):
        m = v.shape[1]
        if m == 1:
            return self.cmatvec(v[:, 0]).real[:, None]
        if m % 2:
            v = jnp.concatenate([v, jnp.zeros((self.n, 1), v.dtype)], axis=1)
        h = v.shape[1] // 2
        w = self.cmatvec(v[:, :h] + 1j * v[:, h:])
        return jnp.concatenate([w.real, w.imag], axis=1)[:, :m]

    def pairs(self) -> AbstractCoupling:
        return Dense(self.as_matrix())

    def pairwise(self, fn, theta) -> Array:
        return self.pairs().pairwise(fn, theta)


class LowRank(AbstractCoupling):
    r"""$W = U V^\top$ with $U, V$ of shape `(n, r)`: $W v = U (V^\top v)$ in $O(N r m)$."""

    u: Array
    v: Array
    n: int = eqx.field(static=True)

    def __init__(self, u, v):
        self.u, self.v = jnp.asarray(u, dtype=float), jnp.asarray(v, dtype=float)
        self.n = self.u.shape[0]

    @_as_2d
    def matvec(self, v):
        return self.u @ (self.v.T @ v)

    def cmatvec(self, z):
        return _cmatvec_real(self, z)

    def pairs(self) -> AbstractCoupling:
        return Dense(self.as_matrix())

    def pairwise(self, fn, theta) -> Array:
        return self.pairs().pairwise(fn, theta)


_EDGE_CHUNK = 1 << 22  # edges per chunk of a sparse product (64 MB of complex128 temporaries)


class Sparse(AbstractCoupling):
    r"""Edge list $(i_e, j_e, w_e)$: $(W v)_i = \sum_{e: i_e = i} w_e v_{j_e}$ by a segment sum, $O(E)$.

    Lean at large $E$: the edges are kept sorted by row (CSR order, so the segment sum runs with
    `indices_are_sorted=True`), indices are `int32` (8 bytes per directed edge), and an unweighted
    graph (`weights=None`) or a scalar weight stores no per-edge weights.

    **Arguments:** `rows`, `cols` (node indices in $[0, n)$, equal lengths), `weights` (`None`: 1, a
    scalar, or one weight per edge; may be traced, for derivatives), `n` (the number of nodes).
    Concrete edges out of row order are sorted once (with their weights).
    """

    rows: Array
    cols: Array
    weights: Array | None
    n: int = eqx.field(static=True)
    rows_sorted: bool = eqx.field(static=True)

    def __init__(self, rows, cols, weights=None, n: int | None = None):
        if n is None:
            raise TypeError("`n` (the number of nodes) is required.")
        self.n = check_int(n, "n")
        concrete = is_concrete(rows) and is_concrete(cols)
        for idx, name in ((rows, "rows"), (cols, "cols")):
            if is_concrete(idx):
                i = np.asarray(idx)
                if i.ndim != 1:
                    raise ValueError(f"`{name}` must be a vector of node indices, got shape {i.shape}.")
                if i.size and (i.min() < 0 or i.max() >= self.n):
                    raise ValueError(f"`{name}` has node indices outside [0, {self.n}) (got {i.min()} .. "
                                     f"{i.max()}); out-of-range edges would be dropped or clamped silently.")
        if self.n >= 2**31:
            raise ValueError(f"`n` = {self.n} nodes do not fit int32 indices.")
        order = None
        if concrete:  # sort by row on the host (CSR order), once
            rows, cols = np.asarray(rows, dtype=np.int32), np.asarray(cols, dtype=np.int32)
            if rows.shape == cols.shape and rows.size > 1 and not bool(np.all(rows[1:] >= rows[:-1])):
                order = np.argsort(rows, kind="stable")
                rows, cols = rows[order], cols[order]
        rows = jnp.asarray(rows, dtype=jnp.int32)
        cols = jnp.asarray(cols, dtype=jnp.int32)
        if cols.shape != rows.shape:
            raise ValueError(f"`rows` and `cols` must have the same length, got {rows.shape}, {cols.shape}.")
        if weights is not None:
            weights = jnp.asarray(weights, dtype=float)
            if weights.ndim > 1 or (weights.ndim == 1 and weights.shape != rows.shape):
                raise ValueError(f"`weights` must be None, a scalar or one weight per edge {rows.shape}, "
                                 f"got {weights.shape}.")
            weights = check_finite(weights, "weights")
            if order is not None and weights.ndim == 1:
                weights = weights[order]
        self.rows_sorted = concrete
        self.rows, self.cols, self.weights = rows, cols, weights

    @property
    def n_edges(self) -> int:
        """The number of (directed) edges $E$."""
        return self.rows.shape[0]

    def _segment_sum(self, vals):
        return jax.ops.segment_sum(vals, self.rows, num_segments=self.n, indices_are_sorted=self.rows_sorted)

    def _weighted(self, vals, weights=None):
        w = self.weights if weights is None else weights
        if w is None:
            return vals
        return (w[:, None] if w.ndim == 1 and vals.ndim == 2 else w) * vals

    def _gather_sum(self, v):
        r"""$\sum_{e: i_e = i} w_e v_{j_e}$ over chunks of `_EDGE_CHUNK` edges: the gathered values
        never exist for all $E$ edges at once (at $E = 10^8$ that would be 1.6 GB in complex128)."""
        e = self.n_edges
        if e <= _EDGE_CHUNK:
            return self._segment_sum(self._weighted(v[self.cols]))
        per_edge = self.weights is not None and self.weights.ndim == 1

        def chunk(start, size):
            rows = jax.lax.dynamic_slice_in_dim(self.rows, start, size)
            cols = jax.lax.dynamic_slice_in_dim(self.cols, start, size)
            w = jax.lax.dynamic_slice_in_dim(self.weights, start, size) if per_edge else None
            vals = self._weighted(v[cols], w)
            return jax.ops.segment_sum(vals, rows, num_segments=self.n, indices_are_sorted=self.rows_sorted)

        full, rest = divmod(e, _EDGE_CHUNK)
        acc = jax.lax.fori_loop(0, full, lambda k, acc: acc + chunk(k * _EDGE_CHUNK, _EDGE_CHUNK),
                                jnp.zeros((self.n,) + v.shape[1:], v.dtype))
        return acc + chunk(full * _EDGE_CHUNK, rest) if rest else acc

    @_as_2d
    def matvec(self, v):
        return self._gather_sum(v)

    def cmatvec(self, z):
        return self._gather_sum(jnp.asarray(z))

    def pairs(self) -> AbstractCoupling:
        return self

    def pairwise(self, fn, theta) -> Array:
        r"""$\sum_{e: i_e = i} w_e\, \mathrm{fn}(\theta_{j_e} - \theta_i)$ in $O(E)$ evaluations."""
        return self._segment_sum(self._weighted(fn(theta[self.cols] - theta[self.rows])))


@eqx.filter_jit
def evaluate_matrix(graph: AbstractGraphon, x) -> Array:
    """$W(x_i, x_j)$ for all pairs, as one compiled program (not one per operation)."""
    return jnp.asarray(graph(x[:, None], x[None, :]), dtype=float)


@eqx.filter_jit
def degrees(op: AbstractCoupling) -> Array:
    """Row sums of a coupling operator (compiled once per operator type and size)."""
    return op.degrees().astype(float)


def _positions(positions, n: int):
    if positions is None or (isinstance(positions, str) and positions == "grid"):
        return grid(n), True
    if isinstance(positions, str):
        raise ValueError(f"`positions` must be None, 'grid' or an array of shape ({n},), got {positions!r}.")
    x = jnp.asarray(positions, dtype=float)
    if x.shape != (n,):
        raise ValueError(f"`positions` must have shape ({n},), got {x.shape}.")
    xn = np.asarray(x)
    if np.any(xn < 0) or np.any(xn > 1):
        raise ValueError("`positions` must lie in [0, 1].")
    return x, False


def _dense_to_sparse(matrix, name: str) -> Sparse:
    if not is_concrete(matrix):
        raise TypeError(f"`{name}` must be concrete for `method='sparse'`: the sparsity pattern (which "
                        "entries are non-zero) is discrete, with no derivative. To differentiate edge "
                        "weights pass an edge list `(rows, cols, weights)` with traced `weights`.")
    m = np.asarray(matrix)
    rows, cols = np.nonzero(m)
    return Sparse(rows, cols, m[rows, cols], m.shape[0])


class AbstractCouplingMethod(eqx.Module):
    """How a graph becomes a coupling operator: the `method` of [`coupling_operator`][] (and of
    [`Kuramoto`][], [`NeuralField`][], [`ott_antonsen`][], [`vlasov`][], [`local_order_parameter`][]).

    `method=None` picks the cheapest exact operator: a graphon asks each method in turn whether it
    is the preferred one for it ([`AllToAllMethod`][], then [`FFTMethod`][], [`LowRankMethod`][],
    [`DenseMethod`][]); a plain matrix is [`DenseMethod`][], an edge list or BCOO matrix
    [`SparseMethod`][]. A method that needs structure the graph does not declare raises a
    `ValueError` saying what it needs.
    """

    @abc.abstractmethod
    def from_graphon(self, graphon: AbstractGraphon, x: Array, *, on_grid: bool) -> AbstractCoupling:
        """The operator $W_{ij} = W(x_i, x_j)$ of `graphon` at the positions `x` (`on_grid`: `x` is
        the uniform grid)."""

    @abc.abstractmethod
    def from_matrix(self, matrix: Array, *, what: str) -> AbstractCoupling:
        """The operator of a dense coupling matrix (`what` names it in errors)."""

    @abc.abstractmethod
    def from_edges(self, edges: "Sparse") -> AbstractCoupling:
        """The operator of an edge list (given as a [`Sparse`][] operator)."""

    @abc.abstractmethod
    def preferred_for(self, graphon: AbstractGraphon, x: Array, *, on_grid: bool) -> bool:
        """Whether `method=None` picks this method for `graphon` (it is exact and the cheapest)."""


def _needs_structure(method: AbstractCouplingMethod, what: str) -> ValueError:
    return ValueError(f"`method={method!r}` needs structure that {what} does not declare; pass a graphon "
                      "(e.g. graphons.fourier(...)) or use DenseMethod() / SparseMethod().")


class _AbstractGraphonMethod(AbstractCouplingMethod):
    """A method that needs the structure only a graphon declares: a matrix or an edge list is a
    `ValueError` naming the method and what to pass instead."""

    def from_matrix(self, matrix, *, what):
        raise _needs_structure(self, what)

    def from_edges(self, edges):
        raise _needs_structure(self, "an edge list")


class AllToAllMethod(_AbstractGraphonMethod):
    r"""All-to-all coupling $W \equiv p$ in $O(N m)$: `graph=None` or a constant graphon."""

    def from_graphon(self, graphon, x, *, on_grid):
        if not isinstance(graphon, ConstantGraphon):
            raise ValueError("`method=AllToAllMethod()` (all_to_all) needs `graph=None` or a "
                             f"ConstantGraphon, got {type(graphon).__name__}.")
        return AllToAll(x.shape[0], graphon.p)

    def preferred_for(self, graphon, x, *, on_grid):
        return isinstance(graphon, ConstantGraphon)


class FFTMethod(_AbstractGraphonMethod):
    r"""A circulant operator applied by FFTs in $O(N m \log N)$: a convolution graphon on the grid.

    **Arguments:** `split`: how each FFT is split into a batch of shorter ones (see [`Circulant`][]):
    `None` ([`auto_split`][jaxdyn.meanfield.auto_split]: plain FFTs for now), 1 (plain) or a radix
    $p \ge 2$ dividing $N$ (worth it only with idle cores: measure).
    """

    split: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.split is not None:
            check_int(self.split, "split")

    def from_graphon(self, graphon, x, *, on_grid):
        if not isinstance(graphon, AbstractConvolutionGraphon):
            raise ValueError("`method=FFTMethod()` (fft) needs a convolution graphon (ring, small world, "
                             f"Fourier, constant), got {type(graphon).__name__}.")
        if not on_grid:
            raise ValueError("`method=FFTMethod()` (fft) needs grid positions (`positions=None` or 'grid').")
        n = x.shape[0]
        split = self.split if self.split is None or n % self.split == 0 else None
        if self.split is not None and split is None:
            raise ValueError(f"`split` = {self.split} of FFTMethod must divide N = {n}.")
        return Circulant(graphon.kernel(jnp.arange(n) / n), split=split)

    def preferred_for(self, graphon, x, *, on_grid):
        return isinstance(graphon, AbstractConvolutionGraphon) and on_grid


class LowRankMethod(_AbstractGraphonMethod):
    r"""$W = U V^\top$ in $O(N r m)$: a low-rank graphon (preferred when $r \le N/4$)."""

    def from_graphon(self, graphon, x, *, on_grid):
        if not isinstance(graphon, AbstractLowRankGraphon):
            raise ValueError("`method=LowRankMethod()` (low_rank) needs a low-rank graphon, got "
                             f"{type(graphon).__name__}.")
        return LowRank(*graphon.factors(x))

    def preferred_for(self, graphon, x, *, on_grid):
        return (isinstance(graphon, AbstractLowRankGraphon)
                and graphon.factors(x[:1])[0].shape[1] <= x.shape[0] // 4)


class DenseMethod(AbstractCouplingMethod):
    r"""A dense matrix, $O(N^2 m)$ multiply-adds per product: any graph."""

    def from_graphon(self, graphon, x, *, on_grid):
        return Dense(evaluate_matrix(graphon, x))

    def from_matrix(self, matrix, *, what):
        return Dense(matrix)

    def from_edges(self, edges):
        return Dense(edges.as_matrix())

    def preferred_for(self, graphon, x, *, on_grid):
        return True


class SparseMethod(AbstractCouplingMethod):
    r"""An edge list applied by segment sums, $O(E m)$: the non-zero entries (a concrete pattern)."""

    def from_graphon(self, graphon, x, *, on_grid):
        return _dense_to_sparse(evaluate_matrix(graphon, x), "graph")

    def from_matrix(self, matrix, *, what):
        return _dense_to_sparse(matrix, "graph")

    def from_edges(self, edges):
        return edges

    def preferred_for(self, graphon, x, *, on_grid):
        return False


_PREFERENCE = (AllToAllMethod(), FFTMethod(), LowRankMethod(), DenseMethod())
_OLD_STRINGS = {"all_to_all": AllToAllMethod, "dense": DenseMethod, "fft": FFTMethod,
                "low_rank": LowRankMethod, "sparse": SparseMethod}


def as_method(method, *, stacklevel: int = 3) -> AbstractCouplingMethod | None:
    """Check a `method` argument: `None` or an [`AbstractCouplingMethod`][]; the old strings
    (`"auto"`, `"dense"`, `"fft"`, ...) still work for one release with a `DeprecationWarning`."""
    if method is None or isinstance(method, AbstractCouplingMethod):
        return method
    if isinstance(method, str):
        if method == "auto":
            warnings.warn("`method='auto'` is deprecated: pass `method=None` (the cheapest exact coupling; "
                          "the string goes in jaxdyn 0.3).", DeprecationWarning, stacklevel=stacklevel)
            return None
        if method in _OLD_STRINGS:
            cls = _OLD_STRINGS[method]
            warnings.warn(f"`method={method!r}` is deprecated: pass "
                          f"`method=jaxdyn.meanfield.{cls.__name__}()` (the string goes in jaxdyn 0.3).",
                          DeprecationWarning, stacklevel=stacklevel)
            return cls()
        raise ValueError(f"`method` must be None or a coupling method (AllToAllMethod(), DenseMethod(), "
                         f"FFTMethod(), LowRankMethod(), SparseMethod()), got {method!r}.")
    raise TypeError(f"`method` must be None or an AbstractCouplingMethod (e.g. DenseMethod()), got "
                    f"{type(method).__name__}.")


def coupling_operator(graph, n: int, *, positions=None, method: AbstractCouplingMethod | None = None
                      ) -> AbstractCoupling:
    r"""The coupling operator of `graph` for `n` nodes at `positions`.

    **Arguments:**

    - `graph`: `None` (all-to-all), an `(n, n)` array (dense, $W_{ij}$ = weight of $j \to i$), a
      `jax.experimental.sparse.BCOO` matrix or an edge list `(rows, cols)` / `(rows, cols, weights)`
      (sparse), an [`AbstractGraphon`][], a [`DigraphMeasure`][] or an [`AbstractCoupling`][] (used
      as is).
    - `n`: the number of nodes.
    - `positions`: node positions in $[0, 1]$ for graphons and digraph measures: `None`/`"grid"`
      ($x_i = (i + 1/2)/n$) or an array of shape `(n,)` (e.g. sampled uniformly).
    - `method`: `None` (the cheapest exact operator, see the module table and
      [`AbstractCouplingMethod`][]) or a strategy: [`AllToAllMethod`][], [`DenseMethod`][],
      [`FFTMethod`][], [`LowRankMethod`][], [`SparseMethod`][]. The strings `"auto"`,
      `"all_to_all"`, `"dense"`, `"fft"`, `"low_rank"`, `"sparse"` are deprecated.

    **Returns:** an [`AbstractCoupling`][] with $W_{ij} = W(x_i, x_j)$ for graphons.
    """
    method = as_method(method)
    if isinstance(graph, AbstractCoupling):
        if graph.n != n:
            raise ValueError(f"`graph` has {graph.n} nodes but `omega` has {n}.")
        return graph
    if graph is None:  # the constant graphon 1 on the grid
        return coupling_operator(ConstantGraphon(1.0), n, method=method)
    if isinstance(graph, DigraphMeasure):
        x, _ = _positions(positions, n)
        if graph.atom_positions is None and isinstance(graph.density, AbstractGraphon):
            return coupling_operator(graph.density, n, positions=positions, method=method)
        matrix = graph.coupling_matrix(x)
        return (DenseMethod() if method is None else method).from_matrix(
            matrix, what="a DigraphMeasure with atoms or a general density")
    if isinstance(graph, AbstractGraphon):
        x, on_grid = _positions(positions, n)
        if method is None:
            method = next(m for m in _PREFERENCE if m.preferred_for(graph, x, on_grid=on_grid))
        return method.from_graphon(graph, x, on_grid=on_grid)
    if isinstance(graph, jsparse.BCOO):
        if graph.shape != (n, n):
            raise ValueError(f"`graph` must have shape ({n}, {n}) like `omega`, got {graph.shape}.")
        idx = graph.indices
        if is_concrete(idx) and idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"`graph` (a BCOO matrix) has indices outside [0, {n}).")
        edges = Sparse(graph.indices[:, 0], graph.indices[:, 1], graph.data, n)
        return (SparseMethod() if method is None else method).from_edges(edges)
    if isinstance(graph, tuple | list):
        if len(graph) not in (2, 3):
            raise ValueError("`graph` as an edge list must be (rows, cols) or (rows, cols, weights).")
        rows, cols = np.asarray(graph[0]), np.asarray(graph[1])
        weights = None if len(graph) == 2 else graph[2]
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError("`graph` edge list: rows and cols must be vectors of equal length.")
        if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= n or cols.max() >= n):
            raise ValueError(f"`graph` edge list has node indices outside [0, {n}) (n from `omega`).")
        edges = Sparse(rows, cols, weights, n)
        return (SparseMethod() if method is None else method).from_edges(edges)
    matrix = jnp.asarray(graph)
    if matrix.shape != (n, n):
        raise ValueError(f"`graph` must have shape ({n}, {n}) to match `omega`, got {matrix.shape}.")
    return (DenseMethod() if method is None else method).from_matrix(matrix, what="a plain matrix")
