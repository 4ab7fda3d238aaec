"""Reads a file Kiln wrote with the reference safetensors implementation, checks it against Kiln's own list of
"name dtype shape", and writes the tensors back with safetensors' writer for Kiln to read."""
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

kiln_file, keys_file, out_file = sys.argv[1:4]
tensors = load_file(kiln_file)
expected = {}
for line in open(keys_file):
    name, dtype, shape = line.split(" ")
    shape = shape.strip()
    expected[name] = (dtype, tuple(int(d) for d in shape.split(",")) if shape else ())
assert set(tensors) == set(expected), (set(tensors) ^ set(expected))
dtypes = {"F32": np.float32, "I64": np.int64}
for name, array in tensors.items():
    dtype, shape = expected[name]
    assert array.dtype == dtypes[dtype], (name, array.dtype, dtype)
    assert array.shape == shape, (name, array.shape, shape)
    assert np.all(np.isfinite(array)), name
with safe_open(kiln_file, framework="numpy") as f:
    assert f.metadata() == {"written_by": "kiln"}, f.metadata()
assert tensors["2.num_batches_tracked"] == 1
save_file(tensors, out_file, metadata={"written_by": "safetensors"})
print(f"safetensors read {len(tensors)} tensors written by kiln; rewrote them to {out_file}")
