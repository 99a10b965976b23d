"""Query decoder (MAFT style): position + content queries attend to superpoint features.

Every query carries a 3D reference point r in [0, 1]^3 (normalised to the scene's extent) and a
content vector. A layer runs self-attention among the queries, cross-attention from the queries to
the scene's superpoint features, and an FFN; the heads then predict a class, a mask over
superpoints, a mask-quality score, the box size and a centre offset that refines r for the next
layer (r is the predicted box centre). With masked attention (Mask2Former), a query's
cross-attention only reaches the superpoints of the mask it predicted before the layer.

Relative position encoding (our choice): an additive, per-head attention bias
    bias[h, q, s] = MLP(r_q - p_s)[h]
where p_s is the superpoint centroid normalised like r. It is a bias (not a key/value offset)
because it only needs a (Q, S, hidden) intermediate, and its first layer is linear, so it is
evaluated as (W r_q + b) - W p_s without ever building the (Q, S, 3) differences.

Batching: scenes have different numbers of superpoints (and, with external queries, of queries),
so queries and superpoints are padded to the batch maximum and masked in attention. Masked
scores are set to the most negative finite float (not -inf) so that a fully padded row (a scene
without external queries) gives a finite uniform softmax: with -inf it would be NaN, and although
nobody reads that row, `0 * NaN` in the backward pass would turn the shared weights' gradients NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """logit(x) with x clamped to [eps, 1 - eps], so refined points stay strictly inside the scene."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def fourier_embed(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """(..., 3) in [0, 1] -> (..., 6 n_freqs) sines and cosines at octave frequencies."""
    freqs = math.pi * 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)  # (F,)
    angles = (x[..., None] * freqs).flatten(-2)  # (..., 3 F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def knn_pool(features: torch.Tensor, positions: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the features of the k superpoints nearest to each point (one scene).

    Args:
        features: (S, d) superpoint features.
        positions: (S, 3) superpoint centroids, in the same frame and units as `points`.
        points: (Q, 3) where to pool (e.g. box centres).
        k: neighbours per point; min(k, S) are used.
    Returns: (Q, d).
    """
    if features.shape[0] == 0:
        raise ValueError("knn_pool: the scene has no superpoints to pool from")
    k = min(k, features.shape[0])
    dist = torch.cdist(points, positions)  # (Q, S)
    nearest = dist.topk(k, dim=1, largest=False).indices  # (Q, k)
    return features[nearest].mean(dim=1)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with an optional additive bias and key padding mask."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, H, N, dh)

    def forward(
        self,
        query: torch.Tensor,  # (B, Q, d)
        key: torch.Tensor,  # (B, S, d)
        value: torch.Tensor,  # (B, S, d)
        bias: torch.Tensor | None = None,  # (B, H, Q, S), added to the scores
        key_pad: torch.Tensor | None = None,  # (B, S) bool, True = padding, never attended
        blocked: torch.Tensor | None = None,  # (B, Q, S) bool, True = this query ignores this key
    ) -> torch.Tensor:
        q, k, v = self._heads(self.q(query)), self._heads(self.k(key)), self._heads(self.v(value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, Q, S)
        if bias is not None:
            scores = scores + bias
        if key_pad is not None:
            scores = scores.masked_fill(key_pad[:, None, None, :], torch.finfo(scores.dtype).min)
        if blocked is not None:
            scores = scores.masked_fill(blocked[:, None], torch.finfo(scores.dtype).min)
        attn = self.drop(scores.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).flatten(2)  # (B, Q, d)
        return self.o(out)


class RelativePositionBias(nn.Module):
    """bias[b, h, q, s] = fc2(relu(fc1(ref[b, q] - pos[b, s])))[h]; positions normalised to [0, 1]."""

    def __init__(self, n_heads: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, n_heads)

    def forward(self, ref: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # ref (B, Q, 3), pos (B, S, 3); fc1 is affine, so fc1(r - p) = fc1(r) + W (-p). Adding the
        # negated (B, S, hidden) term rather than subtracting spares backward a negation of the
        # (B, Q, S, hidden) gradient (float negation is exact: the same numbers either way).
        hidden = self.fc1(ref)[:, :, None] + F.linear(-pos, self.fc1.weight)[:, None]  # (B, Q, S, hidden)
        # In place: the sum is a temporary no backward needs, and it is the largest tensor here.
        return self.fc2(hidden.relu_()).permute(0, 3, 1, 2)  # (B, H, Q, S)


class DecoderLayer(nn.Module):
    """Self-attention, position-biased cross-attention, FFN; post-norm residuals."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float, rpe_hidden: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.rpe = RelativePositionBias(n_heads, rpe_hidden)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
        )
        self.norms = nn.ModuleList([nn.LayerNorm(d_model) for _ in range(3)])
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,  # (B, Q, d) content
        x_pos: torch.Tensor,  # (B, Q, d) embedding of the reference points
        ref: torch.Tensor,  # (B, Q, 3) reference points in [0, 1]
        query_pad: torch.Tensor | None,  # (B, Q) bool, True = padding; None = no padding
        memory: torch.Tensor,  # (B, S, d) superpoint features
        memory_pos: torch.Tensor,  # (B, S, 3) superpoint centroids in [0, 1]
        memory_pad: torch.Tensor | None,  # (B, S) bool, True = padding; None = no padding
        blocked: torch.Tensor | None = None,  # (B, Q, S) bool, masked attention (see QueryDecoder)
    ) -> torch.Tensor:
        q = x + x_pos
        x = self.norms[0](x + self.drop(self.self_attn(q, q, x, key_pad=query_pad)))
        bias = self.rpe(ref, memory_pos)
        x = self.norms[1](
            x + self.drop(self.cross_attn(x + x_pos, memory, memory, bias, memory_pad, blocked))
        )
        return self.norms[2](x + self.drop(self.ffn(x)))


@torch.no_grad()
def attention_blocks(
    mask_logits: torch.Tensor | None, memory_pad: torch.Tensor | None, region: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Where each query must not look: (B, Q, S) bool, True = blocked; None = nowhere.

    mask_logits: (B, Q, S) with masked attention, a query looks only inside its predicted mask
    (sigmoid > 0.5); None without. region: (B, Q, S) bool, True where a query may look at all
    (a box query's box); None = everywhere. A query left with nothing to look at (over the real,
    unpadded superpoints) looks at its whole region rather than at nothing.
    """
    if mask_logits is None and region is None:
        return None
    pad = None if memory_pad is None else memory_pad[:, None, :]  # (B, 1, S)
    outside = None if region is None else (~region if pad is None else ~region | pad)  # (B, Q, S)
    blocked = mask_logits < 0 if mask_logits is not None else torch.zeros_like(outside)  # sigmoid < 0.5
    if outside is not None:
        blocked = blocked | outside
    elif pad is not None:
        blocked = blocked | pad
    empty = blocked.all(dim=-1, keepdim=True)  # (B, Q, 1)
    return blocked & ~empty if outside is None else torch.where(empty, outside, blocked)


# Mask logit of a superpoint outside a box query's region: sigmoid(-12) ~ 6e-6, "surely not".
OUTSIDE_REGION_LOGIT = -12.0


class QueryDecoder(nn.Module):
    """Learned queries, decoder layers and the prediction heads (shared by all layers).

    Args:
        in_channels: superpoint feature width from the backbone.
        d_model, n_heads, n_layers, ffn_dim, dropout: transformer sizes.
        n_queries: number of learned queries.
        num_classes: C object classes; the class head has C + 1 outputs (last = no object).
        rpe_hidden: hidden width of the relative-position bias MLP.
        masked_attention: each query's cross-attention sees only the superpoints inside the mask
            it predicted before the layer (Mask2Former), or every superpoint when that mask is empty.
        pos_freqs: octaves of the Fourier embedding of reference points.
    """

    def __init__(
        self,
        in_channels: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        n_queries: int,
        ffn_dim: int,
        dropout: float,
        num_classes: int,
        rpe_hidden: int,
        masked_attention: bool = False,
        pos_freqs: int = 6,
    ):
        super().__init__()
        self.pos_freqs = pos_freqs
        self.masked_attention = masked_attention
        # Superpoint features -> attention memory (d); the mask features are a linear map of it.
        self.input_proj = nn.Sequential(nn.Linear(in_channels, d_model), nn.LayerNorm(d_model), nn.ReLU())
        self.mask_proj = nn.Linear(d_model, d_model)
        self.query_content = nn.Parameter(torch.randn(n_queries, d_model))  # (N_Q, d)
        # Learned reference points start spread uniformly over the scene box (in logit space).
        self.query_ref_logit = nn.Parameter(inverse_sigmoid(torch.rand(n_queries, 3)))  # (N_Q, 3)
        self.pos_embed = nn.Sequential(
            nn.Linear(6 * pos_freqs, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, d_model)
        )
        self.layers = nn.ModuleList(
            [DecoderLayer(d_model, n_heads, ffn_dim, dropout, rpe_hidden) for _ in range(n_layers)]
        )
        self.head_norm = nn.LayerNorm(d_model)
        self.class_head = nn.Linear(d_model, num_classes + 1)
        self.score_head = nn.Linear(d_model, 1)
        self.center_head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, 3)
        )
        self.size_head = nn.Linear(d_model, 3)
        # Box sizes start at about 0.3 of the scene extent, the order of a piece of furniture.
        nn.init.constant_(self.size_head.bias, -0.85)

    def learned_queries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(content (N_Q, d), reference points (N_Q, 3) in [0, 1])."""
        return self.query_content, self.query_ref_logit.sigmoid()

    def project(self, sp_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone superpoint features (S, C_in) -> (memory (S, d), mask features (S, d))."""
        memory = self.input_proj(sp_feats)
        return memory, self.mask_proj(memory)

    @staticmethod
    def _mask_logits(content: torch.Tensor, mask_feats: torch.Tensor) -> torch.Tensor:
        """(B, Q, d) normalised queries (head_norm) . (B, S, d) mask features -> (B, Q, S) logits."""
        return content @ mask_feats.transpose(1, 2)

    def _heads(self, x: torch.Tensor, ref: torch.Tensor, mask_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        content = self.head_norm(x)  # (B, Q, d)
        # Refine in logit space: the offset is unbounded, the new point stays inside (0, 1).
        new_ref = (inverse_sigmoid(ref) + self.center_head(content)).sigmoid()  # (B, Q, 3)
        return {
            "class_logits": self.class_head(content),  # (B, Q, C + 1)
            "mask_logits": self._mask_logits(content, mask_feats),  # (B, Q, S)
            "ref": new_ref,  # the box centre
            "size": self.size_head(content).sigmoid(),  # (B, Q, 3) box size, fraction of the scene extent
            "score_logits": self.score_head(content).squeeze(-1),  # (B, Q)
            "query_content": content,  # (B, Q, d)
        }

    def forward(
        self,
        content: torch.Tensor,  # (B, Q, d)
        ref: torch.Tensor,  # (B, Q, 3) in [0, 1]
        query_pad: torch.Tensor | None,  # (B, Q) bool, True = padding; None = no padding
        memory: torch.Tensor,  # (B, S, d)
        mask_feats: torch.Tensor,  # (B, S, d)
        memory_pos: torch.Tensor,  # (B, S, 3) in [0, 1]
        memory_pad: torch.Tensor | None,  # (B, S) bool, True = padding; None = no padding
        region: torch.Tensor | None = None,  # (B, Q, S) bool, where each query may look; None = anywhere
    ) -> list[dict[str, torch.Tensor]]:
        """One dict of padded predictions per layer, first layer first (see `_heads` for keys).

        With a region, a query attends only to the superpoints inside it and its mask logits
        outside it are `OUTSIDE_REGION_LOGIT` (no gradient there): a box query segments its box.
        """
        outputs = []
        x = content
        # The mask before the first layer comes from the input queries themselves.
        mask_logits = self._mask_logits(self.head_norm(x), mask_feats) if self.masked_attention else None
        for layer in self.layers:
            x_pos = self.pos_embed(fourier_embed(ref, self.pos_freqs))
            blocked = attention_blocks(mask_logits, memory_pad, region)
            x = layer(x, x_pos, ref, query_pad, memory, memory_pos, memory_pad, blocked)
            out = self._heads(x, ref, mask_feats)
            if region is not None:
                out["mask_logits"] = out["mask_logits"].masked_fill(~region, OUTSIDE_REGION_LOGIT)
            mask_logits = out["mask_logits"] if self.masked_attention else None
            outputs.append(out)
            # The next layer starts from the refined point without a gradient path through it
            # (iterative refinement as in Deformable DETR): each layer's offset is trained by
            # its own centre loss, which keeps the refinement chain stable.
            ref = out["ref"].detach()
        return outputs
