"""Furniture groups that overlap the way real rooms do: chairs at tables and desks, things under desks.

These are where most object points inside two object boxes come from, as in real ScanNet scenes.
"""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic import furniture, smallitems
from beep3d.data.synthetic.clutter import add_clutter
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.layout import Placed, Room, fits, place_with
from beep3d.data.synthetic.model import ObjectModel


def add_against(
    room: Room,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    model: ObjectModel,
    clutter: bool = True,
    walls: tuple[int, ...] | None = None,
) -> Placed | None:
    """Stand `model` against a wall (one of `walls`, default any) and put small items on it."""
    placed = room.try_against(rng, model, walls=walls, gap_max=cfg.wall_gap_max)
    if placed is not None:
        room.add(placed)
        if clutter:
            add_clutter(room, rng, cfg, placed)
    return placed


def add_chairs_around(
    room: Room,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    table: Placed,
    table_index: int,
    max_chairs: int,
) -> None:
    """Chairs along the table's free sides, facing it; some pushed in under the top."""
    lo, hi = table.model.extent()
    w, d = hi[0] - lo[0], hi[1] - lo[1]
    # (side offset direction, chair yaw relative to the table, side length along which chairs line up)
    sides = [((0, -1), np.pi, w), ((0, 1), 0.0, w), ((-1, 0), np.pi / 2, d), ((1, 0), -np.pi / 2, d)]
    chairs: list[int] = []
    for (sx, sy), yaw, length in sides:
        n = int(min(max(1, length // 0.55), rng.integers(1, 4)))
        for k in range(n):
            if len(chairs) >= max_chairs:
                return
            model = furniture.chair(rng) if rng.random() < 0.75 else furniture.office_chair(rng)
            clo, chi = model.extent()
            cd = chi[1] - clo[1]
            tucked = rng.random() < cfg.chair_tuck_probability
            out = cd / 2 - rng.uniform(0.1, 0.35) if tucked else cd / 2 + rng.uniform(0.05, 0.35)
            along = (k + 0.5) / n * length - length / 2 + rng.normal(0, 0.04)
            if sx == 0:
                local = (along, sy * (d / 2 + out))
            else:
                local = (sx * (w / 2 + out), along)
            jitter = rng.normal(0, 0.05 if tucked else 0.3)
            placed = place_with(table, model, local, yaw + jitter)
            # Neighbouring chairs may interleave their legs and bases, as they do at real tables.
            if fits(room, placed, 0.02, ignore=(table_index, *chairs)):
                chairs.append(room.add(placed))
                if rng.random() < 0.12:  # a jacket on the seat
                    seat = model.supports[0]
                    cloth = smallitems.clothes(
                        rng, 0.4, 0.35, rng.random() > cfg.clutter_unannotated_fraction
                    )
                    room.add(place_with(placed, cloth, (0.0, 0.0), z=seat.z), on_floor=False)


def add_table_group(
    room: Room,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    kind: str = "table",
    against_wall_p: float = 0.25,
) -> Placed | None:
    """A table (free-standing, or against a wall) with chairs around it and things on and under it."""
    model = furniture.table(rng, kind)
    placed = None
    if rng.random() < against_wall_p:
        placed = room.try_against(rng, model, gap_max=cfg.wall_gap_max)
    if placed is None:
        placed = room.try_free(rng, model, margin=0.4, tries=40)
    if placed is None:  # no open floor left: push it against a wall after all
        placed = room.try_against(rng, model, gap_max=cfg.wall_gap_max)
    if placed is None:
        return None
    index = room.add(placed)
    add_chairs_around(room, rng, cfg, placed, index, max_chairs=int(rng.integers(2, 9)))
    add_clutter(room, rng, cfg, placed)
    add_under(room, rng, cfg, placed, index, 0.3)
    return placed


def add_under(
    room: Room, rng: np.random.Generator, cfg: SyntheticConfig, parent: Placed, parent_index: int, p: float
) -> None:
    """Things kept under a desk or table: a bin, a computer, a bag (inside its box, on the floor)."""
    lo, hi = parent.model.extent()
    builders = (furniture.trash_can, smallitems.computer_tower, smallitems.bag)
    for build in builders:
        if rng.random() >= p:
            continue
        model = build(rng)
        if build is not furniture.trash_can and rng.random() < cfg.clutter_unannotated_fraction:
            model.raw_category = None
        mlo, mhi = model.extent()
        if mhi[2] > hi[2] - 0.1:
            continue
        x = rng.uniform(lo[0] - mlo[0] + 0.03, max(lo[0] - mlo[0] + 0.04, hi[0] - mhi[0] - 0.03))
        y = hi[1] - mhi[1] - rng.uniform(0.02, 0.15)
        pu = place_with(parent, model, (x, y), rng.normal(0, 0.2))
        if fits(room, pu, 0.0, ignore=(parent_index,)):
            room.add(pu)


def add_desk_group(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> Placed | None:
    """A desk against a wall, its chair (often pushed in), work things on it, maybe a cabinet under it."""
    model = furniture.desk(rng)
    placed = room.try_against(rng, model, gap_max=cfg.wall_gap_max)
    if placed is None:
        return None
    index = room.add(placed)
    lo, hi = model.extent()
    w, d = hi[0] - lo[0], hi[1] - lo[1]
    if rng.random() < 0.45:  # file cabinet under one end
        cab = furniture.cabinet(rng, "file cabinet", (0.4, min(0.5, d - 0.1), rng.uniform(0.55, 0.65)))
        side = rng.choice([-1, 1])
        pc = place_with(placed, cab, (side * (w / 2 - 0.25), 0.03))
        if fits(room, pc, 0.0, ignore=(index,)):
            room.add(pc)
    chair = furniture.office_chair(rng) if rng.random() < 0.7 else furniture.chair(rng)
    clo, chi = chair.extent()
    cd = chi[1] - clo[1]
    tucked = rng.random() < cfg.chair_tuck_probability
    out = cd / 2 - rng.uniform(0.12, 0.3) if tucked else cd / 2 + rng.uniform(0.05, 0.4)
    pc = place_with(
        placed,
        chair,
        (rng.uniform(-w / 4, w / 4), -d / 2 - out),
        np.pi + rng.normal(0, 0.05 if tucked else 0.4),
    )
    if fits(room, pc, 0.02, ignore=(index,)):
        room.add(pc)
    # Work things on the desk: a monitor or two at the back, a keyboard in front of them.
    sup = model.supports[0]
    n_monitors = int(rng.integers(0, 3))
    for k in range(n_monitors):
        mon = smallitems.monitor(rng)
        if mon.extent()[1][2] > sup.clearance:
            break
        x = (k - (n_monitors - 1) / 2) * 0.68 + rng.normal(0, 0.03)
        room.add(place_with(placed, mon, (x, sup.y1 - 0.12), rng.normal(0, 0.1), z=sup.z), on_floor=False)
        if k == 0 and rng.random() < 0.7:
            room.add(
                place_with(placed, smallitems.keyboard(rng), (x, sup.y1 - 0.4), rng.normal(0, 0.05), z=sup.z),
                on_floor=False,
            )
    add_clutter(room, rng, cfg, placed, scale=0.5)
    add_under(room, rng, cfg, placed, index, 0.35)
    return placed


def add_loose_chairs(room: Room, rng: np.random.Generator, cfg: SyntheticConfig, n: int) -> None:
    """Chairs standing on their own: against a wall or somewhere on the floor, turned at random."""
    for _ in range(n):
        model = furniture.chair(rng) if rng.random() < 0.6 else furniture.office_chair(rng)
        if rng.random() < 0.5:
            placed = room.try_against(rng, model, gap_max=0.05)
        else:
            placed = room.try_free(rng, model, margin=0.1)
            if placed is not None:
                placed.yaw = float(rng.uniform(0, 2 * np.pi))
                if not fits(room, placed, 0.05):
                    placed = None
        if placed is not None:
            room.add(placed)
