"""Figures of the report stage: matplotlib `Figure` objects drawn by the Agg backend.

Each function takes data that is already loaded and returns a figure, or None when there is
nothing to draw, so a test can call it without files; `save_png` writes one atomically.
pyplot is never imported: its global registry keeps every figure alive until it is closed, and
it would pick a GUI backend on a desktop. A `Figure` attached to a `FigureCanvasAgg` renders
the same PNG on any machine.

Epochs on the x axes count completed epochs (1-based): the history's `epoch` field is the
0-based index of the epoch a row belongs to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from beep3d.io import atomic_path

DPI = 110
MAX_SCATTER_POINTS = 40_000  # per panel: keeps a top-down view at a few hundred KB and under a second
GREY = (0.85, 0.85, 0.85, 1.0)  # points that belong to no instance
DARK_GREY = (0.45, 0.45, 0.45, 1.0)  # highlighted points that belong to no instance (background)
# Loss terms drawn when the history has them: the final total, the criterion's terms on the last
# decoder layer, the box-query loss and the BEEP3D consistency losses.
LOSS_KEYS = ("total", "cls", "bce", "dice", "center", "score", "boxq/total", "qc", "mfc")
RESOLVER_LABELS = {
    "teacher": "teacher pseudo-masks (box prior + teacher + vote)",
    "teacher_alone": "teacher without the vote (box prior + teacher)",
    "box_prior": "box prior + smallest box + vote (no teacher)",
    "smallest_box": "smallest-box rule",
    "box_heuristic": "box heuristic (smallest box + vote)",
    "two_stage": "two-stage labels (box prior + labeler + vote, fixed)",
}


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """Render `fig` to `path` through a temporary file in the same folder, then rename it."""
    with atomic_path(path, durable=False) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` values (fewer at the start): (n,) -> (n,)."""
    values = np.asarray(values, np.float64)
    if len(values) == 0 or window <= 1:
        return values.copy()
    csum = np.concatenate(([0.0], np.cumsum(values)))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def _series(rows: Sequence[dict[str, Any]], key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the rows that hold a finite `key` (losses such as qc start after a warm-up)."""
    pts = [
        (float(r[x_key]), float(r[key]))
        for r in rows
        if r.get(key) is not None and math.isfinite(float(r[key]))
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(pts)
    return arr[:, 0], arr[:, 1]


def losses_figure(step_rows: Sequence[dict[str, Any]]) -> Figure | None:
    """One small panel per loss term present: raw per-step values faint, a moving average on top."""
    keys = [k for k in LOSS_KEYS if any(k in r for r in step_rows)]
    if not keys:
        return None
    ncols = 3
    nrows = math.ceil(len(keys) / ncols)
    fig = new_figure(3.0 * ncols, 2.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, keys, strict=False):
        x, y = _series(step_rows, key, "step")
        window = max(1, min(50, len(y) // 20))
        ax.plot(x, y, color="C0", alpha=0.25, linewidth=0.6)
        ax.plot(x, moving_average(y, window), color="C0", linewidth=1.3)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols : len(keys)]:
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle("training losses (faint: per step; line: moving average)", fontsize=10)
    return fig


def val_map_figure(eval_rows: Sequence[dict[str, Any]]) -> Figure | None:
    """Val mAP (solid) and AP50 (dashed) per evaluation epoch, student and (beep3d) teacher."""
    if not eval_rows:
        return None
    fig = new_figure(5.5, 3.4)
    ax = fig.subplots()
    for role, color in (("student", "C0"), ("teacher", "C1")):
        for metric, style in (("mAP", "-"), ("AP50", "--")):
            x, y = _series(eval_rows, f"val_{role}_{metric}", "epoch")
            if len(y):
                ax.plot(x + 1, y, style, marker="o", markersize=3, color=color, label=f"{role} {metric}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("val AP")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("validation AP per evaluation", fontsize=10)
    return fig


def pseudo_iou_figure(eval_rows: Sequence[dict[str, Any]]) -> Figure | None:
    """Mean instance IoU of each resolver's pseudo-masks: all points (left), ambiguous (right)."""
    if not any(f"pseudo_{r}_iou_all" in row for row in eval_rows for r in RESOLVER_LABELS):
        return None
    fig = new_figure(8.0, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, where in zip(axes, ("all", "ambiguous"), strict=True):
        for i, (resolver, label) in enumerate(RESOLVER_LABELS.items()):
            x, y = _series(eval_rows, f"pseudo_{resolver}_iou_{where}", "epoch")
            if len(y):
                ax.plot(x + 1, y, marker="o", markersize=3, color=f"C{i}", label=label)
        ax.set_title(f"{where} points", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean instance IoU")
    axes[0].legend(fontsize=7)
    fig.suptitle("pseudo-mask quality on the monitored training scenes", fontsize=10)
    return fig


def pr_curves_figure(curves: dict[str, dict[str, np.ndarray]], classes: Sequence[str]) -> Figure | None:
    """Precision-recall at IoU 0.5 for `classes`; a class with ground truth but no prediction
    has no curve and is named in the legend as such."""
    if not classes:
        return None
    fig = new_figure(5.0, 4.0)
    ax = fig.subplots()
    for i, name in enumerate(classes):
        curve = curves.get(name)
        if curve is None:
            ax.plot([], [], color=f"C{i}", label=f"{name} (no predictions)")
            continue
        recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
        order = np.argsort(recall, kind="stable")
        ax.plot(recall[order], precision[order], color=f"C{i}", drawstyle="steps-post", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("precision-recall at IoU 0.5 (val)", fontsize=10)
    return fig


def instance_colors(ids: np.ndarray) -> np.ndarray:
    """(N, 4) RGBA: one tab20 colour per id (the same id gets the same colour in every panel),
    light grey for ids < 0."""
    palette = np.asarray(
        [
            (0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
            (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5),
            (0.74, 0.74, 0.13), (0.09, 0.75, 0.81), (0.68, 0.78, 0.91), (1.0, 0.73, 0.47),
            (0.6, 0.87, 0.54), (1.0, 0.6, 0.59), (0.77, 0.69, 0.84), (0.77, 0.61, 0.58),
            (0.97, 0.71, 0.82), (0.3, 0.3, 0.3), (0.86, 0.86, 0.55), (0.62, 0.85, 0.9),
        ]
    )  # fmt: skip
    ids = np.asarray(ids, np.int64)
    rgba = np.tile(np.asarray(GREY), (len(ids), 1))
    on = ids >= 0
    # A multiplicative hash spreads consecutive ids over the palette.
    rgba[on, :3] = palette[(ids[on] * 7919) % len(palette)]
    return rgba


def _subsample(n: int, limit: int = MAX_SCATTER_POINTS) -> np.ndarray:
    """Every k-th index, k chosen so that at most `limit` remain (deterministic, spatially even)."""
    return np.arange(0, n, max(1, math.ceil(n / limit)))


def _top_down(ax: Any, xyz: np.ndarray, ids: np.ndarray, title: str, show: np.ndarray | None = None) -> None:
    """Scatter x, y: light grey context first, then the highlighted points on top, coloured by
    id. Without `show` the points with an id are highlighted; with it, the points in `show`,
    where an id < 0 (background) is dark grey."""
    keep = _subsample(len(xyz))
    xyz, ids = xyz[keep], ids[keep]
    highlight = ids >= 0 if show is None else show[keep]
    ax.scatter(xyz[~highlight, 0], xyz[~highlight, 1], color=GREY, s=1.0, linewidths=0, rasterized=True)
    colors = instance_colors(ids[highlight])
    colors[ids[highlight] < 0] = DARK_GREY
    ax.scatter(xyz[highlight, 0], xyz[highlight, 1], c=colors, s=2.5, linewidths=0, rasterized=True)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def scene_figure(scene_id: str, xyz: np.ndarray, gt_ids: np.ndarray, pred_ids: np.ndarray) -> Figure:
    """Top-down view, ground-truth instances (left) and predicted instances (right).

    xyz: (N, 3) vertices; gt_ids: (N,) instance id, -1 where no instance of an evaluated class;
    pred_ids: (N,) index of the mask that claims the vertex, -1 where none does.
    """
    fig = new_figure(9.0, 4.4)
    left, right = fig.subplots(1, 2)
    n_gt = len(np.unique(gt_ids[gt_ids >= 0]))
    n_pred = len(np.unique(pred_ids[pred_ids >= 0]))
    _top_down(left, xyz, gt_ids, f"ground truth: {n_gt} instances")
    _top_down(right, xyz, pred_ids, f"prediction: {n_pred} masks")
    fig.suptitle(f"{scene_id} (top-down; grey: no instance)", fontsize=10)
    return fig


def pseudo_figure(
    scene_id: str, xyz: np.ndarray, ambiguous: np.ndarray, teacher_ids: np.ndarray, gt_ids: np.ndarray
) -> Figure:
    """Top-down view of the ambiguous points (inside >= 2 boxes), coloured by the instance the
    teacher's pseudo-mask gives them (left) and by their ground-truth instance (right); the same
    colour is the same instance in both panels. Other points grey for context.

    teacher_ids / gt_ids: (N,) instance id, -1 for background.
    """
    fig = new_figure(9.0, 4.4)
    left, right = fig.subplots(1, 2)
    n_amb = int(ambiguous.sum())
    _top_down(left, xyz, teacher_ids, f"teacher pseudo-masks ({n_amb} ambiguous points)", show=ambiguous)
    _top_down(right, xyz, gt_ids, "ground truth", show=ambiguous)
    fig.suptitle(
        f"{scene_id}: ambiguous points (dark grey: background; light grey: other points)", fontsize=10
    )
    return fig
