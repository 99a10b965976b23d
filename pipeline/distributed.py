"""Running the train stage under `torchrun`: which rank this is, the process group, and the few
collectives the training loop needs outside DDP's own gradient averaging.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR / MASTER_PORT); without them the
stage is one process and nothing here touches torch.distributed. The backend is gloo on CPU and
NCCL on CUDA, where rank r uses the GPU numbered LOCAL_RANK on its machine.

Division of labour: every rank trains on its share of each global batch (beep3d/data/dataset.py
`EpochBatchSampler`); rank 0 alone evaluates, writes checkpoints and talks to MLflow, the other
ranks wait for it at a barrier. Resume state is read by rank 0 and sent to the others, so the
checkpoint folder need not be shared between machines.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from beep3d.backend import resolve_device
from pipeline.config import ConfigError

# A rank waits this long for rank 0's evaluation / checkpoint before it gives up.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Ranks:
    rank: int  # global rank, 0..world_size-1
    world_size: int  # number of training processes over all machines
    local_rank: int  # rank on this machine (picks the GPU)

    @property
    def is_main(self) -> bool:
        """Rank 0: evaluates, writes checkpoints and outputs, logs to MLflow."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = Ranks(rank=0, world_size=1, local_rank=0)


def ranks_from_environment(env: dict[str, str] | None = None) -> Ranks:
    """The ranks torchrun announces in the environment; one process when it announces none."""
    env = dict(os.environ if env is None else env)
    if "WORLD_SIZE" not in env:
        return SINGLE_PROCESS
    try:
        ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"torchrun environment is incomplete or not numeric (RANK, WORLD_SIZE, LOCAL_RANK): {err}"
        ) from err
    if not 0 <= ranks.rank < ranks.world_size or ranks.local_rank < 0:
        raise ConfigError(f"torchrun environment is inconsistent: {ranks}")
    return ranks


def training_device(ranks: Ranks, name: str) -> torch.device:
    """params `train.device` for this rank: its own GPU (LOCAL_RANK) when the device is CUDA."""
    device = resolve_device(name)
    if device.type == "cuda" and ranks.distributed:
        if ranks.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {ranks.local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                "start at most one process per GPU (torchrun --nproc-per-node)"
            )
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device


def start(ranks: Ranks, device: torch.device) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA). No-op for a single process.

    On CUDA the group also gets gloo for CPU tensors: the loss-term means and the batch-mean
    counts are small CPU tensors, and NCCL reduces CUDA tensors only.
    """
    if ranks.distributed and not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def broadcast_bytes(ranks: Ranks, data: bytes | None) -> bytes | None:
    """Rank 0's `data` (or None) on every rank."""
    if not ranks.distributed:
        return data
    box = [data if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(ranks: Ranks, values: dict[str, float]) -> dict[str, float]:
    """Each key's mean over the ranks (every rank must pass the same keys in the same order)."""
    if not ranks.distributed:
        return values
    names = list(values)
    gathered: list[list[str] | None] = [None] * ranks.world_size
    dist.all_gather_object(gathered, names)
    if any(other != names for other in gathered):
        raise RuntimeError(f"ranks report different loss terms: {gathered}")
    vector = torch.tensor([values[k] for k in names], dtype=torch.float64)
    dist.all_reduce(vector)
    return dict(zip(names, (vector / ranks.world_size).tolist(), strict=True))


def state_digest(states: dict[str, dict[str, torch.Tensor]]) -> str:
    """sha256 over every tensor's bytes of {role: state_dict}, in a fixed order."""
    h = hashlib.sha256()
    for role in sorted(states):
        for name in sorted(states[role]):
            h.update(f"{role}/{name}".encode())
            tensor = states[role][name].detach().cpu().contiguous().reshape(-1)
            h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def digests_of_all_ranks(ranks: Ranks, digest: str) -> list[str]:
    if not ranks.distributed:
        return [digest]
    gathered: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(gathered, digest)
    return [str(d) for d in gathered]
