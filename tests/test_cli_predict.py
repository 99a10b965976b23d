"""`beep3d predict` end to end: a tiny untrained model, real PLY files, the real console script.

Nothing is trained: a tiny model's random weights already produce overlapping masks at score
threshold 0, which is all the output format needs. Run in-process through click's CliRunner,
and once as a real `beep3d` subprocess on three scans.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from plyfile import PlyData, PlyElement

from beep3d.classes import SCANNET
from beep3d.data.scannet import read_axis_alignment
from beep3d.data.superpoints import SuperpointConfig
from beep3d.data.synthetic import default_config, generate_scene
from beep3d.data.synthetic.write_scannet import SEGS_SUFFIX, write_index, write_scene
from pipeline.checkpoint import FORMAT_VERSION
from pipeline.cli import main
from pipeline.config import build, load_params
from pipeline.predict import (
    DEFAULT_SUPERPOINTS,
    NO_INSTANCE_RGB,
    PredictOptions,
    expand_scans,
    inference_config,
    instance_palette,
    load_trained_model,
    predict_scan,
    sibling_meta,
    sibling_segments,
)
from pipeline.training import RunConfig, build_model, save_model

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_MODEL = {
    "widths": [8, 16],
    "blocks_per_level": 1,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 2,
    "n_queries": 8,
    "ffn_dim": 16,
    "rpe_hidden": 4,
    "query_pool_k": 4,
}
# An untrained model scores ~0.01: threshold 0 keeps its masks; topk bounds the JSON size.
LOOSE = ["--device", "cpu", "--score-threshold", "0", "--topk", "12"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def save_tiny_model(path: Path, superpoints: str = "dataset") -> Path:
    params = load_params(REPO / "params.yaml")
    sections = {k: params[k] for k in ("model", "data_loader", "train", "inference")}
    sections["model"] = {**sections["model"], **TINY_MODEL}
    sections["data_loader"] = {**sections["data_loader"], "superpoints": superpoints}
    cfg = build(RunConfig, sections, "params")
    torch.manual_seed(0)
    save_model(path, build_model(cfg.model, torch.device("cpu")), cfg, "scannet")
    return path


def write_cloud(path: Path, xyz: np.ndarray, rgb: np.ndarray, *, text: bool, double: bool) -> Path:
    """A plain point cloud (no faces) written with plyfile; the binary one carries normals too."""
    coord = "f8" if double else "f4"
    fields = [("x", coord), ("y", coord), ("z", coord), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if not text:
        fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    vertex = np.zeros(len(xyz), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        vertex[c] = rgb[:, i]
    if not text:
        vertex["nz"] = 1.0
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    scene = generate_scene(default_config(), 0)
    folder = write_scene(root / "scannet", scene)
    cloud_xyz = scene.xyz[::2].astype(np.float64) + 0.123456789  # aligned frame, as a user's scan
    cloud_rgb = scene.rgb[::2]
    segs = root / "cloud_segments.json"
    segs.write_text(json.dumps({"segIndices": scene.segment[::2].tolist()}))
    return {
        "root": root,
        "model": save_tiny_model(root / "model.pt"),
        "mesh": folder / f"{scene.scene_id}_vh_clean_2.ply",
        "ascii": write_cloud(root / "cloud_ascii.ply", cloud_xyz, cloud_rgb, text=True, double=True),
        "binary": write_cloud(root / "cloud_binary.ply", cloud_xyz, cloud_rgb, text=False, double=False),
        "cloud_segments": segs,
    }


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    # An uncaught exception also exits 1 in CliRunner: only SystemExit counts as a clean exit.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def check_outputs(scan: Path, out_dir: Path) -> dict:
    """Parse both outputs and check them against the input and against each other."""
    source = PlyData.read(str(scan))
    n = source["vertex"].count
    out_ply = PlyData.read(str(out_dir / f"{scan.stem}_instances.ply"))
    doc = json.loads((out_dir / f"{scan.stem}_instances.json").read_text())

    assert out_ply["vertex"].count == n and doc["n_points"] == n
    for axis in "xyz":
        np.testing.assert_allclose(out_ply["vertex"][axis], source["vertex"][axis], rtol=1e-6, atol=1e-5)
    has_faces = "face" in source and source["face"].count > 0
    assert ("face" in out_ply and out_ply["face"].count == source["face"].count) == has_faces
    assert doc["input"] == str(scan) and doc["class_set"] == "scannet"

    instances = doc["instances"]
    assert instances, "the tiny model at threshold 0 should predict something"
    assert [inst["id"] for inst in instances] == list(range(len(instances)))
    scores = [inst["score"] for inst in instances]
    assert scores == sorted(scores, reverse=True)
    owner = np.full(n, -1)  # best-scoring instance of each vertex, from the JSON alone
    for inst in reversed(instances):
        idx = np.asarray(inst["point_indices"])
        assert len(idx) == inst["n_points"] > 0
        assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) > 0)  # valid, sorted, unique
        assert inst["class"] == SCANNET.instance_names[inst["class_index"]]
        owner[idx] = inst["id"]
    colors = np.stack([out_ply["vertex"][c] for c in ("red", "green", "blue")], axis=1)
    expected = np.where(
        owner[:, None] >= 0, instance_palette(len(instances))[np.maximum(owner, 0)], NO_INSTANCE_RGB
    )
    np.testing.assert_array_equal(colors, expected)
    return doc


def test_default_superpoints_match_params() -> None:
    params = load_params(REPO / "params.yaml")
    assert DEFAULT_SUPERPOINTS == build(SuperpointConfig, params["preprocess"]["superpoints"], "superpoints")


def test_palette_is_distinct_and_never_grey() -> None:
    palette = instance_palette(40)
    assert len({tuple(c) for c in palette}) == 40
    assert not (palette == NO_INSTANCE_RGB).all(axis=1).any()


def test_scannet_mesh_uses_sibling_segments(files: dict[str, Path], tmp_path: Path) -> None:
    mesh = files["mesh"]
    # The file the ScanNet-layout writer wrote is the one predict finds by itself.
    assert sibling_segments(mesh) == mesh.parent / f"{mesh.parent.name}{SEGS_SUFFIX}"
    code, output = run_cli("predict", mesh, "--checkpoint", files["model"], "--out", tmp_path, *LOOSE)
    assert code == 0, output
    doc = check_outputs(mesh, tmp_path)
    assert doc["superpoints"] == f"segments {sibling_segments(mesh)}"
    # Masks are unions of the ScanNet segments: each segment lies wholly inside or outside a mask.
    segment = np.asarray(json.loads(sibling_segments(mesh).read_text())["segIndices"])
    for inst in doc["instances"]:
        inside = np.zeros(len(segment), bool)
        inside[inst["point_indices"]] = True
        assert not np.intersect1d(segment[inside], segment[~inside]).size


def test_scannet_mesh_is_aligned_by_its_sibling_meta_file(files: dict[str, Path], tmp_path: Path) -> None:
    mesh = files["mesh"]
    meta = mesh.parent / f"{mesh.parent.name}.txt"
    assert sibling_meta(mesh) == meta
    # Stored in the scanner's frame: the floor lies at z = 1.26 m until the meta file's matrix is applied.
    code, output = run_cli("predict", mesh, "--checkpoint", files["model"], "--out", tmp_path / "a", *LOOSE)
    assert code == 0 and "warning" not in output, output
    doc = check_outputs(mesh, tmp_path / "a")  # the output PLY keeps the stored coordinates
    assert doc["axis_alignment"]["source"] == str(meta)
    np.testing.assert_array_equal(doc["axis_alignment"]["matrix"], read_axis_alignment(meta, "s"))
    assert f"alignment: {meta}" in output

    code, output = run_cli(
        "predict", mesh, "--checkpoint", files["model"], "--out", tmp_path / "b", *LOOSE, "--no-align"
    )
    assert code == 0 and "z = 1.26" in output, output
    doc_stored = check_outputs(mesh, tmp_path / "b")
    assert doc_stored["axis_alignment"] == {"source": "none (--no-align)", "matrix": None}
    assert doc_stored["instances"] != doc["instances"]  # the model saw other coordinates

    # A mesh copied away from its meta file: nothing beside it, or the meta file given by hand.
    lonely = tmp_path / mesh.name
    lonely.write_bytes(mesh.read_bytes())
    sibling_segments(lonely).write_bytes(sibling_segments(mesh).read_bytes())  # the segments go along
    code, output = run_cli("predict", lonely, "--checkpoint", files["model"], "--out", tmp_path / "c", *LOOSE)
    assert code == 0, output
    assert (
        check_outputs(lonely, tmp_path / "c")["axis_alignment"]["source"]
        == f"none (no {meta.name} beside the scan)"
    )
    code, output = run_cli(
        "predict", lonely, "--checkpoint", files["model"], "--out", tmp_path / "d", *LOOSE, "--align", meta
    )
    assert code == 0, output
    by_hand = check_outputs(lonely, tmp_path / "d")
    assert by_hand["axis_alignment"]["source"] == str(meta)
    assert [i["point_indices"] for i in by_hand["instances"]] == [
        i["point_indices"] for i in doc["instances"]
    ]


def test_predict_output_scores_with_beep3d_evaluate(files: dict[str, Path], tmp_path: Path) -> None:
    gt_root = files["mesh"].parents[2]  # the ScanNet-layout folder holding scans/<scene>/
    write_index(gt_root, {}, {})  # its label table (no split lists: scenes are read as val)
    code, output = run_cli(
        "predict", files["mesh"], "--checkpoint", files["model"], "--out", tmp_path, *LOOSE
    )
    assert code == 0, output
    code, output = run_cli("evaluate", tmp_path, "--gt", gt_root)
    assert code == 0, output
    assert "1 scenes (json predictions" in output and "| scored |" in output and "| chair |" in output


def test_align_options_are_checked(files: dict[str, Path], tmp_path: Path) -> None:
    meta = files["mesh"].parent / f"{files['mesh'].parent.name}.txt"
    code, output = run_cli(
        "predict",
        files["mesh"],
        "--checkpoint",
        files["model"],
        "--out",
        tmp_path,
        "--align",
        meta,
        "--no-align",
    )
    assert code == 2 and "exclude each other" in output, output
    code, output = run_cli(
        "predict",
        files["mesh"],
        files["ascii"],
        "--checkpoint",
        files["model"],
        "--out",
        tmp_path,
        "--align",
        meta,
    )
    assert code == 2 and "--align belongs to one scan" in output, output
    bad = tmp_path / "bad.txt"
    bad.write_text("axisAlignment = 1 2 3\n")
    out = expect_error(
        [files["mesh"], "--checkpoint", files["model"], "--out", tmp_path, "--align", bad], bad
    )
    assert "16 finite numbers" in out and not list(tmp_path.glob("*_instances.*"))


def test_keeps_going_past_bad_scans_and_lists_them_at_the_end(files: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "in" / "empty.ply"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    missing = tmp_path / "in" / "missing.ply"
    out = tmp_path / "out"
    args = [
        files["ascii"],
        empty,
        missing,
        files["binary"],
        "--checkpoint",
        files["model"],
        "--out",
        out,
        *LOOSE,
    ]
    result = CliRunner().invoke(main, ["predict", *map(str, args)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    check_outputs(files["ascii"], out)
    check_outputs(files["binary"], out)  # the scan after the bad ones was processed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"cloud_{kind}_instances.{ext}" for kind in ("ascii", "binary") for ext in ("ply", "json")
    )  # nothing at all for the failed scans
    assert result.stderr.splitlines() == [
        "beep3d predict: 2 of 4 scan(s) failed:",
        f"  {empty}: empty file (0 bytes): not a PLY",
        f"  {missing}: PLY file not found",
    ], result.output


def test_folders_and_glob_patterns(files: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("b.ply", "a.ply"):
        (folder / name).write_bytes(files["binary"].read_bytes())
    (folder / "notes.txt").write_text("not a scan")
    (folder / "a_instances.ply").write_bytes(b"predict's own output, not a scan")
    assert expand_scans([folder]) == ([folder / "a.ply", folder / "b.ply"], [])
    pattern = str(tmp_path / "*" / "?.ply")
    assert expand_scans([pattern, folder / "a.ply"]) == ([folder / "a.ply", folder / "b.ply"], [])
    nothing = str(tmp_path / "*.none")
    assert expand_scans([nothing, tmp_path / "nowhere.ply"]) == (
        [tmp_path / "nowhere.ply"],
        [(nothing, "no file matches this pattern")],
    )
    code, output = run_cli(
        "predict", folder, nothing, "--checkpoint", files["model"], "--out", tmp_path / "out", *LOOSE,
        "--segments", files["cloud_segments"],
    )  # fmt: skip
    assert code == 2 and "--segments belongs to one scan" in output, output
    code, output = run_cli(
        "predict", pattern, "--checkpoint", files["model"], "--out", tmp_path / "out", *LOOSE, "--progress"
    )
    assert code == 0, output
    assert "predict: 100%" in output and "2/2" in output  # the progress bar over scans
    for name in ("a", "b"):
        check_outputs(folder / f"{name}.ply", tmp_path / "out")
        mode = (tmp_path / "out" / f"{name}_instances.json").stat().st_mode & 0o777
        assert mode == 0o666 & ~current_umask()  # readable by others, as any file of the process
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.ply").write_bytes(files["binary"].read_bytes())
    code, output = run_cli("predict", folder, other, "--checkpoint", files["model"], "--out", tmp_path / "x")
    assert code == 2 and "same output files" in output, output


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_computed_superpoint_model_ignores_sibling_segments(files: dict[str, Path], tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "computed.pt", superpoints="computed")
    code, output = run_cli("predict", files["mesh"], "--checkpoint", model, "--out", tmp_path / "out", *LOOSE)
    assert code == 0, output
    assert check_outputs(files["mesh"], tmp_path / "out")["superpoints"] == "computed"


def test_ascii_double_point_cloud_computes_superpoints(files: dict[str, Path], tmp_path: Path) -> None:
    code, output = run_cli(
        "predict", files["ascii"], "--checkpoint", files["model"], "--out", tmp_path / "cli", *LOOSE
    )
    assert code == 0, output
    cli = check_outputs(files["ascii"], tmp_path / "cli")
    assert cli["superpoints"] == "computed"
    assert cli["inference"] == {
        "topk": 12, "score_threshold": 0.0, "min_points": 100, "nms_iou": 0.5, "mask_threshold": 0.5,
    }  # fmt: skip
    assert "warning" not in output

    # The library call behind the command (no click) writes the same instances.
    trained = load_trained_model(files["model"], torch.device("cpu"))
    result = predict_scan(
        files["ascii"], trained, tmp_path / "lib", PredictOptions(score_threshold=0.0, topk=12)
    )
    lib = json.loads(result.json_path.read_text())
    assert result.n_instances == len(lib["instances"]) and result.superpoint_source == "computed"
    assert [i["point_indices"] for i in lib["instances"]] == [i["point_indices"] for i in cli["instances"]]


def test_binary_point_cloud_with_explicit_segments(files: dict[str, Path], tmp_path: Path) -> None:
    code, output = run_cli(
        "predict", files["binary"], "--checkpoint", files["model"], "--out", tmp_path,
        "--segments", files["cloud_segments"], *LOOSE,
    )  # fmt: skip
    assert code == 0, output
    assert check_outputs(files["binary"], tmp_path)["superpoints"] == f"segments {files['cloud_segments']}"


def test_scan_far_from_origin_warns(files: dict[str, Path], tmp_path: Path) -> None:
    ply = PlyData.read(str(files["binary"]))
    xyz = np.stack([ply["vertex"][a] for a in "xyz"], axis=1)[::4] + np.array([2000.0, 0.0, 30.0])
    rgb = np.stack([ply["vertex"][c] for c in ("red", "green", "blue")], axis=1)[::4]
    scan = write_cloud(tmp_path / "far.ply", xyz, rgb, text=False, double=True)
    code, output = run_cli("predict", scan, "--checkpoint", files["model"], "--out", tmp_path, *LOOSE)
    assert code == 0, output
    assert "from the origin" in output and "z = 30" in output


def test_console_script_subprocess(files: dict[str, Path], tmp_path: Path) -> None:
    """The installed `beep3d` script, three scans in one call (the model is loaded once)."""
    script = BIN / "beep3d"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli"]
    scans = [files["mesh"], files["ascii"], files["binary"]]
    proc = subprocess.run(
        [*cmd, "predict", *map(str, scans), "--checkpoint", str(files["model"]), "--out", str(tmp_path), *LOOSE],
        env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for scan in scans:
        assert f"{scan}: " in proc.stdout
        check_outputs(scan, tmp_path)
    assert (
        json.loads((tmp_path / f"{files['binary'].stem}_instances.json").read_text())["superpoints"]
        == "computed"
    )


# --- bad inputs: exit code 1, one line naming the file, no traceback ----------------------------


def expect_error(args: list[object], *names: object) -> str:
    """A bad checkpoint: one line. A bad scan: the count, then one line per failed scan."""
    code, output = run_cli("predict", *args)
    assert code == 1, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    if lines[0].startswith("beep3d predict: error:"):
        assert len(lines) == 1, output
    else:
        assert lines[0] == "beep3d predict: 1 of 1 scan(s) failed:" and len(lines) == 2, output
        assert lines[1].startswith("  "), output
    for name in names:
        assert str(name) in output, output
    return output


def plain_ply(path: Path, fields: list[tuple[str, str]], rows: np.ndarray) -> Path:
    vertex = np.zeros(len(rows), dtype=fields)
    for i, (name, _) in enumerate(fields):
        vertex[name] = rows[:, i] if len(rows) else []
    PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(path))
    return path


XYZRGB = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]


def test_error_ply_without_colours(files: dict[str, Path], tmp_path: Path) -> None:
    scan = plain_ply(tmp_path / "grey.ply", XYZRGB[:3], np.random.default_rng(0).random((50, 3)))
    out = expect_error([scan, "--checkpoint", files["model"], "--out", tmp_path], scan)
    assert "red/green/blue" in out


def test_error_nan_coordinates(files: dict[str, Path], tmp_path: Path) -> None:
    rows = np.random.default_rng(0).random((50, 6)) * [1, 1, 1, 255, 255, 255]
    rows[7, 1] = np.nan
    scan = plain_ply(tmp_path / "nan.ply", XYZRGB, rows)
    assert "NaN" in expect_error([scan, "--checkpoint", files["model"], "--out", tmp_path], scan)


def test_error_empty_ply(files: dict[str, Path], tmp_path: Path) -> None:
    scan = plain_ply(tmp_path / "empty.ply", XYZRGB, np.zeros((0, 6)))
    assert "no vertices" in expect_error([scan, "--checkpoint", files["model"], "--out", tmp_path], scan)


def test_error_missing_scan(files: dict[str, Path], tmp_path: Path) -> None:
    scan = tmp_path / "nowhere.ply"
    assert "not found" in expect_error([scan, "--checkpoint", files["model"], "--out", tmp_path], scan)


def test_error_segments_length_mismatch(files: dict[str, Path], tmp_path: Path) -> None:
    segs = tmp_path / "short.segs.json"
    segs.write_text(json.dumps({"segIndices": [0, 1, 2]}))
    out = expect_error(
        [files["binary"], "--segments", segs, "--checkpoint", files["model"], "--out", tmp_path], segs
    )
    assert "3 entries" in out


def test_error_checkpoint_missing(files: dict[str, Path], tmp_path: Path) -> None:
    ckpt = tmp_path / "missing.pt"
    assert "not found" in expect_error([files["ascii"], "--checkpoint", ckpt, "--out", tmp_path], ckpt)


def test_error_not_a_beep3d_checkpoint(files: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a torch file")
    expect_error([files["ascii"], "--checkpoint", garbage, "--out", tmp_path], garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    out = expect_error([files["ascii"], "--checkpoint", foreign, "--out", tmp_path], foreign)
    assert "not a beep3d checkpoint" in out


def test_error_resume_state_is_not_a_model(files: dict[str, Path], tmp_path: Path) -> None:
    payload = torch.load(files["model"], weights_only=True)
    state = tmp_path / "state.pt"
    torch.save(
        {k: v for k, v in payload.items() if k not in ("class_set", "data_loader", "inference")}, state
    )
    out = expect_error([files["ascii"], "--checkpoint", state, "--out", tmp_path], state)
    assert "not a trained-model file" in out


def test_error_other_format_version(files: dict[str, Path], tmp_path: Path) -> None:
    payload = torch.load(files["model"], weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, old)
    out = expect_error([files["ascii"], "--checkpoint", old, "--out", tmp_path], old)
    assert f"checkpoint format {FORMAT_VERSION + 1}" in out


def test_no_instances_gives_grey_scan_and_empty_list(files: dict[str, Path], tmp_path: Path) -> None:
    # Scores are products of probabilities, so none can exceed a threshold of 1.
    code, output = run_cli(
        "predict", files["binary"], "--checkpoint", files["model"], "--out", tmp_path,
        "--segments", files["cloud_segments"], "--device", "cpu", "--score-threshold", "1",
    )  # fmt: skip
    assert code == 0 and ": 0 instances" in output, output
    doc = json.loads((tmp_path / "cloud_binary_instances.json").read_text())
    assert doc["instances"] == [] and doc["inference"]["score_threshold"] == 1.0
    ply = PlyData.read(str(tmp_path / "cloud_binary_instances.ply"))
    assert ply["vertex"].count == doc["n_points"]
    for channel, value in zip(("red", "green", "blue"), NO_INSTANCE_RGB, strict=True):
        assert (ply["vertex"][channel] == value).all()


def test_model_file_without_nms_setting_predicts_without_nms(files: dict[str, Path], tmp_path: Path) -> None:
    # Model files written before `inference.nms_iou` existed were evaluated without NMS.
    payload = torch.load(files["model"], weights_only=True)
    older = tmp_path / "older.pt"
    torch.save(
        {**payload, "inference": {k: v for k, v in payload["inference"].items() if k != "nms_iou"}}, older
    )
    assert inference_config(load_trained_model(older, torch.device("cpu")), PredictOptions()).nms_iou == 0.0
    current = load_trained_model(files["model"], torch.device("cpu"))
    assert inference_config(current, PredictOptions()).nms_iou == 0.5
    assert inference_config(current, PredictOptions(nms_iou=0.0)).nms_iou == 0.0


def test_mask_threshold_from_model_file_or_command_line(files: dict[str, Path], tmp_path: Path) -> None:
    # Model files written before `inference.mask_threshold` existed used 0.5.
    payload = torch.load(files["model"], weights_only=True)
    older = tmp_path / "older.pt"
    inference = {k: v for k, v in payload["inference"].items() if k != "mask_threshold"}
    torch.save({**payload, "inference": inference}, older)
    older_cfg = inference_config(load_trained_model(older, torch.device("cpu")), PredictOptions())
    assert older_cfg.mask_threshold == 0.5
    tuned = tmp_path / "tuned.pt"
    torch.save({**payload, "inference": {**payload["inference"], "mask_threshold": 0.4}}, tuned)
    tuned_model = load_trained_model(tuned, torch.device("cpu"))
    assert inference_config(tuned_model, PredictOptions()).mask_threshold == 0.4
    assert inference_config(tuned_model, PredictOptions(mask_threshold=0.3)).mask_threshold == 0.3
    code, output = run_cli(
        "predict", files["ascii"], "--checkpoint", files["model"], "--out", tmp_path / "cli", *LOOSE,
        "--mask-threshold", "1.0",
    )  # fmt: skip
    assert code != 0 and "--mask-threshold" in output, output
