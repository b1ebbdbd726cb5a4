"""Every ```python block of README.md runs, self-contained, and prints what the README says it prints.

Each block runs in a fresh namespace (one process: JAX is imported once), statement by statement.
What a statement is said to give is the text of the comment lines right below it (up to the next blank or
code line), or if there are none, of its trailing comment (which is a remark when lines below follow).
That text is checked, by these rules:

- a statement that printed something: the text is what it printed (several comment lines for several
  printed lines);
- otherwise a bare expression with a value other than `None`: the text is its value, written as numpy
  writes arrays (`[0.3679889]`), tuples as `a, b`, strings quoted;
- otherwise (an assignment, a call that returns `None`) the comment is a remark and is not checked.

Two spaces and a parenthesis end the checked text: `x  # [0.25]  (exact)` checks `[0.25]`, and the
remark `(exact)` may state a tolerance as `± X` (absolute). A text ending in `...` is a prefix of the
output. Texts are compared token by token: words (`True`, `'augmented'`, `saddle`) exactly, numbers to
one unit of the last digit shown (`0.5762` passes 0.57625), or to 1e-6 relative, or to 1e-10 absolute
(rounding-level zeros such as `1.1e-16`), whichever is largest; integers written without a point
exactly; punctuation is ignored.
"""

import ast
import contextlib
import io
import math
import pathlib
import re
import time
import tokenize

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

# Blocks, named by a substring only they contain, that are not run here, and why.
SKIP = {
    "jdist.initialize()": "a script for `python -m jaxdyn.launch -n 2`; tests/test_distributed.py runs "
                          "its sweep on 2 processes and compares it with one",
}
# Blocks run only in the slow lane (`-m slow`): what they compute, and their time as measured in one
# process on the shared (loaded) 2-core machine, compilation included. The other six blocks took
# 47 s together there.
SLOW = {
    "critical_points(phi": "the embedding and two multi-start Morse searches: 17-52 s",
    "sol.evaluate(2.5)": "dde.solve with adaptive steps at rtol 1e-10: 21 s",
    "cv.top_eigenvalues": "Lanczos, a chunked Hessian and Hutch++: 12-17 s",
    "central_flow(loss": "200 central-flow steps: 15-18 s",
    "mf.lorentzian_quantiles(2000": "2000 Kuramoto oscillators over 25 time units: 14 s",
    "10**6": "a Kuramoto ring of 10^6 oscillators: 86 s",
    "inv.equilibria": "equilibria, four continuations, a periodic orbit, characteristic roots: 51-97 s",
    "mf.SelfAttention(I3": "32 tokens of self-attention over 30 time units and their clusters: 10 s",
    "jm.EmpiricalScore(points": "a CNF log-density and 600 probability-flow samples: 15 s",
}

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_TOKEN = re.compile(rf"(?P<num>{_NUMBER.pattern})|(?P<word>[A-Za-z_][A-Za-z_0-9]*)")
_TOL = re.compile(r"±\s*(" + _NUMBER.pattern + ")")


def _blocks() -> list[tuple[int, str]]:
    """(line number of the first code line, code) of every ```python block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, start = [], None
    for i, line in enumerate(lines):
        if start is None and line.strip() == "```python":
            start = i + 1
        elif start is not None and line.strip() == "```":
            blocks.append((start + 1, "\n".join(lines[start:i]) + "\n"))
            start = None
    return blocks


def _said(code: str):
    """(statement, checked text, remark) per top-level statement; text and remark may be ''."""
    tree = ast.parse(code)
    lines = code.splitlines()
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:].strip()
    out = []
    for stmt in tree.body:
        said = []
        row = stmt.end_lineno + 1
        while row <= len(lines) and lines[row - 1].lstrip().startswith("#"):
            said.append(comments[row])
            row += 1
        text, remark = [], []
        if stmt.end_lineno in comments and not lines[stmt.end_lineno - 1].lstrip().startswith("#"):
            if said:  # the lines below are the output, the trailing comment a remark
                remark.append(comments[stmt.end_lineno])
            else:
                said.append(comments[stmt.end_lineno])
        for line in said:
            value, _, rest = line.partition("  (")
            text.append(value.strip())
            if rest:
                remark.append(rest)
        out.append((stmt, "\n".join(t for t in text if t), " ".join(remark)))
    return out


def _fmt(value) -> str:
    """A value as the README writes it."""
    if isinstance(value, tuple | list):
        inner = ", ".join(_fmt(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return repr(value)
    if hasattr(value, "__array__") and not isinstance(value, bool | int | float):
        return str(np.asarray(value))
    return str(value)


def _tokens(text: str) -> list[tuple[str, str]]:
    return [("num", m["num"]) if m["num"] else ("word", m["word"]) for m in _TOKEN.finditer(text)]


def _unit(number: str) -> float:
    """One unit of the last digit written in `number` (0 for an integer written without a point)."""
    mantissa, _, exponent = number.lower().partition("e")
    if "." not in mantissa:
        return 0.0 if not exponent else 10.0 ** int(exponent)
    decimals = len(mantissa.split(".")[1])
    return 10.0 ** (int(exponent or 0) - decimals)


def _compare(expected: str, actual: str, tol: float | None) -> str | None:
    """None if `actual` agrees with `expected` (the rules of the module docstring), else why not."""
    prefix = expected.rstrip().endswith("...")
    want, got = _tokens(expected.rstrip().removesuffix("...")), _tokens(actual)
    if len(got) < len(want) or (not prefix and len(got) != len(want)):
        return f"{len(got)} tokens printed, {len(want)} said"
    for (kind, w), (kind_got, g) in zip(want, got, strict=False):
        if kind != kind_got:
            return f"said {w!r}, got {g!r}"
        if kind == "word":
            if w != g:
                return f"said {w!r}, got {g!r}"
            continue
        e, a = float(w), float(g)
        bound = tol if tol is not None else max(_unit(w), 1e-6 * abs(e), 1e-10 if _unit(w) else 0.0)
        if not (math.isfinite(a) and abs(a - e) <= bound * (1 + 1e-9)) and not (e == a):
            return f"said {w}, got {g} (|difference| {abs(a - e):.3g} > {bound:.3g})"
    return None


def _params():
    params = []
    for line, code in _blocks():
        marks = []
        for key, why in SKIP.items():
            if key in code:
                marks.append(pytest.mark.skip(reason=why))
        if any(key in code for key in SLOW):
            marks.append(pytest.mark.slow)
        params.append(pytest.param(line, code, id=f"README.md:{line}", marks=marks))
    return params


def test_convention_parser():
    """The parser itself, on made-up blocks (cheap: no JAX)."""
    said = _said("x = 1  # a remark\nx + 1  # 2  (exact, ± 0.5)\nprint(x)  # x\n# 1\n# 2 ...\n\n# next\n")
    assert [(text, remark) for _, text, remark in said] == [
        ("a remark", ""), ("2", "exact, ± 0.5)"), ("1\n2 ...", "x")]
    assert _compare("[0.3679889]", "[0.36798891]", None) is None
    assert _compare("[0.3679889]", "[0.36798991]", None) is not None
    assert _compare("689, 311", "(689, 311)", None) is None
    assert _compare("689, 311", "(688, 311)", None) is not None
    assert _compare("'augmented'", "'non_augmented'", None) is not None
    assert _compare("[-1. 1.36]", "[-1.  1.5]", 0.2) is None
    assert _compare("a 1 ...", "a 1 b 2", None) is None
    assert _compare("[1, 1.1e-16]", "[1.0000000e+00 -3.3e-16]", None) is None


def test_every_block_is_self_contained():
    """Every block that runs switches float64 on itself and imports what it uses (a fresh namespace
    proves the imports; this checks the switch, whose absence would still run)."""
    for line, code in _blocks():
        if any(key in code for key in SKIP):
            continue
        assert 'jax.config.update("jax_enable_x64", True)' in code, f"README.md:{line}: no float64 switch"


@pytest.mark.parametrize(("line", "code"), _params())
def test_readme_block(line, code):
    import jax
    import matplotlib.pyplot as plt

    namespace = {"__name__": "__readme__"}
    x64 = jax.config.jax_enable_x64
    checked, failures = 0, []
    start = time.perf_counter()
    try:
        for stmt, text, remark in _said(code):
            where = f"{README.name}:{line + stmt.lineno - 1}"
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                if isinstance(stmt, ast.Expr):
                    value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
                else:
                    value = None
                    exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)
            printed = buffer.getvalue()
            actual = printed if printed else (_fmt(value) if value is not None else None)
            if not text or actual is None:
                continue
            tol = _TOL.search(remark)
            why = _compare(text, actual, float(tol[1]) if tol else None)
            checked += 1
            if why:
                failures.append(f"{where}: {why}\n  said: {text}\n  got:  {actual.strip()}")
    finally:
        plt.close("all")
        jax.config.update("jax_enable_x64", x64)
    print(f"{README.name}:{line}: {checked} outputs checked in {time.perf_counter() - start:.1f} s")
    assert not failures, "\n".join(failures)
