"""The training loop (jaxdyn.training.train) and the gradient-flow reference: every tracker against
closed forms on least squares (loss, gradient norm, Hessian eigenvalues, accuracy, distance between
GD and gradient flow at matched times), checkpoint/resume to the same numbers, no recompilation
between step sizes, gradient_flow against exp(-tH), and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxdyn._results import RESULTS
from jaxdyn.training import Checkpoint, GradientFlow, gradient_flow, train

N, D = 16, 3
LR = 0.2
STEPS, EVERY = 40, 5
FLOW = GradientFlow(dt_max=0.05)


TRACES = []  # one entry per trace of `lsq` (to check that step sizes do not recompile)


def lsq(params, x, y):
    r"""$\frac{1}{2n}\sum_i (w \cdot x_i + b - y_i)^2$; params a dict (a PyTree with a scalar leaf)."""
    TRACES.append(1)
    return 0.5 * jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def sign_accuracy(params, x, y):
    return jnp.mean(jnp.sign(x @ params["w"] + params["b"]) == jnp.sign(y))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(N, D)) * np.array([1.5, 1.0, 0.5]))
    y = jnp.asarray(rng.normal(size=N))
    params = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray(0.3)}
    flat0, unravel = ravel_pytree(params)
    z = np.asarray(jax.vmap(lambda xi: ravel_pytree({"w": xi, "b": jnp.asarray(1.0)})[0])(x))
    H = z.T @ z / N
    star = np.linalg.lstsq(z, np.asarray(y), rcond=None)[0]
    lstar = 0.5 * np.mean((z @ star - np.asarray(y)) ** 2)
    return dict(x=x, y=y, params=params, flat0=np.asarray(flat0), H=H, star=star, lstar=lstar,
                unravel=unravel)


def _run(problem, **kw):
    return train(lsq, problem["params"], problem["x"], problem["y"], n_steps=kw.pop("n_steps", STEPS),
                 lr=kw.pop("lr", LR), every=EVERY, top_k=2, accuracy_fn=sign_accuracy, flow=FLOW,
                 blocks_per_call=2, progress=False, **kw)


@pytest.fixture(scope="module")
def result(problem):
    before = len(TRACES)
    res = _run(problem)
    problem["first_traces"] = len(TRACES) - before
    return res


def test_trackers_closed_form(problem, result):
    H, e0 = problem["H"], problem["flat0"] - problem["star"]
    lams = np.linalg.eigvalsh(H)
    rows = np.arange(0, STEPS + 1, EVERY)
    np.testing.assert_array_equal(result.steps, rows)
    np.testing.assert_allclose(result.times, rows * LR, rtol=1e-14)
    M = np.eye(4) - LR * H
    e_gd = np.stack([np.linalg.matrix_power(M, k) @ e0 for k in rows])
    e_gf = np.stack([np.asarray(jsl.expm(-k * LR * jnp.asarray(H))) @ e0 for k in rows])
    quad = lambda e: problem["lstar"] + 0.5 * np.einsum("ki,ij,kj->k", e, H, e)
    np.testing.assert_allclose(result.loss, quad(e_gd), rtol=1e-10)
    every_step = np.stack([np.linalg.matrix_power(M, k) @ e0 for k in range(STEPS)])
    np.testing.assert_allclose(result.losses, quad(every_step), rtol=1e-10)
    np.testing.assert_allclose(result.gradient_norm, np.linalg.norm(e_gd @ H, axis=1), rtol=1e-9)
    np.testing.assert_allclose(result.eigenvalues, np.tile(lams[::-1][:2], (rows.size, 1)), rtol=1e-9)
    np.testing.assert_allclose(result.sharpness, lams[-1], rtol=1e-9)
    dist = np.linalg.norm(e_gd - e_gf, axis=1)
    np.testing.assert_allclose(result.flow_distance, dist, rtol=1e-5, atol=1e-9)
    assert dist[-1] > 1e-3  # GD and the flow differ at O(eta): the comparison is not vacuous
    np.testing.assert_allclose(result.flow_loss, quad(e_gf), rtol=1e-7)
    np.testing.assert_allclose(result.flow_sharpness, lams[-1], rtol=1e-9)
    np.testing.assert_allclose(ravel_pytree(result.flow_params)[0], problem["star"] + e_gf[-1], rtol=1e-7)
    assert result.flow_result == RESULTS.successful
    # the flow's step is min(dt_max, 1/S) = 0.05 here: at least t / 0.05 steps
    assert int(result.flow_steps) >= round(STEPS * LR / 0.05)
    final = result.params
    np.testing.assert_allclose(ravel_pytree(final)[0], problem["star"] + e_gd[-1], rtol=1e-10)
    np.testing.assert_allclose(result.accuracy[-1], sign_accuracy(final, problem["x"], problem["y"]))


def test_checkpoint_resume_same_numbers(problem, result, tmp_path):
    path_a, path_b = str(tmp_path / "a.eqx"), str(tmp_path / "b.eqx")
    full = _run(problem, checkpoint=Checkpoint(path_a, every=2))
    _run(problem, n_steps=STEPS // 2, checkpoint=Checkpoint(path_b, every=2))
    resumed = _run(problem, checkpoint=Checkpoint(path_b, every=2))
    for res in (full, resumed):
        for name in ("losses", "loss", "gradient_norm", "eigenvalues", "accuracy", "flow_distance",
                     "flow_loss", "flow_steps"):
            np.testing.assert_array_equal(getattr(res, name), getattr(result, name), err_msg=name)
        np.testing.assert_array_equal(ravel_pytree(res.params)[0], ravel_pytree(result.params)[0])
    with pytest.raises(ValueError, match="other settings"):
        train(lsq, problem["params"], problem["x"], problem["y"], n_steps=STEPS, lr=0.1, every=EVERY,
              top_k=2, accuracy_fn=sign_accuracy, flow=FLOW, blocks_per_call=2, progress=False,
              checkpoint=Checkpoint(path_b, every=2))
    with pytest.raises(ValueError, match="already holds"):
        _run(problem, n_steps=STEPS // 2, checkpoint=Checkpoint(path_b, every=2))


def test_no_recompilation_between_step_sizes(problem, result):
    counts = []
    for lr in (0.15, 0.3):
        before = len(TRACES)
        res = _run(problem, lr=lr, n_steps=10)
        counts.append(len(TRACES) - before)
        np.testing.assert_allclose(res.sharpness, np.linalg.eigvalsh(problem["H"])[-1], rtol=1e-9)
    # the first call traced the loop; later ones (other lr, fewer steps) only check the input
    assert counts[0] < problem["first_traces"]
    assert counts[1] == counts[0]


def test_optax_optimizer(problem):
    kw = dict(n_steps=10, every=5, top_k=0, progress=False)
    plain = train(lsq, problem["params"], problem["x"], problem["y"], lr=LR, **kw)
    sgd = train(lsq, problem["params"], problem["x"], problem["y"], optimizer=optax.sgd(LR), **kw)
    np.testing.assert_allclose(sgd.losses, plain.losses, rtol=1e-12)
    assert sgd.sharpness is None and sgd.times is None
    adam = train(lsq, problem["params"], problem["x"], problem["y"], optimizer=optax.adam(0.05), **kw)
    assert adam.losses[-1] < adam.losses[0]


def test_gradient_flow_closed_form(problem):
    ts = jnp.linspace(0.0, 3.0, 7)
    sol = gradient_flow(lsq, problem["params"], problem["x"], problem["y"], ts=ts,
                        flow=GradientFlow(dt_max=0.05))
    e0 = problem["flat0"] - problem["star"]
    ref = np.stack([problem["star"] + np.asarray(jsl.expm(-t * jnp.asarray(problem["H"]))) @ e0
                    for t in np.asarray(ts)])
    got = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(sol.params))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)  # Tsit5, h = 0.05
    np.testing.assert_allclose(sol.sharpness[:-1], np.linalg.eigvalsh(problem["H"])[-1], rtol=1e-9)
    assert sol.result == RESULTS.successful


def test_bad_input(problem):
    x, y, p = problem["x"], problem["y"], problem["params"]
    with pytest.raises(ValueError, match="`lr`"):
        train(lsq, p, x, y, n_steps=10, lr=0.0, every=5, progress=False)
    with pytest.raises(ValueError, match="`lr`"):
        train(lsq, p, x, y, n_steps=10, lr=-1.0, every=5, progress=False)
    with pytest.raises(ValueError, match="`lr`"):
        train(lsq, p, x, y, n_steps=10, every=5, progress=False)
    with pytest.raises(ValueError, match="`n_steps`"):
        train(lsq, p, x, y, n_steps=12, lr=0.1, every=5, progress=False)
    with pytest.raises(ValueError, match="`top_k`"):
        train(lsq, p, x, y, n_steps=10, lr=0.1, every=5, top_k=9, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        train(lambda p, x, y: (x @ p["w"] - y) ** 2, p, x, y, n_steps=10, lr=0.1, every=5, progress=False)
    with pytest.raises(ValueError, match="`data`"):
        train(lsq, p, x, y[:-1], n_steps=10, lr=0.1, every=5, progress=False)
    with pytest.raises(ValueError, match="`lr`"):
        train(lsq, p, x, y, n_steps=10, optimizer=optax.sgd(0.1), every=5, flow=True, progress=False)
    with pytest.raises(ValueError, match="`ts`"):
        gradient_flow(lsq, p, x, y, ts=jnp.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="`dt_max`"):
        GradientFlow(dt_max=-1.0)


# ---------------------------------------------------------------------------------------------
# Ctrl-C during a checkpointed run: one subprocess, interrupted three times (once with a double
# SIGINT), exits cleanly; the checkpoint then resumes to the numbers of an uninterrupted run.

INT_STEPS = 200


def slow_lsq(params, x, y):
    """`lsq` with a host callback that sleeps 1 ms per evaluation: callbacks are in flight when
    the signal arrives (the suspected cause of a segfault after Ctrl-C)."""
    import time

    jax.debug.callback(lambda: time.sleep(0.001))
    return 0.5 * jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def interrupt_run(path, **kw):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(N, D)))
    y = jnp.asarray(rng.normal(size=N))
    params = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray(0.3)}
    return train(slow_lsq, params, x, y, n_steps=INT_STEPS, lr=0.05, every=5, top_k=0, blocks_per_call=2,
                 checkpoint=None if path is None else Checkpoint(path, every=1), **kw)


_CHILD = """
import sys
import equinox as eqx
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", sys.argv[2])
sys.path.insert(0, sys.argv[3])
from tests.test_training_loop import interrupt_run
for attempt in range(2):
    try:
        print("RUN", flush=True)
        interrupt_run(sys.argv[1], progress=True)
        print("FINISHED", flush=True)
        sys.exit(0)
    except KeyboardInterrupt as err:
        print("CAUGHT", err, flush=True)
print("RUN", flush=True)
interrupt_run(sys.argv[1], progress=True)   # the third SIGINT ends the process
print("FINISHED", flush=True)
"""


def test_sigint_during_checkpointed_train(tmp_path):
    import os
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    path = str(tmp_path / "run.ckpt")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    cache = jax.config.jax_compilation_cache_dir or str(tmp_path / "cache")
    child = subprocess.Popen([sys.executable, str(script), path, cache, root], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for i, signals in enumerate((1, 2, 1)):  # round 2: a double Ctrl-C (immediate interrupt)
            line = child.stdout.readline()
            lines.append(line)
            assert line.startswith("RUN"), (line, child.stderr.read() if child.poll() is not None else "")
            before = os.stat(path).st_mtime_ns if os.path.exists(path) else -1
            deadline = time.time() + 60
            stamp = lambda: os.stat(path).st_mtime_ns if os.path.exists(path) else None  # noqa: E731
            while stamp() in (None, before) and time.time() < deadline:
                time.sleep(0.002)  # wait for a checkpoint written by this round: it is mid-run
            for _ in range(signals):
                child.send_signal(signal.SIGINT)
            if i < 2:
                lines.append(child.stdout.readline())
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    # clean exits: caught twice with a clear message, then the uncaught KeyboardInterrupt
    assert child.returncode in (-signal.SIGINT, 130), (child.returncode, err[-2000:])
    assert "Segmentation fault" not in err and "Fatal Python error" not in err, err[-2000:]
    assert lines[1].startswith("CAUGHT") and "`train` interrupted after step" in lines[1], lines
    assert "rerun with the same `checkpoint` to resume" in lines[1]
    assert lines[3].startswith("CAUGHT"), lines
    assert "KeyboardInterrupt: `train` interrupted" in err, err[-2000:]
    assert not any(line.startswith("FINISHED") for line in lines + out.splitlines())
    # the checkpoint is complete and resumes to the numbers of an uninterrupted run
    resumed = interrupt_run(path, progress=False)
    full = interrupt_run(None, progress=False)
    assert resumed.successful and full.successful
    for name in ("losses", "loss", "gradient_norm"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(full, name), err_msg=name)
    np.testing.assert_array_equal(ravel_pytree(resumed.params)[0], ravel_pytree(full.params)[0])


def test_failure_is_flagged_saved_and_resumed(problem, result, tmp_path):
    """A step size far beyond 2/S overflows: the run stops at the first non-finite step with the
    code, the step and the time; params stay finite; the checkpoint holds the failure and a rerun
    returns it unchanged without training again."""
    path = str(tmp_path / "diverged.eqx")
    with pytest.warns(RuntimeWarning, match=r"`train`: step \d+ \(time [\d.e+]+\) was not taken"):
        bad = _run(problem, lr=1e30, checkpoint=Checkpoint(path, every=2), throw=False)
    assert bad.result == RESULTS.nonfinite_loss and not bad.successful
    k = int(bad.failed_step)
    assert 0 < k < STEPS and float(bad.failed_time) == pytest.approx(k * 1e30)
    assert np.all(np.isfinite(bad.losses[:k])) and not np.isfinite(bad.losses[k])
    assert np.all(np.isnan(bad.losses[k + 1:]))
    assert np.all(np.isfinite(ravel_pytree(bad.params)[0]))
    rows = np.asarray(bad.steps)  # rows before the failing step are finite, rows after it NaN
    assert np.all(np.isfinite(bad.loss[rows < k])) and np.all(np.isnan(bad.loss[rows > k]))
    assert "FAILED at step" in bad.summary()
    with pytest.warns(RuntimeWarning):
        again = _run(problem, lr=1e30, checkpoint=Checkpoint(path, every=2), throw=False)
    for name in ("losses", "loss", "gradient_norm", "eigenvalues", "failed_step"):
        np.testing.assert_array_equal(getattr(again, name), getattr(bad, name), err_msg=name)
    assert again.result == bad.result
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"`train`: step \d+"):
        _run(problem, lr=1e30, throw=True)
