"""Writes the fuzzers' seed corpora (committed; run again only to change them): a few small, valid files of
each format, written by the reference safetensors package and by hand for IDX."""
import gzip
import os
import struct
import sys

import numpy as np
from safetensors.numpy import save

here = os.path.dirname(os.path.abspath(__file__))


def write(folder, name, data):
    os.makedirs(os.path.join(here, "seeds", folder), exist_ok=True)
    with open(os.path.join(here, "seeds", folder, name), "wb") as f:
        f.write(data)


write("safetensors", "empty", save({}))
write("safetensors", "one_f32", save({"w": np.array([1.5, -2.0], np.float32)}, metadata={"k": "v"}))
write("safetensors", "mixed", save({"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
                                    "1.num_batches_tracked": np.array(7, np.int64),
                                    "2.empty": np.zeros((0, 3), np.float32)}))


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


write("idx", "labels", idx([5], [0, 1, 9, 3, 2]))
write("idx", "images", idx([2, 2, 3], range(12)))
write("idx", "images.gz", gzip.compress(idx([2, 2, 3], range(12)), mtime=0))
# What fuzz_idx found: a zero dim after two dims whose product overflows index_t (refused, not taken as empty).
write("idx", "zero_dim_overflow", idx([3534514216, 4269735936, 0, 4278190080], []))
print("seeds written", file=sys.stderr)
