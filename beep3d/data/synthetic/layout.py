"""Room geometry and placement bookkeeping: which floor area and which wall spans are taken.

The room spans x in [0, width], y in [0, depth], floor at z = 0. Walls are numbered
counter-clockwise (0 south y=0, 1 east x=width, 2 north y=depth, 3 west x=0); a position on a
wall is its distance `s` from the wall's start corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from beep3d.data.synthetic.model import ObjectModel
from beep3d.data.synthetic.primitives import rotation_z

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass
class Placed:
    """A model put into the room: world = R(yaw) @ local + (x, y, z)."""

    model: ObjectModel
    x: float
    y: float
    z: float
    yaw: float
    wall: int | None = None  # the wall it stands against, if any

    @property
    def rotation(self) -> np.ndarray:
        return rotation_z(self.yaw)

    def to_world(self, local: np.ndarray) -> np.ndarray:
        """(n, 3) object-frame points -> (n, 3) room-frame points."""
        return local @ self.rotation.T + np.array([self.x, self.y, self.z])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned (lo, hi) of the model's extent box."""
        lo, hi = self.model.extent()
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        world = self.to_world(corners)
        return world.min(axis=0), world.max(axis=0)

    def footprint(self, margin: float = 0.0) -> Rect:
        lo, hi = self.bounds()
        return (lo[0] - margin, lo[1] - margin, hi[0] + margin, hi[1] + margin)


@dataclass(frozen=True)
class Wall:
    index: int
    start: np.ndarray  # (2,) corner where s = 0
    along: np.ndarray  # (2,) unit direction of increasing s
    normal: np.ndarray  # (2,) unit normal pointing into the room
    length: float

    def point(self, s: float) -> np.ndarray:
        return self.start + s * self.along

    @property
    def yaw(self) -> float:
        """Yaw that turns an object's back (+y) to this wall and its front to the room."""
        return float(np.arctan2(self.normal[0], -self.normal[1]))

    def span_of(self, placed: Placed) -> tuple[float, float]:
        """Range of s covered by a placed item's footprint."""
        x0, y0, x1, y1 = placed.footprint()
        corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]]) - self.start
        s = corners @ self.along
        return float(s.min()), float(s.max())


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class Room:
    width: float
    depth: float
    height: float
    walls: list[Wall] = field(init=False)
    items: list[Placed] = field(default_factory=list)
    floor_taken: list[tuple[Rect, int]] = field(default_factory=list)  # (footprint, item index)
    keepout: list[Rect] = field(default_factory=list)  # door swings, walkways
    wall_taken: dict[int, list[tuple[float, float, float, float]]] = field(
        default_factory=dict
    )  # s0 s1 z0 z1
    adjacency: float = 0.0  # chance a wall-standing item is pushed up against a neighbour on that wall
    yaw_jitter: float = 0.0  # radians, std of furniture rotation away from the wall's direction

    def __post_init__(self) -> None:
        w, d = self.width, self.depth
        specs = [
            ((0, 0), (1, 0), (0, 1), w),
            ((w, 0), (0, 1), (-1, 0), d),
            ((w, d), (-1, 0), (0, -1), w),
            ((0, d), (0, -1), (1, 0), d),
        ]
        self.walls = [
            Wall(i, np.array(s, float), np.array(a, float), np.array(n, float), ln)
            for i, (s, a, n, ln) in enumerate(specs)
        ]
        self.wall_taken = {i: [] for i in range(4)}

    def inside(self, rect: Rect, margin: float = 0.0) -> bool:
        return (
            rect[0] >= -margin
            and rect[1] >= -margin
            and rect[2] <= self.width + margin
            and rect[3] <= self.depth + margin
        )

    def floor_free(self, rect: Rect, ignore: tuple[int, ...] = (), keepout: bool = True) -> bool:
        """No taken footprint (except owners in `ignore`) or keep-out zone overlaps `rect`."""
        if any(_overlap(rect, r) for r, owner in self.floor_taken if owner not in ignore):
            return False
        return not (keepout and any(_overlap(rect, k) for k in self.keepout))

    def wall_free(self, wall: int, s0: float, s1: float, z0: float, z1: float) -> bool:
        if s0 < 0 or s1 > self.walls[wall].length:
            return False
        return not any(
            s0 < b1 and b0 < s1 and z0 < c1 and c0 < z1 for b0, b1, c0, c1 in self.wall_taken[wall]
        )

    def add(self, placed: Placed, on_floor: bool = True, wall_z: tuple[float, float] | None = None) -> int:
        """Record an item; it takes its footprint (on_floor) and, against a wall, a wall span."""
        index = len(self.items)
        self.items.append(placed)
        if on_floor:
            self.floor_taken.append((placed.footprint(), index))
        if placed.wall is not None:
            s0, s1 = self.walls[placed.wall].span_of(placed)
            lo, hi = placed.bounds()
            z0, z1 = wall_z or (float(lo[2]), float(hi[2]))
            self.wall_taken[placed.wall].append((s0, s1, z0, z1))
        return index

    def against(
        self,
        model: ObjectModel,
        wall: int,
        s: float,
        gap: float = 0.0,
        z: float = 0.0,
        yaw_jitter: float = 0.0,
    ) -> Placed:
        """Pose with the model's back (or mount plane) `gap` metres off wall `wall`, centred at s."""
        w = self.walls[wall]
        pos = w.point(s) + (gap + model.back_y) * w.normal
        placed = Placed(model, float(pos[0]), float(pos[1]), z, w.yaw + yaw_jitter, wall)
        if yaw_jitter and model.mount_y is None:
            # Turned furniture pivots on its back corner: push it out until no corner is in the wall.
            lo, hi = placed.bounds()
            corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
            into = gap - float(((corners - w.start) @ w.normal).min())
            placed.x += float(into * w.normal[0])
            placed.y += float(into * w.normal[1])
        return placed

    def try_against(
        self,
        rng: np.random.Generator,
        model: ObjectModel,
        walls: tuple[int, ...] | None = None,
        gap_max: float = 0.0,
        tries: int = 24,
        on_floor: bool = True,
        s: float | None = None,
        margin: float = 0.05,
    ) -> Placed | None:
        """Put `model` against one of `walls` where floor and wall span are free; None if no room."""
        lo, hi = model.extent()
        half = float(max(-lo[0], hi[0]))
        for _ in range(tries):
            wall = int(rng.choice(walls if walls is not None else range(4)))
            length = self.walls[wall].length
            if length < 2 * half + 0.02:
                continue
            at = s if s is not None else rng.uniform(half + 0.01, length - half - 0.01)
            gap = margin
            neighbours = [t for t in self.wall_taken[wall] if t[2] < 0.5]  # floor-standing spans
            if s is None and on_floor and neighbours and rng.random() < self.adjacency:
                # Rooms are packed: furniture often stands flush against its neighbour.
                n0, n1, _, _ = neighbours[int(rng.integers(len(neighbours)))]
                at = (
                    n1 + half + rng.uniform(0.0, 0.03)
                    if rng.random() < 0.5
                    else n0 - half - rng.uniform(0.0, 0.03)
                )
                gap = 0.0
            jitter = rng.normal(0.0, self.yaw_jitter) if model.mount_y is None else 0.0
            placed = self.against(model, wall, at, rng.uniform(0.0, gap_max), yaw_jitter=jitter)
            s0, s1 = self.walls[wall].span_of(placed)
            blo, bhi = placed.bounds()
            if not self.wall_free(wall, s0 - gap, s1 + gap, float(blo[2]), float(bhi[2])):
                continue
            # Doors and windows reach into the wall; only what stands on the floor must be inside.
            if on_floor and not (
                self.inside(placed.footprint(), margin=0.001) and self.floor_free(placed.footprint(gap))
            ):
                continue
            return placed
        return None

    def try_free(
        self,
        rng: np.random.Generator,
        model: ObjectModel,
        tries: int = 24,
        margin: float = 0.3,
        yaw: float | None = None,
    ) -> Placed | None:
        """Put `model` somewhere on the open floor, axis-aligned up to a small jitter."""
        for _ in range(tries):
            turn = yaw if yaw is not None else float(rng.integers(0, 4)) * np.pi / 2
            x = rng.uniform(0.3, self.width - 0.3)
            y = rng.uniform(0.3, self.depth - 0.3)
            placed = Placed(model, x, y, 0.0, turn + rng.normal(0.0, 2 * self.yaw_jitter))
            if self.inside(placed.footprint(), margin=0.001) and self.floor_free(placed.footprint(margin)):
                return placed
        return None


def fits(room: Room, placed: Placed, margin: float = 0.0, ignore: tuple[int, ...] = ()) -> bool:
    """Inside the room and clear of other footprints (grown by `margin`) and keep-out zones."""
    return room.inside(placed.footprint(), margin=0.001) and room.floor_free(
        placed.footprint(margin), ignore=ignore
    )


def place_with(
    parent: Placed,
    model: ObjectModel,
    local_xy: tuple[float, float],
    yaw: float = 0.0,
    z: float = 0.0,
) -> Placed:
    """Pose of `model` given in its parent's frame (a chair by a table, a sink in a counter)."""
    world = parent.to_world(np.array([[local_xy[0], local_xy[1], 0.0]]))[0]
    return Placed(model, float(world[0]), float(world[1]), z, parent.yaw + yaw)
