"""benchmarks/val_noise.py: the markdown comparison the README quotes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest
from val_noise import markdown, without_classes


def _pair_row(diffs: list[float], half: float, pooled: float, ratio: float) -> dict:
    return {
        "diffs": diffs,
        "mean": sum(diffs) / len(diffs),
        "std": 0.01,
        "half_width_95": half,
        "evaluation_std": 0.02,
        "pooled_std": pooled,
        "ratio_of_means": ratio,
    }


def test_markdown_says_what_is_resolved_and_what_clears_twice_the_pooled_std() -> None:
    models = {
        "a/s0": {"120": {"mAP": 0.30, "AP50": 0.50}},
        "a/s1": {"120": {"mAP": 0.32, "AP50": 0.52}},
        "b/s0": {"120": {"mAP": 0.20, "AP50": 0.49}},
        "b/s1": {"120": {"mAP": 0.22, "AP50": 0.51}},
    }
    out = {
        "val_scenes": 120,
        "sizes": [120],
        "models": models,
        "groups": {
            g: {"120": {m: {"mean": 0.31 if g == "a" else 0.21, "std": 0.014} for m in ("mAP", "AP50")}}
            for g in ("a", "b")
        },
        "pairs": {
            "a - b": {
                "members": ["s0", "s1"],
                # mAP: +0.10 beats both the half-width and twice the pooled std; AP50: +0.01 neither.
                "120": {
                    "mAP": _pair_row([0.10, 0.10], half=0.05, pooled=0.014, ratio=0.31 / 0.21),
                    "AP50": _pair_row([0.01, 0.01], half=0.05, pooled=0.014, ratio=0.51 / 0.50),
                },
            }
        },
    }
    out["per_class_AP"] = {"a/s0": {"chair": 0.5}, "a/s1": {"chair": 0.7}, "b/s0": {"chair": 0.2}, "b/s1": {}}
    text = markdown(out)
    assert "| a | s0, s1 | 0.310 ± 0.014 (0.300, 0.320) | 0.310 ± 0.014 (0.500, 0.520) |" in text
    assert "| a - b | mAP | +0.100, +0.100 | +0.100 ± 0.010 | 0.050 | yes | 0.014 | yes | 1.476 |" in text
    assert "| a - b | AP50 | +0.010, +0.010 | +0.010 ± 0.010 | 0.050 | no | 0.014 | no | 1.020 |" in text
    assert "| a - b | mAP | 0.020 |" in text
    assert "| chair | 0.600 | 0.200 |" in text


def test_without_classes_compares_the_mean_ap_of_the_other_classes() -> None:
    per_class = {
        "a/s0": {"chair": 0.5, "bed": 0.0, "sink": 0.3},
        "a/s1": {"chair": 0.7, "bed": 0.1, "sink": 0.5},
        "a/s2": {"chair": 0.6, "bed": 0.0, "sink": 0.4},
        "b/s0": {"chair": 0.2, "bed": 0.4, "sink": 0.2},
        "b/s1": {"chair": 0.4, "bed": 0.5, "sink": 0.2},
    }
    out = {"models": dict.fromkeys(per_class), "groups": {"a": {}, "b": {}}, "per_class_AP": per_class}
    subset = without_classes(out, ["bed"], ["a - b"])
    assert subset["models"]["a/s1"] == pytest.approx(0.6)
    row = subset["pairs"]["a - b"]
    assert row["diffs"] == pytest.approx([0.4 - 0.2, 0.6 - 0.3])  # s2 has no partner in b
    assert row["mean"] == pytest.approx(0.25)
    # pooled over every member: a = 0.4, 0.6, 0.5 (var 0.01), b = 0.2, 0.3 (var 0.005)
    assert row["pooled_std"] == pytest.approx(((2 * 0.01 + 0.005) / 3) ** 0.5)
    assert row["ratio_of_means"] == pytest.approx(0.5 / 0.25)
    text = markdown(
        {
            **out,
            "val_scenes": 1,
            "sizes": [1],
            "models": {k: {"1": {"mAP": 0.0, "AP50": 0.0}} for k in per_class},
            "groups": {g: {"1": {m: {"mean": 0.0, "std": 0.0} for m in ("mAP", "AP50")}} for g in "ab"},
            "pairs": {},
            "without": subset,
        }
    )
    assert "mAP over the classes other than bed" in text
    assert "| a - b | mAP | +0.200, +0.300 | +0.250 ± 0.071 |" in text
    with pytest.raises(SystemExit, match="no per-class AP for lamp"):
        without_classes(out, ["lamp"], [])
