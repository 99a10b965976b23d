"""Distributed training: the train stage under a real `torchrun` with 2 CPU processes (gloo).

The contract (pipeline/distributed.py, beep3d/distributed.py): the ranks share every batch of
`train.batch_size` scenes, batch norm and the batch means run over the whole batch, DDP averages
the gradients, so a 2-process run follows the 1-process run of the same params; it differs only
by floating-point summation order. Stated tolerance after 4 steps (2 of them with the EMA teacher
and the consistency losses): every logged loss within 1e-5 relative (measured: 8e-7), every
student and teacher weight within 1e-4 absolute (measured: 1.1e-5, on attention key biases, whose
true gradient is zero under the softmax: AdamW normalises their rounding-noise gradients into
steps of up to lr, so they are the first to drift). Rank 0 alone writes; every rank ends with bitwise the same student
and teacher (the run itself checks this and records the digest); a killed 2-process run resumes
and ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from test_dataset import make_scene, write_processed
from test_resume import train_cmd, without_timings

from beep3d.data.dataset import EpochBatchSampler
from beep3d.distributed import SyncedBatchNorm1d, across_ranks, batch_mean_denominator

REPO = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-4


def four_scene_data(root: Path) -> Path:
    rng = np.random.default_rng(3)
    scenes = {f"scene_{i}": ("train", make_scene(rng, 1 + i % 3)) for i in range(4)}
    scenes["scene_val"] = ("val", make_scene(rng, 2))
    return write_processed(root, scenes)


def ddp_params(tmp: Path, epochs: int = 2) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=6, ffn_dim=32)
    params["data_loader"]["voxel_size"] = 0.1
    params["train"].update(threads=1, epochs=epochs, batch_size=2, eval_every=2, monitor_scenes=2)
    params["train"]["beep3d"]["pseudo_warmup_steps"] = 2  # steps 2.. use the teacher and consistency
    params["inference"]["min_points"] = 10
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def torchrun_cmd(params: Path, data: Path, out: Path, nproc: int = 2) -> list[str]:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return torchrun + train_cmd(params, data, out)[1:]  # "-m stages.train ..." after the launcher


def environment(tmp: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def step_rows(out: Path) -> list[dict]:
    return [row for row in json.loads((out / "history.json").read_text()) if "total" in row]


@pytest.mark.slow
def test_two_ranks_match_one_process_and_agree(tmp_path: Path) -> None:
    data = four_scene_data(tmp_path / "processed")
    params = ddp_params(tmp_path)
    env = environment(tmp_path)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run(train_cmd(params, data, single), env)
    proc = run(torchrun_cmd(params, data, ddp), env)

    assert "identical on all 2 ranks" in proc.stdout
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2
    assert "val_student_mAP" in summary["last"]  # rank 0 evaluated

    rows_1, rows_2 = step_rows(single), step_rows(ddp)
    assert [r["step"] for r in rows_1] == [r["step"] for r in rows_2] == [0, 1, 2, 3]
    assert "qc" in rows_2[-1] and "mfc" in rows_2[-1]  # the teacher's consistency losses ran
    for a, b in zip(rows_1, rows_2, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert b[key] == pytest.approx(a[key], rel=LOSS_RTOL, abs=1e-7), (a["step"], key)

    for name in ("model.pt", "checkpoints/export/last_teacher.pt"):
        a, b = weights(single / name), weights(ddp / name)
        assert a.keys() == b.keys()
        worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
        assert worst < WEIGHT_ATOL, (name, worst)
    # Not vacuous: the losses move between steps by far more than the tolerance.
    totals = [row["total"] for row in rows_1]
    assert max(totals) - min(totals) > 100 * LOSS_RTOL * max(totals)


@pytest.mark.slow
def test_killed_two_rank_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    data = four_scene_data(tmp_path / "processed")
    params = ddp_params(tmp_path, epochs=4)
    env = environment(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(torchrun_cmd(params, data, straight), env)

    proc = subprocess.Popen(
        torchrun_cmd(params, data, killed), cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    state = killed / "checkpoints" / "state.pt"
    deadline = time.monotonic() + 600
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-run
    proc.wait()
    assert not (killed / "model.pt").exists()

    resumed = run(torchrun_cmd(params, data, killed), env)
    assert "resuming from" in resumed.stdout
    for name in ("model.pt", "checkpoints/export/last_teacher.pt"):
        a, b = weights(straight / name), weights(killed / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for name in ("history.json", "summary.json"):
        assert without_timings(json.loads((straight / name).read_text())) == without_timings(
            json.loads((killed / name).read_text())
        )


@pytest.mark.slow
def test_two_stage_under_two_ranks_labels_once_and_resumes_without_the_labeler(tmp_path: Path) -> None:
    """two_stage's stage 1 and 2 both run distributed; rank 0 alone labels and writes the labels,
    the other rank reads them from it, and a rerun finds them on rank 0's disk for every rank."""
    params = yaml.safe_load(ddp_params(tmp_path).read_text())
    params["train"]["mode"] = "two_stage"
    params["train"]["two_stage"]["labeler_epochs"] = 1
    path = tmp_path / "two_stage.yaml"
    path.write_text(yaml.safe_dump(params))
    data = four_scene_data(tmp_path / "processed")
    env = environment(tmp_path)
    out = tmp_path / "ddp"
    first = run(torchrun_cmd(path, data, out), env)
    assert first.stdout.count("identical on all 2 ranks") == 2  # the labeler's, then the student's
    assert "pseudo_two_stage_iou_ambiguous" in json.loads((out / "summary.json").read_text())["last"]
    labels = (out / "checkpoints" / "two_stage_labels.pt").read_bytes()
    (out / "model.pt").unlink()
    (out / "checkpoints" / "state.pt").unlink()  # the student starts over, the labels stay
    again = run(torchrun_cmd(path, data, out), env)
    assert "stage 1 (the labeler) skipped" in again.stdout and "stage 1, the labeler" not in again.stdout
    assert again.stdout.count("identical on all 2 ranks") == 1
    assert (out / "checkpoints" / "two_stage_labels.pt").read_bytes() == labels


class _Scenes:
    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize("n_scenes, batch_size, world", [(8, 4, 2), (7, 4, 2), (9, 3, 3), (5, 4, 3)])
def test_rank_shares_make_up_the_single_process_batches(n_scenes: int, batch_size: int, world: int) -> None:
    scenes = _Scenes(n_scenes)
    single = list(EpochBatchSampler(scenes, batch_size, shuffle=True, seed=1))  # type: ignore[arg-type]
    shares = [list(EpochBatchSampler(scenes, batch_size, True, 1, r, world)) for r in range(world)]  # type: ignore[arg-type]
    assert all(len(s) == len(single) for s in shares)  # every rank steps together
    for step, batch in enumerate(single):
        union = [i for share in shares for i in share[step]]
        assert sorted(set(union)) == sorted(batch)
        if len(batch) >= world:
            assert sorted(union) == sorted(batch)  # no scene twice
    assert sorted(i for b in single for i in b) == list(range(n_scenes))


def test_batch_smaller_than_world_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller than the 3 ranks"):
        EpochBatchSampler(_Scenes(4), 2, True, 0, 0, 3)  # type: ignore[arg-type]


@pytest.fixture
def one_rank_group(tmp_path: Path):
    """A real gloo process group of one rank: the collectives run, over a single member."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_synced_batch_norm_equals_batch_norm(one_rank_group: None) -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 4, dtype=torch.float64) * 3 + 1
    plain, synced = torch.nn.BatchNorm1d(4).double(), SyncedBatchNorm1d(4).double()
    with torch.no_grad():
        plain.weight.uniform_(0.5, 2)
        plain.bias.uniform_(-1, 1)
    synced.load_state_dict(plain.state_dict())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(50, 4, dtype=torch.float64)
    expected = plain(xa)
    expected.backward(grad)
    with across_ranks():
        out = synced(xb)
    out.backward(grad)
    assert torch.allclose(out, expected)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(plain, name).double(), getattr(synced, name).double()), name
    assert torch.allclose(xa.grad, xb.grad, atol=1e-12)
    assert torch.allclose(plain.weight.grad, synced.weight.grad) and torch.allclose(
        plain.bias.grad, synced.bias.grad
    )
    plain.eval(), synced.eval()
    with across_ranks():  # eval mode: running statistics, no collective
        assert torch.allclose(synced(x), plain(x))


def test_batch_mean_denominator_outside_and_inside_the_scope(one_rank_group: None) -> None:
    assert batch_mean_denominator(0, minimum=1) == 1 and batch_mean_denominator(7, minimum=1) == 7
    with across_ranks():
        assert float(batch_mean_denominator(0, minimum=1)) == 1.0
        assert float(batch_mean_denominator(torch.tensor(6.0))) == 6.0


def test_across_ranks_needs_a_process_group() -> None:
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="process group"), across_ranks():
        pass
