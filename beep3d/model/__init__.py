"""The model: sparse UNet backbone, superpoint pooling, query decoder, inference."""

from beep3d.model.decoder import QueryDecoder, knn_pool
from beep3d.model.model import (
    BoxInstanceModel,
    Instances,
    ModelConfig,
    SceneQueries,
    mask_nms,
    pool_superpoints,
    predict_instances,
)
from beep3d.model.unet import SparseUNet

__all__ = [
    "BoxInstanceModel",
    "Instances",
    "ModelConfig",
    "QueryDecoder",
    "SceneQueries",
    "SparseUNet",
    "knn_pool",
    "mask_nms",
    "pool_superpoints",
    "predict_instances",
]
