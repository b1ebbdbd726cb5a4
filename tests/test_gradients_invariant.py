"""The gradient-check matrix of `jaxdyn.invariant`: the implicit derivatives of invariant objects
against five-point central differences of the same function (float64, h = eps^(1/5)), in forward
(`jax.jvp`) and reverse (`jax.grad`) mode, under `eqx.filter_jit`, at 1e-6 relative, and against
closed forms.

Rows here: equilibria (Lorenz C+ in rho), the rightmost characteristic root of x' = -x(t - tau) in
tau, the Hopf delay of Hutchinson's equation in r. Checked in their own files: periods and Floquet
multipliers of periodic orbits in the field's parameters (reverse mode, `test_invariant_periodic.py`;
the variational solve is reverse-mode only), DDE cycle periods and multipliers
(`test_invariant_dde_periodic.py`), located bifurcation points of `continuation` (forward mode only:
the branch is a `while_loop`; `test_invariant_continuation.py`, dense and matrix-free), saddle
manifolds (`test_invariant_manifolds.py`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.invariant as inv

from .helpers import rel_err

RTOL = 1e-6
H = float(np.finfo(np.float64).eps ** 0.2)


def _central(fn, x):
    return float((-fn(x + 2 * H) + 8 * fn(x + H) - 8 * fn(x - H) + fn(x - 2 * H)) / (12 * H))


def _lorenz(t, y, rho):
    x, y_, z = y
    return jnp.array([10.0 * (y_ - x), x * (rho - z) - y_, x * y_ - 8 / 3 * z])


def _c_plus(rho):
    """The x-coordinate of C+ (the largest x among the equilibria found)."""
    res = inv.equilibria(_lorenz, -30 * jnp.ones(3), 30 * jnp.ones(3), args=rho,
                         key=jax.random.key(0), n_starts=8, throw=False)
    return jnp.max(jnp.where(res.found, res.points[:, 0], -jnp.inf))


def _abscissa(tau):
    res = inv.characteristic_roots(jnp.zeros((1, 1)), -jnp.ones((1, 1, 1)), jnp.reshape(tau, (1,)),
                                   n_roots=2, throw=False)
    return jnp.real(res.roots[0])


def _hutchinson(t, y, yd, a):
    return a[0] * y * (1 - yd[0])


def _hopf_delay(r):
    res = inv.dde_hopf(_hutchinson, jnp.ones(1), lambda a: jnp.array([a[1]]), 1.0, args=(r, 1.0),
                       parameter=lambda a, p: (a[0], p), throw=False)
    return res.parameter


ROWS = {
    # name: (function, point, closed-form derivative or None)
    "equilibria: Lorenz C+ in rho": (_c_plus, 22.0, np.sqrt(8 / 3) / (2 * np.sqrt(21.0))),
    "characteristic_roots: rightmost root in tau": (_abscissa, 1.0, None),
    "dde_hopf: Hutchinson's Hopf delay in r": (_hopf_delay, 1.3, -np.pi / (2 * 1.3**2)),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_forward_and_reverse_match_central_differences(name):
    fn, x, exact = ROWS[name]
    x = jnp.asarray(x)
    fd = _central(fn, x)
    rev = float(eqx.filter_jit(jax.grad(fn))(x))
    _, fwd = eqx.filter_jit(lambda p: jax.jvp(fn, (p,), (jnp.ones_like(p),)))(x)
    assert rel_err(rev, fd) < RTOL, (rev, fd)
    assert rel_err(float(fwd), fd) < RTOL, (float(fwd), fd)
    if exact is not None:
        assert rel_err(rev, exact) < RTOL, (rev, exact)
