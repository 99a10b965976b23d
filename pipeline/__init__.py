"""Plumbing shared by the DVC stages: typed params, tracking, checkpoints, regression check."""
