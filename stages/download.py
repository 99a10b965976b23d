"""DVC stage `download`: materialise raw scans under data/raw/ from the source chosen in params.

    python -m stages.download --params params.yaml --out data/raw

Sources (`data.source`): `synthetic` (the embedded default, generated in ScanNet's own layout),
`scannet` (the ScanNet download protocol, terms of use required), `s3dis` (a local
Stanford3dDataset_v1.2_Aligned_Version zip or folder), `local` (an existing ScanNet-layout folder).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from beep3d.data.synthetic import SyntheticConfig, generate_dataset
from beep3d.errors import DataError
from beep3d.io import write_json_atomic
from pipeline.config import ConfigError, build, load_params, section
from pipeline.scannet_download import ScanNetConfig, download_scannet
from pipeline.sources import link_or_copy_local, prepare_s3dis, split_notes


@dataclass(frozen=True)
class PathSource:
    path: str  # a local file or folder; relative paths are taken from the repo root


@dataclass(frozen=True)
class DataParams:
    source: Literal["synthetic", "scannet", "s3dis", "local"]  # where raw scans come from
    workers: int  # processes generating synthetic scenes (output is identical for any count)
    synthetic: SyntheticConfig  # the embedded procedural dataset
    scannet: ScanNetConfig  # official ScanNet v2 protocol (needs accept_terms)
    s3dis: PathSource  # Stanford3dDataset_v1.2_Aligned_Version zip or folder
    local: PathSource  # existing ScanNet-layout folder


def generate_synthetic(cfg: SyntheticConfig, out: Path, workers: int) -> dict:
    """Generate into a sibling temp folder, then swap it in: a killed run leaves the old data intact."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    report = generate_dataset(partial, cfg, workers=workers)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return report


def run(params: DataParams, out: Path) -> dict:
    if params.source == "synthetic":
        return generate_synthetic(params.synthetic, out, params.workers)
    if params.source == "scannet":
        # Resumable in place: partial files and complete scenes from an earlier run are kept.
        return download_scannet(params.scannet, out)
    if not getattr(params, params.source).path:
        raise ConfigError(f"params: data.{params.source}.path is empty; set it to your copy of the data")
    if params.source == "s3dis":
        root = prepare_s3dis(Path(params.s3dis.path), out)
        return {"source": "s3dis", "root": str(root)}
    scenes = link_or_copy_local(Path(params.local.path), out)
    notes = split_notes(out)
    for note in notes:
        click.echo(f"note: {note}")
    return {"source": "local", "n_scenes": len(scenes), "notes": notes}


@click.command()
@click.option("--params", "params_path", default="params.yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default="data/raw", type=click.Path(file_okay=False))
def main(params_path: str, out_dir: str) -> None:
    try:
        params = build(DataParams, section(load_params(params_path), "data"), "data")
        summary = run(params, Path(out_dir))
    except (ConfigError, DataError) as err:
        click.echo(f"download failed: {err}", err=True)
        sys.exit(1)
    write_json_atomic(Path(out_dir) / "download_summary.json", summary)
    click.echo(f"download ({params.source}) done -> {out_dir}")


if __name__ == "__main__":
    main()
