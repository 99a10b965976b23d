"""A training killed with SIGKILL and re-run resumes from its last checkpoint and, on CPU with
the same seed, ends exactly where an uninterrupted run ends: same weights, same history, same
evaluation metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_dataset import default_scenes, write_processed

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def tiny_params(tmp: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=6, ffn_dim=32)
    params["data_loader"]["voxel_size"] = 0.1
    params["train"].update(threads=1, epochs=8, batch_size=1, eval_every=2, monitor_scenes=2)
    params["train"]["beep3d"]["pseudo_warmup_steps"] = 2
    params["inference"]["min_points"] = 10
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def train_cmd(params: Path, data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "stages.train", "--params", str(params), "--data", str(data),
        "--model", str(out / "model.pt"), "--resume", str(out / "checkpoints"),
        "--history", str(out / "history.json"), "--summary", str(out / "summary.json"),
        "--run-info", str(out / "mlflow_run.json"), "--no-progress",
    ]  # fmt: skip


def without_timings(rows):
    """History rows (or a summary) without the wall-clock fields, which no rerun reproduces."""
    if isinstance(rows, list):
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]
    return rows


def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = write_processed(tmp_path / "processed", default_scenes())
    params = tiny_params(tmp_path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run = lambda out: subprocess.run(  # noqa: E731
        train_cmd(params, data, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )

    straight = tmp_path / "straight"
    assert run(straight).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cmd(params, data, killed), cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state = killed / "checkpoints" / "state.pt"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # right after the first epoch's checkpoint: mid-run
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "model.pt").exists()

    resumed = run(killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout

    a = torch.load(straight / "model.pt", weights_only=True)["model"]
    b = torch.load(killed / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("history.json", "summary.json"):
        assert without_timings(json.loads((straight / name).read_text())) == without_timings(
            json.loads((killed / name).read_text())
        )
    summary = json.loads((killed / "summary.json").read_text())
    assert "val_student_mAP" in summary["last"] and "pseudo_teacher_iou_ambiguous" in summary["last"]
    teacher_a = torch.load(straight / "checkpoints/export/last_teacher.pt", weights_only=True)["model"]
    teacher_b = torch.load(killed / "checkpoints/export/last_teacher.pt", weights_only=True)["model"]
    assert all(torch.equal(teacher_a[k], teacher_b[k]) for k in teacher_a)


def test_unreachable_tracking_store_stops_before_training_with_the_uri(tmp_path: Path) -> None:
    """The documented policy: no MLflow store at start -> a clear error naming the URI, exit 1,
    and no training started (nothing to lose)."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    data = write_processed(tmp_path / "processed", default_scenes())
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
    }
    out = tmp_path / "out"
    proc = subprocess.run(
        train_cmd(tiny_params(tmp_path), data, out),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert uri in proc.stderr and "unavailable" in proc.stderr
    assert not (out / "checkpoints").exists() and not (out / "model.pt").exists()


def test_no_tracking_trains_and_writes_without_a_store(tmp_path: Path) -> None:
    """--no-tracking (scratch runs, machines without MLflow): the same outputs, no run, no store
    opened (the URI below would stop a tracked run), --run-info not written."""
    params = yaml.safe_load(tiny_params(tmp_path).read_text())
    params["train"].update(epochs=1, eval_every=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    data = write_processed(tmp_path / "processed", default_scenes())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'no-such-dir' / 'mlflow.db'}"}
    out = tmp_path / "out"
    proc = subprocess.run(
        [*train_cmd(tmp_path / "params.yaml", data, out), "--no-tracking"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not tracked" in proc.stdout and "MLflow run" not in proc.stdout
    assert (out / "model.pt").exists() and (out / "checkpoints/export/last_teacher.pt").exists()
    assert "val_student_mAP" in json.loads((out / "summary.json").read_text())["last"]
    assert not (out / "mlflow_run.json").exists() and not (tmp_path / "no-such-dir").exists()
