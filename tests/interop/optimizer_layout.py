"""Kiln's optimizer states (kiln_interop optimizers DIR) against torch.optim's: the same keys, shapes and dtypes as
torch's state_dict() flattened, and torch.optim loads them with load_state_dict.
Run with Debian's torch: PYTHONPATH=build/pydeps-torch /usr/bin/python3 tests/interop/optimizer_layout.py DIR"""
import sys

import torch
from safetensors import safe_open
from torch import nn


def flattened(state_dict):
    out = {}
    for i, entries in state_dict["state"].items():
        for name, t in entries.items():
            out[f"state.{i}.{name}"] = t
    return out


def kiln_state(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def main(folder):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(32, 10))
    for name, make in (("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
                       ("adam", lambda p: torch.optim.Adam(p, lr=0.01))):
        opt = make(model.parameters())
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        want = flattened(opt.state_dict())
        got, meta = kiln_state(f"{folder}/{name}.safetensors")
        assert set(got) == set(want), (name, sorted(set(got) ^ set(want)))
        for k, t in want.items():
            assert got[k].shape == t.shape and got[k].dtype == t.dtype, (name, k, got[k].shape, t.shape, got[k].dtype)
        # torch takes Kiln's state as its own
        state = {"state": {}, "param_groups": [dict(opt.state_dict()["param_groups"][0], lr=float(meta["param_groups.0.lr"]))]}
        for k, t in got.items():
            _, i, field = k.split(".")
            state["state"].setdefault(int(i), {})[field] = t
        opt.load_state_dict(state)
        assert torch.equal(opt.state_dict()["state"][0][next(iter(state["state"][0]))],
                           state["state"][0][next(iter(state["state"][0]))])
        print(f"{name}: {len(got)} tensors, torch.optim's names, shapes and dtypes; torch.optim loads them")


if __name__ == "__main__":
    main(sys.argv[1])
