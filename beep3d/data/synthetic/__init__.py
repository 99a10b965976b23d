"""The embedded synthetic dataset: procedurally furnished rooms written as ScanNet v2 or S3DIS raw data.

Public API:
    SyntheticConfig, default_config()      the knobs (params.yaml `data.synthetic`)
    generate_dataset(out_dir, cfg)         write a whole dataset, return its report
    generate_scene(cfg, scene_index)       one scene in memory (`SyntheticScene`), for tests/benchmarks
    scannet_size_config(cfg)               the same kind of rooms meshed at ScanNet density (~150k vertices)
"""

from beep3d.data.synthetic.config import ROOM_TYPES, SyntheticConfig, default_config, scannet_size_config
from beep3d.data.synthetic.dataset import REPORT_NAME, generate_dataset
from beep3d.data.synthetic.scene import SceneItem, SyntheticScene, generate_scene

__all__ = [
    "REPORT_NAME",
    "ROOM_TYPES",
    "SceneItem",
    "SyntheticConfig",
    "SyntheticScene",
    "default_config",
    "generate_dataset",
    "generate_scene",
    "scannet_size_config",
]
