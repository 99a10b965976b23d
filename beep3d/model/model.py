"""The assembled model: sparse UNet -> superpoint pooling -> query decoder, plus inference.

Input batch (built by the data loader; all tensors on the model's device):
    coords        (V, 4) int32    [batch index, x, y, z] voxel coordinates, non-negative
    feats         (V, 6) float32  per-voxel mean of point features: rgb in [-1, 1], xyz in metres
    spatial_shape list[int] of 3  voxel grid size, > every coordinate (the model pads it up to a
                                  multiple of 2^(levels - 1) so no border voxel is lost)
    batch_size    int B
    point_voxel   (P,) int64      each point's row in coords (all scenes' points concatenated)
    point_offsets (B + 1,) int64  scene b's points are rows point_offsets[b]:point_offsets[b + 1]
    superpoint    (P,) int64      each point's GLOBAL superpoint id (scene offsets applied)
    sp_offsets    (B + 1,) int64  scene b's superpoints are ids sp_offsets[b]:sp_offsets[b + 1]
    sp_xyz        (S, 3) float32  superpoint centroids (metres, same frame as the xyz features)
    scene_min, scene_max (B, 3) float32  scene extents, to normalise positions to [0, 1]

Output of `BoxInstanceModel.forward` (Q_b queries and S_b superpoints in scene b; lists have one
entry per scene):
    class_logits  list of (Q_b, C + 1)  last column = no object
    mask_logits   list of (Q_b, S_b)    over the scene's superpoints (local ids: global - sp_offsets[b])
    centers       list of (Q_b, 3)      refined reference points = predicted box centres, in metres
    sizes         list of (Q_b, 3)      predicted box sizes (max - min), in metres
    score_logits  list of (Q_b,)        mask-quality logit
    query_content list of (Q_b, d)      content vectors used by the heads (for consistency losses)
    aux           list (n_layers - 1, first layer first) of dicts with the six keys above
    sp_feats      (S, d)                superpoint mask features (mask_logits = content . sp_feats)
    voxel_feats   (V, widths[0])        backbone output per voxel
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from beep3d.backend import import_spconv
from beep3d.model.decoder import QueryDecoder, knn_pool
from beep3d.model.unet import SparseUNet, padded_spatial_shape
from beep3d.precision import fp32_region

if TYPE_CHECKING:
    from spconv.pytorch import ConvAlgo

spconv = import_spconv()

HEAD_KEYS = ("class_logits", "mask_logits", "centers", "sizes", "score_logits", "query_content")
BATCH_KEYS = (
    "coords", "feats", "spatial_shape", "batch_size", "point_voxel", "point_offsets",
    "superpoint", "sp_offsets", "sp_xyz", "scene_min", "scene_max",
)  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Model sizes. The defaults are the small CPU model; `maft()` is the published MAFT size."""

    in_channels: int = 6  # per-voxel input: rgb (3, in [-1, 1]) + xyz (3, metres)
    widths: tuple[int, ...] = (16, 32, 48, 64)  # UNet channels per level, finest first
    blocks_per_level: int = 1  # residual blocks per UNet level, down and up
    d_model: int = 64  # query / attention width
    n_heads: int = 4  # attention heads; must divide d_model
    n_layers: int = 3  # decoder layers; each one is supervised (the last is the output)
    n_queries: int = 50  # learned queries per scene
    ffn_dim: int = 128  # decoder feed-forward hidden width
    dropout: float = 0.0  # dropout in the decoder (MAFT uses none)
    num_classes: int = 18  # object classes C; the class head adds one "no object" output
    rpe_hidden: int = 16  # hidden width of the relative-position bias MLP (memory ~ Q x S x this)
    query_pool_k: int = 8  # superpoints averaged to give an external query its content
    # *Ours*: a box query (one given with its box's size) pools its content from the superpoints
    # inside its box, attends only to them and predicts its mask only over them; False: content
    # from the query_pool_k superpoints nearest to its centre, attention and mask anywhere.
    box_query_inside: bool = False
    masked_attention: bool = False  # cross-attention only inside the previous layer's mask (Mask2Former)
    query_init: str = (
        "learned"  # learned (N_Q learned reference points) | fps (superpoints by farthest point sampling)
    )

    def __post_init__(self) -> None:
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"model.widths must be a non-empty list of positive ints, got {self.widths}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})"
            )
        for name in (
            "in_channels",
            "blocks_per_level",
            "n_layers",
            "n_queries",
            "num_classes",
            "query_pool_k",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.query_init not in ("learned", "fps"):
            raise ValueError(f"model.query_init must be 'learned' or 'fps', got {self.query_init!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def small(cls, num_classes: int = 18) -> ModelConfig:
        """Trains on a 2-core CPU."""
        return cls(num_classes=num_classes)

    @classmethod
    def maft(cls, num_classes: int = 18) -> ModelConfig:
        """MAFT's published size (ICCV 2023): 32-64-96-128-160, 2 blocks, 400 queries, 6 x d256 x 8 heads."""
        return cls(
            widths=(32, 64, 96, 128, 160),
            blocks_per_level=2,
            d_model=256,
            n_heads=8,
            n_layers=6,
            n_queries=400,
            ffn_dim=1024,
            num_classes=num_classes,
        )


class Encoded(NamedTuple):
    """Backbone output of a batch, ready for `BoxInstanceModel.decode`."""

    voxel_feats: torch.Tensor  # (V, widths[0])
    memory: torch.Tensor  # (S, d) attention memory per superpoint
    mask_feats: torch.Tensor  # (S, d) superpoint mask features
    sp_xyz: torch.Tensor  # (S, 3) superpoint centroids, metres
    scenes: list[slice]  # scene b's superpoints are rows scenes[b]
    lo: torch.Tensor  # (B, 3) scene minimum, metres
    extent: torch.Tensor  # (B, 3) scene size, metres (> 0)


@dataclass
class SceneQueries:
    """External queries for one scene, e.g. one per ground-truth box (the teacher's box queries).

    pos: (Q', 3) reference points normalised to the scene extent ([0, 1]^3).
    content: (Q', d) content vectors, or None to pool them from the k = query_pool_k superpoints
        nearest to each point (`knn_pool` on the decoder memory, distances in metres), or with
        `box_query_inside` and a half_size, from the superpoints inside the box.
    half_size: (Q', 3) half the box's extent, normalised like pos: the query stands for the box
        pos +- half_size (used with `ModelConfig.box_query_inside`); None = a point query.
    """

    pos: torch.Tensor
    content: torch.Tensor | None = None
    half_size: torch.Tensor | None = None


def pool_superpoints(
    voxel_feats: torch.Tensor, point_voxel: torch.Tensor, superpoint: torch.Tensor, n_superpoints: int
) -> torch.Tensor:
    """Mean of point features per superpoint, a point's feature being its voxel's.

    voxel_feats (V, C), point_voxel (P,), superpoint (P,) in [0, S) -> (S, C); an empty
    superpoint gets zeros.
    """
    point_feats = voxel_feats[point_voxel]  # (P, C)
    sums = voxel_feats.new_zeros(n_superpoints, voxel_feats.shape[1]).index_add_(0, superpoint, point_feats)
    counts = torch.bincount(superpoint, minlength=n_superpoints).clamp(min=1)  # (S,)
    return sums / counts[:, None].to(sums.dtype)


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """List of (N_b, ...) -> (B, N_max, ...) zero-padded and (B, N_max) bool, True = padding.

    The mask is None when no row is padded (one scene, or equal sizes): masking nothing would
    still cost attention a pass over its (B, H, Q, S) scores, forward and backward.
    """
    padded = nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lengths = [len(r) for r in rows]
    if min(lengths) == padded.shape[1]:
        return padded, None
    pad = (
        torch.arange(padded.shape[1], device=padded.device)[None]
        >= torch.tensor(lengths, device=padded.device)[:, None]
    )
    return padded, pad


def _check_batch(batch: dict[str, Any]) -> None:
    """Fail loudly on a malformed batch: wrong dtypes or ids pointing across scenes."""
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise KeyError(f"model batch lacks {missing}")
    coords, feats = batch["coords"], batch["feats"]
    if coords.dtype != torch.int32 or coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"batch['coords'] must be (V, 4) int32, got {tuple(coords.shape)} {coords.dtype}")
    if feats.dtype != torch.float32 or feats.shape[0] != coords.shape[0]:
        # spconv gave wrong results in fp64 and has no CPU fp16 path: fp32 only.
        raise ValueError(
            f"batch['feats'] must be (V, C) float32 with V = {coords.shape[0]}, "
            f"got {tuple(feats.shape)} {feats.dtype}"
        )
    b = batch["batch_size"]
    shape = torch.tensor(list(batch["spatial_shape"]), device=coords.device)
    if len(coords) == 0 or bool(
        (coords < 0).any() | (coords[:, 0] >= b).any() | (coords[:, 1:] >= shape).any()
    ):
        raise ValueError(
            f"batch['coords'] must be non-empty with 0 <= batch index < {b} and "
            f"0 <= xyz < spatial_shape {shape.tolist()}"
        )
    if len(batch["point_offsets"]) != b + 1 or len(batch["sp_offsets"]) != b + 1:
        raise ValueError(f"point_offsets and sp_offsets must have batch_size + 1 = {b + 1} entries")
    n_sp = int(batch["sp_offsets"][-1])
    if (
        batch["sp_xyz"].shape != (n_sp, 3)
        or batch["scene_min"].shape != (b, 3)
        or batch["scene_max"].shape != (b, 3)
    ):
        raise ValueError(
            f"need sp_xyz ({n_sp}, 3) and scene_min/scene_max ({b}, 3), got {tuple(batch['sp_xyz'].shape)}, "
            f"{tuple(batch['scene_min'].shape)}, {tuple(batch['scene_max'].shape)}"
        )
    sp_counts = batch["sp_offsets"].diff()
    if bool((sp_counts < 1).any()):
        raise ValueError(f"every scene needs >= 1 superpoint, got counts {sp_counts.tolist()}")
    n_points = batch["point_offsets"].diff()
    point_scene = torch.repeat_interleave(torch.arange(b, device=n_points.device), n_points)  # (P,)
    sp_scene = torch.searchsorted(batch["sp_offsets"], batch["superpoint"], right=True) - 1  # (P,)
    if point_scene.shape != batch["superpoint"].shape or bool((sp_scene != point_scene).any()):
        raise ValueError(
            "batch['superpoint'] must hold global ids inside each point's own scene range "
            "(sp_offsets[b] <= id < sp_offsets[b + 1]) and match point_offsets"
        )
    point_voxel = batch["point_voxel"]
    if point_voxel.shape != point_scene.shape or bool(
        (point_voxel < 0).any() | (point_voxel >= len(coords)).any()
    ):
        raise ValueError(f"batch['point_voxel'] must be (P,) rows of coords in [0, {len(coords)})")
    if bool((coords[point_voxel, 0].long() != point_scene).any()):
        raise ValueError("batch['point_voxel'] maps a point to a voxel of another scene (coords[:, 0])")


class BoxInstanceModel(nn.Module):
    """Sparse UNet + superpoint pooling + query decoder. Knows nothing of files or tracking."""

    def __init__(self, cfg: ModelConfig, algo: ConvAlgo):
        super().__init__()
        self.cfg = cfg
        self.backbone = SparseUNet(cfg.in_channels, cfg.widths, cfg.blocks_per_level, algo)
        self.decoder = QueryDecoder(
            in_channels=cfg.widths[0],
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            n_layers=cfg.n_layers,
            n_queries=cfg.n_queries,
            ffn_dim=cfg.ffn_dim,
            dropout=cfg.dropout,
            num_classes=cfg.num_classes,
            rpe_hidden=cfg.rpe_hidden,
            masked_attention=cfg.masked_attention,
        )

    def forward(
        self,
        batch: dict[str, Any],
        queries: list[SceneQueries] | None = None,
        include_learned: bool = False,
    ) -> dict[str, Any]:
        """Predictions for every scene (see the module docstring for the output).

        queries: None -> the N_Q learned queries in every scene. Otherwise one `SceneQueries` per
            scene; they replace the learned queries, or with include_learned=True follow them
            (rows 0..N_Q-1 learned, then the external ones in the given order).
        """
        return self.decode(self.encode(batch), queries, include_learned)

    def encode(self, batch: dict[str, Any]) -> Encoded:
        """Backbone and superpoint pooling: everything before the queries, computed once.

        Several query sets can then be decoded against the same features (`decode`), each in its
        own pass so that they cannot attend to one another.
        """
        _check_batch(batch)
        n_scenes = batch["batch_size"]
        grid = padded_spatial_shape(list(batch["spatial_shape"]), len(self.cfg.widths))
        x = spconv.SparseConvTensor(batch["feats"], batch["coords"], grid, n_scenes)
        # fp32 even under bf16 autocast: spconv would cast to fp16 there (beep3d/precision.py).
        with fp32_region(batch["feats"].device.type):
            voxel_feats = self.backbone(x)  # (V, w0)
        sp_offsets = batch["sp_offsets"].tolist()
        sp_raw = pool_superpoints(voxel_feats, batch["point_voxel"], batch["superpoint"], sp_offsets[-1])
        memory, mask_feats = self.decoder.project(sp_raw)  # (S, d), (S, d)
        lo, hi = batch["scene_min"], batch["scene_max"]  # (B, 3)
        extent = (hi - lo).clamp(min=1e-6)
        scenes = [slice(sp_offsets[b], sp_offsets[b + 1]) for b in range(n_scenes)]
        return Encoded(voxel_feats, memory, mask_feats, batch["sp_xyz"], scenes, lo, extent)

    def decode(
        self, enc: Encoded, queries: list[SceneQueries] | None = None, include_learned: bool = False
    ) -> dict[str, Any]:
        """The query decoder over encoded scenes; `queries` and the output as in `forward`."""
        scenes, lo, extent = enc.scenes, enc.lo, enc.extent
        # Superpoint centroids normalised to the scene box, like the reference points: (S_b, 3).
        sp_pos = [(enc.sp_xyz[s] - lo[b]) / extent[b] for b, s in enumerate(scenes)]
        regions = self._regions(queries, include_learned, sp_pos)  # per scene (Q_b, S_b) bool or None
        content, ref = self._queries(
            queries, include_learned, enc.memory, enc.sp_xyz, scenes, lo, extent, regions
        )

        content_p, query_pad = _pad(content)  # (B, Q_max, d), (B, Q_max) or None
        memory_p, memory_pad = _pad([enc.memory[s] for s in scenes])  # (B, S_max, d), (B, S_max) or None
        region_p = None
        if regions is not None:  # (B, Q_max, S_max); padding rows and columns are outside
            region_p = content_p.new_zeros(content_p.shape[:2] + memory_p.shape[1:2], dtype=torch.bool)
            for b, r in enumerate(regions):
                region_p[b, : r.shape[0], : r.shape[1]] = r
        layers = self.decoder(
            content_p, _pad(ref)[0], query_pad,
            memory_p, _pad([enc.mask_feats[s] for s in scenes])[0], _pad(sp_pos)[0], memory_pad,
            region_p,
        )  # fmt: skip
        n_q = [len(c) for c in content]
        n_s = [s.stop - s.start for s in scenes]
        per_layer = [self._unpad(out, n_q, n_s, lo, extent) for out in layers]
        return {
            **per_layer[-1],
            "aux": per_layer[:-1],
            "sp_feats": enc.mask_feats,
            "voxel_feats": enc.voxel_feats,
        }

    def _regions(
        self, queries: list[SceneQueries] | None, include_learned: bool, sp_pos: list[torch.Tensor]
    ) -> list[torch.Tensor] | None:
        """Per scene (Q_b, S_b) bool, the superpoints each query may look at (`box_query_inside`):
        for a box query those whose centroid lies in its box (all of them if none does), for
        every other query all; None when no query of the batch is a box query."""
        if not self.cfg.box_query_inside or queries is None or all(q.half_size is None for q in queries):
            return None
        n_learned = self.cfg.n_queries if include_learned else 0
        regions = []
        for q, pos in zip(queries, sp_pos, strict=True):
            region = torch.ones(n_learned + len(q.pos), len(pos), dtype=torch.bool, device=pos.device)
            if q.half_size is not None:
                inside = ((pos[None] - q.pos[:, None]).abs() <= q.half_size[:, None] + 1e-6).all(dim=-1)
                inside[~inside.any(dim=1)] = True  # an empty box looks everywhere
                region[n_learned:] = inside
            regions.append(region)
        return regions

    def _queries(
        self,
        queries: list[SceneQueries] | None,
        include_learned: bool,
        memory: torch.Tensor,
        sp_xyz: torch.Tensor,
        scenes: list[slice],
        lo: torch.Tensor,
        extent: torch.Tensor,
        regions: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per scene (content (Q_b, d), reference points (Q_b, 3)): the model's own queries
        (`query_init`), external ones, or both."""
        own = [self._own_queries(memory[s], sp_xyz[s], lo[b], extent[b]) for b, s in enumerate(scenes)]
        if queries is None:
            return [c for c, _ in own], [r for _, r in own]
        if len(queries) != len(scenes):
            raise ValueError(f"got external queries for {len(queries)} scenes, the batch has {len(scenes)}")
        contents, refs = [], []
        for b, (q, s) in enumerate(zip(queries, scenes, strict=True)):
            learned_content, learned_ref = own[b]
            if q.pos.ndim != 2 or q.pos.shape[1] != 3:
                raise ValueError(f"scene {b}: external query pos must be (Q', 3), got {tuple(q.pos.shape)}")
            content = q.content
            if content is None and regions is not None and q.half_size is not None:
                inside = regions[b][len(regions[b]) - len(q.pos) :].to(memory.dtype)  # (Q', S_b)
                content = (inside @ memory[s]) / inside.sum(dim=1, keepdim=True)  # mean inside the box
            elif content is None:
                metres = lo[b] + q.pos * extent[b]  # (Q', 3)
                content = knn_pool(memory[s], sp_xyz[s], metres, self.cfg.query_pool_k)
            elif content.shape != (len(q.pos), self.cfg.d_model):
                raise ValueError(
                    f"scene {b}: external query content must be ({len(q.pos)}, "
                    f"{self.cfg.d_model}), got {tuple(content.shape)}"
                )
            if include_learned:
                content = torch.cat([learned_content, content])
                q_ref = torch.cat([learned_ref, q.pos])
            else:
                q_ref = q.pos
            contents.append(content)
            refs.append(q_ref)
        return contents, refs

    def _own_queries(
        self, memory: torch.Tensor, sp_xyz: torch.Tensor, lo: torch.Tensor, extent: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One scene's (content (Q, d), reference points (Q, 3) in [0, 1]) by `query_init`:
        `learned` -> the N_Q learned queries; `fps` -> reference points at N_Q superpoint centroids
        spread by farthest point sampling (all of them in a scene with fewer), content pooled
        from the superpoints nearest to each (as for box queries) plus a learned per-slot vector."""
        content, ref = self.decoder.learned_queries()
        if self.cfg.query_init == "learned":
            return content, ref
        picked = farthest_point_sample(sp_xyz, self.cfg.n_queries)  # (Q,)
        pooled = knn_pool(memory, sp_xyz, sp_xyz[picked], self.cfg.query_pool_k)  # (Q, d)
        return pooled + content[: len(picked)], ((sp_xyz[picked] - lo) / extent).clamp(0.0, 1.0)

    @staticmethod
    def _unpad(
        out: dict[str, torch.Tensor], n_q: list[int], n_s: list[int], lo: torch.Tensor, extent: torch.Tensor
    ) -> dict[str, list[torch.Tensor]]:
        """Padded (B, Q_max, ...) layer predictions -> per-scene lists; centres to metres."""
        result: dict[str, list[torch.Tensor]] = {k: [] for k in HEAD_KEYS}
        for b, (q, s) in enumerate(zip(n_q, n_s, strict=True)):
            result["class_logits"].append(out["class_logits"][b, :q])
            result["mask_logits"].append(out["mask_logits"][b, :q, :s])
            result["centers"].append(lo[b] + out["ref"][b, :q] * extent[b])
            result["sizes"].append(out["size"][b, :q] * extent[b])
            result["score_logits"].append(out["score_logits"][b, :q])
            result["query_content"].append(out["query_content"][b, :q])
        return result


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of min(n, len(xyz)) points spread by farthest point sampling, deterministic: it
    starts from the point nearest to the centroid and ties go to the lowest index."""
    n = min(n, len(xyz))
    picked = torch.empty(n, dtype=torch.int64, device=xyz.device)
    if n == 0:
        return picked
    current = int((xyz - xyz.mean(dim=0)).square().sum(dim=1).argmin())
    dist = torch.full((len(xyz),), torch.inf, dtype=xyz.dtype, device=xyz.device)
    for i in range(n):
        picked[i] = current
        dist = torch.minimum(dist, (xyz - xyz[current]).square().sum(dim=1))
        current = int(dist.argmax())
    return picked


class Instances(NamedTuple):
    """Predicted instances of one scene, best first."""

    masks: torch.Tensor  # (K, S_b) bool over superpoints
    classes: torch.Tensor  # (K,) int64 class index in 0..C-1
    scores: torch.Tensor  # (K,) float32


@torch.no_grad()
def predict_instances(
    outputs: dict[str, Any],
    topk: int,
    score_threshold: float,
    sp_sizes: list[torch.Tensor] | None = None,
    min_points: int = 0,
    nms_iou: float = 0.0,
    mask_threshold: float = 0.5,
) -> list[Instances]:
    """Final instances per scene from the last layer's predictions.

    Every (query, class) pair is a candidate (a query may stand for several classes); the top-k
    by class probability are kept, their mask is sigmoid(mask logit) > mask_threshold, and their score is
        class prob x sigmoid(score logit) x mean mask probability inside the mask.
    Candidates with an empty mask, a score <= score_threshold or (when sp_sizes, the (S_b,)
    point counts per superpoint, are given) fewer than min_points points are dropped.
    nms_iou > 0: a candidate whose mask overlaps a higher-scoring kept one of the same class with
    IoU > nms_iou is dropped (`mask_nms`); 0 keeps every candidate.
    """
    result = []
    for b, (cls_logits, mask_logits, score_logits) in enumerate(
        zip(outputs["class_logits"], outputs["mask_logits"], outputs["score_logits"], strict=True)
    ):
        n_classes = cls_logits.shape[1] - 1
        probs = cls_logits.softmax(-1)[:, :n_classes]  # (Q, C) without "no object"
        k = min(topk, probs.numel())
        top_prob, flat = probs.flatten().topk(k)  # (K,)
        query, classes = flat // n_classes, flat % n_classes
        mask_prob = mask_logits[query].sigmoid()  # (K, S_b)
        masks = mask_prob > mask_threshold
        n_in = masks.sum(1)
        mask_score = (mask_prob * masks).sum(1) / n_in.clamp(min=1)
        scores = top_prob * score_logits[query].sigmoid() * mask_score
        keep = (n_in > 0) & (scores > score_threshold)
        if sp_sizes is not None:
            keep &= (masks * sp_sizes[b]).sum(1) >= min_points
        order = scores[keep].argsort(descending=True)
        masks, classes, scores = masks[keep][order], classes[keep][order], scores[keep][order]
        if nms_iou > 0:
            weights = sp_sizes[b] if sp_sizes is not None else torch.ones(masks.shape[1], device=masks.device)
            survive = mask_nms(masks, classes, weights, nms_iou)
            masks, classes, scores = masks[survive], classes[survive], scores[survive]
        result.append(Instances(masks, classes, scores))
    return result


def mask_nms(masks: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy same-class non-maximum suppression over masks sorted by descending score.

    masks (K, S) bool, classes (K,), weights (S,) the points per superpoint (IoU counts points,
    as the ScanNet evaluator does). Returns the (K,) bool rows that survive: a row is dropped when
    a surviving higher-ranked row of its class overlaps it with IoU > iou.

    Why: after a short schedule one-to-one matching still leaves several queries on one object,
    and the evaluator counts every duplicate after the first as a false positive.
    """
    m, w = masks.double(), weights.double()  # double: point counts of large scans stay exact
    area = m @ w  # (K,)
    inter = (m * w) @ m.T  # (K, K)
    overlap = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-9)
    # duplicate[k, j]: row j (ranked below k) repeats row k. On the CPU: the greedy loop reads one
    # flag per row, which on a GPU would be a device sync each; K <= topk rows.
    duplicate = ((overlap > iou) & (classes[:, None] == classes[None, :])).triu(1).cpu()
    survive = torch.ones(len(masks), dtype=torch.bool)
    for k in range(len(masks)):
        if survive[k]:  # only a surviving row suppresses
            survive &= ~duplicate[k]
    return survive.to(masks.device)
