"""One Fashion-MNIST training epoch in PyTorch (Debian's torch 1.13.1): the anchor for Kiln's training speed.

Same network, optimizer, loss and batch size as samples/train_fashion_mnist.cpp. Run with Debian's Python:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=<t> \
        GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456 \
        /usr/bin/python3 bench/train_epoch_pytorch.py --batch 64 --threads 1 --epochs 3
Prints the median epoch time in seconds and samples/s.
"""
import argparse
import gzip
import statistics
import time

import numpy as np
import torch
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(idx(f"{a.data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(idx(f"{a.data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    steps = (len(x) + a.batch - 1) // a.batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * a.epochs)
    times = []
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(x))
        start = time.perf_counter()
        for s in range(steps):
            i = perm[s * a.batch:(s + 1) * a.batch]
            xb, yb = x[i], y[i]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"pytorch epoch batch={a.batch} threads={a.threads}: median {med:.3f} s, {len(x) / med:.0f} samples/s "
          f"(epochs: {', '.join(f'{t:.3f}' for t in times)})")


if __name__ == "__main__":
    main()
