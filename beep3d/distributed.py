"""What the model and the losses must do differently when one batch is split over several ranks.

Under DistributedDataParallel every rank computes the loss of its share of the global batch and
DDP averages the gradients over the W ranks. Two things would then differ from one process
training on the whole batch:

- batch normalisation would use each rank's own statistics, and
- every "mean over the batch" (matched pairs, weighted queries, consistency pairs) would be a
  mean over the rank's share.

Inside `across_ranks()` (the training step of a distributed run) both are made global:
`SyncedBatchNorm1d` normalises with the statistics of the whole batch (an autograd-aware
all-reduce of per-channel sums), and `batch_mean_denominator(count)` returns the batch-wide count
divided by W, so that DDP's averaging of the per-rank gradients of sum / (N / W) gives exactly the
gradient of sum / N over the whole batch. Everything outside the scope (single process,
evaluation, the teacher's no-grad forward) runs the plain single-process code, bit for bit.

The process group itself is set up by the caller (pipeline/distributed.py); this module only
uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

_ACROSS_RANKS: ContextVar[bool] = ContextVar("beep3d_across_ranks", default=False)


@contextmanager
def across_ranks(enabled: bool = True) -> Iterator[None]:
    """Make batch statistics and batch means global over the process group (no-op if not enabled).

    Every rank must run the same sequence of collectives inside the scope: the same code path
    with the same control flow, which the training step guarantees.
    """
    if enabled and not dist.is_initialized():
        raise RuntimeError("across_ranks() needs an initialised torch.distributed process group")
    token = _ACROSS_RANKS.set(enabled)
    try:
        yield
    finally:
        _ACROSS_RANKS.reset(token)


def is_across_ranks() -> bool:
    return _ACROSS_RANKS.get()


def batch_mean_denominator(count: torch.Tensor | float, minimum: float = 0.0) -> torch.Tensor | float:
    """The denominator that turns a local sum into this rank's share of the batch-wide mean.

    Single process: max(count, minimum), unchanged. Across ranks: max(sum of count over the ranks,
    minimum) / world size (no gradient flows through a count).
    """
    if not is_across_ranks():
        return max(count, minimum) if isinstance(count, (int, float)) else count.clamp(min=minimum)
    local = torch.as_tensor(count, dtype=torch.float64).detach().reshape(1).clone()
    dist.all_reduce(local)
    total = local.clamp(min=minimum) / dist.get_world_size()
    return total.to(torch.float32).squeeze(0) if isinstance(count, (int, float)) else total.to(count)


class _SumOverRanks(torch.autograd.Function):
    """y = the sum of x over all ranks. Every rank's loss depends on every rank's x through y, so
    the gradient reaching x is the sum of dL_r/dy over the ranks: the same all-reduce backwards."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (N, C) rows that, inside `across_ranks()` and in training mode, uses the
    statistics of all ranks' rows together, as one process holding the whole batch would.

    The state (weight, bias, running stats) is that of nn.BatchNorm1d, so checkpoints are
    interchangeable. Outside the scope it is nn.BatchNorm1d exactly. torch's own SyncBatchNorm
    refuses CPU tensors; this one runs on any device through an all-reduce of [sum, sum of
    squares, count] per channel whose backward is the same all-reduce.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_across_ranks()):
            return super().forward(x)
        if x.dim() != 2:
            raise ValueError(f"SyncedBatchNorm1d expects (N, C) rows, got shape {tuple(x.shape)}")
        n_local = x.new_full((1,), float(x.shape[0]))
        stats = torch.cat([x.sum(0), (x * x).sum(0), n_local])  # (2C + 1,)
        stats = _SumOverRanks.apply(stats)
        c = x.shape[1]
        n = stats[-1].detach()
        if float(n) < 2:
            raise ValueError("batch norm needs at least 2 rows over all ranks in training mode")
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0.0)  # biased, as used to normalise
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y
