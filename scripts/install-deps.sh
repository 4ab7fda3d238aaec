#!/usr/bin/env bash
# Installs every Debian package Kiln's build, tests, samples and benchmarks need (Debian 12). Idempotent, and
# quiet when everything is already there. Also the reference `safetensors` Python package (for the interop test)
# into build/pydeps-interop with the first python3 on the PATH.
#   scripts/install-deps.sh                  # everything
#   scripts/install-deps.sh --only PKG...    # just these Debian packages (bench/run.sh: the benchmarks' own)
set -euo pipefail
cd "$(dirname "$0")/.."

# libdnnl-dev: oneDNN, the benchmarks' vendor ceiling (bench/onednn_mlp.hpp); never a dependency of the library.
# libopenmpi-dev, openmpi-bin: Open MPI for kiln::dist (data-parallel training) and its tests under mpirun.
packages=(cmake ninja-build g++ clang-19 libfmt-dev nlohmann-json3-dev catch2 zlib1g-dev dataset-fashion-mnist
          llvm-19-dev libmlir-19-dev mlir-19-tools
          python3 python3-pip python3-torch libdnnl-dev
          libopenmpi-dev openmpi-bin)
only=0
if [[ ${1:-} == --only ]]; then
  only=1
  packages=("${@:2}")
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
((only)) && exit 0

if ! PYTHONPATH=build/pydeps-interop python3 -c "import safetensors.numpy, numpy" 2>/dev/null; then
  echo "installing the safetensors and numpy Python packages into build/pydeps-interop"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --upgrade --target build/pydeps-interop safetensors numpy
fi

if ! PYTHONPATH=build/pydeps-torch /usr/bin/python3 -c "import safetensors.torch" 2>/dev/null; then
  echo "installing the safetensors Python package into build/pydeps-torch"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --upgrade --no-deps \
    --target build/pydeps-torch safetensors
fi
