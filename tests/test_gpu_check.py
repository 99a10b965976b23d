"""benchmarks/gpu_check.py: the reduced check on CPU, for real, and its comparison rule.

The GPU figures need a GPU; here every section must run on CPU with figures, and every part
that needs CUDA must say so (skipped, with the reason) instead of disappearing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


def skipped_parts(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, reason) of every {"skipped": reason} inside the result."""
    if isinstance(node, dict):
        if set(node) == {"skipped"}:
            yield path, node["skipped"]
            return
        for key, value in node.items():
            yield from skipped_parts(value, f"{path}/{key}")


@pytest.fixture(scope="module")
def reduced_cpu_check(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--device", "cpu", "--reduced", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "failed: none" in proc.stdout
    return json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_every_section_ran_on_cpu_with_figures(reduced_cpu_check: dict[str, Any]) -> None:
    sections = reduced_cpu_check["sections"]
    assert list(sections) == list(gpu_check.SECTION_ORDER)
    for name, record in sections.items():
        assert record["status"] == "ok", (name, record.get("error"))
        assert 0 < record["seconds"] <= record["limit_s"]
    assert reduced_cpu_check["failed"] == []

    doctor = sections["doctor"]["figures"]
    assert doctor["passed"] and doctor["spconv_algo"] == "Native" and doctor["torch"]
    assert doctor["output"][-1] == "doctor: all good"

    train = sections["train_throughput"]["figures"]["default/fp32"]
    assert train["median_step_s"] > 0 and train["scenes_per_s"] > 0 and train["loss_finite"]
    assert len(train["step_s"]) == 2 and train["peak_memory_gib"] > 0 and "RSS" in train["peak_memory_kind"]

    evaluation = sections["eval_throughput"]["figures"]
    assert evaluation["evaluator"]["scenes_per_s"] > 0
    assert evaluation["default/fp32"]["inference"]["scenes_per_s"] > 0

    ddp = sections["ddp"]["figures"]
    assert "gloo" in ddp["backend"] and "nccl" not in ddp["backend"] and ddp["gloo"]["used"]
    assert ddp["world_size"] == 1 and ddp["all_reduce"] == {"cpu_tensor": "ok"}
    assert ddp["steps"] == 4 and ddp["seconds_per_step"] > 0 and ddp["losses_finite"]

    pipeline = sections["tiny_pipeline"]["figures"]
    run = pipeline["runs"]["device_fp32"]
    assert run["device"] == "cpu" and run["amp"] == "off" and run["steps"] >= 1
    assert set(run["val"]) == {"mAP", "AP50", "AP25", "n_gt_instances"} and run["val"]["n_gt_instances"] > 0


@pytest.mark.slow
def test_cuda_only_parts_are_skipped_with_a_reason(reduced_cpu_check: dict[str, Any]) -> None:
    parts = dict(skipped_parts(reduced_cpu_check["sections"]))
    assert all(reason.strip() for reason in parts.values())
    for path in (
        "/train_throughput/figures/default/bf16",
        "/eval_throughput/figures/default/bf16",
        "/ddp/figures/nccl",
        "/tiny_pipeline/figures/runs/device_bf16",
        "/tiny_pipeline/figures/runs/cpu_reference",
        "/tiny_pipeline/figures/comparisons/device_fp32_vs_cpu_reference",
        "/tiny_pipeline/figures/comparisons/device_bf16_vs_device_fp32",
    ):
        assert path in parts, (path, sorted(parts))
    assert "CUDA" in parts["/train_throughput/figures/default/bf16"]
    assert "NCCL" in parts["/ddp/figures/nccl"]
    # The ScanNet estimate needs the full-size setting, which the reduced form leaves out: said so.
    assert "reduced" in parts["/train_throughput/figures/scannet_estimate"]


def run_record(loss: float, **val: float | None) -> dict[str, Any]:
    return {"val": {"mAP": 0.2, "AP50": 0.4, **val}, "last_epoch_mean_loss": loss}


def test_comparison_is_close_within_the_stated_tolerance_and_not_beyond() -> None:
    reference = run_record(10.0)
    close = gpu_check.compare_runs(run_record(10.5, mAP=0.24, AP50=0.36), reference)
    assert close["close"] is True and close["tolerance_abs"] == {"mAP": 0.05, "AP50": 0.05}
    assert (
        close["delta"]["mAP"] == pytest.approx(0.04) and close["last_epoch_loss_relative_difference"] == 0.05
    )
    assert gpu_check.compare_runs(run_record(10.0, AP50=0.46), reference)["close"] is False
    unknown = gpu_check.compare_runs(run_record(10.0, mAP=None, AP50=None), reference)
    assert unknown["close"] is None and unknown["delta"] == {"mAP": None, "AP50": None}


def test_scannet_estimate_is_step_time_times_steps() -> None:
    estimate = gpu_check.scannet_training_estimate(0.5, batch_size=2, epochs=30)
    assert estimate["steps"] == 601 * 30  # ceil(1201 / 2) per epoch
    assert estimate["hours"] == pytest.approx(0.5 * 601 * 30 / 3600)


def run_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--out", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return proc, json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_section_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    """--device cuda without a GPU: the doctor's findings are kept with the failure, the next
    section fails on its own, and the exit code says so."""
    proc, result = run_check(
        tmp_path, "--device", "cuda", "--reduced", "--sections", "doctor,eval_throughput"
    )
    assert proc.returncode == 1
    doctor, evaluation = result["sections"]["doctor"], result["sections"]["eval_throughput"]
    assert doctor["status"] == "failed" and doctor["figures"]["passed"] is False
    assert "CUDA requested (--device cuda) but not available" in doctor["error"]
    assert evaluation["status"] == "failed" and "sees no CUDA device" in evaluation["error"]
    assert (
        result["failed"] == ["doctor", "eval_throughput"] and "failed: doctor, eval_throughput" in proc.stdout
    )


@pytest.mark.slow
def test_a_section_past_its_limit_is_killed_with_its_processes(tmp_path: Path) -> None:
    """Limits scaled to well under a second: each section is killed (torch alone takes longer to
    import) and recorded as timed out; the call goes on to the next and ends."""
    proc, result = run_check(
        tmp_path, "--device", "cpu", "--reduced", "--sections", "doctor,ddp", "--limit-scale", "0.01",
        "--time-limit", "60",
    )  # fmt: skip
    assert proc.returncode == 1
    for name in ("doctor", "ddp"):
        record = result["sections"][name]
        assert record["status"] == "timed_out" and "killed" in record["error"]
        assert record["seconds"] < record["limit_s"] + 5


def test_summary_lines_of_a_cuda_result() -> None:
    """The printed summary of a CUDA run (which cannot run here) from figures shaped as the
    sections write them."""
    train = {"median_step_s": 0.5, "scenes_per_s": 4.0, "peak_memory_gib": 12.5}
    estimate = gpu_check.scannet_training_estimate(0.5, 2, 30)
    run = {"val": {"mAP": 0.05, "AP50": 0.08, "AP25": 0.2}, "train_s": 40.0, "last_epoch_mean_loss": 9.0}
    figures = {
        "doctor": {"spconv": {"spconv-cu126": "2.3.8"}, "torch": "2.11.0", "torch_cuda_build": "13.0",
                   "device_name": "NVIDIA H100 80GB HBM3", "spconv_algo": "MaskImplicitGemm"},
        "train_throughput": {"default/fp32": train, "default/bf16": train, "full_size/fp32": {"error": "OOM"},
                             "full_size/bf16": train, "scannet_estimate": {"full_size/bf16": estimate}},
        "eval_throughput": {"evaluator": {"scenes_per_s": 200.0},
                            "default/bf16": {"inference": {"scenes_per_s": 30.0},
                                             "inference_plus_evaluator_scenes_per_s": 26.0}},
        "ddp": {"backend": "cpu:gloo,cuda:nccl", "world_size": 1, "steps": 4, "seconds_per_step": 0.1,
                "device": "cuda:0"},
        "tiny_pipeline": {"runs": {"device_fp32": run, "device_bf16": run, "cpu_reference": run},
                          "comparisons": {"device_bf16_vs_device_fp32": gpu_check.compare_runs(run, run)}},
    }  # fmt: skip
    lines = {name: "\n".join(gpu_check.HEADLINES[name](f)) for name, f in figures.items()}
    assert "NVIDIA H100" in lines["doctor"] and "MaskImplicitGemm" in lines["doctor"]
    assert (
        "full_size/fp32: FAILED" in lines["train_throughput"]
        and "18030 steps = 2.5 h" in lines["train_throughput"]
    )
    assert "default/bf16: inference 30.00 scenes/s" in lines["eval_throughput"]
    assert "cuda:nccl" in lines["ddp"]
    assert (
        "device_bf16_vs_device_fp32: delta mAP 0.0, AP50 0.0 (|delta| <= 0.05: close)"
        in lines["tiny_pipeline"]
    )
