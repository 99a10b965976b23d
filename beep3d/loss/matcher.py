"""Hungarian matching between a layer's queries and a scene's target instances.

Targets, one dict per scene, at superpoint level:
    labels     (T,) int64       class index in 0..C-1
    masks      (T, S_b) float32 in [0, 1]
    mask_valid (S_b,) bool      superpoints that may enter the mask terms (others are ignored)
    centers    (T, 3) float32   metres
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MatcherConfig:
    """Weights of the matching cost terms (DESIGN: 0.5 class + 1 BCE + 1 dice + 0.5 centre L1)."""

    cost_class: float = 0.5  # x (-probability of the target's class)
    cost_bce: float = 1.0  # x mask BCE averaged over the valid superpoints
    cost_dice: float = 1.0  # x mask dice loss over the valid superpoints
    cost_center: float = 0.5  # x centre L1 distance, averaged over the 3 axes, in metres


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every prediction against every target: (Q, S), (T, S) -> (Q, T).

    BCE(x, t) = t softplus(-x) + (1 - t) softplus(x), so the all-pairs sum is two matmuls.
    """
    n = max(logits.shape[1], 1)
    return (F.softplus(-logits) @ targets.T + F.softplus(logits) @ (1 - targets).T) / n


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss 1 - (2 p.t + 1) / (sum p + sum t + 1) for every pair: (Q, S), (T, S) -> (Q, T)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher:
    """One-to-one assignment of queries to targets minimising the weighted cost, per scene.

    Cost (Q, T) = cost_class * (-p_q(label_t)) + cost_bce * BCE(mask_q, mask_t)
                + cost_dice * dice(mask_q, mask_t) + cost_center * L1(center_q, center_t) / 3,
    with the mask terms restricted to the scene's valid superpoints.
    """

    def __init__(self, cost_class: float, cost_bce: float, cost_dice: float, cost_center: float):
        self.cost_class = cost_class
        self.cost_bce = cost_bce
        self.cost_dice = cost_dice
        self.cost_center = cost_center

    @classmethod
    def from_config(cls, cfg: MatcherConfig) -> HungarianMatcher:
        return cls(cfg.cost_class, cfg.cost_bce, cfg.cost_dice, cfg.cost_center)

    @torch.no_grad()
    def cost_matrix(self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
        """pred: class_logits (Q, C + 1), mask_logits (Q, S_b), centers (Q, 3) of one scene -> (Q, T)."""
        valid = target["mask_valid"]
        logits = pred["mask_logits"][:, valid].float()  # (Q, S_valid)
        masks = target["masks"][:, valid].float()  # (T, S_valid)
        probs = pred["class_logits"].float().softmax(-1)  # (Q, C + 1)
        cost = -self.cost_class * probs[:, target["labels"]]
        cost = cost + self.cost_bce * pairwise_bce(logits, masks)
        cost = cost + self.cost_dice * pairwise_dice(logits, masks)
        l1 = torch.cdist(pred["centers"].float(), target["centers"].float(), p=1) / 3
        return cost + self.cost_center * l1

    @torch.no_grad()
    def __call__(
        self, outputs: dict[str, Any], targets: list[dict[str, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match each scene of one decoder layer's predictions.

        Args:
            outputs: per-scene lists `class_logits` [(Q_b, C + 1)], `mask_logits` [(Q_b, S_b)],
                `centers` [(Q_b, 3)] (one layer of the model output).
            targets: one dict per scene (module docstring).
        Returns: one (query_idx, target_idx) pair of int64 CPU tensors per scene, each of length
            min(Q_b, T_b); query_idx is increasing. T_b = 0 gives two empty tensors.
        """
        if len(outputs["class_logits"]) != len(targets):
            raise ValueError(f"{len(outputs['class_logits'])} scenes predicted but {len(targets)} targets")
        indices = []
        for b, target in enumerate(targets):
            pred = {k: outputs[k][b] for k in ("class_logits", "mask_logits", "centers")}
            _check_target(target, pred["mask_logits"].shape[1], b)
            if len(target["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(pred, target).cpu()
            if not bool(torch.isfinite(cost).all()):
                raise FloatingPointError(
                    f"scene {b}: matching cost has non-finite entries; the predictions "
                    "are NaN/inf (diverged training or a bad input)"
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices


def _check_target(target: dict[str, torch.Tensor], n_superpoints: int, scene: int) -> None:
    """Shapes must agree with the predictions of the same scene."""
    t = len(target["labels"])
    problems = []
    if target["masks"].shape != (t, n_superpoints):
        problems.append(f"masks {tuple(target['masks'].shape)} != ({t}, {n_superpoints})")
    if target["mask_valid"].shape != (n_superpoints,) or target["mask_valid"].dtype != torch.bool:
        problems.append(
            f"mask_valid must be ({n_superpoints},) bool, got "
            f"{tuple(target['mask_valid'].shape)} {target['mask_valid'].dtype}"
        )
    if target["centers"].shape != (t, 3):
        problems.append(f"centers {tuple(target['centers'].shape)} != ({t}, 3)")
    if problems:
        raise ValueError(f"scene {scene}: target does not fit the prediction: {'; '.join(problems)}")
