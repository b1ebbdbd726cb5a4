"""Curvature operators of a dataset loss: the Hessian (forward-over-reverse HVP) and the
generalised Gauss-Newton matrix (JVP then VJP), over any PyTree of parameters, with the data
processed in chunks so that memory stays bounded."""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax import lax

from .._checks import check_int, is_concrete
from .._deprecate import strategy
from .._kernels import Flattener, flatten, hvp
from .._types import Array, PyTree


def _split_params(params):
    """Inexact arrays (differentiated) and the rest (static: activations, solvers, ...).

    Every NeuralODE inside `params` is switched to `diffrax.DirectAdjoint`
    ([`jaxdyn.models.second_order`][]), the adjoint policy for forward-over-reverse products.
    """
    from ..models import second_order

    params = second_order(params)
    return eqx.partition(params, eqx.is_inexact_array)


def _check_finite_now(x, name: str) -> None:
    """`ValueError` naming `name` when a concrete floating-point leaf of `x` holds NaN/inf (traced
    leaves are skipped: under `jit` a non-finite operator shows in the eigen-solvers' result
    codes)."""
    for leaf in jax.tree_util.tree_leaves(eqx.filter(x, eqx.is_inexact_array)):
        if is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")


def _check_data(data: tuple, chunk_size: int | None) -> tuple[int | None, int | None]:
    """Validate the data leaves' leading sizes; return `(n, chunk_size)`."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        if chunk_size is not None:
            raise ValueError("`chunk_size` needs data: pass the dataset after `params`.")
        return None, None
    sizes = []
    for i, leaf in enumerate(leaves):
        shape = jnp.shape(leaf)
        if len(shape) == 0:
            raise ValueError(f"`data` leaves must have a leading example axis; leaf {i} is a scalar.")
        sizes.append(int(shape[0]))
    if len(set(sizes)) != 1:
        raise ValueError(f"`data` leaves must share their leading size (the number of examples); "
                         f"got leading sizes {sizes}.")
    n = sizes[0]
    if n == 0:
        raise ValueError("`data` must hold at least one example.")
    _check_finite_now(data, "data")
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size")
        chunk_size = min(chunk_size, n)
    return n, chunk_size


class _Chunked(eqx.Module):
    """Sum over chunks of `weight_c * fn(chunk_c)`, weight = (examples in chunk) / n.

    Full chunks run in a `lax.scan` that accumulates the sum (memory of one chunk); a
    remainder of `n % chunk_size` examples is one more call with its own exact weight, so the
    mean over the dataset is exact and nothing is padded.
    """

    n: int | None = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)

    def apply(self, fn: Callable, data: tuple, zero):
        if self.n is None or self.chunk_size is None or self.chunk_size >= self.n:
            return fn(data)
        cs, n = self.chunk_size, self.n
        m, r = divmod(n, cs)
        full = jax.tree_util.tree_map(lambda x: x[: m * cs].reshape(m, cs, *x.shape[1:]), data)

        def body(acc, chunk):
            out = fn(chunk)
            return jax.tree_util.tree_map(lambda a, o: a + (cs / n) * o, acc, out), None

        acc, _ = lax.scan(body, zero, full)
        if r:
            rest = jax.tree_util.tree_map(lambda x: x[m * cs:], data)
            acc = jax.tree_util.tree_map(lambda a, o: a + (r / n) * o, acc, fn(rest))
        return acc


@eqx.filter_jit
def _jit_call(method, op, *args):
    """Run `method(op, *args)` compiled (inlined when already under `jit`), so that eager calls
    of `mv` do not dispatch every primitive of a forward-over-reverse pass one by one."""
    return method(op, *args)


def _dense(op):
    return jax.vmap(op.mv)(jnp.eye(op.size, dtype=op.dtype)).T


class AbstractCurvatureOperator(eqx.Module):
    """A symmetric linear operator on the flattened parameters $\\theta \\in \\mathbb{R}^p$.

    The interface every eigen-solver, trace and density estimator of `jaxdyn.curvature` uses.
    A final subclass provides:

    - `flattener`: a `jaxdyn._kernels.Flattener` between flat vectors of length $p$ and the
      parameter PyTree (for an operator on plain vectors, the flattener of a `(p,)` array);
    - `positive_semidefinite`: a class variable (`True` for Gauss-Newton operators);
    - `mv(v_flat)`: the operator applied to a flat vector of shape `(size,)`.

    Shared: `size` ($p$), `dtype`, `ravel`/`unravel` between flat vectors and the parameter
    PyTree, `as_lineax()`, `matrix()` (dense, for tests only). A matvec that is not one of
    these is passed as a `lineax.FunctionLinearOperator` (tagged symmetric).
    """

    flattener: eqx.AbstractVar[Flattener]
    positive_semidefinite: eqx.AbstractClassVar[bool]

    @property
    def size(self) -> int:
        """$p$, the number of (inexact array) parameters."""
        return self.flattener.size

    @property
    def dtype(self):
        return self.flattener.dtype

    def ravel(self, tree) -> Array:
        """A PyTree shaped like the (array part of the) parameters -> a flat vector."""
        return self.flattener.ravel(eqx.filter(tree, eqx.is_inexact_array))

    def unravel(self, v_flat) -> PyTree:
        """A flat vector -> a PyTree shaped like the array part of the parameters (non-array
        leaves are `None`)."""
        return self.flattener.unravel(v_flat)

    @abc.abstractmethod
    def mv(self, v_flat) -> Array:
        """The operator applied to a flat vector of shape `(size,)`."""

    def as_lineax(self) -> lx.AbstractLinearOperator:
        """A `lineax.FunctionLinearOperator` with `symmetric_tag` (plus
        `positive_semidefinite_tag` for Gauss-Newton operators)."""
        struct = jax.ShapeDtypeStruct((self.size,), self.dtype)
        tags = [lx.symmetric_tag]
        if self.positive_semidefinite:
            tags.append(lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(self.mv, struct, tags=frozenset(tags))

    def matrix(self) -> Array:
        """The dense $p \\times p$ matrix (p matvecs; for tests and tiny problems only)."""
        return _jit_call(_dense, self)


CurvatureOperator = AbstractCurvatureOperator
"""Alias: every curvature operator ([`HessianOperator`][], [`GaussNewtonOperator`][]) is one."""


class HessianOperator(AbstractCurvatureOperator):
    r"""The Hessian $H = \nabla^2_\theta L(\theta)$ of a mean loss over a dataset, as a matvec.

    Built by [`hessian_operator`][]. `mv(v)` is the Hessian-vector product by
    forward-over-reverse differentiation, $Hv = \partial_\epsilon \nabla L(\theta +
    \epsilon v)|_{\epsilon = 0}$ (`jax.jvp` of `jax.grad`): about the cost of 2-4 gradients,
    never forming $H$. With chunks, $Hv = \sum_c (n_c / n) H_c v$ exactly.

    Also: `loss()` the mean loss and `gradient()` the flat gradient (chunked alike).
    """

    loss_fn: Callable
    params_dynamic: PyTree
    params_static: PyTree
    data: tuple
    chunking: _Chunked
    flattener: Flattener
    positive_semidefinite: ClassVar[bool] = False

    def _loss_flat(self, theta, chunk):
        params = eqx.combine(self.flattener.unravel(theta), self.params_static)
        return self.loss_fn(params, *chunk)

    @property
    def theta(self) -> Array:
        """The flat parameter vector at which the operator is taken."""
        return self.flattener.ravel(self.params_dynamic)

    def mv(self, v_flat) -> Array:
        """$Hv$ for a flat `v` of shape `(size,)` (compiled once per operator structure)."""
        return _jit_call(type(self)._mv, self, v_flat)

    def loss(self) -> Array:
        """The mean loss over the dataset."""
        return _jit_call(type(self)._loss, self)

    def gradient(self) -> Array:
        """The flat gradient of the mean loss."""
        return _jit_call(type(self)._gradient, self)

    def _mv(self, v_flat) -> Array:
        theta = self.theta
        v_flat = jnp.asarray(v_flat, self.dtype)

        def chunk_hvp(chunk):
            return hvp(self._loss_flat, theta, v_flat, chunk)

        return self.chunking.apply(chunk_hvp, self.data, jnp.zeros_like(theta))

    def _loss(self) -> Array:
        theta = self.theta
        return self.chunking.apply(lambda c: self._loss_flat(theta, c), self.data,
                                   jnp.zeros((), self.dtype))

    def _gradient(self) -> Array:
        theta = self.theta
        return self.chunking.apply(lambda c: jax.grad(self._loss_flat)(theta, c), self.data,
                                   jnp.zeros_like(theta))


class AbstractOutputLoss(eqx.Module):
    """The per-example loss in the model's outputs, as the Gauss-Newton matrix needs it: its
    Hessian $H_i$ in the outputs applied to output tangents (`hessian_mv`), and a check of the
    outputs' shape (`check_outputs`, a `ValueError` naming `loss` when they do not suit it).
    Final subclasses: [`MeanSquaredError`][], [`SoftmaxCrossEntropy`][]."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def check_outputs(self, outputs: jax.ShapeDtypeStruct) -> None:
        """`ValueError` when outputs of this shape (`(batch, q)` or `(batch,)`) do not suit."""

    @abc.abstractmethod
    def hessian_mv(self, outputs: Array, tangents: Array) -> Array:
        """$H_i t_i$ for every example $i$ (the leading axis) of a chunk."""


class MeanSquaredError(AbstractOutputLoss):
    r"""$\ell_i = \frac12\|f(x_i) - y_i\|^2$: $H_i = I$, so $G = \frac1n J^\top J$."""

    name: ClassVar[str] = "mse"

    def check_outputs(self, outputs) -> None:
        return None

    def hessian_mv(self, outputs, tangents) -> Array:
        return tangents


class SoftmaxCrossEntropy(AbstractOutputLoss):
    r"""Softmax cross-entropy on logits $f$ (the last axis):
    $H_i = \operatorname{diag}(p_i) - p_i p_i^\top$, $p_i = \operatorname{softmax}(f(x_i))$."""

    name: ClassVar[str] = "cross_entropy"

    def check_outputs(self, outputs) -> None:
        if outputs.ndim != 2:
            raise ValueError("`loss=SoftmaxCrossEntropy()` needs logits of shape (batch, classes).")

    def hessian_mv(self, outputs, tangents) -> Array:
        p = jax.nn.softmax(outputs, axis=-1)
        return p * tangents - p * jnp.sum(p * tangents, axis=-1, keepdims=True)


_LOSSES = {"mse": MeanSquaredError, "cross_entropy": SoftmaxCrossEntropy}


def _output_loss(loss) -> AbstractOutputLoss:
    """`loss` as a strategy: `None` is the squared error; the old strings warn (one release)."""
    return strategy(loss, name="loss", base=AbstractOutputLoss, default=MeanSquaredError(),
                    old_strings=_LOSSES, where="jaxdyn.curvature")

class GaussNewtonOperator(AbstractCurvatureOperator):
    r"""The generalised Gauss-Newton matrix $G = \frac1n \sum_i J_i^\top H_i J_i$.

    Built by [`gauss_newton_operator`][]. $J_i = \partial f(x_i) / \partial\theta$ and $H_i$ is
    the Hessian of the per-example loss in the outputs (`loss`, an [`AbstractOutputLoss`][]): $I$
    for [`MeanSquaredError`][] (per-example loss $\frac12\|f - y\|^2$) and
    $\operatorname{diag}(p) - pp^\top$, $p = \operatorname{softmax}(f)$, for
    [`SoftmaxCrossEntropy`][]. `mv(v)` is a JVP (forward) then a VJP (reverse) per chunk.
    """

    model_fn: Callable
    params_dynamic: PyTree
    params_static: PyTree
    data: tuple
    chunking: _Chunked
    flattener: Flattener
    loss: AbstractOutputLoss
    positive_semidefinite: ClassVar[bool] = True

    def mv(self, v_flat) -> Array:
        """$Gv$ for a flat `v` of shape `(size,)` (compiled once per operator structure)."""
        return _jit_call(type(self)._mv, self, v_flat)

    def _mv(self, v_flat) -> Array:
        theta = self.flattener.ravel(self.params_dynamic)
        v_flat = jnp.asarray(v_flat, self.dtype)

        def chunk_ggn(chunk):
            def f(th):
                params = eqx.combine(self.flattener.unravel(th), self.params_static)
                return self.model_fn(params, *chunk)

            out, jv = jax.jvp(f, (theta,), (v_flat,))
            nc = out.shape[0]
            hjv = self.loss.hessian_mv(out, jv)
            _, vjp = jax.vjp(f, theta)
            return vjp(hjv)[0] / nc

        return self.chunking.apply(chunk_ggn, self.data, jnp.zeros_like(theta))


def _shape_or_type(out) -> str:
    """The shape of an `eval_shape` output, or its type when it is not one array."""
    return str(out.shape) if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__


def _first_chunk(data, n, chunk_size):
    size = n if chunk_size is None else chunk_size
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct((size, *jnp.shape(x)[1:]),
                                                                 jnp.result_type(x)), data)


def hessian_operator(loss_fn: Callable, params: PyTree, *data: PyTree,
                     chunk_size: int | None = None) -> "HessianOperator":
    r"""The Hessian of a mean loss over a dataset, as a matrix-free symmetric operator.

    **Arguments:**

    - `loss_fn(params, *data) -> scalar`: the **mean** loss over the examples it is given (so
      that chunk means can be recombined exactly).
    - `params`: any PyTree (an Equinox model included). Its inexact-array leaves are the
      variables; everything else (activation functions, solvers, integer arrays) is held fixed.
      Every `NeuralODE` inside is switched to `diffrax.DirectAdjoint`
      ([`jaxdyn.models.second_order`][], jaxdyn's adjoint policy for second derivatives).
    - `*data`: PyTrees of arrays sharing a leading axis of $n$ examples (none for a loss
      without data).
    - `chunk_size`: process the data in chunks of this many examples (a `lax.scan` over full
      chunks, memory of one chunk); $n$ need not be a multiple: the remainder is one more
      chunk with weight $(n \bmod c)/n$, so the result is the exact dataset mean (no padding).

    **Returns:** a [`HessianOperator`][] (a `CurvatureOperator`): `.mv(v)` = $Hv$ by forward-over-reverse
    differentiation (flat vectors of length `.size`), `.unravel`/`.ravel`, `.as_lineax()`.

    **Example:**

    ```python
    def loss(params, x, y):
        return 0.5 * jnp.mean((x @ params["w"] - y) ** 2)
    H = hessian_operator(loss, {"w": jnp.zeros(3)}, X, Y, chunk_size=128)
    top = top_eigenvalues(H, 2)      # X^T X / n's two largest eigenvalues
    ```
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}.")
    n, chunk_size = _check_data(data, chunk_size)
    dynamic, static = _split_params(params)
    _, flattener = flatten(dynamic, name="params")
    _check_finite_now(dynamic, "params")
    probe = _first_chunk(data, n, chunk_size)
    try:
        out = jax.eval_shape(lambda p, d: loss_fn(eqx.combine(p, static), *d), dynamic, probe)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"`loss_fn(params, *data)` failed on the data: {err}") from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        raise ValueError(f"`loss_fn` must return a scalar (the mean loss), got shape "
                         f"{_shape_or_type(out)}.")
    if not jnp.issubdtype(out.dtype, jnp.inexact):
        raise ValueError(f"`loss_fn` must return a floating-point scalar, got dtype {out.dtype}.")
    return HessianOperator(loss_fn, dynamic, static, tuple(data), _Chunked(n, chunk_size),
                             flattener)


def gauss_newton_operator(model_fn: Callable, params: PyTree, *data: PyTree,
                          loss: "AbstractOutputLoss | str | None" = None,
                          chunk_size: int | None = None) -> GaussNewtonOperator:
    r"""The generalised Gauss-Newton (GGN) matrix of a mean loss, as a matrix-free operator.

    $G = \frac1n \sum_{i=1}^n J_i^\top H_i J_i$, where $J_i$ is the Jacobian of the outputs
    $f(x_i) \in \mathbb{R}^q$ in the parameters and $H_i$ the Hessian of the per-example loss in
    the outputs. It is the Hessian without the term $\sum_i \nabla_f \ell \cdot \nabla^2 f$, is
    positive semi-definite, and equals the Hessian where the residuals vanish.

    **Normalisation.** `loss=MeanSquaredError()` means
    $L = \frac1n \sum_i \frac12 \|f(x_i) - y_i\|^2$, so $H_i = I$ and $G = \frac1n J^\top J$
    ($J$ the stacked $nq \times p$ Jacobian). For the mean over examples of $\|f - y\|^2$ (no
    $\frac12$) multiply by 2; for a mean over examples *and* outputs multiply by $2/q$.
    `loss=SoftmaxCrossEntropy()`: softmax cross-entropy on logits $f$,
    $H_i = \operatorname{diag}(p_i) - p_i p_i^\top$. Targets do not enter $G$ for either.

    **Arguments:**

    - `model_fn(params, *data) -> outputs`: the model on a batch, outputs of shape
      `(batch, q)` (or `(batch,)`, $q = 1$). `*data` are the arrays it needs (inputs; extra
      arrays such as targets may be passed and ignored), with a shared leading axis $n$.
    - `params`, `chunk_size`: as in [`hessian_operator`][].
    - `loss`: the per-example loss in the outputs, a strategy object:
      [`MeanSquaredError`][]`()` (the default, `None`) or [`SoftmaxCrossEntropy`][]`()` (or a
      subclass of [`AbstractOutputLoss`][] of your own). The strings `"mse"` and
      `"cross_entropy"` still work for one release, with a `DeprecationWarning`.

    **Returns:** a `GaussNewtonOperator` (`.mv` = JVP then VJP; `.as_lineax()` is tagged
    symmetric and positive semi-definite).
    """
    if not callable(model_fn):
        raise TypeError(f"`model_fn` must be callable, got {type(model_fn).__name__}.")
    loss = _output_loss(loss)
    n, chunk_size = _check_data(data, chunk_size)
    if n is None:
        raise ValueError("`data` is required: the GGN averages over examples.")
    dynamic, static = _split_params(params)
    _, flattener = flatten(dynamic, name="params")
    _check_finite_now(dynamic, "params")
    probe = _first_chunk(data, n, chunk_size)
    out = jax.eval_shape(lambda p, d: model_fn(eqx.combine(p, static), *d), dynamic, probe)
    expected = n if chunk_size is None else chunk_size
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim not in (1, 2) or out.shape[0] != expected:
        raise ValueError(f"`model_fn` must return outputs of shape (batch, q) or (batch,) with "
                         f"batch = {expected}, got {_shape_or_type(out)}.")
    loss.check_outputs(out)
    return GaussNewtonOperator(model_fn, dynamic, static, tuple(data), _Chunked(n, chunk_size),
                               flattener, loss)


def map_batched(fn, xs, batch_size):
    """`lax.map(fn, xs)`, or with `batch_size` (`vmap` over batches; JAX >= 0.4.31) if given."""
    if batch_size is None:
        return lax.map(fn, xs)
    return lax.map(fn, xs, batch_size=batch_size)


# -- accepting any operator ----------------------------------------------------------------------


def _flat_flattener(size: int, dtype) -> Flattener:
    """The flattener of a plain vector of length `size` (operators given as matrices or lineax)."""
    return flatten(jnp.zeros((size,), dtype), name="operator")[1]


class _DenseOperator(AbstractCurvatureOperator):
    """A symmetric matrix as an operator on flat vectors (`as_operator` of an array)."""

    matrix_: Array
    flattener: Flattener
    positive_semidefinite: ClassVar[bool] = False

    def mv(self, v_flat) -> Array:
        return self.matrix_ @ v_flat


class _LineaxOperator(AbstractCurvatureOperator):
    """A square lineax operator; a PyTree input structure is flattened (`flattener`)."""

    operator: lx.AbstractLinearOperator
    flattener: Flattener
    positive_semidefinite: ClassVar[bool] = False

    def mv(self, v_flat) -> Array:
        return self.flattener.ravel(self.operator.mv(self.flattener.unravel(v_flat)))


def _from_lineax(operator: lx.AbstractLinearOperator, name: str) -> AbstractCurvatureOperator:
    if operator.in_size() != operator.out_size():
        raise ValueError(f"`{name}` must be square, got {operator.out_size()} x "
                         f"{operator.in_size()}.")
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), operator.in_structure())
    return _LineaxOperator(operator, flatten(zeros, name=name)[1])


def _from_matrix(matrix, name: str) -> AbstractCurvatureOperator:
    mat = jnp.asarray(matrix)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"`{name}` given as a matrix must be square, got shape {mat.shape}.")
    if not jnp.issubdtype(mat.dtype, jnp.inexact):
        mat = mat.astype(jnp.result_type(float))
    if is_concrete(mat) and not bool(jnp.all(jnp.isfinite(mat))):
        raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")
    if is_concrete(mat) and not bool(jnp.allclose(mat, mat.T, rtol=1e-6, atol=0.0)):
        raise ValueError(f"`{name}` must be symmetric.")
    return _DenseOperator(mat, _flat_flattener(mat.shape[0], mat.dtype))


def as_operator(operator, name: str = "operator"):
    """Convert `operator` to an [`AbstractCurvatureOperator`][]; return it with its dtype.

    Accepts exactly three kinds of input, told apart by type: an `AbstractCurvatureOperator`
    (returned as it is: [`hessian_operator`][], [`gauss_newton_operator`][], or a subclass of
    your own), a lineax operator (square; PyTree input structures are flattened; a bare matvec
    goes in as `lineax.FunctionLinearOperator(mv, jax.ShapeDtypeStruct((n,), dtype),
    lineax.symmetric_tag)`), or a symmetric matrix (a JAX or NumPy array, or nested lists). Any
    other type is a `TypeError` naming `name`.
    """
    if isinstance(operator, AbstractCurvatureOperator):
        return operator, operator.dtype
    if isinstance(operator, lx.AbstractLinearOperator):
        op = _from_lineax(operator, name)
        return op, op.dtype
    if isinstance(operator, jax.Array | np.ndarray | list | tuple):
        op = _from_matrix(operator, name)
        return op, op.dtype
    raise TypeError(f"`{name}` must be a jaxdyn.curvature.AbstractCurvatureOperator, a lineax "
                    f"operator or a square matrix; got {type(operator).__name__}. Pass a matvec "
                    "`mv` as `lineax.FunctionLinearOperator(mv, jax.ShapeDtypeStruct((n,), dtype), "
                    "lineax.symmetric_tag)`, or subclass `AbstractCurvatureOperator`.")
