"""Training-step time and peak memory per scene on CPU: the default and the MAFT-size model.

    .venv/bin/python benchmarks/train_bench.py [--threads 2] [--steps 5] [--warmup 2]
        [--config small|maft|both] [--mode full|box_heuristic] [--vertices 150000]
        [--params params.yaml] [--mem-steps 2] [--profile N] [--verbose]

Builds one ScanNet-size synthetic scene (the train scene among the generator's first few whose
vertex count is nearest `--vertices`) into a temporary processed dataset, and loads it through
`SceneDataset(train=True)` at 0.02 m voxels, whole scene, with params.yaml's augmentation (a new
augmentation every step: `set_epoch(step)`). For each model config, every step times, on the same
batch and one after the other:

  data        dataset item (read + augment + voxelize + point-in-box) + collate + targets
  bare UNet   the backbone alone on the batch's sparse tensor, forward + backward of out.sum()
  whole step  `beep3d.engine.train_step`: forward, matching, losses, backward, gradient
              clipping, AdamW step. This is the criterion step alone; the training loop adds
              the box-query decoder pass (`train.box_query_weight`) and, in beep3d mode, the
              teacher (benchmarks/beep3d_step_bench.py times the loop's own step)

and breaks the whole step down with timers hooked into the same call (no copy of the step):

  checks      `_check_batch` (input validation in the model's forward)
  backbone    SparseUNet.forward (including spconv's index-pair building)
  sp pooling  `pool_superpoints`
  decoder     the rest of the model's forward: projections, queries, padding, decoder layers, heads
  matching    HungarianMatcher.__call__ over all layers (cost matrices + linear_sum_assignment)
  losses      the rest of the criterion (per-layer loss terms and their weighted total)
  bwd head    backward from the loss until the first backbone parameter receives its gradient
              (decoder, heads, pooling; also assert_finite and zero_grad, which are tiny)
  bwd bbone   from there until the last parameter gradient is accumulated (the backbone's backward)
  clip        gradient-norm clipping (between the last gradient and the optimiser step)
  optimiser   AdamW step (optimizer step hooks)

All times are medians over `--steps` steps after `--warmup` steps (the breakdown's medians need
not add up exactly to the median step). Peak memory comes from `--mem-steps` further steps that
are not timed: the RSS growth during the bare UNet and during the whole step above the RSS just
before each, sampled every ~2 ms by a thread (psutil). Freed heap memory is handed back to the OS
(glibc malloc_trim) before each of them so that the baseline is the live set, not the
allocator's cache; the page faults this causes would slow a timed step, hence separate steps. A
peak shorter than the sampling interval can be missed.

The bare UNet and the whole step run in alternating order (even steps bare first), since the
first pass over a new batch is slower. Wall times on a shared 2-core machine move with whatever
else runs: the ratio is also printed as the median of each step's own (whole / bare) pair, and
as a ratio of this process's CPU time. With 2 threads a busy machine inflates CPU time too
(OpenMP threads spin while they wait for each other); with `--threads 1` the CPU-time ratio is
the figure least affected by other load.

Targets: whole step <= 1.5 x bare UNet (forward + backward), printed as PASS / MISS, and the
share of the step (with data) spent outside the backbone's forward and backward.
Reference: a bare MAFT-size spconv UNet took 2.6 s forward + backward on an 80k-voxel real
ScanNet scene on this machine (2 cores).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import torch

import beep3d.model.model as model_module
from beep3d.backend import import_spconv
from beep3d.data.dataset import SceneDataset, collate
from beep3d.data.preprocess import PreprocessConfig, process_scene, write_points
from beep3d.data.schema import BOXES_SCHEMA, SCENES_SCHEMA, write_table
from beep3d.data.superpoints import SuperpointConfig
from beep3d.data.synthetic import SyntheticConfig, generate_scene, scannet_size_config
from beep3d.engine import batch_to, learning_rate, make_optimizer, make_targets, train_step
from beep3d.loss.criterion import Criterion
from beep3d.model.model import BoxInstanceModel, ModelConfig
from beep3d.model.unet import padded_spatial_shape
from pipeline.config import build, load_params
from pipeline.training import RunConfig, build_model

spconv = import_spconv()

VOXEL_SIZE = 0.02  # ScanNet's training voxel (params.yaml's default is coarser, for CPU runs)
TARGET_RATIO = 1.5  # whole step / bare UNet forward + backward
REFERENCE = "bare MAFT-size spconv UNet, real ScanNet scene of 80k voxels: 2.6 s forward + backward"
REFERENCE_S, REFERENCE_VOXELS = 2.6, 80_000
SCENE_CANDIDATES = 6  # generator scenes searched for the one nearest --vertices
SAMPLE_S = 0.002  # RSS sampling interval
BREAKDOWN = (
    "checks", "backbone", "sp pooling", "decoder", "matching", "losses",
    "bwd head", "bwd bbone", "clip", "optimiser",
)  # fmt: skip
DEVICE = torch.device("cpu")


# --- the scene --------------------------------------------------------------------------------


def build_processed_scene(out_dir: Path, target_vertices: int) -> tuple[str, int]:
    """Write a one-scene processed dataset (points/, boxes.parquet, scenes.parquet) to out_dir.

    Returns (scene id, vertex count) of the generator's train scene nearest target_vertices.
    """
    return build_processed_scenes(out_dir, target_vertices)[0]


def build_processed_scenes(
    out_dir: Path, target_vertices: int, n_scenes: int = 1, synthetic: SyntheticConfig | None = None
) -> list[tuple[str, int]]:
    """Write a processed dataset of the `n_scenes` generator train scenes whose vertex counts are
    nearest target_vertices; returns their (scene id, vertex count). synthetic: the generator's
    config, ScanNet density (`scannet_size_config()`) by default."""
    cfg = synthetic or scannet_size_config()
    scenes = [generate_scene(cfg, i) for i in range(SCENE_CANDIDATES)]
    scenes = [s for s in scenes if s.split == "train"]
    if len(scenes) < n_scenes:
        raise ValueError(
            f"only {len(scenes)} train scenes among the first {SCENE_CANDIDATES}, asked for {n_scenes}"
        )
    chosen = sorted(scenes, key=lambda s: abs(s.n_points - target_vertices))[:n_scenes]
    pre = PreprocessConfig(
        voxel_size=VOXEL_SIZE,
        workers=1,
        on_error="fail",
        computed_superpoints=False,  # the scenes have their own segments; ours are not needed here
        superpoints=SuperpointConfig(
            voxel_size=0.04, k=0.3, normal_weight=1.0, color_weight=2.0, min_size=20
        ),
    )
    pieces = sorted((process_scene(s.to_raw_scene(), pre) for s in chosen), key=lambda p: p.scene_id)
    for piece in pieces:
        write_points(piece, out_dir)
    write_table(pa.concat_tables([p.boxes for p in pieces]), out_dir / "boxes.parquet", BOXES_SCHEMA)
    write_table(
        pa.Table.from_pylist([p.scene_row for p in pieces], schema=SCENES_SCHEMA),
        out_dir / "scenes.parquet",
        SCENES_SCHEMA,
    )
    vertices = {s.scene_id: s.n_points for s in chosen}
    return [(p.scene_id, vertices[p.scene_id]) for p in pieces]


# --- timers and hooks -------------------------------------------------------------------------


class Timer:
    """Named durations (seconds) of the current step; `marks` are named time stamps."""

    def __init__(self) -> None:
        self.spans: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}

    def reset(self) -> None:
        self.spans.clear()
        self.marks.clear()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """fn, with its run time added to spans[name] on every call."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spans[name] += time.perf_counter() - start

        return timed

    def mark(self, name: str, first: bool = False) -> None:
        """Stamp `name` now (first=True: only if it has no stamp yet in this step)."""
        if not (first and name in self.marks):
            self.marks[name] = time.perf_counter()


class TimedCriterion:
    """A Criterion whose call and matcher are timed (losses = call - matching); same results."""

    def __init__(self, criterion: Criterion, timer: Timer):
        self.inner = criterion
        self.timer = timer
        criterion.matcher = timer.wrap("matching", criterion.matcher)  # type: ignore[assignment]

    def __call__(
        self, outputs: dict[str, Any], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        start = time.perf_counter()
        result = self.inner(outputs, targets)
        self.timer.spans["criterion"] += time.perf_counter() - start
        self.timer.mark("criterion_end")
        return result


@contextmanager
def instrumented(model: BoxInstanceModel, optimizer: torch.optim.Optimizer, timer: Timer) -> Iterator[None]:
    """Hook timers into the model's forward, its helpers, the backward pass and the optimiser."""
    saved = {name: getattr(model_module, name) for name in ("_check_batch", "pool_superpoints")}
    model_module._check_batch = timer.wrap("checks", saved["_check_batch"])
    model_module.pool_superpoints = timer.wrap("sp pooling", saved["pool_superpoints"])
    model.forward = timer.wrap("forward", model.forward)  # type: ignore[method-assign]
    model.backbone.forward = timer.wrap("backbone", model.backbone.forward)  # type: ignore[method-assign]
    backbone_params = {id(p) for p in model.backbone.parameters()}
    handles = [
        optimizer.register_step_pre_hook(lambda *_: timer.mark("opt_start")),
        optimizer.register_step_post_hook(lambda *_: timer.mark("opt_end")),
    ]
    for p in model.parameters():
        in_backbone = id(p) in backbone_params

        def on_grad(_: torch.Tensor, in_backbone: bool = in_backbone) -> None:
            if in_backbone:
                timer.mark("bwd_backbone_start", first=True)
            timer.mark("bwd_end")

        handles.append(p.register_post_accumulate_grad_hook(on_grad))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for name, fn in saved.items():
            setattr(model_module, name, fn)
        del model.forward, model.backbone.forward


def breakdown(timer: Timer) -> dict[str, float]:
    """The step's parts (BREAKDOWN) from one instrumented step's spans and marks."""
    s, m = timer.spans, timer.marks
    return {
        "checks": s["checks"],
        "backbone": s["backbone"],
        "sp pooling": s["sp pooling"],
        "decoder": s["forward"] - s["checks"] - s["backbone"] - s["sp pooling"],
        "matching": s["matching"],
        "losses": s["criterion"] - s["matching"],
        "bwd head": m["bwd_backbone_start"] - m["criterion_end"],
        "bwd bbone": m["bwd_end"] - m["bwd_backbone_start"],
        "clip": m["opt_start"] - m["bwd_end"],
        "optimiser": m["opt_end"] - m["opt_start"],
    }


# --- memory -----------------------------------------------------------------------------------


def _trim_heap() -> None:
    """Return freed heap pages to the OS so the RSS before a step is the live set (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # another libc: the baseline then includes the allocator's cache (growth underestimated)


class PeakRss:
    """Peak RSS growth (bytes) of this process while the `with` block runs, sampled by a thread."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.growth = 0

    def __enter__(self) -> PeakRss:
        _trim_heap()
        self._base = self.process.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.process.memory_info().rss)
            self._stop.wait(SAMPLE_S)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self.process.memory_info().rss)
        self.growth = self._peak - self._base


# --- the measurement --------------------------------------------------------------------------


def load_batch(
    dataset: SceneDataset, step: int, mode: str
) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]], dict[str, float]]:
    """(batch, targets, times) of the scene in `dataset` with step's augmentation."""
    times = {}
    dataset.set_epoch(step)
    start = time.perf_counter()
    item = dataset[0]
    times["item"] = time.perf_counter() - start
    start = time.perf_counter()
    batch = batch_to(collate([item]), DEVICE)
    times["collate"] = time.perf_counter() - start
    start = time.perf_counter()
    targets = make_targets(batch, mode, dataset.class_set)  # type: ignore[arg-type]
    times["targets"] = time.perf_counter() - start
    times["data"] = sum(times.values())
    return batch, targets, times


def bare_unet_step(model: BoxInstanceModel, batch: dict[str, Any]) -> None:
    """The backbone alone on the batch's sparse tensor: forward, backward of the output's sum."""
    grid = padded_spatial_shape(list(batch["spatial_shape"]), len(model.cfg.widths))
    x = spconv.SparseConvTensor(batch["feats"], batch["coords"], grid, batch["batch_size"])
    model.backbone(x).sum().backward()


def profile_step(
    model: BoxInstanceModel, criterion: Criterion, optimizer: torch.optim.Optimizer, batch: dict[str, Any],
    targets: list[dict[str, torch.Tensor]], lr: float, grad_clip: float, rows: int,
) -> None:  # fmt: skip
    """Print torch's operator table (self CPU time) for one whole step."""
    with torch.autograd.profiler.profile() as prof:
        train_step(model, criterion, optimizer, batch, targets, 0, lr, grad_clip)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def time_step(
    model: BoxInstanceModel, criterion: TimedCriterion, optimizer: torch.optim.Optimizer, timer: Timer,
    batch: dict[str, Any], targets: list[dict[str, torch.Tensor]], step: int, lr: float, clip: float,
) -> dict[str, float]:  # fmt: skip
    """Wall and CPU seconds of the bare UNet and of the whole step on one batch, the breakdown
    (BREAKDOWN) and the loss. The first pass over a new batch is slower (fresh memory, page
    faults), so the order alternates with the step: even steps run the bare UNet first."""
    out = {}
    for part in ("bare UNet", "whole step") if step % 2 == 0 else ("whole step", "bare UNet"):
        timer.reset()
        start, cpu = time.perf_counter(), time.process_time()
        if part == "bare UNet":
            bare_unet_step(model, batch)
        else:
            out["loss"] = train_step(model, criterion, optimizer, batch, targets, step, lr, clip)["total"]  # type: ignore[arg-type]
        out[part], out[f"{part} cpu"] = time.perf_counter() - start, time.process_time() - cpu
        if part == "bare UNet":
            model.zero_grad(set_to_none=True)
        else:
            out.update(breakdown(timer))
    out["paired ratio"] = out["whole step"] / out["bare UNet"]
    return out


def memory_step(
    model: BoxInstanceModel, criterion: TimedCriterion, optimizer: torch.optim.Optimizer,
    batch: dict[str, Any], targets: list[dict[str, torch.Tensor]], step: int, lr: float, clip: float,
) -> dict[str, int]:  # fmt: skip
    """Peak RSS growth (bytes) of the bare UNet and of the whole step on one batch (not timed)."""
    with PeakRss() as bare:
        bare_unet_step(model, batch)
    model.zero_grad(set_to_none=True)
    with PeakRss() as whole:
        train_step(model, criterion, optimizer, batch, targets, step, lr, clip)  # type: ignore[arg-type]
    return {"bare_mem": bare.growth, "step_mem": whole.growth}


def run_config(
    name: str, model_cfg: ModelConfig, run: RunConfig, dataset: SceneDataset, args: argparse.Namespace
) -> None:
    """Time and measure one model config on the benchmark scene and print its report."""
    torch.manual_seed(0)
    model = build_model(model_cfg, DEVICE)
    criterion = Criterion.from_config(run.train.loss)
    optimizer = make_optimizer(model, run.train.optim)
    clip = run.train.optim.grad_clip
    timer = Timer()
    timed_criterion = TimedCriterion(criterion, timer)
    rows: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, list[int]] = defaultdict(list)
    n_timed = args.warmup + args.steps
    with instrumented(model, optimizer, timer):
        for step in range(n_timed + args.mem_steps):
            batch, targets, data_times = load_batch(dataset, step, args.mode)
            # The train loop's schedule (warm-up first), as if these were a run's first steps.
            lr = learning_rate(step, n_timed + args.mem_steps, run.train.optim)
            model.train()
            if step >= n_timed:
                for key, value in memory_step(
                    model, timed_criterion, optimizer, batch, targets, step, lr, clip
                ).items():
                    sizes[key].append(value)
                continue
            times = time_step(model, timed_criterion, optimizer, timer, batch, targets, step, lr, clip)
            if args.verbose:
                print(f"   step {step}{' (warm-up)' if step < args.warmup else ''}: data {data_times['data']:.2f} s, "
                      f"bare UNet {times['bare UNet']:.2f} s, whole step {times['whole step']:.2f} s", flush=True)  # fmt: skip
            if step < args.warmup:
                continue
            for key, value in {**data_times, **times}.items():
                rows[key].append(value)
            sizes["V"].append(len(batch["coords"]))
            sizes["P"].append(len(batch["point_voxel"]))
            sizes["S"].append(int(batch["sp_offsets"][-1]))
            sizes["T"].append(len(targets[0]["labels"]))
    if args.profile:
        profile_step(model, criterion, optimizer, batch, targets, lr, clip, args.profile)
    med = {k: statistics.median(v) for k, v in rows.items()}
    report(name, model_cfg, sum(p.numel() for p in model.parameters()), med, sizes, rows["loss"][-1])


def report(
    name: str, cfg: ModelConfig, n_params: int, med: dict[str, float], sizes: dict[str, list[int]], loss: float
) -> None:  # fmt: skip
    """Print one config's medians, the ratio against the bare UNet and the peak memory."""
    v = sizes["V"]
    print(
        f"\n== {name}: widths {list(cfg.widths)} x{cfg.blocks_per_level}, {cfg.n_queries} queries, "
        f"{cfg.n_layers} x d{cfg.d_model}; {n_params / 1e6:.2f} M params"
    )
    print(
        f"   V {int(statistics.median(v))} voxels (range {min(v)}-{max(v)}), P {sizes['P'][0]} points, "
        f"S {sizes['S'][0]} superpoints, T {sizes['T'][0]} targets; last loss {loss:.3f}"
    )
    ms = lambda key: f"{med[key] * 1e3:9.1f} ms"  # noqa: E731
    print(f"   data           {ms('data')}   (item {med['item'] * 1e3:.1f}, collate {med['collate'] * 1e3:.1f}, "
          f"targets {med['targets'] * 1e3:.1f} ms)")  # fmt: skip
    print(f"   bare UNet      {ms('bare UNet')}   forward + backward, same sparse tensor")
    print(f"   whole step     {ms('whole step')}")
    for key in BREAKDOWN:
        print(f"     {key:<12} {ms(key)}  {med[key] / med['whole step']:6.1%}")
    ratio = med["whole step"] / med["bare UNet"]
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"   whole step / bare UNet: {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict}); "
          f"with data: {(med['whole step'] + med['data']) / med['bare UNet']:.2f}x")  # fmt: skip
    # Less sensitive to other processes on the machine: the ratio within each step's pair, and the
    # ratio of this process's CPU time (with 1 thread, waiting for a busy core costs wall time only).
    print(f"   same ratio, median of per-step pairs: {med['paired ratio']:.2f}x; by process CPU time: "
          f"{med['whole step cpu'] / med['bare UNet cpu']:.2f}x ({med['whole step cpu']:.1f} s / {med['bare UNet cpu']:.1f} s)")  # fmt: skip
    backbone = med["backbone"] + med["bwd bbone"]
    with_data = med["whole step"] + med["data"]
    print(f"   outside the backbone (fwd + bwd): {1 - backbone / with_data:.1%} of data + step, "
          f"{1 - backbone / med['whole step']:.1%} of the step alone")  # fmt: skip
    if (
        cfg.widths == ModelConfig.maft().widths
        and cfg.blocks_per_level == ModelConfig.maft().blocks_per_level
    ):
        expected = REFERENCE_S * statistics.median(v) / REFERENCE_VOXELS
        print(f"   reference UNet scaled to this V: {expected:.1f} s ({REFERENCE_S} s x V / {REFERENCE_VOXELS}); "
              f"measured here {med['bare UNet']:.1f} s")  # fmt: skip
    mib = 2**20
    print(f"   peak RSS growth per scene: step {statistics.median(sizes['step_mem']) / mib:.0f} MiB "
          f"(max {max(sizes['step_mem']) / mib:.0f}), bare UNet {statistics.median(sizes['bare_mem']) / mib:.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per config (median)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--config", choices=("small", "maft", "both"), default="both")
    parser.add_argument("--mode", choices=("full", "box_heuristic"), default="full", help="targets")
    parser.add_argument("--vertices", type=int, default=150_000, help="scene size to pick")
    parser.add_argument("--params", default="params.yaml", help="augmentation, loss and optimiser params")
    parser.add_argument("--profile", type=int, default=0, help="print the top N ops of one extra step")
    parser.add_argument("--verbose", action="store_true", help="print every step's times")
    parser.add_argument("--mem-steps", type=int, default=2, help="extra untimed steps measuring memory")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.mem_steps < 1:
        parser.error("need --steps >= 1, --warmup >= 0, --threads >= 1, --mem-steps >= 1")
    torch.set_num_threads(args.threads)

    params = load_params(args.params)
    run = build(
        RunConfig, {k: params.get(k) for k in ("model", "data_loader", "train", "inference")}, "params"
    )
    data_cfg = dataclasses.replace(run.data_loader, voxel_size=VOXEL_SIZE, max_points=0)
    configs = {"small": run.model, "maft": ModelConfig.maft(run.model.num_classes)}
    if run.model != ModelConfig(num_classes=run.model.num_classes):
        print(f"note: {args.params} `model` differs from ModelConfig() defaults; 'small' uses {args.params}")
    names = list(configs) if args.config == "both" else [args.config]

    with tempfile.TemporaryDirectory() as tmp:
        scene_id, n_vertices = build_processed_scene(Path(tmp), args.vertices)
        dataset = SceneDataset(tmp, "train", data_cfg, with_ground_truth=args.mode == "full", train=True)
        print(
            f"scene {scene_id}: {n_vertices} vertices, voxel {VOXEL_SIZE} m, mode {args.mode}, "
            f"{args.threads} threads, median of {args.steps} steps after {args.warmup} warm-up"
        )
        print(f"reference: {REFERENCE}")
        for name in names:
            run_config(name, configs[name], run, dataset, args)


if __name__ == "__main__":
    main()
