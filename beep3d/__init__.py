"""BEEP3D: box-supervised end-to-end 3D instance segmentation.

This package is the method itself and is importable on its own: it depends on numpy, scipy,
torch, spconv, plyfile, pyarrow and pandas only, and knows nothing of DVC, MLflow or repo paths.
"""

__version__ = "0.1.0"
