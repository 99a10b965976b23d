"""Free-standing furniture built from parts: seats, tables, desks, beds, storage.

Each builder draws its own sizes from `rng` (ranges of real furniture, metres) and returns an
`ObjectModel` whose footprint is centred on x = y = 0 with the back at +y. Parts overlap the
way real furniture does (legs under tops, arms beside seats), so instance boxes overlap too.
"""

from __future__ import annotations

import numpy as np

from beep3d.data.synthetic.model import ObjectModel, Support, palette
from beep3d.data.synthetic.primitives import Box, Cylinder

ALL_BUT_FRONT = frozenset({"+x", "-x", "+y", "+z", "-z"})  # omit these: a panel seen from the room (-y)


def box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, color: int = 0, **kw) -> Box:
    """A part from its min/max corners (easier to read than centre/size for furniture)."""
    return Box(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), (x1 - x0, y1 - y0, z1 - z0), color, **kw)


def legs(w: float, d: float, z1: float, t: float, inset: float, color: int) -> list[Box]:
    """Four square legs under a w x d top whose underside is at z1."""
    xs = (-w / 2 + inset, w / 2 - inset - t)
    ys = (-d / 2 + inset, d / 2 - inset - t)
    return [box(x, x + t, y, y + t, 0.0, z1, color) for x in xs for y in ys]


def chair(rng: np.random.Generator) -> ObjectModel:
    w, d = rng.uniform(0.42, 0.52), rng.uniform(0.42, 0.5)
    seat_z, t = rng.uniform(0.43, 0.48), 0.05
    back_h, leg = rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.045)
    parts = [
        box(-w / 2, w / 2, -d / 2, d / 2, seat_z - t, seat_z, 0),
        box(-w / 2, w / 2, d / 2 - 0.04, d / 2, seat_z, seat_z + back_h, 0),
        *legs(w, d, seat_z - t, leg, 0.01, 1),
    ]
    seat = [Support(-w / 2, -d / 2, w / 2, d / 2, seat_z, kind="seat")]
    return ObjectModel(
        "chair", parts, palette(rng, str(rng.choice(["wood", "fabric", "black"])), "metal"), supports=seat
    )


def office_chair(rng: np.random.Generator) -> ObjectModel:
    seat_z = rng.uniform(0.44, 0.52)
    w, d = rng.uniform(0.46, 0.52), rng.uniform(0.44, 0.5)
    spoke = rng.uniform(0.28, 0.33)
    parts: list = [
        Box((np.cos(a) * spoke / 2, np.sin(a) * spoke / 2, 0.06), (spoke, 0.05, 0.04), 1, yaw=float(a))
        for a in rng.uniform(0, 2 * np.pi) + np.arange(5) * 2 * np.pi / 5
    ]
    parts += [
        Cylinder((0.0, 0.0), (0.03, 0.03), 0.08, seat_z - 0.08, 1, caps=()),
        box(-w / 2, w / 2, -d / 2, d / 2, seat_z - 0.08, seat_z, 0),
        box(
            -w / 2 + 0.02,
            w / 2 - 0.02,
            d / 2 - 0.02,
            d / 2 + 0.05,
            seat_z + 0.08,
            seat_z + rng.uniform(0.45, 0.6),
            0,
        ),
    ]
    if rng.random() < 0.7:  # armrests
        for sx in (-1, 1):
            x = sx * (w / 2 + 0.03)
            parts.append(
                box(x - 0.03, x + 0.03, -d / 2 + 0.08, d / 2 - 0.05, seat_z + 0.18, seat_z + 0.21, 1)
            )
            parts.append(box(x - 0.015, x + 0.015, 0.0, 0.05, seat_z - 0.05, seat_z + 0.18, 1))
    seat = [Support(-w / 2, -d / 2, w / 2, d / 2, seat_z, kind="seat")]
    return ObjectModel("office chair", parts, palette(rng, "black", "metal"), supports=seat)


def armchair(rng: np.random.Generator) -> ObjectModel:
    w, d = rng.uniform(0.7, 0.9), rng.uniform(0.75, 0.9)
    arm, back = rng.uniform(0.14, 0.2), rng.uniform(0.15, 0.22)
    parts = [
        box(-w / 2 + arm, w / 2 - arm, -d / 2, d / 2 - back, 0.0, 0.42, 0),
        box(-w / 2, w / 2, d / 2 - back, d / 2, 0.0, rng.uniform(0.8, 0.95), 0),
        box(-w / 2, -w / 2 + arm, -d / 2, d / 2 - back, 0.0, 0.62, 0),
        box(w / 2 - arm, w / 2, -d / 2, d / 2 - back, 0.0, 0.62, 0),
    ]
    return ObjectModel(str(rng.choice(["armchair", "chair"])), parts, palette(rng, "fabric"))


def table(rng: np.random.Generator, kind: str = "table") -> ObjectModel:
    """Dining/plain table, coffee table or end table: top on legs, maybe an apron or a shelf."""
    if kind == "coffee table":
        w, d, h = rng.uniform(0.8, 1.3), rng.uniform(0.45, 0.7), rng.uniform(0.38, 0.48)
    elif kind == "end table":
        w = d = rng.uniform(0.4, 0.6)
        h = rng.uniform(0.5, 0.65)
    else:
        w, d, h = rng.uniform(0.9, 2.2), rng.uniform(0.7, 1.1), rng.uniform(0.72, 0.77)
    t, leg = rng.uniform(0.03, 0.05), rng.uniform(0.045, 0.07)
    parts = [box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, 0), *legs(w, d, h - t, leg, 0.04, 1)]
    if rng.random() < 0.5:  # apron under the top
        parts.append(box(-w / 2 + 0.05, w / 2 - 0.05, -d / 2 + 0.05, d / 2 - 0.05, h - t - 0.08, h - t, 1))
    if kind != "table" and rng.random() < 0.5:  # lower shelf
        parts.append(box(-w / 2 + 0.04, w / 2 - 0.04, -d / 2 + 0.04, d / 2 - 0.04, 0.1, 0.12, 0))
    mat = str(rng.choice(["wood", "dark_wood", "laminate"]))
    sup = [Support(-w / 2 + 0.05, -d / 2 + 0.05, w / 2 - 0.05, d / 2 - 0.05, h)]
    return ObjectModel(kind, parts, palette(rng, mat, mat if rng.random() < 0.6 else "metal"), supports=sup)


def desk(rng: np.random.Generator) -> ObjectModel:
    w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
    t = 0.03
    parts = [box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, 0)]
    if rng.random() < 0.5:  # panel sides
        parts += [
            box(-w / 2, -w / 2 + 0.03, -d / 2, d / 2, 0, h - t, 0),
            box(w / 2 - 0.03, w / 2, -d / 2, d / 2, 0, h - t, 0),
        ]
    else:
        parts += legs(w, d, h - t, 0.05, 0.02, 1)
    if rng.random() < 0.5:  # modesty panel at the back
        parts.append(box(-w / 2 + 0.03, w / 2 - 0.03, d / 2 - 0.03, d / 2 - 0.01, 0.3, h - t, 0))
    if rng.random() < 0.4:  # drawer pedestal on one side
        side = rng.choice([-1, 1])
        x0 = side * (w / 2 - 0.03) - (0.4 if side > 0 else 0)
        parts.append(box(x0, x0 + 0.4, -d / 2 + 0.02, d / 2 - 0.03, 0.0, h - t, 0))
    supports = [Support(-w / 2 + 0.05, -d / 2 + 0.05, w / 2 - 0.05, d / 2 - 0.05, h)]
    if rng.random() < 0.2:  # hutch: a shelf above the back of the desk, monitors stand under it
        hz = h + rng.uniform(0.4, 0.5)
        parts += [
            box(-w / 2, -w / 2 + 0.02, d / 2 - 0.3, d / 2, h, hz + 0.02, 0),
            box(w / 2 - 0.02, w / 2, d / 2 - 0.3, d / 2, h, hz + 0.02, 0),
            box(-w / 2, w / 2, d / 2 - 0.3, d / 2, hz, hz + 0.02, 0),
        ]
        supports[0] = Support(
            -w / 2 + 0.05, -d / 2 + 0.05, w / 2 - 0.05, d / 2 - 0.05, h, clearance=hz - h - 0.02
        )
    mat = str(rng.choice(["wood", "laminate", "dark_wood"]))
    return ObjectModel("desk", parts, palette(rng, mat, "metal"), supports=supports)


def bed(rng: np.random.Generator) -> ObjectModel:
    """Frame (on legs or closed to the floor), mattress, headboard, maybe a footboard."""
    w = rng.uniform(0.9, 1.05) if rng.random() < 0.4 else rng.uniform(1.35, 1.8)
    length, mat_h = rng.uniform(1.95, 2.1), rng.uniform(0.18, 0.25)
    # Beds on legs leave the floor below visible to the scanner, and inside the bed's box.
    clearance = rng.uniform(0.1, 0.22) if rng.random() < 0.6 else 0.0
    base_h = clearance + rng.uniform(0.12, 0.25)
    head_h = rng.uniform(0.85, 1.2)
    top = base_h + mat_h
    y0, y1 = -length / 2, length / 2 - 0.06
    parts = [
        box(-w / 2, w / 2, y0, y1, clearance, base_h, 1),
        box(-w / 2 + 0.01, w / 2 - 0.01, y0 + 0.02, y1, base_h, top, 0),
        box(-w / 2 - 0.02, w / 2 + 0.02, length / 2 - 0.06, length / 2, 0.0, head_h, 1),
    ]
    if clearance:
        parts += legs(w, y1 - y0 - 0.02, clearance, 0.05, 0.0, 1)
    if rng.random() < 0.3:
        parts.append(box(-w / 2 - 0.02, w / 2 + 0.02, -length / 2 - 0.05, -length / 2, 0.0, top + 0.1, 1))
    supports = [
        Support(-w / 2 + 0.05, length / 2 - 0.6, w / 2 - 0.05, length / 2 - 0.1, top, kind="pillow"),
        Support(-w / 2 + 0.1, -length / 2 + 0.1, w / 2 - 0.1, length / 2 - 0.7, top, kind="top"),
    ]
    return ObjectModel(
        "bed",
        parts,
        palette(rng, "bedding", str(rng.choice(["wood", "dark_wood", "fabric"]))),
        supports=supports,
    )


def sofa(rng: np.random.Generator) -> ObjectModel:
    """Seat, back and arms, maybe on legs, maybe an L-shaped sectional whose chaise reaches forward
    (its box then takes in whatever stands in front of it, a coffee table or an ottoman)."""
    w, d = rng.uniform(1.6, 2.4), rng.uniform(0.8, 0.95)
    arm, back, seat = rng.uniform(0.15, 0.25), rng.uniform(0.18, 0.25), rng.uniform(0.4, 0.45)
    lift = rng.uniform(0.08, 0.16) if rng.random() < 0.5 else 0.0  # on legs: floor visible below
    arm_h = rng.uniform(0.55, 0.65)
    parts = [
        box(-w / 2 + arm, w / 2 - arm, -d / 2, d / 2 - back, lift, seat, 0),
        box(-w / 2, w / 2, d / 2 - back, d / 2, lift, rng.uniform(0.78, 0.92), 0),
        box(-w / 2, -w / 2 + arm, -d / 2, d / 2 - back, lift, arm_h, 0),
    ]
    if rng.random() < 0.4:
        reach = rng.uniform(0.6, 1.0)  # chaise depth beyond the seat front
        cw = rng.uniform(0.7, 0.9)
        parts += [
            box(w / 2 - cw, w / 2 - arm, -d / 2 - reach, -d / 2, lift, seat, 0),
            box(w / 2 - arm, w / 2, -d / 2 - reach, d / 2 - back, lift, arm_h, 0),
        ]
    else:
        parts.append(box(w / 2 - arm, w / 2, -d / 2, d / 2 - back, lift, arm_h, 0))
    if lift:
        parts += legs(w, d, lift, 0.04, 0.03, 1)
    sup = [
        Support(
            -w / 2 + arm + 0.05,
            d / 2 - back - 0.25,
            w / 2 - arm - 0.05,
            d / 2 - back - 0.05,
            seat,
            kind="pillow",
        )
    ]
    model = ObjectModel(
        str(rng.choice(["couch", "sofa"])), parts, palette(rng, "fabric", "dark_wood"), supports=sup
    )
    # Keep the back at +y and the footprint centred, as every builder does.
    lo, hi = model.extent()
    shift = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)
    if abs(shift[0]) > 1e-9 or abs(shift[1]) > 1e-9:
        model.parts = [_shifted(p, -shift[0], -shift[1]) for p in model.parts]
        model.supports = [
            Support(
                s.x0 - shift[0], s.y0 - shift[1], s.x1 - shift[0], s.y1 - shift[1], s.z, s.clearance, s.kind
            )
            for s in model.supports
        ]
    return model


def _shifted(part: Box, dx: float, dy: float) -> Box:
    from dataclasses import replace

    return replace(part, center=(part.center[0] + dx, part.center[1] + dy, part.center[2]))


def cabinet(
    rng: np.random.Generator,
    raw: str = "cabinet",
    size: tuple[float, float, float] | None = None,
    hollow: bool = False,
    z0: float = 0.0,
) -> ObjectModel:
    """A storage body with door or drawer fronts and handles; `hollow` for sink cabinets.

    Floor-standing ones may stand on legs or on a recessed plinth (a toe kick): both leave a
    strip of floor inside the cabinet's box.
    """
    w, d, h = size or (rng.uniform(0.4, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.7, 2.0))
    parts: list = []
    body_z = z0
    if z0 == 0.0:
        roll = rng.random()
        if roll < 0.25 and raw != "kitchen cabinets":
            body_z = rng.uniform(0.08, 0.15)
            parts += legs(w, d - 0.02, body_z, 0.04, 0.02, 2)
        elif roll < 0.65:
            body_z = rng.uniform(0.08, 0.12)
            parts.append(box(-w / 2, w / 2, -d / 2 + 0.08, d / 2, 0.0, body_z, 0))
    parts.append(box(-w / 2, w / 2, -d / 2 + 0.02, d / 2, body_z, z0 + h, 0, solid=not hollow))
    n_fronts = max(1, round(w / rng.uniform(0.35, 0.6)))
    fw = w / n_fronts
    drawers = raw == "file cabinet" or rng.random() < 0.3
    fh_total = z0 + h - body_z
    rows = max(2, int(fh_total / 0.3)) if drawers else 1
    fh = fh_total / rows
    for i in range(n_fronts):
        for j in range(rows):
            x0, zf = -w / 2 + i * fw + 0.005, body_z + j * fh + 0.005
            parts.append(
                box(x0, x0 + fw - 0.01, -d / 2, -d / 2 + 0.02, zf, zf + fh - 0.01, 1, omit=ALL_BUT_FRONT)
            )
            hx = x0 + fw / 2 if drawers else (x0 + fw - 0.06 if i % 2 == 0 else x0 + 0.04)
            # Door handles sit at hand height: high on base units, low on wall units.
            hz = zf + fh / 2 if drawers else zf + fh * (0.8 if z0 < 1.0 else 0.15)
            parts.append(box(hx - 0.01, hx + 0.01, -d / 2 - 0.03, -d / 2, hz - 0.05, hz + 0.05, 2))
    mat = str(rng.choice(["wood", "laminate", "dark_wood", "metal"]))
    sup = [Support(-w / 2 + 0.03, -d / 2 + 0.05, w / 2 - 0.03, d / 2 - 0.03, z0 + h)] if z0 + h < 1.3 else []
    return ObjectModel(raw, parts, palette(rng, mat, mat, "metal"), supports=sup)


def bookshelf(rng: np.random.Generator) -> ObjectModel:
    """Sides, top, plinth and shelves; often no back panel, so the wall shows through."""
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.4), rng.uniform(0.9, 2.0)
    t = 0.02
    parts = [
        box(-w / 2, -w / 2 + t, -d / 2, d / 2, 0, h, 0),
        box(w / 2 - t, w / 2, -d / 2, d / 2, 0, h, 0),
        box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, 0),
        box(-w / 2 + t, w / 2 - t, -d / 2, d / 2, 0, 0.08, 0),
    ]
    if rng.random() < 0.5:
        parts.append(box(-w / 2 + t, w / 2 - t, d / 2 - 0.01, d / 2, 0.08, h - t, 0))
    n_shelves = max(1, int((h - 0.1) / rng.uniform(0.3, 0.38)))
    levels = np.linspace(0.08, h - t, n_shelves + 1)
    supports = []
    for k, z in enumerate(levels[:-1]):
        if k > 0:
            parts.append(box(-w / 2 + t, w / 2 - t, -d / 2 + 0.01, d / 2 - 0.01, z - t, z, 0))
        supports.append(
            Support(-w / 2 + t, -d / 2 + 0.03, w / 2 - t, d / 2 - 0.02, z, levels[k + 1] - z - t, "books")
        )
    raw = str(rng.choice(["bookshelf", "bookshelf", "bookshelves"]))
    return ObjectModel(
        raw, parts, palette(rng, str(rng.choice(["wood", "dark_wood", "laminate"]))), supports=supports
    )


def nightstand(rng: np.random.Generator) -> ObjectModel:
    """Not a benchmark class (nyu40 "night stand"): non-object points beside the bed."""
    size = (rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.45, 0.65))
    return cabinet(rng, "nightstand", size)


def dresser(rng: np.random.Generator) -> ObjectModel:
    size = (rng.uniform(0.8, 1.4), rng.uniform(0.45, 0.55), rng.uniform(0.75, 1.1))
    return cabinet(rng, "dresser", size)


def tv_stand(rng: np.random.Generator) -> ObjectModel:
    size = (rng.uniform(1.0, 1.8), rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.6))
    return cabinet(rng, "tv stand", size)


def trash_can(rng: np.random.Generator) -> ObjectModel:
    h = rng.uniform(0.3, 0.7)
    raw = str(rng.choice(["trash can", "trash can", "recycling bin"]))
    pal = palette(rng, str(rng.choice(["metal", "black", "bright"])))
    if rng.random() < 0.5:
        r = rng.uniform(0.12, 0.2)
        parts: list = [
            Cylinder((0.0, 0.0), (r, r), 0.0, h, 0, caps=()),
            Cylinder((0.0, 0.0), (r * 0.9, r * 0.9), 0.0, 0.03, 0),
        ]
    else:
        w, d = rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.35)
        parts = [box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, 0, omit=frozenset({"+z"}), solid=False)]
    return ObjectModel(raw, parts, pal)


def ottoman(rng: np.random.Generator) -> ObjectModel:
    w = rng.uniform(0.4, 0.65)
    return ObjectModel(
        "ottoman", [box(-w / 2, w / 2, -w / 2, w / 2, 0, rng.uniform(0.38, 0.45), 0)], palette(rng, "fabric")
    )


def bench(rng: np.random.Generator) -> ObjectModel:
    w, d, h = rng.uniform(1.0, 1.5), rng.uniform(0.35, 0.45), rng.uniform(0.42, 0.48)
    parts = [box(-w / 2, w / 2, -d / 2, d / 2, h - 0.05, h, 0), *legs(w, d, h - 0.05, 0.05, 0.04, 0)]
    return ObjectModel(
        "bench", parts, palette(rng, "wood"), supports=[Support(-w / 2, -d / 2, w / 2, d / 2, h)]
    )


def radiator(rng: np.random.Generator) -> ObjectModel:
    w, h = rng.uniform(0.6, 1.2), rng.uniform(0.45, 0.65)
    parts = [box(-w / 2, w / 2, -0.04, 0.05, 0.12, 0.12 + h, 0)]
    for x in np.linspace(-w / 2 + 0.05, w / 2 - 0.05, max(2, int(w / 0.12))):
        parts.append(box(x - 0.01, x + 0.01, -0.07, -0.04, 0.14, 0.1 + h, 0, omit=frozenset({"+y"})))
    return ObjectModel("radiator", parts, palette(rng, "paint"))
