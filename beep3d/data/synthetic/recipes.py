"""One function per room type: furnish a `Room` in place."""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic import fixtures, furniture, smallitems
from beep3d.data.synthetic.clutter import add_clutter, add_floor_clutter
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.groups import add_against, add_desk_group, add_loose_chairs, add_table_group
from beep3d.data.synthetic.layout import Placed, Room, fits, place_with
from beep3d.data.synthetic.openings import add_doors, add_pictures, add_wall_things, add_windows

# Floor size ranges (metres, before cfg.room_size_scale) per room type: (w_min, w_max, d_min, d_max).
ROOM_SIZES = {
    "bedroom": (3.0, 4.6, 3.2, 5.0),
    "office": (3.6, 6.5, 3.5, 6.0),
    "kitchen": (3.0, 5.0, 2.8, 4.5),
    "bathroom": (1.9, 3.2, 2.1, 3.4),
    "living_room": (4.0, 6.5, 3.6, 6.0),
}


def _maybe(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _bed_with_stands(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    bed = furniture.bed(rng)
    placed = room.try_against(rng, bed, gap_max=cfg.wall_gap_max)
    if placed is None:
        return
    bed_index = room.add(placed)
    add_clutter(room, rng, cfg, placed)
    lo, hi = bed.extent()
    if _maybe(rng, 0.25):  # a bench or ottoman against the foot of the bed
        foot = furniture.bench(rng) if _maybe(rng, 0.6) else furniture.ottoman(rng)
        flo, fhi = foot.extent()
        pf = place_with(
            placed, foot, (rng.normal(0, 0.05), lo[1] - (fhi[1] - flo[1]) / 2 - rng.uniform(0.0, 0.04))
        )
        if fits(room, pf, 0.0, ignore=(bed_index,)):
            room.add(pf)
    for side in (-1, 1):
        if not _maybe(rng, 0.7):
            continue
        stand = furniture.nightstand(rng)
        slo, shi = stand.extent()
        x = side * (hi[0] + (shi[0] - slo[0]) / 2 + rng.uniform(0.0, 0.05))
        ps = place_with(placed, stand, (x, hi[1] - (shi[1] - slo[1]) / 2 - rng.uniform(0, 0.03)))
        if fits(room, ps, 0.0, ignore=(bed_index,)):
            room.add(ps)
            if _maybe(rng, 0.6):
                room.add(
                    place_with(ps, smallitems.lamp(rng, 0.6), (0.0, 0.0), z=float(shi[2])),
                    on_floor=False,
                )


def bedroom(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    # The bed goes in first: a bedroom is planned around it.
    for _ in range(1 + int(_maybe(rng, 0.25))):  # hotel rooms have two
        _bed_with_stands(room, rng, cfg)
    add_doors(room, rng, cfg, 1 + int(_maybe(rng, 0.3)))
    add_windows(room, rng, cfg, int(rng.integers(0, 3)))
    if _maybe(rng, 0.75):
        add_against(
            room,
            rng,
            cfg,
            furniture.cabinet(
                rng, "cabinet", (rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.62), rng.uniform(1.7, 2.1))
            ),
        )
    if _maybe(rng, 0.5):
        add_against(room, rng, cfg, furniture.dresser(rng))
    if _maybe(rng, 0.65):
        add_desk_group(room, rng, cfg)
    if _maybe(rng, 0.4):
        add_against(room, rng, cfg, furniture.bookshelf(rng))
    if _maybe(rng, 0.3):
        add_against(room, rng, cfg, furniture.armchair(rng), clutter=False)
    if _maybe(rng, 0.25):
        add_table_group(room, rng, cfg, "table")
    if _maybe(rng, 0.5):
        add_against(room, rng, cfg, furniture.trash_can(rng), clutter=False)
    if _maybe(rng, 0.25):
        add_against(
            room,
            rng,
            cfg,
            furniture.ottoman(rng) if _maybe(rng, 0.5) else furniture.bench(rng),
            clutter=False,
        )
    add_loose_chairs(room, rng, cfg, int(rng.integers(0, 2)))
    add_pictures(room, rng, int(rng.integers(0, 3)))
    add_floor_clutter(room, rng, cfg)


def office(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    add_doors(room, rng, cfg, 1 + int(_maybe(rng, 0.35)))
    add_windows(room, rng, cfg, int(rng.integers(0, 3)))
    if _maybe(rng, 0.7):
        add_table_group(room, rng, cfg)
    for _ in range(int(rng.integers(3, 7))):
        add_desk_group(room, rng, cfg)
    for _ in range(int(rng.integers(1, 4))):
        add_against(room, rng, cfg, furniture.bookshelf(rng))
    for _ in range(int(rng.integers(1, 4))):
        raw = "file cabinet" if _maybe(rng, 0.5) else "cabinet"
        add_against(room, rng, cfg, furniture.cabinet(rng, raw))
    add_loose_chairs(room, rng, cfg, int(rng.integers(0, 5)))
    if _maybe(rng, 0.4):
        add_wall_things(room, rng, "whiteboard", 1, (1.2, 2.0, 0.9, 1.2), (1.4, 1.6))
    for _ in range(int(rng.integers(1, 3))):
        add_against(room, rng, cfg, furniture.trash_can(rng), clutter=False)
    if _maybe(rng, 0.25):
        add_against(room, rng, cfg, fixtures.refrigerator(rng), clutter=False)
    if _maybe(rng, 0.2):
        add_against(room, rng, cfg, furniture.armchair(rng) if _maybe(rng, 0.5) else furniture.sofa(rng))
    add_pictures(room, rng, int(rng.integers(0, 3)))
    add_floor_clutter(room, rng, cfg)


def _kitchen_run(
    room: Room, rng: np.random.Generator, cfg: SyntheticConfig, wall: int, top_z: float, raw: str
) -> Placed | None:
    """A counter along `wall` with cabinets below, a sink in it, and maybe wall cabinets above."""
    length = min(room.walls[wall].length - 0.3, rng.uniform(1.6, 3.6))
    depth = rng.uniform(0.58, 0.66)
    with_base = _maybe(rng, 0.3)
    model = fixtures.counter(rng, raw, length, depth, top_z, with_base)
    placed = room.try_against(rng, model, walls=(wall,), gap_max=0.01)
    if placed is None:
        return None
    room.add(placed)
    # Cabinets under the top, one of them hollow to take the sink's bowl.
    widths = []
    while sum(widths) < length - 0.35:
        widths.append(min(rng.uniform(0.4, 0.9), length - sum(widths)))
    if sum(widths) < length:
        widths[-1] += length - sum(widths)
    sink_at = int(rng.integers(0, len(widths)))
    x = -length / 2
    for k, cw in enumerate(widths):
        xc = x + cw / 2
        x += cw
        if k == sink_at:
            sink = fixtures.inset_sink(rng, top_z, cw - 0.1)
            room.add(place_with(placed, sink, (xc, 0.0)), on_floor=False)
        if not with_base:
            cab = furniture.cabinet(
                rng, "kitchen cabinets", (cw - 0.004, depth - 0.04, top_z - 0.05), hollow=k == sink_at
            )
            room.add(place_with(placed, cab, (xc, 0.02)), on_floor=False)
    add_clutter(room, rng, cfg, placed, scale=1.5)
    if _maybe(rng, 0.65):
        # Wall cabinets over part of the run, clear of windows.
        z0 = rng.uniform(1.4, 1.55)
        x = -length / 2 + rng.uniform(0, 0.4)
        while x < length / 2 - 0.4:
            cw = min(rng.uniform(0.4, 0.9), length / 2 - x)
            up = fixtures.upper_cabinet(rng, cw, z0)
            pu = place_with(placed, up, (x + cw / 2, depth / 2 - up.extent()[1][1]))
            pu.wall = wall
            s0, s1 = room.walls[wall].span_of(pu)
            if room.wall_free(wall, s0, s1, z0, z0 + 0.8):
                room.add(pu, on_floor=False)
            x += cw
    return placed


def kitchen(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    add_doors(room, rng, cfg, 1)
    add_windows(room, rng, cfg, int(rng.integers(0, 2)), radiator_p=0.1)
    walls = list(rng.permutation(4))
    top_z = rng.uniform(0.88, 0.93)
    raw = "kitchen counter" if _maybe(rng, 0.7) else "counter"
    runs = 0
    wanted = 1 + int(_maybe(rng, 0.6))
    for wall in walls:
        if runs < wanted and _kitchen_run(room, rng, cfg, int(wall), top_z, raw) is not None:
            runs += 1
    if _maybe(rng, 0.9):
        add_against(room, rng, cfg, fixtures.refrigerator(rng), clutter=False)
    if _maybe(rng, 0.9):
        add_table_group(room, rng, cfg, "dining table" if _maybe(rng, 0.5) else "table")
    for _ in range(int(rng.integers(0, 3))):
        add_against(room, rng, cfg, furniture.cabinet(rng, "cabinet"))
    if _maybe(rng, 0.8):
        add_against(room, rng, cfg, furniture.trash_can(rng), clutter=False)
    add_loose_chairs(room, rng, cfg, int(_maybe(rng, 0.3)))
    add_pictures(room, rng, int(rng.integers(0, 2)))
    add_floor_clutter(room, rng, cfg)


def bathroom(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    # The tub goes in first: it needs a whole short wall, the door can go anywhere else.
    if _maybe(rng, 0.8):
        # The tub spans a short wall corner to corner when it nearly fits, as tubs usually do.
        wall = int(np.argmin([w.length + 0.2 * rng.random() for w in room.walls]))
        length = room.walls[wall].length
        tub_len = length if length < 1.95 else rng.uniform(1.5, 1.75)
        tub_w = rng.uniform(0.7, 0.8)
        tub = fixtures.bathtub(rng, tub_len, tub_w)
        s = tub_len / 2 if rng.random() < 0.5 else length - tub_len / 2
        placed = room.against(tub, wall, s)
        if fits(room, placed, 0.0):
            room.add(placed)
            if _maybe(rng, 0.85):
                h = float(tub.extent()[1][2])
                sc = fixtures.shower_curtain(rng, tub_len, tub_w, h)
                room.add(Placed(sc, placed.x, placed.y, 0.0, placed.yaw), on_floor=False)
    add_doors(room, rng, cfg, 1)
    if _maybe(rng, 0.4):
        add_windows(room, rng, cfg, 1, radiator_p=0.2)
    add_against(room, rng, cfg, fixtures.toilet(rng), clutter=False)
    has_sink = False
    if _maybe(rng, 0.55):
        length = rng.uniform(0.6, 1.2)
        top_z = rng.uniform(0.8, 0.88)
        model = fixtures.counter(
            rng, "bathroom counter" if _maybe(rng, 0.6) else "counter", length, 0.52, top_z, False
        )
        placed = room.try_against(rng, model, gap_max=0.01)
        if placed is not None:
            room.add(placed)
            room.add(
                place_with(
                    placed,
                    fixtures.inset_sink(rng, top_z, length - 0.15),
                    (rng.uniform(-0.1, 0.1), 0.0),
                ),
                on_floor=False,
            )
            cab = furniture.cabinet(
                rng, "bathroom cabinet", (length - 0.004, 0.48, top_z - 0.04), hollow=True
            )
            room.add(place_with(placed, cab, (0.0, 0.02)), on_floor=False)
            add_clutter(room, rng, cfg, placed, scale=0.7)
            has_sink = True
    if not has_sink:
        has_sink = add_against(room, rng, cfg, fixtures.pedestal_sink(rng), clutter=False) is not None
    if has_sink and _maybe(rng, 0.8):
        add_wall_things(room, rng, "mirror", 1, (0.4, 0.8, 0.5, 0.9), (1.4, 1.6), t=0.02)
    if _maybe(rng, 0.7):
        add_wall_things(room, rng, "towel", int(rng.integers(1, 3)), (0.3, 0.6, 0.4, 0.8), (1.0, 1.4), t=0.04)
    if _maybe(rng, 0.35):
        cab = furniture.cabinet(
            rng,
            "bathroom cabinet",
            (rng.uniform(0.4, 0.7), 0.2, rng.uniform(0.5, 0.7)),
            z0=rng.uniform(1.3, 1.5),
        )
        pc = room.try_against(rng, cab, on_floor=False)
        if pc is not None:
            room.add(pc, on_floor=False)
    if _maybe(rng, 0.6):
        add_against(room, rng, cfg, furniture.trash_can(rng), clutter=False)
    if _maybe(rng, 0.3):
        add_against(
            room,
            rng,
            cfg,
            furniture.cabinet(rng, "cabinet", (rng.uniform(0.4, 0.8), 0.4, rng.uniform(0.8, 1.8))),
        )
    add_pictures(room, rng, int(_maybe(rng, 0.3)))
    add_floor_clutter(room, rng, cfg)


def _sofa_set(room: Room, rng: np.random.Generator, cfg: SyntheticConfig, with_table: bool) -> Placed | None:
    """A sofa against a wall, a coffee table in front, armchairs beside it, an end table."""
    sofa = furniture.sofa(rng)
    placed = room.try_against(rng, sofa, gap_max=cfg.wall_gap_max)
    if placed is None:
        return None
    sofa_index = room.add(placed)
    add_clutter(room, rng, cfg, placed)
    lo, hi = sofa.extent()
    if with_table:
        ct = furniture.table(rng, "coffee table")
        clo, chi = ct.extent()
        # A sectional's chaise reaches out: the table then stands partly within its footprint.
        front = -sofa.parts[0].size[1] / 2 + sofa.parts[0].center[1]
        y = front - rng.uniform(0.25, 0.45) - (chi[1] - clo[1]) / 2
        pct = place_with(
            placed, ct, (rng.normal(0, 0.05) + (lo[0] + hi[0]) / 2 - 0.0, y), rng.normal(0, 0.03)
        )
        if fits(room, pct, 0.05, ignore=(sofa_index,)):
            ct_index = room.add(pct)
            add_clutter(room, rng, cfg, pct)
            for side in (-1, 1):
                if _maybe(rng, 0.45):
                    arm = furniture.armchair(rng)
                    x = side * ((chi[0] - clo[0]) / 2 + rng.uniform(0.45, 0.7))
                    pa = place_with(
                        pct, arm, (x, rng.uniform(-0.2, 0.2)), -side * np.pi / 2 + rng.normal(0, 0.2)
                    )
                    if fits(room, pa, 0.02, ignore=(ct_index, sofa_index)):
                        room.add(pa)
    if _maybe(rng, 0.5):
        et = furniture.table(rng, "end table")
        elo, ehi = et.extent()
        side = rng.choice([-1, 1])
        pe = place_with(
            placed,
            et,
            (side * (hi[0] + (ehi[0] - elo[0]) / 2 + 0.03), hi[1] - (ehi[1] - elo[1]) / 2 - 0.03),
        )
        if fits(room, pe, 0.0):
            room.add(pe)
            add_clutter(room, rng, cfg, pe)
    return placed


def living_room(room: Room, rng: np.random.Generator, cfg: SyntheticConfig) -> None:
    placed = _sofa_set(room, rng, cfg, with_table=True)
    add_doors(room, rng, cfg, 1 + int(_maybe(rng, 0.4)))
    add_windows(room, rng, cfg, int(rng.integers(1, 3)))
    if placed is not None and _maybe(rng, 0.75):
        stand = furniture.tv_stand(rng)
        ps = room.try_against(rng, stand, walls=((placed.wall + 2) % 4,), gap_max=cfg.wall_gap_max)
        if ps is not None:
            room.add(ps)
            room.add(
                place_with(ps, smallitems.television(rng), (0.0, 0.0), z=float(stand.extent()[1][2])),
                on_floor=False,
            )
    if _maybe(rng, 0.35):
        _sofa_set(room, rng, cfg, with_table=False)
    for _ in range(int(rng.integers(0, 3))):
        add_against(room, rng, cfg, furniture.bookshelf(rng))
    if _maybe(rng, 0.5):
        add_against(room, rng, cfg, furniture.cabinet(rng, "cabinet"))
    if _maybe(rng, 0.3):
        placed_o = room.try_free(rng, furniture.ottoman(rng), margin=0.2)
        if placed_o is not None:
            room.add(placed_o)
    if _maybe(rng, 0.2):
        add_against(room, rng, cfg, furniture.bench(rng))
    if _maybe(rng, 0.5):
        add_table_group(room, rng, cfg, "dining table")
    if _maybe(rng, 0.35):
        add_desk_group(room, rng, cfg)
    if _maybe(rng, 0.4):
        add_against(room, rng, cfg, furniture.trash_can(rng), clutter=False)
    add_loose_chairs(room, rng, cfg, int(rng.integers(0, 2)))
    add_pictures(room, rng, int(rng.integers(0, 3)))
    add_floor_clutter(room, rng, cfg)


RECIPES = {
    "bedroom": bedroom,
    "office": office,
    "kitchen": kitchen,
    "bathroom": bathroom,
    "living_room": living_room,
}
