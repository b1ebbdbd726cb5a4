"""The value every experiment returns, and the conversion of its metrics to JSON."""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def to_jsonable(value: Any, name: str = "metrics") -> Any:
    """Convert `value` to plain JSON data (dict, list, str, int, float, bool, None).

    NumPy and JAX scalars and arrays become numbers and (nested) lists; non-finite floats become
    the strings `"nan"`, `"inf"`, `"-inf"` (strict JSON has no NaN). Anything else is a
    `TypeError` naming the offending entry (`name`).
    """
    if value is None or isinstance(value, bool | str):
        return value
    import numpy as np  # here, not at module level: `jaxdyn list` and `--help` stay light

    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"`{name}` keys must be strings, got {k!r}.")
            out[k] = to_jsonable(v, f"{name}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "__array__") and hasattr(value, "dtype"):  # np.ndarray, jax.Array
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return to_jsonable(arr.tolist() if arr.ndim else arr.item(), name)
    raise TypeError(
        f"`{name}` must hold numbers, strings, bools, lists or dicts, got {type(value).__name__}."
    )


VERDICTS = ("reproduced", "partly", "not reproduced")
"""The verdicts a [`Claim`][jaxdyn.experiments.Claim] can have, best first."""


@dataclasses.dataclass(frozen=True)
class Claim:
    r"""One checkable statement of an experiment, declared with its criterion before the numbers.

    **Arguments:**

    - `statement`: the claim in words (Markdown, `$...$` maths), e.g. "GD settles only where
      $a^2 + 1/a^2 \le 2/\eta$".
    - `source`: where the claim comes from: the mission's paper (Chemnitz, Engel, Kuehn, Kuntz
      2025) and its section, or the cited theorem or paper.
    - `criterion`: the quantitative test, stated so that a reader could apply it to `measured`
      (thresholds and tolerances included), e.g. "every converged run: $\lambda \le 2/\eta$
      (relative slack $10^{-9}$)".
    - `measured`: what was measured, a number, a string (units and conditions included) or a
      list/dict of numbers (converted to plain JSON data like `metrics`).
    - `verdict`: `"reproduced"` (the criterion holds), `"partly"` (it holds for some of the cases
      it covers), `"not reproduced"` (it fails).
    - `why`: one sentence on why, required unless the verdict is `"reproduced"`.

    A criterion is never loosened to turn a verdict green: a claim that fails is reported as
    failing. [`Claim.check`][jaxdyn.experiments.Claim.check] derives the verdict from booleans.
    """

    statement: str
    source: str
    criterion: str
    measured: Any
    verdict: str
    why: str | None = None

    def __post_init__(self):
        for field in ("statement", "source", "criterion"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f"`{field}` must be a non-empty str, got {value!r}.")
        if self.verdict not in VERDICTS:
            raise ValueError(f"`verdict` must be one of {VERDICTS}, got {self.verdict!r}.")
        if self.why is not None and not isinstance(self.why, str):
            raise TypeError(f"`why` must be a str or None, got {type(self.why).__name__}.")
        if self.verdict != "reproduced" and not (self.why or "").strip():
            raise ValueError(f"`why` is required when the verdict is {self.verdict!r} (one sentence "
                             "on why the claim did not hold).")
        object.__setattr__(self, "measured", to_jsonable(self.measured, "measured"))

    @classmethod
    def check(cls, statement: str, source: str, criterion: str, measured: Any,
              passed: bool | Sequence[bool], why: str | None = None) -> "Claim":
        """A claim whose verdict follows from `passed`: one bool (reproduced / not reproduced) or
        one bool per case the criterion covers (all: reproduced, some: partly, none: not
        reproduced). `why` is needed only when not every case passed (ignored otherwise)."""
        cases = [bool(passed)] if isinstance(passed, bool | int) or not isinstance(
            passed, Sequence) else [bool(p) for p in passed]
        if not cases:
            raise ValueError("`passed` must hold at least one case.")
        verdict = ("reproduced" if all(cases) else "not reproduced" if not any(cases)
                   else "partly")
        return cls(statement, source, criterion, measured, verdict,
                   None if verdict == "reproduced" else why)

    def to_json(self) -> dict[str, Any]:
        return {"statement": self.statement, "source": self.source, "criterion": self.criterion,
                "measured": self.measured, "verdict": self.verdict, "why": self.why}

    @classmethod
    def from_json(cls, data: Any) -> "Claim":
        if not isinstance(data, Mapping):
            raise ValueError(f"a claim must be an object, got {type(data).__name__}")
        try:
            return cls(data.get("statement"), data.get("source"), data.get("criterion"),
                       data.get("measured"), data.get("verdict"), data.get("why"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid claim: {err}") from None


def overall_verdict(claims: Sequence[Claim]) -> str:
    """An experiment's verdict from its claims: `"reproduced"` when every claim is,
    `"not reproduced"` when none is even partly, `"partly"` otherwise, `"no claims"` for none."""
    if not claims:
        return "no claims"
    verdicts = {c.verdict for c in claims}
    if verdicts == {"reproduced"}:
        return "reproduced"
    if verdicts == {"not reproduced"}:
        return "not reproduced"
    return "partly"


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    """What an experiment's `run(*, quick, seed, progress)` returns.

    **Arguments:**

    - `name`: the experiment's registry name (used in file names).
    - `title`: a one-line title for the report.
    - `summary`: Markdown text: the setup and the reading (what the numbers show).
    - `metrics`: a dict of numbers, strings, bools and (nested) lists/dicts of them; NumPy and JAX
      scalars/arrays are converted to plain JSON data on construction ([`to_jsonable`][]).
    - `figures`: a dict from a short name (letters, digits, `_`, `-`) to a matplotlib `Figure`;
      each is written to `<out>/<name>_<figure>.png` and embedded in the report.
    - `question`: the question the experiment answers, one or two sentences (Markdown).
    - `claims`: the [`Claim`][jaxdyn.experiments.Claim]s it checks, each with its source,
      criterion, measured value and verdict; the report opens with them.
    """

    name: str
    title: str
    summary: str
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    question: str = ""
    claims: tuple[Claim, ...] = ()

    @property
    def verdict(self) -> str:
        """[`overall_verdict`][jaxdyn.experiments.overall_verdict] of the claims."""
        return overall_verdict(self.claims)

    def __post_init__(self):
        for field in ("name", "title", "summary"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"`{field}` must be a str, got {type(getattr(self, field)).__name__}.")
        if not _FIGURE_NAME.match(self.name):
            raise ValueError(f"`name` must be letters, digits, '_' or '-', got {self.name!r}.")
        if not isinstance(self.metrics, Mapping):
            raise TypeError(f"`metrics` must be a dict, got {type(self.metrics).__name__}.")
        object.__setattr__(self, "metrics", to_jsonable(self.metrics))
        if not isinstance(self.figures, Mapping):
            raise TypeError(f"`figures` must be a dict, got {type(self.figures).__name__}.")
        for key, fig in self.figures.items():
            if not isinstance(key, str) or not _FIGURE_NAME.match(key):
                raise ValueError(
                    f"`figures` keys must be letters, digits, '_' or '-' (used in file names), got "
                    f"{key!r}."
                )
            if not hasattr(fig, "savefig"):
                raise TypeError(
                    f"`figures[{key!r}]` must be a matplotlib Figure, got {type(fig).__name__}."
                )
        object.__setattr__(self, "figures", dict(self.figures))
        if not isinstance(self.question, str):
            raise TypeError(f"`question` must be a str, got {type(self.question).__name__}.")
        if isinstance(self.claims, Claim) or not isinstance(self.claims, Sequence):
            raise TypeError("`claims` must be a sequence of `Claim`s.")
        for i, claim in enumerate(self.claims):
            if not isinstance(claim, Claim):
                raise TypeError(f"`claims[{i}]` must be a `Claim`, got {type(claim).__name__}.")
        object.__setattr__(self, "claims", tuple(self.claims))
