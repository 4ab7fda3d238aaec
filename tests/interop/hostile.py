"""Writes hostile safetensors files into a folder, one per way of being wrong, and checks that the reference
implementation (the safetensors package) refuses every one of them; `kiln_interop refuses <folder>` then checks
that Kiln refuses them too. Each file is a few hand-made bytes."""
import os
import struct
import sys

from safetensors.numpy import load

out_dir = sys.argv[1]


def file(header, data=b""):
    header = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(header)) + header + data


def entry(name, shape, begin, end):
    return '"%s": {"dtype": "F32", "shape": %s, "data_offsets": [%d, %d]}' % (name, shape, begin, end)


EIGHT = b"\0" * 8
HOSTILE = {
    "shape_overflows": file("{%s}" % entry("a", "[1099511627776, 16777216]", 0, 0)),
    "negative_dim": file("{%s}" % entry("a", "[-1]", 0, 0)),
    "fractional_dim": file("{%s}" % entry("a", "[2.0]", 0, 8), EIGHT),
    "nested_100000_deep": file('{"a": {"dtype": "F32", "shape": %s, "data_offsets": [0, 0]}}'
                               % ("[" * 100000 + "]" * 100000)),
    "header_length_past_the_end": struct.pack("<Q", 2**64 - 1) + b"{}",
    "header_not_json": file('{"a": '),
    "header_not_utf8": file(b'{"\xff": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'),
    "header_trailing_nul": file("{}\0"),
    "header_byte_order_mark": file(b"\xef\xbb\xbf{}"),
    "metadata_not_string": file('{"__metadata__": {"k": 1}}'),
    "duplicate_key": file("{%s, %s}" % (entry("a", "[2]", 0, 8), entry("a", "[2]", 8, 16)), EIGHT + EIGHT),
    "gap_before_the_first": file("{%s}" % entry("a", "[2]", 4, 12), b"...." + EIGHT),
    "gap_between": file("{%s, %s}" % (entry("a", "[2]", 0, 8), entry("b", "[2]", 12, 20)), EIGHT + b"...." + EIGHT),
    "empty_tensor_after_a_gap": file("{%s}" % entry("a", "[0]", 4, 4), b"...."),
    "overlap": file("{%s, %s}" % (entry("a", "[2]", 0, 8), entry("b", "[2]", 4, 12)), EIGHT + b"...."),
    "end_before_begin": file("{%s}" % entry("a", "[0]", 8, 0), EIGHT),
    "size_disagrees_with_shape": file("{%s}" % entry("a", "[3]", 0, 8), EIGHT),
    "trailing_bytes": file("{%s}" % entry("a", "[2]", 0, 8), EIGHT + b"...."),
    "trailing_bytes_no_tensors": file("{}", b"...."),
    "truncated_data": file("{%s}" % entry("a", "[4]", 0, 16), EIGHT),
}

assert load(file("{%s}" % entry("a", "[2]", 0, 8), EIGHT))["a"].shape == (2,)  # the helpers make valid files
os.makedirs(out_dir, exist_ok=True)
for name, data in HOSTILE.items():
    try:
        load(data)
    except Exception as e:  # safetensors raises SafetensorError, or a JSON error from the header
        print(f"safetensors refuses {name}: {e}")
    else:
        sys.exit(f"safetensors loads {name}, which this test calls hostile")
    with open(os.path.join(out_dir, name + ".safetensors"), "wb") as f:
        f.write(data)
print(f"safetensors refuses all {len(HOSTILE)} hostile files")
