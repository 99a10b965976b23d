"""Losses: Hungarian matching and the per-layer set-prediction criterion."""

from beep3d.loss.criterion import COMPONENTS, Criterion, CriterionConfig, LossWeights, assert_finite
from beep3d.loss.matcher import HungarianMatcher, MatcherConfig

__all__ = [
    "COMPONENTS",
    "Criterion",
    "CriterionConfig",
    "HungarianMatcher",
    "LossWeights",
    "MatcherConfig",
    "assert_finite",
]
