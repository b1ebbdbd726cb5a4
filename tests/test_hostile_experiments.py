"""The hostile-input table of the claims and verdicts of `jaxdyn.experiments`: `Claim`,
`Claim.check`, `ExperimentResult(question=, claims=)` and `check_results` reject bad input with a
`TypeError`/`ValueError` naming the argument."""

import json
import pathlib
import tempfile

import pytest

from jaxdyn.experiments import Claim, ExperimentResult, check_results
from tests.helpers import Hostile, hostile_ids, run_hostile

SRC = "mission paper, training dynamics"


def _claim(**kw):
    base = {"statement": "s", "source": SRC, "criterion": "x <= 1", "measured": 0.5,
            "verdict": "reproduced"}
    return lambda: Claim(**{**base, **kw})


def _results_file(payload) -> pathlib.Path:
    path = pathlib.Path(tempfile.mkdtemp()) / "results.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


_OK = {"title": "T", "status": "ok", "wall_time_s": 1.0, "seed": 0, "x64": True, "metrics": {},
       "figures": {}, "summary": "r", "question": "Q?", "claims": [], "verdict": "no claims"}

ROWS = [
    Hostile("Claim: empty statement", _claim(statement=""), TypeError, r"`statement`"),
    Hostile("Claim: statement not a str", _claim(statement=3), TypeError, r"`statement`"),
    Hostile("Claim: no source", _claim(source=None), TypeError, r"`source`"),
    Hostile("Claim: blank criterion", _claim(criterion="  "), TypeError, r"`criterion`"),
    Hostile("Claim: unknown verdict", _claim(verdict="ok"), ValueError, r"`verdict`"),
    Hostile("Claim: partly without why", _claim(verdict="partly"), ValueError, r"`why`"),
    Hostile("Claim: not reproduced, blank why", _claim(verdict="not reproduced", why=" "), ValueError,
            r"`why`"),
    Hostile("Claim: why not a str", _claim(why=1.0), TypeError, r"`why`"),
    Hostile("Claim: measured not JSON data", _claim(measured=object()), TypeError, r"`measured`"),
    Hostile("Claim: measured dict with int keys", _claim(measured={1: 2.0}), TypeError, r"`measured`"),
    Hostile("Claim.check: no case", lambda: Claim.check("s", SRC, "c", 1.0, []), ValueError,
            r"`passed`"),
    Hostile("Claim.check: failing without why", lambda: Claim.check("s", SRC, "c", 1.0, False),
            ValueError, r"`why`"),
    Hostile("ExperimentResult: one claim, not a sequence",
            lambda: ExperimentResult("e", "T", "s", claims=Claim("s", SRC, "c", 1, "reproduced")),
            TypeError, r"`claims`"),
    Hostile("ExperimentResult: a claim that is a dict",
            lambda: ExperimentResult("e", "T", "s", claims=({"statement": "s"},)), TypeError,
            r"`claims\[0\]`"),
    Hostile("ExperimentResult: question not a str",
            lambda: ExperimentResult("e", "T", "s", question=["Q?"]), TypeError, r"`question`"),
    Hostile("check_results: not JSON", lambda: check_results(_results_file("{"), experiments=[]),
            ValueError, r"not valid JSON"),
    Hostile("check_results: experiment missing",
            lambda: check_results(_results_file({"provenance": {}, "experiments": {}, "verdicts": {}}),
                                  experiments=["lyapunov"]), ValueError, r"no record of lyapunov"),
    Hostile("check_results: no verdicts object",
            lambda: check_results(_results_file({"provenance": {}, "experiments": {"e": _OK}}),
                                  experiments=["e"]), ValueError, r"'verdicts'"),
    Hostile("check_results: experiment without claims",
            lambda: check_results(_results_file({"provenance": {}, "experiments": {"e": _OK},
                                                 "verdicts": {"e": "no claims"}}), experiments=["e"]),
            ValueError, r"e checks no claim"),
    Hostile("check_results: experiment without question",
            lambda: check_results(_results_file({"provenance": {}, "verdicts": {"e": "no claims"},
                                                 "experiments": {"e": {**_OK, "question": ""}}}),
                                  experiments=["e"]),
            ValueError, r"e states no question"),
    Hostile("check_results: claim with a bad verdict",
            lambda: check_results(_results_file({"provenance": {}, "verdicts": {"e": "reproduced"},
                                                 "experiments": {"e": {**_OK, "claims": [
                                                     {"statement": "s", "source": SRC, "criterion": "c",
                                                      "measured": 1, "verdict": "yes"}]}}}),
                                  experiments=["e"]), ValueError, r"invalid claim: `verdict`"),
]


@pytest.mark.parametrize("row", ROWS, ids=hostile_ids(ROWS))
def test_hostile(row):
    run_hostile(row)
