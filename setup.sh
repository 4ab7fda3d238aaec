#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs the main job: installs the packages, builds Kiln
# (Release, g++), and trains the Fashion-MNIST classifier natively (samples/train_fashion_mnist.cpp): 10 epochs,
# test accuracy per epoch, the best weights, the curves as CSV and SVG in fashion_mnist_run/.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
cmake --build build -j2 --target train_fashion_mnist classify_fashion_mnist
./build/samples/train_fashion_mnist --out fashion_mnist_run
