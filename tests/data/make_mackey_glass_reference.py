"""Generate `mackey_glass_jitcdde.npz`, the independent reference for `tests/test_lyapunov_dde.py`.

Run once with the peers environment (jitcdde compiles the right-hand side to C with gcc); never at
test time, and from outside the repository (so that setuptools does not pick up pyproject.toml):

    cd /tmp && /tmp/peers/bin/python /work/main/tests/data/make_mackey_glass_reference.py

Mackey-Glass $y' = \\beta y(t-\\tau) / (1 + y(t-\\tau)^n) - \\gamma y$, $\\beta = 0.2$, $\\gamma = 0.1$,
$n = 10$, $\\tau = 17$, constant past $y = 1.2$ for $t \\le 0$.

Stored:

- `times`, `values`: the trajectory on `[0, 50]` (grid step 0.5) from `jitcdde` at
  `atol = rtol = 1e-12` (Bogacki-Shampine 3(2) with Hermite dense output; the initial kink by
  `adjust_diff()`).
- `lyap_top`: the top Lyapunov exponent from `jitcdde_lyap` (`n_lyap = 1`; weighted mean of the
  local exponents over `lyap_T` time units after a transient of `lyap_transient`, jitcdde's default
  tolerances: at `atol = rtol = 1e-10` it stops on its `min_step`), and `lyap_T`,
  `lyap_transient`, `jitcdde_version`.
"""

import pathlib

import jitcdde
import numpy as np
from jitcdde import jitcdde as JitCDDE, jitcdde_lyap, t, y

BETA, GAMMA, N, TAU, Y0 = 0.2, 0.1, 10, 17.0, 1.2
OUT = pathlib.Path(__file__).resolve().parent / "mackey_glass_jitcdde.npz"


def rhs():
    return [BETA * y(0, t - TAU) / (1 + y(0, t - TAU) ** N) - GAMMA * y(0)]


def trajectory():
    dde = JitCDDE(rhs(), verbose=False)
    dde.constant_past([Y0])
    dde.set_integration_parameters(atol=1e-12, rtol=1e-12, first_step=1e-4, min_step=1e-14,
                                   max_step=0.5)
    # the kink at t = 0 by an extra anchor (step_on_discontinuities would already integrate to
    # t = tau, past the first grid points); the later, smoother ones by the step control
    dde.adjust_diff()
    times = np.linspace(0.0, 50.0, 101)
    values = np.array([dde.integrate(s) for s in times])
    return times, values


def top_exponent(transient=1000.0, T=20_000.0, every=10.0):
    dde = jitcdde_lyap(rhs(), n_lyap=1, verbose=False)
    dde.constant_past([Y0])
    dde.set_integration_parameters()  # jitcdde's defaults: tighter ones hit its min_step here
    dde.step_on_discontinuities()
    dde.integrate_blindly(transient, step=0.1)  # no Lyapunov accumulation during the transient
    lyaps, weights = [], []
    for s in np.arange(dde.t + every, dde.t + T + every / 2, every):
        _, lyap, weight = dde.integrate(s)
        lyaps.append(lyap[0])
        weights.append(weight)
    lyaps, weights = np.array(lyaps), np.array(weights)
    return float(np.sum(lyaps * weights) / np.sum(weights)), transient, T


if __name__ == "__main__":
    times, values = trajectory()
    lyap, transient, T = top_exponent()
    print(f"y(50) = {values[-1, 0]!r}; jitcdde_lyap top exponent = {lyap:.6f} (T = {T})")
    np.savez(OUT, times=times, values=values, lyap_top=lyap, lyap_T=T, lyap_transient=transient,
             jitcdde_version=np.asarray(getattr(jitcdde, "__version__", "unknown")))
    print(f"wrote {OUT}")
