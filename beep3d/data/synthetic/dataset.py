"""`generate_dataset`: every scene of a config, written in its layout, plus index files and report."""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from beep3d.data.synthetic import write_s3dis, write_scannet
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.report import ReportBuilder, SceneSummary
from beep3d.data.synthetic.scene import generate_scene, room_type_of, scene_id_of, split_of
from beep3d.io import write_json_atomic

REPORT_NAME = "synthetic_report.json"


def s3dis_room_names(cfg: SyntheticConfig) -> list[tuple[int, str]]:
    """(area, room folder name) of every scene, fixed up front so workers need no shared state."""
    numbers: Counter = Counter()
    names, train_rank = [], 0
    for index in range(cfg.n_scenes):
        split = split_of(cfg, index)
        area = (
            write_s3dis.VAL_AREA
            if split == "val"
            else write_s3dis.TRAIN_AREAS[train_rank % len(write_s3dis.TRAIN_AREAS)]
        )
        train_rank += split == "train"
        room = write_s3dis.S3DIS_ROOM_NAMES[room_type_of(cfg, index)]
        numbers[(area, room)] += 1
        names.append((area, f"{room}_{numbers[(area, room)]}"))
    return names


def _make_scene(job: tuple[SyntheticConfig, int, Path, tuple[int, str] | None]) -> SceneSummary:
    """Generate and write one scene; runs in a worker process when workers > 1."""
    cfg, index, out_dir, s3dis_name = job
    scene = generate_scene(cfg, index)
    if s3dis_name is None:
        write_scannet.write_scene(out_dir, scene)
    else:
        write_s3dis.write_room(out_dir, scene, *s3dis_name)
    return SceneSummary.of(scene)


def _summaries(jobs: list, workers: int) -> Iterator[SceneSummary]:
    if workers <= 1:
        yield from map(_make_scene, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_make_scene, jobs)  # results in scene order whatever finishes first


def generate_dataset(out_dir: Path, cfg: SyntheticConfig, progress: bool = True, workers: int = 1) -> dict:
    """Write the dataset `cfg` describes under `out_dir` and return its report (also written there).

    Scene i depends on (cfg, i) alone, so the files are byte-identical for equal configs, for any
    `workers` (processes generating scenes in parallel). The report holds counts and the
    box-overlap calibration figures pooled over train+val scenes.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = s3dis_room_names(cfg) if cfg.layout == "s3dis" else [None] * cfg.n_scenes
    jobs = [(cfg, index, out_dir, names[index]) for index in range(cfg.n_scenes)]
    report = ReportBuilder(cfg)
    start = time.monotonic()
    for index, summary in enumerate(_summaries(jobs, workers)):
        report.add(summary)
        if progress and ((index + 1) % 10 == 0 or index + 1 == cfg.n_scenes):
            print(
                f"synthetic: {index + 1}/{cfg.n_scenes} scenes, {time.monotonic() - start:.1f} s",
                file=sys.stderr,
            )
    if cfg.layout == "scannet":
        splits = {
            s: [scene_id_of(i) for i in range(cfg.n_scenes) if split_of(cfg, i) == s]
            for s in ("train", "val", "test")
        }
        write_scannet.write_index(out_dir, splits, dict(report.raw_counts))
    result = report.finish()
    write_json_atomic(out_dir / REPORT_NAME, result)
    return result
