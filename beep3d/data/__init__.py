"""Data: raw-format readers, the synthetic generator, voxels, superpoints, boxes, Parquet schema."""
