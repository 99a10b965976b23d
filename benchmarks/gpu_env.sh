#!/usr/bin/env bash
# The Python packages a GPU image lacks for benchmarks/gpu_check.py, packed to travel to it.
#
#   benchmarks/gpu_env.sh [OUT_DIR=.gpu_env] [PYTHON_VERSION=3.12]
#
# Run where pip can reach PyPI. Writes OUT_DIR/site.tar.xz: the unpacked wheels of spconv-cu126
# 2.3.8 (the spconv wheel for CUDA >= 12.6 torch and Python 3.12, see beep3d/backend.py), its
# cumm, pccm, ccimport, lark, fire, termcolor, and plyfile, for CPython PYTHON_VERSION on x86-64
# Linux. torch, numpy, scipy, pyarrow, click, pyyaml, tqdm, psutil, portalocker, pybind11, ninja
# and requests are expected on the image. On the GPU machine:
#
#   mkdir -p /tmp/site && tar -xJf .gpu_env/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site
#
# xz, not the wheels' zip: spconv's wheel alone is 67 MiB (deflate), over a 64 MiB transfer, and
# its CUDA kernels pack about 2.5 times smaller with xz.
set -euo pipefail
out="${1:-.gpu_env}"
py="${2:-3.12}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  "${platforms[@]}" -d "$work/wheels" \
  'spconv-cu126==2.3.8' 'cumm-cu126>=0.7.11,<0.8.0' 'pccm>=0.4.16' 'ccimport>=0.4.4' lark fire termcolor 'plyfile>=1.0'
mkdir -p "$work/site"
for wheel in "$work"/wheels/*.whl; do
  python3 -m zipfile -e "$wheel" "$work/site"
done
mkdir -p "$out"
tar -C "$work/site" -cf - . | xz -T0 -6 > "$out/site.tar.xz"
ls "$work/wheels"
du -h "$out/site.tar.xz"
