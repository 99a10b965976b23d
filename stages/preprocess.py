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

Several machines: give each a shard (1-based: every n-th scene of the sorted list, starting at
the i-th) and its own folder, then merge the folders on one machine; the merged folder is byte
for byte what the command above writes. `--workers` overrides `preprocess.workers` for this run.

    python -m stages.preprocess --params params.yaml --raw data/raw --out shard1 --shard 1/4 --workers 8
    python -m stages.preprocess merge --out data/processed shard1 shard2 shard3 shard4

`run` is the default command: `python -m stages.preprocess ARGS` means `... run ARGS`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import click

from beep3d.data.preprocess import PreprocessConfig, Shard, merge_shards, run_preprocess
from beep3d.errors import DataError
from pipeline.config import ConfigError, build, load_params, section


def summary_line(result: dict, out_dir: Path, seconds: float, what: str = "preprocess") -> str:
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
        f"{what}: {stats['scenes']} scenes -> {out_dir} in {seconds:.1f} s "
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


class _RunByDefault(click.Group):
    """Arguments that name no subcommand go to `run`, so the dvc.yaml command line stays as it is."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _ShardType(click.ParamType):
    name = "i/n"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Shard:
        if isinstance(value, Shard):
            return value
        try:
            return Shard.parse(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


@click.group(cls=_RunByDefault)
def main() -> None:
    """Preprocess raw scans (`run`, the default), or merge the folders of a sharded run (`merge`)."""


@main.command()
@click.option("--params", "params_path", default="params.yaml", type=click.Path(dir_okay=False))
@click.option("--raw", "raw_dir", default="data/raw", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", default="data/processed", type=click.Path(file_okay=False))
@click.option("--shard", type=_ShardType(), help="Only shard i of n (1-based) of the sorted scene list.")
@click.option("--workers", type=click.IntRange(min=0), help="Override preprocess.workers (0 = one per CPU).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
def run(
    params_path: str, raw_dir: str, out_dir: str, shard: Shard | None, workers: int | None, progress: bool
) -> None:
    """Raw scans -> processed tables (the DVC stage)."""
    start = time.perf_counter()
    try:
        # ValueError: a value the config itself refuses (e.g. voxel_size <= 0), named in the message.
        cfg = build(PreprocessConfig, section(load_params(params_path), "preprocess"), "preprocess")
    except (ConfigError, ValueError) as err:
        click.echo(f"preprocess failed: {err}", err=True)
        sys.exit(1)
    if workers is not None:
        cfg = dataclasses.replace(cfg, workers=workers)
    try:
        result = run_preprocess(Path(raw_dir), Path(out_dir), cfg, progress=progress, shard=shard)
    except DataError as err:  # names the scene and the file; a traceback would add nothing
        click.echo(f"preprocess failed: {err}", err=True)
        sys.exit(1)
    what = "preprocess" if shard is None else f"preprocess shard {shard}"
    click.echo(summary_line(result, Path(out_dir), time.perf_counter() - start, what))


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--move", is_flag=True, help="Move the points files out of the shards instead of copying them.")
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
def merge(out_dir: str, move: bool, shard_dirs: tuple[str, ...]) -> None:
    """Merge the folders of one sharded run (all n of them) into --out."""
    start = time.perf_counter()
    try:
        result = merge_shards([Path(d) for d in shard_dirs], Path(out_dir), move=move)
    except DataError as err:
        click.echo(f"preprocess merge failed: {err}", err=True)
        sys.exit(1)
    what = f"preprocess merge of {len(shard_dirs)} shards"
    click.echo(summary_line(result, Path(out_dir), time.perf_counter() - start, what))


if __name__ == "__main__":
    main()
