"""Loads weights Kiln trained (samples/train_fashion_mnist) into PyTorch with safetensors.torch.load_file, into the
module that kiln::to_pytorch wrote beside them (network.py: no class written by hand), and checks that PyTorch's
test accuracy equals the one Kiln measured (stored in the file's metadata).
Run with Debian's torch: PYTHONPATH=build/pydeps-torch:python /usr/bin/python3 tests/interop/torch_accuracy.py FILE"""
import gzip
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


path = sys.argv[1]
root = "/usr/share/datasets/fashion-mnist"
scope = {}
with open(os.path.join(os.path.dirname(path), "network.py")) as f:
    exec(f.read(), scope)
model = scope["make_network"]()
print(model)
model.load_state_dict(load_file(path), strict=True)
model.eval()
x = torch.from_numpy(idx(f"{root}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, 1, 28, 28)
y = torch.from_numpy(idx(f"{root}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
with torch.no_grad():
    accuracy = (model(x).argmax(1) == y).double().mean().item()
with safe_open(path, framework="pt") as f:
    kiln_accuracy = float(f.metadata()["test_accuracy"])
print(f"PyTorch test accuracy {accuracy:.4f} with the weights Kiln trained; Kiln measured {kiln_accuracy:.4f}")
sys.exit(0 if abs(accuracy - kiln_accuracy) <= 0.0002 else 1)
