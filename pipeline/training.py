"""The training run around `beep3d.engine`: typed params, resume state, the step loop.

Kept out of stages/train.py so a test (or a notebook) can run training without DVC, and so the
stage stays a thin shell that parses paths and writes outputs.

Modes share the loop: `full` and `box_heuristic` take one criterion step per batch; `beep3d` adds
the EMA teacher (beep3d/model/ema.py), its pseudo-masks and the consistency losses
(beep3d/student_teacher.py), and updates the teacher after every optimiser step. `two_stage`, the
baseline BEEP3D argues against (beep3d/two_stage.py), runs this loop twice: first the labeler (the
same model on the box prior's labels, `train.two_stage.labeler_epochs`, no teacher, no
evaluations, resume state in `<resume_dir>/labeler/`), which then labels every training scene
once; then a fresh student on those fixed labels, evaluated, checkpointed and resumed like any
other mode. The labels are kept in `<resume_dir>/two_stage_labels.pt` with the labeler's
fingerprint, so a run killed while the student trains does not train the labeler again.

Resume: every `checkpoint_every` epochs the full state (student, teacher, optimiser, epoch,
history, best evaluation) goes to `<resume_dir>/state.pt` atomically. A re-run with the same
fingerprint (params + data) continues from there; a different fingerprint starts fresh and says
so, so a stale checkpoint is never resumed silently. Batches depend only on (seed, epoch), so a
resumed CPU run ends with the same weights as an uninterrupted one.

Wall time goes to the metrics sink (MLflow), never into the history (a DVC output, which must hash
the same for the same params): `epoch_seconds` per epoch, `train_seconds` (the epochs, plus in
two_stage mode the labeler's epochs `labeler_seconds` and the labelling `labelling_seconds`) at
the end; a resumed run counts what this process trained.

Evaluation epochs (`eval_every`): student (and teacher) val AP on the first `val_scenes` val
scenes, and pseudo-mask quality on the first `monitor_scenes` training scenes. They only monitor:
the evaluate stage scores the whole val split, and with `headline: last` the trained weights are
the same for any `eval_every`, `val_scenes` and `monitor_scenes`. The best epoch by student val
mAP is kept in `<resume_dir>/best.pt`; which one becomes the deliverable is `headline` (last
unless params say best), so the val split never picks the model silently.

Distributed (torchrun, pipeline/distributed.py): `train.batch_size` stays the number of scenes per
optimiser step; each rank takes its share of every batch, and the step computes batch norm and
every batch mean over all ranks' scenes (beep3d/distributed.py) while DDP averages the gradients,
so W processes follow the one-process run up to summation order. Rank 0 evaluates, checkpoints
and logs; at the end every rank's student and teacher must be bitwise equal (checked).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from beep3d.backend import conv_algo
from beep3d.data.dataset import DataConfig, SceneDataset, make_loader, split_sizes
from beep3d.distributed import across_ranks
from beep3d.engine import (
    LABELER_MODE,
    InferenceConfig,
    Mode,
    OptimConfig,
    batch_to,
    evaluate_model,
    learning_rate,
    make_optimizer,
    make_targets,
    optimizer_step,
)
from beep3d.eval.pseudo_masks import pseudo_mask_quality
from beep3d.loss.criterion import Criterion, CriterionConfig
from beep3d.model.ema import EmaTeacher, ema_rate
from beep3d.model.model import BoxInstanceModel, ModelConfig
from beep3d.precision import AMP_DTYPES, AmpMode, Precision, precision_for
from beep3d.student_teacher import (
    Beep3dConfig,
    StudentObjective,
    beep3d_targets,
    masked_student_batch,
    student_view_generator,
    teacher_view,
)
from beep3d.two_stage import TwoStageConfig, label_scenes
from pipeline import distributed
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import ConfigError
from pipeline.distributed import SINGLE_PROCESS, Ranks

MetricsSink = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class TrainConfig:
    # beep3d (boxes + EMA teacher) | box_heuristic (boxes + smallest-box rule) | full (masks) |
    # two_stage (boxes: a labeler trained first, then a student on its fixed labels). The labeler's
    # derived run carries the internal LABELER_MODE (`labeler_config`), which params cannot name.
    mode: Mode
    seed: int  # seeds weights, augmentation and scene order; same seed on CPU -> same metrics
    device: str  # auto | cpu | cuda
    amp: AmpMode  # off (fp32) | bf16: autocast of the decoder and heads, CUDA only (beep3d/precision.py)
    threads: int  # torch CPU threads (0 = torch's default)
    epochs: int  # passes over the training scenes (the schedule is step-based within them)
    batch_size: int  # scenes per step
    loader_workers: int  # DataLoader worker processes (0 = load in the training process)
    checkpoint_every: int  # epochs between resume checkpoints
    eval_every: int  # epochs between evaluations (val AP, pseudo-mask quality); 0 = none
    monitor_scenes: int  # training scenes scored for pseudo-mask quality at each evaluation (0 = all)
    val_scenes: int  # val scenes scored at each evaluation (0 = all; the evaluate stage scores all)
    headline: Literal["last", "best"]  # which evaluation epoch's student becomes the model
    ema: float  # EMA teacher rate a (beep3d mode)
    ema_warmup_steps: int  # EMA warm-up time constant (0 = plain EMA); see beep3d/model/ema.py
    box_query_weight: float  # student box-query loss, every mode (beep3d/student_teacher.py); 0 = off
    beep3d: Beep3dConfig  # the BEEP3D parts; two_stage reuses the box prior's and resolver's keys
    two_stage: TwoStageConfig  # two_stage mode only
    optim: OptimConfig
    loss: CriterionConfig

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"train.ema must be in [0, 1), got {self.ema}")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("train.epochs, train.batch_size and train.checkpoint_every must be >= 1")
        if min(self.eval_every, self.monitor_scenes, self.val_scenes, self.ema_warmup_steps) < 0:
            raise ValueError(
                "train.eval_every, train.monitor_scenes, train.val_scenes and train.ema_warmup_steps must be >= 0"
            )
        if self.headline == "best" and not self.eval_every:
            raise ValueError("train.headline 'best' needs evaluations: set train.eval_every > 0")
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"train.amp must be one of {list(AMP_DTYPES)}, got {self.amp!r}")
        if self.amp != "off" and self.device == "cpu":
            raise ValueError(
                f"train.amp '{self.amp}' needs CUDA but train.device is 'cpu': set train.amp to 'off' "
                "for CPU training, or train.device to 'cuda' / 'auto' on a GPU machine"
            )


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data_loader: DataConfig
    train: TrainConfig
    inference: InferenceConfig


@dataclass
class TrainResult:
    """What a training run leaves: the headline student (and teacher), the last and best states."""

    model: BoxInstanceModel  # the headline student (last epoch, or best with headline: best)
    teacher: BoxInstanceModel | None  # its EMA teacher (beep3d mode)
    history: list[dict[str, Any]]  # one row per step, one per evaluation
    class_set: str
    last: dict[str, Any] = field(default_factory=dict)  # {"student", "teacher"?} state dicts
    best: dict[str, Any] | None = None  # {"student", "teacher"?, "epoch", "metrics"} or None
    summary: dict[str, Any] = field(default_factory=dict)  # best/last evaluation metrics, labelled
    train_seconds: float = 0.0  # wall time this process spent training (see the module docstring)


# Params that came after checkpoints had been written, with the value those runs trained with.
# At that value a param is left out of the fingerprint, so the old runs' fingerprints, and every
# recorded output of such a run, stay as they were; any other value is hashed, so e.g. fp32 and
# bf16 (`amp`), or one view and the student's masked view, never resume each other's state.
FINGERPRINT_OMITS_AT: dict[tuple[str, ...], Any] = {
    ("train", "amp"): "off",
    ("train", "beep3d", "teacher_every"): 1,  # the teacher on every step
    ("train", "beep3d", "student_color_mask"): 0.0,  # one view for student and teacher
    ("train", "beep3d", "student_color_mask_losses"): "all",  # the masked view feeds every loss
}


def fingerprint(cfg: RunConfig, processed_dir: Path) -> str:
    """Hash of every param that shapes training plus the processed data's scene/box tables.
    `train.two_stage` shapes two_stage runs only: the other modes' fingerprints leave it out, so
    their checkpoints stay valid whatever it says. Params of `FINGERPRINT_OMITS_AT` are left out
    at their value there."""
    params = dataclasses.asdict(cfg)
    if cfg.train.mode not in ("two_stage", LABELER_MODE):
        del params["train"]["two_stage"]
    for (*path, key), value in FINGERPRINT_OMITS_AT.items():
        parent = functools.reduce(dict.__getitem__, path, params)
        if parent[key] == value:
            del parent[key]
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(data_hash(processed_dir).encode())
    return h.hexdigest()[:16]


def data_hash(processed_dir: Path) -> str:
    """sha256 of the processed data's scene and box tables (they change whenever any scene does)."""
    h = hashlib.sha256()
    for name in ("scenes.parquet", "boxes.parquet"):
        h.update((processed_dir / name).read_bytes())
    return h.hexdigest()


def build_model(cfg: ModelConfig, device: torch.device) -> BoxInstanceModel:
    return BoxInstanceModel(cfg, conv_algo(device)).to(device)


def run_precision(t: TrainConfig, device: torch.device) -> Precision:
    """`train.amp` on the device training resolved to (`device: auto` may have found no GPU)."""
    try:
        return precision_for(t.amp, device)
    except ValueError as err:
        raise ConfigError(f"params: {err}") from err


class TrainingRun:
    """Data, student, teacher, criterion and optimiser of one run, and its step and evaluation."""

    def __init__(
        self,
        cfg: RunConfig,
        processed_dir: Path,
        device: torch.device,
        ranks: Ranks = SINGLE_PROCESS,
        fixed_labels: dict[str, np.ndarray] | None = None,
    ):
        """fixed_labels: two_stage's labels (scene id -> per-point box ids), for its student."""
        t = cfg.train
        self.cfg, self.t, self.device, self.ranks = cfg, t, device, ranks
        if (t.mode == "two_stage") != (fixed_labels is not None):
            raise ValueError("two_stage's student, and only it, trains on fixed labels")
        self.precision = run_precision(t, device)
        with_gt = t.mode == "full"  # box-supervised modes never load per-point ground truth
        self.train_set = SceneDataset(
            processed_dir, "train", cfg.data_loader, with_ground_truth=with_gt, train=True, seed=t.seed,
            fixed_labels=fixed_labels,
        )  # fmt: skip
        self.class_set = self.train_set.class_set
        if cfg.model.num_classes != self.class_set.num_classes:
            raise ConfigError(
                f"params: model.num_classes is {cfg.model.num_classes} but the data's class set "
                f"'{self.class_set.name}' has {self.class_set.num_classes} classes"
            )
        self.loader = make_loader(
            self.train_set, t.batch_size, shuffle=True, seed=t.seed, num_workers=t.loader_workers,
            rank=ranks.rank, world_size=ranks.world_size,
        )  # fmt: skip
        # Data without val scenes (e.g. a local folder of training scenes only) trains without
        # evaluations instead of failing; `train` says so.
        self.has_val = split_sizes(processed_dir).get("val", 0) > 0
        self.evaluates = bool(t.eval_every) and self.has_val
        # Only then (and only on rank 0, which evaluates) are the val split and the monitored
        # training scenes needed.
        if self.evaluates and ranks.is_main:
            val_set = SceneDataset(
                processed_dir,
                "val",
                cfg.data_loader,
                with_ground_truth=True,
                train=False,
                max_scenes=t.val_scenes,
            )
            self.val_loader = make_loader(
                val_set, 1, shuffle=False, seed=t.seed, num_workers=t.loader_workers
            )
            # Ground truth of training scenes, for monitoring only: a separate dataset object
            # whose batches never reach the loss. In two_stage mode they also carry the fixed
            # labels, whose quality the monitoring reports.
            monitor_set = SceneDataset(
                processed_dir, "train", cfg.data_loader, with_ground_truth=True, train=False,
                max_scenes=t.monitor_scenes, fixed_labels=fixed_labels,
            )  # fmt: skip
            self.monitor_loader = make_loader(
                monitor_set, 1, shuffle=False, seed=t.seed, num_workers=t.loader_workers
            )
        self.model = build_model(cfg.model, device)
        self.teacher = EmaTeacher(self.model) if t.mode == "beep3d" else None
        self.criterion = Criterion.from_config(t.loss)
        self.optimizer = make_optimizer(self.model, t.optim)
        self.objective: torch.nn.Module = StudentObjective(
            self.model, self.criterion, t.box_query_weight, t.beep3d, self.precision
        )
        if ranks.distributed:
            # Averages the gradients of every pass over the student in one backward. The BN
            # buffers need no broadcast: synced batch norm keeps them identical on every rank.
            self.objective = torch.nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False,
                # `fps` queries leave the learned reference points without a gradient.
                find_unused_parameters=cfg.model.query_init != "learned",
            )

    def step(self, batch: dict[str, Any], step: int, lr: float) -> dict[str, float]:
        """One optimiser step in any mode; in beep3d mode the teacher makes the targets (after its
        warm-up) and follows the student afterwards."""
        t = self.t
        view = None
        if self.teacher is None:
            targets = make_targets(batch, t.mode, self.class_set, t.beep3d)
        else:
            if t.beep3d.teacher_needed(step):
                view = teacher_view(
                    self.teacher.model, batch, t.beep3d.center_queries, self.criterion, self.precision
                )
            targets = beep3d_targets(batch, view, t.beep3d)
        student_batch, consistency_batch = batch, None
        if view is not None and t.beep3d.student_color_mask > 0:  # the teacher saw `batch` whole
            generator = student_view_generator(t.seed, step, self.ranks.rank, self.device)
            masked = masked_student_batch(batch, t.beep3d.student_color_mask, generator)
            if t.beep3d.student_color_mask_losses == "consistency":
                consistency_batch = masked
            else:
                student_batch = masked
        with across_ranks(self.ranks.distributed):  # batch statistics and means over all ranks' scenes
            losses = self.objective(student_batch, targets, view, consistency_batch)
            result = optimizer_step(self.model, self.optimizer, losses, step, lr, t.optim.grad_clip)
        # Each rank's terms are its share of the batch-wide means: their mean over the ranks is
        # the loss of the whole batch, the figure one process would report.
        result = distributed.mean_over_ranks(self.ranks, result)
        if self.teacher is not None:
            rate = ema_rate(step, t.ema, t.ema_warmup_steps)
            self.teacher.update(self.model, rate)
            result["ema_rate"] = rate
            result["pseudo_masks_from_teacher"] = float(view is not None and t.beep3d.pseudo_masks)
        return result

    def evaluate(self) -> dict[str, float]:
        """Val AP of the student (and teacher) and pseudo-mask quality, flat and prefixed."""
        metrics: dict[str, float] = {}
        models = {"student": self.model}
        if self.teacher is not None:
            models["teacher"] = self.teacher.model
        for name, model in models.items():
            ap = evaluate_model(model, self.val_loader, self.class_set, self.cfg.inference, self.device)
            metrics.update({f"val_{name}_{k}": float(ap[k]) for k in ("mAP", "AP50", "AP25")})
        teacher = self.teacher.model if self.teacher is not None else None
        batches = (batch_to(b, self.device) for b in self.monitor_loader)
        quality = pseudo_mask_quality(batches, teacher, self.t.beep3d, self.criterion)
        metrics.update({f"pseudo_{k}": v for k, v in quality.items()})
        return metrics

    def state(self) -> dict[str, Any]:
        state = {"student": self.model.state_dict()}
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        return state

    def snapshot(self) -> dict[str, Any]:
        """`state()` as copies: state_dict() tensors are the live weights, which later steps (or
        loading another state) would change under a kept reference."""
        return {role: {k: v.detach().clone() for k, v in sd.items()} for role, sd in self.state().items()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["student"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])


def train(
    cfg: RunConfig,
    processed_dir: Path,
    resume_dir: Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
    metrics_sink: MetricsSink | None = None,
    ranks: Ranks = SINGLE_PROCESS,
) -> TrainResult:
    """Train (resuming when possible). `metrics_sink(metrics, step)` receives every step's losses,
    learning rate and EMA rate, every evaluation's metrics and the wall times (e.g. an MLflow
    tracker); in two_stage mode also the labeler's, prefixed "labeler/".

    Under torchrun (`ranks` from pipeline.distributed.ranks_from_environment) every rank calls
    this; it joins the process group, trains its share of every batch, and only rank 0 logs,
    evaluates and writes `resume_dir`. The result is complete on rank 0 only.
    """
    t = cfg.train
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    device = distributed.training_device(ranks, t.device)
    distributed.start(ranks, device)
    if not ranks.is_main:  # rank 0 speaks for the run
        log, progress, metrics_sink = (lambda message: None), False, None
    sink = metrics_sink or (lambda metrics, step: None)
    fixed_labels, train_seconds = None, 0.0
    if t.mode == "two_stage":
        fixed_labels, train_seconds = two_stage_labels(
            cfg, processed_dir, resume_dir, device, log, progress, sink, ranks
        )
        # The student starts from the weights any other mode starts from, whether the labeler
        # trained in this process or not (resumed).
        torch.manual_seed(t.seed)
    run = TrainingRun(cfg, processed_dir, device, ranks, fixed_labels)
    if t.eval_every and not run.has_val:
        log(f"{processed_dir} has no val scenes: training without evaluations (train.eval_every ignored)")
    steps_per_epoch = len(run.loader)
    total_steps = t.epochs * steps_per_epoch

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch = 0
    fp = fingerprint(cfg, processed_dir)
    state_path, best_path = resume_dir / "state.pt", resume_dir / "best.pt"
    # Rank 0 reads the resume state and sends it to the others (machines need not share a disk).
    state_bytes = distributed.broadcast_bytes(
        ranks, state_path.read_bytes() if ranks.is_main and state_path.exists() else None
    )
    if state_bytes is not None:
        state = load_checkpoint(state_path, map_location=device, data=state_bytes)
        if state["fingerprint"] == fp:
            run.load_state(state)
            run.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            history = json.loads(state["history"])
            start_epoch = int(state["epoch"])
            if ranks.is_main and best_path.exists():
                best = load_checkpoint(best_path, map_location=device)
                best["metrics"] = json.loads(best["metrics"])
            log(f"resuming from {state_path} at epoch {start_epoch}/{t.epochs}")
        else:
            log(f"ignoring {state_path}: it belongs to other params or data (fingerprint differs)")

    step = start_epoch * steps_per_epoch
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc=f"train ({t.mode})", unit="step")
    for epoch in range(start_epoch, t.epochs):
        run.train_set.set_epoch(epoch)
        started = time.perf_counter()
        for batch in run.loader:
            lr = learning_rate(step, total_steps, t.optim)
            losses = run.step(batch_to(batch, device), step, lr)
            row = {"lr": lr, **losses}
            history.append({"step": step, "epoch": epoch, **row})
            sink(row, step)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.3f}")
        # Wall-clock time goes to the tracker only: the history is a DVC output, and a time in it
        # would give every run of the same params a new hash.
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        sink({"epoch_seconds": epoch_seconds}, step)
        if run.evaluates and (epoch + 1) % t.eval_every == 0 and ranks.is_main:
            metrics = run.evaluate()
            history.append({"step": step, "epoch": epoch, **metrics})
            sink(metrics, step)
            log(f"epoch {epoch + 1}/{t.epochs}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
            if best is None or metrics["val_student_mAP"] > best["metrics"]["val_student_mAP"]:
                best = {**run.snapshot(), "epoch": epoch + 1, "metrics": metrics}
                save_checkpoint(
                    best_path, model_config=cfg.model, fingerprint=fp,
                    state={**best, "metrics": json.dumps(metrics)},
                )  # fmt: skip
        if ((epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs) and ranks.is_main:
            save_checkpoint(
                state_path,
                model_config=cfg.model,
                fingerprint=fp,
                state={
                    **run.state(),
                    "optimizer": run.optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": json.dumps(history),
                },
            )
        distributed.barrier(ranks)  # the other ranks wait for rank 0's evaluation and checkpoint
    bar.close()
    sink({"train_seconds": train_seconds}, step)
    last = run.snapshot()
    summary = evaluation_summary(history, t.headline)
    if ranks.distributed:
        summary["distributed"] = check_ranks_agree(ranks, last, log)
    if t.headline == "best" and best is not None:
        run.load_state(best)
    teacher = run.teacher.model if run.teacher is not None else None
    return TrainResult(run.model, teacher, history, run.class_set.name, last, best, summary, train_seconds)


LABELS_FILE = "two_stage_labels.pt"


def labeler_config(cfg: RunConfig) -> RunConfig:
    """two_stage's stage 1: the run's model, data, optimiser and schedule shape, trained as the
    labeler (LABELER_MODE: the box prior's labels, no teacher) for `two_stage.labeler_epochs`.
    Not evaluated, to save its time: its labels are, at every evaluation of the student."""
    t = cfg.train
    labeler = dataclasses.replace(
        t, mode=LABELER_MODE, epochs=t.two_stage.labeler_epochs, eval_every=0, headline="last"
    )
    return dataclasses.replace(cfg, train=labeler)


def two_stage_labels(
    cfg: RunConfig,
    processed_dir: Path,
    resume_dir: Path,
    device: torch.device,
    log: Callable[[str], None],
    progress: bool,
    sink: MetricsSink,
    ranks: Ranks,
) -> tuple[dict[str, np.ndarray], float]:
    """two_stage's labels of every training scene, and the seconds spent making them here.

    Read from `<resume_dir>/two_stage_labels.pt` when it holds the labels of this labeler (same
    fingerprint); otherwise the labeler trains (resuming from `<resume_dir>/labeler/`), labels
    the scenes and the file is written. Every rank gets the labels rank 0 wrote.
    """
    labeler_cfg = labeler_config(cfg)
    fp = fingerprint(labeler_cfg, processed_dir)
    path = resume_dir / LABELS_FILE
    saved = distributed.broadcast_bytes(ranks, path.read_bytes() if ranks.is_main and path.exists() else None)
    if saved is not None:
        payload = load_checkpoint(path, data=saved)
        if payload["fingerprint"] == fp:
            log(f"two_stage: labels read from {path}; stage 1 (the labeler) skipped")
            return labels_as_arrays(payload["labels"]), 0.0
        log(f"ignoring {path}: it belongs to other params or data (fingerprint differs)")

    labeler = train_labeler(labeler_cfg, processed_dir, resume_dir / "labeler", log, progress, sink, ranks)
    sink({"labeler_seconds": labeler.train_seconds}, 0)
    labelling_seconds = 0.0
    if ranks.is_main:
        started = time.perf_counter()
        labels = label_training_scenes(labeler.model, labeler_cfg, processed_dir, device)
        labelling_seconds = time.perf_counter() - started
        sink({"labelling_seconds": labelling_seconds}, 0)
        save_checkpoint(path, model_config=cfg.model, fingerprint=fp, state={"labels": labels})
        log(f"two_stage: {len(labels)} training scenes labelled by the labeler -> {path}")
    written = distributed.broadcast_bytes(ranks, path.read_bytes() if ranks.is_main else None)
    labels = load_checkpoint(path, data=written)["labels"]
    return labels_as_arrays(labels), labeler.train_seconds + labelling_seconds


def train_labeler(
    labeler_cfg: RunConfig,
    processed_dir: Path,
    resume_dir: Path,
    log: Callable[[str], None],
    progress: bool,
    sink: MetricsSink,
    ranks: Ranks,
) -> TrainResult:
    """Stage 1: `train` on the labeler's config, resumable in its own folder; its metrics go to
    the sink prefixed "labeler/" so that they do not mix with the student's at the same steps."""
    labeler_sink: MetricsSink = lambda metrics, step: sink(  # noqa: E731
        {f"labeler/{k}": v for k, v in metrics.items()}, step
    )
    log(f"two_stage: stage 1, the labeler ({labeler_cfg.train.epochs} epochs)")
    return train(labeler_cfg, processed_dir, resume_dir, log, progress, labeler_sink, ranks)


def label_training_scenes(
    labeler: BoxInstanceModel, labeler_cfg: RunConfig, processed_dir: Path, device: torch.device
) -> dict[str, torch.Tensor]:
    """The frozen labeler's labels of every training scene: all original points in file order,
    un-augmented and uncropped (an eval-mode dataset), and no ground truth read."""
    t = labeler_cfg.train
    scenes = SceneDataset(
        processed_dir, "train", labeler_cfg.data_loader, with_ground_truth=False, train=False
    )
    loader = make_loader(scenes, 1, shuffle=False, seed=t.seed, num_workers=t.loader_workers)
    batches = (batch_to(batch, device) for batch in loader)
    return label_scenes(labeler, batches, t.beep3d, Criterion.from_config(t.loss))


def labels_as_arrays(labels: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {scene_id: ids.numpy() for scene_id, ids in labels.items()}


def check_ranks_agree(ranks: Ranks, state: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Every rank must end with the same student and teacher, bit for bit; raise if not."""
    digests = distributed.digests_of_all_ranks(ranks, distributed.state_digest(state))
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks ended with different weights (sha256 per rank: {digests})")
    log(f"student and teacher identical on all {ranks.world_size} ranks (sha256 {digests[0][:16]})")
    return {"world_size": ranks.world_size, "state_sha256": digests[0]}


def evaluation_summary(history: list[dict[str, Any]], headline: str) -> dict[str, Any]:
    """The last and the best (by student val mAP) evaluation rows, labelled, and which is headline."""
    evals = [row for row in history if "val_student_mAP" in row]
    if not evals:
        return {"headline": headline}
    best = max(evals, key=lambda row: row["val_student_mAP"])  # first maximum: earliest epoch
    keep = lambda row: {k: v for k, v in row.items() if k != "step"}  # noqa: E731
    return {"headline": headline, "last": keep(evals[-1]), "best": keep(best)}


def save_model(
    path: Path, weights: torch.nn.Module | dict[str, torch.Tensor], cfg: RunConfig, class_set: str
) -> None:
    """The deliverable: weights (a model or its state dict) + everything inference needs to
    rebuild the input the same way. Teacher weights load into the same architecture."""
    save_checkpoint(
        path,
        model_config=cfg.model,
        state={
            "model": weights.state_dict() if isinstance(weights, torch.nn.Module) else weights,
            "class_set": class_set,
            "data_loader": dataclasses.asdict(cfg.data_loader),
            "inference": dataclasses.asdict(cfg.inference),
        },
    )


def model_config_from_checkpoint(payload: dict[str, Any]) -> ModelConfig:
    raw = dict(payload["model_config"])
    raw["widths"] = tuple(raw["widths"])
    return ModelConfig(**raw)


def load_model(
    path: Path, device: torch.device, expect: ModelConfig | None = None
) -> tuple[BoxInstanceModel, dict[str, Any]]:
    """Rebuild the model from a `save_model` file (its own config, or refuse if `expect` differs)."""
    payload = load_checkpoint(path, expect_model_config=expect, map_location=device)
    model = build_model(model_config_from_checkpoint(payload), device)
    model.load_state_dict(payload["model"])
    model.eval()
    return model, payload
