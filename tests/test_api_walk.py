"""The public API walked: one result pattern everywhere, `__init__` files that list public names.

Every public class whose name ends in `Result` or `Solution`, and every class a public function is
annotated to return (unless it is a model, operator, strategy or other non-result listed below),
must be a final subclass of `jaxdyn._results.AbstractResult` with a `result` code, its own
`summary()` and a `plot(ax=None, ...)`. Results are Equinox modules, so they pass through `jit`.
"""

import dataclasses
import importlib
import inspect
import typing

import equinox as eqx
import pytest

from jaxdyn._results import RESULTS, AbstractResult

SUBPACKAGES = ["models", "dde", "lyapunov", "curvature", "training", "meanfield", "invariant", "distributed"]

# Public classes returned by public functions that are not results: what they are instead.
NOT_RESULTS = {
    # models, fields, maps and operators built by a function (they are inputs to analyses)
    "AugmentedNeuralODE", "NeuralODE", "NeuralDDE", "ResNet", "DenseResNet", "MLPField",
    "GDMap", "GDJacobian", "GradientFlow", "HessianOperator", "GGNOperator", "LinearOperator",
    "History", "Graphon", "StepGraphon", "DigraphMeasure", "Coupling", "NormalSpace", "Flattener",
    "GaussNewtonOperator", "Affine", "MLP", "Sparse",
    # strategies and settings
    "AccuracyCheck", "Checkpoint",
    # branch problems of continuation and the start of a switched branch (inputs to `continuation`)
    "EquilibriumProblem", "FixedPointProblem", "PeriodicOrbitProblem", "DDEHopfProblem",
    "DDEPeriodicOrbitProblem", "BranchStart",
}


def _public(module):
    return {name: getattr(module, name) for name in dir(module) if not name.startswith("_")}


def _walk():
    classes, functions = {}, {}
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"jaxdyn.{sub}")
        for name, obj in _public(module).items():
            if inspect.isclass(obj) and obj.__module__.startswith("jaxdyn"):
                classes[f"{sub}.{name}"] = obj
            elif inspect.isfunction(obj) and obj.__module__.startswith("jaxdyn"):
                functions[f"{sub}.{name}"] = obj
    return classes, functions


def _returned_classes(fn):
    try:
        hint = typing.get_type_hints(inspect.unwrap(fn)).get("return")
    except Exception:  # forward references to optional packages: judge by name only
        return []
    args = typing.get_args(hint) or (hint,)
    return [a for a in args if inspect.isclass(a) and issubclass(a, eqx.Module)]


def _result_classes():
    classes, functions = _walk()
    found = {k: c for k, c in classes.items() if c.__name__.endswith(("Result", "Solution"))}
    for fname, fn in functions.items():
        for cls in _returned_classes(fn):
            if cls.__name__ not in NOT_RESULTS and not cls.__name__.startswith("Abstract"):
                found[f"{fname}->{cls.__name__}"] = cls
    return found


RESULT_CLASSES = _result_classes()


def test_the_walk_finds_the_results():
    names = {c.__name__ for c in RESULT_CLASSES.values()}
    assert len(names) >= 20, sorted(names)


@pytest.mark.parametrize("where", sorted(RESULT_CLASSES))
def test_every_result_follows_the_pattern(where):
    cls = RESULT_CLASSES[where]
    assert issubclass(cls, AbstractResult), f"{cls.__name__} does not subclass AbstractResult"
    assert cls.__name__.endswith(("Result", "Solution")), cls.__name__
    assert "result" in {f.name for f in dataclasses.fields(cls)} or isinstance(
        inspect.getattr_static(cls, "result", None), property
    ), f"{cls.__name__} has no `result`"
    assert cls.summary is not AbstractResult.summary, f"{cls.__name__} has no summary()"
    assert cls.plot is not AbstractResult.plot, f"{cls.__name__} has no plot()"
    ax = inspect.signature(cls.plot).parameters.get("ax")
    assert ax is not None and ax.default is None, f"{cls.__name__}.plot needs ax=None"


def test_one_result_enumeration():
    """No subpackage defines its own result codes: `RESULTS` is the one of `jaxdyn._results`."""
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"jaxdyn.{sub}")
        codes = getattr(module, "RESULTS", RESULTS)
        assert codes is RESULTS, f"jaxdyn.{sub}.RESULTS is not jaxdyn.RESULTS"


def test_init_files_list_public_names_only():
    """`__init__` files re-export public names and say nothing about who owns what."""
    import pathlib

    root = pathlib.Path(importlib.import_module("jaxdyn").__file__).parent
    for sub in SUBPACKAGES:
        text = (root / sub / "__init__.py").read_text()
        assert "owned by" not in text, f"jaxdyn/{sub}/__init__.py names owners"
    internals = {"lyapunov": ["EngineState", "qr_positive"],
                 "training": ["digits_data", "tanh_mlp", "mse_onehot", "onehot_accuracy"]}
    for sub, names in internals.items():
        module = importlib.import_module(f"jaxdyn.{sub}")
        for name in names:
            assert name not in module.__dict__, f"jaxdyn.{sub}.{name} is an internal"


def test_invariant_sits_below_the_fields():
    """`jaxdyn.invariant` takes callables and imports no later layer (models imports it)."""
    import pathlib
    import re

    root = pathlib.Path(importlib.import_module("jaxdyn").__file__).parent / "invariant"
    later = ("models", "dde", "meanfield", "lyapunov", "curvature", "training", "experiments", "_cli")
    pattern = re.compile(r"^\s*(?:from|import)\s+(?:jaxdyn)?\.*(" + "|".join(later) + r")\b", re.M)
    for path in sorted(root.glob("*.py")):
        hits = pattern.findall(path.read_text())
        assert not hits, f"jaxdyn/invariant/{path.name} imports {sorted(set(hits))}"


def test_distributed_sits_below_everything():
    """`jaxdyn.distributed` (and the launcher) import no analysis subpackage: every sweep builds on it."""
    import pathlib
    import re

    root = pathlib.Path(importlib.import_module("jaxdyn").__file__).parent
    layers = ("models", "dde", "meanfield", "lyapunov", "curvature", "training", "invariant", "experiments",
              "plot", "_cli")
    pattern = re.compile(r"^\s*(?:from|import)\s+(?:jaxdyn)?\.*(" + "|".join(layers) + r")\b", re.M)
    for path in [*sorted((root / "distributed").glob("*.py")), root / "_launch.py", root / "launch.py"]:
        hits = pattern.findall(path.read_text())
        assert not hits, f"{path.relative_to(root)} imports {sorted(set(hits))}"
    launcher = (root / "_launch.py").read_text()
    assert not re.search(r"^\s*(?:from|import)\s+jax\b", launcher, re.M), "the launcher must not import JAX"
