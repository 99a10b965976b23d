"""Doors, windows, curtains and flat things on walls (pictures, mirrors, whiteboards, towels).

Openings go in before most furniture; a door keeps its swing clear, a window its wall span,
so later furniture stands below a sill or elsewhere.
"""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic import fixtures, furniture
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.layout import Room, fits


def add_doors(room: Room, rng: np.random.Generator, cfg: SyntheticConfig, n: int) -> None:
    """Up to `n` doors, each on a free wall span with its swing zone clear of furniture."""
    for _ in range(n):
        model = fixtures.door(rng, cfg.door_open_probability)
        for _ in range(10):
            placed = room.try_against(rng, model, on_floor=False, margin=0.15)
            if placed is None:
                break
            # The swing and the way in must be clear of furniture already in the room.
            wall = room.walls[placed.wall]
            s0, s1 = wall.span_of(placed)
            a, b = wall.point(s0 + 0.05), wall.point(s1 - 0.05) + 0.95 * wall.normal
            zone = (min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
            if room.floor_free(zone):
                room.add(placed, on_floor=False)
                room.keepout.append(zone)
                break


def add_windows(
    room: Room, rng: np.random.Generator, cfg: SyntheticConfig, n: int, radiator_p: float = 0.3
) -> None:
    """Up to `n` windows; each may get curtains and a radiator below its sill."""
    for _ in range(n):
        w, h = rng.uniform(0.8, 2.0), rng.uniform(1.0, 1.5)
        sill = rng.uniform(0.75, 1.0)
        if sill + h > room.height - 0.15:
            h = room.height - 0.15 - sill
        model = fixtures.window(rng, w, h, sill)
        placed = room.try_against(rng, model, on_floor=False, margin=0.15)
        if placed is None:
            continue
        room.add(placed, on_floor=False, wall_z=(sill - 0.05, sill + h + 0.05))
        s = float(np.mean(room.walls[placed.wall].span_of(placed)))
        radiator = ()
        if rng.random() < radiator_p:
            rad = furniture.radiator(rng)
            pr = room.against(rad, placed.wall, s, gap=0.03)
            if fits(room, pr, 0.02) and rad.extent()[1][2] < sill - 0.05:
                radiator = (room.add(pr),)
        if rng.random() < cfg.curtain_probability:
            # Long curtains hang in front of the radiator, as they do in real rooms.
            add_curtains(room, rng, placed.wall, s, w, sill, sill + h, ignore=radiator)


def add_curtains(
    room: Room,
    rng: np.random.Generator,
    wall: int,
    s: float,
    w: float,
    z0: float,
    z1: float,
    ignore: tuple[int, ...] = (),
) -> None:
    """One panel drawn across the window, or a panel at each side overlapping its edges."""
    top = min(z1 + rng.uniform(0.1, 0.25), room.height - 0.02)
    to_floor = rng.random() < 0.4
    bottom = 0.03 if to_floor else z0 - rng.uniform(0.05, 0.2)
    if rng.random() < 0.3:
        spans = [(-w / 2 - rng.uniform(0.1, 0.25), w / 2 + rng.uniform(0.1, 0.25))]
    else:
        spans = []
        for side in (-1, 1):
            outer = side * (w / 2 + rng.uniform(0.1, 0.3))
            inner = side * (w / 2 - rng.uniform(0.1, 0.45) * w / 2)
            spans.append((min(outer, inner), max(outer, inner)))
    for x0, x1 in spans:
        model = fixtures.curtain(rng, x0, x1, bottom, top)
        placed = room.against(model, wall, s)
        if to_floor and not fits(room, placed, 0.02, ignore=ignore):
            continue
        room.add(placed, on_floor=to_floor, wall_z=(bottom, top))


def add_wall_things(
    room: Room,
    rng: np.random.Generator,
    raw: str,
    n: int,
    size: tuple[float, float, float, float],
    z: tuple[float, float],
    t: float = 0.03,
) -> None:
    """Pictures, posters, mirrors, whiteboards, towels: somewhere on a free wall span."""
    for _ in range(n):
        w, h = rng.uniform(size[0], size[1]), rng.uniform(size[2], size[3])
        zc = min(rng.uniform(*z), room.height - h / 2 - 0.05)
        model = fixtures.wall_panel(rng, raw, w, h, zc, t if raw != "whiteboard" else 0.02)
        placed = room.try_against(rng, model, on_floor=False, margin=0.1)
        if placed is not None:
            room.add(placed, on_floor=False)


def add_pictures(room: Room, rng: np.random.Generator, n: int) -> None:
    """Up to `n` pictures or posters at eye height, above whatever stands below them."""
    for _ in range(n):
        raw = str(rng.choice(["picture", "picture", "pictures", "poster"]))
        add_wall_things(
            room, rng, raw, 1, (0.3, 1.2, 0.3, 0.9), (1.3, 1.8), t=float(rng.uniform(0.015, 0.04))
        )
