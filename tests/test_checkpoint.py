"""Checkpoint files: equal contents give equal bytes, whatever the file is called."""

from __future__ import annotations

from pathlib import Path

import torch

from beep3d.model.model import ModelConfig
from pipeline.checkpoint import load_checkpoint, save_checkpoint


def test_equal_weights_give_byte_identical_files_under_any_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {"model": {"w": torch.randn(4, 3), "b": torch.zeros(3)}, "epoch": 2}
    paths = [tmp_path / "a" / "model.pt", tmp_path / "b" / "last_student.pt", tmp_path / "c" / "x"]
    for path in paths:
        save_checkpoint(path, model_config=ModelConfig(), state=state, fingerprint="f")
    first = paths[0].read_bytes()
    # The DVC hash of models/model.pt and checkpoints/ depends on nothing but the contents.
    assert all(path.read_bytes() == first for path in paths[1:])
    assert b".model.pt." not in first  # the atomic write's temp name stays out of the archive
    loaded = load_checkpoint(paths[1], expect_model_config=ModelConfig())
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["epoch"] == 2
