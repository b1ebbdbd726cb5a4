"""Vanishing and exploding gradients as Lyapunov exponents of layer-Jacobian products, and the
order-to-chaos transition of deep networks at initialisation."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_finite, check_int, is_concrete
from .._deprecate import renamed_kwargs
from .._kernels import jvp_columns
from .._results import RESULTS, AbstractResult, check_throw, message
from .._types import Array, Key
from ..models import MLP, DenseResNet, ResNet
from ._common import check_key, elementwise_code, raise_failed
from ._engine import qr_positive
from ._result import LyapunovResult


def _layer_list(model, include_readout: bool) -> list[Callable]:
    """The layers of an MLP (its hidden layers, and the readout when asked for) or of a list of
    layer callables."""
    if isinstance(model, MLP):
        act = model.activation
        hidden = [lambda h, lin=lin: act(lin(h)) for lin in model.layers[:-1]]
        return hidden + [model.layers[-1]] if include_readout else hidden
    if isinstance(model, Sequence) and not isinstance(model, str):
        if not all(callable(layer) for layer in model):
            raise TypeError("`model_or_layers`: every layer must be a callable h -> h'.")
        return list(model)
    raise TypeError(
        "`model_or_layers` must be an MLP, ResNet, DenseResNet, a stacked layer module or a "
        f"list of layer callables, got {type(model).__name__}."
    )


def network_spectrum(model_or_layers, x, *, k: int | None = None, include_readout: bool = False,
                     throw: bool = True) -> LyapunovResult:
    r"""Lyapunov exponents (per layer) of the layer-Jacobian product $J_L \cdots J_1$ at input $x$.

    $\partial h_L / \partial h_0 = J_L \cdots J_1$ governs back-propagated gradients: its
    exponents are negative for vanishing and positive for exploding gradients. They are
    computed as Benettin's: the tangent block (starting from the first `k` unit vectors) is
    pushed through each layer by `jax.jvp` and re-orthonormalised by a sign-fixed QR after every
    layer, $\lambda_i = \frac1L \sum_l \log (R_l)_{ii}$. For a finite depth these are the
    $\frac1L \log |R_{ii}|$ of the QR factorisation of the product (their sum is exactly
    $\frac1L \log|\det J_L \cdots J_1|$ when $k$ is the full width); as $L \to \infty$ they
    converge to the Lyapunov exponents of the layer cocycle.

    **Arguments:**

    - `model_or_layers`: a [`ResNet`][] (the residual stream $h_0 \to h_L$, one `lax.scan`), a
      [`DenseResNet`][] (the map $h_0 \to h_L$ through all shortcuts, one forward-mode pass and one
      QR), an [`MLP`][] (its hidden layers; `include_readout=True` adds the last affine layer),
      or a list of layer callables `h -> h'` (widths may change; `k` at most the smallest). MLPs
      and lists run as a Python loop over the layers (their shapes may differ): eager calls are
      fast, but under `jit` a very deep MLP unrolls; use a ResNet with stacked layers there.
    - `x`: the input (for ResNets with a lift, the network input; the lift is not counted).
    - `k`: how many exponents (default: the smallest width along the product).
    - `throw`: raise when a hidden state or a tangent vector became non-finite (e.g. NaN
      weights; default), or with `False` return the code (`nonfinite_state`,
      `nonfinite_tangent`) with `failed_step` the first such layer (0-based) and NaN exponents.
      An exactly singular layer (a dead ReLU layer) is an answer, not a failure: its exponents
      are $-\infty$ and the code is `successful`.

    **Returns:** a [`LyapunovResult`][] with per-layer exponents and the running estimates after
    each layer in `history`.
    """
    check_throw(throw)
    return raise_failed(_network_spectrum(model_or_layers, x, k=k, include_readout=include_readout),
                        throw, "the result with its code and the failed layer")


def _network_spectrum(model_or_layers, x, *, k, include_readout) -> LyapunovResult:
    x = check_finite(jnp.asarray(x, dtype=jnp.result_type(float)), "x")
    if isinstance(model_or_layers, ResNet | DenseResNet):
        net = model_or_layers
        if x.shape != (net.in_size,):
            raise ValueError(f"`x` must have shape ({net.in_size},), got {x.shape}.")
        h0 = x if net.lift is None else net.lift(x)
        m, L = net.width, net.depth
        k = m if k is None else check_int(k, "k")
        if k > m:
            raise ValueError(f"`k` must be at most the width {m}, got {k}.")
        Q0 = jnp.eye(m, k, dtype=h0.dtype)
        if isinstance(net, ResNet):
            params, static = eqx.partition(net.layers, eqx.is_array)

            def step(carry, p):
                h, Q, logs, l = carry
                layer = eqx.combine(p, static)
                f = lambda hh: hh + net.delta * layer(hh)
                h_new, Q_new = jvp_columns(f, h, Q)
                Q_new, d = qr_positive(Q_new)
                logs = logs + jnp.log(d)
                return (h_new, Q_new, logs, l + 1), (logs / (l + 1), jnp.all(jnp.isfinite(h_new)))

            (_, _, logs, _), (history, state_ok) = lax.scan(
                step, (h0, Q0, jnp.zeros(k, h0.dtype), 0), params)
            return _result(logs / L, history, state_ok)
        # DenseResNet: tangents through the whole buffer map, one QR at the end
        final = lambda hh: net.states_from(hh)[-1]
        h_L, T = jvp_columns(final, h0, Q0)
        _, d = qr_positive(T)
        return _result(jnp.log(d) / L, (jnp.log(d) / L)[None], jnp.all(jnp.isfinite(h_L))[None])

    layers = _layer_list(model_or_layers, include_readout)
    if not layers:
        raise ValueError("`model_or_layers` has no layers to differentiate.")
    widths = [x.shape[0]]
    h = x
    for l, layer in enumerate(layers):
        try:
            h = jax.eval_shape(layer, jax.ShapeDtypeStruct(h.shape, h.dtype))
        except Exception as err:  # noqa: BLE001 - re-raised naming the argument
            raise ValueError(f"`model_or_layers`: layer {l} failed on an input of shape "
                             f"{h.shape}: {err}") from err
        if not isinstance(h, jax.ShapeDtypeStruct) or len(h.shape) != 1:
            got = f"shape {h.shape}" if isinstance(h, jax.ShapeDtypeStruct) else type(h).__name__
            raise ValueError(f"`model_or_layers`: layer {l} must map a vector to a vector, got "
                             f"output {got}.")
        widths.append(h.shape[0])
    kmax = min(widths)
    k = kmax if k is None else check_int(k, "k")
    if k > kmax:
        raise ValueError(f"`k` must be at most the smallest width {kmax}, got {k}.")
    h = x
    Q = jnp.eye(x.shape[0], k, dtype=x.dtype)
    logs = jnp.zeros(k, x.dtype)
    history, state_ok = [], []
    for l, layer in enumerate(layers):
        h, Q = jvp_columns(layer, h, Q)
        Q, d = qr_positive(Q)
        logs = logs + jnp.log(d)
        history.append(logs / (l + 1))
        state_ok.append(jnp.all(jnp.isfinite(h)))
    return _result(logs / len(layers), jnp.stack(history), jnp.stack(state_ok))


def _result(exponents, history, state_ok) -> LyapunovResult:
    """A hidden state non-finite (`state_ok` False, per layer): `nonfinite_state`; else NaN in
    the running estimates (e.g. NaN weights): `nonfinite_tangent`; either way NaN exponents and
    `failed_step` the first layer (0-based) where it appeared. $-\\infty$ (an exactly singular
    layer) is an answer: `successful`, the exponents kept."""
    order = jnp.argsort(-exponents)
    n = history.shape[0]
    nan_rows = jnp.any(jnp.isnan(history), axis=1)
    bad_rows = nan_rows | ~state_ok
    code = RESULTS.where(~jnp.all(state_ok), RESULTS.nonfinite_state,
                         RESULTS.where(jnp.any(nan_rows), RESULTS.nonfinite_tangent,
                                       RESULTS.successful))
    failed = jnp.where(jnp.any(bad_rows), jnp.argmax(bad_rows), -1)
    exponents = jnp.where(jnp.any(bad_rows), jnp.nan, exponents)
    return LyapunovResult(
        exponents=exponents[order], history=history[:, order], times=jnp.arange(1, n + 1),
        stderr=None, result=code, failed_step=failed, steps=jnp.asarray(n),
    )


# ---------------------------------------------------------------------------------------------
# order to chaos


def _gauss_hermite(n: int, dtype):
    z, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-z^2 / 2)
    return jnp.asarray(z, dtype), jnp.asarray(w / np.sqrt(2 * np.pi), dtype)


class SignalPropagationResult(AbstractResult):
    r"""Mean-field signal propagation at initialisation (Poole et al. 2016).

    `q_star`: the fixed point of $q \mapsto \sigma_w^2 E[\phi(\sqrt q z)^2] + \sigma_b^2$;
    `chi_1` $= \sigma_w^2 E[\phi'(\sqrt{q^*} z)^2]$ (order for $\chi_1 < 1$, chaos for
    $\chi_1 > 1$); `lambda_mean_field` $= \frac12 \log \chi_1$, the top per-layer Lyapunov exponent
    the mean-field theory predicts for wide networks. `sigma_w2`, `sigma_b2`: the variances;
    `result`: a [`jaxdyn.RESULTS`][] item, `nonfinite_state` where $q^*$ or $\chi_1$ is not
    finite (an activation that grows too fast for the variances).
    """

    q_star: Array
    chi_1: Array
    sigma_w2: Array
    sigma_b2: Array
    result: RESULTS

    @property
    def lambda_mean_field(self) -> Array:
        return 0.5 * jnp.log(self.chi_1)

    def summary(self) -> str:
        r"""$q^*$, $\chi_1$ and the mean-field exponent (ranges when batched), and the code."""
        def show(name, v):
            v = np.asarray(v, dtype=float)
            if v.size == 1:
                return f"{name} = {float(v.reshape(())):.6g}"
            return f"{name} in [{np.nanmin(v):.6g}, {np.nanmax(v):.6g}] ({v.size} values)"

        phase = ""
        chi = np.asarray(self.chi_1, dtype=float)
        if chi.size == 1:
            phase = " (chaotic)" if chi.item() > 1 else " (ordered)"
        return "\n".join([
            "Mean-field signal propagation: " + show("sigma_w2", self.sigma_w2) + ", "
            + show("sigma_b2", self.sigma_b2),
            show("q*", self.q_star) + "; " + show("chi_1", self.chi_1) + phase,
            show("mean-field exponent (1/2) log chi_1", self.lambda_mean_field),
            f"result: {message(self.result)}",
        ])

    def plot(self, ax=None, **kwargs):
        r"""$\chi_1$ against $\sigma_w^2$ with the transition $\chi_1 = 1$; see
        [`jaxdyn.plot.plot_signal_propagation`][]."""
        from ..plot._lyapunov import plot_signal_propagation

        return plot_signal_propagation(self, ax=ax, **kwargs)


def _check_variance(v, name: str):
    """A variance: finite and >= 0 (ValueError when concrete, `eqx.error_if` when traced)."""
    v = jnp.asarray(v)
    if not jnp.issubdtype(v.dtype, jnp.inexact):
        v = v.astype(jnp.result_type(float))
    msg = f"`{name}` must be finite and non-negative (a variance)."
    if is_concrete(v):
        if not np.all(np.isfinite(np.asarray(v))) or np.any(np.asarray(v) < 0):
            raise ValueError(f"{msg[:-1]}, got {np.asarray(v)}.")
        return v
    return eqx.error_if(v, ~jnp.all(jnp.isfinite(v) & (v >= 0)), msg)


def _mean_field(sigma_w2, sigma_b2, *, activation, n_steps, n_quad) -> SignalPropagationResult:
    z, w = _gauss_hermite(n_quad, sigma_w2.dtype)
    dphi = jax.vmap(jax.grad(activation))

    def update(q, _):
        return sigma_w2 * jnp.sum(w * activation(jnp.sqrt(q) * z) ** 2) + sigma_b2, None

    q, _ = lax.scan(update, jnp.ones_like(sigma_w2), None, length=n_steps)
    chi = sigma_w2 * jnp.sum(w * dphi(jnp.sqrt(q) * z) ** 2)
    ok = jnp.isfinite(q) & jnp.isfinite(chi)
    code = elementwise_code(lambda o: RESULTS.where(o, RESULTS.successful, RESULTS.nonfinite_state),
                            ok)
    return SignalPropagationResult(q_star=q, chi_1=chi, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                                   result=code)


@renamed_kwargs(n_iter="n_steps")
def signal_propagation(sigma_w2, sigma_b2, *, activation: Callable = jnp.tanh,
                       n_steps: int = 1000, n_quad: int = 101,
                       throw: bool = True) -> SignalPropagationResult:
    """Fixed point $q^*$ and $\\chi_1$ by Gauss-Hermite quadrature; vmap-able over the variances.

    **Arguments:** the variances `sigma_w2`, `sigma_b2`; `activation` $\\phi$; `n_steps`
    iterations of the variance map (was `n_iter`, deprecated); `n_quad` quadrature nodes;
    `throw`: raise when $q^*$ or $\\chi_1$ is not finite (default), or with `False` return the
    code in `result`.

    **Returns:** a [`SignalPropagationResult`][].
    """
    n_steps = check_int(n_steps, "n_steps")
    n_quad = check_int(n_quad, "n_quad")
    check_throw(throw)
    if not callable(activation):
        raise TypeError(f"`activation` must be callable, got {type(activation).__name__}.")
    sigma_w2 = _check_variance(sigma_w2, "sigma_w2")
    sigma_b2 = _check_variance(jnp.asarray(sigma_b2, sigma_w2.dtype), "sigma_b2")
    res = _mean_field(sigma_w2, sigma_b2, activation=activation, n_steps=n_steps, n_quad=n_quad)
    return raise_failed(res, throw, "the result with its code")


def _network_run(key, sigma_w2, sigma_b2, *, width, depth, activation, transient):
    """The top per-layer exponent of one random network, and whether a hidden state stayed
    finite and the tangent vector never vanished."""
    dtype = jnp.result_type(float)
    sigma_w = jnp.sqrt(jnp.asarray(sigma_w2, dtype))
    sigma_b = jnp.sqrt(jnp.asarray(sigma_b2, dtype))
    k0, k1 = jax.random.split(key)
    h0 = jax.random.normal(k0, (width,), dtype)
    v0 = jax.random.normal(k1, (width,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    def layer(carry, l):
        h, v, log_sum, state_ok, alive = carry
        kw, kb = jax.random.split(jax.random.fold_in(key, l))
        W = jax.random.normal(kw, (width, width), dtype) * sigma_w / jnp.sqrt(width)
        b = jax.random.normal(kb, (width,), dtype) * sigma_b
        pre = W @ h + b
        h_new = activation(pre)
        v_new = jax.vmap(jax.grad(activation))(pre) * (W @ v)
        norm = jnp.linalg.norm(v_new)
        counted = l >= transient
        log_sum = log_sum + jnp.where(counted, jnp.log(norm), 0.0)
        state_ok = state_ok & jnp.all(jnp.isfinite(h_new))
        alive = alive & (norm > 0)
        return (h_new, v_new / norm, log_sum, state_ok, alive), None

    init = (h0, v0, jnp.zeros((), dtype), jnp.asarray(True), jnp.asarray(True))
    (_, _, log_sum, state_ok, alive), _ = lax.scan(layer, init, jnp.arange(depth + transient))
    return log_sum / depth, state_ok, alive


def random_network_exponent(key: Key, sigma_w2, sigma_b2, *, width: int, depth: int,
                            activation: Callable = jnp.tanh, transient: int = 50) -> Array:
    r"""Top per-layer Lyapunov exponent of a random deep network at initialisation.

    $h_{l+1} = \phi(W_l h_l + b_l)$ with $W_{ij} \sim N(0, \sigma_w^2/N)$, $b_i \sim N(0,
    \sigma_b^2)$, drawn layer by layer inside a `lax.scan` (never stored), from a Gaussian input;
    the first `transient` layers bring $q_l$ to $q^*$ and are not counted. vmap-able over keys
    and variances.
    """
    width = check_int(width, "width")
    depth = check_int(depth, "depth")
    transient = check_int(transient, "transient", minimum=0)
    return _network_run(key, sigma_w2, sigma_b2, width=width, depth=depth, activation=activation,
                        transient=transient)[0]


class PhaseDiagramResult(AbstractResult):
    """Order-to-chaos diagram on a grid: `sigma_w2` (a), `sigma_b2` (b), mean-field `chi_1` and
    `q_star` (shape (b, a)), the empirical top exponent per seed `empirical` (shape (b, a, seeds))
    and its mean `lambda_1`, and the mean-field prediction `lambda_mean_field`. `result`: a
    [`jaxdyn.RESULTS`][] item per cell (shape (b, a)): `nonfinite_state` where the mean-field
    fixed point or a hidden state of a random network is not finite, `degenerate_tangent` where
    a tangent vector vanished (e.g. every unit of a ReLU layer off), `nonfinite_tangent` where an
    empirical exponent is otherwise not finite."""

    sigma_w2: Array
    sigma_b2: Array
    chi_1: Array
    q_star: Array
    empirical: Array
    result: RESULTS = eqx.field(default_factory=lambda: RESULTS.successful)

    @property
    def lambda_1(self) -> Array:
        return jnp.mean(self.empirical, axis=-1)

    @property
    def lambda_mean_field(self) -> Array:
        return 0.5 * jnp.log(self.chi_1)

    def critical_sigma_w2(self, which: str = "empirical") -> Array:
        """Per `sigma_b2` row: the `sigma_w2` where the top exponent (or $\\log\\chi_1$) changes
        sign, by linear interpolation between grid points (NaN if it does not)."""
        vals = self.lambda_1 if which == "empirical" else self.lambda_mean_field
        return jax.vmap(lambda row: _zero_crossing(self.sigma_w2, row))(vals)

    def row(self, i: int) -> "PhaseDiagramResult":
        """The diagram restricted to the `i`-th `sigma_b2` value (a one-row diagram)."""
        codes = self.result
        if jnp.ndim(jax.tree_util.tree_leaves(codes)[0]) == 2:  # a code per cell
            codes = jax.tree_util.tree_map(lambda v: v[i : i + 1], codes)
        return PhaseDiagramResult(sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2[i : i + 1],
                                  chi_1=self.chi_1[i : i + 1], q_star=self.q_star[i : i + 1],
                                  empirical=self.empirical[i : i + 1], result=codes)

    def summary(self) -> str:
        """The grid, the transition (mean-field and empirical) per `sigma_b2` row, the code."""
        sw = np.asarray(self.sigma_w2, dtype=float).reshape(-1)
        sb = np.asarray(self.sigma_b2, dtype=float).reshape(-1)
        lines = [f"Order-to-chaos diagram: {sw.size} sigma_w2 in [{sw.min():g}, {sw.max():g}] x "
                 f"{sb.size} sigma_b2, {np.shape(self.empirical)[-1]} seeds per cell"]
        mf = np.asarray(self.critical_sigma_w2("mean_field"), dtype=float)
        emp = np.asarray(self.critical_sigma_w2("empirical"), dtype=float)
        for b, m, e in zip(sb, mf, emp, strict=True):
            lines.append(f"sigma_b2 = {b:g}: chi_1 = 1 at sigma_w2 = {m:.4g} (mean field), "
                         f"lambda_1 = 0 at {e:.4g} (empirical)")
        lines.append(f"result: {message(self.result)}")
        return "\n".join(lines)

    def plot(self, ax=None, **kwargs):
        """The diagram; see [`jaxdyn.plot.plot_phase_diagram`][]."""
        from ..plot._lyapunov import plot_phase_diagram

        return plot_phase_diagram(self, ax=ax, **kwargs)


def _zero_crossing(xs, ys):
    sign_change = (ys[:-1] < 0) & (ys[1:] >= 0)
    idx = jnp.argmax(sign_change)
    x0, x1, y0, y1 = xs[idx], xs[idx + 1], ys[idx], ys[idx + 1]
    root = x0 - y0 * (x1 - x0) / (y1 - y0)
    return jnp.where(jnp.any(sign_change), root, jnp.nan)


def order_to_chaos(sigma_w2, sigma_b2, *, key: Key, width: int = 256, depth: int = 400,
                   n_seeds: int = 4, activation: Callable = jnp.tanh,
                   transient: int = 50, throw: bool = True) -> PhaseDiagramResult:
    r"""The order-to-chaos phase diagram of deep networks at initialisation.

    On the grid `sigma_w2` x `sigma_b2`: the mean-field $q^*$ and $\chi_1$
    ([`signal_propagation`][]) next to the empirical top Lyapunov exponent of `n_seeds` random
    networks of the given width and depth ([`random_network_exponent`][]), all vmapped. The
    transition is at $\chi_1 = 1$ (e.g. $\sigma_w^2 = 1.761$ at $\sigma_b^2 = 0.05$ for tanh);
    the empirical crossing sits slightly above it at finite width.

    `throw`: raise when a cell failed (default), or with `False` return a code per cell in
    `result` (see [`PhaseDiagramResult`][]).
    """
    check_throw(throw)
    sw = jnp.atleast_1d(_check_variance(sigma_w2, "sigma_w2"))
    sb = jnp.atleast_1d(_check_variance(jnp.asarray(sigma_b2, sw.dtype), "sigma_b2"))
    if sw.ndim != 1 or sb.ndim != 1:
        raise ValueError(f"`sigma_w2` and `sigma_b2` must be scalars or 1-D grids, got shapes "
                         f"{sw.shape} and {sb.shape}.")
    n_seeds = check_int(n_seeds, "n_seeds")
    check_key(key, "key")
    check_int(width, "width")
    check_int(depth, "depth")
    check_int(transient, "transient", minimum=0)
    grid_w, grid_b = jnp.meshgrid(sw, sb)
    mf = jax.vmap(jax.vmap(lambda a, b: _mean_field(a, b, activation=activation, n_steps=1000,
                                                    n_quad=101)))(grid_w, grid_b)
    keys = jax.random.split(key, n_seeds)
    one = lambda kk, a, b: _network_run(kk, a, b, width=width, depth=depth,
                                        activation=activation, transient=transient)
    over_seeds = jax.vmap(one, in_axes=(0, None, None), out_axes=-1)
    emp, state_ok, alive = jax.jit(jax.vmap(jax.vmap(over_seeds, in_axes=(None, 0, 0)),
                                            in_axes=(None, 0, 0)))(keys, grid_w, grid_b)
    code = elementwise_code(
        lambda bad_state, dead, bad: RESULTS.where(
            bad_state, RESULTS.nonfinite_state,
            RESULTS.where(dead, RESULTS.degenerate_tangent,
                          RESULTS.where(bad, RESULTS.nonfinite_tangent, RESULTS.successful))),
        ~(mf.result == RESULTS.successful) | ~jnp.all(state_ok, axis=-1),
        ~jnp.all(alive, axis=-1), ~jnp.all(jnp.isfinite(emp), axis=-1))
    res = PhaseDiagramResult(sigma_w2=sw, sigma_b2=sb, chi_1=mf.chi_1, q_star=mf.q_star,
                             empirical=emp, result=code)
    return raise_failed(res, throw, "the diagram with a code per cell")
