"""How good are the box-supervised labels, and who decides the ambiguous superpoints better?

    .venv/bin/python benchmarks/pseudo_label_audit.py [--data data/processed] [--params params.yaml]
        [--scenes 24] [--superpoints dataset|computed] [--model checkpoints/export/last_teacher.pt]
        [--per-class] [--markdown label_errors.md]

Reads the first `--scenes` training scenes with their ground truth (monitoring only: nothing here
trains) and prints:

1. The mean instance IoU of the box rules, over all points and over the ambiguous points (inside
   an object box and at least one other box), as the training monitor measures it: the classic
   box heuristic (smallest box + superpoint vote) and the box prior's parts (containment at several
   fractions, objects before wall/floor boxes) in front of it. Then the owner oracle, which reads
   the ground truth to label each ambiguous point as the truth has it (its own instance's box if
   that box holds it, else background), per point and with the superpoint vote: the best any
   labeler of the ambiguous points can do, per point and per superpoint.
2. With `--model` (any saved model: a teacher export, a student, `models/model.pt`): the labels of
   its box queries under the configured prior (`pseudo_assignment`, as training makes them), and
   per superpoint that the prior leaves ambiguous, how often the prior's smallest box and the
   model's best box query name the ground-truth owner (object vs object: superpoints lying wholly
   inside >= 2 object boxes), weighted by points. A learned labeler earns its place where it beats
   the prior there, and where the model disagrees with the prior, how often the prior is wrong
   (whether the model could flag the prior's mistakes). Then, over the points the box prior's labels
   give to an object box, whether the model's query for that box scores the box's own instance
   above the points that are not its instance's (unboxed items lying in the box, unannotated
   points): the AUC of that score, and the labels' IoU when the points it scores below a threshold
   are taken out of the box (`box_query_gate`). A labeler that could tell a pillow from its bed
   would show here first.
3. With `--per-class`: per benchmark class, what the classic heuristic and the configured box prior
   get wrong, as shares of the class's true points: the points they miss, and the extra points they
   add, split by whose points those are: unannotated points, another instance that has a box, or
   an instance of a class without boxes (books on a shelf, pillows on a bed: no box rule can take
   those away from the box they lie in). `--markdown` writes that table (atomically).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import mannwhitneyu

from beep3d.data.dataset import DataConfig, SceneDataset, make_loader
from beep3d.eval.pseudo_masks import instance_ious
from beep3d.io import write_text_atomic
from beep3d.loss.criterion import Criterion, CriterionConfig
from beep3d.loss.targets import (
    BACKGROUND,
    box_heuristic_assignment,
    box_volume,
    point_assignment_from_boxes,
    superpoint_box_fraction,
    superpoint_majority_vote,
)
from beep3d.student_teacher import Beep3dConfig, object_boxes, prior_boxes, pseudo_assignment, teacher_view
from pipeline.config import build
from pipeline.training import load_model

RULES = {  # name -> (containment, objects_first)
    "box heuristic (classic)": (0.0, False),
    "objects first": (0.0, True),
    "containment 1.0": (1.0, False),
    "containment 1.0 + objects first": (1.0, True),
    "containment 0.9 + objects first": (0.9, True),
    "containment 0.8 + objects first": (0.8, True),
}


# Thresholds of `box_query_gate` the audit prints; the per-class table (with --model) shows one.
GATE_THRESHOLDS = (0.1, 0.3, 0.5)
PER_CLASS_GATE = 0.3  # one of GATE_THRESHOLDS

# Point counts per class of `label_error_counts`, summed over the class's boxes.
ERROR_COLUMNS = ("truth", "kept", "missed", "extra_unannotated", "extra_boxed", "extra_boxless")


def label_error_counts(
    assigned: torch.Tensor, instance: torch.Tensor, supervision: dict[str, torch.Tensor]
) -> dict[int, np.ndarray]:
    """Per class index, the `ERROR_COLUMNS` point counts of one scene's object boxes.

    For object box k (its box id is its instance's id): truth = the instance's points; kept = those
    assigned to k; missed = truth - kept; and the points assigned to k that are not the instance's,
    by owner: unannotated (instance id <= 0), an instance with a box (any box, wall/floor included),
    or an instance without one (a class the boxes leave out).
    """
    boxed = supervision["box_id"].to(torch.int64)
    has_box = torch.isin(instance, boxed)
    counts: dict[int, np.ndarray] = {}
    for k in object_boxes(supervision).tolist():
        pred, truth = assigned == k, instance == int(boxed[k])
        extra = pred & ~truth
        row = np.array(
            [
                int(truth.sum()),
                int((pred & truth).sum()),
                int((truth & ~pred).sum()),
                int((extra & (instance <= 0)).sum()),
                int((extra & (instance > 0) & has_box).sum()),
                int((extra & (instance > 0) & ~has_box).sum()),
            ],
            dtype=np.int64,
        )
        cls = int(supervision["box_label"][k])
        counts[cls] = counts.get(cls, 0) + row
    return counts


def per_class_table(counts: dict[str, dict[int, np.ndarray]], class_names: tuple[str, ...]) -> str:
    """Markdown, a row per class, each cell one value per rule ("a / b" in `counts` order): IoU
    over the class's points (kept / (truth + extra)), then each error as a share of the true points."""
    rules = list(counts)
    columns = ("IoU", "missed", "+ unannotated", "+ instances with a box", "+ instances without a box")
    lines = [
        f"Each cell: {' / '.join(rules)}.",
        "",
        "| class | true points | " + " | ".join(columns) + " |",
        "|---|---:|" + "---|" * len(columns),
    ]
    empty = np.zeros(len(ERROR_COLUMNS), np.int64)
    for cls, name in enumerate(class_names):
        rows = [counts[rule].get(cls, empty) for rule in rules]
        truth = int(rows[0][0])
        if truth == 0:
            continue
        values = [[row[1] / (truth + row[3:].sum())] + [v / truth for v in row[2:]] for row in rows]
        cells = [" / ".join(f"{v[c]:.3f}" for v in values) for c in range(len(columns))]
        lines.append(f"| {name} | {truth} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def owner_oracle(supervision: dict[str, torch.Tensor], instance: torch.Tensor) -> torch.Tensor:
    """(P,) the classic split, with each ambiguous point labelled as the truth has it: the object
    box of its own instance when that box holds it, else BACKGROUND (a wall/floor point, an
    unannotated one, an item no box names). No superpoint vote. Reads the ground truth: the
    ceiling of labelers that resolve the ambiguous points, never a training label."""
    point_in_box, is_bg = supervision["point_in_box"], supervision["box_is_background"]
    assigned, ambiguous = point_assignment_from_boxes(point_in_box, is_bg)
    own = torch.full_like(instance, BACKGROUND)  # each point's own object box
    for k in object_boxes(supervision).tolist():
        own[instance == int(supervision["box_id"][k])] = k
    holds = (own >= 0) & point_in_box[torch.arange(len(own)), own.clamp(min=0)]
    truth = torch.where(holds, own, torch.full_like(own, BACKGROUND))
    return torch.where(ambiguous, truth, assigned)


def rows_of_every_box(
    box_prob: torch.Tensor, supervision: dict[str, torch.Tensor], fill: float
) -> torch.Tensor:
    """(T, S) float64: the model's (T_obj, S) object-box rows placed at their boxes' indices, the
    wall/floor boxes' rows `fill`, so that a box index reads its own row."""
    rows = torch.full((len(supervision["box_is_background"]), box_prob.shape[1]), fill, dtype=torch.float64)
    rows[object_boxes(supervision)] = box_prob.double()
    return rows


def own_box_scores(
    assigned: torch.Tensor, box_prob: torch.Tensor, supervision: dict[str, torch.Tensor]
) -> torch.Tensor:
    """(P,) for every point `assigned` to an object box, that box's query probability on the
    point's superpoint; NaN where the point is background or unknown.

    box_prob: (T_obj, S) the model's object-box rows (`teacher_view`), in object-box order.
    """
    rows = rows_of_every_box(box_prob, supervision, fill=float("nan"))
    score = torch.full(assigned.shape, float("nan"), dtype=torch.float64)
    on_box = assigned >= 0
    score[on_box] = rows[assigned[on_box], supervision["superpoint"][on_box]]
    return score


def box_query_gate(assigned: torch.Tensor, score: torch.Tensor, threshold: float) -> torch.Tensor:
    """(P,) `assigned` with the points its box's query scores below `threshold` (`own_box_scores`)
    set to BACKGROUND: the model, not the box, decides what of the box is the object."""
    return torch.where((assigned >= 0) & (score < threshold), torch.full_like(assigned, BACKGROUND), assigned)


def superpoint_decisions(
    sup: dict, instance: torch.Tensor, box_prob: torch.Tensor, cfg: Beep3dConfig
) -> list[tuple[int, int, int, int]]:
    """Per superpoint that lies wholly inside >= 2 object boxes the prior leaves it: (points,
    ground-truth owner box or BACKGROUND, the prior's pick = the smallest of them, the model's
    pick = the one whose box query scores the superpoint highest)."""
    is_bg, superpoint = sup["box_is_background"], sup["superpoint"]
    allowed = prior_boxes(sup, cfg) & ~is_bg[None, :]  # (P, T) object boxes only
    whole = superpoint_box_fraction(allowed, superpoint) >= 1.0 - 1e-9  # (S, T)
    volume = box_volume(sup["box_min"], sup["box_max"])
    prob = rows_of_every_box(box_prob, sup, fill=0.0)
    owner_of_id = {int(b): k for k, b in enumerate(sup["box_id"].tolist()) if not bool(is_bg[k])}
    rows = []
    for s in torch.nonzero(whole.sum(dim=1) >= 2).flatten().tolist():
        boxes = torch.nonzero(whole[s]).flatten().tolist()
        ids, counts = instance[superpoint == s].unique(return_counts=True)
        owner = owner_of_id.get(int(ids[counts.argmax()]), BACKGROUND)
        smallest = min(boxes, key=lambda k: float(volume[k]))
        best = max(boxes, key=lambda k: float(prob[k, s]))
        rows.append((int((superpoint == s).sum()), owner, smallest, best))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/processed"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--scenes", type=int, default=24, help="the first N training scenes (0 = all)")
    ap.add_argument("--superpoints", choices=("dataset", "computed"), default=None)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--per-class", action="store_true", help="per-class error breakdown of the box rules")
    ap.add_argument("--markdown", type=Path, default=None, help="write the per-class table as markdown")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = yaml.safe_load(args.params.read_text())
    cfg = build(Beep3dConfig, params["train"]["beep3d"], "train.beep3d")
    loader_params = dict(params["data_loader"])
    if args.superpoints:
        loader_params["superpoints"] = args.superpoints
    data_cfg = build(DataConfig, loader_params, "data_loader")
    dataset = SceneDataset(
        args.data, "train", data_cfg, with_ground_truth=True, train=False, max_scenes=args.scenes
    )
    model = None
    if args.model is not None:
        model, _ = load_model(args.model, torch.device("cpu"))
    criterion = Criterion.from_config(build(CriterionConfig, params["train"]["loss"], "train.loss"))

    ious: dict[str, tuple[list[float], list[float]]] = {}
    decisions: list = []
    own_scores: list[np.ndarray] = []  # the model's box-query score on its box's own instance...
    other_scores: list[np.ndarray] = []  # ...and on the other points the box prior gives that box
    per_class_rules = {  # name -> (containment, objects_first)
        "box heuristic": RULES["box heuristic (classic)"],
        "box prior": (cfg.prior_containment, cfg.prior_objects_first),
    }
    class_counts: dict[str, dict[int, np.ndarray]] = {name: {} for name in per_class_rules}
    gate_counts: dict[int, np.ndarray] = {}  # with --model: the box prior under the model's gate
    if model is not None:
        class_counts[f"box prior, model's gate {PER_CLASS_GATE}"] = gate_counts
    for batch in make_loader(dataset, 1, shuffle=False, seed=0, num_workers=0):
        sup, gt = batch["supervision"][0], batch["ground_truth"][0]
        instance = gt["instance"].to(torch.int64)
        _, ambiguous = point_assignment_from_boxes(sup["point_in_box"], sup["box_is_background"])
        # Each box rule once: the IoU table and the per-class table share the assignments.
        by_rule = {
            rule: box_heuristic_assignment(sup, *rule)
            for rule in {*RULES.values(), *per_class_rules.values()}
        }
        resolved = {name: by_rule[rule] for name, rule in RULES.items()}
        oracle = owner_oracle(sup, instance)
        resolved["owner oracle, per point (reads ground truth)"] = oracle
        resolved["owner oracle + vote (reads ground truth)"] = superpoint_majority_vote(
            oracle, sup["superpoint"]
        )
        if model is not None:
            view = teacher_view(model, batch, cfg.center_queries, criterion)
            resolved["model's box queries (configured prior + vote)"] = pseudo_assignment(
                sup, view.box_prob[0], cfg
            )
            decisions += superpoint_decisions(sup, instance, view.box_prob[0], cfg)
            prior_labels = by_rule[(cfg.prior_containment, cfg.prior_objects_first)]
            score = own_box_scores(prior_labels, view.box_prob[0], sup)
            on_box = prior_labels >= 0
            own = on_box & (instance == sup["box_id"][prior_labels.clamp(min=0)])
            own_scores.append(score[own].numpy())
            other_scores.append(score[on_box & ~own].numpy())
            gated = {t: box_query_gate(prior_labels, score, t) for t in GATE_THRESHOLDS}
            for t, assigned in gated.items():
                resolved[f"box prior, model's box query < {t} out of the box"] = assigned
            if args.per_class or args.markdown:
                for cls, row in label_error_counts(gated[PER_CLASS_GATE], instance, sup).items():
                    gate_counts[cls] = gate_counts.get(cls, 0) + row
        for name, assigned in resolved.items():
            all_ious, amb_ious = instance_ious(assigned, instance, sup, ambiguous)
            over_all, over_ambiguous = ious.setdefault(name, ([], []))
            over_all.extend(all_ious)
            over_ambiguous.extend(amb_ious)
        if args.per_class or args.markdown:
            for name, rule in per_class_rules.items():
                for cls, row in label_error_counts(by_rule[rule], instance, sup).items():
                    class_counts[name][cls] = class_counts[name].get(cls, 0) + row

    print(f"{len(dataset)} training scenes, {data_cfg.superpoints} superpoints; mean instance IoU")
    print(f"{'labels':52s} {'all points':>10s} {'ambiguous':>10s}")
    for name, (all_ious, amb_ious) in ious.items():
        print(f"{name:52s} {np.mean(all_ious):10.3f} {np.mean(amb_ious):10.3f}")
    if decisions:
        points = np.array([r[0] for r in decisions], dtype=float)
        share = {
            who: float(points @ np.array([r[1] == r[col] for r in decisions]) / points.sum())
            for who, col in (("the prior's smallest box", 2), ("the model's best box query", 3))
        }
        print(
            f"\n{len(decisions)} superpoints ({int(points.sum())} points) lie wholly inside >= 2 object boxes "
            f"under the prior (containment {cfg.prior_containment}); share of points whose owner each picks: "
            + ", ".join(f"{who} {v:.3f}" for who, v in share.items())
        )
        # Could the model's disagreement flag the prior's mistakes (to leave them out of the loss)?
        for name, pick in (("agrees", True), ("disagrees", False)):
            rows = [r for r in decisions if (r[2] == r[3]) == pick]
            if rows:
                w = np.array([r[0] for r in rows], dtype=float)
                wrong = float(w @ np.array([r[1] != r[2] for r in rows]) / w.sum())
                print(
                    f"where the model {name} with the prior ({int(w.sum())} points): the prior is wrong on {wrong:.3f}"
                )

    if own_scores:
        own, other = np.concatenate(own_scores), np.concatenate(other_scores)
        auc = float(mannwhitneyu(own, other).statistic) / (len(own) * len(other))
        print(
            f"\nthe box prior's labels give object boxes {len(own)} points of their own instance and "
            f"{len(other)} others (unboxed items, unannotated points); the model's box query scores an "
            f"own point above another with probability (AUC) {auc:.3f}; median score own "
            f"{np.median(own):.3f}, others {np.median(other):.3f}"
        )

    if args.per_class or args.markdown:
        text = (
            f"Per class over {len(dataset)} training scenes ({data_cfg.superpoints} superpoints; box prior: "
            f"containment {cfg.prior_containment}, objects first {cfg.prior_objects_first}): IoU over "
            "the class's points, then the missed points and the extra points by owner, as shares of the "
            "class's true points.\n\n" + per_class_table(class_counts, dataset.class_set.instance_names)
        )
        print("\n" + text)
        if args.markdown:
            write_text_atomic(args.markdown, text)


if __name__ == "__main__":
    main()
