"""Train the small Fashion-MNIST MLP that Kiln's sample loads.

Writes, next to this script:
  fashion_mnist_mlp.safetensors  - model.state_dict() after training (eval-ready)
  expected_logits.safetensors    - eval-mode logits [8, 10] of the first 8 test
                                   images ("logits") and their labels ("labels", int64)

Run from the repository root (needs Debian's torch in /usr/bin/python3 and the
safetensors package in build/pydeps):
  python3 -m pip install -q --target build/pydeps safetensors   # once
  PYTHONPATH=build/pydeps /usr/bin/python3 samples/weights/train_fashion_mnist.py
"""
import gzip
import os

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

DATA_DIR = "/usr/share/datasets/fashion-mnist"
OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def read_idx(name):
    """Read a gzipped IDX file (big-endian header) into a numpy array."""
    with gzip.open(os.path.join(DATA_DIR, name), "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] | data[1], data[2], data[3]
    assert zero == 0 and dtype_code == 0x08, "expected unsigned-byte IDX data"
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(prefix):
    images = read_idx(f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(f"{prefix}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)

    x_train, y_train = load("train")
    x_test, y_test = load("t10k")

    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batch = 128

    for epoch in range(5):
        model.train()
        perm = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: train loss {total / len(perm):.4f}")

    model.eval()
    with torch.no_grad():
        logits = model(x_test)
        acc = (logits.argmax(1) == y_test).float().mean().item()
        first8 = model(x_test[:8]).contiguous()
    print(f"test accuracy: {acc:.4f}")

    weights_path = os.path.join(OUT_DIR, "fashion_mnist_mlp.safetensors")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        weights_path,
        metadata={
            "test_accuracy": f"{acc:.4f}",
            "trained_by": "samples/weights/train_fashion_mnist.py",
        },
    )
    expected_path = os.path.join(OUT_DIR, "expected_logits.safetensors")
    save_file({"logits": first8, "labels": y_test[:8].clone()}, expected_path)
    print(f"wrote {weights_path}")
    print(f"wrote {expected_path}")


if __name__ == "__main__":
    main()
