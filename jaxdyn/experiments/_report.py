"""Writing `report.md`, `results.json` and the figure PNGs of a `jaxdyn reproduce` run."""

import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
from typing import Any

from ._result import Claim, ExperimentResult, to_jsonable

_PACKAGES = ("jaxdyn", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "matplotlib")
# The packages whose versions can change an experiment's numbers (matplotlib only draws).
_NUMERIC_PACKAGES = ("jaxdyn", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy")


@dataclasses.dataclass(frozen=True)
class ExperimentRecord:
    """One experiment's outcome in a run: its result (or error), wall time and written files.

    - `status`: `"ok"` or `"error"`; on error `error` is `"Type: message"` and `traceback` the
      formatted traceback, and `result` is `None`.
    - `figures`: figure name -> PNG file name (relative to the output directory).
    - `config`: what determines the numbers ([`experiment_config`][]); `jaxdyn reproduce --resume`
      reuses a stored record only when its `config` equals the current one.
    - `finished_utc`: when the experiment finished (ISO 8601, UTC, milliseconds); a reused record
      keeps the time it was computed.
    """

    name: str
    title: str
    status: str
    wall_time_s: float
    seed: int
    x64: bool
    result: ExperimentResult | None = None
    figures: dict[str, str] = dataclasses.field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    config: dict[str, Any] | None = None
    finished_utc: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def verdict(self) -> str:
        """The experiment's verdict: `"error"` when it failed, else that of its claims
        (`"reproduced"`, `"partly"`, `"not reproduced"`, `"no claims"`)."""
        return "error" if self.result is None else self.result.verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "wall_time_s": round(self.wall_time_s, 3),
            "seed": self.seed,
            "x64": self.x64,
            "verdict": self.verdict,
            "question": None if self.result is None else self.result.question,
            "claims": [] if self.result is None else [c.to_json() for c in self.result.claims],
            "summary": None if self.result is None else self.result.summary,
            "metrics": {} if self.result is None else self.result.metrics,
            "figures": dict(self.figures),
            "error": self.error,
            "traceback": self.traceback,
            "config": self.config,
            "finished_utc": self.finished_utc,
        }

    @classmethod
    def from_json(cls, name: str, data: Any) -> "ExperimentRecord":
        """The record `to_json` wrote for experiment `name`; a `ValueError` saying what is wrong
        if `data` is not such a record."""
        if not isinstance(data, dict):
            raise ValueError(f"experiment {name!r} is a {type(data).__name__}, not an object")
        types = {"title": str, "status": str, "wall_time_s": int | float, "seed": int, "x64": bool,
                 "metrics": dict, "figures": dict}
        for key, typ in types.items():
            if not isinstance(data.get(key), typ):
                raise ValueError(f"experiment {name!r} has no valid {key!r}")
        if data["status"] not in ("ok", "error"):
            raise ValueError(f"experiment {name!r} has status {data['status']!r}")
        figures = data["figures"]
        if not all(isinstance(k, str) and isinstance(v, str) and pathlib.Path(v).name == v
                   for k, v in figures.items()):
            raise ValueError(f"experiment {name!r} has invalid figure file names")
        result = None
        if data["status"] == "ok":
            if not isinstance(data.get("summary"), str):
                raise ValueError(f"experiment {name!r} has no 'summary'")
            claims = data.get("claims", [])
            question = data.get("question") or ""
            if not isinstance(claims, list) or not isinstance(question, str):
                raise ValueError(f"experiment {name!r} has invalid 'claims' or 'question'")
            try:
                result = ExperimentResult(name, data["title"], data["summary"], data["metrics"],
                                          question=question,
                                          claims=tuple(Claim.from_json(c) for c in claims))
            except (TypeError, ValueError) as err:
                raise ValueError(f"experiment {name!r}: {err}") from None
        config = data.get("config")
        return cls(name, data["title"], data["status"], float(data["wall_time_s"]), data["seed"],
                   data["x64"], result=result, figures=dict(figures), error=data.get("error"),
                   traceback=data.get("traceback"),
                   config=config if isinstance(config, dict) else None,
                   finished_utc=data.get("finished_utc"))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str | None:
    """The commit of the jaxdyn checkout (with `+dirty` for uncommitted changes to tracked
    files), or `None` outside a git checkout."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # an installed copy, not a checkout
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


def source_fingerprint() -> str:
    """SHA-256 of the jaxdyn package's Python sources (relative paths and contents), so that a
    stored result is tied to the code that computed it, checkout or installed copy alike."""
    root = pathlib.Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def experiment_config(*, quick: bool, seed: int, x64: bool, source: str | None = None
                      ) -> dict[str, Any]:
    """Everything that determines an experiment's numbers: `quick`, `seed`, `x64`, the JAX
    backend and device kinds, the versions of the numerical packages and Python, and the jaxdyn
    sources ([`source_fingerprint`][], computed when `source` is `None`).

    Two runs with equal configurations are expected to give bit-identical metrics (their own
    timings aside; the test suite checks this for `implicit-bias` and `lyapunov` on CPU), which is
    what lets `jaxdyn reproduce --resume` reuse a stored result instead of recomputing it.
    """
    import jax

    versions = {p: _version(p) for p in _NUMERIC_PACKAGES}
    versions["python"] = platform.python_version()
    return {
        "quick": bool(quick),
        "seed": int(seed),
        "x64": bool(x64),
        "jax_backend": jax.default_backend(),
        "jax_devices": [d.device_kind for d in jax.devices()],
        "versions": versions,
        "jaxdyn_source_sha256": source_fingerprint() if source is None else source,
    }


def provenance(*, quick: bool, seed: int, argv: list[str] | None = None) -> dict[str, Any]:
    """Where and how a run happened: versions, platform, JAX devices, flags, UTC date."""
    import jax

    versions = {p: _version(p) for p in _PACKAGES}
    versions["python"] = platform.python_version()
    return {
        "command": " ".join(["jaxdyn", *(argv if argv is not None else sys.argv[1:])]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": bool(quick),
        "seed": int(seed),
        "x64_default": True,
        "versions": versions,
        "jaxdyn_git_commit": _git_commit(),
        "platform": platform.platform(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
    }


def save_figures(result: ExperimentResult, out_dir, *, dpi: int = 120) -> dict[str, str]:
    """Write each figure of `result` to `out_dir/<experiment>_<figure>.png` (atomically: a
    temporary file renamed into place), close it, and return figure name -> file name."""
    out_dir = pathlib.Path(out_dir)
    written = {}
    for key, fig in result.figures.items():
        filename = f"{result.name}_{key}.png"
        with _atomic(out_dir / filename, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight")
        written[key] = filename
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except Exception:  # noqa: BLE001 - a figure not managed by pyplot needs no closing
            pass
    return written


def _fmt_number(x: Any) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if x == 0 or (1e-3 <= abs(x) < 1e5):
            return f"{x:.4g}"
        return f"{x:.3e}" if math.isfinite(x) else str(x)
    if x is None:
        return "-"
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return {"nan": "undefined (NaN)", "inf": "+inf", "-inf": "-inf"}[x]
    if isinstance(x, str) and not x.strip():
        return "-"
    return str(x)


def _fmt_value(x: Any, max_items: int = 12) -> str:
    if isinstance(x, list):
        if not x:
            return "(none)"
        items = [_fmt_value(v, max_items) for v in x[:max_items]]
        more = f", ... ({len(x)} items)" if len(x) > max_items else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(x, dict):
        if not x:
            return "(none)"
        return "{" + ", ".join(f"{k}: {_fmt_value(v, max_items)}" for k, v in x.items()) + "}"
    return _fmt_number(x)


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def format_metrics(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, formatted value) rows of `metrics`, nested dicts flattened to dotted keys; `None`,
    empty strings and empty lists read `-`/`(none)`, NaN reads `undefined (NaN)`."""
    return [(k, _fmt_value(v)) for k, v in _flatten(to_jsonable(metrics))]


def _md_cell(text: str) -> str:
    """`text` for one Markdown table cell: on one line, `|` escaped outside maths and written
    `\\vert{}` (`\\|` as `\\Vert{}`) inside `$...$`, where a table's escape would reach the maths."""
    parts = text.replace("\n", " ").split("$")
    for i, part in enumerate(parts):
        if i % 2 and i < len(parts) - 1:  # inside a closed $...$
            parts[i] = part.replace("\\|", "\\Vert{}").replace("|", "\\vert{}")
        else:
            parts[i] = part.replace("|", "\\|")
    return "$".join(parts)


_VERDICT_MARK = {"reproduced": "reproduced", "partly": "partly", "not reproduced": "**not reproduced**",
                 "no claims": "no claims", "error": "**error**"}


def _claim_counts(r: "ExperimentRecord") -> str:
    if r.result is None or not r.result.claims:
        return "-"
    claims = r.result.claims
    n = sum(c.verdict == "reproduced" for c in claims)
    p = sum(c.verdict == "partly" for c in claims)
    return f"{n}/{len(claims)}" + (f" (+{p} partly)" if p else "")


def format_verdicts(records: list["ExperimentRecord"], report_path=None) -> str:
    """The console summary of a run: one line per experiment (verdict, claims reproduced, wall
    time), each claim that is not reproduced with its reason, and the report's path."""
    width = max([len(r.name) for r in records] + [10])
    lines = [f"{'experiment':<{width}}  {'verdict':<15} {'claims':<18} time"]
    for r in records:
        lines.append(f"{r.name:<{width}}  {r.verdict:<15} {_claim_counts(r):<18} "
                     f"{r.wall_time_s:6.1f} s")
    for r in records:
        if r.result is None:
            lines.append(f"  {r.name}: error: {r.error}")
            continue
        for c in r.result.claims:
            if c.verdict != "reproduced":
                lines.append(f"  {r.name}: {c.verdict}: {_plain(c.statement)} ({c.why})")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Markdown/maths text shortened for a console line."""
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:97] + "..."


def _measured(value: Any) -> str:
    return value if isinstance(value, str) else _fmt_value(value)


def _verdict_table(records: list["ExperimentRecord"]) -> list[str]:
    lines = ["| experiment | question | verdict | claims reproduced | wall time (s) |",
             "|---|---|---|---|---|"]
    for r in records:
        question = "-" if r.result is None or not r.result.question else _md_cell(r.result.question)
        lines.append(f"| [{r.name}](#{r.name}) | {question} | {_VERDICT_MARK[r.verdict]} | "
                     f"{_claim_counts(r)} | {r.wall_time_s:.1f} |")
    return lines


def _claim_table(claims: tuple[Claim, ...]) -> list[str]:
    lines = ["| # | claim | source | criterion | measured | verdict |", "|---|---|---|---|---|---|"]
    for i, c in enumerate(claims, 1):
        verdict = _VERDICT_MARK[c.verdict] + (f": {_md_cell(c.why)}" if c.why else "")
        lines.append(f"| {i} | {_md_cell(c.statement)} | {_md_cell(c.source)} | "
                     f"{_md_cell(c.criterion)} | {_md_cell(_measured(c.measured))} | {verdict} |")
    return lines


def _markdown(records: list[ExperimentRecord], prov: dict[str, Any]) -> str:
    lines = ["# jaxdyn reproduce report", ""]
    counts = {}
    for r in records:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    n_ok = sum(r.ok for r in records)
    lines += [f"{n_ok}/{len(records)} experiment(s) succeeded; verdicts: {tally}. Each experiment "
              "states its claims before the run, with the criterion each must meet; a claim that "
              "fails its criterion is reported as not reproduced.", ""]
    lines += _verdict_table(records)
    lines += ["", "### Provenance", ""]
    lines += [
        f"- command: `{prov.get('command', 'jaxdyn reproduce')}`",
        f"- date (UTC): {prov.get('date_utc')}",
        f"- mode: {'quick' if prov.get('quick') else 'full'}; seed: {prov.get('seed')}; "
        f"float64 by default: {prov.get('x64_default')}",
        f"- JAX backend: {prov.get('jax_backend')}; devices: "
        f"{', '.join(prov.get('jax_devices', []))}",
        f"- platform: {prov.get('platform')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items()),
    ]
    if prov.get("jaxdyn_git_commit"):
        lines.append(f"- jaxdyn git commit: `{prov['jaxdyn_git_commit']}`")
    if "total_wall_time_s" in prov:
        lines.append(f"- total wall time: {prov['total_wall_time_s']:.1f} s")
    if prov.get("reused"):
        lines.append("- reused from an earlier run (`--resume`, same configuration, not recomputed): "
                     + ", ".join(prov["reused"]))
    interrupted = prov.get("interrupted")
    if interrupted:
        lines.append(f"- **interrupted** ({interrupted.get('signal')}) during "
                     f"`{interrupted.get('during')}`; not run: "
                     f"{', '.join(interrupted.get('not_run', [])) or '(none)'}. Finish with the same "
                     "command and `--resume`.")
    for r in records:
        lines += ["", f'<a id="{r.name}"></a>', "", f"## {r.name}: {r.title}", ""]
        finished = f", finished {r.finished_utc}" if r.finished_utc else ""
        lines.append(f"*verdict: {r.verdict}; {r.status}, {r.wall_time_s:.1f} s, seed {r.seed}, "
                     f"{'float64' if r.x64 else 'float32'}{finished}*")
        lines.append("")
        if not r.ok:
            lines += [f"**Failed:** `{_md_cell(r.error or '')}`", "", "```", (r.traceback or
                      "").rstrip(), "```"]
            continue
        assert r.result is not None
        if r.result.question:
            lines += [f"**Question.** {r.result.question.strip()}", ""]
        if r.result.claims:
            lines += ["### Claims", ""] + _claim_table(r.result.claims) + [""]
        lines += ["### Reading", "", r.result.summary.strip(), ""]
        if r.figures:
            lines += ["### Figures", ""]
            for key, filename in r.figures.items():
                lines += [f"![{r.name}: {key}]({filename})", ""]
        rows = format_metrics(r.result.metrics)
        if rows:
            lines += ["<details><summary>All metrics</summary>", "", "| metric | value |", "|---|---|"]
            lines += [f"| `{_md_cell(k)}` | {_md_cell(v)} |" for k, v in rows]
            lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(out_dir, records: list[ExperimentRecord], prov: dict[str, Any]
                 ) -> tuple[pathlib.Path, pathlib.Path]:
    """Write `out_dir/results.json` and `out_dir/report.md`; return their paths (report first).

    Each file is written atomically (a temporary file renamed into place), `results.json` first:
    an interruption leaves the previous version or the new one, never a torn file. The figures
    must already have been written ([`save_figures`][]): the report links to the file names in
    each record's `figures`.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.md"
    results = out_dir / "results.json"
    payload = {
        "provenance": to_jsonable(prov, "provenance"),
        "verdicts": {r.name: r.verdict for r in records},
        "experiments": {r.name: r.to_json() for r in records},
    }
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    with _atomic(results, "w") as fh:
        fh.write(text)
    with _atomic(report, "w") as fh:
        fh.write(_markdown(records, prov))
    return report, results


def read_results(path) -> tuple[dict[str, Any], dict[str, ExperimentRecord]]:
    """Read a `results.json` written by [`write_report`][]: its provenance and its records by
    name (in file order). A `ValueError` says what is wrong with a file that is not one."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"it is not valid JSON ({err.msg}; line {err.lineno}, column "
                         f"{err.colno})") from None
    if (not isinstance(data, dict) or not isinstance(data.get("provenance"), dict)
            or not isinstance(data.get("experiments"), dict)):
        raise ValueError("it has no 'provenance' and 'experiments' objects")
    records = {name: ExperimentRecord.from_json(name, rec)
               for name, rec in data["experiments"].items()}
    return data["provenance"], records


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import (os.umask can only be read by setting it)


@contextlib.contextmanager
def _atomic(path: pathlib.Path, mode: str):
    """`with _atomic(path, mode) as fh:` writes a temporary file next to `path` and renames it to
    `path` on success (and removes it on failure)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_results(path, *, experiments=None) -> dict[str, str]:
    """Check that a `results.json` gives a verdict for every claim: each experiment that ran has a
    question and at least one claim, each claim a source, a criterion, a measured value and a
    verdict (with a reason when not reproduced), and the top-level `verdicts` equal the claims'.

    `experiments`: the names that must be present (default: every registered one). Returns the
    verdicts by name; raises a `ValueError` naming the first problem.
    """
    from ._registry import EXPERIMENTS
    from ._result import overall_verdict

    _, records = read_results(path)
    data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    names = list(EXPERIMENTS) if experiments is None else list(experiments)
    missing = [n for n in names if n not in records]
    if missing:
        raise ValueError(f"{path}: no record of {', '.join(missing)}")
    verdicts = data.get("verdicts")
    if not isinstance(verdicts, dict):
        raise ValueError(f"{path}: no 'verdicts' object")
    for name, rec in records.items():
        if rec.result is None:
            if verdicts.get(name) != "error":
                raise ValueError(f"{path}: {name} failed but its verdict is {verdicts.get(name)!r}")
            continue
        if not rec.result.question.strip():
            raise ValueError(f"{path}: {name} states no question")
        if not rec.result.claims:
            raise ValueError(f"{path}: {name} checks no claim")
        for i, claim in enumerate(rec.result.claims):
            if claim.measured is None or claim.measured in ("", [], {}):
                raise ValueError(f"{path}: {name} claim {i + 1} has no measured value")
        expected = overall_verdict(rec.result.claims)
        if verdicts.get(name) != expected or data["experiments"][name].get("verdict") != expected:
            raise ValueError(f"{path}: {name}'s verdict is not that of its claims ({expected!r})")
    return {name: verdicts[name] for name in records}
