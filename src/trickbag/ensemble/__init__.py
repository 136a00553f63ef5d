"""Ensembles of independently trained runs and what they buy: accuracy, NLL and calibration
(ECE with reliability diagrams), with temperature scaling on the validation split."""

from trickbag.calibration import expected_calibration_error
from trickbag.ensemble.members import Member, load_member
from trickbag.ensemble.predict import (
    COMBINES,
    EnsemblePrediction,
    bootstrap_interval,
    combine_logits,
    evaluate,
    fit_temperatures,
    member_logits,
    predict,
)
from trickbag.ensemble.report import reliability_diagram, run, table_text

__all__ = [
    "COMBINES",
    "EnsemblePrediction",
    "Member",
    "bootstrap_interval",
    "combine_logits",
    "evaluate",
    "expected_calibration_error",
    "fit_temperatures",
    "load_member",
    "member_logits",
    "predict",
    "reliability_diagram",
    "run",
    "table_text",
]
