"""Training and evaluation as plain functions: no files, no tracking, no params parsing.

`train_step` runs one optimiser step on one batch; `predict_scenes` turns a batch into
per-vertex instance predictions; `evaluate_model` streams a split through the ScanNet evaluator.
The train stage (stages/train.py) owns the loop, checkpoints and logging around them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from beep3d.classes import ClassSet
from beep3d.eval import Evaluator, SceneGT, ScenePred
from beep3d.loss.criterion import Criterion, assert_finite
from beep3d.loss.targets import box_heuristic_targets, full_targets
from beep3d.model.model import BoxInstanceModel, predict_instances
from beep3d.precision import FP32, Precision
from beep3d.student_teacher import Beep3dConfig, prior_targets
from beep3d.two_stage import fixed_label_targets

Mode = Literal["beep3d", "box_heuristic", "full", "two_stage"]  # params.yaml `train.mode`
# two_stage's first stage, the labeler (beep3d/two_stage.py): the box prior's labels, no teacher.
# Not a `train.mode` of params.yaml: pipeline/training.py derives the labeler's run from a
# two_stage run and sets it.
LABELER_MODE = "two_stage_labeler"


@dataclass(frozen=True)
class OptimConfig:
    lr: float  # peak learning rate of AdamW
    weight_decay: float  # AdamW decoupled weight decay
    warmup_steps: int  # linear warm-up from 0 to lr
    min_lr_ratio: float  # cosine decay ends at lr * this
    grad_clip: float  # max global gradient norm; 0 = no clipping


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    # foreach=True: torch picks the per-parameter loop on CPU, a dozen small parallel ops per
    # tensor; with 2 threads on a busy machine each op can wait milliseconds for the second
    # thread, and a MAFT-size step took seconds (benchmarks/train_bench.py). The foreach kernels
    # apply the same ops in the same order: bitwise-identical updates.
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def learning_rate(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at total_steps. Step-based, so a
    resumed or repeated run follows exactly the same schedule."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min((step - cfg.warmup_steps) / max(total_steps - cfg.warmup_steps, 1), 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor (also inside the supervision / ground-truth lists) to `device`."""

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return {k: move(v) for k, v in batch.items()}


def make_targets(
    batch: dict[str, Any], mode: str, class_set: ClassSet, prior: Beep3dConfig | None = None
) -> list[dict[str, torch.Tensor]]:
    """Superpoint-level targets for every scene of the batch.

    mode: a `Mode` other than beep3d, or LABELER_MODE, whose targets need `prior` (the box prior's
    switches, `train.beep3d`). two_stage's student reads the fixed labels the dataset was given.
    Only `full` reads ground truth. The box-supervised modes see `batch["supervision"]` alone, and
    their datasets are built without ground truth, so a leak would fail here with a KeyError
    rather than train silently on masks.
    """
    if mode == "full":
        return [
            full_targets(gt, sup, class_set)
            for gt, sup in zip(batch["ground_truth"], batch["supervision"], strict=True)
        ]
    if mode == "box_heuristic":
        return [box_heuristic_targets(sup) for sup in batch["supervision"]]
    if mode == "two_stage":
        return [fixed_label_targets(sup) for sup in batch["supervision"]]
    if mode == LABELER_MODE:
        if prior is None:
            raise ValueError("the two_stage labeler's targets need the box prior's switches (train.beep3d)")
        return [prior_targets(sup, prior) for sup in batch["supervision"]]
    if mode == "beep3d":
        raise ValueError("beep3d targets come from the teacher: use beep3d.student_teacher.beep3d_targets")
    raise ValueError(f"unknown training mode {mode!r}")


def train_step(
    model: BoxInstanceModel,
    criterion: Criterion,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    targets: list[dict[str, torch.Tensor]],
    step: int,
    lr: float,
    grad_clip: float,
) -> dict[str, float]:
    """One optimiser step on the criterion alone (no box-query pass, no teacher): the core that
    the training loop (`pipeline.training.TrainingRun.step`) extends; benchmarks time it."""
    model.train()
    return optimizer_step(model, optimizer, criterion(model(batch), targets), step, lr, grad_clip)


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    losses: dict[str, torch.Tensor],
    step: int,
    lr: float,
    grad_clip: float,
) -> dict[str, float]:
    """Backward of losses["total"] and one optimiser step at `lr`. Returns every term as a float;
    stops on a non-finite loss before touching the weights."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    assert_finite(losses, step)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if grad_clip > 0:
        # foreach for the same reason as the optimiser (bitwise-identical norm and scaling).
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


@dataclass(frozen=True)
class InferenceConfig:
    topk: int  # candidates kept per scene (over query x class pairs)
    score_threshold: float  # drop candidates scoring at or below this
    min_points: int  # drop masks with fewer original vertices (the ScanNet protocol ignores < 100)
    nms_iou: float  # same-class mask NMS: drop a mask overlapping a better one by IoU > this; 0 = off
    mask_threshold: float  # a superpoint joins a mask when sigmoid(mask logit) > this

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")


@torch.no_grad()
def predict_scenes(
    model: BoxInstanceModel, batch: dict[str, Any], cfg: InferenceConfig, precision: Precision = FP32
) -> list[ScenePred]:
    """Instances of every scene in the batch as sparse masks over the scene's points.

    A superpoint mask becomes a point mask through each point's superpoint; with an eval-mode
    dataset the points are the scene's original vertices in file order. precision: the forward
    under autocast (benchmarks/gpu_check.py times bf16 inference); scoring sees fp32 outputs.
    Evaluation keeps the default, fp32, so a bf16-trained model is scored as an fp32 one is.
    """
    model.eval()
    with precision.autocast():
        outputs = model(batch)
    outputs = precision.outputs(outputs)
    offsets = batch["sp_offsets"].tolist()
    p_off = batch["point_offsets"].tolist()
    superpoint = batch["superpoint"]
    sp_sizes = [
        torch.bincount(
            superpoint[p_off[b] : p_off[b + 1]] - offsets[b], minlength=offsets[b + 1] - offsets[b]
        )
        for b in range(batch["batch_size"])
    ]
    instances = predict_instances(
        outputs, cfg.topk, cfg.score_threshold, sp_sizes, cfg.min_points, cfg.nms_iou, cfg.mask_threshold
    )
    preds = []
    for b, inst in enumerate(instances):
        local_sp = (superpoint[p_off[b] : p_off[b + 1]] - offsets[b]).cpu().numpy()  # (P_b,)
        sp_masks = sp.csr_matrix(inst.masks.cpu().numpy())  # (K, S_b)
        # (K, S_b) x (S_b, P_b) selection matrix: point p is in mask k iff its superpoint is.
        select = sp.csr_matrix(
            (np.ones(len(local_sp), bool), (local_sp, np.arange(len(local_sp)))),
            shape=(sp_masks.shape[1], len(local_sp)),
        )
        preds.append(
            ScenePred(
                batch["scene_ids"][b],
                (sp_masks @ select).astype(bool).tocsr(),
                inst.classes.cpu().numpy(),
                inst.scores.cpu().numpy().astype(np.float64),
            )
        )
    return preds


def iterate_predictions(
    model: BoxInstanceModel, loader: Iterable[dict[str, Any]], cfg: InferenceConfig, device: torch.device
) -> Iterator[tuple[dict[str, Any], list[ScenePred]]]:
    for batch in loader:
        yield batch, predict_scenes(model, batch_to(batch, device), cfg)


def evaluate_model(
    model: BoxInstanceModel,
    loader: Iterable[dict[str, Any]],
    class_set: ClassSet,
    cfg: InferenceConfig,
    device: torch.device,
    return_curves: bool = False,
) -> dict[str, Any]:
    """ScanNet-protocol AP of `model` over every scene of an eval-mode loader with ground truth."""
    evaluator = Evaluator(class_set)
    for batch, preds in iterate_predictions(model, loader, cfg, device):
        for gt, pred in zip(batch["ground_truth"], preds, strict=True):
            evaluator.add(SceneGT(pred.scene_id, gt["label"].numpy(), gt["instance"].numpy()), pred)
    return evaluator.result(return_curves=return_curves)
