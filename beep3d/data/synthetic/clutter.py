"""Small items on furniture surfaces and on the floor (mostly non-benchmark, often unannotated)."""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic import smallitems
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.layout import Placed, Room, place_with


def poisson(rng: np.random.Generator, mean: float) -> int:
    return int(rng.poisson(mean))


def add_clutter(
    room: Room, rng: np.random.Generator, cfg: SyntheticConfig, parent: Placed, scale: float = 1.0
) -> None:
    """Small items on each support surface of `parent` (books on shelves, pillows on beds)."""
    for sup in parent.model.supports:
        if sup.kind == "seat":  # chairs get a jacket at most, placed with the chair
            continue
        if sup.kind == "books":
            x = sup.x0
            while x < sup.x1 - 0.1:
                run = min(rng.uniform(0.15, 0.6), sup.x1 - x)
                if rng.random() < 0.75:
                    raw = "books" if rng.random() > cfg.clutter_unannotated_fraction else None
                    model = smallitems.books(rng, run - 0.01, sup.clearance - 0.02, raw)
                    yc = (sup.y0 + sup.y1) / 2 + rng.uniform(-0.02, 0.02)
                    room.add(place_with(parent, model, (x + run / 2, yc), z=sup.z), on_floor=False)
                x += run
            continue
        if sup.kind == "pillow":
            if rng.random() < 0.4:
                cloth = smallitems.clothes(
                    rng, (sup.x1 - sup.x0) * 0.6, 0.5, rng.random() > cfg.clutter_unannotated_fraction
                )
                room.add(
                    place_with(
                        parent,
                        cloth,
                        ((sup.x0 + sup.x1) / 2, sup.y0 - 0.3),
                        rng.normal(0, 0.3),
                        z=sup.z,
                    ),
                    on_floor=False,
                )
            n = int(rng.integers(1, 4))
            for k in range(n):
                model = smallitems.pillow(rng)
                x = sup.x0 + (k + 0.5) * (sup.x1 - sup.x0) / n
                room.add(
                    place_with(parent, model, (x, (sup.y0 + sup.y1) / 2), rng.normal(0, 0.15), z=sup.z),
                    on_floor=False,
                )
            continue
        area = (sup.x1 - sup.x0) * (sup.y1 - sup.y0)
        taken: list[tuple[float, float, float, float]] = []
        for _ in range(poisson(rng, cfg.clutter_per_surface * scale * min(1.5, area / 0.6))):
            annotated = rng.random() > cfg.clutter_unannotated_fraction
            model = smallitems.clutter_item(rng, sup.clearance - 0.02, annotated)
            lo, hi = model.extent()
            half = max(hi[0] - lo[0], hi[1] - lo[1]) / 2
            if sup.x1 - sup.x0 < 2 * half or sup.y1 - sup.y0 < 2 * half:
                continue
            x = rng.uniform(sup.x0 + half, sup.x1 - half)
            y = rng.uniform(sup.y0 + half, sup.y1 - half)
            rect = (x - half, y - half, x + half, y + half)
            if any(r[0] < rect[2] and rect[0] < r[2] and r[1] < rect[3] and rect[1] < r[3] for r in taken):
                continue
            taken.append(rect)
            room.add(place_with(parent, model, (x, y), rng.uniform(0, 2 * np.pi), z=sup.z), on_floor=False)


def add_floor_clutter(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    """Bags and boxes on the floor, mostly along walls; some never annotated."""
    for _ in range(poisson(rng, cfg.floor_clutter)):
        model = smallitems.bag(rng) if rng.random() < 0.5 else smallitems.small_box(rng, 0.6)
        if rng.random() < cfg.clutter_unannotated_fraction:
            model.raw_category = None
        placed = (
            room.try_against(rng, model, gap_max=0.1, margin=0.0)
            if rng.random() < 0.7
            else room.try_free(rng, model, margin=0.05)
        )
        if placed is not None:
            room.add(placed)
