"""Writing `report.md`, `results.json` and the figure PNGs of a `jaxdyn reproduce` run."""

import dataclasses
import datetime
import importlib.metadata
import json
import math
import pathlib
import platform
import subprocess
import sys
from typing import Any

from ._result import ExperimentResult, to_jsonable

_PACKAGES = ("jaxdyn", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "matplotlib")


@dataclasses.dataclass(frozen=True)
class ExperimentRecord:
    """One experiment's outcome in a run: its result (or error), wall time and written files.

    - `status`: `"ok"` or `"error"`; on error `error` is `"Type: message"` and `traceback` the
      formatted traceback, and `result` is `None`.
    - `figures`: figure name -> PNG file name (relative to the output directory).
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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "wall_time_s": round(self.wall_time_s, 3),
            "seed": self.seed,
            "x64": self.x64,
            "metrics": {} if self.result is None else self.result.metrics,
            "figures": dict(self.figures),
            "error": self.error,
            "traceback": self.traceback,
        }


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
    """Write each figure of `result` to `out_dir/<experiment>_<figure>.png`, close it, and return
    figure name -> file name."""
    out_dir = pathlib.Path(out_dir)
    written = {}
    for key, fig in result.figures.items():
        filename = f"{result.name}_{key}.png"
        fig.savefig(out_dir / filename, dpi=dpi, bbox_inches="tight")
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
    return str(x)


def _fmt_value(x: Any, max_items: int = 12) -> str:
    if isinstance(x, list):
        items = [_fmt_value(v, max_items) for v in x[:max_items]]
        more = f", ... ({len(x)} items)" if len(x) > max_items else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(x, dict):
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
    """(key, formatted value) rows of `metrics`, nested dicts flattened to dotted keys."""
    return [(k, _fmt_value(v)) for k, v in _flatten(to_jsonable(metrics))]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(records: list[ExperimentRecord], prov: dict[str, Any]) -> str:
    lines = ["# jaxdyn reproduce report", ""]
    n_ok = sum(r.ok for r in records)
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
    lines += ["", f"{n_ok}/{len(records)} experiment(s) succeeded.", ""]
    lines += ["| experiment | status | wall time (s) |", "|---|---|---|"]
    for r in records:
        lines.append(f"| [{r.name}](#{r.name}) | {r.status} | {r.wall_time_s:.1f} |")
    for r in records:
        lines += ["", f'<a id="{r.name}"></a>', "", f"## {r.name}: {r.title}", ""]
        lines.append(f"*{r.status}, {r.wall_time_s:.1f} s, seed {r.seed}, "
                     f"{'float64' if r.x64 else 'float32'}*")
        lines.append("")
        if not r.ok:
            lines += [f"**Failed:** `{_md_cell(r.error or '')}`", "", "```", (r.traceback or
                      "").rstrip(), "```"]
            continue
        assert r.result is not None
        lines += [r.result.summary.strip(), ""]
        rows = format_metrics(r.result.metrics)
        if rows:
            lines += ["### Metrics", "", "| metric | value |", "|---|---|"]
            lines += [f"| `{_md_cell(k)}` | {_md_cell(v)} |" for k, v in rows]
            lines.append("")
        if r.figures:
            lines += ["### Figures", ""]
            for key, filename in r.figures.items():
                lines += [f"![{r.name}: {key}]({filename})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(out_dir, records: list[ExperimentRecord], prov: dict[str, Any]
                 ) -> tuple[pathlib.Path, pathlib.Path]:
    """Write `out_dir/report.md` and `out_dir/results.json`; return their paths.

    The figures must already have been written ([`save_figures`][]): the report links to the
    file names in each record's `figures`.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.md"
    results = out_dir / "results.json"
    report.write_text(_markdown(records, prov), encoding="utf-8")
    payload = {
        "provenance": to_jsonable(prov, "provenance"),
        "experiments": {r.name: r.to_json() for r in records},
    }
    results.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report, results
