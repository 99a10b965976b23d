"""The EMA teacher: the update rule on parameters and buffers, the warm-up, no gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from beep3d.model.ema import EmaTeacher, ema_rate


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_update_is_the_ema_rule_for_parameters_and_float_buffers() -> None:
    student = small_net()
    teacher = EmaTeacher(student)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.train()
    student(torch.randn(8, 3))  # moves the BatchNorm running statistics and its counter
    teacher.update(student, 0.9)
    for name, t in teacher.state_dict().items():
        s = student.state_dict()[name]
        if t.dtype.is_floating_point:
            torch.testing.assert_close(t, 0.9 * before[name] + 0.1 * s)
        else:  # num_batches_tracked is copied
            assert torch.equal(t, s)


def test_rate_zero_copies_and_rate_one_keeps() -> None:
    student = small_net()
    teacher = EmaTeacher(student)
    kept = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(3.0)
    teacher.update(student, 1.0)
    assert all(torch.equal(kept[k], v) for k, v in teacher.state_dict().items())
    teacher.update(student, 0.0)
    assert all(torch.equal(student.state_dict()[k], v) for k, v in teacher.state_dict().items())
    with pytest.raises(ValueError, match="EMA rate"):
        teacher.update(student, 1.5)


def test_teacher_has_no_gradients_and_stays_independent() -> None:
    student = small_net()
    teacher = EmaTeacher(student)
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training
    with torch.no_grad():
        next(student.parameters()).zero_()
    assert next(teacher.model.parameters()).abs().sum() > 0  # a deep copy, not shared storage


def test_warm_up_ramps_towards_the_configured_rate() -> None:
    assert ema_rate(0, 0.999, 0) == 0.999
    assert ema_rate(0, 0.999, 100) == pytest.approx(0.999 * (1 - math.exp(-0.01)))
    rates = [ema_rate(s, 0.999, 100) for s in range(0, 2000, 100)]
    assert rates == sorted(rates) and rates[-1] < 0.999 and rates[-1] > 0.998
