"""Reproductions of results: one module per experiment, run by `jaxdyn reproduce`."""

from ._registry import EXPERIMENTS as EXPERIMENTS, Experiment as Experiment
from ._report import (
    ExperimentRecord as ExperimentRecord,
    check_results as check_results,
    experiment_config as experiment_config,
    format_verdicts as format_verdicts,
    provenance as provenance,
    read_results as read_results,
    save_figures as save_figures,
    source_fingerprint as source_fingerprint,
    write_report as write_report,
)
from ._result import (
    VERDICTS as VERDICTS,
    Claim as Claim,
    ExperimentResult as ExperimentResult,
    overall_verdict as overall_verdict,
    to_jsonable as to_jsonable,
)
