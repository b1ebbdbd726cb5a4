"""Vanishing and exploding gradients as Lyapunov exponents of layer-Jacobian products, and the
order-to-chaos transition of deep networks at initialisation."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_finite, check_int, is_concrete
from .._types import Array, Key
from ..models import MLP, DenseResNet, ResNet
from ._common import check_key
from ._engine import qr_positive
from ._result import RESULTS, LyapunovResult


def _layer_list(model) -> tuple[list[Callable], str]:
    if isinstance(model, MLP):
        act = model.activation
        hidden = [lambda h, lin=lin: act(lin(h)) for lin in model.layers[:-1]]
        return hidden + [model.layers[-1]], "mlp"
    if isinstance(model, Sequence) and not isinstance(model, str):
        if not all(callable(layer) for layer in model):
            raise TypeError("`model_or_layers`: every layer must be a callable h -> h'.")
        return list(model), "list"
    raise TypeError(
        "`model_or_layers` must be an MLP, ResNet, DenseResNet, a stacked layer module or a "
        f"list of layer callables, got {type(model).__name__}."
    )


def network_spectrum(model_or_layers, x, *, k: int | None = None,
                     include_readout: bool = False) -> LyapunovResult:
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

    **Returns:** a [`LyapunovResult`][] with per-layer exponents and the running estimates after
    each layer in `history`.
    """
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
                h_new, Q_new = jax.vmap(lambda v: jax.jvp(f, (h,), (v,)), in_axes=1,
                                        out_axes=(None, 1))(Q)
                Q_new, d = qr_positive(Q_new)
                logs = logs + jnp.log(d)
                return (h_new, Q_new, logs, l + 1), logs / (l + 1)

            (_, _, logs, _), history = lax.scan(step, (h0, Q0, jnp.zeros(k, h0.dtype), 0), params)
            return _result(logs / L, history)
        # DenseResNet: tangents through the whole buffer map, one QR at the end
        final = lambda hh: net.states_from(hh)[-1]
        _, T = jax.vmap(lambda v: jax.jvp(final, (h0,), (v,)), in_axes=1, out_axes=(None, 1))(Q0)
        _, d = qr_positive(T)
        return _result(jnp.log(d) / L, (jnp.log(d) / L)[None])

    layers, kind = _layer_list(model_or_layers)
    if kind == "mlp" and not include_readout:
        layers = layers[:-1]
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
        if not hasattr(h, "shape") or len(h.shape) != 1:
            raise ValueError(f"`model_or_layers`: layer {l} must map a vector to a vector, got "
                             f"output shape {getattr(h, 'shape', type(h).__name__)}.")
        widths.append(h.shape[0])
    kmax = min(widths)
    k = kmax if k is None else check_int(k, "k")
    if k > kmax:
        raise ValueError(f"`k` must be at most the smallest width {kmax}, got {k}.")
    h = x
    Q = jnp.eye(x.shape[0], k, dtype=x.dtype)
    logs = jnp.zeros(k, x.dtype)
    history = []
    for l, layer in enumerate(layers):
        h, Q = jax.vmap(lambda v, layer=layer, h=h: jax.jvp(layer, (h,), (v,)), in_axes=1,
                        out_axes=(None, 1))(Q)
        Q, d = qr_positive(Q)
        logs = logs + jnp.log(d)
        history.append(logs / (l + 1))
    return _result(logs / len(layers), jnp.stack(history))


def _result(exponents, history) -> LyapunovResult:
    """NaN anywhere (e.g. NaN weights): `diverged`, NaN exponents, `failed_step` the first layer
    (0-based) where it appeared; $-\\infty$ (an exactly singular layer): `degenerate`, the
    exponents kept."""
    order = jnp.argsort(-exponents)
    n = history.shape[0]
    nan_rows = jnp.any(jnp.isnan(history), axis=1)
    bad_rows = jnp.any(~jnp.isfinite(history), axis=1)
    has_nan = jnp.any(nan_rows)
    finite = ~jnp.any(bad_rows)
    code = jnp.where(has_nan, RESULTS.diverged, jnp.where(finite, RESULTS.successful,
                                                          RESULTS.degenerate))
    failed = jnp.where(has_nan, jnp.argmax(nan_rows), jnp.where(finite, -1, jnp.argmax(bad_rows)))
    exponents = jnp.where(has_nan, jnp.nan, exponents)
    return LyapunovResult(
        exponents=exponents[order], history=history[:, order], times=jnp.arange(1, n + 1),
        stderr=None, result=code, failed_step=failed, steps=jnp.asarray(n),
    )


# ---------------------------------------------------------------------------------------------
# order to chaos


def _gauss_hermite(n: int, dtype):
    z, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-z^2 / 2)
    return jnp.asarray(z, dtype), jnp.asarray(w / np.sqrt(2 * np.pi), dtype)


class SignalPropagation(eqx.Module):
    r"""Mean-field signal propagation at initialisation (Poole et al. 2016).

    `q_star`: the fixed point of $q \mapsto \sigma_w^2 E[\phi(\sqrt q z)^2] + \sigma_b^2$;
    `chi_1` $= \sigma_w^2 E[\phi'(\sqrt{q^*} z)^2]$ (order for $\chi_1 < 1$, chaos for
    $\chi_1 > 1$); `lambda_mean_field` $= \frac12 \log \chi_1$, the top per-layer Lyapunov exponent
    the mean-field theory predicts for wide networks.
    """

    q_star: Array
    chi_1: Array

    @property
    def lambda_mean_field(self) -> Array:
        return 0.5 * jnp.log(self.chi_1)


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


def signal_propagation(sigma_w2, sigma_b2, *, activation: Callable = jnp.tanh,
                       n_iter: int = 1000, n_quad: int = 101) -> SignalPropagation:
    """Fixed point $q^*$ and $\\chi_1$ by Gauss-Hermite quadrature; vmap-able over the variances."""
    n_iter = check_int(n_iter, "n_iter")
    n_quad = check_int(n_quad, "n_quad")
    if not callable(activation):
        raise TypeError(f"`activation` must be callable, got {type(activation).__name__}.")
    sigma_w2 = _check_variance(sigma_w2, "sigma_w2")
    sigma_b2 = _check_variance(jnp.asarray(sigma_b2, sigma_w2.dtype), "sigma_b2")
    z, w = _gauss_hermite(n_quad, sigma_w2.dtype)
    dphi = jax.vmap(jax.grad(activation))

    def update(q, _):
        return sigma_w2 * jnp.sum(w * activation(jnp.sqrt(q) * z) ** 2) + sigma_b2, None

    q, _ = lax.scan(update, jnp.ones_like(sigma_w2), None, length=n_iter)
    chi = sigma_w2 * jnp.sum(w * dphi(jnp.sqrt(q) * z) ** 2)
    return SignalPropagation(q_star=q, chi_1=chi)


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
    dtype = jnp.result_type(float)
    sigma_w = jnp.sqrt(jnp.asarray(sigma_w2, dtype))
    sigma_b = jnp.sqrt(jnp.asarray(sigma_b2, dtype))
    k0, k1 = jax.random.split(key)
    h0 = jax.random.normal(k0, (width,), dtype)
    v0 = jax.random.normal(k1, (width,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    def layer(carry, l):
        h, v, log_sum = carry
        kw, kb = jax.random.split(jax.random.fold_in(key, l))
        W = jax.random.normal(kw, (width, width), dtype) * sigma_w / jnp.sqrt(width)
        b = jax.random.normal(kb, (width,), dtype) * sigma_b
        pre = W @ h + b
        h_new = activation(pre)
        v_new = jax.vmap(jax.grad(activation))(pre) * (W @ v)
        norm = jnp.linalg.norm(v_new)
        counted = l >= transient
        log_sum = log_sum + jnp.where(counted, jnp.log(norm), 0.0)
        return (h_new, v_new / norm, log_sum), None

    (_, _, log_sum), _ = lax.scan(layer, (h0, v0, jnp.zeros((), dtype)), jnp.arange(depth + transient))
    return log_sum / depth


class PhaseDiagram(eqx.Module):
    """Order-to-chaos diagram on a grid: `sigma_w2` (a), `sigma_b2` (b), mean-field `chi_1` and
    `q_star` (shape (b, a)), the empirical top exponent per seed `empirical` (shape (b, a, seeds))
    and its mean `lambda_1`, and the mean-field prediction `lambda_mean_field`."""

    sigma_w2: Array
    sigma_b2: Array
    chi_1: Array
    q_star: Array
    empirical: Array

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

    def row(self, i: int) -> "PhaseDiagram":
        """The diagram restricted to the `i`-th `sigma_b2` value (a one-row diagram)."""
        return PhaseDiagram(sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2[i : i + 1],
                            chi_1=self.chi_1[i : i + 1], q_star=self.q_star[i : i + 1],
                            empirical=self.empirical[i : i + 1])

    def plot(self, ax=None, **kwargs):
        from ..plot import plot_phase_diagram

        return plot_phase_diagram(self, ax=ax, **kwargs)


def _zero_crossing(xs, ys):
    sign_change = (ys[:-1] < 0) & (ys[1:] >= 0)
    idx = jnp.argmax(sign_change)
    x0, x1, y0, y1 = xs[idx], xs[idx + 1], ys[idx], ys[idx + 1]
    root = x0 - y0 * (x1 - x0) / (y1 - y0)
    return jnp.where(jnp.any(sign_change), root, jnp.nan)


def order_to_chaos(sigma_w2, sigma_b2, *, key: Key, width: int = 256, depth: int = 400,
                   n_seeds: int = 4, activation: Callable = jnp.tanh,
                   transient: int = 50) -> PhaseDiagram:
    r"""The order-to-chaos phase diagram of deep networks at initialisation.

    On the grid `sigma_w2` x `sigma_b2`: the mean-field $q^*$ and $\chi_1$
    ([`signal_propagation`][]) next to the empirical top Lyapunov exponent of `n_seeds` random
    networks of the given width and depth ([`random_network_exponent`][]), all vmapped. The
    transition is at $\chi_1 = 1$ (e.g. $\sigma_w^2 = 1.761$ at $\sigma_b^2 = 0.05$ for tanh);
    the empirical crossing sits slightly above it at finite width.
    """
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
    mf = jax.vmap(jax.vmap(lambda a, b: signal_propagation(a, b, activation=activation)))(
        grid_w, grid_b)
    keys = jax.random.split(key, n_seeds)
    one = lambda kk, a, b: random_network_exponent(kk, a, b, width=width, depth=depth,
                                                   activation=activation, transient=transient)
    over_seeds = jax.vmap(one, in_axes=(0, None, None), out_axes=-1)
    emp = jax.jit(jax.vmap(jax.vmap(over_seeds, in_axes=(None, 0, 0)), in_axes=(None, 0, 0)))(
        keys, grid_w, grid_b)
    return PhaseDiagram(sigma_w2=sw, sigma_b2=sb, chi_1=mf.chi_1, q_star=mf.q_star,
                        empirical=emp)
