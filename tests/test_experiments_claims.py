"""The claims/verdict framework of `jaxdyn reproduce`: `Claim`, the verdict of an experiment, the
report's verdict table and claim tables, `results.json`'s verdicts, `check_results`."""

import json

import pytest

from jaxdyn.experiments import (
    EXPERIMENTS,
    VERDICTS,
    Claim,
    ExperimentRecord,
    ExperimentResult,
    check_results,
    format_verdicts,
    overall_verdict,
    read_results,
    write_report,
)

SRC = "mission paper, Sec. 2"


def _claim(verdict="reproduced", why=None):
    return Claim("s", SRC, "x <= 1", 0.5, verdict, why)


def test_check_derives_verdicts():
    assert Claim.check("s", SRC, "c", 1.0, True).verdict == "reproduced"
    assert Claim.check("s", SRC, "c", 1.0, True, why="ignored").why is None
    assert Claim.check("s", SRC, "c", 1.0, False, why="w").verdict == "not reproduced"
    assert Claim.check("s", SRC, "c", 1.0, [True, False], why="w").verdict == "partly"
    assert Claim.check("s", SRC, "c", 1.0, [True, True]).verdict == "reproduced"
    assert Claim.check("s", SRC, "c", 1.0, [False, False], why="w").verdict == "not reproduced"


def test_overall_verdict():
    assert overall_verdict(()) == "no claims"
    assert overall_verdict((_claim(), _claim())) == "reproduced"
    assert overall_verdict((_claim("not reproduced", "w"),) * 2) == "not reproduced"
    assert overall_verdict((_claim(), _claim("not reproduced", "w"))) == "partly"
    assert overall_verdict((_claim("partly", "w"),)) == "partly"
    assert VERDICTS == ("reproduced", "partly", "not reproduced")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"statement": ""}, TypeError, "statement"),
    ({"source": None}, TypeError, "source"),
    ({"criterion": 3}, TypeError, "criterion"),
    ({"verdict": "ok"}, ValueError, "verdict"),
    ({"verdict": "partly"}, ValueError, "why"),
    ({"verdict": "not reproduced", "why": "  "}, ValueError, "why"),
    ({"why": 3}, TypeError, "why"),
    ({"measured": object()}, TypeError, "measured"),
])
def test_claim_rejects_bad_input(kwargs, exc, match):
    base = {"statement": "s", "source": SRC, "criterion": "c", "measured": 1.0, "verdict": "reproduced"}
    with pytest.raises(exc, match=match):
        Claim(**{**base, **kwargs})


def test_check_rejects_no_case():
    with pytest.raises(ValueError, match="passed"):
        Claim.check("s", SRC, "c", 1.0, [])


def test_result_rejects_bad_claims():
    with pytest.raises(TypeError, match="claims"):
        ExperimentResult("e", "T", "s", claims=_claim())
    with pytest.raises(TypeError, match=r"claims\[0\]"):
        ExperimentResult("e", "T", "s", claims=("not a claim",))
    with pytest.raises(TypeError, match="question"):
        ExperimentResult("e", "T", "s", question=None)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    good = ExperimentResult(
        "good", "Good", "the reading", {"x": float("nan"), "cfg": {"a": None, "b": "", "c": []}},
        question="Does x hold?",
        claims=(Claim.check("x holds", SRC, "x <= 1", "0.5 (units)", True),
                Claim.check("y holds", SRC, "y <= 1", [2.0, 0.3], [False, True], why="case 1 fails")))
    bad = ExperimentResult("bad", "Bad", "r", question="Q?",
                           claims=(Claim.check("z", SRC, "z > 0", -1.0, False, why="z is negative"),))
    records = [ExperimentRecord("good", "Good", "ok", 1.5, 0, True, result=good),
               ExperimentRecord("bad", "Bad", "ok", 0.5, 0, True, result=bad),
               ExperimentRecord("boom", "Boom", "error", 0.1, 0, True, error="RuntimeError: x")]
    out = tmp_path_factory.mktemp("report")
    report, results = write_report(out, records, {"command": "jaxdyn reproduce --quick"})
    return records, report, results


def test_report_opens_with_verdict_table(written):
    _, report, _ = written
    text = report.read_text()
    head = text.split("### Provenance")[0]
    assert "| experiment | question | verdict | claims reproduced | wall time (s) |" in head
    assert "| [good](#good) | Does x hold? | partly | 1/2 (+1 partly) | 1.5 |" in head
    assert "| [bad](#bad) | Q? | **not reproduced** | 0/1 | 0.5 |" in head
    assert "**error**" in head
    section = text.split('<a id="good"></a>')[1]
    assert "**Question.** Does x hold?" in section
    assert "| 2 | y holds | mission paper, Sec. 2 | y <= 1 | [2, 0.3] | partly: case 1 fails |" in section
    assert "nan" not in section.split("All metrics")[1].split("</details>")[0].replace("NaN", "")
    assert "| `cfg.a` | - |" in section and "| `cfg.c` | (none) |" in section


def test_results_json_carries_verdicts(written):
    records, _, results = written
    data = json.loads(results.read_text())
    assert data["verdicts"] == {"good": "partly", "bad": "not reproduced", "boom": "error"}
    claims = data["experiments"]["good"]["claims"]
    assert [c["verdict"] for c in claims] == ["reproduced", "partly"]
    assert all(c["criterion"] and c["measured"] is not None and c["source"] for c in claims)
    _, back = read_results(results)  # --resume reads the claims back
    assert back["good"].result.claims == records[0].result.claims
    assert back["good"].result.question == "Does x hold?"


def test_check_results(written, tmp_path):
    _, _, results = written
    assert check_results(results, experiments=["good", "bad", "boom"]) == {
        "good": "partly", "bad": "not reproduced", "boom": "error"}
    with pytest.raises(ValueError, match="no record of"):
        check_results(results)  # the registered experiments are not in this file
    data = json.loads(results.read_text())
    data["verdicts"]["good"] = "reproduced"  # a verdict that is not the claims'
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="good's verdict"):
        check_results(tmp_path / "r.json", experiments=["good"])
    data = json.loads(results.read_text())
    data["experiments"]["bad"]["claims"] = []
    data["verdicts"]["bad"] = "no claims"
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="bad checks no claim"):
        check_results(tmp_path / "r.json", experiments=["bad"])


def test_console_verdicts(written):
    records, report, _ = written
    text = format_verdicts(records, report)
    lines = text.splitlines()
    assert lines[0].split() == ["experiment", "verdict", "claims", "time"]
    assert lines[1].split()[:2] == ["good", "partly"]
    assert "bad: not reproduced: z (z is negative)" in text
    assert "boom: error: RuntimeError: x" in text
    assert lines[-1] == f"report: {report}"


def test_every_registered_experiment_is_listed():
    assert list(EXPERIMENTS)[0] == "embedding" and len(EXPERIMENTS) >= 9


def test_table_cells_keep_maths_whole():
    from jaxdyn.experiments._report import _md_cell

    assert _md_cell("a | b") == "a \\| b"  # a table's escape outside maths
    # inside maths no table escape (it would reach MathJax): \vert{}, \Vert{}, no space before `$`
    assert (_md_cell("$|x - y| \\le 1$ and $\\|v\\|$")
            == "$\\vert{}x - y\\vert{} \\le 1$ and $\\Vert{}v\\Vert{}$")
    assert _md_cell("line\nbreak") == "line break"
