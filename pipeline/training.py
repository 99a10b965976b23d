"""The training run around `beep3d.engine`: typed params, resume state, the step loop.

Kept out of stages/train.py so a test (or a notebook) can run training without DVC, and so the
stage stays a thin shell that parses paths and writes outputs.

Resume: every `checkpoint_every` epochs the full state (model, optimiser, step, epoch, history)
goes to `<resume_dir>/state.pt` atomically. A re-run with the same fingerprint (params + data)
continues from there; a different fingerprint starts fresh and says so, so a stale checkpoint is
never resumed silently. Batches depend only on (seed, epoch), so a resumed CPU run ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from beep3d.backend import conv_algo, resolve_device
from beep3d.data.dataset import DataConfig, SceneDataset, make_loader
from beep3d.engine import (
    InferenceConfig,
    Mode,
    OptimConfig,
    batch_to,
    evaluate_model,
    learning_rate,
    make_optimizer,
    make_targets,
    train_step,
)
from beep3d.loss.criterion import Criterion, CriterionConfig
from beep3d.model.model import BoxInstanceModel, ModelConfig
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    mode: Mode  # supervision: ground-truth masks, or boxes + smallest-box rule
    seed: int  # seeds weights, augmentation and scene order; same seed on CPU -> same metrics
    device: str  # auto | cpu | cuda
    threads: int  # torch CPU threads (0 = torch's default)
    epochs: int  # passes over the training scenes (the schedule is step-based within them)
    batch_size: int  # scenes per step
    loader_workers: int  # DataLoader worker processes (0 = load in the training process)
    checkpoint_every: int  # epochs between resume checkpoints
    eval_every: int  # epochs between val evaluations logged in the history (0 = none; the evaluate stage scores the final model)
    optim: OptimConfig
    loss: CriterionConfig


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data_loader: DataConfig
    train: TrainConfig
    inference: InferenceConfig


def fingerprint(cfg: RunConfig, processed_dir: Path) -> str:
    """Hash of every param that shapes training plus the processed data's scene/box tables."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode())
    for name in ("scenes.parquet", "boxes.parquet"):
        h.update((processed_dir / name).read_bytes())
    return h.hexdigest()[:16]


def build_model(cfg: ModelConfig, device: torch.device) -> BoxInstanceModel:
    return BoxInstanceModel(cfg, conv_algo(device)).to(device)


def train(
    cfg: RunConfig,
    processed_dir: Path,
    resume_dir: Path,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[BoxInstanceModel, list[dict[str, Any]], str]:
    """Train (resuming when possible); returns the final model, the history rows, the class set name."""
    t = cfg.train
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    device = resolve_device(t.device)
    with_gt = t.mode == "full"  # box-supervised modes never load per-point ground truth
    train_set = SceneDataset(
        processed_dir, "train", cfg.data_loader, with_ground_truth=with_gt, train=True, seed=t.seed
    )
    if cfg.model.num_classes != train_set.class_set.num_classes:
        raise ConfigError(
            f"params: model.num_classes is {cfg.model.num_classes} but the data's class set "
            f"'{train_set.class_set.name}' has {train_set.class_set.num_classes} classes"
        )
    loader = make_loader(train_set, t.batch_size, shuffle=True, seed=t.seed, num_workers=t.loader_workers)
    if t.eval_every:  # only then is a val split needed here
        val_set = SceneDataset(
            processed_dir, "val", cfg.data_loader, with_ground_truth=True, train=False, seed=t.seed
        )
        val_loader = make_loader(val_set, 1, shuffle=False, seed=t.seed, num_workers=t.loader_workers)
    steps_per_epoch = len(loader)
    total_steps = t.epochs * steps_per_epoch

    model = build_model(cfg.model, device)
    criterion = Criterion.from_config(t.loss)
    optimizer = make_optimizer(model, t.optim)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    fp = fingerprint(cfg, processed_dir)
    state_path = resume_dir / "state.pt"
    if state_path.exists():
        state = load_checkpoint(state_path, map_location=device)
        if state["fingerprint"] == fp:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            history = json.loads(state["history"])
            start_epoch = int(state["epoch"])
            log(f"resuming from {state_path} at epoch {start_epoch}/{t.epochs}")
        else:
            log(f"ignoring {state_path}: it belongs to other params or data (fingerprint differs)")

    step = start_epoch * steps_per_epoch
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc=f"train ({t.mode})", unit="step")
    for epoch in range(start_epoch, t.epochs):
        train_set.set_epoch(epoch)
        started = time.perf_counter()
        for batch in loader:
            batch = batch_to(batch, device)
            lr = learning_rate(step, total_steps, t.optim)
            losses = train_step(
                model, criterion, optimizer, batch, make_targets(batch, t.mode, train_set.class_set),
                step, lr, t.optim.grad_clip,
            )  # fmt: skip
            history.append({"step": step, "epoch": epoch, "lr": lr, **losses})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.3f}")
        last = epoch + 1 == t.epochs
        # No forced evaluation after the last epoch: the evaluate stage scores the final model,
        # and doing it here too would cost a second pass over the val split.
        if t.eval_every and (epoch + 1) % t.eval_every == 0:
            metrics = evaluate_model(model, val_loader, val_set.class_set, cfg.inference, device)
            history.append({"step": step, "epoch": epoch, "val_mAP": metrics["mAP"], "val_AP50": metrics["AP50"],
                            "val_AP25": metrics["AP25"], "epoch_seconds": time.perf_counter() - started})  # fmt: skip
            log(f"epoch {epoch + 1}/{t.epochs}: val mAP {metrics['mAP']:.3f} AP50 {metrics['AP50']:.3f}")
        if (epoch + 1) % t.checkpoint_every == 0 or last:
            save_checkpoint(
                state_path,
                model_config=cfg.model,
                fingerprint=fp,
                state={
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": json.dumps(history),
                },
            )
    bar.close()
    return model, history, train_set.class_set.name


def save_model(path: Path, model: BoxInstanceModel, cfg: RunConfig, class_set: str) -> None:
    """The deliverable: weights + everything inference needs to rebuild the input the same way."""
    save_checkpoint(
        path,
        model_config=cfg.model,
        state={
            "model": model.state_dict(),
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
