"""Peak memory of preprocessing and of a training step on ScanNet-size scenes, and what full ScanNet needs.

    .venv/bin/python benchmarks/memory_bench.py [--json PATH] [--worst-vertices 500000]
        [--mean-vertices 150000] [--train-vertices 150000] [--train-steps 2]
        [--loader-scenes 4 16] [--workers 8] [--machines 4] [--params params.yaml]

Every case runs in a fresh process (multiprocessing "spawn") that imports what it needs, records
its RSS ("imports"), does its work and reports its peak RSS: getrusage's ru_maxrss, the kernel's
high-water mark, so no short peak is missed. Printed per case: the peak (total), the imports
baseline, and peak minus imports (what the work itself added). The inputs are written beforehand
by other processes, so no measured case pays for building its data.

  preprocess  one scene in the ScanNet v2 raw layout (benchmarks/preprocess_bench.py's grid room),
              end to end through `run_preprocess` with one worker: read PLY + segs + aggregation,
              superpoints, voxels (0.02 m), boxes, write. Once with the dataset's segments, once
              with our superpoints computed too; at --worst-vertices and at --mean-vertices. A pool
              worker does exactly this per scene, so its peak is one worker's peak.
  train step  `beep3d.engine.train_step` (forward, matching, losses, backward, clipping, AdamW) of
              the MAFT-size model (ModelConfig.maft()) on one ScanNet-size synthetic scene at
              0.02 m voxels, one scene per batch, box-supervised targets, 1 thread, --train-steps
              steps (the first also allocates AdamW's state).
  loader      the training loader (SceneDataset + make_loader, params' batch size, 0.02 m voxels,
              augmentation) over the first K scenes of one processed dataset, for each K of
              --loader-scenes, for as many epochs as make MANY scene loads (same number of
              batches for both). Bounded loading: MANY scenes add less than one scene's points
              table to the peak.

Then an estimate for ScanNet v2 (1513 scenes) computed from the measured per-scene figures, on one
machine with --workers worker processes and on --machines machines (one shard each, see
`python -m stages.preprocess --shard`), with its assumptions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

# Only the standard library at module level: a spawned case re-imports this module, and its
# imports baseline must hold what that case needs, not what every case needs.
HERE = Path(__file__).resolve().parent
SCANNET_SCENES = {"train": 1201, "val": 312}  # ScanNet v2 (params' default splits; 100 test scans besides)
MIB = 2**20
GIB = 2**30
TRAIN_VOXEL = 0.02  # ScanNet's training voxel


# --- running a case in a fresh process ---------------------------------------------------------


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class Probe:
    """RSS marks of the running case; `mark("imports")` must come right after its imports."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[str, int]] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = {"rss": _rss(), "peak_so_far": _peak()}

    def figures(self) -> dict[str, Any]:
        peak, imports = _peak(), self.marks["imports"]["rss"]
        return {
            "marks": self.marks,
            "peak_total": peak,
            "imports": imports,
            "peak_minus_imports": peak - imports,
        }


def _child(case: str, kwargs: dict[str, Any], conn: Any) -> None:
    sys.path.insert(0, str(HERE))  # the sibling benchmarks whose scene builders are reused
    probe = Probe()
    try:
        result = CASES[case](probe, **kwargs)
        conn.send({"ok": True, **result, **(probe.figures() if probe.marks else {})})
    except BaseException:
        conn.send({"ok": False, "error": traceback.format_exc()})
        raise


def run_case(case: str, **kwargs: Any) -> dict[str, Any]:
    """Run CASES[case] in a fresh spawned process; its result dict (with the memory figures)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(case, kwargs, send), name=f"memory_bench {case}")
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:  # killed before answering, e.g. by the kernel's OOM killer
        result = {"ok": False, "error": "the process died without a result"}
    process.join()
    if not result["ok"] or process.exitcode != 0:
        raise SystemExit(
            f"case {case} {kwargs} failed (exit code {process.exitcode}):\n{result.get('error')}"
        )
    return result


# --- inputs (not measured) ---------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def prepare_raw_scene(probe: Probe, root: str, vertices: int) -> dict[str, Any]:
    """One train scene in the ScanNet layout under root (the grid room of preprocess_bench)."""
    from preprocess_bench import write_benchmark_scene

    scene_id, _ = write_benchmark_scene(Path(root), vertices, "builtin")
    return {"scene_id": scene_id, "raw_bytes": folder_bytes(Path(root) / "scans")}


def prepare_loader_dataset(probe: Probe, root: str, out: str, scenes: int, vertices: int) -> dict[str, Any]:
    """`scenes` grid rooms (one seed each) in the ScanNet layout, preprocessed into out; also the
    largest scene's points table in memory (what holding one more scene would cost)."""
    from preprocess_bench import DEFAULT_CFG, build_room, write_scannet_scene

    from beep3d.data.preprocess import run_preprocess
    from beep3d.data.schema import points_path, read_table

    ids = [f"scene{i:04d}_00" for i in range(scenes)]
    for seed, scene_id in enumerate(ids):
        write_scannet_scene(Path(root), scene_id, build_room(vertices, seed=seed))
    (Path(root) / "scannetv2_train.txt").write_text("".join(f"{s}\n" for s in ids))  # all of them
    stats = run_preprocess(Path(root), Path(out), DEFAULT_CFG, progress=False)["stats"]
    scene_bytes = max(read_table(points_path(out, scene_id)).nbytes for scene_id in ids)
    return {"scenes": stats["scenes"], "points": stats["all"]["points"], "scene_table_bytes": scene_bytes}


def prepare_train_scene(probe: Probe, out: str, vertices: int) -> dict[str, Any]:
    from train_bench import build_processed_scene

    scene_id, n_vertices = build_processed_scene(Path(out), vertices)
    return {"scene_id": scene_id, "vertices": n_vertices}


# --- measured cases ----------------------------------------------------------------------------


def measure_preprocess(probe: Probe, raw: str, out: str, computed: bool) -> dict[str, Any]:
    from preprocess_bench import DEFAULT_CFG

    from beep3d.data.preprocess import run_preprocess

    probe.mark("imports")
    cfg = replace(DEFAULT_CFG, workers=1, computed_superpoints=computed)
    start, cpu = time.perf_counter(), time.process_time()
    stats = run_preprocess(Path(raw), Path(out), cfg, progress=False)["stats"]["all"]
    return {
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "vertices": stats["points"],
        "voxels": stats["voxels"],
        "processed_bytes": folder_bytes(Path(out)),
    }


def measure_train_step(probe: Probe, data: str, params: str, steps: int) -> dict[str, Any]:
    import torch
    from train_bench import DEVICE, load_batch

    from beep3d.data.dataset import SceneDataset
    from beep3d.engine import learning_rate, make_optimizer, train_step
    from beep3d.loss.criterion import Criterion
    from beep3d.model.model import ModelConfig
    from pipeline.config import build, load_params
    from pipeline.training import RunConfig, build_model

    torch.set_num_threads(1)
    probe.mark("imports")
    values = load_params(params)
    run = build(
        RunConfig, {k: values.get(k) for k in ("model", "data_loader", "train", "inference")}, "params"
    )
    data_cfg = replace(run.data_loader, voxel_size=TRAIN_VOXEL, max_points=0)
    dataset = SceneDataset(data, "train", data_cfg, with_ground_truth=False, train=True)
    torch.manual_seed(0)
    model_cfg = ModelConfig.maft(run.model.num_classes)
    model = build_model(model_cfg, DEVICE)
    criterion = Criterion.from_config(run.train.loss)
    optimizer = make_optimizer(model, run.train.optim)
    model.train()
    step_s = []
    for step in range(steps):
        batch, targets, _ = load_batch(dataset, step, "box_heuristic")
        if step == 0:
            probe.mark("model + batch")
        lr = learning_rate(step, steps, run.train.optim)
        start = time.perf_counter()
        train_step(model, criterion, optimizer, batch, targets, step, lr, run.train.optim.grad_clip)  # type: ignore[arg-type]
        step_s.append(time.perf_counter() - start)
    return {
        "step_s": step_s,
        "points": len(batch["point_voxel"]),
        "voxels": len(batch["coords"]),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def measure_loader(probe: Probe, data: str, params: str, scenes: int, loads: int) -> dict[str, Any]:
    """Iterate the training loader over the first `scenes` scenes until `loads` scenes were loaded
    (whole epochs), so that datasets of different sizes see the same number of batches."""
    import torch

    from beep3d.data.dataset import DataConfig, SceneDataset, make_loader
    from beep3d.data.schema import read_table
    from pipeline.config import build, load_params, section

    torch.set_num_threads(1)
    probe.mark("imports")
    values = load_params(params)
    cfg = build(DataConfig, section(values, "data_loader"), "data_loader")
    cfg = replace(cfg, voxel_size=TRAIN_VOXEL, max_points=0)
    dataset = SceneDataset(data, "train", cfg, with_ground_truth=False, train=True, max_scenes=scenes)
    loader = make_loader(dataset, section(values, "train.batch_size"), shuffle=True, seed=0, num_workers=0)
    start, points, epochs = time.perf_counter(), 0, -(-loads // len(dataset))
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for batch in loader:
            points += len(batch["point_voxel"])
    wall = time.perf_counter() - start
    rows = read_table(Path(data) / "scenes.parquet").to_pydict()
    sizes = dict(zip(rows["scene_id"], rows["n_points"], strict=True))
    largest = max(sizes[scene_id] for scene_id in dataset.scene_ids)
    return {
        "scenes": len(dataset),
        "epochs": epochs,
        "loads": epochs * len(dataset),
        "points": points,
        "largest_scene": largest,
        "wall_s": wall,
    }


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "prepare_raw_scene": prepare_raw_scene,
    "prepare_loader_dataset": prepare_loader_dataset,
    "prepare_train_scene": prepare_train_scene,
    "preprocess": measure_preprocess,
    "train_step": measure_train_step,
    "loader": measure_loader,
}


# --- the estimate ------------------------------------------------------------------------------


def estimate(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Full ScanNet v2 figures from the per-scene measurements (see ASSUMPTIONS)."""
    n = sum(SCANNET_SCENES.values())
    mean, worst = results["preprocess"]["mean, computed"], results["preprocess"]["worst, computed"]
    raw_per_vertex = results["raw"]["mean"]["raw_bytes"] / mean["vertices"]
    processed_per_vertex = mean["processed_bytes"] / mean["vertices"]
    # CPU seconds: what one worker takes of one core, whatever else ran on this machine meanwhile.
    per_scene_s = mean["cpu_s"] * args.mean_vertices / mean["vertices"]
    worker_typical, worker_worst = mean["peak_total"], worst["peak_total"]
    raw_total = raw_per_vertex * args.mean_vertices * n
    processed_total = processed_per_vertex * args.mean_vertices * n
    machines = {}
    for m in sorted({1, args.machines}):
        share = -(-n // m)  # scenes of the largest shard
        machines[m] = {
            "scenes_per_machine": share,
            "preprocess_hours": share * per_scene_s / args.workers / 3600,
            "memory_bound_gib": args.workers * worker_worst / GIB,  # every worker on a worst scene at once
            "memory_typical_gib": args.workers * worker_typical / GIB,
            "disk_per_machine_gib": (raw_total + processed_total) / m / GIB,
        }
    train = results["train_step"]
    step_growth = train["peak_total"] - train["marks"]["model + batch"]["rss"]
    steady_step_s = statistics.median(train["step_s"][1:] or train["step_s"])
    worst_step_peak = train["marks"]["model + batch"]["rss"] + step_growth * worst["voxels"] / train["voxels"]
    return {
        "scenes": n,
        "raw_disk_gib": raw_total / GIB,
        "processed_disk_gib": processed_total / GIB,
        "merge_extra_disk_gib": processed_total / GIB,  # merge copies; --move renames instead
        "preprocess_scene_s": per_scene_s,
        "preprocess_cpu_hours": n * per_scene_s / 3600,
        "preprocess_worst_scene_s": worst["cpu_s"],
        "worker_peak_typical_mib": worker_typical / MIB,
        "worker_peak_worst_mib": worker_worst / MIB,
        "machines": machines,
        "train_step_peak_mib": train["peak_total"] / MIB,
        "train_step_growth_mib": step_growth / MIB,
        "train_step_worst_peak_mib": worst_step_peak / MIB,
        "train_step_s": steady_step_s,
        "train_epoch_cpu_hours": SCANNET_SCENES["train"] * steady_step_s / 3600,
    }


ASSUMPTIONS = """\
assumptions:
  - ScanNet v2 = 1513 scenes (1201 train, 312 val); its 100 test scans are not included.
  - _vh_clean_2 meshes have 80k-150k vertices typically: mean ~{mean:,} (disk and time), worst
    ~{worst:,} (peak memory); bytes and seconds scale linearly with vertices from the measured
    mean-size scene (a synthetic grid room, not a real scan).
  - raw = the 4 files per scene this pipeline reads (_vh_clean_2.ply, segs.json, aggregation.json,
    .txt), not ScanNet's full 1.3 TB release; processed = params.yaml's defaults (0.02 m voxels,
    computed superpoints on).
  - one preprocess worker per free core; shards split the scene list evenly; merging copies the
    processed files once (with --move it renames them).
  - training: engine.train_step, one scene per batch at 0.02 m, 1 CPU thread, box-supervised
    targets; the beep3d loop adds the teacher's no-grad forward and its weights. The worst-scene
    step memory is extrapolated linearly in voxels, not measured."""


# --- the report --------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    rows = [(f"preprocess, {name}", r) for name, r in results["preprocess"].items()]
    rows.append(("train step (MAFT, 0.02 m)", results["train_step"]))
    rows += [(f"loader, {k} scenes", r) for k, r in results["loader"].items()]
    print(
        f"{'case':<30}{'vertices':>10}{'voxels':>9}{'peak MiB':>10}{'imports':>9}{'peak-imp':>10}"
        f"{'wall s':>8}{'cpu s':>7}"
    )
    for name, r in rows:
        vertices = r.get("vertices", r.get("points", 0))
        wall = r.get("wall_s", sum(r.get("step_s", [0.0])))
        cpu = f"{r['cpu_s']:>7.1f}" if "cpu_s" in r else f"{'':>7}"
        print(
            f"{name:<30}{vertices:>10,}{r.get('voxels', 0):>9,}{r['peak_total'] / MIB:>10.0f}"
            f"{r['imports'] / MIB:>9.0f}{r['peak_minus_imports'] / MIB:>10.0f}{wall:>8.1f}{cpu}"
        )


def print_report(results: dict[str, Any], est: dict[str, Any], args: argparse.Namespace) -> None:
    print_table(results)
    train = results["train_step"]
    print(
        f"\ntrain step: {train['params_m']:.1f} M params; RSS with model + batch "
        f"{train['marks']['model + batch']['rss'] / MIB:.0f} MiB, the step adds {est['train_step_growth_mib']:.0f} "
        f"MiB; steps {', '.join(f'{s:.1f}' for s in train['step_s'])} s"
    )
    few, many = results["loader"].values()
    growth = many["peak_minus_imports"] - few["peak_minus_imports"]
    scene = results["loader_dataset"]["scene_table_bytes"]
    # Holding the extra scenes would add at least their points tables; less than one table is noise.
    verdict = "bounded" if growth < scene else "GROWS with the dataset"
    print(
        f"loader, {many['loads']} scene loads each: peak minus imports {many['peak_minus_imports'] / MIB:.0f} MiB "
        f"({many['scenes']} scenes) vs {few['peak_minus_imports'] / MIB:.0f} MiB ({few['scenes']} scenes, "
        f"{few['epochs']} epochs): ratio {many['peak_minus_imports'] / few['peak_minus_imports']:.2f}, "
        f"{growth / MIB:+.0f} MiB for {many['scenes'] - few['scenes']} more scenes; one scene's points table "
        f"{scene / MIB:.0f} MiB -> {verdict} (largest scene {few['largest_scene']:,} vs {many['largest_scene']:,} vertices)"
    )
    print(f"\n== estimate for ScanNet v2 ({est['scenes']} scenes), {args.workers} workers per machine")
    print(
        f"disk: raw {est['raw_disk_gib']:.1f} GiB, processed {est['processed_disk_gib']:.1f} GiB "
        f"(+{est['merge_extra_disk_gib']:.1f} GiB while merging shards by copy)"
    )
    print(
        f"preprocess: {est['preprocess_scene_s']:.2f} CPU s per mean scene, {est['preprocess_worst_scene_s']:.2f} s "
        f"for the worst; {est['preprocess_cpu_hours']:.2f} core-hours in all; peak per worker "
        f"{est['worker_peak_typical_mib']:.0f} MiB (mean scene), {est['worker_peak_worst_mib']:.0f} MiB (worst)"
    )
    for m, figures in est["machines"].items():
        print(
            f"  {m} machine(s): {figures['scenes_per_machine']} scenes each, "
            f"{figures['preprocess_hours'] * 60:.1f} min, memory {figures['memory_typical_gib']:.1f} GiB "
            f"typical / {figures['memory_bound_gib']:.1f} GiB bound, disk {figures['disk_per_machine_gib']:.1f} GiB each"
        )
    print(
        f"training step (MAFT size, 0.02 m, 1 thread): peak {est['train_step_peak_mib']:.0f} MiB on a "
        f"{train['points']:,}-vertex scene, ~{est['train_step_worst_peak_mib']:.0f} MiB extrapolated to the worst; "
        f"{est['train_step_s']:.1f} s per step -> {est['train_epoch_cpu_hours']:.1f} h per epoch of "
        f"{SCANNET_SCENES['train']} scenes on one CPU thread"
    )
    print(ASSUMPTIONS.format(mean=args.mean_vertices, worst=args.worst_vertices))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--worst-vertices", type=int, default=500_000, help="largest ScanNet scene")
    parser.add_argument("--mean-vertices", type=int, default=150_000, help="mean ScanNet scene")
    parser.add_argument("--train-vertices", type=int, default=150_000, help="training scene to pick")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--loader-scenes", type=int, nargs=2, default=[4, 16], metavar=("FEW", "MANY"))
    parser.add_argument("--workers", type=int, default=8, help="preprocess workers per machine (estimate)")
    parser.add_argument("--machines", type=int, default=4, help="machines for the sharded estimate")
    parser.add_argument("--params", default="params.yaml", help="data_loader, train and loss params")
    args = parser.parse_args()
    few, many = args.loader_scenes
    if not 1 <= few < many or args.train_steps < 1 or args.workers < 1 or args.machines < 1:
        parser.error("need 1 <= FEW < MANY loader scenes and --train-steps, --workers, --machines >= 1")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every case: one thread, as measured
    params = str(Path(args.params).resolve())
    results: dict[str, Any] = {"raw": {}, "preprocess": {}, "loader": {}}
    with tempfile.TemporaryDirectory(prefix="memory_bench.") as tmp_name:
        tmp = Path(tmp_name)
        for size, vertices in (("worst", args.worst_vertices), ("mean", args.mean_vertices)):
            results["raw"][size] = run_case(
                "prepare_raw_scene", root=str(tmp / f"raw_{size}"), vertices=vertices
            )
            for computed in (False, True):
                name = f"{size}, {'computed' if computed else 'given'}"
                out = tmp / f"out_{size}_{computed}"
                print(f"preprocess, {name} ...", flush=True)
                results["preprocess"][name] = run_case(
                    "preprocess", raw=str(tmp / f"raw_{size}"), out=str(out), computed=computed
                )
        print("train step ...", flush=True)
        run_case("prepare_train_scene", out=str(tmp / "train"), vertices=args.train_vertices)
        results["train_step"] = run_case(
            "train_step", data=str(tmp / "train"), params=params, steps=args.train_steps
        )
        print(f"loader over {few} and {many} scenes ...", flush=True)
        results["loader_dataset"] = run_case(
            "prepare_loader_dataset",
            root=str(tmp / "raw_loader"),
            out=str(tmp / "loader"),
            scenes=many,
            vertices=args.mean_vertices,
        )
        for k in (few, many):
            results["loader"][k] = run_case(
                "loader", data=str(tmp / "loader"), params=params, scenes=k, loads=many
            )
    est = estimate(results, args)
    print()
    print_report(results, est, args)
    if args.json:
        document = {
            "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "results": results,
            "estimate": est,
            "assumptions": ASSUMPTIONS.format(mean=args.mean_vertices, worst=args.worst_vertices),
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
