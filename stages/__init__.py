"""One module per DVC stage, run from the repo root as `python -m stages.<name>`."""

import os

# Reproducible CPU maths (same params + seed -> same metrics): unless told otherwise, Intel MKL
# picks its code path per call from the buffers' memory alignment, and a 1-thread training run
# of this pipeline drifted from an identical one in the 7th digit after 5 steps. MKL's
# conditional numerical reproducibility mode pins the path. It must be set before torch loads
# MKL, hence here: `python -m stages.x` imports this package before the stage module.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
