"""BEEP3D's box-supervised training step: the EMA teacher's pseudo-masks and the student's losses.

Per batch (DESIGN section 1):
1. Point split from the boxes, narrowed by the box prior (*ours*, `prior_boxes`): an object box
   stays a candidate for a point only if it holds `prior_containment` of the point's superpoint
   (annotators label whole segments, so a segment that sticks out of a box is not that box's),
   and with `prior_objects_first` a point still inside an object box is not given to a wall/floor
   box. Then points in exactly one object box take it, points in no object box are background,
   points left with >= 2 boxes are ambiguous (`point_assignment_from_boxes`).
2. Teacher view (no gradient, eval mode): with instance centre-based query refinement, one query
   per object box, its reference point at the box centre and its content pooled from the
   superpoint features nearest to that centre (or, with `model.box_query_inside`, from the
   superpoints inside the box, attention and mask restricted to them); otherwise the teacher's
   learned queries, matched to the boxes by the Hungarian matcher on the unambiguous points.
   Either way each object box gets a row of mask probabilities rho over the scene's superpoints.
3. Pseudo-masks: each ambiguous point goes to the candidate object box whose row scores it
   highest; a point whose best score is below `background_threshold` and that lies in a wall/floor
   box becomes background (`teacher_resolver`; only where objects-first left a wall/floor box);
   with `superpoint_vote`, each superpoint then takes the majority of its points (as the
   box_heuristic baseline does). During the warm-up (the first `pseudo_warmup_steps` steps) the
   teacher is not trusted and the box prior's rule (prior, smallest box, superpoint vote) resolves
   the ambiguous points instead; with the prior off that is the box_heuristic baseline.
4. Student losses (`student_losses`, every mode): the set-prediction criterion on the learned
   queries; the box-query loss (*ours*, weight `train.box_query_weight`): one query per target at
   its box's centre, decoded by the student in a separate pass and supervised one to one with
   that target. It is what trains the decoder to answer a query placed at an instance centre,
   which the teacher inherits through the EMA, and being a student-side aid that needs only boxes
   it runs in every mode, so `full` stays a fair upper bound. In beep3d mode, after the warm-up,
   the query and masked feature consistency losses (`beep3d.loss.consistency`).
5. Student view (*ours*, `student_color_mask`, off by default): on the teacher's steps the student
   may see a masked copy of the batch, the colours of a random fraction of superpoints zeroed,
   while the teacher sees it whole (`masked_student_batch`). DESIGN leaves the student's input open
   ("may see a masked/augmented input"); with the same view for both, the consistency losses tie
   the student to its own lagged copy. `student_color_mask_losses` says which losses read the
   masked view: "all" (one student pass on it), or "consistency" (the supervised losses on the
   whole batch, the query and masked feature consistency losses from a second student pass on the
   masked copy: the view only asks the student to match the teacher, as masked consistency does).

Ground truth never enters: everything here reads `batch["supervision"]` (boxes, superpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from beep3d.loss.consistency import masked_feature_consistency_loss, query_consistency_loss
from beep3d.loss.criterion import Criterion
from beep3d.loss.targets import (
    box_heuristic_targets,
    box_prior_boxes,
    box_targets,
    point_assignment_from_boxes,
    superpoint_majority_vote,
    teacher_resolver,
)
from beep3d.model.model import BoxInstanceModel, SceneQueries
from beep3d.precision import FP32, Precision


@dataclass(frozen=True)
class Beep3dConfig:
    """Switches and weights of the BEEP3D parts (params.yaml `train.beep3d`)."""

    pseudo_masks: bool  # teacher resolves ambiguous points; False: the box prior's rule throughout
    pseudo_warmup_steps: int  # steps before the teacher is trusted (the box prior's rule meanwhile)
    prior_containment: (
        float  # *ours*: an object box must hold this fraction of a point's superpoint (0 = off)
    )
    prior_objects_first: bool  # *ours*: a point left inside an object box is not given to a wall/floor box
    background_threshold: (
        float  # below this best object probability, a point in a wall/floor box is background
    )
    center_queries: (
        bool  # teacher pseudo-masks from one query per box at its centre (else matched learned queries)
    )
    superpoint_vote: bool  # after the teacher, each superpoint takes the majority of its points
    query_consistency: bool
    query_consistency_weight: float
    feature_consistency: bool
    feature_consistency_weight: float
    teacher_every: int  # *ours*: the teacher runs on every this-many-th step after the warm-up
    # *Ours*: on the teacher's steps, the fraction of superpoints whose colours the student does not
    # see (the teacher sees them); 0 = one view for both.
    student_color_mask: float
    # *Ours*: which student losses read the masked view: "all" | "consistency" (QC and MFC only,
    # from a second student pass). Read only where student_color_mask > 0.
    student_color_mask_losses: Literal["all", "consistency"]

    def __post_init__(self) -> None:
        if not 0.0 <= self.student_color_mask < 1.0:
            raise ValueError(f"student_color_mask must be in [0, 1) (0 = off), got {self.student_color_mask}")
        if self.teacher_every < 1:
            raise ValueError(f"teacher_every must be >= 1, got {self.teacher_every}")
        if self.teacher_every > 1 and self.pseudo_masks:
            # The pseudo-masks would switch between the teacher's and the box prior's from step to
            # step; that mix was never measured, so it is refused rather than silently defined.
            raise ValueError(
                "teacher_every > 1 needs pseudo_masks: false (the teacher must label every step)"
            )
        if self.pseudo_warmup_steps < 0:
            raise ValueError(f"pseudo_warmup_steps must be >= 0, got {self.pseudo_warmup_steps}")
        if not 0.0 <= self.prior_containment <= 1.0:
            raise ValueError(f"prior_containment must be in [0, 1] (0 = off), got {self.prior_containment}")
        if not 0.0 <= self.background_threshold <= 1.0:
            raise ValueError(f"background_threshold must be in [0, 1], got {self.background_threshold}")
        for name in ("query_consistency_weight", "feature_consistency_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def teacher_needed(self, step: int) -> bool:
        """Whether step `step` runs the teacher at all: nothing reads it during the warm-up, and
        after it only every `teacher_every`-th step does (the consistency losses apply on those
        steps only: the teacher's no-grad pass is what a beep3d step costs over a plain one)."""
        uses = self.pseudo_masks or self.query_consistency or self.feature_consistency
        after_warmup = step - self.pseudo_warmup_steps
        return uses and after_warmup >= 0 and after_warmup % self.teacher_every == 0


@dataclass
class TeacherView:
    """The teacher's predictions aligned with each scene's object boxes (row k = k-th object box).

    box_prob: per scene (T_obj, S_b) mask probabilities; content: per scene (T_obj, d) content
    queries of the last layer; valid: per scene (T_obj,) bool, False for a box no query was
    matched to; sp_feats: per scene (S_b, d) superpoint mask features.
    """

    box_prob: list[torch.Tensor]
    content: list[torch.Tensor]
    valid: list[torch.Tensor]
    sp_feats: list[torch.Tensor]


def object_boxes(supervision: dict[str, torch.Tensor]) -> torch.Tensor:
    """(T_obj,) indices of the object (not wall/floor) boxes, in box order: the target rows."""
    return torch.nonzero(~supervision["box_is_background"]).flatten()


def box_center_queries(batch: dict[str, Any], boxes: list[torch.Tensor] | None = None) -> list[SceneQueries]:
    """One query per box at its centre, with the box's half size (both normalised to the scene
    extent); the model pools its content near the centre or inside the box (`box_query_inside`).

    boxes: per scene the box indices to query, in order; None = every object box.
    """
    queries = []
    for b, sup in enumerate(batch["supervision"]):
        lo, hi = batch["scene_min"][b], batch["scene_max"][b]
        extent = (hi - lo).clamp(min=1e-6)
        index = object_boxes(sup) if boxes is None else boxes[b]
        centre = sup["box_center"][index]  # (T', 3), augmented frame
        half = sup["box_size"][index].reshape(-1, 3) / 2  # (T', 3)
        queries.append(SceneQueries(pos=((centre - lo) / extent).clamp(0.0, 1.0), half_size=half / extent))
    return queries


def known_point_targets(supervision: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Box targets from the unambiguous points only (ambiguous ones left out of mask_valid)."""
    assigned, _ = point_assignment_from_boxes(supervision["point_in_box"], supervision["box_is_background"])
    return box_targets(assigned, supervision)


@torch.no_grad()
def teacher_view(
    teacher: BoxInstanceModel,
    batch: dict[str, Any],
    center_queries: bool,
    criterion: Criterion,
    precision: Precision = FP32,
) -> TeacherView:
    """Run the teacher (eval mode, no gradient) and align its queries with the object boxes.

    precision: the teacher's forward under autocast (`train.amp`); the matching and everything
    after it see fp32 outputs.
    """
    teacher.eval()
    sp_offsets = batch["sp_offsets"].tolist()
    queries = box_center_queries(batch) if center_queries else None
    with precision.autocast():
        out = teacher(batch, queries=queries)
    out = precision.outputs(out)
    if center_queries:
        probs = [m.sigmoid() for m in out["mask_logits"]]
        content = list(out["query_content"])
        valid = [torch.ones(len(c), dtype=torch.bool, device=c.device) for c in content]
    else:
        targets = [known_point_targets(sup) for sup in batch["supervision"]]
        indices = criterion.matcher(out, targets)
        probs, content, valid = [], [], []
        for b, (q_idx, t_idx) in enumerate(indices):
            n_obj, n_sp = len(targets[b]["labels"]), sp_offsets[b + 1] - sp_offsets[b]
            logits = out["mask_logits"][b]
            p = logits.new_zeros(n_obj, n_sp)
            c = logits.new_zeros(n_obj, out["query_content"][b].shape[1])
            v = torch.zeros(n_obj, dtype=torch.bool, device=logits.device)
            p[t_idx] = logits[q_idx].sigmoid()
            c[t_idx] = out["query_content"][b][q_idx]
            v[t_idx] = True
            probs.append(p)
            content.append(c)
            valid.append(v)
    sp_feats = [out["sp_feats"][sp_offsets[b] : sp_offsets[b + 1]] for b in range(batch["batch_size"])]
    return TeacherView(probs, content, valid, sp_feats)


def prior_boxes(supervision: dict[str, torch.Tensor], cfg: Beep3dConfig) -> torch.Tensor:
    """(P, T) bool: the boxes each point may take under the configured box prior."""
    return box_prior_boxes(supervision, cfg.prior_containment, cfg.prior_objects_first)


def prior_targets(supervision: dict[str, torch.Tensor], cfg: Beep3dConfig) -> dict[str, torch.Tensor]:
    """Targets without the teacher: the box prior, then the smallest box and the superpoint vote."""
    return box_heuristic_targets(supervision, cfg.prior_containment, cfg.prior_objects_first)


def pseudo_assignment(
    supervision: dict[str, torch.Tensor], box_prob: torch.Tensor, cfg: Beep3dConfig, vote: bool | None = None
) -> torch.Tensor:
    """(P,) per-point assignment: the box prior narrows each point's boxes, the teacher's
    (T_obj, S) rows resolve the points still ambiguous, then (vote, default `superpoint_vote`)
    each superpoint takes its points' majority."""
    point_in_box, is_bg = prior_boxes(supervision, cfg), supervision["box_is_background"]
    assigned, _ = point_assignment_from_boxes(point_in_box, is_bg)
    full = box_prob.new_zeros(len(is_bg), box_prob.shape[1])  # (T, S), background rows unused
    full[object_boxes(supervision)] = box_prob
    resolved = teacher_resolver(
        point_in_box, is_bg, assigned, full, supervision["superpoint"], cfg.background_threshold
    )
    if cfg.superpoint_vote if vote is None else vote:
        resolved = superpoint_majority_vote(resolved, supervision["superpoint"])
    return resolved


def beep3d_targets(
    batch: dict[str, Any], view: TeacherView | None, cfg: Beep3dConfig
) -> list[dict[str, torch.Tensor]]:
    """Targets of every scene: teacher pseudo-masks when a view is given and pseudo-masks are on,
    else the smallest-box rule + superpoint vote. Rows are the object boxes in box order."""
    if view is None or not cfg.pseudo_masks:
        return [prior_targets(sup, cfg) for sup in batch["supervision"]]
    return [
        box_targets(pseudo_assignment(sup, prob, cfg), sup)
        for sup, prob in zip(batch["supervision"], view.box_prob, strict=True)
    ]


def masked_student_batch(
    batch: dict[str, Any], fraction: float, generator: torch.Generator
) -> dict[str, Any]:
    """The student's view of `batch` (*ours*): the colours of a random `fraction` of the batch's
    superpoints set to 0 (the middle of the [-1, 1] colour range) in every voxel holding one of
    their points; positions, superpoints and supervision stay. A shallow copy: `batch` is not
    changed. Whole superpoints are masked, not single voxels, so that the student must place a
    segment from its shape and its neighbours, as a segment whose owner is ambiguous must be.

    generator: on the batch's device; the draw depends on it alone (resumable, reproducible).
    """
    feats = batch["feats"]
    n_sp = len(batch["sp_xyz"])
    masked_sp = torch.rand(n_sp, generator=generator, device=feats.device) < fraction
    masked_voxel = torch.zeros(len(feats), dtype=torch.bool, device=feats.device)
    masked_voxel[batch["point_voxel"][masked_sp[batch["superpoint"]]]] = True
    student_feats = feats.clone()
    student_feats[masked_voxel, :3] = 0.0  # rgb columns; xyz (columns 3-5) stays
    return {**batch, "feats": student_feats}


def student_view_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The masking draw of one step: a function of (seed, step, rank) only, so a resumed run masks
    the same superpoints as an uninterrupted one and the ranks of a distributed run differ."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + step) * 1_009 + rank)
    return generator


def student_losses(
    student: BoxInstanceModel,
    criterion: Criterion,
    batch: dict[str, Any],
    targets: list[dict[str, torch.Tensor]],
    box_query_weight: float,
    view: TeacherView | None = None,
    cfg: Beep3dConfig | None = None,
    precision: Precision = FP32,
    consistency_batch: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss term of the student (scalar tensors) and their weighted "total".

    targets: per scene, with "box_index" naming each target's box (box queries sit at its centre).
    view / cfg: the teacher's view and the BEEP3D switches, for the consistency losses (beep3d
    mode after the warm-up); None otherwise.
    consistency_batch: another view of `batch` (same voxels and superpoints, e.g. the masked copy)
    from which a second student pass makes the consistency losses; None: they read `batch`'s pass.
    The query consistency pairs come from the matching on `batch`'s pass.
    precision: the student's forward passes under autocast (`train.amp`); their outputs are cast
    to fp32 before the matcher and the losses.
    Keys: the criterion's terms; "boxq/<term>" and "boxq/total" for the box-query loss; "qc" and
    "mfc" for the consistency losses (present when they ran).
    """
    student.train()
    with precision.autocast():
        enc = student.encode(batch)
        out = student.decode(enc)
    out = precision.outputs(out)
    indices = criterion.matcher(out, targets)
    losses = criterion(out, targets, indices)
    total = losses["total"]
    if box_query_weight > 0:
        box_queries = box_center_queries(batch, [t["box_index"] for t in targets])
        with precision.autocast():
            box_out = student.decode(enc, box_queries)
        box_out = precision.outputs(box_out)
        one_to_one = [
            (torch.arange(len(t["labels"]), device=t["labels"].device),) * 2 for t in targets
        ]  # box query k stands for target k
        box_losses = criterion(box_out, targets, one_to_one, fixed_assignment=True)
        losses.update({f"boxq/{k}": v for k, v in box_losses.items() if "/" not in k})
        total = total + box_query_weight * box_losses["total"]
    consistency_out = out  # the pass the consistency losses read
    if (
        view is not None and cfg is not None and consistency_batch is not None
        and (cfg.query_consistency or cfg.feature_consistency)
    ):  # fmt: skip
        with precision.autocast():
            consistency_out = student.decode(student.encode(consistency_batch))
        consistency_out = precision.outputs(consistency_out)
    if view is not None and cfg is not None and cfg.query_consistency:
        losses["qc"] = query_consistency_loss(
            consistency_out["query_content"], indices, view.content, view.valid
        )
        total = total + cfg.query_consistency_weight * losses["qc"]
    if view is not None and cfg is not None and cfg.feature_consistency:
        sp_offsets = batch["sp_offsets"].tolist()
        student_feats = [
            consistency_out["sp_feats"][sp_offsets[b] : sp_offsets[b + 1]] for b in range(len(targets))
        ]
        losses["mfc"] = masked_feature_consistency_loss(
            student_feats, view.sp_feats, [t["masks"] for t in targets], [t["mask_valid"] for t in targets]
        )
        total = total + cfg.feature_consistency_weight * losses["mfc"]
    losses["total"] = total
    return losses


class StudentObjective(torch.nn.Module):
    """`student_losses` as a module's forward: DistributedDataParallel wraps this, so that one
    forward covers every pass over the student (learned queries, box queries) and the gradients
    of all of them are averaged over the ranks in one backward."""

    def __init__(
        self,
        student: BoxInstanceModel,
        criterion: Criterion,
        box_query_weight: float,
        cfg: Beep3dConfig,
        precision: Precision = FP32,
    ):
        super().__init__()
        self.student = student
        self.criterion = criterion
        self.box_query_weight = box_query_weight
        self.cfg = cfg
        self.precision = precision

    def forward(
        self,
        batch: dict[str, Any],
        targets: list[dict[str, torch.Tensor]],
        view: TeacherView | None,
        consistency_batch: dict[str, Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        return student_losses(
            self.student, self.criterion, batch, targets, self.box_query_weight, view, self.cfg,
            self.precision, consistency_batch,
        )  # fmt: skip
