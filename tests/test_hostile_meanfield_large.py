"""The hostile-input table of the large-N entry points of `jaxdyn.meanfield`: `simulate(observe=,
snapshots=, fast=)` (`fast`: the fixed-step path), the observables, `sample_edges` and the lean
`Sparse` coupling."""

import jax
import jax.numpy as jnp
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.meanfield import graphons
from tests.helpers import Hostile, hostile_ids, run_hostile

N = 6
OMEGA = jnp.linspace(-1.0, 1.0, N)
THETA = jnp.sin(jnp.arange(N, dtype=float))
TS = jnp.linspace(0.0, 1.0, 3)
KEY = jax.random.key(0)


def _simulate(**kwargs):
    return mf.simulate(mf.Kuramoto(OMEGA, 1.0), THETA, TS, solver=mf.RK4(), dt0=0.1, **kwargs)


class _BadGraphon(graphons.AbstractGraphon):
    def __call__(self, x, y):
        return 1.5 + 0 * (x + y)


ROWS = [
    # --- simulate: observe / snapshots ---
    Hostile("simulate: observe not callable", lambda: _simulate(observe=3), TypeError, r"`observe`"),
    Hostile("simulate: observe empty dict", lambda: _simulate(observe={}), ValueError, r"`observe`"),
    Hostile("simulate: observe dict value not callable", lambda: _simulate(observe={"r": 1.0}), TypeError,
            r"`observe\['r'\]`"),
    Hostile("simulate: observe dict key not a string", lambda: _simulate(observe={1: mf.OrderParameter()}),
            TypeError, r"`observe` keys"),
    Hostile("simulate: snapshots without observe", lambda: _simulate(snapshots=TS), ValueError,
            r"`snapshots` needs `observe`"),
    Hostile("simulate: snapshots after the end",
            lambda: _simulate(observe=mf.OrderParameter(), snapshots=[0.5, 2.0]), ValueError, r"`snapshots`"),
    Hostile("simulate: snapshots not increasing",
            lambda: _simulate(observe=mf.OrderParameter(), snapshots=[0.5, 0.2]), ValueError,
            r"`snapshots`.*increasing"),
    Hostile("simulate: snapshots a matrix",
            lambda: _simulate(observe=mf.OrderParameter(), snapshots=jnp.ones((2, 2))), ValueError,
            r"`snapshots`"),
    Hostile("simulate: NaN snapshot",
            lambda: _simulate(observe=mf.OrderParameter(), snapshots=[jnp.nan]), ValueError, r"`snapshots`"),
    # --- observables ---
    Hostile("OrderParameter: harmonic 0", lambda: mf.OrderParameter(0), ValueError, r"`harmonic`"),
    Hostile("OrderParameter: float harmonic", lambda: mf.OrderParameter(1.5), TypeError, r"`harmonic`"),
    Hostile("LocalOrder: no bins", lambda: mf.LocalOrder(0), ValueError, r"`n_bins`"),
    Hostile("LocalOrder: more bins than nodes", lambda: _simulate(observe=mf.LocalOrder(N + 1)), ValueError,
            r"`n_bins`"),
    # --- sample_edges ---
    Hostile("sample_edges: not a graphon", lambda: mf.sample_edges(jnp.ones((4, 4)), 4, key=KEY), TypeError,
            r"`graphon`"),
    Hostile("sample_edges: zero nodes", lambda: mf.sample_edges(graphons.ring(0.2), 0, key=KEY), ValueError,
            r"`n`"),
    Hostile("sample_edges: float n", lambda: mf.sample_edges(graphons.ring(0.2), 4.0, key=KEY), TypeError,
            r"`n`"),
    Hostile("sample_edges: density 0", lambda: mf.sample_edges(graphons.ring(0.2), 4, key=KEY, density=0.0),
            ValueError, r"`density`"),
    Hostile("sample_edges: density > 1",
            lambda: mf.sample_edges(graphons.ring(0.2), 4, key=KEY, density=1.5), ValueError, r"`density`"),
    Hostile("sample_edges: vector density",
            lambda: mf.sample_edges(graphons.ring(0.2), 4, key=KEY, density=jnp.ones(2)), TypeError,
            r"`density`"),
    Hostile("sample_edges: traced density",
            lambda: jax.jit(lambda d: mf.sample_edges(graphons.ring(0.2), 4, key=KEY, density=d))(0.5),
            TypeError, r"`density`"),
    Hostile("sample_edges: graphon values above 1",
            lambda: mf.sample_edges(_BadGraphon(), 8, key=KEY), ValueError, r"`graphon` values"),
    Hostile("sample_edges: traced graphon",
            lambda: jax.jit(lambda c: mf.sample_edges(graphons.fourier(c), 4, key=KEY))(jnp.ones(2) / 4),
            TypeError,
            r"`graphon`"),
    Hostile("sample_edges: no key", lambda: mf.sample_edges(graphons.ring(0.2), 4, key=None), TypeError,
            r"`key`"),
    Hostile("sample_edges: a float as key", lambda: mf.sample_edges(graphons.ring(0.2), 4, key=jnp.ones(2)),
            TypeError, r"`key`"),
    Hostile("sample_edges: positions of another length",
            lambda: mf.sample_edges(graphons.ring(0.2), 4, key=KEY, positions=jnp.ones(3) / 2), ValueError,
            r"`positions`"),
    Hostile("sample_edges: positions outside [0, 1]",
            lambda: mf.sample_edges(graphons.ring(0.2), 4, key=KEY, positions=jnp.array([0, 0.5, 1, 2.0])),
            ValueError, r"`positions`"),
    Hostile("sample_edges: too dense for an edge list",
            lambda: mf.sample_edges(graphons.ring(0.2), 10**6, key=KEY, density=0.5), ValueError,
            r"`density`"),
    # --- split FFTs ---
    Hostile("Circulant: split 0", lambda: mf.Circulant(jnp.ones(8), split=0), ValueError, r"`split`"),
    Hostile("Circulant: float split", lambda: mf.Circulant(jnp.ones(8), split=2.0), TypeError, r"`split`"),
    Hostile("Circulant: split not dividing N", lambda: mf.Circulant(jnp.ones(9), split=2), ValueError,
            r"`split`"),
    Hostile("Circulant: matrix column", lambda: mf.Circulant(jnp.ones((3, 3))), ValueError, r"`column`"),
    Hostile("FFTMethod: split not dividing N",
            lambda: mf.Kuramoto(jnp.zeros(9), 1.0, graph=graphons.ring(0.2), method=mf.FFTMethod(split=2)),
            ValueError, r"`split`"),
    Hostile("FFTMethod: split 0", lambda: mf.FFTMethod(split=0), ValueError, r"`split`"),
    Hostile("split_fft: p not dividing N", lambda: mf.split_fft(jnp.ones(9, complex), 2, jnp.ones((1, 4))),
            ValueError, r"`p`"),
    Hostile("split_fft: twiddles of another shape",
            lambda: mf.split_fft(jnp.ones(8, complex), 2, jnp.ones((1, 3))), ValueError, r"`twiddle`"),
    Hostile("twiddles: p not dividing n", lambda: mf.twiddles(9, 2), ValueError, r"`p`"),
    Hostile("auto_split: n = 0", lambda: mf.auto_split(0), ValueError, r"`n`"),
    # --- two_layer_gd(mesh=) ---
    Hostile("two_layer_gd: mesh not a Mesh",
            lambda: mf.two_layer_gd(mf.TwoLayer(jnp.ones(3), jnp.ones((3, 2))), jnp.ones((4, 2)), jnp.ones(4),
                                    n_steps=1, lr=0.1, mesh="cpu"), TypeError, r"`mesh`"),
    # --- Sparse ---
    Hostile("Sparse: no n", lambda: mf.Sparse([0, 1], [1, 0]), TypeError, r"`n`"),
    Hostile("Sparse: weights a matrix", lambda: mf.Sparse([0, 1], [1, 0], jnp.ones((2, 2)), 2), ValueError,
            r"`weights`"),
    Hostile("Sparse: NaN weight", lambda: mf.Sparse([0, 1], [1, 0], jnp.array([1.0, jnp.nan]), 2),
            ValueError, r"`weights`"),
    Hostile("Sparse: negative row", lambda: mf.Sparse([-1, 1], [1, 0], None, 2), ValueError, r"`rows`"),
    # --- simulate: fast (the fixed-step path) ---
    Hostile("simulate: fast a string", lambda: _simulate(fast="yes"), TypeError, r"`fast`"),
    Hostile("simulate: fast an int", lambda: _simulate(fast=1), TypeError, r"`fast`"),
    Hostile("simulate: fast None", lambda: _simulate(fast=None), TypeError, r"`fast`"),
    Hostile("simulate: fast an array", lambda: _simulate(fast=jnp.asarray(True)), TypeError, r"`fast`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
