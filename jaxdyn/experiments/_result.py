"""The value every experiment returns, and the conversion of its metrics to JSON."""

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def to_jsonable(value: Any, name: str = "metrics") -> Any:
    """Convert `value` to plain JSON data (dict, list, str, int, float, bool, None).

    NumPy and JAX scalars and arrays become numbers and (nested) lists; non-finite floats become
    the strings `"nan"`, `"inf"`, `"-inf"` (strict JSON has no NaN). Anything else is a
    `TypeError` naming the offending entry (`name`).
    """
    if value is None or isinstance(value, bool | str):
        return value
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


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    """What an experiment's `run(*, quick, seed, progress)` returns.

    **Arguments:**

    - `name`: the experiment's registry name (used in file names).
    - `title`: a one-line title for the report.
    - `summary`: Markdown text: what was done and what the numbers show.
    - `metrics`: a dict of numbers, strings, bools and (nested) lists/dicts of them; NumPy and JAX
      scalars/arrays are converted to plain JSON data on construction ([`to_jsonable`][]).
    - `figures`: a dict from a short name (letters, digits, `_`, `-`) to a matplotlib `Figure`;
      each is written to `<out>/<name>_<figure>.png` and embedded in the report.
    """

    name: str
    title: str
    summary: str
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

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
