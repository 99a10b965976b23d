"""Preprocessing speed on one ScanNet-size scene (~150k vertices), single process.

    .venv/bin/python benchmarks/preprocess_bench.py [--vertices 150000] [--repeats 7]

Writes one scene in the ScanNet v2 raw layout to a temporary folder (the synthetic generator's
scene when `beep3d.data.synthetic` can make one that large, else a grid-sampled room built here),
then times each preprocessing step (median of the repeats): read, superpoints (given by the
source, or computed), voxelize, boxes (+ overlap counts), write; the whole scene end to end; and
voxelization against the plain baseline `np.unique(voxel_coords, axis=0, return_inverse=True)`
on the same points in the same run, checked identical. Targets are printed as PASS / MISS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from beep3d.classes import CLASS_SETS
from beep3d.data.boxes import extract_boxes, overlap_counts
from beep3d.data.ply import write_ply
from beep3d.data.preprocess import PreprocessConfig, points_table, process_scene, write_points
from beep3d.data.scannet import read_label_map, read_scannet_scene
from beep3d.data.schema import POINTS_SCHEMA, points_path, write_table
from beep3d.data.superpoints import SuperpointConfig, compute_superpoints
from beep3d.data.voxelize import voxel_coords, voxelize

SCENE_ID = "scene0000_00"
TARGET_SCENE_S = 0.25  # whole scene with given segments, one core
TARGET_VOXEL_SPEEDUP = 8.0
DEFAULT_CFG = PreprocessConfig(
    voxel_size=0.02,
    workers=1,
    on_error="fail",
    computed_superpoints=False,
    superpoints=SuperpointConfig(voxel_size=0.04, k=0.3, normal_weight=1.0, color_weight=2.0, min_size=20),
)

# (raw category, nyu40 id, (width, depth, height) in metres, count): furniture placed in the room.
_FURNITURE = (
    ("chair", 5, (0.5, 0.5, 0.9), 6),
    ("table", 7, (1.4, 0.8, 0.75), 2),
    ("cabinet", 3, (0.8, 0.5, 1.0), 3),
    ("bed", 4, (2.0, 1.6, 0.6), 1),
    ("sofa", 6, (2.0, 0.9, 0.8), 1),
    ("desk", 14, (1.2, 0.6, 0.75), 2),
    ("bookshelf", 10, (0.9, 0.35, 1.9), 2),
    ("trash can", 39, (0.35, 0.35, 0.5), 2),
    ("box", 29, (0.4, 0.3, 0.3), 2),
)
_TSV_HEADER = "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\n"


def _rectangle(origin, u, v, spacing, rng):
    """Grid-sample the rectangle origin + s*u + t*v: vertices (n, 3) and triangles (m, 3)."""
    origin, u, v = (np.asarray(a, np.float64) for a in (origin, u, v))
    nu = max(int(np.linalg.norm(u) / spacing) + 1, 2)
    nv = max(int(np.linalg.norm(v) / spacing) + 1, 2)
    s, t = np.meshgrid(np.linspace(0, 1, nu), np.linspace(0, 1, nv), indexing="ij")
    xyz = origin + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
    xyz += rng.normal(0, 0.003, xyz.shape)  # scanner noise
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    a = (i * nv + j).ravel()
    faces = np.concatenate([np.stack([a, a + nv, a + 1], 1), np.stack([a + 1, a + nv, a + nv + 1], 1)])
    return xyz, faces, np.stack([s.ravel() * np.linalg.norm(u), t.ravel() * np.linalg.norm(v)], 1)


def _cuboid_faces(lo, hi):
    """The five visible faces (no bottom) of an axis-aligned cuboid as (origin, u, v)."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
    return [
        ((x0, y0, z1), (dx, 0, 0), (0, dy, 0)),
        ((x0, y0, z0), (dx, 0, 0), (0, 0, dz)),
        ((x0, y1, z0), (dx, 0, 0), (0, 0, dz)),
        ((x0, y0, z0), (0, dy, 0), (0, 0, dz)),
        ((x1, y0, z0), (0, dy, 0), (0, 0, dz)),
    ]


def build_room(n_vertices: int, seed: int = 0) -> dict:
    """A furnished room with about n_vertices mesh vertices, ScanNet-like segments and objects."""
    rng = np.random.default_rng(seed)
    width, depth, height = 7.0, 6.0, 2.7
    objects = [("floor", 2, [((0, 0, 0), (width, 0, 0), (0, depth, 0))])]
    objects += [
        ("wall", 1, [rect])
        for rect in (
            ((0, 0, 0), (width, 0, 0), (0, 0, height)),
            ((0, depth, 0), (width, 0, 0), (0, 0, height)),
            ((0, 0, 0), (0, depth, 0), (0, 0, height)),
            ((width, 0, 0), (0, depth, 0), (0, 0, height)),
        )
    ]
    for raw, nyu, (w, d, h), count in _FURNITURE:
        for _ in range(count):
            x, y = rng.uniform(0.3, width - w - 0.3), rng.uniform(0.3, depth - d - 0.3)
            objects.append((raw, nyu, _cuboid_faces((x, y, 0.0), (x + w, y + d, h))))
    area = sum(np.linalg.norm(np.cross(u, v)) for *_, rects in objects for _, u, v in rects)
    spacing = float(np.sqrt(area / n_vertices))
    xyz, rgb, faces, seg, groups = [], [], [], [], []
    n = 0
    for object_id, (raw, _, rects) in enumerate(objects):
        color = rng.integers(40, 220, 3)
        segments: list[int] = []
        for origin, u, v in rects:
            pts, tri, st = _rectangle(origin, u, v, spacing, rng)
            # Segments: ~0.6 m patches on room surfaces, ~0.3 m on furniture; id = first vertex.
            patch = 0.6 if raw in ("wall", "floor") else 0.3
            cell = np.floor(st / patch).astype(np.int64)
            _, local = np.unique(cell[:, 0] * 1000 + cell[:, 1], return_inverse=True)
            first = np.full(local.max() + 1, len(pts))
            np.minimum.at(first, local, np.arange(len(pts)))
            seg.append(first[local] + n)
            segments += sorted(set((first + n).tolist()))
            xyz.append(pts)
            rgb.append(np.clip(color + rng.normal(0, 12, (len(pts), 3)), 0, 255))
            faces.append(tri + n)
            n += len(pts)
        groups.append({"id": object_id, "objectId": object_id, "segments": segments, "label": raw})
    return {
        "xyz": np.concatenate(xyz).astype(np.float32),
        "rgb": np.concatenate(rgb).astype(np.uint8),
        "faces": np.concatenate(faces).astype(np.int32),
        "seg": np.concatenate(seg),
        "groups": groups,
        "labels": {raw: nyu for raw, nyu, *_ in _FURNITURE} | {"wall": 1, "floor": 2},
    }


def write_scannet_scene(root: Path, scene_id: str, room: dict) -> None:
    """One train scene in the ScanNet v2 layout; the mesh is stored rotated, as ScanNet's are."""
    folder = root / "scans" / scene_id
    folder.mkdir(parents=True, exist_ok=True)
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    shift = np.array([1.5, -2.0, 0.1])
    raw_xyz = (room["xyz"].astype(np.float64) - shift) @ rot  # aligned = rot @ raw + shift
    align = np.eye(4)
    align[:3, :3], align[:3, 3] = rot, shift
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", raw_xyz.astype(np.float32), room["rgb"], room["faces"])
    segs = {
        "params": {"kThresh": "0.0001", "segMinVerts": "20"},
        "sceneId": scene_id,
        "segIndices": room["seg"].tolist(),
    }
    (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
    agg = {"sceneId": f"scannet.{scene_id}", "appId": "bench", "segGroups": room["groups"]}
    (folder / f"{scene_id}.aggregation.json").write_text(json.dumps(agg))
    (folder / f"{scene_id}.txt").write_text(
        "axisAlignment = " + " ".join(f"{v:.9f}" for v in align.ravel()) + "\n"
    )
    rows = [
        f"{i}\t{raw}\t{raw}\t1\t{nyu}\t0\t{raw}\t{raw}\n"
        for i, (raw, nyu) in enumerate(room["labels"].items())
    ]
    (root / "scannetv2-labels.combined.tsv").write_text(_TSV_HEADER + "".join(rows))
    (root / "scannetv2_train.txt").write_text(scene_id + "\n")


def write_benchmark_scene(root: Path, n_vertices: int, room: str) -> tuple[str, str]:
    """Write one train scene in ScanNet layout under root; returns (scene id, where it came from)."""
    if room in ("auto", "synthetic"):
        try:
            from beep3d.data.synthetic import generate_dataset, scannet_size_config
        except ImportError:
            if room == "synthetic":
                raise
        else:
            # The generator's own ScanNet-size preset (2 cm meshing): about 100-200k vertices.
            cfg = replace(scannet_size_config(), n_train=1, n_val=0, n_test=0)
            generate_dataset(root, cfg, progress=False)
            scene_id = (root / "scannetv2_train.txt").read_text().split()[0]
            return scene_id, "synthetic generator"
    write_scannet_scene(root, SCENE_ID, build_room(n_vertices))
    return SCENE_ID, "built-in grid room"


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _paired_median_times(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int
) -> tuple[float, float]:
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(_median_time(fn_a, 1))
        times_b.append(_median_time(fn_b, 1))
    return statistics.median(times_a), statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vertices", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--room",
        choices=("auto", "synthetic", "builtin"),
        default="auto",
        help="synthetic generator's scene, the grid-sampled room built here, or the former if importable",
    )
    args = parser.parse_args()
    cfg = DEFAULT_CFG
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "raw", Path(tmp) / "processed"
        scene_id, source = write_benchmark_scene(root, args.vertices, args.room)
        label_map = read_label_map(root / "scannetv2-labels.combined.tsv")

        def read():
            return read_scannet_scene(root, scene_id, "train", label_map)

        scene = read()
        class_set = CLASS_SETS[scene.class_set]
        voxel_inverse = voxelize(scene.xyz, cfg.voxel_size)[1]
        steps = {
            "read": read,
            "superpoints (given)": lambda: scene.superpoint,
            "voxelize": lambda: voxelize(scene.xyz, cfg.voxel_size),
            "boxes + overlap counts": lambda: (
                extract_boxes(scene.xyz, scene.label, scene.instance, class_set),
                overlap_counts(scene.xyz, scene.label, scene.instance, class_set),
            ),
            "write": lambda: write_table(
                points_table(scene, scene.superpoint, np.full(scene.n_points, -1, np.int32), voxel_inverse),
                points_path(out, scene_id),
                POINTS_SCHEMA,
            ),
        }
        print(
            f"scene ({source}): {scene.n_points} vertices, {int(scene.superpoint.max()) + 1} segments, "
            f"{len(np.unique(scene.instance[scene.instance > 0]))} instances; median of {args.repeats}"
        )
        for name, fn in steps.items():
            print(f"  {name:<24s} {_median_time(fn, args.repeats) * 1e3:8.1f} ms")

        def whole(c: PreprocessConfig):
            return lambda: write_points(process_scene(read(), c), out)

        total = _median_time(whole(cfg), args.repeats)
        verdict = "PASS" if total < TARGET_SCENE_S else "MISS"
        print(
            f"  whole scene, given segments: {total * 1e3:.1f} ms  (target < {TARGET_SCENE_S * 1e3:.0f} ms: {verdict})"
        )
        sp_cfg = cfg.superpoints
        t_sp = _median_time(lambda: compute_superpoints(scene.xyz, scene.rgb, sp_cfg), args.repeats)
        n_sp = int(compute_superpoints(scene.xyz, scene.rgb, sp_cfg).max()) + 1
        print(f"  compute_superpoints alone: {t_sp * 1e3:.1f} ms -> {n_sp} superpoints")
        computed = replace(cfg, computed_superpoints=True)
        t_computed = _median_time(whole(computed), args.repeats)
        print(f"  whole scene, superpoints computed too: {t_computed * 1e3:.1f} ms")

        # Interleaved, so that load from other processes hits both sides alike.
        baseline, fast = _paired_median_times(
            lambda: np.unique(voxel_coords(scene.xyz, cfg.voxel_size), axis=0, return_inverse=True),
            lambda: voxelize(scene.xyz, cfg.voxel_size),
            args.repeats,
        )
        ref_coords, ref_inverse = np.unique(
            voxel_coords(scene.xyz, cfg.voxel_size), axis=0, return_inverse=True
        )
        coords, inverse = voxelize(scene.xyz, cfg.voxel_size)
        identical = np.array_equal(ref_coords, coords) and np.array_equal(ref_inverse.reshape(-1), inverse)
        ratio = baseline / fast
        verdict = "PASS" if ratio >= TARGET_VOXEL_SPEEDUP and identical else "MISS"
        print(
            f"  voxelize {fast * 1e3:.1f} ms vs np.unique(axis=0) {baseline * 1e3:.1f} ms: {ratio:.1f}x, "
            f"identical={identical}  (target >= {TARGET_VOXEL_SPEEDUP:.0f}x: {verdict})"
        )


if __name__ == "__main__":
    main()
