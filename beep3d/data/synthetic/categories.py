"""Raw annotation categories the generator uses, their nyu40 classes and their S3DIS classes.

The raw names are real ScanNet `raw_category` values with their real nyu40 ids, several per
benchmark class, so a reader's raw -> nyu40 mapping is exercised the way real data exercises it.
`scannet_label_tsv()` writes them in the column layout of `scannetv2-labels.combined.tsv`.
"""

from __future__ import annotations

from beep3d.classes import S3DIS_NAMES

NYU40_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

# raw_category -> (category, nyu40 id). Categories are ScanNet's cleaned-up names.
RAW_CATEGORIES: dict[str, tuple[str, int]] = {
    "wall": ("wall", 1),
    "floor": ("floor", 2),
    "ceiling": ("ceiling", 22),
    "cabinet": ("cabinet", 3),
    "kitchen cabinets": ("kitchen cabinet", 3),
    "file cabinet": ("file cabinet", 3),
    "bathroom cabinet": ("bathroom cabinet", 3),
    "bed": ("bed", 4),
    "chair": ("chair", 5),
    "office chair": ("office chair", 5),
    "armchair": ("armchair", 5),
    "couch": ("couch", 6),
    "sofa": ("couch", 6),
    "table": ("table", 7),
    "coffee table": ("coffee table", 7),
    "end table": ("end table", 7),
    "dining table": ("dining table", 7),
    "door": ("door", 8),
    "doors": ("door", 8),
    "closet door": ("closet door", 8),
    "window": ("window", 9),
    "windows": ("window", 9),
    "bookshelf": ("bookshelf", 10),
    "bookshelves": ("bookshelf", 10),
    "picture": ("picture", 11),
    "pictures": ("picture", 11),
    "poster": ("poster", 11),
    "counter": ("counter", 12),
    "kitchen counter": ("kitchen counter", 12),
    "bathroom counter": ("bathroom counter", 12),
    "desk": ("desk", 14),
    "curtain": ("curtain", 16),
    "curtains": ("curtain", 16),
    "refrigerator": ("refrigerator", 24),
    "mini fridge": ("mini fridge", 24),
    "shower curtain": ("shower curtain", 28),
    "toilet": ("toilet", 33),
    "sink": ("sink", 34),
    "bathtub": ("bathtub", 36),
    "trash can": ("trash can", 39),
    "recycling bin": ("recycling bin", 39),
    "ottoman": ("ottoman", 39),
    "bench": ("bench", 39),
    "tv stand": ("tv stand", 39),
    "radiator": ("radiator", 39),
    # Labelled, but not one of the 18 benchmark classes: non-object points for box supervision.
    "nightstand": ("nightstand", 32),
    "dresser": ("dresser", 17),
    "shelf": ("shelf", 15),
    "pillow": ("pillow", 18),
    "lamp": ("lamp", 35),
    "books": ("book", 23),
    "box": ("box", 29),
    "bag": ("bag", 37),
    "clothes": ("clothes", 21),
    "tv": ("tv", 25),
    "monitor": ("monitor", 40),
    "keyboard": ("keyboard", 40),
    "object": ("object", 40),
    "towel": ("towel", 27),
    "mirror": ("mirror", 19),
    "whiteboard": ("whiteboard", 30),
}

# nyu40 id -> eigen13 id/name and mpcat40 index/name: filled for completeness of the tsv layout.
_EIGEN13 = {1: 12, 2: 5, 3: 6, 4: 1, 5: 4, 6: 9, 7: 10, 8: 12, 9: 13, 10: 6, 11: 8, 12: 6, 14: 10,
            15: 6, 16: 13, 17: 6, 18: 7, 19: 7, 21: 7, 22: 3, 23: 2, 24: 6, 25: 11, 27: 7, 28: 7,
            29: 7, 30: 7, 32: 6, 33: 7, 34: 7, 35: 7, 36: 7, 37: 7, 39: 6, 40: 7}  # fmt: skip
_EIGEN13_NAMES = ("", "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture",
                  "sofa", "table", "tv", "wall", "window")  # fmt: skip
_MPCAT40 = {1: (1, "wall"), 2: (2, "floor"), 3: (7, "cabinet"), 4: (11, "bed"), 5: (3, "chair"),
            6: (10, "sofa"), 7: (5, "table"), 8: (4, "door"), 9: (9, "window"), 10: (31, "shelving"),
            11: (6, "picture"), 12: (26, "counter"), 14: (5, "table"), 15: (31, "shelving"),
            16: (12, "curtain"), 17: (13, "chest_of_drawers"), 18: (8, "cushion"), 19: (21, "mirror"),
            21: (38, "clothes"), 22: (17, "ceiling"), 23: (39, "objects"), 24: (37, "appliances"),
            25: (22, "tv_monitor"), 27: (20, "towel"), 28: (12, "curtain"), 29: (39, "objects"),
            30: (35, "board_panel"), 32: (13, "chest_of_drawers"), 33: (18, "toilet"), 34: (15, "sink"),
            35: (28, "lighting"), 36: (25, "bathtub"), 37: (39, "objects"), 39: (36, "furniture"),
            40: (39, "objects")}  # fmt: skip

TSV_HEADER = (
    "id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
    "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
    "wnsynsetkey", "mpcat40", "mpcat40index",
)  # fmt: skip

# S3DIS class of a nyu40 id; anything not listed is clutter (the S3DIS catch-all).
_S3DIS_OF_NYU40 = {
    1: "wall", 2: "floor", 22: "ceiling", 5: "chair", 6: "sofa", 7: "table", 14: "table",
    8: "door", 9: "window", 10: "bookcase", 11: "board", 30: "board",
}  # fmt: skip


def nyu40_id(raw_category: str) -> int:
    try:
        return RAW_CATEGORIES[raw_category][1]
    except KeyError:
        raise KeyError(f"raw category {raw_category!r} is not in the generator's label table") from None


def nyu40_name(nyu40: int) -> str:
    return NYU40_NAMES[nyu40 - 1]


def s3dis_class(nyu40: int | None) -> int:
    """S3DIS class index (beep3d.classes.S3DIS_NAMES) for a nyu40 id; None (unannotated) -> clutter."""
    name = _S3DIS_OF_NYU40.get(nyu40, "clutter") if nyu40 is not None else "clutter"
    return S3DIS_NAMES.index(name)


def scannet_label_tsv(counts: dict[str, int]) -> str:
    """`scannetv2-labels.combined.tsv` text for every raw category; `counts` = uses per raw name."""
    lines = ["\t".join(TSV_HEADER)]
    for row_id, (raw, (category, nyu40)) in enumerate(RAW_CATEGORIES.items(), start=1):
        eigen = _EIGEN13.get(nyu40, 7)
        mp_index, mp_name = _MPCAT40.get(nyu40, (40, "misc"))
        cells = [
            str(row_id), raw, category, str(counts.get(raw, 0)), str(nyu40), str(eigen), category,
            nyu40_name(nyu40), _EIGEN13_NAMES[eigen], "", "", "", "", "", "", mp_name, str(mp_index),
        ]  # fmt: skip
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"
