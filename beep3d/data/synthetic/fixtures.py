"""Things built into or hung on walls, and kitchen/bathroom fittings.

Wall-mounted models use a frame whose y = 0 is the wall surface (`mount_y=0`), the room on the
-y side, x along the wall centred on the item, z = height above the floor. Doors and windows
carry a `Carve` that cuts their opening out of the wall; sinks and tubs carve their bowl out of
whatever they are set into.
"""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic.furniture import ALL_BUT_FRONT, box, cabinet
from beep3d.data.synthetic.model import ObjectModel, Support, palette
from beep3d.data.synthetic.primitives import Box, Carve, Cylinder, Sheet

ALL_FACES = frozenset({"+x", "-x", "+y", "-y", "+z", "-z"})


def only(face: str) -> frozenset[str]:
    """`omit` set that keeps a single face of a box (a reveal or jamb seen from one side)."""
    return ALL_FACES - {face}


def door(rng: np.random.Generator, open_probability: float) -> ObjectModel:
    w, h, t = rng.uniform(0.75, 0.95), rng.uniform(2.0, 2.1), 0.04
    jamb = rng.uniform(0.1, 0.16)  # depth of the opening's sides
    parts: list = [
        box(-w / 2 - 0.07, -w / 2, -0.015, 0.0, 0.0, h + 0.07, 1),
        box(w / 2, w / 2 + 0.07, -0.015, 0.0, 0.0, h + 0.07, 1),
        box(-w / 2, w / 2, -0.015, 0.0, h, h + 0.07, 1),
    ]
    if rng.random() < 0.5:  # the opening's sides, when the scan caught them
        parts += [
            box(-w / 2 - 0.02, -w / 2, 0.0, jamb, 0.0, h, 1, omit=only("+x")),
            box(w / 2, w / 2 + 0.02, 0.0, jamb, 0.0, h, 1, omit=only("-x")),
            box(-w / 2, w / 2, 0.0, jamb, h, h + 0.02, 1, omit=only("-z")),
        ]
    hinge = float(rng.choice([-1.0, 1.0]))
    if rng.random() < open_probability:
        angle = rng.uniform(0.3, 1.7)  # radians into the room
        direction = np.array([-hinge * np.cos(angle), -np.sin(angle)])
        centre = np.array([hinge * w / 2, -0.02]) + direction * (w / 2)
        yaw = float(np.arctan2(direction[1], direction[0]))
        parts.append(Box((centre[0], centre[1], 0.01 + h / 2), (w - 0.01, t, h - 0.02), 0, yaw=yaw))
    else:
        recess = rng.uniform(0.02, 0.06)
        # Only the room side of a closed leaf is ever seen.
        parts.append(
            box(-w / 2 + 0.005, w / 2 - 0.005, recess, recess + t, 0.01, h - 0.005, 0, omit=frozenset({"+y"}))
        )
        hx = -hinge * (w / 2 - 0.08)
        parts.append(box(hx - 0.06, hx + 0.06, recess - 0.05, recess, 0.98, 1.02, 2))
    carve = Carve((0.0, 0.2175, h / 2), (w, 0.445, h))  # y from just before the wall plane inwards
    raw = str(rng.choice(["door", "door", "doors", "closet door"]))
    return ObjectModel(raw, parts, palette(rng, "laminate", "paint", "metal"), carves=[carve], mount_y=0.0)


def window(rng: np.random.Generator, w: float, h: float, sill_z: float) -> ObjectModel:
    """Opening with reveals, frame, sparse glass and a sill protruding into the room."""
    depth = rng.uniform(0.08, 0.2)  # glass sits this far into the wall
    z1 = sill_z + h
    frame = 0.05
    parts: list = [
        box(-w / 2 - 0.02, -w / 2, 0.0, depth, sill_z, z1, 1, omit=only("+x")),
        box(w / 2, w / 2 + 0.02, 0.0, depth, sill_z, z1, 1, omit=only("-x")),
        box(-w / 2, w / 2, 0.0, depth, z1, z1 + 0.02, 1, omit=only("-z")),
        box(-w / 2, w / 2, 0.0, depth, sill_z - 0.02, sill_z, 1, omit=only("+z")),
        box(-w / 2 - 0.05, w / 2 + 0.05, -0.04, 0.0, sill_z - 0.03, sill_z, 1),
        box(-w / 2, w / 2, depth - 0.01, depth, sill_z, z1, 2, omit=only("-y"), solid=False, density=0.15),
        box(-w / 2, -w / 2 + frame, depth - 0.05, depth - 0.01, sill_z, z1, 0),
        box(w / 2 - frame, w / 2, depth - 0.05, depth - 0.01, sill_z, z1, 0),
        box(-w / 2, w / 2, depth - 0.05, depth - 0.01, z1 - frame, z1, 0),
        box(-w / 2, w / 2, depth - 0.05, depth - 0.01, sill_z, sill_z + frame, 0),
    ]
    if w > 1.0 and rng.random() < 0.6:  # mullion
        parts.append(box(-frame / 2, frame / 2, depth - 0.05, depth - 0.01, sill_z, z1, 0))
    carve = Carve((0.0, 0.2175, sill_z + h / 2), (w, 0.445, h))  # y from just before the wall plane inwards
    raw = str(rng.choice(["window", "window", "windows"]))
    return ObjectModel(raw, parts, palette(rng, "laminate", "paint", "glass"), carves=[carve], mount_y=0.0)


def curtain(rng: np.random.Generator, x0: float, x1: float, z0: float, z1: float) -> ObjectModel:
    """One hanging panel, x0..x1 along the wall, hung clear of the window's sill and frame."""
    amplitude = rng.uniform(0.02, 0.05)
    offset = rng.uniform(0.01, 0.07) + amplitude  # rod distance from the wall: the folds nearly touch it
    sheet = Sheet(x0, x1, z0, z1, -offset, amplitude, rng.uniform(0.12, 0.22), rng.uniform(0, 2 * np.pi))
    raw = str(rng.choice(["curtain", "curtain", "curtains"]))
    return ObjectModel(raw, [sheet], palette(rng, "curtain"), mount_y=0.0)


def wall_panel(
    rng: np.random.Generator, raw: str, w: float, h: float, z_center: float, t: float
) -> ObjectModel:
    """A flat thing on a wall: picture, poster, mirror, whiteboard, towel."""
    part = box(-w / 2, w / 2, -t, 0.0, z_center - h / 2, z_center + h / 2, 0)
    mat = {"mirror": "glass", "whiteboard": "laminate", "towel": "fabric"}.get(raw, "bright")
    texture = "picture" if raw in ("picture", "pictures", "poster") else "plain"
    return ObjectModel(raw, [part], palette(rng, mat), mount_y=0.0, texture=texture)


def counter(
    rng: np.random.Generator, raw: str, length: float, depth: float, top_z: float, with_base: bool
) -> ObjectModel:
    """A worktop slab, optionally with its own base (then no cabinets go under it)."""
    t = rng.uniform(0.03, 0.05)
    parts: list = [box(-length / 2, length / 2, -depth / 2, depth / 2, top_z - t, top_z, 0)]
    if rng.random() < 0.6:  # a front apron: the edge profile drops over the cabinet fronts below
        parts.append(
            box(
                -length / 2,
                length / 2,
                -depth / 2 - 0.01,
                -depth / 2 + 0.01,
                top_z - t - rng.uniform(0.04, 0.1),
                top_z - t,
                0,
            )
        )
    if with_base:
        parts.append(box(-length / 2, length / 2, -depth / 2 + 0.03, depth / 2, 0.1, top_z - t, 1))
        parts.append(box(-length / 2, length / 2, -depth / 2 + 0.08, depth / 2, 0.0, 0.1, 1))
    sup = [Support(-length / 2 + 0.03, -depth / 2 + 0.03, length / 2 - 0.03, depth / 2 - 0.03, top_z)]
    return ObjectModel(
        raw,
        parts,
        palette(rng, str(rng.choice(["laminate", "dark_wood", "metal"])), "laminate"),
        supports=sup,
    )


def inset_sink(rng: np.random.Generator, top_z: float, max_w: float) -> ObjectModel:
    """A bowl dropped into a worktop at height top_z; centred at the origin of its frame."""
    bw, bd, depth = min(rng.uniform(0.4, 0.6), max_w), rng.uniform(0.35, 0.42), rng.uniform(0.15, 0.2)
    rim = 0.025
    parts: list = [
        box(
            -bw / 2,
            bw / 2,
            -bd / 2,
            bd / 2,
            top_z - depth,
            top_z,
            0,
            inward=True,
            omit=frozenset({"+z"}),
            solid=False,
        ),
        box(-bw / 2 - rim, bw / 2 + rim, -bd / 2 - rim, -bd / 2, top_z, top_z + 0.008, 0),
        box(-bw / 2 - rim, bw / 2 + rim, bd / 2, bd / 2 + rim, top_z, top_z + 0.008, 0),
        box(-bw / 2 - rim, -bw / 2, -bd / 2, bd / 2, top_z, top_z + 0.008, 0),
        box(bw / 2, bw / 2 + rim, -bd / 2, bd / 2, top_z, top_z + 0.008, 0),
    ]
    parts += _faucet(rng, bd / 2 + rim, top_z)
    carve = Carve((0.0, 0.0, top_z - depth / 2 + 0.01), (bw - 0.002, bd - 0.002, depth + 0.04))
    return ObjectModel(
        "sink", parts, palette(rng, str(rng.choice(["metal", "ceramic"])), "metal"), carves=[carve]
    )


def _faucet(rng: np.random.Generator, y_back: float, z: float) -> list:
    h = rng.uniform(0.18, 0.3)
    return [
        Cylinder((0.0, y_back + 0.03), (0.02, 0.02), z, z + h, 1),
        box(-0.015, 0.015, y_back - 0.12, y_back + 0.03, z + h - 0.03, z + h, 1),
    ]


def pedestal_sink(rng: np.random.Generator) -> ObjectModel:
    bw, bd, top = rng.uniform(0.45, 0.6), rng.uniform(0.38, 0.48), rng.uniform(0.8, 0.88)
    inner_w, inner_d, rim = bw - 0.1, bd - 0.12, 0.05
    back = bd / 2
    parts: list = [
        Cylinder((0.0, back - bd / 2 + 0.05), (0.09, 0.09), 0.0, top - 0.18, 0, caps=()),
        box(-bw / 2, bw / 2, -bd / 2, bd / 2, top - 0.2, top, 0, omit=frozenset({"+z"}), solid=False),
        box(
            -inner_w / 2,
            inner_w / 2,
            -inner_d / 2,
            inner_d / 2,
            top - 0.17,
            top,
            0,
            inward=True,
            omit=frozenset({"+z"}),
            solid=False,
        ),
        box(-bw / 2, bw / 2, -bd / 2, -inner_d / 2, top - 0.01, top, 0),
        box(-bw / 2, bw / 2, inner_d / 2, bd / 2, top - 0.01, top, 0),
        box(-bw / 2, -inner_w / 2, -inner_d / 2, inner_d / 2, top - 0.01, top, 0),
        box(inner_w / 2, bw / 2, -inner_d / 2, inner_d / 2, top - 0.01, top, 0),
    ]
    parts += _faucet(rng, inner_d / 2 + rim / 2, top)
    return ObjectModel("sink", parts, palette(rng, "ceramic", "metal"))


def toilet(rng: np.random.Generator) -> ObjectModel:
    tw, td = rng.uniform(0.38, 0.48), rng.uniform(0.16, 0.2)
    rx, ry = rng.uniform(0.17, 0.19), rng.uniform(0.22, 0.26)
    depth = td + 0.02 + 2 * ry
    back = depth / 2
    bowl_y = back - td - 0.02 - ry
    parts: list = [
        box(-tw / 2, tw / 2, back - td, back, 0.4, rng.uniform(0.75, 0.82), 0),
        Cylinder((0.0, bowl_y), (rx, ry), 0.0, 0.4, 0),
        box(-0.12, 0.12, bowl_y - 0.1, back - td, 0.0, 0.3, 0),
    ]
    if rng.random() < 0.4:  # lid up, leaning on the tank
        parts.append(
            box(-rx + 0.02, rx - 0.02, back - td - 0.04, back - td - 0.02, 0.42, 0.42 + 2 * ry - 0.04, 1)
        )
    return ObjectModel(
        "toilet", parts, palette(rng, "ceramic", str(rng.choice(["ceramic", "black", "wood"])))
    )


def bathtub(rng: np.random.Generator, length: float, width: float) -> ObjectModel:
    """Tub with a rim and a basin; hides the floor below and walls within a few cm of its sides."""
    h, rim = rng.uniform(0.5, 0.6), rng.uniform(0.06, 0.1)
    L, W = length / 2, width / 2
    parts: list = [
        box(-L, L, -W, W, 0.0, h - 0.01, 0, omit=frozenset({"+z", "-z"}), solid=False),
        box(
            -L + rim, L - rim, -W + rim, W - rim, 0.06, h, 0, inward=True, omit=frozenset({"+z"}), solid=False
        ),
        box(-L, L, -W, -W + rim, h - 0.01, h, 0),
        box(-L, L, W - rim, W, h - 0.01, h, 0),
        box(-L, -L + rim, -W + rim, W - rim, h - 0.01, h, 0),
        box(L - rim, L, -W + rim, W - rim, h - 0.01, h, 0),
    ]
    shell = 0.03
    carves = [
        Carve((0.0, 0.0, -0.01), (length, width, 0.08)),
        Carve((0.0, W + shell / 2, h / 2 + 0.02), (length, shell, h - 0.04)),
        Carve((0.0, -W - shell / 2, h / 2 + 0.02), (length, shell, h - 0.04)),
        Carve((L + shell / 2, 0.0, h / 2 + 0.02), (shell, width, h - 0.04)),
        Carve((-L - shell / 2, 0.0, h / 2 + 0.02), (shell, width, h - 0.04)),
    ]
    return ObjectModel("bathtub", parts, palette(rng, "ceramic"), carves=carves)


def shower_curtain(
    rng: np.random.Generator, tub_length: float, tub_width: float, tub_height: float
) -> ObjectModel:
    """Hangs from a rod over the tub's open (-y) side into the tub, drawn over part of its length."""
    cover = rng.uniform(0.3, 1.0) * (tub_length - 0.1)
    start = -tub_length / 2 + 0.05 if rng.random() < 0.5 else tub_length / 2 - 0.05 - cover
    amplitude = rng.uniform(0.02, 0.04)
    y = -tub_width / 2 + 0.08
    sheet = Sheet(
        start, start + cover, tub_height - 0.15, rng.uniform(1.85, 2.0), y, amplitude, rng.uniform(0.1, 0.18)
    )
    return ObjectModel("shower curtain", [sheet], palette(rng, "curtain"))


def refrigerator(rng: np.random.Generator) -> ObjectModel:
    if rng.random() < 0.2:
        raw, w, d, h = "mini fridge", rng.uniform(0.45, 0.55), rng.uniform(0.48, 0.55), rng.uniform(0.5, 0.85)
    else:
        raw, w, d, h = "refrigerator", rng.uniform(0.6, 0.9), rng.uniform(0.65, 0.75), rng.uniform(1.6, 1.9)
    parts: list = [box(-w / 2, w / 2, -d / 2 + 0.03, d / 2, 0.0, h, 0)]
    split = h * rng.uniform(0.3, 0.4) if raw == "refrigerator" else 0.0
    for z0, z1 in ((0.02, split), (split + 0.01, h - 0.01)) if split else ((0.02, h - 0.01),):
        parts.append(box(-w / 2, w / 2, -d / 2, -d / 2 + 0.03, z0, z1, 0, omit=ALL_BUT_FRONT))
        parts.append(
            box(
                w / 2 - 0.08,
                w / 2 - 0.05,
                -d / 2 - 0.05,
                -d / 2,
                z1 - 0.3 if z1 - z0 > 0.5 else z0 + 0.05,
                z1 - 0.05,
                1,
            )
        )
    return ObjectModel(raw, parts, palette(rng, str(rng.choice(["ceramic", "metal", "black"])), "metal"))


def upper_cabinet(rng: np.random.Generator, w: float, z0: float) -> ObjectModel:
    return cabinet(rng, "kitchen cabinets", (w, rng.uniform(0.3, 0.36), rng.uniform(0.6, 0.8)), z0=z0)
