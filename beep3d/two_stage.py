"""The two-stage baseline BEEP3D argues against: a labeler trained first, its labels then fixed.

Box-supervised methods before BEEP3D (Box2Mask, GaPro, BSNet; DESIGN section 1) resolve the points
inside several boxes with a separately trained pseudo-labeler, i.e. a second training stage.
BEEP3D's claim is that its EMA teacher does that job inside one training run. The `two_stage`
mode rebuilds the two-stage design in this code, everything else equal, so that the two can be
compared on the same labels' quality, val AP and wall time:

1. The labeler: the same model trained from boxes only, on the box prior's labels (box prior,
   smallest box, superpoint vote: `prior_targets`, what `beep3d` trains on with its teacher's
   pseudo-masks off), for `labeler_epochs`, no teacher, no consistency losses
   (pipeline/training.py runs it as the internal mode `two_stage_labeler`).
2. Labelling (`label_scenes`): the frozen labeler labels every training scene once, un-augmented,
   the way `beep3d`'s EMA teacher does with pseudo-masks on: the box prior narrows each point's
   boxes, the labeler's box queries resolve the points still ambiguous, then the superpoint vote
   (`teacher_view` + `pseudo_assignment`, switches from `train.beep3d`). A label names a box by
   its id, so that it survives the training crop, which drops boxes and renumbers the rest.
3. The student: a fresh model trained from scratch on the fixed labels (`fixed_label_targets`);
   the dataset crops them with the points into supervision["fixed_box_id"].

Ground truth never enters: the labeler learns from boxes, the labels come from boxes and the
labeler, and every dataset of the three steps is built without ground truth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from beep3d.data.dataset import FIXED_LABELS
from beep3d.loss.criterion import Criterion
from beep3d.loss.targets import assignment_of_box_ids, box_ids_of_assignment, box_targets
from beep3d.model.model import BoxInstanceModel
from beep3d.student_teacher import Beep3dConfig, pseudo_assignment, teacher_view


@dataclass(frozen=True)
class TwoStageConfig:
    """params.yaml `train.two_stage` (read in two_stage mode only)."""

    labeler_epochs: int  # stage 1: epochs of the labeler (the student then trains train.epochs)

    def __post_init__(self) -> None:
        if self.labeler_epochs < 1:
            raise ValueError(f"labeler_epochs must be >= 1, got {self.labeler_epochs}")


@torch.no_grad()
def label_scenes(
    labeler: BoxInstanceModel, batches: Iterable[dict[str, Any]], cfg: Beep3dConfig, criterion: Criterion
) -> dict[str, torch.Tensor]:
    """scene id -> (P,) int32 CPU labels: the box id of every point's box, BACKGROUND (-1) where no
    object box takes it.

    batches: eval-mode batches (every original point, in file order; no ground truth needed) on
    the labeler's device. The labeler plays the EMA teacher's part of `beep3d` with pseudo-masks on.
    """
    labels: dict[str, torch.Tensor] = {}
    for batch in batches:
        view = teacher_view(labeler, batch, cfg.center_queries, criterion)
        for b, sup in enumerate(batch["supervision"]):
            assigned = pseudo_assignment(sup, view.box_prob[b], cfg)
            labels[batch["scene_ids"][b]] = (
                box_ids_of_assignment(assigned, sup["box_id"]).to(torch.int32).cpu()
            )
    return labels


def fixed_label_assignment(supervision: dict[str, torch.Tensor]) -> torch.Tensor:
    """(P,) assignment (box index / BACKGROUND / UNKNOWN) of a scene's fixed labels."""
    return assignment_of_box_ids(supervision[FIXED_LABELS].to(torch.int64), supervision["box_id"])


def fixed_label_targets(supervision: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's targets: the fixed labels as box targets (rows: the object boxes in box order)."""
    return box_targets(fixed_label_assignment(supervision), supervision)
