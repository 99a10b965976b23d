"""Set-prediction losses: one function scores one decoder layer; every layer goes through it.

Per layer, after Hungarian matching (targets as in `beep3d.loss.matcher`):
    cls     cross-entropy over all queries; unmatched queries target "no object" (class C), whose
            weight is no_object_weight; weighted mean over queries of the whole batch
    bce     mask BCE over the scene's valid superpoints, per matched pair, mean over pairs
    dice    mask dice loss over the valid superpoints, mean over matched pairs
    center  centre L1 in metres, mean over the 3 axes, mean over matched pairs
    size    box size L1 in metres (the target's box), mean over the 3 axes, mean over matched pairs
    score   BCE between the score logit and the IoU (a soft target in [0, 1], no gradient) of
            the predicted binary mask (sigmoid > 0.5) with the binarised target (> 0.5), over the
            valid superpoints; BCE rather than L1 so the logit's sigmoid regresses the IoU
Pair means run over all matched pairs of the batch (at least 1), so a scene with more instances
weighs more, and a batch without targets gives zeros with a graph for the mask terms.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from beep3d.distributed import batch_mean_denominator, is_across_ranks
from beep3d.loss.matcher import HungarianMatcher, MatcherConfig

COMPONENTS = ("cls", "bce", "dice", "center", "size", "score")


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term in the total (the same on every decoder layer)."""

    cls: float = 0.5  # classification cross-entropy
    bce: float = 1.0  # mask binary cross-entropy
    dice: float = 1.0  # mask dice loss
    center: float = 0.5  # centre L1 (metres)
    size: float = 0.5  # box size L1 (metres)
    score: float = 0.5  # mask-quality (IoU) regression


# Every loss term has exactly one weight (a new term without a weight fails at import).
assert tuple(f.name for f in fields(LossWeights)) == COMPONENTS


@dataclass(frozen=True)
class CriterionConfig:
    weights: LossWeights  # loss term weights
    matcher: MatcherConfig  # matching cost weights
    no_object_weight: float = 0.1  # class weight of "no object" in the cross-entropy (objects: 1)


class Criterion:
    """Matches every decoder layer to the targets and sums the weighted losses of all layers."""

    def __init__(self, weights: LossWeights, no_object_weight: float, matcher: HungarianMatcher):
        self.weights = weights
        self.no_object_weight = no_object_weight
        self.matcher = matcher

    @classmethod
    def from_config(cls, cfg: CriterionConfig) -> Criterion:
        return cls(cfg.weights, cfg.no_object_weight, HungarianMatcher.from_config(cfg.matcher))

    def layer_losses(
        self,
        layer: dict[str, Any],
        targets: list[dict[str, torch.Tensor]],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms (COMPONENTS) of one decoder layer, each a scalar tensor.

        layer: per-scene lists class_logits [(Q_b, C + 1)], mask_logits [(Q_b, S_b)],
            centers [(Q_b, 3)], sizes [(Q_b, 3)], score_logits [(Q_b,)]; indices: the matcher's output for it.
        """
        cls_logits, cls_targets = [], []
        bce, dice, center, size, score = [], [], [], [], []
        for b, (target, (q_idx, t_idx)) in enumerate(zip(targets, indices, strict=True)):
            logits = layer["class_logits"][b]  # (Q, C + 1)
            no_object = logits.shape[1] - 1
            labels = torch.full((len(logits),), no_object, dtype=torch.int64, device=logits.device)
            labels[q_idx.to(logits.device)] = target["labels"][t_idx].to(logits.device)
            cls_logits.append(logits)
            cls_targets.append(labels)

            valid = target["mask_valid"]
            pred = layer["mask_logits"][b][q_idx][:, valid]  # (M, S_valid)
            gt = target["masks"][t_idx][:, valid].to(pred.dtype)  # (M, S_valid)
            bce.append(
                F.binary_cross_entropy_with_logits(pred, gt, reduction="none").mean(1)
                if pred.shape[1]
                else pred.new_zeros(len(pred))
            )
            dice.append(dice_loss(pred, gt))
            center.append((layer["centers"][b][q_idx] - target["centers"][t_idx]).abs().mean(1))
            size.append((layer["sizes"][b][q_idx] - target["sizes"][t_idx]).abs().mean(1))
            score.append(
                F.binary_cross_entropy_with_logits(
                    layer["score_logits"][b][q_idx], mask_iou(pred.detach(), gt), reduction="none"
                )
            )

        num_classes = cls_logits[0].shape[1] - 1
        class_weight = cls_logits[0].new_ones(num_classes + 1)
        class_weight[-1] = self.no_object_weight
        # Batch-wide means: over this process's batch, or over every rank's share of it in a
        # distributed step (beep3d/distributed.py).
        n_pairs = batch_mean_denominator(sum(len(q) for q, _ in indices), minimum=1)
        return {
            "cls": weighted_cross_entropy(torch.cat(cls_logits), torch.cat(cls_targets), class_weight),
            "bce": torch.cat(bce).sum() / n_pairs,
            "dice": torch.cat(dice).sum() / n_pairs,
            "center": torch.cat(center).sum() / n_pairs,
            "size": torch.cat(size).sum() / n_pairs,
            "score": torch.cat(score).sum() / n_pairs,
        }

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_k weights.k * terms[k] over COMPONENTS."""
        return sum(getattr(self.weights, k) * terms[k] for k in COMPONENTS)  # type: ignore[return-value]

    def __call__(
        self,
        outputs: dict[str, Any],
        targets: list[dict[str, torch.Tensor]],
        indices: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        fixed_assignment: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Losses of the last layer and of every aux layer, and their weighted total.

        indices: matches of the LAST layer if the caller already has them (e.g. to reuse them in a
            query consistency loss); aux layers are matched on their own unless fixed_assignment.
        fixed_assignment: `indices` hold for every layer (queries that stand for a known target,
            such as one query per box); no Hungarian matching at all.
        Returns scalar tensors: "cls", "bce", "dice", "center", "score" (last layer, unweighted),
        "aux{i}/<term>" for aux layer i (first decoder layer = aux0), and "total" = the weighted
        sum over all layers. Check torch.isfinite(result["total"]) (or `assert_finite`) before
        stepping: a non-finite total means training must stop.
        """
        if fixed_assignment and indices is None:
            raise ValueError("fixed_assignment needs indices")
        aux_indices = indices if fixed_assignment else None
        layers = [("", outputs, indices)] + [
            (f"aux{i}/", aux, aux_indices) for i, aux in enumerate(outputs["aux"])
        ]
        result: dict[str, torch.Tensor] = {}
        total = None
        for prefix, layer, layer_indices in layers:
            if layer_indices is None:
                layer_indices = self.matcher(layer, targets)
            terms = self.layer_losses(layer, targets, layer_indices)
            result.update({prefix + k: v for k, v in terms.items()})
            layer_total = self.weighted_total(terms)
            total = layer_total if total is None else total + layer_total
        result["total"] = total
        return result


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy, the weighted mean over the batch's queries: (Q, C+1), (Q,) -> ()."""
    if not is_across_ranks():
        return F.cross_entropy(logits, labels, weight=weight)
    total = F.cross_entropy(logits, labels, weight=weight, reduction="sum")
    return total / batch_mean_denominator(weight[labels].sum())


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - (2 p.t + 1) / (sum p + sum t + 1) per row: (M, S), (M, S) -> (M,)."""
    probs = logits.sigmoid()
    return 1 - (2 * (probs * targets).sum(1) + 1) / (probs.sum(1) + targets.sum(1) + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with (targets > 0.5) per row: (M, S), (M, S) -> (M,); 0 when both are empty."""
    pred = logits > 0
    gt = targets > 0.5
    inter = (pred & gt).sum(1)
    union = (pred | gt).sum(1)
    return (inter / union.clamp(min=1)).to(logits.dtype)


def assert_finite(losses: dict[str, torch.Tensor], step: int) -> None:
    """Raise FloatingPointError naming the non-finite terms; call outside the loss, once per step."""
    bad = [name for name, value in losses.items() if not bool(torch.isfinite(value).all())]
    if bad:
        raise FloatingPointError(
            f"step {step}: non-finite loss terms {bad} (total = {losses['total']}); stopping"
        )
