"""Exports each module of traced_modules.py into OUTDIR (<name>.hpp, <name>.safetensors) with an input batch and
PyTorch's eval-mode output (<name>.io.safetensors: in0, in1, out), which tests/export/traced.cpp compares Kiln's with.

Usage: PYTHONPATH=python /usr/bin/python3 tests/export/export_traced.py OUTDIR"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_export  # noqa: E402
from kiln_export import weights  # noqa: E402
from traced_modules import MODULES, make  # noqa: E402

BATCH = 37  # not a multiple of any tile size


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(1)
    for name in MODULES:
        model, shapes = make(name)
        inputs = tuple(torch.randn((BATCH,) + s) for s in shapes)
        out = kiln_export.export(model, inputs, name=name, out_dir=outdir)
        with torch.no_grad():
            expected = model(*inputs)
        io = {f"in{k}": x for k, x in enumerate(inputs)}
        io["out"] = expected
        weights.save(os.path.join(outdir, f"{name}.io.safetensors"), io)
        print(f"{name}: {out.declaration}")


if __name__ == "__main__":
    main(sys.argv[1])
