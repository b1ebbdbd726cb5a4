"""Reproductions of results: one module per experiment, run by `jaxdyn reproduce`."""

from ._registry import EXPERIMENTS as EXPERIMENTS, Experiment as Experiment
from ._report import (
    ExperimentRecord as ExperimentRecord,
    experiment_config as experiment_config,
    provenance as provenance,
    read_results as read_results,
    save_figures as save_figures,
    source_fingerprint as source_fingerprint,
    write_report as write_report,
)
from ._result import ExperimentResult as ExperimentResult, to_jsonable as to_jsonable
