#!/usr/bin/env bash
# Regenerate Kiln's PyTorch golden vectors into tests/golden/data/ and the training goldens
# (gradients, losses, optimizer steps; read data/) into tests/golden/train_data/.
# Usage (any directory): tests/golden/regenerate.sh      [BUILD=dir to cache pydeps]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -z "${BUILD:-}" ]; then
  if [ -d build ]; then BUILD="$ROOT/build"
  else BUILD="$(mktemp -d)"; trap 'rm -rf "$BUILD"' EXIT; fi
fi
BUILD="$(cd "$BUILD" && pwd)"
TORCH_PY=/usr/bin/python3   # Debian's python with torch 1.13; PATH python3 only runs pip
if ! PYTHONPATH="$BUILD/pydeps" "$TORCH_PY" -c 'import safetensors.torch' 2>/dev/null; then
  python3 -m pip install -q --target "$BUILD/pydeps" safetensors
fi
rm -f tests/golden/data/*.safetensors
PYTHONPATH="$BUILD/pydeps" "$TORCH_PY" tests/golden/make_goldens.py tests/golden/data
mkdir -p tests/golden/train_data
rm -f tests/golden/train_data/*.safetensors
PYTHONPATH="$BUILD/pydeps" "$TORCH_PY" tests/golden/make_train_goldens.py tests/golden/data tests/golden/train_data
