#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs the main job: installs the packages, builds Kiln
# (Release, g++), and runs the sample that loads PyTorch-trained weights and classifies Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
cmake --build build -j2 --target classify_fashion_mnist
./build/samples/classify_fashion_mnist
