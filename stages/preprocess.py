"""DVC stage `preprocess`: raw scans -> Parquet tables, boxes and dataset statistics.

    python -m stages.preprocess --params params.yaml --raw data/raw --out data/processed

Reads the params section `preprocess` only. The raw layout is detected: `scans/` or the
`scannetv2_*.txt` split files mean ScanNet v2, `Stanford3dDataset_v1.2_Aligned_Version/` means
S3DIS. Writes (all atomically, `--out` is owned by this stage):

    points/<scene_id>.parquet   one row per original vertex (beep3d.data.schema.POINTS_SCHEMA)
    boxes.parquet               one row per instance box, background (wall/floor) boxes flagged
    scenes.parquet              one row per scene
    stats.json                  per-split counts and the box-overlap difficulty figures
    skipped.json                scenes left out with on_error=skip (an empty list otherwise)

A bad scene stops the stage with exit code 1 and a one-line message naming scene and file
(on_error=fail), or is listed in skipped.json (on_error=skip).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from beep3d.data.preprocess import PreprocessConfig, run_preprocess
from beep3d.errors import DataError
from pipeline.config import ConfigError, build, load_params, section


def summary_line(result: dict, out_dir: Path, seconds: float) -> str:
    """One paragraph: what was written, per split, and how hard the boxes overlap."""
    stats = result["stats"]
    parts = []
    for split, s in stats["splits"].items():
        parts.append(
            f"{split}: {s['scenes']} scenes, {s['points']:,} points, {s['voxels']:,} voxels, "
            f"{s['superpoints']:,} superpoints, {s['boxes']} boxes ({s['background_boxes']} wall/floor)"
        )
    overlap = stats["all"]["overlap"]
    iou = overlap["smallest_box_mean_instance_iou"]
    text = (
        f"preprocess: {stats['scenes']} scenes -> {out_dir} in {seconds:.1f} s "
        f"(voxel {stats['voxel_size']} m). " + "; ".join(parts) + ". "
        f"Box overlap: {overlap['object_points_in_multiple_boxes']:.1%} of object points lie in >= 2 object "
        f"boxes, {overlap['nonobject_points_in_object_box']:.1%} of non-object points in an object box"
        + (f", smallest-box rule mean instance IoU {iou:.2f}." if iou is not None else ".")
    )
    skipped = result["skipped"]
    if skipped:
        names = ", ".join(s["scene_id"] for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        text += f" Skipped {len(skipped)} bad scene(s): {names} (see {out_dir / 'skipped.json'})."
    return text


@click.command()
@click.option("--params", "params_path", default="params.yaml", type=click.Path(dir_okay=False))
@click.option("--raw", "raw_dir", default="data/raw", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", default="data/processed", type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
def main(params_path: str, raw_dir: str, out_dir: str, progress: bool) -> None:
    start = time.perf_counter()
    try:
        # ValueError: a value the config itself refuses (e.g. voxel_size <= 0), named in the message.
        cfg = build(PreprocessConfig, section(load_params(params_path), "preprocess"), "preprocess")
    except (ConfigError, ValueError) as err:
        click.echo(f"preprocess failed: {err}", err=True)
        sys.exit(1)
    try:
        result = run_preprocess(Path(raw_dir), Path(out_dir), cfg, progress=progress)
    except DataError as err:  # names the scene and the file; a traceback would add nothing
        click.echo(f"preprocess failed: {err}", err=True)
        sys.exit(1)
    click.echo(summary_line(result, Path(out_dir), time.perf_counter() - start))


if __name__ == "__main__":
    main()
