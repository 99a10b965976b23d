"""The EMA teacher: a copy of the student that follows it by exponential moving average.

After every optimiser step, for every floating-point parameter AND buffer (BatchNorm running
mean/var included: they follow the same rule rather than being copied, so the teacher's
statistics match its averaged weights), theta_T <- a * theta_T + (1 - a) * theta_S. Integer
buffers (BatchNorm's batch counter) are copied. The teacher never receives gradients and always
runs in eval mode (BatchNorm on its running statistics).

EMA warm-up (*ours*, as in YOLOv5's ModelEMA): the rate used at step t is
    a_t = a * (1 - exp(-(t + 1) / warmup_steps)),
so the first updates follow the student closely instead of anchoring the teacher to its random
initialisation; with a = 0.999 a plain EMA would still weigh that initialisation by 0.999^720 =
0.49 at the end of the default 720-step run. warmup_steps = 0 disables it (a_t = a).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def ema_rate(step: int, ema: float, warmup_steps: int) -> float:
    """The EMA rate a_t applied after optimiser step `step` (0-based)."""
    if warmup_steps <= 0:
        return ema
    return ema * (1.0 - math.exp(-(step + 1) / warmup_steps))


class EmaTeacher:
    """Holds the teacher model; `update` moves it towards the student."""

    def __init__(self, student: nn.Module):
        self.model = copy.deepcopy(student)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, rate: float) -> None:
        """theta_T <- rate * theta_T + (1 - rate) * theta_S for every float tensor of the state."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"EMA rate must be in [0, 1], got {rate}")
        teacher_state = self.model.state_dict()
        student_state = student.state_dict()
        floats_t, floats_s = [], []
        for name, t in teacher_state.items():
            s = student_state[name]
            if t.dtype.is_floating_point:
                floats_t.append(t)
                floats_s.append(s.detach())
            else:
                t.copy_(s)
        # lerp(t, s, w) = t + w (s - t) = (1 - w) t + w s, with w = 1 - rate; one fused call.
        torch._foreach_lerp_(floats_t, floats_s, 1.0 - rate)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
