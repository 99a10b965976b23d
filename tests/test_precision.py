"""`train.amp`: bf16 autocast of the decoder and heads (CUDA only), fp32 backbone and losses, and
the default `off` running exactly the fp32 code path."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_dataset import default_scenes, write_processed
from test_student_teacher import tiny_run_config

from beep3d.classes import SCANNET
from beep3d.data.dataset import SceneDataset, make_loader
from beep3d.engine import make_targets, predict_scenes
from beep3d.loss.criterion import Criterion
from beep3d.precision import FP32, Precision, precision_for
from beep3d.student_teacher import beep3d_targets, student_losses, teacher_view
from pipeline.config import ConfigError, build
from pipeline.training import (
    RunConfig,
    TrainConfig,
    build_model,
    data_hash,
    fingerprint,
    run_precision,
    train,
)

REPO = Path(__file__).resolve().parents[1]
BF16_CPU = Precision("cpu", torch.bfloat16)  # torch's CPU autocast: the CUDA code path, testable here

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_section(**overrides) -> dict:
    train = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    train.update(overrides)
    return train


def test_the_default_is_off() -> None:
    assert build(TrainConfig, train_section(), "train").amp == "off"


def test_bf16_on_cpu_is_refused_naming_train_amp() -> None:
    with pytest.raises(ConfigError, match=r"train\.amp 'bf16' needs CUDA but train\.device is 'cpu'"):
        build(TrainConfig, train_section(device="cpu", amp="bf16"), "train")


@pytest.mark.parametrize("value", ["fp16", "on", "BF16", True])
def test_unknown_amp_values_are_refused(value) -> None:
    with pytest.raises(ConfigError, match=r"train\.amp"):
        build(TrainConfig, train_section(amp=value), "train")


def test_an_unquoted_off_means_off() -> None:
    """PyYAML reads `amp: off` as false, and `dvc exp run -S train.amp=off` writes it unquoted."""
    section = yaml.safe_load("amp: off\n")
    assert section == {"amp": False}
    assert build(TrainConfig, train_section(**section), "train").amp == "off"


def test_bf16_where_auto_found_no_gpu_is_refused_naming_train_amp() -> None:
    cfg = build(TrainConfig, train_section(device="auto", amp="bf16"), "train")  # valid as a param
    with pytest.raises(ConfigError, match=r"train\.amp 'bf16' needs a CUDA device, but training runs on cpu"):
        run_precision(cfg, torch.device("cpu"))
    assert precision_for("off", torch.device("cpu")) == FP32


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_processed(tmp_path_factory.mktemp("amp"), default_scenes())


def a_batch(cfg: RunConfig, processed: Path, train: bool) -> dict:
    data = SceneDataset(processed, "train", cfg.data_loader, with_ground_truth=False, train=train)
    return next(iter(make_loader(data, 2, shuffle=False, seed=0, num_workers=0)))


def a_model_and_batch(mode: str, processed: Path) -> tuple[RunConfig, Any, Criterion, dict]:
    """A tiny run config of `mode`, its freshly seeded model and criterion, and a training batch."""
    cfg = tiny_run_config(mode)
    torch.manual_seed(0)
    model = build_model(cfg.model, torch.device("cpu"))
    return cfg, model, Criterion.from_config(cfg.train.loss), a_batch(cfg, processed, train=True)


def test_autocast_runs_the_decoder_in_bf16_and_keeps_the_backbone_and_losses_fp32(processed: Path) -> None:
    cfg, model, criterion, batch = a_model_and_batch("beep3d", processed)
    dtypes: dict[str, list[torch.dtype]] = {"backbone": [], "decoder ffn": []}
    model.backbone.register_forward_hook(lambda m, i, out: dtypes["backbone"].append(out.dtype))
    model.decoder.layers[0].ffn.register_forward_hook(
        lambda m, i, out: dtypes["decoder ffn"].append(out.dtype)
    )

    view = teacher_view(model, batch, True, criterion, BF16_CPU)
    assert all(p.dtype == torch.float32 for p in view.box_prob + view.content + view.sp_feats)
    targets = beep3d_targets(batch, view, dataclasses.replace(cfg.train.beep3d, pseudo_masks=True))
    losses = student_losses(model, criterion, batch, targets, 1.0, view, cfg.train.beep3d, BF16_CPU)
    assert {"qc", "mfc", "boxq/total"} <= set(losses)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    losses["total"].backward()  # no GradScaler: bf16 keeps fp32's exponent range
    assert set(dtypes["backbone"]) == {torch.float32}
    assert set(dtypes["decoder ffn"]) == {torch.bfloat16}
    backbone = list(model.backbone.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in backbone)  # through the casts
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast casts copies, not weights

    preds = predict_scenes(model, a_batch(cfg, processed, train=False), cfg.inference, BF16_CPU)
    assert len(preds) == 2 and all(p.scores.dtype.kind == "f" for p in preds)


def test_bf16_autocast_stays_close_to_fp32(processed: Path) -> None:
    """Same weights and batch: the losses differ by bf16 rounding only."""
    _, model, criterion, batch = a_model_and_batch("box_heuristic", processed)
    targets = make_targets(batch, "box_heuristic", SCANNET)
    fp32 = student_losses(model, criterion, batch, targets, 1.0)
    bf16 = student_losses(model, criterion, batch, targets, 1.0, precision=BF16_CPU)
    low, full = float(bf16["total"].detach()), float(fp32["total"].detach())
    assert low == pytest.approx(full, rel=0.02)
    assert low != full  # not vacuous: bf16 did run


def test_off_never_enters_autocast_nor_casts(processed: Path, tmp_path: Path, monkeypatch) -> None:
    """`off` runs the code of the fp32 loop itself: no autocast context (not even a disabled one)
    and no output cast anywhere in training, teacher, evaluation and monitoring."""
    import beep3d.precision

    def forbidden(*args, **kwargs):
        raise AssertionError("the fp32 path touched autocast")

    monkeypatch.setattr(torch, "autocast", forbidden)
    monkeypatch.setattr(beep3d.precision, "to_float", forbidden)
    cfg = tiny_run_config("beep3d")
    assert cfg.train.amp == "off"
    result = train(cfg, processed, tmp_path, log=lambda _: None, progress=False)
    assert any("qc" in row for row in result.history) and "val_student_mAP" in result.summary["last"]


def test_fp32_fingerprint_is_the_one_from_before_the_amp_param(processed: Path) -> None:
    """Resume state written before `train.amp`, `train.beep3d.teacher_every`,
    `train.beep3d.student_color_mask` and `student_color_mask_losses` existed still resumes, and
    fp32 runs record the same checkpoints as before; bf16 and fp32 never resume each other, nor do
    runs with the teacher on every step and on every k-th, nor runs with one view and with the
    student's masked view, nor masked views that feed different losses."""
    cfg = tiny_run_config("beep3d")
    params = dataclasses.asdict(cfg)
    del params["train"]["amp"]
    del params["train"]["beep3d"]["teacher_every"]
    del params["train"]["beep3d"]["student_color_mask"]
    del params["train"]["beep3d"]["student_color_mask_losses"]
    del params["train"]["two_stage"]  # beep3d's fingerprint leaves two_stage's params out as well
    before = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    before.update(data_hash(processed).encode())
    assert fingerprint(cfg, processed) == before.hexdigest()[:16]
    bf16 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda", amp="bf16"))
    assert fingerprint(bf16, processed) != fingerprint(cfg, processed)
    sparse = dataclasses.replace(cfg.train.beep3d, teacher_every=3)
    every_third = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, beep3d=sparse))
    assert fingerprint(every_third, processed) != fingerprint(cfg, processed)
    two_views = dataclasses.replace(cfg.train.beep3d, student_color_mask=0.5)
    masked = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, beep3d=two_views))
    assert fingerprint(masked, processed) != fingerprint(cfg, processed)
    consistency_only = dataclasses.replace(two_views, student_color_mask_losses="consistency")
    masked_for_consistency = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, beep3d=consistency_only)
    )
    assert len({fingerprint(c, processed) for c in (cfg, masked, masked_for_consistency)}) == 3
