"""The hostile-input tables together: every area has rows, at least 150 in all, ids unique."""

import importlib

# The six subpackages and the CLI; training keeps SGD's rows in a table of their own.
AREAS = ["models", "dde", "lyapunov", "curvature", "training", "sgd", "meanfield", "cli"]


def test_hostile_tables_cover_every_area():
    counts = {}
    for area in AREAS:
        module = importlib.import_module(f"tests.test_hostile_{area}")
        counts[area] = len(module.ROWS)
        ids = [row.id for row in module.ROWS]
        assert len(ids) == len(set(ids)), f"duplicate ids in {area}"
    assert all(n >= 10 for n in counts.values()), counts
    assert sum(counts.values()) >= 150, counts
