"""The documentation site: `mkdocs build --strict` passes and the API reference covers every public name.

The site is built once (module-scoped, into a temporary directory) with `--strict`, so a broken
cross-reference in a docstring, a missing snippet or a bad page fails here as in CI. The public names
of every subpackage (its exports: the non-underscore, non-module names of the package, what its
`__init__` re-exports) are compared with the built site's inventory (`objects.inv`) and the API pages.
"""

import importlib.util
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs packages: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs packages: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parents[1]


def _gen_api():
    spec = importlib.util.spec_from_file_location("_gen_api", ROOT / "docs" / "_gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _gen_api()


def _inventory(site: Path) -> set[str]:
    """The object names of a Sphinx inventory (version 2: four header lines, then zlib)."""
    raw = (site / "objects.inv").read_bytes()
    for _ in range(4):
        raw = raw[raw.index(b"\n") + 1:]
    lines = zlib.decompress(raw).decode().splitlines()
    return {line.split(" ", 1)[0] for line in lines if " py:" in line}


def _public() -> dict[str, list[str]]:
    """page -> the qualified public names its module exports."""
    return {page: [f"{mod}.{name}" for name in GEN.public_names(mod)]
            for page, (mod, _, _) in GEN.PAGES.items()}


def missing_from(inventory: set[str], public: dict[str, list[str]]) -> list[str]:
    return sorted(name for names in public.values() for name in names if name not in inventory)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_api_pages_are_up_to_date():
    """docs/api/*.md list exactly today's public names (`python docs/_gen_api.py` rewrites them)."""
    stale = [page for page in GEN.PAGES if (ROOT / "docs" / "api" / page).read_text() != GEN.render(page)]
    assert not stale, f"API pages out of date, run `python docs/_gen_api.py`: {stale}"


def test_every_subpackage_has_a_page():
    import jaxdyn

    modules = {mod for mod, _, _ in GEN.PAGES.values()}
    for sub in jaxdyn._SUBPACKAGES:
        assert f"jaxdyn.{sub}" in modules, f"no API page for jaxdyn.{sub}"
    assert {"jaxdyn", "jaxdyn.experiments", "jaxdyn.meanfield.graphons"} <= modules
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in GEN.PAGES:
        assert f"api/{page}" in nav, f"api/{page} is not in the nav of mkdocs.yml"


def test_every_public_name_is_in_the_built_reference(site):
    public = _public()
    inventory = _inventory(site)
    assert sum(map(len, public.values())) > 300
    assert not missing_from(inventory, public), missing_from(inventory, public)
    for page, names in public.items():
        html = (site / "api" / page.removesuffix(".md") / "index.html").read_text()
        absent = [name for name in names if f'id="{name}"' not in html]
        assert not absent, f"api/{page}: no entry for {absent}"


def test_a_missing_name_is_caught(site):
    """The comparison fails when a package exports a name the reference does not render."""
    public = _public()
    public["models.md"] = [*public["models.md"], "jaxdyn.models.NotDocumented"]
    assert missing_from(_inventory(site), public) == ["jaxdyn.models.NotDocumented"]


def test_no_raw_dollars(site):
    """Every `$...$` of the pages and docstrings became maths: a `$` left in the text means MathJax
    will not see it (e.g. `$x + $ `y``: arithmatex wants no space inside the closing dollar)."""
    raw = []
    for page in sorted(site.glob("**/index.html")):
        if "notebooks" in page.parts:  # their Markdown keeps $...$ for MathJax (docs/javascripts)
            continue
        text = page.read_text()
        for pattern in [r'<(span|div) class="arithmatex">.*?</\1>', r"<code>.*?</code>", r"<pre.*?</pre>",
                        r"<script.*?</script>", r"<[^>]+>"]:
            text = re.sub(pattern, " ", text, flags=re.S)
        raw += [f"{page.relative_to(site)}: ...{text[max(0, m.start() - 50):m.start() + 30]!r}..."
                for m in re.finditer(r"\$", text)]
    assert not raw, "\n".join(raw)


def test_the_site_pages(site):
    for page in ["index.html", "getting-started/index.html", "distributed/index.html",
                 "own-vector-field/index.html", "contributing/index.html", "report/index.html",
                 "programmes/on-the-network/index.html", "programmes/of-the-network/index.html",
                 "programmes/mean-field/index.html"]:
        assert (site / page).is_file(), page
    # the benchmark tables are the README's, included (not copied)
    bench = (site / "benchmarks" / "index.html").read_text()
    assert "Results by platform" in bench and "<table>" in bench
    # CONTRIBUTING.md is included, with the figure checklist
    contributing = (site / "contributing" / "index.html").read_text()
    assert "One kernel, one place" in contributing and "Figure checklist" in contributing
    # maths goes through arithmatex (MathJax), not raw dollars
    mean_field = (site / "programmes" / "mean-field" / "index.html").read_text()
    assert 'class="arithmatex"' in mean_field
    # Equinox modules show their constructor's arguments (docs/_griffe_equinox.py)
    text = re.sub(r"<[^>]+>", "", (site / "api" / "lyapunov" / "index.html").read_text())
    assert "Checkpoint(path, every=10, resume=True)" in text
    # the notebooks are rendered from their executed state: their figures are in the pages
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        html = (site / "notebooks" / nb.stem / "index.html").read_text()
        assert re.search(r"data:image/png;base64|<img ", html), f"{nb.name}: no figure in the rendered page"


# -- the code blocks of the pages (slow lane) ------------------------------------------------------

# Pages whose ```python blocks are not run here: scripts for several processes (the sweep of
# docs/distributed.md runs on 2 processes in tests/test_distributed.py).
NOT_RUN = {"distributed.md"}
CODE_PAGES = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")
                    if "```python" in p.read_text() and p.name not in NOT_RUN)


def _blocks_checker(page: str):
    """tests/test_readme_blocks.py's runner (its output convention, in its docstring), on a docs page."""
    spec = importlib.util.spec_from_file_location("_docs_blocks", ROOT / "tests" / "test_readme_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.README = ROOT / "docs" / page
    return module


def test_code_pages_found():
    assert {"getting-started.md", "own-vector-field.md", "programmes/mean-field.md"} <= set(CODE_PAGES)


@pytest.mark.slow
@pytest.mark.parametrize("page", CODE_PAGES)
def test_page_blocks(page):
    """Every python block of the page runs on its own (imports and the float64 switch inside) and
    prints what the page says it prints (README.md's convention and tolerances)."""
    checker = _blocks_checker(page)
    blocks = checker._blocks()
    assert blocks
    for line, code in blocks:
        assert 'jax.config.update("jax_enable_x64", True)' in code, f"docs/{page}:{line}: no float64 switch"
        try:
            checker.test_readme_block(line, code)
        except AssertionError as err:
            raise AssertionError(f"docs/{page}, block at line {line}:\n{err}") from None

