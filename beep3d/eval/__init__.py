"""Evaluation: the ScanNet instance-segmentation AP and the benchmark submission format."""

from beep3d.eval.ap import (
    MAP_THRESHOLDS,
    MIN_REGION_SIZE,
    THRESHOLDS,
    Evaluator,
    SceneGT,
    ScenePred,
    evaluate,
    to_jsonable,
)
from beep3d.eval.submission import read_submission, write_submission

__all__ = [
    "MAP_THRESHOLDS",
    "MIN_REGION_SIZE",
    "THRESHOLDS",
    "Evaluator",
    "SceneGT",
    "ScenePred",
    "evaluate",
    "read_submission",
    "to_jsonable",
    "write_submission",
]
