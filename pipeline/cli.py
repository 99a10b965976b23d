"""The `beep3d` console command: `beep3d predict` (a trained model on one's own scan), `beep3d
evaluate` (predictions scored against one's own labelled scenes) and `beep3d doctor` (is torch +
spconv + the device in working order?).

Torch models and spconv are imported inside the commands, not here: `beep3d --help` stays
instant, and `doctor` can report a broken spconv install instead of dying on the import.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import torch
from tqdm import tqdm

from beep3d.backend import conv_algo, import_spconv, resolve_device, spconv_install_hint, spconv_requirement
from beep3d.errors import DataError
from pipeline.checkpoint import CheckpointError

DEVICES = click.Choice(["auto", "cpu", "cuda"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="beep3d")
def main() -> None:
    """beep3d: box-supervised 3D instance segmentation (BEEP3D) on indoor scans."""


def _fail(command: str, message: object) -> NoReturn:
    """One line on stderr, exit code 1: the messages name the file, a traceback would bury it."""
    click.echo(f"beep3d {command}: error: {' '.join(str(message).split())}", err=True)
    sys.exit(1)


@main.command(short_help="Find instances in your own PLY scans with a trained model.")
@click.argument("scans", nargs=-1, required=True)
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trained-model file written by the train stage (models/model.pt).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for <stem>_instances.ply and <stem>_instances.json (created if missing).",
)
@click.option(
    "--segments",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ScanNet-style segs.json (segIndices, one per vertex) to use as superpoints. Default: the "
    "scan's sibling <stem>.0.010000.segs.json if present (and the model was trained on dataset "
    "superpoints), else superpoints computed from the scan.",
)
@click.option(
    "--align",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="ScanNet meta file (<scene>.txt) whose axisAlignment to apply to the scan. Default: the "
    "scan's sibling <scene>.txt when there is one (for <scene>_vh_clean_2.ply; <stem>.txt for "
    "other names), else coordinates as stored.",
)
@click.option(
    "--no-align", is_flag=True, help="Use coordinates as stored, even if a <scene>.txt lies beside."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar over the scans (default: when stderr is a terminal).",
)
@click.option("--device", type=DEVICES, default="auto", show_default=True, help="auto = CUDA when available.")
@click.option(
    "--score-threshold",
    type=float,
    default=None,
    help="Drop instances scoring <= this (default: checkpoint's).",
)
@click.option(
    "--topk",
    type=click.IntRange(min=1),
    default=None,
    help="Candidates kept per scan (default: checkpoint's).",
)
@click.option(
    "--min-points",
    type=click.IntRange(min=0),
    default=None,
    help="Drop masks with fewer vertices (default: checkpoint's, 100 = the ScanNet protocol).",
)
@click.option(
    "--nms-iou",
    type=click.FloatRange(min=0.0, max=1.0),
    default=None,
    help="Drop a mask overlapping a better one of its class by IoU > this; 0 = off (default: checkpoint's).",
)
@click.option(
    "--mask-threshold",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True, max_open=True),
    default=None,
    help="Mask probability a superpoint needs to join an instance (default: checkpoint's).",
)
def predict(
    scans: tuple[str, ...],
    checkpoint: Path,
    out_dir: Path,
    segments: Path | None,
    align: Path | None,
    no_align: bool,
    progress: bool | None,
    device: str,
    score_threshold: float | None,
    topk: int | None,
    min_points: int | None,
    nms_iou: float | None,
    mask_threshold: float | None,
) -> None:
    """Find object instances in SCANS (PLY meshes or xyz+rgb point clouds, binary or ASCII).

    SCANS are files, folders (their *.ply files) or quoted glob patterns ('scans/*/*_vh_clean_2.ply').
    Writes, per scan, <stem>_instances.ply (the input vertices coloured by instance, grey where
    none; faces kept) and <stem>_instances.json (every instance: class, score, vertex indices,
    and the axis alignment used).

    The model expects scans in metres with z up, the floor near z = 0, close to the origin, as the
    training scenes were. A ScanNet mesh's own axisAlignment (from <scene>.txt beside it, or
    --align FILE) brings it there; other scans are used as stored, so align them first.

    A scan that cannot be read is skipped: the others are still processed, nothing is written for
    the failed one, and every failure is listed with its reason at the end (exit code 1).
    """
    if align is not None and no_align:
        raise click.UsageError("--align and --no-align exclude each other")
    try:
        from pipeline import predict as predict_lib  # imports torch models and spconv
    except ImportError as err:
        _fail("predict", err)
    files, failures = predict_lib.expand_scans(list(scans))
    if len(files) > 1 and (segments is not None or align is not None):
        option = "--segments" if segments is not None else "--align"
        raise click.UsageError(
            f"{option} belongs to one scan; pass a single SCAN with it ({len(files)} given)"
        )
    clashes = predict_lib.output_clashes(files, out_dir)
    if clashes:
        raise click.UsageError(
            f"scans would write the same output files: {clashes}; predict them one call each"
        )
    options = predict_lib.PredictOptions(
        score_threshold=score_threshold,
        topk=topk,
        min_points=min_points,
        nms_iou=nms_iou,
        mask_threshold=mask_threshold,
    )
    try:
        dev = resolve_device(device)
    except RuntimeError as err:
        _fail("predict", err)
    try:
        trained = predict_lib.load_trained_model(checkpoint, dev)
    except (DataError, CheckpointError) as err:  # both name the file
        _fail("predict", err)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(files, desc="predict", unit="scan", disable=not show or not files, file=sys.stderr)
    for scan in bar:
        try:
            result = predict_lib.predict_scan(
                scan, trained, out_dir, options, segments, align if align is not None else not no_align
            )
        except DataError as err:  # names the file
            failures.append((str(scan), err.reason if err.path == scan else str(err)))
            continue
        except (OSError, RuntimeError, ValueError, MemoryError) as err:  # torch or the disk on odd input
            failures.append((str(scan), f"{type(err).__name__}: {err}"))
            continue
        for warning in result.warnings:
            tqdm.write(f"warning: {warning}", file=sys.stderr)
        tqdm.write(
            f"{scan}: {result.n_instances} instances over {result.n_points} points "
            f"(superpoints: {result.superpoint_source}; alignment: {result.alignment_source}; "
            f"{result.seconds:.1f} s) -> {result.ply_path}, {result.json_path}",
            file=sys.stdout,
        )
    if failures:
        total = len(files) + sum(1 for what, _ in failures if Path(what) not in files)
        click.echo(f"beep3d predict: {len(failures)} of {total} scan(s) failed:", err=True)
        for what, reason in failures:
            click.echo(f"  {what}: {' '.join(reason.split())}", err=True)
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# evaluate


@main.command(short_help="Score predictions against your own labelled ScanNet-layout scenes.")
@click.argument("predictions", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--gt",
    "gt_root",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="ScanNet-layout folder with the labelled scenes: scans/<scene>/ (mesh, segs.json, "
    "aggregation.json, <scene>.txt) and scannetv2-labels.combined.tsv.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "json", "submission"]),
    default="auto",
    show_default=True,
    help="json: beep3d predict's *_instances.json; submission: the ScanNet benchmark format "
    "(<scene>.txt + predicted_masks/); auto: whichever the folder holds.",
)
@click.option(
    "--split",
    default=None,
    help="Score every scene of the GT folder's scannetv2_<SPLIT>.txt (each needs a prediction). "
    "Default: every scene that has a prediction.",
)
@click.option(
    "--metrics",
    "metrics_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the scores as JSON (the shape of reports/metrics.json's 'val').",
)
def evaluate(
    predictions: Path, gt_root: Path, fmt: str, split: str | None, metrics_path: Path | None
) -> None:
    """Score the predictions in PREDICTIONS with the ScanNet protocol, on every mesh vertex, against
    the annotation in --gt, and print the report's tables (mAP / AP50 / AP25, then per class)."""
    from beep3d.classes import SCANNET
    from beep3d.eval import to_jsonable
    from beep3d.io import write_json_atomic
    from pipeline.report import per_class_table, scores_table
    from pipeline.scoring import score_folder

    try:
        scores = score_folder(predictions, gt_root, fmt, split)
    except DataError as err:  # names the file
        _fail("evaluate", err)
    result = scores.result
    click.echo(
        f"{len(scores.scene_ids)} scenes ({scores.fmt} predictions from {predictions}, ground truth from "
        f"{gt_root}), {result['n_gt_instances']} ground-truth instances (ScanNet protocol: instances and "
        "masks under 100 vertices ignored)"
    )
    if scores.ignored:
        click.echo(f"ignored {len(scores.ignored)} predicted scene(s) outside the {split} split")
    click.echo("")
    click.echo(scores_table(result, split or "scored"))
    click.echo("")
    click.echo("Per class (–: no ground truth in the scored scenes, left out of the means):")
    click.echo("")
    click.echo(per_class_table(result, SCANNET, scores.gt_counts))
    if metrics_path is not None:
        keys = ("mAP", "AP50", "AP25", "per_class", "n_scenes", "n_gt_instances")
        write_json_atomic(metrics_path, to_jsonable({k: result[k] for k in keys}))
        click.echo(f"\n-> {metrics_path}")


# ---------------------------------------------------------------------------------------------
# doctor


def _distributions(prefix: str) -> list[tuple[str, str]]:
    """Installed (name, version) whose name is `prefix` or `prefix-cuXXX` (one per spconv/cumm wheel)."""
    pattern = re.compile(rf"^{prefix}(-cu\d+)?$")
    found = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if pattern.match(name):
            found.add((name, dist.version))
    return sorted(found)


def _describe(dists: list[tuple[str, str]]) -> str:
    return ", ".join(f"{version} ({name})" for name, version in dists) or "not installed"


def unet_check(device: torch.device, algo: Any) -> tuple[int, float]:
    """Forward + backward (train mode) and a forward (eval mode) of the small default SparseUNet.

    The scene is a random 'room' (floor, two walls, a block) of ~1.5k voxels. Returns (voxels,
    seconds); raises on any failure, including non-finite outputs or missing gradients.
    """
    from beep3d.model.model import ModelConfig
    from beep3d.model.unet import SparseUNet, padded_spatial_shape

    spconv = import_spconv()
    cfg = ModelConfig()  # the small default widths
    gen = torch.Generator().manual_seed(0)
    side = 32
    floor = torch.cat(
        [torch.randint(0, side, (900, 2), generator=gen), torch.zeros(900, 1, dtype=torch.long)], 1
    )
    wall = torch.cat(
        [torch.zeros(400, 1, dtype=torch.long), torch.randint(0, side, (400, 2), generator=gen)], 1
    )
    block = torch.randint(8, 16, (500, 3), generator=gen)
    coords = torch.unique(torch.cat([floor, wall, wall[:, [1, 0, 2]], block]), dim=0)  # (V, 3) sorted
    n = len(coords)
    indices = torch.cat([torch.zeros(n, 1, dtype=torch.long), coords], 1).int().to(device)  # (V, 4)
    feats = torch.rand(n, cfg.in_channels, generator=gen).to(device) * 2 - 1  # (V, 6)
    shape = padded_spatial_shape([side] * 3, len(cfg.widths))
    net = SparseUNet(cfg.in_channels, cfg.widths, cfg.blocks_per_level, algo).to(device)

    started = time.perf_counter()
    out = net(spconv.SparseConvTensor(feats, indices, shape, 1))  # (V, widths[0])
    out.square().mean().backward()
    net.eval()
    with torch.no_grad():  # eval mode too: that is where bias fusion used to break on CPU
        out_eval = net(spconv.SparseConvTensor(feats, indices, shape, 1))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    if out.shape != (n, cfg.widths[0]) or out_eval.shape != out.shape:
        raise RuntimeError(f"sparse UNet returned shape {tuple(out.shape)}, expected {(n, cfg.widths[0])}")
    if not (torch.isfinite(out).all() and torch.isfinite(out_eval).all()):
        raise RuntimeError("sparse UNet produced NaN or infinite features")
    bad = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    if bad:
        raise RuntimeError(f"missing or non-finite gradients for {len(bad)} parameters, e.g. {bad[0]}")
    return n, seconds


def _recommended() -> str:
    py = sys.version_info
    return spconv_requirement((py[0], py[1]), torch.version.cuda)


def diagnose_import(err: BaseException) -> tuple[str, str]:
    """(diagnosis, fix) for `import spconv.pytorch` failing."""
    text = " ".join(str(e) for e in (err, err.__cause__) if e is not None)
    if (
        re.search(r"libcudart|libcu\w*\.so|undefined symbol|cuda", text, re.IGNORECASE)
        and "No module" not in text
    ):
        return (
            "spconv is installed but cannot load: its wheel was built for another CUDA than this torch "
            f"(torch CUDA build: {torch.version.cuda or 'none, CPU'}).",
            f"pip uninstall the installed spconv-cuXXX and cumm-cuXXX wheels, then pip install '{_recommended()}'",
        )
    return "spconv is not installed (or not importable).", spconv_install_hint()


def diagnose_check(err: BaseException, device: torch.device, algo: Any) -> tuple[str, str]:
    """(diagnosis, fix) in plain words for the sparse UNet check failing with `err`."""
    text = f"{type(err).__name__}: {err}"
    native = import_spconv().ConvAlgo.Native
    if device.type == "cpu" and (
        algo != native or re.search(r"not compiled with CUDA|implicit_?gemm", text, re.IGNORECASE)
    ):
        return (
            f"the convolutions ran on CPU with spconv algorithm {algo}; spconv's default (implicit GEMM) "
            "algorithm is CUDA-only, on CPU every conv needs ConvAlgo.Native.",
            "build every sparse conv with algo=beep3d.backend.conv_algo(device) (Native on CPU); "
            "do not construct spconv layers without an explicit algo for CPU runs.",
        )
    if device.type == "cuda" and re.search(
        r"no kernel image|invalid device function|cuda error|cudaError|arch|ptx|cumm|nvrtc",
        text,
        re.IGNORECASE,
    ):
        return (
            f"spconv's CUDA kernels do not run on this GPU / CUDA (torch CUDA {torch.version.cuda}); the spconv "
            f"wheel {_describe(_distributions('spconv'))} was most likely built for another CUDA.",
            f"pip uninstall the spconv-cuXXX and cumm-cuXXX wheels, then pip install '{_recommended()}'; "
            "meanwhile --device cpu works (slowly).",
        )
    return (
        f"the sparse UNet failed on {device} in an unexpected way: {text}",
        "re-run with --device cpu to see whether the problem is CUDA-specific, and check that torch and "
        f"spconv match: {spconv_install_hint()}",
    )


def run_doctor(device_name: str, echo: Callable[[str], None] = click.echo) -> bool:
    """Print the environment and run the sparse UNet check; True when everything works."""
    problems = 0

    def problem(what: str, diagnosis: str, fix: str) -> None:
        nonlocal problems
        problems += 1
        echo(f"FAILED   {what}\n  diagnosis: {diagnosis}\n  fix: {fix}")

    spconv_dists, cumm_dists = _distributions("spconv"), _distributions("cumm")
    echo(f"python   {platform.python_version()} ({sys.executable})")
    echo(
        f"torch    {torch.__version__} ({f'CUDA {torch.version.cuda} build' if torch.version.cuda else 'CPU build'})"
    )
    echo(f"spconv   {_describe(spconv_dists)}")
    echo(f"cumm     {_describe(cumm_dists)}")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        echo(f"CUDA     available: {torch.cuda.device_count()} device(s), {name} (compute {major}.{minor})")
    else:
        echo("CUDA     not available")
    if len(spconv_dists) > 1:
        problem(
            "several spconv wheels are installed",
            "they share one import name and overwrite each other's files.",
            f"pip uninstall {' '.join(n for n, _ in spconv_dists)}, then pip install '{_recommended()}'",
        )
    elif spconv_dists and torch.version.cuda and spconv_dists[0][0] != _recommended().split("==")[0]:
        echo(f"note     for torch CUDA {torch.version.cuda} the matching wheel is {_recommended()}")

    try:
        device = resolve_device(device_name)
    except RuntimeError:
        problem(
            f"CUDA requested (--device {device_name}) but not available",
            f"torch {torch.__version__} sees no CUDA device (torch CUDA build: {torch.version.cuda or 'none, CPU'}).",
            "use --device cpu or auto; for a GPU install a CUDA build of torch (see README 'GPU install') "
            "and check the driver with nvidia-smi.",
        )
        echo(f"doctor: {problems} problem(s)")
        return False
    try:
        import_spconv()
    except ImportError as err:
        problem("spconv cannot be imported", *diagnose_import(err))
        echo(f"doctor: {problems} problem(s)")
        return False

    algo = conv_algo(device)
    echo(
        f"device   {device} (requested {device_name}), spconv algorithm {algo.name}, "
        f"torch CPU threads {torch.get_num_threads()}"
    )
    try:
        n_voxels, seconds = unet_check(device, algo)
    except Exception as err:  # any failure of the check is the finding; it is reported, not swallowed
        problem(f"sparse UNet forward/backward on {device}", *diagnose_check(err, device, algo))
    else:
        echo(f"check    sparse UNet forward + backward + eval forward, {n_voxels} voxels on {device}: "
             f"OK ({seconds:.2f} s)")  # fmt: skip
    echo("doctor: all good" if problems == 0 else f"doctor: {problems} problem(s)")
    return problems == 0


@main.command(short_help="Check python, torch, spconv and the device; run the sparse UNet.")
@click.option("--device", type=DEVICES, default="auto", show_default=True, help="Device to check.")
def doctor(device: str) -> None:
    """Print python / torch / spconv versions and the device, then run the sparse UNet on it.

    Exit code 0 when everything works, 1 otherwise (with a diagnosis and a fix).
    """
    sys.exit(0 if run_doctor(device) else 1)


if __name__ == "__main__":
    main()
