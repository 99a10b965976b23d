"""`beep3d evaluate`: a folder of predictions (either format) scored against ScanNet-layout ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from click.testing import CliRunner

from beep3d.classes import SCANNET
from beep3d.data.scannet import read_label_map, read_scannet_scene
from beep3d.data.synthetic import default_config, generate_scene
from beep3d.data.synthetic.write_scannet import write_index, write_scene
from beep3d.eval import Evaluator, SceneGT, ScenePred, write_submission
from pipeline.cli import main
from pipeline.report import per_class_table, scores_table
from pipeline.scoring import find_predictions, read_instances_json, scene_name

SCENES = (0, 1)


@pytest.fixture(scope="module")
def gt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic scenes in ScanNet's raw layout, listed as the val split."""
    root = tmp_path_factory.mktemp("gt")
    ids = [write_scene(root, generate_scene(default_config(), i)).name for i in SCENES]
    write_index(root, {"val": ids}, {})
    return root


def ground_truth(gt_root: Path) -> list[SceneGT]:
    label_map = read_label_map(gt_root / "scannetv2-labels.combined.tsv")
    out = []
    for i in SCENES:
        scene = read_scannet_scene(gt_root, f"scene{i:04d}_00", "val", label_map)
        out.append(SceneGT(scene.scene_id, scene.label.astype(np.int64), scene.instance.astype(np.int64)))
    return out


def predictions(gt: SceneGT, keep: float, rng: np.random.Generator) -> ScenePred:
    """One mask per gt instance of an evaluated class: all of it, or only `keep` of its vertices."""
    cls = SCANNET.class_index(gt.label)
    rows, classes = [], []
    for inst in np.unique(gt.instance[(gt.instance > 0) & (cls >= 0)]):
        idx = np.flatnonzero(gt.instance == inst)
        rows.append(idx[rng.random(len(idx)) < keep] if keep < 1 else idx)
        classes.append(int(cls[idx[0]]))
    masks = np.zeros((len(rows), gt.n_vertices), bool)
    for k, idx in enumerate(rows):
        masks[k, idx] = True
    return ScenePred(gt.scene_id, masks, np.array(classes), rng.random(len(rows)))


def write_json(folder: Path, pred: ScenePred) -> Path:
    """As `beep3d predict` writes it (the fields the scorer reads)."""
    masks = scipy.sparse.csr_matrix(pred.masks)
    doc = {
        "input": f"scans/{pred.scene_id}/{pred.scene_id}_vh_clean_2.ply",
        "n_points": pred.masks.shape[1],
        "class_set": "scannet",
        "instances": [
            {
                "id": k,
                "class": SCANNET.instance_names[int(c)],
                "class_index": int(c),
                "score": float(s),
                "n_points": int(masks[k].nnz),
                "point_indices": masks[k].indices.tolist(),
            }
            for k, (c, s) in enumerate(zip(pred.classes, pred.scores, strict=True))
        ],
    }
    path = folder / f"{pred.scene_id}_vh_clean_2_instances.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["evaluate", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("fmt", ["json", "submission"])
def test_scores_and_prints_the_report_tables(gt_root: Path, tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    gts = ground_truth(gt_root)
    preds = [predictions(gt, keep=0.6, rng=rng) for gt in gts]  # IoU about 0.6: AP depends on it
    for pred in preds:
        if fmt == "json":
            write_json(tmp_path / "pred", pred)
        else:
            write_submission(tmp_path / "pred", pred.scene_id, pred, SCANNET)
    expected = Evaluator(SCANNET)
    for gt, pred in zip(gts, preds, strict=True):
        expected.add(gt, pred)
    result = expected.result()
    assert 0 < result["mAP"] < 1

    code, output = run(tmp_path / "pred", "--gt", gt_root, "--metrics", tmp_path / "m.json")
    assert code == 0, output
    assert f"2 scenes ({fmt} predictions" in output
    assert scores_table(result, "scored") in output
    counts = {name: 0 for name in SCANNET.instance_names}
    for gt in gts:
        for inst in np.unique(gt.instance[gt.instance > 0]):
            idx = gt.instance == inst
            c = SCANNET.class_index(gt.label[idx][:1])[0]
            if c >= 0 and idx.sum() >= 100:
                counts[SCANNET.instance_names[c]] += 1
    assert per_class_table(result, SCANNET, counts) in output  # the report's table, GT counts included
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["mAP"] == pytest.approx(result["mAP"]) and written["n_scenes"] == 2


def test_perfect_predictions_score_one_and_split_needs_every_scene(gt_root: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gts = ground_truth(gt_root)
    write_json(tmp_path / "pred", predictions(gts[0], keep=1.0, rng=rng))
    code, output = run(tmp_path / "pred", "--gt", gt_root)
    assert code == 0 and "| scored | 1.000 | 1.000 | 1.000 |" in output, output
    code, output = run(tmp_path / "pred", "--gt", gt_root, "--split", "val")
    assert code == 1 and "1 scene(s) of the val split have no prediction: scene0001_00" in output, output


def test_bad_prediction_folders_name_the_file(gt_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = run(empty, "--gt", gt_root)
    assert code == 1 and "no predictions" in output and str(empty) in output, output

    gt = ground_truth(gt_root)[0]
    path = write_json(tmp_path / "short", predictions(gt, 1.0, np.random.default_rng(0)))
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "n_points": doc["n_points"] - 1}))
    code, output = run(tmp_path / "short", "--gt", gt_root)
    assert code == 1 and "vertices" in output and path.name in output, output

    both = tmp_path / "both"
    write_json(both, predictions(gt, 1.0, np.random.default_rng(0)))
    (both / "scene0000_00.txt").write_text("")
    with pytest.raises(Exception, match="pass --format"):
        find_predictions(both)
    assert find_predictions(both, "submission")[0] == "submission"
    assert scene_name("scene0000_00_vh_clean_2") == "scene0000_00" and scene_name("room") == "room"
    with pytest.raises(Exception, match="class_index 99"):
        doc["instances"][0]["class_index"] = 99
        path.write_text(json.dumps(doc))
        read_instances_json(path, "scene0000_00", SCANNET, doc["n_points"])
