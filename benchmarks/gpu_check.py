"""One command that measures the GPU path: environment, a tiny pipeline against CPU, throughput, DDP.

    python benchmarks/gpu_check.py --out DIR [--device cuda|cpu] [--reduced]
        [--sections doctor,train_throughput,...] [--time-limit SECONDS] [--limit-scale FACTOR]

Writes DIR/gpu_check.json (rewritten after every section, so a cut-short call keeps what it
measured) and DIR/logs/<section>.log (the subprocesses' output), and prints a summary with each
section's time.
Every section runs in its own fresh process group with a time limit: one that raises, crashes
(a CUDA fault poisons only its own process) or runs out of time records its error text and the
others go on. The exit code is 1 when any section failed. Parts that need CUDA are recorded as
skipped with the reason when the device is the CPU, never left out silently.

Sections, in the order they run (the figures the GPU estimate needs first):
  doctor            `beep3d doctor`'s checks on the device (pipeline.cli.run_doctor: versions,
                    the sparse UNet forward + backward) plus torch / CUDA / cuDNN / spconv
                    versions, the device name and the spconv algorithm used.
  train_throughput  the training loop's own step (`TrainingRun.step`, beep3d mode past the teacher
                    warm-up: student, box queries, teacher, consistency losses, EMA) on
                    ScanNet-size synthetic scenes, `train.batch_size` scenes per step: step time,
                    scenes/s and peak memory (torch.cuda.max_memory_allocated on CUDA, RSS growth
                    on CPU) of the default model and of the full-size (MAFT) setting at 0.02 m,
                    fp32 and `train.amp: bf16` (CUDA only), warm-up steps excluded; then the
                    estimate of one full-size ScanNet v2 training (per-step time x steps).
  eval_throughput   scenes/s of inference (`predict_scenes`, fp32 and bf16 on CUDA) and of the
                    ScanNet evaluator (eval_bench.py's scenes), and of both together.
  ddp               torchrun with one process through the distributed training path
                    (benchmarks/ddp_one_rank.py): the project's process group (NCCL for CUDA
                    tensors + gloo on CUDA; gloo alone on CPU), DDP, a few steps, an all-reduce
                    per backend; success and seconds per step.
  tiny_pipeline     the stages download (synthetic) -> preprocess -> train -> evaluate as
                    subprocesses in a temporary folder (train with --no-tracking: GPU images carry
                    no MLflow): on the device in fp32, on CUDA also with `train.amp: bf16`, and on
                    CUDA a CPU reference of the same params, run at the same time on the host's
                    cores; val mAP / AP50 compared with a stated tolerance (close, not bitwise).
                    Full size is the CI-size pipeline (.ci/params-ci.yaml).

--reduced: tiny scenes and models, 1-2 epochs / steps (the test suite runs it on CPU, about a
minute). Full size is meant for one GPU: about 5-6 minutes expected on an H100 (not yet measured),
cut at --time-limit (default 540 s). It needs torch with CUDA, a matching spconv wheel (`beep3d
doctor` names it), numpy, scipy, pyarrow, plyfile, click, pyyaml, tqdm, psutil; not MLflow or DVC.
The project need not be installed: the repository root goes on the path.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Only the standard library at module level: each section re-imports this module in a fresh
# process and imports torch and the project itself.
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCANNET_TRAIN_SCENES = 1201  # ScanNet v2 train split
SCANNET_VAL_SCENES = 312
FULL_SIZE_VOXEL = 0.02  # m, ScanNet's training voxel
GIB = 2**30

SECTION_ORDER = ("doctor", "train_throughput", "eval_throughput", "ddp", "tiny_pipeline")
# Seconds each section may take: expected well under (full size on one H100, reduced on 2 CPU cores).
LIMITS_S = {
    "full": {"doctor": 120, "train_throughput": 180, "eval_throughput": 90, "ddp": 90, "tiny_pipeline": 300},
    "reduced": {"doctor": 60, "train_throughput": 90, "eval_throughput": 60, "ddp": 90, "tiny_pipeline": 120},
}
DEFAULT_TIME_LIMIT_S = {"full": 540, "reduced": 300}

# The tiny pipeline's device run against its CPU reference (and bf16 against fp32): a sanity bound
# that catches a broken device path (AP collapsing, NaN losses), not a statistical equivalence. On
# a val set this small one seed differs from another by about 0.1 AP50 (DESIGN section 3), so a
# miss calls for runs over seeds before any conclusion.
AP_TOLERANCE = {"mAP": 0.05, "AP50": 0.05}
NO_CUDA = "no CUDA device: the check ran with --device cpu"
# Torch threads of the tiny pipeline's CPU reference on a GPU host (16 cores there): the same maths
# in another summation order, sooner than on one thread.
REFERENCE_THREADS = 4


class SectionError(RuntimeError):
    """A section failed but has figures worth keeping (e.g. the doctor's output)."""

    def __init__(self, message: str, figures: dict[str, Any]):
        super().__init__(message)
        self.figures = figures


@dataclass(frozen=True)
class Check:
    device: str  # "cuda" or "cpu"
    reduced: bool  # tiny sizes (tests, CPU)
    logs: str  # subprocesses' logs (under --out)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def log_path(self, section: str, name: str) -> Path:
        path = Path(self.logs) / section / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def skipped(reason: str) -> dict[str, str]:
    return {"skipped": reason}


# --- shared helpers (run inside a section's process) -------------------------------------------


def _project_imports() -> None:
    """The project without an install (a GPU image's own Python) and the sibling benchmarks
    (train_bench, eval_bench)."""
    for folder in (REPO, HERE):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def base_run_config() -> Any:
    """params.yaml's model / data_loader / train / inference as a RunConfig."""
    from pipeline.config import build, load_params
    from pipeline.training import RunConfig

    params = load_params(REPO / "params.yaml")
    return build(RunConfig, {k: params[k] for k in ("model", "data_loader", "train", "inference")}, "params")


def full_size_model(model: Any) -> Any:
    """README "Full-size setting": params' model with MAFT's widths, depth and decoder size."""
    from dataclasses import replace

    from beep3d.model.model import ModelConfig

    maft = ModelConfig.maft(model.num_classes)
    sizes = ("widths", "blocks_per_level", "d_model", "n_heads", "n_layers", "n_queries", "ffn_dim")
    return replace(model, **{name: getattr(maft, name) for name in sizes})


def model_settings(check: Check) -> dict[str, tuple[Any, float]]:
    """{name: (ModelConfig, model voxel)}: params' default model, and in full size also MAFT's."""
    run = base_run_config()
    settings = {"default": (run.model, run.data_loader.voxel_size)}
    if not check.reduced:
        settings["full_size"] = (full_size_model(run.model), FULL_SIZE_VOXEL)
    return settings


def amp_modes(check: Check) -> dict[str, str | None]:
    """{amp: None (measured) or the reason it is skipped}."""
    return {"off": None, "bf16": None if check.cuda else f"bf16 autocast is CUDA-only ({NO_CUDA})"}


def measured_variants(check: Check) -> Iterator[tuple[str, Any, float, str, str | None]]:
    """(key, ModelConfig, model voxel, amp, None or why skipped) of every model setting at every
    precision, keyed "<setting>/<fp32|bf16>" as the JSON names them."""
    for name, (model_cfg, voxel) in model_settings(check).items():
        for amp, reason in amp_modes(check).items():
            yield f"{name}/{'fp32' if amp == 'off' else amp}", model_cfg, voxel, amp, reason


def build_scenes(out: Path, n_scenes: int, scannet_size: bool) -> list[tuple[str, int]]:
    """Synthetic train scenes, processed: at ScanNet density (~150k vertices), or the pipeline's
    default rooms (~15-40k vertices)."""
    _project_imports()
    from train_bench import build_processed_scenes

    from beep3d.data.synthetic import default_config

    if scannet_size:
        return build_processed_scenes(out, 150_000, n_scenes)
    return build_processed_scenes(out, 20_000, n_scenes, synthetic=default_config())


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_logged(cmd: list[str], log: Path, cwd: Path, env: dict[str, str]) -> float:
    """Run cmd with stdout + stderr to `log`; wall seconds, or an error with the log's tail."""
    started = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {code} (log {log.stem} in logs/):\n{tail}")
    return time.perf_counter() - started


def subprocess_env() -> dict[str, str]:
    """The project importable from any folder without an install (a GPU image's own Python)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
    }


# --- doctor ------------------------------------------------------------------------------------


def device_properties(on_gpu: bool) -> dict[str, Any]:
    import torch

    if not on_gpu:
        return {
            "device_name": platform.processor() or "cpu",
            "compute_capability": None,
            "gpu_memory_gib": None,
        }
    props = torch.cuda.get_device_properties(0)
    return {
        "device_name": props.name,
        "compute_capability": [props.major, props.minor],
        "gpu_memory_gib": props.total_memory / GIB,
    }


def section_doctor(check: Check) -> dict[str, Any]:
    import torch

    from beep3d.backend import conv_algo
    from pipeline.cli import _distributions, run_doctor

    lines: list[str] = []
    passed = run_doctor(check.device, echo=lines.append)
    cuda = torch.cuda.is_available()
    figures: dict[str, Any] = {
        "passed": passed,
        "output": lines,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "spconv": dict(_distributions("spconv")),
        "cumm": dict(_distributions("cumm")),
        "cuda_available": cuda,
        "device": check.device,
        **device_properties(check.cuda and cuda),
        "spconv_algo": conv_algo(check.device).name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if not passed:
        raise SectionError("beep3d doctor found problems:\n" + "\n".join(lines), figures)
    return figures


# --- train_throughput ---------------------------------------------------------------------------


def measure_training(run_cfg: Any, data: Path, device: Any, warmup: int, steps: int) -> dict[str, Any]:
    """The training loop's step on the dataset's batches, warm-up excluded; peak memory."""
    import torch
    from train_bench import PeakRss

    from beep3d.engine import batch_to
    from pipeline.training import TrainingRun

    torch.manual_seed(0)
    run = TrainingRun(run_cfg, data, device)
    late = run_cfg.train.beep3d.pseudo_warmup_steps  # teacher, pseudo-masks' path and consistency on
    step_s, batch, losses = [], None, {}

    def one_step(i: int) -> float:
        nonlocal batch, losses
        run.train_set.set_epoch(i)  # a new augmentation every step, as across epochs
        batch = batch_to(next(iter(run.loader)), device)
        synchronize(device)
        started = time.perf_counter()
        losses = run.step(batch, late + i, 1e-4)
        synchronize(device)
        return time.perf_counter() - started

    for i in range(warmup):
        one_step(i)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup, warmup + steps):
        step_s.append(one_step(i))
    if device.type == "cuda":
        memory = {
            "peak_bytes": torch.cuda.max_memory_allocated(device),
            "kind": "torch.cuda.max_memory_allocated",
        }
    else:
        with PeakRss() as rss:  # an extra, untimed step: sampling RSS slows the step it watches
            one_step(warmup + steps)
        memory = {"peak_bytes": rss.growth, "kind": "RSS growth during one step (psutil, sampled every 2 ms)"}
    assert batch is not None
    median = statistics.median(step_s)
    return {
        "step_s": step_s,
        "median_step_s": median,
        "scenes_per_step": batch["batch_size"],
        "scenes_per_s": batch["batch_size"] / median,
        "peak_memory_gib": memory["peak_bytes"] / GIB,
        "peak_memory_kind": memory["kind"],
        "voxels_per_step": len(batch["coords"]),
        "superpoints_per_step": int(batch["sp_offsets"][-1]),
        "parameters_m": sum(p.numel() for p in run.model.parameters()) / 1e6,
        "last_total_loss": losses["total"],
        "loss_finite": math.isfinite(losses["total"]),
    }


def scannet_training_estimate(per_step_s: float, batch_size: int, epochs: int) -> dict[str, Any]:
    """One full-size ScanNet v2 training: per-step time x ceil(1201 / batch size) x epochs."""
    steps_per_epoch = math.ceil(SCANNET_TRAIN_SCENES / batch_size)
    steps = steps_per_epoch * epochs
    return {
        "formula": "median step time x ceil(1201 train scenes / train.batch_size) x train.epochs",
        "batch_size": batch_size,
        "epochs": epochs,
        "steps": steps,
        "hours_per_epoch": per_step_s * steps_per_epoch / 3600,
        "hours": per_step_s * steps / 3600,
    }


def section_train_throughput(check: Check) -> dict[str, Any]:
    from dataclasses import replace

    import torch

    from beep3d.backend import resolve_device
    from pipeline.training import RunConfig

    _project_imports()
    device = resolve_device(check.device)
    base = base_run_config()
    torch.set_num_threads(base.train.threads or torch.get_num_threads())
    warmup, steps = (1, 2) if check.reduced else (3, 5)
    figures: dict[str, Any] = {"warmup_steps": warmup, "timed_steps": steps, "device": str(device)}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        scenes = build_scenes(Path(tmp), base.train.batch_size, scannet_size=not check.reduced)
        figures["scenes"] = dict(scenes)
        for key, model_cfg, voxel, amp, reason in measured_variants(check):
            if reason:
                figures[key] = skipped(reason)
                continue
            cfg = RunConfig(
                model=model_cfg,
                data_loader=replace(base.data_loader, voxel_size=voxel, max_points=0),
                train=replace(base.train, device=check.device, amp=amp, eval_every=0),
                inference=base.inference,
            )
            try:
                figures[key] = {
                    "voxel_size": voxel,
                    **measure_training(cfg, Path(tmp), device, warmup, steps),
                }
            except Exception:
                figures[key] = {"error": traceback.format_exc(limit=-3)}
                failures.append(key)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    estimates = {}
    for key, value in figures.items():
        if key.startswith("full_size/") and "median_step_s" in value:
            estimates[key] = scannet_training_estimate(
                value["median_step_s"], base.train.batch_size, base.train.epochs
            )
    figures["scannet_estimate"] = estimates or skipped(
        "needs the full-size setting measured (not in --reduced form)"
        if check.reduced
        else "full-size runs failed"
    )
    if failures:
        raise SectionError(f"training failed for {failures}", figures)
    return figures


# --- eval_throughput ----------------------------------------------------------------------------


def measure_inference(
    model_cfg: Any, voxel: float, data: Path, device: Any, amp: str, repeats: int
) -> dict[str, Any]:
    """Seconds per scene of `predict_scenes` (forward, masks, NMS, CSR point masks), untrained
    weights (timing only), one scene per batch, after one untimed pass."""
    from dataclasses import replace

    import torch

    from beep3d.data.dataset import SceneDataset, make_loader
    from beep3d.engine import batch_to, predict_scenes
    from beep3d.precision import precision_for
    from pipeline.training import build_model

    base = base_run_config()
    dataset = SceneDataset(
        data, "train", replace(base.data_loader, voxel_size=voxel), with_ground_truth=False, train=False
    )
    batches = [batch_to(b, device) for b in make_loader(dataset, 1, shuffle=False, seed=0, num_workers=0)]
    torch.manual_seed(0)
    model = build_model(model_cfg, device)
    precision = precision_for(amp, device)  # what `train.amp` gives the teacher's forward
    times, masks = [], 0
    for rep in range(repeats + 1):
        for batch in batches:
            synchronize(device)
            started = time.perf_counter()
            (pred,) = predict_scenes(model, batch, base.inference, precision)
            synchronize(device)
            if rep > 0:
                times.append(time.perf_counter() - started)
                masks += len(pred.classes)
    per_scene = statistics.median(times)
    return {"voxel_size": voxel, "s_per_scene": per_scene, "scenes_per_s": 1 / per_scene,
            "masks_per_scene": masks / len(times)}  # fmt: skip


def measure_evaluator(n_scenes: int, vertices: int) -> dict[str, Any]:
    """Seconds per scene of the ScanNet evaluator on eval_bench.py's scenes (CPU)."""
    import numpy as np
    import scipy.sparse
    from eval_bench import make_scene

    from beep3d.classes import SCANNET
    from beep3d.eval.ap import Evaluator, ScenePred

    rng = np.random.default_rng(0)
    scenes = [make_scene(rng, f"scene{i:04d}_00", vertices) for i in range(n_scenes)]
    preds = [ScenePred(p.scene_id, scipy.sparse.csr_array(p.masks), p.classes, p.scores) for _, p in scenes]
    started = time.perf_counter()
    evaluator = Evaluator(SCANNET)
    for (gt, _), pred in zip(scenes, preds, strict=True):
        evaluator.add(gt, pred)
    result = evaluator.result()
    per_scene = (time.perf_counter() - started) / n_scenes
    return {"scenes": n_scenes, "vertices": vertices, "s_per_scene": per_scene, "scenes_per_s": 1 / per_scene,
            "mAP_of_the_synthetic_predictions": result["mAP"]}  # fmt: skip


def section_eval_throughput(check: Check) -> dict[str, Any]:
    import torch

    from beep3d.backend import resolve_device

    _project_imports()
    device = resolve_device(check.device)
    base = base_run_config()
    torch.set_num_threads(base.train.threads or torch.get_num_threads())
    repeats = 1 if check.reduced else 3
    figures: dict[str, Any] = {"device": str(device)}
    failures = []
    evaluator = measure_evaluator(2 if check.reduced else 8, 150_000)  # ScanNet's mean scene size
    figures["evaluator"] = evaluator
    with tempfile.TemporaryDirectory() as tmp:
        figures["scenes"] = dict(build_scenes(Path(tmp), 2, scannet_size=not check.reduced))
        for key, model_cfg, voxel, amp, reason in measured_variants(check):
            if reason:
                figures[key] = skipped(reason)
                continue
            try:
                inference = measure_inference(model_cfg, voxel, Path(tmp), device, amp, repeats)
            except Exception:
                figures[key] = {"error": traceback.format_exc(limit=-3)}
                failures.append(key)
                continue
            per_scene = inference["s_per_scene"] + evaluator["s_per_scene"]
            figures[key] = {
                "inference": inference,
                "inference_plus_evaluator_scenes_per_s": 1 / per_scene,
                "scannet_val_minutes": skipped("measured on small rooms, not ScanNet-size scenes")
                if check.reduced
                else SCANNET_VAL_SCENES * per_scene / 60,
            }
    if failures:
        raise SectionError(f"inference failed for {failures}", figures)
    return figures


# --- ddp ----------------------------------------------------------------------------------------


def section_ddp(check: Check) -> dict[str, Any]:
    import yaml

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        build_scenes(tmp / "processed", 4, scannet_size=False)  # a check of the path, not of speed
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        # 4 scenes, 2 per step, 2 epochs: 4 steps, one checkpoint at the end.
        params["train"].update(device=check.device, epochs=2, checkpoint_every=2, eval_every=0, threads=1)
        if check.reduced:  # tests/test_distributed.py's model size
            params["model"].update(widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=6, ffn_dim=32)
        (tmp / "params.yaml").write_text(yaml.safe_dump(params))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
               str(HERE / "ddp_one_rank.py"), "--params", str(tmp / "params.yaml"),
               "--data", str(tmp / "processed"), "--out", str(tmp / "ddp.json")]  # fmt: skip
        wall = run_logged(cmd, check.log_path("ddp", "torchrun"), REPO, subprocess_env())
        figures = json.loads((tmp / "ddp.json").read_text())
    figures["torchrun_wall_s"] = wall
    figures["gloo"] = {"used": "gloo" in figures["backend"]}
    figures["nccl"] = (
        {"used": "nccl" in figures["backend"]}
        if check.cuda
        else skipped(
            f"NCCL reduces CUDA tensors only; {NO_CUDA}, so the group is gloo alone (pipeline/distributed.py)"
        )
    )
    problems = [f"all-reduce of a {k}: {v}" for k, v in figures["all_reduce"].items() if v != "ok"]
    if check.cuda and "nccl" not in figures["backend"]:
        problems.append(f"CUDA run without NCCL (backend {figures['backend']})")
    if check.cuda and "cuda_tensor" not in figures["all_reduce"]:
        problems.append("no all-reduce of a CUDA tensor ran")
    if not figures["losses_finite"]:
        problems.append("non-finite loss")
    if problems:
        raise SectionError("; ".join(problems), figures)
    return figures


# --- tiny_pipeline ------------------------------------------------------------------------------


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Nested override of params (as .ci/pipeline.sh merges .ci/params-ci.yaml)."""
    for key, value in over.items():
        if isinstance(value, dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def tiny_pipeline_params(check: Check) -> dict[str, Any]:
    """Reduced: tests/test_pipeline_dvc.py's tiny params. Full size: the CI-size pipeline
    (.ci/params-ci.yaml: 24 + 8 scenes, 12 epochs, no augmentation) with the evaluate stage's
    val AP only (no in-training evaluation) and the host's cores for data preparation."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if check.reduced:
        params["data"]["synthetic"].update(n_train=3, n_val=2)
        params["data"]["workers"] = params["preprocess"]["workers"] = 1
        params["model"].update(widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=8, ffn_dim=16)
        params["train"].update(epochs=1, batch_size=2, threads=1, eval_every=0)
        return params
    merge(params, yaml.safe_load((REPO / ".ci/params-ci.yaml").read_text()))
    workers = min(8, os.cpu_count() or 1)
    params["data"]["workers"] = params["preprocess"]["workers"] = workers
    params["train"]["eval_every"] = 0
    return params


def pipeline_run(
    check: Check, name: str, params: dict[str, Any], workdir: Path, data: Path
) -> dict[str, Any]:
    """Train and evaluate stages of one run (own params file and outputs) on prepared data."""
    import yaml

    out = workdir / name
    out.mkdir()
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = subprocess_env()
    p = str(out / "params.yaml")
    train_s = run_logged(
        [sys.executable, "-m", "stages.train", "--params", p, "--data", str(data), "--model", str(out / "model.pt"),
         "--resume", str(out / "checkpoints"), "--history", str(out / "history.json"),
         "--summary", str(out / "summary.json"), "--no-tracking", "--no-progress"],
        check.log_path("tiny_pipeline", f"{name}-train"), out, env,
    )  # fmt: skip
    evaluate_s = run_logged(
        [sys.executable, "-m", "stages.evaluate", "--params", p, "--data", str(data), "--model", str(out / "model.pt"),
         "--metrics", str(out / "metrics.json"), "--submission", str(out / "submission")],
        check.log_path("tiny_pipeline", f"{name}-evaluate"), out, env,
    )  # fmt: skip
    val = json.loads((out / "metrics.json").read_text())["val"]
    history = json.loads((out / "history.json").read_text())
    last_epoch = max(row["epoch"] for row in history)
    losses = [row["total"] for row in history if "total" in row and row["epoch"] == last_epoch]
    return {
        "device": params["train"]["device"],
        "amp": params["train"]["amp"],
        "train_s": train_s,
        "evaluate_s": evaluate_s,
        "val": {k: val[k] for k in ("mAP", "AP50", "AP25", "n_gt_instances")},
        "last_epoch_mean_loss": statistics.mean(losses),
        "steps": sum(1 for row in history if "total" in row),
    }


def compare_runs(run: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Val AP differences (run - reference) against AP_TOLERANCE, and the last epoch's loss."""
    delta = {}
    for key in AP_TOLERANCE:
        a, b = run["val"][key], reference["val"][key]
        delta[key] = None if a is None or b is None else a - b
    known = [abs(d) <= AP_TOLERANCE[k] for k, d in delta.items() if d is not None]
    return {
        "delta": delta,
        "tolerance_abs": AP_TOLERANCE,
        "close": all(known) if known else None,
        "meaning": "close, not bitwise: different kernels round differently and training drifts apart",
        "last_epoch_loss_relative_difference": (
            run["last_epoch_mean_loss"] - reference["last_epoch_mean_loss"]
        )
        / abs(reference["last_epoch_mean_loss"]),
    }


def with_train(params: dict[str, Any], **train: Any) -> dict[str, Any]:
    return {**params, "train": {**params["train"], **train}}


def section_tiny_pipeline(check: Check) -> dict[str, Any]:
    import yaml

    params = tiny_pipeline_params(check)
    syn, t = params["data"]["synthetic"], params["train"]
    figures: dict[str, Any] = {
        "size": {"n_train": syn["n_train"], "n_val": syn["n_val"], "epochs": t["epochs"],
                 "batch_size": t["batch_size"], "widths": params["model"]["widths"], "seed": t["seed"]},
        "runs": {},
    }  # fmt: skip
    runs = figures["runs"]
    with tempfile.TemporaryDirectory() as tmp_dir:
        workdir = Path(tmp_dir)
        (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = subprocess_env()
        p = str(workdir / "params.yaml")
        figures["download_s"] = run_logged(
            [sys.executable, "-m", "stages.download", "--params", p, "--out", str(workdir / "raw")],
            check.log_path("tiny_pipeline", "download"), workdir, env,
        )  # fmt: skip
        figures["preprocess_s"] = run_logged(
            [sys.executable, "-m", "stages.preprocess", "--params", p, "--raw", str(workdir / "raw"),
             "--out", str(workdir / "processed"), "--no-progress"],
            check.log_path("tiny_pipeline", "preprocess"), workdir, env,
        )  # fmt: skip
        data = workdir / "processed"
        errors: dict[str, str] = {}

        def attempt(name: str, run_params: dict[str, Any]) -> None:
            try:
                runs[name] = pipeline_run(check, name, run_params, workdir, data)
            except Exception as err:
                errors[name] = str(err)
                runs[name] = {"error": str(err)}

        reference = None
        if check.cuda:  # the CPU reference runs on the host's cores meanwhile
            cpu_params = with_train(params, device="cpu", amp="off", threads=REFERENCE_THREADS)
            reference = threading.Thread(target=attempt, args=("cpu_reference", cpu_params))
            reference.start()
        else:
            runs["cpu_reference"] = skipped(
                "the device is the CPU: the reference would be this run again (a CPU run of the same "
                "params reproduces bitwise, tests/test_pipeline_dvc.py)"
            )
        attempt("device_fp32", with_train(params, device=check.device, amp="off"))
        if check.cuda:
            attempt("device_bf16", with_train(params, device=check.device, amp="bf16"))
        else:
            runs["device_bf16"] = skipped(f"train.amp bf16 is CUDA-only ({NO_CUDA})")
        if reference is not None:
            reference.join()
    figures["comparisons"] = comparisons(runs, check)
    if errors:
        raise SectionError("; ".join(f"{k}: {v}" for k, v in errors.items()), figures)
    return figures


def comparisons(runs: dict[str, Any], check: Check) -> dict[str, Any]:
    pairs = {"device_fp32_vs_cpu_reference": ("device_fp32", "cpu_reference"),
             "device_bf16_vs_device_fp32": ("device_bf16", "device_fp32")}  # fmt: skip
    result: dict[str, Any] = {}
    for name, (a, b) in pairs.items():
        if "val" in runs.get(a, {}) and "val" in runs.get(b, {}):
            result[name] = compare_runs(runs[a], runs[b])
        else:
            reason = NO_CUDA if not check.cuda else "a run of the pair failed"
            result[name] = skipped(reason)
    return result


SECTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "doctor": section_doctor,
    "train_throughput": section_train_throughput,
    "eval_throughput": section_eval_throughput,
    "ddp": section_ddp,
    "tiny_pipeline": section_tiny_pipeline,
}


# --- running the sections -----------------------------------------------------------------------


def _child(name: str, check: dict[str, Any], conn: Any) -> None:
    """A section in its own process group, so that a timed-out section is killed with every
    process it started (stages, torchrun)."""
    os.setpgrp()
    _project_imports()
    try:
        conn.send({"status": "ok", "figures": SECTIONS[name](Check(**check))})
    except SectionError as err:
        conn.send({"status": "failed", "figures": err.figures, "error": traceback.format_exc()})
    except BaseException:
        conn.send({"status": "failed", "error": traceback.format_exc()})


def run_section(name: str, check: Check, limit_s: float) -> dict[str, Any]:
    """Run one section in a fresh spawned process; its record (status, seconds, figures / error)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(name, asdict(check), send), name=f"gpu_check {name}")
    started = time.perf_counter()
    process.start()
    send.close()
    record: dict[str, Any]
    try:
        record = receive.recv() if receive.poll(limit_s) else {"status": "timed_out"}
    except EOFError:  # died without an answer: a crash in native code, or the OOM killer
        record = {"status": "failed"}
    if record["status"] == "timed_out":
        record["error"] = f"no result within {limit_s:.0f} s: killed"
    if process.is_alive():
        os.killpg(process.pid, signal.SIGKILL)
    process.join()
    if record["status"] == "failed" and "error" not in record:
        record["error"] = f"the section's process died without a result (exit code {process.exitcode})"
    return {"status": record["status"], "seconds": time.perf_counter() - started, "limit_s": limit_s,
            **{k: record[k] for k in ("figures", "error") if k in record}}  # fmt: skip


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def merge_logs(logs: Path) -> None:
    """logs/<section>/<step>.log -> logs/<section>.log, one file per section with a header per
    step: fewer files to bring back from a GPU machine, none lost when a section was killed."""
    for folder in sorted(p for p in logs.glob("*") if p.is_dir()):
        with open(logs / f"{folder.name}.log", "a") as merged:
            for part in sorted(folder.glob("*.log")):
                merged.write(f"===== {part.stem} =====\n{part.read_text(errors='replace')}\n")
                part.unlink()
        folder.rmdir()


def write_result(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, path)


# --- the printed summary ------------------------------------------------------------------------


def _state(value: dict[str, Any]) -> str | None:
    """'skipped' / 'FAILED' for an entry without figures, None for a measured one."""
    return "skipped" if "skipped" in value else "FAILED" if "error" in value else None


def _measured(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-setting entries ("default/fp32", "full_size/bf16", ...) of a section."""
    return {k: v for k, v in figures.items() if "/" in k and isinstance(v, dict)}


def doctor_lines(f: dict[str, Any]) -> list[str]:
    spconv = ", ".join(f"{k} {v}" for k, v in f["spconv"].items())
    return [f"torch {f['torch']} (CUDA build {f['torch_cuda_build']}), {spconv}, {f['device_name']}, "
            f"spconv algorithm {f['spconv_algo']}"]  # fmt: skip


def train_lines(f: dict[str, Any]) -> list[str]:
    lines = []
    for k, v in _measured(f).items():
        lines.append(f"{k}: " + (_state(v) or f"{v['median_step_s']:.3f} s/step, {v['scenes_per_s']:.2f} "
                                 f"scenes/s, {v['peak_memory_gib']:.2f} GiB"))  # fmt: skip
    estimates = {} if "skipped" in f["scannet_estimate"] else f["scannet_estimate"]
    for key, est in estimates.items():
        lines.append(f"ScanNet v2 estimate ({key}): {est['steps']} steps = {est['hours']:.1f} h "
                     f"({est['hours_per_epoch']:.2f} h/epoch)")  # fmt: skip
    return lines


def eval_lines(f: dict[str, Any]) -> list[str]:
    lines = [f"evaluator: {f['evaluator']['scenes_per_s']:.2f} scenes/s"]
    for k, v in _measured(f).items():
        lines.append(f"{k}: " + (_state(v) or f"inference {v['inference']['scenes_per_s']:.2f} scenes/s, "
                                 f"with evaluator {v['inference_plus_evaluator_scenes_per_s']:.2f} scenes/s"))  # fmt: skip
    return lines


def ddp_lines(f: dict[str, Any]) -> list[str]:
    return [f"backend {f['backend']}, world {f['world_size']}, {f['steps']} steps, "
            f"{f['seconds_per_step']:.3f} s/step on {f['device']}"]  # fmt: skip


def pipeline_lines(f: dict[str, Any]) -> list[str]:
    lines = []
    for run, value in f["runs"].items():
        v = value.get("val")
        lines.append(f"{run}: " + (_state(value) or f"mAP {v['mAP']:.3f} AP50 {v['AP50']:.3f} "
                                   f"AP25 {v['AP25']:.3f}, train {value['train_s']:.0f} s"))  # fmt: skip
    for pair, value in f["comparisons"].items():
        if "delta" in value:
            verdict = {True: "close", False: "MISS", None: "n/a"}[value["close"]]
            lines.append(f"{pair}: delta mAP {value['delta']['mAP']}, AP50 {value['delta']['AP50']} "
                         f"(|delta| <= {AP_TOLERANCE['mAP']}: {verdict})")  # fmt: skip
    return lines


HEADLINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "doctor": doctor_lines,
    "train_throughput": train_lines,
    "eval_throughput": eval_lines,
    "ddp": ddp_lines,
    "tiny_pipeline": pipeline_lines,
}


def print_summary(result: dict[str, Any]) -> None:
    print(f"\n== gpu_check: device {result['device']}, {'reduced' if result['reduced'] else 'full size'}, "
          f"{result['total_seconds']:.0f} s")  # fmt: skip
    for name, record in result["sections"].items():
        print(
            f"{name:<17} {record['status']:<10} {record['seconds']:7.1f} s (limit {record['limit_s']:.0f} s)"
        )
        if "figures" in record:
            try:
                for line in HEADLINES[name](record["figures"]):
                    print(f"    {line}")
            except (KeyError, TypeError, ValueError) as err:  # a summary line must not hide the JSON
                print(f"    (figures in the JSON; summary line failed: {err!r})")
        error_lines = record.get("error", "").strip().splitlines()
        if record["status"] != "ok" and error_lines:
            print(f"    error: {error_lines[-1]}")
    print(f"failed: {', '.join(result['failed']) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and logs/")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--reduced", action="store_true", help="tiny sizes (tests, CPU)")
    parser.add_argument("--sections", default=",".join(SECTION_ORDER), help="comma-separated subset")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for all sections together")
    parser.add_argument(
        "--limit-scale",
        type=float,
        default=1.0,
        help="multiply each section's limit (a slower device, or full size on CPU)",
    )
    args = parser.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(SECTION_ORDER)}")
    _project_imports()  # the spawned sections inherit sys.path
    size = "reduced" if args.reduced else "full"
    budget = args.time_limit or DEFAULT_TIME_LIMIT_S[size] * args.limit_scale
    limits = {name: limit * args.limit_scale for name, limit in LIMITS_S[size].items()}

    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.device, args.reduced, str((args.out / "logs").resolve()))
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": args.device,
        "reduced": args.reduced,
        "git_commit": git_commit(),
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "time_limit_s": budget,
        "sections": {},
    }
    path = args.out / "gpu_check.json"
    started = time.perf_counter()
    for name in [n for n in SECTION_ORDER if n in names]:
        left = budget - (time.perf_counter() - started)
        if left < 10:
            result["sections"][name] = {"status": "failed", "seconds": 0.0, "limit_s": 0.0,
                                        "error": f"not run: the --time-limit of {budget:.0f} s was used up"}  # fmt: skip
            continue
        print(f"-- {name} (limit {min(limits[name], left):.0f} s)", flush=True)
        record = run_section(name, check, min(limits[name], left))
        result["sections"][name] = record
        print(f"   {record['status']} in {record['seconds']:.1f} s", flush=True)
        result["total_seconds"] = time.perf_counter() - started
        write_result(path, result)
        merge_logs(Path(check.logs))
    result["total_seconds"] = time.perf_counter() - started
    result["failed"] = [n for n, r in result["sections"].items() if r["status"] != "ok"]
    write_result(path, result)
    print_summary(result)
    print(f"-> {path}")
    sys.exit(1 if result["failed"] else 0)


if __name__ == "__main__":
    main()
