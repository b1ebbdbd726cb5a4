"""Known answers of the self-attention token dynamics (Q = K = V = I unless said): consensus at small
beta and long-lived clusters at large beta on S^2, the cluster count growing with beta, alignment
with the dominant eigendirection of V, what a negative-definite V does, the spectrum at consensus
(Jacobian to 1e-10, flow_spectrum), the n vs 4n W1 rate and the beta = 0 circle against vlasov.

The numbers the slow tests measure are printed (`pytest -s`) for the closing note."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn.meanfield as mf
from jaxdyn.lyapunov import flow_spectrum

D = 3
EYE = jnp.eye(D)


def _attention(beta, *, V=None, normalisation="softmax", d=D):
    eye = jnp.eye(d)
    return mf.SelfAttention(eye, eye, eye if V is None else V, beta=beta, normalisation=normalisation)


def _consensus(n, d=D):
    return jnp.tile(jnp.eye(d)[-1], (n, 1))


def test_consensus_at_small_beta_and_long_lived_clusters_at_large_beta():
    # n = 16 tokens uniform on S^2 (seed 1), softmax, RK4 dt = 0.05, one compiled solve for both
    # beta (an array leaf): beta = 1 reaches one cluster by t = 10 (R = 1 to rounding); beta = 9
    # holds 4, 4, 3, 3 clusters at t = 10, 20, 40, 80 (measured; seeds 0-3 give 3-6 clusters at
    # t = 10 and 2-4 at t = 80; n = 32: 3-5 at t = 80)
    x0 = mf.uniform_sphere(jax.random.key(1), 16, D)
    ts = jnp.array([0.0, 10.0, 20.0, 40.0, 80.0])
    small = mf.simulate(_attention(1.0), x0, ts, solver=mf.RK4(), dt0=0.05)
    large = mf.simulate(_attention(9.0), x0, ts, solver=mf.RK4(), dt0=0.05)
    counts_small = np.asarray(mf.cluster_count(small.ys))
    counts_large = np.asarray(mf.cluster_count(large.ys))
    np.testing.assert_allclose(np.linalg.norm(x0, axis=1), 1.0, atol=1e-14)  # uniform_sphere
    assert counts_small[0] == 16 and np.all(counts_small[1:] == 1)
    assert float(mf.mean_token_norm(small.ys[-1])) == pytest.approx(1.0, abs=1e-12)
    assert np.all(counts_large[1:] > 1), counts_large  # several clusters from t = 10 to t = 80
    assert float(mf.mean_token_norm(large.ys[-1])) < 0.9


@pytest.mark.parametrize("normalisation", ["softmax", "uniform"])
def test_consensus_spectrum_exact(normalisation):
    # derivation in cluster_stability's docstring: u_i' = c (ubar - u_i), c = 1 (softmax) or
    # e^beta (uniform): eigenvalues 0 (d - 1 times) and -c ((n - 1)(d - 1) times), for every beta
    n, beta = 5, 0.7
    c = 1.0 if normalisation == "softmax" else np.exp(beta)
    out = mf.cluster_stability(_attention(beta, normalisation=normalisation), _consensus(n))
    want = np.concatenate([np.zeros(D - 1), np.full((n - 1) * (D - 1), -c)])
    ev = np.asarray(out.eigenvalues)
    np.testing.assert_allclose(ev.real, want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ev.imag, 0.0, atol=1e-10)
    assert float(out.residual) < 1e-14 and bool(out.equilibrium) and bool(out.stable)
    assert int(out.neutral) == D - 1 and int(out.index) == 0
    assert "stable up to the neutral directions" in out.summary()


def test_flow_spectrum_at_consensus():
    # flow_spectrum on the (n, d) state in R^{nd}: the tangent exponents 0 (d - 1) and -1
    # ((n - 1)(d - 1)), and the normal ones of SelfAttention's extension off the sphere
    # (P_x v = v - <x, v> x: |x_i|^2 - 1 =: e_i obeys e_i' = -2 <x_i, v_i> e_i, and <x_i, v_i> = 1 at
    # consensus with softmax): -2, n times. The Jacobian there is symmetric, so after a transient
    # of T0 = 10 the QR directions are aligned to e^{-gap T0} ~ 5e-5 (gap 1) and the estimate over
    # T = 20 is off by that / T plus RK4's error (h lambda)^5 / (120 h) ~ 2e-6 at h = 0.05,
    # lambda = -2: tolerance 1e-4.
    n = 4
    res = flow_spectrum(_attention(2.0), _consensus(n), dt=0.05, n_steps=400, transient_steps=200,
                        key=jax.random.key(0), progress=False)
    want = np.concatenate([np.zeros(D - 1), np.full((n - 1) * (D - 1), -1.0), np.full(n, -2.0)])
    print("flow_spectrum at consensus (n = 4, d = 3, softmax, beta = 2):",
          np.round(np.asarray(res.exponents), 6))
    np.testing.assert_allclose(res.exponents, want, rtol=0, atol=1e-4)


def test_cluster_count_grows_with_beta():
    # the table over beta (n = 32, d = 3, softmax, 3 seeds, RK4 dt = 0.02): the mean count at
    # t = 80 is nondecreasing in beta, consensus at beta = 1, several clusters at beta >= 9 from
    # t = 20 to t = 160 (metastable)
    n, seeds = 32, 3
    ts = jnp.array([0.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    betas = (1.0, 4.0, 9.0, 16.0, 25.0)
    table = {}
    for beta in betas:
        rows = []
        for seed in range(seeds):
            x0 = mf.uniform_sphere(jax.random.key(seed), n, D)
            sol = mf.simulate(_attention(beta), x0, ts, solver=mf.RK4(), dt0=0.02)
            rows.append(np.asarray(mf.cluster_count(sol.ys)))
        table[beta] = np.array(rows)
        print(f"beta = {beta:4g}: counts at t = {np.asarray(ts).tolist()}: {table[beta].tolist()}")
    means = [table[b][:, 4].mean() for b in betas]
    print("mean count at t = 80:", means)
    assert np.all(np.diff(means) >= 0), means
    assert np.all(table[1.0][:, 2:] == 1)
    for beta in (9.0, 16.0, 25.0):
        assert np.all(table[beta][:, 2:] > 1), (beta, table[beta])


def test_dominant_positive_eigenvalue_aligns_tokens():
    # V = diag(1, 0.3, 0.1), beta = 1, softmax, n = 32: every token ends on +-e_1 (two antipodal
    # clusters), |<x_i, e_1>| = 1 to 1e-6 at t = 80; the split is reported
    V = jnp.diag(jnp.array([1.0, 0.3, 0.1]))
    ts = jnp.array([0.0, 10.0, 20.0, 40.0, 80.0])
    for seed in range(2):
        x0 = mf.uniform_sphere(jax.random.key(seed), 32, D)
        sol = mf.simulate(_attention(1.0, V=V), x0, ts, solver=mf.Projected(mf.RK4()), dt0=0.05)
        x = np.asarray(sol.ys[-1])
        align = np.abs(x[:, 0])
        counts = np.asarray(mf.cluster_count(sol.ys))
        print(f"V = diag(1, .3, .1), seed {seed}: counts {counts.tolist()}, "
              f"min |<x_i, e1>| = {align.min():.12f}, tokens at +e1: {int(np.sum(x[:, 0] > 0))}, "
              f"at -e1: {int(np.sum(x[:, 0] < 0))}")
        assert align.min() > 1 - 1e-6 and counts[-1] == 2
        # the two-group state is a stable equilibrium (no neutral direction: V breaks the rotations)
        st = mf.cluster_stability(_attention(1.0, V=V), jnp.asarray(np.sign(x[:, :1]) * np.eye(D)[0]))
        assert bool(st.stable) and int(st.neutral) == 0 and float(st.residual) < 1e-12


def test_negative_definite_value_matrix():
    # Q = K = I, V = -I or -diag(1, .5, .3), beta = 1, softmax, n = 32: the tokens repel: the mean
    # token vanishes (R -> ~1e-4) and no two tokens meet (32 clusters); two antipodal groups are an
    # equilibrium but an unstable one (tangent index 8 for 2 + 4 tokens). With Q^T K = V (Q = I,
    # K = V, the symmetric setting of spectral selection) the tokens do split into two antipodal
    # groups (R ~ 0, splits 17/15 measured) on the most negative eigendirection e_1 (|<x_i, e_1>| = 1
    # to 1e-6 when its eigenvalue is simple), a stable equilibrium.
    ts = jnp.array([0.0, 10.0, 40.0, 80.0])
    x0 = mf.uniform_sphere(jax.random.key(1), 32, D)
    for V in (-EYE, -jnp.diag(jnp.array([1.0, 0.5, 0.3]))):
        sol = mf.simulate(_attention(1.0, V=V), x0, ts, solver=mf.Projected(mf.RK4()), dt0=0.05)
        r = np.asarray(mf.mean_token_norm(sol.ys))
        counts = np.asarray(mf.cluster_count(sol.ys))
        print(f"Q = K = I, V = {np.diag(np.asarray(V)).tolist()}: R(t) = {r.round(6).tolist()}, "
              f"counts {counts.tolist()}")
        assert r[-1] < 1e-2 and counts[-1] == 32
    two = jnp.concatenate([jnp.tile(EYE[0], (2, 1)), jnp.tile(-EYE[0], (4, 1))])
    st = mf.cluster_stability(_attention(1.0, V=-EYE), two)
    print("two antipodal groups (2 + 4) under Q = K = I, V = -I:", st.summary())
    assert bool(st.equilibrium) and int(st.index) > 0 and not bool(st.stable)
    V = -jnp.diag(jnp.array([1.0, 0.5, 0.3]))
    field = mf.SelfAttention(EYE, V, V, beta=1.0)  # Q^T K = V
    sol = mf.simulate(field, x0, ts, solver=mf.Projected(mf.RK4()), dt0=0.05)
    x = np.asarray(sol.ys[-1])
    counts = np.asarray(mf.cluster_count(sol.ys))
    print(f"Q = I, K = V = {np.diag(np.asarray(V)).tolist()}: counts {counts.tolist()}, R = "
          f"{float(mf.mean_token_norm(x)):.4f}, min |<x_i, e1>| = {np.abs(x[:, 0]).min():.10f}, "
          f"split {int(np.sum(x[:, 0] > 0))}/{int(np.sum(x[:, 0] < 0))}")
    assert counts[-1] == 2 and np.abs(x[:, 0]).min() > 1 - 1e-6
    st = mf.cluster_stability(field, jnp.asarray(np.sign(x[:, :1]) * np.eye(D)[0]))
    print("  that state:", st.summary())
    assert bool(st.stable) and float(st.residual) < 1e-12


def test_token_w1_rate_on_the_circle():
    # d = 2, Q = K = V = I, uniform, beta = 0 (the all-to-all Kuramoto model, K = 1): W1 between n and
    # 4n tokens at t = 1 (exact circle W1, 6 repeats): the fitted slope is near -1/2 (at t = 3 the
    # instability of the uniform state, rate K/2 = 1/2, has amplified the sampling error to O(1) for
    # the small n and flattens the slope: -0.40 measured)
    field = _attention(0.0, normalisation="uniform", d=2)
    out = mf.token_w1_rate(field, [32, 64, 128, 256], d=2, t1=1.0, key=jax.random.key(3), repeats=6,
                           dt=0.1, progress=False)
    print(out.summary())
    assert -0.8 < float(out.slope) < -0.3 and -0.8 < float(out.slope_initial) < -0.3


def test_circle_at_beta_zero_is_the_vlasov_particle_system():
    # d = 2, uniform, beta = 0: theta_i' = (1/n) sum_j sin(theta_j - theta_i): vlasov's particle
    # method with one cell and coupling 1 integrates the same ODE (Tsit5, rtol = atol = 1e-10)
    theta0 = jax.random.uniform(jax.random.key(2), (24,), minval=0.0, maxval=2 * np.pi)
    ts = jnp.linspace(0.0, 4.0, 5)
    x0 = jnp.stack([jnp.cos(theta0), jnp.sin(theta0)], axis=1)
    sol = mf.simulate(_attention(0.0, normalisation="uniform", d=2), x0, ts, rtol=1e-10, atol=1e-10)
    ref = mf.vlasov(None, theta0[None], jnp.zeros((1, 24)), ts, coupling=1.0, rtol=1e-10, atol=1e-10)
    x_ref = jnp.stack([jnp.cos(ref.theta[:, 0]), jnp.sin(ref.theta[:, 0])], axis=-1)
    np.testing.assert_allclose(sol.ys, x_ref, atol=1e-8)
    np.testing.assert_allclose(mf.mean_token_norm(sol.ys), jnp.abs(mf.order_parameter(ref.theta[:, 0])),
                               atol=1e-8)


def test_equilibria_of_three_tokens_on_the_circle_via_invariant():
    # n = 3 tokens on the circle, Q = K = V = I, uniform, beta = 1: the angles relative to token 0,
    # phi_k = theta_k - theta_0, remove the rotation symmetry; jaxdyn.invariant.equilibria finds every
    # equilibrium in [-0.5, 2 pi - 0.5)^2 (one copy of each modulo 2 pi): consensus (stable node,
    # eigenvalues -e^beta twice), the three 2 + 1 states (saddles: e^-beta and -1.69), the two splay
    # states (unstable nodes). cluster_stability on the tokens gives the same spectrum plus the
    # rotation's 0.
    from jaxdyn import invariant

    n, beta = 3, 1.0
    field = _attention(beta, normalisation="uniform", d=2)

    def tokens(phi):
        th = jnp.concatenate([jnp.zeros(1), phi])
        return jnp.stack([jnp.cos(th), jnp.sin(th)], axis=1)

    def relative(t, phi, args):
        x = tokens(phi)
        v = field(t, x, args)
        omega = x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0]  # the angular velocities
        return omega[1:] - omega[0]

    res = invariant.equilibria(relative, jnp.full(n - 1, -0.5), jnp.full(n - 1, 2 * np.pi - 0.5),
                               key=jax.random.key(0), n_starts=32)
    print(res.summary())
    k = int(res.n_found)
    kinds = sorted(invariant.KINDS[int(c)] for c in np.asarray(res.kinds)[:k])
    assert kinds == sorted(["stable node"] + ["saddle"] * 3 + ["unstable node"] * 2), kinds
    for i in range(k):
        st = mf.cluster_stability(field, tokens(res.points[i]))
        want = np.sort(np.concatenate([[0.0], np.real(np.asarray(res.spectra[i]))]))
        np.testing.assert_allclose(np.sort(np.real(np.asarray(st.eigenvalues))), want, atol=1e-8)
        assert bool(st.equilibrium) and int(st.index) == int(np.asarray(res.indices)[i])
        if invariant.KINDS[int(res.kinds[i])] == "stable node":
            np.testing.assert_allclose(np.real(np.asarray(res.spectra[i])), -np.exp(beta), atol=1e-8)


def test_metastable_clusters_have_d_minus_1_slow_directions_each():
    # n = 16 tokens (seed 1), softmax, run to t = 40 (Projected RK4): beta = 1 is at consensus, beta = 9
    # holds 3 clusters. Each cluster can rotate almost freely: (d - 1) k slow directions. The tangent
    # spectrum (cluster_stability) has exactly (d - 1) k eigenvalues with |Re| < 0.01 (measured at
    # beta = 9: 2.3e-3, 1.2e-4, 4.7e-6, 1.3e-7, 2e-8, -1.2e-4, then -0.998: the clustered state is
    # not an exact equilibrium, |f| = 3.9e-4, and its slowest instability is the metastable drift),
    # and flow_spectrum over T = 40 from there has (d - 1) k exponents above -0.3 (the others near -1,
    # within-cluster, and -2, off the sphere).
    x0 = mf.uniform_sphere(jax.random.key(1), 16, D)
    for beta, clusters in ((1.0, 1), (9.0, 3)):
        field = _attention(beta)
        sol = mf.simulate(field, x0, jnp.array([0.0, 40.0]), solver=mf.Projected(mf.RK4()), dt0=0.05)
        x = sol.ys[-1]
        assert int(mf.cluster_count(x)) == clusters
        st = mf.cluster_stability(field, x)
        ev = np.sort(np.real(np.asarray(st.eigenvalues)))[::-1]
        res = flow_spectrum(field, x, dt=0.05, n_steps=800, key=jax.random.key(0), progress=False)
        ex = np.asarray(res.exponents)
        print(f"beta = {beta}: {clusters} cluster(s); top tangent eigenvalues {ev[:8].tolist()}; "
              f"Lyapunov exponents {np.round(ex[:8], 4).tolist()}")
        slow = (D - 1) * clusters
        assert np.sum(np.abs(ev) < 1e-2) == slow and ev[slow] < -0.9
        assert np.sum(ex > -0.3) == slow
