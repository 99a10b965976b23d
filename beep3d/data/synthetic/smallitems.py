"""Small items that stand on furniture or the floor: mostly not benchmark classes.

They matter for box supervision because they are non-object points that often sit inside an
object's box (books in a bookshelf, pillows on a bed, a monitor under a desk's hutch).
"""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic.furniture import box
from beep3d.data.synthetic.model import ObjectModel, palette
from beep3d.data.synthetic.primitives import Cylinder


def small_box(rng: np.random.Generator, max_h: float, raw: str | None = "box") -> ObjectModel:
    w, d = rng.uniform(0.08, 0.45, 2)
    h = min(rng.uniform(0.05, 0.4), max_h)
    return ObjectModel(raw, [box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, 0)], palette(rng, "bright"))


def books(rng: np.random.Generator, width: float, max_h: float, raw: str | None = "books") -> ObjectModel:
    """A row of standing books along x, filling up to `width`."""
    parts, x = [], -width / 2
    depth = rng.uniform(0.15, 0.24)
    while True:
        t = rng.uniform(0.02, 0.05)
        if x + t > width / 2:
            break
        h = min(rng.uniform(0.16, 0.3), max_h)
        parts.append(box(x, x + t, -depth / 2, depth / 2, 0.0, h, int(rng.integers(0, 3))))
        x += t + rng.uniform(0.0, 0.01)
    if not parts:
        parts.append(box(-width / 2, width / 2, -depth / 2, depth / 2, 0.0, min(0.2, max_h), 0))
    return ObjectModel(raw, parts, palette(rng, "bright", "bright", "bright"))


def monitor(rng: np.random.Generator) -> ObjectModel:
    w, h = rng.uniform(0.45, 0.65), rng.uniform(0.28, 0.4)
    lift = rng.uniform(0.08, 0.15)
    parts = [
        box(-0.1, 0.1, -0.08, 0.08, 0.0, 0.015, 0),
        box(-0.025, 0.025, 0.0, 0.03, 0.015, lift + 0.05, 0),
        box(-w / 2, w / 2, -0.03, 0.0, lift, lift + h, 0),
    ]
    return ObjectModel("monitor", parts, palette(rng, "black"))


def keyboard(rng: np.random.Generator) -> ObjectModel:
    return ObjectModel("keyboard", [box(-0.22, 0.22, -0.07, 0.07, 0.0, 0.025, 0)], palette(rng, "black"))


def lamp(rng: np.random.Generator, max_h: float) -> ObjectModel:
    h = min(rng.uniform(0.35, 0.6), max_h)
    r = rng.uniform(0.1, 0.18)
    parts = [
        Cylinder((0.0, 0.0), (0.07, 0.07), 0.0, 0.03, 0),
        Cylinder((0.0, 0.0), (0.012, 0.012), 0.03, h - 0.15, 0, caps=()),
        Cylinder((0.0, 0.0), (r, r), h - 0.2, h, 1, caps=(), solid=False),
    ]
    return ObjectModel("lamp", parts, palette(rng, "metal", "bedding"))


def television(rng: np.random.Generator) -> ObjectModel:
    w = rng.uniform(0.8, 1.3)
    h = w * 0.58
    parts = [
        box(-0.2, 0.2, -0.1, 0.1, 0.0, 0.02, 0),
        box(-0.03, 0.03, 0.0, 0.04, 0.02, 0.1, 0),
        box(-w / 2, w / 2, -0.03, 0.03, 0.08, 0.08 + h, 0),
    ]
    return ObjectModel("tv", parts, palette(rng, "black"))


def pillow(rng: np.random.Generator) -> ObjectModel:
    w, d, h = rng.uniform(0.45, 0.7), rng.uniform(0.3, 0.45), rng.uniform(0.1, 0.18)
    return ObjectModel("pillow", [box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, 0)], palette(rng, "bedding"))


def bag(rng: np.random.Generator) -> ObjectModel:
    w, d, h = rng.uniform(0.25, 0.45), rng.uniform(0.12, 0.25), rng.uniform(0.25, 0.45)
    raw = str(rng.choice(["bag", "clothes", "box"]))
    return ObjectModel(raw, [box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, 0)], palette(rng, "fabric"))


def clutter_item(rng: np.random.Generator, max_h: float, annotated: bool) -> ObjectModel:
    """A random small thing for a table, desk or counter top."""
    roll = rng.random()
    if roll < 0.2 and max_h > 0.35:
        model = lamp(rng, max_h)
    elif roll < 0.45:
        model = books(rng, rng.uniform(0.1, 0.3), max_h)
    elif roll < 0.6:
        r = rng.uniform(0.03, 0.08)
        h = min(rng.uniform(0.08, 0.3), max_h)
        model = ObjectModel("object", [Cylinder((0.0, 0.0), (r, r), 0.0, h, 0)], palette(rng, "bright"))
    else:
        model = small_box(rng, max_h, str(rng.choice(["box", "object", "object"])))
    if not annotated:
        model.raw_category = None
    return model


def clothes(rng: np.random.Generator, w_max: float, d_max: float, annotated: bool) -> ObjectModel:
    """A draped garment or blanket: a few thin overlapping slabs."""
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        w, d = rng.uniform(0.2, max(0.25, w_max)), rng.uniform(0.15, max(0.2, d_max))
        x, y = rng.uniform(-0.1, 0.1, 2)
        parts.append(box(x - w / 2, x + w / 2, y - d / 2, y + d / 2, 0.0, rng.uniform(0.02, 0.08), 0))
    return ObjectModel("clothes" if annotated else None, parts, palette(rng, "fabric"))


def computer_tower(rng: np.random.Generator) -> ObjectModel:
    w, d, h = rng.uniform(0.17, 0.22), rng.uniform(0.4, 0.5), rng.uniform(0.38, 0.48)
    return ObjectModel("object", [box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, 0)], palette(rng, "black"))
