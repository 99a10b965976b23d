"""ScanNet instance AP speed: `beep3d.eval.ap` against the plain reference, same scenes, same run.

    .venv/bin/python benchmarks/eval_bench.py [--scenes 20] [--vertices 150000] [--seed 0]

Builds ScanNet-size scenes (~150k vertices; ~35 % wall/floor, ~10 % unlabelled, ~20 gt
instances of the 18 classes with long-tailed sizes, a few under 100 vertices) and ~100 predicted
masks per scene as after top-k: one per gt (boundaries shifted into neighbouring objects and
void, sometimes the wrong class), duplicates with lower confidence, and spurious masks of all
sizes, some on void, some under 100 vertices. Objects are contiguous runs of a hidden spatial
order, so a sloppy mask spills into its true neighbours; the vertex order itself is shuffled.

Times the reference (`benchmarks/reference_eval.py`, the official algorithm loop for loop) and
the fast evaluator on dense (K, N) bool masks, plus the fast one on CSR masks (best of
`--repeats`, CPU time of this process), and asserts that the AP tables (every class x
threshold) are bit-identical and mAP/AP50/AP25 agree to 1e-12. Target: fast >= 5x the reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_eval import reference_ap_table, reference_summary

from beep3d.classes import SCANNET, SCANNET_FLOOR, SCANNET_WALL
from beep3d.eval.ap import Evaluator, SceneGT, ScenePred

TARGET_SPEEDUP = 5.0
N_PRED = 100  # masks kept per scene after top-k
# Relative class frequencies in class-index order (chair, then cabinet and table, most common).
_CLASS_WEIGHTS = np.array([6, 2, 12, 3, 6, 5, 4, 2, 3, 1, 3, 2, 1, 0.5, 1, 1, 0.5, 5], float)


def make_scene(rng: np.random.Generator, scene_id: str, n: int) -> tuple[SceneGT, ScenePred]:
    """One synthetic ScanNet-size scene and its predictions (see the module docstring)."""
    n_inst = int(rng.integers(16, 25))
    sizes = np.clip(rng.lognormal(np.log(2500), 1.0, n_inst), 150, 25000).astype(int)
    sizes[: int(rng.integers(1, 4))] = rng.integers(20, 100)  # a few gt instances under 100 vertices
    classes = rng.choice(SCANNET.num_classes, n_inst, p=_CLASS_WEIGHTS / _CLASS_WEIGHTS.sum())
    # Hidden spatial order: object runs interleaved with void runs (wall, floor, unlabelled).
    n_void = n - int(sizes.sum())
    void_cuts = np.sort(rng.choice(n_void, n_inst, replace=False))
    void_runs = np.diff(np.concatenate(([0], void_cuts, [n_void])))
    label_run, inst_run, length_run = [], [], []
    for i in range(n_inst + 1):
        if void_runs[i]:
            void_label = rng.choice([SCANNET_WALL, SCANNET_FLOOR, -1, 0], p=[0.45, 0.3, 0.2, 0.05])
            label_run.append(void_label)
            inst_run.append(0 if void_label <= 0 else 500 + i)
            length_run.append(void_runs[i])
        if i < n_inst:
            label_run.append(SCANNET.instance_ids[classes[i]])
            inst_run.append(i + 1)
            length_run.append(sizes[i])
    order_label = np.repeat(np.array(label_run, np.int64), length_run)
    order_inst = np.repeat(np.array(inst_run, np.int64), length_run)
    starts = np.concatenate(([0], np.cumsum(length_run)[:-1]))
    perm = rng.permutation(n)  # mesh vertex order != spatial order
    label = np.empty(n, np.int16)
    instance = np.empty(n, np.int32)
    label[perm] = order_label
    instance[perm] = order_inst
    gt = SceneGT(scene_id, label, instance)

    inst_start = {inst_run[r]: starts[r] for r in range(len(inst_run)) if 0 < inst_run[r] <= n_inst}
    spans, pred_cls, scores = [], [], []

    def add(lo: float, hi: float, cls: int, score: float) -> None:
        lo, hi = int(max(0, lo)), int(min(n, hi))
        if hi > lo:
            spans.append((lo, hi))
            pred_cls.append(cls)
            scores.append(score)

    for i in range(n_inst):
        a, size = inst_start[i + 1], sizes[i]
        cls = classes[i] if rng.random() < 0.9 else int(rng.integers(SCANNET.num_classes))
        if rng.random() < 0.85:  # found: edges shifted into the neighbours
            add(
                a + rng.normal(0, 0.12) * size,
                a + size + rng.normal(0, 0.12) * size,
                cls,
                rng.uniform(0.4, 1.0),
            )
        for _ in range(int(rng.integers(0, 3))):  # duplicates: looser, less confident
            add(
                a + rng.normal(0, 0.3) * size,
                a + size + rng.normal(0, 0.3) * size,
                cls,
                rng.uniform(0.0, 0.6),
            )
    while len(spans) < N_PRED:  # spurious masks of all sizes, anywhere
        lo = rng.integers(0, n)
        add(
            lo,
            lo + int(rng.lognormal(np.log(800), 1.2)),
            int(rng.integers(SCANNET.num_classes)),
            rng.uniform(0, 0.5),
        )
    masks = np.zeros((len(spans), n), bool)
    for k, (lo, hi) in enumerate(spans):
        masks[k, perm[lo:hi]] = True
    return gt, ScenePred(scene_id, masks, np.array(pred_cls, np.int64), np.array(scores))


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Best CPU and best wall seconds over `repeats` calls, and the last result.

    CPU time (this process only) is the figure of record: the machine is shared, and other
    processes stretch wall time of both evaluators unevenly.
    """
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--vertices", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    scenes = [make_scene(rng, f"scene{i:04d}_00", args.vertices) for i in range(args.scenes)]
    gts, dense = [g for g, _ in scenes], [p for _, p in scenes]
    csr = [ScenePred(p.scene_id, scipy.sparse.csr_array(p.masks), p.classes, p.scores) for p in dense]
    n_obj = sum(len(np.unique(g.instance[g.label >= 3])) for g in gts)
    print(
        f"{args.scenes} scenes x {args.vertices} vertices: {n_obj / args.scenes:.1f} object instances "
        f"and {sum(len(p) for p in dense) / args.scenes:.0f} predicted masks per scene "
        f"(mean mask {np.mean([p.masks.sum(1).mean() for p in dense]):.0f} vertices)"
    )

    def run_fast(preds: list[ScenePred]) -> Evaluator:
        ev = Evaluator(SCANNET)
        for g, p in zip(gts, preds, strict=True):
            ev.add(g, p)
        ev.result()  # the AP integration is part of the cost
        return ev

    ref_cpu, ref_wall, ref_table = _timed(lambda: reference_ap_table(gts, dense, SCANNET), args.repeats)
    fast_cpu, fast_wall, fast = _timed(lambda: run_fast(dense), args.repeats)
    csr_cpu, csr_wall, fast_csr = _timed(lambda: run_fast(csr), args.repeats)

    assert np.array_equal(fast.ap_table(), ref_table, equal_nan=True), "dense: AP tables differ"
    assert np.array_equal(fast_csr.ap_table(), ref_table, equal_nan=True), "CSR: AP tables differ"
    summary, ref_summary = fast.result(), reference_summary(ref_table)
    for key in ("mAP", "AP50", "AP25"):
        assert abs(summary[key] - ref_summary[key]) <= 1e-12, (key, summary[key], ref_summary[key])
    print(
        f"mAP {summary['mAP']:.4f}  AP50 {summary['AP50']:.4f}  AP25 {summary['AP25']:.4f} over "
        f"{summary['n_gt_instances']} gt instances: AP tables (18 classes x 10 thresholds) bit-identical"
    )
    s = args.scenes
    print(f"{'':22s}{'CPU s/scene':>12s}{'wall s/scene':>14s}{'speed-up (CPU)':>16s}")
    for name, cpu, wall in (
        ("reference", ref_cpu, ref_wall),
        ("fast, dense masks", fast_cpu, fast_wall),
        ("fast, CSR masks", csr_cpu, csr_wall),
    ):
        print(f"{name:22s}{cpu / s:12.4f}{wall / s:14.4f}{ref_cpu / cpu:15.1f}x")
    ratio = ref_cpu / fast_cpu
    verdict = "PASS" if ratio >= TARGET_SPEEDUP else "MISS"
    print(f"target: fast (dense) >= {TARGET_SPEEDUP:.0f}x the reference: {ratio:.1f}x {verdict}")


if __name__ == "__main__":
    main()
