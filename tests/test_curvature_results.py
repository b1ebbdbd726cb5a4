"""The patterns of jaxdyn.curvature: result objects (`summary()`, `plot()`, `result` codes),
trace estimators as strategy objects, the operator interface (`as_operator` converts typed inputs
only) and the deprecated spellings (`num_iters`, `method="hutch++"`)."""

import typing

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import matplotlib.pyplot as plt
import numpy as np
import pytest

import jaxdyn.curvature as cv
from jaxdyn._kernels import flatten
from jaxdyn._results import RESULTS

N = 12


@pytest.fixture(scope="module")
def matrix():
    rng = np.random.default_rng(7)
    lam = np.concatenate([[-1.0], np.linspace(0.2, 2.0, N - 3), [4.0, 6.0]])
    U, _ = np.linalg.qr(rng.normal(size=(N, N)))
    A = (U * lam) @ U.T
    return jnp.asarray(0.5 * (A + A.T)), lam


@pytest.fixture(scope="module")
def results(matrix):
    A, _ = matrix
    return {
        "eigen": cv.top_eigenvalues(A, 2),
        "density": cv.spectral_density(A, key=jax.random.key(0), n_probes=3, order=6, n_grid=64),
        "trace": cv.trace(A, key=jax.random.key(1), n_probes=30),
        "trace++": cv.trace(A, key=jax.random.key(1), n_probes=30, method=cv.HutchPlusPlus()),
    }


# -- results: codes, summary, plot -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["eigen", "density", "trace", "trace++"])
def test_results_carry_a_code_a_summary_and_a_plot(results, name):
    res = results[name]
    assert res.result == RESULTS.successful and bool(res.successful)
    text = res.summary()
    headline = {
        "eigen": f"{float(res.eigenvalues[0]):.6g}" if name == "eigen" else None,
        "density": "mean eigenvalue",
        "trace": f"{float(res.estimate):.6g}" if name.startswith("trace") else None,
        "trace++": f"{float(res.estimate):.6g}" if name.startswith("trace") else None,
    }[name]
    assert headline in text and "successful" in text, text
    fig = res.plot()
    assert len(fig.axes) == 1
    _, ax = plt.subplots()
    assert res.plot(ax=ax) is ax.figure  # draws onto the given axes
    assert ax.lines
    plt.close("all")


def test_trace_result_pieces_and_running_estimate(results, matrix):
    _, lam = matrix
    for name, offset_zero in (("trace", True), ("trace++", False)):
        tr = results[name]
        assert tr.samples.shape == ((30,) if offset_zero else (10,))
        assert (float(tr.offset) == 0.0) == offset_zero
        np.testing.assert_allclose(tr.estimate, tr.offset + jnp.mean(tr.samples), rtol=1e-14)
        assert tr.method == tr.estimator.name
    fig = results["trace"].plot(reference=lam.sum())
    assert fig.axes[0].get_xlabel() == "Monte-Carlo samples"
    plt.close("all")


def test_hand_built_results_default_to_successful():
    res = cv.EigenResult(jnp.array([2.0]), jnp.eye(1, 3), jnp.array([0.0]), jnp.array(1),
                         jnp.array(1), jnp.array(True), jnp.array([2.0]))
    assert res.result == RESULTS.successful and "2" in res.summary()


def test_results_pass_through_jit_and_vmap(matrix):
    A, _ = matrix
    batch = eqx.filter_jit(jax.vmap(lambda s: cv.top_eigenvalues(s * A, 1)))(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(batch.eigenvalues[:, 0], [6.0, 12.0], rtol=1e-10)
    assert np.all(np.asarray(batch.successful)) and "batched" in batch.summary()


# -- trace estimators are strategies ---------------------------------------------------------------


class _Exact(cv.AbstractTraceEstimator):
    """A user's estimator: the exact trace from unit vectors (needs n_probes >= size)."""

    name: typing.ClassVar[str] = "exact"

    def check_probes(self, n_probes):
        if n_probes < N:
            raise ValueError(f"`n_probes` must be >= {N} for the exact trace.")

    def estimate(self, op, key, n_probes, batch_size):
        E = jnp.eye(op.size, dtype=op.dtype)
        vals = jax.vmap(lambda e: e @ op.mv(e))(E)
        return jnp.sum(vals), jnp.zeros((), op.dtype), vals * op.size, jnp.zeros((), op.dtype)


def test_trace_estimators_are_strategy_objects(matrix):
    A, lam = matrix
    with pytest.raises(TypeError):
        cv.AbstractTraceEstimator()  # abstract: declares check_probes and estimate
    exact = cv.trace(A, key=jax.random.key(0), n_probes=N, method=_Exact())
    np.testing.assert_allclose(exact.estimate, lam.sum(), rtol=1e-12)
    assert exact.method == "exact" and "exact estimator" in exact.summary()
    with pytest.raises(ValueError, match="`n_probes`"):
        cv.trace(A, key=jax.random.key(0), n_probes=N - 1, method=_Exact())
    default = cv.trace(A, key=jax.random.key(1), n_probes=30, method=None)
    assert isinstance(default.estimator, cv.Hutchinson)


def test_trace_method_strings_are_deprecated(results, matrix):
    A, _ = matrix
    cases = (("hutchinson", cv.Hutchinson, "trace"), ("hutch++", cv.HutchPlusPlus, "trace++"))
    for string, obj, name in cases:
        with pytest.warns(DeprecationWarning, match=rf"method={obj.__name__}\(\)"):
            old = cv.trace(A, key=jax.random.key(1), n_probes=30, method=string)
        assert isinstance(old.estimator, obj)
        np.testing.assert_array_equal(old.estimate, results[name].estimate)
        np.testing.assert_array_equal(old.stderr, results[name].stderr)


# -- renamed keywords ------------------------------------------------------------------------------


def test_num_iters_is_deprecated_for_n_steps(matrix):
    A, _ = matrix
    for fn, steps in ((cv.top_eigenvalues, N), (cv.power_iteration, 200)):
        new = fn(A, n_steps=steps)
        with pytest.warns(DeprecationWarning, match="n_steps"):
            old = fn(A, num_iters=steps)
        np.testing.assert_array_equal(old.eigenvalues, new.eigenvalues)
        with pytest.raises(TypeError, match="both"):
            fn(A, num_iters=steps, n_steps=steps)

    def loss(p):
        return 0.5 * p @ A @ p

    with pytest.warns(DeprecationWarning, match="n_steps"):
        old = cv.sharpness(loss, jnp.zeros(N), num_iters=N)
    np.testing.assert_array_equal(old, cv.sharpness(loss, jnp.zeros(N), n_steps=N))


def test_probe_and_grid_counts_are_spelled_n(results, matrix):
    A, _ = matrix
    with pytest.warns(DeprecationWarning, match="n_probes"):
        tr = cv.trace(A, key=jax.random.key(1), num_probes=30)
    np.testing.assert_array_equal(tr.estimate, results["trace"].estimate)
    with pytest.warns(DeprecationWarning, match="n_grid"):
        dens = cv.spectral_density(A, key=jax.random.key(0), n_probes=3, order=6, num_grid=64)
    np.testing.assert_array_equal(dens.density, results["density"].density)


# -- the operator interface ------------------------------------------------------------------------


class _Scaled(cv.AbstractCurvatureOperator):
    """A user's operator: declared by subclassing, no duck typing."""

    matrix_: jax.Array
    flattener: typing.Any
    positive_semidefinite: typing.ClassVar[bool] = False

    def mv(self, v_flat):
        return 2.0 * (self.matrix_ @ v_flat)


class _DuckModule(eqx.Module):
    """An undeclared Equinox module with `.mv` and `.size`: not an operator type."""

    matrix_: jax.Array

    @property
    def size(self) -> int:
        return self.matrix_.shape[0]

    def mv(self, v):
        return self.matrix_ @ v


def test_operators_are_declared_or_converted(matrix):
    A, lam = matrix
    ref = cv.top_eigenvalues(A, 2)
    # a subclass of AbstractCurvatureOperator
    own = _Scaled(A, flatten(jnp.zeros(N), name="v")[1])
    np.testing.assert_allclose(cv.top_eigenvalues(own, 2).eigenvalues, 2 * ref.eigenvalues, rtol=1e-12)
    # a bare matvec, declared as a lineax operator; a PyTree input structure is flattened
    struct = jax.ShapeDtypeStruct((N,), A.dtype)
    fn_op = lx.FunctionLinearOperator(lambda v: A @ v, struct, lx.symmetric_tag)
    np.testing.assert_array_equal(cv.top_eigenvalues(fn_op, 2).eigenvalues, ref.eigenvalues)
    tree_struct = {"a": jax.ShapeDtypeStruct((4,), A.dtype), "b": jax.ShapeDtypeStruct((N - 4,), A.dtype)}

    def tree_mv(t):
        w = A @ jnp.concatenate([t["a"], t["b"]])
        return {"a": w[:4], "b": w[4:]}

    tree_op = lx.FunctionLinearOperator(tree_mv, tree_struct, lx.symmetric_tag)
    np.testing.assert_allclose(cv.top_eigenvalues(tree_op, 2).eigenvalues, ref.eigenvalues, rtol=1e-12)
    # every conversion is an AbstractCurvatureOperator
    for given in (A, np.asarray(A), fn_op, own):
        op, dtype = cv.as_operator(given)
        assert isinstance(op, cv.AbstractCurvatureOperator) and dtype == A.dtype and op.size == N
    # no duck typing: an undeclared module with .mv/.size is told how to declare itself
    for given in (_DuckModule(A), object()):
        with pytest.raises(TypeError, match="`operator`.*FunctionLinearOperator"):
            cv.as_operator(given)


# -- Gauss-Newton output losses are strategies -----------------------------------------------------


def _model(w, x):
    return jnp.tanh(x @ w)


def test_gauss_newton_losses_are_strategy_objects():
    w = jnp.asarray([[0.3, -0.5], [0.8, 0.1], [-0.2, 0.4]])
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, 3)))
    default = cv.gauss_newton_operator(_model, w, x)
    assert isinstance(default.loss, cv.MeanSquaredError)
    for string, obj in (("mse", cv.MeanSquaredError), ("cross_entropy", cv.SoftmaxCrossEntropy)):
        new = cv.gauss_newton_operator(_model, w, x, loss=obj())
        with pytest.warns(DeprecationWarning, match=rf"loss={obj.__name__}\(\)"):
            old = cv.gauss_newton_operator(_model, w, x, loss=string)
        assert isinstance(old.loss, obj)
        np.testing.assert_array_equal(old.matrix(), new.matrix())
    with pytest.raises(TypeError):
        cv.AbstractOutputLoss()


# -- spectral-density Lanczos backends are strategies ----------------------------------------------


def test_density_backends_are_strategy_objects(results, matrix):
    A, _ = matrix
    kw = dict(key=jax.random.key(0), n_probes=3, order=6, n_grid=64)
    ours = cv.spectral_density(A, backend=cv.JaxdynLanczos(), **kw)
    np.testing.assert_array_equal(ours.density, results["density"].density)  # the default
    for string, obj in (("jaxdyn", cv.JaxdynLanczos), ("matfree", cv.MatfreeLanczos)):
        new = cv.spectral_density(A, backend=obj(), **kw)
        with pytest.warns(DeprecationWarning, match=rf"backend={obj.__name__}\(\)"):
            old = cv.spectral_density(A, backend=string, **kw)
        np.testing.assert_array_equal(old.density, new.density)
    with pytest.raises(TypeError, match="`backend`"):
        cv.spectral_density(A, backend=len, **kw)
    with pytest.raises(TypeError):
        cv.AbstractLanczosBackend()


# -- Lanczos stopping criteria are strategies ------------------------------------------------------


class _AfterSteps(cv.AbstractLanczosCriterion):
    """A user's criterion: stop after a fixed number of steps, whatever the residuals."""

    steps: int

    def min_steps(self, k):
        return self.steps

    def satisfied(self, pairs, tol):
        return pairs.steps >= self.steps

    def converged(self, pairs, tol, stopped):
        return stopped


def test_lanczos_criteria_are_strategy_objects(matrix):
    A, _ = matrix
    cases = (("residual", cv.ResidualCriterion), ("eigenvalue_bound", cv.EigenvalueBoundCriterion),
             ("change", cv.ChangeCriterion))
    for string, obj in cases:
        new = cv.top_eigenvalues(A, 2, criterion=obj(), tol=1e-6)
        with pytest.warns(DeprecationWarning, match=rf"criterion={obj.__name__}\(\)"):
            old = cv.top_eigenvalues(A, 2, criterion=string, tol=1e-6)
        np.testing.assert_array_equal(old.eigenvalues, new.eigenvalues)
        assert int(old.iterations) == int(new.iterations)
    res = cv.top_eigenvalues(A, 2, criterion=_AfterSteps(4), tol=1e-6)
    assert int(res.iterations) == 4 and bool(res.converged)
    with pytest.raises(TypeError, match="`criterion`"):
        cv.top_eigenvalues(A, 2, criterion=len)
    with pytest.raises(TypeError):
        cv.AbstractLanczosCriterion()
