"""Pseudo-mask quality on training scenes: how close do the resolved box labels come to the truth?

Monitoring only: the ground truth read here comes from a separate evaluation-mode dataset of the
training scenes and never reaches a loss. For every object box k (its box id is the instance id
it was extracted from) the per-point assignment gives a predicted mask (points assigned to k) and
the ground truth a true mask (points of instance k). We report the mean instance IoU

    all points        IoU over every point of the scene;
    ambiguous points  IoU restricted to the ambiguous points (inside an object box and at least
                      one other box), over instances that have any ambiguous point in either mask:
                      the part of the mask that box supervision leaves open,

for each resolver, like compared with like:

    teacher        the teacher as configured (box prior, teacher, superpoint vote if on);
    teacher_alone  the same without the superpoint vote;
    box_prior      the box prior with the smallest box and the vote instead of the teacher (what
                   training uses during the warm-up, and what the teacher has to beat);
    smallest_box   the classic smallest-box rule alone (wall/floor boxes competing);
    box_heuristic  the classic rule with the vote: the box_heuristic baseline;
    two_stage      the fixed labels two_stage's student trains on (the labeler's, made once before
                   the student's training), where the batches carry them (beep3d/two_stage.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from beep3d.data.dataset import FIXED_LABELS
from beep3d.loss.criterion import Criterion
from beep3d.loss.targets import (
    box_heuristic_assignment,
    box_volume,
    point_assignment_from_boxes,
    smallest_box_resolver,
    superpoint_majority_vote,
)
from beep3d.model.model import BoxInstanceModel
from beep3d.student_teacher import Beep3dConfig, TeacherView, object_boxes, pseudo_assignment, teacher_view
from beep3d.two_stage import fixed_label_assignment

RESOLVERS = ("teacher", "teacher_alone", "box_prior", "smallest_box", "box_heuristic", "two_stage")


def instance_ious(
    assigned: torch.Tensor,
    instance: torch.Tensor,
    supervision: dict[str, torch.Tensor],
    ambiguous: torch.Tensor,
) -> tuple[list[float], list[float]]:
    """(IoU over all points, IoU over ambiguous points) per object box of one scene.

    assigned: (P,) box index / BACKGROUND; instance: (P,) ground-truth instance ids; ambiguous:
    (P,) bool. The ambiguous list skips boxes with no ambiguous point in either mask.
    """
    all_ious, amb_ious = [], []
    for k in object_boxes(supervision).tolist():
        pred = assigned == k
        gt = instance == int(supervision["box_id"][k])
        union = int((pred | gt).sum())
        if union:
            all_ious.append(int((pred & gt).sum()) / union)
        union_amb = int(((pred | gt) & ambiguous).sum())
        if union_amb:
            amb_ious.append(int((pred & gt & ambiguous).sum()) / union_amb)
    return all_ious, amb_ious


@torch.no_grad()
def pseudo_mask_quality(
    batches: Iterable[dict[str, Any]],
    teacher: BoxInstanceModel | None,
    cfg: Beep3dConfig,
    criterion: Criterion,
) -> dict[str, float]:
    """Mean instance IoU of each resolver over the scenes of `batches` (eval-mode batches with
    ground truth, already on the teacher's device). Keys "<resolver>_iou_all" and
    "<resolver>_iou_ambiguous"; "teacher_*" only when a teacher is given, "two_stage_*" only when
    the batches carry fixed labels."""
    ious: dict[str, list[float]] = {f"{r}_iou_{w}": [] for r in RESOLVERS for w in ("all", "ambiguous")}
    for batch in batches:
        view: TeacherView | None = None
        if teacher is not None:
            view = teacher_view(teacher, batch, cfg.center_queries, criterion)
        for b, (sup, gt) in enumerate(zip(batch["supervision"], batch["ground_truth"], strict=True)):
            instance = gt["instance"].to(torch.int64)
            is_bg = sup["box_is_background"]
            known, ambiguous = point_assignment_from_boxes(sup["point_in_box"], is_bg)
            smallest = smallest_box_resolver(
                sup["point_in_box"], box_volume(sup["box_min"], sup["box_max"]), is_bg, known
            )
            resolved = {
                "smallest_box": smallest,
                "box_heuristic": superpoint_majority_vote(smallest, sup["superpoint"]),
                "box_prior": box_heuristic_assignment(sup, cfg.prior_containment, cfg.prior_objects_first),
            }
            if view is not None:
                alone = pseudo_assignment(sup, view.box_prob[b], cfg, vote=False)
                resolved["teacher_alone"] = alone
                resolved["teacher"] = (
                    superpoint_majority_vote(alone, sup["superpoint"]) if cfg.superpoint_vote else alone
                )
            if FIXED_LABELS in sup:
                resolved["two_stage"] = fixed_label_assignment(sup)
            for name, assigned in resolved.items():
                all_ious, amb_ious = instance_ious(assigned, instance, sup, ambiguous)
                ious[f"{name}_iou_all"] += all_ious
                ious[f"{name}_iou_ambiguous"] += amb_ious
    return {k: float(np.mean(v)) for k, v in ious.items() if v}
