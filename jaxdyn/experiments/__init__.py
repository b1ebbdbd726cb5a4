"""Reproductions of results: one module per experiment, run by `jaxdyn reproduce`."""

from ._registry import EXPERIMENTS as EXPERIMENTS, Experiment as Experiment
from ._report import (
    ExperimentRecord as ExperimentRecord,
    provenance as provenance,
    save_figures as save_figures,
    write_report as write_report,
)
from ._result import ExperimentResult as ExperimentResult, to_jsonable as to_jsonable
