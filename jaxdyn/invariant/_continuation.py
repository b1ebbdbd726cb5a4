r"""Pseudo-arclength continuation of a branch of $G(u, p) = 0$ with special points.

Written here rather than taken from a library: the continuation packages (BifurcationKit.jl,
AUTO-07p, PyCont, pycont-lite) are neither in JAX nor differentiable, and none runs under `jit` and
`vmap`. The engine is one `lax.while_loop` over a small state machine with fixed-capacity buffers,
so that a whole branch compiles once and vmaps over a parameter inside `args`:

1. *start*: correct `(u0, p0)` at fixed $p$ (or, with a tangent, in the hyperplane orthogonal to
   it) and solve $[G_u\ G_p;\ e_p^T]\, t = e_{n+1}$ for the first tangent;
2. *step*: predict $x + \Delta s\, t$, correct by Newton on the bordered system
   $G(x) = 0,\ t^T (x - x_k) = \Delta s$ (optimistix `Newton`: dense LU up to `dense_max_dim` states,
   matrix-free Newton-Krylov with lineax `GMRES` on Jacobian-vector products above), adapt
   $\Delta s$ (grow by 1.5 after at most 3 Newton iterations, halve on failure), compute the
   tangent, the spectrum and the test functions; a sign change of a test function between two
   points starts
3. *locate*: an Illinois (regula falsi) iteration on the arclength from the earlier point, each
   trial corrected, until the arclength moves less than `locate_tol`.

The test functions: fold, the $p$-component of the tangent; branch point, the determinant of the
augmented Jacobian $[G_u\ G_p;\ t^T]$ (divided by the product of its row norms; in the
matrix-free path the last entry $s$ of the bordered solve $[A\ b;\ c^T\ 0](v, s) = (0, 1)$, equal to
$\det A / \det[A\ b;\ c^T\ 0]$); then the problem's own. A sign change that the location finds to be
a jump of the test function (its value at the located point not small against its values at the
bracket ends) is not a special point and is dropped: this is how a real eigenvalue pair leaving
the real axis is told apart from a Hopf point.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

from .._checks import check_finite, check_int, is_concrete
from .._results import RESULTS, check_throw, raise_if_failed
from .._types import Array
from ._branch import BranchResult, BranchStart
from ._problems import SPECIAL_POINTS, AbstractBranchProblem

_INIT, _STEP, _LOCATE = 0, 1, 2
_SINGULAR_NORM = 1e8  # a tangent solve whose solution is larger than this: singular augmented Jacobian
_JUMP_RATIO = 1e-3  # a located test value above this fraction of the bracket's: a jump, not a zero


class _Config(eqx.Module):
    """The static settings of the compiled loop."""

    n_steps: int = eqx.field(static=True)
    max_special: int = eqx.field(static=True)
    max_newton: int = eqx.field(static=True)
    max_locate: int = eqx.field(static=True)
    dense: bool = eqx.field(static=True)
    detect: bool = eqx.field(static=True)
    progress: bool = eqx.field(static=True)
    direction: int = eqx.field(static=True)
    kinds: tuple[int, ...] = eqx.field(static=True)


class _Numbers(eqx.Module):
    """The numeric settings (arrays: they may vary without recompiling)."""

    p_min: Array
    p_max: Array
    ds_min: Array
    ds_max: Array
    newton_tol: Array
    locate_tol: Array


class _Eval(eqx.Module):
    """What is computed at a corrected point."""

    tangent: Array
    tests: Array
    spectrum: Array
    n_unstable: Array
    singular: Array
    bp_c: Array
    bp_ref: Array
    residual: Array
    bp_w: Array


class _State(eqx.Module):
    """The carry of the continuation loop."""

    mode: Array
    us: Array
    ps: Array
    spectra: Array
    n_unst: Array
    tests_buf: Array
    n_points: Array
    x: Array
    t: Array
    tests: Array
    ds: Array
    stop: Array
    done: Array
    iters: Array
    bp_c: Array
    bp_sign: Array
    bp_w: Array
    # the location of a sign change between (loc_x, loc_t) and x
    loc_x: Array
    loc_t: Array
    loc_c: Array
    loc_sign: Array
    loc_w: Array
    loc_ds: Array
    loc_tests_a: Array
    loc_tests_b: Array
    pending: Array
    loc_j: Array
    loc_sa: Array
    loc_fa: Array
    loc_sb: Array
    loc_fb: Array
    loc_s: Array
    loc_prev: Array
    loc_iter: Array
    # special points
    sp_kind: Array
    sp_u: Array
    sp_p: Array
    sp_pos: Array
    sp_spectrum: Array
    sp_tangent: Array
    n_special: Array
    result: RESULTS


def _residual(problem: AbstractBranchProblem, args: Any, u_ref: Array) -> Callable[[Array], Array]:
    return lambda x: problem.residual(x[:-1], x[-1], args, u_ref)


def _correct(problem, args, solver, cfg: _Config, num: _Numbers, *, base_x, base_t, s, guess):
    """Newton on $G(x) = 0$, $t^T(x - x_b) = s$ from `guess`: (x, converged, iterations).

    Matrix-free, a guess that already solves $G = 0$ to `newton_tol` (a straight branch: the
    predictor lands on it) is returned without a Newton step (no Krylov solve), still through
    optimistix (with `max_steps=0`) so that it carries the implicit derivative."""
    g = _residual(problem, args, base_x[:-1])

    def fn(x, _):
        return jnp.concatenate([g(x), (jnp.dot(base_t, x - base_x) - s)[None]])

    newton = optx.Newton(rtol=num.newton_tol, atol=num.newton_tol, linear_solver=solver)

    def kept():
        return optx.root_find(fn, newton, guess, max_steps=0, throw=False).value, jnp.asarray(True), \
            jnp.zeros((), jnp.int32)

    def newton_run():
        sol = optx.root_find(fn, newton, guess, max_steps=cfg.max_newton, throw=False)
        ok = (sol.result == optx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))
        return sol.value, ok, sol.stats["num_steps"].astype(jnp.int32)

    if cfg.dense:  # a dense Newton step is cheap next to a second compilation of the solve
        value, ok, steps = newton_run()
    else:
        solved = jnp.max(jnp.abs(g(guess))) <= num.newton_tol
        value, ok, steps = jax.lax.cond(solved, kept, newton_run)
    return jnp.where(ok, value, guess), ok, jnp.where(ok, steps, 0)


def _bordering(size: int, phase: float, dtype) -> Array:
    """A fixed unit vector of the matrix-free BP test with no special direction and a nonzero mean:
    `1 + sin(...)` has positive entries, so it is never orthogonal to a constant (or any
    one-signed) null vector, the usual null vector at a synchronisation bifurcation (a zero-mean
    bordering makes the bordered system itself singular there: a pole instead of a zero)."""
    v = 1.0 + jnp.sin(phase + 2.3 * jnp.arange(size, dtype=dtype))
    return v / jnp.linalg.norm(v)


_RESTART = 20  # GMRES restart of the Newton steps (cold starts)
# The warm-started tangent and branch-point solves start near their solution: short cycles suffice.
# lineax builds the whole basis of every cycle (measured on the N = 2000 Ott-Antonsen benchmark:
# restart 50 ~150 products a solve, 20 s a branch; restart 5, 1 s)
_WARM_RESTART = 5
_BP_TOL = (1e-8, 1e-10)  # (rtol, atol) of the bordered branch-point solve: its sign and its zero


def _gmres(size: int, rtol: float = 1e-10, atol: float = 1e-12, restart: int = _RESTART) -> lx.GMRES:
    """The Krylov solver of the matrix-free path (lineax's test is elementwise, atol + rtol |b_i|)."""
    return lx.GMRES(rtol=rtol, atol=atol, restart=min(size, restart), stagnation_iters=20,
                    max_steps=20 * size + 200)


def _tangent_and_bp(g: Callable, x: Array, row: Array, c: Array, dense: bool, *, w0: Array):
    """The unnormalised tangent solving $[G_x;\\ r^T]\\,t = e_{n+1}$, the branch-point test $f$, and
    (matrix-free) the bordering vector $c$ for the next point with the sign of $f$ there, and the
    bordered solution $w$ (the warm start of the next point's solve).

    Matrix-free, $f = -s$ from $[A\\ b;\\ c^T\\ 0](v, s) = (0, 1)$, $A = [G_x;\\ t^T]$, that is
    $f = 1/(c^T A^{-1} b) = \\det A / \\det[A\\ b;\\ c^T\\ 0]$ ($b$ fixed, with a nonzero mean: see
    `_bordering`). For a fixed $c$, $f$ changes sign where $\\det A$ does (a branch point) and at the
    poles where $c^T A^{-1} b = 0$. Both are kept away from a step by renewing $c$ at every point by
    one inverse iteration, $c \\propto P A^{-1} b = P y_1$ ($P$ projects out the tangent; at a branch
    point the null vector of $A$ is orthogonal to it), which the bordered solve gives for free
    ($y_1 = -v/s$), so that $c$ is close to the null vector near a branch point, and by comparing
    signs with the same $c$: the value at the previous point with the new $c$ is $1/(c^T y_1)$, known
    for free (returned as `ref`, its sign). The Krylov solves start from the previous point's
    solutions (the previous tangent, the previous bordered solution): consecutive points have
    nearly the same ones."""
    size = x.shape[0]
    e = jnp.zeros(size, dtype=x.dtype).at[-1].set(1.0)
    value, lin = jax.linearize(g, x)
    if dense:
        jac = jax.vmap(lin, out_axes=1)(jnp.eye(size, dtype=x.dtype))
        raw = jnp.linalg.solve(jnp.concatenate([jac, row[None]]), e)
        unit = raw / jnp.linalg.norm(raw)
        aug = jnp.concatenate([jac, unit[None]])
        sign, logdet = jnp.linalg.slogdet(aug)
        rows = jnp.sum(jnp.log(jnp.maximum(jnp.linalg.norm(aug, axis=1), jnp.finfo(x.dtype).tiny)))
        # det / prod of row norms (Hadamard): in [-1, 1], linear through a simple zero
        return raw, sign * jnp.exp(logdet - rows), c, jnp.ones((), x.dtype), value, w0
    struct = jax.ShapeDtypeStruct((size,), x.dtype)
    aug = lx.FunctionLinearOperator(lambda v: jnp.concatenate([lin(v), jnp.dot(row, v)[None]]), struct)
    # the previous tangent solves the new system to tolerance on a straight stretch: then no Krylov
    # solve (lineax's GMRES would still run a full cycle to confirm the correction is small). The
    # correction solve of a right-hand side that is exactly zero in value (no Krylov step) keeps the
    # implicit derivative of the solution (forward mode). Warm starts carry no derivative.
    warm = _gmres(size, restart=_WARM_RESTART)
    residual = e - aug.mv(row)
    exact = jnp.max(jnp.abs(residual)) <= warm.atol

    def keep():
        zero = residual - jax.lax.stop_gradient(residual)
        return row + lx.linear_solve(aug, zero, warm, throw=False).value

    def solve():
        return lx.linear_solve(aug, e, warm, options={"y0": jax.lax.stop_gradient(row)}, throw=False).value

    raw = jax.lax.cond(exact, keep, solve)
    unit = raw / jnp.linalg.norm(raw)
    b = _bordering(size, 1.0, x.dtype)
    big = jax.ShapeDtypeStruct((size + 1,), x.dtype)

    def bordered(w):
        v, s = w[:-1], w[-1]
        return jnp.concatenate([jnp.concatenate([lin(v), jnp.dot(unit, v)[None]]) + s * b,
                                jnp.dot(c, v)[None]])

    def project(v):
        v = v - jnp.dot(unit, v) * unit
        return v / jnp.linalg.norm(v)

    rhs = jnp.zeros(size + 1, dtype=x.dtype).at[-1].set(1.0)
    solver = _gmres(size + 1, *_BP_TOL, restart=_WARM_RESTART)
    w = lx.linear_solve(lx.FunctionLinearOperator(bordered, big), rhs, solver,
                        options={"y0": jax.lax.stop_gradient(w0)}, throw=False).value
    y1 = -w[:-1] / w[-1]  # A^{-1} b
    c_next = project(y1)
    fine = jnp.all(jnp.isfinite(c_next)) & jnp.all(jnp.isfinite(w))
    c_next = jnp.where(fine, c_next, c)
    return raw, -w[-1], c_next, jnp.sign(jnp.dot(c_next, y1)), value, jnp.where(fine, w, w0)


def _evaluate(problem, args, cfg: _Config, *, x, row, u_ref, c, sign, w0) -> _Eval:
    """Tangent, test functions, spectrum and stability at a corrected point `x` (`c`, `sign`, `w0`:
    the bordering vector, the sign and the bordered solution carried from the base point,
    matrix-free path)."""
    raw, bp, c_next, ref, value, w = _tangent_and_bp(_residual(problem, args, u_ref), x, row, c, cfg.dense,
                                                     w0=w0)
    bp = bp if cfg.dense else sign * bp
    norm = jnp.linalg.norm(raw)
    singular = ~jnp.all(jnp.isfinite(raw)) | (norm > _SINGULAR_NORM)
    tangent = raw / norm
    u, p = x[:-1], x[-1]
    spectrum = problem.spectrum(u, p, args)
    own = problem.test_functions(u, p, args, spectrum)
    tests = jnp.concatenate([jnp.stack([tangent[-1], bp]), own.astype(x.dtype)])
    return _Eval(tangent, tests, spectrum, problem.n_unstable(spectrum), singular, c_next, ref,
                 jnp.max(jnp.abs(value)), w)


def _keep_first(result, new, when):
    return RESULTS.where(when & (result == RESULTS.successful), new, result)


def _record_point(state: _State, x, ev: _Eval, when) -> _State:
    i = jnp.minimum(state.n_points, state.ps.shape[0] - 1)

    def put(buf, value):
        return buf.at[i].set(jnp.where(when, value, buf[i]).astype(buf.dtype))

    return eqx.tree_at(
        lambda s: (s.us, s.ps, s.spectra, s.n_unst, s.tests_buf, s.n_points),
        state,
        (put(state.us, x[:-1]), put(state.ps, x[-1]), put(state.spectra, ev.spectrum),
         put(state.n_unst, ev.n_unstable), put(state.tests_buf, ev.tests), state.n_points + when),
    )


def _secant(sa, fa, sb, fb):
    s = sb - fb * (sb - sa) / (fb - fa)
    inside = (s > jnp.minimum(sa, sb)) & (s < jnp.maximum(sa, sb)) & jnp.isfinite(s)
    return jnp.where(inside, s, 0.5 * (sa + sb))


def _open_bracket(state: _State, pending) -> _State:
    """Start locating the first pending test function (when any)."""
    j = jnp.argmax(pending).astype(jnp.int32)
    fa, fb = state.loc_tests_a[j], state.loc_tests_b[j]
    zero = jnp.zeros_like(state.loc_ds)
    return eqx.tree_at(
        lambda s: (s.pending, s.loc_j, s.loc_sa, s.loc_fa, s.loc_sb, s.loc_fb, s.loc_s, s.loc_prev,
                   s.loc_iter, s.mode),
        state,
        (pending, j, zero, fa, state.loc_ds, fb, _secant(zero, fa, state.loc_ds, fb),
         jnp.full_like(zero, jnp.nan), jnp.zeros((), jnp.int32), jnp.where(jnp.any(pending), _LOCATE, _STEP)),
    )


def _after_init(cfg: _Config, state: _State, *, x, ok, ev: _Eval) -> _State:
    sign = jnp.asarray(cfg.direction, x.dtype)
    # the fold test and the dense determinant flip with the tangent; the matrix-free branch-point test
    # starts positive (its sign is carried from point to point, see `_tangent_and_bp`)
    bp = sign * ev.tests[1] if cfg.dense else jnp.abs(ev.tests[1])
    ev = eqx.tree_at(lambda e: (e.tangent, e.tests), ev,
                     (sign * ev.tangent, ev.tests.at[0].multiply(sign).at[1].set(bp)))
    result = RESULTS.where(ev.singular, RESULTS.singular_jacobian,
                           RESULTS.where(ok, RESULTS.successful, RESULTS.not_converged))
    good = ok & ~ev.singular
    state = _record_point(state, x, ev, good)
    return eqx.tree_at(lambda s: (s.x, s.t, s.tests, s.mode, s.done, s.result, s.bp_c, s.bp_sign, s.bp_w),
                       state,
                       (jnp.where(good, x, state.x), ev.tangent, ev.tests, jnp.asarray(_STEP),
                        ~good, _keep_first(state.result, result, True), ev.bp_c, ev.bp_ref, ev.bp_w))


def _after_step(cfg: _Config, num: _Numbers, state: _State, *, x, ok, n_iter, ev: _Eval) -> _State:
    good = ok & ~ev.singular
    ds_used = state.ds
    ds_fail = 0.5 * ds_used
    too_small = ~good & (ds_fail < num.ds_min)
    ds_next = jnp.where(good, jnp.where(n_iter <= 3, jnp.minimum(1.5 * ds_used, num.ds_max), ds_used),
                        ds_fail)
    recorded = _record_point(state, x, ev, good)
    outside = (x[-1] < num.p_min) | (x[-1] > num.p_max)
    full = recorded.n_points >= cfg.n_steps
    stop = state.stop | too_small | (good & (outside | full))
    new = eqx.tree_at(
        lambda s: (s.x, s.t, s.tests, s.ds, s.stop, s.result, s.loc_x, s.loc_t, s.loc_ds, s.loc_tests_a,
                   s.loc_tests_b, s.bp_c, s.bp_sign, s.loc_c, s.loc_sign, s.bp_w, s.loc_w),
        recorded,
        (jnp.where(good, x, state.x), jnp.where(good, ev.tangent, state.t),
         jnp.where(good, ev.tests, state.tests), ds_next, stop,
         _keep_first(state.result, RESULTS.branch_step_too_small, too_small), state.x, state.t, ds_used,
         state.tests, ev.tests, jnp.where(good, ev.bp_c, state.bp_c),
         jnp.where(good, jnp.sign(ev.tests[1]) * ev.bp_ref, state.bp_sign), state.bp_c, state.bp_sign,
         jnp.where(good, ev.bp_w, state.bp_w), state.bp_w),
    )
    changes = good & (state.tests * ev.tests < 0)
    if not cfg.detect:
        changes = jnp.zeros_like(changes)
    return _open_bracket(new, changes)


def _after_locate(cfg: _Config, num: _Numbers, state: _State, *, x, ok, ev: _Eval) -> _State:
    j = state.loc_j
    f = ev.tests[j]
    s = state.loc_s
    # Illinois update of the bracket [(sa, fa), (sb, fb)] with the trial (s, f)
    across = f * state.loc_fb < 0
    sa = jnp.where(across, state.loc_sb, state.loc_sa)
    fa = jnp.where(across, state.loc_fb, 0.5 * state.loc_fa)
    converged = ((jnp.abs(s - state.loc_prev) < num.locate_tol) | (jnp.abs(s - sa) < num.locate_tol)
                 | (f == 0))
    exhausted = state.loc_iter + 1 >= cfg.max_locate
    finish = ~ok | converged | exhausted
    scale = jnp.maximum(jnp.abs(state.loc_tests_a[j]), jnp.abs(state.loc_tests_b[j]))
    jump = ok & (jnp.abs(f) > _JUMP_RATIO * scale)
    record = finish & ~jump
    failed = finish & (~ok | (exhausted & ~converged & ~jump))
    k = jnp.minimum(state.n_special, cfg.max_special - 1)
    t_sp = jnp.where(ev.singular, state.loc_t, ev.tangent)  # at a branch point itself: the bracket's
    write = record & (state.n_special < cfg.max_special)
    kind = jnp.asarray(cfg.kinds, jnp.int32)[j]
    x_sp = jnp.where(ok, x, state.loc_x + s * state.loc_t)
    position = (state.n_points - 2).astype(x.dtype) + s / state.loc_ds

    def put(buf, value):
        return buf.at[k].set(jnp.where(write, value, buf[k]).astype(buf.dtype))

    state = eqx.tree_at(
        lambda st: (st.sp_kind, st.sp_u, st.sp_p, st.sp_pos, st.sp_spectrum, st.sp_tangent, st.n_special,
                    st.result, st.loc_sa, st.loc_fa, st.loc_sb, st.loc_fb, st.loc_prev, st.loc_iter,
                    st.loc_s, st.loc_w),
        state,
        (put(state.sp_kind, kind), put(state.sp_u, x_sp[:-1]), put(state.sp_p, x_sp[-1]),
         put(state.sp_pos, position), put(state.sp_spectrum, ev.spectrum), put(state.sp_tangent, t_sp),
         state.n_special + record, _keep_first(state.result, RESULTS.location_failed, failed),
         sa, fa, s, f, s, state.loc_iter + 1, _secant(sa, fa, s, f),
         jnp.where(ok, ev.bp_w, state.loc_w)),  # the next trial starts from this one's bordered solution
    )
    pending = state.pending.at[j].set(state.pending[j] & ~finish)
    reopened = _open_bracket(state, pending)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(finish, a, b), reopened, state)


_BAR: dict[str, Any] = {}  # the open tqdm bar of a running continuation (host side)


def _tick(count, total, done):
    """Host callback: move the bar to `count` points of `total` (a new bar at the first point;
    closed when the run is done)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    count, total, done = int(count), int(total), bool(done)
    bar = _BAR.get("bar")
    if bar is None or count < bar.n:
        if bar is not None:
            bar.close()
        bar = _BAR["bar"] = tqdm(total=total, desc="continuation", leave=False)
    bar.update(count - bar.n)
    if done or count >= total:
        bar.close()
        _BAR.pop("bar", None)


def _body(problem, args, solver, cfg: _Config, num: _Numbers, state: _State) -> _State:
    mode = state.mode
    at_init, at_locate = mode == _INIT, mode == _LOCATE
    base_x = jnp.where(at_locate, state.loc_x, state.x)
    base_t = jnp.where(at_locate, state.loc_t, state.t)
    s = jnp.where(at_init, 0.0, jnp.where(at_locate, state.loc_s, state.ds))
    guess = base_x + s * base_t
    x, ok, n_iter = _correct(problem, args, solver, cfg, num, base_x=base_x, base_t=base_t, s=s, guess=guess)
    ev = _evaluate(problem, args, cfg, x=x, row=base_t, u_ref=base_x[:-1],
                   c=jnp.where(at_locate, state.loc_c, state.bp_c),
                   sign=jnp.where(at_locate, state.loc_sign, state.bp_sign),
                   w0=jnp.where(at_locate, state.loc_w, state.bp_w))
    # a guess that already solves G = 0 is kept (at a branch point itself Newton's linear solve is
    # singular although there is nothing to correct); the arclength condition holds by construction
    ok = ok | (ev.residual <= num.newton_tol)
    new = jax.lax.switch(mode, [
        lambda st: _after_init(cfg, st, x=x, ok=ok, ev=ev),
        lambda st: _after_step(cfg, num, st, x=x, ok=ok, n_iter=n_iter, ev=ev),
        lambda st: _after_locate(cfg, num, st, x=x, ok=ok, ev=ev),
    ], state)
    budget = new.iters + 1 >= _budget(cfg)
    new = eqx.tree_at(lambda st: (st.iters, st.done, st.result), new,
                      (new.iters + 1, new.done | (new.stop & (new.mode == _STEP)) | budget,
                       _keep_first(new.result, RESULTS.max_steps_reached, budget & ~new.done)))
    if cfg.progress:
        jax.debug.callback(_tick, new.n_points, cfg.n_steps, new.done)
    return new


def _budget(cfg: _Config) -> int:
    """The iteration budget of the loop: steps with their halvings, and the locations."""
    return cfg.n_steps * 40 + cfg.max_special * (cfg.max_locate + 1)


def _initial_state(problem, args, cfg: _Config, *, x0, row, ds, dtype) -> _State:
    n = x0.shape[0] - 1
    spec = jax.eval_shape(problem.spectrum, x0[:-1], x0[-1], args)
    m = 2 + len(problem.test_names)
    N, S = cfg.n_steps, cfg.max_special
    nan = jnp.asarray(jnp.nan, dtype)
    cnan = jnp.asarray(jnp.nan, spec.dtype) if jnp.issubdtype(spec.dtype, jnp.complexfloating) else nan
    zero = jnp.zeros((), dtype)
    return _State(
        mode=jnp.asarray(_INIT), us=jnp.full((N, n), nan), ps=jnp.full((N,), nan),
        spectra=jnp.full((N, spec.shape[0]), cnan, dtype=spec.dtype), n_unst=jnp.full((N,), -1, jnp.int32),
        tests_buf=jnp.full((N, m), nan), n_points=jnp.zeros((), jnp.int32), x=x0, t=row,
        tests=jnp.zeros(m, dtype), ds=jnp.asarray(ds, dtype), stop=jnp.asarray(False),
        done=jnp.asarray(False), iters=jnp.zeros((), jnp.int32),
        bp_c=_bordering(n + 1, 0.3, dtype), bp_sign=jnp.ones((), dtype), bp_w=jnp.zeros(n + 2, dtype),
        loc_x=x0, loc_t=row, loc_c=_bordering(n + 1, 0.3, dtype), loc_sign=jnp.ones((), dtype),
        loc_w=jnp.zeros(n + 2, dtype), loc_ds=jnp.asarray(ds, dtype),
        loc_tests_a=jnp.zeros(m, dtype),
        loc_tests_b=jnp.zeros(m, dtype), pending=jnp.zeros(m, bool), loc_j=jnp.zeros((), jnp.int32),
        loc_sa=zero, loc_fa=zero, loc_sb=zero, loc_fb=zero, loc_s=zero, loc_prev=nan,
        loc_iter=jnp.zeros((), jnp.int32),
        sp_kind=jnp.full((S,), -1, jnp.int32), sp_u=jnp.full((S, n), nan), sp_p=jnp.full((S,), nan),
        sp_pos=jnp.full((S,), nan), sp_spectrum=jnp.full((S, spec.shape[0]), cnan, dtype=spec.dtype),
        sp_tangent=jnp.full((S, n + 1), nan), n_special=jnp.zeros((), jnp.int32),
        result=RESULTS.successful,
    )


@eqx.filter_jit
def _run(problem, args, solver, cfg: _Config, num: _Numbers, *, x0, row, ds) -> _State:
    """The compiled loop (cached per problem and static settings: a second branch of the same
    problem with new numbers does not recompile)."""
    state = _initial_state(problem, args, cfg, x0=x0, row=row, ds=ds, dtype=x0.dtype)
    return jax.lax.while_loop(lambda st: ~st.done, lambda st: _body(problem, args, solver, cfg, num, st),
                              state)


def _scalar(value: Any, name: str, *, positive: bool = False) -> Array:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number | np.ndarray | jax.Array):
        raise TypeError(f"`{name}` must be a float, got {type(value).__name__}.")
    value = jnp.asarray(value, dtype=float)
    if value.shape != ():
        raise ValueError(f"`{name}` must be a scalar, got shape {value.shape}.")
    if is_concrete(value):
        if not np.isfinite(float(value)):
            raise ValueError(f"`{name}` must be finite, got {float(value)}.")
        if positive and float(value) <= 0:
            raise ValueError(f"`{name}` must be > 0, got {float(value)}.")
    return value


def _validate_problem(problem, u0, p0, tangent):
    if isinstance(problem, BranchStart):
        if u0 is not None or p0 is not None:
            raise ValueError("`u0` and `p0` must be None when `problem` is a BranchStart (it carries them).")
        return problem.problem, problem.u0, problem.p0, problem.tangent if tangent is None else tangent
    if not isinstance(problem, AbstractBranchProblem):
        raise TypeError("`problem` must be an AbstractBranchProblem (EquilibriumProblem, FixedPointProblem, "
                        f"...) or a BranchStart from `switch_branch`, got {type(problem).__name__}.")
    if u0 is None or p0 is None:
        raise ValueError("`u0` and `p0` are required (the start of the branch).")
    return problem, u0, p0, tangent


def _validate_state(problem, u0, p0, args, tangent):
    if not isinstance(u0, np.ndarray | jax.Array | list | tuple | float | int) or isinstance(u0, bool):
        raise TypeError(f"`u0` must be an array, got {type(u0).__name__}.")
    u0 = jnp.asarray(u0)
    if not jnp.issubdtype(u0.dtype, jnp.number) or jnp.issubdtype(u0.dtype, jnp.complexfloating):
        raise TypeError(f"`u0` must be a real array, got dtype {u0.dtype}.")
    u0 = u0.astype(jnp.result_type(float))
    if u0.ndim != 1 or u0.shape[0] == 0:
        raise ValueError(f"`u0` must be a non-empty flat vector of shape (n,), got shape {u0.shape}.")
    u0 = check_finite(u0, "u0")
    p0 = check_finite(_scalar(p0, "p0"), "p0")
    try:
        out = jax.eval_shape(problem.residual, u0, p0, args, u0)
    except Exception as error:  # the user's function fails on these shapes: say where
        raise ValueError(f"`problem`'s residual fails at `u0` of shape {u0.shape} with these `args`: "
                         f"{type(error).__name__}: {error}") from error
    if out.shape != u0.shape:
        raise ValueError(f"`problem`'s residual (the field or map) must return the shape of `u0`, "
                         f"{u0.shape}, got {out.shape}.")
    if tangent is not None:
        tangent = jnp.asarray(tangent, dtype=u0.dtype)
        if tangent.shape != (u0.shape[0] + 1,):
            raise ValueError(f"`tangent` must have shape (n + 1,) = ({u0.shape[0] + 1},), got "
                             f"{tangent.shape}.")
        tangent = check_finite(tangent, "tangent")
        if is_concrete(tangent) and not np.any(np.asarray(tangent)):
            raise ValueError("`tangent` must be nonzero.")
    return u0, p0, tangent


def _validate_settings(*, n_steps, max_newton, dense_max_dim, max_special, direction, detect, progress,
                       linear_solver):
    check_int(n_steps, "n_steps", minimum=2)
    check_int(max_newton, "max_newton", minimum=1)
    check_int(dense_max_dim, "dense_max_dim", minimum=0)
    check_int(max_special, "max_special", minimum=1)
    if isinstance(direction, bool) or direction not in (1, -1):
        raise ValueError(f"`direction` must be 1 or -1, got {direction!r}.")
    for name, value in (("detect", detect), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be a bool, got {type(value).__name__}.")
    if linear_solver is not None and not isinstance(linear_solver, lx.AbstractLinearSolver):
        raise TypeError("`linear_solver` must be a lineax solver (lx.LU(), lx.GMRES(...)) or None, got "
                        f"{type(linear_solver).__name__}.")


def continuation(problem: AbstractBranchProblem | BranchStart, u0: Any = None, p0: Any = None, *,
                 args: Any = None, p_min: Any, p_max: Any, ds: Any = 0.05, ds_min: Any = 1e-8,
                 ds_max: Any = 0.5, n_steps: int = 200, direction: int = 1, tangent: Any = None,
                 newton_tol: Any = 1e-10, max_newton: int = 10, dense_max_dim: int = 200,
                 linear_solver: lx.AbstractLinearSolver | None = None, detect: bool = True,
                 locate_tol: Any = 1e-10, max_special: int = 16, progress: bool = False,
                 throw: bool = True) -> BranchResult:
    r"""Follow a branch of solutions of $G(u, p) = 0$ by pseudo-arclength continuation, with its
    special points located.

    From $x_0 = (u_0, p_0)$ the branch $x(s)$ is parametrised by arclength: each step predicts
    $x_k + \Delta s\, t_k$ along the unit tangent and corrects by Newton on
    $G(x) = 0,\ t_k^T(x - x_k) = \Delta s$. Folds (the $p$-component of $t$ changes sign), branch
    points (the determinant of $[G_u\ G_p;\ t^T]$ changes sign) and the problem's own special points
    (Hopf; period doubling, Neimark-Sacker) are located between the bracketing points to
    `locate_tol` in arclength. The whole run is one `lax.while_loop`: jit-able, and vmap-able over
    arrays in `args` (use `eqx.filter_vmap`: the result carries the problem).

    **Arguments:**

    - `problem`: an [`AbstractBranchProblem`][] ([`EquilibriumProblem`][], [`FixedPointProblem`][],
      periodic orbits, DDE Hopf points), or a [`BranchStart`][] from [`switch_branch`][] (then
      `u0`, `p0` are `None`).
    - `u0`, `p0`: the start, a flat state `(n,)` and a scalar (corrected at fixed `p0`, or in the
      hyperplane orthogonal to `tangent` when one is given).
    - `args`: the problem's arguments (the parameter is put in by `problem.parameter`).
    - `p_min`, `p_max`: the branch stops at the first point outside `[p_min, p_max]`.
    - `ds`, `ds_min`, `ds_max`: the initial, smallest and largest arclength step (> 0); below
      `ds_min` the run stops with `RESULTS.branch_step_too_small`, the branch so far kept.
    - `n_steps`: the capacity: at most this many points (>= 2).
    - `direction`: `1` or `-1`, the orientation of the first tangent (increasing $p$ for `1`
      without `tangent`).
    - `tangent`: the initial tangent `(n + 1,)` (needed at a singular start, e.g. a branch point).
    - `newton_tol`, `max_newton`: the corrector's tolerance (in $x$ and in $G$) and iteration cap.
    - `dense_max_dim`: up to this state dimension, dense LU and determinants; above it,
      matrix-free Newton-Krylov (lineax `GMRES` on Jacobian-vector products) and the bordered
      branch-point test. `linear_solver`: a lineax solver for the Newton steps instead
      (default `lx.LU()` dense, `lx.GMRES` matrix-free).
    - `detect`: locate special points (`False`: only the branch, spectra and test values).
    - `locate_tol`: the arclength tolerance of the location; `max_special`: the capacity of the
      special-point buffers.
    - `progress`: a tqdm bar of the points computed.
    - `throw`: raise on failure (`True`) or return the code in `.result` (`False`).

    **Returns:** a [`BranchResult`][] (`.u`, `.p`, `.spectrum`, `.stable`, the special points,
    `.summary()`, `.plot()`).

    **Derivatives:** forward mode (`jax.jvp`, `jax.jacfwd`) with respect to arrays in `args`, `u0`,
    `p0`: the Newton corrections differentiate implicitly (optimistix), the location iterations
    by their iterates, so that e.g. $d\rho_H/d\sigma$ of a located Hopf point is exact to the
    location tolerance. Reverse mode is not available (the run is a `lax.while_loop`); the branch's
    integer fields and the step-size choices carry no derivative.

    **Example:**

    ```python
    problem = EquilibriumProblem(lorenz, parameter=lambda a, p: {**a, "rho": p})
    branch = continuation(problem, jnp.zeros(3), 0.5, args={"sigma": 10.0, "beta": 8 / 3},
                          p_min=0.0, p_max=30.0)
    c_plus = continuation(switch_branch(branch, 0, amplitude=0.1), args=branch.args,
                          p_min=0.0, p_max=30.0, ds_max=2.0)
    print(c_plus.summary())   # H hopf: p = 24.7368421053
    ```
    """
    check_throw(throw)
    problem, u0, p0, tangent = _validate_problem(problem, u0, p0, tangent)
    _validate_settings(n_steps=n_steps, max_newton=max_newton, dense_max_dim=dense_max_dim,
                       max_special=max_special, direction=direction, detect=detect, progress=progress,
                       linear_solver=linear_solver)
    u0, p0, tangent = _validate_state(problem, u0, p0, args, tangent)
    num = _Numbers(*(_scalar(v, name, positive=name not in ("p_min", "p_max"))
                     for name, v in (("p_min", p_min), ("p_max", p_max), ("ds_min", ds_min),
                                     ("ds_max", ds_max), ("newton_tol", newton_tol),
                                     ("locate_tol", locate_tol))))
    ds = _scalar(ds, "ds", positive=True)
    if all(is_concrete(v) for v in (num.p_min, num.p_max, p0, ds, num.ds_min, num.ds_max)):
        if not float(num.p_min) < float(num.p_max):
            raise ValueError(f"`p_min` must be < `p_max`, got {float(num.p_min)} and {float(num.p_max)}.")
        if not float(num.p_min) <= float(p0) <= float(num.p_max):
            raise ValueError(f"`p0` = {float(p0)} must lie in [`p_min`, `p_max`].")
        if not float(num.ds_min) <= float(ds) <= float(num.ds_max):
            raise ValueError(f"`ds` = {float(ds)} must lie in [`ds_min`, `ds_max`] = "
                             f"[{float(num.ds_min)}, {float(num.ds_max)}].")
    n = u0.shape[0]
    dense = problem.dimension(u0) <= dense_max_dim
    if linear_solver is None:
        linear_solver = lx.LU() if dense else _gmres(n + 1)
    cfg = _Config(n_steps=n_steps, max_special=max_special, max_newton=max_newton, max_locate=40, dense=dense,
                  detect=detect, progress=progress, direction=direction,
                  kinds=(0, 1, *(SPECIAL_POINTS.index(name) for name in problem.test_names)))
    x0 = jnp.concatenate([u0, p0[None]])
    e_p = jnp.zeros(n + 1, dtype=x0.dtype).at[-1].set(1.0)
    row = e_p if tangent is None else tangent / jnp.linalg.norm(tangent)
    state = _run(problem, args, linear_solver, cfg, num, x0=x0, row=row, ds=ds)
    out = BranchResult(
        u=state.us, p=state.ps, n_points=state.n_points, spectrum=state.spectra, n_unstable=state.n_unst,
        stable=state.n_unst == 0, test_values=state.tests_buf, special_kind=state.sp_kind,
        special_u=state.sp_u, special_p=state.sp_p, special_position=state.sp_pos,
        special_spectrum=state.sp_spectrum, special_tangent=state.sp_tangent, n_special=state.n_special,
        problem=problem, args=args, result=state.result,
    )
    return raise_if_failed(out, out.result, throw, hint="(`continuation`: pass `throw=False` to get the "
                           "branch computed so far with its `result`.)")
