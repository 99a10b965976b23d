"""BEEP3D's consistency losses between the student and the EMA teacher (our reading, DESIGN §1).

Both compare per-box vectors with 1 - cosine similarity, the teacher side under stop-gradient
(its tensors come from a no-grad forward), averaged over the pairs that exist:

query consistency    the student's content query matched to box k (last decoder layer) against
                     the teacher's content query for box k.
masked feature       the superpoint mask features averaged inside box k's pseudo-mask (the
consistency          soft target mask), student features against teacher features. Student and
                     teacher see the same augmented input in this build; the loss then ties the
                     student's feature space to its slower-moving average inside each instance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from beep3d.distributed import batch_mean_denominator, is_across_ranks


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """(M, d), (M, d) -> (M,) 1 - cos, the teacher detached."""
    return 1.0 - F.cosine_similarity(student, teacher.detach(), dim=-1, eps=1e-6)


def query_consistency_loss(
    student_content: list[torch.Tensor],
    indices: list[tuple[torch.Tensor, torch.Tensor]],
    teacher_content: list[torch.Tensor],
    teacher_valid: list[torch.Tensor],
) -> torch.Tensor:
    """Mean 1 - cos between matched student queries and the teacher's query of the same target.

    student_content: per scene (Q_b, d); indices: per scene (query rows, target rows) of the
    student's matching; teacher_content: per scene (T_b, d), row t = the teacher's query for
    target t; teacher_valid: per scene (T_b,) bool, False where the teacher has no query for t.
    """
    terms = []
    for s_content, (q_idx, t_idx), t_content, valid in zip(
        student_content, indices, teacher_content, teacher_valid, strict=True
    ):
        keep = valid[t_idx]
        terms.append(cosine_distance(s_content[q_idx[keep]], t_content[t_idx[keep]]))
    return _mean_or_zero(terms, student_content)


def masked_feature_consistency_loss(
    student_feats: list[torch.Tensor],
    teacher_feats: list[torch.Tensor],
    masks: list[torch.Tensor],
    mask_valid: list[torch.Tensor],
) -> torch.Tensor:
    """Mean 1 - cos between student and teacher features pooled inside each pseudo-mask.

    student_feats / teacher_feats: per scene (S_b, d) superpoint features; masks: per scene
    (T_b, S_b) soft masks in [0, 1]; mask_valid: per scene (S_b,) superpoints that may count.
    Targets whose mask is empty on the valid superpoints are skipped.
    """
    terms = []
    for s_feats, t_feats, mask, valid in zip(student_feats, teacher_feats, masks, mask_valid, strict=True):
        weights = mask * valid[None, :].to(mask.dtype)  # (T, S)
        mass = weights.sum(dim=1)  # (T,)
        keep = mass > 0
        if not bool(keep.any()):
            continue
        weights = weights[keep] / mass[keep, None]
        terms.append(cosine_distance(weights @ s_feats, weights @ t_feats))
    return _mean_or_zero(terms, student_feats)


def _mean_or_zero(terms: list[torch.Tensor], graph_from: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the batch's terms (over every rank's share in a distributed step); zero without any."""
    flat = torch.cat(terms) if terms else graph_from[0].new_zeros(0)
    if is_across_ranks():  # every rank joins the count, also one without pairs
        denominator = batch_mean_denominator(float(flat.numel()))
        if float(denominator) > 0:
            return (flat.sum() if flat.numel() else _zero_with_graph(graph_from)) / denominator
    elif flat.numel():
        return flat.mean()
    return _zero_with_graph(graph_from)


def _zero_with_graph(graph_from: list[torch.Tensor]) -> torch.Tensor:
    """Zero with a graph to the student, so backward works on a batch without pairs."""
    return sum(t.sum() for t in graph_from) * 0.0  # type: ignore[return-value]
