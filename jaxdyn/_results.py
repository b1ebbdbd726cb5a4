"""Result codes shared by every jaxdyn computation that can fail at run time.

Failures inside `jit`/`vmap` are values, not exceptions: each result object carries a `result`
field holding a [`RESULTS`][] item (an `eqx.Enumeration`, as in diffrax and optimistix), and, for
integrations and iterations, the step (`failed_step`, `-1` when none) and the time (`failed_time`,
NaN when none) at which the failure first appeared. The message of a code names the quantity that
failed, so that a person reading `.summary()` knows what overflowed and where.

The failure policy follows optimistix: entry points that can fail take `throw: bool = True`;
`throw=True` raises with the message (through `eqx.error_if`, which names the failure near the top
of the trace under `eqx.filter_jit`; under plain `jax.jit` JAX wraps the same sentence in an
`INTERNAL: CpuCallback error` trace, see the README), `throw=False` returns the code.
"""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class RESULTS(eqx.Enumeration):
    """The result codes of jaxdyn. `RESULTS.successful` is the only success."""

    successful = ""
    max_steps_reached = "The maximum number of steps was reached before the end time: raise `max_steps`."
    nonfinite_state = "The state became non-finite (NaN or inf): the solution blew up."
    nonfinite_tangent = "A tangent vector became non-finite (NaN or inf) while the state stayed finite."
    degenerate_tangent = "A tangent vector collapsed to zero (the tangent dynamics are degenerate)."
    nonfinite_loss = "The loss became non-finite (NaN or inf)."
    nonfinite_parameters = "The parameters became non-finite (NaN or inf): training diverged."
    nonfinite_gradient = "The gradient became non-finite (NaN or inf)."
    nonfinite_curvature = "A curvature quantity (Hessian-vector product or eigenvalue) became non-finite."
    not_converged = "The iteration did not converge within its iteration budget."
    nonfinite_input = "An input (step size, parameters or data) is non-finite (NaN or inf) under jit."
    step_size_too_small = "The step size fell below its minimum (a stiff or singular problem)."
    finite_time_blowup = "The solution blew up in finite time: the step size collapsed before the end time."
    not_interpolating = "`params` is not an interpolating minimum (a per-example loss or gradient too large)."
    none_found = "No solution was found: no Newton start converged to a zero in the search region."
    singular_jacobian = ("The Jacobian is singular at the start point (a fold or branch point): start away "
                         "from it or give a tangent.")
    branch_step_too_small = ("Continuation stopped: the arclength step fell below `ds_min` (Newton failed "
                             "to correct).")
    location_failed = ("A special point was detected but locating it did not converge (its parameter is the "
                       "bracket's midpoint).")
    floquet_not_converged = ("The periodic QR iteration for the Floquet multipliers did not converge "
                             "(multipliers of nearly equal modulus).")
    invalid_period = ("The period became non-positive or non-finite during the Newton iteration (the orbit "
                      "collapsed to an equilibrium).")
    not_a_saddle = ("The equilibrium has no one-dimensional stable or unstable manifold (not a hyperbolic "
                    "saddle with a 1-D direction): see `eigenvalues`.")
    nonfinite_field = ("The field or map (or its Jacobian) was non-finite (NaN or inf) where a Newton start "
                       "went: the search is incomplete there.")
    roots_unresolved = ("A characteristic root moved far under Newton refinement from its estimate by the "
                        "discretised generator (too few nodes: roots may be missed): raise `n_nodes`.")
    complementarity_not_solved = ("The semidefinite complementarity problem for the oscillation covariance "
                                  "Sigma was not solved to tolerance (residual above `tol`).")
    invalid_step_size = "The step size `lr` is not positive (a traced value under jit)."


class AbstractResult(eqx.Module):
    """Base of every public result object of jaxdyn.

    A result carries a [`RESULTS`][] code in its `result` field (elementwise when batched), says
    what it holds in a few lines a person reads (`summary()`), and draws itself (`plot(ax=None)`:
    onto `ax` when given, else onto a new figure; it returns the axes, or the figure when it draws
    several panels). `successful` is the one concrete method every result shares.

    Subclasses are final (all fields in one class); solution objects that mirror
    `diffrax.Solution` are named `*Solution`, all others `*Result`.
    """

    result: eqx.AbstractVar[Any]

    @property
    def successful(self) -> Any:
        """Whether `result` is `RESULTS.successful` (a boolean array, elementwise when batched)."""
        return is_successful(self.result)

    @abc.abstractmethod
    def summary(self) -> str:
        """A few lines of text: what was computed, the headline numbers, and the result code."""

    @abc.abstractmethod
    def plot(self, ax=None, **kwargs):
        """Draw the result onto `ax` (a new figure when `None`); returns the axes (or figure)."""


def check_throw(throw: Any) -> bool:
    """Validate a `throw` argument (a `TypeError` naming it unless a bool)."""
    if not isinstance(throw, bool):
        raise TypeError(f"`throw` must be a bool, got {type(throw).__name__}.")
    return throw


def raise_if_failed(token: Any, result: Any, throw: bool, hint: str = "") -> Any:
    """The one failure policy. With `throw=True` raise the message of `result` (through
    `eqx.error_if`, so it also works under `jit`; eagerly when concrete) unless it is
    `RESULTS.successful`, else return `token` unchanged; batched codes raise if any member failed.
    `hint` (e.g. "pass `throw=False` to get the trajectory up to the failure") is appended to
    the message when concrete."""
    if not throw:
        return token
    values = jnp.asarray(getattr(result, "_value", result))
    if all(not isinstance(x, jax.core.Tracer) for x in (values, *jax.tree_util.tree_leaves(token))):
        text = message(values)
        if text != "successful":
            raise eqx.EquinoxRuntimeError(f"{text} {hint}".strip())
        return token
    failed = values != RESULTS.successful._value
    worst = jnp.max(jnp.where(failed, values, 0)) if values.ndim else values
    item = type(RESULTS.successful)(worst.astype(RESULTS.successful._value.dtype), RESULTS)
    return item.error_if(token, jnp.any(failed))


def codes(result: Any) -> np.ndarray:
    """The integer codes of a (possibly batched) [`RESULTS`][] item, as a NumPy array."""
    return np.asarray(getattr(result, "_value", result))


def is_successful(result: Any) -> Any:
    """Elementwise: whether the code is `RESULTS.successful` (works under `jit` and `vmap`)."""
    return jnp.asarray(getattr(result, "_value", result)) == RESULTS.successful._value


def message(result: Any) -> str:
    """The message of a concrete (possibly batched) result: `"successful"`, or every distinct
    failure present, with how many members of a batch carry it."""
    values = codes(result).ravel()
    failed = values[values != RESULTS.successful._value]
    if failed.size == 0:
        return "successful"
    parts = []
    for code in np.unique(failed):
        text = RESULTS._index_to_message[int(code)]
        count = int(np.sum(failed == code))
        parts.append(text if values.size == 1 else f"{text} ({count} of {values.size})")
    return " ".join(parts)



# diffrax's result codes onto ours (by name); anything else (a failed implicit step: singular,
# breakdown, nonlinear divergence, ...) is `not_converged`. A terminating event is a success.
_FROM_DIFFRAX = (
    ("successful", "successful"),
    ("event_occurred", "successful"),
    ("max_steps_reached", "max_steps_reached"),
    ("max_steps_rejected", "max_steps_reached"),
    ("nonfinite", "nonfinite_state"),
    ("nonfinite_input", "nonfinite_state"),
    ("dt_min_reached", "step_size_too_small"),
)


def from_diffrax(result: Any) -> RESULTS:
    """The [`RESULTS`][] item of a `diffrax.RESULTS` item (traceable, elementwise): the one map of
    diffrax's codes onto ours, used wherever a diffrax solve's code is reported."""
    import diffrax

    out = RESULTS.not_converged
    for name, ours in _FROM_DIFFRAX:
        out = RESULTS.where(result == getattr(diffrax.RESULTS, name), getattr(RESULTS, ours), out)
    return out
