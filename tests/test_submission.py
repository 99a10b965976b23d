"""ScanNet benchmark submission files: exact format, round trip that re-scores identically, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from beep3d.classes import S3DIS, SCANNET
from beep3d.errors import DataError
from beep3d.eval import Evaluator, SceneGT, ScenePred, read_submission, write_submission

SCENE = "scene0011_00"


def _scene(rng: np.random.Generator, n: int = 4000, k: int = 16) -> tuple[SceneGT, ScenePred]:
    """Runs of 200 chair/table/wall/unlabelled vertices and k masks cut around runs, with their
    class most of the time, and scores distinct at 6 decimals."""
    run_label = rng.choice([1, 5, 7, -1], size=n // 200)
    label = np.repeat(run_label, 200).astype(np.int16)
    instance = np.repeat(np.arange(1, n // 200 + 1), 200).astype(np.int32)
    masks = np.zeros((k, n), bool)
    classes = rng.integers(0, SCANNET.num_classes, k)
    for i in range(k):
        run = int(rng.integers(0, n // 200))
        lo = max(0, run * 200 + int(rng.integers(-60, 60)))
        masks[i, lo : lo + int(rng.integers(90, 260))] = True
        if run_label[run] in SCANNET.instance_ids and rng.random() < 0.8:
            classes[i] = SCANNET.instance_ids.index(int(run_label[run]))
    scores = rng.permutation(np.linspace(0.05, 0.95, k)) + rng.uniform(0, 1e-3, k)
    return SceneGT(SCENE, label, instance), ScenePred(SCENE, masks, classes, scores)


def test_writes_the_benchmark_format(tmp_path: Path) -> None:
    masks = np.array([[1, 0, 1, 1], [0, 1, 0, 0]], bool)
    pred = ScenePred(SCENE, masks, np.array([2, 17]), np.array([0.9123456, 0.25]))
    main = write_submission(tmp_path, SCENE, pred, SCANNET)
    assert main == tmp_path / f"{SCENE}.txt"
    # label id = nyu40 id of the class (chair 5, otherfurniture 39), confidence as repr()
    assert main.read_text() == (
        f"predicted_masks/{SCENE}_000.txt 5 0.9123456\npredicted_masks/{SCENE}_001.txt 39 0.25\n"
    )
    assert (tmp_path / "predicted_masks" / f"{SCENE}_000.txt").read_text() == "1\n0\n1\n1\n"
    assert (tmp_path / "predicted_masks" / f"{SCENE}_001.txt").read_text() == "0\n1\n0\n0\n"
    # No temporary files are left beside the results.
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["predicted_masks", f"{SCENE}.txt", f"{SCENE}_000.txt", f"{SCENE}_001.txt"]
    )


def test_s3dis_label_ids_are_class_indices(tmp_path: Path) -> None:
    pred = ScenePred("Area_5_office_1", np.ones((1, 3), bool), np.array([8]), np.array([0.5]))
    write_submission(tmp_path, "Area_5_office_1", pred, S3DIS)
    assert (tmp_path / "Area_5_office_1.txt").read_text().split()[1] == "8"
    back = read_submission(tmp_path, "Area_5_office_1", S3DIS)
    assert back.classes.tolist() == [8]


@pytest.mark.parametrize("sparse", [False, True])
def test_round_trip_rescores_identically(tmp_path: Path, sparse: bool) -> None:
    rng = np.random.default_rng(3)
    gt, pred = _scene(rng)
    to_write = (
        ScenePred(SCENE, scipy.sparse.csr_array(pred.masks), pred.classes, pred.scores) if sparse else pred
    )
    write_submission(tmp_path, SCENE, to_write, SCANNET)
    back = read_submission(tmp_path, SCENE, SCANNET, n_vertices=gt.n_vertices)
    np.testing.assert_array_equal(back.masks, pred.masks)
    np.testing.assert_array_equal(back.classes, pred.classes)
    np.testing.assert_allclose(back.scores, pred.scores, rtol=0, atol=5e-7)
    before, after = Evaluator(SCANNET), Evaluator(SCANNET)
    before.add(gt, pred)
    after.add(gt, back)
    table = before.ap_table()
    assert len(np.unique(table[~np.isnan(table)])) >= 4  # a scene with varied, non-trivial APs
    np.testing.assert_array_equal(after.ap_table(), table)


def test_confidences_that_differ_beyond_six_decimals_keep_their_order(tmp_path: Path) -> None:
    # Two chairs of 200 vertices. A finds chair 1 exactly; B, scored higher by 3e-7, covers half of
    # each chair (IoU 1/3 with both): a false positive at IoU 0.5, but ranked above A. Rounded to
    # 6 decimals the two scores tie, and the tie changes the precision-recall curve.
    label = np.full(400, 5, np.int16)
    instance = np.repeat([1, 2], 200).astype(np.int32)
    masks = np.zeros((2, 400), bool)
    masks[0, :200] = True
    masks[1, 100:300] = True
    scores = np.array([0.3190001, 0.3190004])
    assert f"{scores[0]:.6f}" == f"{scores[1]:.6f}"  # the constructed tie
    chair = SCANNET.instance_ids.index(5)
    gt, pred = SceneGT(SCENE, label, instance), ScenePred(SCENE, masks, np.array([chair, chair]), scores)
    write_submission(tmp_path, SCENE, pred, SCANNET)
    back = read_submission(tmp_path, SCENE, SCANNET, n_vertices=400)
    in_memory, from_files = Evaluator(SCANNET), Evaluator(SCANNET)
    in_memory.add(gt, pred)
    from_files.add(gt, back)
    headline = lambda result: [result[k] for k in ("mAP", "AP50", "AP25")]  # noqa: E731
    assert headline(from_files.result()) == headline(in_memory.result()) == [0.125, 0.125, 1.0]
    assert back.scores.tolist() == scores.tolist()


def test_rewrite_removes_stale_masks_and_empty_scene(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _, pred = _scene(rng, k=3)
    other = ScenePred("scene0011_01", pred.masks, pred.classes, pred.scores)
    write_submission(tmp_path, SCENE, pred, SCANNET)
    write_submission(tmp_path, "scene0011_01", other, SCANNET)
    empty = ScenePred(SCENE, np.zeros((0, pred.masks.shape[1]), bool), np.zeros(0, np.int64), np.zeros(0))
    write_submission(tmp_path, SCENE, empty, SCANNET)
    assert (tmp_path / f"{SCENE}.txt").read_text() == ""
    names = sorted(p.name for p in (tmp_path / "predicted_masks").iterdir())
    assert names == [
        "scene0011_01_000.txt",
        "scene0011_01_001.txt",
        "scene0011_01_002.txt",
    ]  # other scene kept
    back = read_submission(tmp_path, SCENE, SCANNET, n_vertices=4000)
    assert back.masks.shape == (0, 4000) and len(back) == 0


def test_reader_accepts_loose_formatting(tmp_path: Path) -> None:
    # Hand-made files: CRLF line ends, any non-zero integer marks a vertex, blank lines skipped.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.txt").write_bytes(b"0\r\n2\r\n1\r\n")
    (tmp_path / f"{SCENE}.txt").write_text("\nm/a.txt 7 1e-1\n\n")
    back = read_submission(tmp_path, SCENE, SCANNET)
    assert back.masks.tolist() == [[False, True, True]]
    assert back.classes.tolist() == [SCANNET.instance_ids.index(7)] and back.scores.tolist() == [0.1]


@pytest.mark.parametrize(
    ("line", "mask", "message"),
    [
        ("predicted_masks/x.txt 1 0.5", "1\n", "label id 1 is not an instance class of scannet"),
        ("predicted_masks/x.txt 5", "1\n", "expected '<mask file> <label id> <confidence>'"),
        ("predicted_masks/x.txt 5 high", "1\n", "confidence a number"),
        ("predicted_masks/x.txt 5 nan", "1\n", "confidence must be finite"),
        ("predicted_masks/missing.txt 5 0.5", "1\n", "mask file listed in the scene file is missing"),
        ("predicted_masks/x.txt 5 0.5", "1\nyes\n", "one integer per vertex"),
        ("predicted_masks/x.txt 5 0.5", "1\n0\n", "mask has 2 vertices, expected 3"),
    ],
)
def test_reader_rejects_bad_files(tmp_path: Path, line: str, mask: str, message: str) -> None:
    (tmp_path / "predicted_masks").mkdir()
    (tmp_path / "predicted_masks" / "x.txt").write_text(mask)
    (tmp_path / f"{SCENE}.txt").write_text(line + "\n")
    with pytest.raises(DataError, match=message) as err:
        read_submission(tmp_path, SCENE, SCANNET, n_vertices=3)
    assert err.value.scene_id == SCENE and err.value.path is not None


def test_writer_and_reader_errors(tmp_path: Path) -> None:
    pred = ScenePred(SCENE, np.ones((1, 3), bool), np.array([0]), np.array([0.5]))
    with pytest.raises(DataError, match="belongs to scene"):
        write_submission(tmp_path, "scene0099_00", pred, SCANNET)
    with pytest.raises(DataError, match="cannot name a submission file"):
        write_submission(tmp_path, "../x", ScenePred("../x", pred.masks, pred.classes, pred.scores), SCANNET)
    with pytest.raises(DataError, match=r"class indices must lie in 0\.\.12"):
        write_submission(tmp_path, SCENE, ScenePred(SCENE, pred.masks, np.array([13]), pred.scores), S3DIS)
    with pytest.raises(DataError, match="no submission file"):
        read_submission(tmp_path, SCENE, SCANNET)
    # Masks of different lengths in one scene file.
    write_submission(
        tmp_path, SCENE, ScenePred(SCENE, np.ones((2, 3), bool), np.array([0, 1]), [0.5, 0.4]), SCANNET
    )
    (tmp_path / "predicted_masks" / f"{SCENE}_001.txt").write_text("1\n1\n")
    with pytest.raises(DataError, match="mask has 2 vertices, expected 3"):
        read_submission(tmp_path, SCENE, SCANNET)
