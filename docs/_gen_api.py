"""Write (or check) the API reference pages: one page per subpackage, one entry per public name.

The public names of a package are its exports: every name of the module that does not start with an
underscore and is not a submodule (the `__init__` files re-export with `from ._x import y as y`).
Entries are grouped by the private module that defines them, under that module's one-line docstring.

    python docs/_gen_api.py          # rewrite docs/api/*.md
    python docs/_gen_api.py --check  # exit 1 if a page is out of date (names added or removed)
"""

import importlib
import inspect
import re
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
API = HERE / "api"

# page file -> (module, title, one line under the title)
PAGES = {
    "jaxdyn.md": ("jaxdyn", "jaxdyn", "The top-level package: the result codes shared by every result "
                  "object, and the subpackages (imported on first access)."),
    "models.md": ("jaxdyn.models", "jaxdyn.models", "Neural networks as input-output maps built from flows: "
                  "neural ODEs and DDEs, ResNets, lifts and readouts, embeddings, critical points."),
    "dde.md": ("jaxdyn.dde", "jaxdyn.dde", "Delay differential equations: a differentiable solver on "
               "diffrax's solvers, histories and breaking points."),
    "lyapunov.md": ("jaxdyn.lyapunov", "jaxdyn.lyapunov", "Lyapunov spectra of flows, maps, delay equations, "
                    "random matrix products and deep networks; FTLE fields, covariant vectors, sweeps."),
    "curvature.md": ("jaxdyn.curvature", "jaxdyn.curvature", "Curvature as linear operators: Hessian and "
                     "Gauss-Newton operators, Lanczos, power iteration, spectral densities, traces."),
    "training.md": ("jaxdyn.training", "jaxdyn.training", "Training as a dynamical system: GD as a map, "
                    "stability of minima, the edge of stability, central flows, the SGD Lyapunov exponent."),
    "meanfield.md": ("jaxdyn.meanfield", "jaxdyn.meanfield", "Large networks: graphons, digraph measures, "
                     "Kuramoto-type particle systems, order parameters and mean-field limits."),
    "graphons.md": ("jaxdyn.meanfield.graphons", "jaxdyn.meanfield.graphons", "Graphons by name: "
                    "constructors and classes."),
    "invariant.md": ("jaxdyn.invariant", "jaxdyn.invariant", "Invariant sets and bifurcations: equilibria, "
                     "fixed points, cycles, periodic orbits, continuation, characteristic roots of DDEs."),
    "distributed.md": ("jaxdyn.distributed", "jaxdyn.distributed", "Several processes, several devices: "
                       "initialisation, global meshes, sharded maps, the local launcher."),
    "plot.md": ("jaxdyn.plot", "jaxdyn.plot", "Figures (matplotlib is imported only when a function draws). "
                "Every result's `.plot()` calls one of these."),
    "experiments.md": ("jaxdyn.experiments", "jaxdyn.experiments", "The reproduced experiments of the "
                       "report: the registry, the result and claim types, the report writer."),
}

SKIP = {"TYPE_CHECKING"}

# Bare names that docstrings of modules without the name in scope link to (`[`BranchResult`][]` in
# jaxdyn/plot): a global anchor beside the entry makes them resolve. Qualify the links
# (`[`BranchResult`][jaxdyn.invariant.BranchResult]`) and remove the names from here.
# Entries whose members have no docstrings of their own but are the point (the codes of an enumeration).
LIST_MEMBERS = {"jaxdyn.RESULTS", "jaxdyn.lyapunov.RESULTS"}

BARE_ANCHORS: set[str] = set()  # names linked bare from modules that cannot resolve them (none left)


def public_names(modname: str) -> list[str]:
    """The exported names of a module (see the module docstring)."""
    module = importlib.import_module(modname)
    return sorted(n for n in dir(module) if not n.startswith("_") and n not in SKIP
                  and not isinstance(getattr(module, n), types.ModuleType))


def _group(modname: str, name: str) -> str:
    obj = getattr(importlib.import_module(modname), name)
    home = getattr(obj, "__module__", None) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
    if not home or not home.startswith("jaxdyn"):
        return "Constants"
    doc = (importlib.import_module(home).__doc__ or home).strip().split("\n\n")[0]
    doc = " ".join(doc.split())
    return re.split(r"(?<=[a-z)$`])\. ", doc)[0].rstrip(".:")


def _scoped_links(modname: str, text: str) -> str:
    """`[`name`][]` in a module docstring, qualified with the page's package (or left as code)."""
    names = set(public_names(modname))
    return re.sub(r"\[`(\w+)`\]\[\]", lambda m: f"[`{m[1]}`][{modname}.{m[1]}]" if m[1] in names
                  else f"`{m[1]}`", text)


def _heading(sentence: str) -> str:
    """A short heading from a module's first sentence: up to its first colon, else its first bracket."""
    head = sentence.split(": ")[0]
    if len(head) > 80 and " (" in head and head.split(" (")[0].count("$") % 2 == 0:
        head = head.split(" (")[0]
    return head


def render(page: str) -> str:
    modname, title, intro = PAGES[page]
    lines = [f"# `{title}`", "", f'[](){{ id="{modname}" }}', "", intro, ""]
    if modname == "jaxdyn":
        lines += ["Subpackages: " + ", ".join(f"[`jaxdyn.{p}`]({p}.md)" for p in
                                              ("models", "dde", "lyapunov", "curvature", "training",
                                               "meanfield", "invariant", "distributed", "plot",
                                               "experiments")) + ".", ""]
    groups: dict[str, list[str]] = {}
    for name in public_names(modname):
        groups.setdefault(_group(modname, name), []).append(name)
    for group in sorted(groups, key=lambda g: (g == "Constants", g.lower())):
        text = _scoped_links(modname, group)
        heading = _heading(text)
        lines += [f"## {heading}", ""] + ([text + ".", ""] if heading != text else [])
        for name in groups[group]:
            if name in BARE_ANCHORS:
                lines += [f"[](){{#{name}}}", ""]
            lines += [f"::: {modname}.{name}", ""]
            if f"{modname}.{name}" in LIST_MEMBERS:
                lines[-1:] = ["    options:", "      show_if_no_docstring: true", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for page in PAGES:
        text, path = render(page), API / page
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            API.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run `python docs/_gen_api.py`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
