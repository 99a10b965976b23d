"""One torchrun rank through the project's distributed training path: process group, DDP, collectives.

    python -m torch.distributed.run --standalone --nproc-per-node 1 benchmarks/ddp_one_rank.py \\
        --params params.yaml --data PROCESSED --out result.json

Under torchrun with one process the train stage trains as a single process (`Ranks.distributed`
is False for a world of one: no process group, no DDP). A machine with one GPU can still check
that the multi-GPU path works on it: this script runs `pipeline.training.train` with the rank
torchrun announced and the distributed path switched on (`GroupOfOne`). The process group starts
as it does for N ranks (pipeline/distributed.py: NCCL for CUDA tensors plus gloo for the small
CPU tensors on CUDA, gloo alone on CPU), the student is wrapped in DistributedDataParallel, batch
norm and the batch means go through their all-reduces, rank 0 broadcasts the resume state, and
the final weights are compared across the ranks by digest. With one member every collective
returns its input, so the figures are those of a single process plus the collectives' cost.

Writes --out (JSON): the backend, world size, steps, seconds per step (between consecutive step
records of the training loop, data loading included), the losses and the state digest.
benchmarks/gpu_check.py (section `ddp`) runs it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline import distributed
from pipeline.config import build, load_params
from pipeline.distributed import Ranks
from pipeline.training import RunConfig, train


class GroupOfOne(Ranks):
    """torchrun's ranks with the distributed code path on even for a world of one."""

    @property
    def distributed(self) -> bool:
        return True


def all_reduce_checks(device: torch.device) -> dict[str, str]:
    """An all-reduce of a CPU tensor (gloo) and, on CUDA, of a CUDA tensor (NCCL) in the group."""
    tensors = {"cpu_tensor": torch.ones(3)}
    if device.type == "cuda":
        tensors["cuda_tensor"] = torch.ones(3, device=device)
    result = {}
    for name, tensor in tensors.items():
        dist.all_reduce(tensor)
        result[name] = "ok" if tensor.cpu().tolist() == [1.0, 1.0, 1.0] else f"wrong sum {tensor.tolist()}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="processed dataset (train split)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args()

    announced = distributed.ranks_from_environment()
    if announced.world_size != 1:
        raise SystemExit(f"run under torchrun with one process (--nproc-per-node 1), got {announced}")
    ranks = GroupOfOne(announced.rank, announced.world_size, announced.local_rank)
    values = load_params(args.params)
    cfg = build(RunConfig, {k: values[k] for k in ("model", "data_loader", "train", "inference")}, "params")

    stamps: list[float] = []
    totals: list[float] = []

    def on_metrics(metrics: dict[str, float], step: int) -> None:
        if "total" in metrics:  # a step's row (the epoch's wall time arrives separately)
            stamps.append(time.perf_counter())
            totals.append(metrics["total"])

    with tempfile.TemporaryDirectory() as resume:
        result = train(cfg, args.data, Path(resume), progress=False, metrics_sink=on_metrics, ranks=ranks)
    device = next(result.model.parameters()).device
    backend = str(dist.get_backend_config())  # e.g. "cpu:gloo,cuda:nccl"
    world = dist.get_world_size()
    collectives = all_reduce_checks(device)
    distributed.stop()
    # Each gap is one step, its data loading included; the first step (DDP builds its buckets
    # there) has no record before it, so it is not counted.
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    figures = {
        "backend": backend,
        "world_size": world,
        "device": str(device),
        "all_reduce": collectives,
        "amp": cfg.train.amp,
        "steps": len(totals),
        "seconds_per_step": statistics.median(gaps) if gaps else None,
        "seconds_per_step_note": "median gap between consecutive step records (data loading included; the first step not counted)",
        "losses": totals,
        "losses_finite": all(torch.isfinite(torch.tensor(totals)).tolist()),
        "state_sha256": result.summary["distributed"]["state_sha256"],
    }
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "losses"}))


if __name__ == "__main__":
    main()
