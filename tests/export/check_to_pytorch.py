"""Builds each network kiln::to_pytorch wrote (tests/export/to_pytorch_cases.cpp) in PyTorch: its repr must be the
golden module's (numbers compared as floats: Kiln writes 2 where torch prints 2.0), load_state_dict(strict=True)
must take the golden weights, and in eval mode it must give the golden outputs.

Usage: PYTHONPATH=python /usr/bin/python3 tests/export/check_to_pytorch.py DIR GOLDEN_DIR"""
import os
import re
import sys

import torch

from kiln_export import weights

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
import make_goldens  # noqa: E402  (worst_difference: NaN where the golden has NaN)

NUMBER = re.compile(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?")
B = 64


def canonical_repr(text):
    return NUMBER.sub(lambda m: repr(float(m.group(0))), text)


def main(source_dir, golden_dir):
    torch.set_num_threads(1)
    names = sorted(f[:-3] for f in os.listdir(source_dir) if f.endswith(".py"))
    for name in names:
        scope = {}
        with open(os.path.join(source_dir, f"{name}.py")) as f:
            exec(compile(f.read(), f"{name}.py", "exec"), scope)
        model = scope["make_network"]()
        tensors, meta = weights.load_with_metadata(os.path.join(golden_dir, f"{name}.safetensors"))
        assert canonical_repr(str(model)) == canonical_repr(meta["network"]), (name, str(model), meta["network"])
        keys = set(model.state_dict())
        model.load_state_dict({k: v for k, v in tensors.items() if k in keys}, strict=True)
        inputs = [tensors[f"in{k}.b{B}"] for k in range(2) if f"in{k}.b{B}" in tensors]
        want = tensors.get(f"eval.out.b{B}", inputs[0])  # absent: eval is the identity (Dropouts alone)
        with torch.no_grad():
            got = model.eval()(*inputs)
        worst = make_goldens.worst_difference(got, want)
        assert worst <= 1e-4, (name, worst)
    print(f"{len(names)} networks written by kiln::to_pytorch build in PyTorch, load the golden weights and give "
          "the golden outputs")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
