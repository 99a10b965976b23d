"""How large a difference between two modes can the benchmark resolve, and what would resolve more?

    python benchmarks/val_noise.py --data DIR --model beep3d/s0=runs/a/model.pt \\
        --model beep3d/s1=... --model box_heuristic/s0=... --model box_heuristic/s1=... \\
        [--sizes 24,48,120] [--draws 400] [--pairs beep3d-box_heuristic,...] [--out val_noise.json] \\
        [--markdown val_noise.md] [--without bed,bookshelf,...]

A mode's val AP varies from seed to seed for two reasons: training (another seed is another
model) and evaluation (a finite val split scores the same model with sampling error). More val
scenes shrink only the second; more seeds shrink both. This script measures each part, so the
benchmark's size is chosen from figures:

- every model (`--model GROUP/MEMBER=PATH`; members of two groups are paired by name, e.g. seeds)
  predicts every val scene of DIR once; each scene is scored on its own (`Evaluator.combined`);
- for each val size n (the first n scenes in scene order; the default benchmark's 24 val scenes
  are the first 24 of a larger synthetic val split, since scene i is generated from (seed, i)):
  each model's mAP/AP50, each group's mean and seed std, and each pair of groups' per-member
  differences, mean, std and the 95 % t half-width: the smallest difference these seeds resolve;
  the pooled seed std of the two groups and whether the mean difference exceeds twice it; the
  ratio of the two groups' mean mAP; per-class AP of every model on the whole split;
- the evaluation part at size n: the std, over `--draws` bootstrap draws of n scenes (with
  replacement, from all val scenes of DIR), of each paired difference, averaged over members;
- the training part: the paired-difference variance at the largest size minus its evaluation
  part there; with both, the projected std of one paired difference at size n, and the number of
  seeds whose 95 % half-width reaches `--target` (0.02 AP50 by default).

`--without CLASS,...` adds the mAP over the other classes (from the per-class AP), paired the same
way: whether a difference between modes lives in a few classes (those whose boxes hold items no box
names, `benchmarks/pseudo_label_audit.py --per-class`) or in all of them.

`--markdown` writes the tables of the largest size (and the evaluation std of every size) as
markdown, for the README. `--pairs` limits the pairs (the bootstrap costs a few seconds per pair,
member and size).

The default data has 120 val scenes (`data.synthetic.n_val`), so `--data data/processed` works.
To score beyond them, generate a larger val split with the same `data.synthetic` params but a
larger `n_val` (train scenes stay the same), preprocess it, and point --data at it; train the
models on the default data.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beep3d.data.dataset import DataConfig, SceneDataset, make_loader
from beep3d.engine import InferenceConfig, iterate_predictions
from beep3d.eval import Evaluator, SceneGT
from beep3d.io import write_text_atomic
from pipeline.compare import MeanInterval, pooled_std, t_quantile
from pipeline.config import build
from pipeline.training import load_model

METRICS = ("mAP", "AP50")


def scene_evaluators(model_path: Path, data: Path) -> tuple[list[str], list[Evaluator]]:
    """Predict every val scene with the model (its own data_loader / inference params) and score
    each scene on its own; scene ids in order."""
    device = torch.device("cpu")
    model, payload = load_model(model_path, device)
    data_cfg = build(DataConfig, payload["data_loader"], f"{model_path}: data_loader")
    infer_cfg = build(InferenceConfig, payload["inference"], f"{model_path}: inference")
    val = SceneDataset(data, "val", data_cfg, with_ground_truth=True, train=False)
    ids, parts = [], []
    for batch, preds in iterate_predictions(model, make_loader(val, 1, False, 0, 0), infer_cfg, device):
        for gt, pred in zip(batch["ground_truth"], preds, strict=True):
            ev = Evaluator(val.class_set)
            ev.add(SceneGT(pred.scene_id, gt["label"].numpy(), gt["instance"].numpy()), pred)
            ids.append(pred.scene_id)
            parts.append(ev)
    return ids, parts


def score(parts: list[Evaluator], picks: np.ndarray | range) -> dict[str, float]:
    result = Evaluator.combined([parts[i] for i in picks]).result()
    return {m: float(result[m]) for m in METRICS}


def half_width(sd: float, k: int) -> float:
    """95 % two-sided t half-width of a mean of k paired differences with std sd."""
    return t_quantile(k - 1) * sd / math.sqrt(k) if k > 1 else math.inf


def seeds_needed(sd: float, target: float, k_max: int = 200) -> int | None:
    return next((k for k in range(2, k_max + 1) if half_width(sd, k) <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="processed data whose val split is scored")
    ap.add_argument("--model", action="append", required=True, help="GROUP/MEMBER=PATH (repeat)")
    ap.add_argument("--sizes", default="24,48,120", help="val sizes: the first n scenes")
    ap.add_argument("--draws", type=int, default=400, help="bootstrap draws per size")
    ap.add_argument("--target", type=float, default=0.02, help="AP50 difference to resolve")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", default="", help="A-B,... pairs of groups to compare (default: all)")
    ap.add_argument(
        "--without", default="", help="CLASS,...: also compare mAP over the other classes (per-class AP)"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None, help="write the tables as markdown")
    args = ap.parse_args()
    torch.set_num_threads(1)

    models: dict[str, dict[str, list[Evaluator]]] = {}
    scene_ids: list[str] | None = None
    for spec in args.model:
        label, _, path = spec.partition("=")
        group, _, member = label.partition("/")
        if not path or not member:
            ap.error(f"--model {spec!r}: expected GROUP/MEMBER=PATH")
        ids, parts = scene_evaluators(Path(path), args.data)
        if scene_ids is not None and ids != scene_ids:
            ap.error(f"{path}: scored other val scenes than the first model")
        scene_ids = ids
        models.setdefault(group, {})[member] = parts
        print(f"scored {label}: {len(ids)} val scenes", flush=True)
    assert scene_ids is not None
    n_all = len(scene_ids)
    sizes = [n for n in (int(s) for s in args.sizes.split(",")) if n <= n_all]
    rng = np.random.default_rng(args.seed)
    draws = {n: [rng.integers(0, n_all, n) for _ in range(args.draws)] for n in sizes}

    out: dict = {"val_scenes": n_all, "sizes": sizes, "draws": args.draws, "target_AP50": args.target}
    out["models"] = {
        f"{g}/{m}": {str(n): score(parts, range(n)) for n in sizes}
        for g, members in models.items()
        for m, parts in members.items()
    }
    # Per-class AP (mean over the 9 IoU thresholds) on the whole split: where the modes differ.
    out["per_class_AP"] = {
        f"{g}/{m}": {
            name: c["AP"]
            for name, c in Evaluator.combined(parts).result()["per_class"].items()
            if not math.isnan(c["AP"])
        }
        for g, members in models.items()
        for m, parts in members.items()
    }
    out["groups"] = {
        g: {
            str(n): {
                metric: {
                    "mean": statistics.mean(
                        v := [out["models"][f"{g}/{m}"][str(n)][metric] for m in members]
                    ),
                    "std": statistics.stdev(v) if len(v) > 1 else None,
                }
                for metric in METRICS
            }
            for n in sizes
        }
        for g, members in models.items()
    }
    boot_scores: dict[tuple[str, str, int], list[dict[str, float]]] = {}

    def drawn(group: str, member: str, n: int) -> list[dict[str, float]]:
        """The model's scores on every bootstrap draw of n scenes, computed once (a model takes
        part in several pairs, and each draw scores both metrics)."""
        key = (group, member, n)
        if key not in boot_scores:
            boot_scores[key] = [score(models[group][member], d) for d in draws[n]]
        return boot_scores[key]

    out["pairs"] = {}
    pairs = [tuple(p.split("-", 1)) for p in args.pairs.split(",") if p] or list(combinations(models, 2))
    for a, b in pairs:
        if a not in models or b not in models:
            ap.error(f"--pairs {a}-{b}: groups are {', '.join(models)}")
        common = sorted(set(models[a]) & set(models[b]))
        if not common:
            continue
        pair: dict = {"members": common}
        for n in sizes:
            row: dict = {}
            for metric in METRICS:
                boot = [
                    statistics.stdev(
                        [x[metric] - y[metric] for x, y in zip(drawn(a, m, n), drawn(b, m, n), strict=True)]
                    )
                    for m in common
                ]
                values = {
                    g: {m: out["models"][f"{g}/{m}"][str(n)][metric] for m in models[g]} for g in (a, b)
                }
                row[metric] = paired_row(values[a], values[b]) | {"evaluation_std": statistics.mean(boot)}
            pair[str(n)] = row
        # Training part from the largest size, where evaluation noise is smallest.
        big = pair[str(sizes[-1])]["AP50"]
        if big["std"] is not None:
            train_var = max(big["std"] ** 2 - big["evaluation_std"] ** 2, 0.0)
            pair["training_std_AP50"] = math.sqrt(train_var)
            pair["projected"] = {
                str(n): {
                    "std_AP50": (sd_n := math.sqrt(train_var + pair[str(n)]["AP50"]["evaluation_std"] ** 2)),
                    "seeds_for_target": seeds_needed(sd_n, args.target),
                }
                for n in sizes
            }
        out["pairs"][f"{a} - {b}"] = pair
    if args.without:
        out["without"] = without_classes(
            out, [c.strip() for c in args.without.split(",")], list(out["pairs"])
        )
    print(json.dumps(out, indent=1))
    if args.out:
        write_text_atomic(args.out, json.dumps(out, indent=1))
    if args.markdown:
        write_text_atomic(args.markdown, markdown(out))


def paired_row(a: dict[str, float], b: dict[str, float]) -> dict:
    """Groups A and B (member -> value): A − B on the members both have (per member, mean, std,
    95 % half-width), the pooled seed std over all members of each, and mean(A) / mean(B)."""
    diff = MeanInterval(tuple(a[m] - b[m] for m in sorted(set(a) & set(b))), 0.0)
    pooled = pooled_std(list(a.values()), list(b.values()))
    return {
        "diffs": list(diff.values),
        "mean": diff.mean,
        "std": None if math.isnan(diff.std) else diff.std,
        "half_width_95": None if math.isnan(diff.half_width) else diff.half_width,
        "pooled_std": None if math.isnan(pooled) else pooled,
        "ratio_of_means": statistics.mean(a.values()) / statistics.mean(b.values()),
    }


def without_classes(out: dict, classes: list[str], pairs: list[str]) -> dict:
    """mAP over every class but `classes` (the mean of each model's per-class AP on the whole
    split), per group and for each pair "A - B": where the modes differ once those classes are set
    aside."""
    unknown = set(classes) - {c for scores in out["per_class_AP"].values() for c in scores}
    if unknown:
        raise SystemExit(f"--without: no per-class AP for {', '.join(sorted(unknown))}")
    models = {
        key: statistics.mean(ap for c, ap in scores.items() if c not in classes)
        for key, scores in out["per_class_AP"].items()
    }
    groups = {g: {m: models[f"{g}/{m}"] for m in members_of(out, g)} for g in out["groups"]}
    return {
        "classes": classes,
        "models": models,
        "pairs": {name: paired_row(*(groups[g] for g in name.split(" - "))) for name in pairs},
    }


def _f(x: float | None, signed: bool = False) -> str:
    return "–" if x is None else (f"{x:+.3f}" if signed else f"{x:.3f}")


def members_of(out: dict, group: str) -> list[str]:
    """The member names of `group`, in the order `out["models"]` ("GROUP/MEMBER" keys) holds them."""
    return [key.split("/", 1)[1] for key in out["models"] if key.split("/", 1)[0] == group]


PAIR_HEADER = (
    "| A − B | metric | per member | mean ± std | half-width | resolved | pooled std | > 2 × pooled | A / B |",
    "|---|---|---|---|---|---|---|---|---|",
)


def _pair_line(name: str, metric: str, r: dict) -> str:
    hw, pooled = r["half_width_95"], r["pooled_std"]
    return (
        f"| {name} | {metric} | {', '.join(f'{d:+.3f}' for d in r['diffs'])} | "
        f"{_f(r['mean'], True)} ± {_f(r['std'])} | {_f(hw)} | "
        f"{'–' if hw is None else ('yes' if abs(r['mean']) > hw else 'no')} | {_f(pooled)} | "
        f"{'–' if pooled is None else ('yes' if abs(r['mean']) > 2 * pooled else 'no')} | "
        f"{r['ratio_of_means']:.3f} |"
    )


def markdown(out: dict) -> str:
    """The largest size's groups and pairs, and every size's evaluation std, as markdown tables."""
    n = str(out["sizes"][-1])
    lines = [
        f"Val split: the first {n} of {out['val_scenes']} val scenes; mean ± sample std over the members.",
        "",
    ]
    lines += ["| group | members | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for g, by_size in out["groups"].items():
        members = members_of(out, g)
        cells = []
        for metric in METRICS:
            per = ", ".join(f"{out['models'][f'{g}/{m}'][n][metric]:.3f}" for m in members)
            std = by_size[n][metric]["std"]
            cells.append(f"{by_size[n][metric]['mean']:.3f} ± {_f(std)} ({per})")
        lines.append(f"| {g} | {', '.join(members)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired on the member: A − B per member, mean ± std, the 95 % t half-width of the mean (resolved "
        "when it is below |mean|), the pooled seed std of A and B (and whether |mean| > 2 × it), and "
        "mean(A) / mean(B).",
        "",
        *PAIR_HEADER,
    ]
    for name, pair in out["pairs"].items():
        for metric in METRICS:
            lines.append(_pair_line(name, metric, pair[n][metric]))
    subset = out.get("without")
    if subset:
        lines += [
            "",
            f"mAP over the classes other than {', '.join(subset['classes'])} (mean of the per-class AP "
            "below), paired as above:",
            "",
            *PAIR_HEADER,
        ]
        lines += [_pair_line(name, "mAP", r) for name, r in subset["pairs"].items()]
    per_class = out.get("per_class_AP")
    if per_class:
        groups = list(out["groups"])
        classes = sorted({c for scores in per_class.values() for c in scores})
        lines += [
            "",
            f"Per-class AP on all {out['val_scenes']} val scenes, mean over each group's members:",
            "",
            "| class | " + " | ".join(groups) + " |",
            "|---|" + "---|" * len(groups),
        ]
        for c in classes:
            cells = []
            for g in groups:
                v = [per_class[f"{g}/{m}"][c] for m in members_of(out, g) if c in per_class[f"{g}/{m}"]]
                cells.append(f"{statistics.mean(v):.3f}" if v else "–")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Evaluation part of one paired difference's std (bootstrap over val scenes), by val size:",
        "",
        "| A − B | metric | " + " | ".join(f"{s} scenes" for s in out["sizes"]) + " |",
        "|---|---|" + "---|" * len(out["sizes"]),
    ]
    for name, pair in out["pairs"].items():
        for metric in METRICS:
            cells = " | ".join(f"{pair[str(s)][metric]['evaluation_std']:.3f}" for s in out["sizes"])
            lines.append(f"| {name} | {metric} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
