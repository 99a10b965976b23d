"""What every object builder returns, and the material colours the builders draw from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from beep3d.data.synthetic.primitives import Carve, Part, part_extent


@dataclass(frozen=True)
class Support:
    """A horizontal rectangle in the object's frame where small items may be put."""

    x0: float
    y0: float
    x1: float
    y1: float
    z: float
    clearance: float = 0.5  # metres of free height above it (a shelf under another shelf)
    kind: str = "top"  # "top" (anything), "books" (shelves), "pillow" (bed, sofa), "seat" (chairs)


@dataclass
class ObjectModel:
    """One annotatable item in its own frame (x width, y depth with the back at +y, z up, z=0 floor).

    `raw_category` None means the item exists in the scan but no annotator labelled it.
    `mount_y` is the local y that sits on the wall plane when the item is put against a wall:
    the back face by default; 0 for doors and windows, whose frame starts at the wall surface.
    """

    raw_category: str | None
    parts: list[Part]
    palette: list[np.ndarray]  # (3,) float RGB 0..255 per colour index used by the parts
    carves: list[Carve] = field(default_factory=list)
    supports: list[Support] = field(default_factory=list)
    mount_y: float | None = None
    texture: str = "plain"  # "plain" | "picture" (busy colours, for pictures and posters)
    kind: str = "object"  # "object" | "structure" (wall, floor, ceiling)

    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) corners of the axis-aligned bounds of all parts, object frame."""
        los, his = zip(*(part_extent(p) for p in self.parts), strict=True)
        return np.min(los, axis=0), np.max(his, axis=0)

    @property
    def back_y(self) -> float:
        return float(self.extent()[1][1]) if self.mount_y is None else self.mount_y


# Material -> (low RGB, high RGB) of a uniform draw; a second draw per part adds variation.
MATERIALS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "wood": ((110, 70, 35), (200, 150, 100)),
    "dark_wood": ((50, 30, 20), (110, 75, 50)),
    "laminate": ((180, 175, 165), (245, 240, 230)),
    "metal": ((100, 100, 105), (185, 185, 190)),
    "black": ((20, 20, 22), (60, 60, 65)),
    "fabric": ((40, 40, 40), (200, 190, 180)),
    "bedding": ((150, 150, 150), (250, 250, 245)),
    "ceramic": ((215, 215, 210), (250, 250, 248)),
    "paint": ((190, 185, 175), (245, 242, 235)),
    "floor": ((90, 70, 55), (200, 185, 165)),
    "glass": ((120, 140, 150), (190, 205, 215)),
    "bright": ((30, 30, 30), (240, 230, 220)),
    "curtain": ((60, 50, 50), (235, 225, 210)),
}


def material(rng: np.random.Generator, name: str) -> np.ndarray:
    lo, hi = MATERIALS[name]
    return rng.uniform(lo, hi)


def palette(rng: np.random.Generator, *names: str) -> list[np.ndarray]:
    return [material(rng, n) for n in names]
