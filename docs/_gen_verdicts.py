"""Write docs/report/verdicts.md from a `jaxdyn reproduce` run's results.json.

    jaxdyn reproduce --quick --out /tmp/quick && python docs/_gen_verdicts.py /tmp/quick/results.json

The page gets the run's verdict table, then one claim table per experiment (the same tables as the
run's report.md, made by the same functions), and the run's provenance in one line.
"""

import pathlib
import sys

from jaxdyn.experiments import read_results
from jaxdyn.experiments._report import _claim_table, _verdict_table

OUT = pathlib.Path(__file__).parent / "report" / "verdicts.md"


def render(path) -> str:
    prov, records = read_results(path)
    recs = list(records.values())
    versions = prov.get("versions", {})
    lines = ["## Verdicts", "",
             f"Run: `{prov.get('command')}` on {prov.get('date_utc')} ({prov.get('jax_backend')}; jax "
             f"{versions.get('jax')}, jaxdyn {versions.get('jaxdyn')}, commit "
             f"`{str(prov.get('jaxdyn_git_commit'))[:12]}`).", ""]
    lines += _verdict_table(recs)
    for r in recs:
        lines += ["", f"### {r.name}", ""]
        if r.result is None:
            lines += [f"Failed: `{r.error}`"]
            continue
        lines += [f"**Question.** {r.result.question}", ""] + _claim_table(r.result.claims)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/_gen_verdicts.py RESULTS_JSON")
    OUT.write_text(render(sys.argv[1]))
    print(f"wrote {OUT}")
