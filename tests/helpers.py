"""Helpers shared by the tests: central finite differences with the right step."""

import jax
import jax.numpy as jnp
import numpy as np


def fd_step(x, dtype=np.float64):
    """eps^(1/3) * scale: the optimal step for central differences."""
    scale = max(1.0, float(np.max(np.abs(np.asarray(x))))) if np.size(x) else 1.0
    return float(np.finfo(dtype).eps ** (1.0 / 3.0) * scale)


def central_directional(fn, x, v, h):
    """(fn(x + h v) - fn(x - h v)) / (2h), for PyTrees x and v."""
    plus = jax.tree_util.tree_map(lambda a, b: a + h * b, x, v)
    minus = jax.tree_util.tree_map(lambda a, b: a - h * b, x, v)
    return jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), fn(plus), fn(minus))


def rel_err(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def random_like(key, tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, jnp.shape(l), jnp.result_type(l)) for k, l in zip(keys, leaves)]
    )


# ---------------------------------------------------------------------------------------------
# The hostile-input tables (tests/test_hostile_<area>.py). Each area keeps one list `ROWS` of
# `Hostile` rows and parametrises one test over it with `run_hostile`; tests/test_hostile_count.py
# checks the totals. Adding a public entry point means adding its rows.
# ---------------------------------------------------------------------------------------------

import dataclasses  # noqa: E402
import re  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

# Words that make a message obscure: it names an internal module or variable instead of the argument.
OBSCURE = re.compile(r"jaxdyn/|jaxdyn\._|\b_[a-z]\w*\.py\b|lax\.scan|carry|broadcast|CpuCallback|Traceback")


@dataclasses.dataclass(frozen=True)
class Hostile:
    """One hostile input.

    - `id`: `"<entry point>: <what is wrong>"`, unique in its table.
    - `call`: a thunk that makes the call.
    - `raises`: the expected exception type(s) (`ValueError`, `TypeError`, `eqx.EquinoxRuntimeError`,
      ...), or `None` when the call must return a result that flags the failure.
    - `match`: a regex the message must contain (the argument's name, e.g. r"`lr`").
    - `flagged`: for `raises=None`, a predicate on the returned value that says the failure is
      flagged (a result code, a NaN with a code, `converged=False`, ...).
    - `near_top`: the match must appear within this many characters of the start of the message
      (the argument is named near the top); `None` to skip.
    """

    id: str
    call: Callable[[], Any]
    raises: Any = ValueError
    match: str = ""
    flagged: Callable[[Any], bool] | None = None
    near_top: int | None = 400


def run_hostile(row: Hostile) -> None:
    """Run one row: the right exception with a clear message naming the argument, or a flag."""
    import pytest

    if row.raises is None:
        assert row.flagged is not None, f"{row.id}: a row without `raises` needs `flagged`"
        out = row.call()
        assert row.flagged(out), f"{row.id}: the failure is not flagged in {out!r:.300}"
        return
    with pytest.raises(row.raises) as info:
        row.call()
    text = str(info.value)
    found = re.search(row.match, text)
    assert found, f"{row.id}: message does not match {row.match!r}: {text[:500]}"
    if row.near_top is not None:
        assert found.start() <= row.near_top, f"{row.id}: {row.match!r} only at char {found.start()}"
        head = text[: found.end() + 200]
        assert not OBSCURE.search(head), f"{row.id}: obscure message: {head}"


def hostile_ids(rows):
    ids = [row.id for row in rows]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate hostile row ids: {duplicates}"
    return ids


# ---------------------------------------------------------------------------------------------
# The gradient-check matrix (tests/test_gradients_<area>.py): derivatives against central
# differences of the same function.
# ---------------------------------------------------------------------------------------------


def fd_directional(fn, x, v, h=None, *, order=4):
    """Directional derivative of `fn` at `x` along `v` by central differences (PyTrees allowed).

    `order=2` is the plain central difference; `order=4` the five-point stencil, whose error
    O(h^4) lets a derivative be checked at 1e-6 relative with h ~ eps^(1/5)."""
    if h is None:
        h = float(np.finfo(np.float64).eps ** (1.0 / (order + 1)))
    def at(s):
        return fn(jax.tree_util.tree_map(lambda a, b: a + s * b, x, v))
    if order == 2:
        return jax.tree_util.tree_map(lambda p, m: (p - m) / (2 * h), at(h), at(-h))
    if order == 4:
        return jax.tree_util.tree_map(
            lambda p2, p1, m1, m2: (-p2 + 8 * p1 - 8 * m1 + m2) / (12 * h),
            at(2 * h), at(h), at(-h), at(-2 * h),
        )
    raise ValueError(f"order must be 2 or 4, got {order}")


def tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def check_gradient(fn, x, *, key, rtol=1e-6, modes=("rev", "fwd"), h=None, order=4, n_dirs=2):
    """Check the derivative of `fn` (PyTree in, PyTree out) at `x` against finite differences along
    `n_dirs` random directions v: forward mode compares `jax.jvp` with the difference quotient;
    reverse mode compares <jax.grad(<w, fn>), v> with <w, difference quotient> for a random
    cotangent w. Returns the worst relative error seen (each asserted below `rtol`)."""
    worst = 0.0
    y0 = fn(x)
    for i in range(n_dirs):
        kv, kw, key = jax.random.split(key, 3)
        v = random_like(kv, x)
        w = random_like(kw, y0)
        fd = fd_directional(fn, x, v, h, order=order)
        if "fwd" in modes:
            _, tangent = jax.jvp(fn, (x,), (v,))
            err = rel_err(np.concatenate([np.ravel(t) for t in jax.tree_util.tree_leaves(tangent)]),
                          np.concatenate([np.ravel(t) for t in jax.tree_util.tree_leaves(fd)]))
            assert err < rtol, f"forward mode, direction {i}: relative error {err:.3e} >= {rtol}"
            worst = max(worst, err)
        if "rev" in modes:
            g = jax.grad(lambda z, w=w: tree_dot(w, fn(z)))(x)
            got, want = tree_dot(g, v), tree_dot(w, fd)
            err = float(abs(got - want) / max(abs(float(want)), 1e-300))
            assert err < rtol, f"reverse mode, direction {i}: {float(got)} vs FD {float(want)} ({err:.3e})"
            worst = max(worst, err)
    return worst
