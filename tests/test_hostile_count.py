"""The hostile-input tables together: every area has rows, at least 150 in all, ids unique."""

import importlib

# The seven subpackages and the CLI; training keeps SGD's rows in a table of their own, invariant
# one table per part (roots, periodic orbits, continuation, DDE roots, DDE cycles, manifolds), and
# the central flow, its complementarity solver and the warm-started eigenpairs one each; self-attention
# (the field, its analyses) and the generative models (CNF, probability flow/scores, analyses) one each.
AREAS = ["models", "dde", "lyapunov", "curvature", "training", "sgd", "meanfield", "cli",
         "invariant_roots", "invariant_periodic", "invariant_continuation", "invariant_dde",
         "invariant_dde_periodic", "invariant_manifolds", "central_flow", "sdcp", "curvature_warm",
         "distributed", "meanfield_large", "experiments",
         "attention", "attention_analysis", "cnf", "score", "generative"]


def test_hostile_tables_cover_every_area():
    counts = {}
    for area in AREAS:
        module = importlib.import_module(f"tests.test_hostile_{area}")
        counts[area] = len(module.ROWS)
        ids = [row.id for row in module.ROWS]
        assert len(ids) == len(set(ids)), f"duplicate ids in {area}"
    assert all(n >= 10 for n in counts.values()), counts
    assert sum(counts.values()) >= 150, counts
