"""The weights file: safetensors, written with nothing but torch (the format is a JSON header and raw bytes).

https://github.com/huggingface/safetensors: 8 bytes of little-endian header length, the header (UTF-8 JSON:
per tensor its dtype, shape and [begin, end) byte offsets into the data; "__metadata__" a map of strings),
padded with spaces to a multiple of 8, then the data, tensor after tensor, little endian.
"""
import json
import os
import sys
import tempfile

import torch

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def _le_bytes(t):
    a = t.detach().contiguous().cpu().numpy()
    return (a.byteswap() if sys.byteorder == "big" else a).tobytes()


def save(path, tensors, metadata=None):
    """Write `tensors` (a dict of name -> float32 or int64 tensor) to `path`, whole or not at all."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        blob = _le_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    write_whole(path, [len(text).to_bytes(8, "little"), text] + blobs)


def write_whole(path, chunks):
    """Write the byte strings `chunks` to `path` through a temporary file of its own in the same folder, renamed
    into place: a reader sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path):
    """The tensors of a safetensors file (F32 and I64), as the checks read Kiln's outputs back."""
    return load_with_metadata(path)[0]


def load_with_metadata(path):
    """The tensors of a safetensors file (F32 and I64) and its metadata (a dict of strings, empty when none)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", None) or {}
    data = raw[8 + n:]
    dtypes = {v: k for k, v in DTYPES.items()}
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtypes[e["dtype"]]) if end > begin else \
            torch.empty(0, dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out, metadata
